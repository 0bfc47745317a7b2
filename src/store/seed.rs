//! Bulk seeding for benchmarks and demos: many customers, with their requests and activities (contact lookup rows
//! included), written in large transactions through the same row conversions as the repository (so the schema
//! is known in one place only).
//!
//! - PostgreSQL: a transaction per batch, of multi-row inserts.
//! - A SQLite file: the whole load in one transaction on a write connection (the writer's own, or with [`load`]
//!   the only one open, which writes into the file without the write-ahead log), with one prepared single-row
//!   insert per row. A multi-row insert needs a statement journal, and each statement journal makes
//!   the full-text index write what it holds as a new segment, which it then merges again and again. The search
//!   index's insert triggers are set aside inside the transaction and each batch's customers are indexed in one
//!   statement.
//!
//! Seeded records are history, as an import would be: no change-log rows are written and no watcher is told.
//! The caller supplies complete records (ids, versions, times, normalized contact points); nothing is validated
//! here beyond what the database enforces (unique ids and customer numbers, foreign keys).

use std::collections::VecDeque;

use rusqlite::{Connection, OptionalExtension as _};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ConnectionTrait, DbBackend, EntityTrait, IdenStatic, Iterable,
    QueryTrait, TransactionTrait,
    sea_query::{Alias, Expr, ExprTrait as _, Query},
};
use tokio::sync::mpsc;

use super::{
    Store, activities, customers,
    entity::{self},
    open_context::{database_file, db_error, open_writer, run},
    requests,
    sqlite::{checkpoint::forced_pages, shape},
};
use crate::{
    config::DatabaseSettings,
    domain::{activity::Activity, customer::Customer, request::Request},
    error::{Error, Result},
};

/// Rows per `INSERT`: the widest table (activities) has 23 columns, so 200 rows bind 4,600 values, well under
/// SQLite's limit of 32,766 bound parameters per statement.
const ROWS_PER_STATEMENT: usize = 200;

/// Page cache of the write connection while seeding (negative: KiB), 1 GiB instead of SQLite's 2 MiB: the pages
/// a load touches stay in memory until it commits, instead of spilling to the write-ahead log and being read back.
const SQLITE_SEED_CACHE_SIZE: i64 = -1_048_576;

/// One customer to seed, with its journey. The requests and activities must belong to the customer.
#[derive(Clone, Debug)]
pub struct SeedCustomer {
    pub customer: Customer,
    pub requests: Vec<Request>,
    pub activities: Vec<Activity>,
}

/// What one [`Store::seed`] call wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeedCounts {
    pub customers: u64,
    pub requests: u64,
    pub activities: u64,
}

impl SeedCounts {
    fn add(&mut self, other: SeedCounts) {
        self.customers += other.customers;
        self.requests += other.requests;
        self.activities += other.activities;
    }
}

/// A seeding task's outcome, or why it ended without one.
fn joined(
    task: std::result::Result<Result<SeedCounts>, tokio::task::JoinError>,
) -> Result<SeedCounts> {
    task.map_err(|err| Error::internal(format!("a seeding task failed: {err}")))?
}

/// The rows of a batch, table by table, in the order they are inserted.
struct SeedRows {
    customers: Vec<entity::customers::ActiveModel>,
    contact_keys: Vec<entity::contact_keys::ActiveModel>,
    requests: Vec<entity::requests::ActiveModel>,
    activities: Vec<entity::activities::ActiveModel>,
}

impl SeedRows {
    fn of(batch: &[SeedCustomer]) -> Result<SeedRows> {
        Ok(SeedRows {
            customers: batch
                .iter()
                .map(|seed| customers::to_active(&seed.customer))
                .collect::<Result<_>>()?,
            // Seeded customers are new: their lookup rows are only inserted.
            contact_keys: batch
                .iter()
                .flat_map(|seed| {
                    customers::contact_key_rows(
                        &seed.customer.id,
                        &seed.customer.data.contact_points,
                    )
                })
                .collect(),
            requests: rows_of(batch, |seed| &seed.requests, requests::to_active)?,
            activities: rows_of(batch, |seed| &seed.activities, activities::to_active)?,
        })
    }
}

