//! The Kubernetes Gateway API served with real traffic: the API's own guides (HTTP
//! routing, traffic splitting, header modifiers, redirects and rewrites, HTTP-to-HTTPS
//! redirect, request mirroring, cross-namespace routing with ReferenceGrant) reproduced on
//! in-process proxies with real upstreams; GAMMA is in `gateway_api_mesh.rs`.

mod common;
mod gateway_api_support;
use bytes::Bytes;
use common::*;
use gateway_api_support::{listener, svc};
use meshproxy::server::Server;
use meshproxy_config::gateway_api::ParentStatus;
use std::net::SocketAddr;
use std::time::Duration;

/// A gateway proxy serving Gateway `default/public` (`listeners`: YAML list items at
/// four spaces) with the other documents `rest`; the address of the listener on `port`.
fn start(port: u16, listeners: &str, rest: &str) -> (Server, SocketAddr, Vec<ParentStatus>) {
    let (s, status) = gateway_api_support::start_gateway("public", listeners, rest);
    let addr = listener(&s, port);
    (s, addr, status)
}

fn http_listener(port: u16) -> String {
    format!("  - {{name: http, port: {port}, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}\n")
}

/// `rest` behind one HTTP listener on a free port: the proxy, the listener's address
/// and its port.
fn serve(rest: &str) -> (Server, SocketAddr, u16) {
    let port = free_port();
    let (s, addr, _) = start(port, &http_listener(port), rest);
    (s, addr, port)
}

/// An HTTPRoute `name` attached to Gateway `public`; `spec` is the rest of its spec
/// (hostnames, rules) at two spaces.
fn http_route(name: &str, spec: &str) -> String {
    format!("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\nspec:\n  parentRefs: [{{name: public}}]\n{spec}---\n")
}

