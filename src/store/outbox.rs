//! The notification outbox: saving an incoming, non-internal activity for a customer with an email queues one
//! notification in the same transaction; the sender (`crate::notify`) claims due rows, delivers them and records
//! the outcome.
//!
//! Claiming is a conditional `UPDATE` that sets a lease (`lease_until`), so several replicas can send from one
//! PostgreSQL database without sending a row twice: a replica that dies mid-send leaves a lease that expires,
//! and the row is tried again. Sender writes append nothing to the change log: notifications are not records
//! that agents edit or watch.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait,
    sea_query::{Expr, InsertStatement, OnConflict},
};
use tokio::sync::Notify;

use super::{Store, change_log, customers, entity::notifications};
use crate::{
    domain::{
        activity::Activity,
        customer::Customer,
        ids::new_id,
        notification::{self, Notification, NotificationStatus},
        page::Cursor,
        time::{Micros, now_micros},
    },
    error::{Error, Result},
};

/// `last_error` of a notification whose activity was deleted before it was sent.
pub const ACTIVITY_DELETED: &str = "activity deleted before the notification was sent";

/// Wakes the sender of this process when a transaction that queued a notification commits.
#[derive(Debug, Default)]
pub(super) struct OutboxSignal {
    /// A notification was queued in a transaction that has not committed yet.
    queued: AtomicBool,
    wake: Arc<Notify>,
}

impl OutboxSignal {
    /// Notes that the transaction being written queued a notification.
    pub(super) fn queued(&self) {
        self.queued.store(true, Ordering::Release);
    }

    /// Called after every commit of the write connection: wakes the sender if something was queued.
    ///
    /// The flag is per process, not per transaction: on PostgreSQL another transaction may commit between the
    /// queueing and the commit of this one and take the wake-up with it. The sender then finds the row on its
    /// next poll instead, a few seconds later; nothing is lost. On SQLite writes are serialized, so it never
    /// happens there.
    pub(super) fn committed(&self) {
        if self.queued.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }
}

pub(super) fn to_domain(m: notifications::Model) -> Result<Notification> {
    let status = NotificationStatus::parse(&m.status).ok_or_else(|| {
        Error::internal(format!(
            "notification {} has an unknown status {:?}",
            m.id, m.status
        ))
    })?;
    Ok(Notification {
        id: m.id,
        customer_id: m.customer_id,
        activity_id: m.activity_id,
        recipient: m.recipient,
        subject: m.subject,
        body: m.body,
        status,
        attempts: m.attempts,
        last_error: m.last_error,
        create_time: m.create_time,
        send_time: m.send_time,
        next_attempt_time: m.next_attempt_time,
    })
}

/// Rows a sender may claim at `now`: pending, due, and not leased by a sender that is still within its lease.
fn claimable(now: Micros) -> Condition {
    Condition::all()
        .add(notifications::Column::Status.eq(NotificationStatus::Pending.as_str()))
        .add(notifications::Column::NextAttemptTime.lte(now))
        .add(
            Condition::any()
                .add(notifications::Column::LeaseUntil.is_null())
                .add(notifications::Column::LeaseUntil.lte(now)),
        )
}