/// The rows of every record `records` picks from the customers of `batch`.
fn rows_of<'a, R: 'a, A>(
    batch: &'a [SeedCustomer],
    records: impl Fn(&'a SeedCustomer) -> &'a Vec<R>,
    to_active: impl Fn(&R) -> Result<A>,
) -> Result<Vec<A>> {
    batch.iter().flat_map(records).map(to_active).collect()
}

impl Store {
    /// Refreshes the planner's statistics after a bulk load (PostgreSQL; its autovacuum would get there later).
    /// The calls' statement timeout does not apply: sampling four large tables on a busy machine can take longer,
    /// and a load should not fail at its very end for it.
    pub async fn analyze(&self) -> Result<()> {
        if self.backend == DbBackend::Postgres {
            let txn = self.write.begin().await?;
            txn.execute_unprepared("SET LOCAL statement_timeout = 0")
                .await?;
            txn.execute_unprepared("ANALYZE customers, contact_keys, requests, activities")
                .await?;
            txn.commit().await?;
        }
        Ok(())
    }

    /// Inserts every batch `batches` yields, telling `written` what each one wrote, and returns the totals.
    /// Writes no change-log rows.
    ///
    /// On a SQLite file the whole load is one transaction on the database writer's connection: all of it or,
    /// on error, none of it; the next batch's rows are made ready while the writer inserts this one's. Elsewhere
    /// each batch is its own transaction (see [`Store::seed`]), the next one made ready meanwhile.
    pub async fn seed_all(
        &self,
        mut batches: mpsc::Receiver<Vec<SeedCustomer>>,
        mut written: impl FnMut(SeedCounts),
    ) -> Result<SeedCounts> {
        let Some(writer) = &self.group_commit else {
            let mut total = SeedCounts::default();
            let mut in_flight = VecDeque::with_capacity(2);
            let mut account = |counts: SeedCounts| {
                total.add(counts);
                written(counts);
            };
            while let Some(batch) = batches.recv().await {
                let store = self.clone();
                in_flight.push_back(tokio::spawn(async move { store.seed(&batch).await }));
                if in_flight.len() == 2
                    && let Some(oldest) = in_flight.pop_front()
                {
                    account(joined(oldest.await)?);
                }
            }
            while let Some(oldest) = in_flight.pop_front() {
                account(joined(oldest.await)?);
            }
            return Ok(total);
        };
        let loaded = feed_sqlite_load(batches, written, |to_insert, progress| {
            writer.alone(move |conn| seed_sqlite(conn, to_insert, &progress))
        })
        .await;
        let total = loaded?;
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.committed();
        }
        Ok(total)
    }

    /// Inserts `batch` in one write transaction: all of it or, on error, none of it. Writes no change-log rows.
    pub async fn seed(&self, batch: &[SeedCustomer]) -> Result<SeedCounts> {
        let rows = SeedRows::of(batch)?;
        let txn = self.begin_write("seed").await?;
        if self.backend == DbBackend::Sqlite {
            // A big page cache keeps a large transaction from spilling pages to the WAL before it commits.
            txn.execute_unprepared(&format!("PRAGMA cache_size = {SQLITE_SEED_CACHE_SIZE}"))
                .await?;
        }
        let customers =
            insert_chunked::<entity::customers::Entity, _>(&txn, rows.customers).await?;
        insert_chunked::<entity::contact_keys::Entity, _>(&txn, rows.contact_keys).await?;
        let counts = SeedCounts {
            customers,
            requests: insert_chunked::<entity::requests::Entity, _>(&txn, rows.requests).await?,
            activities: insert_chunked::<entity::activities::Entity, _>(&txn, rows.activities)
                .await?,
        };
        self.commit(txn).await?;
        Ok(counts)
    }
}

