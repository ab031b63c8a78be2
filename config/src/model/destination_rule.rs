//! `DestinationRule` (networking.istio.io): policies applied after routing — load balancing,
//! connection pools, outlier detection, client TLS — and the subsets routes refer to.
//! Field names, types and defaults follow Istio's `destination_rule.proto`.

use super::common::{PortSelector, WorkloadSelector};
use super::map::Map;
use crate::duration::Duration;
use serde::Deserialize;

/// `DestinationRule.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRule {
    /// The registry host this rule applies to (wildcards allowed).
    #[serde(default)]
    pub host: String,
    /// Policy for all ports and subsets.
    #[serde(default, alias = "traffic_policy")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named subsets of the service's endpoints.
    #[serde(default)]
    pub subsets: Vec<Subset>,
    /// Namespaces this rule is visible to.
    #[serde(default, alias = "export_to")]
    pub export_to: Vec<String>,
    /// Client workloads this rule applies to.
    #[serde(default, alias = "workload_selector")]
    pub workload_selector: Option<WorkloadSelector>,
}

/// `TrafficPolicy`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    /// Load balancing.
    #[serde(default, alias = "load_balancer")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection pool limits (circuit breakers).
    #[serde(default, alias = "connection_pool")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Passive health checking.
    #[serde(default, alias = "outlier_detection")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS origination.
    #[serde(default)]
    pub tls: Option<ClientTlsSettings>,
    /// Per-port overrides (replace, not merge).
    #[serde(default, alias = "port_level_settings")]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Tunnel TCP over HTTP CONNECT/POST.
    #[serde(default)]
    pub tunnel: Option<TunnelSettings>,
    /// Send a PROXY protocol header upstream.
    #[serde(default, alias = "proxy_protocol")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Retry budget (replaces `maxRetries`).
    #[serde(default, alias = "retry_budget")]
    pub retry_budget: Option<RetryBudget>,
}

/// `TrafficPolicy.PortTrafficPolicy`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortTrafficPolicy {
    /// The service port (required).
    #[serde(default)]
    pub port: Option<PortSelector>,
    /// Load balancing.
    #[serde(default, alias = "load_balancer")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection pool limits.
    #[serde(default, alias = "connection_pool")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Outlier detection.
    #[serde(default, alias = "outlier_detection")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS origination.
    #[serde(default)]
    pub tls: Option<ClientTlsSettings>,
}

/// `TrafficPolicy.TunnelSettings`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TunnelSettings {
    /// `CONNECT` (default) or `POST`.
    #[serde(default)]
    pub protocol: String,
    /// Host to tunnel to (required).
    #[serde(default, alias = "target_host")]
    pub target_host: String,
    /// Port to tunnel to (required).
    #[serde(default, alias = "target_port")]
    pub target_port: u32,
}

/// `TrafficPolicy.ProxyProtocol`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocol {
    /// PROXY protocol version (default V1).
    #[serde(default)]
    pub version: Option<ProxyProtocolVersion>,
}

/// `TrafficPolicy.ProxyProtocol.VERSION`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum ProxyProtocolVersion {
    /// Text header.
    V1,
    /// Binary header.
    V2,
}

/// `TrafficPolicy.RetryBudget`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    /// Percent of active requests that may be retries (default 20).
    #[serde(default)]
    pub percent: Option<f64>,
    /// Minimum concurrent retries allowed (default 3).
    #[serde(default, alias = "min_retry_concurrency")]
    pub min_retry_concurrency: Option<u32>,
    /// Window over which requests are counted (default 0: only active/pending).
    #[serde(default, alias = "budget_interval")]
    pub budget_interval: Option<Duration>,
}

