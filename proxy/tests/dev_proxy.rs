//! The local dev proxy: the outbound listener as an explicit HTTP proxy, driven by curl
//! (`curl -x http://127.0.0.1:<port> ...`, what `HTTP_PROXY`/`HTTPS_PROXY` make an app
//! do): absolute-form requests follow the VirtualService routes, `CONNECT` tunnels follow
//! the `tls` rules (by the target's name, the SNI inside the tunnel) or the target
//! service, `ALLOW_ANY` passes unknown targets through, `REGISTRY_ONLY` refuses them;
//! each tunnel gets an access-log line and Istio metrics.

mod binary;
mod common;

use common::{curl_missing, tls_app, upstream, Pki};
use std::process::Command;

/// curl with `args` through the proxy at `proxy`; (exit code, stdout, stderr).
async fn curl(proxy: std::net::SocketAddr, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["-x".to_string(), format!("http://{proxy}")];
    all.extend(args.iter().map(|a| a.to_string()));
    common::curl(all).await
}

/// The proxy document: an HTTP outbound listener, admin, and the outbound policy.
fn proxy_doc(mode: &str) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: laptop, namespace: default}}\nspec:\n  admin: {{address: \"127.0.0.1:0\"}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n  outboundTrafficPolicy: {{mode: {mode}}}\n---\n"
    )
}

/// `reviews` (HTTP on 9080, routed by a VirtualService that marks its requests) and two
/// TLS services, `secure.example` and `secure-v2.example`, with a `tls` rule sending
/// `secure.example` to v2.
fn mesh(reviews: u16, v1: u16, v2: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {reviews}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - match: [{{uri: {{prefix: /api}}}}]
    headers: {{request: {{set: {{x-routed: api}}}}}}
    route: [{{destination: {{host: reviews}}}}]
  - headers: {{request: {{set: {{x-routed: default}}}}}}
    route: [{{destination: {{host: reviews}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: secure}}
spec:
  hosts: [secure.example]
  ports: [{{number: 8443, name: tls, protocol: TLS}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{tls: {v1}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: secure-v2}}
spec:
  hosts: [secure-v2.example]
  ports: [{{number: 8443, name: tls, protocol: TLS}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{tls: {v2}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: secure}}
spec:
  hosts: [secure.example]
  tls:
  - match: [{{sniHosts: [secure.example], port: 8443}}]
    route: [{{destination: {{host: secure-v2.example, port: {{number: 8443}}}}}}]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_the_dev_proxy_follows_the_routes() {
    if curl_missing() {
        return;
    }
    let reviews = upstream("reviews").await;
    let pki = Pki::new();
    let cert = pki.server(
        "secure",
        &["secure.example", "secure-v2.example", "localhost"],
    );
    let v1 = tls_app(&cert, "secure-v1").await;
    let v2 = tls_app(&cert, "secure-v2").await;
    let yaml = format!(
        "{}{}",
        proxy_doc("ALLOW_ANY"),
        mesh(reviews.addr.port(), v1, v2)
    );
    let p = binary::run(&yaml, &["--access-log", "on"]);
    let proxy = p.addr("outbound");

    // Absolute-form: routed by the VirtualService, forwarded in origin-form.
    let (code, body, err) = curl(proxy, &["http://reviews:9080/api/x?q=1"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(body.contains("reviews"), "{body}");
    assert_eq!(reviews.last_headers()["x-routed"], "api");
    assert_eq!(reviews.last_path(), "/api/x?q=1");
    assert_eq!(reviews.last_headers()["host"], "reviews:9080");
    assert!(reviews.last_headers().get("proxy-connection").is_none());
    let (code, _, err) = curl(proxy, &["http://reviews:9080/"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(reviews.last_headers()["x-routed"], "default");

    // HTTPS through CONNECT: the `tls` rule for secure.example sends the tunnel to v2;
    // the client's TLS is end to end (verified against the test CA by name).
    let ca = pki.ca_pem().display().to_string();
    let (code, body, err) = curl(
        proxy,
        &["--cacert", &ca, "https://secure.example:8443/hello"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, "secure-v2");
    // v2 by its own name: no tls rule, the service's cluster.
    let (code, body, err) =
        curl(proxy, &["--cacert", &ca, "https://secure-v2.example:8443/"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, "secure-v2");

    // ALLOW_ANY: a target outside the registry goes where the client asked.
    let target = format!("https://localhost:{v1}/");
    let (code, body, err) = curl(proxy, &["--cacert", &ca, &target]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, "secure-v1");
    let plain = format!("http://127.0.0.1:{}/direct", reviews.addr.port());
    let (code, _, err) = curl(proxy, &[&plain]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(reviews.last_path(), "/direct");
    assert!(reviews.last_headers().get("x-routed").is_none());

    // Every tunnel has its access-log line: status 200, the cluster it went to.
    let mut tunnels = Vec::new();
    while let Ok(l) = p.stdout.recv_timeout(std::time::Duration::from_secs(5)) {
        if l.contains("\"CONNECT ") {
            tunnels.push(l);
        }
        if tunnels.len() == 3 {
            break;
        }
    }
    assert_eq!(tunnels.len(), 3, "{tunnels:?}");
    // (curl may reset the tunnel when done, which is logged as `DC`.) Lines from
    // different workers' batches may come in any order.
    assert!(tunnels.iter().all(|l| l.contains("\" 200 ")), "{tunnels:?}");
    assert!(
        tunnels
            .iter()
            .any(|l| l.contains("\"secure.example:8443\"")),
        "{tunnels:?}"
    );

    // Istio metrics name the service each tunnel went to.
    let admin = p.addr("admin");
    let (code, metrics, _) = tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-sS", &format!("http://{admin}/metrics")])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            (),
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    let series = |svc: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .filter(|l| l.contains(&format!("destination_service=\"{svc}\"")))
            .filter(|l| l.contains("response_code=\"200\""))
            .count()
    };
    assert!(series("secure-v2.example") >= 1, "{metrics}");
    assert!(series("PassthroughCluster") >= 1, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_only_refuses_unknown_targets() {
    if curl_missing() {
        return;
    }
    let reviews = upstream("reviews").await;
    let pki = Pki::new();
    let cert = pki.server("secure", &["secure.example", "localhost"]);
    let v1 = tls_app(&cert, "secure-v1").await;
    let yaml = format!(
        "{}{}",
        proxy_doc("REGISTRY_ONLY"),
        mesh(reviews.addr.port(), v1, v1)
    );
    let p = binary::run(&yaml, &[]);
    let proxy = p.addr("outbound");
    // An unknown host: 502 from Istio's block_all (BlackHoleCluster), nothing reaches
    // the upstream.
    let plain = format!("http://127.0.0.1:{}/", reviews.addr.port());
    let (code, body, err) = curl(proxy, &["-w", "%{http_code}", "-o", "/dev/null", &plain]).await;
    assert_eq!((code, body.as_str()), (0, "502"), "{err}");
    assert_eq!(reviews.count(), 0);
    // CONNECT to an unknown target: Istio's block_all answers the tunnel as it answers a
    // request, 502; curl reports the failed tunnel.
    let ca = pki.ca_pem().display().to_string();
    let target = format!("https://localhost:{v1}/");
    let (code, _, err) = curl(proxy, &["--cacert", &ca, &target]).await;
    assert_ne!(code, 0);
    assert!(err.contains("502"), "{err}");
}
