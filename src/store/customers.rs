//! Customer repository: profiles and their contact-point lookup keys.

use std::collections::BTreeMap;

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, LockType, Query},
};

use super::{
    Store, Tx, change_log, decode_json, encode_json,
    entity::{
        activities, comments, contact_keys, customer_merges, customers, delete_where, requests,
        tuples,
    },
    record,
};
use crate::{
    domain::{
        change::{ChangeKind, NewChange, ResourceKind},
        contact::{ContactKind, ContactPoint, match_key},
        customer::{Audit, Customer, CustomerData, contact_points_json},
        edit::{Deletion, Edit},
        time::now_micros,
    },
    error::{Error, Result},
};

const RESOURCE: &str = "customer";
/// `FAILED_PRECONDITION` reason of writes a locked customer refuses.
pub(super) const CUSTOMER_LOCKED: &str = "CUSTOMER_LOCKED";

/// Which index a lookup uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupKey {
    Phone,
    Email,
    /// Chat, social and external handles.
    Handle,
    CustomerNumber,
}

impl LookupKey {
    /// The contact class a contact-point lookup matches (`contact_keys.kind`); None for a customer number.
    pub(super) fn class(self) -> Option<&'static str> {
        let kind = match self {
            LookupKey::Phone => ContactKind::Phone,
            LookupKey::Email => ContactKind::Email,
            LookupKey::Handle => ContactKind::Chat,
            LookupKey::CustomerNumber => return None,
        };
        Some(lookup_class(kind))
    }
}

/// Most customers one lookup returns (several people may share a phone).
pub const MAX_LOOKUP_RESULTS: u64 = 100;

/// The class a contact point is matched by (`contact_keys.kind`): handles of every kind are one class.
pub(super) fn lookup_class(kind: ContactKind) -> &'static str {
    match kind {
        ContactKind::Phone => "phone",
        ContactKind::Email => "email",
        ContactKind::Chat | ContactKind::Social | ContactKind::External => "handle",
    }
}

fn search_text(data: &CustomerData) -> String {
    // Leading and trailing spaces let a word prefix match as ` word`.
    format!(" {} ", data.search_words().join(" "))
}

pub(super) fn to_active(customer: &Customer) -> Result<customers::ActiveModel> {
    let (data, audit) = (&customer.data, &customer.audit);
    Ok(customers::ActiveModel {
        id: Set(customer.id.clone()),
        version: Set(customer.version),
        first_name: Set(data.first_name.clone()),
        last_name: Set(data.last_name.clone()),
        company: Set(data.company.clone()),
        gender: Set(data.gender.clone()),
        customer_number: Set(Some(data.customer_number.clone()).filter(|n| !n.is_empty())),
        contact_points: Set(contact_points_json::encode(&data.contact_points)),
        notes: Set(data.notes.clone()),
        tags: Set(encode_json(&data.tags)?),
        credit_hold: Set(data.credit_hold),
        attributes: Set(encode_json(&data.attributes)?),
        search_text: Set(search_text(data)),
        create_time: Set(audit.create_time),
        update_time: Set(audit.update_time),
        created_by: Set(audit.created_by.clone()),
        updated_by: Set(audit.updated_by.clone()),
        locked: Set(customer.locked),
        anonymize_time: Set(customer.anonymize_time),
    })
}

pub(super) fn from_model(model: customers::Model) -> Result<Customer> {
    let contact_points = contact_points_json::decode(&model.contact_points).map_err(|e| {
        Error::internal(format!(
            "customer {}: corrupt contact points: {e}",
            model.id
        ))
    })?;
    let attributes: BTreeMap<String, String> = decode_json(&model.attributes)?;
    Ok(Customer {
        id: model.id,
        version: model.version,
        data: CustomerData {
            first_name: model.first_name,
            last_name: model.last_name,
            company: model.company,
            gender: model.gender,
            customer_number: model.customer_number.unwrap_or_default(),
            contact_points,
            notes: model.notes,
            tags: decode_json(&model.tags)?,
            credit_hold: model.credit_hold,
            attributes,
        },
        audit: Audit {
            create_time: model.create_time,
            update_time: model.update_time,
            created_by: model.created_by,
            updated_by: model.updated_by,
        },
        locked: model.locked,
        anonymize_time: model.anonymize_time,
    })
}

pub(super) async fn write_contact_keys(
    db: &impl ConnectionTrait,
    customer_id: &str,
    points: &[ContactPoint],
) -> Result<()> {
    contact_keys::Entity::delete_many()
        .filter(contact_keys::Column::CustomerId.eq(customer_id))
        .exec(db)
        .await?;
    if points.is_empty() {
        return Ok(());
    }
    contact_keys::Entity::insert_many(contact_key_rows(customer_id, points))
        .exec(db)
        .await?;
    Ok(())
}

