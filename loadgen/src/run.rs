//! `loadgen run`: drives scenarios against a running server, closed-loop or open-loop, and reports throughput
//! and latency next to the health baseline measured in the same run.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};
use clap::ArgAction;
use customer_context::config::parse_duration;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::{sync::Semaphore, task::JoinSet, time::Instant};
use tonic::transport::{Channel, Endpoint};

use crate::{
    fixture::{Book, MAX_CUSTOMERS, customer_number, rng_for},
    report::{Percentiles, Recorder, code_name, ms, proc, shares, thousands},
    server_metrics::{self, ServerFigures, Snapshot},
    traffic::{Clients, Scenario, Traffic},
};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Server to drive; several (repeated or comma-separated, e.g. replicas on one database) share the
    /// connections round-robin, so each gets an equal part of the load.
    #[arg(
        long,
        visible_alias = "target",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50051"
    )]
    pub addr: Vec<String>,

    /// Scenarios to run one after the other, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub scenario: Vec<Scenario>,

    /// Closed loop: this many workers, each sending its next call as soon as the previous one answered
    /// (default 32 when --rate is not given).
    #[arg(long, conflicts_with = "rate", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: Option<u32>,

    /// Open loop: this many calls per second on a fixed schedule, whatever the answers; latency is measured
    /// from each call's intended send time, so queueing in the client or server is not hidden.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: Option<u32>,

    /// Measured time per scenario.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Unmeasured time before each scenario (connections, caches, JIT-free but page-cache-full).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// HTTP/2 connections to spread the calls over.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub connections: u32,

    /// Run the health scenario first with the same load and report every scenario's throughput as a ratio
    /// to it (`--baseline false` to skip).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub baseline: bool,

    /// Customers in the seeded book (default: probed from the server by customer number).
    #[arg(long)]
    pub customers: Option<u64>,

    /// Seed the database was filled with (`loadgen seed --seed`).
    #[arg(long, default_value_t = crate::DEFAULT_SEED)]
    pub seed: u64,

    /// A call without an answer after this long counts as DEADLINE_EXCEEDED.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Open loop: most calls in flight; a call due while this many are waiting is not sent and counts as
    /// CLIENT_OVERLOAD.
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,

    /// Page size of the search scenario.
    #[arg(long, default_value_t = 20)]
    pub page_size: i32,

    /// The search scenario's queries, taken at random instead of the book's mix of name, company and phone
    /// prefixes (repeat the flag or separate with commas), e.g. prefixes whose match count the database
    /// misjudges.
    #[arg(long = "search-query", value_delimiter = ',')]
    pub search_queries: Vec<String>,

    /// The server's process id: report its CPU use during each scenario (Linux /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// The server's metrics page (`serve --metrics-listen`), e.g. http://127.0.0.1:9464/metrics: scraped
    /// before and after each measured window to report the server's own figures for it (calls and p50/p99 of
    /// the scenario's method, OpenContext batch size, write-acquire wait, transaction time). With several
    /// servers, give the one whose figures to read.
    #[arg(long)]
    pub metrics_url: Option<String>,

    /// Print the results as JSON on standard output (progress still goes to standard error).
    #[arg(long)]
    pub json: bool,
}

/// How calls are paced.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    Closed { concurrency: u32 },
    Open { rate: u32 },
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Load::Closed { concurrency } => write!(f, "closed, {concurrency} workers"),
            Load::Open { rate } => write!(f, "open, {} req/s", thousands(u64::from(*rate))),
        }
    }
}

/// The measured result of one scenario.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub scenario: &'static str,
    pub load: Load,
    pub seconds: f64,
    pub ok: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
    pub error_samples: std::collections::BTreeMap<String, String>,
    pub outcomes: std::collections::BTreeMap<&'static str, u64>,
    /// Successful calls per second.
    pub throughput: f64,
    /// Throughput divided by the health baseline's.
    pub vs_health: Option<f64>,
    pub latency: Percentiles,
    /// CPU use in the measured window, in percent of one core.
    pub server_cpu_percent: Option<f64>,
    pub loadgen_cpu_percent: Option<f64>,
    /// The server's figures for the measured window, from its metrics (`--metrics-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerFigures>,
}

