//! The service registry in file mode: ServiceEntries turned into services with ports and
//! endpoints, indexed by qualified host.

use super::cluster::{Endpoint, EndpointAddress, Protocol};
use super::intern::{Interner, Labels, PortMap};
use crate::host;
use crate::model::service_entry::{Location, Resolution};
use crate::model::{Resource, WorkloadEntry};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// A service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Port number clients use.
    pub number: u16,
    /// Port name (endpoints map names to their own ports).
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Endpoint port when the endpoint names none (default: `number`).
    pub target_port: Option<u16>,
}

/// An endpoint as declared, before a port is chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredEndpoint {
    /// IP, DNS name or `unix://` path.
    pub address: String,
    /// Port name → endpoint port (shared by endpoints declaring the same map).
    pub ports: PortMap,
    /// Labels (shared by endpoints with the same set).
    pub labels: Labels,
    /// Weight (default 1).
    pub weight: u32,
    /// Service account.
    pub service_account: Option<String>,
}

/// A service of the registry.
#[derive(Clone, Debug)]
pub struct Service {
    /// Qualified host (may be a wildcard).
    pub host: String,
    /// Namespace of the ServiceEntry.
    pub namespace: String,
    /// `ServiceEntry/ns/name`.
    pub origin: String,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// Virtual IPs and CIDRs.
    pub addresses: Vec<ipnet::IpNet>,
    /// Resolution.
    pub resolution: Resolution,
    /// Inside or outside the mesh.
    pub mesh_internal: bool,
    /// Declared endpoints.
    pub endpoints: Vec<DeclaredEndpoint>,
    /// `subjectAltNames`: the identities the endpoints' certificates must carry.
    pub subject_alt_names: Vec<String>,
}

impl Service {
    /// Short name (first DNS label).
    pub fn short_name(&self) -> &str {
        self.host.split('.').next().unwrap_or(&self.host)
    }

    /// The endpoints serving `port`, as addresses. DNS resolution without endpoints uses the
    /// host itself, as Istio does.
    pub fn endpoints_for(&self, port: &ServicePort) -> Vec<Endpoint> {
        let target = |ep: Option<&DeclaredEndpoint>| -> u16 {
            ep.and_then(|e| e.ports.get(&port.name).copied())
                .or(port.target_port)
                .unwrap_or(port.number)
        };
        // Istio: DNS → STRICT_DNS (every address an endpoint), DNS_ROUND_ROBIN →
        // LOGICAL_DNS (`pilot/pkg/networking/core/cluster.go`, `convertResolution`).
        let named = |host: String, port: u16| match self.resolution {
            Resolution::DnsRoundRobin => EndpointAddress::LogicalDns(host, port),
            _ => EndpointAddress::Dns(host, port),
        };
        if self.endpoints.is_empty() {
            if matches!(self.resolution, Resolution::Dns | Resolution::DnsRoundRobin)
                && !host::is_wildcard(&self.host)
            {
                return vec![Endpoint {
                    address: named(self.host.clone(), target(None)),
                    labels: Labels::default(),
                    weight: 1,
                    service_account: None,
                }];
            }
            return Vec::new();
        }
        self.endpoints
            .iter()
            .map(|e| {
                let address = if let Some(path) = e.address.strip_prefix("unix://") {
                    EndpointAddress::Unix(path.into())
                } else {
                    match e.address.parse::<IpAddr>() {
                        Ok(ip) => EndpointAddress::Socket(SocketAddr::new(ip, target(Some(e)))),
                        Err(_) => named(e.address.to_ascii_lowercase(), target(Some(e))),
                    }
                };
                Endpoint {
                    address,
                    labels: e.labels.clone(),
                    weight: e.weight,
                    service_account: e.service_account.clone(),
                }
            })
            .collect()
    }

    /// The port numbered `n`.
    pub fn port(&self, n: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.number == n)
    }
}

/// All services, with lookups by host.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    /// Services in load order.
    pub services: Vec<Service>,
    by_host: HashMap<String, usize>,
    /// Services by each single address they declare (a `/32` or `/128`), in load order:
    /// an intercepted connection finds its service without scanning them all.
    by_address: HashMap<std::net::IpAddr, Vec<usize>>,
    /// Services declaring a wider CIDR, in load order (checked by containment).
    with_ranges: Vec<usize>,
}

