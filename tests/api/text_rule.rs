//! One text rule for every string the service accepts, alike on both backends: arbitrary Unicode (U+0000, other
//! controls, 2,000 four-byte characters, random text) is sent into every string field of every unary method,
//! enumerated from the descriptors so a new field is covered by itself. Every answer is OK or
//! INVALID_ARGUMENT (ALREADY_EXISTS for a customer number already taken), never INTERNAL, and SQLite and
//! PostgreSQL give the same answer to the same call.

use std::collections::HashMap;

use customer_context::pb;
use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
};
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    ReflectMessage, Value,
};
use tonic::{Code, client::Grpc};

use crate::{harness::*, hostile::RawCodec};

/// Random strings tried per field, besides the fixed hostile ones.
const RANDOM_PER_FIELD: usize = 3;

/// The path of the method of `service` that takes `request_type` (`CreateRequestRequest`: `CreateRequest`).
fn method_path(service: &str, request_type: &str) -> String {
    let method = request_type
        .strip_suffix("Request")
        .expect("a request type");
    format!("/customer_context.v1.{service}/{method}")
}

/// The create, get, update (of `$changed`) and delete calls of one kind of record in `$service`: `$full` is a
/// valid record, `$id` the side's stored one (at version 1).
macro_rules! crud_bases {
    ($service:literal, $field:ident: $full:expr, $id:expr, $changed:literal,
     $Create:ident, $Get:ident, $Update:ident, $Delete:ident) => {{
        let path = |request_type: &str| method_path($service, request_type);
        let mut stored = $full.clone();
        stored.id = $id.clone();
        stored.version = 1;
        let create = pb::$Create {
            $field: Some($full.clone()),
        };
        let update = pb::$Update {
            $field: Some(stored),
            update_mask: mask(&[$changed]),
            ..Default::default()
        };
        let delete = pb::$Delete {
            id: $id.clone(),
            version: 1,
        };
        vec![
            (path(stringify!($Create)), create.encode_to_vec()),
            (
                path(stringify!($Get)),
                pb::$Get { id: $id.clone() }.encode_to_vec(),
            ),
            (path(stringify!($Update)), update.encode_to_vec()),
            (path(stringify!($Delete)), delete.encode_to_vec()),
        ]
    }};
}

/// The records each backend's calls refer to.
struct Side {
    name: &'static str,
    app: TestApp,
    customer: String,
    request: String,
    activity: String,
    /// Current version of every record a call may update.
    versions: HashMap<String, i64>,
    /// An OpenWatch stream of the calling agent, kept open for UpdateWatch, and its id.
    _stream: tonic::Streaming<pb::WatchEvent>,
    watch_id: String,
}

impl Side {
    async fn new(name: &'static str, app: TestApp) -> Side {
        let mut ana = customer("Ana", "Lopez");
        ana.contact_points = vec![phone("(415) 555-0100"), email("ana@example.com")];
        let customer = app.create_customer(ana).await.id;
        let request = app.create_request(request(&customer, "Billing")).await.id;
        let activity = app.create_activity(activity(&customer, "call")).await.id;
        let versions = [
            (customer.clone(), 1),
            (request.clone(), 1),
            (activity.clone(), 1),
        ]
        .into();
        let mut stream = pb::watch_service_client::WatchServiceClient::new(app.channel())
            .open_watch(as_agent("setup", pb::OpenWatchRequest::default()))
            .await
            .expect("OpenWatch")
            .into_inner();
        let Some(pb::watch_event::Event::WatchOpened(opened)) = stream
            .message()
            .await
            .expect("stream")
            .expect("event")
            .event
        else {
            panic!("the stream opens with its watch_id");
        };
        Side {
            name,
            app,
            customer,
            request,
            activity,
            versions,
            _stream: stream,
            watch_id: opened.watch_id,
        }
    }

