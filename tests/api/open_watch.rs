//! The watch stream a browser can use: `OpenWatch` delivers the events of `Watch`, steered by unary
//! `UpdateWatch` calls, with heartbeats. Every wait is on the stream, with a timeout.

use std::time::Duration;

use customer_context::pb::{
    self, ResourceRef, WatchEvent, WatchRequest, watch_event::Event, watch_request::Request as Req,
    watch_service_client::WatchServiceClient,
};
use tonic::{Code, Status, Streaming, transport::Channel};

use rstest::rstest;
use rstest_reuse::apply;

use crate::{
    harness::*,
    watch::{customer_ref, participants, presence_of, set_notes},
};

/// A browser gadget's stream: opened by one call, steered by `UpdateWatch` with growing sequences.
struct Page {
    client: WatchServiceClient<Channel>,
    agent: String,
    watch_id: String,
    sequence: i64,
    events: Streaming<WatchEvent>,
}

impl Page {
    async fn open(app: &TestApp, agent: &str, request: pb::OpenWatchRequest) -> Page {
        let mut client = WatchServiceClient::new(app.new_channel().await);
        let mut events = within("open watch", client.open_watch(as_agent(agent, request)))
            .await
            .expect("OpenWatch opens")
            .into_inner();
        let first = within("first event", events.message())
            .await
            .expect("stream healthy")
            .expect("stream open");
        let Some(Event::WatchOpened(opened)) = first.event else {
            panic!("the first event names the stream, got {first:?}");
        };
        assert_eq!(opened.watch_id.len(), 32, "128 random bits in hex");
        Page {
            client,
            agent: agent.to_owned(),
            watch_id: opened.watch_id,
            sequence: 0,
            events,
        }
    }

    /// A page of `agent` watching customer `id` at `known_version`, once its presence shows it joined.
    async fn watching(app: &TestApp, agent: &str, id: &str, known_version: i64) -> Page {
        let mut page = Page::open(app, agent, pb::OpenWatchRequest::default()).await;
        page.subscribe(vec![customer_ref(id, known_version)], 0)
            .await
            .expect("subscribed");
        page.presence_until(id, |p| p.iter().any(|(a, _)| a == agent))
            .await;
        page
    }

    fn update_request(&mut self, requests: Vec<Req>) -> pb::UpdateWatchRequest {
        self.sequence += 1;
        pb::UpdateWatchRequest {
            watch_id: self.watch_id.clone(),
            sequence: self.sequence,
            requests: requests
                .into_iter()
                .map(|r| WatchRequest { request: Some(r) })
                .collect(),
        }
    }

    async fn update(&mut self, requests: Vec<Req>) -> Result<i64, Status> {
        let request = self.update_request(requests);
        let agent = self.agent.clone();
        within(
            "update watch",
            self.client.update_watch(as_agent(&agent, request)),
        )
        .await
        .map(|r| r.into_inner().cursor)
    }

    async fn subscribe(
        &mut self,
        resources: Vec<ResourceRef>,
        resume_after: i64,
    ) -> Result<i64, Status> {
        self.update(vec![Req::Subscribe(pb::Subscribe {
            resources,
            resume_after,
            ..Default::default()
        })])
        .await
    }

    async fn next(&mut self) -> WatchEvent {
        within("next watch event", self.events.message())
            .await
            .expect("stream healthy")
            .expect("stream still open")
    }

    /// The next ResourceChanged, skipping presence and heartbeats.
    async fn next_change(&mut self) -> (i64, pb::ResourceChanged) {
        loop {
            let event = self.next().await;
            match event.event {
                Some(Event::ResourceChanged(changed)) => return (event.cursor, changed),
                Some(Event::PresenceChanged(_) | Event::Heartbeat(_)) => continue,
                other => panic!("expected a change, got {other:?}"),
            }
        }
    }

