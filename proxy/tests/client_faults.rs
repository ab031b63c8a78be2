//! End to end: a client's own faults are never the upstream's. Malformed, truncated and
//! cancelled request bodies sent to `meshproxy run` with outlier detection on
//! (`consecutive5xxErrors: 3`) are answered `400 DPE` (or logged `DC`), consume no retry
//! and eject nothing, while three real upstream 5xx still eject the endpoint.

mod binary;
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// An upstream that reads each request body to its end and answers 200, or 503 on
/// `/fail`; it counts the requests whose head reached it.
struct Upstream {
    port: u16,
    heads: Arc<AtomicU64>,
}

async fn upstream() -> Upstream {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let heads = Arc::new(AtomicU64::new(0));
    let seen = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        seen.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let fail = req.uri().path() == "/fail";
                            let _ = http_body_util::BodyExt::collect(req.into_body()).await;
                            let mut r = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from("ok"),
                            ));
                            if fail {
                                *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                            }
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Upstream { port, heads }
}

fn config(port: u16) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: edge, namespace: default}}
spec:
  admin: {{address: \"127.0.0.1:0\"}}
  listeners:
  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}
---
{svc}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [web]
  http:
  - route: [{{destination: {{host: web}}}}]
    retries: {{attempts: 2, retryOn: \"reset,connect-failure,refused-stream\"}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: web
  trafficPolicy:
    outlierDetection: {{consecutive5xxErrors: 3, interval: 30s, baseEjectionTime: 30s, maxEjectionPercent: 100}}
",
        svc = common::service("web.default.svc.cluster.local", &[(port, "app: web")])
    )
}

/// Sends `head` + `body`, half-closes when `eof`, and reads what comes back until the
/// proxy closes.
async fn exchange(addr: std::net::SocketAddr, request: &[u8], eof: bool) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    if eof {
        s.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

const HEAD_CHUNKED: &str =
    "POST /upload HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n";

/// The malformed and truncated bodies: (what, bytes after the head, half-close after).
fn malformed() -> Vec<(&'static str, String, bool)> {
    vec![
        (
            "bad chunk size",
            format!("{HEAD_CHUNKED}5\r\nhello\r\nZZ\r\n"),
            false,
        ),
        (
            "chunk longer than announced",
            format!("{HEAD_CHUNKED}3\r\nhello\r\n0\r\n\r\n"),
            false,
        ),
        (
            "bare LF",
            format!("{HEAD_CHUNKED}5\nhello\r\n0\r\n\r\n"),
            false,
        ),
        (
            "missing last chunk",
            format!("{HEAD_CHUNKED}5\r\nhello\r\n"),
            true,
        ),
        (
            "body shorter than Content-Length",
            "POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: 100\r\n\r\nshort".to_string(),
            true,
        ),
    ]
}

/// Starts an upload, waits until the upstream has its head (so the proxy is forwarding
/// it), then resets the connection (SO_LINGER 0 makes close send RST).
async fn cancelled_upload(addr: std::net::SocketAddr, heads: &AtomicU64) {
    let before = heads.load(Ordering::SeqCst);
    let s = TcpStream::connect(addr).await.unwrap();
    let mut s = s;
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: 100000\r\n\r\npartial")
        .await
        .unwrap();
    assert!(
        common::eventually(WAIT, || heads.load(Ordering::SeqCst) > before).await,
        "the upload reached the upstream"
    );
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

fn metric(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_faults_never_eject_a_healthy_upstream() {
    let up = upstream().await;
    let p = binary::run(
        &config(up.port),
        &["--workers", "1", "--log-format", "json"],
    );
    let (addr, admin) = (p.addr("outbound"), p.addr("admin"));

    // 20 malformed or truncated bodies: 400, closed, flag DPE, at most one upstream try.
    let cases = malformed();
    for round in 0..4 {
        for (what, req, eof) in &cases {
            let resp = exchange(addr, req.as_bytes(), *eof).await;
            assert!(
                resp.starts_with("HTTP/1.1 400"),
                "{what} (round {round}): expected 400, got {resp:?}"
            );
            assert!(
                resp.to_ascii_lowercase().contains("connection: close"),
                "{what}: {resp}"
            );
        }
    }
    // 20 cancelled uploads: the client resets mid-body.
    for _ in 0..20 {
        cancelled_upload(addr, &up.heads).await;
    }
    // Every one of the 40 is logged, with whose fault it was.
    let mut dpe = 0;
    let mut dc = 0;
    while dpe + dc < 40 {
        let line = p
            .stdout
            .recv_timeout(WAIT)
            .expect("an access log line per request");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        match v["response_flags"].as_str() {
            Some("DPE") => {
                assert_eq!(v["response_code"], 400, "{line}");
                dpe += 1;
            }
            Some("DC") => {
                assert_eq!(v["response_code"], 0, "{line}");
                dc += 1;
            }
            other => panic!("unexpected flags {other:?}: {line}"),
        }
    }
    assert_eq!((dpe, dc), (20, 20));

    let text = common::metrics_text(admin).await;
    assert_eq!(
        metric(&text, "meshproxy_outlier_ejections_total", &[]),
        0,
        "{text}"
    );
    // The route retries resets: had any of them been booked as the upstream's reset, it
    // would have been retried.
    assert_eq!(
        metric(&text, "meshproxy_cluster_retries_total", &[]),
        0,
        "{text}"
    );
    assert!(
        up.heads.load(Ordering::SeqCst) <= 40,
        "at most one upstream try each"
    );
    let req = "istio_requests_total{";
    assert_eq!(
        metric(
            &text,
            req,
            &["response_flags=\"DPE\"", "response_code=\"400\""]
        ),
        20
    );
    assert_eq!(metric(&text, req, &["response_flags=\"DC\""]), 20);
    assert_eq!(metric(&text, req, &["response_flags=\"UC\""]), 0);
    // The endpoint is healthy: a normal upload goes through.
    let ok = exchange(
        addr,
        b"POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        false,
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");

    // Three real upstream 5xx still eject it.
    for _ in 0..3 {
        let r = common::send(addr, "GET", "web", "/fail", &[], bytes::Bytes::new(), false).await;
        assert_eq!(r.status, 503);
    }
    let text = common::metrics_text(admin).await;
    assert_eq!(
        metric(&text, "meshproxy_outlier_ejections_total", &[]),
        1,
        "{text}"
    );
    let r = common::send(addr, "GET", "web", "/", &[], bytes::Bytes::new(), false).await;
    assert_eq!(r.status, 503, "ejected: no healthy upstream");
}

/// Envoy starts the per-try timeout once the client's request is complete: a client slow
/// to send its body is not an upstream timeout (which would count toward ejection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_not_an_upstream_timeout() {
    let up = upstream().await;
    let yaml = config(up.port).replace(
        "retries: {attempts: 2, retryOn: \"reset,connect-failure,refused-stream\"}",
        "retries: {attempts: 1, perTryTimeout: 100ms, retryOn: \"reset\"}",
    );
    let p = binary::run(&yaml, &["--workers", "1"]);
    let mut s = TcpStream::connect(p.addr("outbound")).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello")
        .await
        .unwrap();
    let before = up.heads.load(Ordering::SeqCst);
    assert!(
        common::eventually(WAIT, || up.heads.load(Ordering::SeqCst) > before).await,
        "the upload reached the upstream"
    );
    // The client pauses for three per-try timeouts in the middle of its body.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(b"world").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    let resp = String::from_utf8_lossy(&out);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}
