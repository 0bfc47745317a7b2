//! The metrics listener (`--metrics-listen`): what a scrape shows after real calls and watch streams, that
//! Prometheus' own checker accepts the exposition, and that no label carries an id, a phone number, an address or
//! an agent's name.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use customer_context::pb::{self, watch_event::Event};
use http::{Request, StatusCode, header};
use http_body_util::Full;
use rstest::rstest;
use rstest_reuse::apply;
use tonic::Code;

use crate::{
    context::{ROUTER, call, context_client},
    harness::*,
    watch::{Watcher, customer_ref},
};

/// One series of a scrape: its name and labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
}

/// A series' name, some of its labels, and the value it should have.
type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// A scrape, read back: every series with its value.
struct Exposition {
    text: String,
    series: Vec<(Series, f64)>,
}

impl Exposition {
    /// `GET /metrics` at `addr`.
    async fn scrape(addr: SocketAddr) -> Exposition {
        let (status, content_type, text) = http_get(addr, "/metrics").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        let series = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(parse_sample)
            .collect();
        Exposition { text, series }
    }

    /// The value of the series `name` whose labels include `labels`, summed over the series that match (0 when
    /// none does).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(series, _)| {
                series.name == name
                    && labels.iter().all(|(key, value)| {
                        series.labels.get(*key).map(String::as_str) == Some(value)
                    })
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// Asserts the value of each `(name, labels, value)`, as [`Exposition::value`] reads it.
    fn expect(&self, expected: &[Expected]) {
        for (name, labels, value) in expected {
            assert_eq!(
                self.value(name, labels),
                *value,
                "{name} {labels:?}\n{}",
                self.text
            );
        }
    }

    fn has(&self, name: &str) -> bool {
        self.series.iter().any(|(series, _)| series.name == name)
    }
}

/// `name{a="x",b="y"} value` (label values hold no quotes or commas here: see the label test).
fn parse_sample(line: &str) -> (Series, f64) {
    let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        value => value
            .parse()
            .unwrap_or_else(|_| panic!("a number in {line:?}")),
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}').expect("labels end with }")),
        None => (series, ""),
    };
    let labels = labels
        .split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("label=value");
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .expect("a quoted label value");
            (key.to_owned(), value.to_owned())
        })
        .collect();
    (
        Series {
            name: name.to_owned(),
            labels,
        },
        value,
    )
}

