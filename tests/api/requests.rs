//! Requests: the round trip, required fields, the lifecycle (close/reopen, cancel), comments and listing.

use customer_context::pb::{self, RequestStatus};
use tonic::Code;

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

#[apply(backends)]
#[tokio::test]
async fn request_round_trips_every_field_through_create_get_update_delete(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = app.ana_lopez().await;
    let input = pb::Request {
        // Output-only fields: must be ignored on input.
        id: unknown_id(),
        version: 7,
        create_time: Some(timestamp(1_000, 0)),
        update_time: Some(timestamp(1_000, 0)),
        close_time: Some(timestamp(1_000, 0)),
        created_by: "mallory".to_owned(),
        updated_by: "mallory".to_owned(),
        // Mutable fields; UNSPECIFIED status means OPEN.
        customer_id: ana.id.clone(),
        title: "Widget arrived broken".to_owned(),
        description: "The box was crushed.\nCustomer wants a replacement.".to_owned(),
        status: RequestStatus::Unspecified as i32,
        tags: strings(&[" shipping ", "Damage"]),
    };
    let stored_input = pb::Request {
        status: RequestStatus::Open as i32,
        tags: strings(&["shipping", "Damage"]),
        close_time: None,
        ..input.clone()
    };
    let created = create_and_check(&app, "ana", input, stored_input).await;

    let replacement = pb::Request {
        id: created.id.clone(),
        version: 1,
        customer_id: ana.id.clone(),
        title: "Replacement sent".to_owned(),
        description: "Tracking 1Z999".to_owned(),
        status: RequestStatus::Pending as i32,
        tags: strings(&["waiting-on-carrier"]),
        ..Default::default()
    };
    // Stored as given.
    let updated = replace_and_check(&app, "ben", &created, replacement.clone(), replacement).await;

    app.delete_request("ben", &updated.id, 2)
        .await
        .expect("delete");
    assert_not_found(app.get_request(&created.id).await);
    assert!(app.requests_of(&ana.id).await.is_empty());
    // The customer itself is untouched.
    assert_eq!(app.get_customer(&ana.id).await.expect("get"), ana);
}

