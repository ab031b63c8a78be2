//! Request framing checks on the parsed request, before anything is forwarded: the part
//! of the request smuggling defence that the header map hyper builds is enough for.
//!
//! The byte-level part (bare LF, obs-fold, whitespace before a colon, control characters,
//! `Content-Length` with `Transfer-Encoding`, differing `Content-Length`s, chunk framing)
//! is the HTTP/1 guard (`server/h1_guard/`), which sees the bytes before hyper parses them; hyper
//! answers 400 to what it refuses. What reaches the router has a `Transfer-Encoding`
//! whose last coding is `chunked` (or none), and this module checks the rest:
//!
//! - HTTP/1.1 `Transfer-Encoding` must be exactly `chunked` (one coding, one field line,
//!   any case, RFC 9112 §7: coding names are case-insensitive). Another coding before it
//!   (`gzip, chunked`) is one we do not implement: `501 Not Implemented` (RFC 9112 §6.1:
//!   "A server that receives a request message with a transfer coding it does not
//!   understand SHOULD respond with 501"), which is what Envoy answers to any
//!   `Transfer-Encoding` other than `chunked` (`http1.invalid_transfer_encoding`).
//!   `chunked` applied twice (`chunked, chunked`, or two `chunked` lines) is malformed
//!   (§6.1: "A sender MUST NOT apply the chunked transfer coding more than once"): 400.
//!   A `Transfer-Encoding` on `CONNECT` is refused with 501 as Envoy does (a CONNECT
//!   request has no content, RFC 9110 §9.3.6).
//! - Defence in depth if hyper ever stops dropping a `Content-Length` next to a
//!   `Transfer-Encoding` or merging duplicates: both together, or `Content-Length`
//!   values that are not all the same `1*DIGIT`, are refused with 400 (RFC 9112 §6.3
//!   items 3 and 5).
//! - HTTP/2 (RFC 9113 §8.2.2): connection-specific fields (`connection`, `keep-alive`,
//!   `proxy-connection`, `transfer-encoding`, `upgrade`) and `te` other than `trailers`
//!   make a request malformed. The h2 crate already resets such a stream with
//!   PROTOCOL_ERROR before the service sees it; this is the same rule again so that a
//!   downgrade to HTTP/1.1 can never carry them. (A `content-length` that disagrees with
//!   the DATA sent is enforced by the h2 crate on the body: the body fails, and the
//!   upstream request is aborted before it completes.)
//!
//! Every refusal is answered with `Connection: close` (HTTP/1): the connection cannot be
//! trusted to frame the next request (RFC 9112 §6.1, §6.3: "the server MUST ... close
//! the connection").

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Version};

/// Why a request was refused, and with which status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The status to answer (400 or 501).
    pub status: u16,
    /// The response code details (access log), in Envoy's style.
    pub details: &'static str,
}

const BAD: u16 = 400;
const NOT_IMPLEMENTED: u16 = 501;

fn refuse(status: u16, details: &'static str) -> Option<Refusal> {
    Some(Refusal { status, details })
}

/// Checks a request's framing fields; `Some` when it must be refused (and the
/// connection closed).
pub fn check(method: &Method, version: Version, headers: &HeaderMap) -> Option<Refusal> {
    if version == Version::HTTP_2 || version == Version::HTTP_3 {
        return check_h2(headers);
    }
    let te = headers.contains_key(header::TRANSFER_ENCODING);
    let cl = headers.contains_key(header::CONTENT_LENGTH);
    if te && cl {
        return refuse(BAD, "http1.content_length_and_chunked_not_allowed");
    }
    if cl && content_length(headers).is_none() {
        return refuse(BAD, "http1.content_length_invalid");
    }
    if te {
        if version != Version::HTTP_11 {
            return refuse(BAD, "http1.transfer_encoding_not_allowed");
        }
        if *method == Method::CONNECT {
            return refuse(NOT_IMPLEMENTED, "http1.invalid_transfer_encoding");
        }
        let mut chunked = 0usize;
        let mut other = false;
        for value in headers.get_all(header::TRANSFER_ENCODING) {
            let Ok(value) = value.to_str() else {
                return refuse(BAD, "http1.invalid_transfer_encoding");
            };
            for coding in value.split(',') {
                let coding = coding.trim_matches(|c| c == ' ' || c == '\t');
                if coding.eq_ignore_ascii_case("chunked") {
                    chunked += 1;
                } else {
                    other = true;
                }
            }
        }
        if other {
            return refuse(NOT_IMPLEMENTED, "http1.invalid_transfer_encoding");
        }
        if chunked != 1 {
            return refuse(BAD, "http1.invalid_transfer_encoding");
        }
    }
    None
}

