//! 32 clients race to update one record from the same version, round after round: exactly one wins each version,
//! the others are told (ABORTED), and no update is silently lost.

use std::collections::BTreeMap;

use customer_context::pb::{self, customer_service_client::CustomerServiceClient};
use rstest::rstest;
use rstest_reuse::apply;
use tonic::Code;

use crate::harness::*;

const CLIENTS: usize = 32;
const ROUNDS: usize = 10;

#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_clients_from_one_version_one_wins_each_version_and_nothing_is_lost(
    backend: Backend,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let target = app.create_customer(customer("Carla", "Diaz")).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(CustomerServiceClient::new(app.new_channel().await));
    }

    // Each client writes its own tag value; a win is recorded with the version it produced.
    let mut wins: BTreeMap<i64, String> = BTreeMap::new();
    let mut aborted = 0;
    for round in 0..ROUNDS {
        let current = app.get_customer(&target.id).await.expect("read");
        let calls = clients.iter().enumerate().map(|(n, client)| {
            let mut client = client.clone();
            let change = pb::Customer {
                notes: format!("round {round} client {n}"),
                ..customer_at(&current.id, current.version)
            };
            let request = update_customer_request(change, &["notes"]);
            async move {
                client
                    .update_customer(as_agent(&format!("agent-{n}"), request))
                    .await
            }
        });
        let results = within(
            "a round of racing updates",
            futures::future::join_all(calls),
        )
        .await;
        let mut round_wins = 0;
        for result in results {
            match result {
                Ok(response) => {
                    let updated = response.into_inner();
                    assert_eq!(updated.version, current.version + 1);
                    assert!(
                        wins.insert(updated.version, updated.notes).is_none(),
                        "two winners of one version"
                    );
                    round_wins += 1;
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::Aborted, "a loser is told: {status:?}");
                    assert_eq!(error_info(&status).reason, "VERSION_MISMATCH");
                    aborted += 1;
                }
            }
        }
        assert_eq!(round_wins, 1, "exactly one winner in round {round}");
    }

    let last = app.get_customer(&target.id).await.expect("read");
    assert_eq!(
        last.version,
        1 + wins.len() as i64,
        "the final version counts the successes"
    );
    assert_eq!(aborted, ROUNDS * (CLIENTS - 1));
    assert_eq!(
        Some(&last.notes),
        wins.values().last(),
        "the last success is what is stored"
    );
    assert_eq!(
        wins.keys().copied().collect::<Vec<_>>(),
        (2..=last.version).collect::<Vec<_>>()
    );
}
