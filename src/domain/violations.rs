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
    pub const INVALID_CHARACTER: &str = "INVALID_CHARACTER";
    pub const TOO_MANY_ELEMENTS: &str = "TOO_MANY_ELEMENTS";
    pub const INVALID_HEARTBEAT: &str = "INVALID_HEARTBEAT";
    pub const INVALID_SEQUENCE: &str = "INVALID_SEQUENCE";
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

/// Most violations one call collects; later ones are only counted. A hostile request naming a million bad items
/// costs a counter, not a million descriptions.
pub const MAX_COLLECTED: usize = 100;

/// Every violation found in one call, in the order they were found: the first [`MAX_COLLECTED`], and how many
/// more there were.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations {
    collected: Vec<Violation>,
    uncollected: usize,
    /// When set, only violations of these fields count (an update checks only what its mask changes).
    scope: Option<Scope>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Scope {
    prefix: String,
    fields: Vec<String>,
}

impl Scope {
    /// Whether `field` is `{prefix}.{field}` (or an element or sub-field of it) for one of the fields, or not
    /// under `prefix` at all.
    fn covers(&self, field: &str) -> bool {
        let Some(rest) = field
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('.'))
        else {
            return true;
        };
        self.fields.iter().any(|f| {
            rest.strip_prefix(f.as_str()).is_some_and(|tail| {
                tail.is_empty() || tail.starts_with('.') || tail.starts_with('[')
            })
        })
    }
}

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// A set that keeps only violations of `{prefix}.{field}` (or its elements and sub-fields) for the named
    /// fields, and of anything not under `prefix`: an update validates only what its mask changes.
    pub fn within(prefix: &str, fields: &[&str]) -> Self {
        Self {
            scope: Some(Scope {
                prefix: prefix.to_owned(),
                fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            }),
            ..Self::default()
        }
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
        let field = field.into();
        if self
            .scope
            .as_ref()
            .is_some_and(|scope| !scope.covers(&field))
        {
            return;
        }
        if self.collected.len() >= MAX_COLLECTED {
            self.uncollected += 1;
            return;
        }
        self.collected.push(Violation {
            field,
            reason,
            description: description.into(),
        });
    }

    /// Whether further violations are only counted: a loop over many items may stop describing them.
    pub fn is_full(&self) -> bool {
        self.collected.len() >= MAX_COLLECTED
    }

    /// Counts `n` more violations without describing them.
    pub fn count_more(&mut self, n: usize) {
        self.uncollected += n;
    }

    pub fn extend(&mut self, other: Violations) {
        for violation in other.collected {
            self.push(violation.field, violation.reason, violation.description);
        }
        self.uncollected += other.uncollected;
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every violation found, collected or only counted.
    pub fn len(&self) -> usize {
        self.collected.len() + self.uncollected
    }

    /// The violations found beyond [`MAX_COLLECTED`].
    pub fn uncollected(&self) -> usize {
        self.uncollected
    }

    /// Each violation's field and reason, in order.
    pub fn fields_and_reasons(&self) -> Vec<(&str, &'static str)> {
        self.iter().map(|v| (v.field.as_str(), v.reason)).collect()
    }

    /// The collected violations.
    pub fn iter(&self) -> impl Iterator<Item = &Violation> {
        self.collected.iter()
    }

    /// Runs `checks`, which report what they find wrong into one list: the value they produced when they found
    /// nothing wrong, otherwise every violation (see [`Self::into_checked`]).
    pub fn collect<T>(checks: impl FnOnce(&mut Violations) -> Option<T>) -> Result<T, Violations> {
        let mut violations = Violations::new();
        let value = checks(&mut violations);
        violations.into_checked(value)
    }

    /// The value a check produced when nothing was found wrong, otherwise every violation. (A check that found
    /// nothing wrong always produces its value.)
    pub fn into_checked<T>(self, value: Option<T>) -> Result<T, Violations> {
        match value {
            Some(value) if self.is_empty() => Ok(value),
            _ => Err(self),
        }
    }

    /// `Ok(value)` when nothing was found, otherwise every violation.
    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.collected.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.description)?;
        }
        if self.uncollected > 0 {
            write!(f, "; and {} more", self.uncollected)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_keeps_only_masked_fields_and_their_elements() {
        let mut v = Violations::within("customer", &["tags", "id"]);
        for field in [
            "customer.tags[1]",
            "customer.tags_extra",
            "customer.notes",
            "customer.id",
            "update_mask.paths[0]",
        ] {
            v.push(field, reason::FIELD_TOO_LONG, "x");
        }
        let kept: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            kept,
            ["customer.tags[1]", "customer.id", "update_mask.paths[0]"]
        );
    }

    #[test]
    fn past_the_bound_violations_are_counted_not_kept() {
        let mut v = Violations::new();
        for i in 0..1_000 {
            v.push(format!("tags[{i}]"), reason::DUPLICATE_TAG, "again");
        }
        assert_eq!(v.len(), 1_000);
        assert_eq!(v.iter().count(), MAX_COLLECTED);
        assert_eq!(v.uncollected(), 1_000 - MAX_COLLECTED);
        assert!(v.is_full());
        let mut outer = Violations::one("id", reason::INVALID_ID, "bad");
        outer.extend(v);
        assert_eq!(outer.len(), 1_001);
        assert_eq!(outer.iter().count(), MAX_COLLECTED);
        assert!(outer.to_string().ends_with("; and 901 more"), "{outer}");
    }
}
