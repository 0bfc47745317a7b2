//! `OpenContext` on SQLite: the interactions of concurrent calls are recorded by one connection thread, many in
//! one write transaction (group commit).
//!
//! Through the pooled connections each call's dozen statements were a round trip each between the call's task
//! and the connection's thread, with SQLite's single write lock held across all of them, so those round trips
//! bounded the whole service's throughput. Here a call matches its caller on a read connection in its own task,
//! then queues on a thread that owns a write connection and takes the calls waiting for it (a few at a time, so
//! the calls of one batch are answered while the next is recorded). It runs them one after another, in place:
//! claiming the interaction id (a retry claims nothing and gets what was recorded), joining or opening the
//! request, logging the activity with its change-log rows, queueing the notification and the agent's Recent
//! entry. Then it commits once and answers them all, and each call reads the gadget's lists in its own task.
//! Each call runs under a savepoint, so a call that fails leaves nothing behind and the others are recorded; a
//! failed commit fails every call of the batch, and none of them was acknowledged.
//!
//! Every other write of the store queues on the same thread ([`GroupCommit::write`]) and shares the batches: it
//! runs in its own savepoint (a failed write is rolled back alone, the others of the batch are kept), its
//! sea-orm statements executed in place on the thread's connection ([`InPlace`]), one prepared statement each,
//! and is answered once the batch has committed. So SQLite has one write path, and no write waits for SQLite's
//! lock behind another one's round trips.
//!
//! The statements are the ones the rest of the store builds with sea-orm's query builder, rendered once
//! ([`super::shape`]), prepared once and kept.
//! While it writes, the thread holds the write pool's only connection, so it never competes for SQLite's lock
//! with what still takes that connection (migrations at start, the checkpoint after an anonymization).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use rusqlite::{Connection, OpenFlags, Row, config::DbConfig, types::Value as SqlValue};
use sea_orm::{
    ActiveModelTrait, DbBackend, EntityTrait, QuerySelect, QueryTrait, sqlx::SqlitePool,
};
use tokio::sync::{Notify, oneshot};

use super::{
    self as context, ContextResult, MAX_OPEN_REQUESTS, OpenContext, Outcome, RequestPolicy,
    caller::{self, Caller},
    interactions,
};
use crate::store::{
    LookupKey, Tx, TxFuture, activities,
    change_log::{self, LoggedChange},
    customers::{self, lookup_query},
    entity,
    outbox::{self, OutboxSignal},
    recent::{self, View},
    record::Stored,
    requests,
    sqlite::{
        checkpoint,
        connection::{InPlace, Lender, OnWriter},
        shape::{self, Shape},
    },
};
use crate::{
    domain::{
        activity::Activity,
        change::NewChange,
        customer::Customer,
        request::Request,
        time::{Micros, now_micros},
    },
    error::{Error, Result},
    telemetry::metrics::Metrics,
    telemetry::otel::{self, CallTrace},
};

/// Most calls recorded in one transaction. With more calls waiting, one batch is answered while the next is
/// recorded, instead of every caller waiting for the largest batch.
const MAX_BATCH: usize = 8;
/// Read connections kept open between calls.
const IDLE_READERS: usize = 8;
/// Prepared statements kept by the connection (every statement of an `OpenContext`, with room to spare).
const STATEMENT_CACHE: usize = 256;
/// The writer's page cache, in KiB (SQLite's default is 2 MiB). No other connection writes, so its cache stays
/// valid between transactions; a batch of Recent views alone changes a few thousand pages of their indexes, and
/// pages changed since the last checkpoint can only be read from the log, not from the mapped file.
const WRITER_CACHE_KIB: u32 = 65_536;

struct Job {
    acting_agent: String,
    input: OpenContext,
    /// Who called, as matched before the call was queued.
    caller: Caller,
    reply: oneshot::Sender<Result<Outcome>>,
    /// The call's span, for the batch's (when traces are on).
    trace: CallTrace,
}

thread_local! {
    /// Set on the writer's thread, where a write that started another one would wait for itself.
    static ON_WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A write waiting for the thread: an `OpenContext` call, or any other write the store runs
/// ([`crate::store::Store::write`]).
enum Queued {
    Open(Box<Job>),
    Write(Box<dyn Pending>),
}

/// A write of the store, type-erased for the thread's queue: run in its part of a batch, then answered once the
/// batch has committed (or failed).
trait Pending: Send {
    /// Runs the write on `tx`; true if it failed (and its savepoint is to be rolled back).
    fn run(&mut self, tx: &Tx) -> bool;
    /// Answers the caller: what the write answered if the batch committed, else why it did not.
    fn answer(self: Box<Self>, committed: Result<()>);
}

/// A write and its caller, waiting in the thread's queue.
struct PendingWrite<T, W> {
    work: Option<W>,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
    runtime: tokio::runtime::Handle,
    operation: &'static str,
    metrics: Metrics,
    span: tracing::Span,
}

impl<T, W> Pending for PendingWrite<T, W>
where
    T: Send + 'static,
    W: for<'a> FnOnce(&'a Tx) -> TxFuture<'a, T> + Send + 'static,
{
    fn run(&mut self, tx: &Tx) -> bool {
        let Some(work) = self.work.take() else {
            return true;
        };
        let _entered = self.span.enter();
        let _timer = self.metrics.transaction(self.operation);
        // The write's statements run in place on the connection, so its future never waits on them; it is driven
        // here, where anything else it might await (a timer, say) still finds the runtime.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.runtime.block_on(work(tx))
        }))
        .unwrap_or_else(|_| {
            Err(Error::internal(format!(
                "the {} write stopped unexpectedly",
                self.operation
            )))
        });
        let failed = outcome.is_err();
        self.outcome = Some(outcome);
        failed
    }

    fn answer(self: Box<Self>, committed: Result<()>) {
        let answer = match (committed, self.outcome) {
            (Err(err), _) => Err(err),
            (Ok(()), Some(outcome)) => outcome,
            (Ok(()), None) => Err(Error::Unavailable(
                "the database writer stopped before the write was run".to_owned(),
            )),
        };
        let _ = self.reply.send(answer);
    }
}

impl Queued {
    /// Answers without running: the batch could not start.
    fn refuse(self, err: Error) {
        match self {
            Queued::Open(job) => {
                let _ = job.reply.send(Err(err));
            }
            Queued::Write(pending) => pending.answer(Err(err)),
        }
    }
}

/// What the thread does next: record a batch of writes (and say when it is done), or run one piece of work on its
/// connection alone.
enum Work {
    Batch(Vec<Queued>, oneshot::Sender<()>),
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
}

/// Handle to the recording thread; calls queue on it.
#[derive(Debug)]
pub(in crate::store) struct GroupCommit {
    jobs: tokio::sync::mpsc::UnboundedSender<Queued>,
    /// The thread's queue, for work run alone; taken on close, so that the thread ends.
    alone: Mutex<Option<mpsc::Sender<Work>>>,
    /// The write pool, whose only connection is held while the thread writes.
    write_lock: SqlitePool,
    readers: Readers,
    /// Ends the task that hands out batches, and with it the thread.
    closing: Arc<Notify>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    metrics: Metrics,
}

