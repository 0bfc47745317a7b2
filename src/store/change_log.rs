//! Appending to and reading the change log.

use sea_orm::{
    ActiveModelTrait, ActiveValue,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, EntityName, EntityTrait, FromQueryResult, Iterable,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    sea_query::{
        Alias, CommonTableExpression, Expr, InsertStatement, Query, SelectStatement,
        SubQueryStatement, WithClause, WithQuery,
    },
};
use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::{Map, Value};

use super::entity::change_log;
use crate::{
    domain::{
        change::{Change, ChangeKind, NewChange, ResourceKind},
        field_merge::LoggedEdit,
        mask::FieldChange,
    },
    error::{Error, Result},
    store::Store,
};

/// PostgreSQL channel on which the sequencer announces the newest log position to all replicas.
pub const NOTIFY_CHANNEL: &str = "customer_context_changes";
/// PostgreSQL advisory-lock key held by one sequencing pass at a time, across replicas ("cc-log").
pub(super) const SEQUENCER_LOCK: i64 = 0x6363_2d6c_6f67;

/// Appends `change` inside the caller's transaction.
///
/// On SQLite one writer commits at a time, so the row's key, given at insert, is its log position. On
/// PostgreSQL writers commit side by side, and a position given at insert could become visible after a larger
/// one (a reader following the log would pass over it). There the row gets a provisional negative key, and
/// [`sequence`] gives it its position once it is committed.
pub(super) async fn append(db: &impl ConnectionTrait, change: NewChange) -> Result<()> {
    change_log::Entity::insert(to_row(change)?).exec(db).await?;
    Ok(())
}

/// The log rows of `changes` (in the given order) inserted in the same statement as `writes` (PostgreSQL): each
/// write runs as a data-modifying `WITH` of the log rows' insert, so they all cost one round trip instead of one
/// each.
pub(super) fn logged_with(
    writes: Vec<SubQueryStatement>,
    changes: Vec<NewChange>,
) -> Result<WithQuery> {
    let rows = changes
        .into_iter()
        .map(to_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(change_log::Entity::insert_many(rows)
        .into_query()
        .with(with_writes(None, writes)))
}

/// Name of the guard's `WITH` in [`append_guarded`].
const GUARD: &str = "guard";

/// Like [`logged_with`] for one change, but everything is written only if `guard` yields a row, in one statement that needs no
/// transaction around it (PostgreSQL; see `Store::write_statement`): `rows`, each inserted once per guard row,
/// and the log row of `change`. `guard` yields at most one row, e.g. a record's key locked against deletion
/// (`FOR KEY SHARE`) until the statement commits. The statement writes one log row if the guard held, none
/// otherwise.
pub(super) fn append_guarded(
    guard: SelectStatement,
    rows: Vec<InsertStatement>,
    change: NewChange,
) -> Result<WithQuery> {
    let writes = rows.into_iter().map(Into::into).collect();
    Ok(insert_from(to_row(change)?)?.with(with_writes(Some(guard), writes)))
}

/// The insert of `row` as `INSERT ... SELECT <its values> FROM guard`, for [`append_guarded`]: the columns and
/// values `sea_orm`'s insert of the same row has, in the same order and with the same casts.
pub(super) fn insert_from<A: ActiveModelTrait>(mut row: A) -> Result<InsertStatement> {
    let mut columns = Vec::new();
    let mut values = Query::select();
    for column in <A::Entity as EntityTrait>::Column::iter() {
        if let ActiveValue::Set(value) | ActiveValue::Unchanged(value) = row.take(column) {
            columns.push(column);
            values.expr(column.save_as(Expr::val(value)));
        }
    }
    values.from(Alias::new(GUARD));
    let mut insert = Query::insert();
    insert
        .into_table(A::Entity::default().table_ref())
        .columns(columns)
        .select_from(values)
        .map_err(Error::internal)?;
    Ok(insert)
}

/// The `WITH` clause of a log row's insert: the guard first, if any, then each write.
fn with_writes(guard: Option<SelectStatement>, writes: Vec<SubQueryStatement>) -> WithClause {
    let mut with = WithClause::new();
    if let Some(guard) = guard {
        with.cte(
            CommonTableExpression::new()
                .query(guard)
                .table_name(Alias::new(GUARD))
                .to_owned(),
        );
    }
    for (n, write) in writes.into_iter().enumerate() {
        with.cte(
            CommonTableExpression::new()
                .query(write)
                .table_name(Alias::new(format!("write_{n}")))
                .to_owned(),
        );
    }
    with
}

/// Most change-log rows one insert statement carries (about a dozen bound parameters each).
const APPEND_CHUNK: usize = 500;

/// Appends several changes (in the given order; one statement per 500), like [`append`] does one.
pub(super) async fn append_all(db: &impl ConnectionTrait, changes: Vec<NewChange>) -> Result<()> {
    let rows = changes
        .into_iter()
        .map(to_row)
        .collect::<Result<Vec<_>>>()?;
    // In chunks, so a large batch (a merge moving thousands of records) stays under the databases' limits on
    // bound parameters per statement.
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(APPEND_CHUNK).collect();
        change_log::Entity::insert_many(chunk).exec(db).await?;
    }
    Ok(())
}

