//! Bulk seeding (`loadgen seed`): seeded customers are found by search and lookup like any other, a customer
//! created afterwards is indexed as usual, and a load that fails leaves nothing of itself behind.

use customer_context::{
    config::DatabaseSettings,
    domain::{
        contact::{ContactKind, ContactPoint},
        customer::{Audit, Customer, CustomerData},
        time::now_micros,
    },
    pb::{self, lookup_customers_request::Key},
    store::{
        Store,
        seed::{self, SeedCounts, SeedCustomer},
    },
};
use rstest::rstest;
use rstest_reuse::apply;
use tokio::sync::mpsc;

use crate::harness::*;

/// Customer `i` of a seeded book: "Seeded Person{i}", customer number S-{i}, phone +1 617 555 {i:04}.
fn seeded(i: u32, customer_number: String) -> SeedCustomer {
    SeedCustomer {
        customer: Customer {
            id: uuid::Uuid::now_v7().to_string(),
            version: 1,
            data: CustomerData {
                first_name: "Seeded".to_owned(),
                last_name: format!("Person{i}"),
                customer_number,
                contact_points: vec![ContactPoint {
                    kind: ContactKind::Phone,
                    label: "mobile".to_owned(),
                    value: format!("+1617555{i:04}"),
                }],
                ..CustomerData::default()
            },
            audit: Audit::created("seeder", now_micros()),
            locked: false,
            anonymize_time: None,
        },
        requests: Vec::new(),
        activities: Vec::new(),
    }
}

/// `count` batches of ten seeded customers, numbered from 0 (customer numbers S-0, S-1, ...).
fn batches_of_ten(count: u32) -> Vec<Vec<SeedCustomer>> {
    (0..count)
        .map(|b| {
            (b * 10..b * 10 + 10)
                .map(|i| seeded(i, format!("S-{i}")))
                .collect()
        })
        .collect()
}

/// The store of the database at `url`, migrated.
async fn migrated_store(url: &str) -> Store {
    let store = Store::connect(&DatabaseSettings::new(url))
        .await
        .expect("store");
    store.migrate().await.expect("migrated");
    store
}

/// Seeds `batches` into the database at `url`, migrated first, as `loadgen seed` does (the load opens the
/// database for itself), returning the totals and the counts reported batch by batch.
async fn seed(url: &str, batches: Vec<Vec<SeedCustomer>>) -> (Result<SeedCounts, String>, u64) {
    migrated_store(url).await.close().await;
    let (loaded, reported) = load(url, batches, |_| {}).await;
    (loaded.map_err(|err| err.to_string()), reported)
}

/// [`seed::load`] of `batches` into the database at `url`, calling `each` as each batch is reported.
async fn load(
    url: &str,
    batches: Vec<Vec<SeedCustomer>>,
    mut each: impl FnMut(SeedCounts),
) -> (customer_context::error::Result<SeedCounts>, u64) {
    let (sender, batches_rx) = mpsc::channel(1);
    let feed = async move {
        for batch in batches {
            if sender.send(batch).await.is_err() {
                break;
            }
        }
    };
    let mut reported = 0;
    let settings = DatabaseSettings::new(url);
    let load = seed::load(&settings, batches_rx, |written| {
        reported += written.customers;
        each(written);
    });
    let ((), loaded) = within("seeding", async { tokio::join!(feed, load) }).await;
    (loaded, reported)
}

/// [`load`] of `batches` into the SQLite database at `url`, noting as each batch is reported whether the
/// database has a write-ahead log then.
async fn load_noting_the_log(
    url: &str,
    batches: Vec<Vec<SeedCustomer>>,
) -> (SeedCounts, u64, Vec<bool>) {
    let wal = wal_of(url);
    let mut logged = Vec::new();
    let (loaded, reported) = load(url, batches, |_| logged.push(wal.exists())).await;
    (loaded.expect("the load"), reported, logged)
}

/// The journal mode of the SQLite database in `file`.
fn journal_mode_of(file: &std::path::Path) -> String {
    rusqlite::Connection::open(file)
        .expect("the database file")
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("the journal mode")
}

/// The write-ahead log of the SQLite database at `url`.
fn wal_of(url: &str) -> std::path::PathBuf {
    let mut wal = sqlite_file(url).into_os_string();
    wal.push("-wal");
    wal.into()
}

fn search_names(found: &[pb::Customer]) -> Vec<String> {
    found.iter().map(|c| c.last_name.clone()).collect()
}

