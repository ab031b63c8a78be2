//! Connection-pool limits (circuit breakers) and outlier detection, as Envoy applies them
//! under Istio, against real upstreams that count what they receive.

mod common;
use common::{proxy, send, service, Proxy};
use meshproxy_config::compile::cluster::ClusterKey;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a tracked upstream saw.
#[derive(Default)]
struct Track {
    requests: AtomicU64,
    open: AtomicU64,
    max_open: AtomicU64,
    connections: AtomicU64,
    in_flight: AtomicU64,
}

struct Tracked {
    port: u16,
    t: Arc<Track>,
}

/// An upstream answering `status` after `delay_ms`, counting connections (current and
/// peak) and requests.
async fn tracked(status: u16, delay_ms: u64) -> Tracked {
    tracked_proto(status, delay_ms, false).await
}

/// Like [`tracked`], speaking HTTP/2 (prior knowledge) when `h2`.
async fn tracked_proto(status: u16, delay_ms: u64, h2: bool) -> Tracked {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let t = Arc::new(Track::default());
    let tr = t.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let t = tr.clone();
            t.connections.fetch_add(1, Ordering::SeqCst);
            let now = t.open.fetch_add(1, Ordering::SeqCst) + 1;
            t.max_open.fetch_max(now, Ordering::SeqCst);
            tokio::spawn(async move {
                let t2 = t.clone();
                let svc = hyper::service::service_fn(
                    move |_req: http::Request<hyper::body::Incoming>| {
                        let t = t2.clone();
                        async move {
                            t.requests.fetch_add(1, Ordering::SeqCst);
                            t.in_flight.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                            t.in_flight.fetch_sub(1, Ordering::SeqCst);
                            let mut r = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from("x"),
                            ));
                            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                // Counted closed at the first EOF or shutdown, which happens before the
                // proxy can see the close and open a replacement: counting after
                // `serve_connection` returns would race that replacement.
                let io = hyper_util::rt::TokioIo::new(CountedStream {
                    inner: s,
                    track: Some(t.clone()),
                });
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(io, svc)
                    .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                }
            });
        }
    });
    Tracked { port, t }
}

/// A TCP stream that decrements [`Track::open`] once, when it first reads EOF, is shut
/// down, or is dropped.
struct CountedStream {
    inner: tokio::net::TcpStream,
    track: Option<Arc<Track>>,
}

impl CountedStream {
    fn closed(&mut self) {
        if let Some(t) = self.track.take() {
            t.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.closed();
    }
}

impl tokio::io::AsyncRead for CountedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(()))) && buf.filled().len() == before {
            self.closed();
        }
        r
    }
}

impl tokio::io::AsyncWrite for CountedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.closed();
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn with_policy(ports: &[u16], policy: &str) -> Proxy {
    let eps: Vec<(u16, &str)> = ports.iter().map(|p| (*p, "app: web")).collect();
    proxy(&format!(
        "{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  trafficPolicy:\n{policy}",
        service("web.default.svc.cluster.local", &eps)
    ))
}

fn state(p: &Proxy) -> Arc<meshproxy::upstream::cluster_state::ClusterState> {
    let active = p.server.shared.active.load();
    let id = active
        .snapshot
        .find_cluster(&ClusterKey {
            service: "web.default.svc.cluster.local".into(),
            port: 80,
            subset: None,
        })
        .unwrap();
    active.cluster(id).clone()
}

