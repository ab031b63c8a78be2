//! How many downstream connections the process's file-descriptor limit can carry.
//!
//! Every downstream connection is a descriptor, and while it is proxied it usually holds a
//! second one upstream (a TCP tunnel always does, an HTTP/1.1 request in flight does).
//! What is left once the process's own descriptors are set aside is therefore split in
//! two: half for downstream connections, half for their upstream connections:
//!
//! ```text
//! reserved = 64 (stdio, config and certificate files, inotify, logs, the main runtime)
//!          + 16 (admin connections: the admin port answers at the cap)
//!          + 4 × workers (each runtime's epoll, wake-up and timer descriptors)
//!          + 2 × listening sockets (one per listener and worker, plus the duplicate
//!            kept for handing it to a new binary on upgrade)
//! cap      = (RLIMIT_NOFILE soft − reserved) / 2
//! ```
//!
//! With two workers and one listener: 466 connections at the common 1024, 9 954 at
//! 20 000, ~524 000 at 1 048 576. The limit is read once, at start; `meshproxy run` first raises the soft
//! limit to the hard one (see [`raise_soft_limit`]). A `maxDownstreamConnections` above
//! the derived cap is lowered to it with a warning rather than refused: the config is
//! validated anywhere (`meshproxy validate`), the descriptor limit is only known to the
//! process that runs it.

use std::io;

/// Descriptors set aside for what is not a proxied connection: stdio, the config and
/// certificate files being read, inotify, the access log, the main runtime.
pub const BASE_RESERVE: u64 = 64;

/// Admin connections that must still be possible at the connection cap: Envoy exempts
/// its admin listener from the global limit the same way (`ignore_global_conn_limit`,
/// envoyproxy.io "Listener" API docs).
pub const ADMIN_RESERVE: u64 = 16;

/// Per worker runtime: its epoll, wake-up and timer descriptors (with margin).
pub const PER_WORKER: u64 = 4;

/// The largest cap derived (the largest `maxDownstreamConnections` accepted).
pub const MAX_CAP: u64 = 10_000_000;

/// What the cap is derived from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The soft `RLIMIT_NOFILE` in force (`u64::MAX` when unlimited).
    pub nofile: u64,
    /// Worker runtimes.
    pub workers: usize,
    /// Listening sockets (listeners × workers).
    pub listener_sockets: usize,
}

impl Budget {
    /// Descriptors kept for everything but proxied connections.
    pub fn reserved(&self) -> u64 {
        BASE_RESERVE
            + ADMIN_RESERVE
            + PER_WORKER * self.workers as u64
            // Each socket is held twice: the worker's, and the duplicate kept for a
            // binary upgrade's hand-over.
            + 2 * self.listener_sockets as u64
    }

    /// Downstream connections the limit allows: half of what is not reserved (the other
    /// half for their upstream connections), at least 1, at most [`MAX_CAP`].
    pub fn cap(&self) -> u32 {
        let left = self.nofile.saturating_sub(self.reserved());
        (left / 2).clamp(1, MAX_CAP) as u32
    }
}

/// The cap in force and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    /// Open downstream connections allowed in the whole process.
    pub value: u32,
    /// The configured value, when it was above what the descriptors allow and lowered.
    pub lowered_from: Option<u32>,
}

/// `maxDownstreamConnections` (`configured`) under the cap the descriptors allow
/// (`derived`): unset takes the derived cap, a larger one is lowered to it.
pub fn effective(derived: u32, configured: Option<u32>) -> Cap {
    match configured {
        None => Cap {
            value: derived,
            lowered_from: None,
        },
        Some(c) if c > derived => Cap {
            value: derived,
            lowered_from: Some(c),
        },
        Some(c) => Cap {
            value: c,
            lowered_from: None,
        },
    }
}

/// Connections past this many make idle ones close, oldest idle first (90 % of the cap:
/// the last 10 % absorb a burst while idle connections are being closed).
pub fn pressure_at(cap: u32) -> u32 {
    cap - cap / 10
}

/// The soft `RLIMIT_NOFILE` (`u64::MAX` when unlimited), `None` when it cannot be read.
pub fn soft_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource};
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// The soft limit before and after [`raise_soft_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raised {
    /// Soft limit found.
    pub before: u64,
    /// Soft limit in force now (the hard limit, unless raising failed).
    pub after: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as Go's runtime does at start and
/// nginx's `worker_rlimit_nofile` is used to: the soft limit (often 1024) exists for
/// programs that still use `select(2)`, which this one does not (epoll), while the hard
/// limit is what the administrator granted. Only a process whose hard limit is lowered
/// keeps a lower cap.
pub fn raise_soft_limit() -> io::Result<Raised> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft >= hard {
        return Ok(Raised {
            before: soft,
            after: soft,
        });
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    Ok(Raised {
        before: soft,
        after: hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(nofile: u64, workers: usize, listener_sockets: usize) -> Budget {
        Budget {
            nofile,
            workers,
            listener_sockets,
        }
    }

    #[test]
    fn the_cap_leaves_room_for_upstreams_and_the_process() {
        // 256 − (64 + 16 + 4 + 2) = 170, half of it downstream.
        assert_eq!(budget(256, 1, 1).cap(), 85);
        assert_eq!(budget(1024, 2, 4).cap(), (1024 - 64 - 16 - 8 - 8) / 2);
        assert_eq!(budget(20_000, 2, 2).cap(), 9_954);
        // What the cap allows, with one upstream each, fits in the limit with the reserve.
        for (n, w, l) in [(256, 1, 1), (1024, 4, 8), (65_536, 8, 24)] {
            let b = budget(n, w, l);
            assert!(2 * u64::from(b.cap()) + b.reserved() <= n, "{b:?}");
        }
    }

    #[test]
    fn a_tiny_or_unlimited_limit_still_gives_a_usable_cap() {
        assert_eq!(budget(10, 1, 1).cap(), 1);
        assert_eq!(budget(u64::MAX, 1, 1).cap(), MAX_CAP as u32);
    }

    #[test]
    fn a_configured_cap_above_the_derived_one_is_lowered() {
        assert_eq!(
            effective(85, None),
            Cap {
                value: 85,
                lowered_from: None
            }
        );
        assert_eq!(
            effective(85, Some(50)),
            Cap {
                value: 50,
                lowered_from: None
            }
        );
        assert_eq!(
            effective(85, Some(100_000)),
            Cap {
                value: 85,
                lowered_from: Some(100_000)
            }
        );
    }

    #[test]
    fn pressure_starts_at_ninety_percent() {
        assert_eq!(pressure_at(85), 77);
        assert_eq!(pressure_at(10_000), 9_000);
        assert_eq!(pressure_at(1), 1);
        assert_eq!(pressure_at(9), 9);
    }

    #[test]
    fn the_soft_limit_is_readable() {
        assert!(soft_limit().is_some_and(|n| n > 0));
    }
}
