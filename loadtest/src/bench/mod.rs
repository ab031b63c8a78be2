//! The one-command benchmark: direct, meshproxy (plain and with a realistic policy),
//! nginx and HAProxy, plus h2c and memory scenarios, in one run on one machine.
//!
//! For each round, each target in turn (round-robin, so slow drifts of the machine hit
//! every target alike): start it with one worker, probe it, warm up, run the closed-loop
//! phase (proxy on its own CPU), move the proxy to the generator's CPU, run the
//! fixed-rate phase, stop it. The proxy's CPU time comes from `/proc/PID/stat` deltas
//! around each phase, its memory from `/proc/PID/status`. The load generator and the
//! upstream are this crate's own `load` and `upstream` subcommands, started as separate
//! processes so their CPU is pinned and accounted like the proxy's.
//!
//! The `two-hop-mtls` scenario runs once per round after the targets: meshproxy B
//! (inbound, PeerAuthentication `STRICT`) in front of the upstream, meshproxy A
//! (outbound, DestinationRule `ISTIO_MUTUAL`) in front of B, certificates from
//! `meshproxy certs`; the fixed-rate phase at [`TWO_HOP_RATE`] direct and then through
//! A and B, both proxies on the generator's CPU. B's `/metrics` must count the requests
//! as `connection_security_policy="mutual_tls"`, or the round fails.
//!
//! Nothing is installed here: nginx and HAProxy are looked up on `PATH` and in
//! `/usr/sbin` (`scripts/bench-setup.sh` installs them on Debian) and skipped with a
//! message when absent.

pub mod configs;
pub mod plot;
pub mod procs;
pub mod ratelimit;
pub mod report;
pub mod services;

use crate::duration::format_duration;
use crate::load::LoadReport;
use crate::procfs;
use crate::stats::Spread;
use procs::{find_binary, is_executable, Pinning, Running};
use report::{
    BenchResults, Machine, PhaseResult, PinningInfo, RoundResult, ScenarioResult, Settings,
    Summary, TargetResult, TwoHopResult, SCHEMA,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Load targets, in the order they run within a round.
pub const TARGETS: [&str; 9] = [
    "direct",
    "meshproxy",
    "meshproxy-telemetry-off",
    "meshproxy-telemetry-on",
    "meshproxy-realistic",
    "nginx",
    "haproxy",
    "direct-h2c",
    "meshproxy-h2c",
];

/// Load targets that measure one feature's cost, run when named with `--only` (the default
/// run stays under ten minutes): tracing at 1 % and 100 % sampling.
pub const FEATURE_TARGETS: [&str; 2] = ["meshproxy-tracing-1pct", "meshproxy-tracing-100pct"];

/// Scenarios that are not load targets (`services-N`: [`services::SERVICE_SCENARIOS`]).
pub const SCENARIOS: [&str; 3] = ["services-1000", "services-10000", "two-hop-mtls"];

/// Fixed rate of the two-hop mTLS scenario, req/s (issue 9's setting).
pub const TWO_HOP_RATE: f64 = 1000.0;

/// Issue 9's target for the two-hop scenario: added p50 over direct, µs.
pub const TWO_HOP_TARGET_ADDED_P50_US: f64 = 500.0;

/// h2c scenario: connections.
const H2_CONNECTIONS: usize = 4;
/// h2c scenario: concurrent streams per connection.
const H2_STREAMS: usize = 8;

/// Benchmark options (the `bench` subcommand's flags).
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Short phases (a smoke run; numbers not publishable).
    pub quick: bool,
    /// Rounds (default 3).
    pub rounds: usize,
    /// Output directory.
    pub out: PathBuf,
    /// meshproxy binary (default: `meshproxy` next to this executable).
    pub meshproxy: Option<PathBuf>,
    /// Targets and scenarios to run (default: all).
    pub only: Option<Vec<String>>,
    /// HTTP/1.1 connections of the load phases.
    pub connections: usize,
    /// Fixed rate, req/s.
    pub rate: f64,
    /// Warm-up before the closed loop (default 2 s; quick 0.3 s).
    pub warmup: Option<Duration>,
    /// Closed-loop phase (default 8 s; quick 1 s).
    pub closed: Option<Duration>,
    /// Fixed-rate phase (default 6 s; quick 1 s).
    pub rate_duration: Option<Duration>,
    /// Upstream response body, bytes.
    pub body_size: usize,
    /// Load generator threads.
    pub threads: usize,
    /// Run unpinned.
    pub no_pin: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            quick: false,
            rounds: 3,
            out: PathBuf::from("bench-results"),
            meshproxy: None,
            only: None,
            connections: 32,
            rate: 5000.0,
            warmup: None,
            closed: None,
            rate_duration: None,
            body_size: 64,
            threads: 1,
            no_pin: false,
        }
    }
}

/// Phase lengths.
#[derive(Debug, Clone, Copy)]
struct Phases {
    warmup: Duration,
    closed: Duration,
    rate_warmup: Duration,
    rate: Duration,
}

impl Phases {
    fn of(o: &BenchOptions) -> Phases {
        let (w, c, rw, r) = if o.quick {
            (300, 1000, 200, 1000)
        } else {
            (2000, 8000, 1000, 6000)
        };
        Phases {
            warmup: o.warmup.unwrap_or(Duration::from_millis(w)),
            closed: o.closed.unwrap_or(Duration::from_millis(c)),
            rate_warmup: Duration::from_millis(rw),
            rate: o.rate_duration.unwrap_or(Duration::from_millis(r)),
        }
    }

    /// Rough wall time of one target in one round (phases plus start/stop).
    fn per_target(&self) -> Duration {
        self.warmup + self.closed + self.rate_warmup + self.rate + Duration::from_millis(600)
    }

