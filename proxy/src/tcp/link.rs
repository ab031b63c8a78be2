//! The upstream side of an opaque stream (a TCP listener's connection, an HTTP `CONNECT`
//! tunnel): an endpoint picked from the cluster, connected within its connect timeout and
//! `maxConnections` cap, with TLS originated when the DestinationRule (or auto mTLS) asks
//! for it — what Envoy's `tcp_proxy` does through a cluster.

use crate::upstream::cluster_state::{ActiveRequest, ClusterState, EndpointState};
use crate::upstream::connect::{connect, ConnectError};
use crate::upstream::limits::Limit;
use crate::upstream::{hash_ring, lb, outlier};
use meshproxy_config::compile::cluster::{Cluster, EndpointAddress, LoadBalancer};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

/// A connected upstream stream.
pub enum Upstream {
    /// Plain TCP.
    Tcp(tokio::net::TcpStream),
    /// TLS originated by the proxy.
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
    /// A Unix domain socket endpoint.
    Unix(tokio::net::UnixStream),
}

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
    _open: Open,
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
    let Some((idx, ep)) = pick_endpoint(cluster, state, who) else {
        state.no_healthy.fetch_add(1, Ordering::Relaxed);
        return Err(LinkError::NoHealthy);
    };
    let upstream = match connect_endpoint(cluster, state, &ep).await {
        Ok(u) => u,
        Err(e) => {
            // Envoy reports tcp_proxy connect failures, timeouts and upstream TLS handshake
            // failures to outlier detection as local-origin failures.
            if let Some(i) = idx {
                state.record(i, outlier::Event::LocalOriginFailure);
            }
            return Err(LinkError::Connect(e));
        }
    };
    Ok(Link {
        upstream,
        _open: Open::new(&ep),
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
    lb::pick(state, &cluster.load_balancer, hash, &[])
        .map(|i| (Some(i), state.endpoints[i].clone()))
}

/// Connects to `ep` within the cluster's connect timeout, then originates TLS when the
/// DestinationRule (or Istio's auto mTLS) asks for it, as Envoy's tcp_proxy does through
/// the cluster's transport socket.
async fn connect_endpoint(
    cluster: &Cluster,
    state: &ClusterState,
    ep: &EndpointState,
) -> Result<Upstream, String> {
    let pool = &cluster.pool;
    let addr = match &ep.address {
        EndpointAddress::Socket(a) => *a,
        EndpointAddress::Dns(host, port) => crate::upstream::dns::resolve(host, *port)
            .await
            .map_err(|e| format!("DNS resolution failed: {e}"))?,
        EndpointAddress::Unix(path) => {
            return match tokio::time::timeout(
                pool.connect_timeout,
                tokio::net::UnixStream::connect(path),
            )
            .await
            {
                Ok(Ok(s)) => Ok(Upstream::Unix(s)),
                Ok(Err(e)) => Err(ConnectError::Io(e).to_string()),
                Err(_) => Err(ConnectError::Timeout.to_string()),
            };
        }
    };
    let stream = connect(addr, pool.connect_timeout, pool.tcp_keepalive.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let mesh = state.mesh.get().and_then(|m| m.load_full());
    let plan = crate::tls::outbound::plan(cluster, &ep.labels, mesh.is_some());
    if matches!(plan, crate::tls::outbound::Plan::Plain) {
        return Ok(Upstream::Tcp(stream));
    }
    // The handshake offers ALPN `http/1.1` (the shared client configs are built for HTTP).
    crate::tls::outbound::handshake(stream, plan, mesh, &state.file_tls, false)
        .await
        .map(|s| Upstream::Tls(Box::new(s)))
}

/// Counts an open upstream connection on its endpoint until dropped.
struct Open(Arc<EndpointState>);

impl Open {
    fn new(ep: &Arc<EndpointState>) -> Self {
        ep.connections.fetch_add(1, Ordering::Relaxed);
        ep.opened.fetch_add(1, Ordering::Relaxed);
        Open(ep.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
        self.0.closed.fetch_add(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Upstream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upstream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Upstream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Upstream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upstream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Upstream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Upstream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Upstream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upstream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Upstream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Upstream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upstream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Upstream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Upstream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