/// Inserts every batch `batches` yields into the database of `settings`, whose schema is migrated, telling
/// `written` what each one wrote, and returns the totals; as [`Store::seed_all`] on a store of its own, but on a
/// SQLite file the load's connection is the only one open.
///
/// A SQLite file is then taken out of WAL mode for the load, which writes its pages into the file itself
/// (through a rollback journal, nearly empty for a load into new pages) instead of into the write-ahead log
/// first and then, in a checkpoint, into the file again; WAL mode is set back after it. Should another
/// connection have the file open, the load goes through the log as [`Store::seed_all`]'s does.
pub async fn load(
    settings: &DatabaseSettings,
    batches: mpsc::Receiver<Vec<SeedCustomer>>,
    written: impl FnMut(SeedCounts),
) -> Result<SeedCounts> {
    let Some(path) = database_file(&settings.database_url) else {
        let store = Store::connect(settings).await?;
        let loaded = match store.seed_all(batches, written).await {
            Ok(total) => store.analyze().await.map(|()| total),
            Err(err) => Err(err),
        };
        store.close().await;
        return loaded;
    };
    let synchronous = settings.sqlite_synchronous.pragma();
    let forced_pages = forced_pages(settings.sqlite_wal_limit_mib);
    feed_sqlite_load(batches, written, |to_insert, progress| async move {
        tokio::task::spawn_blocking(move || {
            let mut conn = open_writer(&path, synchronous, forced_pages)?;
            load_alone(&mut conn, to_insert, &progress)
        })
        .await
        .map_err(|err| Error::internal(format!("the load's thread failed: {err}")))?
    })
    .await
}

/// [`seed_sqlite`] on `conn`, out of WAL mode if no other connection has the file open (see [`load`]).
fn load_alone(
    conn: &mut Connection,
    batches: mpsc::Receiver<Load>,
    progress: &mpsc::UnboundedSender<SeedCounts>,
) -> Result<SeedCounts> {
    let direct = match journal_mode(conn, "DELETE") {
        Ok(mode) => mode.eq_ignore_ascii_case("delete"),
        Err(error) => {
            tracing::warn!(
                %error,
                "the database file is open elsewhere, so the load goes through the write-ahead log (slower)"
            );
            false
        }
    };
    let loaded = seed_sqlite(conn, batches, progress);
    if direct && let Err(error) = journal_mode(conn, "WAL") {
        // The service sets WAL mode again whenever it opens the file, so nothing is lost.
        tracing::warn!(%error, "the database file could not be set back to WAL mode after the load");
    }
    loaded
}

/// Sets the journal mode of `conn`'s database to `mode` and answers the mode it is in then.
fn journal_mode(conn: &Connection, mode: &str) -> Result<String> {
    conn.query_row(&format!("PRAGMA journal_mode = {mode}"), [], |row| {
        row.get(0)
    })
    .map_err(db_error)
}

/// Runs a SQLite load: `load` is given the receiving end of the rows of every batch `batches` yields and where to
/// report what each batch wrote, and runs [`seed_sqlite`] with them on a write connection's thread; `written` is
/// told of each batch as it is written.
async fn feed_sqlite_load<L>(
    mut batches: mpsc::Receiver<Vec<SeedCustomer>>,
    mut written: impl FnMut(SeedCounts),
    load: impl FnOnce(mpsc::Receiver<Load>, mpsc::UnboundedSender<SeedCounts>) -> L,
) -> Result<SeedCounts>
where
    L: Future<Output = Result<SeedCounts>>,
{
    let (rows, to_insert) = mpsc::channel::<Load>(1);
    let (progress, mut reports) = mpsc::unbounded_channel();
    let load = load(to_insert, progress);
    let feed = async move {
        while let Some(batch) = batches.recv().await {
            let ready = match SeedRows::of(&batch) {
                Ok(ready) => Load::Rows(ready),
                // A batch that cannot be converted ends the load, which rolls back.
                Err(err) => Load::Failed(err),
            };
            let failed = matches!(ready, Load::Failed(_));
            // A load that stopped has the error to report.
            if rows.send(ready).await.is_err() || failed {
                return;
            }
        }
        let _ = rows.send(Load::Done).await;
    };
    let report = async {
        while let Some(counts) = reports.recv().await {
            written(counts);
        }
    };
    let (loaded, (), ()) = tokio::join!(load, feed, report);
    loaded
}