/// `Subset`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    /// Subset name (DNS-1123 label).
    #[serde(default)]
    pub name: String,
    /// Endpoint labels the subset selects.
    #[serde(default)]
    pub labels: Map<String, String>,
    /// Subset policy; each block replaces the DR's block wholesale.
    #[serde(default, alias = "traffic_policy")]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// `LoadBalancerSettings`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSettings {
    /// A simple algorithm.
    #[serde(default)]
    pub simple: Option<SimpleLb>,
    /// Consistent hashing.
    #[serde(default, alias = "consistent_hash")]
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Weighted by backend-reported utilization (ORCA).
    #[serde(default, alias = "backend_utilization")]
    pub backend_utilization: Option<BackendUtilizationLb>,
    /// Locality-aware load balancing.
    #[serde(default, alias = "locality_lb_setting")]
    pub locality_lb_setting: Option<LocalityLoadBalancerSetting>,
    /// Zone-aware load balancing.
    #[serde(default, alias = "zone_aware_lb_setting")]
    pub zone_aware_lb_setting: Option<ZoneAwareLoadBalancerSetting>,
    /// Deprecated slow-start window.
    #[serde(default, alias = "warmup_duration_secs")]
    pub warmup_duration_secs: Option<Duration>,
    /// Slow start.
    #[serde(default)]
    pub warmup: Option<WarmupConfiguration>,
}

/// `LoadBalancerSettings.SimpleLB`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    /// Istio's default: `LEAST_REQUEST`.
    Unspecified,
    /// Deprecated alias of `LEAST_REQUEST`.
    LeastConn,
    /// Random.
    Random,
    /// Forward to the original destination.
    Passthrough,
    /// Round robin.
    RoundRobin,
    /// Least request (power of two choices).
    LeastRequest,
}

/// `LoadBalancerSettings.ConsistentHashLB`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHashLb {
    /// Hash on this request header.
    #[serde(default, alias = "http_header_name")]
    pub http_header_name: Option<String>,
    /// Hash on this cookie (generated when absent and `ttl` is set).
    #[serde(default, alias = "http_cookie")]
    pub http_cookie: Option<HttpCookie>,
    /// Hash on the source IP.
    #[serde(default, alias = "use_source_ip")]
    pub use_source_ip: Option<bool>,
    /// Hash on this query parameter.
    #[serde(default, alias = "http_query_parameter_name")]
    pub http_query_parameter_name: Option<String>,
    /// Ring hash (the default algorithm).
    #[serde(default, alias = "ring_hash")]
    pub ring_hash: Option<RingHash>,
    /// Maglev.
    #[serde(default)]
    pub maglev: Option<MagLev>,
    /// Deprecated ring size.
    #[serde(default, alias = "minimum_ring_size")]
    pub minimum_ring_size: Option<u64>,
}

/// `ConsistentHashLB.RingHash`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    /// Minimum ring size (default 1024).
    #[serde(default, alias = "minimum_ring_size")]
    pub minimum_ring_size: Option<u64>,
}

/// `ConsistentHashLB.MagLev`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MagLev {
    /// Lookup table size, a prime (default 65537).
    #[serde(default, alias = "table_size")]
    pub table_size: Option<u64>,
}

/// `ConsistentHashLB.HTTPCookie`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpCookie {
    /// Cookie name (required).
    #[serde(default)]
    pub name: String,
    /// Cookie path.
    #[serde(default)]
    pub path: String,
    /// Lifetime of a generated cookie; `0s` is a session cookie.
    #[serde(default)]
    pub ttl: Option<Duration>,
    /// Extra cookie attributes.
    #[serde(default)]
    pub attributes: Vec<CookieAttribute>,
}

/// `HTTPCookie.Attribute`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CookieAttribute {
    /// Attribute name (required).
    #[serde(default)]
    pub name: String,
    /// Attribute value.
    #[serde(default)]
    pub value: String,
}

/// `LoadBalancerSettings.BackendUtilizationLB`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendUtilizationLb {
    /// Default 10s.
    #[serde(default, alias = "weight_stabilization_period")]
    pub weight_stabilization_period: Option<Duration>,
    /// Default 3m.
    #[serde(default, alias = "weight_expiration_period")]
    pub weight_expiration_period: Option<Duration>,
    /// Default 1s, minimum 100ms.
    #[serde(default, alias = "weight_update_period")]
    pub weight_update_period: Option<Duration>,
    /// Default 0.
    #[serde(default, alias = "error_utilization_penalty_percent")]
    pub error_utilization_penalty_percent: Option<u32>,
    /// ORCA metric names.
    #[serde(default, alias = "metric_names_for_computing_utilization")]
    pub metric_names_for_computing_utilization: Vec<String>,
}

