//! Customers: the full round trip, ids, versions, masks, the unique customer number, lookup and search.

use std::collections::HashMap;

use customer_context::pb::{self, ContactKind, lookup_customers_request::Key};
use tonic::Code;

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

/// A customer with every field set, contact points of each kind in non-normalized form.
fn full_customer() -> pb::Customer {
    pb::Customer {
        // Output-only fields: must be ignored on input.
        id: unknown_id(),
        version: 42,
        create_time: Some(timestamp(1_000, 0)),
        update_time: Some(timestamp(2_000, 0)),
        created_by: "mallory".to_owned(),
        updated_by: "mallory".to_owned(),
        locked: true,
        anonymize_time: Some(timestamp(3_000, 0)),
        // Mutable fields.
        first_name: "Ana".to_owned(),
        last_name: "López".to_owned(),
        company: "Acme Widgets".to_owned(),
        gender: "female".to_owned(),
        customer_number: "C-1001".to_owned(),
        contact_points: vec![
            contact(ContactKind::Phone, "mobile", "(415) 555-0100"),
            contact(ContactKind::Email, "work", "  Ana.Lopez@Example.COM "),
            contact(ContactKind::Chat, "teams", "ana.chat"),
            contact(ContactKind::Social, "x", "@ana_lopez"),
            contact(ContactKind::External, "crm", "crm-123"),
        ],
        notes: "Prefers e-mail.\nCall after 5pm.".to_owned(),
        tags: strings(&["VIP", " gold "]),
        credit_hold: true,
        attributes: HashMap::from([
            ("tier".to_owned(), "gold".to_owned()),
            ("crm.id".to_owned(), "42".to_owned()),
            ("loyalty-points_2".to_owned(), "1 200".to_owned()),
        ]),
    }
}

fn with_id(customer: pb::Customer, id: &str) -> pb::Customer {
    pb::Customer {
        id: id.to_owned(),
        ..customer
    }
}

