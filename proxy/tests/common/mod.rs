//! Test support: real upstream servers on 127.0.0.1:0 with scriptable behaviour, an
//! in-process proxy started from YAML, and HTTP/1.1 and h2c clients.
#![allow(dead_code)]

pub mod prometheus;
mod tls;

pub use tls::tls_acceptor;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshproxy::access_log::AccessLog;
use meshproxy::server::{Options, Server};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// What an upstream saw.
#[derive(Default)]
pub struct Seen {
    /// Requests received.
    pub requests: AtomicU64,
    /// Headers of every request, in order.
    pub headers: Mutex<Vec<HeaderMap>>,
    /// Paths (with query) of every request.
    pub paths: Mutex<Vec<String>>,
    /// Protocol versions seen.
    pub versions: Mutex<Vec<http::Version>>,
    /// Connections accepted.
    pub connections: AtomicU64,
}

/// A running test upstream.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    /// Its name (echoed in responses and `x-upstream` header).
    pub name: String,
    /// What it saw.
    pub seen: Arc<Seen>,
}

impl Upstream {
    /// Requests received so far.
    pub fn count(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }

    /// Headers of the last request.
    pub fn last_headers(&self) -> HeaderMap {
        self.seen
            .headers
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    /// Path of the last request.
    pub fn last_path(&self) -> String {
        self.seen
            .paths
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

/// Behaviour switches read from request headers:
/// `x-test-status: N` answers N; `x-test-delay-ms: N` waits first; `x-test-reset: <name>`
/// makes the upstream called `<name>` close the connection without answering (or `all`);
/// `x-test-fail-first: N` answers 503 to the first N requests; POST bodies are counted and
/// the byte count returned.
pub async fn upstream(name: &str) -> Upstream {
    upstream_with(name, Proto::Auto).await
}

/// Which protocols an upstream accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 and h2c (prior knowledge), detected.
    Auto,
    /// HTTP/2 only.
    H2Only,
    /// HTTP/1.1 only.
    H1Only,
}

/// Starts an upstream speaking `proto`.
pub async fn upstream_with(name: &str, proto: Proto) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let name_s: Arc<str> = name.into();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            s.connections.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            let name = name_s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let s = s.clone();
                    let name = name.clone();
                    async move { Ok::<_, Infallible>(respond(req, &s, &name).await) }
                });
                let io = TokioIo::new(stream);
                let _ = match proto {
                    Proto::Auto => {
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection_with_upgrades(io, svc)
                            .await
                            .map_err(|_| ())
                    }
                    Proto::H2Only => hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, svc)
                        .await
                        .map_err(|_| ()),
                    Proto::H1Only => hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await
                        .map_err(|_| ()),
                };
            });
        }
    });
    Upstream {
        addr,
        name: name.to_string(),
        seen,
    }
}

async fn respond(mut req: Request<Incoming>, s: &Seen, name: &str) -> Response<Full<Bytes>> {
    if req.headers().contains_key(http::header::UPGRADE) {
        return echo_upgrade(&mut req, s);
    }
    // Record what was seen before counting it: tests wait on the count, then read these.
    s.headers.lock().unwrap().push(req.headers().clone());
    s.paths.lock().unwrap().push(
        req.uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
    );
    s.versions.lock().unwrap().push(req.version());
    let n = s.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let h = req.headers().clone();
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(ms) = get("x-test-delay-ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(target) = get("x-test-reset") {
        if target == name || target == "all" {
            // Panicking in the service makes hyper drop the connection without a response.
            std::panic::panic_any("reset requested");
        }
    }
    let mut status = get("x-test-status")
        .and_then(|v| v.parse::<u16>().ok())
        .unwrap_or(200);
    if let Some(first) = get("x-test-fail-first").and_then(|v| v.parse::<u64>().ok()) {
        if n <= first {
            status = 503;
        }
    }
    let mut bytes = 0u64;
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => bytes += f.data_ref().map(|d| d.len() as u64).unwrap_or(0),
            Err(_) => break,
        }
    }
    let text = if bytes > 0 {
        format!("{name} {bytes}")
    } else {
        name.to_string()
    };
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    resp.headers_mut()
        .insert("x-upstream", name.parse().unwrap());
    resp
}

