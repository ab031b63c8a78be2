//! `Proxy` (meshproxy.io/v1alpha1): what this proxy is — its workload identity, admin
//! address, listeners, mesh certificates and outbound policy. At most one per config; when
//! absent the defaults of [`Proxy::default_for_local`] apply (docs/contract.md §2).

use super::map::Map;
use crate::duration::Duration;
use serde::Deserialize;

/// `Proxy.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Proxy {
    /// Admin server.
    #[serde(default)]
    pub admin: Option<Admin>,
    /// The workload this proxy stands for.
    #[serde(default)]
    pub workload: Option<Workload>,
    /// Listeners; absent = one outbound HTTP listener on 127.0.0.1:15001.
    #[serde(default)]
    pub listeners: Option<Vec<Listener>>,
    /// Mesh certificates (needed for ISTIO_MUTUAL and inbound mTLS).
    #[serde(default)]
    pub identity: Option<Identity>,
    /// What to do with hosts that are not in the registry.
    #[serde(default, alias = "outbound_traffic_policy")]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// Address Gateway servers bind on (default `0.0.0.0`).
    #[serde(default, alias = "gateway_address")]
    pub gateway_address: Option<String>,
    /// SPIFFE trust domain (default `cluster.local`).
    #[serde(default, alias = "trust_domain")]
    pub trust_domain: Option<String>,
    /// Namespace whose policies are mesh-wide (default `istio-system`).
    #[serde(default, alias = "root_namespace")]
    pub root_namespace: Option<String>,
    /// Downstream limits and overload shedding (every field optional; the defaults are
    /// in `compile::proxy_settings::Limits`).
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Addresses whose requests count as internal (CIDRs or single addresses): Envoy's
    /// `internal_address_config`, Istio's internal networks. Only internal senders may
    /// steer the router with `x-envoy-*` control headers; unset, nobody is internal.
    #[serde(default, alias = "internal_networks")]
    pub internal_networks: Option<Vec<String>>,
    /// How `resolution: DNS` names are resolved (docs/config.md, "DNS endpoints").
    #[serde(default)]
    pub dns: Option<Dns>,
    /// Telemetry backends `Telemetry` documents name (Istio MeshConfig's shape).
    #[serde(default, alias = "extension_providers")]
    pub extension_providers: Option<Vec<super::extension_provider::ExtensionProvider>>,
    /// Providers used where no `Telemetry` names one (MeshConfig `defaultProviders`).
    #[serde(default, alias = "default_providers")]
    pub default_providers: Option<super::extension_provider::DefaultProviders>,
    /// Percent of requests sampled where no `Telemetry` sets `randomSamplingPercentage`
    /// (MeshConfig `defaultConfig.tracing.sampling`; Istio's default 1).
    #[serde(default, alias = "trace_sampling")]
    pub trace_sampling: Option<f64>,
    /// Time between fetches of a RequestAuthentication `jwksUri` key set (default 20m,
    /// istiod's `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`; docs/config.md).
    #[serde(default, alias = "jwks_refresh_interval")]
    pub jwks_refresh_interval: Option<crate::duration::Duration>,
    /// Where Global RateLimitPolicies keep their counts (docs/config.md, "Rate limiting").
    #[serde(default, alias = "rate_limit")]
    pub rate_limit: Option<RateLimitBackend>,
}

/// `Proxy.spec.rateLimit`: the Redis of Global RateLimitPolicies and what happens when it
/// cannot answer.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitBackend {
    /// The Redis server.
    #[serde(default)]
    pub redis: Option<Redis>,
    /// Refuse (500) instead of allowing when Redis fails: Envoy's `failure_mode_deny`
    /// (default false).
    #[serde(default, alias = "failure_mode_deny")]
    pub failure_mode_deny: Option<bool>,
}

/// `Proxy.spec.rateLimit.redis`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Redis {
    /// `host:port`.
    #[serde(default)]
    pub address: String,
    /// Longest wait for Redis's answer before the failure mode applies (default 20ms,
    /// Envoy's rate-limit service timeout).
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// `Proxy.spec.dns`: the resolver of `resolution: DNS` ServiceEntries.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dns {
    /// The DNS server asked, `ip` or `ip:port` (port 53 by default); unset: the
    /// nameservers, search domains and options of `/etc/resolv.conf`.
    #[serde(default)]
    pub resolver: Option<String>,
    /// How often a name is re-resolved when its answer carries no TTL, and the retry
    /// interval after a failed lookup: Istio's MeshConfig `dnsRefreshRate` (default 60s).
    #[serde(default, alias = "refresh_rate", alias = "dnsRefreshRate")]
    pub refresh_rate: Option<Duration>,
}

