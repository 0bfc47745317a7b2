//! Commands that change an existing record: an edit of some of its fields, or its deletion, each made against
//! the version the caller last saw.

use super::field_merge::ConflictPolicy;

/// An edit of the record `id`: the caller's values `data` for `fields`, made against `version`.
#[derive(Clone, Debug, PartialEq)]
pub struct Edit<D> {
    pub id: String,
    /// The version the caller last saw.
    pub version: i64,
    /// How a stale `version` is treated.
    pub policy: ConflictPolicy,
    /// The fields to change (every mutable field when the caller gave no mask).
    pub fields: Vec<&'static str>,
    pub data: D,
}

/// The record `id` to delete, at the version the caller last saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    pub id: String,
    pub version: i64,
}

impl<D> Edit<D> {
    /// The same edit with other data: `convert` takes the caller's values and may narrow the fields.
    pub fn map<E>(self, convert: impl FnOnce(D, &mut Vec<&'static str>) -> E) -> Edit<E> {
        let Edit {
            id,
            version,
            policy,
            mut fields,
            data,
        } = self;
        let data = convert(data, &mut fields);
        Edit {
            id,
            version,
            policy,
            fields,
            data,
        }
    }
}
