//! Storage: sea-orm entities, migrations and repository functions. Every write is one transaction (on a SQLite
//! file, one savepoint in a batch the database writer commits) that also appends one change-log row per changed
//! record.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    QueryTrait, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::Notify;

use crate::{
    config::{DatabaseSettings, SqliteSynchronous},
    domain::{
        change::Logged,
        field_merge::{self, ConflictPolicy},
        time::Micros,
    },
    error::{Error, Result},
    telemetry::metrics::{Metrics, Timer},
};

mod activities;
pub mod change_log;
mod customers;
pub mod entity;
pub mod keys;
mod matching;
mod merge;
pub mod migration;
mod open_context;
mod outbox;
mod ownership;
pub mod presence;
mod privacy;
pub mod recent;
mod record;
mod requests;
mod search;
pub mod seed;
mod sqlite;

pub use customers::{LookupKey, MAX_LOOKUP_RESULTS};
pub use matching::CustomerMatch;
pub use open_context::{ContextResult, OpenContext, Prefill, RequestPolicy};
pub use privacy::{ANONYMIZED_TITLE, CustomerRecords, LoggedChange};
pub use search::SearchHit;

/// How much of a SQLite database file each connection maps into memory (the OS page cache is shared; SQLite
/// caps it at its compile-time maximum, 2 GiB by default).
pub(crate) const SQLITE_MMAP_BYTES: u64 = 1 << 31;

/// PostgreSQL advisory-lock key held while migrating ("cc-migr").
const MIGRATION_LOCK: i64 = 0x0063_632d_6d69_6772;

/// Handle to the database: cheap to clone, shared by every call.
///
/// SQLite allows one writer at a time, so writes go through a dedicated single-connection pool (they queue in
/// the service instead of failing with "database is locked"), while reads use a pool of their own and never wait
/// for writers (WAL). On PostgreSQL both handles are the same pool.
#[derive(Clone, Debug)]
pub struct Store {
    read: DatabaseConnection,
    write: DatabaseConnection,
    backend: DbBackend,
    /// Woken after every commit that appended to the change log.
    log_appended: Arc<Notify>,
    /// Wakes the notification sender when a commit queued a notification.
    outbox: Arc<outbox::OutboxSignal>,
    /// On SQLite (a database file), the database writer: the thread that runs every write (`OpenContext` calls
    /// and all others) in batches and runs bulk loads, with the read connections that serve single-statement
    /// reads in the calls' own tasks.
    group_commit: Option<Arc<open_context::GroupCommit>>,
    /// On SQLite (a database file), wakes the thread that copies the write-ahead log into the file.
    checkpoints: Option<sqlite::checkpoint::Nudge>,
    /// On SQLite (a database file), its write-ahead log, whose size the metrics report.
    wal_file: Option<std::path::PathBuf>,
    /// On PostgreSQL, gives committed changes their log positions (see [`change_log::Sequencer`]).
    sequencer: Option<Arc<change_log::Sequencer>>,
    /// On PostgreSQL, new activities waiting to be written together.
    activity_batches: Arc<activities::ActivityBatches>,
    metrics: Metrics,
}

