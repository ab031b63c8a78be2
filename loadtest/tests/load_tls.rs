//! The load generator over TLS, through the binary, against an in-process rustls server
//! with certificates from `meshproxy_certs::Ca`: HTTP/1.1 and h2 (ALPN) verified against
//! `--cacert`, a wrong CA refused (connect errors) unless `--insecure`, and a server that
//! requires a client certificate (mTLS) served only with `--cert`/`--key`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use meshproxy_certs::{rustls, Ca, ClientAuth, Identity};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_meshproxy-loadtest");
const BODY: usize = 100;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadtest-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A CA, a server certificate for `localhost`/127.0.0.1 and a client certificate, written
/// under `dir` (`server/`, `client/`, each with cert.pem, key.pem, ca.pem).
fn pki(dir: &Path) {
    let ca = Ca::generate("loadtest test CA", 1).expect("CA");
    ca.issue(
        "spiffe://cluster.local/ns/bench/sa/server",
        &["localhost".into(), "127.0.0.1".into()],
        1,
    )
    .expect("server certificate")
    .write(&dir.join("server"))
    .expect("write server certificate");
    ca.issue("spiffe://cluster.local/ns/bench/sa/client", &[], 1)
        .expect("client certificate")
        .write(&dir.join("client"))
        .expect("write client certificate");
}

/// A TLS server (HTTP/1.1 and h2 by ALPN) answering `BODY` bytes; stops when dropped.
struct Server {
    addr: SocketAddr,
    /// Connections whose TLS handshake completed.
    handshakes: Arc<AtomicU64>,
    _rt: tokio::runtime::Runtime,
}

fn server(dir: &Path, auth: ClientAuth) -> Server {
    let s = dir.join("server");
    let id = Identity::load(&s.join("cert.pem"), &s.join("key.pem"), &s.join("ca.pem"))
        .expect("server identity");
    let config: Arc<rustls::ServerConfig> = meshproxy_certs::server_config(
        id.chain.clone(),
        id.key.clone_key(),
        Some(id.roots.clone()),
        auth,
        &[b"h2", b"http/1.1"],
    )
    .expect("server config");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let handshakes = Arc::new(AtomicU64::new(0));
    let count = handshakes.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                count.fetch_add(1, Ordering::Relaxed);
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        vec![b'x'; BODY],
                    ))))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Server {
        addr,
        handshakes,
        _rt: rt,
    }
}

