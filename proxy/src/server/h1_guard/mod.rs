//! A strict HTTP/1.1 request-framing guard on a downstream connection's bytes, before
//! hyper parses them (request smuggling defence, RFC 9112).
//!
//! hyper (httparse) is lenient where a proxy must not be: it accepts a bare LF as a line
//! terminator, and when a request carries both `Content-Length` and `Transfer-Encoding`
//! it silently drops `Content-Length` from the header map (so the router cannot even see
//! the conflict). A front proxy that reads the same bytes differently from us is how a
//! request gets smuggled, so every HTTP/1 request head is checked here, byte by byte,
//! with the RFC 9112 grammar and no leniency:
//!
//! - request line `method SP request-target SP HTTP/1.x CRLF` (§3), at most empty CRLF
//!   lines before it (§2.2);
//! - every line ends with CRLF: a bare LF or a bare CR is refused (§2.2: a recipient MAY
//!   accept a bare LF; a proxy in a chain must not);
//! - no obs-fold (a field line starting with SP/HTAB, §5.2: 400), no whitespace between
//!   a field name and its colon (§5.1: "MUST respond with 400");
//! - field values hold only HTAB, SP, VCHAR and obs-text: NUL, CR, LF and other controls
//!   are refused (RFC 9110 §5.5);
//! - framing (§6.3): `Content-Length` and `Transfer-Encoding` together are refused, as
//!   Envoy does by default (`http1.content_length_and_chunked_not_allowed`, 400;
//!   §6.1: the server MUST close the connection after such a request); every
//!   `Content-Length` must be `1*DIGIT` and all the same (a comma list is refused, which
//!   RFC 9110 §8.6 allows; identical repeated lines are accepted and hyper keeps one);
//!   `Transfer-Encoding` must end with `chunked` (§6.3 item 4: 400) and is refused on
//!   HTTP/1.0 (§6.1). The rest of the transfer-coding policy (`gzip, chunked`, `chunked`
//!   twice: 501/400 like Envoy) is left to [`crate::http::smuggling`], which sees
//!   the header map hyper builds.
//!
//! The body is not buffered or copied: its bytes are counted as they pass
//! (`Content-Length`), or its chunk framing is parsed (§7.1: `1*HEXDIG` sizes without
//! overflow, strict chunk extensions, CRLF after the data, a strictly checked trailer
//! section), so the guard knows where the next pipelined request head starts.
//!
//! What a violation does:
//! - in a request head: the bytes up to the offending one are handed to hyper, and the
//!   rest is replaced with a NUL (which no position of an HTTP/1 head admits) and an
//!   empty line (hyper re-parses a partial head only when an end of head arrives).
//!   hyper then fails to parse that head and answers `400 Bad Request` itself (once the
//!   responses to earlier pipelined requests are written) and closes the connection;
//!   the guard reports EOF from then on. The bad request never reaches the router, so
//!   nothing of it (nor anything pipelined after it) goes upstream.
//! - in a body's chunk framing: the valid bytes are handed over, then the read fails
//!   with `InvalidData`. hyper fails the request body, the router's upstream request is
//!   aborted before it completes, and the connection is closed.
//!
//! What is not inspected: an h2c prior-knowledge connection (it starts with the HTTP/2
//! preface, which is passed through untouched), and everything after a request that
//! switched protocols (`101` to an `Upgrade` request, `2xx` to `CONNECT`). Since the
//! guard cannot see responses, the connection's service reports each response through
//! the [`Upgrades`] handle; after an upgrade request the guard holds further bytes back
//! (no read of the socket) until that request's response is known, then either passes
//! the tunnel through or goes on checking HTTP/1 requests (a refused upgrade).

mod grammar;
mod linger;
mod scanner;
#[cfg(test)]
mod tests;
mod upgrades;

use grammar::{Head, Phase, Scan, Violation, TARGET_TOO_LONG};
use linger::Linger;
use scanner::Scanner;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
pub use upgrades::Upgrades;

