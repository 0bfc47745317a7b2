//! Free-form customer attributes: a small map of machine-friendly keys to text values
//! (`plan = "gold"`, `crm.account-id = "A-17"`).

use std::collections::HashMap;

use super::text::check_text;
use super::violations::{Violations, reason};

/// Most entries in one attribute map.
pub const MAX_ATTRIBUTES: usize = 100;
/// Most characters in one attribute key.
pub const MAX_ATTRIBUTE_KEY_CHARS: usize = 64;

/// Checks an attribute map.
///
/// Keys must be 1 to [`MAX_ATTRIBUTE_KEY_CHARS`] characters of `[A-Za-z0-9_.-]`
/// (`INVALID_ATTRIBUTE_KEY` at `{field}["{key}"]`, the key written with Rust's `{:?}` escaping,
/// e.g. `customer.attributes["bad key"]`); values hold at most
/// [`MAX_TEXT_CHARS`](super::text::MAX_TEXT_CHARS) characters
/// (`FIELD_TOO_LONG` at the same path). More than [`MAX_ATTRIBUTES`] entries is
/// `TOO_MANY_ATTRIBUTES` at `field`. Keys are visited in sorted order, so the violations come out
/// the same on every call.
pub fn check_attributes(
    violations: &mut Violations,
    field: &str,
    attributes: &HashMap<String, String>,
) {
    if attributes.len() > MAX_ATTRIBUTES {
        violations.push(
            field,
            reason::TOO_MANY_ATTRIBUTES,
            format!(
                "at most {MAX_ATTRIBUTES} attributes (got {})",
                attributes.len()
            ),
        );
    }
    let mut entries: Vec<_> = attributes.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (key, value) in entries {
        let path = format!("{field}[{key:?}]");
        if !is_valid_key(key) {
            violations.push(
                &path,
                reason::INVALID_ATTRIBUTE_KEY,
                format!(
                    "a key has 1 to {MAX_ATTRIBUTE_KEY_CHARS} characters, \
                     each a letter, digit, '_', '.' or '-'"
                ),
            );
        }
        check_text(violations, &path, value);
    }
}

fn is_valid_key(key: &str) -> bool {
    // All allowed characters are ASCII, so bytes and characters agree.
    (1..=MAX_ATTRIBUTE_KEY_CHARS).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check(pairs: &[(&str, &str)]) -> Vec<(String, &'static str)> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut v = Violations::new();
        check_attributes(&mut v, "customer.attributes", &map);
        v.iter().map(|v| (v.field.clone(), v.reason)).collect()
    }

    #[test]
    fn good_keys_and_values_pass() {
        let long_key = "k".repeat(64);
        let value = "é".repeat(2000);
        assert!(
            check(&[
                ("plan", "gold"),
                ("crm.account-id_2", ""),
                (&long_key, &value)
            ])
            .is_empty()
        );
        assert!(check(&[]).is_empty());
    }

    #[test]
    fn bad_keys_are_reported_with_escaped_paths() {
        let long_key = "k".repeat(65);
        let found = check(&[
            ("bad key", "x"),
            ("", "x"),
            ("quote\"d", "x"),
            ("ünï", "x"),
            (&long_key, "x"),
            ("ok", "x"),
        ]);
        let expected: Vec<(String, &str)> = [
            r#"customer.attributes[""]"#.to_string(),
            r#"customer.attributes["bad key"]"#.to_string(),
            format!("customer.attributes[\"{long_key}\"]"),
            r#"customer.attributes["quote\"d"]"#.to_string(),
            r#"customer.attributes["ünï"]"#.to_string(),
        ]
        .into_iter()
        .map(|f| (f, reason::INVALID_ATTRIBUTE_KEY))
        .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn long_values_are_reported_at_their_key() {
        let long = "😀".repeat(2001);
        let found = check(&[("note", &long), ("bad key", &long)]);
        assert_eq!(
            found,
            [
                (
                    r#"customer.attributes["bad key"]"#.to_string(),
                    reason::INVALID_ATTRIBUTE_KEY
                ),
                (
                    r#"customer.attributes["bad key"]"#.to_string(),
                    reason::FIELD_TOO_LONG
                ),
                (
                    r#"customer.attributes["note"]"#.to_string(),
                    reason::FIELD_TOO_LONG
                ),
            ]
        );
    }

    #[test]
    fn at_most_one_hundred_attributes() {
        let mut map: HashMap<String, String> =
            (0..100).map(|i| (format!("k{i}"), String::new())).collect();
        let mut v = Violations::new();
        check_attributes(&mut v, "customer.attributes", &map);
        assert!(v.is_empty());
        map.insert("k100".into(), String::new());
        check_attributes(&mut v, "customer.attributes", &map);
        let found = v.fields_and_reasons();
        assert_eq!(
            found,
            [("customer.attributes", reason::TOO_MANY_ATTRIBUTES)]
        );
    }

    proptest! {
        #[test]
        fn violations_are_deterministic_and_sorted(
            map in proptest::collection::hash_map(".{0,5}", ".{0,3}", 0..20)
        ) {
            let mut first = Violations::new();
            check_attributes(&mut first, "a", &map);
            // A copy of the map iterates in a different order; the report must not change.
            let copy: HashMap<String, String> = map.clone().into_iter().collect();
            let mut second = Violations::new();
            check_attributes(&mut second, "a", &copy);
            prop_assert_eq!(&first, &second);
            let fields: Vec<_> = first.iter().map(|v| v.field.clone()).collect();
            let mut sorted_keys: Vec<_> = map.keys().filter(|k| !is_valid_key(k)).collect();
            sorted_keys.sort();
            let expected: Vec<_> = sorted_keys.iter().map(|k| format!("a[{k:?}]")).collect();
            prop_assert_eq!(fields, expected);
        }

        #[test]
        fn keys_of_allowed_characters_pass(key in "[A-Za-z0-9_.-]{1,64}") {
            prop_assert!(is_valid_key(&key));
        }
    }
}
