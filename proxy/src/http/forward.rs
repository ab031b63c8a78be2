//! One upstream attempt: open or reuse a connection to the chosen endpoint, send the
//! request, and classify what happened. An HTTP/1.1 Upgrade request (WebSocket) gets a
//! dedicated new connection instead (see [`Transport::Upgrade`] and `http/upgrade.rs`).

use super::failure::{attribute, connect_failure};
pub use super::failure::{overflow, AttemptError, Failure};
use crate::body::{BodyTap, RequestBody};
use crate::flags::Flags;
use crate::policy::envoy_headers;
use crate::policy::retry::Outcome;
use crate::upstream::cluster_state::{ActiveRequest, ClusterState, EndpointState};
use crate::upstream::connector::{self, OpenConnection, Stream};
use crate::upstream::limits::Limit;
use crate::upstream::pool::{H1Lease, H1Sender, H2Checkout, H2Lease};
use http::header::{HeaderMap, HeaderValue, HOST};
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use meshproxy_config::compile::cluster::Cluster;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

/// The request as it goes upstream (rebuilt for every attempt).
pub struct UpstreamHead {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub path_and_query: String,
    /// Authority to send (`Host` / `:authority`).
    pub authority: HeaderValue,
    /// Headers (hop-by-hop already removed).
    pub headers: HeaderMap,
}

/// How an attempt reaches its endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A pooled HTTP/1.1 connection, or a new one that joins the pool.
    Http1,
    /// A stream on a shared HTTP/2 connection.
    Http2,
    /// A new HTTP/1.1 connection of its own, never pooled and never HTTP/2 (whatever the
    /// cluster's protocol): the request carries `Connection: upgrade` and, if the upstream
    /// answers 101, the connection becomes a byte tunnel. Envoy does the same for the
    /// upgrade types Istio enables (`upgrade_configs: websocket`): an upgraded stream owns
    /// its upstream connection.
    Upgrade,
}

impl Transport {
    /// The transport for an ordinary request: HTTP/2 when `h2`.
    pub fn pooled(h2: bool) -> Self {
        if h2 {
            Transport::Http2
        } else {
            Transport::Http1
        }
    }
}

/// The connection a response is streaming on.
pub enum Lease {
    /// An HTTP/1.1 connection, parked again when the body ends.
    H1(H1Lease),
    /// A stream on an HTTP/2 connection.
    H2(H2Lease),
    /// The dedicated connection of an Upgrade request; never parked, closed when dropped.
    Upgrade(UpgradeLease),
}

/// The dedicated HTTP/1.1 connection of an Upgrade request. Holding it keeps the
/// connection counted (its `maxConnections` permit and the endpoint's open-connection
/// count) even after hyper has handed the socket over to the tunnel, so the accounting
/// lasts as long as the tunnel does. Dropping it closes the connection.
pub struct UpgradeLease {
    /// Keeps the connection's request side open until the response has been dealt with
    /// (a dropped sender lets hyper close the connection under a streaming response).
    _sender: H1Sender,
    _held: Arc<Held>,
}

/// What a dedicated connection holds while either its I/O task or its lease is alive.
struct Held {
    _permit: OwnedSemaphorePermit,
    _counted: OpenConnection,
}

/// A successful attempt.
pub struct Attempt {
    /// The response.
    pub response: Response<Incoming>,
    /// The endpoint that answered.
    pub endpoint: Arc<EndpointState>,
    /// The connection.
    pub lease: Lease,
    /// Active-request accounting.
    pub active: ActiveRequest,
}

/// How one attempt is made.
#[derive(Clone, Copy, Debug)]
pub struct Try {
    /// Pooled HTTP/1.1, HTTP/2, or a dedicated upgrade connection.
    pub transport: Transport,
    /// The per-try timeout (counted once the request body is complete).
    pub per_try: Option<Duration>,
    /// Which attempt this is (1 for the first), for `x-envoy-attempt-count`.
    pub attempt: u32,
}

