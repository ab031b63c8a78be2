//! The HTTP request path: load the config once, find the virtual host and route, apply the
//! route's policies (CORS, fault, rewrite, headers, mirror), pick a weighted destination
//! and an endpoint, forward with retries and timeouts, and send the response back.

use super::body::{BodyTap, RequestBody, ResponseBody};
use super::completion::{RequestDone, Returnable};
use super::connect;
use super::flags::Flags;
use super::forward::{self, Failure, Transport, UpstreamHead};
use super::local_reply;
use super::upgrade;
use crate::access_log::Record;
use crate::policy::{cors, fault, grpc_timeout, headers as hdr, mirror, redirect, retry};

/// gRPC status `DEADLINE_EXCEEDED`.
const GRPC_DEADLINE_EXCEEDED: u32 = 4;
use crate::server::active::Active;
use crate::server::Shared;
use crate::telemetry::istio::{Reporter, RequestLabels, Security};
use crate::upstream::cluster_state::{ActiveRequest, ClusterState};
use crate::upstream::limits::RequestSlot;
use crate::upstream::{hash_ring, lb, outlier};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Response, Version};
use hyper::body::Incoming;
use meshproxy_config::compile::cluster::{Cluster, HashKey, LoadBalancer};
use meshproxy_config::compile::listener::{Listener, ListenerRole};
use meshproxy_config::compile::matcher::{RequestView, RouteMatch};
use meshproxy_config::compile::route::{
    Abort, RetryPolicy, Route, RouteAction, WeightedDestination,
};
use meshproxy_config::compile::ClusterId;
use meshproxy_config::host::split_authority;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// What the router knows about the downstream connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// Listener name.
    pub listener: Arc<str>,
    /// Local address the connection arrived on.
    pub local: SocketAddr,
    /// Client address.
    pub peer: SocketAddr,
    /// The client address's text ([`crate::policy::headers::ip_value`]), made once.
    pub peer_ip: HeaderValue,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Where the client meant to connect, when the connection was intercepted.
    pub original_dst: Option<SocketAddr>,
    /// Fires at the listener's drain timeout: what outlives hyper's connection (an
    /// upgraded tunnel) closes then.
    pub kill: tokio::sync::watch::Receiver<bool>,
    /// The peer's SPIFFE ID, when it proved one over mTLS.
    pub peer_identity: Option<Arc<str>>,
    /// The peer's metric labels (its principal), when it proved an identity.
    pub peer_labels: Option<Arc<crate::telemetry::labels::Peer>>,
    /// `x-forwarded-client-cert` for the app, when the peer came over mTLS.
    pub xfcc: Option<Arc<str>>,
}

static UPSTREAM_SERVICE_TIME: HeaderName = HeaderName::from_static("x-envoy-upstream-service-time");

/// Per-request bookkeeping for the access log and completion.
struct Ctx {
    shared: Arc<Shared>,
    started: Instant,
    record: Option<Record>,
    tap: Option<BodyTap>,
    grpc: bool,
    labels: Option<RequestLabels>,
    /// The downstream upgrade, when the request asks for one (WebSocket...). Dropped
    /// unused when the request ends in a local reply or the upstream does not answer 101.
    upgrade: Option<upgrade::Requested>,
    /// `spec.limits.streamIdleTimeout` of the config the request started under.
    stream_idle: std::time::Duration,
}

impl Ctx {
    fn done(&mut self, status: u16, flags: Flags) -> Box<RequestDone> {
        let mut record = self.record.take();
        if let Some(r) = record.as_mut() {
            r.status = status;
            r.flags.insert(flags);
        }
        Box::new(RequestDone {
            shared: self.shared.clone(),
            record,
            started: self.started,
            tap: self.tap.clone(),
            returnable: None,
            active: None,
            request_slot: None,
            status,
            flags,
            grpc_status: None,
            labels: self.labels.take(),
        })
    }

    fn reply(
        &mut self,
        status: u16,
        flags: Flags,
        details: &'static str,
        body: &str,
    ) -> Response<ResponseBody> {
        self.reply_grpc(status, flags, details, body, None)
    }

    /// A local reply; to a gRPC caller, a trailers-only response with `grpc` as its
    /// status (default: Envoy's mapping of `status`), recorded as HTTP 200 with that
    /// `grpc_response_status`, as Envoy's local replies to gRPC requests are.
    fn reply_grpc(
        &mut self,
        status: u16,
        flags: Flags,
        details: &'static str,
        body: &str,
        grpc: Option<u32>,
    ) -> Response<ResponseBody> {
        if let Some(r) = self.record.as_mut() {
            r.details = details;
        }
        let (resp, done) = if self.grpc {
            let code = grpc.unwrap_or_else(|| local_reply::http_to_grpc_status(status));
            let mut done = self.done(200, flags);
            done.grpc_status = Some(code);
            (local_reply::grpc(code, body), done)
        } else {
            (
                local_reply::build(status, body, false),
                self.done(status, flags),
            )
        };
        let (parts, b) = resp.into_parts();
        Response::from_parts(parts, b.on_complete(done))
    }

    fn note_upstream(&mut self, cluster: &str, host: &str, route: &str) {
        if let Some(r) = self.record.as_mut() {
            r.upstream_cluster = cluster.to_string();
            r.upstream_host = host.to_string();
            r.route_name = route.to_string();
        }
    }
}