/// Everything a run reports.
#[derive(Debug, Serialize)]
struct RunReport<'a> {
    addr: &'a [String],
    customers: Option<u64>,
    seed: u64,
    connections: u32,
    warmup_seconds: f64,
    results: &'a [Outcome],
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let load = match (args.concurrency, args.rate) {
        (_, Some(rate)) => Load::Open { rate },
        (concurrency, None) => Load::Closed {
            concurrency: concurrency.unwrap_or(32),
        },
    };
    let mut scenarios: Vec<Scenario> = Vec::new();
    if args.baseline {
        scenarios.push(Scenario::Health);
    }
    for scenario in &args.scenario {
        if !scenarios.contains(scenario) {
            scenarios.push(*scenario);
        }
    }

    if let Some(url) = &args.metrics_url {
        let snapshot = server_metrics::scrape(url)
            .await
            .with_context(|| format!("cannot read the server's metrics at {url}"))?;
        if !snapshot.has("customer_context_build_info") {
            eprintln!(
                "warning: {url} does not look like customer-context's metrics (no customer_context_build_info)"
            );
        }
    }
    let channels = connect_round_robin(&args.addr, args.connections).await?;
    let clients: Vec<Clients> = channels.into_iter().map(Clients::new).collect();
    let customers = if scenarios.iter().any(|s| s.needs_book()) {
        let mut probe = clients[0].clone();
        Some(book_size(&mut probe, args.seed, args.customers).await?)
    } else {
        None
    };
    let traffic = Arc::new(Traffic {
        book: Book::new(args.seed, customers.unwrap_or(0)),
        run_id: run_id(),
        page_size: args.page_size,
        search_queries: args.search_queries.clone(),
    });
    if let Some(customers) = customers {
        eprintln!(
            "{}: book of {} customers (seed {}), {} connection(s)",
            args.addr.join(", "),
            thousands(customers),
            args.seed,
            args.connections
        );
    }

    let mut results: Vec<Outcome> = Vec::new();
    for scenario in scenarios {
        eprintln!(
            "{}: {load}, {:?} warmup + {:?} measured ...",
            scenario.name(),
            args.warmup,
            args.duration
        );
        let mut outcome = drive(&args, &clients, &traffic, scenario, load).await;
        outcome.vs_health = results
            .iter()
            .find(|r| r.scenario == Scenario::Health.name() && r.throughput > 0.0)
            .map(|health| outcome.throughput / health.throughput);
        eprintln!("  {}", one_line(&outcome));
        if let Some(server) = &outcome.server {
            eprintln!("  server: {}", server.describe());
        }
        results.push(outcome);
    }

    if args.json {
        let report = RunReport {
            addr: &args.addr,
            customers,
            seed: args.seed,
            connections: args.connections,
            warmup_seconds: args.warmup.as_secs_f64(),
            results: &results,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&results, customers);
    }
    Ok(())
}

/// Opens `count` HTTP/2 connections, the i-th to `addrs[i % addrs.len()]`.
pub async fn connect_round_robin(addrs: &[String], count: u32) -> anyhow::Result<Vec<Channel>> {
    if addrs.is_empty() {
        bail!("no server address given");
    }
    if (count as usize) < addrs.len() {
        bail!(
            "{count} connection(s) cannot reach {} servers; raise --connections",
            addrs.len()
        );
    }
    let mut channels = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        channels.extend(connect(&addrs[i % addrs.len()], 1).await?);
    }
    Ok(channels)
}

