//! End to end: Istio's standard metrics on `/metrics` count a known mix of requests
//! exactly, with Istio's labels, Envoy's buckets, and meshproxy's own families.

mod binary;
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

fn config(ok: u16, slow: u16) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: frontend, namespace: shop}}
spec:
  admin: {{address: \"127.0.0.1:0\"}}
  workload: {{labels: {{app: frontend, version: v7}}}}
  listeners:
  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ok, namespace: shop}}
spec:
  hosts: [ok.shop.svc.cluster.local]
  ports: [{{number: 80, name: http}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {ok}}}, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: slow, namespace: shop}}
spec:
  hosts: [slow.shop.svc.cluster.local]
  ports: [{{number: 80, name: http}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {slow}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ok, namespace: shop}}
spec:
  host: ok
  subsets: [{{name: v1, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: slow, namespace: shop}}
spec:
  host: slow
  trafficPolicy:
    connectionPool: {{http: {{http2MaxRequests: 1}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ok, namespace: shop}}
spec:
  hosts: [ok]
  http:
  - match: [{{uri: {{prefix: /fault}}}}]
    fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: ok, subset: v1}}}}]
  - route: [{{destination: {{host: ok, subset: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: slow, namespace: shop}}
spec:
  hosts: [slow]
  http:
  - match: [{{uri: {{prefix: /timeout}}}}]
    timeout: 100ms
    route: [{{destination: {{host: slow}}}}]
  - route: [{{destination: {{host: slow}}}}]
"
    )
}

/// Sample values by (destination_service_name, response_code, response_flags).
type Counts = HashMap<(String, String, String), f64>;
/// One sample's labels.
type Labels = HashMap<String, String>;

/// `istio_requests_total` samples keyed by (destination_service_name, response_code,
/// response_flags), with every label of one sample for the label checks.
fn requests_total(text: &str) -> (Counts, Vec<Labels>) {
    let mut out = HashMap::new();
    let mut all = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
    {
        let (labels, value) = line.rsplit_once(' ').unwrap();
        let labels = &labels["istio_requests_total{".len()..labels.len() - 1];
        let mut m = HashMap::new();
        for kv in labels.split("\",") {
            let (k, v) = kv.split_once("=\"").unwrap();
            m.insert(k.to_string(), v.trim_end_matches('"').to_string());
        }
        out.insert(
            (
                m["destination_service_name"].clone(),
                m["response_code"].clone(),
                m["response_flags"].clone(),
            ),
            value.parse::<f64>().unwrap(),
        );
        all.push(m);
    }
    (out, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_mix_is_counted_exactly() {
    let ok = common::upstream("ok").await;
    let slow = common::upstream("slow").await;
    let p = binary::run(
        &config(ok.addr.port(), slow.addr.port()),
        &["--workers", "1"],
    );
    let out = p.addr("outbound");
    let admin = p.addr("admin");
    let send = |host: &'static str,
                path: &'static str,
                headers: &'static [(&'static str, &'static str)]| async move {
        common::send(out, "GET", host, path, headers, bytes::Bytes::new(), false)
            .await
            .status
    };
    for _ in 0..3 {
        assert_eq!(send("ok", "/", &[]).await, 200);
    }
    for _ in 0..2 {
        assert_eq!(send("nowhere.example", "/", &[]).await, 502);
    }
    assert_eq!(send("ok", "/fault", &[]).await, 418);
    assert_eq!(
        send("slow", "/timeout", &[("x-test-delay-ms", "1000")]).await,
        504
    );
    // One slow request holds the only http2MaxRequests slot; the next overflows.
    let held = tokio::spawn(send("slow", "/", &[("x-test-delay-ms", "600")]));
    let deadline = Instant::now() + Duration::from_secs(5);
    while slow.count() < 2 {
        assert!(Instant::now() < deadline, "the slow request did not arrive");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(send("slow", "/", &[]).await, 503);
    assert_eq!(held.await.unwrap(), 200);

    // The slow request's completion is recorded when its body ends; poll until it shows.
    let mut text = String::new();
    for _ in 0..200 {
        text = common::metrics_text(admin).await;
        if requests_total(&text)
            .0
            .get(&("slow".into(), "200".into(), "-".into()))
            == Some(&1.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (counts, samples) = requests_total(&text);
    let expect: [(&str, &str, &str, f64); 6] = [
        ("ok", "200", "-", 3.0),
        ("BlackHoleCluster", "502", "-", 2.0),
        ("ok", "418", "FI", 1.0),
        ("slow", "504", "UT", 1.0),
        ("slow", "503", "UO", 1.0),
        ("slow", "200", "-", 1.0),
    ];
    for (svc, code, flags, n) in expect {
        assert_eq!(
            counts.get(&(svc.into(), code.into(), flags.into())),
            Some(&n),
            "{svc} {code} {flags} in\n{counts:#?}"
        );
    }
    assert_eq!(counts.len(), expect.len(), "no other series: {counts:#?}");

    let ok200 = samples
        .iter()
        .find(|m| m["destination_service_name"] == "ok" && m["response_code"] == "200")
        .unwrap();
    let want = [
        ("reporter", "source"),
        ("source_workload", "frontend"),
        ("source_workload_namespace", "shop"),
        ("source_app", "frontend"),
        ("source_version", "v7"),
        ("source_canonical_service", "frontend"),
        ("source_canonical_revision", "v7"),
        ("destination_service", "ok.shop.svc.cluster.local"),
        ("destination_service_name", "ok"),
        ("destination_service_namespace", "shop"),
        ("destination_version", "v1"),
        ("request_protocol", "http"),
        ("grpc_response_status", ""),
        ("connection_security_policy", "unknown"),
    ];
    for (k, v) in want {
        assert_eq!(ok200.get(k).map(String::as_str), Some(v), "label {k}");
    }

    // Envoy's default buckets, in milliseconds.
    for le in [
        "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000",
        "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf",
    ] {
        assert!(
            text.contains(&format!("le=\"{le}\""))
                && text.contains("istio_request_duration_milliseconds_bucket{"),
            "bucket {le} missing"
        );
    }
    assert!(text.contains("istio_build{component=\"proxy\""));
    assert!(text.contains("meshproxy_cluster_overflows_total{cluster=\"outbound|80||slow.shop.svc.cluster.local\",limit=\"max_requests\"} 1"), "{text}");
    // Every metric the Grafana dashboard queries is exported.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/meshproxy-istio-dashboard.json"
    ))
    .unwrap();
    let mut names: Vec<String> = Vec::new();
    for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("istio_") || word.starts_with("meshproxy_") {
            names.push(word.trim_end_matches("_bucket").to_string());
        }
    }
    assert!(names.len() >= 5, "{names:?}");
    for n in names {
        assert!(
            text.contains(&format!("# TYPE {n} ")),
            "the dashboard uses {n}, which /metrics lacks"
        );
    }
    for family in [
        "meshproxy_cluster_connections_active",
        "meshproxy_cluster_requests_pending",
        "meshproxy_outlier_ejections_total",
        "meshproxy_config_version_info",
        "meshproxy_config_reloads_total",
        "meshproxy_process_resident_memory_bytes",
        "meshproxy_process_open_fds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_headers_pass_untouched() {
    let ok = common::upstream("ok").await;
    let p = common::proxy(&common::service(
        "ok.default.svc.cluster.local",
        &[(ok.addr.port(), "app: ok")],
    ));
    let headers = [
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-b3-sampled", "1"),
        ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        ("x-request-id", "keep-me"),
    ];
    let r = common::get(&p, "ok", "/", &headers).await;
    assert_eq!(r.status, 200);
    let seen = ok.last_headers();
    for (k, v) in headers {
        assert_eq!(seen.get(k).and_then(|h| h.to_str().ok()), Some(v), "{k}");
    }
}