impl GroupCommit {
    /// Opens a connection to the database file at `path` and starts the thread, and the task that hands it
    /// batches while holding `write_lock`'s connection; each commit wakes `checkpoints`, and a commit into a log of
    /// `forced_pages` copies the rest of it. Must be called within the Tokio runtime.
    pub(in crate::store) fn start(
        path: &Path,
        synchronous: &str,
        forced_pages: u32,
        write_lock: SqlitePool,
        after: AfterCommit,
        metrics: Metrics,
    ) -> Result<GroupCommit> {
        let conn = open_writer(path, synchronous, forced_pages)?;
        let (jobs, queued) = tokio::sync::mpsc::unbounded_channel();
        let (batches, to_write) = mpsc::channel::<Work>();
        let writes = Arc::new(AtomicU64::new(0));
        let written = writes.clone();
        let writer = thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || {
                ON_WRITER.set(true);
                let mut writer = Writer {
                    conn: Arc::new(Mutex::new(conn)),
                    after,
                };
                while let Ok(work) = to_write.recv() {
                    match work {
                        Work::Batch(jobs, done) => {
                            writer.write(jobs);
                            let _ = done.send(());
                        }
                        Work::Alone(work) => {
                            work(&mut writer.conn.lock().unwrap_or_else(PoisonError::into_inner));
                        }
                    }
                    written.fetch_add(1, Ordering::Relaxed);
                }
            })
            .map_err(|e| Error::internal(format!("cannot start the OpenContext writer: {e}")))?;
        let closing = Arc::new(Notify::new());
        tokio::spawn(hand_batches(
            queued,
            batches.clone(),
            write_lock.clone(),
            closing.clone(),
            metrics.clone(),
        ));
        Ok(GroupCommit {
            jobs,
            alone: Mutex::new(Some(batches)),
            write_lock,
            readers: Readers {
                path: path.to_owned(),
                idle: Mutex::default(),
                writes,
                lent: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                returned: Notify::new(),
            },
            closing,
            thread: Mutex::new(Some(writer)),
            metrics,
        })
    }

    /// Stops taking calls, waits for the thread to finish the batch it is recording and closes every connection
    /// (on shutdown, once the calls have drained). A call made after this fails with UNAVAILABLE.
    pub(in crate::store) async fn close(&self) {
        self.alone
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.closing.notify_one();
        crate::store::join_thread(&self.thread).await;
        self.readers.close().await;
    }

    /// Runs `work` on the thread's write connection, holding the write pool's connection meanwhile, so that no
    /// other writer runs alongside (a bulk load, say, which manages its own transaction).
    pub(in crate::store) async fn alone<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let lock = self
            .write_lock
            .acquire()
            .await
            .map_err(|err| Error::Unavailable(format!("the database is busy: {err}")))?;
        let (reply, answer) = oneshot::channel();
        let work = Work::Alone(Box::new(move |conn| {
            let _ = reply.send(work(conn));
        }));
        let queued = self
            .alone
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|thread| thread.send(work).is_ok());
        if !queued {
            return Err(Error::Unavailable(
                "the service is shutting down".to_owned(),
            ));
        }
        let done = answer.await.map_err(|_| {
            Error::Unavailable("the database writer stopped before the work was done".to_owned())
        });
        drop(lock);
        done?
    }

    /// The read connections, for sea-orm's statements run in place in the caller's task.
    pub(in crate::store) fn reads(&self) -> InPlace<&Readers> {
        InPlace::new(&self.readers)
    }

    /// The customers `query` (a select sea-orm builds) finds, read by one statement on a read connection in the
    /// caller's task: no round trip to a pooled connection's thread.
    pub(in crate::store) fn customers(
        &self,
        query: &sea_orm::Select<entity::customers::Entity>,
    ) -> Result<Vec<entity::customers::Model>> {
        self.readers
            .read_statement(|conn| all(conn, query, customer_row))
    }

    /// The log rows `query` ([`change_log::changes_after_query`]) selects, read on a read connection in the
    /// caller's task and decoded by position.
    pub(in crate::store) fn logged_changes(
        &self,
        query: &sea_orm::Select<entity::change_log::Entity>,
    ) -> Result<Vec<LoggedChange>> {
        self.readers
            .read_statement(|conn| all(conn, query, logged_change_row))
    }

    /// The customer `id`, if there is one, read on a read connection in the caller's task by the statement
    /// [`customers::by_id`] builds, rendered once.
    pub(in crate::store) fn customer(&self, id: &str) -> Result<Option<entity::customers::Model>> {
        static BY_ID: Shape = Shape::new();
        let sql = BY_ID.sql(0, || rendered(&customers::by_id(id)));
        let found = self
            .readers
            .read_statement(|conn| select(conn, &sql, [id], customer_row))?;
        Ok(found.into_iter().next())
    }

    /// The customers whose `kind` is `key`, read by the statement [`lookup_query`] builds (rendered once), on a
    /// read connection in the caller's task.
    pub(in crate::store) fn lookup(
        &self,
        kind: LookupKey,
        key: &str,
    ) -> Result<Vec<entity::customers::Model>> {
        self.readers.read_statement(|conn| lookup(conn, kind, key))
    }

    /// The customers a statement selecting the customer entity's columns and then an integer key finds, with their
    /// keys, read on a read connection in the caller's task.
    pub(in crate::store) fn keyed_customers(
        &self,
        statement: &sea_orm::Statement,
    ) -> Result<Vec<(entity::customers::Model, i64)>> {
        let key_column = <entity::customers::Column as sea_orm::Iterable>::iter().count();
        let params = parameters(statement)?;
        self.readers.read_statement(|conn| {
            select(
                conn,
                &statement.sql,
                rusqlite::params_from_iter(params),
                |row| Ok((customer_row(row)?, row.get(key_column)?)),
            )
        })
    }

    /// Runs the write `operation` on the thread, in its part of the next batch's transaction, and answers once
    /// that has committed (see [`crate::store::Store::write`]).
    pub(in crate::store) async fn write<T, W>(&self, operation: &'static str, work: W) -> Result<T>
    where
        T: Send + 'static,
        W: for<'a> FnOnce(&'a Tx) -> TxFuture<'a, T> + Send + 'static,
    {
        if ON_WRITER.get() {
            // It would wait for the thread, which waits for it.
            return Err(Error::internal(format!(
                "the {operation} write was started by another write; a write runs in one transaction"
            )));
        }
        let (reply, answer) = oneshot::channel();
        let pending = PendingWrite {
            work: Some(work),
            outcome: None,
            reply,
            runtime: tokio::runtime::Handle::current(),
            operation,
            metrics: self.metrics.clone(),
            span: otel::transaction_span(operation),
        };
        self.jobs
            .send(Queued::Write(Box::new(pending)))
            .map_err(|_| Error::Unavailable("the service is shutting down".to_owned()))?;
        answer.await.map_err(|_| {
            Error::Unavailable("the service stopped before the write was committed".to_owned())
        })?
    }

    /// Records one call (or finds it recorded) and answers when its transaction has committed.
    ///
    /// The caller is matched before the call is queued, and the gadget's lists are read after it committed, each
    /// on a read connection in this task, so the thread only writes. A matched customer deleted meanwhile is
    /// matched again on the thread.
    pub(in crate::store) async fn open(
        &self,
        acting_agent: &str,
        input: &OpenContext,
    ) -> Result<Outcome> {
        let caller = self.readers.read(|conn| identify(conn, input))?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            acting_agent: acting_agent.to_owned(),
            input: input.clone(),
            caller,
            reply,
            trace: CallTrace::current(),
        };
        self.jobs
            .send(Queued::Open(Box::new(job)))
            .map_err(|_| Error::Unavailable("the service is shutting down".to_owned()))?;
        let outcome = answer.await.map_err(|_| {
            Error::Unavailable("the service stopped before the interaction was recorded".to_owned())
        })??;
        Ok(match outcome {
            Outcome::Opened(mut result) => {
                if let Some(customer) = &result.customer {
                    let (open_requests, recent_activities) =
                        self.readers.read(|conn| shown_lists(conn, &customer.id))?;
                    result.open_requests = open_requests;
                    result.recent_activities = recent_activities;
                }
                Outcome::Opened(result)
            }
            replay => replay,
        })
    }
}

/// Read-only connections to the database file, used in the calls' own tasks. A read is a few index probes (tens
/// to hundreds of microseconds), cheaper run in place, holding the task's thread, than handed to a thread and back.
#[derive(Debug)]
pub(in crate::store) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
    /// Work the writer's thread has finished (batches, bulk loads): a read that finds it moved on since its
    /// connection's last read may find the database changed.
    writes: Arc<AtomicU64>,
    /// Connections lent to reads now.
    lent: AtomicUsize,
    /// Set by [`Readers::close`]: reads are refused, and connections coming back are closed.
    closed: AtomicBool,
    /// Woken when a connection comes back after [`Readers::close`].
    returned: Notify,
}

