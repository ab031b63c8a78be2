//! INBOUND listeners: a request that reached this workload's sidecar is authorized
//! (AuthorizationPolicy, DENY before ALLOW) and forwarded to the local application, with
//! Istio's `x-forwarded-client-cert` describing the mTLS peer.

use super::attempts::{self, Attempts, Pick};
use super::exchange::Exchange;
use super::forward::{Transport, UpstreamHead};
use super::relay::{self, ResponseEdits};
use super::tunnel;
use super::upstream_head::{self, Edits};
use crate::body::ResponseBody;
use crate::conn_info::ConnInfo;
use crate::flags::Flags;
use crate::policy::grpc_timeout;
use crate::policy::headers as hdr;
use crate::runtime::active::{Active, InboundCluster};
use http::header::{HeaderMap, HeaderValue};
use http::request::Parts;
use http::Response;
use meshproxy_config::compile::authz::{AuthzRequest, HttpAttrs};
use meshproxy_config::compile::route::RetryPolicy;

/// What AuthorizationPolicy sees of a request on connection `conn` (`path` normalized
/// with [`crate::policy::path::normalize`]); `meshproxy explain` builds it the same way.
pub(crate) fn authz_request<'a>(
    conn: &'a ConnInfo,
    parts: &'a Parts,
    authority: &'a str,
    path: &'a str,
    cluster_port: u16,
) -> AuthzRequest<'a> {
    AuthzRequest {
        http: Some(HttpAttrs {
            host: authority,
            method: parts.method.as_str(),
            path,
            headers: &parts.headers,
        }),
        ..conn.authz_request(cluster_port)
    }
}

/// Authorizes the request and forwards it to the application.
pub(super) async fn forward(
    x: &mut Exchange,
    mut parts: Parts,
    authority: String,
) -> Response<ResponseBody> {
    let active = x.active.clone();
    let Some(ib) = active
        .inbound
        .iter()
        .find(|i| *i.listener == *x.conn.listener)
    else {
        return x.reply(503, Flags::NO_CLUSTER_FOUND, "cluster_not_found", "");
    };
    if let Some(resp) = admit(x, &mut parts, &authority, ib).await {
        return resp;
    }
    let version = parts.version;
    let mut head = application_request(x, parts, &authority, ib);
    let (policy, timeout) = policies(x);
    // The local application gets upgrades too (Envoy's inbound routes enable websocket).
    let transport = match &x.upgrade {
        Some(u) => {
            u.mark_request(&mut head.headers);
            Transport::Upgrade
        }
        None => Transport::pooled(upstream_head::upstream_h2(&ib.cluster, version)),
    };
    let a = Attempts {
        cluster: &ib.cluster,
        state: &ib.state,
        head: &head,
        transport,
        pick: application_pick(x, &active, ib),
        policy: &policy,
        timeout,
    };
    let mut flags = Flags::NONE;
    match attempts::run(x, a, &mut flags).await {
        Err(resp) => resp,
        Ok((mut att, _)) => {
            let edits = ResponseEdits {
                ops: &[],
                cors: HeaderMap::new(),
                cookie: None,
                service_time: true,
            };
            let switch = tunnel::take_switch(x, &mut att.response);
            relay::respond(x, att, &ib.state, switch, edits, (flags, None, None))
        }
    }
}

/// The checks before the application sees the request, in Envoy's filter order:
/// RequestAuthentication, AuthorizationPolicy (with the token's claims), RateLimitPolicy.
async fn admit(
    x: &mut Exchange,
    parts: &mut Parts,
    authority: &str,
    ib: &InboundCluster,
) -> Option<Response<ResponseBody>> {
    let mut jwt = None;
    if let Some(resp) = super::authn::authenticate(x, parts, &mut jwt) {
        return Some(resp);
    }
    let claims = jwt.as_ref().map(|v| &v.claims);
    if let Some(resp) = authorize(x, parts, authority, ib.cluster.key.port, claims) {
        return Some(resp);
    }
    let active = x.active.clone();
    let limiter = active.rate_limiter.as_deref()?;
    let port = x
        .conn
        .original_dst
        .map_or(ib.cluster.key.port, |d| d.port());
    rate_limit(x, limiter, parts, authority, port).await
}

