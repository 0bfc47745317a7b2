//! Customer notifications: queued with the activity, delivered once over SMTP to a real (test) mail server,
//! retried after a temporary refusal, given up after a permanent one, never for internal or outgoing activities,
//! and listed by ListNotifications.

use std::time::Duration;

use customer_context::{
    config::Settings,
    pb::{self, Direction, NotificationStatus},
};
use tonic::Code;

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

/// Every notification of `customer_id` (everyone's when empty), newest first.
async fn notifications(app: &TestApp, customer_id: &str) -> Vec<pb::Notification> {
    let call = list_call(customer_id, NotificationStatus::Unspecified, 500, "");
    let page = ok(app.customers().list_notifications(app.setup(call)).await);
    assert_eq!(page.next_page_token, "");
    page.notifications
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
    let mut smtp = SmtpServer::start().await;
    let Some(app) = TestApp::spawn_with(backend, mailing(&smtp)).await else {
        return;
    };
    let ana = customer_with_email(&app, "ana@example.com").await;
    let logged = app
        .create_activity(incoming(&ana.id, "Double charge on invoice 1017"))
        .await;

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

    let listed = notifications(&app, &ana.id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let n = &listed[0];
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
    let mut smtp = SmtpServer::start().await;
    let Some(app) = TestApp::spawn_with(backend, mailing(&smtp)).await else {
        return;
    };
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
    let no_email = app
        .create_customer(pb::Customer {
            contact_points: vec![phone("+14155550199")],
            ..customer("Ben", "Phone")
        })
        .await;
    app.create_activity(incoming(&no_email.id, "Where is my order?"))
        .await;
    app.create_activity(incoming("", "Unknown caller")).await;

    // Queued in the activity's transaction: nothing to wait for.
    assert_eq!(notifications(&app, "").await, []);
    let mail = flush(&app, &mut smtp).await;
    assert_eq!(mail.len(), 1, "unexpected messages: {mail:?}");
    let listed = notifications(&app, "").await;
    assert_eq!(listed.len(), 1, "only the barrier's: {listed:?}");
    assert_ne!(listed[0].customer_id, ana.id);
}

#[apply(backends)]
#[tokio::test]
async fn a_temporary_refusal_is_retried_and_delivered_once(backend: Backend) {
    let mut smtp = SmtpServer::start().await;
    let Some(app) = TestApp::spawn_with(backend, mailing(&smtp)).await else {
        return;
    };
    smtp.refuse_once("ana@example.com", "451 4.3.0 Mailbox busy, try again later");
    let ana = customer_with_email(&app, "ana@example.com").await;
    let logged = app.create_activity(incoming(&ana.id, "Refund")).await;

    let mail = smtp.mail_until("ana@example.com").await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(mail[0].body().contains(&logged.id));
    let later = flush(&app, &mut smtp).await;
    assert_eq!(later.len(), 1, "delivered again: {later:?}");

    let listed = notifications(&app, &ana.id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].status(), NotificationStatus::Sent);
    assert_eq!(listed[0].attempts, 2);
    assert!(
        listed[0].last_error.contains("451"),
        "last_error: {:?}",
        listed[0].last_error
    );
}

#[apply(backends)]
#[tokio::test]
async fn a_permanent_refusal_fails_the_notification_at_once(backend: Backend) {
    let mut smtp = SmtpServer::start().await;
    let Some(app) = TestApp::spawn_with(backend, mailing(&smtp)).await else {
        return;
    };
    smtp.refuse_always("gone@example.com", "550 5.1.1 No such mailbox");
    let gone = customer_with_email(&app, "gone@example.com").await;
    app.create_activity(incoming(&gone.id, "Cancel my contract"))
        .await;

    let mail = flush(&app, &mut smtp).await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    let listed = notifications(&app, &gone.id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let n = &listed[0];
    assert_eq!(n.status(), NotificationStatus::Failed);
    assert_eq!(n.attempts, 1, "a permanent refusal is not retried");
    assert!(
        n.last_error.contains("550"),
        "last_error: {:?}",
        n.last_error
    );
    assert_eq!(n.send_time, None);
    assert_eq!(n.next_attempt_time, None);
}

#[apply(backends)]
#[tokio::test]
async fn without_smtp_notifications_wait_pending_and_go_out_once_a_server_is_configured(
    backend: Backend,
) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = TestApp::spawn_on(db.url()).await;
    let ana = customer_with_email(&app, "ana@example.com").await;
    let logged = app
        .create_activity(incoming(&ana.id, "Broken widget"))
        .await;

    let listed = notifications(&app, &ana.id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let n = listed[0].clone();
    assert_eq!(n.activity_id, logged.id);
    assert_eq!(n.status(), NotificationStatus::Pending);
    assert_eq!(n.attempts, 0);
    assert_eq!(n.send_time, None);
    assert!(n.next_attempt_time.is_some());
    let pending = list_call(&ana.id, NotificationStatus::Pending, 0, "");
    let page = ok(app.customers().list_notifications(pending).await);
    assert_eq!(page.notifications, std::slice::from_ref(&n));
    let sent = list_call(&ana.id, NotificationStatus::Sent, 0, "");
    let page = ok(app.customers().list_notifications(sent).await);
    assert_eq!(page.notifications, []);
    app.shutdown().await;

    let mut smtp = SmtpServer::start().await;
    let app = TestApp::spawn_on_with(db.url(), mailing(&smtp)).await;
    let mail = smtp.next_mail().await;
    assert_eq!(mail.recipients, ["ana@example.com"]);
    assert!(mail.body().contains(&logged.id));
    flush(&app, &mut smtp).await;
    let listed = notifications(&app, &ana.id).await;
    assert_eq!(listed[0].status(), NotificationStatus::Sent);
    assert_eq!(listed[0].attempts, 1);
    app.shutdown().await;
}

#[apply(backends)]
#[tokio::test]
async fn shutdown_finishes_the_delivery_in_flight_and_records_it(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut smtp = SmtpServer::start().await;
    let app = TestApp::spawn_on_with(db.url(), mailing(&smtp)).await;
    let mut held = smtp.hold_next();
    let ana = customer_with_email(&app, "ana@example.com").await;
    let logged = app
        .create_activity(incoming(&ana.id, "Late delivery"))
        .await;
    held.arrived().await;

    let signal = app.shutdown_signal();
    let stopping = tokio::spawn(app.shutdown());
    within("shutdown to begin", signal.begun()).await;
    held.release();
    within("shutdown", stopping).await.expect("shutdown task");
    let mail = smtp.next_mail().await;
    assert!(mail.body().contains(&logged.id));

    let app = TestApp::spawn_on(db.url()).await;
    let listed = notifications(&app, &ana.id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].status(), NotificationStatus::Sent);
    assert_eq!(listed[0].attempts, 1);
    app.shutdown().await;
}