/// Longest [`Readers::close`] waits for the reads in progress to give their connections back.
const READERS_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Reads per connection over which [`Reader`] weighs mapping the file.
const MAPPING_WINDOW: u32 = 64;
/// Most reads of a window that may follow a write for the connection to map the file in the next one.
const MOST_CHANGED_MAPPED: u32 = MAPPING_WINDOW / 16;

/// A read connection, and whether it reads the file through a memory map.
///
/// A mapped connection reads a page where it lies in the OS's cache, without a system call and a copy per page.
/// But in WAL mode a connection that begins a read after another one committed drops its page cache and unmaps
/// the whole file, and then faults in each page again: with the writer committing every few milliseconds,
/// mapped reads cost more than reading the few pages each needs (`pread`). So a connection maps the file while
/// its reads rarely follow a write (at most [`MOST_CHANGED_MAPPED`] of its last [`MAPPING_WINDOW`]), which is
/// the case under a load of reads (searches, lookups, customers opened, whose Recent views are written a few
/// times a second), and reads the pages itself while writes keep coming.
#[derive(Debug)]
struct Reader {
    conn: Connection,
    mapped: bool,
    /// The writer's count of work when this connection last read.
    seen: u64,
    /// Reads in the current window, and how many of them began after a write.
    reads: u32,
    changed: u32,
}

impl Reader {
    fn open(path: &Path) -> Result<Reader> {
        Ok(Reader {
            conn: open_reader(path)?,
            mapped: false,
            seen: 0,
            reads: 0,
            changed: 0,
        })
    }

    /// Counts a read about to begin with the writer's count at `writes`; at the end of a window, maps the file
    /// or stops mapping it as the window's reads say.
    fn begin(&mut self, writes: u64) {
        self.reads += 1;
        if writes != self.seen {
            self.changed += 1;
            self.seen = writes;
        }
        if self.reads < MAPPING_WINDOW {
            return;
        }
        let map = self.changed <= MOST_CHANGED_MAPPED;
        (self.reads, self.changed) = (0, 0);
        if map == self.mapped {
            return;
        }
        let bytes = if map {
            crate::store::SQLITE_MMAP_BYTES
        } else {
            0
        };
        match self
            .conn
            .execute_batch(&format!("PRAGMA mmap_size = {bytes};"))
        {
            Ok(()) => self.mapped = map,
            Err(error) => tracing::debug!(%error, map, "cannot change a read connection's mapping"),
        }
    }
}

impl Lender for &Readers {
    fn lend<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> std::result::Result<rusqlite::Result<T>, String> {
        self.read_statement(|conn| Ok(f(conn)))
            .map_err(|err| err.to_string())
    }
}

impl Readers {
    /// Runs `f` in one read transaction (one snapshot) on an idle connection, or a new one.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.read_statement(|conn| {
            run(conn, "BEGIN").map_err(db_error)?;
            let read = f(conn);
            run(conn, "COMMIT").map_err(db_error)?;
            read
        })
    }

    /// Runs `f`, which runs one statement (its own snapshot), on an idle connection, or a new one.
    fn read_statement<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let _lent = Lent::count(self)?;
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut reader = match idle {
            Some(reader) => reader,
            None => Reader::open(&self.path)?,
        };
        reader.begin(self.writes.load(Ordering::Relaxed));
        let read = f(&reader.conn);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_READERS && !self.closed.load(Ordering::SeqCst) {
            idle.push(reader);
        }
        read
    }

    /// Refuses reads from now on and closes every read connection, waiting (at most [`READERS_CLOSE_WAIT`]) for
    /// those lent to reads in progress (a background task's, say) to come back. SQLite removes the write-ahead
    /// log only when the last connection to the file closes, and a read-only one cannot: a read connection still
    /// open when the writers close would leave the log beside the file.
    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + READERS_CLOSE_WAIT;
        let returned = crate::store::wait_for(&self.returned, deadline, || {
            self.lent.load(Ordering::SeqCst) == 0
        })
        .await;
        if !returned {
            tracing::warn!(
                reads = self.lent.load(Ordering::SeqCst),
                "reads still running at shutdown; the write-ahead log may be left beside the database file"
            );
        }
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// A read connection lent by [`Readers`], counted until dropped (the read done, its connection back or closed).
struct Lent<'a>(&'a Readers);

impl<'a> Lent<'a> {
    /// Counts a read about to take a connection, unless the readers are closed. Counted before the check, so
    /// that [`Readers::close`], which sets `closed` before it reads the count, either sees this read or is seen
    /// by it.
    fn count(readers: &'a Readers) -> Result<Lent<'a>> {
        readers.lent.fetch_add(1, Ordering::SeqCst);
        let lent = Lent(readers);
        if readers.closed.load(Ordering::SeqCst) {
            return Err(Error::Unavailable(
                "the service is shutting down".to_owned(),
            ));
        }
        Ok(lent)
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        self.0.lent.fetch_sub(1, Ordering::SeqCst);
        if self.0.closed.load(Ordering::SeqCst) {
            self.0.returned.notify_waiters();
        }
    }
}

/// The customer's open requests (newest first) and newest activities, as the gadget shows them.
fn shown_lists(conn: &Connection, customer_id: &str) -> Result<(Vec<Request>, Vec<Activity>)> {
    static NEWEST_ACTIVITIES: Shape = Shape::new();
    let newest = NEWEST_ACTIVITIES.sql(0, || {
        rendered(&context::newest_activities_query(customer_id))
    });
    Ok((
        open_requests(conn, customer_id, false)?,
        select(conn, &newest, [customer_id], activity_row)?
            .into_iter()
            .map(activities::from_model)
            .collect::<Result<Vec<_>>>()?,
    ))
}

/// The customer's open and pending requests, most recently updated first: the newest one, or up to
/// [`MAX_OPEN_REQUESTS`].
fn open_requests(conn: &Connection, customer_id: &str, newest_only: bool) -> Result<Vec<Request>> {
    static NEWEST: Shape = Shape::new();
    static ALL: Shape = Shape::new();
    let (shape, limit) = if newest_only {
        (&NEWEST, 1)
    } else {
        (&ALL, MAX_OPEN_REQUESTS)
    };
    let sql = shape.sql(0, || {
        rendered(&context::open_requests_newest_first(customer_id).limit(limit))
    });
    let params = rusqlite::params_from_iter(open_requests_values(customer_id));
    requests_of(select(conn, &sql, params, request_row)?)
}

/// What [`context::open_requests_newest_first`] binds: the customer, then the open statuses.
fn open_requests_values(customer_id: &str) -> impl Iterator<Item = SqlValue> {
    let statuses = context::OPEN_STATUSES.map(|status| SqlValue::Integer(status.as_i32().into()));
    [SqlValue::Text(customer_id.to_owned())]
        .into_iter()
        .chain(statuses)
}

/// Takes every queued call (up to [`MAX_BATCH`]), waits for the write lock and has the thread record them.
///
/// The lock is kept from one batch to the next while calls are queued, for at most [`HOLD_WRITE_LOCK`]: taking
/// the pool's connection and giving it back cost two round trips to its own thread (sqlx checks a connection as
/// it goes back), which the writer would otherwise wait for between batches. With nothing queued, or after
/// that long, the lock is given back, so a migration, a bulk load or the checkpoint after an anonymization,
/// waiting for it, goes first.
async fn hand_batches(
    mut queued: tokio::sync::mpsc::UnboundedReceiver<Queued>,
    batches: mpsc::Sender<Work>,
    write_lock: SqlitePool,
    closing: Arc<Notify>,
    metrics: Metrics,
) {
    let mut batch = Vec::new();
    let mut held: Option<(_, Instant)> = None;
    loop {
        if queued.is_empty() {
            held = None;
        }
        let received = tokio::select! {
            received = queued.recv_many(&mut batch, MAX_BATCH) => received,
            () = closing.notified() => 0,
        };
        if received == 0 {
            // Dropping `batches` ends the thread.
            return;
        }
        if held
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= HOLD_WRITE_LOCK)
        {
            held = None;
        }
        if held.is_none() {
            let acquiring = metrics.acquiring("write");
            let acquired = write_lock.acquire().await;
            if let Some(acquiring) = acquiring {
                acquiring.acquired();
            }
            match acquired {
                Ok(lock) => held = Some((lock, Instant::now())),
                Err(err) => {
                    let message = format!("the database is busy: {err}");
                    for job in batch.drain(..) {
                        job.refuse(Error::Unavailable(message.clone()));
                    }
                    continue;
                }
            }
        }
        // Calls that arrived while the lock was taken join this transaction.
        while batch.len() < MAX_BATCH {
            match queued.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        metrics.open_context_batch(batch.len());
        let (done, written) = oneshot::channel();
        if batches
            .send(Work::Batch(std::mem::take(&mut batch), done))
            .is_err()
        {
            return;
        }
        let _ = written.await;
    }
}

/// Longest the batches keep the write pool's connection from one to the next (see [`hand_batches`]).
const HOLD_WRITE_LOCK: Duration = Duration::from_millis(50);

/// The file a `sqlite:` URL names; None for an in-memory database (which a second connection cannot share).
pub(in crate::store) fn database_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path.is_empty()
        || path == ":memory:"
        || query.split('&').any(|option| option == "mode=memory");
    let path = PathBuf::from(path);
    (!in_memory && path.is_file()).then_some(path)
}

