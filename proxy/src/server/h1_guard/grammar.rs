//! The HTTP/1 grammar the scanner checks bytes against (RFC 9110 §5.6.2, RFC 9112) and
//! the states it moves through.

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Empty lines tolerated before a request line (RFC 9112 §2.2 "at least one").
pub(super) const MAX_LEADING_CRLF: u8 = 8;

/// RFC 9110 §5.6.2 `tchar`.
pub(super) fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// RFC 9110 §5.5 `field-vchar` or SP/HTAB: what a field value may hold.
pub(super) fn is_field_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// A byte a request-target may hold (visible ASCII, or obs-text as hyper accepts).
pub(super) fn is_target_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x7e | 0x80..=0xff)
}

pub(super) fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// Which field a header line is, as far as framing goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Field {
    Other,
    ContentLength,
    TransferEncoding,
    Upgrade,
}

/// The longest name we classify (`transfer-encoding`).
pub(super) const NAME_MAX: usize = 17;

/// Per-head facts gathered while its field lines pass.
#[derive(Default, Debug)]
pub(super) struct HeadFacts {
    /// `HTTP/1.1` (else `HTTP/1.0`).
    pub(super) http11: bool,
    /// The method is `CONNECT`.
    pub(super) connect: bool,
    /// Matched bytes of `CONNECT` while the method passes (`u8::MAX`: no match).
    pub(super) method_match: u8,
    /// hyper's rule: CONNECT, or an `Upgrade` field on HTTP/1.1.
    pub(super) wants_upgrade: bool,
    /// The `Content-Length`, once one was seen.
    pub(super) content_length: Option<u64>,
    /// A `Transfer-Encoding` field was seen.
    pub(super) te: bool,
    /// The last coding of the last `Transfer-Encoding` line is `chunked`.
    pub(super) te_chunked: bool,
}

/// Where the scanner is inside a request head or trailer section.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Head {
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
pub(super) struct ValueState {
    /// Content-Length: digits so far (`None` before the first).
    pub(super) digits: Option<u64>,
    /// Content-Length: whitespace after the digits.
    pub(super) trailing: bool,
    /// Transfer-Encoding: bytes of `chunked` matched in the current list element
    /// (`u8::MAX`: the element is something else).
    pub(super) te_pos: u8,
    /// Transfer-Encoding: whitespace after the element's text.
    pub(super) te_trailing: bool,
}

/// Where the scanner is inside a chunked body (RFC 9112 §7.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Chunk {
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
pub(super) enum Phase {
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
pub(super) enum Violation {
    /// In a request head (hyper answers 400).
    Head(&'static str),
    /// In a body (the read fails).
    Body(&'static str),
}

/// What scanning a run of bytes found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
    /// All of them are fine.
    Clean,
    /// The byte at this index is refused.
    Bad(usize, Violation),
    /// The bytes up to this index are fine; what follows must wait for an upgrade
    /// verdict (`Hold`) or is not HTTP/1 (`Passthrough`).
    Stop(usize),
}

/// The refusal of a request-target over the limit.
pub(super) const TARGET_TOO_LONG: &str = "request-target too long";