/// The request as the application gets it: Istio's inbound sidecar sets
/// `x-forwarded-client-cert` (SANITIZE_SET: a client's own is never trusted; the one
/// describing the mTLS peer is set).
fn application_request(
    x: &mut Exchange,
    parts: Parts,
    authority: &str,
    ib: &InboundCluster,
) -> UpstreamHead {
    let mut head = upstream_head::build(parts, &x.conn, &Edits::default(), authority);
    if let Some(r) = x.record.as_mut() {
        r.upstream_cluster = ib.cluster.name.clone();
    }
    if let Some(s) = x.span.as_mut() {
        s.tag("upstream_cluster", &*ib.cluster.name);
    }
    head.headers.remove(&hdr::X_FORWARDED_CLIENT_CERT);
    if let Some(v) = x
        .conn
        .xfcc
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        head.headers.insert(hdr::X_FORWARDED_CLIENT_CERT.clone(), v);
    }
    head
}

/// Intercepted: the application port the client called, on the forwardTo address
/// (Istio's inbound cluster per workload port, `inbound|<port>||`), or where the
/// Sidecar's `ingress[].defaultEndpoint` for that port says.
fn application_pick(x: &Exchange, active: &Active, ib: &InboundCluster) -> Pick {
    let port = x
        .conn
        .original_dst
        .map_or(ib.forward_to.port(), |d| d.port());
    let target = active.snapshot.proxy.inbound_target(ib.forward_to, port);
    if target == ib.forward_to {
        return Pick::default();
    }
    Pick {
        original_dst: Some(target),
        pinned: true,
        ..Pick::default()
    }
}

/// RateLimitPolicy on the request, seen as a route match sees it.
async fn rate_limit(
    x: &mut Exchange,
    limiter: &crate::ratelimit::RateLimiter,
    parts: &Parts,
    authority: &str,
    port: u16,
) -> Option<Response<ResponseBody>> {
    let view = meshproxy_config::compile::matcher::RequestView {
        method: parts.method.as_str(),
        scheme: x.conn.scheme,
        authority,
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        port,
    };
    let (host, _) = meshproxy_config::host::split_authority(authority);
    super::rate_limit::check(x, limiter, &host, &view).await
}

/// AuthorizationPolicy on the request: `Some(403)` when it is denied (Envoy's RBAC
/// filter: body "RBAC: access denied"); AUDIT matches are logged. `jwt` is the payload of
/// the request's verified token.
pub(super) fn authorize(
    x: &mut Exchange,
    parts: &Parts,
    authority: &str,
    cluster_port: u16,
    jwt: Option<&meshproxy_config::compile::authz::JwtClaims>,
) -> Option<Response<ResponseBody>> {
    use meshproxy_config::compile::authz::Decision;
    let authz = &x.active.snapshot.authz;
    if authz.is_empty() {
        return None;
    }
    let path = crate::policy::path::normalize(parts.uri.path());
    let mut request = authz_request(&x.conn, parts, authority, &path, cluster_port);
    request.jwt = jwt;
    let (decision, audit) = authz.evaluate(&request);
    if let Some(a) = audit {
        tracing::info!(policy = %a, path = parts.uri.path(), "AUDIT policy matched");
    }
    let Decision::Deny { policy } = decision else {
        return None;
    };
    tracing::debug!(%policy, peer = %x.conn.peer, "request denied by AuthorizationPolicy");
    Some(x.reply(
        403,
        Flags::NONE,
        "rbac_access_denied",
        "RBAC: access denied",
    ))
}

/// The inbound router has no retries or timeout of its own; it honours an internal
/// sender's `x-envoy-*` headers as any Envoy router does.
fn policies(x: &Exchange) -> (RetryPolicy, Option<grpc_timeout::Deadline>) {
    let Some(o) = &x.overrides else {
        return (RetryPolicy::NONE, None);
    };
    let timeout = o
        .timeout
        .filter(|t| !t.is_zero())
        .map(|after| grpc_timeout::Deadline {
            after,
            from_start: false,
        });
    (o.retry_policy(&RetryPolicy::NONE, None), timeout)
}
