//! Service plumbing: health, reflection, gRPC-web with CORS, graceful shutdown.

use std::collections::BTreeSet;

use prost::Message;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_client::HealthClient,
};

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

const PUBLIC_SERVICES: [&str; 3] = [
    "customer_context.v1.CustomerService",
    "customer_context.v1.RequestService",
    "customer_context.v1.ActivityService",
];

#[apply(backends)]
#[tokio::test]
async fn health_check_reports_serving(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    assert_health_of_every_service(
        &mut HealthClient::new(app.channel()),
        ServingStatus::Serving,
    )
    .await;
}

/// Health checks of "" (the server) and of every public service all answer `expected`.
async fn assert_health_of_every_service(
    health: &mut HealthClient<Channel>,
    expected: ServingStatus,
) {
    for service in std::iter::once("").chain(PUBLIC_SERVICES) {
        let call = HealthCheckRequest {
            service: service.to_owned(),
        };
        let response = ok(health.check(call).await);
        assert_eq!(response.status(), expected, "{service:?}");
    }
}

/// A reflection client of one protocol version (`v1`, `v1alpha`: the same messages in two packages).
macro_rules! reflection_client {
    ($version:ident) => {
        pub mod $version {
            use std::collections::BTreeSet;

            use tonic::transport::Channel;
            use tonic_reflection::pb::$version::{
                ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            };
            pub use tonic_reflection::pb::$version::{
                server_reflection_request::MessageRequest,
                server_reflection_response::MessageResponse,
            };

            use crate::harness::{ok, within};

            /// The answers to `requests`, one each, in order.
            pub async fn ask<const N: usize>(
                channel: Channel,
                requests: [MessageRequest; N],
            ) -> [Option<MessageResponse>; N] {
                let requests = requests.map(|message_request| ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(message_request),
                });
                let mut client = ServerReflectionClient::new(channel);
                let mut answers = ok(client
                    .server_reflection_info(futures::stream::iter(requests))
                    .await);
                let mut responses = Vec::new();
                for _ in 0..N {
                    let answer = within("reflection answer", answers.message())
                        .await
                        .expect("reflection stream")
                        .expect("an answer");
                    responses.push(answer.message_response);
                }
                responses.try_into().expect("one answer per request")
            }

            /// The names of the services a ListServices answer lists.
            pub fn listed_services(answer: Option<MessageResponse>) -> BTreeSet<String> {
                let Some(MessageResponse::ListServicesResponse(list)) = answer else {
                    panic!("not a service list: {answer:?}");
                };
                list.service.into_iter().map(|s| s.name).collect()
            }
        }
    };
}
reflection_client!(v1);
reflection_client!(v1alpha);

#[track_caller]
fn assert_public_services_listed(names: &BTreeSet<String>) {
    for service in PUBLIC_SERVICES {
        assert!(names.contains(service), "{service} missing from {names:?}");
    }
}

#[apply(backends)]
#[tokio::test]
async fn reflection_v1_lists_the_public_services(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let list = v1::MessageRequest::ListServices(String::new());
    let [listed] = v1::ask(app.channel(), [list]).await;
    assert_public_services_listed(&v1::listed_services(listed));
}

#[apply(backends)]
#[tokio::test]
async fn reflection_v1alpha_lists_and_describes_the_public_services(backend: Backend) {
    use v1alpha::{MessageRequest, MessageResponse};
    let app = or_skip!(TestApp::spawn(backend).await);
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("customer_context.v1.CustomerService".to_owned()),
    ];
    let [listed, described] = v1alpha::ask(app.channel(), requests).await;
    assert_public_services_listed(&v1alpha::listed_services(listed));
    let Some(MessageResponse::FileDescriptorResponse(files)) = described else {
        panic!("not a file descriptor: {described:?}");
    };
    let names: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| {
            prost_types::FileDescriptorProto::decode(bytes.as_slice())
                .expect("file descriptor")
                .name()
                .to_owned()
        })
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n == "customer_context/v1/customer.proto"),
        "{names:?}"
    );
}

