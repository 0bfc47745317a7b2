//! `OpenContext` on a pool of connections (PostgreSQL, and SQLite without a database file): each call's writes
//! are one short transaction of their own. Matching, planning and the gadget's reads are the module's, shared
//! with the SQLite batch writer.

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QuerySelect, SqlErr};

use super::{
    Caller, OpenContext, RequestPolicy, activity_created, claim, claim_row, interactions,
    open_requests_newest_first, plan, request_created,
};
use crate::{
    domain::{activity::Activity, change::NewChange, request::Request, time::now_micros},
    error::{Error, Result},
    store::{
        Store, activities, change_log, entity,
        recent::{self, View},
        requests,
    },
};

/// The outcome of the write transaction.
pub(super) enum Recorded {
    /// This call logged the activity, joining or opening the request.
    Created(Box<(Activity, Option<Request>)>),
    /// Another call with the same interaction id got there first.
    Replay(interactions::Model),
    /// The matched customer was deleted meanwhile: match again.
    CustomerGone,
}

impl Store {
    /// The write transaction of a first call: claims the interaction id, then opens the request (if the policy
    /// asks and none is open), logs the activity and puts the customer on the routed agent's Recent list.
    pub(super) async fn record(
        &self,
        acting_agent: &str,
        input: &OpenContext,
        caller: &Caller,
    ) -> Result<Recorded> {
        let txn = self.begin_write("open_context").await?;
        let customer_id = match caller {
            Caller::Known(customer) => Some(customer.id.as_str()),
            _ => None,
        };
        // The customer matched on the read pool may be deleted meanwhile: the foreign keys of the inserts below
        // catch that (and on PostgreSQL keep it from happening until this commits), and the caller is matched again.
        // A call that may open a request first locks the customer, so concurrent calls of one customer open one
        // request between them: the next finds it open and joins it.
        if let Some(id) = customer_id
            && input.policy == RequestPolicy::AttachOrCreate
            && !crate::store::lock_row(&txn, "customers", id).await?
        {
            return Ok(Recorded::CustomerGone);
        }
        let attached = match customer_id {
            Some(id) if input.policy != RequestPolicy::None => {
                latest_open_request(&txn, id).await?
            }
            _ => None,
        };
        let now = now_micros();
        let (created_request, request, activity) =
            plan(acting_agent, input, customer_id, attached, now);
        let claimed = claim(claim_row(input, caller, &activity)?)
            .exec_without_returning(&txn)
            .await?;
        if claimed == 0 {
            // Committed by the other call by now (SQLite: it held the write lock before us; PostgreSQL: the insert
            // waited for it).
            drop(txn);
            let done = interactions::Entity::find_by_id(input.interaction_id.clone())
                .one(&self.read)
                .await?
                .ok_or_else(|| Error::internal("interaction claimed but not found"))?;
            return Ok(Recorded::Replay(done));
        }
        let inserted = async {
            let mut changes = Vec::with_capacity(2);
            if let Some(new) = &created_request {
                changes.push(insert_request(&txn, acting_agent, new).await?);
            }
            changes.push(insert_activity(&txn, acting_agent, &activity).await?);
            Ok(changes)
        };
        let changes = match inserted.await {
            Err(Error::NotFound { .. }) => return Ok(Recorded::CustomerGone),
            other => other?,
        };
        change_log::append_all(&txn, changes).await?;
        let known = match caller {
            Caller::Known(customer) => Some(customer.as_ref()),
            _ => None,
        };
        self.queue_notification(&txn, &activity, known).await?;
        if let Some(id) = customer_id {
            let view = View {
                agent: input.agent.clone(),
                customer_id: id.to_owned(),
                time: now,
            };
            recent::upsert(&txn, &[view]).await?;
        }
        self.commit(txn).await?;
        Ok(Recorded::Created(Box::new((activity, request))))
    }
}

/// The request an interaction of this customer joins; on PostgreSQL locked until the transaction ends.
async fn latest_open_request(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<Option<Request>> {
    open_requests_newest_first(customer_id)
        .lock_exclusive()
        .one(db)
        .await?
        .map(requests::from_model)
        .transpose()
}

/// A broken foreign key on insert: the customer (or request) it names was deleted meanwhile.
fn link_error(err: DbErr, resource: &'static str, id: &str) -> Error {
    match err.sql_err() {
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => Error::not_found(resource, id),
        _ => err.into(),
    }
}

/// Inserts the request and returns its change-log entry.
async fn insert_request(
    db: &impl ConnectionTrait,
    agent: &str,
    request: &Request,
) -> Result<NewChange> {
    entity::requests::Entity::insert(requests::to_active(request)?)
        .exec_without_returning(db)
        .await
        .map_err(|e| link_error(e, "customer", &request.customer_id))?;
    Ok(request_created(agent, request))
}

/// Inserts the activity and returns its change-log entry.
async fn insert_activity(
    db: &impl ConnectionTrait,
    agent: &str,
    activity: &Activity,
) -> Result<NewChange> {
    let customer = activity.data.customer_id.as_deref().unwrap_or_default();
    entity::activities::Entity::insert(activities::to_active(activity)?)
        .exec_without_returning(db)
        .await
        .map_err(|e| link_error(e, "customer", customer))?;
    Ok(activity_created(agent, activity))
}