impl Store {
    /// Opens the database at `settings.database_url`, without metrics. Does not migrate.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Store> {
        Store::connect_with_metrics(settings, Metrics::default()).await
    }

    /// Opens the database at `settings.database_url`, recording transactions, batches and checkpoints in
    /// `metrics`. Does not migrate.
    pub async fn connect_with_metrics(
        settings: &DatabaseSettings,
        metrics: Metrics,
    ) -> Result<Store> {
        let url = settings.database_url.as_str();
        let backend = if url.starts_with("sqlite:") {
            DbBackend::Sqlite
        } else if settings.is_postgres() {
            DbBackend::Postgres
        } else {
            return Err(crate::error::Error::Config(format!(
                "unsupported database URL {:?}: use sqlite://FILE?mode=rwc or postgres://...",
                redact(url)
            )));
        };
        if backend == DbBackend::Sqlite {
            sqlite::allocator::configure();
        }
        let synchronous_name = settings.sqlite_synchronous.pragma();
        let synchronous = match settings.sqlite_synchronous {
            SqliteSynchronous::Normal => sea_orm::sqlx::sqlite::SqliteSynchronous::Normal,
            SqliteSynchronous::Full => sea_orm::sqlx::sqlite::SqliteSynchronous::Full,
        };
        let statement_timeout_ms = settings.db_statement_timeout.as_millis();
        let forced_pages = sqlite::checkpoint::forced_pages(settings.sqlite_wal_limit_mib);
        let options = |max: u32| {
            let mut options = ConnectOptions::new(url.to_owned());
            options
                .max_connections(max)
                .min_connections(1)
                .connect_timeout(Duration::from_secs(5))
                .acquire_timeout(Duration::from_secs(5))
                .idle_timeout(Duration::from_secs(300))
                .sqlx_logging(false);
            match backend {
                // An embedded database cannot drop a connection: pinging it on every checkout only adds a
                // round trip to the connection's thread.
                DbBackend::Sqlite => options.test_before_acquire(false),
                // A server, proxy or firewall may drop an idle connection; a busy one fails its call with
                // UNAVAILABLE and the pool replaces it.
                _ => options.test_before_acquire_if_idle_for(Duration::from_secs(10)),
            };
            if backend == DbBackend::Postgres {
                options.map_sqlx_postgres_opts(move |o| {
                    // Every statement is prepared, and PostgreSQL plans it again only when its values may
                    // call for another plan than its generic one; search's second step, whose plan depends on
                    // the words, asks for a plan of its own every time (see `search.rs`).
                    o.application_name("customer-context")
                        .options([("statement_timeout", statement_timeout_ms.to_string())])
                });
            }
            if backend == DbBackend::Sqlite {
                options.map_sqlx_sqlite_opts(move |o| {
                    o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(synchronous)
                        .busy_timeout(Duration::from_secs(10))
                        .foreign_keys(true)
                        .pragma("temp_store", "memory")
                        // Deleted and overwritten content is zeroed in the file, so anonymized personal data
                        // does not linger in free space.
                        .pragma("secure_delete", "on")
                        // Reads map the file instead of copying each page into every connection's cache.
                        .pragma("mmap_size", SQLITE_MMAP_BYTES.to_string())
                        // The checkpointer copies the log into the file; a connection copies it only when
                        // the log grew this long (see `checkpoint`).
                        .pragma("wal_autocheckpoint", forced_pages.to_string())
                });
            }
            options
        };
        let read = Database::connect(options(settings.db_max_connections)).await?;
        let write = if backend == DbBackend::Sqlite {
            Database::connect(options(1)).await?
        } else {
            read.clone()
        };
        let log_appended = Arc::new(Notify::new());
        let outbox: Arc<outbox::OutboxSignal> = Arc::default();
        let file = open_context::database_file(url).filter(|_| backend == DbBackend::Sqlite);
        let checkpoints = match &file {
            Some(file) => {
                match sqlite::checkpoint::start(file, synchronous_name, metrics.clone()) {
                    Ok(nudge) => Some(nudge),
                    // A read-only file, say: nothing is written, so nothing needs copying.
                    Err(err) => {
                        tracing::warn!(
                            error = %err,
                            "the write-ahead log is copied only by the connections that commit"
                        );
                        None
                    }
                }
            }
            None => None,
        };
        let wal_file = file.as_ref().map(|file| {
            let mut wal = file.clone().into_os_string();
            wal.push("-wal");
            std::path::PathBuf::from(wal)
        });
        let group_commit = match file.filter(|_| settings.sqlite_open_context_batches) {
            Some(file) => {
                match open_context::GroupCommit::start(
                    &file,
                    synchronous_name,
                    forced_pages,
                    write.get_sqlite_connection_pool().clone(),
                    open_context::AfterCommit {
                        log_appended: log_appended.clone(),
                        outbox: outbox.clone(),
                        checkpoints: checkpoints.clone(),
                    },
                    metrics.clone(),
                ) {
                    Ok(started) => Some(Arc::new(started)),
                    // A read-only file, say, for a command that only reads: calls take the pooled path.
                    Err(err) => {
                        tracing::warn!(error = %err, "OpenContext calls will not be recorded in batches");
                        None
                    }
                }
            }
            None => None,
        };
        Ok(Store {
            read,
            write,
            backend,
            log_appended,
            outbox,
            group_commit,
            checkpoints,
            wal_file,
            sequencer: (backend == DbBackend::Postgres).then(Arc::default),
            activity_batches: Arc::default(),
            metrics,
        })
    }

    /// Applies every pending migration and returns their names. Safe when several replicas start at once: on
    /// PostgreSQL the migrations run under an advisory lock, so one replica migrates while the others wait and
    /// then find nothing left to do.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        let lock = if self.backend == DbBackend::Postgres {
            let txn = self.write.begin().await?;
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                .await?;
            Some(txn)
        } else {
            None
        };
        let pending: Vec<String> = migration::Migrator::get_pending_migrations(&self.write)
            .await?
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        if !pending.is_empty() {
            migration::Migrator::up(&self.write, None).await?;
        }
        if let Some(txn) = lock {
            txn.commit().await?;
        }
        Ok(pending)
    }

    /// The names of the migrations not applied yet, without writing anything (for read-only commands). A
    /// database without the schema at all is an error.
    pub async fn pending_migrations(&self) -> Result<Vec<String>> {
        Ok(
            migration::Migrator::get_pending_migrations_read_only(&self.read)
                .await?
                .iter()
                .map(|m| m.name().to_owned())
                .collect(),
        )
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        self.read.execute_unprepared("SELECT 1").await?;
        Ok(())
    }

    /// Starts a write transaction of `operation` (a fixed name such as `create_customer`, which the metrics and
    /// traces report). On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), so a transaction that reads
    /// before it writes can never fail to upgrade its lock.
    pub(crate) async fn begin_write(&self, operation: &'static str) -> Result<Write> {
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        let span = crate::telemetry::otel::transaction_span(operation);
        let acquiring = self.metrics.acquiring(self.write_pool_name());
        let begun = self.write.begin_with_options(options).await;
        if let Some(acquiring) = acquiring {
            acquiring.acquired();
        }
        Ok(Write {
            txn: begun?,
            _timer: self.metrics.transaction(operation),
            _span: span,
        })
    }

    /// Runs `work` as the write transaction `operation` (a fixed name, as in [`Store::begin_write`]) and commits
    /// it, waking whoever follows the change log; answers with what `work` answered once it has committed. Should
    /// `work` fail, nothing it wrote is kept.
    ///
    /// On a SQLite file every write runs on the database writer's thread, in place on its connection, one after
    /// another in the transaction of a batch (see [`open_context::GroupCommit`]); on PostgreSQL, and on an
    /// in-memory SQLite database, in a pooled transaction of its own.
    pub(crate) async fn write<T, W>(&self, operation: &'static str, work: W) -> Result<T>
    where
        T: Send + 'static,
        W: for<'a> FnOnce(&'a Tx) -> TxFuture<'a, T> + Send + 'static,
    {
        self.write_as(operation, true, work).await
    }

    /// [`Store::write`] for a write that appends nothing to the change log.
    pub(crate) async fn write_unlogged<T, W>(&self, operation: &'static str, work: W) -> Result<T>
    where
        T: Send + 'static,
        W: for<'a> FnOnce(&'a Tx) -> TxFuture<'a, T> + Send + 'static,
    {
        self.write_as(operation, false, work).await
    }

    /// Runs `statement`, a write of one statement that appends nothing to the change log, and answers how many
    /// rows it changed: on a SQLite file as a write of its own on the writer (see [`Store::write`]), elsewhere
    /// on its own on a pooled connection.
    pub(crate) async fn execute_write(
        &self,
        operation: &'static str,
        statement: &impl QueryTrait,
    ) -> Result<u64> {
        let statement = statement.build(self.backend);
        if self.group_commit.is_none() {
            return Ok(self.write.execute_raw(statement).await?.rows_affected());
        }
        self.write_unlogged(operation, move |txn| {
            Box::pin(async move { Ok(txn.execute_raw(statement).await?.rows_affected()) })
        })
        .await
    }

    async fn write_as<T, W>(&self, operation: &'static str, logged: bool, work: W) -> Result<T>
    where
        T: Send + 'static,
        W: for<'a> FnOnce(&'a Tx) -> TxFuture<'a, T> + Send + 'static,
    {
        if let Some(writer) = &self.group_commit {
            return writer.write(operation, work).await;
        }
        let tx = Tx(Transaction::Pooled(self.begin_write(operation).await?));
        let written = work(&tx).await?;
        let Tx(Transaction::Pooled(txn)) = tx else {
            return Err(Error::internal("a pooled write changed transactions"));
        };
        if logged {
            self.commit(txn).await?;
        } else {
            self.commit_unlogged(txn).await?;
        }
        Ok(written)
    }

    /// Where reads run (see [`Reader`]).
    pub(in crate::store) fn reader(&self) -> Reader<'_> {
        match &self.group_commit {
            Some(writer) => Reader::InPlace(writer.reads()),
            None => Reader::Pooled(&self.read),
        }
    }

    /// The metrics' name of the pool writes take their connection from.
    fn write_pool_name(&self) -> &'static str {
        if self.backend == DbBackend::Sqlite {
            "write"
        } else {
            "read"
        }
    }

    /// This store's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The connection pools as the metrics report them: on SQLite the readers and the one writer, on PostgreSQL
    /// the one pool (`read`) both use.
    pub fn pool_states(&self) -> Vec<crate::telemetry::metrics::PoolState> {
        use crate::telemetry::metrics::PoolState;
        match self.backend {
            DbBackend::Sqlite => [("read", &self.read), ("write", &self.write)]
                .into_iter()
                .map(|(name, conn)| {
                    let pool = conn.get_sqlite_connection_pool();
                    PoolState {
                        name,
                        size: pool.size(),
                        idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                    }
                })
                .collect(),
            _ => {
                let pool = self.read.get_postgres_connection_pool();
                vec![PoolState {
                    name: "read",
                    size: pool.size(),
                    idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                }]
            }
        }
    }

    /// Bytes in the SQLite write-ahead log (None on PostgreSQL or in memory).
    pub fn wal_bytes(&self) -> Option<u64> {
        let wal = self.wal_file.as_ref()?;
        // No log file is an empty log (after a clean close).
        Some(std::fs::metadata(wal).map_or(0, |meta| meta.len()))
    }

    /// Commits a write transaction that appended to the change log and wakes whoever follows the log (and, on
    /// SQLite, the checkpointer). On PostgreSQL the changes get their log positions soon after, in a sequencing
    /// pass this commit asks for and does not wait for (commits of the same few milliseconds share one, see
    /// [`change_log::Sequencer`]); the feed is woken when the pass is done.
    pub(crate) async fn commit(&self, txn: Write) -> Result<()> {
        txn.commit().await?;
        self.committed(true);
        Ok(())
    }

    /// Commits a write transaction that appended nothing to the change log.
    pub(crate) async fn commit_unlogged(&self, txn: Write) -> Result<()> {
        txn.commit().await?;
        self.committed(false);
        Ok(())
    }

    /// What follows a pooled write's commit: the checkpointer and the outbox's sender are told, and for a write
    /// that appended to the change log (`logged`), its change is sequenced (PostgreSQL) and the feed woken.
    fn committed(&self, logged: bool) {
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.committed();
        }
        self.outbox.committed();
        if !logged {
            return;
        }
        if self.sequencer.is_some() {
            let store = self.clone();
            tokio::spawn(async move { store.sequence(change_log::Pace::Spaced).await });
        } else {
            self.log_appended.notify_one();
        }
    }

    /// On PostgreSQL, runs the logged write `operation` as the one statement `statement` complete in itself, in
    /// a transaction of its own instead of one opened and committed around it: one round trip to the database
    /// instead of three. Answers how many rows its top-level statement wrote; what follows a commit (see
    /// [`Store::commit`]) follows when that is more than none.
    pub(in crate::store) async fn write_statement(
        &self,
        operation: &'static str,
        statement: &impl sea_orm::StatementBuilder,
    ) -> Result<u64> {
        Ok(self.try_write_statement(operation, statement).await?)
    }

    /// [`Store::write_statement`] answering the database's error as it is, for a caller that tells a statement
    /// the database refused from one that may not have reached it.
    pub(in crate::store) async fn try_write_statement(
        &self,
        operation: &'static str,
        statement: &impl sea_orm::StatementBuilder,
    ) -> Result<u64, sea_orm::DbErr> {
        let _span = crate::telemetry::otel::transaction_span(operation);
        let _timer = self.metrics.transaction(operation);
        let written = self.write.execute(statement).await?.rows_affected();
        if written > 0 {
            self.committed(true);
        }
        Ok(written)
    }

    /// On PostgreSQL, gives every change committed so far its log position at once (no-op on SQLite, where a
    /// change has one from its insert): a watch catching up, reads of a record's history and exports call it
    /// first, so they see every write answered before them. A failure is logged, not returned: the changes are
    /// committed, and the change feed's next poll sequences them.
    pub async fn sequence_committed(&self) {
        self.sequence(change_log::Pace::Now).await;
    }

    /// Runs or joins a sequencing pass at `pace`, and wakes the feed when it ran one.
    async fn sequence(&self, pace: change_log::Pace) {
        if let Some(sequencer) = &self.sequencer {
            match sequencer.settle(&self.write, pace).await {
                Ok(true) => self.log_appended.notify_one(),
                Ok(false) => {}
                Err(error) => tracing::warn!(
                    %error,
                    "cannot give committed changes their log positions yet; the change feed retries"
                ),
            }
        }
    }

    /// Notified after every commit that appended to the change log.
    pub fn log_appended(&self) -> Arc<Notify> {
        self.log_appended.clone()
    }

    /// A PostgreSQL connection listening for change-log appends of every replica; None on SQLite, where all
    /// writers are in this process (or poll-visible).
    pub async fn change_listener(&self) -> Result<Option<sea_orm::sqlx::postgres::PgListener>> {
        if self.backend != DbBackend::Postgres {
            return Ok(None);
        }
        self.listener(change_log::NOTIFY_CHANNEL).await.map(Some)
    }

    /// A PostgreSQL connection of its own, listening on `channel`.
    async fn listener(&self, channel: &str) -> Result<sea_orm::sqlx::postgres::PgListener> {
        let unavailable = |e: sea_orm::sqlx::Error| Error::Unavailable(e.to_string());
        let pool = self.read.get_postgres_connection_pool();
        let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool)
            .await
            .map_err(unavailable)?;
        listener.listen(channel).await.map_err(unavailable)?;
        Ok(listener)
    }

    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    /// Closes every connection (on shutdown). On SQLite the OpenContext thread and the checkpointer close theirs
    /// first, so the pool's last connection to close is the database's last: SQLite then copies the whole
    /// write-ahead log into the file and removes it, and a stopped service leaves one complete file.
    pub async fn close(self) {
        // On PostgreSQL, no change this process committed is left without its log position.
        self.sequence_committed().await;
        if let Some(group_commit) = &self.group_commit {
            group_commit.close().await;
        }
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.stop().await;
        }
        let _ = self.read.close().await;
        if self.backend == DbBackend::Sqlite {
            let _ = self.write.close().await;
        }
    }
}

