//! `Proxy.spec.limits` against real sockets: request head size and header count (HTTP/1.1
//! and HTTP/2), the request-head timeout (slowloris), the downstream idle timeout, the
//! per-listener connection cap, overload shedding, and the HTTP/2 rapid-reset and
//! CONTINUATION-flood defences. Limits are configured small so every test is quick.

mod common;
use bytes::Bytes;
use common::{eventually, raw_http, send, service, upstream, Proxy, Upstream};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy with `limits` (YAML lines indented by four spaces) routing `reviews` to `up`.
fn limited(limits: &str, up: &Upstream) -> Proxy {
    let yaml = format!(
        "{}{}",
        common::sidecar_proxy(&format!("  limits:\n{limits}")),
        service("reviews", &[(up.addr.port(), "version: v1")])
    );
    common::proxy(&yaml)
}

fn status_of(resp: &str) -> &str {
    resp.split(' ').nth(1).unwrap_or("")
}

/// Reads until the peer closes (or fails) within `within`; true if it did.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads one HTTP/1.1 response head (and the short body the test upstream sends).
async fn read_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a response");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len: usize = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if out.len() >= head_end + 4 + len {
                return text.into_owned();
            }
        }
    }
}

const GET: &str = "GET / HTTP/1.1\r\nHost: reviews\r\n\r\n";

