//! An HTTP connection's life: the protocol guards on its bytes (HTTP/2 frames, then HTTP/1
//! framing), hyper's server with the connection's limits, the service that hands each
//! request to the router, and the connection's end: idle timeout, eviction near the
//! connection cap, or a drain (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY), with the
//! drain timeout as the last word.

use super::codec_error;
use super::connection::Live;
use super::downstream::IdleClose;
use super::h1_guard::{H1Guard, Upgrades};
use super::h2_guard::{Alpn, H2Guard, Mode as H2Mode};
use super::limits;
use super::Shared;
use crate::conn_info::ConnInfo;
use crate::http::router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use meshproxy_config::compile::proxy_settings::Limits;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// How long a draining HTTP/1.1 connection may stay idle before it is closed: long
/// enough for a client between two requests to send its next one and be told
/// `Connection: close`, short enough that draining ends promptly.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// How long an idle connection being closed (`idleTimeout`) may take to finish the
/// HTTP/2 GOAWAY exchange before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What every connection of a listener is served with: the process state and the
/// listener's drain and kill signals.
#[derive(Clone)]
pub(super) struct Serving {
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// Fires when the listener starts draining.
    pub drain: watch::Receiver<bool>,
    /// Fires at the drain timeout: whatever is left is closed.
    pub kill: watch::Receiver<bool>,
}

/// What the connection and its service share.
struct ConnState {
    /// Set once draining: HTTP/1.1 responses then carry `Connection: close`, so a client
    /// learns the connection is going with a response instead of finding it closed just
    /// as it sends its next request (Envoy drains HTTP/1.1 the same way).
    closing: AtomicBool,
    /// An HTTP/2 request was served (a drain then needs GOAWAY, not `Connection: close`).
    saw_h2: AtomicBool,
    /// Requests in flight and since when none (idle timeout, eviction).
    activity: Arc<limits::Activity>,
}

/// Serves HTTP/1.1 and HTTP/2 on `stream` until it ends, is closed as idle, or drains.
pub(super) async fn serve<S>(stream: S, _live: Live, conn: Arc<ConnInfo>, s: Serving)
where
    S: AsyncRead + AsyncWrite + Alpn + Unpin + Send + 'static,
{
    // `spec.limits` in force at the accept apply to the whole connection.
    let limits = s.shared.active.load().snapshot.proxy.limits.clone();
    let state = Arc::new(ConnState {
        closing: AtomicBool::new(false),
        saw_h2: AtomicBool::new(false),
        activity: Arc::new(limits::Activity::default()),
    });
    let (stream, guards) = guarded(stream, &limits, &s.shared);
    let svc = service(&s.shared, &conn, &state, &guards.upgrades, &limits);
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
    let (mut drain, mut kill) = (s.drain.clone(), s.kill.clone());
    let ended = |r: Result<(), _>, when| ended(&s.shared, &conn, &guards, r, when);
    if !*drain.borrow() {
        // Closable as an idle connection near the connection cap while registered.
        let _registered = super::evict::register(&state.activity, &s.shared.downstream);
        let idle = tokio::select! {
            r = connection.as_mut() => return ended(r, ""),
            _ = drain.wait_for(|d| *d) => None,
            _ = state.activity.idle(limits.idle_timeout) => Some(IdleClose::Timeout),
            _ = state.activity.evicted() => Some(IdleClose::Overload),
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
            s.shared.downstream.idle_closed(why);
            tracing::debug!(reason = ?why, "idle connection closed");
            return;
        }
    }
    state.closing.store(true, Ordering::Relaxed);
    if !state.saw_h2.load(Ordering::Relaxed) {
        // HTTP/1.1 (or nothing yet): busy connections close after their next response;
        // one still idle after the grace is closed (hyper closes an idle HTTP/1.1
        // connection at once on graceful shutdown, a busy one after its response).
        let grace = IDLE_GRACE.min(s.shared.options.drain_timeout / 2);
        tokio::select! {
            r = connection.as_mut() => return ended(r, " while draining"),
            _ = tokio::time::sleep(grace) => {}
            _ = kill.wait_for(|k| *k) => return,
        }
    }
    // HTTP/2: GOAWAY (hyper sends the two-step graceful one), streams in flight finish.
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        r = connection.as_mut() => ended(r, " while draining"),
        // Past the drain timeout the connection is closed, requests in flight or not.
        _ = kill.wait_for(|k| *k) => tracing::debug!("connection closed at the drain timeout"),
    }
}

