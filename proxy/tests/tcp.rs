//! TCP listeners: opaque TCP proxying by VirtualService `tcp` routes and TLS passthrough
//! by SNI (`tls` routes), over real sockets on 127.0.0.1.

use meshproxy::access_log::AccessLog;
use meshproxy::server::{Options, Server};
use meshproxy_certs::rustls;
use meshproxy_certs::rustls::pki_types::pem::PemObject;
use meshproxy_certs::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use meshproxy_certs::{Ca, ClientAuth};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const PROXY: &str = "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {name: ingress, namespace: default}\nspec:\n  workload: {labels: {istio: ingressgateway}}\n  gatewayAddress: 127.0.0.1\n  listeners: []\n---\n";

fn start(yaml: &str) -> Server {
    let snap =
        meshproxy_config::compile::load_str("t.yaml", yaml).unwrap_or_else(|d| panic!("{d}"));
    Server::start(snap, Options::default(), AccessLog::disabled()).expect("starts")
}

/// A ServiceEntry `name.default.svc.cluster.local`, TCP port 9000, one endpoint.
fn tcp_service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{name}.default.svc.cluster.local]\n  ports: [{{number: 9000, name: tcp, protocol: TCP}}]\n  resolution: STATIC\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{tcp: {port}}}}}\n---\n"
    )
}

/// A Gateway `gw` with one server on `port`.
fn gateway(port: u16, protocol: &str, hosts: &str, tls: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: p, protocol: {protocol}}}\n    hosts: [{hosts}]\n{tls}---\n"
    )
}

/// An upstream echoing every connection's bytes back.
async fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// An upstream that writes `banner` on accept, before reading anything, then echoes.
async fn banner(banner: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if s.write_all(banner.as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Waits for a connection to the proxy to be accepted (the listener binds at start).
async fn connect(addr: SocketAddr) -> TcpStream {
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(addr).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot connect to {addr}");
}

/// Sends `msg` and reads the same number of bytes back.
async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut out = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut out))
        .await
        .expect("echo in time")
        .expect("echo");
    out
}

/// True when the proxy closes the connection (EOF or reset) within 5 s.
async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_gateway_server_proxies_to_an_echo_upstream() {
    let up = echo().await;
    let port = free_port();
    let yaml = format!(
        "{PROXY}{}{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: echo}}\nspec:\n  hosts: [echo.default.svc.cluster.local]\n  gateways: [gw]\n  tcp:\n  - match: [{{port: {port}}}]\n    route: [{{destination: {{host: echo.default.svc.cluster.local, port: {{number: 9000}}}}}}]\n",
        gateway(port, "TCP", "\"*\"", ""),
        tcp_service("echo", up.port()),
    );
    let server = start(&yaml);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for i in 0..3 {
        let mut s = connect(addr).await;
        let msg = format!("hello {i}, with some bytes \x00\x01\x02 that are not HTTP");
        assert_eq!(round_trip(&mut s, msg.as_bytes()).await, msg.as_bytes());
        // A half close is passed on: the upstream sees EOF and closes too.
        s.shutdown().await.unwrap();
        assert!(closed(&mut s).await);
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_tcp_routes_split_connections() {
    let a = banner("A").await;
    let b = banner("B").await;
    let port = free_port();
    let yaml = format!(
        "{PROXY}{}{}{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: split}}\nspec:\n  hosts: [a.default.svc.cluster.local]\n  gateways: [gw]\n  tcp:\n  - route:\n    - {{destination: {{host: a.default.svc.cluster.local}}, weight: 75}}\n    - {{destination: {{host: b.default.svc.cluster.local}}, weight: 25}}\n",
        gateway(port, "TCP", "\"*\"", ""),
        tcp_service("a", a.port()),
        tcp_service("b", b.port()),
    );
    let server = start(&yaml);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (mut na, mut nb) = (0, 0);
    for _ in 0..200 {
        let mut s = connect(addr).await;
        let mut c = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut c))
            .await
            .expect("banner in time")
            .expect("banner");
        match &c {
            b"A" => na += 1,
            b"B" => nb += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(na + nb, 200);
    // 75% of 200 = 150; the bound is loose (p < 1e-6 of a false failure).
    assert!((115..=185).contains(&na), "a={na} b={nb}");
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_first_protocol_works_on_a_tcp_route() {
    let up = banner("220 smtp.example.com ESMTP ready\r\n").await;
    let port = free_port();
    let yaml = format!(
        "{PROXY}{}{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: smtp}}\nspec:\n  hosts: [smtp.default.svc.cluster.local]\n  gateways: [gw]\n  tcp:\n  - route: [{{destination: {{host: smtp.default.svc.cluster.local}}}}]\n",
        gateway(port, "TCP", "\"*\"", ""),
        tcp_service("smtp", up.port()),
    );
    let server = start(&yaml);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let s = connect(addr).await;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    // The client sends nothing: the proxy must connect upstream without waiting for it.
    tokio::time::timeout(Duration::from_secs(2), r.read_line(&mut line))
        .await
        .expect("banner without sending first")
        .unwrap();
    assert_eq!(line, "220 smtp.example.com ESMTP ready\r\n");
    let mut s = r.into_inner();
    assert_eq!(round_trip(&mut s, b"EHLO me\r\n").await, b"EHLO me\r\n");
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_closes_the_connection() {
    let up = echo().await;
    let port = free_port();
    // The only rule matches another port: nothing routes this listener's connections.
    let yaml = format!(
        "{PROXY}{}{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: echo}}\nspec:\n  hosts: [echo.default.svc.cluster.local]\n  gateways: [gw]\n  tcp:\n  - match: [{{port: 1}}]\n    route: [{{destination: {{host: echo.default.svc.cluster.local}}}}]\n",
        gateway(port, "TCP", "\"*\"", ""),
        tcp_service("echo", up.port()),
    );
    let server = start(&yaml);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut s = connect(addr).await;
    let _ = s.write_all(b"anyone?").await;
    assert!(closed(&mut s).await, "a connection with no route is closed");
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_tcp_listener_routes_by_mesh_virtual_service() {
    let up = echo().await;
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: app, namespace: default}}\nspec:\n  workload: {{labels: {{app: app}}}}\n  listeners:\n  - {{name: db, address: \"127.0.0.1:0\", direction: OUTBOUND, protocol: TCP}}\n---\n{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: db}}\nspec:\n  hosts: [db.default.svc.cluster.local]\n  tcp:\n  - route: [{{destination: {{host: db.default.svc.cluster.local}}}}]\n",
        tcp_service("db", up.port()),
    );
    let server = start(&yaml);
    let addr = server.addr("db").expect("TCP listener bound");
    let mut s = connect(addr).await;
    assert_eq!(round_trip(&mut s, b"SELECT 1").await, b"SELECT 1");
    server.shutdown();
}

/// A server certificate for `dns` and its key, as DER.
fn issue(ca: &Ca, dns: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let now = SystemTime::now();
    let issued = ca
        .issue_with(
            None,
            &[dns.to_string()],
            now - Duration::from_secs(60),
            now + Duration::from_secs(86400),
        )
        .unwrap();
    let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    (chain, key)
}

/// A TLS upstream serving `chain`, answering every connection with `name` then echoing.
async fn tls_upstream(
    name: &'static str,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> SocketAddr {
    let config = meshproxy_certs::server_config(chain, key, None, ClientAuth::None, &[]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut t) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 64];
                if let Ok(n) = t.read(&mut buf).await {
                    let mut reply = name.as_bytes().to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = t.write_all(&reply).await;
                    let _ = t.flush().await;
                }
            });
        }
    });
    addr
}

