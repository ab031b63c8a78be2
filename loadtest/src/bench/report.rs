//! Benchmark results: what is recorded per run, the summaries (medians with min–max,
//! ratios to nginx, latency added over direct) and the markdown tables (including the
//! two-hop mTLS scenario's).

use crate::load::{group, LoadReport};
use crate::stats::Spread;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Version of the JSON layout.
pub const SCHEMA: u32 = 1;

/// One phase (closed loop or fixed rate) of one target in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseResult {
    /// The load generator's report.
    pub load: LoadReport,
    /// Wall time of the load process, seconds.
    pub wall_s: f64,
    /// Proxy user CPU seconds in the phase (all its processes and threads).
    pub proxy_cpu_user_s: Option<f64>,
    /// Proxy system CPU seconds in the phase.
    pub proxy_cpu_sys_s: Option<f64>,
    /// Proxy CPU seconds per 100,000 requests (responses and errors).
    pub proxy_cpu_s_per_100k: Option<f64>,
    /// Highest proxy RSS (VmRSS, summed over its processes) sampled during the phase, MiB.
    pub proxy_rss_mib: Option<f64>,
    /// Proxy PSS right after the phase, MiB (shared pages split between processes).
    pub proxy_pss_mib: Option<f64>,
    /// Upstream CPU seconds in the phase.
    pub upstream_cpu_s: f64,
    /// Share of the generator's CPU that was busy: generator + upstream CPU (+ proxy when
    /// it shares that CPU) over the wall time. Near 1.0, the generator side was the
    /// bottleneck.
    pub generator_cpu_busy: f64,
}

/// One target in one round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundResult {
    /// Round number (0-based).
    pub round: usize,
    /// Closed-loop phase.
    pub closed: Option<PhaseResult>,
    /// Fixed-rate phase.
    pub rate: Option<PhaseResult>,
    /// Proxy RSS after startup, before any load, MiB.
    pub proxy_idle_rss_mib: Option<f64>,
    /// Proxy peak RSS (VmHWM, summed) at the end of the round, MiB.
    pub proxy_peak_rss_mib: Option<f64>,
    /// What went wrong, if the round failed.
    pub error: Option<String>,
    /// Two-hop mTLS only: requests the second proxy counted as
    /// `connection_security_policy="mutual_tls"` (probe and warm-up included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls_requests: Option<u64>,
}

/// Medians of the latency percentiles over rounds, µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencySpread {
    /// Median.
    pub p50: Spread,
    /// 90th percentile.
    pub p90: Spread,
    /// 99th percentile.
    pub p99: Spread,
    /// 99.9th percentile.
    pub p999: Spread,
}

/// A target's results over the rounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Closed-loop throughput, req/s.
    pub rps: Option<Spread>,
    /// Median throughput over nginx's median.
    pub rps_vs_nginx: Option<f64>,
    /// Proxy CPU seconds per 100k requests, closed loop.
    pub cpu_s_per_100k: Option<Spread>,
    /// Median CPU per request over nginx's median.
    pub cpu_vs_nginx: Option<f64>,
    /// User share of the proxy's CPU time, closed loop (median).
    pub cpu_user_share: Option<f64>,
    /// Proxy CPU seconds per 100k requests at the fixed rate.
    pub rate_cpu_s_per_100k: Option<Spread>,
    /// Closed-loop latency percentiles.
    pub closed_latency_us: Option<LatencySpread>,
    /// Fixed-rate latency percentiles.
    pub rate_latency_us: Option<LatencySpread>,
    /// Fixed-rate p50 minus the direct baseline's p50 of the same round, µs.
    pub added_p50_us: Option<Spread>,
    /// Fixed-rate p99 minus the direct baseline's p99 of the same round, µs.
    pub added_p99_us: Option<Spread>,
    /// Median added p50 over nginx's.
    pub added_p50_vs_nginx: Option<f64>,
    /// Proxy RSS at load (closed loop), MiB.
    pub rss_at_load_mib: Option<Spread>,
    /// Median RSS at load over nginx's.
    pub rss_vs_nginx: Option<f64>,
    /// Proxy PSS after the closed-loop phase, MiB.
    pub pss_mib: Option<Spread>,
    /// Proxy peak RSS, MiB.
    pub peak_rss_mib: Option<Spread>,
    /// Generator CPU busy share in the closed loop.
    pub generator_cpu_busy: Option<Spread>,
    /// Errors over all measured phases and rounds.
    pub errors: u64,
    /// Rounds that failed.
    pub failed_rounds: usize,
}

