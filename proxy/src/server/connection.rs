//! Accepting and serving downstream connections, with graceful drain: on a drain signal a
//! connection finishes its in-flight requests, HTTP/1.1 answers with `Connection: close`
//! and HTTP/2 sends GOAWAY, then it closes.

use super::codec_error;
use super::downstream::IdleClose;
use super::h2_guard::{Alpn, H2Guard, Mode as H2Mode};
use super::limits;
use super::prefixed::Prefixed;
use super::sniff::{self, Detected};
use super::Shared;
use crate::conn_info::ConnInfo;
use crate::http::router;
use crate::tls::inbound::Inbound;
use crate::tls::inbound::MtlsMode;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use meshproxy_config::compile::cluster::Protocol;
use meshproxy_config::compile::listener::ListenerRole;
use meshproxy_config::model::proxy::ListenerProtocol;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long a draining HTTP/1.1 connection may stay idle before it is closed: long
/// enough for a client between two requests to send its next one and be told
/// `Connection: close`, short enough that draining ends promptly.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// How long an idle connection being closed (`idleTimeout`) may take to finish the
/// HTTP/2 GOAWAY exchange before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long an accept loop waits after a failed `accept` (descriptors exhausted): the
/// failure repeats until one is freed, so retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Counts a live downstream connection (a drain waits for the count to reach zero).
pub struct Live(Arc<Shared>);