/// `WarmupConfiguration`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarmupConfiguration {
    /// Slow-start window (required).
    #[serde(default)]
    pub duration: Option<Duration>,
    /// Starting share of traffic (default 10).
    #[serde(default, alias = "minimum_percent")]
    pub minimum_percent: Option<f64>,
    /// Ramp curve (default 1.0).
    #[serde(default)]
    pub aggression: Option<f64>,
}

/// `LocalityLoadBalancerSetting`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityLoadBalancerSetting {
    /// Explicit locality weights.
    #[serde(default)]
    pub distribute: Vec<LocalityDistribute>,
    /// Region failover order.
    #[serde(default)]
    pub failover: Vec<LocalityFailover>,
    /// Label-based failover priority.
    #[serde(default, alias = "failover_priority")]
    pub failover_priority: Vec<String>,
    /// Enable/disable.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `LocalityLoadBalancerSetting.Distribute`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalityDistribute {
    /// Origin locality.
    #[serde(default)]
    pub from: String,
    /// Destination locality → weight.
    #[serde(default)]
    pub to: Map<String, u32>,
}

/// `LocalityLoadBalancerSetting.Failover` (also used by zone-aware settings).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalityFailover {
    /// Origin region.
    #[serde(default)]
    pub from: String,
    /// Failover region.
    #[serde(default)]
    pub to: String,
}

/// `ZoneAwareLoadBalancerSetting`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneAwareLoadBalancerSetting {
    /// Enable/disable.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Failover order.
    #[serde(default)]
    pub failover: Vec<LocalityFailover>,
    /// Label-based failover priority.
    #[serde(default, alias = "failover_priority")]
    pub failover_priority: Vec<String>,
    /// Minimum cluster size (default 6).
    #[serde(default, alias = "min_cluster_size")]
    pub min_cluster_size: Option<u32>,
}

/// `ConnectionPoolSettings`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    /// TCP-level limits.
    #[serde(default)]
    pub tcp: Option<TcpSettings>,
    /// HTTP-level limits.
    #[serde(default)]
    pub http: Option<HttpSettings>,
}

/// `ConnectionPoolSettings.TCPSettings`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSettings {
    /// Maximum connections to the cluster (default 2^32-1).
    #[serde(default, alias = "max_connections")]
    pub max_connections: Option<i64>,
    /// Connect timeout (default 10s).
    #[serde(default, alias = "connect_timeout")]
    pub connect_timeout: Option<Duration>,
    /// SO_KEEPALIVE settings.
    #[serde(default, alias = "tcp_keepalive")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Maximum connection lifetime.
    #[serde(default, alias = "max_connection_duration")]
    pub max_connection_duration: Option<Duration>,
    /// Idle timeout (default 1h, `0s` disables).
    #[serde(default, alias = "idle_timeout")]
    pub idle_timeout: Option<Duration>,
}

/// `TCPSettings.TcpKeepalive`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TcpKeepalive {
    /// Unanswered probes before the connection is dead.
    #[serde(default)]
    pub probes: Option<u32>,
    /// Idle time before probes start.
    #[serde(default)]
    pub time: Option<Duration>,
    /// Interval between probes.
    #[serde(default)]
    pub interval: Option<Duration>,
}

/// `ConnectionPoolSettings.HTTPSettings`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSettings {
    /// Maximum queued requests (default 2^32-1).
    #[serde(default, alias = "http1_max_pending_requests")]
    pub http1_max_pending_requests: Option<i64>,
    /// Maximum active requests (default 2^32-1).
    #[serde(default, alias = "http2_max_requests")]
    pub http2_max_requests: Option<i64>,
    /// Requests per connection (0 = unlimited).
    #[serde(default, alias = "max_requests_per_connection")]
    pub max_requests_per_connection: Option<i64>,
    /// Concurrent retries (default 2^32-1).
    #[serde(default, alias = "max_retries")]
    pub max_retries: Option<i64>,
    /// Idle timeout of upstream connections (default 1h).
    #[serde(default, alias = "idle_timeout")]
    pub idle_timeout: Option<Duration>,
    /// Upgrade HTTP/1.1 upstream connections to HTTP/2.
    #[serde(default, alias = "h2_upgrade_policy")]
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// Keep the client's protocol upstream.
    #[serde(default, alias = "use_client_protocol")]
    pub use_client_protocol: bool,
    /// HTTP/2 max concurrent streams per connection (default 2^31-1).
    #[serde(default, alias = "max_concurrent_streams")]
    pub max_concurrent_streams: Option<i64>,
    /// HTTP/2 PING keepalive.
    #[serde(default, alias = "http2_keep_alive")]
    pub http2_keep_alive: Option<ConnectionKeepalive>,
}

