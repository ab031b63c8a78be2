//! The rate-limit targets of the benchmark (opt-in with `--only`): meshproxy with the plain
//! config plus one RateLimitPolicy rule that every request matches, counted in the proxy
//! (`meshproxy-ratelimit-local`) or in a `redis-server` the runner starts on a loopback
//! port (`meshproxy-ratelimit-global`). The limit is far above the load, so every request
//! is counted and forwarded: the difference to the `meshproxy` target is what the check
//! costs a request.

use super::configs;
use super::procs::{self, find_binary, Running};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The targets, selected only by name (`--only meshproxy,meshproxy-ratelimit-local,...`).
pub const TARGETS: [&str; 2] = ["meshproxy-ratelimit-local", "meshproxy-ratelimit-global"];

/// The configs of the selected rate-limit targets, and the Redis of the Global one.
#[derive(Default)]
pub struct Setup {
    local: Option<PathBuf>,
    global: Option<PathBuf>,
    _redis: Option<Running>,
}

impl Setup {
    /// Writes the configs of the selected targets under `tmp`; starts Redis for the Global
    /// one (skipped, with the reason in `skipped`, when `redis-server` is missing).
    pub fn new(
        selected: &[String],
        tmp: &Path,
        upstream: SocketAddr,
        skipped: &mut Vec<String>,
    ) -> Result<Setup, String> {
        let want = |n: &str| selected.iter().any(|s| s == n);
        let mut s = Setup::default();
        if want(TARGETS[0]) {
            s.local = Some(write(tmp, TARGETS[0], &config(upstream, None))?);
        }
        if want(TARGETS[1]) {
            match find_binary("redis-server") {
                None => skipped.push(
                    "meshproxy-ratelimit-global: redis-server not found (Debian package redis-server)"
                        .into(),
                ),
                Some(bin) => {
                    let (redis, port) = start_redis(&bin)?;
                    s._redis = Some(redis);
                    s.global = Some(write(tmp, TARGETS[1], &config(upstream, Some(port)))?);
                }
            }
        }
        Ok(s)
    }

    /// The config directory and description of target `name`, when it was set up.
    pub fn target(&self, name: &str) -> Option<(PathBuf, String)> {
        match name {
            "meshproxy-ratelimit-local" => self.local.clone().map(|d| {
                (
                    d,
                    "meshproxy as `meshproxy` plus a Local RateLimitPolicy rule every request \
                     matches (token bucket, limit far above the load)"
                        .to_string(),
                )
            }),
            "meshproxy-ratelimit-global" => self.global.clone().map(|d| {
                (
                    d,
                    "meshproxy as `meshproxy` plus a Global RateLimitPolicy rule every request \
                     matches (one pipelined INCRBY+EXPIRE to a local redis-server per request)"
                        .to_string(),
                )
            }),
            _ => None,
        }
    }
}

fn write(tmp: &Path, name: &str, yaml: &str) -> Result<PathBuf, String> {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("bench.yaml"), yaml).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// The plain config with the rule (and, for Global, the Redis address in the Proxy).
fn config(upstream: SocketAddr, redis: Option<u16>) -> String {
    let mut y = configs::meshproxy_plain(upstream);
    let kind = match redis {
        Some(port) => {
            y = y.replacen(
                "  outboundTrafficPolicy:",
                &format!("  rateLimit: {{redis: {{address: \"127.0.0.1:{port}\"}}}}\n  outboundTrafficPolicy:"),
                1,
            );
            "Global"
        }
        None => "Local",
    };
    y.push_str(&format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: RateLimitPolicy
metadata: {{name: bench, namespace: {ns}}}
spec:
  type: {kind}
  rules:
  - limit: {{requests: 1000000000, unit: Second}}
",
        ns = configs::NAMESPACE
    ));
    y
}

/// `redis-server` on a free loopback port, no persistence; waits until it accepts.
fn start_redis(bin: &Path) -> Result<(Running, u16), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("a port for redis-server: {e}"))?
        .port();
    let mut cmd = Command::new(bin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"]);
    let (redis, _lines) = procs::spawn("redis-server", cmd, true)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("redis-server did not start:\n{}", redis.log_tail()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((redis, port))
}
