//! A TCP proxy on loopback that forwards every chunk, in order, a fixed time after it arrived, each way: the
//! distance to a database server (a 1 ms round trip is two 500 µs halves) for benchmarks and tests on one machine,
//! where the kernel may offer no `netem` queueing discipline.
//!
//! Each connection is pumped by plain threads: one reads and time-stamps chunks, one sleeps until each chunk is
//! due and writes it. A thread's sleep is accurate to tens of microseconds, where the async runtime's timer
//! rounds up to whole milliseconds; and a chunk never waits for the previous one's delay, so the proxy adds
//! latency, not a throughput limit.

use std::{
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

/// Largest chunk read at once.
const CHUNK: usize = 64 * 1024;

/// A running proxy; stops accepting when dropped (open connections end when either side closes).
#[derive(Debug)]
pub struct DelayProxy {
    addr: SocketAddr,
    stopped: Arc<AtomicBool>,
}

impl DelayProxy {
    /// Listens on `listen` (port 0 for any) and forwards each accepted connection to `upstream`, delaying every
    /// chunk by `delay` in each direction.
    pub fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        delay: Duration,
    ) -> io::Result<DelayProxy> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let stopped = Arc::new(AtomicBool::new(false));
        let stop = stopped.clone();
        thread::Builder::new()
            .name("delay-proxy".into())
            .spawn(move || {
                for inbound in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    match inbound {
                        Ok(inbound) => {
                            if let Err(error) = connect(inbound, upstream, delay) {
                                tracing::warn!(%error, %upstream, "delay proxy cannot reach upstream");
                            }
                        }
                        Err(error) => tracing::warn!(%error, "delay proxy cannot accept"),
                    }
                }
            })?;
        Ok(DelayProxy { addr, stopped })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Release);
        // Wakes the accepting thread, which then sees the flag and ends.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Connects `inbound` to `upstream` and starts pumping both ways.
fn connect(inbound: TcpStream, upstream: SocketAddr, delay: Duration) -> io::Result<()> {
    let outbound = TcpStream::connect(upstream)?;
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    pump(inbound.try_clone()?, outbound.try_clone()?, delay)?;
    pump(outbound, inbound, delay)
}

/// Forwards what `from` sends to `to`, each chunk `delay` after it arrived; closes `to`'s sending side when
/// `from` ends.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration) -> io::Result<()> {
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::Builder::new()
        .name("delay-proxy-read".into())
        .spawn(move || {
            let mut buffer = vec![0; CHUNK];
            loop {
                match from.read(&mut buffer) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if chunks
                            .send((Instant::now() + delay, buffer[..n].to_vec()))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        })?;
    thread::Builder::new()
        .name("delay-proxy-write".into())
        .spawn(move || {
            while let Ok((at, chunk)) = due.recv() {
                let wait = at.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    thread::sleep(wait);
                }
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_through_the_proxy_takes_both_delays_and_keeps_every_byte_in_order() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream = echo.local_addr().unwrap();
        thread::spawn(move || {
            let (mut conn, _) = echo.accept().unwrap();
            let mut buffer = [0; 1024];
            loop {
                match conn.read(&mut buffer) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => conn.write_all(&buffer[..n]).unwrap(),
                }
            }
        });
        let delay = Duration::from_millis(5);
        let proxy = DelayProxy::start("127.0.0.1:0".parse().unwrap(), upstream, delay).unwrap();
        let mut client = TcpStream::connect(proxy.addr()).unwrap();
        client.set_nodelay(true).unwrap();
        let message: Vec<u8> = (0..=255).cycle().take(10_000).collect();
        let started = Instant::now();
        client.write_all(&message).unwrap();
        let mut back = vec![0; message.len()];
        client.read_exact(&mut back).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(back, message);
        assert!(elapsed >= 2 * delay, "round trip took {elapsed:?}");
        assert!(
            elapsed < 2 * delay + Duration::from_millis(200),
            "round trip took {elapsed:?}"
        );
    }
}