/// Inserts `rows` in statements of [`ROWS_PER_STATEMENT`] rows; returns how many were inserted.
async fn insert_chunked<E, A>(db: &impl ConnectionTrait, rows: Vec<A>) -> Result<u64>
where
    E: EntityTrait,
    A: ActiveModelTrait<Entity = E>,
{
    let mut inserted = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        inserted += E::insert_many(chunk).exec_without_returning(db).await?;
    }
    Ok(inserted)
}

/// What the writer's side of a load is told next.
enum Load {
    Rows(SeedRows),
    /// A batch could not be converted: the load rolls back with this error.
    Failed(Error),
    /// Every batch was sent: the load commits.
    Done,
}

/// The triggers that index an inserted customer for search; a seeding transaction drops them and indexes its
/// customers in one statement instead.
const SEARCH_INSERT_TRIGGERS: [&str; 2] =
    ["customers_search_assign_key", "customers_search_insert"];

/// Inserts every batch of rows `batches` yields in one transaction on the SQLite write connection `conn`,
/// telling `progress` what each batch wrote: all of them or, on error, none.
fn seed_sqlite(
    conn: &mut Connection,
    mut batches: mpsc::Receiver<Load>,
    progress: &mpsc::UnboundedSender<SeedCounts>,
) -> Result<SeedCounts> {
    with_setting(conn, "cache_size", SQLITE_SEED_CACHE_SIZE, |conn| {
        run(conn, "BEGIN IMMEDIATE").map_err(db_error)?;
        let written = seed_in_transaction(conn, &mut batches, progress);
        let ended = match &written {
            Ok(_) => run(conn, "COMMIT").inspect_err(|_| {
                let _ = run(conn, "ROLLBACK");
            }),
            Err(_) => run(conn, "ROLLBACK"),
        };
        let counts = written?;
        ended.map_err(db_error)?;
        Ok(counts)
    })
}

/// Runs `f` with the connection's setting `pragma` at `value`, then sets it back to what it was, whatever `f`
/// did: the writer's connection keeps its usual settings after a load.
fn with_setting<T>(
    conn: &Connection,
    pragma: &str,
    value: i64,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let before: i64 = conn
        .query_row(&format!("PRAGMA {pragma}"), [], |row| row.get(0))
        .map_err(db_error)?;
    conn.execute_batch(&format!("PRAGMA {pragma} = {value}"))
        .map_err(db_error)?;
    let outcome = f(conn);
    let restored = conn.execute_batch(&format!("PRAGMA {pragma} = {before}"));
    let value = outcome?;
    restored.map_err(db_error)?;
    Ok(value)
}

