//! The load generator.
//!
//! - **Closed loop** (no `rate`): every virtual user sends its next request as soon as the
//!   previous response has been read: the maximum rate the target sustains with that
//!   concurrency. Latency is measured from the actual send.
//! - **Open loop** (`rate`): requests are sent on a fixed schedule (see
//!   [`crate::schedule`]) and latency is measured from the *intended* send time, so a
//!   stall is charged to every request it delays (no coordinated omission). Sends are
//!   paced with a `timerfd` per user (tokio's timer wheel has 1 ms granularity, which
//!   would add up to 1 ms to every measured latency).
//!
//! A virtual user is one HTTP/1.1 keep-alive connection, or one stream slot of an h2c
//! connection (`streams` per connection). Users run on `threads` OS threads, each with
//! its own single-threaded tokio runtime, so the generator's CPU use is bounded and known.
//! Connections use hyper's `client::conn` directly (no pool, no per-request task).
//!
//! `https://` URLs speak TLS (rustls, configured by [`meshproxy_certs::client_config`]):
//! the server is verified against `--cacert` (or the OS roots, or not at all with
//! `--insecure`), a client certificate is presented with `--cert`/`--key` (mTLS), ALPN
//! offers `h2` (with `h2`) or `http/1.1`. Connections, and so their handshakes, are set up
//! before the clock starts; a failed handshake, or a TLS alert from the server (TLS 1.3
//! servers refuse a client certificate after the client's handshake has finished, so the
//! alert arrives with the first response), counts as a `connect` error.

use crate::procfs;
use crate::schedule::intended_offset;
use crate::stats::{LatencyHistogram, Percentiles};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshproxy_certs::rustls;
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// TLS settings for `https://` URLs (all optional; none applies to `http://`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Verify the server against the certificates of this PEM file (default: the OS trust
    /// store).
    pub cacert: Option<PathBuf>,
    /// Do not verify the server's certificate (the handshake signature still is).
    pub insecure: bool,
    /// Client certificate chain (PEM) to present: mTLS. Needs `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// Server name sent as SNI and verified (default: the host of `host`, else the URL's
    /// host).
    pub sni: Option<String>,
}

impl TlsOptions {
    fn any_set(&self) -> bool {
        self != &TlsOptions::default()
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Target URL, `http://HOST:PORT/PATH?QUERY` or `https://...` (TLS, see `tls`).
    pub url: String,
    /// `Host` header (HTTP/1.1) or `:authority` (h2c); default: the URL's authority.
    pub host: Option<String>,
    /// TLS settings (`https://` URLs only).
    pub tls: TlsOptions,
    /// Extra request headers (`Name: value`).
    pub headers: Vec<String>,
    /// TCP connections.
    pub connections: usize,
    /// Concurrent streams per connection (h2c only; 1 for HTTP/1.1).
    pub streams: usize,
    /// How long to measure (after the warm-up).
    pub duration: Duration,
    /// Load sent before measuring starts (not recorded).
    pub warmup: Duration,
    /// Open loop at this many requests per second; `None`: closed loop.
    pub rate: Option<f64>,
    /// Speak HTTP/2 instead of HTTP/1.1: h2c (prior knowledge) for `http://`, ALPN `h2`
    /// for `https://`.
    pub h2: bool,
    /// Generator threads (one single-threaded runtime each).
    pub threads: usize,
    /// Per-request timeout (and connect timeout).
    pub timeout: Duration,
    /// Print a progress line each second on stderr.
    pub progress: bool,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            url: String::new(),
            host: None,
            tls: TlsOptions::default(),
            headers: Vec::new(),
            connections: 32,
            streams: 1,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            rate: None,
            h2: false,
            threads: 1,
            timeout: Duration::from_secs(5),
            progress: true,
        }
    }
}

/// Errors by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// TCP connect, TLS handshake or HTTP handshake failed or timed out, or the server
    /// answered with a TLS alert (e.g. a refused client certificate under TLS 1.3).
    pub connect: u64,
    /// The connection or stream was closed or reset before the response was complete.
    pub reset: u64,
    /// No complete response within the timeout.
    pub timeout: u64,
    /// A response with a status other than 2xx.
    pub status: u64,
    /// Any other protocol error.
    pub other: u64,
}

impl ErrorCounts {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.connect + self.reset + self.timeout + self.status + self.other
    }

    fn add(&mut self, o: &ErrorCounts) {
        self.connect += o.connect;
        self.reset += o.reset;
        self.timeout += o.timeout;
        self.status += o.status;
        self.other += o.other;
    }

    fn count(&mut self, kind: ErrKind) {
        match kind {
            ErrKind::Connect => self.connect += 1,
            ErrKind::Reset => self.reset += 1,
            ErrKind::Timeout => self.timeout += 1,
            ErrKind::Other => self.other += 1,
        }
    }
}

/// The result of a run (the `--json` output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// `closed` or `open`.
    pub mode: String,
    /// `http1`, `h2c`, `http1+tls` or `h2` (HTTP/2 over TLS).
    pub protocol: String,
    /// TLS: what was asked and what the server negotiated (`https://` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsReport>,
    /// Target URL.
    pub url: String,
    /// `Host` / `:authority` sent.
    pub host: String,
    /// TCP connections.
    pub connections: usize,
    /// Streams per connection.
    pub streams: usize,
    /// Generator threads.
    pub threads: usize,
    /// Intended rate (open loop).
    pub target_rate: Option<f64>,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Measured time: from the end of the warm-up to the last recorded response.
    pub duration_s: f64,
    /// Successful (2xx) responses recorded.
    pub requests: u64,
    /// `requests / duration_s`.
    pub rps: f64,
    /// Response body bytes received (2xx).
    pub bytes: u64,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// Count of each non-2xx status.
    pub status_codes: BTreeMap<String, u64>,
    /// Latency of the 2xx responses, µs: from the send (closed loop) or the intended
    /// send time (open loop) to the end of the response body.
    pub latency_us: Percentiles,
    /// Open loop: how late requests left against their schedule, µs (timer precision
    /// plus time spent waiting for a previous response on the same user).
    pub send_lag_us: Option<Percentiles>,
    /// The generator's own user CPU time over the whole run (warm-up and setup included).
    pub generator_cpu_user_s: f64,
    /// The generator's own system CPU time over the whole run.
    pub generator_cpu_sys_s: f64,
    /// The first connect error's reason (TCP, TLS or HTTP handshake), for diagnosis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_connect_error: Option<String>,
}