#[apply(backends)]
#[tokio::test]
async fn create_request_requires_a_title_and_an_existing_customer(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = app.ana_lopez().await;

    let unknown_status = pb::Request {
        status: 42,
        ..request(&ana.id, "Broken")
    };
    for (invalid, violations) in [
        (
            request("", ""),
            &[
                ("request.customer_id", "REQUIRED_FIELD"),
                ("request.title", "REQUIRED_FIELD"),
            ][..],
        ),
        (request(&ana.id, ""), &[("request.title", "REQUIRED_FIELD")]),
        (unknown_status, &[("request.status", "INVALID_ENUM_VALUE")]),
    ] {
        assert_invalid(app.create_as("ana", invalid).await, violations);
    }
    assert_not_found(app.create_as("ana", request(&unknown_id(), "Broken")).await);
    let status = err(app.create_as("ana", request("nope", "Broken")).await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    assert!(app.requests_of(&ana.id).await.is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn closing_sets_close_time_and_reopening_clears_it(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = app.ana_lopez().await;
    let created = app.create_request(request(&ana.id, "Broken")).await;
    assert_eq!(created.status, RequestStatus::Open as i32);
    assert_eq!(created.close_time, None);

    let closed = app
        .set_request_status("ana", &created, RequestStatus::Closed)
        .await
        .expect("close");
    assert_eq!(closed.version, 2);
    assert_eq!(closed.status, RequestStatus::Closed as i32);
    let close_time = closed.close_time.expect("close_time set when closed");
    assert!(nanos(&close_time) >= nanos(&created.create_time.expect("create_time")));
    assert_eq!(closed.title, "Broken", "a status change keeps the title");
    assert_eq!(app.get_request(&created.id).await.expect("get"), closed);

    let reopened = app
        .set_request_status("ben", &closed, RequestStatus::Open)
        .await
        .expect("reopen");
    assert_eq!(reopened.version, 3);
    assert_eq!(reopened.status, RequestStatus::Open as i32);
    assert_eq!(reopened.close_time, None, "reopening clears close_time");
    assert_eq!(app.get_request(&created.id).await.expect("get"), reopened);

    let closed = app
        .set_request_status("ana", &reopened, RequestStatus::Closed)
        .await
        .expect("close again");
    assert!(closed.close_time.is_some());
    // A change that keeps it closed keeps close_time.
    let retitle = pb::Request {
        title: "Broken widget".to_owned(),
        ..closed.clone()
    };
    let retitled = app
        .patch_request("ana", retitle, &["title"])
        .await
        .expect("retitle");
    assert_eq!(retitled.status, RequestStatus::Closed as i32);
    assert_eq!(retitled.close_time, closed.close_time);

    let pending = app
        .set_request_status("ana", &retitled, RequestStatus::Pending)
        .await
        .expect("pending");
    assert_eq!(pending.version, 6);
    assert_eq!(
        pending.close_time, None,
        "moving to PENDING clears close_time"
    );
    assert_eq!(app.get_request(&created.id).await.expect("get"), pending);
}

#[apply(backends)]
#[tokio::test]
async fn cancelling_deletes_the_comments_and_freezes_the_request(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = app.ana_lopez().await;
    let created = app.create_request(request(&ana.id, "Broken")).await;
    let first = app
        .add_comment("ana", &created.id, "Called the customer")
        .await
        .expect("comment");
    let second = app
        .add_comment("ben", &created.id, "Sent a label")
        .await
        .expect("comment");
    assert_eq!(
        app.list_comments(&created.id).await.expect("list"),
        vec![first, second]
    );
    let before = app.get_request(&created.id).await.expect("get");

    let cancelled = app
        .set_request_status("ana", &before, RequestStatus::Cancelled)
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, RequestStatus::Cancelled as i32);
    assert_eq!(cancelled.version, before.version + 1);
    assert_eq!(cancelled.updated_by, "ana");
    assert_eq!(app.list_comments(&created.id).await.expect("list"), vec![]);

    // Frozen: no update (not even back to OPEN), no comment, no delete.
    for (target, paths) in [
        (RequestStatus::Open, &["status"][..]),
        (RequestStatus::Cancelled, &["title"][..]),
        (RequestStatus::Closed, &[][..]),
    ] {
        let change = pb::Request {
            id: created.id.clone(),
            version: cancelled.version,
            customer_id: ana.id.clone(),
            title: "Changed".to_owned(),
            status: target as i32,
            ..Default::default()
        };
        let refused = app.patch_request("ben", change, paths).await;
        assert_fails(refused, Code::FailedPrecondition, "REQUEST_CANCELLED");
    }
    let refused = app.add_comment("ben", &created.id, "too late").await;
    assert_fails(refused, Code::FailedPrecondition, "REQUEST_CANCELLED");
    let refused = app
        .delete_request("ben", &created.id, cancelled.version)
        .await;
    assert_fails(refused, Code::FailedPrecondition, "REQUEST_CANCELLED");

    assert_eq!(app.get_request(&created.id).await.expect("get"), cancelled);
    assert_eq!(app.list_comments(&created.id).await.expect("list"), vec![]);
}

#[apply(backends)]
#[tokio::test]
async fn comments_carry_their_author_and_are_listed_oldest_first(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = app.ana_lopez().await;
    let created = app.create_request(request(&ana.id, "Broken")).await;
    let other = app.create_request(request(&ana.id, "Other")).await;
    app.add_comment("zoe", &other.id, "elsewhere")
        .await
        .expect("comment");

    let mut expected = Vec::new();
    for (agent, text) in [("ana", "one"), ("ben", "two 😀"), ("carl", "three")] {
        let comment = app
            .add_comment(agent, &created.id, text)
            .await
            .expect("comment");
        assert_uuid_v7(&comment.id);
        assert_eq!(comment.request_id, created.id);
        assert_eq!(comment.text, text);
        assert_eq!(comment.author, agent);
        assert!(comment.create_time.is_some());
        expected.push(comment);
    }
    assert_eq!(
        app.list_comments(&created.id).await.expect("list"),
        expected
    );
    // Comments do not change the request.
    assert_eq!(app.get_request(&created.id).await.expect("get"), created);

    // Paged, oldest first.
    let page_of_two = |page_token: String| pb::ListCommentsRequest {
        request_id: created.id.clone(),
        page_size: 2,
        page_token,
    };
    let first = ok(app
        .requests()
        .list_comments(page_of_two(String::new()))
        .await);
    assert_eq!(first.comments, expected[..2]);
    assert!(!first.next_page_token.is_empty());
    let second = ok(app
        .requests()
        .list_comments(page_of_two(first.next_page_token))
        .await);
    assert_eq!(second.comments, expected[2..]);
    assert_eq!(second.next_page_token, "");

    // A comment is text like any other: at most 2,000 characters.
    let too_long = app.add_comment("ana", &created.id, &"x".repeat(2001)).await;
    assert_fails(too_long, Code::InvalidArgument, "FIELD_TOO_LONG");
    assert_eq!(app.list_comments(&created.id).await.expect("list").len(), 3);
}

#[apply(backends)]
#[tokio::test]
async fn list_requests_filters_by_customer_and_status_newest_first(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = app.ana_lopez().await;
    let ben = app.create_customer(customer("Ben", "Smith")).await;
    let r1 = app.create_request(request(&ana.id, "one")).await;
    let r2 = app.create_request(request(&ana.id, "two")).await;
    let _other = app.create_request(request(&ben.id, "ben's")).await;
    let r3 = app.create_request(request(&ana.id, "three")).await;
    let r2 = app
        .set_request_status("ana", &r2, RequestStatus::Closed)
        .await
        .expect("close");

    for (status, expected) in [
        (
            RequestStatus::Unspecified,
            vec![r3.clone(), r2.clone(), r1.clone()],
        ),
        (RequestStatus::Closed, vec![r2]),
        (RequestStatus::Open, vec![r3, r1]),
        (RequestStatus::Pending, vec![]),
    ] {
        assert_eq!(
            app.list_requests(&ana.id, status).await,
            expected,
            "{status:?}"
        );
    }
}

#[apply(backends)]
#[tokio::test]
async fn deleting_a_request_keeps_its_activities_unlinked(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = app.ana_lopez().await;
    let created = app.create_request(request(&ana.id, "Broken")).await;
    app.add_comment("ana", &created.id, "note")
        .await
        .expect("comment");
    let linked = app
        .create_activity(activity_on_request(&ana.id, &created.id, "call about it"))
        .await;
    assert_eq!(linked.request_id, created.id);

    app.delete_request("ben", &created.id, 1)
        .await
        .expect("delete");

    let after = app.get_activity(&linked.id).await.expect("activity stays");
    let expected = pb::Activity {
        request_id: String::new(),
        version: 2,
        update_time: after.update_time,
        updated_by: "ben".to_owned(),
        ..linked.clone()
    };
    assert_eq!(after, expected);
    assert_eq!(app.activities_of(&ana.id).await, vec![after]);
    assert_not_found(app.get_request(&created.id).await);
}

#[apply(backends)]
#[tokio::test]
async fn stale_request_versions_are_aborted(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = app.ana_lopez().await;
    let created = app.create_request(request(&ana.id, "Broken")).await;
    let retitle = |version: i64, title: &str| pb::Request {
        id: created.id.clone(),
        version,
        title: title.to_owned(),
        ..Default::default()
    };
    let updated = app
        .patch_request("ana", retitle(1, "Broken widget"), &["title"])
        .await
        .expect("update");
    let stale = err(app
        .patch_request("ben", retitle(1, "Mine"), &["title"])
        .await);
    assert_version_mismatch(&stale, 2, "ana");
    let without_version = app
        .patch_request("ben", retitle(0, "Mine"), &["title"])
        .await;
    assert_fails(without_version, Code::InvalidArgument, "MISSING_VERSION");
    let unknown_field = app
        .patch_request("ben", retitle(2, "Mine"), &["size"])
        .await;
    assert_fails(unknown_field, Code::InvalidArgument, "INVALID_UPDATE_MASK");
    let stale = err(app.delete_request("ben", &created.id, 1).await);
    assert_version_mismatch(&stale, 2, "ana");
    assert_eq!(app.get_request(&created.id).await.expect("get"), updated);
}