/// A running in-process proxy.
pub struct Proxy {
    /// The server.
    pub server: Server,
    /// The outbound listener's address.
    pub addr: SocketAddr,
}

/// Replaces `{name}` placeholders with `ports`.
pub fn render(yaml: &str, ports: &HashMap<&str, u16>) -> String {
    let mut out = yaml.to_string();
    for (k, v) in ports {
        out = out.replace(&format!("{{{k}}}"), &v.to_string());
    }
    out
}

/// Starts a proxy (one worker) from config text; the outbound listener binds 127.0.0.1:0.
pub fn proxy(yaml: &str) -> Proxy {
    let proxy_doc = "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {name: test, namespace: default}\nspec:\n  workload: {labels: {app: test}}\n  listeners:\n  - {name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}\n";
    let text = if yaml.contains("kind: Proxy") {
        yaml.to_string()
    } else {
        format!("{proxy_doc}---\n{yaml}")
    };
    let snap = meshproxy_config::compile::load_str("test.yaml", &text)
        .unwrap_or_else(|d| panic!("config refused:\n{d}"));
    let server =
        Server::start(snap, Options::default(), AccessLog::disabled()).expect("proxy starts");
    let addr = server.addrs()[0].1;
    Proxy { server, addr }
}

/// The `Proxy` document of a test sidecar (`test` in `default`, labels `app: test`, one
/// OUTBOUND listener on a free port), `spec` lines (two-space indented, each ending in a
/// newline) added, and the document separator.
pub fn sidecar_proxy(spec: &str) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: test, namespace: default}}\nspec:\n  workload: {{labels: {{app: test}}}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n{spec}---\n"
    )
}

/// A ServiceEntry for `host` with one endpoint per `(port, labels)`.
pub fn service(host: &str, endpoints: &[(u16, &str)]) -> String {
    let mut eps = String::new();
    for (port, labels) in endpoints {
        eps.push_str(&format!(
            "  - {{address: 127.0.0.1, ports: {{http: {port}}}, labels: {{{labels}}}}}\n"
        ));
    }
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{host}]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n{eps}---\n",
        name = host.split('.').next().unwrap()
    )
}

/// An HTTP/1.1 client.
pub fn h1_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An h2c (prior knowledge) client.
pub fn h2_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A simple response: status, headers, body text.
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: String,
}

