//! `explain` agrees with the running proxy: 1,000 generated requests (hosts, paths,
//! queries, methods, headers) over a config with uri / method / header / query matches, a
//! redirect, a fault abort, CORS, a weighted split and no catch-all are sent to a real proxy
//! whose upstreams say who they are, and each live result is compared with `explain`'s
//! decision for the same request: the status of a local reply (and a redirect's
//! `Location`), or the upstream that answered, which must be one of the destinations
//! `explain` names (for a split: any of them, since the pick is random). The same is done
//! with 750 requests on a Gateway's routed port and its `httpsRedirect` port, and with
//! 500 on an INBOUND listener under AuthorizationPolicies (allowed, or `403`).

mod common;
use common::*;
use meshproxy::access_log::AccessLog;
use meshproxy::explain::{self, Decision, RequestSpec};
use meshproxy::server::{Options, Server};
use meshproxy_config::compile::Snapshot;
use std::collections::{BTreeMap, HashMap};

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
  - name: cors
    match: [{uri: {prefix: /cors}}]
    corsPolicy: {allowOrigins: [{exact: "https://app.example"}], allowMethods: [GET]}
    route: [{destination: {host: web, subset: v3}}]
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
    "/cors",
    "/cors/a",
    "/cors/b",
    "/v2/y",
];
const QUERIES: &[&str] = &["", "?debug=1", "?debug=0", "?a=1&debug=1", "?debug"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "OPTIONS"];
const USERS: &[Option<&str>] = &[None, Some("alice"), Some("bob"), Some("ALICE")];
const LEGACY: &[Option<&str>] = &[None, None, Some("1")];
const ORIGINS: &[Option<&str>] = &[
    None,
    Some("https://app.example"),
    Some("https://app.example"),
    Some("https://evil.example"),
];

