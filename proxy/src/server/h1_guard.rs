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

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Empty lines tolerated before a request line (RFC 9112 §2.2 "at least one").
const MAX_LEADING_CRLF: u8 = 8;

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// RFC 9110 §5.5 `field-vchar` or SP/HTAB: what a field value may hold.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// Which field a header line is, as far as framing goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Field {
    Other,
    ContentLength,
    TransferEncoding,
    Upgrade,
}

/// The longest name we classify (`transfer-encoding`).
const NAME_MAX: usize = 17;

/// Per-head facts gathered while its field lines pass.
#[derive(Default, Debug)]
struct HeadFacts {
    /// `HTTP/1.1` (else `HTTP/1.0`).
    http11: bool,
    /// The method is `CONNECT`.
    connect: bool,
    /// Matched bytes of `CONNECT` while the method passes (`u8::MAX`: no match).
    method_match: u8,
    /// hyper's rule: CONNECT, or an `Upgrade` field on HTTP/1.1.
    wants_upgrade: bool,
    /// The `Content-Length`, once one was seen.
    content_length: Option<u64>,
    /// A `Transfer-Encoding` field was seen.
    te: bool,
    /// The last coding of the last `Transfer-Encoding` line is `chunked`.
    te_chunked: bool,
}

/// Where the scanner is inside a request head or trailer section.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Head {
    /// Before the request line; the count of empty lines seen.
    Start(u8),
    /// CR of an empty line before the request line.
    StartLf(u8),
    Method,
    Target,
    /// Index into `HTTP/1.x` matched so far.
    Version(u8),
    VersionLf,
    /// At the start of a field line (or the empty line ending the section).
    FieldStart,
    /// In a field name: its length so far.
    Name(u8),
    /// In a field value.
    Value,
    /// CR ending a field line.
    ValueLf,
    /// CR of the empty line ending the section.
    EndLf,
}

/// Value parsing of the framing fields.
#[derive(Clone, Copy, Debug, Default)]
struct ValueState {
    /// Content-Length: digits so far (`None` before the first).
    digits: Option<u64>,
    /// Content-Length: whitespace after the digits.
    trailing: bool,
    /// Transfer-Encoding: bytes of `chunked` matched in the current list element
    /// (`u8::MAX`: the element is something else).
    te_pos: u8,
    /// Transfer-Encoding: whitespace after the element's text.
    te_trailing: bool,
}

/// Where the scanner is inside a chunked body (RFC 9112 §7.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Chunk {
    /// In the chunk size: digits seen, value so far.
    Size {
        digits: bool,
        size: u64,
    },
    /// BWS after the size, before `;`.
    SizeWs {
        size: u64,
    },
    /// After `;` (BWS allowed), before the extension name.
    ExtNameStart {
        size: u64,
    },
    ExtName {
        size: u64,
    },
    /// BWS after an extension name.
    ExtAfterName {
        size: u64,
    },
    /// After `=` (BWS allowed).
    ExtValueStart {
        size: u64,
    },
    ExtToken {
        size: u64,
    },
    ExtQuoted {
        size: u64,
    },
    ExtQuotedPair {
        size: u64,
    },
    /// BWS after an extension value.
    ExtAfterValue {
        size: u64,
    },
    /// CR ending the size line.
    SizeLf {
        size: u64,
    },
    /// Chunk data left.
    Data(u64),
    DataCr,
    DataLf,
    /// The trailer section after the last chunk (field lines, then CRLF).
    Trailer(Head),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// The first bytes of the connection, while they match the HTTP/2 preface: how many.
    Preface(u8),
    Head(Head),
    /// Body bytes left (`Content-Length`).
    Length(u64),
    Chunked(Chunk),
    /// After the `n`th request (an upgrade): wait for its response.
    Hold(u64),
    /// Not HTTP/1 any more (h2c, or an upgraded tunnel).
    Passthrough,
    /// A bad request head: a NUL was handed to hyper; EOF from now on.
    Poisoned,
    /// The `n`th request's target was over the limit: the head was cut short
    /// ([`TARGET_CUT`]); EOF once that request has been answered.
    Cut(u64),
    /// A bad body: reads fail.
    Failed,
}

