//! Upstream clusters: one per (service, port, subset), with the effective DestinationRule
//! policy computed by Istio's precedence rules and every default made explicit.

use crate::model::destination_rule as dr;
use crate::model::destination_rule::TrafficPolicy;
use http::header::HeaderName;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A cluster's identity; live state (pools, ejections) is keyed by it across reloads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterKey {
    /// Qualified service host.
    pub service: Arc<str>,
    /// Service port.
    pub port: u16,
    /// Subset name, `None` for the whole service.
    pub subset: Option<Arc<str>>,
}

impl ClusterKey {
    /// Envoy/Istio cluster name: `outbound|<port>|<subset>|<host>`.
    pub fn name(&self) -> String {
        format!(
            "outbound|{}|{}|{}",
            self.port,
            self.subset.as_deref().unwrap_or(""),
            self.service
        )
    }
}

/// Application protocol of a service port (Istio protocol names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 (or h2c when the client used it and useClientProtocol is on).
    Http,
    /// HTTP/2 (prior knowledge).
    Http2,
    /// gRPC (HTTP/2).
    Grpc,
    /// gRPC-Web (HTTP/1.1).
    GrpcWeb,
    /// TLS carrying HTTP.
    Https,
    /// Opaque TLS.
    Tls,
    /// Opaque TCP (and unknown protocols).
    Tcp,
}

impl Protocol {
    /// Istio `protocol.Parse`, with the port name's prefix (`http-web`) used when the
    /// protocol is not written, as Istio's protocol selection does.
    pub fn from_port(protocol: &str, name: &str) -> Protocol {
        let p = if protocol.is_empty() {
            name.split('-').next().unwrap_or("")
        } else {
            protocol
        };
        match p.to_ascii_uppercase().as_str() {
            "HTTP" => Protocol::Http,
            "HTTP2" => Protocol::Http2,
            "GRPC" => Protocol::Grpc,
            "GRPC-WEB" => Protocol::GrpcWeb,
            "HTTPS" => Protocol::Https,
            "TLS" => Protocol::Tls,
            _ => Protocol::Tcp,
        }
    }

    /// True for protocols the HTTP router handles.
    pub fn is_http(&self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
        )
    }

    /// True when the upstream speaks HTTP/2 by this protocol alone.
    pub fn is_h2(&self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
}

/// Where an endpoint is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EndpointAddress {
    /// An IP and port.
    Socket(SocketAddr),
    /// A name of a `resolution: DNS` ServiceEntry (Envoy's STRICT_DNS, as Istio
    /// configures it): every address it resolves to is an endpoint of the cluster, kept
    /// up to date off the request path by the cluster's live state.
    Dns(String, u16),
    /// A name of a `resolution: DNS_ROUND_ROBIN` ServiceEntry (Envoy's LOGICAL_DNS): one
    /// endpoint, its name resolved when a new connection is opened.
    LogicalDns(String, u16),
    /// A unix domain socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointAddress::Socket(s) => write!(f, "{s}"),
            EndpointAddress::Dns(h, p) | EndpointAddress::LogicalDns(h, p) => {
                write!(f, "{h}:{p}")
            }
            EndpointAddress::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// One endpoint of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Address.
    pub address: EndpointAddress,
    /// Labels (what subsets select; `security.istio.io/tlsMode` drives auto-mTLS), shared
    /// by every endpoint with the same set.
    pub labels: super::intern::Labels,
    /// Load-balancing weight (default 1).
    pub weight: u32,
    /// Service account, if declared.
    pub service_account: Option<String>,
}

/// How endpoints are picked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LoadBalancer {
    /// Power of two choices on active requests (Istio's default).
    LeastRequest,
    /// Round robin.
    RoundRobin,
    /// Uniform random.
    Random,
    /// Forward to the original destination.
    Passthrough,
    /// Consistent hashing.
    ConsistentHash {
        /// What is hashed.
        key: HashKey,
        /// Ring hash or Maglev.
        algorithm: HashAlgorithm,
    },
}

/// What a consistent hash is computed over.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HashKey {
    /// A request header.
    Header(HeaderName),
    /// A cookie, generated with `ttl` when absent (no `ttl`: not generated).
    Cookie {
        /// Cookie name.
        name: String,
        /// Cookie path.
        path: String,
        /// Lifetime of a generated cookie; zero = session cookie.
        ttl: Option<Duration>,
        /// Extra attributes.
        attributes: Vec<(String, String)>,
    },
    /// The downstream source IP.
    SourceIp,
    /// A query parameter.
    QueryParameter(String),
}

