//! The request head a client cannot abuse: `Host` (RFC 9112 §3.2), absolute-form targets
//! (§3.2.2), request-targets over the head limit (414) and upgrade types other than
//! WebSocket (Envoy under Istio: 403 `upgrade_failed`), against real sockets.

mod common;
use common::{proxy, raw_http, service, upstream};

fn config(port: u16, limits: &str) -> String {
    format!(
        "{}{}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [web.default.svc.cluster.local]
  http:
  - route: [{{destination: {{host: web.default.svc.cluster.local}}}}]
",
        common::sidecar_proxy(&format!("  limits: {{{limits}}}\n")),
        service("web.default.svc.cluster.local", &[(port, "v: one")])
    )
}

fn status(resp: &str) -> &str {
    resp.split(' ').nth(1).unwrap_or("")
}

fn closes(resp: &str) -> bool {
    resp.to_ascii_lowercase().contains("connection: close")
}

#[tokio::test]
async fn host_must_be_one_valid_field() {
    let up = upstream("v1").await;
    let p = proxy(&config(up.addr.port(), ""));
    for (what, head) in [
        ("no Host", "GET / HTTP/1.1\r\n\r\n"),
        (
            "two Host lines",
            "GET / HTTP/1.1\r\nHost: web\r\nHost: web\r\n\r\n",
        ),
        (
            "two different Hosts",
            "GET / HTTP/1.1\r\nHost: web\r\nHost: evil\r\n\r\n",
        ),
        (
            "a space in Host",
            "GET / HTTP/1.1\r\nHost: local host\r\n\r\n",
        ),
        (
            "a control character",
            "GET / HTTP/1.1\r\nHost: we\x01b\r\n\r\n",
        ),
        ("a bad port", "GET / HTTP/1.1\r\nHost: web:8o\r\n\r\n"),
        ("userinfo", "GET / HTTP/1.1\r\nHost: user@web\r\n\r\n"),
    ] {
        let resp = raw_http(p.addr, head).await;
        assert_eq!(status(&resp), "400", "{what}: {resp}");
    }
    assert_eq!(up.count(), 0, "nothing reached the upstream");
    // A valid one is routed.
    let resp = raw_http(
        p.addr,
        "GET / HTTP/1.1\r\nHost: web:80\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), "200", "{resp}");
    // HTTP/1.0 predates Host: no Host is not an error (an empty authority is no known
    // host: Istio's block_all answers 502).
    let resp = raw_http(p.addr, "GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(status(&resp), "502", "{resp}");
}

#[tokio::test]
async fn an_absolute_form_target_wins_over_host() {
    let up = upstream("v1").await;
    let p = proxy(&config(up.addr.port(), ""));
    let resp = raw_http(
        p.addr,
        "GET http://web/abs?q=1 HTTP/1.1\r\nHost: elsewhere.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), "200", "{resp}");
    assert_eq!(up.last_path(), "/abs?q=1");
    assert_eq!(
        up.last_headers()["host"],
        "web",
        "the target's authority goes upstream"
    );
}

#[tokio::test]
async fn a_request_target_over_the_head_limit_gets_414() {
    let up = upstream("v1").await;
    let p = proxy(&config(up.addr.port(), "maxRequestHeadersKb: 16"));
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
        "u".repeat(17 * 1024)
    );
    let resp = raw_http(p.addr, &long).await;
    assert_eq!(status(&resp), "414", "{resp}");
    assert!(closes(&resp), "{resp}");
    // Far past it: nothing more of it is buffered or forwarded, and the rest of the
    // megabyte is drained (lingering close) so the 414 is not lost to a reset.
    let huge = format!(
        "GET /{} HTTP/1.1\r\nHost: web\r\n\r\n",
        "u".repeat(1024 * 1024)
    );
    assert_eq!(status(&raw_http(p.addr, &huge).await), "414");
    // Pipelined behind a good request, the good one is answered first.
    let pipelined = format!(
        "GET /first HTTP/1.1\r\nHost: web\r\n\r\nGET /{} HTTP/1.1\r\nHost: web\r\n\r\n",
        "u".repeat(17 * 1024)
    );
    let resp = raw_http(p.addr, &pipelined).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("HTTP/1.1 414"), "{resp}");
    assert_eq!(up.count(), 1, "only the good request went upstream");
    // Within the limit, a long target is served.
    let fine = format!(
        "GET /{} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
        "u".repeat(12 * 1024)
    );
    assert_eq!(status(&raw_http(p.addr, &fine).await), "200");
    // A large header section is still 431.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: web\r\nx-big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(status(&raw_http(p.addr, &big).await), "431");
}

#[tokio::test]
async fn only_websocket_upgrades_are_tunnelled() {
    let up = upstream("v1").await;
    let p = proxy(&config(up.addr.port(), ""));
    for proto in ["foo", "websocket, foo", "TLS/1.2", "h2"] {
        let resp = raw_http(
            p.addr,
            &format!("GET / HTTP/1.1\r\nHost: web\r\nConnection: upgrade\r\nUpgrade: {proto}\r\n\r\nraw bytes after"),
        )
        .await;
        assert_eq!(status(&resp), "403", "Upgrade: {proto}: {resp}");
        assert!(closes(&resp), "{resp}");
    }
    assert_eq!(up.count(), 0, "no byte reached the upstream");
    // `Upgrade` without `Connection: upgrade` asks for nothing: an ordinary request.
    let resp = raw_http(
        p.addr,
        "GET / HTTP/1.1\r\nHost: web\r\nUpgrade: foo\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), "200", "{resp}");
}