/// The single `Content-Length` value, when every field line (and list element) is the
/// same `1*DIGIT`.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut found = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let part = trim(part);
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n = std::str::from_utf8(part).ok()?.parse::<u64>().ok()?;
            match found {
                Some(prev) if prev != n => return None,
                _ => found = Some(n),
            }
        }
    }
    found
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9113 §8.2.2 connection-specific fields.
fn check_h2(headers: &HeaderMap) -> Option<Refusal> {
    static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
    let specific = [
        &header::CONNECTION,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
    ];
    if specific.iter().any(|n| headers.contains_key(*n)) {
        return refuse(BAD, "http2.connection_specific_header");
    }
    if headers.get_all(header::TE).iter().any(|v| v != "trailers") {
        return refuse(BAD, "http2.invalid_te");
    }
    if headers.contains_key(header::CONTENT_LENGTH) && content_length(headers).is_none() {
        return refuse(BAD, "http2.content_length_invalid");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h1(fields: &[(&str, &str)]) -> Option<u16> {
        with(Method::POST, Version::HTTP_11, fields)
    }

    fn with(method: Method, version: Version, fields: &[(&str, &str)]) -> Option<u16> {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        check(&method, version, &h).map(|r| r.status)
    }

    #[test]
    fn transfer_encoding() {
        assert_eq!(h1(&[("transfer-encoding", "chunked")]), None);
        assert_eq!(h1(&[("transfer-encoding", "Chunked")]), None);
        assert_eq!(h1(&[("transfer-encoding", "gzip, chunked")]), Some(501));
        assert_eq!(
            h1(&[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "chunked")
            ]),
            Some(501)
        );
        assert_eq!(h1(&[("transfer-encoding", "chunked, chunked")]), Some(400));
        assert_eq!(
            h1(&[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]),
            Some(400)
        );
        assert_eq!(
            with(
                Method::CONNECT,
                Version::HTTP_11,
                &[("transfer-encoding", "chunked")]
            ),
            Some(501)
        );
        assert_eq!(
            with(
                Method::POST,
                Version::HTTP_10,
                &[("transfer-encoding", "chunked")]
            ),
            Some(400)
        );
    }

    #[test]
    fn content_length() {
        assert_eq!(h1(&[("content-length", "5")]), None);
        assert_eq!(
            h1(&[("content-length", "5"), ("content-length", "5")]),
            None
        );
        assert_eq!(h1(&[("content-length", "5, 5")]), None);
        assert_eq!(h1(&[("content-length", "5, 6")]), Some(400));
        assert_eq!(
            h1(&[("content-length", "5"), ("content-length", "6")]),
            Some(400)
        );
        assert_eq!(h1(&[("content-length", "-1")]), Some(400));
        assert_eq!(
            h1(&[("content-length", "5"), ("transfer-encoding", "chunked")]),
            Some(400)
        );
    }

    #[test]
    fn h2_connection_specific() {
        let h2 = |f: &[(&str, &str)]| with(Method::POST, Version::HTTP_2, f);
        assert_eq!(h2(&[("te", "trailers")]), None);
        assert_eq!(h2(&[("content-length", "3")]), None);
        for f in [
            ("connection", "close"),
            ("keep-alive", "1"),
            ("proxy-connection", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "gzip"),
        ] {
            assert_eq!(h2(&[f]), Some(400), "{f:?}");
        }
    }
}
