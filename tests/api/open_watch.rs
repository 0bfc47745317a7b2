//! The watch stream a browser can use: `OpenWatch` delivers the events of `Watch`, steered by unary
//! `UpdateWatch` calls, with heartbeats. What it shares with `Watch` is tested on both shapes in `watch.rs`; here
//! is what only it has. Every wait is on the stream, with a timeout.

use std::time::Duration;

use customer_context::pb::{
    self, watch_event::Event, watch_request::Request as Req,
    watch_service_client::WatchServiceClient,
};
use tonic::Code;

use rstest::rstest;
use rstest_reuse::apply;

use crate::{
    harness::*,
    watch::{
        Shape, Watcher, ana_gets_what_she_missed_then_live_changes, ana_misses_three_changes,
        customer_ref, participants, set_notes,
    },
};

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
    let mut page = Watcher::open_steered(&app, "ana", request).await;
    let started = std::time::Instant::now();
    for _ in 0..2 {
        let event = page.event().await;
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
    let ana = Shape::Steered.open(&app, "ana").await;

    let mut ben_client = WatchServiceClient::new(app.new_channel().await);
    let hijack = pb::UpdateWatchRequest {
        watch_id: ana.steering().watch_id.clone(),
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

    // The stream takes its opener's updates until it ends. (A bad request fails its call and leaves the stream
    // open: `watch::bad_subscriptions_are_refused_with_a_precise_code`.)
    ana.steering().update(Vec::new()).await.unwrap();
    let mut client = ana.steering().client.clone();
    let ended = ana.steering().request(Vec::new());
    drop(ana);
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
    let mut ana = Shape::Steered.open(&app, "ana").await;
    let mut client = ana.steering().client.clone();

    // Sequence 2 (start editing) overtakes sequence 1 (subscribe): it waits, then both apply in order.
    let first = ana.steering().request(vec![Req::Subscribe(pb::Subscribe {
        resources: vec![customer_ref(&carla.id, 1)],
        ..Default::default()
    })]);
    let second = ana.steering().request(vec![Req::SetEditing(pb::SetEditing {
        resource: Some(customer_ref(&carla.id, 1)),
        editing: true,
    })]);
    let mut early = client.clone();
    let early = tokio::spawn(async move { early.update_watch(as_agent("ana", second)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!early.is_finished(), "sequence 2 waits for sequence 1");
    client
        .update_watch(as_agent("ana", first.clone()))
        .await
        .unwrap();
    within("early update", early).await.unwrap().unwrap();

    let editing = ana
        .presence_until(&carla.id, |p| p.iter().any(|(_, e)| *e))
        .await;
    assert_eq!(editing, participants(&[("ana", true)]));

    // A retry of the last one is answered again, not applied twice; an older one and a zero are refused.
    let mut retry = ana.steering().request(Vec::new());
    retry.sequence = 2;
    client
        .update_watch(as_agent("ana", retry.clone()))
        .await
        .unwrap();
    for sequence in [1, 0, 200] {
        retry.sequence = sequence;
        let status = client
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
    let (carla, cursor) = ana_misses_three_changes(&app, Shape::Steered).await;

    // The page reopens with its cursor in the opening call itself.
    let request = pb::OpenWatchRequest {
        subscribe: Some(pb::Subscribe {
            resources: vec![customer_ref(&carla.id, 2)],
            resume_after: cursor,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut ana = Watcher::open_steered(&app, "ana", request).await;
    ana_gets_what_she_missed_then_live_changes(&app, &mut ana, &carla.id, cursor).await;
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
    let mut ana = Watcher::open_steered(&app, "ana", pops.clone()).await;
    let mut ben = Watcher::open_steered(&app, "ben", pops).await;

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
    ben.subscribe(vec![customer_ref(&carla.id, 1)], 0).await;
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
