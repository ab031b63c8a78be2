//! Compiler tests: YAML in, snapshot out, requests matched against the compiled tables.

use http::{HeaderMap, HeaderValue};
use meshproxy_config::compile::cluster::{ClusterKey, EndpointAddress, LoadBalancer};
use meshproxy_config::compile::listener::ListenerRole;
use meshproxy_config::compile::matcher::RequestView;
use meshproxy_config::compile::route::{ClusterChoice, Route, RouteAction};
use meshproxy_config::compile::{load_str, Snapshot};
use std::time::Duration;

const REGISTRY: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [10.0.0.10]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.1.0.1, labels: {version: v1}}
  - {address: 10.1.0.2, labels: {version: v2}}
  - {address: 10.1.0.3, labels: {version: v3}, ports: {http: 9999}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  ports:
  - {number: 9080, name: http}
  - {number: 9443, name: grpc-api, protocol: GRPC}
  resolution: STATIC
  endpoints:
  - {address: 10.2.0.1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 100}, http: {http1MaxPendingRequests: 10}}
    outlierDetection: {consecutiveErrors: 3, interval: 30s, baseEjectionTime: 30s, maxEjectionPercent: 50}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      connectionPool: {tcp: {maxConnections: 1}}
  - name: v3
    labels: {version: v3}
"#;

fn snap(extra: &str) -> Snapshot {
    let text = format!("{REGISTRY}\n---\n{extra}");
    match load_str("test.yaml", &text) {
        Ok(s) => s,
        Err(d) => panic!("config refused:\n{d}"),
    }
}

fn request<'a>(authority: &'a str, path: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
    RequestView {
        method: "GET",
        scheme: "http",
        authority,
        path,
        query: "",
        headers,
        port: 9080,
    }
}

fn route<'s>(
    s: &'s Snapshot,
    authority: &str,
    path: &str,
    headers: &HeaderMap,
) -> Option<&'s Route> {
    let table = s.mesh_routes()?;
    let (host, _) = meshproxy_config::host::split_authority(authority);
    let vh = table.find(&host)?;
    vh.find_route(&request(authority, path, headers))
        .map(|(r, _)| r)
}

fn targets(r: &Route) -> Vec<(String, String, u32)> {
    match &r.action {
        RouteAction::Forward(w) => w
            .destinations
            .iter()
            .map(|d| (d.host.clone(), d.subset.clone(), d.weight))
            .collect(),
        _ => Vec::new(),
    }
}

const REVIEWS_VS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews, subset: v2}
  - name: split
    route:
    - destination: {host: reviews, subset: v1}
      weight: 49
    - destination: {host: reviews, subset: v3}
      weight: 50
    - destination: {host: reviews, subset: v2}
      weight: 0
"#;

#[test]
fn every_kubernetes_host_form_reaches_the_service() {
    let s = snap(REVIEWS_VS);
    let h = HeaderMap::new();
    for a in [
        "reviews",
        "reviews:9080",
        "reviews.default",
        "reviews.default.svc",
        "reviews.default.svc.cluster.local",
        "Reviews.Default.Svc.Cluster.Local:9080",
        "10.0.0.10:9080",
    ] {
        let r = route(&s, a, "/", &h).unwrap_or_else(|| panic!("{a} found no route"));
        assert_eq!(&*r.name, "split", "{a}");
    }
    // Outside the registry (REGISTRY_ONLY): Istio's block_all catch-all.
    let other = route(&s, "reviews.other", "/", &h).map(|r| &*r.name);
    assert_eq!(other, Some("block_all"));
}

#[test]
fn bare_short_name_only_from_the_same_namespace() {
    let proxy = r#"
apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {name: client, namespace: other}
spec: {}
"#;
    let s = snap(&format!("{REVIEWS_VS}\n---\n{proxy}"));
    let h = HeaderMap::new();
    let bare = route(&s, "reviews", "/", &h).map(|r| &*r.name);
    assert_eq!(
        bare,
        Some("block_all"),
        "not the service from another namespace"
    );
    assert_eq!(
        route(&s, "reviews.default", "/", &h).map(|r| &*r.name),
        Some("split")
    );
}

#[test]
fn first_match_wins_and_weights_are_relative() {
    let s = snap(REVIEWS_VS);
    let mut h = HeaderMap::new();
    h.insert("end-user", HeaderValue::from_static("jason"));
    let r = route(&s, "reviews", "/", &h).unwrap();
    assert_eq!(
        targets(r),
        vec![("reviews.default.svc.cluster.local".into(), "v2".into(), 1)]
    );
    let r = route(&s, "reviews", "/", &HeaderMap::new()).unwrap();
    // weight-0 destinations are dropped; the rest keep their relative weights.
    assert_eq!(
        targets(r),
        vec![
            ("reviews.default.svc.cluster.local".into(), "v1".into(), 49),
            ("reviews.default.svc.cluster.local".into(), "v3".into(), 50),
        ]
    );
    let RouteAction::Forward(w) = &r.action else {
        panic!()
    };
    assert_eq!(w.total_weight, 99);
}

