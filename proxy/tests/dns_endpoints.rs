//! `resolution: DNS` as Envoy's STRICT_DNS, against a real DNS server: `dnsmasq` on a
//! loopback port serving records from a hosts file the tests rewrite (SIGHUP re-reads
//! it), and upstreams on 127.0.0.2, 127.0.0.3, 127.0.0.4 sharing one port. Every address
//! of the name is an endpoint in `/clusters`; a record change adds and drains endpoints
//! while traffic flows, without a failed request; outlier detection ejects one address;
//! a resolver that stops answering leaves the last answer in force.
//!
//! Skipped (with the reason printed) where `dnsmasq` is not installed; CI installs it.

mod common;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meshproxy::upstream::resolver::{Answer, Resolver};
use meshproxy_config::compile::cluster::ClusterKey;
use meshproxy_config::compile::proxy_settings::DnsSettings;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const NAME: &str = "pods.dns.test";
const HOST: &str = "web.dns.test";

/// A dnsmasq serving the A records of a hosts file, on a loopback port.
struct Dns {
    child: std::process::Child,
    hosts: PathBuf,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn dnsmasq_missing() -> bool {
    let found = std::process::Command::new("dnsmasq")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: dnsmasq is not installed (apt-get install dnsmasq-base)");
    }
    !found
}

fn hosts_text(ips: &[&str]) -> String {
    ips.iter().map(|ip| format!("{ip} {NAME}\n")).collect()
}