/// Waits until `done` holds, looking again each time `notify` wakes its waiters, or until `deadline`; whether
/// `done` held. Listens before each look, so a change made (and notified) after a look is not missed.
pub(crate) async fn wait_for(
    notify: &tokio::sync::Notify,
    deadline: tokio::time::Instant,
    mut done: impl FnMut() -> bool,
) -> bool {
    loop {
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if done() {
            return true;
        }
        if tokio::time::timeout_at(deadline, woken).await.is_err() {
            return false;
        }
    }
}

/// Waits (off the runtime's threads) for the thread in `slot` to end, if it has not been waited for yet.
async fn join_thread(slot: &std::sync::Mutex<Option<std::thread::JoinHandle<()>>>) {
    let handle = slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(handle) = handle {
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The first `limit` rows of `query`, each converted by `convert`.
pub(crate) async fn fetch<E: sea_orm::EntityTrait, T>(
    db: &impl ConnectionTrait,
    query: sea_orm::Select<E>,
    limit: u64,
    convert: impl FnMut(E::Model) -> Result<T>,
) -> Result<Vec<T>> {
    use sea_orm::QuerySelect as _;
    query
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(convert)
        .collect()
}

/// Locks the row `id` of `table` for the rest of the write transaction (a no-op update: `SELECT ... FOR UPDATE`
/// on every backend), so the read that follows sees the latest committed state and no concurrent writer can
/// change it before this transaction commits. Returns false if there is no such row.
pub(crate) async fn lock_row(
    db: &impl ConnectionTrait,
    table: &'static str,
    id: &str,
) -> Result<bool> {
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
    let statement = Query::update()
        .table(Alias::new(table))
        .value(Alias::new("version"), Expr::col(Alias::new("version")))
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .to_owned();
    Ok(db.execute(&statement).await?.rows_affected() == 1)
}

/// Refuses a write based on a stale version; `expected` 0 is checked by the caller as a missing version.
pub(crate) fn check_version(
    resource: &'static str,
    id: &str,
    expected: i64,
    current: i64,
    updated_by: &str,
) -> Result<()> {
    if expected == current {
        Ok(())
    } else {
        Err(Error::VersionMismatch {
            resource,
            id: id.to_owned(),
            given_version: expected,
            current_version: current,
            updated_by: updated_by.to_owned(),
        })
    }
}

/// What an update applies under its mask: `new` itself when `expected` is the record's version. With
/// [`ConflictPolicy::Merge`] and an older `expected`, the caller's fields merged onto `current` (see
/// [`crate::domain::field_merge`]): `EDIT_CONFLICT` where someone else changed them, `INVALID_ARGUMENT` where the
/// merged value breaks a limit, and, when the log no longer holds what the record was at `expected`, the
/// refusal of a stale version.
pub(crate) async fn rebase<R: Logged>(
    db: &impl ConnectionTrait,
    current: &R,
    expected: i64,
    policy: ConflictPolicy,
    fields: &[&str],
    new: R::Data,
) -> Result<R::Data> {
    let (kind, id, current_version, updated_by) = (
        R::RESOURCE,
        current.id(),
        current.version(),
        current.updated_by(),
    );
    let resource = kind.as_str();
    if expected == current_version {
        return Ok(new);
    }
    let stale = || check_version(resource, id, expected, current_version, updated_by);
    if policy != ConflictPolicy::Merge || expected > current_version || expected < 1 {
        stale()?;
    }
    let Some(edits) = change_log::edits_since(db, kind, id, expected, current_version).await?
    else {
        stale()?;
        return Ok(new);
    };
    let object = |value: &R::Data| match serde_json::to_value(value).map_err(Error::internal)? {
        serde_json::Value::Object(object) => Ok(object),
        _ => Err(Error::internal("a record is not a JSON object")),
    };
    match field_merge::merge(
        fields,
        field_merge::shape_of,
        &object(&new)?,
        &object(current.data())?,
        &edits,
    ) {
        Ok(merged) => {
            serde_json::from_value(serde_json::Value::Object(merged)).map_err(Error::internal)
        }
        Err(field_merge::Refusal::Conflicts(conflicts)) => Err(Error::EditConflict {
            resource,
            id: id.to_owned(),
            given_version: expected,
            current_version,
            updated_by: updated_by.to_owned(),
            conflicts,
        }),
        Err(field_merge::Refusal::Limit(field, reason, description)) => Err(Error::invalid(
            format!("{resource}.{field}"),
            reason,
            description,
        )),
        Err(field_merge::Refusal::Uncovered) => {
            stale()?;
            Ok(new)
        }
    }
}

pub(crate) fn encode_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(Error::internal)
}

pub(crate) fn decode_json<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("corrupt JSON column: {e}")))
}