#[apply(backends)]
#[tokio::test]
async fn customer_round_trips_every_field_through_create_get_update_delete(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let input = full_customer();
    let call = pb::CreateCustomerRequest {
        customer: Some(input.clone()),
    };
    let created = ok(app.customers().create_customer(as_agent("ana", call)).await);

    assert_uuid_v7(&created.id);
    assert_ne!(created.id, input.id, "input id must be ignored");
    let create_time = created.create_time.expect("create_time set");
    assert!(
        nanos(&create_time) > nanos(&timestamp(1_600_000_000, 0)),
        "create_time is now, not the input"
    );
    let expected = pb::Customer {
        id: created.id.clone(),
        version: 1,
        create_time: Some(create_time),
        update_time: Some(create_time),
        created_by: "ana".to_owned(),
        updated_by: "ana".to_owned(),
        contact_points: vec![
            contact(ContactKind::Phone, "mobile", "+14155550100"),
            contact(ContactKind::Email, "work", "ana.lopez@example.com"),
            contact(ContactKind::Chat, "teams", "ana.chat"),
            contact(ContactKind::Social, "x", "@ana_lopez"),
            contact(ContactKind::External, "crm", "crm-123"),
        ],
        tags: strings(&["VIP", "gold"]),
        locked: false,
        anonymize_time: None,
        ..input
    };
    assert_eq!(created, expected);
    assert_eq!(app.get_customer(&created.id).await.expect("get"), expected);

    // Replace every mutable field (empty mask) as another agent.
    let replacement = pb::Customer {
        id: created.id.clone(),
        version: 1,
        first_name: "Anabel".to_owned(),
        last_name: "Lopez-Smith".to_owned(),
        company: "Globex".to_owned(),
        gender: String::new(),
        customer_number: "C-2002".to_owned(),
        contact_points: vec![
            contact(ContactKind::Email, "home", "ANA@home.example"),
            contact(ContactKind::Phone, "work", "+1 212-555-0199"),
        ],
        notes: "Moved to New York.".to_owned(),
        tags: strings(&["churn-risk"]),
        credit_hold: false,
        attributes: HashMap::from([("tier".to_owned(), "silver".to_owned())]),
        created_by: "mallory".to_owned(),
        ..Default::default()
    };
    let updated = app
        .update_customer("ben", replacement.clone())
        .await
        .expect("update");
    let update_time = updated.update_time.expect("update_time set");
    assert!(nanos(&update_time) >= nanos(&create_time));
    let expected = pb::Customer {
        version: 2,
        create_time: Some(create_time),
        update_time: Some(update_time),
        created_by: "ana".to_owned(),
        updated_by: "ben".to_owned(),
        contact_points: vec![
            contact(ContactKind::Email, "home", "ana@home.example"),
            contact(ContactKind::Phone, "work", "+12125550199"),
        ],
        ..replacement
    };
    assert_eq!(updated, expected);
    assert_eq!(app.get_customer(&created.id).await.expect("get"), expected);

    let call = pb::DeleteCustomerRequest {
        id: created.id.clone(),
        version: 2,
    };
    let () = ok(app.customers().delete_customer(as_agent("ben", call)).await);
    let status = err(app.get_customer(&created.id).await);
    assert_error(&status, Code::NotFound, "NOT_FOUND");
    assert!(app.search_customers("").await.is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn missing_agent_header_acts_as_anonymous(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let call = pb::CreateCustomerRequest {
        customer: Some(customer("Ana", "Lopez")),
    };
    let created = ok(app.customers().create_customer(call).await);
    assert_eq!(created.created_by, "anonymous");
    assert_eq!(created.updated_by, "anonymous");
}

#[apply(backends)]
#[tokio::test]
async fn update_mask_changes_only_the_named_fields(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let created = app.create_customer(full_customer()).await;
    let change = pb::Customer {
        id: created.id.clone(),
        version: 1,
        first_name: "Anabel".to_owned(),
        last_name: "IGNORED".to_owned(),
        tags: strings(&["new"]),
        credit_hold: false,
        ..Default::default()
    };
    let call = pb::UpdateCustomerRequest {
        customer: Some(change),
        update_mask: mask(&["first_name", "tags"]),
        ..Default::default()
    };
    let updated = ok(app.customers().update_customer(as_agent("ben", call)).await);
    let expected = pb::Customer {
        version: 2,
        first_name: "Anabel".to_owned(),
        tags: strings(&["new"]),
        update_time: updated.update_time,
        updated_by: "ben".to_owned(),
        ..created.clone()
    };
    assert_eq!(updated, expected);

    // Each collection can be replaced on its own.
    let change = pb::Customer {
        id: created.id.clone(),
        version: 2,
        contact_points: vec![phone("+44 20 7946 0958")],
        attributes: HashMap::from([("a".to_owned(), "b".to_owned())]),
        credit_hold: false,
        ..Default::default()
    };
    let call = pb::UpdateCustomerRequest {
        customer: Some(change),
        update_mask: mask(&["contact_points", "attributes", "credit_hold"]),
        ..Default::default()
    };
    let updated = ok(app.customers().update_customer(as_agent("ben", call)).await);
    assert_eq!(updated.version, 3);
    assert_eq!(updated.contact_points, vec![phone("+442079460958")]);
    assert_eq!(
        updated.attributes,
        HashMap::from([("a".to_owned(), "b".to_owned())])
    );
    assert!(!updated.credit_hold);
    assert_eq!(updated.first_name, "Anabel");
    assert_eq!(updated.company, "Acme Widgets");
    assert_eq!(app.get_customer(&created.id).await.expect("get"), updated);
}

#[apply(backends)]
#[tokio::test]
async fn star_update_mask_replaces_every_mutable_field(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let created = app.create_customer(full_customer()).await;
    let change = pb::Customer {
        id: created.id.clone(),
        version: 1,
        first_name: "Only".to_owned(),
        ..Default::default()
    };
    let call = pb::UpdateCustomerRequest {
        customer: Some(change),
        update_mask: mask(&["*"]),
        ..Default::default()
    };
    let updated = ok(app.customers().update_customer(as_agent("ben", call)).await);
    let expected = pb::Customer {
        id: created.id.clone(),
        version: 2,
        first_name: "Only".to_owned(),
        create_time: created.create_time,
        update_time: updated.update_time,
        created_by: SETUP_AGENT.to_owned(),
        updated_by: "ben".to_owned(),
        ..Default::default()
    };
    assert_eq!(updated, expected);
}

#[apply(backends)]
#[tokio::test]
async fn unknown_update_mask_path_is_refused_and_changes_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let created = app.create_customer(full_customer()).await;
    for paths in [
        &["first_name", "shoe_size"][..],
        &["Customer.first_name"][..],
    ] {
        let change = pb::Customer {
            id: created.id.clone(),
            version: 1,
            first_name: "Changed".to_owned(),
            ..Default::default()
        };
        let call = pb::UpdateCustomerRequest {
            customer: Some(change),
            update_mask: mask(paths),
            ..Default::default()
        };
        let status = err(app.customers().update_customer(call).await);
        assert_error(&status, Code::InvalidArgument, "INVALID_UPDATE_MASK");
    }
    assert_eq!(app.get_customer(&created.id).await.expect("get"), created);
}

#[apply(backends)]
#[tokio::test]
async fn missing_or_stale_versions_are_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let created = app.create_customer(customer("Ana", "Lopez")).await;
    let change = pb::Customer {
        version: 1,
        ..customer("Anabel", "Lopez")
    };
    let renamed = app
        .update_customer("ben", with_id(change, &created.id))
        .await
        .expect("update");
    assert_eq!(renamed.version, 2);

    // Update without a version.
    let status = err(app
        .update_customer("carl", with_id(customer("X", "Y"), &created.id))
        .await);
    assert_error(&status, Code::InvalidArgument, "MISSING_VERSION");
    // Update from a stale version.
    let stale = pb::Customer {
        version: 1,
        ..customer("X", "Y")
    };
    let status = err(app
        .update_customer("carl", with_id(stale, &created.id))
        .await);
    assert_version_mismatch(&status, 2, "ben");
    // Delete without a version, then from a stale one.
    let call = pb::DeleteCustomerRequest {
        id: created.id.clone(),
        version: 0,
    };
    let status = err(app.customers().delete_customer(call).await);
    assert_error(&status, Code::InvalidArgument, "MISSING_VERSION");
    let call = pb::DeleteCustomerRequest {
        id: created.id.clone(),
        version: 1,
    };
    let status = err(app.customers().delete_customer(call).await);
    assert_version_mismatch(&status, 2, "ben");
    assert!(
        status
            .message()
            .contains("was changed by ben since version 1 (now version 2)"),
        "{status:?}"
    );
    assert_eq!(
        error_info(&status)
            .metadata
            .get("given_version")
            .map(String::as_str),
        Some("1")
    );
    // A version the customer never had is not reported as someone else's change.
    let ahead = pb::Customer {
        version: 7,
        ..customer("X", "Y")
    };
    let status = err(app
        .update_customer("carl", with_id(ahead, &created.id))
        .await);
    assert_version_mismatch(&status, 2, "ben");
    assert!(
        status
            .message()
            .contains("has no version 7: it is at version 2, last changed by ben"),
        "{status:?}"
    );
    // Nothing changed.
    assert_eq!(app.get_customer(&created.id).await.expect("get"), renamed);
}

