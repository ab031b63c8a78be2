//! The `Host` field of an HTTP/1 request (RFC 9112 §3.2, RFC 9110 §7.2): the one place a
//! server learns which authority an origin-form request is for, so a proxy that routes by
//! it must not guess. RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
//! code to any HTTP/1.1 request message that lacks a Host header field and to any request
//! message that contains more than one Host header field line or a Host header field with
//! an invalid field value."
//!
//! An absolute-form request-target carries its own authority, which wins over `Host`
//! (RFC 9112 §3.2.2: the server "MUST ignore the received Host header field (if any) and
//! instead use the host information of the request-target"); the router reads the
//! target's authority first, and the `Host` sent upstream is rebuilt from it.
//!
//! HTTP/2 requests carry `:authority` instead and are left to the h2 codec.

use super::smuggling::Refusal;
use http::header::{HeaderMap, HOST};
use http::Version;

const fn refuse(details: &'static str) -> Option<Refusal> {
    Some(Refusal {
        status: 400,
        details,
    })
}

/// Checks the `Host` field lines of an HTTP/1 request; `Some` when it must be refused.
pub fn check(version: Version, headers: &HeaderMap) -> Option<Refusal> {
    if version >= Version::HTTP_2 {
        return None;
    }
    let mut lines = headers.get_all(HOST).iter();
    match (lines.next(), lines.next()) {
        // HTTP/1.0 predates `Host`: a request without one is routed by the target alone.
        (None, _) if version == Version::HTTP_11 => refuse("http1.missing_host_header"),
        (None, _) => None,
        (Some(_), Some(_)) => refuse("http1.multiple_host_headers"),
        (Some(v), None) if !valid(v.as_bytes()) => refuse("http1.invalid_host_header"),
        (Some(_), None) => None,
    }
}

/// RFC 9110 §7.2: `Host = uri-host [ ":" port ]`, `uri-host` being an IP-literal in
/// brackets, an IPv4 address or a reg-name (RFC 3986 §3.2.2), `port = *DIGIT`. An empty
/// value is valid (a target URI without an authority).
fn valid(v: &[u8]) -> bool {
    let (host, port) = if let Some(rest) = v.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let (literal, after) = (&rest[..end], &rest[end + 1..]);
        if !valid_ip_literal(literal) {
            return false;
        }
        match after.split_first() {
            None => return true,
            Some((b':', port)) => (&b""[..], port),
            Some(_) => return false,
        }
    } else {
        match v.iter().position(|&b| b == b':') {
            Some(i) => (&v[..i], &v[i + 1..]),
            None => (v, &b""[..]),
        }
    };
    valid_reg_name(host) && port.iter().all(u8::is_ascii_digit)
}

/// RFC 3986 `reg-name = *( unreserved / pct-encoded / sub-delims )` (an IPv4 address is
/// one too).
fn valid_reg_name(h: &[u8]) -> bool {
    let mut i = 0;
    while i < h.len() {
        match h[i] {
            b'%' => {
                let hex = h.get(i + 1..i + 3);
                if !hex.is_some_and(|x| x.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// RFC 3986 `IP-literal` without its brackets: an IPv6 address (hex digits, `:` and a
/// trailing dotted IPv4 part), or `IPvFuture` (`v` HEXDIG "." ...).
fn valid_ip_literal(l: &[u8]) -> bool {
    if let Some(rest) = l.strip_prefix(b"v").or_else(|| l.strip_prefix(b"V")) {
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (ver, tail) = (&rest[..dot], &rest[dot + 1..]);
        return !ver.is_empty()
            && ver.iter().all(u8::is_ascii_hexdigit)
            && !tail.is_empty()
            && tail.iter().all(|&b| b == b':' || valid_reg_name(&[b]));
    }
    std::str::from_utf8(l).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_hosts(hosts: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(HOST, HeaderValue::from_bytes(v).expect("header value"));
        }
        h
    }

    fn refused(version: Version, hosts: &[&[u8]]) -> Option<&'static str> {
        check(version, &with_hosts(hosts)).map(|r| r.details)
    }

    #[test]
    fn http11_needs_exactly_one_valid_host() {
        let v11 = Version::HTTP_11;
        assert_eq!(refused(v11, &[]), Some("http1.missing_host_header"));
        assert_eq!(
            refused(v11, &[b"a", b"a"]),
            Some("http1.multiple_host_headers")
        );
        assert_eq!(
            refused(v11, &[b"a", b"b"]),
            Some("http1.multiple_host_headers")
        );
        assert_eq!(refused(v11, &[b"web"]), None);
        assert_eq!(refused(Version::HTTP_10, &[]), None);
        assert_eq!(
            refused(Version::HTTP_10, &[b"a", b"b"]),
            Some("http1.multiple_host_headers")
        );
        assert_eq!(refused(Version::HTTP_2, &[]), None);
    }

    #[test]
    fn host_values() {
        for ok in [
            &b""[..],
            b"web",
            b"web:8080",
            b"web:",
            b"reviews.default.svc.cluster.local",
            b"127.0.0.1:80",
            b"[::1]",
            b"[::1]:8080",
            b"[2001:db8::7]",
            b"[v1.fe80::a+en1]",
            b"ex%41mple.com",
            b"a_b-c~d",
        ] {
            assert!(valid(ok), "{:?} is valid", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"local host"[..],
            b"web:80:80",
            b"web:8o",
            b"web/path",
            b"web@evil",
            b"[::1",
            b"[::1]x",
            b"[nothex]",
            b"[]",
            b"ex%4",
            b"ex%zz",
            b"a\tb",
            b"\x7f",
            b"caf\xc3\xa9",
        ] {
            assert!(!valid(bad), "{:?} is invalid", String::from_utf8_lossy(bad));
        }
    }
}
