//! A frame-level HTTP/2 conformance guard on a downstream connection's bytes, in front
//! of the HTTP/2 server (hyper's `h2`), as `h1_guard` is for HTTP/1.
//!
//! `h2` gets a few RFC 9113 rules wrong in ways a peer can see: it answers some frame
//! size violations with the wrong code, accepts any first frame, and turns a frame on a
//! half-closed stream into a connection error. Those rules need only the frame headers
//! (and the SETTINGS payload), so they are checked here, on the client's bytes, before
//! `h2` reads them. Rules `h2` already answers correctly (stream ids, frames on stream 0
//! or on idle and closed streams, flow-control windows, header-list rules) are left to
//! it. What only an HPACK decoder can see is listed in `docs/h2-known-gaps.md`.
//!
//! Checked on the client's frames (connection errors, GOAWAY with the code shown):
//! - the 24-octet preface (§3.4, PROTOCOL_ERROR); on cleartext a connection that does
//!   not start with the preface's request line is HTTP/1 and passes untouched; one that
//!   sent `PRI * HTTP/2.0` and then something else is refused with a GOAWAY, as is any
//!   bad preface after ALPN `h2`;
//! - the first frame is a SETTINGS without ACK (§3.4, PROTOCOL_ERROR);
//! - no frame longer than the SETTINGS_MAX_FRAME_SIZE we advertise (§4.2, FRAME_SIZE);
//! - SETTINGS length a multiple of 6, an ACK empty (§6.5, FRAME_SIZE); PING 8 octets
//!   (§6.7), WINDOW_UPDATE and RST_STREAM 4 (§6.9, §6.4), GOAWAY at least 8 (§4.2),
//!   PRIORITY 5 (§6.3: a stream error, raised to a connection error, see below), padded
//!   frames long enough for their Pad Length and priority fields (§4.2), all
//!   FRAME_SIZE_ERROR;
//! - SETTINGS values (§6.5.2): ENABLE_PUSH and ENABLE_CONNECT_PROTOCOL (RFC 8441 §3) 0
//!   or 1 and MAX_FRAME_SIZE within 2^14..2^24-1 (PROTOCOL_ERROR), INITIAL_WINDOW_SIZE at
//!   most 2^31-1 (FLOW_CONTROL_ERROR);
//! - a header block is followed by its CONTINUATION frames only (§6.10, PROTOCOL_ERROR).
//!
//! The offending frame never reaches `h2` whole: the octets before it (or before its
//! offending octet) are handed over, then reads wait until the guard's GOAWAY
//! (last-stream-id: the highest client stream `h2` was given; debug data: the rule) is
//! written and flushed, then report end of stream, and `h2` closes the connection.
//! Whatever the server writes after the GOAWAY is discarded.
//!
//! Stream rule (§5.1 "half-closed (remote)"): a HEADERS (other than trailers ending an
//! open stream) or DATA frame on a stream the client already ended with END_STREAM is a
//! stream error STREAM_CLOSED. The frame is dropped; a dropped DATA frame's length is
//! given back to the client's connection window with a WINDOW_UPDATE (§6.9: flow
//! control counts it even unprocessed), or the two ends' windows would drift apart.
//! The request the stream already carried was complete and valid, and `h2` is serving
//! it: the guard lets that response finish, then sends RST_STREAM STREAM_CLOSED on the
//! stream (a RST_STREAM on a closed stream signals the stream error without cutting the
//! answer short; resetting at once would have the server keep sending frames on a stream
//! the client was told is reset). A dropped header block is walked (not decoded) to make
//! sure it does not change the HPACK dynamic table (§4.3: the table is connection
//! state); one that does cannot be dropped, and the stream error is raised to a
//! connection error (GOAWAY STREAM_CLOSED, §5.4.1 allows it). The same goes for a
//! PRIORITY of the wrong length: dropping it silently is not enough, resetting the
//! stream would desynchronize it.
//!
//! The guard's own frames are written only between two of the server's frames (the
//! server's output is followed by frame header, `outbound`), never inside a frame or a
//! header block. Streams are followed from their HEADERS until both sides ended them
//! or either reset them, in a capped table (`streams`).
//!
//! Cost on the hot path: per frame, one 9-octet header parse and a few comparisons; DATA
//! payloads are neither copied nor inspected; nothing is allocated per frame (the
//! stream table and the buffer of the guard's own frames grow only when used). Octets are
//! moved only when a frame is dropped, when a frame header arrives split across reads
//! (up to 8 held octets), or when the reader offers less than two frame headers of room
//! (then reads go through a 64-octet buffer of the guard's).

