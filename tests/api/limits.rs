//! Limits: the per-key rate limit answers RESOURCE_EXHAUSTED with RetryInfo, an oversized message is refused
//! (never INTERNAL), and a client's deadline is respected.

use std::time::Duration;

use customer_context::pb::{self, customer_service_client::CustomerServiceClient};
use tonic::Code;
use tonic_types::StatusExt;

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

#[apply(backends)]
#[tokio::test]
async fn a_key_over_its_rate_gets_resource_exhausted_with_retry_info(backend: Backend) {
    let app = or_skip!(
        TestApp::spawn_with_keys(backend, |settings| {
            // One call per minute after a burst of 3: the 4th call of a quick test is always over.
            settings.security.rate_limit_per_key = 1.0 / 60.0;
            settings.security.rate_limit_burst = Some(3);
        })
        .await
    );
    let ana = app.mint_key("ana", "agent", None).await;
    let ben = app.mint_key("ben", "agent", None).await;
    let mut customers = CustomerServiceClient::new(app.channel());
    let search = |key: &str| keyed(key, pb::SearchCustomersRequest::default());
    for _ in 0..3 {
        ok(customers.search_customers(search(&ana)).await);
    }
    let status = err(customers.search_customers(search(&ana)).await);
    assert_error(&status, Code::ResourceExhausted, "RATE_LIMITED");
    let retry = status
        .get_error_details()
        .retry_info()
        .cloned()
        .expect("RetryInfo");
    let delay = retry.retry_delay.expect("a retry delay");
    assert!(
        delay > Duration::from_secs(50) && delay <= Duration::from_secs(60),
        "{delay:?}"
    );
    // Each key has its own budget.
    ok(customers.search_customers(search(&ben)).await);
}

#[apply(backends)]
#[tokio::test]
async fn an_oversized_message_is_refused_and_nothing_is_written(backend: Backend) {
    let app = or_skip!(
        TestApp::spawn_with(backend, |settings| {
            settings.security.max_message_bytes = 64 * 1024;
        })
        .await
    );
    let huge = pb::Customer {
        notes: "x".repeat(100 * 1024),
        ..customer("Big", "Note")
    };
    let status = err(app.create_customer_as("ana", huge).await);
    assert_ne!(status.code(), Code::Internal, "{status:?}");
    assert!(
        matches!(
            status.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{status:?}"
    );
    assert!(app.search_customers("").await.is_empty());
}

#[apply(backends)]
#[tokio::test]
async fn a_passed_deadline_is_deadline_exceeded(backend: Backend) {
    let app = or_skip!(TestApp::spawn(backend).await);
    let mut request = as_agent("ana", pb::SearchCustomersRequest::default());
    // A deadline that has passed by the time the server reads the database.
    request
        .metadata_mut()
        .insert("grpc-timeout", "1u".parse().unwrap());
    let status = err(app.customers().search_customers(request).await);
    // The server answers DEADLINE_EXCEEDED (exactly checked by the guard's unit tests); tonic's client also
    // enforces the deadline itself and may give up first with CANCELLED.
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    // A generous one does not get in the way.
    let mut request = as_agent("ana", pb::SearchCustomersRequest::default());
    request.set_timeout(Duration::from_secs(30));
    ok(app.customers().search_customers(request).await);
}
