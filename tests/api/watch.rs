//! Live edit warnings and presence over real gRPC streams. Every wait is on the stream, with a timeout.

use std::{
    sync::atomic::{AtomicI64, Ordering},
    time::{Duration, Instant},
};

use customer_context::pb::{
    self, ResourceRef, ResourceType, WatchEvent, WatchRequest, watch_event::Event,
    watch_request::Request as Req, watch_service_client::WatchServiceClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming, transport::Channel};

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

/// The two shapes of one watch session (docs/api.md): a bidirectional `Watch` stream, or an `OpenWatch` stream
/// steered by `UpdateWatch` calls, as a browser has it. The behaviour tests below run on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Bidi,
    Steered,
}

impl Shape {
    /// A gadget of `agent` on its own connection.
    pub async fn open(self, app: &TestApp, agent: &str) -> Watcher {
        self.open_on(app.new_channel().await, agent).await
    }

    /// A gadget on an existing connection (many gadgets of one desktop share one).
    pub async fn open_on(self, channel: Channel, agent: &str) -> Watcher {
        match self {
            Shape::Bidi => Watcher::bidi_on(channel, agent).await,
            Shape::Steered => {
                Watcher::steered_on(channel, agent, pb::OpenWatchRequest::default()).await
            }
        }
    }

    /// Carla Diaz, written on `written_on`, and `agent`'s gadget on `watched_on` watching her at version 1.
    pub async fn carla_watched_by(
        self,
        written_on: &TestApp,
        watched_on: &TestApp,
        agent: &str,
    ) -> (pb::Customer, Watcher) {
        let carla = written_on.create_customer(customer("Carla", "Diaz")).await;
        let mut watcher = self.open(watched_on, agent).await;
        watcher.join(&carla.id, 1).await;
        (carla, watcher)
    }
}

/// One agent gadget: its own connection and one watch stream, of either shape.
pub struct Watcher {
    agent: String,
    requests: Requests,
    pub events: Streaming<WatchEvent>,
}

/// Where a gadget's requests go.
enum Requests {
    /// On its own `Watch` stream.
    Stream(mpsc::Sender<WatchRequest>),
    /// In `UpdateWatch` calls naming its `OpenWatch` stream (boxed: a client is larger than a sender).
    Calls(Box<Steering>),
}

/// How an `OpenWatch` stream is steered: `UpdateWatch` calls of its opener, naming it, in sequence from 1.
pub struct Steering {
    pub client: WatchServiceClient<Channel>,
    pub watch_id: String,
    agent: String,
    sequence: AtomicI64,
}

impl Steering {
    /// The request of the next `UpdateWatch` (the next sequence), carrying `requests`.
    pub fn request(&self, requests: Vec<Req>) -> pb::UpdateWatchRequest {
        pb::UpdateWatchRequest {
            watch_id: self.watch_id.clone(),
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            requests: requests
                .into_iter()
                .map(|r| WatchRequest { request: Some(r) })
                .collect(),
        }
    }

    /// Sends `requests` in the next `UpdateWatch`: the stream's cursor once they are applied, or the call's error.
    pub async fn update(&self, requests: Vec<Req>) -> Result<i64, Status> {
        let request = as_agent(&self.agent, self.request(requests));
        within("update watch", self.client.clone().update_watch(request))
            .await
            .map(|response| response.into_inner().cursor)
    }
}

/// The next message of a watch stream, which must be an event.
async fn next_event(events: &mut Streaming<WatchEvent>) -> WatchEvent {
    within("next watch event", events.message())
        .await
        .expect("stream healthy")
        .expect("stream still open")
}

impl Watcher {
    /// A `Watch` stream of `agent` on its own connection.
    pub async fn open(app: &TestApp, agent: &str) -> Watcher {
        Shape::Bidi.open(app, agent).await
    }

    /// An `OpenWatch` stream of `agent` opened by `request` on its own connection, its `WatchOpened` taken.
    pub async fn open_steered(
        app: &TestApp,
        agent: &str,
        request: pb::OpenWatchRequest,
    ) -> Watcher {
        Watcher::steered_on(app.new_channel().await, agent, request).await
    }

    async fn bidi_on(channel: Channel, agent: &str) -> Watcher {
        let (requests, rx) = mpsc::channel(16);
        let mut client = WatchServiceClient::new(channel);
        let events = within(
            "watch open",
            client.watch(as_agent(agent, ReceiverStream::new(rx))),
        )
        .await
        .expect("watch opens")
        .into_inner();
        Watcher {
            agent: agent.to_owned(),
            requests: Requests::Stream(requests),
            events,
        }
    }

