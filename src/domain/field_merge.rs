//! Field-level merge of concurrent edits: a save based on an older version, applied on top of the current record
//! when nobody else changed the fields it changes.
//!
//! The change log holds every field's old and new value per version, so the record as the caller saw it is the
//! current record with the changes made since rolled back. For each field of the caller's mask:
//! - nobody changed it since: the caller's value applies;
//! - the caller sends the value it saw (a whole-record save of an untouched field), or the value it now has: the
//!   current value stays, no conflict;
//! - a set (tags, contact points): the caller's additions and removals relative to what it saw are applied to the
//!   current set, elements compared by their key (tags case-insensitively, contact points after normalization);
//! - a map (attributes): per key, likewise; a key both changed to different values is a conflict
//!   (`attributes["key"]`);
//! - any other field changed by someone else is a conflict, naming who changed it last and when.
//!
//! Works on the records' JSON form (what the log stores), so one implementation serves every record type.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use super::time::Micros;

/// What an update based on an older version asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// A stale version is refused as a whole (`VERSION_MISMATCH`).
    #[default]
    Refuse,
    /// The caller's fields are merged onto the current record unless someone else changed them.
    Merge,
}

/// How a field merges.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// One value: changed by both is a conflict.
    Scalar,
    /// A list of unique elements, compared by `key`, holding at most `max` (`reason` past it).
    Set {
        key: fn(&Value) -> String,
        max: usize,
        reason: &'static str,
    },
    /// A string map, merged per key, holding at most `max` keys (`reason` past it).
    Map { max: usize, reason: &'static str },
}

/// One logged change of the record after the caller's version, as read from the change log.
#[derive(Clone, Debug)]
pub struct LoggedEdit {
    pub version: i64,
    pub agent: String,
    pub time: Micros,
    /// Field -> (old, new) as the log recorded them.
    pub values: BTreeMap<String, (Value, Value)>,
}

/// A masked field someone else changed since the caller's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Relative to the record: `notes`, `attributes["vip"]`.
    pub field: String,
    /// Who changed it last, when, and at which version.
    pub agent: String,
    pub time: Micros,
    pub version: i64,
}

/// Why a stale save cannot be merged.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Fields changed by someone else.
    Conflicts(Vec<Conflict>),
    /// The merged value breaks a limit: (field, reason, description).
    Limit(String, &'static str, String),
    /// The log does not hold what the record was at the caller's version.
    Uncovered,
}

/// The caller's masked fields merged onto `current`: the JSON object to apply under the same mask. `caller` and
/// `current` are the records' JSON objects; `edits` every change after the caller's version, in order.
pub fn merge(
    fields: &[&str],
    shape: impl Fn(&str) -> Shape,
    caller: &Map<String, Value>,
    current: &Map<String, Value>,
    edits: &[LoggedEdit],
) -> Result<Map<String, Value>, Refusal> {
    let mut merged = caller.clone();
    let mut conflicts = Vec::new();
    for field in fields {
        let touching: Vec<&LoggedEdit> = edits
            .iter()
            .filter(|edit| edit.values.contains_key(*field))
            .collect();
        let (Some(first), Some(last)) = (touching.first(), touching.last()) else {
            continue; // Nobody changed it since: the caller's value applies.
        };
        let seen = &first.values[*field].0;
        let mine = caller.get(*field).unwrap_or(&Value::Null);
        let now = current.get(*field).unwrap_or(&Value::Null);
        if mine == seen || mine == now {
            merged.insert((*field).to_owned(), now.clone());
            continue;
        }
        let value = match shape(field) {
            Shape::Scalar => {
                conflicts.push(conflict(field, last));
                continue;
            }
            Shape::Set { key, max, reason } => {
                let value = merge_set(seen, mine, now, key);
                within_limit(field, reason, value.len(), max, "entries")?;
                Value::Array(value)
            }
            Shape::Map { max, reason } => {
                let (value, clashes) = merge_map(seen, mine, now);
                for clash in clashes {
                    let by = touching
                        .iter()
                        .rev()
                        .find(|edit| map_key_changed(&edit.values[*field], &clash))
                        .unwrap_or(last);
                    conflicts.push(conflict(&format!("{field}[{clash:?}]"), by));
                }
                within_limit(field, reason, value.len(), max, "keys")?;
                Value::Object(value)
            }
        };
        merged.insert((*field).to_owned(), value);
    }
    if conflicts.is_empty() {
        Ok(merged)
    } else {
        Err(Refusal::Conflicts(conflicts))
    }
}

