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
pub mod session;
pub mod sni;

use crate::conn_info::ConnInfo;
use crate::runtime::DataPath;
use meshproxy_config::compile::tcp_routes::L4View;
use session::Session;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
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

/// Serves one connection accepted on a TCP listener, until either side closes or the
/// listener's drain timeout (`kill`) passes.
pub async fn serve<S>(
    stream: S,
    conn: Arc<ConnInfo>,
    shared: Arc<DataPath>,
    kill: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    serve_inspected(stream, false, conn, shared, kill).await
}

/// [`serve`] for a connection whose start was already inspected: `not_tls` when it is
/// known not to start with a ClientHello (protocol detection said so, or the client sent
/// nothing in time — a server-first protocol must not wait for one again).
pub async fn serve_inspected<S>(
    mut stream: S,
    not_tls: bool,
    conn: Arc<ConnInfo>,
    shared: Arc<DataPath>,
    mut kill: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let active = shared.active.load_full();
    let Some(table) = active.snapshot.tcp_routes(&conn.listener) else {
        tracing::debug!(listener = %conn.listener, "no TCP route table; connection closed");
        return;
    };
    let (sni, replay) = if table.needs_sni() && !not_tls {
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
    let Some(state) = active.cluster_state(id).cloned() else {
        return;
    };
    let mut session = Session::outbound(&shared, &active, &state, &route.origin);
    let who = crate::upstream::link::For {
        peer: conn.peer.ip(),
        original_dst: conn.original_dst,
    };
    let link = match crate::upstream::link::open(cluster, &state, who).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(cluster = %cluster.name, error = %e, "TCP upstream unavailable; connection closed");
            session.failed(&e);
            return;
        }
    };
    tracing::debug!(route = %route.origin, cluster = %cluster.name, endpoint = %link.endpoint.name, sni = ?sni, "TCP connection proxied");
    session.opened(&link);
    let (received, sent, flags) =
        crate::pipe::splice(stream, link.upstream, &replay, &mut kill).await;
    session.closed(flags, received, sent);
}
