//! What a scenario measured, and how it is printed: latency histograms, error counts by gRPC code, outcome
//! counts, and the human-readable table.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs to 60 s, with 3 significant digits.
const HIGHEST_MICROS: u64 = 60_000_000;

pub fn histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy the constructor's rules (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("constant bounds are valid")
}

/// Everything recorded about the calls of one scenario in the measured window.
#[derive(Debug)]
pub struct Recorder {
    /// Latency of successful calls, in microseconds.
    pub latency: Histogram<u64>,
    pub ok: u64,
    /// Failed calls by gRPC code (or by a client-side reason such as `CLIENT_OVERLOAD`).
    pub errors: BTreeMap<String, u64>,
    /// What successful calls found (e.g. "1 match"), for the scenarios that tell.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// One message per error code, to show what went wrong.
    pub error_samples: BTreeMap<String, String>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            latency: histogram(),
            ok: 0,
            errors: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            error_samples: BTreeMap::new(),
        }
    }
}

impl Recorder {
    pub fn success(&mut self, latency: Duration, outcome: Option<&'static str>) {
        self.ok += 1;
        self.latency.saturating_record(micros(latency));
        if let Some(outcome) = outcome {
            *self.outcomes.entry(outcome).or_default() += 1;
        }
    }

    pub fn failure(&mut self, code: &str, message: &str) {
        *self.errors.entry(code.to_owned()).or_default() += 1;
        self.error_samples
            .entry(code.to_owned())
            .or_insert_with(|| message.chars().take(160).collect());
    }
}

pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

pub use customer_context::telemetry::code_name;

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Percentiles {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// `1234567` -> `"1,234,567"`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Milliseconds with a precision that suits their size.
pub fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Counts as percentages of their total: "1 match 70.1%, no match 19.9%".
pub fn shares<K: AsRef<str>>(counts: &BTreeMap<K, u64>) -> String {
    let total: u64 = counts.values().sum();
    counts
        .iter()
        .map(|(name, n)| {
            format!(
                "{} {:.1}%",
                name.as_ref(),
                *n as f64 * 100.0 / total.max(1) as f64
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads `/proc` for a process's CPU time and resident memory (Linux only; `None` elsewhere or when gone).
pub mod proc {
    use std::time::Duration;

    /// Clock ticks per second of `/proc/PID/stat` (USER_HZ, 100 on Linux).
    const TICKS_PER_SECOND: f64 = 100.0;

    /// User + system CPU time consumed so far by `pid` (`None`: this process).
    pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
        let path = match pid {
            Some(pid) => format!("/proc/{pid}/stat"),
            None => "/proc/self/stat".to_owned(),
        };
        let stat = std::fs::read_to_string(path).ok()?;
        // Fields after the command name (which is in parentheses and may contain spaces).
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(Duration::from_secs_f64(
            (utime + stime) as f64 / TICKS_PER_SECOND,
        ))
    }

    /// Resident set size of `pid` in KiB (`VmRSS` in `/proc/PID/status`).
    pub fn rss_kib(pid: u32) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(ms(0.123), "0.12");
        assert_eq!(ms(12.34), "12.3");
        assert_eq!(ms(1234.5), "1234");
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut recorder = Recorder::default();
        for i in 1..=1000 {
            recorder.success(Duration::from_micros(i * 10), Some("hit"));
        }
        recorder.failure("UNAVAILABLE", "down");
        let p = Percentiles::of(&recorder.latency);
        assert!((p.p50_ms - 5.0).abs() < 0.01, "{p:?}");
        assert!((p.max_ms - 10.0).abs() < 0.01, "{p:?}");
        assert_eq!(recorder.errors.get("UNAVAILABLE"), Some(&1));
        assert_eq!(shares(&recorder.outcomes), "hit 100.0%");
    }

    #[test]
    fn this_process_has_cpu_time() {
        if cfg!(target_os = "linux") {
            assert!(proc::cpu_time(None).is_some());
            assert!(proc::rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        }
    }
}
