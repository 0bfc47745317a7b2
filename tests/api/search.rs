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

#[apply(backends)]
#[tokio::test]
async fn word_prefixes_match_whatever_the_case_and_accents(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
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
        let found = app.search_customers(query).await;
        assert_eq!(names(&found), expected, "{query:?}");
    }
}

#[apply(backends)]
#[tokio::test]
async fn a_phone_number_is_found_in_any_written_form(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana_reachable_at = vec![phone("(415) 555-0100"), email("ana.lopez@example.com")];
    let [ana, _ben] = app
        .create_customers([
            customer_with_contacts("Ana", "Lopez", ana_reachable_at),
            customer_with_contacts("Ben", "Smith", vec![phone("+1 212 555 0199")]),
        ])
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
    let app = or_skip!(TestApp::spawn(backend).await);
    let mut matching = Vec::new();
    for i in 0..7 {
        let [anna, _bob] = app
            .create_customers([
                customer("Anna", &format!("N{i}")),
                customer("Bob", &format!("N{i}")),
            ])
            .await;
        matching.push(anna.id);
    }
    matching.reverse();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = app
            .search_customers_page("anna", 3, &token)
            .await
            .expect("page");
        seen.extend(page.customers.into_iter().map(|c| c.id));
        pages += 1;
        // Deleting a customer already returned does not disturb the walk.
        if pages == 1 {
            let first = app.get_customer(&seen[0]).await.expect("get");
            app.delete_customer("ana", &first.id, first.version)
                .await
                .expect("delete");
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, matching);

    // A token belongs to its query.
    let first = app
        .search_customers_page("anna", 3, "")
        .await
        .expect("page");
    let anna_token = first.next_page_token;
    let other_query = app.search_customers_page("bob", 3, &anna_token).await;
    assert_invalid(other_query, &[("page_token", "INVALID_PAGE_TOKEN")]);
}

#[apply(backends)]
#[tokio::test]
async fn the_index_follows_updates_and_deletions(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
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
    for gone in ["anna", "gold"] {
        assert!(app.search_customers(gone).await.is_empty(), "{gone:?}");
    }
    for query in ["bert lop", "plat"] {
        assert_eq!(
            app.search_customers(query).await,
            vec![renamed.clone()],
            "{query:?}"
        );
    }

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

    app.delete_customer("ana", &noted.id, noted.version)
        .await
        .expect("delete");
    assert!(app.search_customers("berta").await.is_empty());
    assert!(app.search_customers("").await.is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn rows_inserted_directly_into_the_database_are_searchable(backend: Backend) {
    let (app, db) = or_skip!(TestApp::spawn_keeping_db(backend).await);
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

/// Every customer id `query` finds, page after page of `page_size`.
async fn every_page(app: &TestApp, query: &str, page_size: i32) -> Vec<String> {
    let mut found = Vec::new();
    let mut token = String::new();
    for _ in 0..1_000 {
        let page = app
            .search_customers_page(query, page_size, &token)
            .await
            .expect("page");
        assert!(page.customers.len() <= page_size as usize, "{query:?}");
        found.extend(page.customers.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            return found;
        }
        token = page.next_page_token;
    }
    panic!("{query:?} still has pages after 1,000");
}

/// On PostgreSQL a page first walks the newest customers (a hundred for each customer the page holds) and
/// turns to the index when that leaves it short: a prefix only the oldest customers have is found past the
/// walk, and a common one pages through everyone, newest first, each once.
#[apply(backends)]
#[tokio::test]
async fn a_rare_prefix_is_found_past_the_newest_customers_and_a_common_one_pages_through_all(
    backend: Backend,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let mut rare = Vec::new();
    for i in 0..3 {
        let old = app
            .create_customer(customer("Quentin", &format!("Zyx{i} Common")))
            .await;
        rare.push(old.id);
    }
    let mut everyone = rare.clone();
    let mut sparse = Vec::new();
    for i in 0..240 {
        // Two sparse ones: one among the 200 newest, one older.
        let last = match i {
            0 | 150 => format!("Newer{i} Sparse"),
            _ => format!("Newer{i}"),
        };
        let newer = app.create_customer(customer("Common", &last)).await;
        if last.ends_with("Sparse") {
            sparse.push(newer.id.clone());
        }
        everyone.push(newer.id);
    }
    rare.reverse();
    sparse.reverse();
    everyone.reverse();

    // A page of one walks the 200 newest customers, none of them a Zyx.
    assert_eq!(every_page(&app, "zyx", 1).await, rare);
    assert_eq!(every_page(&app, "quen zyx1", 1).await, rare[1..2]);
    assert_eq!(every_page(&app, "zyx", 2).await, rare);
    assert_eq!(every_page(&app, "sparse", 1).await, sparse);
    assert_eq!(every_page(&app, "com spa", 1).await, sparse);
    assert_eq!(every_page(&app, "common", 1).await, everyone);
    assert_eq!(every_page(&app, "common", 50).await, everyone);
    assert!(every_page(&app, "zyxw", 1).await.is_empty());
}
