//! A look at a request's wire bytes, against its descriptor, before prost decodes it: two rules that must hold
//! for every string and list of every method, enforced once here instead of by each handler.
//!
//! - **Text.** Every string field obeys [`text::check_characters`] (no U+0000, no C0 control but tab, line feed
//!   and carriage return): both backends then store the same values, and PostgreSQL, whose `text` cannot hold
//!   U+0000, never fails where SQLite would succeed.
//! - **Size.** A message holds at most [`MAX_ELEMENTS`] values (fields, list and map entries, at every depth).
//!   Decoding allocates per value (a one-character string costs about 16 times its three wire bytes), so without
//!   this bound a 4 MiB request of a million tiny tags would cost some 60 MiB before any rule could refuse it.
//!
//! Bytes that do not parse are left to prost, which refuses them (`MALFORMED_MESSAGE`).

use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};

use crate::domain::{Violations, reason, text};

/// Most values a request may hold. The largest honest request (a customer with every list at its limit, or a
/// watch subscription of 1,000 records) holds a few thousand.
pub const MAX_ELEMENTS: usize = 100_000;
/// Nesting followed; no message of the API nests this deep, and deeper bytes are left to prost.
const MAX_DEPTH: usize = 16;
/// Characters of a map key quoted in a field path.
const QUOTED_KEY_CHARS: usize = 64;

/// Checks an encoded message of type `descriptor`: every violation of the text rule, or the one of the size
/// rule. Stops quietly where the bytes do not parse.
pub fn inspect(descriptor: &MessageDescriptor, bytes: &[u8]) -> Result<(), Violations> {
    let mut walk = Walk {
        violations: Violations::new(),
        elements: 0,
        too_big: false,
    };
    walk.message(descriptor, bytes, "", 0);
    walk.violations.into_result(())
}

struct Walk {
    violations: Violations,
    elements: usize,
    too_big: bool,
}

impl Walk {
    /// Walks one message; false when its bytes do not parse or the size rule was broken (stop everything).
    fn message(
        &mut self,
        descriptor: &MessageDescriptor,
        mut bytes: &[u8],
        path: &str,
        depth: usize,
    ) -> bool {
        if depth > MAX_DEPTH {
            return true;
        }
        // Occurrences so far of each repeated field, for element indexes in paths.
        let mut seen: Vec<(u32, usize)> = Vec::new();
        while !bytes.is_empty() {
            let Some((number, wire_type, payload)) = next_field(&mut bytes) else {
                return false;
            };
            let field = descriptor.get_field(number);
            let index = match &field {
                Some(field) if field.cardinality() == Cardinality::Repeated => {
                    match seen.iter_mut().find(|(n, _)| *n == number) {
                        Some((_, count)) => {
                            *count += 1;
                            *count - 1
                        }
                        None => {
                            seen.push((number, 1));
                            0
                        }
                    }
                }
                _ => 0,
            };
            // A packed list of numbers holds up to one value per byte.
            let values = if wire_type == 2 && field.as_ref().is_some_and(is_packable) {
                payload.len().max(1)
            } else {
                1
            };
            self.elements += values;
            if self.elements > MAX_ELEMENTS {
                let at = field
                    .as_ref()
                    .map_or_else(|| path.to_owned(), |f| join(path, f.name()));
                self.too_many(&at);
                return false;
            }
            let (Some(field), 2) = (field, wire_type) else {
                continue;
            };
            if !self.field(&field, payload, path, index, depth) {
                return false;
            }
        }
        true
    }

    /// Checks the length-delimited value of `field` (its `index`-th occurrence).
    fn field(
        &mut self,
        field: &FieldDescriptor,
        payload: &[u8],
        path: &str,
        index: usize,
        depth: usize,
    ) -> bool {
        let name = join(path, field.name());
        match field.kind() {
            Kind::String => {
                let here = if field.is_list() {
                    format!("{name}[{index}]")
                } else {
                    name
                };
                self.string(&here, payload);
                true
            }
            Kind::Message(entry) if field.is_map() => self.map_entry(&entry, payload, &name, depth),
            Kind::Message(message) => {
                let here = if field.is_list() {
                    format!("{name}[{index}]")
                } else {
                    name
                };
                self.message(&message, payload, &here, depth + 1)
            }
            _ => true,
        }
    }

    /// A map entry: the key and, if it is a message, the value, named `map["key"]`.
    fn map_entry(
        &mut self,
        entry: &MessageDescriptor,
        payload: &[u8],
        map: &str,
        depth: usize,
    ) -> bool {
        let key = entry_key(payload).unwrap_or_default();
        let quoted: String = key.chars().take(QUOTED_KEY_CHARS).collect();
        let here = format!("{map}[{quoted:?}]");
        if text::forbidden_character(&key).is_some() {
            self.string(&here, key.as_bytes());
        }
        let mut bytes = payload;
        while !bytes.is_empty() {
            let Some((number, wire_type, value)) = next_field(&mut bytes) else {
                return false;
            };
            if number != 2 || wire_type != 2 {
                continue;
            }
            let fine = match entry.map_entry_value_field().kind() {
                Kind::String => {
                    self.string(&here, value);
                    true
                }
                Kind::Message(message) => self.message(&message, value, &here, depth + 1),
                _ => true,
            };
            if !fine {
                return false;
            }
        }
        true
    }

