//! OpenContext: known, unknown and ambiguous callers, the attach-or-create rule, idempotency under concurrent
//! retries, phone forms, and invalid input.

use std::{collections::BTreeSet, sync::Arc};

use customer_context::pb::{
    self, Channel, Direction, RequestPolicy, RequestStatus,
    context_service_client::ContextServiceClient,
};
use tokio::sync::Barrier;
use tonic::{Status, transport};

use rstest::rstest;
use rstest_reuse::{apply, template};

use crate::harness::*;

/// The writers OpenContext records calls with: SQLite's batch writer (the default), SQLite's pooled writer
/// (`--sqlite-open-context-batches false`) and PostgreSQL's. Every test of this file runs on each, so the two
/// writers are held to one behaviour.
#[derive(Clone, Copy, Debug)]
pub enum Writer {
    SqliteBatch,
    SqlitePooled,
    Postgres,
}

impl Writer {
    /// A server on a fresh database recording OpenContext with this writer, or None when its backend is not
    /// available here.
    async fn spawn(self) -> Option<TestApp> {
        match self {
            Writer::SqliteBatch => TestApp::spawn(Backend::Sqlite).await,
            Writer::SqlitePooled => {
                TestApp::spawn_with(Backend::Sqlite, |settings| {
                    settings.database.sqlite_open_context_batches = false;
                })
                .await
            }
            Writer::Postgres => TestApp::spawn(Backend::Postgres).await,
        }
    }
}

/// Runs a test once per writer: `#[apply(writers)] #[tokio::test] async fn name(writer: Writer)`.
#[template]
#[rstest]
#[case::sqlite_batch(Writer::SqliteBatch)]
#[case::sqlite_pooled(Writer::SqlitePooled)]
#[case::postgres(Writer::Postgres)]
fn writers(#[case] writer: Writer) {}

/// The router's identity (the acting agent of OpenContext calls).
pub const ROUTER: &str = "router";

pub fn context_client(channel: transport::Channel) -> ContextServiceClient<transport::Channel> {
    ContextServiceClient::new(channel)
}

/// A voice call from `phone`, routed to agent `ana`.
pub fn call(interaction_id: &str, phone: &str) -> pb::OpenContextRequest {
    pb::OpenContextRequest {
        interaction_id: interaction_id.to_owned(),
        channel: Channel::Voice as i32,
        direction: Direction::Incoming as i32,
        phone: phone.to_owned(),
        display_name: "Ana Lopez".to_owned(),
        agent: "ana".to_owned(),
        ..Default::default()
    }
}

/// A call from Ana's phone, routed with `policy`.
fn call_with_policy(interaction_id: &str, policy: RequestPolicy) -> pb::OpenContextRequest {
    pb::OpenContextRequest {
        request_policy: policy as i32,
        ..call(interaction_id, ANAS_PHONE)
    }
}

pub async fn open(
    app: &TestApp,
    request: pb::OpenContextRequest,
) -> Result<pb::OpenContextResponse, Status> {
    context_client(app.channel())
        .open_context(as_agent(ROUTER, request))
        .await
        .map(tonic::Response::into_inner)
}

/// The answer to a call that must succeed.
async fn opened(app: &TestApp, request: pb::OpenContextRequest) -> pb::OpenContextResponse {
    open(app, request).await.expect("open context")
}

/// Ana's phone number, as stored.
const ANAS_PHONE: &str = "+14155550100";

/// Ana Lopez, who calls from +1 415 555 0100 (stored as written in `phone_form`).
async fn ana_calling_from(app: &TestApp, phone_form: &str) -> pb::Customer {
    app.create_customer(customer_with_contacts(
        "Ana",
        "Lopez",
        vec![phone(phone_form)],
    ))
    .await
}

/// Ana Lopez, who calls from +1 415 555 0100.
async fn ana_at_her_phone(app: &TestApp) -> pb::Customer {
    ana_calling_from(app, ANAS_PHONE).await
}

/// Sends every call at the same moment, each on a connection of its own, and returns the answers in order.
async fn all_at_once(
    app: &TestApp,
    calls: Vec<pb::OpenContextRequest>,
) -> Vec<pb::OpenContextResponse> {
    let barrier = Arc::new(Barrier::new(calls.len()));
    let mut tasks = Vec::new();
    for call in calls {
        let mut client = context_client(app.new_channel().await);
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            client
                .open_context(as_agent(ROUTER, call))
                .await
                .map(tonic::Response::into_inner)
        }));
    }
    let mut responses = Vec::new();
    for task in tasks {
        let response = within("concurrent OpenContext", task)
            .await
            .expect("task")
            .expect("every call succeeds");
        responses.push(response);
    }
    responses
}

