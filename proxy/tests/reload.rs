//! Hot reload under load: the config file is rewritten while HTTP/1.1 keep-alive, h2c and
//! streaming traffic flows; every valid version is in force within milliseconds, every
//! invalid one is refused whole, and no request or connection fails.

mod common;
use bytes::Bytes;
use common::eventually;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshproxy::access_log::AccessLog;
use meshproxy::reload::{self, Reloader};
use meshproxy::server::{Options, Server};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Chunks in a streaming response, one every [`CHUNK_EVERY`].
const CHUNKS: usize = 20;
const CHUNK_EVERY: Duration = Duration::from_millis(20);

/// An upstream answering with its name (`x-upstream`); `/stream` answers [`CHUNKS`]
/// chunks spread over time, so responses are in flight across reloads.
async fn upstream(name: &'static str) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |mut req: http::Request<hyper::body::Incoming>| async move {
                        if req.headers().contains_key(http::header::UPGRADE) {
                            let r = common::accept_upgrade(&mut req);
                            return Ok(r.map(|b| b.map_err(|e| match e {}).boxed()));
                        }
                        let body = if req.uri().path() == "/stream" {
                            let (mut tx, body) = http_body_util::channel::Channel::<
                                Bytes,
                                std::convert::Infallible,
                            >::new(1);
                            tokio::spawn(async move {
                                for _ in 0..CHUNKS {
                                    tokio::time::sleep(CHUNK_EVERY).await;
                                    if tx
                                        .send_data(Bytes::from_static(b"0123456789"))
                                        .await
                                        .is_err()
                                    {
                                        return;
                                    }
                                }
                            });
                            body.boxed()
                        } else {
                            Full::new(Bytes::from(name)).map_err(|e| match e {}).boxed()
                        };
                        let mut r = http::Response::new(body);
                        r.headers_mut()
                            .insert("x-upstream", http::HeaderValue::from_static(name));
                        Ok::<_, std::convert::Infallible>(r)
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    port
}

/// A proxy with two workers, its config directory, a reloader and a file watcher.
struct Reloading {
    server: Arc<Server>,
    dir: PathBuf,
    /// Remove `dir` on drop.
    owns_dir: bool,
    _watcher: reload::Watcher,
}

impl Reloading {
    fn start(yaml: &str) -> Reloading {
        let dir = temp_dir();
        write(&dir, yaml);
        let mut r = Self::start_at(dir.clone(), vec![dir]);
        r.owns_dir = true;
        r
    }

