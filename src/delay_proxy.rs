//! A TCP proxy on loopback that forwards every chunk, in order, a fixed time after it arrived, each way: the
//! distance to a database server (a 1 ms round trip is two 500 µs halves) for benchmarks and tests on one machine,
//! where the kernel may offer no `netem` queueing discipline.
//!
//! One thread serves every connection: it waits on `epoll` for data and on a `timerfd` for the next chunk that
//! is due. A `timerfd` is accurate to microseconds, where `epoll`'s own timeout and the async runtime's timer
//! round up to whole milliseconds. A chunk never waits for the previous one's delay, so the proxy adds latency,
//! not a throughput limit; and it costs the machine little CPU beside what it measures: chunks that arrive or
//! fall due together are handled in one wake-up, with no thread hand-off per chunk.

use std::{
    collections::VecDeque,
    io::{self, ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use nix::sys::{
    epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout},
    time::TimeSpec,
    timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags},
};

/// Largest chunk read at once.
const CHUNK: usize = 64 * 1024;
/// Event keys: the listener, the timer, then two per connection (its client side, its upstream side).
const LISTENER: u64 = 0;
const TIMER: u64 = 1;
const FIRST_STREAM: u64 = 2;

/// A running proxy; when dropped it stops accepting and closes its connections.
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
        listener.set_nonblocking(true)?;
        let stopped = Arc::new(AtomicBool::new(false));
        let mut proxy = Proxy {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            timer: TimerFd::new(
                ClockId::CLOCK_MONOTONIC,
                TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
            )?,
            listener,
            upstream,
            delay,
            stopped: stopped.clone(),
            links: Vec::new(),
            timeline: VecDeque::new(),
            buffer: vec![0; CHUNK],
        };
        proxy.epoll.add(
            &proxy.listener,
            EpollEvent::new(EpollFlags::EPOLLIN, LISTENER),
        )?;
        proxy
            .epoll
            .add(&proxy.timer, EpollEvent::new(EpollFlags::EPOLLIN, TIMER))?;
        thread::Builder::new()
            .name("delay-proxy".into())
            .spawn(move || {
                if let Err(error) = proxy.run() {
                    tracing::error!(%error, "delay proxy stopped");
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
        // Wakes the proxy's thread, which then sees the flag and ends.
        let _ = TcpStream::connect(self.addr);
    }
}

/// The proxy's thread and everything it owns.
struct Proxy {
    epoll: Epoll,
    timer: TimerFd,
    listener: TcpListener,
    upstream: SocketAddr,
    delay: Duration,
    stopped: Arc<AtomicBool>,
    /// Open connections by slot; a closed one leaves its slot empty for the next.
    links: Vec<Option<Link>>,
    /// Every chunk (and end of stream) read and not yet due, oldest first: `(due, slot, side it was read from)`.
    /// One delay for all makes arrival order due order.
    timeline: VecDeque<(Instant, usize, usize)>,
    buffer: Vec<u8>,
}

/// One proxied connection: `sides[0]` is the client's, `sides[1]` upstream's; `flows[n]` carries what
/// `sides[n]` sends to the other side.
struct Link {
    sides: [TcpStream; 2],
    flows: [Flow; 2],
}

#[derive(Default)]
struct Flow {
    /// Chunks read and not yet written in full, oldest first; `None` is the end of the stream.
    queue: VecDeque<(Instant, Option<Vec<u8>>)>,
    /// How much of the first chunk is written already.
    written: usize,
    /// The sending side has ended (its end is queued).
    ended: bool,
    /// The end was passed on: the receiving side's sending half is shut.
    done: bool,
    /// The receiving side's buffer was full: wait until it is writable.
    blocked: bool,
}

impl Proxy {
    fn run(&mut self) -> io::Result<()> {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            let now = Instant::now();
            while let Some(&(due, slot, side)) = self.timeline.front() {
                if due > now {
                    // A zero time would disarm the timer.
                    let wait = (due - now).max(Duration::from_nanos(1));
                    self.timer.set(
                        Expiration::OneShot(TimeSpec::from_duration(wait)),
                        TimerSetTimeFlags::empty(),
                    )?;
                    break;
                }
                self.timeline.pop_front();
                self.pass_on(slot, side, now);
            }
            let ready = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(ready) => ready,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(error) => return Err(error.into()),
            };
            for event in &events[..ready] {
                match event.data() {
                    LISTENER => {
                        if self.stopped.load(Ordering::Acquire) {
                            return Ok(());
                        }
                        self.accept();
                    }
                    TIMER => {
                        // Drains the expiry; the loop above passes on whatever fell due.
                        let _ = self.timer.wait();
                    }
                    key => {
                        let (slot, side) = slot_and_side(key);
                        let flags = event.events();
                        if flags.contains(EpollFlags::EPOLLERR) {
                            // Reset or broken: both ends go.
                            self.close(slot);
                            continue;
                        }
                        if flags.contains(EpollFlags::EPOLLOUT) {
                            // `side` can take more of what flows to it from the other side.
                            self.pass_on(slot, 1 - side, Instant::now());
                        }
                        if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP) {
                            self.receive(slot, side);
                        }
                    }
                }
            }
        }
    }

    /// Accepts every waiting client and connects each to upstream.
    fn accept(&mut self) {
        loop {
            let client = match self.listener.accept() {
                Ok((client, _)) => client,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) => {
                    tracing::warn!(%error, "delay proxy cannot accept");
                    return;
                }
            };
            if let Err(error) = self.open(client) {
                tracing::warn!(%error, upstream = %self.upstream, "delay proxy cannot reach upstream");
            }
        }
    }

    fn open(&mut self, client: TcpStream) -> io::Result<()> {
        let upstream = TcpStream::connect(self.upstream)?;
        for stream in [&client, &upstream] {
            stream.set_nodelay(true)?;
            stream.set_nonblocking(true)?;
        }
        let slot = match self.links.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.links.push(None);
                self.links.len() - 1
            }
        };
        for (side, stream) in [&client, &upstream].into_iter().enumerate() {
            self.epoll.add(
                stream,
                EpollEvent::new(EpollFlags::EPOLLIN, key(slot, side)),
            )?;
        }
        self.links[slot] = Some(Link {
            sides: [client, upstream],
            flows: Default::default(),
        });
        Ok(())
    }

    /// Reads everything `side` of the link has sent, each chunk due one delay from now.
    fn receive(&mut self, slot: usize, side: usize) {
        let Some(link) = self.links[slot].as_mut() else {
            return;
        };
        if link.flows[side].ended {
            return;
        }
        let due = Instant::now() + self.delay;
        loop {
            match (&link.sides[side]).read(&mut self.buffer) {
                Ok(0) => {
                    link.flows[side].ended = true;
                    link.flows[side].queue.push_back((due, None));
                    self.timeline.push_back((due, slot, side));
                    let _ = self.interest(slot, side);
                    return;
                }
                Ok(n) => {
                    link.flows[side]
                        .queue
                        .push_back((due, Some(self.buffer[..n].to_vec())));
                    self.timeline.push_back((due, slot, side));
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.close(slot),
            }
        }
    }

    /// Writes what flows from `from` to the other side and is due by `now`, as far as the receiver takes it.
    fn pass_on(&mut self, slot: usize, from: usize, now: Instant) {
        let Some(link) = self.links[slot].as_mut() else {
            return;
        };
        let to = &link.sides[1 - from];
        let flow = &mut link.flows[from];
        let was_blocked = flow.blocked;
        flow.blocked = false;
        while let Some((due, chunk)) = flow.queue.front() {
            if *due > now {
                break;
            }
            let Some(chunk) = chunk else {
                let _ = to.shutdown(Shutdown::Write);
                flow.queue.pop_front();
                flow.done = true;
                if link.flows.iter().all(|flow| flow.done) {
                    return self.close(slot);
                }
                if self.interest(slot, 1 - from).is_err() {
                    self.close(slot);
                }
                return;
            };
            match (&*to).write(&chunk[flow.written..]) {
                Ok(n) => {
                    flow.written += n;
                    if flow.written == chunk.len() {
                        flow.written = 0;
                        flow.queue.pop_front();
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    flow.blocked = true;
                    break;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.close(slot),
            }
        }
        if was_blocked != link.flows[from].blocked && self.interest(slot, 1 - from).is_err() {
            self.close(slot);
        }
    }

    /// Registers what `side` of a link waits for: data while it still sends, room while what flows to it is
    /// blocked; nothing once it has ended and its other half is shut (the kernel then reports a hang-up on it
    /// whatever it is registered for).
    fn interest(&self, slot: usize, side: usize) -> io::Result<()> {
        let Some(link) = self.links[slot].as_ref() else {
            return Ok(());
        };
        if link.flows[side].ended && link.flows[1 - side].done {
            self.epoll.delete(link.sides[side].as_fd())?;
            return Ok(());
        }
        let mut flags = EpollFlags::empty();
        if !link.flows[side].ended {
            flags |= EpollFlags::EPOLLIN;
        }
        if link.flows[1 - side].blocked {
            flags |= EpollFlags::EPOLLOUT;
        }
        self.epoll.modify(
            link.sides[side].as_fd(),
            &mut EpollEvent::new(flags, key(slot, side)),
        )?;
        Ok(())
    }

    /// Drops a link, closing both its connections; its chunks still on the timeline are skipped.
    fn close(&mut self, slot: usize) {
        if let Some(link) = self.links[slot].take() {
            for side in &link.sides {
                // One side may be deregistered already (see `interest`).
                let _ = self.epoll.delete(side);
            }
        }
        self.timeline.retain(|&(_, s, _)| s != slot);
    }
}

fn key(slot: usize, side: usize) -> u64 {
    FIRST_STREAM + 2 * slot as u64 + side as u64
}

/// The link slot and side an event key (from [`key`]) stands for.
fn slot_and_side(key: u64) -> (usize, usize) {
    let n = key - FIRST_STREAM;
    ((n / 2) as usize, (n % 2) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proxy delaying each way by `delay` in front of a server that hands its one connection to `serve`.
    fn proxy_to(delay: Duration, serve: impl FnOnce(TcpStream) + Send + 'static) -> DelayProxy {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream = server.local_addr().unwrap();
        thread::spawn(move || serve(server.accept().unwrap().0));
        DelayProxy::start("127.0.0.1:0".parse().unwrap(), upstream, delay).unwrap()
    }

    #[test]
    fn a_round_trip_through_the_proxy_takes_both_delays_and_keeps_every_byte_in_order() {
        let delay = Duration::from_millis(5);
        // Upstream echoes.
        let proxy = proxy_to(delay, |mut conn| {
            let mut buffer = [0; 1024];
            loop {
                match conn.read(&mut buffer) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => conn.write_all(&buffer[..n]).unwrap(),
                }
            }
        });
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

    #[test]
    fn a_large_transfer_and_each_side_closing_pass_through_in_order() {
        // Upstream reads until the client has finished sending, then answers with all it got and closes.
        let proxy = proxy_to(Duration::from_micros(500), |mut conn| {
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap();
            conn.write_all(&got).unwrap();
        });
        let mut client = TcpStream::connect(proxy.addr()).unwrap();
        // More than the sockets' buffers hold, so the proxy must wait for room on the way.
        let message: Vec<u8> = (0..=250).cycle().take(8 << 20).collect();
        let sender = {
            let mut client = client.try_clone().unwrap();
            let message = message.clone();
            thread::spawn(move || {
                client.write_all(&message).unwrap();
                client.shutdown(Shutdown::Write).unwrap();
            })
        };
        let mut back = Vec::new();
        client.read_to_end(&mut back).unwrap();
        sender.join().unwrap();
        assert_eq!(back.len(), message.len());
        assert!(back == message, "bytes changed or reordered");
    }
}
