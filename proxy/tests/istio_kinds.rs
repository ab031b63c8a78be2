//! Istio's Sidecar and WorkloadEntry with real traffic: egress scoping (a host the Sidecar
//! does not import behaves as unknown), a Sidecar's outbound policy, `ingress[]`
//! `defaultEndpoint` on an INBOUND listener, and endpoints selected from WorkloadEntries.

mod common;
use common::*;
use meshproxy::access_log::AccessLog;
use meshproxy::server::{Options, Server};

fn entry(name: &str, ns: &str, host: &str, port: u16) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [{host}]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]\n---\n")
}

fn sidecar(ns: &str, spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: {ns}}}\nspec:\n{spec}---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_the_sidecar_does_not_import_is_unknown() {
    let mine = upstream("mine").await;
    let theirs = upstream("theirs").await;
    let yaml = format!(
        "{}{}{}{}",
        sidecar_proxy(""),
        entry(
            "mine",
            "default",
            "mine.default.svc.cluster.local",
            mine.addr.port()
        ),
        entry(
            "theirs",
            "other",
            "theirs.other.svc.cluster.local",
            theirs.addr.port()
        ),
        sidecar(
            "default",
            "  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n"
        ),
    );
    let p = proxy(&yaml);
    let r = get(&p, "mine", "/", &[]).await;
    assert_eq!((r.status, r.header("x-upstream")), (200, "mine"));
    // REGISTRY_ONLY: Istio's block_all, 502 BlackHoleCluster.
    let r = get(&p, "theirs.other.svc.cluster.local", "/", &[]).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(theirs.count(), 0);
    // Imported, the same host is reachable.
    let yaml = yaml.replace(
        "\"istio-system/*\"",
        "\"other/theirs.other.svc.cluster.local\"",
    );
    let p = proxy(&yaml);
    let r = get(&p, "theirs.other.svc.cluster.local", "/", &[]).await;
    assert_eq!((r.status, r.header("x-upstream")), (200, "theirs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecars_allow_any_passes_unknown_hosts_through() {
    let other = upstream("other").await;
    let yaml = format!(
        "{}{}",
        sidecar_proxy("  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"),
        sidecar("default", "  outboundTrafficPolicy: {mode: ALLOW_ANY}\n"),
    );
    let p = proxy(&yaml);
    // Not in the registry: passed through to where the Host says (PassthroughCluster).
    let r = get(&p, &other.addr.to_string(), "/", &[]).await;
    assert_eq!((r.status, r.header("x-upstream")), (200, "other"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_default_endpoint_chooses_the_application_port() {
    let listed = upstream("listed").await;
    let sidecar_target = upstream("sidecar-target").await;
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  workload: {{labels: {{app: reviews}}}}\n  listeners:\n  - {{name: inbound, address: \"127.0.0.1:0\", direction: INBOUND, forwardTo: \"{}\"}}\n---\n{}",
        listed.addr,
        sidecar("default", &format!("  workloadSelector: {{labels: {{app: reviews}}}}\n  ingress:\n  - port: {{number: {}, protocol: HTTP, name: http}}\n    defaultEndpoint: 127.0.0.1:{}\n", listed.addr.port(), sidecar_target.addr.port())),
    );
    let snap =
        meshproxy_config::compile::load_str("t.yaml", &yaml).unwrap_or_else(|d| panic!("{d}"));
    let server = Server::start(snap, Options::default(), AccessLog::disabled()).unwrap();
    let addr = server.addr("inbound").unwrap();
    let r = send(addr, "GET", "reviews", "/", &[], bytes::Bytes::new(), false).await;
    assert_eq!((r.status, r.header("x-upstream")), (200, "sidecar-target"));
    assert_eq!(listed.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_entries_are_the_endpoints_a_service_entry_selects() {
    let v1 = upstream("vm-v1").await;
    let v2 = upstream("vm-v2").await;
    let stray = upstream("stray").await;
    let we = |name: &str, version: &str, port: u16| {
        format!("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: {name}, namespace: default}}\nspec: {{address: 127.0.0.1, ports: {{http: {port}}}, labels: {{app: details, version: {version}}}}}\n---\n")
    };
    let yaml = format!(
        "{}{}{}{}apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: stray, namespace: default}}
spec: {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{app: ratings}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: details, namespace: default}}
spec:
  hosts: [details.vm.internal]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: details}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: details, namespace: default}}
spec:
  host: details.vm.internal
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: details, namespace: default}}
spec:
  hosts: [details.vm.internal]
  http:
  - match: [{{headers: {{x-version: {{exact: v2}}}}}}]
    route: [{{destination: {{host: details.vm.internal, subset: v2}}}}]
  - route: [{{destination: {{host: details.vm.internal, subset: v1}}}}]
---
",
        sidecar_proxy(""),
        we("vm-1", "v1", v1.addr.port()),
        we("vm-2", "v2", v2.addr.port()),
        "",
        stray.addr.port(),
    );
    let p = proxy(&yaml);
    for _ in 0..5 {
        let r = get(&p, "details.vm.internal", "/", &[]).await;
        assert_eq!((r.status, r.header("x-upstream")), (200, "vm-v1"));
        let r = get(&p, "details.vm.internal", "/", &[("x-version", "v2")]).await;
        assert_eq!((r.status, r.header("x-upstream")), (200, "vm-v2"));
    }
    assert_eq!(
        stray.count(),
        0,
        "a WorkloadEntry the selector does not pick"
    );
}
