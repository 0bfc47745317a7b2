//! Storage: sea-orm entities, migrations and repository functions. Every write is one transaction that also
//! appends one change-log row per changed record.

use std::{sync::Arc, time::Duration};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::Notify;

use crate::{
    config::{DatabaseSettings, SqliteSynchronous},
    error::{Error, Result},
};

mod activities;
pub mod change_log;
mod customers;
pub mod entity;
pub mod migration;
mod requests;

pub use customers::{LookupKey, MAX_LOOKUP_RESULTS};

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
}

impl Store {
    /// Opens the database at `settings.database_url`. Does not migrate.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Store> {
        let url = settings.database_url.as_str();
        let backend = if url.starts_with("sqlite:") {
            DbBackend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DbBackend::Postgres
        } else {
            return Err(crate::error::Error::Unavailable(format!(
                "unsupported database URL {:?}: use sqlite://FILE?mode=rwc or postgres://...",
                redact(url)
            )));
        };
        let synchronous = match settings.sqlite_synchronous {
            SqliteSynchronous::Normal => sea_orm::sqlx::sqlite::SqliteSynchronous::Normal,
            SqliteSynchronous::Full => sea_orm::sqlx::sqlite::SqliteSynchronous::Full,
        };
        let options = |max: u32| {
            let mut options = ConnectOptions::new(url.to_owned());
            options
                .max_connections(max)
                .min_connections(1)
                .connect_timeout(Duration::from_secs(5))
                .acquire_timeout(Duration::from_secs(5))
                .idle_timeout(Duration::from_secs(300))
                .sqlx_logging(false);
            if backend == DbBackend::Sqlite {
                options.map_sqlx_sqlite_opts(move |o| {
                    o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(synchronous)
                        .busy_timeout(Duration::from_secs(10))
                        .foreign_keys(true)
                        .pragma("temp_store", "memory")
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
        Ok(Store {
            read,
            write,
            backend,
            log_appended: Arc::new(Notify::new()),
        })
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<()> {
        migration::Migrator::up(&self.write, None).await?;
        Ok(())
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        self.read.execute_unprepared("SELECT 1").await?;
        Ok(())
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), so a
    /// transaction that reads before it writes can never fail to upgrade its lock.
    pub(crate) async fn begin_write(&self) -> Result<DatabaseTransaction> {
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        Ok(self.write.begin_with_options(options).await?)
    }

    /// Commits a write transaction and wakes whoever follows the change log.
    pub(crate) async fn commit(&self, txn: DatabaseTransaction) -> Result<()> {
        txn.commit().await?;
        self.log_appended.notify_one();
        Ok(())
    }

    /// Notified after every commit that appended to the change log.
    pub fn log_appended(&self) -> Arc<Notify> {
        self.log_appended.clone()
    }

    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    /// Closes every connection (on shutdown).
    pub async fn close(self) {
        let _ = self.read.close().await;
        if self.backend == DbBackend::Sqlite {
            let _ = self.write.close().await;
        }
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
            current_version: current,
            updated_by: updated_by.to_owned(),
        })
    }
}

pub(crate) fn encode_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(Error::internal)
}

pub(crate) fn decode_json<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("corrupt JSON column: {e}")))
}