#[apply(backends)]
#[tokio::test]
async fn malformed_ids_are_invalid_argument_everywhere(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for id in [
        "not-a-uuid",
        "12345",
        "0195c1b2-zzzz-7000-8000-000000000000",
    ] {
        let status = err(app.get_customer(id).await);
        assert_error(&status, Code::InvalidArgument, "INVALID_ID");
        let status = err(app.get_request(id).await);
        assert_error(&status, Code::InvalidArgument, "INVALID_ID");
        let status = err(app.get_activity(id).await);
        assert_error(&status, Code::InvalidArgument, "INVALID_ID");

        let call = pb::DeleteCustomerRequest {
            id: id.to_owned(),
            version: 1,
        };
        let status = err(app.customers().delete_customer(call).await);
        assert_error(&status, Code::InvalidArgument, "INVALID_ID");
        let call = pb::DeleteRequestRequest {
            id: id.to_owned(),
            version: 1,
        };
        let status = err(app.requests().delete_request(call).await);
        assert_error(&status, Code::InvalidArgument, "INVALID_ID");
        let call = pb::DeleteActivityRequest {
            id: id.to_owned(),
            version: 1,
        };
        let status = err(app.activities().delete_activity(call).await);
        assert_error(&status, Code::InvalidArgument, "INVALID_ID");

        let change = pb::Customer {
            version: 1,
            ..customer("A", "B")
        };
        let status = err(app.update_customer("ana", with_id(change, id)).await);
        assert_error(&status, Code::InvalidArgument, "INVALID_ID");
        let status = err(app.add_comment("ana", id, "hello").await);
        assert_error(&status, Code::InvalidArgument, "INVALID_ID");
    }
    // An empty id is never valid either.
    let status = err(app.get_customer("").await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[apply(backends)]
#[tokio::test]
async fn unknown_ids_are_not_found_everywhere(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let id = unknown_id();
    assert_error(
        &err(app.get_customer(&id).await),
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_error(
        &err(app.get_request(&id).await),
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_error(
        &err(app.get_activity(&id).await),
        Code::NotFound,
        "NOT_FOUND",
    );

    let change = pb::Customer {
        version: 1,
        ..customer("A", "B")
    };
    let status = err(app.update_customer("ana", with_id(change, &id)).await);
    assert_error(&status, Code::NotFound, "NOT_FOUND");
    let call = pb::UpdateRequestRequest {
        request: Some(pb::Request {
            id: id.clone(),
            version: 1,
            title: "t".to_owned(),
            ..Default::default()
        }),
        update_mask: mask(&["title"]),
        ..Default::default()
    };
    let status = err(app.requests().update_request(call).await);
    assert_error(&status, Code::NotFound, "NOT_FOUND");
    let call = pb::UpdateActivityRequest {
        activity: Some(pb::Activity {
            id: id.clone(),
            version: 1,
            topic: "t".to_owned(),
            ..Default::default()
        }),
        update_mask: mask(&["topic"]),
        ..Default::default()
    };
    let status = err(app.activities().update_activity(call).await);
    assert_error(&status, Code::NotFound, "NOT_FOUND");

    let call = pb::DeleteCustomerRequest {
        id: id.clone(),
        version: 1,
    };
    let status = err(app.customers().delete_customer(call).await);
    assert_error(&status, Code::NotFound, "NOT_FOUND");
    let call = pb::DeleteRequestRequest {
        id: id.clone(),
        version: 1,
    };
    let status = err(app.requests().delete_request(call).await);
    assert_error(&status, Code::NotFound, "NOT_FOUND");
    let call = pb::DeleteActivityRequest {
        id: id.clone(),
        version: 1,
    };
    let status = err(app.activities().delete_activity(call).await);
    assert_error(&status, Code::NotFound, "NOT_FOUND");
    let status = err(app.add_comment("ana", &id, "hello").await);
    assert_error(&status, Code::NotFound, "NOT_FOUND");
}

#[apply(backends)]
#[tokio::test]
async fn customer_number_is_unique_when_set(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let first = app
        .create_customer(pb::Customer {
            customer_number: "C-1".to_owned(),
            ..customer("Ana", "Lopez")
        })
        .await;
    let call = pb::CreateCustomerRequest {
        customer: Some(pb::Customer {
            customer_number: "C-1".to_owned(),
            ..customer("Ben", "Smith")
        }),
    };
    let status = err(app.customers().create_customer(call).await);
    assert_error(&status, Code::AlreadyExists, "CUSTOMER_NUMBER_TAKEN");
    assert_eq!(app.search_customers("").await, vec![first.clone()]);

    // Customers without a number never collide.
    let ben = app.create_customer(customer("Ben", "Smith")).await;
    let carl = app.create_customer(customer("Carl", "Jones")).await;
    // Taking a number in use by update is refused too, and changes nothing.
    let change = pb::Customer {
        version: 1,
        customer_number: "C-1".to_owned(),
        ..customer("Ben", "Smith")
    };
    let status = err(app
        .update_customer("ben", with_id(change.clone(), &ben.id))
        .await);
    assert_error(&status, Code::AlreadyExists, "CUSTOMER_NUMBER_TAKEN");
    assert_eq!(app.get_customer(&ben.id).await.expect("get"), ben);
    assert_eq!(app.get_customer(&carl.id).await.expect("get"), carl);

    // Once the first customer is gone, the number is free again.
    let call = pb::DeleteCustomerRequest {
        id: first.id.clone(),
        version: 1,
    };
    ok(app.customers().delete_customer(call).await);
    let updated = app
        .update_customer("ben", with_id(change, &ben.id))
        .await
        .expect("update");
    assert_eq!(updated.customer_number, "C-1");
}

async fn lookup(app: &TestApp, key: Key) -> Result<Vec<pb::Customer>, tonic::Status> {
    let call = pb::LookupCustomersRequest { key: Some(key) };
    app.customers()
        .lookup_customers(call)
        .await
        .map(|r| r.into_inner().customers)
}

const PHONE_FORMS: [&str; 3] = ["(415) 555-0100", "+1 415-555-0100", "tel:+14155550100"];

#[apply(backends)]
#[tokio::test]
async fn a_phone_written_three_ways_is_one_contact_point_found_by_lookup_from_any_form(
    backend: Backend,
) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    // Each form is stored as the same E.164 number.
    for form in PHONE_FORMS {
        let call = pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                contact_points: vec![phone(form)],
                ..customer("Probe", "Phone")
            }),
        };
        let created = ok(app.customers().create_customer(call).await);
        assert_eq!(
            created.contact_points,
            vec![phone("+14155550100")],
            "{form}"
        );
        let call = pb::DeleteCustomerRequest {
            id: created.id,
            version: 1,
        };
        ok(app.customers().delete_customer(call).await);
    }
    // Any two of the forms in one customer are the same contact point.
    for (i, a) in PHONE_FORMS.iter().enumerate() {
        for b in &PHONE_FORMS[i + 1..] {
            let call = pb::CreateCustomerRequest {
                customer: Some(pb::Customer {
                    contact_points: vec![email("ana@example.com"), phone(a), phone(b)],
                    ..customer("Ana", "Lopez")
                }),
            };
            let status = err(app.customers().create_customer(call).await);
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            let violations = field_violations(&status);
            assert_eq!(violations.len(), 1, "{violations:?}");
            let (field, reason) = &violations[0];
            assert_eq!(reason, "DUPLICATE_CONTACT_POINT", "{a} / {b}");
            assert!(field.starts_with("customer.contact_points[2]"), "{field}");
            assert_eq!(error_info(&status).reason, "DUPLICATE_CONTACT_POINT");
        }
    }
    assert!(
        app.search_customers("").await.is_empty(),
        "nothing persisted"
    );

    let ana = app
        .create_customer(pb::Customer {
            contact_points: vec![phone(PHONE_FORMS[0])],
            ..customer("Ana", "Lopez")
        })
        .await;
    let _other = app
        .create_customer(pb::Customer {
            contact_points: vec![phone("(415) 555-0101")],
            ..customer("Ben", "Smith")
        })
        .await;
    for form in PHONE_FORMS {
        let found = lookup(&app, Key::Phone(form.to_owned()))
            .await
            .expect("lookup");
        assert_eq!(found, vec![ana.clone()], "lookup by {form}");
    }
}

