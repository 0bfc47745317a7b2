//! Assembles the running service: the public gRPC services, health, reflection, gRPC-web with CORS, the call
//! log, and graceful shutdown with a bounded drain.
//!
//! Layers, outermost first: the gadget's page (`/`, `/gadget/`; see [`crate::gadget`]) → CORS (browser
//! preflights never reach gRPC) → gRPC-web translation → call log (sees native gRPC responses, so the status is in
//! the trailers) → guard (concurrency limit, authentication, roles, rate limit, deadline; see [`crate::auth`]) →
//! router. TLS, when configured, wraps every connection.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use anyhow::{Context as _, anyhow};
use http::{HeaderName, HeaderValue, Method};
use prost::Message as _;
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
    task::JoinHandle,
    time::Sleep,
};
use tokio_stream::Stream;
use tonic::{
    Request, Response, Status,
    service::RoutesBuilder,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::{
    pb::{
        HealthCheckRequest, HealthCheckResponse,
        health_server::{Health, HealthServer},
    },
    server::{HealthReporter, HealthService},
};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{
    api::ApiState,
    auth::{Authenticator, Guard, GuardLayer, KeySlots, RateLimiter},
    config::{AuthMode, SecuritySettings, Settings},
    connection::GatheringConnection,
    events::Hub,
    gadget::GadgetLayer,
    readiness::Readiness,
    shutdown::{Shutdown, UntilShutdown},
    store::{Store, redact},
    telemetry::{
        CallLogLayer,
        metrics::{Metrics, Scrape, State},
    },
};

/// What the metrics read when scraped.
struct Scraped {
    store: Store,
    hub: Arc<Hub>,
    readiness: Readiness,
}

impl Scrape for Scraped {
    async fn state(&self) -> State {
        use crate::telemetry::metrics::within_scrape;
        let (subscriptions, participants) = self.hub.watch_counts();
        let head = within_scrape(async { self.store.last_change_seq().await.ok() }).await;
        let outbox = within_scrape(async { self.store.pending_notifications().await.ok() }).await;
        let now = crate::domain::time::now_micros();
        State {
            ready: self.readiness.is_serving().await,
            subscriptions,
            participants,
            feed_lag: head.map(|head| head - self.hub.last_seq()),
            pools: self.store.pool_states(),
            wal_bytes: self.store.wal_bytes(),
            outbox: outbox.map(|(pending, oldest)| {
                (
                    usize::try_from(pending).unwrap_or(usize::MAX),
                    oldest.map(|queued| {
                        std::time::Duration::from_micros(u64::try_from(now - queued).unwrap_or(0))
                    }),
                )
            }),
        }
    }
}

/// Streams a client may open and reset before the server has accepted them (hyper's default, kept explicit: it
/// bounds the "rapid reset" flood), and streams the server may reset for protocol errors before it closes the
/// connection.
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
const MAX_LOCAL_ERROR_RESETS: usize = 256;
/// Largest header list a client may send (names, values and 32 bytes per entry); calls of this API send a few
/// hundred bytes.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// HTTP/2 PING interval on idle connections, and how long to wait for the answer before closing.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the notification sender may take to finish the message in flight at shutdown.
const NOTIFIER_STOP_TIMEOUT: Duration =
    crate::notify::SEND_TIMEOUT.saturating_add(Duration::from_secs(5));
/// How long closing the database may take after the drain.
const STORE_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after an accept error that is not about one connection (e.g. out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Request headers a browser may send over gRPC-web.
const CORS_ALLOW_HEADERS: [&str; 6] = [
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "content-type",
    "authorization",
    "x-agent-id",
];
/// Response headers a browser may read: the status of trailers-only responses.
const CORS_EXPOSE_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// A service started by [`RunningServer::start`], serving in a background task.
///
/// Stop it with [`RunningServer::shutdown`]. Dropping it instead begins the same graceful shutdown without
/// waiting for it and without closing the database.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    /// Where `GET /metrics` is served (with --metrics-listen).
    metrics_addr: Option<SocketAddr>,
    metrics_task: Option<JoinHandle<()>>,
    store: Store,
    /// What health reports: follows the database until shutdown begins.
    readiness: Readiness,
    /// Probes the database for `readiness`.
    probe: JoinHandle<()>,
    begin: watch::Sender<bool>,
    shutdown: Shutdown,
    grace: Duration,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    /// Follows the change log for watch streams.
    feed: crate::events::feed::Feed,
    /// Shares presence with other replicas (PostgreSQL).
    presence: Option<crate::events::presence::PresenceSync>,
    /// Delivers customer notifications (with --smtp-url).
    notifier: Option<crate::notify::Sender>,
    /// Writes agents' Recent views; flushed before the database closes.
    recent: crate::store::recent::Recorder,
}

impl RunningServer {
    /// Validates settings, connects the store, migrates, binds `settings.listen` (port 0 picks a free port) and
    /// serves in a background task. Returns once the port is bound and accepting.
    pub async fn start(settings: Settings) -> anyhow::Result<RunningServer> {
        settings.validate()?;
        let region = crate::domain::contact::parse_region(&settings.default_region)
            .map_err(|e| anyhow!("--default-region: {e}"))?;
        let cors = cors_layer(&settings.cors_origins)?;
        let gadget = GadgetLayer::new(&settings.gadget_frame_ancestors)?;
        let tls = crate::auth::server_tls(&settings.security)?;

        let database = redact(&settings.database.database_url);
        let metrics = match settings.metrics_listen {
            Some(_) => Metrics::on(if settings.database.is_postgres() {
                "postgresql"
            } else {
                "sqlite"
            }),
            None => Metrics::default(),
        };
        let store = Store::connect_with_metrics(&settings.database, metrics.clone())
            .await
            .with_context(|| format!("cannot open the database {database}"))?;
        if let Err(err) = store.migrate().await {
            store.close().await;
            return Err(anyhow!(err).context(format!("cannot migrate the database {database}")));
        }
        let listener = match TcpListener::bind(settings.listen).await {
            Ok(listener) => listener,
            Err(err) => {
                store.close().await;
                return Err(anyhow!(err).context(format!("cannot listen on {}", settings.listen)));
            }
        };
        let local_addr = listener
            .local_addr()
            .context("cannot read the listening address")?;
        let metrics_listener = match settings.metrics_listen {
            Some(addr) => match crate::telemetry::metrics::bind(addr).await {
                Ok(listener) => Some(listener),
                Err(err) => {
                    store.close().await;
                    return Err(err);
                }
            },
            None => None,
        };
        let metrics_addr = metrics_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
            .context("cannot read the metrics listening address")?;

        let (begin, shutdown) = Shutdown::channel();
        let notifier = match crate::notify::Sender::spawn(
            store.clone(),
            &settings.notifications,
            shutdown.clone(),
        ) {
            Ok(notifier) => notifier,
            Err(err) => {
                store.close().await;
                return Err(err.context("cannot send customer notifications"));
            }
        };
        let health = HealthReporter::new();
        let readiness = Readiness::serving(health.clone(), public_service_names()).await;
        let probe = readiness.probe(
            store.clone(),
            settings.health_probe_interval,
            shutdown.clone(),
        );

        let mut routes = RoutesBuilder::default();
        routes
            .add_service(HealthServer::new(HealthWithShutdown {
                inner: HealthService::from_health_reporter(health.clone()),
                shutdown: shutdown.clone(),
            }))
            .add_service(
                reflection()
                    .build_v1()
                    .context("cannot build reflection v1")?,
            )
            .add_service(
                reflection()
                    .build_v1alpha()
                    .context("cannot build reflection v1alpha")?,
            );
        let hub = Arc::new(Hub::new(
            store
                .last_change_seq()
                .await
                .context("cannot read the change log")?,
        ));
        let feed = crate::events::feed::spawn(store.clone(), hub.clone());
        let metrics_task = metrics_listener.map(|listener| {
            crate::telemetry::metrics::serve(
                listener,
                metrics.clone(),
                Scraped {
                    store: store.clone(),
                    hub: hub.clone(),
                    readiness: readiness.clone(),
                },
                shutdown.clone(),
            )
        });
        let presence = crate::events::presence::spawn(
            store.clone(),
            hub.clone(),
            crate::domain::ids::new_id(),
        );
        let recent = crate::store::recent::Recorder::spawn(store.clone());
        crate::api::add_services(
            &mut routes,
            ApiState {
                store: store.clone(),
                region,
                hub,
                shutdown: shutdown.clone(),
                recent: recent.views(),
            },
            settings.security.max_message_bytes,
        );
        let guard = guard(&settings.security, store.clone());

        let mut server = Server::builder();
        if let Some(tls) = tls {
            server = server
                .tls_config(tls)
                .context("cannot use the TLS certificate and key")?;
        }
        let mut server = server
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .max_concurrent_streams(settings.security.max_streams_per_connection)
            .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
            .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            .accept_http1(true)
            .layer(gadget)
            .layer(cors)
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(CallLogLayer::new(metrics))
            .layer(guard);
        let router = server.add_routes(routes.routes());
        // `serve_with_incoming*` ignores the builder's TCP options, so the incoming stream sets them itself.
        let incoming = AcceptBackoff::new(TcpIncoming::from(listener).with_nodelay(Some(true)));
        let signal = shutdown.clone();
        let task = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, async move { signal.begun().await })
                .await
        });

        Ok(RunningServer {
            local_addr,
            metrics_addr,
            metrics_task,
            store,
            readiness,
            probe,
            begin,
            shutdown,
            grace: settings.shutdown_grace,
            task,
            feed,
            presence,
            notifier,
            recent,
        })
    }

    /// The address the server listens on (with the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address metrics are served on (with the real port when started on port 0); None without
    /// `--metrics-listen`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The signal long-running calls watch to learn that shutdown began; see [`Shutdown`].
    pub fn shutdown_signal(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Graceful shutdown: reports NOT_SERVING, stops accepting connections, ends streams guarded by
    /// [`Shutdown`], lets in-flight calls finish for at most `settings.shutdown_grace`, then closes the database.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.begin_shutdown().await;
        let result = match tokio::time::timeout(self.grace, &mut self.task).await {
            Ok(Ok(Ok(()))) => {
                tracing::debug!("all connections drained");
                Ok(())
            }
            Ok(Ok(Err(err))) => Err(anyhow!(err).context("the server failed")),
            Ok(Err(err)) => Err(anyhow!(err).context("the server task failed")),
            Err(_) => {
                tracing::warn!(
                    grace = ?self.grace,
                    "calls still running after the shutdown grace period; closing anyway"
                );
                self.task.abort();
                Ok(())
            }
        };
        if let Some(notifier) = self.notifier.take() {
            notifier.stopped(NOTIFIER_STOP_TIMEOUT).await;
        }
        self.feed.abort();
        self.probe.abort();
        if let Some(metrics) = self.metrics_task.take() {
            metrics.abort();
        }
        self.recent.close().await;
        if let Some(presence) = &self.presence {
            presence.withdraw().await;
        }
        if tokio::time::timeout(STORE_CLOSE_TIMEOUT, self.store.clone().close())
            .await
            .is_err()
        {
            tracing::warn!("the database did not close in time");
        }
        result
    }

    /// Marks every service NOT_SERVING and signals shutdown (stops accepting, drains connections).
    async fn begin_shutdown(&self) {
        self.readiness.stopping().await;
        self.begin.send_replace(true);
    }
}