    /// Rough wall time of the two-hop scenario in one round: two proxies started, and a
    /// warm-up and a fixed-rate phase for direct and for the two hops.
    fn two_hop(&self) -> Duration {
        (self.rate_warmup + self.rate) * 2 + Duration::from_millis(1200)
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Direct,
    /// `access_log` and `metrics`: the `--access-log` and `--metrics` flags.
    Meshproxy {
        dir: PathBuf,
        access_log: bool,
        metrics: bool,
    },
    Nginx(PathBuf),
    Haproxy(PathBuf),
}

#[derive(Debug, Clone)]
struct Target {
    name: &'static str,
    description: String,
    kind: Kind,
    h2: bool,
    host: String,
    headers: Vec<String>,
    baseline: Option<&'static str>,
}

/// The meshproxy binary: `--meshproxy`, else `meshproxy` next to this executable.
pub fn find_meshproxy(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if is_executable(p) {
            Ok(p.to_path_buf())
        } else {
            Err(format!(
                "--meshproxy {}: not an executable file",
                p.display()
            ))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let sibling = exe.with_file_name("meshproxy");
    if is_executable(&sibling) {
        Ok(sibling)
    } else {
        Err(format!(
            "meshproxy not found at {} (build it: cargo build --release -p meshproxy; or pass \
             --meshproxy PATH)",
            sibling.display()
        ))
    }
}

/// Checks `--only` names against the known targets and scenarios.
pub fn selection(only: Option<&[String]>) -> Result<Vec<String>, String> {
    let all: Vec<String> = TARGETS
        .iter()
        .chain(SCENARIOS.iter())
        .map(|s| s.to_string())
        .collect();
    let Some(only) = only else {
        return Ok(all);
    };
    // Opt-in targets: run only when named.
    let all: Vec<String> = all
        .into_iter()
        .chain(FEATURE_TARGETS.iter().map(|s| s.to_string()))
        .chain(ratelimit::TARGETS.iter().map(|s| s.to_string()))
        .collect();
    let mut out = Vec::new();
    for name in only
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !all.iter().any(|a| a == name) {
            return Err(format!(
                "unknown target {name:?}: expected some of {}",
                all.join(", ")
            ));
        }
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    if out.is_empty() {
        return Err("no target selected".into());
    }
    Ok(out)
}

/// First line of a program's version output (stdout or stderr).
fn version_of(bin: &Path, arg: &str) -> Option<String> {
    let out = Command::new(bin)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_version(&text)
}

/// The version in a program's `-v`/`--version` output: `nginx version: nginx/1.22.1`,
/// `HAProxy version 2.6.12-1 2023/...`, `meshproxy 0.1.0`.
pub fn parse_version(text: &str) -> Option<String> {
    let line = text.lines().next()?.trim();
    if let Some(v) = line.split("nginx/").nth(1) {
        return Some(v.trim().to_string());
    }
    if let Some(v) = line.strip_prefix("HAProxy version ") {
        return v.split_whitespace().next().map(str::to_string);
    }
    line.split_whitespace().last().map(str::to_string)
}

struct Runner {
    opts: BenchOptions,
    phases: Phases,
    own_exe: PathBuf,
    pinning: Pinning,
    tmp: PathBuf,
    upstream: Running,
    upstream_addr: SocketAddr,
    meshproxy: Option<PathBuf>,
    loads: std::cell::Cell<u64>,
}

/// A started meshproxy: the process, its listeners, the time to `serving`, and its log
/// lines from then on.
type StartedLogged = (
    Running,
    BTreeMap<String, SocketAddr>,
    Duration,
    std::sync::mpsc::Receiver<String>,
);

/// A started target: its address and, for a proxy, its process.
struct Started {
    addr: SocketAddr,
    proxy: Option<Running>,
}

impl Runner {
    fn start(&self, t: &Target, round: usize) -> Result<Started, String> {
        let cpu = self.pinning.proxy_cpu;
        match &t.kind {
            Kind::Direct => Ok(Started {
                addr: self.upstream_addr,
                proxy: None,
            }),
            Kind::Meshproxy {
                dir,
                access_log,
                metrics,
            } => {
                let bin = self.meshproxy.as_deref().ok_or("no meshproxy binary")?;
                let (p, listeners, _) =
                    self.start_meshproxy(bin, dir, *access_log, *metrics, cpu)?;
                Ok(Started {
                    addr: listener(&p, &listeners, "outbound")?,
                    proxy: Some(p),
                })
            }
            Kind::Nginx(bin) => {
                let dir = self.tmp.join(format!("nginx-{round}"));
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let port = procs::free_port()?;
                let conf = dir.join("nginx.conf");
                std::fs::write(&conf, configs::nginx_conf(&dir, port, self.upstream_addr))
                    .map_err(|e| format!("{}: {e}", conf.display()))?;
                let mut cmd = self.pinning.command(cpu, bin);
                cmd.arg("-p")
                    .arg(&dir)
                    .arg("-c")
                    .arg(&conf)
                    .arg("-e")
                    .arg(dir.join("nginx-error.log"));
                let (mut p, _) = procs::spawn("nginx", cmd, false)?;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                procs::wait_port(&mut p, addr, Duration::from_secs(10))?;
                Ok(Started {
                    addr,
                    proxy: Some(p),
                })
            }
            Kind::Haproxy(bin) => {
                let port = procs::free_port()?;
                let cfg = self.tmp.join(format!("haproxy-{round}.cfg"));
                std::fs::write(&cfg, configs::haproxy_cfg(port, self.upstream_addr))
                    .map_err(|e| format!("{}: {e}", cfg.display()))?;
                let mut cmd = self.pinning.command(cpu, bin);
                cmd.arg("-db").arg("-f").arg(&cfg);
                let (mut p, _) = procs::spawn("haproxy", cmd, false)?;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                procs::wait_port(&mut p, addr, Duration::from_secs(10))?;
                Ok(Started {
                    addr,
                    proxy: Some(p),
                })
            }
        }
    }

    /// Starts `meshproxy run` on `dir`; returns it, its listeners' addresses by name
    /// (`admin` included) and how long it took to serve.
    fn start_meshproxy(
        &self,
        bin: &Path,
        dir: &Path,
        access_log: bool,
        metrics: bool,
        cpu: Option<usize>,
    ) -> Result<(Running, BTreeMap<String, SocketAddr>, Duration), String> {
        self.start_meshproxy_logged(bin, dir, access_log, metrics, cpu)
            .map(|(p, listeners, ready, _)| (p, listeners, ready))
    }

    /// [`Runner::start_meshproxy`], also handing over the proxy's log lines after start-up.
    fn start_meshproxy_logged(
        &self,
        bin: &Path,
        dir: &Path,
        access_log: bool,
        metrics: bool,
        cpu: Option<usize>,
    ) -> Result<StartedLogged, String> {
        let mut cmd = self.pinning.command(cpu, bin);
        cmd.arg("run")
            .arg("-c")
            .arg(dir)
            .args([
                "--workers",
                "1",
                "--log-format",
                "json",
                "--drain-timeout",
                "1s",
            ])
            .args(["--access-log", if access_log { "on" } else { "off" }])
            .args(["--metrics", if metrics { "on" } else { "off" }])
            .env("RUST_LOG", "info");
        let t0 = Instant::now();
        // stdout (the access log) goes to /dev/null; stderr is the log, read for the
        // listeners' addresses.
        let (mut p, rx) = procs::spawn("meshproxy", cmd, false)?;
        let deadline = t0 + Duration::from_secs(60);
        let mut listeners = BTreeMap::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                p.stop();
                return Err(format!("meshproxy did not start:\n{}", p.log_tail()));
            };
            if let Some((name, addr)) = procs::parse_listening(&line) {
                listeners.insert(name, addr);
            }
            if line.contains("\"serving\"") {
                break;
            }
        }
        Ok((p, listeners, t0.elapsed(), rx))
    }

