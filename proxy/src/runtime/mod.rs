//! What the data path reads while it serves, below the HTTP and TCP paths and the
//! server that accepts connections: the config in force with its live cluster state
//! ([`active::Active`]), where records go (access log, Istio metrics), and the count of
//! live connections a drain waits for ([`Live`]).

pub mod active;

use crate::access_log::AccessLog;
use active::Active;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The part of the proxy's state every request reads.
pub struct DataPath {
    /// The config in force and its live cluster state.
    pub active: ArcSwap<Active>,
    /// Access log sink.
    pub access_log: AccessLog,
    /// Istio's request and TCP metrics.
    pub metrics: crate::telemetry::istio::Metrics,
    /// Open downstream connections (a drain waits for them).
    pub connections: AtomicU64,
    /// Where finished spans go.
    pub tracer: crate::trace::Tracer,
}

impl DataPath {
    /// The data path's state for a first config, with no connection yet.
    pub fn new(
        active: Active,
        access_log: AccessLog,
        metrics: crate::telemetry::istio::Metrics,
    ) -> Self {
        DataPath {
            active: ArcSwap::from_pointee(active),
            access_log,
            metrics,
            connections: AtomicU64::new(0),
            tracer: crate::trace::Tracer::default(),
        }
    }
}

/// Counts a live downstream connection (a drain waits for the count to reach zero).
pub struct Live(Arc<DataPath>);

impl Live {
    /// Counts one more connection until dropped.
    pub fn new(data: &Arc<DataPath>) -> Self {
        data.connections.fetch_add(1, Ordering::AcqRel);
        Live(data.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
