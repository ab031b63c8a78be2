//! Request views against the route tables of a fixed snapshot (built once): host
//! normalisation, the virtual host lookup (exact, wildcard, `*`) and the first-match route
//! search with every kind of condition (uri exact/prefix/regex with and without case,
//! method, scheme, authority, headers, withoutHeaders, queryParams, port), done as the
//! router does it. Must not panic, and must be deterministic.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use meshproxy::policy::path::normalize;
use meshproxy_config::compile::matcher::RequestView;
use meshproxy_config::compile::Snapshot;
use meshproxy_config::host::split_authority;
use std::sync::OnceLock;

/// A sidecar with an outbound listener, a few services and VirtualServices whose rules use
/// every match field, plus a gateway snapshot whose VirtualService binds `*`.
const MESH: &str = r#"
apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {name: fuzz, namespace: default}
spec:
  workload: {labels: {app: productpage, version: v1}}
  listeners:
  - {name: outbound, address: "127.0.0.1:15001", direction: OUTBOUND}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, labels: {version: v1}}, {address: 127.0.0.2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: example}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.internal.example.org]
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 8443, name: http2, protocol: HTTP2}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.3}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: everything
    match:
    - uri: {regex: "^/api/v[0-9]+/.*"}
      scheme: {exact: http}
      method: {exact: GET}
      authority: {prefix: reviews}
      headers:
        end-user: {exact: jason}
        x-present: {}
        x-version: {regex: "v[12]"}
      withoutHeaders:
        x-canary: {exact: "true"}
      queryParams:
        page: {regex: "\\d+"}
        mode: {exact: ""}
      port: 9080
      ignoreUriCase: true
    route: [{destination: {host: reviews, subset: v2}}]
  - name: prefix-case
    match:
    - {uri: {prefix: /Static/}, ignoreUriCase: true}
    - {uri: {exact: /health}, method: {regex: "GET|HEAD"}}
    - headers: {cookie: {regex: "^(.*?;)?(user=jason)(;.*)?$"}}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: weighted
    match: [{headers: {x-weight: {prefix: "w"}}}, {queryParams: {w: {exact: "1"}}}]
    route:
    - {destination: {host: reviews, subset: v1}, weight: 30}
    - {destination: {host: reviews, subset: v2}, weight: 70}
  - name: redirect
    match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: reviews.default.svc.cluster.local}
  - name: direct
    match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: teapot}}
  - name: default
    route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: example}
spec:
  hosts: ["*.example.com", "*-api.example.net", api.internal.example.org]
  http:
  - match:
    - authority: {exact: www.example.com}
    - authority: {regex: "(?i)[a-z0-9-]+\\.example\\.com(:80)?"}
    route: [{destination: {host: www.example.com}}]
  - match:
    - {port: 8443, scheme: {exact: https}}
    route: [{destination: {host: api.internal.example.org, port: {number: 8443}}}]
  - route: [{destination: {host: api.internal.example.org}}]
"#;

const GATEWAY: &str = r#"
apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {name: ingress, namespace: istio-system}
spec:
  workload: {labels: {istio: ingressgateway}}
  listeners: []
  gateway_address: 127.0.0.1
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 18080, name: http, protocol: HTTP}
    hosts: ["*/*"]
  - port: {number: 18081, name: http2, protocol: HTTP}
    hosts: ["web/*.web.example", "./ingress.example"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: web}
spec:
  hosts: [web.web.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: 18082}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: web}
spec:
  hosts: ["*"]
  gateways: [istio-system/public]
  http:
  - match: [{uri: {prefix: /api}, headers: {x-env: {exact: canary}}}]
    route: [{destination: {host: web.web.svc.cluster.local}}]
  - route: [{destination: {host: web.web.svc.cluster.local}}]
"#;

fn snapshots() -> &'static [Snapshot; 2] {
    static S: OnceLock<[Snapshot; 2]> = OnceLock::new();
    S.get_or_init(|| {
        let load = |name, text| {
            meshproxy_config::compile::load_str(name, text)
                .unwrap_or_else(|e| panic!("fuzz snapshot {name} does not load: {e}"))
        };
        let s = [load("mesh.yaml", MESH), load("gateway.yaml", GATEWAY)];
        assert!(
            s.iter().all(|s| !s.route_tables.is_empty()),
            "no route table"
        );
        s
    })
}

/// The request the input describes, in a text form the seeds can be written in:
/// `METHOD target [https]` / authority / listener port / `name: value` header lines.
struct Request<'a> {
    method: &'a str,
    https: bool,
    authority: &'a str,
    /// The request target's path and query (`?` splits them, as `Uri` does).
    target: &'a str,
    headers: HeaderMap,
    listener_port: u16,
}

fn request(text: &str) -> Request<'_> {
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut first = lines.next().unwrap_or("").splitn(3, ' ');
    let method = first.next().unwrap_or("");
    let target = first.next().unwrap_or("");
    let https = first.next() == Some("https");
    let authority = lines.next().unwrap_or("");
    let listener_port = lines.next().and_then(|p| p.parse().ok()).unwrap_or(80);
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    Request {
        method,
        https,
        authority,
        target,
        headers,
        listener_port,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let r = request(&text);
    let headers = &r.headers;
    let (path, query) = r.target.split_once('?').unwrap_or((r.target, ""));
    let normalized = normalize(path);
    assert_eq!(
        normalize(&normalized),
        normalized,
        "normalize is idempotent"
    );
    assert!(
        !normalized.split('/').any(|s| s == "." || s == ".."),
        "dot segments left in {normalized:?}"
    );

    let (host, port) = split_authority(r.authority);
    assert!(!host.bytes().any(|b| b.is_ascii_uppercase()), "{host:?}");
    let view = RequestView {
        method: r.method,
        scheme: if r.https { "https" } else { "http" },
        authority: r.authority,
        path,
        query,
        headers,
        port: port.unwrap_or(r.listener_port),
    };
    for snap in snapshots() {
        for table in &snap.route_tables {
            let found = table.find(&host).and_then(|vh| vh.find_route(&view));
            let again = table.find(&host).and_then(|vh| vh.find_route(&view));
            assert_eq!(
                found.map(|(route, _)| &route.origin),
                again.map(|(route, _)| &route.origin),
                "route lookup is deterministic"
            );
            if let Some(vh) = table.find(&host) {
                // A route found is one of the virtual host's own.
                if let Some((route, _)) = vh.find_route(&view) {
                    assert!(vh.routes.iter().any(|r| std::ptr::eq(r, route)));
                }
            }
        }
    }
});
