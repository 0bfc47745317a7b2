//! Agents' recently opened customers (the gadget's Recent list).
//!
//! Reads are recorded off the call path: [`RecentViews::record`] puts the view on a bounded channel and returns
//! at once; a background task merges views for up to [`BATCH_DELAY`] (or [`MAX_BATCH`] views) and upserts them
//! in one write transaction, so a burst of reads costs one short write instead of one per read. When the channel
//! is full a view is dropped (logged at debug level): the list is best-effort UI data and must never slow a
//! read down. `OpenContext` records its customer inside its own transaction instead (`upsert`).
//!
//! Few, large writes matter beyond the writes themselves: on SQLite every commit empties the page cache of each
//! read connection, so each write makes the next reads fetch their pages again. An agent's list shows what they
//! just opened all the same: listing it flushes the queue first ([`RecentViews::flush`]). Views older than the
//! window are never listed; an agent's are deleted at most every [`PRUNE_INTERVAL`].

use std::{collections::HashMap, time::Duration};

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect,
    RelationTrait,
    sea_query::{Expr, OnConflict},
};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};

use super::{Store, customers::from_model, entity::customers};
use crate::{
    domain::{customer::Customer, time::Micros, time::now_micros},
    error::Result,
};

/// How far back the Recent list reaches.
pub const RECENT_WINDOW: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Views waiting to be written at most; more are dropped. Above what 16,000 reads a second queue while a batch
/// is written.
pub const QUEUE_CAPACITY: usize = 16_384;
/// Most views one write transaction upserts.
pub const MAX_BATCH: usize = 16_000;
/// Most views one statement checks or upserts (three bound values each, well under SQLite's limit of 32,766 and
/// PostgreSQL's of 65,535).
const STATEMENT_VIEWS: usize = 4_000;
/// How long a view may wait for others to share its write. An agent's own list does not wait for it (listing
/// flushes the queue); a longer delay makes fewer, larger writes, and a view of a customer already in the batch
/// costs nothing.
pub const BATCH_DELAY: Duration = Duration::from_secs(1);
/// Least time between two deletions of one agent's views older than [`RECENT_WINDOW`] (a statement each).
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// How long [`RecentViews::flush`] waits for the recorder before giving up.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The `recent_views` table: one row per (agent, customer), the newest view only, keyed by customer and then
/// agent (see the migration `m0011_recent_views_by_customer`).
pub(super) mod recent_views {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "recent_views")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub agent: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        pub view_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "crate::store::entity::customers::Entity",
            from = "Column::CustomerId",
            to = "crate::store::entity::customers::Column::Id"
        )]
        Customer,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// One agent opening or reading one customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub agent: String,
    pub customer_id: String,
    pub time: Micros,
}

enum Command {
    View(View),
    /// Write everything queued before it, then answer.
    Flush(oneshot::Sender<()>),
}

/// Handle to the recorder task: cheap to clone. The task ends when every handle is dropped, after writing what
/// is still queued.
#[derive(Clone, Debug)]
pub struct RecentViews {
    sender: mpsc::Sender<Command>,
}

impl RecentViews {
    /// Starts the recorder on the current tokio runtime.
    pub fn spawn(store: Store) -> (RecentViews, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let task = tokio::spawn(run(store, receiver));
        (RecentViews { sender }, task)
    }

    /// Records that `agent` opened or read `customer_id` now. Never waits; drops the view if the queue is full.
    pub fn record(&self, agent: &str, customer_id: &str) {
        let view = View {
            agent: agent.to_owned(),
            customer_id: customer_id.to_owned(),
            time: now_micros(),
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.sender.try_send(Command::View(view)) {
            tracing::debug!(agent, customer_id, "recent-view queue full; view dropped");
        }
    }

    /// Waits until every view recorded before this call is written (or the recorder is gone, or
    /// [`FLUSH_TIMEOUT`] passed), so an agent's own Recent list shows what they just opened.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        let flushed = tokio::time::timeout(FLUSH_TIMEOUT, async {
            if self.sender.send(Command::Flush(ack)).await.is_ok() {
                let _ = done.await;
            }
        })
        .await;
        if flushed.is_err() {
            tracing::warn!("recent-view recorder did not flush in time");
        }
    }
}