impl Registry {
    /// Builds the registry from the ServiceEntries in `resources` whose hosts are
    /// `visible` (the entry, its `exportTo`, one qualified host and whether it has a
    /// port). A host declared twice keeps its first declaration (Istio merges by creation
    /// time).
    pub fn build(
        resources: &[Resource],
        visible: impl Fn(&Resource, &[String], &str, &dyn Fn(u16) -> bool) -> bool,
    ) -> Registry {
        let mut reg = Registry::default();
        let mut interner = Interner::default();
        for r in resources {
            let Some(se) = r.as_service_entry() else {
                continue;
            };
            if !se.hosts.iter().any(|h| {
                let has_port = |n: u16| se.ports.iter().any(|p| p.number == u32::from(n));
                visible(r, &se.export_to, &host::qualify(h, &r.namespace), &has_port)
            }) {
                continue;
            }
            let ports: Vec<ServicePort> = se
                .ports
                .iter()
                .filter(|p| (1..=65535).contains(&p.number))
                .map(|p| ServicePort {
                    number: p.number as u16,
                    name: p.name.clone(),
                    protocol: Protocol::from_port(&p.protocol, &p.name),
                    target_port: p
                        .target_port
                        .filter(|t| (1..=65535).contains(t))
                        .map(|t| t as u16),
                })
                .collect();
            // Istio: `workloadSelector` takes the WorkloadEntries of the ServiceEntry's
            // namespace whose labels carry the selector's (`conversion.go`); the two are
            // exclusive with inline `endpoints` (validation refuses both).
            let selected: Vec<&WorkloadEntry> = match &se.workload_selector {
                Some(ws) => resources
                    .iter()
                    .filter(|w| w.namespace == r.namespace)
                    .filter_map(Resource::as_workload_entry)
                    .filter(|we| ws.labels.iter().all(|(k, v)| we.labels.get(k) == Some(v)))
                    .collect(),
                None => se.endpoints.iter().collect(),
            };
            let endpoints: Vec<DeclaredEndpoint> = selected
                .into_iter()
                .map(|e| DeclaredEndpoint {
                    address: e.address.clone(),
                    ports: interner.ports(
                        e.ports
                            .iter()
                            .filter(|(_, p)| (1..=65535).contains(*p))
                            .map(|(k, p)| (k.clone(), *p as u16))
                            .collect(),
                    ),
                    labels: interner.labels(e.labels.to_btree()),
                    weight: e.weight.filter(|w| *w > 0).unwrap_or(1),
                    service_account: (!e.service_account.is_empty())
                        .then(|| e.service_account.clone()),
                })
                .collect();
            let addresses = se
                .addresses
                .iter()
                .filter_map(|a| {
                    a.parse::<ipnet::IpNet>()
                        .ok()
                        .or_else(|| a.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
                })
                .collect();
            for h in &se.hosts {
                let host = host::qualify(h, &r.namespace);
                let has_port = |n: u16| se.ports.iter().any(|p| p.number == u32::from(n));
                if reg.by_host.contains_key(&host) || !visible(r, &se.export_to, &host, &has_port) {
                    continue;
                }
                reg.by_host.insert(host.clone(), reg.services.len());
                reg.services.push(Service {
                    host,
                    namespace: r.namespace.clone(),
                    origin: r.id(),
                    ports: ports.clone(),
                    addresses: Vec::clone(&addresses),
                    resolution: se.resolution.unwrap_or(Resolution::None),
                    mesh_internal: se.location == Some(Location::MeshInternal),
                    endpoints: endpoints.clone(),
                    subject_alt_names: se.subject_alt_names.clone(),
                });
            }
        }
        for (i, s) in reg.services.iter().enumerate() {
            for a in &s.addresses {
                if a.prefix_len() == a.max_prefix_len() {
                    let at = reg.by_address.entry(a.addr()).or_default();
                    if at.last() != Some(&i) {
                        at.push(i);
                    }
                } else if reg.with_ranges.last() != Some(&i) {
                    reg.with_ranges.push(i);
                }
            }
        }
        reg.services.shrink_to_fit();
        reg.by_host.shrink_to_fit();
        reg
    }

    /// The service with exactly this qualified host.
    pub fn get(&self, host: &str) -> Option<usize> {
        self.by_host.get(host).copied()
    }

    /// The declared protocol of the service port an intercepted connection to `addr` is
    /// for (one of a service's `addresses` and one of its ports), if any: Istio skips
    /// protocol detection on ports whose protocol is declared.
    pub fn protocol_at(&self, addr: SocketAddr) -> Option<Protocol> {
        let ip = addr.ip();
        let exact = self.by_address.get(&ip).map(Vec::as_slice).unwrap_or(&[]);
        let ranges = self
            .with_ranges
            .iter()
            .copied()
            .filter(|&i| self.services[i].addresses.iter().any(|n| n.contains(&ip)));
        // The first service in load order that has the address and the port, as a scan
        // of every service would find it.
        let mut candidates: Vec<usize> = exact.iter().copied().chain(ranges).collect();
        candidates.sort_unstable();
        candidates
            .into_iter()
            .find_map(|i| self.services[i].port(addr.port()))
            .map(|p| p.protocol)
    }

    /// Exact host first, else the most specific wildcard service host that matches.
    pub fn resolve(&self, host: &str) -> Option<usize> {
        self.get(host).or_else(|| {
            self.services
                .iter()
                .enumerate()
                .filter(|(_, s)| host::is_wildcard(&s.host) && host::matches(&s.host, host))
                .max_by_key(|(_, s)| s.host.len())
                .map(|(i, _)| i)
        })
    }
}
