//! Metrics in the Prometheus text format (0.0.4), served by `serve --metrics-listen ADDR` at `GET /metrics`.
//!
//! Calls follow the names of the Go gRPC Prometheus middleware (`grpc_server_started_total`,
//! `grpc_server_handled_total`, `grpc_server_handling_seconds`, with `grpc_type`, `grpc_service`, `grpc_method`
//! and `grpc_code` spelled as Go spells codes), so dashboards written for gRPC services work unchanged. Everything
//! else is `customer_context_*`. docs/metrics.md lists every series.
//!
//! A [`Metrics`] handle is cheap to clone and records nothing when metrics are off. Each server owns its own
//! registry (tests run many servers in one process). Label values are drawn from fixed sets (methods of this
//! service, codes, operation names): never an id, a phone number, an address or an agent's name.
//!
//! Gauges that describe state (pool, write-ahead log, outbox, watchers, readiness) are read when scraped.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, LazyLock, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use prometheus_client::{
    encoding::prometheus_text,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram, info::Info},
    registry::{Metric, Registry},
};
use tokio::{net::TcpListener, task::JoinHandle};
use tonic::Code;

use crate::shutdown::Shutdown;

/// Latency buckets in seconds: 0.5 ms to 10 s.
const SECONDS_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Calls per batch: OpenContext's writer's transactions, statements of new activities.
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// How long a scrape may spend reading the database (outbox, change-log head) before it answers without them.
const SCRAPE_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the guard refused a call; any other `RESOURCE_EXHAUSTED` is not a refusal.
pub const REFUSAL_REASONS: [&str; 4] = [
    "TOO_MANY_CALLS",
    "TOO_MANY_CALLS_FOR_KEY",
    "TOO_MANY_STREAMS",
    "RATE_LIMITED",
];

/// Kinds of database errors (see `crate::error::db_error_kind`).
pub const DB_ERROR_KINDS: [&str; 12] = [
    "connection",
    "pool_timeout",
    "busy",
    "server_shutdown",
    "statement_timeout",
    "serialization_failure",
    "deadlock",
    "unique_violation",
    "foreign_key_violation",
    "no_row",
    "other_database",
    "other",
];

/// Database errors by kind, counted for the whole process where they are converted (`From<DbErr> for Error`,
/// which knows no server); each server adds what came since its last scrape to its own counter.
static DB_ERRORS: [AtomicU64; DB_ERROR_KINDS.len()] =
    [const { AtomicU64::new(0) }; DB_ERROR_KINDS.len()];

/// Counts a database error of `kind` (one of [`DB_ERROR_KINDS`]; anything else counts as `other`).
pub fn count_db_error(kind: &str) {
    let index = DB_ERROR_KINDS
        .iter()
        .position(|known| *known == kind)
        .unwrap_or(DB_ERROR_KINDS.len() - 1);
    DB_ERRORS[index].fetch_add(1, Ordering::Relaxed);
}

type L1 = [(&'static str, &'static str); 1];
type L2 = [(&'static str, &'static str); 2];
type L3 = [(&'static str, &'static str); 3];
type L4 = [(&'static str, &'static str); 4];
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

/// Registers metrics in a registry as they are made.
struct Registrar(Registry);

impl Registrar {
    /// A new metric of its default kind, registered as `name` with `help`.
    fn add<M: Metric + Clone + Default>(&mut self, name: &str, help: &str) -> M {
        self.with(name, help, M::default())
    }

    /// `metric`, registered as `name` with `help`.
    fn with<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0.register(name, help, metric.clone());
        metric
    }
}

/// The metrics of one server; see the module docs. `Metrics::default()` is off.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Inner>>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Metrics").field(&self.0.is_some()).finish()
    }
}

