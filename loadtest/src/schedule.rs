//! Open-loop scheduling: when each request is *meant* to be sent.
//!
//! A constant rate `R` is spread over `W` virtual users (connections × streams). User
//! `w` sends its `k`-th request at `start + (w + k·W) / R`: each user sends every `W / R`
//! seconds and the users are staggered by `1 / R`, so together they send exactly one
//! request every `1 / R` seconds. Latency is measured from this intended time, not from
//! the moment the request actually left: a user held up by a slow response sends late
//! and the delay is charged to the response that caused it (no coordinated omission).

use std::time::Duration;

/// Offset from the start of the run at which user `user` (of `users`) is meant to send
/// its `k`-th request at a total rate of `rate` requests per second.
pub fn intended_offset(user: usize, k: u64, users: usize, rate: f64) -> Duration {
    let slot = user as f64 + k as f64 * users.max(1) as f64;
    Duration::from_secs_f64(slot / rate)
}

/// The send times of one virtual user, as offsets from the start of the run, up to (not
/// including) `end`.
#[derive(Debug, Clone)]
pub struct Schedule {
    user: usize,
    users: usize,
    rate: f64,
    k: u64,
    end: Duration,
}

impl Schedule {
    /// The schedule of user `user` of `users` at a total `rate` (requests per second,
    /// must be positive and finite) until `end`.
    pub fn new(user: usize, users: usize, rate: f64, end: Duration) -> Self {
        Schedule {
            user,
            users: users.max(1),
            rate,
            k: 0,
            end,
        }
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let t = intended_offset(self.user, self.k, self.users, self.rate);
        if t >= self.end {
            return None;
        }
        self.k += 1;
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_staggered_evenly() {
        // 4 users at 1,000 req/s: each every 4 ms, offset by 1 ms.
        assert_eq!(intended_offset(0, 0, 4, 1000.0), Duration::ZERO);
        assert_eq!(intended_offset(1, 0, 4, 1000.0), Duration::from_millis(1));
        assert_eq!(intended_offset(3, 0, 4, 1000.0), Duration::from_millis(3));
        assert_eq!(intended_offset(0, 1, 4, 1000.0), Duration::from_millis(4));
        assert_eq!(intended_offset(2, 5, 4, 1000.0), Duration::from_millis(22));
    }

    #[test]
    fn union_of_users_is_the_rate() {
        let (users, rate) = (7, 5000.0);
        let end = Duration::from_secs(1);
        let mut all: Vec<Duration> = (0..users)
            .flat_map(|u| Schedule::new(u, users, rate, end))
            .collect();
        all.sort();
        assert_eq!(all.len(), 5000);
        for (i, t) in all.iter().enumerate() {
            let want = i as f64 / rate;
            assert!((t.as_secs_f64() - want).abs() < 1e-9, "slot {i}: {t:?}");
        }
    }

    #[test]
    fn schedule_stops_before_end() {
        let s: Vec<_> = Schedule::new(0, 1, 10.0, Duration::from_millis(250)).collect();
        assert_eq!(
            s,
            vec![
                Duration::ZERO,
                Duration::from_millis(100),
                Duration::from_millis(200)
            ]
        );
    }
}
