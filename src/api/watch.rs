//! `WatchService`: live edit warnings and presence for agent gadgets.
//!
//! Each stream runs one session task. It is the only writer to the stream's output, so whatever it sends (a
//! replay after reconnect, the immediate event for a stale version, live changes, presence) goes out in log
//! order without gaps or duplicates. Live events arrive through the hub's bounded inbox; a session whose client
//! stops reading is marked lagged by the hub, drops its backlog and tells the client to resync.
//!
//! A browser cannot send on a stream, so `OpenWatch` opens the same session with its requests arriving through
//! `UpdateWatch` calls instead ([`Steering`]), in the order of their `sequence`, and a heartbeat so that a page
//! notices a dead stream. A `watch_id` lives in the memory of the replica that serves the stream: elsewhere it is
//! NOT_FOUND, and the page reopens with its cursor (no gap, no duplicate), as after any reconnect.
//!
//! Subscribing costs no query of its own: the hub's position is the log position, and the few subscriptions
//! that must read the log (a stale `known_version`, a `resume_after`) are answered in batches by
//! [`CatchUp`], so thousands of gadgets subscribing at once share a handful of queries.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    pin::Pin,
    sync::{Arc, Mutex, OnceLock, atomic::Ordering},
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::{
    ApiState, hidden, principal,
    resources::{change_kind, resource_kind, resource_ref},
};
use crate::{
    auth::Meter,
    domain::{
        Violations,
        change::{Change, ChangeKind, ResourceKind},
        ids,
        principal::{Audience, Principal},
        reason,
        time::to_timestamp,
    },
    error::Error,
    events::{
        Hub,
        catch_up::CatchUp,
        hub::{Delivery, Participant, Presence, ResourceKey, SessionHandle, TooManySubscriptions},
    },
    pb::{self, watch_event::Event, watch_request, watch_service_server::WatchService},
    store::change_log::LogRange,
};

/// Events buffered towards the client beyond what HTTP/2 flow control holds.
const OUTPUT_CAPACITY: usize = 16;
/// How long a subscription waits for the hub to dispatch what is already committed (it proceeds anyway after).
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Most changes replayed on resume; a client further behind is told to resync.
const MAX_REPLAY: u64 = 10_000;
/// Heartbeats of an `OpenWatch` stream: the default interval and the range a client may ask for.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
const HEARTBEAT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(300);
/// How long an `UpdateWatch` that overtook earlier ones waits for them.
const SEQUENCE_WAIT: Duration = Duration::from_secs(10);
/// How far past the last applied sequence an `UpdateWatch` may run ahead.
const MAX_SEQUENCE_AHEAD: i64 = 64;
/// `UpdateWatch` calls queued towards one session.
const UPDATE_CAPACITY: usize = 16;

pub struct WatchApi {
    state: ApiState,
    /// Started with the first stream, inside the server's runtime.
    catch_up: OnceLock<CatchUp>,
    /// The `OpenWatch` streams of this replica, by `watch_id`.
    watches: Arc<Watches>,
}

impl WatchApi {
    pub fn new(state: ApiState) -> Self {
        Self {
            state,
            catch_up: OnceLock::new(),
            watches: Arc::default(),
        }
    }

    /// A session for `request`'s caller and the stream its events leave by.
    fn session<T>(&self, request: &Request<T>) -> Result<(Session, WatchEvents), Status> {
        let principal = principal(request)?;
        let meter = request
            .extensions()
            .get::<Meter>()
            .cloned()
            .unwrap_or_else(Meter::unlimited);
        let (out, events) = mpsc::channel(OUTPUT_CAPACITY);
        let hub = self.state.hub.clone();
        let audience = principal.audience();
        let handle = hub.open(&principal.agent, audience.clone());
        let catch_up = self
            .catch_up
            .get_or_init(|| CatchUp::spawn(self.state.store.clone()))
            .clone();
        let session = Session {
            state: self.state.clone(),
            hub,
            catch_up,
            handle,
            agent: principal.agent.clone(),
            principal,
            meter,
            audience,
            out,
            cursor: 0,
            known_versions: HashMap::new(),
            steered: Steered::default(),
        };
        Ok((session, WatchEvents(events)))
    }
}

/// The `OpenWatch` streams of one replica, by `watch_id`: whom each belongs to and where its updates go.
#[derive(Default)]
struct Watches(Mutex<HashMap<String, Steering>>);

struct Steering {
    agent: String,
    updates: mpsc::Sender<Update>,
}