/// One sequencing pass on PostgreSQL: the function `change_log_sequence()` (migration `m0009_log_sequencing`,
/// which says how it keeps the log's promises), in one statement and one round trip. Under an advisory lock
/// that only sequencing passes take, every committed row with a provisional key gets the next position, in the
/// order the rows were inserted, and the newest position is announced to every replica.
pub const SEQUENCE_PASS: &str = "SELECT change_log_sequence()";

/// Runs one sequencing pass (PostgreSQL).
pub(super) async fn sequence(db: &impl ConnectionTrait) -> Result<()> {
    db.execute_unprepared(SEQUENCE_PASS).await?;
    Ok(())
}

/// Shortest time from the start of one sequencing pass to the start of the next one that commits started. Each
/// pass is a transaction of its own (a round trip, a WAL flush, a `NOTIFY` that wakes every replica's feed); a
/// steady stream of commits then shares one pass per interval instead of starting one as soon as the last is
/// done. The change feed reads at most every 10 ms anyway (`events::feed`). A reader that must see every write
/// answered before it (a watch catching up, a record's history, an export) does not wait for the interval.
const MIN_PASS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Gives committed changes their positions on PostgreSQL, coalescing: any number of callers waiting at once
/// share one pass, and each returns once a pass that began after its call has finished.
#[derive(Debug, Default)]
pub(super) struct Sequencer {
    /// Calls made so far.
    requested: std::sync::atomic::AtomicU64,
    /// Set by a caller that cannot wait for the interval, cleared by the next pass as it starts.
    hurried: std::sync::atomic::AtomicBool,
    /// Wakes a pass waiting for its interval when a caller hurries it.
    hurry: tokio::sync::Notify,
    /// The last finished pass: the number of calls (counted in `requested`) made before it started, and when it
    /// started.
    last: tokio::sync::Mutex<(u64, Option<tokio::time::Instant>)>,
}

/// When a sequencing pass a caller needs may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pace {
    /// No sooner than [`MIN_PASS_INTERVAL`] after the last one started: for commits, which do not wait for it.
    Spaced,
    /// At once (after a pass running now): for readers waiting on it.
    Now,
}

impl Sequencer {
    /// Returns once every change committed before this call has its position: true if this call ran the pass
    /// that gave them, false if a pass another caller ran covered it.
    pub(super) async fn settle(&self, db: &impl ConnectionTrait, pace: Pace) -> Result<bool> {
        use std::sync::atomic::Ordering;
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        if pace == Pace::Now {
            self.hurried.store(true, Ordering::SeqCst);
            self.hurry.notify_waiters();
        }
        let mut last = self.last.lock().await;
        let (covered, started) = *last;
        if covered >= ticket {
            return Ok(false);
        }
        if let Some(started) = started {
            // Callers arriving meanwhile queue on the lock and are covered by this pass.
            self.wait_until(started + MIN_PASS_INTERVAL).await;
        }
        // A caller hurrying from now on is not covered by this pass; it hurries the next one.
        self.hurried.store(false, Ordering::SeqCst);
        // Every call counted now was made before this pass begins, so the pass covers it.
        let upto = self.requested.load(Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        sequence(db).await?;
        *last = (upto, Some(started));
        Ok(true)
    }

    /// Waits until `deadline`, or until a caller hurries the pass.
    async fn wait_until(&self, deadline: tokio::time::Instant) {
        let hurry = self.hurry.notified();
        tokio::pin!(hurry);
        // Listening before looking at the flag: a caller setting it after the look also wakes this wait.
        hurry.as_mut().enable();
        if self.hurried.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            () = hurry => {}
        }
    }
}