    async fn steered_on(channel: Channel, agent: &str, request: pb::OpenWatchRequest) -> Watcher {
        let mut client = WatchServiceClient::new(channel);
        let mut events = within("open watch", client.open_watch(as_agent(agent, request)))
            .await
            .expect("OpenWatch opens")
            .into_inner();
        let first = next_event(&mut events).await;
        let Some(Event::WatchOpened(opened)) = first.event else {
            panic!("the first event names the stream, got {first:?}");
        };
        assert_eq!(opened.watch_id.len(), 32, "128 random bits in hex");
        assert!(opened.watch_id.bytes().all(|b| b.is_ascii_hexdigit()));
        let steering = Steering {
            client,
            watch_id: opened.watch_id,
            agent: agent.to_owned(),
            sequence: AtomicI64::new(0),
        };
        Watcher {
            agent: agent.to_owned(),
            requests: Requests::Calls(Box::new(steering)),
            events,
        }
    }

    /// The `UpdateWatch` side of an `OpenWatch` stream.
    pub fn steering(&self) -> &Steering {
        match &self.requests {
            Requests::Calls(steering) => steering,
            Requests::Stream(_) => panic!("a Watch stream is steered by its own messages"),
        }
    }

    /// Sends one request: on the stream, or in an `UpdateWatch` call that must succeed (it returns once the
    /// request is applied).
    pub async fn send(&self, request: Req) {
        match &self.requests {
            Requests::Stream(requests) => requests
                .send(WatchRequest {
                    request: Some(request),
                })
                .await
                .expect("stream open"),
            Requests::Calls(steering) => {
                steering
                    .update(vec![request])
                    .await
                    .expect("UpdateWatch applies the request");
            }
        }
    }

    pub async fn subscribe(&self, resources: Vec<ResourceRef>, resume_after: i64) {
        self.send(Req::Subscribe(pb::Subscribe {
            resources,
            resume_after,
            ..Default::default()
        }))
        .await;
    }

    /// Subscribes to customer `id` at `known_version` and waits until the subscription is in place.
    pub async fn join(&mut self, id: &str, known_version: i64) {
        self.subscribe(vec![customer_ref(id, known_version)], 0)
            .await;
        let agent = self.agent.clone();
        self.joined(id, &agent).await;
    }

    /// The next event, heartbeats included.
    pub async fn event(&mut self) -> WatchEvent {
        next_event(&mut self.events).await
    }

    /// The next event that is not a heartbeat (only an `OpenWatch` stream has them).
    pub async fn next(&mut self) -> WatchEvent {
        loop {
            let event = self.event().await;
            if !matches!(event.event, Some(Event::Heartbeat(_))) {
                return event;
            }
        }
    }

    /// The next ResourceChanged, skipping presence.
    pub async fn next_change(&mut self) -> (i64, pb::ResourceChanged) {
        loop {
            let event = self.next().await;
            match event.event {
                Some(Event::ResourceChanged(changed)) => return (event.cursor, changed),
                Some(Event::PresenceChanged(_)) => continue,
                other => panic!("expected a change, got {other:?}"),
            }
        }
    }

    /// Presence events until one for `id` satisfies `done`; returns its participants as (agent, editing).
    pub async fn presence_until(
        &mut self,
        id: &str,
        done: impl Fn(&[(String, bool)]) -> bool,
    ) -> Vec<(String, bool)> {
        loop {
            if let Some(participants) = presence_of(self.next().await, id)
                && done(&participants)
            {
                return participants;
            }
        }
    }

    /// Waits until the subscription of `agent` to `id` is in place (the presence sent on subscribe).
    pub async fn joined(&mut self, id: &str, agent: &str) {
        self.presence_until(id, |p| p.iter().any(|(a, _)| a == agent))
            .await;
    }

    /// Tells the others that this gadget's agent is (or no longer is) editing `resource`.
    pub async fn set_editing(&self, resource: ResourceRef, editing: bool) {
        self.send(Req::SetEditing(pb::SetEditing {
            resource: Some(resource),
            editing,
        }))
        .await;
    }
}

