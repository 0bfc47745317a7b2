//! Activity repository: the customer's journey.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, RuntimeErr, Select, sea_query::LockType,
};
use tokio::sync::{Notify, oneshot};
use tracing::Instrument;

use super::{
    Store, Tx, change_log, customers, decode_json, encode_json,
    entity::{self, activities},
    record,
};
use crate::{
    domain::{
        activity::{Activity, ActivityData},
        change::NewChange,
        customer::{Audit, Customer},
        edit::{Deletion, Edit},
        mask,
        page::Cursor,
        reason,
        request::Request,
        time::{Micros, now_micros},
        violations::Violations,
    },
    error::{Error, Result},
    telemetry::otel::{self, CallTrace},
};

pub(super) fn to_active(activity: &Activity) -> Result<activities::ActiveModel> {
    let d = &activity.data;
    Ok(activities::ActiveModel {
        id: Set(activity.id.clone()),
        version: Set(activity.version),
        customer_id: Set(d.customer_id.clone()),
        request_id: Set(d.request_id.clone()),
        channel: Set(d.channel),
        direction: Set(d.direction),
        internal: Set(d.internal),
        topic: Set(d.topic.clone()),
        notes: Set(d.notes.clone()),
        tags: Set(encode_json(&d.tags)?),
        occur_time: Set(d.occur_time),
        follow_up_time: Set(d.follow_up_time),
        entered_by: Set(d.entered_by.clone()),
        contact_name: Set(d.contact_name.clone()),
        contact_phone: Set(d.contact_phone.clone()),
        contact_email: Set(d.contact_email.clone()),
        sales_contact: Set(d.sales_contact.clone()),
        salesperson: Set(d.salesperson.clone()),
        reference: Set(d.reference.clone()),
        create_time: Set(activity.audit.create_time),
        update_time: Set(activity.audit.update_time),
        created_by: Set(activity.audit.created_by.clone()),
        updated_by: Set(activity.audit.updated_by.clone()),
    })
}

pub(super) fn from_model(m: activities::Model) -> Result<Activity> {
    Ok(Activity {
        id: m.id,
        version: m.version,
        data: ActivityData {
            customer_id: m.customer_id,
            request_id: m.request_id,
            channel: m.channel,
            direction: m.direction,
            internal: m.internal,
            topic: m.topic,
            notes: m.notes,
            tags: decode_json(&m.tags)?,
            occur_time: m.occur_time,
            follow_up_time: m.follow_up_time,
            entered_by: m.entered_by,
            contact_name: m.contact_name,
            contact_phone: m.contact_phone,
            contact_email: m.contact_email,
            sales_contact: m.sales_contact,
            salesperson: m.salesperson,
            reference: m.reference,
        },
        audit: Audit {
            create_time: m.create_time,
            update_time: m.update_time,
            created_by: m.created_by,
            updated_by: m.updated_by,
        },
    })
}

record::stored_in!(Activity, activities);

/// Most new activities one statement writes (about fifty bound parameters each; PostgreSQL takes 65,535).
const MOST_PER_BATCH: usize = 64;

/// Batches of new activities written at the same time. While they are, the activities of other calls queue for
/// the next ones, so the busier the service the more each statement carries. More than one, so that a batch
/// waiting for a customer's lock (a merge or deletion committing) does not hold up every other call, and so that
/// the round trips of batches overlap (a batch spends most of its time waiting for the database's answers).
const BATCHES_AT_ONCE: usize = 4;

/// Longest a batch waits for the calls it gathers before it is written with those that came (tokio's timer
/// rounds it up to its next millisecond): about the round trip of a call answered and made again.
const GATHER_AT_MOST: Duration = Duration::from_micros(500);

/// How long the most CreateActivity calls in progress at once is remembered ([`Batching::busiest`]) without
/// being reached again: past it, the count starts over from the calls in progress now.
const BUSIEST_FOR: Duration = Duration::from_secs(1);