pub(super) fn to_row(change: NewChange) -> Result<change_log::ActiveModel> {
    let names: Vec<&str> = change.fields.iter().map(|f| f.field.as_str()).collect();
    let changes =
        serde_json::to_string(&ChangedValues::of(&change.fields)).map_err(Error::internal)?;
    Ok(change_log::ActiveModel {
        resource_type: Set(change.resource.as_str().to_owned()),
        resource_id: Set(change.resource_id),
        version: Set(change.version),
        kind: Set(change.kind.as_str().to_owned()),
        agent: Set(change.agent),
        changed_fields: Set(serde_json::to_string(&names).map_err(Error::internal)?),
        changes: Set(changes),
        parent_id: Set(change.parent_id),
        internal: Set(change.internal),
        change_time: Set(change.time),
        ..Default::default()
    })
}

/// A change's `changes` column: each changed field's `[old, new]`, written as the JSON object of those entries
/// would be (fields in name order; of a field named twice, its last values), without first copying them into one.
struct ChangedValues<'a>(Vec<&'a FieldChange>);

impl<'a> ChangedValues<'a> {
    fn of(fields: &'a [FieldChange]) -> Self {
        let mut sorted: Vec<&FieldChange> = fields.iter().rev().collect();
        // Stable: of a field named twice, the last one comes first and is kept.
        sorted.sort_by(|a, b| a.field.cmp(&b.field));
        sorted.dedup_by(|later, kept| later.field == kept.field);
        ChangedValues(sorted)
    }
}

impl Serialize for ChangedValues<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for field in &self.0 {
            map.serialize_entry(&field.field, &(&field.old, &field.new))?;
        }
        map.end()
    }
}

/// Every logged change of a record after `after_version`, in order, with each field's old and new value; None
/// when the log does not hold every version up to `current_version` with its values (anonymized, or older than
/// the log keeps).
pub(super) async fn edits_since(
    db: &impl ConnectionTrait,
    resource: ResourceKind,
    id: &str,
    after_version: i64,
    current_version: i64,
) -> Result<Option<Vec<LoggedEdit>>> {
    let rows = change_log::Entity::find()
        .filter(change_log::Column::ResourceType.eq(resource.as_str()))
        .filter(change_log::Column::ResourceId.eq(id))
        .filter(change_log::Column::Version.gt(after_version))
        // Not by position: on PostgreSQL a committed change may not have one yet (see `sequence`).
        .order_by_asc(change_log::Column::Version)
        .order_by_asc(change_log::Column::Seq)
        .all(db)
        .await?;
    let mut versions = std::collections::HashSet::new();
    let mut edits = Vec::with_capacity(rows.len());
    for row in rows {
        if row.redacted {
            return Ok(None);
        }
        versions.insert(row.version);
        let values: Map<String, Value> = serde_json::from_str(&row.changes)
            .map_err(|e| Error::internal(format!("corrupt change values: {e}")))?;
        let values = values
            .into_iter()
            .filter_map(|(field, pair)| match pair {
                Value::Array(mut pair) if pair.len() == 2 => {
                    let new = pair.pop()?;
                    let old = pair.pop()?;
                    Some((field, (old, new)))
                }
                _ => None,
            })
            .collect();
        edits.push(LoggedEdit {
            version: row.version,
            agent: row.agent,
            time: row.change_time,
            values,
        });
    }
    let covered = (after_version + 1..=current_version).all(|v| versions.contains(&v));
    Ok(covered.then_some(edits))
}

pub(super) fn from_model(model: change_log::Model) -> Result<Change> {
    LoggedChange {
        seq: model.seq,
        resource_type: model.resource_type,
        resource_id: model.resource_id,
        version: model.version,
        kind: model.kind,
        agent: model.agent,
        changed_fields: model.changed_fields,
        parent_id: model.parent_id,
        internal: model.internal,
        change_time: model.change_time,
    }
    .into_change()
}

