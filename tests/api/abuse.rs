//! Key holders who attack the service, each kind tried against a real server: calls whose request never
//! arrives, a flood of watch subscriptions, a revoked key's open streams, maximal requests built to cost memory,
//! and errors quoting hostile input. Each time, other keys keep being served with normal latency.

use std::time::{Duration, Instant};

use customer_context::config::Settings;
use customer_context::pb::{
    self, activity_service_client::ActivityServiceClient,
    customer_service_client::CustomerServiceClient, watch_event::Event,
    watch_request::Request as Req, watch_service_client::WatchServiceClient,
};
use http::{HeaderMap, Request};
use prost::Message;
use rstest::rstest;
use rstest_reuse::apply;
use tokio::{net::TcpStream, sync::mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming, transport::Channel};
use tonic_types::StatusExt as _;

use crate::harness::*;

const GET_CUSTOMER: &str = "/customer_context.v1.CustomerService/GetCustomer";
const UPDATE_CUSTOMER: &str = "/customer_context.v1.CustomerService/UpdateCustomer";

/// An HTTP/2 connection speaking gRPC by hand, so a test can stop halfway through a request.
async fn raw_connection(
    addr: std::net::SocketAddr,
) -> h2::client::SendRequest<prost::bytes::Bytes> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

fn grpc_request(addr: std::net::SocketAddr, path: &str, key: &str) -> Request<()> {
    Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {key}"))
        .body(())
        .expect("request")
}

/// A gRPC frame holding `message`.
fn frame(message: &[u8]) -> prost::bytes::Bytes {
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&u32::try_from(message.len()).expect("size").to_be_bytes());
    bytes.extend_from_slice(message);
    bytes.into()
}

/// Bytes a header block takes as HTTP/2 and gRPC clients count it: name, value and 32 per entry.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

/// A server with `--auth keys` (set up further by `configure`), customer Carla Diaz, a portal key of hers and the
/// key of agent ana.
async fn carla_with_keys(
    backend: Backend,
    configure: impl FnOnce(&mut Settings),
) -> Option<(TestApp, pb::Customer, String, String)> {
    let app = TestApp::spawn_with_keys(backend, configure).await?;
    let carla = app.create_customer(customer("Carla", "Diaz")).await;
    let portal = app
        .mint_key("portal-carla", "portal", Some(&carla.id))
        .await;
    let agent = app.mint_key("ana", "agent", None).await;
    Some((app, carla, portal, agent))
}

/// A GetCustomer as agent `key`, timed.
async fn timed_get(
    app: &TestApp,
    key: &str,
    id: &str,
) -> (Result<pb::Customer, tonic::Status>, Duration) {
    let started = Instant::now();
    let result = CustomerServiceClient::new(app.new_channel().await)
        .get_customer(keyed(key, pb::GetCustomerRequest { id: id.into() }))
        .await
        .map(tonic::Response::into_inner);
    (result, started.elapsed())
}

/// A Watch stream opened with `key` on `channel`: the sender of its requests and the answer to opening it.
async fn open_watch(
    channel: Channel,
    key: &str,
    capacity: usize,
) -> (
    mpsc::Sender<pb::WatchRequest>,
    Result<Streaming<pb::WatchEvent>, Status>,
) {
    let (requests, rx) = mpsc::channel(capacity);
    let events = WatchServiceClient::new(channel)
        .watch(keyed(key, ReceiverStream::new(rx)))
        .await
        .map(tonic::Response::into_inner);
    (requests, events)
}

/// The status `events` ends with, once the events before it are read.
async fn end_status(what: &str, events: &mut Streaming<pb::WatchEvent>) -> Status {
    loop {
        match within(what, events.message()).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("{what}: the stream ended without a status"),
            Err(status) => return status,
        }
    }
}

/// Reads `events` until one that `wanted` accepts.
async fn wait_for(
    what: &str,
    events: &mut Streaming<pb::WatchEvent>,
    wanted: impl Fn(&pb::WatchEvent) -> bool,
) {
    loop {
        let event = within(what, events.message())
            .await
            .expect("event")
            .expect("open");
        if wanted(&event) {
            return;
        }
    }
}

