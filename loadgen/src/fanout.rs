//! `loadgen fanout`: N watch streams on one customer, one writer updating it; commit-to-delivery latency per N
//! and the server's memory per idle stream.
//!
//! For each N:
//! 1. open N `Watch` streams over `ceil(N / --streams-per-connection)` connections without subscribing, and read
//!    the server's RSS: the memory cost of idle open streams;
//! 2. let every stream subscribe to the customer; wait until each has its first event (the `PresenceChanged` sent
//!    on subscribe), then until the presence traffic of the joins has settled (no event for `--quiet`; every
//!    join that changes the participant list sends it to every watcher: with one agent (`--watcher-agents 1`)
//!    each stream gets one list, with N distinct agents N joins make N(N+1)/2 presence events); read the RSS
//!    again;
//! 3. a writer updates the customer `--updates` times at `--update-rate`, and every stream records, for each
//!    `ResourceChanged`, its receive time minus the event's `change_time` (stamped by the server just before the
//!    commit, on the same machine's clock).

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use customer_context::{
    config::parse_duration,
    pb::{
        self, customer_service_client::CustomerServiceClient, watch_event::Event,
        watch_service_client::WatchServiceClient,
    },
};
use serde::Serialize;
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
    time::{Instant, MissedTickBehavior},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, metadata::MetadataValue, transport::Channel};

use crate::{
    report::{Percentiles, code_name, histogram, ms, proc, thousands},
    run::connect,
};

/// The writer's agent; watchers use other names, so they receive its changes.
const WRITER: &str = "loadgen-writer";

#[derive(Debug, clap::Args)]
pub struct FanoutArgs {
    /// Server to drive.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,

    /// Numbers of watchers to measure, one round each, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000,10000",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub watchers: Vec<u32>,

    /// Updates the writer makes per round.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub updates: u32,

    /// Updates per second.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub update_rate: u32,

    /// Watch streams per HTTP/2 connection.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub streams_per_connection: u32,

    /// How many distinct agent names the watchers use (`loadgen-watcher-1` ...). Presence lists one entry per
    /// agent and every join of a new agent sends the list to every watcher, so many distinct agents make the joins cost
    /// O(N^2) events of O(N) size.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub watcher_agents: u32,

    /// Subscriptions per second once the streams are open (0: all at once, as when a replica restarts and
    /// every gadget reconnects, or a shift starts).
    #[arg(long, default_value_t = 0)]
    pub join_rate: u32,

    /// Subscribe with the customer's current version as known_version, as a gadget does (the server then
    /// checks the change log for what the gadget may have missed); `false` subscribes with 0.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub known_version: bool,

    /// The server's process id: report its resident memory before and after opening the streams.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// The joins have settled when no stream received anything for this long.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub quiet: Duration,

    /// Give up waiting for the streams to join (and settle) after this long.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    pub join_timeout: Duration,

