//! A rule's counters and their Prometheus families
//! (`meshproxy_ratelimit_{allowed,limited,shadow_limited,backend_errors}_total`, labelled
//! by policy and rule), read at scrape time: the request path only adds to atomics.

use super::RateLimiter;
use meshproxy_config::compile::rate_limit::{RateLimits, Rule};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counters of one rule.
#[derive(Debug, Default)]
pub struct Stats {
    allowed: AtomicU64,
    limited: AtomicU64,
    shadow_limited: AtomicU64,
    backend_errors: AtomicU64,
}

impl Stats {
    /// A request counted by the rule: under its limit, or over it (refused, or only
    /// reported when the rule is `shadow`).
    pub fn record(&self, policy: &str, r: &Rule, allowed: bool) {
        let counter = if allowed {
            &self.allowed
        } else if r.shadow {
            tracing::debug!(policy, rule = &*r.name, "shadow rate limit exceeded");
            &self.shadow_limited
        } else {
            &self.limited
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A Global request refused by the over-limit cache.
    pub fn limited_locally(&self) {
        self.limited.fetch_add(1, Ordering::Relaxed);
    }

    /// A Global request Redis did not count.
    pub fn backend_error(&self) {
        self.backend_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// (allowed, limited, shadow_limited, backend_errors).
    pub fn totals(&self) -> [u64; 4] {
        [
            &self.allowed,
            &self.limited,
            &self.shadow_limited,
            &self.backend_errors,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

const FAMILIES: [(&str, &str); 4] = [
    (
        "meshproxy_ratelimit_allowed_total",
        "Requests a rate-limit rule counted under its limit.",
    ),
    (
        "meshproxy_ratelimit_limited_total",
        "Requests refused (429) by a rate-limit rule.",
    ),
    (
        "meshproxy_ratelimit_shadow_limited_total",
        "Requests over a shadow rule's limit (reported, not refused).",
    ),
    (
        "meshproxy_ratelimit_backend_errors_total",
        "Global rate-limit requests Redis did not count (down, slow or unconfigured).",
    ),
];

/// Appends the rate-limit families for the config in force.
pub fn render(out: &mut String, cfg: &RateLimits, limiter: Option<&RateLimiter>) {
    for (i, (name, help)) in FAMILIES.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let Some(limiter) = limiter else {
            continue;
        };
        for (pi, p) in cfg.policies.iter().enumerate() {
            for (ri, r) in p.rules.iter().enumerate() {
                let Some(st) = limiter.rule(pi, ri) else {
                    continue;
                };
                let _ = writeln!(
                    out,
                    "{name}{{policy=\"{}\",rule=\"{}\"}} {}",
                    p.name,
                    r.name,
                    st.stats.totals()[i]
                );
            }
        }
    }
}
