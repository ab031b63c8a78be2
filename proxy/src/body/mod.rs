//! Bodies: [`RequestBody`] carries a downstream request body upstream (replayable within a
//! bound, for retries and mirrors), [`ResponseBody`] carries an upstream or local response
//! downstream and runs the request's completion (access log, lease release) when it ends.

pub mod downstream_fault;

use bytes::Bytes;
use downstream_fault::DownstreamFault;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::sync::Notify;

/// Envoy's default `per_connection_buffer_limit_bytes`: a request body larger than this is
/// streamed without a copy, and then cannot be retried or mirrored past this point.
pub const REPLAY_LIMIT: usize = 1024 * 1024;

/// Errors a proxied body can end with.
#[derive(Debug)]
pub enum BodyError {
    /// The downstream body failed: the client's fault, never the upstream's.
    Downstream(DownstreamFault),
    /// The upstream body failed.
    Upstream(hyper::Error),
    /// The body could not be replayed (buffer limit exceeded).
    NotReplayable,
    /// The route timeout elapsed while streaming.
    Timeout,
    /// Nothing arrived from either side for `spec.limits.streamIdleTimeout`.
    StreamIdle,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Downstream(e) => write!(f, "downstream body: {e}"),
            BodyError::Upstream(e) => write!(f, "upstream body: {e}"),
            BodyError::NotReplayable => f.write_str("request body exceeded the replay buffer"),
            BodyError::Timeout => f.write_str("route timeout while streaming"),
            BodyError::StreamIdle => f.write_str("stream idle timeout"),
        }
    }
}

impl std::error::Error for BodyError {}

struct Shared {
    source: Option<Incoming>,
    chunks: Vec<Bytes>,
    buffered: usize,
    overflowed: bool,
    done: bool,
    trailers: Option<HeaderMap>,
    /// How the downstream body failed, once it did.
    fault: Option<DownstreamFault>,
    /// The generation allowed to pull from the source (the current attempt).
    primary: u64,
    next_generation: u64,
    received: u64,
    waiters: Vec<Waker>,
}

/// The state shared by the copies of one request body.
#[derive(Clone)]
pub struct BodyTap {
    shared: Arc<Mutex<Shared>>,
    done: Arc<Notify>,
}