impl Watches {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Steering>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where `agent`'s updates of stream `watch_id` go.
    fn updates_for(&self, watch_id: &str, agent: &str) -> Result<mpsc::Sender<Update>, Error> {
        let watches = self.lock();
        let steering = watches
            .get(watch_id)
            .ok_or_else(|| Error::not_found("watch", watch_id))?;
        if steering.agent != agent {
            return Err(Error::permission_denied(
                "NOT_WATCH_OWNER",
                "only the caller that opened a watch stream may update it",
            ));
        }
        Ok(steering.updates.clone())
    }
}

/// One `UpdateWatch` call on its way to the stream's session, and where the answer goes.
struct Update {
    sequence: i64,
    requests: Vec<pb::WatchRequest>,
    answer: oneshot::Sender<Result<i64, Status>>,
}

/// What a session steered by `UpdateWatch` has applied so far.
#[derive(Default)]
struct Steered {
    /// The last sequence applied, and what its call was answered.
    applied: i64,
    answered: Option<Result<i64, Status>>,
    /// Calls that overtook earlier ones, waiting for them.
    early: BTreeMap<i64, Update>,
}

/// Where a session's requests come from.
enum Requests {
    /// The client's own messages on a `Watch` stream.
    Stream(Streaming<pb::WatchRequest>),
    /// `UpdateWatch` calls for an `OpenWatch` stream, which also gets a heartbeat.
    Steered {
        updates: mpsc::Receiver<Update>,
        heartbeat: tokio::time::Interval,
    },
}

enum Input {
    Message(Result<Option<pb::WatchRequest>, Status>),
    Update(Option<Update>),
    Heartbeat,
}

impl Requests {
    async fn next(&mut self) -> Input {
        match self {
            Requests::Stream(stream) => Input::Message(stream.message().await),
            Requests::Steered { updates, heartbeat } => tokio::select! {
                update = updates.recv() => Input::Update(update),
                _ = heartbeat.tick() => Input::Heartbeat,
            },
        }
    }
}

/// The heartbeat interval an `OpenWatch` asks for: unset is [`DEFAULT_HEARTBEAT`].
fn heartbeat_interval(asked: Option<prost_types::Duration>) -> Result<Duration, Error> {
    let Some(asked) = asked else {
        return Ok(DEFAULT_HEARTBEAT);
    };
    let range = format!(
        "between {} s and {} s",
        HEARTBEAT_RANGE.start().as_secs(),
        HEARTBEAT_RANGE.end().as_secs()
    );
    Duration::try_from(asked)
        .ok()
        .filter(|interval| HEARTBEAT_RANGE.contains(interval))
        .ok_or_else(|| {
            Error::invalid(
                "heartbeat_interval",
                reason::INVALID_HEARTBEAT,
                format!("must be {range}"),
            )
        })
}

/// An unguessable name for a stream: 128 random bits.
fn new_watch_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// What a session queues towards its client. Boxed: every open stream has a queue, and its buffer is sized for
/// the item type, so a big item makes every idle stream big.
type Outgoing = Result<Box<pb::WatchEvent>, Box<Status>>;

/// The events of one stream, as tonic sends them.
pub struct WatchEvents(mpsc::Receiver<Outgoing>);

impl Stream for WatchEvents {
    type Item = Result<pb::WatchEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|item| item.map(|event| *event).map_err(|status| *status)))
    }
}

