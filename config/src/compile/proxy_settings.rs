//! The effective `Proxy` settings: the document's values with docs/contract.md §2's defaults filled in.

use crate::duration::Duration;
use crate::model::map::Map;
use crate::model::proxy::{self, Direction, ListenerProtocol, OutboundMode, Proxy};
use crate::model::{Resource, DEFAULT_NAMESPACE};
use crate::paths::resolve_path;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// Default admin address (docs/contract.md §2).
pub const DEFAULT_ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 15000);
/// Default outbound listener address (docs/contract.md §2).
pub const DEFAULT_OUTBOUND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 15001);

/// Envoy: `max_request_headers_kb` defaults to 60 (KiB); Istio leaves it.
pub const DEFAULT_MAX_REQUEST_HEADERS_KB: u32 = 60;
/// Envoy: `common_http_protocol_options.max_headers_count` defaults to 100; Istio leaves it.
pub const DEFAULT_MAX_REQUEST_HEADERS: u32 = 100;
/// Envoy: `request_headers_timeout` defaults to 0 (off), and Envoy's edge best practices
/// ("Configuring Envoy as an edge proxy") set it to 10 s; off is no defence against
/// slowloris, so the recommended value is the default here.
pub const DEFAULT_REQUEST_HEADERS_TIMEOUT: Duration = Duration::from_secs(10);
/// Envoy: the downstream `common_http_protocol_options.idle_timeout` defaults to 1 h;
/// Istio sidecars keep it (only `ISTIO_META_IDLE_TIMEOUT` changes it).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy: the HTTP connection manager's `stream_idle_timeout` defaults to 5 minutes
/// (Istio keeps it): a request with no bytes in either direction for that long ends.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Envoy sets no listener connection limit by default (Istio neither); its edge best
/// practices cap all downstream connections at 50 000. A cap far above any sidecar's
/// load that still stops a connection flood before it takes every file descriptor (the
/// proxy then still opens upstream connections, reads its config and answers admin).
pub const DEFAULT_MAX_CONNECTIONS_PER_LISTENER: u32 = 100_000;
/// Envoy: `http2_protocol_options.max_concurrent_streams` defaults to 2147483647 (Istio
/// leaves it); Envoy's edge best practices use 100 and hyper's default is 200. 1024 keeps
/// a gRPC client multiplexing one connection unthrottled while bounding what one
/// connection can start at once.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1024;
/// Envoy caps `max_request_headers_kb` at 8192.
pub const MAX_REQUEST_HEADERS_KB: i64 = 8192;
/// Largest accepted `maxRequestHeaders` (each HTTP/1.1 request reserves this many header slots).
pub const MAX_REQUEST_HEADERS: i64 = 10_000;
/// Largest accepted `maxConnectionsPerListener`.
pub const MAX_CONNECTIONS_PER_LISTENER: i64 = 10_000_000;
/// Largest accepted `maxDownstreamConnections`.
pub const MAX_DOWNSTREAM_CONNECTIONS: i64 = 10_000_000;
/// Largest `maxConcurrentStreams` (HTTP/2 stream identifiers are 31 bits; Envoy's bound).
pub const MAX_CONCURRENT_STREAMS: i64 = 2_147_483_647;
/// Largest accepted `maxActiveRequests`.
pub const MAX_ACTIVE_REQUESTS: i64 = 100_000_000;
/// Longest accepted `requestHeadersTimeout`.
pub const MAX_REQUEST_HEADERS_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest accepted `idleTimeout`.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Longest accepted `streamIdleTimeout`.
pub const MAX_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Istio: MeshConfig `dnsRefreshRate` defaults to 60s (`pkg/config/mesh/mesh.go`); Istio
/// gives it to every DNS cluster as Envoy's `dns_refresh_rate`.
pub const DEFAULT_DNS_REFRESH_RATE: Duration = Duration::from_secs(60);
/// Longest accepted `spec.dns.refreshRate`.
pub const MAX_DNS_REFRESH_RATE: Duration = Duration::from_secs(24 * 3600);
/// The port of a `spec.dns.resolver` given without one.
pub const DNS_PORT: u16 = 53;

