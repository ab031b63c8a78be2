//! A cluster's circuit breakers (`connectionPool`): exact caps shared by every worker.
//!
//! - connections: a fair semaphore; each open (or opening) connection holds a permit until
//!   it closes, so `maxConnections` is never exceeded (unlike Envoy, which guarantees each
//!   host a connection and overshoots);
//! - pending: requests waiting for a connection (`http1MaxPendingRequests`);
//! - requests: requests in flight (`http2MaxRequests`);
//! - retries: retries in flight (`maxRetries`).
//!
//! Overflow of any of them is an immediate local 503 with flag `UO`, counted per limit.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Which limit overflowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `tcp.maxConnections` (only counted; a request then waits as pending).
    Connections,
    /// `http.http1MaxPendingRequests`.
    Pending,
    /// `http.http2MaxRequests`.
    Requests,
    /// `http.maxRetries`.
    Retries,
}

impl Limit {
    /// Label value for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Limit::Connections => "max_connections",
            Limit::Pending => "max_pending_requests",
            Limit::Requests => "max_requests",
            Limit::Retries => "max_retries",
        }
    }
}

/// The counters and caps of one cluster.
pub struct Limits {
    /// Connection permits.
    pub connections: Arc<Semaphore>,
    max_connections: u32,
    max_pending: u32,
    max_requests: u32,
    max_retries: u32,
    pending: AtomicU32,
    requests: AtomicU32,
    retries: AtomicU32,
    overflows: [AtomicU64; 4],
}

/// Decrements a counter on drop.
pub struct Slot<'a>(&'a AtomicU32);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An owned in-flight request slot (moved into the response body's completion).
pub struct RequestSlot(pub Arc<super::cluster_state::ClusterState>);

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.0.limits.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

fn take(counter: &AtomicU32, max: u32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| {
            (c < max).then_some(c + 1)
        })
        .is_ok()
}

impl Limits {
    /// Limits from the cluster's resolved pool settings.
    pub fn new(
        max_connections: u32,
        max_pending: u32,
        max_requests: u32,
        max_retries: u32,
    ) -> Self {
        let permits = (max_connections as usize).min(Semaphore::MAX_PERMITS);
        Limits {
            connections: Arc::new(Semaphore::new(permits)),
            max_connections,
            max_pending,
            max_requests,
            max_retries,
            pending: AtomicU32::new(0),
            requests: AtomicU32::new(0),
            retries: AtomicU32::new(0),
            overflows: Default::default(),
        }
    }

    /// Counts an overflow.
    pub fn overflowed(&self, l: Limit) {
        self.overflows[l as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Overflows counted for `l`.
    pub fn overflows(&self, l: Limit) -> u64 {
        self.overflows[l as usize].load(Ordering::Relaxed)
    }

    /// A connection permit if one is free now.
    pub fn try_connection(&self) -> Option<OwnedSemaphorePermit> {
        self.connections.clone().try_acquire_owned().ok()
    }

    /// Open (or opening) connections.
    pub fn open_connections(&self) -> u32 {
        let free = self.connections.available_permits() as u64;
        (u64::from(self.max_connections).min(Semaphore::MAX_PERMITS as u64)
            - free.min(u64::from(self.max_connections))) as u32
    }

    /// Joins the pending queue, or `None` when it is full.
    pub fn enter_pending(&self) -> Option<Slot<'_>> {
        if take(&self.pending, self.max_pending) {
            Some(Slot(&self.pending))
        } else {
            self.overflowed(Limit::Pending);
            None
        }
    }

    /// Requests waiting for a connection.
    pub fn pending(&self) -> u32 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Starts a request, or `false` when `http2MaxRequests` are in flight.
    pub fn start_request(&self) -> bool {
        let ok = take(&self.requests, self.max_requests);
        if !ok {
            self.overflowed(Limit::Requests);
        }
        ok
    }

    /// Requests in flight.
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Starts a retry, or `None` when `maxRetries` are in flight.
    pub fn start_retry(&self) -> Option<Slot<'_>> {
        if take(&self.retries, self.max_retries) {
            Some(Slot(&self.retries))
        } else {
            self.overflowed(Limit::Retries);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_exact() {
        let l = Limits::new(2, 1, 3, 1);
        let a = l.try_connection().unwrap();
        let _b = l.try_connection().unwrap();
        assert!(l.try_connection().is_none());
        assert_eq!(l.open_connections(), 2);
        drop(a);
        assert!(l.try_connection().is_some());

        let p = l.enter_pending().unwrap();
        assert!(l.enter_pending().is_none());
        assert_eq!(l.overflows(Limit::Pending), 1);
        drop(p);
        assert!(l.enter_pending().is_some());

        assert!(l.start_request() && l.start_request() && l.start_request());
        assert!(!l.start_request());
        let r = l.start_retry().unwrap();
        assert!(l.start_retry().is_none());
        drop(r);
        assert!(l.start_retry().is_some());
    }

    #[test]
    fn defaults_do_not_limit() {
        let l = Limits::new(u32::MAX, u32::MAX, u32::MAX, u32::MAX);
        let permits: Vec<_> = (0..1000).map(|_| l.try_connection().unwrap()).collect();
        assert_eq!(permits.len(), 1000);
    }
}
