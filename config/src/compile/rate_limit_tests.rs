use super::*;
use crate::compile::load_str;
use http::{HeaderMap, HeaderValue};

const PROXY: &str = "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {name: api, namespace: default}\nspec:\n  workload: {labels: {app: api}}\n";

fn policy(body: &str) -> String {
    format!("{PROXY}---\napiVersion: meshproxy.io/v1alpha1\nkind: RateLimitPolicy\nmetadata: {{name: rl, namespace: default}}\nspec:\n{body}")
}

fn errors(yaml: &str) -> Vec<(String, String)> {
    match load_str("test.yaml", yaml) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .errors()
            .map(|e| (e.path.clone(), e.message.clone()))
            .collect(),
    }
}

fn view<'a>(path: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
    RequestView {
        method: "GET",
        scheme: "http",
        authority: "api.example.com",
        path,
        query: "",
        headers,
        port: 80,
    }
}

const CLIENT: Client<'static> = Client {
    ip: IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3)),
    principal: Some("cluster.local/ns/default/sa/web"),
};

#[test]
fn five_lines_make_a_local_limit() {
    let snap = load_str(
        "t.yaml",
        &policy("  rules:\n  - limit: {requests: 100, unit: Second}\n"),
    )
    .unwrap();
    let rl = &snap.rate_limits;
    assert_eq!(rl.policies.len(), 1);
    let p = &rl.policies[0];
    assert!(!p.global);
    assert_eq!(&*p.name, "default/rl");
    let r = &p.rules[0];
    assert_eq!(
        (r.requests, r.unit_secs, r.shadow, r.distinct),
        (100, 1, false, false)
    );
    let h = HeaderMap::new();
    assert!(r.applies(&view("/", &h), &CLIENT));
}

#[test]
fn selector_namespace_and_root_namespace_decide_who_is_limited() {
    let other = policy("  selector: {matchLabels: {app: other}}\n  rules:\n  - limit: {requests: 1, unit: Minute}\n");
    assert!(load_str("t.yaml", &other).unwrap().rate_limits.is_empty());
    let elsewhere = other.replace(
        "namespace: default}\nspec:\n  selector: {matchLabels: {app: other}}",
        "namespace: prod}\nspec:",
    );
    assert!(load_str("t.yaml", &elsewhere)
        .unwrap()
        .rate_limits
        .is_empty());
    let root = elsewhere.replace("namespace: prod}", "namespace: istio-system}");
    assert_eq!(
        load_str("t.yaml", &root)
            .unwrap()
            .rate_limits
            .policies
            .len(),
        1
    );
}

#[test]
fn match_and_client_selectors_all_hold() {
    let yaml = policy(
        "  type: Global\n  hosts: [\"*.example.com\"]\n  rules:\n  - match: [{uri: {prefix: /api}}]\n    clientSelectors:\n    - headers: [{name: x-user, type: Distinct}, {name: x-plan, value: free}]\n      sourceCIDR: {value: 10.0.0.0/8, type: Distinct}\n    - sourcePrincipals: [\"cluster.local/ns/default/*\"]\n    limit: {requests: 5, unit: Hour}\n    shadow: true\n",
    );
    let snap = load_str("t.yaml", &yaml).unwrap();
    let p = &snap.rate_limits.policies[0];
    assert!(p.global && p.for_host("api.example.com") && !p.for_host("example.com"));
    let r = &p.rules[0];
    assert!(r.distinct && r.shadow);
    let mut h = HeaderMap::new();
    h.insert("x-user", HeaderValue::from_static("ann"));
    h.insert("x-plan", HeaderValue::from_static("free"));
    assert!(r.applies(&view("/api/x", &h), &CLIENT));
    assert!(!r.applies(&view("/other", &h), &CLIENT));
    let outside = Client {
        ip: "192.168.0.1".parse().unwrap(),
        ..CLIENT
    };
    assert!(!r.applies(&view("/api", &h), &outside));
    let anonymous = Client {
        principal: None,
        ..CLIENT
    };
    assert!(!r.applies(&view("/api", &h), &anonymous));
    let mut key = Vec::new();
    r.distinct_key(&view("/api", &h), &CLIENT, &mut key);
    assert_eq!(key, b"ann\0\x0a\x01\x02\x03\0");
    h.remove("x-user");
    assert!(
        !r.applies(&view("/api", &h), &CLIENT),
        "Distinct needs the header"
    );
}

