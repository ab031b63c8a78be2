//! Downstream limits in the data path (`Proxy.spec.limits`, compiled into
//! [`meshproxy_config::compile::proxy_settings::Limits`]):
//!
//! - request head size and header count, the request-head timeout and HTTP/2 streams:
//!   hyper's connection builder ([`configure`]);
//! - `maxConnectionsPerListener`: [`ListenerConns`], a count the accept loop reserves a
//!   slot in before it accepts; at the cap it waits for a connection to close (new
//!   connections wait in the kernel's backlog) instead of accepting;
//! - `idleTimeout`: [`Activity`], the requests in flight on one connection and since when
//!   it has had none, watched by [`Activity::idle`]; near the global connection cap the
//!   oldest idle ones are closed first ([`super::downstream`], [`super::evict`]);
//! - `maxActiveRequests`: [`Overload`], one atomic counter for the whole proxy; a request
//!   past the limit is answered `503` at once (flag `OM`) by the router, as Envoy's
//!   overload manager `envoy.overload_actions.stop_accepting_requests` answers `503`
//!   "envoy overloaded" instead of queueing.

use super::Shared;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper_util::server::conn::auto::Builder;
use meshproxy_config::compile::proxy_settings::Limits;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// HTTP/2 rapid reset (CVE-2023-44487): streams the client opened and reset before they
/// were served, allowed at once before the connection gets GOAWAY (`ENHANCE_YOUR_CALM`).
/// h2's own default since 0.3.22/0.4.0 is 20; set explicitly so it cannot drift.
pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// HTTP/2: streams the proxy itself reset because the client broke the protocol on them,
/// allowed per connection before GOAWAY (RUSTSEC-2024-0003; hyper's default, explicit).
pub const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// hyper's smallest HTTP/1.1 buffer: a `maxRequestHeadersKb` below 8 KiB is enforced as
/// 8 KiB on HTTP/1.1 (HTTP/2 applies the exact value).
const H1_MIN_BUF: usize = 8192;

/// The SETTINGS_MAX_FRAME_SIZE the HTTP/2 server advertises (the protocol's initial
/// value, RFC 9113 §6.5.2); the HTTP/2 guard refuses longer client frames (§4.2).
pub const H2_MAX_FRAME_SIZE: u32 = 16_384;

/// hyper's number of header slots kept on the stack: setting `max_headers` at all moves
/// them to the heap for every request, so the default count is left to hyper.
const H1_DEFAULT_MAX_HEADERS: u32 = 100;

/// Applies the request head, timeout and HTTP/2 limits to a connection builder.
pub fn configure(builder: &mut Builder<hyper_util::rt::TokioExecutor>, l: &Limits) {
    let mut h1 = builder.http1();
    // The read buffer bounds the request line plus headers: past it hyper answers 431
    // and closes. (hyper's `max_header_size` is not exposed by the auto builder.)
    h1.max_buf_size((l.max_request_headers_bytes as usize).max(H1_MIN_BUF))
        // hyper would start its timer whenever it waits for a request head, the wait for
        // a keep-alive connection's next request included; the HTTP/1 guard times heads
        // from their first byte instead (`requestHeadersTimeout`).
        .header_read_timeout(None);
    if l.max_request_headers != H1_DEFAULT_MAX_HEADERS {
        h1.max_headers(l.max_request_headers as usize);
    }
    builder
        .http2()
        .max_header_list_size(l.max_request_headers_bytes)
        .max_frame_size(H2_MAX_FRAME_SIZE)
        .max_concurrent_streams(l.max_concurrent_streams)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS);
}

/// The longest HTTP/1 request-target passed on (`414` past it): the request line counts
/// toward `maxRequestHeadersKb`, as in Envoy, less the room the rest of the request line
/// needs, so that the guard cuts a long target before hyper's head buffer fills (which
/// hyper would answer `431`). See docs/config.md, `spec.limits`.
pub fn target_limit(l: &Limits) -> usize {
    (l.max_request_headers_bytes as usize)
        .max(H1_MIN_BUF)
        .saturating_sub(super::h1_guard::REQUEST_LINE_ROOM)
}

/// The open connections of one listener (all its per-worker sockets).
#[derive(Default)]
pub struct ListenerConns {
    open: AtomicUsize,
    freed: Notify,
}

/// One connection slot of a listener, given back when dropped.
pub struct ConnPermit(Arc<ListenerConns>);

