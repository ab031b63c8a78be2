//! Request smuggling defences (RFC 9112 HTTP/1.1 framing, RFC 9113 §8.2.2 for HTTP/2
//! downgraded to HTTP/1.1): raw bytes over a real socket to a real proxy listener; every
//! ambiguous request is answered 400/501 or the connection is closed, and the upstream
//! never sees it (nor anything pipelined behind it) as a complete request.

mod common;
use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bound on any single wait.
const WAIT: Duration = Duration::from_secs(5);

/// How long to give a wrongly forwarded request to show up upstream.
const SETTLE: Duration = Duration::from_millis(300);

/// A proxy routing host `web` to `up` (an HTTP/1.1 port).
fn web_proxy(up: SocketAddr) -> Proxy {
    proxy(&format!(
        "{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - route: [{{destination: {{host: web}}}}]\n",
        service("web.default.svc.cluster.local", &[(up.port(), "app: web")])
    ))
}

/// What the recording upstream saw.
#[derive(Default)]
struct Seen {
    /// Request heads received.
    heads: AtomicU64,
    /// Requests whose body was received completely (framing ended cleanly).
    complete: AtomicU64,
    /// Paths and body bytes of the complete requests.
    requests: Mutex<Vec<(String, Vec<u8>)>>,
}

/// An HTTP/1.1-only upstream recording which requests arrived whole; answers 200 `ok`
/// once the body is read.
async fn recording_upstream() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let s = s.clone();
                    async move {
                        s.heads.fetch_add(1, Ordering::SeqCst);
                        let path = req.uri().path().to_string();
                        if let Ok(body) = req.into_body().collect().await {
                            s.requests
                                .lock()
                                .unwrap()
                                .push((path, body.to_bytes().to_vec()));
                            s.complete.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// Writes `bytes` on a new connection and returns everything read until the proxy
/// closes it (or `WAIT` passes).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status codes of the responses in `raw`, in order.
fn statuses(raw: &str) -> Vec<u16> {
    raw.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| raw.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// `request` is refused with `status`, the connection is closed, and the upstream saw
/// nothing.
async fn refused(request: &str, status: u16) {
    let up = upstream("web").await;
    let p = web_proxy(up.addr);
    let raw = exchange(p.addr, request.as_bytes()).await;
    let got = statuses(&raw);
    assert_eq!(got, [status], "{request:?}: got {raw:?}");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(up.count(), 0, "{request:?} reached the upstream");
    // The proxy is fine for the next client.
    assert_eq!(get(&p, "web", "/", &[]).await.status, 200);
}

/// A valid request, then `bad` pipelined on the same connection: the first is served,
/// the second refused with `status`, nothing more upstream.
async fn pipelined(bad: &str, status: u16) {
    let up = upstream("web").await;
    let p = web_proxy(up.addr);
    let first = "GET /first HTTP/1.1\r\nHost: web\r\n\r\n";
    let raw = exchange(p.addr, format!("{first}{bad}").as_bytes()).await;
    let got = statuses(&raw);
    assert_eq!(got, [200, status], "{bad:?}: got {raw:?}");
    tokio::time::sleep(SETTLE).await;
    assert_eq!(up.count(), 1, "{bad:?}: a second request went upstream");
    assert_eq!(up.last_path(), "/first");
}

const POST: &str = "POST / HTTP/1.1\r\nHost: web\r\n";

// 1. Content-Length with Transfer-Encoding (RFC 9112 §6.1, §6.3 item 3). hyper alone
// accepts it (chunked wins, Content-Length is dropped): the guard refuses it, 400.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding() {
    // CL.TE: a front end honouring Content-Length would see a second request.
    let smuggle = "GET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n";
    refused(
        &format!("{POST}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggle}"),
        400,
    )
    .await;
    // TE.CL, the other order of fields.
    refused(
        &format!("{POST}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"),
        400,
    )
    .await;
    refused(
        &format!("{POST}Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n"),
        400,
    )
    .await;
    pipelined(
        &format!("{POST}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggle}"),
        400,
    )
    .await;
}

// 2. Duplicate Content-Length. Differing values are refused (hyper does it too).
// A comma list is refused even with identical values (`5, 5`), which RFC 9110 §8.6
// allows ("MAY either reject the message as invalid or replace ... with a single
// instance"); identical repeated field lines are accepted and forwarded as one.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_content_length() {
    for cl in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5,\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: -5\r\n",
        "Content-Length: 0x5\r\n",
        "Content-Length: 5 5\r\n",
        "Content-Length: 99999999999999999999999\r\n",
    ] {
        refused(&format!("{POST}{cl}\r\nhello"), 400).await;
    }
    pipelined(
        &format!("{POST}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        400,
    )
    .await;

    // Identical lines: one request, five bytes, one Content-Length upstream.
    let up = upstream("web").await;
    let p = web_proxy(up.addr);
    let raw = exchange(
        p.addr,
        format!("{POST}Content-Length: 5\r\ncontent-length:  5 \r\nConnection: close\r\n\r\nhello")
            .as_bytes(),
    )
    .await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert!(raw.ends_with("web 5"), "{raw}");
    assert_eq!(up.count(), 1);
    assert_eq!(
        up.last_headers()
            .get_all(http::header::CONTENT_LENGTH)
            .iter()
            .count(),
        1
    );
}

// 3. Invalid chunk framing: the request fails and the upstream never gets it whole.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunks_never_complete_upstream() {
    let (addr, seen) = recording_upstream().await;
    let p = web_proxy(addr);
    let cases = [
        "g\r\nhello\r\n0\r\n\r\n",                  // not hex
        "-5\r\nhello\r\n0\r\n\r\n",                 // negative
        "0x5\r\nhello\r\n0\r\n\r\n",                // 0x prefix
        "+5\r\nhello\r\n0\r\n\r\n",                 // sign
        "10000000000000005\r\nhello\r\n0\r\n\r\n",  // overflows 64 bits
        "\r\nhello\r\n0\r\n\r\n",                   // no size
        "5;ext\rX\r\nhello\r\n0\r\n\r\n",           // bare CR in a chunk-ext
        "5;a=\"b\rc\"\r\nhello\r\n0\r\n\r\n",       // bare CR in a quoted ext value
        "5\nhello\r\n0\r\n\r\n",                    // bare LF after the size
        "5\r\nhelloXX0\r\n\r\n",                    // no CRLF after the data
        "5\r\nhello\n0\r\n\r\n",                    // bare LF after the data
        "3\r\nabc\r\n5\r\nhelloworld\r\n0\r\n\r\n", // data longer than its size
        "3\r\nabc\r\nzz\r\n0\r\n\r\n",              // second chunk bad, first fine
        "5\r\nhello\r\n0\r\nX: a\nY: b\r\n\r\n",    // bare LF in the trailers
        "5\r\nhello\r\n0\r\n folded\r\n\r\n",       // obs-fold in the trailers
    ];
    for body in cases {
        let smuggle = "GET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n";
        let raw = exchange(
            p.addr,
            format!("{POST}Transfer-Encoding: chunked\r\n\r\n{body}{smuggle}").as_bytes(),
        )
        .await;
        assert!(
            !statuses(&raw).contains(&200),
            "{body:?}: answered as if fine: {raw:?}"
        );
    }
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        seen.complete.load(Ordering::SeqCst),
        0,
        "complete upstream requests: {:?}",
        seen.requests.lock().unwrap()
    );
    // A valid chunked request still goes through whole, with extensions and trailers.
    let raw = exchange(
        p.addr,
        format!("{POST}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;a=b;c=\"d e\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert_eq!(seen.complete.load(Ordering::SeqCst), 1);
    assert_eq!(seen.requests.lock().unwrap()[0].1, b"hello");
}

// 4. obs-fold (RFC 9112 §5.2: a server MUST reject it with 400 or replace it).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_fold() {
    refused("GET / HTTP/1.1\r\nHost: web\r\nX-A: a\r\n b\r\n\r\n", 400).await;
    refused("GET / HTTP/1.1\r\nHost: web\r\nX-A: a\r\n\tb\r\n\r\n", 400).await;
    // Whitespace before the first field line (RFC 9112 §2.2: reject or ignore).
    refused("GET / HTTP/1.1\r\n Host: web\r\n\r\n", 400).await;
    // A folded Content-Length is the dangerous one.
    refused(&format!("{POST}Content-Length:\r\n 5\r\n\r\nhello"), 400).await;
    pipelined("GET /x HTTP/1.1\r\nHost: web\r\nX-A: a\r\n b\r\n\r\n", 400).await;
}

