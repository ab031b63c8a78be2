//! Gateway API GRPCRoute, TCPRoute and TLSRoute with real traffic: gRPC methods routed
//! over h2c, TCP connections proxied to an echo server, TLS connections routed by the
//! ClientHello's SNI without terminating.

mod common;
mod gateway_api_support;
use bytes::Bytes;
use common::*;
use gateway_api_support::{listener, svc};
use meshproxy::server::Server;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A gateway proxy for Gateway `edge` with one listener (`listener`: the YAML list item
/// at four spaces, on `port`) and the documents `rest`; the listener's address.
fn start(port: u16, listener_item: &str, rest: &str) -> (Server, SocketAddr) {
    let (s, _) = gateway_api_support::start_gateway("edge", listener_item, rest);
    let addr = listener(&s, port);
    (s, addr)
}

/// A TCP ServiceEntry `name.default.svc.cluster.local:9000` → `port`.
fn tcp_service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{name}.default.svc.cluster.local]\n  ports: [{{number: 9000, name: tcp, protocol: TCP}}]\n  resolution: STATIC\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{tcp: {port}}}}}\n---\n"
    )
}

/// An upstream echoing bytes back, and the count of connections it accepted.
async fn echo() -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicU64::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_route_matches_service_and_method() {
    // gateway-api.sigs.k8s.io/guides/grpc-routing.
    let (exact, svc_only, rest_up) = (
        upstream("say-hello").await,
        upstream("greeter").await,
        upstream("rest").await,
    );
    let port = free_port();
    let docs = format!(
        "{}{}{}apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: grpc-app}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [grpc.example.com]
  rules:
  - matches: [{{method: {{service: helloworld.Greeter, method: SayHello}}}}]
    backendRefs: [{{name: say-hello, port: 80}}]
  - matches: [{{method: {{service: helloworld.Greeter}}}}]
    backendRefs: [{{name: greeter, port: 80}}]
  - backendRefs: [{{name: rest, port: 80}}]
",
        svc("say-hello", "default", &exact),
        svc("greeter", "default", &svc_only),
        svc("rest", "default", &rest_up)
    );
    let listener_item = format!("  - {{name: http, port: {port}, protocol: HTTP}}\n");
    let (_s, addr) = start(port, &listener_item, &docs);
    let call = |path: &'static str| async move {
        send(
            addr,
            "POST",
            "grpc.example.com",
            path,
            &[("content-type", "application/grpc")],
            Bytes::new(),
            true,
        )
        .await
    };
    assert_eq!(call("/helloworld.Greeter/SayHello").await.body, "say-hello");
    assert_eq!(call("/helloworld.Greeter/SayGoodbye").await.body, "greeter");
    assert_eq!(call("/other.Service/Call").await.body, "rest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_route_proxies_connections_by_weight() {
    // gateway-api.sigs.k8s.io/guides/tcp.
    let ((a, na), (b, nb)) = (echo().await, echo().await);
    let port = free_port();
    let docs = format!(
        "{}{}apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: tcp-app}}
spec:
  parentRefs: [{{name: edge, sectionName: tcp}}]
  rules:
  - backendRefs: [{{name: echo-a, port: 9000, weight: 1}}, {{name: echo-b, port: 9000, weight: 0}}]
",
        tcp_service("echo-a", a.port()),
        tcp_service("echo-b", b.port())
    );
    let listener_item = format!("  - {{name: tcp, port: {port}, protocol: TCP}}\n");
    let (_s, addr) = start(port, &listener_item, &docs);
    for _ in 0..3 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf))
            .await
            .expect("echo in time")
            .unwrap();
        assert_eq!(&buf, b"ping");
    }
    assert_eq!(
        (na.load(Ordering::SeqCst), nb.load(Ordering::SeqCst)),
        (3, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_route_passthrough_routes_by_sni() {
    // gateway-api.sigs.k8s.io/guides/tls (Passthrough): the upstreams are plain TCP
    // servers counting connections; the proxy routes on the ClientHello alone.
    let ((a, na), (b, nb)) = (echo().await, echo().await);
    let port = free_port();
    let docs = format!(
        "{}{}apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: a}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [a.example.com]
  rules: [{{backendRefs: [{{name: tls-a, port: 9000}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {{name: b}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [\"*.b.example.com\"]
  rules: [{{backendRefs: [{{name: tls-b, port: 9000}}]}}]
",
        tcp_service("tls-a", a.port()),
        tcp_service("tls-b", b.port())
    );
    let listener_item =
        format!("  - {{name: tls, port: {port}, protocol: TLS, tls: {{mode: Passthrough}}}}\n");
    let (_s, addr) = start(port, &listener_item, &docs);
    hello(addr, "a.example.com").await;
    assert!(
        eventually(Duration::from_secs(5), || na.load(Ordering::SeqCst) == 1).await,
        "a"
    );
    hello(addr, "x.b.example.com").await;
    assert!(
        eventually(Duration::from_secs(5), || nb.load(Ordering::SeqCst) == 1).await,
        "b"
    );
    assert_eq!(na.load(Ordering::SeqCst), 1);
}

/// Starts a TLS handshake with `sni` (the echo upstream answers the ClientHello with
/// itself, so the handshake fails: only where the connection went matters).
async fn hello(addr: SocketAddr, sni: &str) {
    use meshproxy_certs::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(meshproxy_certs::accept_any_server())
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let connect = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp);
    let _ = tokio::time::timeout(Duration::from_secs(2), connect).await;
}
