//! JWT authentication counters: successes, and failures by [`Reason`]: one atomic add per
//! verified token, rendered at scrape time (`meshproxy_jwt_authn_*` in `/metrics`).

use super::reason::Reason;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

static SUCCESS: AtomicU64 = AtomicU64::new(0);
static FAILED: [AtomicU64; Reason::ALL.len()] = [const { AtomicU64::new(0) }; Reason::ALL.len()];

/// Counts a verified token.
pub fn success() {
    SUCCESS.fetch_add(1, Ordering::Relaxed);
}

/// Counts a refused token.
pub fn failed(r: Reason) {
    if let Some(i) = Reason::ALL.iter().position(|x| *x == r) {
        FAILED[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// Tokens verified so far (process-wide).
pub fn successes() -> u64 {
    SUCCESS.load(Ordering::Relaxed)
}

/// Tokens refused so far with a reason whose label is `label` (process-wide).
pub fn failures(label: &str) -> u64 {
    Reason::ALL
        .iter()
        .zip(&FAILED)
        .filter(|(r, _)| r.label() == label)
        .map(|(_, c)| c.load(Ordering::Relaxed))
        .sum()
}

/// Appends the two families in Prometheus text format.
pub fn render(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP meshproxy_jwt_authn_success_total Requests whose JWT was verified (RequestAuthentication).\n# TYPE meshproxy_jwt_authn_success_total counter\nmeshproxy_jwt_authn_success_total {}",
        successes()
    );
    let _ = writeln!(
        out,
        "# HELP meshproxy_jwt_authn_failed_total Requests refused for their JWT, by reason.\n# TYPE meshproxy_jwt_authn_failed_total counter"
    );
    let mut seen: Vec<&str> = Vec::new();
    for r in Reason::ALL {
        if !seen.contains(&r.label()) {
            seen.push(r.label());
            let _ = writeln!(
                out,
                "meshproxy_jwt_authn_failed_total{{reason=\"{}\"}} {}",
                r.label(),
                failures(r.label())
            );
        }
    }
}