/// Sends `head` + `body` to endpoint `ep` of `cluster` over `transport`.
pub async fn send(
    cluster: &Cluster,
    state: &ClusterState,
    ep: &Arc<EndpointState>,
    head: &UpstreamHead,
    body: RequestBody,
    t: Try,
) -> Result<Attempt, AttemptError> {
    let Try {
        transport,
        per_try,
        attempt,
    } = t;
    let active = ep.start_request();
    let tap = body.tap().cloned();
    let fut = async {
        match transport {
            Transport::Http1 => {
                send_inner(cluster, state, ep, build(head, body, false, attempt), false).await
            }
            Transport::Http2 => {
                send_inner(cluster, state, ep, build(head, body, true, attempt), true).await
            }
            Transport::Upgrade => {
                send_upgrade(cluster, state, ep, build(head, body, false, attempt)).await
            }
        }
    };
    let result = match per_try {
        Some(t) => {
            // Envoy starts the per-try timer once the downstream request is complete
            // (`Router::Filter::onRequestComplete`): a client slow to send its body must
            // not time out, and so eject, a healthy upstream.
            let timer = per_try_timer(tap.as_ref(), t);
            tokio::select! {
                r = fut => r,
                () = timer => Err(AttemptError::Upstream(Failure {
                    outcome: Outcome::Timeout,
                    flags: Flags::UPSTREAM_REQUEST_TIMEOUT,
                    endpoint: Some(ep.name.clone()),
                    detail: "upstream per-try timeout".into(),
                })),
            }
        }
        None => fut.await,
    };
    // The upstream side may report the abort our failed body caused (a reset stream, a
    // closed connection) without naming its cause: the client failed first.
    let result = match (result, tap.as_ref().and_then(BodyTap::fault)) {
        (Err(AttemptError::Upstream(_)), Some(f)) => Err(AttemptError::Downstream(f)),
        (r, _) => r,
    };
    result.map(|(response, lease)| Attempt {
        response,
        endpoint: ep.clone(),
        lease,
        active,
    })
}

/// Fires `after` once the downstream request body has been received in full.
async fn per_try_timer(tap: Option<&BodyTap>, after: Duration) {
    if let Some(tap) = tap {
        tap.wait_done().await;
    }
    tokio::time::sleep(after).await;
}

/// One attempt's request: the head (cloned: every attempt and mirror sends its own) with
/// the attempt's `x-envoy-attempt-count`.
fn build(head: &UpstreamHead, body: RequestBody, h2: bool, attempt: u32) -> Request<RequestBody> {
    let mut headers = head.headers.clone();
    // Istio turns Envoy's `include_request_attempt_count` on for every virtual host.
    headers.insert(
        envoy_headers::X_ENVOY_ATTEMPT_COUNT.clone(),
        envoy_headers::attempt_count(attempt),
    );
    let uri = if h2 {
        headers.remove(HOST);
        let auth = head.authority.to_str().unwrap_or("");
        Uri::builder()
            .scheme("http")
            .authority(auth)
            .path_and_query(head.path_and_query.as_str())
            .build()
            .unwrap_or_else(|_| Uri::from_static("/"))
    } else {
        headers.insert(HOST, head.authority.clone());
        head.path_and_query
            .parse::<Uri>()
            .unwrap_or_else(|_| Uri::from_static("/"))
    };
    let mut req = Request::new(body);
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = if h2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    *req.headers_mut() = headers;
    req
}

async fn send_inner(
    cluster: &Cluster,
    state: &ClusterState,
    ep: &Arc<EndpointState>,
    mut req: Request<RequestBody>,
    h2: bool,
) -> Result<(Response<Incoming>, Lease), AttemptError> {
    // A pooled connection may have been closed by the peer while idle; such a request
    // was never written, so it is re-sent on a fresh connection (once).
    for fresh in [false, true] {
        match checkout(cluster, state, ep, h2, fresh).await? {
            Lease::H1(mut lease) => match lease.sender.try_send_request(req).await {
                Ok(resp) => {
                    lease.served += 1;
                    return Ok((resp, Lease::H1(lease)));
                }
                Err(mut e) => match e.take_message() {
                    Some(back) if !fresh => req = back,
                    _ => return Err(attribute(e.into_error(), ep)),
                },
            },
            Lease::H2(mut lease) => match lease.sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, Lease::H2(lease))),
                Err(mut e) => match e.take_message() {
                    Some(back) if !fresh => req = back,
                    _ => return Err(attribute(e.into_error(), ep)),
                },
            },
            // `checkout` only hands out pooled connections; an upgrade lease never comes
            // from it (and would be a reset-before-request below if it did).
            Lease::Upgrade(_) => break,
        }
    }
    Err(AttemptError::Upstream(Failure {
        outcome: Outcome::ResetBeforeRequest,
        flags: Flags::UPSTREAM_CONNECTION_TERMINATION,
        endpoint: Some(ep.name.clone()),
        detail: "upstream connect error or disconnect/reset before headers. reset reason: connection termination".into(),
    }))
}

fn reuse_existing(
    state: &ClusterState,
    ep: &EndpointState,
    h2: bool,
    any_worker: bool,
) -> Option<Lease> {
    if h2 {
        ep.pool.h2(state.reuse).map(Lease::H2)
    } else if any_worker {
        ep.pool.take_h1_any(state.reuse).map(Lease::H1)
    } else {
        ep.pool.take_h1(state.reuse).map(Lease::H1)
    }
}

