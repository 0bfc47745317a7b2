//! Requests: the round trip, required fields, the lifecycle (close/reopen, cancel), comments and listing.

use customer_context::pb::{self, RequestStatus};
use tonic::Code;

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

#[apply(backends)]
#[tokio::test]
async fn request_round_trips_every_field_through_create_get_update_delete(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app.create_customer(customer("Ana", "Lopez")).await;
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
    let call = pb::CreateRequestRequest {
        request: Some(input.clone()),
    };
    let created = ok(app.requests().create_request(as_agent("ana", call)).await);
    assert_uuid_v7(&created.id);
    let create_time = created.create_time.expect("create_time set");
    let expected = pb::Request {
        id: created.id.clone(),
        version: 1,
        status: RequestStatus::Open as i32,
        tags: strings(&["shipping", "Damage"]),
        create_time: Some(create_time),
        update_time: Some(create_time),
        close_time: None,
        created_by: "ana".to_owned(),
        updated_by: "ana".to_owned(),
        ..input
    };
    assert_eq!(created, expected);
    assert_eq!(app.get_request(&created.id).await.expect("get"), expected);

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
    let call = pb::UpdateRequestRequest {
        request: Some(replacement.clone()),
        update_mask: None,
        ..Default::default()
    };
    let updated = ok(app.requests().update_request(as_agent("ben", call)).await);
    let update_time = updated.update_time.expect("update_time set");
    assert!(nanos(&update_time) >= nanos(&create_time));
    let expected = pb::Request {
        version: 2,
        create_time: Some(create_time),
        update_time: Some(update_time),
        created_by: "ana".to_owned(),
        updated_by: "ben".to_owned(),
        ..replacement
    };
    assert_eq!(updated, expected);
    assert_eq!(app.get_request(&created.id).await.expect("get"), expected);

    let call = pb::DeleteRequestRequest {
        id: created.id.clone(),
        version: 2,
    };
    let () = ok(app.requests().delete_request(as_agent("ben", call)).await);
    assert_error(
        &err(app.get_request(&created.id).await),
        Code::NotFound,
        "NOT_FOUND",
    );
    assert!(
        app.list_requests(&ana.id, RequestStatus::Unspecified)
            .await
            .is_empty()
    );
    // The customer itself is untouched.
    assert_eq!(app.get_customer(&ana.id).await.expect("get"), ana);
}