/// The connection ended by itself: a head the HTTP/1 codec refused is logged and counted
/// (not when the HTTP/2 guard refused the connection: that one counts as an HTTP/2
/// refusal).
fn ended(
    shared: &Shared,
    conn: &ConnInfo,
    guards: &Guards,
    r: Result<(), Box<dyn std::error::Error + Send + Sync>>,
    when: &str,
) {
    let Err(e) = r else { return };
    tracing::debug!(error = %e, "connection ended with an error{when}");
    if !guards.h2_refused.get() {
        codec_error::record(shared, conn, &*e, guards.upgrades.refusal());
    }
}

/// What the guards report about a connection after the fact.
struct Guards {
    /// The HTTP/2 guard refused the connection (hyper's resulting error is not an
    /// HTTP/1 codec refusal).
    h2_refused: Arc<super::h2_guard::Refused>,
    /// The HTTP/1 guard's handle: responses reported to it, its refusals read from it.
    upgrades: Arc<Upgrades>,
}

/// The protocol guards in front of hyper: HTTP/2 frames are checked on the raw bytes
/// first (RFC 9113 rules hyper's h2 gets wrong; an HTTP/2 connection is one that chose
/// `h2` by ALPN or starts with the preface), then HTTP/1 request framing (request
/// smuggling), which learns from the responses which requests switched protocols.
fn guarded<S>(stream: S, limits: &Limits, shared: &Shared) -> (H1Guard<H2Guard<S>>, Guards)
where
    S: AsyncRead + AsyncWrite + Alpn + Unpin,
{
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
    let (stream, h2_refused) = H2Guard::new(
        stream,
        mode,
        h2_config,
        shared.downstream_h2_protocol_errors.clone(),
    );
    let (stream, upgrades) = H1Guard::new(stream);
    let stream = stream
        .with_head_timeout(Some(limits.request_headers_timeout))
        .with_target_limit(limits::target_limit(limits));
    (
        stream,
        Guards {
            h2_refused,
            upgrades,
        },
    )
}

/// The connection's hyper service: admission (`maxActiveRequests`, header count), the
/// HTTP/1 guard's verdicts (a target cut at the limit), then the router; the response
/// reports back to the guard and carries `Connection: close` while draining.
fn service(
    shared: &Arc<Shared>,
    conn: &Arc<ConnInfo>,
    state: &Arc<ConnState>,
    upgrades: &Arc<Upgrades>,
    limits: &Limits,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<limits::Tracked<crate::body::ResponseBody>>,
    Error = std::convert::Infallible,
    Future = impl std::future::Future<
        Output = Result<
            http::Response<limits::Tracked<crate::body::ResponseBody>>,
            std::convert::Infallible,
        >,
    > + Send,
> + Clone {
    let (shared, conn, state, upgrades) = (
        shared.clone(),
        conn.clone(),
        state.clone(),
        upgrades.clone(),
    );
    let max_headers = limits.max_request_headers as usize;
    hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        let (conn, shared, state) = (conn.clone(), shared.clone(), state.clone());
        let h1 = req.version() < http::Version::HTTP_2;
        if !h1 {
            state.saw_h2.store(true, Ordering::Relaxed);
        }
        // In flight (connection idle timer, `maxActiveRequests`) until the response body
        // is over; a refused request is answered by the router (logged and counted).
        let in_flight = state.activity.start();
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
        // Boxed where it is made: the request's future is about 11 KB (the router's
        // steps and the attempt's state), and hyper moves the future it is given into its
        // dispatcher (HTTP/1) or a new task (HTTP/2) — a copy of the whole state per
        // request, where a box moves a pointer (docs/performance.md, "Per-request budget").
        Box::pin(async move {
            let mut resp = router::handle(req, conn, shared.data.clone()).await;
            if let Some((upgrades, index, connect)) = guard {
                upgrades.responded(index, resp.status(), connect);
            }
            // Not on a 101: its `Connection: upgrade` is the handshake.
            if h1
                && state.closing.load(Ordering::Relaxed)
                && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
            {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, std::convert::Infallible>(resp.map(|b| limits::Tracked::new(b, held)))
        })
    })
}
