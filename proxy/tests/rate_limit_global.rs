//! End to end: Global RateLimitPolicy rules shared by two meshproxy processes through one
//! `redis-server` started by the test on a loopback port — together they let the limit
//! through, not twice it; with Redis killed mid-run requests keep flowing (fail open),
//! the backend errors are counted and logged once, and the limit holds again once Redis
//! is back.

mod binary;
mod common;
mod ratelimit;

use ratelimit::{
    next_second, ok_service, outbound_proxy, paced, policy, redis_counts, redis_missing,
    rule_counter, run_quiet, Redis, LATE,
};
use std::time::Duration;

fn config(upstream: u16, redis: u16) -> String {
    config_with(upstream, redis, "", "{requests: 100, unit: Second}")
}

/// The test's Proxy (`rate_limit` lines added to `spec.rateLimit`) and Global policy.
fn config_with(upstream: u16, redis: u16, rate_limit: &str, limit: &str) -> String {
    let redis = format!(
        "  rateLimit:\n    redis: {{address: \"127.0.0.1:{redis}\", timeout: 250ms}}\n{rate_limit}"
    );
    format!(
        "{}{}{}",
        outbound_proxy("api", &redis),
        ok_service(upstream),
        policy(
            "shared",
            &format!("  type: Global\n  rules:\n  - limit: {limit}\n")
        )
    )
}

/// The backend errors counted for the policy's rule.
async fn backend_errors(admin: std::net::SocketAddr) -> u64 {
    rule_counter(admin, "backend_errors", "default/shared", 0).await
}

fn skip() -> bool {
    if let Some(why) = redis_missing() {
        eprintln!("SKIPPED: {why}");
        return true;
    }
    false
}

/// Waits (with a deadline) until the proxy refuses a request: its Redis connection is up
/// and the limit counts (bursts of 1,000 req/s for 0.3 s against 100 req/s).
async fn until_limited(p: &binary::Running) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let start = tokio::time::Instant::now();
        let burst = paced(
            p.addr("outbound"),
            "ok",
            &[],
            1000,
            Duration::from_millis(300),
            start,
        )
        .await;
        if burst.count(429, 0.0, 100.0) > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Global limit never applied"
        );
    }
}

/// Two proxies, each fed 300 req/s for 5 whole one-second windows, against 100 req/s
/// shared: 500 ± 5 % through in all, not 1,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_proxies_share_one_global_limit() {
    if skip() {
        return;
    }
    let ok = common::upstream("ok").await;
    let redis = Redis::start(common::free_port());
    let yaml = config(ok.addr.port(), redis.port);
    let (a, b) = (run_quiet(&yaml, "2"), run_quiet(&yaml, "2"));
    until_limited(&a).await;
    until_limited(&b).await;
    let start = next_second();
    let run = Duration::from_secs(5);
    let (oa, ob) = tokio::join!(
        paced(a.addr("outbound"), "ok", &[], 300, run, start),
        paced(b.addr("outbound"), "ok", &[], 300, run, start),
    );
    let (ta, tb) = (oa.through(), ob.through());
    assert_eq!(
        oa.count(0, 0.0, 100.0) + ob.count(0, 0.0, 100.0),
        0,
        "every request answered"
    );
    assert!(
        (475..=525).contains(&(ta + tb)),
        "through {ta} + {tb} = {}, expected 500 ± 5 %",
        ta + tb
    );
    assert!(
        ta > 50 && tb > 50,
        "both proxies let some through: {ta}, {tb}"
    );
    for w in 0..5 {
        let (from, to) = (w as f64 - LATE, w as f64 + 1.0 - LATE);
        let n = oa.count(200, from, to) + ob.count(200, from, to);
        assert!(n <= 110, "window {w}: {n} through, limit 100");
    }
}

