//! The runtime: worker threads (one current-thread tokio runtime each, thread-per-core),
//! their listening sockets, and the state they share.

/// The config in force and its live cluster state (lives in [`crate::runtime`]).
pub use crate::runtime::active;
pub mod codec_error;
pub mod connection;
mod dispatch;
pub mod downstream;
pub mod evict;
pub mod fd_budget;
pub mod h1_guard;
pub mod h2_guard;
mod http_conn;
pub mod limits;
pub mod listen;
pub mod listeners;
pub mod prefixed;
pub mod sniff;

use crate::access_log::AccessLog;
use crate::runtime::DataPath;
use crate::tls::mesh::MeshTls;
use active::Active;
use meshproxy_config::compile::proxy_settings::IdentityFiles;
use meshproxy_config::compile::Snapshot;
use meshproxy_config::model::proxy::ListenerProtocol;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
    /// What the data path reads (the config in force, access log, metrics, live
    /// connections); its fields are reached through `Shared` too (`Deref`).
    pub data: Arc<DataPath>,
    /// Options.
    pub options: Options,
    /// True once every listener is bound (admin `/ready`); false again when draining.
    pub ready: AtomicBool,
    /// Config reloads accepted.
    pub reloads_accepted: AtomicU64,
    /// Config reloads refused.
    pub reloads_rejected: AtomicU64,
    /// The workers' runtimes, for their task counts at scrape time (a soak run watches
    /// them stay flat).
    pub worker_runtimes: std::sync::Mutex<Vec<tokio::runtime::Handle>>,
    /// What reloads the config from its paths (a `reload::Reloader`, which admin
    /// `POST /reload` calls), kept alive by the server; unset when the config came from
    /// memory (the demo). Held as `Any` so the server does not depend on the module
    /// that drives it.
    pub reloader: std::sync::OnceLock<Arc<dyn std::any::Any + Send + Sync>>,
    /// Identity rotations put in force.
    pub identity_rotations: AtomicU64,
    /// Identity files refused (the identity in force stayed).
    pub identity_rejected: AtomicU64,
    /// Inbound connections refused by PeerAuthentication or a failed mTLS handshake.
    pub inbound_refused: AtomicU64,
    /// HTTP/1 request heads refused by the codec (unparsable, too large, smuggling).
    pub downstream_protocol_errors: AtomicU64,
    /// HTTP/2 connections and streams refused by the HTTP/2 guard (shared with each
    /// connection's guard).
    pub downstream_h2_protocol_errors: Arc<AtomicU64>,
    /// This workload's mesh identity in force (`spec.identity`), swapped on rotation.
    pub mesh_tls: Arc<arc_swap::ArcSwapOption<MeshTls>>,
    /// Requests in flight and shed under `spec.limits.maxActiveRequests`.
    pub overload: limits::Overload,
    /// Open downstream connections under the global cap (`maxDownstreamConnections`, or
    /// what the file-descriptor limit allows).
    pub downstream: Arc<downstream::Downstream>,
    /// Source labels of mTLS peers by identity (inbound metrics' `source_principal`).
    pub peer_labels: crate::telemetry::peers::PeerLabels,
}

impl std::ops::Deref for Shared {
    type Target = DataPath;
    fn deref(&self) -> &DataPath {
        &self.data
    }
}

/// A command to a worker.
enum Command {
    /// Accept on this socket (one of a listener's per-worker sockets).
    Serve {
        name: Arc<str>,
        socket: std::net::TcpListener,
        stop: watch::Receiver<bool>,
        drain: watch::Receiver<bool>,
        kill: watch::Receiver<bool>,
        conns: Arc<limits::ListenerConns>,
    },
}

/// What a config change did to the listeners.
#[derive(Debug, Default)]
pub struct Applied {
    /// Listeners bound by this change.
    pub added: Vec<String>,
    /// Listeners retired (draining).
    pub removed: Vec<String>,
}

/// A running proxy.
pub struct Server {
    /// Shared state (for tests and the admin server).
    pub shared: Arc<Shared>,
    workers: Vec<tokio::sync::mpsc::UnboundedSender<Command>>,
    listeners: Mutex<Vec<listeners::Bound>>,
    stop: watch::Sender<bool>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    apply_lock: Mutex<()>,
}