#[apply(backends)]
#[tokio::test]
async fn lookup_by_phone_returns_every_customer_sharing_it_most_recently_updated_first(
    backend: Backend,
) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let shared = "+1 415 555 0100";
    let ana = app
        .create_customer(pb::Customer {
            contact_points: vec![phone(shared)],
            ..customer("Ana", "Lopez")
        })
        .await;
    let ben = app
        .create_customer(pb::Customer {
            contact_points: vec![email("ben@example.com"), phone(shared)],
            ..customer("Ben", "Lopez")
        })
        .await;
    let _carl = app
        .create_customer(pb::Customer {
            contact_points: vec![phone("+1 415 555 0199")],
            ..customer("Carl", "Lopez")
        })
        .await;
    let found = lookup(&app, Key::Phone("4155550100".to_owned()))
        .await
        .expect("lookup");
    assert_eq!(found, vec![ben.clone(), ana.clone()]);

    // Touching Ana makes her the most recently updated.
    let change = pb::Customer {
        version: 1,
        notes: "called again".to_owned(),
        contact_points: vec![phone(shared)],
        ..customer("Ana", "Lopez")
    };
    let ana = app
        .update_customer("ana", with_id(change, &ana.id))
        .await
        .expect("update");
    let found = lookup(&app, Key::Phone("+14155550100".to_owned()))
        .await
        .expect("lookup");
    assert_eq!(found, vec![ana.clone(), ben.clone()]);

    // Changing a contact point moves the customer in the index.
    let change = pb::Customer {
        version: 1,
        contact_points: vec![phone("+1 650 555 0123")],
        ..customer("Ben", "Lopez")
    };
    let ben = app
        .update_customer("ben", with_id(change, &ben.id))
        .await
        .expect("update");
    let found = lookup(&app, Key::Phone(shared.to_owned()))
        .await
        .expect("lookup");
    assert_eq!(found, vec![ana]);
    let found = lookup(&app, Key::Phone("(650) 555-0123".to_owned()))
        .await
        .expect("lookup");
    assert_eq!(found, vec![ben]);
    let found = lookup(&app, Key::Email("ben@example.com".to_owned()))
        .await
        .expect("lookup");
    assert!(found.is_empty(), "removed e-mail still found: {found:?}");
}

