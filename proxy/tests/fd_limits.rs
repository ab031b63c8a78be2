//! File-descriptor exhaustion, end to end with the binary under a lowered
//! `RLIMIT_NOFILE` (256): the downstream connection cap is derived from it; near the cap
//! the oldest idle connections are closed so new clients are served; at the cap (every
//! connection busy) new connections are closed at once and counted; when descriptors run
//! out all the same (requests mirrored: two upstream connections each), failed accepts
//! are retried every 50 ms, not in a loop, and the admin port answers on its spare
//! descriptor. Every wait is on something observable (a response, a closed socket, a
//! metric value, the process's descriptor count), bounded.

mod binary;
mod common;

use meshproxy::server::fd_budget::{pressure_at, Budget};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The hard (and, unless said otherwise, soft) descriptor limit of the proxy under test.
const NOFILE: u64 = 256;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: web\r\n\r\n";

fn config(web: u16) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: test, namespace: default}}\nspec:\n  workload: {{labels: {{app: test}}}}\n  admin: {{address: \"127.0.0.1:0\"}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n---\n{}",
        common::service("web", &[(web, "app: web")])
    )
}

/// The cap the proxy must derive: one worker, one listener.
fn expected_cap() -> u64 {
    u64::from(
        Budget {
            nofile: NOFILE,
            workers: 1,
            listener_sockets: 1,
        }
        .cap(),
    )
}

/// An admin GET: status and body (status 0 when not answered within 5 s).
async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    let Ok(resp) =
        tokio::time::timeout(Duration::from_secs(5), common::raw_http(admin, &req)).await
    else {
        return (0, format!("GET {path}: no answer within 5 s"));
    };
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, resp)
}

/// The value of the series `series` (name with labels) in the admin `/metrics`.
async fn metric(admin: SocketAddr, series: &str) -> u64 {
    let (status, text) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in the metrics"))
}

/// Polls `series` until it equals `want` (bounded); its last value.
async fn metric_reaches(admin: SocketAddr, series: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = metric(admin, series).await;
        if v == want || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads one HTTP/1.1 response (head and `content-length` body); its status, 0 when the
/// connection closed first.
async fn response_status(s: &mut TcpStream) -> u16 {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return 0,
        };
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        let Some(head_end) = text.find("\r\n\r\n") else {
            continue;
        };
        let len: usize = text[..head_end]
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0);
        if out.len() >= head_end + 4 + len {
            return text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        }
    }
}

/// A keep-alive connection that got a `200` for one request (`what` names it).
async fn served(addr: SocketAddr, what: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(GET).await.expect("write");
    assert_eq!(response_status(&mut s).await, 200, "{what} was not served");
    s
}

/// A new client's status, retried (bounded) until it is `200`: connections and
/// descriptors are given back asynchronously once held requests complete.
async fn served_eventually(addr: SocketAddr) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = 0;
    while Instant::now() < deadline {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(GET).await.expect("write");
        status = response_status(&mut s).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    status
}