#[apply(backends)]
#[tokio::test]
async fn create_request_requires_a_title_and_an_existing_customer(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app.create_customer(customer("Ana", "Lopez")).await;

    let call = pb::CreateRequestRequest {
        request: Some(request("", "")),
    };
    let status = err(app.requests().create_request(call).await);
    assert_violations(
        &status,
        &[
            ("request.customer_id", "REQUIRED_FIELD"),
            ("request.title", "REQUIRED_FIELD"),
        ],
    );

    let call = pb::CreateRequestRequest {
        request: Some(request(&ana.id, "")),
    };
    let status = err(app.requests().create_request(call).await);
    assert_violations(&status, &[("request.title", "REQUIRED_FIELD")]);

    let call = pb::CreateRequestRequest {
        request: Some(request(&unknown_id(), "Broken")),
    };
    let status = err(app.requests().create_request(call).await);
    assert_error(&status, Code::NotFound, "NOT_FOUND");

    let call = pb::CreateRequestRequest {
        request: Some(request("nope", "Broken")),
    };
    let status = err(app.requests().create_request(call).await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let call = pb::CreateRequestRequest {
        request: Some(pb::Request {
            status: 42,
            ..request(&ana.id, "Broken")
        }),
    };
    let status = err(app.requests().create_request(call).await);
    assert_violations(&status, &[("request.status", "INVALID_ENUM_VALUE")]);

    assert!(
        app.list_requests(&ana.id, RequestStatus::Unspecified)
            .await
            .is_empty()
    );
}

#[apply(backends)]
#[tokio::test]
async fn closing_sets_close_time_and_reopening_clears_it(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app.create_customer(customer("Ana", "Lopez")).await;
    let created = app.create_request(request(&ana.id, "Broken")).await;
    assert_eq!(created.status, RequestStatus::Open as i32);
    assert_eq!(created.close_time, None);

    let set_status = |version: i64, status: RequestStatus| pb::Request {
        id: created.id.clone(),
        version,
        status: status as i32,
        ..Default::default()
    };
    let closed = app
        .patch_request("ana", set_status(1, RequestStatus::Closed), &["status"])
        .await
        .expect("close");
    assert_eq!(closed.version, 2);
    assert_eq!(closed.status, RequestStatus::Closed as i32);
    let close_time = closed.close_time.expect("close_time set when closed");
    assert!(nanos(&close_time) >= nanos(&created.create_time.expect("create_time")));
    assert_eq!(closed.title, "Broken", "a status change keeps the title");
    assert_eq!(app.get_request(&created.id).await.expect("get"), closed);

    let reopened = app
        .patch_request("ben", set_status(2, RequestStatus::Open), &["status"])
        .await
        .expect("reopen");
    assert_eq!(reopened.version, 3);
    assert_eq!(reopened.status, RequestStatus::Open as i32);
    assert_eq!(reopened.close_time, None, "reopening clears close_time");
    assert_eq!(app.get_request(&created.id).await.expect("get"), reopened);

    let closed = app
        .patch_request("ana", set_status(3, RequestStatus::Closed), &["status"])
        .await
        .expect("close again");
    assert!(closed.close_time.is_some());
    // A change that keeps it closed keeps close_time.
    let retitle = pb::Request {
        title: "Broken widget".to_owned(),
        ..set_status(4, RequestStatus::Unspecified)
    };
    let retitled = app
        .patch_request("ana", retitle, &["title"])
        .await
        .expect("retitle");
    assert_eq!(retitled.status, RequestStatus::Closed as i32);
    assert_eq!(retitled.close_time, closed.close_time);

    let pending = app
        .patch_request("ana", set_status(5, RequestStatus::Pending), &["status"])
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
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app.create_customer(customer("Ana", "Lopez")).await;
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

    let cancel = pb::Request {
        id: created.id.clone(),
        version: before.version,
        status: RequestStatus::Cancelled as i32,
        ..Default::default()
    };
    let cancelled = app
        .patch_request("ana", cancel, &["status"])
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
        let status = err(app.patch_request("ben", change, paths).await);
        assert_error(&status, Code::FailedPrecondition, "REQUEST_CANCELLED");
    }
    let status = err(app.add_comment("ben", &created.id, "too late").await);
    assert_error(&status, Code::FailedPrecondition, "REQUEST_CANCELLED");
    let call = pb::DeleteRequestRequest {
        id: created.id.clone(),
        version: cancelled.version,
    };
    let status = err(app.requests().delete_request(call).await);
    assert_error(&status, Code::FailedPrecondition, "REQUEST_CANCELLED");

    assert_eq!(app.get_request(&created.id).await.expect("get"), cancelled);
    assert_eq!(app.list_comments(&created.id).await.expect("list"), vec![]);
}

#[apply(backends)]
#[tokio::test]
async fn comments_carry_their_author_and_are_listed_oldest_first(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app.create_customer(customer("Ana", "Lopez")).await;
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
    let call = pb::ListCommentsRequest {
        request_id: created.id.clone(),
        page_size: 2,
        page_token: String::new(),
    };
    let first = ok(app.requests().list_comments(call).await);
    assert_eq!(first.comments, expected[..2]);
    assert!(!first.next_page_token.is_empty());
    let call = pb::ListCommentsRequest {
        request_id: created.id.clone(),
        page_size: 2,
        page_token: first.next_page_token,
    };
    let second = ok(app.requests().list_comments(call).await);
    assert_eq!(second.comments, expected[2..]);
    assert_eq!(second.next_page_token, "");

    // A comment is text like any other: at most 2,000 characters.
    let status = err(app.add_comment("ana", &created.id, &"x".repeat(2001)).await);
    assert_error(&status, Code::InvalidArgument, "FIELD_TOO_LONG");
    assert_eq!(app.list_comments(&created.id).await.expect("list").len(), 3);
}

