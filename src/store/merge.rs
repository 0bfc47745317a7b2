//! Merging duplicate customers, undoing a merge, and locking customers.
//!
//! A merged source leaves the `customers` table, so every read (search, lookup, context, Recent) simply stops
//! finding it. Its row in `customer_merges` is the tombstone: the source as it was (`source`, JSON) and what
//! the merge moved to the target (`moved`, JSON), which is what unmerging gives back. Reading a merged id answers
//! [`Error::Merged`] (see `customers::missing`).
//!
//! Change log of a merge, in order: one UPDATED row per moved request and activity (field `customer_id`, parent
//! the target), one MERGED row per source (parent the target, so watchers of both learn of it), and an UPDATED
//! row for the target when its profile changed. An unmerge logs the target's UPDATED row, the source's RESTORED
//! row (parent the target) and one UPDATED row per record moved back (parent the source).

use std::collections::HashSet;

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Alias, Expr, ExprTrait, Query},
};
use serde::{Deserialize, Serialize};

use super::{
    Store, change_log, check_version,
    customers::{self, check_customer_number_free, refuse_if_locked, write_contact_keys},
    decode_json, encode_json,
    entity::{
        activities, contact_keys, customer_merges, customers as customer_rows, notifications,
        requests, tuples,
    },
    recent::{self, View, recent_views},
};
use crate::{
    domain::{
        change::{ChangeKind, NewChange, ResourceKind},
        customer::{Audit, Customer, CustomerData},
        mask::{self, FieldChange},
        merge::{self, Taken},
        time::{Micros, now_micros},
    },
    error::{Error, Result},
};

/// `FAILED_PRECONDITION` reason of an unmerge naming a customer that was not merged into the target.
pub const NOT_MERGED_INTO_TARGET: &str = "NOT_MERGED_INTO_TARGET";

/// Most ids bound in one `IN (...)` list.
const CHUNK: usize = 500;

/// A customer as kept in its tombstone.
#[derive(Serialize, Deserialize)]
struct StoredCustomer {
    id: String,
    version: i64,
    #[serde(flatten)]
    data: CustomerData,
    create_time: Micros,
    update_time: Micros,
    created_by: String,
    updated_by: String,
    locked: bool,
    anonymize_time: Option<Micros>,
}

impl From<&Customer> for StoredCustomer {
    fn from(c: &Customer) -> Self {
        StoredCustomer {
            id: c.id.clone(),
            version: c.version,
            data: c.data.clone(),
            create_time: c.audit.create_time,
            update_time: c.audit.update_time,
            created_by: c.audit.created_by.clone(),
            updated_by: c.audit.updated_by.clone(),
            locked: c.locked,
            anonymize_time: c.anonymize_time,
        }
    }
}

/// What one merge moved from a source to the target.
#[derive(Default, Serialize, Deserialize)]
struct Moved {
    requests: Vec<String>,
    activities: Vec<String>,
    /// Profile values the target took (contact points, tags, attributes, empty fields, credit hold).
    #[serde(flatten)]
    taken: Taken,
    /// The target took the source's customer number.
    customer_number: bool,
}

/// A request or activity being moved: id, version before the move, internal (activities only).
type Row = (String, i64, bool);

/// Moves `rows` of `table` to customer `to`; each gets a new version and an UPDATED change-log row naming `to`
/// as its parent.
async fn reassign(
    db: &impl ConnectionTrait,
    agent: &str,
    resource: ResourceKind,
    rows: &[Row],
    from: &str,
    to: &str,
    now: Micros,
) -> Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let ids = chunk.iter().map(|(id, _, _)| id.as_str());
        // The columns `move_rows` sets and matches, in its order, of the entity module `$table`.
        macro_rules! move_rows_of {
            ($table:ident) => {
                move_rows::<$table::Entity>(
                    db,
                    [
                        $table::Column::CustomerId,
                        $table::Column::Version,
                        $table::Column::UpdateTime,
                        $table::Column::UpdatedBy,
                        $table::Column::Id,
                    ],
                    ids,
                    (to, agent, now),
                )
                .await?
            };
        }
        match resource {
            ResourceKind::Request => move_rows_of!(requests),
            ResourceKind::Activity => move_rows_of!(activities),
            ResourceKind::Customer => {
                return Err(Error::internal("customers are not moved between customers"));
            }
        }
    }
    let changes = rows
        .iter()
        .map(|(id, version, internal)| NewChange {
            resource,
            resource_id: id.clone(),
            version: version + 1,
            kind: ChangeKind::Updated,
            agent: agent.to_owned(),
            fields: vec![FieldChange {
                field: "customer_id".to_owned(),
                old: from.into(),
                new: to.into(),
            }],
            parent_id: Some(to.to_owned()),
            internal: *internal,
            time: now,
        })
        .collect();
    change_log::append_all(db, changes).await?;
    Ok(())
}

