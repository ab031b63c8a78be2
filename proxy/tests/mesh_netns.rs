//! The two-pod mesh end to end (root only): two network namespaces joined by a veth pair
//! stand for the pods `productpage` (A) and `reviews` (B), each with a `meshproxy run`
//! sidecar running as uid 1337 and the iptables rules of `meshproxy init`, exactly as a
//! mesh's init container and sidecar would set a pod up. B's applications (an HTTP server
//! echoing the request headers it got, a TCP echo server, a server-first TCP server) run
//! in B. Clients in A that know nothing of the mesh reach them by name and by IP:
//! intercepted by A's sidecar, routed by A's VirtualService, carried over mesh mTLS,
//! authorized by B's AuthorizationPolicy, delivered by B's sidecar. After
//! `meshproxy init --cleanup` the same call reaches B's application directly.
//!
//! Without root or without `ip`, `iptables`, `setpriv` or `curl`, the test says why it
//! skips and passes. Set `MESH_NETNS_LOGS=1` to print the sidecars' logs even when it
//! passes (they are printed on failure anyway).

mod netns;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use netns::Netns;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The proxy's uid and gid, as `meshproxy init` expects them.
const PROXY_UID: u32 = 1337;

/// The HTTP application's port in pod B.
const HTTP_PORT: u16 = 9080;
/// The TCP echo application's port in pod B.
const ECHO_PORT: u16 = 9000;
/// The server-first application's port in pod B.
const BANNER_PORT: u16 = 3306;
/// What the server-first application says as soon as a client connects.
const BANNER: &[u8] = b"220 hello\r\n";

/// The SPIFFE identity of service account `sa` in namespace `default`.
fn spiffe(sa: &str) -> String {
    format!("spiffe://cluster.local/ns/default/sa/{sa}")
}

/// The `meshproxy` binary under test.
fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_meshproxy")
}

/// A path as UTF-8 text (the test's own temp paths are).
fn text_path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// The test's scratch directory, removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(name: &str) -> WorkDir {
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the work directory");
        WorkDir(dir)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Gives `path` and everything under it to the proxy's uid and gid, so a sidecar running
/// as uid 1337 can read its config and its private key (which stays mode 0600).
fn chown_to_proxy(path: &Path) {
    std::os::unix::fs::chown(path, Some(PROXY_UID), Some(PROXY_UID))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read_dir") {
            chown_to_proxy(&entry.expect("dir entry").path());
        }
    }
}

/// `meshproxy certs ca` into `dir/ca`, then one workload certificate per service account
/// in `dir/<sa>`.
fn issue_certs(dir: &Path, accounts: &[&str]) {
    let ca = dir.join("ca");
    netns::must(Command::new(bin()).args(["certs", "ca", "--out", text_path(&ca)]));
    for sa in accounts {
        netns::must(Command::new(bin()).args([
            "certs",
            "issue",
            "--ca",
            text_path(&ca),
            "--spiffe",
            &spiffe(sa),
            "--dns",
            &format!("{sa}.default.svc.cluster.local"),
            "--out",
            text_path(&dir.join(sa)),
        ]));
    }
}

/// The `Proxy` document of a pod's sidecar: outbound on 15001 and inbound on 15006
/// (forwarding to the app on 9080 when not intercepted), both `protocol: AUTO`, admin on
/// 127.0.0.1:15000 in the pod, identity from `certs`.
fn proxy_doc(sa: &str, certs: &Path) -> String {
    format!(
        r#"apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: {sa}, namespace: default}}
spec:
  admin: {{address: "127.0.0.1:15000"}}
  workload:
    labels: {{app: {sa}, version: v1}}
    serviceAccount: {sa}
  listeners:
  - {{name: outbound, address: "0.0.0.0:15001", direction: OUTBOUND, protocol: AUTO}}
  - {{name: inbound, address: "0.0.0.0:15006", direction: INBOUND, protocol: AUTO, forwardTo: "127.0.0.1:{HTTP_PORT}"}}
  identity:
    certificate: {cert}
    privateKey: {key}
    caCertificates: {ca}
"#,
        cert = certs.join("cert.pem").display(),
        key = certs.join("key.pem").display(),
        ca = certs.join("ca.pem").display(),
    )
}