impl ListenerConns {
    /// A slot when fewer than `max` connections are open.
    pub fn try_acquire(self: &Arc<Self>, max: u32) -> Option<ConnPermit> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max as usize).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnPermit(self.clone()))
    }

    /// A slot regardless of the cap (connections already accepted by the kernel that a
    /// stopping listener serves while draining).
    pub fn force(self: &Arc<Self>) -> ConnPermit {
        self.open.fetch_add(1, Ordering::AcqRel);
        ConnPermit(self.clone())
    }

    /// Resolves once a slot was given back since the last wake-up (at most one spurious
    /// wake-up per slot: the caller retries [`ListenerConns::try_acquire`]).
    pub async fn freed(&self) {
        self.freed.notified().await
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

/// Requests in flight in the whole proxy (`maxActiveRequests`) and those shed.
#[derive(Default)]
pub struct Overload {
    active: AtomicU64,
    shed: AtomicU64,
}

impl Overload {
    /// Requests in flight (counted only while a limit is set).
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Requests answered `503` because the proxy was at `maxActiveRequests`.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}

/// A request counted in [`Overload`] until dropped (with its response body).
pub struct ActiveRequest(Arc<Shared>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.overload.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Admits a request under the `maxActiveRequests` in force (unset: no limit, nothing
/// counted): `Ok` with the slot, `Err` when the proxy is at the limit (counted as shed).
pub fn admit(shared: &Arc<Shared>) -> Result<Option<ActiveRequest>, Refused> {
    let max = shared
        .active
        .load()
        .snapshot
        .proxy
        .limits
        .max_active_requests;
    let Some(max) = max else {
        return Ok(None);
    };
    let o = &shared.overload;
    // One uncontended-in-the-common-case RMW; undone at once when over the limit.
    if o.active.fetch_add(1, Ordering::Relaxed) >= u64::from(max) {
        o.active.fetch_sub(1, Ordering::Relaxed);
        o.shed.fetch_add(1, Ordering::Relaxed);
        return Err(Refused::Overloaded);
    }
    Ok(Some(ActiveRequest(shared.clone())))
}

pub use crate::http::refused::Refused;

/// The requests in flight on one downstream connection and since when it has had none
/// (since the accept when it never had one); and whether it was told to close to make
/// room near the connection cap.
pub struct Activity {
    base: Instant,
    in_flight: AtomicU32,
    idle_since_ms: AtomicU64,
    evicted: AtomicBool,
    evict: Notify,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            base: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }
}

/// A request in flight on its connection until dropped (with its response body).
pub struct InFlight(Arc<Activity>);

impl Activity {
    /// Counts a request until the returned guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn millis(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Since when the connection has had no request in flight; `None` while it has one
    /// or once it was told to close.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 || self.evicted.load(Ordering::Relaxed) {
            return None;
        }
        let ms = self.idle_since_ms.load(Ordering::Relaxed);
        Some(self.base + Duration::from_millis(ms))
    }

    /// Tells the connection to close as an idle one (it may have started a request since
    /// it was chosen: that request still finishes, as in a drain).
    pub fn evict(&self) {
        self.evicted.store(true, Ordering::Relaxed);
        self.evict.notify_one();
    }

    /// True once [`Activity::evict`] was called.
    pub fn was_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Resolves once [`Activity::evict`] was called.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    /// Resolves once the connection has had no request in flight for `timeout`
    /// (Envoy's `idle_timeout`: no active streams). Sleeps to each candidate deadline
    /// and re-checks: no polling loop, at most one extra wake-up per busy period.
    pub async fn idle(&self, timeout: Duration) {
        let t = timeout.as_millis() as u64;
        let mut until = t;
        loop {
            let now = self.millis();
            if until > now {
                tokio::time::sleep(Duration::from_millis(until - now)).await;
                continue;
            }
            if self.in_flight.load(Ordering::Relaxed) > 0 {
                until = now + t;
                continue;
            }
            let since = self.idle_since_ms.load(Ordering::Relaxed);
            if since + t <= now {
                return;
            }
            until = since + t;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since_ms.store(a.millis(), Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// What a request holds until its response is over: its connection's in-flight count and
/// its [`Overload`] slot.
pub struct Held {
    _in_flight: InFlight,
    _active: Option<ActiveRequest>,
}

impl Held {
    /// Holds both until dropped.
    pub fn new(in_flight: InFlight, active: Option<ActiveRequest>) -> Self {
        Held {
            _in_flight: in_flight,
            _active: active,
        }
    }
}

/// A response body that releases [`Held`] when hyper is done with it (sent or dropped).
pub struct Tracked<B> {
    body: B,
    _held: Held,
}

impl<B> Tracked<B> {
    /// Wraps `body`.
    pub fn new(body: B, held: Held) -> Self {
        Tracked { body, _held: held }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
