//! Several stateless replicas on one PostgreSQL: warnings and presence cross replicas, and a lost listener
//! connection loses no event. These tests need PostgreSQL and are skipped (with a notice) without it.

use std::{
    collections::{HashMap, HashSet},
    net::ToSocketAddrs,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use customer_context::{
    config::DatabaseSettings,
    delay_proxy::DelayProxy,
    domain::{change::ResourceKind, time::now_micros},
    store::Store,
};
use sea_orm::{ConnectionTrait, Database, TransactionTrait};

use customer_context::pb::{
    self, watch_event::Event, watch_request::Request as Req,
    watch_service_client::WatchServiceClient,
};
use tokio::sync::watch;
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

#[tokio::test]
async fn a_change_whose_replica_stopped_before_sequencing_it_still_reaches_watchers() {
    let (db, a, b) = or_skip!(two_replicas().await);
    let (c, mut ana) = carla_watched_by(&b, &a, "ana").await;

    // A replica committed Ben's change and stopped before its sequencing pass: the log row keeps its provisional
    // key until a live replica's feed sequences it.
    let admin = Database::connect(db.url()).await.expect("admin connection");
    let txn = admin.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "UPDATE customers SET version = 2, notes = 'from a replica that stopped' WHERE id = '{}'",
        c.id
    ))
    .await
    .unwrap();
    // The key as inserted (a live replica's poll may sequence the row as soon as it is committed).
    let provisional: i64 = txn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "INSERT INTO change_log (resource_type, resource_id, version, kind, agent, changed_fields, \
                     changes, internal, change_time) \
                 VALUES ('customer', '{}', 2, 'updated', 'ben', '[\"notes\"]', '{{}}', false, {}) \
                 RETURNING seq",
                c.id,
                now_micros()
            ),
        ))
        .await
        .unwrap()
        .expect("the row")
        .try_get("", "seq")
        .unwrap();
    txn.commit()
        .await
        .expect("commit as a stopped replica would have");
    assert!(provisional < 0, "no position yet: {provisional}");

    let (cursor, changed) = ana.next_change().await;
    assert_eq!(
        (
            changed.changed_by.as_str(),
            changed.resource.unwrap().known_version
        ),
        ("ben", 2)
    );
    assert!(cursor > 0);
}

