//! The process lifecycle, end to end with the binary: `SIGHUP` reloads, `SIGTERM` drains
//! and exits 0, and a binary upgrade hands the listening sockets to a new process under
//! load without refusing a connection or failing a request.

mod binary;
mod common;

use bytes::Bytes;
use common::eventually;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn config(web: u16, gen: usize) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: test, namespace: default}}\nspec:\n  workload: {{labels: {{app: test}}}}\n  admin: {{address: \"127.0.0.1:0\"}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n---\n{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n  - headers: {{response: {{set: {{x-gen: \"{gen}\"}}}}}}\n    route: [{{destination: {{host: web}}}}]\n",
        common::service("web.default.svc.cluster.local", &[(web, "app: web")])
    )
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    reconnects: AtomicU64,
    unprocessed: AtomicU64,
}

impl Tally {
    fn fail(&self, what: &str) {
        eprintln!("failure: {what}");
        self.failed.fetch_add(1, Ordering::SeqCst);
    }
}

/// How a load task uses connections.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// A new connection for every request: any refused connect is counted.
    Fresh,
    /// One HTTP/1.1 keep-alive connection, replaced when the proxy closes it after a
    /// response (`Connection: close` while draining).
    KeepAlive,
    /// One h2c connection, replaced after GOAWAY.
    H2,
    /// WebSocket-like upgraded tunnels, each echoing 20 messages then closing.
    Tunnel,
}