/// Why a byte was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Violation {
    /// In a request head (hyper answers 400).
    Head(&'static str),
    /// In a body (the read fails).
    Body(&'static str),
}

/// What scanning a run of bytes found.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// All of them are fine.
    Clean,
    /// The byte at this index is refused.
    Bad(usize, Violation),
    /// The bytes up to this index are fine; what follows must wait for an upgrade
    /// verdict (`Hold`) or is not HTTP/1 (`Passthrough`).
    Stop(usize),
}

/// The request-framing state machine.
#[derive(Debug)]
struct Scanner {
    phase: Phase,
    facts: HeadFacts,
    /// Lowercased start of the current field name.
    name: [u8; NAME_MAX],
    field: Field,
    value: ValueState,
    /// Request heads accepted so far (the next one's index).
    heads: u64,
    /// Bytes of the current request-target so far.
    target_len: usize,
    /// The longest request-target passed on (see [`H1Guard::with_target_limit`]).
    max_target: usize,
}

impl Scanner {
    fn new() -> Self {
        Scanner {
            phase: Phase::Preface(0),
            facts: HeadFacts::default(),
            name: [0; NAME_MAX],
            field: Field::Other,
            value: ValueState::default(),
            heads: 0,
            target_len: 0,
            max_target: usize::MAX,
        }
    }

