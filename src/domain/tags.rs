//! Tags on activities and customers: short labels, trimmed, unique ignoring case and surrounding
//! whitespace ("VIP" and " vip " are the same tag).

use std::collections::HashMap;

use super::violations::{Violations, reason};

/// Most characters in one tag (after trimming).
pub const MAX_TAG_CHARS: usize = 50;
/// Most tags on one record.
pub const MAX_TAGS: usize = 100;

/// Trims every tag and returns them in the given order.
///
/// Reports, each at `{field}[{i}]` with `i` the index in the input: `EMPTY_TAG` for a tag that is
/// empty after trimming, `FIELD_TOO_LONG` for more than [`MAX_TAG_CHARS`] characters after
/// trimming, and `DUPLICATE_TAG` for a tag whose [`tag_key`] equals an earlier tag's, naming the
/// earlier one. More than [`MAX_TAGS`] tags is `TOO_MANY_TAGS` at `field`.
pub fn normalize_tags(violations: &mut Violations, field: &str, tags: &[String]) -> Vec<String> {
    if tags.len() > MAX_TAGS {
        violations.push(
            field,
            reason::TOO_MANY_TAGS,
            format!("at most {MAX_TAGS} tags (got {})", tags.len()),
        );
    }
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    // The same text again is checked once, and once the violations are full the rest are only counted: a
    // request of a hundred thousand copies of one tag costs a lookup each.
    let mut raw_seen: HashMap<&str, Option<usize>> = HashMap::new();
    let mut normalized = Vec::with_capacity(tags.len().min(MAX_TAGS + 1));
    for (i, tag) in tags.iter().enumerate() {
        let tag = tag.trim();
        if let Some(verdict) = raw_seen.get(tag) {
            // Seen before: a duplicate of the first, or refused again for the same reason.
            if violations.is_full() {
                violations.count_more(1);
                continue;
            }
            match verdict {
                Some(earlier) => violations.push(
                    format!("{field}[{i}]"),
                    reason::DUPLICATE_TAG,
                    format!("duplicates {field}[{earlier}] ({tag:?})"),
                ),
                None => check_one(violations, field, i, tag, &mut first_seen, tags),
            }
            continue;
        }
        let before = violations.len();
        check_one(violations, field, i, tag, &mut first_seen, tags);
        raw_seen.insert(tag, (violations.len() == before).then_some(i));
        if normalized.len() <= MAX_TAGS {
            normalized.push(tag.to_owned());
        }
    }
    normalized
}

/// Checks the `i`-th tag, `tag` trimmed, against the rules and the tags before it.
fn check_one(
    violations: &mut Violations,
    field: &str,
    i: usize,
    tag: &str,
    first_seen: &mut HashMap<String, usize>,
    tags: &[String],
) {
    let chars = tag.chars().count();
    if tag.is_empty() {
        violations.push(
            format!("{field}[{i}]"),
            reason::EMPTY_TAG,
            "a tag must not be empty",
        );
    } else if chars > MAX_TAG_CHARS {
        violations.push(
            format!("{field}[{i}]"),
            reason::FIELD_TOO_LONG,
            format!("a tag has at most {MAX_TAG_CHARS} characters (got {chars})"),
        );
    } else if let Some(&earlier) = first_seen.get(&tag_key(tag)) {
        violations.push(
            format!("{field}[{i}]"),
            reason::DUPLICATE_TAG,
            format!("duplicates {field}[{earlier}] ({:?})", tags[earlier].trim()),
        );
    } else {
        first_seen.insert(tag_key(tag), i);
    }
}

