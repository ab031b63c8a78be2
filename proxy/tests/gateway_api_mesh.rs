//! Gateway API routes for the mesh itself (GAMMA: a Service as the parent) with real
//! traffic through a sidecar's outbound listener, and Istio's bookinfo policy written as
//! a VirtualService and as an HTTPRoute giving the same routing.

mod common;
mod gateway_api_support;
use common::*;
use gateway_api_support::svc;

/// A sidecar (outbound listener) with `docs`.
fn sidecar(docs: &str) -> Proxy {
    proxy(&format!("{}{docs}", sidecar_proxy("")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gamma_mesh_routing_with_a_service_parent() {
    // gateway-api.sigs.k8s.io/mesh/gamma (the reviews example of Istio's Gateway API task).
    let (v1, v2) = (upstream("reviews-v1").await, upstream("reviews-v2").await);
    let docs = format!(
        "{}{}{}apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: reviews}}
spec:
  parentRefs: [{{group: \"\", kind: Service, name: reviews, port: 80}}]
  rules:
  - matches: [{{headers: [{{name: end-user, value: jason}}]}}]
    backendRefs: [{{name: reviews-v2, port: 80}}]
  - matches: [{{path: {{value: /reviews}}}}]
    backendRefs: [{{name: reviews-v1, port: 80}}]
",
        svc("reviews", "default", &v1),
        svc("reviews-v1", "default", &v1),
        svc("reviews-v2", "default", &v2)
    );
    let p = sidecar(&docs);
    // The route is bound to port 80 of the Service: the request's port is the Host's.
    let host = "reviews.default.svc.cluster.local:80";
    assert_eq!(get(&p, host, "/reviews/1", &[]).await.body, "reviews-v1");
    assert_eq!(
        get(&p, host, "/", &[("end-user", "jason")]).await.body,
        "reviews-v2"
    );
    // The longer PathPrefix (/reviews) outranks the header match under `/`.
    assert_eq!(
        get(&p, "reviews:80", "/reviews", &[("end-user", "jason")])
            .await
            .body,
        "reviews-v1"
    );
    // With a route attached, a request matching no rule is refused.
    assert_eq!(get(&p, host, "/other", &[]).await.status, 404);
    // Another port of the Service is not the route's.
    assert_eq!(
        get(
            &p,
            "reviews.default.svc.cluster.local:9080",
            "/",
            &[("end-user", "jason")]
        )
        .await
        .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_policy_as_virtual_service_and_as_http_route_routes_alike() {
    let (v1, v2, v3) = (
        upstream("v1").await,
        upstream("v2").await,
        upstream("v3").await,
    );
    let services = format!(
        "{}{}{}{}",
        service(
            "reviews.default.svc.cluster.local",
            &[
                (v1.addr.port(), "version: v1"),
                (v2.addr.port(), "version: v2"),
                (v3.addr.port(), "version: v3")
            ]
        ),
        svc("reviews-v1", "default", &v1),
        svc("reviews-v2", "default", &v2),
        svc("reviews-v3", "default", &v3)
    );
    // Istio's bookinfo: jason sees v2; /reviews/3 goes to v3 (exact); everyone else v1.
    let vs = format!(
        "{services}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}, {{name: v3, labels: {{version: v3}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - match: [{{uri: {{exact: /reviews/3}}}}]
    route: [{{destination: {{host: reviews, subset: v3}}}}]
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: reviews, subset: v2}}}}]
  - route: [{{destination: {{host: reviews, subset: v1}}}}]
"
    );
    let route = format!(
        "{services}apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: reviews}}
spec:
  parentRefs: [{{group: \"\", kind: Service, name: reviews}}]
  rules:
  - backendRefs: [{{name: reviews-v1, port: 80}}]
  - matches: [{{headers: [{{name: end-user, value: jason}}]}}]
    backendRefs: [{{name: reviews-v2, port: 80}}]
  - matches: [{{path: {{type: Exact, value: /reviews/3}}}}]
    backendRefs: [{{name: reviews-v3, port: 80}}]
"
    );
    let (a, b) = (sidecar(&vs), sidecar(&route));
    let cases: [(&str, &[(&str, &str)]); 5] = [
        ("/reviews/1", &[]),
        ("/reviews/3", &[]),
        ("/reviews/3", &[("end-user", "jason")]),
        ("/productpage", &[("end-user", "jason")]),
        ("/", &[("end-user", "other")]),
    ];
    for (path, headers) in cases {
        let x = get(&a, "reviews", path, headers).await;
        let y = get(&b, "reviews", path, headers).await;
        assert_eq!(
            (x.status, &x.body),
            (y.status, &y.body),
            "{path} {headers:?}"
        );
        assert_eq!(x.status, 200);
    }
}
