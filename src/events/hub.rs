//! The in-process fan-out of committed changes and presence to open watch streams.
//!
//! Each stream is a session with a bounded inbox. The hub never waits on a session: when an inbox is full the
//! event is dropped and the session is marked lagged, so it tells its client to resync. A slow or stalled
//! watcher therefore costs a bounded amount of memory and never slows writers or other watchers.
//!
//! Presence is kept per watched record as a count of sessions (and editing sessions) per agent, so a join,
//! leave or edit costs the same however many streams watch the record, and the watchers are told only when
//! the participant list really changed: a thousand gadgets of one agent joining at once make one announcement.

use std::{
    borrow::Cow,
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
/// Screen-pops waiting to be relayed to other replicas; beyond it they are dropped (with a warning).
const RELAY_CAPACITY: usize = 1_024;
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

/// What a session's inbox carries. Kept to two words: every session has an inbox, mostly idle.
#[derive(Clone, Debug)]
pub enum Delivery {
    Change(Arc<Change>),
    /// Presence of some watched records changed: read them with [`Hub::take_presence`].
    PresenceWake,
    /// An interaction was routed to the session's agent (the screen-pop).
    Routed(Arc<crate::pb::InteractionRouted>),
}

/// The participants of one record, as of when the session read them.
#[derive(Clone, Debug)]
pub struct Presence {
    pub resource: ResourceKey,
    pub participants: Vec<Participant>,
    pub total: usize,
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
    /// Whether the session wants the interactions routed to its agent.
    routed: bool,
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

    /// Marks `key`'s presence as news for this session; the first news since the session last read wakes it.
    fn presence_news(&mut self, key: &ResourceKey) {
        if !self.audience.shares_presence() || self.presence_dirty.contains(key) {
            return;
        }
        let first = self.presence_dirty.is_empty();
        self.presence_dirty.insert(key.clone());
        if first {
            self.offer(Delivery::PresenceWake);
        }
    }
}

/// How many sessions of one agent view a record here, and how many of them edit it.
#[derive(Clone, Copy, Debug, Default)]
struct Viewing {
    sessions: u32,
    editing: u32,
}

/// A record watched by some session here.
#[derive(Default)]
struct Watched {
    sessions: HashSet<SessionId>,
    /// The agents of the sessions that share presence.
    agents: BTreeMap<String, Viewing>,
    /// Participants on other replicas.
    remote: Vec<Participant>,
    /// The participants as last computed (listed, total), until they change again.
    snapshot: Option<(Vec<Participant>, usize)>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<SessionId, Session>,
    watched: HashMap<ResourceKey, Watched>,
    /// Position of the last change dispatched.
    last_seq: i64,
    /// Records whose local participants changed since the presence sync last published them.
    dirty: HashSet<ResourceKey>,
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
    /// Reads of the log the feed has begun, and the last one that completed; see [`Hub::next_read`].
    reads_begun: AtomicU64,
    reads_done: watch::Sender<u64>,
    /// Where screen-pops for other replicas go, when replicas share a database.
    relay: std::sync::OnceLock<mpsc::Sender<(String, Arc<crate::pb::InteractionRouted>)>>,
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
            reads_begun: AtomicU64::new(0),
            reads_done: watch::channel(0).0,
            relay: std::sync::OnceLock::new(),
        }
    }

    /// Completes once every change up to position `seq` has been dispatched.
    pub async fn dispatched(&self, seq: i64) {
        let mut position = self.dispatched.subscribe();
        let _ = position.wait_for(|dispatched| *dispatched >= seq).await;
    }

    /// The feed begins reading the log; returns the read's number. The read sees every change committed before.
    pub fn begin_read(&self) -> u64 {
        self.reads_begun.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The feed dispatched everything read `number` found.
    pub fn end_read(&self, number: u64) {
        self.reads_done.send_if_modified(|done| {
            let later = number > *done;
            if later {
                *done = number;
            }
            later
        });
    }

    /// The number of the first read of the log that begins after this call. Once it is done (see
    /// [`Hub::read_done`]), every change committed before this call has been dispatched. Thousands of waiters
    /// share one read, so learning "the hub has caught up with the log" costs no query of its own.
    pub fn next_read(&self) -> u64 {
        self.reads_begun.load(Ordering::SeqCst) + 1
    }

    /// Completes once read `number` of the log is done.
    pub async fn read_done(&self, number: u64) {
        let mut done = self.reads_done.subscribe();
        let _ = done.wait_for(|done| *done >= number).await;
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
                routed: false,
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

    /// From now on the session gets the interactions routed to its agent ([`Hub::route`]).
    pub fn want_routed(&self, id: SessionId) {
        if let Some(session) = self.lock().sessions.get_mut(&id) {
            session.routed = true;
        }
    }

    /// Hands an interaction routed to `agent` to each of the agent's sessions that wants them, here and (through
    /// the relay, when replicas share one database) on the other replicas.
    pub fn route(&self, agent: &str, routed: crate::pb::InteractionRouted) {
        let routed = Arc::new(routed);
        self.route_here(agent, routed.clone());
        if let Some(relay) = self.relay.get()
            && relay.try_send((agent.to_owned(), routed)).is_err()
        {
            tracing::warn!(
                agent,
                "screen-pop not relayed to other replicas: the relay is behind"
            );
        }
    }

    /// Screen-pops this hub hands to other replicas from now on (see [`Hub::route`]); None if already taken.
    pub fn relay_routes(
        &self,
    ) -> Option<mpsc::Receiver<(String, Arc<crate::pb::InteractionRouted>)>> {
        let (tx, rx) = mpsc::channel(RELAY_CAPACITY);
        self.relay.set(tx).ok().map(|()| rx)
    }

    /// Hands an interaction routed to `agent` to the agent's sessions on this replica that want them.
    pub fn route_here(&self, agent: &str, routed: Arc<crate::pb::InteractionRouted>) {
        for session in self.lock().sessions.values() {
            if session.routed && session.agent == agent {
                session.offer(Delivery::Routed(routed.clone()));
            }
        }
    }

    /// Closes a session: its agent leaves the presence of everything it watched.
    pub fn close(&self, id: SessionId) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(session) = inner.sessions.remove(&id) else {
            return;
        };
        for key in &session.subscriptions {
            if leave(&mut inner.watched, id, &session, key) {
                self.local_presence_changed(inner, key);
            }
        }
    }

    /// Adds subscriptions. Changes dispatched after the returned position reach the session live; everything
    /// up to it is the caller's to replay. The session gets the participants of each newly watched record;
    /// the other watchers of the record hear of it only if the participant list changed.
    pub fn subscribe(
        &self,
        id: SessionId,
        keys: &[ResourceKey],
        include_own: bool,
    ) -> Result<i64, TooManySubscriptions> {
        let mut guard = self.lock();
        let inner = &mut *guard;
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
        let mut changed = Vec::new();
        for key in new {
            if join(&mut inner.watched, id, session, &key) {
                changed.push(key.clone());
            } else {
                session.presence_news(&key);
            }
            session.subscriptions.insert(key);
        }
        for key in &changed {
            self.local_presence_changed(inner, key);
        }
        Ok(inner.last_seq)
    }

    pub fn unsubscribe(&self, id: SessionId, keys: &[ResourceKey]) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(session) = inner.sessions.get_mut(&id) else {
            return;
        };
        let mut changed = Vec::new();
        for key in keys {
            if !session.subscriptions.contains(key) {
                continue;
            }
            if leave(&mut inner.watched, id, session, key) {
                changed.push(key.clone());
            }
            session.subscriptions.remove(key);
            session.editing.remove(key);
            session.presence_dirty.remove(key);
        }
        for key in &changed {
            self.local_presence_changed(inner, key);
        }
    }

    /// Marks the session's agent as editing (or not) a record it watches. Returns false if it does not watch it.
    pub fn set_editing(&self, id: SessionId, key: &ResourceKey, editing: bool) -> bool {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(session) = inner.sessions.get_mut(&id) else {
            return false;
        };
        if !session.subscriptions.contains(key) {
            return false;
        }
        let toggled = if editing {
            session.editing.insert(key.clone())
        } else {
            session.editing.remove(key)
        };
        if !toggled || !session.audience.shares_presence() {
            return true;
        }
        let Some(viewing) = inner
            .watched
            .get_mut(key)
            .and_then(|watched| watched.agents.get_mut(&session.agent))
        else {
            return true;
        };
        // The list changes when the agent's first session starts editing or its last one stops.
        let changed = if editing {
            viewing.editing += 1;
            viewing.editing == 1
        } else {
            viewing.editing = viewing.editing.saturating_sub(1);
            viewing.editing == 0
        };
        if changed {
            self.local_presence_changed(inner, key);
        }
        true
    }

    /// Delivers a committed change to every session watching the record or its customer, once each. Changes
    /// must come in log order.
    pub fn dispatch(&self, change: Arc<Change>) {
        let mut guard = self.lock();
        if change.seq <= guard.last_seq {
            return;
        }
        guard.last_seq = change.seq;
        self.dispatched.send_replace(change.seq);
        let inner = &*guard;
        let own = inner.watched.get(&ResourceKey {
            kind: change.resource,
            id: change.resource_id.clone(),
        });
        let parent = change.parent_id.as_ref().and_then(|id| {
            inner.watched.get(&ResourceKey {
                kind: ResourceKind::Customer,
                id: id.clone(),
            })
        });
        let offer = |session_id: &SessionId| {
            if let Some(session) = inner.sessions.get(session_id)
                && (session.include_own || session.agent != change.agent)
                && let Some(seen) = session.audience.view(&change)
            {
                let seen = match seen {
                    Cow::Borrowed(_) => change.clone(),
                    Cow::Owned(seen) => Arc::new(seen),
                };
                session.offer(Delivery::Change(seen));
            }
        };
        for session_id in own.iter().flat_map(|watched| &watched.sessions) {
            offer(session_id);
        }
        // Watchers of both the record and its customer get the change once.
        for session_id in parent.iter().flat_map(|watched| &watched.sessions) {
            if !own.is_some_and(|own| own.sessions.contains(session_id)) {
                offer(session_id);
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
            .map(|key| match inner.watched.get(&key) {
                Some(watched) => {
                    let local = merge(watched, false);
                    (key, local, true)
                }
                None => (key, Vec::new(), false),
            })
            .collect()
    }

    /// The current participants of every record whose presence changed since the session last asked.
    pub fn take_presence(&self, id: SessionId) -> Vec<Presence> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(session) = inner.sessions.get_mut(&id) else {
            return Vec::new();
        };
        // Taken, not drained: an idle session keeps no allocation for it.
        let dirty = std::mem::take(&mut session.presence_dirty);
        dirty
            .into_iter()
            .filter_map(|key| {
                let watched = inner.watched.get_mut(&key)?;
                if !watched.sessions.contains(&id) {
                    return None;
                }
                let (participants, total) = snapshot(watched);
                Some(Presence {
                    resource: key,
                    participants,
                    total,
                })
            })
            .collect()
    }

    /// Records watched by someone here.
    pub fn watched(&self) -> Vec<ResourceKey> {
        self.lock().watched.keys().cloned().collect()
    }

    /// Sets the participants of `key` on other replicas and tells the watchers here, if anyone here watches it.
    pub fn set_remote_presence(&self, key: &ResourceKey, participants: Vec<Participant>) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(watched) = inner.watched.get_mut(key) else {
            return;
        };
        if watched.remote == participants {
            return;
        }
        watched.remote = participants;
        announce_presence(inner, key);
    }

    /// Position of the last change dispatched.
    pub fn last_seq(&self) -> i64 {
        self.lock().last_seq
    }

    /// Open sessions (for metrics and tests).
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// For the metrics: records subscribed to, summed over sessions; and agents viewing a watched record here,
    /// summed over records.
    pub fn watch_counts(&self) -> (usize, usize) {
        let inner = self.lock();
        let subscriptions = inner
            .sessions
            .values()
            .map(|session| session.subscriptions.len())
            .sum();
        let participants = inner
            .watched
            .values()
            .map(|watched| watched.agents.len())
            .sum();
        (subscriptions, participants)
    }
}