/// Opens `count` HTTP/2 connections to `addr`.
pub async fn connect(addr: &str, count: u32) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(addr.to_owned())
        .with_context(|| {
            format!("{addr:?} is not a valid address (expected e.g. http://127.0.0.1:50051)")
        })?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::with_capacity(count as usize);
    for _ in 0..count {
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("cannot connect to {addr}"))?,
        );
    }
    Ok(channels)
}

/// The number of customers seeded with `seed`: given, or probed by customer number (C000000000 ...), and
/// checked against the ids the seed makes.
async fn book_size(clients: &mut Clients, seed: u64, given: Option<u64>) -> anyhow::Result<u64> {
    let mut exists = async |i: u64| -> anyhow::Result<Option<String>> {
        clients
            .customer_by_number(customer_number(i))
            .await
            .with_context(|| format!("cannot look up customer number {}", customer_number(i)))
    };
    let customers = match given {
        Some(n) => n,
        None => {
            if exists(0).await?.is_none() {
                bail!(
                    "the server has no seeded customers (customer number {} not found); \
                     fill its database with `loadgen seed` first",
                    customer_number(0)
                );
            }
            // Exponential search for an upper bound, then binary search for the last existing number.
            let (mut low, mut high) = (0u64, 1u64);
            while high < MAX_CUSTOMERS && exists(high).await?.is_some() {
                low = high;
                high = (high * 2).min(MAX_CUSTOMERS);
            }
            while high - low > 1 {
                let middle = low + (high - low) / 2;
                if exists(middle).await?.is_some() {
                    low = middle;
                } else {
                    high = middle;
                }
            }
            low + 1
        }
    };
    let book = Book::new(seed, customers);
    for i in [0, customers.saturating_sub(1)] {
        let expected = book.customer(i).customer.id;
        match exists(i).await? {
            Some(id) if id == expected => {}
            Some(_) => bail!(
                "customer {} was not made with --seed {seed}; pass the seed given to `loadgen seed`",
                customer_number(i)
            ),
            None => bail!(
                "customer {} does not exist; the database holds fewer than {customers} seeded customers",
                customer_number(i)
            ),
        }
    }
    Ok(customers)
}

/// A prefix for this run's interaction ids.
fn run_id() -> String {
    let micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("loadgen-{micros:x}")
}

/// What the measurement window shares between workers.
struct Window {
    recorder: Mutex<Recorder>,
    /// When measurement starts (calls sent, or due, before are warmup).
    from: Instant,
    /// When the last measured call finished.
    last_done: Mutex<Instant>,
}

impl Window {
    fn lock(&self) -> MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, started: Instant, result: Result<Option<&'static str>, tonic::Status>) {
        let done = Instant::now();
        if started < self.from {
            return;
        }
        match result {
            Ok(outcome) => self.lock().success(done - started, outcome),
            Err(status) => self
                .lock()
                .failure(code_name(status.code()), status.message()),
        }
        let mut last = self.last_done.lock().unwrap_or_else(|p| p.into_inner());
        *last = (*last).max(done);
    }
}