impl Reply {
    /// A header as a string ("" if absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Sends a GET to the proxy with a Host header and extra headers.
pub async fn get(p: &Proxy, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(p.addr, "GET", host, path, headers, Bytes::new(), false).await
}

/// The text of an admin listener's `/metrics`.
pub async fn metrics_text(admin: SocketAddr) -> String {
    send(admin, "GET", "admin", "/metrics", &[], Bytes::new(), false)
        .await
        .body
}

/// Sends a request over HTTP/1.1 (or h2c when `h2`).
pub async fn send(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    h2: bool,
) -> Reply {
    let client = if h2 { h2_client() } else { h1_client() };
    let uri = format!("http://{addr}{path}");
    let mut req = Request::builder().method(method).uri(uri);
    if !h2 {
        req = req.header("host", host);
    } else {
        // h2: the authority carries the host
        req = req.uri(format!("http://{host}{path}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body)).unwrap();
    let resp = if h2 {
        // Connect to the proxy address but keep the virtual authority.
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        client.request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

fn echo_upgrade(req: &mut Request<Incoming>, s: &Seen) -> Response<Full<Bytes>> {
    s.requests.fetch_add(1, Ordering::SeqCst);
    accept_upgrade(req)
}

/// Accepts an HTTP/1.1 upgrade (any protocol) with 101 and echoes the tunnel's bytes.
pub fn accept_upgrade(req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    let on = hyper::upgrade::on(&mut *req);
    tokio::spawn(async move {
        if let Ok(up) = on.await {
            let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut w).await;
        }
    });
    let protocol = req.headers()[http::header::UPGRADE].clone();
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut()
        .insert(http::header::CONNECTION, "upgrade".parse().unwrap());
    resp.headers_mut().insert(http::header::UPGRADE, protocol);
    resp
}

/// An upgraded (WebSocket-like) tunnel through the proxy at `addr` to `host`: the raw
/// connection after a 101.
pub async fn tunnel(addr: SocketAddr, host: &str) -> std::io::Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    // Read the response head byte by byte: nothing of the tunnel may be consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if s.read(&mut b).await? == 0 {
            return Err(std::io::Error::other(format!(
                "closed during the handshake: {}",
                String::from_utf8_lossy(&head)
            )));
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(format!(
            "no 101: {}",
            String::from_utf8_lossy(&head)
        )));
    }
    Ok(s)
}

/// Sends `msg` through an echoing tunnel and reads it back.
pub async fn echo(s: &mut tokio::net::TcpStream, msg: &[u8]) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await?;
    if back != msg {
        return Err(std::io::Error::other("echo differs"));
    }
    Ok(())
}

/// Like [`upstream`], but every request waits `delay` before it is answered (the
/// connection is counted at once, the request once answered).
pub async fn upstream_delayed(name: &str, delay: Duration) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let name_s: Arc<str> = name.into();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            s.connections.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            let name = name_s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let s = s.clone();
                    let name = name.clone();
                    async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(respond(req, &s, &name).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Upstream {
        addr,
        name: name.to_string(),
        seen,
    }
}

/// A local port nothing listens on (bound, then released): connecting to it is refused.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Like [`service`], with the service port's `protocol` (`HTTP`, `HTTP2`, `GRPC`...); the
/// port is named after the protocol in lower case.
pub fn service_proto(host: &str, protocol: &str, endpoints: &[(u16, &str)]) -> String {
    let pname = protocol.to_ascii_lowercase();
    let mut eps = String::new();
    for (port, labels) in endpoints {
        eps.push_str(&format!(
            "  - {{address: 127.0.0.1, ports: {{{pname}: {port}}}, labels: {{{labels}}}}}\n"
        ));
    }
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{host}]\n  ports: [{{number: 80, name: {pname}, protocol: {protocol}}}]\n  resolution: STATIC\n  endpoints:\n{eps}---\n",
        name = host.split('.').next().unwrap()
    )
}