/// The lookup rows of a customer's contact points, one per point in their order.
pub(super) fn contact_key_rows<'a>(
    customer_id: &'a str,
    points: &'a [ContactPoint],
) -> impl Iterator<Item = contact_keys::ActiveModel> + 'a {
    points
        .iter()
        .enumerate()
        .map(|(position, point)| contact_keys::ActiveModel {
            customer_id: Set(customer_id.to_owned()),
            position: Set(position as i32),
            kind: Set(lookup_class(point.kind).to_owned()),
            match_key: Set(match_key(point.kind, &point.value)),
        })
}

/// Refuses a customer number that another customer already has.
pub(super) async fn check_customer_number_free(
    db: &impl ConnectionTrait,
    number: &str,
    own_id: &str,
) -> Result<()> {
    if number.is_empty() {
        return Ok(());
    }
    let holder = customers::Entity::find()
        .select_only()
        .column(customers::Column::Id)
        .filter(customers::Column::CustomerNumber.eq(number))
        .into_tuple::<String>()
        .one(db)
        .await?;
    match holder {
        Some(holder) if holder != own_id => Err(Error::AlreadyExists {
            reason: "CUSTOMER_NUMBER_TAKEN",
            message: format!("customer number {number:?} already belongs to customer {holder}"),
        }),
        _ => Ok(()),
    }
}

/// Most merges followed from a merged customer to the one it lives on in.
const MAX_MERGE_HOPS: usize = 64;

/// Why there is no customer `id`: it was merged into another (following later merges of that one to the
/// customer that exists now), or it never existed or was deleted.
pub(super) async fn missing(db: &impl ConnectionTrait, id: &str) -> Result<Error> {
    let mut current = id.to_owned();
    for _ in 0..MAX_MERGE_HOPS {
        let Some(target) = customer_merges::Entity::find_by_id(current.clone())
            .select_only()
            .column(customer_merges::Column::TargetId)
            .into_tuple::<String>()
            .one(db)
            .await?
        else {
            // The chain ends at a customer that no longer exists (deleted after the merge).
            return Ok(Error::not_found(RESOURCE, id));
        };
        let exists = customers::Entity::find_by_id(target.clone())
            .select_only()
            .column(customers::Column::Id)
            .into_tuple::<String>()
            .one(db)
            .await?
            .is_some();
        if exists {
            return Ok(Error::Merged {
                id: id.to_owned(),
                merged_into: target,
            });
        }
        current = target;
    }
    tracing::error!(
        customer_id = id,
        "merge chain longer than {MAX_MERGE_HOPS} customers"
    );
    Ok(Error::not_found(RESOURCE, id))
}

record::stored_in!(Customer, customers);

/// The customer with id `id`: by primary key, so without the `LIMIT 1` of `one()`, whose bound value makes SQLite
/// plan the statement again on every run (see `literal_limit`).
pub(super) fn by_id(id: &str) -> sea_orm::Select<customers::Entity> {
    customers::Entity::find_by_id(id.to_owned())
}

pub(super) async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Customer> {
    let found = by_id(id).all(db).await?;
    match found.into_iter().next() {
        Some(model) => from_model(model),
        None => Err(missing(db, id).await?),
    }
}

