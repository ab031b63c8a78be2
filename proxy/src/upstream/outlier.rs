//! Outlier detection (passive health checking) as Envoy does it under Istio: consecutive
//! 5xx, gateway errors and local-origin failures eject an endpoint inline, on the failing
//! response, for `baseEjectionTime × times ejected` (capped); never more than
//! `maxEjectionPercent` of the cluster's endpoints, counting the prospective ejection
//! (envoy#27624); the ejection multiplier decays by one for each healthy `interval`.
//!
//! State is atomics on each endpoint, so an ejection is seen by every worker at once.
//! Time is passed in explicitly (nanoseconds since [`clock_base`]) so the logic is tested
//! with exact instants.

use meshproxy_config::compile::cluster::OutlierPolicy;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The instant all stored times are measured from.
pub fn clock_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since [`clock_base`] (never 0, so 0 can mean "never").
pub fn now_nanos() -> u64 {
    (clock_base().elapsed().as_nanos() as u64).max(1)
}

/// What one request to an endpoint showed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A response with this status.
    Status(u16),
    /// Connect failure, timeout or reset: the upstream never answered (local origin).
    LocalOriginFailure,
}

/// Outlier state of one endpoint.
#[derive(Debug, Default)]
pub struct OutlierState {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    /// Ejected until this time (nanos); 0 = not ejected.
    ejected_until: AtomicU64,
    /// Current ejection multiplier.
    times_ejected: AtomicU32,
    /// Total ejections (for stats).
    ejections_total: AtomicU64,
}

impl OutlierState {
    /// True when ejected at `now`.
    pub fn is_ejected(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && now < until
    }

    /// When the ejection ends (nanos), if ejected at `now`.
    pub fn ejected_until(&self, now: u64) -> Option<u64> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        (until != 0 && now < until).then_some(until)
    }

    /// The current multiplier (decayed to `now`).
    pub fn times_ejected(&self) -> u32 {
        self.times_ejected.load(Ordering::Relaxed)
    }

    /// Ejections since the state was created.
    pub fn ejections_total(&self) -> u64 {
        self.ejections_total.load(Ordering::Relaxed)
    }
}

fn is_error(policy: &OutlierPolicy, status: u16) -> bool {
    if policy.http_error_codes.is_empty() {
        status >= 500
    } else {
        policy.http_error_codes.contains(&status)
    }
}

/// What holds an endpoint's outlier state: the cluster's endpoints are recorded against
/// as they are listed, with no list of their states made per request.
pub trait HasOutlier {
    /// The endpoint's outlier state.
    fn outlier(&self) -> &OutlierState;
}

impl HasOutlier for &OutlierState {
    fn outlier(&self) -> &OutlierState {
        self
    }
}

/// Records `event` for endpoint `i` of `endpoints` and ejects it when a threshold is
/// reached. Returns true when this call ejected the endpoint.
pub fn record<E: HasOutlier>(
    policy: &OutlierPolicy,
    endpoints: &[E],
    i: usize,
    event: Event,
    now: u64,
) -> bool {
    let s = endpoints[i].outlier();
    // Without the split, a local-origin failure counts as a 503 (Envoy maps connect
    // failures and timeouts to gateway errors).
    let (status, local) = match event {
        Event::Status(st) => (Some(st), false),
        Event::LocalOriginFailure if policy.split_local_origin => (None, true),
        Event::LocalOriginFailure => (Some(503), false),
    };
    let mut trip = false;
    if local {
        let n = s.consecutive_local.fetch_add(1, Ordering::Relaxed) + 1;
        trip |= policy.consecutive_local_origin.is_some_and(|t| n >= t);
    } else if let Some(st) = status {
        if policy.split_local_origin {
            s.consecutive_local.store(0, Ordering::Relaxed);
        }
        if is_error(policy, st) {
            let n = s.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
            trip |= policy.consecutive_5xx.is_some_and(|t| n >= t);
            if matches!(st, 502..=504) {
                let g = s.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1;
                trip |= policy.consecutive_gateway.is_some_and(|t| g >= t);
            } else {
                s.consecutive_gateway.store(0, Ordering::Relaxed);
            }
        } else {
            s.consecutive_5xx.store(0, Ordering::Relaxed);
            s.consecutive_gateway.store(0, Ordering::Relaxed);
        }
    }
    if !trip || s.is_ejected(now) {
        return false;
    }
    eject(policy, endpoints, i, now)
}

