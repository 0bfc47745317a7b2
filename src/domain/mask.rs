//! Field masks: which fields an update changes, applying them, and what actually changed.
//!
//! Records are plain serde structs, so masking and diffing work on their JSON form by field name: one mechanism
//! for every resource instead of a hand-written match per field.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use super::violations::{Violations, reason};

/// The fields an update touches, from `update_mask.paths`. Empty or `["*"]` means every mutable field.
/// Unknown paths are `INVALID_UPDATE_MASK`; paths naming fields that exist but cannot change are `IMMUTABLE_FIELD`.
/// Fields every record has that only the service sets.
pub const RECORD_OUTPUT_ONLY_FIELDS: &[&str] = &[
    "id",
    "version",
    "create_time",
    "update_time",
    "created_by",
    "updated_by",
];

pub fn parse_update_mask(
    violations: &mut Violations,
    paths: &[String],
    mutable: &[&'static str],
    immutable: &[&'static str],
) -> Vec<&'static str> {
    if paths.is_empty() || (paths.len() == 1 && paths[0].trim() == "*") {
        return mutable.to_vec();
    }
    let mut fields = Vec::with_capacity(paths.len());
    for (i, path) in paths.iter().enumerate() {
        let path = path.trim();
        let at = format!("update_mask.paths[{i}]");
        if let Some(field) = mutable.iter().find(|f| **f == path) {
            if !fields.contains(field) {
                fields.push(*field);
            }
        } else if immutable.contains(&path) || RECORD_OUTPUT_ONLY_FIELDS.contains(&path) {
            violations.push(
                at,
                reason::IMMUTABLE_FIELD,
                format!("{path:?} cannot be changed"),
            );
        } else if path == "*" {
            violations.push(
                at,
                reason::INVALID_UPDATE_MASK,
                "\"*\" must be the only path",
            );
        } else {
            violations.push(
                at,
                reason::INVALID_UPDATE_MASK,
                format!(
                    "unknown field {path:?}; mutable fields are: {}",
                    mutable.join(", ")
                ),
            );
        }
    }
    fields
}

fn to_object<T: Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// `current` with the named `fields` taken from `new`.
pub fn apply<T: Serialize + DeserializeOwned>(
    current: &T,
    new: &T,
    fields: &[&str],
) -> Result<T, serde_json::Error> {
    let mut merged = to_object(current);
    let new = to_object(new);
    for field in fields {
        if let Some(value) = new.get(*field) {
            merged.insert((*field).to_owned(), value.clone());
        }
    }
    serde_json::from_value(Value::Object(merged))
}

/// One changed field with its old and new value.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

/// The fields whose values differ between `old` and `new`, in declaration order.
pub fn diff<T: Serialize>(old: &T, new: &T) -> Vec<FieldChange> {
    let old = to_object(old);
    let new = to_object(new);
    new.into_iter()
        .filter_map(|(field, new_value)| {
            let old_value = old.get(&field).cloned().unwrap_or(Value::Null);
            (old_value != new_value).then_some(FieldChange {
                field,
                old: old_value,
                new: new_value,
            })
        })
        .collect()
}

/// Every field of a new record, as changes from nothing.
pub fn all_fields<T: Serialize>(record: &T) -> Vec<FieldChange> {
    to_object(record)
        .into_iter()
        .map(|(field, new)| FieldChange {
            field,
            old: Value::Null,
            new,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        a: String,
        b: Vec<String>,
        c: bool,
    }

    const MUTABLE: &[&str] = &["a", "b", "c"];

    #[test]
    fn empty_or_star_mask_means_every_mutable_field() {
        let mut v = Violations::new();
        assert_eq!(parse_update_mask(&mut v, &[], MUTABLE, &[]), MUTABLE);
        assert_eq!(
            parse_update_mask(&mut v, &["*".into()], MUTABLE, &[]),
            MUTABLE
        );
        assert!(v.is_empty());
    }

    #[test]
    fn unknown_and_immutable_paths_are_reported_each() {
        let mut v = Violations::new();
        let paths = ["a".into(), "nope".into(), "id".into()];
        let fields = parse_update_mask(&mut v, &paths, MUTABLE, &["id"]);
        assert_eq!(fields, ["a"]);
        let got = v.fields_and_reasons();
        assert_eq!(
            got,
            [
                ("update_mask.paths[1]", reason::INVALID_UPDATE_MASK),
                ("update_mask.paths[2]", reason::IMMUTABLE_FIELD)
            ]
        );
    }

    #[test]
    fn apply_takes_only_masked_fields_and_diff_names_them() {
        let old = Rec {
            a: "x".into(),
            b: vec![],
            c: false,
        };
        let new = Rec {
            a: "y".into(),
            b: vec!["t".into()],
            c: true,
        };
        let merged = apply(&old, &new, &["b"]).unwrap();
        assert_eq!(
            merged,
            Rec {
                a: "x".into(),
                b: vec!["t".into()],
                c: false
            }
        );
        let changed: Vec<_> = diff(&old, &merged).into_iter().map(|c| c.field).collect();
        assert_eq!(changed, ["b"]);
        assert!(diff(&old, &old).is_empty());
    }
}