fn micros(duration: Duration) -> Micros {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// The notification telling `customer` that `activity` was recorded; None for internal or outgoing activities,
/// activities without a customer and customers without an email.
pub(super) fn notification_row(
    activity: &Activity,
    customer: Option<&Customer>,
) -> Result<Option<notifications::ActiveModel>> {
    let Some(customer) = customer else {
        return Ok(None);
    };
    if !notification::is_notifiable(activity) {
        return Ok(None);
    }
    let customer_id = customer.id.as_str();
    if activity.data.customer_id.as_deref() != Some(customer_id) {
        return Err(Error::internal(format!(
            "notification of activity {} asked for customer {customer_id}, not its own",
            activity.id
        )));
    }
    let Some(recipient) = notification::recipient(&customer.data.contact_points) else {
        return Ok(None);
    };
    let (subject, body) = notification::compose(activity);
    let now = now_micros();
    let row = notifications::ActiveModel {
        id: Set(new_id()),
        customer_id: Set(customer_id.to_owned()),
        activity_id: Set(activity.id.clone()),
        recipient: Set(recipient.to_owned()),
        subject: Set(subject),
        body: Set(body),
        status: Set(NotificationStatus::Pending.as_str().to_owned()),
        attempts: Set(0),
        last_error: Set(String::new()),
        create_time: Set(now),
        send_time: Set(None),
        next_attempt_time: Set(now),
        lease_until: Set(None),
    };
    Ok(Some(row))
}

/// Inserts a notification unless its activity already has one.
pub(super) fn queue(
    row: notifications::ActiveModel,
) -> sea_orm::Insert<notifications::ActiveModel> {
    notifications::Entity::insert(row).on_conflict(queue_conflict())
}

/// What queuing a notification does when its activity has one already: nothing (see [`queue`]).
fn queue_conflict() -> OnConflict {
    OnConflict::column(notifications::Column::ActivityId)
        .do_nothing()
        .to_owned()
}

impl Store {
    /// Queues the notification telling the customer that `activity` was recorded, inside the transaction that
    /// saves it. Nothing for internal or outgoing activities, activities without a customer, customers without
    /// an email, or an activity that already has a notification. `customer` is the activity's customer as this
    /// transaction read it (to link or match it), so its email is not read again.
    pub(super) async fn queue_notification(
        &self,
        db: &impl ConnectionTrait,
        activity: &Activity,
        customer: Option<&Customer>,
    ) -> Result<()> {
        let Some(row) = notification_row(activity, customer)? else {
            return Ok(());
        };
        let inserted = queue(row).exec_without_returning(db).await?;
        if inserted > 0 {
            self.outbox.queued();
        }
        Ok(())
    }

    /// The insert queuing the notifications of new activities, each with its customer (as
    /// [`Store::queue_notification`] decides each), for a caller that writes it in the same statement as the
    /// activities: one insert queuing those that get one, None when none does. The sender is woken after the
    /// transaction commits.
    pub(super) fn notifications_insert<'a>(
        &self,
        activities: impl IntoIterator<Item = (&'a Activity, Option<&'a Customer>)>,
    ) -> Result<Option<InsertStatement>> {
        let mut rows = Vec::new();
        for (activity, customer) in activities {
            rows.extend(self.notification_to_queue(activity, customer)?);
        }
        Ok((!rows.is_empty()).then(|| {
            notifications::Entity::insert_many(rows)
                .on_conflict(queue_conflict())
                .into_query()
        }))
    }

    /// The insert queuing the notification of a new `activity` in the form a guarded write takes
    /// (`change_log::append_guarded`): made only while the write's guard holds.
    pub(super) fn guarded_notification_insert(
        &self,
        activity: &Activity,
        customer: &Customer,
    ) -> Result<Option<InsertStatement>> {
        let Some(row) = self.notification_to_queue(activity, Some(customer))? else {
            return Ok(None);
        };
        let mut insert = change_log::insert_from(row)?;
        insert.on_conflict(queue_conflict());
        Ok(Some(insert))
    }

    /// The notification row of a new `activity` (see [`notification_row`]), for an insert the caller makes; the
    /// sender is told one is coming, and woken when the write commits.
    pub(super) fn notification_to_queue(
        &self,
        activity: &Activity,
        customer: Option<&Customer>,
    ) -> Result<Option<notifications::ActiveModel>> {
        let row = notification_row(activity, customer)?;
        if row.is_some() {
            self.outbox.queued();
        }
        Ok(row)
    }

    /// Queues the notification of an activity that an update linked to its first customer (an unknown caller
    /// identified later); an update of an activity that already had a customer queues nothing.
    pub(super) async fn queue_on_link(
        &self,
        db: &impl ConnectionTrait,
        before: &Activity,
        after: &Activity,
        linked: Option<&Customer>,
    ) -> Result<()> {
        if before.data.customer_id.is_some() {
            return Ok(());
        }
        self.queue_notification(db, after, linked).await
    }

    /// Inside the transaction that deletes activity `activity_id`: its notification, if not sent yet, is never
    /// sent (FAILED with [`ACTIVITY_DELETED`]). One already sent stays as it was.
    pub(super) async fn cancel_notification(
        &self,
        db: &impl ConnectionTrait,
        activity_id: &str,
    ) -> Result<()> {
        notifications::Entity::update_many()
            .col_expr(
                notifications::Column::Status,
                Expr::value(NotificationStatus::Failed.as_str()),
            )
            .col_expr(
                notifications::Column::LastError,
                Expr::value(ACTIVITY_DELETED),
            )
            .col_expr(
                notifications::Column::LeaseUntil,
                Expr::value(Option::<i64>::None),
            )
            .filter(notifications::Column::ActivityId.eq(activity_id))
            .filter(notifications::Column::Status.eq(NotificationStatus::Pending.as_str()))
            .exec(db)
            .await?;
        Ok(())
    }

    /// Notified when this process commits a transaction that queued a notification.
    pub fn notification_queued(&self) -> Arc<Notify> {
        self.outbox.wake.clone()
    }

    /// Notifications, newest first, optionally of one customer (who must exist) and in one status.
    pub async fn list_notifications(
        &self,
        customer_id: Option<&str>,
        status: Option<NotificationStatus>,
        cursor: Option<&Cursor>,
        limit: u64,
    ) -> Result<Vec<Notification>> {
        let mut query = notifications::Entity::find();
        if let Some(customer_id) = customer_id {
            customers::find(&self.reader(), customer_id).await?;
            query = query.filter(notifications::Column::CustomerId.eq(customer_id));
        }
        if let Some(status) = status {
            query = query.filter(notifications::Column::Status.eq(status.as_str()));
        }
        let query = super::activities::newest_first(
            query,
            notifications::Column::CreateTime,
            notifications::Column::Id,
            cursor,
        );
        super::fetch(&self.reader(), query, limit, to_domain).await
    }

    /// Claims up to `limit` due notifications for one sender until `now + lease`, oldest due first. A row
    /// another sender claimed meanwhile is skipped: the claim re-checks, row by row, that it is still
    /// claimable.
    pub async fn claim_notifications(
        &self,
        lease: Duration,
        limit: u64,
    ) -> Result<Vec<Notification>> {
        self.write_unlogged("claim_notifications", move |txn| {
            Box::pin(async move {
                let now = now_micros();
                let due = notifications::Entity::find()
                    .filter(claimable(now))
                    .order_by_asc(notifications::Column::NextAttemptTime)
                    .order_by_asc(notifications::Column::Id)
                    .limit(limit)
                    .all(txn)
                    .await?;
                let lease_until = now.saturating_add(micros(lease));
                let mut claimed = Vec::with_capacity(due.len());
                for row in due {
                    let updated = notifications::Entity::update_many()
                        .col_expr(notifications::Column::LeaseUntil, Expr::value(lease_until))
                        .filter(notifications::Column::Id.eq(row.id.as_str()))
                        .filter(claimable(now))
                        .exec(txn)
                        .await?;
                    if updated.rows_affected == 1 {
                        claimed.push(to_domain(row)?);
                    }
                }
                Ok(claimed)
            })
        })
        .await
    }

    /// The mail server accepted notification `id`: SENT, whatever happened to it meanwhile (the message is out).
    pub async fn mark_notification_sent(&self, id: &str, attempts: i32) -> Result<()> {
        let update = notifications::Entity::update_many()
            .col_expr(
                notifications::Column::Status,
                Expr::value(NotificationStatus::Sent.as_str()),
            )
            .col_expr(notifications::Column::Attempts, Expr::value(attempts))
            .col_expr(notifications::Column::SendTime, Expr::value(now_micros()))
            .col_expr(
                notifications::Column::LeaseUntil,
                Expr::value(Option::<i64>::None),
            )
            .filter(notifications::Column::Id.eq(id));
        self.execute_write("mark_notification_sent", &update)
            .await?;
        self.metrics.notification_sent();
        Ok(())
    }

    /// Delivery attempt number `attempts` of notification `id` failed with `error`: tried again at `retry_at`,
    /// or FAILED for good when None. A notification cancelled meanwhile stays cancelled.
    pub async fn mark_notification_failed(
        &self,
        id: &str,
        attempts: i32,
        error: &str,
        retry_at: Option<Micros>,
    ) -> Result<()> {
        let mut update = notifications::Entity::update_many()
            .col_expr(notifications::Column::Attempts, Expr::value(attempts))
            .col_expr(notifications::Column::LastError, Expr::value(error))
            .col_expr(
                notifications::Column::LeaseUntil,
                Expr::value(Option::<i64>::None),
            );
        update = match retry_at {
            Some(at) => update.col_expr(notifications::Column::NextAttemptTime, Expr::value(at)),
            None => update.col_expr(
                notifications::Column::Status,
                Expr::value(NotificationStatus::Failed.as_str()),
            ),
        };
        let update = update
            .filter(notifications::Column::Id.eq(id))
            .filter(notifications::Column::Status.eq(NotificationStatus::Pending.as_str()));
        let updated = self
            .execute_write("mark_notification_failed", &update)
            .await?;
        if retry_at.is_none() && updated > 0 {
            self.metrics.notification_failed();
        }
        Ok(())
    }

    /// Gives claimed notifications back unsent (the sender stops), so any sender may take them at once.
    pub async fn release_notifications(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let update = notifications::Entity::update_many()
            .col_expr(
                notifications::Column::LeaseUntil,
                Expr::value(Option::<i64>::None),
            )
            .filter(notifications::Column::Id.is_in(ids.iter().map(String::as_str)))
            .filter(notifications::Column::Status.eq(NotificationStatus::Pending.as_str()));
        self.execute_write("release_notifications", &update).await?;
        Ok(())
    }

    /// How many notifications wait to be sent, and when the oldest of them was queued (for the metrics).
    pub async fn pending_notifications(&self) -> Result<(u64, Option<Micros>)> {
        let pending = || {
            notifications::Entity::find()
                .filter(notifications::Column::Status.eq(NotificationStatus::Pending.as_str()))
        };
        let count = sea_orm::PaginatorTrait::count(pending(), &self.reader()).await?;
        let oldest = pending()
            .select_only()
            .column(notifications::Column::CreateTime)
            .order_by_asc(notifications::Column::CreateTime)
            .limit(1)
            .into_tuple::<i64>()
            .one(&self.reader())
            .await?;
        Ok((count, oldest))
    }

    /// When the next pending, unleased notification falls due (None when there is none), so the sender can
    /// sleep until then.
    pub async fn next_notification_due(&self) -> Result<Option<Micros>> {
        let now = now_micros();
        let next = notifications::Entity::find()
            .select_only()
            .column(notifications::Column::NextAttemptTime)
            .filter(notifications::Column::Status.eq(NotificationStatus::Pending.as_str()))
            .filter(
                Condition::any()
                    .add(notifications::Column::LeaseUntil.is_null())
                    .add(notifications::Column::LeaseUntil.lte(now)),
            )
            .order_by_asc(notifications::Column::NextAttemptTime)
            .limit(1)
            .into_tuple::<i64>()
            .one(&self.reader())
            .await?;
        Ok(next)
    }
}
