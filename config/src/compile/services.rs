//! The service side of a snapshot: the registry (ServiceEntries), the clusters (the
//! effective DestinationRule policy of every service, port and subset) and their index.
//!
//! They depend only on the ServiceEntry, DestinationRule and Proxy documents, so a reload
//! whose documents of those kinds are unchanged — a route change, the common case — keeps
//! the ones in force instead of building copies: at 10,000 services they are ~20 MB that
//! would otherwise exist twice while the reload compiles (docs/performance.md, "Memory
//! with many services"). Cluster ids stay valid: the clusters are the very same.

use super::cluster::{
    self, fingerprint, ClientTls, Cluster, ClusterKey, ConnectionPool, Endpoint, LoadBalancer,
    OutlierPolicy,
};
use super::proxy_settings::ProxySettings;
use super::registry::{Registry, Service, ServicePort};
use super::snapshot::{ClusterId, Snapshot, Source};
use crate::host;
use crate::model::destination_rule::{Subset, TrafficPolicy};
use crate::model::proxy::OutboundMode;
use crate::model::{Kind, Resource, Spec};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// A snapshot's registry, clusters and cluster index, as one config compiles them.
pub(crate) struct Services {
    /// Services.
    pub registry: Arc<Registry>,
    /// Clusters, indexed by [`ClusterId`].
    pub clusters: Arc<[Cluster]>,
    /// Cluster lookup by identity.
    pub index: Arc<HashMap<ClusterKey, ClusterId>>,
}

impl Services {
    /// The services of `resources`: those of `previous` (the snapshot in force) when the
    /// documents they are built from are the same, else built anew.
    pub(crate) fn for_config(
        resources: &[Resource],
        proxy: &ProxySettings,
        previous: Option<&Snapshot>,
    ) -> Services {
        if let Some(p) = previous.filter(|p| same_inputs(&p.resources, resources)) {
            return Services {
                registry: p.registry.clone(),
                clusters: p.clusters.clone(),
                index: p.cluster_index.clone(),
            };
        }
        // Istio: what the workload's Sidecar does not import does not exist for it.
        let registry = Registry::build(resources, |r, export, host, has_port| {
            proxy.sees(&r.namespace, export)
                && proxy
                    .sidecar
                    .as_ref()
                    .is_none_or(|s| s.imports(&r.namespace, host, has_port))
        });
        let (clusters, index) = build_clusters(&registry, resources, proxy);
        Services {
            registry: Arc::new(registry),
            clusters: clusters.into(),
            index: Arc::new(index),
        }
    }
}

/// Drops the typed specs of the ServiceEntries once the services are made: nothing after
/// reads them (their texts stay), and at 10,000 services they are 13 MB that would
/// otherwise be held while the route tables are compiled.
pub(crate) fn release_inputs(resources: &mut [Resource]) {
    for r in resources {
        if let Spec::ServiceEntry(_) = r.spec {
            r.spec = Spec::Deferred(crate::model::Deferred {
                l4_rules: false,
                delegates: false,
                on_mesh: false,
                on_gateways: false,
            });
        }
    }
}

/// The kinds the registry and the clusters are built from: ServiceEntries (and the
/// WorkloadEntries their `workloadSelector` takes; the Sidecar that scopes them, and the
/// Gateways that decide whether a Sidecar applies), the
/// DestinationRules applied to them, and the Proxy (its namespace decides visibility, its
/// labels workload selectors, its outbound mode the catch-all cluster).
fn is_input(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::ServiceEntry
            | Kind::DestinationRule
            | Kind::Proxy
            | Kind::WorkloadEntry
            | Kind::Sidecar
            | Kind::Gateway
    )
}

/// Whether `new` has the same service documents as the snapshot whose sources are `old`:
/// the same texts in the same order, from the same files (a DestinationRule's TLS file
/// paths are relative to its file). Texts an unchanged document shares with the snapshot
/// in force compare by pointer first.
fn same_inputs(old: &[Source], new: &[Resource]) -> bool {
    let old = old.iter().filter(|s| is_input(s.kind));
    let new = new.iter().filter(|r| is_input(r.kind));
    old.map(|s| (s.kind, &s.origin.file, &s.raw))
        .eq(new.map(|r| (r.kind, &r.origin.file, &r.raw)))
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
                let c = cluster(svc, port, rule.as_ref(), subset, &service, &all);
                index.insert(c.key.clone(), ClusterId(clusters.len() as u32));
                clusters.push(c);
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

/// The cluster of one port of `svc`, for one of its subsets or (`None`) for all of its
/// endpoints (`all`), with the effective policy of `rule`.
fn cluster(
    svc: &Service,
    port: &ServicePort,
    rule: Option<&MergedRule>,
    subset: Option<&Subset>,
    service: &Arc<str>,
    all: &[Endpoint],
) -> Cluster {
    let policy = cluster::effective_policy(
        rule.and_then(|r| r.traffic_policy.as_ref()),
        subset.and_then(|s| s.traffic_policy.as_ref()),
        port.number,
    );
    let endpoints: Vec<_> = match subset {
        None => all.to_vec(),
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
    let file = rule.and_then(|r| r.file.clone()).unwrap_or_default();
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
    Cluster {
        name: key.name().into(),
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
        policy_origins: policy.origins,
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