#[apply(backends)]
#[tokio::test]
async fn deleting_the_activity_first_cancels_its_notification(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = customer_with_email(&app, "ana@example.com").await;
    let logged = app.create_activity(incoming(&ana.id, "Wrong number")).await;
    let call = pb::DeleteActivityRequest {
        id: logged.id.clone(),
        version: 1,
    };
    ok(app.activities().delete_activity(app.setup(call)).await);

    let listed = notifications(&app, &ana.id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].status(), NotificationStatus::Failed);
    assert_eq!(
        listed[0].last_error,
        "activity deleted before the notification was sent"
    );
    assert_eq!(listed[0].attempts, 0);
    assert_eq!(listed[0].next_attempt_time, None);
}

#[apply(backends)]
#[tokio::test]
async fn an_unknown_callers_activity_notifies_when_first_linked_to_a_customer(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = customer_with_email(&app, "ana@example.com").await;
    let logged = app
        .create_activity(incoming("", "Caller did not say"))
        .await;
    assert_eq!(notifications(&app, "").await, []);

    let linked = pb::Activity {
        customer_id: ana.id.clone(),
        ..logged.clone()
    };
    let call = pb::UpdateActivityRequest {
        activity: Some(linked),
        update_mask: mask(&["customer_id"]),
        ..Default::default()
    };
    let linked = ok(app.activities().update_activity(app.setup(call)).await);
    let listed = notifications(&app, &ana.id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].activity_id, logged.id);
    assert_eq!(listed[0].status(), NotificationStatus::Pending);

    // Later edits queue nothing more.
    let edited = pb::Activity {
        topic: "Billing question".to_owned(),
        ..linked
    };
    let call = pb::UpdateActivityRequest {
        activity: Some(edited),
        update_mask: mask(&["topic"]),
        ..Default::default()
    };
    ok(app.activities().update_activity(app.setup(call)).await);
    assert_eq!(notifications(&app, "").await.len(), 1);
}

#[apply(backends)]
#[tokio::test]
async fn list_notifications_pages_newest_first_and_refuses_bad_input(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = customer_with_email(&app, "ana@example.com").await;
    let ben = app
        .create_customer(pb::Customer {
            contact_points: vec![email("ben@example.com")],
            ..customer("Ben", "Lee")
        })
        .await;
    let mut logged = Vec::new();
    for topic in ["first", "second", "third"] {
        logged.push(app.create_activity(incoming(&ana.id, topic)).await.id);
    }
    app.create_activity(incoming(&ben.id, "other")).await;

    let first = ok(app
        .customers()
        .list_notifications(list_call(&ana.id, NotificationStatus::Unspecified, 2, ""))
        .await);
    let activity_ids: Vec<&str> = first
        .notifications
        .iter()
        .map(|n| n.activity_id.as_str())
        .collect();
    assert_eq!(activity_ids, [logged[2].as_str(), logged[1].as_str()]);
    assert_ne!(first.next_page_token, "");
    let second = ok(app
        .customers()
        .list_notifications(list_call(
            &ana.id,
            NotificationStatus::Unspecified,
            2,
            &first.next_page_token,
        ))
        .await);
    assert_eq!(second.notifications.len(), 1);
    assert_eq!(second.notifications[0].activity_id, logged[0]);
    assert_eq!(second.next_page_token, "");
    assert_eq!(notifications(&app, "").await.len(), 4);

    // A token is bound to its filters.
    let status = err(app
        .customers()
        .list_notifications(list_call(
            &ana.id,
            NotificationStatus::Pending,
            2,
            &first.next_page_token,
        ))
        .await);
    assert_violations(&status, &[("page_token", "INVALID_PAGE_TOKEN")]);

    let status = err(app
        .customers()
        .list_notifications(list_call(
            &unknown_id(),
            NotificationStatus::Unspecified,
            0,
            "",
        ))
        .await);
    assert_error(&status, Code::NotFound, "NOT_FOUND");

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
    let Some(app) = TestApp::spawn_with_keys(backend, |_| {}).await else {
        return;
    };
    let agent = app.mint_key("dora", "agent", None).await;
    let router = app.mint_key("switch", "router", None).await;
    let call = || list_call("", NotificationStatus::Unspecified, 0, "");
    ok(app
        .customers()
        .list_notifications(keyed(&agent, call()))
        .await);
    let status = err(app
        .customers()
        .list_notifications(keyed(&router, call()))
        .await);
    assert_error(&status, Code::PermissionDenied, "ROLE_NOT_ALLOWED");
}