fn seed_in_transaction(
    conn: &Connection,
    batches: &mut mpsc::Receiver<Load>,
    progress: &mpsc::UnboundedSender<SeedCounts>,
) -> Result<SeedCounts> {
    let triggers = set_aside_triggers(conn)?;
    let indexes = set_aside_indexes(conn)?;
    let search_settings = search_index_for_load(conn)?;
    let mut key: i64 = conn
        .query_row(
            &rendered(
                Query::select()
                    .expr(Expr::col(Alias::new("search_key")).max())
                    .from(entity::customers::Entity),
            ),
            [],
            |row| row.get::<_, Option<i64>>(0),
        )
        .map_err(db_error)?
        .unwrap_or(0);
    let index = rendered(
        Query::insert()
            .into_table(Alias::new("customers_fts"))
            .columns([Alias::new("rowid"), Alias::new("search_text")])
            .select_from(
                Query::select()
                    .columns([Alias::new("search_key"), Alias::new("search_text")])
                    .from(entity::customers::Entity)
                    // Bound to the last key before each batch.
                    .and_where(Expr::col(Alias::new("search_key")).gt(0))
                    .to_owned(),
            )
            .map_err(|err| Error::internal(format!("the search index statement: {err}")))?,
    );
    let mut statements = Statements::default();
    let mut total = SeedCounts::default();
    loop {
        let rows = match batches.blocking_recv() {
            Some(Load::Rows(rows)) => rows,
            Some(Load::Done) => break,
            Some(Load::Failed(err)) => return Err(err),
            // The caller stopped feeding without saying the load was whole (it was dropped): keep none of it.
            None => return Err(Error::internal("the load ended before its last batch")),
        };
        let indexed_after = key;
        let mut counts = SeedCounts {
            customers: statements.customers.insert_all(
                conn,
                rows.customers,
                |row| customer_insert(row.clone()),
                |row| {
                    key += 1;
                    let mut values = shape::insert_values(row)?;
                    values.push(rusqlite::types::Value::Integer(key));
                    Ok(values)
                },
            )?,
            ..SeedCounts::default()
        };
        // This batch's words, indexed in one statement.
        conn.prepare_cached(&index)
            .and_then(|mut statement| statement.execute([indexed_after]))
            .map_err(db_error)?;
        statements
            .contact_keys
            .insert_models(conn, rows.contact_keys)?;
        counts.requests = statements.requests.insert_models(conn, rows.requests)?;
        counts.activities = statements.activities.insert_models(conn, rows.activities)?;
        total.add(counts);
        let _ = progress.send(counts);
    }
    build_indexes(conn, &indexes)?;
    search_index_after_load(conn, search_settings)?;
    for sql in &triggers {
        conn.execute_batch(sql).map_err(db_error)?;
    }
    Ok(total)
}

/// The tables a load writes, whose secondary indexes it may build at its end.
const SEEDED_TABLES: [&str; 4] = ["customers", "contact_keys", "requests", "activities"];

/// The index each batch's search indexing reads its customers by: kept through the load.
const SEARCH_KEY_INDEX: &str = "customers_search_key";

/// The search index's own settings (FTS5's, kept in `customers_fts_config`) during a load, with FTS5's defaults:
/// `automerge` 0, so that the segments a load writes are not merged while it writes more, and `hashsize` 1 GiB
/// instead of 1 MiB, so that it writes a few large segments rather than one per MiB of entries. At its end the
/// load merges the index into one segment ([`search_index_after_load`]), in about 4 s for a million customers,
/// which the load saves on merging as it goes. A search then looks each word up in one b-tree instead of fifteen.
const SEARCH_INDEX_LOAD_SETTINGS: [(&str, i64, i64); 2] =
    [("automerge", 0, 4), ("hashsize", 1 << 30, 1 << 20)];