/// `customer-context serve`: starts the service, logs where it listens, waits for SIGINT or SIGTERM and shuts
/// down gracefully. A second signal during the drain exits at once.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let mut signals = Signals::new().context("cannot listen for termination signals")?;
    let database = redact(&settings.database.database_url);
    let grace = settings.shutdown_grace;
    let mut server = RunningServer::start(settings).await?;
    let addr = server.local_addr();
    tracing::info!(%database, "listening on {addr}");
    if let Some(metrics) = server.metrics_addr() {
        tracing::info!("metrics at http://{metrics}/metrics");
    }

    tokio::select! {
        signal = signals.recv() => {
            tracing::info!("{signal} received; shutting down (waiting up to {grace:?} for calls in flight)");
        }
        stopped = &mut server.task => {
            return match stopped {
                Ok(Ok(())) => Err(anyhow!("the server stopped unexpectedly")),
                Ok(Err(err)) => Err(anyhow!(err).context("the server failed")),
                Err(err) => Err(anyhow!(err).context("the server task failed")),
            };
        }
    }
    tokio::select! {
        result = server.shutdown() => {
            result?;
            tracing::info!("stopped");
            Ok(())
        }
        signal = signals.recv() => {
            tracing::warn!("{signal} received again; exiting without waiting for calls in flight");
            Ok(())
        }
    }
}