/// Consistent-hash algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// Ketama ring (Istio default, minimum 1024 entries).
    RingHash {
        /// Minimum ring size.
        minimum_ring_size: u64,
    },
    /// Maglev lookup table (default 65537 entries).
    Maglev {
        /// Table size (prime).
        table_size: u64,
    },
}

/// Connection pool limits with Istio's defaults applied.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionPool {
    /// `tcp.maxConnections` (default 2^32-1).
    pub max_connections: u32,
    /// `tcp.connectTimeout` (default 10s).
    pub connect_timeout: Duration,
    /// `tcp.tcpKeepalive` when set.
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// `tcp.maxConnectionDuration`.
    pub max_connection_duration: Option<Duration>,
    /// `tcp.idleTimeout` for TCP proxying (default 1h; `None` = disabled by `0s`).
    pub tcp_idle_timeout: Option<Duration>,
    /// `http.http1MaxPendingRequests` (default 2^32-1).
    pub http1_max_pending_requests: u32,
    /// `http.http2MaxRequests` (default 2^32-1).
    pub http2_max_requests: u32,
    /// `http.maxRequestsPerConnection` (`None` = unlimited).
    pub max_requests_per_connection: Option<u32>,
    /// `http.maxRetries` (default 2^32-1).
    pub max_retries: u32,
    /// `http.idleTimeout` (default 1h, falls back to `tcp.idleTimeout`).
    pub http_idle_timeout: Option<Duration>,
    /// `http.h2UpgradePolicy: UPGRADE`.
    pub h2_upgrade: bool,
    /// `http.useClientProtocol`.
    pub use_client_protocol: bool,
    /// `http.maxConcurrentStreams` (default 2^31-1).
    pub max_concurrent_streams: u32,
    /// `http.http2KeepAlive` (interval, timeout).
    pub http2_keepalive: Option<(Duration, Duration)>,
}

/// `tcp.tcpKeepalive`; `None` fields use the OS default.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TcpKeepalive {
    /// Probes.
    pub probes: Option<u32>,
    /// Idle time before probing.
    pub time: Option<Duration>,
    /// Interval between probes.
    pub interval: Option<Duration>,
}

const HOUR: Duration = Duration::from_secs(3600);

impl Default for ConnectionPool {
    /// Istio's effective defaults: `getDefaultCircuitBreakerThresholds` sets every
    /// threshold to 2^32-1; MeshConfig `connectTimeout` is 10s; idle timeouts 1h.
    fn default() -> Self {
        ConnectionPool {
            max_connections: u32::MAX,
            connect_timeout: Duration::from_secs(10),
            tcp_keepalive: None,
            max_connection_duration: None,
            tcp_idle_timeout: Some(HOUR),
            http1_max_pending_requests: u32::MAX,
            http2_max_requests: u32::MAX,
            max_requests_per_connection: None,
            max_retries: u32::MAX,
            http_idle_timeout: Some(HOUR),
            h2_upgrade: false,
            use_client_protocol: false,
            max_concurrent_streams: i32::MAX as u32,
            http2_keepalive: None,
        }
    }
}

/// Istio treats a zero in these plain int32 fields as "use the default" (FIXMEs in
/// `cluster_traffic_policy.go`), so only positive values override.
fn positive(v: Option<i64>, default: u32) -> u32 {
    match v {
        Some(x) if x > 0 => x.min(u32::MAX as i64) as u32,
        _ => default,
    }
}

