//! Istio's `Telemetry` kind with real traffic: a workload-level resource overrides the
//! mesh-wide one (span reporting off for one sidecar of a chain, propagation kept), the
//! access log's CEL `filter.expression`, a metric turned off per side, and a hot reload
//! that changes the sampling without dropping anything.

mod binary;
mod common;
#[allow(dead_code)]
mod pyenv;
mod tracing_support;

use std::time::{Duration, Instant};
use tracing_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_override_beats_the_mesh_default() {
    let (port, spans) = zipkin_receiver().await;
    let reviews_quiet = "apiVersion: telemetry.istio.io/v1alpha1\nkind: Telemetry\nmetadata: {name: reviews-quiet, namespace: default}\nspec:\n  selector: {matchLabels: {app: reviews}}\n  tracing: [{disableSpanReporting: true}]\n---\n";
    // A workload-level resource in another namespace does not apply.
    let elsewhere = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: ratings-off, namespace: other}\nspec:\n  selector: {matchLabels: {app: ratings}}\n  tracing: [{disableSpanReporting: true}]\n---\n";
    let telemetry = format!("{}{reviews_quiet}{elsewhere}", mesh_tracing(100.0));
    let chain = chain(&Export::zipkin(port), &telemetry).await;
    let r = get(chain.entry, "productpage:9080", &[]).await;
    assert_eq!(r.status, 200);
    let got = spans.wait_for(3).await;
    let trace = spans.trace(got[0]["trace_id"].as_str().unwrap());
    let services: Vec<&str> = trace
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(
        trace.len(),
        3,
        "productpage ×2 and ratings, not reviews: {services:?}"
    );
    assert!(
        !services.iter().any(|s| s.starts_with("reviews")),
        "{services:?}"
    );
    // reviews still propagated: ratings' parent is reviews' (unreported) CLIENT span.
    let ids: Vec<&str> = trace
        .iter()
        .map(|s| s["span_id"].as_str().unwrap())
        .collect();
    let ratings = trace
        .iter()
        .find(|s| s["service"] == "ratings.default")
        .unwrap();
    let parent = ratings["parent_span_id"].as_str().unwrap();
    assert!(!parent.is_empty() && !ids.contains(&parent), "{trace:#?}");
}

fn proxy_with(spec: &str, docs: &str, upstream: &common::Upstream) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: web, namespace: default}}\nspec:\n  admin: {{address: \"127.0.0.1:0\"}}\n  workload: {{labels: {{app: web}}}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n{spec}---\n{}{docs}",
        common::service("ok", &[(upstream.addr.port(), "app: ok")])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_filter_and_a_disabled_metric() {
    let ok = common::upstream("ok").await;
    let telemetry = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\nspec:\n  accessLogging:\n  - filter: {expression: \"response.code >= 400\"}\n  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT, mode: CLIENT}\n      disabled: true\n";
    let p = binary::run(&proxy_with("", telemetry, &ok), &[]);
    let out = p.addr("outbound");
    for (path, want) in [("/", 200), ("/missing", 200)] {
        let r = common::send(out, "GET", "ok", path, &[], Default::default(), false).await;
        assert_eq!(r.status, want);
    }
    let r = common::send(
        out,
        "GET",
        "nowhere.example",
        "/denied",
        &[],
        Default::default(),
        false,
    )
    .await;
    assert_eq!(r.status, 502);
    // Only the 502 is logged: the line shows its path, and no line precedes it.
    let line = p
        .stdout
        .recv_timeout(Duration::from_secs(10))
        .expect("the filtered request's line");
    assert!(line.contains("/denied") && line.contains(" 502 "), "{line}");
    assert!(p.stdout.try_recv().is_err());
    // REQUEST_COUNT is off for the CLIENT side; the duration histogram stays.
    let admin = p.addr("admin");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = common::metrics_text(admin).await;
    while !text.contains("istio_request_duration_milliseconds_count{") && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        text = common::metrics_text(admin).await;
    }
    assert!(
        text.contains("istio_request_duration_milliseconds_count{"),
        "{text}"
    );
    assert!(!text.contains("istio_requests_total{"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_sampling_without_dropping_requests() {
    let (port, spans) = zipkin_receiver().await;
    let ok = common::upstream("ok").await;
    let (provider, collector) = (ZIPKIN_PROVIDER, zipkin_collector(port));
    let doc = |pct: u32| {
        let tracing = format!("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: mesh-default, namespace: istio-system}}\nspec:\n  tracing: [{{providers: [{{name: zipkin}}], randomSamplingPercentage: {pct}}}]\n");
        proxy_with(provider, &format!("{collector}{tracing}"), &ok)
    };
    let p = binary::run(&doc(0), &["--access-log", "off"]);
    let out = p.addr("outbound");
    let send = || common::send(out, "GET", "ok", "/", &[], Default::default(), false);
    for _ in 0..20 {
        assert_eq!(send().await.status, 200);
    }
    std::fs::write(p.dir.join("config.yaml"), doc(100)).unwrap();
    p.wait_log("config reloaded", Duration::from_secs(20))
        .expect("the reload is applied");
    for _ in 0..20 {
        assert_eq!(send().await.status, 200);
    }
    let got = spans.wait_for(20).await;
    assert_eq!(
        got.len(),
        20,
        "0 % before the reload, 100 % after: {got:#?}"
    );
    assert!(got.iter().all(|s| s["kind"] == "SPAN_KIND_CLIENT"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_tags_from_literals_the_environment_and_headers() {
    let (port, spans) = zipkin_receiver().await;
    let ok = common::upstream("ok").await;
    let (provider, collector) = (ZIPKIN_PROVIDER, zipkin_collector(port));
    let telemetry = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\nspec:\n  tracing:\n  - providers: [{name: zipkin}]\n    randomSamplingPercentage: 100\n    customTags:\n      team: {literal: {value: checkout}}\n      region: {environment: {name: MESHPROXY_TEST_SURELY_UNSET, defaultValue: eu-west}}\n      user: {header: {name: x-user, defaultValue: anonymous}}\n";
    let p = binary::run(
        &proxy_with(provider, &format!("{collector}{telemetry}"), &ok),
        &["--access-log", "off"],
    );
    let out = p.addr("outbound");
    let r = get(out, "ok", &[("x-user", "jason")]).await;
    assert_eq!(r.status, 200);
    let r = get(out, "ok", &[]).await;
    assert_eq!(r.status, 200);
    let got = spans.wait_for(2).await;
    assert_eq!(got.len(), 2, "{got:#?}");
    let mut users: Vec<&str> = got
        .iter()
        .map(|s| s["attributes"]["user"].as_str().unwrap_or(""))
        .collect();
    users.sort();
    assert_eq!(users, ["anonymous", "jason"]);
    for s in &got {
        assert_eq!(s["attributes"]["team"], "checkout");
        assert_eq!(s["attributes"]["region"], "eu-west");
        assert_eq!(s["attributes"]["http.url"], "http://ok/");
    }
}
