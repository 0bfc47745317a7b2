//! Traces over OTLP/gRPC (`serve --otlp-endpoint URL`): the service's tracing spans, exported by the OpenTelemetry
//! SDK to a collector.
//!
//! Spans, all of the target `customer_context::otel`:
//! - one per gRPC call (made by [`super::CallLogLayer`]): a server span named by the method (`customer_context.v1.CustomerService/
//!   GetCustomer`), a child of the caller's span when the call carries a W3C `traceparent`;
//! - `db.transaction`, a child of the call's span, for each write transaction ([`transaction_span`]);
//! - `open_context.batch`, for each batch of `OpenContext` calls the SQLite writer thread records in one
//!   transaction ([`batch_span`]): a child of the first call's span, linked to the others'.
//!
//! Off unless [`super::init`] was given an endpoint: then no span is ever created (each place checks one flag
//! first), so the default log subscriber sees nothing more than before.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::Context as _;
use http::HeaderMap;
use opentelemetry::{
    KeyValue,
    propagation::{Extractor, TextMapPropagator},
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tonic::{Code, transport::ClientTlsConfig};
use tracing::{Level, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Layer as _, filter::Targets, registry::LookupSpan};

use super::{CallStatus, metrics::GrpcMethod};

/// The target of every span made here. The log leaves these spans out (they would prefix every line logged
/// during a call); the exporter takes only these, and warnings and errors logged within them as span events.
pub const TARGET: &str = "customer_context::otel";

/// The `service.name` of the exported resource, unless `OTEL_SERVICE_NAME` names another.
const SERVICE_NAME: &str = "customer-context";

/// How long shutdown waits for the spans still queued to be exported.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether spans are exported: set once the exporting subscriber is installed.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are on. One relaxed load: the price of tracing when it is off.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Flushes the spans not yet exported, and stops exporting, when the server shuts down.
#[derive(Debug)]
#[must_use = "shut it down once the server stopped, or the last spans are lost"]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl OtelGuard {
    /// Exports the spans still queued and stops the exporter, waiting at most a few seconds (the collector may
    /// be gone). Spans ended afterwards are dropped.
    pub async fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        let provider = self.provider;
        let (done, finished) = tokio::sync::oneshot::channel();
        // The SDK's shutdown blocks its caller until the export thread is done, and that export needs the
        // runtime's workers for its connection: it runs on a thread of its own, which is left behind if it hangs.
        let spawned = std::thread::Builder::new()
            .name("otel-shutdown".to_owned())
            .spawn(move || {
                let _ = done.send(provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT));
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "cannot flush the traces");
            return;
        }
        match tokio::time::timeout(SHUTDOWN_TIMEOUT + Duration::from_secs(1), finished).await {
            Ok(Ok(Ok(()))) => tracing::debug!("traces flushed"),
            Ok(Ok(Err(err))) => tracing::warn!(error = %err, "the last traces were not exported"),
            Ok(Err(_)) | Err(_) => {
                tracing::warn!("the last traces were not exported within {SHUTDOWN_TIMEOUT:?}")
            }
        }
    }
}

/// The exporting layer for `endpoint` (an `http://` or `https://` URL of an OTLP/gRPC collector) and the guard
/// that flushes it. Must be called within the Tokio runtime: the exporter's connection runs on it.
///
/// Spans are batched (the standard `OTEL_BSP_*` variables tune the batches, e.g. `OTEL_BSP_SCHEDULE_DELAY`, 5 s by
/// default) and sampled as the caller asked (`OTEL_TRACES_SAMPLER` changes that); `OTEL_RESOURCE_ATTRIBUTES`
/// adds resource attributes, and the other `OTEL_EXPORTER_OTLP_*` variables (headers, timeout, compression) apply.
pub(super) fn start<S>(
    endpoint: &str,
) -> anyhow::Result<(
    impl tracing_subscriber::Layer<S> + Send + Sync + 'static,
    OtelGuard,
)>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let scheme = endpoint
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    let mut exporter = SpanExporter::builder().with_tonic().with_endpoint(endpoint);
    match scheme.as_deref() {
        Some("http") => {}
        Some("https") => {
            exporter = exporter.with_tls_config(ClientTlsConfig::new().with_webpki_roots());
        }
        _ => anyhow::bail!(
            "--otlp-endpoint {endpoint:?}: expected an http:// or https:// URL, such as http://127.0.0.1:4317"
        ),
    }
    let exporter = exporter
        .build()
        .with_context(|| format!("cannot export traces to {endpoint}"))?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    let resource = resource
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer(SERVICE_NAME);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(
            Targets::new()
                .with_target("customer_context", Level::WARN)
                .with_target(TARGET, Level::INFO),
        );
    Ok((layer, OtelGuard { provider }))
}

