//! Collected input violations: every offending field of a call is reported at once, in one `BadRequest`.

use std::fmt;

/// Stable, UPPER_SNAKE reasons carried in `ErrorInfo.reason` and each `FieldViolation.reason`.
pub mod reason {
    pub const FIELD_TOO_LONG: &str = "FIELD_TOO_LONG";
    pub const REQUIRED_FIELD: &str = "REQUIRED_FIELD";
    pub const DUPLICATE_TAG: &str = "DUPLICATE_TAG";
    pub const TAG_TOO_LONG: &str = "TAG_TOO_LONG";
    pub const EMPTY_TAG: &str = "EMPTY_TAG";
    pub const TOO_MANY_TAGS: &str = "TOO_MANY_TAGS";
    pub const INVALID_ATTRIBUTE_KEY: &str = "INVALID_ATTRIBUTE_KEY";
    pub const TOO_MANY_ATTRIBUTES: &str = "TOO_MANY_ATTRIBUTES";
    pub const INVALID_PHONE: &str = "INVALID_PHONE";
    pub const INVALID_EMAIL: &str = "INVALID_EMAIL";
    pub const INVALID_CONTACT_KIND: &str = "INVALID_CONTACT_KIND";
    pub const DUPLICATE_CONTACT_POINT: &str = "DUPLICATE_CONTACT_POINT";
    pub const TOO_MANY_CONTACT_POINTS: &str = "TOO_MANY_CONTACT_POINTS";
    pub const INVALID_ID: &str = "INVALID_ID";
    pub const INVALID_ENUM_VALUE: &str = "INVALID_ENUM_VALUE";
    pub const INVALID_TIMESTAMP: &str = "INVALID_TIMESTAMP";
    pub const MISSING_VERSION: &str = "MISSING_VERSION";
    pub const INVALID_UPDATE_MASK: &str = "INVALID_UPDATE_MASK";
    pub const IMMUTABLE_FIELD: &str = "IMMUTABLE_FIELD";
    pub const INVALID_PAGE_SIZE: &str = "INVALID_PAGE_SIZE";
    pub const INVALID_PAGE_TOKEN: &str = "INVALID_PAGE_TOKEN";
    pub const INVALID_AGENT: &str = "INVALID_AGENT";
    pub const CUSTOMER_MISMATCH: &str = "CUSTOMER_MISMATCH";
    pub const MALFORMED_MESSAGE: &str = "MALFORMED_MESSAGE";
    pub const INVALID_KEY_NAME: &str = "INVALID_KEY_NAME";
    pub const INVALID_ROLE: &str = "INVALID_ROLE";
}

/// One offending field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Path of the field in the request, e.g. `activity.tags[2]`.
    pub field: String,
    /// One of [`reason`].
    pub reason: &'static str,
    /// Short, actionable English.
    pub description: String,
}

/// Every violation found in one call, in the order they were found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations(Vec<Violation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding a single violation.
    pub fn one(
        field: impl Into<String>,
        reason: &'static str,
        description: impl Into<String>,
    ) -> Self {
        let mut violations = Self::new();
        violations.push(field, reason, description);
        violations
    }

    pub fn push(
        &mut self,
        field: impl Into<String>,
        reason: &'static str,
        description: impl Into<String>,
    ) {
        self.0.push(Violation {
            field: field.into(),
            reason,
            description: description.into(),
        });
    }

    pub fn extend(&mut self, other: Violations) {
        self.0.extend(other.0);
    }

    /// Keeps only the violations for which `keep` is true.
    pub fn retain(&mut self, keep: impl FnMut(&Violation) -> bool) {
        self.0.retain(keep);
    }

    /// Keeps only violations of `{prefix}.{field}` (or its elements and sub-fields) for the named fields: an
    /// update validates only what its mask changes.
    pub fn retain_fields(&mut self, prefix: &str, fields: &[&str]) {
        self.retain(|v| {
            let Some(rest) = v
                .field
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('.'))
            else {
                return true;
            };
            fields.iter().any(|f| {
                rest.strip_prefix(f).is_some_and(|tail| {
                    tail.is_empty() || tail.starts_with('.') || tail.starts_with('[')
                })
            })
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Violation> {
        self.0.iter()
    }

    /// `Ok(value)` when nothing was found, otherwise every violation.
    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_fields_keeps_only_masked_fields_and_their_elements() {
        let mut v = Violations::new();
        for field in [
            "customer.tags[1]",
            "customer.tags_extra",
            "customer.notes",
            "customer.id",
            "update_mask.paths[0]",
        ] {
            v.push(field, reason::FIELD_TOO_LONG, "x");
        }
        v.retain_fields("customer", &["tags", "id"]);
        let kept: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            kept,
            ["customer.tags[1]", "customer.id", "update_mask.paths[0]"]
        );
    }
}