// 5. Bare LF where CRLF is required (RFC 9112 §2.2 lets a recipient accept it; hyper
// does, so the guard refuses it: a proxy must not read lines differently from its
// neighbours).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf() {
    refused("GET / HTTP/1.1\nHost: web\r\n\r\n", 400).await;
    refused("GET / HTTP/1.1\r\nHost: web\n\r\n", 400).await;
    refused("GET / HTTP/1.1\r\nHost: web\r\n\n", 400).await;
    refused("GET / HTTP/1.1\nHost: web\n\n", 400).await;
    refused(
        "GET / HTTP/1.1\r\nHost: web\r\nX: a\nContent-Length: 5\r\n\r\nhello",
        400,
    )
    .await;
    refused("GET / HTTP/1.1\rHost: web\r\n\r\n", 400).await;
    pipelined("GET /x HTTP/1.1\nHost: web\n\n", 400).await;
    pipelined("GET /x HTTP/1.1\r\nHost: web\r\n\n", 400).await;
}

// 6. Transfer-Encoding other than a final, single `chunked`. Chunked not last, or not
// there at all: 400 (RFC 9112 §6.3 item 4 "MUST respond with 400 and then close").
// Chunked last after a coding we do not implement: 501 (§6.1 "SHOULD respond with
// 501"; Envoy answers 501 to any Transfer-Encoding but `chunked`). Chunked twice: 400
// (§6.1: a sender MUST NOT apply chunked more than once).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_other_than_chunked() {
    let body = "\r\n5\r\nhello\r\n0\r\n\r\n";
    for (te, status) in [
        ("Transfer-Encoding: gzip\r\n", 400),
        ("Transfer-Encoding: identity\r\n", 400),
        ("Transfer-Encoding: chunked, gzip\r\n", 400),
        ("Transfer-Encoding: xchunked\r\n", 400),
        ("Transfer-Encoding: chunked;q=1\r\n", 400),
        ("Transfer-Encoding: chunked,\r\n", 400),
        ("Transfer-Encoding: \r\n", 400),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            400,
        ),
        ("Transfer-Encoding : chunked\r\n", 400),
        ("Transfer-Encoding\t: chunked\r\n", 400),
        ("Transfer-Encoding: chunked, chunked\r\n", 400),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            400,
        ),
        ("Transfer-Encoding: gzip, chunked\r\n", 501),
        (
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            501,
        ),
    ] {
        refused(&format!("{POST}{te}{body}"), status).await;
    }
    // HTTP/1.0 has no Transfer-Encoding (RFC 9112 §6.1).
    refused(
        &format!("POST / HTTP/1.0\r\nHost: web\r\nTransfer-Encoding: chunked\r\n{body}"),
        400,
    )
    .await;
    pipelined(
        &format!("{POST}Transfer-Encoding: gzip, chunked\r\n{body}"),
        501,
    )
    .await;

    // Any case, with optional whitespace: fine (RFC 9112 §7 coding names are
    // case-insensitive).
    let up = upstream("web").await;
    let p = web_proxy(up.addr);
    let raw = exchange(
        p.addr,
        format!("{POST}Transfer-Encoding:\t ChUnKeD \r\nConnection: close\r\n{body}").as_bytes(),
    )
    .await;
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert!(raw.ends_with("web 5"), "{raw}");
}