/// A connection for one request: a pooled one, a new one within `maxConnections`, or, at
/// the cap, a wait in the pending queue (bounded by `http1MaxPendingRequests`) for a
/// connection to this endpoint to come back or a permit to free up.
async fn checkout(
    cluster: &Cluster,
    state: &ClusterState,
    ep: &Arc<EndpointState>,
    h2: bool,
    fresh: bool,
) -> Result<Lease, Failure> {
    // HTTP/2: requests arriving together share the connection one of them opens.
    let mut ticket = None;
    if h2 && !fresh {
        match ep.pool.h2_checkout(state.reuse) {
            H2Checkout::Ready(l) => return Ok(Lease::H2(l)),
            H2Checkout::Wait(rx) => {
                return match rx.await {
                    Ok(Some(l)) => Ok(Lease::H2(l)),
                    _ => Err(connect_failure(ep, "connection failure")),
                }
            }
            H2Checkout::Open(t) => ticket = Some(H2Ticket { ep, ticket: t }),
        }
    } else if !fresh {
        if let Some(l) = reuse_existing(state, ep, h2, false) {
            return Ok(l);
        }
    }
    if let Some(permit) = state.limits.try_connection() {
        return finish_h2(ep, open(cluster, state, ep, h2, permit).await, ticket);
    }
    state.limits.overflowed(Limit::Connections);
    if let Some(l) = reuse_existing(state, ep, h2, true) {
        return Ok(l);
    }
    let Some(_pending) = state.limits.enter_pending() else {
        return Err(overflow(Some(ep)));
    };
    ep.waiting.fetch_add(1, Ordering::AcqRel);
    struct Waiting<'a>(&'a EndpointState);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let _waiting = Waiting(ep);
    loop {
        // Idle connections of other endpoints hold permits nobody uses: close one.
        state.evict_idle(ep);
        tokio::select! {
            permit = state.limits.connections.clone().acquire_owned() => {
                let Ok(permit) = permit else { return Err(overflow(Some(ep))) };
                return finish_h2(ep, open(cluster, state, ep, h2, permit).await, ticket);
            }
            _ = ep.returned.notified() => {
                if let Some(l) = reuse_existing(state, ep, h2, true) {
                    return Ok(l);
                }
            }
        }
    }
}

/// A pending HTTP/2 connection opening; if dropped before [`finish_h2`] resolves it
/// (error, overflow, cancellation), the requests waiting on it are failed.
struct H2Ticket<'a> {
    ep: &'a EndpointState,
    ticket: u64,
}

impl Drop for H2Ticket<'_> {
    fn drop(&mut self) {
        self.ep.pool.h2_failed(self.ticket);
    }
}

/// A connection just opened.
enum Opened {
    H1(H1Lease),
    H2(crate::upstream::pool::H2Sender),
}

/// Registers a newly opened connection: an HTTP/2 one under its ticket (the requests
/// waiting for it get streams on it), or as a new pooled connection.
fn finish_h2(
    ep: &EndpointState,
    opened: Result<Opened, Failure>,
    ticket: Option<H2Ticket<'_>>,
) -> Result<Lease, Failure> {
    match opened? {
        Opened::H1(l) => Ok(Lease::H1(l)),
        Opened::H2(sender) => match ticket {
            Some(t) => {
                let lease = t.ep.pool.h2_opened(t.ticket, sender);
                std::mem::forget(t);
                Ok(Lease::H2(lease))
            }
            None => Ok(Lease::H2(ep.pool.add_h2(sender))),
        },
    }
}

/// Connects to `ep` through the shared connector; a failure (TLS included, its reason
/// logged there) is a connect failure, `503 UF` (`DF` too when the name did not resolve).
async fn connect_endpoint(
    cluster: &Cluster,
    state: &ClusterState,
    ep: &EndpointState,
    h2: bool,
) -> Result<Stream, Failure> {
    connector::open(cluster, state, ep, h2).await.map_err(|e| {
        let mut f = connect_failure(ep, &e.reason);
        if e.dns {
            f.flags = Flags::UPSTREAM_CONNECTION_FAILURE | Flags::DNS_RESOLUTION_FAILED;
        }
        f
    })
}

async fn open(
    cluster: &Cluster,
    state: &ClusterState,
    ep: &Arc<EndpointState>,
    h2: bool,
    permit: OwnedSemaphorePermit,
) -> Result<Opened, Failure> {
    let keepalive = cluster.pool.http2_keepalive;
    let stream = connect_endpoint(cluster, state, ep, h2).await?;
    handshake(stream, ep, h2, permit, keepalive).await
}