/// Adds `session` to the watchers of `key`; true if the record's local participants changed (its agent was
/// not viewing it here yet).
fn join(
    watched: &mut HashMap<ResourceKey, Watched>,
    id: SessionId,
    session: &Session,
    key: &ResourceKey,
) -> bool {
    let record = match watched.get_mut(key) {
        Some(record) => record,
        None => watched.entry(key.clone()).or_default(),
    };
    if !record.sessions.insert(id) || !session.audience.shares_presence() {
        return false;
    }
    let viewing = match record.agents.get_mut(&session.agent) {
        Some(viewing) => viewing,
        None => record.agents.entry(session.agent.clone()).or_default(),
    };
    viewing.sessions += 1;
    viewing.sessions == 1
}

/// Takes `session` off the watchers of `key`; true if the record's local participants changed (its agent's
/// last session left, or its last editing session).
fn leave(
    watched: &mut HashMap<ResourceKey, Watched>,
    id: SessionId,
    session: &Session,
    key: &ResourceKey,
) -> bool {
    let Some(record) = watched.get_mut(key) else {
        return false;
    };
    if !record.sessions.remove(&id) {
        return false;
    }
    let mut changed = false;
    if session.audience.shares_presence()
        && let Some(viewing) = record.agents.get_mut(&session.agent)
    {
        if session.editing.contains(key) {
            viewing.editing = viewing.editing.saturating_sub(1);
            changed |= viewing.editing == 0;
        }
        viewing.sessions = viewing.sessions.saturating_sub(1);
        if viewing.sessions == 0 {
            record.agents.remove(&session.agent);
            changed = true;
        }
    }
    if record.sessions.is_empty() {
        watched.remove(key);
    }
    changed
}

