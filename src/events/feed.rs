//! Follows the change log and hands every committed change, in log order, to the hub.
//!
//! The log is the single source of events: a change reaches watchers only once it is committed, and a watcher
//! that resumes reads the same rows. The feed wakes on every local commit, on every PostgreSQL notification from
//! any replica, and on a short poll, and each time reads everything past the last position it dispatched (at most
//! every 10 ms, so a burst of commits is one read). A lost notification (a listener connection killed, a network
//! blip) therefore delays an event by at most one poll and never loses or repeats it. On PostgreSQL a change is
//! read once the sequencer gave it its position (see `store::change_log::sequence`); the poll runs a pass too,
//! for changes whose writer stopped before it ran its own.

use std::{sync::Arc, time::Duration};

use tokio::{sync::Notify, task::JoinHandle, time::Instant};

use super::Hub;
use crate::store::{Store, change_log::MAX_CHANGES_PER_READ};

/// How often the feed looks for changes it was not woken for.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Least time between two reads of the log. Under a steady stream of commits (the group commit of `OpenContext`
/// commits every few milliseconds) one read takes every commit of the interval instead of one read per commit,
/// each on a connection whose cache the commit just emptied; an idle feed still reads at once.
const MIN_READ_INTERVAL: Duration = Duration::from_millis(10);
/// Pause before reconnecting a failed listener.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// The running feed; stops when dropped or aborted.
#[derive(Debug)]
pub struct Feed {
    tasks: Vec<JoinHandle<()>>,
}

impl Feed {
    pub fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Starts following the log after the hub's last position.
pub fn spawn(store: Store, hub: Arc<Hub>) -> Feed {
    let wake = store.log_appended();
    let listener = tokio::spawn(follow_notifications(store.clone(), wake.clone()));
    let reader = tokio::spawn(async move {
        let mut last_read = Instant::now();
        loop {
            let polled = tokio::select! {
                () = wake.notified() => false,
                () = tokio::time::sleep(POLL_INTERVAL) => true,
            };
            // Commits that land meanwhile are read with this one.
            tokio::time::sleep_until(last_read + MIN_READ_INTERVAL).await;
            last_read = Instant::now();
            if polled {
                // On PostgreSQL a writer starts a sequencing pass after its commit, and the pass announces the
                // changes; one that stopped between its commit and that pass left its changes to this.
                store.sequence_committed().await;
            }
            dispatch_new_changes(&store, &hub).await;
        }
    });
    Feed {
        tasks: vec![listener, reader],
    }
}

/// Reads and dispatches everything past the hub's last position. A read that completes tells those waiting
/// for the hub to catch up (see [`Hub::next_read`]); one that fails leaves them to the next.
async fn dispatch_new_changes(store: &Store, hub: &Hub) {
    let read = hub.begin_read();
    loop {
        match store
            .changes_after(hub.last_seq(), MAX_CHANGES_PER_READ)
            .await
        {
            Ok(changes) => {
                let full = changes.len() as u64 == MAX_CHANGES_PER_READ;
                for change in changes {
                    hub.dispatch(Arc::new(change));
                }
                if !full {
                    hub.end_read(read);
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the change log; watchers wait until it is back");
                tokio::time::sleep(POLL_INTERVAL).await;
                return;
            }
        }
    }
}

/// On PostgreSQL, wakes the feed for every change appended by any replica. Returns at once on SQLite.
async fn follow_notifications(store: Store, wake: Arc<Notify>) {
    loop {
        let mut listener = match store.change_listener().await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for changes of other replicas; retrying");
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => wake.notify_one(),
                Ok(None) => {
                    store.metrics().listener_reconnected("changes");
                    // The connection dropped; the next receive reconnects and listens again. Catch up from the
                    // log for whatever was announced meanwhile.
                    tracing::warn!(
                        "change listener connection lost; reconnecting and catching up from the log"
                    );
                    wake.notify_one();
                }
                Err(error) => {
                    store.metrics().listener_reconnected("changes");
                    tracing::warn!(%error, "change listener failed; reconnecting");
                    wake.notify_one();
                    tokio::time::sleep(RECONNECT_DELAY).await;
                    break;
                }
            }
        }
    }
}
