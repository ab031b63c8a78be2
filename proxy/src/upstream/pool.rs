//! Upstream connection pools on hyper's client connection API: HTTP/1.1 keep-alive
//! connections and multiplexed HTTP/2 connections, per endpoint.
//!
//! Each worker thread has its own slot, so a request normally reuses a connection whose
//! I/O task runs on the same thread (no cross-core wake-ups); slots are only locked by
//! their own worker except when a cluster is at its connection cap, where any idle
//! connection of the endpoint may be borrowed and idle connections of other endpoints are
//! closed to make room (no request waits forever behind an idle connection).

use crate::http::body::RequestBody;
use crate::server::worker_id;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// HTTP/1.1 request sender.
pub type H1Sender = hyper::client::conn::http1::SendRequest<RequestBody>;
/// HTTP/2 request sender (cloneable; one per multiplexed connection).
pub type H2Sender = hyper::client::conn::http2::SendRequest<RequestBody>;

/// An HTTP/1.1 connection checked out for one request.
pub struct H1Lease {
    /// The sender.
    pub sender: H1Sender,
    /// Requests already served on this connection (including the current one once sent).
    pub served: u32,
    /// When the connection was opened.
    pub created: Instant,
}

struct IdleH1 {
    lease: H1Lease,
    since: Instant,
}

struct H2Conn {
    sender: H2Sender,
    created: Instant,
    streams: Arc<AtomicU32>,
}

/// A stream on an HTTP/2 connection; the connection's stream count drops with it.
pub struct H2Lease {
    /// The sender.
    pub sender: H2Sender,
    streams: Arc<AtomicU32>,
}

impl Drop for H2Lease {
    fn drop(&mut self) {
        self.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Slot {
    idle: Vec<IdleH1>,
    h2: Vec<H2Conn>,
}

/// Age and reuse limits applied at checkout.
#[derive(Clone, Copy, Debug)]
pub struct Reuse {
    /// `http.idleTimeout`.
    pub idle_timeout: Option<Duration>,
    /// `tcp.maxConnectionDuration`.
    pub max_duration: Option<Duration>,
    /// `http.maxConcurrentStreams`.
    pub max_streams: u32,
}

/// The pooled connections of one endpoint.
pub struct EndpointPool {
    slots: Box<[Mutex<Slot>]>,
}

fn too_old(created: Instant, max: Option<Duration>) -> bool {
    max.is_some_and(|m| created.elapsed() >= m)
}

impl EndpointPool {
    /// A pool with one slot per worker.
    pub fn new(workers: usize) -> Self {
        EndpointPool {
            slots: (0..workers.max(1))
                .map(|_| Mutex::new(Slot::default()))
                .collect(),
        }
    }

    fn lock(&self, i: usize) -> std::sync::MutexGuard<'_, Slot> {
        self.slots[i % self.slots.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn take_from(&self, i: usize, r: Reuse) -> Option<H1Lease> {
        let mut slot = self.lock(i);
        // Most recently used first: warm connections stay warm, old ones age out.
        while let Some(c) = slot.idle.pop() {
            if c.lease.sender.is_closed()
                || r.idle_timeout.is_some_and(|t| c.since.elapsed() >= t)
                || too_old(c.lease.created, r.max_duration)
            {
                continue; // dropping the sender closes the connection
            }
            if c.lease.sender.is_ready() {
                return Some(c.lease);
            }
        }
        None
    }

    /// An idle HTTP/1.1 connection of this worker.
    pub fn take_h1(&self, r: Reuse) -> Option<H1Lease> {
        self.take_from(worker_id(), r)
    }

    /// An idle HTTP/1.1 connection of any worker (used at the connection cap).
    pub fn take_h1_any(&self, r: Reuse) -> Option<H1Lease> {
        (0..self.slots.len()).find_map(|i| self.take_from(i, r))
    }

    /// Parks a connection after its response ended.
    pub fn put_h1(&self, lease: H1Lease) {
        if lease.sender.is_closed() {
            return;
        }
        self.lock(worker_id()).idle.push(IdleH1 {
            lease,
            since: Instant::now(),
        });
    }

    /// A stream on one of this worker's HTTP/2 connections with room for it.
    pub fn h2(&self, r: Reuse) -> Option<H2Lease> {
        let mut slot = self.lock(worker_id());
        slot.h2
            .retain(|c| !c.sender.is_closed() && !too_old(c.created, r.max_duration));
        let c = slot
            .h2
            .iter()
            .find(|c| c.streams.load(Ordering::Relaxed) < r.max_streams)?;
        c.streams.fetch_add(1, Ordering::Relaxed);
        Some(H2Lease {
            sender: c.sender.clone(),
            streams: c.streams.clone(),
        })
    }

    /// Adds a new HTTP/2 connection and returns a stream on it.
    pub fn add_h2(&self, sender: H2Sender) -> H2Lease {
        let streams = Arc::new(AtomicU32::new(1));
        self.lock(worker_id()).h2.push(H2Conn {
            sender: sender.clone(),
            created: Instant::now(),
            streams: streams.clone(),
        });
        H2Lease { sender, streams }
    }

    /// Closes one idle HTTP/1.1 connection (any worker); true if there was one.
    pub fn evict_one(&self) -> bool {
        for i in 0..self.slots.len() {
            if self.lock(i).idle.pop().is_some() {
                return true;
            }
        }
        false
    }

    /// Closes every idle connection and forgets the HTTP/2 ones (an endpoint was ejected
    /// or removed); requests in flight finish on their connections.
    pub fn clear(&self) {
        for i in 0..self.slots.len() {
            let mut s = self.lock(i);
            s.idle.clear();
            s.h2.clear();
        }
    }

    /// Closes idle connections past `idle_timeout` or `max_duration` (the periodic sweep).
    pub fn sweep(&self, r: Reuse) {
        let mut s = self.lock(worker_id());
        s.idle.retain(|c| {
            !c.lease.sender.is_closed()
                && r.idle_timeout.is_none_or(|t| c.since.elapsed() < t)
                && !too_old(c.lease.created, r.max_duration)
        });
        s.h2.retain(|c| !c.sender.is_closed() && !too_old(c.created, r.max_duration));
    }

    /// Idle HTTP/1.1 connections (all workers).
    pub fn idle_count(&self) -> usize {
        (0..self.slots.len()).map(|i| self.lock(i).idle.len()).sum()
    }
}