/// True when the peer closed `s` within a few seconds (end of stream or reset, with no
/// bytes before).
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_idle_connections_make_room_under_a_low_fd_limit() {
    let web = common::upstream("web").await;
    let p = binary::run_with_nofile(
        &config(web.addr.port()),
        &["--workers", "1"],
        (NOFILE, NOFILE),
    );
    let (addr, admin) = (p.addr("outbound"), p.addr("admin"));
    let cap = metric(admin, "meshproxy_downstream_connections_max").await;
    assert_eq!(
        cap,
        expected_cap(),
        "the cap derived from RLIMIT_NOFILE {NOFILE}"
    );
    let at = u64::from(pressure_at(cap as u32));
    // Up to the cap: all served (none refused); past 90 % the oldest idle (for a second)
    // are closed until the count is back at 90 %.
    let mut conns = Vec::new();
    for i in 0..cap {
        conns.push(served(addr, &format!("connection {i}")).await);
    }
    let overload = "meshproxy_downstream_idle_closed_total{reason=\"overload\"}";
    assert_eq!(metric_reaches(admin, overload, cap - at).await, cap - at);
    // More clients: each one served, each time the oldest idle one is closed (waited
    // for: connections idle for less than a second are spared, so a burst faster than
    // that would reach the cap instead).
    for i in 0..10 {
        conns.push(served(addr, &format!("connection {}", cap + i)).await);
        let want = cap - at + i + 1;
        assert_eq!(metric_reaches(admin, overload, want).await, want);
    }
    let evicted = cap - at + 10;
    // A fresh client is served (and one more old connection makes room for it).
    let mut fresh = served(addr, "the fresh client").await;
    assert_eq!(
        metric_reaches(admin, overload, evicted + 1).await,
        evicted + 1
    );
    // Exactly the oldest were closed, in order.
    for (i, s) in conns.iter_mut().enumerate().take(evicted as usize + 1) {
        assert!(
            closed(s).await,
            "connection {i} (among the oldest) is still open"
        );
    }
    for s in conns.iter_mut().skip(evicted as usize + 1) {
        s.write_all(GET).await.expect("write");
        assert_eq!(
            response_status(s).await,
            200,
            "a newer connection was closed"
        );
    }
    fresh.write_all(GET).await.expect("write");
    assert_eq!(response_status(&mut fresh).await, 200);
    // The admin port answered all along; nothing was refused.
    assert_eq!(admin_get(admin, "/ready").await.0, 200);
    let refused = "meshproxy_downstream_connections_refused_total{listener=\"outbound\"}";
    assert_eq!(metric(admin, refused).await, 0);
    assert_eq!(
        metric(admin, "meshproxy_downstream_accept_errors_total").await,
        0
    );
}

