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

async fn read_as(app: &TestApp, agent: &str, id: &str) {
    let call = pb::GetCustomerRequest { id: id.to_owned() };
    ok(app.customers().get_customer(as_agent(agent, call)).await);
}

#[apply(backends)]
#[tokio::test]
async fn recent_customers_are_listed_most_recent_first_without_duplicates(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ana = app.create_customer(customer("Ana", "Lopez")).await;
    let ben = app.create_customer(customer("Ben", "Smith")).await;
    let carla = app
        .create_customer(pb::Customer {
            contact_points: vec![phone("+14155550100")],
            ..customer("Carla", "Diaz")
        })
        .await;
    assert!(recent(&app, "ana", 0).await.expect("list").is_empty());

    read_as(&app, "ana", &ana.id).await;
    read_as(&app, "ana", &ben.id).await;
    read_as(&app, "ana", &ana.id).await;
    read_as(&app, "ben", &ben.id).await;
    assert_eq!(
        recent(&app, "ana", 0).await.expect("list"),
        [ana.id.as_str(), ben.id.as_str()]
    );

    // A call routed to her opens Carla's context.
    let opened = open(&app, call("call-1", "(415) 555-0100"))
        .await
        .expect("open");
    assert_eq!(opened.customer.map(|c| c.id), Some(carla.id.clone()));
    assert_eq!(
        recent(&app, "ana", 0).await.expect("list"),
        [carla.id.as_str(), ana.id.as_str(), ben.id.as_str()]
    );

    // Creating and updating count as opening.
    let call = pb::CreateCustomerRequest {
        customer: Some(customer("Dora", "Ng")),
    };
    let dora = ok(app.customers().create_customer(as_agent("ana", call)).await);
    let ben_edit = pb::Customer {
        notes: "called back".to_owned(),
        ..ben.clone()
    };
    app.update_customer("ana", ben_edit).await.expect("update");
    assert_eq!(
        recent(&app, "ana", 0).await.expect("list"),
        [
            ben.id.as_str(),
            dora.id.as_str(),
            carla.id.as_str(),
            ana.id.as_str()
        ]
    );
    assert_eq!(
        recent(&app, "ana", 2).await.expect("list"),
        [ben.id.as_str(), dora.id.as_str()]
    );
    assert_eq!(
        recent(&app, "ben", 0).await.expect("list"),
        [ben.id.as_str()]
    );

    // Anonymous reads are nobody's; a deleted customer leaves every list.
    app.get_customer(&ana.id).await.expect("anonymous read");
    assert!(recent(&app, "anonymous", 0).await.expect("list").is_empty());
    let delete = pb::DeleteCustomerRequest {
        id: ben.id.clone(),
        version: 2,
    };
    ok(app
        .customers()
        .delete_customer(as_agent("ana", delete))
        .await);
    assert_eq!(
        recent(&app, "ana", 0).await.expect("list"),
        [dora.id.as_str(), carla.id.as_str(), ana.id.as_str()]
    );
    assert!(recent(&app, "ben", 0).await.expect("list").is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn views_older_than_30_days_are_not_listed(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = TestApp::spawn_on(db.url()).await;
    let ana = app.create_customer(customer("Ana", "Lopez")).await;
    let ben = app.create_customer(customer("Ben", "Smith")).await;
    read_as(&app, "ana", &ana.id).await;
    read_as(&app, "ana", &ben.id).await;
    assert_eq!(
        recent(&app, "ana", 0).await.expect("list"),
        [ben.id.as_str(), ana.id.as_str()]
    );

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
    assert_eq!(
        recent(&app, "ana", 0).await.expect("list"),
        [ana.id.as_str()]
    );
}

#[apply(backends)]
#[tokio::test]
async fn listing_recent_customers_needs_an_agent_and_a_valid_page_size(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let status = err(recent(&app, " ", -1).await);
    assert_violations(
        &status,
        &[
            ("agent", "REQUIRED_FIELD"),
            ("page_size", "INVALID_PAGE_SIZE"),
        ],
    );
    let status = err(recent(&app, &"a".repeat(2001), 0).await);
    assert_violations(&status, &[("agent", "FIELD_TOO_LONG")]);
}

#[apply(backends)]
#[tokio::test]
async fn views_acknowledged_before_a_graceful_shutdown_are_kept(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
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
        recent(&app, "ana", 0).await.expect("list"),
        [ids[1].as_str(), ids[0].as_str()]
    );
    app.shutdown().await;
}
