//! The compiler: validated resources → an immutable, pre-indexed [`Snapshot`].
//!
//! Everything the data path would otherwise work out per request is done here once:
//! host expansion and the request-side host forms, first-match route lists with compiled
//! matchers, config-time filters (`sourceLabels`, `sourceNamespace`, `gateways`), weighted
//! destinations resolved to clusters, the effective DestinationRule policy of every
//! (service, port, subset), subset membership of endpoints, and listeners.

pub mod authz;
pub mod cluster;
pub mod http_routes;
pub mod intern;
pub mod listener;
pub mod lookup;
pub mod match_explain;
pub mod matcher;
pub mod peer_auth;
pub mod proxy_settings;
pub mod registry;
pub mod route;
pub mod route_table;
pub mod snapshot;
pub mod tcp_routes;

use crate::diag::Diagnostics;
use crate::host;
use crate::model::destination_rule::{Subset, TrafficPolicy};
use crate::model::proxy::{Direction, ListenerProtocol, OutboundMode};
use crate::model::{Resource, Spec};
use crate::validate::MissingFiles;
use cluster::{
    fingerprint, ClientTls, Cluster, ClusterKey, ConnectionPool, LoadBalancer, OutlierPolicy,
};
use http_routes::{qualify_gateway, RouteCompiler, RouteContext};
use listener::{GatewayServer, Listener, ListenerRole, ServerTls};
use matcher::RegexCache;
use proxy_settings::ProxySettings;
use registry::Registry;
use route::{Route, RouteAction, RoutePolicy, WeightedClusters, WeightedDestination};
use route_table::{RouteTable, VirtualHost};
use sha2::{Digest, Sha256};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

pub use snapshot::{ClusterId, Snapshot};

/// Loads, validates and compiles the configuration at `paths` to be served (`run`, a
/// reload): a certificate, key or CA file that cannot be read is an error. Errors refuse
/// the whole config; warnings travel in [`Snapshot::warnings`].
pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<Snapshot, Diagnostics> {
    let loaded = crate::loader::load_paths(paths);
    finish(&loaded.resources, loaded.diagnostics, MissingFiles::Refuse)
}

/// Like [`load`], also returning the typed documents (which the snapshot does not keep:
/// `meshproxy validate` summarizes them); `missing_files` says how files named in the
/// documents that cannot be read are reported (`validate` warns: it often runs away from
/// the pod that mounts them).
pub fn load_documents<P: AsRef<Path>>(
    paths: &[P],
    missing_files: MissingFiles,
) -> (Result<Snapshot, Diagnostics>, Vec<Resource>) {
    let loaded = crate::loader::load_paths(paths);
    let snap = finish(&loaded.resources, loaded.diagnostics, missing_files);
    (snap, loaded.resources)
}

/// Like [`load`] for a config held in memory (the embedded demo), named `name` in errors.
pub fn load_str(name: &str, text: &str) -> Result<Snapshot, Diagnostics> {
    let mut loaded = crate::loader::Loaded::default();
    crate::loader::load_str(Path::new(name), text, &mut loaded);
    finish(&loaded.resources, loaded.diagnostics, MissingFiles::Refuse)
}

fn finish(
    resources: &[Resource],
    mut diags: Diagnostics,
    missing_files: MissingFiles,
) -> Result<Snapshot, Diagnostics> {
    diags.extend(crate::validate::validate(resources, missing_files));
    // Report in file order, so a user reads problems top to bottom.
    diags.0.sort_by(|a, b| {
        let key =
            |d: &crate::diag::Diagnostic| d.origin.as_ref().map(|o| (o.file.clone(), o.index));
        key(a).cmp(&key(b))
    });
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(compile(resources, diags))
}