/// The TLS side of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsReport {
    /// Server name sent as SNI (and verified unless `verify` says otherwise).
    pub sni: String,
    /// How the server was verified: `cacert FILE`, `system roots` or `insecure`.
    pub verify: String,
    /// Whether a client certificate was presented (mTLS).
    pub client_cert: bool,
    /// Protocol version of the first connection that completed its handshake.
    pub version: Option<String>,
    /// ALPN protocol the server selected on that connection.
    pub alpn: Option<String>,
}

impl LoadReport {
    /// A human-readable table.
    pub fn render_table(&self) -> String {
        let mut s = String::new();
        let mode = match self.target_rate {
            Some(r) => format!("open loop at {} req/s", group(r.round() as u64)),
            None => "closed loop".to_string(),
        };
        let h2 = self.protocol == "h2c" || self.protocol == "h2";
        let streams = if h2 {
            format!(" × {} streams", self.streams)
        } else {
            String::new()
        };
        let proto = match self.protocol.as_str() {
            "h2c" => "h2c".to_string(),
            "h2" => "HTTP/2 over TLS".to_string(),
            "http1+tls" => "HTTP/1.1 keep-alive over TLS".to_string(),
            _ => "HTTP/1.1 keep-alive".to_string(),
        };
        let _ = writeln!(
            s,
            "target     {} (host {})\nload       {mode}, {} connections{streams}, {proto}, {} generator thread{}",
            self.url,
            self.host,
            self.connections,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
        );
        if let Some(t) = &self.tls {
            let _ = writeln!(
                s,
                "tls        SNI {}, verify: {}, {}{}{}",
                t.sni,
                t.verify,
                if t.client_cert {
                    "client certificate (mTLS)"
                } else {
                    "no client certificate"
                },
                t.version
                    .as_deref()
                    .map(|v| format!(", {v}"))
                    .unwrap_or_default(),
                t.alpn
                    .as_deref()
                    .map(|a| format!(", ALPN {a}"))
                    .unwrap_or_default(),
            );
        }
        let _ = writeln!(
            s,
            "measured   {:.2} s (after {:.2} s warm-up)",
            self.duration_s, self.warmup_s
        );
        let _ = writeln!(
            s,
            "requests   {} ok, {:.1} req/s, {:.1} MiB of body",
            group(self.requests),
            self.rps,
            self.bytes as f64 / (1024.0 * 1024.0)
        );
        let e = &self.errors;
        let _ = write!(
            s,
            "errors     {} (connect {}, reset {}, timeout {}, status {}, other {})",
            e.total(),
            e.connect,
            e.reset,
            e.timeout,
            e.status,
            e.other
        );
        if !self.status_codes.is_empty() {
            let codes: Vec<String> = self
                .status_codes
                .iter()
                .map(|(c, n)| format!("{c}: {n}"))
                .collect();
            let _ = write!(s, " [{}]", codes.join(", "));
        }
        s.push('\n');
        let _ = writeln!(
            s,
            "latency µs {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "min", "p50", "p90", "p99", "p99.9", "max", "mean"
        );
        let row = |s: &mut String, name: &str, p: &Percentiles| {
            let _ = writeln!(
                s,
                "{name:<10} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                p.min, p.p50, p.p90, p.p99, p.p999, p.max, p.mean
            );
        };
        row(&mut s, "", &self.latency_us);
        if let Some(lag) = &self.send_lag_us {
            row(&mut s, "send lag", lag);
        }
        if let Some(e) = &self.first_connect_error {
            let _ = writeln!(s, "connect    first error: {e}");
        }
        let cpu = self.generator_cpu_user_s + self.generator_cpu_sys_s;
        let _ = writeln!(
            s,
            "generator  {:.2} s CPU ({:.2} user, {:.2} sys)",
            cpu, self.generator_cpu_user_s, self.generator_cpu_sys_s
        );
        s
    }
}

/// `12345678` → `12,345,678`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Where requests go, parsed from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Address to connect to.
    pub addr: SocketAddr,
    /// `Host` / `:authority` value.
    pub authority: String,
    /// Path and query.
    pub path_and_query: String,
    /// `https://`: speak TLS.
    pub tls: bool,
    /// The host part (no port, no brackets) of `host` if given, else of the URL: the
    /// default SNI.
    pub server_name: String,
}

/// Parses and resolves `url` (`http://` or `https://`).
pub fn parse_target(url: &str, host: Option<&str>) -> Result<Target, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(format!(
                "invalid URL {url:?}: expected http://HOST:PORT/PATH or https://HOST:PORT/PATH"
            ))
        }
    };
    let auth = uri
        .authority()
        .ok_or_else(|| format!("invalid URL {url:?}: no host"))?;
    let port = auth.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = (auth.host().trim_matches(|c| c == '[' || c == ']'), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", auth.host()))?
        .next()
        .ok_or_else(|| format!("cannot resolve {}: no address", auth.host()))?;
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_string());
    let bare = |h: &str| h.trim_matches(|c| c == '[' || c == ']').to_string();
    let server_name = match host {
        Some(h) => match h.parse::<http::uri::Authority>() {
            Ok(a) => bare(a.host()),
            Err(_) => bare(h),
        },
        None => bare(auth.host()),
    };
    Ok(Target {
        addr,
        authority: host.unwrap_or(auth.as_str()).to_string(),
        path_and_query,
        tls,
        server_name,
    })
}

