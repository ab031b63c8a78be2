//! Compiled HTTP routes: the action (forward to weighted clusters, redirect, direct response)
//! and the per-route policies (timeout, retries, fault, rewrite, header operations, mirrors,
//! CORS), with every Istio default already applied.

use super::matcher::{RequestView, RouteMatch, StringMatcher};
use super::snapshot::ClusterId;
use http::header::{HeaderName, HeaderValue};
use regex::Regex;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// One HTTP rule of a virtual host.
#[derive(Clone, Debug)]
pub struct Route {
    /// Rule name (`HTTPRoute.name`), may be empty.
    pub name: std::sync::Arc<str>,
    /// Where the rule came from: `VirtualService/ns/name` and rule index, or the default route.
    pub origin: String,
    /// Conditions, OR'ed; empty = match everything. Shared by routes with equal
    /// conditions, and with the snapshot in force on a reload ([`super::intern`]).
    pub matches: Arc<[RouteMatch]>,
    /// What to do with a matching request.
    pub action: RouteAction,
    /// Policies applied on the way; routes with equal policies share one copy.
    pub policy: Arc<RoutePolicy>,
}

impl Route {
    /// The first matching condition, or `None` when the rule does not apply. A rule without
    /// conditions matches with `Some(None)`.
    pub fn find_match(&self, req: &RequestView<'_>) -> Option<Option<&RouteMatch>> {
        if self.matches.is_empty() {
            return Some(None);
        }
        self.matches.iter().find(|m| m.matches(req)).map(Some)
    }
}

/// What a route does.
#[derive(Clone, Debug)]
pub enum RouteAction {
    /// Forward to one of several weighted destinations.
    Forward(WeightedClusters),
    /// Answer with a redirect (boxed, as the next: most routes forward, and every route
    /// was the size of the largest action).
    Redirect(Box<Redirect>),
    /// Answer directly.
    DirectResponse(Box<DirectResponse>),
}

/// Weighted destinations: relative weights, weight-0 entries dropped (Istio).
#[derive(Clone, Debug)]
pub struct WeightedClusters {
    /// Destinations with positive weight, in order. Shared like [`Route::matches`].
    pub destinations: Arc<[WeightedDestination]>,
    /// Sum of the weights.
    pub total_weight: u32,
}

impl WeightedClusters {
    /// Picks a destination for `r` uniformly drawn in `0..total_weight`.
    pub fn pick(&self, r: u32) -> &WeightedDestination {
        let mut acc = 0u32;
        for d in self.destinations.iter() {
            acc += d.weight;
            if r < acc {
                return d;
            }
        }
        // Unreachable with r < total; the last entry is a safe answer.
        &self.destinations[self.destinations.len() - 1]
    }
}

/// One weighted destination.
#[derive(Clone, Debug)]
pub struct WeightedDestination {
    /// Relative weight (> 0).
    pub weight: u32,
    /// The cluster(s) this destination resolves to.
    pub target: ClusterChoice,
    /// Qualified destination host (for metrics and logs).
    pub host: String,
    /// Subset name, empty when none.
    pub subset: String,
    /// Per-destination header operations, when the destination has any. Nearly every
    /// destination has none: held inline, the two empty lists were half of a compiled
    /// route's size (docs/performance.md, "Memory with many services").
    pub headers: Option<Box<DestinationHeaders>>,
}

/// A weighted destination's own header operations (`HTTPRouteDestination.headers`).
#[derive(Clone, Debug, Default)]
pub struct DestinationHeaders {
    /// Request header operations (applied after the route's).
    pub request: HeaderOps,
    /// Response header operations.
    pub response: HeaderOps,
    /// Host rewrite from per-destination `headers.request.set[:authority]`.
    pub authority: Option<HeaderValue>,
}

impl DestinationHeaders {
    /// The operations boxed, or `None` when there are none.
    pub fn boxed(
        request: HeaderOps,
        response: HeaderOps,
        authority: Option<HeaderValue>,
    ) -> Option<Box<DestinationHeaders>> {
        let none = request.is_empty() && response.is_empty() && authority.is_none();
        (!none).then(|| {
            Box::new(DestinationHeaders {
                request,
                response,
                authority,
            })
        })
    }
}

/// No header operations, for a destination without any.
static NO_HEADER_OPS: HeaderOps = HeaderOps {
    set: Vec::new(),
    add: Vec::new(),
    remove: Vec::new(),
};

impl WeightedDestination {
    /// Per-destination request header operations (applied after the route's).
    pub fn request_headers(&self) -> &HeaderOps {
        self.headers.as_ref().map_or(&NO_HEADER_OPS, |h| &h.request)
    }

    /// Per-destination response header operations.
    pub fn response_headers(&self) -> &HeaderOps {
        self.headers
            .as_ref()
            .map_or(&NO_HEADER_OPS, |h| &h.response)
    }