impl Drop for Ctx {
    /// A request whose future is dropped before a response was made: the client reset
    /// the stream or closed the connection while the proxy waited (for the upstream, a
    /// retry, a fault delay). Envoy logs and counts it with response code 0 and flag `DC`.
    fn drop(&mut self) {
        if self.record.is_none() && self.labels.is_none() {
            return;
        }
        let done = self.done(0, Flags::NONE);
        // `ended: false` without an error is what marks `DC`.
        super::body::Completion::complete(done, 0, false, None, None);
    }
}

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
    shared: Arc<Shared>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let active = shared.active.load_full();
    let (mut parts, body) = req.into_parts();
    // Before anything strips hop-by-hop headers: `Connection: upgrade` + `Upgrade`.
    let upgrade = upgrade::detect(&mut parts).map(|mut u| {
        // hyper's connection ends when it hands the socket over; the tunnel keeps it
        // counted (a drain waits for it) and closes at the drain timeout.
        u.hold(
            crate::server::connection::Live::new(&shared),
            conn.kill.clone(),
        );
        u
    });
    let tap = (!http_body::Body::is_end_stream(&body)).then(|| BodyTap::new(body));
    let authority = match parts.uri.authority() {
        Some(a) => a.as_str().to_string(),
        None => header_str(&parts.headers, &header::HOST).to_string(),
    };
    let record = shared.access_log.enabled().then(|| Record {
        start: Some(SystemTime::now()),
        method: parts.method.as_str().to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        protocol: protocol_name(parts.version),
        forwarded_for: header_str(&parts.headers, &hdr::X_FORWARDED_FOR).to_string(),
        user_agent: header_str(&parts.headers, &header::USER_AGENT).to_string(),
        request_id: header_str(&parts.headers, &hdr::X_REQUEST_ID).to_string(),
        authority: authority.clone(),
        ..Default::default()
    });
    let grpc = local_reply::is_grpc(&parts.headers);
    let mut ctx = Ctx {
        shared: shared.clone(),
        started,
        record,
        tap,
        grpc,
        labels: None,
        upgrade,
        stream_idle: active.snapshot.proxy.limits.stream_idle_timeout,
    };
    // Ambiguous framing is refused before anything is forwarded, and the connection is
    // closed after the answer (RFC 9112 §6.1, §6.3; see `smuggling`).
    if let Some(r) = super::smuggling::check(&parts.method, parts.version, &parts.headers) {
        let mut resp = ctx.reply(r.status, Flags::NONE, r.details, "");
        if parts.version < Version::HTTP_2 {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return resp;
    }
    let snap = &active.snapshot;
    let Some(listener) = snap.listeners.iter().find(|l| *l.name == *conn.listener) else {
        return ctx.reply(503, Flags::NONE, "listener_removed", "listener removed");
    };
    if shared.metrics.enabled {
        let inbound = matches!(listener.role, ListenerRole::Inbound { .. });
        ctx.labels = Some(if inbound {
            RequestLabels {
                reporter: Reporter::Destination,
                source: conn
                    .peer_labels
                    .clone()
                    .unwrap_or_else(|| active.unknown_peer.clone()),
                destination: active.local_peer.clone(),
                service: active.inbound_service.clone(),
                grpc,
                security: if conn.peer_identity.is_some() {
                    Security::MutualTls
                } else {
                    Security::None
                },
            }
        } else {
            RequestLabels {
                reporter: Reporter::Source,
                source: active.local_peer.clone(),
                destination: active.unknown_peer.clone(),
                service: active.unknown_service.clone(),
                grpc,
                security: Security::Unknown,
            }
        });
    }
    // Refused by `spec.limits` before routing, logged and counted (see
    // `server::limits`): overload 503 `OM`
    // (Envoy's overload manager answers "envoy overloaded"), too many headers 431.
    if let Some(r) = parts.extensions.remove::<crate::server::limits::Refused>() {
        let (status, details, body) = r.reply();
        let overloaded = r == crate::server::limits::Refused::Overloaded;
        let flags = if overloaded {
            Flags::OVERLOAD_MANAGER
        } else {
            Flags::NONE
        };
        let mut resp = ctx.reply(status, flags, details, body);
        if overloaded {
            resp.headers_mut().insert(
                local_reply::OVERLOADED.clone(),
                HeaderValue::from_static("true"),
            );
        }
        return resp;
    }
    match &listener.role {
        ListenerRole::Inbound { .. } => inbound(&mut ctx, &active, &conn, parts, authority).await,
        ListenerRole::Outbound if parts.method == http::Method::CONNECT => {
            connect_tunnel(&mut ctx, &active, &conn, parts, listener, &authority).await
        }
        ListenerRole::Outbound | ListenerRole::Gateway { .. } => {
            let gateway = matches!(listener.role, ListenerRole::Gateway { .. });
            if let ListenerRole::Gateway { servers } = &listener.role {
                // httpsRedirect on a plain HTTP server: every request is sent to https.
                if !servers.is_empty() && servers.iter().all(|s| s.https_redirect) {
                    let (host, _) = split_authority(&authority);
                    let loc = format!(
                        "https://{host}{}",
                        parts
                            .uri
                            .path_and_query()
                            .map(|p| p.as_str())
                            .unwrap_or("/")
                    );
                    return redirect_reply(&mut ctx, 301, &loc);
                }
            }
            let Some(table) = listener.route_table.and_then(|i| snap.route_tables.get(i)) else {
                return ctx.reply(404, Flags::NO_ROUTE_FOUND, "route_not_found", "");
            };
            let (host, port) = split_authority(&authority);
            let port = port.unwrap_or(if gateway {
                conn.local.port()
            } else if conn.scheme == "https" {
                443
            } else {
                80
            });
            let view = RequestView {
                method: parts.method.as_str(),
                scheme: conn.scheme,
                authority: &authority,
                path: parts.uri.path(),
                query: parts.uri.query().unwrap_or(""),
                headers: &parts.headers,
                port,
            };
            let Some((route, matched)) = table.find(&host).and_then(|vh| vh.find_route(&view))
            else {
                return ctx.reply(404, Flags::NO_ROUTE_FOUND, "route_not_found", "");
            };
            let host = host.into_owned();
            dispatch(
                &mut ctx, &active, &conn, parts, route, matched, &authority, &host, port,
            )
            .await
        }
    }
}