/// Compiles validated resources. `warnings` are carried into the snapshot. The snapshot
/// keeps each document's source text, not its typed form (see [`snapshot::Source`]).
pub fn compile(resources: &[Resource], mut warnings: Diagnostics) -> Snapshot {
    let proxy = ProxySettings::from_resources(resources);
    let registry = Registry::build(resources, |r, export| proxy.sees(&r.namespace, export));
    let (clusters, cluster_index) = build_clusters(&registry, resources, &proxy);
    let consistent_hash: HashSet<ClusterId> = clusters
        .iter()
        .enumerate()
        .filter(|(_, c)| c.load_balancer.is_consistent_hash())
        .map(|(i, _)| ClusterId(i as u32))
        .collect();

    let mut regex = RegexCache::default();
    let mut interner = intern::Interner::default();
    let mut route_tables = Vec::new();
    let mut tcp_route_tables = Vec::new();
    let mut listeners = Vec::new();
    let mut rc = RouteCompiler {
        registry: &registry,
        clusters: &cluster_index,
        consistent_hash: &consistent_hash,
        proxy: &proxy,
        resources,
        regex: &mut regex,
        interner: &mut interner,
        warnings: &mut warnings,
    };

    let has_outbound = proxy
        .listeners
        .iter()
        .any(|l| l.direction == Direction::Outbound);
    let mesh_table = has_outbound.then(|| {
        route_tables.push(mesh_route_table(&mut rc, resources));
        route_tables.len() - 1
    });
    // Also needed by HTTP listeners: a `CONNECT` tunnel is routed by the `tls` rules.
    let mesh_tcp_table = has_outbound.then(|| {
        tcp_route_tables.push(tcp_routes::compile(
            &mut rc,
            resources,
            &tcp_routes::TcpContext::Mesh,
        ));
        tcp_route_tables.len() - 1
    });
    for l in &proxy.listeners {
        // Sidecar TCP listeners route by VirtualService `tls`/`tcp` rules bound to mesh;
        // AUTO listeners by them for what their detection finds not to be HTTP.
        let tcp_routes = (l.protocol != ListenerProtocol::Http
            && l.direction == Direction::Outbound)
            .then_some(mesh_tcp_table)
            .flatten();
        listeners.push(Listener {
            name: l.name.clone(),
            address: l.address,
            role: match (l.direction, l.forward_to) {
                (Direction::Inbound, Some(f)) => ListenerRole::Inbound { forward_to: f },
                _ => ListenerRole::Outbound,
            },
            protocol: l.protocol,
            route_table: if l.direction == Direction::Outbound {
                mesh_table
            } else {
                None
            },
            tcp_routes,
        });
    }
    for (addr, servers) in gateway_servers(resources, &proxy) {
        let gateways: HashSet<String> = servers.iter().map(|s| s.gateway.clone()).collect();
        let table = gateway_route_table(&mut rc, resources, &servers, &gateways, addr.port());
        route_tables.push(table);
        let tcp_only = servers
            .iter()
            .all(|s| s.protocol == "TCP" || s.protocol == "TLS" || s.protocol == "MONGO");
        let tcp_routes = tcp_only.then(|| {
            tcp_route_tables.push(tcp_routes::compile(
                &mut rc,
                resources,
                &tcp_routes::TcpContext::Gateway {
                    servers: &servers,
                    port: addr.port(),
                },
            ));
            tcp_route_tables.len() - 1
        });
        listeners.push(Listener {
            name: format!("gateway-{addr}"),
            address: addr,
            role: ListenerRole::Gateway { servers },
            protocol: if tcp_only {
                ListenerProtocol::Tcp
            } else {
                ListenerProtocol::Http
            },
            route_table: Some(route_tables.len() - 1),
            tcp_routes,
        });
    }

    for t in &mut route_tables {
        t.shrink_to_fit();
    }
    let version = content_hash(resources);
    let peer_authn = peer_auth::PeerAuthn::compile(resources, &proxy);
    let authz = authz::Authz::compile(resources, &proxy);
    Snapshot {
        version,
        loaded_at: SystemTime::now(),
        peer_authn,
        authz,
        proxy,
        listeners,
        route_tables,
        tcp_route_tables,
        mesh_tcp_routes: mesh_tcp_table,
        clusters,
        cluster_index,
        registry,
        resources: resources.iter().map(snapshot::Source::from).collect(),
        warnings,
    }
}