#[tonic::async_trait]
impl WatchService for WatchApi {
    type WatchStream = WatchEvents;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (session, events) = self.session(&request)?;
        tokio::spawn(session.run(Requests::Stream(request.into_inner()), None));
        Ok(Response::new(events))
    }

    type OpenWatchStream = WatchEvents;

    async fn open_watch(
        &self,
        request: Request<pb::OpenWatchRequest>,
    ) -> Result<Response<Self::OpenWatchStream>, Status> {
        let (session, events) = self.session(&request)?;
        let message = request.into_inner();
        let period = heartbeat_interval(message.heartbeat_interval)?;
        let subscribe = message.subscribe.unwrap_or_default();
        resource_keys("subscribe.resources", &subscribe.resources).map_err(Stop::into_status)?;
        let watch_id = new_watch_id();
        let (updates_in, updates) = mpsc::channel(UPDATE_CAPACITY);
        self.watches.lock().insert(
            watch_id.clone(),
            Steering {
                agent: session.agent.clone(),
                updates: updates_in,
            },
        );
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let opened = Opened {
            watch_id,
            subscribe,
            watches: self.watches.clone(),
        };
        tokio::spawn(session.run(Requests::Steered { updates, heartbeat }, Some(opened)));
        Ok(Response::new(events))
    }

    async fn update_watch(
        &self,
        request: Request<pb::UpdateWatchRequest>,
    ) -> Result<Response<pb::UpdateWatchResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let well_formed = message.watch_id.len() == 32
            && message
                .watch_id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !well_formed {
            return Err(Error::invalid(
                "watch_id",
                reason::INVALID_ID,
                "a watch_id is the 32 lowercase hexadecimal characters of a WatchOpened event",
            )
            .into());
        }
        let updates = self.watches.updates_for(&message.watch_id, &caller.agent)?;
        if message.sequence < 1 {
            return Err(Error::invalid(
                "sequence",
                reason::INVALID_SEQUENCE,
                "the first UpdateWatch of a stream is sequence 1, each next one the previous plus 1",
            )
            .into());
        }
        let (answer, answered) = oneshot::channel();
        let update = Update {
            sequence: message.sequence,
            requests: message.requests,
            answer,
        };
        let gone = || Status::from(Error::not_found("watch", message.watch_id.clone()));
        updates.send(update).await.map_err(|_| gone())?;
        match tokio::time::timeout(SEQUENCE_WAIT, answered).await {
            Ok(Ok(answer)) => answer.map(|cursor| Response::new(pb::UpdateWatchResponse { cursor })),
            Ok(Err(_)) => Err(gone()),
            Err(_) => Err(Error::FailedPrecondition {
                reason: "SEQUENCE_GAP",
                message: format!(
                    "UpdateWatch {} waited {} s for an earlier sequence that did not arrive; it was not \
                     applied (send the missing one, then this one again)",
                    message.sequence,
                    SEQUENCE_WAIT.as_secs()
                ),
            }
            .into()),
        }
    }
}

/// What an `OpenWatch` session starts with.
struct Opened {
    watch_id: String,
    subscribe: pb::Subscribe,
    watches: Arc<Watches>,
}

/// Why a session ends.
enum Stop {
    /// The client went away or closed the call.
    ClientGone,
    /// End the call with this status.
    Fail(Status),
}

impl From<Error> for Stop {
    fn from(error: Error) -> Self {
        Stop::Fail(error.into())
    }
}

impl Stop {
    fn into_status(self) -> Status {
        match self {
            Stop::Fail(status) => status,
            Stop::ClientGone => Status::cancelled("the client went away"),
        }
    }
}

struct Session {
    state: ApiState,
    hub: Arc<Hub>,
    catch_up: CatchUp,
    handle: SessionHandle,
    agent: String,
    principal: Principal,
    /// The key's rate limit: every message counts, a subscription by the records it names.
    meter: Meter,
    /// What this stream may see (a portal: its customer's non-internal changes, no presence).
    audience: Audience,
    out: mpsc::Sender<Outgoing>,
    /// The log position of the last change sent.
    cursor: i64,
    /// The versions the client said it has on screen: changes up to them are not news.
    known_versions: HashMap<ResourceKey, i64>,
    /// The `UpdateWatch` calls applied (an `OpenWatch` stream).
    steered: Steered,
}

impl Session {
    /// Whether the client already has this change (it subscribed knowing this version or a later one).
    fn already_known(&self, change: &Change) -> bool {
        change.kind != ChangeKind::Deleted
            && self
                .known_versions
                .get(&ResourceKey {
                    kind: change.resource,
                    id: change.resource_id.clone(),
                })
                .is_some_and(|known| change.version <= *known)
    }

    async fn run(mut self, mut requests: Requests, opened: Option<Opened>) {
        let id = self.handle.id;
        // Leaves the hub (and the agent the presence of every watched record) however the session ends, and
        // forgets the stream's watch_id.
        let kind = if opened.is_some() {
            "open_watch"
        } else {
            "watch"
        };
        let _closed = Closed {
            hub: self.hub.clone(),
            id,
            _open: self.state.store.metrics().watch_stream(kind),
            watch: opened
                .as_ref()
                .map(|o| (o.watches.clone(), o.watch_id.clone())),
        };
        tracing::debug!(session = id, agent = %self.agent, "watch opened");
        let outcome = match opened {
            Some(opened) => match self.open(opened).await {
                Ok(()) => self.serve(&mut requests).await,
                failed => failed,
            },
            None => self.serve(&mut requests).await,
        };
        if let Err(Stop::Fail(status)) = outcome {
            tracing::debug!(session = id, code = ?status.code(), message = status.message(), "watch ended");
            // The client may not be reading; never wait for it.
            let _ = self.out.try_send(Err(Box::new(status)));
        }
    }

