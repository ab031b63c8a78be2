//! The configuration in force: the compiled snapshot plus the live state of its clusters,
//! swapped together so a request loads both with one atomic load.
//!
//! A cluster's live state (endpoint pools, outlier state, circuit breakers, metric labels)
//! is made the first time a connection or request uses the cluster, not for every cluster
//! when the config is put in force: a sidecar in a large mesh knows thousands of services
//! and talks to a few (linkerd2-proxy resolves destinations on demand for the same reason).
//! Each cluster has a lock-free slot (`OnceLock`), so a warm cluster costs one atomic load
//! and a cold one is built once, without a global lock (docs/performance.md).

use crate::telemetry::labels::{Peer, Service};
use crate::tls::gateway::GatewayTls;
use crate::tls::mesh::MeshTls;
use crate::upstream::cluster_state::ClusterState;
use crate::upstream::resolver::Resolver;
use arc_swap::ArcSwapOption;
use meshproxy_config::compile::cluster::{
    Cluster, ClusterKey, ConnectionPool, Endpoint, EndpointAddress, LoadBalancer, Protocol,
};
use meshproxy_config::compile::listener::ListenerRole;
use meshproxy_config::compile::snapshot::ClusterId;
use meshproxy_config::compile::Snapshot;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The local-app cluster of an INBOUND listener.
pub struct InboundCluster {
    /// Listener name.
    pub listener: String,
    /// Synthesized cluster (`inbound|<port>||`).
    pub cluster: Cluster,
    /// Its state.
    pub state: Arc<ClusterState>,
    /// The listener's `forwardTo`: where connections that were not intercepted go (an
    /// intercepted one goes to its original destination port on this address).
    pub forward_to: std::net::SocketAddr,
}

/// A snapshot and the live state of its clusters (index-aligned with `snapshot.clusters`).
pub struct Active {
    /// The compiled config.
    pub snapshot: Arc<Snapshot>,
    /// Live state per cluster, same order as `snapshot.clusters`; empty until first use.
    clusters: Box<[OnceLock<Arc<ClusterState>>]>,
    /// Worker count the pools of new states are sized for.
    workers: usize,
    /// The server's mesh identity, handed to each state when it is made.
    mesh: Arc<ArcSwapOption<MeshTls>>,
    /// The DNS client of `spec.dns`, handed to each state when it is made (kept across
    /// reloads while `spec.dns` is unchanged).
    dns: Arc<Resolver>,
    /// Inbound listeners' local clusters.
    pub inbound: Vec<InboundCluster>,
    /// This workload's metric labels.
    pub local_peer: Arc<Peer>,
    /// This workload as tracing names it: `<canonical service>.<namespace>`.
    pub trace_service: Arc<str>,
    /// Labels of a peer nothing is known about.
    pub unknown_peer: Arc<Peer>,
    /// Labels of no service.
    pub unknown_service: Arc<Service>,
    /// `destination_service` of inbound requests: this workload's service.
    pub inbound_service: Arc<Service>,
    /// TLS of the Gateway listeners that terminate it, by listener name.
    pub gateway_tls: HashMap<String, Arc<GatewayTls>>,
    /// The keys of the RequestAuthentication rules (`None`: no rule applies).
    pub authn: Option<crate::authn::Authn>,
    /// Live counts of the RateLimitPolicy rules (`None`: no rule applies).
    pub rate_limiter: Option<Arc<crate::ratelimit::RateLimiter>>,
}

impl Active {
    /// Builds the live state for `snapshot`, reusing `previous` state for every cluster
    /// whose identity and fingerprint are unchanged (pools, counters, ejections survive).
    pub fn build(
        snapshot: Arc<Snapshot>,
        previous: Option<&Active>,
        workers: usize,
        mesh: &Arc<ArcSwapOption<MeshTls>>,
    ) -> Active {
        // Only states that were made can be kept; the others stay to be made on demand.
        let mut old: HashMap<&ClusterKey, &Arc<ClusterState>> = HashMap::new();
        if let Some(p) = previous {
            for s in p.clusters.iter().filter_map(OnceLock::get) {
                old.insert(&s.key, s);
            }
            for i in &p.inbound {
                old.insert(&i.state.key, &i.state);
            }
        }
        let dns = match previous {
            Some(p) if p.dns.settings() == &snapshot.proxy.dns => p.dns.clone(),
            _ => Resolver::new(&snapshot.proxy.dns),
        };
        let kept = |c: &Cluster| match old.get(&c.key) {
            Some(s) if s.fingerprint == c.fingerprint && s.resolves_with(&dns) => {
                Some((*s).clone())
            }
            _ => None,
        };
        let clusters = snapshot
            .clusters
            .iter()
            .map(|c| match kept(c) {
                Some(s) => OnceLock::from(s),
                None => OnceLock::new(),
            })
            .collect();
        let inbound = snapshot
            .listeners
            .iter()
            .filter_map(|l| match &l.role {
                ListenerRole::Inbound { forward_to } => Some((l.name.clone(), *forward_to)),
                _ => None,
            })
            .map(|(listener, forward_to)| {
                let cluster = inbound_cluster(&snapshot, forward_to);
                let state =
                    kept(&cluster).unwrap_or_else(|| new_state(&cluster, workers, mesh, &dns));
                InboundCluster {
                    listener,
                    cluster,
                    state,
                    forward_to,
                }
            })
            .collect();
        let p = &snapshot.proxy;
        let inbound_service = Arc::new(Service {
            id: crate::telemetry::labels::next_id(),
            host: format!(
                "{}.{}.svc.{}",
                p.name,
                p.namespace,
                meshproxy_config::host::DEFAULT_DOMAIN_SUFFIX
            )
            .into(),
            name: p.name.as_str().into(),
            namespace: p.namespace.as_str().into(),
            version: p
                .labels
                .get("version")
                .map(|v| v.as_str())
                .unwrap_or("unknown")
                .into(),
        });
        let rate_limiter = crate::ratelimit::RateLimiter::build(
            &snapshot.rate_limits,
            previous.and_then(|p| p.rate_limiter.as_deref()),
        );
        let local_peer = Peer::local(&snapshot.proxy);
        Active {
            rate_limiter,
            authn: crate::authn::Authn::build(&snapshot, previous.and_then(|p| p.authn.as_ref())),
            trace_service: format!("{}.{}", local_peer.canonical_service, local_peer.namespace)
                .into(),
            local_peer,
            unknown_peer: Peer::unknown(),
            unknown_service: Service::unknown(),
            inbound_service,
            snapshot,
            clusters,
            workers,
            mesh: mesh.clone(),
            dns,
            inbound,
            gateway_tls: HashMap::new(),
        }
    }

