//! Logging: the tracing subscriber (text or JSON lines on standard error) and [`CallLogLayer`], which writes
//! one line per gRPC call when the call ends. With `--otlp-endpoint` the subscriber also exports trace spans
//! ([`otel`]).
//!
//! Call lines have the target `customer_context::call`, so they can be tuned on their own, e.g.
//! `RUST_LOG=info,customer_context::call=warn` keeps only failed calls.

use std::{
    future::Future,
    io::IsTerminal,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Instant,
};

use http::{HeaderMap, Request, Response, uri::PathAndQuery};
use http_body::{Body, Frame, SizeHint};
use tonic::{Code, Status, transport::server::TcpConnectInfo};
use tower::{Layer, Service};
use tracing::Level;
use tracing_subscriber::{
    EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

use crate::{config::LogFormat, domain::principal::Principal};

pub mod metrics;
pub mod otel;

use metrics::{Metrics, RpcCall};

/// Log filter used when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn";

/// Installs the global tracing subscriber writing to standard error, filtered by `RUST_LOG` (default
/// [`DEFAULT_FILTER`]), and, with `otlp` (a collector's URL), exporting spans over OTLP: the returned guard flushes
/// them at shutdown. Calling it again (tests, a second command) keeps the first subscriber. Must be called within
/// the Tokio runtime when `otlp` is set.
///
/// Without `otlp` nothing of OpenTelemetry is installed and no span is made ([`otel::enabled`]).
pub fn init(format: LogFormat, otlp: Option<&str>) -> anyhow::Result<Option<otel::OtelGuard>> {
    let (filter, rejected) = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => match EnvFilter::try_new(&directives) {
            Ok(filter) => (filter, None),
            Err(err) => (
                EnvFilter::new(DEFAULT_FILTER),
                Some(format!("{directives:?}: {err}")),
            ),
        },
        _ => (EnvFilter::new(DEFAULT_FILTER), None),
    };
    let (installed, traces) = match otlp {
        None => (init_log(format, filter), None),
        Some(endpoint) => {
            let (export, guard) = otel::start(endpoint)?;
            // The log filter applies to the log only: the exporter takes its own spans whatever RUST_LOG says,
            // and the log leaves them out.
            let filter = filter.add_directive(
                format!("{}=off", otel::TARGET)
                    .parse()
                    .expect("a valid directive"),
            );
            let installed = tracing_subscriber::registry()
                .with(log_layer(format).with_filter(filter))
                .with(export)
                .try_init()
                .is_ok();
            if installed {
                otel::enable();
                tracing::info!(endpoint, "exporting traces over OTLP");
            }
            (installed, installed.then_some(guard))
        }
    };
    if installed && let Some(rejected) = rejected {
        tracing::warn!("RUST_LOG ignored, using {DEFAULT_FILTER:?}: {rejected}");
    }
    Ok(traces)
}

/// The log alone: the `fmt` subscriber filtered by `filter`.
fn init_log(format: LogFormat, filter: EnvFilter) -> bool {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    installed.is_ok()
}

/// The log as a layer of a subscriber with other layers: the same lines as [`init_log`] writes.
fn log_layer<S>(format: LogFormat) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => layer
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .boxed(),
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
    }
}

/// Tower layer that logs one line per gRPC call when it ends: method, gRPC code, latency, peer and the
/// acting agent (the authenticated one when the guard admitted the call, else the `x-agent-id` the call claims). Info for `OK`, error for `INTERNAL`/`UNKNOWN`/`DATA_LOSS`, warn otherwise.
/// A call whose response is dropped before its status is sent (client cancelled or disconnected) is logged as
/// `CANCELLED`. Successful health checks are logged at debug level so probes do not flood the log.
///
/// Place it inside the gRPC-web translation so it sees native gRPC responses (status in trailers).
///
/// It also counts and times every call in `metrics` (see [`metrics`]), and with traces on makes the call's span
/// (see [`otel`]): a child of the caller's `traceparent`, entered while the call runs, ended when the call does.
#[derive(Clone, Debug, Default)]
pub struct CallLogLayer {
    metrics: Metrics,
}

impl CallLogLayer {
    /// Logs calls, and records them in `metrics` (when on).
    pub fn new(metrics: Metrics) -> Self {
        CallLogLayer { metrics }
    }
}

impl<S> Layer<S> for CallLogLayer {
    type Service = CallLog<S>;

