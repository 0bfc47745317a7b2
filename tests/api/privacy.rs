//! Privacy: AnonymizeCustomer removes the personal data from every read, the export and the database file
//! itself while non-personal history stays; ExportCustomer (and `customer-context export`) round-trips every
//! field; ListChanges pages through a record's history with who, when, which fields and the values.

use std::{collections::BTreeSet, path::PathBuf, process::Output};

use customer_context::pb::{
    self, Channel, ContactKind, Direction, RequestStatus, ResourceType,
    lookup_customers_request::Key,
};
use prost::Message as _;
use prost_types::Timestamp;
use serde_json::{Value, json};
use tonic::{Code, Status};

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

/// Distinctive pieces of the person's data, as written and as the search index folds them. None may remain
/// anywhere once the customer is anonymized.
const SECRETS: &[&str] = &[
    "Quentavia",
    "quentavia",
    "Zorbulakis",
    "zorbulakis",
    // Prefixes as the search index's prefix tables keep them (up to 8 characters).
    "zorbulak",
    "quentavi",
    "flumoxic",
    "Flumoxicorp",
    "flumoxicorp",
    "88417",
    "5550173",
    "5550199",
    "zinfandel",
    "99172",
    "glorpnik",
    "Glorpnik",
    "Snodgrass",
    "77123",
    "qz_flumox",
];

#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    let checked = without_generated_values(text);
    for secret in SECRETS {
        assert!(
            !checked.contains(secret),
            "{what} still holds {secret:?}: {text}"
        );
    }
}

/// Values the service makes up itself, whose digits can spell a secret's by chance ("…26.771231Z" holds "77123"):
/// times (RFC 3339, microseconds since the epoch, a timestamp's seconds and nanoseconds) and ids.
const GENERATED_VALUES: &str = concat!(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z",
    r"|(?:seconds|nanos): \d+",
    r"|\d{16,}",
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
);

/// `text` without the [`GENERATED_VALUES`] in it.
fn without_generated_values(text: &str) -> String {
    String::from_utf8_lossy(&without_generated_bytes(text.as_bytes())).into_owned()
}

/// `bytes` without the [`GENERATED_VALUES`] written in them.
fn without_generated_bytes(bytes: &[u8]) -> Vec<u8> {
    static GENERATED: std::sync::LazyLock<regex::bytes::Regex> = std::sync::LazyLock::new(|| {
        regex::bytes::Regex::new(GENERATED_VALUES).expect("the pattern of generated values")
    });
    GENERATED.replace_all(bytes, &b"_"[..]).into_owned()
}

#[test]
fn generated_values_cannot_spell_a_secret_but_personal_data_still_does() {
    let export = r#"{"create_time":"2026-12-06T02:18:26.771231Z","merged":1796523506771231,"id":"01a24925-3c47-7584-b016-fe9c94f77123"}"#;
    assert!(!without_generated_values(export).contains("77123"));
    let debug = "Timestamp { seconds: 1788417000, nanos: 771230000 }";
    let checked = without_generated_values(debug);
    assert!(
        !checked.contains("88417") && !checked.contains("77123"),
        "{checked}"
    );
    for leak in [
        "\"reference\":\"REF-77123\"",
        "+14155550173",
        "CN-88417 at 12:00",
        "customer_number: \"CN-88417\"",
    ] {
        assert!(
            SECRETS
                .iter()
                .any(|secret| without_generated_values(leak).contains(secret)),
            "{leak}"
        );
    }
}

/// The secrets found in the bytes of the SQLite database file and its write-ahead log.
fn secrets_in_files(url: &str) -> Vec<(String, &'static str)> {
    let db = sqlite_file(url);
    let mut found = Vec::new();
    for path in [db.clone(), PathBuf::from(format!("{}-wal", db.display()))] {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let bytes = without_generated_bytes(&bytes);
        for secret in SECRETS {
            if bytes
                .windows(secret.len())
                .any(|window| window == secret.as_bytes())
            {
                found.push((path.display().to_string(), *secret));
            }
        }
    }
    found
}

async fn anonymize(app: &TestApp, id: &str) -> Result<pb::Customer, Status> {
    let call = pb::AnonymizeCustomerRequest { id: id.to_owned() };
    app.customers()
        .anonymize_customer(app.setup(call))
        .await
        .map(tonic::Response::into_inner)
}

async fn export(app: &TestApp, id: &str) -> Result<Value, Status> {
    let call = pb::ExportCustomerRequest { id: id.to_owned() };
    let json = app
        .customers()
        .export_customer(app.setup(call))
        .await?
        .into_inner()
        .json;
    Ok(serde_json::from_str(&json).expect("the export is JSON"))
}