/// Redis killed for 2 s of a 6 s run: the requests of the outage all pass (fail open),
/// the errors are counted and the outage is logged once; a second after Redis is back
/// the limit holds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_fails_open_and_limits_resume_when_it_is_back() {
    if skip() {
        return;
    }
    let ok = common::upstream("ok").await;
    let port = common::free_port();
    let mut redis = Redis::start(port);
    let yaml = config(ok.addr.port(), port);
    let p = run_quiet(&yaml, "2");
    until_limited(&p).await;
    let start = next_second();
    let load = paced(
        p.addr("outbound"),
        "ok",
        &[],
        300,
        Duration::from_secs(6),
        start,
    );
    let outage = async {
        tokio::time::sleep_until(start + Duration::from_secs(2)).await;
        redis.kill();
        tokio::time::sleep_until(start + Duration::from_secs(4)).await;
        Redis::start(port)
    };
    let (out, _back) = tokio::join!(load, outage);
    assert_eq!(out.count(0, 0.0, 100.0), 0, "every request answered");
    let before = out.count(200, 0.0, 2.0 - LATE);
    assert!(
        (190..=210).contains(&before),
        "before the outage {before}, expected 200 ± 5 %"
    );
    let (sent, passed) = (out.sent(2.1, 4.0), out.count(200, 2.1, 4.0));
    assert!(
        passed * 100 >= sent * 99,
        "during the outage {passed} of {sent} passed: it must fail open"
    );
    let after = out.count(200, 5.0 - LATE, 6.0 - LATE);
    assert!(
        (95..=105).contains(&after),
        "a second after Redis is back {after}, expected 100 ± 5 %"
    );
    let errors = backend_errors(p.addr("admin")).await;
    assert!(
        errors as usize >= passed * 9 / 10,
        "backend errors {errors} for {passed} requests"
    );
    let logged: Vec<String> = p
        .log
        .try_iter()
        .filter(|l| l.contains("rate-limit Redis"))
        .collect();
    let down = logged
        .iter()
        .filter(|l| l.contains("unavailable") || l.contains("unreachable"))
        .count();
    assert_eq!(down, 1, "the outage is logged once: {logged:?}");
    assert!(
        logged.iter().any(|l| l.contains("answers again")),
        "{logged:?}"
    );
}

/// The rate-limit service's local over-limit cache: once a key is over its limit, the
/// rest of its window is refused without a round trip, so Redis counts 3 (2 allowed, the
/// one that found it over) for 10 requests. An hour's window: the test does not cross one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_limit_is_refused_without_asking_redis() {
    if skip() {
        return;
    }
    let ok = common::upstream("ok").await;
    let redis = Redis::start(common::free_port());
    let yaml = config_with(ok.addr.port(), redis.port, "", "{requests: 2, unit: Hour}");
    let p = run_quiet(&yaml, "1");
    let out = p.addr("outbound");
    // Until the proxy's Redis connection is up (the first request finding it counts).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while redis_counts(redis.port).1 == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis never counted"
        );
        common::get_at(out, "ok").await;
    }
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(common::get_at(out, "ok").await);
    }
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 8,
        "{statuses:?}"
    );
    let (keys, sum) = redis_counts(redis.port);
    assert!(
        sum <= 3 * keys,
        "{sum} counted in {keys} key(s): refusals went to Redis"
    );
    let r = common::send(out, "GET", "ok", "/", &[], bytes::Bytes::new(), false).await;
    assert_eq!((r.status, r.body.as_str()), (429, ""));
    assert_eq!(r.header("x-envoy-ratelimited"), "true");
    assert_eq!(r.header("x-ratelimit-limit"), "2, 2;w=3600");
}

/// `failureModeDeny: true` with no Redis answering: Envoy's `status_on_error` 500, flag
/// `RLSE`, nothing forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_mode_deny_refuses_when_redis_does_not_answer() {
    let ok = common::upstream("ok").await;
    let yaml = config_with(
        ok.addr.port(),
        common::closed_port(),
        "    failureModeDeny: true\n",
        "{requests: 100, unit: Second}",
    );
    let p = binary::run(&yaml, &["--workers", "1"]);
    assert_eq!(common::get_at(p.addr("outbound"), "ok").await, 500);
    assert_eq!(ok.count(), 0);
    let line = p
        .stdout
        .recv_timeout(Duration::from_secs(10))
        .expect("an access log line");
    assert!(line.contains(" 500 ") && line.contains(" RLSE "), "{line}");
    let errors = backend_errors(p.addr("admin")).await;
    assert_eq!(errors, 1);
}