/// The statement with its `LIMIT` written as a number instead of a bound value (SQLite). SQLite plans with the
/// value of a bound limit, so binding it again makes it plan the statement again on every run, which can cost
/// more than running it.
pub(crate) fn literal_limit(mut statement: sea_orm::Statement) -> sea_orm::Statement {
    use sea_orm::sea_query::Value;
    let Some(values) = statement.values.as_mut() else {
        return statement;
    };
    if let (Some(Value::BigUnsigned(Some(limit))), Some(rest)) =
        (values.0.last(), statement.sql.strip_suffix(" LIMIT ?"))
    {
        statement.sql = format!("{rest} LIMIT {limit}");
        values.0.pop();
    }
    statement
}

/// Runs `query` with its limit written into the statement (see [`literal_limit`]).
pub(crate) async fn all_limited<E: sea_orm::EntityTrait>(
    db: &impl ConnectionTrait,
    query: sea_orm::Select<E>,
) -> Result<Vec<E::Model>> {
    all_limited_as(db, query).await
}

/// [`all_limited`], its rows read as `M` (a query that selects only some of the entity's columns).
pub(crate) async fn all_limited_as<M: sea_orm::FromQueryResult>(
    db: &impl ConnectionTrait,
    query: impl sea_orm::QueryTrait,
) -> Result<Vec<M>> {
    let statement = literal_limit(query.build(db.get_database_backend()));
    Ok(M::find_by_statement(statement).all(db).await?)
}