/// `Proxy.spec.limits`: what one client, connection or burst may cost the proxy.
/// Integers are read signed so that a negative value is a validation error naming the
/// field, not a parse error.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Largest request head (request line + headers) in KiB; HTTP/2: the header list size.
    #[serde(default, alias = "max_request_headers_kb")]
    pub max_request_headers_kb: Option<i64>,
    /// Most header fields in one request.
    #[serde(default, alias = "max_request_headers")]
    pub max_request_headers: Option<i64>,
    /// Time allowed to receive a complete request head (slowloris defence).
    #[serde(default, alias = "request_headers_timeout")]
    pub request_headers_timeout: Option<Duration>,
    /// A downstream connection with no request in flight for this long is closed.
    #[serde(default, alias = "idle_timeout")]
    pub idle_timeout: Option<Duration>,
    /// A request with no activity in either direction for this long is ended.
    #[serde(default, alias = "stream_idle_timeout")]
    pub stream_idle_timeout: Option<Duration>,
    /// Open downstream connections per listener; at the cap the listener stops
    /// accepting until one closes.
    #[serde(default, alias = "max_connections_per_listener")]
    pub max_connections_per_listener: Option<i64>,
    /// Open downstream connections in the whole proxy (all listeners and workers); past
    /// it new connections are closed at once. Unset: derived from the file-descriptor
    /// limit; set above what that limit allows: lowered to it.
    #[serde(default, alias = "max_downstream_connections")]
    pub max_downstream_connections: Option<i64>,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` announced to clients.
    #[serde(default, alias = "max_concurrent_streams")]
    pub max_concurrent_streams: Option<i64>,
    /// Requests in flight in the whole proxy; past it a request is answered 503 at once.
    #[serde(default, alias = "max_active_requests")]
    pub max_active_requests: Option<i64>,
}

/// `Proxy.spec.admin`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Admin {
    /// `ip:port` of the admin server (default `127.0.0.1:15000`).
    #[serde(default)]
    pub address: Option<String>,
}

/// `Proxy.spec.workload`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// Workload labels (matched by `sourceLabels`, selectors, gateway selectors).
    #[serde(default)]
    pub labels: Map<String, String>,
    /// Service account (the SPIFFE identity's `sa`).
    #[serde(default, alias = "service_account")]
    pub service_account: Option<String>,
}

/// `Proxy.spec.listeners[]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    /// Unique listener name.
    #[serde(default)]
    pub name: String,
    /// `ip:port` to bind.
    #[serde(default)]
    pub address: String,
    /// Traffic direction.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// Protocol handling (default HTTP).
    #[serde(default)]
    pub protocol: Option<ListenerProtocol>,
    /// Local application address (INBOUND only).
    #[serde(default, alias = "forward_to")]
    pub forward_to: Option<String>,
}

/// Listener direction.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    /// From the local app to the mesh: routes by Host/:authority or original destination.
    Outbound,
    /// From the mesh to the local app: mTLS termination, authorization, forwarding.
    Inbound,
}

/// Listener protocol handling.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ListenerProtocol {
    /// HTTP/1.1 and h2c, detected.
    Http,
    /// Opaque TCP.
    Tcp,
    /// Sniff TLS / HTTP / opaque.
    Auto,
}

/// `Proxy.spec.identity`: file paths, relative to the config file's directory.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    /// Certificate chain (leaf first).
    #[serde(default)]
    pub certificate: String,
    /// Private key.
    #[serde(default, alias = "private_key")]
    pub private_key: String,
    /// Mesh root CA bundle.
    #[serde(default, alias = "ca_certificates")]
    pub ca_certificates: String,
}

/// `Proxy.spec.outboundTrafficPolicy`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    /// Mode (default REGISTRY_ONLY, the SPEC's documented default; Istio's MeshConfig
    /// defaults to ALLOW_ANY).
    #[serde(default)]
    pub mode: Option<OutboundMode>,
}

/// `outboundTrafficPolicy.mode`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundMode {
    /// Only registry hosts are reachable.
    RegistryOnly,
    /// Unknown hosts are passed through.
    AllowAny,
}
