//! Route policies through the real proxy, against real upstreams: timeouts, retries,
//! fault injection, rewrites, redirects, header operations, mirroring, CORS, direct
//! responses and weighted splits, with Istio's semantics and defaults.

mod common;
use bytes::Bytes;
use common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Config for host `web`: one endpoint per `(port, name)` labelled `v: name`, a
/// DestinationRule with one subset per name (and `traffic_policy`, a complete
/// `  trafficPolicy: ...` line, or ""), and a VirtualService with the `http` rules.
fn config(eps: &[(u16, &str)], traffic_policy: &str, http: &str) -> String {
    let labels: Vec<(u16, String)> = eps.iter().map(|(p, n)| (*p, format!("v: {n}"))).collect();
    let labels_ref: Vec<(u16, &str)> = labels.iter().map(|(p, l)| (*p, l.as_str())).collect();
    let mut subsets = String::new();
    for (_, n) in eps {
        subsets.push_str(&format!("  - {{name: {n}, labels: {{v: {n}}}}}\n"));
    }
    format!(
        "{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n{traffic_policy}  subsets:\n{subsets}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n{http}",
        service("web.default.svc.cluster.local", &labels_ref)
    )
}

fn eps<'a>(ups: &[&'a Upstream]) -> Vec<(u16, &'a str)> {
    ups.iter()
        .map(|u| (u.addr.port(), u.name.as_str()))
        .collect()
}

const ROUND_ROBIN: &str = "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n";

async fn timed_get(p: &Proxy, host: &str, path: &str, h: &[(&str, &str)]) -> (Reply, Duration) {
    let t = Instant::now();
    let r = get(p, host, path, h).await;
    (r, t.elapsed())
}

/// `n` GETs spread over 8 pooled connections; counts replies by body.
async fn spread(addr: SocketAddr, path: &str, n: usize) -> HashMap<String, usize> {
    let mut tasks = Vec::new();
    for w in 0..8 {
        let path = path.to_string();
        let count = n / 8 + usize::from(w < n % 8);
        tasks.push(tokio::spawn(async move {
            let client = h1_client();
            let mut out: HashMap<String, usize> = HashMap::new();
            for _ in 0..count {
                let r = get_with(&client, addr, "web", &path, &[]).await;
                assert_eq!(r.status, 200, "{}", r.body);
                *out.entry(r.body).or_default() += 1;
            }
            out
        }));
    }
    let mut total: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *total.entry(k).or_default() += v;
        }
    }
    total
}

// ---------------------------------------------------------------------------------------
// Timeouts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_gives_504_and_no_default_timeout() {
    let a = upstream("a").await;
    let http = "  - match: [{uri: {prefix: /timed}}]\n    timeout: 200ms\n    route: [{destination: {host: web}}]\n  - route: [{destination: {host: web}}]\n";
    let p = proxy(&config(&eps(&[&a]), "", http));

    let (r, took) = timed_get(&p, "web", "/timed", &[("x-test-delay-ms", "1000")]).await;
    assert_eq!(r.status, 504, "route timeout 200ms vs a 1s upstream");
    assert_eq!(r.body, "upstream request timeout");
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_millis(900),
        "answered after {took:?}, expected ~200ms"
    );
    assert_eq!(a.count(), 1, "a route timeout is not retried");

    // Istio sets no route timeout by default (not Envoy's 15s): a slow answer arrives.
    let (r, took) = timed_get(&p, "web", "/slow", &[("x-test-delay-ms", "700")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "a");
    assert!(took >= Duration::from_millis(700), "{took:?}");
}

// ---------------------------------------------------------------------------------------
// Retries

