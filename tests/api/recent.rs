//! ListRecentCustomers: the customers an agent opened or read in the last 30 days, most recent first, each once.

use customer_context::pb::{self, context_service_client::ContextServiceClient};
use sea_orm::{ConnectionTrait, Database};
use tonic::Status;

use rstest::rstest;
use rstest_reuse::apply;

use crate::{
    context::{call, open},
    harness::*,
};

/// The agent's Recent list (views they just made included: the call flushes the recorder first).
async fn recent(app: &TestApp, agent: &str, page_size: i32) -> Result<Vec<String>, Status> {
    let request = pb::ListRecentCustomersRequest {
        agent: agent.to_owned(),
        page_size,
    };
    ContextServiceClient::new(app.channel())
        .list_recent_customers(request)
        .await
        .map(|r| r.into_inner().customers.into_iter().map(|c| c.id).collect())
}

/// The whole Recent list of `agent`.
async fn recent_of(app: &TestApp, agent: &str) -> Vec<String> {
    recent(app, agent, 0).await.expect("list")
}

/// The ids of `customers`, in order.
fn ids(customers: &[&pb::Customer]) -> Vec<String> {
    customers.iter().map(|c| c.id.clone()).collect()
}

async fn read_as(app: &TestApp, agent: &str, id: &str) {
    let call = pb::GetCustomerRequest { id: id.to_owned() };
    ok(app.customers().get_customer(as_agent(agent, call)).await);
}

#[apply(backends)]
#[tokio::test]
async fn recent_customers_are_listed_most_recent_first_without_duplicates(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let [ana, ben, carla] = app
        .create_customers([
            customer("Ana", "Lopez"),
            customer("Ben", "Smith"),
            customer_with_contacts("Carla", "Diaz", vec![phone("+14155550100")]),
        ])
        .await;
    assert!(recent_of(&app, "ana").await.is_empty());

    for (agent, customer) in [("ana", &ana), ("ana", &ben), ("ana", &ana), ("ben", &ben)] {
        read_as(&app, agent, &customer.id).await;
    }
    assert_eq!(recent_of(&app, "ana").await, ids(&[&ana, &ben]));

    // A call routed to her opens Carla's context.
    let opened = open(&app, call("call-1", "(415) 555-0100"))
        .await
        .expect("open");
    assert_eq!(opened.customer.map(|c| c.id), Some(carla.id.clone()));
    assert_eq!(recent_of(&app, "ana").await, ids(&[&carla, &ana, &ben]));

    // Creating and updating count as opening.
    let dora = app
        .create_customer_as("ana", customer("Dora", "Ng"))
        .await
        .expect("create");
    let ben_edit = pb::Customer {
        notes: "called back".to_owned(),
        ..ben.clone()
    };
    app.update_customer("ana", ben_edit).await.expect("update");
    let most_recent_first = ids(&[&ben, &dora, &carla, &ana]);
    assert_eq!(recent_of(&app, "ana").await, most_recent_first);
    let first_two = recent(&app, "ana", 2).await.expect("list");
    assert_eq!(first_two, most_recent_first[..2]);
    assert_eq!(recent_of(&app, "ben").await, ids(&[&ben]));

    // Anonymous reads are nobody's; a deleted customer leaves every list.
    app.get_customer(&ana.id).await.expect("anonymous read");
    assert!(recent_of(&app, "anonymous").await.is_empty());
    app.delete_customer("ana", &ben.id, 2)
        .await
        .expect("delete");
    assert_eq!(recent_of(&app, "ana").await, ids(&[&dora, &carla, &ana]));
    assert!(recent_of(&app, "ben").await.is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn views_older_than_30_days_are_not_listed(backend: Backend) {
    let (app, db) = or_skip!(TestApp::spawn_keeping_db(backend).await);
    let [ana, ben] = app
        .create_customers([customer("Ana", "Lopez"), customer("Ben", "Smith")])
        .await;
    read_as(&app, "ana", &ana.id).await;
    read_as(&app, "ana", &ben.id).await;
    assert_eq!(recent_of(&app, "ana").await, ids(&[&ben, &ana]));

    // Age Ben's view to 31 days.
    let connection = Database::connect(db.url()).await.expect("connect");
    let day_micros: i64 = 24 * 60 * 60 * 1_000_000;
    connection
        .execute_unprepared(&format!(
            "UPDATE recent_views SET view_time = view_time - {} WHERE customer_id = '{}'",
            31 * day_micros,
            ben.id
        ))
        .await
        .expect("age a view");
    connection.close().await.expect("close");
    assert_eq!(recent_of(&app, "ana").await, ids(&[&ana]));
}

#[apply(backends)]
#[tokio::test]
async fn listing_recent_customers_needs_an_agent_and_a_valid_page_size(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    assert_invalid(
        recent(&app, " ", -1).await,
        &[
            ("agent", "REQUIRED_FIELD"),
            ("page_size", "INVALID_PAGE_SIZE"),
        ],
    );
    assert_invalid(
        recent(&app, &"a".repeat(2001), 0).await,
        &[("agent", "FIELD_TOO_LONG")],
    );
}

#[apply(backends)]
#[tokio::test]
async fn views_acknowledged_before_a_graceful_shutdown_are_kept(backend: Backend) {
    let db = or_skip!(TestDb::new(backend).await);
    // The real binary, stopped with SIGTERM: the process exits as soon as its shutdown returns.
    let (server, addr) = crate::crash::start_server(db.url());
    let mut customers = crate::crash::client(&addr).await;
    let mut ids = Vec::new();
    for name in ["Ana", "Ben"] {
        let call = pb::CreateCustomerRequest {
            customer: Some(customer(name, "Lopez")),
        };
        ids.push(ok(customers.create_customer(call).await).id);
    }
    for id in &ids {
        let call = pb::GetCustomerRequest { id: id.clone() };
        ok(customers.get_customer(as_agent("ana", call)).await);
    }
    crate::crash::stop_gracefully(server).await;

    let app = TestApp::spawn_on(db.url()).await;
    assert_eq!(
        recent_of(&app, "ana").await,
        [ids[1].as_str(), ids[0].as_str()]
    );
    app.shutdown().await;
}
