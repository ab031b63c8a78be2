//! The `grpc-timeout` request header (gRPC over HTTP/2: `TimeoutValue TimeoutUnit`, at
//! most 8 digits, units `H M S m u n`) and how it combines with the route timeout.
//!
//! Istio sets Envoy's `max_stream_duration.grpc_timeout_header_max` to the route's
//! `timeout` (0, no cap, when the route has none), so a gRPC request's deadline is its
//! `grpc-timeout`, capped by the route timeout when one is set.

use std::time::Duration;

/// The header's name.
pub static GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// Parses a `grpc-timeout` value; `None` when malformed (the header is then ignored, as
/// Envoy does).
pub fn parse(v: &[u8]) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// When a request times out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// How long it may take.
    pub after: Duration,
    /// Counted from the start of the request (a caller's `grpc-timeout`: Envoy's
    /// `max_stream_duration` starts with the stream) rather than from the end of its body
    /// (the route timeout, as Envoy's).
    pub from_start: bool,
}

/// The deadline of a request: the route timeout, or for gRPC with a valid
/// `grpc-timeout`, that timeout capped by the route's and counted from the start.
pub fn effective(route: Option<Duration>, header: Option<Duration>) -> Option<Deadline> {
    match (route, header) {
        (r, Some(h)) => Some(Deadline {
            after: r.map_or(h, |r| r.min(h)),
            from_start: true,
        }),
        (Some(r), None) => Some(Deadline {
            after: r,
            from_start: false,
        }),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse(b"3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse(b"99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse(b"5n"), Some(Duration::from_nanos(5)));
    }

    #[test]
    fn refuses_malformed_values() {
        for v in [
            &b""[..],
            b"S",
            b"10",
            b"123456789S",
            b"1s",
            b"-1S",
            b"1.5S",
            b" 1S",
        ] {
            assert_eq!(parse(v), None, "{:?}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn the_route_timeout_caps_the_header() {
        let s = Duration::from_secs;
        let d = |after, from_start| Some(Deadline { after, from_start });
        assert_eq!(effective(Some(s(5)), Some(s(1))), d(s(1), true));
        assert_eq!(effective(Some(s(1)), Some(s(5))), d(s(1), true));
        assert_eq!(effective(None, Some(s(5))), d(s(5), true));
        assert_eq!(effective(Some(s(2)), None), d(s(2), false));
        assert_eq!(effective(None, None), None);
    }
}
