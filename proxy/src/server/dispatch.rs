//! What serves an accepted connection, decided once from the config in force at its
//! accept ([`Plan`]): the HTTP server, the TCP proxy, protocol detection (`AUTO`), TLS
//! termination for a Gateway, or PeerAuthentication's mTLS step for INBOUND.

use super::connection::Live;
use super::h2_guard::Alpn;
use super::http_conn::{self, Serving};
use super::prefixed::Prefixed;
use super::sniff::{self, Detected};
use super::Shared;
use crate::conn_info::ConnInfo;
use crate::tls::inbound::{Inbound, MtlsMode};
use meshproxy_config::compile::cluster::Protocol;
use meshproxy_config::compile::listener::ListenerRole;
use meshproxy_config::model::proxy::ListenerProtocol;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Serves one accepted connection by its plan, until it ends.
pub(super) async fn serve_accepted(
    stream: tokio::net::TcpStream,
    live: Live,
    conn: ConnInfo,
    s: Serving,
) {
    match plan(&s.shared, &conn) {
        Plan::Http => http_conn::serve(stream, live, Arc::new(conn), s).await,
        Plan::Tcp => serve_tcp(stream, live, conn, s).await,
        Plan::Auto(declared) => serve_detected(stream, declared, live, conn, s).await,
        Plan::GatewayTls(gw) => match crate::tls::gateway::accept(stream, &gw).await {
            Ok(tls) => {
                let conn = ConnInfo {
                    scheme: "https",
                    ..conn
                };
                http_conn::serve(tls, live, Arc::new(conn), s).await
            }
            Err(e) => tracing::debug!(
                listener = %conn.listener,
                peer = %conn.peer,
                reason = %e,
                "gateway TLS connection refused"
            ),
        },
        Plan::Inbound { mode, protocol } => {
            serve_mtls_step(stream, mode, protocol, live, conn, s).await
        }
    }
}

/// PeerAuthentication's step on an INBOUND connection: plain text or mTLS as the mode
/// allows (the peer's identity, labels and XFCC noted), else refused and counted.
async fn serve_mtls_step(
    stream: tokio::net::TcpStream,
    mode: MtlsMode,
    protocol: ListenerProtocol,
    live: Live,
    conn: ConnInfo,
    s: Serving,
) {
    let mesh = s.shared.mesh_tls.load_full();
    match crate::tls::inbound::accept(stream, mode, mesh).await {
        Ok(Inbound::Plain(plain)) => serve_inbound(plain, protocol, live, conn, s).await,
        Ok(Inbound::Mtls(tls, peer)) => {
            let conn = ConnInfo {
                scheme: "https",
                peer_labels: peer
                    .spiffe
                    .as_ref()
                    .and_then(|id| s.shared.peer_labels.get(id)),
                peer_identity: peer.spiffe,
                xfcc: peer.xfcc,
                ..conn
            };
            serve_inbound(*tls, protocol, live, conn, s).await
        }
        Err(e) => {
            s.shared.inbound_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                listener = %conn.listener,
                peer = %conn.peer,
                reason = %e,
                "inbound connection refused"
            );
        }
    }
}

/// A connection on a TCP listener: to the TCP proxy, through TLS termination first when
/// the listener's Gateway servers terminate TLS (`protocol: TLS`, `mode: SIMPLE`/`MUTUAL`:
/// Istio then applies the `tcp` routes to the decrypted stream); passthrough otherwise.
async fn serve_tcp(stream: tokio::net::TcpStream, _live: Live, conn: ConnInfo, s: Serving) {
    let Serving { shared, kill, .. } = s;
    let gateway = shared
        .active
        .load()
        .gateway_tls
        .get(&*conn.listener)
        .cloned();
    match gateway {
        None => crate::tcp::serve(stream, Arc::new(conn), shared.data.clone(), kill).await,
        Some(gw) => match crate::tls::gateway::accept(stream, &gw).await {
            Ok(tls) => crate::tcp::serve(tls, Arc::new(conn), shared.data.clone(), kill).await,
            Err(e) => tracing::debug!(
                listener = %conn.listener,
                peer = %conn.peer,
                reason = %e,
                "gateway TLS connection refused"
            ),
        },
    }
}