    /// Host rewrite from per-destination `headers.request.set[:authority]`.
    pub fn authority(&self) -> Option<&HeaderValue> {
        self.headers.as_ref().and_then(|h| h.authority.as_ref())
    }
}

/// How a destination maps to a cluster.
#[derive(Clone, Debug)]
pub enum ClusterChoice {
    /// One cluster.
    Fixed(ClusterId),
    /// A multi-port service without `destination.port`: the request's port picks.
    ByPort(Vec<(u16, ClusterId)>),
    /// No such service or subset: `503 NC`.
    Missing {
        /// Why, for logs.
        reason: String,
    },
}

impl ClusterChoice {
    /// The cluster for a request on `port`.
    pub fn resolve(&self, port: u16) -> Option<ClusterId> {
        match self {
            ClusterChoice::Fixed(c) => Some(*c),
            ClusterChoice::ByPort(list) => list.iter().find(|(p, _)| *p == port).map(|(_, c)| *c),
            ClusterChoice::Missing { .. } => None,
        }
    }
}

/// `HTTPRedirect`, compiled.
#[derive(Clone, Debug)]
pub struct Redirect {
    /// Status code (default 301).
    pub code: u16,
    /// New scheme, if any.
    pub scheme: Option<String>,
    /// New host, if any.
    pub authority: Option<String>,
    /// Port handling.
    pub port: RedirectPort,
    /// Path handling.
    pub path: RedirectPath,
}

/// Port of a redirect target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedirectPort {
    /// Keep the request's port.
    Keep,
    /// A fixed port.
    Fixed(u16),
    /// 80/443 by scheme (omitted from the URL).
    FromProtocolDefault,
    /// The port the request arrived on.
    FromRequestPort,
}

/// Path of a redirect target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedirectPath {
    /// Keep the request's path and query.
    Keep,
    /// Replace the whole path.
    Replace(String),
    /// Replace the matched prefix.
    PrefixRewrite(String),
}

/// `HTTPDirectResponse`, compiled.
#[derive(Clone, Debug)]
pub struct DirectResponse {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: bytes::Bytes,
    /// The cluster the reply is reported against in metrics (Istio's `BlackHoleCluster`
    /// for its `block_all` virtual host); `None` for a VirtualService's direct response.
    pub cluster: Option<ClusterId>,
}

/// Header operations with names validated at compile time.
#[derive(Clone, Debug, Default)]
pub struct HeaderOps {
    /// Overwrite or add.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Append or add.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Remove.
    pub remove: Vec<HeaderName>,
}

impl HeaderOps {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// Per-route policies.
#[derive(Clone, Debug, Default)]
pub struct RoutePolicy {
    /// Route timeout; `None` = no timeout (Istio's default, not Envoy's 15s).
    pub timeout: Option<Duration>,
    /// Retry policy (Istio's default when unset).
    pub retry: RetryPolicy,
    /// Fault injection.
    pub fault: Option<Fault>,
    /// Path/authority rewrite.
    pub rewrite: Option<Rewrite>,
    /// Request header operations (route level).
    pub request_headers: HeaderOps,
    /// Response header operations (route level).
    pub response_headers: HeaderOps,
    /// Mirrors.
    pub mirrors: Vec<Mirror>,
    /// CORS.
    pub cors: Option<Cors>,
}

impl RoutePolicy {
    /// Istio's defaults (no timeout, the default retries, nothing else), one copy for
    /// every route that sets no policy (the default route of each service).
    pub fn shared_default() -> Arc<RoutePolicy> {
        static DEFAULT: OnceLock<Arc<RoutePolicy>> = OnceLock::new();
        DEFAULT.get_or_init(Arc::default).clone()
    }
}

/// Retry conditions (Envoy `retry_on` tokens).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryOn(pub u32);

impl RetryOn {
    /// Any 5xx, or no response (reset, connect failure).
    pub const FIVE_XX: u32 = 1;
    /// 502, 503, 504.
    pub const GATEWAY_ERROR: u32 = 1 << 1;
    /// Reset / no response / timeout-less disconnect.
    pub const RESET: u32 = 1 << 2;
    /// Reset before any response byte.
    pub const RESET_BEFORE_REQUEST: u32 = 1 << 3;
    /// Connect failure.
    pub const CONNECT_FAILURE: u32 = 1 << 4;
    /// 409.
    pub const RETRIABLE_4XX: u32 = 1 << 5;
    /// HTTP/2 REFUSED_STREAM.
    pub const REFUSED_STREAM: u32 = 1 << 6;
    /// Codes in `retriable_status_codes`.
    pub const RETRIABLE_STATUS_CODES: u32 = 1 << 7;
    /// `x-envoy-retriable-header-names` (accepted; no headers configured means never).
    pub const RETRIABLE_HEADERS: u32 = 1 << 8;
    /// `x-envoy-ratelimited` in the response.
    pub const ENVOY_RATELIMITED: u32 = 1 << 9;
    /// HTTP/3 post-connect failure (no HTTP/3 here; never true).
    pub const HTTP3_POST_CONNECT_FAILURE: u32 = 1 << 10;
    /// gRPC CANCELLED.
    pub const GRPC_CANCELLED: u32 = 1 << 11;
    /// gRPC DEADLINE_EXCEEDED.
    pub const GRPC_DEADLINE_EXCEEDED: u32 = 1 << 12;
    /// gRPC INTERNAL.
    pub const GRPC_INTERNAL: u32 = 1 << 13;
    /// gRPC RESOURCE_EXHAUSTED.
    pub const GRPC_RESOURCE_EXHAUSTED: u32 = 1 << 14;
    /// gRPC UNAVAILABLE.
    pub const GRPC_UNAVAILABLE: u32 = 1 << 15;

