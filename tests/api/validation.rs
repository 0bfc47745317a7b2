//! Input rules: limits count characters, tags are unique case-insensitively, every violation is reported in one
//! BadRequest, and nothing is written on refusal.

use std::collections::HashMap;

use customer_context::pb::{self, ContactKind};
use tonic::{Code, Status};

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

/// The call was refused with a single violation of `reason`, on a field starting with `field_prefix`.
#[track_caller]
fn assert_single_violation<T: std::fmt::Debug>(
    result: Result<T, Status>,
    field_prefix: &str,
    reason: &str,
) {
    let status = err(result);
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let violations = field_violations(&status);
    let [(field, actual)] = violations.as_slice() else {
        panic!("not a single violation: {violations:?}");
    };
    assert_eq!(error_info(&status).reason, *actual);
    assert_eq!(actual, reason, "{status:?}");
    assert!(field.starts_with(field_prefix), "{field}");
}

/// A customer with `limit` items (`with_items(limit)`) is stored as given; one with an item more is refused with a
/// single violation of `reason` on a field starting with `field_prefix`. Returns the stored customer.
async fn assert_limit(
    app: &TestApp,
    limit: usize,
    with_items: impl Fn(usize) -> pb::Customer,
    field_prefix: &str,
    reason: &str,
) -> pb::Customer {
    let stored = create_and_check(app, "ana", with_items(limit), with_items(limit)).await;
    let over_limit = app.create_as("ana", with_items(limit + 1)).await;
    assert_single_violation(over_limit, field_prefix, reason);
    stored
}