/// When an activity happened, comparable.
fn occurred(activity: &pb::Activity) -> Option<(i64, i32)> {
    activity.occur_time.map(|t| (t.seconds, t.nanos))
}

fn ids<'a>(items: impl IntoIterator<Item = &'a String>) -> Vec<&'a str> {
    items.into_iter().map(String::as_str).collect()
}

#[apply(writers)]
#[tokio::test]
async fn a_known_caller_gets_the_customer_a_logged_activity_and_a_new_request(writer: Writer) {
    let app = or_skip!(writer.spawn().await);
    let ana = ana_calling_from(&app, "(415) 555-0100").await;
    let earlier = app.create_activity(activity(&ana.id, "Earlier call")).await;

    let response = opened(
        &app,
        pb::OpenContextRequest {
            topic: "Billing question".to_owned(),
            email: "Ana@Example.com".to_owned(),
            ..call("call-1", "+1 415-555-0100")
        },
    )
    .await;

    let customer = app.get_customer(&ana.id).await.expect("customer");
    assert_eq!(response.customer, Some(customer));
    assert!(response.candidates.is_empty());
    assert_eq!(response.prefill, None);
    let request = response.request.clone().expect("a request was opened");
    assert_uuid_v7(&request.id);
    assert_eq!(request.customer_id, ana.id);
    assert_eq!(request.title, "Billing question");
    assert_eq!(request.status, RequestStatus::Open as i32);
    assert_eq!(request.version, 1);
    assert_eq!(request.created_by, ROUTER);
    assert_eq!(app.get_request(&request.id).await.expect("stored"), request);

    let activity = response.activity.clone().expect("an activity was logged");
    assert_uuid_v7(&activity.id);
    let create_time = activity.create_time.expect("create_time set");
    let expected = pb::Activity {
        customer_id: ana.id.clone(),
        request_id: request.id.clone(),
        channel: Channel::Voice as i32,
        direction: Direction::Incoming as i32,
        topic: "Billing question".to_owned(),
        occur_time: activity.occur_time,
        entered_by: "ana".to_owned(),
        contact_name: "Ana Lopez".to_owned(),
        contact_phone: ANAS_PHONE.to_owned(),
        contact_email: "ana@example.com".to_owned(),
        reference: "call-1".to_owned(),
        ..Default::default()
    }
    .with_bookkeeping(
        &activity.id,
        1,
        (create_time, ROUTER),
        (create_time, ROUTER),
    );
    assert_eq!(activity, expected);
    assert_eq!(
        app.get_activity(&activity.id).await.expect("stored"),
        activity
    );
    assert_eq!(response.open_requests, vec![request]);
    assert_eq!(response.recent_activities, vec![activity, earlier]);
}

#[apply(writers)]
#[tokio::test]
async fn an_unknown_caller_gets_a_prefill_and_an_activity_linked_later(writer: Writer) {
    let app = or_skip!(writer.spawn().await);
    let request = pb::OpenContextRequest {
        interaction_id: "chat-7".to_owned(),
        channel: Channel::Chat as i32,
        email: " Ana.Garcia@Example.COM ".to_owned(),
        display_name: "Ana María García".to_owned(),
        ..Default::default()
    };
    let response = opened(&app, request).await;
    assert_eq!(response.customer, None);
    assert!(response.candidates.is_empty());
    assert_eq!(response.request, None);
    assert!(response.open_requests.is_empty());
    assert!(response.recent_activities.is_empty());
    assert_eq!(
        response.prefill,
        Some(pb::Prefill {
            first_name: "Ana María".to_owned(),
            last_name: "García".to_owned(),
            email: "ana.garcia@example.com".to_owned(),
            phone: String::new(),
        })
    );
    let activity = response.activity.expect("an activity was logged");
    assert_eq!(activity.customer_id, "");
    assert_eq!(activity.request_id, "");
    assert_eq!(activity.contact_email, "ana.garcia@example.com");
    assert_eq!(activity.contact_name, "Ana María García");
    // No agent given: the acting agent took the call.
    assert_eq!(activity.entered_by, ROUTER);

    // The agent creates the customer from the prefill and links the activity.
    let ana = app.create_customer(customer("Ana María", "García")).await;
    let link = pb::Activity {
        customer_id: ana.id.clone(),
        ..activity.clone()
    };
    let linked = app
        .patch_activity("ana", link, &["customer_id"])
        .await
        .expect("link");
    assert_eq!(linked.customer_id, ana.id);
    assert_eq!(app.activities_of(&ana.id).await, vec![linked]);
}