struct Inner {
    registry: Registry,
    /// The series of every method served, by path; under `""`, those of any other path (`unknown`).
    methods: HashMap<&'static str, Arc<MethodMetrics>>,
    started: Family<L3, Counter>,
    handled: Family<L4, Counter>,
    handling: Histograms<L3>,
    in_flight: Family<L2, Gauge>,
    refused: Family<L1, Counter>,
    watch_streams: Family<L1, Gauge>,
    watch_subscriptions: Gauge,
    watch_events: Family<L1, Counter>,
    watch_resyncs: Counter,
    presence_participants: Gauge,
    feed_lag: Gauge,
    listener_reconnects: Family<L1, Counter>,
    transaction: Histograms<L1>,
    batch_size: Histogram,
    activity_batch_size: Histogram,
    connections: Family<L2, Gauge>,
    acquire: Histograms<L1>,
    acquire_waiting: Family<L1, Gauge>,
    checkpoint: Histogram,
    wal_bytes: Gauge,
    db_errors: Family<L1, Counter>,
    /// The process-wide database error counts as of the last scrape.
    db_errors_seen: Mutex<[u64; DB_ERROR_KINDS.len()]>,
    notifications_pending: Gauge,
    notifications_sent: Counter,
    notifications_failed: Counter,
    notifications_oldest: Gauge<f64, AtomicU64>,
    ready: Gauge,
}

impl Metrics {
    /// Metrics that record, for a server on `backend` (`sqlite` or `postgresql`).
    pub fn on(backend: &'static str) -> Metrics {
        let mut r = Registrar(Registry::default());
        r.0.register(
            "customer_context_build",
            "The running build",
            Info::new([("version", env!("CARGO_PKG_VERSION")), ("backend", backend)]),
        );
        let mut inner = Inner {
            methods: HashMap::new(),
            started: r.add("grpc_server_started", "Calls started, by method"),
            handled: r.add("grpc_server_handled", "Calls finished, by method and gRPC code"),
            handling: r.with(
                "grpc_server_handling_seconds",
                "Time from a call's headers to its status, by method",
                Family::new_with_constructor(seconds_histogram),
            ),
            in_flight: r.add("customer_context_rpc_in_flight", "Calls and streams in progress, by method"),
            refused: r.add(
                "customer_context_rpc_refused",
                "Calls refused by a limit (server or key concurrency, open streams, call rate), by reason",
            ),
            watch_streams: r.add(
                "customer_context_watch_streams",
                "Open watch streams, by kind (watch: bidirectional; open_watch: steered by UpdateWatch)",
            ),
            watch_subscriptions: r.add(
                "customer_context_watch_subscriptions",
                "Records subscribed to, summed over open watch streams",
            ),
            watch_events: r.add("customer_context_watch_events", "Events sent on watch streams, by kind"),
            watch_resyncs: r.add(
                "customer_context_watch_resyncs",
                "Watch streams that fell behind and were told to resync",
            ),
            presence_participants: r.add(
                "customer_context_presence_participants",
                "Agents viewing a watched record here, summed over records",
            ),
            feed_lag: r.add(
                "customer_context_change_feed_lag",
                "Changes in the log not yet handed to watchers here (log head minus position delivered)",
            ),
            listener_reconnects: r.add(
                "customer_context_listener_reconnects",
                "PostgreSQL notification listeners connected again after losing their connection, by channel",
            ),
            transaction: r.with(
                "customer_context_db_transaction_seconds",
                "Write transactions from begin to commit or rollback, by operation",
                Family::new_with_constructor(seconds_histogram),
            ),
            batch_size: r.with(
                "customer_context_open_context_batch_size",
                "Writes (OpenContext calls and every other write) committed per transaction by the SQLite writer",
                Histogram::new(BATCH_BUCKETS),
            ),
            activity_batch_size: r.with(
                "customer_context_activity_batch_size",
                "CreateActivity calls written together on PostgreSQL, per batch (one customer read, one insert)",
                Histogram::new(BATCH_BUCKETS),
            ),
            connections: r.add(
                "customer_context_db_connections",
                "Database connections by pool (read, write) and state (in_use, idle)",
            ),
            acquire: r.with(
                "customer_context_db_acquire_seconds",
                "Time waited for a connection to begin a write transaction, by pool",
                Family::new_with_constructor(seconds_histogram),
            ),
            acquire_waiting: r.add(
                "customer_context_db_acquire_waiting",
                "Write transactions waiting for a connection, by pool",
            ),
            checkpoint: r.with(
                "customer_context_sqlite_checkpoint_seconds",
                "Time to copy the SQLite write-ahead log into the database file",
                seconds_histogram(),
            ),
            wal_bytes: r.add("customer_context_sqlite_wal_bytes", "Size of the SQLite write-ahead log file"),
            db_errors: r.add("customer_context_db_errors", "Database errors by kind"),
            db_errors_seen: Mutex::new(std::array::from_fn(|index| {
                DB_ERRORS[index].load(Ordering::Relaxed)
            })),
            notifications_pending: r.add(
                "customer_context_notifications_pending",
                "Customer notifications waiting to be sent",
            ),
            notifications_sent: r.add(
                "customer_context_notifications_sent",
                "Customer notifications sent by this replica",
            ),
            notifications_failed: r.add(
                "customer_context_notifications_failed",
                "Customer notifications this replica gave up on",
            ),
            notifications_oldest: r.add(
                "customer_context_notifications_oldest_pending_seconds",
                "Age of the oldest customer notification waiting to be sent (0 when none)",
            ),
            ready: r.add("customer_context_ready", "1 while health reports SERVING, else 0"),
            registry: r.0,
        };
        let paths = METHODS
            .iter()
            .map(|(path, method)| (path.as_str(), *method));
        inner.methods = std::iter::once(("", UNKNOWN_METHOD))
            .chain(paths)
            .map(|(path, method)| (path, MethodMetrics::new(method, &inner)))
            .collect();
        Metrics(Some(Arc::new(inner)))
    }