    /// The bit for a `retryOn` token.
    pub fn token(t: &str) -> Option<u32> {
        Some(match t {
            "5xx" => Self::FIVE_XX,
            "gateway-error" => Self::GATEWAY_ERROR,
            "reset" => Self::RESET,
            "reset-before-request" => Self::RESET_BEFORE_REQUEST,
            "connect-failure" => Self::CONNECT_FAILURE,
            "retriable-4xx" => Self::RETRIABLE_4XX,
            "refused-stream" => Self::REFUSED_STREAM,
            "retriable-status-codes" => Self::RETRIABLE_STATUS_CODES,
            "retriable-headers" => Self::RETRIABLE_HEADERS,
            "envoy-ratelimited" => Self::ENVOY_RATELIMITED,
            "http3-post-connect-failure" => Self::HTTP3_POST_CONNECT_FAILURE,
            "cancelled" => Self::GRPC_CANCELLED,
            "deadline-exceeded" => Self::GRPC_DEADLINE_EXCEEDED,
            "internal" => Self::GRPC_INTERNAL,
            "resource-exhausted" => Self::GRPC_RESOURCE_EXHAUSTED,
            "unavailable" => Self::GRPC_UNAVAILABLE,
            _ => return None,
        })
    }

    /// True when `bit` is set.
    pub fn has(&self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// The retry policy of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try (0 = off).
    pub attempts: u32,
    /// Timeout of each try; `None` = the route timeout only.
    pub per_try_timeout: Option<Duration>,
    /// Conditions.
    pub on: RetryOn,
    /// Codes retried under `retriable-status-codes`.
    pub status_codes: Vec<u16>,
    /// Backoff base interval (Envoy default 25ms).
    pub backoff_base: Duration,
    /// Backoff cap (Envoy: 10× base).
    pub backoff_max: Duration,
    /// Skip hosts already tried (Istio default true, false with consistent hashing).
    pub ignore_previous_hosts: bool,
}

/// Istio's built-in default retry string (ISTIO `retry.go defaultRetryOn`; since 1.24 the
/// 503 code is no longer retried by default).
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

impl RetryPolicy {
    /// No retries at all (INBOUND, upgrade requests): what an internal sender's
    /// `x-envoy-retry-on` starts from.
    pub const NONE: RetryPolicy = RetryPolicy {
        attempts: 0,
        per_try_timeout: None,
        on: RetryOn(0),
        status_codes: Vec::new(),
        backoff_base: Duration::from_millis(25),
        backoff_max: Duration::from_millis(250),
        ignore_previous_hosts: false,
    };
}

impl Default for RetryPolicy {
    /// Istio: 2 retries on `connect-failure,refused-stream,unavailable,cancelled,
    /// retriable-status-codes` with no status codes; Envoy: 25ms base backoff.
    fn default() -> Self {
        let mut on = 0;
        for t in DEFAULT_RETRY_ON.split(',') {
            on |= RetryOn::token(t).unwrap_or(0);
        }
        RetryPolicy {
            attempts: 2,
            per_try_timeout: None,
            on: RetryOn(on),
            status_codes: Vec::new(),
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            ignore_previous_hosts: true,
        }
    }
}

/// Fault injection of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Delay and its share per million requests.
    pub delay: Option<(Duration, u32)>,
    /// Abort and its share per million requests.
    pub abort: Option<(Abort, u32)>,
}

/// What an injected abort answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abort {
    /// An HTTP status.
    Http(u16),
    /// A gRPC status code (sent as HTTP 200 with `grpc-status`).
    Grpc(u32),
}