    async fn presence_until(
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
}

#[apply(backends)]
#[tokio::test]
async fn a_page_learns_who_changed_what_and_who_views_and_edits(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let carla = app.create_customer(customer("Carla", "Diaz")).await;
    let mut ana = Page::watching(&app, "ana", &carla.id, 1).await;
    let mut ben = Page::watching(&app, "ben", &carla.id, 1).await;
    ana.presence_until(&carla.id, |p| p.len() == 2).await;

    ben.update(vec![Req::SetEditing(pb::SetEditing {
        resource: Some(customer_ref(&carla.id, 1)),
        editing: true,
    })])
    .await
    .unwrap();
    let editing = ana
        .presence_until(&carla.id, |p| p.iter().any(|(_, e)| *e))
        .await;
    assert_eq!(editing, participants(&[("ana", false), ("ben", true)]));

    set_notes(&app, "ben", &carla.id, 1, "Prefers email")
        .await
        .unwrap();
    let (cursor, changed) = ana.next_change().await;
    assert_eq!(changed.changed_by, "ben");
    assert_eq!(changed.changed_fields, ["notes"]);
    assert_eq!(changed.resource.unwrap().known_version, 2);
    assert!(cursor > 0);

    drop(ben);
    let left = ana.presence_until(&carla.id, |p| p.len() == 1).await;
    assert_eq!(left, participants(&[("ana", false)]));
}

#[apply(backends)]
#[tokio::test]
async fn heartbeats_keep_coming_at_the_asked_interval(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let request = pb::OpenWatchRequest {
        heartbeat_interval: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let mut page = Page::open(&app, "ana", request).await;
    let started = std::time::Instant::now();
    for _ in 0..2 {
        let event = page.next().await;
        assert!(
            matches!(event.event, Some(Event::Heartbeat(_))),
            "{event:?}"
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1_900) && elapsed < Duration::from_secs(4),
        "two heartbeats a second apart took {elapsed:?}"
    );

    for (seconds, nanos) in [(0, 500_000_000), (301, 0), (-1, 0)] {
        let mut client = WatchServiceClient::new(app.new_channel().await);
        let request = pb::OpenWatchRequest {
            heartbeat_interval: Some(prost_types::Duration { seconds, nanos }),
            ..Default::default()
        };
        let status = client
            .open_watch(as_agent("ana", request))
            .await
            .unwrap_err();
        assert_eq!(
            field_violations(&status),
            [(
                "heartbeat_interval".to_owned(),
                "INVALID_HEARTBEAT".to_owned()
            )],
            "{seconds} s {nanos} ns"
        );
    }
}

#[apply(backends)]
#[tokio::test]
async fn only_its_opener_may_steer_a_stream_and_an_ended_one_is_not_found(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let carla = app.create_customer(customer("Carla", "Diaz")).await;
    let mut ana = Page::open(&app, "ana", pb::OpenWatchRequest::default()).await;

    let mut ben_client = WatchServiceClient::new(app.new_channel().await);
    let hijack = pb::UpdateWatchRequest {
        watch_id: ana.watch_id.clone(),
        sequence: 1,
        requests: Vec::new(),
    };
    let status = ben_client
        .update_watch(as_agent("ben", hijack.clone()))
        .await
        .unwrap_err();
    assert_error(&status, Code::PermissionDenied, "NOT_WATCH_OWNER");

    let unknown = pb::UpdateWatchRequest {
        watch_id: "0".repeat(32),
        ..hijack.clone()
    };
    let status = ben_client
        .update_watch(as_agent("ben", unknown))
        .await
        .unwrap_err();
    assert_error(&status, Code::NotFound, "NOT_FOUND");

    // A bad request fails its call; the stream stays open and takes the next one.
    let status = ana
        .subscribe(vec![customer_ref("not-an-id", 1)], 0)
        .await
        .unwrap_err();
    assert_error(&status, Code::InvalidArgument, "INVALID_ID");
    ana.subscribe(vec![customer_ref(&carla.id, 1)], 0)
        .await
        .unwrap();
    ana.presence_until(&carla.id, |p| p.len() == 1).await;

    let Page {
        mut client,
        watch_id,
        events,
        ..
    } = ana;
    drop(events);
    let ended = pb::UpdateWatchRequest {
        watch_id,
        sequence: 3,
        requests: Vec::new(),
    };
    // The server notices the closed stream shortly after the client drops it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match client.update_watch(as_agent("ana", ended.clone())).await {
            Err(status) => {
                assert_error(&status, Code::NotFound, "NOT_FOUND");
                break;
            }
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(_) => panic!("an ended stream still takes updates"),
        }
    }
}

