//! What every update names besides its new values, parsed once for customers, requests and activities.

use prost_types::FieldMask;

use crate::{
    api::{check_version_given, conflict_policy},
    domain::{Violations, field_merge::ConflictPolicy, ids, mask::parse_update_mask},
};

/// The record an update changes (a well-formed id at the version the caller last saw), how a stale version is
/// treated, and the fields to change.
#[derive(Debug)]
pub(in crate::api) struct UpdateTarget {
    pub id: String,
    pub version: i64,
    pub policy: ConflictPolicy,
    pub fields: Vec<&'static str>,
}

/// The parts of an update request every record has: `{record}.id`, `{record}.version`, `update_mask` and
/// `conflict_policy`, and the record's mutable and output-only fields.
pub(in crate::api) struct UpdateRequest<'a> {
    pub record: &'static str,
    pub id: &'a str,
    pub version: i64,
    pub mask: Option<FieldMask>,
    pub policy: i32,
    pub mutable: &'static [&'static str],
    pub output_only: &'static [&'static str],
}

impl UpdateTarget {
    /// Checks `request`, adding what is wrong to `violations` (the target is then not to be used).
    pub fn parse(violations: &mut Violations, request: UpdateRequest<'_>) -> Self {
        let UpdateRequest {
            record,
            id,
            version,
            mask,
            policy,
            mutable,
            output_only,
        } = request;
        let id = ids::check_id(violations, &format!("{record}.id"), id);
        check_version_given(violations, &format!("{record}.version"), version);
        let policy = conflict_policy(violations, policy);
        let paths = mask.map(|m| m.paths).unwrap_or_default();
        let fields = parse_update_mask(violations, &paths, mutable, output_only);
        UpdateTarget {
            id: id.unwrap_or_default(),
            version,
            policy,
            fields,
        }
    }
}