fn conflict(field: &str, by: &LoggedEdit) -> Conflict {
    Conflict {
        field: field.to_owned(),
        agent: by.agent.clone(),
        time: by.time,
        version: by.version,
    }
}

fn elements(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// Refuses a merged `field` holding `len` entries (`unit`) when it may hold at most `max`.
fn within_limit(
    field: &str,
    reason: &'static str,
    len: usize,
    max: usize,
    unit: &str,
) -> Result<(), Refusal> {
    if len > max {
        return Err(Refusal::Limit(
            field.to_owned(),
            reason,
            format!(
                "merged with the changes made since, it would hold {len} {unit} (at most {max})"
            ),
        ));
    }
    Ok(())
}

/// The current set, less what the caller removed from the set it saw, plus what it added (or changed).
fn merge_set(seen: &Value, mine: &Value, now: &Value, key: fn(&Value) -> String) -> Vec<Value> {
    let seen_keys: HashSet<String> = elements(seen).iter().map(key).collect();
    let mine_keys: HashSet<String> = elements(mine).iter().map(key).collect();
    let seen_elements: Vec<&Value> = elements(seen).iter().collect();
    let mut result: Vec<Value> = Vec::new();
    for element in elements(now) {
        let k = key(element);
        if seen_keys.contains(&k) && !mine_keys.contains(&k) {
            continue; // Removed by the caller.
        }
        // Changed by the caller (same key, other details, such as a contact point's label): the caller's.
        let replaced = elements(mine)
            .iter()
            .find(|m| key(m) == k && !seen_elements.contains(m) && seen_keys.contains(&k));
        result.push(replaced.unwrap_or(element).clone());
    }
    let mut present: HashSet<String> = result.iter().map(key).collect();
    for element in elements(mine) {
        let k = key(element);
        if !seen_keys.contains(&k) && present.insert(k) {
            result.push(element.clone()); // Added by the caller.
        }
    }
    result
}

/// Per key: the caller's change where it made one, else the current value; keys both changed differently clash.
fn merge_map(seen: &Value, mine: &Value, now: &Value) -> (Map<String, Value>, Vec<String>) {
    let empty = Map::new();
    let seen = seen.as_object().unwrap_or(&empty);
    let mine = mine.as_object().unwrap_or(&empty);
    let now = now.as_object().unwrap_or(&empty);
    let mut result = now.clone();
    let mut clashes = Vec::new();
    let keys: std::collections::BTreeSet<&String> = seen.keys().chain(mine.keys()).collect();
    for k in keys {
        let (was, wants, is) = (seen.get(k), mine.get(k), now.get(k));
        if wants == was {
            continue; // Not the caller's change.
        }
        if is != was && is != wants {
            clashes.push(k.clone());
            continue;
        }
        match wants {
            Some(value) => result.insert(k.clone(), value.clone()),
            None => result.remove(k),
        };
    }
    (result, clashes)
}

/// Whether a logged (old, new) of a map changed `key`.
fn map_key_changed((old, new): &(Value, Value), key: &str) -> bool {
    old.get(key) != new.get(key)
}

/// How each field of the records merges: tags and contact points as sets, attributes as a map, the rest as
/// single values; with the limits of each.
pub fn shape_of(field: &str) -> Shape {
    use super::violations::reason;
    match field {
        "tags" => Shape::Set {
            key: tag_element_key,
            max: super::tags::MAX_TAGS,
            reason: reason::TOO_MANY_TAGS,
        },
        "contact_points" => Shape::Set {
            key: contact_element_key,
            max: super::contact::MAX_CONTACT_POINTS,
            reason: reason::TOO_MANY_CONTACT_POINTS,
        },
        "attributes" => Shape::Map {
            max: super::attributes::MAX_ATTRIBUTES,
            reason: reason::TOO_MANY_ATTRIBUTES,
        },
        _ => Shape::Scalar,
    }
}

/// The key of a tag: trimmed and lower-cased (as [`super::tags::tag_key`]).
pub fn tag_element_key(value: &Value) -> String {
    super::tags::tag_key(value.as_str().unwrap_or_default())
}

/// The key of a contact point: its kind and normalized value (as duplicates are found).
pub fn contact_element_key(value: &Value) -> String {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let raw = value
        .get("value")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match super::contact::ContactKind::parse(kind) {
        Some(parsed) => format!("{kind}:{}", super::contact::match_key(parsed, raw)),
        None => format!("{kind}:{raw}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn shape(field: &str) -> Shape {
        match field {
            "tags" => Shape::Set {
                key: tag_element_key,
                max: 3,
                reason: "TOO_MANY_TAGS",
            },
            "attributes" => Shape::Map {
                max: 3,
                reason: "TOO_MANY_ATTRIBUTES",
            },
            _ => Shape::Scalar,
        }
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn edit(version: i64, agent: &str, values: &[(&str, Value, Value)]) -> LoggedEdit {
        LoggedEdit {
            version,
            agent: agent.into(),
            time: version * 1_000,
            values: values
                .iter()
                .map(|(f, old, new)| ((*f).to_owned(), (old.clone(), new.clone())))
                .collect(),
        }
    }

    #[test]
    fn disjoint_fields_merge_and_a_changed_field_is_a_conflict_naming_who() {
        let current = object(json!({"notes": "a", "phone": "+1 2", "tags": []}));
        let edits = [edit(2, "ben", &[("phone", json!("+1 1"), json!("+1 2"))])];
        let caller = object(json!({"notes": "typed by ana", "phone": "+1 1", "tags": []}));
        let merged = merge(&["notes"], shape, &caller, &current, &edits).unwrap();
        assert_eq!(merged["notes"], "typed by ana");
        // A whole-record save sends the phone Ana saw: Ben's stays.
        let merged = merge(&["notes", "phone"], shape, &caller, &current, &edits).unwrap();
        assert_eq!(merged["phone"], "+1 2");
        // Ana changed the phone too, to something else: a conflict naming Ben.
        let caller = object(json!({"notes": "x", "phone": "+1 3", "tags": []}));
        let refused = merge(&["notes", "phone"], shape, &caller, &current, &edits).unwrap_err();
        assert_eq!(
            refused,
            Refusal::Conflicts(vec![Conflict {
                field: "phone".into(),
                agent: "ben".into(),
                time: 2_000,
                version: 2
            }])
        );
    }

    #[test]
    fn sets_merge_additions_and_removals_and_respect_their_limit() {
        let edits = [edit(
            2,
            "ben",
            &[("tags", json!(["a", "b"]), json!(["a", "b", "c"]))],
        )];
        let current = object(json!({"tags": ["a", "b", "c"]}));
        // Ana removed "a" and added "D" to what she saw (a, b).
        let caller = object(json!({"tags": ["b", "D"]}));
        let merged = merge(&["tags"], shape, &caller, &current, &edits).unwrap();
        assert_eq!(merged["tags"], json!(["b", "c", "D"]));
        // Adding "c" again (in other case) adds nothing.
        let caller = object(json!({"tags": ["a", "b", "C"]}));
        let merged = merge(&["tags"], shape, &caller, &current, &edits).unwrap();
        assert_eq!(merged["tags"], json!(["a", "b", "c"]));
        // Two additions on top of Ben's pass the limit of 3.
        let caller = object(json!({"tags": ["a", "b", "x", "y"]}));
        assert!(matches!(
            merge(&["tags"], shape, &caller, &current, &edits),
            Err(Refusal::Limit(field, "TOO_MANY_TAGS", _)) if field == "tags"
        ));
    }

    #[test]
    fn maps_merge_per_key_and_the_same_key_changed_by_both_is_a_conflict() {
        let edits = [edit(
            4,
            "ben",
            &[(
                "attributes",
                json!({"tier": "gold"}),
                json!({"tier": "gold", "vip": "yes"}),
            )],
        )];
        let current = object(json!({"attributes": {"tier": "gold", "vip": "yes"}}));
        let caller = object(json!({"attributes": {"tier": "silver"}}));
        let merged = merge(&["attributes"], shape, &caller, &current, &edits).unwrap();
        assert_eq!(
            merged["attributes"],
            json!({"tier": "silver", "vip": "yes"})
        );
        let caller = object(json!({"attributes": {"tier": "gold", "vip": "no"}}));
        let Err(Refusal::Conflicts(conflicts)) =
            merge(&["attributes"], shape, &caller, &current, &edits)
        else {
            panic!("a conflict")
        };
        assert_eq!(conflicts[0].field, r#"attributes["vip"]"#);
        assert_eq!(conflicts[0].agent, "ben");
    }
}