/// Sends `request` over a fresh HTTP/1.1 connection and reads the whole answer (`Connection: close`): the
/// response head and the body (de-chunked).
async fn http1_exchange(app: &TestApp, request: &[u8]) -> (String, Vec<u8>) {
    within("HTTP/1.1 exchange", async {
        let mut stream = TcpStream::connect(app.addr).await.expect("connect");
        stream.write_all(request).await.expect("write request");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read answer");
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of headers");
        let head = String::from_utf8(answer[..split].to_vec()).expect("ascii headers");
        let mut body = answer[split + 4..].to_vec();
        if header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            body = dechunk(&body);
        }
        (head, body)
    })
    .await
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_line = std::str::from_utf8(&raw[..line_end]).expect("chunk size");
        let size_text = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).expect("hex chunk size");
        raw = &raw[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// The value of header `name` (case-insensitive) in an HTTP/1.1 response head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[apply(backends)]
#[tokio::test]
async fn grpc_web_call_over_http1_answers_with_a_status_trailer_frame(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let head = format!(
        "POST /grpc.health.v1.Health/Check HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Content-Type: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\n\
         Origin: http://gadget.example\r\n\
         Content-Length: 5\r\n\
         Connection: close\r\n\r\n",
        addr = app.addr
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(&[0, 0, 0, 0, 0]); // uncompressed frame holding an empty HealthCheckRequest
    let (head, body) = http1_exchange(&app, &request).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        header(&head, "content-type").is_some_and(|v| v.starts_with("application/grpc-web")),
        "{head}"
    );
    assert!(
        header(&head, "access-control-allow-origin").is_some(),
        "CORS headers on the actual call too: {head}"
    );

    // Frames: flag (1 byte), length (4 bytes, big-endian), payload; flag bit 0x80 marks the trailers.
    let mut rest = body.as_slice();
    let mut message = None;
    let mut trailers = None;
    while !rest.is_empty() {
        assert!(rest.len() >= 5, "truncated frame in {body:?}");
        let flag = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let payload = &rest[5..5 + len];
        if flag & 0x80 == 0 {
            message = Some(HealthCheckResponse::decode(payload).expect("HealthCheckResponse"));
        } else {
            trailers = Some(String::from_utf8(payload.to_vec()).expect("ascii trailers"));
        }
        rest = &rest[5 + len..];
    }
    let message = message.expect("a message frame");
    assert_eq!(message.status(), ServingStatus::Serving);
    let trailers = trailers.expect("a trailer frame").to_ascii_lowercase();
    assert!(
        trailers
            .lines()
            .any(|l| l.trim().replace(' ', "") == "grpc-status:0"),
        "{trailers:?}"
    );
}

#[apply(backends)]
#[tokio::test]
async fn cors_preflight_allows_browser_gadgets(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let request = format!(
        "OPTIONS /customer_context.v1.CustomerService/GetCustomer HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Origin: http://gadget.example\r\n\
         Access-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: content-type,x-grpc-web,x-agent-id\r\n\
         Content-Length: 0\r\n\
         Connection: close\r\n\r\n",
        addr = app.addr
    );
    let (head, _) = http1_exchange(&app, request.as_bytes()).await;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("status line of {head}"));
    assert!((200..300).contains(&status), "{head}");
    let origin = header(&head, "access-control-allow-origin").unwrap_or_else(|| panic!("{head}"));
    assert!(origin == "*" || origin == "http://gadget.example", "{head}");
    let methods = header(&head, "access-control-allow-methods").unwrap_or_else(|| panic!("{head}"));
    assert!(
        methods.to_ascii_uppercase().contains("POST") || methods == "*",
        "{head}"
    );
    let headers = header(&head, "access-control-allow-headers")
        .unwrap_or_else(|| panic!("{head}"))
        .to_ascii_lowercase();
    for needed in ["content-type", "x-grpc-web", "x-agent-id"] {
        assert!(
            headers.contains(needed) || headers == "*",
            "{needed} not allowed: {head}"
        );
    }
}

#[apply(backends)]
#[tokio::test]
async fn shutdown_stops_serving(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let addr = app.addr;
    let created = app.ana_lopez().await;
    assert_eq!(created.version, 1);
    app.shutdown().await;
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "still accepting connections on {addr}");
}

/// Health follows the database: NOT_SERVING (for "" and every service, to checks and watchers) while PostgreSQL
/// refuses the replica, SERVING again once it lets it back in, and calls then work.
#[tokio::test]
async fn health_is_not_serving_while_the_database_refuses_the_replica() {
    use sea_orm::{ConnectionTrait, Database};

    let db = or_skip!(TestDb::new(Backend::Postgres).await);
    let app = TestApp::spawn_on_with(db.url(), |settings| {
        settings.health_probe_interval = std::time::Duration::from_millis(100);
    })
    .await;
    let mut health = HealthClient::new(app.channel());
    let overall = || HealthCheckRequest {
        service: String::new(),
    };
    let mut watch = ok(health.watch(overall()).await);
    let mut next_status = async || {
        within("a health status", watch.message())
            .await
            .expect("health watch")
            .expect("health watch open")
            .status()
    };
    assert_eq!(next_status().await, ServingStatus::Serving);

    // A database cannot refuse connections while the session asking is in it: ask from `postgres`.
    let (server, name) = db
        .url()
        .rsplit_once('/')
        .expect("a database name in the URL");
    let name = name.split('?').next().unwrap_or(name);
    let admin = Database::connect(format!("{server}/postgres"))
        .await
        .expect("admin connection");
    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .expect("refuse new connections");
    let closed = admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}'"
        ))
        .await
        .expect("close the replica's connections")
        .rows_affected();
    assert!(closed >= 1, "the replica's connections were closed");

    assert_eq!(next_status().await, ServingStatus::NotServing);
    assert_health_of_every_service(&mut health, ServingStatus::NotServing).await;
    let refused = err(app
        .customers()
        .create_customer(app.setup(customer_context::pb::CreateCustomerRequest {
            customer: Some(customer("Ana", "Lopez")),
        }))
        .await);
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .expect("accept connections again");
    assert_eq!(next_status().await, ServingStatus::Serving);
    let created = app.ana_lopez().await;
    assert_eq!(created.version, 1);
    drop(admin);
    app.shutdown().await;
}
