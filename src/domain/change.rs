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

/// A record the change log speaks of: what each of its rows says of it.
pub trait Logged {
    const RESOURCE: ResourceKind;
    /// The fields a caller sets, as stored and as the log records them.
    type Data: serde::Serialize + serde::de::DeserializeOwned;
    fn id(&self) -> &str;
    fn version(&self) -> i64;
    fn data(&self) -> &Self::Data;
    /// Who changed it last.
    fn updated_by(&self) -> &str;
    /// The customer a request or activity belongs to.
    fn parent_id(&self) -> Option<String>;
    /// An internal activity (never shown to the customer).
    fn internal(&self) -> bool {
        false
    }
    /// Every field as changed from nothing: what a creation records.
    fn all_fields(&self) -> Vec<FieldChange> {
        super::mask::all_fields(self.data())
    }
}

impl NewChange {
    /// `record` was created by `agent` at `time`.
    pub fn created<R: Logged>(agent: &str, record: &R, time: Micros) -> Self {
        Self::about(
            record,
            ChangeKind::Created,
            agent,
            record.all_fields(),
            time,
        )
    }

    /// `record`, at its new version, was changed by `agent` at `time` in `fields`.
    pub fn updated<R: Logged>(
        agent: &str,
        record: &R,
        fields: Vec<FieldChange>,
        time: Micros,
    ) -> Self {
        Self::about(record, ChangeKind::Updated, agent, fields, time)
    }

    /// `record`, at the version that was deleted, was deleted by `agent` at `time`.
    pub fn deleted<R: Logged>(agent: &str, record: &R, time: Micros) -> Self {
        Self::about(record, ChangeKind::Deleted, agent, Vec::new(), time)
    }

    fn about<R: Logged>(
        record: &R,
        kind: ChangeKind,
        agent: &str,
        fields: Vec<FieldChange>,
        time: Micros,
    ) -> Self {
        NewChange {
            resource: R::RESOURCE,
            resource_id: record.id().to_owned(),
            version: record.version(),
            kind,
            agent: agent.to_owned(),
            fields,
            parent_id: record.parent_id(),
            internal: record.internal(),
            time,
        }
    }
}

/// The accessors every record has the same way: its `id`, `version`, `data` and `audit` fields.
macro_rules! record_accessors {
    ($data:ty, $resource:expr) => {
        type Data = $data;
        const RESOURCE: ResourceKind = $resource;
        fn id(&self) -> &str {
            &self.id
        }
        fn version(&self) -> i64 {
            self.version
        }
        fn data(&self) -> &Self::Data {
            &self.data
        }
        fn updated_by(&self) -> &str {
            &self.audit.updated_by
        }
    };
}

impl Logged for super::customer::Customer {
    record_accessors!(super::customer::CustomerData, ResourceKind::Customer);
    fn parent_id(&self) -> Option<String> {
        None
    }
}

impl Logged for super::request::Request {
    record_accessors!(super::request::RequestData, ResourceKind::Request);
    fn parent_id(&self) -> Option<String> {
        Some(self.customer_id.clone())
    }
}

impl Logged for super::activity::Activity {
    record_accessors!(super::activity::ActivityData, ResourceKind::Activity);
    fn parent_id(&self) -> Option<String> {
        self.data.customer_id.clone()
    }
    fn internal(&self) -> bool {
        self.data.internal
    }
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
