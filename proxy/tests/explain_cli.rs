//! End-to-end: `meshproxy explain` and `meshproxy test` run as processes, on the bookinfo
//! example and on `tests/explain/config` (one rule per kind of outcome).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn here(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn bookinfo() -> PathBuf {
    here("../examples/bookinfo")
}

fn shop() -> PathBuf {
    here("tests/explain/config")
}

/// Runs the binary; returns the exit code and stdout.
fn run(args: &[&str], config: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshproxy"))
        .arg(args[0])
        .arg("-c")
        .arg(config)
        .args(&args[1..])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

fn json(args: &[&str], config: &Path) -> Value {
    let mut all = vec!["explain", "--json"];
    all.extend_from_slice(args);
    let (code, out) = run(&all, config);
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn contains_all(out: &str, lines: &[&str]) {
    for l in lines {
        assert!(out.contains(l), "missing {l:?} in\n{out}");
    }
}

#[test]
fn explain_text_shows_the_rules_tried_and_why() {
    let (code, out) = run(&["explain", "http://reviews:9080/reviews/0"], &bookinfo());
    assert_eq!(code, 0, "{out}");
    contains_all(
        &out,
        &[
            "listener      outbound (outbound, 127.0.0.1:15001), route table mesh",
            "virtual host  VirtualService/default/reviews (domains: reviews.default.svc.cluster.local",
            "[0] \"jason\" VirtualService/default/reviews#http[0]: no match",
            "FAIL headers[end-user] exact \"jason\" (request: \"(absent)\")",
            "[1] \"split\" VirtualService/default/reviews#http[1]: MATCH",
            "route         \"split\" VirtualService/default/reviews#http[1]",
            "50%  weight 50 reviews.default.svc.cluster.local subset v1 port 9080 -> outbound|9080|v1|reviews.default.svc.cluster.local",
            "50%  weight 50 reviews.default.svc.cluster.local subset v3 port 9080 -> outbound|9080|v3|reviews.default.svc.cluster.local",
            "retries       attempts 2, retryOn connect-failure,",
            "outcome       forwarded to one of outbound|9080|v1|reviews.default.svc.cluster.local, outbound|9080|v3|reviews.default.svc.cluster.local (by weight)",
        ],
    );
    let (code, out) = run(
        &[
            "explain",
            "-H",
            "end-user: jason",
            "http://ratings:9080/ratings/0",
        ],
        &bookinfo(),
    );
    assert_eq!(code, 0, "{out}");
    contains_all(
        &out,
        &[
            "ok   headers[end-user] exact \"jason\" (request: \"jason\")",
            "fault         delay 7s for 100%",
            "outlierDetection consecutive5xxErrors 1,",
            "connectionPool maxConnections 1,",
            "outcome       forwarded to outbound|9080|v1|ratings.default.svc.cluster.local; fault injection delays 100% of requests by 7s (flag DI)",
        ],
    );
    // Where each block came from: the ratings rule's top-level trafficPolicy, or the
    // default where it sets nothing.
    let origin = |block: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(block))
            .and_then(|l| l.rsplit_once("  ["))
            .map(|(_, from)| from.trim_end_matches(']').to_string())
    };
    assert_eq!(
        origin("outlierDetection").as_deref(),
        Some("top level"),
        "{out}"
    );
    assert_eq!(
        origin("connectionPool").as_deref(),
        Some("top level"),
        "{out}"
    );
    assert_eq!(origin("loadBalancer").as_deref(), Some("default"), "{out}");
}

