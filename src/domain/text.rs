//! Free-text limits. Lengths are counted in characters (Unicode scalar values), never bytes, so an
//! agent typing in Greek or with emoji gets the same limit as one typing ASCII.

use super::violations::{Violations, reason};

/// Most characters any free-text field may hold.
pub const MAX_TEXT_CHARS: usize = 2000;

/// The first character no string of the service may hold, with its position in characters: U+0000 (which
/// PostgreSQL's `text` cannot store) and every other C0 control except tab, line feed and carriage return
/// (invisible, and never typed by an agent). DEL, C1 controls and every other character are text.
pub fn forbidden_character(value: &str) -> Option<(usize, char)> {
    // In UTF-8 the C0 controls are single bytes that occur nowhere else, so bytes are enough to find none.
    if !value.bytes().any(is_forbidden_byte) {
        return None;
    }
    value
        .chars()
        .enumerate()
        .find(|(_, c)| u8::try_from(*c).is_ok_and(is_forbidden_byte))
}

fn is_forbidden_byte(byte: u8) -> bool {
    byte < 0x20 && !matches!(byte, b'\t' | b'\n' | b'\r')
}

/// Reports `INVALID_CHARACTER` at `field` if `value` holds a [`forbidden_character`].
pub fn check_characters(violations: &mut Violations, field: &str, value: &str) {
    if let Some((at, c)) = forbidden_character(value) {
        violations.push(
            field,
            reason::INVALID_CHARACTER,
            format!(
                "control character U+{:04X} at character {}; text may hold tab, line feed and carriage return but \
                 no other control below U+0020",
                u32::from(c),
                at + 1
            ),
        );
    }
}

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

/// Most bytes of UTF-8 in a text that is a unique key (a customer number, an interaction id), beside the 2,000
/// characters of every text. PostgreSQL refuses index entries above about 2,700 bytes: 2,000 ASCII characters
/// fit, 2,000 of three or four bytes each would not, and SQLite must refuse what PostgreSQL would.
pub const MAX_KEY_BYTES: usize = 2000;

/// Checks `value` like [`check_text`], and, as it is a unique key, that it holds at most [`MAX_KEY_BYTES`].
pub fn check_key_text(violations: &mut Violations, field: &str, value: &str) {
    let chars = value.chars().count();
    if chars > MAX_TEXT_CHARS {
        check_text(violations, field, value);
    } else if value.len() > MAX_KEY_BYTES {
        violations.push(
            field,
            reason::FIELD_TOO_LONG,
            format!(
                "at most {MAX_KEY_BYTES} bytes of UTF-8, as it is a unique key (got {} bytes in {chars} characters)",
                value.len()
            ),
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
    fn the_text_rule_refuses_nul_and_c0_controls_but_tab_and_line_breaks() {
        assert_eq!(forbidden_character("ab\0c"), Some((2, '\0')));
        assert_eq!(forbidden_character("é\u{1b}[0m"), Some((1, '\u{1b}')));
        for ok in [
            "",
            "plain",
            "tab\there",
            "lines\r\nand\n",
            "\u{7f}\u{80}\u{9f}",
            "😀\u{fffe}\u{10ffff}",
        ] {
            assert_eq!(forbidden_character(ok), None, "{ok:?}");
        }
        let mut v = Violations::new();
        check_characters(&mut v, "customer.notes", "😀😀\u{1}");
        let found: Vec<_> = v.iter().collect();
        assert_eq!(found[0].reason, reason::INVALID_CHARACTER);
        assert!(
            found[0]
                .description
                .starts_with("control character U+0001 at character 3"),
            "{}",
            found[0].description
        );
    }

    proptest! {
        #[test]
        fn forbidden_characters_are_exactly_the_c0_controls_but_three(s in "\\PC*", c in any::<char>()) {
            let value = format!("{s}{c}");
            let expected = value.chars().position(|c| (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r'));
            prop_assert_eq!(forbidden_character(&value).map(|(at, _)| at), expected);
        }
    }

    #[test]
    fn a_key_holds_2000_characters_and_at_most_2000_bytes() {
        let reasons = |value: &str| {
            let mut v = Violations::new();
            check_key_text(&mut v, "customer.customer_number", value);
            v.iter()
                .map(|v| (v.reason, v.description.clone()))
                .collect::<Vec<_>>()
        };
        assert!(reasons(&"a".repeat(2000)).is_empty());
        assert!(reasons(&"é".repeat(1000)).is_empty());
        let found = reasons(&"é".repeat(1001));
        assert_eq!(found.len(), 1);
        assert!(
            found[0].1.contains("2002 bytes in 1001 characters"),
            "{}",
            found[0].1
        );
        assert_eq!(reasons(&"a".repeat(2001))[0].0, reason::FIELD_TOO_LONG);
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
