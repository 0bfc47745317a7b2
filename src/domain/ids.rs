//! Record ids: server-assigned, time-ordered UUIDv7 strings in canonical lower-case form.

use uuid::Uuid;

use super::violations::{Violations, reason};

/// A new time-ordered id.
pub fn new_id() -> String {
    Uuid::now_v7().hyphenated().to_string()
}

/// Checks that `value` is an id in canonical form and returns it. An empty value is `REQUIRED_FIELD`.
pub fn check_id(violations: &mut Violations, field: &str, value: &str) -> Option<String> {
    if value.is_empty() {
        violations.push(field, reason::REQUIRED_FIELD, "an id is required");
        return None;
    }
    match parse_id(value) {
        Some(id) => Some(id),
        None => {
            violations.push(
                field,
                reason::INVALID_ID,
                "not a valid id (expected a UUID such as 0190a5e2-7c1d-7b3e-9f00-1a2b3c4d5e6f)",
            );
            None
        }
    }
}

/// The id `value` of `field` in canonical form, or the one violation that it is missing or malformed.
pub fn require_id(field: &str, value: &str) -> Result<String, Violations> {
    let mut violations = Violations::new();
    let id = check_id(&mut violations, field, value);
    violations.into_checked(id)
}

/// Like [`check_id`], but an empty value means "none".
pub fn check_optional_id(violations: &mut Violations, field: &str, value: &str) -> Option<String> {
    if value.is_empty() {
        None
    } else {
        check_id(violations, field, value)
    }
}

/// The canonical form of `value` if it is a UUID.
pub fn parse_id(value: &str) -> Option<String> {
    Uuid::try_parse(value)
        .ok()
        .map(|id| id.hyphenated().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_canonical() {
        let a = new_id();
        let b = new_id();
        assert!(a < b, "{a} < {b}");
        assert_eq!(parse_id(&a.to_uppercase()), Some(a.clone()));
        assert_eq!(parse_id("not-an-id"), None);
    }

    #[test]
    fn empty_and_malformed_ids_are_reported() {
        let mut v = Violations::new();
        assert_eq!(check_id(&mut v, "id", ""), None);
        assert_eq!(check_id(&mut v, "id", "42"), None);
        let reasons: Vec<_> = v.iter().map(|v| v.reason).collect();
        assert_eq!(reasons, [reason::REQUIRED_FIELD, reason::INVALID_ID]);
        assert_eq!(check_optional_id(&mut Violations::new(), "id", ""), None);
    }
}