/// Parses `Name: value` header arguments.
pub fn parse_headers(headers: &[String]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("invalid header {h:?}: expected `Name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| format!("invalid header name in {h:?}: {e}"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|e| format!("invalid header value in {h:?}: {e}"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// The request every user sends.
#[derive(Debug)]
struct Template {
    uri: Uri,
    headers: HeaderMap,
}

impl Template {
    fn new(target: &Target, extra: HeaderMap, h2: bool) -> Result<Template, String> {
        let mut headers = extra;
        let uri: Uri = if h2 {
            // h2 carries the authority in the URI (`:authority`), not a Host header.
            headers.remove(http::header::HOST);
            let scheme = if target.tls { "https" } else { "http" };
            format!("{scheme}://{}{}", target.authority, target.path_and_query)
                .parse()
                .map_err(|e| format!("invalid host {:?}: {e}", target.authority))?
        } else {
            let host = HeaderValue::from_str(&target.authority)
                .map_err(|e| format!("invalid host {:?}: {e}", target.authority))?;
            headers.insert(http::header::HOST, host);
            target
                .path_and_query
                .parse()
                .map_err(|e| format!("invalid path {:?}: {e}", target.path_and_query))?
        };
        Ok(Template { uri, headers })
    }

    fn request(&self) -> Request<Empty<Bytes>> {
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Kinds of failed exchanges (non-2xx statuses are counted separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrKind {
    Connect,
    Reset,
    Timeout,
    Other,
}

fn classify(e: &hyper::Error) -> ErrKind {
    if is_tls_error(e) {
        return ErrKind::Connect;
    }
    if e.is_timeout() {
        return ErrKind::Timeout;
    }
    if e.is_closed() || e.is_incomplete_message() || e.is_canceled() {
        return ErrKind::Reset;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return match io.kind() {
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    ErrKind::Reset
                }
                K::TimedOut => ErrKind::Timeout,
                _ => ErrKind::Other,
            };
        }
        if s.downcast_ref::<h2::Error>().is_some() {
            // RST_STREAM or GOAWAY from the peer.
            return ErrKind::Reset;
        }
        source = s.source();
    }
    ErrKind::Other
}

/// Whether a TLS error (a failed handshake, or an alert from the server) is in `e`'s
/// chain: tokio-rustls reports them as I/O errors wrapping a `rustls::Error`.
fn is_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if inner.is::<rustls::Error>() {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// Counters the progress line reads while the run goes on.
#[derive(Default)]
struct Progress {
    ok: AtomicU64,
    errors: AtomicU64,
}

/// What one thread measured.
#[derive(Default)]
struct ThreadStats {
    latency: LatencyHistogram,
    lag: LatencyHistogram,
    requests: u64,
    bytes: u64,
    errors: ErrorCounts,
    status: BTreeMap<u16, u64>,
    last_end: Option<Instant>,
    first_connect_error: Option<String>,
    /// TLS version and ALPN of the first connection that completed its handshake.
    negotiated: Option<(Option<String>, Option<String>)>,
}

/// How to speak TLS to the target.
#[derive(Clone)]
struct TlsDial {
    connector: TlsConnector,
    name: ServerName<'static>,
}

/// Where and how to connect.
#[derive(Clone)]
struct Dial {
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<TlsDial>,
    /// With TLS, the server must select ALPN `h2`.
    h2: bool,
}

/// A failed connection attempt: counted as a `connect` error, its reason kept for the
/// report.
#[derive(Debug)]
struct ConnectError(String);

/// A connection's TLS parameters: version and ALPN.
type Negotiated = Option<(Option<String>, Option<String>)>;

/// Shared by the users of one thread.
struct Ctx {
    cfg: LoadConfig,
    dial: Dial,
    template: Template,
    stats: RefCell<ThreadStats>,
    progress: Arc<Progress>,
    /// Warm-up starts (and the open-loop schedule is counted from here).
    base: Instant,
    /// Recording starts.
    measure_from: Instant,
    /// No request starts at or after this.
    deadline: Instant,
    users: usize,
}

impl Ctx {
    /// Records a failed connection attempt for a request that was meant to start at
    /// `start`.
    fn connect_failed(&self, start: Instant, e: ConnectError) {
        self.note_connect_error(e.0);
        self.record(start, start, Err(ErrKind::Connect));
    }

    /// Keeps the first connect error's reason for the report.
    fn note_connect_error(&self, why: String) {
        let mut st = self.stats.borrow_mut();
        if st.first_connect_error.is_none() {
            st.first_connect_error = Some(why);
        }
    }

    /// After a failed connection attempt, the closed loop waits a little rather than
    /// spinning; the open loop keeps its schedule.
    async fn backoff(&self) {
        if self.cfg.rate.is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Notes the TLS parameters of a new connection (the first one is reported).
    fn negotiated(&self, n: Negotiated) {
        let mut st = self.stats.borrow_mut();
        if st.negotiated.is_none() {
            st.negotiated = n;
        }
    }

    /// Records the outcome of one exchange that started (or was meant to) at `start`.
    fn record(&self, start: Instant, sent: Instant, outcome: Result<(StatusCode, u64), ErrKind>) {
        let end = Instant::now();
        let measured = start >= self.measure_from;
        let mut st = self.stats.borrow_mut();
        match outcome {
            Ok((status, bytes)) if status.is_success() => {
                self.progress.ok.fetch_add(1, Ordering::Relaxed);
                if measured {
                    st.requests += 1;
                    st.bytes += bytes;
                    st.latency.record_ns((end - start).as_nanos() as u64);
                    if self.cfg.rate.is_some() {
                        st.lag
                            .record_ns(sent.saturating_duration_since(start).as_nanos() as u64);
                    }
                    st.last_end = Some(end);
                }
            }
            Ok((status, _)) => {
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
                if measured {
                    st.errors.status += 1;
                    *st.status.entry(status.as_u16()).or_default() += 1;
                    st.last_end = Some(end);
                }
            }
            Err(kind) => {
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
                if measured {
                    st.errors.count(kind);
                    st.last_end = Some(end);
                }
            }
        }
    }
}

/// Why a TLS connection failed, if it failed with a TLS error or before the server sent
/// a single byte of data. A TLS 1.3 server refuses a client certificate with an alert
/// sent after the client's side of the handshake is done, so the connection dies at its
/// first read (or, if the server's close overtakes the alert, with a reset); HTTP/2 keeps
/// only the message of such an I/O error, so it is caught on the stream itself
/// ([`Watched`]).
#[derive(Clone, Default)]
struct TlsFailure(Arc<std::sync::Mutex<Option<String>>>);

impl TlsFailure {
    fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|f| f.clone())
    }

    fn note(&self, e: &std::io::Error, served: bool) {
        let why = if is_tls_error(e) {
            format!("TLS: {e}")
        } else if !served {
            format!("TLS connection failed before the server sent any data: {e}")
        } else {
            return;
        };
        if let Ok(mut f) = self.0.lock() {
            f.get_or_insert(why);
        }
    }
}

/// A TLS stream that notes the TLS error (e.g. an alert received) that fails a read or
/// write, or any error before the server's first data, for the users of its connection
/// to count as a `connect` error.
struct Watched<S> {
    inner: S,
    failure: TlsFailure,
    /// Some data came from the server: it accepted the connection.
    served: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        match &r {
            std::task::Poll::Ready(Ok(())) if buf.filled().len() > before => self.served = true,
            std::task::Poll::Ready(Err(e)) => self.failure.note(e, self.served),
            _ => {}
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Err(e)) = &r {
            self.failure.note(e, self.served);
        }
        r
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Err(e)) = &r {
            self.failure.note(e, self.served);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        if let std::task::Poll::Ready(Err(e)) = &r {
            self.failure.note(e, self.served);
        }
        r
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An HTTP/1.1 connection; its driver task is aborted on drop.
struct H1Conn {
    tx: http1::SendRequest<Empty<Bytes>>,
    task: JoinHandle<()>,
    tls_failure: TlsFailure,
}

impl Drop for H1Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP/2 connection; its driver task is aborted on drop.
struct H2Conn {
    tx: http2::SendRequest<Empty<Bytes>>,
    task: JoinHandle<()>,
    tls_failure: TlsFailure,
}

impl Drop for H2Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tcp(dial: &Dial) -> Result<TcpStream, ConnectError> {
    let s = tokio::time::timeout(dial.timeout, TcpStream::connect(dial.addr))
        .await
        .map_err(|_| ConnectError(format!("TCP connect to {} timed out", dial.addr)))?
        .map_err(|e| ConnectError(format!("TCP connect to {}: {e}", dial.addr)))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// The TLS handshake on `tcp` (within the dial timeout): the stream and what was
/// negotiated.
async fn tls_handshake(
    dial: &Dial,
    t: &TlsDial,
    tcp: TcpStream,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, Negotiated), ConnectError> {
    let s = tokio::time::timeout(dial.timeout, t.connector.connect(t.name.clone(), tcp))
        .await
        .map_err(|_| ConnectError(format!("TLS handshake with {} timed out", dial.addr)))?
        .map_err(|e| ConnectError(format!("TLS handshake with {}: {e}", dial.addr)))?;
    let conn = s.get_ref().1;
    let version = conn
        .protocol_version()
        .map(|v| v.as_str().unwrap_or("TLS").replace("TLSv1_", "TLSv1."));
    let alpn = conn
        .alpn_protocol()
        .map(|a| String::from_utf8_lossy(a).into_owned());
    if dial.h2 && alpn.as_deref() != Some("h2") {
        return Err(ConnectError(format!(
            "{} did not select ALPN h2 (selected: {})",
            dial.addr,
            alpn.as_deref().unwrap_or("none")
        )));
    }
    Ok((s, Some((version, alpn))))
}

async fn handshake_h1<S>(io: S, tls_failure: TlsFailure) -> Result<H1Conn, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| ConnectError(format!("HTTP/1.1 handshake: {e}")))?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(H1Conn {
        tx,
        task,
        tls_failure,
    })
}

async fn handshake_h2<S>(io: S, tls_failure: TlsFailure) -> Result<H2Conn, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| ConnectError(format!("HTTP/2 handshake: {e}")))?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(H2Conn {
        tx,
        task,
        tls_failure,
    })
}

async fn connect_h1(dial: &Dial) -> Result<(H1Conn, Negotiated), ConnectError> {
    let tcp = tcp(dial).await?;
    match &dial.tls {
        None => Ok((handshake_h1(tcp, TlsFailure::default()).await?, None)),
        Some(t) => {
            let (inner, n) = tls_handshake(dial, t, tcp).await?;
            let failure = TlsFailure::default();
            let io = Watched {
                inner,
                failure: failure.clone(),
                served: false,
            };
            Ok((handshake_h1(io, failure).await?, n))
        }
    }
}

async fn connect_h2(dial: &Dial) -> Result<(H2Conn, Negotiated), ConnectError> {
    let tcp = tcp(dial).await?;
    match &dial.tls {
        None => Ok((handshake_h2(tcp, TlsFailure::default()).await?, None)),
        Some(t) => {
            let (inner, n) = tls_handshake(dial, t, tcp).await?;
            let failure = TlsFailure::default();
            let io = Watched {
                inner,
                failure: failure.clone(),
                served: false,
            };
            Ok((handshake_h2(io, failure).await?, n))
        }
    }
}

/// A stream user's hold on a shared HTTP/2 connection.
struct H2Handle {
    generation: u64,
    tx: http2::SendRequest<Empty<Bytes>>,
    tls_failure: TlsFailure,
}

impl H2Handle {
    fn of(generation: u64, c: &H2Conn) -> H2Handle {
        H2Handle {
            generation,
            tx: c.tx.clone(),
            tls_failure: c.tls_failure.clone(),
        }
    }
}

/// One HTTP/2 connection shared by its stream users; replaced when it dies.
#[derive(Default)]
struct H2Shared {
    current: RefCell<Option<(u64, Rc<H2Conn>)>>,
    generation: Cell<u64>,
    connecting: tokio::sync::Mutex<()>,
}

impl H2Shared {
    /// A sender on the live connection (connecting if there is none, or if the one
    /// the caller used, generation `dead`, is the current one).
    async fn sender(
        &self,
        dial: &Dial,
        dead: Option<u64>,
    ) -> Result<(H2Handle, Negotiated), ConnectError> {
        let _one_at_a_time = self.connecting.lock().await;
        {
            let mut cur = self.current.borrow_mut();
            if let (Some(d), Some((g, _))) = (dead, cur.as_ref()) {
                if *g == d {
                    *cur = None;
                }
            }
            if let Some((g, c)) = cur.as_ref() {
                return Ok((H2Handle::of(*g, c), None));
            }
        }
        let (conn, negotiated) = connect_h2(dial).await?;
        let g = self.generation.get() + 1;
        self.generation.set(g);
        let handle = H2Handle::of(g, &conn);
        *self.current.borrow_mut() = Some((g, Rc::new(conn)));
        Ok((handle, negotiated))
    }
}

/// Reads a response to the end: its status and body size.
async fn finish(
    resp: impl std::future::Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>>,
) -> hyper::Result<(StatusCode, u64)> {
    let resp = resp.await?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame?.data_ref() {
            n += d.len() as u64;
        }
    }
    Ok((status, n))
}