/// The participants of record `id` as (agent, editing), if `event` is its presence.
pub fn presence_of(event: WatchEvent, id: &str) -> Option<Vec<(String, bool)>> {
    let Some(Event::PresenceChanged(presence)) = event.event else {
        return None;
    };
    (presence.resource?.id == id).then(|| {
        presence
            .participants
            .into_iter()
            .map(|p| (p.agent, p.editing))
            .collect()
    })
}

/// Presence participants as (agent, editing).
pub fn participants(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter()
        .map(|(agent, editing)| ((*agent).to_owned(), *editing))
        .collect()
}

/// Ben, watching customer `id` with Ana, starts editing it and then closes his gadget: Ana sees him editing, then
/// herself alone.
pub async fn ana_sees_ben_edit_and_leave(ana: &mut Watcher, ben: Watcher, id: &str) {
    ben.set_editing(customer_ref(id, 1), true).await;
    let editing = ana.presence_until(id, |p| p.iter().any(|(_, e)| *e)).await;
    assert_eq!(editing, participants(&[("ana", false), ("ben", true)]));

    drop(ben);
    let left = ana.presence_until(id, |p| p.len() == 1).await;
    assert_eq!(left, participants(&[("ana", false)]));
}

/// Carla Diaz, written on `written_on`, and `agent`'s `Watch` stream on `watched_on` watching her at version 1.
pub async fn carla_watched_by(
    written_on: &TestApp,
    watched_on: &TestApp,
    agent: &str,
) -> (pb::Customer, Watcher) {
    Shape::Bidi
        .carla_watched_by(written_on, watched_on, agent)
        .await
}

pub fn customer_ref(id: &str, known_version: i64) -> ResourceRef {
    ResourceRef {
        r#type: ResourceType::Customer as i32,
        id: id.to_owned(),
        known_version,
    }
}

/// Sets the customer's notes as `agent` from `version`.
pub async fn set_notes(
    app: &TestApp,
    agent: &str,
    id: &str,
    version: i64,
    notes: &str,
) -> Result<pb::Customer, tonic::Status> {
    let request = pb::UpdateCustomerRequest {
        customer: Some(pb::Customer {
            id: id.to_owned(),
            version,
            notes: notes.to_owned(),
            ..Default::default()
        }),
        update_mask: mask(&["notes"]),
        ..Default::default()
    };
    app.customers()
        .update_customer(as_agent(agent, request))
        .await
        .map(tonic::Response::into_inner)
}

/// Ana's gadget of `shape` watches Carla, gets Ben's first change and goes away; Ben changes Carla three more
/// times. Returns Carla and the cursor of the last event Ana got.
pub async fn ana_misses_three_changes(app: &TestApp, shape: Shape) -> (pb::Customer, i64) {
    let (c, mut ana) = shape.carla_watched_by(app, app, "ana").await;
    set_notes(app, "ben", &c.id, 1, "before the drop")
        .await
        .unwrap();
    let (cursor, _) = ana.next_change().await;
    drop(ana);

    for (version, notes) in [(2, "one"), (3, "two"), (4, "three")] {
        set_notes(app, "ben", &c.id, version, notes).await.unwrap();
    }
    (c, cursor)
}

/// Ana back after [`ana_misses_three_changes`], resumed from `cursor`: she gets exactly the three changes she
/// missed, in commit order, then live changes with no duplicate and no gap.
pub async fn ana_gets_what_she_missed_then_live_changes(
    app: &TestApp,
    ana: &mut Watcher,
    id: &str,
    cursor: i64,
) {
    let mut seen = Vec::new();
    let mut last_cursor = cursor;
    for _ in 0..3 {
        let (cursor, changed) = ana.next_change().await;
        assert!(cursor > last_cursor, "cursors grow in commit order");
        last_cursor = cursor;
        seen.push(changed.resource.unwrap().known_version);
    }
    assert_eq!(seen, [3, 4, 5]);
    set_notes(app, "ben", id, 5, "live again").await.unwrap();
    let (cursor, changed) = ana.next_change().await;
    assert_eq!(
        changed.resource.unwrap().known_version,
        6,
        "no duplicate of the replay, no gap"
    );
    assert!(cursor > last_cursor);
}

