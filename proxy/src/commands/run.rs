//! `meshproxy run`: load the config, bind the listeners, serve (reloading on change)
//! until SIGTERM/SIGINT, then drain.

use crate::cli::{LogFormat, OnOff, RunArgs};
use meshproxy::access_log::AccessLog;
use meshproxy::admin::Admin;
use meshproxy::handover;
use meshproxy::reload::{self, Reloader, Trigger};
use meshproxy::server::{available_cpus, Options, Server};
use meshproxy_config::compile::Snapshot;
use std::path::PathBuf;
use std::sync::Arc;

/// Runs the command; returns the exit code.
pub fn run(args: RunArgs) -> i32 {
    super::logging::init(args.log_format);
    raise_fd_limit();
    let paths = &args.config.config;
    let snap = match meshproxy::memory::on_own_thread(|| meshproxy_config::compile::load(paths)) {
        Ok(s) => s,
        Err(diags) => {
            for d in diags.0.iter() {
                eprintln!("{d}");
            }
            eprintln!("invalid config: nothing served");
            return 1;
        }
    };
    // The parse's temporary trees are freed; give their pages back before serving.
    meshproxy::memory::release_freed_memory();
    let options = Options {
        workers: args.workers.unwrap_or_else(available_cpus).max(1),
        drain_timeout: args.drain_timeout,
        metrics: args.metrics == OnOff::On,
    };
    let log = AccessLog::stdout(
        args.access_log == OnOff::On,
        args.log_format == LogFormat::Json,
    );
    serve(snap, options, log, args.config.config, args.upgrade_socket)
}

/// Raises the soft file-descriptor limit to the hard one before anything is opened: the
/// downstream connection cap is derived from it (docs/config.md, "Limits").
fn raise_fd_limit() {
    match meshproxy::server::fd_budget::raise_soft_limit() {
        Ok(r) if r.after > r.before => {
            tracing::info!(
                from = r.before,
                to = r.after,
                "raised the file-descriptor limit"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the file-descriptor limit: keeping it"),
    }
}

/// Starts a server for `snap` read from `paths` (taking the sockets of the process at
/// `upgrade_socket`, if one runs there), reloads it on file changes and `SIGHUP`, and
/// serves until `SIGTERM`/`SIGINT` or a successor takes over, then drains.
pub fn serve(
    snap: Snapshot,
    options: Options,
    log: AccessLog,
    paths: Vec<PathBuf>,
    upgrade_socket: Option<PathBuf>,
) -> i32 {
    for w in snap.warnings.warnings() {
        tracing::warn!("{w}");
    }
    if !snap.proxy.declared {
        tracing::info!(
            "no Proxy document: using the local default (outbound listener on {}, no identity, no inbound listener)",
            snap.proxy.listeners.first().map(|l| l.address.to_string()).unwrap_or_default()
        );
    }
    let mut inherited = match upgrade_socket.as_deref().map(handover::take_over) {
        None | Some(Ok(None)) => None,
        Some(Ok(Some(i))) => {
            tracing::info!("took over the listening sockets of the running process");
            Some(i)
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "cannot take over from the running process");
            return 1;
        }
    };
    let mut sockets = inherited
        .as_mut()
        .map(|i| std::mem::take(&mut i.sockets))
        .unwrap_or_default();
    let admin_socket = sockets.remove(handover::ADMIN).and_then(|mut v| v.pop());
    let version = snap.version.clone();
    let workers = options.workers;
    let drain_timeout = options.drain_timeout;
    let server = match Server::start_with(snap, options, log, sockets) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return 1;
        }
    };
    let reloader = Reloader::new(paths, &server);
    let _ = server.shared.reloader.set(reloader.clone());
    let certificate_files = certificate_files(&server.shared.active.load().snapshot);
    let watcher = match reload::watch(reloader.clone(), &certificate_files) {
        Ok(w) => Some(w),
        Err(e) => {
            // Still reloadable by SIGHUP and POST /reload.
            tracing::warn!(error = %e, "cannot watch the config paths: reload with SIGHUP or POST /reload");
            None
        }
    };
    let admin_addr = server.shared.active.load().snapshot.proxy.admin_address;
    let admin = match admin_socket {
        Some(s) => Admin::start_on(server.shared.clone(), s),
        None => Admin::start(server.shared.clone(), admin_addr),
    };
    let admin = match admin {
        Ok(a) => Arc::new(a),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the admin server");
            return 1;
        }
    };
    tracing::info!(listener = "admin", address = %admin.addr, "listening");
    for (name, addr) in server.addrs() {
        tracing::info!(listener = %name, address = %addr, "listening");
    }
    if let Some(i) = inherited {
        if let Err(e) = i.ready() {
            tracing::warn!(error = %e, "could not tell the previous process to drain");
        }
    }
    let (handed_over_tx, handed_over) = tokio::sync::oneshot::channel();
    let _offer = match &upgrade_socket {
        Some(path) => {
            let (server, admin) = (Arc::downgrade(&server), Arc::downgrade(&admin));
            let sockets = move || {
                let (Some(server), Some(admin)) = (server.upgrade(), admin.upgrade()) else {
                    return Err(std::io::Error::other("shutting down"));
                };
                let mut all = server.listening_sockets()?;
                all.push((handover::ADMIN.to_string(), vec![admin.socket()?]));
                Ok(all)
            };
            match handover::offer(path, sockets, move || {
                let _ = handed_over_tx.send(());
            }) {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::error!(error = %e, "cannot offer the listening sockets for upgrades");
                    return 1;
                }
            }
        }
        None => None,
    };
    let why = wait_for_termination(
        &reloader,
        handed_over,
        || tracing::info!(%version, workers, "serving"),
    );
    // The successor answers the admin port now: stop answering /ready here first.
    if why == Ended::HandedOver {
        tracing::info!("a new process serves the listeners: draining");
        drop(admin);
    }
    // Not ready from the first moment of draining (the log line below says so).
    server
        .shared
        .ready
        .store(false, std::sync::atomic::Ordering::Release);
    tracing::info!(timeout_ms = drain_timeout.as_millis() as u64, "draining");
    drop(watcher);
    server.drain(drain_timeout);
    tracing::info!("drained; exiting");
    drop(reloader);
    server.stop();
    // The workers handed their last access-log lines over as they ended.
    server
        .shared
        .access_log
        .flush_wait(std::time::Duration::from_secs(2));
    0
}

