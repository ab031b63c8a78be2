//! The `services-N` scenarios (issue 25): meshproxy with N services loaded as a large
//! mesh would load them ([`configs::meshproxy_many_services`]), one worker, no traffic.
//! Per round: the time to `serving`, RSS, PSS and peak RSS after start-up; the first
//! requests to services never used before against the second request to each; then a
//! reload of a config of the same size (every default route's timeout changed), with
//! its time (the proxy's own `took_ms`) and its peak RSS (the kernel's high-water mark,
//! reset just before through `/proc/PID/clear_refs`), the RSS just before it (after the
//! first requests) and once it is done.

use super::procs::Running;
use super::{configs, Runner};
use crate::procfs;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The service counts, as scenario names.
pub const SERVICE_SCENARIOS: [(&str, usize); 2] =
    [("services-1000", 1000), ("services-10000", 10_000)];

/// Services probed for the first-request latency (spread over the whole range).
const FIRST_REQUESTS: usize = 200;

/// Writes the scenario's config for `count` services into `dir/bench.yaml`.
pub fn write_config(dir: &Path, count: usize, upstream: SocketAddr) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join("bench.yaml");
    std::fs::write(&file, configs::meshproxy_many_services(count, upstream, 2))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(dir.to_path_buf())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Runner {
    /// One round of a `services-N` scenario on the config in `dir`.
    pub(super) fn services_round(
        &self,
        dir: &Path,
        count: usize,
    ) -> Result<BTreeMap<String, f64>, String> {
        let bin = self.meshproxy.as_deref().ok_or("no meshproxy binary")?;
        // The previous round's reload left the other config in place.
        write_config(dir, count, self.upstream_addr)?;
        let (mut p, listeners, ready, log) =
            self.start_meshproxy_logged(bin, dir, false, true, self.pinning.proxy_cpu)?;
        let result = self.services_measure(&p, &listeners, &log, dir, count);
        let mut v = result.inspect_err(|_| p.stop())?;
        v.insert("ready ms".to_string(), ready.as_secs_f64() * 1000.0);
        p.stop();
        Ok(v)
    }

    fn services_measure(
        &self,
        p: &Running,
        listeners: &BTreeMap<String, SocketAddr>,
        log: &mpsc::Receiver<String>,
        dir: &Path,
        count: usize,
    ) -> Result<BTreeMap<String, f64>, String> {
        let mut v = BTreeMap::new();
        // Let start-up work that runs after "serving" settle before reading memory.
        std::thread::sleep(Duration::from_millis(300));
        let pids = p.tree();
        let m = procfs::memory_of(&pids);
        v.insert("RSS MiB".to_string(), mib(m.rss_kib));
        v.insert("peak RSS MiB".to_string(), mib(m.hwm_kib));
        if let Some(pss) = procfs::pss_of(&pids) {
            v.insert("PSS MiB".to_string(), mib(pss));
        }
        let outbound = *listeners
            .get("outbound")
            .ok_or("meshproxy printed no outbound listener")?;
        let (mut first, mut later) = first_requests(outbound, count)?;
        v.insert(
            "first request p50 µs".to_string(),
            percentile(&mut first, 0.5),
        );
        v.insert(
            "first request p99 µs".to_string(),
            percentile(&mut first, 0.99),
        );
        v.insert(
            "later request p50 µs".to_string(),
            percentile(&mut later, 0.5),
        );
        v.insert(
            "later request p99 µs".to_string(),
            percentile(&mut later, 0.99),
        );

        // The first requests made live state (clusters, upstream connections, metrics):
        // the RSS the reload starts from, to tell its own cost from theirs.
        let before = procfs::memory_of(&p.tree());
        v.insert("RSS before reload MiB".to_string(), mib(before.rss_kib));
        let (took_ms, peak_kib) = reload(p.pid(), log, dir, count, self.upstream_addr)?;
        v.insert("reload ms".to_string(), took_ms);
        if let Some(peak) = peak_kib {
            v.insert("reload peak RSS MiB".to_string(), mib(peak));
        }
        std::thread::sleep(Duration::from_millis(300));
        let after = procfs::memory_of(&p.tree());
        v.insert("RSS after reload MiB".to_string(), mib(after.rss_kib));
        Ok(v)
    }
}

