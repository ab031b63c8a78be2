//! HTTP/1.1 Upgrade (WebSocket) proxying through the real proxy: a raw TCP client writes
//! the handshake by hand, a real hyper upstream accepts it and echoes bytes, and the
//! tunnel in between is checked for echo, half-close, route timeouts, refusals, h2c,
//! circuit breakers and coexistence with ordinary traffic.

mod binary;
mod common;
use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bound on any single wait, so a broken tunnel fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

/// What the WebSocket upstream saw.
#[derive(Default)]
struct WsSeen {
    /// Connections accepted.
    connections: AtomicU64,
    /// Requests received (upgrades included).
    requests: AtomicU64,
    /// Headers of every request, in order.
    headers: Mutex<Vec<http::HeaderMap>>,
    /// Protocol versions of every request.
    versions: Mutex<Vec<http::Version>>,
    /// Tunnels established (the upstream's side of the upgrade completed).
    tunnels: AtomicU64,
    /// Tunnels whose client side reached EOF.
    eofs: AtomicU64,
}

impl WsSeen {
    fn last_headers(&self) -> http::HeaderMap {
        self.headers
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

/// An HTTP/1.1-only upstream: an upgrade request gets 101 and its bytes echoed until EOF
/// (then the upstream shuts its side down); `/deny` refuses the upgrade with 403; any
/// other request gets 200 `plain`.
async fn ws_upstream() -> (SocketAddr, Arc<WsSeen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(WsSeen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            s.connections.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let s = s.clone();
                    async move { Ok::<_, Infallible>(ws_respond(req, s)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, seen)
}

fn ws_respond(mut req: Request<Incoming>, s: Arc<WsSeen>) -> Response<Full<Bytes>> {
    s.headers.lock().unwrap().push(req.headers().clone());
    s.versions.lock().unwrap().push(req.version());
    s.requests.fetch_add(1, Ordering::SeqCst);
    let Some(proto) = req.headers().get(http::header::UPGRADE).cloned() else {
        return Response::new(Full::new(Bytes::from_static(b"plain")));
    };
    if req.uri().path() == "/deny" {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"denied")));
        *resp.status_mut() = StatusCode::FORBIDDEN;
        return resp;
    }
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        s.tunnels.fetch_add(1, Ordering::SeqCst);
        let mut io = TokioIo::new(up);
        let mut buf = [0u8; 4096];
        loop {
            match io.read(&mut buf).await {
                Ok(0) => {
                    s.eofs.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Ok(n) => {
                    if io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = io.shutdown().await;
    });
    let mut resp = Response::new(Full::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut()
        .insert(http::header::CONNECTION, "upgrade".parse().unwrap());
    resp.headers_mut().insert(http::header::UPGRADE, proto);
    resp.headers_mut().insert(
        "sec-websocket-accept",
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".parse().unwrap(),
    );
    resp
}

/// A response head read off a raw connection.
struct Head {
    status: u16,
    /// Header (lower-case name, value) pairs.
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a response head; returns it and the bytes read past it.
async fn read_head(s: &mut TcpStream) -> (Head, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("response head in time")
            .expect("read");
        assert!(n > 0, "connection closed before a response head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (Head { status, headers }, buf[end + 4..].to_vec())
}

/// Opens a connection to the proxy and writes a WebSocket handshake for `path` on host
/// `ws` by hand; returns the connection, the response head and any bytes past it.
async fn handshake(addr: SocketAddr, path: &str, extra: &str) -> (TcpStream, Head, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let (head, rest) = read_head(&mut s).await;
    (s, head, rest)
}

/// Opens a tunnel and checks the 101.
async fn tunnel(addr: SocketAddr, path: &str) -> TcpStream {
    let (s, head, rest) = handshake(addr, path, "").await;
    assert_eq!(head.status, 101, "headers: {:?}", head.headers);
    assert!(rest.is_empty(), "nothing follows the 101 unasked");
    s
}

/// Sends `msg` and reads the same bytes back.
async fn round_trip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(WAIT, s.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("echo read");
    assert_eq!(back, msg);
}

/// Half-closes the client side and waits for the proxy to close its side in turn.
async fn close(mut s: TcpStream) {
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut rest))
        .await
        .expect("the tunnel closes after the client's FIN")
        .expect("clean close");
    assert!(rest.is_empty(), "no bytes after the client's FIN: {rest:?}");
}

/// A proxy with host `ws` (service port `protocol`) in front of `upstream`, with
/// `traffic_policy` (a DestinationRule `trafficPolicy` line, or "") and these routes:
/// `/timed` with a 200ms timeout, `/fault` aborting with 418, the rest adding headers.
fn ws_proxy(upstream: SocketAddr, protocol: &str, traffic_policy: &str) -> Proxy {
    let dr = if traffic_policy.is_empty() {
        String::new()
    } else {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: ws}}\nspec:\n  host: ws\n  trafficPolicy: {traffic_policy}\n---\n"
        )
    };
    let yaml = format!(
        "{svc}{dr}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: ws}}\nspec:\n  hosts: [ws]\n  http:\n  - match: [{{uri: {{prefix: /timed}}}}]\n    timeout: 200ms\n    route: [{{destination: {{host: ws}}}}]\n  - match: [{{uri: {{prefix: /fault}}}}]\n    fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}\n    route: [{{destination: {{host: ws}}}}]\n  - headers: {{request: {{set: {{x-added: req}}}}, response: {{set: {{x-resp: yes}}}}}}\n    route: [{{destination: {{host: ws}}}}]\n",
        svc = service_proto(
            "ws.default.svc.cluster.local",
            protocol,
            &[(upstream.port(), "app: ws")]
        ),
    );
    proxy(&yaml)
}

/// 101, many echoes both ways, then the client's FIN reaches the upstream as EOF and the
/// upstream's close comes back. The upgrade takes a new connection of its own (not the
/// pooled one an earlier request left), keeps `Connection`/`Upgrade` upstream, and gets
/// the route's header operations on the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_echoes_and_propagates_close() {
    let (up, seen) = ws_upstream().await;
    let p = ws_proxy(up, "HTTP", "");