/// The default policy (Istio: 2 retries on connect-failure, refused-stream, ...) retries a
/// refused connection onto the other endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_default_policy_retries_connect_failure() {
    let a = upstream("a").await;
    let dead = closed_port();
    let http = "  - match: [{uri: {prefix: /off}}]\n    retries: {attempts: 0}\n    route: [{destination: {host: web}}]\n  - route: [{destination: {host: web}}]\n";
    let p = proxy(&config(
        &[(dead, "dead"), (a.addr.port(), "a")],
        ROUND_ROBIN,
        http,
    ));
    for i in 0..10 {
        let r = get(&p, "web", "/", &[]).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(r.body, "a");
    }
    assert_eq!(a.count(), 10);

    // `attempts: 0` disables retries: the refused connections surface as 503s.
    let mut failed = 0;
    for _ in 0..6 {
        let r = get(&p, "web", "/off", &[]).await;
        if r.status == 503 {
            failed += 1;
        } else {
            assert_eq!(r.body, "a");
        }
    }
    assert!(
        failed >= 1,
        "round robin sent some requests to the dead endpoint"
    );
    assert_eq!(a.count(), 10 + 6 - failed);
}

/// A reset after the request was sent is retried with `retryOn: reset` (onto the other
/// endpoint); Istio's default policy (`connect-failure,refused-stream,unavailable,
/// cancelled,retriable-status-codes`) does not retry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_reset_with_reset_policy_but_not_by_default() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let http = "  - match: [{uri: {prefix: /reset}}]\n    retries: {attempts: 2, retryOn: reset}\n    route: [{destination: {host: web}}]\n  - route: [{destination: {host: web}}]\n";
    let p = proxy(&config(&eps(&[&a, &b]), ROUND_ROBIN, http));

    for i in 0..6 {
        let r = get(&p, "web", "/reset", &[("x-test-reset", "a")]).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(r.body, "b");
    }
    assert!(
        a.count() >= 3,
        "round robin sent requests to a first: {}",
        a.count()
    );
    assert_eq!(b.count(), 6);

    let (a0, b0) = (a.count(), b.count());
    let mut failed = 0;
    for _ in 0..6 {
        let r = get(&p, "web", "/default", &[("x-test-reset", "a")]).await;
        if r.status == 503 {
            failed += 1;
        } else {
            assert_eq!(r.body, "b");
        }
    }
    let a_seen = a.count() - a0;
    assert!(a_seen >= 3, "a saw {a_seen}");
    assert_eq!(
        failed, a_seen,
        "each reset surfaces as a 503: the default policy does not retry resets"
    );
    assert_eq!((b.count() - b0) as u64, 6 - failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_503_not_retried_by_default() {
    let a = upstream("a").await;
    let p = proxy(&config(
        &eps(&[&a]),
        "",
        "  - route: [{destination: {host: web}}]\n",
    ));
    let r = get(&p, "web", "/", &[("x-test-status", "503")]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "a", "the upstream's own 503 is passed through");
    assert_eq!(a.count(), 1, "Istio >= 1.24 does not retry 503 by default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_5xx_policy_retries_503() {
    let a = upstream("a").await;
    let http =
        "  - retries: {attempts: 2, retryOn: 5xx}\n    route: [{destination: {host: web}}]\n";
    let p = proxy(&config(&eps(&[&a]), "", http));
    // Fails once then succeeds.
    let r = send(
        p.addr,
        "POST",
        "web",
        "/",
        &[("x-test-fail-first", "1")],
        Bytes::from_static(b"hello"),
        false,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "a 5", "the request body is sent again on the retry");
    assert_eq!(a.count(), 2);
    // Always fails: 1 + 2 attempts, the last answer is returned.
    let r = get(&p, "web", "/", &[("x-test-status", "503")]).await;
    assert_eq!(r.status, 503);
    assert_eq!(a.count(), 5, "one try and two retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_avoids_previous_hosts() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let c = upstream("c").await;
    let http =
        "  - retries: {attempts: 2, retryOn: 5xx}\n    route: [{destination: {host: web}}]\n";
    let p = proxy(&config(&eps(&[&a, &b, &c]), "", http));
    for round in 1..=3u64 {
        let r = get(&p, "web", "/", &[("x-test-status", "503")]).await;
        assert_eq!(r.status, 503);
        assert_eq!(
            (a.count(), b.count(), c.count()),
            (round, round, round),
            "each try goes to a host not tried yet"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_per_try_timeout_moves_to_another_endpoint() {
    let slow = upstream_delayed("slow", Duration::from_secs(5)).await;
    let a = upstream("a").await;
    let http = "  - match: [{uri: {prefix: /allslow}}]\n    retries: {attempts: 1, perTryTimeout: 100ms, retryOn: gateway-error}\n    route: [{destination: {host: web, subset: slow}}]\n  - retries: {attempts: 2, perTryTimeout: 100ms, retryOn: \"gateway-error,connect-failure,refused-stream\"}\n    route: [{destination: {host: web}}]\n";
    let p = proxy(&config(&eps(&[&slow, &a]), ROUND_ROBIN, http));
    for i in 0..4 {
        let (r, took) = timed_get(&p, "web", "/", &[]).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(r.body, "a");
        assert!(took < Duration::from_secs(2), "request {i} took {took:?}");
    }
    assert!(
        slow.seen
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1,
        "the slow endpoint was tried"
    );
    assert_eq!(a.count(), 4);

    // Only one host: the retry goes back to it; both tries time out → 504.
    let conns = || {
        slow.seen
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let before = conns();
    let (r, took) = timed_get(&p, "web", "/allslow", &[]).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.body, "upstream request timeout");
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "two 100ms tries took {took:?}"
    );
    assert_eq!(conns() - before, 2, "one try and one retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_numeric_status_code() {
    let a = upstream("a").await;
    let http =
        "  - retries: {attempts: 2, retryOn: \"418\"}\n    route: [{destination: {host: web}}]\n";
    let p = proxy(&config(&eps(&[&a]), "", http));
    let r = get(&p, "web", "/", &[("x-test-status", "503")]).await;
    assert_eq!(r.status, 503);
    assert_eq!(a.count(), 1, "only 418 is retriable");
    let r = get(&p, "web", "/", &[("x-test-status", "418")]).await;
    assert_eq!(r.status, 418);
    assert_eq!(a.count(), 4, "418 tried three times");
}

// ---------------------------------------------------------------------------------------
// Fault injection

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_abort_and_delay() {
    let a = upstream("a").await;
    let http = [
        "  - match: [{uri: {prefix: /abort}}]\n    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{uri: {prefix: /never}}]\n    fault: {abort: {httpStatus: 418}}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{uri: {prefix: /delay}}]\n    fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{uri: {prefix: /half}}]\n    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{uri: {prefix: /grpc}}]\n    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}\n    route: [{destination: {host: web}}]\n",
    ]
    .concat();
    let p = proxy(&config(&eps(&[&a]), "", &http));

    let r = get(&p, "web", "/abort", &[]).await;
    assert_eq!(r.status, 418);
    assert_eq!(
        a.count(),
        0,
        "an aborted request never reaches the upstream"
    );

    for _ in 0..20 {
        let r = get(&p, "web", "/never", &[]).await;
        assert_eq!(r.status, 200, "abort without percentage never fires");
    }
    assert_eq!(a.count(), 20);

    let (r, took) = timed_get(&p, "web", "/delay", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "a");
    assert!(took >= Duration::from_millis(300), "delayed only {took:?}");
    assert_eq!(a.count(), 21);

    let client = h1_client();
    let mut aborted = 0;
    for _ in 0..400 {
        let r = get_with(&client, p.addr, "web", "/half", &[]).await;
        match r.status {
            503 => aborted += 1,
            200 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(
        (120..=280).contains(&aborted),
        "50% abort fired {aborted}/400 times"
    );
    assert_eq!(a.count(), 21 + 400 - aborted as u64);

    let before = a.count();
    let r = send(
        p.addr,
        "POST",
        "web",
        "/grpc",
        &[("content-type", "application/grpc"), ("te", "trailers")],
        Bytes::new(),
        true,
    )
    .await;
    assert_eq!(r.status, 200, "gRPC aborts are HTTP 200");
    assert_eq!(r.header("grpc-status"), "14", "UNAVAILABLE = 14");
    assert_eq!(a.count(), before);
}

/// The fault filter runs before the router: an injected delay does not count against
/// the route timeout, and an injected abort is never retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_runs_before_timeout_and_retries() {
    let a = upstream("a").await;
    let http = [
        "  - match: [{uri: {prefix: /delay}}]\n    timeout: 200ms\n    fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{uri: {prefix: /abort}}]\n    retries: {attempts: 2, retryOn: 5xx}\n    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}\n    route: [{destination: {host: web}}]\n",
    ]
    .concat();
    let p = proxy(&config(&eps(&[&a]), "", &http));
    let (r, took) = timed_get(&p, "web", "/delay", &[]).await;
    assert_eq!(r.status, 200, "the delay is not part of the route timeout");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert_eq!(a.count(), 1);
    let r = get(&p, "web", "/abort", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(a.count(), 1, "an abort makes no upstream attempt");
}

// ---------------------------------------------------------------------------------------
// Rewrite

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_prefix_regex_and_authority() {
    let a = upstream("a").await;
    let http = [
        "  - match: [{uri: {prefix: /v1}}]\n    rewrite: {uri: /v2}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{uri: {exact: /old}}]\n    rewrite: {uri: /new}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{uri: {prefix: /svc/}}]\n    rewrite: {uriRegexRewrite: {match: \"^/svc/([^/]+)/(.*)$\", rewrite: \"/\\\\2/instance/\\\\1\"}}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{uri: {prefix: /auth}}]\n    rewrite: {authority: new.example.com}\n    route: [{destination: {host: web}}]\n",
    ]
    .concat();
    let p = proxy(&config(&eps(&[&a]), "", &http));

    assert_eq!(get(&p, "web", "/v1/items?a=1&b=2", &[]).await.status, 200);
    assert_eq!(a.last_path(), "/v2/items?a=1&b=2");
    assert_eq!(a.last_headers()["host"], "web", "the host is not changed");
    get(&p, "web", "/v1", &[]).await;
    assert_eq!(a.last_path(), "/v2");
    get(&p, "web", "/old?x=1", &[]).await;
    assert_eq!(
        a.last_path(),
        "/new?x=1",
        "an exact match rewrites the whole path"
    );

    assert_eq!(
        get(&p, "web", "/svc/foo/bar/baz?q=1", &[]).await.status,
        200
    );
    assert_eq!(a.last_path(), "/bar/baz/instance/foo?q=1");

    assert_eq!(get(&p, "web", "/auth/x", &[]).await.status, 200);
    assert_eq!(a.last_headers()["host"], "new.example.com");
    assert_eq!(a.last_path(), "/auth/x");
}

// ---------------------------------------------------------------------------------------
// Redirect

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects() {
    let a = upstream("a").await;
    let rd =
        |m: &str, r: &str| format!("  - match: [{{uri: {{prefix: {m}}}}}]\n    redirect: {r}\n");
    let http = [
        rd("/uri", "{uri: /new/place}"),
        rd("/auth", "{authority: other.example}"),
        rd("/scheme", "{scheme: https}"),
        rd("/port", "{port: 8443}"),
        rd(
            "/dpdef",
            "{scheme: https, derivePort: FROM_PROTOCOL_DEFAULT}",
        ),
        rd(
            "/dpreq",
            "{authority: other.example, derivePort: FROM_REQUEST_PORT}",
        ),
        rd("/pre", "{prefixRewrite: /post}"),
        rd("/qry", "{uri: \"/n?z=9\"}"),
        rd("/c302", "{uri: /x, redirectCode: 302}"),
        rd("/c307", "{uri: /x, redirectCode: 307}"),
        rd("/c308", "{uri: /x, redirectCode: 308}"),
    ]
    .concat();
    let p = proxy(&config(&eps(&[&a]), "", &http));
    let listener_port = p.addr.port();
    let cases: Vec<(&str, &str, u16, String)> = vec![
        ("web", "/uri/x?a=1", 301, "http://web/new/place?a=1".into()),
        (
            "web",
            "/auth?a=1",
            301,
            "http://other.example/auth?a=1".into(),
        ),
        ("web", "/scheme/p", 301, "https://web/scheme/p".into()),
        ("web:80", "/scheme/p", 301, "https://web/scheme/p".into()),
        (
            "web:8080",
            "/scheme/p",
            301,
            "https://web:8080/scheme/p".into(),
        ),
        ("web", "/port", 301, "http://web:8443/port".into()),
        ("web:8080", "/port", 301, "http://web:8443/port".into()),
        ("web:8080", "/dpdef", 301, "https://web/dpdef".into()),
        (
            "web",
            "/dpreq",
            301,
            format!("http://other.example:{listener_port}/dpreq"),
        ),
        ("web", "/pre/a/b?x=1", 301, "http://web/post/a/b?x=1".into()),
        ("web", "/qry?a=1", 301, "http://web/n?z=9".into()),
        ("web", "/c302", 302, "http://web/x".into()),
        ("web", "/c307", 307, "http://web/x".into()),
        ("web", "/c308", 308, "http://web/x".into()),
    ];
    for (host, path, status, location) in cases {
        let r = get(&p, host, path, &[]).await;
        assert_eq!(r.status, status, "{host}{path}");
        assert_eq!(r.header("location"), location, "{host}{path}");
    }
    assert_eq!(a.count(), 0, "redirects are answered by the proxy");
}

// ---------------------------------------------------------------------------------------
// Header operations

fn values(h: &http::HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_operations() {
    let a = upstream("a").await;
    let http = [
        "  - match: [{uri: {prefix: /req}}]\n    headers: {request: {set: {x-set: new}, add: {x-add: added}, remove: [x-remove]}}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{uri: {prefix: /resp-set}}]\n    headers: {response: {set: {x-upstream: overridden, x-new: fresh}}}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{uri: {prefix: /resp-add}}]\n    headers: {response: {add: {x-upstream: extra}}}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{uri: {prefix: /resp-remove}}]\n    headers: {response: {remove: [x-upstream]}}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{uri: {prefix: /dest}}]\n    route: [{destination: {host: web}, headers: {request: {set: {x-dest: d}, remove: [x-drop]}, response: {set: {x-dest-resp: r}}}}]\n",
        "  - match: [{uri: {prefix: /authority}}]\n    headers: {request: {set: {\":authority\": rewritten.example}}}\n    route: [{destination: {host: web}}]\n",
        "  - match: [{uri: {prefix: /local}}]\n    timeout: 50ms\n    headers: {response: {set: {x-route: r}}}\n    route: [{destination: {host: web}, headers: {response: {set: {x-dest-resp: r}}}}]\n",
    ]
    .concat();
    let p = proxy(&config(&eps(&[&a]), "", &http));

    let r = get(
        &p,
        "web",
        "/req",
        &[
            ("x-set", "old"),
            ("x-add", "client"),
            ("x-remove", "1"),
            ("x-other", "kept"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let h = a.last_headers();
    assert_eq!(values(&h, "x-set"), ["new"], "set overwrites");
    let added = values(&h, "x-add");
    assert!(
        added.contains(&"client".to_string()) && added.contains(&"added".to_string()),
        "add appends: {added:?}"
    );
    assert!(h.get("x-remove").is_none(), "remove");
    assert_eq!(h["x-other"], "kept");

    let r = get(&p, "web", "/resp-set", &[]).await;
    assert_eq!(values(&r.headers, "x-upstream"), ["overridden"]);
    assert_eq!(r.header("x-new"), "fresh");

    let r = get(&p, "web", "/resp-add", &[]).await;
    let v = values(&r.headers, "x-upstream");
    assert!(
        v.contains(&"a".to_string()) && v.contains(&"extra".to_string()),
        "{v:?}"
    );

    let r = get(&p, "web", "/resp-remove", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("x-upstream").is_none());

    let r = get(&p, "web", "/dest", &[("x-drop", "1")]).await;
    let h = a.last_headers();
    assert_eq!(h["x-dest"], "d", "per-destination request header");
    assert!(h.get("x-drop").is_none());
    assert_eq!(
        r.header("x-dest-resp"),
        "r",
        "per-destination response header"
    );

    get(&p, "web", "/authority", &[]).await;
    assert_eq!(a.last_headers()["host"], "rewritten.example");
    assert_eq!(a.last_path(), "/authority");

    // The router's own replies (here the route timeout's 504) carry the route's and the
    // destination's response headers, as Envoy's router finalizes its local replies.
    let r = get(&p, "web", "/local", &[("x-test-delay-ms", "2000")]).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-route"), "r");
    assert_eq!(r.header("x-dest-resp"), "r");
}

// ---------------------------------------------------------------------------------------
// Mirroring

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirroring() {
    let a = upstream("a").await;
    let m = upstream("m").await;
    let m2 = upstream("m2").await;
    let http = [
        "  - match: [{uri: {prefix: /zero}}]\n    route: [{destination: {host: web}}]\n    mirror: {host: shadow}\n    mirrorPercentage: {value: 0}\n",
        "  - match: [{uri: {prefix: /one}}]\n    route: [{destination: {host: web}}]\n    mirror: {host: shadow}\n",
        "  - match: [{uri: {prefix: /two}}]\n    route: [{destination: {host: web}}]\n    mirrors: [{destination: {host: shadow}}, {destination: {host: shadow2}}]\n",
    ]
    .concat();
    let yaml = format!(
        "{}{}{}",
        service(
            "shadow.default.svc.cluster.local",
            &[(m.addr.port(), "app: m")]
        ),
        service(
            "shadow2.default.svc.cluster.local",
            &[(m2.addr.port(), "app: m2")]
        ),
        config(&eps(&[&a]), "", &http)
    );
    let p = proxy(&yaml);
    let wait = Duration::from_secs(5);

    for _ in 0..20 {
        assert_eq!(get(&p, "web", "/zero", &[]).await.body, "a");
    }

    let r = get(&p, "web", "/one?k=v", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "a", "the client gets the primary's response");
    assert!(
        eventually(wait, || m.count() >= 1).await,
        "the mirror never received the request"
    );
    assert_eq!(m.count(), 1, "mirrorPercentage 0 sends nothing");
    assert_eq!(m.last_path(), "/one?k=v");
    assert_eq!(m.last_headers()["host"], "web-shadow");
    assert_eq!(a.last_headers()["host"], "web");

    let r = get(&p, "web", "/two", &[]).await;
    assert_eq!(r.body, "a");
    assert!(
        eventually(wait, || m.count() >= 2 && m2.count() >= 1).await,
        "both mirrors receive the request: m={} m2={}",
        m.count(),
        m2.count()
    );
    assert_eq!((m.count(), m2.count()), (2, 1));
    assert_eq!(m2.last_path(), "/two");
    assert_eq!(m2.last_headers()["host"], "web-shadow");

    // A port in the host stays after the suffix (Envoy: `web-shadow:80`).
    get(&p, "web:80", "/one", &[]).await;
    assert!(eventually(wait, || m.count() >= 3).await);
    assert_eq!(m.last_headers()["host"], "web-shadow:80");
    assert_eq!(a.count(), 23);
}

// ---------------------------------------------------------------------------------------
// CORS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_policy() {
    let a = upstream("a").await;
    let http = "  - corsPolicy:\n      allowOrigins: [{exact: \"https://good.example\"}, {regex: \"https://[a-z]+\\\\.trusted\\\\.example\"}]\n      allowMethods: [GET, POST]\n      allowHeaders: [x-custom]\n      exposeHeaders: [x-exposed]\n      maxAge: 24h\n      allowCredentials: true\n    route: [{destination: {host: web}}]\n";
    let p = proxy(&config(&eps(&[&a]), "", http));

    let r = send(
        p.addr,
        "OPTIONS",
        "web",
        "/api",
        &[
            ("origin", "https://good.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-custom"),
        ],
        Bytes::new(),
        false,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(a.count(), 0, "the proxy answers an allowed preflight");
    assert_eq!(
        r.header("access-control-allow-origin"),
        "https://good.example"
    );
    assert_eq!(r.header("access-control-allow-methods"), "GET,POST");
    assert_eq!(r.header("access-control-allow-headers"), "x-custom");
    assert_eq!(r.header("access-control-max-age"), "86400");
    assert_eq!(r.header("access-control-allow-credentials"), "true");

    let r = get(&p, "web", "/api", &[("origin", "https://good.example")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "a");
    assert_eq!(
        r.header("access-control-allow-origin"),
        "https://good.example"
    );
    assert_eq!(r.header("access-control-expose-headers"), "x-exposed");
    assert_eq!(a.count(), 1);

    let r = get(
        &p,
        "web",
        "/api",
        &[("origin", "https://app.trusted.example")],
    )
    .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        "https://app.trusted.example"
    );
    assert_eq!(a.count(), 2);

    let r = get(&p, "web", "/api", &[("origin", "https://evil.example")]).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    assert_eq!(a.count(), 3);

    // A preflight from an origin not allowed is forwarded (unmatchedPreflights FORWARD).
    let r = send(
        p.addr,
        "OPTIONS",
        "web",
        "/api",
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ],
        Bytes::new(),
        false,
    )
    .await;
    assert_eq!(r.body, "a");
    assert!(r.headers.get("access-control-allow-origin").is_none());
    assert_eq!(a.count(), 4);
}

// ---------------------------------------------------------------------------------------
// Direct response

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_response() {
    let a = upstream("a").await;
    let http = [
        "  - match: [{uri: {exact: /teapot}}]\n    directResponse: {status: 418, body: {string: \"short and stout\"}}\n    headers: {response: {set: {x-dr: \"yes\"}, add: {x-dr-add: \"1\"}}}\n",
        "  - match: [{uri: {exact: /empty}}]\n    directResponse: {status: 204}\n",
        "  - route: [{destination: {host: web}}]\n",
    ]
    .concat();
    let p = proxy(&config(&eps(&[&a]), "", &http));
    let r = get(&p, "web", "/teapot", &[]).await;
    assert_eq!(r.status, 418);
    assert_eq!(r.body, "short and stout");
    assert_eq!(r.header("x-dr"), "yes");
    assert_eq!(r.header("x-dr-add"), "1");
    let r = get(&p, "web", "/empty", &[]).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, "");
    assert_eq!(a.count(), 0);
    assert_eq!(get(&p, "web", "/other", &[]).await.body, "a");
}

// ---------------------------------------------------------------------------------------
// Weighted split

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weighted_split() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let http = [
        "  - match: [{uri: {prefix: /quarter}}]\n    route:\n    - {destination: {host: web, subset: a}, weight: 25}\n    - {destination: {host: web, subset: b}, weight: 75}\n",
        "  - match: [{uri: {prefix: /odd}}]\n    route:\n    - {destination: {host: web, subset: a}, weight: 49}\n    - {destination: {host: web, subset: b}, weight: 50}\n",
        "  - match: [{uri: {prefix: /zero}}]\n    route:\n    - {destination: {host: web, subset: a}, weight: 0}\n    - {destination: {host: web, subset: b}, weight: 100}\n",
    ]
    .concat();
    let p = proxy(&config(&eps(&[&a, &b]), "", &http));
    let n = 10_000usize;

    let got = spread(p.addr, "/quarter", n).await;
    let share_a = *got.get("a").unwrap_or(&0) as f64 / n as f64;
    assert_eq!(got.values().sum::<usize>(), n);
    assert!(
        (share_a - 0.25).abs() <= 0.02,
        "25/75 split gave a {:.2}%",
        share_a * 100.0
    );

    let got = spread(p.addr, "/odd", n).await;
    let share_a = *got.get("a").unwrap_or(&0) as f64 / n as f64;
    assert!(
        (share_a - 49.0 / 99.0).abs() <= 0.02,
        "49/50 split gave a {:.2}%",
        share_a * 100.0
    );

    let got = spread(p.addr, "/zero", 1000).await;
    assert_eq!(got.get("a"), None, "weight 0 gets nothing");
    assert_eq!(got.get("b"), Some(&1000));
}
