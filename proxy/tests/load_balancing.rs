//! Load balancers through the proxy: distribution and consistency of each algorithm.

mod common;
use common::*;
use std::collections::HashMap;

async fn setup(lb: &str) -> (Proxy, Vec<Upstream>) {
    let mut ups = Vec::new();
    for n in ["a", "b", "c"] {
        ups.push(upstream(n).await);
    }
    let eps: Vec<(u16, &str)> = ups.iter().map(|u| (u.addr.port(), "app: web")).collect();
    let yaml = format!(
        "{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  trafficPolicy:\n    loadBalancer: {lb}\n",
        service("web.default.svc.cluster.local", &eps)
    );
    (proxy(&yaml), ups)
}

async fn tally(
    p: &Proxy,
    n: usize,
    headers: &[(&str, &str)],
    path: &str,
) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for _ in 0..n {
        let r = get(p, "web", path, headers).await;
        assert_eq!(r.status, 200);
        *out.entry(r.body).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_even() {
    let (p, _u) = setup("{simple: ROUND_ROBIN}").await;
    let t = tally(&p, 300, &[], "/").await;
    assert_eq!(t.len(), 3, "{t:?}");
    for (k, v) in &t {
        assert_eq!(*v, 100, "{k}: {t:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_spreads() {
    let (p, _u) = setup("{simple: RANDOM}").await;
    let t = tally(&p, 600, &[], "/").await;
    assert_eq!(t.len(), 3, "{t:?}");
    for v in t.values() {
        assert!((130..=270).contains(v), "{t:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_is_the_default_and_spreads() {
    let (p, _u) = setup("{simple: UNSPECIFIED}").await;
    let t = tally(&p, 600, &[], "/").await;
    assert_eq!(t.len(), 3, "{t:?}");
    for v in t.values() {
        assert!((100..=300).contains(v), "{t:?}");
    }
}

/// An upstream that answers every request after `delay`, counting requests.
async fn slow_upstream(delay_ms: u64) -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let h = h.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_req: http::Request<hyper::body::Incoming>| {
                        let h = h.clone();
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from("slow")),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (port, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_avoids_a_slow_endpoint() {
    let (slow_port, slow_hits) = slow_upstream(800).await;
    let b = upstream("b").await;
    let c = upstream("c").await;
    let eps = [
        (slow_port, "app: web"),
        (b.addr.port(), "app: web"),
        (c.addr.port(), "app: web"),
    ];
    let yaml = format!(
        "{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  trafficPolicy:\n    loadBalancer: {{simple: LEAST_REQUEST}}\n",
        service("web.default.svc.cluster.local", &eps)
    );
    let p = proxy(&yaml);
    // 90 requests from 6 concurrent clients, each sending one after another: requests
    // to the slow endpoint stay in flight, so power of two choices sends new requests
    // elsewhere. Round robin would send it 30.
    let addr = p.addr;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let sent = sent.clone();
            tokio::spawn(async move {
                while sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 90 {
                    let r = send(addr, "GET", "web", "/", &[], bytes::Bytes::new(), false).await;
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let slow = slow_hits.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        slow < 20,
        "the slow endpoint got {slow} of 90 (b {}, c {})",
        b.count(),
        c.count()
    );
    assert_eq!(slow + b.count() + c.count(), 90);
}

async fn sticky(
    lb: &str,
    key_headers: impl Fn(usize) -> Vec<(String, String)>,
    path: impl Fn(usize) -> String,
) {
    let (p, _u) = setup(lb).await;
    let mut owners = HashMap::new();
    for k in 0..30 {
        let hs = key_headers(k);
        let hs: Vec<(&str, &str)> = hs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let t = tally(&p, 5, &hs, &path(k)).await;
        assert_eq!(
            t.len(),
            1,
            "key {k} went to several endpoints: {t:?} ({lb})"
        );
        owners.insert(k, t.into_keys().next().unwrap());
    }
    let distinct: std::collections::HashSet<_> = owners.values().collect();
    assert!(
        distinct.len() >= 2,
        "30 keys all hashed to one endpoint ({lb})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_on_header_ring_and_maglev() {
    for lb in [
        "{consistentHash: {httpHeaderName: x-user}}",
        "{consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 2048}}}",
        "{consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 65537}}}",
    ] {
        sticky(
            lb,
            |k| vec![("x-user".into(), format!("user-{k}"))],
            |_| "/".into(),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_on_query_parameter_and_cookie() {
    sticky(
        "{consistentHash: {httpQueryParameterName: uid}}",
        |_| vec![],
        |k| format!("/?uid={k}"),
    )
    .await;
    sticky(
        "{consistentHash: {httpCookie: {name: session}}}",
        |k| vec![("cookie".into(), format!("a=1; session=s{k}"))],
        |_| "/".into(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_on_source_ip_is_sticky() {
    let (p, _u) = setup("{consistentHash: {useSourceIp: true}}").await;
    let t = tally(&p, 30, &[], "/").await;
    assert_eq!(t.len(), 1, "one client address, one endpoint: {t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_cookie_pins_the_client() {
    let (p, _u) = setup("{consistentHash: {httpCookie: {name: sticky, path: /, ttl: 60s}}}").await;
    let first = get(&p, "web", "/", &[]).await;
    let set_cookie = first.header("set-cookie").to_string();
    assert!(set_cookie.starts_with("sticky=\""), "{set_cookie}");
    assert!(
        set_cookie.contains("Max-Age=60") && set_cookie.contains("Path=/"),
        "{set_cookie}"
    );
    let value = set_cookie.split(';').next().unwrap().to_string();
    let t = tally(&p, 20, &[("cookie", value.as_str())], "/").await;
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(
        t.contains_key(&first.body),
        "the cookie keeps the first endpoint: {t:?} vs {}",
        first.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_goes_to_the_original_destination() {
    let target = upstream("target").await;
    let other = upstream("other").await;
    // A NONE-resolution service is an original-destination cluster (Istio ORIGINAL_DST);
    // PASSTHROUGH in a DestinationRule does the same for a service with endpoints.
    let yaml = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext}}
spec:
  hosts: [ext.test]
  addresses: [127.0.0.1]
  ports: [{{number: {port}, name: http}}]
  resolution: NONE
---
{svc}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: web
  trafficPolicy: {{loadBalancer: {{simple: PASSTHROUGH}}}}
",
        port = target.addr.port(),
        svc = service(
            "web.default.svc.cluster.local",
            &[(other.addr.port(), "app: web")]
        )
    );
    let p = proxy(&yaml);
    // The authority is the original destination.
    let r = get(&p, &target.addr.to_string(), "/", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "target"));
    // Envoy's x-envoy-original-dst-host header names it explicitly.
    let dst = target.addr.to_string();
    let r = get(
        &p,
        "web",
        "/",
        &[("x-envoy-original-dst-host", dst.as_str())],
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "target"),
        "not the listed endpoint"
    );
    assert_eq!(other.count(), 0);
}