mod hpack_scan;
mod inbound;
mod outbound;
mod streams;
mod wire;

pub use inbound::Mode;

use inbound::{Effects, Inbound, Refusal, Step};
use outbound::Outbound;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use streams::Streams;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wire::{Reason, HEADER_LEN, MAX_WINDOW};

/// Below this much room in the reader's buffer, reads go through the guard's own buffer
/// (held octets and a whole frame header must fit).
const MIN_ROOM: usize = 2 * HEADER_LEN;
/// The guard's own read buffer for such reads.
const STAGE: usize = 64;

/// What the guard needs to know of the server it stands in front of.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// The SETTINGS_MAX_FRAME_SIZE the server advertises.
    pub max_frame_size: u32,
    /// The most streams followed at once (the server's concurrent stream limit, plus
    /// some for streams it is refusing).
    pub max_streams: usize,
}

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// A connection error was found: the GOAWAY waits for a frame boundary.
    Refusing(Refusal),
    /// The GOAWAY is out: reads end, writes are discarded.
    Closed,
}

/// The guard: a stream wrapper (`AsyncRead + AsyncWrite`) between the connection and
/// the HTTP server.
pub struct H2Guard<S> {
    inner: S,
    inbound: Inbound,
    outbound: Outbound,
    streams: Streams,
    fx: Effects,
    /// Streams whose RST_STREAM STREAM_CLOSED is due.
    resets: Vec<u32>,
    phase: Phase,
    /// The guard's frames being written, and how much of them is out.
    wire: Vec<u8>,
    wire_pos: usize,
    /// `wire` ends with the GOAWAY.
    wire_goaway: bool,
    /// An incomplete frame header held back from the server.
    held: [u8; HEADER_LEN],
    held_len: usize,
    /// Octets for the server read through `read_staged`, not handed over yet.
    stage: [u8; STAGE],
    stage_pos: usize,
    stage_len: usize,
    /// The reader waiting for the GOAWAY to be out.
    read_waker: Option<Waker>,
    /// Connections and streams refused (`meshproxy_downstream_protocol_errors_total`).
    refused: Arc<AtomicU64>,
    /// Set when this connection was refused, for whoever serves it.
    verdict: Arc<Refused>,
}

/// Whether the guard refused a connection: once it did, the HTTP server's own error on
/// that connection (an unparsable HTTP/1 head after a bad preface, a lost connection) is
/// a consequence, not a second protocol error to log or count.
#[derive(Debug, Default)]
pub struct Refused(std::sync::atomic::AtomicBool);

impl Refused {
    /// The guard refused the connection.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl<S> H2Guard<S> {
    /// Guards `inner`, counting refusals in `refused`; the handle tells whether this
    /// connection was refused.
    pub fn new(
        inner: S,
        mode: Mode,
        config: Config,
        refused: Arc<AtomicU64>,
    ) -> (Self, Arc<Refused>) {
        let verdict = Arc::new(Refused::default());
        let guard = H2Guard {
            inner,
            inbound: Inbound::new(mode, config.max_frame_size),
            outbound: Outbound::default(),
            streams: Streams::new(config.max_streams),
            fx: Effects::default(),
            resets: Vec::new(),
            phase: Phase::Open,
            wire: Vec::new(),
            wire_pos: 0,
            wire_goaway: false,
            held: [0; HEADER_LEN],
            held_len: 0,
            stage: [0; STAGE],
            stage_pos: 0,
            stage_len: 0,
            read_waker: None,
            refused,
            verdict: verdict.clone(),
        };
        (guard, verdict)
    }

    /// Frames of ours are waiting to be written.
    fn has_pending(&self) -> bool {
        self.fx.credit > 0
            || !self.resets.is_empty()
            || matches!(self.phase, Phase::Refusing(_)) && !self.wire_goaway
    }

