//! Soak: constant load through `meshproxy run` while the config is rewritten every half
//! second, one endpoint flaps between answering, failing (503) and dropping connections,
//! and some clients hang up mid-request. Afterwards the proxy's resident memory, open
//! descriptors and live tasks are back where they were after warm-up, and no request
//! failed at the transport level.
//!
//! CI runs it for 20 s; `MESHPROXY_SOAK_SECONDS=300 cargo test --release -p meshproxy
//! --test soak -- --nocapture` is the longer run whose numbers are in the README (it
//! prints one `SOAK` line).

mod binary;
mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// An upstream cycling every 50 requests through: answering 200, answering 503, and
/// closing connections without an answer.
async fn flapping() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let n = n.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |_r: http::Request<hyper::body::Incoming>| {
                        let phase = (n.fetch_add(1, Ordering::Relaxed) / 50) % 3;
                        async move {
                            match phase {
                                0 => Ok(http::Response::new(Full::new(Bytes::from_static(b"ok")))),
                                1 => {
                                    let mut r = http::Response::new(Full::new(Bytes::new()));
                                    *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                                    Ok(r)
                                }
                                _ => Err(std::io::Error::other("dropping the connection")),
                            }
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    port
}

fn config(a: u16, b: u16, flaky: u16, weight_a: u32) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: soak}}
spec:
  admin: {{address: \"127.0.0.1:0\"}}
  listeners:
  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc}}
spec:
  hosts: [svc.default.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {a}}}, labels: {{version: a}}}}
  - {{address: 127.0.0.1, ports: {{http: {b}}}, labels: {{version: b}}}}
  - {{address: 127.0.0.1, ports: {{http: {flaky}}}, labels: {{version: b}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc}}
spec:
  host: svc
  trafficPolicy:
    connectionPool: {{http: {{http1MaxPendingRequests: 1024}}}}
    outlierDetection: {{consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 2s, maxEjectionPercent: 50}}
  subsets:
  - {{name: a, labels: {{version: a}}}}
  - {{name: b, labels: {{version: b}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc}}
spec:
  hosts: [svc]
  http:
  - route:
    - {{destination: {{host: svc, subset: a}}, weight: {weight_a}}}
    - {{destination: {{host: svc, subset: b}}, weight: {weight_b}}}
",
        weight_b = 100 - weight_a
    )
}

/// One process sample from `/metrics`: (RSS bytes, open fds, live tasks, downstream
/// connections).
async fn sample(admin: SocketAddr) -> (f64, f64, f64, f64) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let resp = client
        .get(format!("http://{admin}/metrics").parse().unwrap())
        .await
        .expect("metrics");
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let get = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    (
        get("meshproxy_process_resident_memory_bytes"),
        get("meshproxy_process_open_fds"),
        get("meshproxy_worker_tasks_alive"),
        get("meshproxy_downstream_connections_active"),
    )
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    unavailable: AtomicU64,
    other_status: AtomicU64,
    transport_errors: AtomicU64,
    hangups: AtomicU64,
}

/// One client: pooled keep-alive requests; every 25th request instead opens its own
/// connection, sends half a request or a whole one, and hangs up without reading.
async fn client(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        if i.is_multiple_of(25) {
            if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                let req: &[u8] = if i.is_multiple_of(50) {
                    b"GET /hangup HTTP/1.1\r\nHost: svc\r\n\r\n"
                } else {
                    b"GET /half HTTP/1.1\r\nHo"
                };
                let _ = s.write_all(req).await;
                tally.hangups.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        let req = http::Request::get(format!("http://{addr}/x"))
            .header("host", "svc")
            .body(Full::new(Bytes::new()))
            .unwrap();
        match http.request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await;
                match (status, body.is_ok()) {
                    (200, true) => tally.ok.fetch_add(1, Ordering::Relaxed),
                    (503, true) => tally.unavailable.fetch_add(1, Ordering::Relaxed),
                    (_, true) => tally.other_status.fetch_add(1, Ordering::Relaxed),
                    (_, false) => tally.transport_errors.fetch_add(1, Ordering::Relaxed),
                };
            }
            Err(_) => {
                tally.transport_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_under_reloads_failures_and_hangups_stays_flat() {
    let seconds: u64 = std::env::var("MESHPROXY_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let a = common::upstream("a").await;
    let b = common::upstream("b").await;
    let flaky = flapping().await;
    let (pa, pb) = (a.addr.port(), b.addr.port());
    let p = binary::run(
        &config(pa, pb, flaky, 50),
        &["--workers", "2", "--access-log", "off"],
    );
    let addr = p.addr("outbound");
    let admin = p.addr("admin");

    // Warm-up: pools, buffers and per-thread metric handles exist before the baseline.
    let stop = Arc::new(AtomicBool::new(false));
    let warm = Arc::new(Tally::default());
    let clients: Vec<_> = (0..16)
        .map(|_| tokio::spawn(client(addr, stop.clone(), warm.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let idle = |admin| async move {
        let mut s = sample(admin).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.3 > 0.0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            s = sample(admin).await;
        }
        s
    };
    let start = idle(admin).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..16)
        .map(|_| tokio::spawn(client(addr, stop.clone(), tally.clone())))
        .collect();
    let began = Instant::now();
    let mut reloads = 0u32;
    while began.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        reloads += 1;
        let w = if reloads.is_multiple_of(2) { 50 } else { 80 };
        std::fs::write(p.dir.join("config.yaml"), config(pa, pb, flaky, w)).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let end = idle(admin).await;

    let requests = tally.ok.load(Ordering::Relaxed)
        + tally.unavailable.load(Ordering::Relaxed)
        + tally.other_status.load(Ordering::Relaxed)
        + tally.transport_errors.load(Ordering::Relaxed);
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!(
        "SOAK {seconds}s: {requests} requests ({} ok, {} 503, {} other, {} transport errors), {} hang-ups, {reloads} reloads; RSS {:.1} -> {:.1} MiB, fds {} -> {}, tasks {} -> {}",
        tally.ok.load(Ordering::Relaxed),
        tally.unavailable.load(Ordering::Relaxed),
        tally.other_status.load(Ordering::Relaxed),
        tally.transport_errors.load(Ordering::Relaxed),
        tally.hangups.load(Ordering::Relaxed),
        mib(start.0),
        mib(end.0),
        start.1,
        end.1,
        start.2,
        end.2,
    );
    assert!(requests > 1000, "the load ran: {requests}");
    assert_eq!(tally.transport_errors.load(Ordering::Relaxed), 0);
    assert_eq!(tally.other_status.load(Ordering::Relaxed), 0);
    assert_eq!(end.3, 0.0, "every downstream connection closed");
    // Flat: descriptors and tasks within a few of the baseline (idle pooled upstream
    // connections come and go), memory within the allocator's noise.
    assert!(end.1 <= start.1 + 8.0, "fds {} -> {}", start.1, end.1);
    assert!(end.2 <= start.2 + 8.0, "tasks {} -> {}", start.2, end.2);
    assert!(
        end.0 <= start.0 + 16.0 * 1024.0 * 1024.0,
        "RSS {:.1} -> {:.1} MiB",
        mib(start.0),
        mib(end.0)
    );
}
