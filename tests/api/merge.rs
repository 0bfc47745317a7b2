//! Two agents, different fields, both saved: a save based on an older version with `CONFLICT_POLICY_MERGE` is
//! applied on top of the current record when nobody else changed its fields, and names the fields and who
//! changed them when somebody did. The default still refuses any stale version.

use std::sync::Arc;

use customer_context::pb::{self, ConflictPolicy};
use rstest::rstest;
use rstest_reuse::apply;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use crate::harness::*;

/// An update of the `fields` of `change` with `policy`.
fn customer_update(
    change: pb::Customer,
    fields: &[&str],
    policy: ConflictPolicy,
) -> pb::UpdateCustomerRequest {
    pb::UpdateCustomerRequest {
        conflict_policy: policy as i32,
        ..update_customer_request(change, fields)
    }
}

/// An update of the `fields` of `request` with the merge policy.
fn merging_request(request: pb::Request, fields: &[&str]) -> pb::UpdateRequestRequest {
    pb::UpdateRequestRequest {
        request: Some(request),
        update_mask: mask(fields),
        conflict_policy: ConflictPolicy::Merge as i32,
    }
}

/// An update of the `fields` of `activity` with the merge policy.
fn merging_activity(activity: pb::Activity, fields: &[&str]) -> pb::UpdateActivityRequest {
    pb::UpdateActivityRequest {
        activity: Some(activity),
        update_mask: mask(fields),
        conflict_policy: ConflictPolicy::Merge as i32,
    }
}

/// `agent` saves `change` under `fields`, based on `version`, with `policy`.
async fn save(
    app: &TestApp,
    agent: &str,
    change: pb::Customer,
    fields: &[&str],
    policy: ConflictPolicy,
) -> Result<pb::Customer, Status> {
    let call = customer_update(change, fields, policy);
    app.update_customer_with(agent, call).await
}

/// `agent` saves the notes alone, typed on `version` of customer `id`, with `policy`.
async fn save_notes(
    app: &TestApp,
    agent: &str,
    (id, version): (&str, i64),
    notes: &str,
    policy: ConflictPolicy,
) -> Result<pb::Customer, Status> {
    save(
        app,
        agent,
        with_notes(customer_at(id, version), notes),
        &["notes"],
        policy,
    )
    .await
}

fn with_notes(base: pb::Customer, notes: &str) -> pb::Customer {
    pb::Customer {
        notes: notes.to_owned(),
        ..base
    }
}

/// Ben sets the company to "Acme", based on version 1 of customer `id`, with `policy`.
async fn ben_sets_the_company(app: &TestApp, id: &str, policy: ConflictPolicy) -> pb::Customer {
    let change = pb::Customer {
        company: "Acme".into(),
        ..customer_at(id, 1)
    };
    save(app, "ben", change, &["company"], policy)
        .await
        .expect("ben's save")
}

