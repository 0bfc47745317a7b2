//! Duplicate matching, merge, unmerge and locks, as an agent (and a watching colleague) sees them.

use std::collections::{BTreeMap, BTreeSet};

use customer_context::pb::{self, ContactKind, MatchReasonKind, lookup_customers_request::Key};
use tonic::{Code, Response, Status};

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

async fn find_matching(
    app: &TestApp,
    customer_id: &str,
    page_size: i32,
) -> Result<Vec<pb::CustomerMatch>, Status> {
    let request = pb::FindMatchingCustomersRequest {
        customer_id: customer_id.to_owned(),
        page_size,
    };
    app.customers()
        .find_matching_customers(request)
        .await
        .map(|r| r.into_inner().matches)
}

async fn merge(
    app: &TestApp,
    agent: &str,
    target: &pb::Customer,
    sources: &[&pb::Customer],
) -> Result<pb::Customer, Status> {
    merge_ids(
        app,
        agent,
        &target.id,
        target.version,
        sources.iter().map(|s| s.id.clone()).collect(),
    )
    .await
}

async fn merge_ids(
    app: &TestApp,
    agent: &str,
    target_id: &str,
    target_version: i64,
    source_ids: Vec<String>,
) -> Result<pb::Customer, Status> {
    let request = pb::MergeCustomersRequest {
        target_id: target_id.to_owned(),
        target_version,
        source_ids,
    };
    app.customers()
        .merge_customers(as_agent(agent, request))
        .await
        .map(Response::into_inner)
}

async fn unmerge(
    app: &TestApp,
    target_id: &str,
    source_id: &str,
) -> Result<pb::UnmergeCustomerResponse, Status> {
    let request = pb::UnmergeCustomerRequest {
        target_id: target_id.to_owned(),
        source_id: source_id.to_owned(),
    };
    app.customers()
        .unmerge_customer(as_agent("ben", request))
        .await
        .map(Response::into_inner)
}

async fn unlock(app: &TestApp, id: &str) -> pb::Customer {
    let request = pb::UnlockCustomerRequest { id: id.to_owned() };
    ok(app.customers().unlock_customer(app.setup(request)).await)
}

/// The ids of the customers reachable at phone `number`.
async fn lookup_phone(app: &TestApp, number: &str) -> Vec<String> {
    let found = app.lookup_customers(Key::Phone(number.to_owned())).await;
    found.expect("lookup").into_iter().map(|c| c.id).collect()
}

fn handle(value: &str) -> pb::ContactPoint {
    contact(ContactKind::Chat, "chat", value)
}

/// NOT_FOUND with ErrorInfo CUSTOMER_MERGED naming the customer it lives on in.
#[track_caller]
fn assert_merged(status: &Status, id: &str, into: &str) {
    assert_error(status, Code::NotFound, "CUSTOMER_MERGED");
    let info = error_info(status);
    assert_eq!(info.metadata.get("id").map(String::as_str), Some(id));
    assert_eq!(
        info.metadata.get("merged_into").map(String::as_str),
        Some(into),
        "{status:?}"
    );
}

/// FAILED_PRECONDITION with ErrorInfo CUSTOMER_LOCKED, naming the locked customer `id`.
#[track_caller]
fn assert_locked(status: &Status, id: &str) {
    assert_error(status, Code::FailedPrecondition, "CUSTOMER_LOCKED");
    assert_message_contains(status, id);
}

/// The merge target of most tests: Carla Diaz, a VIP, at +1 415 555 0100.
fn vip_carla() -> pb::Customer {
    pb::Customer {
        tags: strings(&["VIP"]),
        ..customer_with_contacts("Carla", "Diaz", vec![phone("+14155550100")])
    }
}