// 7. Whitespace between a field name and its colon (RFC 9112 §5.1: "MUST respond with
// a 400"). httparse already refuses it in requests; the guard does too.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitespace_before_colon() {
    refused("GET / HTTP/1.1\r\nHost : web\r\n\r\n", 400).await;
    refused("GET / HTTP/1.1\r\nHost: web\r\nX-A\t: b\r\n\r\n", 400).await;
    refused(&format!("{POST}Content-Length : 5\r\n\r\nhello"), 400).await;
    pipelined("GET /x HTTP/1.1\r\nHost : web\r\n\r\n", 400).await;
}

// 8. NUL, CR or LF inside a field value (RFC 9110 §5.5: reject or replace with SP).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_cr_lf_in_values() {
    refused("GET / HTTP/1.1\r\nHost: web\r\nX-A: a\0b\r\n\r\n", 400).await;
    refused("GET / HTTP/1.1\r\nHost: web\r\nX-A: a\rb\r\n\r\n", 400).await;
    refused(
        "GET / HTTP/1.1\r\nHost: web\r\nX-A: a\rContent-Length: 5\r\n\r\nhello",
        400,
    )
    .await;
    refused("GET / HTTP/1.1\r\nHost: web\r\nX-A: a\x01b\r\n\r\n", 400).await;
    refused("GET / HTTP/1.1\r\nHost: web\r\nX-A: a\x7fb\r\n\r\n", 400).await;
    refused("GET /a\0b HTTP/1.1\r\nHost: web\r\n\r\n", 400).await;
    pipelined("GET /x HTTP/1.1\r\nHost: web\r\nX-A: \0\r\n\r\n", 400).await;
}

