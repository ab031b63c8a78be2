//! End to end through the binary: the `upstream` subcommand on a free port, `load`
//! against it in closed and open loop over HTTP/1.1 and h2c, and a quick `bench` of the
//! direct target. Checks the JSON reports (requests made, no errors, ordered
//! percentiles); no timing assertions.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_meshproxy-loadtest");
const BODY: u64 = 100;

/// A running `upstream` subcommand, killed on drop.
struct Upstream {
    child: Child,
    addr: String,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn upstream() -> Upstream {
    let mut child = Command::new(BIN)
        .args(["upstream", "--listen", "127.0.0.1:0", "--threads", "1"])
        .args(["--body-size", &BODY.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the upstream");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the upstream's first line");
    let addr = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim()
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    Upstream { child, addr }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadtest-it-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `load` with `args` against the upstream; its JSON report.
fn load(up: &Upstream, name: &str, args: &[&str]) -> Value {
    let json = temp(name).join("report.json");
    let out = Command::new(BIN)
        .arg("load")
        .arg(format!("http://{}/bench?x=1", up.addr))
        .args(args)
        .args(["--quiet", "--json"])
        .arg(&json)
        .stdin(Stdio::null())
        .output()
        .expect("run load");
    assert!(
        out.status.success(),
        "load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("p99.9"), "no table on stdout: {table}");
    let text = std::fs::read_to_string(&json).expect("report written");
    serde_json::from_str(&text).expect("report is JSON")
}

fn check(v: &Value, mode: &str, protocol: &str) {
    assert_eq!(v["mode"], mode, "{v:#}");
    assert_eq!(v["protocol"], protocol, "{v:#}");
    let requests = v["requests"].as_u64().expect("requests");
    assert!(requests > 0, "no requests: {v:#}");
    for kind in ["connect", "reset", "timeout", "status", "other"] {
        assert_eq!(v["errors"][kind], 0, "{kind} errors: {v:#}");
    }
    assert_eq!(v["bytes"].as_u64(), Some(requests * BODY), "{v:#}");
    let lat = &v["latency_us"];
    let p = |k: &str| lat[k].as_f64().unwrap_or_else(|| panic!("no {k}: {v:#}"));
    assert_eq!(lat["count"].as_u64(), Some(requests));
    assert!(p("min") > 0.0, "{v:#}");
    let ordered = ["min", "p50", "p90", "p99", "p999", "max"];
    for w in ordered.windows(2) {
        assert!(p(w[0]) <= p(w[1]), "{} > {}: {v:#}", w[0], w[1]);
    }
    assert!(v["rps"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(v["duration_s"].as_f64().unwrap_or(0.0) > 0.0);
}

#[test]
fn closed_loop_http1() {
    let up = upstream();
    let v = load(
        &up,
        "closed-h1",
        &["--connections", "4", "--duration", "300ms"],
    );
    check(&v, "closed", "http1");
    assert_eq!(v["connections"], 4);
    assert!(v["send_lag_us"].is_null());
}

#[test]
fn open_loop_http1() {
    let up = upstream();
    let v = load(
        &up,
        "open-h1",
        &[
            "-c", "4", "-d", "500ms", "--rate", "400", "--warmup", "100ms",
        ],
    );
    check(&v, "open", "http1");
    assert_eq!(v["target_rate"], 400.0);
    let lag = &v["send_lag_us"];
    assert!(lag["count"].as_u64().unwrap_or(0) > 0, "{v:#}");
}

#[test]
fn closed_loop_h2c_multiplexed() {
    let up = upstream();
    let v = load(
        &up,
        "closed-h2",
        &[
            "--h2",
            "--connections",
            "2",
            "--streams",
            "4",
            "-d",
            "300ms",
        ],
    );
    check(&v, "closed", "h2c");
    assert_eq!(v["streams"], 4);
}

#[test]
fn open_loop_h2c() {
    let up = upstream();
    let v = load(
        &up,
        "open-h2",
        &[
            "--h2",
            "-c",
            "2",
            "--streams",
            "2",
            "-d",
            "500ms",
            "-r",
            "400",
            "--host",
            "svc",
        ],
    );
    check(&v, "open", "h2c");
    assert_eq!(v["host"], "svc");
}

#[test]
fn generator_threads() {
    let up = upstream();
    let v = load(&up, "threads", &["-c", "4", "-t", "2", "-d", "300ms"]);
    check(&v, "closed", "http1");
    assert_eq!(v["threads"], 2);
}

#[test]
fn errors_are_counted_by_kind() {
    // A port with nothing listening: every attempt is a connect error, and the run
    // still ends and reports.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let json = temp("refused").join("report.json");
    let out = Command::new(BIN)
        .args([
            "load",
            &format!("http://127.0.0.1:{port}/"),
            "-c",
            "2",
            "-d",
            "200ms",
        ])
        .args(["--quiet", "--json"])
        .arg(&json)
        .output()
        .expect("run load");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("JSON");
    assert_eq!(v["requests"], 0);
    assert!(v["errors"]["connect"].as_u64().unwrap_or(0) > 0, "{v:#}");
}

#[test]
fn quick_bench_of_the_direct_target_writes_json_table_and_plot() {
    let out_dir = temp("bench");
    let out = Command::new(BIN)
        .args(["bench", "--quick", "--rounds", "1", "--only", "direct"])
        .args([
            "--closed",
            "300ms",
            "--rate-duration",
            "300ms",
            "--rate",
            "500",
        ])
        .arg("--out")
        .arg(&out_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| direct |"), "{stdout}");
    let files: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .expect("out dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    let with = |ext: &str| {
        files
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == ext))
            .unwrap_or_else(|| panic!("no .{ext} in {files:?}"))
            .clone()
    };
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(with("json")).expect("json")).expect("JSON");
    let svg = std::fs::read_to_string(with("svg")).expect("svg");
    assert!(svg.contains("<svg") && svg.contains("direct"));
    assert!(std::fs::read_to_string(with("md"))
        .expect("md")
        .contains("| direct |"));
    let t = &json["targets"][0];
    assert_eq!(t["name"], "direct");
    let run = &t["runs"][0];
    assert!(run["error"].is_null(), "{run:#}");
    for phase in ["closed", "rate"] {
        let l = &run[phase]["load"];
        assert!(l["requests"].as_u64().unwrap_or(0) > 0, "{phase}: {run:#}");
        assert_eq!(l["errors"]["connect"], 0);
    }
    assert!(t["summary"]["rps"]["median"].as_f64().unwrap_or(0.0) > 0.0);

    // The report subcommand re-renders the same tables from the JSON.
    let report = Command::new(BIN)
        .arg("report")
        .arg(with("json"))
        .output()
        .expect("run report");
    assert!(report.status.success());
    assert!(String::from_utf8_lossy(&report.stdout).contains("| direct |"));
    let _ = std::fs::remove_dir_all(&out_dir);
}