    /// Runs the load generator once; returns its report, its wall time and the highest
    /// RSS of `watch` sampled meanwhile (KiB).
    fn load(
        &self,
        t: &Target,
        addr: SocketAddr,
        duration: Duration,
        rate: Option<f64>,
        watch: &[u32],
    ) -> Result<(LoadReport, f64, u64), String> {
        let n = self.loads.get() + 1;
        self.loads.set(n);
        let json = self.tmp.join(format!("load-{n}.json"));
        let errfile = self.tmp.join(format!("load-{n}.err"));
        let mut cmd = self
            .pinning
            .command(self.pinning.generator_cpu, &self.own_exe);
        cmd.arg("load")
            .arg(format!("http://{addr}/"))
            .args(["--host", &t.host])
            .args(["--duration", &format_duration(duration)])
            .args(["--threads", &self.opts.threads.to_string()])
            .args(["--timeout", "5s", "--quiet"])
            .arg("--json")
            .arg(&json);
        if t.h2 {
            cmd.args(["--h2", "--connections", &H2_CONNECTIONS.to_string()])
                .args(["--streams", &H2_STREAMS.to_string()]);
        } else {
            cmd.args(["--connections", &self.opts.connections.to_string()]);
        }
        for h in &t.headers {
            cmd.args(["--header", h]);
        }
        if let Some(r) = rate {
            cmd.args(["--rate", &r.to_string()]);
        }
        let err =
            std::fs::File::create(&errfile).map_err(|e| format!("{}: {e}", errfile.display()))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the load generator: {e}"))?;
        let mut max_rss = 0;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) => {}
                Err(e) => return Err(format!("load generator: {e}")),
            }
            if !watch.is_empty() {
                max_rss = max_rss.max(procfs::memory_of(watch).rss_kib);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let wall = t0.elapsed().as_secs_f64();
        if !status.success() {
            let e = std::fs::read_to_string(&errfile).unwrap_or_default();
            return Err(format!("load generator failed ({status}): {}", e.trim()));
        }
        let text = std::fs::read_to_string(&json)
            .map_err(|e| format!("load generator wrote no report: {e}"))?;
        let report: LoadReport = serde_json::from_str(&text)
            .map_err(|e| format!("unreadable load report {}: {e}", json.display()))?;
        Ok((report, wall, max_rss))
    }

    /// One measured phase against `addr` with the CPU and memory of `proxies` (all their
    /// processes, summed; none for direct) around it.
    fn phase(
        &self,
        t: &Target,
        addr: SocketAddr,
        proxies: &[&Running],
        duration: Duration,
        rate: Option<f64>,
    ) -> Result<PhaseResult, String> {
        let pids: Vec<u32> = proxies.iter().flat_map(|p| p.tree()).collect();
        let up = [self.upstream.pid()];
        let (cpu0, up0) = (procfs::cpu_of(&pids), procfs::cpu_of(&up));
        let (load, wall, max_rss) = self.load(t, addr, duration, rate, &pids)?;
        let (cpu1, up1) = (procfs::cpu_of(&pids), procfs::cpu_of(&up));
        let tck = procfs::clock_ticks_per_second();
        let (pu, ps) = cpu1.since(cpu0).seconds(tck);
        let (uu, us) = up1.since(up0).seconds(tck);
        let served = (load.requests + load.errors.total()).max(1) as f64;
        let proxied = !proxies.is_empty();
        let shares_cpu = rate.is_some() && self.pinning.pinned();
        let generator = load.generator_cpu_user_s + load.generator_cpu_sys_s;
        let busy = (generator + uu + us + if proxied && shares_cpu { pu + ps } else { 0.0 })
            / wall.max(1e-9);
        let mib = |kib: u64| kib as f64 / 1024.0;
        Ok(PhaseResult {
            wall_s: wall,
            proxy_cpu_user_s: proxied.then_some(pu),
            proxy_cpu_sys_s: proxied.then_some(ps),
            proxy_cpu_s_per_100k: proxied.then(|| (pu + ps) / served * 100_000.0),
            proxy_rss_mib: proxied.then(|| mib(max_rss)),
            proxy_pss_mib: if proxied {
                procfs::pss_of(&pids).map(mib)
            } else {
                None
            },
            upstream_cpu_s: uu + us,
            generator_cpu_busy: busy,
            load,
        })
    }

    fn round(&self, t: &Target, round: usize) -> Result<RoundResult, String> {
        let mut rr = RoundResult {
            round,
            ..RoundResult::default()
        };
        let mut started = self.start(t, round)?;
        procs::probe(started.addr, &t.host, &t.headers)?;
        let mib = |kib: u64| kib as f64 / 1024.0;
        if let Some(p) = &started.proxy {
            rr.proxy_idle_rss_mib = Some(mib(procfs::memory_of(&p.tree()).rss_kib));
        }
        let proxies: Vec<&Running> = started.proxy.iter().collect();
        self.load(t, started.addr, self.phases.warmup, None, &[])?;
        rr.closed = Some(self.phase(t, started.addr, &proxies, self.phases.closed, None)?);
        // Fixed rate: the proxy joins the generator's CPU (no cross-CPU wake-ups).
        if let Some(p) = &started.proxy {
            self.pinning.repin(&p.tree(), self.pinning.generator_cpu)?;
        }
        let rate = Some(self.opts.rate);
        self.load(t, started.addr, self.phases.rate_warmup, rate, &[])?;
        rr.rate = Some(self.phase(t, started.addr, &proxies, self.phases.rate, rate)?);
        drop(proxies);
        if let Some(p) = started.proxy.as_mut() {
            rr.proxy_peak_rss_mib = Some(mib(procfs::memory_of(&p.tree()).hwm_kib));
            p.stop();
        }
        Ok(rr)
    }
}