/// Pod B's config: its sidecar, STRICT mTLS, and only productpage allowed in.
fn reviews_config(certs: &Path) -> String {
    format!(
        r#"{proxy}---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: istio-system}}
spec:
  mtls: {{mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: reviews-from-productpage, namespace: default}}
spec:
  selector:
    matchLabels: {{app: reviews}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/productpage"]
"#,
        proxy = proxy_doc("reviews", certs)
    )
}

/// Pod A's config: its sidecar, the `reviews` service at B's address (HTTP on 9080, TCP
/// on 9000 and 3306), ISTIO_MUTUAL to it, and a VirtualService that marks the requests it
/// routes with `x-routed-by: meshproxy-vs`.
fn productpage_config(certs: &Path, reviews_ip: Ipv4Addr) -> String {
    format!(
        r#"{proxy}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: ["{reviews_ip}/32"]
  location: MESH_INTERNAL
  ports:
  - {{number: {HTTP_PORT}, name: http, protocol: HTTP}}
  - {{number: {ECHO_PORT}, name: tcp-echo, protocol: TCP}}
  - {{number: {BANNER_PORT}, name: mysql, protocol: TCP}}
  resolution: STATIC
  endpoints:
  - address: {reviews_ip}
    labels: {{app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  trafficPolicy:
    tls: {{mode: ISTIO_MUTUAL}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - headers:
      request:
        set: {{x-routed-by: meshproxy-vs}}
    route:
    - destination:
        host: reviews
        port: {{number: {HTTP_PORT}}}
"#,
        proxy = proxy_doc("productpage", certs)
    )
}

/// Request headers B's HTTP application received, in order.
type Seen = Arc<Mutex<Vec<HeaderMap>>>;

/// Pod B's applications, served by a current-thread runtime on a thread that entered B's
/// namespace; stopped (and their sockets closed) on drop.
struct Apps {
    /// What the HTTP application saw.
    seen: Seen,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Apps {
    /// Starts the applications in `ns`; returns once they are all listening.
    fn start(ns: &Netns) -> Apps {
        let seen: Seen = Arc::default();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let name = ns.name.clone();
        let app_seen = seen.clone();
        let thread = std::thread::spawn(move || {
            if let Err(e) = netns::enter(&name) {
                let _ = ready_tx.send(Err(format!("setns {name}: {e}")));
                return;
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let mut listeners = Vec::new();
                for port in [HTTP_PORT, ECHO_PORT, BANNER_PORT] {
                    match tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await {
                        Ok(l) => listeners.push(l),
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("bind {port}: {e}")));
                            return;
                        }
                    }
                }
                let banner = listeners.pop().expect("three listeners");
                let echo = listeners.pop().expect("three listeners");
                let http = listeners.pop().expect("three listeners");
                tokio::spawn(http_echo(http, app_seen));
                tokio::spawn(tcp_echo(echo, None));
                tokio::spawn(tcp_echo(banner, Some(BANNER)));
                let _ = ready_tx.send(Ok(()));
                let _ = stop_rx.await;
            });
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("pod B's applications did not start: {e}"),
            Err(e) => panic!("pod B's applications did not start: {e}"),
        }
        Apps {
            seen,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// How many requests the HTTP application answered.
    fn count(&self) -> usize {
        self.seen.lock().expect("seen lock").len()
    }

    /// The headers of the HTTP application's last request.
    fn last(&self) -> HeaderMap {
        self.seen
            .lock()
            .expect("seen lock")
            .last()
            .cloned()
            .expect("B's HTTP application saw a request")
    }
}

impl Drop for Apps {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The HTTP application: answers every request with 200 and the request's headers, one
/// `name: value` line each, and records them in `seen`.
async fn http_echo(listener: tokio::net::TcpListener, seen: Seen) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    let mut body = String::new();
                    for (k, v) in req.headers() {
                        body.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
                    }
                    seen.lock().expect("seen lock").push(req.headers().clone());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A TCP echo server; with `banner`, server-first: it says `banner` as soon as a client
/// connects, then echoes.
async fn tcp_echo(listener: tokio::net::TcpListener, banner: Option<&'static [u8]>) {
    use tokio::io::AsyncWriteExt;
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            if let Some(banner) = banner {
                if stream.write_all(banner).await.is_err() {
                    return;
                }
            }
            let (mut r, mut w) = stream.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

/// A `meshproxy run` sidecar inside a pod's namespace, as uid/gid 1337; killed on drop,
/// its logs printed then if the test failed (or `MESH_NETNS_LOGS` is set).
struct Sidecar {
    pod: &'static str,
    child: Child,
    /// Its stderr (logs) and stdout (access log) lines, as they come.
    log: Arc<Mutex<Vec<String>>>,
}

impl Sidecar {
    /// Starts the sidecar of `pod` in `ns` on config directory `dir`.
    fn start(pod: &'static str, ns: &Netns, dir: &Path) -> Sidecar {
        let uid = format!("--reuid={PROXY_UID}");
        let gid = format!("--regid={PROXY_UID}");
        let mut child = ns
            .command(&[
                "setpriv",
                &uid,
                &gid,
                "--clear-groups",
                bin(),
                "run",
                "-c",
                text_path(dir),
                "--workers",
                "1",
            ])
            .env("RUST_LOG", "info,meshproxy=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the sidecar");
        let log = Arc::new(Mutex::new(Vec::new()));
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stderr.take().expect("piped stderr")),
            Box::new(child.stdout.take().expect("piped stdout")),
        ];
        for stream in streams {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    log.lock().expect("log lock").push(line);
                }
            });
        }
        Sidecar { pod, child, log }
    }

    /// Polls the admin `/ready` inside `ns` until it answers 200 (panics with the logs
    /// if the sidecar exits or is not ready within 30 s).
    fn wait_ready(&mut self, ns: &Netns) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} sidecar exited ({status}):\n{}", self.pod, self.logs());
            }
            let (code, _) = curl(ns, &["--max-time", "2", "http://127.0.0.1:15000/ready"]);
            if code == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} sidecar not ready in 30 s (last /ready: {code:?}):\n{}",
                self.pod,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `within` for a log line containing every one of `texts`.
    fn wait_log(&self, texts: &[&str], within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .log
                .lock()
                .expect("log lock")
                .iter()
                .find(|l| texts.iter().all(|t| l.contains(t)))
                .cloned();
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything it logged so far.
    fn logs(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() || std::env::var_os("MESH_NETNS_LOGS").is_some() {
            eprintln!(
                "===== {} sidecar log =====\n{}\n===== end of {} sidecar log =====",
                self.pod,
                self.logs(),
                self.pod
            );
        }
    }
}