async fn list_changes(
    app: &TestApp,
    resource: Option<pb::ResourceRef>,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListChangesResponse, Status> {
    let call = pb::ListChangesRequest {
        resource,
        page_size,
        page_token: page_token.to_owned(),
    };
    app.customers()
        .list_changes(app.setup(call))
        .await
        .map(tonic::Response::into_inner)
}

fn resource(kind: ResourceType, id: &str) -> Option<pb::ResourceRef> {
    Some(pb::ResourceRef {
        r#type: kind as i32,
        id: id.to_owned(),
        known_version: 0,
    })
}

/// The history of a record, page by page (`page_size` changes a page).
async fn history_pages(
    app: &TestApp,
    kind: ResourceType,
    id: &str,
    page_size: i32,
) -> Vec<Vec<pb::Change>> {
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = list_changes(app, resource(kind, id), page_size, &token)
            .await
            .unwrap_or_else(|status| panic!("history of {id}: {status:?}"));
        pages.push(page.changes);
        if page.next_page_token.is_empty() {
            return pages;
        }
        token = page.next_page_token;
    }
}

/// The whole history of a record (pages of 500).
async fn history(app: &TestApp, kind: ResourceType, id: &str) -> Vec<pb::Change> {
    let pages = history_pages(app, kind, id, 500).await;
    pages.into_iter().flatten().collect()
}

/// A google.protobuf.Value as JSON.
fn json_of(value: &Option<prost_types::Value>) -> Value {
    use prost_types::value::Kind as V;
    match value.as_ref().and_then(|v| v.kind.as_ref()) {
        None | Some(V::NullValue(_)) => Value::Null,
        Some(V::BoolValue(b)) => json!(b),
        Some(V::NumberValue(n)) => json!(n),
        Some(V::StringValue(s)) => json!(s),
        Some(V::ListValue(list)) => Value::Array(
            list.values
                .iter()
                .map(|v| json_of(&Some(v.clone())))
                .collect(),
        ),
        Some(V::StructValue(s)) => Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), json_of(&Some(v.clone()))))
                .collect(),
        ),
    }
}

/// `(old, new)` of `field` in `change`.
#[track_caller]
fn field_change(change: &pb::Change, field: &str) -> (Value, Value) {
    let f = change
        .fields
        .iter()
        .find(|f| f.field == field)
        .unwrap_or_else(|| panic!("no field {field} in {change:?}"));
    (json_of(&f.old_value), json_of(&f.new_value))
}

/// Runs `customer-context export ID --database-url URL` and returns what it printed.
async fn run_export_command(url: &str, id: &str) -> Output {
    let (url, id) = (url.to_owned(), id.to_owned());
    within(
        "customer-context export",
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_customer-context"))
                .args(["export", &id, "--database-url", &url])
                .env("RUST_LOG", "warn")
                .output()
                .expect("the binary runs")
        }),
    )
    .await
    .expect("the command finishes")
}

/// Sets `customers.locked` as LockCustomer leaves it, directly in the database.
/// A customer with every personal field set to something distinctive.
fn person() -> pb::Customer {
    pb::Customer {
        gender: "female".to_owned(),
        company: "Flumoxicorp".to_owned(),
        customer_number: "CN-88417".to_owned(),
        contact_points: vec![
            phone("+1 415 555 0173"),
            email("Quentavia.Zorb@Example.org"),
            contact(ContactKind::Chat, "chat", "qz_flumox"),
        ],
        notes: "allergic to zinfandel".to_owned(),
        tags: strings(&["VIP"]),
        credit_hold: true,
        attributes: [("loyalty_id".to_owned(), "LX-99172".to_owned())].into(),
        ..customer("Quentavia", "Zorbulakis")
    }
}

/// [`person`] with two attributes, two tags and a contact point of every kind.
fn person_with_every_kind_of_contact() -> pb::Customer {
    pb::Customer {
        contact_points: vec![
            phone("+1 415 555 0173"),
            email("quentavia.zorb@example.org"),
            contact(ContactKind::Chat, "chat", "qz_flumox"),
            contact(ContactKind::Social, "x", "@quentavia"),
            contact(ContactKind::External, "erp", "ERP-1"),
        ],
        attributes: [
            ("loyalty_id".to_owned(), "LX-99172".to_owned()),
            ("segment".to_owned(), "gold".to_owned()),
        ]
        .into(),
        tags: strings(&["VIP", "Newsletter"]),
        ..person()
    }
}

/// A request of the person's, with the person in its text.
fn person_request(customer_id: &str) -> pb::Request {
    pb::Request {
        description: "The glorpnik toaster of Quentavia burns bread".to_owned(),
        tags: strings(&["hardware", "warranty"]),
        ..request(customer_id, "Glorpnik toaster")
    }
}

/// An activity about the person on their request `request_id`, with every field set and the person named in
/// every contact field.
fn person_activity(customer_id: &str, request_id: &str) -> pb::Activity {
    pb::Activity {
        request_id: request_id.to_owned(),
        channel: Channel::Email as i32,
        notes: "Quentavia wants a refund".to_owned(),
        tags: strings(&["refund"]),
        occur_time: Some(timestamp(1_700_000_000, 123_456_000)),
        follow_up_time: Some(timestamp(1_700_100_000, 0)),
        entered_by: "ana".to_owned(),
        contact_name: "Quentavia Zorbulakis".to_owned(),
        contact_phone: "+1 415 555 0173".to_owned(),
        contact_email: "quentavia.zorb@example.org".to_owned(),
        sales_contact: "Mirabelle Snodgrass".to_owned(),
        salesperson: "sam".to_owned(),
        reference: "REF-77123".to_owned(),
        ..activity(customer_id, "Glorpnik refund")
    }
}