// Protocol switches: the guard stops at the h2c preface and after a 101, and goes on
// checking after a refused upgrade.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_are_not_inspected_but_refused_upgrades_are() {
    let up = upstream("web").await;
    let p = web_proxy(up.addr);
    // After a 101 the bytes are the tunnel's: anything goes.
    let mut t = tunnel(p.addr, "web").await.unwrap();
    echo(&mut t, b"GET / HTTP/1.1\nHost : x\0\r\n\r\n")
        .await
        .unwrap();
    drop(t);
    // An upgrade not accepted (`nowhere` is outside the registry: Istio's block_all
    // answers 502), with a bad request pipelined right behind it: held until the 502,
    // then checked and refused.
    let before = up.count();
    let raw = exchange(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: nowhere\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nGET /x HTTP/1.1\nHost: web\n\n",
    )
    .await;
    assert_eq!(statuses(&raw), [502, 400], "{raw}");
    // ... and a good one behind it is served.
    let raw = exchange(
        p.addr,
        b"GET / HTTP/1.1\r\nHost: nowhere\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nGET /after HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&raw), [502, 200], "{raw}");
    assert_eq!(up.count(), before + 1);
    assert_eq!(up.last_path(), "/after");
    // h2c prior knowledge is untouched.
    let r = send(p.addr, "GET", "web", "/h2", &[], Bytes::new(), true).await;
    assert_eq!(r.status, 200);
}

// 9. HTTP/2 downgraded to an HTTP/1.1 upstream (RFC 9113 §8.1.1, §8.2.2). Raw frames:
// the h2 client libraries refuse to send these.

/// An HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// An HPACK header block: `POST http://web/` plus `fields` as literals (RFC 7541 §6.2.2).
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    // :method POST (3), :scheme http (6), :path / (4), :authority web (name 1).
    let mut b = vec![0x83, 0x86, 0x84, 0x01, 3];
    b.extend_from_slice(b"web");
    for (k, v) in fields {
        b.push(0x00);
        b.push(k.len() as u8);
        b.extend_from_slice(k.as_bytes());
        b.push(v.len() as u8);
        b.extend_from_slice(v.as_bytes());
    }
    b
}

/// How the proxy answered stream 1.
#[derive(Debug, PartialEq, Eq)]
enum H2Answer {
    /// RST_STREAM (or GOAWAY) with this error code.
    Reset(u32),
    /// A response HEADERS frame; the first byte of its block (0x88 = `:status 200`).
    Headers(u8),
    /// Nothing before the connection closed or the wait ended.
    Nothing,
}