    /// Scans `bytes`, advancing the state.
    fn scan(&mut self, bytes: &[u8]) -> Scan {
        let mut i = 0;
        while i < bytes.len() {
            match self.phase {
                Phase::Preface(n) => {
                    if bytes[i] == PREFACE[usize::from(n)] {
                        i += 1;
                        if usize::from(n) + 1 == PREFACE.len() {
                            self.phase = Phase::Passthrough;
                            return Scan::Stop(i);
                        }
                        self.phase = Phase::Preface(n + 1);
                        continue;
                    }
                    // Not HTTP/2: the bytes matched so far were a request's first bytes.
                    self.phase = Phase::Head(Head::Start(0));
                    for &b in &PREFACE[..usize::from(n)] {
                        if let Err(v) = self.step(b) {
                            return Scan::Bad(i, v);
                        }
                    }
                }
                Phase::Length(left) => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len() - i);
                    i += take;
                    let left = left - take as u64;
                    if left == 0 {
                        self.message_done();
                    } else {
                        self.phase = Phase::Length(left);
                    }
                }
                Phase::Chunked(Chunk::Data(left)) => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len() - i);
                    i += take;
                    let left = left - take as u64;
                    self.phase = Phase::Chunked(if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left)
                    });
                }
                Phase::Hold(_) | Phase::Passthrough => return Scan::Stop(i),
                Phase::Poisoned | Phase::Failed | Phase::Cut(_) => {
                    return Scan::Bad(i, Violation::Head("after a violation"))
                }
                Phase::Head(_) | Phase::Chunked(_) => {
                    if let Err(v) = self.step(bytes[i]) {
                        return Scan::Bad(i, v);
                    }
                    i += 1;
                }
            }
            if matches!(self.phase, Phase::Hold(_) | Phase::Passthrough) {
                return Scan::Stop(i);
            }
        }
        Scan::Clean
    }

    /// A message (head and body) ended: the next head, or a hold after an upgrade.
    fn message_done(&mut self) {
        self.phase = if self.facts.wants_upgrade {
            Phase::Hold(self.heads - 1)
        } else {
            Phase::Head(Head::Start(0))
        };
    }

    /// One byte of a head, a chunk line or a trailer section.
    fn step(&mut self, b: u8) -> Result<(), Violation> {
        match self.phase {
            Phase::Head(h) => {
                let next = self.head_byte(h, b).map_err(Violation::Head)?;
                match next {
                    Some(h) => self.phase = Phase::Head(h),
                    None => self.head_done().map_err(Violation::Head)?,
                }
                Ok(())
            }
            Phase::Chunked(c) => self.chunk_byte(c, b).map_err(Violation::Body),
            _ => Ok(()),
        }
    }

    /// One byte of a request head; `None` when the head is complete.
    fn head_byte(&mut self, h: Head, b: u8) -> Result<Option<Head>, &'static str> {
        use Head::*;
        Ok(Some(match h {
            Start(n) => match b {
                b'\r' => StartLf(n),
                b'\n' => return Err("bare LF before the request line"),
                _ if is_tchar(b) => {
                    self.facts = HeadFacts::default();
                    self.method_byte(b);
                    Method
                }
                _ => return Err("invalid request line"),
            },
            StartLf(n) => match b {
                b'\n' if n < MAX_LEADING_CRLF => Start(n + 1),
                b'\n' => return Err("too many empty lines before the request line"),
                _ => return Err("bare CR before the request line"),
            },
            Method => match b {
                b' ' => {
                    self.facts.connect = self.facts.method_match == 7;
                    self.target_len = 0;
                    Target
                }
                _ if is_tchar(b) => {
                    self.method_byte(b);
                    Method
                }
                _ => return Err("invalid method"),
            },
            Target => match b {
                b' ' => Version(0),
                0x21..=0x7e | 0x80..=0xff => {
                    self.target_len += 1;
                    if self.target_len > self.max_target {
                        return Err(TARGET_TOO_LONG);
                    }
                    Target
                }
                _ => return Err("invalid request-target"),
            },
            Version(n) => {
                const V: &[u8] = b"HTTP/1.";
                let n_us = usize::from(n);
                if n_us < V.len() {
                    if b != V[n_us] {
                        return Err("invalid HTTP version");
                    }
                    Version(n + 1)
                } else if n_us == V.len() {
                    match b {
                        b'1' => self.facts.http11 = true,
                        b'0' => self.facts.http11 = false,
                        _ => return Err("unsupported HTTP version"),
                    }
                    Version(n + 1)
                } else if b == b'\r' {
                    VersionLf
                } else {
                    return Err("invalid request line ending");
                }
            }
            VersionLf => match b {
                b'\n' => {
                    // hyper's rule for an upgrade: CONNECT, or an `Upgrade` field on
                    // HTTP/1.1 (an `Upgrade` on HTTP/1.0 cancels even CONNECT's).
                    self.facts.wants_upgrade = self.facts.connect;
                    FieldStart
                }
                _ => return Err("bare CR in the request line"),
            },
            FieldStart => match b {
                b'\r' => EndLf,
                b'\n' => return Err("bare LF"),
                b' ' | b'\t' => return Err("obs-fold or whitespace before a field line"),
                _ if is_tchar(b) => {
                    self.name[0] = b.to_ascii_lowercase();
                    Name(1)
                }
                _ => return Err("invalid field name"),
            },
            Name(n) => match b {
                b':' => {
                    self.field = self.classify(n);
                    self.value = ValueState::default();
                    Value
                }
                b' ' | b'\t' => return Err("whitespace between a field name and its colon"),
                _ if is_tchar(b) => {
                    if usize::from(n) < NAME_MAX {
                        self.name[usize::from(n)] = b.to_ascii_lowercase();
                    }
                    Name(n.saturating_add(1))
                }
                _ => return Err("invalid field name"),
            },
            Value => match b {
                b'\r' => ValueLf,
                _ if is_field_byte(b) => {
                    self.value_byte(b)?;
                    Value
                }
                0 => return Err("NUL in a field value"),
                b'\n' => return Err("bare LF in a field value"),
                _ => return Err("control character in a field value"),
            },
            ValueLf => match b {
                b'\n' => {
                    self.field_done()?;
                    FieldStart
                }
                _ => return Err("bare CR in a field value"),
            },
            EndLf => match b {
                b'\n' => return Ok(None),
                _ => return Err("bare CR ending the head"),
            },
        }))
    }

    fn method_byte(&mut self, b: u8) {
        const CONNECT: &[u8] = b"CONNECT";
        let m = &mut self.facts.method_match;
        *m = match CONNECT.get(usize::from(*m)) {
            Some(&c) if c == b => *m + 1,
            _ => u8::MAX,
        };
    }

    fn classify(&self, len: u8) -> Field {
        let name = &self.name[..usize::from(len).min(NAME_MAX)];
        if usize::from(len) > NAME_MAX {
            return Field::Other;
        }
        match name {
            b"content-length" => Field::ContentLength,
            b"transfer-encoding" => Field::TransferEncoding,
            b"upgrade" => Field::Upgrade,
            _ => Field::Other,
        }
    }

    fn value_byte(&mut self, b: u8) -> Result<(), &'static str> {
        let v = &mut self.value;
        match self.field {
            Field::ContentLength => match b {
                b'0'..=b'9' if !v.trailing => {
                    let d = u64::from(b - b'0');
                    let n = v
                        .digits
                        .unwrap_or(0)
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(d))
                        .ok_or("Content-Length overflows")?;
                    v.digits = Some(n);
                }
                b' ' | b'\t' => v.trailing = v.digits.is_some(),
                b',' => return Err("Content-Length list"),
                _ => return Err("invalid Content-Length"),
            },
            Field::TransferEncoding => {
                const CHUNKED: &[u8] = b"chunked";
                match b {
                    b',' => {
                        v.te_pos = 0;
                        v.te_trailing = false;
                    }
                    b' ' | b'\t' => v.te_trailing = v.te_pos != 0,
                    _ if v.te_trailing => v.te_pos = u8::MAX,
                    _ => {
                        v.te_pos = match CHUNKED.get(usize::from(v.te_pos)) {
                            Some(&c) if c == b.to_ascii_lowercase() => v.te_pos + 1,
                            _ => u8::MAX,
                        }
                    }
                }
            }
            Field::Upgrade | Field::Other => {}
        }
        Ok(())
    }

    /// A field line ended (CRLF).
    fn field_done(&mut self) -> Result<(), &'static str> {
        if matches!(self.phase, Phase::Chunked(_)) {
            // A trailer field: syntax only (framing fields there frame nothing).
            return Ok(());
        }
        let f = &mut self.facts;
        match self.field {
            Field::ContentLength => {
                let n = self.value.digits.ok_or("empty Content-Length")?;
                match f.content_length {
                    Some(prev) if prev != n => return Err("differing Content-Length values"),
                    _ => f.content_length = Some(n),
                }
            }
            Field::TransferEncoding => {
                f.te = true;
                f.te_chunked = usize::from(self.value.te_pos) == b"chunked".len();
            }
            Field::Upgrade => f.wants_upgrade = f.http11,
            Field::Other => {}
        }
        Ok(())
    }

    /// The empty line ending a request head: decide the body's framing (RFC 9112 §6.3).
    fn head_done(&mut self) -> Result<(), &'static str> {
        let f = &self.facts;
        if f.te && f.content_length.is_some() {
            return Err("both Content-Length and Transfer-Encoding");
        }
        if f.te && !f.http11 {
            return Err("Transfer-Encoding in an HTTP/1.0 request");
        }
        if f.te && !f.te_chunked {
            return Err("Transfer-Encoding not ending with chunked");
        }
        self.heads += 1;
        if f.te {
            self.phase = Phase::Chunked(Chunk::Size {
                digits: false,
                size: 0,
            });
        } else {
            match f.content_length {
                Some(n) if n > 0 => self.phase = Phase::Length(n),
                _ => self.message_done(),
            }
        }
        Ok(())
    }

    /// One byte of chunk framing (not data).
    fn chunk_byte(&mut self, c: Chunk, b: u8) -> Result<(), &'static str> {
        use Chunk::*;
        let next = match c {
            Size { digits, size } => match b {
                _ if hex(b).is_some() => {
                    let d = hex(b).unwrap_or(0);
                    let size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(d))
                        .ok_or("chunk size overflows")?;
                    Size { digits: true, size }
                }
                _ if !digits => return Err("invalid chunk size"),
                b'\r' => SizeLf { size },
                b';' => ExtNameStart { size },
                b' ' | b'\t' => SizeWs { size },
                _ => return Err("invalid chunk size"),
            },
            SizeWs { size } => match b {
                b' ' | b'\t' => SizeWs { size },
                b';' => ExtNameStart { size },
                _ => return Err("invalid chunk size line"),
            },
            ExtNameStart { size } => match b {
                b' ' | b'\t' => ExtNameStart { size },
                _ if is_tchar(b) => ExtName { size },
                _ => return Err("invalid chunk extension"),
            },
            ExtName { size } => match b {
                _ if is_tchar(b) => ExtName { size },
                b' ' | b'\t' => ExtAfterName { size },
                b'=' => ExtValueStart { size },
                b';' => ExtNameStart { size },
                b'\r' => SizeLf { size },
                _ => return Err("invalid chunk extension"),
            },
            ExtAfterName { size } => match b {
                b' ' | b'\t' => ExtAfterName { size },
                b'=' => ExtValueStart { size },
                b';' => ExtNameStart { size },
                b'\r' => SizeLf { size },
                _ => return Err("invalid chunk extension"),
            },
            ExtValueStart { size } => match b {
                b' ' | b'\t' => ExtValueStart { size },
                b'"' => ExtQuoted { size },
                _ if is_tchar(b) => ExtToken { size },
                _ => return Err("invalid chunk extension value"),
            },
            ExtToken { size } => match b {
                _ if is_tchar(b) => ExtToken { size },
                b' ' | b'\t' => ExtAfterValue { size },
                b';' => ExtNameStart { size },
                b'\r' => SizeLf { size },
                _ => return Err("invalid chunk extension value"),
            },
            // RFC 9110 §5.6.4 quoted-string.
            ExtQuoted { size } => match b {
                b'"' => ExtAfterValue { size },
                b'\\' => ExtQuotedPair { size },
                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => ExtQuoted { size },
                _ => return Err("invalid chunk extension quoted value"),
            },
            ExtQuotedPair { size } => match b {
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => ExtQuoted { size },
                _ => return Err("invalid chunk extension quoted value"),
            },
            ExtAfterValue { size } => match b {
                b' ' | b'\t' => ExtAfterValue { size },
                b';' => ExtNameStart { size },
                b'\r' => SizeLf { size },
                _ => return Err("invalid chunk extension"),
            },
            SizeLf { size } => match b {
                b'\n' if size == 0 => Trailer(Head::FieldStart),
                b'\n' => Data(size),
                _ => return Err("bare CR in a chunk size line"),
            },
            Data(_) => return Err("chunk data scanned bytewise"),
            DataCr => match b {
                b'\r' => DataLf,
                _ => return Err("chunk data not followed by CRLF"),
            },
            DataLf => match b {
                b'\n' => Size {
                    digits: false,
                    size: 0,
                },
                _ => return Err("chunk data not followed by CRLF"),
            },
            Trailer(h) => {
                // Field lines with the head's strict rules; no request line.
                self.field = Field::Other;
                match self.head_byte(h, b)? {
                    Some(h) => Trailer(h),
                    None => {
                        self.message_done();
                        return Ok(());
                    }
                }
            }
        };
        self.phase = Phase::Chunked(next);
        Ok(())
    }
}