/// `curl -sS -i` inside `ns` (as root: intercepted once `meshproxy init` ran there) with
/// `args`: the response's status (`None` when curl failed) and everything curl printed
/// (status line, headers, body, and its error on stderr).
fn curl(ns: &Netns, args: &[&str]) -> (Option<u16>, String) {
    let mut all = vec!["curl", "-sS", "-i", "--noproxy", "*", "--max-time", "10"];
    all.extend_from_slice(args);
    let out = ns.exec(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = stdout
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok());
    let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (if out.status.success() { code } else { None }, text)
}

/// The value of header `name`, as text ("" when absent).
fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// Reads from `stream` until `n` bytes arrived, the read timed out or the peer closed:
/// what arrived.
fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        match stream.read(&mut got[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => filled += k,
        }
    }
    got.truncate(filled);
    got
}

/// From inside A: connects to `to`, optionally reads a banner first (sending nothing),
/// then sends a line and reads it back. Returns (banner, echo) as received.
fn tcp_exchange(a: &Netns, to: SocketAddr, banner_len: usize) -> (Vec<u8>, Vec<u8>) {
    a.run(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {to} from pod A: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set_read_timeout");
        let banner = read_n(&mut s, banner_len);
        let msg = b"ping through the mesh\n";
        s.write_all(msg).expect("write to the echo server");
        let echo = read_n(&mut s, msg.len());
        (banner, echo)
    })
}