/// The guard layer of the public API, from the security settings.
fn guard(security: &SecuritySettings, store: Store) -> GuardLayer {
    if security.auth == AuthMode::None {
        tracing::warn!(
            "authentication is off (--auth none): every caller is an admin acting as its x-agent-id; \
             use --auth keys anywhere but a development machine"
        );
    }
    GuardLayer::new(Guard {
        authenticator: Authenticator::new(security.auth, store, security.key_cache_ttl),
        calls: (security.max_concurrent_calls > 0)
            .then(|| Arc::new(Semaphore::new(security.max_concurrent_calls))),
        rate: RateLimiter::new(security.rate_limit_per_key, security.rate_limit_burst())
            .map(Arc::new),
        slots: KeySlots::new(security.max_calls_per_key, security.max_streams_per_key),
        request_timeout: security.request_timeout,
        max_message_bytes: security.max_message_bytes,
    })
}

/// tonic-health's service, with `Watch` streams that end at shutdown (after reporting NOT_SERVING) so health
/// watchers do not hold the drain open.
struct HealthWithShutdown {
    inner: HealthService,
    shutdown: Shutdown,
}

#[tonic::async_trait]
impl Health for HealthWithShutdown {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = UntilShutdown<tonic_health::server::WatchStream>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let response = self.inner.watch(request).await?;
        Ok(response.map(|stream| self.shutdown.guard(stream)))
    }
}