impl ConnectionPool {
    /// Applies a `connectionPool` block over the defaults.
    pub fn from_settings(s: Option<&dr::ConnectionPoolSettings>) -> Self {
        let mut p = ConnectionPool::default();
        let Some(s) = s else { return p };
        if let Some(t) = &s.tcp {
            p.max_connections = positive(t.max_connections, p.max_connections);
            if let Some(ct) = t.connect_timeout {
                p.connect_timeout = ct.to_std();
            }
            p.tcp_keepalive = t.tcp_keepalive.as_ref().map(|k| TcpKeepalive {
                probes: k.probes,
                time: k.time.map(|d| d.to_std()),
                interval: k.interval.map(|d| d.to_std()),
            });
            p.max_connection_duration = t.max_connection_duration.map(|d| d.to_std());
            if let Some(it) = t.idle_timeout {
                p.tcp_idle_timeout = if it.is_zero() {
                    None
                } else {
                    Some(it.to_std())
                };
                // Istio: http.idleTimeout falls back to tcp.idleTimeout.
                p.http_idle_timeout = p.tcp_idle_timeout;
            }
        }
        if let Some(h) = &s.http {
            p.http1_max_pending_requests =
                positive(h.http1_max_pending_requests, p.http1_max_pending_requests);
            p.http2_max_requests = positive(h.http2_max_requests, p.http2_max_requests);
            p.max_requests_per_connection = match h.max_requests_per_connection {
                Some(x) if x > 0 => Some(x.min(u32::MAX as i64) as u32),
                _ => None,
            };
            p.max_retries = positive(h.max_retries, p.max_retries);
            if let Some(it) = h.idle_timeout {
                p.http_idle_timeout = Some(it.to_std());
            }
            p.h2_upgrade = h.h2_upgrade_policy == Some(dr::H2UpgradePolicy::Upgrade);
            p.use_client_protocol = h.use_client_protocol;
            p.max_concurrent_streams = positive(h.max_concurrent_streams, p.max_concurrent_streams);
            p.http2_keepalive = h
                .http2_keep_alive
                .as_ref()
                .and_then(|k| Some((k.interval?.to_std(), k.timeout?.to_std())));
        }
        p
    }
}

/// Outlier detection with Envoy's defaults as Istio sets them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OutlierPolicy {
    /// Consecutive 5xx before ejection (`None` = not enforced).
    pub consecutive_5xx: Option<u32>,
    /// Consecutive gateway errors (502/503/504, connect failures) before ejection.
    pub consecutive_gateway: Option<u32>,
    /// Count local-origin failures separately.
    pub split_local_origin: bool,
    /// Consecutive local-origin failures (only with the split).
    pub consecutive_local_origin: Option<u32>,
    /// Sweep interval.
    pub interval: Duration,
    /// Base ejection time.
    pub base_ejection_time: Duration,
    /// Cap of the ejection time (Envoy `max_ejection_time`, 300s or the base if larger).
    pub max_ejection_time: Duration,
    /// Maximum share of ejected endpoints, percent.
    pub max_ejection_percent: u32,
    /// Panic threshold, percent (0 = off).
    pub min_health_percent: u32,
    /// HTTP codes counted as errors (empty = all 5xx).
    pub http_error_codes: Vec<u16>,
}

impl OutlierPolicy {
    /// Translates an `outlierDetection` block as istiod's `applyOutlierDetection` does.
    pub fn from_settings(o: &dr::OutlierDetection) -> Self {
        // Envoy: consecutive_5xx 5 enforced; consecutive_gateway_failure not enforced.
        let mut consecutive_5xx = Some(5);
        let mut consecutive_gateway = None;
        // Deprecated consecutiveErrors: "Only listen to gateway errors" (istio/api#617):
        // gateway failures at that count, 5xx not enforced.
        if let Some(ce) = o.consecutive_errors {
            if ce > 0 {
                consecutive_gateway = Some(ce.min(u32::MAX as i64) as u32);
                consecutive_5xx = None;
            }
        }
        if let Some(g) = o.consecutive_gateway_errors {
            consecutive_gateway = (g > 0).then_some(g);
        }
        if let Some(x) = o.consecutive_5xx_errors {
            // Istio: explicit 0 disables (enforcing_consecutive_5xx: 0).
            consecutive_5xx = (x > 0).then_some(x);
        }
        let base = o
            .base_ejection_time
            .map(|d| d.to_std())
            .unwrap_or(Duration::from_secs(30));
        OutlierPolicy {
            consecutive_5xx,
            consecutive_gateway,
            split_local_origin: o.split_external_local_origin_errors,
            consecutive_local_origin: o
                .split_external_local_origin_errors
                .then(|| o.consecutive_local_origin_failures.unwrap_or(5))
                .filter(|n| *n > 0),
            interval: o
                .interval
                .map(|d| d.to_std())
                .unwrap_or(Duration::from_secs(10)),
            base_ejection_time: base,
            // Envoy: max_ejection_time defaults to 300s, or the base if that is larger.
            max_ejection_time: base.max(Duration::from_secs(300)),
            // Istio copies maxEjectionPercent only when > 0; Envoy's default is 10%.
            max_ejection_percent: match o.max_ejection_percent {
                Some(x) if x > 0 => x.min(100) as u32,
                _ => 10,
            },
            // Istio maps minHealthPercent to healthy_panic_threshold, default 0 (off).
            min_health_percent: o.min_health_percent.unwrap_or(0).clamp(0, 100) as u32,
            http_error_codes: o
                .outlier_detection_http_error_codes
                .iter()
                .map(|c| *c as u16)
                .collect(),
        }
    }
}

