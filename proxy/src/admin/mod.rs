//! The admin server (docs/contract.md §4), on its own thread and runtime so it answers while the data
//! plane is saturated: `/ready`, `/metrics`, `/clusters`, `/config_dump`, `/reload`, `/logging`.

pub mod clusters;
pub mod config_dump;
pub mod prometheus;
pub mod spare;

use crate::server::Shared;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;

/// How often histogram samples are folded into buckets. The exporter keeps every sample
/// until then (8 bytes each, three histograms per request): at 60k req/s a 5 s period
/// held ~7 MB of samples and a memory high-water mark to match; 200 ms keeps it under
/// 300 KB for the same total work.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// A running admin server.
pub struct Admin {
    /// Bound address.
    pub addr: SocketAddr,
    /// A duplicate of the listening socket (handed to a successor on binary upgrade).
    socket: std::net::TcpListener,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Admin {
    /// Binds `addr` and serves the admin endpoints for `shared`.
    pub fn start(shared: Arc<Shared>, addr: SocketAddr) -> io::Result<Admin> {
        let std_listener = std::net::TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("admin address {addr}: {e}")))?;
        Self::start_on(shared, std_listener)
    }

    /// Serves the admin endpoints on an already bound socket (one handed over by a
    /// previous process).
    pub fn start_on(shared: Arc<Shared>, std_listener: std::net::TcpListener) -> io::Result<Admin> {
        std_listener.set_nonblocking(true)?;
        let socket = std_listener.try_clone()?;
        let addr = std_listener.local_addr()?;
        let (stop, mut stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new().name("admin".into()).spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                tracing::error!("cannot start the admin runtime");
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else { return };
                // Histogram samples are folded into buckets periodically, scraped or not.
                let upkeep_shared = shared.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
                    loop {
                        tick.tick().await;
                        upkeep_shared.metrics.upkeep();
                    }
                });
                let spare = spare::Spare::default();
                loop {
                    tokio::select! {
                        _ = stop_rx.wait_for(|s| *s) => break,
                        accepted = listener.accept() => {
                            let Some(stream) = admit(&listener, accepted, &spare).await else { continue };
                            let (shared, spare) = (shared.clone(), spare.clone());
                            tokio::spawn(async move {
                                let svc = hyper::service::service_fn(move |req| {
                                    let shared = shared.clone();
                                    async move { Ok::<_, std::convert::Infallible>(handle(req, &shared).await) }
                                });
                                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                                // Its descriptor is closed: keep one in reserve again.
                                spare.refill();
                            });
                        }
                    }
                }
            });
        })?;
        Ok(Admin {
            addr,
            socket,
            stop,
            thread: Some(thread),
        })
    }
}

/// The connection an admin `accept` gave, or the one accepted in place of the spare
/// descriptor when the process is out of descriptors; `None` (after a pause, so a
/// persistent failure does not spin) when there is none.
async fn admit(
    listener: &tokio::net::TcpListener,
    accepted: io::Result<(tokio::net::TcpStream, SocketAddr)>,
    spare: &spare::Spare,
) -> Option<tokio::net::TcpStream> {
    let e = match accepted {
        Ok((stream, _)) => return Some(stream),
        Err(e) => e,
    };
    if spare::out_of_fds(&e) && spare.release() {
        tracing::warn!("out of file descriptors: the admin server uses its spare one");
        // Bounded: the connection that failed is normally still waiting.
        if let Ok(Ok((stream, _))) = tokio::time::timeout(ACCEPT_BACKOFF, listener.accept()).await {
            return Some(stream);
        }
    }
    tracing::debug!(error = %e, "admin accept failed");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
    spare.refill();
    None
}

/// The pause after a failed admin `accept`.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

impl Admin {
    /// A duplicate of the listening socket.
    pub fn socket(&self) -> io::Result<std::net::TcpListener> {
        self.socket.try_clone()
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn json(v: serde_json::Value) -> Response<Full<Bytes>> {
    let mut text = serde_json::to_string_pretty(&v).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    reply(StatusCode::OK, "application/json", text)
}

async fn handle(req: Request<hyper::body::Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/ready") => {
            if shared.ready.load(Ordering::Acquire) {
                reply(StatusCode::OK, "text/plain", "LIVE\n")
            } else {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "NOT READY\n")
            }
        }
        (&Method::GET, "/metrics") => {
            let active = shared.active.load();
            let mut text = shared.metrics.render();
            crate::admin::prometheus::render(&mut text, shared, &active);
            crate::telemetry::process::render(&mut text);
            reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text)
        }
        (&Method::POST, "/logging") => {
            let level = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("level="))
                .unwrap_or("");
            if level.is_empty() {
                return reply(StatusCode::BAD_REQUEST, "text/plain", "usage: POST /logging?level=debug\n");
            }
            match crate::log_control::set(level) {
                Ok(()) => {
                    tracing::info!(filter = level, "log level changed");
                    reply(StatusCode::OK, "text/plain", format!("log level set to {level}\n"))
                }
                Err(e) => reply(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n")),
            }
        }
        (&Method::POST, "/reload") => reload(shared).await,
        (&Method::GET, "/clusters") => json(clusters::render(&shared.active.load())),
        (&Method::GET, "/config_dump") => json(config_dump::render(&shared.active.load())),
        (_, "/ready" | "/metrics" | "/clusters" | "/config_dump" | "/logging" | "/reload") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; endpoints: GET /ready, GET /metrics, GET /clusters, GET /config_dump, POST /reload, POST /logging?level=\n",
        ),
    }
}

/// `POST /reload`: 200 with the version in force after the reload, 400 with every error
/// (the config in force stays).
async fn reload(shared: &Shared) -> Response<Full<Bytes>> {
    use crate::reload::{Outcome, Trigger};
    let reloader = shared
        .reloader
        .get()
        .cloned()
        .and_then(|r| r.downcast::<crate::reload::Reloader>().ok());
    let Some(reloader) = reloader else {
        return reply(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "this config was not read from files: nothing to reload\n",
        );
    };
    // Compiling is CPU work: keep it off the admin runtime's thread.
    let outcome = match tokio::task::spawn_blocking(move || reloader.reload(Trigger::Admin)).await {
        Ok(o) => o,
        Err(e) => {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("reload failed: {e}\n"),
            )
        }
    };
    match outcome {
        Outcome::Applied { version, applied } => json(serde_json::json!({
            "version": version,
            "changed": true,
            "listeners_added": applied.added,
            "listeners_removed": applied.removed,
        })),
        Outcome::Unchanged { version } => json(serde_json::json!({
            "version": version,
            "changed": false,
        })),
        Outcome::Rejected { errors } => {
            let mut r = json(serde_json::json!({ "errors": errors }));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        }
    }
}