#[apply(writers)]
#[tokio::test]
async fn an_ambiguous_caller_gets_candidates_most_recently_active_first(writer: Writer) {
    let app = or_skip!(writer.spawn().await);
    let shared = |first: &str, mail: &str| {
        customer_with_contacts(first, "Lopez", vec![phone("+1 415 555 0100"), email(mail)])
    };
    let ana = app.create_customer(shared("Ana", "ana@example.com")).await;
    let ben = app.create_customer(shared("Ben", "ben@example.com")).await;
    // Ana called since Ben was last updated; Carla was updated after that call but never called.
    app.create_activity(activity(&ana.id, "Call")).await;
    let carla = app
        .create_customer(shared("Carla", "carla@example.com"))
        .await;

    let response = opened(&app, call("call-1", "(415) 555-0100")).await;
    assert_eq!(response.customer, None);
    assert_eq!(
        ids(response.candidates.iter().map(|c| &c.id)),
        [&carla.id, &ana.id, &ben.id]
    );
    assert_eq!(response.request, None);
    assert_eq!(response.prefill, None);
    assert!(response.open_requests.is_empty());
    let activity = response.activity.expect("an activity was logged");
    assert_eq!(activity.customer_id, "");
    assert_eq!(activity.contact_phone, ANAS_PHONE);

    // Another contact point that only one of them has settles it.
    let response = opened(
        &app,
        pb::OpenContextRequest {
            email: "BEN@example.com".to_owned(),
            ..call("call-2", "(415) 555-0100")
        },
    )
    .await;
    assert_eq!(response.customer.map(|c| c.id), Some(ben.id.clone()));
    assert!(response.candidates.is_empty());
    assert_eq!(response.activity.expect("activity").customer_id, ben.id);
}

#[apply(writers)]
#[tokio::test]
async fn attach_or_create_joins_the_most_recently_updated_open_or_pending_request(writer: Writer) {
    let app = or_skip!(writer.spawn().await);
    let ana = ana_at_her_phone(&app).await;
    let older = app.create_request(request(&ana.id, "Older")).await;
    let pending = app.create_request(request(&ana.id, "Pending")).await;
    let pending = app
        .set_request_status("ana", &pending, RequestStatus::Pending)
        .await
        .expect("pending");
    let closed = app.create_request(request(&ana.id, "Closed")).await;
    app.set_request_status("ana", &closed, RequestStatus::Closed)
        .await
        .expect("close");

    // The pending request is the most recently updated open one (the closed one does not count).
    let response = opened(&app, call("call-1", ANAS_PHONE)).await;
    assert_eq!(response.request, Some(pending.clone()));
    let activity = response.activity.expect("activity");
    assert_eq!(activity.request_id, pending.id);
    assert_eq!(response.open_requests, vec![pending.clone(), older.clone()]);

    // Touching the older one makes it the most recent.
    let older = app
        .patch_request(
            "ana",
            pb::Request {
                description: "more detail".to_owned(),
                ..older
            },
            &["description"],
        )
        .await
        .expect("edit");
    for (id, policy) in [
        ("call-2", RequestPolicy::AttachOrCreate),
        ("call-3", RequestPolicy::AttachOnly),
        ("call-4", RequestPolicy::Unspecified),
    ] {
        let response = opened(&app, call_with_policy(id, policy)).await;
        assert_eq!(response.request, Some(older.clone()), "{policy:?}");
        assert_eq!(response.open_requests, vec![older.clone(), pending.clone()]);
    }
    // Nothing new was opened.
    assert_eq!(app.requests_of(&ana.id).await.len(), 3);
}

