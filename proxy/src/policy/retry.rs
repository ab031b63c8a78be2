//! Retry decisions (Envoy's `x-envoy-retry-on` semantics as Istio configures them) and
//! Envoy's fully jittered exponential backoff.

use meshproxy_config::compile::route::{RetryOn, RetryPolicy};
use std::time::Duration;

/// How one upstream attempt ended, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Response headers arrived.
    Response {
        /// HTTP status.
        status: u16,
        /// `grpc-status` in the headers (a trailers-only gRPC response).
        grpc_status: Option<u32>,
        /// `x-envoy-ratelimited` present.
        ratelimited: bool,
    },
    /// The connection could not be opened (or timed out opening).
    ConnectFailure,
    /// The request was refused before it was sent (HTTP/2 REFUSED_STREAM).
    RefusedStream,
    /// The connection closed before the request was written.
    ResetBeforeRequest,
    /// The upstream reset or closed before response headers.
    Reset,
    /// The per-try timeout elapsed before response headers.
    Timeout,
    /// The upstream sent something that is not valid HTTP.
    ProtocolError,
    /// A circuit breaker refused the request locally (Envoy never retries an overflow).
    Overflow,
}

/// Whether `outcome` is retriable under `policy`.
pub fn retriable(policy: &RetryPolicy, outcome: Outcome) -> bool {
    let on = policy.on;
    match outcome {
        Outcome::Response {
            status,
            grpc_status,
            ratelimited,
        } => {
            (on.has(RetryOn::FIVE_XX) && status >= 500)
                || (on.has(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504))
                || (on.has(RetryOn::RETRIABLE_4XX) && status == 409)
                || (on.has(RetryOn::RETRIABLE_STATUS_CODES)
                    && policy.status_codes.contains(&status))
                || (on.has(RetryOn::ENVOY_RATELIMITED) && ratelimited)
                || grpc_status.is_some_and(|g| grpc_retriable(on, g))
        }
        Outcome::ConnectFailure => {
            on.has(RetryOn::CONNECT_FAILURE)
                || on.has(RetryOn::FIVE_XX)
                || on.has(RetryOn::GATEWAY_ERROR)
                || on.has(RetryOn::RESET)
                || on.has(RetryOn::RESET_BEFORE_REQUEST)
        }
        Outcome::RefusedStream => {
            on.has(RetryOn::REFUSED_STREAM)
                || on.has(RetryOn::FIVE_XX)
                || on.has(RetryOn::GATEWAY_ERROR)
                || on.has(RetryOn::RESET)
                || on.has(RetryOn::RESET_BEFORE_REQUEST)
        }
        Outcome::ResetBeforeRequest => {
            on.has(RetryOn::RESET_BEFORE_REQUEST)
                || on.has(RetryOn::RESET)
                || on.has(RetryOn::FIVE_XX)
                || on.has(RetryOn::GATEWAY_ERROR)
        }
        Outcome::Overflow => false,
        Outcome::Reset | Outcome::Timeout | Outcome::ProtocolError => {
            on.has(RetryOn::RESET) || on.has(RetryOn::FIVE_XX) || on.has(RetryOn::GATEWAY_ERROR)
        }
    }
}

fn grpc_retriable(on: RetryOn, code: u32) -> bool {
    match code {
        1 => on.has(RetryOn::GRPC_CANCELLED),
        4 => on.has(RetryOn::GRPC_DEADLINE_EXCEEDED),
        8 => on.has(RetryOn::GRPC_RESOURCE_EXHAUSTED),
        13 => on.has(RetryOn::GRPC_INTERNAL),
        14 => on.has(RetryOn::GRPC_UNAVAILABLE),
        _ => false,
    }
}

/// Envoy's backoff before retry number `n` (1-based): uniform in
/// `[0, (2^n - 1) × base]`, capped at the maximum interval.
pub fn backoff(policy: &RetryPolicy, n: u32) -> Duration {
    let base = policy.backoff_base.as_nanos() as u64;
    let factor = (1u64 << n.min(20)) - 1;
    let upper = base
        .saturating_mul(factor)
        .min(policy.backoff_max.as_nanos() as u64);
    Duration::from_nanos(if upper == 0 {
        0
    } else {
        fastrand::u64(0..=upper)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: &str, codes: Vec<u16>) -> RetryPolicy {
        let mut bits = 0;
        for t in on.split(',') {
            bits |= RetryOn::token(t).unwrap();
        }
        RetryPolicy {
            on: RetryOn(bits),
            status_codes: codes,
            ..RetryPolicy::default()
        }
    }

    fn status(s: u16) -> Outcome {
        Outcome::Response {
            status: s,
            grpc_status: None,
            ratelimited: false,
        }
    }

    #[test]
    fn istio_default_does_not_retry_503() {
        let p = RetryPolicy::default();
        assert!(!retriable(&p, status(503)));
        assert!(retriable(&p, Outcome::ConnectFailure));
        assert!(retriable(&p, Outcome::RefusedStream));
        assert!(!retriable(&p, Outcome::Reset));
        assert!(retriable(
            &p,
            Outcome::Response {
                status: 200,
                grpc_status: Some(14),
                ratelimited: false
            }
        ));
    }

    #[test]
    fn five_xx_and_gateway_error() {
        let p = policy("5xx", vec![]);
        assert!(retriable(&p, status(500)));
        assert!(retriable(&p, Outcome::Reset));
        assert!(retriable(&p, Outcome::Timeout));
        assert!(!retriable(&p, status(404)));
        let g = policy("gateway-error", vec![]);
        assert!(retriable(&g, status(503)));
        assert!(!retriable(&g, status(500)));
    }

    #[test]
    fn status_codes_and_4xx() {
        let p = policy("retriable-status-codes", vec![418]);
        assert!(retriable(&p, status(418)));
        assert!(!retriable(&p, status(503)));
        assert!(retriable(&policy("retriable-4xx", vec![]), status(409)));
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        let p = RetryPolicy::default();
        for n in 1..8 {
            for _ in 0..100 {
                let b = backoff(&p, n);
                assert!(b <= p.backoff_max);
                assert!(b <= p.backoff_base * ((1 << n) - 1));
            }
        }
    }
}