/// One HTTP/1.1 GET: status, content type and body.
async fn http_get(addr: SocketAddr, path: &str) -> (StatusCode, String, String) {
    let request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .body(Full::default())
        .unwrap();
    let (parts, body) = http1(addr, request).await;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        parts.status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

async fn app_with_metrics(backend: Backend) -> Option<(TestApp, SocketAddr)> {
    let app = TestApp::spawn_with(backend, |settings| {
        settings.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await?;
    let addr = app.metrics_addr().expect("metrics are served");
    Some((app, addr))
}

/// Scrapes until `done` holds for the exposition (gauges follow streams that end a moment later).
async fn scrape_until(
    addr: SocketAddr,
    what: &str,
    done: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let exposition = Exposition::scrape(addr).await;
        if done(&exposition) {
            return exposition;
        }
        assert!(
            Instant::now() < deadline,
            "{what}; last scrape:\n{}",
            exposition.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Concurrent CreateActivity calls on PostgreSQL are counted by the batches (one insert statement each) that
/// wrote them, together or alone; SQLite writes them in its writer's transactions
/// (`customer_context_open_context_batch_size`), not here.
#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_activities_are_counted_by_the_statements_that_wrote_them(backend: Backend) {
    const CALLS: usize = 24;
    let (app, addr) = or_skip!(app_with_metrics(backend).await);
    let app = Arc::new(app);
    let ana = app.create_customer(customer("Ana", "Ruiz")).await;
    let calls: Vec<_> = (0..CALLS)
        .map(|n| {
            let (app, id) = (Arc::clone(&app), ana.id.clone());
            tokio::spawn(async move {
                app.create_activity_as("ana", activity(&id, &format!("call {n}")))
                    .await
            })
        })
        .collect();
    for call in calls {
        call.await
            .expect("the call's task")
            .expect("the activity is created");
    }
    let scrape = Exposition::scrape(addr).await;
    let written = scrape.value("customer_context_activity_batch_size_sum", &[]);
    let statements = scrape.value("customer_context_activity_batch_size_count", &[]);
    match backend {
        Backend::Postgres => {
            assert_eq!(written, CALLS as f64, "{}", scrape.text);
            assert!(
                (1.0..=CALLS as f64).contains(&statements),
                "{statements} statements for {CALLS} activities\n{}",
                scrape.text
            );
        }
        Backend::Sqlite => assert_eq!((written, statements), (0.0, 0.0), "{}", scrape.text),
    }
}

const CUSTOMERS: &str = "customer_context.v1.CustomerService";
const WATCH: &str = "customer_context.v1.WatchService";

fn unary(method: &'static str, code: &'static str) -> [(&'static str, &'static str); 4] {
    [
        ("grpc_type", "unary"),
        ("grpc_service", CUSTOMERS),
        ("grpc_method", method),
        ("grpc_code", code),
    ]
}

/// A success, an INVALID_ARGUMENT, a NOT_FOUND, a watch stream with one subscription and a Resync, each seen
/// in the counters and gauges they should move; and the gauges back down once the streams end.
#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_counts_calls_by_code_and_shows_watchers_and_resyncs(backend: Backend) {
    let (app, addr) = or_skip!(app_with_metrics(backend).await);
    let before = Exposition::scrape(addr).await;
    assert_eq!(before.value("customer_context_ready", &[]), 1.0);
    assert_eq!(
        before.value("grpc_server_handled_total", &unary("CreateCustomer", "OK")),
        0.0
    );
    let backend_name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgresql",
    };
    assert_eq!(
        before.value("customer_context_build_info", &[("backend", backend_name)]),
        1.0
    );

    // A success, a refusal of bad input, and a miss.
    let carla = app.create_customer(customer("Carla", "Diaz")).await;
    let mut too_long = customer("Carla", "Diaz");
    too_long.first_name = "x".repeat(2_001);
    let invalid = app
        .customers()
        .create_customer(app.setup(pb::CreateCustomerRequest {
            customer: Some(too_long),
        }))
        .await;
    assert_eq!(err(invalid).code(), Code::InvalidArgument);
    let missing = app
        .customers()
        .get_customer(app.setup(pb::GetCustomerRequest {
            id: "0190a0c0-0000-7000-8000-000000000000".to_owned(),
        }))
        .await;
    assert_eq!(err(missing).code(), Code::NotFound);

    // Ana's gadget watches Carla; Ben's resumes from a cursor the log has not reached and is told to resync.
    let mut ana = Watcher::open(&app, "ana").await;
    ana.join(&carla.id, 1).await;
    let mut ben = Watcher::open(&app, "ben").await;
    ben.subscribe(vec![], 1_000_000_000).await;
    let resync = ben.next().await;
    assert!(matches!(resync.event, Some(Event::Resync(_))), "{resync:?}");

    let during = scrape_until(addr, "both streams counted", |e| {
        e.value("customer_context_watch_streams", &[("kind", "watch")]) == 2.0
    })
    .await;
    assert_eq!(
        during.value("grpc_server_handled_total", &unary("CreateCustomer", "OK")),
        1.0
    );
    assert_eq!(
        during.value(
            "grpc_server_handled_total",
            &unary("CreateCustomer", "InvalidArgument")
        ),
        1.0
    );
    assert_eq!(
        during.value(
            "grpc_server_handled_total",
            &unary("GetCustomer", "NotFound")
        ),
        1.0
    );
    let create = [("grpc_method", "CreateCustomer")];
    assert_eq!(
        during.value("grpc_server_started_total", &create),
        2.0,
        "{}",
        during.text
    );
    assert_eq!(
        during.value("grpc_server_handling_seconds_count", &create),
        2.0
    );
    assert!(during.value("grpc_server_handling_seconds_sum", &create) > 0.0);
    // The refused create never began a transaction.
    assert_eq!(
        during.value(
            "customer_context_db_transaction_seconds_count",
            &[("operation", "create_customer")]
        ),
        1.0
    );
    let watch = [
        ("grpc_type", "bidi_stream"),
        ("grpc_service", WATCH),
        ("grpc_method", "Watch"),
    ];
    assert_eq!(during.value("grpc_server_started_total", &watch), 2.0);
    assert_eq!(
        during.value(
            "customer_context_rpc_in_flight",
            &[("grpc_service", WATCH), ("grpc_method", "Watch")]
        ),
        2.0
    );
    during.expect(&[
        ("customer_context_watch_subscriptions", &[], 1.0),
        ("customer_context_presence_participants", &[], 1.0),
        ("customer_context_watch_resyncs_total", &[], 1.0),
        (
            "customer_context_watch_events_total",
            &[("kind", "resync")],
            1.0,
        ),
    ]);
    assert!(
        during.value(
            "customer_context_watch_events_total",
            &[("kind", "presence")]
        ) >= 1.0,
        "ana was told she views Carla"
    );
    assert_eq!(during.value("customer_context_change_feed_lag", &[]), 0.0);
    assert!(
        during.value("customer_context_db_connections", &[]) >= 1.0,
        "the pool holds connections"
    );
    if backend == Backend::Sqlite {
        assert!(during.has("customer_context_sqlite_wal_bytes"));
    }

    // A change while Ana watches reaches her, and is counted as delivered.
    let mut noted = carla.clone();
    noted.notes = "prefers email".to_owned();
    app.update_customer("ben", noted)
        .await
        .expect("update applies");
    ana.next_change().await;
    let delivered = scrape_until(addr, "the change counted", |e| {
        e.value("customer_context_watch_events_total", &[("kind", "change")]) == 1.0
    })
    .await;
    assert_eq!(
        delivered.value(
            "customer_context_db_transaction_seconds_count",
            &[("operation", "update_customer")]
        ),
        1.0
    );

    // Streams that end leave nothing open behind them; a cancelled stream counts as Canceled.
    drop(ana);
    drop(ben);
    // The stream gauge drops as a stream ends; its subscriptions and presence are released a moment later.
    let after = scrape_until(addr, "the streams closed and released", |e| {
        e.value("customer_context_watch_streams", &[("kind", "watch")]) == 0.0
            && e.value(
                "customer_context_rpc_in_flight",
                &[("grpc_service", WATCH), ("grpc_method", "Watch")],
            ) == 0.0
            && e.value("customer_context_watch_subscriptions", &[]) == 0.0
            && e.value("customer_context_presence_participants", &[]) == 0.0
    })
    .await;
    after.expect(&[(
        "grpc_server_handled_total",
        &[("grpc_method", "Watch")],
        2.0,
    )]);
}

/// Prometheus' own checker finds nothing wrong with the exposition (promtool, from Debian's `prometheus`).
/// Skipped where promtool is not installed, unless CUSTOMER_CONTEXT_TEST_PROMTOOL=require (as in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_exposition() {
    let promtool = std::env::var_os("PROMTOOL").unwrap_or_else(|| "promtool".into());
    let required = std::env::var("CUSTOMER_CONTEXT_TEST_PROMTOOL").as_deref() == Ok("require");
    let available = std::process::Command::new(&promtool)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !available {
        assert!(!required, "promtool is required but not installed");
        eprintln!("skipped: promtool is not installed");
        return;
    }
    let (app, addr) = app_with_metrics(Backend::Sqlite).await.expect("SQLite");
    // Some of every kind of series: calls, a failure, a stream, a transaction.
    let carla = app.create_customer(customer("Carla", "Diaz")).await;
    let _ = app
        .customers()
        .get_customer(app.setup(pb::GetCustomerRequest {
            id: "0190a0c0-0000-7000-8000-000000000000".to_owned(),
        }))
        .await;
    let mut ana = Watcher::open(&app, "ana").await;
    ana.join(&carla.id, 1).await;
    let exposition = Exposition::scrape(addr).await;

    let mut child = tokio::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool starts");
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, exposition.text.as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = within("promtool", child.wait_with_output()).await.unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool: {said}\n{}",
        exposition.text
    );
    assert!(said.trim().is_empty(), "promtool lints: {said}");
}