    /// Print the results as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

/// The result of one round.
#[derive(Debug, Serialize)]
pub struct Round {
    pub watchers: u32,
    pub connections: u32,
    /// Streams the server accepted.
    pub opened: u64,
    pub open_seconds: f64,
    /// Streams that got their first event after subscribing.
    pub joined: u64,
    pub join_seconds: f64,
    /// Time until no stream had received anything for `--quiet` (includes that quiet period).
    pub settle_seconds: f64,
    pub presence_events: u64,
    pub resyncs: u64,
    /// Streams that ended early, by gRPC code (or ENDED), with one message each.
    pub stream_errors: BTreeMap<String, u64>,
    pub stream_error_samples: BTreeMap<String, String>,
    pub updates_ok: u64,
    pub update_errors: u64,
    pub delivered: u64,
    pub expected: u64,
    pub latency: Percentiles,
    /// CPU use while the streams joined and while the updates were delivered, in percent of one core.
    pub server_cpu_join_percent: Option<f64>,
    pub server_cpu_updates_percent: Option<f64>,
    pub loadgen_cpu_updates_percent: Option<f64>,
    pub rss_before_kib: Option<u64>,
    /// With the N streams open and idle, before subscribing.
    pub rss_open_kib: Option<u64>,
    /// Highest RSS seen while the streams joined.
    pub rss_peak_kib: Option<u64>,
    /// After the joins settled, before the updates.
    pub rss_subscribed_kib: Option<u64>,
    /// (open - before) / watchers: the cost of an idle open stream.
    pub kib_per_open_stream: Option<f64>,
    /// (subscribed - before) / watchers: the same after subscribing and the presence traffic of the joins.
    pub kib_per_subscribed_stream: Option<f64>,
}

/// Counters every watcher of a round updates.
struct Shared {
    started: Instant,
    opened: AtomicU64,
    joined: AtomicU64,
    /// Streams that ended (before or after joining).
    failed: AtomicU64,
    /// Streams that ended after joining.
    left: AtomicU64,
    /// Presence events received so far.
    presence: AtomicU64,
    /// Microseconds since `started` of the last event any stream received.
    last_event: AtomicU64,
    /// `ResourceChanged` events received while measuring.
    delivered: AtomicU64,
    measuring: AtomicBool,
}

impl Shared {
    fn touch(&self) {
        let since = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_event.fetch_max(since, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_micros(self.last_event.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// What one watcher saw.
#[derive(Default)]
struct Seen {
    presence: u64,
    resyncs: u64,
    /// Commit-to-delivery latencies of measured changes, in microseconds.
    latencies: Vec<u64>,
    /// The gRPC code (or ENDED) and message the stream ended with, if it ended early.
    error: Option<(String, String)>,
}

pub async fn fanout(args: FanoutArgs) -> anyhow::Result<()> {
    let writer_channel = connect(&args.addr, 1).await?.remove(0);
    let mut writer = CustomerServiceClient::new(writer_channel);
    let created = writer
        .create_customer(as_agent(
            WRITER,
            pb::CreateCustomerRequest {
                customer: Some(pb::Customer {
                    first_name: "Fanout".to_owned(),
                    last_name: "Target".to_owned(),
                    notes: "Watched by loadgen fanout.".to_owned(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .context("cannot create the watched customer")?
        .into_inner();
    eprintln!("watched customer {} (created by {WRITER})", created.id);
    if let Some(pid) = args.server_pid
        && proc::rss_kib(pid).is_none()
    {
        eprintln!("warning: cannot read /proc/{pid}/status; memory will not be reported");
    }

    let mut version = created.version;
    let mut rounds = Vec::new();
    for &n in &args.watchers {
        let round = round(&args, n, &created.id, &mut writer, &mut version).await?;
        eprintln!("  {}", one_line(&round));
        rounds.push(round);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rounds)?);
    } else {
        print_table(&rounds);
    }
    Ok(())
}

async fn round(
    args: &FanoutArgs,
    n: u32,
    customer_id: &str,
    writer: &mut CustomerServiceClient<Channel>,
    version: &mut i64,
) -> anyhow::Result<Round> {
    let connections = n.div_ceil(args.streams_per_connection);
    let all = u64::from(n);
    eprintln!(
        "{} watcher(s) over {connections} connection(s): opening ...",
        thousands(all)
    );
    let rss = || args.server_pid.and_then(proc::rss_kib);
    let rss_before = rss();
    let channels = connect(&args.addr, connections).await?;
    let shared = Arc::new(Shared {
        started: Instant::now(),
        opened: AtomicU64::new(0),
        joined: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        left: AtomicU64::new(0),
        presence: AtomicU64::new(0),
        last_event: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
    });
    let (stop, stopped) = watch::channel(false);
    let (subscribe, go) = watch::channel(false);
    let target = pb::ResourceRef {
        r#type: pb::ResourceType::Customer as i32,
        id: customer_id.to_owned(),
        known_version: if args.known_version { *version } else { 0 },
    };
    let mut watchers = JoinSet::new();
    for i in 0..n {
        let delay = match args.join_rate {
            0 => Duration::ZERO,
            rate => Duration::from_secs(1) * i / rate,
        };
        let client = WatchServiceClient::new(channels[(i % connections) as usize].clone());
        let agent = format!("loadgen-watcher-{}", i % args.watcher_agents + 1);
        watchers.spawn(watcher(
            client,
            target.clone(),
            agent,
            shared.clone(),
            (go.clone(), delay),
            stopped.clone(),
        ));
    }
    let deadline = Instant::now() + args.join_timeout;

    // 1. Open: the server has accepted every stream (or refused it); nothing subscribed yet.
    wait_until(deadline, "opened", all, || {
        shared.opened.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed)
    })
    .await;
    let open_seconds = shared.started.elapsed().as_secs_f64();
    let opened = shared.opened.load(Ordering::Relaxed);
    // Let the server finish whatever the openings started before reading its memory.
    tokio::time::sleep(args.quiet).await;
    let rss_open = rss();

    // 2. Subscribe: every stream gets its first event; then the presence traffic of the joins settles.
    let joining = Instant::now();
    let cpu_joining = Cpu::now(args.server_pid);
    let _ = subscribe.send(true);
    let peak = tokio::spawn(peak_rss(args.server_pid, stopped.clone()));
    wait_until(deadline, "joined", opened, || {
        shared.joined.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed)
    })
    .await;
    let join_seconds = joining.elapsed().as_secs_f64();
    while shared.idle_for() < args.quiet && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settle_seconds = joining.elapsed().as_secs_f64();
    let joined = shared.joined.load(Ordering::Relaxed);
    let cpu_joined = Cpu::now(args.server_pid);
    let rss_subscribed = rss();
    eprintln!(
        "  {} opened in {open_seconds:.1} s; {} joined in {join_seconds:.1} s, settled after {settle_seconds:.1} s \
         ({} presence events); {} updates at {}/s ...",
        thousands(opened),
        thousands(joined),
        thousands(shared.presence.load(Ordering::Relaxed)),
        args.updates,
        args.update_rate
    );

    // 3. Measure: the writer updates the customer at a steady pace.
    let live = joined.saturating_sub(shared.left.load(Ordering::Relaxed));
    shared.measuring.store(true, Ordering::Relaxed);
    let cpu_updating = Cpu::now(args.server_pid);
    let (mut updates_ok, mut update_errors) = (0u64, 0u64);
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / args.update_rate);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for u in 0..args.updates {
        ticks.tick().await;
        let update = pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: customer_id.to_owned(),
                version: *version,
                notes: format!("fanout round of {n}, update {u}"),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["notes".to_owned()],
            }),
            ..Default::default()
        };
        match writer.update_customer(as_agent(WRITER, update)).await {
            Ok(updated) => {
                *version = updated.into_inner().version;
                updates_ok += 1;
            }
            Err(status) => {
                update_errors += 1;
                if update_errors == 1 {
                    eprintln!(
                        "  update failed: {} {}",
                        code_name(status.code()),
                        status.message()
                    );
                }
            }
        }
    }
    // Every live stream should get every update; wait for the stragglers, a bounded time.
    let expected = live * updates_ok;
    let deadline = Instant::now() + Duration::from_secs(10);
    while shared.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shared.measuring.store(false, Ordering::Relaxed);
    let cpu_updated = Cpu::now(args.server_pid);

    // Close every stream and gather what each saw.
    let _ = stop.send(true);
    let rss_peak = peak.await.ok().flatten();
    let mut latency = histogram();
    let (mut presence, mut resyncs) = (0, 0);
    let mut stream_errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut stream_error_samples: BTreeMap<String, String> = BTreeMap::new();
    let gather = async {
        while let Some(seen) = watchers.join_next().await {
            let Ok(seen) = seen else { continue };
            presence += seen.presence;
            resyncs += seen.resyncs;
            for micros in seen.latencies {
                latency.saturating_record(micros.max(1));
            }
            if let Some((code, message)) = seen.error {
                *stream_errors.entry(code.clone()).or_default() += 1;
                stream_error_samples.entry(code).or_insert(message);
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), gather)
        .await
        .is_err()
    {
        eprintln!("  some streams did not close within 30 s; abandoning them");
    }
    watchers.abort_all();
    drop(channels);

    let per_stream = |after: Option<u64>| match (rss_before, after) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before) as f64 / f64::from(n)),
        _ => None,
    };
    Ok(Round {
        watchers: n,
        connections,
        opened,
        open_seconds,
        joined,
        join_seconds,
        settle_seconds,
        presence_events: presence,
        resyncs,
        stream_errors,
        stream_error_samples,
        updates_ok,
        update_errors,
        delivered: latency.len(),
        expected,
        latency: Percentiles::of(&latency),
        server_cpu_join_percent: cpu_joining.server_percent(&cpu_joined),
        server_cpu_updates_percent: cpu_updating.server_percent(&cpu_updated),
        loadgen_cpu_updates_percent: cpu_updating.loadgen_percent(&cpu_updated),
        rss_before_kib: rss_before,
        rss_open_kib: rss_open,
        rss_peak_kib: rss_peak.max(rss_subscribed),
        rss_subscribed_kib: rss_subscribed,
        kib_per_open_stream: per_stream(rss_open),
        kib_per_subscribed_stream: per_stream(rss_subscribed),
    })
}

/// CPU time used so far by the server and by this process.
struct Cpu {
    at: Instant,
    server: Option<Duration>,
    loadgen: Option<Duration>,
}

impl Cpu {
    fn now(server: Option<u32>) -> Self {
        Cpu {
            at: Instant::now(),
            server: server.and_then(|pid| proc::cpu_time(Some(pid))),
            loadgen: proc::cpu_time(None),
        }
    }

