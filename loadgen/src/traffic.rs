//! The scenarios: what each call asks for (built from the seeded book) and how it is sent.

use std::time::Duration;

use clap::ValueEnum;
use customer_context::{
    domain::contact::ContactKind,
    pb::{
        self, activity_service_client::ActivityServiceClient,
        context_service_client::ContextServiceClient,
        customer_service_client::CustomerServiceClient, lookup_customers_request::Key,
    },
    store::seed::SeedCustomer,
};
use rand::{Rng, seq::IndexedRandom};
use tonic::{Code, Request, Status, metadata::MetadataValue, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::fixture::{AGENTS, Book, TOPICS, agent_name, slug};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum Scenario {
    /// grpc.health.v1.Health/Check: the baseline (no database work).
    Health,
    /// ContextService/OpenContext: 70% known callers (phone, email or chat handle), 20% unknown, 10% sharing a
    /// household phone (ambiguous); a fresh interaction_id each time, so every call logs an activity.
    OpenContext,
    /// CustomerService/GetCustomer of a random seeded customer.
    GetCustomer,
    /// ActivityService/CreateActivity on a random seeded customer (a write).
    CreateActivity,
    /// CustomerService/SearchCustomers: name prefixes (with and without accents), two-word prefixes, company
    /// words, phone numbers.
    Search,
    /// CustomerService/LookupCustomers by phone in a random format: 80% known, 10% household, 10% unknown.
    Lookup,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Health => "health",
            Scenario::OpenContext => "open-context",
            Scenario::GetCustomer => "get-customer",
            Scenario::CreateActivity => "create-activity",
            Scenario::Search => "search",
            Scenario::Lookup => "lookup",
        }
    }

    /// The gRPC service (full name) and method the scenario calls, as the server's metrics label them.
    pub fn rpc(self) -> (&'static str, &'static str) {
        match self {
            Scenario::Health => ("grpc.health.v1.Health", "Check"),
            Scenario::OpenContext => ("customer_context.v1.ContextService", "OpenContext"),
            Scenario::GetCustomer => ("customer_context.v1.CustomerService", "GetCustomer"),
            Scenario::CreateActivity => ("customer_context.v1.ActivityService", "CreateActivity"),
            Scenario::Search => ("customer_context.v1.CustomerService", "SearchCustomers"),
            Scenario::Lookup => ("customer_context.v1.CustomerService", "LookupCustomers"),
        }
    }

    /// Whether the scenario picks seeded customers (and so needs a seeded database).
    pub fn needs_book(self) -> bool {
        self != Scenario::Health
    }
}

/// Clients over one HTTP/2 connection.
#[derive(Clone, Debug)]
pub struct Clients {
    health: HealthClient<Channel>,
    customers: CustomerServiceClient<Channel>,
    activities: ActivityServiceClient<Channel>,
    context: ContextServiceClient<Channel>,
}

impl Clients {
    pub fn new(channel: Channel) -> Self {
        Clients {
            health: HealthClient::new(channel.clone()),
            customers: CustomerServiceClient::new(channel.clone()),
            activities: ActivityServiceClient::new(channel.clone()),
            context: ContextServiceClient::new(channel),
        }
    }

    /// The id of the customer with this customer number, if any.
    pub async fn customer_by_number(&mut self, number: String) -> Result<Option<String>, Status> {
        let response = self
            .customers
            .lookup_customers(pb::LookupCustomersRequest {
                key: Some(Key::CustomerNumber(number)),
            })
            .await?;
        Ok(response
            .into_inner()
            .customers
            .into_iter()
            .next()
            .map(|c| c.id))
    }

    /// Sends one call; `Ok` carries what it found, for the scenarios that tell.
    pub async fn send(
        &mut self,
        call: Call,
        timeout: Duration,
    ) -> Result<Option<&'static str>, Status> {
        let Call { agent, message } = call;
        let sent = async {
            match message {
                Message::Health(m) => self
                    .health
                    .check(request(m, &agent, timeout))
                    .await
                    .map(|_| None),
                Message::OpenContext(m) => {
                    let r = self
                        .context
                        .open_context(request(m, &agent, timeout))
                        .await?
                        .into_inner();
                    Ok(Some(if r.customer.is_some() {
                        "1 match"
                    } else if !r.candidates.is_empty() {
                        "2+ matches"
                    } else {
                        "no match"
                    }))
                }
                Message::GetCustomer(m) => self
                    .customers
                    .get_customer(request(m, &agent, timeout))
                    .await
                    .map(|_| None),
                Message::CreateActivity(m) => self
                    .activities
                    .create_activity(request(*m, &agent, timeout))
                    .await
                    .map(|_| None),
                Message::Search(m) => {
                    let r = self
                        .customers
                        .search_customers(request(m, &agent, timeout))
                        .await?
                        .into_inner();
                    Ok(Some(if r.customers.is_empty() {
                        "no hits"
                    } else {
                        "hits"
                    }))
                }
                Message::Lookup(m) => {
                    let r = self
                        .customers
                        .lookup_customers(request(m, &agent, timeout))
                        .await?
                        .into_inner();
                    Ok(Some(match r.customers.len() {
                        0 => "no match",
                        1 => "1 match",
                        _ => "2+ matches",
                    }))
                }
            }
        };
        match tokio::time::timeout(timeout, sent).await {
            Ok(result) => result,
            Err(_) => Err(Status::new(
                Code::DeadlineExceeded,
                "no answer within --timeout",
            )),
        }
    }
}