#[apply(backends)]
#[tokio::test]
async fn disjoint_fields_of_concurrent_saves_are_both_kept_in_every_order(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = customer_with_contacts("Ana", "Lopez", vec![phone("(415) 555-0100")]);
    let loaded = app.create_customer(ana).await;
    let merge = ConflictPolicy::Merge;

    // Ben fixes the phone number first; Ana's note, typed on version 1, is saved on top of it.
    let mut ben = customer_at(&loaded.id, 1);
    ben.contact_points = vec![phone("(415) 555-0199")];
    let after_ben = save(&app, "ben", ben, &["contact_points"], merge)
        .await
        .unwrap();
    assert_eq!(after_ben.version, 2);
    let merged = save_notes(&app, "ana", (&loaded.id, 1), "prefers email", merge)
        .await
        .expect("merged");
    assert_eq!(merged.version, 3);
    assert_eq!(merged.notes, "prefers email");
    assert_eq!(merged.contact_points[0].value, "+14155550199");
    assert_eq!(merged.updated_by, "ana");
    assert_eq!(app.get_customer(&loaded.id).await.unwrap(), merged);

    // The other order: Ana saves first, Ben's save on the version he loaded (3) follows.
    let after_ana = save_notes(&app, "ana", (&loaded.id, 3), "call after 5", merge)
        .await
        .unwrap();
    let mut ben = customer_at(&loaded.id, 3);
    ben.company = "Acme".into();
    let merged = save(&app, "ben", ben, &["company"], merge).await.unwrap();
    assert_eq!(
        (
            merged.version,
            merged.notes.as_str(),
            merged.company.as_str()
        ),
        (5, "call after 5", "Acme")
    );
    assert_eq!(after_ana.version, 4);

    // A whole-record save ("*") of what Ana loaded at version 5 keeps the fields others changed since, as she
    // did not change them.
    let loaded5 = merged.clone();
    let mut cy = customer_at(&loaded.id, 5);
    cy.first_name = "Anabel".into();
    save(&app, "cy", cy, &["first_name"], merge).await.unwrap();
    let whole = with_notes(loaded5, "whole record");
    let merged = save(&app, "ana", whole, &["*"], merge)
        .await
        .expect("merged");
    assert_eq!(merged.version, 7);
    assert_eq!(merged.first_name, "Anabel");
    assert_eq!(merged.notes, "whole record");

    // Both at the same moment, each on version 7: both land, in one order or the other.
    let mut dan = customer_at(&loaded.id, 7);
    dan.gender = "f".into();
    let mut eve = customer_at(&loaded.id, 7);
    eve.last_name = "García".into();
    let (a, b) = tokio::join!(
        save(&app, "dan", dan, &["gender"], merge),
        save(&app, "eve", eve, &["last_name"], merge)
    );
    let mut versions = [a.unwrap().version, b.unwrap().version];
    versions.sort_unstable();
    assert_eq!(versions, [8, 9]);
    let last = app.get_customer(&loaded.id).await.unwrap();
    assert_eq!(
        (last.gender.as_str(), last.last_name.as_str(), last.version),
        ("f", "García", 9)
    );
}

#[apply(backends)]
#[tokio::test]
async fn a_field_someone_else_changed_is_a_conflict_naming_it_and_who_and_nothing_is_written(
    backend: Backend,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let loaded = app.ana_lopez().await;
    let merge = ConflictPolicy::Merge;
    let mut ben = with_notes(customer_at(&loaded.id, 1), "from ben");
    ben.company = "Acme".into();
    save(&app, "ben", ben, &["company", "notes"], merge)
        .await
        .unwrap();

    let mut ana = with_notes(customer_at(&loaded.id, 1), "from ana");
    ana.gender = "f".into();
    let status = save(&app, "ana", ana, &["notes", "gender"], merge)
        .await
        .expect_err("a conflict");
    assert_error(&status, Code::Aborted, "EDIT_CONFLICT");
    let info = error_info(&status);
    assert_eq!(info.metadata["conflicting_fields"], "notes");
    assert_eq!(info.metadata["current_version"], "2");
    assert_eq!(info.metadata["updated_by"], "ben");
    assert_eq!(
        field_violations(&status),
        [("customer.notes".to_owned(), "EDIT_CONFLICT".to_owned())]
    );
    let details = status.get_error_details();
    let described = &details.bad_request().expect("BadRequest").field_violations[0].description;
    assert!(described.starts_with("changed by ben at 20"), "{described}");
    assert!(described.ends_with("(version 2)"), "{described}");
    assert_message_contains(&status, "notes (by ben)");
    let unchanged = app.get_customer(&loaded.id).await.unwrap();
    assert_eq!(
        (
            unchanged.version,
            unchanged.notes.as_str(),
            unchanged.gender.as_str()
        ),
        (2, "from ben", "")
    );

    // Sending the value it now has is no conflict.
    let same = save_notes(&app, "ana", (&loaded.id, 1), "from ben", merge)
        .await
        .expect("nothing to merge");
    assert_eq!(same.version, 2);
}