    fn string(&mut self, path: &str, bytes: &[u8]) {
        // Invalid UTF-8 is prost's to refuse; the rule is about characters.
        if let Ok(value) = std::str::from_utf8(bytes) {
            text::check_characters(&mut self.violations, path, value);
        }
    }

    fn too_many(&mut self, path: &str) {
        if !self.too_big {
            self.too_big = true;
            let at = if path.is_empty() { "request" } else { path };
            self.violations.push(
                at,
                reason::TOO_MANY_ELEMENTS,
                format!(
                    "a request holds at most {MAX_ELEMENTS} values (fields, list and map entries); no call of \
                     this API needs more"
                ),
            );
        }
    }
}

/// The string key of a map entry, if it has one.
fn entry_key(mut bytes: &[u8]) -> Option<String> {
    let mut key = None;
    while !bytes.is_empty() {
        let (number, wire_type, value) = next_field(&mut bytes)?;
        if number == 1 && wire_type == 2 {
            key = Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    key
}

/// The next field of a message: its number, wire type and bytes (empty for a varint). None where the bytes do
/// not parse, or hold a group (not proto3: prost decides what to make of it).
fn next_field<'a>(bytes: &mut &'a [u8]) -> Option<(u32, u64, &'a [u8])> {
    let key = varint(bytes)?;
    let number = u32::try_from(key >> 3).ok()?;
    let wire_type = key & 7;
    let payload = match wire_type {
        0 => varint(bytes).map(|_| &[][..]),
        1 => take(bytes, 8),
        2 => {
            let len = usize::try_from(varint(bytes)?).ok()?;
            take(bytes, len)
        }
        5 => take(bytes, 4),
        _ => None,
    }?;
    Some((number, wire_type, payload))
}

fn is_packable(field: &FieldDescriptor) -> bool {
    field.is_list() && !matches!(field.kind(), Kind::String | Kind::Bytes | Kind::Message(_))
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in 0..10 {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << (shift * 7);
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if bytes.len() < len {
        return None;
    }
    let (value, rest) = bytes.split_at(len);
    *bytes = rest;
    Some(value)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::{codec::descriptor_of, pb};

    fn check<M: Message + crate::codec::Described>(message: &M) -> Vec<(String, &'static str)> {
        let descriptor = descriptor_of::<M>().expect("a descriptor");
        match inspect(&descriptor, &message.encode_to_vec()) {
            Ok(()) => Vec::new(),
            Err(violations) => violations
                .iter()
                .map(|v| (v.field.clone(), v.reason))
                .collect(),
        }
    }

    #[test]
    fn every_forbidden_character_is_named_by_its_path() {
        let request = pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                first_name: "A\0na".into(),
                notes: "line one\nline two\ttabbed\r\n".into(),
                tags: vec!["ok".into(), "b\u{1}ad".into()],
                contact_points: vec![pb::ContactPoint {
                    value: "+1 415\u{0} 555".into(),
                    ..Default::default()
                }],
                attributes: [
                    ("ti\0er".to_owned(), "gold".to_owned()),
                    ("plan".to_owned(), "x\u{1f}".to_owned()),
                ]
                .into(),
                ..Default::default()
            }),
        };
        let mut found = check(&request);
        found.sort();
        assert_eq!(
            found,
            [
                (
                    r#"customer.attributes["plan"]"#.to_owned(),
                    reason::INVALID_CHARACTER
                ),
                (
                    "customer.attributes[\"ti\\0er\"]".to_owned(),
                    reason::INVALID_CHARACTER
                ),
                (
                    "customer.contact_points[0].value".to_owned(),
                    reason::INVALID_CHARACTER
                ),
                ("customer.first_name".to_owned(), reason::INVALID_CHARACTER),
                ("customer.tags[1]".to_owned(), reason::INVALID_CHARACTER),
            ]
        );
    }

    #[test]
    fn clean_requests_pass_and_emoji_and_controls_beyond_c0_are_text() {
        let request = pb::CreateActivityRequest {
            activity: Some(pb::Activity {
                notes: "😀".repeat(2000) + "\u{7f}\u{85}\u{2028}",
                tags: vec!["a".into(); 100],
                ..Default::default()
            }),
        };
        assert!(check(&request).is_empty());
    }

    #[test]
    fn a_request_of_too_many_values_is_refused_at_the_list() {
        let request = pb::UpdateCustomerRequest {
            update_mask: Some(prost_types::FieldMask {
                paths: vec![String::new(); MAX_ELEMENTS + 1],
            }),
            ..Default::default()
        };
        assert_eq!(
            check(&request),
            [("update_mask.paths".to_owned(), reason::TOO_MANY_ELEMENTS)]
        );
    }

    #[test]
    fn garbage_is_left_to_prost() {
        let descriptor = descriptor_of::<pb::CreateCustomerRequest>().unwrap();
        for bytes in [
            &[0xff_u8; 11][..],
            &[0x0a, 0x05, 0x01],
            &[0x0b],
            &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
        ] {
            assert!(inspect(&descriptor, bytes).is_ok(), "{bytes:?}");
        }
    }
}