/// Runs `load URL ARGS` and returns its JSON report (the run must succeed: errors are
/// counted in the report, not a failure of the command).
fn load(url: &str, name: &str, args: &[&str]) -> Value {
    let json = temp(&format!("{name}-report")).join("report.json");
    let out = Command::new(BIN)
        .arg("load")
        .arg(url)
        .args(args)
        .args(["--quiet", "--json"])
        .arg(&json)
        .stdin(Stdio::null())
        .output()
        .expect("run load");
    assert!(
        out.status.success(),
        "load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("tls "), "no TLS line in the table: {table}");
    serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("JSON")
}

fn ok(v: &Value, protocol: &str, alpn: &str) {
    assert_eq!(v["protocol"], protocol, "{v:#}");
    let requests = v["requests"].as_u64().unwrap_or(0);
    assert!(requests > 0, "no requests: {v:#}");
    assert_eq!(v["errors"]["connect"], 0, "{v:#}");
    assert_eq!(v["errors"]["other"], 0, "{v:#}");
    assert_eq!(v["bytes"].as_u64(), Some(requests * BODY as u64), "{v:#}");
    assert_eq!(v["tls"]["alpn"], alpn, "{v:#}");
    assert!(
        v["tls"]["version"]
            .as_str()
            .is_some_and(|s| s.starts_with("TLSv1.")),
        "{v:#}"
    );
}

fn file(dir: &Path, who: &str, name: &str) -> String {
    dir.join(who).join(name).display().to_string()
}

#[test]
fn https_http1_and_h2_verified_against_cacert() {
    let dir = temp("verified");
    pki(&dir);
    let s = server(&dir, ClientAuth::None);
    let ca = file(&dir, "server", "ca.pem");
    let url = format!("https://localhost:{}/x", s.addr.port());
    let v = load(&url, "h1", &["-c", "3", "-d", "300ms", "--cacert", &ca]);
    ok(&v, "http1+tls", "http/1.1");
    assert_eq!(v["tls"]["sni"], "localhost");
    assert_eq!(v["tls"]["client_cert"], false);
    // Connections were set up before measuring: one handshake each.
    assert_eq!(s.handshakes.load(Ordering::Relaxed), 3);

    let v = load(
        &url,
        "h2",
        &[
            "--h2",
            "-c",
            "2",
            "--streams",
            "4",
            "-d",
            "500ms",
            "--rate",
            "400",
            "--cacert",
            &ca,
        ],
    );
    ok(&v, "h2", "h2");
    assert_eq!(v["mode"], "open");

    // An IP address as the server name (the certificate carries it as an IP SAN), and an
    // explicit --sni.
    let ip = format!("https://{}/", s.addr);
    ok(
        &load(&ip, "ip", &["-c", "1", "-d", "200ms", "--cacert", &ca]),
        "http1+tls",
        "http/1.1",
    );
    let v = load(
        &ip,
        "sni",
        &[
            "-c",
            "1",
            "-d",
            "200ms",
            "--cacert",
            &ca,
            "--sni",
            "localhost",
        ],
    );
    ok(&v, "http1+tls", "http/1.1");
    assert_eq!(v["tls"]["sni"], "localhost");
}

#[test]
fn unverifiable_server_is_a_connect_error_unless_insecure() {
    let dir = temp("unverified");
    pki(&dir);
    let other = temp("unverified-other");
    pki(&other);
    let s = server(&dir, ClientAuth::None);
    let url = format!("https://localhost:{}/", s.addr.port());
    // Another CA's certificate: every handshake fails.
    let v = load(
        &url,
        "wrong-ca",
        &[
            "-c",
            "2",
            "-d",
            "300ms",
            "--cacert",
            &file(&other, "server", "ca.pem"),
        ],
    );
    assert_eq!(v["requests"], 0, "{v:#}");
    assert!(v["errors"]["connect"].as_u64().unwrap_or(0) > 0, "{v:#}");
    let why = v["first_connect_error"].as_str().unwrap_or_default();
    assert!(why.contains("TLS handshake"), "{v:#}");
    // A name the certificate does not carry.
    let v = load(
        &url,
        "wrong-name",
        &[
            "-c",
            "1",
            "-d",
            "200ms",
            "--cacert",
            &file(&dir, "server", "ca.pem"),
            "--sni",
            "elsewhere.example",
        ],
    );
    assert_eq!(v["requests"], 0, "{v:#}");
    assert!(v["errors"]["connect"].as_u64().unwrap_or(0) > 0, "{v:#}");
    // --insecure skips verification.
    let v = load(&url, "insecure", &["-c", "2", "-d", "300ms", "--insecure"]);
    ok(&v, "http1+tls", "http/1.1");
    assert_eq!(v["tls"]["verify"], "insecure");
}

#[test]
fn mtls_server_needs_the_client_certificate() {
    let dir = temp("mtls");
    pki(&dir);
    let s = server(&dir, ClientAuth::Required);
    let url = format!("https://localhost:{}/", s.addr.port());
    let ca = file(&dir, "server", "ca.pem");
    let v = load(
        &url,
        "with-cert",
        &[
            "-c",
            "2",
            "-d",
            "300ms",
            "--cacert",
            &ca,
            "--cert",
            &file(&dir, "client", "cert.pem"),
            "--key",
            &file(&dir, "client", "key.pem"),
        ],
    );
    ok(&v, "http1+tls", "http/1.1");
    assert_eq!(v["tls"]["client_cert"], true);
    // h2 with the client certificate as well.
    let v = load(
        &url,
        "with-cert-h2",
        &[
            "--h2",
            "-c",
            "1",
            "--streams",
            "2",
            "-d",
            "300ms",
            "--cacert",
            &ca,
            "--cert",
            &file(&dir, "client", "cert.pem"),
            "--key",
            &file(&dir, "client", "key.pem"),
        ],
    );
    ok(&v, "h2", "h2");
    // Without it the server refuses (under TLS 1.3 with an alert after the client's
    // handshake): connect errors, never a success or a latency sample.
    for (name, h2) in [("without-cert", false), ("without-cert-h2", true)] {
        let mut args = vec!["-c", "2", "-d", "300ms", "--cacert", &ca];
        if h2 {
            args.extend(["--h2", "--streams", "2"]);
        }
        let v = load(&url, name, &args);
        assert_eq!(v["requests"], 0, "{v:#}");
        let e = &v["errors"];
        assert!(e["connect"].as_u64().unwrap_or(0) > 0, "{v:#}");
        assert_eq!(e["other"], 0, "{v:#}");
        assert_eq!(e["reset"], 0, "{v:#}");
        let why = v["first_connect_error"].as_str().unwrap_or_default();
        assert!(why.contains("TLS"), "{v:#}");
    }
}

#[test]
fn tls_flags_are_checked() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("load")
            .args(args)
            .args(["-d", "100ms", "--quiet"])
            .output()
            .expect("run load");
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["http://127.0.0.1:9/", "--insecure"]);
    assert!(e.contains("https://"), "{e}");
    let e = run(&["https://127.0.0.1:9/", "--cacert", "/no/such/ca.pem"]);
    assert!(e.contains("/no/such/ca.pem"), "{e}");
    let e = run(&["https://127.0.0.1:9/", "--cert", "c.pem"]);
    assert!(e.contains("--key"), "{e}");
    let e = run(&["https://127.0.0.1:9/", "--insecure", "--cacert", "ca.pem"]);
    assert!(e.contains("--cacert") || e.contains("--insecure"), "{e}");
}