#[apply(backends)]
#[tokio::test]
async fn tags_contact_points_and_attributes_merge_per_element(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let mut start = customer_with_contacts("Ana", "Lopez", vec![phone("(415) 555-0100")]);
    start.tags = strings(&["new", "vip"]);
    start.attributes = [("tier".to_owned(), "gold".to_owned())].into();
    let loaded = app.create_customer(start).await;
    let merge = ConflictPolicy::Merge;
    let collections = ["tags", "contact_points", "attributes"];

    let mut ben = loaded.clone();
    ben.tags = strings(&["new", "vip", "billing"]);
    ben.contact_points.push(email("ana@example.com"));
    ben.attributes.insert("region".into(), "west".into());
    save(&app, "ben", ben, &collections, merge).await.unwrap();

    // Ana, on version 1: removes "new", adds "Priority" and "BILLING" (Ben's, in other case), adds a phone,
    // changes the tier.
    let mut ana = loaded.clone();
    ana.tags = strings(&["vip", "Priority", "BILLING"]);
    ana.contact_points.push(phone("+44 20 7946 0958"));
    ana.attributes.insert("tier".into(), "platinum".into());
    let merged = save(&app, "ana", ana, &collections, merge)
        .await
        .expect("merged");
    assert_eq!(merged.version, 3);
    assert_eq!(merged.tags, strings(&["vip", "billing", "Priority"]));
    let values: Vec<&str> = merged
        .contact_points
        .iter()
        .map(|p| p.value.as_str())
        .collect();
    assert_eq!(values, ["+14155550100", "ana@example.com", "+442079460958"]);
    assert_eq!(merged.attributes["tier"], "platinum");
    assert_eq!(merged.attributes["region"], "west");

    // The same attribute changed by both: a conflict naming the key.
    let mut cy = customer_at(&loaded.id, 3);
    cy.attributes = merged.attributes.clone();
    cy.attributes.insert("region".into(), "east".into());
    save(&app, "cy", cy, &["attributes"], merge).await.unwrap();
    let mut dan = merged.clone();
    dan.attributes.insert("region".into(), "north".into());
    let status = save(&app, "dan", dan, &["attributes"], merge)
        .await
        .expect_err("a conflict");
    assert_error(&status, Code::Aborted, "EDIT_CONFLICT");
    assert_eq!(
        error_info(&status).metadata["conflicting_fields"],
        r#"attributes["region"]"#
    );
    assert_eq!(
        field_violations(&status)[0].0,
        r#"customer.attributes["region"]"#
    );
}

#[apply(backends)]
#[tokio::test]
async fn a_merge_that_breaks_a_rule_is_refused_like_any_invalid_write(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let merge = ConflictPolicy::Merge;
    let mut start = customer("Ana", "Lopez");
    start.tags = (0..99).map(|i| format!("t{i}")).collect();
    let loaded = app.create_customer(start).await;
    let mut ben = loaded.clone();
    ben.tags.push("ben".into());
    save(&app, "ben", ben, &["tags"], merge).await.unwrap();
    let mut ana = loaded.clone();
    ana.tags.push("ana".into());
    let status = save(&app, "ana", ana, &["tags"], merge)
        .await
        .expect_err("101 tags");
    assert_error(&status, Code::InvalidArgument, "TOO_MANY_TAGS");
    assert_eq!(field_violations(&status)[0].0, "customer.tags");
    assert_eq!(app.get_customer(&loaded.id).await.unwrap().version, 2);

    // A customer number another customer holds.
    let mut other = customer("Cy", "Diaz");
    other.customer_number = "C-100".into();
    app.create_customer(other).await;
    save_notes(&app, "ben", (&loaded.id, 2), "x", merge)
        .await
        .unwrap();
    let mut ana = customer_at(&loaded.id, 2);
    ana.customer_number = "C-100".into();
    let status = save(&app, "ana", ana, &["customer_number"], merge)
        .await
        .expect_err("taken");
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
}

#[apply(backends)]
#[tokio::test]
async fn without_the_merge_policy_any_stale_version_is_refused_as_before(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let loaded = app.ana_lopez().await;
    ben_sets_the_company(&app, &loaded.id, ConflictPolicy::Unspecified).await;
    for policy in [ConflictPolicy::Unspecified, ConflictPolicy::Refuse] {
        let status = save_notes(&app, "ana", (&loaded.id, 1), "x", policy)
            .await
            .expect_err("stale");
        assert_version_mismatch(&status, 2, "ben");
    }
    // A version ahead of the record's is refused also with the merge policy.
    let ahead = save_notes(&app, "ana", (&loaded.id, 9), "x", ConflictPolicy::Merge).await;
    assert_fails(ahead, Code::Aborted, "VERSION_MISMATCH");
    // An unknown policy is refused.
    let call = pb::UpdateCustomerRequest {
        conflict_policy: 7,
        ..update_customer_request(with_notes(customer_at(&loaded.id, 2), "x"), &["notes"])
    };
    let status = app
        .update_customer_with("ana", call)
        .await
        .expect_err("unknown policy");
    assert_violations(&status, &[("conflict_policy", "INVALID_ENUM_VALUE")]);
}

