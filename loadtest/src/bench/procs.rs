//! Starting, pinning, watching and stopping the processes of a benchmark run.

use crate::procfs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Finds an executable by name on `PATH`, then in `/usr/sbin` and `/sbin` (where Debian
/// puts nginx and HAProxy, often not on a normal user's `PATH`).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// Whether `p` is a regular file with an execute bit.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Parses a CPU list as in `Cpus_allowed_list:` (`0-3,6,8-9`).
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    out.extend(a..=b.min(a + 4096));
                }
            }
            None => {
                if let Ok(a) = part.trim().parse() {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Cpus_allowed_list:"))
                .map(|l| parse_cpu_list(&l["Cpus_allowed_list:".len()..]))
        })
        .unwrap_or_default()
}

/// Which CPU runs what.
#[derive(Debug, Clone)]
pub struct Pinning {
    taskset: Option<PathBuf>,
    /// CPU of the load generator and the upstream (`None`: unpinned).
    pub generator_cpu: Option<usize>,
    /// CPU of the proxy during the closed-loop phase (`None`: unpinned).
    pub proxy_cpu: Option<usize>,
    /// Why pinning is off, if it is.
    pub note: String,
}

impl Pinning {
    /// Pins with `taskset` on the first two allowed CPUs: generator and upstream on the
    /// first, the proxy on the second. Unpinned (with a note) when disabled, when taskset
    /// is missing or when fewer than two CPUs are allowed.
    pub fn detect(disabled: bool) -> Pinning {
        let unpinned = |note: &str| Pinning {
            taskset: None,
            generator_cpu: None,
            proxy_cpu: None,
            note: note.to_string(),
        };
        if disabled {
            return unpinned("pinning disabled (--no-pin): processes run unpinned");
        }
        let Some(taskset) = find_binary("taskset") else {
            return unpinned(
                "taskset not found (Debian package util-linux): processes run unpinned",
            );
        };
        let cpus = allowed_cpus();
        if cpus.len() < 2 {
            return unpinned("fewer than 2 CPUs allowed: processes run unpinned");
        }
        Pinning {
            taskset: Some(taskset),
            generator_cpu: Some(cpus[0]),
            proxy_cpu: Some(cpus[1]),
            note: String::new(),
        }
    }

    /// Whether processes are pinned.
    pub fn pinned(&self) -> bool {
        self.taskset.is_some()
    }

    /// A command running `program` on `cpu` (unpinned if pinning is off).
    pub fn command(&self, cpu: Option<usize>, program: &Path) -> Command {
        match (&self.taskset, cpu) {
            (Some(t), Some(cpu)) => {
                let mut c = Command::new(t);
                c.arg("-c").arg(cpu.to_string()).arg(program);
                c
            }
            _ => Command::new(program),
        }
    }

    /// Moves every thread of `pids` to `cpu`.
    pub fn repin(&self, pids: &[u32], cpu: Option<usize>) -> Result<(), String> {
        let (Some(t), Some(cpu)) = (&self.taskset, cpu) else {
            return Ok(());
        };
        for pid in pids {
            let status = Command::new(t)
                .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("taskset: {e}"))?;
            if !status.success() && procfs::stat(*pid).is_some() {
                return Err(format!("taskset could not move pid {pid} to CPU {cpu}"));
            }
        }
        Ok(())
    }
}

