//! End to end: 200,000 requests through `meshproxy run` while endpoints flap between
//! healthy and failing (so outlier detection ejects and returns them, and pools are
//! cleared) leave the proxy's open file descriptors and RSS where they started.

mod binary;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An upstream that fails (500) during alternate windows of `window` requests.
async fn flapping(window: u64) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let n = n.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_req: http::Request<hyper::body::Incoming>| {
                        let i = n.fetch_add(1, Ordering::Relaxed);
                        async move {
                            let mut r = http::Response::new(Full::new(Bytes::from_static(b"ok")));
                            if (i / window) % 2 == 1 {
                                *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                            }
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    port
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn drive(addr: std::net::SocketAddr, total: u64, clients: usize) {
    let sent = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let sent = sent.clone();
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                while sent.fetch_add(1, Ordering::Relaxed) < total {
                    s.ready().await.unwrap();
                    let req = http::Request::get("/")
                        .header("host", "web")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let resp = s.send_request(req).await.unwrap();
                    let _ = resp.into_body().collect().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_descriptor_or_memory_leak_under_flapping_endpoints() {
    let a = flapping(500).await;
    let b = flapping(700).await;
    let c = flapping(1100).await;
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: leak}}
spec:
  admin: {{address: \"127.0.0.1:0\"}}
  listeners:
  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web.default.svc.cluster.local]
  ports: [{{number: 80, name: http}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {a}}}}}
  - {{address: 127.0.0.1, ports: {{http: {b}}}}}
  - {{address: 127.0.0.1, ports: {{http: {c}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: web
  trafficPolicy:
    connectionPool:
      tcp: {{maxConnections: 20}}
      http: {{maxRequestsPerConnection: 50}}
    outlierDetection: {{consecutive5xxErrors: 5, interval: 50ms, baseEjectionTime: 20ms, maxEjectionPercent: 67}}
"
    );
    let p = binary::run(&yaml, &["--workers", "2", "--access-log", "off"]);
    let addr = p.addr("outbound");
    let pid = p.child.id();
    // Warm up: pools, allocator arenas and buffers reach their working size.
    drive(addr, 20_000, 8).await;
    let (fd0, rss0) = (fds(pid), p.rss());
    drive(addr, 200_000, 8).await;
    let (fd1, rss1) = (fds(pid), p.rss());
    eprintln!(
        "fds {fd0} -> {fd1}, rss {} KiB -> {} KiB",
        rss0 / 1024,
        rss1 / 1024
    );
    // Between the samples the pools may hold a few more or fewer idle connections.
    assert!(fd1 <= fd0 + 24, "file descriptors grew from {fd0} to {fd1}");
    assert!(
        rss1 <= rss0 + 8 * 1024 * 1024,
        "RSS grew from {} KiB to {} KiB",
        rss0 / 1024,
        rss1 / 1024
    );
}