    // An ordinary request first: it leaves an idle pooled connection behind.
    let r = get(&p, "ws", "/", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "plain"));
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);

    let (mut s, head, rest) = handshake(p.addr, "/chat", "").await;
    assert_eq!(head.status, 101);
    assert!(rest.is_empty());
    assert_eq!(
        head.header("upgrade")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("websocket")
    );
    assert_eq!(
        head.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("upgrade")
    );
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(
        head.header("x-resp"),
        Some("yes"),
        "response header ops apply"
    );
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        2,
        "the upgrade opened a dedicated connection instead of reusing the pooled one"
    );
    let h = seen.last_headers();
    assert_eq!(h["upgrade"], "websocket");
    assert!(h["connection"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("upgrade"));
    assert_eq!(h["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(h["x-added"], "req", "request header ops apply");
    assert!(eventually(WAIT, || seen.tunnels.load(Ordering::SeqCst) == 1).await);

    for i in 0..100 {
        let msg = format!("message {i} {}", "x".repeat(i * 7));
        round_trip(&mut s, msg.as_bytes()).await;
    }
    // A larger write than any single buffer on the way.
    round_trip(&mut s, &vec![0xa5u8; 256 * 1024]).await;

    close(s).await;
    assert!(
        eventually(WAIT, || seen.eofs.load(Ordering::SeqCst) == 1).await,
        "the upstream saw the client's FIN as EOF"
    );

    // Ordinary requests still flow (the pooled connection was kept for them).
    let r = get(&p, "ws", "/", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "plain"));
}

/// A 200ms route timeout bounds the handshake only: an established tunnel survives idle
/// time and activity well past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_does_not_cut_a_tunnel() {
    let (up, seen) = ws_upstream().await;
    let p = ws_proxy(up, "HTTP", "");
    let mut s = tunnel(p.addr, "/timed").await;
    round_trip(&mut s, b"before").await;
    // Deliberately idle past the route timeout (this is the behaviour under test, not
    // synchronization), then active.
    tokio::time::sleep(Duration::from_millis(500)).await;
    round_trip(&mut s, b"after idle").await;
    // Active for longer than the timeout too.
    let started = tokio::time::Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_millis(400) {
        round_trip(&mut s, format!("active {i}").as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        i += 1;
    }
    close(s).await;
    assert!(eventually(WAIT, || seen.eofs.load(Ordering::SeqCst) == 1).await);
}

/// An upstream refusing the upgrade is relayed as an ordinary response (403 with its
/// body), and the client connection goes on as HTTP/1.1. A fault abort answers the
/// handshake locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upgrade_is_relayed() {
    let (up, seen) = ws_upstream().await;
    let p = ws_proxy(up, "HTTP", "");
    let (mut s, head, mut rest) = handshake(p.addr, "/deny", "").await;
    assert_eq!(head.status, 403);
    assert_eq!(head.header("upgrade"), None, "no Upgrade on a refusal");
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("a content-length");
    while rest.len() < len {
        let mut chunk = [0u8; 256];
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("body in time")
            .unwrap();
        assert!(n > 0, "connection closed mid-body");
        rest.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(rest, b"denied");
    assert_eq!(seen.tunnels.load(Ordering::SeqCst), 0);

    // Same client connection, an ordinary request.
    s.write_all(b"GET /after HTTP/1.1\r\nHost: ws\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_head(&mut s).await;
    assert_eq!(head.status, 200);

    // Fault injection applies to the handshake; the upstream is not asked.
    let before = seen.requests.load(Ordering::SeqCst);
    let (_s, head, _) = handshake(p.addr, "/fault", "").await;
    assert_eq!(head.status, 418);
    assert_eq!(seen.requests.load(Ordering::SeqCst), before);
}

/// A tunnel stays up while ordinary requests flow on other connections, before, during
/// and after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_and_ordinary_requests_coexist() {
    let (up, seen) = ws_upstream().await;
    let p = ws_proxy(up, "HTTP", "");
    let mut s = tunnel(p.addr, "/chat").await;
    let client = h1_client();
    for i in 0..20 {
        let r = get_with(&client, p.addr, "ws", "/", &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "plain"), "request {i}");
        round_trip(&mut s, format!("interleaved {i}").as_bytes()).await;
    }
    // Concurrent ordinary requests on fresh connections while the tunnel carries data.
    let addr = p.addr;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                for _ in 0..10 {
                    assert_eq!(get_at(addr, "ws").await, 200);
                }
            })
        })
        .collect();
    for i in 0..50 {
        round_trip(&mut s, format!("concurrent {i}").as_bytes()).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    round_trip(&mut s, b"still up").await;
    close(s).await;
    assert!(eventually(WAIT, || seen.eofs.load(Ordering::SeqCst) == 1).await);
}

