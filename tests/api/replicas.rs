//! Several stateless replicas on one PostgreSQL: warnings and presence cross replicas, and a lost listener
//! connection loses no event. These tests need PostgreSQL and are skipped (with a notice) without it.

use std::time::{Duration, Instant};

use customer_context::{
    config::DatabaseSettings,
    domain::{change::ResourceKind, time::now_micros},
    store::Store,
};
use sea_orm::{ConnectionTrait, Database};

use customer_context::pb::{
    self, watch_event::Event, watch_request::Request as Req,
    watch_service_client::WatchServiceClient,
};
use tonic::Code;

use crate::{
    context::{call, open},
    harness::*,
    watch::{
        Watcher, ana_sees_ben_edit_and_leave, carla_watched_by, customer_ref, participants,
        set_notes,
    },
};

/// Two replicas on one fresh PostgreSQL database, or None without PostgreSQL.
async fn two_replicas() -> Option<(TestDb, TestApp, TestApp)> {
    let db = TestDb::new(Backend::Postgres).await?;
    let a = TestApp::spawn_on(db.url()).await;
    let b = TestApp::spawn_on(db.url()).await;
    Some((db, a, b))
}

#[tokio::test]
async fn a_change_through_one_replica_reaches_a_watcher_on_the_other_within_a_second() {
    let (_db, a, b) = or_skip!(two_replicas().await);
    let (c, mut ana) = carla_watched_by(&b, &a, "ana").await;

    let started = Instant::now();
    set_notes(&b, "ben", &c.id, 1, "changed on replica b")
        .await
        .unwrap();
    let (_, changed) = ana.next_change().await;
    let elapsed = started.elapsed();
    assert_eq!(
        (
            changed.changed_by.as_str(),
            changed.resource.unwrap().known_version
        ),
        ("ben", 2)
    );
    assert!(
        elapsed < Duration::from_secs(1),
        "delivered after {elapsed:?}"
    );
}

#[tokio::test]
async fn presence_crosses_replicas_both_ways() {
    let (_db, a, b) = or_skip!(two_replicas().await);
    let (c, mut ana) = carla_watched_by(&a, &a, "ana").await;
    let mut ben = Watcher::open(&b, "ben").await;
    ben.subscribe(vec![customer_ref(&c.id, 1)], 0).await;

    let both = participants(&[("ana", false), ("ben", false)]);
    assert_eq!(ben.presence_until(&c.id, |p| p.len() == 2).await, both);
    assert_eq!(ana.presence_until(&c.id, |p| p.len() == 2).await, both);

    ana_sees_ben_edit_and_leave(&mut ana, ben, &c.id).await;
}

#[tokio::test]
async fn killing_the_listener_connection_loses_no_event() {
    let (db, a, b) = or_skip!(two_replicas().await);
    let (c, mut ana) = carla_watched_by(&b, &a, "ana").await;

    let admin = Database::connect(db.url()).await.expect("admin connection");
    let killed = admin
        .execute_unprepared(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query ILIKE 'LISTEN%customer_context_changes%'",
        )
        .await
        .expect("terminate listeners")
        .rows_affected();
    assert!(
        killed >= 1,
        "the replicas' change listeners were found and terminated"
    );

    for version in 1..=5 {
        set_notes(&b, "ben", &c.id, version, &format!("note {version}"))
            .await
            .unwrap();
    }
    let mut versions = Vec::new();
    for _ in 0..5 {
        let (_, changed) = ana.next_change().await;
        versions.push(changed.resource.unwrap().known_version);
    }
    assert_eq!(
        versions,
        [2, 3, 4, 5, 6],
        "every change once, in commit order"
    );
}

#[tokio::test]
async fn a_call_routed_through_one_replica_pops_on_the_agents_page_on_the_other() {
    let (_db, a, b) = or_skip!(two_replicas().await);
    let carla = a
        .create_customer(customer_with_contacts(
            "Carla",
            "Diaz",
            vec![phone("+14155550177")],
        ))
        .await;
    let mut ana = Watcher::open(&a, "ana").await;
    ana.send(Req::Subscribe(pb::Subscribe {
        resources: vec![customer_ref(&carla.id, 1)],
        routed_interactions: true,
        ..Default::default()
    }))
    .await;
    ana.joined(&carla.id, "ana").await;

    let started = Instant::now();
    open(&b, call("call-b-1", "+1 415 555 0177")).await.unwrap();
    let routed = loop {
        if let Some(Event::InteractionRouted(routed)) = ana.next().await.event {
            break routed;
        }
    };
    let elapsed = started.elapsed();
    assert_eq!(routed.interaction_id, "call-b-1");
    assert_eq!(routed.customer.unwrap().id, carla.id);
    assert!(elapsed < Duration::from_secs(2), "popped after {elapsed:?}");
}