fn values(c: &pb::Customer) -> BTreeSet<String> {
    c.contact_points.iter().map(|p| p.value.clone()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A match reason as `(kind, detail)`.
fn reason(kind: MatchReasonKind, detail: &str) -> (i32, String) {
    (kind as i32, detail.to_owned())
}

/// A request of the customer titled `title`, and an activity about it with `topic`.
async fn request_and_its_activity(
    app: &TestApp,
    customer_id: &str,
    title: &str,
    topic: &str,
) -> (pb::Request, pb::Activity) {
    let opened = app.create_request(request(customer_id, title)).await;
    let logged = app
        .create_activity(activity_on_request(customer_id, &opened.id, topic))
        .await;
    (opened, logged)
}

/// The ids of every request of the customer.
async fn request_ids(app: &TestApp, customer_id: &str) -> BTreeSet<String> {
    let requests = app.requests_of(customer_id).await;
    requests.into_iter().map(|r| r.id).collect()
}

/// The ids of every activity of the customer, page by page.
async fn activity_ids(app: &TestApp, customer_id: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .list_activities(customer_id, "", 500, &page_token)
            .await
            .expect("list");
        ids.extend(page.activities.into_iter().map(|a| a.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

#[apply(backends)]
#[tokio::test]
async fn matching_finds_shared_contact_points_and_similar_names_with_reasons(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let [
        carla,
        same_phone,
        same_email,
        similar,
        reversed_and_phone,
        unrelated,
        _,
    ] = app
        .create_customers([
            customer_with_contacts(
                "Carla",
                "Diaz",
                vec![phone("+1 415 555 0100"), email("carla@example.com")],
            ),
            customer_with_contacts("C.", "Ortega", vec![phone("(415) 555-0100")]),
            customer_with_contacts("", "", vec![email("CARLA@example.com")]),
            customer("Karla", "Díaz"),
            customer_with_contacts("Diaz", "Carla", vec![phone("+14155550100")]),
            customer_with_contacts("Maria", "Lopez", vec![phone("+14155550199")]),
            customer("Diana", "Dominguez"),
        ])
        .await;

    let matches = find_matching(&app, &carla.id, 0).await.unwrap();
    let by_id: BTreeMap<String, &pb::CustomerMatch> = matches
        .iter()
        .map(|m| (m.customer.as_ref().unwrap().id.clone(), m))
        .collect();
    assert_eq!(
        by_id.keys().cloned().collect::<BTreeSet<_>>(),
        set(&[
            &same_phone.id,
            &same_email.id,
            &similar.id,
            &reversed_and_phone.id
        ]),
        "{matches:#?}"
    );
    assert!(!by_id.contains_key(&carla.id) && !by_id.contains_key(&unrelated.id));
    let reasons = |id: &str| -> Vec<(i32, String)> {
        by_id[id]
            .reasons
            .iter()
            .map(|r| (r.kind, r.detail.clone()))
            .collect()
    };
    let shared_phone = reason(MatchReasonKind::SharedPhone, "+14155550100");
    for (matched, expected) in [
        (&same_phone, vec![shared_phone.clone()]),
        (
            &same_email,
            vec![reason(MatchReasonKind::SharedEmail, "carla@example.com")],
        ),
        (
            &similar,
            vec![reason(MatchReasonKind::SimilarName, "Karla Díaz")],
        ),
        (
            &reversed_and_phone,
            vec![
                shared_phone,
                reason(MatchReasonKind::SimilarName, "Diaz Carla"),
            ],
        ),
    ] {
        assert_eq!(reasons(&matched.id), expected, "{matched:?}");
    }
    // Strongest first: phone and name, then a shared contact point, then a name alone.
    let order: Vec<&str> = matches
        .iter()
        .map(|m| m.customer.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(order[0], reversed_and_phone.id);
    assert_eq!(order[3], similar.id);
    assert!(
        matches
            .windows(2)
            .all(|w| w[0].score >= w[1].score && w[1].score > 0.0 && w[0].score <= 1.0)
    );

    assert_eq!(find_matching(&app, &carla.id, 1).await.unwrap().len(), 1);
    let negative = find_matching(&app, &carla.id, -1).await.unwrap_err();
    assert_violations(&negative, &[("page_size", "INVALID_PAGE_SIZE")]);
    assert_not_found(find_matching(&app, &unknown_id(), 0).await);
}

#[apply(backends)]
#[tokio::test]
async fn merging_three_customers_moves_everything_and_watchers_see_it(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let [target, first, second] = app
        .create_customers([
            pb::Customer {
                attributes: [("plan".to_owned(), "gold".to_owned())].into(),
                notes: "prefers email".into(),
                ..vip_carla()
            },
            pb::Customer {
                tags: strings(&[" vip ", "billing"]),
                attributes: [
                    ("plan".to_owned(), "silver".to_owned()),
                    ("region".to_owned(), "west".to_owned()),
                ]
                .into(),
                customer_number: "C-17".into(),
                notes: "old notes".into(),
                credit_hold: true,
                ..customer_with_contacts(
                    "Carla",
                    "Díaz",
                    vec![phone("+14155550101"), email("carla@example.com")],
                )
            },
            pb::Customer {
                company: "Diaz Imports".into(),
                ..customer_with_contacts(
                    "Karla",
                    "Diaz",
                    vec![email("karla@example.org"), handle("@karla")],
                )
            },
        ])
        .await;
    let (first_request, first_activity) =
        request_and_its_activity(&app, &first.id, "Refund", "Called about the refund").await;
    let second_activity = app.create_activity(activity(&second.id, "Chat")).await;
    app.add_comment("setup", &first_request.id, "refund approved")
        .await
        .unwrap();

    let mut ana = watch_customer(&app, "ana", &first.id, first.version).await;
    let mut cy = watch_customer(&app, "cy", &target.id, target.version).await;

    let merged = merge(&app, "ben", &target, &[&first, &second])
        .await
        .unwrap();
    assert_eq!(merged.id, target.id);
    assert_eq!(merged.version, target.version + 1);
    assert_eq!(merged.updated_by, "ben");
    assert_eq!(
        values(&merged),
        set(&[
            "+14155550100",
            "+14155550101",
            "carla@example.com",
            "karla@example.org",
            "@karla"
        ])
    );
    assert_eq!(merged.tags, ["VIP", "billing"]);
    assert_eq!(
        merged.attributes,
        [
            ("plan".to_owned(), "gold".to_owned()),
            ("region".to_owned(), "west".to_owned())
        ]
        .into()
    );
    // The target's values win where set; empty ones are filled from the sources.
    assert_eq!(
        (
            merged.first_name.as_str(),
            merged.notes.as_str(),
            merged.customer_number.as_str(),
            merged.company.as_str(),
            merged.credit_hold
        ),
        ("Carla", "prefers email", "C-17", "Diaz Imports", true)
    );
    assert_eq!(app.get_customer(&target.id).await.unwrap(), merged);

    // The sources are tombstones naming the target; writes naming them are refused the same way.
    for source in [&first, &second] {
        let status = app.get_customer(&source.id).await.unwrap_err();
        assert_merged(&status, &source.id, &target.id);
        let status = app
            .update_customer("ben", pb::Customer { ..source.clone() })
            .await
            .unwrap_err();
        assert_merged(&status, &source.id, &target.id);
    }
    let status = err(app
        .create_request_as("ben", request(&first.id, "Another"))
        .await);
    assert_merged(&status, &first.id, &target.id);
    let status = err(app
        .create_activity_as("ben", activity(&second.id, "Another"))
        .await);
    assert_merged(&status, &second.id, &target.id);

    // Records, comments and lookups now lead to the target.
    assert_eq!(
        request_ids(&app, &target.id).await,
        set(&[&first_request.id])
    );
    let moved = app.get_request(&first_request.id).await.unwrap();
    assert_eq!(
        (moved.customer_id.as_str(), moved.version),
        (target.id.as_str(), first_request.version + 1)
    );
    assert_eq!(app.list_comments(&first_request.id).await.unwrap().len(), 1);
    assert_eq!(
        activity_ids(&app, &target.id).await,
        set(&[&first_activity.id, &second_activity.id])
    );
    assert_eq!(
        lookup_phone(&app, "+1 415 555 0101").await,
        [target.id.as_str()]
    );
    let found = app
        .lookup_customers(Key::CustomerNumber("C-17".into()))
        .await
        .expect("lookup");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, target.id);
    let searched = app.search_customers("karla").await;
    assert!(searched.iter().all(|c| c.id != second.id), "{searched:?}");

    // The source's watcher learns where it went.
    let (_, changed) = ana.next_change().await;
    assert_eq!(changed.kind, pb::ChangeKind::Merged as i32);
    assert_eq!(changed.resource.as_ref().unwrap().id, first.id);
    assert_eq!(changed.changed_by, "ben");
    assert_eq!(changed.merged_into.as_ref().unwrap().id, target.id);

    // The target's watcher sees the moved records, both sources merging in, and the target's own change.
    let mut seen: Vec<(i32, String, String)> = Vec::new();
    while !seen
        .iter()
        .any(|(kind, id, _)| *kind == pb::ChangeKind::Updated as i32 && *id == target.id)
    {
        let (_, changed) = cy.next_change().await;
        let resource = changed.resource.unwrap();
        assert_eq!(changed.changed_by, "ben");
        seen.push((
            changed.kind,
            resource.id,
            changed.merged_into.map(|m| m.id).unwrap_or_default(),
        ));
    }
    let updated = pb::ChangeKind::Updated as i32;
    let merged_kind = pb::ChangeKind::Merged as i32;
    for expected in [
        (updated, first_request.id.clone(), String::new()),
        (updated, first_activity.id.clone(), String::new()),
        (updated, second_activity.id.clone(), String::new()),
        (merged_kind, first.id.clone(), target.id.clone()),
        (merged_kind, second.id.clone(), target.id.clone()),
    ] {
        assert!(seen.contains(&expected), "{expected:?} not in {seen:?}");
    }

    // Merging the target on into another customer: the first tombstone names the final customer.
    let last = app.create_customer(customer("Carla", "D.")).await;
    merge(&app, "ben", &last, &[&merged]).await.unwrap();
    let status = app.get_customer(&first.id).await.unwrap_err();
    assert_merged(&status, &first.id, &last.id);
}

#[apply(backends)]
#[tokio::test]
async fn unmerging_restores_the_source_and_leaves_later_records_with_the_target(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let [target, source, other] = app
        .create_customers([
            vip_carla(),
            pb::Customer {
                tags: strings(&["billing"]),
                attributes: [("region".to_owned(), "west".to_owned())].into(),
                customer_number: "C-9".into(),
                ..customer_with_contacts(
                    "Karla",
                    "Diaz",
                    vec![phone("+14155550101"), email("c@example.com")],
                )
            },
            customer_with_contacts("Carl", "Diaz", vec![phone("+14155550102")]),
        ])
        .await;
    let (old_request, old_activity) =
        request_and_its_activity(&app, &source.id, "Refund", "Refund call").await;
    let loose_activity = app.create_activity(activity(&source.id, "Hello")).await;
    let merged = merge(&app, "ben", &target, &[&source, &other])
        .await
        .unwrap();
    let later_request = app.create_request(request(&target.id, "New order")).await;
    let later_activity = app
        .create_activity(activity(&target.id, "Order call"))
        .await;

    let mut cy = watch_customer(&app, "cy", &target.id, merged.version).await;

    let restored = unmerge(&app, &target.id, &source.id).await.unwrap();
    let (back, target_now) = (restored.source.unwrap(), restored.target.unwrap());
    assert_eq!(back.id, source.id);
    assert_eq!(back.version, source.version + 2);
    assert_eq!(values(&back), values(&source));
    assert_eq!(
        (
            back.first_name.as_str(),
            back.customer_number.as_str(),
            back.tags.clone(),
            back.attributes.clone()
        ),
        (
            "Karla",
            "C-9",
            source.tags.clone(),
            source.attributes.clone()
        )
    );
    assert_eq!(back.create_time, source.create_time);
    assert_eq!(app.get_customer(&source.id).await.unwrap(), back);

    // The target keeps what it had and what the other source brought, and gives back the rest.
    assert_eq!(target_now.version, merged.version + 1);
    assert_eq!(values(&target_now), set(&["+14155550100", "+14155550102"]));
    assert_eq!(target_now.tags, ["VIP"]);
    assert!(target_now.attributes.is_empty());
    assert!(target_now.customer_number.is_empty());
    assert_eq!(app.get_customer(&target.id).await.unwrap(), target_now);

    // The source's records come back; those created on the target after the merge stay.
    for (owner, requests, activities, phone) in [
        (
            &source,
            set(&[&old_request.id]),
            set(&[&old_activity.id, &loose_activity.id]),
            "+14155550101",
        ),
        (
            &target,
            set(&[&later_request.id]),
            set(&[&later_activity.id]),
            "+14155550102",
        ),
    ] {
        assert_eq!(request_ids(&app, &owner.id).await, requests);
        assert_eq!(activity_ids(&app, &owner.id).await, activities);
        assert_eq!(lookup_phone(&app, phone).await, [owner.id.as_str()]);
    }
    let status = app.get_customer(&other.id).await.unwrap_err();
    assert_merged(&status, &other.id, &target.id);

    // The target's watcher learns the source split off.
    let mut kinds = BTreeSet::new();
    while !kinds.contains(&(pb::ChangeKind::Restored as i32, source.id.clone())) {
        let (_, changed) = cy.next_change().await;
        kinds.insert((changed.kind, changed.resource.unwrap().id));
    }
    assert!(kinds.contains(&(pb::ChangeKind::Updated as i32, target.id.clone())));

    // Only a merged source can be restored, and only from its target.
    let again = unmerge(&app, &target.id, &source.id).await.unwrap_err();
    assert_error(&again, Code::FailedPrecondition, "NOT_MERGED_INTO_TARGET");
    let wrong = unmerge(&app, &source.id, &other.id).await.unwrap_err();
    assert_error(&wrong, Code::FailedPrecondition, "NOT_MERGED_INTO_TARGET");
    assert_not_found(unmerge(&app, &target.id, &unknown_id()).await);
    let invalid = unmerge(&app, "x", &target.id).await.unwrap_err();
    assert_violations(&invalid, &[("target_id", "INVALID_ID")]);
}

#[apply(backends)]
#[tokio::test]
async fn a_locked_customer_is_never_merged_and_nothing_changes(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let [target, source] = app
        .create_customers([
            customer_with_contacts("Carla", "Diaz", vec![phone("+14155550100")]),
            customer_with_contacts("Karla", "Diaz", vec![phone("+14155550101")]),
        ])
        .await;
    let source_request = app.create_request(request(&source.id, "Refund")).await;

    let locked_source = app.lock_customer(&source.id).await;
    let refused = merge(&app, "ben", &target, &[&source]).await.unwrap_err();
    assert_locked(&refused, &source.id);
    unlock(&app, &source.id).await;

    let target = app.lock_customer(&target.id).await;
    let refused = merge(&app, "ben", &target, &[&source]).await.unwrap_err();
    assert_locked(&refused, &target.id);

    // Nothing moved.
    assert_eq!(app.get_customer(&target.id).await.unwrap(), target);
    let source_now = app.get_customer(&source.id).await.unwrap();
    assert_eq!(source_now.version, locked_source.version + 1);
    assert_eq!(values(&source_now), set(&["+14155550101"]));
    assert_eq!(
        app.get_request(&source_request.id).await.unwrap(),
        source_request
    );
    assert_eq!(
        lookup_phone(&app, "+14155550101").await,
        [source.id.as_str()]
    );
}

#[apply(backends)]
#[tokio::test]
async fn a_locked_customer_refuses_edits_and_deletion_but_records_activities(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let carla = app.create_customer(customer("Carla", "Diaz")).await;
    let mut ana = watch_customer(&app, "ana", &carla.id, carla.version).await;

    let locked = app.lock_customer(&carla.id).await;
    assert!(locked.locked);
    assert_eq!(locked.version, carla.version + 1);
    let (_, changed) = ana.next_change().await;
    assert_eq!(
        (changed.kind, changed.changed_fields),
        (pb::ChangeKind::Updated as i32, strings(&["locked"]))
    );
    // Locking again changes nothing.
    assert_eq!(app.lock_customer(&carla.id).await, locked);

    let with_new_notes = |current: &pb::Customer| pb::Customer {
        notes: "new".into(),
        ..current.clone()
    };
    let edit = app.update_customer("ben", with_new_notes(&locked)).await;
    assert_fails(edit, Code::FailedPrecondition, "CUSTOMER_LOCKED");
    let delete = app.delete_customer("ben", &carla.id, locked.version).await;
    assert_fails(delete, Code::FailedPrecondition, "CUSTOMER_LOCKED");
    let logged = app.create_activity(activity(&carla.id, "Call")).await;
    assert_eq!(logged.customer_id, carla.id);
    let opened = app.create_request(request(&carla.id, "Refund")).await;
    assert_eq!(opened.customer_id, carla.id);
    assert_eq!(app.get_customer(&carla.id).await.unwrap(), locked);

    let unlocked = unlock(&app, &carla.id).await;
    assert!(!unlocked.locked);
    assert_eq!(unlocked.version, locked.version + 1);
    assert_eq!(unlock(&app, &carla.id).await, unlocked);
    let edited = app
        .update_customer("ben", with_new_notes(&unlocked))
        .await
        .unwrap();
    assert_eq!(edited.notes, "new");
    app.delete_customer("ben", &carla.id, edited.version)
        .await
        .expect("delete");

    let gone = app
        .customers()
        .lock_customer(pb::LockCustomerRequest { id: carla.id })
        .await;
    assert_not_found(gone);
    let invalid = app
        .customers()
        .unlock_customer(pb::UnlockCustomerRequest { id: "42".into() })
        .await;
    assert_invalid(invalid, &[("id", "INVALID_ID")]);
}

#[apply(backends)]
#[tokio::test]
async fn a_merge_from_a_stale_version_or_with_bad_input_is_refused(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let [target, source] = app
        .create_customers([customer("Carla", "Diaz"), customer("Karla", "Diaz")])
        .await;
    let change = pb::Customer {
        notes: "changed".into(),
        ..target.clone()
    };
    let edited = app.update_customer("dee", change).await.unwrap();

    let stale = merge(&app, "ben", &target, &[&source]).await.unwrap_err();
    assert_version_mismatch(&stale, edited.version, "dee");
    assert_eq!(app.get_customer(&source.id).await.unwrap(), source);

    let merge_into_target =
        |version, source_ids| merge_ids(&app, "ben", &target.id, version, source_ids);
    let invalid = merge_into_target(
        0,
        vec![
            source.id.clone(),
            "not-an-id".into(),
            source.id.clone(),
            target.id.clone(),
            String::new(),
        ],
    )
    .await;
    assert_invalid(
        invalid,
        &[
            ("target_version", "MISSING_VERSION"),
            ("source_ids[1]", "INVALID_ID"),
            ("source_ids[2]", "DUPLICATE_SOURCE"),
            ("source_ids[3]", "SOURCE_IS_TARGET"),
            ("source_ids[4]", "REQUIRED_FIELD"),
        ],
    );
    let empty = merge_ids(&app, "ben", "", 1, Vec::new()).await;
    assert_invalid(
        empty,
        &[
            ("target_id", "REQUIRED_FIELD"),
            ("source_ids", "REQUIRED_FIELD"),
        ],
    );
    let many = merge_into_target(edited.version, (0..21).map(|_| unknown_id()).collect()).await;
    assert_invalid(many, &[("source_ids", "TOO_MANY_SOURCES")]);

    let missing_source = unknown_id();
    let missing = err(merge_into_target(edited.version, vec![missing_source.clone()]).await);
    assert_error(&missing, Code::NotFound, "NOT_FOUND");
    assert_eq!(
        error_info(&missing).metadata.get("id"),
        Some(&missing_source)
    );
    assert_eq!(app.get_customer(&target.id).await.unwrap(), edited);
}

#[apply(backends)]
#[tokio::test]
async fn deleting_the_target_deletes_the_tombstones_of_its_sources(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let [target, source] = app
        .create_customers([
            customer("Carla", "Diaz"),
            numbered_customer("C-5", "Karla", "Diaz"),
        ])
        .await;
    let merged = merge(&app, "ben", &target, &[&source]).await.unwrap();
    app.delete_customer("ben", &target.id, merged.version)
        .await
        .expect("delete");
    assert_not_found(app.get_customer(&source.id).await);
    assert_not_found(unmerge(&app, &target.id, &source.id).await);
    // The customer number is free again.
    let reused = app
        .create_customer(numbered_customer("C-5", "Someone", "Else"))
        .await;
    assert_eq!(reused.customer_number, "C-5");
}

#[apply(backends)]
#[tokio::test]
async fn a_merge_moves_a_thousand_activities_and_their_history_and_unmerge_brings_them_back(
    backend: Backend,
) {
    use futures::StreamExt as _;

    let app = or_skip!(TestApp::spawn(backend).await);
    let [target, source] = app
        .create_customers([customer("Busy", "Target"), customer("Busy", "Source")])
        .await;
    let created: BTreeSet<String> = futures::stream::iter(0..1_100)
        .map(|i| app.create_activity(activity(&source.id, &format!("call {i}"))))
        .buffer_unordered(16)
        .map(|a| a.id)
        .collect()
        .await;
    assert_eq!(created.len(), 1_100);

    let merged = merge(&app, "ana", &target, &[&source])
        .await
        .expect("merge");
    assert_eq!(merged.id, target.id);
    assert_eq!(activity_ids(&app, &target.id).await, created);
    // Each moved activity has its change in the log, naming the target.
    let history = ok(app
        .customers()
        .list_changes(pb::ListChangesRequest {
            resource: Some(pb::ResourceRef {
                r#type: pb::ResourceType::Activity as i32,
                id: created.iter().next_back().expect("one").clone(),
                known_version: 0,
            }),
            ..Default::default()
        })
        .await)
    .changes;
    let moved = history.last().expect("a change");
    assert_eq!(
        moved.parent.as_ref().map(|p| p.id.as_str()),
        Some(target.id.as_str())
    );

    unmerge(&app, &target.id, &source.id)
        .await
        .expect("unmerge");
    assert_eq!(activity_ids(&app, &source.id).await, created);
    assert!(activity_ids(&app, &target.id).await.is_empty());
    app.shutdown().await;
}
