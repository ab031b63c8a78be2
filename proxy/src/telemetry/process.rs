//! Process metrics read from `/proc/self` at scrape time.

use std::fmt::Write;

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux for every architecture the proxy targets.
    Some((utime + stime) / 100.0)
}

fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// Appends the process families in Prometheus text format.
pub fn render(out: &mut String) {
    if let Some(rss) = status_kib("VmRSS:") {
        let _ = writeln!(
            out,
            "# HELP meshproxy_process_resident_memory_bytes Resident set size."
        );
        let _ = writeln!(out, "# TYPE meshproxy_process_resident_memory_bytes gauge");
        let _ = writeln!(
            out,
            "meshproxy_process_resident_memory_bytes {}",
            rss * 1024
        );
    }
    if let Some(cpu) = cpu_seconds() {
        let _ = writeln!(
            out,
            "# HELP meshproxy_process_cpu_seconds_total User and system CPU time."
        );
        let _ = writeln!(out, "# TYPE meshproxy_process_cpu_seconds_total counter");
        let _ = writeln!(out, "meshproxy_process_cpu_seconds_total {cpu}");
    }
    if let Some(fds) = open_fds() {
        let _ = writeln!(
            out,
            "# HELP meshproxy_process_open_fds Open file descriptors."
        );
        let _ = writeln!(out, "# TYPE meshproxy_process_open_fds gauge");
        let _ = writeln!(out, "meshproxy_process_open_fds {fds}");
    }
}