/// On PostgreSQL, the new activities of concurrent CreateActivity calls waiting to be written together: one
/// statement, one commit and one round trip for many instead of one each, the database's per-statement work
/// (parsing, planning, committing) shared between them.
///
/// A call that finds nothing being written writes its activity at once, alone: one writer waits for nobody.
/// A call that comes while a batch is being written and a place is free starts a batch that first gathers the
/// calls expected with it: as many as the last batch written carried (their callers tend to come back
/// together, and under a steady load as many come in one batch's time), and at least its share of the calls
/// the service has lately had in progress at once (that many divided by the places: four of sixteen), for at
/// most [`GATHER_AT_MOST`]. Without the gathering, the first of them took the free place alone and held it for a
/// whole write while the others queued behind both places, so half the statements carried one activity. Without
/// the share, a batch of one made the next call that found a place free write alone too, so that at sixteen
/// writers two batches in five still carried one. With fewer calls in progress than twice the places (one to
/// seven writers), the share is one and calls write as soon as a place is free, as before. PostgreSQL's
/// `commit_delay` waits in the same spirit, and only when other transactions are active (`commit_siblings`).
#[derive(Debug, Default)]
pub(super) struct ActivityBatches {
    state: Mutex<Batching>,
    /// Woken when an activity queues while a batch gathers.
    arrived: Notify,
}

#[derive(Debug, Default)]
struct Batching {
    queued: Vec<NewActivity>,
    /// Batches being written or gathered.
    writing: usize,
    /// One of them is gathering its activities.
    gathering: bool,
    /// Activities in the batch that ended last.
    last_batch: usize,
    /// CreateActivity calls in progress now (see [`ActivityBatches::enter`]).
    calls: usize,
    /// The most calls in progress at once lately, and when that count was last reached.
    busiest: usize,
    busiest_at: Option<Instant>,
}

impl Batching {
    /// How many queued activities end a batch's gathering.
    fn gather_target(&self) -> usize {
        let share = self.busiest / BATCHES_AT_ONCE;
        self.last_batch.max(share).clamp(1, MOST_PER_BATCH)
    }

    /// Counts a call starting, into [`Batching::busiest`] too.
    fn enter(&mut self, now: Instant) {
        self.calls += 1;
        let forgotten = self
            .busiest_at
            .is_none_or(|at| now.saturating_duration_since(at) > BUSIEST_FOR);
        if self.calls >= self.busiest || forgotten {
            self.busiest = self.calls;
            self.busiest_at = Some(now);
        }
    }
}

/// A new activity waiting for its batch, and where its outcome goes.
#[derive(Debug)]
struct NewActivity {
    agent: String,
    activity: Activity,
    now: Micros,
    /// Its customer, as its batch read it.
    customer: Option<Customer>,
    /// The call's trace, which the batch's span joins.
    trace: CallTrace,
    written: oneshot::Sender<Result<Activity>>,
}

impl NewActivity {
    /// Answers the call (if it is still waiting) with its activity once written, or why it was not.
    fn answer(self, outcome: Result<()>) {
        let _ = self.written.send(outcome.map(|()| self.activity));
    }
}

/// What [`ActivityBatches::queue`] asks of the call that queued.
enum Turn {
    /// Nothing is being written, or a place is free and a batch would gather no one else (the last batch carried
    /// one activity and the calls in progress give no larger share): the call writes its activity itself (a
    /// batch of one), without the hand-off to a task, and gives the place back when done ([`WritingAlone`]).
    Alone(Box<NewActivity>),
    /// The activity is queued and took a free place: the call starts the task that gathers the batch and
    /// writes it ([`Store::gather_activity_batch`]).
    Gather,
    /// The activity is queued for a batch being written, gathered or about to be.
    Wait,
}