impl Live {
    /// Counts one more connection until dropped.
    pub fn new(shared: &Arc<Shared>) -> Self {
        shared.connections.fetch_add(1, Ordering::AcqRel);
        Live(shared.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts on `listener` until `stop`, serving each connection until it ends or `drain`.
pub async fn accept_loop(
    listener: TcpListener,
    name: Arc<str>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    drain: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
    conns: Arc<limits::ListenerConns>,
) {
    let local = listener.local_addr().ok();
    let start = |stream: tokio::net::TcpStream, peer: std::net::SocketAddr, permit| {
        let _ = stream.set_nodelay(true);
        let local = local.unwrap_or(peer);
        let original_dst = crate::intercept::original_dst(&stream, local);
        let conn = ConnInfo {
            listener: name.clone(),
            local,
            peer,
            peer_ip: crate::policy::headers::ip_value(peer.ip()),
            scheme: "http",
            original_dst,
            kill: kill.clone(),
            peer_identity: None,
            peer_labels: None,
            xfcc: None,
        };
        // Counted from the accept, not from when the task first runs: a drain that sees
        // no connections must not exit with an accepted one still waiting to be served.
        let live = Live::new(&shared);
        let (shared, drain, kill) = (shared.clone(), drain.clone(), kill.clone());
        tokio::spawn(async move {
            // The listener's and the process's connection slots, held as long as the
            // connection is served.
            let _permit = permit;
            match plan(&shared, &conn) {
                Plan::Http => serve(stream, live, Arc::new(conn), shared, drain, kill).await,
                Plan::Tcp => serve_tcp(stream, live, conn, shared, kill).await,
                Plan::Auto(declared) => {
                    serve_detected(stream, declared, live, conn, shared, drain, kill).await
                }
                Plan::GatewayTls(gw) => match crate::tls::gateway::accept(stream, &gw).await {
                    Ok(s) => {
                        let conn = ConnInfo {
                            scheme: "https",
                            ..conn
                        };
                        serve(s, live, Arc::new(conn), shared, drain, kill).await
                    }
                    Err(e) => tracing::debug!(
                        listener = %conn.listener,
                        peer = %conn.peer,
                        reason = %e,
                        "gateway TLS connection refused"
                    ),
                },
                Plan::Inbound { mode, protocol } => {
                    let mesh = shared.mesh_tls.load_full();
                    match crate::tls::inbound::accept(stream, mode, mesh).await {
                        Ok(Inbound::Plain(s)) => {
                            serve_inbound(s, protocol, live, conn, shared, drain, kill).await
                        }
                        Ok(Inbound::Mtls(s, peer)) => {
                            let conn = ConnInfo {
                                scheme: "https",
                                peer_labels: peer
                                    .spiffe
                                    .as_ref()
                                    .and_then(|id| shared.peer_labels.get(id)),
                                peer_identity: peer.spiffe,
                                xfcc: peer.xfcc,
                                ..conn
                            };
                            serve_inbound(*s, protocol, live, conn, shared, drain, kill).await
                        }
                        Err(e) => {
                            shared.inbound_refused.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                listener = %conn.listener,
                                peer = %conn.peer,
                                reason = %e,
                                "inbound connection refused"
                            );
                        }
                    }
                }
            }
        });
    };
    // Connections refused at the global cap, counted for this listener.
    let refused = shared.downstream.refused_counter(&name);
    // Failed accepts in a row: logged at the first and every 100th (20 a second while
    // descriptors are exhausted would flood the log).
    let mut failing = 0u64;
    loop {
        // `maxConnectionsPerListener`: a slot is reserved before accepting; at the cap the
        // loop waits for a connection to close and new ones wait in the kernel's backlog.
        let max = shared
            .active
            .load()
            .snapshot
            .proxy
            .limits
            .max_connections_per_listener;
        let Some(permit) = conns.try_acquire(max) else {
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                _ = conns.freed() => continue,
            }
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        if accepted.is_ok() {
            failing = 0;
        }
        match accepted {
            // The global cap (Envoy's `downstream_connections` monitor): past it the
            // connection is closed at once, so the client can go elsewhere now.
            Ok((stream, peer)) => match shared.downstream.try_open() {
                Some(slot) => start(stream, peer, (permit, slot)),
                None => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(listener = %name, %peer, "connection refused: at the downstream connection cap");
                    drop(stream);
                }
            },
            Err(e) => {
                // EMFILE and friends: back off instead of spinning (the connection stays
                // in the backlog until a descriptor is free).
                shared.downstream.accept_failed();
                if failing.is_multiple_of(100) {
                    tracing::warn!(listener = %name, error = %e, in_a_row = failing + 1, "accept failed");
                }
                failing += 1;
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    // Connections the kernel already completed are in this socket's accept queue: closing
    // it would reset them. Take them and serve them (draining) before letting go.
    let Ok(std_listener) = listener.into_std() else {
        return;
    };
    if std_listener.set_nonblocking(true).is_err() {
        return;
    }
    while let Ok((s, peer)) = std_listener.accept() {
        if s.set_nonblocking(true).is_err() {
            continue;
        }
        if let Ok(stream) = tokio::net::TcpStream::from_std(s) {
            start(stream, peer, (conns.force(), shared.downstream.force()));
        }
    }
}

/// A connection on a TCP listener: to the TCP proxy, through TLS termination first when
/// the listener's Gateway servers terminate TLS (`protocol: TLS`, `mode: SIMPLE`/`MUTUAL`:
/// Istio then applies the `tcp` routes to the decrypted stream); passthrough otherwise.
async fn serve_tcp(
    stream: tokio::net::TcpStream,
    _live: Live,
    conn: ConnInfo,
    shared: Arc<Shared>,
    kill: watch::Receiver<bool>,
) {
    let gateway = shared
        .active
        .load()
        .gateway_tls
        .get(&*conn.listener)
        .cloned();
    match gateway {
        None => crate::tcp::serve(stream, Arc::new(conn), shared, kill).await,
        Some(gw) => match crate::tls::gateway::accept(stream, &gw).await {
            Ok(s) => crate::tcp::serve(s, Arc::new(conn), shared, kill).await,
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
    shared: Arc<Shared>,
    drain: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
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
        serve(stream, live, Arc::new(conn), shared, drain, kill).await
    } else {
        let _live = live;
        let not_tls = detected != Detected::Tls;
        crate::tcp::serve_inspected(stream, not_tls, Arc::new(conn), shared, kill).await
    }
}

/// An inbound connection after its PeerAuthentication step: authorized and forwarded to
/// the application as HTTP, as TCP, or as detected (`AUTO`).
async fn serve_inbound<S>(
    mut stream: S,
    protocol: ListenerProtocol,
    live: Live,
    conn: ConnInfo,
    shared: Arc<Shared>,
    drain: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Alpn + Unpin + Send + 'static,
{
    match protocol {
        ListenerProtocol::Http => serve(stream, live, Arc::new(conn), shared, drain, kill).await,
        ListenerProtocol::Tcp => {
            let _live = live;
            crate::tcp::inbound::serve(stream, Arc::new(conn), shared, kill).await
        }
        ListenerProtocol::Auto => {
            let Some((detected, bytes)) = sniff::sniff(&mut stream, sniff::SNIFF_TIMEOUT).await
            else {
                return;
            };
            let stream = Prefixed::new(bytes, stream);
            if detected.is_http() {
                serve(stream, live, Arc::new(conn), shared, drain, kill).await
            } else {
                let _live = live;
                crate::tcp::inbound::serve(stream, Arc::new(conn), shared, kill).await
            }
        }
    }
}

async fn serve<S>(
    stream: S,
    _live: Live,
    conn: Arc<ConnInfo>,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
    mut kill: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Alpn + Unpin + Send + 'static,
{
    // Set once draining: HTTP/1.1 responses then carry `Connection: close`, so a client
    // learns the connection is going with a response instead of finding it closed just
    // as it sends its next request (Envoy drains HTTP/1.1 the same way).
    let closing = Arc::new(AtomicBool::new(false));
    let saw_h2 = Arc::new(AtomicBool::new(false));
    // `spec.limits` in force at the accept apply to the whole connection.
    let limits = shared.active.load().snapshot.proxy.limits.clone();
    // HTTP/2 frames are checked on the raw bytes first (RFC 9113 rules hyper's h2 gets
    // wrong): an HTTP/2 connection is one that chose `h2` by ALPN or starts with the
    // preface; anything else passes through to the HTTP/1 guard.
    let mode = if stream.alpn_h2() {
        H2Mode::Http2
    } else {
        H2Mode::Sniff
    };
    let h2_config = super::h2_guard::Config {
        max_frame_size: limits::H2_MAX_FRAME_SIZE,
        // The concurrent streams h2 serves, plus room for those it is refusing.
        max_streams: (limits.max_concurrent_streams as usize).saturating_add(64),
    };
    // A connection the guard refused also ends with hyper's error: that one is not
    // logged or counted as an HTTP/1 codec refusal.
    let (stream, h2_refused) = H2Guard::new(
        stream,
        mode,
        h2_config,
        shared.downstream_h2_protocol_errors.clone(),
    );
    // HTTP/1 request framing is checked on the bytes before hyper parses them (request
    // smuggling); it learns from the responses which requests switched protocols.
    let (stream, upgrades) = super::h1_guard::H1Guard::new(stream);
    let stream = stream
        .with_head_timeout(Some(limits.request_headers_timeout))
        .with_target_limit(limits::target_limit(&limits));
    let activity = Arc::new(limits::Activity::default());
    let (svc_activity, max_headers) = (activity.clone(), limits.max_request_headers as usize);
    let svc_shared = shared.clone();
    let (svc_closing, svc_saw_h2) = (closing.clone(), saw_h2.clone());
    // For the log line of a head the codec refuses (after the service is gone).
    let (conn_info, refusals) = (conn.clone(), upgrades.clone());
    let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        let conn = conn.clone();
        let shared = svc_shared.clone();
        let closing = svc_closing.clone();
        let h1 = req.version() < http::Version::HTTP_2;
        if !h1 {
            svc_saw_h2.store(true, Ordering::Relaxed);
        }
        // In flight (connection idle timer, `maxActiveRequests`) until the response body
        // is over; a refused request is answered by the router (logged and counted).
        let in_flight = svc_activity.start();
        let active = limits::admit(&shared).unwrap_or_else(|refused| {
            req.extensions_mut().insert(refused);
            None
        });
        if !h1 && req.headers().len() > max_headers {
            // HTTP/1.1 heads past the count are refused by hyper (431) before this.
            req.extensions_mut().insert(limits::Refused::TooManyHeaders);
        }
        let held = limits::Held::new(in_flight, active);
        let guard = h1.then(|| {
            let connect = req.method() == http::Method::CONNECT;
            (upgrades.clone(), upgrades.request(), connect)
        });
        if let Some((upgrades, index, _)) = &guard {
            if upgrades.target_too_long(*index) {
                req.extensions_mut().insert(limits::Refused::UriTooLong);
            }
        }
        async move {
            let mut resp = router::handle(req, conn, shared).await;
            if let Some((upgrades, index, connect)) = guard {
                upgrades.responded(index, resp.status(), connect);
            }
            // Not on a 101: its `Connection: upgrade` is the handshake.
            if h1
                && closing.load(Ordering::Relaxed)
                && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
            {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, std::convert::Infallible>(resp.map(|b| limits::Tracked::new(b, held)))
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    // RFC 8441 extended CONNECT (WebSocket over HTTP/2), announced in our SETTINGS.
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    limits::configure(&mut builder, &limits);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(connection);
    if !*drain.borrow() {
        // Closable as an idle connection near the connection cap while registered.
        let _registered = super::evict::register(&activity, &shared.downstream);
        let idle = tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                    if !h2_refused.get() {
                    codec_error::record(&shared, &conn_info, &*e, refusals.refusal());
                    }
                }
                return;
            }
            _ = drain.wait_for(|d| *d) => None,
            _ = activity.idle(limits.idle_timeout) => Some(IdleClose::Timeout),
            _ = activity.evicted() => Some(IdleClose::Overload),
        };
        if let Some(why) = idle {
            // `idleTimeout` with no request in flight, or chosen as the oldest idle near
            // the cap: closed as a drain closes it (HTTP/2 GOAWAY; a request started
            // meanwhile finishes); one still open a period later is dropped.
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = tokio::time::sleep(IDLE_CLOSE_GRACE) => {}
                _ = kill.wait_for(|k| *k) => {}
            }
            shared.downstream.idle_closed(why);
            tracing::debug!(reason = ?why, "idle connection closed");
            return;
        }
    }
    closing.store(true, Ordering::Relaxed);
    if !saw_h2.load(Ordering::Relaxed) {
        // HTTP/1.1 (or nothing yet): busy connections close after their next response;
        // one still idle after the grace is closed (hyper closes an idle HTTP/1.1
        // connection at once on graceful shutdown, a busy one after its response).
        let grace = IDLE_GRACE.min(shared.options.drain_timeout / 2);
        tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error while draining");
                    if !h2_refused.get() {
                    codec_error::record(&shared, &conn_info, &*e, refusals.refusal());
                    }
                }
                return;
            }
            _ = tokio::time::sleep(grace) => {}
            _ = kill.wait_for(|k| *k) => return,
        }
    }
    // HTTP/2: GOAWAY (hyper sends the two-step graceful one), streams in flight finish.
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        r = connection.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error while draining");
                if !h2_refused.get() {
                    codec_error::record(&shared, &conn_info, &*e, refusals.refusal());
                }
            }
        }
        // Past the drain timeout the connection is closed, requests in flight or not.
        _ = kill.wait_for(|k| *k) => tracing::debug!("connection closed at the drain timeout"),
    }
}