/// The connection's I/O task holds the connection permit: it is released when the
/// connection closes, whoever closes it.
async fn handshake(
    stream: Stream,
    ep: &Arc<EndpointState>,
    h2: bool,
    permit: OwnedSemaphorePermit,
    keepalive: Option<(Duration, Duration)>,
) -> Result<Opened, Failure> {
    let io = TokioIo::new(stream);
    let counted = OpenConnection::new(ep);
    if h2 {
        let mut b = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new());
        if let Some((interval, timeout)) = keepalive {
            b.keep_alive_interval(interval)
                .keep_alive_timeout(timeout)
                .keep_alive_while_idle(true);
        }
        let (sender, conn) = b
            .handshake(io)
            .await
            .map_err(|e| connect_failure(ep, format!("HTTP/2 handshake: {e}")))?;
        tokio::spawn(async move {
            let _permit = permit;
            let _counted = counted;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream h2 connection ended");
            }
        });
        Ok(Opened::H2(sender))
    } else {
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| connect_failure(ep, format!("HTTP/1.1 handshake: {e}")))?;
        tokio::spawn(async move {
            let _permit = permit;
            let _counted = counted;
            match conn.without_shutdown().await {
                Ok(parts) => close_fully(parts.io.into_inner()).await,
                Err(e) => tracing::debug!(error = %e, "upstream h1 connection ended"),
            }
        });
        Ok(Opened::H1(H1Lease {
            sender,
            served: 0,
            created: Instant::now(),
        }))
    }
}

/// One attempt of an Upgrade request: a connection permit (waiting as a pending request
/// at the cap, like any other request), a new HTTP/1.1 connection driven with upgrades
/// enabled, and the request sent on it. The response is whatever the upstream answers;
/// on a 101 the caller takes the upgraded socket from it with `hyper::upgrade::on`.
async fn send_upgrade(
    cluster: &Cluster,
    state: &ClusterState,
    ep: &Arc<EndpointState>,
    req: Request<RequestBody>,
) -> Result<(Response<Incoming>, Lease), AttemptError> {
    let permit = upgrade_permit(state, ep).await?;
    let stream = connect_endpoint(cluster, state, ep, false).await?;
    let (mut sender, held) = handshake_upgrade(stream, ep, permit).await?;
    match sender.send_request(req).await {
        Ok(resp) => Ok((
            resp,
            Lease::Upgrade(UpgradeLease {
                _sender: sender,
                _held: held,
            }),
        )),
        Err(e) => Err(attribute(e, ep)),
    }
}

/// A `maxConnections` permit for a dedicated connection. An upgrade cannot use a pooled
/// connection, so at the cap it waits in the pending queue (bounded by
/// `http1MaxPendingRequests`, overflow `UO` as for any request) for a permit, closing an
/// idle pooled connection to free one: idle connections hold permits nobody is using.
async fn upgrade_permit(
    state: &ClusterState,
    ep: &EndpointState,
) -> Result<OwnedSemaphorePermit, Failure> {
    if let Some(permit) = state.limits.try_connection() {
        return Ok(permit);
    }
    state.limits.overflowed(Limit::Connections);
    let Some(_pending) = state.limits.enter_pending() else {
        return Err(overflow(Some(ep)));
    };
    // While this request is pending, `park` closes connections that come back instead of
    // keeping them idle, so one eviction now is enough to stop idle connections from
    // holding every permit. This endpoint's own idle connections are fair game unless
    // ordinary requests wait for them.
    if !state.evict_idle(ep) && ep.waiting.load(Ordering::Acquire) == 0 {
        ep.pool.evict_one();
    }
    state
        .limits
        .connections
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| overflow(Some(ep)))
}

/// The HTTP/1.1 handshake of a dedicated connection. Its I/O task runs with upgrades
/// enabled, so on a 101 hyper hands the socket (and any bytes read past the response
/// head) to the upgrade future and the task ends; the connection stays counted through
/// the [`Held`] shared with the lease until the tunnel ends too.
async fn handshake_upgrade(
    stream: Stream,
    ep: &Arc<EndpointState>,
    permit: OwnedSemaphorePermit,
) -> Result<(H1Sender, Arc<Held>), Failure> {
    let held = Arc::new(Held {
        _permit: permit,
        _counted: OpenConnection::new(ep),
    });
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| connect_failure(ep, format!("HTTP/1.1 handshake: {e}")))?;
    let task_held = held.clone();
    tokio::spawn(async move {
        let _held = task_held;
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream upgrade connection ended");
        }
    });
    Ok((sender, held))
}

/// Closes a connection the way a careful peer does: send FIN, then wait (briefly) for
/// the upstream's own close. The connection permit is released only after, so
/// `maxConnections` also holds as the upstream counts connections.
async fn close_fully<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.shutdown().await;
    let mut buf = [0u8; 512];
    let drain = async {
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}