    /// Runs the scanner over `bytes` (just read, after any held octets), moving what the
    /// server may have to the front; how many that is.
    fn filter(&mut self, bytes: &mut [u8]) -> usize {
        let (mut r, mut w) = (0, 0);
        while r < bytes.len() || self.inbound.is_failing() {
            match self
                .inbound
                .step(&bytes[r..], &mut self.streams, &mut self.fx)
            {
                Step::Pass(n) => {
                    if r != w {
                        bytes.copy_within(r..r + n, w);
                    }
                    r += n;
                    w += n;
                }
                Step::Drop(n) => r += n,
                Step::Hold(n) => {
                    self.held[..n].copy_from_slice(&bytes[r..r + n]);
                    self.held_len = n;
                    r += n;
                }
                Step::Fail(refusal) => {
                    self.refuse(refusal);
                    break;
                }
            }
        }
        if self.fx.stream_refusals > 0 {
            let n = std::mem::take(&mut self.fx.stream_refusals);
            self.refused.fetch_add(u64::from(n), Ordering::Relaxed);
            tracing::debug!(
                streams = n,
                "HTTP/2 frame after END_STREAM dropped; RST_STREAM STREAM_CLOSED once answered (RFC 9113 §5.1)"
            );
        }
        w
    }

    fn refuse(&mut self, r: Refusal) {
        if self.phase != Phase::Open {
            return;
        }
        self.phase = Phase::Refusing(r);
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.verdict.0.store(true, Ordering::Relaxed);
        tracing::debug!(
            code = r.reason.name(),
            rule = r.rule,
            "HTTP/2 connection refused by the guard"
        );
    }

    /// Serializes the pending frames into `wire` (called at a boundary).
    fn serialize(&mut self) {
        while self.fx.credit > 0 {
            let inc = self.fx.credit.min(u64::from(MAX_WINDOW));
            wire::push_window_update(&mut self.wire, 0, inc as u32);
            self.fx.credit -= inc;
        }
        for id in self.resets.drain(..) {
            wire::push_rst(&mut self.wire, id, Reason::StreamClosed);
        }
        if let Phase::Refusing(r) = self.phase {
            wire::push_goaway(&mut self.wire, self.streams.highest(), r.reason, r.rule);
            self.wire_goaway = true;
        }
    }
}