/// The key tags are compared by: trimmed and lower-cased.
pub fn tag_key(tag: &str) -> String {
    tag.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn run(tags: &[&str]) -> (Vec<String>, Violations) {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let mut v = Violations::new();
        let out = normalize_tags(&mut v, "activity.tags", &tags);
        (out, v)
    }

    #[test]
    fn tags_are_trimmed_and_kept_in_order() {
        let (out, v) = run(&[" billing", "VIP ", "Ünïcode"]);
        assert!(v.is_empty(), "{v}");
        assert_eq!(out, ["billing", "VIP", "Ünïcode"]);
    }

    #[test]
    fn case_and_whitespace_variants_are_duplicates() {
        let (out, v) = run(&["VIP", " vip "]);
        assert_eq!(out, ["VIP", "vip"]);
        let found: Vec<_> = v.iter().collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, "activity.tags[1]");
        assert_eq!(found[0].reason, reason::DUPLICATE_TAG);
        assert_eq!(
            found[0].description,
            "duplicates activity.tags[0] (\"VIP\")"
        );
    }

    #[test]
    fn later_duplicates_name_the_first_occurrence() {
        let (_, v) = run(&["a", "b", "A", "a "]);
        let found: Vec<_> = v
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("activity.tags[2]", "duplicates activity.tags[0] (\"a\")"),
                ("activity.tags[3]", "duplicates activity.tags[0] (\"a\")"),
            ]
        );
    }

    #[test]
    fn unicode_case_is_folded() {
        let (_, v) = run(&["ÉTÉ", "été", "ΣΊΣΥΦΟΣ", "σίσυφοσ"]);
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["activity.tags[1]"]);
        // Final sigma: "ΣΊΣΥΦΟΣ" lower-cases to "σίσυφος", a different key from "σίσυφοσ".
        assert_eq!(tag_key("ΣΊΣΥΦΟΣ"), "σίσυφος");
    }

    #[test]
    fn empty_and_too_long_tags_are_reported_at_their_index() {
        let long = "x".repeat(51);
        let (_, v) = run(&["ok", "  ", &long, ""]);
        let found = v.fields_and_reasons();
        assert_eq!(
            found,
            [
                ("activity.tags[1]", reason::EMPTY_TAG),
                ("activity.tags[2]", reason::FIELD_TOO_LONG),
                ("activity.tags[3]", reason::EMPTY_TAG),
            ]
        );
    }

    #[test]
    fn at_most_one_hundred_tags() {
        let tags: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
        let mut v = Violations::new();
        normalize_tags(&mut v, "activity.tags", &tags[..100]);
        assert!(v.is_empty());
        normalize_tags(&mut v, "activity.tags", &tags);
        let found = v.fields_and_reasons();
        assert_eq!(found, [("activity.tags", reason::TOO_MANY_TAGS)]);
    }

    /// Tags without surrounding whitespace, at most 10 characters.
    fn plain_tag() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9éÉßΣσ😀_-][a-zA-Z0-9éÉßΣσ😀 _-]{0,8}[a-zA-Z0-9éÉßΣσ😀_-]"
    }

    fn with_case_and_spaces(tag: &str, upper: bool, pad: (usize, usize)) -> String {
        let cased = if upper {
            tag.to_uppercase()
        } else {
            tag.to_lowercase()
        };
        format!("{}{cased}{}", " ".repeat(pad.0), "\t".repeat(pad.1))
    }

    proptest! {
        #[test]
        fn tag_key_is_idempotent(tag in any::<String>()) {
            let key = tag_key(&tag);
            prop_assert_eq!(tag_key(&key), key);
        }

        #[test]
        fn distinct_keys_are_never_duplicates(tags in proptest::collection::vec(plain_tag(), 0..20)) {
            let mut keys = std::collections::HashSet::new();
            let tags: Vec<String> = tags.into_iter().filter(|t| keys.insert(tag_key(t))).collect();
            let mut v = Violations::new();
            let out = normalize_tags(&mut v, "tags", &tags);
            prop_assert!(v.is_empty(), "{}", v);
            prop_assert_eq!(out, tags);
        }

        #[test]
        fn variants_of_an_earlier_tag_are_duplicates(
            tags in proptest::collection::vec(plain_tag(), 1..10),
            pick in any::<prop::sample::Index>(),
            upper in any::<bool>(),
            pad in (0usize..3, 0usize..3),
        ) {
            let earlier = pick.index(tags.len());
            let variant = with_case_and_spaces(&tags[earlier], upper, pad);
            // Upper-casing can change a key (e.g. "ß" -> "SS"); only true variants count.
            prop_assume!(tag_key(&variant) == tag_key(&tags[earlier]));
            let mut input = tags.clone();
            input.push(variant);
            let mut v = Violations::new();
            normalize_tags(&mut v, "tags", &input);
            let last = format!("tags[{}]", input.len() - 1);
            prop_assert!(
                v.iter().any(|v| v.field == last && v.reason == reason::DUPLICATE_TAG),
                "{}", v
            );
        }

        #[test]
        fn fifty_characters_pass_and_fifty_one_fail(
            c in prop_oneof![Just('a'), Just('é'), Just('中'), Just('😀')],
            pad in 0usize..3,
        ) {
            let fifty: String = std::iter::repeat_n(c, 50).collect();
            let padded = format!("{}{fifty}{}", " ".repeat(pad), " ".repeat(pad));
            let mut v = Violations::new();
            normalize_tags(&mut v, "tags", &[padded]);
            prop_assert!(v.is_empty(), "{}", v);
            let fifty_one = format!("{fifty}{c}");
            normalize_tags(&mut v, "tags", &[fifty_one]);
            let reasons: Vec<_> = v.iter().map(|v| v.reason).collect();
            prop_assert_eq!(reasons, [reason::FIELD_TOO_LONG]);
        }
    }
}
