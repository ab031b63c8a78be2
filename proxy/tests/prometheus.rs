//! End to end with a real Prometheus server: it scrapes the admin port of `meshproxy run`
//! and a PromQL query over Istio's metric returns the expected series; `promtool check
//! metrics` parses the exposition.
//!
//! Needs the Debian `prometheus` package (`.ci/run` installs it); without it the test
//! says so and skips.

mod binary;
mod common;

use common::prometheus::{have, Prometheus};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    common::send(
        addr,
        "GET",
        &addr.to_string(),
        path,
        &[],
        bytes::Bytes::new(),
        false,
    )
    .await
    .body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_and_queries_istio_metrics() {
    if !have("prometheus") || !have("promtool") {
        eprintln!(
            "SKIPPED: prometheus/promtool not installed (apt-get install prometheus; .ci/run does)"
        );
        return;
    }
    let ok = common::upstream("ok").await;
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: web}}\nspec:\n  admin: {{address: \"127.0.0.1:0\"}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n---\n{}",
        common::service("ok.default.svc.cluster.local", &[(ok.addr.port(), "app: ok")])
    );
    let p = binary::run(&yaml, &["--workers", "1", "--access-log", "off"]);
    let admin = p.addr("admin");
    let out = p.addr("outbound");
    for _ in 0..20 {
        assert_eq!(common::get_at(out, "ok").await, 200);
    }

    // promtool parses the exposition; its only lint complaint may be Istio's own metric
    // name istio_request_duration_milliseconds (not in base units), which dashboards need.
    let text = http_get(admin, "/metrics").await;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let unexpected: Vec<&str> = complaints
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("istio_request_duration_milliseconds use base unit"))
        .collect();
    assert!(
        o.status.code() != Some(1),
        "promtool could not parse the exposition:\n{complaints}"
    );
    assert!(unexpected.is_empty(), "promtool complaints:\n{complaints}");

    // A real Prometheus scraping every second.
    let prom = Prometheus::start(admin).await;
    let prom_addr = prom.addr;
    let query = "/api/v1/query?query=sum(rate(istio_requests_total%7Bresponse_code%3D%22200%22%7D%5B1m%5D))";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let found = loop {
        // Keep traffic flowing so the rate is positive.
        for _ in 0..5 {
            common::get_at(out, "ok").await;
        }
        if let Ok(stream) = tokio::net::TcpStream::connect(prom_addr).await {
            drop(stream);
            last = http_get(prom_addr, query).await;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&last) {
                let value = v["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok());
                if v["status"] == "success" && value.is_some_and(|x| x > 0.0) {
                    break true;
                }
            }
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    drop(prom);
    assert!(
        found,
        "no positive rate from Prometheus; last answer: {last}"
    );
}