/// TLS origination to a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientTls {
    /// Mode.
    pub mode: dr::ClientTlsMode,
    /// Client certificate (MUTUAL).
    pub client_certificate: Option<PathBuf>,
    /// Client key (MUTUAL).
    pub private_key: Option<PathBuf>,
    /// CA bundle; `None` = system roots (SIMPLE/MUTUAL) or the mesh CA (ISTIO_MUTUAL).
    pub ca_certificates: Option<PathBuf>,
    /// SANs to verify (empty = the SNI/host name, or the mesh identity).
    pub subject_alt_names: Vec<String>,
    /// SNI; `None` = the request host (SIMPLE/MUTUAL) or the cluster name (ISTIO_MUTUAL).
    pub sni: Option<String>,
    /// Skip verification.
    pub insecure_skip_verify: bool,
}

/// The four blocks of a traffic policy that apply to a cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyBlocks {
    /// Load balancer.
    pub load_balancer: Option<dr::LoadBalancerSettings>,
    /// Connection pool.
    pub connection_pool: Option<dr::ConnectionPoolSettings>,
    /// Outlier detection.
    pub outlier_detection: Option<dr::OutlierDetection>,
    /// TLS.
    pub tls: Option<dr::ClientTlsSettings>,
    /// Where each block came from.
    pub origins: PolicyOrigins,
}

/// Where a block of a cluster's effective policy came from. Istio replaces whole blocks
/// (`MergeSubsetTrafficPolicy`), so a block has exactly one origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PolicyOrigin {
    /// No DestinationRule sets it: Istio's default.
    #[default]
    Default,
    /// The DestinationRule's top-level `trafficPolicy`.
    TopLevel,
    /// The DestinationRule's `portLevelSettings` for the cluster's port.
    PortLevel,
    /// The subset's `trafficPolicy`.
    Subset,
    /// The subset's `portLevelSettings` for the cluster's port.
    SubsetPortLevel,
}

impl PolicyOrigin {
    /// How `explain` names it.
    pub fn describe(self) -> &'static str {
        match self {
            PolicyOrigin::Default => "default",
            PolicyOrigin::TopLevel => "top level",
            PolicyOrigin::PortLevel => "port level",
            PolicyOrigin::Subset => "subset",
            PolicyOrigin::SubsetPortLevel => "subset port level",
        }
    }
}

/// The origin of each of the four blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyOrigins {
    /// `loadBalancer`.
    pub load_balancer: PolicyOrigin,
    /// `connectionPool`.
    pub connection_pool: PolicyOrigin,
    /// `outlierDetection`.
    pub outlier_detection: PolicyOrigin,
    /// `tls`.
    pub tls: PolicyOrigin,
}

/// A block set from `origin`: the origin is recorded only where the block is set (an
/// unset block replacing another leaves Istio's default).
fn origin_of<T>(block: &Option<T>, origin: PolicyOrigin) -> PolicyOrigin {
    if block.is_some() {
        origin
    } else {
        PolicyOrigin::Default
    }
}

fn port_level(tp: &TrafficPolicy, port: u16) -> Option<&dr::PortTrafficPolicy> {
    tp.port_level_settings
        .iter()
        .find(|pl| pl.port.as_ref().is_some_and(|p| p.number == port as u32))
}