fn eject<E: HasOutlier>(policy: &OutlierPolicy, endpoints: &[E], i: usize, now: u64) -> bool {
    let total = endpoints.len();
    let ejected = endpoints
        .iter()
        .filter(|e| e.outlier().is_ejected(now))
        .count();
    // The percentage is computed after the prospective ejection (envoy#27624/#27909), so
    // 1 of 2 endpoints is never ejected under the default 10%.
    if (ejected + 1) * 100 > policy.max_ejection_percent as usize * total {
        return false;
    }
    let s = endpoints[i].outlier();
    // Decay: one step per healthy interval since the previous ejection ended.
    let prev_until = s.ejected_until.load(Ordering::Relaxed);
    let mut times = s.times_ejected.load(Ordering::Relaxed);
    if prev_until != 0 && now > prev_until {
        let interval = policy.interval.as_nanos().max(1) as u64;
        let healthy_intervals = (now - prev_until) / interval;
        times = times.saturating_sub(healthy_intervals.min(u32::MAX as u64) as u32);
    }
    times += 1;
    let duration = policy
        .base_ejection_time
        .saturating_mul(times)
        .min(policy.max_ejection_time);
    s.times_ejected.store(times, Ordering::Relaxed);
    s.ejected_until
        .store(now + duration.as_nanos() as u64, Ordering::Relaxed);
    s.consecutive_5xx.store(0, Ordering::Relaxed);
    s.consecutive_gateway.store(0, Ordering::Relaxed);
    s.consecutive_local.store(0, Ordering::Relaxed);
    s.ejections_total.fetch_add(1, Ordering::Relaxed);
    true
}

/// Istio's `minHealthPercent` (Envoy's panic threshold): below it the load balancer
/// ignores ejections. 0 disables panic mode.
pub fn panic_mode(policy: &OutlierPolicy, healthy: usize, total: usize) -> bool {
    policy.min_health_percent > 0
        && total > 0
        && healthy * 100 < policy.min_health_percent as usize * total
}