/// What the connection's service tells the guard: which request each response answers
/// and whether it switched protocols.
#[derive(Debug)]
pub struct Upgrades {
    state: Mutex<Verdicts>,
    next: std::sync::atomic::AtomicU64,
    /// Why the guard refused a request head, once it did (for the access log).
    refusal: std::sync::OnceLock<&'static str>,
    /// The index of the request whose target was cut at the limit (`u64::MAX`: none).
    target_too_long: std::sync::atomic::AtomicU64,
}

#[derive(Default, Debug)]
struct Verdicts {
    /// The latest response: its request's index and whether it switched protocols.
    last: Option<(u64, bool)>,
    /// The guard's read, waiting for a verdict.
    waker: Option<Waker>,
}

impl Default for Upgrades {
    fn default() -> Self {
        Upgrades {
            state: Mutex::default(),
            next: std::sync::atomic::AtomicU64::new(0),
            refusal: std::sync::OnceLock::new(),
            target_too_long: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }
}

impl Upgrades {
    /// Whether request `index` came with a request-target over the limit: it reaches the
    /// service cut short, to be answered `414`.
    pub fn target_too_long(&self, index: u64) -> bool {
        self.target_too_long
            .load(std::sync::atomic::Ordering::Acquire)
            == index
    }

    fn mark_target_too_long(&self, index: u64) {
        self.target_too_long
            .store(index, std::sync::atomic::Ordering::Release);
    }

