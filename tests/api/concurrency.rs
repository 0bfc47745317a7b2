//! Optimistic concurrency through real, separate client connections: the first writer wins, the others learn who
//! changed the record and to which version, and nothing of the winner's change is lost.

use std::{collections::HashMap, fmt::Debug, future::Future, sync::Arc};

use customer_context::pb::{
    self, activity_service_client::ActivityServiceClient,
    customer_service_client::CustomerServiceClient, request_service_client::RequestServiceClient,
};
use tokio::sync::Barrier;
use tonic::{Code, Response, Status, transport::Channel};

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

/// A customer brought to version 3 by two earlier edits.
async fn customer_at_version_3(app: &TestApp) -> pb::Customer {
    let mut current = app
        .create_customer(pb::Customer {
            company: "Acme".to_owned(),
            tags: strings(&["new"]),
            ..customer("Ana", "Lopez")
        })
        .await;
    for notes in ["first edit", "second edit"] {
        let change = pb::Customer {
            notes: notes.to_owned(),
            ..current
        };
        current = app
            .update_customer(SETUP_AGENT, change)
            .await
            .expect("setup edit");
    }
    assert_eq!(current.version, 3);
    current
}

/// `writers` agents (`agent-0`, `agent-1`, ...) each over its own connection write the same record at version 1
/// at once: `write(writer, agent, channel)` is a writer's call. Exactly one wins; every other is refused with
/// VERSION_MISMATCH naming the winner at version 2. Returns the winner and what it saved.
async fn race_from_version_1<T, W, F>(app: &TestApp, writers: usize, write: W) -> (String, T)
where
    W: Fn(usize, String, Channel) -> F,
    F: Future<Output = Result<Response<T>, Status>> + Send + 'static,
    T: Debug + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(writers));
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let agent = format!("agent-{writer}");
        let call = write(writer, agent.clone(), app.new_channel().await);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let outcome = call.await;
            (agent, outcome)
        }));
    }
    let results = within("concurrent updates", futures::future::join_all(tasks)).await;

    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for result in results {
        match result.expect("writer task") {
            (agent, Ok(response)) => winners.push((agent, response.into_inner())),
            (_, Err(status)) => losers.push(status),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one writer wins; losers: {losers:?}"
    );
    let (winner, saved) = winners.pop().expect("one winner");
    for status in &losers {
        assert_version_mismatch(status, 2, &winner);
    }
    (winner, saved)
}

#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_writer_from_a_stale_version_is_aborted_naming_the_winner_and_loses_nothing(
    backend: Backend,
) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let seeded = customer_at_version_3(&app).await;
    let mut ana = CustomerServiceClient::new(app.new_channel().await);
    let mut ben = CustomerServiceClient::new(app.new_channel().await);

    // Both agents read the customer at version 3.
    let get = |id: &str| pb::GetCustomerRequest { id: id.to_owned() };
    let (ana_view, ben_view) = within("both reads", async {
        tokio::join!(
            ana.get_customer(as_agent("ana", get(&seeded.id))),
            ben.get_customer(as_agent("ben", get(&seeded.id))),
        )
    })
    .await;
    let (ana_view, ben_view) = (ok(ana_view), ok(ben_view));
    assert_eq!(ana_view.version, 3);
    assert_eq!(ben_view, ana_view);

    // Ana saves first: every mutable field changes.
    let ana_change = pb::Customer {
        first_name: "Anabel".to_owned(),
        company: "Acme Europe".to_owned(),
        notes: "moved to Berlin".to_owned(),
        tags: strings(&["relocated", "vip"]),
        credit_hold: true,
        contact_points: vec![phone("+49 30 901820")],
        attributes: HashMap::from([("city".to_owned(), "Berlin".to_owned())]),
        ..ana_view
    };
    let call = update_customer_request(ana_change.clone(), &[]);
    let saved = ok(ana.update_customer(as_agent("ana", call)).await);
    assert_eq!(saved.version, 4);
    assert_eq!(saved.updated_by, "ana");

    // Ben saves from version 3 and is told who won, and at which version.
    let ben_change = pb::Customer {
        last_name: "Lopez-Garcia".to_owned(),
        notes: "ben's notes".to_owned(),
        ..ben_view
    };
    let call = update_customer_request(ben_change.clone(), &["last_name", "notes"]);
    let status = err(ben.update_customer(as_agent("ben", call)).await);
    assert_version_mismatch(&status, 4, "ana");
    let call = pb::DeleteCustomerRequest {
        id: seeded.id.clone(),
        version: 3,
    };
    let status = err(ben.delete_customer(as_agent("ben", call)).await);
    assert_version_mismatch(&status, 4, "ana");

    // Nothing of Ana's change is lost, nothing of Ben's applied.
    let current = ok(ben.get_customer(get(&seeded.id)).await);
    assert_eq!(current, saved);
    assert_eq!(current.first_name, "Anabel");
    assert_eq!(current.last_name, "Lopez");
    assert_eq!(current.company, "Acme Europe");
    assert_eq!(current.notes, "moved to Berlin");
    assert_eq!(current.tags, strings(&["relocated", "vip"]));
    assert!(current.credit_hold);
    assert_eq!(current.contact_points, vec![phone("+4930901820")]);
    assert_eq!(current.attributes, ana_change.attributes);

    // Ben retries from version 4: that works and keeps Ana's other fields.
    let retry = pb::Customer {
        version: 4,
        ..ben_change
    };
    let call = update_customer_request(retry, &["last_name"]);
    let retried = ok(ben.update_customer(as_agent("ben", call)).await);
    assert_eq!(retried.version, 5);
    assert_eq!(retried.last_name, "Lopez-Garcia");
    assert_eq!(retried.first_name, "Anabel");
    assert_eq!(retried.notes, "moved to Berlin");
    assert_eq!(retried.updated_by, "ben");
}