    fn percent(&self, later: &Cpu, used: Option<Duration>) -> Option<f64> {
        let wall = (later.at - self.at).as_secs_f64();
        (wall > 0.0).then(|| used.map(|used| used.as_secs_f64() * 100.0 / wall))?
    }

    fn server_percent(&self, later: &Cpu) -> Option<f64> {
        self.percent(later, Some(later.server?.saturating_sub(self.server?)))
    }

    fn loadgen_percent(&self, later: &Cpu) -> Option<f64> {
        self.percent(later, Some(later.loadgen?.saturating_sub(self.loadgen?)))
    }
}

/// Waits until `count()` reaches `target` or the deadline passes, printing progress every 5 seconds.
async fn wait_until(deadline: Instant, what: &str, target: u64, count: impl Fn() -> u64) {
    let mut report = Instant::now() + Duration::from_secs(5);
    while count() < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if Instant::now() >= report {
            eprintln!("    {what} {} / {}", thousands(count()), thousands(target));
            report += Duration::from_secs(5);
        }
    }
}

/// The highest RSS of `pid`, sampled every 100 ms until `stop`.
async fn peak_rss(pid: Option<u32>, mut stop: watch::Receiver<bool>) -> Option<u64> {
    let pid = pid?;
    let mut peak = proc::rss_kib(pid);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return peak,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        peak = peak.max(proc::rss_kib(pid));
    }
}