/// Turns span creation on, once the exporting subscriber is installed.
pub(super) fn enable() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    ENABLED.store(true, Ordering::Relaxed);
}

/// The span of a write transaction, a child of the current span (the call's); none when traces are off or the
/// transaction is not part of a call (background work would otherwise make a trace of every transaction).
/// Keep it until the transaction commits or rolls back.
pub fn transaction_span(operation: &'static str) -> Span {
    if !enabled() || Span::current().is_none() {
        return Span::none();
    }
    tracing::info_span!(target: TARGET, "db.transaction", db.operation = operation)
}

/// The call a piece of work was queued by (none when traces are off), for the span of whatever records it on
/// another thread ([`batch_span`]).
#[derive(Clone, Debug, Default)]
pub struct CallTrace(Option<Span>);

impl CallTrace {
    /// The current call.
    pub fn current() -> CallTrace {
        if !enabled() {
            return CallTrace(None);
        }
        let span = Span::current();
        CallTrace((!span.is_none()).then_some(span))
    }
}

/// The span of a batch of `size` `OpenContext` calls recorded in one transaction: a child of the first traced
/// call's span (its trace shows the batch where the call waited for it) and linked to the other calls' spans.
/// None when traces are off or no call of the batch is traced.
pub fn batch_span<'a>(size: usize, calls: impl IntoIterator<Item = &'a CallTrace>) -> Span {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    span_of_calls(calls, |first| {
        tracing::info_span!(
            target: TARGET,
            parent: first,
            "open_context.batch",
            open_context.batch.size = size
        )
    })
}

/// The span of a batch of `size` new activities written together (PostgreSQL), as [`batch_span`] is of an
/// `OpenContext` batch.
pub fn activity_batch_span<'a>(
    size: usize,
    calls: impl IntoIterator<Item = &'a CallTrace>,
) -> Span {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    span_of_calls(calls, |first| {
        tracing::info_span!(
            target: TARGET,
            parent: first,
            "create_activity.batch",
            create_activity.batch.size = size
        )
    })
}

/// The span `make` gives for the first traced call of `calls`, linked to the others'; None when traces are off
/// or no call is traced.
fn span_of_calls<'a>(
    calls: impl IntoIterator<Item = &'a CallTrace>,
    make: impl FnOnce(&Span) -> Span,
) -> Span {
    if !enabled() {
        return Span::none();
    }
    let mut calls = calls.into_iter().filter_map(|call| call.0.as_ref());
    let Some(first) = calls.next() else {
        return Span::none();
    };
    let span = make(first);
    for call in calls {
        span.add_link(call.context().span().span_context().clone());
    }
    span
}

/// The span of a call in flight ([`call_span`]), kept by the call log's record of the call until the call ends.
pub(super) struct CallSpan {
    pub(super) span: Span,
}

impl CallSpan {
    /// Records how the call ended; dropping the span then ends it.
    pub(super) fn finish(self, status: &CallStatus) {
        self.span
            .record("rpc.grpc.status_code", i64::from(i32::from(status.code)));
        if is_server_error(status.code) {
            self.span.record("otel.status_code", "ERROR");
            if let Some(message) = &status.message {
                self.span
                    .record("otel.status_description", message.as_str());
            }
        }
    }
}

/// The span of a call to `path` when traces are on (None when off: no span is made).
pub(super) fn call_span(path: &str, headers: &HeaderMap) -> Option<CallSpan> {
    enabled().then(|| CallSpan {
        span: rpc_span(path, headers),
    })
}