/// A cluster whose port speaks HTTP/2 still gets the upgrade over HTTP/1.1 (the upstream
/// here only speaks HTTP/1.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_uses_http1_even_for_an_h2_cluster() {
    let (up, seen) = ws_upstream().await;
    let p = ws_proxy(up, "HTTP2", "");
    let mut s = tunnel(p.addr, "/chat").await;
    round_trip(&mut s, b"over http/1.1").await;
    assert_eq!(
        seen.versions.lock().unwrap().last().copied(),
        Some(http::Version::HTTP_11)
    );
    close(s).await;
}

/// `Upgrade: h2c` is not proxied as an upgrade: the upgrade headers are stripped and the
/// request (with its body) is served as an ordinary one, as Envoy does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_is_stripped() {
    let (up, seen) = ws_upstream().await;
    let p = ws_proxy(up, "HTTP", "");
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"POST /h2c HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await
    .unwrap();
    let (head, _) = read_head(&mut s).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("upgrade"), None);
    let h = seen.last_headers();
    assert!(!h.contains_key("upgrade"), "{h:?}");
    assert!(!h.contains_key("http2-settings"), "{h:?}");
    assert_eq!(seen.tunnels.load(Ordering::SeqCst), 0);
}

/// The dedicated connection counts against `maxConnections`: with a cap of one, an
/// ordinary request waits (pending) while a tunnel holds the only connection, and goes
/// through once the tunnel closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_counts_against_max_connections() {
    let (up, seen) = ws_upstream().await;
    let p = ws_proxy(
        up,
        "HTTP",
        "{connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}}",
    );
    let mut s = tunnel(p.addr, "/chat").await;
    round_trip(&mut s, b"holding the connection").await;
    let addr = p.addr;
    let waiting = tokio::spawn(async move { get_at(addr, "ws").await });
    // Deliberately give the request time it would need if it were (wrongly) let through.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the request waits for the tunnel's connection"
    );
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    close(s).await;
    let status = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("the waiting request completes once the tunnel closes")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
}

