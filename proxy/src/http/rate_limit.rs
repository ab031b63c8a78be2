//! The rate-limit step: after routing chose a route (OUTBOUND, Gateway) or after
//! authorization (INBOUND), before anything is forwarded, the request is counted by the
//! RateLimitPolicy rules of this workload ([`crate::ratelimit`]).
//!
//! Over a limit, Envoy's answer: `429`, flag `RL`, `x-envoy-ratelimited: true` and the
//! draft-03 quota headers (`enable_x_ratelimit_headers: DRAFT_VERSION_03`:
//! `x-ratelimit-limit` with its quota policy `N, N;w=SECONDS`, `-remaining`, `-reset`).
//! Redis failing with `failureModeDeny`: `500`, flag `RLSE` (Envoy's ratelimit filter,
//! `failure_mode_deny`, `status_on_error` 500).

use super::exchange::Exchange;
use crate::body::ResponseBody;
use crate::flags::Flags;
use crate::ratelimit::bucket::Quota;
use crate::ratelimit::{RateLimiter, Verdict};
use http::header::{HeaderName, HeaderValue};
use http::Response;
use meshproxy_config::compile::matcher::RequestView;
use meshproxy_config::compile::rate_limit::Client;

static RATELIMITED: HeaderName = HeaderName::from_static("x-envoy-ratelimited");
static LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Counts the request; `Some(response)` when it is refused. Called only when a rule
/// applies to this workload (`Active::rate_limiter` is set).
pub(super) async fn check(
    x: &mut Exchange,
    limiter: &RateLimiter,
    host: &str,
    view: &RequestView<'_>,
) -> Option<Response<ResponseBody>> {
    let client = Client {
        ip: x.conn.peer.ip(),
        principal: x
            .conn
            .peer_identity
            .as_deref()
            .map(|p| p.strip_prefix("spiffe://").unwrap_or(p)),
    };
    let active = x.active.clone();
    match limiter
        .check(&active.snapshot.rate_limits, host, view, &client)
        .await
    {
        Verdict::Allow => None,
        Verdict::Limited { quota, global } => Some(limited(x, quota, global)),
        Verdict::BackendFailed => Some(x.reply(
            500,
            Flags::RATE_LIMIT_SERVICE_ERROR,
            "rate_limiter_error",
            "",
        )),
    }
}

/// Envoy's local filter answers `local_rate_limited` (body and details); its global
/// filter answers with no body and details `request_rate_limited`.
fn limited(x: &mut Exchange, q: Quota, global: bool) -> Response<ResponseBody> {
    let (details, body) = if global {
        ("request_rate_limited", "")
    } else {
        ("local_rate_limited", "local_rate_limited")
    };
    let mut resp = x.reply(429, Flags::RATE_LIMITED, details, body);
    let h = resp.headers_mut();
    h.insert(RATELIMITED.clone(), HeaderValue::from_static("true"));
    let mut n = itoa::Buffer::new();
    let limit = format!("{}, {};w={}", q.limit, q.limit, q.window_secs);
    if let Ok(v) = HeaderValue::from_str(&limit) {
        h.insert(LIMIT.clone(), v);
    }
    h.insert(
        REMAINING.clone(),
        HeaderValue::from_str(n.format(q.remaining)).unwrap_or(HeaderValue::from_static("0")),
    );
    h.insert(
        RESET.clone(),
        HeaderValue::from_str(n.format(q.reset_secs)).unwrap_or(HeaderValue::from_static("0")),
    );
    resp
}
