//! What happens when a request is over: the upstream connection goes back to its pool
//! (only if the response was read to its end), the endpoint's active count drops, and the
//! access log line is written with the final byte counts, duration and flags.

use super::body::{BodyError, BodyTap, Completion};
use super::flags::Flags;
use super::forward::Lease;
use crate::access_log::Record;
use crate::server::Shared;
use crate::upstream::cluster_state::{ActiveRequest, ClusterState};
use crate::upstream::limits::RequestSlot;
use std::sync::Arc;
use std::time::Instant;

/// The connection of a response, given back when its body ends.
pub struct Returnable {
    /// The cluster that owns it.
    pub cluster: Arc<ClusterState>,
    /// Endpoint index.
    pub index: usize,
    /// The connection (an HTTP/1.1 connection is parked; an HTTP/2 stream is released).
    pub lease: Lease,
}

/// The completion of one request.
pub struct RequestDone {
    /// Shared state (access log).
    pub shared: Arc<Shared>,
    /// The access log record (`None` when the access log is off).
    pub record: Option<Record>,
    /// When the request started.
    pub started: Instant,
    /// The request body, for the received byte count.
    pub tap: Option<BodyTap>,
    /// Connection to give back.
    pub returnable: Option<Returnable>,
    /// Active-request accounting of the endpoint.
    pub active: Option<ActiveRequest>,
    /// The cluster's in-flight request slot (`http2MaxRequests`).
    pub request_slot: Option<RequestSlot>,
}

impl Completion for RequestDone {
    fn complete(self: Box<Self>, bytes_sent: u64, ended: bool, error: Option<&BodyError>) {
        let this = *self;
        if let Some(r) = this.returnable {
            // Only a connection whose response was read to its end can carry another one.
            if let (true, Lease::H1(lease)) = (ended, r.lease) {
                r.cluster.park(r.index, lease);
            }
        }
        drop(this.active);
        drop(this.request_slot);
        if let Some(mut rec) = this.record {
            rec.bytes_sent = bytes_sent;
            rec.bytes_received = this.tap.as_ref().map(BodyTap::received).unwrap_or(0);
            rec.duration = this.started.elapsed();
            match error {
                Some(BodyError::Timeout) => rec.flags.insert(Flags::UPSTREAM_REQUEST_TIMEOUT),
                Some(BodyError::Upstream(_)) => {
                    rec.flags.insert(Flags::UPSTREAM_CONNECTION_TERMINATION)
                }
                Some(_) => {}
                None if !ended => rec.flags.insert(Flags::DOWNSTREAM_CONNECTION_TERMINATION),
                None => {}
            }
            this.shared.access_log.log(&rec);
        }
    }
}