/// Why serving ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// SIGTERM or SIGINT.
    Signal,
    /// A new process took the listening sockets.
    HandedOver,
}

/// Blocks until SIGTERM, SIGINT or a hand-over, reloading on each SIGHUP. `serving` runs
/// once the signal handlers are in place: until then a SIGHUP would still have its default
/// action and end the process, so "serving" is not announced before a reload can be asked.
fn wait_for_termination(
    reloader: &Reloader,
    handed_over: tokio::sync::oneshot::Receiver<()>,
    serving: impl FnOnce(),
) -> Ended {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return Ended::Signal,
    };
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            return Ended::Signal;
        };
        serving();
        // An offer that is never taken must not end the wait.
        let handed_over = async {
            match handed_over.await {
                Ok(()) => (),
                Err(_) => std::future::pending().await,
            }
        };
        tokio::pin!(handed_over);
        loop {
            tokio::select! {
                _ = term.recv() => return Ended::Signal,
                _ = int.recv() => return Ended::Signal,
                _ = &mut handed_over => return Ended::HandedOver,
                _ = hup.recv() => {
                    reloader.reload(Trigger::Signal);
                }
            }
        }
    })
}

/// The certificate files the config reads outside the config paths (the identity and
/// Gateway certificates), watched for rotation.
fn certificate_files(snap: &Snapshot) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = snap
        .proxy
        .identity
        .iter()
        .flat_map(|i| {
            [
                i.certificate.clone(),
                i.private_key.clone(),
                i.ca_certificates.clone(),
            ]
        })
        .collect();
    for l in &snap.listeners {
        if let meshproxy_config::compile::listener::ListenerRole::Gateway { servers } = &l.role {
            files.extend(meshproxy::tls::gateway::GatewayTls::files(servers));
        }
    }
    files
}
