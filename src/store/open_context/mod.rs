//! `OpenContext`: identify the caller, log the interaction's activity (joining or opening a request) and gather
//! what the agent's gadget shows, idempotently on the router's interaction id.
//!
//! On SQLite (a database file) the writes run on the group-commit thread ([`sqlite_batch`]), matching and
//! the gadget's reads on read connections in the call's task: the calls waiting for the thread are recorded one
//! after another in one write transaction, so a call sees every claim before it and one interaction id is
//! recorded once.
//!
//! Elsewhere (PostgreSQL), matching and the gadget's reads use the read pool; the writes (request, activity,
//! their change-log rows, the agent's Recent entry and the interaction record) are one short write transaction.
//! The interaction record is claimed with `INSERT ... ON CONFLICT DO NOTHING` before anything else is written;
//! the insert waits for a concurrent claim of the same id to commit and then inserts nothing. The loser rolls
//! back and returns the winner's result, so one interaction creates one activity and at most one request,
//! however many retries race. A retry that arrives after the commit is answered from the read pool without
//! taking the lock.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize};

mod caller;
mod pooled;
mod sqlite_batch;

use caller::Caller;
use pooled::Recorded;
pub(super) use sqlite_batch::{
    AfterCommit, GroupCommit, Readers, customer_to_link, database_file, db_error, insert_created,
    open_writer, run, upsert_views,
};

use super::{
    Store, activities, customers, decode_json, encode_json,
    entity::{self, customers as customer_rows},
    record, requests,
};
use crate::{
    domain::{
        activity::{Activity, ActivityData},
        change::NewChange,
        customer::Customer,
        request::{Request, RequestData, RequestStatus},
        time::Micros,
    },
    error::{Error, Result},
};

/// What the SQLite writing thread did for one call.
pub(super) enum Outcome {
    /// This call recorded the interaction; what the gadget shows.
    Opened(Box<ContextResult>),
    /// The interaction id was recorded before (by an earlier call or one earlier in the same batch).
    Replay(interactions::Model),
}

/// How many of the customer's newest activities the gadget gets.
pub const RECENT_ACTIVITIES: u64 = 20;
/// Most open requests returned (a customer rarely has more than a few).
pub const MAX_OPEN_REQUESTS: u64 = 100;
/// The statuses of a request an interaction may join.
pub(super) const OPEN_STATUSES: [RequestStatus; 2] = [RequestStatus::Open, RequestStatus::Pending];
/// Attempts when the matched customer is deleted while the interaction is being recorded.
const ATTEMPTS: usize = 3;

/// The `interactions` table: what one `OpenContext` call matched and created.
pub(super) mod interactions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "interactions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub interaction_id: String,
        pub customer_id: Option<String>,
        /// JSON array of ids, most recently active first.
        pub candidate_ids: String,
        pub activity_id: String,
        pub request_id: Option<String>,
        /// JSON `Prefill`, for an unknown caller.
        pub prefill: Option<String>,
        pub agent: String,
        pub create_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Whether and how the interaction's activity joins a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RequestPolicy {
    /// Join the customer's most recently updated open or pending request, else open one.
    #[default]
    AttachOrCreate,
    /// Join such a request if there is one; never open one.
    AttachOnly,
    /// Link no request.
    None,
}

/// The fields of a new-customer form, for a caller nobody matched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefill {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
}

/// A checked `OpenContext` call. Contact values are normalized.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenContext {
    pub interaction_id: String,
    pub channel: i32,
    pub direction: i32,
    /// E.164.
    pub phone: Option<String>,
    pub email: Option<String>,
    pub handle: Option<String>,
    pub display_name: String,
    pub topic: String,
    /// The agent the interaction is routed to: the activity's `entered_by` and whose Recent list it joins.
    pub agent: String,
    pub policy: RequestPolicy,
    /// Title of a request opened for the interaction.
    pub request_title: String,
    /// Returned when no customer matches.
    pub prefill: Prefill,
}

/// What the gadget shows for an interaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContextResult {
    pub customer: Option<Customer>,
    pub candidates: Vec<Customer>,
    pub activity: Option<Activity>,
    pub request: Option<Request>,
    pub open_requests: Vec<Request>,
    pub recent_activities: Vec<Activity>,
    pub prefill: Option<Prefill>,
    /// The interaction was opened before: this is the first call's result, and nothing new happened.
    pub replayed: bool,
}

impl Store {
    /// Opens the context of an interaction as `acting_agent` (the router). A repeated interaction id returns the
    /// first call's records as they are now and creates nothing.
    pub async fn open_context(
        &self,
        acting_agent: &str,
        input: &OpenContext,
    ) -> Result<ContextResult> {
        if let Some(group_commit) = &self.group_commit {
            return match group_commit.open(acting_agent, input).await? {
                Outcome::Opened(result) => Ok(*result),
                Outcome::Replay(done) => self.replay(done).await,
            };
        }
        if let Some(done) = interactions::Entity::find_by_id(input.interaction_id.clone())
            .one(&self.reader())
            .await?
        {
            return self.replay(done).await;
        }
        for _ in 0..ATTEMPTS {
            let caller = self.identify(input).await?;
            match self.record(acting_agent, input, &caller).await? {
                Recorded::Created(created) => {
                    let (activity, request) = *created;
                    let (customer, candidates, prefill) = shown(caller, input);
                    return self
                        .gather(customer, candidates, Some(activity), request, prefill)
                        .await;
                }
                Recorded::Replay(done) => return self.replay(done).await,
                Recorded::CustomerGone => continue,
            }
        }
        Err(Error::Unavailable(
            "the matching customer kept changing; retry".to_owned(),
        ))
    }

