//! The compiler: validated resources → an immutable, pre-indexed [`Snapshot`].
//!
//! Everything the data path would otherwise work out per request is done here once:
//! host expansion and the request-side host forms, first-match route lists with compiled
//! matchers, config-time filters (`sourceLabels`, `sourceNamespace`, `gateways`), weighted
//! destinations resolved to clusters, the effective DestinationRule policy of every
//! (service, port, subset), subset membership of endpoints, and listeners.

pub mod authz;
pub mod cluster;
pub mod gateway_routes;
pub mod http_routes;
pub mod intern;
pub mod jwt;
pub mod listener;
pub mod lookup;
pub mod match_explain;
pub mod matcher;
pub mod peer_auth;
pub mod proxy_settings;
pub mod rate_limit;
pub mod registry;
pub mod route;
pub mod route_table;
pub mod services;
pub mod sidecar_scope;
pub mod snapshot;
pub mod tcp_routes;
pub mod telemetry;
pub mod trace_provider;

use crate::diag::Diagnostics;
use crate::host;
use crate::model::proxy::{Direction, ListenerProtocol, OutboundMode};
use crate::model::Resource;
use crate::validate::MissingFiles;
use cluster::ClusterKey;
use http_routes::{RouteCompiler, RouteContext};
use listener::{Listener, ListenerRole};
use matcher::RegexCache;
use proxy_settings::ProxySettings;
use route::{Route, RouteAction, RoutePolicy, WeightedClusters, WeightedDestination};
use route_table::{RouteTable, VirtualHost};
use sha2::{Digest, Sha256};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

pub use snapshot::{ClusterId, Snapshot};