#[apply(backends)]
#[tokio::test]
async fn updates_apply_in_sequence_order_even_when_they_arrive_out_of_it(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let carla = app.create_customer(customer("Carla", "Diaz")).await;
    let mut ana = Page::open(&app, "ana", pb::OpenWatchRequest::default()).await;

    // Sequence 2 (start editing) overtakes sequence 1 (subscribe): it waits, then both apply in order.
    let first = ana.update_request(vec![Req::Subscribe(pb::Subscribe {
        resources: vec![customer_ref(&carla.id, 1)],
        ..Default::default()
    })]);
    let second = ana.update_request(vec![Req::SetEditing(pb::SetEditing {
        resource: Some(customer_ref(&carla.id, 1)),
        editing: true,
    })]);
    let mut early = ana.client.clone();
    let early = tokio::spawn(async move { early.update_watch(as_agent("ana", second)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!early.is_finished(), "sequence 2 waits for sequence 1");
    ana.client
        .update_watch(as_agent("ana", first.clone()))
        .await
        .unwrap();
    within("early update", early).await.unwrap().unwrap();
    let editing = ana
        .presence_until(&carla.id, |p| p.iter().any(|(_, e)| *e))
        .await;
    assert_eq!(editing, participants(&[("ana", true)]));

    // A retry of the last one is answered again, not applied twice; an older one and a zero are refused.
    let mut retry = ana.update_request(Vec::new());
    retry.sequence = 2;
    ana.client
        .update_watch(as_agent("ana", retry.clone()))
        .await
        .unwrap();
    for sequence in [1, 0, 200] {
        retry.sequence = sequence;
        let status = ana
            .client
            .update_watch(as_agent("ana", retry.clone()))
            .await
            .unwrap_err();
        assert_eq!(
            field_violations(&status),
            [("sequence".to_owned(), "INVALID_SEQUENCE".to_owned())],
            "sequence {sequence}"
        );
    }
}

#[apply(backends)]
#[tokio::test]
async fn a_reopened_page_gets_exactly_what_it_missed_then_live_changes(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let carla = app.create_customer(customer("Carla", "Diaz")).await;
    let mut ana = Page::watching(&app, "ana", &carla.id, 1).await;
    set_notes(&app, "ben", &carla.id, 1, "before the drop")
        .await
        .unwrap();
    let (cursor, _) = ana.next_change().await;
    drop(ana);
    for (version, notes) in [(2, "one"), (3, "two")] {
        set_notes(&app, "ben", &carla.id, version, notes)
            .await
            .unwrap();
    }

    // The page reopens with its cursor in the opening call itself.
    let request = pb::OpenWatchRequest {
        subscribe: Some(pb::Subscribe {
            resources: vec![customer_ref(&carla.id, 2)],
            resume_after: cursor,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut ana = Page::open(&app, "ana", request).await;
    let mut versions = Vec::new();
    for _ in 0..2 {
        versions.push(ana.next_change().await.1.resource.unwrap().known_version);
    }
    assert_eq!(versions, [3, 4]);
    set_notes(&app, "ben", &carla.id, 4, "live again")
        .await
        .unwrap();
    let (_, changed) = ana.next_change().await;
    assert_eq!(
        changed.resource.unwrap().known_version,
        5,
        "no gap, no duplicate"
    );
}

#[apply(backends)]
#[tokio::test]
async fn a_call_routed_to_an_agent_pops_on_her_page_once(backend: Backend) {
    use crate::context::{call, open};

    let app = or_skip!(TestApp::spawn(backend).await);
    let carla = app
        .create_customer(customer_with_contacts(
            "Carla",
            "Diaz",
            vec![phone("+14155550177")],
        ))
        .await;
    // Ana's page asks for screen-pops in the opening call; Ben's page does not get Ana's calls.
    let pops = pb::OpenWatchRequest {
        subscribe: Some(pb::Subscribe {
            routed_interactions: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut ana = Page::open(&app, "ana", pops.clone()).await;
    let mut ben = Page::open(&app, "ben", pops).await;

    let known = open(&app, call("call-1", "+1 415 555 0177")).await.unwrap();
    let event = ana.next().await;
    let Some(Event::InteractionRouted(routed)) = event.event else {
        panic!("expected the screen-pop, got {event:?}");
    };
    assert_eq!(routed.interaction_id, "call-1");
    assert_eq!(routed.channel, pb::Channel::Voice as i32);
    assert_eq!(routed.direction, pb::Direction::Incoming as i32);
    assert_eq!(routed.customer.unwrap().id, carla.id);
    assert_eq!(routed.activity.unwrap().id, known.activity.unwrap().id);
    assert!(routed.prefill.is_none() && routed.candidates.is_empty());
    assert!(routed.route_time.is_some());

    // The router retries: nothing new pops. An unknown caller pops a prefilled new-customer form.
    open(&app, call("call-1", "+1 415 555 0177")).await.unwrap();
    let unknown = pb::OpenContextRequest {
        display_name: "Dana Evans".to_owned(),
        ..call("call-2", "+1 415 555 0199")
    };
    open(&app, unknown).await.unwrap();
    let event = ana.next().await;
    let Some(Event::InteractionRouted(routed)) = event.event else {
        panic!("expected the second screen-pop, got {event:?}");
    };
    assert_eq!(routed.interaction_id, "call-2", "the retry popped nothing");
    assert!(routed.customer.is_none());
    let prefill = routed.prefill.expect("a prefilled form");
    assert_eq!(
        (prefill.first_name.as_str(), prefill.last_name.as_str()),
        ("Dana", "Evans")
    );

    // Ben's page saw none of it: the next thing it gets is a change to a record it watches.
    ben.subscribe(vec![customer_ref(&carla.id, 1)], 0)
        .await
        .unwrap();
    set_notes(&app, "ana", &carla.id, 1, "Called twice")
        .await
        .unwrap();
    let event = ben.next().await;
    assert!(
        matches!(
            event.event,
            Some(Event::PresenceChanged(_) | Event::ResourceChanged(_))
        ),
        "{event:?}"
    );
}