/// One watch stream: opens, subscribes `delay` after being told to, then reads until told to stop or the stream
/// ends.
async fn watcher(
    mut client: WatchServiceClient<Channel>,
    target: pb::ResourceRef,
    agent: String,
    shared: Arc<Shared>,
    (mut go, delay): (watch::Receiver<bool>, Duration),
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen::default();
    let ended = |seen: &mut Seen, code: &str, message: &str| {
        seen.error = Some((code.to_owned(), message.chars().take(160).collect()));
        shared.failed.fetch_add(1, Ordering::Relaxed);
    };
    let (requests, outgoing) = mpsc::channel(1);
    let call = client.watch(as_agent(&agent, ReceiverStream::new(outgoing)));
    let opened = tokio::select! {
        opened = call => opened,
        _ = stop.wait_for(|stop| *stop) => return seen,
    };
    let mut events = match opened {
        Ok(response) => response.into_inner(),
        Err(status) => {
            ended(&mut seen, code_name(status.code()), status.message());
            return seen;
        }
    };
    shared.opened.fetch_add(1, Ordering::Relaxed);
    tokio::select! {
        _ = async {
            let _ = go.wait_for(|go| *go).await;
            tokio::time::sleep(delay).await;
        } => {}
        _ = stop.wait_for(|stop| *stop) => return seen,
    }
    let subscribe = pb::WatchRequest {
        request: Some(pb::watch_request::Request::Subscribe(pb::Subscribe {
            resources: vec![target],
            ..Default::default()
        })),
    };
    if requests.send(subscribe).await.is_err() {
        ended(&mut seen, "ENDED", "the call closed before subscribing");
        return seen;
    }
    let mut joined = false;
    loop {
        let message = tokio::select! {
            message = events.message() => message,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let event = match message {
            Ok(Some(event)) => event,
            Ok(None) => {
                ended(&mut seen, "ENDED", "the server ended the stream");
                break;
            }
            Err(status) => {
                ended(&mut seen, code_name(status.code()), status.message());
                break;
            }
        };
        let received = now_micros();
        shared.touch();
        if !joined {
            joined = true;
            shared.joined.fetch_add(1, Ordering::Relaxed);
        }
        match event.event {
            Some(Event::ResourceChanged(changed)) => {
                if shared.measuring.load(Ordering::Relaxed)
                    && let Some(at) = changed.change_time
                {
                    let committed = at.seconds * 1_000_000 + i64::from(at.nanos) / 1_000;
                    seen.latencies
                        .push(u64::try_from(received - committed).unwrap_or(0));
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Event::PresenceChanged(_)) => {
                seen.presence += 1;
                shared.presence.fetch_add(1, Ordering::Relaxed);
            }
            Some(Event::Resync(_)) => seen.resyncs += 1,
            // Events of OpenWatch streams and screen-pops; a bidirectional stream that asks for none gets none.
            Some(Event::WatchOpened(_) | Event::Heartbeat(_) | Event::InteractionRouted(_))
            | None => {}
        }
    }
    if joined && seen.error.is_some() {
        shared.left.fetch_add(1, Ordering::Relaxed);
    }
    drop(requests);
    seen
}

fn as_agent<T>(agent: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(agent) = MetadataValue::try_from(agent) {
        request.metadata_mut().insert("x-agent-id", agent);
    }
    request
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".to_owned(), |kib| format!("{:.1}", kib as f64 / 1024.0))
}

fn percent(value: Option<f64>) -> String {
    value.map_or("-".to_owned(), |p| format!("{p:.0}%"))
}

fn per_stream(kib: Option<f64>) -> String {
    kib.map_or("-".to_owned(), |k| format!("{k:.1}"))
}

fn one_line(r: &Round) -> String {
    format!(
        "{} watchers: delivered {}/{}, p50 {} ms, p99 {} ms, max {} ms; {} presence events, {} resyncs; \
         server RSS {} MiB before, {} open, {} subscribed ({} / {} KiB per stream)",
        thousands(u64::from(r.watchers)),
        thousands(r.delivered),
        thousands(r.expected),
        ms(r.latency.p50_ms),
        ms(r.latency.p99_ms),
        ms(r.latency.max_ms),
        thousands(r.presence_events),
        thousands(r.resyncs),
        mib(r.rss_before_kib),
        mib(r.rss_open_kib),
        mib(r.rss_subscribed_kib),
        per_stream(r.kib_per_open_stream),
        per_stream(r.kib_per_subscribed_stream),
    )
}

fn print_table(rounds: &[Round]) {
    println!(
        "{:>8} {:>5} {:>6} {:>7} {:>8} {:>11} {:>7} {:>19} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "watchers",
        "conns",
        "open s",
        "join s",
        "settle s",
        "presence ev",
        "resyncs",
        "delivered/expected",
        "p50 ms",
        "p99 ms",
        "max ms",
        "RSS0 MiB",
        "open MiB",
        "peak MiB",
        "subs MiB",
        "KiB/open",
        "KiB/subs",
        "srv join",
        "srv upd",
        "lg upd"
    );
    for r in rounds {
        println!(
            "{:>8} {:>5} {:>6.1} {:>7.1} {:>8.1} {:>11} {:>7} {:>19} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8}",
            thousands(u64::from(r.watchers)),
            r.connections,
            r.open_seconds,
            r.join_seconds,
            r.settle_seconds,
            thousands(r.presence_events),
            thousands(r.resyncs),
            format!("{}/{}", thousands(r.delivered), thousands(r.expected)),
            ms(r.latency.p50_ms),
            ms(r.latency.p99_ms),
            ms(r.latency.max_ms),
            mib(r.rss_before_kib),
            mib(r.rss_open_kib),
            mib(r.rss_peak_kib),
            mib(r.rss_subscribed_kib),
            per_stream(r.kib_per_open_stream),
            per_stream(r.kib_per_subscribed_stream),
            percent(r.server_cpu_join_percent),
            percent(r.server_cpu_updates_percent),
            percent(r.loadgen_cpu_updates_percent),
        );
    }
    for r in rounds {
        for (code, count) in &r.stream_errors {
            let sample = r.stream_error_samples.get(code).map_or("", String::as_str);
            println!(
                "{} watchers: {} stream(s) ended early with {code} (e.g. {sample:?})",
                thousands(u64::from(r.watchers)),
                thousands(*count)
            );
        }
        if r.update_errors > 0 {
            println!(
                "{} watchers: {} update(s) failed",
                thousands(u64::from(r.watchers)),
                r.update_errors
            );
        }
    }
    if let Some(r) = rounds.iter().find(|r| r.watchers == 1_000) {
        println!(
            "target: p99 under 50 ms at 1,000 watchers: {} ms ({})",
            ms(r.latency.p99_ms),
            if r.delivered > 0 && r.latency.p99_ms < 50.0 {
                "met"
            } else {
                "missed"
            }
        );
    }
    if let Some(r) = rounds.iter().find(|r| r.watchers == 10_000)
        && let (Some(before), Some(open)) = (r.rss_before_kib, r.rss_open_kib)
    {
        let added = open.saturating_sub(before) as f64 / 1024.0;
        println!(
            "target: 10,000 idle streams add under 200 MiB: {added:.1} MiB open ({}){}",
            if added < 200.0 { "met" } else { "missed" },
            r.rss_subscribed_kib
                .map_or(String::new(), |subscribed| format!(
                    ", {:.1} MiB once subscribed and settled",
                    subscribed.saturating_sub(before) as f64 / 1024.0
                ))
        );
    }
}
