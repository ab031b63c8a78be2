//! Protocol detection for `protocol: AUTO` listeners (Envoy's `tls_inspector` and
//! `http_inspector` listener filters as Istio configures them for ports of unknown
//! protocol): a TLS ClientHello, an HTTP/2 preface, an HTTP/1.x request line, or else
//! opaque TCP.
//!
//! Detection waits for the client's first bytes for at most [`SNIFF_TIMEOUT`]: a
//! server-first protocol (MySQL, SMTP, ...) sends nothing until the server speaks, so
//! after the timeout the connection is treated as TCP and connected upstream (Istio's
//! `protocolDetectionTimeout`, 100 ms by default up to 1.9, exists for the same reason).

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How long the client may stay silent before its connection is taken for TCP.
pub const SNIFF_TIMEOUT: Duration = Duration::from_millis(100);

/// The most bytes read while deciding: a request line longer than this that still looks
/// like HTTP is given to the HTTP server (which answers 414/400 itself).
pub const SNIFF_MAX: usize = 8 * 1024;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection turned out to carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    /// A TLS handshake record (ClientHello).
    Tls,
    /// An HTTP/1.0 or HTTP/1.1 request line.
    Http1,
    /// The HTTP/2 (h2c prior knowledge) preface.
    Http2,
    /// Anything else, or nothing within the timeout.
    Opaque,
}

impl Detected {
    /// True for what the HTTP server takes.
    pub fn is_http(self) -> bool {
        matches!(self, Detected::Http1 | Detected::Http2)
    }
}

/// Reads the start of `stream` until its protocol is known, the client has been silent
/// for `timeout`, or [`SNIFF_MAX`] bytes were read. Returns the verdict and the bytes
/// read (to be replayed), or `None` when the client closed without sending anything.
pub async fn sniff<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Option<(Detected, Vec<u8>)> {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(d) = classify(&buf) {
            return Some((d, buf));
        }
        if buf.len() >= SNIFF_MAX {
            return Some((at_end(&buf), buf));
        }
        let room = (SNIFF_MAX - buf.len()).min(chunk.len());
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk[..room])).await {
            Ok(Ok(0)) | Ok(Err(_)) if buf.is_empty() => return None,
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Some((at_end(&buf), buf)),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The verdict when no more bytes will be waited for: an incomplete start that is still
/// plausible counts as what it started to be (so a slow HTTP client meets the HTTP
/// server's own timeouts and limits instead of bypassing the route policy as TCP).
fn at_end(buf: &[u8]) -> Detected {
    if buf.is_empty() {
        return Detected::Opaque;
    }
    if buf[0] == 0x16 {
        return Detected::Tls;
    }
    if H2_PREFACE.starts_with(buf) {
        return Detected::Http2;
    }
    match request_line(buf) {
        Line::Http | Line::Incomplete => Detected::Http1,
        Line::No => Detected::Opaque,
    }
}

/// The verdict on `buf`, or `None` while more bytes are needed.
pub fn classify(buf: &[u8]) -> Option<Detected> {
    let first = *buf.first()?;
    if first == 0x16 {
        // A handshake record: content type 22, then a 3.x record version.
        return match buf.get(1) {
            None => None,
            Some(3) => Some(Detected::Tls),
            Some(_) => Some(Detected::Opaque),
        };
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Detected::Http2);
    }
    match request_line(buf) {
        Line::Http => Some(Detected::Http1),
        Line::Incomplete => None,
        Line::No => Some(Detected::Opaque),
    }
}

enum Line {
    Http,
    Incomplete,
    No,
}

