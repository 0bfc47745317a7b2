//! Follows the change log and hands every committed change, in log order, to the hub.
//!
//! The log is the single source of events: a change reaches watchers only once it is committed, and a watcher
//! that resumes reads the same rows. The feed wakes on every local commit and also polls, so changes written by
//! another process on the same database (an admin command, another replica) are delivered too.

use std::{sync::Arc, time::Duration};

use tokio::task::JoinHandle;

use super::Hub;
use crate::store::{Store, change_log::MAX_CHANGES_PER_READ};

/// How often the feed looks for changes it was not woken for.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Starts following the log after the hub's last position. The task runs until aborted.
pub fn spawn(store: Store, hub: Arc<Hub>) -> JoinHandle<()> {
    let appended = store.log_appended();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = appended.notified() => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
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
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the change log; watchers wait until it is back");
                        tokio::time::sleep(POLL_INTERVAL).await;
                        break;
                    }
                }
            }
        }
    })
}
