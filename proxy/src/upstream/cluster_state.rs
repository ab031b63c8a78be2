//! Live state of an upstream cluster: its endpoints with their connection pools,
//! active-request counts and outlier state, the circuit breakers, load-balancer cursors
//! and hash tables. It outlives a config snapshot: a reload that leaves a cluster's
//! fingerprint unchanged keeps its state.
//!
//! The endpoints are an [`EndpointSet`] behind an `ArcSwap`: fixed for a static cluster,
//! replaced by the background resolution of a `resolution: DNS` cluster
//! ([`super::dns_refresh`]) when its names' addresses change.

use super::dns_refresh::DnsRefresh;
use super::endpoint_set::EndpointSet;
use super::hash_ring::{Maglev, Ring};
use super::limits::Limits;
use super::outlier::{self, OutlierState};
use super::pool::{EndpointPool, H1Lease, Reuse};
use super::resolver::Resolver;
use crate::tls::mesh::MeshTls;
use crate::tls::outbound::FileTlsCache;
use arc_swap::{ArcSwap, ArcSwapOption, Guard};
use meshproxy_config::compile::cluster::{Cluster, ClusterKey, EndpointAddress, OutlierPolicy};
use meshproxy_config::compile::intern::Labels;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;

/// One endpoint of a cluster.
pub struct EndpointState {
    /// Where it is.
    pub address: EndpointAddress,
    /// `ip:port` (or name) for logs.
    pub name: std::sync::Arc<str>,
    /// The DNS name this address was resolved from (`resolution: DNS`).
    pub hostname: Option<String>,
    /// Removed from its cluster (its name no longer resolves to it): never picked, its
    /// connections are not kept once their requests end.
    pub drained: AtomicBool,
    /// Load-balancing weight.
    pub weight: u32,
    /// Labels (shared with the snapshot's endpoint).
    pub labels: Labels,
    /// Requests in flight (least-request balancing).
    pub active_requests: AtomicU32,
    /// Pooled connections.
    pub pool: EndpointPool,
    /// Outlier detection state.
    pub outlier: OutlierState,
    /// Requests waiting for a connection to this endpoint.
    pub waiting: AtomicU32,
    /// Open connections to this endpoint (all workers).
    pub connections: AtomicU32,
    /// Connections opened.
    pub opened: AtomicU64,
    /// Connections closed.
    pub closed: AtomicU64,
    /// Signalled when a connection to this endpoint is parked while requests wait.
    pub returned: Notify,
}

impl outlier::HasOutlier for Arc<EndpointState> {
    fn outlier(&self) -> &OutlierState {
        &self.outlier
    }
}

impl EndpointState {
    /// A fresh endpoint with pools for `workers`.
    pub fn new(address: EndpointAddress, weight: u32, labels: Labels, workers: usize) -> Self {
        EndpointState {
            name: address.to_string().into(),
            hostname: None,
            drained: AtomicBool::new(false),
            address,
            weight: weight.max(1),
            labels,
            active_requests: AtomicU32::new(0),
            pool: EndpointPool::new(workers),
            outlier: OutlierState::default(),
            waiting: AtomicU32::new(0),
            connections: AtomicU32::new(0),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            returned: Notify::new(),
        }
    }

    /// Drains the endpoint (Envoy drains the connection pools of a host DNS no longer
    /// returns): idle connections are closed now, busy ones after their requests.
    pub fn drain(&self) {
        self.drained.store(true, Ordering::Release);
        self.pool.clear();
    }

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
    /// Endpoints: read with [`ClusterState::endpoints`].
    set: Arc<ArcSwap<EndpointSet>>,
    /// Background resolution of a `resolution: DNS` cluster's names.
    dns: Option<DnsRefresh>,
    /// PASSTHROUGH clusters' endpoints, created per original destination.
    /// Made on first use: a DashMap has 4 shards per CPU from the start (16 KB each on a
    /// 64-CPU node), too much to give each of a thousand clusters that never need it.
    passthrough: std::sync::OnceLock<dashmap::DashMap<std::net::SocketAddr, Arc<EndpointState>>>,
    workers: usize,
    /// Circuit breakers.
    pub limits: Limits,
    /// Outlier detection policy (`None` = off).
    pub outlier: Option<OutlierPolicy>,
    /// Connection reuse limits.
    pub reuse: Reuse,
    /// `http.maxRequestsPerConnection`.
    pub max_requests_per_connection: Option<u32>,
    /// Times the cluster had no available endpoint.
    pub no_healthy: AtomicU64,
    /// Retries sent.
    pub retries: AtomicU64,
    /// Destination labels for Istio metrics.
    pub service_labels: Arc<crate::telemetry::labels::Service>,
    /// Round-robin cursor.
    pub(super) cursor: AtomicU64,
    /// The server's mesh identity in force (set when the state joins a server; unset,
    /// the cluster has no identity to originate ISTIO_MUTUAL with).
    pub mesh: OnceLock<Arc<ArcSwapOption<MeshTls>>>,
    /// SIMPLE / MUTUAL client configs, built from the DestinationRule's files on first use.
    pub file_tls: FileTlsCache,
}

impl ClusterState {
    /// Fresh state for `cluster`, with pools sized for `workers`; DNS names are
    /// resolved when a connection is opened (no background resolution).
    pub fn new(cluster: &Cluster, workers: usize) -> Self {
        Self::with_resolver(cluster, workers, None)
    }