/// The agents present, when `event` is a presence change.
fn present_agents(event: &pb::WatchEvent) -> Option<Vec<&str>> {
    match &event.event {
        Some(Event::PresenceChanged(presence)) => Some(
            presence
                .participants
                .iter()
                .map(|p| p.agent.as_str())
                .collect(),
        ),
        _ => None,
    }
}

/// One key opens hundreds of calls over three connections, sends their headers and never their bodies. They
/// take only that key's slots, are ended after `--request-timeout`, and meanwhile other keys are served at once.
#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_whose_request_never_arrives_cannot_lock_other_keys_out(backend: Backend) {
    let few_calls = |settings: &mut Settings| {
        settings.security.max_concurrent_calls = 64;
        settings.security.max_calls_per_key = 16;
        settings.security.request_timeout = Duration::from_secs(2);
    };
    let (app, carla, portal, agent) = or_skip!(carla_with_keys(backend, few_calls).await);

    let message = frame(
        &pb::GetCustomerRequest {
            id: carla.id.clone(),
        }
        .encode_to_vec(),
    );
    let mut stalled = Vec::new();
    let mut refused_at_once = 0;
    for connection in 0..3 {
        let mut send = raw_connection(app.addr).await;
        for _ in 0..100 {
            send = send.ready().await.expect("stream capacity");
            let (response, mut body) = send
                .send_request(grpc_request(app.addr, GET_CUSTOMER, &portal), false)
                .expect("request sent");
            // One byte short of the message: the request never completes.
            body.send_data(message.slice(..message.len() - 1), false)
                .expect("data");
            stalled.push((connection, response, body));
        }
    }
    // The key's own slots fill up; its further calls are refused at once.
    let mut pending = Vec::new();
    for (_, response, body) in stalled {
        match tokio::time::timeout(Duration::from_millis(50), response).await {
            Ok(Ok(response)) => {
                let status = tonic::Status::from_header_map(response.headers()).expect("a status");
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                refused_at_once += 1;
            }
            Ok(Err(err)) => panic!("stream failed: {err}"),
            Err(_) => pending.push(body),
        }
    }
    assert!(refused_at_once >= 250, "{refused_at_once} refused at once");

    // Other keys are served, fast, while the stalled calls hold their slots.
    for _ in 0..20 {
        let (result, took) = timed_get(&app, &agent, &carla.id).await;
        assert_eq!(result.expect("agent served").id, carla.id);
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }
    // After --request-timeout the stalled calls are over and the portal is served again.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (result, _) = timed_get(&app, &portal, &carla.id).await;
    assert_eq!(result.expect("portal served again").id, carla.id);
    drop(pending);
}

