//! Conversions between the change log's record and change kinds and their proto forms, shared by the calls that
//! speak of records by reference (Watch, ListChanges).

use crate::{
    domain::change::{ChangeKind, ResourceKind},
    pb,
};

/// The kind of record a `ResourceRef.type` names; `None` for `UNSPECIFIED` or a number that is no type.
pub(super) fn resource_kind(r#type: i32) -> Option<ResourceKind> {
    match pb::ResourceType::try_from(r#type) {
        Ok(pb::ResourceType::Customer) => Some(ResourceKind::Customer),
        Ok(pb::ResourceType::Request) => Some(ResourceKind::Request),
        Ok(pb::ResourceType::Activity) => Some(ResourceKind::Activity),
        Ok(pb::ResourceType::Unspecified) | Err(_) => None,
    }
}

pub(super) fn resource_ref(kind: ResourceKind, id: &str, version: i64) -> pb::ResourceRef {
    let r#type = match kind {
        ResourceKind::Customer => pb::ResourceType::Customer,
        ResourceKind::Request => pb::ResourceType::Request,
        ResourceKind::Activity => pb::ResourceType::Activity,
    };
    pb::ResourceRef {
        r#type: r#type as i32,
        id: id.to_owned(),
        known_version: version,
    }
}

pub(super) fn change_kind(kind: ChangeKind) -> pb::ChangeKind {
    match kind {
        ChangeKind::Created => pb::ChangeKind::Created,
        ChangeKind::Updated => pb::ChangeKind::Updated,
        ChangeKind::Deleted => pb::ChangeKind::Deleted,
        ChangeKind::Merged => pb::ChangeKind::Merged,
        ChangeKind::Restored => pb::ChangeKind::Restored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_kind_round_trips_through_its_proto_type() {
        for kind in [
            ResourceKind::Customer,
            ResourceKind::Request,
            ResourceKind::Activity,
        ] {
            assert_eq!(resource_kind(resource_ref(kind, "x", 1).r#type), Some(kind));
        }
        assert_eq!(resource_kind(0), None);
        assert_eq!(resource_kind(99), None);
    }
}
