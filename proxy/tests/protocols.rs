//! Upstream protocol selection (port protocol, `h2UpgradePolicy`, `useClientProtocol`),
//! forwarding hygiene (hop-by-hop headers, forwarding headers, request ids, Host) and
//! upstream connection reuse.

mod common;
use bytes::Bytes;
use common::*;
use http::Version;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Service `web` on port 80 with `protocol`, one endpoint, a DestinationRule with
/// `traffic_policy` (a `  trafficPolicy: ...` line, or "") and a catch-all route.
fn config(up: &Upstream, protocol: &str, traffic_policy: &str) -> String {
    let dr = if traffic_policy.is_empty() {
        String::new()
    } else {
        format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n{traffic_policy}---\n")
    };
    format!(
        "{}{dr}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - route: [{{destination: {{host: web}}}}]\n",
        service_proto("web.default.svc.cluster.local", protocol, &[(up.addr.port(), "app: web")])
    )
}

fn last_version(u: &Upstream) -> Option<Version> {
    u.seen.versions.lock().unwrap().last().copied()
}

async fn h1(p: &Proxy) -> Reply {
    send(p.addr, "GET", "web", "/", &[], Bytes::new(), false).await
}

async fn h2(p: &Proxy) -> Reply {
    send(p.addr, "GET", "web", "/", &[], Bytes::new(), true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_client_to_http2_port() {
    let u = upstream_with("h2only", Proto::H2Only).await;
    let p = proxy(&config(&u, "HTTP2", ""));
    let r = h1(&p).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "h2only");
    assert_eq!(last_version(&u), Some(Version::HTTP_2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_client_to_http1_port() {
    let u = upstream_with("h1only", Proto::H1Only).await;
    let p = proxy(&config(&u, "HTTP", ""));
    let r = h2(&p).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "h1only");
    assert_eq!(last_version(&u), Some(Version::HTTP_11));
    assert_eq!(
        u.last_headers()["host"],
        "web",
        ":authority becomes Host on HTTP/1.1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_port_uses_h2() {
    let u = upstream_with("grpc", Proto::H2Only).await;
    let p = proxy(&config(&u, "GRPC", ""));
    let r = h1(&p).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(last_version(&u), Some(Version::HTTP_2));
    let r = h2(&p).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(last_version(&u), Some(Version::HTTP_2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_upgrade_policy_upgrade() {
    let u = upstream_with("up", Proto::H2Only).await;
    let p = proxy(&config(
        &u,
        "HTTP",
        "  trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE}}}\n",
    ));
    let r = h1(&p).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(last_version(&u), Some(Version::HTTP_2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_port_defaults_to_http1() {
    let u = upstream("auto").await;
    let p = proxy(&config(&u, "HTTP", ""));
    let r = h2(&p).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        last_version(&u),
        Some(Version::HTTP_11),
        "an HTTP port speaks HTTP/1.1 upstream unless told otherwise"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_client_protocol_keeps_the_clients_protocol() {
    let u = upstream("auto").await;
    let p = proxy(&config(
        &u,
        "HTTP",
        "  trafficPolicy: {connectionPool: {http: {useClientProtocol: true}}}\n",
    ));
    let r = h1(&p).await;
    assert_eq!(r.status, 200);
    assert_eq!(last_version(&u), Some(Version::HTTP_11));
    let r = h2(&p).await;
    assert_eq!(r.status, 200);
    assert_eq!(last_version(&u), Some(Version::HTTP_2));
    let r = h1(&p).await;
    assert_eq!(r.status, 200);
    assert_eq!(last_version(&u), Some(Version::HTTP_11));
}

/// Writes a raw HTTP/1.1 request and returns the response head.
async fn raw(p: &Proxy, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response head");
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).to_string()
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_hygiene() {
    let u = upstream("web").await;
    let p = proxy(&config(&u, "HTTP", ""));

    let head = raw(
        &p,
        "GET /hop HTTP/1.1\r\nHost: web.default:80\r\nConnection: x-foo\r\nx-foo: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nx-keep: yes\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let h = u.last_headers();
    assert!(
        h.get("x-foo").is_none(),
        "a header named in Connection is hop-by-hop"
    );
    assert!(h.get("keep-alive").is_none());
    assert!(h.get("proxy-connection").is_none());
    assert_eq!(
        h.get("connection")
            .map(|v| v.to_str().unwrap())
            .unwrap_or(""),
        ""
    );
    assert_eq!(h["x-keep"], "yes");
    assert_eq!(
        h["host"], "web.default:80",
        "Host reaches the upstream unchanged"
    );
    // An Istio sidecar (use_remote_address false) does not append to x-forwarded-for.
    assert!(h.get("x-forwarded-for").is_none(), "{h:?}");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-envoy-attempt-count"], "1");
    let id = h["x-request-id"].to_str().unwrap().to_string();
    assert!(is_uuid(&id), "generated x-request-id {id:?}");

    let r = get(&p, "web", "/", &[]).await;
    assert_eq!(r.status, 200);
    let id2 = u.last_headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(is_uuid(&id2));
    assert_ne!(id, id2, "a fresh id per request");

    get(&p, "web", "/", &[("x-request-id", "my-request-123")]).await;
    assert_eq!(u.last_headers()["x-request-id"], "my-request-123");
    assert_eq!(u.last_headers()["host"], "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused() {
    let u = upstream("web").await;
    let p = proxy(&config(&u, "HTTP", ""));
    let client = h1_client();
    for i in 0..50 {
        let r = get_with(&client, p.addr, "web", "/", &[]).await;
        assert_eq!(r.status, 200, "request {i}");
    }
    assert_eq!(u.count(), 50);
    let conns = u.seen.connections.load(Ordering::SeqCst);
    assert!(
        conns <= 5,
        "50 sequential requests used {conns} upstream connections"
    );

    // New downstream connections each time: the upstream pool is shared.
    for _ in 0..20 {
        assert_eq!(get(&p, "web", "/", &[]).await.status, 200);
    }
    let conns = u.seen.connections.load(Ordering::SeqCst);
    assert!(
        conns <= 7,
        "70 sequential requests used {conns} upstream connections"
    );
}
