//! Envoy's headers as Istio leaves them on, against real upstreams: `x-envoy-attempt-count`
//! per attempt, `x-envoy-original-path` on a rewrite, `x-envoy-expected-rq-timeout-ms`,
//! `x-envoy-upstream-service-time`; forwarding headers per proxy role (a sidecar passes
//! `x-forwarded-for` through, a gateway appends the client and replaces an external
//! `x-request-id`); and the `x-envoy-*` control headers, stripped from external senders
//! and honoured, with Envoy's precedence, from `spec.internalNetworks`.

mod binary;
mod common;

use common::{free_port, proxy, send, service, upstream, Upstream};
use meshproxy::access_log::AccessLog;
use meshproxy::server::{Options, Server};
use std::time::Duration;

fn sidecar(up: &Upstream, internal: &str, route_extra: &str) -> String {
    format!(
        "{}{}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [web]
  http:
  - match: [{{uri: {{prefix: /old}}}}]
    rewrite: {{uri: /new}}
    route: [{{destination: {{host: web}}}}]
  - route: [{{destination: {{host: web}}}}]
{route_extra}",
        common::sidecar_proxy(&format!("  {internal}\n")),
        service(
            "web.default.svc.cluster.local",
            &[(up.addr.port(), "app: web")]
        )
    )
}

