//! The real server binary is killed (SIGKILL) while 8 clients write; after a restart every acknowledged write is
//! there and versions are consistent.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use customer_context::pb::{self, customer_service_client::CustomerServiceClient};
use rstest::rstest;
use rstest_reuse::apply;
use tonic::transport::Channel;

use crate::harness::*;

/// Starts `customer-context serve` on a free port and returns it with its address.
pub(crate) fn start_server(url: &str) -> (Child, String) {
    let mut command = serve_command(url);
    command.args(["--log-format", "text"]);
    spawn_server(command)
}

/// `customer-context serve` on a free port of the loopback, on the database at `url`, logging at info level.
pub(crate) fn serve_command(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_customer-context"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", url])
        .env("RUST_LOG", "info");
    command
}

/// Runs a [`serve_command`] and returns the server with its address once it logs where it listens.
pub(crate) fn spawn_server(mut command: Command) -> (Child, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server logs where it listens")
            .expect("log line");
        eprintln!("server: {line}");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().expect("address").to_owned();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe. The lines go to the test's captured
    // output (a spawned thread inherits it), which the harness shows only when the test fails.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("server: {line}");
        }
    });
    (child, format!("http://{addr}"))
}

/// Stops a server started by [`start_server`] with SIGTERM and checks that it exits cleanly.
pub(crate) async fn stop_gracefully(mut server: Child) {
    let stopped = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(stopped.success());
    let exit = tokio::task::spawn_blocking(move || server.wait())
        .await
        .expect("join")
        .expect("the server exits");
    assert!(exit.success(), "graceful exit: {exit:?}");
}

pub(crate) async fn client(addr: &str) -> CustomerServiceClient<Channel> {
    CustomerServiceClient::new(channel(addr).await)
}

/// A connection to a server started by [`start_server`].
pub(crate) async fn channel(addr: &str) -> Channel {
    within(
        "connect",
        Channel::from_shared(addr.to_owned())
            .expect("uri")
            .connect(),
    )
    .await
    .expect("connects")
}

/// What a writer was told succeeded: its customer and the last version and notes acknowledged.
#[derive(Debug)]
struct Acknowledged {
    id: String,
    version: i64,
    notes: String,
}

#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_kill_9(backend: Backend) {
    let db = or_skip!(TestDb::new(backend).await);
    let (mut server, addr) = start_server(db.url());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let mut customers = client(&addr).await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acknowledged: Vec<Acknowledged> = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // A new customer every 10 writes, updated in between.
                let result = if i % 10 == 0 {
                    customers
                        .create_customer(as_agent(
                            &format!("writer-{w}"),
                            pb::CreateCustomerRequest {
                                customer: Some(pb::Customer {
                                    notes: format!("w{w} #{i}"),
                                    ..Default::default()
                                }),
                            },
                        ))
                        .await
                } else {
                    let last = acknowledged.last().expect("created first");
                    customers
                        .update_customer(as_agent(
                            &format!("writer-{w}"),
                            pb::UpdateCustomerRequest {
                                customer: Some(pb::Customer {
                                    id: last.id.clone(),
                                    version: last.version,
                                    notes: format!("w{w} #{i}"),
                                    ..Default::default()
                                }),
                                update_mask: mask(&["notes"]),
                                ..Default::default()
                            },
                        ))
                        .await
                };
                match result {
                    Ok(response) => {
                        let c = response.into_inner();
                        if i % 10 == 0 {
                            acknowledged.push(Acknowledged {
                                id: c.id,
                                version: c.version,
                                notes: c.notes,
                            });
                        } else if let Some(last) = acknowledged.last_mut() {
                            last.version = c.version;
                            last.notes = c.notes;
                        }
                    }
                    // The server is gone: whatever was not acknowledged may or may not have been written.
                    Err(_) => break,
                }
            }
            acknowledged
        }));
    }
    // Let the writers get going, then kill the server mid-write.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.kill().expect("SIGKILL");
    let _ = server.wait();
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(within("writer", writer).await.expect("writer task"));
    }
    assert!(
        acknowledged.len() >= 8,
        "writers made progress before the kill: {}",
        acknowledged.len()
    );

    let (mut server, addr) = start_server(db.url());
    let mut customers = client(&addr).await;
    for ack in &acknowledged {
        let found = customers
            .get_customer(pb::GetCustomerRequest { id: ack.id.clone() })
            .await
            .unwrap_or_else(|e| panic!("acknowledged customer {} lost: {e}", ack.id))
            .into_inner();
        // At most one more write (sent, committed, but not acknowledged before the kill) may have landed.
        assert!(
            found.version == ack.version || found.version == ack.version + 1,
            "customer {}: acknowledged version {}, found {}",
            ack.id,
            ack.version,
            found.version
        );
        if found.version == ack.version {
            assert_eq!(
                found.notes, ack.notes,
                "the acknowledged value is the stored one"
            );
        }
        // The next write continues from the stored version.
        customers
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    id: found.id.clone(),
                    version: found.version,
                    notes: "after".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["notes"]),
                ..Default::default()
            })
            .await
            .expect("writes continue after the restart");
    }
    server.kill().expect("stop the server");
    let _ = server.wait();
}
