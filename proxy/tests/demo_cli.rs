//! End to end: `meshproxy demo` starts from the embedded config and the curl lines it
//! prints work as they say.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("sh runs");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn demo_prints_curl_lines_that_work() {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("curl is required for this test (.ci/run installs it)");
    }
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_meshproxy"))
        .args(["demo", "--port", "0", "--admin-port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    // Killed however the test ends (a failed assertion must not leave it running).
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut curls = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        if line.starts_with("curl") || line.starts_with("for ") {
            curls.push(line.clone());
        }
        if line.starts_with("(access log below") {
            break;
        }
    }
    let ready_after = started.elapsed();
    eprintln!("demo ready after {ready_after:?}");
    assert_eq!(curls.len(), 6, "{curls:?}");

    let jason = sh(&curls[0]);
    assert!(
        jason.contains("\"version\":\"v2\""),
        "header routing: {jason}"
    );

    let split = sh(&curls[1]);
    assert!(
        split.contains("\"version\":\"v1\""),
        "weighted split: {split}"
    );
    assert!(
        !split.contains("\"version\":\"v2\""),
        "v2 is only for jason: {split}"
    );

    let fault = sh(&curls[2]);
    assert!(fault.starts_with("HTTP/1.1 503"), "fault: {fault}");

    let unknown = sh(&curls[3]);
    assert!(
        unknown.starts_with("HTTP/1.1 502"),
        "unknown host: {unknown}"
    );

    let metrics = sh(&curls[4]);
    assert!(
        metrics.contains("istio_requests_total{") && metrics.contains("response_flags=\"FI\""),
        "metrics: {metrics}"
    );
    let clusters = sh(&curls[5]);
    assert!(
        clusters.contains("outbound|9080|v2|reviews.default.svc.cluster.local"),
        "clusters: {clusters}"
    );

    // The access log records the flags.
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        log.push_str(&line);
        log.push('\n');
        // The last curl line's request: a host outside the registry, 502 without a flag.
        if line.contains("\" 502 - ") {
            break;
        }
    }
    assert!(log.contains(" 503 FI "), "{log}");
}
