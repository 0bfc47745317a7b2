//! The gRPC layer: one file per service. Converts and checks input, calls the store, maps errors. Thin.

use std::sync::Arc;

use tonic::{Request, Status, metadata::MetadataMap, service::RoutesBuilder};

use crate::{
    domain::{
        Violations,
        page::{self, Cursor},
        reason, text,
    },
    error::Error,
    events::Hub,
    pb,
    server::Shutdown,
    store::Store,
};

mod activities;
mod customers;
mod requests;
mod watch;

pub use activities::ActivityApi;
pub use customers::CustomerApi;
pub use requests::RequestApi;
pub use watch::WatchApi;

/// What every service needs.
#[derive(Clone, Debug)]
pub struct ApiState {
    pub store: Store,
    /// Region for phone numbers written without a country code.
    pub region: phonenumber::country::Id,
    /// Fans committed changes and presence out to watch streams.
    pub hub: Arc<Hub>,
    /// Fires when the server begins shutting down, so streams can end.
    pub shutdown: Shutdown,
}

/// Registers every public service of the API.
pub fn add_services(routes: &mut RoutesBuilder, state: ApiState) {
    routes
        .add_service(pb::customer_service_server::CustomerServiceServer::new(
            CustomerApi::new(state.clone()),
        ))
        .add_service(pb::request_service_server::RequestServiceServer::new(
            RequestApi::new(state.clone()),
        ))
        .add_service(pb::activity_service_server::ActivityServiceServer::new(
            ActivityApi::new(state.clone()),
        ))
        .add_service(pb::watch_service_server::WatchServiceServer::new(
            WatchApi::new(state),
        ));
}

/// Metadata key naming the acting agent.
pub const AGENT_HEADER: &str = "x-agent-id";
/// The acting agent when a call names none.
pub const ANONYMOUS: &str = "anonymous";

/// The acting agent of a call: `x-agent-id`, or `anonymous` when it is absent or blank.
pub fn acting_agent<T>(request: &Request<T>) -> Result<String, Status> {
    agent_from_metadata(request.metadata()).map_err(Status::from)
}

fn agent_from_metadata(metadata: &MetadataMap) -> Result<String, Error> {
    let Some(value) = metadata.get(AGENT_HEADER) else {
        return Ok(ANONYMOUS.to_owned());
    };
    let agent = value
        .to_str()
        .map_err(|_| {
            Error::invalid(
                AGENT_HEADER,
                reason::INVALID_AGENT,
                "must be printable ASCII",
            )
        })?
        .trim();
    if agent.is_empty() {
        return Ok(ANONYMOUS.to_owned());
    }
    let mut violations = Violations::new();
    text::check_text(&mut violations, AGENT_HEADER, agent);
    violations
        .into_result(agent.to_owned())
        .map_err(Error::from)
}

/// The version an update or delete is based on; 0 (not sent) or negative is `MISSING_VERSION`.
fn check_version_given(violations: &mut Violations, field: &str, version: i64) {
    if version <= 0 {
        violations.push(
            field,
            reason::MISSING_VERSION,
            "the version you last read is required, so that a change made meanwhile is not overwritten",
        );
    }
}

/// A page request: how many rows, and after which one.
struct PageRequest {
    size: u64,
    cursor: Option<Cursor>,
    filter: u64,
}

impl PageRequest {
    fn parse(
        violations: &mut Violations,
        page_size: i32,
        page_token: &str,
        filter: &[&str],
    ) -> Self {
        let filter = page::fingerprint(filter);
        PageRequest {
            size: page::page_size(violations, "page_size", page_size),
            cursor: page::decode_token(violations, "page_token", page_token, filter),
            filter,
        }
    }

    /// How many rows to read: one more than a page, to learn whether another page follows.
    fn fetch(&self) -> u64 {
        self.size + 1
    }

    /// Trims `rows` to the page and returns the token of the next page (empty on the last one).
    fn finish<T>(&self, rows: &mut Vec<T>, cursor_of: impl Fn(&T) -> Cursor) -> String {
        if rows.len() as u64 <= self.size {
            return String::new();
        }
        rows.truncate(self.size as usize);
        rows.last()
            .map(|last| page::encode_token(self.filter, &cursor_of(last)))
            .unwrap_or_default()
    }
}

/// A required sub-message of a request, such as `customer` in `CreateCustomerRequest`.
fn required<T>(value: Option<T>, field: &str) -> Result<T, Error> {
    value.ok_or_else(|| {
        Error::invalid(
            field,
            reason::REQUIRED_FIELD,
            format!("{field} is required"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: Option<&str>) -> MetadataMap {
        let mut map = MetadataMap::new();
        if let Some(value) = value {
            map.insert(AGENT_HEADER, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_acting_agent_comes_from_metadata_or_is_anonymous() {
        assert_eq!(
            agent_from_metadata(&metadata(Some(" ana "))).unwrap(),
            "ana"
        );
        assert_eq!(agent_from_metadata(&metadata(None)).unwrap(), ANONYMOUS);
        assert_eq!(
            agent_from_metadata(&metadata(Some("  "))).unwrap(),
            ANONYMOUS
        );
        let long = "a".repeat(2001);
        assert!(agent_from_metadata(&metadata(Some(&long))).is_err());
    }
}