/// A TCP listener with nothing to route by: neither TCP routes nor an application to
/// forward to (INBOUND).
fn unserved(l: &meshproxy_config::compile::listener::Listener) -> bool {
    l.protocol == ListenerProtocol::Tcp
        && l.tcp_routes.is_none()
        && !matches!(
            l.role,
            meshproxy_config::compile::listener::ListenerRole::Inbound { .. }
        )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Server {
    /// Binds every listener of `snapshot` and starts the workers.
    pub fn start(
        snapshot: Snapshot,
        options: Options,
        access_log: AccessLog,
    ) -> io::Result<Server> {
        Self::start_with(snapshot, options, access_log, HashMap::new())
    }

    /// Like [`Server::start`], adopting listening sockets handed over by a previous
    /// process (by listener name) instead of binding new ones.
    pub fn start_with(
        snapshot: Snapshot,
        options: Options,
        access_log: AccessLog,
        mut inherited: HashMap<String, Vec<std::net::TcpListener>>,
    ) -> io::Result<Server> {
        let workers = options.workers.max(1);
        let mesh_tls = Arc::new(arc_swap::ArcSwapOption::empty());
        if let Some(files) = &snapshot.proxy.identity {
            let mesh = MeshTls::load(files).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("identity: {e}"))
            })?;
            mesh_tls.store(Some(Arc::new(mesh)));
        }
        let gateway_tls = active::gateway_tls(&snapshot)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let snapshot = Arc::new(snapshot);
        let mut active = Active::build(snapshot.clone(), None, workers, &mesh_tls);
        active.gateway_tls = gateway_tls;
        let metrics = crate::telemetry::istio::Metrics::new(options.metrics);
        let shared = Arc::new(Shared {
            data: Arc::new(DataPath::new(active, access_log, metrics)),
            options,
            ready: AtomicBool::new(false),
            reloads_accepted: AtomicU64::new(0),
            reloads_rejected: AtomicU64::new(0),
            worker_runtimes: std::sync::Mutex::new(Vec::new()),
            reloader: std::sync::OnceLock::new(),
            inbound_refused: AtomicU64::new(0),
            downstream_protocol_errors: AtomicU64::new(0),
            downstream_h2_protocol_errors: Arc::new(AtomicU64::new(0)),
            identity_rotations: AtomicU64::new(0),
            identity_rejected: AtomicU64::new(0),
            mesh_tls,
            overload: limits::Overload::default(),
            downstream: Arc::new(downstream::Downstream::new(fd_budget::soft_limit())),
            peer_labels: Default::default(),
        });
        let mut fresh = Vec::new();
        for l in &snapshot.listeners {
            if unserved(l) {
                tracing::warn!(listener = %l.name, "TCP listener without routes; skipped");
                continue;
            }
            fresh.push(listeners::bind(l, workers, inherited.remove(&l.name))?);
        }
        shared
            .downstream
            .apply(&snapshot.proxy.limits, workers, fresh.len() * workers);
        let (stop, stop_rx) = watch::channel(false);
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for w in 0..workers {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            senders.push(tx);
            let shared = shared.clone();
            let stop_rx = stop_rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("worker-{w}"))
                .spawn(move || worker(w, shared, rx, stop_rx))?;
            threads.push(t);
        }
        let server = Server {
            shared,
            workers: senders,
            listeners: Mutex::new(Vec::new()),
            stop,
            threads: Mutex::new(threads),
            apply_lock: Mutex::new(()),
        };
        for f in fresh {
            server.serve(f);
        }
        server.shared.ready.store(true, Ordering::Release);
        Ok(server)
    }

    fn serve(&self, f: listeners::Fresh) {
        let name: Arc<str> = f.bound.name.as_str().into();
        // One count for all of the listener's per-worker sockets.
        let conns = Arc::new(limits::ListenerConns::default());
        for (w, socket) in f.per_worker.into_iter().enumerate() {
            let tx = &self.workers[w % self.workers.len()];
            let _ = tx.send(Command::Serve {
                name: name.clone(),
                socket,
                stop: f.bound.stop.subscribe(),
                drain: f.bound.drain.subscribe(),
                kill: f.bound.kill.subscribe(),
                conns: conns.clone(),
            });
        }
        lock(&self.listeners).push(f.bound);
    }

    /// The bound address of a listener (useful with port 0).
    pub fn addr(&self, listener: &str) -> Option<SocketAddr> {
        lock(&self.listeners)
            .iter()
            .find(|b| b.name == listener)
            .map(|b| b.local)
    }

    /// Every listener's bound address.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        lock(&self.listeners)
            .iter()
            .map(|b| (b.name.clone(), b.local))
            .collect()
    }

    /// Duplicates of every listening socket, by listener name (binary upgrade hand-over).
    pub fn listening_sockets(&self) -> io::Result<Vec<(String, Vec<std::net::TcpListener>)>> {
        lock(&self.listeners)
            .iter()
            .map(|b| {
                Ok((
                    b.name.clone(),
                    b.sockets
                        .iter()
                        .map(|s| s.try_clone())
                        .collect::<io::Result<Vec<_>>>()?,
                ))
            })
            .collect()
    }

    /// Puts `snapshot` in force: new listeners are bound first (a failure refuses the
    /// whole config, the old one stays), then the config and cluster state are swapped
    /// in one atomic store, then removed listeners stop accepting and drain. Requests
    /// already running finish under the config they started with; every later request,
    /// on new or existing connections, uses the new one.
    pub fn apply(&self, snapshot: Snapshot) -> Result<Applied, String> {
        let _serial = lock(&self.apply_lock);
        let workers = self.workers.len();
        let mut fresh = Vec::new();
        {
            let bound = lock(&self.listeners);
            for l in &snapshot.listeners {
                let unserved = unserved(l);
                if unserved || bound.iter().any(|b| b.same_as(l)) {
                    continue;
                }
                fresh.push(listeners::bind(l, workers, None).map_err(|e| e.to_string())?);
            }
        }
        // A new or changed identity is loaded before anything is swapped: a broken one
        // refuses the whole config.
        let identity = self.identity_for(snapshot.proxy.identity.as_ref())?;
        let gateway_tls = active::gateway_tls(&snapshot)?;
        let old = self.shared.active.load_full();
        if snapshot.proxy.admin_address != old.snapshot.proxy.admin_address {
            tracing::warn!("a changed admin address takes effect at the next restart");
        }
        let snapshot = Arc::new(snapshot);
        let mut active =
            Active::build(snapshot.clone(), Some(&old), workers, &self.shared.mesh_tls);
        active.gateway_tls = gateway_tls;
        if let Some(identity) = identity {
            self.shared.mesh_tls.store(identity);
        }
        self.shared.active.store(Arc::new(active));
        crate::telemetry::istio::forget_cached_handles();
        let served = snapshot.listeners.iter().filter(|l| !unserved(l)).count();
        self.shared
            .downstream
            .apply(&snapshot.proxy.limits, workers, served * workers);
        let mut applied = Applied::default();
        for f in fresh {
            applied.added.push(f.bound.name.clone());
            self.serve(f);
        }
        let drain_timeout = self.shared.options.drain_timeout;
        lock(&self.listeners).retain(|b| {
            let keep = snapshot.listeners.iter().any(|l| b.same_as(l));
            if !keep {
                applied.removed.push(b.name.clone());
                b.retire(drain_timeout);
            }
            keep
        });
        Ok(applied)
    }

    /// The identity `files` call for, when it differs from the one in force (other
    /// paths, or the same paths with new contents): `Ok(None)` = keep the one in force.
    fn identity_for(
        &self,
        files: Option<&IdentityFiles>,
    ) -> Result<Option<Option<Arc<MeshTls>>>, String> {
        let current = self.shared.mesh_tls.load_full();
        match (files, current) {
            (None, None) => Ok(None),
            (None, Some(_)) => Ok(Some(None)),
            (Some(f), current) => {
                let same_files = current.as_ref().is_some_and(|c| c.files == *f);
                if same_files {
                    let digest =
                        crate::tls::mesh::digest(f).map_err(|e| format!("identity: {e}"))?;
                    if current.as_ref().is_some_and(|c| c.digest == digest) {
                        return Ok(None);
                    }
                }
                let mesh = MeshTls::load(f).map_err(|e| format!("identity: {e}"))?;
                Ok(Some(Some(Arc::new(mesh))))
            }
        }
    }

    /// Re-reads the identity files of the config in force (certificate rotation): new
    /// handshakes use the new identity at once, open connections keep theirs. A broken
    /// new file is refused and the identity in force stays. `Ok(true)` when it changed.
    pub fn refresh_identity(&self) -> Result<bool, String> {
        let _serial = lock(&self.apply_lock);
        let active = self.shared.active.load_full();
        match self.identity_for(active.snapshot.proxy.identity.as_ref())? {
            None => Ok(false),
            Some(identity) => {
                self.shared.mesh_tls.store(identity);
                Ok(true)
            }
        }
    }

    /// Re-reads the certificates of Gateway servers that terminate TLS (rotation): when
    /// their files changed, new handshakes use the new certificates; a broken file is
    /// refused and the certificates in force stay. `Ok(true)` when they changed.
    pub fn refresh_gateway_tls(&self) -> Result<bool, String> {
        use meshproxy_config::compile::listener::ListenerRole;
        let _serial = lock(&self.apply_lock);
        let old = self.shared.active.load_full();
        let changed = old.snapshot.listeners.iter().any(|l| match &l.role {
            ListenerRole::Gateway { servers } => {
                let now = crate::tls::gateway::digest(servers);
                old.gateway_tls
                    .get(&l.name)
                    .is_some_and(|g| g.digest != now)
            }
            _ => false,
        });
        if !changed {
            return Ok(false);
        }
        let gateway_tls = active::gateway_tls(&old.snapshot)?;
        let mut active = Active::build(
            old.snapshot.clone(),
            Some(&old),
            self.workers.len(),
            &self.shared.mesh_tls,
        );
        active.gateway_tls = gateway_tls;
        self.shared.active.store(Arc::new(active));
        crate::telemetry::istio::forget_cached_handles();
        Ok(true)
    }

    /// Stops accepting everywhere, lets connections finish their in-flight requests
    /// (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY) until they are all gone or
    /// `timeout` passes; `/ready` answers 503 from the start.
    pub fn drain(&self, timeout: Duration) {
        self.shared.ready.store(false, Ordering::Release);
        for b in lock(&self.listeners).iter() {
            b.retire(timeout);
        }
        let deadline = std::time::Instant::now() + timeout;
        while self.shared.connections.load(Ordering::Acquire) > 0
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the workers and waits for them.
    pub fn shutdown(self) {
        self.stop_workers();
    }

    /// Like [`Server::shutdown`] for a shared server.
    pub fn stop(&self) {
        self.stop_workers();
    }

    fn stop_workers(&self) {
        let _ = self.stop.send(true);
        for t in lock(&self.threads).drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

fn worker(
    w: usize,
    shared: Arc<Shared>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Command>,
    mut stop: watch::Receiver<bool>,
) {
    crate::worker::set_worker_id(w);
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
    if let Ok(mut handles) = shared.worker_runtimes.lock() {
        handles.push(rt.handle().clone());
    }
    rt.block_on(async move {
        tokio::spawn(sweep_idle(shared.clone()));
        tokio::spawn(evict::closer(shared.downstream.clone()));
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Command::Serve { name, socket, stop, drain, kill, conns }) => match TcpListener::from_std(socket) {
                        Ok(l) => {
                            tokio::spawn(connection::accept_loop(l, name, shared.clone(), stop, drain, kill, conns));
                        }
                        Err(e) => tracing::error!(listener = %name, error = %e, "cannot register listener"),
                    },
                },
            }
        }
    });
}

/// Closes this worker's pooled connections past `http.idleTimeout` or
/// `tcp.maxConnectionDuration`, once a second (checkout also refuses stale ones).
async fn sweep_idle(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let active = shared.active.load();
        for c in active.used_clusters() {
            for e in c.endpoints().iter() {
                e.pool.sweep(c.reuse);
            }
        }
    }
}
