//! Customer notifications: queued with the activity, delivered once over SMTP to a real (test) mail server,
//! retried after a temporary refusal, given up after a permanent one, never for internal or outgoing activities,
//! and listed by ListNotifications.

use std::time::Duration;

use customer_context::{
    config::Settings,
    pb::{self, Direction, NotificationStatus},
};
use tonic::{Code, Response, Status};

use rstest::rstest;
use rstest_reuse::apply;

use crate::{
    context::{call, open},
    harness::*,
    smtp::{Mail, SmtpServer},
};

const FROM: &str = "Example Support <support@example.com>";

/// Settings that send through `smtp`, retrying quickly.
fn mailing(smtp: &SmtpServer) -> impl FnOnce(&mut Settings) + use<> {
    let url = smtp.url();
    move |settings: &mut Settings| {
        settings.notifications.smtp_url = Some(url);
        settings.notifications.smtp_from = Some(FROM.to_owned());
        settings.notifications.notification_retry_delay = Duration::from_millis(50);
        settings.notifications.notification_max_attempts = 3;
    }
}

fn list_call(
    customer_id: &str,
    status: NotificationStatus,
    page_size: i32,
    page_token: &str,
) -> pb::ListNotificationsRequest {
    pb::ListNotificationsRequest {
        customer_id: customer_id.to_owned(),
        status: status as i32,
        page_size,
        page_token: page_token.to_owned(),
    }
}

