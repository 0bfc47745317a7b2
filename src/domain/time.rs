//! Times are kept as microseconds since the Unix epoch (UTC): exact, sortable and the same on every backend.

use std::time::{SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;

use super::violations::{Violations, reason};

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// Earliest accepted time: 0001-01-01T00:00:00Z.
const MIN_SECONDS: i64 = -62_135_596_800;
/// Latest accepted time: 9999-12-31T23:59:59Z.
const MAX_SECONDS: i64 = 253_402_300_799;

pub fn now_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// `micros` as an RFC 3339 UTC time to the second (`2026-12-03T09:15:00Z`), for messages.
pub fn to_rfc3339(micros: Micros) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60
    )
}

/// Year, month (1–12) and day (1–31) of the proleptic Gregorian calendar `days` after 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn to_timestamp(micros: Micros) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// Checks a timestamp from a caller and converts it; sub-microsecond precision is dropped.
pub fn check_timestamp(violations: &mut Violations, field: &str, ts: &Timestamp) -> Option<Micros> {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos)
    {
        violations.push(
            field,
            reason::INVALID_TIMESTAMP,
            "timestamp out of range (years 1 to 9999, nanos 0 to 999,999,999)",
        );
        return None;
    }
    Some(ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_read_as_calendar_dates() {
        assert_eq!(to_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(to_rfc3339(1_764_753_300_000_000), "2025-12-03T09:15:00Z");
        assert_eq!(to_rfc3339(951_782_400_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(to_rfc3339(-1_000_000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn timestamps_round_trip_at_microsecond_precision() {
        for micros in [0, 1, -1, 1_700_000_000_123_456, -62_135_596_800_000_000] {
            let ts = to_timestamp(micros);
            assert!((0..1_000_000_000).contains(&ts.nanos));
            assert_eq!(
                check_timestamp(&mut Violations::new(), "t", &ts),
                Some(micros)
            );
        }
    }

    #[test]
    fn out_of_range_timestamps_are_refused() {
        let mut v = Violations::new();
        let bad = Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(check_timestamp(&mut v, "t", &bad), None);
        let bad = Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(check_timestamp(&mut v, "t", &bad), None);
        assert_eq!(v.len(), 2);
    }
}