/// The recorder task with its handle, owned by the server so that shutdown can wait for it.
#[derive(Debug)]
pub struct Recorder {
    views: RecentViews,
    task: JoinHandle<()>,
}

impl Recorder {
    /// Starts the recorder on the current tokio runtime.
    pub fn spawn(store: Store) -> Recorder {
        let (views, task) = RecentViews::spawn(store);
        Recorder { views, task }
    }

    /// A handle for the services.
    pub fn views(&self) -> RecentViews {
        self.views.clone()
    }

    /// On shutdown, once calls have drained and before the database closes: writes every view recorded so far
    /// and waits for the task to end (it ends when the services' handles are gone too).
    pub async fn close(self) {
        let Recorder { views, task } = self;
        views.flush().await;
        drop(views);
        if tokio::time::timeout(FLUSH_TIMEOUT, task).await.is_err() {
            tracing::debug!("recent-view recorder still referenced after its final flush");
        }
    }
}

async fn run(store: Store, mut receiver: mpsc::Receiver<Command>) {
    let mut pending: HashMap<(String, String), Micros> = HashMap::new();
    let mut pruned = Pruned::default();
    let mut deadline = Instant::now();
    loop {
        let command = if pending.is_empty() {
            receiver.recv().await
        } else {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(command) => command,
                Err(_) => {
                    write(&store, &mut pending, &mut pruned).await;
                    continue;
                }
            }
        };
        match command {
            Some(Command::View(view)) => {
                if pending.is_empty() {
                    deadline = Instant::now() + BATCH_DELAY;
                }
                let time = pending.entry((view.agent, view.customer_id)).or_default();
                *time = (*time).max(view.time);
                if pending.len() >= MAX_BATCH {
                    write(&store, &mut pending, &mut pruned).await;
                }
            }
            Some(Command::Flush(ack)) => {
                write(&store, &mut pending, &mut pruned).await;
                let _ = ack.send(());
            }
            None => {
                write(&store, &mut pending, &mut pruned).await;
                return;
            }
        }
    }
}

/// When each agent's old views were last deleted, for the agents deleted within [`PRUNE_INTERVAL`].
#[derive(Default)]
struct Pruned(HashMap<String, Instant>);

impl Pruned {
    /// The agents of `views` whose old views are due for deletion, each once.
    fn due(&mut self, views: &[View]) -> Vec<String> {
        let now = Instant::now();
        // An agent deleted longer ago is due again, as one never deleted: forgotten, so the map holds only the
        // agents of the last interval.
        self.0
            .retain(|_, last| now.duration_since(*last) < PRUNE_INTERVAL);
        let mut due: Vec<String> = views
            .iter()
            .filter(|view| !self.0.contains_key(&view.agent))
            .map(|view| view.agent.clone())
            .collect();
        due.sort_unstable();
        due.dedup();
        due
    }

    /// Notes that the old views of `agents` were deleted now.
    fn deleted(&mut self, agents: Vec<String>) {
        let now = Instant::now();
        self.0.extend(agents.into_iter().map(|agent| (agent, now)));
    }
}

async fn write(
    store: &Store,
    pending: &mut HashMap<(String, String), Micros>,
    pruned: &mut Pruned,
) {
    if pending.is_empty() {
        return;
    }
    let mut views: Vec<View> = pending
        .drain()
        .map(|((agent, customer_id), time)| View {
            agent,
            customer_id,
            time,
        })
        .collect();
    // In key order, the upserts walk the table's primary key from one end to the other instead of at random.
    views.sort_unstable_by(|a, b| (&a.agent, &a.customer_id).cmp(&(&b.agent, &b.customer_id)));
    let prune = pruned.due(&views);
    // A second try reads again which customers exist: on PostgreSQL one deleted between the check and the
    // upsert fails the whole batch.
    let mut written = store.record_views(&views, &prune).await;
    if written.is_err() {
        written = store.record_views(&views, &prune).await;
    }
    match written {
        Ok(()) => pruned.deleted(prune),
        Err(err) => tracing::warn!(error = %err, views = views.len(), "cannot record recent views"),
    }
}