/// Runs one scenario: warmup, then the measured window.
async fn drive(
    args: &RunArgs,
    clients: &[Clients],
    traffic: &Arc<Traffic>,
    scenario: Scenario,
    load: Load,
) -> Outcome {
    let start = Instant::now();
    let window = Arc::new(Window {
        recorder: Mutex::new(Recorder::default()),
        from: start + args.warmup,
        last_done: Mutex::new(start + args.warmup),
    });
    let end = window.from + args.duration;
    let cpu = tokio::spawn(cpu_use(window.from, end, args.server_pid));
    let scraped_before = args.metrics_url.clone().map(|url| {
        let from = window.from;
        tokio::spawn(async move {
            tokio::time::sleep_until(from).await;
            server_metrics::scrape(&url).await
        })
    });
    let scenario_seed = args.seed ^ (scenario as u64).wrapping_mul(0x51_7CC1_B727_220A);

    match load {
        Load::Closed { concurrency } => {
            let mut workers = JoinSet::new();
            for worker in 0..u64::from(concurrency) {
                let mut client = clients[worker as usize % clients.len()].clone();
                let traffic = traffic.clone();
                let window = window.clone();
                let timeout = args.timeout;
                workers.spawn(async move {
                    let mut rng = rng_for(scenario_seed, worker);
                    let mut seq = worker << 40;
                    loop {
                        let started = Instant::now();
                        if started >= end {
                            break;
                        }
                        seq += 1;
                        let call = traffic.call(scenario, &mut rng, seq);
                        let result = client.send(call, timeout).await;
                        window.record(started, result);
                    }
                });
            }
            while workers.join_next().await.is_some() {}
        }
        Load::Open { rate } => {
            let in_flight = Arc::new(Semaphore::new(args.max_in_flight));
            let period = Duration::from_secs(1) / rate;
            let mut rng = ChaCha8Rng::seed_from_u64(scenario_seed);
            let mut tasks = JoinSet::new();
            for seq in 0u64.. {
                let due = start + period * u32::try_from(seq).unwrap_or(u32::MAX);
                if due >= end {
                    break;
                }
                if due > Instant::now() {
                    tokio::time::sleep_until(due).await;
                }
                // Reap finished calls so the set does not grow with the run.
                while tasks.try_join_next().is_some() {}
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    if due >= window.from {
                        window.lock().failure(
                            "CLIENT_OVERLOAD",
                            "too many calls in flight (--max-in-flight); the call was not sent",
                        );
                    }
                    continue;
                };
                let call = traffic.call(scenario, &mut rng, seq);
                let mut client = clients[seq as usize % clients.len()].clone();
                let window = window.clone();
                let timeout = args.timeout;
                tasks.spawn(async move {
                    let result = client.send(call, timeout).await;
                    window.record(due, result);
                    drop(permit);
                });
            }
            while tasks.join_next().await.is_some() {}
        }
    }

    let (server_cpu, loadgen_cpu) = cpu.await.unwrap_or((None, None));
    let server = match (scraped_before, &args.metrics_url) {
        (Some(before), Some(url)) => server_figures(before.await, url, scenario).await,
        _ => None,
    };
    let last_done = *window.last_done.lock().unwrap_or_else(|p| p.into_inner());
    let seconds = (last_done.max(end) - window.from).as_secs_f64();
    let recorder = std::mem::take(&mut *window.lock());
    Outcome {
        scenario: scenario.name(),
        load,
        seconds,
        ok: recorder.ok,
        throughput: recorder.ok as f64 / seconds.max(1e-9),
        vs_health: None,
        latency: Percentiles::of(&recorder.latency),
        errors: recorder.errors,
        error_samples: recorder.error_samples,
        outcomes: recorder.outcomes,
        server_cpu_percent: server_cpu,
        loadgen_cpu_percent: loadgen_cpu,
        server,
    }
}

/// The server's figures for `scenario` between the scrape at the start of the measured window and one now;
/// `None` (with a warning) when either scrape failed or the metrics say nothing about the window.
async fn server_figures(
    before: Result<anyhow::Result<Snapshot>, tokio::task::JoinError>,
    url: &str,
    scenario: Scenario,
) -> Option<ServerFigures> {
    let scraped = async {
        let before = before??;
        let after = server_metrics::scrape(url).await?;
        anyhow::Ok((before, after))
    };
    match scraped.await {
        Ok((before, after)) => {
            let (service, method) = scenario.rpc();
            let figures = ServerFigures::between(&before, &after, service, method);
            (!figures.is_empty()).then_some(figures)
        }
        Err(err) => {
            eprintln!(
                "warning: no server figures for {}: {err:#}",
                scenario.name()
            );
            None
        }
    }
}