    /// A valid request of every unary method, referring to this side's records.
    fn bases(&self) -> Vec<(String, Vec<u8>)> {
        let (c, r, a) = (
            self.customer.clone(),
            self.request.clone(),
            self.activity.clone(),
        );
        let customer_ref = pb::ResourceRef {
            r#type: pb::ResourceType::Customer as i32,
            id: c.clone(),
            known_version: 0,
        };
        let full_customer = pb::Customer {
            first_name: "Ana".into(),
            last_name: "Lopez".into(),
            company: "Acme".into(),
            notes: "note".into(),
            contact_points: vec![phone("+1 415 555 0199")],
            tags: strings(&["vip"]),
            attributes: [("tier".to_owned(), "gold".to_owned())].into(),
            ..Default::default()
        };
        let full_activity = pb::Activity {
            customer_id: c.clone(),
            topic: "call".into(),
            notes: "notes".into(),
            tags: strings(&["t"]),
            contact_name: "Ana".into(),
            contact_phone: "+1 415 555 0100".into(),
            contact_email: "ana@example.com".into(),
            sales_contact: "s".into(),
            salesperson: "p".into(),
            reference: "ref".into(),
            ..Default::default()
        };
        let full_request = pb::Request {
            description: "description".into(),
            tags: strings(&["t"]),
            ..request(&c, "title")
        };
        let customers = crud_bases!("CustomerService", customer: full_customer, c, "notes",
            CreateCustomerRequest, GetCustomerRequest, UpdateCustomerRequest, DeleteCustomerRequest);
        let requests = crud_bases!("RequestService", request: full_request, r, "description",
            CreateRequestRequest, GetRequestRequest, UpdateRequestRequest, DeleteRequestRequest);
        let activities = crud_bases!("ActivityService", activity: full_activity, a, "notes",
            CreateActivityRequest, GetActivityRequest, UpdateActivityRequest, DeleteActivityRequest);
        let others = vec![
            // Each kind of contact point has its own rules; the first one is the one tried.
            (
                "/customer_context.v1.CustomerService/CreateCustomer",
                pb::CreateCustomerRequest {
                    customer: Some(pb::Customer {
                        contact_points: vec![contact(pb::ContactKind::Chat, "chat", "@ana")],
                        ..full_customer.clone()
                    }),
                }
                .encode_to_vec(),
            ),
            (
                "/customer_context.v1.CustomerService/CreateCustomer",
                pb::CreateCustomerRequest {
                    customer: Some(pb::Customer {
                        contact_points: vec![email("ana@example.com")],
                        ..full_customer.clone()
                    }),
                }
                .encode_to_vec(),
            ),
            (
                "/customer_context.v1.CustomerService/SearchCustomers",
                pb::SearchCustomersRequest {
                    query: "ana".into(),
                    page_size: 5,
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "/customer_context.v1.CustomerService/LookupCustomers",
                pb::LookupCustomersRequest {
                    key: Some(pb::lookup_customers_request::Key::Phone(
                        "+14155550100".into(),
                    )),
                }
                .encode_to_vec(),
            ),
            (
                "/customer_context.v1.CustomerService/FindMatchingCustomers",
                pb::FindMatchingCustomersRequest {
                    customer_id: c.clone(),
                    page_size: 5,
                }
                .encode_to_vec(),
            ),
            (
                "/customer_context.v1.CustomerService/MergeCustomers",
                pb::MergeCustomersRequest {
                    target_id: c.clone(),
                    target_version: 1,
                    source_ids: vec![unknown_id()],
                }
                .encode_to_vec(),
            ),
            (
                "/customer_context.v1.CustomerService/UnmergeCustomer",
                pb::UnmergeCustomerRequest {
                    target_id: c.clone(),
                    source_id: unknown_id(),
                }
                .encode_to_vec(),
            ),
            (
                "/customer_context.v1.CustomerService/LockCustomer",
                pb::LockCustomerRequest { id: c.clone() }.encode_to_vec(),
            ),
            (
                "/customer_context.v1.CustomerService/UnlockCustomer",
                pb::UnlockCustomerRequest { id: c.clone() }.encode_to_vec(),
            ),
            (
                "/customer_context.v1.CustomerService/AnonymizeCustomer",
                pb::AnonymizeCustomerRequest { id: c.clone() }.encode_to_vec(),
            ),
            (
                "/customer_context.v1.CustomerService/ExportCustomer",
                pb::ExportCustomerRequest { id: c.clone() }.encode_to_vec(),
            ),
            (
                "/customer_context.v1.CustomerService/ListChanges",
                pb::ListChangesRequest {
                    resource: Some(customer_ref),
                    page_size: 5,
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "/customer_context.v1.CustomerService/ListNotifications",
                pb::ListNotificationsRequest {
                    customer_id: c.clone(),
                    page_size: 5,
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "/customer_context.v1.RequestService/ListRequests",
                pb::ListRequestsRequest {
                    customer_id: c.clone(),
                    page_size: 5,
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "/customer_context.v1.RequestService/AddComment",
                pb::AddCommentRequest {
                    request_id: r.clone(),
                    text: "hello".into(),
                }
                .encode_to_vec(),
            ),
            (
                "/customer_context.v1.RequestService/ListComments",
                pb::ListCommentsRequest {
                    request_id: r.clone(),
                    page_size: 5,
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "/customer_context.v1.ActivityService/ListActivities",
                pb::ListActivitiesRequest {
                    customer_id: c.clone(),
                    page_size: 5,
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "/customer_context.v1.ContextService/OpenContext",
                pb::OpenContextRequest {
                    interaction_id: "call-1".into(),
                    channel: pb::Channel::Voice as i32,
                    phone: "+1 415 555 0100".into(),
                    email: "ana@example.com".into(),
                    handle: "@ana".into(),
                    display_name: "Ana Lopez".into(),
                    topic: "billing".into(),
                    agent: "ana".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                // Sequence 1 is applied once; the same sequence again is answered without being applied.
                "/customer_context.v1.WatchService/UpdateWatch",
                pb::UpdateWatchRequest {
                    watch_id: self.watch_id.clone(),
                    sequence: 1,
                    requests: vec![pb::WatchRequest {
                        request: Some(pb::watch_request::Request::SetEditing(pb::SetEditing {
                            resource: Some(pb::ResourceRef {
                                r#type: pb::ResourceType::Customer as i32,
                                id: self.customer.clone(),
                                known_version: 1,
                            }),
                            editing: false,
                        })),
                    }],
                }
                .encode_to_vec(),
            ),
            (
                "/customer_context.v1.ContextService/ListRecentCustomers",
                pb::ListRecentCustomersRequest {
                    agent: "ana".into(),
                    page_size: 5,
                }
                .encode_to_vec(),
            ),
        ];
        let others = others
            .into_iter()
            .map(|(path, base)| (path.to_owned(), base));
        [customers, requests, activities, others.collect()].concat()
    }

    /// Calls `path` with `payload`; the code, and the records' versions learned from the answer.
    async fn call(
        &mut self,
        path: &str,
        output: &MessageDescriptor,
        payload: Vec<u8>,
    ) -> (Code, String) {
        let mut grpc = Grpc::new(self.app.channel());
        grpc.ready().await.expect("ready");
        let uri: http::uri::PathAndQuery = path.parse().expect("path");
        match grpc.unary(as_agent("setup", payload), uri, RawCodec).await {
            Ok(response) => {
                if let Ok(message) =
                    DynamicMessage::decode(output.clone(), response.into_inner().as_slice())
                {
                    self.learn_version(&message);
                }
                (Code::Ok, String::new())
            }
            Err(status) => (status.code(), status.message().chars().take(300).collect()),
        }
    }

    fn learn_version(&mut self, message: &DynamicMessage) {
        if let (Some(id), Some(version)) = (
            message.get_field_by_name("id"),
            message.get_field_by_name("version"),
        ) && let (Value::String(id), Value::I64(version)) = (id.as_ref(), version.as_ref())
            && let Some(known) = self.versions.get_mut(id)
        {
            *known = *version;
        }
    }
}

/// One step of the way to a string field.
#[derive(Clone, Debug)]
enum Step {
    Field(FieldDescriptor),
    /// The only element of a list.
    First,
    /// The key of a map's only entry.
    Key,
    /// The value of a map's only entry.
    Value,
}

/// Every string field reachable from `message`: singular, a list's element, a map's key or value.
fn slots(message: &MessageDescriptor, prefix: &[Step], depth: usize, out: &mut Vec<Vec<Step>>) {
    for field in message.fields() {
        let mut here = prefix.to_vec();
        here.push(Step::Field(field.clone()));
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                continue;
            };
            if entry.map_entry_key_field().kind() == Kind::String {
                out.push([here.clone(), vec![Step::Key]].concat());
            }
            if entry.map_entry_value_field().kind() == Kind::String {
                out.push([here, vec![Step::Value]].concat());
            }
            continue;
        }
        match field.kind() {
            Kind::String if field.is_list() => out.push([here, vec![Step::First]].concat()),
            Kind::String => out.push(here),
            Kind::Message(inner)
                if depth < 3 && inner.full_name() != "google.protobuf.Timestamp" =>
            {
                if field.is_list() {
                    here.push(Step::First);
                }
                slots(&inner, &here, depth + 1, out);
            }
            _ => {}
        }
    }
}

fn slot_name(steps: &[Step]) -> String {
    let mut name = String::new();
    for step in steps {
        match step {
            Step::Field(field) => {
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(field.name());
            }
            Step::First => name.push_str("[0]"),
            Step::Key => name.push_str("[<key>]"),
            Step::Value => name.push_str("[\"k\"]"),
        }
    }
    name
}

/// Puts `value` at `steps` in `message`.
fn put(message: &mut DynamicMessage, steps: &[Step], value: &str) {
    let [Step::Field(field), rest @ ..] = steps else {
        return;
    };
    match rest {
        [] => message.set_field(field, Value::String(value.to_owned())),
        [Step::First] => {
            message.set_field(field, Value::List(vec![Value::String(value.to_owned())]))
        }
        [Step::Key] => message.set_field(
            field,
            Value::Map([(MapKey::String(value.to_owned()), Value::String("v".into()))].into()),
        ),
        [Step::Value] => message.set_field(
            field,
            Value::Map([(MapKey::String("k".into()), Value::String(value.to_owned()))].into()),
        ),
        [Step::First, deeper @ ..] => {
            let Kind::Message(kind) = field.kind() else {
                return;
            };
            let mut element = match message.get_field(field).as_list().and_then(|l| l.first()) {
                Some(Value::Message(first)) => first.clone(),
                _ => DynamicMessage::new(kind),
            };
            put(&mut element, deeper, value);
            message.set_field(field, Value::List(vec![Value::Message(element)]));
        }
        deeper => {
            let Kind::Message(kind) = field.kind() else {
                return;
            };
            let mut inner = match message.get_field(field).as_message() {
                Some(inner) => inner.clone(),
                None => DynamicMessage::new(kind),
            };
            put(&mut inner, deeper, value);
            message.set_field(field, Value::Message(inner));
        }
    }
}

/// An update names the field it changes, and carries the record's current version.
fn prepare_update(message: &mut DynamicMessage, steps: &[Step], versions: &HashMap<String, i64>) {
    let Some(mask_field) = message.descriptor().get_field_by_name("update_mask") else {
        return;
    };
    let (Some(Step::Field(record)), Some(Step::Field(changed))) = (steps.first(), steps.get(1))
    else {
        return;
    };
    if record.name() == "update_mask" {
        return;
    }
    let mut mask = DynamicMessage::new(match mask_field.kind() {
        Kind::Message(kind) => kind,
        _ => return,
    });
    mask.set_field_by_name(
        "paths",
        Value::List(vec![Value::String(changed.name().to_owned())]),
    );
    message.set_field(&mask_field, Value::Message(mask));
    if let Some(Value::Message(inner)) = message
        .get_field_mut(record)
        .as_message_mut()
        .map(|m| Value::Message(m.clone()))
    {
        let id = inner
            .get_field_by_name("id")
            .and_then(|id| id.as_str().map(str::to_owned));
        if let Some(version) = id.and_then(|id| versions.get(&id).copied()) {
            let mut inner = inner;
            inner.set_field_by_name("version", Value::I64(version));
            message.set_field(record, Value::Message(inner));
        }
    }
}

/// The hostile strings every field gets, then random ones.
fn values(runner: &mut TestRunner) -> Vec<String> {
    let mut values = vec![
        "\0".to_owned(),
        "Ana\0Lopez".to_owned(),
        "bell\u{7}".to_owned(),
        "tab\tline\nreturn\r".to_owned(),
        "\u{7f}\u{85}\u{2028}\u{feff}".to_owned(),
        "𝄞".repeat(2_000),
        "𝄞".repeat(2_001),
        // 2,000 different four-byte characters: 8,000 bytes that no compression shrinks.
        (0..2_000u32)
            .filter_map(|i| char::from_u32(0x1_0000 + (i * 7_919) % 0xF_FFFF))
            .collect(),
        String::new(),
        " ".to_owned(),
    ];
    let random = prop_oneof![
        proptest::collection::vec(any::<char>(), 0..60)
            .prop_map(|c| c.into_iter().collect::<String>()),
        proptest::collection::vec(
            prop_oneof![any::<char>(), (0u8..0x20).prop_map(char::from)],
            0..20
        )
        .prop_map(|c| c.into_iter().collect::<String>()),
    ];
    for _ in 0..RANDOM_PER_FIELD {
        values.push(random.new_tree(runner).expect("a value").current());
    }
    values
}

fn output_of(pool: &DescriptorPool, path: &str) -> MessageDescriptor {
    let (service, method) = path.trim_start_matches('/').split_once('/').expect("path");
    let method = pool
        .get_service_by_name(service)
        .and_then(|service| service.methods().find(|m| m.name() == method))
        .expect("method");
    method.output()
}

fn input_of(pool: &DescriptorPool, path: &str) -> MessageDescriptor {
    let (service, method) = path.trim_start_matches('/').split_once('/').expect("path");
    pool.get_service_by_name(service)
        .and_then(|service| service.methods().find(|m| m.name() == method))
        .expect("method")
        .input()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_string_in_any_field_is_ok_or_invalid_argument_and_the_same_on_both_backends() {
    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut sides = vec![
        Side::new(
            "sqlite",
            TestApp::spawn(Backend::Sqlite).await.expect("SQLite"),
        )
        .await,
    ];
    if let Some(app) = TestApp::spawn(Backend::Postgres).await {
        sides.push(Side::new("postgres", app).await);
    }
    // Every unary method has a base here: a new method must be added to be covered.
    let covered: Vec<String> = sides[0].bases().into_iter().map(|(path, _)| path).collect();
    for service in pool
        .services()
        .filter(|s| s.package_name() == "customer_context.v1")
    {
        for method in service
            .methods()
            .filter(|m| !m.is_client_streaming() && !m.is_server_streaming())
        {
            let path = format!("/{}/{}", service.full_name(), method.name());
            assert!(
                covered.contains(&path),
                "{path} has no base request in this test"
            );
        }
    }

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let mut calls = 0;
    for (index, path) in covered.iter().enumerate() {
        let input = input_of(&pool, path);
        let output = output_of(&pool, path);
        let mut found = Vec::new();
        slots(&input, &[], 0, &mut found);
        for slot in found {
            for value in values(&mut runner) {
                let mut answers = Vec::new();
                for side in &mut sides {
                    let base = side.bases().swap_remove(index).1;
                    let mut message = DynamicMessage::decode(input.clone(), base.as_slice())
                        .expect("base decodes");
                    put(&mut message, &slot, &value);
                    prepare_update(&mut message, &slot, &side.versions);
                    let answer = side.call(path, &output, message.encode_to_vec()).await;
                    answers.push((side.name, answer));
                    calls += 1;
                }
                let shown: String = format!("{value:?}").chars().take(80).collect();
                let name = slot_name(&slot);
                for (side, (code, message)) in &answers {
                    let allowed = matches!(code, Code::Ok | Code::InvalidArgument)
                        || *code == Code::AlreadyExists && name.ends_with("customer_number");
                    assert!(
                        allowed,
                        "{path} {name} = {shown} on {side}: {code:?} {message}"
                    );
                }
                if let [(_, (first, first_message)), (_, (second, second_message))] =
                    answers.as_slice()
                {
                    assert_eq!(
                        first, second,
                        "{path} {name} = {shown}: SQLite said {first:?} {first_message}, PostgreSQL {second:?} {second_message}"
                    );
                }
            }
        }
    }
    assert!(calls > 500, "{calls} calls");
}