#[apply(backends)]
#[tokio::test]
async fn list_requests_filters_by_customer_and_status_newest_first(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app.create_customer(customer("Ana", "Lopez")).await;
    let ben = app.create_customer(customer("Ben", "Smith")).await;
    let r1 = app.create_request(request(&ana.id, "one")).await;
    let r2 = app.create_request(request(&ana.id, "two")).await;
    let _other = app.create_request(request(&ben.id, "ben's")).await;
    let r3 = app.create_request(request(&ana.id, "three")).await;
    let close = pb::Request {
        id: r2.id.clone(),
        version: 1,
        status: RequestStatus::Closed as i32,
        ..Default::default()
    };
    let r2 = app
        .patch_request("ana", close, &["status"])
        .await
        .expect("close");

    let all = app.list_requests(&ana.id, RequestStatus::Unspecified).await;
    assert_eq!(all, vec![r3.clone(), r2.clone(), r1.clone()]);
    assert_eq!(
        app.list_requests(&ana.id, RequestStatus::Closed).await,
        vec![r2]
    );
    assert_eq!(
        app.list_requests(&ana.id, RequestStatus::Open).await,
        vec![r3, r1]
    );
    assert!(
        app.list_requests(&ana.id, RequestStatus::Pending)
            .await
            .is_empty()
    );
}

#[apply(backends)]
#[tokio::test]
async fn deleting_a_request_keeps_its_activities_unlinked(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app.create_customer(customer("Ana", "Lopez")).await;
    let created = app.create_request(request(&ana.id, "Broken")).await;
    app.add_comment("ana", &created.id, "note")
        .await
        .expect("comment");
    let linked = app
        .create_activity(pb::Activity {
            request_id: created.id.clone(),
            ..activity(&ana.id, "call about it")
        })
        .await;
    assert_eq!(linked.request_id, created.id);

    let call = pb::DeleteRequestRequest {
        id: created.id.clone(),
        version: 1,
    };
    ok(app.requests().delete_request(as_agent("ben", call)).await);

    let after = app.get_activity(&linked.id).await.expect("activity stays");
    let expected = pb::Activity {
        request_id: String::new(),
        version: 2,
        update_time: after.update_time,
        updated_by: "ben".to_owned(),
        ..linked.clone()
    };
    assert_eq!(after, expected);
    let page = app.list_activities(&ana.id, "", 0, "").await.expect("list");
    assert_eq!(page.activities, vec![after]);
    assert_error(
        &err(app.get_request(&created.id).await),
        Code::NotFound,
        "NOT_FOUND",
    );
}

#[apply(backends)]
#[tokio::test]
async fn stale_request_versions_are_aborted(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app.create_customer(customer("Ana", "Lopez")).await;
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
    let status = err(app
        .patch_request("ben", retitle(1, "Mine"), &["title"])
        .await);
    assert_version_mismatch(&status, 2, "ana");
    let status = err(app
        .patch_request("ben", retitle(0, "Mine"), &["title"])
        .await);
    assert_error(&status, Code::InvalidArgument, "MISSING_VERSION");
    let status = err(app
        .patch_request("ben", retitle(2, "Mine"), &["size"])
        .await);
    assert_error(&status, Code::InvalidArgument, "INVALID_UPDATE_MASK");
    let call = pb::DeleteRequestRequest {
        id: created.id.clone(),
        version: 1,
    };
    let status = err(app.requests().delete_request(call).await);
    assert_version_mismatch(&status, 2, "ana");
    assert_eq!(app.get_request(&created.id).await.expect("get"), updated);
}
