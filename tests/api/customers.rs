//! Customers: the full round trip, ids, versions, masks, the unique customer number, lookup and search.

use std::collections::HashMap;

use customer_context::pb::{self, ContactKind, lookup_customers_request::Key};
use tonic::{Code, Status};

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

/// The contact points of [`full_customer`]: kind, label, the value as written and as stored.
const FULL_CONTACT_POINTS: [(ContactKind, &str, &str, &str); 5] = [
    (
        ContactKind::Phone,
        "mobile",
        "(415) 555-0100",
        "+14155550100",
    ),
    (
        ContactKind::Email,
        "work",
        "  Ana.Lopez@Example.COM ",
        "ana.lopez@example.com",
    ),
    (ContactKind::Chat, "teams", "ana.chat", "ana.chat"),
    (ContactKind::Social, "x", "@ana_lopez", "@ana_lopez"),
    (ContactKind::External, "crm", "crm-123", "crm-123"),
];

/// The contact points of [`full_customer`] as written, or as stored.
fn full_contact_points(stored: bool) -> Vec<pb::ContactPoint> {
    FULL_CONTACT_POINTS
        .iter()
        .map(|&(kind, label, written, normalized)| {
            contact(kind, label, if stored { normalized } else { written })
        })
        .collect()
}

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
        contact_points: full_contact_points(false),
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

/// `customer("A", "B")` at `version`, as an update of customer `id`.
fn renamed_at(id: &str, version: i64) -> pb::Customer {
    pb::Customer {
        version,
        ..with_id(customer("A", "B"), id)
    }
}