/// Replaces the config with one of the same size (new timeouts, so every route table is
/// compiled anew) and waits for the proxy's `config reloaded` line. Returns its `took_ms`
/// and the peak RSS during the reload (`None` when the kernel cannot reset the mark).
fn reload(
    pid: u32,
    log: &mpsc::Receiver<String>,
    dir: &Path,
    count: usize,
    upstream: SocketAddr,
) -> Result<(f64, Option<u64>), String> {
    while log.try_recv().is_ok() {}
    let staged = dir.join(".bench.yaml.next"); // dot files are not config files
    std::fs::write(
        &staged,
        configs::meshproxy_many_services(count, upstream, 3),
    )
    .map_err(|e| format!("{}: {e}", staged.display()))?;
    let reset = procfs::reset_peak(pid);
    std::fs::rename(&staged, dir.join("bench.yaml")).map_err(|e| format!("rename: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let took = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = log
            .recv_timeout(left)
            .map_err(|_| "meshproxy did not log `config reloaded`".to_string())?;
        if line.contains("\"config reloaded\"") {
            break took_ms(&line).ok_or_else(|| format!("no took_ms in {line}"))?;
        }
        if line.contains("config refused") {
            return Err(format!("reload refused: {line}"));
        }
    };
    let peak = reset
        .then(|| procfs::memory(pid).map(|m| m.hwm_kib))
        .flatten();
    Ok((took, peak))
}

/// The `took_ms` field of a JSON log line.
fn took_ms(line: &str) -> Option<f64> {
    let rest = line.split("\"took_ms\":").nth(1)?;
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// Sends, on one keep-alive connection, a first and a second request to each of
/// [`FIRST_REQUESTS`] services nothing has used; returns the latencies of the first
/// requests and of the second ones, µs.
fn first_requests(outbound: SocketAddr, count: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
    let s = TcpStream::connect_timeout(&outbound, Duration::from_secs(2))
        .map_err(|e| format!("cannot connect to {outbound}: {e}"))?;
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut conn = BufReader::new(s);
    let step = (count / FIRST_REQUESTS).max(1);
    let (mut first, mut later) = (Vec::new(), Vec::new());
    for i in (0..count).step_by(step).take(FIRST_REQUESTS) {
        let host = configs::many_services_host(i);
        first.push(timed_get(&mut conn, &host)?);
        later.push(timed_get(&mut conn, &host)?);
    }
    Ok((first, later))
}

/// The value below which a share `q` of `v` lies (nearest rank).
fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len().max(1)) - 1;
    v.get(i).copied().unwrap_or(f64::NAN)
}

/// One `GET /` for `host` on a keep-alive connection; its latency in µs (answer read
/// whole). Anything but a 200 is an error.
fn timed_get(conn: &mut BufReader<TcpStream>, host: &str) -> Result<f64, String> {
    let t0 = Instant::now();
    conn.get_mut()
        .write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .map_err(|e| format!("sending to {host}: {e}"))?;
    let mut status = String::new();
    conn.read_line(&mut status)
        .map_err(|e| format!("reading from {host}: {e}"))?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line)
            .map_err(|e| format!("reading from {host}: {e}"))?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, val)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = val.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body)
        .map_err(|e| format!("reading from {host}: {e}"))?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("{host}: {}", status.trim_end()));
    }
    Ok(t0.elapsed().as_secs_f64() * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn took_ms_is_read_from_the_json_line() {
        let l = r#"{"fields":{"message":"config reloaded","took_ms":812.5,"trigger":"file"}}"#;
        assert_eq!(took_ms(l), Some(812.5));
        assert_eq!(took_ms(r#"{"took_ms":3}"#), Some(3.0));
        assert_eq!(took_ms("nothing"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=200).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut v, 0.99), 198.0);
        assert_eq!(percentile(&mut v, 0.5), 100.0);
        assert_eq!(percentile(&mut [5.0], 0.99), 5.0);
    }
}