/// `message` as a request of `agent`, with a deadline the server sees too.
fn request<T>(message: T, agent: &str, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    if let Ok(agent) = MetadataValue::try_from(agent) {
        request.metadata_mut().insert("x-agent-id", agent);
    }
    request
}

/// One call, ready to send.
#[derive(Clone, Debug)]
pub struct Call {
    agent: String,
    message: Message,
}

#[derive(Clone, Debug)]
enum Message {
    Health(HealthCheckRequest),
    OpenContext(pb::OpenContextRequest),
    GetCustomer(pb::GetCustomerRequest),
    CreateActivity(Box<pb::CreateActivityRequest>),
    Search(pb::SearchCustomersRequest),
    Lookup(pb::LookupCustomersRequest),
}

/// Builds the calls of every scenario from the seeded book.
#[derive(Clone, Debug)]
pub struct Traffic {
    pub book: Book,
    /// Distinguishes this run's interaction ids from earlier runs' (OpenContext is idempotent on them).
    pub run_id: String,
    pub page_size: i32,
    /// Queries of the search scenario; empty: the book's mix.
    pub search_queries: Vec<String>,
}

impl Traffic {
    /// The `seq`-th call of `scenario` made by one client (`seq` keeps interaction ids unique).
    pub fn call(&self, scenario: Scenario, rng: &mut impl Rng, seq: u64) -> Call {
        let agent = agent_name(rng.random_range(0..AGENTS));
        let message = match scenario {
            Scenario::Health => Message::Health(HealthCheckRequest {
                service: String::new(),
            }),
            Scenario::OpenContext => Message::OpenContext(self.open_context(rng, seq, &agent)),
            Scenario::GetCustomer => Message::GetCustomer(pb::GetCustomerRequest {
                id: self.any_customer(rng).customer.id,
            }),
            Scenario::CreateActivity => {
                Message::CreateActivity(Box::new(self.create_activity(rng)))
            }
            Scenario::Search => Message::Search(pb::SearchCustomersRequest {
                query: self.search_query(rng),
                page_size: self.page_size,
                page_token: String::new(),
            }),
            Scenario::Lookup => Message::Lookup(pb::LookupCustomersRequest {
                key: Some(Key::Phone(self.lookup_phone(rng))),
            }),
        };
        Call { agent, message }
    }

    fn any_customer(&self, rng: &mut impl Rng) -> SeedCustomer {
        self.book
            .customer(rng.random_range(0..self.book.customers.max(1)))
    }

    /// A phone shared by a household, if the book has complete household blocks.
    fn household_phone(&self, rng: &mut impl Rng) -> Option<String> {
        let households = self.book.households();
        (households > 0).then(|| self.book.household_phone(rng.random_range(0..households)))
    }

    fn open_context(&self, rng: &mut impl Rng, seq: u64, agent: &str) -> pb::OpenContextRequest {
        let mut request = pb::OpenContextRequest {
            interaction_id: format!("{}-{seq}", self.run_id),
            channel: pb::Channel::Voice as i32,
            direction: pb::Direction::Incoming as i32,
            topic: TOPICS.choose(rng).copied().unwrap_or_default().to_owned(),
            agent: agent.to_owned(),
            ..Default::default()
        };
        let roll = rng.random_range(0..100);
        if roll < 70 {
            let seeded = self.any_customer(rng);
            let data = &seeded.customer.data;
            request.display_name = format!("{} {}", data.first_name, data.last_name);
            let of_kind = |kind| {
                data.contact_points
                    .iter()
                    .find(|p| p.kind == kind)
                    .map(|p| p.value.clone())
            };
            match (
                roll % 10,
                of_kind(ContactKind::Email),
                of_kind(ContactKind::Chat),
            ) {
                (0, Some(email), _) => {
                    request.channel = pb::Channel::Email as i32;
                    request.email = email.to_uppercase();
                }
                (1, _, Some(handle)) => {
                    request.channel = pb::Channel::Chat as i32;
                    request.handle = handle;
                }
                _ => {
                    request.phone = format_phone(&seeded_phone(&seeded), rng);
                }
            }
        } else if roll < 80
            && let Some(phone) = self.household_phone(rng)
        {
            request.phone = format_phone(&phone, rng);
            request.display_name = "Household Caller".to_owned();
        } else if roll % 4 == 0 {
            request.channel = pb::Channel::Email as i32;
            request.email = format!("{}-{seq}@unknown.example.com", self.run_id);
            request.display_name = "Nuevo Cliente".to_owned();
        } else {
            request.phone = format_phone(&self.book.unknown_phone(rng.random()), rng);
            request.display_name = "Zoë Unknown".to_owned();
        }
        request
    }

