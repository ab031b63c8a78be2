//! `VirtualService` (networking.istio.io): HTTP, TLS and TCP routing rules for a set of hosts.
//! Field names, types and defaults follow Istio's `virtual_service.proto`.

use super::common::{Percent, PortSelector, StringMatch};
use super::map::Map;
use crate::duration::Duration;
use serde::Deserialize;

/// `VirtualService.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualService {
    /// Destination hosts this service applies to (short names are qualified with the namespace).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Gateways (and/or the reserved `mesh`) the rules apply to; empty means `mesh`.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Ordered HTTP rules; the first match wins.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    /// Ordered rules for non-terminated TLS traffic, matched by SNI.
    #[serde(default)]
    pub tls: Vec<TlsRoute>,
    /// Ordered rules for opaque TCP traffic.
    #[serde(default)]
    pub tcp: Vec<TcpRoute>,
    /// Namespaces this service is visible to.
    #[serde(default, alias = "export_to")]
    pub export_to: Vec<String>,
}

/// `Destination`: a service in the registry, optionally a subset and a port.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// Registry host name.
    #[serde(default)]
    pub host: String,
    /// Subset name defined by a DestinationRule.
    #[serde(default)]
    pub subset: String,
    /// Port on the service; required when the service has several ports.
    #[serde(default)]
    pub port: Option<PortSelector>,
}

/// `HTTPRoute`: one HTTP rule. The policies most rules leave unset are boxed, here and in
/// the match: a 10,000-service config held every rule at its largest (984 bytes) until it
/// was compiled (docs/performance.md).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Rule name (used in access logs and stats).
    #[serde(default)]
    pub name: String,
    /// Match conditions, OR'ed; absent means match everything.
    #[serde(default, rename = "match")]
    pub matches: Vec<Option<HttpMatchRequest>>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<HttpRouteDestination>,
    /// Send a redirect instead of forwarding.
    #[serde(default)]
    pub redirect: Option<Box<HttpRedirect>>,
    /// Answer directly instead of forwarding.
    #[serde(default, alias = "direct_response")]
    pub direct_response: Option<Box<HttpDirectResponse>>,
    /// Delegate to another VirtualService.
    #[serde(default)]
    pub delegate: Option<Box<Delegate>>,
    /// Rewrite the path and/or authority before forwarding.
    #[serde(default)]
    pub rewrite: Option<Box<HttpRewrite>>,
    /// Request timeout; unset means none.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Retry policy; unset means Istio's default policy.
    #[serde(default)]
    pub retries: Option<HttpRetry>,
    /// Fault injection.
    #[serde(default)]
    pub fault: Option<Box<HttpFaultInjection>>,
    /// A single mirror destination.
    #[serde(default)]
    pub mirror: Option<Box<Destination>>,
    /// Several mirror destinations with their own percentages.
    #[serde(default)]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Deprecated integer mirror percentage.
    #[serde(default, alias = "mirror_percent")]
    pub mirror_percent: Option<u32>,
    /// Share of traffic mirrored to `mirror` (default 100%).
    #[serde(default, alias = "mirror_percentage")]
    pub mirror_percentage: Option<Percent>,
    /// CORS policy.
    #[serde(default, alias = "cors_policy")]
    pub cors_policy: Option<Box<CorsPolicy>>,
    /// Header operations.
    #[serde(default)]
    pub headers: Option<Box<Headers>>,
}

/// `Delegate`: the VirtualService a root rule hands over to.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Delegate {
    /// Name of the delegate VirtualService.
    #[serde(default)]
    pub name: String,
    /// Its namespace (default: the root's).
    #[serde(default)]
    pub namespace: String,
}

/// `Headers`: request and response header operations.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Headers {
    /// Operations on the request sent upstream.
    #[serde(default)]
    pub request: Option<HeaderOperations>,
    /// Operations on the response sent downstream.
    #[serde(default)]
    pub response: Option<HeaderOperations>,
}