/// SHA-256 over the documents as written, in load order (first 16 hex digits).
fn content_hash(resources: &[Resource]) -> String {
    let mut h = Sha256::new();
    for r in resources {
        h.update(r.raw.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// DestinationRules merged for one service host, as the proxy sees them.
struct MergedRule {
    traffic_policy: Option<TrafficPolicy>,
    subsets: Vec<Subset>,
    /// The file of the rule that supplied the policy (relative TLS paths resolve from it).
    file: Option<std::path::PathBuf>,
}

/// The DestinationRules visible to this proxy, indexed by qualified host.
struct RuleIndex<'a> {
    exact: HashMap<String, Vec<&'a Resource>>,
    wildcard: Vec<(String, &'a Resource)>,
}

impl<'a> RuleIndex<'a> {
    /// Visible rules only: `exportTo` includes the proxy's namespace, and a rule with a
    /// `workloadSelector` selects this proxy from its own namespace.
    fn build(resources: &'a [Resource], proxy: &ProxySettings) -> Self {
        let mut idx = RuleIndex {
            exact: HashMap::new(),
            wildcard: Vec::new(),
        };
        for r in resources {
            let Some(dr) = r.as_destination_rule() else {
                continue;
            };
            if let Some(ws) = &dr.workload_selector {
                if r.namespace != proxy.namespace || !proxy.selected_by(&ws.match_labels) {
                    continue;
                }
            }
            if !proxy.sees(&r.namespace, &dr.export_to) {
                continue;
            }
            let h = host::qualify(&dr.host, &r.namespace);
            if host::is_wildcard(&h) {
                idx.wildcard.push((h, r));
            } else {
                idx.exact.entry(h).or_default().push(r);
            }
        }
        idx
    }

    /// Istio's DR lookup for a service: rules for the service's exact host, else those of
    /// the most specific wildcard host; among them the proxy's namespace, then the
    /// service's, then the root namespace, then any other. Rules of the chosen namespace
    /// are merged: the first top-level policy and the first definition of each subset win.
    fn merged(
        &self,
        proxy: &ProxySettings,
        service_host: &str,
        service_ns: &str,
    ) -> Option<MergedRule> {
        let best: Vec<&Resource> = match self.exact.get(service_host) {
            Some(v) => v.clone(),
            None => {
                let len = self
                    .wildcard
                    .iter()
                    .filter(|(h, _)| host::matches(h, service_host))
                    .map(|(h, _)| h.len())
                    .max()?;
                self.wildcard
                    .iter()
                    .filter(|(h, _)| h.len() == len && host::matches(h, service_host))
                    .map(|(_, r)| *r)
                    .collect()
            }
        };
        let ns_rank = |ns: &str| {
            if ns == proxy.namespace {
                0
            } else if ns == service_ns {
                1
            } else if ns == proxy.root_namespace {
                2
            } else {
                3
            }
        };
        let top = best.iter().map(|r| ns_rank(&r.namespace)).min()?;
        let mut merged = MergedRule {
            traffic_policy: None,
            subsets: Vec::new(),
            file: None,
        };
        for r in best.into_iter().filter(|r| ns_rank(&r.namespace) == top) {
            let Some(dr) = r.as_destination_rule() else {
                continue;
            };
            if merged.traffic_policy.is_none() && dr.traffic_policy.is_some() {
                merged.traffic_policy = dr.traffic_policy.clone();
                merged.file = Some(r.origin.file.as_path().to_path_buf());
            }
            for s in &dr.subsets {
                if !merged.subsets.iter().any(|m| m.name == s.name) {
                    merged.subsets.push(s.clone());
                }
            }
            if merged.file.is_none() {
                merged.file = Some(r.origin.file.as_path().to_path_buf());
            }
        }
        Some(merged)
    }
}

fn build_clusters(
    registry: &Registry,
    resources: &[Resource],
    proxy: &ProxySettings,
) -> (Vec<Cluster>, HashMap<ClusterKey, ClusterId>) {
    let mut clusters = Vec::new();
    let mut index = HashMap::new();
    let rules = RuleIndex::build(resources, proxy);
    for svc in &registry.services {
        let rule = rules.merged(proxy, &svc.host, &svc.namespace);
        let service: Arc<str> = svc.host.as_str().into();
        let none = Vec::new();
        let subsets: &Vec<Subset> = rule.as_ref().map(|r| &r.subsets).unwrap_or(&none);
        for port in &svc.ports {
            let all = svc.endpoints_for(port);
            let variants = std::iter::once(None).chain(subsets.iter().map(Some));
            for subset in variants {
                let policy = cluster::effective_policy(
                    rule.as_ref().and_then(|r| r.traffic_policy.as_ref()),
                    subset.and_then(|s| s.traffic_policy.as_ref()),
                    port.number,
                );
                let endpoints: Vec<_> = match subset {
                    None => all.clone(),
                    Some(s) => all
                        .iter()
                        .filter(|e| s.labels.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
                        .cloned()
                        .collect(),
                };
                // Istio: `resolution: NONE` services are ORIGINAL_DST clusters: requests go
                // to the address the client connected to, whatever the load balancer says.
                let lb = if svc.resolution == crate::model::service_entry::Resolution::None {
                    LoadBalancer::Passthrough
                } else {
                    LoadBalancer::from_settings(policy.load_balancer.as_ref())
                };
                let pool = ConnectionPool::from_settings(policy.connection_pool.as_ref());
                let outlier = policy
                    .outlier_detection
                    .as_ref()
                    .map(OutlierPolicy::from_settings);
                let file = rule
                    .as_ref()
                    .and_then(|r| r.file.clone())
                    .unwrap_or_default();
                let mut tls = policy.tls.as_ref().map(|t| client_tls(t, &file));
                // Istio: a DestinationRule's subjectAltNames override the ServiceEntry's;
                // without them, the ServiceEntry's are verified.
                if let Some(t) = tls.as_mut() {
                    if t.subject_alt_names.is_empty()
                        && !t.insecure_skip_verify
                        && t.mode != crate::model::destination_rule::ClientTlsMode::Disable
                    {
                        t.subject_alt_names = svc.subject_alt_names.clone();
                    }
                }
                let key = ClusterKey {
                    service: service.clone(),
                    port: port.number,
                    subset: subset.map(|s| s.name.as_str().into()),
                };
                let fp = fingerprint(
                    &endpoints,
                    &lb,
                    &pool,
                    &outlier,
                    &tls,
                    &svc.subject_alt_names,
                    port.protocol,
                );
                index.insert(key.clone(), ClusterId(clusters.len() as u32));
                clusters.push(Cluster {
                    name: key.name(),
                    key,
                    service_name: svc.short_name().to_string(),
                    service_namespace: svc.namespace.clone(),
                    protocol: port.protocol,
                    endpoints,
                    load_balancer: lb,
                    pool,
                    outlier,
                    tls,
                    service_sans: svc.subject_alt_names.clone(),
                    fingerprint: fp,
                });
            }
        }
    }
    // Istio's catch-all cluster for hosts outside the registry, per outbound mode.
    let c = match proxy.outbound_mode {
        OutboundMode::AllowAny => Cluster::passthrough(),
        OutboundMode::RegistryOnly => Cluster::blackhole(),
    };
    index.insert(c.key.clone(), ClusterId(clusters.len() as u32));
    clusters.push(c);
    // Grown by pushes: up to half of a large Vec<Cluster> would be spare room.
    clusters.shrink_to_fit();
    index.shrink_to_fit();
    (clusters, index)
}

/// The cluster of `outboundTrafficPolicy: ALLOW_ANY`, when that is the mode.
pub(crate) fn passthrough_cluster(rc: &RouteCompiler) -> Option<ClusterId> {
    (rc.proxy.outbound_mode == OutboundMode::AllowAny)
        .then(|| {
            rc.clusters.get(&ClusterKey {
                service: cluster::PASSTHROUGH_CLUSTER.into(),
                port: 0,
                subset: None,
            })
        })
        .flatten()
        .copied()
}

/// The cluster of `outboundTrafficPolicy: REGISTRY_ONLY`, when that is the mode.
fn blackhole_cluster(rc: &RouteCompiler) -> Option<ClusterId> {
    (rc.proxy.outbound_mode == OutboundMode::RegistryOnly)
        .then(|| {
            rc.clusters.get(&ClusterKey {
                service: cluster::BLACKHOLE_CLUSTER.into(),
                port: 0,
                subset: None,
            })
        })
        .flatten()
        .copied()
}

/// Istio's `block_all` virtual host: with `REGISTRY_ONLY`, a request for a host no
/// service or VirtualService claims is answered `502` at once, reported against
/// `BlackHoleCluster` (Istio's `buildCatchAllVirtualHost`; a known host with no matching
/// route stays `404 NR`).
fn block_all_route(id: ClusterId) -> Route {
    Route {
        name: "block_all".into(),
        origin: "block_all (outboundTrafficPolicy REGISTRY_ONLY)".into(),
        matches: Vec::new(),
        action: RouteAction::DirectResponse(route::DirectResponse {
            status: 502,
            body: bytes::Bytes::new(),
            cluster: Some(id),
        }),
        policy: RoutePolicy::shared_default(),
    }
}

/// Istio's `allow_any` virtual host: with `ALLOW_ANY`, a request for a host no service
/// or VirtualService claims goes to its original destination (`PassthroughCluster`).
fn allow_any_route(id: ClusterId) -> Route {
    Route {
        name: "allow_any".into(),
        origin: "allow_any (outboundTrafficPolicy ALLOW_ANY)".into(),
        matches: Vec::new(),
        action: RouteAction::Forward(WeightedClusters {
            destinations: vec![WeightedDestination {
                weight: 1,
                target: route::ClusterChoice::Fixed(id),
                host: cluster::PASSTHROUGH_CLUSTER.into(),
                subset: String::new(),
                request_headers: Default::default(),
                response_headers: Default::default(),
                authority: None,
            }],
            total_weight: 1,
        }),
        policy: RoutePolicy::shared_default(),
    }
}

/// Client TLS with file paths resolved against the DestinationRule's file.
fn client_tls(t: &crate::model::destination_rule::ClientTlsSettings, file: &Path) -> ClientTls {
    let path = |p: &str| (!p.is_empty()).then(|| crate::paths::resolve_path(file, p));
    ClientTls {
        mode: t
            .mode
            .unwrap_or(crate::model::destination_rule::ClientTlsMode::Disable),
        client_certificate: path(&t.client_certificate),
        private_key: path(&t.private_key),
        ca_certificates: path(&t.ca_certificates),
        subject_alt_names: t.subject_alt_names.clone(),
        sni: (!t.sni.is_empty()).then(|| t.sni.clone()),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
    }
}

/// The request-side domains of a service: its host, the Kubernetes short forms, and its
/// plain virtual IPs.
fn service_domains(svc: &registry::Service, proxy_ns: &str) -> Vec<String> {
    let mut d = vec![svc.host.clone()];
    d.extend(host::alt_forms(&svc.host, proxy_ns));
    for a in &svc.addresses {
        if a.prefix_len() == a.max_prefix_len() {
            d.push(a.addr().to_string());
        }
    }
    d
}

fn default_route(rc: &RouteCompiler, svc_host: &str) -> Route {
    let d = crate::model::virtual_service::Destination {
        host: svc_host.to_string(),
        subset: String::new(),
        port: None,
    };
    let (host, target) = rc.resolve(&d, "default");
    Route {
        name: "default".into(),
        origin: format!("default route to {host}"),
        matches: Vec::new(),
        action: RouteAction::Forward(WeightedClusters {
            destinations: vec![WeightedDestination {
                weight: 1,
                target,
                host,
                subset: String::new(),
                request_headers: Default::default(),
                response_headers: Default::default(),
                authority: None,
            }],
            total_weight: 1,
        }),
        policy: RoutePolicy::shared_default(),
    }
}

/// The sidecar route table. VirtualServices bound to the mesh claim their hosts in load
/// order (sidecars do not merge VirtualServices for one host: the first wins). A service
/// without a VirtualService is claimed by the most specific wildcard VirtualService host
/// covering it, else gets a default route.
fn mesh_route_table(rc: &mut RouteCompiler, resources: &[Resource]) -> RouteTable {
    let ctx = RouteContext::Mesh;
    let mut vhosts: Vec<VirtualHost> = Vec::new();
    let mut claimed: HashMap<String, usize> = HashMap::new();
    for r in resources {
        let Spec::VirtualService(v) = &r.spec else {
            continue;
        };
        if v.hosts.is_empty()
            || !ctx.admits(&v.gateways, &r.namespace)
            || !rc.proxy.sees(&r.namespace, &v.export_to)
        {
            continue;
        }
        let hosts: Vec<String> = v
            .hosts
            .iter()
            .map(|h| host::qualify(h, &r.namespace))
            .filter(|h| !claimed.contains_key(h))
            .collect();
        if hosts.is_empty() {
            continue;
        }
        let idx = vhosts.len();
        let mut domains = Vec::new();
        for h in &hosts {
            claimed.insert(h.clone(), idx);
            domains.push(h.clone());
            match rc.registry.get(h) {
                Some(si) => {
                    for d in service_domains(&rc.registry.services[si], &rc.proxy.namespace) {
                        if !domains.contains(&d) {
                            domains.push(d);
                        }
                    }
                }
                None => domains.extend(host::alt_forms(h, &rc.proxy.namespace)),
            }
        }
        let routes = rc.virtual_service(r, v, &ctx);
        vhosts.push(VirtualHost {
            name: r.id(),
            domains,
            routes,
        });
    }
    let wildcard_claims: Vec<(String, usize)> = claimed
        .iter()
        .filter(|(h, _)| host::is_wildcard(h))
        .map(|(h, i)| (h.clone(), *i))
        .collect();
    for svc in &rc.registry.services {
        if claimed.contains_key(&svc.host) {
            continue;
        }
        let domains = service_domains(svc, &rc.proxy.namespace);
        let owner = wildcard_claims
            .iter()
            .filter(|(w, _)| host::matches(w, &svc.host))
            .max_by_key(|(w, _)| w.len())
            .map(|(_, i)| *i);
        match owner {
            Some(i) => vhosts[i].domains.extend(domains),
            None => vhosts.push(VirtualHost {
                name: svc.host.clone(),
                domains,
                routes: vec![default_route(rc, &svc.host)],
            }),
        }
    }
    if !claimed.contains_key("*") {
        if let Some(id) = passthrough_cluster(rc) {
            vhosts.push(VirtualHost {
                name: "allow_any".into(),
                domains: vec!["*".into()],
                routes: vec![allow_any_route(id)],
            });
        } else if let Some(id) = blackhole_cluster(rc) {
            vhosts.push(VirtualHost {
                name: "block_all".into(),
                domains: vec!["*".into()],
                routes: vec![block_all_route(id)],
            });
        }
    }
    let mut table = RouteTable::new("mesh");
    for vh in vhosts {
        table.add(vh);
    }
    table
}

/// Gateway servers of the Gateways that select this proxy, grouped by bind address.
/// A Gateway without a selector is not applied: unlike Istio, where only gateway
/// deployments receive Gateways, every meshproxy could match an empty selector.
fn gateway_servers(
    resources: &[Resource],
    proxy: &ProxySettings,
) -> BTreeMap<SocketAddr, Vec<GatewayServer>> {
    let mut out: BTreeMap<SocketAddr, Vec<GatewayServer>> = BTreeMap::new();
    for r in resources {
        let Some(gw) = r.as_gateway() else { continue };
        if gw.selector.is_empty() || !proxy.selected_by(&gw.selector) {
            continue;
        }
        for s in &gw.servers {
            let Some(port) = &s.port else { continue };
            let ip = if s.bind.is_empty() {
                proxy.gateway_address
            } else {
                match s.bind.parse() {
                    Ok(ip) => ip,
                    Err(_) => continue,
                }
            };
            let Ok(num) = u16::try_from(port.number) else {
                continue;
            };
            let file = r.origin.file.as_path();
            let path = |p: &str| crate::paths::resolve_path(file, p);
            let tls = s.tls.as_ref().and_then(|t| {
                let mode = t.mode?;
                let mut certificates = Vec::new();
                if !t.server_certificate.is_empty() {
                    certificates.push((path(&t.server_certificate), path(&t.private_key)));
                }
                for c in &t.tls_certificates {
                    certificates.push((path(&c.server_certificate), path(&c.private_key)));
                }
                Some(ServerTls {
                    mode,
                    certificates,
                    ca_certificates: (!t.ca_certificates.is_empty())
                        .then(|| path(&t.ca_certificates)),
                    subject_alt_names: t.subject_alt_names.clone(),
                    min_version: t.min_protocol_version,
                    max_version: t.max_protocol_version,
                    alpn: t.alpn_protocols.clone(),
                })
            });
            out.entry(SocketAddr::new(ip, num))
                .or_default()
                .push(GatewayServer {
                    gateway: format!("{}/{}", r.namespace, r.name),
                    name: s.name.clone(),
                    protocol: port.protocol.to_ascii_uppercase(),
                    hosts: s.hosts.clone(),
                    https_redirect: s.tls.as_ref().is_some_and(|t| t.https_redirect),
                    tls,
                });
        }
    }
    out
}

/// Whether a gateway server host entry (`ns/host` or `host`) admits `vs_host` from a
/// VirtualService in `vs_ns`; returns the domain to serve (the narrower of the two).
fn server_admits(entry: &str, gw_ns: &str, vs_ns: &str, vs_host: &str) -> Option<String> {
    let (ns, h) = entry.split_once('/').unwrap_or(("*", entry));
    let ns_ok = match ns {
        "*" => true,
        "." => vs_ns == gw_ns,
        "~" => false,
        other => other == vs_ns,
    };
    if !ns_ok {
        return None;
    }
    let h = h.to_ascii_lowercase();
    if !host::matches(&h, vs_host) {
        return None;
    }
    Some(if host::subset_of(vs_host, &h) {
        vs_host.to_string()
    } else {
        h
    })
}

/// A gateway port's route table. Gateways merge the VirtualServices for one host (load
/// order, catch-all rules moved to the end).
fn gateway_route_table(
    rc: &mut RouteCompiler,
    resources: &[Resource],
    servers: &[GatewayServer],
    gateways: &HashSet<String>,
    port: u16,
) -> RouteTable {
    let ctx = RouteContext::Gateways(gateways.clone());
    let mut per_domain: Vec<(String, Vec<Route>)> = Vec::new();
    for r in resources {
        let Spec::VirtualService(v) = &r.spec else {
            continue;
        };
        if v.hosts.is_empty()
            || !ctx.admits(&v.gateways, &r.namespace)
            || !rc.proxy.sees(&r.namespace, &v.export_to)
        {
            continue;
        }
        let bound: HashSet<String> = v
            .gateways
            .iter()
            .map(|g| qualify_gateway(g, &r.namespace))
            .collect();
        let mut domains = Vec::new();
        for h in &v.hosts {
            let q = if h == "*" {
                "*".to_string()
            } else {
                host::qualify(h, &r.namespace)
            };
            for s in servers.iter().filter(|s| bound.contains(&s.gateway)) {
                let gw_ns = s.gateway.split('/').next().unwrap_or("");
                for entry in &s.hosts {
                    if let Some(d) = server_admits(entry, gw_ns, &r.namespace, &q) {
                        if !domains.contains(&d) {
                            domains.push(d);
                        }
                    }
                }
            }
        }
        if domains.is_empty() {
            continue;
        }
        let routes = rc.virtual_service(r, v, &ctx);
        for d in domains {
            match per_domain.iter_mut().find(|(x, _)| *x == d) {
                Some((_, rs)) => rs.extend(routes.iter().cloned()),
                None => per_domain.push((d, routes.clone())),
            }
        }
    }
    let mut table = RouteTable::new(format!("gateway:{port}"));
    for (domain, mut routes) in per_domain {
        // Stable: catch-alls after everything else, as Istio does when merging.
        routes.sort_by_key(|r| r.matches.is_empty());
        let mut domains = vec![domain.clone()];
        domains.extend(host::alt_forms(&domain, &rc.proxy.namespace));
        table.add(VirtualHost {
            name: domain,
            domains,
            routes,
        });
    }
    table
}
