//! An accepted TCP connection whose writes are gathered until flushed, so one call's response leaves in one
//! system call.
//!
//! HTTP/2 (h2) keeps a DATA frame's payload of 256 bytes or more out of its write buffer when the socket takes
//! vectored writes, and flushes before the next frame: a unary gRPC response whose message is that large left in
//! two writes, its HEADERS and DATA in one and its trailers in another. On loopback, each write also pays for the
//! receiving side's wake-up. Reported as not vectored, the socket gets payloads under 1 KiB copied into h2's buffer
//! and a response's frames (and those of other calls finishing in the same turn) written together. A larger
//! payload comes as a write of its own after its frame's head, which this connection gathers with the head until
//! h2 flushes, so the two still cost one system call, as one `writev` did. Reads pass straight through.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Bytes gathered before they are written without waiting for a flush; a write at least this large, with nothing
/// gathered, goes straight to the socket.
const GATHER_LIMIT: usize = 64 * 1024;

/// The gathering buffer's capacity kept between writes: a connection that once sent a large response (a long
/// page, a watch's burst) does not hold on to that much memory while idle.
const KEPT_CAPACITY: usize = 4 * 1024;

/// A TCP connection whose writes wait in a buffer until flushed (see the module's documentation).
#[derive(Debug)]
pub struct GatheringConnection {
    stream: TcpStream,
    gathered: Vec<u8>,
    /// How much of `gathered` the socket has taken.
    written: usize,
}

impl GatheringConnection {
    pub fn new(stream: TcpStream) -> Self {
        GatheringConnection {
            stream,
            gathered: Vec::new(),
            written: 0,
        }
    }

    /// Writes out what is gathered.
    fn poll_write_gathered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.gathered.len() {
            let n =
                ready!(Pin::new(&mut self.stream).poll_write(cx, &self.gathered[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        if self.gathered.capacity() > KEPT_CAPACITY {
            self.gathered = Vec::new();
        } else {
            self.gathered.clear();
        }
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes, writing out what is gathered if they would not fit; false when they should
    /// go straight to the socket instead.
    fn poll_room_for(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<bool>> {
        if self.gathered.len() + len > GATHER_LIMIT {
            ready!(self.poll_write_gathered(cx))?;
        }
        Poll::Ready(Ok(len < GATHER_LIMIT))
    }
}

impl AsyncRead for GatheringConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatheringConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !ready!(this.poll_room_for(cx, buf.len()))? {
            return Pin::new(&mut this.stream).poll_write(cx, buf);
        }
        this.gathered.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = bufs.iter().map(|buf| buf.len()).sum();
        if !ready!(this.poll_room_for(cx, len))? {
            return Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        }
        for buf in bufs {
            this.gathered.extend_from_slice(buf);
        }
        Poll::Ready(Ok(len))
    }

    /// Not vectored, so that h2 copies small payloads into its buffer instead of flushing after each (see the
    /// module's documentation); vectored writes are still taken, gathered like any other.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_gathered(cx))?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_gathered(cx))?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

impl Connected for GatheringConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    /// A gathering connection (the accepted side) and its peer.
    async fn pair() -> (GatheringConnection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        (GatheringConnection::new(accepted), peer)
    }

    /// Whether the peer has anything to read within a moment.
    async fn arrives(peer: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_millis(100), peer.peek(&mut byte))
            .await
            .is_ok()
    }

    async fn read_n(peer: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(5), peer.read_exact(&mut got))
            .await
            .expect("the bytes arrive")
            .unwrap();
        got
    }

    #[tokio::test]
    async fn writes_wait_for_a_flush_and_then_arrive_together_in_order() {
        let (mut conn, mut peer) = pair().await;
        assert!(!conn.is_write_vectored());
        conn.write_all(b"headers|").await.unwrap();
        let written = conn
            .write_vectored(&[IoSlice::new(b"data|"), IoSlice::new(b"trailers")])
            .await
            .unwrap();
        assert_eq!(written, 13);
        assert!(!arrives(&mut peer).await, "nothing leaves before the flush");
        conn.flush().await.unwrap();
        assert_eq!(read_n(&mut peer, 21).await, b"headers|data|trailers");
        assert!(conn.gathered.is_empty());
    }

    #[tokio::test]
    async fn a_write_past_the_limit_sends_what_was_gathered_first_and_then_itself() {
        let (mut conn, mut peer) = pair().await;
        conn.write_all(b"small").await.unwrap();
        let large: Vec<u8> = (0..GATHER_LIMIT + 10).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        while sent < large.len() {
            sent += conn.write(&large[sent..]).await.unwrap();
        }
        let got = read_n(&mut peer, 5 + large.len()).await;
        assert_eq!(&got[..5], b"small");
        assert!(
            got[5..] == large[..],
            "the large write arrives whole, after the gathered bytes"
        );
        assert!(conn.gathered.is_empty());
    }

    #[tokio::test]
    async fn a_flush_leaves_no_large_buffer_behind() {
        let (mut conn, mut peer) = pair().await;
        let chunk = vec![7u8; 1000];
        for _ in 0..20 {
            conn.write_all(&chunk).await.unwrap();
        }
        assert!(conn.gathered.capacity() >= 20_000);
        conn.flush().await.unwrap();
        assert!(conn.gathered.capacity() <= KEPT_CAPACITY);
        assert_eq!(read_n(&mut peer, 20_000).await, vec![7u8; 20_000]);
    }

    #[tokio::test]
    async fn shutting_down_sends_what_was_gathered_and_then_ends() {
        let (mut conn, mut peer) = pair().await;
        conn.write_all(b"goodbye").await.unwrap();
        conn.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut rest))
            .await
            .expect("the peer sees the end")
            .unwrap();
        assert_eq!(rest, b"goodbye");
    }

    #[tokio::test]
    async fn reads_pass_straight_through() {
        let (mut conn, mut peer) = pair().await;
        peer.write_all(b"request").await.unwrap();
        let mut got = [0u8; 7];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"request");
        assert_eq!(
            conn.connect_info().remote_addr(),
            Some(peer.local_addr().unwrap())
        );
    }
}
