//! Per-caller rate limit: a token bucket per acting agent (the key's name, or `x-agent-id` with `--auth none`).
//! A call takes one token; buckets refill at `per_second` up to `burst`. An empty bucket answers with how long
//! until the next token, which the caller gets as `RetryInfo`.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Buckets kept before full (idle) ones are dropped; a full bucket is the same as a new one.
const TIDY_ABOVE: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A limiter of `per_second` calls per caller with bursts of `burst`; None when `per_second` is 0 (off).
    pub fn new(per_second: f64, burst: u32) -> Option<Self> {
        (per_second > 0.0).then(|| Self {
            per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token for `caller`, or says how long until one is available.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        self.check_at(caller, Instant::now())
    }

    /// Takes `n` tokens for `caller` (at most a full bucket's worth, so that anything can pass once the bucket
    /// is full), or says how long until they are available.
    pub fn check_n(&self, caller: &str, n: u32) -> Result<(), Duration> {
        self.take_at(caller, f64::from(n.max(1)), Instant::now())
    }

    fn check_at(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        self.take_at(caller, 1.0, now)
    }

    fn take_at(&self, caller: &str, cost: f64, now: Instant) -> Result<(), Duration> {
        let cost = cost.min(self.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > TIDY_ABOVE {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| refilled(b, now, per_second, burst) < burst);
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        bucket.tokens = refilled(bucket, now, self.per_second, self.burst);
        bucket.updated = now;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            Ok(())
        } else {
            let wait = (cost - bucket.tokens) / self.per_second;
            Err(Duration::from_secs_f64(wait).max(Duration::from_millis(1)))
        }
    }
}

fn refilled(bucket: &Bucket, now: Instant, per_second: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed * per_second).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_callers_wait_for_the_refill() {
        let limiter = RateLimiter::new(2.0, 3).unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("ana", start).is_ok());
        }
        let wait = limiter.check_at("ana", start).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(
            limiter.check_at("ben", start).is_ok(),
            "callers are limited separately"
        );
        assert!(
            limiter
                .check_at("ana", start + Duration::from_millis(500))
                .is_ok()
        );
        assert!(
            limiter
                .check_at("ana", start + Duration::from_millis(500))
                .is_err()
        );
    }

    #[test]
    fn a_message_naming_many_records_costs_as_many_tokens_up_to_a_full_bucket() {
        let limiter = RateLimiter::new(5.0, 5).unwrap();
        let start = Instant::now();
        assert!(limiter.take_at("ana", 3.0, start).is_ok());
        let wait = limiter.take_at("ana", 3.0, start).unwrap_err();
        assert!(
            wait >= Duration::from_millis(190) && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        assert!(
            limiter.take_at("ben", 80_000.0, start).is_ok(),
            "a full bucket pays for anything once"
        );
        assert!(limiter.take_at("ben", 1.0, start).is_err());
    }

    #[test]
    fn zero_turns_the_limit_off() {
        assert!(RateLimiter::new(0.0, 10).is_none());
    }
}
