//! The request-framing state machine: request heads byte by byte, bodies by length or
//! chunk framing, so the guard knows where each request starts and ends.

use super::grammar::*;

/// The request-framing state machine.
#[derive(Debug)]
pub(super) struct Scanner {
    pub(super) phase: Phase,
    pub(super) facts: HeadFacts,
    /// Lowercased start of the current field name.
    pub(super) name: [u8; NAME_MAX],
    pub(super) field: Field,
    pub(super) value: ValueState,
    /// Request heads accepted so far (the next one's index).
    pub(super) heads: u64,
    /// Bytes of the current request-target so far.
    pub(super) target_len: usize,
    /// The longest request-target passed on (see [`H1Guard::with_target_limit`]).
    pub(super) max_target: usize,
}

impl Scanner {
    pub(super) fn new() -> Self {
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
    pub(super) fn scan(&mut self, bytes: &[u8]) -> Scan {
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
                Phase::Length(_) | Phase::Chunked(Chunk::Data(_)) => {
                    i += self.skip_body(bytes.len() - i)
                }
                Phase::Hold(_) | Phase::Passthrough => return Scan::Stop(i),
                Phase::Poisoned | Phase::Failed | Phase::Cut(_) => {
                    return Scan::Bad(i, Violation::Head("after a violation"))
                }
                Phase::Head(_) | Phase::Chunked(_) => match self.head_run(&bytes[i..]) {
                    Ok(n) => i += n,
                    Err((n, v)) => return Scan::Bad(i + n, v),
                },
            }
            if matches!(self.phase, Phase::Hold(_) | Phase::Passthrough) {
                return Scan::Stop(i);
            }
        }
        Scan::Clean
    }

    /// Passes over up to `avail` bytes of a body's data (by length or in a chunk); returns
    /// how many.
    fn skip_body(&mut self, avail: usize) -> usize {
        let (Phase::Length(left) | Phase::Chunked(Chunk::Data(left))) = self.phase else {
            return 0;
        };
        let take = usize::try_from(left).unwrap_or(usize::MAX).min(avail);
        let left = left - take as u64;
        match self.phase {
            Phase::Length(_) if left == 0 => self.message_done(),
            Phase::Length(_) => self.phase = Phase::Length(left),
            _ if left == 0 => self.phase = Phase::Chunked(Chunk::DataCr),
            _ => self.phase = Phase::Chunked(Chunk::Data(left)),
        }
        take
    }

    /// Scans the start of `rest` in a head or chunk framing: the common bytes of a head a
    /// run at a time (an ordinary field's value and the request-target need only their
    /// bytes checked), anything else one byte. Returns how many bytes were taken, or where
    /// in `rest` the violation is.
    fn head_run(&mut self, rest: &[u8]) -> Result<usize, (usize, Violation)> {
        let run = match self.phase {
            Phase::Head(Head::Value) if matches!(self.field, Field::Other) => {
                run_len(rest, is_field_byte)
            }
            Phase::Head(Head::Target) => {
                let run = run_len(rest, is_target_byte);
                if self.target_len + run > self.max_target {
                    // Cut exactly where the bytewise rule would: after the longest target
                    // passed on.
                    let fits = self.max_target - self.target_len;
                    self.target_len = self.max_target;
                    return Err((fits, Violation::Head(TARGET_TOO_LONG)));
                }
                self.target_len += run;
                run
            }
            _ => 0,
        };
        if run > 0 {
            return Ok(run);
        }
        self.step(rest[0]).map(|()| 1).map_err(|v| (0, v))
    }

    /// A message (head and body) ended: the next head, or a hold after an upgrade.
    pub(super) fn message_done(&mut self) {
        self.phase = if self.facts.wants_upgrade {
            Phase::Hold(self.heads - 1)
        } else {
            Phase::Head(Head::Start(0))
        };
    }

    /// One byte of a head, a chunk line or a trailer section.
    pub(super) fn step(&mut self, b: u8) -> Result<(), Violation> {
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
    pub(super) fn head_byte(&mut self, h: Head, b: u8) -> Result<Option<Head>, &'static str> {
        use Head::*;
        match h {
            Start(_) | StartLf(_) | Method | Target | Version(_) | VersionLf => {
                self.request_line_byte(h, b).map(Some)
            }
            FieldStart | Name(_) | Value | ValueLf | EndLf => self.field_line_byte(h, b),
        }
    }

    /// One byte of the request line (and of the empty lines RFC 9112 §2.2 lets precede it).
    fn request_line_byte(&mut self, h: Head, b: u8) -> Result<Head, &'static str> {
        use Head::*;
        Ok(match h {
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
                _ if is_target_byte(b) => {
                    self.target_len += 1;
                    if self.target_len > self.max_target {
                        return Err(TARGET_TOO_LONG);
                    }
                    Target
                }
                _ => return Err("invalid request-target"),
            },
            Version(n) => self.version_byte(n, b)?,
            VersionLf => match b {
                b'\n' => {
                    // hyper's rule for an upgrade: CONNECT, or an `Upgrade` field on
                    // HTTP/1.1 (an `Upgrade` on HTTP/1.0 cancels even CONNECT's).
                    self.facts.wants_upgrade = self.facts.connect;
                    FieldStart
                }
                _ => return Err("bare CR in the request line"),
            },
            FieldStart | Name(_) | Value | ValueLf | EndLf => {
                return Err("field line state in the request line")
            }
        })
    }

    /// One byte of `HTTP/1.x` CR, `n` bytes of it matched so far.
    fn version_byte(&mut self, n: u8, b: u8) -> Result<Head, &'static str> {
        const V: &[u8] = b"HTTP/1.";
        let n_us = usize::from(n);
        if n_us < V.len() {
            if b != V[n_us] {
                return Err("invalid HTTP version");
            }
            Ok(Head::Version(n + 1))
        } else if n_us == V.len() {
            match b {
                b'1' => self.facts.http11 = true,
                b'0' => self.facts.http11 = false,
                _ => return Err("unsupported HTTP version"),
            }
            Ok(Head::Version(n + 1))
        } else if b == b'\r' {
            Ok(Head::VersionLf)
        } else {
            Err("invalid request line ending")
        }
    }

    /// One byte of a field line or of the empty line ending the section; `None` at its end.
    fn field_line_byte(&mut self, h: Head, b: u8) -> Result<Option<Head>, &'static str> {
        use Head::*;
        Ok(Some(match h {
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
            Start(_) | StartLf(_) | Method | Target | Version(_) | VersionLf => {
                return Err("request line state in a field line")
            }
        }))
    }

    pub(super) fn method_byte(&mut self, b: u8) {
        const CONNECT: &[u8] = b"CONNECT";
        let m = &mut self.facts.method_match;
        *m = match CONNECT.get(usize::from(*m)) {
            Some(&c) if c == b => *m + 1,
            _ => u8::MAX,
        };
    }

    pub(super) fn classify(&self, len: u8) -> Field {
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

    pub(super) fn value_byte(&mut self, b: u8) -> Result<(), &'static str> {
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
    pub(super) fn field_done(&mut self) -> Result<(), &'static str> {
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
    pub(super) fn head_done(&mut self) -> Result<(), &'static str> {
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
    pub(super) fn chunk_byte(&mut self, c: Chunk, b: u8) -> Result<(), &'static str> {
        use Chunk::*;
        let next = match c {
            Size { .. } | SizeWs { .. } | SizeLf { .. } => self.size_line_byte(c, b)?,
            ExtNameStart { size }
            | ExtName { size }
            | ExtAfterName { size }
            | ExtValueStart { size }
            | ExtToken { size }
            | ExtQuoted { size }
            | ExtQuotedPair { size }
            | ExtAfterValue { size } => extension_byte(c, size, b)?,
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

    /// One byte of a chunk-size line before any extension (RFC 9112 §7.1).
    fn size_line_byte(&mut self, c: Chunk, b: u8) -> Result<Chunk, &'static str> {
        use Chunk::*;
        Ok(match c {
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
            SizeLf { size } => match b {
                b'\n' if size == 0 => Trailer(Head::FieldStart),
                b'\n' => Data(size),
                _ => return Err("bare CR in a chunk size line"),
            },
            _ => return Err("not a chunk-size state"),
        })
    }
}