/// A process started by the runner; stopped (with its children) on drop.
pub struct Running {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    tail: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// It and its live descendants (nginx's master and worker).
    pub fn tree(&self) -> Vec<u32> {
        procfs::process_tree(self.pid())
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines it wrote on the captured stream.
    pub fn log_tail(&self) -> String {
        self.tail.lock().map(|t| t.join("\n")).unwrap_or_default()
    }

    /// SIGTERM, up to 3 s to exit, then SIGKILL for it and any descendant left.
    pub fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        let tree = self.tree();
        signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && self.alive() {
            std::thread::sleep(Duration::from_millis(10));
        }
        for pid in tree.iter().rev() {
            if procfs::stat(*pid).is_some() {
                signal(*pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory preconditions; the pid is one we started (or its
        // child), looked up just before.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Spawns `cmd`, reading lines of the stream chosen by `stdout` (else stderr) into a
/// channel (for startup) and a bounded tail (for error messages).
pub fn spawn(
    name: &str,
    mut cmd: Command,
    stdout: bool,
) -> Result<(Running, mpsc::Receiver<String>), String> {
    cmd.stdin(Stdio::null());
    if stdout {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let stream: Box<dyn Read + Send> = if stdout {
        match child.stdout.take() {
            Some(s) => Box::new(s),
            None => return Err(format!("{name}: no stdout")),
        }
    } else {
        match child.stderr.take() {
            Some(s) => Box::new(s),
            None => return Err(format!("{name}: no stderr")),
        }
    };
    let tail = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let t = tail.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut t) = t.lock() {
                if t.len() >= 40 {
                    t.remove(0);
                }
                t.push(line.clone());
            }
            // The receiver goes away after startup; keep draining the pipe regardless.
            let _ = tx.send(line);
        }
    });
    Ok((
        Running {
            name: name.to_string(),
            child,
            tail,
        },
        rx,
    ))
}

/// Waits for the first line containing `marker` (at most `within`); `None` on timeout or
/// when the stream closed (the process exited).
pub fn wait_line(rx: &mpsc::Receiver<String>, marker: &str, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(marker) => return Some(l),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Parses a JSON log line of `meshproxy run --log-format json` announcing a listener:
/// `(listener name, address)`.
pub fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    Some((
        fields.get("listener")?.as_str()?.to_string(),
        fields.get("address")?.as_str()?.parse().ok()?,
    ))
}

/// A free TCP port on 127.0.0.1 (bound and released: another process could take it
/// before the proxy binds it, which the startup check then reports).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Waits until `addr` accepts TCP connections (at most `within`), failing early if the
/// process exits.
pub fn wait_port(p: &mut Running, addr: SocketAddr, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if !p.alive() {
            return Err(format!("{} exited at startup:\n{}", p.name, p.log_tail()));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} does not accept connections on {addr}:\n{}",
                p.name,
                p.log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.1 GET through `addr` with `host` and `headers`; `Ok` if it answered 200.
pub fn probe(addr: SocketAddr, host: &str, headers: &[String]) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("probe: cannot connect to {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("probe: cannot send: {e}"))?;
    let mut resp = Vec::new();
    let _ = s.take(64 * 1024).read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    let status = text.lines().next().unwrap_or("");
    if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(format!(
            "probe through {addr} (Host: {host}) did not answer 200: {:?}",
            text.chars().take(300).collect::<String>()
        ))
    }
}

/// One HTTP/1.1 GET of `path` on `addr` (e.g. an admin endpoint); the body of a 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut resp = Vec::new();
    s.take(64 * 1024 * 1024)
        .read_to_end(&mut resp)
        .map_err(|e| format!("reading {path} from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "GET {path} on {addr}: {}",
            head.lines().next().unwrap_or("no response")
        ));
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

/// The payload of a chunked HTTP/1.1 body (what is complete of it).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or("").trim();
        let Ok(n) = usize::from_str_radix(size, 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), vec![0, 1]);
        assert_eq!(parse_cpu_list("0,2-4,7\n"), vec![0, 2, 3, 4, 7]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("x,3"), vec![3]);
    }

    #[test]
    fn listening_lines() {
        let l = r#"{"timestamp":"t","level":"INFO","fields":{"message":"listening","listener":"outbound","address":"127.0.0.1:41000"},"target":"meshproxy"}"#;
        assert_eq!(
            parse_listening(l),
            Some(("outbound".into(), "127.0.0.1:41000".parse().unwrap()))
        );
        let other = r#"{"fields":{"message":"serving","version":"x"}}"#;
        assert_eq!(parse_listening(other), None);
        assert_eq!(parse_listening("listening not json"), None);
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
        assert_eq!(dechunk(""), "");
    }

    #[test]
    fn finds_sh() {
        assert!(find_binary("sh").is_some());
        assert!(find_binary("no-such-binary-here").is_none());
    }
}