    /// The start of an `OpenWatch` stream: its `watch_id`, then its first subscription.
    async fn open(&mut self, opened: Opened) -> Result<(), Stop> {
        self.send(pb::WatchEvent {
            cursor: self.cursor,
            event: Some(Event::WatchOpened(pb::WatchOpened {
                watch_id: opened.watch_id,
            })),
        })
        .await?;
        let subscribe = opened.subscribe;
        if subscribe.resources.is_empty()
            && subscribe.resume_after == 0
            && !subscribe.routed_interactions
        {
            return Ok(());
        }
        self.handle(pb::WatchRequest {
            request: Some(watch_request::Request::Subscribe(subscribe)),
        })
        .await
    }

    async fn serve(&mut self, requests: &mut Requests) -> Result<(), Stop> {
        let shutdown = self.state.shutdown.clone();
        let mut requests_open = true;
        loop {
            tokio::select! {
                biased;
                () = shutdown.begun() => return Err(shutting_down()),
                () = self.out.closed() => return Err(Stop::ClientGone),
                input = requests.next(), if requests_open => match input {
                    Input::Message(Ok(Some(message))) => self.handle(message).await?,
                    // The client finished sending (or its updates can no longer arrive); keep delivering until
                    // it cancels.
                    Input::Message(Ok(None)) | Input::Update(None) => requests_open = false,
                    // A message that broke a rule is answered; a broken connection has no one to answer.
                    Input::Message(Err(status))
                        if matches!(
                            status.code(),
                            tonic::Code::InvalidArgument | tonic::Code::OutOfRange
                        ) =>
                    {
                        return Err(Stop::Fail(status));
                    }
                    Input::Message(Err(_)) => return Err(Stop::ClientGone),
                    Input::Update(Some(update)) => self.steer(update).await?,
                    Input::Heartbeat => {
                        let heartbeat = pb::WatchEvent {
                            cursor: self.cursor,
                            event: Some(Event::Heartbeat(pb::Heartbeat {})),
                        };
                        self.send(heartbeat).await?;
                    }
                },
                delivery = self.handle.inbox.recv() => match delivery {
                    Some(delivery) => self.deliver_one(delivery).await?,
                    None => return Err(Stop::ClientGone),
                },
            }
        }
    }

    /// Takes an `UpdateWatch` call in the order of its sequence: applies it when it is the next one (and then
    /// the early ones it was holding up), holds it when it came early, answers again a retry of the last.
    async fn steer(&mut self, update: Update) -> Result<(), Stop> {
        let steered = &mut self.steered;
        let next = steered.applied + 1;
        if update.sequence == steered.applied {
            let answer = steered.answered.clone().unwrap_or(Ok(self.cursor));
            let _ = update.answer.send(answer);
            return Ok(());
        }
        if update.sequence < steered.applied
            || update.sequence > steered.applied + MAX_SEQUENCE_AHEAD
        {
            let problem = Error::invalid(
                "sequence",
                reason::INVALID_SEQUENCE,
                format!(
                    "this stream expects sequence {next} (at most {MAX_SEQUENCE_AHEAD} ahead); {} is not",
                    update.sequence
                ),
            );
            let _ = update.answer.send(Err(problem.into()));
            return Ok(());
        }
        if update.sequence > next {
            // Calls whose caller gave up waiting are not applied.
            steered.early.retain(|_, early| !early.answer.is_closed());
            steered.early.insert(update.sequence, update);
            return Ok(());
        }
        self.apply(update).await?;
        while let Some(early) = self.steered.early.remove(&(self.steered.applied + 1)) {
            if early.answer.is_closed() {
                break;
            }
            self.apply(early).await?;
        }
        Ok(())
    }

    /// Applies the requests of one `UpdateWatch` in order, up to the first that fails, and answers the call.
    async fn apply(&mut self, update: Update) -> Result<(), Stop> {
        let mut outcome = Ok(());
        for request in update.requests {
            match self.handle(request).await {
                Ok(()) => {}
                Err(Stop::Fail(status)) => {
                    outcome = Err(status);
                    break;
                }
                Err(Stop::ClientGone) => return Err(Stop::ClientGone),
            }
        }
        let answer = outcome.map(|()| self.cursor);
        self.steered.applied = update.sequence;
        self.steered.answered = Some(answer.clone());
        let _ = update.answer.send(answer);
        Ok(())
    }