/// The `istio_*` sample lines of `metrics` named `name` carrying every one of `labels`.
fn samples<'m>(metrics: &'m str, name: &str, labels: &[&str]) -> Vec<&'m str> {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .collect()
}

/// The whole path, in order: HTTP by name and by IP (VirtualService, mTLS, XFCC), a
/// plaintext bypass refused by STRICT, opaque and server-first TCP, B's mTLS metrics, and
/// direct delivery once both pods' rules are removed.
#[test]
fn two_pods_talk_over_the_mesh_and_not_after_cleanup() {
    if let Some(why) =
        netns::cannot_run_as_root(&["ip", "iptables", "iptables-save", "setpriv", "curl"])
    {
        eprintln!("SKIPPED two_pods_talk_over_the_mesh_and_not_after_cleanup: {why}");
        return;
    }
    let pid = std::process::id();
    // 10.<x>.<y>.0/24 from the pid: concurrent runs never share a subnet (they would not
    // collide anyway, each pair of namespaces being its own world).
    let (x, y) = (100 + ((pid >> 8) % 100) as u8, (pid & 0xff) as u8);
    let a_ip = Ipv4Addr::new(10, x, y, 1);
    let b_ip = Ipv4Addr::new(10, x, y, 2);

    // Declared first, dropped last: the namespaces outlive what runs inside them.
    let a = Netns::new(&format!("mp-a-{pid}"));
    let b = Netns::new(&format!("mp-b-{pid}"));
    netns::veth(
        &a,
        &a_ip.to_string(),
        &b,
        &b_ip.to_string(),
        &format!("mp{pid}"),
    );
    std::fs::create_dir_all(a.etc_dir()).expect("create /etc/netns/<A>");
    std::fs::write(
        a.etc_dir().join("hosts"),
        format!("127.0.0.1 localhost\n{b_ip} reviews\n"),
    )
    .expect("write /etc/netns/<A>/hosts");

    let work = WorkDir::new(&format!("meshproxy-mesh-netns-{pid}"));
    let certs = work.0.join("certs");
    issue_certs(&certs, &["productpage", "reviews"]);
    let (a_dir, b_dir) = (work.0.join("productpage"), work.0.join("reviews"));
    for (dir, yaml) in [
        (&a_dir, productpage_config(&certs.join("productpage"), b_ip)),
        (&b_dir, reviews_config(&certs.join("reviews"))),
    ] {
        std::fs::create_dir_all(dir).expect("config dir");
        std::fs::write(dir.join("config.yaml"), yaml).expect("write config");
        let out = Command::new(bin())
            .args(["validate", "-c", text_path(dir)])
            .output()
            .expect("meshproxy validate");
        assert!(
            out.status.success(),
            "{} does not validate:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for dir in [
        &a_dir,
        &b_dir,
        &certs.join("productpage"),
        &certs.join("reviews"),
    ] {
        chown_to_proxy(dir);
    }

    let apps = Apps::start(&b);
    let mut reviews = Sidecar::start("reviews", &b, &b_dir);
    let mut productpage = Sidecar::start("productpage", &a, &a_dir);
    reviews.wait_ready(&b);
    productpage.wait_ready(&a);
    b.exec_ok(&[bin(), "init"]);
    a.exec_ok(&[bin(), "init"]);

    // (1) HTTP by name and by IP: intercepted in A, routed by A's VirtualService, over
    // mTLS, authorized and delivered by B's sidecar.
    let by_ip = format!("http://{b_ip}:{HTTP_PORT}/");
    let by_name = format!("http://reviews:{HTTP_PORT}/");
    for url in [&by_name, &by_ip] {
        let before = apps.count();
        let (code, out) = curl(&a, &[url.as_str()]);
        assert_eq!(code, Some(200), "GET {url} from pod A:\n{out}");
        assert_eq!(apps.count(), before + 1, "one request reached B's app");
        let seen = apps.last();
        assert_eq!(
            header(&seen, "x-routed-by"),
            "meshproxy-vs",
            "GET {url}: A's VirtualService did not route it; B's app saw:\n{out}"
        );
        let xfcc = header(&seen, "x-forwarded-client-cert");
        assert!(
            xfcc.contains(&format!("URI={}", spiffe("productpage"))),
            "GET {url}: B's app did not see productpage's identity in XFCC: {xfcc:?}\n{out}"
        );
        assert!(
            xfcc.contains(&format!("By={}", spiffe("reviews"))),
            "GET {url}: XFCC does not name B's own identity: {xfcc:?}"
        );
        assert!(
            out.contains("x-routed-by: meshproxy-vs"),
            "the app's echo came back to the client:\n{out}"
        );
    }

    // (2) A client in A running as the proxy's uid bypasses A's interception and speaks
    // plaintext to B: B's sidecar (STRICT) refuses it, B's app never sees it.
    let before = apps.count();
    let uid = format!("--reuid={PROXY_UID}");
    let gid = format!("--regid={PROXY_UID}");
    let out = a.exec(&[
        "setpriv",
        &uid,
        &gid,
        "--clear-groups",
        "curl",
        "-sS",
        "-i",
        "--noproxy",
        "*",
        "--max-time",
        "10",
        &by_ip,
    ]);
    let plain = String::from_utf8_lossy(&out.stdout);
    assert!(
        !plain.starts_with("HTTP/1.1 200"),
        "plaintext from uid 1337 got through:\n{plain}"
    );
    assert_eq!(apps.count(), before, "B's app saw the plaintext request");
    assert!(
        reviews
            .wait_log(
                &["inbound connection refused", "STRICT"],
                Duration::from_secs(10)
            )
            .is_some(),
        "B's sidecar did not log the refusal"
    );

    // (3) Opaque TCP: echo on 9000, and a server-first protocol on 3306 whose banner
    // reaches a client that sends nothing first.
    let (_, echo) = tcp_exchange(&a, SocketAddr::from((b_ip, ECHO_PORT)), 0);
    assert_eq!(
        String::from_utf8_lossy(&echo),
        "ping through the mesh\n",
        "TCP echo through the mesh"
    );
    let (banner, echo) = tcp_exchange(&a, SocketAddr::from((b_ip, BANNER_PORT)), BANNER.len());
    assert_eq!(
        String::from_utf8_lossy(&banner),
        String::from_utf8_lossy(BANNER),
        "server-first banner through the mesh"
    );
    assert_eq!(
        String::from_utf8_lossy(&echo),
        "ping through the mesh\n",
        "echo after the banner"
    );

    // (4) B's sidecar counted the requests and connections as mutual TLS.
    let (code, metrics) = curl(&b, &["http://127.0.0.1:15000/metrics"]);
    assert_eq!(code, Some(200), "{metrics}");
    let http = samples(
        &metrics,
        "istio_requests_total",
        &[
            "reporter=\"destination\"",
            "connection_security_policy=\"mutual_tls\"",
            "response_code=\"200\"",
        ],
    );
    assert!(!http.is_empty(), "no mTLS request metric in B:\n{metrics}");
    let tcp = samples(
        &metrics,
        "istio_tcp_connections_opened_total",
        &[
            "reporter=\"destination\"",
            "connection_security_policy=\"mutual_tls\"",
        ],
    );
    assert!(
        !tcp.is_empty(),
        "no mTLS TCP connection metric in B:\n{metrics}"
    );

    // (5) Without the rules, the same call goes straight to B's app: no VirtualService,
    // no mTLS.
    a.exec_ok(&[bin(), "init", "--cleanup"]);
    b.exec_ok(&[bin(), "init", "--cleanup"]);
    let before = apps.count();
    let (code, out) = curl(&a, &[by_ip.as_str()]);
    assert_eq!(code, Some(200), "GET {by_ip} after cleanup:\n{out}");
    assert_eq!(apps.count(), before + 1);
    let seen = apps.last();
    assert!(
        seen.get("x-routed-by").is_none() && seen.get("x-forwarded-client-cert").is_none(),
        "after cleanup the request still went through the sidecars: {seen:?}"
    );
}