/// Sends the preface, SETTINGS and `frames` on stream 1; how stream 1 was answered.
async fn h2_exchange(addr: SocketAddr, frames: &[Vec<u8>]) -> H2Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for f in frames {
        out.extend_from_slice(f);
    }
    s.write_all(&out).await.unwrap();
    let read = async {
        loop {
            let mut head = [0u8; 9];
            if s.read_exact(&mut head).await.is_err() {
                return H2Answer::Nothing;
            }
            let len =
                (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            let mut payload = vec![0u8; len];
            if s.read_exact(&mut payload).await.is_err() {
                return H2Answer::Nothing;
            }
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            match head[3] {
                SETTINGS if head[4] & 1 == 0 => {
                    let _ = s.write_all(&frame(SETTINGS, 1, 0, &[])).await;
                }
                RST_STREAM if stream == 1 => {
                    return H2Answer::Reset(u32::from_be_bytes([
                        payload[0], payload[1], payload[2], payload[3],
                    ]))
                }
                GOAWAY => {
                    return H2Answer::Reset(u32::from_be_bytes([
                        payload[4], payload[5], payload[6], payload[7],
                    ]))
                }
                HEADERS if stream == 1 => {
                    return H2Answer::Headers(payload.first().copied().unwrap_or(0))
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or(H2Answer::Nothing)
}

/// PROTOCOL_ERROR.
const PROTOCOL_ERROR: u32 = 1;
/// HPACK `:status 400` (static index 12).
const STATUS_400: u8 = 0x8c;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_connection_specific_fields_are_malformed() {
    let (addr, seen) = recording_upstream().await;
    let p = web_proxy(addr);
    for field in [
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("te", "gzip"),
        ("te", "trailers, gzip"),
    ] {
        let headers = frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &header_block(&[field]),
        );
        let answer = h2_exchange(p.addr, &[headers]).await;
        assert!(
            answer == H2Answer::Reset(PROTOCOL_ERROR) || answer == H2Answer::Headers(STATUS_400),
            "{field:?}: {answer:?}"
        );
    }
    // `te: trailers` is the one allowed.
    let ok = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &header_block(&[("te", "trailers")]),
    );
    assert_eq!(h2_exchange(p.addr, &[ok]).await, H2Answer::Headers(0x88));
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        seen.heads.load(Ordering::SeqCst),
        1,
        "only the valid request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_content_length_must_match_data() {
    let (addr, seen) = recording_upstream().await;
    let p = web_proxy(addr);
    let cases: [(&str, &[&[u8]]); 5] = [
        // Fewer bytes than announced, the stream ended.
        ("10", &[b"hello"]),
        // More bytes than announced, in one DATA frame or over two.
        ("3", &[b"hello"]),
        ("3", &[b"he", b"llo"]),
        // Differing values in a list.
        ("5, 6", &[b"hello"]),
        ("abc", &[b"hello"]),
    ];
    for (cl, data) in cases {
        let mut frames = vec![frame(
            HEADERS,
            END_HEADERS,
            1,
            &header_block(&[("content-length", cl)]),
        )];
        for (i, d) in data.iter().enumerate() {
            let flags = if i + 1 == data.len() { END_STREAM } else { 0 };
            frames.push(frame(DATA, flags, 1, d));
        }
        let answer = h2_exchange(p.addr, &frames).await;
        assert_ne!(answer, H2Answer::Headers(0x88), "{cl} {data:?}");
    }
    // END_STREAM on HEADERS with a non-zero content-length.
    let h = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &header_block(&[("content-length", "5")]),
    );
    assert_ne!(h2_exchange(p.addr, &[h]).await, H2Answer::Headers(0x88));
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        seen.complete.load(Ordering::SeqCst),
        0,
        "complete upstream requests: {:?}",
        seen.requests.lock().unwrap()
    );
    // Matching: forwarded whole.
    let frames = [
        frame(
            HEADERS,
            END_HEADERS,
            1,
            &header_block(&[("content-length", "5")]),
        ),
        frame(DATA, END_STREAM, 1, b"hello"),
    ];
    assert_eq!(h2_exchange(p.addr, &frames).await, H2Answer::Headers(0x88));
    assert_eq!(seen.complete.load(Ordering::SeqCst), 1);
    assert_eq!(seen.requests.lock().unwrap()[0].1, b"hello");
}