    async fn handle(&mut self, message: pb::WatchRequest) -> Result<(), Stop> {
        // Every message counts against the key's rate; a subscription counts the records it names.
        let cost = match &message.request {
            Some(watch_request::Request::Subscribe(subscribe)) => {
                distinct_refs(&subscribe.resources)
            }
            _ => 1,
        };
        self.meter.take(cost)?;
        match message.request {
            // Boxed: a stream subscribes seldom, and an idle one should not carry the subscription's state.
            Some(watch_request::Request::Subscribe(subscribe)) => {
                Box::pin(self.subscribe(subscribe)).await
            }
            Some(watch_request::Request::Unsubscribe(unsubscribe)) => {
                let keys = resource_keys("unsubscribe.resources", &unsubscribe.resources)?;
                let keys: Vec<_> = keys.into_iter().map(|(key, _)| key).collect();
                for key in &keys {
                    self.known_versions.remove(key);
                }
                self.hub.unsubscribe(self.handle.id, &keys);
                Ok(())
            }
            Some(watch_request::Request::SetEditing(_))
                if self.principal.portal_customer().is_some() =>
            {
                Err(Stop::from(Error::permission_denied(
                    "ROLE_NOT_ALLOWED",
                    "a portal key does not take part in presence",
                )))
            }
            Some(watch_request::Request::SetEditing(set)) => {
                let reference = set.resource.unwrap_or_default();
                let mut keys =
                    resource_keys("set_editing.resource", std::slice::from_ref(&reference))?;
                let (key, _) = keys.remove(0);
                if !self.hub.set_editing(self.handle.id, &key, set.editing) {
                    // Editing something not yet watched starts watching it.
                    Box::pin(self.subscribe(pb::Subscribe {
                        resources: vec![reference],
                        ..Default::default()
                    }))
                    .await?;
                    self.hub.set_editing(self.handle.id, &key, set.editing);
                }
                Ok(())
            }
            None => Err(Stop::Fail(
                Error::invalid(
                    "request",
                    reason::REQUIRED_FIELD,
                    "send subscribe, unsubscribe or set_editing",
                )
                .into(),
            )),
        }
    }