#[tokio::test]
async fn oversize_request_head_gets_431_and_the_upstream_sees_nothing() {
    let up = upstream("v1").await;
    let p = limited("    maxRequestHeadersKb: 16\n", &up);
    let ok = format!(
        "GET / HTTP/1.1\r\nHost: reviews\r\nx-big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(10_000)
    );
    assert_eq!(status_of(&raw_http(p.addr, &ok).await), "200");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: reviews\r\nx-big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20_000)
    );
    let resp = raw_http(p.addr, &big).await;
    assert_eq!(status_of(&resp), "431", "{resp}");
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn too_many_headers_get_431() {
    let up = upstream("v1").await;
    let p = limited("    maxRequestHeaders: 20\n", &up);
    let mut req = String::from("GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n");
    for i in 0..25 {
        req.push_str(&format!("x-h{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let resp = raw_http(p.addr, &req).await;
    assert_eq!(status_of(&resp), "431", "{resp}");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn a_huge_request_line_is_refused_by_the_default_head_limit() {
    let up = upstream("v1").await;
    let p = limited("    {}\n", &up);
    let req = format!(
        "GET /{} HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n",
        "u".repeat(100 * 1024)
    );
    let resp = raw_http(p.addr, &req).await;
    // RFC 9110 §15.5.15: the request-target is what is too long.
    assert_eq!(status_of(&resp), "414", "{resp}");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off() {
    let up = upstream("v1").await;
    let p = limited("    requestHeadersTimeout: 300ms\n", &up);
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: reviews\r\n")
        .await
        .unwrap();
    // Slowloris: one header byte at a time, never finishing the head.
    let mut closed = false;
    for _ in 0..100 {
        if s.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    let took = started.elapsed();
    assert!(closed, "the connection stayed open");
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "closed too late: {took:?}");
    assert_eq!(up.count(), 0);
}

/// The head timer starts at a request's first byte (as Envoy's
/// `request_headers_timeout`): a keep-alive connection quiet for longer than it between
/// two requests is not cut.
#[tokio::test]
async fn the_head_timeout_does_not_cut_idle_keep_alive_connections() {
    let up = upstream("v1").await;
    let p = limited("    requestHeadersTimeout: 200ms\n", &up);
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let req = b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n";
    s.write_all(req).await.unwrap();
    assert_eq!(status_of(&read_response(&mut s).await), "200");
    // Quiet for more than twice the head timeout (the point of the test is the wait).
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.write_all(req).await.unwrap();
    assert_eq!(status_of(&read_response(&mut s).await), "200");
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn idle_connections_are_closed_http1_and_h2() {
    let up = upstream("v1").await;
    let p = limited("    idleTimeout: 300ms\n", &up);
    // HTTP/1.1 keep-alive: served, then closed once idle.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(GET.as_bytes()).await.unwrap();
    assert_eq!(status_of(&read_response(&mut s).await), "200");
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    // HTTP/2: GOAWAY once no stream is open.
    let stream = TcpStream::connect(p.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get("http://reviews/")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let ended = tokio::time::timeout(Duration::from_secs(3), conn).await;
    assert!(ended.is_ok(), "the idle h2 connection stayed open");
}

#[tokio::test]
async fn a_busy_connection_is_not_idle() {
    let up = upstream("v1").await;
    let p = limited("    idleTimeout: 200ms\n", &up);
    let r = send(
        p.addr,
        "GET",
        "reviews",
        "/",
        &[("x-test-delay-ms", "600")],
        Bytes::new(),
        false,
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn the_listener_stops_accepting_at_its_connection_cap() {
    let up = upstream("v1").await;
    let p = limited("    maxConnectionsPerListener: 2\n", &up);
    let mut a = TcpStream::connect(p.addr).await.unwrap();
    let mut b = TcpStream::connect(p.addr).await.unwrap();
    for s in [&mut a, &mut b] {
        s.write_all(GET.as_bytes()).await.unwrap();
        assert_eq!(status_of(&read_response(s).await), "200");
    }
    // The third connects (kernel backlog) but is not served while two are open.
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(GET.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await;
    assert!(early.is_err(), "served past the cap");
    assert_eq!(up.count(), 2);
    // One closes: the waiting one is accepted and served.
    drop(a);
    let resp = tokio::time::timeout(Duration::from_secs(3), read_response(&mut c))
        .await
        .expect("served once a slot was free");
    assert_eq!(status_of(&resp), "200");
    drop(b);
    drop(c);
    assert!(
        eventually(Duration::from_secs(3), || p
            .server
            .shared
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0)
        .await
    );
}

#[tokio::test]
async fn overload_sheds_at_once_and_recovers() {
    let up = upstream("v1").await;
    let p = limited("    maxActiveRequests: 2\n", &up);
    let addr = p.addr;
    let slow: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                send(
                    addr,
                    "GET",
                    "reviews",
                    "/",
                    &[("x-test-delay-ms", "1500")],
                    Bytes::new(),
                    false,
                )
                .await
            })
        })
        .collect();
    let shared = p.server.shared.clone();
    assert!(eventually(Duration::from_secs(3), || shared.overload.active() == 2).await);
    let started = Instant::now();
    let shed = send(addr, "GET", "reviews", "/", &[], Bytes::new(), false).await;
    assert_eq!(shed.status, 503);
    assert_eq!(shed.header("x-envoy-overloaded"), "true");
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "not shed at once"
    );
    assert_eq!(shared.overload.shed(), 1);
    // h2 is shed the same way.
    let shed2 = send(addr, "GET", "reviews", "/", &[], Bytes::new(), true).await;
    assert_eq!(shed2.status, 503);
    let metrics = shared.metrics.render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total")
                && l.contains("response_code=\"503\"")
                && l.contains("response_flags=\"OM\"")),
        "{metrics}"
    );
    // And in the proxy's own families.
    let mut state = String::new();
    meshproxy::admin::prometheus::render(&mut state, &shared, &shared.active.load());
    assert!(
        state.contains("\nmeshproxy_overload_requests_shed_total 2\n"),
        "{state}"
    );
    assert!(
        state.contains("\nmeshproxy_overload_requests_active 2\n"),
        "{state}"
    );
    for s in slow {
        assert_eq!(s.await.unwrap().status, 200);
    }
    assert!(eventually(Duration::from_secs(3), || shared.overload.active() == 0).await);
    assert_eq!(
        send(addr, "GET", "reviews", "/", &[], Bytes::new(), false)
            .await
            .status,
        200
    );
    assert_eq!(up.count(), 3);
}

// --- HTTP/2 frames written by hand -------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK: `GET http://reviews/` from the static table plus a literal authority.
fn get_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x86, 0x84, 0x41, 7];
    b.extend_from_slice(b"reviews");
    b
}

/// A literal header field without indexing, new name (lengths < 127).
fn literal(name: &str, value_len: usize) -> Vec<u8> {
    let mut b = vec![0x00, name.len() as u8];
    b.extend_from_slice(name.as_bytes());
    // Value length as an HPACK integer with a 7-bit prefix.
    if value_len < 127 {
        b.push(value_len as u8);
    } else {
        b.push(127);
        let mut n = value_len - 127;
        while n >= 128 {
            b.push((n % 128 + 128) as u8);
            n /= 128;
        }
        b.push(n as u8);
    }
    b.extend(std::iter::repeat_n(b'v', value_len));
    b
}

const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// Reads frames until `want` matches one (returns it) or the connection ends (`None`).
async fn read_until(
    s: &mut tokio::net::tcp::OwnedReadHalf,
    within: Duration,
    mut want: impl FnMut(u8, u32, &[u8]) -> bool,
) -> Option<(u8, u32, Vec<u8>)> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut head = [0u8; 9];
        match tokio::time::timeout(left, s.read_exact(&mut head)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None,
            Err(_) => panic!("no frame within {within:?}"),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if s.read_exact(&mut payload).await.is_err() {
            return None;
        }
        if want(head[3], stream, &payload) {
            return Some((head[3], stream, payload));
        }
    }
}

async fn h2_conn(
    p: &Proxy,
) -> (
    tokio::net::tcp::OwnedReadHalf,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let s = TcpStream::connect(p.addr).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    w.write_all(&hello).await.unwrap();
    (r, w)
}