/// The ejection time for the n-th consecutive ejection (for tests and the admin view).
pub fn ejection_duration(policy: &OutlierPolicy, times: u32) -> Duration {
    policy
        .base_ejection_time
        .saturating_mul(times)
        .min(policy.max_ejection_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn policy(f: impl FnOnce(&mut OutlierPolicy)) -> OutlierPolicy {
        let mut p = OutlierPolicy::from_settings(&Default::default());
        p.max_ejection_percent = 100;
        f(&mut p);
        p
    }

    fn states(n: usize) -> Vec<OutlierState> {
        (0..n).map(|_| OutlierState::default()).collect()
    }

    fn refs(s: &[OutlierState]) -> Vec<&OutlierState> {
        s.iter().collect()
    }

    #[test]
    fn ejected_after_exactly_n_consecutive_5xx() {
        let p = policy(|p| p.consecutive_5xx = Some(3));
        let s = states(2);
        let r = refs(&s);
        assert!(!record(&p, &r, 0, Event::Status(500), S));
        assert!(!record(&p, &r, 0, Event::Status(500), S));
        assert!(record(&p, &r, 0, Event::Status(500), S), "third 5xx ejects");
        assert!(s[0].is_ejected(S + 29 * S));
        assert!(
            !s[0].is_ejected(S + 30 * S),
            "back after baseEjectionTime (30s)"
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let p = policy(|p| p.consecutive_5xx = Some(2));
        let s = states(2);
        let r = refs(&s);
        record(&p, &r, 0, Event::Status(500), S);
        record(&p, &r, 0, Event::Status(200), S);
        assert!(!record(&p, &r, 0, Event::Status(500), S));
        assert!(record(&p, &r, 0, Event::Status(503), S));
    }

    #[test]
    fn second_ejection_lasts_twice_as_long_and_decays() {
        let p = policy(|p| {
            p.consecutive_5xx = Some(1);
            p.base_ejection_time = Duration::from_secs(10);
            p.interval = Duration::from_secs(10);
        });
        let s = states(2);
        let r = refs(&s);
        assert!(record(&p, &r, 0, Event::Status(500), S));
        assert!(!s[0].is_ejected(11 * S));
        // Fails again right away: 2 × base.
        assert!(record(&p, &r, 0, Event::Status(500), 11 * S));
        assert!(s[0].is_ejected(11 * S + 19 * S));
        assert!(!s[0].is_ejected(11 * S + 20 * S));
        assert_eq!(s[0].times_ejected(), 2);
        // After a long healthy period the multiplier decays back: 1 × base again.
        assert!(record(&p, &r, 0, Event::Status(500), 1000 * S));
        assert_eq!(s[0].times_ejected(), 1);
        assert!(!s[0].is_ejected(1000 * S + 10 * S));
    }

    #[test]
    fn ejection_time_is_capped() {
        let p = policy(|p| {
            p.consecutive_5xx = Some(1);
            p.base_ejection_time = Duration::from_secs(100);
            p.max_ejection_time = Duration::from_secs(300);
        });
        assert_eq!(ejection_duration(&p, 5), Duration::from_secs(300));
    }

    #[test]
    fn max_ejection_percent_is_computed_after_the_prospective_ejection() {
        // 2 endpoints, 10%: 1/2 = 50% > 10% → never ejected.
        let p = policy(|p| {
            p.consecutive_5xx = Some(1);
            p.max_ejection_percent = 10;
        });
        let s = states(2);
        assert!(!record(&p, &refs(&s), 0, Event::Status(500), S));
        // 3 endpoints, 67%: two may be ejected (66.7%), not three.
        let p = policy(|p| {
            p.consecutive_5xx = Some(1);
            p.max_ejection_percent = 67;
        });
        let s = states(3);
        let r = refs(&s);
        assert!(record(&p, &r, 0, Event::Status(500), S));
        assert!(record(&p, &r, 1, Event::Status(500), S));
        assert!(!record(&p, &r, 2, Event::Status(500), S));
    }

    #[test]
    fn gateway_errors_and_local_origin_split() {
        let p = policy(|p| {
            p.consecutive_5xx = None;
            p.consecutive_gateway = Some(2);
        });
        let s = states(2);
        let r = refs(&s);
        record(&p, &r, 0, Event::Status(500), S);
        assert!(!record(&p, &r, 0, Event::Status(502), S));
        assert!(
            record(&p, &r, 0, Event::LocalOriginFailure, S),
            "a connect failure counts as a gateway error"
        );

        let p = policy(|p| {
            p.consecutive_5xx = Some(100);
            p.split_local_origin = true;
            p.consecutive_local_origin = Some(2);
        });
        let s = states(2);
        let r = refs(&s);
        assert!(!record(&p, &r, 0, Event::LocalOriginFailure, S));
        assert!(record(&p, &r, 0, Event::LocalOriginFailure, S));
    }

    #[test]
    fn panic_threshold() {
        let p = policy(|p| p.min_health_percent = 50);
        assert!(panic_mode(&p, 1, 3));
        assert!(!panic_mode(&p, 2, 3));
        let off = policy(|p| p.min_health_percent = 0);
        assert!(!panic_mode(&off, 0, 3));
    }
}