/// CPU use of the server (if its pid is known) and of this process between `from` and `to`, in percent of
/// one core.
async fn cpu_use(from: Instant, to: Instant, server: Option<u32>) -> (Option<f64>, Option<f64>) {
    tokio::time::sleep_until(from).await;
    let before = (
        server.and_then(|pid| proc::cpu_time(Some(pid))),
        proc::cpu_time(None),
    );
    tokio::time::sleep_until(to).await;
    let after = (
        server.and_then(|pid| proc::cpu_time(Some(pid))),
        proc::cpu_time(None),
    );
    let wall = (to - from).as_secs_f64().max(1e-9);
    let percent = |a: Option<Duration>, b: Option<Duration>| {
        Some(b?.saturating_sub(a?).as_secs_f64() * 100.0 / wall)
    };
    (percent(before.0, after.0), percent(before.1, after.1))
}

fn one_line(o: &Outcome) -> String {
    let mut line = format!(
        "{}: {} req/s",
        o.scenario,
        thousands(o.throughput.round() as u64)
    );
    if let Some(ratio) = o.vs_health {
        line.push_str(&format!(" = {ratio:.2} x health"));
    }
    line.push_str(&format!(
        ", p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        ms(o.latency.p50_ms),
        ms(o.latency.p99_ms),
        ms(o.latency.p999_ms),
        ms(o.latency.max_ms)
    ));
    let errors: u64 = o.errors.values().sum();
    if errors > 0 {
        line.push_str(&format!(", {} errors", thousands(errors)));
    }
    line
}

fn print_table(results: &[Outcome], customers: Option<u64>) {
    if let Some(customers) = customers {
        println!("customers in the database: {}", thousands(customers));
    }
    println!(
        "{:<16} {:<22} {:>10} {:>9} {:>9} {:>8} {:>8} {:>9} {:>8} {:>10} {:>8} {:>9}",
        "scenario",
        "load",
        "ok",
        "errors",
        "req/s",
        "x health",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "srv cpu",
        "lg cpu"
    );
    for o in results {
        let percent = |p: Option<f64>| p.map_or("-".to_owned(), |p| format!("{p:.0}%"));
        println!(
            "{:<16} {:<22} {:>10} {:>9} {:>9} {:>8} {:>8} {:>9} {:>8} {:>10} {:>8} {:>9}",
            o.scenario,
            o.load.to_string(),
            thousands(o.ok),
            thousands(o.errors.values().sum()),
            thousands(o.throughput.round() as u64),
            o.vs_health.map_or("-".to_owned(), |r| format!("{r:.2}")),
            ms(o.latency.p50_ms),
            ms(o.latency.p99_ms),
            ms(o.latency.p999_ms),
            ms(o.latency.max_ms),
            percent(o.server_cpu_percent),
            percent(o.loadgen_cpu_percent),
        );
    }
    for o in results {
        if !o.outcomes.is_empty() {
            println!("{}: {}", o.scenario, shares(&o.outcomes));
        }
        for (code, count) in &o.errors {
            let sample = o.error_samples.get(code).map_or("", String::as_str);
            println!(
                "{}: {} x {code} (e.g. {sample:?})",
                o.scenario,
                thousands(*count)
            );
        }
    }
    for o in results {
        if let Some(server) = &o.server {
            println!("{}: server: {}", o.scenario, server.describe());
        }
    }
    for o in results {
        if let Some(ratio) = o.vs_health {
            println!(
                "{}: {} req/s = {ratio:.2} x health",
                o.scenario,
                thousands(o.throughput.round() as u64)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_reads_well() {
        assert_eq!(
            Load::Closed { concurrency: 8 }.to_string(),
            "closed, 8 workers"
        );
        assert_eq!(Load::Open { rate: 1000 }.to_string(), "open, 1,000 req/s");
    }

    #[test]
    fn run_ids_differ_between_runs() {
        let a = run_id();
        std::thread::sleep(Duration::from_millis(2));
        assert_ne!(a, run_id());
    }
}