impl BodyTap {
    /// Wraps a downstream body.
    pub fn new(body: Incoming) -> Self {
        let done = body.is_end_stream();
        BodyTap {
            shared: Arc::new(Mutex::new(Shared {
                source: (!done).then_some(body),
                chunks: Vec::new(),
                buffered: 0,
                overflowed: false,
                done,
                trailers: None,
                fault: None,
                primary: 0,
                next_generation: 0,
                received: 0,
                waiters: Vec::new(),
            })),
            done: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A poisoned lock only means a panic elsewhere; the data stays consistent.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when the downstream body has ended (or was empty).
    pub fn is_done(&self) -> bool {
        self.lock().done
    }

    /// Waits until the downstream body has been read to its end.
    pub async fn wait_done(&self) {
        loop {
            let notified = self.done.notified();
            if self.is_done() || self.lock().fault.is_some() {
                return;
            }
            notified.await;
        }
    }

    /// How the downstream body failed, if it did: whatever went wrong upstream at the same
    /// time, a request whose client failed is the client's fault.
    pub fn fault(&self) -> Option<DownstreamFault> {
        self.lock().fault
    }

    /// True while every byte read so far is kept, so another attempt can replay it.
    pub fn replayable(&self) -> bool {
        !self.lock().overflowed
    }

    /// Bytes received from downstream so far.
    pub fn received(&self) -> u64 {
        self.lock().received
    }

    /// A body for the next upstream attempt, which becomes the only one allowed to read
    /// further from downstream. `None` when earlier bytes were not kept (over the limit).
    pub fn attempt(&self) -> Option<RequestBody> {
        let mut s = self.lock();
        if s.overflowed {
            return None;
        }
        s.next_generation += 1;
        s.primary = s.next_generation;
        Some(RequestBody::Tapped {
            tap: self.clone(),
            pos: 0,
            generation: s.primary,
            sent_trailers: false,
        })
    }

    /// A body for a mirror: it follows what the attempt reads and never reads itself, so a
    /// slow mirror never slows the real request; it fails if the buffer overflows.
    pub fn mirror(&self) -> Option<RequestBody> {
        let s = self.lock();
        if s.overflowed {
            return None;
        }
        Some(RequestBody::Tapped {
            tap: self.clone(),
            pos: 0,
            generation: u64::MAX,
            sent_trailers: false,
        })
    }

    fn poll_tapped(
        &self,
        cx: &mut Context<'_>,
        pos: &mut usize,
        generation: u64,
        sent_trailers: &mut bool,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut s = self.lock();
        if s.overflowed && generation != s.primary {
            return Poll::Ready(Some(Err(BodyError::NotReplayable)));
        }
        if !s.overflowed && *pos < s.chunks.len() {
            let chunk = s.chunks[*pos].clone();
            *pos += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if s.done {
            if !*sent_trailers {
                *sent_trailers = true;
                if let Some(t) = s.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
            }
            return Poll::Ready(None);
        }
        if let Some(f) = s.fault {
            return Poll::Ready(Some(Err(BodyError::Downstream(f))));
        }
        if generation != s.primary {
            // A mirror (or an abandoned attempt) waits for the primary to read more.
            s.waiters.push(cx.waker().clone());
            return Poll::Pending;
        }
        let Some(src) = s.source.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(src).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                s.done = true;
                s.source = None;
                self.finish(&mut s);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                let fault = DownstreamFault::classify(&e);
                tracing::debug!(error = %e, ?fault, "downstream request body failed");
                s.fault = Some(fault);
                s.source = None;
                self.finish(&mut s);
                Poll::Ready(Some(Err(BodyError::Downstream(fault))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                match frame.into_data() {
                    Ok(data) => {
                        s.received += data.len() as u64;
                        if !s.overflowed {
                            if s.buffered + data.len() <= REPLAY_LIMIT {
                                s.buffered += data.len();
                                s.chunks.push(data.clone());
                                *pos = s.chunks.len();
                            } else {
                                // Past the limit: stream without a copy from here on.
                                s.overflowed = true;
                                s.chunks = Vec::new();
                                s.buffered = 0;
                            }
                        }
                        for w in s.waiters.drain(..) {
                            w.wake();
                        }
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Err(frame) => {
                        // Trailers end the body.
                        let trailers = frame.into_trailers().ok();
                        s.trailers = trailers.clone();
                        s.done = true;
                        s.source = None;
                        *sent_trailers = true;
                        self.finish(&mut s);
                        match trailers {
                            Some(t) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
                            None => Poll::Ready(None),
                        }
                    }
                }
            }
        }
    }

    fn finish(&self, s: &mut Shared) {
        for w in s.waiters.drain(..) {
            w.wake();
        }
        self.done.notify_waiters();
    }
}

/// A request body sent upstream.
pub enum RequestBody {
    /// No body.
    Empty,
    /// A copy of the downstream body (an attempt or a mirror).
    Tapped {
        /// The shared state.
        tap: BodyTap,
        /// Next chunk to replay.
        pos: usize,
        /// Attempt generation (`u64::MAX` for mirrors).
        generation: u64,
        /// Trailers already sent.
        sent_trailers: bool,
    },
}

impl RequestBody {
    /// The downstream body this one copies, if any.
    pub fn tap(&self) -> Option<&BodyTap> {
        match self {
            RequestBody::Empty => None,
            RequestBody::Tapped { tap, .. } => Some(tap),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Tapped {
                tap,
                pos,
                generation,
                sent_trailers,
            } => tap.poll_tapped(cx, pos, *generation, sent_trailers),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Tapped {
                tap,
                pos,
                sent_trailers,
                ..
            } => {
                let s = tap.lock();
                let drained = s.overflowed || *pos >= s.chunks.len();
                s.done && drained && (s.trailers.is_none() || *sent_trailers)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Tapped { .. } => SizeHint::default(),
        }
    }
}

/// Runs when a response body ends or is dropped: the request's completion work.
pub trait Completion: Send + 'static {
    /// Called exactly once with the bytes sent downstream, whether the body ended
    /// normally (false: dropped early, errored or timed out), and the `grpc-status` of
    /// the trailers if there were any.
    fn complete(
        self: Box<Self>,
        bytes_sent: u64,
        ended: bool,
        error: Option<&BodyError>,
        grpc_status: Option<u32>,
    );
}

enum Inner {
    Empty,
    Full(Option<Bytes>),
    Upstream(Incoming),
}

/// A response body sent downstream.
pub struct ResponseBody {
    inner: Inner,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    idle: Option<Idle>,
    completion: Option<Box<dyn Completion>>,
    sent: u64,
    grpc_status: Option<u32>,
}

impl ResponseBody {
    /// An empty body.
    pub fn empty() -> Self {
        Self::new(Inner::Empty)
    }

    /// A body of `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let b = bytes.into();
        Self::new(if b.is_empty() {
            Inner::Empty
        } else {
            Inner::Full(Some(b))
        })
    }

    /// The upstream response body.
    pub fn upstream(body: Incoming) -> Self {
        Self::new(Inner::Upstream(body))
    }

    fn new(inner: Inner) -> Self {
        ResponseBody {
            inner,
            deadline: None,
            idle: None,
            completion: None,
            sent: 0,
            grpc_status: None,
        }
    }

    /// Ends the stream with an error if it is still running at `at` (the route timeout).
    pub fn with_deadline(mut self, at: Option<tokio::time::Instant>) -> Self {
        self.deadline = at.map(|d| Box::pin(tokio::time::sleep_until(d)));
        self
    }

    /// Ends the stream with [`BodyError::StreamIdle`] when nothing arrives from the
    /// upstream, nor from the client on `tap`, for `timeout` (Envoy's
    /// `stream_idle_timeout`, which counts activity in both directions).
    pub fn with_idle_timeout(mut self, timeout: std::time::Duration, tap: Option<BodyTap>) -> Self {
        if matches!(self.inner, Inner::Upstream(_)) {
            self.idle = Some(Idle {
                timeout,
                timer: None,
                progressed: false,
                tap,
                seen: 0,
            });
        }
        self
    }

    /// Attaches the completion to run at the end.
    pub fn on_complete(mut self, c: Box<dyn Completion>) -> Self {
        self.completion = Some(c);
        self
    }

    fn complete(&mut self, ended: bool, error: Option<&BodyError>) {
        if let Some(c) = self.completion.take() {
            c.complete(self.sent, ended, error, self.grpc_status);
        }
    }
}

/// A response body's idle timer.
struct Idle {
    timeout: std::time::Duration,
    /// Made the first time the upstream body has nothing to give (a small response
    /// usually never does): no timer, and no allocation, on the common path.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A frame arrived since the timer was last armed.
    progressed: bool,
    /// The request body, whose bytes count as activity too (a client streaming to a
    /// quiet server is not idle).
    tap: Option<BodyTap>,
    /// Request bytes received when the timer was last armed.
    seen: u64,
}

impl Idle {
    /// Arms or re-arms the timer as activity requires; true once it fired with nothing
    /// received from either side since it was armed.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.timeout;
        if self.timer.is_none() {
            self.seen = self.tap.as_ref().map(BodyTap::received).unwrap_or(0);
            self.progressed = false;
            self.timer = Some(Box::pin(tokio::time::sleep(timeout)));
        } else if self.progressed {
            self.progressed = false;
            if let Some(t) = self.timer.as_mut() {
                t.as_mut().reset(tokio::time::Instant::now() + timeout);
            }
        }
        let Some(timer) = self.timer.as_mut() else {
            return false;
        };
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            // Checked only when the timer fires (it takes the tap's lock).
            let received = self.tap.as_ref().map(BodyTap::received).unwrap_or(0);
            if received == self.seen {
                return true;
            }
            self.seen = received;
            timer.as_mut().reset(tokio::time::Instant::now() + timeout);
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper may drop a body without polling past its end (known length, HEAD, 204).
        let ended = self.is_end_stream();
        self.complete(ended, None);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Empty => Poll::Ready(None),
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Upstream(body) => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Upstream(e)))),
                Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(idle) = this.idle.as_mut() {
                    idle.progressed = true;
                }
                if let Some(d) = frame.data_ref() {
                    this.sent += d.len() as u64;
                } else if let Some(t) = frame.trailers_ref() {
                    this.grpc_status = t
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok());
                }
                if this.is_end_stream() {
                    this.complete(true, None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.complete(true, None);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.complete(false, Some(&e));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => {
                if let Some(d) = this.deadline.as_mut() {
                    if d.as_mut().poll(cx).is_ready() {
                        let e = BodyError::Timeout;
                        this.complete(false, Some(&e));
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                if let Some(idle) = this.idle.as_mut() {
                    if idle.expired(cx) {
                        let e = BodyError::StreamIdle;
                        this.complete(false, Some(&e));
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Full(b) => b.is_none(),
            Inner::Upstream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Empty => SizeHint::with_exact(0),
            Inner::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
            Inner::Upstream(b) => b.size_hint(),
        }
    }
}