/// True once the server at `addr` answers `NAME` with `n` addresses (within 5 s);
/// false at once if `child` exits (its port was taken).
async fn answers(child: &mut std::process::Child, addr: SocketAddr, n: usize) -> bool {
    let r = Resolver::new(&DnsSettings {
        resolver: Some(addr),
        refresh_rate: Duration::from_secs(1),
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        if let Answer::Addresses { ips, .. } = r.lookup(NAME).await {
            if ips.len() == n {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

impl Dns {
    /// Starts dnsmasq answering `NAME` with `ips` (TTL 1 s; names of `dns.test` it does
    /// not know get NXDOMAIN), on a free port (another one if that was taken meanwhile).
    async fn start(ips: &[&str]) -> Dns {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "meshproxy-dns-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, hosts_text(ips)).unwrap();
        for _ in 0..20 {
            let port = common::free_port();
            let addr = SocketAddr::new([127, 0, 0, 1].into(), port);
            let mut child = std::process::Command::new("dnsmasq")
                .args([
                    "--keep-in-foreground",
                    &format!("--port={port}"),
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    &format!("--addn-hosts={}", hosts.display()),
                    "--local-ttl=1",
                    "--local=/dns.test/",
                    "--conf-file=/dev/null",
                    "--pid-file=",
                    &format!("--log-facility={}", dir.join("log").display()),
                ])
                .stdin(std::process::Stdio::null())
                .spawn()
                .expect("dnsmasq starts");
            if answers(&mut child, addr, ips.len()).await {
                return Dns {
                    child,
                    hosts,
                    addr,
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dnsmasq did not start");
    }

    /// Rewrites the records and makes dnsmasq re-read them.
    async fn set(&mut self, ips: &[&str]) {
        std::fs::write(&self.hosts, hosts_text(ips)).unwrap();
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        assert!(
            answers(&mut self.child, self.addr, ips.len()).await,
            "dnsmasq serves {ips:?}"
        );
    }

    /// Stops the server: lookups now fail.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An upstream on one loopback address, answering `status` with its address as body.
struct Backend {
    hits: Arc<AtomicU64>,
    status: Arc<AtomicU16>,
    /// Connections open now.
    open: Arc<AtomicU64>,
}

async fn serve(listener: tokio::net::TcpListener, b: &Backend) {
    let (hits, status, open) = (b.hits.clone(), b.status.clone(), b.open.clone());
    let me = listener.local_addr().unwrap().ip().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (hits, status, me) = (hits.clone(), status.clone(), me.clone());
            let open = open.clone();
            open.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let mut r = Response::new(Full::new(Bytes::from(me.clone())));
                    *r.status_mut() =
                        http::StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap();
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
}

/// Upstreams on 127.0.0.2.. (`n` of them), all on one port: the port of an endpoint is
/// the ServiceEntry endpoint's, shared by every address its name resolves to.
async fn backends(n: u8) -> (u16, Vec<Backend>) {
    'retry: for _ in 0..20 {
        let first = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for i in 1..n {
            match tokio::net::TcpListener::bind((IpAddr::from([127, 0, 0, 2 + i]), port)).await {
                Ok(l) => listeners.push(l),
                Err(_) => continue 'retry,
            }
        }
        let mut out = Vec::new();
        for l in listeners {
            let b = Backend {
                hits: Arc::new(AtomicU64::new(0)),
                status: Arc::new(AtomicU16::new(200)),
                open: Arc::new(AtomicU64::new(0)),
            };
            serve(l, &b).await;
            out.push(b);
        }
        return (port, out);
    }
    panic!("no port free on every loopback address");
}

/// The proxy config: `spec.dns` pointing at `dns`, and `HOST` as a DNS ServiceEntry whose
/// one endpoint is `NAME` (labels and weight given to every address of it).
fn config(dns: SocketAddr, port: u16, dr: &str) -> String {
    format!(
        r#"apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: test, namespace: default}}
spec:
  listeners:
  - {{name: outbound, address: "127.0.0.1:0", direction: OUTBOUND}}
  dns: {{resolver: "{dns}", refreshRate: 1s}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [{HOST}]
  location: MESH_EXTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: DNS
  endpoints:
  - {{address: {NAME}, ports: {{http: {port}}}, labels: {{version: v1}}, weight: 3}}
{dr}"#
    )
}

struct Running {
    proxy: common::Proxy,
    admin: meshproxy::admin::Admin,
}

fn start(dns: &Dns, port: u16, dr: &str) -> Running {
    let proxy = common::proxy(&config(dns.addr, port, dr));
    let admin =
        meshproxy::admin::Admin::start(proxy.server.shared.clone(), "127.0.0.1:0".parse().unwrap())
            .expect("admin server");
    Running { proxy, admin }
}

impl Running {
    /// The DNS cluster of `/clusters`.
    async fn cluster(&self) -> serde_json::Value {
        let r = common::send(
            self.admin.addr,
            "GET",
            "admin",
            "/clusters",
            &[],
            Bytes::new(),
            false,
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        v["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["service"] == HOST && c["port"] == 80)
            .cloned()
            .expect("the DNS cluster")
    }

    /// The endpoint addresses `/clusters` lists, sorted.
    async fn addresses(&self) -> Vec<String> {
        let c = self.cluster().await;
        let mut a: Vec<String> = c["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["address"].as_str().unwrap().to_string())
            .collect();
        a.sort();
        a
    }

    /// Polls `/clusters` until its endpoints are `want` (on `port`), within `limit`.
    async fn wait_for(&self, want: &[&str], port: u16, limit: Duration) {
        let want: Vec<String> = want.iter().map(|ip| format!("{ip}:{port}")).collect();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let now = self.addresses().await;
            if now == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "endpoints {now:?}, expected {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn get(&self) -> u16 {
        common::get_at(self.proxy.addr, HOST).await
    }

    /// The live endpoint state for address `ip` (to tell kept state from fresh state).
    fn endpoint(&self, ip: &str) -> Option<Arc<meshproxy::upstream::cluster_state::EndpointState>> {
        let active = self.proxy.server.shared.active.load();
        let id = active.snapshot.find_cluster(&ClusterKey {
            service: HOST.into(),
            port: 80,
            subset: None,
        })?;
        let set = active.cluster(id).endpoints();
        set.iter()
            .find(|e| e.name.starts_with(&format!("{ip}:")))
            .cloned()
    }
}

/// Requests in a loop until stopped: (sent, failed).
fn traffic(r: &Arc<Running>, stop: &Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, Vec<u16>)> {
    let (r, stop) = (r.clone(), stop.clone());
    tokio::spawn(async move {
        let (mut sent, mut failed) = (0u64, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            let s = r.get().await;
            sent += 1;
            if s != 200 {
                failed.push(s);
            }
        }
        (sent, failed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_the_records_while_traffic_flows() {
    if dnsmasq_missing() {
        return;
    }
    let (port, b) = backends(3).await;
    let mut dns = Dns::start(&["127.0.0.2", "127.0.0.3"]).await;
    let r = Arc::new(start(&dns, port, ""));
    // The first request waits for the first answer instead of failing.
    assert_eq!(r.get().await, 200);
    r.wait_for(&["127.0.0.2", "127.0.0.3"], port, Duration::from_secs(5))
        .await;
    let c = r.cluster().await;
    for e in c["endpoints"].as_array().unwrap() {
        assert_eq!(e["hostname"], NAME, "{e}");
        assert_eq!(e["labels"]["version"], "v1", "{e}");
        assert_eq!(e["weight"], 3, "{e}");
    }
    assert_eq!(c["dns_names"][0]["hostname"], NAME, "{c}");
    let kept = r.endpoint("127.0.0.3").expect(".3 is an endpoint");

    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(&r, &stop);
    assert!(
        common::eventually(Duration::from_secs(5), || b[0].hits.load(Ordering::SeqCst)
            > 5
            && b[1].hits.load(Ordering::SeqCst) > 5)
        .await,
        "both addresses serve"
    );
    // .2 goes, .4 comes: within the TTL refresh (Envoy's 5 s minimum), with no failure.
    dns.set(&["127.0.0.3", "127.0.0.4"]).await;
    r.wait_for(&["127.0.0.3", "127.0.0.4"], port, Duration::from_secs(15))
        .await;
    let gone_hits = b[0].hits.load(Ordering::SeqCst);
    assert!(
        common::eventually(Duration::from_secs(5), || b[2].hits.load(Ordering::SeqCst)
            > 5)
        .await,
        "the new address serves"
    );
    let again = r.endpoint("127.0.0.3").expect(".3 stays");
    assert!(
        Arc::ptr_eq(&kept, &again),
        "an address that stays keeps its state"
    );
    stop.store(true, Ordering::SeqCst);
    let (sent, failed) = load.await.unwrap();
    assert!(sent > 20, "traffic flowed: {sent}");
    assert!(
        failed.is_empty(),
        "{} of {sent} requests failed: {failed:?}",
        failed.len()
    );
    assert!(
        b[0].hits.load(Ordering::SeqCst) <= gone_hits + 1,
        "a drained address gets no new request"
    );
    // Its pooled connections were closed (idle ones at once, the busy one after its
    // request); the kept and the new address keep theirs.
    assert!(
        common::eventually(Duration::from_secs(5), || b[0].open.load(Ordering::SeqCst)
            == 0)
        .await,
        "the drained address's connections are closed: {} open",
        b[0].open.load(Ordering::SeqCst)
    );
    assert!(b[1].open.load(Ordering::SeqCst) > 0 && b[2].open.load(Ordering::SeqCst) > 0);

    // NXDOMAIN is an answer: the name has no address, the cluster no endpoint.
    dns.set(&[]).await;
    r.wait_for(&[], port, Duration::from_secs(15)).await;
    assert_eq!(r.get().await, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_one_address_of_a_name() {
    if dnsmasq_missing() {
        return;
    }
    let (port, b) = backends(3).await;
    let dns = Dns::start(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]).await;
    let dr = format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n    loadBalancer: {{simple: ROUND_ROBIN}}\n    outlierDetection: {{consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 5m, maxEjectionPercent: 50}}\n"
    );
    let r = start(&dns, port, &dr);
    assert_eq!(r.get().await, 200);
    r.wait_for(
        &["127.0.0.2", "127.0.0.3", "127.0.0.4"],
        port,
        Duration::from_secs(5),
    )
    .await;
    b[1].status.store(503, Ordering::SeqCst);
    // Round robin reaches .3 every third request: its second 503 in a row ejects it.
    let healthy_hits = b[1].hits.load(Ordering::SeqCst);
    for _ in 0..30 {
        if b[1].hits.load(Ordering::SeqCst) >= healthy_hits + 2 {
            break;
        }
        r.get().await;
    }
    let c = r.cluster().await;
    let health: Vec<(String, String)> = c["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let a = e["address"].as_str().unwrap().to_string();
            (a, e["health"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(health.len(), 3, "{health:?}");
    for (a, h) in &health {
        let want = if a.starts_with("127.0.0.3:") {
            "ejected"
        } else {
            "healthy"
        };
        assert_eq!(h, want, "{health:?}");
    }
    let before = b[1].hits.load(Ordering::SeqCst);
    for _ in 0..20 {
        assert_eq!(r.get().await, 200, "the other addresses serve");
    }
    assert_eq!(
        b[1].hits.load(Ordering::SeqCst),
        before,
        "the ejected address rests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_failure_keeps_the_last_answer() {
    if dnsmasq_missing() {
        return;
    }
    let (port, b) = backends(2).await;
    let mut dns = Dns::start(&["127.0.0.2", "127.0.0.3"]).await;
    let r = start(&dns, port, "");
    assert_eq!(r.get().await, 200);
    r.wait_for(&["127.0.0.2", "127.0.0.3"], port, Duration::from_secs(5))
        .await;
    dns.stop();
    // Refreshes now fail (after the TTL, then every refreshRate).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let c = r.cluster().await;
        if c["dns_names"][0]["failures"].as_u64().unwrap_or(0) >= 1 {
            assert!(c["dns_names"][0]["last_error"].is_string(), "{c}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed refresh: {c}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        r.addresses().await,
        vec![format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}")],
        "the last good answer stays"
    );
    for _ in 0..10 {
        assert_eq!(r.get().await, 200);
    }
    assert!(b[0].hits.load(Ordering::SeqCst) > 0 && b[1].hits.load(Ordering::SeqCst) > 0);
}