/// `customer` with new `notes`, updated by `agent`.
async fn update_notes(
    app: &TestApp,
    agent: &str,
    customer: pb::Customer,
    notes: &str,
) -> pb::Customer {
    let edit = pb::Customer {
        notes: notes.to_owned(),
        ..customer
    };
    app.update_customer(agent, edit).await.expect("update")
}

/// A request "Broken" of `customer_id` with one comment by ana.
async fn request_with_a_comment(app: &TestApp, customer_id: &str) -> pb::Request {
    let case = app.create_request(request(customer_id, "Broken")).await;
    app.comment_on("ana", &case.id, "Called back").await;
    case
}

/// On SQLite, no secret is left in the database file or its write-ahead log.
#[track_caller]
fn assert_no_secret_in_files(backend: Backend, db: &TestDb) {
    if backend == Backend::Sqlite {
        assert_eq!(
            secrets_in_files(db.url()),
            vec![],
            "personal data left in the database file or its write-ahead log"
        );
    }
}

#[apply(backends)]
#[tokio::test]
async fn anonymizing_removes_personal_data_from_every_read_the_export_and_the_file(
    backend: Backend,
) {
    let (app, db) = or_skip!(TestApp::spawn_keeping_db(backend).await);
    let created = app.create_customer(person()).await;
    let edited = update_notes(
        &app,
        "ana",
        created,
        "allergic to zinfandel, and to glorpnik",
    )
    .await;
    let case = app.create_request(person_request(&edited.id)).await;
    app.comment_on("ana", &case.id, "Called back about the zinfandel stain")
        .await;
    let mail = app
        .create_activity(person_activity(&edited.id, &case.id))
        .await;
    let note = app
        .create_activity(pb::Activity {
            direction: Direction::Outgoing as i32,
            internal: true,
            notes: "Zorbulakis sounded upset".to_owned(),
            ..activity(&edited.id, "Internal follow-up")
        })
        .await;
    // An unknown caller's interaction (the router keeps their details for a new-customer form), linked to the
    // customer afterwards.
    let opened = crate::context::open(
        &app,
        pb::OpenContextRequest {
            interaction_id: "zq-call-1".to_owned(),
            display_name: "Quentavia Zorbulakis".to_owned(),
            ..crate::context::call("zq-call-1", "+1 415 555 0199")
        },
    )
    .await
    .expect("open context");
    assert!(opened.prefill.is_some(), "an unknown caller gets a prefill");
    let routed = opened.activity.expect("activity logged");
    let link = pb::Activity {
        id: routed.id.clone(),
        version: routed.version,
        customer_id: edited.id.clone(),
        ..Default::default()
    };
    app.patch_activity(SETUP_AGENT, link, &["customer_id"])
        .await
        .expect("link the activity");

    // The data is there before, in reads and (SQLite) in the file: the checks below can see it.
    let before = export(&app, &edited.id).await.expect("export");
    assert!(before.to_string().contains("Zorbulakis"));
    if backend == Backend::Sqlite {
        assert!(
            !secrets_in_files(db.url()).is_empty(),
            "the database file holds the data before"
        );
    }
    let journey_before = ok_activities(&app, &edited.id).await;
    assert_eq!(journey_before.len(), 3);

    let anonymized = anonymize(&app, &edited.id).await.expect("anonymize");
    assert_no_secret("the anonymized customer", &format!("{anonymized:?}"));
    assert_eq!(anonymized.version, edited.version + 1);
    assert!(anonymized.anonymize_time.is_some());
    assert_eq!(anonymized.updated_by, SETUP_AGENT);
    assert_eq!(
        (
            anonymized.first_name.as_str(),
            anonymized.last_name.as_str()
        ),
        ("", "")
    );
    assert_eq!(anonymized.company, "");
    assert_eq!(anonymized.gender, "");
    assert_eq!(anonymized.customer_number, "");
    assert!(anonymized.contact_points.is_empty());
    assert_eq!(anonymized.notes, "");
    assert!(anonymized.attributes.is_empty());
    // Labels and flags are not about who the person is; they stay for reporting.
    assert_eq!(anonymized.tags, strings(&["VIP"]));
    assert!(anonymized.credit_hold);
    assert_eq!(anonymized.create_time, edited.create_time);
    assert_eq!(anonymized.created_by, edited.created_by);

    assert_eq!(app.get_customer(&edited.id).await.expect("get"), anonymized);
    for query in [
        "Zorbulakis",
        "quentavia",
        "flumoxicorp",
        "4155550173",
        "+1 415 555 0173",
        "quentavia.zorb@example.org",
        "qz_flumox",
        "CN-88417",
    ] {
        assert_eq!(
            app.search_customers(query).await,
            vec![],
            "search {query:?}"
        );
    }
    assert_eq!(app.search_customers("vip").await, vec![anonymized.clone()]);
    for key in [
        Key::Phone("+14155550173".to_owned()),
        Key::Email("quentavia.zorb@example.org".to_owned()),
        Key::Handle("qz_flumox".to_owned()),
        Key::CustomerNumber("CN-88417".to_owned()),
    ] {
        let call = pb::LookupCustomersRequest {
            key: Some(key.clone()),
        };
        assert_eq!(
            ok(app.customers().lookup_customers(call).await).customers,
            vec![],
            "lookup {key:?}"
        );
    }

    // The journey keeps what happened, when and how, without who.
    let journey = ok_activities(&app, &edited.id).await;
    assert_no_secret("the journey", &format!("{journey:?}"));
    assert_eq!(journey.len(), journey_before.len());
    for (after, before) in journey.iter().zip(&journey_before) {
        assert_eq!(after.id, before.id);
        assert_eq!(after.version, before.version + 1);
        assert_eq!(after.channel, before.channel);
        assert_eq!(after.direction, before.direction);
        assert_eq!(after.internal, before.internal);
        assert_eq!(after.occur_time, before.occur_time);
        assert_eq!(after.follow_up_time, before.follow_up_time);
        assert_eq!(after.tags, before.tags);
        assert_eq!(after.entered_by, before.entered_by);
        assert_eq!(after.salesperson, before.salesperson);
        assert_eq!(after.request_id, before.request_id);
        for text in [
            &after.topic,
            &after.notes,
            &after.contact_name,
            &after.contact_phone,
            &after.contact_email,
            &after.sales_contact,
            &after.reference,
        ] {
            assert_eq!(text, "", "{after:?}");
        }
    }
    let got = app.get_activity(&mail.id).await.expect("get activity");
    assert_eq!(got.channel, Channel::Email as i32);
    assert_eq!(got.salesperson, "sam");
    assert_eq!(got.contact_email, "");
    let got = app.get_activity(&note.id).await.expect("get activity");
    assert!(got.internal);
    assert_eq!(got.notes, "");

    let case_after = app.get_request(&case.id).await.expect("get request");
    assert_no_secret("the request", &format!("{case_after:?}"));
    assert_eq!(case_after.title, "Anonymized request");
    assert_eq!(case_after.description, "");
    assert_eq!(case_after.status, case.status);
    assert_eq!(case_after.tags, case.tags);
    assert_eq!(case_after.version, case.version + 1);
    let thread = app.list_comments(&case.id).await.expect("comments");
    assert_eq!(thread.len(), 1, "the comment stays, without its text");
    assert_eq!(thread[0].text, "");
    assert_eq!(thread[0].author, "ana");

    // The history keeps who changed which fields when, without the values.
    let customer_history = history(&app, ResourceType::Customer, &edited.id).await;
    assert_no_secret("the customer's history", &format!("{customer_history:?}"));
    assert_eq!(customer_history.len(), 3, "created, updated, anonymized");
    assert!(
        customer_history
            .iter()
            .flat_map(|c| &c.fields)
            .all(|f| f.redacted && f.old_value.is_none() && f.new_value.is_none())
    );
    let names = |change: &pb::Change| -> BTreeSet<String> {
        change.fields.iter().map(|f| f.field.clone()).collect()
    };
    assert!(names(&customer_history[0]).contains("first_name"));
    assert_eq!(customer_history[1].changed_by, "ana");
    assert_eq!(
        names(&customer_history[1]),
        BTreeSet::from(["notes".to_owned()])
    );
    let last = &customer_history[2];
    assert_eq!(last.kind, pb::ChangeKind::Updated as i32);
    assert_eq!(last.changed_by, SETUP_AGENT);
    assert_eq!(
        last.resource.as_ref().map(|r| r.known_version),
        Some(anonymized.version)
    );
    assert!(names(last).contains("anonymize_time"));
    assert!(names(last).contains("contact_points"));
    for (kind, id) in [
        (ResourceType::Request, &case.id),
        (ResourceType::Activity, &mail.id),
        (ResourceType::Activity, &note.id),
        (ResourceType::Activity, &routed.id),
    ] {
        let changes = history(&app, kind, id).await;
        assert_no_secret("a record's history", &format!("{changes:?}"));
        assert!(changes.len() >= 2, "{changes:?}");
        assert!(changes.iter().flat_map(|c| &c.fields).all(|f| f.redacted));
    }

    let after = export(&app, &edited.id).await.expect("export");
    assert_no_secret("the export", &after.to_string());
    assert_eq!(after["customer"]["id"], json!(edited.id));
    assert_eq!(after["activities"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        after["customer"]["anonymize_time"],
        json!(anonymized.anonymize_time.expect("set").to_string())
    );

    assert_no_secret_in_files(backend, &db);
    app.shutdown().await;
}

async fn ok_activities(app: &TestApp, customer_id: &str) -> Vec<pb::Activity> {
    app.list_activities(customer_id, "", 500, "")
        .await
        .expect("list activities")
        .activities
}

#[apply(backends)]
#[tokio::test]
async fn anonymizing_a_merge_target_also_erases_the_duplicates_merged_into_it(backend: Backend) {
    let (app, db) = or_skip!(TestApp::spawn_keeping_db(backend).await);
    let target = app.create_customer(customer("Pat", "Target")).await;
    let duplicate = app.create_customer(person()).await;
    app.create_activity(pb::Activity {
        notes: "Quentavia called about glorpnik".to_owned(),
        contact_name: "Quentavia Zorbulakis".to_owned(),
        ..activity(&duplicate.id, "Call")
    })
    .await;
    let merged = app.merge_into(&target, &[&duplicate]).await.expect("merge");
    assert_eq!(
        merged.company, "Flumoxicorp",
        "the target took the duplicate's company"
    );

    let anonymized = anonymize(&app, &target.id).await.expect("anonymize");
    assert_no_secret("the anonymized target", &format!("{anonymized:?}"));
    assert_no_secret(
        "the export",
        &export(&app, &target.id).await.expect("export").to_string(),
    );
    // The duplicate's own history (its creation with every value) lives on in the log: redacted too.
    for change in history(&app, ResourceType::Customer, &duplicate.id).await {
        assert_no_secret("the duplicate's history", &format!("{change:?}"));
    }
    // Unmerging brings back a blank duplicate, never its old data.
    let unmerged = app
        .customers()
        .unmerge_customer(app.setup(pb::UnmergeCustomerRequest {
            target_id: target.id.clone(),
            source_id: duplicate.id.clone(),
        }))
        .await
        .expect("unmerge")
        .into_inner();
    assert_no_secret("the unmerged duplicate", &format!("{unmerged:?}"));
    assert_no_secret_in_files(backend, &db);
    app.shutdown().await;
}

#[apply(backends)]
#[tokio::test]
async fn anonymizing_again_removes_only_what_was_recorded_since(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let created = app.create_customer(person()).await;
    let first = anonymize(&app, &created.id).await.expect("anonymize");
    let again = anonymize(&app, &created.id).await.expect("anonymize again");
    assert_eq!(again, first, "nothing personal left: nothing changes");

    // A call logged afterwards brings personal data again; the next anonymization removes it.
    let later = app
        .create_activity(pb::Activity {
            contact_name: "Quentavia Zorbulakis".to_owned(),
            ..activity(&created.id, "call back")
        })
        .await;
    let third = anonymize(&app, &created.id).await.expect("anonymize");
    assert_eq!(third.version, first.version + 1);
    assert!(
        nanos(third.anonymize_time.as_ref().unwrap())
            > nanos(first.anonymize_time.as_ref().unwrap())
    );
    let got = app.get_activity(&later.id).await.expect("activity");
    assert_eq!(got.contact_name, "");
    assert_eq!(got.topic, "");
    assert_eq!(got.version, later.version + 1);
}

#[apply(backends)]
#[tokio::test]
async fn anonymizing_refuses_locked_unknown_and_malformed_customers(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let created = app.create_customer(person()).await;
    let locked = app.lock_customer(&created.id).await;
    assert_fails(
        anonymize(&app, &created.id).await,
        Code::FailedPrecondition,
        "CUSTOMER_LOCKED",
    );
    let kept = app.get_customer(&created.id).await.expect("get");
    assert_eq!(kept.last_name, "Zorbulakis", "nothing was removed");
    assert_eq!(kept.version, locked.version);
    assert!(kept.locked);

    assert_not_found(anonymize(&app, &unknown_id()).await);
    assert_not_found(export(&app, &unknown_id()).await);
    assert_invalid(anonymize(&app, "nope").await, &[("id", "INVALID_ID")]);
    assert_invalid(export(&app, "").await, &[("id", "REQUIRED_FIELD")]);
    app.shutdown().await;
}

// ---- export ---------------------------------------------------------------------------------------------------

fn ts(t: &Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| json!(t.to_string()))
}