/// One target: its description, runs and summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetResult {
    /// Short name (`direct`, `meshproxy`, `nginx`, ...).
    pub name: String,
    /// What it is.
    pub description: String,
    /// Name of the target whose latency is subtracted for "added latency".
    pub baseline: Option<String>,
    /// Whether there is a proxy process to measure.
    pub proxied: bool,
    /// Every round.
    pub runs: Vec<RoundResult>,
    /// Medians over the rounds.
    pub summary: Summary,
}

/// The two-hop mTLS scenario: `direct` and `two-hop-mtls` (generator → meshproxy A →
/// mTLS → meshproxy B → upstream) at one fixed rate, both measured in every round. Only
/// the fixed-rate phase is run (`closed` is always `None`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TwoHopResult {
    /// Fixed rate, req/s.
    pub rate: f64,
    /// The target for the added p50 over direct, µs.
    pub target_added_p50_us: f64,
    /// `direct` (the baseline) and `two-hop-mtls`, with their summaries.
    pub targets: Vec<TargetResult>,
}

impl TwoHopResult {
    /// The `two-hop-mtls` target.
    pub fn hops(&self) -> Option<&TargetResult> {
        self.targets.iter().find(|t| t.name == "two-hop-mtls")
    }

    /// Whether the median added p50 meets the target (`None` without data).
    pub fn target_met(&self) -> Option<bool> {
        let added = self.hops()?.summary.added_p50_us?;
        Some(added.median <= self.target_added_p50_us)
    }
}

/// A scenario that is not a load target (e.g. memory with 1,000 services).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Short name.
    pub name: String,
    /// `ok`, `skipped`, `not yet` or `failed`.
    pub status: String,
    /// What it measures, or why it did not run.
    pub note: String,
    /// Named values over the rounds.
    pub values: BTreeMap<String, Spread>,
}

/// The machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// CPUs this process may use.
    pub cpus_allowed: Vec<usize>,
    /// Kernel release.
    pub kernel: String,
    /// Memory, MiB.
    pub mem_total_mib: u64,
}

impl Machine {
    /// Reads the machine's description from `/proc`.
    pub fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        Machine {
            cpu_model,
            cpus_allowed: super::procs::allowed_cpus(),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            mem_total_mib: crate::procfs::parse_kib(&read("/proc/meminfo"), "MemTotal:")
                .unwrap_or(0)
                / 1024,
        }
    }
}

/// How the run was set up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `--quick`.
    pub quick: bool,
    /// Rounds (each target once per round, round-robin).
    pub rounds: usize,
    /// HTTP/1.1 connections.
    pub connections: usize,
    /// h2c connections.
    pub h2_connections: usize,
    /// Streams per h2c connection.
    pub h2_streams: usize,
    /// Fixed rate, req/s.
    pub rate: f64,
    /// Closed-loop warm-up, s.
    pub warmup_s: f64,
    /// Closed-loop phase, s.
    pub closed_s: f64,
    /// Fixed-rate phase, s.
    pub rate_s: f64,
    /// Upstream response body, bytes.
    pub body_size: usize,
    /// Generator threads.
    pub generator_threads: usize,
}

/// Where processes ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PinningInfo {
    /// Whether taskset pinned them.
    pub pinned: bool,
    /// CPU of the generator and the upstream.
    pub generator_cpu: Option<usize>,
    /// CPU of the proxy in the closed-loop phase.
    pub proxy_cpu_closed: Option<usize>,
    /// CPU of the proxy in the fixed-rate phase.
    pub proxy_cpu_rate: Option<usize>,
    /// Explanation.
    pub note: String,
}

/// Everything a run produced (the JSON file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BenchResults {
    /// [`SCHEMA`].
    pub schema: u32,
    /// UTC start time, `YYYYMMDDTHHMMSSZ`.
    pub timestamp: String,
    /// The machine.
    pub machine: Machine,
    /// Settings.
    pub settings: Settings,
    /// Pinning.
    pub pinning: PinningInfo,
    /// Versions of the compared programs.
    pub versions: BTreeMap<String, String>,
    /// Load targets.
    pub targets: Vec<TargetResult>,
    /// The two-hop mTLS scenario, when it ran (absent from older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub two_hop: Option<TwoHopResult>,
    /// Other scenarios.
    pub scenarios: Vec<ScenarioResult>,
    /// Targets and scenarios that did not run, and why.
    pub skipped: Vec<String>,
    /// Wall time of the whole run, s.
    pub elapsed_s: f64,
}