/// `CONNECT host:port` on an OUTBOUND listener (explicit proxy): routed by
/// [`connect::target`], the upstream stream opened, then `200` and the tunnel.
async fn connect_tunnel(
    ctx: &mut Ctx,
    active: &Arc<Active>,
    conn: &ConnInfo,
    mut parts: Parts,
    listener: &Listener,
    authority: &str,
) -> Response<ResponseBody> {
    use connect::Refusal;
    let snap = &active.snapshot;
    let target = match connect::target(snap, listener, authority, &parts, conn.peer.ip()) {
        Ok(t) => t,
        Err(Refusal::BadTarget) => {
            return ctx.reply(400, Flags::NONE, "invalid_connect_target", "");
        }
        Err(Refusal::NoRoute) => {
            return ctx.reply(404, Flags::NO_ROUTE_FOUND, "route_not_found", "");
        }
        Err(Refusal::NoCluster) => {
            return ctx.reply(503, Flags::NO_CLUSTER_FOUND, "cluster_not_found", "");
        }
    };
    let cluster = snap.cluster(target.cluster);
    let Some(state) = active.cluster_state(target.cluster) else {
        return ctx.reply(503, Flags::NO_CLUSTER_FOUND, "cluster_not_found", "");
    };
    if let Some(l) = ctx.labels.as_mut() {
        l.service = state.service_labels.clone();
    }
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return ctx.reply(400, Flags::NONE, "connect_not_upgradable", "");
    };
    let original_dst =
        connect::passthrough_address(&cluster.load_balancer, authority, target.port).await;
    let who = crate::tcp::link::For {
        peer: conn.peer.ip(),
        original_dst,
    };
    let link = match crate::tcp::link::open(cluster, state, who).await {
        Ok(l) => l,
        Err(crate::tcp::link::LinkError::Overflow) => return overflow_reply(ctx, Flags::NONE),
        Err(crate::tcp::link::LinkError::NoHealthy) => {
            return ctx.reply(
                503,
                Flags::NO_HEALTHY_UPSTREAM,
                "no_healthy_upstream",
                "no healthy upstream",
            );
        }
        Err(crate::tcp::link::LinkError::Connect(e)) => {
            tracing::debug!(cluster = %cluster.name, error = %e, "CONNECT: upstream connect failed");
            return ctx.reply(
                503,
                Flags::UPSTREAM_CONNECTION_FAILURE,
                "upstream_reset_before_response_started{connection_failure}",
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            );
        }
    };
    ctx.note_upstream(&cluster.name, &link.endpoint.name, &target.route);
    let done = ctx.done(200, Flags::NONE);
    let live = crate::server::connection::Live::new(&ctx.shared);
    connect::spawn_tunnel(on_upgrade, link, done, live, conn.kill.clone());
    Response::new(ResponseBody::empty())
}

/// A circuit breaker refused the request: 503 at once, flag `UO`,
/// `x-meshproxy-overloaded: true` (SPEC §3), nothing sent upstream.
fn overflow_reply(ctx: &mut Ctx, flags: Flags) -> Response<ResponseBody> {
    let mut resp = ctx.reply(
        503,
        flags | Flags::UPSTREAM_OVERFLOW,
        "upstream_overflow",
        "upstream connect error or disconnect/reset before headers. reset reason: overflow",
    );
    resp.headers_mut().insert(
        local_reply::OVERLOADED.clone(),
        HeaderValue::from_static("true"),
    );
    resp
}

