//! Traces over OTLP: the server binary, started with `--otlp-endpoint`, exports a span per call to a small OTLP
//! trace receiver started by the test, as the child of the span the caller named in `traceparent`, with the
//! call's write transaction and its `OpenContext` batch as children. Without the flag it exports nothing.
//!
//! The tracing subscriber is global to a process, so the server runs as a child process, not in the test's.

use std::{
    net::SocketAddr,
    process::Child,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use customer_context::pb::{
    self, activity_service_client::ActivityServiceClient,
    customer_service_client::CustomerServiceClient,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{KeyValue, any_value::Value},
    trace::v1::{Span, span::SpanKind},
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, transport::Server};

use crate::{
    context::{ROUTER, call, context_client},
    crash::{channel, stop_gracefully},
    harness::*,
};

/// How long a span may take to arrive, with the export delay the tests set.
const ARRIVAL: Duration = Duration::from_secs(10);

/// A span as the receiver got it, with its resource's attributes.
#[derive(Clone, Debug)]
struct Exported {
    resource: Vec<KeyValue>,
    span: Span,
}

/// An OTLP/gRPC trace receiver on a free loopback port, keeping every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Exported>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|resource| resource.attributes)
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                spans.extend(scope_spans.spans.into_iter().map(|span| Exported {
                    resource: resource.clone(),
                    span,
                }));
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    /// Starts a receiver and returns it with its `http://` URL.
    async fn start() -> (Receiver, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("address");
        let receiver = Receiver::default();
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (receiver, format!("http://{addr}"))
    }

    fn spans(&self) -> Vec<Exported> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of the trace `trace_id`, once `done` says they are all there (within [`ARRIVAL`]).
    async fn trace(&self, trace_id: &[u8], done: impl Fn(&[Exported]) -> bool) -> Vec<Exported> {
        let deadline = Instant::now() + ARRIVAL;
        loop {
            let trace: Vec<Exported> = self
                .spans()
                .into_iter()
                .filter(|exported| exported.span.trace_id == trace_id)
                .collect();
            if done(&trace) {
                return trace;
            }
            assert!(
                Instant::now() < deadline,
                "the trace did not arrive within {ARRIVAL:?}; got {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Starts `customer-context serve` on a free port with `args` and `env` added (and the OpenTelemetry variables
/// of the test's own environment removed), and returns it with its address.
fn start_server(url: &str, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut command = crate::crash::serve_command(url);
    command
        .args(args)
        .env_remove("CUSTOMER_CONTEXT_OTLP_ENDPOINT");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    crate::crash::spawn_server(command)
}

/// A receiver, and a server on a fresh SQLite database exporting its spans to it in batches sent every `delay_ms`
/// milliseconds: the receiver, the database (dropped last), the server and its address.
async fn traced_server(delay_ms: &str) -> (Receiver, TestDb, Child, String) {
    let db = TestDb::new(Backend::Sqlite).await.expect("SQLite");
    traced_server_on(db, delay_ms).await
}

/// [`traced_server`] on `db`.
async fn traced_server_on(db: TestDb, delay_ms: &str) -> (Receiver, TestDb, Child, String) {
    let (receiver, endpoint) = Receiver::start().await;
    let (server, addr) = start_server(
        db.url(),
        &["--otlp-endpoint", &endpoint],
        &[("OTEL_BSP_SCHEDULE_DELAY", delay_ms)],
    );
    (receiver, db, server, addr)
}

/// Ana creates Zoe Quinn through `customers`; returns her trace context.
async fn create_zoe_as_ana(
    customers: &mut CustomerServiceClient<tonic::transport::Channel>,
) -> Caller {
    let caller = Caller::new();
    customers
        .create_customer(caller.request(
            "ana",
            pb::CreateCustomerRequest {
                customer: Some(customer("Zoe", "Quinn")),
            },
        ))
        .await
        .expect("created");
    caller
}

/// A W3C trace context of a caller: a fresh trace id and span id, sampled.
struct Caller {
    trace_id: [u8; 16],
    span_id: [u8; 8],
}

impl Caller {
    fn new() -> Caller {
        Caller {
            trace_id: rand::random::<u128>().max(1).to_be_bytes(),
            span_id: rand::random::<u64>().max(1).to_be_bytes(),
        }
    }

    fn traceparent(&self) -> String {
        format!("00-{}-{}-01", hex(&self.trace_id), hex(&self.span_id))
    }

    /// `message` as `agent`, sent within this caller's span.
    fn request<T>(&self, agent: &str, message: T) -> tonic::Request<T> {
        let mut request = as_agent(agent, message);
        request
            .metadata_mut()
            .insert("traceparent", self.traceparent().parse().expect("ascii"));
        request
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
}

fn string(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key) {
        Some(Value::StringValue(value)) => Some(value.clone()),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key) {
        Some(Value::IntValue(value)) => Some(*value),
        _ => None,
    }
}

/// The span of the call in `trace` (the caller's span's child), if it arrived.
fn call_span<'a>(trace: &'a [Exported], caller: &Caller) -> Option<&'a Exported> {
    trace
        .iter()
        .find(|exported| exported.span.parent_span_id == caller.span_id)
}

/// The spans of `trace` named `name` whose parent is `parent`.
fn children<'a>(trace: &'a [Exported], parent: &Span, name: &str) -> Vec<&'a Span> {
    trace
        .iter()
        .map(|exported| &exported.span)
        .filter(|span| span.parent_span_id == parent.span_id && span.name == name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_exported_as_children_of_the_callers_span() {
    let (receiver, _db, server, addr) = traced_server("100").await;
    let channel = channel(&addr).await;
    let mut customers = CustomerServiceClient::new(channel.clone());

    // A write: the call's span and its transaction's.
    let creator = create_zoe_as_ana(&mut customers).await;
    let trace = receiver
        .trace(&creator.trace_id, |trace| {
            call_span(trace, &creator)
                .is_some_and(|call| !children(trace, &call.span, "db.transaction").is_empty())
        })
        .await;
    let exported = call_span(&trace, &creator).expect("the call's span");
    let span = &exported.span;
    assert_eq!(
        span.name,
        "customer_context.v1.CustomerService/CreateCustomer"
    );
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(
        string(&span.attributes, "rpc.system").as_deref(),
        Some("grpc")
    );
    assert_eq!(
        string(&span.attributes, "rpc.service").as_deref(),
        Some("customer_context.v1.CustomerService")
    );
    assert_eq!(
        string(&span.attributes, "rpc.method").as_deref(),
        Some("CreateCustomer")
    );
    assert_eq!(int(&span.attributes, "rpc.grpc.status_code"), Some(0));
    // Status unset: the call succeeded.
    assert_eq!(span.status.as_ref().map_or(0, |status| status.code), 0);
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    assert_eq!(
        string(&exported.resource, "service.name").as_deref(),
        Some("customer-context")
    );
    assert_eq!(
        string(&exported.resource, "service.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    let transaction = children(&trace, span, "db.transaction")[0];
    assert!(
        string(&transaction.attributes, "db.operation").is_some(),
        "{transaction:?}"
    );
    assert!(transaction.start_time_unix_nano >= span.start_time_unix_nano);
    assert!(transaction.end_time_unix_nano <= span.end_time_unix_nano);

    // A failed call: its code, and no error status for a code the caller caused.
    let reader = Caller::new();
    let missing = customers
        .get_customer(reader.request(
            "ana",
            pb::GetCustomerRequest {
                id: "0190a5e2-7c1d-7b3e-9f00-1a2b3c4d5e6f".to_owned(),
            },
        ))
        .await
        .expect_err("no such customer");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let trace = receiver
        .trace(&reader.trace_id, |trace| {
            call_span(trace, &reader).is_some()
        })
        .await;
    let span = &call_span(&trace, &reader).expect("the call's span").span;
    assert_eq!(span.name, "customer_context.v1.CustomerService/GetCustomer");
    assert_eq!(int(&span.attributes, "rpc.grpc.status_code"), Some(5));
    assert_eq!(span.status.as_ref().map_or(0, |status| status.code), 0);

    // OpenContext on SQLite: recorded by the batch writer thread, in a batch span of the call's.
    let router = Caller::new();
    context_client(channel)
        .open_context(router.request(ROUTER, call("otlp-call-1", "+1 415-555-0100")))
        .await
        .expect("context opened");
    let trace = receiver
        .trace(&router.trace_id, |trace| {
            call_span(trace, &router)
                .is_some_and(|call| !children(trace, &call.span, "open_context.batch").is_empty())
        })
        .await;
    let span = &call_span(&trace, &router).expect("the call's span").span;
    assert_eq!(span.name, "customer_context.v1.ContextService/OpenContext");
    let batch = children(&trace, span, "open_context.batch")[0];
    assert_eq!(int(&batch.attributes, "open_context.batch.size"), Some(1));

    stop_gracefully(server).await;
}

/// On PostgreSQL a new activity is written by a batch in a task of its own: the batch's span is a child of the
/// call's span, and the write transaction a child of the batch's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_activity_is_written_in_a_batch_span_of_its_call_on_postgres() {
    let db = or_skip!(TestDb::new(Backend::Postgres).await);
    let (receiver, _db, server, addr) = traced_server_on(db, "100").await;
    let channel = channel(&addr).await;
    let zoe = CustomerServiceClient::new(channel.clone())
        .create_customer(as_agent(
            "ana",
            pb::CreateCustomerRequest {
                customer: Some(customer("Zoe", "Quinn")),
            },
        ))
        .await
        .expect("created")
        .into_inner();
    let caller = Caller::new();
    ActivityServiceClient::new(channel)
        .create_activity(caller.request(
            "ana",
            pb::CreateActivityRequest {
                activity: Some(activity(&zoe.id, "Billing question")),
            },
        ))
        .await
        .expect("the activity");
    let trace = receiver
        .trace(&caller.trace_id, |trace| {
            call_span(trace, &caller).is_some_and(|call| {
                children(trace, &call.span, "create_activity.batch")
                    .iter()
                    .any(|batch| !children(trace, batch, "db.transaction").is_empty())
            })
        })
        .await;
    let span = &call_span(&trace, &caller).expect("the call's span").span;
    assert_eq!(
        span.name,
        "customer_context.v1.ActivityService/CreateActivity"
    );
    let batch = children(&trace, span, "create_activity.batch")[0];
    assert_eq!(
        int(&batch.attributes, "create_activity.batch.size"),
        Some(1)
    );
    let write = children(&trace, batch, "db.transaction")[0];
    assert_eq!(
        string(&write.attributes, "db.operation").as_deref(),
        Some("create_activity")
    );
    stop_gracefully(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_queued_are_exported_at_shutdown() {
    // Batches would wait a minute: only the flush at shutdown exports the span in time.
    let (receiver, _db, server, addr) = traced_server("60000").await;
    let caller = create_zoe_as_ana(&mut CustomerServiceClient::new(channel(&addr).await)).await;
    within("graceful stop", stop_gracefully(server)).await;
    let trace = receiver
        .trace(&caller.trace_id, |trace| {
            call_span(trace, &caller).is_some()
        })
        .await;
    assert_eq!(
        call_span(&trace, &caller)
            .expect("the call's span")
            .span
            .name,
        "customer_context.v1.CustomerService/CreateCustomer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_exported_without_the_flag() {
    let (receiver, endpoint) = Receiver::start().await;
    let db = TestDb::new(Backend::Sqlite).await.expect("SQLite");
    // The standard variables name the receiver, but traces stay off without --otlp-endpoint.
    let (server, addr) = start_server(
        db.url(),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    create_zoe_as_ana(&mut CustomerServiceClient::new(channel(&addr).await)).await;
    // Past several export delays, and through the shutdown that would flush them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    within("graceful stop", stop_gracefully(server)).await;
    assert!(receiver.spans().is_empty(), "{:#?}", receiver.spans());
}