/// A proxy delaying each way by `delay` in front of the PostgreSQL server at `url`, and the URL through it.
fn behind_delay_proxy(url: &str, delay: Duration) -> (DelayProxy, String) {
    let (scheme_user, rest) = url.split_once('@').expect("user@host in the URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let upstream = authority
        .to_socket_addrs()
        .expect("resolvable")
        .next()
        .expect("an address");
    let proxy = DelayProxy::start("127.0.0.1:0".parse().unwrap(), upstream, delay).expect("proxy");
    let url = format!("{scheme_user}@{}/{path}", proxy.addr());
    (proxy, url)
}

/// A change as a watcher was given it: (resource type, id, version), with the event's cursor.
type Delivered = Vec<((i32, String, i64), i64)>;

/// Waits until `watcher` (of `agent`) is in place on every customer in `ids`: the presence each subscription sends.
async fn joined_all(watcher: &mut Watcher, ids: &[String], agent: &str) {
    let mut missing: HashSet<&str> = ids.iter().map(String::as_str).collect();
    while !missing.is_empty() {
        let event = watcher.next().await;
        if let Some(Event::PresenceChanged(presence)) = event.event
            && presence.participants.iter().any(|p| p.agent == agent)
        {
            missing.remove(presence.resource.unwrap().id.as_str());
        }
    }
}

/// Reads `watcher`'s changes into `into` until `stop` fires. The stream must stay healthy: a Resync or an end
/// fails the test.
async fn collect(watcher: &mut Watcher, into: &Mutex<Delivered>, stop: &mut watch::Receiver<bool>) {
    loop {
        let event = tokio::select! {
            event = watcher.events.message() => event,
            _ = stop.changed() => return,
        };
        let event = event.expect("stream healthy").expect("stream open");
        match event.event {
            Some(Event::ResourceChanged(changed)) => {
                let resource = changed.resource.unwrap();
                into.lock().unwrap().push((
                    (resource.r#type, resource.id, resource.known_version),
                    event.cursor,
                ));
            }
            Some(Event::PresenceChanged(_) | Event::Heartbeat(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// `delivered` holds every change of `expected` exactly once and nothing else; each record's versions and all
/// cursors arrive in increasing order.
#[track_caller]
fn assert_each_change_once_in_order(
    who: &str,
    delivered: &Delivered,
    expected: &HashSet<(i32, String, i64)>,
) {
    let mut seen = HashSet::new();
    for (change, _) in delivered {
        assert!(
            seen.insert(change.clone()),
            "{who}: {change:?} delivered twice"
        );
    }
    let missing: Vec<_> = expected.difference(&seen).collect();
    let extra: Vec<_> = seen.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{who}: {} missing {missing:?}, {} not expected {extra:?}",
        missing.len(),
        extra.len()
    );
    let mut last_version: HashMap<(i32, &str), i64> = HashMap::new();
    let mut last_cursor = 0;
    for ((kind, id, version), cursor) in delivered {
        let last = last_version.insert((*kind, id.as_str()), *version);
        assert!(
            last.is_none_or(|last| last < *version),
            "{who}: {id} version {version} after {last:?}"
        );
        assert!(
            *cursor > last_cursor,
            "{who}: cursor {cursor} after {last_cursor}"
        );
        last_cursor = *cursor;
    }
}

#[tokio::test]
async fn writers_on_two_replicas_commit_side_by_side_and_every_watcher_gets_each_change_once() {
    const WRITES: usize = 24;
    // A millisecond from the database, as in production: a transaction's changes then take that long to commit
    // after they are written, so a log that let positions become visible out of order would be caught.
    let db = or_skip!(TestDb::new(Backend::Postgres).await);
    let (_proxy, url) = behind_delay_proxy(db.url(), Duration::from_micros(500));
    let a = TestApp::spawn_on(&url).await;
    let b = TestApp::spawn_on(&url).await;
    let apps = [&a, &b];
    // 16 customers written by one writer each, 4 written by four writers each (racing on versions).
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            a.create_customer(customer("Writer", &format!("Target {i}")))
                .await
                .id,
        );
    }
    let (own, shared) = ids.split_at(16);
    // Ana (replica a) and Cy (replica b) watch every customer written; Ben (replica b) the shared ones and
    // every other own one.
    let bens: Vec<String> = shared
        .iter()
        .chain(own.iter().step_by(2))
        .cloned()
        .collect();
    let subscribe = |ids: &[String]| ids.iter().map(|id| customer_ref(id, 1)).collect();
    let mut ana = Watcher::open(&a, "ana").await;
    ana.subscribe(subscribe(&ids), 0).await;
    joined_all(&mut ana, &ids, "ana").await;
    let mut ben = Watcher::open(&b, "ben").await;
    ben.subscribe(subscribe(&bens), 0).await;
    joined_all(&mut ben, &bens, "ben").await;
    let mut cy = Watcher::open(&b, "cy").await;
    cy.subscribe(subscribe(&ids), 0).await;
    joined_all(&mut cy, &ids, "cy").await;

    let (stop, stopped) = watch::channel(false);
    let delivered: [Arc<Mutex<Delivered>>; 3] = Default::default();
    let mut readers = Vec::new();
    for (mut watcher, into) in [ana, ben].into_iter().zip(delivered.iter().cloned()) {
        let mut stopped = stopped.clone();
        readers.push(tokio::spawn(async move {
            collect(&mut watcher, &into, &mut stopped).await;
        }));
    }
    // Cy's gadget drops its stream after a random number of changes and reopens on the other replica from the
    // last cursor it got, with the versions on its screen.
    let drop_after = 1 + usize::try_from(now_micros() % 600).unwrap();
    {
        let into = delivered[2].clone();
        let mut stopped = stopped.clone();
        let (a, ids) = (a.new_channel().await, ids.clone());
        readers.push(tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    event = cy.events.message() => event,
                    _ = stopped.changed() => return,
                };
                let event = event.expect("stream healthy").expect("stream open");
                if let Some(Event::ResourceChanged(changed)) = event.event {
                    let resource = changed.resource.unwrap();
                    let mut into = into.lock().unwrap();
                    into.push((
                        (resource.r#type, resource.id, resource.known_version),
                        event.cursor,
                    ));
                    if into.len() == drop_after {
                        break;
                    }
                }
            }
            drop(cy);
            let (cursor, on_screen) = {
                let into = into.lock().unwrap();
                let mut on_screen: HashMap<String, i64> =
                    ids.iter().map(|id| (id.clone(), 1)).collect();
                for ((kind, id, version), _) in into.iter() {
                    if *kind == pb::ResourceType::Customer as i32 {
                        on_screen.insert(id.clone(), *version);
                    }
                }
                (into.last().unwrap().1, on_screen)
            };
            let mut cy = crate::watch::Shape::Bidi.open_on(a, "cy").await;
            let resources = ids
                .iter()
                .map(|id| customer_ref(id, on_screen[id]))
                .collect();
            cy.subscribe(resources, cursor).await;
            collect(&mut cy, &into, &mut stopped).await;
        }));
    }
    // Every acknowledged change, with the customer it is about.
    let acknowledged = Arc::new(Mutex::new(HashMap::new()));
    let mut writers = Vec::new();
    for w in 0..32 {
        let app = apps[w % 2].channel();
        let acknowledged = acknowledged.clone();
        let agent = format!("writer-{w}");
        let target = if w < 16 {
            own[w].clone()
        } else {
            shared[w % 4].clone()
        };
        writers.push(tokio::spawn(async move {
            let mut customers =
                pb::customer_service_client::CustomerServiceClient::new(app.clone());
            let mut activities = pb::activity_service_client::ActivityServiceClient::new(app);
            for n in 0..WRITES {
                if w < 16 && n % 2 == 1 {
                    let created = activities
                        .create_activity(as_agent(
                            &agent,
                            pb::CreateActivityRequest {
                                activity: Some(activity(&target, &format!("call {n}"))),
                            },
                        ))
                        .await
                        .expect("activity created")
                        .into_inner();
                    acknowledged.lock().unwrap().insert(
                        (
                            pb::ResourceType::Activity as i32,
                            created.id,
                            created.version,
                        ),
                        target.clone(),
                    );
                    continue;
                }
                // Save from the version on screen; a save refused as stale reloads and saves again.
                let saved = loop {
                    let current = customers
                        .get_customer(pb::GetCustomerRequest { id: target.clone() })
                        .await
                        .expect("customer read")
                        .into_inner();
                    let request = update_customer_request(
                        pb::Customer {
                            id: target.clone(),
                            version: current.version,
                            notes: format!("{agent} note {n}"),
                            ..Default::default()
                        },
                        &["notes"],
                    );
                    match customers.update_customer(as_agent(&agent, request)).await {
                        Ok(saved) => break saved.into_inner(),
                        Err(status) if status.code() == Code::Aborted => continue,
                        Err(status) => panic!("{agent}: {status:?}"),
                    }
                };
                acknowledged.lock().unwrap().insert(
                    (pb::ResourceType::Customer as i32, saved.id, saved.version),
                    target.clone(),
                );
            }
        }));
    }
    for writer in writers {
        within("writer", writer).await.expect("writer finished");
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(
        acknowledged.len(),
        16 * WRITES + 16 * WRITES,
        "every write acknowledged once"
    );

    // What each watcher must get: every acknowledged change of the customers it watches (their activities too).
    let about = |watched: &[String]| -> HashSet<(i32, String, i64)> {
        acknowledged
            .iter()
            .filter(|(_, customer)| watched.contains(customer))
            .map(|(change, _)| change.clone())
            .collect()
    };
    let expected = [about(&ids), about(&bens), about(&ids)];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let covered = delivered
            .iter()
            .zip(&expected)
            .all(|(delivered, expected)| {
                let delivered = delivered.lock().unwrap();
                expected
                    .iter()
                    .all(|change| delivered.iter().any(|(c, _)| c == change))
            });
        if covered || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Anything extra (a duplicate) would arrive right behind.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    for reader in readers {
        within("watch reader", reader)
            .await
            .expect("reader finished");
    }
    for ((who, delivered), expected) in ["ana", "ben", "cy"].iter().zip(&delivered).zip(&expected) {
        let delivered = delivered.lock().unwrap();
        if *who == "cy" {
            eprintln!(
                "cy dropped her stream after {drop_after} changes and resumed on the other replica"
            );
        }
        assert_each_change_once_in_order(who, &delivered, expected);
    }
}

/// Statistics taken while a large load waited for its positions (a seeding, an import) say that most of the log
/// is pending. The sequencing pass must still read only the rows that wait, through their index, and not join
/// the whole log: that made each pass cost more the longer the log grew (10 ms after 12,000 writes).
#[tokio::test]
async fn a_sequencing_pass_reads_only_the_waiting_rows_whatever_the_statistics_say() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let app = TestApp::spawn_on(db.url()).await;
    let c = app.create_customer(customer("Carla", "Diaz")).await;
    let admin = Database::connect(db.url()).await.expect("admin connection");
    // 20,000 changes of a load, analyzed while they wait, then sequenced.
    admin
        .execute_unprepared(&format!(
            "INSERT INTO change_log (resource_type, resource_id, version, kind, agent, changed_fields, changes, \
                 internal, change_time) \
             SELECT 'customer', 'load-' || n, 1, 'created', 'seed', '[]', '{{}}', false, {} \
             FROM generate_series(1, 20000) AS n",
            now_micros()
        ))
        .await
        .unwrap();
    admin
        .execute_unprepared("ANALYZE change_log")
        .await
        .unwrap();
    let pass = customer_context::store::change_log::SEQUENCE_PASS;
    admin.execute_unprepared(pass).await.unwrap();
    set_notes(&app, "ben", &c.id, 1, "after the load")
        .await
        .unwrap();

    // A pass with one row waiting (this transaction's own; positions 1 to 20,002 are the customer, the load and
    // the note), and what it read, from the transaction's statistics.
    let txn = admin.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "INSERT INTO change_log (resource_type, resource_id, version, kind, agent, changed_fields, changes, \
             internal, change_time) \
         VALUES ('customer', '{}', 3, 'updated', 'ben', '[]', '{{}}', false, {})",
        c.id,
        now_micros()
    ))
    .await
    .unwrap();
    let given: Option<i64> = txn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            pass,
        ))
        .await
        .unwrap()
        .expect("a row")
        .try_get_by_index(0)
        .unwrap();
    let read = |sql: &str| {
        let txn = &txn;
        let sql = sql.to_owned();
        async move {
            txn.query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                sql,
            ))
            .await
            .unwrap()
            .expect("a row")
            .try_get_by_index::<i64>(0)
            .unwrap()
        }
    };
    let whole_table_reads =
        read("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'change_log'").await;
    let pending_index_reads =
        read("SELECT COALESCE(pg_stat_get_xact_numscans(to_regclass('change_log_pending')), 0)")
            .await;
    txn.rollback().await.unwrap();
    assert_eq!(given, Some(20_003), "the waiting row got the next position");
    assert_eq!(whole_table_reads, 0, "the pass read the whole log");
    assert!(
        pending_index_reads >= 1,
        "the waiting rows were not read through their index"
    );
}