/// `Headers.HeaderOperations`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeaderOperations {
    /// Overwrite or add.
    #[serde(default)]
    pub set: Map<String, String>,
    /// Append (comma-joined with an existing value) or add.
    #[serde(default)]
    pub add: Map<String, String>,
    /// Remove by name.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `TLSRoute`: a rule for non-terminated TLS.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsRoute {
    /// Match conditions (required).
    #[serde(default, rename = "match")]
    pub matches: Vec<TlsMatchAttributes>,
    /// Destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// `TCPRoute`: a rule for opaque TCP.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TcpRoute {
    /// Match conditions; absent means all.
    #[serde(default, rename = "match")]
    pub matches: Vec<L4MatchAttributes>,
    /// Destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// `HTTPMatchRequest`: conditions AND'ed together.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatchRequest {
    /// Match name, appended to the route name.
    #[serde(default)]
    pub name: String,
    /// Path match (query string excluded).
    #[serde(default)]
    pub uri: Option<Box<StringMatch>>,
    /// `:scheme` match.
    #[serde(default)]
    pub scheme: Option<Box<StringMatch>>,
    /// `:method` match.
    #[serde(default)]
    pub method: Option<Box<StringMatch>>,
    /// `:authority` / `Host` match.
    #[serde(default)]
    pub authority: Option<Box<StringMatch>>,
    /// Header matches by (lower-case) name; `{}` means presence.
    #[serde(default)]
    pub headers: Map<String, StringMatch>,
    /// Destination port.
    #[serde(default)]
    pub port: Option<u32>,
    /// Labels the calling workload must carry (evaluated at config time).
    #[serde(default, alias = "source_labels")]
    pub source_labels: Map<String, String>,
    /// Gateways this match applies to (overrides the VirtualService's).
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Query parameter matches.
    #[serde(default, alias = "query_params")]
    pub query_params: Map<String, StringMatch>,
    /// Case-insensitive `uri` exact/prefix match.
    #[serde(default, alias = "ignore_uri_case")]
    pub ignore_uri_case: bool,
    /// Headers that must not match.
    #[serde(default, alias = "without_headers")]
    pub without_headers: Map<String, StringMatch>,
    /// Namespace the calling workload must be in (evaluated at config time).
    #[serde(default, alias = "source_namespace")]
    pub source_namespace: String,
    /// Per-route stats prefix.
    #[serde(default, alias = "stat_prefix")]
    pub stat_prefix: String,
}

/// `HTTPRouteDestination`: a weighted destination with its own header operations.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpRouteDestination {
    /// Where to send.
    #[serde(default)]
    pub destination: Option<Destination>,
    /// Relative weight.
    #[serde(default)]
    pub weight: i64,
    /// Header operations for this destination.
    #[serde(default)]
    pub headers: Option<Box<Headers>>,
}

/// `RouteDestination`: a weighted destination for TLS/TCP routes.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteDestination {
    /// Where to send.
    #[serde(default)]
    pub destination: Option<Destination>,
    /// Relative weight.
    #[serde(default)]
    pub weight: i64,
}

/// `L4MatchAttributes`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4MatchAttributes {
    /// Destination IPs/CIDRs.
    #[serde(default, alias = "destination_subnets")]
    pub destination_subnets: Vec<String>,
    /// Destination port.
    #[serde(default)]
    pub port: Option<u32>,
    /// Hidden in Istio's docs: source subnet.
    #[serde(default, alias = "source_subnet")]
    pub source_subnet: String,
    /// Labels the calling workload must carry.
    #[serde(default, alias = "source_labels")]
    pub source_labels: Map<String, String>,
    /// Gateways.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Namespace the calling workload must be in.
    #[serde(default, alias = "source_namespace")]
    pub source_namespace: String,
}

/// `TLSMatchAttributes`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatchAttributes {
    /// SNI names to match (required).
    #[serde(default, alias = "sni_hosts")]
    pub sni_hosts: Vec<String>,
    /// Destination IPs/CIDRs.
    #[serde(default, alias = "destination_subnets")]
    pub destination_subnets: Vec<String>,
    /// Destination port.
    #[serde(default)]
    pub port: Option<u32>,
    /// Labels the calling workload must carry.
    #[serde(default, alias = "source_labels")]
    pub source_labels: Map<String, String>,
    /// Gateways.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Namespace the calling workload must be in.
    #[serde(default, alias = "source_namespace")]
    pub source_namespace: String,
}

/// `HTTPRedirect`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRedirect {
    /// Replace the whole path.
    #[serde(default)]
    pub uri: Option<String>,
    /// Replace the matched prefix.
    #[serde(default, alias = "prefix_rewrite")]
    pub prefix_rewrite: Option<String>,
    /// Replace the authority.
    #[serde(default)]
    pub authority: Option<String>,
    /// Explicit port.
    #[serde(default)]
    pub port: Option<u32>,
    /// Port derived from the protocol or the request.
    #[serde(default, alias = "derive_port")]
    pub derive_port: Option<RedirectPortSelection>,
    /// Replace the scheme (`http`/`https`).
    #[serde(default)]
    pub scheme: Option<String>,
    /// Status code (default 301).
    #[serde(default, alias = "redirect_code")]
    pub redirect_code: Option<u32>,
}

/// `HTTPRedirect.RedirectPortSelection`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedirectPortSelection {
    /// 80 for http, 443 for https.
    FromProtocolDefault,
    /// The port the request arrived on.
    FromRequestPort,
}

