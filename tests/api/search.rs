//! SearchCustomers on the full-text index: word prefixes, case and accents, phones in any form, newest first with
//! keyset pages, an index that follows every write, and rows inserted behind the service's back.

use std::collections::BTreeSet;

use customer_context::pb;
use sea_orm::{ConnectionTrait, Database};

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

fn names(found: &[pb::Customer]) -> Vec<String> {
    found
        .iter()
        .map(|c| format!("{} {}", c.first_name, c.last_name))
        .collect()
}

/// One page of a search.
async fn page(app: &TestApp, query: &str, size: i32, token: &str) -> pb::SearchCustomersResponse {
    let call = pb::SearchCustomersRequest {
        query: query.to_owned(),
        page_size: size,
        page_token: token.to_owned(),
    };
    ok(app.customers().search_customers(call).await)
}

#[apply(backends)]
#[tokio::test]
async fn word_prefixes_match_whatever_the_case_and_accents(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for (first, last) in [
        ("Anna", "Smith"),
        ("Hannah", "Annis"),
        ("Zoë", "Brontë"),
        ("Zoe", "Adams"),
        ("Ángel", "Núñez"),
    ] {
        app.create_customer(customer(first, last)).await;
    }
    let cases: [(&str, &[&str]); 10] = [
        ("ann", &["Hannah Annis", "Anna Smith"]),
        ("ANN smi", &["Anna Smith"]),
        ("smith ann", &["Anna Smith"]),
        ("zoe", &["Zoe Adams", "Zoë Brontë"]),
        ("Zoë", &["Zoe Adams", "Zoë Brontë"]),
        ("ZOË bron", &["Zoë Brontë"]),
        ("angel nunez", &["Ángel Núñez"]),
        ("ÁNG", &["Ángel Núñez"]),
        ("nnah", &[]),
        ("anna smithers", &[]),
    ];
    for (query, expected) in cases {
        assert_eq!(
            names(&app.search_customers(query).await),
            expected,
            "{query:?}"
        );
    }
}

#[apply(backends)]
#[tokio::test]
async fn a_phone_number_is_found_in_any_written_form(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app
        .create_customer(pb::Customer {
            contact_points: vec![phone("(415) 555-0100"), email("ana.lopez@example.com")],
            ..customer("Ana", "Lopez")
        })
        .await;
    app.create_customer(pb::Customer {
        contact_points: vec![phone("+1 212 555 0199")],
        ..customer("Ben", "Smith")
    })
    .await;
    for query in [
        "(415) 555-0100",
        "+1 415-555-0100",
        "tel:+14155550100",
        "+14155550100",
        "4155550100",
        "415555",
        "ana.lopez@example",
        "ana.lo",
    ] {
        assert_eq!(
            app.search_customers(query).await,
            vec![ana.clone()],
            "{query:?}"
        );
    }
}

#[apply(backends)]
#[tokio::test]
async fn results_page_newest_first_without_gaps_or_repeats(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut matching = Vec::new();
    for i in 0..7 {
        matching.push(
            app.create_customer(customer("Anna", &format!("N{i}")))
                .await
                .id,
        );
        app.create_customer(customer("Bob", &format!("N{i}"))).await;
    }
    matching.reverse();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = page(&app, "anna", 3, &token).await;
        seen.extend(page.customers.into_iter().map(|c| c.id));
        pages += 1;
        // Deleting a customer already returned does not disturb the walk.
        if pages == 1 {
            let first = app.get_customer(&seen[0]).await.expect("get");
            let delete = pb::DeleteCustomerRequest {
                id: first.id,
                version: first.version,
            };
            ok(app
                .customers()
                .delete_customer(as_agent("ana", delete))
                .await);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, matching);

    // A token belongs to its query.
    let first = page(&app, "anna", 3, "").await;
    let call = pb::SearchCustomersRequest {
        query: "bob".to_owned(),
        page_size: 3,
        page_token: first.next_page_token,
    };
    let status = err(app.customers().search_customers(call).await);
    assert_violations(&status, &[("page_token", "INVALID_PAGE_TOKEN")]);
}

#[apply(backends)]
#[tokio::test]
async fn the_index_follows_updates_and_deletions(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app
        .create_customer(pb::Customer {
            tags: strings(&["gold"]),
            ..customer("Anna", "Lopez")
        })
        .await;
    let renamed = app
        .update_customer(
            "ana",
            pb::Customer {
                first_name: "Berta".to_owned(),
                tags: strings(&["platinum"]),
                ..ana.clone()
            },
        )
        .await
        .expect("update");
    assert!(app.search_customers("anna").await.is_empty());
    assert!(app.search_customers("gold").await.is_empty());
    assert_eq!(
        app.search_customers("bert lop").await,
        vec![renamed.clone()]
    );
    assert_eq!(app.search_customers("plat").await, vec![renamed.clone()]);

    // A change of other fields keeps it findable.
    let noted = app
        .update_customer(
            "ana",
            pb::Customer {
                notes: "prefers email".to_owned(),
                ..renamed
            },
        )
        .await
        .expect("update");
    assert_eq!(app.search_customers("berta").await, vec![noted.clone()]);

    let delete = pb::DeleteCustomerRequest {
        id: noted.id.clone(),
        version: noted.version,
    };
    ok(app
        .customers()
        .delete_customer(as_agent("ana", delete))
        .await);
    assert!(app.search_customers("berta").await.is_empty());
    assert!(app.search_customers("").await.is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn rows_inserted_directly_into_the_database_are_searchable(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = TestApp::spawn_on(db.url()).await;
    let ana = app.create_customer(customer("Anna", "Lopez")).await;

    // What a bulk seeding tool does: plain INSERTs, search_text included, nothing else.
    let connection = Database::connect(db.url()).await.expect("connect");
    let mut seeded = BTreeSet::new();
    for i in 0..3 {
        let id = uuid::Uuid::now_v7().to_string();
        connection
            .execute_unprepared(&format!(
                "INSERT INTO customers (id, version, first_name, last_name, company, gender, customer_number, \
                 contact_points, notes, tags, credit_hold, attributes, search_text, create_time, update_time, \
                 created_by, updated_by) VALUES ('{id}', 1, 'Annika', 'Seed{i}', '', '', NULL, '[]', '', '[]', \
                 false, '{{}}', ' annika seed{i} ', 1, 1, 'seeder', 'seeder')"
            ))
            .await
            .expect("seed a customer");
        seeded.insert(id);
    }
    connection.close().await.expect("close");

    let found: BTreeSet<String> = app
        .search_customers("annik")
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(found, seeded);
    assert_eq!(app.search_customers("ann").await.len(), 4);
    assert_eq!(app.search_customers("seed1 ann").await.len(), 1);
    assert_eq!(app.search_customers("lopez").await, vec![ana]);
}