/// Two watch streams of one portal key send subscriptions naming one public activity tens of thousands of
/// times. Duplicates cost one record, every message counts against the key's rate, a message over the value
/// bound is refused before decoding, and a third stream is over the key's limit. An agent is served throughout.
#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_flood_is_deduplicated_rate_limited_and_bounded(backend: Backend) {
    let slow_rate = |settings: &mut Settings| {
        // One a second: the flood outruns it however slowly a loaded machine decodes its messages.
        settings.security.rate_limit_per_key = 1.0;
        settings.security.rate_limit_burst = Some(5);
        settings.security.max_streams_per_key = 2;
    };
    let (app, carla, portal, agent) = or_skip!(carla_with_keys(backend, slow_rate).await);
    let public = app.create_activity(activity(&carla.id, "question")).await;
    let reference = pb::ResourceRef {
        r#type: pb::ResourceType::Activity as i32,
        id: public.id.clone(),
        known_version: 0,
    };
    let subscribe = move |copies: usize| pb::WatchRequest {
        request: Some(Req::Subscribe(pb::Subscribe {
            resources: vec![reference.clone(); copies],
            ..Default::default()
        })),
    };
    let (huge, huge_events) = open_watch(app.channel(), &portal, 64).await;
    let mut huge_events = huge_events.expect("first stream opens");
    let (many, many_events) = open_watch(app.channel(), &portal, 64).await;
    let mut many_events = many_events.expect("second stream opens");

    // A third stream of the same key is over its limit.
    let (_third, third) = open_watch(app.channel(), &portal, 64).await;
    let refused = match third {
        Err(status) => status,
        Ok(mut events) => events
            .message()
            .await
            .expect_err("the third stream is refused"),
    };
    assert_error(&refused, Code::ResourceExhausted, "TOO_MANY_STREAMS");

    // 80,000 copies of a reference are over the bound on values: refused before decoding, the stream ends.
    for _ in 0..6 {
        if huge.send(subscribe(80_000)).await.is_err() {
            break;
        }
    }
    let ended = within("the huge subscription is refused", huge_events.message())
        .await
        .expect_err("the stream ends");
    assert_error(&ended, Code::InvalidArgument, "TOO_MANY_ELEMENTS");

    // 20,000 copies cost one record each time; the key's rate runs out after its burst and the stream ends.
    let flood = tokio::spawn(async move {
        for _ in 0..100 {
            if many.send(subscribe(20_000)).await.is_err() {
                break;
            }
        }
    });
    // The agent's own burst (5) allows four calls in a row.
    let mut served = Vec::new();
    for _ in 0..4 {
        let (result, took) = timed_get(&app, &agent, &carla.id).await;
        assert_eq!(result.expect("agent served").id, carla.id);
        served.push(took);
    }
    let limited = end_status("the flood is rate limited", &mut many_events).await;
    assert_error(&limited, Code::ResourceExhausted, "RATE_LIMITED");
    flood.await.expect("flood task");
    served.sort();
    assert!(
        served[served.len() / 2] < Duration::from_millis(200),
        "agent latencies {served:?}"
    );
    assert!(
        served[served.len() - 1] < Duration::from_secs(1),
        "agent latencies {served:?}"
    );
}

/// A revoked agent key's open watch stream ends with UNAUTHENTICATED within the key-cache time, and the agent
/// leaves the presence other agents see.
#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_ends_its_streams_and_its_presence(backend: Backend) {
    let app = or_skip!(TestApp::spawn_with_keys(backend, |_| {}).await);
    let carla = app.create_customer(customer("Carla", "Diaz")).await;
    let ana = app.mint_key("ana", "agent", None).await;
    let ben = app.mint_key("ben", "agent", None).await;
    let watch = |key: String| {
        let channel = app.channel();
        let id = carla.id.clone();
        async move {
            let (requests, events) = open_watch(channel, &key, 8).await;
            let mut events = events.expect("watch opens");
            for request in [
                Req::Subscribe(pb::Subscribe {
                    resources: vec![pb::ResourceRef {
                        r#type: pb::ResourceType::Customer as i32,
                        id: id.clone(),
                        known_version: 1,
                    }],
                    ..Default::default()
                }),
                Req::SetEditing(pb::SetEditing {
                    resource: Some(pb::ResourceRef {
                        r#type: pb::ResourceType::Customer as i32,
                        id,
                        known_version: 0,
                    }),
                    editing: true,
                }),
            ] {
                requests
                    .send(pb::WatchRequest {
                        request: Some(request),
                    })
                    .await
                    .expect("send");
            }
            // The stream's first presence confirms it joined.
            wait_for("joined", &mut events, |event| {
                present_agents(event).is_some()
            })
            .await;
            (requests, events)
        }
    };
    let (_ana_requests, mut ana_events) = watch(ana).await;
    let (_ben_requests, mut ben_events) = watch(ben).await;
    wait_for("ben sees ana", &mut ben_events, |event| {
        present_agents(event).is_some_and(|p| p == ["ana", "ben"])
    })
    .await;

    app.revoke_key("ana").await;
    let revoked = Instant::now();
    let ended = end_status("ana's stream ends", &mut ana_events).await;
    assert_error(&ended, Code::Unauthenticated, "API_KEY_REVOKED");
    // The key cache (1 s here) bounds how long it takes.
    assert!(
        revoked.elapsed() < KEY_CACHE_TTL + Duration::from_secs(1),
        "{:?}",
        revoked.elapsed()
    );
    wait_for("ana leaves", &mut ben_events, |event| {
        present_agents(event).is_some_and(|p| p == ["ben"])
    })
    .await;
}

/// The server binary's peak resident memory, from `/proc`.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

