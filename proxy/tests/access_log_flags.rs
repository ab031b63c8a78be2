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
    let cases: [Case; 8] = [
        ("nowhere", "/", &[], 404, " NR "),
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
