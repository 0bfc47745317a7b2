//! Privacy: anonymizing a customer, reading everything held about one, and the audit history of a record.
//!
//! Anonymization overwrites personal data in place, in one write transaction: the profile, the contact keys,
//! the person-describing fields of the customer's activities, requests and comments, the values in the change
//! log about all of them, merged tombstones, the notification outbox and the router's prefill records. What is
//! not about who the person is stays for reporting: channels, directions, times, statuses, counts, tags, agents.
//!
//! On SQLite the connections run with `secure_delete` and the search index with FTS5 `secure-delete` (see the
//! migrations), so overwritten values are zeroed in the file; after the commit the write-ahead log is
//! checkpointed and truncated so no earlier page images remain in the `-wal` file either.

use std::{collections::BTreeMap, time::Duration};

use sea_orm::{
    AccessMode, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, IsolationLevel,
    QueryFilter, QueryOrder, QuerySelect, TransactionOptions, TransactionTrait,
    sea_query::{Alias, Expr, ExprTrait, Query, SelectStatement},
};
use serde_json::{Map, Value};

use super::{
    Store, activities, change_log, customers,
    entity::{
        activities as activity_rows, change_log as log_rows, comments, customer_merges,
        notifications, requests as request_rows,
    },
    record::Stored,
    requests,
};
use crate::{
    domain::{
        activity::{Activity, ActivityData},
        change::{Change, NewChange, ResourceKind},
        customer::{Customer, CustomerData},
        mask::{self, FieldChange},
        notification::Notification,
        request::{Comment, Request},
        time::now_micros,
    },
    error::{Error, Result},
};

/// The title an anonymized request keeps (titles are required; the old one may name the person).
pub const ANONYMIZED_TITLE: &str = "Anonymized request";

/// Why a pending notification of an anonymized customer will never be sent.
const NOT_SENT: &str = "not sent: the customer was anonymized";

/// Keys of personal values in the JSON of merged tombstones (the source customer as it was, and what the merge
/// moved): strings become empty, lists and maps empty; flags and numbers stay.
const PERSONAL_KEYS: &[&str] = &[
    "first_name",
    "last_name",
    "company",
    "gender",
    "customer_number",
    "contact_points",
    "notes",
    "attributes",
    "search_text",
    "contact_name",
    "contact_phone",
    "contact_email",
    "sales_contact",
    "reference",
    "topic",
    "description",
    "text",
];

/// Most merge generations followed when collecting the customers merged into one (chains are short).
const MAX_MERGE_DEPTH: usize = 32;

/// Checkpoint attempts after an anonymization, and how long each waits for readers of old log frames.
const CHECKPOINT_ATTEMPTS: u32 = 5;
const CHECKPOINT_WAIT: Duration = Duration::from_millis(250);

/// One row of the change log with its values.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedChange {
    pub change: Change,
    /// Field -> `[old, new]` as recorded (the records' stored JSON forms); empty once redacted.
    pub values: Map<String, Value>,
    /// The values were removed by an anonymization.
    pub redacted: bool,
}

impl LoggedChange {
    /// The recorded old and new value of `field`, unless redacted or not recorded.
    pub fn values_of(&self, field: &str) -> Option<(&Value, &Value)> {
        match self.values.get(field)? {
            Value::Array(pair) if pair.len() == 2 => Some((&pair[0], &pair[1])),
            _ => None,
        }
    }
}

/// Everything held about one customer.
#[derive(Clone, Debug)]
pub struct CustomerRecords {
    pub customer: Customer,
    /// Oldest first, each with its comments (oldest first).
    pub requests: Vec<(Request, Vec<Comment>)>,
    /// Oldest first, internal ones included.
    pub activities: Vec<Activity>,
    /// The notification outbox rows about the customer, oldest first.
    pub notifications: Vec<Notification>,
    /// Tombstones of customers merged into this one (directly or through a chain of merges).
    pub merged: Vec<customer_merges::Model>,
    /// The change log about the customer, its requests and activities and the customers merged into it.
    pub changes: Vec<LoggedChange>,
}

fn from_model(model: log_rows::Model) -> Result<LoggedChange> {
    let values = if model.redacted {
        Map::new()
    } else {
        match serde_json::from_str(&model.changes) {
            Ok(Value::Object(values)) => values,
            _ => {
                return Err(Error::internal(format!(
                    "change {}: corrupt values column",
                    model.seq
                )));
            }
        }
    };
    let redacted = model.redacted;
    Ok(LoggedChange {
        change: change_log::from_model(model)?,
        values,
        redacted,
    })
}

