//! Envoy's `x-envoy-*` headers as Istio's Envoy uses them (docs/config.md, "Envoy's
//! headers"):
//!
//! - the control headers a client may send (`x-envoy-retry-on`, `x-envoy-max-retries`,
//!   `x-envoy-upstream-rq-timeout-ms`, ...) are honoured only from internal senders and
//!   removed from every request before it goes upstream. Envoy's HTTP connection manager
//!   strips them from requests it counts as external (`ConnectionManagerUtility::
//!   cleanInternalHeaders`, "Header sanitizing" in Envoy's docs); the router consumes them
//!   from internal ones ("x-envoy-retry-on" and friends in Envoy's router filter docs);
//! - the headers the router adds: `x-envoy-attempt-count` on every attempt (Istio turns
//!   `include_request_attempt_count` on for every virtual host), `x-envoy-original-path`
//!   when a rewrite changed the path, `x-envoy-expected-rq-timeout-ms` with the timeout the
//!   upstream has.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use meshproxy_config::compile::route::{RetryOn, RetryPolicy};
use std::time::Duration;

/// `x-envoy-attempt-count`: 1 for the first try, 2 for the first retry, ...
pub static X_ENVOY_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
/// `x-envoy-original-path`: the path before a rewrite.
pub static X_ENVOY_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
/// `x-envoy-expected-rq-timeout-ms`: the time the upstream has to answer.
pub static X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: HeaderName =
    HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
/// `x-envoy-internal: true` on requests from internal senders.
pub static X_ENVOY_INTERNAL: HeaderName = HeaderName::from_static("x-envoy-internal");

static RETRY_ON: HeaderName = HeaderName::from_static("x-envoy-retry-on");
static RETRY_GRPC_ON: HeaderName = HeaderName::from_static("x-envoy-retry-grpc-on");
static MAX_RETRIES: HeaderName = HeaderName::from_static("x-envoy-max-retries");
static RETRIABLE_STATUS_CODES: HeaderName =
    HeaderName::from_static("x-envoy-retriable-status-codes");
static RQ_TIMEOUT_MS: HeaderName = HeaderName::from_static("x-envoy-upstream-rq-timeout-ms");
static PER_TRY_TIMEOUT_MS: HeaderName =
    HeaderName::from_static("x-envoy-upstream-rq-per-try-timeout-ms");

/// The headers an external request loses (Envoy's `cleanInternalHeaders` list); the
/// router's own, which an internal request's values were read from, are among them.
const CONTROL: &[&str] = &[
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-original-url",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-internal",
];

/// What an internal sender asked of the router.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `x-envoy-retry-on` and `x-envoy-retry-grpc-on` conditions, OR-ed with the route's.
    pub retry_on: u32,
    /// `x-envoy-max-retries`: replaces the route's retry count.
    pub max_retries: Option<u32>,
    /// `x-envoy-retriable-status-codes`: added to the route's codes.
    pub status_codes: Vec<u16>,
    /// `x-envoy-upstream-rq-timeout-ms`: replaces the route timeout.
    pub timeout: Option<Duration>,
    /// `x-envoy-upstream-rq-per-try-timeout-ms`.
    pub per_try_timeout: Option<Duration>,
}

impl Overrides {
    /// The route's retry policy with these overrides applied, as Envoy's router combines
    /// them: conditions OR-ed (a header alone gives one retry), the count replaced when
    /// some condition is active, codes added, the per-try timeout taken only when shorter
    /// than the request's timeout.
    pub fn retry_policy(&self, route: &RetryPolicy, timeout: Option<Duration>) -> RetryPolicy {
        let mut p = route.clone();
        if self.retry_on != 0 {
            if p.on.0 == 0 || p.attempts == 0 {
                // Envoy: retry conditions from the header alone mean one retry.
                p.attempts = 1;
            }
            p.on = RetryOn(p.on.0 | self.retry_on);
        }
        if let Some(n) = self.max_retries.filter(|_| p.on.0 != 0) {
            p.attempts = n;
        }
        p.status_codes.extend(&self.status_codes);
        if let Some(t) = self.per_try_timeout {
            if timeout.is_none_or(|g| t < g) {
                p.per_try_timeout = Some(t);
            }
        }
        p
    }
}

/// Removes the control headers from `headers`; for an `internal` sender, returns what
/// they asked (`None` when they asked nothing). One pass over the header names finds
/// whether there are any: most requests carry none.
pub fn take_controls(headers: &mut HeaderMap, internal: bool) -> Option<Overrides> {
    if !headers.keys().any(|k| k.as_str().starts_with("x-envoy-")) {
        return None;
    }
    let overrides = internal.then(|| read_controls(headers));
    for name in CONTROL {
        headers.remove(*name);
    }
    overrides.filter(|o| *o != Overrides::default())
}