    /// Whether this handle records.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The exposition, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Some(inner) = &self.0 {
            // Writing to a String cannot fail.
            let _ = prometheus_text::encode(&mut text, &inner.registry);
        }
        text
    }

    /// Counts a call to `path` as started; finish it with [`RpcCall::finish`].
    pub fn rpc_started(&self, path: &str) -> Option<RpcCall> {
        let inner = self.0.as_ref()?;
        let method = inner.methods.get(path).or_else(|| inner.methods.get(""))?;
        method.started.inc();
        method.in_flight.inc();
        Some(RpcCall {
            inner: inner.clone(),
            method: method.clone(),
            started: Instant::now(),
        })
    }

    /// Opens a watch stream of `kind` (`watch` or `open_watch`) until the returned guard drops.
    pub fn watch_stream(&self, kind: &'static str) -> Option<GaugeGuard> {
        let inner = self.0.as_ref()?;
        let gauge = inner.watch_streams.get_or_create(&[("kind", kind)]).clone();
        gauge.inc();
        Some(GaugeGuard(gauge))
    }

    /// Counts an event of `kind` sent on a watch stream.
    pub fn watch_event(&self, kind: &'static str) {
        if let Some(inner) = &self.0 {
            inner.watch_events.get_or_create(&[("kind", kind)]).inc();
        }
    }

    /// Counts a watch stream told to resync because it fell behind.
    pub fn watch_resync(&self) {
        if let Some(inner) = &self.0 {
            inner.watch_resyncs.inc();
        }
    }

    /// Counts a notification listener (`changes`, `presence`, `routed`) that connected again.
    pub fn listener_reconnected(&self, channel: &'static str) {
        if let Some(inner) = &self.0 {
            inner
                .listener_reconnects
                .get_or_create(&[("channel", channel)])
                .inc();
        }
    }

    /// Times a write transaction of `operation` until the returned timer drops.
    pub fn transaction(&self, operation: &'static str) -> Option<Timer> {
        let inner = self.0.as_ref()?;
        Some(Timer {
            histogram: inner
                .transaction
                .get_or_create(&[("operation", operation)])
                .clone(),
            started: Instant::now(),
        })
    }

    /// Counts a write transaction of pool `pool` waiting for its connection, until the returned guard drops;
    /// then records the wait.
    pub fn acquiring(&self, pool: &'static str) -> Option<Acquiring> {
        let inner = self.0.as_ref()?;
        let waiting = inner
            .acquire_waiting
            .get_or_create(&[("pool", pool)])
            .clone();
        waiting.inc();
        Some(Acquiring {
            waiting: GaugeGuard(waiting),
            timer: Timer {
                histogram: inner.acquire.get_or_create(&[("pool", pool)]).clone(),
                started: Instant::now(),
            },
        })
    }

    /// Records an OpenContext batch of `calls` calls.
    pub fn open_context_batch(&self, calls: usize) {
        if let Some(inner) = &self.0 {
            inner.batch_size.observe(calls as f64);
        }
    }

    /// Records a batch of `activities` new activities written together (PostgreSQL).
    pub fn activity_batch(&self, activities: usize) {
        if let Some(inner) = &self.0 {
            inner.activity_batch_size.observe(activities as f64);
        }
    }

    /// Records a checkpoint of the SQLite write-ahead log.
    pub fn checkpoint(&self, took: Duration) {
        if let Some(inner) = &self.0 {
            inner.checkpoint.observe(took.as_secs_f64());
        }
    }

    /// Counts a customer notification sent.
    pub fn notification_sent(&self) {
        if let Some(inner) = &self.0 {
            inner.notifications_sent.inc();
        }
    }

    /// Counts a customer notification given up on.
    pub fn notification_failed(&self) {
        if let Some(inner) = &self.0 {
            inner.notifications_failed.inc();
        }
    }

    /// Sets the gauges read at scrape time.
    pub fn set_state(&self, state: &State) {
        let Some(inner) = &self.0 else {
            return;
        };
        inner.ready.set(i64::from(state.ready));
        inner.watch_subscriptions.set(saturate(state.subscriptions));
        inner
            .presence_participants
            .set(saturate(state.participants));
        if let Some(lag) = state.feed_lag {
            inner.feed_lag.set(lag.max(0));
        }
        for pool in &state.pools {
            inner
                .connections
                .get_or_create(&[("pool", pool.name), ("state", "in_use")])
                .set(i64::from(pool.size.saturating_sub(pool.idle)));
            inner
                .connections
                .get_or_create(&[("pool", pool.name), ("state", "idle")])
                .set(i64::from(pool.idle));
        }
        if let Some(bytes) = state.wal_bytes {
            inner
                .wal_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        let mut seen = inner
            .db_errors_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (index, kind) in DB_ERROR_KINDS.into_iter().enumerate() {
            let total = DB_ERRORS[index].load(Ordering::Relaxed);
            let new = total.saturating_sub(seen[index]);
            if new > 0 {
                inner.db_errors.get_or_create(&[("kind", kind)]).inc_by(new);
                seen[index] = total;
            }
        }
        drop(seen);
        if let Some((pending, oldest)) = state.outbox {
            inner.notifications_pending.set(saturate(pending));
            inner
                .notifications_oldest
                .set(oldest.map_or(0.0, |age| age.as_secs_f64()));
        }
    }
}

