//! Opaque TCP proxying and TLS passthrough for TCP listeners (Envoy's `tcp_proxy` network
//! filter behind Istio's TCP/TLS filter chains).
//!
//! For each connection: when `tls` rules apply, the ClientHello is read without
//! terminating TLS (at most [`HELLO_MAX`] bytes within [`HELLO_TIMEOUT`], as Envoy's
//! `tls_inspector` does; a connection that does not start with one carries on without
//! SNI); a route is picked by SNI, destination port and address; a weighted destination,
//! then an endpoint by the cluster's load balancer; the upstream connection is opened
//! within the cluster's connect timeout under its `maxConnections` cap, with TLS
//! origination when the DestinationRule (or auto mTLS) asks for it; the bytes already
//! read are replayed, and both directions are spliced until either side closes. No
//! route, no endpoint, an overflow or a connect failure closes the downstream connection
//! (Envoy's `tcp_proxy` closes it too: TCP has no way to send an error).

pub mod inbound;
pub mod sni;

use crate::http::router::ConnInfo;
use crate::server::Shared;
use crate::upstream::cluster_state::{ClusterState, EndpointState};
use crate::upstream::connect::{connect, ConnectError};
use crate::upstream::limits::Limit;
use crate::upstream::{hash_ring, lb, outlier};
use meshproxy_config::compile::cluster::{Cluster, EndpointAddress, LoadBalancer};
use meshproxy_config::compile::tcp_routes::L4View;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// The most bytes read while looking for a ClientHello (Envoy's `tls_inspector` reads at
/// most 16 KiB, one maximal TLS record).
pub const HELLO_MAX: usize = 16 * 1024;

/// How long to wait for a ClientHello before routing without SNI (Istio's listener
/// filter timeout).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the start of `stream` looking for a TLS ClientHello: the SNI, if any, and the
/// bytes read (to replay upstream). A connection that does not start with a ClientHello,
/// sends more than [`HELLO_MAX`] bytes without completing one, or stays silent past
/// [`HELLO_TIMEOUT`] carries on without SNI (Istio sets Envoy's
/// `continue_on_listener_filters_timeout`). `None` when the client closed or failed first.
async fn read_hello<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(Option<String>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 2048];
        loop {
            match sni::parse(&buf) {
                sni::Hello::Done(s) => return Some(s),
                sni::Hello::NotTls => return Some(None),
                sni::Hello::Incomplete if buf.len() >= HELLO_MAX => return Some(None),
                sni::Hello::Incomplete => {}
            }
            let room = (HELLO_MAX - buf.len()).min(chunk.len());
            match stream.read(&mut chunk[..room]).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    match tokio::time::timeout(HELLO_TIMEOUT, read).await {
        Ok(Some(sni)) => Some((sni, buf)),
        Ok(None) => None,
        Err(_) => Some((None, buf)),
    }
}