/// Sends a GET over `client` (which pools its connections to the proxy).
pub async fn get_with(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder()
        .method("GET")
        .uri(format!("http://{addr}{path}"))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

/// Polls `cond` every few milliseconds until it holds or `within` has passed; returns
/// whether it held.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A GET to `addr` with `host`; the status.
pub async fn get_at(addr: SocketAddr, host: &str) -> u16 {
    send(addr, "GET", host, "/", &[], Bytes::new(), false)
        .await
        .status
}

/// Writes `request` on a new plain connection and returns whatever comes back before
/// the peer closes (empty when it closes at once).
pub async fn raw_http(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let _ = s.write_all(request.as_bytes()).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A GET over TLS to `addr` presenting `<dir>/cert.pem` + `<dir>/key.pem` (when given),
/// not checking the server (the server's refusal is what is tested). `Ok` only when a
/// response comes back.
async fn tls_get_with(
    addr: SocketAddr,
    client: Option<&std::path::Path>,
) -> Result<String, String> {
    tls_raw(
        addr,
        client,
        "GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n",
    )
    .await
}

/// Sends `request` (raw HTTP/1.1, with `Connection: close`) over TLS to `addr`,
/// presenting the identity in `client` when given and not checking the server. `Ok`
/// with the response when one comes back.
pub async fn tls_raw(
    addr: SocketAddr,
    client: Option<&std::path::Path>,
    request: &str,
) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Built by hand, not with the product's loader: a bad client (expired, foreign CA)
    // must be able to present what it has.
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(meshproxy_certs::accept_any_server());
    let mut config = match client {
        Some(d) => {
            let chain = rustls::pki_types::CertificateDer::pem_file_iter(d.join("cert.pem"))
                .map_err(|e| e.to_string())?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(d.join("key.pem"))
                .map_err(|e| e.to_string())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("reviews").map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&out).into_owned();
    if text.starts_with("HTTP/1.1") {
        Ok(text)
    } else {
        Err(format!("no response ({} bytes)", out.len()))
    }
}

/// [`tls_get_with`] presenting the identity in `dir` (the CA file is unused: the client
/// does not check the server).
pub async fn tls_get(
    addr: SocketAddr,
    dir: &std::path::Path,
    _ca: &std::path::Path,
) -> Result<String, String> {
    tls_get_with(addr, Some(dir)).await
}

/// [`tls_get_with`] without a client certificate.
pub async fn tls_get_without_cert(
    addr: SocketAddr,
    _ca: &std::path::Path,
) -> Result<String, String> {
    tls_get_with(addr, None).await
}

/// A port that was free a moment ago (Gateway ports cannot be 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A temp directory with a CA (written to `<dir>/ca/`) issuing test certificates;
/// removed on drop.
pub struct Pki {
    /// The directory.
    pub dir: std::path::PathBuf,
    /// The CA.
    pub ca: meshproxy_certs::Ca,
}

impl Pki {
    /// A new CA in a new temp directory.
    pub fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("meshproxy-pki-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = meshproxy_certs::Ca::generate("meshproxy test CA", 30).unwrap();
        ca.write(&dir.join("ca")).unwrap();
        Pki { dir, ca }
    }

    /// The CA certificate file.
    pub fn ca_pem(&self) -> std::path::PathBuf {
        self.dir.join("ca/ca.pem")
    }

    /// A server certificate for `dns` names (no SPIFFE ID), valid for an hour, into
    /// `<dir>/<name>/`.
    pub fn server(&self, name: &str, dns: &[&str]) -> std::path::PathBuf {
        let d = self.dir.join(name);
        let now = std::time::SystemTime::now();
        let dns: Vec<String> = dns.iter().map(|s| s.to_string()).collect();
        self.ca
            .issue_with(
                None,
                &dns,
                now - Duration::from_secs(60),
                now + Duration::from_secs(3600),
            )
            .unwrap()
            .write(&d)
            .unwrap();
        d
    }

    /// The mesh identity of service account `sa` in namespace `default` into `<dir>/<sa>/`.
    pub fn workload(&self, sa: &str) -> std::path::PathBuf {
        let d = self.dir.join(sa);
        self.ca
            .issue(
                &meshproxy_certs::spiffe_id("cluster.local", "default", sa),
                &[],
                1,
            )
            .unwrap()
            .write(&d)
            .unwrap();
        d
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TLS HTTP/1.1 server with the certificate in `cert_dir` (`cert.pem`, `key.pem`)
/// answering every request with 200 and `body`; its port.
pub async fn tls_app(cert_dir: &std::path::Path, body: &'static str) -> u16 {
    let acceptor = tls_acceptor(cert_dir);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        body.as_bytes(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    port
}

/// Runs `curl -sS --max-time 10 <args>` off the async threads; (exit code, stdout,
/// stderr).
pub async fn curl(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(&args)
            .output()
            .expect("curl runs (apt-get install curl)");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// True (and says why the test skips) when curl is not installed.
pub fn curl_missing() -> bool {
    let missing = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err();
    if missing {
        eprintln!("SKIPPED: needs curl (apt-get install curl)");
    }
    missing
}