/// The span of a call to `path`, with the caller's span (from the `traceparent` and `tracestate` headers) as its
/// parent. Paths this server does not serve are all named `unknown`, so callers cannot mint span names.
fn rpc_span(path: &str, headers: &HeaderMap) -> Span {
    let (name, method) = span_name(path);
    let span = tracing::info_span!(
        target: TARGET,
        "rpc",
        otel.name = name,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = method.service,
        rpc.method = method.method,
        rpc.grpc.status_code = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        // Fails only when the span is not exported (filtered out): then there is nothing to parent.
        let _ = span.set_parent(parent);
    }
    span
}

/// The span name of a call to `path` (`package.Service/Method`) and its method, from the table of methods this
/// server serves.
fn span_name(path: &str) -> (&str, GrpcMethod) {
    let method = GrpcMethod::of(path);
    if method.method == "unknown" {
        ("unknown", method)
    } else {
        (path.trim_start_matches('/'), method)
    }
}

/// The codes that mark a server span as failed, as the OpenTelemetry conventions for gRPC servers list them:
/// faults of the service. A code the caller caused (NOT_FOUND, INVALID_ARGUMENT, CANCELLED...) is in
/// `rpc.grpc.status_code` only.
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// Request headers as the propagator reads them.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use http::{Request, Response};
    use opentelemetry::trace::{SpanId, TraceId};
    use tower::{Layer as _, Service as _};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Counts the spans created.
    struct CountSpans(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountSpans {
        fn on_new_span(
            &self,
            _: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn off_creates_no_span() {
        assert!(!enabled(), "no test turns traces on");
        let spans = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(CountSpans(spans.clone()));
        let _guard = tracing::subscriber::set_default(subscriber);

        let mut service = super::super::CallLogLayer::default().layer(tower::service_fn(
            |_: Request<()>| async {
                assert!(Span::current().is_none());
                let _transaction = transaction_span("test");
                let trace = CallTrace::current();
                let _batch = batch_span(1, [&trace]);
                Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
            },
        ));
        let request = Request::builder()
            .uri("/customer_context.v1.CustomerService/GetCustomer")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .body(())
            .unwrap();
        let response = service.call(request).await.unwrap();
        let body = http_body_util::BodyExt::collect(response.into_body()).await;
        assert!(body.is_ok());
        assert_eq!(spans.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn only_served_methods_name_spans() {
        let (name, method) = span_name("/customer_context.v1.CustomerService/GetCustomer");
        assert_eq!(name, "customer_context.v1.CustomerService/GetCustomer");
        assert_eq!(method.service, "customer_context.v1.CustomerService");
        assert_eq!(method.method, "GetCustomer");
        assert_eq!(
            span_name("/grpc.health.v1.Health/Check").0,
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(
            span_name("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo").0,
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        );
        for path in [
            "/customer_context.v1.CustomerService/NoSuchMethod",
            "/customer_context.v1.Nope/GetCustomer",
            "/x/y",
            "/",
            "",
        ] {
            let (name, method) = span_name(path);
            assert_eq!(name, "unknown", "{path}");
            assert_eq!((method.service, method.method), ("unknown", "unknown"));
        }
    }

    #[test]
    fn the_callers_span_comes_from_traceparent() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        headers.insert("tracestate", "vendor=value".parse().unwrap());
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        let span = cx.span();
        let parent = span.span_context();
        assert!(parent.is_valid() && parent.is_remote() && parent.is_sampled());
        assert_eq!(
            parent.trace_id(),
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()
        );
        assert_eq!(
            parent.span_id(),
            SpanId::from_hex("b7ad6b7169203331").unwrap()
        );
        assert_eq!(parent.trace_state().get("vendor"), Some("value"));

        headers.insert("traceparent", "not a traceparent".parse().unwrap());
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        assert!(!cx.span().span_context().is_valid());
    }

    #[test]
    fn only_faults_of_the_service_fail_the_span() {
        for code in [
            Code::Unknown,
            Code::DeadlineExceeded,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert!(is_server_error(code), "{code:?}");
        }
        for code in [
            Code::Ok,
            Code::Cancelled,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unauthenticated,
        ] {
            assert!(!is_server_error(code), "{code:?}");
        }
    }

    #[test]
    fn endpoints_need_a_scheme() {
        let err = start::<tracing_subscriber::Registry>("localhost:4317")
            .err()
            .expect("refused");
        assert!(err.to_string().contains("http://"), "{err}");
    }
}
