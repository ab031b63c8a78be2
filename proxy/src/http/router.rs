//! The HTTP request path's entry: one request from hyper becomes an [`Exchange`] under the
//! config snapshot loaded once for it, is checked (refusals before routing), and goes to
//! the step for its listener: INBOUND ([`super::inbound`]), explicit-proxy `CONNECT`
//! ([`super::connect`]), or routing by host and route ([`super::dispatch`]).
//! docs/architecture.md lists the whole path.

use super::dispatch::{self, Routed};
use super::exchange::Exchange;
use super::refused::Refused;
use super::{connect, inbound, local_reply, upgrade};
use crate::access_log::Record;
use crate::body::{BodyTap, ResponseBody};
use crate::conn_info::ConnInfo;
use crate::flags::Flags;
use crate::policy::headers as hdr;
use crate::runtime::DataPath;
use crate::telemetry::istio::{Reporter, RequestLabels, Security};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Response, Version};
use hyper::body::Incoming;
use meshproxy_config::compile::listener::{Listener, ListenerRole};
use meshproxy_config::compile::lookup;
use meshproxy_config::compile::matcher::RequestView;
use meshproxy_config::host::split_authority;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

fn protocol_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/0.9",
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &HeaderName) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Handles one request.
pub async fn handle(
    req: http::Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: Arc<DataPath>,
) -> Response<ResponseBody> {
    let (mut x, mut parts, authority) = begin(req, conn, shared);
    let active = x.active.clone();
    let snap = &active.snapshot;
    let Some(listener) = snap.listeners.iter().find(|l| *l.name == *x.conn.listener) else {
        return x.reply(503, Flags::NONE, "listener_removed", "listener removed");
    };
    if x.shared.metrics.enabled {
        let inbound = matches!(listener.role, ListenerRole::Inbound { .. });
        x.labels = Some(metric_labels(&x, inbound));
    }
    let gateway = matches!(listener.role, ListenerRole::Gateway { .. });
    access_log_policy(&mut x, listener);
    super::sanitize::request(&mut x, &mut parts.headers, gateway);
    if let Some(resp) = refuse(&mut x, &mut parts) {
        return resp;
    }
    super::trace_step::start(&mut x, &mut parts, listener, &authority);
    match &listener.role {
        ListenerRole::Inbound { .. } => inbound::forward(&mut x, parts, authority).await,
        ListenerRole::Outbound if parts.method == http::Method::CONNECT => {
            connect::tunnel(&mut x, parts, listener, &authority).await
        }
        ListenerRole::Gateway { .. } => {
            if let Some(resp) = super::authn::gateway(&mut x, &mut parts, &authority) {
                return resp;
            }
            route(&mut x, parts, listener, &authority).await
        }
        ListenerRole::Outbound => route(&mut x, parts, listener, &authority).await,
    }
}

/// The exchange for a request: its record, body and upgrade taken out of the request.
fn begin(
    req: http::Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: Arc<DataPath>,
) -> (Exchange, Parts, String) {
    let started = Instant::now();
    let active = shared.active.load_full();
    let (mut parts, body) = req.into_parts();
    // Before anything strips hop-by-hop headers: `Connection: upgrade` + `Upgrade`.
    let upgrade = upgrade::detect(&mut parts).map(|mut u| {
        // hyper's connection ends when it hands the socket over; the tunnel keeps it
        // counted (a drain waits for it) and closes at the drain timeout.
        u.hold(crate::runtime::Live::new(&shared), &conn);
        u
    });
    let tap = (!http_body::Body::is_end_stream(&body)).then(|| BodyTap::new(body));
    let authority = match parts.uri.authority() {
        Some(a) => a.as_str().to_string(),
        None => header_str(&parts.headers, &header::HOST).to_string(),
    };
    let record = shared.access_log.enabled().then(|| Record {
        start: Some(SystemTime::now()),
        method: Some(parts.method.clone()),
        path: parts.uri.path_and_query().cloned(),
        protocol: protocol_name(parts.version),
        forwarded_for: parts.headers.get(&hdr::X_FORWARDED_FOR).cloned(),
        user_agent: parts.headers.get(header::USER_AGENT).cloned(),
        authority: authority.clone(),
        ..Default::default()
    });
    let x = Exchange {
        shared,
        stream_idle: active.snapshot.proxy.limits.stream_idle_timeout,
        active,
        conn,
        started,
        record,
        tap,
        grpc: local_reply::is_grpc(&parts.headers),
        labels: None,
        upgrade,
        overrides: None,
        span: None,
        log_filter: None,
    };
    (x, parts, authority)
}

/// Telemetry's access logging for the listener's side: off (no record is kept), or
/// filtered when the request ends.
fn access_log_policy(x: &mut Exchange, listener: &Listener) {
    if x.record.is_none() {
        return;
    }
    let inbound = matches!(listener.role, ListenerRole::Inbound { .. });
    let policy = &x.active.snapshot.telemetry.side(inbound).access_log;
    if policy.disabled {
        x.record = None;
    } else if let Some(f) = &policy.filter {
        x.log_filter = Some(f.clone());
    }
}