    async fn subscribe(&mut self, subscribe: pb::Subscribe) -> Result<(), Stop> {
        let refs = resource_keys("subscribe.resources", &subscribe.resources)?;
        if refs.len() > crate::events::hub::MAX_SUBSCRIPTIONS {
            return Err(too_many_subscriptions());
        }
        let keys: Vec<ResourceKey> = refs.iter().map(|(key, _)| key.clone()).collect();
        if let Some(customer_id) = self.principal.portal_customer() {
            check_portal_may_watch(&self.state, customer_id, &keys).await?;
        }
        let include_own = subscribe.include_own_changes;
        // Screen-pops are for staff gadgets; a portal has no interactions routed to it.
        if subscribe.routed_interactions && self.principal.portal_customer().is_none() {
            self.hub.want_routed(self.handle.id);
        }
        for (key, known_version) in &refs {
            if *known_version > 0 {
                self.known_versions.insert(key.clone(), *known_version);
            }
        }
        let resume_after = subscribe.resume_after;
        // The records the client has at a version it gave: what changed since is summed up in one event each.
        // A resume replays every change instead.
        let stale: Vec<(ResourceKey, i64)> = if resume_after > 0 {
            Vec::new()
        } else {
            refs.iter()
                .filter(|(_, known)| *known > 0)
                .cloned()
                .collect()
        };
        if resume_after > self.hub.last_seq() {
            // A cursor from a replica further along the log: let this one's feed catch up with it.
            self.state.store.log_appended().notify_one();
            let _ = tokio::time::timeout(CATCH_UP_WAIT, self.hub.dispatched(resume_after)).await;
        } else if resume_after == 0 && !stale.is_empty() {
            // What the client loaded was committed before it subscribed. Let the hub dispatch everything
            // committed so far, so that it is all below `live_from` and one event sums up what was missed. One
            // read of the log by the feed serves every subscription waiting at the time. On PostgreSQL a write
            // answered before has its log position only after a sequencing pass: one is run first, in a task of
            // its own, so that a subscription that stops waiting does not cut it short.
            let store = self.state.store.clone();
            let caught_up = async {
                let _ = tokio::spawn(async move { store.sequence_committed().await }).await;
                let read = self.hub.next_read();
                self.state.store.log_appended().notify_one();
                self.hub.read_done(read).await;
            };
            let _ = tokio::time::timeout(CATCH_UP_WAIT, caught_up).await;
        }
        let live_from = self
            .hub
            .subscribe(self.handle.id, &keys, include_own)
            .map_err(|TooManySubscriptions| too_many_subscriptions())?;

        // What happened before the subscription took hold: a replay, or one event per stale record.
        let mut earlier: Vec<pb::WatchEvent> = Vec::new();
        if resume_after > 0 {
            if resume_after > live_from {
                return self
                    .resync("the resume cursor is ahead of the change log")
                    .await;
            }
            let replay = self
                .catch_up
                .replay(
                    keys,
                    LogRange {
                        after: resume_after,
                        upto: live_from,
                        limit: MAX_REPLAY + 1,
                    },
                )
                .await?;
            if replay.len() as u64 > MAX_REPLAY {
                return self
                    .resync("too many changes since the resume cursor")
                    .await;
            }
            earlier.extend(
                replay
                    .iter()
                    .filter(|c| (include_own || c.agent != self.agent) && !self.already_known(c))
                    .filter_map(|c| self.audience.view(c))
                    .map(|c| change_event(&c)),
            );
        } else if !stale.is_empty() {
            for changes in self.catch_up.since_versions(stale, live_from).await? {
                let changes: Vec<Change> = changes
                    .into_iter()
                    .filter_map(|c| self.audience.into_view(c))
                    .collect();
                if let Some(event) = catch_up_event(&changes, include_own, &self.agent) {
                    earlier.push(event);
                }
            }
        }

        // Merge with what the hub already queued so that everything leaves in log order, each change once.
        let mut pending: VecDeque<Delivery> = VecDeque::new();
        while let Ok(delivery) = self.handle.inbox.try_recv() {
            pending.push_back(delivery);
        }
        if self.handle.lagged.load(Ordering::Relaxed) {
            return self.deliver(pending).await;
        }
        let mut changes: BTreeMap<i64, pb::WatchEvent> =
            earlier.into_iter().map(|e| (e.cursor, e)).collect();
        let mut presence = Vec::new();
        for delivery in pending {
            match delivery {
                Delivery::Change(change) if self.already_known(&change) => {}
                Delivery::Change(change) => {
                    changes
                        .entry(change.seq)
                        .or_insert_with(|| change_event(&change));
                }
                other => presence.push(other),
            }
        }
        for (_, event) in changes {
            self.send_change(event).await?;
        }
        self.deliver(presence.into()).await
    }

    /// Sends queued deliveries, or a resync if the hub had to drop some.
    async fn deliver(&mut self, deliveries: VecDeque<Delivery>) -> Result<(), Stop> {
        for delivery in deliveries {
            self.deliver_one(delivery).await?;
        }
        Ok(())
    }

    async fn deliver_one(&mut self, delivery: Delivery) -> Result<(), Stop> {
        if self.handle.lagged.load(Ordering::Relaxed) {
            return self
                .resync("the stream fell behind; reload what is on screen")
                .await;
        }
        match delivery {
            Delivery::Change(change) if self.already_known(&change) => Ok(()),
            Delivery::Change(change) => self.send_change(change_event(&change)).await,
            Delivery::Routed(routed) => {
                let event = pb::WatchEvent {
                    cursor: self.cursor,
                    event: Some(Event::InteractionRouted((*routed).clone())),
                };
                self.send(event).await
            }
            Delivery::PresenceWake => {
                for presence in self.hub.take_presence(self.handle.id) {
                    let event = presence_event(self.cursor, presence);
                    self.send(event).await?;
                }
                Ok(())
            }
        }
    }

    async fn send_change(&mut self, event: pb::WatchEvent) -> Result<(), Stop> {
        self.cursor = self.cursor.max(event.cursor);
        self.send(event).await
    }

    /// Drops the backlog and tells the client to reload. Everything committed so far is covered by that reload,
    /// so the resync carries the hub's current position as its cursor.
    async fn resync(&mut self, why: &str) -> Result<(), Stop> {
        while self.handle.inbox.try_recv().is_ok() {}
        let cursor = self.hub.last_seq();
        self.handle.lagged.store(false, Ordering::Relaxed);
        self.cursor = self.cursor.max(cursor);
        tracing::info!(session = self.handle.id, agent = %self.agent, reason = why, "watch resync");
        self.state.store.metrics().watch_resync();
        self.send(pb::WatchEvent {
            cursor: self.cursor,
            event: Some(Event::Resync(pb::Resync {
                reason: why.to_owned(),
            })),
        })
        .await
    }