/// Opens tunnels one after another until `stop`; a refused handshake or a broken echo
/// is a failure.
async fn tunnels(addr: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while !stop.load(Ordering::Relaxed) {
        let mut t = match common::tunnel(addr, "web").await {
            Ok(t) => t,
            Err(e) => {
                tally.fail(&format!("tunnel: {e}"));
                continue;
            }
        };
        for n in 0..20 {
            if let Err(e) = common::echo(&mut t, format!("message {n}\n").as_bytes()).await {
                tally.fail(&format!("tunnel echo: {e}"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A clean close: our EOF travels to the upstream, its EOF comes back.
        let _ = t.shutdown().await;
        let mut rest = Vec::new();
        if let Err(e) = t.read_to_end(&mut rest).await {
            tally.fail(&format!("tunnel close: {e}"));
        }
        tally.ok.fetch_add(1, Ordering::SeqCst);
    }
}

enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

async fn connect(addr: SocketAddr, h2: bool, tally: &Tally) -> Option<Conn> {
    let tcp = match tokio::net::TcpStream::connect(addr).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("connect refused: {e}");
            tally.refused.fetch_add(1, Ordering::SeqCst);
            return None;
        }
    };
    let io = TokioIo::new(tcp);
    if h2 {
        let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .ok()?;
        tokio::spawn(c);
        Some(Conn::H2(s))
    } else {
        let (s, c) = hyper::client::conn::http1::handshake(io).await.ok()?;
        tokio::spawn(c);
        Some(Conn::H1(s))
    }
}

/// Sends requests until `stop`; `delay_ms` makes each one slow at the upstream (in
/// flight across whatever happens meanwhile).
async fn load(
    addr: SocketAddr,
    mode: Mode,
    delay_ms: u64,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let h2 = matches!(mode, Mode::H2);
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        if matches!(mode, Mode::Fresh) {
            conn = None;
        }
        // A connection the proxy closed gracefully (after a response, or GOAWAY) is
        // replaced; that is not a failure, a request lost on it would be.
        let usable = match &mut conn {
            Some(Conn::H1(s)) => s.ready().await.is_ok(),
            Some(Conn::H2(s)) => s.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            if conn.is_some() {
                tally.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            conn = connect(addr, h2, &tally).await;
            if conn.is_none() {
                continue;
            }
        }
        let req = http::Request::builder()
            .uri(if h2 { "http://web/" } else { "/" })
            .header("host", "web")
            .header("x-test-delay-ms", delay_ms.to_string())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = match conn.as_mut() {
            Some(Conn::H1(s)) => s.send_request(req).await,
            Some(Conn::H2(s)) => s.send_request(req).await,
            None => continue,
        };
        match resp {
            Ok(r) if r.status() == 200 => match r.into_body().collect().await {
                Ok(_) => {
                    tally.ok.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => tally.fail(&format!("{mode:?}: body: {e}")),
            },
            Ok(r) => tally.fail(&format!("{mode:?}: status {}", r.status())),
            Err(e) if unprocessed(&e) => {
                // Refused before the proxy saw it: a client opens a new connection and
                // sends it again (RFC 9113 §6.8), as Envoy and gRPC clients do.
                tally.unprocessed.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
            Err(e) => {
                tally.fail(&format!("{mode:?}: request: {e:?}"));
                conn = None;
            }
        }
    }
}

/// True when `e` guarantees the request was never processed: it was still queued when
/// the connection closed gracefully, or HTTP/2 GOAWAY (NO_ERROR) refused its stream.
fn unprocessed(e: &hyper::Error) -> bool {
    if e.is_canceled() {
        return true;
    }
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<h2::Error>())
        .is_some_and(|h| h.is_go_away() && h.reason() == Some(h2::Reason::NO_ERROR))
}

struct Load {
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (mode, delay, n) in [
            (Mode::Fresh, 0, 3),
            (Mode::KeepAlive, 0, 3),
            (Mode::H2, 0, 2),
            (Mode::Fresh, 300, 2),
            (Mode::KeepAlive, 300, 2),
            (Mode::H2, 300, 2),
            (Mode::Tunnel, 0, 2),
        ] {
            for _ in 0..n {
                tasks.push(match mode {
                    Mode::Tunnel => tokio::spawn(tunnels(addr, tally.clone(), stop.clone())),
                    _ => tokio::spawn(load(addr, mode, delay, tally.clone(), stop.clone())),
                });
            }
        }
        Load { tally, stop, tasks }
    }

    fn ok(&self) -> u64 {
        self.tally.ok.load(Ordering::SeqCst)
    }

    async fn more(&self, n: u64) {
        let target = self.ok() + n;
        assert!(
            eventually(Duration::from_secs(30), || self.ok() >= target).await,
            "load stalled at {} requests",
            self.ok()
        );
    }

    async fn finish(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.tally
    }
}

async fn gen_of(addr: SocketAddr) -> String {
    common::send(addr, "GET", "web", "/", &[], Bytes::new(), false)
        .await
        .header("x-gen")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config() {
    let web = common::upstream("web").await;
    let p = binary::run(&config(web.addr.port(), 1), &["--workers", "1"]);
    let addr = p.addr("outbound");
    assert_eq!(gen_of(addr).await, "1");
    // Written in place, then announced: the watcher may see it first, SIGHUP must too.
    std::fs::write(p.dir.join("config.yaml"), config(web.addr.port(), 2)).unwrap();
    p.signal(Signal::SIGHUP);
    let mut seen = String::new();
    for _ in 0..200 {
        seen = gen_of(addr).await;
        if seen == "2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let web = common::upstream("web").await;
    let mut p = binary::run(
        &config(web.addr.port(), 1),
        &["--workers", "2", "--drain-timeout", "20s"],
    );
    let addr = p.addr("outbound");
    let admin = p.addr("admin");
    let load = Load::start(addr);
    load.more(100).await;
    // Slow requests on both protocols, in flight when the signal arrives.
    let slow: Vec<_> = [false, true, false, true]
        .into_iter()
        .map(|h2| {
            tokio::spawn(async move {
                common::send(
                    addr,
                    "GET",
                    "web",
                    "/slow",
                    &[("x-test-delay-ms", "800")],
                    Bytes::new(),
                    h2,
                )
                .await
            })
        })
        .collect();
    // All four reached the upstream (recorded on arrival, among the load's requests).
    let arrived = || {
        web.seen
            .paths
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.as_str() == "/slow")
            .count()
    };
    assert!(eventually(Duration::from_secs(10), || arrived() == 4).await);
    load.stop.store(true, Ordering::Relaxed);
    p.signal(Signal::SIGTERM);
    assert!(p.wait_log("draining", Duration::from_secs(10)).is_some());
    let ready = common::send(admin, "GET", "admin", "/ready", &[], Bytes::new(), false).await;
    assert_eq!(ready.status, 503, "/ready turns 503 while draining");
    for s in slow {
        let r = s.await.unwrap();
        assert_eq!(r.status, 200, "in-flight requests finish");
    }
    let tally = load.finish().await;
    assert_eq!(
        p.wait_exit(Duration::from_secs(15)),
        Some(0),
        "exit 0 after draining"
    );
    assert_eq!(tally.failed.load(Ordering::SeqCst), 0, "no request failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_waiting_at_the_drain_timeout() {
    let web = common::upstream("web").await;
    let mut p = binary::run(
        &config(web.addr.port(), 1),
        &["--workers", "1", "--drain-timeout", "500ms"],
    );
    let addr = p.addr("outbound");
    // Read before the request is sent: the upstream counts it on arrival.
    let seen = web.count();
    let stuck = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(c);
        let req = http::Request::builder()
            .uri("/")
            .header("host", "web")
            .header("x-test-delay-ms", "60000")
            .body(Full::new(Bytes::new()))
            .unwrap();
        s.send_request(req).await.is_err()
    });
    assert!(eventually(Duration::from_secs(10), || web.count() > seen).await);
    p.signal(Signal::SIGTERM);
    // Well before the stuck request could finish.
    assert_eq!(p.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(
        stuck.await.unwrap(),
        "the request still open at the timeout was cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_upgrade_under_load_refuses_nothing_and_fails_nothing() {
    let web = common::upstream("web").await;
    let socket_dir = std::env::temp_dir().join(format!("meshproxy-upgrade-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&socket_dir).unwrap();
    let sock = socket_dir.join("upgrade.sock");
    let sock_arg = sock.to_str().unwrap().to_string();
    let mut old = binary::run(
        &config(web.addr.port(), 1),
        &["--workers", "2", "--upgrade-socket", &sock_arg],
    );
    let addr = old.addr("outbound");
    let admin = old.addr("admin");
    let load = Load::start(addr);
    load.more(300).await;

    // Same config, one more worker: the new process adds a socket to the same port.
    let new = binary::run_dir(&old.dir, &["--workers", "3", "--upgrade-socket", &sock_arg]);
    assert_eq!(
        new.addr("outbound"),
        addr,
        "the new process serves the same socket"
    );
    assert_eq!(new.addr("admin"), admin, "and the same admin socket");
    assert_eq!(
        old.wait_exit(Duration::from_secs(30)),
        Some(0),
        "the old process drained and exited"
    );
    load.more(300).await;
    let ready = common::send(admin, "GET", "admin", "/ready", &[], Bytes::new(), false).await;
    assert_eq!(ready.status, 200, "the new process answers /ready");

    // And once more, from the new process to a third one.
    let mut new = new;
    let third = binary::run_dir(&old.dir, &["--workers", "1", "--upgrade-socket", &sock_arg]);
    assert_eq!(new.wait_exit(Duration::from_secs(30)), Some(0));
    load.more(300).await;
    let tally = load.finish().await;
    drop(third);
    let _ = std::fs::remove_dir_all(&socket_dir);
    eprintln!(
        "upgrade soak: {} requests, {} reconnects after a graceful close, {} sent again after GOAWAY",
        tally.ok.load(Ordering::SeqCst),
        tally.reconnects.load(Ordering::SeqCst),
        tally.unprocessed.load(Ordering::SeqCst)
    );
    assert_eq!(
        tally.refused.load(Ordering::SeqCst),
        0,
        "no connection refused"
    );
    assert_eq!(tally.failed.load(Ordering::SeqCst), 0, "no request failed");
}