#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_from_the_same_version_let_exactly_one_win(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let created = app.ana_lopez().await;
    let (winner, saved) = race_from_version_1(&app, 8, |writer, agent, channel| {
        let change = pb::Customer {
            notes: format!("written by {agent}"),
            tags: vec![format!("w{writer}")],
            ..created.clone()
        };
        let call = update_customer_request(change, &[]);
        let mut client = CustomerServiceClient::new(channel);
        async move { client.update_customer(as_agent(&agent, call)).await }
    })
    .await;
    assert_eq!(saved.version, 2);
    assert_eq!(saved.updated_by, winner);
    let stored = app.get_customer(&created.id).await.expect("get");
    assert_eq!(stored, saved);
    assert_eq!(stored.notes, format!("written by {winner}"));
}

#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_request_updates_from_the_same_version_let_exactly_one_win(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let ana = app.ana_lopez().await;
    let created = app.create_request(request(&ana.id, "Broken")).await;
    let (winner, saved) = race_from_version_1(&app, 6, |_, agent, channel| {
        let call = pb::UpdateRequestRequest {
            request: Some(pb::Request {
                title: format!("title by {agent}"),
                ..created.clone()
            }),
            update_mask: mask(&["title"]),
            ..Default::default()
        };
        let mut client = RequestServiceClient::new(channel);
        async move { client.update_request(as_agent(&agent, call)).await }
    })
    .await;
    assert_eq!(saved.title, format!("title by {winner}"));
    assert_eq!(app.get_request(&created.id).await.expect("get"), saved);
}

#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_comments_and_activity_writes_all_succeed(backend: Backend) {
    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 10;
    let app = or_skip!(TestApp::spawn(backend).await);
    let (ana, broken) = app.ana_with_a_broken_request().await;
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let channel = app.new_channel().await;
        let customer_id = ana.id.clone();
        let request_id = broken.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut requests = RequestServiceClient::new(channel.clone());
            let mut activities = ActivityServiceClient::new(channel);
            let agent = format!("agent-{client}");
            for i in 0..PER_CLIENT {
                let comment = pb::AddCommentRequest {
                    request_id: request_id.clone(),
                    text: format!("{client}/{i}"),
                };
                let journey = pb::CreateActivityRequest {
                    activity: Some(activity(&customer_id, &format!("{client}/{i}"))),
                };
                let (comment, journey) = tokio::join!(
                    requests.add_comment(as_agent(&agent, comment)),
                    activities.create_activity(as_agent(&agent, journey)),
                );
                comment?;
                journey?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for result in within("concurrent writes", futures::future::join_all(tasks)).await {
        result
            .expect("task")
            .expect("every write succeeds (no `database is locked`)");
    }
    let comments = app.list_comments(&broken.id).await.expect("list");
    assert_eq!(comments.len(), CLIENTS * PER_CLIENT);
    let page = app
        .list_activities(&ana.id, "", 500, "")
        .await
        .expect("list");
    assert_eq!(page.activities.len(), CLIENTS * PER_CLIENT);
    // The request itself did not change.
    assert_eq!(app.get_request(&broken.id).await.expect("get"), broken);
}

