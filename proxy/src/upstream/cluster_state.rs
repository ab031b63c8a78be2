//! Live state of an upstream cluster: its endpoints with their connection pools and
//! active-request counts, load-balancer cursors and hash tables. It outlives a config
//! snapshot: a reload that leaves a cluster's fingerprint unchanged keeps its state.

use super::hash_ring::{Maglev, Ring};
use super::pool::EndpointPool;
use meshproxy_config::compile::cluster::{
    Cluster, ClusterKey, EndpointAddress, HashAlgorithm, LoadBalancer,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// One endpoint of a cluster.
pub struct EndpointState {
    /// Where it is.
    pub address: EndpointAddress,
    /// `ip:port` (or name) for logs.
    pub name: String,
    /// Load-balancing weight.
    pub weight: u32,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Requests in flight (least-request balancing).
    pub active_requests: AtomicU32,
    /// Pooled connections.
    pub pool: EndpointPool,
}

impl EndpointState {
    /// Counts a request as active until the guard drops.
    pub fn start_request(self: &Arc<Self>) -> ActiveRequest {
        self.active_requests.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(self.clone())
    }
}

/// Decrements an endpoint's active requests on drop.
pub struct ActiveRequest(pub Arc<EndpointState>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A precomputed consistent-hash table.
pub enum HashTable {
    /// Ring hash.
    Ring(Ring),
    /// Maglev.
    Maglev(Maglev),
}

/// Live state of one cluster.
pub struct ClusterState {
    /// Identity.
    pub key: ClusterKey,
    /// Fingerprint of the config this state was built for.
    pub fingerprint: u64,
    /// Endpoints.
    pub endpoints: Vec<Arc<EndpointState>>,
    /// Round-robin cursor.
    pub(super) cursor: AtomicU64,
    /// Consistent-hash table, for consistent-hash clusters.
    pub(super) hash: Option<HashTable>,
    /// Sum of endpoint weights.
    pub(super) total_weight: u64,
    /// All weights equal (fast paths).
    pub(super) equal_weights: bool,
}

impl ClusterState {
    /// Fresh state for `cluster`, with pools sized for `workers`.
    pub fn new(cluster: &Cluster, workers: usize) -> Self {
        let endpoints: Vec<Arc<EndpointState>> = cluster
            .endpoints
            .iter()
            .map(|e| {
                Arc::new(EndpointState {
                    name: e.address.to_string(),
                    address: e.address.clone(),
                    weight: e.weight.max(1),
                    labels: e.labels.clone(),
                    active_requests: AtomicU32::new(0),
                    pool: EndpointPool::new(workers),
                })
            })
            .collect();
        let names: Vec<String> = endpoints.iter().map(|e| e.name.clone()).collect();
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        let hash = match &cluster.load_balancer {
            LoadBalancer::ConsistentHash { algorithm, .. } if !endpoints.is_empty() => {
                Some(match algorithm {
                    HashAlgorithm::RingHash { minimum_ring_size } => {
                        HashTable::Ring(Ring::build(&names, &weights, *minimum_ring_size))
                    }
                    HashAlgorithm::Maglev { table_size } => {
                        HashTable::Maglev(Maglev::build(&names, &weights, *table_size))
                    }
                })
            }
            _ => None,
        };
        let total_weight = weights.iter().map(|w| u64::from(*w)).sum();
        let equal_weights = weights.windows(2).all(|w| w[0] == w[1]);
        ClusterState {
            key: cluster.key.clone(),
            fingerprint: cluster.fingerprint,
            endpoints,
            cursor: AtomicU64::new(fastrand::u64(..)),
            hash,
            total_weight,
            equal_weights,
        }
    }
}
