//! Trace context in request headers: W3C Trace Context (`traceparent`, `tracestate`;
//! https://www.w3.org/TR/trace-context/ §3) and B3 (`x-b3-traceid`, `x-b3-spanid`,
//! `x-b3-parentspanid`, `x-b3-sampled`, `x-b3-flags`, or the single `b3` header;
//! https://github.com/openzipkin/b3-propagation). Read as Envoy's tracers read them: an
//! invalid header is as no header (a new trace starts), never an error.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// `traceparent`.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `x-b3-traceid`.
pub static B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
/// `x-b3-spanid`.
pub static B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
/// `x-b3-parentspanid`.
pub static B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
/// `x-b3-sampled`.
pub static B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
/// `x-b3-flags` (`1`: debug, which implies sampled).
pub static B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
/// The single-header B3 form.
pub static B3: HeaderName = HeaderName::from_static("b3");

/// The context a request arrived with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parent {
    /// Trace id (a 64-bit B3 id is the low half).
    pub trace_id: u128,
    /// The caller's span.
    pub span_id: u64,
    /// The caller's sampling decision, when it made one.
    pub sampled: Option<bool>,
    /// The trace id was 64 bits (B3): it is written back so.
    pub short_id: bool,
}

/// A W3C `traceparent`: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, ids not
/// all zeros; a version other than `00` is read by the `00` layout when it is at least as
/// long (W3C §3.2.4), version `ff` is invalid.
pub fn parse_traceparent(v: &[u8]) -> Option<Parent> {
    if v.len() < 55 || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let version = hex_u128(&v[0..2])?;
    if version == 0xff || (version == 0 && v.len() != 55) {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace_id = hex_u128(&v[3..35])?;
    let span_id = u64::try_from(hex_u128(&v[36..52])?).ok()?;
    let flags = hex_u128(&v[53..55])?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: Some(flags & 1 == 1),
        short_id: false,
    })
}

/// B3, the single `b3` header first (`{trace}-{span}[-{sampled}[-{parent}]]` or just the
/// sampling state `0`/`1`/`d`), then the multi-header form.
pub fn parse_b3(h: &HeaderMap) -> Option<Parent> {
    if let Some(v) = h.get(&B3) {
        return parse_b3_single(v.as_bytes());
    }
    let sampled = h
        .get(&B3_FLAGS)
        .is_some_and(|f| f.as_bytes() == b"1")
        .then_some(true);
    let sampled = sampled.or_else(|| h.get(&B3_SAMPLED).and_then(|s| b3_sampled(s.as_bytes())));
    let (Some(t), Some(s)) = (h.get(&B3_TRACE_ID), h.get(&B3_SPAN_ID)) else {
        // Only a decision: the trace starts here, with the caller's choice.
        return sampled.map(|s| Parent {
            sampled: Some(s),
            ..Parent::default()
        });
    };
    let (trace_id, short_id) = b3_trace_id(t.as_bytes())?;
    let span_id = b3_span_id(s.as_bytes())?;
    Some(Parent {
        trace_id,
        span_id,
        sampled,
        short_id,
    })
}

fn parse_b3_single(v: &[u8]) -> Option<Parent> {
    let mut parts = v.split(|b| *b == b'-');
    let first = parts.next()?;
    let Some(span) = parts.next() else {
        return b3_sampled(first).map(|s| Parent {
            sampled: Some(s),
            ..Parent::default()
        });
    };
    let (trace_id, short_id) = b3_trace_id(first)?;
    let span_id = b3_span_id(span)?;
    let sampled = match parts.next() {
        Some(s) => Some(b3_sampled(s)?),
        None => None,
    };
    Some(Parent {
        trace_id,
        span_id,
        sampled,
        short_id,
    })
}

/// `1`, `true` and the debug flag `d` sample; `0` and `false` do not.
fn b3_sampled(v: &[u8]) -> Option<bool> {
    match v {
        b"1" | b"true" | b"d" => Some(true),
        b"0" | b"false" => Some(false),
        _ => None,
    }
}

fn b3_trace_id(v: &[u8]) -> Option<(u128, bool)> {
    if v.len() != 16 && v.len() != 32 {
        return None;
    }
    let id = hex_u128(v)?;
    (id != 0).then_some((id, v.len() == 16))
}

fn b3_span_id(v: &[u8]) -> Option<u64> {
    if v.len() != 16 {
        return None;
    }
    let id = u64::try_from(hex_u128(v)?).ok()?;
    (id != 0).then_some(id)
}

/// Lower-case or upper-case hex, at most 32 digits.
fn hex_u128(v: &[u8]) -> Option<u128> {
    if v.is_empty() || v.len() > 32 {
        return None;
    }
    v.iter().try_fold(0u128, |acc, b| {
        let d = (*b as char).to_digit(16)?;
        Some(acc << 4 | d as u128)
    })
}

/// The context written upstream: this hop's span as the next hop's parent.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing {
    /// Trace id.
    pub trace_id: u128,
    /// This hop's span.
    pub span_id: u64,
    /// This hop's parent (B3's `x-b3-parentspanid`).
    pub parent_id: Option<u64>,
    /// The decision.
    pub sampled: bool,
    /// Write a 64-bit B3 trace id.
    pub short_id: bool,
}

