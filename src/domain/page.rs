//! Pagination: page sizes and opaque keyset page tokens.
//!
//! A token names the sort key of the last row returned (an optional time and the row id) and a fingerprint of
//! the filter it was issued for, so a page costs the same however deep it is and a token cannot be replayed
//! against another query.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::violations::{Violations, reason};

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 500;

/// 0 = the default, above the maximum = the maximum, negative = `INVALID_PAGE_SIZE`.
pub fn page_size(violations: &mut Violations, field: &str, requested: i32) -> u64 {
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 => {
            violations.push(
                field,
                reason::INVALID_PAGE_SIZE,
                "must not be negative (0 means the default of 50)",
            );
            DEFAULT_PAGE_SIZE
        }
        n => (n as u64).min(MAX_PAGE_SIZE),
    }
}

/// The position after which the next page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The time component of the sort key, for lists ordered by a time first.
    pub time: Option<i64>,
    /// The id of the last row returned (the tie-breaker, or the whole key).
    pub id: String,
}

impl Cursor {
    /// The position after the row `id` of a list ordered by id alone.
    pub fn after_id(id: impl Into<String>) -> Self {
        Cursor {
            time: None,
            id: id.into(),
        }
    }

    /// The position after the row `id` at `time` of a list ordered by time, then id.
    pub fn after(time: i64, id: impl Into<String>) -> Self {
        Cursor {
            time: Some(time),
            id: id.into(),
        }
    }
}

/// A stable fingerprint of a query's filter (FNV-1a), so tokens survive restarts and upgrades.
pub fn fingerprint(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

pub fn encode_token(filter: u64, cursor: &Cursor) -> String {
    let time = cursor.time.map(|t| t.to_string()).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(format!("1|{filter:x}|{time}|{}", cursor.id))
}

/// The cursor of a token issued for the same `filter`; an empty token is the first page.
pub fn decode_token(
    violations: &mut Violations,
    field: &str,
    token: &str,
    filter: u64,
) -> Option<Cursor> {
    if token.is_empty() {
        return None;
    }
    let decoded = URL_SAFE_NO_PAD
        .decode(token.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| parse(&text, filter));
    match decoded {
        Some(Ok(cursor)) => Some(cursor),
        Some(Err(())) => {
            violations.push(
                field,
                reason::INVALID_PAGE_TOKEN,
                "page token was issued for a different query; start again without a token",
            );
            None
        }
        None => {
            violations.push(
                field,
                reason::INVALID_PAGE_TOKEN,
                "not a page token issued by this service",
            );
            None
        }
    }
}

fn parse(text: &str, filter: u64) -> Option<Result<Cursor, ()>> {
    let mut parts = text.splitn(4, '|');
    if parts.next()? != "1" {
        return None;
    }
    let issued_for = u64::from_str_radix(parts.next()?, 16).ok()?;
    let time = match parts.next()? {
        "" => None,
        t => Some(t.parse().ok()?),
    };
    let id = super::ids::parse_id(parts.next()?)?;
    if issued_for != filter {
        return Some(Err(()));
    }
    Some(Ok(Cursor { time, id }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::new_id;

    #[test]
    fn page_sizes_default_clamp_and_refuse_negatives() {
        let mut v = Violations::new();
        assert_eq!(page_size(&mut v, "page_size", 0), 50);
        assert_eq!(page_size(&mut v, "page_size", 7), 7);
        assert_eq!(page_size(&mut v, "page_size", 10_000), 500);
        assert!(v.is_empty());
        page_size(&mut v, "page_size", -1);
        assert_eq!(v.iter().next().unwrap().reason, reason::INVALID_PAGE_SIZE);
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_query() {
        let cursor = Cursor {
            time: Some(-5),
            id: new_id(),
        };
        let filter = fingerprint(&["customer", "abc"]);
        let token = encode_token(filter, &cursor);
        let mut v = Violations::new();
        assert_eq!(
            decode_token(&mut v, "page_token", &token, filter),
            Some(cursor)
        );
        assert_eq!(decode_token(&mut v, "page_token", "", filter), None);
        assert!(v.is_empty());
        assert_eq!(decode_token(&mut v, "page_token", &token, filter + 1), None);
        assert_eq!(decode_token(&mut v, "page_token", "garbage!", filter), None);
        assert_eq!(
            decode_token(&mut v, "page_token", &URL_SAFE_NO_PAD.encode("1|0||x"), 0),
            None
        );
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|v| v.reason == reason::INVALID_PAGE_TOKEN));
    }
}