/// Opens TLS through the proxy with `sni`, verifying the server against `ca` for that
/// name; returns the peer's leaf certificate and what the server answered to `ping`.
async fn tls_client(
    addr: SocketAddr,
    ca: &Ca,
    sni: &str,
) -> std::io::Result<(CertificateDer<'static>, String)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = connect(addr).await;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut t = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timeout"))??;
    let leaf = t.get_ref().1.peer_certificates().unwrap()[0].clone();
    t.write_all(b"ping").await?;
    t.flush().await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), t.read_to_end(&mut out)).await;
    Ok((leaf, String::from_utf8_lossy(&out).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_passthrough_routes_by_sni_without_terminating() {
    let ca = Ca::generate("meshproxy tcp test CA", 30).unwrap();
    let (shop_chain, shop_key) = issue(&ca, "shop.example.com");
    let (blog_chain, blog_key) = issue(&ca, "blog.example.com");
    let shop_leaf = shop_chain[0].clone();
    let blog_leaf = blog_chain[0].clone();
    let shop = tls_upstream("shop:", shop_chain, shop_key).await;
    let blog = tls_upstream("blog:", blog_chain, blog_key).await;
    let port = free_port();
    let yaml = format!(
        "{PROXY}{}{}{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: sni}}\nspec:\n  hosts: [\"*.example.com\"]\n  gateways: [gw]\n  tls:\n  - match: [{{sniHosts: [shop.example.com]}}]\n    route: [{{destination: {{host: shop.default.svc.cluster.local}}}}]\n  - match: [{{sniHosts: [\"*.example.com\"]}}]\n    route: [{{destination: {{host: blog.default.svc.cluster.local}}}}]\n",
        gateway(
            port,
            "TLS",
            "shop.example.com, blog.example.com",
            "    tls: {mode: PASSTHROUGH}\n"
        ),
        tcp_service("shop", shop.port()),
        tcp_service("blog", blog.port()),
    );
    let server = start(&yaml);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // Each client verifies the certificate for the name it asked for: the upstream's,
    // so the proxy passed TLS through instead of terminating it.
    let (leaf, answer) = tls_client(addr, &ca, "shop.example.com").await.unwrap();
    assert_eq!(leaf, shop_leaf);
    assert_eq!(answer, "shop:ping");
    let (leaf, answer) = tls_client(addr, &ca, "blog.example.com").await.unwrap();
    assert_eq!(leaf, blog_leaf);
    assert_eq!(answer, "blog:ping");

    // A name no server admits has no route: the connection is closed, no handshake.
    assert!(tls_client(addr, &ca, "other.example.org").await.is_err());
    // Opaque bytes on a TLS-only port: no SNI, no tcp rule, closed.
    let mut s = connect(addr).await;
    let _ = s.write_all(b"not tls at all\r\n").await;
    assert!(closed(&mut s).await);
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_and_connect_failures_close_the_downstream() {
    let up = echo().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port = free_port();
    let dead_port = free_port();
    let yaml = format!(
        "{PROXY}{}apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw2}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {dead_port}, name: d, protocol: TCP}}\n    hosts: [\"*\"]\n---\n{}{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: echo}}\nspec:\n  host: echo.default.svc.cluster.local\n  trafficPolicy:\n    connectionPool:\n      tcp: {{maxConnections: 1}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: echo}}\nspec:\n  hosts: [echo.default.svc.cluster.local]\n  gateways: [gw]\n  tcp:\n  - route: [{{destination: {{host: echo.default.svc.cluster.local}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: dead}}\nspec:\n  hosts: [dead.default.svc.cluster.local]\n  gateways: [gw2]\n  tcp:\n  - route: [{{destination: {{host: dead.default.svc.cluster.local}}}}]\n",
        gateway(port, "TCP", "\"*\"", ""),
        tcp_service("echo", up.port()),
        tcp_service("dead", dead),
    );
    let server = start(&yaml);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut first = connect(addr).await;
    assert_eq!(round_trip(&mut first, b"one").await, b"one");
    // `maxConnections: 1` is held by the first connection: the second is closed.
    let mut second = connect(addr).await;
    let _ = second.write_all(b"two").await;
    assert!(closed(&mut second).await, "over maxConnections: closed");
    drop(first);
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut third = connect(addr).await;
        if third.write_all(b"three").await.is_ok() {
            let mut out = [0u8; 5];
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(1), third.read_exact(&mut out)).await
            {
                ok = &out == b"three";
                break;
            }
        }
    }
    assert!(
        ok,
        "the permit is released when the first connection closes"
    );

    // An upstream refusing connections: the downstream connection is closed.
    let dead_addr: SocketAddr = format!("127.0.0.1:{dead_port}").parse().unwrap();
    let mut s = connect(dead_addr).await;
    assert!(closed(&mut s).await, "connect failure: closed");
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_in_simple_mode_terminates_then_applies_tcp_routes() {
    let ca = Ca::generate("meshproxy tcp test CA", 30).unwrap();
    let dir = std::env::temp_dir().join(format!("meshproxy-tcp-{}", fastrand::u64(..)));
    let now = SystemTime::now();
    ca.issue_with(
        None,
        &["db.example.com".to_string()],
        now - Duration::from_secs(60),
        now + Duration::from_secs(86400),
    )
    .unwrap()
    .write(&dir)
    .unwrap();
    let up = echo().await;
    let port = free_port();
    let tls = format!(
        "    tls: {{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    let yaml = format!(
        "{PROXY}{}{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: db}}\nspec:\n  hosts: [db.example.com]\n  gateways: [gw]\n  tcp:\n  - route: [{{destination: {{host: echo.default.svc.cluster.local}}}}]\n",
        gateway(port, "TLS", "db.example.com", &tls),
        tcp_service("echo", up.port()),
    );
    let server = start(&yaml);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("db.example.com".to_string()).unwrap();
    let mut t = connector.connect(name, connect(addr).await).await.unwrap();
    t.write_all(b"plaintext upstream").await.unwrap();
    t.flush().await.unwrap();
    let mut out = [0u8; 18];
    tokio::time::timeout(Duration::from_secs(5), t.read_exact(&mut out))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&out, b"plaintext upstream");
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_rule_simple_tls_is_originated_on_tcp_routes() {
    let ca = Ca::generate("meshproxy tcp test CA", 30).unwrap();
    let dir = std::env::temp_dir().join(format!("meshproxy-tcp-{}", fastrand::u64(..)));
    ca.write(&dir).unwrap();
    let (chain, key) = issue(&ca, "orig.example.com");
    let up = tls_upstream("orig:", chain, key).await;
    let port = free_port();
    let yaml = format!(
        "{PROXY}{}{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: orig}}\nspec:\n  host: orig.default.svc.cluster.local\n  trafficPolicy:\n    tls: {{mode: SIMPLE, caCertificates: {}, sni: orig.example.com}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: orig}}\nspec:\n  hosts: [orig.default.svc.cluster.local]\n  gateways: [gw]\n  tcp:\n  - route: [{{destination: {{host: orig.default.svc.cluster.local}}}}]\n",
        gateway(port, "TCP", "\"*\"", ""),
        tcp_service("orig", up.port()),
        dir.join("ca.pem").display(),
    );
    let server = start(&yaml);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut s = connect(addr).await;
    s.write_all(b"ping").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert_eq!(String::from_utf8_lossy(&out), "orig:ping");
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
