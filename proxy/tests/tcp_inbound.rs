//! INBOUND TCP listeners: opaque connections to the local application, authorized as TCP
//! (a denied connection is closed; Istio's rules for HTTP-only fields on TCP apply) and
//! under PeerAuthentication like HTTP.

mod common;
use meshproxy::access_log::AccessLog;
use meshproxy::server::{Options, Server};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP echo server.
async fn echo() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn start(app: SocketAddr, policies: &str) -> Server {
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: db, namespace: default}}\nspec:\n  workload: {{labels: {{app: db}}}}\n  listeners:\n  - {{name: inbound, address: \"127.0.0.1:0\", direction: INBOUND, protocol: TCP, forwardTo: \"{app}\"}}\n---\n{policies}"
    );
    let snap =
        meshproxy_config::compile::load_str("t.yaml", &yaml).unwrap_or_else(|d| panic!("{d}"));
    Server::start(snap, Options::default(), AccessLog::disabled()).expect("starts")
}

/// True when bytes sent through `addr` come back.
async fn echoes(addr: SocketAddr) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    if s.write_all(b"ping\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"ping\n"
    )
}

fn ap(body: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: default}}\n{body}---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_forwarded_and_authorized() {
    let app = echo().await;
    let port = app.port();
    let cases: Vec<(&str, String, bool)> = vec![
        ("no policy", String::new(), true),
        ("allow from loopback", ap("spec:\n  rules: [{from: [{source: {ipBlocks: [\"127.0.0.0/8\"]}}]}]\n"), true),
        ("allow from elsewhere", ap("spec:\n  rules: [{from: [{source: {ipBlocks: [\"10.0.0.0/8\"]}}]}]\n"), false),
        (
            "DENY with an HTTP-only field drops the field: all TCP on the port is denied",
            ap(&format!("spec:\n  action: DENY\n  rules: [{{to: [{{operation: {{methods: [POST], ports: [\"{port}\"]}}}}]}}]\n")),
            false,
        ),
        (
            "ALLOW with an HTTP-only field drops the rule: nothing allowed",
            ap("spec:\n  rules: [{to: [{operation: {paths: [\"/x\"]}}]}]\n"),
            false,
        ),
        ("allow-nothing", ap("spec: {}\n"), false),
        ("ALLOW by port", ap(&format!("spec:\n  rules: [{{to: [{{operation: {{ports: [\"{port}\"]}}}}]}}]\n")), true),
    ];
    let mut failures = Vec::new();
    for (name, policies, want) in cases {
        let s = start(app, &policies);
        let got = echoes(s.addr("inbound").unwrap()).await;
        if got != want {
            failures.push(format!("{name}: echoed {got}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_refuses_plaintext_tcp() {
    let app = echo().await;
    let pki = common::Pki::new();
    let me = pki.workload("db");
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: db, namespace: default}}\nspec:\n  workload: {{labels: {{app: db}}, serviceAccount: db}}\n  listeners:\n  - {{name: inbound, address: \"127.0.0.1:0\", direction: INBOUND, protocol: TCP, forwardTo: \"{app}\"}}\n  identity: {{certificate: {}, privateKey: {}, caCertificates: {}}}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: istio-system}}\nspec: {{mtls: {{mode: STRICT}}}}\n",
        me.join("cert.pem").display(),
        me.join("key.pem").display(),
        me.join("ca.pem").display()
    );
    let snap =
        meshproxy_config::compile::load_str("t.yaml", &yaml).unwrap_or_else(|d| panic!("{d}"));
    let s = Server::start(snap, Options::default(), AccessLog::disabled()).unwrap();
    assert!(
        !echoes(s.addr("inbound").unwrap()).await,
        "plaintext refused under STRICT"
    );
}