async fn req(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(addr, "GET", host, path, headers, Bytes::new(), false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routing_by_host_path_and_header() {
    // gateway-api.sigs.k8s.io/guides/http-routing: foo-route and bar-route.
    let (foo, bar, canary) = (
        upstream("foo").await,
        upstream("bar").await,
        upstream("bar-canary").await,
    );
    let rest = format!(
        "{}{}{}{}{}",
        svc("foo-svc", "default", &foo),
        svc("bar-svc", "default", &bar),
        svc("bar-svc-canary", "default", &canary),
        http_route(
            "foo-route",
            "  hostnames: [foo.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /login}}]
    backendRefs: [{name: foo-svc, port: 80}]
"
        ),
        http_route(
            "bar-route",
            "  hostnames: [bar.example.com]
  rules:
  - matches: [{headers: [{type: Exact, name: env, value: canary}]}]
    backendRefs: [{name: bar-svc-canary, port: 80}]
  - backendRefs: [{name: bar-svc, port: 80}]
"
        ),
    );
    let (_s, addr, _) = serve(&rest);
    let cases = [
        ("foo.example.com", "/login", &[][..], 200, "foo"),
        ("foo.example.com", "/login/form?x=1", &[][..], 200, "foo"),
        // PathPrefix is element-wise: /loginx is not under /login.
        ("foo.example.com", "/loginx", &[][..], 404, ""),
        ("foo.example.com", "/", &[][..], 404, ""),
        ("bar.example.com", "/", &[][..], 200, "bar"),
        (
            "bar.example.com",
            "/any",
            &[("env", "canary")][..],
            200,
            "bar-canary",
        ),
        ("baz.example.com", "/", &[][..], 404, ""),
    ];
    for (host, path, headers, status, body) in cases {
        let r = req(addr, host, path, headers).await;
        assert_eq!(r.status, status, "{host}{path}");
        if status == 200 {
            assert_eq!(r.body, body, "{host}{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precedence_across_routes_follows_the_api() {
    let ups = [
        upstream("exact").await,
        upstream("long").await,
        upstream("short").await,
        upstream("method").await,
        upstream("headers").await,
    ];
    let mut rest: String = ups.iter().map(|u| svc(&u.name, "default", u)).collect();
    // Each rule in its own route, listed least specific first: the API's order decides.
    let rules = [
        ("a-short", "{path: {type: PathPrefix, value: /api}}", "short"),
        ("b-long", "{path: {type: PathPrefix, value: /api/v1}}", "long"),
        ("c-exact", "{path: {type: Exact, value: /api/v1/x}}", "exact"),
        ("d-method", "{path: {type: PathPrefix, value: /api}, method: POST}", "method"),
        ("e-headers", "{path: {type: PathPrefix, value: /api}, headers: [{name: x-a, value: \"1\"}, {name: x-b, value: \"2\"}]}", "headers"),
    ];
    for (name, m, to) in rules {
        let spec =
            format!("  rules:\n  - matches: [{m}]\n    backendRefs: [{{name: {to}, port: 80}}]\n");
        rest.push_str(&http_route(name, &spec));
    }
    let (_s, addr, _) = serve(&rest);
    assert_eq!(req(addr, "a.example", "/api/v1/x", &[]).await.body, "exact");
    assert_eq!(req(addr, "a.example", "/api/v1/y", &[]).await.body, "long");
    assert_eq!(
        req(addr, "a.example", "/api/other", &[]).await.body,
        "short"
    );
    let post = send(
        addr,
        "POST",
        "a.example",
        "/api/other",
        &[],
        Bytes::new(),
        false,
    )
    .await;
    assert_eq!(post.body, "method");
    let two = req(
        addr,
        "a.example",
        "/api/other",
        &[("x-a", "1"), ("x-b", "2")],
    )
    .await;
    assert_eq!(two.body, "headers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_splitting_by_weight_and_invalid_backends_answer_500() {
    // gateway-api.sigs.k8s.io/guides/traffic-splitting.
    let (v1, v2) = (upstream("v1").await, upstream("v2").await);
    let rest = format!(
        "{}{}{}",
        svc("foo-v1", "default", &v1),
        svc("foo-v2", "default", &v2),
        http_route(
            "foo-route",
            "  hostnames: [foo.example.com]
  rules:
  - matches: [{headers: [{name: traffic, value: test}]}]
    backendRefs: [{name: foo-v2, port: 80}]
  - matches: [{path: {value: /zero}}]
    backendRefs: [{name: foo-v1, port: 80, weight: 1}, {name: foo-v2, port: 80, weight: 0}]
  - matches: [{path: {value: /broken}}]
    backendRefs: [{name: foo-v1, port: 80}, {name: missing, port: 80}]
  - matches: [{path: {value: /none}}]
  - backendRefs: [{name: foo-v1, port: 80, weight: 50}, {name: foo-v2, port: 80, weight: 50}]
"
        )
    );
    let (_s, addr, _) = serve(&rest);
    assert_eq!(
        req(addr, "foo.example.com", "/", &[("traffic", "test")])
            .await
            .body,
        "v2"
    );
    for _ in 0..20 {
        assert_eq!(req(addr, "foo.example.com", "/zero", &[]).await.body, "v1");
    }
    let (mut a, mut b) = (0, 0);
    for _ in 0..100 {
        match req(addr, "foo.example.com", "/", &[]).await.body.as_str() {
            "v1" => a += 1,
            "v2" => b += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(a > 20 && b > 20, "50/50 split gave {a}/{b}");
    // One backend of two does not exist: about half the requests get 500.
    let (mut ok, mut err) = (0, 0);
    for _ in 0..100 {
        match req(addr, "foo.example.com", "/broken", &[]).await.status {
            200 => ok += 1,
            500 => err += 1,
            s => panic!("unexpected {s}"),
        }
    }
    assert!(
        ok > 20 && err > 20,
        "one invalid backend of two: {ok} ok, {err} 500"
    );
    // No backendRefs at all: 500.
    assert_eq!(req(addr, "foo.example.com", "/none", &[]).await.status, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_modifiers_on_requests_responses_and_one_backend() {
    // gateway-api.sigs.k8s.io/guides/http-header-modifier.
    let up = upstream("echo").await;
    let rest = format!(
        "{}{}",
        svc("echo", "default", &up),
        http_route(
            "header-http-echo",
            "  rules:
  - matches: [{path: {type: PathPrefix, value: /add-a-request-header}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        add: [{name: my-header-name, value: my-header-value}]
        set: [{name: my-set, value: bar}]
        remove: [x-remove-me]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: X-Header-Add-1, value: header-add-1}]
        set: [{name: X-Header-Set, value: set-overwrites-values}]
        remove: [x-upstream]
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {value: /per-backend}}]
    backendRefs:
    - name: echo
      port: 80
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: x-backend, value: echo}]}
"
        )
    );
    let (_s, addr, _) = serve(&rest);
    let r = req(
        addr,
        "h.example",
        "/add-a-request-header",
        &[("my-set", "old"), ("x-remove-me", "1")],
    )
    .await;
    assert_eq!(r.status, 200);
    let h = up.last_headers();
    assert_eq!(h["my-header-name"], "my-header-value");
    assert_eq!(h["my-set"], "bar");
    assert!(h.get("x-remove-me").is_none());
    assert_eq!(r.header("x-header-add-1"), "header-add-1");
    assert_eq!(r.header("x-header-set"), "set-overwrites-values");
    assert_eq!(r.header("x-upstream"), "", "removed from the response");
    req(addr, "h.example", "/per-backend", &[]).await;
    assert_eq!(up.last_headers()["x-backend"], "echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_rewrites() {
    // gateway-api.sigs.k8s.io/guides/http-redirect-rewrite.
    let up = upstream("app").await;
    let rest = format!(
        "{}{}{}",
        svc("app", "default", &up),
        http_route(
            "redirects",
            "  hostnames: [redirect.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /cayenne}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /paprika}
        statusCode: 302
  - matches: [{path: {type: PathPrefix, value: /moved}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {hostname: www.example.com, statusCode: 301}
"
        ),
        http_route(
            "rewrites",
            "  hostnames: [rewrite.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters:
    - type: URLRewrite
      urlRewrite:
        hostname: elsewhere.example
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}
    backendRefs: [{name: app, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /strip}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    backendRefs: [{name: app, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /replaced}}
    backendRefs: [{name: app, port: 80}]
"
        ),
    );
    let (_s, addr, port) = serve(&rest);
    let r = req(addr, "redirect.example", "/cayenne/pepper?x=1", &[]).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        format!("http://redirect.example:{port}/paprika/pepper?x=1")
    );
    let r = req(addr, "redirect.example", "/moved/here", &[]).await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        format!("http://www.example.com:{port}/moved/here")
    );
    for (path, want) in [
        ("/prefix/one", "/one"),
        ("/prefix/one/two", "/one/two"),
        ("/strip/a/b", "/a/b"),
        ("/strip", "/"),
        ("/full/anything", "/replaced"),
    ] {
        let r = req(addr, "rewrite.example", path, &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(up.last_path(), want, "{path}");
    }
    req(addr, "rewrite.example", "/prefix/one", &[]).await;
    assert_eq!(up.last_headers()["host"], "elsewhere.example");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_https_redirect_and_an_https_listener_with_certificate_files() {
    // gateway-api.sigs.k8s.io/guides/http-redirect-rewrite ("HTTP-to-HTTPS redirects").
    let up = upstream("secure").await;
    let pki = Pki::new();
    let issued = pki.server("issued", &["redirect.example"]);
    // The certificateRefs name a directory laid out as a kubernetes.io/tls Secret.
    let secret = pki.dir.join("redirect-gateway-cert");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::copy(issued.join("cert.pem"), secret.join("tls.crt")).unwrap();
    std::fs::copy(issued.join("key.pem"), secret.join("tls.key")).unwrap();
    let (http_port, https_port) = (free_port(), free_port());
    let listeners = format!(
        "  - {{name: http, port: {http_port}, protocol: HTTP}}\n  - name: https\n    port: {https_port}\n    protocol: HTTPS\n    tls:\n      mode: Terminate\n      certificateRefs: [{{kind: Secret, name: {}}}]\n",
        secret.display()
    );
    let rest = format!(
        "{}apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: http-filter-redirect}}
spec:
  parentRefs: [{{name: public, sectionName: http}}]
  hostnames: [redirect.example]
  rules:
  - filters:
    - type: RequestRedirect
      requestRedirect: {{scheme: https, statusCode: 301}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: https-route}}
spec:
  parentRefs: [{{name: public, sectionName: https}}]
  hostnames: [redirect.example]
  rules:
  - backendRefs: [{{name: secure, port: 80}}]
",
        svc("secure", "default", &up)
    );
    let (s, addr, _) = start(http_port, &listeners, &rest);
    let r = req(addr, "redirect.example", "/a?b=c", &[]).await;
    assert_eq!(r.status, 301);
    // The scheme's default port: none in Location.
    assert_eq!(r.header("location"), "https://redirect.example/a?b=c");
    let tls = listener(&s, https_port);
    let out = tls_raw(
        tls,
        None,
        "GET /x HTTP/1.1\r\nHost: redirect.example\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("https");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("secure"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_mirroring() {
    // gateway-api.sigs.k8s.io/guides/http-request-mirroring.
    let (main, mirror) = (upstream("foo-v1").await, upstream("foo-v2").await);
    let rest = format!(
        "{}{}{}",
        svc("foo-v1", "default", &main),
        svc("foo-v2", "default", &mirror),
        http_route(
            "http-filter-mirror",
            "  hostnames: [mirror.example]
  rules:
  - backendRefs: [{name: foo-v1, port: 80}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: foo-v2, port: 80}}
"
        )
    );
    let (_s, addr, _) = serve(&rest);
    let r = req(addr, "mirror.example", "/m", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "foo-v1"));
    assert!(
        eventually(Duration::from_secs(5), || mirror.count() == 1).await,
        "mirrored"
    );
    assert_eq!(mirror.last_path(), "/m");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_namespace_routing_needs_a_reference_grant() {
    // gateway-api.sigs.k8s.io/guides/multiple-ns and the ReferenceGrant reference.
    let up = upstream("store").await;
    let port = free_port();
    let route = format!(
        "{}apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: store, namespace: site}}
spec:
  parentRefs: [{{name: public, namespace: default}}]
  hostnames: [store.example]
  rules:
  - backendRefs: [{{name: store, namespace: store-ns, port: 80}}]
---
",
        svc("store", "store-ns", &up)
    );
    let grant = "apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: allow-site, namespace: store-ns}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: site}]
  to: [{group: \"\", kind: Service}]
";
    let (s, addr, st) = start(port, &http_listener(port), &route);
    assert_eq!(
        req(addr, "store.example", "/", &[]).await.status,
        500,
        "no grant"
    );
    assert_eq!(st[0].resolved_refs.reason, "RefNotPermitted", "{st:?}");
    drop(s);
    let port = free_port();
    let (_s, addr, st) = start(port, &http_listener(port), &format!("{route}{grant}"));
    let r = req(addr, "store.example", "/", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "store"));
    assert!(st[0].resolved_refs.status, "{st:?}");
    // Routes from another namespace are refused by a listener that allows only its own.
    let port = free_port();
    let same = format!("  - {{name: http, port: {port}, protocol: HTTP}}\n");
    let (s, addr, st) = start(port, &same, &format!("{route}{grant}"));
    assert_eq!(req(addr, "store.example", "/", &[]).await.status, 404);
    assert_eq!(st[0].accepted.reason, "NotAllowedByListeners", "{st:?}");
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_request_bounds_the_exchange() {
    let up = upstream("slow").await;
    let rest = format!(
        "{}{}",
        svc("slow", "default", &up),
        http_route(
            "slow",
            "  rules:
  - timeouts: {request: 200ms}
    backendRefs: [{name: slow, port: 80}]
"
        )
    );
    let (_s, addr, _) = serve(&rest);
    assert_eq!(req(addr, "t.example", "/", &[]).await.status, 200);
    let r = req(addr, "t.example", "/", &[("x-test-delay-ms", "2000")]).await;
    assert_eq!(r.status, 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_filter_answers_preflights() {
    // gateway-api.sigs.k8s.io/reference/spec/#httpcorsfilter.
    let up = upstream("app").await;
    let rest = format!(
        "{}{}",
        svc("app", "default", &up),
        http_route(
            "cors",
            "  rules:
  - filters:
    - type: CORS
      cors:
        allowOrigins: [\"https://app.example\", \"https://*.trusted.example\"]
        allowMethods: [GET, POST]
        allowHeaders: [x-custom]
        maxAge: 60
    backendRefs: [{name: app, port: 80}]
"
        )
    );
    let (_s, addr, _) = serve(&rest);
    let preflight = |origin: &'static str| {
        let h = [
            ("origin", origin),
            ("access-control-request-method", "POST"),
        ];
        async move { send(addr, "OPTIONS", "c.example", "/", &h, Bytes::new(), false).await }
    };
    let r = preflight("https://app.example").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        "https://app.example"
    );
    assert_eq!(r.header("access-control-allow-methods"), "GET,POST");
    assert_eq!(r.header("access-control-max-age"), "60");
    assert_eq!(up.count(), 0, "the proxy answers an allowed preflight");
    let r = preflight("https://x.trusted.example").await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        "https://x.trusted.example"
    );
    let r = req(
        addr,
        "c.example",
        "/",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("access-control-allow-origin").is_none());
}