/// `spec.dns` with its defaults filled in (see docs/config.md, "DNS endpoints").
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DnsSettings {
    /// The DNS server to ask; `None`: the system's (`/etc/resolv.conf`).
    pub resolver: Option<SocketAddr>,
    /// Re-resolution interval of an answer without a TTL, and retry interval after a
    /// failed lookup.
    pub refresh_rate: std::time::Duration,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            resolver: None,
            refresh_rate: DEFAULT_DNS_REFRESH_RATE.to_std(),
        }
    }
}

impl DnsSettings {
    /// The document's settings over the defaults (values validation refused are ignored).
    pub fn from_doc(d: Option<&proxy::Dns>) -> Self {
        let def = DnsSettings::default();
        let Some(d) = d else { return def };
        DnsSettings {
            resolver: d.resolver.as_deref().and_then(parse_resolver),
            refresh_rate: d
                .refresh_rate
                .filter(|r| r.check_istio().is_ok() && *r <= MAX_DNS_REFRESH_RATE)
                .map(|r| r.to_std())
                .unwrap_or(def.refresh_rate),
        }
    }
}

/// A `spec.dns.resolver`: `ip:port`, `[v6]:port`, or a bare IP (port 53).
pub fn parse_resolver(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| {
            s.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, DNS_PORT))
        })
        .filter(|a| a.port() != 0)
}

/// `spec.limits` with every default filled in (see docs/config.md, "Limits").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head in bytes (HTTP/1.1 request line + headers; HTTP/2 header list).
    pub max_request_headers_bytes: u32,
    /// Most header fields in one request.
    pub max_request_headers: u32,
    /// Time allowed to receive a complete request head.
    pub request_headers_timeout: std::time::Duration,
    /// A downstream connection with no request in flight this long is closed.
    pub idle_timeout: std::time::Duration,
    /// A request with no bytes received from either side this long is ended.
    pub stream_idle_timeout: std::time::Duration,
    /// Open downstream connections per listener.
    pub max_connections_per_listener: u32,
    /// Open downstream connections in the whole proxy (`None`: derived at run time from
    /// the file-descriptor limit, as is any larger value; see docs/config.md).
    pub max_downstream_connections: Option<u32>,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub max_concurrent_streams: u32,
    /// Requests in flight in the whole proxy (`None`: no limit, as Envoy without an
    /// overload manager).
    pub max_active_requests: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_headers_bytes: DEFAULT_MAX_REQUEST_HEADERS_KB * 1024,
            max_request_headers: DEFAULT_MAX_REQUEST_HEADERS,
            request_headers_timeout: DEFAULT_REQUEST_HEADERS_TIMEOUT.to_std(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT.to_std(),
            stream_idle_timeout: DEFAULT_STREAM_IDLE_TIMEOUT.to_std(),
            max_connections_per_listener: DEFAULT_MAX_CONNECTIONS_PER_LISTENER,
            max_downstream_connections: None,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_active_requests: None,
        }
    }
}

impl Limits {
    /// The document's limits over the defaults (values validation refused are ignored).
    pub fn from_doc(l: Option<&proxy::Limits>) -> Self {
        let d = Limits::default();
        let Some(l) = l else {
            return d;
        };
        let int = |v: Option<i64>, max: i64| {
            v.filter(|v| (1..=max).contains(v))
                .and_then(|v| u32::try_from(v).ok())
        };
        let dur = |v: Option<Duration>, max: Duration| {
            v.filter(|v| v.check_istio().is_ok() && *v <= max)
                .map(|v| v.to_std())
        };
        Limits {
            max_request_headers_bytes: int(l.max_request_headers_kb, MAX_REQUEST_HEADERS_KB)
                .map(|kb| kb * 1024)
                .unwrap_or(d.max_request_headers_bytes),
            max_request_headers: int(l.max_request_headers, MAX_REQUEST_HEADERS)
                .unwrap_or(d.max_request_headers),
            request_headers_timeout: dur(l.request_headers_timeout, MAX_REQUEST_HEADERS_TIMEOUT)
                .unwrap_or(d.request_headers_timeout),
            idle_timeout: dur(l.idle_timeout, MAX_IDLE_TIMEOUT).unwrap_or(d.idle_timeout),
            stream_idle_timeout: dur(l.stream_idle_timeout, MAX_STREAM_IDLE_TIMEOUT)
                .unwrap_or(d.stream_idle_timeout),
            max_connections_per_listener: int(
                l.max_connections_per_listener,
                MAX_CONNECTIONS_PER_LISTENER,
            )
            .unwrap_or(d.max_connections_per_listener),
            max_downstream_connections: int(
                l.max_downstream_connections,
                MAX_DOWNSTREAM_CONNECTIONS,
            )
            .or(d.max_downstream_connections),
            max_concurrent_streams: int(l.max_concurrent_streams, MAX_CONCURRENT_STREAMS)
                .unwrap_or(d.max_concurrent_streams),
            max_active_requests: int(l.max_active_requests, MAX_ACTIVE_REQUESTS)
                .or(d.max_active_requests),
        }
    }
}