/// A connection that writes to the database file at `path`, with the pooled connections' settings and the
/// writer's page cache.
pub(in crate::store) fn open_writer(
    path: &Path,
    synchronous: &str,
    forced_pages: u32,
) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // Its log written a commit at a time (see `wal_writes`), where the VFS could be registered.
    let vfs = crate::store::sqlite::wal_writes::register()
        .then_some(crate::store::sqlite::wal_writes::VFS_NAME);
    let conn = connect(path, flags, vfs)?;
    // The settings of the pooled connections (see `Store::connect`).
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = {synchronous}; PRAGMA temp_store = MEMORY; \
         PRAGMA secure_delete = ON; PRAGMA mmap_size = {}; PRAGMA wal_autocheckpoint = {}; \
         PRAGMA cache_size = -{WRITER_CACHE_KIB};",
        crate::store::SQLITE_MMAP_BYTES,
        forced_pages
    ))
    .map_err(db_error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = connect(path, flags, None)?;
    // Not mapped until its reads show that writes are rare (see `Reader`).
    conn.execute_batch("PRAGMA query_only = ON; PRAGMA temp_store = MEMORY; PRAGMA mmap_size = 0;")
        .map_err(db_error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A connection to `path`, through the VFS `vfs` when given, else SQLite's default.
fn connect(path: &Path, flags: OpenFlags, vfs: Option<&std::ffi::CStr>) -> Result<Connection> {
    let conn = match vfs {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
        None => Connection::open_with_flags(path, flags),
    }
    .map_err(db_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_error)?;
    // Plans made from the statement alone, never from the values bound to it. Otherwise a statement whose plan
    // could depend on a bound value (a bound LIMIT, a LIKE pattern, a value compared with a partial index's
    // condition) is planned again on every run of its cached form, as if it were new.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(db_error)?;
    Ok(conn)
}

/// Whom the batch writer tells of a commit, as [`crate::store::Store::commit`] does.
pub(in crate::store) struct AfterCommit {
    pub log_appended: Arc<Notify>,
    pub outbox: Arc<OutboxSignal>,
    pub checkpoints: Option<checkpoint::Nudge>,
}

struct Writer {
    /// Locked by the thread while it runs a statement of its own, and by [`InPlace`] for each statement a write
    /// runs through it.
    conn: Arc<Mutex<Connection>>,
    after: AfterCommit,
}

impl Writer {
    /// Runs a batch of writes in one transaction, each under a savepoint (so a failed write leaves nothing
    /// behind and the others are kept), and answers each once the transaction has committed; a failed commit
    /// fails every write of the batch, and none of them was acknowledged.
    fn write(&mut self, jobs: Vec<Queued>) {
        let calls = jobs.iter().filter_map(|job| match job {
            Queued::Open(job) => Some(&job.trace),
            Queued::Write(_) => None,
        });
        let _span = otel::batch_span(jobs.len(), calls).entered();
        let count = jobs.len();
        let mut answers: Vec<Box<dyn FnOnce(Result<()>)>> = Vec::with_capacity(count);
        let committed = self.attempt(jobs, &mut answers);
        if let Err(err) = &committed {
            crate::telemetry::metrics::count_db_error(db_error_kind(err));
            tracing::warn!(error = %err, writes = count, "a batch of writes did not commit");
        }
        for answer in answers {
            answer(committed.as_ref().map(|_| ()).map_err(shared_error));
        }
    }

    /// One transaction over the batch; each write's answer is added to `answers` as it runs. The error is the
    /// one that kept the transaction from committing.
    fn attempt(
        &self,
        jobs: Vec<Queued>,
        answers: &mut Vec<Box<dyn FnOnce(Result<()>)>>,
    ) -> rusqlite::Result<()> {
        let begun = run(&self.lock(), "BEGIN IMMEDIATE");
        if let Err(err) = begun {
            answers.extend(jobs.into_iter().map(refused));
            return Err(err);
        }
        let tx = Tx::in_place(InPlace::new(self.conn.clone()));
        let mut queued = false;
        let mut failure = None;
        for job in jobs {
            if failure.is_some() {
                answers.push(refused(job));
                continue;
            }
            match job {
                Queued::Open(job) => {
                    let recorded = self.in_savepoint(|| {
                        open_one(
                            &self.lock(),
                            &job.acting_agent,
                            &job.input,
                            &job.caller,
                            &mut queued,
                        )
                    });
                    match recorded {
                        Ok(outcome) => answers.push(Box::new(move |committed: Result<()>| {
                            let _ = job.reply.send(committed.and(outcome));
                        })),
                        Err(err) => {
                            failure = Some(err);
                            answers.push(refused(Queued::Open(job)));
                        }
                    }
                }
                Queued::Write(mut pending) => {
                    let ran = self.in_savepoint(|| if pending.run(&tx) { Err(()) } else { Ok(()) });
                    if let Err(err) = ran {
                        failure = Some(err);
                    }
                    answers.push(Box::new(move |committed| pending.answer(committed)));
                }
            }
        }
        let conn = self.lock();
        if let Some(err) = failure {
            let _ = run(&conn, "ROLLBACK");
            return Err(err);
        }
        if let Err(err) = run(&conn, "COMMIT") {
            let _ = run(&conn, "ROLLBACK");
            return Err(err);
        }
        drop(conn);
        if let Some(checkpoints) = &self.after.checkpoints {
            checkpoints.committed();
        }
        self.after.log_appended.notify_one();
        if queued {
            self.after.outbox.queued();
        }
        self.after.outbox.committed();
        Ok(())
    }

    /// Runs `f` under a savepoint: kept when it succeeds, rolled back when it fails. The connection is locked only
    /// for the savepoint's own statements, so `f` may lock it for each of its own. Should one of those statements
    /// fail, what the transaction holds is in doubt, and the error fails the batch.
    fn in_savepoint<T, E>(
        &self,
        f: impl FnOnce() -> std::result::Result<T, E>,
    ) -> rusqlite::Result<std::result::Result<T, E>> {
        run(&self.lock(), "SAVEPOINT write")?;
        let outcome = f();
        let conn = self.lock();
        if outcome.is_err() {
            run(&conn, "ROLLBACK TO write")?;
        }
        run(&conn, "RELEASE write")?;
        Ok(outcome)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The answer of a write the batch did not run: the error that kept the batch from committing.
fn refused(job: Queued) -> Box<dyn FnOnce(Result<()>)> {
    Box::new(move |committed: Result<()>| {
        job.refuse(
            committed
                .err()
                .unwrap_or_else(|| Error::internal("a write of the batch was not run")),
        );
    })
}

/// Runs a statement without parameters, prepared once.
pub(in crate::store) fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// One call inside the batch's transaction: its reads see every earlier call of the batch.
fn open_one(
    conn: &Connection,
    acting_agent: &str,
    input: &OpenContext,
    matched: &Caller,
    queued: &mut bool,
) -> Result<Outcome> {
    static CLAIM: Shape = Shape::new();
    let caller = match matched {
        Caller::Known(customer) if !exists(conn, &customer.id)? => identify(conn, input)?,
        _ => matched.clone(),
    };
    let known = match &caller {
        Caller::Known(customer) => Some(customer.as_ref()),
        _ => None,
    };
    let customer_id = known.map(|c| c.id.as_str());
    let attached = match customer_id {
        Some(id) if input.policy != RequestPolicy::None => open_requests(conn, id, true)?.pop(),
        _ => None,
    };
    let now = now_micros();
    let (created_request, request, activity) =
        context::plan(acting_agent, input, customer_id, attached, now);
    // The claim is the call's first write: an interaction id recorded before (by an earlier call or one earlier
    // in this batch) claims nothing, and the call returns what that one recorded.
    let claim = context::claim_row(input, &caller, &activity)?;
    let claimed = insert(conn, &CLAIM, claim, context::claim)?;
    if claimed == 0 {
        let recorded = all(
            conn,
            &interactions::Entity::find_by_id(input.interaction_id.clone()),
            interaction_row,
        )?;
        return match recorded.into_iter().next() {
            Some(done) => Ok(Outcome::Replay(done)),
            None => Err(Error::internal("interaction claimed but not found")),
        };
    }
    if let Some(new) = &created_request {
        insert_record(conn, acting_agent, new, now, None)?;
    }
    let notification = outbox::notification_row(&activity, known)?;
    *queued |= insert_record(conn, acting_agent, &activity, now, notification)?;
    if let Some(id) = customer_id {
        let view = recent::view_row(&View {
            agent: input.agent.clone(),
            customer_id: id.to_owned(),
            time: now,
        });
        insert(conn, &RECENT_VIEW, view, |row| recent::upsert_rows([row]))?;
    }
    let (customer, candidates, prefill) = context::shown(caller, input);
    // The gadget's lists are read after the commit (see `GroupCommit::open`).
    Ok(Outcome::Opened(Box::new(ContextResult {
        replayed: false,
        customer,
        candidates,
        activity: Some(activity),
        request,
        open_requests: Vec::new(),
        recent_activities: Vec::new(),
        prefill,
    })))
}

/// [`Tx::insert_created`] on the writer's connection (see [`insert_record`]).
pub(in crate::store) fn insert_created<R: Stored>(
    conn: &OnWriter,
    agent: &str,
    record: &R,
    now: Micros,
    notification: Option<entity::notifications::ActiveModel>,
) -> Result<()> {
    conn.lender()
        .lend(|conn| Ok(insert_record(conn, agent, record, now, notification)))
        .map_err(Error::internal)?
        .map_err(db_error)?
        .map(drop)
}

/// Inserts a new `record`, its "created" log row and `notification`, the notification of a new activity, if
/// any: each by the statement sea-orm builds for it, rendered once per shape. Answers whether a notification was
/// queued (an activity has at most one).
fn insert_record<R: Stored>(
    conn: &Connection,
    agent: &str,
    record: &R,
    now: Micros,
    notification: Option<entity::notifications::ActiveModel>,
) -> Result<bool> {
    static CHANGE: Shape = Shape::new();
    static NOTIFICATION: Shape = Shape::new();
    insert(conn, R::insert_shape(), record.to_active()?, |row| {
        R::Entity::insert(row)
    })?;
    let change = change_log::to_row(NewChange::created(agent, record, now))?;
    insert(conn, &CHANGE, change, entity::change_log::Entity::insert)?;
    match notification {
        Some(row) => Ok(insert(conn, &NOTIFICATION, row, outbox::queue)? > 0),
        None => Ok(false),
    }
}

/// [`Tx::customer_to_link`] on the writer's connection: the statement [`customers::to_link`] builds, rendered once
/// (SQLite has no row locks: the write under way holds the database's).
pub(in crate::store) fn customer_to_link(
    conn: &OnWriter,
    id: &str,
) -> Result<Option<entity::customers::Model>> {
    static TO_LINK: Shape = Shape::new();
    let sql = TO_LINK.sql(0, || rendered(&customers::to_link(id)));
    let found = conn
        .lender()
        .lend(|conn| Ok(select(conn, &sql, [id], customer_row)))
        .map_err(Error::internal)?
        .map_err(db_error)??;
    Ok(found.into_iter().next())
}

/// Whether the customer is still there.
fn exists(conn: &Connection, customer_id: &str) -> Result<bool> {
    static EXISTS: Shape = Shape::new();
    let sql = EXISTS.sql(0, || rendered(&exists_query(customer_id)));
    Ok(!select(conn, &sql, [customer_id], |_| Ok(()))?.is_empty())
}

fn exists_query(customer_id: &str) -> sea_orm::Select<entity::customers::Entity> {
    entity::customers::Entity::find_by_id(customer_id.to_owned())
        .select_only()
        .column(entity::customers::Column::Id)
}

/// [`Store::identify`](super::Store) on `conn`.
fn identify(conn: &Connection, input: &OpenContext) -> Result<Caller> {
    let found = caller::lookups(input)
        .into_iter()
        .map(|(kind, key): (LookupKey, String)| {
            lookup(conn, kind, &key)?
                .into_iter()
                .map(customers::from_model)
                .collect::<Result<Vec<Customer>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let mut matched = caller::best_matches(found);
    match matched.len() {
        0 => Ok(Caller::Unknown),
        1 => Ok(Caller::Known(Box::new(matched.remove(0)))),
        _ => {
            let latest: HashMap<String, Option<i64>> =
                all(conn, &caller::latest_activity_query(&matched), |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .into_iter()
                .collect();
            Ok(caller::ambiguous(matched, &latest))
        }
    }
}

/// The customers [`lookup_query`] (without `only`) finds, by its statement rendered once per kind of key.
fn lookup(conn: &Connection, kind: LookupKey, key: &str) -> Result<Vec<entity::customers::Model>> {
    static LOOKUPS: [Shape; 4] = [Shape::new(), Shape::new(), Shape::new(), Shape::new()];
    let sql = LOOKUPS[kind as usize].sql(0, || rendered(&lookup_query(kind, key, None)));
    let params = rusqlite::params_from_iter(lookup_values(kind, key));
    select(conn, &sql, params, customer_row)
}

/// What [`lookup_query`] binds (without `only`): the contact class, if any, and the key.
fn lookup_values(kind: LookupKey, key: &str) -> impl Iterator<Item = &str> {
    kind.class().into_iter().chain([key])
}

fn requests_of(rows: Vec<entity::requests::Model>) -> Result<Vec<Request>> {
    rows.into_iter().map(requests::from_model).collect()
}

/// Runs a query built by sea-orm and decodes its rows.
fn all<T>(
    conn: &Connection,
    query: &impl QueryTrait,
    decode: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let statement = crate::store::literal_limit(query.build(DbBackend::Sqlite));
    let params = parameters(&statement)?;
    select(
        conn,
        &statement.sql,
        rusqlite::params_from_iter(params),
        decode,
    )
}

/// Runs a select, prepared once, and decodes its rows.
fn select<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut prepared = conn.prepare_cached(sql).map_err(db_error)?;
    let rows = prepared.query_map(params, decode).map_err(db_error)?;
    rows.collect::<rusqlite::Result<Vec<T>>>().map_err(db_error)
}

/// The SQL of a select sea-orm builds, with its limit written in (see [`crate::store::literal_limit`]).
fn rendered(query: &impl QueryTrait) -> String {
    crate::store::literal_limit(query.build(DbBackend::Sqlite)).sql
}

/// Inserts `row` with the statement `statement` makes of it (an `Insert::one`, perhaps with an `ON CONFLICT`
/// clause, which binds nothing), rendered once for its shape, and returns how many rows it changed.
fn insert<A: ActiveModelTrait + Clone, Q: QueryTrait>(
    conn: &Connection,
    shape: &Shape,
    row: A,
    statement: impl FnOnce(A) -> Q,
) -> Result<usize> {
    try_insert(conn, shape, row, statement)?.map_err(db_error)
}

/// [`insert`], answering SQLite's error as it is, for a caller that tells one kind from another.
fn try_insert<A: ActiveModelTrait + Clone, Q: QueryTrait>(
    conn: &Connection,
    shape: &Shape,
    row: A,
    statement: impl FnOnce(A) -> Q,
) -> Result<rusqlite::Result<usize>> {
    let columns = shape::set_columns(&row)?;
    let sql = shape.sql(columns, || {
        statement(row.clone()).build(DbBackend::Sqlite).sql
    });
    let values = shape::insert_values(row)?;
    Ok(conn
        .prepare_cached(&sql)
        .and_then(|mut prepared| prepared.execute(rusqlite::params_from_iter(values))))
}

/// The statement that records one Recent view ([`recent::upsert_rows`] of one row).
static RECENT_VIEW: Shape = Shape::new();

/// [`Tx::upsert_views`] on the writer's connection: each view by the statement [`recent::upsert_rows`] builds for
/// one row, rendered once and bound per view. A view of a customer deleted meanwhile is refused by its foreign
/// key, which undoes that statement only: it is skipped.
pub(in crate::store) fn upsert_views(conn: &OnWriter, views: &[View]) -> Result<()> {
    conn.lender()
        .lend(|conn| {
            for view in views {
                let row = recent::view_row(view);
                match try_insert(conn, &RECENT_VIEW, row, |row| recent::upsert_rows([row])) {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) if is_foreign_key_violation(&err) => {}
                    Ok(Err(err)) => return Ok(Err(db_error(err))),
                    Err(err) => return Ok(Err(err)),
                }
            }
            Ok(Ok(()))
        })
        .map_err(Error::internal)?
        .map_err(db_error)?
}

/// Whether SQLite refused a statement for a foreign key it would break.
fn is_foreign_key_violation(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
    )
}

fn parameters(statement: &sea_orm::Statement) -> Result<Vec<SqlValue>> {
    statement
        .values
        .iter()
        .flat_map(|values| values.0.iter())
        .map(|value| shape::into_sql_value(value.clone()))
        .collect()
}

/// The error of a statement run in place, counted in `customer_context_db_errors` by its kind as sea-orm's are
/// ([`crate::error::db_error_kind`]).
pub(in crate::store) fn db_error(err: rusqlite::Error) -> Error {
    crate::telemetry::metrics::count_db_error(db_error_kind(&err));
    shared_error(&err)
}

/// The kind of a SQLite error, as `customer_context_db_errors` counts it ([`crate::error::sqlite_error_kind`]).
fn db_error_kind(err: &rusqlite::Error) -> &'static str {
    match err {
        rusqlite::Error::SqliteFailure(failure, _) => {
            crate::error::sqlite_error_kind(failure.extended_code)
        }
        _ => "other",
    }
}

/// The error every call of a failed batch gets.
fn shared_error(err: &rusqlite::Error) -> Error {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            Error::Unavailable(format!("the database is busy: {err}"))
        }
        _ => Error::internal(format!("database: {err}")),
    }
}

/// A decoder of a table's rows into its sea-orm model. The fields are listed in the order the model declares
/// them, which is the order of the columns sea-orm selects (a unit test checks it), so columns are read by
/// position; the compiler checks that every field is named.
macro_rules! row_decoder {
    ($name:ident, $columns:ident, $($model:ident)::+ { $($field:ident),* $(,)? }) => {
        fn $name(row: &Row<'_>) -> rusqlite::Result<$($model)::+> {
            let mut column = 0..;
            Ok($($model)::+ {
                $($field: row.get(column.next().unwrap_or_default())?),*
            })
        }

        #[cfg(test)]
        const $columns: &[&str] = &[$(stringify!($field)),*];
    };
}

row_decoder!(
    customer_row,
    CUSTOMER_COLUMNS,
    entity::customers::Model {
        id,
        version,
        first_name,
        last_name,
        company,
        gender,
        customer_number,
        contact_points,
        notes,
        tags,
        credit_hold,
        attributes,
        search_text,
        create_time,
        update_time,
        created_by,
        updated_by,
        locked,
        anonymize_time,
    }
);

row_decoder!(
    request_row,
    REQUEST_COLUMNS,
    entity::requests::Model {
        id,
        version,
        customer_id,
        title,
        description,
        status,
        tags,
        close_time,
        create_time,
        update_time,
        created_by,
        updated_by,
    }
);

row_decoder!(
    logged_change_row,
    LOGGED_CHANGE_ROW_COLUMNS,
    LoggedChange {
        seq,
        resource_type,
        resource_id,
        version,
        kind,
        agent,
        changed_fields,
        parent_id,
        internal,
        change_time,
    }
);

row_decoder!(
    activity_row,
    ACTIVITY_COLUMNS,
    entity::activities::Model {
        id,
        version,
        customer_id,
        request_id,
        channel,
        direction,
        internal,
        topic,
        notes,
        tags,
        occur_time,
        follow_up_time,
        entered_by,
        contact_name,
        contact_phone,
        contact_email,
        sales_contact,
        salesperson,
        reference,
        create_time,
        update_time,
        created_by,
        updated_by,
    }
);

row_decoder!(
    interaction_row,
    INTERACTION_COLUMNS,
    interactions::Model {
        interaction_id,
        customer_id,
        candidate_ids,
        activity_id,
        request_id,
        prefill,
        agent,
        create_time,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_customer_deleted_after_matching_is_matched_again_on_the_thread() {
        let (_dir, store, gone, input) = context::tests::a_call_from_a_deleted_customer().await;
        let group_commit = store.group_commit.clone().expect("a recording thread");
        let (reply, answer) = oneshot::channel();
        let job = Job {
            acting_agent: "router".to_owned(),
            input: input.clone(),
            caller: Caller::Known(Box::new(gone)),
            reply,
            trace: CallTrace::default(),
        };
        group_commit
            .jobs
            .send(Queued::Open(Box::new(job)))
            .expect("queued");
        let Outcome::Opened(opened) = answer.await.expect("answered").expect("recorded") else {
            panic!("a first call is not a replay");
        };
        // Matched again on the thread: nobody has the caller's contact points now.
        assert_eq!(opened.customer, None);
        assert_eq!(opened.request, None);
        assert_eq!(opened.prefill, Some(input.prefill.clone()));
        let activity = opened.activity.expect("an activity");
        assert_eq!(activity.data.customer_id, None);
        let replayed = store.open_context("router", &input).await.expect("replay");
        assert_eq!(replayed.activity.map(|a| a.id), Some(activity.id));
        assert_eq!(replayed.customer, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closing_waits_for_a_read_in_progress_and_leaves_no_write_ahead_log() {
        let (dir, store) = crate::store::scratch_store().await;
        let group_commit = store.group_commit.clone().expect("a writer thread");
        let (started, reading) = std::sync::mpsc::channel();
        let (finish, finishing) = std::sync::mpsc::channel::<()>();
        let reader = group_commit.clone();
        let read = std::thread::spawn(move || {
            reader.readers.read_statement(|conn| {
                started.send(()).expect("the test waits");
                finishing.recv().expect("the test says when");
                conn.query_row("SELECT count(*) FROM customers", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map_err(db_error)
            })
        });
        reading.recv().expect("the read started");
        let closing = tokio::spawn(store.close());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !closing.is_finished(),
            "the store waits for the read's connection"
        );
        finish.send(()).expect("the read waits");
        assert_eq!(read.join().expect("the read ends").expect("read"), 0);
        closing.await.expect("closed");
        let log = dir.path().join("cc.db-wal");
        assert!(
            !log.exists(),
            "the write-ahead log was left: {} bytes",
            std::fs::metadata(&log).map_or(0, |m| m.len())
        );
        let refused = group_commit.readers.read_statement(|_| Ok(()));
        assert!(matches!(refused, Err(Error::Unavailable(_))), "{refused:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_run_alone_gets_its_turn_while_calls_keep_coming() {
        use crate::domain::customer::CustomerData;
        let (_dir, store) = crate::store::scratch_store().await;
        let group_commit = store.group_commit.clone().expect("a writer thread");
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..32)
            .map(|_| {
                let (store, stop) = (store.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut written = 0;
                    while !stop.load(Ordering::Relaxed) {
                        store
                            .create_customer("load", CustomerData::default())
                            .await
                            .expect("create");
                        written += 1;
                    }
                    written
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let asked = Instant::now();
        let counted = group_commit
            .alone(|conn| {
                conn.query_row("SELECT count(*) FROM customers", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map_err(db_error)
            })
            .await
            .expect("the work ran");
        let waited = asked.elapsed();
        stop.store(true, Ordering::Relaxed);
        let mut written = 0;
        for writer in writers {
            written += writer.await.expect("writer");
        }
        assert!(counted > 0, "the calls wrote before the work ran");
        assert!(
            written > counted,
            "the calls went on writing after it: {written} in all, {counted} before"
        );
        assert!(
            waited < Duration::from_secs(1),
            "the work waited {waited:?} for the batches to give up the lock"
        );
    }

    #[tokio::test]
    async fn a_write_started_inside_a_write_fails_instead_of_waiting_for_itself() {
        let (_dir, store) = crate::store::scratch_store().await;
        let inner = store.clone();
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            store.write("outer", move |_| {
                Box::pin(async move { inner.write("inner", |_| Box::pin(async { Ok(()) })).await })
            }),
        )
        .await
        .expect("answered, not waiting for itself");
        assert!(matches!(answer, Err(Error::Internal(_))), "{answer:?}");
        // The writer goes on.
        store
            .write("after", |_| Box::pin(async { Ok(()) }))
            .await
            .expect("a later write");
        store.close().await;
    }

    #[test]
    fn the_connections_plan_a_statement_once_whatever_is_bound_to_it() {
        const SQL: &str = "SELECT name FROM t ORDER BY id LIMIT ?";
        crate::store::sqlite::allocator::configure();
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("cc.db");
        let plain = Connection::open(&path).expect("database");
        plain
            .execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT); \
                 INSERT INTO t (name) VALUES ('a'), ('b'), ('c');",
            )
            .expect("table");
        let plans_again = |conn: &Connection| {
            for limit in [1_i64, 2, 2] {
                let mut statement = conn.prepare_cached(SQL).expect("statement");
                let names = statement
                    .query_map([limit], |row| row.get::<_, String>(0))
                    .expect("query")
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .expect("rows");
                assert_eq!(names.len() as i64, limit);
            }
            let statement = conn.prepare_cached(SQL).expect("statement");
            statement.get_status(rusqlite::StatementStatus::RePrepare)
        };
        // SQLite's default: a bound limit makes every run of the cached statement plan it again.
        assert_eq!(plans_again(&plain), 3);
        assert_eq!(plans_again(&open_reader(&path).expect("reader")), 0);
        assert_eq!(
            plans_again(&open_writer(&path, "NORMAL", 1000).expect("writer")),
            0
        );
    }

    /// A new SQLite file in WAL mode with one table, for the connections' settings; the directory holds it.
    fn wal_file() -> (tempfile::TempDir, PathBuf) {
        crate::store::sqlite::allocator::configure();
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("cc.db");
        Connection::open(&path)
            .and_then(|conn| {
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY);",
                )
            })
            .expect("database");
        (dir, path)
    }

    #[test]
    fn a_read_connection_maps_the_file_while_writes_are_rare_and_stops_when_they_are_not() {
        let (_dir, path) = wal_file();
        let mmap_size = |reader: &Reader| {
            reader
                .conn
                .query_row("PRAGMA mmap_size", [], |row| row.get::<_, i64>(0))
                .expect("mmap_size")
        };
        let mut reader = Reader::open(&path).expect("reader");
        assert_eq!(mmap_size(&reader), 0);
        // A window in which no more reads than allowed follow a write: mapped from then on.
        let mut writes = 0;
        for read in 0..MAPPING_WINDOW {
            if read < MOST_CHANGED_MAPPED {
                writes += 1;
            }
            reader.begin(writes);
        }
        assert!(reader.mapped);
        assert!(mmap_size(&reader) > 0);
        // One write more in a window: no longer mapped.
        for read in 0..MAPPING_WINDOW {
            if read <= MOST_CHANGED_MAPPED {
                writes += 1;
            }
            reader.begin(writes);
        }
        assert!(!reader.mapped);
        assert_eq!(mmap_size(&reader), 0);
        // Part of a quiet window changes nothing yet.
        for _ in 1..MAPPING_WINDOW {
            reader.begin(writes);
        }
        assert_eq!(mmap_size(&reader), 0);
        reader.begin(writes);
        assert!(mmap_size(&reader) > 0);
    }

    #[tokio::test]
    async fn a_lookup_by_contact_point_reads_the_customer_ids_from_the_index_alone() {
        let (dir, store) = crate::store::scratch_store().await;
        store.close().await;
        let reader = open_reader(&dir.path().join("cc.db")).expect("reader");
        let sql = rendered(&lookup_query(LookupKey::Phone, "+16175550100", None));
        let mut statement = reader
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("the plan");
        let plan: Vec<String> = statement
            .query_map(
                rusqlite::params_from_iter(lookup_values(LookupKey::Phone, "+16175550100")),
                |row| row.get(3),
            )
            .and_then(Iterator::collect)
            .expect("its steps");
        assert!(
            plan.iter()
                .any(|step| step.contains("USING COVERING INDEX contact_keys_match")),
            "{plan:?}"
        );
    }

    #[test]
    fn the_writer_keeps_more_pages_than_sqlites_default_and_readers_keep_the_default() {
        let (_dir, path) = wal_file();
        let cache_size = |conn: &Connection| {
            conn.query_row("PRAGMA cache_size", [], |row| row.get::<_, i64>(0))
                .expect("the cache size")
        };
        let writer = open_writer(&path, "NORMAL", 1000).expect("writer");
        assert_eq!(cache_size(&writer), -i64::from(WRITER_CACHE_KIB));
        assert_eq!(cache_size(&open_reader(&path).expect("reader")), -2000);
    }

    #[test]
    fn only_database_files_get_a_connection_of_their_own() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("cc.db");
        std::fs::write(&file, b"").expect("file");
        let url = format!("sqlite://{}?mode=rwc", file.display());
        assert_eq!(database_file(&url), Some(file.clone()));
        assert_eq!(
            database_file(&format!("sqlite:{}", file.display())),
            Some(file)
        );
        assert_eq!(database_file("sqlite::memory:"), None);
        assert_eq!(
            database_file("sqlite://shared?mode=memory&cache=shared"),
            None
        );
        assert_eq!(database_file("sqlite://no-such-file.db"), None);
        assert_eq!(database_file("postgres://localhost/cc"), None);
    }

    fn selected<E: EntityTrait>() -> Vec<String> {
        use sea_orm::{ColumnTrait, Iterable};
        E::Column::iter()
            .map(|c| c.as_column_ref().1.to_string())
            .collect()
    }

    #[test]
    fn decoders_read_the_columns_in_the_order_they_are_selected() {
        assert_eq!(selected::<entity::customers::Entity>(), CUSTOMER_COLUMNS);
        assert_eq!(selected::<entity::requests::Entity>(), REQUEST_COLUMNS);
        assert_eq!(selected::<entity::activities::Entity>(), ACTIVITY_COLUMNS);
        assert_eq!(selected::<interactions::Entity>(), INTERACTION_COLUMNS);
        let logged: Vec<String> = change_log::LOGGED_CHANGE_COLUMNS
            .iter()
            .map(|c| sea_orm::ColumnTrait::as_column_ref(c).1.to_string())
            .collect();
        assert_eq!(logged, LOGGED_CHANGE_ROW_COLUMNS);
        let statement = change_log::changes_after_query(7, 1_000).build(DbBackend::Sqlite);
        let listed = logged
            .iter()
            .map(|column| format!("\"change_log\".\"{column}\""))
            .collect::<Vec<_>>()
            .join(", ");
        assert!(
            statement.sql.starts_with(&format!("SELECT {listed} FROM")),
            "{}",
            statement.sql
        );
    }

    #[test]
    fn limits_are_written_into_the_statement() {
        let query = context::newest_activities_query("c1");
        let statement = crate::store::literal_limit(query.build(DbBackend::Sqlite));
        assert!(statement.sql.ends_with(" LIMIT 20"), "{}", statement.sql);
        let values = statement.values.expect("values").0;
        assert_eq!(values, vec![sea_orm::Value::String(Some("c1".to_owned()))]);
        let unlimited = interactions::Entity::find_by_id("x".to_owned());
        let statement = crate::store::literal_limit(unlimited.build(DbBackend::Sqlite));
        assert!(!statement.sql.contains("LIMIT"), "{}", statement.sql);
    }

    #[test]
    fn selects_rendered_once_bind_what_sea_orm_binds() {
        let bound = |query: &dyn Fn() -> sea_orm::Statement| {
            parameters(&crate::store::literal_limit(query())).expect("values")
        };
        let text = |values: &[&str]| -> Vec<SqlValue> {
            values
                .iter()
                .map(|v| SqlValue::Text((*v).to_owned()))
                .collect()
        };
        for kind in [
            LookupKey::Phone,
            LookupKey::Email,
            LookupKey::Handle,
            LookupKey::CustomerNumber,
        ] {
            let values: Vec<&str> = lookup_values(kind, "+4915112345678").collect();
            assert_eq!(
                bound(&|| lookup_query(kind, "+4915112345678", None).build(DbBackend::Sqlite)),
                text(&values),
                "{kind:?}"
            );
        }
        assert_eq!(
            bound(&|| context::open_requests_newest_first("c1")
                .limit(1)
                .build(DbBackend::Sqlite)),
            open_requests_values("c1").collect::<Vec<_>>()
        );
        assert_eq!(
            bound(&|| context::newest_activities_query("c1").build(DbBackend::Sqlite)),
            text(&["c1"])
        );
        assert_eq!(
            bound(&|| exists_query("c1").build(DbBackend::Sqlite)),
            text(&["c1"])
        );
        assert_eq!(
            bound(&|| customers::by_id("c1").build(DbBackend::Sqlite)),
            text(&["c1"])
        );
        assert_eq!(
            bound(&|| customers::to_link("c1").build(DbBackend::Sqlite)),
            text(&["c1"])
        );
    }

    /// `shape::insert_values` against the values sea-orm binds for the same row and statement.
    fn binds_like_sea_orm<A: ActiveModelTrait + Clone, Q: QueryTrait>(
        row: A,
        statement: impl FnOnce(A) -> Q,
    ) {
        let built = statement(row.clone()).build(DbBackend::Sqlite);
        let expected = parameters(&built).expect("values");
        assert!(!expected.is_empty());
        assert_eq!(
            shape::insert_values(row).expect("values"),
            expected,
            "{}",
            built.sql
        );
    }

    #[test]
    fn sqlite_errors_are_counted_by_the_kinds_sea_orms_are() {
        let conn = Connection::open_in_memory().expect("a database");
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id TEXT PRIMARY KEY);
             CREATE TABLE child (parent TEXT REFERENCES parent (id));
             INSERT INTO parent VALUES ('a');",
        )
        .expect("schema");
        let failed = |sql: &str| conn.execute(sql, []).expect_err("refused");
        assert_eq!(
            db_error_kind(&failed("INSERT INTO parent VALUES ('a')")),
            "unique_violation"
        );
        assert_eq!(
            db_error_kind(&failed("INSERT INTO child VALUES ('b')")),
            "foreign_key_violation"
        );
        assert_eq!(
            db_error_kind(&failed("INSERT INTO nowhere VALUES (1)")),
            "other_database"
        );
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert_eq!(db_error_kind(&busy), "busy");
        assert_eq!(
            db_error_kind(&rusqlite::Error::QueryReturnedNoRows),
            "other"
        );
        for kind in [
            "unique_violation",
            "foreign_key_violation",
            "other_database",
            "busy",
            "other",
        ] {
            assert!(
                crate::telemetry::metrics::DB_ERROR_KINDS.contains(&kind),
                "{kind}"
            );
        }
    }

    #[test]
    fn inserts_rendered_once_bind_what_sea_orm_binds() {
        use crate::domain::contact::{ContactKind, ContactPoint};

        let customer = Customer {
            id: crate::domain::ids::new_id(),
            data: crate::domain::customer::CustomerData {
                contact_points: vec![ContactPoint {
                    kind: ContactKind::Email,
                    label: String::new(),
                    value: "zoe@example.com".to_owned(),
                }],
                ..Default::default()
            },
            version: 1,
            audit: crate::domain::customer::Audit {
                create_time: 1,
                update_time: 1,
                created_by: "ana".to_owned(),
                updated_by: "ana".to_owned(),
            },
            locked: false,
            anonymize_time: None,
        };
        let input = OpenContext {
            interaction_id: "call-1".to_owned(),
            // Incoming: the customer is told it was recorded.
            direction: crate::pb::Direction::Incoming as i32,
            topic: "Billing".to_owned(),
            agent: "ana".to_owned(),
            request_title: "Billing".to_owned(),
            ..Default::default()
        };
        let (created, _, activity) =
            context::plan("router", &input, Some(&customer.id), None, now_micros());
        let created = created.expect("a request opened for the call");
        let caller = Caller::Known(Box::new(customer.clone()));

        binds_like_sea_orm(
            context::claim_row(&input, &caller, &activity).expect("row"),
            context::claim,
        );
        binds_like_sea_orm(customers::to_active(&customer).expect("row"), |row| {
            entity::customers::Entity::insert(row)
        });
        binds_like_sea_orm(requests::to_active(&created).expect("row"), |row| {
            entity::requests::Entity::insert(row)
        });
        binds_like_sea_orm(activities::to_active(&activity).expect("row"), |row| {
            entity::activities::Entity::insert(row)
        });
        // The sequence number is not set: the database assigns it.
        let change =
            change_log::to_row(context::activity_created("router", &activity)).expect("row");
        assert_eq!(shape::set_columns(&change).expect("columns") & 1, 0);
        binds_like_sea_orm(change, entity::change_log::Entity::insert);
        let notification = outbox::notification_row(&activity, Some(&customer))
            .expect("row")
            .expect("an incoming call of a customer with an email is notified");
        binds_like_sea_orm(notification, outbox::queue);
        let view = recent::view_row(&View {
            agent: "ana".to_owned(),
            customer_id: customer.id.clone(),
            time: 7,
        });
        binds_like_sea_orm(view, |row| recent::upsert_rows([row]));
    }
}
