//! What happens when a request is over: the upstream connection goes back to its pool
//! (only if the response was read to its end), the endpoint's active count drops, and the
//! access log line is written with the final byte counts, duration and flags.

use super::forward::Lease;
use crate::access_log::Record;
use crate::body::{BodyError, BodyTap, Completion};
use crate::flags::Flags;
use crate::runtime::DataPath;
use crate::telemetry::istio::{Finished, RequestLabels};
use crate::telemetry::log_filter;
use crate::upstream::cluster_state::{ActiveRequest, ClusterState};
use crate::upstream::limits::RequestSlot;
use std::sync::Arc;
use std::time::Instant;

/// The connection of a response, given back when its body ends.
pub struct Returnable {
    /// The cluster that owns it.
    pub cluster: Arc<ClusterState>,
    /// The endpoint.
    pub endpoint: Arc<crate::upstream::cluster_state::EndpointState>,
    /// The connection (an HTTP/1.1 connection is parked; an HTTP/2 stream is released).
    pub lease: Lease,
}

/// The completion of one request.
pub struct RequestDone {
    /// Shared state (access log).
    pub shared: Arc<DataPath>,
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
    /// Response status (0 if none).
    pub status: u16,
    /// Response flags.
    pub flags: Flags,
    /// `grpc-status` of a trailers-only response.
    pub grpc_status: Option<u32>,
    /// Istio metric labels (`None`: not recorded).
    pub labels: Option<RequestLabels>,
    /// The request's span (`None`: not traced or not sampled).
    pub span: Option<Box<crate::trace::span::Span>>,
    /// Only records this CEL expression admits are logged (Telemetry).
    pub log_filter: Option<Arc<meshproxy_config::compile::telemetry::LogFilter>>,
}

/// Ends and hands over a request's span.
pub(crate) fn finish_span(
    shared: &DataPath,
    span: Option<Box<crate::trace::span::Span>>,
    (status, flags): (u16, Flags),
    (received, sent): (u64, u64),
) {
    if let Some(mut s) = span {
        s.finish(status, &flags.to_string(), received, sent);
        shared.tracer.record(s);
    }
}

impl Completion for RequestDone {
    fn complete(
        self: Box<Self>,
        bytes_sent: u64,
        ended: bool,
        error: Option<&BodyError>,
        grpc_status: Option<u32>,
    ) {
        let mut this = *self;
        // A client that failed while sending its body: whatever the upstream side then
        // reported (its connection aborted under the broken request), the fault is the
        // client's, and the connection carried half a request.
        let fault = this.tap.as_ref().and_then(BodyTap::fault);
        if let Some(r) = this.returnable.take() {
            // Only a connection whose exchange completed can carry another one.
            if let (true, None, Lease::H1(lease)) = (ended, fault, r.lease) {
                r.cluster.park(&r.endpoint, lease);
            }
        }
        drop(this.active.take());
        drop(this.request_slot.take());
        match error {
            Some(BodyError::Timeout) => this.flags.insert(Flags::UPSTREAM_REQUEST_TIMEOUT),
            Some(BodyError::StreamIdle) => this.flags.insert(Flags::STREAM_IDLE_TIMEOUT),
            Some(BodyError::Upstream(_)) => this.flags.insert(match fault {
                Some(f) => f.flags(),
                None => Flags::UPSTREAM_CONNECTION_TERMINATION,
            }),
            Some(BodyError::Downstream(f)) => this.flags.insert(f.flags()),
            Some(_) => {}
            None if !ended => this.flags.insert(Flags::DOWNSTREAM_CONNECTION_TERMINATION),
            None => {}
        }
        let received = this.tap.as_ref().map(BodyTap::received).unwrap_or(0);
        let duration = this.started.elapsed();
        if let Some(l) = &this.labels {
            let grpc = grpc_status.or(this.grpc_status);
            let finished = Finished {
                status: this.status,
                flags: this.flags,
                grpc_status: grpc,
                request_bytes: received,
                response_bytes: bytes_sent,
                duration,
            };
            this.shared.metrics.record_request(l, finished);
        }
        finish_span(
            &this.shared,
            this.span.take(),
            (this.status, this.flags),
            (received, bytes_sent),
        );
        if let Some(mut rec) = this.record.take() {
            rec.bytes_sent = bytes_sent;
            rec.bytes_received = received;
            rec.duration = duration;
            rec.flags = this.flags;
            log_filter::log(&this.shared.access_log, this.log_filter.as_deref(), &rec);
        }
    }
}