fn spread<T>(runs: &[RoundResult], f: impl Fn(&RoundResult) -> Option<T>) -> Option<Spread>
where
    T: Into<f64>,
{
    let v: Vec<f64> = runs.iter().filter_map(|r| f(r).map(Into::into)).collect();
    Spread::of(&v)
}

fn latency(runs: &[RoundResult], rate: bool) -> Option<LatencySpread> {
    let phase = |r: &RoundResult| {
        if rate {
            r.rate.clone()
        } else {
            r.closed.clone()
        }
    };
    let get = |f: fn(&crate::stats::Percentiles) -> f64| {
        spread(runs, |r| {
            phase(r)
                .filter(|p| p.load.requests > 0)
                .map(|p| f(&p.load.latency_us))
        })
    };
    Some(LatencySpread {
        p50: get(|p| p.p50)?,
        p90: get(|p| p.p90)?,
        p99: get(|p| p.p99)?,
        p999: get(|p| p.p999)?,
    })
}

fn ratio(a: Option<Spread>, b: Option<Spread>) -> Option<f64> {
    let (a, b) = (a?.median, b?.median);
    (b.abs() > f64::EPSILON).then(|| a / b)
}

/// Fills every target's [`Summary`]: medians over rounds, latency added over its
/// baseline in the same round, ratios to nginx; the two-hop scenario's targets likewise
/// (against its own `direct`, without ratios).
pub fn summarize(results: &mut BenchResults) {
    summarize_targets(&mut results.targets);
    if let Some(th) = results.two_hop.as_mut() {
        summarize_targets(&mut th.targets);
    }
    if let Some(nginx) = results
        .targets
        .iter()
        .find(|t| t.name == "nginx")
        .map(|t| t.summary.clone())
    {
        for t in results.targets.iter_mut() {
            let s = &mut t.summary;
            s.rps_vs_nginx = ratio(s.rps, nginx.rps);
            s.cpu_vs_nginx = ratio(s.cpu_s_per_100k, nginx.cpu_s_per_100k);
            s.added_p50_vs_nginx = ratio(s.added_p50_us, nginx.added_p50_us);
            s.rss_vs_nginx = ratio(s.rss_at_load_mib, nginx.rss_at_load_mib);
        }
    }
}

/// Summaries of one list of targets, baselines looked up in the same list.
fn summarize_targets(targets: &mut [TargetResult]) {
    let snapshot = targets.to_vec();
    let by_name = |n: &str| snapshot.iter().find(|t| t.name == n);
    for t in targets.iter_mut() {
        let runs = &t.runs;
        let mut s = Summary {
            rps: spread(runs, |r| {
                r.closed
                    .as_ref()
                    .filter(|p| p.load.requests > 0)
                    .map(|p| p.load.rps)
            }),
            cpu_s_per_100k: spread(runs, |r| r.closed.as_ref()?.proxy_cpu_s_per_100k),
            cpu_user_share: spread(runs, |r| {
                let c = r.closed.as_ref()?;
                let (u, s) = (c.proxy_cpu_user_s?, c.proxy_cpu_sys_s?);
                (u + s > 0.0).then(|| u / (u + s))
            })
            .map(|s| s.median),
            rate_cpu_s_per_100k: spread(runs, |r| r.rate.as_ref()?.proxy_cpu_s_per_100k),
            closed_latency_us: latency(runs, false),
            rate_latency_us: latency(runs, true),
            rss_at_load_mib: spread(runs, |r| r.closed.as_ref()?.proxy_rss_mib),
            pss_mib: spread(runs, |r| r.closed.as_ref()?.proxy_pss_mib),
            peak_rss_mib: spread(runs, |r| r.proxy_peak_rss_mib),
            generator_cpu_busy: spread(runs, |r| Some(r.closed.as_ref()?.generator_cpu_busy)),
            errors: runs
                .iter()
                .flat_map(|r| [&r.closed, &r.rate])
                .flatten()
                .map(|p| p.load.errors.total())
                .sum(),
            failed_rounds: runs.iter().filter(|r| r.error.is_some()).count(),
            ..Summary::default()
        };
        if let Some(base) = t.baseline.as_deref().and_then(by_name) {
            let added = |f: fn(&crate::stats::Percentiles) -> f64| {
                spread(runs, |r| {
                    let mine = r.rate.as_ref().filter(|p| p.load.requests > 0)?;
                    let theirs = base
                        .runs
                        .iter()
                        .find(|b| b.round == r.round)?
                        .rate
                        .as_ref()
                        .filter(|p| p.load.requests > 0)?;
                    Some(f(&mine.load.latency_us) - f(&theirs.load.latency_us))
                })
            };
            s.added_p50_us = added(|p| p.p50);
            s.added_p99_us = added(|p| p.p99);
        }
        t.summary = s;
    }
}