/// Sets the search index up for a load; returns its settings from before, to set back.
fn search_index_for_load(conn: &Connection) -> Result<Vec<(&'static str, i64)>> {
    let mut before = Vec::new();
    for (name, during_load, default) in SEARCH_INDEX_LOAD_SETTINGS {
        let current = conn
            .query_row(
                "SELECT v FROM customers_fts_config WHERE k = ?1",
                [name],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map_err(db_error)?
            .unwrap_or(default);
        set_search_index(conn, name, during_load)?;
        before.push((name, current));
    }
    Ok(before)
}

/// Merges the search index into one segment (FTS5's `optimize`) and sets back the settings `before` the load.
fn search_index_after_load(conn: &Connection, before: Vec<(&'static str, i64)>) -> Result<()> {
    conn.execute_batch("INSERT INTO customers_fts (customers_fts) VALUES ('optimize')")
        .map_err(db_error)?;
    for (name, value) in before {
        set_search_index(conn, name, value)?;
    }
    Ok(())
}

/// Sets the search index's setting `name` (an FTS5 configuration option) to `value`.
fn set_search_index(conn: &Connection, name: &str, value: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO customers_fts (customers_fts, rank) VALUES (?1, ?2)",
        (name, value),
    )
    .map_err(db_error)?;
    Ok(())
}

/// Drops the secondary indexes of the seeded tables that are empty, returning their definitions to build them
/// after the load. An index built from all its rows at once is one sort (on helper threads, see
/// [`build_indexes`]) instead of a B-tree insert per row at a random place. The indexes of the constraints the
/// tables declare (primary keys, which foreign keys check) have no SQL of their own and stay; a unique index is
/// checked when it is built. A table that already holds rows keeps its indexes: rebuilding them would cost more
/// than the load saves.
fn set_aside_indexes(conn: &Connection) -> Result<Vec<String>> {
    let mut indexes = Vec::new();
    for table in SEEDED_TABLES {
        let empty: bool = conn
            .query_row(
                &format!("SELECT NOT EXISTS (SELECT 1 FROM \"{table}\")"),
                [],
                |row| row.get(0),
            )
            .map_err(db_error)?;
        if !empty {
            continue;
        }
        let mut statement = conn
            .prepare(
                "SELECT name, sql FROM sqlite_master
                 WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL AND name <> ?2",
            )
            .map_err(db_error)?;
        let found = statement
            .query_map([table, SEARCH_KEY_INDEX], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
            .map_err(db_error)?;
        for (name, sql) in found {
            conn.execute_batch(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))
                .map_err(db_error)?;
            indexes.push(sql);
        }
    }
    Ok(indexes)
}

/// Helper threads SQLite's sorter may use while a load builds its indexes: the other core does the sorting
/// while the writer's thread merges.
const INDEX_BUILD_THREADS: i64 = 2;

/// Creates the indexes `indexes` defines (in the load's transaction: a duplicate in a unique one fails the load).
fn build_indexes(conn: &Connection, indexes: &[String]) -> Result<()> {
    if indexes.is_empty() {
        return Ok(());
    }
    with_setting(conn, "threads", INDEX_BUILD_THREADS, |conn| {
        indexes
            .iter()
            .try_for_each(|sql| conn.execute_batch(sql))
            .map_err(db_error)
    })
}

/// Drops the search insert triggers, returning their definitions to create them again.
fn set_aside_triggers(conn: &Connection) -> Result<Vec<String>> {
    let mut triggers = Vec::new();
    for name in SEARCH_INSERT_TRIGGERS {
        let sql: Option<String> = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1",
                [name],
                |row| row.get(0),
            )
            .optional()
            .map_err(db_error)?;
        if let Some(sql) = sql {
            conn.execute_batch(&format!("DROP TRIGGER {name}"))
                .map_err(db_error)?;
            triggers.push(sql);
        }
    }
    Ok(triggers)
}

/// The insert of one customer row with its search key (a SQLite column the shared entity does not know).
fn customer_insert(mut row: entity::customers::ActiveModel) -> Result<String> {
    let mut columns = Vec::new();
    let mut values: Vec<Expr> = Vec::new();
    for column in entity::customers::Column::iter() {
        if let ActiveValue::Set(value) | ActiveValue::Unchanged(value) = row.take(column) {
            columns.push(Alias::new(column.as_str()));
            values.push(Expr::val(value));
        }
    }
    columns.push(Alias::new("search_key"));
    values.push(Expr::val(0));
    let mut insert = Query::insert();
    insert
        .into_table(entity::customers::Entity)
        .columns(columns);
    insert
        .values(values)
        .map(|insert| rendered(insert))
        .map_err(|err| Error::internal(format!("the customer insert statement: {err}")))
}