/// A downstream stream whose HTTP/1 request framing is checked before hyper reads it
/// (see the module documentation). Writes pass through.
#[derive(Debug)]
pub struct H1Guard<S> {
    inner: S,
    scanner: Scanner,
    upgrades: Arc<Upgrades>,
    /// Bytes read past an upgrade request, held until its verdict (rare: a client
    /// that does not wait for the response), and the part of them handed over.
    held: Vec<u8>,
    held_pos: usize,
    /// What replaces the rest of a refused head ([`POISON`] or [`TARGET_CUT`]), and how
    /// much of it hyper was given.
    poison: &'static [u8],
    poison_sent: usize,
    /// `requestHeadersTimeout`, and its timer while a head is arriving.
    head_timeout: Option<std::time::Duration>,
    head_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The lingering close of a refused connection, once its write side is shut.
    linger: Option<Linger>,
}

/// What replaces a refused request head from the offending byte on: a NUL (valid
/// nowhere in a head), then an end of head, since hyper parses a partial head again
/// only once an end of head arrives.
const POISON: &[u8] = b"\0\r\n\r\n";

/// What ends a head cut at a request-target over the limit: the rest of a valid request
/// line and an empty header section, so hyper hands the truncated request to the
/// service, which answers it `414` (hyper itself would answer `431` once the long target
/// filled its buffer). Nothing of it is forwarded, and the connection ends after it.
const TARGET_CUT: &[u8] = b" HTTP/1.1\r\n\r\n";

/// Room a request line needs besides its target (method, spaces, version, CRLF) within
/// the head limit, so a target cut at the limit still fits hyper's buffer.
pub const REQUEST_LINE_ROOM: usize = 1024;

impl<S> H1Guard<S> {
    /// Guards `inner`; the service reports responses to the returned handle.
    pub fn new(inner: S) -> (Self, Arc<Upgrades>) {
        let upgrades = Arc::new(Upgrades::default());
        let guard = H1Guard {
            inner,
            scanner: Scanner::new(),
            upgrades: upgrades.clone(),
            held: Vec::new(),
            held_pos: 0,
            poison: POISON,
            poison_sent: 0,
            head_timeout: None,
            head_deadline: None,
            linger: None,
        };
        (guard, upgrades)
    }

    /// Hands hyper as much of the rest of the poison as fits.
    fn poison(&mut self, buf: &mut ReadBuf<'_>) {
        let rest = &self.poison[self.poison_sent..];
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.poison_sent += n;
    }

    /// Applies a scan of the bytes `buf.filled()[from..]`; `held` tells whether they
    /// came from the held bytes (else from the socket).
    fn settle(&mut self, buf: &mut ReadBuf<'_>, from: usize, held: bool) -> Poll<io::Result<()>> {
        let scan = self.scanner.scan(&buf.filled()[from..]);
        match scan {
            Scan::Clean => {}
            Scan::Stop(i) => {
                if matches!(self.scanner.phase, Phase::Hold(_)) {
                    let end = from + i;
                    if held {
                        // Still in `held`: hand them over again after the verdict.
                        self.held_pos -= buf.filled().len() - end;
                    } else {
                        self.held.extend_from_slice(&buf.filled()[end..]);
                    }
                    buf.set_filled(end);
                }
            }
            Scan::Bad(i, Violation::Head(why)) => {
                tracing::debug!(reason = why, "HTTP/1 request head refused");
                buf.set_filled(from + i);
                self.scanner.phase = Phase::Poisoned;
                self.poison_sent = 0;
                if why == TARGET_TOO_LONG {
                    self.upgrades.mark_target_too_long(self.scanner.heads);
                    self.scanner.phase = Phase::Cut(self.scanner.heads);
                    self.poison = TARGET_CUT;
                } else {
                    let _ = self.upgrades.refusal.set(why);
                    self.poison = POISON;
                }
                self.poison(buf);
                self.held.clear();
            }
            Scan::Bad(i, Violation::Body(why)) => {
                tracing::debug!(reason = why, "HTTP/1 request body framing refused");
                self.scanner.phase = Phase::Failed;
                self.held.clear();
                if i == 0 {
                    return Poll::Ready(Err(failed()));
                }
                buf.set_filled(from + i);
            }
        }
        if self.held_pos >= self.held.len() && !self.held.is_empty() {
            self.held.clear();
            self.held_pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

fn failed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "invalid HTTP/1.1 request framing",
    )
}

impl<S> H1Guard<S> {
    /// Cuts a request whose target is longer than `max` bytes (see [`TARGET_CUT`]).
    pub fn with_target_limit(mut self, max: usize) -> Self {
        self.scanner.max_target = max;
        self
    }

