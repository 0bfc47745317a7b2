//! Input rules: limits count characters, tags are unique case-insensitively, every violation is reported in one
//! BadRequest, and nothing is written on refusal.

use std::collections::HashMap;

use customer_context::pb::{self, ContactKind};
use tonic::{Code, Status};

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

async fn create_customer(app: &TestApp, customer: pb::Customer) -> Result<pb::Customer, Status> {
    let call = pb::CreateCustomerRequest {
        customer: Some(customer),
    };
    app.customers()
        .create_customer(call)
        .await
        .map(tonic::Response::into_inner)
}

/// The only violation of `status`, which must be INVALID_ARGUMENT.
#[track_caller]
fn single_violation(status: &Status) -> (String, String) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut violations = field_violations(status);
    assert_eq!(violations.len(), 1, "{violations:?}");
    let violation = violations.remove(0);
    assert_eq!(error_info(status).reason, violation.1);
    violation
}

#[apply(backends)]
#[tokio::test]
async fn text_limit_counts_characters_so_2000_emoji_pass_and_2001_ascii_fail(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let emoji = "😀".repeat(2000);
    assert_eq!(emoji.len(), 8000, "four bytes each");

    let ana = create_customer(
        &app,
        pb::Customer {
            notes: emoji.clone(),
            company: "é".repeat(2000),
            ..customer("Ana", "Lopez")
        },
    )
    .await
    .expect("2,000 multi-byte characters are valid");
    assert_eq!(ana.notes, emoji);
    assert_eq!(app.get_customer(&ana.id).await.expect("get").notes, emoji);

    let created_request = app
        .create_request(pb::Request {
            description: emoji.clone(),
            ..request(&ana.id, &"t".repeat(2000))
        })
        .await;
    assert_eq!(created_request.description, emoji);
    let created_activity = app
        .create_activity(pb::Activity {
            notes: emoji.clone(),
            ..activity(&ana.id, "call")
        })
        .await;
    assert_eq!(created_activity.notes, emoji);
    let comment = app
        .add_comment("ana", &created_request.id, &emoji)
        .await
        .expect("2,000-emoji comment");
    assert_eq!(comment.text, emoji);

    let status = err(create_customer(
        &app,
        pb::Customer {
            notes: "a".repeat(2001),
            ..customer("Ben", "Smith")
        },
    )
    .await);
    assert_violations(&status, &[("customer.notes", "FIELD_TOO_LONG")]);
    let status = err(create_customer(
        &app,
        pb::Customer {
            last_name: "😀".repeat(2001),
            ..customer("Ben", "Smith")
        },
    )
    .await);
    assert_violations(&status, &[("customer.last_name", "FIELD_TOO_LONG")]);

    let call = pb::CreateRequestRequest {
        request: Some(request(&ana.id, &"t".repeat(2001))),
    };
    let status = err(app.requests().create_request(call).await);
    assert_violations(&status, &[("request.title", "FIELD_TOO_LONG")]);
    let call = pb::CreateActivityRequest {
        activity: Some(pb::Activity {
            reference: "r".repeat(2001),
            ..activity(&ana.id, "call")
        }),
    };
    let status = err(app.activities().create_activity(call).await);
    assert_violations(&status, &[("activity.reference", "FIELD_TOO_LONG")]);

    // Only the valid writes happened.
    assert_eq!(app.search_customers("").await, vec![ana.clone()]);
    assert_eq!(
        app.list_requests(&ana.id, pb::RequestStatus::Unspecified)
            .await,
        vec![created_request]
    );
    let page = app.list_activities(&ana.id, "", 0, "").await.expect("list");
    assert_eq!(page.activities, vec![created_activity]);
}