#[apply(writers)]
#[tokio::test]
async fn a_request_is_opened_only_when_none_is_open_and_the_policy_allows(writer: Writer) {
    let app = or_skip!(writer.spawn().await);
    let ana = ana_at_her_phone(&app).await;
    let closed = app.create_request(request(&ana.id, "Closed")).await;
    app.set_request_status("ana", &closed, RequestStatus::Closed)
        .await
        .expect("close");

    for (id, policy) in [
        ("call-1", RequestPolicy::AttachOnly),
        ("call-2", RequestPolicy::None),
    ] {
        let response = opened(&app, call_with_policy(id, policy)).await;
        assert_eq!(response.request, None, "{policy:?}");
        assert_eq!(response.activity.expect("activity").request_id, "");
        assert!(response.open_requests.is_empty());
    }
    assert_eq!(app.requests_of(&ana.id).await.len(), 1);

    // No topic: the new request is titled after the call.
    let response = opened(&app, call("call-3", ANAS_PHONE)).await;
    let new_request = response.request.expect("a request was opened");
    assert_eq!(new_request.title, "Voice call from +14155550100");
    assert_eq!(new_request.status, RequestStatus::Open as i32);
    assert_eq!(response.open_requests, vec![new_request.clone()]);

    // NONE leaves even an open request alone.
    let response = opened(&app, call_with_policy("call-4", RequestPolicy::None)).await;
    assert_eq!(response.request, None);
    assert_eq!(response.open_requests, vec![new_request]);
    assert_eq!(app.activities_of(&ana.id).await.len(), 4);
}

#[apply(writers)]
#[tokio::test]
async fn twenty_concurrent_retries_of_one_interaction_log_one_activity(writer: Writer) {
    let app = or_skip!(writer.spawn().await);
    let ana = ana_at_her_phone(&app).await;
    let retries = vec![call("call-1", "(415) 555-0100"); 20];
    let responses = all_at_once(&app, retries).await;
    let activity_ids: BTreeSet<String> = responses
        .iter()
        .map(|r| r.activity.clone().expect("activity").id)
        .collect();
    let request_ids: BTreeSet<String> = responses
        .iter()
        .map(|r| r.request.clone().expect("request").id)
        .collect();
    assert_eq!(activity_ids.len(), 1, "{activity_ids:?}");
    assert_eq!(request_ids.len(), 1, "{request_ids:?}");
    for response in &responses {
        assert_eq!(response.customer.as_ref().map(|c| &c.id), Some(&ana.id));
    }
    let activities = app.activities_of(&ana.id).await;
    assert_eq!(activities.len(), 1);
    assert!(activity_ids.contains(&activities[0].id));
    assert_eq!(app.requests_of(&ana.id).await.len(), 1);

    // A later retry, even with other details, returns the same records as they are now.
    let request = responses[0].request.clone().expect("request");
    let renamed = app
        .patch_request(
            "ana",
            pb::Request {
                title: "Renamed".to_owned(),
                ..request
            },
            &["title"],
        )
        .await
        .expect("rename");
    let replay = opened(
        &app,
        pb::OpenContextRequest {
            topic: "Something else".to_owned(),
            ..call_with_policy("call-1", RequestPolicy::None)
        },
    )
    .await;
    assert_eq!(replay.activity, responses[0].activity);
    assert_eq!(replay.request, Some(renamed.clone()));
    assert_eq!(replay.open_requests, vec![renamed]);
    assert_eq!(app.activities_of(&ana.id).await.len(), 1);
}

#[apply(writers)]
#[tokio::test]
async fn concurrent_calls_of_one_customer_open_one_request_and_log_every_activity(writer: Writer) {
    let app = or_skip!(writer.spawn().await);
    let ana = ana_at_her_phone(&app).await;
    // Fewer calls than the 20 activities the gadget is shown: with more, calls that commit between another call's
    // commit and its read of the journey rightly push that call's activity out of the newest 20.
    const CALLS: usize = 16;
    let calls = (0..CALLS)
        .map(|n| call(&format!("call-{n}"), "+1 415 555 0100"))
        .collect();
    let responses = all_at_once(&app, calls).await;
    // One call opened the request; every other joined it, whichever transaction it was recorded in.
    let requests = app.requests_of(&ana.id).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    let activities = app.activities_of(&ana.id).await;
    assert_eq!(activities.len(), CALLS);
    for response in &responses {
        assert_eq!(response.customer.as_ref().map(|c| &c.id), Some(&ana.id));
        assert_eq!(
            response.request.as_ref().map(|r| &r.id),
            Some(&requests[0].id)
        );
        let activity = response.activity.clone().expect("activity");
        // What the router was given is what was stored.
        assert!(activities.contains(&activity), "{activity:?} not stored");
        assert_eq!(activity.request_id, requests[0].id);
        // The gadget's journey includes the call's own activity, newest first.
        assert!(response.recent_activities.contains(&activity));
        assert!(
            response
                .recent_activities
                .windows(2)
                .all(|pair| occurred(&pair[0]) >= occurred(&pair[1]))
        );
        assert_eq!(response.open_requests.len(), 1);
    }
    let distinct: BTreeSet<String> = activities.iter().map(|a| a.id.clone()).collect();
    assert_eq!(distinct.len(), CALLS);
}

