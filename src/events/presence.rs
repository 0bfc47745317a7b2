//! Presence and screen-pops across replicas (PostgreSQL only; a single SQLite node has all its sessions in its
//! hub).
//!
//! Three small loops per replica for presence: publish the local participants of records whose presence changed
//! here; merge the participants other replicas announce for records watched here; and keep this replica's rows
//! alive while sweeping out the rows of replicas that died (they stop refreshing and expire within
//! [`PRESENCE_TTL`]). Two more relay screen-pops: an interaction routed here is announced on a notification
//! channel, and one announced by another replica goes to the sessions of its agent here. A screen-pop is a
//! moment, not state: one announced while a replica's listener reconnects is not replayed (the agent still has
//! the interaction in the Recent list and the journey).

use std::{sync::Arc, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use prost::Message as _;
use sea_orm::DbBackend;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    Hub,
    hub::{Participant, ResourceKey},
};
use crate::{
    domain::time::now_micros,
    pb,
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
    let mut tasks = vec![
        tokio::spawn(publish(store.clone(), hub.clone(), replica.clone())),
        tokio::spawn(follow(store.clone(), hub.clone(), replica.clone())),
        tokio::spawn(heartbeat(store.clone(), replica.clone())),
        tokio::spawn(follow_routes(store.clone(), hub.clone(), replica.clone())),
    ];
    if let Some(routes) = hub.relay_routes() {
        tasks.push(tokio::spawn(announce_routes(
            store.clone(),
            routes,
            replica.clone(),
        )));
    }
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
                    store.metrics().listener_reconnected("presence");
                    // Reconnecting: whatever was announced meanwhile is read back for every watched record.
                    for key in hub.watched() {
                        refresh_remote(&store, &hub, &replica, &key).await;
                    }
                }
                Err(error) => {
                    store.metrics().listener_reconnected("presence");
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

/// A screen-pop as announced to other replicas: `replica|agent|base64 of the message`.
fn routed_payload(replica: &str, agent: &str, routed: &pb::InteractionRouted) -> String {
    format!(
        "{replica}|{agent}|{}",
        BASE64.encode(routed.encode_to_vec())
    )
}

/// The agent and screen-pop of an announcement from another replica than `replica`.
fn parse_routed(payload: &str, replica: &str) -> Option<(String, pb::InteractionRouted)> {
    // The agent is the only part that may itself contain a `|`.
    let (head, encoded) = payload.rsplit_once('|')?;
    let (from, agent) = head.split_once('|')?;
    let routed = pb::InteractionRouted::decode(BASE64.decode(encoded).ok()?.as_slice()).ok()?;
    (from != replica).then(|| (agent.to_owned(), routed))
}

async fn announce_routes(
    store: Store,
    mut routes: mpsc::Receiver<(String, Arc<pb::InteractionRouted>)>,
    replica: String,
) {
    while let Some((agent, routed)) = routes.recv().await {
        let payload = routed_payload(&replica, &agent, &routed);
        if let Err(error) = store.announce_routed(payload).await {
            tracing::warn!(%error, agent, "cannot relay a screen-pop to other replicas");
        }
    }
}

async fn follow_routes(store: Store, hub: Arc<Hub>, replica: String) {
    loop {
        let mut listener = match store.routed_listener().await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for screen-pops of other replicas; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Some((agent, routed)) = parse_routed(notification.payload(), &replica) {
                        hub.route_here(&agent, Arc::new(routed));
                    }
                }
                // The connection dropped; the next receive reconnects. A screen-pop is a moment's news: what
                // was announced meanwhile is not read back.
                Ok(None) => store.metrics().listener_reconnected("routed"),
                Err(error) => {
                    store.metrics().listener_reconnected("routed");
                    tracing::warn!(%error, "screen-pop listener failed; reconnecting");
                    tokio::time::sleep(RETRY_DELAY).await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_screen_pop_crosses_replicas_whole_and_is_not_taken_back_by_its_sender() {
        let routed = pb::InteractionRouted {
            interaction_id: "call|1".to_owned(),
            channel: pb::Channel::Voice as i32,
            candidates: vec![pb::ResourceRef {
                r#type: pb::ResourceType::Customer as i32,
                id: "c".to_owned(),
                known_version: 3,
            }],
            ..Default::default()
        };
        let payload = routed_payload("replica-a", "ana|desk 2", &routed);
        assert_eq!(
            parse_routed(&payload, "replica-b"),
            Some(("ana|desk 2".to_owned(), routed))
        );
        assert_eq!(parse_routed(&payload, "replica-a"), None);
        assert_eq!(parse_routed("replica-a|ana|not base64!", "replica-b"), None);
        assert_eq!(parse_routed("garbage", "replica-b"), None);
    }
}