impl ActivityBatches {
    /// Counts a CreateActivity call in progress until the returned guard is dropped.
    fn enter(&self) -> InProgress<'_> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .enter(Instant::now());
        InProgress(self)
    }

    /// Queues `new`, unless the call may write it at once.
    ///
    /// Activities queue only while a place is taken, and a place is given back only when nothing is queued (see
    /// [`ActivityBatches::next`] and [`ActivityBatches::done_alone`]): so no place taken means an empty queue,
    /// and whatever queues is taken by a writer already there or by the one it starts.
    fn queue(&self, new: NewActivity) -> Turn {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.writing < BATCHES_AT_ONCE
            && state.queued.is_empty()
            && (state.writing == 0 || state.gather_target() == 1)
        {
            state.writing += 1;
            return Turn::Alone(Box::new(new));
        }
        state.queued.push(new);
        if state.gathering {
            drop(state);
            self.arrived.notify_one();
            return Turn::Wait;
        }
        if state.writing < BATCHES_AT_ONCE {
            state.writing += 1;
            state.gathering = true;
            return Turn::Gather;
        }
        Turn::Wait
    }

    /// Whether the gathering batch has the activities it waits for.
    fn gathered(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.queued.len() >= state.gather_target()
    }

    /// Ends the gathering: the batch is taken by the next [`ActivityBatches::next`].
    fn stop_gathering(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.gathering = false;
    }

    /// The next batch to write, after one of `finished` activities (0: none); None, and one writing fewer, when
    /// nothing is queued.
    fn next(&self, finished: usize) -> Option<Vec<NewActivity>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if finished > 0 {
            state.last_batch = finished;
        }
        if state.queued.is_empty() {
            state.writing -= 1;
            return None;
        }
        let take = state.queued.len().min(MOST_PER_BATCH);
        Some(state.queued.drain(..take).collect())
    }

    /// A call wrote its activity alone: its place goes back, or, when activities queued meanwhile for want of
    /// one, to a task writing them (true).
    fn done_alone(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.last_batch = 1;
        if state.queued.is_empty() {
            state.writing -= 1;
            return false;
        }
        true
    }
}

/// A CreateActivity call counted in progress ([`ActivityBatches::enter`]) until dropped.
struct InProgress<'a>(&'a ActivityBatches);

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.calls -= 1;
    }
}

/// The place of a call writing its activity alone ([`Turn::Alone`]), given back when the write ends or the call
/// goes away.
struct WritingAlone(Store);

impl Drop for WritingAlone {
    fn drop(&mut self) {
        if self.0.activity_batches.done_alone() {
            self.0.clone().write_activity_batches();
        }
    }
}

/// Whether the database answered `err` to a statement: it failed as a whole and wrote nothing (a statement
/// outside a transaction commits only when it succeeds). An error on the way (a connection lost after the
/// statement was sent) says nothing of whether it committed.
fn refused_by_database(err: &DbErr) -> bool {
    matches!(
        err,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))
            if matches!(e.as_ref(), sea_orm::sqlx::Error::Database(_))
    )
}

/// Checks the activity's links: the request exists and is not cancelled, the customer is taken from the request
/// when missing and must match it otherwise, and the customer exists. Returns that customer, if any.
async fn resolve_links(
    db: &Tx,
    data: &mut ActivityData,
    check_request: bool,
) -> Result<Option<Customer>> {
    if let Some(request_id) = data.request_id.as_deref() {
        let request = record::find_for_update::<Request>(db, request_id).await?;
        if check_request && request.data.status.is_final() {
            return Err(Error::failed_precondition(
                "REQUEST_CANCELLED",
                format!(
                    "request {request_id} is cancelled; activities can no longer be linked to it"
                ),
            ));
        }
        match data.customer_id.as_deref() {
            None => data.customer_id = Some(request.customer_id),
            Some(customer_id) if customer_id != request.customer_id => {
                return Err(Violations::one(
                    "activity.customer_id",
                    reason::CUSTOMER_MISMATCH,
                    format!(
                        "request {request_id} belongs to customer {}, not {customer_id}",
                        request.customer_id
                    ),
                )
                .into());
            }
            Some(_) => {}
        }
    }
    match data.customer_id.as_deref() {
        Some(customer_id) => Ok(Some(customers::find_to_link(db, customer_id).await?)),
        None => Ok(None),
    }
}