#[apply(writers)]
#[tokio::test]
async fn a_retried_unknown_or_ambiguous_call_returns_the_same_result(writer: Writer) {
    let app = or_skip!(writer.spawn().await);
    let unknown = opened(&app, call("call-1", ANAS_PHONE)).await;
    assert_eq!(opened(&app, call("call-1", ANAS_PHONE)).await, unknown);

    for name in ["Ana", "Ben"] {
        app.create_customer(customer_with_contacts(
            name,
            "Lopez",
            vec![phone("+12125550199")],
        ))
        .await;
    }
    let ambiguous = opened(&app, call("call-2", "+12125550199")).await;
    assert_eq!(ambiguous.candidates.len(), 2);
    assert_eq!(
        opened(&app, call("call-2", "+12125550199")).await,
        ambiguous
    );
}

#[apply(writers)]
#[tokio::test]
async fn every_written_form_of_a_phone_number_finds_the_caller(writer: Writer) {
    let app = or_skip!(writer.spawn().await);
    let ana = ana_calling_from(&app, "+1 (415) 555-0100").await;
    for (i, form) in ["(415) 555-0100", "+1 415-555-0100", "tel:+14155550100"]
        .into_iter()
        .enumerate()
    {
        let response = opened(&app, call(&format!("call-{i}"), form)).await;
        assert_eq!(
            response.customer.map(|c| c.id),
            Some(ana.id.clone()),
            "{form}"
        );
        let activity = response.activity.expect("activity");
        assert_eq!(activity.contact_phone, ANAS_PHONE, "{form}");
    }
}

#[apply(writers)]
#[tokio::test]
async fn invalid_calls_are_refused_with_every_violation_and_nothing_is_logged(writer: Writer) {
    let app = or_skip!(writer.spawn().await);
    let ana = ana_at_her_phone(&app).await;

    assert_invalid(
        open(&app, pb::OpenContextRequest::default()).await,
        &[
            ("interaction_id", "REQUIRED_FIELD"),
            ("phone", "REQUIRED_FIELD"),
            ("email", "REQUIRED_FIELD"),
            ("handle", "REQUIRED_FIELD"),
        ],
    );

    let bad = pb::OpenContextRequest {
        interaction_id: "x".repeat(2001),
        channel: 99,
        direction: -1,
        request_policy: 4,
        email: "ana@".to_owned(),
        topic: "é".repeat(2001),
        ..call("", ANAS_PHONE)
    };
    assert_invalid(
        open(&app, bad).await,
        &[
            ("interaction_id", "FIELD_TOO_LONG"),
            ("topic", "FIELD_TOO_LONG"),
            ("channel", "INVALID_ENUM_VALUE"),
            ("direction", "INVALID_ENUM_VALUE"),
            ("request_policy", "INVALID_ENUM_VALUE"),
            ("email", "INVALID_EMAIL"),
        ],
    );

    let refused = open(&app, call("call-1", "555-CALL-ANA")).await;
    assert_invalid(refused, &[("phone", "INVALID_PHONE")]);
    assert!(app.activities_of(&ana.id).await.is_empty());

    // An interaction id is a unique key: 2,000 characters like every text, and at most 2,000 bytes of UTF-8, so
    // it fits PostgreSQL's index entries. Ids of distinct characters do not compress.
    let distinct = |n: u32| -> String {
        (0..n)
            .map(|i| char::from_u32(0x4E00 + i * 7919 % 20_000).expect("a CJK character"))
            .collect()
    };
    for too_long in [distinct(667), distinct(2000), "😀".repeat(501)] {
        let status = err(open(&app, call(&too_long, ANAS_PHONE)).await);
        assert_violations(&status, &[("interaction_id", "FIELD_TOO_LONG")]);
        assert_message_contains(&status, "bytes of UTF-8");
    }
    assert!(app.activities_of(&ana.id).await.is_empty());
    for (n, long_id) in [
        "x".repeat(2000),
        "😀".repeat(500),
        distinct(666),
        "😀".repeat(128) + &distinct(128),
    ]
    .into_iter()
    .enumerate()
    {
        let response = opened(&app, call(&long_id, ANAS_PHONE)).await;
        assert_eq!(response.activity.expect("activity").reference, long_id);
        let again = opened(&app, call(&long_id, ANAS_PHONE)).await;
        assert_eq!(app.activities_of(&ana.id).await.len(), n + 1, "{again:?}");
    }

    // Other texts count characters too: 2,000 of them are fine.
    let topic = "😀".repeat(500) + &"x".repeat(1500);
    let response = opened(
        &app,
        pb::OpenContextRequest {
            topic: topic.clone(),
            ..call("call-2", ANAS_PHONE)
        },
    )
    .await;
    assert_eq!(response.activity.expect("activity").topic, topic);
}

