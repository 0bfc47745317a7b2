//! A new server on the same database file finds everything the previous one wrote, at the same versions.

use customer_context::pb::{self, RequestStatus, lookup_customers_request::Key};
use tonic::Code;

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

#[apply(backends)]
#[tokio::test]
async fn restarting_on_the_same_database_file_loses_nothing(backend: Backend) {
    // First life: write a bit of everything.
    let (app, db) = or_skip!(TestApp::spawn_keeping_db(backend).await);
    let ana = app
        .create_customer(pb::Customer {
            contact_points: vec![phone("(415) 555-0100"), email("Ana@Example.com")],
            tags: strings(&["vip"]),
            ..numbered_customer("C-1", "Ana", "Lopez")
        })
        .await;
    let edit = pb::Customer {
        notes: "edited once".to_owned(),
        ..ana
    };
    let ana = app.update_customer("ana", edit).await.expect("update");
    let ben = app.create_customer(customer("Ben", "Smith")).await;
    let open = app.create_request(request(&ana.id, "Broken")).await;
    let comments = vec![
        app.comment_on("ana", &open.id, "first").await,
        app.comment_on("ben", &open.id, "second 😀").await,
    ];
    let closed = app
        .create_request_in_status("ben", &ana.id, "Invoice", RequestStatus::Closed)
        .await;
    let cancelled = app.create_request(request(&ben.id, "Mistake")).await;
    app.comment_on("ben", &cancelled.id, "gone soon").await;
    let cancelled = app
        .set_request_status("ben", &cancelled, RequestStatus::Cancelled)
        .await
        .expect("cancel");
    let call_activity = app
        .create_activity(pb::Activity {
            request_id: open.id.clone(),
            occur_time: Some(timestamp(1_700_000_000, 250_000_000)),
            follow_up_time: Some(timestamp(1_700_100_000, 0)),
            contact_phone: "+1 415 555 0100".to_owned(),
            ..activity(&ana.id, "call")
        })
        .await;
    let email_activity = app
        .create_activity(pb::Activity {
            channel: pb::Channel::Email as i32,
            ..activity(&ana.id, "mail")
        })
        .await;
    let activities = app
        .list_activities(&ana.id, "", 0, "")
        .await
        .expect("list")
        .activities;
    assert_eq!(
        activities,
        vec![email_activity.clone(), call_activity.clone()]
    );
    let everyone = app.search_customers("").await;
    assert_eq!(everyone, vec![ben.clone(), ana.clone()]);
    app.shutdown().await;

    // Second life: a new server on the same file.
    let app = TestApp::spawn_on(db.url()).await;
    assert_eq!(app.get_customer(&ana.id).await.expect("ana"), ana);
    assert_eq!(app.get_customer(&ben.id).await.expect("ben"), ben);
    assert_eq!(app.search_customers("").await, everyone);
    assert_eq!(app.search_customers("vip").await, vec![ana.clone()]);
    let call = pb::LookupCustomersRequest {
        key: Some(Key::Phone("tel:+14155550100".to_owned())),
    };
    assert_eq!(
        ok(app.customers().lookup_customers(call).await).customers,
        vec![ana.clone()]
    );
    assert_eq!(app.get_request(&open.id).await.expect("open"), open);
    assert_eq!(app.get_request(&closed.id).await.expect("closed"), closed);
    assert!(closed.close_time.is_some());
    assert_eq!(
        app.get_request(&cancelled.id).await.expect("cancelled"),
        cancelled
    );
    assert_eq!(
        app.list_comments(&open.id).await.expect("comments"),
        comments
    );
    assert_eq!(
        app.list_comments(&cancelled.id).await.expect("comments"),
        vec![]
    );
    assert_eq!(
        app.list_requests(&ana.id, RequestStatus::Unspecified).await,
        vec![closed.clone(), open.clone()]
    );
    assert_eq!(
        app.get_activity(&call_activity.id).await.expect("activity"),
        call_activity
    );
    assert_eq!(
        app.list_activities(&ana.id, "", 0, "")
            .await
            .expect("list")
            .activities,
        activities
    );

    // Writes continue from the stored versions.
    let stale = pb::Customer {
        version: 1,
        ..ana.clone()
    };
    let status = err(app.update_customer("ben", stale).await);
    assert_version_mismatch(&status, 2, "ana");
    let edit = pb::Customer {
        notes: "edited after restart".to_owned(),
        ..ana.clone()
    };
    let ana3 = app
        .update_customer("ben", edit)
        .await
        .expect("update after restart");
    assert_eq!(ana3.version, 3);
    assert_eq!(ana3.create_time, ana.create_time);
    let reopened = app
        .set_request_status("ana", &closed, RequestStatus::Open)
        .await
        .expect("reopen after restart");
    assert_eq!(reopened.version, closed.version + 1);
    assert_eq!(reopened.close_time, None);
    assert_fails(
        app.add_comment("ana", &cancelled.id, "still frozen").await,
        Code::FailedPrecondition,
        "REQUEST_CANCELLED",
    );
    let third = app.comment_on("ana", &open.id, "third").await;
    assert_eq!(
        app.list_comments(&open.id).await.expect("comments"),
        [comments, vec![third]].concat()
    );
    // The customer number is still taken.
    assert_fails(
        app.create_customer_as("ben", numbered_customer("C-1", "Carl", "Jones"))
            .await,
        Code::AlreadyExists,
        "CUSTOMER_NUMBER_TAKEN",
    );
    let carl = app.create_customer(customer("Carl", "Jones")).await;
    assert_eq!(carl.version, 1);
    app.shutdown().await;
}

/// A service stopped with SIGTERM leaves one complete SQLite file: the write-ahead log is copied into it and
/// removed, so a copy of the file alone (the backup of a stopped service) has every acknowledged write.
#[tokio::test]
async fn a_stopped_service_leaves_one_complete_database_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("cc.db");
    let (server, addr) = crate::crash::start_server(&database_url(&file));
    let channel = crate::crash::channel(&addr).await;
    let create = pb::CreateCustomerRequest {
        customer: Some(pb::Customer {
            contact_points: vec![phone("+14155550100")],
            ..customer("Ana", "Lopez")
        }),
    };
    let ana = pb::customer_service_client::CustomerServiceClient::new(channel.clone())
        .create_customer(create)
        .await
        .expect("create")
        .into_inner();
    let opened = crate::context::context_client(channel)
        .open_context(as_agent(
            crate::context::ROUTER,
            crate::context::call("call-1", "+14155550100"),
        ))
        .await
        .expect("open context")
        .into_inner();
    let logged = opened.activity.expect("the call's activity");

    crate::crash::stop_gracefully(server).await;
    let log = dir.path().join("cc.db-wal");
    let left = std::fs::metadata(&log).map_or(0, |m| m.len());
    assert_eq!(left, 0, "the write-ahead log was left behind");

    let copy = tempfile::tempdir().expect("temporary directory");
    std::fs::copy(&file, copy.path().join("cc.db")).expect("copy the file alone");
    let app = TestApp::spawn_on(&database_url(&copy.path().join("cc.db"))).await;
    let listed = app
        .list_activities(&ana.id, "", 50, "")
        .await
        .expect("list activities");
    assert_eq!(
        listed.activities.iter().map(|a| &a.id).collect::<Vec<_>>(),
        [&logged.id],
        "the copy has the call's activity"
    );
    app.shutdown().await;
}