impl Runner {
    /// One round of the two-hop mTLS scenario: start B then A (both on the generator's
    /// CPU, one worker each), then for direct and for the two hops a warm-up and a
    /// measured phase at [`TWO_HOP_RATE`]; then check on B's `/metrics` that the requests
    /// arrived over mutual TLS. Returns the direct and the two-hop round results.
    fn two_hop_round(
        &self,
        th: &TwoHop,
        round: usize,
    ) -> Result<(RoundResult, RoundResult), String> {
        let bin = self.meshproxy.as_deref().ok_or("no meshproxy binary")?;
        let cpu = self.pinning.generator_cpu;
        let write = |name: &str, yaml: String| -> Result<PathBuf, String> {
            let dir = self.tmp.join(format!("two-hop-{name}-{round}"));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::write(dir.join("bench.yaml"), yaml)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            Ok(dir)
        };
        let b_dir = write(
            "b",
            configs::meshproxy_two_hop_server(self.upstream_addr, &th.pki.join("server")),
        )?;
        let (mut b, b_listeners, _) = self.start_meshproxy(bin, &b_dir, false, true, cpu)?;
        let b_inbound = listener(&b, &b_listeners, "inbound")?;
        let b_admin = listener(&b, &b_listeners, "admin")?;
        let a_dir = write(
            "a",
            configs::meshproxy_two_hop_client(b_inbound, &th.pki.join("client")),
        )?;
        let (mut a, a_listeners, _) = self.start_meshproxy(bin, &a_dir, false, true, cpu)?;
        let a_outbound = listener(&a, &a_listeners, "outbound")?;
        procs::probe(a_outbound, &th.two_hop.host, &th.two_hop.headers)?;

        let rate = Some(TWO_HOP_RATE);
        let (warmup, measured) = (self.phases.rate_warmup, self.phases.rate);
        let up = self.upstream_addr;
        self.load(&th.direct, up, warmup, rate, &[])?;
        let direct = self.phase(&th.direct, up, &[], measured, rate)?;
        self.load(&th.two_hop, a_outbound, warmup, rate, &[])?;
        let hops = self.phase(&th.two_hop, a_outbound, &[&a, &b], measured, rate)?;
        let peak = procfs::memory_of(&[a.tree(), b.tree()].concat()).hwm_kib;

        let metrics = procs::http_get(b_admin, "/metrics")
            .map_err(|e| format!("reading meshproxy B's metrics: {e}"))?;
        let by_policy = destination_requests_by_security(&metrics);
        a.stop();
        b.stop();
        let mtls = by_policy.get("mutual_tls").copied().unwrap_or(0);
        let other: u64 = by_policy
            .iter()
            .filter(|(k, _)| k.as_str() != "mutual_tls")
            .map(|(_, n)| n)
            .sum();
        let mut two_hop = RoundResult {
            round,
            rate: Some(hops),
            proxy_peak_rss_mib: Some(peak as f64 / 1024.0),
            mtls_requests: Some(mtls),
            ..RoundResult::default()
        };
        let answered = two_hop.rate.as_ref().map_or(0, |p| p.load.requests);
        if mtls < answered || other > 0 {
            // Numbers that are not mTLS must not be reported as mTLS numbers.
            two_hop.rate = None;
            two_hop.error = Some(format!(
                "{NOT_MTLS}: meshproxy B counted {mtls} request(s) with \
                 connection_security_policy=\"mutual_tls\" and {other} without (by policy: \
                 {by_policy:?}) for {answered} answered in the measured phase alone"
            ));
        }
        let direct = RoundResult {
            round,
            rate: Some(direct),
            ..RoundResult::default()
        };
        Ok((direct, two_hop))
    }
}

/// How a two-hop round whose requests did not arrive over mTLS starts its error.
const NOT_MTLS: &str = "NOT mTLS";

/// The two-hop scenario's setup: its certificates and the load targets it measures.
struct TwoHop {
    /// Directory with `ca/`, `client/` and `server/` from `meshproxy certs`.
    pki: PathBuf,
    /// The baseline: generator → upstream.
    direct: Target,
    /// generator → A → B → upstream.
    two_hop: Target,
}

/// Creates the two-hop scenario's CA and the client's and server's workload certificates
/// in `dir` with `meshproxy certs ca` / `meshproxy certs issue`.
fn two_hop_pki(meshproxy: &Path, dir: &Path) -> Result<(), String> {
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new(meshproxy)
            .arg("certs")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {} certs: {e}", meshproxy.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "meshproxy certs {} failed: {}",
                args.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let path = |p: &str| dir.join(p).display().to_string();
    run(&["ca", "--out", &path("ca"), "--days", "1"])?;
    for sa in [configs::TWO_HOP_CLIENT_SA, configs::TWO_HOP_SERVER_SA] {
        run(&[
            "issue",
            "--ca",
            &path("ca"),
            "--spiffe",
            &configs::spiffe(sa),
            "--out",
            &path(sa),
            "--days",
            "1",
        ])?;
    }
    Ok(())
}

/// A listener's address from [`Runner::start_meshproxy`]'s map.
fn listener(
    p: &Running,
    listeners: &BTreeMap<String, SocketAddr>,
    name: &str,
) -> Result<SocketAddr, String> {
    listeners.get(name).copied().ok_or_else(|| {
        format!(
            "meshproxy started without a listener named {name}:\n{}",
            p.log_tail()
        )
    })
}

/// Sums the `istio_requests_total` samples a proxy reported as the destination
/// (`reporter="destination"`) by their `connection_security_policy` label, from its
/// Prometheus text.
pub fn destination_requests_by_security(metrics: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("istio_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        if !labels.contains("reporter=\"destination\"") {
            continue;
        }
        let policy = labels
            .split("connection_security_policy=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or("")
            .to_string();
        let n = value.trim().parse::<f64>().unwrap_or(0.0);
        *out.entry(policy).or_insert(0) += n as u64;
    }
    out
}

