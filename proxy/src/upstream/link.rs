//! The upstream side of an opaque stream (a TCP listener's connection, an HTTP `CONNECT`
//! tunnel): an endpoint picked from the cluster, connected within its connect timeout and
//! `maxConnections` cap, with TLS originated when the DestinationRule (or auto mTLS) asks
//! for it — what Envoy's `tcp_proxy` does through a cluster.

use crate::upstream::cluster_state::{ActiveRequest, ClusterState, EndpointState};
use crate::upstream::connector::{self, OpenConnection};
use crate::upstream::limits::Limit;
use crate::upstream::{hash_ring, lb, outlier};
use meshproxy_config::compile::cluster::{Cluster, LoadBalancer};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// A connected upstream stream (the connector's, shared with HTTP).
pub use crate::upstream::connector::Stream as Upstream;

/// Why no upstream stream could be opened.
#[derive(Debug)]
pub enum LinkError {
    /// `tcp.maxConnections` reached (Envoy: `upstream_cx_overflow`).
    Overflow,
    /// No endpoint to use (none healthy, or no original destination for PASSTHROUGH).
    NoHealthy,
    /// Connecting (or the TLS handshake) failed or timed out.
    Connect(String),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Overflow => f.write_str("maxConnections reached"),
            LinkError::NoHealthy => f.write_str("no healthy upstream"),
            LinkError::Connect(e) => write!(f, "connect failed: {e}"),
        }
    }
}

/// An open upstream stream and what keeps it counted: the endpoint's open connections
/// and active requests (for `/clusters` and least-request balancing) and the cluster's
/// connection slot, all released when it is dropped.
pub struct Link {
    /// The stream.
    pub upstream: Upstream,
    /// The endpoint it goes to.
    pub endpoint: Arc<EndpointState>,
    _open: OpenConnection,
    _active: ActiveRequest,
    _permit: OwnedSemaphorePermit,
}

/// Who the stream is for: the client address (consistent hashing on the source IP, as
/// Istio's `useSourceIp` does for TCP) and the original destination (PASSTHROUGH).
#[derive(Clone, Copy, Debug)]
pub struct For {
    /// Client address.
    pub peer: IpAddr,
    /// Where the client meant to go, when known.
    pub original_dst: Option<SocketAddr>,
}

/// Opens an upstream stream to `cluster`.
pub async fn open(
    cluster: &Cluster,
    state: &Arc<ClusterState>,
    who: For,
) -> Result<Link, LinkError> {
    // `tcp.maxConnections`: Envoy's tcp_proxy refuses the connection on overflow.
    let Some(permit) = state.limits.try_connection() else {
        state.limits.overflowed(Limit::Connections);
        return Err(LinkError::Overflow);
    };
    // A DNS cluster's first connection waits for its first answer (bounded).
    state.resolved(cluster.pool.connect_timeout).await;
    let Some((idx, ep)) = pick_endpoint(cluster, state, who) else {
        state.no_healthy.fetch_add(1, Ordering::Relaxed);
        return Err(LinkError::NoHealthy);
    };
    // The handshake offers ALPN `http/1.1` (the shared client configs are built for HTTP).
    let upstream = match connector::open(cluster, state, &ep, false).await {
        Ok(u) => u,
        Err(e) => {
            // Envoy reports tcp_proxy connect failures, timeouts and upstream TLS handshake
            // failures to outlier detection as local-origin failures.
            if let Some(i) = idx {
                state.record(i, &ep, outlier::Event::LocalOriginFailure);
            }
            return Err(LinkError::Connect(e.reason));
        }
    };
    Ok(Link {
        upstream,
        _open: OpenConnection::new(&ep),
        _active: ep.start_request(),
        endpoint: ep,
        _permit: permit,
    })
}

/// The endpoint: the original destination for PASSTHROUGH clusters, else the load
/// balancer's choice.
fn pick_endpoint(
    cluster: &Cluster,
    state: &Arc<ClusterState>,
    who: For,
) -> Option<(Option<usize>, Arc<EndpointState>)> {
    if cluster.load_balancer == LoadBalancer::Passthrough {
        return who.original_dst.map(|a| (None, state.passthrough(a)));
    }
    let hash = cluster
        .load_balancer
        .is_consistent_hash()
        .then(|| hash_ring::hash_key(who.peer.to_string().as_bytes()));
    lb::pick(state, &cluster.load_balancer, hash, &[]).map(|(i, e)| (Some(i), e))
}