#[apply(backends)]
#[tokio::test]
async fn a_watcher_learns_who_changed_what_once_and_not_her_own_saves(
    backend: Backend,
    #[values(Shape::Bidi, Shape::Steered)] shape: Shape,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let (c, mut ana) = shape.carla_watched_by(&app, &app, "ana").await;

    let v2 = set_notes(&app, "ben", &c.id, 1, "called about invoice")
        .await
        .unwrap();
    let (cursor, changed) = ana.next_change().await;
    assert!(cursor > 0);
    assert_eq!(changed.resource.as_ref().unwrap().id, c.id);
    assert_eq!(changed.resource.as_ref().unwrap().known_version, 2);
    assert_eq!(changed.kind, pb::ChangeKind::Updated as i32);
    assert_eq!(changed.changed_by, "ben");
    assert_eq!(changed.changed_fields, ["notes"]);
    assert!(changed.change_time.is_some());

    // Ana's save from the version on her screen is refused, naming Ben.
    let stale = set_notes(&app, "ana", &c.id, 1, "my notes")
        .await
        .unwrap_err();
    assert_version_mismatch(&stale, 2, "ben");

    // Her save after loading is not echoed back to her; the next event she sees is Cy's.
    set_notes(&app, "ana", &c.id, v2.version, "my notes")
        .await
        .unwrap();
    set_notes(&app, "cy", &c.id, 3, "cy's notes").await.unwrap();
    let (_, changed) = ana.next_change().await;
    assert_eq!(
        (
            changed.changed_by.as_str(),
            changed.resource.unwrap().known_version
        ),
        ("cy", 4)
    );
}

