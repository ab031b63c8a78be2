//! The runtime: worker threads (one current-thread tokio runtime each, thread-per-core),
//! their listening sockets, and the state they share.

pub mod active;
pub mod listen;

use crate::access_log::AccessLog;
use crate::http::router::{self, ConnInfo};
use active::Active;
use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use meshproxy_config::compile::Snapshot;
use meshproxy_config::model::proxy::ListenerProtocol;
use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

thread_local! {
    static WORKER_ID: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running on this thread (0 elsewhere).
pub fn worker_id() -> usize {
    WORKER_ID.with(|w| w.get())
}

/// Runtime options (`meshproxy run` flags).
#[derive(Clone, Debug)]
pub struct Options {
    /// Data-plane worker threads.
    pub workers: usize,
    /// Drain bound on shutdown.
    pub drain_timeout: Duration,
    /// Record Istio request metrics.
    pub metrics: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: 1,
            drain_timeout: Duration::from_secs(30),
            metrics: true,
        }
    }
}

/// The CPUs this process may use (cgroup CPU quotas included, as the standard library
/// reads them).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// State shared by all workers.
pub struct Shared {
    /// The config in force and its live cluster state.
    pub active: ArcSwap<Active>,
    /// Options.
    pub options: Options,
    /// Access log sink.
    pub access_log: AccessLog,
    /// True once every listener is bound (admin `/ready`); false again when draining.
    pub ready: std::sync::atomic::AtomicBool,
    /// Prometheus metrics.
    pub metrics: crate::telemetry::istio::Metrics,
    /// Config reloads accepted.
    pub reloads_accepted: std::sync::atomic::AtomicU64,
    /// Config reloads refused.
    pub reloads_rejected: std::sync::atomic::AtomicU64,
}

/// A running proxy.
pub struct Server {
    /// Shared state (for tests and the admin server).
    pub shared: Arc<Shared>,
    addrs: Vec<(String, SocketAddr)>,
    stop: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds every listener of `snapshot` and starts the workers.
    pub fn start(
        snapshot: Snapshot,
        options: Options,
        access_log: AccessLog,
    ) -> io::Result<Server> {
        let workers = options.workers.max(1);
        let snapshot = Arc::new(snapshot);
        let active = Active::build(snapshot.clone(), None, workers);
        let metrics = crate::telemetry::istio::Metrics::new(options.metrics);
        let shared = Arc::new(Shared {
            active: ArcSwap::from_pointee(active),
            options,
            access_log,
            ready: std::sync::atomic::AtomicBool::new(false),
            metrics,
            reloads_accepted: std::sync::atomic::AtomicU64::new(0),
            reloads_rejected: std::sync::atomic::AtomicU64::new(0),
        });
        let mut addrs = Vec::new();
        // per_worker[w] = [(listener name, socket)]
        let mut per_worker: Vec<Vec<(Arc<str>, std::net::TcpListener)>> =
            (0..workers).map(|_| Vec::new()).collect();
        for l in &snapshot.listeners {
            if l.protocol == ListenerProtocol::Tcp {
                tracing::warn!(listener = %l.name, "TCP listeners are not served yet; skipped");
                continue;
            }
            let (local, sockets) = listen::bind_many(l.address, workers).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("listener {} on {}: {e}", l.name, l.address),
                )
            })?;
            addrs.push((l.name.clone(), local));
            let name: Arc<str> = l.name.as_str().into();
            for (w, s) in sockets.into_iter().enumerate() {
                per_worker[w].push((name.clone(), s));
            }
        }
        let (stop, stop_rx) = watch::channel(false);
        let mut threads = Vec::new();
        for (w, sockets) in per_worker.into_iter().enumerate() {
            let shared = shared.clone();
            let mut stop_rx = stop_rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("worker-{w}"))
                .spawn(move || {
                    WORKER_ID.with(|id| id.set(w));
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(worker = w, error = %e, "cannot start worker runtime");
                            return;
                        }
                    };
                    rt.block_on(async move {
                        for (name, socket) in sockets {
                            match TcpListener::from_std(socket) {
                                Ok(l) => {
                                    tokio::spawn(accept_loop(l, name, shared.clone()));
                                }
                                Err(e) => tracing::error!(error = %e, "cannot register listener"),
                            }
                        }
                        tokio::spawn(sweep_idle(shared.clone()));
                        let _ = stop_rx.wait_for(|s| *s).await;
                    });
                })?;
            threads.push(t);
        }
        shared
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(Server {
            shared,
            addrs,
            stop,
            threads,
        })
    }

    /// The bound address of a listener (useful with port 0).
    pub fn addr(&self, listener: &str) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(n, _)| n == listener)
            .map(|(_, a)| *a)
    }

    /// Every listener's bound address.
    pub fn addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// Stops the workers and waits for them.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Closes this worker's pooled connections past `http.idleTimeout` or
/// `tcp.maxConnectionDuration`, once a second (checkout also refuses stale ones).
async fn sweep_idle(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let active = shared.active.load();
        for c in active
            .clusters
            .iter()
            .chain(active.inbound.iter().map(|i| &i.state))
        {
            for e in &c.endpoints {
                e.pool.sweep(c.reuse);
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, name: Arc<str>, shared: Arc<Shared>) {
    let local = listener.local_addr().ok();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(ConnInfo {
            listener: name.clone(),
            local: local.unwrap_or(peer),
            peer,
            scheme: "http",
            original_dst: None,
        });
        tokio::spawn(serve_connection(stream, conn, shared.clone()));
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, conn: Arc<ConnInfo>, shared: Arc<Shared>) {
    let svc = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(router::handle(req, conn, shared).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
        .await
    {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