/// The insert statements of a load, one per table, prepared for the shape of the table's latest row.
#[derive(Default)]
struct Statements<'conn> {
    customers: Prepared<'conn>,
    contact_keys: Prepared<'conn>,
    requests: Prepared<'conn>,
    activities: Prepared<'conn>,
}

/// An insert held prepared rather than looked up by its text row after row, with the shape it was rendered for.
#[derive(Default)]
struct Prepared<'conn>(Option<(u64, rusqlite::Statement<'conn>)>);

impl<'conn> Prepared<'conn> {
    /// Inserts `rows` one at a time with the statement sea-orm's `Insert::one` makes of them; returns how many
    /// were inserted.
    fn insert_models<A: ActiveModelTrait + Clone>(
        &mut self,
        conn: &'conn Connection,
        rows: Vec<A>,
    ) -> Result<u64> {
        self.insert_all(
            conn,
            rows,
            |row| {
                Ok(<A::Entity as EntityTrait>::insert(row.clone())
                    .build(DbBackend::Sqlite)
                    .sql)
            },
            shape::insert_values,
        )
    }

    /// Inserts `rows` one at a time, with the statement `render` makes of a row's shape bound to `values`;
    /// returns how many were inserted.
    fn insert_all<A: ActiveModelTrait>(
        &mut self,
        conn: &'conn Connection,
        rows: Vec<A>,
        render: impl Fn(&A) -> Result<String>,
        mut values: impl FnMut(A) -> Result<Vec<rusqlite::types::Value>>,
    ) -> Result<u64> {
        let mut inserted = 0;
        for row in rows {
            let columns = shape::set_columns(&row)?;
            let statement = match &mut self.0 {
                Some((shape, statement)) if *shape == columns => statement,
                _ => {
                    let new = conn.prepare(&render(&row)?).map_err(db_error)?;
                    &mut self.0.insert((columns, new)).1
                }
            };
            inserted += statement
                .execute(rusqlite::params_from_iter(values(row)?))
                .map_err(db_error)? as u64;
        }
        Ok(inserted)
    }
}

/// The SQL text of `statement`, its values left as parameters.
fn rendered(statement: &impl sea_orm::sea_query::QueryStatementWriter) -> String {
    statement.build(sea_orm::sea_query::SqliteQueryBuilder).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::customer::{Audit, CustomerData};

    #[test]
    fn a_customer_goes_in_with_sea_orms_insert_and_its_search_key() {
        let customer = Customer {
            id: "0190d9a1-0000-7000-8000-000000000001".to_owned(),
            version: 1,
            data: CustomerData {
                first_name: "Ana".to_owned(),
                ..CustomerData::default()
            },
            audit: Audit::created("seeder", 1),
            locked: false,
            anonymize_time: None,
        };
        let row = customers::to_active(&customer).unwrap();
        let sea_orm = entity::customers::Entity::insert(row.clone())
            .build(DbBackend::Sqlite)
            .sql;
        let (columns, values) = sea_orm.split_once(") VALUES (").unwrap();
        let expected = format!(
            "{columns}, \"search_key\") VALUES ({}, ?)",
            values.strip_suffix(')').unwrap()
        );
        assert_eq!(customer_insert(row.clone()).unwrap(), expected);
        // The values bound: sea-orm's, then the key.
        let sea_orm_values = entity::customers::Entity::insert(row.clone())
            .build(DbBackend::Sqlite)
            .values
            .map(|values| values.0)
            .unwrap_or_default()
            .into_iter()
            .map(|value| shape::into_sql_value(value).unwrap())
            .collect::<Vec<_>>();
        assert_eq!(shape::insert_values(row).unwrap(), sea_orm_values);
    }
}