#[apply(backends)]
#[tokio::test]
async fn lookup_by_email_handle_and_customer_number_matches_the_normalized_value(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app.create_customer(full_customer()).await;
    let _ben = app
        .create_customer(pb::Customer {
            customer_number: "C-1002".to_owned(),
            contact_points: vec![
                email("ben@example.com"),
                contact(ContactKind::Chat, "teams", "ben.chat"),
            ],
            ..customer("Ben", "Smith")
        })
        .await;
    let hits = [
        Key::Email("ana.lopez@example.com".to_owned()),
        Key::Email("  ANA.LOPEZ@example.com ".to_owned()),
        Key::Handle("ana.chat".to_owned()),
        Key::Handle("ANA.Chat".to_owned()),
        Key::Handle("@ana_lopez".to_owned()),
        Key::Handle("crm-123".to_owned()),
        Key::CustomerNumber("C-1001".to_owned()),
    ];
    for key in hits {
        let found = lookup(&app, key.clone()).await.expect("lookup");
        assert_eq!(found, vec![ana.clone()], "lookup by {key:?}");
    }
    // Unknown values find nobody; that is not an error.
    let misses = [
        Key::Phone("+1 212 555 0000".to_owned()),
        Key::Email("nobody@example.com".to_owned()),
        Key::Handle("nobody".to_owned()),
        Key::CustomerNumber("C-9999".to_owned()),
        // Exact match only: a prefix is not a match.
        Key::Email("ana.lopez@example.co".to_owned()),
        Key::CustomerNumber("C-100".to_owned()),
    ];
    for key in misses {
        let found = lookup(&app, key.clone()).await.expect("lookup");
        assert!(found.is_empty(), "lookup by {key:?} found {found:?}");
    }
}