impl Store {
    pub async fn create_activity(&self, agent: &str, mut data: ActivityData) -> Result<Activity> {
        if self.backend == DbBackend::Postgres && data.request_id.is_none() {
            return self.create_activity_in_batches(agent, data).await;
        }
        let agent = agent.to_owned();
        let store = self.clone();
        self.write("create_activity", move |txn| {
            Box::pin(async move {
                let agent = agent.as_str();
                let customer = resolve_links(txn, &mut data, true).await?;
                let now = now_micros();
                let activity = Activity::created(data, agent, now);
                // The notification to the customer, if any, is written with the activity.
                let notification = store.notification_to_queue(&activity, customer.as_ref())?;
                txn.insert_created(agent, &activity, now, notification)
                    .await?;
                Ok(activity)
            })
        })
        .await
    }

    /// CreateActivity on PostgreSQL for an activity linked to no request: the customer read, then one statement
    /// that writes the activity, its notification and its log row in a transaction of its own. Two round trips
    /// to the database instead of four (BEGIN, the read, the writes, COMMIT).
    ///
    /// The activities of concurrent calls are read for and written together, the two statements serving all of
    /// them (see [`ActivityBatches`]); each call still gets its own outcome. A customer deleted or merged before
    /// the write leaves nothing of its activity written and answers as a missing or merged one would.
    async fn create_activity_in_batches(
        &self,
        agent: &str,
        data: ActivityData,
    ) -> Result<Activity> {
        let now = now_micros();
        let (written, outcome) = oneshot::channel();
        let new = NewActivity {
            agent: agent.to_owned(),
            activity: Activity::created(data, agent, now),
            now,
            customer: None,
            trace: CallTrace::current(),
            written,
        };
        let _in_progress = self.activity_batches.enter();
        match self.activity_batches.queue(new) {
            Turn::Alone(new) => {
                let _place = WritingAlone(self.clone());
                self.write_activities(vec![*new]).await;
            }
            Turn::Gather => self.clone().gather_activity_batch(),
            Turn::Wait => {}
        }
        outcome
            .await
            .map_err(|_| Error::internal("the activity was dropped before it was written"))?
    }

    /// Writes the queued activities, batch after batch, until none is left; in a task of its own, so that a
    /// caller that goes away does not take the batch, and the other calls' writes in it, with it.
    fn write_activity_batches(self) {
        // A call dropped while its runtime shuts down has none to start the task on; its queued neighbours are
        // then answered INTERNAL when the queue goes.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(self.write_queued_activities());
    }

    /// Gathers a batch ([`ActivityBatches`]), then writes it and what queues after it, in a task of its own.
    fn gather_activity_batch(self) {
        // Called by a call in progress, so within the runtime.
        tokio::spawn(async move {
            let batches = &self.activity_batches;
            let deadline = tokio::time::Instant::now() + GATHER_AT_MOST;
            super::wait_for(&batches.arrived, deadline, || batches.gathered()).await;
            batches.stop_gathering();
            self.write_queued_activities().await;
        });
    }

    /// Writes the queued activities, batch after batch, until none is left.
    async fn write_queued_activities(self) {
        let mut finished = 0;
        while let Some(batch) = self.activity_batches.next(finished) {
            finished = batch.len();
            self.write_activities(batch).await;
        }
    }

    /// Reads the customers of `batch` and writes its activities, answering each call, in the batch's span.
    async fn write_activities(&self, batch: Vec<NewActivity>) {
        self.metrics.activity_batch(batch.len());
        let span = otel::activity_batch_span(batch.len(), batch.iter().map(|new| &new.trace));
        async {
            let batch = self.with_customers(batch).await;
            self.write_activity_batch(batch).await;
        }
        .instrument(span)
        .await;
    }