/// Implements sea-orm's `ConnectionTrait` for `$ty` by running each call on the connection `$on!` picks.
macro_rules! delegate_connection {
    ($ty:ty, $on:ident) => {
        #[async_trait::async_trait]
        impl ConnectionTrait for $ty {
            fn get_database_backend(&self) -> DbBackend {
                $on!(self, |conn| conn.get_database_backend())
            }

            async fn execute_raw(
                &self,
                stmt: sea_orm::Statement,
            ) -> std::result::Result<sea_orm::ExecResult, sea_orm::DbErr> {
                $on!(self, |conn| conn.execute_raw(stmt).await)
            }

            async fn execute_unprepared(
                &self,
                sql: &str,
            ) -> std::result::Result<sea_orm::ExecResult, sea_orm::DbErr> {
                $on!(self, |conn| conn.execute_unprepared(sql).await)
            }

            async fn query_one_raw(
                &self,
                stmt: sea_orm::Statement,
            ) -> std::result::Result<Option<sea_orm::QueryResult>, sea_orm::DbErr> {
                $on!(self, |conn| conn.query_one_raw(stmt).await)
            }

            async fn query_all_raw(
                &self,
                stmt: sea_orm::Statement,
            ) -> std::result::Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
                $on!(self, |conn| conn.query_all_raw(stmt).await)
            }
        }
    };
}

