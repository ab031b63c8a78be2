//! The global downstream connection cap: open connections across every listener and
//! worker (the descriptors are the process's), counted with one atomic per accept.
//!
//! Envoy's overload manager has the same two rules, which this follows (envoyproxy.io,
//! "Overload manager"):
//!
//! - `envoy.resource_monitors.downstream_connections` (`max_active_downstream_connections`):
//!   at the cap a new connection is accepted and closed at once and counted (Envoy's
//!   listener stat `downstream_global_cx_overflow`). Closing at once tells the client to
//!   retry elsewhere now; leaving it in the backlog would let it wait for a connect or
//!   read timeout while the proxy is full.
//! - `envoy.overload_actions.reduce_timeouts` (`HTTP_DOWNSTREAM_CONNECTION_IDLE`): under
//!   pressure idle connections are closed sooner. Here, past 90 % of the cap
//!   ([`fd_budget::pressure_at`]) the idle HTTP connections (no request in flight, for at
//!   least [`super::evict::MIN_IDLE`]) are closed, oldest idle first, down to 90 %
//!   ([`super::evict`]), so new clients are served instead of refused while silent
//!   connections hold the descriptors.
//!
//! The cap is `maxDownstreamConnections`, or when unset what the file-descriptor limit
//! allows ([`fd_budget`]); the admin port is outside it. The per-listener cap
//! (`maxConnectionsPerListener`, [`super::limits::ListenerConns`]) still applies first.

use super::fd_budget::{self, Budget};
use meshproxy_config::compile::proxy_settings::Limits;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Why an idle connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleClose {
    /// `idleTimeout` passed with no request in flight.
    Timeout,
    /// Closed to make room near the connection cap.
    Overload,
}

/// Open downstream connections, the cap and what it refused.
pub struct Downstream {
    open: AtomicUsize,
    /// Connections told to close for overload that have not closed yet.
    closing: AtomicUsize,
    cap: AtomicU32,
    /// The soft `RLIMIT_NOFILE` read at start (`None`: unreadable, no derived cap).
    nofile: Option<u64>,
    idle_closed_timeout: AtomicU64,
    idle_closed_overload: AtomicU64,
    accept_errors: AtomicU64,
    /// Refusals by listener name: a listener's counter outlives reloads that keep or
    /// re-add it. Locked only when a listener starts and at scrape time.
    refused: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    /// Wakes the workers' idle closers ([`super::evict::closer`]); touched only past
    /// the pressure point.
    pub(crate) pressure: Notify,
}

