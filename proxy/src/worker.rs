//! Which data-plane worker thread is running: per-worker state (connection pools, metric
//! handle caches) is indexed by it, so the hot path takes no lock shared across cores.

use std::cell::Cell;

thread_local! {
    /// Set by the worker thread at its start.
    static WORKER_ID: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running on this thread (0 elsewhere).
pub fn worker_id() -> usize {
    WORKER_ID.with(|w| w.get())
}

/// Records that this thread is worker `id` (called once, when the worker starts).
pub fn set_worker_id(id: usize) {
    WORKER_ID.with(|w| w.set(id));
}