fn redirect_reply(ctx: &mut Ctx, code: u16, location: &str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() =
        http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    let done = ctx.done(code, Flags::NONE);
    let (p, b) = resp.into_parts();
    Response::from_parts(p, b.on_complete(done))
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    ctx: &mut Ctx,
    active: &Arc<Active>,
    conn: &ConnInfo,
    parts: Parts,
    route: &Route,
    matched: Option<&RouteMatch>,
    authority: &str,
    host: &str,
    port: u16,
) -> Response<ResponseBody> {
    if let Some(r) = ctx.record.as_mut() {
        r.route_name = route.name.clone();
    }
    match &route.action {
        RouteAction::DirectResponse(d) => {
            let mut resp = Response::new(ResponseBody::full(d.body.clone()));
            *resp.status_mut() =
                http::StatusCode::from_u16(d.status).unwrap_or(http::StatusCode::OK);
            if !d.body.is_empty() {
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            }
            hdr::apply(&route.policy.response_headers, resp.headers_mut());
            if let Some(r) = ctx.record.as_mut() {
                r.details = "direct_response";
            }
            let done = ctx.done(d.status, Flags::NONE);
            let (p, b) = resp.into_parts();
            Response::from_parts(p, b.on_complete(done))
        }
        RouteAction::Redirect(rd) => {
            let (_, authority_port) = split_authority(authority);
            let loc = redirect::location(
                rd,
                &redirect::RequestParts {
                    scheme: conn.scheme,
                    host,
                    authority_port,
                    listener_port: conn.local.port(),
                    path: parts.uri.path(),
                    query: parts.uri.query().unwrap_or(""),
                },
                matched,
            );
            let mut resp = redirect_reply(ctx, rd.code, &loc);
            hdr::apply(&route.policy.response_headers, resp.headers_mut());
            resp
        }
        RouteAction::Forward(wc) => {
            // The weighted destination is chosen with the route, before the filters run
            // (as Envoy caches the route and cluster), so faults are reported against it.
            let picked = (wc.total_weight > 0 && !wc.destinations.is_empty())
                .then(|| wc.pick(fastrand::u32(..wc.total_weight)))
                .and_then(|d| d.target.resolve(port).map(|cid| (d, cid)));
            if let (Some((_, cid)), Some(l)) = (&picked, ctx.labels.as_mut()) {
                l.service = active.cluster(*cid).service_labels.clone();
            }
            // CORS runs before the fault filter and the router, as in Envoy's chain.
            let mut cors_headers = HeaderMap::new();
            if let Some(c) = &route.policy.cors {
                match cors::evaluate(c, &parts.method, &parts.headers) {
                    cors::Verdict::None => {}
                    cors::Verdict::Preflight(h) => {
                        let mut resp = Response::new(ResponseBody::empty());
                        resp.headers_mut().extend(h);
                        let done = ctx.done(200, Flags::NONE);
                        let (p, b) = resp.into_parts();
                        return Response::from_parts(p, b.on_complete(done));
                    }
                    cors::Verdict::IgnoredPreflight => {
                        let done = ctx.done(200, Flags::NONE);
                        return Response::new(ResponseBody::empty().on_complete(done));
                    }
                    cors::Verdict::Forward(h) => cors_headers = h,
                }
            }
            let mut fault_flags = Flags::NONE;
            if let Some(f) = &route.policy.fault {
                let d = fault::decide(f);
                if let Some(delay) = d.delay {
                    tokio::time::sleep(delay).await;
                    fault_flags.insert(Flags::DELAY_INJECTED);
                }
                if let Some(abort) = d.abort {
                    if let Some(r) = ctx.record.as_mut() {
                        r.details = "fault_filter_abort";
                    }
                    return match abort {
                        Abort::Http(status) => ctx.reply(
                            status,
                            fault_flags | Flags::FAULT_INJECTED,
                            "fault_filter_abort",
                            "fault filter abort",
                        ),
                        Abort::Grpc(code) => ctx.reply_grpc(
                            200,
                            fault_flags | Flags::FAULT_INJECTED,
                            "fault_filter_abort",
                            "fault filter abort",
                            Some(code),
                        ),
                    };
                }
            }
            let Some((dest, cid)) = picked else {
                ctx.note_upstream("", "", &route.name);
                return ctx.reply(
                    503,
                    fault_flags | Flags::NO_CLUSTER_FOUND,
                    "cluster_not_found",
                    "",
                );
            };
            forward_to_cluster(
                ctx,
                active,
                conn,
                parts,
                route,
                matched,
                dest,
                cid,
                authority,
                port,
                cors_headers,
                fault_flags,
            )
            .await
        }
    }
}