#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activities_created_while_their_customer_is_deleted_go_with_it_or_are_refused(
    backend: Backend,
) {
    const ROUNDS: usize = 12;
    const WRITERS: usize = 8;
    let app = Arc::new(or_skip!(TestApp::spawn(backend).await));
    let (mut saved, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let doomed = app.create_customer(customer("Dora", "Doomed")).await;
        let writers: Vec<_> = (0..WRITERS)
            .map(|n| {
                let app = Arc::clone(&app);
                let id = doomed.id.clone();
                tokio::spawn(async move {
                    app.create_activity_as("ana", activity(&id, &format!("{round}/{n}")))
                        .await
                })
            })
            .collect();
        // The deletion lands among the writes: some come before it, some after.
        tokio::task::yield_now().await;
        app.delete_customer("ben", &doomed.id, doomed.version)
            .await
            .expect("the deletion");
        for writer in writers {
            match writer.await.expect("writer task") {
                // Saved before the deletion, so deleted with the customer: never left behind without it.
                Ok(created) => {
                    saved += 1;
                    assert_eq!(
                        err(app.get_activity(&created.id).await).code(),
                        Code::NotFound,
                        "activity {} outlived its customer",
                        created.id
                    );
                }
                Err(status) => {
                    refused += 1;
                    assert_eq!(status.code(), Code::NotFound, "{status:?}");
                    assert!(status.message().contains(&doomed.id), "{status:?}");
                }
            }
        }
    }
    assert_eq!(saved + refused, ROUNDS * WRITERS);
    eprintln!(
        "{saved} activities saved before their customer's deletion, {refused} refused after it"
    );
}

/// Activities written at the same moment for several customers, one of them deleted among the writes: whatever
/// the writes of the deleted customer meet, the others are all saved, each once, with their customer.
#[apply(backends)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_refused_among_concurrent_ones_leaves_the_others_saved(backend: Backend) {
    const ROUNDS: usize = 12;
    const WRITERS: usize = 16;
    let app = Arc::new(or_skip!(TestApp::spawn(backend).await));
    let mut stayed = Vec::new();
    for n in 0..4 {
        stayed.push(
            app.create_customer(customer("Sam", &format!("Stays {n}")))
                .await,
        );
    }
    let (mut refused, mut kept) = (0, 0);
    for round in 0..ROUNDS {
        let doomed = app.create_customer(customer("Dora", "Doomed")).await;
        let start = Arc::new(Barrier::new(WRITERS + 1));
        let writers: Vec<_> = (0..WRITERS)
            .map(|n| {
                // Every other writer writes for the doomed customer, the others for customers that stay.
                let customer_id = if n % 2 == 0 {
                    doomed.id.clone()
                } else {
                    stayed[n / 2 % stayed.len()].id.clone()
                };
                let (app, start) = (Arc::clone(&app), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    let topic = format!("{round}/{n}");
                    let outcome = app
                        .create_activity_as("ana", activity(&customer_id, &topic))
                        .await;
                    (customer_id, topic, outcome)
                })
            })
            .collect();
        start.wait().await;
        app.delete_customer("ben", &doomed.id, doomed.version)
            .await
            .expect("the deletion");
        for writer in writers {
            let (customer_id, topic, outcome) = writer.await.expect("writer task");
            if customer_id == doomed.id {
                if let Err(status) = outcome {
                    refused += 1;
                    assert_eq!(status.code(), Code::NotFound, "{status:?}");
                    assert!(status.message().contains(&doomed.id), "{status:?}");
                }
                continue;
            }
            let created = outcome.unwrap_or_else(|status| {
                panic!("activity {topic} of a customer that stays was refused: {status:?}")
            });
            let saved = app
                .get_activity(&created.id)
                .await
                .expect("the saved activity");
            assert_eq!((saved.customer_id, saved.topic), (customer_id, topic));
            kept += 1;
        }
    }
    assert_eq!(kept, ROUNDS * WRITERS / 2);
    for customer in &stayed {
        let page = app
            .list_activities(&customer.id, "", 500, "")
            .await
            .expect("list");
        assert_eq!(
            page.activities.len(),
            ROUNDS * 2,
            "every activity of {} once",
            customer.id
        );
    }
    eprintln!(
        "{kept} activities of customers that stay saved, {refused} of the deleted one refused"
    );
}