/// Sleeps until an instant with sub-millisecond precision (a `timerfd`, read through
/// the runtime's reactor); falls back to tokio's timer where that is not available.
struct Pacer {
    fd: Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
}

impl Pacer {
    fn new() -> Pacer {
        use std::os::fd::FromRawFd;
        // SAFETY: timerfd_create has no memory preconditions; a non-negative result is a
        // new descriptor that nothing else owns.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        let fd = (raw >= 0)
            .then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) })
            // SAFETY: the AsyncFd owns the descriptor, which is neither replaced nor closed
            // while registered.
            .and_then(|fd| unsafe { tokio::io::unix::AsyncFd::register(fd) }.ok());
        Pacer { fd }
    }

    async fn sleep_until(&self, t: Instant) {
        use std::os::fd::AsRawFd;
        let now = Instant::now();
        if t <= now {
            return;
        }
        let d = t - now;
        let Some(fd) = &self.fd else {
            tokio::time::sleep_until(t.into()).await;
            return;
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: a valid timerfd and a valid itimerspec; the old value is not requested.
        let rc = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc != 0 {
            tokio::time::sleep_until(t.into()).await;
            return;
        }
        loop {
            let Ok(mut guard) = fd.readable().await else {
                tokio::time::sleep_until(t.into()).await;
                return;
            };
            let read = guard.try_io(|inner| {
                let mut buf = [0u8; 8];
                // SAFETY: reading 8 bytes into an 8-byte buffer.
                let n = unsafe { libc::read(inner.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match read {
                Ok(_) => return,
                Err(_would_block) => continue,
            }
        }
    }
}

/// One HTTP/1.1 user: one connection, one request at a time.
async fn h1_user(ctx: Rc<Ctx>, user: usize, mut conn: Option<H1Conn>) {
    let pacer = ctx.cfg.rate.map(|_| Pacer::new());
    let mut k = 0u64;
    loop {
        let start = match (ctx.cfg.rate, &pacer) {
            (Some(rate), Some(p)) => {
                let t = ctx.base + intended_offset(user, k, ctx.users, rate);
                k += 1;
                if t >= ctx.deadline {
                    break;
                }
                p.sleep_until(t).await;
                t
            }
            _ => {
                let now = Instant::now();
                if now >= ctx.deadline {
                    break;
                }
                now
            }
        };
        // A connection the server closed (keep-alive limit, idle timeout) is replaced
        // without counting an error; only a failed connect counts.
        if let Some(c) = conn.as_mut() {
            if c.tx.ready().await.is_err() {
                let failure = c.tls_failure.get();
                conn = None;
                if let Some(why) = failure {
                    // Not a server's keep-alive close: a TLS refusal.
                    ctx.connect_failed(start, ConnectError(why));
                    ctx.backoff().await;
                    continue;
                }
            }
        }
        if conn.is_none() {
            match connect_h1(&ctx.dial).await {
                Ok((c, negotiated)) => {
                    ctx.negotiated(negotiated);
                    conn = Some(c);
                }
                Err(e) => {
                    ctx.connect_failed(start, e);
                    ctx.backoff().await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let sent = Instant::now();
        let start = if ctx.cfg.rate.is_some() { start } else { sent };
        let mut outcome = match tokio::time::timeout(
            ctx.cfg.timeout,
            finish(c.tx.send_request(ctx.template.request())),
        )
        .await
        {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(ErrKind::Timeout),
        };
        if outcome.is_err() {
            // The connection's state is unknown: start afresh.
            if let Some(why) = c.tls_failure.get() {
                ctx.note_connect_error(why);
                outcome = Err(ErrKind::Connect);
            }
            conn = None;
        }
        ctx.record(start, sent, outcome);
    }
}

/// One h2c stream user: one request at a time on a connection shared with the other
/// stream users of the same connection.
async fn h2_user(ctx: Rc<Ctx>, shared: Rc<H2Shared>, user: usize) {
    let mut tx: Option<H2Handle> = None;
    let mut dead: Option<u64> = None;
    let pacer = ctx.cfg.rate.map(|_| Pacer::new());
    let mut k = 0u64;
    loop {
        let start = match (ctx.cfg.rate, &pacer) {
            (Some(rate), Some(p)) => {
                let t = ctx.base + intended_offset(user, k, ctx.users, rate);
                k += 1;
                if t >= ctx.deadline {
                    break;
                }
                p.sleep_until(t).await;
                t
            }
            _ => {
                let now = Instant::now();
                if now >= ctx.deadline {
                    break;
                }
                now
            }
        };
        if tx.is_none() {
            match shared.sender(&ctx.dial, dead.take()).await {
                Ok((handle, negotiated)) => {
                    ctx.negotiated(negotiated);
                    tx = Some(handle);
                }
                Err(e) => {
                    ctx.connect_failed(start, e);
                    ctx.backoff().await;
                    continue;
                }
            }
        }
        let Some(handle) = tx.as_mut() else {
            continue;
        };
        let generation = handle.generation;
        if handle.tx.ready().await.is_err() {
            let failure = handle.tls_failure.get();
            dead = Some(generation);
            tx = None;
            if let Some(why) = failure {
                // Not a server's GOAWAY: a TLS refusal.
                ctx.connect_failed(start, ConnectError(why));
                ctx.backoff().await;
            }
            continue;
        }
        let sender = &mut handle.tx;
        let sent = Instant::now();
        let start = if ctx.cfg.rate.is_some() { start } else { sent };
        let mut outcome = match tokio::time::timeout(
            ctx.cfg.timeout,
            finish(sender.send_request(ctx.template.request())),
        )
        .await
        {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(ErrKind::Timeout),
        };
        if outcome.is_err() {
            if let Some(why) = handle.tls_failure.get() {
                ctx.note_connect_error(why);
                outcome = Err(ErrKind::Connect);
            }
            if handle.tx.is_closed() {
                dead = Some(generation);
                tx = None;
            }
        }
        ctx.record(start, sent, outcome);
    }
}

/// Start-line synchronisation between the threads and the coordinator.
struct Sync {
    connected: Barrier,
    go: Barrier,
    base: OnceLock<Instant>,
}

/// Runs one thread's users: `conns` are the connection indexes it owns.
fn thread_main(
    cfg: LoadConfig,
    target: Target,
    tls: Option<TlsDial>,
    conns: Vec<usize>,
    sync: Arc<Sync>,
    progress: Arc<Progress>,
) -> Result<ThreadStats, String> {
    // Every early return still passes both barriers, or the coordinator would wait forever.
    let fail = |e: String| {
        sync.connected.wait();
        sync.go.wait();
        Err(e)
    };
    let template = match parse_headers(&cfg.headers).and_then(|h| Template::new(&target, h, cfg.h2))
    {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start a runtime: {e}")),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let dial = Dial {
            addr: target.addr,
            timeout: cfg.timeout,
            tls,
            h2: cfg.h2,
        };
        let streams = if cfg.h2 { cfg.streams.max(1) } else { 1 };
        let users = cfg.connections * streams;
        // Connections are opened (concurrently) before the clock starts; one that fails
        // here is retried, and counted, in the run.
        // Their handshakes (TLS included) are not part of any measured latency.
        let mut opening = Vec::new();
        for &c in &conns {
            let h2 = cfg.h2;
            let dial = dial.clone();
            opening.push(tokio::task::spawn_local(async move {
                if h2 {
                    let shared = Rc::new(H2Shared::default());
                    let negotiated = shared.sender(&dial, None).await.ok().and_then(|(_, n)| n);
                    (c, None, Some(shared), negotiated)
                } else {
                    match connect_h1(&dial).await {
                        Ok((conn, n)) => (c, Some(conn), None, n),
                        Err(_) => (c, None, None, None),
                    }
                }
            }));
        }
        let mut h1: Vec<(usize, Option<H1Conn>)> = Vec::new();
        let mut h2: Vec<(usize, Rc<H2Shared>)> = Vec::new();
        let mut first_negotiated: Negotiated = None;
        for (&c, o) in conns.iter().zip(opening) {
            match o.await {
                Ok((_, _, Some(shared), n)) => {
                    first_negotiated = first_negotiated.or(n);
                    h2.push((c, shared));
                }
                Ok((_, conn, None, n)) => {
                    first_negotiated = first_negotiated.or(n);
                    h1.push((c, conn));
                }
                // Not opened: the user connects by itself.
                Err(_) if cfg.h2 => h2.push((c, Rc::new(H2Shared::default()))),
                Err(_) => h1.push((c, None)),
            }
        }
        let placeholder = Instant::now();
        let mut ctx = Ctx {
            dial,
            template,
            stats: RefCell::new(ThreadStats {
                negotiated: first_negotiated,
                ..ThreadStats::default()
            }),
            progress,
            base: placeholder,
            measure_from: placeholder,
            deadline: placeholder,
            users,
            cfg,
        };
        sync.connected.wait();
        sync.go.wait();
        let base = sync.base.get().copied().unwrap_or_else(Instant::now);
        ctx.base = base;
        ctx.measure_from = base + ctx.cfg.warmup;
        ctx.deadline = ctx.measure_from + ctx.cfg.duration;
        let connections = ctx.cfg.connections;
        let ctx = Rc::new(ctx);
        let mut tasks = Vec::new();
        for (c, conn) in h1 {
            let ctx = ctx.clone();
            tasks.push(tokio::task::spawn_local(h1_user(ctx, c, conn)));
        }
        for (c, shared) in h2 {
            for s in 0..streams {
                let (ctx, shared) = (ctx.clone(), shared.clone());
                // Users of one connection are spread over the schedule.
                let user = s * connections + c;
                tasks.push(tokio::task::spawn_local(h2_user(ctx, shared, user)));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        let stats = std::mem::take(&mut *ctx.stats.borrow_mut());
        Ok(stats)
    })
}

/// Runs the load described by `cfg` and returns its report.
pub fn run(cfg: &LoadConfig) -> Result<LoadReport, String> {
    let cpu_before = procfs::self_cpu();
    if cfg.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if cfg.duration.is_zero() {
        return Err("--duration must be positive".into());
    }
    if cfg.streams > 1 && !cfg.h2 {
        return Err("--streams applies to h2c only (add --h2)".into());
    }
    if let Some(r) = cfg.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(format!("--rate must be a positive number, got {r}"));
        }
    }
    let target = parse_target(&cfg.url, cfg.host.as_deref())?;
    // Checked here so that a bad header is reported once, before any thread starts.
    let headers = parse_headers(&cfg.headers)?;
    Template::new(&target, headers, cfg.h2)?;
    let (tls, tls_report) = tls_setup(cfg, &target)?;
    let threads = cfg.threads.clamp(1, cfg.connections);
    let streams = if cfg.h2 { cfg.streams.max(1) } else { 1 };
    let sync = Arc::new(Sync {
        connected: Barrier::new(threads + 1),
        go: Barrier::new(threads + 1),
        base: OnceLock::new(),
    });
    let progress = Arc::new(Progress::default());
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for t in 0..threads {
        let conns: Vec<usize> = (0..cfg.connections).filter(|c| c % threads == t).collect();
        let (cfg, target, tls, sync, progress, tx) = (
            cfg.clone(),
            target.clone(),
            tls.clone(),
            sync.clone(),
            progress.clone(),
            tx.clone(),
        );
        let h = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || {
                let r = thread_main(cfg, target, tls, conns, sync, progress);
                let _ = tx.send(r);
            });
        match h {
            Ok(h) => handles.push(h),
            Err(e) => return Err(format!("cannot start a generator thread: {e}")),
        }
    }
    drop(tx);
    sync.connected.wait();
    let base = Instant::now();
    let _ = sync.base.set(base);
    sync.go.wait();
    let measure_from = base + cfg.warmup;
    let deadline = measure_from + cfg.duration;

    let mut results = Vec::new();
    let mut next_tick = base + Duration::from_secs(1);
    let (mut last_ok, mut last_tick) = (0u64, base);
    while results.len() < threads {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(r) => results.push(r),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                let ok = progress.ok.load(Ordering::Relaxed);
                let errors = progress.errors.load(Ordering::Relaxed);
                if cfg.progress {
                    let rate = (ok - last_ok) as f64 / (now - last_tick).as_secs_f64().max(1e-9);
                    let phase = if now < measure_from {
                        " (warm-up)"
                    } else if now > deadline + Duration::from_millis(100) {
                        " (finishing)"
                    } else {
                        ""
                    };
                    eprintln!(
                        "{:>5.0}s {:>10} req/s   total {:>12}   errors {}{phase}",
                        (now - base).as_secs_f64(),
                        group(rate.round() as u64),
                        group(ok),
                        group(errors),
                    );
                }
                last_ok = ok;
                last_tick = now;
                next_tick += Duration::from_secs(1);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let mut total = ThreadStats::default();
    for r in results {
        let s = r?;
        total.latency.merge(&s.latency);
        total.lag.merge(&s.lag);
        total.requests += s.requests;
        total.bytes += s.bytes;
        total.errors.add(&s.errors);
        for (code, n) in s.status {
            *total.status.entry(code).or_default() += n;
        }
        total.last_end = total.last_end.max(s.last_end);
        total.first_connect_error = total.first_connect_error.or(s.first_connect_error);
        total.negotiated = total.negotiated.or(s.negotiated);
    }
    let end = total.last_end.unwrap_or(deadline).max(deadline);
    let duration_s = (end - measure_from).as_secs_f64();
    let cpu = match (cpu_before, procfs::self_cpu()) {
        (Some(a), Some(b)) => b.since(a).seconds(procfs::clock_ticks_per_second()),
        _ => (0.0, 0.0),
    };
    let tls_report = tls_report.map(|mut r| {
        if let Some((version, alpn)) = total.negotiated.take() {
            r.version = version;
            r.alpn = alpn;
        }
        r
    });
    Ok(LoadReport {
        mode: if cfg.rate.is_some() { "open" } else { "closed" }.to_string(),
        protocol: match (cfg.h2, target.tls) {
            (false, false) => "http1",
            (true, false) => "h2c",
            (false, true) => "http1+tls",
            (true, true) => "h2",
        }
        .to_string(),
        tls: tls_report,
        url: cfg.url.clone(),
        host: target.authority.clone(),
        connections: cfg.connections,
        streams,
        threads,
        target_rate: cfg.rate,
        warmup_s: cfg.warmup.as_secs_f64(),
        duration_s,
        requests: total.requests,
        rps: total.requests as f64 / duration_s.max(1e-9),
        bytes: total.bytes,
        errors: total.errors,
        status_codes: total
            .status
            .into_iter()
            .map(|(c, n)| (c.to_string(), n))
            .collect(),
        latency_us: total.latency.summary(),
        send_lag_us: cfg.rate.map(|_| total.lag.summary()),
        generator_cpu_user_s: cpu.0,
        generator_cpu_sys_s: cpu.1,
        first_connect_error: total.first_connect_error,
    })
}

/// The TLS connector for an `https://` target (`None` for `http://`, where TLS options
/// are refused), built once: certificate and key files are read and checked here, so a
/// bad file is reported before any load is sent.
fn tls_setup(
    cfg: &LoadConfig,
    target: &Target,
) -> Result<(Option<TlsDial>, Option<TlsReport>), String> {
    let o = &cfg.tls;
    if !target.tls {
        if o.any_set() {
            return Err(
                "--cacert, --insecure, --cert, --key and --sni need an https:// URL".into(),
            );
        }
        return Ok((None, None));
    }
    if o.insecure && o.cacert.is_some() {
        return Err("--insecure and --cacert exclude each other".into());
    }
    match (&o.cert, &o.key) {
        (Some(_), None) => return Err("--cert needs --key (the client certificate's key)".into()),
        (None, Some(_)) => return Err("--key needs --cert (the client certificate)".into()),
        _ => {}
    }
    let alpn: &[u8] = if cfg.h2 { b"h2" } else { b"http/1.1" };
    let config = meshproxy_certs::client_config(&meshproxy_certs::ClientTlsOptions {
        ca: o.cacert.clone(),
        client_cert: o.cert.clone(),
        client_key: o.key.clone(),
        subject_alt_names: Vec::new(),
        insecure_skip_verify: o.insecure,
        alpn: vec![alpn.to_vec()],
    })
    .map_err(|e| format!("TLS: {e}"))?;
    let sni = o.sni.clone().unwrap_or_else(|| target.server_name.clone());
    let name = ServerName::try_from(sni.clone())
        .map_err(|e| format!("invalid TLS server name {sni:?}: {e}"))?;
    let verify = if o.insecure {
        "insecure".to_string()
    } else {
        match &o.cacert {
            Some(p) => format!("cacert {}", p.display()),
            None => "system roots".to_string(),
        }
    };
    Ok((
        Some(TlsDial {
            connector: TlsConnector::from(config),
            name,
        }),
        Some(TlsReport {
            sni,
            verify,
            client_cert: o.cert.is_some(),
            version: None,
            alpn: None,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_from_url() {
        let t = parse_target("http://127.0.0.1:8080/a/b?c=d", None).unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/a/b?c=d");
        let t = parse_target("http://127.0.0.1:9", Some("svc.bench")).unwrap();
        assert_eq!(t.authority, "svc.bench");
        assert_eq!(t.path_and_query, "/");
    }

    #[test]
    fn https_targets() {
        let t = parse_target("https://127.0.0.1:8443/x", None).unwrap();
        assert!(t.tls);
        assert_eq!(t.server_name, "127.0.0.1");
        let t = parse_target("https://localhost/", Some("svc.bench:8443")).unwrap();
        assert_eq!(t.addr.port(), 443);
        assert_eq!(t.server_name, "svc.bench");
        assert_eq!(t.authority, "svc.bench:8443");
        let t = parse_target("https://[::1]:8443/", None).unwrap();
        assert_eq!(t.server_name, "::1");
        assert!(!parse_target("http://127.0.0.1:1/", None).unwrap().tls);
        assert!(parse_target("ftp://x/", None).is_err());
        assert!(parse_target("not a url", None).is_err());
        let h2 = Template::new(
            &parse_target("https://127.0.0.1:1/p", Some("svc")).unwrap(),
            HeaderMap::new(),
            true,
        )
        .unwrap()
        .request();
        assert_eq!(h2.uri(), "https://svc/p");
    }

    #[test]
    fn tls_options_are_checked() {
        let cfg = |url: &str, tls: TlsOptions| LoadConfig {
            url: url.into(),
            tls,
            ..LoadConfig::default()
        };
        let setup = |c: &LoadConfig| {
            let t = parse_target(&c.url, c.host.as_deref()).unwrap();
            tls_setup(c, &t).map(|(_, r)| r)
        };
        let insecure = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        assert!(setup(&cfg("http://127.0.0.1:1/", insecure.clone()))
            .unwrap_err()
            .contains("https://"));
        let r = setup(&cfg("https://127.0.0.1:1/", insecure.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.sni.as_str(), r.verify.as_str()),
            ("127.0.0.1", "insecure")
        );
        assert!(!r.client_cert);
        let both = TlsOptions {
            cacert: Some("/no/such/ca.pem".into()),
            ..insecure
        };
        assert!(setup(&cfg("https://127.0.0.1:1/", both))
            .unwrap_err()
            .contains("exclude"));
        let cert_only = TlsOptions {
            cert: Some("c.pem".into()),
            ..TlsOptions::default()
        };
        assert!(setup(&cfg("https://127.0.0.1:1/", cert_only))
            .unwrap_err()
            .contains("--key"));
        let missing = TlsOptions {
            cacert: Some("/no/such/ca.pem".into()),
            ..TlsOptions::default()
        };
        let e = setup(&cfg("https://127.0.0.1:1/", missing)).unwrap_err();
        assert!(e.contains("/no/such/ca.pem"), "{e}");
    }

    #[test]
    fn headers_parse() {
        let h = parse_headers(&["end-user: jason".into(), "x-a:1".into()]).unwrap();
        assert_eq!(h["end-user"], "jason");
        assert_eq!(h["x-a"], "1");
        assert!(parse_headers(&["no-colon".into()]).is_err());
        assert!(parse_headers(&["bad name: v".into()]).is_err());
    }

    #[test]
    fn h1_and_h2_templates() {
        let t = parse_target("http://127.0.0.1:1/p", Some("svc")).unwrap();
        let h1 = Template::new(&t, HeaderMap::new(), false)
            .unwrap()
            .request();
        assert_eq!(h1.uri(), "/p");
        assert_eq!(h1.headers()["host"], "svc");
        let h2 = Template::new(&t, HeaderMap::new(), true).unwrap().request();
        assert_eq!(h2.uri(), "http://svc/p");
        assert!(h2.headers().get("host").is_none());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(12345678), "12,345,678");
    }

    #[test]
    fn error_counts_add_up() {
        let mut e = ErrorCounts::default();
        e.count(ErrKind::Connect);
        e.count(ErrKind::Reset);
        e.count(ErrKind::Timeout);
        e.count(ErrKind::Other);
        e.status += 2;
        assert_eq!(e.total(), 6);
    }
}