/// Builds the upstream request head: rewritten path and authority, hop-by-hop headers
/// removed, forwarding headers, then the route's and the destination's header operations.
fn upstream_head(
    mut parts: Parts,
    conn: &ConnInfo,
    route: Option<&Route>,
    matched: Option<&RouteMatch>,
    dest: Option<&WeightedDestination>,
    authority: &str,
) -> (UpstreamHead, HeaderValue) {
    let path = parts.uri.path();
    let query = parts.uri.query();
    let rewritten = route
        .and_then(|r| r.policy.rewrite.as_ref())
        .and_then(|rw| rw.path(path, matched));
    let mut path_and_query = rewritten.unwrap_or_else(|| path.to_string());
    if path_and_query.is_empty() {
        path_and_query.push('/');
    }
    if let Some(q) = query {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    let authority = route
        .and_then(|r| r.policy.rewrite.as_ref())
        .and_then(|rw| rw.authority.clone())
        .or_else(|| dest.and_then(|d| d.authority.clone()))
        .or_else(|| HeaderValue::from_str(authority).ok())
        .unwrap_or_else(|| HeaderValue::from_static("localhost"));
    let headers = &mut parts.headers;
    hdr::strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    let request_id = hdr::forwarding(headers, &conn.peer_ip, conn.scheme);
    if let Some(r) = route {
        hdr::apply(&r.policy.request_headers, headers);
    }
    if let Some(d) = dest {
        hdr::apply(&d.request_headers, headers);
    }
    (
        UpstreamHead {
            method: parts.method,
            path_and_query,
            authority,
            headers: parts.headers,
        },
        request_id,
    )
}

/// Whether to speak HTTP/2 to the upstream: the service port's protocol (`HTTP2`,
/// `GRPC`), `h2UpgradePolicy: UPGRADE`, or the client's protocol with `useClientProtocol`.
fn upstream_h2(cluster: &Cluster, downstream: Version) -> bool {
    if cluster.pool.use_client_protocol {
        downstream == Version::HTTP_2
    } else {
        cluster.protocol.is_h2() || cluster.pool.h2_upgrade
    }
}

/// The consistent-hash key of a request, and a cookie to set when one was generated.
fn hash_key(
    cluster: &Cluster,
    head: &UpstreamHead,
    peer: SocketAddr,
) -> (Option<u64>, Option<HeaderValue>) {
    let LoadBalancer::ConsistentHash { key, .. } = &cluster.load_balancer else {
        return (None, None);
    };
    match key {
        HashKey::Header(name) => (
            head.headers
                .get(name)
                .map(|v| hash_ring::hash_key(v.as_bytes())),
            None,
        ),
        HashKey::SourceIp => (
            Some(hash_ring::hash_key(peer.ip().to_string().as_bytes())),
            None,
        ),
        HashKey::QueryParameter(p) => {
            let q = head
                .path_and_query
                .split_once('?')
                .map(|(_, q)| q)
                .unwrap_or("");
            let v = q.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k == p).then_some(v)
            });
            (v.map(|v| hash_ring::hash_key(v.as_bytes())), None)
        }
        HashKey::Cookie {
            name,
            path,
            ttl,
            attributes,
        } => {
            let found = head
                .headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| {
                    let (k, v) = c.trim().split_once('=')?;
                    (k == name).then(|| v.trim_matches('"').to_string())
                });
            match (found, ttl) {
                (Some(v), _) => (Some(hash_ring::hash_key(v.as_bytes())), None),
                // Envoy generates the cookie when it is absent and a ttl is configured.
                (None, Some(ttl)) => {
                    let value = format!("{:016x}", fastrand::u64(..));
                    let mut c = format!("{name}=\"{value}\"");
                    if !ttl.is_zero() {
                        c.push_str(&format!("; Max-Age={}", ttl.as_secs()));
                    }
                    if !path.is_empty() {
                        c.push_str(&format!("; Path={path}"));
                    }
                    for (k, v) in attributes {
                        if v.is_empty() {
                            c.push_str(&format!("; {k}"));
                        } else {
                            c.push_str(&format!("; {k}={v}"));
                        }
                    }
                    c.push_str("; HttpOnly");
                    (
                        Some(hash_ring::hash_key(value.as_bytes())),
                        HeaderValue::from_str(&c).ok(),
                    )
                }
                (None, None) => (None, None),
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward_to_cluster(
    ctx: &mut Ctx,
    active: &Arc<Active>,
    conn: &ConnInfo,
    parts: Parts,
    route: &Route,
    matched: Option<&RouteMatch>,
    dest: &WeightedDestination,
    cid: ClusterId,
    authority: &str,
    port: u16,
    cors_headers: HeaderMap,
    mut flags: Flags,
) -> Response<ResponseBody> {
    let snap = &active.snapshot;
    let cluster = snap.cluster(cid);
    let state = active.cluster(cid);
    if let Some(l) = ctx.labels.as_mut() {
        l.service = state.service_labels.clone();
    }
    let version = parts.version;
    let (mut head, request_id) =
        upstream_head(parts, conn, Some(route), matched, Some(dest), authority);
    if let Some(r) = ctx.record.as_mut() {
        r.request_id = request_id.to_str().unwrap_or("").to_string();
        r.upstream_cluster = cluster.name.clone();
    }
    let upgrading = ctx.upgrade.is_some();
    if let Some(u) = &ctx.upgrade {
        u.mark_request(&mut head.headers);
    }
    // Envoy does not shadow upgrade requests: a mirror cannot take part in a tunnel.
    let mirrors = if upgrading {
        &[][..]
    } else {
        &route.policy.mirrors[..]
    };
    for m in mirrors {
        if mirror::draw(m.per_million) {
            if let Some(mid) = m.target.resolve(port) {
                spawn_mirror(active.clone(), mid, &head, ctx.tap.as_ref(), version);
            }
        }
    }
    // http2MaxRequests: requests in flight to the cluster (HTTP/1.1 and HTTP/2 alike).
    if !state.limits.start_request() {
        return overflow_reply(ctx, flags);
    }
    let request_slot = RequestSlot(state.clone());
    let transport = if upgrading {
        Transport::Upgrade
    } else {
        Transport::pooled(upstream_h2(cluster, version))
    };
    // Envoy: retries (and so per-try timeouts) do not apply to upgrade requests; the route
    // timeout does, until the upstream's response head (the 101) arrives.
    let no_retries = RetryPolicy {
        attempts: 0,
        per_try_timeout: None,
        ..RetryPolicy::default()
    };
    let retry_policy = if upgrading {
        &no_retries
    } else {
        &route.policy.retry
    };
    let (hash, set_cookie) = hash_key(cluster, &head, conn.peer);
    let original_dst = if cluster.load_balancer == LoadBalancer::Passthrough {
        original_destination(conn, &head, port).await
    } else {
        None
    };
    let grpc_deadline = if ctx.grpc {
        head.headers
            .get(&grpc_timeout::GRPC_TIMEOUT)
            .and_then(|v| grpc_timeout::parse(v.as_bytes()))
    } else {
        None
    };
    let timeout = grpc_timeout::effective(route.policy.timeout, grpc_deadline);
    let resp = send_with_retries(
        ctx,
        cluster,
        state,
        &head,
        transport,
        Pick {
            hash,
            original_dst,
            pinned: false,
        },
        retry_policy,
        timeout,
        &mut flags,
    )
    .await;
    match resp {
        Err(mut resp) => {
            // Envoy: the router's local replies (503, 504, 408) are finalized with the
            // route's and the weighted destination's response headers, like responses.
            hdr::apply(&route.policy.response_headers, resp.headers_mut());
            hdr::apply(&dest.response_headers, resp.headers_mut());
            resp
        }
        Ok((mut att, deadline)) => {
            let switch = take_switch(ctx, &mut att.response);
            let (mut parts, body) = att.response.into_parts();
            hdr::strip_hop_by_hop(&mut parts.headers);
            hdr::apply(&route.policy.response_headers, &mut parts.headers);
            hdr::apply(&dest.response_headers, &mut parts.headers);
            parts.headers.extend(cors_headers);
            if let Some(c) = set_cookie {
                parts.headers.append(header::SET_COOKIE, c);
            }
            let ust = ctx.started.elapsed();
            if let Ok(v) = HeaderValue::from_str(&ust.as_millis().to_string()) {
                parts.headers.insert(UPSTREAM_SERVICE_TIME.clone(), v);
            }
            let status = parts.status.as_u16();
            if let Some(r) = ctx.record.as_mut() {
                r.upstream_host = att.endpoint.name.clone();
                r.upstream_service_time = Some(ust);
            }
            if let Some(switch) = switch {
                // Envoy: the route timeout ends at the 101 (no deadline on the tunnel).
                return start_tunnel(
                    ctx,
                    parts,
                    switch,
                    (att.lease, att.active),
                    flags,
                    Some(request_slot),
                );
            }
            let mut done = ctx.done(status, flags);
            done.grpc_status = parts
                .headers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            done.active = Some(att.active);
            done.request_slot = Some(request_slot);
            done.returnable = Some(Returnable {
                cluster: state.clone(),
                endpoint: att.endpoint.clone(),
                lease: att.lease,
            });
            let body = ResponseBody::upstream(body)
                .with_deadline(deadline)
                .with_idle_timeout(ctx.stream_idle, ctx.tap.clone())
                .on_complete(done);
            Response::from_parts(parts, body)
        }
    }
}

/// An upgrade the upstream accepted: the downstream upgrade, the upstream's, and the
/// protocol switched to.
struct Switch {
    downstream: upgrade::Requested,
    upstream: hyper::upgrade::OnUpgrade,
    protocol: HeaderValue,
}

/// If the request asked for an upgrade and the upstream agreed (101), takes what the
/// tunnel needs. Any other status is relayed as an ordinary response (Envoy), and the
/// downstream upgrade is dropped, so the client connection carries on as HTTP/1.1.
fn take_switch(ctx: &mut Ctx, response: &mut Response<Incoming>) -> Option<Switch> {
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
fn start_tunnel(
    ctx: &mut Ctx,
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

/// Returns once `timeout` passes with no request-body bytes received on `tap` (never
/// returns while they keep coming). One timer, re-armed only when it fires.
async fn idle_wait(timeout: std::time::Duration, tap: Option<BodyTap>) {
    let received = || tap.as_ref().map(BodyTap::received).unwrap_or(0);
    let mut seen = received();
    loop {
        tokio::time::sleep(timeout).await;
        let now = received();
        if now == seen {
            return;
        }
        seen = now;
    }
}

/// Runs attempts until one is final: retries per policy, the per-try timeout on each,
/// the route timeout over all of them (starting once the request body has been received,
/// as Envoy's route timeout does). Returns the response and the deadline that still
/// applies to its body, or the local reply to send.
#[allow(clippy::too_many_arguments)]
async fn send_with_retries(
    ctx: &mut Ctx,
    cluster: &Cluster,
    state: &Arc<ClusterState>,
    head: &UpstreamHead,
    transport: Transport,
    pick: Pick,
    policy: &RetryPolicy,
    timeout: Option<grpc_timeout::Deadline>,
    flags: &mut Flags,
) -> Result<(forward::Attempt, Option<tokio::time::Instant>), Response<ResponseBody>> {
    let tap = ctx.tap.clone();
    let attempts = attempt_loop(cluster, state, head, transport, pick, policy, tap.as_ref());
    // Envoy's stream idle timeout, while the response head is awaited: nothing from the
    // upstream and no request bytes from the client for that long ends the request.
    let idle = idle_wait(ctx.stream_idle, tap.clone());
    let attempts = async {
        tokio::select! {
            r = attempts => Some(r),
            () = idle => None,
        }
    };
    let started = tokio::time::Instant::from_std(ctx.started);
    let outcome = match timeout {
        None => attempts.await,
        Some(d) => {
            let tap2 = tap.clone();
            let deadline = async move {
                if d.from_start {
                    return tokio::time::sleep_until(started + d.after).await;
                }
                if let Some(tap) = &tap2 {
                    tap.wait_done().await;
                }
                tokio::time::sleep(d.after).await;
            };
            tokio::select! {
                r = attempts => r,
                _ = deadline => {
                    // gRPC: DEADLINE_EXCEEDED, not the 504 mapping's UNAVAILABLE, which would
                    // invite a retry of an expired call (Envoy router, since 2026).
                    return Err(ctx.reply_grpc(504, *flags | Flags::UPSTREAM_REQUEST_TIMEOUT, "upstream_response_timeout", "upstream request timeout", Some(GRPC_DEADLINE_EXCEEDED)));
                }
            }
        }
    };
    let Some(outcome) = outcome else {
        // Envoy (ConnectionManagerImpl::onIdleTimeout): 408 "stream timeout", flag SI,
        // details stream_idle_timeout. It passes no gRPC status, so a gRPC caller gets
        // httpToGrpcStatus(408) = UNKNOWN, which `reply` applies (not DEADLINE_EXCEEDED).
        return Err(ctx.reply(
            408,
            *flags | Flags::STREAM_IDLE_TIMEOUT,
            "stream_idle_timeout",
            "stream timeout",
        ));
    };
    match outcome {
        Ok((att, extra)) => {
            flags.insert(extra);
            // The body deadline: the route timeout measured from the end of the request.
            let deadline = match (timeout, &tap) {
                (Some(d), _) if d.from_start => Some(started + d.after),
                (Some(d), None) => Some(started + d.after),
                (Some(d), Some(tap)) if tap.is_done() => {
                    Some(tokio::time::Instant::now() + d.after)
                }
                _ => None,
            };
            Ok((att, deadline))
        }
        Err((f, extra)) => {
            flags.insert(extra | f.flags);
            if let Some(r) = ctx.record.as_mut() {
                r.upstream_host = f.endpoint.clone().unwrap_or_default();
            }
            if f.outcome == retry::Outcome::Overflow {
                return Err(overflow_reply(ctx, *flags));
            }
            let (status, details) = match f.outcome {
                retry::Outcome::Timeout => (504, "upstream_per_try_timeout"),
                _ if f.flags.contains(Flags::NO_HEALTHY_UPSTREAM) => (503, "no_healthy_upstream"),
                _ => (503, "upstream_reset_before_response_started"),
            };
            let (body, grpc) = if status == 504 {
                (
                    "upstream request timeout".to_string(),
                    Some(GRPC_DEADLINE_EXCEEDED),
                )
            } else {
                (f.detail.clone(), None)
            };
            Err(ctx.reply_grpc(status, *flags, details, &body, grpc))
        }
    }
}

static ORIGINAL_DST_HOST: HeaderName = HeaderName::from_static("x-envoy-original-dst-host");

/// Where a PASSTHROUGH request goes: the connection's original destination when it was
/// intercepted; else Envoy's `x-envoy-original-dst-host` header; else the request's
/// authority (an address, or a name resolved through DNS) — so PASSTHROUGH also works
/// for a local dev proxy that receives requests addressed to their real destination.
async fn original_destination(
    conn: &ConnInfo,
    head: &UpstreamHead,
    port: u16,
) -> Option<SocketAddr> {
    if let Some(a) = conn.original_dst {
        return Some(a);
    }
    if let Some(a) = head
        .headers
        .get(&ORIGINAL_DST_HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        return Some(a);
    }
    let auth = head.authority.to_str().ok()?;
    let (host, p) = split_authority(auth);
    let p = p.unwrap_or(port);
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, p)),
        Err(_) => crate::upstream::dns::resolve(&host, p).await.ok(),
    }
}