#[test]
fn retries_default_to_istios_policy() {
    let s = snap(REVIEWS_VS);
    let r = route(&s, "reviews", "/", &HeaderMap::new()).unwrap();
    assert_eq!(r.policy.retry.attempts, 2);
    assert_eq!(r.policy.timeout, None, "Istio: no route timeout by default");
}

#[test]
fn subsets_select_endpoints_and_policies_merge_by_block() {
    let s = snap("");
    let key = |subset: Option<&str>| ClusterKey {
        service: "reviews.default.svc.cluster.local".into(),
        port: 9080,
        subset: subset.map(Into::into),
    };
    let all = s.cluster(s.find_cluster(&key(None)).unwrap());
    assert_eq!(
        &*all.name,
        "outbound|9080||reviews.default.svc.cluster.local"
    );
    assert_eq!(all.endpoints.len(), 3);
    // Port-level settings replace the top-level blocks without inheriting them.
    assert_eq!(all.load_balancer, LoadBalancer::RoundRobin);
    assert_eq!(all.pool.max_connections, u32::MAX);
    assert!(all.outlier.is_none());

    let v2 = s.cluster(s.find_cluster(&key(Some("v2"))).unwrap());
    assert_eq!(v2.endpoints.len(), 1);
    assert_eq!(v2.pool.max_connections, 1);
    let v3 = s.cluster(s.find_cluster(&key(Some("v3"))).unwrap());
    assert_eq!(
        v3.endpoints[0].address,
        EndpointAddress::Socket("10.1.0.3:9999".parse().unwrap()),
        "endpoint ports map by port name"
    );
}

#[test]
fn seed_scenario_pool_and_deprecated_consecutive_errors() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 100}
      http: {http1MaxPendingRequests: 10, http2MaxRequests: 2, maxRequestsPerConnection: 1}
    outlierDetection: {consecutiveErrors: 3, interval: 30s, baseEjectionTime: 30s, maxEjectionPercent: 50}
"#,
    );
    let c = s.cluster(
        s.find_cluster(&ClusterKey {
            service: "ratings.default.svc.cluster.local".into(),
            port: 9080,
            subset: None,
        })
        .unwrap(),
    );
    assert_eq!(c.pool.max_connections, 100);
    assert_eq!(c.pool.http1_max_pending_requests, 10);
    assert_eq!(c.pool.http2_max_requests, 2);
    assert_eq!(c.pool.max_requests_per_connection, Some(1));
    let o = c.outlier.as_ref().unwrap();
    assert_eq!(o.consecutive_gateway, Some(3));
    assert_eq!(o.consecutive_5xx, None);
    assert_eq!(o.interval, Duration::from_secs(30));
    assert_eq!(o.max_ejection_percent, 50);
}

#[test]
fn unknown_subset_is_a_missing_cluster() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings, subset: v9, port: {number: 9080}}
"#,
    );
    let r = route(&s, "ratings", "/", &HeaderMap::new()).unwrap();
    let RouteAction::Forward(w) = &r.action else {
        panic!()
    };
    assert!(matches!(
        w.destinations[0].target,
        ClusterChoice::Missing { .. }
    ));
    assert!(s
        .warnings
        .warnings()
        .any(|w| w.message.contains("subset \"v9\"")));
}

#[test]
fn services_without_virtual_service_get_a_default_route_per_port() {
    let s = snap("");
    let r = route(&s, "ratings", "/", &HeaderMap::new()).unwrap();
    let RouteAction::Forward(w) = &r.action else {
        panic!()
    };
    match &w.destinations[0].target {
        ClusterChoice::ByPort(list) => {
            let ports: Vec<u16> = list.iter().map(|(p, _)| *p).collect();
            assert_eq!(ports, vec![9080, 9443]);
        }
        other => panic!("expected a per-port choice, got {other:?}"),
    }
}

#[test]
fn source_labels_are_applied_at_compile_time() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: from-productpage
    match:
    - sourceLabels: {app: productpage}
    route:
    - destination: {host: reviews, subset: v2}
  - name: rest
    route:
    - destination: {host: reviews, subset: v1}
"#;
    let proxy = |app: &str| {
        format!(
            "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: p, namespace: default}}\nspec:\n  workload: {{labels: {{app: {app}}}}}\n"
        )
    };
    let s = snap(&format!("{vs}\n---\n{}", proxy("productpage")));
    let r = route(&s, "reviews", "/", &HeaderMap::new()).unwrap();
    assert_eq!(&*r.name, "from-productpage");
    assert!(
        r.matches.is_empty(),
        "a sourceLabels-only match is a catch-all for a matching proxy"
    );
    let s = snap(&format!("{vs}\n---\n{}", proxy("other")));
    let r = route(&s, "reviews", "/", &HeaderMap::new()).unwrap();
    assert_eq!(
        &*r.name, "rest",
        "the rule is absent for other proxies, not a catch-all"
    );
}

