//! RequestAuthentication on an INBOUND listener with inline key sets: tokens the test
//! mints with its own RSA, EC and Ed25519 keys, every algorithm Istio lists, each way a
//! token is refused (401, or 403 for the audience) with Envoy's body and
//! `www-authenticate`, token locations, the payload and claim headers the application
//! gets, several rules, AuthorizationPolicy on request principals and claims, the
//! failure counters and the access log's principal.

mod binary;
mod common;
mod jwt_support;

use bytes::Bytes;
use common::*;
use jsonwebtoken::Algorithm;
use jwt_support::*;
use meshproxy::server::Server;
use serde_json::json;
use std::net::SocketAddr;

const ISS: &str = "testing@secure.istio.io";

/// A sidecar for `httpbin` in `foo` forwarding to `app`, with `docs`.
fn sidecar(app: SocketAddr, docs: &str) -> (Server, SocketAddr) {
    start_inbound(compile(&format!("{}{docs}", httpbin_sidecar(app, ""))))
}

async fn call(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(
        addr,
        "GET",
        "httpbin.foo",
        path,
        headers,
        Bytes::new(),
        false,
    )
    .await
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// The rule of Istio's tasks: issuer and an inline key set, YAML-quoted.
fn rule(keys: &str, extra: &str) -> String {
    format!("  selector: {{matchLabels: {{app: httpbin}}}}\n  jwtRules:\n  - issuer: {ISS}\n    jwks: '{keys}'\n{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_verifies_and_the_payload_reaches_the_app() {
    let app = upstream("httpbin").await;
    let mut keys = vec![
        ec(Algorithm::ES256, "es256"),
        ec(Algorithm::ES384, "es384"),
        ed("ed"),
    ];
    if !openssl_missing() {
        for (alg, kid) in [
            (Algorithm::RS256, "rs256"),
            (Algorithm::RS384, "rs384"),
            (Algorithm::RS512, "rs512"),
            (Algorithm::PS256, "ps256"),
        ] {
            keys.push(rsa(alg, kid));
        }
    }
    let set = jwks(&keys.iter().collect::<Vec<_>>());
    let extra = "    outputPayloadToHeader: x-jwt-payload\n    outputClaimToHeaders: [{header: x-jwt-claim-foo, claim: foo}, {header: x-jwt-team, claim: org.team}, {header: x-jwt-n, claim: n}]\n";
    let (_s, addr) = sidecar(app.addr, &ra("foo", "jwt", &rule(&set, extra)));
    for k in &keys {
        let t = token(
            k,
            ISS,
            "user-1",
            json!({"foo": "bar", "org": {"team": "infra"}, "n": 42}),
        );
        let r = call(
            addr,
            "/headers",
            &[
                ("authorization", &bearer(&t)),
                ("x-jwt-claim-foo", "spoofed"),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{:?}: {}", k.alg, r.body);
        let h = app.last_headers();
        assert_eq!(h["x-jwt-payload"], payload_of(&t), "{:?}", k.alg);
        assert_eq!(h["x-jwt-claim-foo"], "bar");
        assert_eq!(h["x-jwt-team"], "infra");
        assert_eq!(h["x-jwt-n"], "42");
        // forwardOriginalToken is false: the token does not reach the application.
        assert!(h.get("authorization").is_none(), "{:?}", k.alg);
    }
    // Without a token the request passes, and a client's own output headers are removed.
    let before = app.count();
    let r = call(
        addr,
        "/headers",
        &[("x-jwt-claim-foo", "spoofed"), ("x-jwt-payload", "e30")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.count(), before + 1);
    let h = app.last_headers();
    assert!(
        h.get("x-jwt-claim-foo").is_none() && h.get("x-jwt-payload").is_none(),
        "{h:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_get_401_and_a_wrong_audience_403() {
    let app = upstream("httpbin").await;
    let key = ec(Algorithm::ES256, "k1");
    let impostor = ec(Algorithm::ES256, "k1");
    let unknown_kid = ec(Algorithm::ES256, "k9");
    let extra = "    audiences: [app.example]\n";
    let (_s, addr) = sidecar(app.addr, &ra("foo", "jwt", &rule(&jwks(&[&key]), extra)));
    let aud = json!({"aud": "app.example"});
    let now = now();
    let expired_before = meshproxy::authn::stats::failures("expired");
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "bad signature",
            token(&impostor, ISS, "u", aud.clone()),
            401,
            "Jwt verification fails",
        ),
        (
            "expired",
            mint(
                &key,
                json!({"iss": ISS, "sub": "u", "aud": "app.example", "exp": now - 120}),
            ),
            401,
            "Jwt is expired",
        ),
        (
            "not yet valid",
            mint(
                &key,
                json!({"iss": ISS, "sub": "u", "aud": "app.example", "nbf": now + 600}),
            ),
            401,
            "Jwt not yet valid",
        ),
        (
            "unknown issuer",
            token(&key, "someone@else", "u", aud.clone()),
            401,
            "Jwt issuer is not configured",
        ),
        (
            "unknown key id",
            token(&unknown_kid, ISS, "u", aud.clone()),
            401,
            "Jwks doesn't have key to match kid or alg from Jwt",
        ),
        (
            "not a JWT",
            "deadbeef".to_string(),
            401,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        (
            "wrong audience",
            token(&key, ISS, "u", json!({"aud": ["other.example"]})),
            403,
            "Audiences in Jwt are not allowed",
        ),
        (
            "expired within the 60 s clock skew",
            mint(
                &key,
                json!({"iss": ISS, "sub": "u", "aud": "app.example", "exp": now - 30}),
            ),
            200,
            "",
        ),
        ("valid", token(&key, ISS, "u", aud.clone()), 200, ""),
    ];
    for (name, t, status, body) in cases {
        let before = app.count();
        let r = call(addr, "/headers?x=1", &[("authorization", &bearer(&t))]).await;
        assert_eq!(r.status, status, "{name}: {}", r.body);
        if status == 200 {
            assert_eq!(app.count(), before + 1, "{name}");
            continue;
        }
        assert_eq!(
            app.count(),
            before,
            "{name}: refused requests never reach the app"
        );
        assert_eq!(r.body, body, "{name}");
        assert_eq!(
            r.header("www-authenticate"),
            "Bearer realm=\"http://httpbin.foo/headers?x=1\", error=\"invalid_token\"",
            "{name}"
        );
    }
    assert!(meshproxy::authn::stats::failures("expired") > expired_before);
    // No token, or a scheme other than Bearer (no token for the default location): passes.
    assert_eq!(call(addr, "/", &[]).await.status, 200);
    assert_eq!(
        call(addr, "/", &[("authorization", "Basic dXNlcjpwYXNz")])
            .await
            .status,
        200
    );
    // The default locations also read `access_token`, and cut it from the path.
    let t = token(&key, ISS, "u", aud.clone());
    assert_eq!(
        call(addr, &format!("/q?a=1&access_token={t}"), &[])
            .await
            .status,
        200
    );
    assert_eq!(app.last_path(), "/q?a=1");
    let r = call(addr, "/q?access_token=deadbeef", &[]).await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_locations_forwarding_and_several_rules() {
    let app = upstream("httpbin").await;
    let (a, b, c) = (
        ec(Algorithm::ES256, "a"),
        ed("b"),
        ec(Algorithm::ES384, "c"),
    );
    let docs = format!(
        "{}{}",
        ra("foo", "one", &format!("  jwtRules:\n  - issuer: issuer-a\n    jwks: '{}'\n    fromHeaders: [{{name: x-jwt-assertion}}]\n    forwardOriginalToken: true\n", jwks(&[&a]))),
        ra("istio-system", "mesh", &format!("  jwtRules:\n  - issuer: issuer-b\n    jwks: '{}'\n    fromCookies: [session]\n    fromParams: [token]\n", jwks(&[&b]))),
    );
    let (_s, addr) = sidecar(app.addr, &docs);
    let ta = token(&a, "issuer-a", "alice", json!({}));
    assert_eq!(
        call(addr, "/", &[("x-jwt-assertion", &ta)]).await.status,
        200
    );
    // forwardOriginalToken: the header stays.
    assert_eq!(app.last_headers()["x-jwt-assertion"], ta.as_str());
    let tb = token(&b, "issuer-b", "bob", json!({}));
    assert_eq!(
        call(
            addr,
            "/",
            &[("cookie", &format!("theme=dark; session={tb}"))]
        )
        .await
        .status,
        200
    );
    assert_eq!(call(addr, &format!("/?token={tb}"), &[]).await.status, 200);
    // Any valid rule wins; a token no rule accepts is refused.
    let tc = token(&c, "issuer-c", "carol", json!({}));
    let r = call(addr, "/", &[("x-jwt-assertion", &tc)]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, "Jwt issuer is not configured")
    );
    // `Authorization: Bearer` is not a location of these rules: no token.
    assert_eq!(
        call(addr, "/", &[("authorization", &bearer(&tc))])
            .await
            .status,
        200
    );
}

/// (path, token or none, expected status)
type Case<'a> = (&'a str, Option<&'a str>, u16);

async fn check(addr: SocketAddr, name: &str, cases: &[Case<'_>]) {
    for (path, t, status) in cases {
        let auth = t.map(bearer);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let r = call(addr, path, &headers).await;
        assert_eq!(
            r.status,
            *status,
            "{name}: {path} token={}: {}",
            t.is_some(),
            r.body
        );
        if *status == 403 {
            assert_eq!(r.body, "RBAC: access denied", "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_principals_and_claims_in_authorization_policy() {
    let app = upstream("httpbin").await;
    let key = ed("k");
    let base = ra("foo", "jwt-example", &rule(&jwks(&[&key]), ""));
    let plain = token(&key, ISS, ISS, json!({}));
    let grouped = token(
        &key,
        ISS,
        ISS,
        json!({"groups": ["group1", "group2"], "role": "admin", "org": {"team": "infra"}, "scope": "read write", "aud": "app", "azp": "web"}),
    );
    let guest = token(&key, ISS, "guest-user", json!({"role": "guest"}));
    let policies: Vec<(&str, String, Vec<Case<'_>>)> = vec![
        ("requestPrincipals: [*] needs a token",
            ap("foo", "require-jwt", "  selector: {matchLabels: {app: httpbin}}\n  action: ALLOW\n  rules: [{from: [{source: {requestPrincipals: [\"*\"]}}]}]\n"),
            vec![("/", None, 403), ("/", Some(&plain), 200)]),
        ("Istio authz-jwt: an exact principal",
            ap("foo", "require-jwt", &format!("  selector: {{matchLabels: {{app: httpbin}}}}\n  action: ALLOW\n  rules: [{{from: [{{source: {{requestPrincipals: [\"{ISS}/{ISS}\"]}}}}]}}]\n")),
            vec![("/", None, 403), ("/", Some(&plain), 200), ("/", Some(&guest), 403)]),
        ("Istio authz-jwt: request.auth.claims[groups]",
            ap("foo", "require-jwt", &format!("  selector: {{matchLabels: {{app: httpbin}}}}\n  action: ALLOW\n  rules:\n  - from: [{{source: {{requestPrincipals: [\"{ISS}/{ISS}\"]}}}}]\n    when: [{{key: \"request.auth.claims[groups]\", values: [group1]}}]\n")),
            vec![("/", Some(&grouped), 200), ("/", Some(&plain), 403), ("/", None, 403)]),
        ("DENY by claim",
            ap("foo", "deny-guests", "  action: DENY\n  rules: [{when: [{key: \"request.auth.claims[role]\", values: [guest]}]}]\n"),
            vec![("/", Some(&guest), 403), ("/", Some(&grouped), 200), ("/", None, 200)]),
        ("nested claims, audiences, presenter, scopes and principal wildcards",
            ap("foo", "fine", "  rules:\n  - when:\n    - {key: \"request.auth.claims[org][team]\", values: [\"inf*\"]}\n    - {key: request.auth.audiences, values: [app]}\n    - {key: request.auth.presenter, values: [web]}\n    - {key: \"request.auth.claims[scope]\", values: [write]}\n    - {key: request.auth.principal, values: [\"*/testing@secure.istio.io\"]}\n"),
            vec![("/", Some(&grouped), 200), ("/", Some(&plain), 403), ("/", None, 403)]),
        ("Istio authn-policy: DENY notRequestPrincipals [*] on a path",
            ap("foo", "frontend", "  action: DENY\n  rules: [{from: [{source: {notRequestPrincipals: [\"*\"]}}], to: [{operation: {paths: [/headers]}}]}]\n"),
            vec![("/headers", None, 403), ("/ip", None, 200), ("/headers", Some(&plain), 200)]),
        ("notRequestPrincipals in ALLOW: no token matches",
            ap("foo", "anonymous-only", "  rules: [{from: [{source: {notRequestPrincipals: [\"testing@*\"]}}]}]\n"),
            vec![("/", None, 200), ("/", Some(&plain), 403), ("/", Some(&guest), 403)]),
    ];
    for (name, policy, cases) in &policies {
        let (_s, addr) = sidecar(app.addr, &format!("{base}{policy}"));
        check(addr, name, cases).await;
    }
}

#[test]
fn the_access_log_names_the_request_principal_and_metrics_count_failures() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let app = upstream("httpbin").await;
        let key = ec(Algorithm::ES256, "k");
        let yaml = format!(
            "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: httpbin, namespace: foo}}\nspec:\n  admin: {{address: \"127.0.0.1:0\"}}\n  workload: {{labels: {{app: httpbin}}}}\n  listeners:\n  - {{name: inbound, address: \"127.0.0.1:0\", direction: INBOUND, forwardTo: \"{}\"}}\n---\n{}",
            app.addr,
            ra("foo", "jwt", &rule(&jwks(&[&key]), ""))
        );
        let p = binary::run(&yaml, &["--workers", "1", "--log-format", "json"]);
        let addr = p.addr("inbound");
        let t = token(&key, ISS, "alice", json!({}));
        assert_eq!(call(addr, "/", &[("authorization", &bearer(&t))]).await.status, 200);
        let line = p.stdout.recv_timeout(std::time::Duration::from_secs(10)).expect("a log line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["request_principal"], format!("{ISS}/alice"), "{line}");
        let expired = mint(&key, json!({"iss": ISS, "sub": "a", "exp": 1000}));
        let r = call(addr, "/", &[("authorization", &bearer(&expired))]).await;
        assert_eq!(r.status, 401);
        let line = p.stdout.recv_timeout(std::time::Duration::from_secs(10)).expect("a log line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["response_code_details"], "jwt_authn_access_denied{Jwt_is_expired}", "{line}");
        assert!(v.get("request_principal").is_none());
        let metrics = get_at_text(p.addr("admin"), "/metrics").await;
        assert!(metrics.contains("meshproxy_jwt_authn_success_total 1"), "{metrics}");
        assert!(metrics.contains("meshproxy_jwt_authn_failed_total{reason=\"expired\"} 1"), "{metrics}");
    });
}

async fn get_at_text(addr: SocketAddr, path: &str) -> String {
    send(addr, "GET", "admin", path, &[], Bytes::new(), false)
        .await
        .body
}
