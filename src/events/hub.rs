//! The in-process fan-out of committed changes and presence to open watch streams.
//!
//! Each stream is a session with a bounded inbox. The hub never waits on a session: when an inbox is full the
//! event is dropped and the session is marked lagged, so it tells its client to resync. A slow or stalled
//! watcher therefore costs a bounded amount of memory and never slows writers or other watchers.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use tokio::sync::{Notify, mpsc, watch};

use crate::domain::{
    change::{Change, ResourceKind},
    principal::Audience,
};

/// Events a session's inbox holds before it counts as lagging.
pub const INBOX_CAPACITY: usize = 1_024;
/// Most records one stream may watch.
pub const MAX_SUBSCRIPTIONS: usize = 1_000;

pub type SessionId = u64;

/// One watched record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceKey {
    pub kind: ResourceKind,
    pub id: String,
}

/// Someone viewing a record; `editing` when they said they are changing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    pub agent: String,
    pub editing: bool,
}

/// Most participants one presence message lists (editors first); `total` counts everyone.
pub const MAX_LISTED_PARTICIPANTS: usize = 100;

/// What a session receives.
#[derive(Clone, Debug)]
pub enum Delivery {
    Change(Arc<Change>),
    /// Presence of some watched records changed: read them with [`Hub::take_presence`].
    PresenceWake,
    /// The participants of one record, as of when the session read them.
    Presence {
        resource: ResourceKey,
        participants: Vec<Participant>,
        total: usize,
    },
}

/// A session's end of the hub.
pub struct SessionHandle {
    pub id: SessionId,
    pub inbox: mpsc::Receiver<Delivery>,
    /// Set when the hub dropped an event for this session.
    pub lagged: Arc<AtomicBool>,
}

struct Session {
    agent: String,
    /// What the session may see: a customer portal gets only its own non-internal changes, and no presence.
    audience: Audience,
    include_own: bool,
    inbox: mpsc::Sender<Delivery>,
    lagged: Arc<AtomicBool>,
    subscriptions: HashSet<ResourceKey>,
    editing: HashSet<ResourceKey>,
    /// Watched records whose presence changed since the session last read it. Presence is state, not a
    /// stream of events: a session that reads late gets only the latest participants, once per record.
    presence_dirty: HashSet<ResourceKey>,
}