/// `HTTPDirectResponse`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpDirectResponse {
    /// Status code (required, 200..=600).
    #[serde(default)]
    pub status: u32,
    /// Body.
    #[serde(default)]
    pub body: Option<HttpBody>,
}

/// `HTTPBody`: a string or base64 bytes.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpBody {
    /// Text body.
    #[serde(default)]
    pub string: Option<String>,
    /// Base64-encoded body.
    #[serde(default)]
    pub bytes: Option<String>,
}

/// `HTTPRewrite`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRewrite {
    /// Replacement for the matched prefix (or the whole path for exact matches).
    #[serde(default)]
    pub uri: Option<String>,
    /// Replacement authority.
    #[serde(default)]
    pub authority: Option<String>,
    /// Regex rewrite of the path.
    #[serde(default, alias = "uri_regex_rewrite")]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// `RegexRewrite`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegexRewrite {
    /// RE2 pattern.
    #[serde(default, rename = "match")]
    pub pattern: String,
    /// Replacement, with `\1`-style capture references.
    #[serde(default)]
    pub rewrite: String,
}

/// `HTTPRetry`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    /// Number of retries (not counting the first try).
    #[serde(default)]
    pub attempts: i64,
    /// Timeout of each try.
    #[serde(default, alias = "per_try_timeout")]
    pub per_try_timeout: Option<Duration>,
    /// Comma-separated retry conditions.
    #[serde(default, alias = "retry_on")]
    pub retry_on: Option<String>,
    /// Retry in other localities.
    #[serde(default, alias = "retry_remote_localities")]
    pub retry_remote_localities: Option<bool>,
    /// Skip hosts already tried (default true).
    #[serde(default, alias = "retry_ignore_previous_hosts")]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval of the jittered exponential backoff (default 25ms).
    #[serde(default)]
    pub backoff: Option<Duration>,
}

/// `CorsPolicy`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicy {
    /// Deprecated exact origins.
    #[serde(default, alias = "allow_origin")]
    pub allow_origin: Vec<String>,
    /// Origin matchers.
    #[serde(default, alias = "allow_origins")]
    pub allow_origins: Vec<StringMatch>,
    /// Allowed methods.
    #[serde(default, alias = "allow_methods")]
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    #[serde(default, alias = "allow_headers")]
    pub allow_headers: Vec<String>,
    /// Exposed response headers.
    #[serde(default, alias = "expose_headers")]
    pub expose_headers: Vec<String>,
    /// Preflight cache time (whole seconds).
    #[serde(default, alias = "max_age")]
    pub max_age: Option<Duration>,
    /// `Access-Control-Allow-Credentials`.
    #[serde(default, alias = "allow_credentials")]
    pub allow_credentials: Option<bool>,
    /// What to do with preflights that match no origin.
    #[serde(default, alias = "unmatched_preflights")]
    pub unmatched_preflights: Option<UnmatchedPreflights>,
}

/// `CorsPolicy.UnmatchedPreflights`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnmatchedPreflights {
    /// Same as `FORWARD`.
    Unspecified,
    /// Forward to the upstream.
    Forward,
    /// Answer without CORS headers.
    Ignore,
}

/// `HTTPFaultInjection`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpFaultInjection {
    /// Delay before forwarding.
    #[serde(default)]
    pub delay: Option<FaultDelay>,
    /// Local error instead of forwarding.
    #[serde(default)]
    pub abort: Option<FaultAbort>,
}

/// `HTTPFaultInjection.Delay`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    /// Deprecated integer percentage.
    #[serde(default)]
    pub percent: Option<i64>,
    /// Fixed delay.
    #[serde(default, alias = "fixed_delay")]
    pub fixed_delay: Option<Duration>,
    /// Hidden and rejected by Istio.
    #[serde(default, alias = "exponential_delay")]
    pub exponential_delay: Option<Duration>,
    /// Share of requests delayed (unset = none).
    #[serde(default)]
    pub percentage: Option<Percent>,
}

/// `HTTPFaultInjection.Abort`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    /// HTTP status to answer with.
    #[serde(default, alias = "http_status")]
    pub http_status: Option<i64>,
    /// gRPC status name to answer with.
    #[serde(default, alias = "grpc_status")]
    pub grpc_status: Option<String>,
    /// Hidden and rejected by Istio.
    #[serde(default, alias = "http2_error")]
    pub http2_error: Option<String>,
    /// Share of requests aborted (unset = none).
    #[serde(default)]
    pub percentage: Option<Percent>,
}

/// `HTTPMirrorPolicy`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// Mirror destination.
    #[serde(default)]
    pub destination: Option<Destination>,
    /// Share of traffic mirrored (default 100%).
    #[serde(default)]
    pub percentage: Option<Percent>,
}
