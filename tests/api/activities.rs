//! Activities: the round trip of every field, defaults, the link to a request, listing and deletion.

use customer_context::pb::{self, Channel, Direction, RequestStatus};
use tonic::Code;

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

#[apply(backends)]
#[tokio::test]
async fn activity_round_trips_every_field_through_create_get_update_delete(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let (ana, broken) = app.ana_with_a_broken_request().await;
    let invoice = app.create_request(request(&ana.id, "Invoice")).await;
    let occur_time = timestamp(1_700_000_000, 123_000_000);
    let follow_up_time = timestamp(1_700_086_400, 0);
    let input = pb::Activity {
        // Output-only fields: must be ignored on input.
        id: unknown_id(),
        version: 9,
        create_time: Some(timestamp(1_000, 0)),
        update_time: Some(timestamp(1_000, 0)),
        created_by: "mallory".to_owned(),
        updated_by: "mallory".to_owned(),
        // Mutable fields.
        customer_id: ana.id.clone(),
        request_id: broken.id.clone(),
        channel: Channel::Voice as i32,
        direction: Direction::Incoming as i32,
        internal: true,
        topic: "Broken widget".to_owned(),
        notes: "Customer is upset; offered a replacement.".to_owned(),
        tags: strings(&["escalated", " Priority "]),
        occur_time: Some(occur_time),
        follow_up_time: Some(follow_up_time),
        entered_by: "carla".to_owned(),
        contact_name: "Ana's assistant".to_owned(),
        contact_phone: "(415) 555-0100".to_owned(),
        contact_email: " Assistant@Example.COM ".to_owned(),
        sales_contact: "Dan Brown".to_owned(),
        salesperson: "Eve Adams".to_owned(),
        reference: "INC-4711".to_owned(),
    };
    let stored_input = pb::Activity {
        tags: strings(&["escalated", "Priority"]),
        contact_phone: "+14155550100".to_owned(),
        contact_email: "assistant@example.com".to_owned(),
        ..input.clone()
    };
    let created = create_and_check(&app, "ana", input, stored_input).await;

    let replacement = pb::Activity {
        id: created.id.clone(),
        version: 1,
        customer_id: ana.id.clone(),
        request_id: invoice.id.clone(),
        channel: Channel::Email as i32,
        direction: Direction::Outgoing as i32,
        internal: false,
        topic: "Invoice copy".to_owned(),
        notes: "Sent the invoice again.".to_owned(),
        tags: strings(&["billing"]),
        occur_time: Some(timestamp(1_700_000_500, 500_000_000)),
        follow_up_time: None,
        entered_by: "dora".to_owned(),
        contact_name: "Ana Lopez".to_owned(),
        contact_phone: "+44 20 7946 0958".to_owned(),
        contact_email: "ANA@example.com".to_owned(),
        sales_contact: String::new(),
        salesperson: "Frank".to_owned(),
        reference: "INV-1".to_owned(),
        ..Default::default()
    };
    let stored_replacement = pb::Activity {
        contact_phone: "+442079460958".to_owned(),
        contact_email: "ana@example.com".to_owned(),
        ..replacement.clone()
    };
    let updated = replace_and_check(&app, "ben", &created, replacement, stored_replacement).await;

    app.delete_activity("ben", &updated.id, 2)
        .await
        .expect("delete");
    assert_not_found(app.get_activity(&created.id).await);
    assert!(app.activities_of(&ana.id).await.is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn activity_defaults_occur_time_to_now_and_entered_by_to_the_agent(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = app.ana_lopez().await;
    let before = now();
    let created = app
        .create_as("ben", activity(&ana.id, "call"))
        .await
        .expect("create");
    let after = now();
    assert_eq!(created.entered_by, "ben");
    assert_eq!(created.created_by, "ben");
    let occur_time = created.occur_time.expect("occur_time defaulted");
    // Allow for a store that keeps milliseconds.
    assert!(
        nanos(&occur_time) >= nanos(&before) - 1_000_000,
        "{occur_time:?} before {before:?}"
    );
    assert!(
        nanos(&occur_time) <= nanos(&after),
        "{occur_time:?} after {after:?}"
    );
    assert_eq!(created.follow_up_time, None);
    assert_eq!(created.request_id, "");
}

#[apply(backends)]
#[tokio::test]
async fn activity_takes_its_customer_from_its_request(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let (ana, broken) = app.ana_with_a_broken_request().await;
    let created = app
        .create_activity(activity_on_request("", &broken.id, "call"))
        .await;
    assert_eq!(created.customer_id, ana.id);
    assert_eq!(created.request_id, broken.id);
    let page = app
        .list_activities("", &broken.id, 0, "")
        .await
        .expect("list");
    assert_eq!(page.activities, vec![created.clone()]);
    let page = app.list_activities(&ana.id, "", 0, "").await.expect("list");
    assert_eq!(page.activities, vec![created]);
}

#[apply(backends)]
#[tokio::test]
async fn activity_without_customer_or_request_is_allowed(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let created = app.create_activity(activity("", "walk-in")).await;
    assert_eq!(created.customer_id, "");
    assert_eq!(created.request_id, "");
    assert_eq!(app.get_activity(&created.id).await.expect("get"), created);
}

#[apply(backends)]
#[tokio::test]
async fn activity_linked_to_another_customers_request_is_refused(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = app.ana_lopez().await;
    let ben = app.create_customer(customer("Ben", "Smith")).await;
    let bens = app.create_request(request(&ben.id, "Invoice")).await;
    let linked_to_bens = activity_on_request(&ana.id, &bens.id, "call");
    let refused = app.create_as("ana", linked_to_bens).await;
    assert_fails(refused, Code::InvalidArgument, "CUSTOMER_MISMATCH");

    // Same rule on update.
    let anas = app.create_activity(activity(&ana.id, "call")).await;
    let relink = pb::Activity {
        id: anas.id.clone(),
        version: 1,
        request_id: bens.id.clone(),
        ..Default::default()
    };
    let refused = app.patch_activity("ana", relink, &["request_id"]).await;
    assert_fails(refused, Code::InvalidArgument, "CUSTOMER_MISMATCH");
    assert_eq!(app.get_activity(&anas.id).await.expect("get"), anas);
    let page = app
        .list_activities("", &bens.id, 0, "")
        .await
        .expect("list");
    assert!(page.activities.is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn activity_for_an_unknown_customer_or_request_is_not_found(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    for (customer_id, request_id) in [(unknown_id(), String::new()), (String::new(), unknown_id())]
    {
        let unknown_link = activity_on_request(&customer_id, &request_id, "call");
        assert_not_found(app.create_as("ana", unknown_link).await);
    }
}

#[apply(backends)]
#[tokio::test]
async fn activity_contact_fields_and_enums_are_validated(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = app.ana_lopez().await;
    let invalid = pb::Activity {
        contact_phone: "call me maybe".to_owned(),
        contact_email: "not-an-email".to_owned(),
        channel: 99,
        direction: 7,
        ..activity(&ana.id, "call")
    };
    assert_invalid(
        app.create_as("ana", invalid).await,
        &[
            ("activity.contact_phone", "INVALID_PHONE"),
            ("activity.contact_email", "INVALID_EMAIL"),
            ("activity.channel", "INVALID_ENUM_VALUE"),
            ("activity.direction", "INVALID_ENUM_VALUE"),
        ],
    );
    assert!(app.activities_of(&ana.id).await.is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn list_activities_needs_a_customer_or_a_request_and_is_newest_occur_time_first(
    backend: Backend,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let status = err(app.list_activities("", "", 0, "").await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let ana = app.ana_lopez().await;
    let ben = app.create_customer(customer("Ben", "Smith")).await;
    let broken = app.create_request(request(&ana.id, "Broken")).await;
    let at = |seconds: i64, topic: &str, request_id: &str| pb::Activity {
        occur_time: Some(timestamp(seconds, 0)),
        request_id: request_id.to_owned(),
        ..activity(&ana.id, topic)
    };
    // Created out of time order.
    let middle = app
        .create_activity(at(1_700_000_200, "middle", &broken.id))
        .await;
    let oldest = app.create_activity(at(1_700_000_100, "oldest", "")).await;
    let newest = app
        .create_activity(at(1_700_000_300, "newest", &broken.id))
        .await;
    let _bens = app.create_activity(activity(&ben.id, "ben's")).await;

    for (customer_id, request_id, expected) in [
        (
            ana.id.as_str(),
            "",
            vec![newest.clone(), middle.clone(), oldest],
        ),
        ("", broken.id.as_str(), vec![newest.clone(), middle.clone()]),
        (ana.id.as_str(), broken.id.as_str(), vec![newest, middle]),
    ] {
        let page = app
            .list_activities(customer_id, request_id, 0, "")
            .await
            .expect("list");
        assert_eq!(page.activities, expected, "{customer_id:?} {request_id:?}");
        assert_eq!(page.next_page_token, "");
    }
}

#[apply(backends)]
#[tokio::test]
async fn activities_can_be_deleted_whatever_their_state(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let (ana, broken) = app.ana_with_a_broken_request().await;
    let linked = app
        .create_activity(activity_on_request(&ana.id, &broken.id, "call"))
        .await;
    app.set_request_status("ana", &broken, RequestStatus::Cancelled)
        .await
        .expect("cancel");

    // Version rules still apply.
    let without_version = app.delete_activity("ana", &linked.id, 0).await;
    assert_fails(without_version, Code::InvalidArgument, "MISSING_VERSION");
    let stale = err(app.delete_activity("ana", &linked.id, 2).await);
    assert_version_mismatch(&stale, 1, SETUP_AGENT);

    app.delete_activity("ana", &linked.id, 1)
        .await
        .expect("delete");
    assert_not_found(app.get_activity(&linked.id).await);
}

#[apply(backends)]
#[tokio::test]
async fn activity_update_mask_changes_only_the_named_fields(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = app.ana_lopez().await;
    let created = app
        .create_activity(pb::Activity {
            notes: "first notes".to_owned(),
            tags: strings(&["a"]),
            ..activity(&ana.id, "call")
        })
        .await;
    let change = pb::Activity {
        id: created.id.clone(),
        version: 1,
        notes: "second notes".to_owned(),
        follow_up_time: Some(timestamp(1_800_000_000, 0)),
        topic: "IGNORED".to_owned(),
        ..Default::default()
    };
    let updated = app
        .patch_activity("ben", change, &["notes", "follow_up_time"])
        .await
        .expect("update");
    let expected = pb::Activity {
        version: 2,
        notes: "second notes".to_owned(),
        follow_up_time: Some(timestamp(1_800_000_000, 0)),
        update_time: updated.update_time,
        updated_by: "ben".to_owned(),
        ..created.clone()
    };
    assert_eq!(updated, expected);

    let unknown_field = pb::Activity {
        id: created.id.clone(),
        version: 2,
        ..Default::default()
    };
    let refused = app.patch_activity("ben", unknown_field, &["mood"]).await;
    assert_fails(refused, Code::InvalidArgument, "INVALID_UPDATE_MASK");
    assert_eq!(app.get_activity(&created.id).await.expect("get"), expected);
}