/// The export's JSON object of `record`: the fields in `copy` as they are, those in `times` in RFC 3339 (null
/// when unset), then the `"name": value` entries given.
macro_rules! exported {
    ($record:ident, copy [$($field:ident),* $(,)?], times [$($time:ident),* $(,)?]
        $(, $name:literal: $value:expr)* $(,)?) => {{
        let entries: Vec<(String, Value)> = vec![
            $((stringify!($field).to_owned(), json!($record.$field)),)*
            $((stringify!($time).to_owned(), ts(&$record.$time)),)*
            $(($name.to_owned(), json!($value)),)*
        ];
        Value::Object(entries.into_iter().collect())
    }};
}

fn expected_customer(c: &pb::Customer) -> Value {
    let contact_points: Vec<Value> = c
        .contact_points
        .iter()
        .map(|p| {
            let kind = ContactKind::try_from(p.kind).expect("kind");
            exported!(p, copy [label, value], times [], "kind": kind.as_str_name())
        })
        .collect();
    exported!(c,
        copy [id, version, first_name, last_name, company, gender, customer_number, notes, tags,
            credit_hold, attributes, created_by, updated_by, locked],
        times [create_time, update_time, anonymize_time],
        "contact_points": contact_points)
}

fn expected_request(r: &pb::Request, comments: &[pb::Comment]) -> Value {
    let comments: Vec<Value> = comments
        .iter()
        .map(|c| exported!(c, copy [id, request_id, text, author], times [create_time]))
        .collect();
    let status = RequestStatus::try_from(r.status).expect("status");
    exported!(r,
        copy [id, version, customer_id, title, description, tags, created_by, updated_by],
        times [create_time, update_time, close_time],
        "status": status.as_str_name(), "comments": comments)
}