/// What endpoint selection needs from the request.
#[derive(Clone, Copy, Default)]
struct Pick {
    /// Consistent-hash key.
    hash: Option<u64>,
    /// The original destination (PASSTHROUGH).
    original_dst: Option<SocketAddr>,
    /// Go to `original_dst` whatever the cluster's load balancer (an intercepted inbound
    /// connection to another port of the workload than `forwardTo`'s).
    pinned: bool,
}

type AttemptResult = Result<(forward::Attempt, Flags), (Failure, Flags)>;

async fn attempt_loop(
    cluster: &Cluster,
    state: &Arc<ClusterState>,
    head: &UpstreamHead,
    transport: Transport,
    pick: Pick,
    policy: &RetryPolicy,
    tap: Option<&BodyTap>,
) -> AttemptResult {
    let mut tried: Vec<usize> = Vec::new();
    let mut retries = 0u32;
    // The retry in flight holds a maxRetries slot until its attempt is over.
    let mut retry_slot = None;
    loop {
        let body = match tap {
            None => RequestBody::Empty,
            Some(t) => match t.attempt() {
                Some(b) => b,
                None => {
                    return Err((
                        Failure {
                            outcome: retry::Outcome::Reset,
                            flags: Flags::UPSTREAM_CONNECTION_TERMINATION,
                            endpoint: None,
                            detail: "request body too large to retry".into(),
                        },
                        Flags::NONE,
                    ))
                }
            },
        };
        let exclude: &[usize] = if policy.ignore_previous_hosts {
            &tried
        } else {
            &[]
        };
        // PASSTHROUGH goes to the request's original destination, no balancing.
        let chosen = if pick.pinned || cluster.load_balancer == LoadBalancer::Passthrough {
            pick.original_dst.map(|a| (None, state.passthrough(a)))
        } else {
            lb::pick(state, &cluster.load_balancer, pick.hash, exclude)
                .map(|i| (Some(i), state.endpoints[i].clone()))
        };
        let Some((idx, ep)) = chosen else {
            state
                .no_healthy
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err((
                Failure {
                    outcome: retry::Outcome::ConnectFailure,
                    flags: Flags::NO_HEALTHY_UPSTREAM,
                    endpoint: None,
                    detail: "no healthy upstream".into(),
                },
                Flags::NONE,
            ));
        };
        let ep = &ep;
        let result = forward::send(
            cluster,
            state,
            ep,
            head,
            body,
            transport,
            policy.per_try_timeout,
        )
        .await;
        // Outlier detection sees every attempt, inline.
        match (&result, idx) {
            (_, None) => {}
            (Ok(att), Some(i)) => {
                state.record(i, outlier::Event::Status(att.response.status().as_u16()))
            }
            (Err(f), _) if matches!(f.outcome, retry::Outcome::Overflow) => {}
            (Err(_), Some(i)) => state.record(i, outlier::Event::LocalOriginFailure),
        }
        let outcome = match &result {
            Ok(att) => retry::Outcome::Response {
                status: att.response.status().as_u16(),
                grpc_status: att
                    .response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok()),
                ratelimited: att.response.headers().contains_key("x-envoy-ratelimited"),
            },
            Err(f) => f.outcome,
        };
        let retriable = retry::retriable(policy, outcome);
        let can_replay = tap.is_none_or(|t| t.replayable());
        let mut extra = Flags::NONE;
        if retriable && retries < policy.attempts && can_replay {
            // maxRetries: concurrent retries across the cluster.
            match state.limits.start_retry() {
                Some(slot) => {
                    retries += 1;
                    state
                        .retries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Some(i) = idx {
                        tried.push(i);
                    }
                    tracing::debug!(cluster = %cluster.name, endpoint = %ep.name, ?outcome, retry = retries, "retrying");
                    drop(result);
                    tokio::time::sleep(retry::backoff(policy, retries)).await;
                    retry_slot = Some(slot);
                    continue;
                }
                None => extra.insert(Flags::UPSTREAM_OVERFLOW),
            }
        } else if retriable && policy.attempts > 0 && retries >= policy.attempts {
            // Envoy: URX when the last attempt would have been retried but the limit is reached.
            extra.insert(Flags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
        }
        drop(retry_slot);
        return match result {
            Ok(att) => Ok((att, extra)),
            Err(f) => Err((f, extra)),
        };
    }
}