/// The ids of `customer_id`'s requests (for `IN (...)` filters).
fn request_ids(customer_id: &str) -> SelectStatement {
    ids_of_customer(
        request_rows::Entity,
        request_rows::Column::Id,
        request_rows::Column::CustomerId.eq(customer_id),
    )
}

/// The ids of `customer_id`'s activities.
fn activity_ids(customer_id: &str) -> SelectStatement {
    ids_of_customer(
        activity_rows::Entity,
        activity_rows::Column::Id,
        activity_rows::Column::CustomerId.eq(customer_id),
    )
}

/// The `id` column of the rows of `table` that belong to a customer (`of_customer`).
fn ids_of_customer<E: EntityTrait>(table: E, id: E::Column, of_customer: Expr) -> SelectStatement {
    Query::select()
        .column(id)
        .from(table)
        .and_where(of_customer)
        .to_owned()
}

/// The change-log rows about a customer: the customer and those merged into it (`subjects`), records whose
/// parent is one of them, and its current requests and activities (also their history from before they were
/// linked or merged). One condition per index, so each is an index lookup.
fn history_of(customer_id: &str, subjects: &[String]) -> [Condition; 4] {
    [
        Condition::all()
            .add(log_rows::Column::ResourceType.eq(ResourceKind::Customer.as_str()))
            .add(log_rows::Column::ResourceId.is_in(subjects.iter().map(String::as_str))),
        Condition::all().add(log_rows::Column::ParentId.is_in(subjects.iter().map(String::as_str))),
        Condition::all()
            .add(log_rows::Column::ResourceType.eq(ResourceKind::Request.as_str()))
            .add(log_rows::Column::ResourceId.in_subquery(request_ids(customer_id))),
        Condition::all()
            .add(log_rows::Column::ResourceType.eq(ResourceKind::Activity.as_str()))
            .add(log_rows::Column::ResourceId.in_subquery(activity_ids(customer_id))),
    ]
}

/// The tombstones of every customer merged into `customer_id`, following chains (A into B, then B into C).
async fn merged_into(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<Vec<customer_merges::Model>> {
    let mut found = Vec::new();
    let mut seen = std::collections::HashSet::from([customer_id.to_owned()]);
    let mut frontier = vec![customer_id.to_owned()];
    for _ in 0..MAX_MERGE_DEPTH {
        if frontier.is_empty() {
            break;
        }
        let rows = customer_merges::Entity::find()
            .filter(customer_merges::Column::TargetId.is_in(frontier.iter().map(String::as_str)))
            .order_by_asc(customer_merges::Column::MergeTime)
            .order_by_asc(customer_merges::Column::SourceId)
            .all(db)
            .await?;
        frontier.clear();
        for row in rows {
            if seen.insert(row.source_id.clone()) {
                frontier.push(row.source_id.clone());
                found.push(row);
            }
        }
    }
    Ok(found)
}

/// Blanks every value under a personal key anywhere in `value`; true if anything changed.
pub(crate) fn redact_personal(value: &mut Value) -> bool {
    match value {
        Value::Object(map) => {
            let mut changed = false;
            for (key, inner) in map.iter_mut() {
                if PERSONAL_KEYS.contains(&key.as_str()) {
                    let blank = match inner {
                        Value::String(_) => Value::String(String::new()),
                        Value::Array(_) => Value::Array(Vec::new()),
                        Value::Object(_) => Value::Object(Map::new()),
                        // Flags and counts under a personal key (a merge's "took the customer number") are
                        // not personal, and the records that read them back need their type.
                        Value::Null | Value::Bool(_) | Value::Number(_) => inner.clone(),
                    };
                    if *inner != blank {
                        *inner = blank;
                        changed = true;
                    }
                } else {
                    changed |= redact_personal(inner);
                }
            }
            changed
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, item| redact_personal(item) | changed),
        _ => false,
    }
}

/// The profile without personal data: tags (labels such as "VIP") and the credit hold stay.
fn anonymous_profile(data: &CustomerData) -> CustomerData {
    CustomerData {
        tags: data.tags.clone(),
        credit_hold: data.credit_hold,
        ..CustomerData::default()
    }
}

/// The activity without its contact fields and free texts; channel, direction, times, tags, the agents and
/// links stay.
fn anonymous_activity(data: &ActivityData) -> ActivityData {
    ActivityData {
        topic: String::new(),
        notes: String::new(),
        contact_name: String::new(),
        contact_phone: String::new(),
        contact_email: String::new(),
        sales_contact: String::new(),
        reference: String::new(),
        ..data.clone()
    }
}

/// The customer's rows of `R`'s table (those `of_customer` matches), in id order.
async fn rows_of<R: Stored>(
    db: &impl ConnectionTrait,
    of_customer: Expr,
) -> Result<Vec<<R::Entity as EntityTrait>::Model>> {
    Ok(R::Entity::find()
        .filter(of_customer)
        .order_by_asc(R::ID)
        .all(db)
        .await?)
}

/// One anonymization inside its write transaction.
struct Anonymization<'a> {
    txn: &'a super::Tx,
    agent: &'a str,
    customer_id: &'a str,
    now: i64,
}

