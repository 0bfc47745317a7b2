//! Activities: one interaction each, the customer's journey.

use serde::{Deserialize, Serialize};

use super::{customer::Audit, time::Micros};

/// The fields of an activity a caller can set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityData {
    pub customer_id: Option<String>,
    pub request_id: Option<String>,
    /// Proto `Channel` number (0 = not given).
    pub channel: i32,
    /// Proto `Direction` number (0 = not given).
    pub direction: i32,
    pub internal: bool,
    pub topic: String,
    pub notes: String,
    pub tags: Vec<String>,
    pub occur_time: Micros,
    pub follow_up_time: Option<Micros>,
    pub entered_by: String,
    pub contact_name: String,
    pub contact_phone: String,
    pub contact_email: String,
    pub sales_contact: String,
    pub salesperson: String,
    pub reference: String,
}

pub const MUTABLE_FIELDS: &[&str] = &[
    "customer_id",
    "request_id",
    "channel",
    "direction",
    "internal",
    "topic",
    "notes",
    "tags",
    "occur_time",
    "follow_up_time",
    "entered_by",
    "contact_name",
    "contact_phone",
    "contact_email",
    "sales_contact",
    "salesperson",
    "reference",
];
/// Field names that exist but only the service sets, besides those of every record
/// ([`super::mask::RECORD_OUTPUT_ONLY_FIELDS`]): none.
pub const OUTPUT_ONLY_FIELDS: &[&str] = &[];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activity {
    pub id: String,
    pub version: i64,
    pub data: ActivityData,
    pub audit: Audit,
}

impl Activity {
    /// A new activity with `data`, created by `agent` at `now`.
    pub fn created(data: ActivityData, agent: &str, now: Micros) -> Self {
        Activity {
            id: super::ids::new_id(),
            version: 1,
            data,
            audit: Audit::created(agent, now),
        }
    }

    /// This activity with `data`, one version on, changed by `agent` at `now`.
    pub fn next_version(&self, data: ActivityData, agent: &str, now: Micros) -> Self {
        Activity {
            id: self.id.clone(),
            version: self.version + 1,
            data,
            audit: self.audit.touched(agent, now),
        }
    }
}