/// Whether `buf` starts with an HTTP/1.x request line (RFC 9112 §3: `method SP
/// request-target SP HTTP-version CRLF`; a bare LF is tolerated as RFC 9112 §2.2 allows,
/// the HTTP server decides on it).
fn request_line(buf: &[u8]) -> Line {
    const MAX_METHOD: usize = 20;
    let mut i = 0;
    // method = token
    while i < buf.len() && is_tchar(buf[i]) {
        i += 1;
        if i > MAX_METHOD {
            return Line::No;
        }
    }
    if i == buf.len() {
        return Line::Incomplete;
    }
    if i == 0 || buf[i] != b' ' {
        return Line::No;
    }
    i += 1;
    let target = i;
    while i < buf.len() && buf[i] > b' ' && buf[i] != 0x7f {
        i += 1;
    }
    if i == buf.len() {
        return Line::Incomplete;
    }
    if i == target || buf[i] != b' ' {
        return Line::No;
    }
    i += 1;
    let rest = &buf[i..];
    for version in [&b"HTTP/1.1"[..], b"HTTP/1.0"] {
        let n = rest.len().min(version.len());
        if rest[..n] != version[..n] {
            continue;
        }
        if rest.len() <= version.len() {
            return Line::Incomplete;
        }
        return match &rest[version.len()..] {
            [b'\n', ..] | [b'\r', b'\n', ..] => Line::Http,
            [b'\r'] => Line::Incomplete,
            _ => Line::No,
        };
    }
    // "HTTP/1." is a prefix of both versions, so a mismatch here is neither.
    Line::No
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn classifies_complete_starts() {
        assert_eq!(
            classify(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Some(Detected::Http1)
        );
        assert_eq!(classify(b"OPTIONS * HTTP/1.0\r\n"), Some(Detected::Http1));
        assert_eq!(
            classify(b"GET http://a:80/x HTTP/1.1\n"),
            Some(Detected::Http1)
        );
        assert_eq!(
            classify(b"CONNECT a:443 HTTP/1.1\r\n"),
            Some(Detected::Http1)
        );
        assert_eq!(classify(H2_PREFACE), Some(Detected::Http2));
        assert_eq!(classify(&[0x16, 3, 1, 0, 200]), Some(Detected::Tls));
        assert_eq!(classify(b"\x00\x00\x00\x01"), Some(Detected::Opaque));
        assert_eq!(classify(b"hello world\r\n"), Some(Detected::Opaque));
        assert_eq!(classify(b"GET / HTTP/2.0\r\n"), Some(Detected::Opaque));
        assert_eq!(classify(b"GET / HTTP/1.1X"), Some(Detected::Opaque));
        assert_eq!(classify(&[0x16, 0x17]), Some(Detected::Opaque));
    }

    #[test]
    fn waits_for_more_on_plausible_prefixes() {
        for p in [
            &b""[..],
            b"G",
            b"GET",
            b"GET /index",
            b"GET / HTTP/1.",
            b"GET / HTTP/1.1",
            b"GET / HTTP/1.1\r",
            b"PRI * HTTP/2.0\r\n",
            &[0x16],
        ] {
            assert_eq!(classify(p), None, "{:?}", String::from_utf8_lossy(p));
        }
    }

    #[test]
    fn the_preface_is_not_taken_for_http1() {
        // "PRI * HTTP/2.0" has the shape of a request line with another version.
        assert_eq!(
            classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Some(Detected::Http2)
        );
        assert_eq!(at_end(b"PRI * HTTP/2"), Detected::Http2);
    }

    #[tokio::test]
    async fn a_silent_client_is_tcp_after_the_timeout() {
        let (_client, mut server) = tokio::io::duplex(64);
        let (d, bytes) = sniff(&mut server, Duration::from_millis(20)).await.unwrap();
        assert_eq!(d, Detected::Opaque);
        assert!(bytes.is_empty());
    }

    #[tokio::test]
    async fn a_slow_http_client_is_still_http() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET /slo").await.unwrap();
        let (d, bytes) = sniff(&mut server, Duration::from_millis(20)).await.unwrap();
        assert_eq!(d, Detected::Http1);
        assert_eq!(bytes, b"GET /slo");
    }

    #[tokio::test]
    async fn bytes_in_pieces_are_gathered() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let t = tokio::spawn(async move {
            client.write_all(b"POST /a HT").await.unwrap();
            client.flush().await.unwrap();
            tokio::task::yield_now().await;
            client
                .write_all(b"TP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            client
        });
        let (d, bytes) = sniff(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(d, Detected::Http1);
        assert!(bytes.starts_with(b"POST /a HTTP/1.1\r\n"));
        drop(t.await);
    }

    #[tokio::test]
    async fn a_client_that_closes_at_once_is_none() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert!(sniff(&mut server, Duration::from_secs(5)).await.is_none());
    }
}