/// `HTTPSettings.H2UpgradePolicy`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum H2UpgradePolicy {
    /// The mesh default (no upgrade).
    Default,
    /// Never upgrade.
    DoNotUpgrade,
    /// Upgrade to HTTP/2.
    Upgrade,
}

/// `HTTPSettings.ConnectionKeepalive`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectionKeepalive {
    /// PING interval.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// PING answer timeout.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// `OutlierDetection`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Deprecated: maps to consecutive gateway errors (Istio's translation).
    #[serde(default, alias = "consecutive_errors")]
    pub consecutive_errors: Option<i64>,
    /// Count local-origin failures separately.
    #[serde(default, alias = "split_external_local_origin_errors")]
    pub split_external_local_origin_errors: bool,
    /// Local-origin failures before ejection (default 5, with the split only).
    #[serde(default, alias = "consecutive_local_origin_failures")]
    pub consecutive_local_origin_failures: Option<u32>,
    /// 502/503/504 before ejection (unset/0 = disabled).
    #[serde(default, alias = "consecutive_gateway_errors")]
    pub consecutive_gateway_errors: Option<u32>,
    /// 5xx before ejection (default 5, 0 disables).
    #[serde(
        default,
        rename = "consecutive5xxErrors",
        alias = "consecutive_5xx_errors"
    )]
    pub consecutive_5xx_errors: Option<u32>,
    /// Sweep interval (default 10s).
    #[serde(default)]
    pub interval: Option<Duration>,
    /// Base ejection time (default 30s).
    #[serde(default, alias = "base_ejection_time")]
    pub base_ejection_time: Option<Duration>,
    /// Maximum share of endpoints ejected (default 10).
    #[serde(default, alias = "max_ejection_percent")]
    pub max_ejection_percent: Option<i64>,
    /// Panic threshold (default 0 = off).
    #[serde(default, alias = "min_health_percent")]
    pub min_health_percent: Option<i64>,
    /// HTTP codes counted as errors (default all 5xx).
    #[serde(default, alias = "outlier_detection_http_error_codes")]
    pub outlier_detection_http_error_codes: Vec<u32>,
    /// Failure-percentage ejection threshold (default 85).
    #[serde(default, alias = "failure_percentage_threshold")]
    pub failure_percentage_threshold: Option<u32>,
}

/// `ClientTLSSettings`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// TLS mode.
    #[serde(default)]
    pub mode: Option<ClientTlsMode>,
    /// Client certificate file (MUTUAL).
    #[serde(default, alias = "client_certificate")]
    pub client_certificate: String,
    /// Client key file (MUTUAL).
    #[serde(default, alias = "private_key")]
    pub private_key: String,
    /// CA bundle file to verify the server.
    #[serde(default, alias = "ca_certificates")]
    pub ca_certificates: String,
    /// Kubernetes secret name (not available in file mode).
    #[serde(default, alias = "credential_name")]
    pub credential_name: String,
    /// Kubernetes secret name of the CA.
    #[serde(default, alias = "ca_cert_credential_name")]
    pub ca_cert_credential_name: String,
    /// SANs the server certificate must carry.
    #[serde(default, alias = "subject_alt_names")]
    pub subject_alt_names: Vec<String>,
    /// SNI to send.
    #[serde(default)]
    pub sni: String,
    /// Skip server verification.
    #[serde(default, alias = "insecure_skip_verify")]
    pub insecure_skip_verify: Option<bool>,
    /// CRL file.
    #[serde(default, alias = "ca_crl")]
    pub ca_crl: String,
}

/// `ClientTLSSettings.TLSmode`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientTlsMode {
    /// Plaintext.
    Disable,
    /// TLS, server authenticated.
    Simple,
    /// TLS with a client certificate from files.
    Mutual,
    /// TLS with the mesh identity.
    IstioMutual,
}