/// An upstream that holds every request until released.
struct Holding {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

async fn holding_upstream() -> Holding {
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let (release, release_rx) = tokio::sync::watch::channel(false);
    let seen = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, release_rx) = (seen.clone(), release_rx.clone());
            let svc = hyper::service::service_fn(move |_req| {
                let mut release_rx = release_rx.clone();
                seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    let _ = release_rx.wait_for(|r| *r).await;
                    let body = http_body_util::Full::new(bytes::Bytes::from_static(b"done"));
                    Ok::<_, std::convert::Infallible>(http::Response::new(body))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    Holding {
        addr,
        received,
        release,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_new_connections_are_refused_and_admin_still_answers() {
    let web = holding_upstream().await;
    // A soft limit below the hard one: the proxy raises it and derives the cap from 256.
    let p = binary::run_with_nofile(&config(web.addr.port()), &["--workers", "1"], (128, NOFILE));
    let (addr, admin) = (p.addr("outbound"), p.addr("admin"));
    assert_eq!(metric(admin, "meshproxy_process_max_fds").await, NOFILE);
    let cap = metric(admin, "meshproxy_downstream_connections_max").await;
    assert_eq!(cap, expected_cap());
    // The cap's worth of connections, each with a request held upstream (each also holds
    // an upstream connection: the headroom the cap leaves).
    let mut busy = Vec::new();
    for i in 0..cap as usize {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(GET).await.expect("write");
        busy.push(s);
        assert!(
            common::eventually(Duration::from_secs(10), || web
                .received
                .load(Ordering::SeqCst)
                > i)
            .await,
            "request {i} did not reach the upstream"
        );
    }
    // At the cap, with nothing idle to close: a new connection is closed at once.
    let mut refused = TcpStream::connect(addr)
        .await
        .expect("the kernel completes it");
    let _ = refused.write_all(GET).await;
    assert!(
        closed(&mut refused).await,
        "a connection past the cap was served"
    );
    let series = "meshproxy_downstream_connections_refused_total{listener=\"outbound\"}";
    assert!(metric_reaches(admin, series, 1).await >= 1);
    // The admin port answers at the cap.
    assert_eq!(admin_get(admin, "/ready").await.0, 200);
    let overload = "meshproxy_downstream_idle_closed_total{reason=\"overload\"}";
    assert_eq!(
        metric(admin, overload).await,
        0,
        "a busy connection was closed"
    );
    // Released: every held request completes, and new clients are served again.
    web.release.send_replace(true);
    for (i, s) in busy.iter_mut().enumerate() {
        assert_eq!(response_status(s).await, 200, "held request {i}");
    }
    drop(busy);
    assert_eq!(
        served_eventually(addr).await,
        200,
        "not served once connections were free"
    );
}

/// `config` plus a route that mirrors every request to the same service: each request
/// then holds two upstream connections, more than the cap's headroom allows, so the
/// process does run out of descriptors.
fn mirrored_config(web: u16) -> String {
    format!(
        "{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - route: [{{destination: {{host: web}}}}]\n    mirror: {{host: web}}\n",
        config(web)
    )
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_accept_does_not_spin_and_admin_answers() {
    let web = holding_upstream().await;
    let p = binary::run_with_nofile(
        &mirrored_config(web.addr.port()),
        &["--workers", "1"],
        (NOFILE, NOFILE),
    );
    let (addr, admin) = (p.addr("outbound"), p.addr("admin"));
    let pid = p.child.id();
    // Busy connections until the process has no descriptor left (one under the cap, so
    // the cap does not refuse the client that waits below).
    let mut busy = Vec::new();
    for _ in 0..expected_cap() - 1 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(GET).await.expect("write");
        busy.push(s);
    }
    let exhausted =
        common::eventually(Duration::from_secs(10), || open_fds(pid) as u64 >= NOFILE).await;
    assert!(exhausted, "only {} descriptors open", open_fds(pid));
    // A new client now meets EMFILE: it waits in the backlog, the accept is retried.
    let mut waiting = TcpStream::connect(addr)
        .await
        .expect("the kernel completes it");
    waiting.write_all(GET).await.expect("write");
    let errors = "meshproxy_downstream_accept_errors_total";
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut first = metric(admin, errors).await;
    while first == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        first = metric(admin, errors).await;
    }
    assert!(first > 0, "no failed accept counted");
    // The admin port keeps answering, again and again (its spare descriptor is taken
    // back after each connection).
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(admin_get(admin, "/ready").await.0, 200);
    }
    // Failed accepts are retried every 50 ms, not in a loop: over the time measured, at
    // most one per 50 ms (plus one for the edges).
    let measured = started.elapsed();
    let later = metric(admin, errors).await;
    let bound = measured.as_millis() as u64 / 50 + 2;
    assert!(
        later - first <= bound,
        "{} failed accepts in {measured:?}: spinning",
        later - first
    );
    // Released: descriptors come back; the waiting client was not lost (it is answered:
    // 200, or 503 if its upstream connection met EMFILE too), and new clients are served.
    web.release.send_replace(true);
    let status = response_status(&mut waiting).await;
    assert!(
        matches!(status, 200 | 503),
        "the waiting client got {status}"
    );
    drop(busy);
    assert_eq!(
        served_eventually(addr).await,
        200,
        "not served once descriptors were free"
    );
}

/// A proxy config with `maxDownstreamConnections: max`.
fn capped(max: u32, web: u16) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: test, namespace: default}}\nspec:\n  workload: {{labels: {{app: test}}}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n  limits:\n    maxDownstreamConnections: {max}\n---\n{}",
        common::service("web", &[(web, "app: web")])
    )
}

#[tokio::test]
async fn a_configured_cap_refuses_past_it_and_a_reload_changes_it() {
    let web = common::upstream("web").await;
    let p = common::proxy(&capped(2, web.addr.port()));
    let d = p.server.shared.downstream.clone();
    assert_eq!(d.stats().cap, 2);
    let _a = served(p.addr, "the first connection").await;
    let _b = served(p.addr, "the second connection").await;
    let mut c = TcpStream::connect(p.addr).await.expect("connect");
    let _ = c.write_all(GET).await;
    assert!(closed(&mut c).await, "served past maxDownstreamConnections");
    assert_eq!(d.stats().refused, vec![("outbound".to_string(), 1)]);
    // A reload raises the cap: the next connection is served, the count kept.
    let snap = meshproxy_config::compile::load_str("test.yaml", &capped(3, web.addr.port()))
        .unwrap_or_else(|e| panic!("{e}"));
    p.server.apply(snap).expect("reload");
    assert_eq!(d.stats().cap, 3);
    let _c = served(p.addr, "a connection under the raised cap").await;
    assert_eq!(d.stats().refused, vec![("outbound".to_string(), 1)]);
    assert_eq!(d.stats().open, 3);
}
