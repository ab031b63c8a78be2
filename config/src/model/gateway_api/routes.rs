//! The Gateway API route kinds: `HTTPRoute`, `GRPCRoute`, `TLSRoute`, `TCPRoute`
//! (`apis/v1/httproute_types.go`, `grpcroute_types.go`, `tlsroute_types.go`,
//! `tcproute_types.go` of kubernetes-sigs/gateway-api).

use super::ObjectRef;
use serde::Deserialize;

/// `ParentReference`: a Gateway (listener) or, for mesh routing (GAMMA), a Service.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParentRef {
    /// API group; absent = gateway.networking.k8s.io, "" with kind Service for GAMMA.
    #[serde(default)]
    pub group: Option<String>,
    /// `Gateway` (default) or `Service`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Namespace; absent = the route's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name of the parent.
    #[serde(default)]
    pub name: String,
    /// A listener name (Gateway) or port name (Service).
    #[serde(default)]
    pub section_name: Option<String>,
    /// A listener port (Gateway) or service port (Service).
    #[serde(default)]
    pub port: Option<u32>,
}

/// A weighted `backendRef` (with the filters of an HTTP or gRPC backend).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendRef {
    /// API group; absent = "" (core).
    #[serde(default)]
    pub group: Option<String>,
    /// Kind; absent = Service.
    #[serde(default)]
    pub kind: Option<String>,
    /// Service name.
    #[serde(default)]
    pub name: String,
    /// Namespace; absent = the route's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Service port (required for a Service).
    #[serde(default)]
    pub port: Option<u32>,
    /// Relative weight, default 1; 0 sends no traffic.
    #[serde(default)]
    pub weight: Option<i64>,
    /// Filters applied only to requests sent to this backend.
    #[serde(default)]
    pub filters: Vec<HttpFilter>,
}

impl BackendRef {
    /// The backend as an object reference.
    pub fn object(&self) -> ObjectRef {
        ObjectRef {
            group: self.group.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            port: self.port,
        }
    }
}

/// `HTTPRoute.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Where the route attaches.
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// Host header values; empty = every host the listener accepts.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Rules; none = one rule forwarding nothing (500).
    #[serde(default)]
    pub rules: Vec<HttpRule>,
}

/// `HTTPRouteRule`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRule {
    /// Rule name (for status and logs).
    #[serde(default)]
    pub name: Option<String>,
    /// OR-ed matches; none = `PathPrefix /`.
    #[serde(default)]
    pub matches: Vec<HttpMatch>,
    /// Filters, in order.
    #[serde(default)]
    pub filters: Vec<HttpFilter>,
    /// Weighted backends.
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
    /// Request and per-backend timeouts.
    #[serde(default)]
    pub timeouts: Option<HttpTimeouts>,
    /// Retry (experimental): accepted, warned as not enforced.
    #[serde(default)]
    pub retry: Option<serde_yaml::Value>,
    /// Session persistence (experimental): accepted, warned as not enforced.
    #[serde(default)]
    pub session_persistence: Option<serde_yaml::Value>,
}

/// `HTTPRouteMatch`: every field set must match.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatch {
    /// Path match; absent = `PathPrefix /`.
    #[serde(default)]
    pub path: Option<PathMatch>,
    /// Header matches.
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
    /// Query parameter matches.
    #[serde(default)]
    pub query_params: Vec<ValueMatch>,
    /// HTTP method.
    #[serde(default)]
    pub method: Option<String>,
}

/// `HTTPPathMatch`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMatch {
    /// Default `PathPrefix`.
    #[serde(default, rename = "type")]
    pub kind: Option<PathMatchType>,
    /// Default `/`.
    #[serde(default)]
    pub value: Option<String>,
}

/// `PathMatchType`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum PathMatchType {
    /// The whole path, case-sensitive.
    Exact,
    /// Path elements (split on `/`) prefix.
    #[default]
    PathPrefix,
    /// A regular expression (RE2, whole path).
    RegularExpression,
}

/// A header or query parameter match (`HTTPHeaderMatch`, `HTTPQueryParamMatch`,
/// `GRPCHeaderMatch`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(default, rename = "type")]
    pub kind: Option<ValueMatchType>,
    /// Header (case-insensitive) or parameter (case-sensitive) name.
    #[serde(default)]
    pub name: String,
    /// The value.
    #[serde(default)]
    pub value: String,
}

/// `HeaderMatchType` / `QueryParamMatchType`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum ValueMatchType {
    /// Equal.
    #[default]
    Exact,
    /// A regular expression (RE2, whole value).
    RegularExpression,
}

/// `HTTPRouteTimeouts` (durations in the API's `1h2m3s4ms` form).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTimeouts {
    /// The whole request; `0s` disables.
    #[serde(default)]
    pub request: Option<String>,
    /// One attempt to the backend.
    #[serde(default)]
    pub backend_request: Option<String>,
}