/// Path and authority rewrite.
#[derive(Clone, Debug)]
pub struct Rewrite {
    /// Replacement for the matched prefix (whole path for exact matches).
    pub uri: Option<String>,
    /// Regex substitution applied to the path.
    pub uri_regex: Option<(Regex, String)>,
    /// New authority.
    pub authority: Option<HeaderValue>,
}

impl Rewrite {
    /// The rewritten path for `path` given the condition that matched, or `None` to keep it.
    pub fn path(&self, path: &str, matched: Option<&RouteMatch>) -> Option<String> {
        if let Some(new) = &self.uri {
            let prefix = matched
                .and_then(|m| m.uri.as_ref())
                .and_then(StringMatcher::rewrite_prefix)
                .unwrap_or("");
            let rest = if prefix.len() <= path.len() && path.is_char_boundary(prefix.len()) {
                &path[prefix.len()..]
            } else {
                ""
            };
            return Some(format!("{new}{rest}"));
        }
        if let Some((re, rep)) = &self.uri_regex {
            return Some(re.replace_all(path, rep.as_str()).into_owned());
        }
        None
    }
}

/// A mirror destination.
#[derive(Clone, Debug)]
pub struct Mirror {
    /// Mirror cluster.
    pub target: ClusterChoice,
    /// Qualified host.
    pub host: String,
    /// Share per million requests.
    pub per_million: u32,
}

/// A compiled CORS policy.
#[derive(Clone, Debug)]
pub struct Cors {
    /// Origin matchers.
    pub origins: Vec<StringMatcher>,
    /// `Access-Control-Allow-Methods`.
    pub allow_methods: Option<HeaderValue>,
    /// `Access-Control-Allow-Headers`.
    pub allow_headers: Option<HeaderValue>,
    /// `Access-Control-Expose-Headers`.
    pub expose_headers: Option<HeaderValue>,
    /// `Access-Control-Max-Age`.
    pub max_age: Option<HeaderValue>,
    /// `Access-Control-Allow-Credentials`.
    pub allow_credentials: Option<bool>,
    /// Forward preflights whose origin matches nothing (default) or answer them.
    pub forward_unmatched_preflights: bool,
}

impl Cors {
    /// True when `origin` is allowed.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.iter().any(|m| m.matches(origin, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_retry_policy_is_istios() {
        let p = RetryPolicy::default();
        assert_eq!(p.attempts, 2);
        assert!(p.on.has(RetryOn::CONNECT_FAILURE));
        assert!(p.on.has(RetryOn::REFUSED_STREAM));
        assert!(p.on.has(RetryOn::GRPC_UNAVAILABLE));
        assert!(p.on.has(RetryOn::GRPC_CANCELLED));
        assert!(p.on.has(RetryOn::RETRIABLE_STATUS_CODES));
        assert!(
            !p.on.has(RetryOn::FIVE_XX),
            "503 is not retried by default since Istio 1.24"
        );
        assert!(p.status_codes.is_empty());
        assert_eq!(p.backoff_base, Duration::from_millis(25));
    }

    #[test]
    fn weighted_pick_respects_relative_weights() {
        let d = |w| WeightedDestination {
            weight: w,
            target: ClusterChoice::Missing {
                reason: String::new(),
            },
            host: String::new(),
            subset: String::new(),
            headers: None,
        };
        let wc = WeightedClusters {
            destinations: vec![d(49), d(50)].into(),
            total_weight: 99,
        };
        let mut counts = [0u32; 2];
        for r in 0..99 {
            let picked = wc.pick(r);
            counts[(picked.weight == 50) as usize] += 1;
        }
        assert_eq!(counts, [49, 50]);
    }

    #[test]
    fn prefix_rewrite_replaces_the_matched_prefix() {
        let rw = Rewrite {
            uri: Some("/v2".into()),
            uri_regex: None,
            authority: None,
        };
        let m = RouteMatch {
            uri: Some(StringMatcher::Prefix("/v1".into())),
            ..Default::default()
        };
        assert_eq!(rw.path("/v1/items", Some(&m)).unwrap(), "/v2/items");
        let exact = RouteMatch {
            uri: Some(StringMatcher::Exact("/login".into())),
            ..Default::default()
        };
        let rw2 = Rewrite {
            uri: Some("/auth/login".into()),
            uri_regex: None,
            authority: None,
        };
        assert_eq!(rw2.path("/login", Some(&exact)).unwrap(), "/auth/login");
    }

    #[test]
    fn regex_rewrite_substitutes_captures() {
        let rw = Rewrite {
            uri: None,
            uri_regex: Some((
                Regex::new("^/service/([^/]+)(/.*)$").unwrap(),
                "${2}/instance/${1}".into(),
            )),
            authority: None,
        };
        assert_eq!(
            rw.path("/service/foo/v1/api", None).unwrap(),
            "/v1/api/instance/foo"
        );
    }
}