/// The columns of a log row a [`Change`] is made of: all but the values themselves (`changes`, which only
/// history and audit read) and `redacted`. The feed reads every row the service writes, so it reads these only.
#[derive(Debug, FromQueryResult)]
pub(in crate::store) struct LoggedChange {
    pub(in crate::store) seq: i64,
    pub(in crate::store) resource_type: String,
    pub(in crate::store) resource_id: String,
    pub(in crate::store) version: i64,
    pub(in crate::store) kind: String,
    pub(in crate::store) agent: String,
    pub(in crate::store) changed_fields: String,
    pub(in crate::store) parent_id: Option<String>,
    pub(in crate::store) internal: bool,
    pub(in crate::store) change_time: i64,
}

/// The columns of [`LoggedChange`], in its order.
pub(in crate::store) const LOGGED_CHANGE_COLUMNS: [change_log::Column; 10] = [
    change_log::Column::Seq,
    change_log::Column::ResourceType,
    change_log::Column::ResourceId,
    change_log::Column::Version,
    change_log::Column::Kind,
    change_log::Column::Agent,
    change_log::Column::ChangedFields,
    change_log::Column::ParentId,
    change_log::Column::Internal,
    change_log::Column::ChangeTime,
];

impl LoggedChange {
    fn into_change(self) -> Result<Change> {
        Ok(Change {
            seq: self.seq,
            resource: ResourceKind::parse(&self.resource_type).ok_or_else(|| {
                Error::internal(format!(
                    "change {}: unknown resource {}",
                    self.seq, self.resource_type
                ))
            })?,
            resource_id: self.resource_id,
            version: self.version,
            kind: ChangeKind::parse(&self.kind).ok_or_else(|| {
                Error::internal(format!("change {}: unknown kind {}", self.seq, self.kind))
            })?,
            agent: self.agent,
            changed_fields: serde_json::from_str(&self.changed_fields).map_err(Error::internal)?,
            parent_id: self.parent_id,
            internal: self.internal,
            time: self.change_time,
        })
    }
}

/// The log rows after position `after`, oldest first, at most `limit`: the feed's read.
pub(in crate::store) fn changes_after_query(
    after: i64,
    limit: u64,
) -> sea_orm::Select<change_log::Entity> {
    change_log::Entity::find()
        .select_only()
        .columns(LOGGED_CHANGE_COLUMNS)
        .filter(change_log::Column::Seq.gt(after))
        .order_by_asc(change_log::Column::Seq)
        .limit(limit)
}

/// Most changes one read of the log returns.
pub const MAX_CHANGES_PER_READ: u64 = 1_000;

/// The log rows about `resources`: the records themselves, and for customers also their requests and activities.
fn about(resources: &[(ResourceKind, String)]) -> Condition {
    let mut condition = Condition::any();
    for kind in [
        ResourceKind::Customer,
        ResourceKind::Request,
        ResourceKind::Activity,
    ] {
        let ids: Vec<&str> = resources
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, id)| id.as_str())
            .collect();
        if ids.is_empty() {
            continue;
        }
        condition = condition.add(
            Condition::all()
                .add(change_log::Column::ResourceType.eq(kind.as_str()))
                .add(change_log::Column::ResourceId.is_in(ids.iter().copied())),
        );
        if kind == ResourceKind::Customer {
            condition = condition.add(change_log::Column::ParentId.is_in(ids.iter().copied()));
        }
    }
    condition
}

/// Log positions `(after, upto]`, read oldest first, at most `limit` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRange {
    pub after: i64,
    pub upto: i64,
    pub limit: u64,
}

impl LogRange {
    /// Whether no position lies in the range.
    pub fn is_empty(&self) -> bool {
        self.after >= self.upto
    }

    /// The smallest range holding both, with the larger limit.
    pub fn union(self, other: LogRange) -> LogRange {
        LogRange {
            after: self.after.min(other.after),
            upto: self.upto.max(other.upto),
            limit: self.limit.max(other.limit),
        }
    }
}

