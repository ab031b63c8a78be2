//! Upstream connection pools on hyper's client connection API: HTTP/1.1 keep-alive
//! connections and multiplexed HTTP/2 connections, per endpoint.
//!
//! Each worker thread has its own slot, so a request normally reuses a connection whose
//! I/O task runs on the same thread (no cross-core wake-ups); slots are only locked by
//! their own worker except when a cluster is at its connection cap, where any idle
//! connection of the endpoint may be borrowed and idle connections of other endpoints are
//! closed to make room (no request waits forever behind an idle connection).

use crate::body::RequestBody;
use crate::worker::worker_id;
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

/// An HTTP/2 connection being opened, and the requests waiting to share it.
struct Connecting {
    ticket: u64,
    waiters: Vec<tokio::sync::oneshot::Sender<Option<H2Lease>>>,
    /// Streams it can still take besides the opener's.
    room: u32,
}

#[derive(Default)]
struct Slot {
    idle: Vec<IdleH1>,
    h2: Vec<H2Conn>,
    connecting: Vec<Connecting>,
    next_ticket: u64,
}

/// How to get an HTTP/2 stream.
pub enum H2Checkout {
    /// A stream on an open connection.
    Ready(H2Lease),
    /// Wait for a connection another request is opening (`None`: it failed).
    Wait(tokio::sync::oneshot::Receiver<Option<H2Lease>>),
    /// Open a connection; report it with [`EndpointPool::h2_opened`] or
    /// [`EndpointPool::h2_failed`] using this ticket.
    Open(u64),
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

    /// A stream on an open connection with room; else a place on a connection being
    /// opened; else a ticket to open one. Requests arriving together share one new
    /// connection instead of each opening their own.
    pub fn h2_checkout(&self, r: Reuse) -> H2Checkout {
        let mut slot = self.lock(worker_id());
        slot.h2
            .retain(|c| !c.sender.is_closed() && !too_old(c.created, r.max_duration));
        if let Some(c) = slot
            .h2
            .iter()
            .find(|c| c.streams.load(Ordering::Relaxed) < r.max_streams)
        {
            c.streams.fetch_add(1, Ordering::Relaxed);
            return H2Checkout::Ready(H2Lease {
                sender: c.sender.clone(),
                streams: c.streams.clone(),
            });
        }
        if let Some(c) = slot.connecting.iter_mut().find(|c| c.room > 0) {
            c.room -= 1;
            let (tx, rx) = tokio::sync::oneshot::channel();
            c.waiters.push(tx);
            return H2Checkout::Wait(rx);
        }
        slot.next_ticket += 1;
        let ticket = slot.next_ticket;
        slot.connecting.push(Connecting {
            ticket,
            waiters: Vec::new(),
            room: r.max_streams.saturating_sub(1),
        });
        H2Checkout::Open(ticket)
    }

    /// The connection of `ticket` is open: streams for the opener and its waiters.
    pub fn h2_opened(&self, ticket: u64, sender: H2Sender) -> H2Lease {
        let mut slot = self.lock(worker_id());
        let waiters = match slot.connecting.iter().position(|c| c.ticket == ticket) {
            Some(i) => slot.connecting.swap_remove(i).waiters,
            None => Vec::new(),
        };
        let streams = Arc::new(AtomicU32::new(1 + waiters.len() as u32));
        slot.h2.push(H2Conn {
            sender: sender.clone(),
            created: Instant::now(),
            streams: streams.clone(),
        });
        drop(slot);
        for w in waiters {
            let lease = H2Lease {
                sender: sender.clone(),
                streams: streams.clone(),
            };
            // A waiter that went away drops its lease, which gives the stream back.
            let _ = w.send(Some(lease));
        }
        H2Lease { sender, streams }
    }

    /// The connection of `ticket` could not be opened: its waiters fail too.
    pub fn h2_failed(&self, ticket: u64) {
        let mut slot = self.lock(worker_id());
        if let Some(i) = slot.connecting.iter().position(|c| c.ticket == ticket) {
            for w in slot.connecting.swap_remove(i).waiters {
                let _ = w.send(None);
            }
        }
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