    async fn send(&self, event: pb::WatchEvent) -> Result<(), Stop> {
        let kind = match &event.event {
            Some(Event::ResourceChanged(_)) => "change",
            Some(Event::PresenceChanged(_)) => "presence",
            Some(Event::Resync(_)) => "resync",
            Some(Event::WatchOpened(_)) => "watch_opened",
            Some(Event::Heartbeat(_)) => "heartbeat",
            Some(Event::InteractionRouted(_)) => "interaction_routed",
            None => "none",
        };
        tokio::select! {
            sent = self.out.send(Ok(Box::new(event))) => {
                sent.map_err(|_| Stop::ClientGone)?;
                self.state.store.metrics().watch_event(kind);
                Ok(())
            }
            () = self.state.shutdown.begun() => Err(shutting_down()),
        }
    }
}

/// A portal may watch its own customer, that customer's requests and its non-internal activities; anything
/// else is NOT_FOUND, as if it did not exist. One query per kind of record, however many are named.
async fn check_portal_may_watch(
    state: &ApiState,
    customer_id: &str,
    keys: &[ResourceKey],
) -> Result<(), Stop> {
    let ids = |kind: ResourceKind| -> Vec<String> {
        keys.iter()
            .filter(|key| key.kind == kind)
            .map(|key| key.id.clone())
            .collect()
    };
    let requests = state
        .store
        .request_owners(&ids(ResourceKind::Request))
        .await?;
    let activities = state
        .store
        .activity_owners(&ids(ResourceKind::Activity))
        .await?;
    for key in keys {
        let visible = match key.kind {
            ResourceKind::Customer => key.id == customer_id,
            ResourceKind::Request => requests
                .get(&key.id)
                .is_some_and(|owner| owner == customer_id),
            ResourceKind::Activity => activities.get(&key.id).is_some_and(|owner| {
                !owner.internal && owner.customer_id.as_deref() == Some(customer_id)
            }),
        };
        if !visible {
            return Err(hidden(key.kind.as_str(), &key.id).into());
        }
    }
    Ok(())
}

/// Ends a session in the hub when dropped, so that a session that ends in any way (a panic included) leaves
/// no subscriptions and no presence behind.
struct Closed {
    hub: Arc<Hub>,
    id: crate::events::hub::SessionId,
    /// An `OpenWatch` stream's registry and name.
    watch: Option<(Arc<Watches>, String)>,
    /// Counts the stream as open in the metrics.
    _open: Option<crate::telemetry::metrics::GaugeGuard>,
}

impl Drop for Closed {
    fn drop(&mut self) {
        if let Some((watches, watch_id)) = &self.watch {
            watches.lock().remove(watch_id);
        }
        self.hub.close(self.id);
    }
}

fn shutting_down() -> Stop {
    Stop::Fail(Status::unavailable(
        "the server is shutting down; reconnect and subscribe with resume_after",
    ))
}

fn too_many_subscriptions() -> Stop {
    Stop::Fail(
        Error::ResourceExhausted {
            reason: "TOO_MANY_SUBSCRIPTIONS",
            message: format!(
                "a stream watches at most {} records; unsubscribe some or open another stream",
                crate::events::hub::MAX_SUBSCRIPTIONS
            ),
            retry_after: None,
        }
        .into(),
    )
}