fn saturate(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The state read when scraped. `None` fields were not read (not this backend, or the database did not answer
/// in time) and keep their last value.
#[derive(Debug, Default)]
pub struct State {
    pub ready: bool,
    pub subscriptions: usize,
    pub participants: usize,
    pub feed_lag: Option<i64>,
    pub pools: Vec<PoolState>,
    pub wal_bytes: Option<u64>,
    /// Pending notifications and the age of the oldest.
    pub outbox: Option<(usize, Option<Duration>)>,
}

/// Connections of one pool.
#[derive(Debug)]
pub struct PoolState {
    pub name: &'static str,
    pub size: u32,
    pub idle: u32,
}

/// A call counted as started by [`Metrics::rpc_started`].
pub struct RpcCall {
    inner: Arc<Inner>,
    method: Arc<MethodMetrics>,
    started: Instant,
}

impl RpcCall {
    /// Counts the call as finished with `code`; `refusal` is the reason a limit refused it, if one did.
    pub fn finish(self, code: Code, refusal: Option<&'static str>) {
        let method = &self.method;
        method
            .handling
            .observe(self.started.elapsed().as_secs_f64());
        let index = usize::try_from(i32::from(code)).unwrap_or(0);
        let handled = method.handled[index.min(CODES - 1)].get_or_init(|| {
            let [kind, service, name] = method.labels;
            self.inner
                .handled
                .get_or_create(&[kind, service, name, ("grpc_code", go_code_name(code))])
                .clone()
        });
        handled.inc();
        if let Some(reason) = refusal {
            self.inner
                .refused
                .get_or_create(&[("reason", reason)])
                .inc();
        }
    }
}

impl Drop for RpcCall {
    fn drop(&mut self) {
        self.method.in_flight.dec();
    }
}

/// How many gRPC codes there are (0 to 16).
const CODES: usize = 17;

/// The series of one method, resolved once so that a call costs one map lookup and a few atomic updates.
struct MethodMetrics {
    labels: L3,
    started: Counter,
    handling: Histogram,
    in_flight: Gauge,
    /// `grpc_server_handled_total` by code, made on first use (a method's series list only the codes it
    /// returned).
    handled: [std::sync::OnceLock<Counter>; CODES],
}

impl MethodMetrics {
    fn new(method: GrpcMethod, inner: &Inner) -> Arc<MethodMetrics> {
        let labels = method.labels();
        Arc::new(MethodMetrics {
            labels,
            started: inner.started.get_or_create(&labels).clone(),
            handling: inner.handling.get_or_create(&labels).clone(),
            in_flight: inner
                .in_flight
                .get_or_create(&[labels[1], labels[2]])
                .clone(),
            handled: Default::default(),
        })
    }
}

/// Decrements its gauge when dropped.
pub struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Records the time since it was made into its histogram when dropped.
pub struct Timer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

/// A write transaction waiting for its connection; drop it once the transaction has begun.
pub struct Acquiring {
    waiting: GaugeGuard,
    timer: Timer,
}

impl Acquiring {
    /// The transaction began (or failed to): records the wait.
    pub fn acquired(self) {
        drop(self.timer);
        drop(self.waiting);
    }
}

/// The labels of a method: from a fixed table, so a client cannot mint label values by calling made-up paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcMethod {
    pub kind: &'static str,
    pub service: &'static str,
    pub method: &'static str,
}

const UNKNOWN_METHOD: GrpcMethod = GrpcMethod {
    kind: "unary",
    service: "unknown",
    method: "unknown",
};

impl GrpcMethod {
    /// The method at `path` (`/package.Service/Method`); any path this server does not serve is `unknown`.
    pub fn of(path: &str) -> GrpcMethod {
        METHODS.get(path).copied().unwrap_or(UNKNOWN_METHOD)
    }

    fn labels(self) -> L3 {
        [
            ("grpc_type", self.kind),
            ("grpc_service", self.service),
            ("grpc_method", self.method),
        ]
    }
}

/// Every method this server serves: the public services (from the descriptor set it is built from), health and
/// reflection.
static METHODS: LazyLock<HashMap<String, GrpcMethod>> = LazyLock::new(|| {
    let served = crate::public_methods().into_iter().map(|method| {
        (
            method.service,
            method.method,
            method.client_streaming,
            method.server_streaming,
        )
    });
    let health = [("Check", false), ("Watch", true)].map(|(method, server)| {
        (
            "grpc.health.v1.Health".to_owned(),
            method.to_owned(),
            false,
            server,
        )
    });
    let reflection = ["grpc.reflection.v1", "grpc.reflection.v1alpha"].map(|package| {
        (
            format!("{package}.ServerReflection"),
            "ServerReflectionInfo".to_owned(),
            true,
            true,
        )
    });
    served
        .chain(health)
        .chain(reflection)
        .map(|(service, method, client, server)| {
            let kind = match (client, server) {
                (false, false) => "unary",
                (false, true) => "server_stream",
                (true, false) => "client_stream",
                (true, true) => "bidi_stream",
            };
            let path = format!("/{service}/{method}");
            // A fixed set, built once: leaking gives the labels the 'static lifetime the registry keys want.
            let service: &'static str = Box::leak(service.into_boxed_str());
            let method: &'static str = Box::leak(method.into_boxed_str());
            (
                path,
                GrpcMethod {
                    kind,
                    service,
                    method,
                },
            )
        })
        .collect()
});

/// A gRPC code as Go spells it (`codes.Code.String()`), the spelling of `grpc_code` in the Go middleware's
/// metrics.
pub fn go_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Reads the state gauges when scraped.
pub trait Scrape: Send + Sync + 'static {
    /// The state now; reads that take longer than `SCRAPE_QUERY_TIMEOUT` are left out.
    fn state(&self) -> impl Future<Output = State> + Send;
}