impl Store {
    /// The position of the newest change, 0 for an empty log. Every change committed before the call has its
    /// position by then (see [`Store::sequence_committed`]).
    pub async fn last_change_seq(&self) -> Result<i64> {
        self.sequence_committed().await;
        let last: Option<Option<i64>> = change_log::Entity::find()
            .select_only()
            .column_as(change_log::Column::Seq.max(), "seq")
            .into_tuple()
            .one(&self.reader())
            .await?;
        // Positions start at 1; a PostgreSQL log holding only changes not yet sequenced has none.
        Ok(last.flatten().unwrap_or(0).max(0))
    }

    /// Changes after position `after`, oldest first, at most `limit`.
    ///
    /// The change feed runs this after every burst of commits; its limit is written into the statement (see
    /// [`super::literal_limit`]), so SQLite does not plan it again at every run.
    pub async fn changes_after(&self, after: i64, limit: u64) -> Result<Vec<Change>> {
        let query = changes_after_query(after, limit);
        let rows = match &self.group_commit {
            Some(readers) => readers.logged_changes(&query)?,
            None => super::all_limited_as(&self.reader(), query).await?,
        };
        rows.into_iter().map(LoggedChange::into_change).collect()
    }

    /// Changes about `resources` (and the children of customers among them) within `range`, oldest first.
    pub async fn changes_about(
        &self,
        resources: &[(ResourceKind, String)],
        range: LogRange,
    ) -> Result<Vec<Change>> {
        if resources.is_empty() || range.is_empty() {
            return Ok(Vec::new());
        }
        let query = change_log::Entity::find()
            .filter(change_log::Column::Seq.gt(range.after))
            .filter(change_log::Column::Seq.lte(range.upto))
            .filter(about(resources))
            .order_by_asc(change_log::Column::Seq);
        super::fetch(&self.reader(), query, range.limit, from_model).await
    }