    /// The activities of `batch` with their customers, read in one statement. Those whose customer is missing
    /// or merged are answered so and left out; if the read fails, all are answered with its error.
    async fn with_customers(&self, batch: Vec<NewActivity>) -> Vec<NewActivity> {
        let mut ids: Vec<&str> = batch
            .iter()
            .filter_map(|new| new.activity.data.customer_id.as_deref())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let found = match customers::find_all(&self.write, &ids).await {
            Ok(found) => found,
            Err(err) => {
                for new in batch {
                    new.answer(Err(err.copied()));
                }
                return Vec::new();
            }
        };
        let mut ready = Vec::with_capacity(batch.len());
        for mut new in batch {
            let Some(id) = new.activity.data.customer_id.as_deref() else {
                ready.push(new);
                continue;
            };
            match found.iter().find(|customer| customer.id == id) {
                Some(customer) => {
                    new.customer = Some(customer.clone());
                    ready.push(new);
                }
                None => {
                    let missing = customers::missing(&self.write, id).await;
                    new.answer(Err(missing.unwrap_or_else(|err| err)));
                }
            }
        }
        ready
    }

    /// Writes the activities of `batch` (each with its customer) in one statement, answering each call. When the
    /// database refuses it (a customer deleted or merged since it was read), nothing of it is written, and each
    /// activity is written alone to find which.
    async fn write_activity_batch(&self, mut batch: Vec<NewActivity>) {
        if batch.len() <= 1 {
            if let Some(new) = batch.pop() {
                let outcome = self.write_activity_alone(&new).await;
                new.answer(outcome);
            }
            return;
        }
        // The foreign-key checks lock the customers (`FOR KEY SHARE`) in the order of the rows: in id order, as
        // merges lock theirs, so a batch and a merge cannot deadlock.
        batch.sort_by(|a, b| {
            a.activity
                .data
                .customer_id
                .cmp(&b.activity.data.customer_id)
        });
        let statement = self
            .notifications_insert(
                batch
                    .iter()
                    .map(|new| (&new.activity, new.customer.as_ref())),
            )
            .and_then(|notifications| {
                record::insert_all_statement(
                    batch
                        .iter()
                        .map(|new| (new.agent.as_str(), &new.activity, new.now)),
                    notifications.into_iter().collect(),
                )
            });
        let refused = match statement {
            Ok(statement) => match self
                .try_write_statement("create_activities", &statement)
                .await
            {
                Ok(_) => {
                    for new in batch {
                        new.answer(Ok(()));
                    }
                    return;
                }
                Err(err) if refused_by_database(&err) => err.to_string(),
                Err(err) => {
                    let err = Error::from(err);
                    for new in batch {
                        new.answer(Err(err.copied()));
                    }
                    return;
                }
            },
            Err(err) => err.to_string(),
        };
        tracing::debug!(
            activities = batch.len(),
            error = %refused,
            "a batch of new activities was refused; writing each alone"
        );
        let mut alone = tokio::task::JoinSet::new();
        for new in batch {
            let store = self.clone();
            alone.spawn(async move {
                let outcome = store.write_activity_alone(&new).await;
                new.answer(outcome);
            });
        }
        while alone.join_next().await.is_some() {}
    }

    /// Writes one new activity in a statement of its own, the customer locked against deletion and merging
    /// (`FOR KEY SHARE`, as the read in a write transaction locks it) while the statement runs.
    async fn write_activity_alone(&self, new: &NewActivity) -> Result<()> {
        const OPERATION: &str = "create_activity";
        let NewActivity {
            agent,
            activity,
            customer,
            now,
            ..
        } = new;
        let Some(customer) = customer else {
            let statement = record::insert_statement(agent, activity, *now, Vec::new())?;
            self.write_statement(OPERATION, &statement).await?;
            return Ok(());
        };
        let notification = self.guarded_notification_insert(activity, customer)?;
        let guard = customers::by_id(&customer.id)
            .select_only()
            .column(entity::customers::Column::Id)
            .lock(LockType::KeyShare)
            .into_query();
        let statement = record::insert_guarded(
            agent,
            activity,
            *now,
            notification.into_iter().collect(),
            guard,
        )?;
        if self.write_statement(OPERATION, &statement).await? == 0 {
            return Err(customers::missing(&self.write, &customer.id).await?);
        }
        Ok(())
    }

    pub async fn get_activity(&self, id: &str) -> Result<Activity> {
        record::find::<Activity>(&self.reader(), id).await
    }