#[tokio::test]
async fn h2_oversize_header_list_is_refused_on_its_stream() {
    let up = upstream("v1").await;
    let p = limited("    maxRequestHeadersKb: 8\n", &up);
    let (mut r, mut w) = h2_conn(&p).await;
    // 12 KiB of header value: a HEADERS frame and a CONTINUATION.
    let mut block = get_block();
    block.extend(literal("x-big", 12 * 1024));
    let (first, rest) = block.split_at(8000);
    let mut out = frame(HEADERS, END_STREAM, 1, first);
    out.extend(frame(CONTINUATION, END_HEADERS, 1, rest));
    w.write_all(&out).await.unwrap();
    let got = read_until(&mut r, Duration::from_secs(3), |k, s, _| {
        s == 1 && (k == HEADERS || k == RST_STREAM)
    })
    .await;
    assert!(got.is_some(), "stream 1 was neither answered nor reset");
    // The connection still serves a normal request.
    let ok = frame(HEADERS, END_STREAM | END_HEADERS, 3, &get_block());
    w.write_all(&ok).await.unwrap();
    let got = read_until(&mut r, Duration::from_secs(3), |k, s, _| {
        s == 3 && k == HEADERS
    })
    .await;
    assert!(got.is_some());
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn h2_too_many_headers_get_431() {
    let up = upstream("v1").await;
    let p = limited("    maxRequestHeaders: 10\n", &up);
    let mut headers: Vec<(String, String)> = Vec::new();
    for i in 0..15 {
        headers.push((format!("x-h{i}"), "v".into()));
    }
    let hs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = send(p.addr, "GET", "reviews", "/", &hs, Bytes::new(), true).await;
    assert_eq!(r.status, 431);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn h2_rapid_reset_gets_goaway_and_the_proxy_stays_healthy() {
    let up = upstream("v1").await;
    let p = limited("    {}\n", &up);
    let (mut r, mut w) = h2_conn(&p).await;
    // The writer goes on until the proxy closes the connection: far more than the
    // socket buffers hold, so it ends on a write error, whatever the two sides' pace.
    const BATCHES: u32 = 20_000;
    let writer = tokio::spawn(async move {
        let mut id = 1u32;
        for _ in 0..BATCHES {
            let mut batch = Vec::new();
            for _ in 0..50 {
                batch.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &get_block()));
                batch.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
                id += 2;
            }
            if w.write_all(&batch).await.is_err() {
                return id;
            }
        }
        id
    });
    let goaway = read_until(&mut r, Duration::from_secs(10), |k, _, _| k == GOAWAY).await;
    let sent = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the proxy closes the connection (the writer's writes fail)")
        .unwrap();
    let (_, _, payload) = goaway.expect("GOAWAY before the connection closed");
    let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
    let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
    // ENHANCE_YOUR_CALM (0xb) from the pending-accept reset limit, after a few dozen
    // streams out of the thousands written.
    assert_eq!(code, 0xb, "GOAWAY code {code}");
    assert!(last < 1000, "last stream {last}");
    assert!(
        sent < 1 + 2 * 50 * BATCHES,
        "every stream was written: the proxy did not close the connection"
    );
    // Healthy: new connections are served.
    assert_eq!(
        send(p.addr, "GET", "reviews", "/", &[], Bytes::new(), true)
            .await
            .status,
        200
    );
    assert_eq!(
        send(p.addr, "GET", "reviews", "/", &[], Bytes::new(), false)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn h2_continuation_flood_is_cut_off() {
    let up = upstream("v1").await;
    let p = limited("    {}\n", &up);
    let (mut r, mut w) = h2_conn(&p).await;
    let writer = tokio::spawn(async move {
        let mut sent = 0usize;
        if w.write_all(&frame(HEADERS, END_STREAM, 1, &get_block()))
            .await
            .is_err()
        {
            return sent;
        }
        // Endless CONTINUATION frames, never END_HEADERS: up to 64 MiB.
        let mut payload = Vec::new();
        while payload.len() < 16 * 1024 {
            payload.extend(literal("x-flood", 100));
        }
        payload.truncate(16 * 1024);
        let f = frame(CONTINUATION, 0, 1, &payload);
        while sent < 64 << 20 {
            if w.write_all(&f).await.is_err() {
                break;
            }
            sent += f.len();
        }
        sent
    });
    let goaway = read_until(&mut r, Duration::from_secs(10), |k, _, _| k == GOAWAY).await;
    let (_, _, payload) = goaway.expect("GOAWAY before the connection closed");
    let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
    // h2 (>= 0.4.4) ends the header block: PROTOCOL_ERROR (block over its size limit)
    // or ENHANCE_YOUR_CALM (too many CONTINUATION frames).
    assert!(matches!(code, 0x1 | 0xb), "GOAWAY code {code}");
    drop(r);
    let sent = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the writer was cut off")
        .unwrap();
    // The proxy stopped reading long before the flood ended: its memory for this
    // connection is bounded by h2's CONTINUATION limit, not by what the client sends.
    // (What was written beyond the proxy's reads sat in the kernel's socket buffers.)
    assert!(sent < 16 << 20, "{sent} bytes of the flood were accepted");
    assert_eq!(
        send(p.addr, "GET", "reviews", "/", &[], Bytes::new(), true)
            .await
            .status,
        200
    );
    assert_eq!(up.count(), 1);
}