#[apply(backends)]
#[tokio::test]
async fn customer_round_trips_every_field_through_create_get_update_delete(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let input = full_customer();
    let stored_input = pb::Customer {
        contact_points: full_contact_points(true),
        tags: strings(&["VIP", "gold"]),
        locked: false,
        anonymize_time: None,
        ..input.clone()
    };
    let created = create_and_check(&app, "ana", input.clone(), stored_input).await;
    assert_ne!(created.id, input.id, "input id must be ignored");
    let create_time = created.create_time.expect("create_time set");
    assert!(
        nanos(&create_time) > nanos(&timestamp(1_600_000_000, 0)),
        "create_time is now, not the input"
    );

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
    let stored_replacement = pb::Customer {
        contact_points: vec![
            contact(ContactKind::Email, "home", "ana@home.example"),
            contact(ContactKind::Phone, "work", "+12125550199"),
        ],
        ..replacement.clone()
    };
    replace_and_check(&app, "ben", &created, replacement, stored_replacement).await;

    app.delete_customer("ben", &created.id, 2)
        .await
        .expect("delete");
    assert_not_found(app.get_customer(&created.id).await);
    assert!(app.search_customers("").await.is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn missing_agent_header_acts_as_anonymous(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let call = pb::CreateCustomerRequest {
        customer: Some(customer("Ana", "Lopez")),
    };
    let created = ok(app.customers().create_customer(call).await);
    assert_eq!(created.created_by, "anonymous");
    assert_eq!(created.updated_by, "anonymous");
}

/// `agent` changes the fields of `current` named in `paths` to those of `change`; the answer, and what is stored,
/// is `current` with its fields changed by `changed`, at the next version and updated now by `agent`.
async fn patch_and_check(
    app: &TestApp,
    agent: &str,
    current: &pb::Customer,
    change: pb::Customer,
    paths: &[&str],
    changed: impl FnOnce(pb::Customer) -> pb::Customer,
) -> pb::Customer {
    let updated = app
        .patch_customer(agent, change, paths)
        .await
        .expect("update");
    let expected = pb::Customer {
        version: current.version + 1,
        update_time: updated.update_time,
        updated_by: agent.to_owned(),
        ..changed(current.clone())
    };
    assert_eq!(updated, expected);
    assert_eq!(app.get_customer(&current.id).await.expect("get"), updated);
    updated
}

#[apply(backends)]
#[tokio::test]
async fn update_mask_changes_only_the_named_fields(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let created = app.create_customer(full_customer()).await;
    let change = pb::Customer {
        first_name: "Anabel".to_owned(),
        last_name: "IGNORED".to_owned(),
        tags: strings(&["new"]),
        credit_hold: false,
        ..customer_at(&created.id, 1)
    };
    let renamed = patch_and_check(
        &app,
        "ben",
        &created,
        change,
        &["first_name", "tags"],
        |current| pb::Customer {
            first_name: "Anabel".to_owned(),
            tags: strings(&["new"]),
            ..current
        },
    )
    .await;

    // Each collection can be replaced on its own.
    let attributes = HashMap::from([("a".to_owned(), "b".to_owned())]);
    let change = pb::Customer {
        contact_points: vec![phone("+44 20 7946 0958")],
        attributes: attributes.clone(),
        credit_hold: false,
        ..customer_at(&created.id, 2)
    };
    let paths = ["contact_points", "attributes", "credit_hold"];
    patch_and_check(&app, "ben", &renamed, change, &paths, |current| {
        pb::Customer {
            contact_points: vec![phone("+442079460958")],
            attributes,
            credit_hold: false,
            ..current
        }
    })
    .await;
}

#[apply(backends)]
#[tokio::test]
async fn star_update_mask_replaces_every_mutable_field(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let created = app.create_customer(full_customer()).await;
    let change = pb::Customer {
        first_name: "Only".to_owned(),
        ..customer_at(&created.id, 1)
    };
    patch_and_check(&app, "ben", &created, change, &["*"], |current| {
        pb::Customer {
            id: current.id,
            first_name: "Only".to_owned(),
            create_time: current.create_time,
            created_by: SETUP_AGENT.to_owned(),
            ..Default::default()
        }
    })
    .await;
}

#[apply(backends)]
#[tokio::test]
async fn unknown_update_mask_path_is_refused_and_changes_nothing(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let created = app.create_customer(full_customer()).await;
    for paths in [
        &["first_name", "shoe_size"][..],
        &["Customer.first_name"][..],
    ] {
        let change = pb::Customer {
            first_name: "Changed".to_owned(),
            ..customer_at(&created.id, 1)
        };
        let status = err(app.patch_customer("ben", change, paths).await);
        assert_error(&status, Code::InvalidArgument, "INVALID_UPDATE_MASK");
    }
    assert_eq!(app.get_customer(&created.id).await.expect("get"), created);
}

#[apply(backends)]
#[tokio::test]
async fn missing_or_stale_versions_are_refused(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let created = app.ana_lopez().await;
    let change = pb::Customer {
        version: 1,
        ..customer("Anabel", "Lopez")
    };
    let renamed = app
        .update_customer("ben", with_id(change, &created.id))
        .await
        .expect("update");
    assert_eq!(renamed.version, 2);
    let update_from = |version| app.update_customer("carl", renamed_at(&created.id, version));
    let delete_from = |version| app.delete_customer("carl", &created.id, version);

    // Update without a version, then from a stale one.
    let status = err(update_from(0).await);
    assert_error(&status, Code::InvalidArgument, "MISSING_VERSION");
    assert_version_mismatch(&err(update_from(1).await), 2, "ben");
    // Delete without a version, then from a stale one.
    let status = err(delete_from(0).await);
    assert_error(&status, Code::InvalidArgument, "MISSING_VERSION");
    let status = err(delete_from(1).await);
    assert_version_mismatch(&status, 2, "ben");
    assert_message_contains(
        &status,
        "was changed by ben since version 1 (now version 2)",
    );
    let given_version = error_info(&status).metadata.get("given_version").cloned();
    assert_eq!(given_version.as_deref(), Some("1"));
    // A version the customer never had is not reported as someone else's change.
    let status = err(update_from(7).await);
    assert_version_mismatch(&status, 2, "ben");
    assert_message_contains(
        &status,
        "has no version 7: it is at version 2, last changed by ben",
    );
    // Nothing changed.
    assert_eq!(app.get_customer(&created.id).await.expect("get"), renamed);
}

/// What every call naming a customer, request or activity by `id` answers, by the call's name.
async fn calls_naming(app: &TestApp, id: &str) -> Vec<(&'static str, Result<(), Status>)> {
    let titled = pb::Request {
        id: id.to_owned(),
        version: 1,
        title: "t".to_owned(),
        ..Default::default()
    };
    let topical = pb::Activity {
        id: id.to_owned(),
        version: 1,
        topic: "t".to_owned(),
        ..Default::default()
    };
    vec![
        ("GetCustomer", app.get_customer(id).await.map(drop)),
        ("GetRequest", app.get_request(id).await.map(drop)),
        ("GetActivity", app.get_activity(id).await.map(drop)),
        (
            "UpdateCustomer",
            app.update_customer("ana", renamed_at(id, 1))
                .await
                .map(drop),
        ),
        (
            "UpdateRequest",
            app.patch_request("ana", titled, &["title"]).await.map(drop),
        ),
        (
            "UpdateActivity",
            app.patch_activity("ana", topical, &["topic"])
                .await
                .map(drop),
        ),
        ("DeleteCustomer", app.delete_customer("ana", id, 1).await),
        ("DeleteRequest", app.delete_request("ana", id, 1).await),
        ("DeleteActivity", app.delete_activity("ana", id, 1).await),
        (
            "AddComment",
            app.add_comment("ana", id, "hello").await.map(drop),
        ),
    ]
}

/// Every call naming `id` fails with `code` and ErrorInfo `reason`.
async fn assert_every_call_naming_fails(app: &TestApp, id: &str, code: Code, reason: &str) {
    for (call, result) in calls_naming(app, id).await {
        let status = result.expect_err(call);
        assert_error(&status, code, reason);
    }
}

#[apply(backends)]
#[tokio::test]
async fn malformed_ids_are_invalid_argument_everywhere(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    for id in [
        "not-a-uuid",
        "12345",
        "0195c1b2-zzzz-7000-8000-000000000000",
    ] {
        assert_every_call_naming_fails(&app, id, Code::InvalidArgument, "INVALID_ID").await;
    }
    // An empty id is never valid either.
    let status = err(app.get_customer("").await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[apply(backends)]
#[tokio::test]
async fn unknown_ids_are_not_found_everywhere(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    assert_every_call_naming_fails(&app, &unknown_id(), Code::NotFound, "NOT_FOUND").await;
}

#[apply(backends)]
#[tokio::test]
async fn customer_number_is_unique_when_set(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let first = app
        .create_customer(numbered_customer("C-1", "Ana", "Lopez"))
        .await;
    let taken = numbered_customer("C-1", "Ben", "Smith");
    let status = err(app.create_customer_as("ben", taken).await);
    assert_error(&status, Code::AlreadyExists, "CUSTOMER_NUMBER_TAKEN");
    assert_eq!(app.search_customers("").await, vec![first.clone()]);

    // Customers without a number never collide.
    let [ben, carl] = app
        .create_customers([customer("Ben", "Smith"), customer("Carl", "Jones")])
        .await;
    // Taking a number in use by update is refused too, and changes nothing.
    let change = pb::Customer {
        version: 1,
        ..with_id(numbered_customer("C-1", "Ben", "Smith"), &ben.id)
    };
    let status = err(app.update_customer("ben", change.clone()).await);
    assert_error(&status, Code::AlreadyExists, "CUSTOMER_NUMBER_TAKEN");
    assert_eq!(app.get_customer(&ben.id).await.expect("get"), ben);
    assert_eq!(app.get_customer(&carl.id).await.expect("get"), carl);

    // Once the first customer is gone, the number is free again.
    app.delete_customer("ana", &first.id, 1)
        .await
        .expect("delete");
    let updated = app.update_customer("ben", change).await.expect("update");
    assert_eq!(updated.customer_number, "C-1");
}

fn by_phone(number: &str) -> Key {
    Key::Phone(number.to_owned())
}

fn by_email(address: &str) -> Key {
    Key::Email(address.to_owned())
}

fn by_handle(handle: &str) -> Key {
    Key::Handle(handle.to_owned())
}

fn by_number(customer_number: &str) -> Key {
    Key::CustomerNumber(customer_number.to_owned())
}

/// Every customer found by `key`, most recently updated first.
async fn found_by(app: &TestApp, key: Key) -> Vec<pb::Customer> {
    app.lookup_customers(key).await.expect("lookup")
}

const PHONE_FORMS: [&str; 3] = ["(415) 555-0100", "+1 415-555-0100", "tel:+14155550100"];

#[apply(backends)]
#[tokio::test]
async fn a_phone_written_three_ways_is_one_contact_point_found_by_lookup_from_any_form(
    backend: Backend,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    // Each form is stored as the same E.164 number.
    for form in PHONE_FORMS {
        let probe = customer_with_contacts("Probe", "Phone", vec![phone(form)]);
        let created = app.create_customer_as("ana", probe).await.expect("create");
        assert_eq!(
            created.contact_points,
            vec![phone("+14155550100")],
            "{form}"
        );
        app.delete_customer("ana", &created.id, 1)
            .await
            .expect("delete");
    }
    // Any two of the forms in one customer are the same contact point.
    for (i, a) in PHONE_FORMS.iter().enumerate() {
        for b in &PHONE_FORMS[i + 1..] {
            let contact_points = vec![email("ana@example.com"), phone(a), phone(b)];
            let twice = customer_with_contacts("Ana", "Lopez", contact_points);
            let status = err(app.create_customer_as("ana", twice).await);
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

    let [ana, _other] = app
        .create_customers([
            customer_with_contacts("Ana", "Lopez", vec![phone(PHONE_FORMS[0])]),
            customer_with_contacts("Ben", "Smith", vec![phone("(415) 555-0101")]),
        ])
        .await;
    for form in PHONE_FORMS {
        let found = found_by(&app, by_phone(form)).await;
        assert_eq!(found, vec![ana.clone()], "lookup by {form}");
    }
}

#[apply(backends)]
#[tokio::test]
async fn lookup_by_phone_returns_every_customer_sharing_it_most_recently_updated_first(
    backend: Backend,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let shared = "+1 415 555 0100";
    let [ana, ben, _carl] = app
        .create_customers([
            customer_with_contacts("Ana", "Lopez", vec![phone(shared)]),
            customer_with_contacts(
                "Ben",
                "Lopez",
                vec![email("ben@example.com"), phone(shared)],
            ),
            customer_with_contacts("Carl", "Lopez", vec![phone("+1 415 555 0199")]),
        ])
        .await;
    assert_eq!(
        found_by(&app, by_phone("4155550100")).await,
        vec![ben.clone(), ana.clone()]
    );

    // Touching Ana makes her the most recently updated.
    let change = pb::Customer {
        version: 1,
        notes: "called again".to_owned(),
        ..customer_with_contacts("Ana", "Lopez", vec![phone(shared)])
    };
    let ana = app
        .update_customer("ana", with_id(change, &ana.id))
        .await
        .expect("update");
    assert_eq!(
        found_by(&app, by_phone("+14155550100")).await,
        vec![ana.clone(), ben.clone()]
    );

    // Changing a contact point moves the customer in the index.
    let change = pb::Customer {
        version: 1,
        ..customer_with_contacts("Ben", "Lopez", vec![phone("+1 650 555 0123")])
    };
    let ben = app
        .update_customer("ben", with_id(change, &ben.id))
        .await
        .expect("update");
    assert_eq!(found_by(&app, by_phone(shared)).await, vec![ana]);
    assert_eq!(found_by(&app, by_phone("(650) 555-0123")).await, vec![ben]);
    let found = found_by(&app, by_email("ben@example.com")).await;
    assert!(found.is_empty(), "removed e-mail still found: {found:?}");
}

#[apply(backends)]
#[tokio::test]
async fn lookup_by_email_handle_and_customer_number_matches_the_normalized_value(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = app.create_customer(full_customer()).await;
    let ben_chat = contact(ContactKind::Chat, "teams", "ben.chat");
    let _ben = app
        .create_customer(pb::Customer {
            customer_number: "C-1002".to_owned(),
            ..customer_with_contacts("Ben", "Smith", vec![email("ben@example.com"), ben_chat])
        })
        .await;
    let hits = [
        by_email("ana.lopez@example.com"),
        by_email("  ANA.LOPEZ@example.com "),
        by_handle("ana.chat"),
        by_handle("ANA.Chat"),
        by_handle("@ana_lopez"),
        by_handle("crm-123"),
        by_number("C-1001"),
    ];
    // Unknown values find nobody; that is not an error.
    let misses = [
        by_phone("+1 212 555 0000"),
        by_email("nobody@example.com"),
        by_handle("nobody"),
        by_number("C-9999"),
        // Exact match only: a prefix is not a match.
        by_email("ana.lopez@example.co"),
        by_number("C-100"),
    ];
    for (keys, expected) in [(&hits[..], vec![ana]), (&misses[..], Vec::new())] {
        for key in keys {
            let found = found_by(&app, key.clone()).await;
            assert_eq!(found, expected, "lookup by {key:?}");
        }
    }
}

#[apply(backends)]
#[tokio::test]
async fn lookup_with_an_unparsable_phone_or_no_key_is_invalid_argument(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let unparsable = app.lookup_customers(by_phone("not a phone")).await;
    assert_fails(unparsable, Code::InvalidArgument, "INVALID_PHONE");
    let call = pb::LookupCustomersRequest { key: None };
    let status = err(app.customers().lookup_customers(call).await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[apply(backends)]
#[tokio::test]
async fn search_matches_words_of_names_company_number_contacts_and_tags_case_insensitively(
    backend: Backend,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let [ana, ben] = app
        .create_customers([
            pb::Customer {
                company: "Acme Widgets".to_owned(),
                customer_number: "A1001".to_owned(),
                tags: strings(&["Gold", "vip"]),
                ..customer_with_contacts(
                    "Ana",
                    "Lopez",
                    vec![phone("(415) 555-0100"), email("Ana.Lopez@Example.com")],
                )
            },
            pb::Customer {
                company: "Globex".to_owned(),
                customer_number: "B2002".to_owned(),
                tags: strings(&["silver"]),
                ..customer_with_contacts(
                    "Ben",
                    "Smith",
                    vec![phone("+1 212 555 0199"), email("ben@globex.example")],
                )
            },
        ])
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
    let app = or_skip!(TestApp::spawn(backend).await);
    let everyone = ["Ana", "Ben", "Carl", "Dora"].map(|name| customer(name, "Lopez"));
    let mut created = app.create_customers(everyone).await.to_vec();
    created.reverse();
    assert_eq!(app.search_customers("").await, created);
}

#[apply(backends)]
#[tokio::test]
async fn deleting_a_customer_removes_its_requests_comments_and_activities_only(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let [ana, ben] = app
        .create_customers([customer("Ana", "Lopez"), customer("Ben", "Smith")])
        .await;
    let ana_request = app.create_request(request(&ana.id, "Broken widget")).await;
    app.add_comment("ana", &ana_request.id, "first")
        .await
        .expect("comment");
    let ana_call = app.create_activity(activity(&ana.id, "call")).await;
    let ana_linked = app
        .create_activity(activity_on_request("", &ana_request.id, "linked"))
        .await;
    let ben_request = app.create_request(request(&ben.id, "Invoice")).await;
    let ben_comment = app
        .add_comment("ben", &ben_request.id, "hello")
        .await
        .expect("comment");
    let ben_call = app.create_activity(activity(&ben.id, "call")).await;

    app.delete_customer("ana", &ana.id, 1)
        .await
        .expect("delete");

    assert_not_found(app.get_customer(&ana.id).await);
    assert_not_found(app.get_request(&ana_request.id).await);
    assert_not_found(app.get_activity(&ana_call.id).await);
    assert_not_found(app.get_activity(&ana_linked.id).await);
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