#[apply(backends)]
#[tokio::test]
async fn lookup_with_an_unparsable_phone_or_no_key_is_invalid_argument(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let status = err(lookup(&app, Key::Phone("not a phone".to_owned())).await);
    assert_error(&status, Code::InvalidArgument, "INVALID_PHONE");
    let call = pb::LookupCustomersRequest { key: None };
    let status = err(app.customers().lookup_customers(call).await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[apply(backends)]
#[tokio::test]
async fn search_matches_words_of_names_company_number_contacts_and_tags_case_insensitively(
    backend: Backend,
) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app
        .create_customer(pb::Customer {
            company: "Acme Widgets".to_owned(),
            customer_number: "A1001".to_owned(),
            contact_points: vec![phone("(415) 555-0100"), email("Ana.Lopez@Example.com")],
            tags: strings(&["Gold", "vip"]),
            ..customer("Ana", "Lopez")
        })
        .await;
    let ben = app
        .create_customer(pb::Customer {
            company: "Globex".to_owned(),
            customer_number: "B2002".to_owned(),
            contact_points: vec![phone("+1 212 555 0199"), email("ben@globex.example")],
            tags: strings(&["silver"]),
            ..customer("Ben", "Smith")
        })
        .await;
    let cases: [(&str, &pb::Customer); 12] = [
        ("ana", &ana),
        ("LOPEZ", &ana),
        ("acme", &ana),
        ("Widgets", &ana),
        ("a1001", &ana),
        ("ana.lopez@example.com", &ana),
        ("+14155550100", &ana),
        ("(415) 555-0100", &ana),
        ("GOLD", &ana),
        ("smith", &ben),
        ("globex", &ben),
        ("silver", &ben),
    ];
    for (query, expected) in cases {
        let found = app.search_customers(query).await;
        assert_eq!(found, vec![expected.clone()], "search {query:?}");
    }
    assert!(app.search_customers("nobody").await.is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn empty_search_lists_everyone_newest_first(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut created = Vec::new();
    for name in ["Ana", "Ben", "Carl", "Dora"] {
        created.push(app.create_customer(customer(name, "Lopez")).await);
    }
    created.reverse();
    assert_eq!(app.search_customers("").await, created);
}

#[apply(backends)]
#[tokio::test]
async fn deleting_a_customer_removes_its_requests_comments_and_activities_only(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app.create_customer(customer("Ana", "Lopez")).await;
    let ben = app.create_customer(customer("Ben", "Smith")).await;
    let ana_request = app.create_request(request(&ana.id, "Broken widget")).await;
    app.add_comment("ana", &ana_request.id, "first")
        .await
        .expect("comment");
    let ana_call = app.create_activity(activity(&ana.id, "call")).await;
    let ana_linked = app
        .create_activity(pb::Activity {
            request_id: ana_request.id.clone(),
            ..activity("", "linked")
        })
        .await;
    let ben_request = app.create_request(request(&ben.id, "Invoice")).await;
    let ben_comment = app
        .add_comment("ben", &ben_request.id, "hello")
        .await
        .expect("comment");
    let ben_call = app.create_activity(activity(&ben.id, "call")).await;

    let call = pb::DeleteCustomerRequest {
        id: ana.id.clone(),
        version: 1,
    };
    ok(app.customers().delete_customer(as_agent("ana", call)).await);

    assert_error(
        &err(app.get_customer(&ana.id).await),
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_error(
        &err(app.get_request(&ana_request.id).await),
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_error(
        &err(app.get_activity(&ana_call.id).await),
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_error(
        &err(app.get_activity(&ana_linked.id).await),
        Code::NotFound,
        "NOT_FOUND",
    );
    let comments = app.list_comments(&ana_request.id).await;
    assert!(
        comments.as_ref().is_err_and(|s| s.code() == Code::NotFound)
            || comments.as_ref().is_ok_and(Vec::is_empty),
        "comments of a deleted request: {comments:?}"
    );

    // The other customer is untouched.
    assert_eq!(app.get_customer(&ben.id).await.expect("get"), ben);
    assert_eq!(
        app.get_request(&ben_request.id).await.expect("get"),
        ben_request
    );
    assert_eq!(app.get_activity(&ben_call.id).await.expect("get"), ben_call);
    assert_eq!(
        app.list_comments(&ben_request.id).await.expect("list"),
        vec![ben_comment]
    );
    assert_eq!(app.search_customers("").await, vec![ben]);
}
