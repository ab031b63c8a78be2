//! End to end: local replies carry Envoy's response flags in the access log
//! (NR, NC, UH, UF, URX, UC, UT, DI, FI) with the right status codes.

mod binary;
mod common;

use std::time::Duration;

/// (host, path, request headers, expected status, expected flags)
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    u16,
    &'static str,
);

fn next_line(p: &binary::Running) -> String {
    p.stdout
        .recv_timeout(Duration::from_secs(10))
        .expect("an access log line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_replies_carry_envoy_flags() {
    let ok = common::upstream("ok").await;
    let resetter = common::upstream("resetter").await;
    // A port with nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: flags}}
spec:
  admin: {{address: \"127.0.0.1:0\"}}
  listeners:
  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}
---
{ok_svc}{closed_svc}{reset_svc}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ok}}
spec:
  host: ok
  subsets:
  - {{name: none, labels: {{version: nothing-has-this}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ok}}
spec:
  hosts: [ok]
  http:
  - match: [{{uri: {{prefix: /nc}}}}]
    route: [{{destination: {{host: ok, subset: missing}}}}]
  - match: [{{uri: {{prefix: /uh}}}}]
    route: [{{destination: {{host: ok, subset: none}}}}]
  - match: [{{uri: {{prefix: /ut}}}}]
    timeout: 100ms
    route: [{{destination: {{host: ok}}}}]
  - match: [{{uri: {{prefix: /fi}}}}]
    fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: ok}}}}]
  - match: [{{uri: {{prefix: /di}}}}]
    fault: {{delay: {{fixedDelay: 10ms, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: ok}}}}]
  - route: [{{destination: {{host: ok}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: partial}}
spec:
  hosts: [partial.example]
  http:
  - match: [{{uri: {{prefix: /only}}}}]
    route: [{{destination: {{host: ok}}}}]
",
        ok_svc = common::service(
            "ok.default.svc.cluster.local",
            &[(ok.addr.port(), "app: ok")]
        ),
        closed_svc = common::service(
            "closed.default.svc.cluster.local",
            &[(closed, "app: closed")]
        ),
        reset_svc = common::service(
            "resetter.default.svc.cluster.local",
            &[(resetter.addr.port(), "app: r")]
        ),
    );
    let p = binary::run(&yaml, &["--workers", "1"]);
    let addr = p.addr("outbound");
    let cases: [Case; 9] = [
        // REGISTRY_ONLY (the default): Istio's block_all, 502 with no flag.
        ("nowhere", "/", &[], 502, " - "),
        // A known host whose routes do not match: no route.
        ("partial.example", "/", &[], 404, " NR "),
        ("ok", "/nc", &[], 503, " NC "),
        ("ok", "/uh", &[], 503, " UH "),
        ("closed", "/", &[], 503, " UF,URX "),
        ("resetter", "/", &[("x-test-reset", "all")], 503, " UC "),
        ("ok", "/ut", &[("x-test-delay-ms", "2000")], 504, " UT "),
        ("ok", "/fi", &[], 418, " FI "),
        ("ok", "/di", &[], 200, " DI "),
    ];
    for (host, path, headers, status, flags) in cases {
        let r = common::send(addr, "GET", host, path, headers, bytes::Bytes::new(), false).await;
        assert_eq!(r.status, status, "{host}{path}: {}", r.body);
        let line = next_line(&p);
        assert!(
            line.contains(&format!("\" {status}{flags}")),
            "{host}{path}: {line}"
        );
        assert!(line.contains(&format!("\"GET {path} HTTP/1.1\"")), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_log() {
    let ok = common::upstream("ok").await;
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: j}}\nspec:\n  admin: {{address: \"127.0.0.1:0\"}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n---\n{}",
        common::service("ok.default.svc.cluster.local", &[(ok.addr.port(), "app: ok")])
    );
    let p = binary::run(&yaml, &["--workers", "1", "--log-format", "json"]);
    let r = common::send(
        p.addr("outbound"),
        "GET",
        "ok",
        "/j?x=1",
        &[("user-agent", "t/1"), ("x-request-id", "rid-1")],
        bytes::Bytes::new(),
        false,
    )
    .await;
    assert_eq!(r.status, 200);
    let line = next_line(&p);
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/j?x=1");
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["response_code"], 200);
    assert_eq!(v["response_flags"], "-");
    assert_eq!(v["user_agent"], "t/1");
    assert_eq!(v["request_id"], "rid-1");
    assert_eq!(v["authority"], "ok");
    assert_eq!(v["upstream_host"], ok.addr.to_string());
    assert_eq!(v["bytes_sent"], 2);
    assert!(v["start_time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_off_writes_nothing() {
    let ok = common::upstream("ok").await;
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: j}}\nspec:\n  admin: {{address: \"127.0.0.1:0\"}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n---\n{}",
        common::service("ok.default.svc.cluster.local", &[(ok.addr.port(), "app: ok")])
    );
    let p = binary::run(&yaml, &["--workers", "1", "--access-log", "off"]);
    assert_eq!(common::get_at(p.addr("outbound"), "ok").await, 200);
    assert!(
        p.stdout.recv_timeout(Duration::from_millis(300)).is_err(),
        "no access log line expected"
    );
}

/// Request heads the HTTP/1 codec refuses before routing (the smuggling guard, hyper's
/// parser, a head over `maxRequestHeadersKb`) are answered by the codec and still get
/// their log line with flag `DPE` (details `http1.codec_error` in JSON, as Envoy's), and are counted
/// in `meshproxy_downstream_protocol_errors_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codec_refusals_are_logged_with_dpe() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let yaml = "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {name: codec}
spec:
  admin: {address: \"127.0.0.1:0\"}
  listeners:
  - {name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}
";
    let p = binary::run(yaml, &["--workers", "1"]);
    let addr = p.addr("outbound");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let cases: [(&str, u16); 3] = [
        // Smuggling guard: a bare LF ends a field line.
        ("GET / HTTP/1.1\r\nHost: a\nx: y\r\n\r\n", 400),
        // Not a request line at all.
        ("\u{1}\u{2}garbage\r\n\r\n", 400),
        // Over the 60 KiB default head limit: hyper's 431.
        (&huge, 431),
    ];
    for (i, (raw, status)) in cases.iter().enumerate() {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(raw.as_bytes()).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        let answer = String::from_utf8_lossy(&out);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "case {i}: {answer}"
        );
        let line = next_line(&p);
        assert!(
            line.contains(&format!("\"- - HTTP/1.1\" {status} DPE ")),
            "case {i}: {line}"
        );
    }
    let metrics = common::metrics_text(p.addr("admin")).await;
    assert!(
        metrics.contains("\nmeshproxy_downstream_protocol_errors_total{protocol=\"http1\"} 3\n"),
        "{}",
        metrics
    );
}