/// Sixteen agents, each adding an attribute of its own, all based on version 1, all at once.
#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_merging_writers_all_land(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let loaded = app.ana_lopez().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut writers = Vec::new();
    for i in 0..16 {
        let mut client = app.customers();
        let barrier = barrier.clone();
        let mut change = customer_at(&loaded.id, 1);
        change.attributes = [(format!("k{i}"), format!("v{i}"))].into();
        let call = customer_update(change, &["attributes"], ConflictPolicy::Merge);
        writers.push(tokio::spawn(async move {
            barrier.wait().await;
            client
                .update_customer(as_agent(&format!("agent-{i}"), call))
                .await
        }));
    }
    for writer in writers {
        within("a merging writer", writer)
            .await
            .unwrap()
            .expect("merged");
    }
    let last = app.get_customer(&loaded.id).await.unwrap();
    assert_eq!(last.version, 17);
    assert_eq!(last.attributes.len(), 16);
    for i in 0..16 {
        assert_eq!(last.attributes[&format!("k{i}")], format!("v{i}"));
    }
}

/// Requests and activities merge the same way.
#[apply(backends)]
#[tokio::test]
async fn requests_and_activities_merge_too(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let c = app.ana_lopez().await;
    let r = app.create_request(request(&c.id, "Billing")).await;
    let mut requests = app.requests();
    let ben = pb::Request {
        description: "by ben".into(),
        ..r.clone()
    };
    let call = merging_request(ben, &["description"]);
    requests
        .update_request(as_agent("ben", call))
        .await
        .unwrap();
    let ana = pb::Request {
        title: "Billing, twice".into(),
        ..r.clone()
    };
    let call = merging_request(ana, &["title"]);
    let merged = ok(requests.update_request(as_agent("ana", call)).await);
    assert_eq!(
        (
            merged.version,
            merged.title.as_str(),
            merged.description.as_str()
        ),
        (3, "Billing, twice", "by ben")
    );

    let a = app.create_activity(activity(&c.id, "call")).await;
    let mut activities = app.activities();
    let mut ben = a.clone();
    ben.tags = strings(&["callback"]);
    let call = merging_activity(ben, &["tags"]);
    activities
        .update_activity(as_agent("ben", call))
        .await
        .unwrap();
    let mut ana = a.clone();
    ana.tags = strings(&["refund"]);
    ana.notes = "refunded".into();
    let call = merging_activity(ana, &["tags", "notes"]);
    let merged = ok(activities.update_activity(as_agent("ana", call)).await);
    assert_eq!(merged.tags, strings(&["callback", "refund"]));
    assert_eq!(merged.notes, "refunded");
    assert_eq!(merged.version, 3);
}

/// A watcher hears of a merged save once, as an ordinary change naming only the caller's fields.
#[apply(backends)]
#[tokio::test]
async fn a_watcher_sees_a_merged_save_once_with_only_the_callers_fields(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let loaded = app.ana_lopez().await;
    let mut watcher = watch_customer(&app, "cy", &loaded.id, 1).await;

    ben_sets_the_company(&app, &loaded.id, ConflictPolicy::Merge).await;
    let ana = with_notes(loaded.clone(), "merged");
    save(&app, "ana", ana, &["*"], ConflictPolicy::Merge)
        .await
        .expect("merged");

    let (_, first) = watcher.next_change().await;
    assert_eq!(
        (first.changed_by.as_str(), first.changed_fields.clone()),
        ("ben", strings(&["company"]))
    );
    let (_, second) = watcher.next_change().await;
    assert_eq!(second.changed_by, "ana");
    assert_eq!(second.changed_fields, strings(&["notes"]));
    assert_eq!(second.resource.unwrap().known_version, 3);
    // Nothing more: the next change heard is the next save.
    save_notes(
        &app,
        "ben",
        (&loaded.id, 3),
        "again",
        ConflictPolicy::Refuse,
    )
    .await
    .unwrap();
    let (_, third) = watcher.next_change().await;
    assert_eq!(third.resource.unwrap().known_version, 4);
}