/// Runs the benchmark; writes `<out>/<timestamp>.{json,md,svg}`, prints the markdown on
/// stdout, and returns the JSON path.
pub fn run(opts: &BenchOptions) -> Result<PathBuf, String> {
    let began = Instant::now();
    let timestamp = report::timestamp(SystemTime::now());
    let selected = selection(opts.only.as_deref())?;
    let want = |n: &str| selected.iter().any(|s| s == n);
    if opts.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    if !(opts.rate.is_finite() && opts.rate > 0.0) {
        return Err("--rate must be positive".into());
    }
    let phases = Phases::of(opts);
    let own_exe =
        std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let pinning = Pinning::detect(opts.no_pin);
    // Before the runner pins itself, which narrows the CPUs it sees as allowed.
    let machine = Machine::detect();
    if pinning.pinned() {
        // The runner's own sampling stays off the proxy's CPU.
        if let Err(e) = pinning.repin(&[std::process::id()], pinning.generator_cpu) {
            eprintln!("bench: warning: the runner itself stays unpinned: {e}");
        }
    } else {
        eprintln!("bench: {}", pinning.note);
    }
    let mut skipped = Vec::new();
    let mut versions = BTreeMap::new();

    let needs_meshproxy = selected
        .iter()
        .any(|s| s.starts_with("meshproxy") || s.starts_with("services-") || s == "two-hop-mtls");
    let meshproxy = if needs_meshproxy {
        match find_meshproxy(opts.meshproxy.as_deref()) {
            Ok(p) => {
                if p.components().any(|c| c.as_os_str() == "debug") {
                    eprintln!(
                        "bench: warning: {} looks like a debug build; build with --release",
                        p.display()
                    );
                }
                if let Some(v) = version_of(&p, "--version") {
                    versions.insert("meshproxy".to_string(), v);
                }
                Some(p)
            }
            Err(e) => {
                skipped.push(format!("meshproxy targets and scenarios: {e}"));
                None
            }
        }
    } else {
        None
    };
    let nginx = if want("nginx") {
        let b = find_binary("nginx");
        match &b {
            Some(p) => {
                if let Some(v) = version_of(p, "-v") {
                    versions.insert("nginx".to_string(), v);
                }
            }
            None => skipped.push(
                "nginx: not found on PATH or in /usr/sbin (install: scripts/bench-setup.sh)".into(),
            ),
        }
        b
    } else {
        None
    };
    let haproxy = if want("haproxy") {
        let b = find_binary("haproxy");
        match &b {
            Some(p) => {
                if let Some(v) = version_of(p, "-v") {
                    versions.insert("HAProxy".to_string(), v);
                }
            }
            None => skipped.push(
                "haproxy: not found on PATH or in /usr/sbin (install: scripts/bench-setup.sh)"
                    .into(),
            ),
        }
        b
    } else {
        None
    };

    let tmp = std::env::temp_dir().join(format!(
        "meshproxy-bench-{}-{}",
        std::process::id(),
        timestamp
    ));
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;

    // The upstream, on the generator's CPU, for the whole run.
    let mut cmd = pinning.command(pinning.generator_cpu, &own_exe);
    cmd.args(["upstream", "--threads", "1", "--body-size"])
        .arg(opts.body_size.to_string());
    let (upstream, rx) = procs::spawn("upstream", cmd, true)?;
    let line = procs::wait_line(&rx, "listening", Duration::from_secs(10))
        .ok_or_else(|| format!("the upstream did not start:\n{}", upstream.log_tail()))?;
    let upstream_addr: SocketAddr = line
        .trim_start_matches("listening")
        .trim()
        .parse()
        .map_err(|e| format!("upstream printed {line:?}: {e}"))?;

    // meshproxy configs.
    let write_dir = |name: &str, yaml: String| -> Result<PathBuf, String> {
        let dir = tmp.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("bench.yaml"), yaml)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(dir)
    };
    let plain = write_dir("meshproxy-plain", configs::meshproxy_plain(upstream_addr))?;
    let realistic = write_dir(
        "meshproxy-realistic",
        configs::meshproxy_realistic(upstream_addr, 10),
    )?;
    let traced = |pct: f64| {
        write_dir(
            &format!("meshproxy-tracing-{pct}"),
            configs::meshproxy_tracing(upstream_addr, pct),
        )
    };
    let (traced_1, traced_100) = (traced(1.0)?, traced(100.0)?);
    let mut service_scenarios = Vec::new();
    for (name, count) in services::SERVICE_SCENARIOS {
        if want(name) && meshproxy.is_some() {
            let dir = services::write_config(&tmp.join(name), count, upstream_addr)?;
            service_scenarios.push((name, count, dir));
        }
    }

    let mut targets = Vec::new();
    let h1 = |name, description: String, kind, baseline| Target {
        name,
        description,
        kind,
        h2: false,
        host: configs::HOST.to_string(),
        headers: Vec::new(),
        baseline,
    };
    let rate_limit = match meshproxy {
        Some(_) => ratelimit::Setup::new(&selected, &tmp, upstream_addr, &mut skipped)?,
        None => ratelimit::Setup::default(),
    };
    for &name in TARGETS
        .iter()
        .chain(&FEATURE_TARGETS)
        .chain(ratelimit::TARGETS.iter())
        .filter(|n| want(n))
    {
        let t = match name {
            "direct" => Some(h1(
                "direct",
                "load generator → upstream, no proxy (HTTP/1.1 keep-alive)".into(),
                Kind::Direct,
                None,
            )),
            "meshproxy" => meshproxy.as_ref().map(|_| {
                h1(
                    "meshproxy",
                    "meshproxy run --workers 1 --access-log off (metrics on); one ServiceEntry \
                     and one VirtualService"
                        .into(),
                    Kind::Meshproxy {
                        dir: plain.clone(),
                        access_log: false,
                        metrics: true,
                    },
                    Some("direct"),
                )
            }),
            // The cost of telemetry (issue: metrics and access log on vs off), same config.
            "meshproxy-telemetry-off" => meshproxy.as_ref().map(|_| {
                h1(
                    "meshproxy-telemetry-off",
                    "meshproxy as above with --metrics off --access-log off".into(),
                    Kind::Meshproxy {
                        dir: plain.clone(),
                        access_log: false,
                        metrics: false,
                    },
                    Some("direct"),
                )
            }),
            "meshproxy-telemetry-on" => meshproxy.as_ref().map(|_| {
                h1(
                    "meshproxy-telemetry-on",
                    "meshproxy as above with --metrics on --access-log on (to /dev/null)".into(),
                    Kind::Meshproxy {
                        dir: plain.clone(),
                        access_log: true,
                        metrics: true,
                    },
                    Some("direct"),
                )
            }),
            // The cost of tracing (Telemetry sampling 1 % and 100 %, Zipkin export).
            "meshproxy-tracing-1pct" | "meshproxy-tracing-100pct" => meshproxy.as_ref().map(|_| {
                let (dir, pct) = if name.ends_with("-1pct") {
                    (&traced_1, 1)
                } else {
                    (&traced_100, 100)
                };
                h1(
                    name,
                    format!(
                        "meshproxy as `meshproxy`, traced: Telemetry sampling {pct} %, spans \
                         exported as Zipkin JSON to a collector on the upstream's CPU"
                    ),
                    Kind::Meshproxy {
                        dir: dir.clone(),
                        access_log: false,
                        metrics: true,
                    },
                    Some("direct"),
                )
            }),
            "meshproxy-realistic" => meshproxy.as_ref().map(|_| Target {
                host: configs::REALISTIC_HOST.to_string(),
                headers: vec![configs::REALISTIC_HEADER.to_string()],
                ..h1(
                    "meshproxy-realistic",
                    "meshproxy, --workers 1, 10 VirtualServices (header, regex and prefix \
                     matches, 90/10 weights, retries, timeouts), DestinationRules with \
                     connectionPool and outlierDetection, metrics on, access log on (to /dev/null)"
                        .into(),
                    Kind::Meshproxy {
                        dir: realistic.clone(),
                        access_log: true,
                        metrics: true,
                    },
                    Some("direct"),
                )
            }),
            "nginx" => nginx.as_ref().map(|b| {
                h1(
                    "nginx",
                    "nginx, worker_processes 1, upstream keepalive".into(),
                    Kind::Nginx(b.clone()),
                    Some("direct"),
                )
            }),
            "haproxy" => haproxy.as_ref().map(|b| {
                h1(
                    "haproxy",
                    "HAProxy, nbthread 1, mode http, keep-alive, http-reuse always".into(),
                    Kind::Haproxy(b.clone()),
                    Some("direct"),
                )
            }),
            "direct-h2c" => Some(Target {
                h2: true,
                ..h1(
                    "direct-h2c",
                    format!(
                        "load generator → upstream over h2c, {H2_CONNECTIONS} connections × \
                         {H2_STREAMS} streams"
                    ),
                    Kind::Direct,
                    None,
                )
            }),
            "meshproxy-h2c" => meshproxy.as_ref().map(|_| Target {
                h2: true,
                host: configs::HOST_H2.to_string(),
                ..h1(
                    "meshproxy-h2c",
                    format!(
                        "h2c multiplexed, {H2_CONNECTIONS} connections × {H2_STREAMS} streams → \
                         meshproxy → HTTP/2 upstream (port protocol HTTP2)"
                    ),
                    Kind::Meshproxy {
                        dir: plain.clone(),
                        access_log: false,
                        metrics: true,
                    },
                    Some("direct-h2c"),
                )
            }),
            "meshproxy-ratelimit-local" | "meshproxy-ratelimit-global" => {
                rate_limit.target(name).map(|(dir, description)| {
                    h1(
                        name,
                        description,
                        Kind::Meshproxy {
                            dir,
                            access_log: false,
                            metrics: true,
                        },
                        Some("direct"),
                    )
                })
            }
            _ => None,
        };
        if let Some(t) = t {
            targets.push(t);
        }
    }
    let mut two_hop_errors = Vec::new();
    let two_hop = match (&meshproxy, want("two-hop-mtls")) {
        (Some(bin), true) => {
            let pki = tmp.join("two-hop-pki");
            match two_hop_pki(bin, &pki) {
                Ok(()) => Some(TwoHop {
                    pki,
                    // Measured by two_hop_round, never started by Runner::start.
                    direct: h1(
                        "direct",
                        "load generator → upstream, no proxy (HTTP/1.1 keep-alive)".into(),
                        Kind::Direct,
                        None,
                    ),
                    two_hop: h1(
                        "two-hop-mtls",
                        two_hop_description(),
                        Kind::Direct,
                        Some("direct"),
                    ),
                }),
                Err(e) => {
                    eprintln!("bench: two-hop-mtls: {e}");
                    two_hop_errors.push(e);
                    None
                }
            }
        }
        _ => None,
    };

    let runner = Runner {
        opts: opts.clone(),
        phases,
        own_exe,
        pinning: pinning.clone(),
        tmp: tmp.clone(),
        upstream,
        upstream_addr,
        meshproxy,
        loads: std::cell::Cell::new(0),
    };

    let estimate = (phases.per_target() * targets.len() as u32
        + service_scenarios
            .iter()
            .map(|(_, count, _)| Duration::from_millis(1500 + *count as u64 / 4))
            .sum::<Duration>()
        + if two_hop.is_some() {
            phases.two_hop()
        } else {
            Duration::ZERO
        })
        * opts.rounds as u32;
    eprintln!(
        "bench: {} target(s){} × {} round(s), about {:.0} s; upstream on {upstream_addr}; {}",
        targets.len(),
        if two_hop.is_some() {
            " + two-hop-mtls"
        } else {
            ""
        },
        opts.rounds,
        estimate.as_secs_f64(),
        if pinning.pinned() {
            format!(
                "generator and upstream on CPU {}, proxy on CPU {}",
                pinning.generator_cpu.unwrap_or(0),
                pinning.proxy_cpu.unwrap_or(0)
            )
        } else {
            "unpinned".to_string()
        }
    );
    for s in &skipped {
        eprintln!("bench: skipping {s}");
    }

    let mut results: Vec<TargetResult> = targets
        .iter()
        .map(|t| TargetResult {
            name: t.name.to_string(),
            description: t.description.clone(),
            baseline: t
                .baseline
                .filter(|b| targets.iter().any(|o| o.name == *b))
                .map(str::to_string),
            proxied: !matches!(t.kind, Kind::Direct),
            runs: Vec::new(),
            summary: Summary::default(),
        })
        .collect();
    let mut service_values: Vec<BTreeMap<String, Vec<f64>>> =
        vec![BTreeMap::new(); service_scenarios.len()];
    let mut service_errors: Vec<Vec<String>> = vec![Vec::new(); service_scenarios.len()];
    let mut two_hop_results: Option<TwoHopResult> = two_hop.as_ref().map(|th| TwoHopResult {
        rate: TWO_HOP_RATE,
        target_added_p50_us: TWO_HOP_TARGET_ADDED_P50_US,
        targets: [&th.direct, &th.two_hop]
            .into_iter()
            .map(|t| TargetResult {
                name: t.name.to_string(),
                description: t.description.clone(),
                baseline: t.baseline.map(str::to_string),
                proxied: t.baseline.is_some(),
                runs: Vec::new(),
                summary: Summary::default(),
            })
            .collect(),
    });
    for round in 0..opts.rounds {
        for (i, t) in targets.iter().enumerate() {
            eprint!("[round {}/{}] {:<20}", round + 1, opts.rounds, t.name);
            let rr = runner.round(t, round).unwrap_or_else(|e| RoundResult {
                round,
                error: Some(e),
                ..RoundResult::default()
            });
            match (&rr.error, &rr.closed, &rr.rate) {
                (Some(e), _, _) => eprintln!(" failed: {e}"),
                (None, Some(c), Some(r)) => eprintln!(
                    " {:>9.0} req/s{}  | at {} req/s: p50 {:.1} µs, p99 {:.1} µs | errors {}",
                    c.load.rps,
                    c.proxy_cpu_s_per_100k
                        .map(|x| format!(", {x:.2} CPU s/100k"))
                        .unwrap_or_default(),
                    crate::load::group(opts.rate.round() as u64),
                    r.load.latency_us.p50,
                    r.load.latency_us.p99,
                    c.load.errors.total() + r.load.errors.total()
                ),
                _ => eprintln!(),
            }
            results[i].runs.push(rr);
        }
        for (i, (name, count, dir)) in service_scenarios.iter().enumerate() {
            eprint!("[round {}/{}] {:<20}", round + 1, opts.rounds, name);
            match runner.services_round(dir, *count) {
                Ok(v) => {
                    let get = |k: &str| v.get(k).copied().unwrap_or(f64::NAN);
                    eprintln!(
                        " ready {:.0} ms, RSS {:.1} MiB, reload {:.0} ms peaking at {:.1} MiB, \
                         first-request p99 {:.0} µs (later {:.0} µs)",
                        get("ready ms"),
                        get("RSS MiB"),
                        get("reload ms"),
                        get("reload peak RSS MiB"),
                        get("first request p99 µs"),
                        get("later request p99 µs"),
                    );
                    for (k, x) in v {
                        service_values[i].entry(k).or_default().push(x);
                    }
                }
                Err(e) => {
                    eprintln!(" failed: {e}");
                    service_errors[i].push(e);
                }
            }
        }
        if let (Some(th), Some(res)) = (&two_hop, two_hop_results.as_mut()) {
            eprint!(
                "[round {}/{}] {:<20}",
                round + 1,
                opts.rounds,
                "two-hop-mtls"
            );
            let (direct, hops) = runner.two_hop_round(th, round).unwrap_or_else(|e| {
                let failed = RoundResult {
                    round,
                    error: Some(e),
                    ..RoundResult::default()
                };
                (failed.clone(), failed)
            });
            let p50 = |r: &RoundResult| r.rate.as_ref().map(|p| p.load.latency_us.p50);
            match (&hops.error, p50(&direct), p50(&hops)) {
                (Some(e), _, _) => {
                    eprintln!(" FAILED: {e}");
                    two_hop_errors.push(e.clone());
                }
                (None, Some(d), Some(h)) => eprintln!(
                    " at {} req/s: direct p50 {d:.1} µs, two hops p50 {h:.1} µs (+{:.1} µs); \
                     B saw {} request(s) over mTLS | errors {}",
                    crate::load::group(TWO_HOP_RATE as u64),
                    h - d,
                    hops.mtls_requests.unwrap_or(0),
                    [&direct, &hops]
                        .iter()
                        .filter_map(|r| r.rate.as_ref())
                        .map(|p| p.load.errors.total())
                        .sum::<u64>()
                ),
                _ => eprintln!(),
            }
            res.targets[0].runs.push(direct);
            res.targets[1].runs.push(hops);
        }
    }
    drop(runner);

    let mut scenarios = Vec::new();
    for (name, count) in services::SERVICE_SCENARIOS {
        if !want(name) {
            continue;
        }
        let Some(i) = service_scenarios.iter().position(|s| s.0 == name) else {
            scenarios.push(ScenarioResult {
                name: name.into(),
                status: "skipped".into(),
                note: "needs the meshproxy binary".into(),
                values: BTreeMap::new(),
            });
            continue;
        };
        scenarios.push(ScenarioResult {
            name: name.into(),
            status: if service_values[i].is_empty() {
                "failed"
            } else {
                "ok"
            }
            .into(),
            note: format!(
                "meshproxy with {count} ServiceEntries × 5 endpoints and {count} VirtualServices \
                 (a header match with retries, a default route with a timeout) loaded, one \
                 worker; memory idle after start-up, first requests to unused services, a \
                 reload to a config of the same size{}",
                service_errors[i]
                    .first()
                    .map(|e| format!("; error: {e}"))
                    .unwrap_or_default()
            ),
            values: service_values[i]
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), Spread::of(v)?)))
                .collect(),
        });
    }
    let not_mtls = two_hop_errors
        .iter()
        .find(|e| e.starts_with(NOT_MTLS))
        .cloned();
    if want("two-hop-mtls") {
        let ran = two_hop_results
            .as_ref()
            .is_some_and(|r| r.targets.iter().any(|t| !t.runs.is_empty()));
        // No two-hop setup and no error: there was no meshproxy binary.
        let status = if two_hop.is_none() && two_hop_errors.is_empty() {
            "skipped"
        } else if !two_hop_errors.is_empty() || !ran {
            "failed"
        } else {
            "ok"
        };
        let note = match status {
            "skipped" => "needs the meshproxy binary".to_string(),
            _ => format!(
                "{} (table \"two hops with mTLS\"){}",
                two_hop_description(),
                two_hop_errors
                    .first()
                    .map(|e| format!("; error: {e}"))
                    .unwrap_or_default()
            ),
        };
        scenarios.push(ScenarioResult {
            name: "two-hop-mtls".into(),
            status: status.into(),
            note,
            values: BTreeMap::new(),
        });
    }

    let mut results = BenchResults {
        schema: SCHEMA,
        timestamp: timestamp.clone(),
        machine,
        settings: Settings {
            quick: opts.quick,
            rounds: opts.rounds,
            connections: opts.connections,
            h2_connections: H2_CONNECTIONS,
            h2_streams: H2_STREAMS,
            rate: opts.rate,
            warmup_s: phases.warmup.as_secs_f64(),
            closed_s: phases.closed.as_secs_f64(),
            rate_s: phases.rate.as_secs_f64(),
            body_size: opts.body_size,
            generator_threads: opts.threads,
        },
        pinning: PinningInfo {
            pinned: pinning.pinned(),
            generator_cpu: pinning.generator_cpu,
            proxy_cpu_closed: pinning.proxy_cpu,
            proxy_cpu_rate: pinning.generator_cpu,
            note: pinning.note.clone(),
        },
        versions,
        targets: results,
        two_hop: two_hop_results,
        scenarios,
        skipped,
        elapsed_s: began.elapsed().as_secs_f64(),
    };
    report::summarize(&mut results);
    let _ = std::fs::remove_dir_all(&tmp);

    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let base = opts.out.join(&timestamp);
    let json_path = base.with_extension("json");
    let md_path = base.with_extension("md");
    let svg_path = base.with_extension("svg");
    let json = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(&json_path, json).map_err(|e| format!("{}: {e}", json_path.display()))?;
    let md = report::render_markdown(&results);
    std::fs::write(&md_path, &md).map_err(|e| format!("{}: {e}", md_path.display()))?;
    let svg = plot::render_svg(&results)?;
    std::fs::write(&svg_path, svg).map_err(|e| format!("{}: {e}", svg_path.display()))?;
    println!("{md}");
    eprintln!(
        "bench: done in {:.0} s; wrote {}, {} and {}",
        results.elapsed_s,
        json_path.display(),
        md_path.display(),
        svg_path.display()
    );
    // Latency numbers of a path that was not mTLS must not pass for mTLS ones: the run
    // fails (after writing its results) when B did not see the requests over mTLS.
    if let Some(e) = not_mtls {
        return Err(format!(
            "two-hop-mtls: {e} (results written to {})",
            json_path.display()
        ));
    }
    Ok(json_path)
}