#[apply(backends)]
#[tokio::test]
async fn text_limit_counts_characters_so_2000_emoji_pass_and_2001_ascii_fail(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let emoji = "😀".repeat(2000);
    assert_eq!(emoji.len(), 8000, "four bytes each");

    let ana = app
        .create_as(
            "ana",
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

    for (too_long, field) in [
        (
            pb::Customer {
                notes: "a".repeat(2001),
                ..customer("Ben", "Smith")
            },
            "customer.notes",
        ),
        (
            pb::Customer {
                last_name: "😀".repeat(2001),
                ..customer("Ben", "Smith")
            },
            "customer.last_name",
        ),
    ] {
        let refused = app.create_as("ben", too_long).await;
        assert_invalid(refused, &[(field, "FIELD_TOO_LONG")]);
    }
    let long_title = request(&ana.id, &"t".repeat(2001));
    let refused = app.create_as("ana", long_title).await;
    assert_invalid(refused, &[("request.title", "FIELD_TOO_LONG")]);
    let long_reference = pb::Activity {
        reference: "r".repeat(2001),
        ..activity(&ana.id, "call")
    };
    let refused = app.create_as("ana", long_reference).await;
    assert_invalid(refused, &[("activity.reference", "FIELD_TOO_LONG")]);

    // Only the valid writes happened.
    assert_eq!(app.search_customers("").await, vec![ana.clone()]);
    assert_eq!(app.requests_of(&ana.id).await, vec![created_request]);
    assert_eq!(app.activities_of(&ana.id).await, vec![created_activity]);
}

#[apply(backends)]
#[tokio::test]
async fn a_50_character_tag_passes_and_a_51_character_tag_fails(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let fifty = "t".repeat(50);
    let fifty_wide = "ü".repeat(50);
    let ana = app
        .create_as(
            "ana",
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

    let long_tag = pb::Customer {
        tags: vec!["ok".to_owned(), "t".repeat(51)],
        ..customer("Ben", "Smith")
    };
    let refused = app.create_as("ben", long_tag).await;
    assert_invalid(refused, &[("customer.tags[1]", "FIELD_TOO_LONG")]);
    let long_tag = pb::Activity {
        tags: vec!["a".to_owned(), "b".to_owned(), "ß".repeat(51)],
        ..activity(&ana.id, "call")
    };
    let refused = app.create_as("ana", long_tag).await;
    assert_invalid(refused, &[("activity.tags[2]", "FIELD_TOO_LONG")]);
    assert_eq!(app.search_customers("").await, vec![ana.clone()]);
    assert!(app.activities_of(&ana.id).await.is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn tags_differing_only_in_case_and_spaces_are_duplicates(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let duplicate_tags = pb::Customer {
        tags: strings(&["VIP", " vip "]),
        ..customer("Ana", "Lopez")
    };
    let refused = app.create_as("ana", duplicate_tags).await;
    assert_invalid(refused, &[("customer.tags[1]", "DUPLICATE_TAG")]);
    assert!(app.search_customers("").await.is_empty());

    let ana = app.ana_lopez().await;
    let duplicate_tags = pb::Request {
        tags: strings(&["Billing", "urgent", "BILLING"]),
        ..request(&ana.id, "Invoice")
    };
    let refused = app.create_as("ana", duplicate_tags).await;
    assert_invalid(refused, &[("request.tags[2]", "DUPLICATE_TAG")]);
    let duplicate_tags = pb::Activity {
        tags: strings(&["a", "b", " Vip", "vIP "]),
        ..activity(&ana.id, "call")
    };
    let refused = app.create_as("ana", duplicate_tags).await;
    assert_invalid(refused, &[("activity.tags[3]", "DUPLICATE_TAG")]);

    // On update too, leaving the record as it was.
    let duplicate_tags = pb::Customer {
        tags: strings(&["VIP", "vip"]),
        ..customer_at(&ana.id, 1)
    };
    let refused = app.patch_customer("ana", duplicate_tags, &["tags"]).await;
    assert_invalid(refused, &[("customer.tags[1]", "DUPLICATE_TAG")]);
    assert_eq!(app.get_customer(&ana.id).await.expect("get"), ana);
    assert!(app.requests_of(&ana.id).await.is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn tags_are_stored_trimmed_in_the_given_order(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
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
    let app = or_skip!(TestApp::spawn(backend).await);
    let empty_tags = pb::Customer {
        tags: strings(&["ok", "", "   "]),
        ..customer("Ana", "Lopez")
    };
    assert_invalid(
        app.create_as("ana", empty_tags).await,
        &[
            ("customer.tags[1]", "EMPTY_TAG"),
            ("customer.tags[2]", "EMPTY_TAG"),
        ],
    );

    let with_tags = |n: usize| pb::Customer {
        tags: (0..n).map(|i| format!("tag{i}")).collect(),
        ..customer("Ana", "Lopez")
    };
    let ana = assert_limit(&app, 100, with_tags, "customer.tags", "TOO_MANY_TAGS").await;
    assert_eq!(app.search_customers("").await, vec![ana]);
}

#[apply(backends)]
#[tokio::test]
async fn attribute_keys_and_counts_are_checked(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let longest_key = "k".repeat(64);
    let attributes = HashMap::from([
        (longest_key.clone(), "v".to_owned()),
        ("A-z_0.9".to_owned(), "😀".repeat(2000)),
        ("empty-value".to_owned(), String::new()),
    ]);
    let ana = app
        .create_as(
            "ana",
            pb::Customer {
                attributes: attributes.clone(),
                ..customer("Ana", "Lopez")
            },
        )
        .await
        .expect("valid attributes");
    assert_eq!(ana.attributes, attributes);

    let ben_with = |attributes: &[(&str, String)]| pb::Customer {
        attributes: attributes
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect(),
        ..customer("Ben", "Smith")
    };
    let too_long_key = "k".repeat(65);
    let long_field = format!("customer.attributes[\"{too_long_key}\"]");
    let bad_keys = ben_with(&[
        ("bad key", "x".to_owned()),
        ("ok", "x".to_owned()),
        (&too_long_key, "x".to_owned()),
        ("ünï", "x".to_owned()),
    ]);
    assert_invalid(
        app.create_as("ben", bad_keys).await,
        &[
            ("customer.attributes[\"bad key\"]", "INVALID_ATTRIBUTE_KEY"),
            (long_field.as_str(), "INVALID_ATTRIBUTE_KEY"),
            ("customer.attributes[\"ünï\"]", "INVALID_ATTRIBUTE_KEY"),
        ],
    );
    let empty_key = ben_with(&[("", "x".to_owned())]);
    assert_invalid(
        app.create_as("ben", empty_key).await,
        &[("customer.attributes[\"\"]", "INVALID_ATTRIBUTE_KEY")],
    );
    let long_value = ben_with(&[("note", "x".repeat(2001))]);
    assert_single_violation(
        app.create_as("ben", long_value).await,
        "customer.attributes",
        "FIELD_TOO_LONG",
    );

    let with_attributes = |n: usize| pb::Customer {
        attributes: (0..n).map(|i| (format!("k{i}"), "v".to_owned())).collect(),
        ..customer("Ben", "Smith")
    };
    let attributes = "customer.attributes";
    let ben = assert_limit(
        &app,
        100,
        with_attributes,
        attributes,
        "TOO_MANY_ATTRIBUTES",
    )
    .await;
    assert_eq!(app.search_customers("").await, vec![ben, ana]);
}

#[apply(backends)]
#[tokio::test]
async fn contact_points_are_validated_and_limited_to_50(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let invalid_points = customer_with_contacts(
        "Ana",
        "Lopez",
        vec![
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
    );
    let status = err(app.create_as("ana", invalid_points).await);
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

    let with_emails = |n: usize| {
        let emails = (0..n).map(|i| email(&format!("a{i}@example.com")));
        customer_with_contacts("Ana", "Lopez", emails.collect())
    };
    let points = "customer.contact_points";
    let ana = assert_limit(&app, 50, with_emails, points, "TOO_MANY_CONTACT_POINTS").await;
    assert_eq!(app.search_customers("").await, vec![ana]);
}

#[apply(backends)]
#[tokio::test]
async fn every_violation_of_a_call_is_reported_in_one_bad_request_and_nothing_is_written(
    backend: Backend,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
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
    let status = err(app.create_as("ana", bad.clone()).await);
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
    for query in ["", "lopez"] {
        assert!(
            app.search_customers(query).await.is_empty(),
            "nothing persisted"
        );
    }

    // The same mistakes on update leave the record unchanged at its version.
    let ana = app.ana_lopez().await;
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
    let bad_request = pb::Request {
        description: "d".repeat(2001),
        tags: strings(&["a", "A"]),
        ..request(&ana.id, "")
    };
    assert_invalid(
        app.create_as("ana", bad_request).await,
        &[
            ("request.title", "REQUIRED_FIELD"),
            ("request.description", "FIELD_TOO_LONG"),
            ("request.tags[1]", "DUPLICATE_TAG"),
        ],
    );
    let bad_activity = pb::Activity {
        topic: "t".repeat(2001),
        notes: "n".repeat(2001),
        tags: strings(&["x", "", "X"]),
        contact_phone: "nope".to_owned(),
        ..activity(&ana.id, "call")
    };
    assert_invalid(
        app.create_as("ana", bad_activity).await,
        &[
            ("activity.topic", "FIELD_TOO_LONG"),
            ("activity.notes", "FIELD_TOO_LONG"),
            ("activity.tags[1]", "EMPTY_TAG"),
            ("activity.tags[2]", "DUPLICATE_TAG"),
            ("activity.contact_phone", "INVALID_PHONE"),
        ],
    );
    assert!(app.requests_of(&ana.id).await.is_empty());
    assert!(app.activities_of(&ana.id).await.is_empty());
}