fn expected_activity(a: &pb::Activity) -> Value {
    let channel = Channel::try_from(a.channel).expect("channel");
    let direction = Direction::try_from(a.direction).expect("direction");
    exported!(a,
        copy [id, version, customer_id, request_id, internal, topic, notes, tags, entered_by,
            contact_name, contact_phone, contact_email, sales_contact, salesperson, reference,
            created_by, updated_by],
        times [occur_time, follow_up_time, create_time, update_time],
        "channel": channel.as_str_name(), "direction": direction.as_str_name())
}

/// The field names of `customer_context.v1.{message}` in the descriptor set the server is built from.
fn proto_fields(message: &str) -> BTreeSet<String> {
    let set =
        prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptor set");
    set.file
        .iter()
        .filter(|f| f.package() == "customer_context.v1")
        .flat_map(|f| &f.message_type)
        .find(|m| m.name() == message)
        .unwrap_or_else(|| panic!("no message {message}"))
        .field
        .iter()
        .map(|f| f.name().to_owned())
        .collect()
}

/// Every field of the proto message is in `object` with a value that is not the default (so the test really
/// set every field), except `unset`.
#[track_caller]
fn assert_every_field_set(message: &str, object: &Value, unset: &[&str]) {
    let object = object.as_object().expect("an object");
    for field in proto_fields(message) {
        let value = object
            .get(&field)
            .unwrap_or_else(|| panic!("{message}.{field} is missing from the export"));
        if unset.contains(&field.as_str()) {
            continue;
        }
        let default = match value {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty() || s.ends_with("_UNSPECIFIED"),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
        };
        assert!(
            !default,
            "{message}.{field} is not set by the test: {value}"
        );
    }
}