/// What a write ([`Store::write`]) answers: a future borrowing its transaction.
pub(crate) type TxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// The transaction a write ([`Store::write`]) runs in: a pooled one of its own, or its part of a batch on the
/// SQLite writer's connection.
pub(crate) struct Tx(Transaction);

enum Transaction {
    Pooled(Write),
    InPlace(sqlite::connection::OnWriter),
}

impl Tx {
    pub(in crate::store) fn in_place(conn: sqlite::connection::OnWriter) -> Tx {
        Tx(Transaction::InPlace(conn))
    }

    /// The customer `id` as a write that links a record to it reads it ([`customers::to_link`]); on the
    /// writer's connection, prepared once and decoded by position instead of through sea-orm's rows by name.
    pub(in crate::store) async fn customer_to_link(
        &self,
        id: &str,
    ) -> Result<Option<entity::customers::Model>> {
        match &self.0 {
            Transaction::Pooled(txn) => Ok(customers::to_link(id).one(txn).await?),
            Transaction::InPlace(conn) => open_context::customer_to_link(conn, id),
        }
    }

    /// Inserts a new `record`, its "created" log row and `notification`, a new activity's notification, if any
    /// ([`record::insert_along`]); on the writer's connection each by the statement sea-orm builds for it, rendered
    /// once ([`open_context::insert_created`]).
    pub(in crate::store) async fn insert_created<R: record::Stored>(
        &self,
        agent: &str,
        record: &R,
        now: Micros,
        notification: Option<entity::notifications::ActiveModel>,
    ) -> Result<()> {
        match &self.0 {
            Transaction::Pooled(txn) => {
                let along = notification.map(|row| outbox::queue(row).into_query());
                record::insert_along(txn, agent, record, now, along.into_iter().collect()).await
            }
            Transaction::InPlace(conn) => {
                open_context::insert_created(conn, agent, record, now, notification)
            }
        }
    }