/// An INBOUND listener hands upgrades to the local app the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_listener_proxies_upgrades() {
    let (app, seen) = ws_upstream().await;
    let p = proxy(&format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: app}}\nspec:\n  listeners:\n  - {{name: inbound, address: \"127.0.0.1:0\", direction: INBOUND, forwardTo: \"{app}\"}}\n"
    ));
    let mut s = tunnel(p.addr, "/chat").await;
    for i in 0..10 {
        round_trip(&mut s, format!("inbound {i}").as_bytes()).await;
    }
    close(s).await;
    assert!(eventually(WAIT, || seen.eofs.load(Ordering::SeqCst) == 1).await);
}

/// The cluster `outbound|80||ws...` of `/clusters` on `admin`: (cluster stats, endpoint).
async fn ws_cluster(admin: SocketAddr) -> (serde_json::Value, serde_json::Value) {
    let r = send(admin, "GET", "admin", "/clusters", &[], Bytes::new(), false).await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("valid JSON");
    let c = v["clusters"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["name"] == "outbound|80||ws.default.svc.cluster.local")
        })
        .cloned()
        .expect("the ws cluster");
    (c["stats"].clone(), c["endpoints"][0].clone())
}

/// Through the real binary: while a tunnel is open, `/clusters` counts its request and
/// its dedicated connection; when it ends, one access-log line records the request with
/// status 101 and the tunnel's byte counts, and the counts go back to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_and_clusters_account_for_the_tunnel() {
    let (up, _seen) = ws_upstream().await;
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: up}}\nspec:\n  admin: {{address: \"127.0.0.1:0\"}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n---\n{}",
        service("ws.default.svc.cluster.local", &[(up.port(), "app: ws")])
    );
    let p = binary::run(&yaml, &["--workers", "1"]);
    let admin = p.addr("admin");
    let mut s = tunnel(p.addr("outbound"), "/chat").await;
    let mut sent = 0;
    for i in 0..10 {
        let msg = format!("tunnel message {i}");
        round_trip(&mut s, msg.as_bytes()).await;
        sent += msg.len();
    }

    let (stats, ep) = ws_cluster(admin).await;
    assert_eq!(stats["active_requests"], 1, "{stats}");
    assert_eq!(stats["open_connections"], 1, "{stats}");
    assert_eq!(ep["active_requests"], 1, "{ep}");
    assert_eq!(ep["open_connections"], 1, "{ep}");
    assert_eq!(ep["idle_connections"], 0, "{ep}");

    close(s).await;
    let line = p
        .stdout
        .recv_timeout(WAIT)
        .expect("an access log line when the tunnel ends");
    assert!(
        line.contains(&format!("\"GET /chat HTTP/1.1\" 101 - {sent} {sent} ")),
        "{line}"
    );
    assert!(line.contains(&up.to_string()), "upstream host: {line}");

    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (stats, ep) = ws_cluster(admin).await;
        if stats["active_requests"] == 0
            && stats["open_connections"] == 0
            && ep["active_requests"] == 0
            && ep["open_connections"] == 0
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counts back to zero: {stats} {ep}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An HTTP/2 client's extended CONNECT (RFC 8441, `:protocol websocket`) is carried to
/// the HTTP/1.1 upstream as a WebSocket upgrade (`GET`, `Upgrade: websocket`, with the
/// `Sec-WebSocket-Key` HTTP/1.1 needs), answered `200` on the stream, and the stream is
/// the tunnel; a refused upgrade comes back as what the upstream answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_extended_connect_becomes_an_http1_websocket_upgrade() {
    let (up, seen) = ws_upstream().await;
    let p = ws_proxy(up, "HTTP", "");
    let tcp = TcpStream::connect(p.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let connect = |path: &str| {
        let mut req = Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("http://ws{path}"))
            .header("sec-websocket-version", "13")
            .body(Full::new(Bytes::new()))
            .unwrap();
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        req
    };
    let resp = tokio::time::timeout(WAIT, sender.send_request(connect("/chat")))
        .await
        .expect("answer in time")
        .expect("extended CONNECT accepted (the proxy enables it in its SETTINGS)");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("sec-websocket-accept").is_none());
    assert_eq!(resp.headers()["x-resp"], "yes");
    let h = seen.last_headers();
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["x-added"], "req");
    assert!(h.contains_key("sec-websocket-key"), "{h:?}");
    assert_eq!(
        *seen.versions.lock().unwrap().last().unwrap(),
        http::Version::HTTP_11
    );
    let upgraded = hyper::upgrade::on(resp)
        .await
        .expect("the stream is the tunnel");
    let mut io = TokioIo::new(upgraded);
    for i in 0..20 {
        let msg = format!("frame {i} over an h2 stream");
        io.write_all(msg.as_bytes()).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(WAIT, io.read_exact(&mut back))
            .await
            .expect("echo in time")
            .expect("echo read");
        assert_eq!(back, msg.as_bytes());
    }
    io.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, io.read_to_end(&mut rest))
        .await
        .expect("the tunnel ends after the client's end of stream")
        .expect("clean end");
    assert!(rest.is_empty());
    // The upstream refuses: its 403 is the answer, and no tunnel.
    let resp = sender.send_request(connect("/deny")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(seen.tunnels.load(Ordering::SeqCst), 1);
}

