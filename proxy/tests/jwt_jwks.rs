//! Remote key sets (`jwksUri`): a real HTTPS server the test starts with a certificate of
//! its own CA, reached through a ServiceEntry (the host exists nowhere else) and trusted
//! through a DestinationRule `SIMPLE` `caCertificates`. The set is fetched off the request
//! path and refreshed (`Proxy.spec.jwksRefreshInterval`, short here): a key rotation at
//! the server is picked up without a reload, an outage keeps the last keys, and before
//! the first fetch the issuer's tokens are refused as Envoy refuses them.

mod common;
mod jwt_support;

use common::*;
use jsonwebtoken::Algorithm;
use jwt_support::*;
use meshproxy::server::Server;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

const ISS: &str = "https://issuer.example.com";
const WAIT: Duration = Duration::from_secs(15);

/// The sidecar of `httpbin.foo` in front of `app`, refreshing key sets every 100 ms.
fn proxy_doc(app: SocketAddr) -> String {
    httpbin_sidecar(app, "  jwksRefreshInterval: 100ms\n")
}

fn config(app: SocketAddr, pki: &Pki, jwks_port: u16) -> meshproxy_config::compile::Snapshot {
    let yaml = format!(
        "{}apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: jwks, namespace: foo}}\nspec:\n  hosts: [jwks.example.com]\n  ports: [{{number: 443, name: https, protocol: HTTPS}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{https: {jwks_port}}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: jwks, namespace: foo}}\nspec:\n  host: jwks.example.com\n  trafficPolicy:\n    tls: {{mode: SIMPLE, caCertificates: {}}}\n---\n{}",
        proxy_doc(app),
        pki.ca_pem().display(),
        ra("foo", "remote", &format!("  jwtRules:\n  - issuer: {ISS}\n    jwksUri: https://jwks.example.com/.well-known/jwks.json\n    timeout: 2s\n"))
    );
    compile(&yaml)
}

fn sidecar(app: SocketAddr, pki: &Pki, jwks_port: u16) -> (Server, SocketAddr) {
    start_inbound(config(app, pki, jwks_port))
}

fn auth(t: &str) -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {t}"))]
}

async fn status(addr: SocketAddr, t: &str, want: u16) -> Reply {
    let [(k, v)] = auth(t);
    until_status(addr, "httpbin.foo", "/", &[(k, v.as_str())], want, WAIT).await
}

/// One GET with `t` as the bearer token (no retry: the first answer counts).
async fn once(addr: SocketAddr, t: &str) -> Reply {
    let [(h, v)] = auth(t);
    send(
        addr,
        "GET",
        "httpbin.foo",
        "/",
        &[(h, v.as_str())],
        bytes::Bytes::new(),
        false,
    )
    .await
}

/// Failed fetches of the proxy's one remote key set.
fn failures(s: &Server) -> u64 {
    let active = s.shared.active.load();
    let authn = active.authn.as_ref().expect("rules apply");
    authn
        .remotes()
        .map(|r| r.failures.load(Ordering::SeqCst))
        .sum()
}

/// `httpbin`, a CA of the test's own, and a key-set server with a certificate of that CA
/// for `dns`, publishing `key`.
async fn stage(dns: &str, key: &SigningKey) -> (Upstream, Pki, JwksServer) {
    let app = upstream("httpbin").await;
    let pki = Pki::new();
    let cert = pki.server("jwks", &[dns]);
    let server = jwks_server(&cert, jwks(&[key])).await;
    (app, pki, server)
}

/// Waits for a failed fetch of the key set, then checks that a token of `key` is refused
/// as Envoy refuses it before any fetch succeeded; the token.
async fn refused_until_fetched(proxy: &Server, addr: SocketAddr, key: &SigningKey) -> String {
    assert!(eventually(WAIT, || failures(proxy) >= 1).await);
    let t = token(key, ISS, "alice", json!({}));
    let r = once(addr, &t).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, "Jwks remote fetch is failed")
    );
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_picked_up_and_an_outage_keeps_the_last_keys() {
    let k1 = ec(Algorithm::ES256, "k1");
    let (app, pki, server) = stage("jwks.example.com", &k1).await;
    let (proxy, addr) = sidecar(app.addr, &pki, server.port);
    let t1 = token(&k1, ISS, "alice", json!({}));
    let r = status(addr, &t1, 200).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(server.hits.load(Ordering::SeqCst) >= 1);

    // Rotation: the server now publishes k2 only; no reload.
    let k2 = ed("k2");
    server.set(jwks(&[&k2]));
    let t2 = token(&k2, ISS, "bob", json!({}));
    assert_eq!(status(addr, &t2, 200).await.status, 200);
    let r = status(addr, &t1, 401).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, "Jwks doesn't have key to match kid or alg from Jwt")
    );

    // Outage: errors, then no server at all; the last keys stay in use.
    server.status.store(503, Ordering::SeqCst);
    let before = failures(&proxy);
    assert!(
        eventually(WAIT, || failures(&proxy) >= before + 2).await,
        "fetches fail while the server answers 503"
    );
    assert_eq!(status(addr, &t2, 200).await.status, 200);
    server.stop();
    let before = failures(&proxy);
    assert!(
        eventually(WAIT, || failures(&proxy) > before).await,
        "fetches fail while nothing listens"
    );
    let r = status(addr, &t2, 200).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A reload that still names the URL keeps the keys: the first request after it, with
    // the server still gone, is verified.
    proxy
        .apply(config(app.addr, &pki, server.port))
        .expect("reload");
    let r = once(addr, &t2).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refused_until_the_first_fetch_succeeds() {
    let k = ec(Algorithm::ES384, "k");
    let (app, pki, server) = stage("jwks.example.com", &k).await;
    server.status.store(500, Ordering::SeqCst);
    let (proxy, addr) = sidecar(app.addr, &pki, server.port);
    let t = refused_until_fetched(&proxy, addr, &k).await;
    // A request without a token passes meanwhile.
    assert_eq!(get_at(addr, "httpbin.foo").await, 200);
    server.status.store(200, Ordering::SeqCst);
    assert_eq!(status(addr, &t, 200).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_outside_the_registry_is_resolved_by_dns_and_checked_against_system_roots() {
    let k = ec(Algorithm::ES256, "k");
    let (app, _pki, server) = stage("localhost", &k).await;
    let yaml = format!(
        "{}{}",
        proxy_doc(app.addr),
        ra(
            "foo",
            "remote",
            &format!(
                "  jwtRules:\n  - issuer: {ISS}\n    jwksUri: https://localhost:{}/jwks.json\n",
                server.port
            )
        )
    );
    let (proxy, addr) = start_inbound(compile(&yaml));
    // DNS finds the server (it is reached: the handshake happens), but the test's CA is
    // not among the system roots, so the set is never trusted and tokens stay refused.
    refused_until_fetched(&proxy, addr, &k).await;
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        0,
        "no request passed an untrusted handshake"
    );
}
