//! Upstream connection pools on hyper's client connection API: HTTP/1.1 keep-alive
//! connections and one multiplexed HTTP/2 connection per endpoint and worker.
//!
//! Each worker thread has its own slot, so a request reuses a connection whose I/O task
//! runs on the same thread (no cross-core wake-ups); slots are only locked by their own
//! worker, so the locks are uncontended.

use crate::http::body::RequestBody;
use crate::server::worker_id;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// HTTP/1.1 request sender.
pub type H1Sender = hyper::client::conn::http1::SendRequest<RequestBody>;
/// HTTP/2 request sender (cloneable; one per multiplexed connection).
pub type H2Sender = hyper::client::conn::http2::SendRequest<RequestBody>;

struct IdleH1 {
    sender: H1Sender,
    since: Instant,
    served: u32,
}

#[derive(Default)]
struct Slot {
    idle: Vec<IdleH1>,
    h2: Option<H2Sender>,
}

/// The pooled connections of one endpoint.
pub struct EndpointPool {
    slots: Box<[Mutex<Slot>]>,
}

/// An HTTP/1.1 connection checked out for one request.
pub struct H1Lease {
    /// The sender.
    pub sender: H1Sender,
    /// Requests already served on this connection.
    pub served: u32,
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

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        let i = worker_id() % self.slots.len();
        self.slots[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle HTTP/1.1 connection that is still open and younger than `idle_timeout`.
    /// Most recently used first: warm connections stay warm, old ones age out.
    pub fn take_h1(&self, idle_timeout: Option<Duration>) -> Option<H1Lease> {
        let mut slot = self.slot();
        while let Some(c) = slot.idle.pop() {
            if c.sender.is_closed() {
                continue;
            }
            if idle_timeout.is_some_and(|t| c.since.elapsed() >= t) {
                continue; // dropping the sender closes the connection
            }
            if c.sender.is_ready() {
                return Some(H1Lease {
                    sender: c.sender,
                    served: c.served,
                });
            }
        }
        None
    }

    /// Returns a connection after its response ended. `max_requests` is
    /// `maxRequestsPerConnection` (a connection that reached it is closed).
    pub fn put_h1(&self, lease: H1Lease, max_requests: Option<u32>) {
        if lease.sender.is_closed() || max_requests.is_some_and(|m| lease.served >= m) {
            return;
        }
        self.slot().idle.push(IdleH1 {
            sender: lease.sender,
            since: Instant::now(),
            served: lease.served,
        });
    }

    /// The worker's HTTP/2 connection, if open.
    pub fn h2(&self) -> Option<H2Sender> {
        let mut slot = self.slot();
        match &slot.h2 {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                slot.h2 = None;
                None
            }
            None => None,
        }
    }

    /// Stores the worker's new HTTP/2 connection.
    pub fn set_h2(&self, sender: H2Sender) {
        self.slot().h2 = Some(sender);
    }

    /// Closes every idle connection (an endpoint was ejected or removed).
    pub fn clear(&self) {
        for s in self.slots.iter() {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            s.idle.clear();
            s.h2 = None;
        }
    }

    /// Idle HTTP/1.1 connections (all workers).
    pub fn idle_count(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).idle.len())
            .sum()
    }
}