/// How many distinct records `refs` names (by type and id), without checking them.
fn distinct_refs(refs: &[pb::ResourceRef]) -> usize {
    refs.iter()
        .map(|r| (r.r#type, r.id.as_str()))
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// Checks references from the client (a known type and a well-formed id each) and keeps each record once, with
/// the highest version given for it, in the order first named.
fn resource_keys(field: &str, refs: &[pb::ResourceRef]) -> Result<Vec<(ResourceKey, i64)>, Stop> {
    let mut violations = Violations::new();
    let mut keys: Vec<(ResourceKey, i64)> = Vec::new();
    let mut seen: HashMap<(i32, &str), usize> = HashMap::new();
    for (i, reference) in refs.iter().enumerate() {
        if let Some(&at) = seen.get(&(reference.r#type, reference.id.as_str())) {
            if let Some((_, known)) = keys.get_mut(at) {
                *known = (*known).max(reference.known_version);
            }
            continue;
        }
        let kind = resource_kind(reference.r#type);
        if kind.is_none() {
            violations.push(
                format!("{field}[{i}].type"),
                reason::INVALID_ENUM_VALUE,
                "type must be RESOURCE_TYPE_CUSTOMER, _REQUEST or _ACTIVITY",
            );
        }
        let id = ids::check_id(&mut violations, &format!("{field}[{i}].id"), &reference.id);
        if let (Some(kind), Some(id)) = (kind, id) {
            seen.insert((reference.r#type, reference.id.as_str()), keys.len());
            keys.push((ResourceKey { kind, id }, reference.known_version));
        }
    }
    violations
        .into_result(keys)
        .map_err(|v| Stop::from(Error::from(v)))
}

fn participant_to_pb(p: Participant) -> pb::Participant {
    pb::Participant {
        agent: p.agent,
        editing: p.editing,
    }
}

fn presence_event(cursor: i64, presence: Presence) -> pb::WatchEvent {
    pb::WatchEvent {
        cursor,
        event: Some(Event::PresenceChanged(pb::PresenceChanged {
            resource: Some(resource_ref(
                presence.resource.kind,
                &presence.resource.id,
                0,
            )),
            participants: presence
                .participants
                .into_iter()
                .map(participant_to_pb)
                .collect(),
            total_participants: i32::try_from(presence.total).unwrap_or(i32::MAX),
        })),
    }
}

fn change_event(change: &Change) -> pb::WatchEvent {
    pb::WatchEvent {
        cursor: change.seq,
        event: Some(Event::ResourceChanged(pb::ResourceChanged {
            resource: Some(resource_ref(
                change.resource,
                &change.resource_id,
                change.version,
            )),
            kind: change_kind(change.kind) as i32,
            parent: change
                .parent_id
                .as_deref()
                .map(|id| resource_ref(ResourceKind::Customer, id, 0)),
            changed_by: change.agent.clone(),
            changed_fields: change.changed_fields.clone(),
            change_time: Some(to_timestamp(change.time)),
            merged_into: match change.kind {
                ChangeKind::Merged => change
                    .parent_id
                    .as_deref()
                    .map(|id| resource_ref(ResourceKind::Customer, id, 0)),
                _ => None,
            },
        })),
    }
}

/// One event summing up the changes a client missed between loading a record and subscribing: the newest
/// version, its author, and every field changed since. None if nothing changed, or only the agent's own
/// changes (unless asked for).
fn catch_up_event(changes: &[Change], include_own: bool, agent: &str) -> Option<pb::WatchEvent> {
    let last = changes.last()?;
    if !include_own && changes.iter().all(|c| c.agent == agent) {
        return None;
    }
    let mut fields: Vec<String> = Vec::new();
    for change in changes {
        for field in &change.changed_fields {
            if !fields.contains(field) {
                fields.push(field.clone());
            }
        }
    }
    let mut event = change_event(last);
    if let Some(Event::ResourceChanged(changed)) = event.event.as_mut() {
        changed.changed_fields = fields;
    }
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(seq: i64, version: i64, agent: &str, fields: &[&str]) -> Change {
        Change {
            seq,
            resource: ResourceKind::Customer,
            resource_id: "c".into(),
            version,
            kind: ChangeKind::Updated,
            agent: agent.into(),
            changed_fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            parent_id: None,
            internal: false,
            time: 0,
        }
    }

    #[test]
    fn catch_up_sums_up_every_missed_change() {
        let changes = [
            change(5, 2, "ben", &["notes"]),
            change(9, 3, "cy", &["tags", "notes"]),
        ];
        let event = catch_up_event(&changes, false, "ana").unwrap();
        assert_eq!(event.cursor, 9);
        let Some(Event::ResourceChanged(changed)) = event.event else {
            panic!("expected a change")
        };
        assert_eq!(changed.resource.unwrap().known_version, 3);
        assert_eq!(changed.changed_by, "cy");
        assert_eq!(changed.changed_fields, ["notes", "tags"]);
    }

    #[test]
    fn catch_up_ignores_only_own_changes_unless_asked() {
        let changes = [change(5, 2, "ana", &["notes"])];
        assert!(catch_up_event(&changes, false, "ana").is_none());
        assert!(catch_up_event(&changes, true, "ana").is_some());
        assert!(catch_up_event(&[], true, "ana").is_none());
    }
}