    /// Serves the config at `paths` (files or directories inside `dir`).
    fn start_at(dir: PathBuf, paths: Vec<PathBuf>) -> Reloading {
        let snap = meshproxy_config::compile::load(&paths).expect("first config is valid");
        let options = Options {
            workers: 2,
            ..Options::default()
        };
        let server = Arc::new(Server::start(snap, options, AccessLog::disabled()).unwrap());
        let reloader = Reloader::new(paths, &server);
        let _ = server.shared.reloader.set(reloader.clone());
        let watcher = reload::watch(reloader, &[]).expect("watch the config dir");
        Reloading {
            server,
            dir,
            owns_dir: false,
            _watcher: watcher,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr("outbound").unwrap()
    }

    fn accepted(&self) -> u64 {
        self.server.shared.reloads_accepted.load(Ordering::SeqCst)
    }

    fn rejected(&self) -> u64 {
        self.server.shared.reloads_rejected.load(Ordering::SeqCst)
    }
}

impl Drop for Reloading {
    fn drop(&mut self) {
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "meshproxy-reload-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Replaces the config the way editors and `kubectl cp` do: a new file renamed over the
/// old one, so a reader never sees half a file.
fn write(dir: &Path, yaml: &str) {
    let tmp = dir.join(".config.yaml.tmp");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, dir.join("config.yaml")).unwrap();
}

const PROXY: &str = "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {name: test, namespace: default}\nspec:\n  workload: {labels: {app: test}}\n  admin: {address: \"127.0.0.1:0\"}\n  listeners:\n  - {name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}\n";

/// Weights (v1, v2) by generation: all-v1, all-v2, and a split.
fn weights(gen: usize) -> (u32, u32) {
    match gen % 3 {
        0 => (100, 0),
        1 => (0, 100),
        _ => (50, 50),
    }
}

/// Version `gen` of the config: weights, the subsets' labels (a blue/green flip every
/// fourth generation), an extra route every other one, and pool settings that change
/// (new cluster state) every fifth. Every response carries `x-gen` so a client sees
/// which version served it.
fn config(gen: usize, v1: u16, v2: u16) -> String {
    let (w1, w2) = weights(gen);
    // On a flip, subset "v1" selects the pods labelled v2 and the other way round, so the
    // weights are swapped too: the traffic shares stay what `weights` says.
    let flip = gen % 4 == 3;
    let (l1, l2) = if flip { ("v2", "v1") } else { ("v1", "v2") };
    let (w1, w2) = if flip { (w2, w1) } else { (w1, w2) };
    let extra_route = if gen.is_multiple_of(2) {
        format!("  - match: [{{uri: {{prefix: /special}}}}]\n    headers: {{response: {{set: {{x-gen: \"{gen}\"}}}}}}\n    route: [{{destination: {{host: web, subset: v2}}}}]\n")
    } else {
        String::new()
    };
    let pool = 1000 + (gen / 5) * 10;
    format!(
        "{PROXY}---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: web}}\nspec:\n  hosts: [web.default.svc.cluster.local]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{http: {v1}}}, labels: {{version: v1}}}}\n  - {{address: 127.0.0.1, ports: {{http: {v2}}}, labels: {{version: v2}}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  trafficPolicy:\n    connectionPool:\n      tcp: {{maxConnections: {pool}}}\n      http: {{http1MaxPendingRequests: {pool}, http2MaxRequests: {pool}}}\n  subsets:\n  - {{name: v1, labels: {{version: {l1}}}}}\n  - {{name: v2, labels: {{version: {l2}}}}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [web]\n  http:\n{extra_route}  - headers: {{response: {{set: {{x-gen: \"{gen}\"}}}}}}\n    route:\n    - {{destination: {{host: web, subset: v1}}, weight: {w1}}}\n    - {{destination: {{host: web, subset: v2}}, weight: {w2}}}\n"
    )
}

/// An invalid version, one of several kinds of mistakes.
fn invalid(gen: usize, v1: u16, v2: u16) -> String {
    let good = config(gen, v1, v2);
    match gen % 4 {
        // Malformed YAML.
        0 => format!("{good}  - {{destination: [unclosed\n"),
        // A negative weight.
        1 => good.replacen("weight: ", "weight: -1", 1),
        // An unknown field.
        2 => good.replacen("  hosts: [web]\n", "  hosts: [web]\n  retriez: 3\n", 1),
        // All-zero weights.
        _ => good
            .replace("weight: 100}", "weight: 0}")
            .replace("weight: 50}", "weight: 0}"),
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    v1: AtomicU64,
    v2: AtomicU64,
    streams: AtomicU64,
    echoes: AtomicU64,
}

/// Keeps one upgraded tunnel busy until `stop`, echoing messages through it.
async fn tunnel_load(addr: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut t = match common::tunnel(addr, "web").await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tunnel: {e}");
            tally.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        if let Err(e) = common::echo(&mut t, format!("message {n}\n").as_bytes()).await {
            eprintln!("tunnel echo: {e}");
            tally.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        tally.echoes.fetch_add(1, Ordering::Relaxed);
    }
}

/// Keeps one connection busy until `stop`: HTTP/1.1 keep-alive or h2c, plain requests
/// or streaming ones. Any error (refused, reset, wrong status, short body) is a failure.
async fn load(addr: SocketAddr, h2: bool, stream: bool, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = TokioIo::new(tcp);
    let mut h1 = None;
    let mut h2s = None;
    if h2 {
        let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(c);
        h2s = Some(s);
    } else {
        let (s, c) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(c);
        h1 = Some(s);
    }
    let path = if stream { "/stream" } else { "/" };
    while !stop.load(Ordering::Relaxed) {
        let req = http::Request::builder()
            .uri(if h2 {
                format!("http://web{path}")
            } else {
                path.to_string()
            })
            .header("host", "web")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = match (&mut h1, &mut h2s) {
            (Some(s), _) => match s.ready().await {
                Ok(()) => s.send_request(req).await,
                Err(e) => Err(e),
            },
            (_, Some(s)) => match s.ready().await {
                Ok(()) => s.send_request(req).await,
                Err(e) => Err(e),
            },
            _ => unreachable!(),
        };
        let ok = match resp {
            Ok(r) if r.status() == 200 => {
                let who = r.headers().get("x-upstream").cloned();
                match r.into_body().collect().await {
                    Ok(b) => {
                        let len = b.to_bytes().len();
                        if stream && len != CHUNKS * 10 {
                            eprintln!("short stream: {len} bytes");
                            false
                        } else {
                            match who.as_ref().map(|h| h.as_bytes()) {
                                Some(b"v1") => tally.v1.fetch_add(1, Ordering::Relaxed),
                                _ => tally.v2.fetch_add(1, Ordering::Relaxed),
                            };
                            if stream {
                                tally.streams.fetch_add(1, Ordering::Relaxed);
                            }
                            true
                        }
                    }
                    Err(e) => {
                        eprintln!("body failed: {e}");
                        false
                    }
                }
            }
            Ok(r) => {
                eprintln!("status {}", r.status());
                false
            }
            Err(e) => {
                eprintln!("request failed: {e}");
                false
            }
        };
        if ok {
            tally.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
}

/// A keep-alive probe: which version and upstream served a request.
struct Probe {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Probe {
    async fn new(addr: SocketAddr) -> Probe {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(c);
        Probe { sender }
    }

    /// (x-gen, x-upstream) of one request.
    async fn get(&mut self, path: &str) -> (String, String) {
        let req = http::Request::builder()
            .uri(path)
            .header("host", "web")
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.sender.ready().await.expect("probe connection open");
        let r = self.sender.send_request(req).await.expect("probe request");
        assert_eq!(r.status(), 200);
        let h = |k: &str| {
            r.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let out = (h("x-gen"), h("x-upstream"));
        let _ = r.into_body().collect().await;
        out
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_rewrites_under_load_lose_nothing() {
    let v1 = upstream("v1").await;
    let v2 = upstream("v2").await;
    let p = Reloading::start(&config(0, v1, v2));
    let addr = p.addr();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..8 {
        tasks.push(tokio::spawn(load(
            addr,
            i % 2 == 1,
            false,
            tally.clone(),
            stop.clone(),
        )));
    }
    for i in 0..4 {
        tasks.push(tokio::spawn(load(
            addr,
            i % 2 == 1,
            true,
            tally.clone(),
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(tunnel_load(addr, tally.clone(), stop.clone())));
    let mut probe = Probe::new(addr).await;
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut invalid_written = 0;
    let mut last_good = 0;
    for gen in 1..=200usize {
        if gen % 10 == 5 {
            // Invalid: refused whole, the previous version keeps serving.
            let before = p.rejected();
            write(&p.dir, &invalid(gen, v1, v2));
            invalid_written += 1;
            assert!(
                eventually(Duration::from_secs(10), || p.rejected() > before).await,
                "invalid version {gen} was not refused"
            );
            let (seen, _) = probe.get("/").await;
            assert_eq!(
                seen,
                last_good.to_string(),
                "the good config stays in force"
            );
            continue;
        }
        let written = Instant::now();
        write(&p.dir, &config(gen, v1, v2));
        let want = gen.to_string();
        loop {
            let (seen, _) = probe.get("/").await;
            if seen == want {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(10),
                "version {gen} not in force after 10s (still {seen})"
            );
        }
        latencies.push(written.elapsed());
        last_good = gen;
        // Traffic follows the version's weights (and its routes).
        let (w1, _) = weights(gen);
        let mut got_v1 = 0;
        for _ in 0..20 {
            let (g, who) = probe.get("/").await;
            assert_eq!(g, want);
            if who == "v1" {
                got_v1 += 1;
            }
        }
        match w1 {
            100 => assert_eq!(got_v1, 20, "version {gen}: all traffic to v1"),
            0 => assert_eq!(got_v1, 0, "version {gen}: all traffic to v2"),
            _ => assert!(
                got_v1 > 0 && got_v1 < 20,
                "version {gen}: split, {got_v1}/20 to v1"
            ),
        }
        let (g, who) = probe.get("/special").await;
        assert_eq!(g, want);
        if gen.is_multiple_of(2) {
            assert_eq!(who, "v2", "version {gen}: /special routed to v2");
        }
    }
    let elapsed = started.elapsed();
    // Twelve load connections, the tunnel and the probe, all still open.
    assert_eq!(
        p.server.shared.connections.load(Ordering::SeqCst),
        14,
        "no downstream connection was closed by a reload"
    );
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    latencies.sort();
    let median = percentile(&latencies, 0.5);
    let p99 = percentile(&latencies, 0.99);
    eprintln!(
        "reload soak: {ok} requests in {elapsed:?} ({:.0} req/s, {} streams, {} tunnel echoes), {failed} failed; \
         v1 {} v2 {}; reload latency (write -> first request on the new config): median {:.1} ms, p99 {:.1} ms",
        ok as f64 / elapsed.as_secs_f64(),
        tally.streams.load(Ordering::Relaxed),
        tally.echoes.load(Ordering::Relaxed),
        tally.v1.load(Ordering::Relaxed),
        tally.v2.load(Ordering::Relaxed),
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
    );
    assert_eq!(failed, 0, "no request failed across 200 rewrites");
    assert!(tally.streams.load(Ordering::Relaxed) > 0);
    assert!(tally.echoes.load(Ordering::Relaxed) > 0);
    assert_eq!(invalid_written, 20);
    assert_eq!(p.accepted(), 180, "every valid version was applied once");
    assert!(p.rejected() >= 20, "every invalid version was refused");
}

/// Sends `method path` to the admin server; (status, body).
async fn admin(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = common::h1_client()
        .request(req)
        .await
        .expect("admin answers");
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn with_admin(p: &Reloading) -> meshproxy::admin::Admin {
    meshproxy::admin::Admin::start(p.server.shared.clone(), "127.0.0.1:0".parse().unwrap())
        .expect("admin server")
}

fn services(web: u16, flaky: u16, web_pool: u32) -> String {
    format!(
        "{PROXY}---\n{}{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web\n  trafficPolicy:\n    connectionPool: {{tcp: {{maxConnections: {web_pool}}}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: flaky}}\nspec:\n  host: flaky\n  trafficPolicy:\n    outlierDetection: {{consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 5m, maxEjectionPercent: 100}}\n",
        common::service("web.default.svc.cluster.local", &[(web, "app: web")]),
        common::service("flaky.default.svc.cluster.local", &[(flaky, "app: flaky")]),
    )
}

fn cluster<'a>(clusters: &'a serde_json::Value, service: &str) -> &'a serde_json::Value {
    clusters["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == service)
        .unwrap_or_else(|| panic!("no cluster {service} in {clusters}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejections_and_pools_survive_a_reload_of_another_cluster() {
    let web = common::upstream("web").await;
    let flaky = common::upstream("flaky").await;
    let p = Reloading::start(&services(web.addr.port(), flaky.addr.port(), 100));
    let adm = with_admin(&p);
    let addr = p.addr();
    // Two 5xx eject the only flaky endpoint; a request to web leaves an idle connection.
    for _ in 0..2 {
        let r = common::send(
            addr,
            "GET",
            "flaky",
            "/",
            &[("x-test-status", "500")],
            Bytes::new(),
            false,
        )
        .await;
        assert_eq!(r.status, 500);
    }
    assert_eq!(common::get_at(addr, "web").await, 200);
    let (_, before) = admin(adm.addr, "GET", "/clusters").await;
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    let f = &cluster(&before, "flaky.default.svc.cluster.local")["endpoints"][0];
    assert_eq!(f["health"], "ejected", "{f}");
    let ejected_until = f["ejected_until"].clone();

    // Only web's DestinationRule changes.
    write(&p.dir, &services(web.addr.port(), flaky.addr.port(), 200));
    assert!(eventually(Duration::from_secs(10), || p.accepted() == 1).await);
    let (_, after) = admin(adm.addr, "GET", "/clusters").await;
    let after: serde_json::Value = serde_json::from_str(&after).unwrap();
    let f = &cluster(&after, "flaky.default.svc.cluster.local")["endpoints"][0];
    assert_eq!(f["health"], "ejected", "the ejection survived: {f}");
    assert_eq!(f["ejected_until"], ejected_until);
    assert_eq!(f["times_ejected"], 1);
    assert_eq!(f["ejections_total"], 1);
    let w = cluster(&after, "web.default.svc.cluster.local");
    assert_eq!(
        w["circuit_breakers"]["max_connections"], 200,
        "web has its new settings"
    );
    // The flaky endpoint is still out: requests get no healthy upstream, not the endpoint.
    let seen = flaky.count();
    let r = common::send(addr, "GET", "flaky", "/", &[], Bytes::new(), false).await;
    assert_eq!(r.status, 503);
    assert_eq!(flaky.count(), seen, "an ejected endpoint gets nothing");
    assert_eq!(common::get_at(addr, "web").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_answers_400_with_the_errors_and_200_with_the_version() {
    let web = common::upstream("web").await;
    let flaky = common::upstream("flaky").await;
    let good = services(web.addr.port(), flaky.addr.port(), 100);
    let p = Reloading::start(&good);
    let adm = with_admin(&p);
    let first = p.server.shared.active.load().snapshot.version.clone();

    let (status, body) = admin(adm.addr, "POST", "/reload").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], first.as_str());
    assert_eq!(v["changed"], false);

    write(
        &p.dir,
        &good.replace("maxEjectionPercent: 100", "maxEjectionPercent: 140"),
    );
    let (status, body) = admin(adm.addr, "POST", "/reload").await;
    assert_eq!(status, 400, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let errors = v["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("maxEjectionPercent")),
        "{body}"
    );
    let (_, dump) = admin(adm.addr, "GET", "/config_dump").await;
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["version"], first.as_str(), "the old config stays");
    assert_eq!(common::get_at(p.addr(), "web").await, 200);
    let (_, metrics) = admin(adm.addr, "GET", "/metrics").await;
    assert!(
        !metrics.contains("meshproxy_config_reloads_total{result=\"rejected\"} 0"),
        "refusals are counted"
    );

    write(&p.dir, &services(web.addr.port(), flaky.addr.port(), 300));
    let (status, body) = admin(adm.addr, "POST", "/reload").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let now = p.server.shared.active.load().snapshot.version.clone();
    assert_ne!(now, first);
    assert_eq!(v["version"], now.as_str());
    let (_, dump) = admin(adm.addr, "GET", "/config_dump").await;
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["version"], now.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_symlink_swap_is_picked_up() {
    let v1 = upstream("v1").await;
    let v2 = upstream("v2").await;
    // The layout the kubelet writes for a ConfigMap volume.
    let dir = temp_dir();
    let publish = |gen: usize| {
        let data = dir.join(format!("..2026_11_28_{gen}"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("mesh.yaml"), config(gen, v1, v2)).unwrap();
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(data.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    };
    publish(0);
    std::os::unix::fs::symlink("..data/mesh.yaml", dir.join("mesh.yaml")).unwrap();
    // Watched both ways: the volume directory, and the file inside it.
    for (round, paths) in [vec![dir.clone()], vec![dir.join("mesh.yaml")]]
        .into_iter()
        .enumerate()
    {
        let p = Reloading::start_at(dir.clone(), paths);
        let mut probe = Probe::new(p.addr()).await;
        for i in 1..=3 {
            let gen = (round + 1) * 100 + i;
            publish(gen);
            let in_force = eventually(Duration::from_secs(10), || p.accepted() as usize == i).await;
            assert!(
                in_force,
                "round {round}: symlink swap {i} was not picked up"
            );
            assert_eq!(probe.get("/").await.0, gen.to_string());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_added_and_removed_and_removed_ones_drain() {
    let web = common::upstream("web").await;
    let base = format!(
        "{PROXY}---\n{}",
        common::service(
            "web.default.svc.cluster.local",
            &[(web.addr.port(), "app: web")]
        )
    );
    let extra = base.replace(
        "direction: OUTBOUND}\n",
        "direction: OUTBOUND}\n  - {name: extra, address: \"127.0.0.1:0\", direction: OUTBOUND}\n",
    );
    let p = Reloading::start(&base);
    let main = p.addr();
    let mut kept = Probe::new(main).await;
    assert_eq!(kept.get("/").await.1, "web");

    write(&p.dir, &extra);
    assert!(eventually(Duration::from_secs(10), || p.server.addr("extra").is_some()).await);
    let extra_addr = p.server.addr("extra").unwrap();
    assert_eq!(p.addr(), main, "an unchanged listener keeps its socket");
    assert_eq!(common::get_at(extra_addr, "web").await, 200);

    // A slow request in flight on the listener about to be removed (counted by the
    // upstream on arrival, so read the count before sending).
    let seen = web.count();
    let slow = tokio::spawn(async move {
        common::send(
            extra_addr,
            "GET",
            "web",
            "/",
            &[("x-test-delay-ms", "400")],
            Bytes::new(),
            false,
        )
        .await
    });
    assert!(eventually(Duration::from_secs(10), || web.count() > seen).await);
    write(&p.dir, &base);
    assert!(eventually(Duration::from_secs(10), || p.server.addr("extra").is_none()).await);
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200, "the in-flight request finished");
    assert_eq!(
        r.header("connection"),
        "close",
        "and its connection was drained"
    );
    assert!(
        eventually(Duration::from_secs(10), || std::net::TcpStream::connect(
            extra_addr
        )
        .is_err())
        .await,
        "the removed listener stopped accepting"
    );
    assert_eq!(
        kept.get("/").await.1,
        "web",
        "connections on kept listeners are untouched"
    );
}