/// Called with the name of each step of [`load_reusing`] as it ends, when set: the
/// `footprint` example reads its counting allocator there to tell which step a load's
/// memory peaks in (docs/performance.md). The proxy never sets it.
pub static STEP_HOOK: std::sync::OnceLock<fn(&'static str)> = std::sync::OnceLock::new();

fn step(name: &'static str) {
    if let Some(hook) = STEP_HOOK.get() {
        hook(name);
    }
}

/// Loads, validates and compiles the configuration at `paths` to be served (`run`, a
/// reload): a certificate, key or CA file that cannot be read is an error. Errors refuse
/// the whole config; warnings travel in [`Snapshot::warnings`].
pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<Snapshot, Diagnostics> {
    load_reusing(paths, None)
}

/// Like [`load`] for a reload: what did not change is shared with `previous`, the
/// snapshot in force, instead of being built again beside it. A document whose text is
/// unchanged keeps the text in force, and when no ServiceEntry, DestinationRule or Proxy
/// document changed the registry and clusters are those in force
/// ([`services`]). The result is the same as [`load`]'s.
pub fn load_reusing<P: AsRef<Path>>(
    paths: &[P],
    previous: Option<&Snapshot>,
) -> Result<Snapshot, Diagnostics> {
    let known = previous.map(|p| p.texts()).unwrap_or_default();
    let loaded = crate::loader::load_paths_sharing(paths, &known, previous.is_some());
    drop(known);
    step("parse");
    let mut resources = loaded.resources;
    let warnings = checked(&resources, loaded.diagnostics, MissingFiles::Refuse)?;
    step("validate");
    let proxy = ProxySettings::from_resources(&resources);
    let services = services::Services::for_config(&resources, &proxy, previous);
    step("services");
    // Route status reads the registry's hosts: before the ServiceEntries are released.
    let gateway_api = crate::gateway_api::status(&resources);
    services::release_inputs(&mut resources);
    let mut snap = compile_with(&resources, warnings, proxy, services, previous);
    snap.gateway_api = gateway_api;
    // Moved, not copied (their names and texts). Into a list of its own size: collected
    // in place, the sources would keep the documents' larger block for the life of the
    // snapshot (the allocator does not shrink a block by less than half).
    snap.resources = Vec::with_capacity(resources.len());
    snap.resources
        .extend(resources.into_iter().map(snapshot::Source::from));
    step("the rest");
    Ok(snap)
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

/// [`load_documents`] compiled for another workload: `labels` replace the Proxy's workload
/// labels before anything is compiled, so VirtualService `sourceLabels` and workload
/// selectors are decided for that workload, as Istio decides them when it generates the
/// workload's own routes (`meshproxy explain --source-labels`).
pub fn load_documents_for_workload<P: AsRef<Path>>(
    paths: &[P],
    missing_files: MissingFiles,
    labels: BTreeMap<String, String>,
) -> Result<Snapshot, Diagnostics> {
    let loaded = crate::loader::load_paths(paths);
    let warnings = checked(&loaded.resources, loaded.diagnostics, missing_files)?;
    let mut proxy = ProxySettings::from_resources(&loaded.resources);
    proxy.labels = labels;
    let services = services::Services::for_config(&loaded.resources, &proxy, None);
    let mut snap = compile_with(&loaded.resources, warnings, proxy, services, None);
    snap.gateway_api = crate::gateway_api::status(&loaded.resources);
    snap.resources = loaded
        .resources
        .iter()
        .map(snapshot::Source::from)
        .collect();
    Ok(snap)
}

/// Like [`load`] for a config held in memory (the embedded demo), named `name` in errors.
pub fn load_str(name: &str, text: &str) -> Result<Snapshot, Diagnostics> {
    let mut loaded = crate::loader::Loaded::default();
    crate::loader::load_str(Path::new(name), text, &mut loaded);
    crate::gateway_api::expand(&mut loaded.resources, &mut loaded.diagnostics);
    finish(&loaded.resources, loaded.diagnostics, MissingFiles::Refuse)
}

fn finish(
    resources: &[Resource],
    diags: Diagnostics,
    missing_files: MissingFiles,
) -> Result<Snapshot, Diagnostics> {
    let warnings = checked(resources, diags, missing_files)?;
    Ok(compile(resources, warnings))
}

/// Validates `resources`: the problems found (load problems in `diags` first), in file
/// order, when one is an error; else the warnings.
fn checked(
    resources: &[Resource],
    mut diags: Diagnostics,
    missing_files: MissingFiles,
) -> Result<Diagnostics, Diagnostics> {
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
    Ok(diags)
}

/// Compiles validated resources. `warnings` are carried into the snapshot. The snapshot
/// keeps each document's source text, not its typed form (see [`snapshot::Source`]).
pub fn compile(resources: &[Resource], warnings: Diagnostics) -> Snapshot {
    let proxy = ProxySettings::from_resources(resources);
    let services = services::Services::for_config(resources, &proxy, None);
    let mut snap = compile_with(resources, warnings, proxy, services, None);
    snap.gateway_api = crate::gateway_api::status(resources);
    snap.resources = resources.iter().map(snapshot::Source::from).collect();
    snap
}

/// [`compile`] with the proxy settings and services of `resources` already made; route
/// parts equal to those of `previous` (the snapshot in force) are shared with it.
fn compile_with(
    resources: &[Resource],
    mut warnings: Diagnostics,
    proxy: ProxySettings,
    services: services::Services,
    previous: Option<&Snapshot>,
) -> Snapshot {
    let services::Services {
        registry,
        clusters,
        index: cluster_index,
    } = services;
    let consistent_hash: HashSet<ClusterId> = clusters
        .iter()
        .enumerate()
        .filter(|(_, c)| c.load_balancer.is_consistent_hash())
        .map(|(i, _)| ClusterId(i as u32))
        .collect();

    let mut regex = RegexCache::default();
    let mut interner = intern::Interner::sharing_with(previous);
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
    let mut tables = Tables::default();
    sidecar_tables(&mut rc, resources, &mut tables);
    step("sidecar route tables");
    gateway_routes::gateway_tables(&mut rc, resources, &mut tables);
    for t in &mut tables.route_tables {
        t.shrink_to_fit();
    }
    let version = content_hash(resources);
    let peer_authn = peer_auth::PeerAuthn::compile(resources, &proxy);
    let authz = authz::Authz::compile(resources, &proxy);
    let telemetry =
        telemetry::TelemetryPolicy::compile(resources, &proxy, &registry, &mut warnings);
    let jwt_authn = jwt::JwtAuthn::compile(resources, &proxy);
    let rate_limits = rate_limit::RateLimits::compile(resources, &proxy);
    Snapshot {
        // Set by the callers: the route status needs the ServiceEntries, which a reload
        // releases before compiling.
        gateway_api: Vec::new(),
        telemetry,
        rate_limits,
        version,
        loaded_at: SystemTime::now(),
        peer_authn,
        authz,
        jwt_authn,
        proxy,
        listeners: tables.listeners,
        route_tables: tables.route_tables,
        tcp_route_tables: tables.tcp_route_tables,
        mesh_tcp_routes: tables.mesh_tcp_routes,
        clusters,
        cluster_index,
        registry,
        // Set by the callers, from the documents they own or borrow.
        resources: Vec::new(),
        warnings,
    }
}

/// The listeners of a snapshot and the route tables they use.
#[derive(Default)]
struct Tables {
    listeners: Vec<Listener>,
    route_tables: Vec<RouteTable>,
    tcp_route_tables: Vec<tcp_routes::TcpRouteTable>,
    /// The sidecar's TCP route table, when the proxy has an outbound listener.
    mesh_tcp_routes: Option<usize>,
}

/// The `Proxy` document's listeners, with the mesh route table and the mesh TCP route
/// table when one of them is outbound.
fn sidecar_tables(rc: &mut RouteCompiler, resources: &[Resource], t: &mut Tables) {
    let proxy = rc.proxy;
    let has_outbound = proxy
        .listeners
        .iter()
        .any(|l| l.direction == Direction::Outbound);
    let mesh_table = has_outbound.then(|| {
        t.route_tables.push(mesh_route_table(rc, resources));
        t.route_tables.len() - 1
    });
    // Also needed by HTTP listeners: a `CONNECT` tunnel is routed by the `tls` rules.
    t.mesh_tcp_routes = has_outbound.then(|| {
        t.tcp_route_tables.push(tcp_routes::compile(
            rc,
            resources,
            &tcp_routes::TcpContext::Mesh,
        ));
        t.tcp_route_tables.len() - 1
    });
    for l in &proxy.listeners {
        // Sidecar TCP listeners route by VirtualService `tls`/`tcp` rules bound to mesh;
        // AUTO listeners by them for what their detection finds not to be HTTP.
        let tcp_routes = (l.protocol != ListenerProtocol::Http
            && l.direction == Direction::Outbound)
            .then_some(t.mesh_tcp_routes)
            .flatten();
        t.listeners.push(Listener {
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
        matches: Arc::default(),
        action: RouteAction::DirectResponse(Box::new(route::DirectResponse {
            status: 502,
            body: bytes::Bytes::new(),
            cluster: Some(id),
        })),
        policy: RoutePolicy::shared_default(),
    }
}

/// Istio's `allow_any` virtual host: with `ALLOW_ANY`, a request for a host no service
/// or VirtualService claims goes to its original destination (`PassthroughCluster`).
fn allow_any_route(id: ClusterId) -> Route {
    Route {
        name: "allow_any".into(),
        origin: "allow_any (outboundTrafficPolicy ALLOW_ANY)".into(),
        matches: Arc::default(),
        action: RouteAction::Forward(WeightedClusters {
            destinations: vec![WeightedDestination {
                weight: 1,
                target: route::ClusterChoice::Fixed(id),
                host: cluster::PASSTHROUGH_CLUSTER.into(),
                subset: String::new(),
                headers: None,
            }]
            .into(),
            total_weight: 1,
        }),
        policy: RoutePolicy::shared_default(),
    }
}

/// The request-side domains of a service: its host, the Kubernetes short forms, and its
/// plain virtual IPs.
fn service_domains(svc: &registry::Service, proxy_ns: &str) -> Vec<Arc<str>> {
    let mut d: Vec<Arc<str>> = vec![svc.host.as_str().into()];
    d.extend(
        host::alt_forms(&svc.host, proxy_ns)
            .into_iter()
            .map(Arc::from),
    );
    for a in &svc.addresses {
        if a.prefix_len() == a.max_prefix_len() {
            d.push(a.addr().to_string().into());
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
        matches: Arc::default(),
        action: RouteAction::Forward(WeightedClusters {
            destinations: vec![WeightedDestination {
                weight: 1,
                target,
                host,
                subset: String::new(),
                headers: None,
            }]
            .into(),
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
    let proxy = rc.proxy;
    for (r, v) in ctx.virtual_services(resources, proxy) {
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
        let mut domains: Vec<Arc<str>> = Vec::new();
        for h in &hosts {
            claimed.insert(h.clone(), idx);
            domains.push(h.as_str().into());
            match rc.registry.get(h) {
                Some(si) => {
                    for d in service_domains(&rc.registry.services[si], &rc.proxy.namespace) {
                        if !domains.contains(&d) {
                            domains.push(d);
                        }
                    }
                }
                None => domains.extend(
                    host::alt_forms(h, &rc.proxy.namespace)
                        .into_iter()
                        .map(Arc::from),
                ),
            }
        }
        let routes = rc.virtual_service(r, &v, &ctx);
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
    RouteTable::from_virtual_hosts("mesh", vhosts)
}