#[test]
fn gateway_virtual_services_stay_off_the_mesh() {
    let cfg = r#"
apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {name: ingress, namespace: default}
spec:
  workload: {labels: {istio: ingressgateway}}
  gatewayAddress: 127.0.0.1
  listeners: []
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*.example.com"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.9.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com, other.test]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: web.example.com}}]
  - route: [{destination: {host: web.example.com}}]
"#;
    let s = snap(cfg);
    assert!(
        s.mesh_routes().is_none(),
        "no outbound listener, no mesh table"
    );
    let l = s
        .listeners
        .iter()
        .find(|l| matches!(l.role, ListenerRole::Gateway { .. }))
        .unwrap();
    assert_eq!(l.address, "127.0.0.1:8080".parse().unwrap());
    let table = &s.route_tables[l.route_table.unwrap()];
    let vh = table.find("web.example.com").unwrap();
    assert_eq!(vh.routes.len(), 2);
    assert!(
        table.find("other.test").is_none(),
        "host not admitted by any server"
    );
}

#[test]
fn wildcard_virtual_service_claims_matching_services() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: all, namespace: default}
spec:
  hosts: ["*.default.svc.cluster.local"]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
"#,
    );
    let r = route(&s, "ratings", "/", &HeaderMap::new()).unwrap();
    assert_eq!(targets(r)[0].1, "v1");
}

#[test]
fn delegate_rules_merge_with_the_root_match() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /api}}]
    timeout: 3s
    delegate: {name: leaf}
  - route: [{destination: {host: reviews, subset: v3}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: leaf, namespace: default}
spec:
  http:
  - match: [{uri: {prefix: /api/v2}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#,
    );
    let h = HeaderMap::new();
    let r = route(&s, "reviews", "/api/v2/x", &h).unwrap();
    assert_eq!(targets(r)[0].1, "v2");
    assert_eq!(
        r.policy.timeout,
        Some(Duration::from_secs(3)),
        "root fields fill the leaf's gaps"
    );
    assert_eq!(
        targets(route(&s, "reviews", "/api/v1", &h).unwrap())[0].1,
        "v1"
    );
    assert_eq!(
        targets(route(&s, "reviews", "/web", &h).unwrap())[0].1,
        "v3"
    );
}

#[test]
fn export_to_hides_resources_from_other_namespaces() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private, namespace: team}
spec:
  hosts: [reviews.default.svc.cluster.local]
  exportTo: ["."]
  http:
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v3}}]
"#,
    );
    // The proxy is in `default`; the VS is only visible in `team`: the default route applies.
    let r = route(&s, "reviews", "/", &HeaderMap::new()).unwrap();
    assert_eq!(&*r.name, "default");
}

#[test]
fn version_is_a_content_hash() {
    let a = snap(REVIEWS_VS);
    let b = snap(REVIEWS_VS);
    let c = snap(&REVIEWS_VS.replace("weight: 49", "weight: 48"));
    assert_eq!(a.version, b.version);
    assert_ne!(a.version, c.version);
    assert_eq!(a.version.len(), 16);
}

#[test]
fn dns_service_without_endpoints_resolves_its_host() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
"#,
    );
    let c = s.cluster(
        s.find_cluster(&ClusterKey {
            service: "api.example.com".into(),
            port: 443,
            subset: None,
        })
        .unwrap(),
    );
    assert_eq!(
        c.endpoints[0].address,
        EndpointAddress::Dns("api.example.com".into(), 443)
    );
}

#[test]
fn regex_and_rewrite_and_fault_compile() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {regex: "/items/[0-9]+"}}]
    rewrite: {uri: /v2/items}
    fault:
      abort: {httpStatus: 418, percentage: {value: 25}}
    route: [{destination: {host: reviews, subset: v1}}]
  - directResponse: {status: 404, body: {string: nothing here}}
"#,
    );
    let h = HeaderMap::new();
    let r = route(&s, "reviews", "/items/42", &h).unwrap();
    assert!(r.policy.fault.as_ref().unwrap().abort.is_some());
    let r2 = route(&s, "reviews", "/items/42/x", &h).unwrap();
    assert!(
        matches!(r2.action, RouteAction::DirectResponse(ref d) if d.status == 404 && &d.body[..] == b"nothing here")
    );
}

#[test]
fn declared_protocols_are_found_by_address_and_port() {
    use meshproxy_config::compile::cluster::Protocol;
    let s = snap(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.example]
  addresses: [10.1.0.7]
  ports: [{number: 3306, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.7}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: range}
spec:
  hosts: [range.example]
  addresses: [10.1.0.0/24]
  ports: [{number: 8080, name: http, protocol: HTTP}, {number: 3306, name: grpc, protocol: GRPC}]
  resolution: NONE
",
    );
    let at = |a: &str| s.registry.protocol_at(a.parse().unwrap());
    // The single address first (load order), then the range for what it does not declare.
    assert_eq!(at("10.1.0.7:3306"), Some(Protocol::Tcp));
    assert_eq!(at("10.1.0.7:8080"), Some(Protocol::Http));
    assert_eq!(at("10.1.0.9:3306"), Some(Protocol::Grpc));
    assert_eq!(at("10.1.0.9:9999"), None);
    assert_eq!(at("10.2.0.1:8080"), None);
}