    fn layer(&self, inner: S) -> CallLog<S> {
        CallLog {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service made by [`CallLogLayer`].
#[derive(Clone, Debug)]
pub struct CallLog<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CallLog<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<CallLogBody<ResBody>>;
    type Error = S::Error;
    type Future = CallLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let record = CallRecord::start(&request, &self.metrics);
        // With traces on, the call runs within its span (work done for it makes child spans).
        let inner = match &record.span {
            Some(call) => call.span.in_scope(|| self.inner.call(request)),
            None => self.inner.call(request),
        };
        CallLogFuture {
            inner,
            record: Some(record),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`CallLog`].
    pub struct CallLogFuture<F> {
        #[pin]
        inner: F,
        record: Option<CallRecord>,
    }
}

impl<F, ResBody, E> Future for CallLogFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = Result<Response<CallLogBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let entered = this.record.as_ref().and_then(CallRecord::enter);
        let result = ready!(this.inner.poll(cx));
        drop(entered);
        let mut record = this.record.take();
        Poll::Ready(match result {
            Ok(response) => {
                if let Some(record) = record.as_mut() {
                    record.status =
                        status_from_response_head(response.status(), response.headers());
                    // The authenticated caller, when the guard admitted the call.
                    if let Some(principal) = response.extensions().get::<Principal>() {
                        record.agent = Some(principal.agent.clone());
                    }
                }
                Ok(response.map(|inner| CallLogBody { inner, record }))
            }
            Err(err) => {
                if let Some(record) = record.as_mut() {
                    record.status = Some(CallStatus::new(Code::Unknown, "the service failed"));
                }
                Err(err)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// Response body of [`CallLog`]: passes every frame through and logs the call when the trailers go by,
    /// the body ends, or it is dropped.
    pub struct CallLogBody<B> {
        #[pin]
        inner: B,
        record: Option<CallRecord>,
    }
}

impl<B: Body> Body for CallLogBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let entered = this.record.as_ref().and_then(CallRecord::enter);
        let frame = ready!(this.inner.poll_frame(cx));
        drop(entered);
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(mut record) = this.record.take()
                {
                    record.status = Some(status_from_trailers(trailers));
                }
            }
            Some(Err(_)) => {
                if let Some(mut record) = this.record.take() {
                    record.status =
                        Some(CallStatus::new(Code::Internal, "the response body failed"));
                }
            }
            None => {
                if let Some(mut record) = this.record.take()
                    && record.status.is_none()
                {
                    record.status = Some(CallStatus::new(
                        Code::Unknown,
                        "the response ended without grpc-status",
                    ));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CallStatus {
    code: Code,
    /// `grpc-message`, kept for failed calls only.
    message: Option<String>,
    /// Why a limit refused the call (`RESOURCE_EXHAUSTED` with one of [`metrics::REFUSAL_REASONS`]).
    refusal: Option<&'static str>,
}

impl CallStatus {
    fn new(code: Code, message: &str) -> Self {
        CallStatus {
            code,
            message: Some(message.to_owned()),
            refusal: None,
        }
    }
}

/// The status carried in response headers: present for trailers-only responses (errors returned before any
/// message), or implied by a non-200 HTTP status. `None` means the status will come in the trailers.
fn status_from_response_head(
    http_status: http::StatusCode,
    headers: &HeaderMap,
) -> Option<CallStatus> {
    if headers.contains_key(Status::GRPC_STATUS) {
        return Some(status_from_trailers(headers));
    }
    if http_status == http::StatusCode::OK {
        return None;
    }
    // https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md
    let code = match http_status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    Some(CallStatus {
        code,
        message: Some(format!("HTTP {http_status}")),
        refusal: None,
    })
}

/// The status in a trailer (or trailers-only header) map; a missing `grpc-status` is `UNKNOWN`.
fn status_from_trailers(trailers: &HeaderMap) -> CallStatus {
    let Some(value) = trailers.get(Status::GRPC_STATUS) else {
        return CallStatus::new(Code::Unknown, "the response ended without grpc-status");
    };
    let code = Code::from_bytes(value.as_bytes());
    if code == Code::Ok {
        return CallStatus {
            code,
            message: None,
            refusal: None,
        };
    }
    // Failed calls only: decodes the percent-encoded grpc-message.
    let status = Status::from_header_map(trailers);
    let refusal = status
        .as_ref()
        .filter(|status| status.code() == Code::ResourceExhausted)
        .and_then(|status| {
            use tonic_types::StatusExt as _;
            let reason = status.get_error_details().error_info()?.reason.clone();
            metrics::REFUSAL_REASONS
                .into_iter()
                .find(|known| *known == reason)
        });
    let message = status
        .map(|status| status.message().to_owned())
        .filter(|message| !message.is_empty());
    CallStatus {
        code,
        message,
        refusal,
    }
}

/// What is known about a call in flight. Dropping it writes the log line, so every call logs exactly once
/// whatever way it ends.
struct CallRecord {
    started: Instant,
    path: Option<PathAndQuery>,
    peer: Option<SocketAddr>,
    agent: Option<String>,
    status: Option<CallStatus>,
    /// The call as counted in the metrics.
    rpc: Option<RpcCall>,
    /// The call's trace span (with `--otlp-endpoint`).
    span: Option<otel::CallSpan>,
}

impl CallRecord {
    fn start<B>(request: &Request<B>, metrics: &Metrics) -> CallRecord {
        CallRecord {
            rpc: metrics.rpc_started(request.uri().path()),
            span: otel::call_span(request.uri().path(), request.headers()),
            started: Instant::now(),
            path: request.uri().path_and_query().cloned(),
            peer: request
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr),
            agent: request
                .headers()
                .get("x-agent-id")
                .and_then(|agent| agent.to_str().ok())
                .map(str::to_owned),
            status: None,
        }
    }
}

impl CallRecord {
    /// Enters the call's span, if it has one, while its future or body is polled.
    fn enter(&self) -> Option<tracing::span::Entered<'_>> {
        self.span.as_ref().map(|call| call.span.enter())
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let status = self.status.take().unwrap_or_else(|| {
            CallStatus::new(
                Code::Cancelled,
                "the caller went away before the call ended",
            )
        });
        if let Some(rpc) = self.rpc.take() {
            rpc.finish(status.code, status.refusal);
        }
        if let Some(span) = self.span.take() {
            span.finish(&status);
        }
        let method = self.path.as_ref().map_or("", PathAndQuery::path);
        let level = level_for(status.code, method);
        if !log_enabled(level) {
            return;
        }
        let latency_ms = self.started.elapsed().as_micros() as f64 / 1000.0;
        let code = code_name(status.code);
        let peer = self.peer.as_ref().map(tracing::field::display);
        let agent = self.agent.as_deref();
        // Not `message`: that name is the event's own text.
        let grpc_message = status.message.as_deref();
        macro_rules! call_event {
            ($level:expr) => {
                tracing::event!(
                    target: "customer_context::call",
                    $level,
                    method = %method,
                    code = %code,
                    latency_ms,
                    peer,
                    agent,
                    grpc_message,
                    "call"
                )
            };
        }
        match level {
            Level::ERROR => call_event!(Level::ERROR),
            Level::WARN => call_event!(Level::WARN),
            Level::INFO => call_event!(Level::INFO),
            _ => call_event!(Level::DEBUG),
        }
    }
}

fn log_enabled(level: Level) -> bool {
    match level {
        Level::ERROR => tracing::enabled!(target: "customer_context::call", Level::ERROR),
        Level::WARN => tracing::enabled!(target: "customer_context::call", Level::WARN),
        Level::INFO => tracing::enabled!(target: "customer_context::call", Level::INFO),
        _ => tracing::enabled!(target: "customer_context::call", Level::DEBUG),
    }
}

/// The Watch stream's method: a gadget ends its stream by cancelling it.
const WATCH_METHOD: &str = "/customer_context.v1.WatchService/Watch";

/// Info for success (and for a Watch stream its gadget closed, the way such a stream ends), error for faults of the
/// service, warn for everything the caller can act on.
fn level_for(code: Code, method: &str) -> Level {
    match code {
        Code::Ok if method.starts_with("/grpc.health.v1.Health/") => Level::DEBUG,
        Code::Ok => Level::INFO,
        Code::Cancelled if method == WATCH_METHOD => Level::INFO,
        Code::Internal | Code::Unknown | Code::DataLoss => Level::ERROR,
        _ => Level::WARN,
    }
}

/// The canonical upper-case name of a gRPC code, as other gRPC tools print it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        convert::Infallible,
        sync::{Arc, Mutex},
    };

    use prost::bytes::Bytes;

    use http::HeaderValue;

    use super::*;

    /// A response body made of the given frames.
    struct TestBody(VecDeque<Frame<Bytes>>);

    impl Body for TestBody {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(Ok))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    fn trailers(code: &str, message: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(Status::GRPC_STATUS, HeaderValue::from_str(code).unwrap());
        if let Some(message) = message {
            map.insert(
                Status::GRPC_MESSAGE,
                HeaderValue::from_str(message).unwrap(),
            );
        }
        map
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// Runs one call through `CallLog` with a service answering `response`, reads `read` frames of the body
    /// (all if `None`), drops everything and returns the log lines.
    fn run_call(response: Response<TestBody>, read: Option<usize>) -> Vec<String> {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(Level::DEBUG)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let mut response = Some(response);
        let mut service =
            CallLogLayer::default().layer(tower::service_fn(move |_request: Request<()>| {
                let response = response.take().expect("one call");
                async move { Ok::<_, Infallible>(response) }
            }));
        let request = Request::builder()
            .uri("/customer_context.v1.CustomerService/GetCustomer")
            .header("x-agent-id", "agent-7")
            .body(())
            .unwrap();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut future = std::pin::pin!(service.call(request));
        let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
            panic!("the test service answers at once");
        };
        let mut body = Box::pin(response.into_body());
        for _ in 0..read.unwrap_or(usize::MAX) {
            match body.as_mut().poll_frame(&mut cx) {
                Poll::Ready(Some(_)) => continue,
                _ => break,
            }
        }
        drop(body);
        captured.lines()
    }

    fn ok_response(trailers: HeaderMap) -> Response<TestBody> {
        Response::new(TestBody(VecDeque::from([
            Frame::data(Bytes::from_static(b"\0\0\0\0\0")),
            Frame::trailers(trailers),
        ])))
    }

    #[test]
    fn code_comes_from_trailers_when_the_body_ends() {
        let lines = run_call(ok_response(trailers("0", None)), None);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert!(line.contains(" INFO "), "{line}");
        assert!(
            line.contains("method=/customer_context.v1.CustomerService/GetCustomer"),
            "{line}"
        );
        assert!(
            line.contains("code=\"OK\"") || line.contains("code=OK"),
            "{line}"
        );
        assert!(line.contains("latency_ms="), "{line}");
        assert!(
            line.contains("agent=\"agent-7\"") || line.contains("agent=agent-7"),
            "{line}"
        );
        assert!(!line.contains("grpc_message="), "{line}");
    }

    #[test]
    fn code_comes_from_headers_for_trailers_only_errors() {
        let mut response = Response::new(TestBody(VecDeque::new()));
        *response.headers_mut() = trailers("5", Some("customer%20x%20not%20found"));
        // Trailers-only: the server may never poll the empty body, only drop it.
        let lines = run_call(response, Some(0));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(" WARN "), "{}", lines[0]);
        assert!(lines[0].contains("code=NOT_FOUND "), "{}", lines[0]);
        assert!(
            lines[0].contains("grpc_message=\"customer x not found\""),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn internal_errors_log_at_error_level() {
        let lines = run_call(ok_response(trailers("13", Some("boom"))), None);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(" ERROR "), "{}", lines[0]);
        assert!(lines[0].contains("code=INTERNAL "), "{}", lines[0]);
    }

    #[test]
    fn dropped_stream_logs_cancelled_once() {
        let lines = run_call(ok_response(trailers("0", None)), Some(1));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("code=CANCELLED "), "{}", lines[0]);
    }

