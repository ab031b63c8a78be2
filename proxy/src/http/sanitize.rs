//! What the connection manager does to a request's headers before routing, as Envoy does
//! it under Istio: decide whether the sender is internal, take the `x-envoy-*` control
//! headers (honoured only from internal senders, removed from all), and settle the
//! request's `x-request-id` (kept, or generated; replaced on edge requests).
//!
//! Istio's settings per proxy role (docs/config.md, "Envoy's headers"): sidecars run with
//! `use_remote_address: false` — the trusted client is the rightmost `x-forwarded-for`
//! entry, and a request without one (an application's own call) is external; gateways run
//! with `use_remote_address: true` and `xff_num_trusted_hops: 0` — the trusted client is
//! the TCP peer. A request is internal when, after that, `x-forwarded-for` names exactly
//! one address and it is in `spec.internalNetworks` (Envoy's `internal_address_config`;
//! since Envoy 1.33 no address is internal by default, and neither is one here).

use super::exchange::Exchange;
use crate::policy::envoy_headers::{self, Overrides, X_ENVOY_INTERNAL};
use crate::policy::headers::{self as hdr, X_FORWARDED_FOR, X_REQUEST_ID};
use http::header::{HeaderMap, HeaderValue};
use meshproxy_config::compile::proxy_settings::ProxySettings;
use std::net::IpAddr;

/// Applies the connection manager's header rules to a request on a listener that is a
/// gateway (`use_remote_address: true`) or not.
pub(super) fn request(x: &mut Exchange, headers: &mut HeaderMap, gateway: bool) {
    let (internal, overrides) =
        control_headers(&x.active.snapshot.proxy, x.conn.peer.ip(), headers, gateway);
    x.overrides = overrides;
    // Envoy generates a request id when there is none, and replaces a client's on an edge
    // request (external, at a gateway) unless `preserve_external_request_id`, which
    // Istio leaves off: gateways regenerate client ids, sidecars keep them.
    let edge = gateway && !internal;
    let id = match headers.get(&X_REQUEST_ID) {
        Some(v) if !v.is_empty() && !edge => v.clone(),
        _ => {
            let id = hdr::request_id();
            headers.insert(X_REQUEST_ID.clone(), id.clone());
            id
        }
    };
    if let Some(r) = x.record.as_mut() {
        r.request_id = Some(id);
    }
}

/// Decides whether the sender (TCP peer `peer`) is internal, takes the `x-envoy-*`
/// control headers (what an internal sender asked, if anything) and marks an internal
/// request with `x-envoy-internal`. `meshproxy explain` runs it too, so routing sees the
/// headers it sees here.
pub(crate) fn control_headers(
    proxy: &ProxySettings,
    peer: IpAddr,
    headers: &mut HeaderMap,
    gateway: bool,
) -> (bool, Option<Overrides>) {
    let internal = is_internal(proxy, peer, headers, gateway);
    let overrides = envoy_headers::take_controls(headers, internal);
    if internal {
        headers.insert(X_ENVOY_INTERNAL.clone(), HeaderValue::from_static("true"));
    }
    (internal, overrides)
}

/// Whether the sender counts as internal (see the module documentation).
fn is_internal(proxy: &ProxySettings, peer: IpAddr, headers: &HeaderMap, gateway: bool) -> bool {
    if proxy.internal_networks.is_empty() {
        return false;
    }
    let mut xff = headers.get_all(&X_FORWARDED_FOR).iter();
    if gateway {
        // The peer is appended to x-forwarded-for: one address only if there was none.
        return xff.next().is_none() && proxy.is_internal(peer);
    }
    let (Some(v), None) = (xff.next(), xff.next()) else {
        return false;
    };
    let mut addresses = v.to_str().unwrap_or("").split(',');
    match (addresses.next(), addresses.next()) {
        (Some(a), None) => a
            .trim()
            .parse::<IpAddr>()
            .is_ok_and(|ip| proxy.is_internal(ip)),
        _ => false,
    }
}