/// Istio's precedence (`MergeSubsetTrafficPolicy`): the DR's port-level
/// setting for the port replaces its top-level blocks without inheriting; then the subset's
/// port-level setting replaces all four blocks wholesale, or else each block the subset's
/// top-level policy sets replaces the corresponding block (no field-level merge).
pub fn effective_policy(
    dr_policy: Option<&TrafficPolicy>,
    subset_policy: Option<&TrafficPolicy>,
    port: u16,
) -> PolicyBlocks {
    let mut out = PolicyBlocks::default();
    if let Some(tp) = dr_policy {
        match port_level(tp, port) {
            Some(pl) => replace_all(&mut out, pl, PolicyOrigin::PortLevel),
            None => {
                out.load_balancer = tp.load_balancer.clone();
                out.connection_pool = tp.connection_pool.clone();
                out.outlier_detection = tp.outlier_detection.clone();
                out.tls = tp.tls.clone();
                out.origins = PolicyOrigins {
                    load_balancer: origin_of(&out.load_balancer, PolicyOrigin::TopLevel),
                    connection_pool: origin_of(&out.connection_pool, PolicyOrigin::TopLevel),
                    outlier_detection: origin_of(&out.outlier_detection, PolicyOrigin::TopLevel),
                    tls: origin_of(&out.tls, PolicyOrigin::TopLevel),
                };
            }
        }
    }
    if let Some(sp) = subset_policy {
        match port_level(sp, port) {
            Some(pl) => replace_all(&mut out, pl, PolicyOrigin::SubsetPortLevel),
            None => {
                let o = &mut out.origins;
                if sp.load_balancer.is_some() {
                    out.load_balancer = sp.load_balancer.clone();
                    o.load_balancer = PolicyOrigin::Subset;
                }
                if sp.connection_pool.is_some() {
                    out.connection_pool = sp.connection_pool.clone();
                    o.connection_pool = PolicyOrigin::Subset;
                }
                if sp.outlier_detection.is_some() {
                    out.outlier_detection = sp.outlier_detection.clone();
                    o.outlier_detection = PolicyOrigin::Subset;
                }
                if sp.tls.is_some() {
                    out.tls = sp.tls.clone();
                    o.tls = PolicyOrigin::Subset;
                }
            }
        }
    }
    out
}

/// A port-level setting replaces all four blocks, set or not.
fn replace_all(out: &mut PolicyBlocks, pl: &dr::PortTrafficPolicy, origin: PolicyOrigin) {
    out.load_balancer = pl.load_balancer.clone();
    out.connection_pool = pl.connection_pool.clone();
    out.outlier_detection = pl.outlier_detection.clone();
    out.tls = pl.tls.clone();
    out.origins = PolicyOrigins {
        load_balancer: origin_of(&out.load_balancer, origin),
        connection_pool: origin_of(&out.connection_pool, origin),
        outlier_detection: origin_of(&out.outlier_detection, origin),
        tls: origin_of(&out.tls, origin),
    };
}

impl LoadBalancer {
    /// Translates a `loadBalancer` block; unset or `UNSPECIFIED` is LEAST_REQUEST
    /// (Istio `defaultLBAlgorithm()`), `LEAST_CONN` is its deprecated alias.
    pub fn from_settings(lb: Option<&dr::LoadBalancerSettings>) -> Self {
        let Some(lb) = lb else {
            return LoadBalancer::LeastRequest;
        };
        if let Some(ch) = &lb.consistent_hash {
            let key = if let Some(h) = &ch.http_header_name {
                match HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()) {
                    Ok(n) => HashKey::Header(n),
                    Err(_) => HashKey::SourceIp,
                }
            } else if let Some(c) = &ch.http_cookie {
                HashKey::Cookie {
                    name: c.name.clone(),
                    path: c.path.clone(),
                    ttl: c.ttl.map(|d| d.to_std()),
                    attributes: c
                        .attributes
                        .iter()
                        .map(|a| (a.name.clone(), a.value.clone()))
                        .collect(),
                }
            } else if let Some(q) = &ch.http_query_parameter_name {
                HashKey::QueryParameter(q.clone())
            } else {
                HashKey::SourceIp
            };
            let algorithm = match (&ch.maglev, &ch.ring_hash) {
                (Some(m), _) => HashAlgorithm::Maglev {
                    table_size: m.table_size.unwrap_or(65537),
                },
                (None, Some(r)) => HashAlgorithm::RingHash {
                    minimum_ring_size: r.minimum_ring_size.unwrap_or(1024),
                },
                (None, None) => HashAlgorithm::RingHash {
                    minimum_ring_size: ch.minimum_ring_size.filter(|s| *s > 0).unwrap_or(1024),
                },
            };
            return LoadBalancer::ConsistentHash { key, algorithm };
        }
        match lb.simple {
            Some(dr::SimpleLb::RoundRobin) => LoadBalancer::RoundRobin,
            Some(dr::SimpleLb::Random) => LoadBalancer::Random,
            Some(dr::SimpleLb::Passthrough) => LoadBalancer::Passthrough,
            _ => LoadBalancer::LeastRequest,
        }
    }

    /// True for consistent hashing (retries then do not skip previous hosts by default).
    pub fn is_consistent_hash(&self) -> bool {
        matches!(self, LoadBalancer::ConsistentHash { .. })
    }
}