/// Fire-and-forget copy of the request to a mirror cluster, with the `-shadow` host.
fn spawn_mirror(
    active: Arc<Active>,
    cid: ClusterId,
    head: &UpstreamHead,
    tap: Option<&BodyTap>,
    version: Version,
) {
    let body = match tap {
        None => RequestBody::Empty,
        Some(t) => match t.mirror() {
            Some(b) => b,
            None => return,
        },
    };
    let authority = head
        .authority
        .to_str()
        .ok()
        .and_then(mirror::shadow_authority)
        .unwrap_or_else(|| head.authority.clone());
    let shadow = UpstreamHead {
        method: head.method.clone(),
        path_and_query: head.path_and_query.clone(),
        authority,
        headers: head.headers.clone(),
    };
    tokio::spawn(async move {
        let cluster = active.snapshot.cluster(cid);
        let state = active.cluster(cid);
        let Some(idx) = lb::pick(state, &cluster.load_balancer, None, &[]) else {
            return;
        };
        let transport = Transport::pooled(upstream_h2(cluster, version));
        if !state.limits.start_request() {
            return;
        }
        let _slot = RequestSlot(state.clone());
        if let Ok(att) = forward::send(
            cluster,
            state,
            &state.endpoints[idx].clone(),
            &shadow,
            body,
            transport,
            None,
        )
        .await
        {
            // Read the response to its end so the connection can be reused; discard it.
            let mut body = att.response.into_body();
            let mut complete = true;
            while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
                if frame.is_err() {
                    complete = false;
                    break;
                }
            }
            if let (true, forward::Lease::H1(lease)) = (complete, att.lease) {
                state.park(&att.endpoint, lease);
            }
        }
    });
}