/// Requests as large as the server accepts (4 MiB), built to cost the most memory per byte: a million tiny
/// mask paths, a million duplicate tags. Each is refused, and the server's peak memory grows by less than
/// 50 MiB for each.
#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximal_requests_cost_bounded_memory(backend: Backend) {
    let db = or_skip!(TestDb::new(backend).await);
    let (server, addr) = crate::crash::start_server(db.url());
    let pid = server.id();
    let channel = crate::crash::channel(&addr).await;
    let mut customers =
        CustomerServiceClient::new(channel.clone()).max_encoding_message_size(8 << 20);
    let mut activities = ActivityServiceClient::new(channel).max_encoding_message_size(8 << 20);
    let carla = customers
        .create_customer(as_agent(
            "setup",
            pb::CreateCustomerRequest {
                customer: Some(customer("Carla", "Diaz")),
            },
        ))
        .await
        .expect("created")
        .into_inner();
    // Warm up: the first calls of each kind settle the server's buffers and pools.
    for _ in 0..3 {
        let _ = customers
            .get_customer(as_agent(
                "setup",
                pb::GetCustomerRequest {
                    id: carla.id.clone(),
                },
            ))
            .await;
    }
    let budget = 50 * 1024 * 1024;

    let before = peak_rss_bytes(pid);
    // Two bytes on the wire per one-character path: about 1.3 million in 4 MiB, less than the limit.
    let paths = vec!["x".to_owned(); 1_300_000];
    let status = customers
        .update_customer(as_agent(
            "setup",
            pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    id: carla.id.clone(),
                    version: 1,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
                ..Default::default()
            },
        ))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let grown = peak_rss_bytes(pid).saturating_sub(before);
    assert!(
        grown < budget,
        "a million mask paths grew the peak by {} MiB",
        grown >> 20
    );

    // A million tags, refused before decoding; then, just under the bound on values, 90,000 duplicates, decoded and
    // checked: described a hundred times and counted the rest.
    for (copies, tag) in [(1_300_000, "a"), (90_000, "dup")] {
        let before = peak_rss_bytes(pid);
        let mut many = activity(&carla.id, "call");
        many.tags = vec![tag.to_owned(); copies];
        let status = activities
            .create_activity(as_agent(
                "setup",
                pb::CreateActivityRequest {
                    activity: Some(many),
                },
            ))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let listed = status
            .get_details_bad_request()
            .map_or(0, |request| request.field_violations.len());
        assert!(listed <= 100, "{listed} listed");
        let grown = peak_rss_bytes(pid).saturating_sub(before);
        assert!(
            grown < budget,
            "{copies} tags grew the peak by {} MiB",
            grown >> 20
        );
    }

    // Still serving.
    customers
        .get_customer(as_agent(
            "setup",
            pb::GetCustomerRequest {
                id: carla.id.clone(),
            },
        ))
        .await
        .expect("still serving");
    crate::crash::stop_gracefully(server).await;
}

/// The INVALID_ARGUMENT of a request with a thousand bad mask paths, each quoting hostile text back, fits in
/// the 8 KiB of metadata a default gRPC client accepts (measured on the wire, every header counted), and a
/// client reads it.
#[apply(backends)]
#[tokio::test]
async fn an_error_quoting_a_thousand_bad_paths_fits_a_default_client(backend: Backend) {
    let (app, carla, _portal, agent) = or_skip!(carla_with_keys(backend, |_| {}).await);
    let hostile = "ü \"%😀".repeat(200);
    let paths: Vec<String> = (0..1_000).map(|i| format!("{hostile}{i}")).collect();
    let request = pb::UpdateCustomerRequest {
        customer: Some(pb::Customer {
            id: carla.id.clone(),
            version: 1,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.clone(),
        }),
        ..Default::default()
    };

    let mut send = raw_connection(app.addr).await;
    send = send.ready().await.expect("ready");
    let (response, mut body) = send
        .send_request(grpc_request(app.addr, UPDATE_CUSTOMER, &agent), false)
        .expect("sent");
    body.send_data(frame(&request.encode_to_vec()), true)
        .expect("data");
    let response = within("response", response).await.expect("response");
    let mut size = header_bytes(response.headers());
    let mut response_body = response.into_body();
    while let Some(chunk) = response_body.data().await {
        let _ = chunk.expect("data");
    }
    if let Some(trailers) = response_body.trailers().await.expect("trailers") {
        size += header_bytes(&trailers);
    }
    assert!(size <= 8 * 1024, "{size} bytes of metadata");

    let status = CustomerServiceClient::new(app.channel())
        .update_customer(keyed(&agent, request))
        .await
        .expect_err("refused");
    assert_error(&status, Code::InvalidArgument, "INVALID_UPDATE_MASK");
    assert!(
        status.message().starts_with("1000 invalid fields:"),
        "{:.200}",
        status.message()
    );
}

