//! The notification sender: a background task that delivers the outbox (see `store::outbox`) over SMTP.
//!
//! Each round it claims a few due notifications (a lease in the database, so several replicas share the work
//! without sending anything twice), sends them one by one and records each outcome at once: SENT as soon as the
//! server accepted the message, else a retry at an exponentially growing, jittered delay, or FAILED after the
//! last attempt or on a permanent refusal (5xx). It wakes at once when this process queues a notification, when
//! the next retry falls due, and every few seconds for what other replicas queued.
//!
//! On shutdown it finishes the message in flight, records it, gives the rest of its claim back and stops.

mod mail;

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{
    config::NotificationSettings,
    domain::{
        notification::{self, Notification},
        time::now_micros,
    },
    shutdown::Shutdown,
    store::Store,
};
pub use mail::{Mailer, SEND_TIMEOUT};

/// Notifications claimed per round.
const BATCH: u64 = 8;
/// How long a claim is held: long enough to send a whole batch, each within [`SEND_TIMEOUT`].
const LEASE: Duration = Duration::from_secs(5 * 60);
/// How often the outbox is looked at without a wake-up (rows queued by other replicas, expired leases).
const POLL: Duration = Duration::from_secs(2);
/// Pause when due notifications were all claimed by another replica first.
const CONTENDED: Duration = Duration::from_millis(200);
/// Pause after the database failed, before trying again.
const DATABASE_RETRY: Duration = Duration::from_secs(1);
/// Attempts to record an outcome before giving up (the lease then expires and the row is tried again).
const RECORD_ATTEMPTS: u32 = 5;

/// The running sender.
#[derive(Debug)]
pub struct Sender {
    task: JoinHandle<()>,
}

impl Sender {
    /// Starts sending when `settings` name an SMTP server; None (and one log line saying so) otherwise. Fails
    /// on an unusable URL or sender address. The task stops when `shutdown` fires.
    pub fn spawn(
        store: Store,
        settings: &NotificationSettings,
        shutdown: Shutdown,
    ) -> anyhow::Result<Option<Sender>> {
        let Some(url) = settings.smtp_url.as_deref() else {
            tracing::info!(
                "no --smtp-url: customer notifications are queued (see ListNotifications) but not sent"
            );
            return Ok(None);
        };
        let from = settings
            .smtp_from
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--smtp-url needs --smtp-from"))?;
        let mailer = Mailer::new(url, from)?;
        tracing::info!(server = mailer.server(), "sending customer notifications");
        let worker = Worker {
            store,
            mailer,
            shutdown,
            max_attempts: i32::try_from(settings.notification_max_attempts).unwrap_or(i32::MAX),
            retry_delay: settings.notification_retry_delay,
        };
        Ok(Some(Sender {
            task: tokio::spawn(worker.run()),
        }))
    }

    /// Waits until the sender stopped after shutdown began: the message in flight is finished and recorded.
    /// Gives up after `limit`, abandoning the send (its lease expires and it is tried again).
    pub async fn stopped(mut self, limit: Duration) {
        if tokio::time::timeout(limit, &mut self.task).await.is_err() {
            tracing::warn!(
                ?limit,
                "the notification sender did not stop in time; an unfinished delivery is retried later"
            );
            self.task.abort();
        }
    }
}

struct Worker {
    store: Store,
    mailer: Mailer,
    shutdown: Shutdown,
    max_attempts: i32,
    retry_delay: Duration,
}

impl Worker {
    async fn run(self) {
        let queued = self.store.notification_queued();
        while !self.shutdown.has_begun() {
            // Looking is a read; only a due notification costs a write (the claim), so an idle outbox does not
            // compete with the service's writes.
            let wait = match self.store.next_notification_due().await {
                Ok(Some(due)) if due > now_micros() => {
                    let micros = due.saturating_sub(now_micros()).max(0);
                    Duration::from_micros(micros.unsigned_abs()).min(POLL)
                }
                Ok(Some(_)) => match self.round().await {
                    Ok(0) => CONTENDED,
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "cannot claim notifications from the outbox; retrying");
                        DATABASE_RETRY
                    }
                },
                Ok(None) => POLL,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the notification outbox; retrying");
                    DATABASE_RETRY
                }
            };
            tokio::select! {
                () = self.shutdown.begun() => break,
                () = queued.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::debug!("notification sender stopped");
    }

    /// Claims due notifications and delivers them one by one; once shutdown begins, gives the ones not yet
    /// tried back. Returns how many were claimed.
    async fn round(&self) -> crate::error::Result<usize> {
        let claimed = self.store.claim_notifications(LEASE, BATCH).await?;
        let count = claimed.len();
        let mut rest = claimed.into_iter();
        for notification in rest.by_ref() {
            self.deliver(&notification).await;
            if self.shutdown.has_begun() {
                break;
            }
        }
        let unsent: Vec<String> = rest.map(|n| n.id).collect();
        if let Err(error) = self.store.release_notifications(&unsent).await {
            tracing::warn!(
                %error,
                count = unsent.len(),
                "cannot give back claimed notifications; they are tried again when their claim expires"
            );
        }
        Ok(count)
    }

    /// One delivery attempt and its outcome, recorded.
    async fn deliver(&self, n: &Notification) {
        let attempt = n.attempts.saturating_add(1);
        match self.mailer.send(n).await {
            Ok(()) => {
                tracing::info!(
                    notification = %n.id,
                    activity = %n.activity_id,
                    attempt,
                    "notification sent"
                );
                self.record(n, || self.store.mark_notification_sent(&n.id, attempt))
                    .await;
            }
            Err(failure) if failure.permanent || attempt >= self.max_attempts => {
                tracing::error!(
                    notification = %n.id,
                    activity = %n.activity_id,
                    attempt,
                    error = %failure.message,
                    permanent = failure.permanent,
                    "notification failed; giving up"
                );
                self.record(n, || {
                    self.store
                        .mark_notification_failed(&n.id, attempt, &failure.message, None)
                })
                .await;
            }
            Err(failure) => {
                let delay = notification::retry_delay(
                    self.retry_delay,
                    attempt.unsigned_abs(),
                    rand::random::<f64>(),
                );
                let retry_at = now_micros()
                    .saturating_add(i64::try_from(delay.as_micros()).unwrap_or(i64::MAX));
                tracing::warn!(
                    notification = %n.id,
                    activity = %n.activity_id,
                    attempt,
                    error = %failure.message,
                    retry_in = ?delay,
                    "notification not delivered; will retry"
                );
                self.record(n, || {
                    self.store.mark_notification_failed(
                        &n.id,
                        attempt,
                        &failure.message,
                        Some(retry_at),
                    )
                })
                .await;
            }
        }
    }

    /// Records an outcome, retrying while the database is unavailable: a sent message that stays unrecorded
    /// would be sent again when its lease expires.
    async fn record<F, Fut>(&self, n: &Notification, write: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = crate::error::Result<()>>,
    {
        let mut delay = DATABASE_RETRY;
        for tried in 1..=RECORD_ATTEMPTS {
            match write().await {
                Ok(()) => return,
                Err(error) if tried < RECORD_ATTEMPTS => {
                    tracing::warn!(notification = %n.id, %error, "cannot record the delivery outcome; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(error) => {
                    tracing::error!(
                        notification = %n.id,
                        %error,
                        "cannot record the delivery outcome; the notification is tried again when its claim \
                         expires (the receiver sees the same Message-ID)"
                    );
                }
            }
        }
    }
}