/// The mesh certificate files of this proxy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdentityFiles {
    /// Certificate chain.
    pub certificate: PathBuf,
    /// Private key.
    pub private_key: PathBuf,
    /// Mesh CA bundle.
    pub ca_certificates: PathBuf,
}

/// A listener as the `Proxy` document declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredListener {
    /// Name.
    pub name: String,
    /// Bind address.
    pub address: SocketAddr,
    /// Direction.
    pub direction: Direction,
    /// Protocol handling.
    pub protocol: ListenerProtocol,
    /// Local app (INBOUND).
    pub forward_to: Option<SocketAddr>,
}

/// Who this proxy is and how it is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySettings {
    /// Workload name (`metadata.name`).
    pub name: String,
    /// Workload namespace.
    pub namespace: String,
    /// Workload labels.
    pub labels: BTreeMap<String, String>,
    /// Service account.
    pub service_account: Option<String>,
    /// Admin server address.
    pub admin_address: SocketAddr,
    /// Declared listeners.
    pub listeners: Vec<DeclaredListener>,
    /// Mesh identity files.
    pub identity: Option<IdentityFiles>,
    /// Outbound traffic policy.
    pub outbound_mode: OutboundMode,
    /// Bind address of Gateway servers.
    pub gateway_address: IpAddr,
    /// SPIFFE trust domain.
    pub trust_domain: String,
    /// Namespace of mesh-wide security policies.
    pub root_namespace: String,
    /// Downstream limits (`spec.limits`).
    pub limits: Limits,
    /// `spec.internalNetworks`: senders whose `x-envoy-*` control headers are honoured.
    pub internal_networks: Vec<ipnet::IpNet>,
    /// `spec.dns`: the resolver of `resolution: DNS` endpoints.
    pub dns: DnsSettings,
    /// True when a `Proxy` document was given (false: the built-in local default).
    pub declared: bool,
    /// The `Sidecar` that applies to this workload, if any (its outbound mode is already
    /// in [`ProxySettings::outbound_mode`]).
    pub sidecar: Option<super::sidecar_scope::SidecarScope>,
}

impl ProxySettings {
    /// Settings from the first `Proxy` document, or the local default (docs/contract.md §2: the example
    /// minus `identity` and the inbound listener).
    pub fn from_resources(resources: &[Resource]) -> Self {
        let doc = resources.iter().find_map(|r| r.as_proxy().map(|p| (r, p)));
        let mut s = match doc {
            Some((r, p)) => Self::from_doc(r, p),
            None => Self::local_default(),
        };
        s.sidecar = super::sidecar_scope::SidecarScope::select(resources, &s);
        // Istio: a Sidecar's outboundTrafficPolicy overrides the mesh's for its workload.
        if let Some(mode) = s.sidecar.as_ref().and_then(|sc| sc.outbound_mode) {
            s.outbound_mode = mode;
        }
        s
    }

    /// The built-in default used when no `Proxy` document is given.
    pub fn local_default() -> Self {
        ProxySettings {
            name: "meshproxy".into(),
            namespace: DEFAULT_NAMESPACE.into(),
            labels: BTreeMap::new(),
            service_account: None,
            admin_address: DEFAULT_ADMIN,
            listeners: vec![DeclaredListener {
                name: "outbound".into(),
                address: DEFAULT_OUTBOUND,
                direction: Direction::Outbound,
                protocol: ListenerProtocol::Http,
                forward_to: None,
            }],
            identity: None,
            outbound_mode: OutboundMode::RegistryOnly,
            gateway_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            trust_domain: crate::host::DEFAULT_DOMAIN_SUFFIX.into(),
            root_namespace: crate::validate::DEFAULT_ROOT_NAMESPACE.into(),
            limits: Limits::default(),
            internal_networks: Vec::new(),
            dns: DnsSettings::default(),
            declared: false,
            sidecar: None,
        }
    }