impl Anonymization<'_> {
    /// Saves `updated` over its row, matched by id alone (the anonymized values replace whatever version the row
    /// holds), and logs the change, naming the `fields` it cleared without their values.
    async fn save<R: Stored>(&self, updated: &R, fields: Vec<FieldChange>) -> Result<()> {
        R::Entity::update_many()
            .set(updated.to_active()?)
            .filter(R::ID.eq(updated.id()))
            .exec(self.txn)
            .await?;
        let fields = fields
            .into_iter()
            .map(|f| FieldChange {
                field: f.field,
                old: Value::Null,
                new: Value::Null,
            })
            .collect();
        let change = NewChange::updated(self.agent, updated, fields, self.now);
        change_log::append(self.txn, change).await?;
        Ok(())
    }

    /// Clears the contact fields and free texts of the customer's activities; true if any had some.
    async fn activities(&self) -> Result<bool> {
        let of_customer = activity_rows::Column::CustomerId.eq(self.customer_id);
        let mut changed = false;
        for model in rows_of::<Activity>(self.txn, of_customer).await? {
            let activity = activities::from_model(model)?;
            let data = anonymous_activity(&activity.data);
            let fields = mask::diff(&activity.data, &data);
            if fields.is_empty() {
                continue;
            }
            changed = true;
            let updated = activity.next_version(data, self.agent, self.now);
            self.save(&updated, fields).await?;
        }
        Ok(changed)
    }

    /// Clears the descriptions and comment texts of the customer's requests and gives them a neutral title;
    /// true if any had something to clear.
    async fn requests(&self) -> Result<bool> {
        let id = self.customer_id;
        let commented: Vec<String> = comments::Entity::find()
            .select_only()
            .column(comments::Column::RequestId)
            .distinct()
            .filter(comments::Column::RequestId.in_subquery(request_ids(id)))
            .filter(comments::Column::Text.ne(""))
            .into_tuple()
            .all(self.txn)
            .await?;
        let of_customer = request_rows::Column::CustomerId.eq(id);
        let mut changed = false;
        for model in rows_of::<Request>(self.txn, of_customer).await? {
            let request = requests::from_model(model)?;
            let mut data = request.data.clone();
            data.title = ANONYMIZED_TITLE.to_owned();
            data.description = String::new();
            let mut fields = mask::diff(&request.data, &data);
            if commented.contains(&request.id) {
                fields.push(FieldChange {
                    field: "comments".to_owned(),
                    old: Value::Null,
                    new: Value::Null,
                });
            }
            if fields.is_empty() {
                continue;
            }
            changed = true;
            let updated = request.next_version(data, self.agent, self.now);
            self.save(&updated, fields).await?;
        }
        if !commented.is_empty() {
            comments::Entity::update_many()
                .col_expr(comments::Column::Text, Expr::value(""))
                .filter(comments::Column::RequestId.in_subquery(request_ids(id)))
                .filter(comments::Column::Text.ne(""))
                .exec(self.txn)
                .await?;
        }
        Ok(changed)
    }

    /// Clears addresses and texts in the notification outbox; what was not sent yet never will be. True if
    /// any row had something to clear.
    async fn outbox(&self) -> Result<bool> {
        let pending = notifications::Column::Status.eq("pending");
        let cleared = notifications::Entity::update_many()
            .col_expr(notifications::Column::Recipient, Expr::value(""))
            .col_expr(notifications::Column::Subject, Expr::value(""))
            .col_expr(notifications::Column::Body, Expr::value(""))
            .col_expr(
                notifications::Column::LastError,
                Expr::case(pending.clone(), NOT_SENT).finally("").into(),
            )
            .col_expr(
                notifications::Column::Status,
                Expr::case(pending.clone(), "failed")
                    .finally(Expr::col(notifications::Column::Status))
                    .into(),
            )
            .col_expr(
                notifications::Column::LeaseUntil,
                Expr::value(Option::<i64>::None),
            )
            .filter(notifications::Column::CustomerId.eq(self.customer_id))
            .filter(
                Condition::any()
                    .add(notifications::Column::Recipient.ne(""))
                    .add(notifications::Column::Subject.ne(""))
                    .add(notifications::Column::Body.ne(""))
                    .add(pending),
            )
            .exec(self.txn)
            .await?;
        Ok(cleared.rows_affected > 0)
    }

    /// Forgets the caller details the router recorded for a new-customer form (`interactions.prefill`) once
    /// the interaction's activity is the customer's. Only unknown callers' interactions have them (they name no
    /// customer), so the activity is the link. True if any were there.
    async fn prefills(&self) -> Result<bool> {
        let prefill = Alias::new("prefill");
        let cleared = self
            .txn
            .execute(
                &Query::update()
                    .table(Alias::new("interactions"))
                    .value(prefill.clone(), Expr::value(Option::<String>::None))
                    .and_where(Expr::col(prefill).is_not_null())
                    .and_where(
                        Expr::col(Alias::new("activity_id"))
                            .in_subquery(activity_ids(self.customer_id)),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(cleared.rows_affected() > 0)
    }

    /// Blanks the personal values in the tombstones of customers merged into this one (the same person); true
    /// if any had some.
    async fn tombstones(&self, merged: &[customer_merges::Model]) -> Result<bool> {
        let mut changed = false;
        for tombstone in merged {
            let mut source: Value = super::decode_json(&tombstone.source)?;
            let mut moved: Value = super::decode_json(&tombstone.moved)?;
            let source_changed = redact_personal(&mut source);
            let moved_changed = redact_personal(&mut moved);
            if !(source_changed || moved_changed) {
                continue;
            }
            changed = true;
            customer_merges::Entity::update_many()
                .col_expr(
                    customer_merges::Column::Source,
                    Expr::value(source.to_string()),
                )
                .col_expr(
                    customer_merges::Column::Moved,
                    Expr::value(moved.to_string()),
                )
                .filter(customer_merges::Column::SourceId.eq(tombstone.source_id.as_str()))
                .exec(self.txn)
                .await?;
        }
        Ok(changed)
    }

    /// Clears the profile and its contact keys, sets `anonymize_time` and bumps the version.
    async fn profile(&self, current: Customer) -> Result<Customer> {
        let data = anonymous_profile(&current.data);
        let mut fields = mask::diff(&current.data, &data);
        fields.push(FieldChange {
            field: "anonymize_time".to_owned(),
            old: Value::Null,
            new: Value::Null,
        });
        let updated = Customer {
            anonymize_time: Some(self.now),
            ..current.next_version(data, self.agent, self.now)
        };
        self.save(&updated, fields).await?;
        customers::write_contact_keys(self.txn, self.customer_id, &[]).await?;
        Ok(updated)
    }

    /// Removes the values from every change-log row about the customer, the customers merged into it and its
    /// requests and activities (the rows just appended included).
    async fn history(&self, merged: &[customer_merges::Model]) -> Result<()> {
        let mut subjects = vec![self.customer_id.to_owned()];
        subjects.extend(merged.iter().map(|m| m.source_id.clone()));
        for condition in history_of(self.customer_id, &subjects) {
            log_rows::Entity::update_many()
                .col_expr(log_rows::Column::Changes, Expr::value("{}"))
                .col_expr(log_rows::Column::Redacted, Expr::value(true))
                .filter(condition)
                .filter(log_rows::Column::Redacted.eq(false))
                .exec(self.txn)
                .await?;
        }
        Ok(())
    }
}

impl Store {
    /// Removes the personal data of customer `id` (see the module documentation) as `agent`. A locked customer
    /// is refused (`CUSTOMER_LOCKED`). Anonymizing again removes whatever personal data was recorded since (an
    /// activity logged later); with none left it changes nothing and returns the customer at the same version.
    pub async fn anonymize_customer(&self, agent: &str, id: &str) -> Result<Customer> {
        let (by, of) = (agent.to_owned(), id.to_owned());
        let (anonymized, merged) = self
            .write("anonymize_customer", move |txn| {
                Box::pin(async move {
                    let (agent, id) = (by.as_str(), of.as_str());
                    let current = customers::find_for_update(txn, id).await?;
                    if current.locked {
                        return Err(Error::failed_precondition(
                            "CUSTOMER_LOCKED",
                            format!("customer {id} is locked; unlock it before anonymizing it"),
                        ));
                    }
                    let run = Anonymization {
                        txn,
                        agent,
                        customer_id: id,
                        now: now_micros(),
                    };
                    let merged = merged_into(txn, id).await?;
                    // Every step runs (no short-circuit): each clears what it finds.
                    let children = [
                        run.activities().await?,
                        run.requests().await?,
                        run.outbox().await?,
                        run.prefills().await?,
                        run.tombstones(&merged).await?,
                    ];
                    let profile_clear = current.anonymize_time.is_some()
                        && anonymous_profile(&current.data) == current.data;
                    if profile_clear && !children.contains(&true) {
                        run.history(&merged).await?;
                        return Ok((current, None));
                    }
                    let anonymized = run.profile(current).await?;
                    run.history(&merged).await?;
                    Ok((anonymized, Some(merged.len())))
                })
            })
            .await?;
        // Nothing was left to remove: the customer comes back as it was.
        let Some(merged) = merged else {
            return Ok(anonymized);
        };
        tracing::info!(
            customer = id,
            agent,
            version = anonymized.version,
            merged,
            "customer anonymized"
        );
        self.forget_old_pages().await;
        Ok(anonymized)
    }

    /// SQLite: copies the write-ahead log into the database file and truncates it, so the page images written
    /// before an anonymization leave the `-wal` file. Readers still using old pages delay it; it is retried
    /// briefly, then left to SQLite's automatic checkpoints (which overwrite the log from its start).
    async fn forget_old_pages(&self) {
        if self.backend != DbBackend::Sqlite {
            return;
        }
        let pool = self.write.get_sqlite_connection_pool();
        for attempt in 1..=CHECKPOINT_ATTEMPTS {
            match checkpoint(pool).await {
                Ok(true) => return,
                Ok(false) => {
                    tracing::debug!(attempt, "write-ahead log still in use by readers; retrying")
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot checkpoint the write-ahead log after an anonymization");
                    return;
                }
            }
            tokio::time::sleep(CHECKPOINT_WAIT / 5).await;
        }
        tracing::warn!(
            "the write-ahead log could not be truncated after an anonymization (long-running readers); \
             old page images stay in the -wal file until SQLite's next checkpoint overwrites them"
        );
    }

    /// Everything held about customer `id`, read from one snapshot.
    pub async fn customer_records(&self, id: &str) -> Result<CustomerRecords> {
        self.sequence_committed().await;
        let options = match self.backend {
            DbBackend::Postgres => TransactionOptions {
                isolation_level: Some(IsolationLevel::RepeatableRead),
                access_mode: Some(AccessMode::ReadOnly),
                sqlite_transaction_mode: None,
            },
            _ => TransactionOptions::default(),
        };
        let txn = self.read.begin_with_options(options).await?;
        let customer = customers::find(&txn, id).await?;
        let mut comment_rows: BTreeMap<String, Vec<Comment>> = BTreeMap::new();
        for c in comments::Entity::find()
            .filter(comments::Column::RequestId.in_subquery(request_ids(id)))
            .order_by_asc(comments::Column::Id)
            .all(&txn)
            .await?
        {
            comment_rows
                .entry(c.request_id.clone())
                .or_default()
                .push(Comment {
                    id: c.id,
                    request_id: c.request_id,
                    text: c.text,
                    author: c.author,
                    create_time: c.create_time,
                });
        }
        let requests = rows_of::<Request>(&txn, request_rows::Column::CustomerId.eq(id))
            .await?
            .into_iter()
            .map(|model| {
                let request = requests::from_model(model)?;
                let thread = comment_rows.remove(&request.id).unwrap_or_default();
                Ok((request, thread))
            })
            .collect::<Result<Vec<_>>>()?;
        let activities = rows_of::<Activity>(&txn, activity_rows::Column::CustomerId.eq(id))
            .await?
            .into_iter()
            .map(activities::from_model)
            .collect::<Result<Vec<_>>>()?;
        let notifications = notifications::Entity::find()
            .filter(notifications::Column::CustomerId.eq(id))
            .order_by_asc(notifications::Column::CreateTime)
            .order_by_asc(notifications::Column::Id)
            .all(&txn)
            .await?
            .into_iter()
            .map(super::outbox::to_domain)
            .collect::<Result<Vec<_>>>()?;
        let merged = merged_into(&txn, id).await?;
        let mut subjects = vec![id.to_owned()];
        subjects.extend(merged.iter().map(|m| m.source_id.clone()));
        let mut rows = BTreeMap::new();
        for condition in history_of(id, &subjects) {
            for row in log_rows::Entity::find().filter(condition).all(&txn).await? {
                rows.insert(row.seq, row);
            }
        }
        txn.commit().await?;
        Ok(CustomerRecords {
            customer,
            requests,
            activities,
            notifications,
            merged,
            changes: rows.into_values().map(from_model).collect::<Result<_>>()?,
        })
    }

    /// The history of one record, oldest first: changes after log position `after`, at most `limit`. Records
    /// that no longer exist keep their history.
    pub async fn record_history(
        &self,
        resource: ResourceKind,
        id: &str,
        after: Option<i64>,
        limit: u64,
    ) -> Result<Vec<LoggedChange>> {
        self.sequence_committed().await;
        let query = log_rows::Entity::find()
            .filter(log_rows::Column::ResourceType.eq(resource.as_str()))
            .filter(log_rows::Column::ResourceId.eq(id));
        // Only changes with a log position: every one committed before this call has one now.
        let query = query
            .filter(log_rows::Column::Seq.gt(after.unwrap_or(0)))
            .order_by_asc(log_rows::Column::Seq);
        super::fetch(&self.reader(), query, limit, from_model).await
    }
}

/// `PRAGMA wal_checkpoint(TRUNCATE)` waiting at most [`CHECKPOINT_WAIT`] for readers; true if the log was
/// copied completely and truncated.
async fn checkpoint(
    pool: &sea_orm::sqlx::SqlitePool,
) -> std::result::Result<bool, sea_orm::sqlx::Error> {
    use sea_orm::sqlx;
    let mut conn = pool.acquire().await?;
    let (busy_timeout,): (i64,) = sqlx::query_as("PRAGMA busy_timeout")
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {}",
        CHECKPOINT_WAIT.as_millis()
    )))
    .execute(&mut *conn)
    .await?;
    let outcome: std::result::Result<(i64, i64, i64), _> =
        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {busy_timeout}"
    )))
    .execute(&mut *conn)
    .await?;
    let (busy, _log_frames, _checkpointed) = outcome?;
    Ok(busy == 0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn personal_values_are_blanked_wherever_they_are_nested() {
        let mut source = json!({
            "id": "c1",
            "version": 3,
            "data": {
                "first_name": "Zora",
                "contact_points": [{"kind": "phone", "label": "mobile", "value": "+14155550100"}],
                "attributes": {"vat": "X1"},
                "tags": ["vip"],
                "credit_hold": true
            },
            "activities": [{"id": "a1", "notes": "called twice", "channel": 1}]
        });
        assert!(redact_personal(&mut source));
        assert_eq!(
            source,
            json!({
                "id": "c1",
                "version": 3,
                "data": {
                    "first_name": "",
                    "contact_points": [],
                    "attributes": {},
                    "tags": ["vip"],
                    "credit_hold": true
                },
                "activities": [{"id": "a1", "notes": "", "channel": 1}]
            })
        );
        assert!(
            !redact_personal(&mut source),
            "a second pass changes nothing"
        );
    }

    #[test]
    fn anonymous_profile_keeps_labels_only() {
        let data = CustomerData {
            first_name: "Zora".into(),
            customer_number: "C-1".into(),
            tags: vec!["VIP".into()],
            credit_hold: true,
            notes: "n".into(),
            ..CustomerData::default()
        };
        let anonymous = anonymous_profile(&data);
        assert_eq!(anonymous.tags, ["VIP"]);
        assert!(anonymous.credit_hold);
        assert!(anonymous.first_name.is_empty() && anonymous.customer_number.is_empty());
        assert!(anonymous.search_words().iter().all(|w| w == "vip"));
    }
}