    /// Fresh state for `cluster`; with a `resolver`, the addresses of its
    /// `resolution: DNS` names become its endpoints, kept current in the background.
    pub fn with_resolver(
        cluster: &Cluster,
        workers: usize,
        resolver: Option<&Arc<Resolver>>,
    ) -> Self {
        let (dns, set) = match resolver.and_then(|r| DnsRefresh::start(cluster, workers, r)) {
            Some((dns, set)) => (Some(dns), set),
            None => {
                let list = cluster
                    .endpoints
                    .iter()
                    .map(|e| {
                        let ep = EndpointState::new(
                            e.address.clone(),
                            e.weight,
                            e.labels.clone(),
                            workers,
                        );
                        Arc::new(ep)
                    })
                    .collect();
                let set = EndpointSet::build(list, &cluster.load_balancer);
                (None, Arc::new(ArcSwap::from_pointee(set)))
            }
        };
        let p = &cluster.pool;
        ClusterState {
            mesh: OnceLock::new(),
            file_tls: FileTlsCache::default(),
            key: cluster.key.clone(),
            fingerprint: cluster.fingerprint,
            set,
            dns,
            limits: Limits::new(
                p.max_connections,
                p.http1_max_pending_requests,
                p.http2_max_requests,
                p.max_retries,
            ),
            outlier: cluster.outlier.clone(),
            reuse: Reuse {
                idle_timeout: p.http_idle_timeout,
                max_duration: p.max_connection_duration,
                max_streams: p.max_concurrent_streams.max(1),
            },
            max_requests_per_connection: p.max_requests_per_connection,
            passthrough: std::sync::OnceLock::new(),
            workers,
            no_healthy: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            service_labels: crate::telemetry::labels::Service::of_cluster(cluster),
            cursor: AtomicU64::new(fastrand::u64(..)),
        }
    }

    /// The endpoints now: one atomic load; hold the guard for the whole pick.
    pub fn endpoints(&self) -> Guard<Arc<EndpointSet>> {
        self.set.load()
    }

    /// Waits, at most `limit` (the connect timeout), for the first resolution of a DNS
    /// cluster that has never been resolved; returns at once otherwise.
    pub async fn resolved(&self, limit: Duration) {
        if let Some(d) = &self.dns {
            d.ready(limit).await;
        }
    }

    /// The DNS names of a `resolution: DNS` cluster with their resolution state (empty
    /// for other clusters).
    pub fn dns_names(&self) -> Vec<super::dns_refresh::NameStatus> {
        self.dns.as_ref().map(|d| d.names()).unwrap_or_default()
    }

    /// False for a DNS cluster resolved by another resolver than `r` (a reload that
    /// changed `spec.dns` does not keep it).
    pub fn resolves_with(&self, r: &Arc<Resolver>) -> bool {
        self.dns
            .as_ref()
            .is_none_or(|d| Arc::ptr_eq(d.resolver(), r))
    }

    /// The endpoint for an original destination of a PASSTHROUGH cluster (created on
    /// first use; unused ones are forgotten when the map grows past 4096).
    pub fn passthrough(&self, addr: std::net::SocketAddr) -> Arc<EndpointState> {
        let map = self.passthrough.get_or_init(dashmap::DashMap::new);
        if let Some(e) = map.get(&addr) {
            return e.clone();
        }
        if map.len() >= 4096 {
            map.retain(|_, e| {
                e.active_requests.load(Ordering::Relaxed) > 0
                    || e.connections.load(Ordering::Relaxed) > 0
            });
        }
        map.entry(addr)
            .or_insert_with(|| {
                Arc::new(EndpointState::new(
                    EndpointAddress::Socket(addr),
                    1,
                    Labels::default(),
                    self.workers,
                ))
            })
            .clone()
    }

    /// Records what a request to `ep` (picked at index `i`) showed; ejects it when a
    /// threshold trips. An endpoint drained since is no longer counted.
    pub fn record(&self, i: usize, ep: &EndpointState, event: outlier::Event) {
        let Some(policy) = &self.outlier else { return };
        let set = self.endpoints();
        let Some(i) = set.position(i, ep) else { return };
        if outlier::record(policy, &set.list, i, event, outlier::now_nanos()) {
            tracing::info!(cluster = %self.key.name(), endpoint = %ep.name, times = ep.outlier.times_ejected(), "outlier ejected");
            // Envoy closes an unhealthy host's pooled connections.
            ep.pool.clear();
        }
    }

    /// Parks a connection to endpoint `ep` after its response ended: handed to a request
    /// waiting for this endpoint, or closed when requests wait for other endpoints at the
    /// connection cap (its permit goes to them), or kept idle.
    pub fn park(&self, ep: &EndpointState, lease: H1Lease) {
        if self
            .max_requests_per_connection
            .is_some_and(|m| lease.served >= m)
        {
            return;
        }
        if ep.outlier.is_ejected(outlier::now_nanos()) || ep.drained.load(Ordering::Acquire) {
            return;
        }
        if ep.waiting.load(Ordering::Acquire) > 0 {
            ep.pool.put_h1(lease);
            ep.returned.notify_one();
        } else if self.limits.pending() > 0 {
            drop(lease);
        } else {
            ep.pool.put_h1(lease);
        }
    }

    /// Closes one idle connection of an endpoint nobody waits for, to free a connection
    /// permit for the waiters of `except`. True if one was closed.
    pub fn evict_idle(&self, except: &EndpointState) -> bool {
        self.endpoints()
            .iter()
            .filter(|e| !std::ptr::eq(e.as_ref(), except) && e.waiting.load(Ordering::Acquire) == 0)
            .any(|e| e.pool.evict_one())
    }
}
