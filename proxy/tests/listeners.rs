//! Listener kinds through the proxy: INBOUND forwarding to the local app, plain-HTTP
//! Gateway servers, and DNS-resolved ServiceEntry endpoints.

mod common;
use common::*;
use meshproxy::access_log::AccessLog;
use meshproxy::server::{Options, Server};

fn start(yaml: &str) -> Server {
    let snap =
        meshproxy_config::compile::load_str("t.yaml", yaml).unwrap_or_else(|d| panic!("{d}"));
    Server::start(snap, Options::default(), AccessLog::disabled()).expect("starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_forwards_to_the_local_app_whatever_the_host() {
    let app = upstream("app").await;
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: reviews}}
spec:
  listeners:
  - {{name: inbound, address: \"127.0.0.1:0\", direction: INBOUND, forwardTo: \"{}\"}}
",
        app.addr
    );
    let s = start(&yaml);
    let addr = s.addr("inbound").unwrap();
    for host in ["reviews", "anything.example"] {
        let r = send(addr, "GET", host, "/x?y=1", &[], bytes::Bytes::new(), false).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "app");
    }
    assert_eq!(app.last_path(), "/x?y=1");
    assert_eq!(
        app.last_headers()["host"],
        "anything.example",
        "the Host is kept"
    );
    let r = send(addr, "GET", "reviews", "/", &[], bytes::Bytes::new(), true).await;
    assert_eq!(r.body, "app", "h2c callers are forwarded too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_servers_bind_and_route_their_hosts() {
    let web = upstream("web").await;
    let port = free_port();
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: ingress}}
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
    hosts: [\"shop.example.com\"]
---
{svc}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop}}
spec:
  hosts: [shop.example.com]
  gateways: [public]
  http:
  - match: [{{uri: {{prefix: /api}}}}]
    route: [{{destination: {{host: web.default.svc.cluster.local}}}}]
",
        svc = service(
            "web.default.svc.cluster.local",
            &[(web.addr.port(), "app: web")]
        )
    );
    let s = start(&yaml);
    let addr = s
        .addr(&format!("gateway-127.0.0.1:{port}"))
        .expect("gateway listener");
    let ok = send(
        addr,
        "GET",
        "shop.example.com",
        "/api/items",
        &[],
        bytes::Bytes::new(),
        false,
    )
    .await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "web"));
    let other_path = send(
        addr,
        "GET",
        "shop.example.com",
        "/admin",
        &[],
        bytes::Bytes::new(),
        false,
    )
    .await;
    assert_eq!(other_path.status, 404);
    let other_host = send(
        addr,
        "GET",
        "evil.example.com",
        "/api/items",
        &[],
        bytes::Bytes::new(),
        false,
    )
    .await;
    assert_eq!(other_host.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_redirect_on_a_plain_gateway_server() {
    let port = free_port();
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: ingress}}
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
    tls: {{httpsRedirect: true}}
"
    );
    let s = start(&yaml);
    let addr = s
        .addr(&format!("gateway-127.0.0.1:{port}"))
        .expect("gateway listener");
    let r = send(
        addr,
        "GET",
        "shop.example.com",
        "/cart?x=1",
        &[],
        bytes::Bytes::new(),
        false,
    )
    .await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), "https://shop.example.com/cart?x=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_endpoints_are_resolved() {
    let web = upstream("web").await;
    let yaml = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: local}}
spec:
  hosts: [local.test]
  ports: [{{number: 80, name: http}}]
  resolution: DNS
  endpoints:
  - {{address: localhost, ports: {{http: {}}}}}
",
        web.addr.port()
    );
    let p = proxy(&yaml);
    // localhost may list ::1 before 127.0.0.1: successive connections rotate through the
    // resolved addresses and the default retry policy retries connect failures.
    let r = get(&p, "local.test", "/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "web");
}