#[apply(backends)]
#[tokio::test]
async fn seeded_customers_are_searchable_and_the_index_follows_writes_after_the_load(
    backend: Backend,
) {
    let db = or_skip!(TestDb::new(backend).await);
    let batches = batches_of_ten(3);
    let (loaded, reported) = seed(db.url(), batches).await;
    let counts = loaded.expect("seeded");
    assert_eq!(counts.customers, 30);
    assert_eq!(reported, 30, "every batch reported as it went in");

    let app = TestApp::spawn_on(db.url()).await;
    let found = app.search_customers("seeded").await;
    assert_eq!(found.len(), 30, "{:?}", search_names(&found));
    assert_eq!(
        search_names(&app.search_customers("person17").await),
        ["Person17"]
    );
    // Prefixes, and the phone in another written form.
    assert_eq!(app.search_customers("perso").await.len(), 30);
    assert_eq!(
        search_names(&app.search_customers("(617) 555-0023").await),
        ["Person23"]
    );
    let by_phone = app
        .lookup_customers(Key::Phone("+1 617 555 0005".to_owned()))
        .await
        .expect("lookup");
    assert_eq!(search_names(&by_phone), ["Person5"]);

    // The index still follows every write: a customer created, renamed and deleted after the load.
    let later = app.create_customer(customer("Late", "Arrival")).await;
    assert_eq!(
        search_names(&app.search_customers("arriv").await),
        ["Arrival"]
    );
    let mut renamed = later.clone();
    renamed.last_name = "Newcomer".to_owned();
    app.update_customer("ana", renamed).await.expect("renamed");
    assert!(app.search_customers("arriv").await.is_empty());
    assert_eq!(
        search_names(&app.search_customers("newcom").await),
        ["Newcomer"]
    );
    app.shutdown().await;
}

#[apply(backends)]
#[tokio::test]
async fn a_load_that_fails_leaves_nothing_of_itself(backend: Backend) {
    let db = or_skip!(TestDb::new(backend).await);
    let (first, _) = seed(db.url(), vec![vec![seeded(1, "S-1".to_owned())]]).await;
    first.expect("the first load");
    // The second load's last customer repeats the first load's customer number.
    let clashing = vec![
        seeded(2, "S-2".to_owned()),
        seeded(3, "S-3".to_owned()),
        seeded(4, "S-1".to_owned()),
    ];
    let (second, _) = seed(db.url(), vec![clashing]).await;
    let error = second.expect_err("a customer number seeded twice");
    assert!(
        error.contains("UNIQUE") || error.contains("unique"),
        "{error}"
    );

    let app = TestApp::spawn_on(db.url()).await;
    assert_eq!(
        search_names(&app.search_customers("seeded").await),
        ["Person1"]
    );
    assert!(
        app.lookup_customers(Key::Phone("+16175550002".to_owned()))
            .await
            .expect("lookup")
            .is_empty()
    );
    // The search index is whole and still indexes new customers.
    app.create_customer(customer("Seeded", "Later")).await;
    assert_eq!(
        search_names(&app.search_customers("seeded").await),
        ["Later", "Person1"]
    );
    app.shutdown().await;
}

/// On SQLite the load is one transaction: a load given up before its last batch (its caller gone) keeps nothing.
#[tokio::test]
async fn a_load_given_up_before_its_last_batch_keeps_nothing_on_sqlite() {
    let db = or_skip!(TestDb::new(Backend::Sqlite).await);
    let store = migrated_store(db.url()).await;
    let (sender, batches) = mpsc::channel(1);
    sender
        .send((0..5).map(|i| seeded(i, format!("S-{i}"))).collect())
        .await
        .expect("the first batch");
    let mut reported = 0;
    // The sender stays open: the load waits for more until the caller gives up.
    let given_up = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        store.seed_all(batches, |written| reported += written.customers),
    )
    .await;
    assert!(
        given_up.is_err(),
        "the load cannot finish without its last batch"
    );
    assert_eq!(
        reported, 5,
        "the first batch went in before the caller gave up"
    );
    drop(sender);
    store.close().await;

    let app = TestApp::spawn_on(db.url()).await;
    assert!(app.search_customers("seeded").await.is_empty());
    app.create_customer(customer("Seeded", "Later")).await;
    assert_eq!(
        search_names(&app.search_customers("seeded").await),
        ["Later"]
    );
    app.shutdown().await;
}

/// The indexes of the SQLite database at `url` (name and definition), read from its schema.
fn sqlite_indexes(url: &str) -> Vec<(String, Option<String>)> {
    let conn = rusqlite::Connection::open(sqlite_file(url)).expect("the database file");
    let mut statement = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name")
        .expect("the schema query");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .and_then(Iterator::collect)
        .expect("the indexes")
}