/// An upstream cluster.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Identity.
    pub key: ClusterKey,
    /// `outbound|port|subset|host`.
    pub name: std::sync::Arc<str>,
    /// Short service name (first label of the host).
    pub service_name: String,
    /// Namespace of the ServiceEntry that declared the service.
    pub service_namespace: String,
    /// Protocol of the service port.
    pub protocol: Protocol,
    /// Endpoints (subset members only).
    pub endpoints: Vec<Endpoint>,
    /// Load balancer.
    pub load_balancer: LoadBalancer,
    /// Connection pool limits.
    pub pool: ConnectionPool,
    /// Outlier detection; `None` = off (block absent).
    pub outlier: Option<OutlierPolicy>,
    /// TLS origination; `None` = auto (ISTIO_MUTUAL to endpoints labelled
    /// `security.istio.io/tlsMode: istio` when the proxy has an identity, else plaintext).
    pub tls: Option<ClientTls>,
    /// The identities the service's endpoints must prove (ServiceEntry
    /// `subjectAltNames`): what auto mTLS verifies, and what `tls` verifies when its
    /// DestinationRule names none.
    pub service_sans: Vec<String>,
    /// Hash of everything that shapes live state: a reload that keeps it keeps the state.
    pub fingerprint: u64,
    /// Where each block of the policy above came from (for `explain`; not in the
    /// fingerprint: it shapes nothing).
    pub policy_origins: PolicyOrigins,
}

/// Istio's name for the cluster that forwards to a connection's original destination
/// (`outboundTrafficPolicy: ALLOW_ANY`), also the `destination_service` of its metrics.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";

/// Istio's catch-all for hosts outside the registry under `REGISTRY_ONLY`.
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";

impl Cluster {
    /// Istio's `PassthroughCluster`: an ORIGINAL_DST cluster without TLS origination, for
    /// hosts and addresses outside the registry when `outboundTrafficPolicy` is
    /// `ALLOW_ANY` (Istio adds it, with an `allow_any` virtual host and a catch-all TCP
    /// filter chain, to every sidecar in that mode).
    pub fn passthrough() -> Cluster {
        Self::catch_all(PASSTHROUGH_CLUSTER, LoadBalancer::Passthrough)
    }

    /// Istio's `BlackHoleCluster`: a STATIC cluster without endpoints that requests for
    /// hosts outside the registry are reported against under `REGISTRY_ONLY` (Istio's
    /// `block_all` virtual host answers them `502` itself).
    pub fn blackhole() -> Cluster {
        Self::catch_all(BLACKHOLE_CLUSTER, LoadBalancer::RoundRobin)
    }

    fn catch_all(name: &str, lb: LoadBalancer) -> Cluster {
        let key = ClusterKey {
            service: name.into(),
            port: 0,
            subset: None,
        };
        let pool = ConnectionPool::default();
        // Plain text on purpose: an unknown destination is not a mesh workload.
        let tls = Some(ClientTls {
            mode: dr::ClientTlsMode::Disable,
            client_certificate: None,
            private_key: None,
            ca_certificates: None,
            subject_alt_names: Vec::new(),
            sni: None,
            insecure_skip_verify: false,
        });
        let fingerprint = fingerprint(&[], &lb, &pool, &None, &tls, &[], Protocol::Http);
        Cluster {
            name: name.into(),
            key,
            service_name: name.into(),
            service_namespace: String::new(),
            protocol: Protocol::Http,
            endpoints: Vec::new(),
            load_balancer: lb,
            pool,
            outlier: None,
            tls,
            service_sans: Vec::new(),
            fingerprint,
            policy_origins: PolicyOrigins::default(),
        }
    }
}

