//! Config reload (docs/contract.md §3): the config paths are loaded, validated and compiled off the
//! request path, then put in force with one atomic swap ([`Server::apply`]). A config with
//! any error is refused whole and the one in force stays. Triggers: a change under a
//! `-c` path ([`watch`]), `SIGHUP`, and the admin `POST /reload`.

use crate::server::{Applied, Server};
use meshproxy_config::diag::Diagnostics;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// What asked for a reload (for the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A file changed under a config path.
    File,
    /// `SIGHUP`.
    Signal,
    /// Admin `POST /reload`.
    Admin,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::File => "file",
            Trigger::Signal => "SIGHUP",
            Trigger::Admin => "admin",
        }
    }
}

/// The result of one reload.
#[derive(Debug)]
pub enum Outcome {
    /// A new config is in force.
    Applied {
        /// Its version (content hash).
        version: String,
        /// Listeners added and removed.
        applied: Applied,
    },
    /// The config on disk is the one in force already (same content hash); nothing done.
    Unchanged {
        /// The version in force.
        version: String,
    },
    /// Refused: the config in force stays.
    Rejected {
        /// Every error, one per line, as `meshproxy validate` prints them.
        errors: Vec<String>,
    },
}

/// Reloads the config of one running server from its config paths.
pub struct Reloader {
    paths: Vec<PathBuf>,
    server: Weak<Server>,
    /// One reload at a time: two triggers at once would compile the same files twice
    /// and could apply them out of order.
    serial: Mutex<()>,
}

impl Reloader {
    /// A reloader for `server` reading `paths`. It holds the server weakly, so it never
    /// keeps a stopped server alive.
    pub fn new(paths: Vec<PathBuf>, server: &Arc<Server>) -> Arc<Reloader> {
        Arc::new(Reloader {
            paths,
            server: Arc::downgrade(server),
            serial: Mutex::new(()),
        })
    }

    /// The config paths this reloader reads.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Loads, validates and compiles the config paths and puts the result in force, or
    /// refuses it whole (logged and counted in `meshproxy_config_reloads_total`).
    pub fn reload(&self, trigger: Trigger) -> Outcome {
        let _serial = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        let Some(server) = self.server.upgrade() else {
            return Outcome::Rejected {
                errors: vec!["the proxy is shutting down".into()],
            };
        };
        let started = Instant::now();
        let shared = &server.shared;
        let paths = &self.paths;
        // The snapshot in force shares what did not change with the new one, so the two
        // exist side by side during the reload without a second copy of it.
        let current = shared.active.load().snapshot.clone();
        let loaded = crate::memory::on_own_thread(|| {
            meshproxy_config::compile::load_reusing(paths, Some(&current))
        });
        drop(current);
        let snapshot = match loaded {
            Ok(s) => s,
            Err(diags) => {
                shared.reloads_rejected.fetch_add(1, Ordering::Relaxed);
                let errors = error_lines(&diags);
                for e in &errors {
                    tracing::error!(trigger = trigger.as_str(), "{e}");
                }
                tracing::error!(
                    trigger = trigger.as_str(),
                    errors = errors.len(),
                    version = %shared.active.load().snapshot.version,
                    "config refused: the config in force stays"
                );
                return Outcome::Rejected { errors };
            }
        };
        let version = snapshot.version.clone();
        if version == shared.active.load().snapshot.version {
            return unchanged(&server, trigger, version);
        }
        for w in snapshot.warnings.warnings() {
            tracing::warn!("{w}");
        }
        match server.apply(snapshot) {
            Ok(applied) => {
                // The parse's temporaries and the replaced snapshot (unless a request still
                // holds it) were freed on this thread: give the pages back now, so a
                // reload does not leave the footprint doubled.
                crate::memory::release_freed_memory();
                shared.reloads_accepted.fetch_add(1, Ordering::Relaxed);
                for (name, addr) in server.addrs() {
                    if applied.added.contains(&name) {
                        tracing::info!(listener = %name, address = %addr, "listening");
                    }
                }
                for name in &applied.removed {
                    tracing::info!(listener = %name, "listener removed: draining");
                }
                tracing::info!(
                    trigger = trigger.as_str(),
                    %version,
                    took_ms = started.elapsed().as_secs_f64() * 1e3,
                    "config reloaded"
                );
                Outcome::Applied { version, applied }
            }
            Err(e) => {
                shared.reloads_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    trigger = trigger.as_str(),
                    error = %e,
                    "config refused: the config in force stays"
                );
                Outcome::Rejected { errors: vec![e] }
            }
        }
    }
}

/// A reload whose config is the one in force: its certificate files may still have
/// changed (rotation), and are put in force or refused.
fn unchanged(server: &Server, trigger: Trigger, version: String) -> Outcome {
    let shared = &server.shared;
    // The config is the same; its certificate files may not be (rotation).
    match server.refresh_gateway_tls() {
        Ok(true) => {
            tracing::info!(trigger = trigger.as_str(), "gateway certificates rotated")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(
                trigger = trigger.as_str(),
                error = %e,
                "new gateway certificate files refused: the ones in force stay"
            );
            return Outcome::Rejected { errors: vec![e] };
        }
    }
    match server.refresh_identity() {
        Ok(true) => {
            shared.identity_rotations.fetch_add(1, Ordering::Relaxed);
            let mesh = shared.mesh_tls.load();
            tracing::info!(
                trigger = trigger.as_str(),
                identity = mesh
                    .as_ref()
                    .and_then(|m| m.spiffe.as_deref())
                    .unwrap_or("-"),
                "identity rotated: new connections use the new certificate"
            );
        }
        Ok(false) => {
            tracing::debug!(trigger = trigger.as_str(), %version, "config unchanged")
        }
        Err(e) => {
            shared.identity_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                trigger = trigger.as_str(),
                error = %e,
                "new identity files refused: the identity in force stays"
            );
            return Outcome::Rejected { errors: vec![e] };
        }
    }
    Outcome::Unchanged { version }
}