/// A load into empty tables builds their indexes once at its end: they come back as the migrations made them,
/// lookups use them, and a unique one still refuses a load that repeats a customer number within itself.
#[tokio::test]
async fn a_load_into_empty_tables_leaves_every_index_as_migrated_on_sqlite() {
    let db = or_skip!(TestDb::new(Backend::Sqlite).await);
    let store = migrated_store(db.url()).await;
    store.close().await;
    let migrated = sqlite_indexes(db.url());
    for index in ["contact_keys_match", "customers_customer_number"] {
        assert!(
            migrated.iter().any(|(name, _)| name == index),
            "{index} in {migrated:?}"
        );
    }

    let (clashing, _) = seed(
        db.url(),
        vec![
            vec![seeded(1, "S-1".to_owned())],
            vec![seeded(2, "S-1".to_owned())],
        ],
    )
    .await;
    let error = clashing.expect_err("a customer number seeded twice in one load");
    assert!(
        error.contains("UNIQUE") || error.contains("unique"),
        "{error}"
    );
    assert_eq!(sqlite_indexes(db.url()), migrated);

    let (loaded, reported) = seed(
        db.url(),
        vec![(0..40).map(|i| seeded(i, format!("S-{i}"))).collect()],
    )
    .await;
    assert_eq!(loaded.expect("the load").customers, 40);
    assert_eq!(reported, 40);
    assert_eq!(sqlite_indexes(db.url()), migrated);

    let app = TestApp::spawn_on(db.url()).await;
    let found = app
        .lookup_customers(Key::Phone("+16175550007".to_owned()))
        .await
        .expect("lookup");
    assert_eq!(
        found
            .iter()
            .map(|c| c.customer_number.as_str())
            .collect::<Vec<_>>(),
        ["S-7"]
    );
    app.shutdown().await;
}

/// The search index of the SQLite database at `url`: how many segments (FTS5 b-trees) it has, and its settings
/// `automerge` and `hashsize` as FTS5 applies them (its defaults where none is set).
fn search_index(url: &str) -> (i64, i64, i64) {
    use rusqlite::OptionalExtension as _;
    let conn = rusqlite::Connection::open(sqlite_file(url)).expect("the database file");
    let segments = conn
        .query_row(
            "SELECT count(DISTINCT segid) FROM customers_fts_idx",
            [],
            |row| row.get(0),
        )
        .expect("the index's segments");
    let setting = |name: &str, default: i64| {
        conn.query_row(
            "SELECT v FROM customers_fts_config WHERE k = ?1",
            [name],
            |row| row.get::<_, i64>(0),
        )
        .optional()
        .expect("the index's setting")
        .unwrap_or(default)
    };
    (
        segments,
        setting("automerge", 4),
        setting("hashsize", 1 << 20),
    )
}

/// A load leaves the search index in one segment, whatever it found there and wrote, with its settings as they
/// were: a search reads one segment per word.
#[tokio::test]
async fn a_load_leaves_the_search_index_in_one_segment_and_its_settings_as_they_were_on_sqlite() {
    let db = or_skip!(TestDb::new(Backend::Sqlite).await);
    migrated_store(db.url()).await.close().await;
    rusqlite::Connection::open(sqlite_file(db.url()))
        .expect("the database file")
        .execute_batch("INSERT INTO customers_fts (customers_fts, rank) VALUES ('automerge', 8)")
        .expect("a setting of the index");
    let app = TestApp::spawn_on(db.url()).await;
    for name in ["Alpha", "Beta", "Gamma"] {
        app.create_customer(customer("Earlier", name)).await;
    }
    app.shutdown().await;
    assert_eq!(search_index(db.url()), (3, 8, 1 << 20), "a segment a write");

    let batches = batches_of_ten(2);
    seed(db.url(), batches).await.0.expect("seeded");
    assert_eq!(search_index(db.url()), (1, 8, 1 << 20));

    let app = TestApp::spawn_on(db.url()).await;
    assert_eq!(app.search_customers("earlier").await.len(), 3);
    assert_eq!(app.search_customers("seeded").await.len(), 20);
    assert_eq!(
        search_names(&app.search_customers("person1").await),
        [
            "Person19", "Person18", "Person17", "Person16", "Person15", "Person14", "Person13",
            "Person12", "Person11", "Person10", "Person1"
        ]
    );
    app.shutdown().await;
}

/// A load that has the SQLite file to itself writes into the file, not into the write-ahead log (which would
/// then be copied into the file again), and leaves the file in WAL mode for the service.
#[tokio::test]
async fn a_load_with_the_file_to_itself_writes_into_the_file_and_leaves_it_in_wal_mode_on_sqlite() {
    let db = or_skip!(TestDb::new(Backend::Sqlite).await);
    migrated_store(db.url()).await.close().await;
    let (loaded, reported, logged) = load_noting_the_log(db.url(), batches_of_ten(3)).await;
    assert_eq!(loaded.customers, 30);
    assert_eq!(reported, 30);
    assert_eq!(logged, [false; 3], "no write-ahead log while loading");
    assert_eq!(journal_mode_of(&sqlite_file(db.url())), "wal");

    let app = TestApp::spawn_on(db.url()).await;
    assert_eq!(app.search_customers("seeded").await.len(), 30);
    app.create_customer(customer("Seeded", "Later")).await;
    assert_eq!(app.search_customers("seeded").await.len(), 31);
    app.shutdown().await;
}