/// Fully qualified names of the public services (every service of a `customer_context.*` package), read from the
/// descriptor set so new services are reported to health without a change here.
fn public_service_names() -> Vec<String> {
    let Ok(set) = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    let mut names: Vec<String> = set
        .file
        .iter()
        .filter(|file| file.package().starts_with("customer_context."))
        .flat_map(|file| {
            file.service
                .iter()
                .map(move |service| format!("{}.{}", file.package(), service.name()))
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Reflection over the public protos and the health service (the reflection builders add their own protos).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// CORS for gRPC-web: the configured origins (any when none are configured), the gRPC-web request headers, and
/// the status headers exposed to scripts.
fn cors_layer(origins: &[String]) -> anyhow::Result<CorsLayer> {
    let allow_origin = if origins.is_empty() || origins.iter().any(|origin| origin.trim() == "*") {
        AllowOrigin::any()
    } else {
        let origins = origins
            .iter()
            .map(|origin| {
                HeaderValue::from_str(origin.trim())
                    .map_err(|_| anyhow!("--cors-origins: {origin:?} is not a valid origin"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(origins)
    };
    Ok(CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::POST])
        .allow_headers(CORS_ALLOW_HEADERS.map(HeaderName::from_static))
        .expose_headers(CORS_EXPOSE_HEADERS.map(HeaderName::from_static))
        .max_age(Duration::from_secs(24 * 60 * 60)))
}

/// Accepted connections, each gathering its writes until flushed ([`GatheringConnection`]), skipping failed
/// accepts: errors about one connection are dropped, others (such as running out of file descriptors) are logged
/// and followed by a short pause instead of a busy loop.
struct AcceptBackoff {
    incoming: TcpIncoming,
    pause: Option<Pin<Box<Sleep>>>,
}

impl AcceptBackoff {
    fn new(incoming: TcpIncoming) -> Self {
        AcceptBackoff {
            incoming,
            pause: None,
        }
    }
}

impl Stream for AcceptBackoff {
    type Item = io::Result<GatheringConnection>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = this.pause.as_mut() {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            match ready!(Pin::new(&mut this.incoming).poll_next(cx)) {
                Some(Ok(stream)) => return Poll::Ready(Some(Ok(GatheringConnection::new(stream)))),
                Some(Err(err)) if is_connection_error(&err) => continue,
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "cannot accept connections; retrying");
                    this.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_ERROR_BACKOFF)));
                }
                None => return Poll::Ready(None),
            }
        }
    }
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// SIGINT and SIGTERM (Ctrl-C elsewhere), registered up front so none is missed.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// Waits for the next signal and names it.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{future::Future, task::Waker};

    use super::*;

    #[test]
    fn public_services_come_from_the_descriptor_set() {
        let names = public_service_names();
        for expected in [
            "customer_context.v1.ActivityService",
            "customer_context.v1.CustomerService",
            "customer_context.v1.RequestService",
        ] {
            assert!(
                names.iter().any(|name| name == expected),
                "{expected} missing from {names:?}"
            );
        }
    }

    #[test]
    fn reflection_builds_with_health_included() {
        reflection().build_v1().unwrap();
        reflection().build_v1alpha().unwrap();
    }

    #[test]
    fn cors_accepts_any_or_listed_origins_and_refuses_garbage() {
        assert!(cors_layer(&[]).is_ok());
        assert!(cors_layer(&["*".to_owned()]).is_ok());
        assert!(cors_layer(&["https://agent.example.com".to_owned()]).is_ok());
        assert!(cors_layer(&["bad\norigin".to_owned()]).is_err());
    }

    /// A health watcher sees NOT_SERVING, then UNAVAILABLE, and does not hold the drain open.
    #[tokio::test]
    async fn shutdown_ends_health_watches_and_finishes_well_before_the_grace_period() {
        use tonic_health::pb::{
            health_check_response::ServingStatus as Status, health_client::HealthClient,
        };

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
        let mut settings = Settings::new("127.0.0.1:0".parse().unwrap(), url);
        settings.shutdown_grace = Duration::from_secs(30);
        let server = RunningServer::start(settings).await.unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);

        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel);
        let check = |service: &str| HealthCheckRequest {
            service: service.to_owned(),
        };
        for service in ["", "customer_context.v1.CustomerService"] {
            let status = health
                .check(check(service))
                .await
                .unwrap()
                .into_inner()
                .status();
            assert_eq!(status, Status::Serving, "{service:?}");
        }
        let mut watch = health.watch(check("")).await.unwrap().into_inner();
        assert_eq!(
            watch.message().await.unwrap().unwrap().status(),
            Status::Serving
        );

        let signal = server.shutdown_signal();
        let started = std::time::Instant::now();
        let stopping = tokio::spawn(server.shutdown());
        assert_eq!(
            watch.message().await.unwrap().unwrap().status(),
            Status::NotServing
        );
        assert_eq!(
            watch.message().await.unwrap_err().code(),
            tonic::Code::Unavailable
        );
        tokio::time::timeout(Duration::from_secs(10), stopping)
            .await
            .expect("the drain is not held open by the watch")
            .unwrap()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(signal.has_begun());
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still accepting"
        );
    }

    #[tokio::test]
    async fn dropping_the_sender_counts_as_shutdown_and_never_never_fires() {
        let (begin, shutdown) = Shutdown::channel();
        drop(begin);
        assert!(shutdown.has_begun());
        tokio::time::timeout(Duration::from_secs(5), shutdown.begun())
            .await
            .unwrap();

        let never = Shutdown::never();
        assert!(!never.has_begun());
        let mut begun = std::pin::pin!(never.begun());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(begun.as_mut().poll(&mut cx).is_pending());
    }
}