#[apply(backends)]
#[tokio::test]
async fn export_round_trips_every_field(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let created = app
        .create_customer(person_with_every_kind_of_contact())
        .await;
    let customer = update_notes(&app, "ana", created, "prefers mornings").await;
    let customer = app.lock_customer(&customer.id).await;
    let case = app
        .create_request(pb::Request {
            status: RequestStatus::Pending as i32,
            ..person_request(&customer.id)
        })
        .await;
    for (agent, text) in [("ana", "Called back"), ("ben", "Sent a replacement 📦")] {
        app.comment_on(agent, &case.id, text).await;
    }
    let case = app
        .set_request_status("ben", &case, RequestStatus::Closed)
        .await
        .expect("close");
    assert!(case.close_time.is_some());
    let call = app
        .create_activity(pb::Activity {
            channel: Channel::InPerson as i32,
            direction: Direction::Outgoing as i32,
            internal: true,
            ..person_activity(&customer.id, &case.id)
        })
        .await;
    let twice = pb::Activity {
        notes: "Visited the shop twice".to_owned(),
        ..call
    };
    let call = app
        .patch_activity("ben", twice, &["notes"])
        .await
        .expect("update notes");

    let document = export(&app, &customer.id).await.expect("export");
    assert_eq!(document["format"], "customer-context.export.v1");
    let export_time: Timestamp = document["export_time"]
        .as_str()
        .expect("export_time")
        .parse()
        .expect("RFC 3339");
    assert!(nanos(&export_time) >= nanos(call.update_time.as_ref().unwrap()));

    assert_eq!(document["customer"], expected_customer(&customer));
    assert_every_field_set("Customer", &document["customer"], &["anonymize_time"]);
    let comments = app.list_comments(&case.id).await.expect("comments");
    assert_eq!(comments.len(), 2);
    assert_eq!(
        document["requests"],
        json!([expected_request(&case, &comments)])
    );
    assert_every_field_set("Request", &document["requests"][0], &[]);
    assert_every_field_set("Comment", &document["requests"][0]["comments"][1], &[]);
    assert_eq!(document["activities"], json!([expected_activity(&call)]));
    assert_every_field_set("Activity", &document["activities"][0], &[]);
    assert_eq!(
        document["notifications"],
        json!([]),
        "internal: nothing sent"
    );
    assert_eq!(document["merged_customers"], json!([]));

    // The history: every change of the customer, its request (with the comments) and its activity, oldest
    // first, in ListChanges' form.
    let changes = document["changes"].as_array().expect("changes");
    let cursors: Vec<i64> = changes
        .iter()
        .map(|c| c["cursor"].as_i64().expect("cursor"))
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    let mut expected = Vec::new();
    for (kind, id) in [
        (ResourceType::Customer, &customer.id),
        (ResourceType::Request, &case.id),
        (ResourceType::Activity, &call.id),
    ] {
        expected.extend(history(&app, kind, id).await);
    }
    expected.sort_by_key(|c| c.cursor);
    assert_eq!(
        changes.len(),
        expected.len(),
        "customer 3 + request 4 + activity 2"
    );
    assert_eq!(changes.len(), 9);
    for (exported, change) in changes.iter().zip(&expected) {
        assert_eq!(exported["cursor"], json!(change.cursor));
        assert_eq!(exported["changed_by"], json!(change.changed_by));
        assert_eq!(exported["change_time"], ts(&change.change_time));
        let kind = pb::ChangeKind::try_from(change.kind).expect("kind");
        assert_eq!(exported["kind"], json!(kind.as_str_name()));
        let r = change.resource.as_ref().expect("resource");
        assert_eq!(exported["resource"]["id"], json!(r.id));
        assert_eq!(
            exported["resource"]["known_version"],
            json!(r.known_version)
        );
        let fields = exported["fields"].as_array().expect("fields");
        assert_eq!(fields.len(), change.fields.len());
        for (f, expected) in fields.iter().zip(&change.fields) {
            assert_eq!(f["field"], json!(expected.field));
            assert_eq!(f["old_value"], json_of(&expected.old_value));
            assert_eq!(f["new_value"], json_of(&expected.new_value));
            // An absent value is left out, not `null` (a NullValue to a proto3 JSON parser).
            assert_eq!(
                f.get("old_value").is_some(),
                expected.old_value.is_some(),
                "{f}"
            );
            assert_eq!(
                f.get("new_value").is_some(),
                expected.new_value.is_some(),
                "{f}"
            );
            assert_eq!(f["redacted"], json!(false));
        }
    }
    let first = &changes[0];
    assert_eq!(first["resource"]["type"], "RESOURCE_TYPE_CUSTOMER");
    assert_eq!(first["kind"], "CHANGE_KIND_CREATED");
    assert_every_field_set("Change", first, &["parent"]);
    app.shutdown().await;
}