    pub async fn update_activity(&self, agent: &str, edit: Edit<ActivityData>) -> Result<Activity> {
        let agent = agent.to_owned();
        let store = self.clone();
        self.write("update_activity", move |txn| {
            Box::pin(async move {
                let agent = agent.as_str();
                let current = record::find_for_update::<Activity>(txn, &edit.id).await?;
                let Some((mut data, _)) = record::apply_edit(txn, &current, edit).await? else {
                    return Ok(current);
                };
                let mut linked = None;
                if data.request_id != current.data.request_id
                    || data.customer_id != current.data.customer_id
                {
                    let request_changed = data.request_id != current.data.request_id;
                    linked = resolve_links(txn, &mut data, request_changed).await?;
                }
                let changes = mask::diff(&current.data, &data);
                if changes.is_empty() {
                    return Ok(current);
                }
                let now = now_micros();
                let updated = current.next_version(data, agent, now);
                record::save_version(txn, &updated, current.version).await?;
                let mut change = NewChange::updated(agent, &updated, changes, now);
                // Watchers of the customer it left learn of the move too: the log names the old customer when the new
                // one is empty.
                change.parent_id = change.parent_id.or(current.data.customer_id.clone());
                change_log::append(txn, change).await?;
                store
                    .queue_on_link(txn, &current, &updated, linked.as_ref())
                    .await?;
                Ok(updated)
            })
        })
        .await
    }

    /// Deletes the activity whatever its state.
    pub async fn delete_activity(&self, agent: &str, target: Deletion) -> Result<()> {
        let agent = agent.to_owned();
        let store = self.clone();
        self.write("delete_activity", move |txn| {
            Box::pin(async move {
                let agent = agent.as_str();
                let current = record::find_for_update::<Activity>(txn, &target.id).await?;
                record::check_seen(&current, target.version)?;
                record::delete(txn, agent, &current, now_micros()).await?;
                store.cancel_notification(txn, &target.id).await?;
                Ok(())
            })
        })
        .await
    }

    /// Activities of a customer and/or a request, newest `occur_time` first; internal ones only if
    /// `include_internal`. Named parents must exist.
    pub async fn list_activities(
        &self,
        customer_id: Option<&str>,
        request_id: Option<&str>,
        include_internal: bool,
        cursor: Option<&Cursor>,
        limit: u64,
    ) -> Result<Vec<Activity>> {
        let mut query = activities::Entity::find();
        if !include_internal {
            query = query.filter(activities::Column::Internal.eq(false));
        }
        if let Some(customer_id) = customer_id {
            customers::find(&self.reader(), customer_id).await?;
            query = query.filter(activities::Column::CustomerId.eq(customer_id));
        }
        if let Some(request_id) = request_id {
            record::find::<Request>(&self.reader(), request_id).await?;
            query = query.filter(activities::Column::RequestId.eq(request_id));
        }
        let query = newest_first(
            query,
            activities::Column::OccurTime,
            activities::Column::Id,
            cursor,
        );
        super::fetch(&self.reader(), query, limit, from_model).await
    }
}

