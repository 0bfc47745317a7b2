//! SQLite: copying the write-ahead log back into the database file on a thread of its own.
//!
//! SQLite's default is for the connection that commits to copy the log (a checkpoint) once it holds 1,000
//! pages. A checkpoint syncs the log, copies its pages and syncs the database file: two `fsync`s, about 10 ms on
//! the benchmark machine's disk, and the `OpenContext` writer ran them inside its commit every hundred calls or
//! so, holding every call of the next batch. Here a checkpointer thread on its own connection copies what was
//! committed, at most every [`PAUSE`] and at least every [`IDLE_PASS`], while the writers go on.
//!
//! A pass copies the log up to the last commit it sees. Under a steady load a commit lands during every pass, so
//! the log is never copied to its end, and SQLite starts a log over from the beginning only when it was. Every
//! connection therefore keeps an automatic checkpoint of its own, at [`forced_pages`] (`--sqlite-wal-limit-mib`,
//! 1 GiB by default): a connection that commits into a log that long copies the rest itself (what the
//! checkpointer has not reached yet, and the two syncs, 15–60 ms on the benchmark machine), and the log starts
//! over. That bounds the log and holds a writer once per 262,144 pages written instead of once per 1,000: about
//! every 13 s at a steady 1,000 `OpenContext` calls a second. (At 30,000 pages the pause came every 1.4 s and was
//! the p99 of that load.) Under a lighter load the checkpointer finds the log at rest between commits, copies it
//! to its end, and the next commit starts it over, so the log stays short.

use std::{
    path::Path,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, RecvTimeoutError, SyncSender},
    },
    thread,
    time::{Duration, Instant},
};

use rusqlite::{Connection, OpenFlags};

use crate::{
    error::{Error, Result},
    telemetry::metrics::Metrics,
};

/// Pages per MiB of log: SQLite's default page size, 4 KiB, which the service keeps.
const PAGES_PER_MIB: u32 = 256;

/// Log length (in pages) at which a connection that commits copies the log itself (`wal_autocheckpoint`), for a
/// log of at most `limit_mib`.
pub(in crate::store) fn forced_pages(limit_mib: u32) -> u32 {
    limit_mib.saturating_mul(PAGES_PER_MIB)
}

/// Least time between two passes of the checkpointer: each pass costs two syncs, whatever it copies.
const PAUSE: Duration = Duration::from_millis(20);
/// Longest time between two passes, for writes that do not wake the checkpointer (a migration, say).
const IDLE_PASS: Duration = Duration::from_secs(1);

/// Wakes the checkpointer after a commit (cheap, and never blocks the committer), and stops it on shutdown.
#[derive(Debug, Clone)]
pub(in crate::store) struct Nudge {
    wake: SyncSender<()>,
    thread: Arc<Thread>,
}

/// The checkpointer's thread, stopped on [`Nudge::stop`].
#[derive(Debug)]
struct Thread {
    stopping: AtomicBool,
    handle: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Nudge {
    /// Tells the checkpointer that something was committed.
    pub(in crate::store) fn committed(&self) {
        let _ = self.wake.try_send(());
    }

    /// Stops the checkpointer after its current pass and closes its connection (on shutdown, so that the last
    /// connection to close can copy the whole log and remove it).
    pub(in crate::store) async fn stop(&self) {
        self.thread.stopping.store(true, Ordering::Release);
        let _ = self.wake.try_send(());
        crate::store::join_thread(&self.thread.handle).await;
    }
}

/// Starts the checkpointer of the database file at `path`. It stops on [`Nudge::stop`], or when every [`Nudge`] is
/// dropped.
pub(in crate::store) fn start(path: &Path, synchronous: &str, metrics: Metrics) -> Result<Nudge> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(connection_error)?;
    // The syncs a checkpoint makes follow the connection's `synchronous`, so it is the service's.
    conn.execute_batch(&format!("PRAGMA synchronous = {synchronous};"))
        .map_err(connection_error)?;
    let (wake, nudged) = mpsc::sync_channel(1);
    let shared = Arc::new(Thread {
        stopping: AtomicBool::new(false),
        handle: Mutex::new(None),
    });
    let state = shared.clone();
    let handle = thread::Builder::new()
        .name("sqlite-checkpoint".to_owned())
        .spawn(move || {
            let stopping = || state.stopping.load(Ordering::Acquire);
            loop {
                match nudged.recv_timeout(IDLE_PASS) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                if stopping() {
                    return;
                }
                pass(&conn, &metrics);
                thread::sleep(PAUSE);
            }
        })
        .map_err(|e| Error::internal(format!("cannot start the checkpointer: {e}")))?;
    *shared.handle.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
    Ok(Nudge {
        wake,
        thread: shared,
    })
}