/// A portal whose customer was merged away finds nothing and is told nothing of where it went: not through a
/// search, a lookup or a read, not even after the survivor is merged on into a third customer.
#[apply(backends)]
#[tokio::test]
async fn a_portal_of_a_merged_customer_learns_no_other_customer(backend: Backend) {
    let app = or_skip!(TestApp::spawn_with_keys(backend, |_| {}).await);
    let mut carla = customer("Carla", "Diaz");
    carla.contact_points = vec![phone("(415) 555-0100")];
    let carla = app.create_customer(carla).await;
    let survivor = app.create_customer(customer("Carla", "Díaz")).await;
    let third = app.create_customer(customer("C.", "Diaz")).await;
    let portal = app
        .mint_key("portal-carla", "portal", Some(&carla.id))
        .await;
    let survivor = app.merge_into(&survivor, &[&carla]).await.expect("merged");
    app.merge_into(&third, &[&survivor])
        .await
        .expect("merged on");

    let mut customers = CustomerServiceClient::new(app.channel());
    let read = customers
        .get_customer(keyed(
            &portal,
            pb::GetCustomerRequest {
                id: carla.id.clone(),
            },
        ))
        .await
        .expect_err("gone");
    assert_error(&read, Code::NotFound, "NOT_FOUND");
    let metadata = error_info(&read).metadata;
    assert!(
        !metadata
            .values()
            .any(|v| v == &survivor.id || v == &third.id),
        "{metadata:?}"
    );
    let found = customers
        .search_customers(keyed(
            &portal,
            pb::SearchCustomersRequest {
                query: "carla".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("a search finds nothing")
        .into_inner();
    assert!(found.customers.is_empty());
    let looked_up = customers
        .lookup_customers(keyed(
            &portal,
            pb::LookupCustomersRequest {
                key: Some(pb::lookup_customers_request::Key::Phone(
                    "+14155550100".into(),
                )),
            },
        ))
        .await
        .expect("a lookup finds nothing")
        .into_inner();
    assert!(looked_up.customers.is_empty());
}

/// `entered_by` names who handled an interaction: admin and router keys may name another agent, an agent key
/// always enters as itself (on create the key's name, on update the value stays).
#[apply(backends)]
#[tokio::test]
async fn only_admins_and_routers_enter_activities_for_others(backend: Backend) {
    let (app, c, _portal, ana) = or_skip!(carla_with_keys(backend, |_| {}).await);
    let router = app.mint_key("router-1", "router", None).await;
    let create = |key: &str, entered_by: &str| {
        let mut a = activity(&c.id, "call");
        a.entered_by = entered_by.into();
        let mut client = ActivityServiceClient::new(app.channel());
        let request = keyed(key, pb::CreateActivityRequest { activity: Some(a) });
        async move { client.create_activity(request).await }
    };
    let by_router = create(&router, "ben").await.expect("created").into_inner();
    assert_eq!(by_router.entered_by, "ben");
    let by_ana = create(&ana, "ben").await.expect("created").into_inner();
    assert_eq!(by_ana.entered_by, "ana");

    let mut change = by_router.clone();
    change.entered_by = "cy".into();
    change.notes = "noted".into();
    let updated = ActivityServiceClient::new(app.channel())
        .update_activity(keyed(
            &ana,
            pb::UpdateActivityRequest {
                activity: Some(change),
                update_mask: mask(&["entered_by", "notes"]),
                ..Default::default()
            },
        ))
        .await
        .expect("updated")
        .into_inner();
    assert_eq!(
        (updated.entered_by.as_str(), updated.notes.as_str()),
        ("ben", "noted")
    );
}