/// A load into a SQLite file the service has open goes through the write-ahead log, and the service reads what
/// it wrote as soon as it is committed.
#[tokio::test]
async fn a_load_into_a_file_the_service_has_open_goes_through_the_log_on_sqlite() {
    let db = or_skip!(TestDb::new(Backend::Sqlite).await);
    let app = TestApp::spawn_on(db.url()).await;
    app.create_customer(customer("Earlier", "Alpha")).await;
    let (loaded, reported, logged) = load_noting_the_log(db.url(), batches_of_ten(2)).await;
    assert_eq!(loaded.customers, 20);
    assert_eq!(reported, 20);
    assert_eq!(logged, [true; 2]);
    assert_eq!(app.search_customers("seeded").await.len(), 20);
    assert_eq!(
        search_names(&app.search_customers("earlier").await),
        ["Alpha"]
    );
    app.shutdown().await;
}

/// A load out of WAL mode that dies halfway leaves its pages partly written into the file, with the rollback
/// journal beside it. The service, opening the file, rolls the journal back and sets WAL mode again: nothing of
/// the load is left, and the service reads and writes as before.
#[tokio::test]
async fn a_load_that_dies_out_of_wal_mode_leaves_nothing_once_the_service_opens_the_file_on_sqlite()
{
    let db = or_skip!(TestDb::new(Backend::Sqlite).await);
    migrated_store(db.url()).await.close().await;
    let file = sqlite_file(db.url());
    let migrated_len = std::fs::metadata(&file).expect("the file").len();
    let crashed = tempfile::tempdir().expect("a directory");
    let image = crashed.path().join("cc.db");
    {
        let conn = rusqlite::Connection::open(&file).expect("the database file");
        let mode: String = conn
            .query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))
            .expect("the journal mode");
        assert_eq!(mode, "delete");
        // A cache of ten pages: the load's pages spill into the file long before it would commit.
        conn.execute_batch("PRAGMA cache_size = 10; BEGIN IMMEDIATE")
            .expect("the load's transaction");
        let mut insert = conn
            .prepare(
                "INSERT INTO interactions (interaction_id, candidate_ids, activity_id, agent, create_time) \
                 VALUES (?1, '[]', ?1, ?2, 0)",
            )
            .expect("the insert");
        for i in 0..20_000 {
            insert
                .execute(rusqlite::params![format!("load-{i}"), "x".repeat(200)])
                .expect("a row");
        }
        // The files as a crash at this moment would leave them.
        std::fs::copy(&file, &image).expect("the file's image");
        let mut journal = file.clone().into_os_string();
        journal.push("-journal");
        let mut journal_image = image.clone().into_os_string();
        journal_image.push("-journal");
        std::fs::copy(&journal, &journal_image).expect("the journal's image");
    }
    assert!(
        std::fs::metadata(&image).expect("the image").len() > migrated_len,
        "the load's pages went into the file before the crash"
    );

    let url = format!("sqlite://{}?mode=rwc", image.display());
    let app = TestApp::spawn_on(&url).await;
    app.create_customer(customer("After", "Crash")).await;
    assert_eq!(
        search_names(&app.search_customers("after").await),
        ["Crash"]
    );
    app.shutdown().await;
    assert_eq!(journal_mode_of(&image), "wal");
    let conn = rusqlite::Connection::open(&image).expect("the image");
    let loaded: i64 = conn
        .query_row("SELECT count(*) FROM interactions", [], |row| row.get(0))
        .expect("the count");
    assert_eq!(loaded, 0, "nothing of the load is left");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("the check");
    assert_eq!(check, "ok");
}

/// Refreshing the planner's statistics after a load is not held to the calls' statement timeout: sampling four
/// large tables on a busy machine can take longer, and the load would fail at its very end.
#[tokio::test]
async fn the_statistics_after_a_load_are_refreshed_whatever_the_statement_timeout_on_postgres() {
    let db = or_skip!(TestDb::new(Backend::Postgres).await);
    let (loaded, _) = seed(db.url(), batches_of_ten(20)).await;
    assert_eq!(loaded.expect("the load").customers, 200);
    let mut settings = DatabaseSettings::new(db.url());
    settings.db_statement_timeout = std::time::Duration::from_millis(1);
    let store = Store::connect(&settings).await.expect("store");
    store.analyze().await.expect("the statistics refreshed");
    store.close().await;
}