/// The next change on an OpenWatch stream, as (cursor, new version), skipping everything else.
async fn next_change(events: &mut tonic::Streaming<pb::WatchEvent>) -> (i64, i64) {
    loop {
        let event = within("watch event", events.message())
            .await
            .unwrap()
            .unwrap();
        match event.event {
            Some(Event::ResourceChanged(changed)) => {
                return (event.cursor, changed.resource.unwrap().known_version);
            }
            Some(Event::WatchOpened(_) | Event::PresenceChanged(_) | Event::Heartbeat(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_update_that_reaches_another_replica_is_not_found_and_a_reopen_there_misses_nothing() {
    let (_db, a, b) = or_skip!(two_replicas().await);
    let carla = a.create_customer(customer("Carla", "Diaz")).await;
    let opening = |resume_after| pb::OpenWatchRequest {
        subscribe: Some(pb::Subscribe {
            resources: vec![customer_ref(&carla.id, 1)],
            resume_after,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut on_a = WatchServiceClient::new(a.new_channel().await);
    let mut events = on_a
        .open_watch(as_agent("ana", opening(0)))
        .await
        .unwrap()
        .into_inner();
    let Some(Event::WatchOpened(opened)) = events.message().await.unwrap().unwrap().event else {
        panic!("the stream opens with its watch_id");
    };
    set_notes(&b, "ben", &carla.id, 1, "one").await.unwrap();
    let (cursor, version) = next_change(&mut events).await;
    assert_eq!(version, 2);

    // The page's next UpdateWatch goes through the load balancer to replica b.
    let update = pb::UpdateWatchRequest {
        watch_id: opened.watch_id,
        sequence: 1,
        requests: vec![pb::WatchRequest {
            request: Some(Req::SetEditing(pb::SetEditing {
                resource: Some(customer_ref(&carla.id, 2)),
                editing: true,
            })),
        }],
    };
    let status = WatchServiceClient::new(b.new_channel().await)
        .update_watch(as_agent("ana", update))
        .await
        .unwrap_err();
    assert_error(&status, Code::NotFound, "NOT_FOUND");

    // It reopens on b with its cursor; what happened meanwhile comes first, once, then live changes.
    drop(events);
    set_notes(&b, "ben", &carla.id, 2, "two").await.unwrap();
    let mut on_b = WatchServiceClient::new(b.new_channel().await);
    let mut events = on_b
        .open_watch(as_agent("ana", opening(cursor)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_change(&mut events).await.1, 3);
    set_notes(&a, "ben", &carla.id, 3, "three").await.unwrap();
    assert_eq!(next_change(&mut events).await.1, 4, "no gap, no duplicate");
}

#[tokio::test]
async fn a_replica_that_dies_leaves_presence_within_30_seconds() {
    let (db, a, _b) = or_skip!(two_replicas().await);
    let (c, mut ana) = carla_watched_by(&a, &a, "ana").await;

    // A replica published Zed as editing and then died: it never refreshes or withdraws its rows.
    let store = Store::connect(&DatabaseSettings::new(db.url()))
        .await
        .expect("store");
    let heartbeat_lapses = now_micros() + 2_000_000;
    store
        .publish_presence(
            "dead-replica",
            ResourceKind::Customer,
            &c.id,
            &vec![("zed".to_owned(), true)],
            heartbeat_lapses,
        )
        .await
        .expect("publish");
    ana.presence_until(&c.id, |p| p.iter().any(|(agent, _)| agent == "zed"))
        .await;
    let died = Instant::now();
    let alone = ana
        .presence_until(&c.id, |p| p.iter().all(|(agent, _)| agent != "zed"))
        .await;
    assert_eq!(alone, participants(&[("ana", false)]));
    assert!(
        died.elapsed() < Duration::from_secs(30),
        "gone after {:?}",
        died.elapsed()
    );
    store.close().await;
}