/// After calls naming customers, phone numbers, addresses, agents and made-up methods, every label of every
/// series holds only values from the service's fixed sets.
#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_label_carries_an_id_a_phone_number_an_address_or_an_agent(backend: Backend) {
    let (app, addr) = or_skip!(app_with_metrics(backend).await);
    const AGENT: &str = "zelda.quintero";
    let zelda = app
        .create_customer(customer_with_contacts(
            "Ana",
            "Lopez",
            vec![phone("+1 415 555 0142"), email("ana.lopez@example.com")],
        ))
        .await;
    let opened = context_client(app.channel())
        .open_context(as_agent(ROUTER, {
            let mut call = call("call-7781", "+14155550142");
            call.agent = AGENT.to_owned();
            call
        }))
        .await
        .expect("open context")
        .into_inner();
    let activity_id = opened.activity.expect("an activity").id;
    let _ = app
        .customers()
        .get_customer(as_agent(
            AGENT,
            pb::GetCustomerRequest {
                id: zelda.id.clone(),
            },
        ))
        .await;
    let _ = app
        .customers()
        .get_customer(as_agent(
            AGENT,
            pb::GetCustomerRequest {
                id: "+14155550142".to_owned(),
            },
        ))
        .await;
    let mut watcher = Watcher::open(&app, AGENT).await;
    watcher.subscribe(vec![customer_ref(&zelda.id, 1)], 0).await;
    watcher.joined(&zelda.id, AGENT).await;
    // A method this server does not have, named like a phone number.
    let mut grpc = tonic::client::Grpc::new(app.channel());
    grpc.ready().await.unwrap();
    let made_up: Result<tonic::Response<pb::Customer>, tonic::Status> = grpc
        .unary(
            as_agent(AGENT, pb::GetCustomerRequest::default()),
            http::uri::PathAndQuery::from_static(
                "/customer_context.v1.CustomerService/+14155550142",
            ),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert_eq!(err(made_up).code(), Code::Unimplemented);

    let exposition = scrape_until(addr, "the made-up call counted", |e| {
        e.value("grpc_server_handled_total", &[("grpc_method", "unknown")]) == 1.0
    })
    .await;
    let personal = [
        zelda.id.as_str(),
        activity_id.as_str(),
        AGENT,
        "zelda",
        "call-7781",
        "4155550142",
        "555",
        "ana.lopez",
        "example.com",
        "Lopez",
    ];
    let allowed_names = [
        "grpc_type",
        "grpc_service",
        "grpc_method",
        "grpc_code",
        "le",
        "reason",
        "kind",
        "channel",
        "operation",
        "pool",
        "state",
        "version",
        "backend",
    ];
    let mut checked = 0;
    for (series, _) in &exposition.series {
        for (name, value) in &series.labels {
            checked += 1;
            assert!(
                allowed_names.contains(&name.as_str()),
                "label {name} of {series:?}"
            );
            for personal in personal {
                assert!(!value.contains(personal), "{series:?} carries {personal:?}");
            }
            assert!(!value.contains('@'), "{series:?} carries an address");
            let digits = value.chars().filter(char::is_ascii_digit).count();
            assert!(
                name == "le" || name == "version" || digits <= 2,
                "{series:?} carries a number"
            );
            assert!(value.len() <= 64, "{series:?} carries a long value");
        }
    }
    assert!(checked > 100, "the scrape had labelled series: {checked}");
}