    /// The result of an earlier call, with its records as they are now (deleted ones left out).
    async fn replay(&self, done: interactions::Model) -> Result<ContextResult> {
        let customer = match done.customer_id.as_deref() {
            Some(id) => optional(customers::find(&self.reader(), id).await)?,
            None => None,
        };
        let candidate_ids: Vec<String> = decode_json(&done.candidate_ids)?;
        let rows = if candidate_ids.is_empty() {
            Vec::new()
        } else {
            customer_rows::Entity::find()
                .filter(customer_rows::Column::Id.is_in(candidate_ids.iter().map(String::as_str)))
                .all(&self.reader())
                .await?
        };
        let mut candidates: Vec<Customer> = rows
            .into_iter()
            .map(customers::from_model)
            .collect::<Result<_>>()?;
        let position = |c: &Customer| candidate_ids.iter().position(|id| *id == c.id);
        candidates.sort_by_key(position);
        let activity = entity::activities::Entity::find_by_id(done.activity_id.clone())
            .one(&self.reader())
            .await?
            .map(activities::from_model)
            .transpose()?;
        let request = match done.request_id.as_deref() {
            Some(id) => optional(record::find::<Request>(&self.reader(), id).await)?,
            None => None,
        };
        let prefill = done.prefill.as_deref().map(decode_json).transpose()?;
        let mut result = self
            .gather(customer, candidates, activity, request, prefill)
            .await?;
        result.replayed = true;
        Ok(result)
    }

    /// Adds the customer's open requests and newest activities.
    async fn gather(
        &self,
        customer: Option<Customer>,
        candidates: Vec<Customer>,
        activity: Option<Activity>,
        request: Option<Request>,
        prefill: Option<Prefill>,
    ) -> Result<ContextResult> {
        let reader = self.reader();
        let (open_requests, recent_activities) = match &customer {
            Some(customer) => tokio::try_join!(
                open_requests(&reader, &customer.id, MAX_OPEN_REQUESTS),
                newest_activities(&reader, &customer.id),
            )?,
            None => (Vec::new(), Vec::new()),
        };
        Ok(ContextResult {
            replayed: false,
            customer,
            candidates,
            activity,
            request,
            open_requests,
            recent_activities,
            prefill,
        })
    }
}

/// What the gadget shows of who called: the customer, the candidates, or a prefill for a new customer.
pub(super) fn shown(
    caller: Caller,
    input: &OpenContext,
) -> (Option<Customer>, Vec<Customer>, Option<Prefill>) {
    match caller {
        Caller::Known(customer) => (Some(*customer), Vec::new(), None),
        Caller::Ambiguous(candidates) => (None, candidates, None),
        Caller::Unknown => (None, Vec::new(), Some(input.prefill.clone())),
    }
}

/// What a first call records at `now`: the request it opens (if the policy asks and `attached`, the customer's
/// open request, is none), the request its activity joins, and the activity.
pub(super) fn plan(
    acting_agent: &str,
    input: &OpenContext,
    customer_id: Option<&str>,
    attached: Option<Request>,
    now: Micros,
) -> (Option<Request>, Option<Request>, Activity) {
    let created_request = match (customer_id, attached.is_none(), input.policy) {
        (Some(id), true, RequestPolicy::AttachOrCreate) => {
            let data = RequestData {
                title: input.request_title.clone(),
                ..Default::default()
            };
            Some(Request::created(id, data, acting_agent, now))
        }
        _ => None,
    };
    let request = attached.or(created_request.clone());
    let activity = interaction_activity(input, customer_id, request.as_ref(), acting_agent, now);
    (created_request, request, activity)
}

/// The activity that logs the interaction, with the caller's contact fields.
fn interaction_activity(
    input: &OpenContext,
    customer_id: Option<&str>,
    request: Option<&Request>,
    acting_agent: &str,
    now: Micros,
) -> Activity {
    let data = ActivityData {
        customer_id: customer_id.map(str::to_owned),
        request_id: request.map(|r| r.id.clone()),
        channel: input.channel,
        direction: input.direction,
        topic: input.topic.clone(),
        occur_time: now,
        entered_by: input.agent.clone(),
        contact_name: input.display_name.clone(),
        contact_phone: input.phone.clone().unwrap_or_default(),
        contact_email: input.email.clone().unwrap_or_default(),
        reference: input.interaction_id.clone(),
        ..Default::default()
    };
    Activity::created(data, acting_agent, now)
}

