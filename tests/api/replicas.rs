//! Several stateless replicas on one PostgreSQL: warnings and presence cross replicas, and a lost listener
//! connection loses no event. These tests need PostgreSQL and are skipped (with a notice) without it.

use std::time::{Duration, Instant};

use customer_context::{
    config::DatabaseSettings,
    domain::{change::ResourceKind, time::now_micros},
    store::Store,
};
use sea_orm::{ConnectionTrait, Database};

use crate::{
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
