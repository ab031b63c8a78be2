//! An upgrade the upstream accepted (101, or 200 to an HTTP/2 extended CONNECT): the
//! response that switches protocols downstream and the tunnel between the two sockets.

use super::exchange::Exchange;
use super::forward;
use super::upgrade;
use crate::body::ResponseBody;
use crate::flags::Flags;
use crate::upstream::cluster_state::ActiveRequest;
use crate::upstream::limits::RequestSlot;
use http::header::HeaderValue;
use http::Response;
use hyper::body::Incoming;

/// An upgrade the upstream accepted: the downstream upgrade, the upstream's, and the
/// protocol switched to.
pub(super) struct Switch {
    downstream: upgrade::Requested,
    upstream: hyper::upgrade::OnUpgrade,
    protocol: HeaderValue,
}

/// If the request asked for an upgrade and the upstream agreed (101), takes what the
/// tunnel needs. Any other status is relayed as an ordinary response (Envoy), and the
/// downstream upgrade is dropped, so the client connection carries on as HTTP/1.1.
pub(super) fn take_switch(ctx: &mut Exchange, response: &mut Response<Incoming>) -> Option<Switch> {
    let downstream = ctx.upgrade.take()?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return None;
    }
    let protocol = downstream.switched_to(response.headers());
    Some(Switch {
        downstream,
        upstream: hyper::upgrade::on(response),
        protocol,
    })
}

/// Answers 101 downstream with the upstream's headers (hop-by-hop ones stripped and
/// header operations applied by the caller; `Connection: upgrade` and `Upgrade` put back)
/// and starts the tunnel, which holds the dedicated connection, the endpoint's active
/// request and the cluster's request slot until it ends, then writes the one log record.
pub(super) fn start(
    ctx: &mut Exchange,
    mut parts: http::response::Parts,
    switch: Switch,
    (lease, active): (forward::Lease, ActiveRequest),
    flags: Flags,
    request_slot: Option<RequestSlot>,
) -> Response<ResponseBody> {
    let status = if switch.downstream.h2 {
        // RFC 8441: an extended CONNECT succeeds with a 2xx; the stream is the tunnel.
        parts.status = http::StatusCode::OK;
        parts.headers.remove(&upgrade::SEC_WEBSOCKET_ACCEPT);
        200
    } else {
        upgrade::mark(&mut parts.headers, switch.protocol);
        101
    };
    let mut done = ctx.done(status, flags);
    done.active = Some(active);
    done.request_slot = request_slot;
    upgrade::spawn(upgrade::Tunnel {
        downstream: switch.downstream,
        upstream: switch.upstream,
        lease,
        done,
    });
    // A 101 has no body; the record is written by the tunnel, not by this body.
    Response::from_parts(parts, ResponseBody::empty())
}
