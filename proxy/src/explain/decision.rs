//! What `explain` found out about a request: the path through the listener, the virtual
//! host and the route rules, the route's action and policies, and the outcome. Serialized
//! as is by `--json`.

use meshproxy_config::compile::match_explain::FieldCheck;
use serde::Serialize;
use std::collections::BTreeMap;

/// The whole decision for one request.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    /// The request as routing sees it.
    pub request: RequestInfo,
    /// The listener it arrived on.
    pub listener: ListenerInfo,
    /// The workload whose proxy decides (its labels: the Proxy's, or `--source-labels`).
    pub workload: WorkloadInfo,
    /// The Gateway `httpsRedirect` that answered before any route, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<String>,
    /// On an INBOUND listener: what AuthorizationPolicy decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// The virtual host chosen for the authority's host.
    pub virtual_host: Option<VirtualHostInfo>,
    /// Route rules tried, in order, up to the first that matched.
    pub rules: Vec<RuleTrial>,
    /// The chosen route.
    pub route: Option<RouteInfo>,
    /// What happens to the request.
    pub outcome: Outcome,
}

/// The workload the config was compiled for: VirtualService `sourceLabels` and workload
/// selectors were decided against its labels.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkloadInfo {
    /// The Proxy document's name.
    pub proxy: String,
    /// Its namespace.
    pub namespace: String,
    /// Its workload labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The request's routing inputs.
#[derive(Clone, Debug, Serialize)]
pub struct RequestInfo {
    /// Method.
    pub method: String,
    /// `http` / `https`.
    pub scheme: String,
    /// Authority as sent.
    pub authority: String,
    /// Its host, normalized (lower case, no port).
    pub host: String,
    /// The port routing uses (the authority's, else the listener's or the scheme's).
    pub port: u16,
    /// Path and query.
    pub path: String,
    /// The sender's address.
    pub source: String,
    /// Whether the sender counts as internal (`spec.internalNetworks`): only then are its
    /// `x-envoy-*` control headers honoured; they are removed from every request.
    pub internal: bool,
}

/// The listener.
#[derive(Clone, Debug, Serialize)]
pub struct ListenerInfo {
    /// Name.
    pub name: String,
    /// `outbound`, `gateway` or `inbound`.
    pub role: &'static str,
    /// Bind address.
    pub address: String,
    /// Its route table (`mesh`, `gateway:<port>`), if it has one.
    pub route_table: Option<String>,
}

/// The virtual host.
#[derive(Clone, Debug, Serialize)]
pub struct VirtualHostInfo {
    /// Name (the service host or the VirtualService's).
    pub name: String,
    /// The domains that reach it.
    pub domains: Vec<String>,
}

/// One route rule tried.
#[derive(Clone, Debug, Serialize)]
pub struct RuleTrial {
    /// Position in the virtual host.
    pub index: usize,
    /// Rule name (may be empty).
    pub name: String,
    /// Where it comes from (`VirtualService/ns/name#http[i]`, a default route...).
    pub origin: String,
    /// Whether it matched.
    pub matched: bool,
    /// Its match blocks (OR'ed); empty when the rule matches every request.
    pub matches: Vec<MatchTrial>,
}

/// One `HTTPMatchRequest` of a rule.
#[derive(Clone, Debug, Serialize)]
pub struct MatchTrial {
    /// Position in the rule's `match` list (after config-time filters).
    pub index: usize,
    /// Match name (may be empty).
    pub name: String,
    /// Whether every condition held.
    pub matched: bool,
    /// Each condition with its verdict.
    pub conditions: Vec<FieldCheck>,
}

/// The chosen route and its policies.
#[derive(Clone, Debug, Serialize)]
pub struct RouteInfo {
    /// Rule name.
    pub name: String,
    /// Origin.
    pub origin: String,
    /// The VirtualService (`namespace/name`) it comes from, if any.
    pub virtual_service: Option<String>,
    /// Its index in that VirtualService's `http` list.
    pub rule_index: Option<usize>,
    /// What it does.
    pub action: Action,
    /// Route timeout (`none`: no timeout, Istio's default).
    pub timeout: String,
    /// Retries.
    pub retries: String,
    /// Fault injection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// Mirrors.
    pub mirrors: Vec<String>,
    /// Path rewrite as configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
    /// Route-level header operations (`request set x: y` ...).
    pub header_ops: Vec<String>,
    /// CORS policy present (preflights are answered by the proxy).
    pub cors: bool,
}