    fn from_doc(r: &Resource, p: &Proxy) -> Self {
        let d = Self::local_default();
        let file = r.origin.file.as_path();
        let listeners = match &p.listeners {
            None => d.listeners.clone(),
            Some(ls) => ls
                .iter()
                .filter_map(|l| {
                    Some(DeclaredListener {
                        name: l.name.clone(),
                        address: l.address.parse().ok()?,
                        direction: l.direction?,
                        protocol: l.protocol.unwrap_or(ListenerProtocol::Http),
                        forward_to: l.forward_to.as_ref().and_then(|f| f.parse().ok()),
                    })
                })
                .collect(),
        };
        ProxySettings {
            name: if r.name.is_empty() {
                d.name
            } else {
                r.name.clone()
            },
            namespace: r.namespace.clone(),
            labels: p
                .workload
                .as_ref()
                .map(|w| w.labels.to_btree())
                .unwrap_or_default(),
            service_account: p.workload.as_ref().and_then(|w| w.service_account.clone()),
            admin_address: p
                .admin
                .as_ref()
                .and_then(|a| a.address.as_ref())
                .and_then(|a| a.parse().ok())
                .unwrap_or(d.admin_address),
            listeners,
            identity: p.identity.as_ref().map(|i| IdentityFiles {
                certificate: resolve_path(file, &i.certificate),
                private_key: resolve_path(file, &i.private_key),
                ca_certificates: resolve_path(file, &i.ca_certificates),
            }),
            outbound_mode: p
                .outbound_traffic_policy
                .as_ref()
                .and_then(|o| o.mode)
                .unwrap_or(d.outbound_mode),
            gateway_address: p
                .gateway_address
                .as_ref()
                .and_then(|g| g.parse().ok())
                .unwrap_or(d.gateway_address),
            trust_domain: p.trust_domain.clone().unwrap_or(d.trust_domain),
            root_namespace: p.root_namespace.clone().unwrap_or(d.root_namespace),
            limits: Limits::from_doc(p.limits.as_ref()),
            internal_networks: p
                .internal_networks
                .iter()
                .flatten()
                .filter_map(|n| parse_network(n))
                .collect(),
            dns: DnsSettings::from_doc(p.dns.as_ref()),
            declared: true,
            sidecar: None,
        }
    }

    /// True when `ip` is in `spec.internalNetworks`.
    pub fn is_internal(&self, ip: std::net::IpAddr) -> bool {
        self.internal_networks.iter().any(|n| n.contains(&ip))
    }

    /// This workload's SPIFFE identity, `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`.
    pub fn spiffe_id(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain,
            self.namespace,
            self.service_account.as_deref().unwrap_or("default")
        )
    }

    /// Where an INBOUND listener forwarding to `forward_to` sends traffic for the workload
    /// port `port` (the intercepted original port, else `forward_to`'s): the Sidecar's
    /// `ingress[].defaultEndpoint` for that port, else `port` on `forward_to`'s address
    /// (Istio's inbound cluster per workload port, `inbound|<port>||`).
    pub fn inbound_target(&self, forward_to: SocketAddr, port: u16) -> SocketAddr {
        self.sidecar
            .as_ref()
            .and_then(|s| s.ingress_endpoint(port))
            .unwrap_or(SocketAddr::new(forward_to.ip(), port))
    }

    /// True when every `selector` label is carried by this workload (an empty selector
    /// selects every workload).
    pub fn selected_by(&self, selector: &Map<String, String>) -> bool {
        selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }

    /// Istio `exportTo` visibility of a resource in `ns` for this proxy's namespace.
    pub fn sees(&self, ns: &str, export_to: &[String]) -> bool {
        if export_to.is_empty() {
            return true;
        }
        export_to.iter().any(|e| match e.as_str() {
            "*" => true,
            "." => ns == self.namespace,
            "~" => false,
            other => other == self.namespace,
        })
    }
}

/// A network of `spec.internalNetworks`: a CIDR, or a single address (a /32 or /128).
pub fn parse_network(n: &str) -> Option<ipnet::IpNet> {
    let n = n.trim();
    n.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| n.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}