async fn until(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn get(p: &Proxy) -> common::Reply {
    send(p.addr, "GET", "web", "/", &[], bytes::Bytes::new(), false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn istio_circuit_breaking_task() {
    // Istio's circuit-breaking task: maxConnections 1, http1MaxPendingRequests 1,
    // maxRequestsPerConnection 1, with 20 concurrent clients.
    let up = tracked(200, 20).await;
    let p = with_policy(
        &[up.port],
        "    connectionPool:\n      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}\n",
    );
    let addr = p.addr;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..5 {
                    let started = Instant::now();
                    let r = send(addr, "GET", "web", "/", &[], bytes::Bytes::new(), false).await;
                    out.push((
                        r.status,
                        r.header("x-envoy-overloaded").to_string(),
                        started.elapsed(),
                    ));
                }
                out
            })
        })
        .collect();
    let mut ok = 0;
    let mut overflow = 0;
    for t in tasks {
        for (status, overloaded, took) in t.await.unwrap() {
            match status {
                200 => ok += 1,
                503 => {
                    overflow += 1;
                    assert_eq!(overloaded, "true");
                    assert!(
                        took < Duration::from_millis(500),
                        "overflow answers at once, took {took:?}"
                    );
                }
                other => panic!("unexpected status {other}"),
            }
        }
    }
    assert!(ok > 0 && overflow > 0, "ok {ok}, overflow {overflow}");
    assert_eq!(
        up.t.max_open.load(Ordering::SeqCst),
        1,
        "never more than one upstream connection"
    );
    assert_eq!(
        up.t.requests.load(Ordering::SeqCst),
        ok,
        "overflowed requests never reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_connections_is_an_exact_cap_and_extra_requests_wait() {
    let up = tracked(200, 100).await;
    let p = with_policy(
        &[up.port],
        "    connectionPool:\n      tcp: {maxConnections: 3}\n",
    );
    let addr = p.addr;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn(async move {
                send(addr, "GET", "web", "/", &[], bytes::Bytes::new(), false)
                    .await
                    .status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            200,
            "requests under the pending cap are never refused"
        );
    }
    assert_eq!(up.t.max_open.load(Ordering::SeqCst), 3);
    assert_eq!(up.t.requests.load(Ordering::SeqCst), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_queue_is_exact() {
    let up = tracked(200, 300).await;
    let p = with_policy(
        &[up.port],
        "    connectionPool:\n      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 2}\n",
    );
    let st = state(&p);
    let addr = p.addr;
    let spawn = || {
        tokio::spawn(async move {
            send(addr, "GET", "web", "/", &[], bytes::Bytes::new(), false)
                .await
                .status
        })
    };
    let first = spawn();
    until(
        "the first request at the upstream",
        Duration::from_secs(5),
        || up.t.in_flight.load(Ordering::SeqCst) == 1,
    )
    .await;
    let queued = [spawn(), spawn()];
    until("two pending requests", Duration::from_secs(5), || {
        st.limits.pending() == 2
    })
    .await;
    let r = get(&p).await;
    assert_eq!(r.status, 503, "the third waiting request overflows");
    assert_eq!(r.header("x-envoy-overloaded"), "true");
    assert_eq!(first.await.unwrap(), 200);
    for q in queued {
        assert_eq!(q.await.unwrap(), 200, "queued requests are served in turn");
    }
    assert_eq!(up.t.max_open.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_requests_is_exact() {
    let up = tracked(200, 300).await;
    let p = with_policy(
        &[up.port],
        "    connectionPool:\n      http: {http2MaxRequests: 2}\n",
    );
    let addr = p.addr;
    let spawn = || {
        tokio::spawn(async move {
            send(addr, "GET", "web", "/", &[], bytes::Bytes::new(), false)
                .await
                .status
        })
    };
    let a = spawn();
    let b = spawn();
    until("two requests in flight", Duration::from_secs(5), || {
        up.t.in_flight.load(Ordering::SeqCst) == 2
    })
    .await;
    let r = get(&p).await;
    assert_eq!((r.status, r.header("x-envoy-overloaded")), (503, "true"));
    assert_eq!(a.await.unwrap(), 200);
    assert_eq!(b.await.unwrap(), 200);
    assert_eq!(get(&p).await.status, 200, "under the cap again");
    assert_eq!(up.t.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_requests_per_connection_one_disables_keep_alive() {
    let up = tracked(200, 0).await;
    let p = with_policy(
        &[up.port],
        "    connectionPool:\n      http: {maxRequestsPerConnection: 1}\n",
    );
    for _ in 0..5 {
        assert_eq!(get(&p).await.status, 200);
    }
    assert_eq!(up.t.connections.load(Ordering::SeqCst), 5);
    let up2 = tracked(200, 0).await;
    let p2 = with_policy(
        &[up2.port],
        "    connectionPool:\n      http: {maxRequestsPerConnection: 3}\n",
    );
    for _ in 0..6 {
        assert_eq!(get(&p2).await.status, 200);
    }
    assert_eq!(up2.t.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_retries_caps_concurrent_retries() {
    let up = tracked(503, 200).await;
    let p = proxy(&format!(
        "{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  trafficPolicy:\n    connectionPool:\n      http: {{maxRetries: 1}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - route: [{{destination: {{host: web}}}}]\n    retries: {{attempts: 1, retryOn: 5xx}}\n",
        service("web.default.svc.cluster.local", &[(up.port, "app: web")])
    ));
    let addr = p.addr;
    let a = tokio::spawn(async move {
        send(addr, "GET", "web", "/", &[], bytes::Bytes::new(), false)
            .await
            .status
    });
    let b = tokio::spawn(async move {
        send(addr, "GET", "web", "/", &[], bytes::Bytes::new(), false)
            .await
            .status
    });
    assert_eq!(a.await.unwrap(), 503);
    assert_eq!(b.await.unwrap(), 503);
    assert_eq!(
        up.t.requests.load(Ordering::SeqCst),
        3,
        "two first attempts, one retry: the second retry overflowed"
    );
    assert_eq!(
        state(&p)
            .limits
            .overflows(meshproxy::upstream::limits::Limit::Retries),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_timeout_and_max_connection_duration_close_connections() {
    let up = tracked(200, 0).await;
    let p = with_policy(
        &[up.port],
        "    connectionPool:\n      http: {idleTimeout: 100ms}\n",
    );
    assert_eq!(get(&p).await.status, 200);
    until(
        "the idle connection to close",
        Duration::from_secs(5),
        || up.t.open.load(Ordering::SeqCst) == 0,
    )
    .await;
    assert_eq!(get(&p).await.status, 200);
    assert_eq!(up.t.connections.load(Ordering::SeqCst), 2);

    let up2 = tracked(200, 0).await;
    let p2 = with_policy(
        &[up2.port],
        "    connectionPool:\n      tcp: {maxConnectionDuration: 200ms}\n",
    );
    assert_eq!(get(&p2).await.status, 200);
    assert_eq!(get(&p2).await.status, 200);
    assert_eq!(
        up2.t.connections.load(Ordering::SeqCst),
        1,
        "reused while young"
    );
    until(
        "the old connection to close",
        Duration::from_secs(5),
        || up2.t.open.load(Ordering::SeqCst) == 0,
    )
    .await;
    assert_eq!(get(&p2).await.status, 200);
    assert_eq!(up2.t.connections.load(Ordering::SeqCst), 2);
}

fn outlier(ports: &[u16], od: &str) -> Proxy {
    with_policy(
        ports,
        &format!("    loadBalancer: {{simple: ROUND_ROBIN}}\n    outlierDetection: {od}\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ejected_after_n_consecutive_5xx_then_back_then_twice_as_long() {
    let bad = tracked(500, 0).await;
    let good = tracked(200, 0).await;
    let p = outlier(&[bad.port, good.port], "{consecutive5xxErrors: 3, interval: 10s, baseEjectionTime: 400ms, maxEjectionPercent: 100}");
    // Round robin alternates: after 6 requests the bad endpoint has failed 3 times.
    for _ in 0..6 {
        get(&p).await;
    }
    assert_eq!(bad.t.requests.load(Ordering::SeqCst), 3);
    let ejected_at = Instant::now();
    for _ in 0..10 {
        assert_eq!(
            get(&p).await.status,
            200,
            "the ejected endpoint gets no traffic"
        );
    }
    assert_eq!(bad.t.requests.load(Ordering::SeqCst), 3);
    // It returns after baseEjectionTime.
    until("the endpoint to return", Duration::from_secs(5), || {
        ejected_at.elapsed() > Duration::from_millis(450)
    })
    .await;
    for _ in 0..6 {
        get(&p).await;
    }
    assert_eq!(
        bad.t.requests.load(Ordering::SeqCst),
        6,
        "back, and ejected again after 3 more failures"
    );
    let second = Instant::now();
    // Second ejection: 2 × 400ms.
    until(
        "past one base ejection time",
        Duration::from_secs(5),
        || second.elapsed() > Duration::from_millis(500),
    )
    .await;
    for _ in 0..4 {
        assert_eq!(get(&p).await.status, 200, "still ejected at 1.25 × base");
    }
    assert_eq!(bad.t.requests.load(Ordering::SeqCst), 6);
    let st = state(&p);
    assert_eq!(st.endpoints()[0].outlier.times_ejected(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_ejection_percent_with_two_and_three_endpoints() {
    // 2 endpoints, default 10%: ejecting one would be 50%, so it never happens.
    let bad = tracked(500, 0).await;
    let good = tracked(200, 0).await;
    let p = outlier(
        &[bad.port, good.port],
        "{consecutive5xxErrors: 1, baseEjectionTime: 30s}",
    );
    for _ in 0..20 {
        get(&p).await;
    }
    assert_eq!(
        bad.t.requests.load(Ordering::SeqCst),
        10,
        "never ejected under a 10% cap"
    );

    // 3 endpoints, 67%: two bad ones can be ejected (66.7%), a third cannot.
    let b1 = tracked(500, 0).await;
    let b2 = tracked(500, 0).await;
    let b3 = tracked(500, 0).await;
    let p = outlier(
        &[b1.port, b2.port, b3.port],
        "{consecutive5xxErrors: 1, baseEjectionTime: 30s, maxEjectionPercent: 67}",
    );
    for _ in 0..30 {
        get(&p).await;
    }
    let st = state(&p);
    let now = meshproxy::upstream::outlier::now_nanos();
    let ejected = st
        .endpoints()
        .iter()
        .filter(|e| e.outlier.is_ejected(now))
        .count();
    assert_eq!(ejected, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn panic_mode_and_no_healthy_upstream() {
    // minHealthPercent 50 with 2 of 3 ejected (33% healthy): panic, all endpoints used.
    let b1 = tracked(500, 0).await;
    let b2 = tracked(500, 0).await;
    let g = tracked(200, 0).await;
    let p = outlier(
        &[b1.port, b2.port, g.port],
        "{consecutive5xxErrors: 1, baseEjectionTime: 30s, maxEjectionPercent: 100, minHealthPercent: 50}",
    );
    for _ in 0..12 {
        get(&p).await;
    }
    let before = b1.t.requests.load(Ordering::SeqCst) + b2.t.requests.load(Ordering::SeqCst);
    for _ in 0..12 {
        get(&p).await;
    }
    let after = b1.t.requests.load(Ordering::SeqCst) + b2.t.requests.load(Ordering::SeqCst);
    assert!(
        after > before,
        "in panic mode ejected endpoints still get traffic"
    );

    // One endpoint, ejected, panic off (Istio's default 0%): 503 UH.
    let only = tracked(500, 0).await;
    let p = outlier(
        &[only.port],
        "{consecutive5xxErrors: 2, baseEjectionTime: 30s, maxEjectionPercent: 100}",
    );
    assert_eq!(get(&p).await.status, 500);
    assert_eq!(get(&p).await.status, 500);
    let r = get(&p).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "no healthy upstream");
    assert_eq!(only.t.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_scenario_deprecated_consecutive_errors_counts_gateway_errors() {
    // The seed scenario: consecutiveErrors maps to gateway errors only (istio/api#617).
    let five_hundred = tracked(500, 0).await;
    let gateway = tracked(503, 0).await;
    let good = tracked(200, 0).await;
    let p = outlier(
        &[five_hundred.port, gateway.port, good.port],
        "{consecutiveErrors: 3, interval: 30s, baseEjectionTime: 30s, maxEjectionPercent: 50}\n    connectionPool:\n      tcp: {maxConnections: 100}\n      http: {http1MaxPendingRequests: 10, http2MaxRequests: 2, maxRequestsPerConnection: 1}",
    );
    for _ in 0..30 {
        get(&p).await;
    }
    let st = state(&p);
    let now = meshproxy::upstream::outlier::now_nanos();
    assert!(
        !st.endpoints()[0].outlier.is_ejected(now),
        "a plain 500 is not a gateway error"
    );
    assert!(st.endpoints()[1].outlier.is_ejected(now), "503s are");
    assert_eq!(gateway.t.requests.load(Ordering::SeqCst), 3);
    assert_eq!(
        good.t.connections.load(Ordering::SeqCst),
        good.t.requests.load(Ordering::SeqCst),
        "maxRequestsPerConnection: 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ejection_closes_the_endpoints_idle_connections() {
    let flaky = tracked(500, 0).await;
    let good = tracked(200, 0).await;
    let p = outlier(
        &[flaky.port, good.port],
        "{consecutive5xxErrors: 2, baseEjectionTime: 30s, maxEjectionPercent: 100}",
    );
    for _ in 0..4 {
        get(&p).await;
    }
    until(
        "the ejected endpoint's connections to close",
        Duration::from_secs(5),
        || flaky.t.open.load(Ordering::SeqCst) == 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http2_streams_per_connection_are_capped() {
    let up = tracked_proto(200, 300, true).await;
    let p = proxy(&format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: web}}\nspec:\n  hosts: [web.default.svc.cluster.local]\n  ports: [{{number: 80, name: http2, protocol: HTTP2}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http2: {}}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  trafficPolicy:\n    connectionPool:\n      http: {{maxConcurrentStreams: 2}}\n",
        up.port
    ));
    let addr = p.addr;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(async move {
                send(addr, "GET", "web", "/", &[], bytes::Bytes::new(), false)
                    .await
                    .status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(up.t.requests.load(Ordering::SeqCst), 6);
    assert_eq!(
        up.t.connections.load(Ordering::SeqCst),
        3,
        "6 concurrent streams, 2 per connection"
    );

    // Without the cap, one multiplexed connection carries them all.
    let up2 = tracked_proto(200, 300, true).await;
    let p2 = proxy(&format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: web}}\nspec:\n  hosts: [web.default.svc.cluster.local]\n  ports: [{{number: 80, name: http2, protocol: HTTP2}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http2: {}}}}}]\n",
        up2.port
    ));
    let addr = p2.addr;
    let first = tokio::spawn(async move {
        send(addr, "GET", "web", "/", &[], bytes::Bytes::new(), false)
            .await
            .status
    });
    until("the first stream", Duration::from_secs(5), || {
        up2.t.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    let rest: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn(async move {
                send(addr, "GET", "web", "/", &[], bytes::Bytes::new(), false)
                    .await
                    .status
            })
        })
        .collect();
    assert_eq!(first.await.unwrap(), 200);
    for t in rest {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(up2.t.connections.load(Ordering::SeqCst), 1);
}