#[test]
fn explain_json_has_the_decision_path() {
    let d = json(
        &["-H", "end-user: jason", "http://reviews:9080/r"],
        &bookinfo(),
    );
    assert_eq!(d["listener"]["name"], "outbound");
    assert_eq!(d["virtual_host"]["name"], "VirtualService/default/reviews");
    let cond = &d["rules"][0]["matches"][0]["conditions"][0];
    assert_eq!(cond["field"], "headers[end-user]");
    assert_eq!(cond["ok"], true);
    assert_eq!(d["route"]["virtual_service"], "default/reviews");
    assert_eq!(d["route"]["rule_index"], 0);
    let dest = &d["route"]["action"]["destinations"][0];
    assert_eq!(d["route"]["action"]["kind"], "forward");
    assert_eq!(dest["subset"], "v2");
    assert_eq!(dest["port"], 9080);
    assert_eq!(
        dest["cluster"],
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    );
    assert_eq!(dest["policy"]["load_balancer"], "LEAST_REQUEST");
    // No DestinationRule block sets the reviews policy: every block is Istio's default.
    assert_eq!(dest["policy"]["from"]["load_balancer"], "default");
    assert_eq!(dest["policy"]["from"]["connection_pool"], "default");
    assert_eq!(d["outcome"]["kind"], "forward");
    assert_eq!(
        d["outcome"]["clusters"][0],
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    );

    let split = json(&["http://reviews:9080/r"], &bookinfo());
    let rules = split["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 2, "rules up to the first that matched");
    assert_eq!(rules[0]["matched"], false);
    let dests = split["route"]["action"]["destinations"]
        .as_array()
        .expect("destinations");
    let w: Vec<(&str, u64)> = dests
        .iter()
        .map(|d| {
            (
                d["subset"].as_str().unwrap_or(""),
                d["weight"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(w, [("v1", 50), ("v3", 50)]);
}

#[test]
fn explain_local_replies_with_status_flag_and_location() {
    let unknown = json(&["http://nosuch.example/"], &bookinfo());
    assert_eq!(unknown["outcome"]["kind"], "local_reply");
    assert_eq!(unknown["outcome"]["status"], 502);
    assert_eq!(unknown["outcome"]["clusters"][0], "BlackHoleCluster");

    let no_route = json(&["-X", "POST", "http://web/api/v1/items"], &shop());
    assert_eq!(no_route["outcome"]["status"], 404);
    assert_eq!(no_route["outcome"]["flag"], "NR");
    let api = &no_route["rules"][3]["matches"][0]["conditions"];
    assert_eq!(api[0]["field"], "uri");
    assert_eq!(api[0]["ok"], true);
    assert_eq!(api[1]["field"], "method");
    assert_eq!(api[1]["ok"], false, "the method is why the api rule fails");
    assert_eq!(api[1]["actual"], "POST");

    let moved = json(&["http://web/old/page?x=1"], &shop());
    assert_eq!(moved["outcome"]["status"], 301);
    assert_eq!(moved["outcome"]["location"], "http://web/new?x=1");

    let abort = json(&["http://web/broken"], &shop());
    assert_eq!(abort["outcome"]["status"], 503);
    assert_eq!(abort["outcome"]["flag"], "FI");

    let health = json(&["http://web/health"], &shop());
    assert_eq!(health["route"]["action"]["kind"], "direct_response");
    assert_eq!(health["outcome"]["status"], 200);
}

#[test]
fn explain_shows_rewrites_and_header_edits() {
    let (code, out) = run(&["explain", "http://web/api/v1/items?page=2"], &shop());
    assert_eq!(code, 0, "{out}");
    contains_all(
        &out,
        &[
            "timeout       3s",
            "retries       attempts 3, retryOn 5xx, perTryTimeout 1s",
            "rewrite       uri \"/v1\"",
            "headers       request set x-route: api",
            "headers       response remove x-internal",
            "loadBalancer ROUND_ROBIN",
            "upstream request /v1/items?page=2 (authority web)",
        ],
    );
}

#[test]
fn explain_refuses_bad_input_clearly() {
    let (code, out) = run(&["explain", "reviews/no-scheme"], &bookinfo());
    assert_eq!(code, 1);
    assert!(out.contains("url \"reviews/no-scheme\""), "{out}");
    let (code, out) = run(
        &["explain", "--listener", "nope", "http://reviews/"],
        &bookinfo(),
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("no listener \"nope\" (listeners: outbound, inbound)"),
        "{out}"
    );
    let (code, out) = run(
        &[
            "explain",
            "--listener",
            "inbound",
            "--source-address",
            "ten",
            "http://reviews/",
        ],
        &bookinfo(),
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("source address \"ten\" is not an IP address"),
        "{out}"
    );
    let (code, out) = run(
        &["explain", "--gateway", "bookinfo-gateway", "http://x/"],
        &bookinfo(),
    );
    assert_eq!(
        code, 1,
        "the bookinfo Gateway selects ingress gateways, not this sidecar"
    );
    assert!(
        out.contains("no listener serves Gateway \"bookinfo-gateway\""),
        "{out}"
    );
    let (code, out) = run(
        &["explain", "--proxy", "ratings", "http://reviews/"],
        &bookinfo(),
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("the config's Proxy is \"productpage\""),
        "{out}"
    );
    let (code, out) = run(
        &["explain", "-H", "no colon", "http://reviews/"],
        &bookinfo(),
    );
    assert_eq!(code, 1);
    assert!(out.contains("expected 'name: value'"), "{out}");
}

#[test]
fn the_bookinfo_tests_pass() {
    let tests = here("../examples/bookinfo/tests.yaml");
    let (code, out) = run(&["test", tests.to_str().expect("utf-8")], &bookinfo());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("6 passed, 0 failed"), "{out}");
}

#[test]
fn every_expectation_kind_passes_when_it_holds() {
    let tests = here("tests/explain/pass.yaml");
    let (code, out) = run(&["test", tests.to_str().expect("utf-8")], &shop());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("23 passed, 0 failed"), "{out}");
}

#[test]
fn every_expectation_kind_fails_with_a_diff_when_it_does_not() {
    let tests = here("tests/explain/fail.yaml");
    let (code, out) = run(&["test", tests.to_str().expect("utf-8")], &shop());
    assert_eq!(code, 1, "{out}");
    contains_all(
        &out,
        &[
            "FAIL  destination\n      destination.subset: expected \"v1\", got \"v2\"\n      destination.port: expected 8080, got 80",
            "destination: the route splits over 2 destinations (v1 80%, v2 20%); check it with expect.weights",
            "weights: expected {v1: 50, v2: 50}, got {v1: 80, v2: 20} (percent of requests)",
            "status: expected a local reply 404, got: forwarded to outbound|80|v2|web.default.svc.cluster.local",
            "location: expected \"https://web/new\", got \"http://web/new\"",
            "route: expected \"web#canary\", got VirtualService/default/web#http[3] (rule \"api\")",
            "rewrite.uri: expected \"/api/v1/items\", got \"/v1/items\"",
            "requestHeaders[x-route] to v2: expected \"client\", got \"api\"",
            "responseHeaders[x-internal] to v2: expected \"gone\", got (absent)",
            "responseHeaders[x-served-by] to v2: expected \"web\", got \"api\"",
            "FAIL  a bad request\n      request: url \"web/no-scheme\"",
            "authz: expected allow, got deny (default/deny-admin)",
            "authz: expected allow, but listener outbound is not INBOUND",
            "0 passed, 12 failed",
        ],
    );
}

#[test]
fn unknown_expectations_are_an_error_not_a_pass() {
    let dir = std::env::temp_dir().join(format!("meshproxy-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("typo.yaml");
    std::fs::write(
        &file,
        "tests:\n- name: typo\n  request: {url: \"http://reviews/\"}\n  expect: {destinaton: {subset: v2}}\n",
    )
    .expect("write");
    let (code, out) = run(&["test", file.to_str().expect("utf-8")], &bookinfo());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unknown field `destinaton`"), "{out}");
    assert!(
        out.contains("typo.yaml"),
        "the message names the file: {out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_on_a_gateway_listener() {
    let gw = here("tests/explain/gateway");
    let routed = json(
        &[
            "--gateway",
            "shop-gateway",
            "http://shop.example.com:8080/cart/1",
        ],
        &gw,
    );
    assert_eq!(routed["listener"]["role"], "gateway");
    assert_eq!(routed["listener"]["route_table"], "gateway:8080");
    assert_eq!(
        routed["outcome"]["clusters"][0],
        "outbound|80||web.default.svc.cluster.local"
    );
    // The gateway forwards with `use_remote_address`: the client is appended.
    let dest = &routed["route"]["action"]["destinations"][0];
    assert_eq!(dest["upstream"]["headers"]["x-forwarded-for"], "127.0.0.1");

    // The URL's port picks the listener; the Host header names the virtual host, and
    // without a port the request's port is the listener's.
    let other = json(
        &[
            "--gateway",
            "default/shop-gateway",
            "-H",
            "Host: shop.example.com",
            "http://127.0.0.1:8080/other",
        ],
        &gw,
    );
    assert_eq!(other["request"]["port"], 8080);
    assert_eq!(other["outcome"]["status"], 404);
    assert_eq!(other["outcome"]["flag"], "NR");

    let redirect = json(
        &[
            "--gateway",
            "shop-gateway",
            "http://shop.example.com:8081/cart/1?x=1",
        ],
        &gw,
    );
    assert_eq!(redirect["outcome"]["status"], 301);
    assert_eq!(
        redirect["outcome"]["location"],
        "https://shop.example.com/cart/1?x=1"
    );
    assert_eq!(
        redirect["https_redirect"],
        "https://shop.example.com/cart/1?x=1"
    );

    let (code, out) = run(&["explain", "http://web/"], &gw);
    assert_eq!(code, 1);
    assert!(out.contains("no OUTBOUND HTTP listener"), "{out}");
}

#[test]
fn explain_authorization_on_the_inbound_listener() {
    let (code, out) = run(
        &[
            "explain",
            "--listener",
            "inbound",
            "--principal",
            "spiffe://cluster.local/ns/default/sa/web",
            "http://shop:8080/admin/users",
        ],
        &shop(),
    );
    assert_eq!(code, 0, "{out}");
    contains_all(
        &out,
        &[
            "listener      inbound (inbound, 127.0.0.1:15006)",
            "peer          peer spiffe://cluster.local/ns/default/sa/web (mTLS) from 127.0.0.1",
            "authorization DENY (default/deny-admin)",
            "outcome       denied by AuthorizationPolicy (default/deny-admin): 403 RBAC: access denied",
        ],
    );
    let allowed = json(
        &[
            "--listener",
            "inbound",
            "--principal",
            "cluster.local/ns/default/sa/ops",
            "-X",
            "POST",
            "http://shop:8080/items",
        ],
        &shop(),
    );
    assert_eq!(allowed["authorization"]["decision"], "allow");
    assert_eq!(
        allowed["authorization"]["principal"],
        "spiffe://cluster.local/ns/default/sa/ops"
    );
    assert_eq!(allowed["outcome"]["clusters"][0], "inbound|8080||");
    let plaintext_write = json(
        &[
            "--listener",
            "inbound",
            "-X",
            "POST",
            "http://shop:8080/items",
        ],
        &shop(),
    );
    assert_eq!(
        plaintext_write["authorization"]["policy"],
        "no ALLOW policy matched"
    );
    assert_eq!(plaintext_write["outcome"]["status"], 403);
}

#[test]
fn test_on_the_demo_config_canary_a_b_and_fault() {
    // The embedded demo config: a canary split, an A/B route by header, a fault. Nothing
    // binds here, so its port placeholders only need to be valid numbers.
    let mut text = meshproxy::demo::CONFIG.to_string();
    for (k, v) in [
        ("PROXY_PORT", "15001"),
        ("REVIEWS_V1", "9101"),
        ("REVIEWS_V2", "9102"),
        ("REVIEWS_V3", "9103"),
        ("RATINGS_V1", "9104"),
    ] {
        text = text.replace(&format!("${{{k}}}"), v);
    }
    let dir = std::env::temp_dir().join(format!("meshproxy-explain-demo-{}", std::process::id()));
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("temp dir");
    std::fs::write(config.join("demo.yaml"), text).expect("write");
    let tests = dir.join("tests.yaml");
    std::fs::write(
        &tests,
        r#"tests:
- name: canary
  request: {url: "http://reviews:9080/"}
  expect: {route: "reviews#canary", weights: {v1: 80, v3: 20}}
- name: A/B by header
  request: {url: "http://reviews:9080/", headers: {end-user: jason}}
  expect: {route: "reviews#jason", destination: {host: reviews, subset: v2}}
- name: fault for the tester
  request: {url: "http://ratings:9080/", headers: {end-user: tester}}
  expect: {status: 503, route: "ratings#fault-for-tester"}
- name: a canary that is not the configured one
  request: {url: "http://reviews:9080/"}
  expect: {weights: {v1: 90, v3: 10}}
"#,
    )
    .expect("write");
    let (code, out) = run(&["test", tests.to_str().expect("utf-8")], &config);
    assert_eq!(code, 1, "{out}");
    contains_all(
        &out,
        &[
            "PASS  canary",
            "PASS  A/B by header",
            "PASS  fault for the tester",
            "FAIL  a canary that is not the configured one\n      weights: expected {v1: 90, v3: 10}, got {v1: 80, v3: 20} (percent of requests)",
            "3 passed, 1 failed",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_as_another_workload_with_source_labels() {
    let mesh = here("tests/explain/source-labels");
    // As the config's own workload (app: web), the sourceLabels rule is not its route.
    let d = json(&["http://api/items"], &mesh);
    assert_eq!(d["workload"]["labels"]["app"], "web");
    assert_eq!(d["route"]["name"], "everyone");
    assert_eq!(
        d["outcome"]["clusters"][0],
        "outbound|80|v1|api.default.svc.cluster.local"
    );
    // As app=canary-client's sidecar, it is.
    let d = json(
        &[
            "--source-labels",
            "app=canary-client,tier=edge",
            "http://api/items",
        ],
        &mesh,
    );
    assert_eq!(d["workload"]["labels"]["app"], "canary-client");
    assert_eq!(d["workload"]["labels"]["tier"], "edge");
    assert_eq!(d["route"]["name"], "canary-clients");
    assert_eq!(
        d["outcome"]["clusters"][0],
        "outbound|80|v2|api.default.svc.cluster.local"
    );
    let (code, out) = run(
        &[
            "explain",
            "--source-labels",
            "app=canary-client",
            "http://api/items",
        ],
        &mesh,
    );
    assert_eq!(code, 0, "{out}");
    contains_all(
        &out,
        &[
            "workload      default/web-sidecar labels {app=canary-client}",
            "route         \"canary-clients\"",
        ],
    );
    let (code, out) = run(
        &["explain", "--source-labels", "app", "http://api/items"],
        &mesh,
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("--source-labels: \"app\" is not key=value"),
        "{out}"
    );
}