#[apply(backends)]
#[tokio::test]
async fn a_stale_known_version_gets_an_event_at_once_and_children_arrive_with_their_parent(
    backend: Backend,
    #[values(Shape::Bidi, Shape::Steered)] shape: Shape,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let c = app.create_customer(customer("Carla", "Diaz")).await;
    set_notes(&app, "ben", &c.id, 1, "first").await.unwrap();
    set_notes(&app, "cy", &c.id, 2, "second").await.unwrap();

    let mut ana = shape.open(&app, "ana").await;
    ana.subscribe(vec![customer_ref(&c.id, 1)], 0).await;
    let (_, changed) = ana.next_change().await;
    assert_eq!(changed.resource.unwrap().known_version, 3);
    assert_eq!(changed.changed_by, "cy");
    assert_eq!(changed.changed_fields, ["notes"]);

    let activity = app.create_activity(activity(&c.id, "Call back")).await;
    let (_, changed) = ana.next_change().await;
    let resource = changed.resource.unwrap();
    assert_eq!(
        (resource.r#type, resource.id.as_str()),
        (ResourceType::Activity as i32, activity.id.as_str())
    );
    assert_eq!(changed.kind, pb::ChangeKind::Created as i32);
    let parent = changed.parent.unwrap();
    assert_eq!(
        (parent.r#type, parent.id.as_str()),
        (ResourceType::Customer as i32, c.id.as_str())
    );

    // Deleting the watched customer is delivered as DELETED (its activity first, in commit order).
    let current = app.get_customer(&c.id).await.unwrap();
    app.customers()
        .delete_customer(as_agent(
            "ben",
            pb::DeleteCustomerRequest {
                id: c.id.clone(),
                version: current.version,
            },
        ))
        .await
        .unwrap();
    let (_, first) = ana.next_change().await;
    assert_eq!(
        (first.resource.unwrap().id, first.kind),
        (activity.id, pb::ChangeKind::Deleted as i32)
    );
    let (_, second) = ana.next_change().await;
    assert_eq!(
        (second.resource.unwrap().id, second.kind),
        (c.id, pb::ChangeKind::Deleted as i32)
    );
}

#[apply(backends)]
#[tokio::test]
async fn presence_shows_who_views_and_edits_and_who_left(
    backend: Backend,
    #[values(Shape::Bidi, Shape::Steered)] shape: Shape,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let c = app.create_customer(customer("Carla", "Diaz")).await;
    let mut ana = shape.open(&app, "ana").await;
    ana.subscribe(vec![customer_ref(&c.id, 1)], 0).await;
    let alone = ana.presence_until(&c.id, |_| true).await;
    assert_eq!(alone, participants(&[("ana", false)]));

    let mut ben = shape.open(&app, "ben").await;
    ben.subscribe(vec![customer_ref(&c.id, 1)], 0).await;
    let both = ben.presence_until(&c.id, |_| true).await;
    assert_eq!(both, participants(&[("ana", false), ("ben", false)]));
    ana.presence_until(&c.id, |p| p.len() == 2).await;

    ana_sees_ben_edit_and_leave(&mut ana, ben, &c.id).await;
}

#[apply(backends)]
#[tokio::test]
async fn a_reconnecting_watcher_gets_exactly_what_it_missed_then_live_changes(
    backend: Backend,
    #[values(Shape::Bidi, Shape::Steered)] shape: Shape,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let (c, cursor) = ana_misses_three_changes(&app, shape).await;

    let mut ana = shape.open(&app, "ana").await;
    ana.subscribe(vec![customer_ref(&c.id, 2)], cursor).await;
    ana_gets_what_she_missed_then_live_changes(&app, &mut ana, &c.id, cursor).await;
}

/// A bad subscription is refused with a precise code. It ends a `Watch` stream with that status; on an
/// `OpenWatch` stream it fails its `UpdateWatch` call, and the stream stays open and takes the next one.
#[apply(backends)]
#[tokio::test]
async fn bad_subscriptions_are_refused_with_a_precise_code(
    backend: Backend,
    #[values(Shape::Bidi, Shape::Steered)] shape: Shape,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let too_many: Vec<_> = (0..1_001).map(|_| customer_ref(&unknown_id(), 0)).collect();
    let refused = [
        (
            "ana",
            vec![customer_ref("not-an-id", 1)],
            Code::InvalidArgument,
            "INVALID_ID",
        ),
        (
            "ben",
            too_many,
            Code::ResourceExhausted,
            "TOO_MANY_SUBSCRIPTIONS",
        ),
    ];
    for (agent, resources, code, reason) in refused {
        let mut watcher = shape.open(&app, agent).await;
        let subscribe = Req::Subscribe(pb::Subscribe {
            resources,
            ..Default::default()
        });
        match shape {
            Shape::Bidi => {
                watcher.send(subscribe).await;
                let status = within("error", watcher.events.message()).await.unwrap_err();
                assert_error(&status, code, reason);
                let after = within("stream end", watcher.events.message()).await;
                assert!(matches!(after, Ok(None)), "the stream ended: {after:?}");
            }
            Shape::Steered => {
                let status = watcher
                    .steering()
                    .update(vec![subscribe])
                    .await
                    .unwrap_err();
                assert_error(&status, code, reason);
                let carla = app.create_customer(customer("Carla", "Diaz")).await;
                watcher.subscribe(vec![customer_ref(&carla.id, 1)], 0).await;
                let alone = watcher.presence_until(&carla.id, |_| true).await;
                assert_eq!(alone, participants(&[(agent, false)]));
            }
        }
    }
}

#[apply(backends)]
#[tokio::test]
async fn shutdown_ends_watch_streams_with_unavailable(
    backend: Backend,
    #[values(Shape::Bidi, Shape::Steered)] shape: Shape,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let (_carla, mut ana) = shape.carla_watched_by(&app, &app, "ana").await;
    let shutdown = tokio::spawn(app.shutdown());
    let status = loop {
        match within("stream end", ana.events.message()).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable);
    within("shutdown", shutdown).await.unwrap();
}

/// Writers never wait on a watcher that stopped reading; its memory stays bounded and it is told to resync.
#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_stops_reading_never_slows_writers_and_gets_resync(
    backend: Backend,
    #[values(Shape::Bidi, Shape::Steered)] shape: Shape,
) {
    const CHANGES: i64 = 100_000;
    const WRITERS: i64 = 8;
    let app = or_skip!(TestApp::spawn(backend).await);
    let (c, mut stalled) = shape.carla_watched_by(&app, &app, "ana").await;

    // Each writer logs activities for the watched customer: 100,000 changes the stalled watcher should get.
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let channel = app.new_channel().await;
        let customer_id = c.id.clone();
        writers.push(tokio::spawn(async move {
            let mut client = pb::activity_service_client::ActivityServiceClient::new(channel);
            for i in 0..CHANGES / WRITERS {
                let request = pb::CreateActivityRequest {
                    activity: Some(pb::Activity {
                        customer_id: customer_id.clone(),
                        topic: format!("writer {w} change {i}"),
                        ..Default::default()
                    }),
                };
                client
                    .create_activity(as_agent("ben", request))
                    .await
                    .expect("write completes");
            }
        }));
    }
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(600), writer)
            .await
            .expect("writers finish without waiting on the watcher")
            .unwrap();
    }

    // Reading again: a bounded backlog, then Resync; nothing like 100,000 events was kept for it.
    let mut delivered = 0;
    loop {
        let event = stalled.next().await;
        match event.event {
            Some(Event::Resync(resync)) => {
                assert!(!resync.reason.is_empty());
                break;
            }
            _ => delivered += 1,
        }
        assert!(
            delivered < 10_000,
            "a stalled watcher must not be sent its whole backlog"
        );
    }
    // And it is live again afterwards.
    app.create_activity(activity(&c.id, "after the resync"))
        .await;
    let (_, changed) = stalled.next_change().await;
    assert_eq!(changed.kind, pb::ChangeKind::Created as i32);
}

