//! Hostile input: every RPC of every service (read from the descriptor set, so a new RPC is covered by itself)
//! is driven with random bytes, mutations of valid messages, huge strings, bad masks and tokens, and a 10 MB
//! message. The service never panics, never answers INTERNAL or UNKNOWN, keeps serving, and a refused call leaves
//! the database as it was.

use customer_context::{config::DatabaseSettings, pb, store::Store};
use proptest::{
    collection::vec,
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config, TestRunner},
};
use prost::Message;
use prost::bytes::{Buf, BufMut};
use rstest::rstest;
use rstest_reuse::apply;
use tonic::{
    Code, Request, Status,
    client::Grpc,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
};

use crate::harness::*;

/// Sends and receives raw bytes, so a test can put anything on the wire.
#[derive(Clone, Default)]
pub(crate) struct RawCodec;

pub(crate) struct RawEncoder;
pub(crate) struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Every public RPC: (path, streams requests).
fn methods() -> Vec<(String, bool)> {
    let methods: Vec<(String, bool)> = customer_context::public_methods()
        .into_iter()
        .map(|method| (method.path, method.client_streaming))
        .collect();
    assert!(methods.len() >= 18, "found {} RPCs", methods.len());
    methods
}

/// Calls `path` with `payload` as the whole request message and returns the status (OK included).
pub(crate) async fn call_raw(
    channel: &Channel,
    path: &str,
    streaming: bool,
    payload: Vec<u8>,
) -> Status {
    let mut grpc = Grpc::new(channel.clone());
    grpc.ready().await.expect("server ready");
    let path: http::uri::PathAndQuery = path.parse().expect("path");
    if streaming {
        let requests = tokio_stream::iter(vec![payload]);
        match grpc.streaming(Request::new(requests), path, RawCodec).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                // A watch stays open: one message or an error is enough to know how it took the input.
                match tokio::time::timeout(std::time::Duration::from_millis(300), stream.message())
                    .await
                {
                    Ok(Err(status)) => status,
                    _ => Status::ok(""),
                }
            }
            Err(status) => status,
        }
    } else {
        match grpc.unary(Request::new(payload), path, RawCodec).await {
            Ok(_) => Status::ok(""),
            Err(status) => status,
        }
    }
}

/// Valid requests to mutate: one per kind of content the RPCs take.
fn seeds(customer_id: &str) -> Vec<Vec<u8>> {
    let customer = pb::Customer {
        first_name: "Ana".into(),
        contact_points: vec![phone("(415) 555-0100")],
        tags: strings(&["vip"]),
        attributes: [("tier".to_owned(), "gold".to_owned())].into(),
        ..Default::default()
    };
    vec![
        pb::CreateCustomerRequest {
            customer: Some(customer.clone()),
        }
        .encode_to_vec(),
        pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                id: customer_id.into(),
                version: 1,
                ..customer
            }),
            update_mask: mask(&["first_name", "tags"]),
            ..Default::default()
        }
        .encode_to_vec(),
        pb::ListActivitiesRequest {
            customer_id: customer_id.into(),
            page_size: 5,
            page_token: "abc".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        pb::CreateActivityRequest {
            activity: Some(activity(customer_id, "call")),
        }
        .encode_to_vec(),
        pb::WatchRequest {
            request: Some(pb::watch_request::Request::Subscribe(pb::Subscribe {
                resources: vec![pb::ResourceRef {
                    r#type: 1,
                    id: customer_id.into(),
                    known_version: 1,
                }],
                ..Default::default()
            })),
        }
        .encode_to_vec(),
    ]
}

/// How to mutate a seed: which seed, bytes to flip, where to cut, garbage to append.
type Mutation = (usize, Vec<(usize, u8)>, Option<usize>, Vec<u8>);

/// A mutated copy of a seed: bytes flipped, cut short, or garbage spliced in.
fn mutation() -> impl Strategy<Value = Mutation> {
    (
        0usize..5,
        vec((any::<usize>(), any::<u8>()), 0..6),
        proptest::option::of(any::<usize>()),
        vec(any::<u8>(), 0..16),
    )
}

