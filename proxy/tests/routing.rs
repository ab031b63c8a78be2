//! Route matching through the real proxy: every HTTPMatchRequest field, first match wins,
//! host forms, and no-route replies.

mod common;
use common::*;
use std::collections::HashMap;

/// Five upstreams `a`..`e`, one subset each, behind host `web`.
async fn setup(rules: &str) -> (Proxy, Vec<Upstream>) {
    let mut ups = Vec::new();
    for n in ["a", "b", "c", "d", "e"] {
        ups.push(upstream(n).await);
    }
    let eps: Vec<(u16, String)> = ups
        .iter()
        .map(|u| (u.addr.port(), format!("v: {}", u.name)))
        .collect();
    let eps_ref: Vec<(u16, &str)> = eps.iter().map(|(p, l)| (*p, l.as_str())).collect();
    let mut subsets = String::new();
    for u in &ups {
        subsets.push_str(&format!(
            "  - {{name: {n}, labels: {{v: {n}}}}}\n",
            n = u.name
        ));
    }
    let yaml = format!(
        "{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  subsets:\n{subsets}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n{rules}",
        service("web.default.svc.cluster.local", &eps_ref)
    );
    let _ = HashMap::<&str, u16>::new();
    (proxy(&yaml), ups)
}

fn rule(m: &str, subset: &str) -> String {
    format!("  - match: [{m}]\n    route: [{{destination: {{host: web, subset: {subset}}}}}]\n")
}

const FALLBACK: &str = "  - route: [{destination: {host: web, subset: e}}]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_exact_prefix_regex_and_ignore_case() {
    let rules = [
        rule("{uri: {exact: /exact}}", "a"),
        rule("{uri: {prefix: /pre}}", "b"),
        rule("{uri: {regex: \"/items/[0-9]+\"}}", "c"),
        rule("{uri: {exact: /CaSe}, ignoreUriCase: true}", "d"),
        FALLBACK.to_string(),
    ]
    .concat();
    let (p, _u) = setup(&rules).await;
    let cases = [
        ("/exact", "a"),
        ("/exact?x=1", "a"),
        ("/exact/more", "e"),
        ("/prefix", "b"),
        ("/pre", "b"),
        ("/items/42", "c"),
        ("/items/42/x", "e"),
        ("/items/abc", "e"),
        ("/case", "d"),
        ("/CASE", "d"),
    ];
    for (path, want) in cases {
        let r = get(&p, "web", path, &[]).await;
        assert_eq!(r.body, want, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_without_headers_and_query_params() {
    let rules = [
        rule("{headers: {end-user: {exact: jason}}}", "a"),
        rule("{headers: {x-pre: {prefix: abc}}}", "b"),
        rule("{headers: {x-re: {regex: \"v[0-9]\"}}}", "c"),
        rule("{headers: {x-present: {}}}", "d"),
        rule("{queryParams: {id: {exact: \"7\"}}}", "a"),
        rule(
            "{withoutHeaders: {x-block: {exact: yes}}, uri: {prefix: /wo}}",
            "b",
        ),
        FALLBACK.to_string(),
    ]
    .concat();
    let (p, _u) = setup(&rules).await;
    assert_eq!(
        get(&p, "web", "/", &[("end-user", "jason")]).await.body,
        "a"
    );
    assert_eq!(
        get(&p, "web", "/", &[("end-user", "Jason")]).await.body,
        "e",
        "values are case-sensitive"
    );
    assert_eq!(get(&p, "web", "/", &[("x-pre", "abcdef")]).await.body, "b");
    assert_eq!(get(&p, "web", "/", &[("x-re", "v7")]).await.body, "c");
    assert_eq!(
        get(&p, "web", "/", &[("x-re", "v77")]).await.body,
        "e",
        "regex is a full match"
    );
    assert_eq!(get(&p, "web", "/", &[("x-present", "")]).await.body, "d");
    assert_eq!(get(&p, "web", "/?id=7", &[]).await.body, "a");
    assert_eq!(get(&p, "web", "/?id=8", &[]).await.body, "e");
    assert_eq!(
        get(&p, "web", "/wo", &[]).await.body,
        "b",
        "missing header does not match the excluded value"
    );
    assert_eq!(get(&p, "web", "/wo", &[("x-block", "yes")]).await.body, "e");
    assert_eq!(get(&p, "web", "/wo", &[("x-block", "no")]).await.body, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_authority_scheme_and_port() {
    let rules = [
        rule("{method: {exact: POST}}", "a"),
        rule("{authority: {prefix: web.default}}", "b"),
        rule("{port: 8080}", "c"),
        rule("{scheme: {exact: https}}", "d"),
        FALLBACK.to_string(),
    ]
    .concat();
    let (p, _u) = setup(&rules).await;
    let post = send(p.addr, "POST", "web", "/", &[], bytes::Bytes::new(), false).await;
    assert_eq!(post.body, "a");
    assert_eq!(get(&p, "web.default", "/", &[]).await.body, "b");
    assert_eq!(get(&p, "web:8080", "/", &[]).await.body, "c");
    assert_eq!(
        get(&p, "web", "/", &[]).await.body,
        "e",
        "plain-text requests have scheme http"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_match_wins_and_host_forms() {
    let rules = [
        rule("{uri: {prefix: /}}", "a"),
        rule("{uri: {prefix: /x}}", "b"),
    ]
    .concat();
    let (p, _u) = setup(&rules).await;
    for host in [
        "web",
        "web:80",
        "web.default",
        "web.default.svc",
        "web.default.svc.cluster.local",
        "WEB.Default.svc.cluster.local:80",
    ] {
        assert_eq!(get(&p, host, "/x", &[]).await.body, "a", "{host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404() {
    let rules = rule("{uri: {exact: /only}}", "a");
    let (p, _u) = setup(&rules).await;
    let r = get(&p, "web", "/other", &[]).await;
    assert_eq!(
        r.status, 404,
        "a VirtualService with no matching rule answers 404 NR"
    );
    // A host nothing knows, under REGISTRY_ONLY (the default): Istio's block_all, 502.
    let r = get(&p, "nope.example", "/", &[]).await;
    assert_eq!(r.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_requests_route_by_authority() {
    let rules = [
        rule("{headers: {end-user: {exact: jason}}}", "a"),
        FALLBACK.to_string(),
    ]
    .concat();
    let (p, _u) = setup(&rules).await;
    let r = send(
        p.addr,
        "GET",
        "web",
        "/",
        &[("end-user", "jason")],
        bytes::Bytes::new(),
        true,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "a");
}