/// A GET through the proxy at `addr`.
async fn get(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> common::Reply {
    send(addr, "GET", host, path, headers, bytes::Bytes::new(), false).await
}

fn headers_seen(up: &Upstream) -> Vec<http::HeaderMap> {
    up.seen.headers.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_adds_envoys_headers_and_passes_forwarding_headers_through() {
    let up = upstream("web").await;
    let p = proxy(&sidecar(&up, "", ""));
    let r = get(
        p.addr,
        "web",
        "/old/x?q=1",
        &[("x-forwarded-for", "203.0.113.9")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("x-envoy-upstream-service-time")
            .parse::<u64>()
            .is_ok(),
        "{}",
        r.status
    );
    let h = up.last_headers();
    assert_eq!(up.last_path(), "/new/x?q=1");
    assert_eq!(h["x-envoy-original-path"], "/old/x?q=1");
    assert_eq!(h["x-envoy-attempt-count"], "1");
    assert_eq!(
        h["x-forwarded-for"], "203.0.113.9",
        "a sidecar appends nothing"
    );
    assert!(
        h.get("x-envoy-expected-rq-timeout-ms").is_none(),
        "no timeout: no header"
    );
    // Not rewritten: no original path.
    get(p.addr, "web", "/other", &[]).await;
    assert!(up.last_headers().get("x-envoy-original-path").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_is_counted_and_the_expected_timeout_sent() {
    let up = upstream("web").await;
    let extra = "    timeout: 3s\n    retries: {attempts: 3, perTryTimeout: 1s, retryOn: 5xx}\n";
    let yaml = sidecar(&up, "", "").replace(
        "  - route: [{destination: {host: web}}]\n",
        &format!("  - route: [{{destination: {{host: web}}}}]\n{extra}"),
    );
    let p = proxy(&yaml);
    let r = get(p.addr, "web", "/r", &[("x-test-fail-first", "2")]).await;
    assert_eq!(r.status, 200);
    let seen = headers_seen(&up);
    let counts: Vec<&str> = seen
        .iter()
        .map(|h| h["x-envoy-attempt-count"].to_str().unwrap())
        .collect();
    assert_eq!(counts, ["1", "2", "3"]);
    // The per-try timeout is the shorter: that is what the upstream has.
    assert!(seen
        .iter()
        .all(|h| h["x-envoy-expected-rq-timeout-ms"] == "1000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_headers_from_external_senders_are_stripped_and_ignored() {
    let up = upstream("web").await;
    let p = proxy(&sidecar(&up, "", ""));
    let controls = [
        ("x-envoy-retry-on", "5xx"),
        ("x-envoy-max-retries", "3"),
        ("x-envoy-upstream-rq-timeout-ms", "50"),
        ("x-test-status", "503"),
        ("x-test-delay-ms", "150"),
    ];
    // No x-forwarded-for: an application's own call, which Istio's sidecar counts as
    // external. Not retried, not timed out by the header, headers not forwarded.
    let r = get(p.addr, "web", "/", &controls).await;
    assert_eq!(
        r.status, 503,
        "the upstream's own 503, neither retried nor cut"
    );
    assert_eq!(up.count(), 1);
    let h = up.last_headers();
    assert!(
        h.keys().all(|k| !k.as_str().starts_with("x-envoy-retry")),
        "{h:?}"
    );
    assert!(h.get("x-envoy-upstream-rq-timeout-ms").is_none());
    assert!(h.get("x-envoy-internal").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_headers_from_internal_senders_are_honoured() {
    let up = upstream("web").await;
    let p = proxy(&sidecar(
        &up,
        "internalNetworks: [127.0.0.1/32, \"10.0.0.0/8\"]",
        "",
    ));
    // A sidecar trusts the rightmost (only) x-forwarded-for entry.
    let internal = ("x-forwarded-for", "10.1.2.3");
    let r = get(
        p.addr,
        "web",
        "/",
        &[
            internal,
            ("x-envoy-retry-on", "5xx"),
            ("x-envoy-max-retries", "2"),
            ("x-test-fail-first", "2"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "retried twice, as the header asked");
    assert_eq!(up.count(), 3);
    let h = up.last_headers();
    assert_eq!(h["x-envoy-attempt-count"], "3");
    assert_eq!(h["x-envoy-internal"], "true");
    assert!(
        h.get("x-envoy-retry-on").is_none(),
        "consumed by the router"
    );
    // The timeout header replaces the route's (none here): 504 after 100 ms.
    let r = get(
        p.addr,
        "web",
        "/",
        &[
            internal,
            ("x-envoy-upstream-rq-timeout-ms", "100"),
            ("x-test-delay-ms", "2000"),
        ],
    )
    .await;
    assert_eq!(r.status, 504);
    assert_eq!(up.last_headers()["x-envoy-expected-rq-timeout-ms"], "100");
    // Two addresses in x-forwarded-for: not internal, the header is ignored.
    let before = up.count();
    let r = get(
        p.addr,
        "web",
        "/",
        &[
            ("x-forwarded-for", "10.1.2.3, 10.9.9.9"),
            ("x-envoy-retry-on", "5xx"),
            ("x-test-status", "503"),
        ],
    )
    .await;
    assert_eq!((r.status, up.count() - before), (503, 1));
}

fn gateway(up: &Upstream, port: u16) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: edge, namespace: default}}
spec:
  workload: {{labels: {{istio: ingressgateway}}}}
  gatewayAddress: 127.0.0.1
  listeners: []
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: public}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: [\"*\"]
---
{}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop}}
spec:
  hosts: [shop.example.com]
  gateways: [public]
  http:
  - route: [{{destination: {{host: web.default.svc.cluster.local}}}}]
",
        service(
            "web.default.svc.cluster.local",
            &[(up.addr.port(), "app: web")]
        )
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_appends_the_client_and_replaces_an_external_request_id() {
    let up = upstream("web").await;
    let port = free_port();
    let snap = meshproxy_config::compile::load_str("t.yaml", &gateway(&up, port))
        .unwrap_or_else(|d| panic!("{d}"));
    let s = Server::start(snap, Options::default(), AccessLog::disabled()).expect("starts");
    let addr = s
        .addrs()
        .iter()
        .find(|(n, _)| n.contains(&port.to_string()))
        .map(|(_, a)| *a)
        .expect("gateway listener");
    let r = get(
        addr,
        "shop.example.com",
        "/",
        &[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "client-chosen"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let h = up.last_headers();
    assert_eq!(h["x-forwarded-for"], "198.51.100.7, 127.0.0.1");
    assert_eq!(
        h["x-forwarded-proto"], "http",
        "the connection's scheme at a gateway"
    );
    assert_ne!(
        h["x-request-id"], "client-chosen",
        "an edge request gets a new id"
    );
    assert_eq!(h["x-request-id"].len(), 36);
}

/// Local replies (no route, here) log the request's `x-request-id`, generated when the
/// client sent none, as Envoy's connection manager makes one before routing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_replies_log_their_request_id() {
    let up = upstream("web").await;
    let p = binary::run(
        &sidecar(&up, "", ""),
        &["--workers", "1", "--log-format", "json"],
    );
    let addr = p.addr("outbound");
    let r = get(addr, "web", "/", &[("x-request-id", "abc-123")]).await;
    assert_eq!(r.status, 200);
    let r = get(addr, "nosuch.example", "/", &[]).await;
    assert!(r.status >= 400);
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let line = p
            .stdout
            .recv_timeout(Duration::from_secs(10))
            .expect("access log line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(id) = v["request_id"].as_str() {
            ids.push(id.to_string());
        }
    }
    assert_eq!(ids[0], "abc-123");
    assert_eq!(ids[1].len(), 36, "a generated id, not '-': {ids:?}");
}