impl<S: AsyncWrite + Unpin> H2Guard<S> {
    /// Writes the guard's pending frames when the server's output is at a boundary.
    /// `Ready(Ok)` when nothing (more) can be written now.
    fn poll_inject(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.wire_pos < self.wire.len() {
                let n =
                    ready!(Pin::new(&mut self.inner).poll_write(cx, &self.wire[self.wire_pos..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.wire_pos += n;
                continue;
            }
            if self.wire_goaway {
                // The GOAWAY must reach the client before `h2` sees the end of stream.
                ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
                self.wire_goaway = false;
                self.phase = Phase::Closed;
                if let Some(w) = self.read_waker.take() {
                    w.wake();
                }
            }
            self.wire.clear();
            self.wire_pos = 0;
            if self.phase == Phase::Closed || !self.has_pending() || !self.outbound.at_boundary() {
                return Poll::Ready(Ok(()));
            }
            self.serialize();
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for H2Guard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.phase != Phase::Closed && this.unstage(buf) {
            return Poll::Ready(Ok(()));
        }
        loop {
            match this.phase {
                Phase::Closed => return Poll::Ready(Ok(())),
                Phase::Refusing(_) => {
                    ready!(this.poll_inject(cx))?;
                    if this.phase == Phase::Closed {
                        return Poll::Ready(Ok(()));
                    }
                    // The server is inside a frame: its next write finishes it, and the
                    // GOAWAY follows.
                    this.read_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Phase::Open => {}
            }
            if this.inbound.is_passthrough() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.has_pending() {
                if let Poll::Ready(Err(e)) = this.poll_inject(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            if ready!(this.read_some(cx, buf))? {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> H2Guard<S> {
    /// One read of the connection into `buf`, filtered. `Ok(true)`: `buf` got octets for
    /// the server, or the client's end of stream; `Ok(false)`: read again (all dropped or
    /// held, or refused). Pending when the connection has nothing to read.
    fn read_some(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<bool>> {
        if buf.remaining() < MIN_ROOM {
            return self.read_staged(cx, buf);
        }
        let start = buf.filled().len();
        let held = self.held_len;
        buf.put_slice(&self.held[..held]);
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => {
                buf.set_filled(start);
                return other.map_ok(|()| false);
            }
        }
        self.held_len = 0;
        if buf.filled().len() == start + held {
            // The client closed (a partial frame header is of no use to anyone).
            buf.set_filled(start);
            return Poll::Ready(Ok(true));
        }
        let kept = self.filter(&mut buf.filled_mut()[start..]);
        buf.set_filled(start + kept);
        self.after_read(cx, kept)
    }

    /// A read for a caller with little room in its buffer (h2's read buffer may offer a
    /// single octet): through a small buffer of the guard's own; the octets for the server
    /// that do not fit wait in `stage`.
    fn read_staged(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<bool>> {
        let mut tmp = [0u8; STAGE];
        let held = self.held_len;
        tmp[..held].copy_from_slice(&self.held[..held]);
        let mut more = ReadBuf::new(&mut tmp[held..]);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut more))?;
        let n = more.filled().len();
        self.held_len = 0;
        if n == 0 {
            return Poll::Ready(Ok(true));
        }
        let kept = self.filter(&mut tmp[..held + n]);
        self.stage[..kept].copy_from_slice(&tmp[..kept]);
        (self.stage_pos, self.stage_len) = (0, kept);
        self.unstage(buf);
        self.after_read(cx, kept)
    }

    /// Hands over staged octets; `false` when there are none.
    fn unstage(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let n = (self.stage_len - self.stage_pos).min(buf.remaining());
        buf.put_slice(&self.stage[self.stage_pos..self.stage_pos + n]);
        self.stage_pos += n;
        n > 0
    }

    /// After a filtered read that kept `kept` octets: the guard's frames go out if they
    /// can; `Ok(true)` when the server got octets.
    fn after_read(&mut self, cx: &mut Context<'_>, kept: usize) -> Poll<io::Result<bool>> {
        if kept > 0 && self.has_pending() {
            if let Poll::Ready(Err(e)) = self.poll_inject(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(kept > 0))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for H2Guard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.inbound.is_passthrough() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        ready!(this.poll_inject(cx))?;
        if this.phase == Phase::Closed {
            return Poll::Ready(Ok(buf.len()));
        }
        let mut limit = buf.len();
        if this.has_pending() && !this.outbound.at_boundary() {
            limit = limit.min(this.outbound.to_boundary());
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..limit]))?;
        this.outbound
            .advance(&buf[..n], &mut this.streams, &mut this.resets);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.inbound.is_passthrough() {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        if this.phase != Phase::Open || this.has_pending() {
            // Rare: one slice at a time, so the guard's frames find their boundary.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return Pin::new(this).poll_write(cx, first);
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(b.len());
            this.outbound
                .advance(&b[..take], &mut this.streams, &mut this.resets);
            left -= take;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.inbound.is_passthrough() {
            ready!(this.poll_inject(cx))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.inbound.is_passthrough() {
            ready!(this.poll_inject(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Whether a connection's TLS handshake chose HTTP/2 by ALPN (RFC 9113 §3.2): the guard
/// then expects the preface from the first octet.
pub trait Alpn {
    /// ALPN protocol `h2` was negotiated.
    fn alpn_h2(&self) -> bool;
}

impl Alpn for tokio::net::TcpStream {
    fn alpn_h2(&self) -> bool {
        false
    }
}

impl<S> Alpn for tokio_rustls::server::TlsStream<S> {
    fn alpn_h2(&self) -> bool {
        self.get_ref().1.alpn_protocol() == Some(&b"h2"[..])
    }
}

impl<S: Alpn> Alpn for super::prefixed::Prefixed<S> {
    fn alpn_h2(&self) -> bool {
        self.get_ref().alpn_h2()
    }
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