fn mutate(seed: &[u8], flips: &[(usize, u8)], cut: Option<usize>, splice: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for (at, value) in flips {
        if !bytes.is_empty() {
            let at = at % bytes.len();
            bytes[at] ^= value;
        }
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes.extend_from_slice(splice);
    bytes
}

/// A server with one customer, and a connection of the test's own to the server's database, to tell whether a
/// call changed anything.
struct Target {
    app: TestApp,
    store: Store,
    existing: pb::Customer,
    _db: TestDb,
}

impl Target {
    async fn spawn(backend: Backend) -> Option<Target> {
        let (app, db) = TestApp::spawn_keeping_db(backend).await?;
        let store = Store::connect(&DatabaseSettings::new(db.url()))
            .await
            .expect("store");
        let existing = app.create_customer(customer("Carla", "Diaz")).await;
        Some(Target {
            app,
            store,
            existing,
            _db: db,
        })
    }

    /// Where the database's change log stands.
    async fn log_position(&self) -> i64 {
        self.store.last_change_seq().await.expect("log position")
    }
}

fn assert_not_a_fault(status: &Status, what: &str) {
    assert!(
        !matches!(
            status.code(),
            Code::Internal | Code::Unknown | Code::DataLoss | Code::Unimplemented
        ),
        "{what}: answered {:?}: {}",
        status.code(),
        status.message()
    );
}

#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_malformed_messages_never_fault_the_service_or_change_data_when_refused(
    backend: Backend,
) {
    let target = or_skip!(Target::spawn(backend).await);
    let channel = target.app.channel();
    let methods = methods();
    let seeds = seeds(&target.existing.id);

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let random_bytes = vec(any::<u8>(), 0..256);
    let mutations = mutation();
    let mut refused = 0;
    for round in 0..12 {
        for (path, streaming) in &methods {
            let payload = if round % 2 == 0 {
                random_bytes.new_tree(&mut runner).expect("value").current()
            } else {
                let (seed, flips, cut, splice) =
                    mutations.new_tree(&mut runner).expect("value").current();
                mutate(&seeds[seed % seeds.len()], &flips, cut, &splice)
            };
            let before = target.log_position().await;
            let status = call_raw(&channel, path, *streaming, payload.clone()).await;
            assert_not_a_fault(
                &status,
                &format!("{path} with {} bytes {payload:02x?}", payload.len()),
            );
            if status.code() != Code::Ok {
                refused += 1;
                assert_eq!(
                    target.log_position().await,
                    before,
                    "{path} refused ({:?}) but changed the database",
                    status.code()
                );
            }
        }
    }
    assert!(refused > 0, "hostile input was refused at least sometimes");

    // Still serving, and the record that was there is untouched by refused calls.
    let still = target.app.get_customer(&target.existing.id).await;
    assert_eq!(
        still.expect("still serving").first_name,
        target.existing.first_name
    );
    target.store.close().await;
}

#[apply(backends)]
#[tokio::test]
async fn huge_strings_bad_masks_bad_tokens_and_10_mb_messages_are_refused_cleanly(
    backend: Backend,
) {
    let target = or_skip!(Target::spawn(backend).await);
    let existing = &target.existing;
    let before = target.log_position().await;
    let huge = "Ω".repeat(1_000_000);

    let mut statuses = Vec::new();
    let mut customers = target.app.customers();
    statuses.push(
        customers
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(pb::Customer {
                    first_name: huge.clone(),
                    notes: huge.clone(),
                    tags: vec![huge.clone(); 3],
                    attributes: [(huge.clone(), huge.clone())].into(),
                    contact_points: vec![phone(&huge), email(&huge)],
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err(),
    );
    let bad_paths = [
        "first_name",
        "no_such_field",
        "*",
        "",
        "contact_points.value",
        "id",
    ];
    statuses.push(
        customers
            .update_customer(update_customer_request(
                customer_at(&existing.id, 1),
                &bad_paths,
            ))
            .await
            .unwrap_err(),
    );
    // A thousand unknown paths of a thousand characters, each quoted back: the reply stays small enough for the
    // client to read it (unbounded, it was a megabyte of trailers, and the client gave up on the stream).
    let long_path = "p".repeat(1_000);
    let paths: Vec<&str> = vec![long_path.as_str(); 1_000];
    let status = customers
        .update_customer(update_customer_request(
            customer_at(&existing.id, 1),
            &paths,
        ))
        .await
        .unwrap_err();
    assert_error(&status, Code::InvalidArgument, "INVALID_UPDATE_MASK");
    assert!(
        status
            .message()
            .starts_with("1000 invalid fields: update_mask.paths[0]: unknown field"),
        "{:.300}",
        status.message()
    );
    let unlisted: usize = error_info(&status).metadata["unlisted"]
        .parse()
        .expect("a count");
    assert!((900..1_000).contains(&unlisted), "{unlisted} unlisted");
    statuses.push(status);
    for token in ["%%%", "AAAA", &"x".repeat(100_000), "MXxmZmZ8fDAxOTA"] {
        statuses.push(
            customers
                .search_customers(pb::SearchCustomersRequest {
                    query: "a".into(),
                    page_size: 5,
                    page_token: token.into(),
                })
                .await
                .unwrap_err(),
        );
        statuses.push(
            target
                .app
                .activities()
                .list_activities(pb::ListActivitiesRequest {
                    customer_id: existing.id.clone(),
                    page_token: token.into(),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
        );
    }
    statuses.push(
        customers
            .search_customers(pb::SearchCustomersRequest {
                query: huge.clone(),
                page_size: i32::MIN,
                page_token: String::new(),
            })
            .await
            .unwrap_err(),
    );
    // 10 MB in one message: over the decoding limit.
    let ten_mb = "x".repeat(10 * 1024 * 1024);
    statuses.push(
        customers
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(pb::Customer {
                    notes: ten_mb,
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err(),
    );

    for status in &statuses {
        assert_not_a_fault(status, "hostile field values");
        // The reply travels in the trailers, which gRPC's C core caps at 8 KiB (soft) and 16 KiB (hard).
        let trailers = status.message().len() + status.details().len();
        assert!(
            trailers < 8 * 1024,
            "a {trailers}-byte reply to hostile input: {:.200}",
            status.message()
        );
        assert!(
            matches!(
                status.code(),
                Code::InvalidArgument | Code::ResourceExhausted | Code::OutOfRange
            ),
            "expected a refusal, got {:?}: {}",
            status.code(),
            status.message()
        );
    }
    assert_eq!(
        target.log_position().await,
        before,
        "refused calls changed nothing"
    );
    let still = target.app.get_customer(&existing.id).await;
    assert_eq!(&still.expect("still serving"), existing);
    target.store.close().await;
}