/// Upserts the views of `views` whose customers exist, skipping the others, checking and upserting at most
/// `per_statement` views a statement.
pub(super) async fn upsert_live(
    db: &impl ConnectionTrait,
    views: &[View],
    per_statement: usize,
) -> Result<()> {
    for chunk in views.chunks(per_statement) {
        let ids: Vec<&str> = chunk.iter().map(|v| v.customer_id.as_str()).collect();
        let existing: std::collections::HashSet<String> = customers::Entity::find()
            .select_only()
            .column(customers::Column::Id)
            .filter(customers::Column::Id.is_in(ids))
            .into_tuple::<String>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        let live: Vec<View> = chunk
            .iter()
            .filter(|v| existing.contains(&v.customer_id))
            .cloned()
            .collect();
        upsert(db, &live).await?;
    }
    Ok(())
}

/// Upserts `views` (at most one per agent and customer), keeping the newer time of each. Every customer must
/// exist.
pub(super) async fn upsert(db: &impl ConnectionTrait, views: &[View]) -> Result<()> {
    if views.is_empty() {
        return Ok(());
    }
    upsert_query(views).exec_without_returning(db).await?;
    Ok(())
}

/// Inserts the views, or moves an agent's existing entry to a later view time.
pub(super) fn upsert_query(views: &[View]) -> sea_orm::InsertMany<recent_views::ActiveModel> {
    upsert_rows(views.iter().map(view_row))
}

/// [`upsert_query`] of rows made by [`view_row`].
pub(super) fn upsert_rows(
    rows: impl IntoIterator<Item = recent_views::ActiveModel>,
) -> sea_orm::InsertMany<recent_views::ActiveModel> {
    recent_views::Entity::insert_many(rows).on_conflict(
        OnConflict::columns([
            recent_views::Column::Agent,
            recent_views::Column::CustomerId,
        ])
        .update_column(recent_views::Column::ViewTime)
        .action_and_where(Expr::cust("excluded.view_time > recent_views.view_time"))
        .to_owned(),
    )
}

/// The row of one view.
pub(super) fn view_row(view: &View) -> recent_views::ActiveModel {
    recent_views::ActiveModel {
        agent: sea_orm::Set(view.agent.clone()),
        customer_id: sea_orm::Set(view.customer_id.clone()),
        view_time: sea_orm::Set(view.time),
    }
}

/// The oldest view time still in the window at `now`.
fn window_start(now: Micros) -> Micros {
    now.saturating_sub(RECENT_WINDOW.as_micros() as i64)
}

impl Store {
    /// Writes a batch of views in one transaction: views of customers deleted meanwhile are skipped, and the
    /// views of the agents in `prune` older than [`RECENT_WINDOW`] are deleted.
    pub async fn record_views(&self, views: &[View], prune: &[String]) -> Result<()> {
        self.record_views_by(STATEMENT_VIEWS, views, prune).await
    }