/// Hundreds of gadgets subscribing at the same moment on a server with two pooled connections for queries:
/// every one joins quickly and gets exactly what it is owed first (a summed-up change for a stale version, the
/// replay for a resume, presence for an up-to-date one), then every live change once.
#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_subscriptions_all_join_and_each_gets_what_it_missed(
    backend: Backend,
    #[values(Shape::Bidi, Shape::Steered)] shape: Shape,
) {
    const STREAMS: usize = 300;
    const CONNECTIONS: usize = 10;
    let Some(app) = TestApp::spawn_with(backend, |settings| {
        // On PostgreSQL the change and presence listeners hold two of the pool's connections.
        settings.database.db_max_connections = match backend {
            Backend::Sqlite => 2,
            Backend::Postgres => 4,
        };
        // A hundred streams per agent name: the per-key cap of streams is not what this test is about.
        settings.security.max_streams_per_key = 0;
    })
    .await
    else {
        return;
    };
    let (c, mut pilot) = shape.carla_watched_by(&app, &app, "pilot").await;
    set_notes(&app, "ben", &c.id, 1, "one").await.unwrap();
    let (after_v2, _) = pilot.next_change().await;
    set_notes(&app, "ben", &c.id, 2, "two").await.unwrap();
    let (at_v3, _) = pilot.next_change().await;

    // Streams of a few agents over a few connections, opened first; then all subscribe at once.
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(app.new_channel().await);
    }
    let mut watchers = Vec::new();
    for i in 0..STREAMS {
        let agent = format!("agent-{}", i % 3);
        watchers.push(
            shape
                .open_on(channels[i % CONNECTIONS].clone(), &agent)
                .await,
        );
    }
    // A third loaded version 1, a third is up to date, a third resumes from the cursor of version 2.
    let plan = move |i: usize| match i % 3 {
        0 => (1, 0),
        1 => (3, 0),
        _ => (2, after_v2),
    };
    let started = Instant::now();
    let mut firsts = tokio::task::JoinSet::new();
    for (i, mut watcher) in watchers.into_iter().enumerate() {
        let (known, resume_after) = plan(i);
        let watched = vec![customer_ref(&c.id, known)];
        firsts.spawn(async move {
            watcher.subscribe(watched, resume_after).await;
            let first = watcher.next().await;
            (i, first, watcher)
        });
    }
    let mut joined = Vec::new();
    let all_joined = async {
        while let Some(done) = firsts.join_next().await {
            joined.push(done.expect("watcher task"));
        }
    };
    tokio::time::timeout(Duration::from_secs(20), all_joined)
        .await
        .expect("every subscription of the storm joins within 20 s");
    let join_time = started.elapsed();
    assert_eq!(joined.len(), STREAMS);
    for (i, first, _) in &joined {
        let (known, _) = plan(*i);
        match (&first.event, known) {
            (Some(Event::ResourceChanged(changed)), 1 | 2) => {
                assert_eq!(changed.resource.as_ref().unwrap().known_version, 3);
                assert_eq!(changed.changed_by, "ben");
                assert_eq!(first.cursor, at_v3, "stream {i}: the change of version 3");
            }
            (Some(Event::PresenceChanged(_)), 3) => {}
            (other, _) => panic!("stream {i} (known version {known}) first got {other:?}"),
        }
    }

    // Live again: the next change reaches every stream once, after what it already got.
    set_notes(&app, "ben", &c.id, 3, "three").await.unwrap();
    let mut nexts = tokio::task::JoinSet::new();
    for (i, _, mut watcher) in joined {
        nexts.spawn(async move { (i, watcher.next_change().await) });
    }
    while let Some(done) = nexts.join_next().await {
        let (i, (cursor, changed)) = done.expect("watcher task");
        assert_eq!(
            changed.resource.unwrap().known_version,
            4,
            "stream {i}: no duplicate, no gap"
        );
        assert!(cursor > at_v3);
    }
    eprintln!("{STREAMS} subscriptions joined in {join_time:?}");
}