    /// The live state of cluster `id`, made on first use. Panics on an id that is not of
    /// this snapshot, like indexing (ids come from the same snapshot's route tables).
    pub fn cluster(&self, id: ClusterId) -> &Arc<ClusterState> {
        let i = id.0 as usize;
        self.clusters[i].get_or_init(|| {
            new_state(
                &self.snapshot.clusters[i],
                self.workers,
                &self.mesh,
                &self.dns,
            )
        })
    }

    /// The live state of cluster `id` (made on first use), `None` for an unknown id.
    pub fn cluster_state(&self, id: ClusterId) -> Option<&Arc<ClusterState>> {
        if (id.0 as usize) < self.clusters.len() {
            Some(self.cluster(id))
        } else {
            None
        }
    }

    /// The live state of cluster `id` if something has used it; never makes one
    /// (admin pages, metrics and sweeps must not build state for every cluster).
    pub fn used_cluster(&self, id: ClusterId) -> Option<&Arc<ClusterState>> {
        self.clusters.get(id.0 as usize)?.get()
    }

    /// The live states made so far (and the inbound clusters'), for periodic work.
    pub fn used_clusters(&self) -> impl Iterator<Item = &Arc<ClusterState>> {
        self.clusters
            .iter()
            .filter_map(OnceLock::get)
            .chain(self.inbound.iter().map(|i| &i.state))
    }

    /// Worker count the pools are sized for.
    pub fn workers(&self) -> usize {
        self.workers
    }
}

/// Fresh live state for `c`, joined to the server's mesh identity; its DNS names (if
/// any) start resolving through `dns`.
fn new_state(
    c: &Cluster,
    workers: usize,
    mesh: &Arc<ArcSwapOption<MeshTls>>,
    dns: &Arc<Resolver>,
) -> Arc<ClusterState> {
    let state = ClusterState::with_resolver(c, workers, Some(dns));
    let _ = state.mesh.set(mesh.clone());
    Arc::new(state)
}

/// The local-app cluster of an INBOUND listener forwarding to `forward_to`
/// (`inbound|<port>||`, one endpoint, the caller's protocol).
fn inbound_cluster(snapshot: &Snapshot, forward_to: std::net::SocketAddr) -> Cluster {
    let key = ClusterKey {
        service: format!("inbound|{}||", forward_to.port()).into(),
        port: forward_to.port(),
        subset: None,
    };
    let endpoints = vec![Endpoint {
        address: EndpointAddress::Socket(forward_to),
        labels: Default::default(),
        weight: 1,
        service_account: None,
    }];
    let pool = ConnectionPool {
        // The local app speaks whatever the caller spoke (Istio inbound).
        use_client_protocol: true,
        ..ConnectionPool::default()
    };
    let fingerprint = meshproxy_config::compile::cluster::fingerprint(
        &endpoints,
        &LoadBalancer::RoundRobin,
        &pool,
        &None,
        &None,
        &[],
        Protocol::Http,
    );
    Cluster {
        name: key.service.clone(),
        key,
        service_name: snapshot.proxy.name.clone(),
        service_namespace: snapshot.proxy.namespace.clone(),
        protocol: Protocol::Http,
        endpoints,
        load_balancer: LoadBalancer::RoundRobin,
        pool,
        outlier: None,
        tls: None,
        service_sans: Vec::new(),
        fingerprint,
        policy_origins: Default::default(),
    }
}

