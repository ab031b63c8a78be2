//! AuthorizationPolicy against real requests to an INBOUND listener: Istio's documented
//! examples (allow-nothing, allow-all, deny by path, by principal and namespace over
//! mTLS, methods, ports, `when` headers, IP blocks, path templates, DENY before ALLOW,
//! AUDIT, selectors) as a table.

mod common;
use common::*;
use meshproxy::access_log::AccessLog;
use meshproxy::server::{Options, Server};

/// (method, path, headers, mTLS identity (service account) or plaintext, expected status)
type Request = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
    u16,
);

struct Case {
    name: &'static str,
    requests: Vec<Request>,
}

fn ap(name: &str, body: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: default}}\n{body}---\n")
}

fn cases() -> Vec<(Case, String)> {
    let plain = None;
    let sleep = Some("sleep");
    let other = Some("other");
    vec![
        (Case { name: "allow-nothing (spec: {})", requests: vec![("GET", "/", &[], plain, 403)] },
            ap("allow-nothing", "spec: {}\n")),
        (Case { name: "allow-all (rules: [{}])", requests: vec![("GET", "/", &[], plain, 200), ("POST", "/x", &[], plain, 200)] },
            ap("allow-all", "spec:\n  rules: [{}]\n")),
        (Case { name: "deny by path prefix", requests: vec![("GET", "/admin/users", &[], plain, 403), ("GET", "/public", &[], plain, 200), ("GET", "/public/../admin/users", &[], plain, 403)] },
            ap("deny-admin", "spec:\n  action: DENY\n  rules: [{to: [{operation: {paths: [\"/admin*\"]}}]}]\n")),
        (Case { name: "allow by principal", requests: vec![("GET", "/", &[], sleep, 200), ("GET", "/", &[], other, 403), ("GET", "/", &[], plain, 403)] },
            ap("allow-sleep", "spec:\n  rules: [{from: [{source: {principals: [\"cluster.local/ns/default/sa/sleep\"]}}]}]\n")),
        (Case { name: "allow by namespace", requests: vec![("GET", "/", &[], sleep, 200), ("GET", "/", &[], plain, 403)] },
            ap("allow-ns", "spec:\n  rules: [{from: [{source: {namespaces: [\"default\"]}}]}]\n")),
        (Case { name: "deny notPrincipals (plaintext has none)", requests: vec![("GET", "/", &[], plain, 403), ("GET", "/", &[], sleep, 200)] },
            ap("deny-unauthenticated", "spec:\n  action: DENY\n  rules: [{from: [{source: {notPrincipals: [\"*\"]}}]}]\n")),
        (Case { name: "allow by method", requests: vec![("GET", "/", &[], plain, 200), ("POST", "/", &[], plain, 403)] },
            ap("allow-get", "spec:\n  rules: [{to: [{operation: {methods: [GET, HEAD]}}]}]\n")),
        (Case { name: "allow by a port that is not this one", requests: vec![("GET", "/", &[], plain, 403)] },
            ap("allow-port", "spec:\n  rules: [{to: [{operation: {ports: [\"1\"]}}]}]\n")),
        (Case { name: "when request.headers", requests: vec![("GET", "/", &[("x-token", "secret")], plain, 200), ("GET", "/", &[("x-token", "guess")], plain, 403), ("GET", "/", &[], plain, 403)] },
            ap("allow-token", "spec:\n  rules:\n  - when: [{key: \"request.headers[x-token]\", values: [secret]}]\n")),
        (Case { name: "ipBlocks", requests: vec![("GET", "/", &[], plain, 200)] },
            ap("allow-loopback", "spec:\n  rules: [{from: [{source: {ipBlocks: [\"127.0.0.0/8\"]}}]}]\n")),
        (Case { name: "ipBlocks elsewhere", requests: vec![("GET", "/", &[], plain, 403)] },
            ap("allow-ten", "spec:\n  rules: [{from: [{source: {ipBlocks: [\"10.0.0.0/8\"]}}]}]\n")),
        (Case { name: "path template", requests: vec![("GET", "/api/v1/items", &[], plain, 200), ("GET", "/api/v1/other", &[], plain, 403), ("GET", "/api/items", &[], plain, 403)] },
            ap("allow-template", "spec:\n  rules: [{to: [{operation: {paths: [\"/api/{*}/items\"]}}]}]\n")),
        (Case { name: "deny notPaths", requests: vec![("GET", "/healthz", &[], plain, 200), ("GET", "/data", &[], plain, 403)] },
            ap("deny-but-health", "spec:\n  action: DENY\n  rules: [{to: [{operation: {notPaths: [\"/healthz\"]}}]}]\n")),
        (Case { name: "DENY before ALLOW", requests: vec![("GET", "/", &[], plain, 200), ("POST", "/", &[], plain, 403)] },
            format!("{}{}", ap("allow-all", "spec:\n  rules: [{}]\n"), ap("deny-post", "spec:\n  action: DENY\n  rules: [{to: [{operation: {methods: [POST]}}]}]\n"))),
        (Case { name: "AUDIT changes nothing", requests: vec![("GET", "/", &[], plain, 200)] },
            ap("audit-all", "spec:\n  action: AUDIT\n  rules: [{}]\n")),
        (Case { name: "another workload's policy does not apply", requests: vec![("GET", "/", &[], plain, 200)] },
            ap("ratings-only", "spec:\n  selector: {matchLabels: {app: ratings}}\n")),
        (Case { name: "mesh-wide policy in the root namespace applies", requests: vec![("GET", "/", &[], plain, 403)] },
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: mesh-deny, namespace: istio-system}\nspec: {}\n---\n".to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_examples_against_real_requests() {
    let app = upstream("app").await;
    let pki = Pki::new();
    for sa in ["sleep", "other"] {
        pki.workload(sa);
    }
    let me = pki.workload("reviews");
    let proxy = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  workload: {{labels: {{app: reviews}}, serviceAccount: reviews}}\n  listeners:\n  - {{name: inbound, address: \"127.0.0.1:0\", direction: INBOUND, forwardTo: \"{}\"}}\n  identity: {{certificate: {}, privateKey: {}, caCertificates: {}}}\n---\n",
        app.addr,
        me.join("cert.pem").display(),
        me.join("key.pem").display(),
        me.join("ca.pem").display()
    );
    let mut failures = Vec::new();
    for (case, policies) in cases() {
        let snap = meshproxy_config::compile::load_str("t.yaml", &format!("{proxy}{policies}"))
            .unwrap_or_else(|d| panic!("{}: {d}", case.name));
        let server = Server::start(snap, Options::default(), AccessLog::disabled()).unwrap();
        let addr = server.addr("inbound").unwrap();
        for (method, path, headers, identity, want) in &case.requests {
            let status = match identity {
                None => {
                    let r = send(
                        addr,
                        method,
                        "reviews",
                        path,
                        headers,
                        bytes::Bytes::new(),
                        false,
                    )
                    .await;
                    if r.status == 403 {
                        assert_eq!(r.body, "RBAC: access denied", "{}", case.name);
                    }
                    r.status
                }
                Some(sa) => {
                    let mut req = format!(
                        "{method} {path} HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n"
                    );
                    for (k, v) in headers.iter() {
                        req.push_str(&format!("{k}: {v}\r\n"));
                    }
                    req.push_str("\r\n");
                    let text = tls_raw(addr, Some(&pki.dir.join(sa)), &req)
                        .await
                        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
                    text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
                }
            };
            if status != *want {
                failures.push(format!(
                    "{}: {method} {path} as {} → {status}, want {want}",
                    case.name,
                    identity.unwrap_or("plaintext")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
