//! Free-text limits. Lengths are counted in characters (Unicode scalar values), never bytes, so an
//! agent typing in Greek or with emoji gets the same limit as one typing ASCII.

use super::violations::{Violations, reason};

/// Most characters any free-text field may hold.
pub const MAX_TEXT_CHARS: usize = 2000;

/// Reports `FIELD_TOO_LONG` at `field` if `value` has more than [`MAX_TEXT_CHARS`] characters.
pub fn check_text(violations: &mut Violations, field: &str, value: &str) {
    // A string never has more characters than bytes: most values skip the count.
    if value.len() <= MAX_TEXT_CHARS {
        return;
    }
    let chars = value.chars().count();
    if chars > MAX_TEXT_CHARS {
        violations.push(
            field,
            reason::FIELD_TOO_LONG,
            format!("at most {MAX_TEXT_CHARS} characters (got {chars})"),
        );
    }
}

/// Reports `REQUIRED_FIELD` at `field` if `value` is empty or only whitespace, otherwise checks
/// its length like [`check_text`].
pub fn check_required_text(violations: &mut Violations, field: &str, value: &str) {
    if value.trim().is_empty() {
        violations.push(field, reason::REQUIRED_FIELD, "must not be empty");
    } else {
        check_text(violations, field, value);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn reasons(value: &str, required: bool) -> Vec<&'static str> {
        let mut v = Violations::new();
        if required {
            check_required_text(&mut v, "note", value);
        } else {
            check_text(&mut v, "note", value);
        }
        v.iter().map(|v| v.reason).collect()
    }

    #[test]
    fn limit_counts_characters_not_bytes() {
        // 2000 four-byte emoji: 8000 bytes, but within the limit.
        assert!(reasons(&"😀".repeat(2000), false).is_empty());
        assert_eq!(reasons(&"é".repeat(2001), false), [reason::FIELD_TOO_LONG]);
        assert!(reasons(&"a".repeat(2000), false).is_empty());
    }

    #[test]
    fn too_long_description_names_limit_and_length() {
        let mut v = Violations::new();
        check_text(&mut v, "request.summary", &"x".repeat(2001));
        let found: Vec<_> = v.iter().collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, "request.summary");
        assert_eq!(found[0].description, "at most 2000 characters (got 2001)");
    }

    #[test]
    fn required_text_refuses_blank_values() {
        assert_eq!(reasons("", true), [reason::REQUIRED_FIELD]);
        assert_eq!(reasons(" \t\n", true), [reason::REQUIRED_FIELD]);
        assert!(reasons(" x ", true).is_empty());
        assert_eq!(reasons(&"x".repeat(2001), true), [reason::FIELD_TOO_LONG]);
        // Optional text may be empty.
        assert!(reasons("", false).is_empty());
    }

    fn any_char() -> impl Strategy<Value = char> {
        prop_oneof![
            Just('a'),
            Just('é'),
            Just('中'),
            Just('😀'),
            Just('\u{1F468}'),
            Just('\u{200D}'),
            any::<char>(),
        ]
    }

    proptest! {
        #[test]
        fn accepted_iff_at_most_limit_chars(c in any_char(), n in 1990usize..2010) {
            let value: String = std::iter::repeat_n(c, n).collect();
            prop_assert_eq!(reasons(&value, false).is_empty(), n <= MAX_TEXT_CHARS);
        }

        #[test]
        fn mixed_strings_are_judged_by_char_count(
            chars in proptest::collection::vec(any_char(), 1995..2005)
        ) {
            let value: String = chars.iter().collect();
            prop_assert_eq!(reasons(&value, false).is_empty(), chars.len() <= MAX_TEXT_CHARS);
        }
    }
}