    /// The changes of several records, each past its own version (a deletion whatever its version), up to log
    /// position `upto`, oldest first: at most `limit`, the oldest ones, or with `newest` the newest ones.
    /// One query answers many subscriptions that catch up at once.
    pub async fn changes_of_records(
        &self,
        records: &[(ResourceKind, &str, i64)],
        upto: i64,
        limit: u64,
        newest: bool,
    ) -> Result<Vec<Change>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut any = Condition::any();
        for (kind, id, after_version) in records {
            any = any.add(
                Condition::all()
                    .add(change_log::Column::ResourceType.eq(kind.as_str()))
                    .add(change_log::Column::ResourceId.eq(*id))
                    .add(
                        Condition::any()
                            .add(change_log::Column::Version.gt(*after_version))
                            .add(change_log::Column::Kind.eq(ChangeKind::Deleted.as_str())),
                    ),
            );
        }
        let query = change_log::Entity::find()
            .filter(change_log::Column::Seq.gt(0))
            .filter(change_log::Column::Seq.lte(upto))
            .filter(any);
        let query = if newest {
            query.order_by_desc(change_log::Column::Seq)
        } else {
            query.order_by_asc(change_log::Column::Seq)
        };
        let mut changes = query
            .limit(limit)
            .all(&self.reader())
            .await?
            .into_iter()
            .map(from_model)
            .collect::<Result<Vec<_>>>()?;
        if newest {
            changes.reverse();
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::{DbBackend, MockDatabase, MockExecResult};
    use tokio::time::Instant;

    use super::*;

    #[test]
    fn changed_values_are_written_as_an_object_of_old_and_new_in_field_order() {
        let field = |name: &str, old: Value, new: Value| FieldChange {
            field: name.to_owned(),
            old,
            new,
        };
        let fields = vec![
            field("topic", Value::from(""), Value::from("Zoë \"billing\"")),
            field("channel", Value::from(0), Value::from(1)),
            field(
                "tags",
                Value::from(Vec::<String>::new()),
                serde_json::json!(["vip"]),
            ),
            // A field named twice keeps its last values.
            field("channel", Value::from(1), Value::from(2)),
        ];
        let written = serde_json::to_string(&ChangedValues::of(&fields)).expect("json");
        assert_eq!(
            written,
            r#"{"channel":[1,2],"tags":[[],["vip"]],"topic":["","Zoë \"billing\""]}"#
        );
        // The same text as the JSON object of the same entries.
        let object: Map<String, Value> = fields
            .iter()
            .map(|f| {
                (
                    f.field.clone(),
                    Value::Array(vec![f.old.clone(), f.new.clone()]),
                )
            })
            .collect();
        assert_eq!(written, Value::Object(object).to_string());
    }

    /// A PostgreSQL stand-in on which sequencing passes succeed (up to four), logging each.
    fn passes_database() -> Arc<sea_orm::DatabaseConnection> {
        let done = MockExecResult {
            last_insert_id: 0,
            rows_affected: 0,
        };
        Arc::new(
            MockDatabase::new(DbBackend::Postgres)
                .append_exec_results(vec![done; 4])
                .into_connection(),
        )
    }

    #[test]
    fn a_guarded_insert_writes_what_sea_orms_insert_of_the_row_writes() {
        let row = || change_log::ActiveModel {
            resource_type: Set("activity".to_owned()),
            resource_id: Set("a-1".to_owned()),
            version: Set(1),
            kind: Set("created".to_owned()),
            agent: Set("ana".to_owned()),
            changed_fields: Set("[]".to_owned()),
            changes: Set("{}".to_owned()),
            parent_id: Set(None),
            internal: Set(true),
            change_time: Set(1_700_000_000_000_000),
            ..Default::default()
        };
        let (plain, plain_values) = change_log::Entity::insert(row())
            .into_query()
            .build(sea_orm::sea_query::PostgresQueryBuilder);
        let (guarded, guarded_values) = insert_from(row())
            .expect("guarded insert")
            .build(sea_orm::sea_query::PostgresQueryBuilder);
        assert_eq!(guarded_values, plain_values);
        let values = plain
            .strip_suffix(')')
            .and_then(|s| s.split_once(" VALUES ("));
        let (into, values) = values.expect("a one-row insert");
        assert_eq!(guarded, format!("{into} SELECT {values} FROM \"guard\""));
    }

    #[tokio::test(start_paused = true)]
    async fn commits_arriving_while_a_pass_waits_for_its_interval_share_the_next_pass() {
        let db = passes_database();
        let sequencer = Arc::new(Sequencer::default());
        let first = Instant::now();
        assert!(
            sequencer.settle(&*db, Pace::Spaced).await.unwrap(),
            "the first call runs a pass"
        );

        // Ten commits right after: one pass covers them all, no sooner than the interval after the first.
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let (sequencer, db) = (sequencer.clone(), db.clone());
                tokio::spawn(async move {
                    let ran = sequencer.settle(&*db, Pace::Spaced).await.unwrap();
                    (ran, Instant::now())
                })
            })
            .collect();
        let mut ran = 0;
        for call in calls {
            let (ran_pass, returned) = call.await.unwrap();
            ran += usize::from(ran_pass);
            assert!(
                returned - first >= MIN_PASS_INTERVAL,
                "answered {:?} after the first pass began",
                returned - first
            );
        }
        assert_eq!(ran, 1, "the ten calls shared one pass");
        let db = Arc::try_unwrap(db).expect("every call is done");
        let passes = db.into_transaction_log().len();
        assert_eq!(passes, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_cannot_wait_starts_the_waiting_pass_at_once_for_everyone() {
        let db = passes_database();
        let sequencer = Arc::new(Sequencer::default());
        let first = Instant::now();
        sequencer.settle(&*db, Pace::Spaced).await.unwrap();

        // Commits wait for the interval; a reader arriving a millisecond later does not, nor do they then.
        let settle = |pace| {
            let (sequencer, db) = (sequencer.clone(), db.clone());
            tokio::spawn(async move {
                sequencer.settle(&*db, pace).await.unwrap();
                Instant::now()
            })
        };
        let commits: Vec<_> = (0..5).map(|_| settle(Pace::Spaced)).collect();
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let reader = settle(Pace::Now);
        for call in commits.into_iter().chain([reader]) {
            let returned = call.await.unwrap() - first;
            assert!(
                returned < MIN_PASS_INTERVAL,
                "answered {returned:?} after the first pass began"
            );
        }
        let db = Arc::try_unwrap(db).expect("every call is done");
        assert_eq!(
            db.into_transaction_log().len(),
            2,
            "one pass covered all six"
        );
    }
}
