//! Creates a customer, a request and an activity against a running server, then reads the journey back.
//!
//! ```text
//! cargo run --release -- serve                # in one terminal
//! cargo run --release --example quickstart    # in another
//! ```
//! The server address comes from the first argument or `CUSTOMER_CONTEXT_ADDR` (default http://127.0.0.1:50051).
//! Against a server started with `--auth keys`, give an agent or admin key in `CUSTOMER_CONTEXT_API_KEY`
//! (`customer-context keys create --name quickstart --role agent`).

use customer_context::pb::{
    self, ContactKind, ContactPoint, activity_service_client::ActivityServiceClient,
    customer_service_client::CustomerServiceClient, lookup_customers_request::Key,
    request_service_client::RequestServiceClient,
};
use tonic::{Request, metadata::MetadataValue, transport::Channel};

/// Wraps a message in a request made by the agent "quickstart": with the API key of
/// `CUSTOMER_CONTEXT_API_KEY` when set (`--auth keys`), else naming the agent in `x-agent-id` (`--auth none`).
fn as_agent<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    let key = std::env::var("CUSTOMER_CONTEXT_API_KEY")
        .ok()
        .and_then(|key| MetadataValue::try_from(format!("Bearer {}", key.trim())).ok());
    match key {
        Some(bearer) => request.metadata_mut().insert("authorization", bearer),
        None => request
            .metadata_mut()
            .insert("x-agent-id", MetadataValue::from_static("quickstart")),
    };
    request
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("CUSTOMER_CONTEXT_ADDR").ok())
        .unwrap_or_else(|| "http://127.0.0.1:50051".to_owned());
    let channel = Channel::from_shared(addr.clone())?
        .connect()
        .await
        .map_err(|e| format!("cannot reach {addr}: {e} (is `customer-context serve` running?)"))?;
    let mut customers = CustomerServiceClient::new(channel.clone());
    let mut requests = RequestServiceClient::new(channel.clone());
    let mut activities = ActivityServiceClient::new(channel);

    let customer = customers
        .create_customer(as_agent(pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                first_name: "Ana".into(),
                last_name: "García".into(),
                company: "Acme Ltd".into(),
                contact_points: vec![
                    ContactPoint {
                        kind: ContactKind::Phone as i32,
                        label: "mobile".into(),
                        value: "(415) 555-0100".into(),
                    },
                    ContactPoint {
                        kind: ContactKind::Email as i32,
                        label: "work".into(),
                        value: " Ana.Garcia@Example.com ".into(),
                    },
                ],
                tags: vec!["VIP".into()],
                ..Default::default()
            }),
        }))
        .await?
        .into_inner();
    println!(
        "customer  {} v{} phone {}",
        customer.id, customer.version, customer.contact_points[0].value
    );

    let request = requests
        .create_request(as_agent(pb::CreateRequestRequest {
            request: Some(pb::Request {
                customer_id: customer.id.clone(),
                title: "Invoice 1042 charged twice".into(),
                ..Default::default()
            }),
        }))
        .await?
        .into_inner();
    println!(
        "request   {} v{} {:?}",
        request.id,
        request.version,
        request.status()
    );

    let activity = activities
        .create_activity(as_agent(pb::CreateActivityRequest {
            activity: Some(pb::Activity {
                request_id: request.id.clone(),
                channel: pb::Channel::Voice as i32,
                direction: pb::Direction::Incoming as i32,
                topic: "Double charge".into(),
                notes: "Refund promised within 3 days".into(),
                ..Default::default()
            }),
        }))
        .await?
        .into_inner();
    println!(
        "activity  {} v{} for customer {}",
        activity.id, activity.version, activity.customer_id
    );

    let found = customers
        .lookup_customers(as_agent(pb::LookupCustomersRequest {
            key: Some(Key::Phone("+1 415-555-0100".into())),
        }))
        .await?
        .into_inner();
    println!(
        "lookup    +1 415-555-0100 -> {} customer(s)",
        found.customers.len()
    );

    let journey = activities
        .list_activities(as_agent(pb::ListActivitiesRequest {
            customer_id: customer.id,
            ..Default::default()
        }))
        .await?
        .into_inner();
    println!(
        "journey   {} activity(ies), newest: {:?}",
        journey.activities.len(),
        journey.activities[0].topic
    );
    Ok(())
}