/// Istio's request labels as far as the listener knows them: the destination service is
/// filled in once a cluster is chosen.
fn metric_labels(x: &Exchange, inbound: bool) -> RequestLabels {
    let (active, conn) = (&x.active, &x.conn);
    if inbound {
        RequestLabels {
            reporter: Reporter::Destination,
            source: conn
                .peer_labels
                .clone()
                .unwrap_or_else(|| active.unknown_peer.clone()),
            destination: active.local_peer.clone(),
            service: active.inbound_service.clone(),
            grpc: x.grpc,
            security: if conn.peer_identity.is_some() {
                Security::MutualTls
            } else {
                Security::None
            },
            disabled: active.snapshot.telemetry.server.metrics.disabled,
        }
    } else {
        RequestLabels {
            reporter: Reporter::Source,
            source: active.local_peer.clone(),
            destination: active.unknown_peer.clone(),
            service: active.unknown_service.clone(),
            grpc: x.grpc,
            security: Security::Unknown,
            disabled: active.snapshot.telemetry.client.metrics.disabled,
        }
    }
}

/// Refusals before routing, each logged and counted: an upgrade type we do not tunnel,
/// `spec.limits` (overload, too many headers, a request-target over the limit), and
/// ambiguous framing or a bad `Host`.
fn refuse(x: &mut Exchange, parts: &mut Parts) -> Option<Response<ResponseBody>> {
    // Only the upgrade types Istio enables are tunnelled (every HTTP connection manager
    // gets `upgrade_configs: [{upgrade_type: websocket}]`); Envoy answers any other
    // `Upgrade` with a local 403, details `upgrade_failed`, and closes the connection
    // (`ConnectionManagerImpl`, "HTTP upgrades" in Envoy's architecture overview), so no
    // byte can bypass routing and authorization through an arbitrary upgrade.
    if x.upgrade.as_ref().is_some_and(|u| !u.allowed()) {
        x.upgrade = None;
        return Some(x.reply_closing(403, Flags::NONE, "upgrade_failed", ""));
    }
    // `spec.limits` (the connection's limits): overload 503 `OM` (Envoy's overload manager
    // answers "envoy overloaded"), too many headers 431, a request-target too long 414.
    if let Some(r) = parts.extensions.remove::<Refused>() {
        let (status, details, body) = r.reply();
        return Some(match r {
            Refused::Overloaded => {
                let mut resp = x.reply(status, Flags::OVERLOAD_MANAGER, details, body);
                resp.headers_mut().insert(
                    local_reply::OVERLOADED.clone(),
                    HeaderValue::from_static("true"),
                );
                resp
            }
            Refused::UriTooLong => {
                x.reply_closing(status, Flags::DOWNSTREAM_PROTOCOL_ERROR, details, body)
            }
            Refused::TooManyHeaders => x.reply(status, Flags::NONE, details, body),
        });
    }
    // Ambiguous framing is refused before anything is forwarded, and the connection is
    // closed after the answer (RFC 9112 §6.1, §6.3; see `smuggling`); so is a missing,
    // repeated or invalid `Host` (RFC 9112 §3.2). Envoy flags its HTTP/1 codec's
    // refusals as downstream protocol errors.
    let refused = super::smuggling::check(&parts.method, parts.version, &parts.headers)
        .or_else(|| super::host_field::check(parts.version, &parts.headers))?;
    let (status, flags, details) = (
        refused.status,
        Flags::DOWNSTREAM_PROTOCOL_ERROR,
        refused.details,
    );
    Some(if parts.version < Version::HTTP_2 {
        x.reply_closing(status, flags, details, "")
    } else {
        x.reply(status, flags, details, "")
    })
}

/// OUTBOUND and Gateway listeners: the virtual host for the authority, its first matching
/// route, then the route's action.
async fn route(
    x: &mut Exchange,
    parts: Parts,
    listener: &Listener,
    authority: &str,
) -> Response<ResponseBody> {
    let gateway = matches!(listener.role, ListenerRole::Gateway { .. });
    let (host, port) = split_authority(authority);
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    if let Some(location) = lookup::https_redirect(listener, &host, path_and_query) {
        return x.redirect_reply(301, &location);
    }
    let active = x.active.clone();
    let snap = &active.snapshot;
    let Some(table) = lookup::route_table(snap, listener) else {
        return x.reply(404, Flags::NO_ROUTE_FOUND, "route_not_found", "");
    };
    let port = lookup::request_port(port, listener, x.conn.local.port(), x.conn.scheme);
    let view = RequestView {
        method: parts.method.as_str(),
        scheme: x.conn.scheme,
        authority,
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        port,
    };
    let Some((route, matched)) = table.find(&host).and_then(|vh| vh.find_route(&view)) else {
        return x.reply(404, Flags::NO_ROUTE_FOUND, "route_not_found", "");
    };
    if let Some(limiter) = active.rate_limiter.as_deref() {
        if let Some(resp) = super::rate_limit::check(x, limiter, &host, &view).await {
            return resp;
        }
    }
    let routed = Routed {
        route,
        matched,
        authority,
        host: &host,
        port,
        gateway,
    };
    dispatch::dispatch(x, parts, &routed).await
}
