//! Real third-party clients and servers through the proxy: Python's `websockets` and
//! `grpcio` (scripts in `tests/python/`) talk to each other through the `meshproxy`
//! binary's outbound listener, routed by a VirtualService on Host/`:authority`.
//!
//! Covered: WebSocket echo (text and binary); gRPC unary, server streaming and bidi
//! streaming; a server's NOT_FOUND status and message passed through and counted with
//! `grpc_response_status="5"`; a client deadline ending in DEADLINE_EXCEEDED with the
//! proxy recording `grpc_response_status="4"` (flag `UT`); an `abort.grpcStatus` fault;
//! a retry on `unavailable` turning a first UNAVAILABLE into OK.
//!
//! The Python interpreter is `$MESHPROXY_PYTHON` (`.ci/run` makes a venv with the modules
//! and exports it), else that venv's default place, else `python3`. When none can import
//! `websockets` and `grpc`, each test prints why and passes without running.

mod binary;
mod pyenv;

use pyenv::script;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

/// Bound on waiting for a server's port line or a client's exit.
const WAIT: Duration = Duration::from_secs(60);

/// The Python interpreter with `websockets` and `grpc` importable, or why there is none
/// (looked up once).
fn python() -> Result<&'static str, &'static str> {
    static PY: OnceLock<Result<String, String>> = OnceLock::new();
    PY.get_or_init(|| pyenv::find("websockets, grpc"))
        .as_ref()
        .map(String::as_str)
        .map_err(String::as_str)
}

/// The interpreter, or `None` after printing why the test is skipped.
fn python_or_skip(test: &str) -> Option<&'static str> {
    match python() {
        Ok(py) => Some(py),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// A Python server process, killed on drop.
struct PyServer {
    /// The process.
    child: Child,
    /// The port it printed.
    port: u16,
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `script server <args>` and waits for its `PORT <n>` line.
fn start_server(py: &str, name: &str, args: &[&str]) -> PyServer {
    let mut child = Command::new(py)
        .arg(script(name))
        .arg("server")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {py} {name}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(port) = line.strip_prefix("PORT ") {
                    let port = port.trim().parse().expect("port number");
                    return PyServer { child, port };
                }
            }
            Err(_) => {
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                panic!("{name} server printed no port (exit status {status:?})");
            }
        }
    }
}

/// What a client run printed.
struct ClientRun {
    /// Exit code.
    code: Option<i32>,
    /// Its last stdout line, parsed.
    json: Value,
    /// Its stderr.
    stderr: String,
}

/// Runs `script client <args>` to completion (bounded by [`WAIT`]).
fn run_client(py: &str, name: &str, args: &[String]) -> ClientRun {
    let mut full = vec!["client".to_string()];
    full.extend_from_slice(args);
    let pyenv::Finished {
        code,
        stdout,
        stderr,
    } = pyenv::run(py, name, &full, WAIT);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    let json = last
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!("{name} client printed no JSON.\nstdout:\n{stdout}\nstderr:\n{stderr}")
        });
    ClientRun { code, json, stderr }
}

/// The proxy's config: a WebSocket service `echo` (HTTP port) and a gRPC service `grpc`
/// (GRPC port, so h2 upstream) whose VirtualService has an abort fault for calls with
/// `x-fault: unavailable`, no retries for `Flaky` calls with `x-retry: off`, and
/// `retries: {attempts: 2, retryOn: unavailable}` for other `Flaky` calls.
fn config(ws_port: u16, grpc_port: u16) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: pyclient, namespace: default}}
spec:
  admin: {{address: \"127.0.0.1:0\"}}
  workload: {{labels: {{app: pyclient, version: v1}}}}
  listeners:
  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo}}
spec:
  hosts: [echo.default.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {ws_port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: grpc}}