/// A GET on a new connection to `addr`: the response's status line, or `None` when the
/// connection is closed unanswered.
async fn status_line_of_a_new_connection(addr: SocketAddr) -> Option<String> {
    let mut c = TcpStream::connect(addr).await.ok()?;
    c.write_all(b"GET / HTTP/1.1\r\nHost: ws\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, c.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.starts_with("HTTP/1.1")
        .then(|| text.lines().next().unwrap_or_default().to_string())
}

/// An upgraded connection still holds its descriptor: it keeps its place under
/// `maxDownstreamConnections` until the tunnel closes (Envoy counts an upgraded connection
/// as a downstream connection while it is open), then gives it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_keeps_its_place_under_the_connection_cap() {
    let (up, _seen) = ws_upstream().await;
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: up}}\nspec:\n  admin: {{address: \"127.0.0.1:0\"}}\n  limits: {{maxDownstreamConnections: 1}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n---\n{}",
        service("ws.default.svc.cluster.local", &[(up.port(), "app: ws")])
    );
    let p = binary::run(&yaml, &["--workers", "1"]);
    let outbound = p.addr("outbound");
    let mut s = tunnel(outbound, "/chat").await;
    round_trip(&mut s, b"while the tunnel is open").await;
    // At the cap: a new connection is closed at once, unanswered.
    assert_eq!(status_line_of_a_new_connection(outbound).await, None);
    round_trip(&mut s, b"the tunnel itself still works").await;
    close(s).await;
    // Its place is given back when it closes: a new connection is served.
    let deadline = tokio::time::Instant::now() + WAIT;
    while status_line_of_a_new_connection(outbound).await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a connection served once the tunnel closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