/// One page of ListNotifications.
async fn list_page(
    app: &TestApp,
    customer_id: &str,
    status: NotificationStatus,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListNotificationsResponse, Status> {
    let call = list_call(customer_id, status, page_size, page_token);
    app.customers()
        .list_notifications(app.setup(call))
        .await
        .map(Response::into_inner)
}

/// Every notification of `customer_id` (everyone's when empty), newest first.
async fn notifications(app: &TestApp, customer_id: &str) -> Vec<pb::Notification> {
    let page = list_page(app, customer_id, NotificationStatus::Unspecified, 500, "")
        .await
        .expect("list notifications");
    assert_eq!(page.next_page_token, "");
    page.notifications
}

/// The one notification of `customer_id`.
async fn only_notification(app: &TestApp, customer_id: &str) -> pb::Notification {
    let listed = notifications(app, customer_id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    listed.into_iter().next().expect("one notification")
}

/// `n` ended up `status` after `attempts`, its last error quoting `error`.
#[track_caller]
fn assert_outcome(n: &pb::Notification, status: NotificationStatus, attempts: i32, error: &str) {
    assert_eq!(n.status(), status, "{n:?}");
    assert_eq!(n.attempts, attempts, "{n:?}");
    assert!(
        n.last_error.contains(error),
        "last_error: {:?}",
        n.last_error
    );
}

/// A server that mails through a new test SMTP server, with that server; None when `backend` is not available.
async fn mailing_app(backend: Backend) -> Option<(TestApp, SmtpServer)> {
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn_with(backend, mailing(&smtp)).await?;
    Some((app, smtp))
}

/// A customer whose first email is `address` (a phone and a second email too).
async fn customer_with_email(app: &TestApp, address: &str) -> pb::Customer {
    app.create_customer(pb::Customer {
        contact_points: vec![
            phone("+14155550100"),
            email(address),
            email("second@example.com"),
        ],
        ..customer("Ana", "Lopez")
    })
    .await
}

fn incoming(customer_id: &str, topic: &str) -> pb::Activity {
    pb::Activity {
        notes: "agent-only remark: refund approved by Frank".to_owned(),
        ..activity(customer_id, topic)
    }
}

/// A customer at `address` (see [`customer_with_email`]) and an incoming activity of theirs about `topic`, whose
/// notification is queued with it.
async fn customer_notified_of(
    app: &TestApp,
    address: &str,
    topic: &str,
) -> (pb::Customer, pb::Activity) {
    let customer = customer_with_email(app, address).await;
    let logged = app.create_activity(incoming(&customer.id, topic)).await;
    (customer, logged)
}

/// How the test SMTP server answers RCPT TO one address: `(address, reply)`.
enum Refusal {
    /// With the reply the first time, then with 250.
    Once(&'static str, &'static str),
    /// With the reply every time.
    Always(&'static str, &'static str),
}

/// A mailing server whose SMTP server refuses an address as `refusal` says, and a customer at that address with an
/// incoming activity: the notification the refusal meets.
async fn refused_notification(
    backend: Backend,
    refusal: Refusal,
) -> Option<(TestApp, SmtpServer, pb::Customer, pb::Activity)> {
    let (app, smtp) = mailing_app(backend).await?;
    let (Refusal::Once(address, _) | Refusal::Always(address, _)) = refusal;
    match refusal {
        Refusal::Once(_, reply) => smtp.refuse_once(address, reply),
        Refusal::Always(_, reply) => smtp.refuse_always(address, reply),
    }
    let (customer, logged) = customer_notified_of(&app, address, "Refund").await;
    Some((app, smtp, customer, logged))
}

/// Creates a customer and an activity whose notification goes to a fresh address, and returns every message the
/// server accepted up to and with that one. The sender works through the outbox one notification at a time,
/// recording each outcome before it takes the next, so once this message arrived every notification queued
/// before it has been delivered or given up, and its outcome is listed.
async fn flush(app: &TestApp, smtp: &mut SmtpServer) -> Vec<Mail> {
    let address = format!("barrier-{}@example.org", unknown_id());
    let barrier = app
        .create_customer(pb::Customer {
            contact_points: vec![email(&address)],
            ..customer("Barrier", "Mail")
        })
        .await;
    app.create_activity(activity(&barrier.id, "barrier")).await;
    let mail = smtp.mail_until(&address).await;
    assert_eq!(
        mail.last().map(|m| m.recipients.clone()),
        Some(vec![address])
    );
    mail
}

#[apply(backends)]
#[tokio::test]
async fn an_incoming_public_activity_is_mailed_once_to_the_first_email(backend: Backend) {
    let (app, mut smtp) = or_skip!(mailing_app(backend).await);
    let (ana, logged) =
        customer_notified_of(&app, "ana@example.com", "Double charge on invoice 1017").await;

    let mail = smtp.next_mail().await;
    assert_eq!(mail.recipients, ["ana@example.com"]);
    assert_eq!(mail.from, "support@example.com");
    assert_eq!(mail.header("To").as_deref(), Some("ana@example.com"));
    let subject = mail.header("Subject").expect("a subject");
    assert!(
        subject.starts_with("Your phone call on ") && subject.ends_with(" has been recorded"),
        "{subject}"
    );
    let body = mail.body();
    assert!(
        body.contains("about \"Double charge on invoice 1017\" has been recorded"),
        "{body}"
    );
    assert!(
        body.contains(&format!("Reference: {}", logged.id)),
        "{body}"
    );
    assert!(
        !body.contains("agent-only") && !body.contains("Frank") && !body.contains(SETUP_AGENT),
        "internal data in the message: {body}"
    );

    // Delivered once: nothing else arrives before the next notification's message.
    let later = flush(&app, &mut smtp).await;
    assert_eq!(later.len(), 1, "a second message arrived: {later:?}");

    let n = only_notification(&app, &ana.id).await;
    assert_uuid_v7(&n.id);
    assert_eq!(n.customer_id, ana.id);
    assert_eq!(n.activity_id, logged.id);
    assert_eq!(n.recipient, "ana@example.com");
    assert_eq!(n.subject, subject);
    assert_eq!(n.status(), NotificationStatus::Sent);
    assert_eq!(n.attempts, 1);
    assert_eq!(n.last_error, "");
    assert!(n.send_time.is_some() && n.create_time.is_some());
    assert_eq!(n.next_attempt_time, None);
    let message_id = mail.header("Message-ID").expect("a Message-ID");
    assert_eq!(message_id, format!("<{}@example.com>", n.id));

    // The router's OpenContext logs an activity too, and the customer is told about it the same way.
    let opened = open(&app, call("call-7", "+1 415-555-0100"))
        .await
        .expect("OpenContext");
    let mail = smtp.next_mail().await;
    assert_eq!(mail.recipients, ["ana@example.com"]);
    let opened_id = opened.activity.expect("logged activity").id;
    assert!(mail.body().contains(&opened_id), "{}", mail.body());

    app.shutdown().await;
}

#[apply(backends)]
#[tokio::test]
async fn internal_outgoing_and_unreachable_activities_notify_nobody(backend: Backend) {
    let (app, mut smtp) = or_skip!(mailing_app(backend).await);
    let ana = customer_with_email(&app, "ana@example.com").await;
    app.create_activity(pb::Activity {
        internal: true,
        ..incoming(&ana.id, "Supervisor note")
    })
    .await;
    app.create_activity(pb::Activity {
        direction: Direction::Outgoing as i32,
        ..incoming(&ana.id, "We called back")
    })
    .await;
    let no_email = customer_with_contacts("Ben", "Phone", vec![phone("+14155550199")]);
    let no_email = app.create_customer(no_email).await;
    app.create_activity(incoming(&no_email.id, "Where is my order?"))
        .await;
    app.create_activity(incoming("", "Unknown caller")).await;

    // Queued in the activity's transaction: nothing to wait for.
    assert_eq!(notifications(&app, "").await, []);
    let mail = flush(&app, &mut smtp).await;
    assert_eq!(mail.len(), 1, "unexpected messages: {mail:?}");
    let barriers = only_notification(&app, "").await;
    assert_ne!(barriers.customer_id, ana.id, "only the barrier's");
}

#[apply(backends)]
#[tokio::test]
async fn a_temporary_refusal_is_retried_and_delivered_once(backend: Backend) {
    let refusal = Refusal::Once("ana@example.com", "451 4.3.0 Mailbox busy, try again later");
    let (app, mut smtp, ana, logged) = or_skip!(refused_notification(backend, refusal).await);

    let mail = smtp.mail_until("ana@example.com").await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(mail[0].body().contains(&logged.id));
    let later = flush(&app, &mut smtp).await;
    assert_eq!(later.len(), 1, "delivered again: {later:?}");

    let n = only_notification(&app, &ana.id).await;
    assert_outcome(&n, NotificationStatus::Sent, 2, "451");
}

#[apply(backends)]
#[tokio::test]
async fn a_permanent_refusal_fails_the_notification_at_once(backend: Backend) {
    let refusal = Refusal::Always("gone@example.com", "550 5.1.1 No such mailbox");
    let (app, mut smtp, gone, _) = or_skip!(refused_notification(backend, refusal).await);

    let mail = flush(&app, &mut smtp).await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    let n = only_notification(&app, &gone.id).await;
    // A permanent refusal is not retried.
    assert_outcome(&n, NotificationStatus::Failed, 1, "550");
    assert_eq!(n.send_time, None);
    assert_eq!(n.next_attempt_time, None);
}

#[apply(backends)]
#[tokio::test]
async fn without_smtp_notifications_wait_pending_and_go_out_once_a_server_is_configured(
    backend: Backend,
) {
    let (app, db) = or_skip!(TestApp::spawn_keeping_db(backend).await);
    let (ana, logged) = customer_notified_of(&app, "ana@example.com", "Broken widget").await;

    let n = only_notification(&app, &ana.id).await;
    assert_eq!(n.activity_id, logged.id);
    assert_eq!(n.status(), NotificationStatus::Pending);
    assert_eq!(n.attempts, 0);
    assert_eq!(n.send_time, None);
    assert!(n.next_attempt_time.is_some());
    for (status, expected) in [
        (NotificationStatus::Pending, std::slice::from_ref(&n)),
        (NotificationStatus::Sent, &[]),
    ] {
        let page = list_page(&app, &ana.id, status, 0, "").await;
        assert_eq!(page.expect("list").notifications, expected, "{status:?}");
    }
    app.shutdown().await;

    let mut smtp = SmtpServer::start().await;
    let app = TestApp::spawn_on_with(db.url(), mailing(&smtp)).await;
    let mail = smtp.next_mail().await;
    assert_eq!(mail.recipients, ["ana@example.com"]);
    assert!(mail.body().contains(&logged.id));
    flush(&app, &mut smtp).await;
    assert_sent_once(&app, &ana.id).await;
    app.shutdown().await;
}

/// `customer_id` has one notification, and it went out at the first attempt.
async fn assert_sent_once(app: &TestApp, customer_id: &str) {
    let n = only_notification(app, customer_id).await;
    assert_eq!(n.status(), NotificationStatus::Sent, "{n:?}");
    assert_eq!(n.attempts, 1, "{n:?}");
}

#[apply(backends)]
#[tokio::test]
async fn shutdown_finishes_the_delivery_in_flight_and_records_it(backend: Backend) {
    let db = or_skip!(TestDb::new(backend).await);
    let mut smtp = SmtpServer::start().await;
    let app = TestApp::spawn_on_with(db.url(), mailing(&smtp)).await;
    let mut held = smtp.hold_next();
    let (ana, logged) = customer_notified_of(&app, "ana@example.com", "Late delivery").await;
    held.arrived().await;

    let signal = app.shutdown_signal();
    let stopping = tokio::spawn(app.shutdown());
    within("shutdown to begin", signal.begun()).await;
    held.release();
    within("shutdown", stopping).await.expect("shutdown task");
    let mail = smtp.next_mail().await;
    assert!(mail.body().contains(&logged.id));

    let app = TestApp::spawn_on(db.url()).await;
    assert_sent_once(&app, &ana.id).await;
    app.shutdown().await;
}

#[apply(backends)]
#[tokio::test]
async fn deleting_the_activity_first_cancels_its_notification(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let (ana, logged) = customer_notified_of(&app, "ana@example.com", "Wrong number").await;
    app.delete_activity(SETUP_AGENT, &logged.id, 1)
        .await
        .expect("delete");

    let n = only_notification(&app, &ana.id).await;
    assert_eq!(n.status(), NotificationStatus::Failed);
    assert_eq!(
        n.last_error,
        "activity deleted before the notification was sent"
    );
    assert_eq!(n.attempts, 0);
    assert_eq!(n.next_attempt_time, None);
}

#[apply(backends)]
#[tokio::test]
async fn an_unknown_callers_activity_notifies_when_first_linked_to_a_customer(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = customer_with_email(&app, "ana@example.com").await;
    let logged = app
        .create_activity(incoming("", "Caller did not say"))
        .await;
    assert_eq!(notifications(&app, "").await, []);

    let linked = pb::Activity {
        customer_id: ana.id.clone(),
        ..logged.clone()
    };
    let linked = app
        .patch_activity(SETUP_AGENT, linked, &["customer_id"])
        .await
        .expect("link");
    let n = only_notification(&app, &ana.id).await;
    assert_eq!(n.activity_id, logged.id);
    assert_eq!(n.status(), NotificationStatus::Pending);

    // Later edits queue nothing more.
    let edited = pb::Activity {
        topic: "Billing question".to_owned(),
        ..linked
    };
    app.patch_activity(SETUP_AGENT, edited, &["topic"])
        .await
        .expect("edit");
    assert_eq!(notifications(&app, "").await.len(), 1);
}

#[apply(backends)]
#[tokio::test]
async fn list_notifications_pages_newest_first_and_refuses_bad_input(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = customer_with_email(&app, "ana@example.com").await;
    let ben = customer_with_contacts("Ben", "Lee", vec![email("ben@example.com")]);
    let ben = app.create_customer(ben).await;
    let mut logged = Vec::new();
    for topic in ["first", "second", "third"] {
        logged.push(app.create_activity(incoming(&ana.id, topic)).await.id);
    }
    app.create_activity(incoming(&ben.id, "other")).await;

    let all = NotificationStatus::Unspecified;
    let first = list_page(&app, &ana.id, all, 2, "").await.expect("page 1");
    let activity_ids: Vec<&str> = first
        .notifications
        .iter()
        .map(|n| n.activity_id.as_str())
        .collect();
    assert_eq!(activity_ids, [logged[2].as_str(), logged[1].as_str()]);
    assert_ne!(first.next_page_token, "");
    let second = list_page(&app, &ana.id, all, 2, &first.next_page_token)
        .await
        .expect("page 2");
    assert_eq!(second.notifications.len(), 1);
    assert_eq!(second.notifications[0].activity_id, logged[0]);
    assert_eq!(second.next_page_token, "");
    assert_eq!(notifications(&app, "").await.len(), 4);

    // A token is bound to its filters.
    let pending = NotificationStatus::Pending;
    assert_invalid(
        list_page(&app, &ana.id, pending, 2, &first.next_page_token).await,
        &[("page_token", "INVALID_PAGE_TOKEN")],
    );

    assert_not_found(list_page(&app, &unknown_id(), all, 0, "").await);

    let bad = pb::ListNotificationsRequest {
        customer_id: "not-an-id".to_owned(),
        status: 42,
        page_size: -1,
        page_token: "garbage".to_owned(),
    };
    let status = err(app.customers().list_notifications(bad).await);
    assert_violations(
        &status,
        &[
            ("customer_id", "INVALID_ID"),
            ("status", "INVALID_ENUM_VALUE"),
            ("page_size", "INVALID_PAGE_SIZE"),
            ("page_token", "INVALID_PAGE_TOKEN"),
        ],
    );
}

#[apply(backends)]
#[tokio::test]
async fn only_staff_may_list_notifications(backend: Backend) {
    let app = or_skip!(TestApp::spawn_with_keys(backend, |_| {}).await);
    // An agent is staff; a router is not.
    for (name, role, refusal) in [
        ("dora", "agent", None),
        ("switch", "router", Some("ROLE_NOT_ALLOWED")),
    ] {
        let key = app.mint_key(name, role, None).await;
        let call = list_call("", NotificationStatus::Unspecified, 0, "");
        let answer = app.customers().list_notifications(keyed(&key, call)).await;
        match refusal {
            None => {
                ok(answer);
            }
            Some(reason) => assert_fails(answer, Code::PermissionDenied, reason),
        }
    }
}