fn error_lines(diags: &Diagnostics) -> Vec<String> {
    diags.errors().map(|d| d.to_string()).collect()
}

/// How long the files must stay quiet before a change is loaded: an editor's save or a
/// ConfigMap's symlink swap is a burst of events, and loading mid-burst would read a
/// half-written file.
const QUIET: Duration = Duration::from_millis(10);
/// A burst that never goes quiet is loaded after this long anyway.
const MAX_DELAY: Duration = Duration::from_millis(250);

/// A running file watcher; dropping it stops watching.
pub struct Watcher {
    _watcher: notify::RecommendedWatcher,
}

/// Watches every config path, and the files in `also` (the identity's certificate, key
/// and CA), and reloads through `reloader` after each debounced burst of changes. A
/// directory is watched recursively; a file through its parent directory, so a rename
/// over it (editors, `kubectl cp`) or a Kubernetes ConfigMap or Secret `..data` symlink
/// swap next to it is seen too. The watcher holds `reloader` weakly: whoever owns the
/// server keeps it (`Shared::reloader`), so a stopped server is not kept alive by it.
pub fn watch(reloader: Arc<Reloader>, also: &[PathBuf]) -> notify::Result<Watcher> {
    use notify::{RecursiveMode, Watcher as _};
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let named: Vec<PathBuf> = reloader.paths().iter().chain(also).cloned().collect();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            if relevant(&ev.kind) && ev.paths.iter().any(|p| may_hold_config(p, &named)) {
                let _ = tx.send(());
            }
        }
    })?;
    let mut dirs: Vec<(&Path, RecursiveMode)> = Vec::new();
    for p in reloader.paths().iter().chain(also) {
        let target = if p.is_dir() {
            (p.as_path(), RecursiveMode::Recursive)
        } else {
            (watch_target(p), RecursiveMode::NonRecursive)
        };
        if !dirs.contains(&target) {
            dirs.push(target);
        }
    }
    for (dir, mode) in dirs {
        watcher.watch(dir, mode)?;
    }
    let weak = Arc::downgrade(&reloader);
    drop(reloader);
    std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || debounce(rx, weak))
        .map_err(notify::Error::io)?;
    Ok(Watcher { _watcher: watcher })
}

/// The directory to watch for a config file: its parent (the file itself may be
/// replaced by a rename, which a watch on the file would lose).
fn watch_target(file: &Path) -> &Path {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether a change to `path` can change the config: a YAML file, a certificate or key
/// file (DestinationRule and Gateway TLS files often sit beside the config), a file named
/// on the command line or in `also`, or anything without an extension (a directory, or a
/// Kubernetes `..data` symlink swap). Other files under a watched directory — logs the
/// proxy itself writes there, editors' swap files — do not trigger a reload.
fn may_hold_config(path: &Path, named: &[PathBuf]) -> bool {
    if named.iter().any(|n| n == path || path.ends_with(n)) {
        return true;
    }
    match path.extension().and_then(|e| e.to_str()) {
        None => true,
        Some(e) => {
            ["yaml", "yml", "pem", "crt", "cert", "key"]
                .iter()
                .any(|x| e.eq_ignore_ascii_case(x))
                || path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.starts_with(".."))
        }
    }
}

/// Reads and opens do not change the config; everything else might.
fn relevant(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

fn debounce(rx: std::sync::mpsc::Receiver<()>, reloader: Weak<Reloader>) {
    // Ends when the watcher (and with it the sender) is dropped.
    while rx.recv().is_ok() {
        let first = Instant::now();
        loop {
            let left = MAX_DELAY.saturating_sub(first.elapsed());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(QUIET.min(left)) {
                Ok(()) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        let Some(r) = reloader.upgrade() else { return };
        r.reload(Trigger::File);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
    use notify::EventKind;

    #[test]
    fn reads_do_not_trigger_but_writes_and_renames_do() {
        assert!(!relevant(&EventKind::Access(AccessKind::Read)));
        assert!(!relevant(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(relevant(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(relevant(&EventKind::Modify(ModifyKind::Any)));
        assert!(relevant(&EventKind::Create(CreateKind::File)));
    }

    #[test]
    fn a_bare_file_name_is_watched_through_the_current_directory() {
        assert_eq!(watch_target(Path::new("a.yaml")), Path::new("."));
        let named = [PathBuf::from("/etc/certs/cert.pem")];
        assert!(may_hold_config(Path::new("/etc/m/a.yaml"), &named));
        assert!(may_hold_config(Path::new("/etc/m/b.YML"), &named));
        assert!(may_hold_config(Path::new("/etc/m/..data"), &named));
        assert!(may_hold_config(
            Path::new("/etc/m/..2026_12_06.123"),
            &named
        ));
        assert!(may_hold_config(Path::new("/etc/m/sub"), &named));
        assert!(may_hold_config(Path::new("/etc/certs/cert.pem"), &named));
        assert!(may_hold_config(Path::new("/etc/m/gw/key.pem"), &named));
        assert!(!may_hold_config(Path::new("/etc/m/proxy.log"), &named));
        assert!(!may_hold_config(Path::new("/etc/m/.a.yaml.swp"), &named));
        assert_eq!(
            watch_target(Path::new("/etc/m/a.yaml")),
            Path::new("/etc/m")
        );
    }
}
