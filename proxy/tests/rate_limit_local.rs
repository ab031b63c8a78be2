//! End to end: Local RateLimitPolicy rules on a running proxy — Envoy's token bucket per
//! proxy (two workers share it), Distinct header values counted apart, shadow rules
//! that refuse nothing, Envoy's 429 with its headers and the `RL` flag, the metrics, and
//! bucket state kept by a reload for unchanged rules.

mod binary;
mod common;
mod ratelimit;

use ratelimit::{ok_service, outbound_proxy, paced, policy, rule_counter, run_quiet};
use std::time::Duration;

fn config(upstream: u16, spec: &str) -> String {
    format!(
        "{}{}{}",
        outbound_proxy("test", ""),
        ok_service(upstream),
        policy("api", spec)
    )
}

/// A counter of the policy's first rule.
async fn counter(admin: std::net::SocketAddr, name: &str) -> u64 {
    rule_counter(admin, name, "default/api", 0).await
}

/// The acceptance: a 100 req/s limit, a client sending 300 req/s for 10 s. The
/// bucket starts full (Envoy's `max_tokens`), so the first second lets its 100 tokens
/// through on top of the refill: 100 + 10 s × 100/s = 1,100, and over the last 9 s,
/// the refill alone: 900. Two workers share the bucket: per worker it would be twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_limit_holds_per_proxy_under_three_times_the_load() {
    let ok = common::upstream("ok").await;
    let yaml = config(
        ok.addr.port(),
        "  rules:\n  - limit: {requests: 100, unit: Second}\n",
    );
    let p = run_quiet(&yaml, "2");
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let out = paced(
        p.addr("outbound"),
        "ok",
        &[],
        300,
        Duration::from_secs(10),
        start,
    )
    .await;
    let (through, limited) = (out.through(), out.count(429, 0.0, 100.0));
    assert_eq!(through + limited, 3000, "every request answered 200 or 429");
    // The tokens of the whole run: the full bucket plus the refill until the last send
    // (10 s when the client kept its pace; a busy machine may stretch it a little).
    let span = out.last_sent();
    let expected = 100.0 + 100.0 * span;
    assert!(
        (through as f64 - expected).abs() <= expected * 0.05,
        "through {through} in {span:.2} s, expected {expected:.0} ± 5 %"
    );
    let steady = out.count(200, 1.0, 100.0) as f64;
    let refill = 100.0 * (span - 1.0);
    assert!(
        (steady - refill).abs() <= refill * 0.05,
        "through after the first second {steady}, expected {refill:.0} ± 5 %"
    );
    let admin = p.addr("admin");
    assert_eq!(counter(admin, "allowed").await, through as u64);
    assert_eq!(counter(admin, "limited").await, limited as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_is_envoys_429_with_the_quota_headers_and_the_rl_flag() {
    let ok = common::upstream("ok").await;
    let yaml = config(
        ok.addr.port(),
        "  rules:\n  - limit: {requests: 2, unit: Minute}\n",
    );
    let p = binary::run(&yaml, &["--workers", "1"]);
    let out = p.addr("outbound");
    let get = || common::send(out, "GET", "ok", "/", &[], bytes::Bytes::new(), false);
    assert_eq!(get().await.status, 200);
    assert_eq!(get().await.status, 200);
    let r = get().await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body, "local_rate_limited");
    assert_eq!(r.header("x-envoy-ratelimited"), "true");
    assert_eq!(r.header("x-ratelimit-limit"), "2, 2;w=60");
    assert_eq!(r.header("x-ratelimit-remaining"), "0");
    let reset: u64 = r.header("x-ratelimit-reset").parse().expect("a reset");
    assert!((1..=60).contains(&reset), "reset {reset}");
    assert_eq!(ok.count(), 2, "the refused request was not forwarded");
    // The access log line of the refusal: 429 with flag RL.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = p
            .stdout
            .recv_timeout(left)
            .expect("the 429's access log line");
        if line.contains(" 429 ") {
            assert!(line.contains(" RL "), "{line}");
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_distinct_header_value_has_its_own_limit() {
    let ok = common::upstream("ok").await;
    let yaml = config(
        ok.addr.port(),
        "  rules:\n  - clientSelectors: [{headers: [{name: x-user, type: Distinct}]}]\n    limit: {requests: 5, unit: Minute}\n",
    );
    let p = run_quiet(&yaml, "2");
    let out = p.addr("outbound");
    let mut passed = std::collections::BTreeMap::new();
    for user in ["ann", "bob", "cyd"] {
        for _ in 0..8 {
            let r = common::send(
                out,
                "GET",
                "ok",
                "/",
                &[("x-user", user)],
                bytes::Bytes::new(),
                false,
            )
            .await;
            if r.status == 200 {
                *passed.entry(user).or_insert(0) += 1;
            }
        }
    }
    assert_eq!(
        passed.into_iter().collect::<Vec<_>>(),
        [("ann", 5), ("bob", 5), ("cyd", 5)]
    );
    // Without the header the rule does not apply (Envoy builds no descriptor).
    for _ in 0..10 {
        assert_eq!(common::get_at(out, "ok").await, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_rule_refuses_nothing_and_counts_what_it_would_have() {
    let ok = common::upstream("ok").await;
    let yaml = config(
        ok.addr.port(),
        "  rules:\n  - limit: {requests: 5, unit: Minute}\n    shadow: true\n",
    );
    let p = run_quiet(&yaml, "1");
    for _ in 0..20 {
        assert_eq!(common::get_at(p.addr("outbound"), "ok").await, 200);
    }
    let admin = p.addr("admin");
    assert_eq!(counter(admin, "shadow_limited").await, 15);
    assert_eq!(counter(admin, "allowed").await, 5);
    assert_eq!(counter(admin, "limited").await, 0);
}

/// Match, hosts and the reload: a rule counts only its route's requests, and a reload
/// keeps an unchanged rule's bucket (still empty) while a changed rule starts full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_buckets_of_unchanged_rules() {
    let ok = common::upstream("ok").await;
    let policy = |second: u32| {
        format!(
            "  hosts: [ok]\n  rules:\n  - match: [{{uri: {{prefix: /a}}}}]\n    limit: {{requests: 2, unit: Minute}}\n  - match: [{{uri: {{prefix: /b}}}}]\n    limit: {{requests: {second}, unit: Minute}}\n"
        )
    };
    let p = common::proxy(&config(ok.addr.port(), &policy(2)));
    let status = |path: &'static str| {
        let addr = p.addr;
        async move {
            common::send(addr, "GET", "ok", path, &[], bytes::Bytes::new(), false)
                .await
                .status
        }
    };
    for path in ["/a", "/a", "/b", "/b"] {
        assert_eq!(status(path).await, 200);
    }
    assert_eq!(status("/a").await, 429);
    assert_eq!(status("/b").await, 429);
    assert_eq!(status("/c").await, 200, "no rule matches /c");
    let next = meshproxy_config::compile::load_str("t.yaml", &config(ok.addr.port(), &policy(3)))
        .expect("config");
    p.server.apply(next).expect("reload");
    assert_eq!(
        status("/a").await,
        429,
        "rule 0 unchanged: its bucket is kept"
    );
    assert_eq!(
        status("/b").await,
        200,
        "rule 1 changed: a new, full bucket"
    );
}

/// The step runs on every HTTP listener role: INBOUND (after authorization) and a
/// Gateway (after routing), for the workload the policy's selector picks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_and_gateway_listeners_are_limited_for_the_selected_workload() {
    let app = common::upstream("app").await;
    let policy = |labels: &str| {
        format!("---\napiVersion: meshproxy.io/v1alpha1\nkind: RateLimitPolicy\nmetadata: {{name: rl, namespace: istio-system}}\nspec:\n  selector: {{matchLabels: {{{labels}}}}}\n  rules:\n  - limit: {{requests: 2, unit: Minute}}\n")
    };
    let inbound = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  workload: {{labels: {{app: reviews}}}}\n  listeners:\n  - {{name: inbound, address: \"127.0.0.1:0\", direction: INBOUND, forwardTo: \"{}\"}}\n",
        app.addr
    );
    let port = common::free_port();
    let gateway = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: ingress, namespace: default}}\nspec:\n  workload: {{labels: {{istio: ingressgateway}}}}\n  gatewayAddress: 127.0.0.1\n  listeners: []\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: public}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: http, protocol: HTTP}}\n    hosts: [\"shop.example.com\"]\n---\n{svc}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: shop}}\nspec:\n  hosts: [shop.example.com]\n  gateways: [public]\n  http:\n  - route: [{{destination: {{host: web.default.svc.cluster.local}}}}]\n",
        svc = common::service("web.default.svc.cluster.local", &[(app.addr.port(), "app: web")])
    );
    for (yaml, listener, host) in [
        (inbound, "inbound".to_string(), "reviews"),
        (
            gateway,
            format!("gateway-127.0.0.1:{port}"),
            "shop.example.com",
        ),
    ] {
        let labels = if host == "reviews" {
            "app: reviews"
        } else {
            "istio: ingressgateway"
        };
        let statuses = |s: &meshproxy::server::Server| {
            let addr = s.addr(&listener).expect("listener");
            async move {
                let mut out = Vec::new();
                for _ in 0..3 {
                    out.push(
                        common::send(addr, "GET", host, "/", &[], bytes::Bytes::new(), false)
                            .await
                            .status,
                    );
                }
                out
            }
        };
        let selected = common::proxy(&format!("{yaml}{}", policy(labels)));
        assert_eq!(
            statuses(&selected.server).await,
            [200, 200, 429],
            "{listener}"
        );
        // The Gateway port is fixed: the next proxy binds it once this one is gone.
        selected.server.shutdown();
        let other = common::proxy(&format!("{yaml}{}", policy("app: other")));
        assert_eq!(
            statuses(&other.server).await,
            [200, 200, 200],
            "{listener}: not selected"
        );
    }
}