/// A route's action.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Forward to weighted destinations.
    Forward {
        /// Destinations in order.
        destinations: Vec<Destination>,
    },
    /// Redirect.
    Redirect {
        /// Status code.
        status: u16,
        /// The `Location` computed for this request.
        location: String,
    },
    /// Direct response.
    DirectResponse {
        /// Status.
        status: u16,
        /// Body text (lossy).
        body: String,
    },
}

/// One weighted destination.
#[derive(Clone, Debug, Serialize)]
pub struct Destination {
    /// Configured (relative) weight.
    pub weight: u32,
    /// Share of requests in percent.
    pub percent: f64,
    /// Qualified host.
    pub host: String,
    /// Subset, empty when none.
    pub subset: String,
    /// Service port of the cluster.
    pub port: Option<u16>,
    /// Cluster name (`outbound|port|subset|host`); `None` when it resolves to none (503 NC).
    pub cluster: Option<String>,
    /// Why there is no cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    /// The cluster's effective DestinationRule policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<ClusterPolicy>,
    /// Header operations of this destination.
    pub header_ops: Vec<String>,
    /// The request as it would go upstream to this destination.
    pub upstream: Upstream,
    /// Response headers the route and destination set or add (as on an empty response);
    /// a removed header maps to `None`.
    pub response_headers: BTreeMap<String, Option<String>>,
}

/// The upstream request head.
#[derive(Clone, Debug, Serialize)]
pub struct Upstream {
    /// Path and query after rewrites.
    pub path: String,
    /// Authority after rewrites.
    pub authority: String,
    /// Headers after forwarding headers and header operations (several values joined
    /// with `,`).
    pub headers: BTreeMap<String, String>,
}

/// A cluster's effective policy, Istio's defaults applied.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterPolicy {
    /// Load balancer.
    pub load_balancer: String,
    /// Connection pool.
    pub connection_pool: String,
    /// Outlier detection (`off` when unset).
    pub outlier_detection: String,
    /// Client TLS mode (`DISABLE` when unset; auto mTLS decides per endpoint).
    pub tls: String,
    /// Where each of the four blocks came from: `subset port level`, `subset`,
    /// `port level`, `top level` (of the DestinationRule) or `default`.
    pub from: PolicyFrom,
}

/// The origin of each block of a cluster's policy (Istio replaces whole blocks).
#[derive(Clone, Debug, Serialize)]
pub struct PolicyFrom {
    /// Of `loadBalancer`.
    pub load_balancer: &'static str,
    /// Of `connectionPool`.
    pub connection_pool: &'static str,
    /// Of `outlierDetection`.
    pub outlier_detection: &'static str,
    /// Of `tls`.
    pub tls: &'static str,
}

/// The final outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// `forward` or `local_reply`.
    pub kind: &'static str,
    /// Status of a local reply.
    pub status: Option<u16>,
    /// Envoy response flag of a local reply (`NR`, `NC`, `FI`), if any.
    pub flag: Option<&'static str>,
    /// Clusters the request may go to (several for a weighted route), or the cluster a
    /// local reply is reported against (`BlackHoleCluster`).
    pub clusters: Vec<String>,
    /// `Location` of a redirect.
    pub location: Option<String>,
    /// One line saying what happens.
    pub summary: String,
}

/// AuthorizationPolicy's decision for a request on an INBOUND listener.
#[derive(Clone, Debug, Serialize)]
pub struct Authorization {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The DENY policy that matched (`namespace/name`), or why no ALLOW policy allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The AUDIT policy that matched, if any (it never changes the decision).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<String>,
    /// The peer identity the request was evaluated with (none: plaintext).
    pub principal: Option<String>,
    /// The peer address.
    pub source: String,
    /// No policy applies to this workload: every request is allowed.
    pub no_policies: bool,
}
