//! What the connection's service tells the guard about responses, and what the guard
//! tells the service about the requests it cut.

use std::sync::Mutex;
use std::task::{Context, Waker};

/// What the connection's service tells the guard: which request each response answers
/// and whether it switched protocols.
#[derive(Debug)]
pub struct Upgrades {
    state: Mutex<Verdicts>,
    next: std::sync::atomic::AtomicU64,
    /// Why the guard refused a request head, once it did (for the access log).
    pub(super) refusal: std::sync::OnceLock<&'static str>,
    /// The index of the request whose target was cut at the limit (`u64::MAX`: none).
    target_too_long: std::sync::atomic::AtomicU64,
}

#[derive(Default, Debug)]
struct Verdicts {
    /// The latest response: its request's index and whether it switched protocols.
    last: Option<(u64, bool)>,
    /// The guard's read, waiting for a verdict.
    waker: Option<Waker>,
}

impl Default for Upgrades {
    fn default() -> Self {
        Upgrades {
            state: Mutex::default(),
            next: std::sync::atomic::AtomicU64::new(0),
            refusal: std::sync::OnceLock::new(),
            target_too_long: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }
}

impl Upgrades {
    /// Whether request `index` came with a request-target over the limit: it reaches the
    /// service cut short, to be answered `414`.
    pub fn target_too_long(&self, index: u64) -> bool {
        self.target_too_long
            .load(std::sync::atomic::Ordering::Acquire)
            == index
    }

    pub(super) fn mark_target_too_long(&self, index: u64) {
        self.target_too_long
            .store(index, std::sync::atomic::Ordering::Release);
    }

    /// The index of a new HTTP/1 request on the connection (call in the order hyper
    /// hands requests to the service).
    pub fn request(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Request `index` is answered with `status`: it switched protocols when that is
    /// `101`, or `2xx` to a `CONNECT` (hyper's rule, RFC 9110 §9.3.6, §15.2.2).
    pub fn responded(&self, index: u64, status: http::StatusCode, connect: bool) {
        let upgraded =
            status == http::StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success());
        let waker = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.last = Some((index, upgraded));
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Why the guard refused a request head on this connection, if it did.
    pub fn refusal(&self) -> Option<&'static str> {
        self.refusal.get().copied()
    }

    /// The verdict on request `index`, or `None` (and a wake-up later) when not known.
    pub(super) fn verdict(&self, index: u64, cx: &Context<'_>) -> Option<bool> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.last {
            Some((i, upgraded)) if i == index => Some(upgraded),
            _ => {
                s.waker = Some(cx.waker().clone());
                None
            }
        }
    }
}
