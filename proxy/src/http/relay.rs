//! Forwarding a routed request to its cluster: the upstream head, mirrors, the cluster's
//! request limit, the attempts ([`super::attempts`]), and the upstream's response relayed
//! with the route's header operations — or turned into a tunnel on a 101.

use super::attempts::{self, Attempts, Pick};
use super::completion::Returnable;
use super::dispatch::Routed;
use super::exchange::Exchange;
use super::forward::{self, Transport, UpstreamHead};
use super::upstream_head::{self, Edits};
use super::{shadow, tunnel};
use crate::body::ResponseBody;
use crate::flags::Flags;
use crate::policy::{envoy_headers, grpc_timeout, headers as hdr, mirror};
use crate::upstream::cluster_state::ClusterState;
use crate::upstream::limits::RequestSlot;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::Response;
use meshproxy_config::compile::cluster::LoadBalancer;
use meshproxy_config::compile::route::{HeaderOps, RetryPolicy, WeightedDestination};
use meshproxy_config::compile::ClusterId;
use std::borrow::Cow;
use std::sync::Arc;

static UPSTREAM_SERVICE_TIME: HeaderName = HeaderName::from_static("x-envoy-upstream-service-time");

/// The destination the route picked and what the filters before the router left.
pub(super) struct Chosen<'a> {
    /// The weighted destination.
    pub dest: &'a WeightedDestination,
    /// Its cluster.
    pub cid: ClusterId,
    /// CORS headers for the response.
    pub cors_headers: HeaderMap,
    /// Flags so far (a fault delay).
    pub flags: Flags,
}

/// Forwards the request to the chosen cluster and relays what comes back.
pub(super) async fn to_cluster(
    x: &mut Exchange,
    parts: Parts,
    r: &Routed<'_>,
    c: Chosen<'_>,
) -> Response<ResponseBody> {
    let active = x.active.clone();
    let cluster = active.snapshot.cluster(c.cid);
    let state = active.cluster(c.cid);
    if let Some(l) = x.labels.as_mut() {
        l.service = state.service_labels.clone();
    }
    let version = parts.version;
    let head = upstream_request(x, parts, r, &c, &cluster.name);
    let upgrading = x.upgrade.is_some();
    // http2MaxRequests: requests in flight to the cluster (HTTP/1.1 and HTTP/2 alike).
    if !state.limits.start_request() {
        return x.overflow_reply(c.flags);
    }
    let slot = RequestSlot(state.clone());
    let (hash, set_cookie) = upstream_head::hash_key(cluster, &head, x.conn.peer);
    let original_dst = if cluster.load_balancer == LoadBalancer::Passthrough {
        upstream_head::original_destination(&x.conn, &head, r.port).await
    } else {
        None
    };
    let mut flags = c.flags;
    let mut head = head;
    let (policy, timeout) = policies(x, r, &head, upgrading);
    if let Some(v) =
        envoy_headers::expected_timeout(timeout.map(|d| d.after), policy.per_try_timeout)
    {
        head.headers
            .insert(envoy_headers::X_ENVOY_EXPECTED_RQ_TIMEOUT_MS.clone(), v);
    }
    let attempt = Attempts {
        cluster,
        state,
        head: &head,
        transport: if upgrading {
            Transport::Upgrade
        } else {
            Transport::pooled(upstream_head::upstream_h2(cluster, version))
        },
        pick: Pick {
            hash,
            original_dst,
            pinned: false,
        },
        policy: &policy,
        timeout,
    };
    let relayed = attempts::run(x, attempt, &mut flags).await;
    let route_headers = [&r.route.policy.response_headers, c.dest.response_headers()];
    match relayed {
        Err(mut resp) => {
            // Envoy: the router's local replies (503, 504, 408) are finalized with the
            // route's and the weighted destination's response headers, like responses.
            for h in route_headers {
                hdr::apply(h, resp.headers_mut());
            }
            resp
        }
        Ok((mut att, deadline)) => {
            let edits = ResponseEdits {
                ops: &route_headers,
                cors: c.cors_headers,
                cookie: set_cookie,
                service_time: true,
            };
            let switch = tunnel::take_switch(x, &mut att.response);
            respond(x, att, state, switch, edits, (flags, Some(slot), deadline))
        }
    }
}

/// The retry policy and the timeout of the request: the route's, or what an internal
/// sender asked with `x-envoy-*` headers (the timeout header replaces the route's and a
/// gRPC deadline; 0 turns it off). Envoy: retries (and so per-try timeouts) do not apply
/// to upgrade requests; the route timeout does, until the upstream's response head (the
/// 101) arrives.
fn policies<'a>(
    x: &Exchange,
    r: &'a Routed<'_>,
    head: &UpstreamHead,
    upgrading: bool,
) -> (Cow<'a, RetryPolicy>, Option<grpc_timeout::Deadline>) {
    let timeout = match x.overrides.as_ref().and_then(|o| o.timeout) {
        Some(t) => (!t.is_zero()).then_some(grpc_timeout::Deadline {
            after: t,
            from_start: false,
        }),
        None => route_timeout(x.grpc, head, r),
    };
    if upgrading {
        return (Cow::Owned(RetryPolicy::NONE), timeout);
    }
    let policy = match &x.overrides {
        Some(o) => Cow::Owned(o.retry_policy(&r.route.policy.retry, timeout.map(|d| d.after))),
        None => Cow::Borrowed(&r.route.policy.retry),
    };
    (policy, timeout)
}