impl Outgoing {
    /// Writes this context into `h`: W3C (`traceparent`; the caller's `tracestate` is
    /// passed on) and/or B3 (the multi-header form, which Envoy's Zipkin tracer writes
    /// whatever form it read). Every value is a slice of one buffer: one allocation per
    /// request, not one per header (the step runs on every request of a traced side).
    pub fn write(&self, h: &mut HeaderMap, w3c: bool, b3: bool) {
        let mut buf = bytes::BytesMut::with_capacity(55 + 32 + 16 + 16 + 1);
        let mut push = |len: usize, f: &dyn Fn(&mut [u8])| {
            let start = buf.len();
            buf.resize(start + len, 0);
            f(&mut buf[start..]);
            start..start + len
        };
        let traceparent = w3c.then(|| {
            push(55, &|b| {
                b[..3].copy_from_slice(b"00-");
                write_hex(&mut b[3..35], self.trace_id);
                b[35] = b'-';
                write_hex(&mut b[36..52], self.span_id as u128);
                b[52] = b'-';
                b[53..].copy_from_slice(if self.sampled { b"01" } else { b"00" });
            })
        });
        let b3_ids = b3.then(|| {
            let trace = if self.short_id {
                push(16, &|b| write_hex(b, self.trace_id & u64::MAX as u128))
            } else {
                push(32, &|b| write_hex(b, self.trace_id))
            };
            let span = push(16, &|b| write_hex(b, self.span_id as u128));
            let parent = self
                .parent_id
                .map(|p| push(16, &|b| write_hex(b, p as u128)));
            (trace, span, parent)
        });
        let buf = buf.freeze();
        let mut put = |name: &HeaderName, v: bytes::Bytes| {
            if let Ok(v) = HeaderValue::from_maybe_shared(v) {
                h.insert(name.clone(), v);
            }
        };
        if let Some(r) = traceparent {
            put(&TRACEPARENT, buf.slice(r));
        }
        let Some((trace, span, parent)) = b3_ids else {
            return;
        };
        put(&B3_TRACE_ID, buf.slice(trace));
        put(&B3_SPAN_ID, buf.slice(span));
        put(
            &B3_SAMPLED,
            bytes::Bytes::from_static(if self.sampled { b"1" } else { b"0" }),
        );
        match parent {
            Some(r) => put(&B3_PARENT_SPAN_ID, buf.slice(r)),
            None => {
                h.remove(&B3_PARENT_SPAN_ID);
            }
        }
        h.remove(&B3);
        h.remove(&B3_FLAGS);
    }

    /// Replaces the request's W3C context ([`Outgoing::write`]).
    pub fn write_w3c(&self, h: &mut HeaderMap) {
        self.write(h, true, false);
    }

    /// Replaces the request's B3 context ([`Outgoing::write`]).
    pub fn write_b3(&self, h: &mut HeaderMap) {
        self.write(h, false, true);
    }
}

/// `out.len()` lower-case hex digits of the low bits of `v`.
pub fn write_hex(out: &mut [u8], mut v: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips() {
        let p = parse_traceparent(TP.as_bytes()).expect("valid");
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.span_id, 0x00f067aa0ba902b7);
        assert_eq!(p.sampled, Some(true));
        let mut h = HeaderMap::new();
        Outgoing {
            trace_id: p.trace_id,
            span_id: p.span_id,
            parent_id: None,
            sampled: true,
            short_id: false,
        }
        .write_w3c(&mut h);
        assert_eq!(h[&TRACEPARENT], TP);
    }

    #[test]
    fn invalid_traceparents_are_no_context() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad}");
        }
        // A future version keeps the 00 layout and may append fields.
        let future = format!("01{}-more", &TP[2..]);
        assert!(parse_traceparent(future.as_bytes()).is_some());
    }

    #[test]
    fn b3_multi_and_single() {
        let mut h = HeaderMap::new();
        h.insert(&B3_TRACE_ID, HeaderValue::from_static("463ac35c9f6413ad"));
        h.insert(&B3_SPAN_ID, HeaderValue::from_static("a2fb4a1d1a96d312"));
        h.insert(&B3_SAMPLED, HeaderValue::from_static("1"));
        let p = parse_b3(&h).expect("multi");
        assert_eq!(p.trace_id, 0x463ac35c9f6413ad);
        assert!(p.short_id);
        assert_eq!(p.sampled, Some(true));

        let mut h = HeaderMap::new();
        h.insert(
            &B3,
            HeaderValue::from_static(
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90",
            ),
        );
        let p = parse_b3(&h).expect("single");
        assert_eq!(p.trace_id, 0x80f198ee56343ba864fe8b2a57d3eff7);
        assert_eq!(p.span_id, 0xe457b5a2e4d86bd1);
        assert_eq!(p.sampled, Some(false));

        let mut h = HeaderMap::new();
        h.insert(&B3, HeaderValue::from_static("d"));
        assert_eq!(parse_b3(&h).and_then(|p| p.sampled), Some(true));
        h.insert(&B3, HeaderValue::from_static("nonsense-x"));
        assert_eq!(parse_b3(&h), None);
    }

    #[test]
    fn b3_written_as_multi_headers() {
        let mut h = HeaderMap::new();
        h.insert(&B3, HeaderValue::from_static("1"));
        Outgoing {
            trace_id: 0x463ac35c9f6413ad,
            span_id: 0xa2fb4a1d1a96d312,
            parent_id: Some(1),
            sampled: false,
            short_id: true,
        }
        .write_b3(&mut h);
        assert!(h.get(&B3).is_none());
        assert_eq!(h[&B3_TRACE_ID], "463ac35c9f6413ad");
        assert_eq!(h[&B3_SPAN_ID], "a2fb4a1d1a96d312");
        assert_eq!(h[&B3_PARENT_SPAN_ID], "0000000000000001");
        assert_eq!(h[&B3_SAMPLED], "0");
    }
}