    /// The index of a new HTTP/1 request on the connection (call in the order hyper
    /// hands requests to the service).
    pub fn request(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Request `index` is answered with `status`: it switched protocols when that is
    /// `101`, or `2xx` to a `CONNECT` (hyper's rule, RFC 9110 §9.3.6, §15.2.2).
    pub fn responded(&self, index: u64, status: http::StatusCode, connect: bool) {
        let upgraded =
            status == http::StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success());
        let waker = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.last = Some((index, upgraded));
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Why the guard refused a request head on this connection, if it did.
    pub fn refusal(&self) -> Option<&'static str> {
        self.refusal.get().copied()
    }

    /// The verdict on request `index`, or `None` (and a wake-up later) when not known.
    fn verdict(&self, index: u64, cx: &Context<'_>) -> Option<bool> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.last {
            Some((i, upgraded)) if i == index => Some(upgraded),
            _ => {
                s.waker = Some(cx.waker().clone());
                None
            }
        }
    }
}

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

/// The refusal of a request-target over the limit.
const TARGET_TOO_LONG: &str = "request-target too long";

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

/// How long a refused connection is drained after its error response (RFC 9112 §9.6).
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// The most a refused connection is drained of.
const LINGER_BYTES: usize = 4 * 1024 * 1024;

/// A lingering close (RFC 9112 §9.6 "Tear-down"; nginx's `lingering_close`): after a
/// refused request the write side is closed and what the client is still sending (the
/// rest of an oversized target or body) is read and dropped until it closes too, so that
/// closing with unread data does not make the kernel reset the connection and destroy
/// the error response on its way. Bounded in time and bytes.
#[derive(Debug)]
struct Linger {
    deadline: Pin<Box<tokio::time::Sleep>>,
    drained: usize,
}