/// What the two-hop scenario measures, for the report.
fn two_hop_description() -> String {
    format!(
        "load generator → meshproxy A (plain HTTP, outbound; DestinationRule ISTIO_MUTUAL, \
         identity {}) → mTLS → meshproxy B (inbound, PeerAuthentication STRICT, identity {}) \
         → upstream; one worker each, both on the generator's CPU; verified on B's \
         /metrics (connection_security_policy=\"mutual_tls\")",
        configs::spiffe(configs::TWO_HOP_CLIENT_SA),
        configs::spiffe(configs::TWO_HOP_SERVER_SA)
    )
}

/// Re-renders the markdown of a results JSON (e.g. for the README), and its plot into
/// `svg` if given.
pub fn report_from_json(path: &Path, svg: Option<&Path>) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut r: BenchResults =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    report::summarize(&mut r);
    if let Some(out) = svg {
        let plot = plot::render_svg(&r)?;
        std::fs::write(out, plot).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    Ok(report::render_markdown(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_defaults_to_everything() {
        let all = selection(None).unwrap();
        assert_eq!(all.len(), TARGETS.len() + SCENARIOS.len());
    }

    #[test]
    fn selection_checks_names() {
        let s = selection(Some(&["direct,nginx".into(), "nginx".into()])).unwrap();
        assert_eq!(s, vec!["direct", "nginx"]);
        let s = selection(Some(&["meshproxy-tracing-1pct".into()])).unwrap();
        assert_eq!(s, vec!["meshproxy-tracing-1pct"]);
        assert!(selection(Some(&["envoy".into()])).is_err());
        assert!(selection(Some(&[",".into()])).is_err());
    }

    #[test]
    fn quick_phases_are_short_and_default_fits_ten_minutes() {
        let q = Phases::of(&BenchOptions {
            quick: true,
            ..BenchOptions::default()
        });
        assert!(q.per_target() < Duration::from_secs(4));
        let d = Phases::of(&BenchOptions::default());
        let total =
            (d.per_target() * (TARGETS.len() as u32) + d.two_hop() + Duration::from_millis(1500))
                * 3
                + Duration::from_secs(5);
        // The bench must finish in under ten minutes, scenarios and start-up included.
        assert!(total < Duration::from_secs(9 * 60), "{total:?}");
    }

    #[test]
    fn security_policies_are_summed_from_metrics() {
        let m = "# HELP istio_requests_total x\n\
            istio_requests_total{reporter=\"destination\",response_code=\"200\",connection_security_policy=\"mutual_tls\"} 1200\n\
            istio_requests_total{reporter=\"destination\",response_code=\"503\",connection_security_policy=\"mutual_tls\"} 3\n\
            istio_requests_total{reporter=\"destination\",response_code=\"200\",connection_security_policy=\"none\"} 2\n\
            istio_requests_total{reporter=\"source\",response_code=\"200\",connection_security_policy=\"unknown\"} 99\n\
            istio_request_bytes_sum{reporter=\"destination\",connection_security_policy=\"none\"} 5\n";
        let by = destination_requests_by_security(m);
        assert_eq!(by.get("mutual_tls"), Some(&1203));
        assert_eq!(by.get("none"), Some(&2));
        assert_eq!(by.len(), 2);
        assert!(destination_requests_by_security("").is_empty());
    }

    #[test]
    fn versions_are_parsed() {
        assert_eq!(
            parse_version("nginx version: nginx/1.22.1\n").as_deref(),
            Some("1.22.1")
        );
        assert_eq!(
            parse_version(
                "HAProxy version 2.6.12-1+deb12u4 2025/04/29 - https://haproxy.org/\nStatus: x"
            )
            .as_deref(),
            Some("2.6.12-1+deb12u4")
        );
        assert_eq!(parse_version("meshproxy 0.1.0").as_deref(), Some("0.1.0"));
        assert_eq!(parse_version(""), None);
        assert!(version_of(Path::new("/no/such/bin"), "-v").is_none());
    }
}
