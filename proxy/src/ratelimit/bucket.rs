//! Local counting: Envoy's `local_ratelimit` token bucket, one per rule per proxy (shared
//! by every worker), refilled continuously.
//!
//! Envoy (`local_rate_limit.proto`, `token_bucket.proto`; lazy refill since 1.31): the
//! bucket starts full at `max_tokens`, a request takes one token, tokens come back at
//! `tokens_per_fill / fill_interval`. A rule's `limit: {requests: N, unit: U}` is Envoy
//! Gateway's translation: `max_tokens = N`, `tokens_per_fill = N`, `fill_interval = U`.
//!
//! The bucket is kept as GCRA's theoretical arrival time (one `u64` of nanoseconds):
//! the same decisions as a continuously refilled bucket of `N` tokens, updated with one
//! compare-and-swap and no lock, so the limit holds per proxy whatever the worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Nanoseconds since the process's rate-limit clock started (monotonic).
pub fn now_nanos() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What a request's counting found: allowed or not, and the quota headers' values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Taken (true) or refused.
    pub allowed: bool,
    /// Requests per unit.
    pub limit: u64,
    /// The unit in seconds (the quota policy's window).
    pub window_secs: u64,
    /// Requests left now.
    pub remaining: u64,
    /// Seconds until the quota is whole again.
    pub reset_secs: u64,
}

/// The rate of one rule: a token every `interval` nanoseconds, at most `span` ahead.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    limit: u64,
    unit_secs: u64,
    interval: u64,
    span: u64,
}

impl Rate {
    /// `requests` per `unit_secs` seconds.
    pub fn new(requests: u64, unit_secs: u64) -> Rate {
        let requests = requests.max(1);
        let unit = unit_secs.max(1).saturating_mul(1_000_000_000);
        let interval = (unit / requests).max(1);
        Rate {
            limit: requests,
            unit_secs,
            interval,
            span: interval.saturating_mul(requests),
        }
    }

    /// One request arriving at `now` against the arrival time `tat`: the new arrival
    /// time when it is taken.
    pub fn take(&self, tat: u64, now: u64) -> (Option<u64>, Quota) {
        let next = tat.max(now) + self.interval;
        let ahead = next - now;
        if ahead > self.span {
            let quota = self.quota(false, 0, tat.saturating_sub(now));
            return (None, quota);
        }
        let remaining = (self.span - ahead) / self.interval;
        (Some(next), self.quota(true, remaining, ahead))
    }

    fn quota(&self, allowed: bool, remaining: u64, ahead: u64) -> Quota {
        Quota {
            allowed,
            limit: self.limit,
            window_secs: self.unit_secs,
            remaining,
            reset_secs: ahead.div_ceil(1_000_000_000),
        }
    }
}

/// One bucket shared by every worker.
#[derive(Debug, Default)]
pub struct Bucket {
    tat: AtomicU64,
}

impl Bucket {
    /// Takes a token for a request arriving now.
    pub fn take(&self, rate: &Rate, now: u64) -> Quota {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let (next, quota) = rate.take(tat, now);
            let Some(next) = next else {
                return quota;
            };
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return quota,
                Err(seen) => tat = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn starts_full_and_refills_continuously() {
        let rate = Rate::new(10, 1);
        let b = Bucket::default();
        let t0 = 5 * SEC;
        let taken = (0..20).filter(|_| b.take(&rate, t0).allowed).count();
        assert_eq!(taken, 10, "a full bucket of 10, then nothing");
        // 100ms later one token is back, not a whole refill.
        assert!(b.take(&rate, t0 + SEC / 10).allowed);
        assert!(!b.take(&rate, t0 + SEC / 10).allowed);
        // After a whole unit idle, the bucket is full again (capped at 10).
        let later = t0 + 3 * SEC;
        assert_eq!((0..20).filter(|_| b.take(&rate, later).allowed).count(), 10);
    }

    #[test]
    fn quota_headers_count_down_and_say_when_it_is_whole() {
        let rate = Rate::new(4, 60);
        let b = Bucket::default();
        let q = b.take(&rate, 100 * SEC);
        assert_eq!(
            (q.allowed, q.limit, q.window_secs, q.remaining),
            (true, 4, 60, 3)
        );
        assert_eq!(q.reset_secs, 15);
        for _ in 0..3 {
            b.take(&rate, 100 * SEC);
        }
        let q = b.take(&rate, 100 * SEC);
        assert_eq!((q.allowed, q.remaining, q.reset_secs), (false, 0, 60));
    }

    #[test]
    fn a_steady_overload_gets_the_rate_through() {
        // 300 req/s for 10 s against 100 req/s: the 100 tokens of the full bucket, then
        // one per 10ms.
        let rate = Rate::new(100, 1);
        let b = Bucket::default();
        let t0 = SEC;
        let through = (0..3000)
            .filter(|i| b.take(&rate, t0 + i * SEC / 300).allowed)
            .count();
        assert!((1095..=1101).contains(&through), "{through}");
    }
}