/// One checkpoint that waits for no one: it copies what no reader still needs, and leaves the rest.
fn pass(conn: &Connection, metrics: &Metrics) {
    let started = Instant::now();
    let copied = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    });
    match copied {
        Ok((log, copied)) => {
            // Passes that found nothing to copy are not checkpoints.
            if copied > 0 {
                metrics.checkpoint(started.elapsed());
            }
            tracing::trace!(
                log_pages = log,
                copied_pages = copied,
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "checkpoint"
            )
        }
        Err(err) => tracing::warn!(
            error = %err,
            "cannot copy the write-ahead log into the database file; the next pass tries again"
        ),
    }
}

fn connection_error(err: rusqlite::Error) -> Error {
    Error::internal(format!("cannot open the checkpointer's connection: {err}"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rusqlite::Connection;

    use super::{forced_pages, start};

    /// A writer that never checkpoints itself below 4 MiB of log: what it commits stays in the log until someone
    /// copies it.
    fn writer(path: &std::path::Path) -> Connection {
        // Like every connection the store opens: after SQLite's allocator is set, which no other thread may race.
        crate::store::sqlite::allocator::configure();
        let conn = Connection::open(path).expect("open");
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = {}; \
             CREATE TABLE blobs (data BLOB NOT NULL);",
            forced_pages(4)
        ))
        .expect("schema");
        conn
    }

    fn write_a_mebibyte(conn: &Connection) {
        for _ in 0..16 {
            conn.execute("INSERT INTO blobs (data) VALUES (zeroblob(65536))", [])
                .expect("insert");
        }
    }

    fn file_size(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).expect("database file").len()
    }

    #[test]
    fn the_checkpointer_copies_what_was_committed_into_the_database_file() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("db.sqlite");
        let conn = writer(&path);
        let before = file_size(&path);
        let nudge = start(
            &path,
            "NORMAL",
            crate::telemetry::metrics::Metrics::default(),
        )
        .expect("checkpointer");
        write_a_mebibyte(&conn);
        assert!(
            file_size(&path) < before + (1 << 20),
            "the writer left its commits in the log"
        );
        nudge.committed();
        let deadline = Instant::now() + Duration::from_secs(10);
        while file_size(&path) < before + (1 << 20) {
            assert!(
                Instant::now() < deadline,
                "the log was not copied into the database file"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[tokio::test]
    async fn the_pooled_connections_copy_the_log_at_the_configured_length() {
        use sea_orm::{ConnectionTrait, DbBackend, Statement};

        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("cc.db").display());
        let mut settings = crate::config::DatabaseSettings::new(url);
        settings.sqlite_wal_limit_mib = 8;
        let store = crate::store::Store::connect(&settings)
            .await
            .expect("store");
        for pool in [&store.read, &store.write] {
            let row = pool
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "PRAGMA wal_autocheckpoint",
                ))
                .await
                .expect("pragma")
                .expect("a row");
            let pages: i64 = row.try_get_by_index(0).expect("pages");
            assert_eq!(pages, 8 * 256, "8 MiB of 4 KiB pages");
        }
        store.close().await;
    }
}