/// Everyone watching the record here (and, `with_remote`, on other replicas), one entry per agent (editing if
/// any of their sessions edits), sorted by agent.
fn merge(watched: &Watched, with_remote: bool) -> Vec<Participant> {
    let mut by_agent: BTreeMap<&str, bool> = watched
        .agents
        .iter()
        .map(|(agent, viewing)| (agent.as_str(), viewing.editing > 0))
        .collect();
    if with_remote {
        for participant in &watched.remote {
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
    let Some(watched) = inner.watched.get_mut(key) else {
        return;
    };
    watched.snapshot = None;
    for session_id in &watched.sessions {
        if let Some(session) = inner.sessions.get_mut(session_id) {
            session.presence_news(key);
        }
    }
}

/// The participants of a record for a message: editors first, at most [`MAX_LISTED_PARTICIPANTS`], and the
/// total.
fn snapshot(watched: &mut Watched) -> (Vec<Participant>, usize) {
    if let Some(snapshot) = &watched.snapshot {
        return snapshot.clone();
    }
    let mut everyone = merge(watched, true);
    let total = everyone.len();
    everyone.sort_by(|a, b| {
        b.editing
            .cmp(&a.editing)
            .then_with(|| a.agent.cmp(&b.agent))
    });
    everyone.truncate(MAX_LISTED_PARTICIPANTS);
    everyone.sort_by(|a, b| a.agent.cmp(&b.agent));
    watched.snapshot = Some((everyone.clone(), total));
    (everyone, total)
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

    /// What a session read.
    #[derive(Debug)]
    enum Got {
        Change(Arc<Change>),
        Presence(Presence),
        Routed(String),
    }

    /// Everything queued for the session, with presence wake-ups read as the participants they announce.
    fn drain(hub: &Hub, handle: &mut SessionHandle) -> Vec<Got> {
        let mut out = Vec::new();
        while let Ok(delivery) = handle.inbox.try_recv() {
            match delivery {
                Delivery::PresenceWake => {
                    out.extend(hub.take_presence(handle.id).into_iter().map(Got::Presence));
                }
                Delivery::Change(change) => out.push(Got::Change(change)),
                Delivery::Routed(routed) => out.push(Got::Routed(routed.interaction_id.clone())),
            }
        }
        out
    }

    #[test]
    fn a_routed_interaction_reaches_only_its_agents_sessions_that_want_it() {
        let hub = Hub::new(0);
        let mut ana_desk = hub.open("ana", Audience::Staff);
        let mut ana_phone = hub.open("ana", Audience::Staff);
        let mut ben = hub.open("ben", Audience::Staff);
        hub.want_routed(ana_desk.id);
        hub.want_routed(ben.id);
        let call = |id: &str| crate::pb::InteractionRouted {
            interaction_id: id.to_owned(),
            ..Default::default()
        };
        hub.route("ana", call("call-1"));
        hub.route("ben", call("call-2"));
        assert!(matches!(&drain(&hub, &mut ana_desk)[..], [Got::Routed(id)] if id == "call-1"));
        assert!(
            drain(&hub, &mut ana_phone).is_empty(),
            "that session did not ask"
        );
        assert!(matches!(&drain(&hub, &mut ben)[..], [Got::Routed(id)] if id == "call-2"));
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
        assert!(matches!(&got[0], Got::Change(c) if c.seq == 1));
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
        let Got::Presence(Presence { participants, .. }) = last else {
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
        let Some(Got::Presence(Presence { participants, .. })) = drain(&hub, &mut ana).pop() else {
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
        let Some(Got::Presence(Presence { participants, .. })) = drain(&hub, &mut ana).pop() else {
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
        let Some(Got::Presence(Presence { participants, .. })) = drain(&hub, &mut ana).pop() else {
            panic!("expected presence")
        };
        assert_eq!(participants.len(), 1, "the portal is not a participant");

        let mut internal = (*change(1, ResourceKind::Activity, "a", Some("c"), "ben")).clone();
        internal.internal = true;
        hub.dispatch(Arc::new(internal));
        hub.dispatch(change(2, ResourceKind::Activity, "b", Some("c"), "ben"));
        let got = drain(&hub, &mut portal);
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0], Got::Change(c) if c.seq == 2));
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
        let Got::Presence(Presence {
            participants,
            total,
            ..
        }) = &got[0]
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
    #[test]
    fn more_sessions_of_an_agent_already_there_greet_only_themselves() {
        let hub = Hub::new(0);
        let c = key(ResourceKind::Customer, "c");
        let mut first = hub.open("ana", Audience::Staff);
        hub.subscribe(first.id, std::slice::from_ref(&c), false)
            .unwrap();
        assert_eq!(drain(&hub, &mut first).len(), 1, "the first join is news");
        let mut others: Vec<_> = (0..500).map(|_| hub.open("ana", Audience::Staff)).collect();
        for other in &others {
            hub.subscribe(other.id, std::slice::from_ref(&c), false)
                .unwrap();
        }
        assert!(
            drain(&hub, &mut first).is_empty(),
            "the list did not change: nobody else is told"
        );
        for other in &mut others {
            let got = drain(&hub, other);
            assert_eq!(got.len(), 1, "each new session gets the list once");
            assert!(matches!(&got[0], Got::Presence(p) if p.total == 1));
        }
        assert_eq!(hub.take_changed_presence().len(), 1);

        // One of Ana's sessions edits: that is news; a second one editing is not; the last one stopping is.
        assert!(hub.set_editing(others[0].id, &c, true));
        assert_eq!(drain(&hub, &mut first).len(), 1);
        assert!(hub.set_editing(others[1].id, &c, true));
        assert!(drain(&hub, &mut first).is_empty());
        hub.close(others[0].id);
        assert!(
            drain(&hub, &mut first).is_empty(),
            "another session still edits"
        );
        assert!(hub.set_editing(others[1].id, &c, false));
        let Some(Got::Presence(presence)) = drain(&hub, &mut first).pop() else {
            panic!("expected presence")
        };
        assert_eq!(
            presence.participants,
            [Participant {
                agent: "ana".into(),
                editing: false
            }]
        );
        // Sessions leaving while another of the agent's stays change nothing; the last one leaving does.
        for other in others.drain(1..) {
            hub.close(other.id);
        }
        assert!(drain(&hub, &mut first).is_empty());
        let ben = hub.open("ben", Audience::Staff);
        hub.subscribe(ben.id, std::slice::from_ref(&c), false)
            .unwrap();
        assert_eq!(drain(&hub, &mut first).len(), 1);
        hub.close(ben.id);
        assert_eq!(drain(&hub, &mut first).len(), 1);
        hub.close(first.id);
        assert!(
            hub.watched().is_empty(),
            "nothing is kept for an unwatched record"
        );
    }

    #[test]
    fn a_change_to_a_record_and_its_customer_reaches_a_watcher_of_both_once() {
        let hub = Hub::new(0);
        let mut ana = hub.open("ana", Audience::Staff);
        let mut ben = hub.open("ben", Audience::Staff);
        hub.subscribe(ana.id, &[key(ResourceKind::Customer, "c")], false)
            .unwrap();
        hub.subscribe(ben.id, &[key(ResourceKind::Activity, "a")], false)
            .unwrap();
        drain(&hub, &mut ana);
        drain(&hub, &mut ben);
        hub.dispatch(change(1, ResourceKind::Activity, "a", Some("c"), "cy"));
        assert_eq!(drain(&hub, &mut ana).len(), 1);
        assert_eq!(drain(&hub, &mut ben).len(), 1);
    }

    #[tokio::test]
    async fn a_read_of_the_log_that_begins_later_covers_what_came_before() {
        let hub = Hub::new(0);
        let running = hub.begin_read();
        // A waiter arriving during a read needs the next one: the running read may have missed its commit.
        let needed = hub.next_read();
        assert_eq!(needed, running + 1);
        hub.end_read(running);
        let waiting = hub.read_done(needed);
        tokio::pin!(waiting);
        assert!(futures_poll_once(waiting.as_mut()).await.is_pending());
        let next = hub.begin_read();
        hub.end_read(next);
        waiting.await;
    }

    /// Polls a future once.
    async fn futures_poll_once<F: std::future::Future + Unpin>(
        future: F,
    ) -> std::task::Poll<F::Output> {
        let mut future = future;
        std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut future).poll(cx)))
            .await
    }
}