/// The upstream side of a spliced connection.
enum Upstream {
    Tcp(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
    Unix(tokio::net::UnixStream),
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

/// Serves one connection accepted on a TCP listener, until either side closes or the
/// listener's drain timeout (`kill`) passes.
pub async fn serve<S>(
    mut stream: S,
    conn: Arc<ConnInfo>,
    shared: Arc<Shared>,
    mut kill: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let active = shared.active.load_full();
    let Some(table) = active.snapshot.tcp_routes(&conn.listener) else {
        tracing::debug!(listener = %conn.listener, "no TCP route table; connection closed");
        return;
    };
    let (sni, replay) = if table.needs_sni() {
        match read_hello(&mut stream).await {
            Some(x) => x,
            None => return,
        }
    } else {
        (None, Vec::new())
    };
    let destination = conn.original_dst.unwrap_or(conn.local);
    let view = L4View {
        sni: sni.as_deref(),
        destination,
        source: conn.peer.ip(),
        intercepted: conn.original_dst.is_some(),
    };
    let Some(route) = table.find(&view) else {
        tracing::debug!(listener = %conn.listener, peer = %conn.peer, sni = ?sni, %destination, "no TCP route; connection closed");
        return;
    };
    let dests = &route.destinations;
    if dests.total_weight == 0 || dests.destinations.is_empty() {
        tracing::debug!(route = %route.origin, "TCP route has no destination; connection closed");
        return;
    }
    let dest = dests.pick(fastrand::u32(0..dests.total_weight));
    let Some(id) = dest.target.resolve(destination.port()) else {
        tracing::debug!(route = %route.origin, host = %dest.host, "no cluster for the TCP destination; connection closed");
        return;
    };
    let cluster = active.snapshot.cluster(id);
    let Some(state) = active.clusters.get(id.0 as usize).cloned() else {
        return;
    };
    // `tcp.maxConnections`: Envoy's tcp_proxy closes the connection on overflow
    // (`upstream_cx_overflow`).
    let Some(_permit) = state.limits.try_connection() else {
        state.limits.overflowed(Limit::Connections);
        tracing::debug!(cluster = %cluster.name, "maxConnections reached; connection closed");
        return;
    };
    let Some((idx, ep)) = pick_endpoint(cluster, &state, &conn) else {
        state.no_healthy.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(cluster = %cluster.name, "no healthy upstream; connection closed");
        return;
    };
    let upstream = match connect_endpoint(cluster, &state, &ep).await {
        Ok(u) => u,
        Err(e) => {
            // Envoy reports tcp_proxy connect failures, timeouts and upstream TLS handshake
            // failures to outlier detection as local-origin failures.
            if let Some(i) = idx {
                state.record(i, outlier::Event::LocalOriginFailure);
            }
            tracing::debug!(cluster = %cluster.name, endpoint = %ep.name, error = %e, "TCP upstream connect failed; connection closed");
            return;
        }
    };
    let _open = Open::new(&ep);
    let _active = ep.start_request();
    tracing::debug!(route = %route.origin, cluster = %cluster.name, endpoint = %ep.name, sni = ?sni, "TCP connection proxied");
    let result = match upstream {
        Upstream::Tcp(u) => splice(stream, u, &replay, &mut kill).await,
        Upstream::Tls(u) => splice(stream, *u, &replay, &mut kill).await,
        Upstream::Unix(u) => splice(stream, u, &replay, &mut kill).await,
    };
    if let Err(e) = result {
        tracing::debug!(cluster = %cluster.name, error = %e, "TCP connection ended with an error");
    }
}

/// The endpoint for this connection: the original destination for PASSTHROUGH clusters,
/// else the load balancer's choice (consistent hashing on the client IP, as Istio's
/// `useSourceIp` does for TCP).
fn pick_endpoint(
    cluster: &Cluster,
    state: &Arc<ClusterState>,
    conn: &ConnInfo,
) -> Option<(Option<usize>, Arc<EndpointState>)> {
    if cluster.load_balancer == LoadBalancer::Passthrough {
        return conn.original_dst.map(|a| (None, state.passthrough(a)));
    }
    let hash = cluster
        .load_balancer
        .is_consistent_hash()
        .then(|| hash_ring::hash_key(conn.peer.ip().to_string().as_bytes()));
    lb::pick(state, &cluster.load_balancer, hash, &[])
        .map(|i| (Some(i), state.endpoints[i].clone()))
}

/// Writes `replay` upstream, then copies both ways until both sides are done (a half
/// close is passed on, as Envoy's tcp_proxy does), or `kill` fires.
pub(crate) async fn splice<D, U>(
    mut down: D,
    mut up: U,
    replay: &[u8],
    kill: &mut watch::Receiver<bool>,
) -> std::io::Result<()>
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    if !replay.is_empty() {
        up.write_all(replay).await?;
    }
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut down, &mut up) => r.map(|_| ()),
        _ = kill.wait_for(|k| *k) => {
            tracing::debug!("TCP connection closed at the drain timeout");
            Ok(())
        }
    }
}