/// Points the rows `ids` of one table at customer `to` as `agent` at `now`, bumping their versions. `columns`:
/// that table's customer id, version, update time, updated-by and id.
async fn move_rows<'a, E: EntityTrait>(
    db: &impl ConnectionTrait,
    [customer, version, update_time, updated_by, id]: [E::Column; 5],
    ids: impl IntoIterator<Item = &'a str>,
    (to, agent, now): (&str, &str, Micros),
) -> Result<()> {
    E::update_many()
        .col_expr(customer, Expr::value(to))
        .col_expr(version, Expr::col(version).add(1))
        .col_expr(update_time, Expr::value(now))
        .col_expr(updated_by, Expr::value(agent))
        .filter(id.is_in(ids))
        .exec(db)
        .await?;
    Ok(())
}

/// The customer's requests matching `filter`, locked until the transaction ends.
async fn request_rows(db: &impl ConnectionTrait, filter: Condition) -> Result<Vec<Row>> {
    let query = requests::Entity::find().filter(filter).lock_exclusive();
    let columns = [requests::Column::Id, requests::Column::Version];
    let rows: Vec<(String, i64)> = tuples(db, query, columns).await?;
    Ok(rows.into_iter().map(|(id, v)| (id, v, false)).collect())
}

/// Activities matching `filter` with their request, locked until the transaction ends.
async fn activity_rows(
    db: &impl ConnectionTrait,
    filter: Condition,
) -> Result<Vec<(Row, Option<String>)>> {
    let query = activities::Entity::find().filter(filter).lock_exclusive();
    let columns = [
        activities::Column::Id,
        activities::Column::Version,
        activities::Column::Internal,
        activities::Column::RequestId,
    ];
    let rows: Vec<(String, i64, bool, Option<String>)> = tuples(db, query, columns).await?;
    Ok(rows
        .into_iter()
        .map(|(id, v, internal, request)| ((id, v, internal), request))
        .collect())
}

