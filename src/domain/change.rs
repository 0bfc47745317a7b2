//! Change-log entries: who changed which record, how, and which fields.

use super::{mask::FieldChange, time::Micros};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Customer,
    Request,
    Activity,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Request => "request",
            Self::Activity => "activity",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "customer" => Some(Self::Customer),
            "request" => Some(Self::Request),
            "activity" => Some(Self::Activity),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
    /// A customer merged into another; the change's `parent_id` names the target.
    Merged,
    /// A merged customer brought back.
    Restored,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
            Self::Merged => "merged",
            Self::Restored => "restored",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "created" => Some(Self::Created),
            "updated" => Some(Self::Updated),
            "deleted" => Some(Self::Deleted),
            "merged" => Some(Self::Merged),
            "restored" => Some(Self::Restored),
            _ => None,
        }
    }
}

/// A change about to be appended in the same transaction as the write it describes.
#[derive(Clone, Debug, PartialEq)]
pub struct NewChange {
    pub resource: ResourceKind,
    pub resource_id: String,
    /// The record's version after the change (for a deletion, the version that was deleted).
    pub version: i64,
    pub kind: ChangeKind,
    pub agent: String,
    pub fields: Vec<FieldChange>,
    /// The customer a request or activity belongs to.
    pub parent_id: Option<String>,
    /// An internal activity (never shown to the customer).
    pub internal: bool,
    pub time: Micros,
}

/// A committed change, as read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Position in the log: strictly increasing in commit order.
    pub seq: i64,
    pub resource: ResourceKind,
    pub resource_id: String,
    pub version: i64,
    pub kind: ChangeKind,
    pub agent: String,
    pub changed_fields: Vec<String>,
    pub parent_id: Option<String>,
    pub internal: bool,
    pub time: Micros,
}
