//! Running the `meshproxy` binary in end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `meshproxy run` process, killed on drop.
pub struct Running {
    /// The process.
    pub child: Child,
    /// Bound listeners (name, address), from the startup log.
    pub listeners: Vec<(String, SocketAddr)>,
    /// Later stderr lines.
    pub log: mpsc::Receiver<String>,
    /// Stdout lines (the access log).
    pub stdout: mpsc::Receiver<String>,
    /// The config directory.
    pub dir: std::path::PathBuf,
}

impl Running {
    /// The address of listener `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no listener {name} in {:?}", self.listeners))
    }

    /// Peak resident set size of the process, in bytes (`VmHWM`).
    pub fn peak_rss(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM:") * 1024
    }

    /// Current resident set size in bytes.
    pub fn rss(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmRSS:") * 1024
    }
}

impl Running {
    /// Sends `signal` to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal)
            .expect("signal meshproxy");
    }

    /// Waits up to `within` for the process to exit; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits up to `within` for a stderr line containing `text`.
    pub fn wait_log(&self, text: &str, within: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.log.recv_timeout(left) {
                Ok(l) if l.contains(text) => return Some(l),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Writes `yaml` to a temp dir and starts `meshproxy run -c <dir> <extra...>`, waiting
/// for the "serving" log line (the listeners are bound by then).
pub fn run(yaml: &str, extra: &[&str]) -> Running {
    let dir = std::env::temp_dir().join(format!(
        "meshproxy-e2e-{}-{}",
        std::process::id(),
        fastrand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("config.yaml"), yaml).expect("write config");
    run_dir(&dir, extra)
}

/// Starts `meshproxy run -c <dir> <extra...>` on an existing config directory.
pub fn run_dir(dir: &std::path::Path, extra: &[&str]) -> Running {
    run_dir_with(dir, extra, None)
}

/// Like [`run`], with the process's `RLIMIT_NOFILE` set to `(soft, hard)` before it
/// starts (lowering needs no privilege).
pub fn run_with_nofile(yaml: &str, extra: &[&str], nofile: (u64, u64)) -> Running {
    let dir = std::env::temp_dir().join(format!(
        "meshproxy-e2e-{}-{}",
        std::process::id(),
        fastrand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("config.yaml"), yaml).expect("write config");
    run_dir_with(&dir, extra, Some(nofile))
}

fn run_dir_with(dir: &std::path::Path, extra: &[&str], nofile: Option<(u64, u64)>) -> Running {
    use std::os::unix::process::CommandExt;
    let dir = dir.to_path_buf();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshproxy"));
    cmd.arg("run")
        .arg("-c")
        .arg(&dir)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((soft, hard)) = nofile {
        // SAFETY: between fork and exec only setrlimit(2) runs, which is
        // async-signal-safe; nothing is allocated or locked.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::resource::setrlimit(
                    nix::sys::resource::Resource::RLIMIT_NOFILE,
                    soft,
                    hard,
                )
                .map_err(std::io::Error::from)
            });
        }
    }
    let mut child = cmd.spawn().expect("spawn meshproxy");
    let rx = lines(child.stderr.take().expect("stderr"));
    let stdout = lines(child.stdout.take().expect("stdout"));
    let mut listeners = Vec::new();
    loop {
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => panic!("meshproxy did not start; listeners so far {listeners:?}"),
        };
        if line.contains("listening") {
            let (name, addr) = if line.starts_with('{') {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let f = |k: &str| v["fields"][k].as_str().map(str::to_string);
                (f("listener"), f("address"))
            } else {
                (field(&line, "listener="), field(&line, "address="))
            };
            if let (Some(n), Some(a)) = (name, addr.and_then(|a| a.parse().ok())) {
                listeners.push((n, a));
            }
        }
        if line.contains("serving") {
            break;
        }
        if line.contains("ERROR") || line.contains("invalid config") {
            panic!("meshproxy failed to start: {line}");
        }
    }
    Running {
        child,
        listeners,
        log: rx,
        stdout,
        dir,
    }
}

fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn field(line: &str, key: &str) -> Option<String> {
    let i = line.find(key)? + key.len();
    let rest = &line[i..];
    let end = rest.find(' ').unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"').to_string())
}

fn fastrand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