/// One byte of a chunk extension (RFC 9112 §7.1.1), for a chunk of `size` bytes.
fn extension_byte(c: Chunk, size: u64, b: u8) -> Result<Chunk, &'static str> {
    use Chunk::*;
    Ok(match c {
        ExtNameStart { .. } => match b {
            b' ' | b'\t' => ExtNameStart { size },
            _ if is_tchar(b) => ExtName { size },
            _ => return Err("invalid chunk extension"),
        },
        ExtName { .. } => match b {
            _ if is_tchar(b) => ExtName { size },
            b' ' | b'\t' => ExtAfterName { size },
            b'=' => ExtValueStart { size },
            b';' => ExtNameStart { size },
            b'\r' => SizeLf { size },
            _ => return Err("invalid chunk extension"),
        },
        ExtAfterName { .. } => match b {
            b' ' | b'\t' => ExtAfterName { size },
            b'=' => ExtValueStart { size },
            b';' => ExtNameStart { size },
            b'\r' => SizeLf { size },
            _ => return Err("invalid chunk extension"),
        },
        ExtValueStart { .. } => match b {
            b' ' | b'\t' => ExtValueStart { size },
            b'"' => ExtQuoted { size },
            _ if is_tchar(b) => ExtToken { size },
            _ => return Err("invalid chunk extension value"),
        },
        ExtToken { .. } => match b {
            _ if is_tchar(b) => ExtToken { size },
            b' ' | b'\t' => ExtAfterValue { size },
            b';' => ExtNameStart { size },
            b'\r' => SizeLf { size },
            _ => return Err("invalid chunk extension value"),
        },
        // RFC 9110 §5.6.4 quoted-string.
        ExtQuoted { .. } => match b {
            b'"' => ExtAfterValue { size },
            b'\\' => ExtQuotedPair { size },
            b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => ExtQuoted { size },
            _ => return Err("invalid chunk extension quoted value"),
        },
        ExtQuotedPair { .. } => match b {
            b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => ExtQuoted { size },
            _ => return Err("invalid chunk extension quoted value"),
        },
        ExtAfterValue { .. } => match b {
            b' ' | b'\t' => ExtAfterValue { size },
            b';' => ExtNameStart { size },
            b'\r' => SizeLf { size },
            _ => return Err("invalid chunk extension"),
        },
        _ => return Err("not a chunk-extension state"),
    })
}

/// How many bytes at the start of `bytes` satisfy `ok`.
fn run_len(bytes: &[u8], ok: fn(u8) -> bool) -> usize {
    bytes.iter().position(|&b| !ok(b)).unwrap_or(bytes.len())
}