/// The customers of `ids` that exist, in one statement (none for no ids).
pub(super) async fn find_all(db: &impl ConnectionTrait, ids: &[&str]) -> Result<Vec<Customer>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    customers::Entity::find()
        .filter(customers::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// Locks the customer for the rest of the write transaction and reads it.
pub(super) async fn find_for_update(db: &impl ConnectionTrait, id: &str) -> Result<Customer> {
    if !super::lock_row(db, "customers", id).await? {
        return Err(missing(db, id).await?);
    }
    find(db, id).await
}

/// Locks the customer against every other writer, deletion included (PostgreSQL `FOR UPDATE`: records being
/// linked to it wait, see [`find_to_link`]), and reads it. For writes that delete the customer row.
pub(super) async fn find_exclusive(db: &impl ConnectionTrait, id: &str) -> Result<Customer> {
    match customers::Entity::find_by_id(id.to_owned())
        .lock_exclusive()
        .one(db)
        .await?
    {
        Some(model) => from_model(model),
        None => Err(missing(db, id).await?),
    }
}

/// Reads the customer a request or activity is about to be linked to, keeping it from being deleted or merged
/// away until the write commits (PostgreSQL `FOR KEY SHARE`; profile edits are not blocked). A customer merged
/// meanwhile answers [`Error::Merged`].
pub(super) async fn find_to_link(txn: &Tx, id: &str) -> Result<Customer> {
    match txn.customer_to_link(id).await? {
        Some(model) => from_model(model),
        None => Err(missing(txn, id).await?),
    }
}

/// The statement [`find_to_link`] reads the customer `id` with.
pub(super) fn to_link(id: &str) -> sea_orm::Select<customers::Entity> {
    customers::Entity::find_by_id(id.to_owned()).lock(LockType::KeyShare)
}

/// Refuses to `what` a locked customer (`FAILED_PRECONDITION`, `CUSTOMER_LOCKED`).
pub(super) fn refuse_if_locked(customer: &Customer, what: &str) -> Result<()> {
    if customer.locked {
        Err(Error::failed_precondition(
            CUSTOMER_LOCKED,
            format!(
                "customer {} is locked and cannot {what}; an administrator must unlock it first",
                customer.id
            ),
        ))
    } else {
        Ok(())
    }
}

impl Store {
    pub async fn create_customer(&self, agent: &str, data: CustomerData) -> Result<Customer> {
        let now = now_micros();
        let customer = Customer::created(data, agent, now);
        let agent = agent.to_owned();
        self.write("create_customer", move |txn| {
            Box::pin(async move {
                let agent = agent.as_str();
                check_customer_number_free(txn, &customer.data.customer_number, &customer.id)
                    .await?;
                txn.insert_created(agent, &customer, now, None).await?;
                write_contact_keys(txn, &customer.id, &customer.data.contact_points).await?;
                Ok(customer)
            })
        })
        .await
    }

    pub async fn get_customer(&self, id: &str) -> Result<Customer> {
        let Some(readers) = &self.group_commit else {
            return find(&self.reader(), id).await;
        };
        match readers.customer(id)? {
            Some(model) => from_model(model),
            None => Err(missing(&self.reader(), id).await?),
        }
    }

    /// Applies the edit to the customer if it is still at its version (see [`record::apply_edit`]). A change
    /// that alters nothing returns the customer unchanged, at the same version.
    pub async fn update_customer(&self, agent: &str, edit: Edit<CustomerData>) -> Result<Customer> {
        let agent = agent.to_owned();
        self.write("update_customer", move |txn| {
            Box::pin(async move {
                let agent = agent.as_str();
                let current = find_for_update(txn, &edit.id).await?;
                refuse_if_locked(&current, "be edited")?;
                let Some((data, changes)) = record::apply_edit(txn, &current, edit).await? else {
                    return Ok(current);
                };
                if data.customer_number != current.data.customer_number {
                    check_customer_number_free(txn, &data.customer_number, &current.id).await?;
                }
                let now = now_micros();
                let updated = current.next_version(data, agent, now);
                record::save_version(txn, &updated, current.version).await?;
                if updated.data.contact_points != current.data.contact_points {
                    write_contact_keys(txn, &updated.id, &updated.data.contact_points).await?;
                }
                record::log_update(txn, agent, updated, changes, now).await
            })
        })
        .await
    }

    /// Deletes the customer with its requests, comments and activities; each deleted record gets its change-log row.
    pub async fn delete_customer(&self, agent: &str, target: Deletion) -> Result<()> {
        let agent = agent.to_owned();
        self.write("delete_customer", move |txn| {
            Box::pin(async move {
                let agent = agent.as_str();
                let id = target.id.as_str();
                let current = find_exclusive(txn, id).await?;
                refuse_if_locked(&current, "be deleted")?;
                record::check_seen(&current, target.version)?;
                let now = now_micros();
                let doomed_activities: Vec<(String, i64, bool)> = tuples(
                    txn,
                    activities::Entity::find().filter(activities::Column::CustomerId.eq(id)),
                    [
                        activities::Column::Id,
                        activities::Column::Version,
                        activities::Column::Internal,
                    ],
                )
                .await?;
                let doomed_requests: Vec<(String, i64)> = tuples(
                    txn,
                    requests::Entity::find().filter(requests::Column::CustomerId.eq(id)),
                    [requests::Column::Id, requests::Column::Version],
                )
                .await?;
                let deleted = |resource, resource_id, version, internal| NewChange {
                    resource,
                    resource_id,
                    version,
                    kind: ChangeKind::Deleted,
                    agent: agent.to_owned(),
                    fields: Vec::new(),
                    parent_id: Some(id.to_owned()),
                    internal,
                    time: now,
                };
                let own_requests = Query::select()
                    .column(requests::Column::Id)
                    .from(requests::Entity)
                    .and_where(requests::Column::CustomerId.eq(id))
                    .to_owned();
                delete_where::<activities::Entity>(txn, activities::Column::CustomerId.eq(id))
                    .await?;
                // Activities of other customers never point at this customer's requests (the request's customer is the
                // activity's customer), but unlink defensively so the foreign key can never block the deletion.
                activities::Entity::update_many()
                    .col_expr(
                        activities::Column::RequestId,
                        Expr::value(Option::<String>::None),
                    )
                    .filter(activities::Column::RequestId.in_subquery(own_requests.clone()))
                    .exec(txn)
                    .await?;
                delete_where::<comments::Entity>(
                    txn,
                    comments::Column::RequestId.in_subquery(own_requests),
                )
                .await?;
                delete_where::<requests::Entity>(txn, requests::Column::CustomerId.eq(id)).await?;
                delete_where::<contact_keys::Entity>(txn, contact_keys::Column::CustomerId.eq(id))
                    .await?;
                customers::Entity::delete_by_id(id.to_owned())
                    .exec(txn)
                    .await?;
                delete_tombstones_into(txn, id).await?;
                for (activity_id, version, internal) in doomed_activities {
                    change_log::append(
                        txn,
                        deleted(ResourceKind::Activity, activity_id, version, internal),
                    )
                    .await?;
                }
                for (request_id, version) in doomed_requests {
                    change_log::append(
                        txn,
                        deleted(ResourceKind::Request, request_id, version, false),
                    )
                    .await?;
                }
                let mut own = deleted(
                    ResourceKind::Customer,
                    id.to_owned(),
                    current.version,
                    false,
                );
                own.parent_id = None;
                change_log::append(txn, own).await?;
                Ok(())
            })
        })
        .await
    }

    /// Customers whose normalized contact point (or customer number) equals `key`, most recently updated first.
    pub async fn lookup_customers(&self, kind: LookupKey, key: &str) -> Result<Vec<Customer>> {
        self.lookup_customers_among(kind, key, None).await
    }

    /// Like [`Store::lookup_customers`], but only the customer `only` when given (a portal's own).
    pub async fn lookup_customers_among(
        &self,
        kind: LookupKey,
        key: &str,
        only: Option<&str>,
    ) -> Result<Vec<Customer>> {
        let found = match (&self.group_commit, only) {
            (Some(readers), None) => readers.lookup(kind, key)?,
            (Some(readers), Some(_)) => readers.customers(&lookup_query(kind, key, only))?,
            (None, _) => super::all_limited(&self.reader(), lookup_query(kind, key, only)).await?,
        };
        found.into_iter().map(from_model).collect()
    }
}

/// The customers whose `kind` is `key` (only `only` when given), most recently updated first.
pub(super) fn lookup_query(
    kind: LookupKey,
    key: &str,
    only: Option<&str>,
) -> sea_orm::Select<customers::Entity> {
    let mut query = customers::Entity::find();
    if let Some(id) = only {
        query = query.filter(customers::Column::Id.eq(id));
    }
    let query = match kind.class() {
        None => query.filter(customers::Column::CustomerNumber.eq(key)),
        Some(class) => query.filter(
            customers::Column::Id.in_subquery(
                Query::select()
                    .column(contact_keys::Column::CustomerId)
                    .from(contact_keys::Entity)
                    .and_where(contact_keys::Column::Kind.eq(class))
                    .and_where(contact_keys::Column::MatchKey.eq(key))
                    .to_owned(),
            ),
        ),
    };
    query
        .order_by_desc(customers::Column::UpdateTime)
        .order_by_desc(customers::Column::Id)
        .limit(MAX_LOOKUP_RESULTS)
}

/// Deletes the tombstones of customers merged into `id` (which is being deleted), and of customers merged into
/// those, so no copy of their data outlives the customer they live on in.
async fn delete_tombstones_into(db: &impl ConnectionTrait, id: &str) -> Result<()> {
    let mut frontier = vec![id.to_owned()];
    while !frontier.is_empty() {
        let sources: Vec<String> = customer_merges::Entity::find()
            .select_only()
            .column(customer_merges::Column::SourceId)
            .filter(customer_merges::Column::TargetId.is_in(frontier.iter().map(String::as_str)))
            .into_tuple()
            .all(db)
            .await?;
        customer_merges::Entity::delete_many()
            .filter(customer_merges::Column::TargetId.is_in(frontier.iter().map(String::as_str)))
            .exec(db)
            .await?;
        frontier = sources;
    }
    Ok(())
}