/// Serves `GET /metrics` on `listener` until shutdown begins. Any other path is 404, any other method 405.
pub fn serve<S: Scrape>(
    listener: TcpListener,
    metrics: Metrics,
    scrape: S,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    let scrape = Arc::new(scrape);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.begun() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, _) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let metrics = metrics.clone();
            let scrape = scrape.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: Request<hyper::body::Incoming>| {
                        let metrics = metrics.clone();
                        let scrape = scrape.clone();
                        async move { Ok::<_, Infallible>(answer(&request, &metrics, &*scrape).await) }
                    },
                );
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "metrics connection ended");
                }
            });
        }
    })
}

async fn answer<S: Scrape>(
    request: &Request<hyper::body::Incoming>,
    metrics: &Metrics,
    scrape: &S,
) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    };
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    metrics.set_state(&scrape.state().await);
    let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Binds the metrics listener at `addr`.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))
}

/// Runs `read`, or gives up after [`SCRAPE_QUERY_TIMEOUT`].
pub async fn within_scrape<T>(read: impl Future<Output = Option<T>>) -> Option<T> {
    tokio::time::timeout(SCRAPE_QUERY_TIMEOUT, read)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_method_has_labels_and_unknown_paths_share_one() {
        let get = GrpcMethod::of("/customer_context.v1.CustomerService/GetCustomer");
        assert_eq!(
            get,
            GrpcMethod {
                kind: "unary",
                service: "customer_context.v1.CustomerService",
                method: "GetCustomer"
            }
        );
        assert_eq!(
            GrpcMethod::of("/customer_context.v1.WatchService/Watch").kind,
            "bidi_stream"
        );
        assert_eq!(
            GrpcMethod::of("/customer_context.v1.WatchService/OpenWatch").kind,
            "server_stream"
        );
        assert_eq!(
            GrpcMethod::of("/grpc.health.v1.Health/Check").method,
            "Check"
        );
        assert_eq!(
            GrpcMethod::of("/customer_context.v1.CustomerService/+15551234567"),
            UNKNOWN_METHOD
        );
        assert_eq!(GrpcMethod::of("/anything/else"), UNKNOWN_METHOD);
        for (path, _) in crate::auth::policy::METHODS {
            assert_ne!(GrpcMethod::of(path), UNKNOWN_METHOD, "{path}");
        }
    }

    #[test]
    fn off_records_nothing_and_renders_nothing() {
        let metrics = Metrics::default();
        assert!(
            metrics
                .rpc_started("/grpc.health.v1.Health/Check")
                .is_none()
        );
        metrics.watch_event("change");
        assert_eq!(metrics.render(), "");
    }

    #[test]
    fn a_finished_call_counts_once_and_leaves_nothing_in_flight() {
        let metrics = Metrics::on("sqlite");
        let call = metrics
            .rpc_started("/customer_context.v1.CustomerService/GetCustomer")
            .unwrap();
        let during = metrics.render();
        assert!(during.contains(
            "customer_context_rpc_in_flight{grpc_service=\"customer_context.v1.CustomerService\",grpc_method=\"GetCustomer\"} 1"
        ), "{during}");
        call.finish(Code::NotFound, None);
        let after = metrics.render();
        assert!(after.contains(
            "grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"customer_context.v1.CustomerService\",grpc_method=\"GetCustomer\",grpc_code=\"NotFound\"} 1"
        ), "{after}");
        assert!(after.contains(
            "customer_context_rpc_in_flight{grpc_service=\"customer_context.v1.CustomerService\",grpc_method=\"GetCustomer\"} 0"
        ), "{after}");
        assert!(
            after.contains("customer_context_build_info{version=\""),
            "{after}"
        );
    }
}