#[test]
fn bad_policies_are_refused_with_their_field() {
    let cases = [
        ("  rules: []\n", "spec.rules"),
        ("  rules:\n  - {}\n", "spec.rules[0].limit"),
        ("  rules:\n  - limit: {requests: 0, unit: Second}\n", "spec.rules[0].limit.requests"),
        ("  rules:\n  - limit: {requests: 1}\n", "spec.rules[0].limit.unit"),
        (
            "  rules:\n  - limit: {requests: 1, unit: Second}\n    clientSelectors: [{headers: [{name: x, value: a, type: Distinct}]}]\n",
            "spec.rules[0].clientSelectors[0].headers[0].value",
        ),
        (
            "  rules:\n  - limit: {requests: 1, unit: Second}\n    clientSelectors: [{headers: [{name: x, value: \"(\", type: RegularExpression}]}]\n",
            "spec.rules[0].clientSelectors[0].headers[0].value",
        ),
        (
            "  rules:\n  - limit: {requests: 1, unit: Second}\n    clientSelectors: [{sourceCIDR: {value: 10.0.0.0/33}}]\n",
            "spec.rules[0].clientSelectors[0].sourceCIDR.value",
        ),
        (
            "  rules:\n  - limit: {requests: 1, unit: Second}\n    clientSelectors: [{}]\n",
            "spec.rules[0].clientSelectors[0]",
        ),
        (
            "  rules:\n  - limit: {requests: 1, unit: Second}\n    match: [{uri: {regex: \"(\"}}]\n",
            "spec.rules[0].match[0].uri.regex",
        ),
        ("  hosts: [\"a.*\"]\n  rules:\n  - limit: {requests: 1, unit: Second}\n", "spec.hosts[0]"),
    ];
    for (body, path) in cases {
        let errs = errors(&policy(body));
        assert!(
            errs.iter().any(|(p, _)| p == path),
            "{body}: expected an error at {path}, got {errs:?}"
        );
    }
    // A typo is a parse error naming the field.
    let errs = errors(&policy(
        "  rules:\n  - limit: {requests: 1, unit: Second}\n    shadw: true\n",
    ));
    assert!(errs.iter().any(|(_, m)| m.contains("shadw")), "{errs:?}");
    let errs = errors(&policy(
        "  type: Globl\n  rules:\n  - limit: {requests: 1, unit: Second}\n",
    ));
    assert!(errs.iter().any(|(p, _)| p == "spec.type"), "{errs:?}");
}

#[test]
fn the_redis_backend_is_read_from_the_proxy() {
    let yaml = policy("  type: Global\n  rules:\n  - limit: {requests: 1, unit: Second}\n")
        .replace(
            "  workload: {labels: {app: api}}\n",
            "  workload: {labels: {app: api}}\n  rateLimit: {redis: {address: \"127.0.0.1:6379\", timeout: 50ms}, failureModeDeny: true}\n",
        );
    let snap = load_str("t.yaml", &yaml).unwrap();
    let rl = &snap.rate_limits;
    assert_eq!(
        rl.redis,
        Some(RedisSettings {
            address: "127.0.0.1:6379".into(),
            timeout: Duration::from_millis(50)
        })
    );
    assert!(rl.failure_mode_deny);
    let bad = yaml.replace("127.0.0.1:6379", "nowhere");
    let errs = errors(&bad);
    assert!(
        errs.iter()
            .any(|(p, _)| p == "spec.rateLimit.redis.address"),
        "{errs:?}"
    );
    // Global without Redis loads, with a warning.
    let no_redis = policy("  type: Global\n  rules:\n  - limit: {requests: 1, unit: Second}\n");
    let snap = load_str("t.yaml", &no_redis).unwrap();
    assert!(snap.warnings.warnings().any(|w| w.path == "spec.type"));
}

#[test]
fn an_unchanged_rule_keeps_its_fingerprint() {
    let a = policy("  rules:\n  - limit: {requests: 1, unit: Second}\n  - limit: {requests: 2, unit: Second}\n");
    let b = policy("  rules:\n  - limit: {requests: 1, unit: Second}\n  - limit: {requests: 3, unit: Second}\n");
    let fa = load_str("t.yaml", &a).unwrap();
    let fb = load_str("t.yaml", &b).unwrap();
    let (ra, rb) = (
        &fa.rate_limits.policies[0].rules,
        &fb.rate_limits.policies[0].rules,
    );
    assert_eq!(ra[0].fingerprint, rb[0].fingerprint);
    assert_ne!(ra[1].fingerprint, rb[1].fingerprint);
}