    /// Limits how long a request head may take to arrive, from its first byte to its
    /// end (`spec.limits.requestHeadersTimeout`; Envoy's `request_headers_timeout` also
    /// starts at the first byte, so an idle keep-alive connection is not cut by it).
    pub fn with_head_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.head_timeout = timeout;
        self
    }

    /// Whether part of a request head (or of the HTTP/2 preface) has arrived.
    fn head_started(&self) -> bool {
        match self.scanner.phase {
            Phase::Head(h) => h != Head::Start(0),
            Phase::Preface(n) => n > 0,
            _ => false,
        }
    }

    /// Starts the head timer at a head's first byte, stops it at its end; when a read
    /// would wait past it, the connection ends (as hyper's own header timeout ends it).
    fn watch_head(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<()>>,
    ) -> Poll<io::Result<()>> {
        let Some(timeout) = self.head_timeout else {
            return r;
        };
        if !self.head_started() {
            self.head_deadline = None;
            return r;
        }
        let deadline = self
            .head_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if r.is_pending() && std::future::Future::poll(deadline.as_mut(), cx).is_ready() {
            tracing::debug!("request head not received within requestHeadersTimeout");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request headers timeout",
            )));
        }
        r
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for H1Guard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = this.read_checked(cx, buf);
        this.watch_head(cx, r)
    }
}

impl<S: AsyncRead + Unpin> H1Guard<S> {
    fn read_checked(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self;
        loop {
            match this.scanner.phase {
                Phase::Poisoned => {
                    // The rest of the poison, then EOF.
                    this.poison(buf);
                    return Poll::Ready(Ok(()));
                }
                Phase::Cut(index) => {
                    if this.poison_sent < this.poison.len() {
                        this.poison(buf);
                        return Poll::Ready(Ok(()));
                    }
                    // EOF only once the cut request is answered: hyper closes a connection
                    // at once on EOF with a request in flight (its `half_close` is off).
                    return match this.upgrades.verdict(index, cx) {
                        None => Poll::Pending,
                        Some(_) => Poll::Ready(Ok(())),
                    };
                }
                Phase::Failed => return Poll::Ready(Err(failed())),
                Phase::Hold(index) => match this.upgrades.verdict(index, cx) {
                    None => return Poll::Pending,
                    Some(true) => this.scanner.phase = Phase::Passthrough,
                    Some(false) => this.scanner.phase = Phase::Head(Head::Start(0)),
                },
                Phase::Passthrough if this.held_pos >= this.held.len() => {
                    return Pin::new(&mut this.inner).poll_read(cx, buf);
                }
                _ if this.held_pos < this.held.len() => {
                    let from = buf.filled().len();
                    let n = buf.remaining().min(this.held.len() - this.held_pos);
                    buf.put_slice(&this.held[this.held_pos..this.held_pos + n]);
                    this.held_pos += n;
                    if this.scanner.phase == Phase::Passthrough {
                        if this.held_pos >= this.held.len() {
                            this.held.clear();
                            this.held_pos = 0;
                        }
                        return Poll::Ready(Ok(()));
                    }
                    return this.settle(buf, from, true);
                }
                _ => {
                    let from = buf.filled().len();
                    match Pin::new(&mut this.inner).poll_read(cx, buf) {
                        Poll::Ready(Ok(())) => {}
                        other => return other,
                    }
                    if buf.filled().len() == from {
                        return Poll::Ready(Ok(()));
                    }
                    return this.settle(buf, from, false);
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for H1Guard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.linger.is_none() {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            if !matches!(
                this.scanner.phase,
                Phase::Poisoned | Phase::Failed | Phase::Cut(_)
            ) {
                return Poll::Ready(Ok(()));
            }
            this.linger = Some(Linger::new());
        }
        match this.linger.as_mut() {
            Some(l) => l.poll_drain(&mut this.inner, cx),
            None => Poll::Ready(Ok(())),
        }
    }
}