/// Makes the database refuse every activity with topic `topic` (a trigger, as a failing disk or a constraint
/// would), or lifts that refusal.
async fn refuse_activities_about(app: &TestApp, topic: &str, refuse: bool) {
    let condition = format!("NEW.topic = '{topic}'");
    refuse_inserts(app, "refuse_topic", "activities", &condition, refuse).await;
}

/// Makes the database refuse every row inserted into `table` for which `condition` (on `NEW`, the same on both
/// backends) holds, by the trigger `name`; or, with `refuse` false, drops that trigger.
async fn refuse_inserts(app: &TestApp, name: &str, table: &str, condition: &str, refuse: bool) {
    use sea_orm::{ConnectionTrait, Database};
    let db = Database::connect(app.database_url())
        .await
        .expect("connect");
    let statements: Vec<String> = match (db.get_database_backend(), refuse) {
        (sea_orm::DbBackend::Postgres, true) => vec![
            format!(
                "CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN \
                 IF {condition} THEN RAISE EXCEPTION 'refused by the test'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql"
            ),
            format!(
                "CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()"
            ),
        ],
        (sea_orm::DbBackend::Postgres, false) => vec![
            format!("DROP TRIGGER {name} ON {table}"),
            format!("DROP FUNCTION {name}()"),
        ],
        (_, true) => vec![format!(
            "CREATE TRIGGER {name} BEFORE INSERT ON {table} WHEN {condition} \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )],
        (_, false) => vec![format!("DROP TRIGGER {name}")],
    };
    for statement in statements {
        db.execute_unprepared(&statement)
            .await
            .expect("the refusal");
    }
    db.close().await.expect("closed");
}

/// Calls recorded together (SQLite records concurrent calls in one transaction) keep their own outcomes: the one
/// the database refuses fails and leaves nothing behind, and the calls beside it are committed.
#[apply(writers)]
#[tokio::test]
async fn a_call_the_database_refuses_fails_alone_and_the_calls_beside_it_are_recorded(
    writer: Writer,
) {
    const CALLS: usize = 24;
    const REFUSED: usize = 9;
    let app = or_skip!(writer.spawn().await);
    let ana = ana_at_her_phone(&app).await;
    refuse_activities_about(&app, "refused", true).await;
    let calls: Vec<pb::OpenContextRequest> = (0..CALLS)
        .map(|i| pb::OpenContextRequest {
            topic: if i == REFUSED { "refused" } else { "billing" }.to_owned(),
            ..call(&format!("batch-call-{i}"), ANAS_PHONE)
        })
        .collect();
    let barrier = Arc::new(Barrier::new(CALLS));
    let answers = within(
        "concurrent calls",
        futures::future::join_all(calls.iter().cloned().map(|request| {
            let barrier = barrier.clone();
            let mut client = context_client(app.channel());
            async move {
                barrier.wait().await;
                client
                    .open_context(as_agent(ROUTER, request))
                    .await
                    .map(tonic::Response::into_inner)
            }
        })),
    )
    .await;
    let mut recorded = BTreeSet::new();
    for (i, answer) in answers.into_iter().enumerate() {
        match answer {
            Ok(answer) if i != REFUSED => {
                recorded.insert(answer.activity.expect("an activity").id);
            }
            Err(status) if i == REFUSED => assert_eq!(status.code(), tonic::Code::Internal),
            other => panic!("call {i}: {other:?}"),
        }
    }
    assert_eq!(
        journey(&app, &ana.id).await,
        recorded,
        "every call answered is logged, and the refused one is not"
    );
    // The refused call claimed nothing: once the database takes it, its retry is recorded afresh.
    refuse_activities_about(&app, "refused", false).await;
    let retried = opened(&app, calls[REFUSED].clone()).await;
    let retried_id = retried.activity.expect("an activity").id;
    assert!(!recorded.contains(&retried_id));
    assert_eq!(journey(&app, &ana.id).await.len(), CALLS);
}

/// The ids of the activities in a customer's journey.
async fn journey(app: &TestApp, customer_id: &str) -> BTreeSet<String> {
    app.list_activities(customer_id, "", 100, "")
        .await
        .expect("the journey")
        .activities
        .into_iter()
        .map(|activity| activity.id)
        .collect()
}

/// Makes the database refuse (or, with `refuse` false, take again) the change-log row of any activity about
/// `topic`. On SQLite the activity row is written first, by a statement of its own, so only rolling the write
/// back removes it; on PostgreSQL both rows are one statement.
async fn refuse_logging_activities_about(app: &TestApp, topic: &str, refuse: bool) {
    let condition = format!("NEW.changes LIKE '%{topic}%'");
    refuse_inserts(app, "refuse_logging", "change_log", &condition, refuse).await;
}

/// Every write shares the batches of the SQLite writer, and keeps its own outcome there: a CreateActivity the
/// database refuses after its activity row was written fails and leaves nothing, and the writes committed with it
/// (other activities, an edit of the customer) are kept.
#[apply(writers)]
#[tokio::test]
async fn a_write_the_database_refuses_fails_alone_and_the_writes_beside_it_are_kept(
    writer: Writer,
) {
    use customer_context::pb::activity_service_client::ActivityServiceClient;
    const WRITES: usize = 24;
    const REFUSED: usize = 11;
    let app = or_skip!(writer.spawn().await);
    let ana = ana_at_her_phone(&app).await;
    let before = journey(&app, &ana.id).await;
    refuse_logging_activities_about(&app, "refused by the database", true).await;
    let barrier = Arc::new(Barrier::new(WRITES + 1));
    let writes = (0..WRITES).map(|i| {
        let barrier = barrier.clone();
        let mut client = ActivityServiceClient::new(app.channel());
        let topic = if i == REFUSED {
            "refused by the database"
        } else {
            "billing"
        };
        let request = pb::CreateActivityRequest {
            activity: Some(activity(&ana.id, topic)),
        };
        async move {
            barrier.wait().await;
            client
                .create_activity(as_agent("ana", request))
                .await
                .map(|answer| answer.into_inner().id)
        }
    });
    let edit = {
        let barrier = barrier.clone();
        let app = &app;
        let ana = ana.clone();
        async move {
            barrier.wait().await;
            let edit = pb::Customer {
                notes: "called about billing".to_owned(),
                ..ana
            };
            app.update_customer_with("ana", update_customer_request(edit, &["notes"]))
                .await
                .expect("the edit")
        }
    };
    let (answers, edited) = within(
        "concurrent writes",
        futures::future::join(futures::future::join_all(writes), edit),
    )
    .await;
    let mut created = BTreeSet::new();
    for (i, answer) in answers.into_iter().enumerate() {
        match answer {
            Ok(id) if i != REFUSED => {
                created.insert(id);
            }
            Err(status) if i == REFUSED => assert_eq!(status.code(), tonic::Code::Internal),
            other => panic!("write {i}: {other:?}"),
        }
    }
    let after: BTreeSet<String> = journey(&app, &ana.id)
        .await
        .difference(&before)
        .cloned()
        .collect();
    assert_eq!(
        after, created,
        "every write answered is kept, and the refused one left no activity"
    );
    assert_eq!(edited.notes, "called about billing");
    let customer = app
        .customers()
        .get_customer(pb::GetCustomerRequest { id: ana.id.clone() })
        .await
        .expect("the customer")
        .into_inner();
    assert_eq!(customer.notes, "called about billing");
    assert_eq!(customer.version, edited.version);
    refuse_logging_activities_about(&app, "refused by the database", false).await;
}