#[apply(backends)]
#[tokio::test]
async fn export_command_prints_the_same_document(backend: Backend) {
    let (app, db) = or_skip!(TestApp::spawn_keeping_db(backend).await);
    let customer = app.create_customer(person()).await;
    request_with_a_comment(&app, &customer.id).await;
    app.create_activity(activity(&customer.id, "call")).await;
    let mut rpc = export(&app, &customer.id).await.expect("export");

    // While the server runs (SQLite readers do not block the writer, nor the other way round).
    let output = run_export_command(db.url(), &customer.id).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "export failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        stdout.contains("\n  \"customer\""),
        "pretty-printed: {stdout}"
    );
    let mut printed: Value =
        serde_json::from_str(&stdout).expect("the output is one JSON document");
    for document in [&mut rpc, &mut printed] {
        document
            .as_object_mut()
            .expect("object")
            .remove("export_time")
            .expect("export_time");
    }
    assert_eq!(printed, rpc);
    app.shutdown().await;

    let missing = unknown_id();
    for (id, error) in [
        (missing.as_str(), format!("customer {missing} not found")),
        ("not-an-id", "is not a customer id".to_owned()),
    ] {
        let output = run_export_command(db.url(), id).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{id}: {stderr}");
        assert!(output.stdout.is_empty(), "{id}: {output:?}");
        assert!(stderr.contains(&error), "{id}: {stderr}");
    }
}

// ---- history --------------------------------------------------------------------------------------------------