#[apply(backends)]
#[tokio::test]
async fn a_50_character_tag_passes_and_a_51_character_tag_fails(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let fifty = "t".repeat(50);
    let fifty_wide = "ü".repeat(50);
    let ana = create_customer(
        &app,
        pb::Customer {
            tags: vec![
                fifty.clone(),
                fifty_wide.clone(),
                format!("  {}  ", "s".repeat(50)),
            ],
            ..customer("Ana", "Lopez")
        },
    )
    .await
    .expect("50-character tags are valid");
    assert_eq!(ana.tags, vec![fifty, fifty_wide, "s".repeat(50)]);

    let status = err(create_customer(
        &app,
        pb::Customer {
            tags: vec!["ok".to_owned(), "t".repeat(51)],
            ..customer("Ben", "Smith")
        },
    )
    .await);
    assert_violations(&status, &[("customer.tags[1]", "FIELD_TOO_LONG")]);

    let call = pb::CreateActivityRequest {
        activity: Some(pb::Activity {
            tags: vec!["a".to_owned(), "b".to_owned(), "ß".repeat(51)],
            ..activity(&ana.id, "call")
        }),
    };
    let status = err(app.activities().create_activity(call).await);
    assert_violations(&status, &[("activity.tags[2]", "FIELD_TOO_LONG")]);
    assert_eq!(app.search_customers("").await, vec![ana.clone()]);
    let page = app.list_activities(&ana.id, "", 0, "").await.expect("list");
    assert!(page.activities.is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn tags_differing_only_in_case_and_spaces_are_duplicates(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let status = err(create_customer(
        &app,
        pb::Customer {
            tags: strings(&["VIP", " vip "]),
            ..customer("Ana", "Lopez")
        },
    )
    .await);
    assert_violations(&status, &[("customer.tags[1]", "DUPLICATE_TAG")]);
    assert!(app.search_customers("").await.is_empty());

    let ana = app.create_customer(customer("Ana", "Lopez")).await;
    let call = pb::CreateRequestRequest {
        request: Some(pb::Request {
            tags: strings(&["Billing", "urgent", "BILLING"]),
            ..request(&ana.id, "Invoice")
        }),
    };
    let status = err(app.requests().create_request(call).await);
    assert_violations(&status, &[("request.tags[2]", "DUPLICATE_TAG")]);
    let call = pb::CreateActivityRequest {
        activity: Some(pb::Activity {
            tags: strings(&["a", "b", " Vip", "vIP "]),
            ..activity(&ana.id, "call")
        }),
    };
    let status = err(app.activities().create_activity(call).await);
    assert_violations(&status, &[("activity.tags[3]", "DUPLICATE_TAG")]);

    // On update too, leaving the record as it was.
    let change = pb::Customer {
        id: ana.id.clone(),
        version: 1,
        tags: strings(&["VIP", "vip"]),
        ..Default::default()
    };
    let call = pb::UpdateCustomerRequest {
        customer: Some(change),
        update_mask: mask(&["tags"]),
        ..Default::default()
    };
    let status = err(app.customers().update_customer(call).await);
    assert_violations(&status, &[("customer.tags[1]", "DUPLICATE_TAG")]);
    assert_eq!(app.get_customer(&ana.id).await.expect("get"), ana);
    assert!(
        app.list_requests(&ana.id, pb::RequestStatus::Unspecified)
            .await
            .is_empty()
    );
}

#[apply(backends)]
#[tokio::test]
async fn tags_are_stored_trimmed_in_the_given_order(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app
        .create_customer(pb::Customer {
            tags: strings(&[" zeta ", "Alpha", "mid dle", "\tTabbed\t"]),
            ..customer("Ana", "Lopez")
        })
        .await;
    assert_eq!(ana.tags, strings(&["zeta", "Alpha", "mid dle", "Tabbed"]));
    assert_eq!(app.get_customer(&ana.id).await.expect("get").tags, ana.tags);
}

#[apply(backends)]
#[tokio::test]
async fn empty_tags_and_too_many_tags_are_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let status = err(create_customer(
        &app,
        pb::Customer {
            tags: strings(&["ok", "", "   "]),
            ..customer("Ana", "Lopez")
        },
    )
    .await);
    assert_violations(
        &status,
        &[
            ("customer.tags[1]", "EMPTY_TAG"),
            ("customer.tags[2]", "EMPTY_TAG"),
        ],
    );

    let hundred: Vec<String> = (0..100).map(|i| format!("tag{i}")).collect();
    let ana = create_customer(
        &app,
        pb::Customer {
            tags: hundred.clone(),
            ..customer("Ana", "Lopez")
        },
    )
    .await
    .expect("100 tags are valid");
    assert_eq!(ana.tags, hundred);

    let too_many: Vec<String> = (0..101).map(|i| format!("tag{i}")).collect();
    let status = err(create_customer(
        &app,
        pb::Customer {
            tags: too_many,
            ..customer("Ben", "Smith")
        },
    )
    .await);
    let (field, reason) = single_violation(&status);
    assert_eq!(reason, "TOO_MANY_TAGS");
    assert!(field.starts_with("customer.tags"), "{field}");
    assert_eq!(app.search_customers("").await, vec![ana]);
}

#[apply(backends)]
#[tokio::test]
async fn attribute_keys_and_counts_are_checked(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let longest_key = "k".repeat(64);
    let attributes = HashMap::from([
        (longest_key.clone(), "v".to_owned()),
        ("A-z_0.9".to_owned(), "😀".repeat(2000)),
        ("empty-value".to_owned(), String::new()),
    ]);
    let ana = create_customer(
        &app,
        pb::Customer {
            attributes: attributes.clone(),
            ..customer("Ana", "Lopez")
        },
    )
    .await
    .expect("valid attributes");
    assert_eq!(ana.attributes, attributes);

    let too_long_key = "k".repeat(65);
    let status = err(create_customer(
        &app,
        pb::Customer {
            attributes: HashMap::from([
                ("bad key".to_owned(), "x".to_owned()),
                ("ok".to_owned(), "x".to_owned()),
                (too_long_key.clone(), "x".to_owned()),
                ("ünï".to_owned(), "x".to_owned()),
            ]),
            ..customer("Ben", "Smith")
        },
    )
    .await);
    let long_field = format!("customer.attributes[\"{too_long_key}\"]");
    assert_violations(
        &status,
        &[
            ("customer.attributes[\"bad key\"]", "INVALID_ATTRIBUTE_KEY"),
            (long_field.as_str(), "INVALID_ATTRIBUTE_KEY"),
            ("customer.attributes[\"ünï\"]", "INVALID_ATTRIBUTE_KEY"),
        ],
    );

    let status = err(create_customer(
        &app,
        pb::Customer {
            attributes: HashMap::from([(String::new(), "x".to_owned())]),
            ..customer("Ben", "Smith")
        },
    )
    .await);
    assert_violations(
        &status,
        &[("customer.attributes[\"\"]", "INVALID_ATTRIBUTE_KEY")],
    );

    let status = err(create_customer(
        &app,
        pb::Customer {
            attributes: HashMap::from([("note".to_owned(), "x".repeat(2001))]),
            ..customer("Ben", "Smith")
        },
    )
    .await);
    let (field, reason) = single_violation(&status);
    assert_eq!(reason, "FIELD_TOO_LONG");
    assert!(field.starts_with("customer.attributes"), "{field}");

    let hundred: HashMap<String, String> = (0..100)
        .map(|i| (format!("k{i}"), "v".to_owned()))
        .collect();
    let ben = create_customer(
        &app,
        pb::Customer {
            attributes: hundred.clone(),
            ..customer("Ben", "Smith")
        },
    )
    .await
    .expect("100 attributes are valid");
    assert_eq!(ben.attributes, hundred);
    let too_many: HashMap<String, String> = (0..101)
        .map(|i| (format!("k{i}"), "v".to_owned()))
        .collect();
    let status = err(create_customer(
        &app,
        pb::Customer {
            attributes: too_many,
            ..customer("Carl", "Jones")
        },
    )
    .await);
    let (_, reason) = single_violation(&status);
    assert_eq!(reason, "TOO_MANY_ATTRIBUTES");
    assert_eq!(app.search_customers("").await, vec![ben, ana]);
}

#[apply(backends)]
#[tokio::test]
async fn contact_points_are_validated_and_limited_to_50(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let status = err(create_customer(
        &app,
        pb::Customer {
            contact_points: vec![
                phone("not a phone"),
                email("not-an-email"),
                contact(ContactKind::Unspecified, "x", "something"),
                pb::ContactPoint {
                    kind: 77,
                    label: String::new(),
                    value: "v".to_owned(),
                },
                phone("+1 415 555 0100"),
            ],
            ..customer("Ana", "Lopez")
        },
    )
    .await);
    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = field_violations(&status);
    let reasons_at = |index: usize| -> Vec<&str> {
        let prefix = format!("customer.contact_points[{index}]");
        violations
            .iter()
            .filter(|(field, _)| field.starts_with(&prefix))
            .map(|(_, reason)| reason.as_str())
            .collect()
    };
    let has = |field: &str, reason: &str| {
        violations
            .iter()
            .any(|(f, r)| f.as_str() == field && r.as_str() == reason)
    };
    assert!(
        has("customer.contact_points[0].value", "INVALID_PHONE"),
        "{violations:?}"
    );
    assert!(
        has("customer.contact_points[1].value", "INVALID_EMAIL"),
        "{violations:?}"
    );
    assert_eq!(reasons_at(2), ["INVALID_CONTACT_KIND"], "{violations:?}");
    let unknown_kind = reasons_at(3);
    assert!(
        unknown_kind == ["INVALID_CONTACT_KIND"] || unknown_kind == ["INVALID_ENUM_VALUE"],
        "{violations:?}"
    );
    assert!(reasons_at(4).is_empty(), "{violations:?}");
    assert_eq!(violations.len(), 4, "{violations:?}");

    let fifty: Vec<pb::ContactPoint> = (0..50)
        .map(|i| email(&format!("a{i}@example.com")))
        .collect();
    let ana = create_customer(
        &app,
        pb::Customer {
            contact_points: fifty.clone(),
            ..customer("Ana", "Lopez")
        },
    )
    .await
    .expect("50 contact points are valid");
    assert_eq!(ana.contact_points, fifty);
    let too_many: Vec<pb::ContactPoint> = (0..51)
        .map(|i| email(&format!("b{i}@example.com")))
        .collect();
    let status = err(create_customer(
        &app,
        pb::Customer {
            contact_points: too_many,
            ..customer("Ben", "Smith")
        },
    )
    .await);
    let (_, reason) = single_violation(&status);
    assert_eq!(reason, "TOO_MANY_CONTACT_POINTS");
    assert_eq!(app.search_customers("").await, vec![ana]);
}

#[apply(backends)]
#[tokio::test]
async fn every_violation_of_a_call_is_reported_in_one_bad_request_and_nothing_is_written(
    backend: Backend,
) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let bad = pb::Customer {
        first_name: "x".repeat(2001),
        notes: "😀".repeat(2001),
        tags: strings(&["VIP", " vip ", ""]),
        attributes: HashMap::from([("bad key".to_owned(), "x".to_owned())]),
        contact_points: vec![
            phone("12"),
            email("ana@example.com"),
            email(" ANA@example.com"),
        ],
        ..customer("Ana", "Lopez")
    };
    let status = err(create_customer(&app, bad.clone()).await);
    // The duplicate contact point may be reported on the point or on its value.
    let duplicate_field = field_violations(&status)
        .into_iter()
        .find(|(_, reason)| reason == "DUPLICATE_CONTACT_POINT")
        .map(|(field, _)| field)
        .unwrap_or_default();
    assert!(
        duplicate_field.starts_with("customer.contact_points[2]"),
        "{duplicate_field:?}"
    );
    assert_violations(
        &status,
        &[
            ("customer.first_name", "FIELD_TOO_LONG"),
            ("customer.notes", "FIELD_TOO_LONG"),
            ("customer.tags[1]", "DUPLICATE_TAG"),
            ("customer.tags[2]", "EMPTY_TAG"),
            ("customer.attributes[\"bad key\"]", "INVALID_ATTRIBUTE_KEY"),
            ("customer.contact_points[0].value", "INVALID_PHONE"),
            (duplicate_field.as_str(), "DUPLICATE_CONTACT_POINT"),
        ],
    );
    assert!(
        app.search_customers("").await.is_empty(),
        "nothing persisted"
    );
    assert!(
        app.search_customers("lopez").await.is_empty(),
        "nothing persisted"
    );

    // The same mistakes on update leave the record unchanged at its version.
    let ana = app.create_customer(customer("Ana", "Lopez")).await;
    let status = err(app
        .update_customer(
            "ben",
            pb::Customer {
                id: ana.id.clone(),
                version: 1,
                ..bad
            },
        )
        .await);
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(field_violations(&status).len(), 7);
    assert_eq!(app.get_customer(&ana.id).await.expect("get"), ana);

    // Requests and activities report all their violations too.
    let call = pb::CreateRequestRequest {
        request: Some(pb::Request {
            description: "d".repeat(2001),
            tags: strings(&["a", "A"]),
            ..request(&ana.id, "")
        }),
    };
    let status = err(app.requests().create_request(call).await);
    assert_violations(
        &status,
        &[
            ("request.title", "REQUIRED_FIELD"),
            ("request.description", "FIELD_TOO_LONG"),
            ("request.tags[1]", "DUPLICATE_TAG"),
        ],
    );
    let call = pb::CreateActivityRequest {
        activity: Some(pb::Activity {
            topic: "t".repeat(2001),
            notes: "n".repeat(2001),
            tags: strings(&["x", "", "X"]),
            contact_phone: "nope".to_owned(),
            ..activity(&ana.id, "call")
        }),
    };
    let status = err(app.activities().create_activity(call).await);
    assert_violations(
        &status,
        &[
            ("activity.topic", "FIELD_TOO_LONG"),
            ("activity.notes", "FIELD_TOO_LONG"),
            ("activity.tags[1]", "EMPTY_TAG"),
            ("activity.tags[2]", "DUPLICATE_TAG"),
            ("activity.contact_phone", "INVALID_PHONE"),
        ],
    );
    assert!(
        app.list_requests(&ana.id, pb::RequestStatus::Unspecified)
            .await
            .is_empty()
    );
    let page = app.list_activities(&ana.id, "", 0, "").await.expect("list");
    assert!(page.activities.is_empty());
}
