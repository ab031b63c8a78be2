//! Reading a process's CPU time and memory from `/proc` (Linux).
//!
//! - CPU: `utime` and `stime` from `/proc/PID/stat`, in clock ticks
//!   (`sysconf(_SC_CLK_TCK)`, 100 on Linux), summed over the process's threads.
//! - Memory: `VmRSS` (resident now) and `VmHWM` (peak resident) from `/proc/PID/status`,
//!   `Pss` (resident, shared pages divided among their users) from
//!   `/proc/PID/smaps_rollup`.

use std::path::Path;

/// CPU time of a process (or several), in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// Time in user mode.
    pub user: u64,
    /// Time in the kernel.
    pub sys: u64,
}

impl CpuTicks {
    /// Ticks spent since `earlier` (saturating).
    pub fn since(self, earlier: CpuTicks) -> CpuTicks {
        CpuTicks {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }

    /// User and system seconds at `ticks_per_second`.
    pub fn seconds(self, ticks_per_second: u64) -> (f64, f64) {
        let t = ticks_per_second.max(1) as f64;
        (self.user as f64 / t, self.sys as f64 / t)
    }
}

impl std::ops::Add for CpuTicks {
    type Output = CpuTicks;

    fn add(self, other: CpuTicks) -> CpuTicks {
        CpuTicks {
            user: self.user + other.user,
            sys: self.sys + other.sys,
        }
    }
}

/// The fields of `/proc/PID/stat` this crate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Parent process id.
    pub ppid: u32,
    /// CPU time.
    pub cpu: CpuTicks,
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) is in parentheses and
/// may itself contain spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: state(3) ppid(4) ... utime(14) stime(15).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    Some(Stat {
        ppid: u32::try_from(get(4)?).ok()?,
        cpu: CpuTicks {
            user: get(14)?,
            sys: get(15)?,
        },
    })
}

/// A `kB` field (`VmRSS:`, `VmHWM:`, `Pss:`, …) of a `/proc` status-like text, in KiB.
pub fn parse_kib(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Clock ticks per second for `/proc/PID/stat` times.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// `/proc/PID/stat` of a running process.
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// This process's CPU time.
pub fn self_cpu() -> Option<CpuTicks> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?).map(|s| s.cpu)
}

/// Memory of a process, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident (`VmHWM`).
    pub hwm_kib: u64,
}

impl std::ops::Add for Memory {
    type Output = Memory;

    fn add(self, other: Memory) -> Memory {
        Memory {
            rss_kib: self.rss_kib + other.rss_kib,
            hwm_kib: self.hwm_kib + other.hwm_kib,
        }
    }
}

/// Parses `/proc/PID/status` into [`Memory`].
pub fn parse_memory(status: &str) -> Option<Memory> {
    Some(Memory {
        rss_kib: parse_kib(status, "VmRSS:")?,
        hwm_kib: parse_kib(status, "VmHWM:")?,
    })
}

/// Memory of a running process.
pub fn memory(pid: u32) -> Option<Memory> {
    parse_memory(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Resets the peak RSS (`VmHWM`) of a process to its RSS now (`5` to
/// `/proc/PID/clear_refs`, Linux ≥ 4.0), so the next read is the peak since. False when
/// the kernel refused.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Proportional set size of a running process in KiB (`None` where the kernel lacks
/// `smaps_rollup`).
pub fn pss_kib(pid: u32) -> Option<u64> {
    parse_kib(
        &std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?,
        "Pss:",
    )
}

/// `pid` and all its descendants that are alive now (found by scanning `/proc`).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir(Path::new("/proc")) {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(s) = stat(p) {
                parents.push((p, s.ppid));
            }
        }
    }
    descendants(pid, &parents)
}

/// `root` and its descendants given (pid, ppid) pairs.
pub fn descendants(root: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(c, pp)| *pp == p && *c != p && !out.contains(c))
                .map(|(c, _)| *c)
                .collect::<Vec<_>>(),
        );
        i += 1;
    }
    out
}

/// CPU time summed over `pids` (processes that exited are skipped).
pub fn cpu_of(pids: &[u32]) -> CpuTicks {
    pids.iter()
        .filter_map(|p| stat(*p))
        .fold(CpuTicks::default(), |a, s| a + s.cpu)
}

/// Memory summed over `pids`.
pub fn memory_of(pids: &[u32]) -> Memory {
    pids.iter()
        .filter_map(|p| memory(*p))
        .fold(Memory::default(), |a, m| a + m)
}

/// PSS summed over `pids`, if the kernel reports it for all of them.
pub fn pss_of(pids: &[u32]) -> Option<u64> {
    pids.iter().map(|p| pss_kib(*p)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (nginx: worker) process) S 4241 4241 4241 0 -1 4194624 1056 0 0 0 1234 5678 0 0 20 0 1 0 8811 11886592 1021 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";

    const STATUS: &str = "Name:\tmeshproxy\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t777\nVmPeak:\t  123456 kB\nVmSize:\t  120000 kB\nVmHWM:\t   14336 kB\nVmRSS:\t   12288 kB\nRssAnon:\t    4096 kB\nThreads:\t4\n";

    #[test]
    fn stat_fields_after_a_name_with_spaces_and_parentheses() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.ppid, 4241);
        assert_eq!(
            s.cpu,
            CpuTicks {
                user: 1234,
                sys: 5678
            }
        );
    }

    #[test]
    fn truncated_stat_is_none() {
        assert!(parse_stat("12 (x) S 1 2 3").is_none());
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn memory_fields() {
        let m = parse_memory(STATUS).unwrap();
        assert_eq!(
            m,
            Memory {
                rss_kib: 12288,
                hwm_kib: 14336
            }
        );
        assert_eq!(
            parse_kib("Rss: 100 kB\nPss:  80 kB\nPss_Anon: 10 kB\n", "Pss:"),
            Some(80)
        );
        assert_eq!(parse_kib(STATUS, "VmSwap:"), None);
    }

    #[test]
    fn ticks_arithmetic() {
        let a = CpuTicks {
            user: 150,
            sys: 350,
        };
        let b = CpuTicks {
            user: 100,
            sys: 300,
        };
        assert_eq!(a.since(b), CpuTicks { user: 50, sys: 50 });
        assert_eq!(b.since(a), CpuTicks::default());
        assert_eq!(a.since(b).seconds(100), (0.5, 0.5));
    }

    #[test]
    fn tree_from_parent_pairs() {
        let pairs = [
            (1, 0),
            (10, 1),
            (11, 10),
            (12, 10),
            (13, 11),
            (20, 1),
            (10, 10),
        ];
        let mut t = descendants(10, &pairs);
        t.sort();
        assert_eq!(t, vec![10, 11, 12, 13]);
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        assert!(stat(me).is_some());
        assert!(memory(me).unwrap().rss_kib > 0);
        assert!(process_tree(me).contains(&me));
        assert!(clock_ticks_per_second() > 0);
    }
}