/// The route timeout, or a gRPC caller's shorter `grpc-timeout` (counted from the
/// request's start).
fn route_timeout(
    grpc: bool,
    head: &UpstreamHead,
    r: &Routed<'_>,
) -> Option<grpc_timeout::Deadline> {
    let grpc_deadline = grpc
        .then(|| head.headers.get(&grpc_timeout::GRPC_TIMEOUT))
        .flatten()
        .and_then(|v| grpc_timeout::parse(v.as_bytes()));
    grpc_timeout::effective(r.route.policy.timeout, grpc_deadline)
}

/// The request as it goes upstream, noted in the access log; an upgrade request is
/// marked as one, any other is mirrored per the route (Envoy does not shadow upgrade
/// requests: a mirror cannot take part in a tunnel).
fn upstream_request(
    x: &mut Exchange,
    parts: Parts,
    r: &Routed<'_>,
    c: &Chosen<'_>,
    cluster_name: &Arc<str>,
) -> UpstreamHead {
    let version = parts.version;
    let edits = Edits {
        route: Some(r.route),
        matched: r.matched,
        dest: Some(c.dest),
        use_remote_address: r.gateway,
    };
    let mut head = upstream_head::build(parts, &x.conn, &edits, r.authority);
    if let Some(rec) = x.record.as_mut() {
        rec.upstream_cluster = cluster_name.clone();
    }
    if let Some(s) = x.span.as_mut() {
        s.tag("upstream_cluster", &**cluster_name);
    }
    if let Some(u) = &x.upgrade {
        u.mark_request(&mut head.headers);
        return head;
    }
    for m in &r.route.policy.mirrors {
        if !mirror::draw(m.per_million) {
            continue;
        }
        if let Some(mid) = m.target.resolve(r.port) {
            shadow::spawn(x.active.clone(), mid, &head, x.tap.as_ref(), version);
        }
    }
    head
}

/// What is done to an upstream response's headers before it goes downstream.
pub(super) struct ResponseEdits<'a> {
    /// Header operations, in order (the route's, then the destination's).
    pub ops: &'a [&'a HeaderOps],
    /// CORS headers, set after them.
    pub cors: HeaderMap,
    /// A generated consistent-hash cookie, added to the upstream's own `Set-Cookie`s.
    pub cookie: Option<HeaderValue>,
    /// Add `x-envoy-upstream-service-time`.
    pub service_time: bool,
}

/// Relays an upstream response downstream: hop-by-hop headers stripped, edits applied,
/// then either the tunnel on a 101 or the body streamed with the completion that
/// records the request and gives the connection back.
pub(super) fn respond(
    x: &mut Exchange,
    att: forward::Attempt,
    state: &Arc<ClusterState>,
    switch: Option<tunnel::Switch>,
    edits: ResponseEdits<'_>,
    (flags, slot, deadline): (Flags, Option<RequestSlot>, Option<tokio::time::Instant>),
) -> Response<ResponseBody> {
    let (mut parts, body) = att.response.into_parts();
    hdr::strip_hop_by_hop(&mut parts.headers);
    for ops in edits.ops {
        hdr::apply(ops, &mut parts.headers);
    }
    parts.headers.extend(edits.cors);
    if let Some(c) = edits.cookie {
        parts.headers.append(header::SET_COOKIE, c);
    }
    let ust = x.started.elapsed();
    if edits.service_time {
        if let Ok(v) = HeaderValue::from_str(&ust.as_millis().to_string()) {
            parts.headers.insert(UPSTREAM_SERVICE_TIME.clone(), v);
        }
    }
    let status = parts.status.as_u16();
    if let Some(r) = x.record.as_mut() {
        r.upstream_host = att.endpoint.name.clone();
        r.upstream_service_time = Some(ust);
    }
    if let Some(switch) = switch {
        // Envoy: the route timeout ends at the 101 (no deadline on the tunnel).
        return tunnel::start(x, parts, switch, (att.lease, att.active), flags, slot);
    }
    let mut done = x.done(status, flags);
    done.grpc_status = parts
        .headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    done.active = Some(att.active);
    done.request_slot = slot;
    done.returnable = Some(Returnable {
        cluster: state.clone(),
        endpoint: att.endpoint.clone(),
        lease: att.lease,
    });
    let body = ResponseBody::upstream(body)
        .with_deadline(deadline)
        .with_idle_timeout(x.stream_idle, x.tap.clone())
        .on_complete(done);
    Response::from_parts(parts, body)
}
