//! `meshproxy run`: load the config, bind the listeners, serve (reloading on change)
//! until SIGTERM/SIGINT, then drain.

use crate::cli::{LogFormat, OnOff, RunArgs};
use meshproxy::access_log::AccessLog;
use meshproxy::reload::{self, Reloader, Trigger};
use meshproxy::server::{available_cpus, Options, Server};
use meshproxy_config::compile::Snapshot;
use std::path::PathBuf;
use std::sync::Arc;

/// Runs the command; returns the exit code.
pub fn run(args: RunArgs) -> i32 {
    super::logging::init(args.log_format);
    let snap = match meshproxy_config::compile::load(&args.config.config) {
        Ok(s) => s,
        Err(diags) => {
            for d in diags.0.iter() {
                eprintln!("{d}");
            }
            eprintln!("invalid config: nothing served");
            return 1;
        }
    };
    let options = Options {
        workers: args.workers.unwrap_or_else(available_cpus).max(1),
        drain_timeout: args.drain_timeout,
        metrics: args.metrics == OnOff::On,
    };
    let log = AccessLog::stdout(
        args.access_log == OnOff::On,
        args.log_format == LogFormat::Json,
    );
    serve(snap, options, log, args.config.config)
}

/// Starts a server for `snap` read from `paths`, reloads it on file changes and
/// `SIGHUP`, and serves until `SIGTERM`/`SIGINT`, then drains.
pub fn serve(snap: Snapshot, options: Options, log: AccessLog, paths: Vec<PathBuf>) -> i32 {
    for w in snap.warnings.warnings() {
        tracing::warn!("{w}");
    }
    if !snap.proxy.declared {
        tracing::info!(
            "no Proxy document: using the local default (outbound listener on {}, no identity, no inbound listener)",
            snap.proxy.listeners.first().map(|l| l.address.to_string()).unwrap_or_default()
        );
    }
    let version = snap.version.clone();
    let workers = options.workers;
    let drain_timeout = options.drain_timeout;
    let server = match Server::start(snap, options, log) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return 1;
        }
    };
    let reloader = Reloader::new(paths, &server);
    let _ = server.shared.reloader.set(reloader.clone());
    let _watcher = match reload::watch(reloader.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            // Still reloadable by SIGHUP and POST /reload.
            tracing::warn!(error = %e, "cannot watch the config paths: reload with SIGHUP or POST /reload");
            None
        }
    };
    let admin_addr = server.shared.active.load().snapshot.proxy.admin_address;
    let admin = match meshproxy::admin::Admin::start(server.shared.clone(), admin_addr) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the admin server");
            return 1;
        }
    };
    tracing::info!(listener = "admin", address = %admin.addr, "listening");
    for (name, addr) in server.addrs() {
        tracing::info!(listener = %name, address = %addr, "listening");
    }
    tracing::info!(%version, workers, "serving");
    wait_for_termination(&reloader);
    tracing::info!(timeout_ms = drain_timeout.as_millis() as u64, "draining");
    server.drain(drain_timeout);
    tracing::info!("drained; exiting");
    drop(admin);
    drop(_watcher);
    drop(reloader);
    server.stop();
    0
}

/// Blocks until SIGTERM or SIGINT, reloading on each SIGHUP.
fn wait_for_termination(reloader: &Reloader) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return,
    };
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = hup.recv() => {
                    reloader.reload(Trigger::Signal);
                }
            }
        }
    });
}
