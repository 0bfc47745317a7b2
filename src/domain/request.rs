//! Requests (cases) and their immutable comments.

use serde::{Deserialize, Serialize};

use super::{customer::Audit, time::Micros};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    #[default]
    Open = 1,
    Pending = 2,
    Closed = 3,
    /// Final: the request can no longer change and its comments are gone.
    Cancelled = 4,
}

impl RequestStatus {
    /// The status for a proto enum number; `UNSPECIFIED` (0) and unknown numbers are `None`.
    pub fn from_i32(value: i32) -> Option<Self> {
        match value {
            1 => Some(Self::Open),
            2 => Some(Self::Pending),
            3 => Some(Self::Closed),
            4 => Some(Self::Cancelled),
            _ => None,
        }
    }

    pub fn as_i32(self) -> i32 {
        self as i32
    }

    pub fn is_final(self) -> bool {
        self == Self::Cancelled
    }
}

/// The fields of a request a caller can set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestData {
    pub title: String,
    pub description: String,
    pub status: RequestStatus,
    pub tags: Vec<String>,
}

pub const MUTABLE_FIELDS: &[&str] = &["title", "description", "status", "tags"];
/// Field names an update may not change, besides those of every record
/// ([`super::mask::RECORD_OUTPUT_ONLY_FIELDS`]).
pub const IMMUTABLE_FIELDS: &[&str] = &["customer_id", "close_time"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    pub version: i64,
    pub customer_id: String,
    pub data: RequestData,
    /// Set while the request is closed.
    pub close_time: Option<Micros>,
    pub audit: Audit,
}

impl Request {
    /// A new request of the customer `customer_id` with `data`, created by `agent` at `now` (closed then, if
    /// created closed).
    pub fn created(customer_id: &str, data: RequestData, agent: &str, now: Micros) -> Self {
        Request {
            id: super::ids::new_id(),
            version: 1,
            customer_id: customer_id.to_owned(),
            close_time: (data.status == RequestStatus::Closed).then_some(now),
            data,
            audit: Audit::created(agent, now),
        }
    }

    /// This request with `data`, one version on, changed by `agent` at `now` (`close_time` as it was).
    pub fn next_version(&self, data: RequestData, agent: &str, now: Micros) -> Self {
        Request {
            version: self.version + 1,
            data,
            audit: self.audit.touched(agent, now),
            ..self.clone()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub id: String,
    pub request_id: String,
    pub text: String,
    pub author: String,
    pub create_time: Micros,
}