    /// Records `views`, skipping those of customers deleted meanwhile (see [`recent::upsert_live`]); on the
    /// writer's connection one prepared statement per view, whose foreign key finds a deleted customer
    /// ([`open_context::upsert_views`]).
    pub(in crate::store) async fn upsert_views(
        &self,
        views: &[recent::View],
        per_statement: usize,
    ) -> Result<()> {
        match &self.0 {
            Transaction::Pooled(txn) => recent::upsert_live(txn, views, per_statement).await,
            Transaction::InPlace(conn) => open_context::upsert_views(conn, views),
        }
    }
}

/// Runs `$call` on the transaction's connection, whichever it is.
macro_rules! on_connection {
    ($tx:expr, |$conn:ident| $call:expr) => {
        match &$tx.0 {
            Transaction::Pooled($conn) => $call,
            Transaction::InPlace($conn) => $call,
        }
    };
}

delegate_connection!(Tx, on_connection);

/// Where a read's statements run ([`Store::reader`]): on a SQLite file, each in place in the caller's task on
/// one of the writer's read connections (no round trip to a pooled connection's thread); elsewhere on the read
/// pool. Each statement is its own snapshot, as on the pool.
pub(in crate::store) enum Reader<'s> {
    Pooled(&'s DatabaseConnection),
    InPlace(sqlite::connection::InPlace<&'s open_context::Readers>),
}

/// Runs `$call` on the reader's connection, whichever it is.
macro_rules! on_reader {
    ($reader:expr, |$conn:ident| $call:expr) => {
        match $reader {
            Reader::Pooled($conn) => $call,
            Reader::InPlace($conn) => $call,
        }
    };
}

delegate_connection!(Reader<'_>, on_reader);

/// A write transaction begun by [`Store::begin_write`]: a [`DatabaseTransaction`] that is timed in the metrics
/// and spanned in traces until it commits or is dropped (rolled back).
pub(crate) struct Write {
    txn: DatabaseTransaction,
    _timer: Option<Timer>,
    _span: tracing::Span,
}

impl Write {
    /// Commits. Prefer [`Store::commit`], which also wakes the change feed; this is for transactions that
    /// append nothing to the change log.
    pub(crate) async fn commit(self) -> std::result::Result<(), sea_orm::DbErr> {
        self.txn.commit().await
    }
}

impl std::ops::Deref for Write {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Write {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(
        &self,
        stmt: sea_orm::Statement,
    ) -> std::result::Result<sea_orm::ExecResult, sea_orm::DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(
        &self,
        sql: &str,
    ) -> std::result::Result<sea_orm::ExecResult, sea_orm::DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(
        &self,
        stmt: sea_orm::Statement,
    ) -> std::result::Result<Option<sea_orm::QueryResult>, sea_orm::DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(
        &self,
        stmt: sea_orm::Statement,
    ) -> std::result::Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
        self.txn.query_all_raw(stmt).await
    }
}

/// A migrated store on a new SQLite file (so with the writer's thread), for the store's own tests; the directory
/// holds the file and must outlive the store.
#[cfg(test)]
pub(crate) async fn scratch_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cc.db").display());
    let store = Store::connect(&crate::config::DatabaseSettings::new(url))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (dir, store)
}
