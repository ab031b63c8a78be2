//! `explain` agrees with the running proxy: 1,000 generated requests (hosts, paths,
//! queries, methods, headers) over a config with uri / method / header / query matches, a
//! redirect, a fault abort, a weighted split and no catch-all are sent to a real proxy
//! whose upstreams say who they are, and each live result is compared with `explain`'s
//! decision for the same request: the status of a local reply (and a redirect's
//! `Location`), or the upstream that answered, which must be one of the destinations
//! `explain` names (for a split: any of them, since the pick is random).

mod common;
use common::*;
use meshproxy::explain::{self, Decision, RequestSpec};
use std::collections::BTreeMap;

const REQUESTS: usize = 1_000;

const PROXY: &str = "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {name: test, namespace: default}\nspec:\n  workload: {labels: {app: test}}\n  listeners:\n  - {name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n---\n";

const RULES: &str = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - name: alice
    match: [{headers: {x-user: {exact: alice}}}]
    route: [{destination: {host: web, subset: v2}}]
  - name: admin-writes
    match: [{uri: {prefix: /admin}, method: {regex: "POST|PUT"}}]
    route: [{destination: {host: web, subset: v3}}]
  - name: items
    match: [{uri: {regex: "/items/[0-9]+"}}, {queryParams: {debug: {exact: "1"}}}]
    route: [{destination: {host: web, subset: v1}}]
  - name: not-legacy
    match: [{uri: {prefix: /new}, withoutHeaders: {x-legacy: {}}}]
    route: [{destination: {host: web, subset: v2}}]
  - name: moved
    match: [{uri: {prefix: /old}}]
    redirect: {uri: /new}
  - name: broken
    match: [{uri: {exact: /fail}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: web, subset: v1}}]
  - name: shop
    match: [{uri: {prefix: /shop}}]
    route:
    - {destination: {host: web, subset: v1}, weight: 70}
    - {destination: {host: web, subset: v2}, weight: 30}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api]
  http:
  - match: [{uri: {prefix: /v2}, headers: {x-user: {prefix: b}}}]
    route: [{destination: {host: api}}]
    headers: {request: {set: {x-via: api-v2}}}
"#;

const HOSTS: &[&str] = &[
    "web",
    "web.default",
    "web.default.svc.cluster.local",
    "WEB:80",
    "api",
    "api.default.svc.cluster.local",
    "nosuch.example",
];
const PATHS: &[&str] = &[
    "/",
    "/admin",
    "/admin/users",
    "/items/12",
    "/items/x",
    "/new",
    "/new/page",
    "/old/a",
    "/fail",
    "/fail/no",
    "/shop",
    "/shop/cart",
    "/v2",
    "/v2/x",
    "/other",
];
const QUERIES: &[&str] = &["", "?debug=1", "?debug=0", "?a=1&debug=1", "?debug"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
const USERS: &[Option<&str>] = &[None, Some("alice"), Some("bob"), Some("ALICE")];
const LEGACY: &[Option<&str>] = &[None, None, Some("1")];

/// One generated request.
struct Generated {
    host: &'static str,
    path: String,
    method: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

fn generate(rng: &mut fastrand::Rng) -> Generated {
    let pick = |rng: &mut fastrand::Rng, n: usize| rng.usize(..n);
    let host = HOSTS[pick(rng, HOSTS.len())];
    let path = format!(
        "{}{}",
        PATHS[pick(rng, PATHS.len())],
        QUERIES[pick(rng, QUERIES.len())]
    );
    let method = METHODS[pick(rng, METHODS.len())];
    let mut headers = Vec::new();
    if let Some(u) = USERS[pick(rng, USERS.len())] {
        headers.push(("x-user", u));
    }
    if let Some(l) = LEGACY[pick(rng, LEGACY.len())] {
        headers.push(("x-legacy", l));
    }
    Generated {
        host,
        path,
        method,
        headers,
    }
}

fn explain_it(snap: &meshproxy_config::compile::Snapshot, g: &Generated) -> Decision {
    let mut headers = BTreeMap::new();
    for (k, v) in &g.headers {
        headers.insert(k.to_string(), v.to_string());
    }
    let spec = RequestSpec {
        url: format!("http://{}{}", g.host, g.path),
        method: Some(g.method.to_string()),
        headers,
        ..Default::default()
    };
    explain::decide(snap, &spec).unwrap_or_else(|e| panic!("explain refused {}: {e}", spec.url))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_agrees_with_the_live_proxy() {
    let mut ups = Vec::new();
    for n in ["v1", "v2", "v3"] {
        ups.push(upstream(n).await);
    }
    let api = upstream("api").await;
    let eps: Vec<(u16, String)> = ups
        .iter()
        .map(|u| (u.addr.port(), format!("version: {}", u.name)))
        .collect();
    let eps: Vec<(u16, &str)> = eps.iter().map(|(p, l)| (*p, l.as_str())).collect();
    let yaml = format!(
        "{PROXY}{}{}{RULES}",
        service("web.default.svc.cluster.local", &eps),
        service(
            "api.default.svc.cluster.local",
            &[(api.addr.port(), "app: api")]
        ),
    );
    let snap = meshproxy_config::compile::load_str("agreement.yaml", &yaml)
        .unwrap_or_else(|d| panic!("config refused:\n{d}"));
    let p = proxy(&yaml);
    // Which upstream serves each cluster.
    let upstream_of = |cluster: &str| -> &str {
        if cluster.ends_with("|api.default.svc.cluster.local") {
            return "api";
        }
        ["v1", "v2", "v3"]
            .into_iter()
            .find(|s| cluster.contains(&format!("|{s}|")))
            .unwrap_or("?")
    };
    let mut rng = fastrand::Rng::with_seed(24);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..REQUESTS {
        let g = generate(&mut rng);
        let d = explain_it(&snap, &g);
        let live = send(
            p.addr,
            g.method,
            g.host,
            &g.path,
            &g.headers,
            bytes::Bytes::new(),
            false,
        )
        .await;
        let what = format!(
            "request {i}: {} http://{}{} {:?}\nexplain: {}",
            g.method, g.host, g.path, g.headers, d.outcome.summary
        );
        let answered_by = live.header("x-upstream");
        match d.outcome.kind {
            "forward" => {
                let allowed: Vec<&str> =
                    d.outcome.clusters.iter().map(|c| upstream_of(c)).collect();
                assert_eq!(
                    live.status, 200,
                    "{what}\nlive: {} {}",
                    live.status, live.body
                );
                assert!(
                    allowed.contains(&answered_by),
                    "{what}\nlive: answered by {answered_by:?}, explain allows {allowed:?}"
                );
            }
            _ => {
                assert_eq!(
                    Some(live.status),
                    d.outcome.status,
                    "{what}\nlive: {}",
                    live.status
                );
                assert_eq!(answered_by, "", "{what}\nlive: a local reply was forwarded");
                if let Some(loc) = &d.outcome.location {
                    assert_eq!(live.header("location"), loc, "{what}");
                }
            }
        }
        let key = match d.outcome.kind {
            "forward" => format!("forward {}", answered_by),
            _ => format!("local {}", d.outcome.status.unwrap_or(0)),
        };
        *seen.entry(key).or_default() += 1;
    }
    // The corpus reaches every kind of outcome, so the comparison above covered each.
    for k in [
        "forward v1",
        "forward v2",
        "forward v3",
        "forward api",
        "local 404",
        "local 502",
        "local 301",
        "local 503",
    ] {
        assert!(
            seen.get(k).copied().unwrap_or(0) >= 5,
            "too few {k:?} in {seen:?}"
        );
    }
}
