//! The request as it goes upstream: the rewritten path and authority, hop-by-hop headers
//! removed, forwarding headers, the route's and destination's header operations; and what
//! endpoint choice needs from it (HTTP/2 or not, the consistent-hash key, the original
//! destination of a PASSTHROUGH request).

use super::forward::UpstreamHead;
use crate::conn_info::ConnInfo;
use crate::policy::envoy_headers;
use crate::policy::headers as hdr;
use crate::upstream::hash_ring;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::Version;
use meshproxy_config::compile::cluster::{Cluster, HashKey, LoadBalancer};
use meshproxy_config::compile::matcher::RouteMatch;
use meshproxy_config::compile::route::{Route, WeightedDestination};
use meshproxy_config::host::split_authority;
use std::net::SocketAddr;

/// The header and path edits a request gets: none for INBOUND, the route's and the
/// weighted destination's otherwise.
#[derive(Clone, Copy, Default)]
pub(crate) struct Edits<'a> {
    /// The route (rewrite, request header operations).
    pub route: Option<&'a Route>,
    /// What its match captured (for a prefix or regex rewrite).
    pub matched: Option<&'a RouteMatch>,
    /// The destination (authority override, request header operations).
    pub dest: Option<&'a WeightedDestination>,
    /// Envoy's `use_remote_address` (Istio: gateways): the client address is appended to
    /// `x-forwarded-for` and `x-forwarded-proto` is set from the connection; sidecars
    /// pass both through (setting `x-forwarded-proto` only when absent).
    pub use_remote_address: bool,
}

/// Builds the upstream request head: rewritten path and authority, hop-by-hop headers
/// removed, forwarding headers, then the route's and the destination's header operations.
pub(crate) fn build(
    mut parts: Parts,
    conn: &ConnInfo,
    edits: &Edits<'_>,
    authority: &str,
) -> UpstreamHead {
    let Edits {
        route,
        matched,
        dest,
        use_remote_address,
    } = *edits;
    let path = parts.uri.path();
    let query = parts.uri.query();
    let rewritten = route
        .and_then(|r| r.policy.rewrite.as_ref())
        .and_then(|rw| rw.path(path, matched));
    let rewritten_any = rewritten.as_deref().is_some_and(|r| r != path);
    let original = rewritten_any
        .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_string()))
        .flatten();
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
        .or_else(|| dest.and_then(|d| d.authority().cloned()))
        .or_else(|| HeaderValue::from_str(authority).ok())
        .unwrap_or_else(|| HeaderValue::from_static("localhost"));
    let headers = &mut parts.headers;
    hdr::strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    hdr::forwarding(headers, &conn.peer_ip, conn.scheme, use_remote_address);
    if rewritten_any {
        // Envoy: the path before a prefix or regex rewrite.
        if let Some(v) = original
            .as_deref()
            .and_then(|o| HeaderValue::from_str(o).ok())
        {
            headers.insert(envoy_headers::X_ENVOY_ORIGINAL_PATH.clone(), v);
        }
    }
    if let Some(r) = route {
        hdr::apply(&r.policy.request_headers, headers);
    }
    if let Some(d) = dest {
        hdr::apply(d.request_headers(), headers);
    }
    UpstreamHead {
        method: parts.method,
        path_and_query,
        authority,
        headers: parts.headers,
    }
}

/// Whether to speak HTTP/2 to the upstream: the service port's protocol (`HTTP2`,
/// `GRPC`), `h2UpgradePolicy: UPGRADE`, or the client's protocol with `useClientProtocol`.
pub(super) fn upstream_h2(cluster: &Cluster, downstream: Version) -> bool {
    if cluster.pool.use_client_protocol {
        downstream == Version::HTTP_2
    } else {
        cluster.protocol.is_h2() || cluster.pool.h2_upgrade
    }
}

/// The consistent-hash key of a request, and a cookie to set when one was generated.
pub(super) fn hash_key(
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
                    let (hash, cookie) = new_cookie(name, path, *ttl, attributes);
                    (Some(hash), cookie)
                }
                (None, None) => (None, None),
            }
        }
    }
}

/// Envoy generates the hash cookie when it is absent and a ttl is configured: a random
/// value, its hash, and the `Set-Cookie` to send with the response.
fn new_cookie(
    name: &str,
    path: &str,
    ttl: std::time::Duration,
    attributes: &[(String, String)],
) -> (u64, Option<HeaderValue>) {
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
        hash_ring::hash_key(value.as_bytes()),
        HeaderValue::from_str(&c).ok(),
    )
}

static ORIGINAL_DST_HOST: HeaderName = HeaderName::from_static("x-envoy-original-dst-host");

/// Where a PASSTHROUGH request goes: the connection's original destination when it was
/// intercepted; else Envoy's `x-envoy-original-dst-host` header; else the request's
/// authority (an address, or a name resolved through DNS) — so PASSTHROUGH also works
/// for a local dev proxy that receives requests addressed to their real destination.
pub(super) async fn original_destination(
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
