//! RequestAuthentication and JWT AuthorizationPolicy on an ingress gateway, as Istio's
//! tasks run them (istio.io "Authentication Policy" → end-user authentication, "Copy JWT
//! claims to HTTP headers"): the policies select the gateway with
//! `istio: ingressgateway` from the root namespace, and the requests go through a
//! Gateway listener to a real `httpbin` upstream. The tasks' sample key set is replaced
//! by keys the test makes.

mod common;
mod jwt_support;

use bytes::Bytes;
use common::*;
use jsonwebtoken::Algorithm;
use jwt_support::*;
use meshproxy::access_log::AccessLog;
use meshproxy::server::{Options, Server};
use serde_json::json;
use std::net::SocketAddr;

const ISS: &str = "testing@secure.istio.io";

fn gateway(app: SocketAddr, docs: &str) -> (Server, SocketAddr) {
    let port = free_port();
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: ingress, namespace: istio-system}}\nspec:\n  workload: {{labels: {{istio: ingressgateway}}}}\n  gatewayAddress: 127.0.0.1\n  listeners: []\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: httpbin-gateway, namespace: foo}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: http, protocol: HTTP}}\n    hosts: [\"*\"]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: httpbin, namespace: foo}}\nspec:\n  hosts: [\"*\"]\n  gateways: [httpbin-gateway]\n  http:\n  - route: [{{destination: {{host: httpbin.foo.svc.cluster.local, port: {{number: 80}}}}}}]\n---\n{}{docs}",
        service("httpbin.foo.svc.cluster.local", &[(app.port(), "app: httpbin")])
    );
    let snap = meshproxy_config::compile::load_str("t.yaml", &yaml)
        .unwrap_or_else(|d| panic!("config refused:\n{d}"));
    let server = Server::start(snap, Options::default(), AccessLog::disabled()).unwrap();
    let addr = server.addr(&format!("gateway-127.0.0.1:{port}")).unwrap();
    (server, addr)
}

async fn call(addr: SocketAddr, path: &str, token: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    send(
        addr,
        "GET",
        "httpbin.example.com",
        path,
        &headers,
        Bytes::new(),
        false,
    )
    .await
}

/// The task's `jwt-example` RequestAuthentication, with this test's key set.
fn jwt_example(keys: &str, extra: &str) -> String {
    ra("istio-system", "jwt-example", &format!("  selector: {{matchLabels: {{istio: ingressgateway}}}}\n  jwtRules:\n  - issuer: \"{ISS}\"\n    jwks: '{keys}'\n{extra}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_end_user_authentication_task_on_the_ingress_gateway() {
    let app = upstream("httpbin").await;
    let key = ec(
        Algorithm::ES256,
        "DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ",
    );
    let demo = token(&key, ISS, ISS, json!({"foo": "bar"}));
    let ra = jwt_example(&jwks(&[&key]), "");
    let (_s, addr) = gateway(app.addr, &ra);
    // No token: 200; an invalid token: 401; a valid one: 200.
    assert_eq!(call(addr, "/headers", None).await.status, 200);
    let r = call(addr, "/headers", Some("deadbeef")).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r
        .header("www-authenticate")
        .starts_with("Bearer realm=\"http://httpbin.example.com/headers\""));
    assert_eq!(call(addr, "/headers", Some(&demo)).await.status, 200);
    let expired = mint(&key, json!({"iss": ISS, "sub": ISS, "exp": now() - 61}));
    assert_eq!(call(addr, "/headers", Some(&expired)).await.status, 401);

    // "Require a valid token": DENY notRequestPrincipals ["*"] at the gateway.
    let deny = ap("istio-system", "frontend-ingress", "  selector: {matchLabels: {istio: ingressgateway}}\n  action: DENY\n  rules: [{from: [{source: {notRequestPrincipals: [\"*\"]}}]}]\n");
    let (_s2, addr) = gateway(app.addr, &format!("{ra}{deny}"));
    let r = call(addr, "/headers", None).await;
    assert_eq!((r.status, r.body.as_str()), (403, "RBAC: access denied"));
    assert_eq!(call(addr, "/headers", Some(&demo)).await.status, 200);

    // "Require valid tokens per-path": only /headers.
    let per_path = ap("istio-system", "frontend-ingress", "  selector: {matchLabels: {istio: ingressgateway}}\n  action: DENY\n  rules: [{from: [{source: {notRequestPrincipals: [\"*\"]}}], to: [{operation: {paths: [/headers]}}]}]\n");
    let (_s3, addr) = gateway(app.addr, &format!("{ra}{per_path}"));
    assert_eq!(call(addr, "/headers", None).await.status, 403);
    assert_eq!(call(addr, "/ip", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_claim_to_header_task_and_claim_based_authorization() {
    let app = upstream("httpbin").await;
    let key = ed("k");
    let ra = jwt_example(
        &jwks(&[&key]),
        "    outputClaimToHeaders: [{header: x-jwt-claim-foo, claim: foo}]\n",
    );
    let allow = ap("istio-system", "require-group", &format!("  selector: {{matchLabels: {{istio: ingressgateway}}}}\n  rules:\n  - from: [{{source: {{requestPrincipals: [\"{ISS}/*\"]}}}}]\n    when: [{{key: \"request.auth.claims[groups]\", values: [group1]}}]\n"));
    let (_s, addr) = gateway(app.addr, &format!("{ra}{allow}"));
    let with_group = token(
        &key,
        ISS,
        ISS,
        json!({"foo": "bar", "groups": ["group1", "group2"]}),
    );
    let without = token(&key, ISS, ISS, json!({"foo": "bar"}));
    assert_eq!(
        call(addr, "/headers", Some("invalid.token.x")).await.status,
        401
    );
    let r = call(addr, "/headers", Some(&with_group)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(app.last_headers()["x-jwt-claim-foo"], "bar");
    assert_eq!(call(addr, "/headers", Some(&without)).await.status, 403);
    assert_eq!(call(addr, "/headers", None).await.status, 403);
}