    fn create_activity(&self, rng: &mut impl Rng) -> pb::CreateActivityRequest {
        let seeded = self.any_customer(rng);
        let data = &seeded.customer.data;
        pb::CreateActivityRequest {
            activity: Some(pb::Activity {
                customer_id: seeded.customer.id.clone(),
                channel: pb::Channel::Voice as i32,
                direction: pb::Direction::Incoming as i32,
                topic: TOPICS.choose(rng).copied().unwrap_or_default().to_owned(),
                notes: "Load test call.".to_owned(),
                tags: vec!["loadgen".to_owned()],
                contact_name: format!("{} {}", data.first_name, data.last_name),
                contact_phone: format_phone(&seeded_phone(&seeded), rng),
                ..Default::default()
            }),
        }
    }

    fn search_query(&self, rng: &mut impl Rng) -> String {
        if let Some(query) = self.search_queries.choose(rng) {
            return query.clone();
        }
        let seeded = self.any_customer(rng);
        let data = &seeded.customer.data;
        let first_word = |text: &str| text.split_whitespace().next().unwrap_or("").to_owned();
        match rng.random_range(0..100) {
            0..35 => prefix(&first_word(&data.first_name), rng),
            35..60 => prefix(&first_word(&data.last_name), rng),
            60..75 => format!(
                "{} {}",
                prefix(&first_word(&data.first_name), rng),
                prefix(&first_word(&data.last_name), rng)
            ),
            75..85 if !data.company.is_empty() => prefix(&first_word(&data.company), rng),
            75..85 => prefix(&first_word(&data.last_name), rng),
            85..93 => national_digits(&seeded_phone(&seeded)),
            _ => format_phone(&seeded_phone(&seeded), rng),
        }
    }

    fn lookup_phone(&self, rng: &mut impl Rng) -> String {
        let roll = rng.random_range(0..100);
        let phone = if roll < 80 {
            seeded_phone(&self.any_customer(rng))
        } else if roll < 90
            && let Some(phone) = self.household_phone(rng)
        {
            phone
        } else {
            self.book.unknown_phone(rng.random())
        };
        format_phone(&phone, rng)
    }
}

/// The customer's own (first) phone.
fn seeded_phone(seeded: &SeedCustomer) -> String {
    seeded
        .customer
        .data
        .contact_points
        .iter()
        .find(|p| p.kind == ContactKind::Phone)
        .map(|p| p.value.clone())
        .unwrap_or_default()
}

/// "+14155550100" -> "4155550100".
fn national_digits(e164: &str) -> String {
    e164.strip_prefix("+1").unwrap_or(e164).to_owned()
}

/// A US number in E.164 written the way a router or an agent might.
pub fn format_phone(e164: &str, rng: &mut impl Rng) -> String {
    let digits = national_digits(e164);
    if digits.len() != 10 || !digits.is_ascii() {
        return e164.to_owned();
    }
    let (area, exchange, line) = (&digits[..3], &digits[3..6], &digits[6..]);
    match rng.random_range(0..6) {
        0 => format!("+1 {area}-{exchange}-{line}"),
        1 => format!("({area}) {exchange}-{line}"),
        2 => format!("{area}.{exchange}.{line}"),
        3 => format!("tel:+1-{area}-{exchange}-{line}"),
        4 => format!("1 {area} {exchange} {line}"),
        _ => e164.to_owned(),
    }
}

/// The first 2 to 5 characters of `word`; half the time folded (no accents, lower case).
fn prefix(word: &str, rng: &mut impl Rng) -> String {
    let word = if rng.random_bool(0.5) {
        slug(word)
    } else {
        word.to_owned()
    };
    let chars = word.chars().count();
    let take = rng.random_range(2..=5).min(chars.max(1));
    word.chars().take(take).collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn phones_are_written_in_many_forms_of_the_same_number() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let us = customer_context::domain::contact::parse_region("US").unwrap();
        for _ in 0..50 {
            let written = format_phone("+14155550100", &mut rng);
            assert_eq!(
                customer_context::domain::contact::normalize_phone(&written, us).as_deref(),
                Ok("+14155550100"),
                "{written}"
            );
        }
    }

    #[test]
    fn prefixes_are_short_and_never_empty() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for word in ["Zoë", "Ødegaard", "Li", "A"] {
            let p = prefix(word, &mut rng);
            assert!(!p.is_empty() && p.chars().count() <= 5, "{p}");
        }
    }
}