fn read_controls(h: &HeaderMap) -> Overrides {
    let text = |n: &HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    let tokens = |n: &HeaderName| {
        text(n)
            .map(|v| {
                v.split(',')
                    .filter_map(|t| RetryOn::token(t.trim()))
                    .fold(0, |a, b| a | b)
            })
            .unwrap_or(0)
    };
    let millis = |n: &HeaderName| {
        text(n)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
    };
    Overrides {
        retry_on: tokens(&RETRY_ON) | tokens(&RETRY_GRPC_ON),
        max_retries: text(&MAX_RETRIES).and_then(|v| v.trim().parse().ok()),
        status_codes: text(&RETRIABLE_STATUS_CODES)
            .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
            .unwrap_or_default(),
        // Envoy: 0 disables the timeout; a malformed value is ignored.
        timeout: millis(&RQ_TIMEOUT_MS),
        per_try_timeout: millis(&PER_TRY_TIMEOUT_MS).filter(|d| !d.is_zero()),
    }
}

/// The value of `x-envoy-attempt-count` for attempt `n` (1-based).
pub fn attempt_count(n: u32) -> HeaderValue {
    const SMALL: [HeaderValue; 5] = [
        HeaderValue::from_static("1"),
        HeaderValue::from_static("2"),
        HeaderValue::from_static("3"),
        HeaderValue::from_static("4"),
        HeaderValue::from_static("5"),
    ];
    match n {
        1..=5 => SMALL[n as usize - 1].clone(),
        _ => HeaderValue::from(n),
    }
}

/// `x-envoy-expected-rq-timeout-ms`: the per-try timeout when it is shorter than the
/// request's, else the request's (Envoy's `FilterUtility::setTimeoutHeaders`); nothing
/// without a timeout.
pub fn expected_timeout(
    timeout: Option<Duration>,
    per_try: Option<Duration>,
) -> Option<HeaderValue> {
    let t = match (timeout, per_try) {
        (Some(g), Some(p)) if p < g => p,
        (Some(g), _) => g,
        (None, p) => p?,
    };
    (!t.is_zero()).then(|| HeaderValue::from(t.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn external_senders_lose_every_control_header() {
        let mut h = with(&[
            ("x-envoy-retry-on", "5xx"),
            ("x-envoy-upstream-rq-timeout-ms", "10"),
            ("x-envoy-internal", "true"),
            ("x-envoy-peer-metadata", "kept"),
            ("x-other", "kept"),
        ]);
        assert_eq!(take_controls(&mut h, false), None);
        assert_eq!(h.len(), 2);
        assert!(h.contains_key("x-envoy-peer-metadata"));
    }

    #[test]
    fn internal_senders_are_honoured_and_the_headers_consumed() {
        let mut h = with(&[
            ("x-envoy-retry-on", "5xx, reset,bogus"),
            ("x-envoy-retry-grpc-on", "unavailable"),
            ("x-envoy-max-retries", "4"),
            ("x-envoy-upstream-rq-timeout-ms", "250"),
            ("x-envoy-upstream-rq-per-try-timeout-ms", "100"),
            ("x-envoy-retriable-status-codes", "418, 429"),
        ]);
        let o = take_controls(&mut h, true).expect("overrides");
        assert!(h.is_empty());
        assert_eq!(
            o.retry_on,
            RetryOn::FIVE_XX | RetryOn::RESET | RetryOn::GRPC_UNAVAILABLE
        );
        assert_eq!(o.max_retries, Some(4));
        assert_eq!(o.timeout, Some(Duration::from_millis(250)));
        assert_eq!(o.status_codes, vec![418, 429]);
        let route = RetryPolicy::default();
        let p = o.retry_policy(&route, o.timeout);
        assert_eq!(p.attempts, 4);
        assert!(p.on.has(RetryOn::FIVE_XX) && p.on.has(RetryOn::CONNECT_FAILURE));
        assert_eq!(p.per_try_timeout, Some(Duration::from_millis(100)));
        // A per-try timeout not shorter than the request's is ignored.
        let p = o.retry_policy(&route, Some(Duration::from_millis(50)));
        assert_eq!(p.per_try_timeout, route.per_try_timeout);
    }

    #[test]
    fn a_retry_header_alone_means_one_retry() {
        let route = RetryPolicy {
            attempts: 0,
            on: RetryOn(0),
            ..RetryPolicy::default()
        };
        let o = Overrides {
            retry_on: RetryOn::FIVE_XX,
            ..Overrides::default()
        };
        assert_eq!(o.retry_policy(&route, None).attempts, 1);
        // x-envoy-max-retries without any condition changes nothing.
        let o = Overrides {
            max_retries: Some(3),
            ..Overrides::default()
        };
        assert_eq!(o.retry_policy(&route, None).attempts, 0);
    }

    #[test]
    fn expected_timeout_is_the_shorter_one() {
        let ms = Duration::from_millis;
        assert_eq!(expected_timeout(None, None), None);
        assert_eq!(
            expected_timeout(Some(ms(300)), None),
            Some(HeaderValue::from(300u64))
        );
        assert_eq!(
            expected_timeout(Some(ms(300)), Some(ms(100))),
            Some(HeaderValue::from(100u64))
        );
        assert_eq!(
            expected_timeout(Some(ms(300)), Some(ms(500))),
            Some(HeaderValue::from(300u64))
        );
        assert_eq!(
            expected_timeout(None, Some(ms(100))),
            Some(HeaderValue::from(100u64))
        );
        assert_eq!(attempt_count(2), "2");
        assert_eq!(attempt_count(12), "12");
    }
}