/// Loads the certificates of every Gateway listener that terminates TLS; a file that
/// cannot be loaded refuses the whole config.
pub fn gateway_tls(snapshot: &Snapshot) -> Result<HashMap<String, Arc<GatewayTls>>, String> {
    let mut out = HashMap::new();
    for l in &snapshot.listeners {
        if let ListenerRole::Gateway { servers } = &l.role {
            if let Some(t) = GatewayTls::build(servers)? {
                out.insert(l.name.clone(), Arc::new(t));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(services: &[(&str, &str)]) -> Arc<Snapshot> {
        let mut y = String::from(
            "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {name: t}\nspec:\n  \
             listeners:\n  - {name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}\n---\n",
        );
        for (name, address) in services {
            y.push_str(&format!(
                "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\n\
                 spec:\n  hosts: [{name}.default.svc.cluster.local]\n  \
                 ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  \
                 endpoints:\n  - {{address: {address}, labels: {{version: v1}}}}\n---\n"
            ));
        }
        Arc::new(meshproxy_config::compile::load_str("t.yaml", &y).expect("valid config"))
    }

    fn id(s: &Snapshot, name: &str) -> ClusterId {
        s.find_cluster(&ClusterKey {
            service: format!("{name}.default.svc.cluster.local").into(),
            port: 80,
            subset: None,
        })
        .expect("cluster")
    }

    #[test]
    fn state_is_made_on_first_use_once() {
        let mesh = Arc::new(ArcSwapOption::empty());
        let snap = snapshot(&[("a", "10.0.0.1"), ("b", "10.0.0.2")]);
        let active = Active::build(snap.clone(), None, 2, &mesh);
        assert_eq!(active.used_clusters().count(), 0, "nothing made at load");
        let a = id(&snap, "a");
        assert!(active.used_cluster(a).is_none());
        let first = active.cluster(a).clone();
        assert!(Arc::ptr_eq(&first, active.cluster(a)), "made once");
        assert!(Arc::ptr_eq(&first, active.used_cluster(a).expect("used")));
        assert_eq!(first.endpoints().len(), 1);
        assert_eq!(first.endpoints()[0].labels.get("version").unwrap(), "v1");
        assert!(
            first.mesh.get().is_some(),
            "the state joins the mesh identity"
        );
        assert!(active.used_cluster(id(&snap, "b")).is_none());
        assert!(active.cluster_state(ClusterId(99)).is_none());
    }

    #[test]
    fn reload_keeps_used_unchanged_states_and_leaves_the_rest_lazy() {
        let mesh = Arc::new(ArcSwapOption::empty());
        let old_snap = snapshot(&[("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")]);
        let old = Active::build(old_snap.clone(), None, 1, &mesh);
        let a = old.cluster(id(&old_snap, "a")).clone();
        let b = old.cluster(id(&old_snap, "b")).clone();
        // b's endpoint changes; c was never used.
        let new_snap = snapshot(&[("c", "10.0.0.3"), ("b", "10.0.0.9"), ("a", "10.0.0.1")]);
        let new = Active::build(new_snap.clone(), Some(&old), 1, &mesh);
        let kept = new.used_cluster(id(&new_snap, "a")).expect("a kept");
        assert!(
            Arc::ptr_eq(kept, &a),
            "unchanged: the same pools and counters"
        );
        assert!(
            new.used_cluster(id(&new_snap, "b")).is_none(),
            "changed: made anew"
        );
        assert!(!Arc::ptr_eq(new.cluster(id(&new_snap, "b")), &b));
        assert!(new.used_cluster(id(&new_snap, "c")).is_none());
    }
    /// A DNS ServiceEntry `d` resolved through `spec.dns` (a server nobody answers on:
    /// the lookups only have to exist, not succeed).
    fn dns_snapshot(refresh: &str) -> Arc<Snapshot> {
        let y = format!(
            "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: t}}\nspec:\n  \
             listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n  \
             dns: {{resolver: \"127.0.0.1:9\", refreshRate: {refresh}}}\n---\n\
             apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: d}}\n\
             spec:\n  hosts: [d.default.svc.cluster.local]\n  \
             ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: DNS\n"
        );
        Arc::new(meshproxy_config::compile::load_str("t.yaml", &y).expect("valid config"))
    }

    #[test]
    fn a_dns_cluster_is_kept_while_spec_dns_is_unchanged() {
        let mesh = Arc::new(ArcSwapOption::empty());
        let snap = dns_snapshot("30s");
        let old = Active::build(snap.clone(), None, 1, &mesh);
        let d = old.cluster(id(&snap, "d")).clone();
        assert_eq!(
            d.dns_names().len(),
            1,
            "its name is resolved in the background"
        );
        let same = Active::build(dns_snapshot("30s"), Some(&old), 1, &mesh);
        assert!(Arc::ptr_eq(
            same.used_cluster(id(&snap, "d")).expect("kept"),
            &d
        ));
        let other = Active::build(dns_snapshot("45s"), Some(&same), 1, &mesh);
        assert!(
            other.used_cluster(id(&snap, "d")).is_none(),
            "another resolver setting: resolved anew"
        );
    }
}