/// `query` ordered newest `time` first (ties by `id`, descending), continuing after `cursor`: the keyset page
/// order of every "newest first" list.
pub(super) fn newest_first<E: EntityTrait>(
    query: Select<E>,
    time: E::Column,
    id: E::Column,
    cursor: Option<&Cursor>,
) -> Select<E> {
    let query = match cursor {
        Some(Cursor {
            time: Some(after_time),
            id: after_id,
        }) => query.filter(
            Condition::any().add(time.lt(*after_time)).add(
                Condition::all()
                    .add(time.eq(*after_time))
                    .add(id.lt(after_id.as_str())),
            ),
        ),
        _ => query,
    };
    query.order_by_desc(time).order_by_desc(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_activity() -> NewActivity {
        let (written, _) = oneshot::channel();
        NewActivity {
            agent: "ana".to_owned(),
            activity: Activity::created(ActivityData::default(), "ana", 0),
            now: 0,
            customer: None,
            trace: CallTrace::current(),
            written,
        }
    }

    fn queue(batches: &ActivityBatches) -> &'static str {
        match batches.queue(new_activity()) {
            Turn::Alone(_) => "alone",
            Turn::Gather => "gather",
            Turn::Wait => "wait",
        }
    }

    #[test]
    fn a_call_writes_alone_when_nothing_is_being_written() {
        let batches = ActivityBatches::default();
        assert_eq!(queue(&batches), "alone");
        assert!(!batches.done_alone(), "nothing queued: the place goes back");
        assert_eq!(queue(&batches), "alone");
    }

    #[test]
    fn a_call_during_a_write_gathers_as_many_as_the_last_batch_carried() {
        let batches = ActivityBatches::default();
        assert_eq!(queue(&batches), "alone");
        batches.state.lock().unwrap().last_batch = 3;
        // A place is free, but the last batch carried three: the call starts a batch that waits for them.
        assert_eq!(queue(&batches), "gather");
        assert!(!batches.gathered());
        assert_eq!(queue(&batches), "wait");
        assert!(!batches.gathered());
        assert_eq!(queue(&batches), "wait");
        assert!(batches.gathered());
        batches.stop_gathering();
        let batch = batches.next(0).expect("the gathered batch");
        assert_eq!(batch.len(), 3);
        assert!(
            batches.next(3).is_none(),
            "nothing queued: the place goes back"
        );
        assert!(!batches.done_alone());
        assert_eq!(batches.state.lock().unwrap().writing, 0);
    }

    #[test]
    fn after_batches_of_one_a_call_takes_a_free_place_alone() {
        let batches = ActivityBatches::default();
        assert_eq!(queue(&batches), "alone");
        assert!(!batches.done_alone());
        assert_eq!(queue(&batches), "alone");
        assert_eq!(
            queue(&batches),
            "alone",
            "the last batch carried one: no call to wait for"
        );
    }

    #[test]
    fn a_batch_gathers_its_share_of_the_calls_in_progress() {
        let batches = ActivityBatches::default();
        let calls: Vec<_> = (0..16).map(|_| batches.enter()).collect();
        assert_eq!(queue(&batches), "alone", "nothing is being written");
        assert!(!batches.done_alone());
        assert_eq!(batches.state.lock().unwrap().last_batch, 1);
        assert_eq!(queue(&batches), "alone");
        // The last batch carried one, but sixteen calls are in progress: a free place gathers four of them.
        assert_eq!(queue(&batches), "gather");
        for _ in 0..2 {
            assert_eq!(queue(&batches), "wait");
            assert!(!batches.gathered());
        }
        assert_eq!(queue(&batches), "wait");
        assert!(batches.gathered());
        drop(calls);
        assert_eq!(batches.state.lock().unwrap().calls, 0);
    }

    #[test]
    fn the_busiest_count_is_forgotten_after_a_while() {
        let mut state = Batching::default();
        let start = Instant::now();
        for _ in 0..16 {
            state.enter(start);
        }
        state.calls = 0;
        assert_eq!(state.gather_target(), 4);
        // Calls still come within the time the count is kept: it stays.
        state.enter(start + BUSIEST_FOR / 2);
        state.calls = 0;
        assert_eq!(state.gather_target(), 4);
        // Then the load fell to two calls at once: their count replaces it.
        state.enter(start + BUSIEST_FOR * 2);
        state.enter(start + BUSIEST_FOR * 2);
        assert_eq!(state.busiest, 2);
        assert_eq!(state.gather_target(), 1);
    }

    #[test]
    fn calls_queue_while_every_place_is_taken() {
        let batches = ActivityBatches::default();
        for _ in 0..BATCHES_AT_ONCE {
            assert_eq!(queue(&batches), "alone");
        }
        assert_eq!(queue(&batches), "wait");
        assert_eq!(queue(&batches), "wait");
        // The first write to end takes what queued, in one batch.
        assert!(batches.done_alone());
        assert_eq!(batches.next(0).map(|batch| batch.len()), Some(2));
        assert!(batches.next(2).is_none());
        for _ in 1..BATCHES_AT_ONCE {
            assert!(!batches.done_alone());
        }
        assert_eq!(batches.state.lock().unwrap().writing, 0);
    }
}