spec:
  hosts: [grpc.default.svc.cluster.local]
  ports: [{{number: 80, name: grpc, protocol: GRPC}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {grpc_port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo}}
spec:
  hosts: [echo]
  http:
  - route: [{{destination: {{host: echo}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: grpc}}
spec:
  hosts: [grpc]
  http:
  - name: fault
    match: [{{headers: {{x-fault: {{exact: unavailable}}}}}}]
    fault: {{abort: {{grpcStatus: UNAVAILABLE, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: grpc}}}}]
  - name: flaky-no-retry
    match: [{{uri: {{exact: /echo.Echo/Flaky}}, headers: {{x-retry: {{exact: \"off\"}}}}}}]
    retries: {{attempts: 0}}
    route: [{{destination: {{host: grpc}}}}]
  - name: flaky
    match: [{{uri: {{exact: /echo.Echo/Flaky}}}}]
    retries: {{attempts: 2, retryOn: unavailable}}
    route: [{{destination: {{host: grpc}}}}]
  - name: default
    route: [{{destination: {{host: grpc}}}}]
"
    )
}

/// A proxy in front of whichever Python servers a test started (0: none; the service's
/// endpoint is then port 1, which nothing calls).
fn start_proxy(ws_port: u16, grpc_port: u16) -> binary::Running {
    binary::run(
        &config(ws_port.max(1), grpc_port.max(1)),
        &["--workers", "1"],
    )
}

/// Runs `grpc_app.py client` against the proxy for `cases`, with extra arguments.
fn grpc_client(py: &str, p: &binary::Running, cases: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "--target".to_string(),
        p.addr("outbound").to_string(),
        "--authority".to_string(),
        "grpc.default.svc.cluster.local".to_string(),
        "--cases".to_string(),
        cases.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let run = run_client(py, "grpc_app.py", &args);
    assert_eq!(
        run.code,
        Some(0),
        "grpc client failed: {}\n{}",
        run.json,
        run.stderr
    );
    run.json
}

/// One `istio_requests_total` sample: its labels and value.
type Sample = (HashMap<String, String>, f64);

/// `GET /metrics` on the admin listener.
fn metrics_text(admin: SocketAddr) -> String {
    let mut s = TcpStream::connect(admin).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read /metrics");
    out
}

/// The `istio_requests_total` samples in a Prometheus text page.
fn requests_total(text: &str) -> Vec<Sample> {
    text.lines()
        .filter_map(|l| l.strip_prefix("istio_requests_total{"))
        .map(|rest| {
            let (labels, value) = rest.rsplit_once("} ").expect("sample line");
            let mut m = HashMap::new();
            for kv in labels.split("\",") {
                let (k, v) = kv.split_once("=\"").expect("label");
                m.insert(k.to_string(), v.trim_end_matches('"').to_string());
            }
            (m, value.trim().parse().expect("sample value"))
        })
        .collect()
}

/// Polls `/metrics` (a request is counted when it completes) until the sample of the
/// `grpc` service with `grpc_response_status=status` and `response_flags=flags` reaches
/// `count` (for at most
/// `within`); that sample if any, and all samples seen last.
fn wait_grpc_sample(
    p: &binary::Running,
    status: &str,
    flags: &str,
    count: f64,
    within: Duration,
) -> (Option<Sample>, Vec<Sample>) {
    let admin = p.addr("admin");
    let deadline = Instant::now() + within;
    loop {
        let all = requests_total(&metrics_text(admin));
        let hit = all
            .iter()
            .find(|(m, _)| {
                m.get("destination_service_name").map(String::as_str) == Some("grpc")
                    && m.get("grpc_response_status").map(String::as_str) == Some(status)
                    && m.get("response_flags").map(String::as_str) == Some(flags)
            })
            .cloned();
        if hit.as_ref().is_some_and(|(_, v)| *v >= count) || Instant::now() > deadline {
            return (hit, all);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts the sample with `grpc_response_status=status` is a gRPC request counted
/// `count` times with `flags`.
fn assert_grpc_metric(p: &binary::Running, status: &str, flags: &str, count: f64) {
    let (hit, all) = wait_grpc_sample(p, status, flags, count, Duration::from_secs(5));
    let Some((labels, value)) = hit else {
        panic!("no istio_requests_total sample with grpc_response_status=\"{status}\", response_flags=\"{flags}\"; samples:\n{all:#?}");
    };
    let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or("<absent>");
    assert_eq!(get("request_protocol"), "grpc", "{labels:#?}");
    assert_eq!(get("response_flags"), flags, "{labels:#?}");
    assert_eq!(
        get("destination_service"),
        "grpc.default.svc.cluster.local",
        "{labels:#?}"
    );
    assert_eq!(get("reporter"), "source", "{labels:#?}");
    assert_eq!(value, count, "{labels:#?}");
}

/// A case's field as a string ("" if absent).
fn field<'a>(v: &'a Value, case: &str, key: &str) -> &'a str {
    v[case][key].as_str().unwrap_or("")
}

/// (a) A `websockets` client and server exchange text and binary messages through the
/// proxy, routed by Host, and close cleanly.
#[test]
fn websocket_echo_text_and_binary() {
    let Some(py) = python_or_skip("websocket_echo_text_and_binary") else {
        return;
    };
    let server = start_server(py, "ws.py", &[]);
    let p = start_proxy(server.port, 0);
    let run = run_client(
        py,
        "ws.py",
        &[
            "--proxy".into(),
            p.addr("outbound").to_string(),
            "--host".into(),
            "echo.default.svc.cluster.local".into(),
            "--path".into(),
            "/chat/room-1?user=py".into(),
        ],
    );
    let j = &run.json;
    assert_eq!(
        run.code,
        Some(0),
        "ws client failed: {j}\nstderr:\n{}",
        run.stderr
    );
    assert_eq!(j["status"], 101, "{j}");
    assert_eq!(j["greeting"]["path"], "/chat/room-1?user=py", "{j}");
    assert_eq!(j["echoed"], 8, "{j}");
    assert_eq!(j["text"], 5, "{j}");
    assert_eq!(j["binary"], 3, "{j}");
    assert_eq!(j["pong"], true, "{j}");
    assert_eq!(j["close_code"], 1000, "{j}");
}

/// (b) grpcio unary, server-streaming and bidi-streaming calls succeed through the proxy
/// (h2 upstream on a GRPC port), and are counted as gRPC with status 0.
#[test]
fn grpc_unary_and_streams() {
    let Some(py) = python_or_skip("grpc_unary_and_streams") else {
        return;
    };
    let server = start_server(py, "grpc_app.py", &[]);
    let p = start_proxy(0, server.port);
    let j = grpc_client(py, &p, "unary,server_stream,bidi", &["--count", "20"]);
    for case in ["unary", "server_stream", "bidi"] {
        assert_eq!(field(&j, case, "code"), "OK", "{case}: {j}");
        assert_eq!(j[case]["ok"], true, "{case} answer: {j}");
    }
    assert_eq!(j["unary"]["len"], 1300, "{j}");
    assert_eq!(j["server_stream"]["count"], 20, "{j}");
    assert_eq!(j["bidi"]["count"], 20, "{j}");
    assert_grpc_metric(&p, "0", "-", 3.0);
}

/// (c) A server's NOT_FOUND passes through with its message; the proxy counts it with
/// `grpc_response_status="5"` and `request_protocol="grpc"`.
#[test]
fn grpc_server_status_passes_through() {
    let Some(py) = python_or_skip("grpc_server_status_passes_through") else {
        return;
    };
    let server = start_server(py, "grpc_app.py", &[]);
    let p = start_proxy(0, server.port);
    let j = grpc_client(py, &p, "fail", &[]);
    assert_eq!(field(&j, "fail", "code"), "NOT_FOUND", "{j}");
    assert_eq!(
        field(&j, "fail", "details"),
        "no such thing: widget-7",
        "{j}"
    );
    assert_grpc_metric(&p, "5", "-", 1.0);
}

/// (d) A 300 ms client deadline on a slow method: the client sees DEADLINE_EXCEEDED at
/// its deadline, and the proxy records the call once, as one of the three ends the race
/// between the client, the proxy and the server allows: its own `grpc-timeout` timer
/// (status 4, `UT`), the server's DEADLINE_EXCEEDED passed through (status 4, `-`), or
/// the client's cancel arriving first (code 0, `DC`). The three timers are set for about
/// the same instant (grpcio enforces the forwarded `grpc-timeout` too), so which one wins
/// is not fixed; the proxy's own enforcement is tested deterministically with a client
/// that does not enforce its deadline (`grpc_deadline.rs`).
#[test]
fn grpc_deadline_exceeded() {
    let Some(py) = python_or_skip("grpc_deadline_exceeded") else {
        return;
    };
    let server = start_server(py, "grpc_app.py", &["--slow-seconds", "3"]);
    let p = start_proxy(0, server.port);
    let j = grpc_client(py, &p, "slow", &["--deadline-ms", "300"]);
    assert_eq!(field(&j, "slow", "code"), "DEADLINE_EXCEEDED", "{j}");
    let elapsed = j["slow"]["elapsed_ms"].as_u64().unwrap_or(0);
    assert!(
        (250..2500).contains(&elapsed),
        "ended after {elapsed} ms, not at its 300 ms deadline: {j}"
    );
    let admin = p.addr("admin");
    let deadline = Instant::now() + Duration::from_secs(5);
    let grpc = loop {
        let all = requests_total(&metrics_text(admin));
        let grpc: Vec<_> = all
            .into_iter()
            .filter(|(m, _)| m["destination_service_name"] == "grpc")
            .collect();
        if !grpc.is_empty() || Instant::now() > deadline {
            break grpc;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(grpc.len(), 1, "one recorded outcome: {grpc:#?}");
    let (m, n) = &grpc[0];
    assert_eq!(*n, 1.0, "{m:#?}");
    let outcome = (
        m["response_code"].as_str(),
        m["grpc_response_status"].as_str(),
        m["response_flags"].as_str(),
    );
    assert!(
        matches!(
            outcome,
            ("200", "4", "UT") | ("200", "4", "-") | ("0", "", "DC")
        ),
        "{m:#?}"
    );
}

/// (e) `fault.abort.grpcStatus: UNAVAILABLE`: the client sees UNAVAILABLE without the
/// server being called, counted with `grpc_response_status="14"` and flag `FI`.
#[test]
fn grpc_abort_fault() {
    let Some(py) = python_or_skip("grpc_abort_fault") else {
        return;
    };
    let server = start_server(py, "grpc_app.py", &[]);
    let p = start_proxy(0, server.port);
    let j = grpc_client(py, &p, "unary", &["--metadata", "x-fault=unavailable"]);
    assert_eq!(field(&j, "unary", "code"), "UNAVAILABLE", "{j}");
    assert_grpc_metric(&p, "14", "FI", 1.0);
}

/// (f) `retries: {attempts: 2, retryOn: unavailable}`: the server fails the first call
/// with UNAVAILABLE, the proxy retries, the client sees OK and the server two calls;
/// without retries (`attempts: 0`) the same first failure reaches the client.
#[test]
fn grpc_retry_on_unavailable() {
    let Some(py) = python_or_skip("grpc_retry_on_unavailable") else {
        return;
    };
    let server = start_server(py, "grpc_app.py", &[]);
    let p = start_proxy(0, server.port);
    let j = grpc_client(py, &p, "flaky", &["--key", "retried"]);
    assert_eq!(field(&j, "flaky", "code"), "OK", "{j}");
    assert_eq!(field(&j, "flaky", "value"), "ok after 2 calls", "{j}");
    assert_eq!(j["flaky"]["server_calls"], 2, "{j}");
    assert_grpc_metric(&p, "0", "-", 2.0);

    let j = grpc_client(
        py,
        &p,
        "flaky",
        &["--key", "not-retried", "--metadata", "x-retry=off"],
    );
    assert_eq!(field(&j, "flaky", "code"), "UNAVAILABLE", "{j}");
    assert_eq!(field(&j, "flaky", "details"), "first call fails", "{j}");
    assert_eq!(j["flaky"]["server_calls"], 1, "{j}");
}