/// INBOUND: forward to the local application.
async fn inbound(
    ctx: &mut Ctx,
    active: &Arc<Active>,
    conn: &ConnInfo,
    parts: Parts,
    authority: String,
) -> Response<ResponseBody> {
    let Some(ib) = active
        .inbound
        .iter()
        .find(|i| *i.listener == *conn.listener)
    else {
        return ctx.reply(503, Flags::NO_CLUSTER_FOUND, "cluster_not_found", "");
    };
    let authz = &active.snapshot.authz;
    if !authz.is_empty() {
        use meshproxy_config::compile::authz::{AuthzRequest, Decision, HttpAttrs};
        let path = crate::policy::path::normalize(parts.uri.path());
        let request = AuthzRequest {
            source_ip: conn.peer.ip(),
            // Istio: numTrustedProxies defaults to 0, so remote.ip is the peer.
            remote_ip: conn.peer.ip(),
            principal: conn
                .peer_identity
                .as_deref()
                .map(|p| p.strip_prefix("spiffe://").unwrap_or(p)),
            destination_ip: conn.original_dst.unwrap_or(conn.local).ip(),
            destination_port: conn
                .original_dst
                .map(|d| d.port())
                .unwrap_or(ib.cluster.key.port),
            sni: None,
            http: Some(HttpAttrs {
                host: &authority,
                method: parts.method.as_str(),
                path: &path,
                headers: &parts.headers,
            }),
        };
        let (decision, audit) = authz.evaluate(&request);
        if let Some(a) = audit {
            tracing::info!(policy = %a, path = parts.uri.path(), "AUDIT policy matched");
        }
        if let Decision::Deny { policy } = decision {
            tracing::debug!(%policy, peer = %conn.peer, "request denied by AuthorizationPolicy");
            // Envoy's RBAC filter: 403, body "RBAC: access denied".
            return ctx.reply(
                403,
                Flags::NONE,
                "rbac_access_denied",
                "RBAC: access denied",
            );
        }
    }
    let version = parts.version;
    let (mut head, request_id) = upstream_head(parts, conn, None, None, None, &authority);
    if let Some(r) = ctx.record.as_mut() {
        r.request_id = request_id.to_str().unwrap_or("").to_string();
        r.upstream_cluster = ib.cluster.name.clone();
    }
    // Istio's inbound sidecar: SANITIZE_SET. A client's own x-forwarded-client-cert is
    // never trusted; the one describing the mTLS peer is set.
    head.headers.remove(&hdr::X_FORWARDED_CLIENT_CERT);
    if let Some(v) = conn
        .xfcc
        .as_deref()
        .and_then(|x| HeaderValue::from_str(x).ok())
    {
        head.headers.insert(hdr::X_FORWARDED_CLIENT_CERT.clone(), v);
    }
    // The local application gets upgrades too (Envoy's inbound routes enable websocket).
    let transport = match &ctx.upgrade {
        Some(u) => {
            u.mark_request(&mut head.headers);
            Transport::Upgrade
        }
        None => Transport::pooled(upstream_h2(&ib.cluster, version)),
    };
    let policy = RetryPolicy {
        attempts: 0,
        ..RetryPolicy::default()
    };
    // Intercepted: the application port the client called, on the forwardTo address
    // (Istio's inbound cluster per workload port, `inbound|<port>||`).
    let pick = match conn.original_dst {
        Some(d) if d.port() != ib.forward_to.port() => Pick {
            original_dst: Some(SocketAddr::new(ib.forward_to.ip(), d.port())),
            pinned: true,
            ..Pick::default()
        },
        _ => Pick::default(),
    };
    let mut flags = Flags::NONE;
    match send_with_retries(
        ctx,
        &ib.cluster,
        &ib.state,
        &head,
        transport,
        pick,
        &policy,
        None,
        &mut flags,
    )
    .await
    {
        Err(resp) => resp,
        Ok((mut att, _)) => {
            let switch = take_switch(ctx, &mut att.response);
            let (mut parts, body) = att.response.into_parts();
            hdr::strip_hop_by_hop(&mut parts.headers);
            let status = parts.status.as_u16();
            if let Some(r) = ctx.record.as_mut() {
                r.upstream_host = att.endpoint.name.clone();
                r.upstream_service_time = Some(ctx.started.elapsed());
            }
            if let Some(switch) = switch {
                return start_tunnel(ctx, parts, switch, (att.lease, att.active), flags, None);
            }
            let mut done = ctx.done(status, flags);
            done.active = Some(att.active);
            done.returnable = Some(Returnable {
                cluster: ib.state.clone(),
                endpoint: att.endpoint.clone(),
                lease: att.lease,
            });
            let body = ResponseBody::upstream(body)
                .with_idle_timeout(ctx.stream_idle, ctx.tap.clone())
                .on_complete(done);
            Response::from_parts(parts, body)
        }
    }
}