/// One open downstream connection, counted until dropped.
pub struct Slot(Arc<Downstream>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Downstream {
    /// A count with no cap yet ([`Downstream::apply`] sets it) for a process whose soft
    /// descriptor limit is `nofile`.
    pub fn new(nofile: Option<u64>) -> Self {
        Downstream {
            open: AtomicUsize::new(0),
            closing: AtomicUsize::new(0),
            cap: AtomicU32::new(u32::MAX),
            nofile,
            idle_closed_timeout: AtomicU64::new(0),
            idle_closed_overload: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            refused: Mutex::new(BTreeMap::new()),
            pressure: Notify::new(),
        }
    }

    /// Puts in force the cap for `limits` with `workers` workers serving
    /// `listener_sockets` sockets (at start and on every config change).
    pub fn apply(&self, limits: &Limits, workers: usize, listener_sockets: usize) {
        let derived = match self.nofile {
            Some(nofile) => Budget {
                nofile,
                workers,
                listener_sockets,
            }
            .cap(),
            None => fd_budget::MAX_CAP as u32,
        };
        let cap = fd_budget::effective(derived, limits.max_downstream_connections);
        if let Some(configured) = cap.lowered_from {
            tracing::warn!(
                configured,
                cap = cap.value,
                nofile = self.nofile,
                "spec.limits.maxDownstreamConnections is more than the file-descriptor limit allows: lowered"
            );
        }
        if self.cap.swap(cap.value, Ordering::AcqRel) != cap.value {
            tracing::info!(
                cap = cap.value,
                nofile = self.nofile,
                pressure_at = fd_budget::pressure_at(cap.value),
                "downstream connection cap"
            );
        }
    }

    /// Counts a connection just accepted: `None` at the cap (the caller closes it).
    /// Past the pressure point the workers are told to close idle connections.
    pub fn try_open(self: &Arc<Self>) -> Option<Slot> {
        let cap = self.cap.load(Ordering::Relaxed);
        let n = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        if n > cap as usize {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        if n > fd_budget::pressure_at(cap) as usize {
            self.pressure.notify_waiters();
        }
        Some(Slot(self.clone()))
    }

    /// Counts a connection regardless of the cap (one a stopping listener had already
    /// completed in the kernel, served while draining).
    pub fn force(self: &Arc<Self>) -> Slot {
        self.open.fetch_add(1, Ordering::AcqRel);
        Slot(self.clone())
    }

    /// Idle connections to close now: open ones past the pressure point that are not
    /// already closing.
    pub fn excess(&self) -> usize {
        let at = fd_budget::pressure_at(self.cap.load(Ordering::Relaxed)) as usize;
        let busy = self
            .open
            .load(Ordering::Acquire)
            .saturating_sub(self.closing.load(Ordering::Acquire));
        busy.saturating_sub(at)
    }

    /// Takes one unit of [`Downstream::excess`] for a connection about to be told to
    /// close (several workers may close at once: none closes more than the excess).
    pub fn claim_close(&self) -> bool {
        let at = fd_budget::pressure_at(self.cap.load(Ordering::Relaxed)) as usize;
        self.closing
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (self.open.load(Ordering::Acquire).saturating_sub(c) > at).then_some(c + 1)
            })
            .is_ok()
    }

    /// A connection told to close by [`Downstream::claim_close`] has ended.
    pub fn closed_claimed(&self) {
        self.closing.fetch_sub(1, Ordering::AcqRel);
    }

    /// The refusal counter of listener `name` (once per accept loop).
    pub fn refused_counter(&self, name: &str) -> Arc<AtomicU64> {
        let mut m = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(name.to_string()).or_default().clone()
    }

    /// Counts an idle connection closed.
    pub fn idle_closed(&self, why: IdleClose) {
        let c = match why {
            IdleClose::Timeout => &self.idle_closed_timeout,
            IdleClose::Overload => &self.idle_closed_overload,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed `accept` (descriptors exhausted and the like).
    pub fn accept_failed(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot for the metrics.
    pub fn stats(&self) -> Stats {
        let refused = self
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
            .collect();
        Stats {
            open: self.open.load(Ordering::Relaxed) as u64,
            cap: u64::from(self.cap.load(Ordering::Relaxed)),
            nofile: self.nofile,
            idle_closed_timeout: self.idle_closed_timeout.load(Ordering::Relaxed),
            idle_closed_overload: self.idle_closed_overload.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
            refused,
        }
    }
}

/// [`Downstream`]'s counters at one moment.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Connections counted against the cap.
    pub open: u64,
    /// The cap in force.
    pub cap: u64,
    /// The soft descriptor limit read at start.
    pub nofile: Option<u64>,
    /// Idle connections closed by `idleTimeout`.
    pub idle_closed_timeout: u64,
    /// Idle connections closed near the cap.
    pub idle_closed_overload: u64,
    /// Failed accepts.
    pub accept_errors: u64,
    /// Connections refused at the cap, by listener.
    pub refused: Vec<(String, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cap(cap: u32) -> Arc<Downstream> {
        let d = Arc::new(Downstream::new(Some(1 << 20)));
        let limits = Limits {
            max_downstream_connections: Some(cap),
            ..Limits::default()
        };
        d.apply(&limits, 1, 1);
        d
    }

    #[test]
    fn the_cap_refuses_and_a_closed_slot_makes_room() {
        let d = with_cap(3);
        let slots: Vec<_> = (0..3)
            .map(|_| d.try_open().expect("under the cap"))
            .collect();
        assert!(d.try_open().is_none());
        assert_eq!(d.stats().open, 3);
        drop(slots);
        assert_eq!(d.stats().open, 0);
        assert!(d.try_open().is_some());
    }

    #[test]
    fn the_excess_is_claimed_once() {
        // Cap 20: pressure past 18.
        let d = with_cap(20);
        let _slots: Vec<_> = (0..20)
            .map(|_| d.try_open().expect("under the cap"))
            .collect();
        assert_eq!(d.excess(), 2);
        assert!(d.claim_close());
        assert!(d.claim_close());
        assert!(!d.claim_close(), "closes past the excess");
        assert_eq!(d.excess(), 0);
        d.closed_claimed();
        assert_eq!(d.excess(), 1, "the slot is still open");
    }

    #[test]
    fn a_configured_cap_above_the_descriptors_is_lowered() {
        let d = Downstream::new(Some(256));
        let limits = Limits {
            max_downstream_connections: Some(100_000),
            ..Limits::default()
        };
        d.apply(&limits, 1, 1);
        assert_eq!(d.stats().cap, 85);
        d.apply(&Limits::default(), 1, 1);
        assert_eq!(d.stats().cap, 85);
    }

    #[test]
    fn refusal_counters_are_kept_by_listener_name() {
        let d = with_cap(1);
        d.refused_counter("b").fetch_add(2, Ordering::Relaxed);
        d.refused_counter("a").fetch_add(1, Ordering::Relaxed);
        d.refused_counter("b").fetch_add(1, Ordering::Relaxed);
        assert_eq!(
            d.stats().refused,
            vec![("a".to_string(), 1), ("b".to_string(), 3)]
        );
    }
}