impl Session {
    /// Queues `delivery` without waiting; a full inbox marks the session lagged.
    fn offer(&self, delivery: Delivery) {
        if self.lagged.load(Ordering::Relaxed) {
            return;
        }
        if self.inbox.try_send(delivery).is_err() {
            self.lagged.store(true, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<SessionId, Session>,
    watchers: HashMap<ResourceKey, HashSet<SessionId>>,
    /// Position of the last change dispatched.
    last_seq: i64,
    /// Participants on other replicas, for records watched here.
    remote: HashMap<ResourceKey, Vec<Participant>>,
    /// Records whose local participants changed since the presence sync last published them.
    dirty: HashSet<ResourceKey>,
    /// The participants of records as last computed (listed, total), until they change again.
    snapshots: HashMap<ResourceKey, (Vec<Participant>, usize)>,
}

/// Subscribing would pass [`MAX_SUBSCRIPTIONS`].
#[derive(Debug, PartialEq, Eq)]
pub struct TooManySubscriptions;

pub struct Hub {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    /// Woken when a record's local participants change.
    presence_changed: Notify,
    /// The position of the last change dispatched, for those waiting for the hub to catch up.
    dispatched: watch::Sender<i64>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub whose first dispatched change follows position `last_seq`.
    pub fn new(last_seq: i64) -> Self {
        Hub {
            inner: Mutex::new(Inner {
                last_seq,
                ..Inner::default()
            }),
            next_id: AtomicU64::new(0),
            presence_changed: Notify::new(),
            dispatched: watch::channel(last_seq).0,
        }
    }

    /// Completes once every change up to position `seq` has been dispatched.
    pub async fn dispatched(&self, seq: i64) {
        let mut position = self.dispatched.subscribe();
        let _ = position.wait_for(|dispatched| *dispatched >= seq).await;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way worse than a lost event,
        // so keep serving rather than poisoning every stream.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a session for `agent`, showing it what `audience` may see.
    pub fn open(&self, agent: &str, audience: Audience) -> SessionHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
        let lagged = Arc::new(AtomicBool::new(false));
        self.lock().sessions.insert(
            id,
            Session {
                agent: agent.to_owned(),
                audience,
                include_own: false,
                inbox: tx,
                lagged: lagged.clone(),
                subscriptions: HashSet::new(),
                editing: HashSet::new(),
                presence_dirty: HashSet::new(),
            },
        );
        SessionHandle {
            id,
            inbox: rx,
            lagged,
        }
    }

    /// Closes a session: its agent leaves the presence of everything it watched.
    pub fn close(&self, id: SessionId) {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.remove(&id) else {
            return;
        };
        for key in session.subscriptions {
            if let Some(watchers) = inner.watchers.get_mut(&key) {
                watchers.remove(&id);
                if watchers.is_empty() {
                    inner.watchers.remove(&key);
                    inner.remote.remove(&key);
                }
            }
            self.local_presence_changed(&mut inner, &key);
        }
    }

    /// Adds subscriptions. Changes dispatched after the returned position reach the session live; everything
    /// up to it is the caller's to replay. Every watcher of a newly watched record, the session included, gets
    /// the record's participants.
    pub fn subscribe(
        &self,
        id: SessionId,
        keys: &[ResourceKey],
        include_own: bool,
    ) -> Result<i64, TooManySubscriptions> {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(&id) else {
            return Ok(0);
        };
        let new: Vec<ResourceKey> = keys
            .iter()
            .filter(|k| !session.subscriptions.contains(*k))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if session.subscriptions.len() + new.len() > MAX_SUBSCRIPTIONS {
            return Err(TooManySubscriptions);
        }
        session.include_own = include_own;
        session.subscriptions.extend(new.iter().cloned());
        for key in &new {
            inner.watchers.entry(key.clone()).or_default().insert(id);
        }
        for key in &new {
            self.local_presence_changed(&mut inner, key);
        }
        Ok(inner.last_seq)
    }

    pub fn unsubscribe(&self, id: SessionId, keys: &[ResourceKey]) {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(&id) else {
            return;
        };
        let removed: Vec<ResourceKey> = keys
            .iter()
            .filter(|k| session.subscriptions.remove(*k))
            .cloned()
            .collect();
        for key in &removed {
            session.editing.remove(key);
        }
        for key in &removed {
            if let Some(watchers) = inner.watchers.get_mut(key) {
                watchers.remove(&id);
                if watchers.is_empty() {
                    inner.watchers.remove(key);
                    inner.remote.remove(key);
                }
            }
            self.local_presence_changed(&mut inner, key);
        }
    }

    /// Marks the session's agent as editing (or not) a record it watches. Returns false if it does not watch it.
    pub fn set_editing(&self, id: SessionId, key: &ResourceKey, editing: bool) -> bool {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(&id) else {
            return false;
        };
        if !session.subscriptions.contains(key) {
            return false;
        }
        let changed = if editing {
            session.editing.insert(key.clone())
        } else {
            session.editing.remove(key)
        };
        if changed {
            self.local_presence_changed(&mut inner, key);
        }
        true
    }

    /// Delivers a committed change to every session watching the record or its customer, once each. Changes
    /// must come in log order.
    pub fn dispatch(&self, change: Arc<Change>) {
        let mut inner = self.lock();
        if change.seq <= inner.last_seq {
            return;
        }
        inner.last_seq = change.seq;
        self.dispatched.send_replace(change.seq);
        let own = ResourceKey {
            kind: change.resource,
            id: change.resource_id.clone(),
        };
        let parent = change.parent_id.as_ref().map(|id| ResourceKey {
            kind: ResourceKind::Customer,
            id: id.clone(),
        });
        let mut reached: HashSet<SessionId> = HashSet::new();
        for key in std::iter::once(&own).chain(parent.as_ref()) {
            let Some(watchers) = inner.watchers.get(key) else {
                continue;
            };
            for session_id in watchers {
                if !reached.insert(*session_id) {
                    continue;
                }
                if let Some(session) = inner.sessions.get(session_id)
                    && (session.include_own || session.agent != change.agent)
                    && session.audience.may_see(&change)
                {
                    session.offer(Delivery::Change(change.clone()));
                }
            }
        }
    }

    /// Announces a local presence change here and queues it for the other replicas.
    fn local_presence_changed(&self, inner: &mut Inner, key: &ResourceKey) {
        announce_presence(inner, key);
        inner.dirty.insert(key.clone());
        self.presence_changed.notify_one();
    }

    /// Waits until some record's local participants changed.
    pub async fn presence_changed(&self) {
        self.presence_changed.notified().await;
    }

    /// The records whose local participants changed since the last call, each with its local participants and
    /// whether anyone here still watches it.
    pub fn take_changed_presence(&self) -> Vec<(ResourceKey, Vec<Participant>, bool)> {
        let mut inner = self.lock();
        let dirty: Vec<ResourceKey> = inner.dirty.drain().collect();
        dirty
            .into_iter()
            .map(|key| {
                let local = local_participants(&inner, &key);
                let watched = inner.watchers.contains_key(&key);
                (key, local, watched)
            })
            .collect()
    }

    /// The current participants of every record whose presence changed since the session last asked.
    pub fn take_presence(&self, id: SessionId) -> Vec<Delivery> {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(&id) else {
            return Vec::new();
        };
        let dirty: Vec<ResourceKey> = session.presence_dirty.drain().collect();
        let mut out = Vec::with_capacity(dirty.len());
        for key in dirty {
            if !inner.watchers.get(&key).is_some_and(|w| w.contains(&id)) {
                continue;
            }
            let (participants, total) = snapshot(&mut inner, &key);
            out.push(Delivery::Presence {
                resource: key,
                participants,
                total,
            });
        }
        out
    }

    /// Records watched by someone here.
    pub fn watched(&self) -> Vec<ResourceKey> {
        self.lock().watchers.keys().cloned().collect()
    }

    /// Sets the participants of `key` on other replicas and tells the watchers here, if anyone here watches it.
    pub fn set_remote_presence(&self, key: &ResourceKey, participants: Vec<Participant>) {
        let mut inner = self.lock();
        if !inner.watchers.contains_key(key) {
            inner.remote.remove(key);
            return;
        }
        if inner
            .remote
            .get(key)
            .map_or(participants.is_empty(), |old| *old == participants)
        {
            return;
        }
        if participants.is_empty() {
            inner.remote.remove(key);
        } else {
            inner.remote.insert(key.clone(), participants);
        }
        announce_presence(&mut inner, key);
    }

    /// Position of the last change dispatched.
    pub fn last_seq(&self) -> i64 {
        self.lock().last_seq
    }

    /// Open sessions (for metrics and tests).
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }
}

/// Everyone watching `key` on this replica, one entry per agent (editing if any of their sessions edits),
/// sorted by agent.
fn local_participants(inner: &Inner, key: &ResourceKey) -> Vec<Participant> {
    merge(inner, key, false)
}

/// Everyone watching `key` here or on another replica, one entry per agent, sorted by agent.
fn participants(inner: &Inner, key: &ResourceKey) -> Vec<Participant> {
    merge(inner, key, true)
}

fn merge(inner: &Inner, key: &ResourceKey, with_remote: bool) -> Vec<Participant> {
    let mut by_agent: BTreeMap<&str, bool> = BTreeMap::new();
    for session_id in inner.watchers.get(key).into_iter().flatten() {
        if let Some(session) = inner.sessions.get(session_id)
            && session.audience.shares_presence()
        {
            *by_agent.entry(session.agent.as_str()).or_default() |= session.editing.contains(key);
        }
    }
    if with_remote {
        for participant in inner.remote.get(key).into_iter().flatten() {
            *by_agent.entry(participant.agent.as_str()).or_default() |= participant.editing;
        }
    }
    by_agent
        .into_iter()
        .map(|(agent, editing)| Participant {
            agent: agent.to_owned(),
            editing,
        })
        .collect()
}

/// Tells each watcher of `key` that its participants changed: the record is marked in the session, and a
/// session with nothing marked before gets one wake-up. However many joins and leaves happen before a session
/// reads, it costs one inbox slot and one message per record.
fn announce_presence(inner: &mut Inner, key: &ResourceKey) {
    inner.snapshots.remove(key);
    let Some(watchers) = inner.watchers.get(key) else {
        return;
    };
    for session_id in watchers {
        if let Some(session) = inner.sessions.get_mut(session_id)
            && session.audience.shares_presence()
        {
            let first = session.presence_dirty.is_empty();
            if session.presence_dirty.insert(key.clone()) && first {
                session.offer(Delivery::PresenceWake);
            }
        }
    }
}

/// The participants of `key` for a message: editors first, at most [`MAX_LISTED_PARTICIPANTS`], and the total.
fn snapshot(inner: &mut Inner, key: &ResourceKey) -> (Vec<Participant>, usize) {
    if let Some(snapshot) = inner.snapshots.get(key) {
        return snapshot.clone();
    }
    let mut everyone = participants(inner, key);
    let total = everyone.len();
    everyone.sort_by(|a, b| {
        b.editing
            .cmp(&a.editing)
            .then_with(|| a.agent.cmp(&b.agent))
    });
    everyone.truncate(MAX_LISTED_PARTICIPANTS);
    everyone.sort_by(|a, b| a.agent.cmp(&b.agent));
    let snapshot = (everyone, total);
    if inner.watchers.contains_key(key) {
        inner.snapshots.insert(key.clone(), snapshot.clone());
    }
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::change::ChangeKind;

    fn key(kind: ResourceKind, id: &str) -> ResourceKey {
        ResourceKey {
            kind,
            id: id.to_owned(),
        }
    }

    fn change(
        seq: i64,
        kind: ResourceKind,
        id: &str,
        parent: Option<&str>,
        agent: &str,
    ) -> Arc<Change> {
        Arc::new(Change {
            seq,
            resource: kind,
            resource_id: id.to_owned(),
            version: 2,
            kind: ChangeKind::Updated,
            agent: agent.to_owned(),
            changed_fields: vec!["notes".to_owned()],
            parent_id: parent.map(str::to_owned),
            internal: false,
            time: 0,
        })
    }

    /// Everything queued for the session, with presence wake-ups read as the participants they announce.
    fn drain(hub: &Hub, handle: &mut SessionHandle) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Ok(delivery) = handle.inbox.try_recv() {
            match delivery {
                Delivery::PresenceWake => out.extend(hub.take_presence(handle.id)),
                other => out.push(other),
            }
        }
        out
    }

    #[test]
    fn a_change_reaches_watchers_of_the_record_and_of_its_customer_once() {
        let hub = Hub::new(0);
        let mut ana = hub.open("ana", Audience::Staff);
        hub.subscribe(
            ana.id,
            &[
                key(ResourceKind::Customer, "c"),
                key(ResourceKind::Activity, "a"),
            ],
            false,
        )
        .unwrap();
        drain(&hub, &mut ana);
        hub.dispatch(change(1, ResourceKind::Activity, "a", Some("c"), "ben"));
        hub.dispatch(change(2, ResourceKind::Activity, "other", Some("x"), "ben"));
        let got = drain(&hub, &mut ana);
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0], Delivery::Change(c) if c.seq == 1));
    }

    #[test]
    fn own_changes_are_skipped_unless_asked_for() {
        let hub = Hub::new(0);
        let mut ana = hub.open("ana", Audience::Staff);
        hub.subscribe(ana.id, &[key(ResourceKind::Customer, "c")], false)
            .unwrap();
        drain(&hub, &mut ana);
        hub.dispatch(change(1, ResourceKind::Customer, "c", None, "ana"));
        assert!(drain(&hub, &mut ana).is_empty());
        hub.subscribe(ana.id, &[], true).unwrap();
        hub.dispatch(change(2, ResourceKind::Customer, "c", None, "ana"));
        assert_eq!(drain(&hub, &mut ana).len(), 1);
    }

    #[test]
    fn presence_lists_every_agent_and_who_edits() {
        let hub = Hub::new(0);
        let c = key(ResourceKind::Customer, "c");
        let mut ana = hub.open("ana", Audience::Staff);
        let ben = hub.open("ben", Audience::Staff);
        hub.subscribe(ana.id, std::slice::from_ref(&c), false)
            .unwrap();
        hub.subscribe(ben.id, std::slice::from_ref(&c), false)
            .unwrap();
        assert!(hub.set_editing(ben.id, &c, true));
        let last = drain(&hub, &mut ana).pop().unwrap();
        let Delivery::Presence { participants, .. } = last else {
            panic!("expected presence")
        };
        assert_eq!(
            participants,
            [
                Participant {
                    agent: "ana".into(),
                    editing: false
                },
                Participant {
                    agent: "ben".into(),
                    editing: true
                }
            ]
        );
        hub.close(ben.id);
        let Some(Delivery::Presence { participants, .. }) = drain(&hub, &mut ana).pop() else {
            panic!("expected presence")
        };
        assert_eq!(
            participants,
            [Participant {
                agent: "ana".into(),
                editing: false
            }]
        );
    }

    #[test]
    fn a_full_inbox_marks_the_session_lagged_instead_of_waiting() {
        let hub = Hub::new(0);
        let ana = hub.open("ana", Audience::Staff);
        hub.subscribe(ana.id, &[key(ResourceKind::Customer, "c")], false)
            .unwrap();
        for seq in 1..=(INBOX_CAPACITY as i64 + 10) {
            hub.dispatch(change(seq, ResourceKind::Customer, "c", None, "ben"));
        }
        assert!(ana.lagged.load(Ordering::Relaxed));
        assert_eq!(hub.last_seq(), INBOX_CAPACITY as i64 + 10);
    }

    #[test]
    fn remote_participants_join_local_ones_and_local_changes_are_queued() {
        let hub = Hub::new(0);
        let c = key(ResourceKind::Customer, "c");
        let mut ana = hub.open("ana", Audience::Staff);
        hub.subscribe(ana.id, std::slice::from_ref(&c), false)
            .unwrap();
        let changed = hub.take_changed_presence();
        assert_eq!(changed.len(), 1);
        assert_eq!(
            changed[0].1,
            [Participant {
                agent: "ana".into(),
                editing: false
            }]
        );
        assert!(hub.take_changed_presence().is_empty());
        drain(&hub, &mut ana);

        hub.set_remote_presence(
            &c,
            vec![Participant {
                agent: "ben".into(),
                editing: true,
            }],
        );
        let Some(Delivery::Presence { participants, .. }) = drain(&hub, &mut ana).pop() else {
            panic!("expected presence")
        };
        assert_eq!(participants.len(), 2);
        assert!(
            hub.take_changed_presence().is_empty(),
            "remote news is not republished"
        );
        // Nobody here watches "x": remote news about it is ignored.
        hub.set_remote_presence(
            &key(ResourceKind::Customer, "x"),
            vec![Participant {
                agent: "cy".into(),
                editing: false,
            }],
        );
        assert!(drain(&hub, &mut ana).is_empty());
    }

    #[test]
    fn a_customer_session_gets_only_its_non_internal_changes_and_no_presence() {
        let hub = Hub::new(0);
        let c = key(ResourceKind::Customer, "c");
        let mut portal = hub.open("portal-c", Audience::Customer("c".into()));
        let mut ana = hub.open("ana", Audience::Staff);
        hub.subscribe(portal.id, std::slice::from_ref(&c), false)
            .unwrap();
        hub.subscribe(ana.id, std::slice::from_ref(&c), false)
            .unwrap();
        assert!(
            drain(&hub, &mut portal).is_empty(),
            "no presence for a portal"
        );
        let Some(Delivery::Presence { participants, .. }) = drain(&hub, &mut ana).pop() else {
            panic!("expected presence")
        };
        assert_eq!(participants.len(), 1, "the portal is not a participant");

        let mut internal = (*change(1, ResourceKind::Activity, "a", Some("c"), "ben")).clone();
        internal.internal = true;
        hub.dispatch(Arc::new(internal));
        hub.dispatch(change(2, ResourceKind::Activity, "b", Some("c"), "ben"));
        let got = drain(&hub, &mut portal);
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0], Delivery::Change(c) if c.seq == 2));
        assert_eq!(drain(&hub, &mut ana).len(), 2);
    }

    #[test]
    fn presence_is_state_a_late_reader_gets_the_latest_list_once() {
        let hub = Hub::new(0);
        let c = key(ResourceKind::Customer, "c");
        let mut ana = hub.open("ana", Audience::Staff);
        hub.subscribe(ana.id, std::slice::from_ref(&c), false)
            .unwrap();
        let others: Vec<_> = (0..150)
            .map(|i| hub.open(&format!("agent-{i:03}"), Audience::Staff))
            .collect();
        for other in &others {
            hub.subscribe(other.id, std::slice::from_ref(&c), false)
                .unwrap();
        }
        assert!(hub.set_editing(others[149].id, &c, true));
        // 151 joins and an edit, read late: one wake-up queued, one message, the latest state.
        assert_eq!(ana.inbox.len(), 1);
        let got = drain(&hub, &mut ana);
        assert_eq!(got.len(), 1);
        let Delivery::Presence {
            participants,
            total,
            ..
        } = &got[0]
        else {
            panic!("expected presence")
        };
        assert_eq!(*total, 151);
        assert_eq!(participants.len(), MAX_LISTED_PARTICIPANTS);
        assert!(
            participants
                .iter()
                .any(|p| p.agent == "agent-149" && p.editing),
            "editors are listed first"
        );
    }

    #[test]
    fn subscriptions_are_capped() {
        let hub = Hub::new(0);
        let ana = hub.open("ana", Audience::Staff);
        let keys: Vec<_> = (0..=MAX_SUBSCRIPTIONS)
            .map(|i| key(ResourceKind::Request, &i.to_string()))
            .collect();
        assert_eq!(
            hub.subscribe(ana.id, &keys, false),
            Err(TooManySubscriptions)
        );
        assert!(
            hub.subscribe(ana.id, &keys[..MAX_SUBSCRIPTIONS], false)
                .is_ok()
        );
    }
}
