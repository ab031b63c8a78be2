//! The configuration in force: the compiled snapshot plus the live state of its clusters,
//! swapped together so a request loads both with one atomic load.

use crate::telemetry::labels::{Peer, Service};
use crate::tls::gateway::GatewayTls;
use crate::tls::mesh::MeshTls;
use crate::upstream::cluster_state::ClusterState;
use arc_swap::ArcSwapOption;
use meshproxy_config::compile::cluster::{
    Cluster, ClusterKey, ConnectionPool, Endpoint, EndpointAddress, LoadBalancer, Protocol,
};
use meshproxy_config::compile::listener::ListenerRole;
use meshproxy_config::compile::Snapshot;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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
    /// Live state per cluster, same order as `snapshot.clusters`.
    pub clusters: Vec<Arc<ClusterState>>,
    /// Inbound listeners' local clusters.
    pub inbound: Vec<InboundCluster>,
    /// This workload's metric labels.
    pub local_peer: Arc<Peer>,
    /// Labels of a peer nothing is known about.
    pub unknown_peer: Arc<Peer>,
    /// Labels of no service.
    pub unknown_service: Arc<Service>,
    /// `destination_service` of inbound requests: this workload's service.
    pub inbound_service: Arc<Service>,
    /// TLS of the Gateway listeners that terminate it, by listener name.
    pub gateway_tls: HashMap<String, Arc<GatewayTls>>,
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
        let mut old: HashMap<&ClusterKey, &Arc<ClusterState>> = HashMap::new();
        if let Some(p) = previous {
            for s in &p.clusters {
                old.insert(&s.key, s);
            }
            for i in &p.inbound {
                old.insert(&i.state.key, &i.state);
            }
        }
        let reuse = |c: &Cluster| match old.get(&c.key) {
            Some(s) if s.fingerprint == c.fingerprint => (*s).clone(),
            _ => {
                let state = ClusterState::new(c, workers);
                let _ = state.mesh.set(mesh.clone());
                Arc::new(state)
            }
        };
        let clusters = snapshot.clusters.iter().map(reuse).collect();
        let mut inbound = Vec::new();
        for l in &snapshot.listeners {
            if let ListenerRole::Inbound { forward_to } = &l.role {
                let key = ClusterKey {
                    service: format!("inbound|{}||", forward_to.port()).into(),
                    port: forward_to.port(),
                    subset: None,
                };
                let endpoints = vec![Endpoint {
                    address: EndpointAddress::Socket(*forward_to),
                    labels: BTreeMap::new(),
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
                let cluster = Cluster {
                    name: key.service.to_string(),
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
                };
                let state = reuse(&cluster);
                inbound.push(InboundCluster {
                    listener: l.name.clone(),
                    cluster,
                    state,
                    forward_to: *forward_to,
                });
            }
        }
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
        Active {
            local_peer: Peer::local(&snapshot.proxy),
            unknown_peer: Peer::unknown(),
            unknown_service: Service::unknown(),
            inbound_service,
            snapshot,
            clusters,
            inbound,
            gateway_tls: HashMap::new(),
        }
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