/// Moves the notifications of customer `from` (all, or only those of `activity_ids`) to customer `to`.
async fn move_notifications(
    db: &impl ConnectionTrait,
    from: &str,
    to: &str,
    activity_ids: Option<&[String]>,
) -> Result<()> {
    let update = || {
        notifications::Entity::update_many()
            .col_expr(notifications::Column::CustomerId, Expr::value(to))
            .filter(notifications::Column::CustomerId.eq(from))
    };
    match activity_ids {
        None => {
            update().exec(db).await?;
        }
        Some(ids) => {
            for chunk in ids.chunks(CHUNK) {
                update()
                    .filter(
                        notifications::Column::ActivityId.is_in(chunk.iter().map(String::as_str)),
                    )
                    .exec(db)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Writes `updated` over the customer row still at `previous_version`, with its lookup keys.
async fn save_customer(
    db: &impl ConnectionTrait,
    updated: &Customer,
    previous: &Customer,
) -> Result<()> {
    customer_rows::Entity::update_many()
        .set(customers::to_active(updated)?)
        .filter(customer_rows::Column::Id.eq(updated.id.as_str()))
        .filter(customer_rows::Column::Version.eq(previous.version))
        .exec(db)
        .await?;
    if updated.data.contact_points != previous.data.contact_points {
        write_contact_keys(db, &updated.id, &updated.data.contact_points).await?;
    }
    Ok(())
}

fn customer_change(
    customer: &Customer,
    kind: ChangeKind,
    fields: Vec<FieldChange>,
    parent_id: Option<&str>,
    agent: &str,
    now: Micros,
) -> NewChange {
    NewChange {
        resource: ResourceKind::Customer,
        resource_id: customer.id.clone(),
        version: customer.version,
        kind,
        agent: agent.to_owned(),
        fields,
        parent_id: parent_id.map(str::to_owned),
        internal: false,
        time: now,
    }
}

impl Store {
    /// Merges `source_ids` into `target_id` (at `target_version`) in one transaction and returns the target.
    /// The ids must be distinct and well-formed (the caller checks).
    pub async fn merge_customers(
        &self,
        agent: &str,
        target_id: &str,
        target_version: i64,
        source_ids: &[String],
    ) -> Result<Customer> {
        let (by, into, sources) = (agent.to_owned(), target_id.to_owned(), source_ids.to_vec());
        let merged = self
            .write("merge_customers", move |txn| {
                Box::pin(async move {
                    let (agent, target_id) = (by.as_str(), into.as_str());
                    let (target, sources) = lock_for_merge(txn, target_id, &sources).await?;
                    check_version(
                        "customer",
                        &target.id,
                        target_version,
                        target.version,
                        &target.audit.updated_by,
                    )?;

                    let mut data = target.data.clone();
                    let taken: Vec<Taken> = sources
                        .iter()
                        .map(|source| merge::absorb(&mut data, &source.data))
                        .collect();
                    merge::check_limits(&data)
                        .map_err(|(reason, message)| Error::failed_precondition(reason, message))?;

                    let now = now_micros();
                    for (source, taken) in sources.iter().zip(taken) {
                        retire_source(txn, agent, source, taken, target_id, now).await?;
                    }

                    save_merged_target(txn, target, data, agent, now).await
                })
            })
            .await?;
        tracing::info!(
            target_id,
            sources = ?source_ids,
            agent,
            "customers merged"
        );
        Ok(merged)
    }

    /// Restores `source_id`, merged into `target_id`, with what it brought; returns `(target, source)`.
    pub async fn unmerge_customer(
        &self,
        agent: &str,
        target_id: &str,
        source_id: &str,
    ) -> Result<(Customer, Customer)> {
        let (by, into, from) = (agent.to_owned(), target_id.to_owned(), source_id.to_owned());
        let restored = self
            .write("unmerge_customer", move |txn| {
            Box::pin(async move {
                let (agent, target_id, source_id) = (by.as_str(), into.as_str(), from.as_str());
                let target = customers::find_for_update(txn, target_id).await?;
                let tombstone = customer_merges::Entity::find_by_id(source_id.to_owned())
                    .lock_exclusive()
                    .one(txn)
                    .await?;
                let tombstone = match tombstone {
                    Some(row) if row.target_id == target_id => row,
                    Some(row) => {
                        return Err(Error::failed_precondition(
                            NOT_MERGED_INTO_TARGET,
                            format!(
                                "customer {source_id} was merged into customer {}, not into {target_id}",
                                row.target_id
                            ),
                        ));
                    }
                    None => {
                        // A live customer was never merged (or was restored already); anything else does not exist.
                        return Err(match customers::find(txn, source_id).await {
                            Ok(_) => Error::failed_precondition(
                                NOT_MERGED_INTO_TARGET,
                                format!("customer {source_id} is not merged into any customer"),
                            ),
                            Err(err) => err,
                        });
                    }
                };
                refuse_if_locked(&target, "have a merge undone")?;
                let stored: StoredCustomer = decode_json(&tombstone.source)?;
                let moved: Moved = decode_json(&tombstone.moved)?;
                let now = now_micros();

                // The target gives back what it took, where still as the merge left it (its customer number included),
                // before the source takes its number back.
                let mut data = target.data.clone();
                merge::give_back(&mut data, &moved.taken);
                let target_changes = mask::diff(&target.data, &data);
                let target_after = if target_changes.is_empty() {
                    target.clone()
                } else {
                    let updated = target.next_version(data, agent, now);
                    save_customer(txn, &updated, &target).await?;
                    updated
                };
                check_customer_number_free(txn, &stored.data.customer_number, source_id).await?;
                let source = Customer {
                    id: stored.id,
                    // The tombstone is one version past the source as it was merged.
                    version: stored.version + 2,
                    data: stored.data,
                    audit: Audit {
                        create_time: stored.create_time,
                        update_time: now,
                        created_by: stored.created_by,
                        updated_by: agent.to_owned(),
                    },
                    locked: stored.locked,
                    anonymize_time: stored.anonymize_time,
                };
                customer_rows::Entity::insert(customers::to_active(&source)?)
                    .exec_without_returning(txn)
                    .await?;
                write_contact_keys(txn, &source.id, &source.data.contact_points).await?;

                // Records the source brought go back if they are still the target's; records created on the target
                // after the merge stay. An activity follows its request, so no activity ends up on another customer
                // than its request.
                let still_target = || Condition::all().add(requests::Column::CustomerId.eq(target_id));
                let mut requests = Vec::new();
                for chunk in moved.requests.chunks(CHUNK) {
                    let ids = chunk.iter().map(String::as_str);
                    requests.extend(
                        request_rows(txn, still_target().add(requests::Column::Id.is_in(ids))).await?,
                    );
                }
                let going_back: HashSet<&str> = requests.iter().map(|(id, _, _)| id.as_str()).collect();
                let follows = |request: &Option<String>| {
                    request
                        .as_deref()
                        .is_none_or(|request| going_back.contains(request))
                };
                let on_target = || Condition::all().add(activities::Column::CustomerId.eq(target_id));
                let mut activities: Vec<Row> = Vec::new();
                let mut seen: HashSet<String> = HashSet::new();
                for chunk in moved.activities.chunks(CHUNK) {
                    let ids = chunk.iter().map(String::as_str);
                    for (row, request) in
                        activity_rows(txn, on_target().add(activities::Column::Id.is_in(ids))).await?
                    {
                        if follows(&request) && seen.insert(row.0.clone()) {
                            activities.push(row);
                        }
                    }
                }
                let request_ids: Vec<&str> = going_back.iter().copied().collect();
                for chunk in request_ids.chunks(CHUNK) {
                    let ids = chunk.iter().copied();
                    for (row, _) in activity_rows(
                        txn,
                        on_target().add(activities::Column::RequestId.is_in(ids)),
                    )
                    .await?
                    {
                        if seen.insert(row.0.clone()) {
                            activities.push(row);
                        }
                    }
                }
                reassign(
                    txn,
                    agent,
                    ResourceKind::Request,
                    &requests,
                    target_id,
                    source_id,
                    now,
                )
                .await?;
                reassign(
                    txn,
                    agent,
                    ResourceKind::Activity,
                    &activities,
                    target_id,
                    source_id,
                    now,
                )
                .await?;
                let activity_ids: Vec<String> = activities.into_iter().map(|(id, _, _)| id).collect();
                move_notifications(txn, target_id, source_id, Some(&activity_ids)).await?;
                customer_merges::Entity::delete_by_id(source_id.to_owned())
                    .exec(txn)
                    .await?;

                if !target_changes.is_empty() {
                    change_log::append(
                        txn,
                        customer_change(
                            &target_after,
                            ChangeKind::Updated,
                            target_changes,
                            None,
                            agent,
                            now,
                        ),
                    )
                    .await?;
                }
                change_log::append(
                    txn,
                    customer_change(
                        &source,
                        ChangeKind::Restored,
                        mask::all_fields(&source.data),
                        Some(target_id),
                        agent,
                        now,
                    ),
                )
                .await?;
                Ok((target_after, source))
            })
        })
        .await?;
        tracing::info!(target_id, source_id, agent, "customer merge undone");
        Ok(restored)
    }

    /// Locks or unlocks the customer. Setting the state it has already changes nothing (same version).
    pub async fn set_customer_locked(
        &self,
        agent: &str,
        id: &str,
        locked: bool,
    ) -> Result<Customer> {
        let agent = agent.to_owned();
        let id = id.to_owned();
        self.write("set_customer_locked", move |txn| {
            Box::pin(async move {
                let agent = agent.as_str();
                let id = id.as_str();
                let current = customers::find_for_update(txn, id).await?;
                if current.locked == locked {
                    return Ok(current);
                }
                let now = now_micros();
                let updated = Customer {
                    locked,
                    ..current.next_version(current.data.clone(), agent, now)
                };
                save_customer(txn, &updated, &current).await?;
                change_log::append(
                    txn,
                    customer_change(
                        &updated,
                        ChangeKind::Updated,
                        vec![FieldChange {
                            field: "locked".to_owned(),
                            old: current.locked.into(),
                            new: locked.into(),
                        }],
                        None,
                        agent,
                        now,
                    ),
                )
                .await?;
                Ok(updated)
            })
        })
        .await
    }
}

/// Step one of a merge: locks the target and the sources in id order, so two merges of overlapping customers
/// cannot deadlock (sources exclusively: they are deleted, and records being linked to them must wait and then
/// see the merge), and refuses if any of them is locked.
async fn lock_for_merge(
    txn: &impl ConnectionTrait,
    target_id: &str,
    source_ids: &[String],
) -> Result<(Customer, Vec<Customer>)> {
    let mut order: Vec<&str> = std::iter::once(target_id)
        .chain(source_ids.iter().map(String::as_str))
        .collect();
    order.sort_unstable();
    let mut locked = Vec::with_capacity(order.len());
    for id in order {
        let customer = if id == target_id {
            customers::find_for_update(txn, id).await?
        } else {
            customers::find_exclusive(txn, id).await?
        };
        locked.push(customer);
    }
    let take = |id: &str| {
        locked
            .iter()
            .find(|c| c.id == id)
            .cloned()
            .ok_or_else(|| Error::internal(format!("customer {id} was locked but not read")))
    };
    let target = take(target_id)?;
    let sources: Vec<Customer> = source_ids
        .iter()
        .map(|id| take(id))
        .collect::<Result<_>>()?;
    for customer in std::iter::once(&target).chain(&sources) {
        refuse_if_locked(customer, "be merged")?;
    }
    Ok((target, sources))
}

/// Step two, per source: its requests, activities, notifications, Recent entries and interactions move to the
/// target, its row and lookup keys go, its tombstone keeps what it was and what moved, and the log says MERGED.
async fn retire_source(
    txn: &impl ConnectionTrait,
    agent: &str,
    source: &Customer,
    taken: Taken,
    target_id: &str,
    now: Micros,
) -> Result<()> {
    let from = Condition::all();
    let requests = request_rows(
        txn,
        from.clone()
            .add(requests::Column::CustomerId.eq(&source.id)),
    )
    .await?;
    let activities: Vec<Row> =
        activity_rows(txn, from.add(activities::Column::CustomerId.eq(&source.id)))
            .await?
            .into_iter()
            .map(|(row, _)| row)
            .collect();
    reassign(
        txn,
        agent,
        ResourceKind::Request,
        &requests,
        &source.id,
        target_id,
        now,
    )
    .await?;
    reassign(
        txn,
        agent,
        ResourceKind::Activity,
        &activities,
        &source.id,
        target_id,
        now,
    )
    .await?;
    move_notifications(txn, &source.id, target_id, None).await?;
    // The agents' Recent lists show the target where they showed the source.
    let views: Vec<View> = recent_views::Entity::find()
        .filter(recent_views::Column::CustomerId.eq(&source.id))
        .all(txn)
        .await?
        .into_iter()
        .map(|v| View {
            agent: v.agent,
            customer_id: target_id.to_owned(),
            time: v.view_time,
        })
        .collect();
    for chunk in views.chunks(CHUNK) {
        recent::upsert(txn, chunk).await?;
    }
    recent_views::Entity::delete_many()
        .filter(recent_views::Column::CustomerId.eq(&source.id))
        .exec(txn)
        .await?;
    // A retried OpenContext that found the source answers with the target.
    txn.execute(
        &Query::update()
            .table(Alias::new("interactions"))
            .value(Alias::new("customer_id"), target_id)
            .and_where(Expr::col(Alias::new("customer_id")).eq(source.id.as_str()))
            .to_owned(),
    )
    .await?;
    contact_keys::Entity::delete_many()
        .filter(contact_keys::Column::CustomerId.eq(&source.id))
        .exec(txn)
        .await?;
    customer_rows::Entity::delete_by_id(source.id.clone())
        .exec(txn)
        .await?;
    let moved = Moved {
        requests: requests.into_iter().map(|(id, _, _)| id).collect(),
        activities: activities.into_iter().map(|(id, _, _)| id).collect(),
        customer_number: taken.customer_number(),
        taken,
    };
    customer_merges::Entity::insert(customer_merges::ActiveModel {
        source_id: Set(source.id.clone()),
        target_id: Set(target_id.to_owned()),
        merge_time: Set(now),
        merged_by: Set(agent.to_owned()),
        source: Set(encode_json(&StoredCustomer::from(source))?),
        moved: Set(encode_json(&moved)?),
    })
    .exec_without_returning(txn)
    .await?;
    let tombstone = Customer {
        version: source.version + 1,
        ..source.clone()
    };
    change_log::append(
        txn,
        customer_change(
            &tombstone,
            ChangeKind::Merged,
            Vec::new(),
            Some(target_id),
            agent,
            now,
        ),
    )
    .await?;
    Ok(())
}

/// Step three: the target with what the sources brought, saved at the next version if it changed.
async fn save_merged_target(
    txn: &impl ConnectionTrait,
    target: Customer,
    data: CustomerData,
    agent: &str,
    now: Micros,
) -> Result<Customer> {
    let changes = mask::diff(&target.data, &data);
    let merged = if changes.is_empty() {
        target
    } else {
        let updated = target.next_version(data, agent, now);
        save_customer(txn, &updated, &target).await?;
        change_log::append(
            txn,
            customer_change(&updated, ChangeKind::Updated, changes, None, agent, now),
        )
        .await?;
        updated
    };
    Ok(merged)
}