#[apply(backends)]
#[tokio::test]
async fn list_changes_pages_through_a_records_history(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let mut customer = app.ana_lopez().await;
    for (agent, notes) in [
        ("ben", "one"),
        ("cara", "two"),
        ("dan", "three"),
        ("eve", "four"),
    ] {
        let reachable = pb::Customer {
            contact_points: vec![phone("+1 415 555 0100")],
            ..customer
        };
        customer = update_notes(&app, agent, reachable, notes).await;
    }

    // Five changes, two per page: three pages, oldest first.
    let pages = history_pages(&app, ResourceType::Customer, &customer.id, 2).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let changes: Vec<pb::Change> = pages.into_iter().flatten().collect();
    assert_eq!(
        changes
            .iter()
            .map(|c| c.changed_by.as_str())
            .collect::<Vec<_>>(),
        [SETUP_AGENT, "ben", "cara", "dan", "eve"]
    );
    assert_eq!(
        changes
            .iter()
            .map(|c| c.resource.as_ref().unwrap().known_version)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(changes.windows(2).all(|w| w[0].cursor < w[1].cursor
        && nanos(w[0].change_time.as_ref().unwrap()) <= nanos(w[1].change_time.as_ref().unwrap())));
    assert_eq!(changes[0].kind, pb::ChangeKind::Created as i32);
    assert_eq!(changes[0].parent, None);
    assert_eq!(
        field_change(&changes[0], "first_name"),
        (Value::Null, json!("Ana"))
    );
    assert_eq!(
        field_change(&changes[1], "notes"),
        (json!(""), json!("one"))
    );
    assert_eq!(
        field_change(&changes[1], "contact_points"),
        (
            json!([]),
            json!([{"kind": "CONTACT_KIND_PHONE", "label": "mobile", "value": "+14155550100"}])
        )
    );
    assert_eq!(
        changes[2].fields.len(),
        1,
        "only what changed: {:?}",
        changes[2]
    );
    assert_eq!(
        field_change(&changes[4], "notes"),
        (json!("three"), json!("four"))
    );
    assert!(changes.iter().flat_map(|c| &c.fields).all(|f| !f.redacted));
    assert_eq!(
        changes.last().unwrap().change_time,
        customer.update_time,
        "the change time is the record's update time"
    );

    // A token belongs to its query.
    let first = list_changes(&app, resource(ResourceType::Customer, &customer.id), 2, "")
        .await
        .expect("page");
    let other = app.create_customer(customer_named("Ben")).await;
    assert_violations(
        &list_changes(
            &app,
            resource(ResourceType::Customer, &other.id),
            2,
            &first.next_page_token,
        )
        .await
        .unwrap_err(),
        &[("page_token", "INVALID_PAGE_TOKEN")],
    );

    // Requests and activities name their customer; values read as in their messages; history outlives the
    // record.
    let case = request_with_a_comment(&app, &customer.id).await;
    app.set_request_status("ben", &case, RequestStatus::Closed)
        .await
        .expect("close");
    let case_history = history(&app, ResourceType::Request, &case.id).await;
    assert_eq!(case_history.len(), 3);
    let parent = pb::ResourceRef {
        r#type: ResourceType::Customer as i32,
        id: customer.id.clone(),
        known_version: 0,
    };
    assert!(
        case_history
            .iter()
            .all(|c| c.parent.as_ref() == Some(&parent))
    );
    assert_eq!(case_history[1].changed_by, "ana");
    assert_eq!(
        field_change(&case_history[1], "comments").1["text"],
        json!("Called back")
    );
    assert_eq!(
        field_change(&case_history[2], "status"),
        (json!("REQUEST_STATUS_OPEN"), json!("REQUEST_STATUS_CLOSED"))
    );

    let call = app
        .create_activity(pb::Activity {
            occur_time: Some(timestamp(1_700_000_000, 250_000_000)),
            internal: true,
            ..activity(&customer.id, "call")
        })
        .await;
    app.delete_activity("ben", &call.id, call.version)
        .await
        .expect("delete");
    let call_history = history(&app, ResourceType::Activity, &call.id).await;
    assert_eq!(
        call_history.len(),
        2,
        "internal activities are staff's to see"
    );
    assert_eq!(
        field_change(&call_history[0], "channel").1,
        json!("CHANNEL_VOICE")
    );
    assert_eq!(
        field_change(&call_history[0], "occur_time").1,
        json!("2023-11-14T22:13:20.250Z")
    );
    assert_eq!(call_history[1].kind, pb::ChangeKind::Deleted as i32);
    assert_eq!(call_history[1].changed_by, "ben");
    assert!(app.get_activity(&call.id).await.is_err(), "deleted");

    // Bad input: every problem named at once; an id without history is NOT_FOUND.
    assert_violations(
        &list_changes(&app, None, 0, "").await.unwrap_err(),
        &[
            ("resource.type", "REQUIRED_FIELD"),
            ("resource.id", "REQUIRED_FIELD"),
        ],
    );
    let bad = pb::ResourceRef {
        r#type: 42,
        id: "nope".to_owned(),
        known_version: 0,
    };
    assert_violations(
        &list_changes(&app, Some(bad), -1, "garbage")
            .await
            .unwrap_err(),
        &[
            ("resource.type", "INVALID_ENUM_VALUE"),
            ("resource.id", "INVALID_ID"),
            ("page_size", "INVALID_PAGE_SIZE"),
            ("page_token", "INVALID_PAGE_TOKEN"),
        ],
    );
    assert_not_found(
        list_changes(&app, resource(ResourceType::Request, &unknown_id()), 0, "").await,
    );
    let status = list_changes(&app, resource(ResourceType::Request, &customer.id), 0, "")
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::NotFound,
        "a customer's id is no request"
    );
}

fn customer_named(first_name: &str) -> pb::Customer {
    customer(first_name, "Test")
}