/// How a connection is served, decided once from the snapshot in force at its accept.
enum Plan {
    /// HTTP/1.1 and h2c (also a listener removed by a reload: the router answers 503).
    Http,
    /// A TCP listener: the TCP proxy (TLS terminated first on TLS Gateway ports).
    Tcp,
    /// An OUTBOUND `AUTO` listener: HTTP or TCP by the original destination's declared
    /// port protocol, else by detection.
    Auto(Option<Detected>),
    /// A Gateway port terminating TLS for HTTP.
    GatewayTls(Arc<crate::tls::gateway::GatewayTls>),
    /// An INBOUND listener: the PeerAuthentication mode of the workload port the
    /// connection is for, and what follows the TLS step.
    Inbound {
        mode: MtlsMode,
        protocol: ListenerProtocol,
    },
}

fn plan(shared: &Shared, conn: &ConnInfo) -> Plan {
    let active = shared.active.load();
    let snap = &active.snapshot;
    let Some(l) = snap.listeners.iter().find(|l| *l.name == *conn.listener) else {
        return Plan::Http;
    };
    match (&l.role, l.protocol) {
        (ListenerRole::Inbound { forward_to }, protocol) => {
            // The workload port: the original destination's when intercepted, else the
            // one the listener forwards to.
            let port = conn
                .original_dst
                .map(|d| d.port())
                .unwrap_or(forward_to.port());
            Plan::Inbound {
                mode: snap.peer_authn.mode(port),
                protocol,
            }
        }
        (_, ListenerProtocol::Tcp) if l.tcp_routes.is_some() => Plan::Tcp,
        (ListenerRole::Outbound, ListenerProtocol::Auto) => {
            let declared = conn
                .original_dst
                .and_then(|d| snap.registry.protocol_at(d))
                .map(|p| match p {
                    _ if p.is_http() => Detected::Http1,
                    Protocol::Tls | Protocol::Https => Detected::Tls,
                    _ => Detected::Opaque,
                });
            Plan::Auto(declared)
        }
        _ => match active.gateway_tls.get(&*conn.listener) {
            Some(gw) => Plan::GatewayTls(gw.clone()),
            None => Plan::Http,
        },
    }
}

/// An `AUTO` connection: to the HTTP server or the TCP proxy, by `declared` when the
/// port's protocol is known, else by what the client sends first (the bytes read are
/// replayed to whichever serves it).
async fn serve_detected<S>(
    mut stream: S,
    declared: Option<Detected>,
    live: Live,
    conn: ConnInfo,
    s: Serving,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Alpn + Unpin + Send + 'static,
{
    let (detected, bytes) = match declared {
        Some(d) => (d, Vec::new()),
        None => match sniff::sniff(&mut stream, sniff::SNIFF_TIMEOUT).await {
            Some(x) => x,
            None => return,
        },
    };
    tracing::trace!(listener = %conn.listener, peer = %conn.peer, ?detected, "protocol");
    let stream = Prefixed::new(bytes, stream);
    if detected.is_http() {
        http_conn::serve(stream, live, Arc::new(conn), s).await
    } else {
        let _live = live;
        let not_tls = detected != Detected::Tls;
        crate::tcp::serve_inspected(
            stream,
            not_tls,
            Arc::new(conn),
            s.shared.data.clone(),
            s.kill,
        )
        .await
    }
}

/// An inbound connection after its PeerAuthentication step: authorized and forwarded to
/// the application as HTTP, as TCP, or as detected (`AUTO`).
async fn serve_inbound<S>(
    mut stream: S,
    protocol: ListenerProtocol,
    live: Live,
    conn: ConnInfo,
    s: Serving,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Alpn + Unpin + Send + 'static,
{
    match protocol {
        ListenerProtocol::Http => http_conn::serve(stream, live, Arc::new(conn), s).await,
        ListenerProtocol::Tcp => {
            let _live = live;
            crate::tcp::inbound::serve(stream, Arc::new(conn), s.shared.data.clone(), s.kill).await
        }
        ListenerProtocol::Auto => {
            let Some((detected, bytes)) = sniff::sniff(&mut stream, sniff::SNIFF_TIMEOUT).await
            else {
                return;
            };
            let stream = Prefixed::new(bytes, stream);
            if detected.is_http() {
                http_conn::serve(stream, live, Arc::new(conn), s).await
            } else {
                let _live = live;
                crate::tcp::inbound::serve(stream, Arc::new(conn), s.shared.data.clone(), s.kill)
                    .await
            }
        }
    }
}
