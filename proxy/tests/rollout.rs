//! End to end with real processes: `meshproxy run` in front of two versions of
//! `reviews`, a load loop running throughout, and `meshproxy rollout` moving the route by
//! rewriting its file in the proxy's config directory, judged from a real Prometheus
//! scraping the proxy (Debian's `prometheus`; `.ci/run` installs it, without it those
//! tests say so and skip) or from the proxy's `/metrics` scraped directly.

mod binary;
mod common;
mod rollout_support;

use rollout_support::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const STEPS: &str = "    stepWeights: [5, 10, 25, 50]\n";
const CHECKS: &str = "    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}, interval: 10s}\n    - {name: request-duration, thresholdRange: {max: 500}, interval: 10s}\n";

fn canary_steps() -> Vec<(String, u32)> {
    steps(&[
        ("Initializing", 0),
        ("Progressing", 5),
        ("Progressing", 10),
        ("Progressing", 25),
        ("Progressing", 50),
        ("Promoting", 100),
        ("Succeeded", 100),
    ])
}

/// Every answer a success, from one of the two versions.
fn assert_all_ok(answers: &[Answer]) {
    let bad: Vec<_> = answers
        .iter()
        .filter(|a| a.status != 200 || !["v1", "v2"].contains(&a.upstream.as_str()))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} requests failed: {:?}",
        bad.len(),
        answers.len(),
        &bad[..bad.len().min(5)]
    );
}