/// `HTTPRouteFilter` (also a `GRPCRouteFilter`: the same shape with fewer types).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFilter {
    /// `RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestRedirect`, `URLRewrite`,
    /// `RequestMirror`, `CORS`, `ExtensionRef`, `ExternalAuth`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// For `RequestHeaderModifier`.
    #[serde(default)]
    pub request_header_modifier: Option<HeaderModifier>,
    /// For `ResponseHeaderModifier`.
    #[serde(default)]
    pub response_header_modifier: Option<HeaderModifier>,
    /// For `RequestRedirect`.
    #[serde(default)]
    pub request_redirect: Option<RequestRedirect>,
    /// For `URLRewrite`.
    #[serde(default, rename = "urlRewrite")]
    pub url_rewrite: Option<UrlRewrite>,
    /// For `RequestMirror`.
    #[serde(default)]
    pub request_mirror: Option<RequestMirror>,
    /// For `CORS`.
    #[serde(default)]
    pub cors: Option<CorsFilter>,
    /// For `ExtensionRef`: never resolvable here, so the rule answers 500.
    #[serde(default)]
    pub extension_ref: Option<serde_yaml::Value>,
    /// For `ExternalAuth`: not supported, so the rule answers 500 (fail closed).
    #[serde(default)]
    pub external_auth: Option<serde_yaml::Value>,
}

/// `HTTPCORSFilter` (Standard since v1.5).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsFilter {
    /// Origins: `*`, or `scheme://host[:port]` whose host may start with a `*` label.
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// `Access-Control-Allow-Credentials: true`.
    #[serde(default)]
    pub allow_credentials: Option<bool>,
    /// Methods (`*`: any).
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Request headers (`*`: any).
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers the client may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Seconds a preflight may be cached, default 5.
    #[serde(default)]
    pub max_age: Option<u32>,
}

/// `HTTPHeaderFilter`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderModifier {
    /// Overwrite.
    #[serde(default)]
    pub set: Vec<Header>,
    /// Append.
    #[serde(default)]
    pub add: Vec<Header>,
    /// Remove by name.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `HTTPHeader`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Header {
    /// Name (case-insensitive).
    #[serde(default)]
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// `HTTPRequestRedirectFilter`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestRedirect {
    /// `http` or `https`; absent = the request's.
    #[serde(default)]
    pub scheme: Option<String>,
    /// New host; absent = the request's.
    #[serde(default)]
    pub hostname: Option<String>,
    /// New path.
    #[serde(default)]
    pub path: Option<PathModifier>,
    /// New port.
    #[serde(default)]
    pub port: Option<u32>,
    /// 301, 302 (default), 303, 307 or 308.
    #[serde(default)]
    pub status_code: Option<u32>,
}

/// `HTTPURLRewriteFilter`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UrlRewrite {
    /// New Host header.
    #[serde(default)]
    pub hostname: Option<String>,
    /// New path.
    #[serde(default)]
    pub path: Option<PathModifier>,
}

/// `HTTPPathModifier`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// For `ReplaceFullPath`.
    #[serde(default)]
    pub replace_full_path: Option<String>,
    /// For `ReplacePrefixMatch`.
    #[serde(default)]
    pub replace_prefix_match: Option<String>,
}

/// `HTTPRequestMirrorFilter`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestMirror {
    /// The mirror's backend.
    #[serde(default)]
    pub backend_ref: ObjectRef,
    /// Share of requests mirrored, 0–100.
    #[serde(default)]
    pub percent: Option<u32>,
    /// Share as a fraction (denominator default 100).
    #[serde(default)]
    pub fraction: Option<Fraction>,
}

/// `Fraction`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fraction {
    /// Numerator.
    #[serde(default)]
    pub numerator: u32,
    /// Denominator, default 100.
    #[serde(default)]
    pub denominator: Option<u32>,
}

/// `GRPCRoute.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRoute {
    /// Where the route attaches.
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// Host header values.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<GrpcRule>,
}

/// `GRPCRouteRule`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRule {
    /// Rule name.
    #[serde(default)]
    pub name: Option<String>,
    /// OR-ed matches; none = every request.
    #[serde(default)]
    pub matches: Vec<GrpcMatch>,
    /// Filters (header modifiers and mirrors).
    #[serde(default)]
    pub filters: Vec<HttpFilter>,
    /// Weighted backends.
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
    /// Session persistence: accepted, not enforced.
    #[serde(default)]
    pub session_persistence: Option<serde_yaml::Value>,
}

/// `GRPCRouteMatch`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcMatch {
    /// Service and method.
    #[serde(default)]
    pub method: Option<GrpcMethodMatch>,
    /// Header matches.
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
}

/// `GRPCMethodMatch`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcMethodMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(default, rename = "type")]
    pub kind: Option<ValueMatchType>,
    /// Fully qualified service name (`pkg.Service`).
    #[serde(default)]
    pub service: Option<String>,
    /// Method name.
    #[serde(default)]
    pub method: Option<String>,
}

/// `TLSRoute.spec` and `TCPRoute.spec` (TCPRoute has no hostnames).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsRoute {
    /// Where the route attaches.
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// SNI names.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<L4Rule>,
}

/// `TCPRoute.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    /// Where the route attaches.
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<L4Rule>,
}

/// `TLSRouteRule` / `TCPRouteRule`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4Rule {
    /// Rule name.
    #[serde(default)]
    pub name: Option<String>,
    /// Weighted backends.
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
}