/// `median (min–max)` with `digits` decimals (thousands grouped when 0).
pub fn fmt_spread(s: Option<Spread>, digits: usize) -> String {
    let Some(s) = s else {
        return "–".into();
    };
    let f = |v: f64| {
        if digits == 0 {
            let sign = if v < 0.0 { "-" } else { "" };
            format!("{sign}{}", group(v.abs().round() as u64))
        } else {
            format!("{v:.digits$}")
        }
    };
    if s.n <= 1 {
        f(s.median)
    } else {
        format!("{} ({}–{})", f(s.median), f(s.min), f(s.max))
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "–".into())
}

/// The markdown report: the setup, then throughput/CPU/memory and latency tables, then
/// the scenarios.
pub fn render_markdown(r: &BenchResults) -> String {
    let mut s = String::new();
    let st = &r.settings;
    let _ = writeln!(s, "### meshproxy benchmark {}\n", r.timestamp);
    let _ = writeln!(
        s,
        "Machine: {}, {} CPU(s) allowed ({}), Linux {}, {} MiB RAM. {}",
        r.machine.cpu_model,
        r.machine.cpus_allowed.len(),
        r.machine
            .cpus_allowed
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
        r.machine.kernel,
        r.machine.mem_total_mib,
        r.versions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(s);
    let pin = &r.pinning;
    if pin.pinned {
        let cpu = |c: Option<usize>| c.map(|c| c.to_string()).unwrap_or_else(|| "?".into());
        let _ = writeln!(
            s,
            "Pinning (taskset): load generator and upstream on CPU {}; the proxy on CPU {} in \
             the closed loop and moved to CPU {} (with the generator) for the fixed rate.",
            cpu(pin.generator_cpu),
            cpu(pin.proxy_cpu_closed),
            cpu(pin.proxy_cpu_rate)
        );
    } else {
        let _ = writeln!(s, "Pinning: none. {}", pin.note);
    }
    let _ = writeln!(
        s,
        "\nMethod: {} round(s), targets interleaved round-robin, each started afresh per round \
         with one worker; values are medians (min–max). Closed loop: {} HTTP/1.1 keep-alive \
         connections (h2c: {} connections × {} streams), {:.1} s after a {:.1} s warm-up. \
         Fixed rate: {} req/s open loop for {:.1} s, latency from the intended send time. \
         Upstream body {} bytes; {} generator thread(s).{}",
        st.rounds,
        st.connections,
        st.h2_connections,
        st.h2_streams,
        st.closed_s,
        st.warmup_s,
        group(st.rate.round() as u64),
        st.rate_s,
        st.body_size,
        st.generator_threads,
        if st.quick {
            " **Quick mode: phases too short for publishable numbers.**"
        } else {
            ""
        }
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| target | req/s (closed loop) | × nginx | proxy CPU s / 100k req | × nginx | user share | RSS at load MiB | peak RSS MiB | errors |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for t in &r.targets {
        let m = &t.summary;
        let busy = m
            .generator_cpu_busy
            .filter(|b| b.median >= 0.9 && t.proxied)
            .map(|_| " †")
            .unwrap_or("");
        let _ = writeln!(
            s,
            "| {} | {}{busy} | {} | {} | {} | {} | {} | {} | {}{} |",
            t.name,
            fmt_spread(m.rps, 0),
            fmt_ratio(m.rps_vs_nginx),
            fmt_spread(m.cpu_s_per_100k, 2),
            fmt_ratio(m.cpu_vs_nginx),
            m.cpu_user_share
                .map(|u| format!("{:.0} %", u * 100.0))
                .unwrap_or_else(|| "–".into()),
            fmt_spread(m.rss_at_load_mib, 1),
            fmt_spread(m.peak_rss_mib, 1),
            m.errors,
            if m.failed_rounds > 0 {
                format!(" ({} failed rounds)", m.failed_rounds)
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| target at {} req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | added p50 µs | × nginx | added p99 µs | proxy CPU s / 100k req |",
        group(st.rate.round() as u64)
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for t in &r.targets {
        let m = &t.summary;
        let l = m.rate_latency_us;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.name,
            fmt_spread(l.map(|l| l.p50), 1),
            fmt_spread(l.map(|l| l.p90), 1),
            fmt_spread(l.map(|l| l.p99), 1),
            fmt_spread(l.map(|l| l.p999), 1),
            fmt_spread(m.added_p50_us, 1),
            fmt_ratio(m.added_p50_vs_nginx),
            fmt_spread(m.added_p99_us, 1),
            fmt_spread(m.rate_cpu_s_per_100k, 2),
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Added latency: the target's percentile minus the direct run's (generator → upstream) \
         in the same round. † the generator's CPU was ≥ 90 % busy: the closed-loop rate is \
         bounded by the generator side, compare CPU per request instead."
    );
    if let Some(th) = &r.two_hop {
        render_two_hop(&mut s, th);
    }
    if !r.scenarios.is_empty() {
        let _ = writeln!(s, "\nScenarios:\n");
        for sc in &r.scenarios {
            let values: Vec<String> = sc
                .values
                .iter()
                .map(|(k, v)| format!("{k} {}", fmt_spread(Some(*v), 1)))
                .collect();
            let _ = writeln!(
                s,
                "- **{}** ({}): {}{}",
                sc.name,
                sc.status,
                sc.note,
                if values.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", values.join(", "))
                }
            );
        }
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(s, "\nSkipped:\n");
        for k in &r.skipped {
            let _ = writeln!(s, "- {k}");
        }
    }
    s
}

/// The two-hop mTLS table: latency at the scenario's rate, added over its `direct`, the
/// CPU of both proxies, and the requests B saw over mTLS.
fn render_two_hop(s: &mut String, th: &TwoHopResult) {
    let rate = group(th.rate.round() as u64);
    let _ = writeln!(s, "\nTwo hops with mTLS at {rate} req/s:\n");
    let _ = writeln!(
        s,
        "| target at {rate} req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | added p50 µs | added p99 µs | proxies' CPU s / 100k req | requests B saw over mTLS | errors |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for t in &th.targets {
        let m = &t.summary;
        let l = m.rate_latency_us;
        let mtls = spread(&t.runs, |r| r.mtls_requests.map(|n| n as f64));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
            t.name,
            fmt_spread(l.map(|l| l.p50), 1),
            fmt_spread(l.map(|l| l.p90), 1),
            fmt_spread(l.map(|l| l.p99), 1),
            fmt_spread(l.map(|l| l.p999), 1),
            fmt_spread(m.added_p50_us, 1),
            fmt_spread(m.added_p99_us, 1),
            fmt_spread(m.rate_cpu_s_per_100k, 2),
            fmt_spread(mtls, 0),
            m.errors,
            if m.failed_rounds > 0 {
                format!(" ({} failed rounds)", m.failed_rounds)
            } else {
                String::new()
            }
        );
    }
    let verdict = match th.target_met() {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "no data",
    };
    let path = th
        .hops()
        .map(|t| format!("{}. ", t.description))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "\n{path}Target (issue 9): added p50 ≤ {:.0} µs over direct at {rate} req/s: {verdict}.",
        th.target_added_p50_us,
    );
    for t in &th.targets {
        for r in &t.runs {
            if let Some(e) = &r.error {
                let _ = writeln!(s, "\n**{} round {} failed**: {e}", t.name, r.round + 1);
            }
        }
    }
}

/// UTC time as `YYYYMMDDTHHMMSSZ`.
pub fn timestamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::ErrorCounts;
    use crate::stats::Percentiles;
    use std::time::{Duration, UNIX_EPOCH};

    fn load(rps: f64, p50: f64) -> LoadReport {
        LoadReport {
            mode: "closed".into(),
            protocol: "http1".into(),
            tls: None,
            url: "http://127.0.0.1:1/".into(),
            host: "h".into(),
            connections: 32,
            streams: 1,
            threads: 1,
            target_rate: None,
            warmup_s: 0.0,
            duration_s: 1.0,
            requests: rps as u64,
            rps,
            bytes: 0,
            errors: ErrorCounts::default(),
            status_codes: BTreeMap::new(),
            latency_us: Percentiles {
                count: rps as u64,
                min: p50 / 2.0,
                mean: p50,
                p50,
                p90: p50 * 2.0,
                p99: p50 * 3.0,
                p999: p50 * 4.0,
                max: p50 * 5.0,
            },
            send_lag_us: None,
            generator_cpu_user_s: 0.5,
            generator_cpu_sys_s: 0.5,
            first_connect_error: None,
        }
    }

    fn phase(rps: f64, p50: f64, cpu: Option<f64>) -> PhaseResult {
        PhaseResult {
            load: load(rps, p50),
            wall_s: 1.0,
            proxy_cpu_user_s: cpu.map(|c| c / 4.0),
            proxy_cpu_sys_s: cpu.map(|c| c * 3.0 / 4.0),
            proxy_cpu_s_per_100k: cpu,
            proxy_rss_mib: cpu.map(|_| 10.0),
            proxy_pss_mib: None,
            upstream_cpu_s: 0.1,
            generator_cpu_busy: 0.5,
        }
    }

    fn target(
        name: &str,
        baseline: Option<&str>,
        rounds: &[(f64, f64, Option<f64>)],
    ) -> TargetResult {
        TargetResult {
            name: name.into(),
            description: name.into(),
            baseline: baseline.map(str::to_string),
            proxied: baseline.is_some(),
            runs: rounds
                .iter()
                .enumerate()
                .map(|(i, (rps, p50, cpu))| RoundResult {
                    round: i,
                    closed: Some(phase(*rps, *p50, *cpu)),
                    rate: Some(phase(5000.0, *p50, *cpu)),
                    ..RoundResult::default()
                })
                .collect(),
            summary: Summary::default(),
        }
    }

    #[test]
    fn summaries_medians_ratios_and_added_latency() {
        let mut r = BenchResults {
            schema: SCHEMA,
            targets: vec![
                target(
                    "direct",
                    None,
                    &[(50.0, 20.0, None), (60.0, 22.0, None), (55.0, 30.0, None)],
                ),
                target(
                    "nginx",
                    Some("direct"),
                    &[
                        (30.0, 50.0, Some(3.0)),
                        (33.0, 52.0, Some(2.8)),
                        (31.0, 60.0, Some(2.9)),
                    ],
                ),
                target(
                    "meshproxy",
                    Some("direct"),
                    &[
                        (36.0, 40.0, Some(2.0)),
                        (40.0, 41.0, Some(2.4)),
                        (38.0, 50.0, Some(2.2)),
                    ],
                ),
            ],
            ..BenchResults::default()
        };
        summarize(&mut r);
        let n = &r.targets[1].summary;
        assert_eq!(n.rps.unwrap().median, 31.0);
        assert_eq!(n.rps_vs_nginx, Some(1.0));
        // Added p50 per round: 30, 30, 30.
        assert_eq!(n.added_p50_us.unwrap().median, 30.0);
        let m = &r.targets[2].summary;
        let rps = m.rps.unwrap();
        assert_eq!((rps.median, rps.min, rps.max), (38.0, 36.0, 40.0));
        assert!((m.rps_vs_nginx.unwrap() - 38.0 / 31.0).abs() < 1e-9);
        assert!((m.cpu_vs_nginx.unwrap() - 2.2 / 2.9).abs() < 1e-9);
        // Added p50 per round: 20, 19, 20 → median 20; vs nginx 20/30.
        let added = m.added_p50_us.unwrap();
        assert_eq!((added.median, added.min, added.max), (20.0, 19.0, 20.0));
        assert!((m.added_p50_vs_nginx.unwrap() - 20.0 / 30.0).abs() < 1e-9);
        assert_eq!(m.cpu_user_share, Some(0.25));
        assert_eq!(m.rate_latency_us.unwrap().p99.median, 123.0);
        // Direct has no proxy numbers and no baseline.
        let d = &r.targets[0].summary;
        assert!(d.cpu_s_per_100k.is_none() && d.added_p50_us.is_none());
        assert!(d.rps_vs_nginx.is_some());

        let md = render_markdown(&r);
        assert!(
            md.contains("| meshproxy | 38 (36–40) | 1.23× | 2.20 (2.00–2.40) | 0.76× |"),
            "{md}"
        );
        assert!(md.contains("| direct | 55 (50–60) |"), "{md}");
    }

    #[test]
    fn two_hop_is_summarized_and_rendered() {
        let rate_only = |mut t: TargetResult, mtls: Option<u64>| {
            for r in t.runs.iter_mut() {
                r.closed = None;
                r.mtls_requests = mtls;
            }
            t
        };
        let mut r = BenchResults {
            targets: vec![target("direct", None, &[(50.0, 20.0, None)])],
            two_hop: Some(TwoHopResult {
                rate: 1000.0,
                target_added_p50_us: 500.0,
                targets: vec![
                    rate_only(
                        target("direct", None, &[(1.0, 30.0, None), (1.0, 40.0, None)]),
                        None,
                    ),
                    rate_only(
                        target(
                            "two-hop-mtls",
                            Some("direct"),
                            &[(1.0, 130.0, Some(4.0)), (1.0, 150.0, Some(5.0))],
                        ),
                        Some(1500),
                    ),
                ],
            }),
            ..BenchResults::default()
        };
        summarize(&mut r);
        let th = r.two_hop.as_ref().unwrap();
        let hops = th.hops().unwrap();
        // Added p50 per round: 100, 110.
        let added = hops.summary.added_p50_us.unwrap();
        assert_eq!((added.min, added.max), (100.0, 110.0));
        assert_eq!(th.target_met(), Some(true));
        // No closed loop: no throughput.
        assert!(hops.summary.rps.is_none());
        let md = render_markdown(&r);
        assert!(md.contains("Two hops with mTLS at 1,000 req/s"), "{md}");
        assert!(
            md.contains("| two-hop-mtls | 140.0 (130.0–150.0) | 280.0 (260.0–300.0) | 420.0 (390.0–450.0) |"),
            "{md}"
        );
        assert!(md.contains("| 1,500 (1,500–1,500) | 0 |"), "{md}");
        assert!(
            md.contains("added p50 ≤ 500 µs over direct at 1,000 req/s: met"),
            "{md}"
        );
        // Round trip through JSON, and files without the section still load.
        let back: BenchResults = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let mut old = serde_json::to_value(BenchResults::default()).unwrap();
        old.as_object_mut().unwrap().remove("two_hop");
        assert!(serde_json::from_value::<BenchResults>(old)
            .unwrap()
            .two_hop
            .is_none());
    }

    #[test]
    fn no_nginx_no_ratios() {
        let mut r = BenchResults {
            targets: vec![target("direct", None, &[(50.0, 20.0, None)])],
            ..BenchResults::default()
        };
        summarize(&mut r);
        assert!(r.targets[0].summary.rps_vs_nginx.is_none());
        assert!(render_markdown(&r).contains("| direct | 50 | – |"));
    }

    #[test]
    fn results_round_trip_through_json() {
        let mut r = BenchResults {
            schema: SCHEMA,
            timestamp: "20260101T000000Z".into(),
            targets: vec![target("direct", None, &[(50.0, 20.0, None)])],
            ..BenchResults::default()
        };
        summarize(&mut r);
        let text = serde_json::to_string(&r).unwrap();
        let back: BenchResults = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000Z");
        // 2026-11-28T04:20:21Z
        let t = UNIX_EPOCH + Duration::from_secs(1_795_839_621);
        assert_eq!(timestamp(t), "20261128T042021Z");
        // 2000-02-29T23:59:59Z
        let t = UNIX_EPOCH + Duration::from_secs(951_868_799);
        assert_eq!(timestamp(t), "20000229T235959Z");
    }

    #[test]
    fn spreads_format() {
        let s = Spread::of(&[1000.0, 1200.0, 900.0]);
        assert_eq!(fmt_spread(s, 0), "1,000 (900–1,200)");
        assert_eq!(fmt_spread(Spread::of(&[1.234]), 2), "1.23");
        assert_eq!(fmt_spread(None, 1), "–");
        assert_eq!(fmt_spread(Spread::of(&[-3.0, -1.0, -2.0]), 0), "-2 (-3–-1)");
    }
}