    /// [`Store::record_views`], checking and upserting at most `per_statement` views a statement on a pooled
    /// connection (the SQLite writer's runs one statement per view).
    async fn record_views_by(
        &self,
        per_statement: usize,
        views: &[View],
        prune: &[String],
    ) -> Result<()> {
        let views = views.to_vec();
        let prune = prune.to_vec();
        self.write_unlogged("record_views", move |txn| {
            Box::pin(async move {
                txn.upsert_views(&views, per_statement).await?;
                let cutoff = window_start(now_micros());
                for agent in prune {
                    recent_views::Entity::delete_many()
                        .filter(recent_views::Column::Agent.eq(agent))
                        .filter(recent_views::Column::ViewTime.lt(cutoff))
                        .exec(txn)
                        .await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// The customers `agent` opened or read within [`RECENT_WINDOW`], most recent first, at most `limit`.
    pub async fn recent_customers(&self, agent: &str, limit: u64) -> Result<Vec<Customer>> {
        let query = customers::Entity::find()
            .join(
                JoinType::InnerJoin,
                recent_views::Relation::Customer.def().rev(),
            )
            .filter(recent_views::Column::Agent.eq(agent))
            .filter(recent_views::Column::ViewTime.gte(window_start(now_micros())))
            .order_by_desc(recent_views::Column::ViewTime)
            .order_by_desc(recent_views::Column::CustomerId);
        super::fetch(&self.reader(), query, limit, from_model).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(agent: &str, customer_id: &str) -> View {
        View {
            agent: agent.to_owned(),
            customer_id: customer_id.to_owned(),
            time: 0,
        }
    }

    /// On the SQLite writer's connection, and on a pooled one (as on PostgreSQL).
    #[tokio::test]
    async fn a_batch_larger_than_a_statement_is_written_whole_and_skips_deleted_customers() {
        let (_dir, store) = crate::store::scratch_store().await;
        batch_written_whole_skipping_deleted_customers(store).await;
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut pooled = crate::config::DatabaseSettings::new(format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("cc.db").display()
        ));
        pooled.sqlite_open_context_batches = false;
        let pooled = Store::connect(&pooled).await.expect("connect");
        pooled.migrate().await.expect("migrate");
        batch_written_whole_skipping_deleted_customers(pooled).await;
    }

    async fn batch_written_whole_skipping_deleted_customers(store: Store) {
        use sea_orm::PaginatorTrait;

        use crate::domain::{customer::CustomerData, edit::Deletion};
        let mut ids = Vec::new();
        for _ in 0..5 {
            let customer = store
                .create_customer("setup", CustomerData::default())
                .await
                .expect("create");
            ids.push(customer.id);
        }
        let gone = ids.remove(2);
        store
            .delete_customer(
                "setup",
                Deletion {
                    id: gone.clone(),
                    version: 1,
                },
            )
            .await
            .expect("delete");
        let now = now_micros();
        let mut views: Vec<View> = ids
            .iter()
            .chain([&gone])
            .enumerate()
            .map(|(i, id)| View {
                agent: "ana".to_owned(),
                customer_id: id.clone(),
                time: now - 1_000 * (i as i64 + 1),
            })
            .collect();
        views.push(View {
            agent: "ben".to_owned(),
            customer_id: ids[3].clone(),
            time: now,
        });
        // Six views, two a statement when pooled: three statements, the deleted customer's view in the last.
        store
            .record_views_by(2, &views, &[])
            .await
            .expect("recorded");
        let listed = |agent: &'static str| {
            let store = store.clone();
            async move {
                store
                    .recent_customers(agent, 10)
                    .await
                    .expect("listed")
                    .into_iter()
                    .map(|customer| customer.id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            listed("ana").await,
            ids,
            "newest first, the deleted one left out"
        );
        assert_eq!(listed("ben").await, [ids[3].clone()]);
        let stored = recent_views::Entity::find()
            .count(&store.reader())
            .await
            .expect("counted");
        assert_eq!(stored, 5, "no view of the deleted customer is kept");
        store.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_agents_old_views_are_deleted_once_per_interval() {
        let mut pruned = Pruned::default();
        let batch = [view("ana", "c1"), view("ben", "c2"), view("ana", "c3")];
        assert_eq!(pruned.due(&batch), ["ana", "ben"]);
        assert_eq!(
            pruned.due(&batch),
            ["ana", "ben"],
            "still due: the write that deletes them has not succeeded"
        );
        let due = pruned.due(&batch);
        pruned.deleted(due);

        tokio::time::advance(PRUNE_INTERVAL / 2).await;
        assert!(pruned.due(&batch).is_empty(), "both were deleted just now");
        let cy = [view("cy", "c4")];
        assert_eq!(pruned.due(&cy), ["cy"], "a new agent");
        let due = pruned.due(&cy);
        pruned.deleted(due);

        tokio::time::advance(PRUNE_INTERVAL / 2).await;
        assert_eq!(pruned.due(&batch), ["ana", "ben"]);
        assert!(pruned.due(&cy).is_empty());
        assert_eq!(pruned.0.len(), 1, "only cy was deleted within the interval");
    }
}