impl Linger {
    fn new() -> Self {
        Linger {
            deadline: Box::pin(tokio::time::sleep(LINGER_TIME)),
            drained: 0,
        }
    }

    fn poll_drain<S: AsyncRead + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 4096];
        loop {
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    self.drained += rb.filled().len();
                    if self.drained >= LINGER_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                }
                // EOF or an error: the client is done.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    return match std::future::Future::poll(self.deadline.as_mut(), cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `input` in one piece and in every two-piece split; the verdicts must agree.
    fn scan_all(input: &[u8]) -> Scan {
        let mut whole = Scanner::new();
        let verdict = whole.scan(input);
        for cut in 1..input.len() {
            let mut s = Scanner::new();
            let got = match s.scan(&input[..cut]) {
                Scan::Clean => match s.scan(&input[cut..]) {
                    Scan::Clean => Scan::Clean,
                    Scan::Bad(i, v) => Scan::Bad(i + cut, v),
                    Scan::Stop(i) => Scan::Stop(i + cut),
                },
                other => other,
            };
            assert_eq!(got, verdict, "split at {cut}");
        }
        verdict
    }

    #[test]
    fn a_target_over_the_limit_is_cut() {
        let mut s = Scanner::new();
        s.max_target = 8;
        assert_eq!(s.scan(b"GET /1234567 HTTP/1.1\r\n"), Scan::Clean);
        let mut s = Scanner::new();
        s.max_target = 8;
        assert_eq!(
            s.scan(b"GET /12345678 HTTP/1.1\r\n"),
            Scan::Bad(12, Violation::Head(TARGET_TOO_LONG))
        );
        // The count starts again with each request.
        let mut s = Scanner::new();
        s.max_target = 8;
        let two = b"GET /1234567 HTTP/1.1\r\n\r\nGET /1234567 HTTP/1.1\r\n\r\n";
        assert_eq!(s.scan(two), Scan::Clean);
    }

    fn ok(input: &str) {
        assert_eq!(scan_all(input.as_bytes()), Scan::Clean, "{input:?}");
    }

    fn bad_head(input: &str) {
        assert!(
            matches!(scan_all(input.as_bytes()), Scan::Bad(_, Violation::Head(_))),
            "{input:?}"
        );
    }

    fn bad_body(input: &str) {
        assert!(
            matches!(scan_all(input.as_bytes()), Scan::Bad(_, Violation::Body(_))),
            "{input:?}"
        );
    }

    #[test]
    fn valid_requests_pass() {
        ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        ok("\r\nGET /x?y HTTP/1.0\r\nHost: a\r\nX: \t v \r\n\r\n");
        ok("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n");
        ok("POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length:3\r\n\r\nabc");
        ok("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        ok("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n");
        ok("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b;c=\"d\\\"\" ;e\r\nabc\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn heads_are_strict() {
        bad_head("GET / HTTP/1.1\nHost: a\r\n\r\n");
        bad_head("GET / HTTP/1.1\r\nHost: a\n\r\n");
        bad_head("GET / HTTP/1.1\r\nHost: a\r\n\n");
        bad_head("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n");
        bad_head("GET / HTTP/1.1\r\nHost : a\r\n\r\n");
        bad_head("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n");
        bad_head("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n");
        bad_head("GET  / HTTP/1.1\r\n\r\n");
        bad_head("GET / HTTP/1.2\r\n\r\n");
        bad_head("GET / HTTP/1.1 \r\n\r\n");
        bad_head("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        bad_head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        bad_head("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        bad_head("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n");
        bad_head("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n");
        bad_head("POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n");
        bad_head("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n");
        bad_head("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        bad_head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        bad_head("POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n");
        bad_head(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
        );
        bad_head("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        // The second, pipelined request is the bad one.
        bad_head("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\nX: y\r\n\r\n");
    }

    #[test]
    fn chunk_framing_is_strict() {
        let pre = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for body in [
            "g\r\n",
            "-1\r\n",
            "0x5\r\n",
            "\r\n",
            "1ffffffffffffffff\r\n",
            "3;a\rb\r\nabc\r\n",
            "3\nabc\r\n",
            "3\r\nabcd\r\n",
            "3\r\nabc\n0\r\n\r\n",
            "3 \r\nabc\r\n",
            "0\r\nX: a\nb\r\n\r\n",
            "0\r\n folded\r\n\r\n",
        ] {
            bad_body(&format!("{pre}{body}"));
        }
    }

    #[test]
    fn preface_and_upgrades_stop_the_scan() {
        let preface = std::str::from_utf8(PREFACE).unwrap_or_default();
        assert_eq!(
            scan_all(format!("{preface}\0\0garbage").as_bytes()),
            Scan::Stop(24)
        );
        let up = "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(
            scan_all(format!("{up}\x01\x00").as_bytes()),
            Scan::Stop(up.len())
        );
        let connect = "CONNECT a:443 HTTP/1.1\r\n\r\n";
        assert_eq!(
            scan_all(format!("{connect}\x16\x03").as_bytes()),
            Scan::Stop(connect.len())
        );
        // An Upgrade on HTTP/1.0 is no upgrade for hyper.
        ok("GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n");
        // Close to the preface but not it.
        bad_head("PRI * HTTP/2.0\r\n\r\nXY\r\n\r\n");
        ok("PRINT / HTTP/1.1\r\n\r\n");
    }
}