/// One generated request.
struct Generated {
    host: &'static str,
    path: String,
    method: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

fn generate(rng: &mut fastrand::Rng, hosts: &[&'static str]) -> Generated {
    let pick = |rng: &mut fastrand::Rng, n: usize| rng.usize(..n);
    let host = hosts[pick(rng, hosts.len())];
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
    if let Some(o) = ORIGINS[pick(rng, ORIGINS.len())] {
        headers.push(("origin", o));
        headers.push(("access-control-request-method", "GET"));
    }
    Generated {
        host,
        path,
        method,
        headers,
    }
}

/// Where the generated requests go: a listener's address, and for a Gateway the name
/// `explain` chooses it by.
struct Target<'a> {
    addr: std::net::SocketAddr,
    gateway: Option<&'a str>,
    listener: Option<&'a str>,
}

fn explain_it(snap: &Snapshot, target: &Target<'_>, g: &Generated) -> Decision {
    let mut headers = BTreeMap::new();
    for (k, v) in &g.headers {
        headers.insert(k.to_string(), v.to_string());
    }
    // As the live request: sent to the listener's address with the generated Host.
    headers.insert("host".into(), g.host.to_string());
    let spec = RequestSpec {
        url: format!("http://{}{}", target.addr, g.path),
        method: Some(g.method.to_string()),
        headers,
        gateway: target.gateway.map(str::to_string),
        listener: target.listener.map(str::to_string),
        ..Default::default()
    };
    explain::decide(snap, &spec).unwrap_or_else(|e| panic!("explain refused {}: {e}", spec.url))
}

/// Explains `g`, sends it, and compares; returns the kind of outcome, for the tally.
async fn agree(
    snap: &Snapshot,
    target: &Target<'_>,
    g: &Generated,
    upstream_of: &dyn Fn(&str) -> String,
) -> String {
    let d = explain_it(snap, target, g);
    let live = send(
        target.addr,
        g.method,
        g.host,
        &g.path,
        &g.headers,
        bytes::Bytes::new(),
        false,
    )
    .await;
    let what = format!(
        "{} http://{}{} {:?} on {}\nexplain: {}",
        g.method, g.host, g.path, g.headers, target.addr, d.outcome.summary
    );
    let answered_by = live.header("x-upstream");
    if d.outcome.kind == "forward" {
        let allowed: Vec<String> = d.outcome.clusters.iter().map(|c| upstream_of(c)).collect();
        assert_eq!(
            live.status, 200,
            "{what}\nlive: {} {}",
            live.status, live.body
        );
        assert!(
            allowed.iter().any(|a| a == answered_by),
            "{what}\nlive: answered by {answered_by:?}, explain allows {allowed:?}"
        );
        return format!("forward {answered_by}");
    }
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
    format!("local {}", d.outcome.status.unwrap_or(0))
}

/// Which upstream serves a cluster: `api`, or the subset's upstream.
fn upstream_of(cluster: &str) -> String {
    if cluster.ends_with("|api.default.svc.cluster.local") {
        return "api".into();
    }
    ["v1", "v2", "v3"]
        .into_iter()
        .find(|s| cluster.contains(&format!("|{s}|")))
        .unwrap_or("?")
        .to_string()
}

/// The services: `web` with one upstream per subset, and `api`.
async fn services() -> (String, Vec<Upstream>) {
    let mut ups = Vec::new();
    for n in ["v1", "v2", "v3", "api"] {
        ups.push(upstream(n).await);
    }
    let eps: Vec<(u16, String)> = ups[..3]
        .iter()
        .map(|u| (u.addr.port(), format!("version: {}", u.name)))
        .collect();
    let eps: Vec<(u16, &str)> = eps.iter().map(|(p, l)| (*p, l.as_str())).collect();
    let yaml = format!(
        "{}{}",
        service("web.default.svc.cluster.local", &eps),
        service(
            "api.default.svc.cluster.local",
            &[(ups[3].addr.port(), "app: api")]
        ),
    );
    (yaml, ups)
}

fn tally_covers(seen: &BTreeMap<String, usize>, kinds: &[&str]) {
    // The corpus reaches every kind of outcome, so the comparison covered each.
    for k in kinds {
        assert!(
            seen.get(*k).copied().unwrap_or(0) >= 5,
            "too few {k:?} in {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_agrees_with_the_live_proxy() {
    let (services, _ups) = services().await;
    let yaml = format!("{PROXY}{services}{RULES}");
    let snap = meshproxy_config::compile::load_str("agreement.yaml", &yaml)
        .unwrap_or_else(|d| panic!("config refused:\n{d}"));
    let p = proxy(&yaml);
    let target = Target {
        addr: p.addr,
        gateway: None,
        listener: None,
    };
    let mut rng = fastrand::Rng::with_seed(24);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..REQUESTS {
        let g = generate(&mut rng, HOSTS);
        *seen
            .entry(agree(&snap, &target, &g, &upstream_of).await)
            .or_default() += 1;
    }
    tally_covers(
        &seen,
        &[
            "forward v1",
            "forward v2",
            "forward v3",
            "forward api",
            "local 404",
            "local 502",
            "local 301",
            "local 503",
        ],
    );
    assert!(
        seen.contains_key("local 200"),
        "no CORS preflight answered: {seen:?}"
    );
}

const GATEWAY: &str = r#"apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {name: ingress, namespace: istio-system}
spec:
  workload: {labels: {istio: ingressgateway}}
  gatewayAddress: 127.0.0.1
  listeners: []
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: {routed}, name: http, protocol: HTTP}
    hosts: ["shop.example.com", "*.api.example.com"]
  - port: {number: {redirect}, name: http-redirect, protocol: HTTP}
    hosts: ["shop.example.com"]
    tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge, namespace: default}
spec:
  hosts: [shop.example.com, "*.api.example.com"]
  gateways: [edge]
  http:
  - match: [{headers: {x-user: {exact: alice}}, port: {routed}}]
    route: [{destination: {host: web, subset: v2}}]
  - match: [{authority: {prefix: v2.api}}]
    route: [{destination: {host: api}}]
  - match: [{uri: {prefix: /shop}}, {method: {exact: DELETE}}]
    route:
    - {destination: {host: web, subset: v1}, weight: 50}
    - {destination: {host: web, subset: v3}, weight: 50}
  - match: [{uri: {prefix: /old}}]
    redirect: {authority: new.example.com, redirectCode: 308}
"#;

const GATEWAY_HOSTS: &[&str] = &[
    "shop.example.com",
    "SHOP.example.com",
    "v2.api.example.com",
    "v1.api.example.com",
    "api.example.com",
    "web",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_agrees_with_a_live_gateway() {
    let (services, _ups) = services().await;
    let (routed, redirect) = (free_port(), free_port());
    let ports = HashMap::from([("routed", routed), ("redirect", redirect)]);
    let yaml = format!(
        "{}---\n{services}{}",
        render(GATEWAY, &ports),
        &RULES[..RULES.find("---").unwrap_or(0)]
    );
    let snap = meshproxy_config::compile::load_str("gateway.yaml", &yaml)
        .unwrap_or_else(|d| panic!("config refused:\n{d}"));
    let server = Server::start(snap, Options::default(), AccessLog::disabled()).expect("starts");
    let snap = meshproxy_config::compile::load_str("gateway.yaml", &yaml)
        .unwrap_or_else(|d| panic!("config refused:\n{d}"));
    let mut rng = fastrand::Rng::with_seed(2424);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (port, n) in [(routed, REQUESTS / 2), (redirect, REQUESTS / 4)] {
        let target = Target {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            gateway: Some("edge"),
            listener: None,
        };
        for _ in 0..n {
            let g = generate(&mut rng, GATEWAY_HOSTS);
            *seen
                .entry(agree(&snap, &target, &g, &upstream_of).await)
                .or_default() += 1;
        }
    }
    drop(server);
    tally_covers(
        &seen,
        &[
            "forward v1",
            "forward v2",
            "forward v3",
            "forward api",
            "local 404",
            "local 301",
            "local 308",
        ],
    );
}

const INBOUND_POLICIES: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  selector: {matchLabels: {app: shop}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"], notMethods: [HEAD]}}]
  - when: [{key: "request.headers[x-team]", values: [intruders]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: default}
spec:
  selector: {matchLabels: {app: shop}}
  rules:
  - to: [{operation: {methods: [GET, HEAD], paths: ["/items/*", "/", "/admin*"]}}]
  - from: [{source: {ipBlocks: ["127.0.0.0/8"]}}]
    to: [{operation: {methods: [POST], hosts: ["shop", "shop:*"]}}]
    when: [{key: "request.headers[x-team]", values: [web, ops]}]
"#;

const INBOUND_PATHS: &[&str] = &[
    "/",
    "/items/1",
    "/items",
    "/admin",
    "/admin/users",
    "/public/../admin/x",
    "/items/../admin",
    "/other",
];
const INBOUND_HOSTS: &[&str] = &["shop", "shop:8080", "other"];
const TEAMS: &[Option<&str>] = &[None, Some("web"), Some("ops"), Some("intruders")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_agrees_with_live_authorization() {
    let app = upstream("app").await;
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: shop, namespace: default}}\nspec:\n  workload: {{labels: {{app: shop}}}}\n  listeners:\n  - {{name: inbound, address: \"127.0.0.1:0\", direction: INBOUND, forwardTo: \"{}\"}}\n---\n{INBOUND_POLICIES}",
        app.addr
    );
    let load = || {
        meshproxy_config::compile::load_str("inbound.yaml", &yaml)
            .unwrap_or_else(|d| panic!("config refused:\n{d}"))
    };
    let server = Server::start(load(), Options::default(), AccessLog::disabled()).expect("starts");
    let snap = load();
    let target = Target {
        addr: server.addr("inbound").expect("inbound listener"),
        gateway: None,
        listener: Some("inbound"),
    };
    let mut rng = fastrand::Rng::with_seed(2425);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..REQUESTS / 2 {
        let mut g = generate(&mut rng, INBOUND_HOSTS);
        g.path = INBOUND_PATHS[rng.usize(..INBOUND_PATHS.len())].to_string();
        g.headers
            .retain(|(k, _)| *k != "origin" && *k != "access-control-request-method");
        if let Some(team) = TEAMS[rng.usize(..TEAMS.len())] {
            g.headers.push(("x-team", team));
        }
        let key = agree(&snap, &target, &g, &|c: &str| {
            assert_eq!(c, format!("inbound|{}||", app.addr.port()));
            "app".to_string()
        })
        .await;
        *seen.entry(key).or_default() += 1;
    }
    drop(server);
    tally_covers(&seen, &["forward app", "local 403"]);
}
