//! Presence across replicas (PostgreSQL only; a single SQLite node has all its participants in its hub).
//!
//! Three small loops per replica: publish the local participants of records whose presence changed here; merge
//! the participants other replicas announce for records watched here; and keep this replica's rows alive while
//! sweeping out the rows of replicas that died (they stop refreshing and expire within [`PRESENCE_TTL`]).

use std::{sync::Arc, time::Duration};

use sea_orm::DbBackend;
use tokio::task::JoinHandle;

use super::{
    Hub,
    hub::{Participant, ResourceKey},
};
use crate::{
    domain::time::now_micros,
    store::{Store, presence::parse_notification},
};

/// How long a replica's presence rows outlive its last heartbeat.
pub const PRESENCE_TTL: Duration = Duration::from_secs(20);
/// How often a replica refreshes its rows and sweeps expired ones.
const HEARTBEAT: Duration = Duration::from_secs(5);
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// The running presence sync; stops when dropped.
#[derive(Debug)]
pub struct PresenceSync {
    store: Store,
    replica: String,
    tasks: Vec<JoinHandle<()>>,
}

impl PresenceSync {
    /// Stops syncing and removes this replica's participants everywhere (graceful shutdown).
    pub async fn withdraw(&self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Err(error) = self.store.withdraw_presence(&self.replica).await {
            tracing::warn!(%error, "cannot withdraw presence; it expires by itself");
        }
    }
}

impl Drop for PresenceSync {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts sharing presence with other replicas; None on SQLite.
pub fn spawn(store: Store, hub: Arc<Hub>, replica: String) -> Option<PresenceSync> {
    if store.backend() != DbBackend::Postgres {
        return None;
    }
    let tasks = vec![
        tokio::spawn(publish(store.clone(), hub.clone(), replica.clone())),
        tokio::spawn(follow(store.clone(), hub.clone(), replica.clone())),
        tokio::spawn(heartbeat(store.clone(), replica.clone())),
    ];
    Some(PresenceSync {
        store,
        replica,
        tasks,
    })
}

fn expiry() -> i64 {
    now_micros() + PRESENCE_TTL.as_micros() as i64
}

fn to_rows(participants: &[Participant]) -> Vec<(String, bool)> {
    participants
        .iter()
        .map(|p| (p.agent.clone(), p.editing))
        .collect()
}

/// Reads what other replicas say about `key` and hands it to the hub.
async fn refresh_remote(store: &Store, hub: &Hub, replica: &str, key: &ResourceKey) {
    match store
        .remote_presence(replica, key.kind, &key.id, now_micros())
        .await
    {
        Ok(rows) => hub.set_remote_presence(
            key,
            rows.into_iter()
                .map(|(agent, editing)| Participant { agent, editing })
                .collect(),
        ),
        Err(error) => {
            tracing::warn!(%error, id = %key.id, "cannot read presence of other replicas")
        }
    }
}

async fn publish(store: Store, hub: Arc<Hub>, replica: String) {
    loop {
        hub.presence_changed().await;
        for (key, local, watched) in hub.take_changed_presence() {
            let rows = to_rows(&local);
            if let Err(error) = store
                .publish_presence(&replica, key.kind, &key.id, &rows, expiry())
                .await
            {
                tracing::warn!(%error, id = %key.id, "cannot share presence with other replicas");
            }
            if watched {
                refresh_remote(&store, &hub, &replica, &key).await;
            }
        }
    }
}

async fn follow(store: Store, hub: Arc<Hub>, replica: String) {
    loop {
        let mut listener = match store.presence_listener().await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for presence of other replicas; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    let Some((from, kind, id)) = parse_notification(notification.payload()) else {
                        continue;
                    };
                    if from != replica {
                        let key = ResourceKey {
                            kind,
                            id: id.to_owned(),
                        };
                        refresh_remote(&store, &hub, &replica, &key).await;
                    }
                }
                Ok(None) => {
                    // Reconnecting: whatever was announced meanwhile is read back for every watched record.
                    for key in hub.watched() {
                        refresh_remote(&store, &hub, &replica, &key).await;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "presence listener failed; reconnecting");
                    tokio::time::sleep(RETRY_DELAY).await;
                    break;
                }
            }
        }
    }
}

async fn heartbeat(store: Store, replica: String) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if let Err(error) = store.refresh_presence(&replica, expiry()).await {
            tracing::warn!(%error, "cannot refresh presence");
        }
        if let Err(error) = store.expire_presence(now_micros()).await {
            tracing::warn!(%error, "cannot sweep presence of stopped replicas");
        }
    }
}