/// Fingerprint of the parts of a cluster whose change requires fresh live state.
pub fn fingerprint(
    endpoints: &[Endpoint],
    lb: &LoadBalancer,
    pool: &ConnectionPool,
    outlier: &Option<OutlierPolicy>,
    tls: &Option<ClientTls>,
    service_sans: &[String],
    protocol: Protocol,
) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    endpoints.hash(&mut h);
    lb.hash(&mut h);
    pool.hash(&mut h);
    outlier.hash(&mut h);
    tls.hash(&mut h);
    service_sans.hash(&mut h);
    protocol.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::common::PortSelector;

    fn cp(max: i64) -> dr::ConnectionPoolSettings {
        dr::ConnectionPoolSettings {
            tcp: Some(dr::TcpSettings {
                max_connections: Some(max),
                ..Default::default()
            }),
            http: None,
        }
    }

    fn od(n: u32) -> dr::OutlierDetection {
        dr::OutlierDetection {
            consecutive_5xx_errors: Some(n),
            ..Default::default()
        }
    }

    /// A rule with a pool and outlier detection at the top level, and another pool for
    /// port 80.
    fn pool_10_outlier_3_and_pool_20_on_port_80() -> TrafficPolicy {
        TrafficPolicy {
            connection_pool: Some(cp(10)),
            outlier_detection: Some(od(3)),
            port_level_settings: vec![dr::PortTrafficPolicy {
                port: Some(PortSelector { number: 80 }),
                connection_pool: Some(cp(20)),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn port_level_replaces_top_level_without_inheriting() {
        let tp = pool_10_outlier_3_and_pool_20_on_port_80();
        let on80 = effective_policy(Some(&tp), None, 80);
        assert_eq!(on80.connection_pool, Some(cp(20)));
        assert_eq!(
            on80.outlier_detection, None,
            "port-level does not inherit top-level blocks"
        );
        let on81 = effective_policy(Some(&tp), None, 81);
        assert_eq!(on81.connection_pool, Some(cp(10)));
        assert_eq!(on81.outlier_detection, Some(od(3)));
    }

    #[test]
    fn each_block_knows_where_it_came_from() {
        use PolicyOrigin as O;
        let tp = pool_10_outlier_3_and_pool_20_on_port_80();
        let sub = TrafficPolicy {
            outlier_detection: Some(od(7)),
            port_level_settings: vec![dr::PortTrafficPolicy {
                port: Some(PortSelector { number: 90 }),
                outlier_detection: Some(od(9)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let o = |dr, sp, port| effective_policy(dr, sp, port).origins;
        assert_eq!(o(None, None, 81), PolicyOrigins::default());
        let top = o(Some(&tp), None, 81);
        assert_eq!(
            (
                top.connection_pool,
                top.outlier_detection,
                top.load_balancer,
                top.tls
            ),
            (O::TopLevel, O::TopLevel, O::Default, O::Default)
        );
        // Port level replaces every block: the top level's outlier detection is gone.
        let port = o(Some(&tp), None, 80);
        assert_eq!(
            (port.connection_pool, port.outlier_detection),
            (O::PortLevel, O::Default)
        );
        let subset = o(Some(&tp), Some(&sub), 81);
        assert_eq!(
            (subset.connection_pool, subset.outlier_detection),
            (O::TopLevel, O::Subset)
        );
        let subset_port = o(Some(&tp), Some(&sub), 90);
        assert_eq!(
            (subset_port.connection_pool, subset_port.outlier_detection),
            (O::Default, O::SubsetPortLevel)
        );
    }

    #[test]
    fn subset_blocks_replace_whole_blocks() {
        let tp = TrafficPolicy {
            connection_pool: Some(dr::ConnectionPoolSettings {
                tcp: Some(dr::TcpSettings {
                    max_connections: Some(10),
                    ..Default::default()
                }),
                http: Some(dr::HttpSettings {
                    http1_max_pending_requests: Some(5),
                    ..Default::default()
                }),
            }),
            outlier_detection: Some(od(3)),
            ..Default::default()
        };
        let sub = TrafficPolicy {
            connection_pool: Some(cp(99)),
            ..Default::default()
        };
        let eff = effective_policy(Some(&tp), Some(&sub), 80);
        // Whole block replaced: the DR's http settings are gone.
        assert_eq!(eff.connection_pool, Some(cp(99)));
        assert_eq!(
            eff.outlier_detection,
            Some(od(3)),
            "blocks the subset leaves unset stay"
        );
    }

    #[test]
    fn subset_port_level_replaces_all_four_blocks_even_with_nothing() {
        let tp = TrafficPolicy {
            connection_pool: Some(cp(10)),
            outlier_detection: Some(od(3)),
            ..Default::default()
        };
        let sub = TrafficPolicy {
            port_level_settings: vec![dr::PortTrafficPolicy {
                port: Some(PortSelector { number: 80 }),
                connection_pool: Some(cp(1)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let eff = effective_policy(Some(&tp), Some(&sub), 80);
        assert_eq!(eff.connection_pool, Some(cp(1)));
        assert_eq!(eff.outlier_detection, None);
    }

    #[test]
    fn pool_defaults_are_istios() {
        let p = ConnectionPool::from_settings(None);
        assert_eq!(p.max_connections, u32::MAX);
        assert_eq!(p.connect_timeout, Duration::from_secs(10));
        assert_eq!(p.http_idle_timeout, Some(HOUR));
        assert_eq!(p.max_concurrent_streams, i32::MAX as u32);
        assert_eq!(p.max_requests_per_connection, None);
        let zero = ConnectionPool::from_settings(Some(&cp(0)));
        assert_eq!(
            zero.max_connections,
            u32::MAX,
            "0 means default in Istio's int32 fields"
        );
    }

    #[test]
    fn tcp_idle_timeout_zero_disables_and_feeds_http_idle() {
        let s = dr::ConnectionPoolSettings {
            tcp: Some(dr::TcpSettings {
                idle_timeout: Some(crate::Duration::ZERO),
                ..Default::default()
            }),
            http: None,
        };
        let p = ConnectionPool::from_settings(Some(&s));
        assert_eq!(p.tcp_idle_timeout, None);
        assert_eq!(p.http_idle_timeout, None);
    }

    #[test]
    fn outlier_defaults_and_deprecated_consecutive_errors() {
        let p = OutlierPolicy::from_settings(&dr::OutlierDetection::default());
        assert_eq!(p.consecutive_5xx, Some(5));
        assert_eq!(p.consecutive_gateway, None);
        assert_eq!(p.interval, Duration::from_secs(10));
        assert_eq!(p.base_ejection_time, Duration::from_secs(30));
        assert_eq!(p.max_ejection_time, Duration::from_secs(300));
        assert_eq!(p.max_ejection_percent, 10);
        assert_eq!(p.min_health_percent, 0);
        let old = OutlierPolicy::from_settings(&dr::OutlierDetection {
            consecutive_errors: Some(3),
            ..Default::default()
        });
        assert_eq!(old.consecutive_gateway, Some(3));
        assert_eq!(
            old.consecutive_5xx, None,
            "consecutiveErrors only listens to gateway errors"
        );
        let off = OutlierPolicy::from_settings(&od(0));
        assert_eq!(off.consecutive_5xx, None);
        let split = OutlierPolicy::from_settings(&dr::OutlierDetection {
            split_external_local_origin_errors: true,
            ..Default::default()
        });
        assert_eq!(split.consecutive_local_origin, Some(5));
        let zero_pct = OutlierPolicy::from_settings(&dr::OutlierDetection {
            max_ejection_percent: Some(0),
            ..Default::default()
        });
        assert_eq!(zero_pct.max_ejection_percent, 10);
    }

    #[test]
    fn lb_defaults() {
        assert_eq!(
            LoadBalancer::from_settings(None),
            LoadBalancer::LeastRequest
        );
        let lb = dr::LoadBalancerSettings {
            simple: Some(dr::SimpleLb::LeastConn),
            ..Default::default()
        };
        assert_eq!(
            LoadBalancer::from_settings(Some(&lb)),
            LoadBalancer::LeastRequest
        );
        let ch = dr::LoadBalancerSettings {
            consistent_hash: Some(dr::ConsistentHashLb {
                use_source_ip: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            LoadBalancer::from_settings(Some(&ch)),
            LoadBalancer::ConsistentHash {
                key: HashKey::SourceIp,
                algorithm: HashAlgorithm::RingHash {
                    minimum_ring_size: 1024
                }
            }
        );
    }

    #[test]
    fn protocol_from_port_name() {
        assert_eq!(Protocol::from_port("", "http-web"), Protocol::Http);
        assert_eq!(Protocol::from_port("grpc", "x"), Protocol::Grpc);
        assert_eq!(Protocol::from_port("", "mysql"), Protocol::Tcp);
    }
}