/// A healthy canary goes 5 → 10 → 25 → 50 → 100 and is promoted; `source` args pick
/// the metrics.
async fn healthy_canary_is_promoted(interval: &str, prometheus: bool) {
    let analysis = format!("    interval: {interval}\n    threshold: 2\n{STEPS}{CHECKS}");
    let stage = Stage::start(&analysis).await;
    let (dir, admin) = (&stage.dir, stage.admin);
    let prom = if prometheus {
        Some(Prometheus::start(admin).await)
    } else {
        None
    };
    let source = match &prom {
        Some(p) => vec!["--prometheus".to_string(), p.url.clone()],
        None => vec!["--scrape".to_string(), format!("http://{admin}")],
    };
    let mut args: Vec<&str> = source.iter().map(String::as_str).collect();
    args.extend(["--metrics-address", "127.0.0.1:0"]);
    let mut rollout = Rollout::start(dir, &args);
    let load = stage.load_once_routed(&rollout, &["a"]).await;

    let line = rollout
        .expect_line("metrics on http://", Duration::from_secs(5))
        .await;
    let metrics_addr = line
        .split("http://")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .expect("the metrics address line");
    rollout
        .expect_line("canary weight 25%", Duration::from_secs(40))
        .await;
    let text = common::metrics_text(metrics_addr).await;
    assert!(
        text.contains("meshproxy_rollout_weight{namespace=\"default\",name=\"reviews\"} 25"),
        "{text}"
    );
    assert!(text.contains("meshproxy_rollout_phase{namespace=\"default\",name=\"reviews\",phase=\"Progressing\"} 1"), "{text}");

    let code = rollout.wait_exit(Duration::from_secs(60)).await;
    eprintln!("{}", rollout.log());
    assert_eq!(code, Some(0), "{}", rollout.log());
    assert_eq!(rollout.steps(), canary_steps(), "{}", rollout.log());
    assert_eq!(on_disk(dir), Some(("Succeeded".into(), 100)));
    let promoted = stage.settled("Succeeded", &load).await;
    load.stop();
    let answers = load.answers();
    assert_all_ok(&answers);
    // The canary served during the analysis, and everything once promoted.
    assert!(answers
        .iter()
        .any(|a| a.sent < promoted && a.upstream == "v2"));
    let after: Vec<_> = answers.iter().filter(|a| a.sent > promoted).collect();
    assert!(!after.is_empty() && after.iter().all(|a| a.upstream == "v2"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_canary_is_promoted_judged_by_prometheus() {
    if skip_without_prometheus() {
        return;
    }
    // Prometheus needs two scrapes of the canary's new series before rate() has a
    // value: an interval of a few scrapes keeps the first check from finding none.
    healthy_canary_is_promoted("4s", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_canary_is_promoted_judged_from_scraped_metrics() {
    healthy_canary_is_promoted("1s", false).await;
}

/// A canary that starts answering 500 after the second step is rolled back within one
/// interval of the threshold-th failed check; the load sees no failure but the canary's
/// own 500s, and none once the rollback is in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_canary_is_rolled_back() {
    if skip_without_prometheus() {
        return;
    }
    let interval = Duration::from_secs(4);
    let analysis = format!("    interval: 4s\n    threshold: 2\n{STEPS}{CHECKS}");
    let stage = Stage::start(&analysis).await;
    let prom = Prometheus::start(stage.admin).await;
    let mut rollout = Rollout::start(&stage.dir, &["--prometheus", &prom.url]);
    let load = stage.load_once_routed(&rollout, &["a"]).await;
    rollout
        .expect_line("canary weight 10%", Duration::from_secs(40))
        .await;
    stage.bad.store(true, Ordering::SeqCst);
    let flipped = Instant::now();

    rollout.expect_exit(Duration::from_secs(60), 1).await;
    let want = steps(&[
        ("Initializing", 0),
        ("Progressing", 5),
        ("Progressing", 10),
        ("Failed", 0),
    ]);
    assert_eq!(rollout.steps(), want, "{}", rollout.log());
    // The check that reaches the threshold is the rollback itself, at the regular
    // interval (no later one), within `threshold` intervals of the first 500.
    let Some(at) = rollout
        .lines
        .iter()
        .position(|(_, l)| l.contains("Failed canary weight 0%"))
    else {
        panic!("no rollback line:\n{}", rollout.log());
    };
    let (t_failed, failed) = &rollout.lines[at];
    assert!(
        failed.contains("(2 of 2 failed checks)") && failed.contains("request-success-rate"),
        "{failed}"
    );
    let (t_before, _) = &rollout.lines[at - 1];
    assert!(
        t_failed.duration_since(*t_before) < interval + Duration::from_millis(1500),
        "rolled back {:?} after the previous check:\n{}",
        t_failed.duration_since(*t_before),
        rollout.log()
    );
    assert!(
        t_failed.duration_since(flipped) < 2 * interval + Duration::from_secs(2),
        "rolled back {:?} after the canary turned bad:\n{}",
        t_failed.duration_since(flipped),
        rollout.log()
    );
    assert_eq!(on_disk(&stage.dir), Some(("Failed".into(), 0)));
    let rolled_back = stage.settled("Failed", &load).await;
    load.stop();
    let answers = load.answers();
    let failures: Vec<_> = answers.iter().filter(|a| a.status != 200).collect();
    assert!(!failures.is_empty(), "the bad canary was never called");
    let foreign: Vec<_> = failures
        .iter()
        .filter(|a| a.status != 500 || a.upstream != "v2")
        .collect();
    assert!(
        foreign.is_empty(),
        "failures other than the canary's 500s: {foreign:?}"
    );
    let after: Vec<_> = answers.iter().filter(|a| a.sent > rolled_back).collect();
    assert!(after.iter().all(|a| a.status == 200 && a.upstream == "v1"));
    let _ = std::fs::remove_dir_all(&stage.dir);
}

/// A/B: only the matching user reaches the canary until the promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_b_sends_only_matching_users_to_the_canary() {
    if skip_without_prometheus() {
        return;
    }
    let analysis = format!("    interval: 4s\n    threshold: 2\n    iterations: 3\n    match: [{{headers: {{x-user: {{exact: beta}}}}}}]\n{CHECKS}");
    let stage = Stage::start(&analysis).await;
    let prom = Prometheus::start(stage.admin).await;
    let mut rollout = Rollout::start(&stage.dir, &["--prometheus", &prom.url]);
    let load = stage.load_once_routed(&rollout, &["alpha", "beta"]).await;
    rollout
        .expect_line("Promoting", Duration::from_secs(60))
        .await;
    let promoting = Instant::now();
    rollout.expect_exit(Duration::from_secs(30), 0).await;
    load.stop();
    let answers = load.answers();
    assert_all_ok(&answers);
    let before: Vec<_> = answers.iter().filter(|a| a.sent < promoting).collect();
    let alpha_on_canary = before
        .iter()
        .filter(|a| a.user == "alpha" && a.upstream == "v2")
        .count();
    let beta_on_canary = before
        .iter()
        .filter(|a| a.user == "beta" && a.upstream == "v2")
        .count();
    assert_eq!(alpha_on_canary, 0, "a non-matching user reached the canary");
    assert!(
        beta_on_canary > 20,
        "the matching user reached the canary {beta_on_canary} times"
    );
    let steps = rollout.steps();
    assert_eq!(
        steps.last(),
        Some(&("Succeeded".to_string(), 100)),
        "{}",
        rollout.log()
    );
    assert_eq!(on_disk(&stage.dir), Some(("Succeeded".into(), 100)));
    let _ = std::fs::remove_dir_all(&stage.dir);
}

/// Killing `meshproxy rollout` mid-way and starting it again resumes from the written
/// state: no step is repeated or skipped, and the load never notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_rollout_resumes_from_the_written_state() {
    let analysis = format!("    interval: 1s\n    threshold: 2\n{STEPS}{CHECKS}");
    let stage = Stage::start(&analysis).await;
    let dir = &stage.dir;
    let scrape = format!("http://{}", stage.admin);
    let mut first = Rollout::start(dir, &["--scrape", &scrape]);
    let load = stage.load_once_routed(&first, &["a"]).await;
    first
        .expect_line("canary weight 25%", Duration::from_secs(30))
        .await;
    first.child.kill().expect("kill");
    let _ = first.child.wait();
    assert_eq!(on_disk(dir), Some(("Progressing".into(), 25)));

    let mut second = Rollout::start(dir, &["--scrape", &scrape]);
    let resumed = second.wait_line("resumed", Duration::from_secs(10)).await;
    assert!(
        resumed
            .as_deref()
            .is_some_and(|l| l.contains("Progressing canary weight 25%")),
        "{}",
        second.log()
    );
    second.expect_exit(Duration::from_secs(30), 0).await;
    let want = steps(&[
        ("Progressing", 25),
        ("Progressing", 50),
        ("Promoting", 100),
        ("Succeeded", 100),
    ]);
    assert_eq!(second.steps(), want, "{}", second.log());
    load.stop();
    assert_all_ok(&load.answers());
    let _ = std::fs::remove_dir_all(dir);
}

/// Another VirtualService for the host: nothing is started or written, and the error
/// names it.
#[tokio::test]
async fn a_virtual_service_claiming_the_host_is_refused() {
    let dir = config_dir(1, 2, "    stepWeight: 10\n");
    std::fs::write(
        dir.join("routes.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews-routes}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  http: [{route: [{destination: {host: reviews, subset: v1}}]}]\n",
    )
    .unwrap();
    let mut r = Rollout::start(&dir, &["--scrape", "127.0.0.1:1"]);
    assert_eq!(r.wait_exit(Duration::from_secs(20)).await, Some(1));
    let log = r.log();
    assert!(
        log.contains("VirtualService default/reviews-routes") && log.contains("routes.yaml"),
        "{log}"
    );
    assert!(on_disk(&dir).is_none(), "a file was written");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Flagger's webhooks: a failing pre-rollout hook is a failed check, confirm-promotion
/// holds the promotion until it answers 2xx, rollout hooks run every interval,
/// post-rollout hooks hear the end; the payload is Flagger's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_gate_the_release() {
    let (url, calls) = hooks(|kind, nth| match (kind, nth) {
        ("pre-rollout", 0) => 500,
        ("confirm-promotion", 0 | 1) => 403,
        _ => 200,
    })
    .await;
    let analysis = format!(
        "    interval: 1s\n    threshold: 3\n    stepWeights: [50]\n    webhooks:\n    - {{name: gate, type: pre-rollout, url: \"{url}\"}}\n    - {{name: load, url: \"{url}\", metadata: {{cmd: hey}}}}\n    - {{name: approve, type: confirm-promotion, url: \"{url}\"}}\n    - {{name: notify, type: post-rollout, url: \"{url}\"}}\n"
    );
    let (dir, mut r) = rollout_alone(&analysis);
    r.expect_exit(Duration::from_secs(30), 0).await;
    let kinds: Vec<String> = calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.kind.clone())
        .collect();
    let want = [
        "pre-rollout",
        "pre-rollout",
        "rollout",
        "confirm-promotion",
        "rollout",
        "confirm-promotion",
        "rollout",
        "confirm-promotion",
        "post-rollout",
    ];
    assert_eq!(kinds, want, "{}", r.log());
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.last().map(|c| c.phase.as_str()), Some("Succeeded"));
    let load = calls
        .iter()
        .find(|c| c.kind == "rollout")
        .expect("a rollout hook call");
    assert_eq!(load.body["name"], "reviews");
    assert_eq!(load.body["namespace"], "default");
    assert_eq!(load.body["metadata"]["cmd"], "hey");
    assert!(load.body["checksum"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
    assert!(r.log().contains("failed checks 1/3"), "{}", r.log());
    assert!(
        r.log()
            .contains("promotion waits: webhook approve answered 403"),
        "{}",
        r.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A rollback hook answering 2xx fails the release at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_webhook_rolls_back_at_once() {
    let (url, calls) = hooks(|kind, nth| match (kind, nth) {
        ("rollback", 0) => 404,
        _ => 200,
    })
    .await;
    let analysis = format!(
        "    interval: 1s\n    threshold: 5\n    stepWeights: [10, 20, 30, 40]\n    webhooks:\n    - {{name: stop, type: rollback, url: \"{url}\"}}\n    - {{name: notify, type: post-rollout, url: \"{url}\"}}\n"
    );
    let (dir, mut r) = rollout_alone(&analysis);
    r.expect_exit(Duration::from_secs(30), 1).await;
    let want = steps(&[
        ("Initializing", 0),
        ("Progressing", 10),
        ("Progressing", 20),
        ("Failed", 0),
    ]);
    assert_eq!(r.steps(), want, "{}", r.log());
    assert!(
        r.log().contains("rollback webhook stop asked for it"),
        "{}",
        r.log()
    );
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls.last().map(|c| (c.kind.as_str(), c.phase.as_str())),
        Some(("post-rollout", "Failed"))
    );
    assert_eq!(on_disk(&dir), Some(("Failed".into(), 0)));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Blue-green: the canary gets nothing for `iterations` intervals, then everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switches_all_at_once() {
    let stage = Stage::start("    interval: 1s\n    iterations: 2\n").await;
    let scrape = format!("http://{}", stage.admin);
    let mut rollout = Rollout::start(&stage.dir, &["--scrape", &scrape]);
    let load = stage.load_once_routed(&rollout, &["a"]).await;
    rollout
        .expect_line("Promoting", Duration::from_secs(30))
        .await;
    let switched = Instant::now();
    rollout.expect_exit(Duration::from_secs(30), 0).await;
    let promoted = stage.settled("Succeeded", &load).await;
    load.stop();
    let answers = load.answers();
    assert_all_ok(&answers);
    assert!(answers
        .iter()
        .filter(|a| a.sent < switched)
        .all(|a| a.upstream == "v1"));
    assert!(answers
        .iter()
        .filter(|a| a.sent > promoted)
        .all(|a| a.upstream == "v2"));
    let _ = std::fs::remove_dir_all(&stage.dir);
}

/// `meshproxy validate` lists Rollouts with the other kinds.
#[test]
fn validate_lists_rollouts() {
    let dir = config_dir(1, 2, "    stepWeight: 10\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshproxy"))
        .args(["validate", "-c"])
        .arg(&dir)
        .output()
        .expect("validate runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Rollout: 1 (reviews v1 -> v2)"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