    #[test]
    fn status_extraction() {
        assert_eq!(
            status_from_response_head(http::StatusCode::OK, &HeaderMap::new()),
            None
        );
        assert_eq!(
            status_from_response_head(http::StatusCode::OK, &trailers("10", Some("stale"))),
            Some(CallStatus::new(Code::Aborted, "stale"))
        );
        assert_eq!(
            status_from_response_head(http::StatusCode::NOT_FOUND, &HeaderMap::new())
                .map(|s| s.code),
            Some(Code::Unimplemented)
        );
        assert_eq!(
            status_from_trailers(&trailers("0", Some("ignored"))).message,
            None
        );
        assert_eq!(status_from_trailers(&HeaderMap::new()).code, Code::Unknown);
        assert_eq!(
            status_from_trailers(&trailers("99", None)).code,
            Code::Unknown
        );
    }

    #[test]
    fn levels() {
        assert_eq!(
            level_for(Code::Ok, "/customer_context.v1.CustomerService/GetCustomer"),
            Level::INFO
        );
        assert_eq!(
            level_for(Code::Ok, "/grpc.health.v1.Health/Check"),
            Level::DEBUG
        );
        assert_eq!(level_for(Code::InvalidArgument, "/x/y"), Level::WARN);
        assert_eq!(level_for(Code::Unavailable, "/x/y"), Level::WARN);
        assert_eq!(level_for(Code::Cancelled, WATCH_METHOD), Level::INFO);
        assert_eq!(
            level_for(
                Code::Cancelled,
                "/customer_context.v1.ContextService/OpenContext"
            ),
            Level::WARN
        );
        for code in [Code::Internal, Code::Unknown, Code::DataLoss] {
            assert_eq!(level_for(code, "/x/y"), Level::ERROR);
        }
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
    }
}
