//! The tracing step, once the listener is known and before anything is forwarded: the
//! listener side's tracing policy (Telemetry) decides whether the request is sampled,
//! this hop's context replaces the caller's in the request that goes on, and a sampled
//! request gets a span with Envoy's and Istio's tags (docs/telemetry.md). With tracing
//! off for the side, this is one branch and the trace headers pass through untouched.

use super::exchange::Exchange;
use crate::policy::headers as hdr;
use crate::trace::span::{self, Kind};
use http::header;
use http::request::Parts;
use meshproxy_config::compile::listener::{Listener, ListenerRole};
use meshproxy_config::host::split_authority;

/// Starts the request's span (see the module doc).
pub(super) fn start(x: &mut Exchange, parts: &mut Parts, listener: &Listener, authority: &str) {
    let inbound = matches!(listener.role, ListenerRole::Inbound { .. });
    // Untraced sides stop at this check: no reference count taken, nothing else read.
    if x.active.snapshot.telemetry.side(inbound).tracing.is_none() {
        return;
    }
    let active = x.active.clone();
    let Some(policy) = active.snapshot.telemetry.side(inbound).tracing.as_ref() else {
        return;
    };
    // Istio: a sidecar's outbound hop is a CLIENT span; its inbound hop and a gateway's
    // hop are SERVER spans.
    let kind = match listener.role {
        ListenerRole::Outbound => Kind::Client,
        _ => Kind::Server,
    };
    let local_port = x.conn.original_dst.unwrap_or(x.conn.local).port();
    // Istio's route decorator: `<host>:<port>/*` (inbound: the workload's service); made
    // only for a span that is recorded.
    let name = || {
        let (host, port) = split_authority(authority);
        let port = port.unwrap_or(local_port);
        if inbound {
            format!("{}:{port}/*", active.inbound_service.host)
        } else {
            format!("{host}:{port}/*")
        }
    };
    let started = span::start(
        policy,
        kind,
        &mut parts.headers,
        &active.trace_service,
        name,
    );
    let Some(mut s) = started.span else {
        return;
    };
    let h = &parts.headers;
    let text = |name: &header::HeaderName| h.get(name).and_then(|v| v.to_str().ok());
    if let Some(id) = text(&hdr::X_REQUEST_ID) {
        s.tag("guid:x-request-id", id);
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    s.tag("http.url", format!("{}://{authority}{path}", x.conn.scheme));
    s.tag("http.method", parts.method.as_str());
    s.tag("http.protocol", protocol(parts.version));
    if let Some(ua) = text(&header::USER_AGENT) {
        s.tag("user_agent", ua);
    }
    s.tag("peer.address", x.conn.peer.ip().to_string());
    s.tag("downstream_cluster", "-");
    s.tag("component", "proxy");
    if policy.istio_tags {
        let peer = &active.local_peer;
        s.tag("istio.canonical_service", &*peer.canonical_service);
        s.tag("istio.canonical_revision", &*peer.canonical_revision);
        s.tag("istio.namespace", &*peer.namespace);
        s.tag("istio.mesh_id", active.snapshot.proxy.trust_domain.as_str());
        s.tag("istio.cluster_id", &*peer.cluster);
    }
    x.span = Some(s);
}

fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    }
}