/// Inserts the interaction record unless the id is already claimed.
pub(super) fn claim(row: interactions::ActiveModel) -> sea_orm::Insert<interactions::ActiveModel> {
    interactions::Entity::insert(row).on_conflict(
        OnConflict::column(interactions::Column::InteractionId)
            .do_nothing()
            .to_owned(),
    )
}

/// The interaction record: what a retry of the same interaction id returns.
pub(super) fn claim_row(
    input: &OpenContext,
    caller: &Caller,
    activity: &Activity,
) -> Result<interactions::ActiveModel> {
    let (candidate_ids, prefill) = match caller {
        Caller::Ambiguous(candidates) => (candidates.iter().map(|c| c.id.clone()).collect(), None),
        Caller::Unknown => (Vec::new(), Some(encode_json(&input.prefill)?)),
        Caller::Known(_) => (Vec::new(), None),
    };
    Ok(interactions::ActiveModel {
        interaction_id: Set(input.interaction_id.clone()),
        customer_id: Set(activity.data.customer_id.clone()),
        candidate_ids: Set(encode_json::<Vec<String>>(&candidate_ids)?),
        activity_id: Set(activity.id.clone()),
        request_id: Set(activity.data.request_id.clone()),
        prefill: Set(prefill),
        agent: Set(input.agent.clone()),
        create_time: Set(activity.audit.create_time),
    })
}

/// `Ok(None)` for a record that no longer exists.
fn optional<T>(found: Result<T>) -> Result<Option<T>> {
    match found {
        Ok(value) => Ok(Some(value)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}

/// The query for the customer's open and pending requests, most recently updated first.
pub(super) fn open_requests_newest_first(
    customer_id: &str,
) -> sea_orm::Select<entity::requests::Entity> {
    entity::requests::Entity::find()
        .filter(entity::requests::Column::CustomerId.eq(customer_id))
        .filter(entity::requests::Column::Status.is_in(OPEN_STATUSES.map(RequestStatus::as_i32)))
        .order_by_desc(entity::requests::Column::UpdateTime)
        .order_by_desc(entity::requests::Column::Id)
}

/// The customer's open and pending requests, most recently updated first.
async fn open_requests(
    db: &impl ConnectionTrait,
    customer_id: &str,
    limit: u64,
) -> Result<Vec<Request>> {
    super::all_limited(db, open_requests_newest_first(customer_id).limit(limit))
        .await?
        .into_iter()
        .map(requests::from_model)
        .collect()
}

/// The customer's newest [`RECENT_ACTIVITIES`] activities.
pub(super) fn newest_activities_query(
    customer_id: &str,
) -> sea_orm::Select<entity::activities::Entity> {
    entity::activities::Entity::find()
        .filter(entity::activities::Column::CustomerId.eq(customer_id))
        .order_by_desc(entity::activities::Column::OccurTime)
        .order_by_desc(entity::activities::Column::Id)
        .limit(RECENT_ACTIVITIES)
}

async fn newest_activities(db: &impl ConnectionTrait, customer_id: &str) -> Result<Vec<Activity>> {
    super::all_limited(db, newest_activities_query(customer_id))
        .await?
        .into_iter()
        .map(activities::from_model)
        .collect()
}

/// The change-log entry of a request this interaction opened.
pub(super) fn request_created(agent: &str, request: &Request) -> NewChange {
    NewChange::created(agent, request, request.audit.create_time)
}

/// The change-log entry of the interaction's activity.
pub(super) fn activity_created(agent: &str, activity: &Activity) -> NewChange {
    NewChange::created(agent, activity, activity.audit.create_time)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::domain::customer::CustomerData;

    /// A store on a fresh SQLite file (so with the group-commit thread), a customer matched and then deleted, and
    /// a call from them.
    pub(in crate::store) async fn a_call_from_a_deleted_customer()
    -> (tempfile::TempDir, Store, Customer, OpenContext) {
        let (dir, store) = crate::store::scratch_store().await;
        let gone = store
            .create_customer("setup", CustomerData::default())
            .await
            .expect("create");
        store
            .delete_customer(
                "setup",
                crate::domain::edit::Deletion {
                    id: gone.id.clone(),
                    version: 1,
                },
            )
            .await
            .expect("delete");
        let input = OpenContext {
            interaction_id: "call-1".to_owned(),
            agent: "ana".to_owned(),
            request_title: "Call".to_owned(),
            ..Default::default()
        };
        (dir, store, gone, input)
    }

    #[tokio::test]
    async fn a_customer_deleted_after_matching_is_matched_again() {
        let (_dir, store, gone, input) = a_call_from_a_deleted_customer().await;
        let recorded = store
            .record("router", &input, &Caller::Known(Box::new(gone)))
            .await
            .expect("record");
        assert!(matches!(recorded, Recorded::CustomerGone));
        // Nothing of that attempt was kept: the interaction opens, now for an unknown caller.
        let opened = store.open_context("router", &input).await.expect("open");
        assert_eq!(opened.customer, None);
        assert_eq!(opened.request, None);
        let activity = opened.activity.expect("an activity");
        assert_eq!(activity.data.customer_id, None);
    }
}
