//! The chosen route's action for one request, computed by the data path's own functions:
//! the weighted destinations resolved to clusters for the request's port, the redirect
//! `Location` ([`crate::policy::redirect`]), the upstream request head
//! ([`crate::http::upstream_head::build`]: rewrites, forwarding headers, header
//! operations), and the outcome with Envoy's response flag.

use super::decision::{Action, Destination, Outcome, RouteInfo, Upstream};
use super::describe;
use super::request::Parsed;
use crate::conn_info::ConnInfo;
use crate::http::upstream_head::{self, Edits};
use crate::policy::{cors, headers as hdr, redirect};
use http::HeaderMap;
use meshproxy_config::compile::cluster::BLACKHOLE_CLUSTER;
use meshproxy_config::compile::listener::{Listener, ListenerRole};
use meshproxy_config::compile::matcher::RouteMatch;
use meshproxy_config::compile::route::{
    Abort, DirectResponse, Route, RouteAction, WeightedClusters, WeightedDestination,
};
use meshproxy_config::compile::Snapshot;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the action needs to know about the request and where it arrived.
pub struct Ctx<'a> {
    /// The compiled config.
    pub snap: &'a Snapshot,
    /// The listener.
    pub listener: &'a Listener,
    /// The request.
    pub req: &'a Parsed,
    /// Host of the authority, normalized.
    pub host: &'a str,
    /// Port written in the authority.
    pub authority_port: Option<u16>,
    /// The port routing uses.
    pub port: u16,
}

/// A local reply.
pub fn local(status: u16, flag: Option<&'static str>, summary: String) -> Outcome {
    Outcome {
        kind: "local_reply",
        status: Some(status),
        flag,
        clusters: Vec::new(),
        location: None,
        summary,
    }
}

/// The route's description and the request's outcome.
pub fn route(ctx: &Ctx<'_>, route: &Route, matched: Option<&RouteMatch>) -> (RouteInfo, Outcome) {
    let p = &route.policy;
    let (action, outcome) = match &route.action {
        RouteAction::Forward(wc) => forward(ctx, route, matched, wc),
        RouteAction::Redirect(rd) => {
            let location = redirect::location(
                rd,
                &redirect::RequestParts {
                    scheme: ctx.req.scheme,
                    host: ctx.host,
                    authority_port: ctx.authority_port,
                    listener_port: ctx.listener.address.port(),
                    path: &ctx.req.path,
                    query: ctx.req.query.as_deref().unwrap_or(""),
                },
                matched,
            );
            let mut o = local(rd.code, None, format!("redirect {} to {location}", rd.code));
            o.location = Some(location.clone());
            let action = Action::Redirect {
                status: rd.code,
                location,
            };
            (action, o)
        }
        RouteAction::DirectResponse(d) => direct(ctx, d),
    };
    let (virtual_service, rule_index) = origin_parts(&route.origin);
    let mut header_ops = describe::header_ops("request", &p.request_headers);
    header_ops.extend(describe::header_ops("response", &p.response_headers));
    let rewrite = p.rewrite.as_ref().map(|rw| {
        let mut parts = Vec::new();
        if let Some(u) = &rw.uri {
            parts.push(format!("uri {u:?}"));
        }
        if let Some((re, to)) = &rw.uri_regex {
            parts.push(format!("uriRegexRewrite {:?} -> {to:?}", re.as_str()));
        }
        if let Some(a) = &rw.authority {
            parts.push(format!(
                "authority {:?}",
                String::from_utf8_lossy(a.as_bytes())
            ));
        }
        parts.join(", ")
    });
    let info = RouteInfo {
        name: route.name.to_string(),
        origin: route.origin.clone(),
        virtual_service,
        rule_index,
        action,
        timeout: p.timeout.map_or("none".into(), describe::duration),
        retries: describe::retries(&p.retry),
        fault: p.fault.as_ref().map(describe::fault),
        mirrors: p
            .mirrors
            .iter()
            .map(|m| format!("{} ({})", m.host, describe::percent(m.per_million)))
            .collect(),
        rewrite,
        header_ops,
        cors: p.cors.is_some(),
    };
    (info, outcome)
}

/// `VirtualService/ns/name#http[i]` (a delegate's leaf first) → (`ns/name`, `i`).
fn origin_parts(origin: &str) -> (Option<String>, Option<usize>) {
    let leaf = origin.split(" via ").next().unwrap_or(origin);
    let Some(rest) = leaf.strip_prefix("VirtualService/") else {
        return (None, None);
    };
    let (vs, rule) = rest.split_once("#http[").unwrap_or((rest, ""));
    let index = rule.strip_suffix(']').and_then(|i| i.parse().ok());
    (Some(vs.to_string()), index)
}

fn direct(ctx: &Ctx<'_>, d: &DirectResponse) -> (Action, Outcome) {
    let action = Action::DirectResponse {
        status: d.status,
        body: String::from_utf8_lossy(&d.body).into_owned(),
    };
    let mut o = local(d.status, None, format!("direct response {}", d.status));
    if let Some(cid) = d.cluster {
        let name = ctx.snap.cluster(cid).name.clone();
        if &*name == BLACKHOLE_CLUSTER {
            o.summary = format!(
                "local reply {}: no service or VirtualService knows host {:?} and outboundTrafficPolicy is REGISTRY_ONLY ({name})",
                d.status, ctx.host
            );
        }
        o.clusters.push(name.to_string());
    }
    (action, o)
}

fn forward(
    ctx: &Ctx<'_>,
    route: &Route,
    matched: Option<&RouteMatch>,
    wc: &WeightedClusters,
) -> (Action, Outcome) {
    let total = wc.total_weight.max(1) as f64;
    // Envoy's filter order: CORS answers a preflight before the fault filter and the
    // router; otherwise its headers join the response.
    let verdict = route
        .policy
        .cors
        .as_ref()
        .map(|c| cors::evaluate(c, &ctx.req.method, &ctx.req.headers));
    let cors_headers = match &verdict {
        Some(cors::Verdict::Forward(h)) => h.clone(),
        _ => HeaderMap::new(),
    };
    let destinations: Vec<Destination> = wc
        .destinations
        .iter()
        .map(|d| destination(ctx, route, matched, d, total, &cors_headers))
        .collect();
    let mut clusters: Vec<String> = Vec::new();
    for c in destinations.iter().filter_map(|d| d.cluster.clone()) {
        if !clusters.contains(&c) {
            clusters.push(c);
        }
    }
    let preflight = matches!(
        verdict,
        Some(cors::Verdict::Preflight(_) | cors::Verdict::IgnoredPreflight)
    );
    let outcome = forward_outcome(route, clusters, preflight);
    (Action::Forward { destinations }, outcome)
}

/// The outcome of a forwarding route: a CORS preflight answered, an abort for every
/// request, no cluster (`503 NC`), or forwarded (with a partial abort or a delay noted).
fn forward_outcome(route: &Route, clusters: Vec<String>, preflight: bool) -> Outcome {
    // Envoy's filter order: the fault filter answers before the router forwards.
    let abort = route.policy.fault.as_ref().and_then(|f| f.abort);
    match abort {
        _ if preflight => local(200, None, "a CORS preflight, answered by the proxy".into()),
        Some((a, pm)) if pm >= 1_000_000 => {
            let status = match a {
                Abort::Http(s) => s,
                Abort::Grpc(_) => 200,
            };
            local(
                status,
                Some("FI"),
                format!("fault injection aborts every request: {status}"),
            )
        }
        _ if clusters.is_empty() => local(
            503,
            Some("NC"),
            "no cluster for the destination: 503 (cluster not found)".into(),
        ),
        _ => {
            let mut summary = match clusters.as_slice() {
                [one] => format!("forwarded to {one}"),
                many => format!("forwarded to one of {} (by weight)", many.join(", ")),
            };
            if let Some((_, pm)) = abort {
                summary.push_str(&format!(
                    "; fault injection aborts {}",
                    describe::percent(pm)
                ));
            }
            if let Some((delay, pm)) = route.policy.fault.as_ref().and_then(|f| f.delay) {
                summary.push_str(&format!(
                    "; fault injection delays {} of requests by {} (flag DI)",
                    describe::percent(pm),
                    describe::duration(delay)
                ));
            }
            Outcome {
                kind: "forward",
                status: None,
                flag: None,
                clusters,
                location: None,
                summary,
            }
        }
    }
}

fn destination(
    ctx: &Ctx<'_>,
    route: &Route,
    matched: Option<&RouteMatch>,
    d: &WeightedDestination,
    total: f64,
    cors_headers: &HeaderMap,
) -> Destination {
    let cluster = d.target.resolve(ctx.port).map(|cid| ctx.snap.cluster(cid));
    let missing = match (&cluster, &d.target) {
        (Some(_), _) => None,
        (None, meshproxy_config::compile::route::ClusterChoice::Missing { reason }) => {
            Some(reason.clone())
        }
        (None, _) => Some(format!("the service has no port {}", ctx.port)),
    };
    let mut header_ops = describe::header_ops("request", d.request_headers());
    header_ops.extend(describe::header_ops("response", d.response_headers()));
    let mut response = HeaderMap::new();
    hdr::apply(&route.policy.response_headers, &mut response);
    hdr::apply(d.response_headers(), &mut response);
    response.extend(cors_headers.clone());
    let mut response_headers = header_map(&response)
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect::<BTreeMap<_, _>>();
    for k in route
        .policy
        .response_headers
        .remove
        .iter()
        .chain(&d.response_headers().remove)
    {
        response_headers.entry(k.to_string()).or_insert(None);
    }
    Destination {
        weight: d.weight,
        percent: (d.weight as f64 * 10_000.0 / total).round() / 100.0,
        host: d.host.clone(),
        subset: d.subset.clone(),
        port: cluster.map(|c| c.key.port).filter(|p| *p != 0),
        cluster: cluster.map(|c| c.name.to_string()),
        missing,
        policy: cluster.map(describe::cluster_policy),
        header_ops,
        upstream: upstream(ctx, route, matched, d),
        response_headers,
    }
}

/// The request head the data path would send to `d`.
fn upstream(
    ctx: &Ctx<'_>,
    route: &Route,
    matched: Option<&RouteMatch>,
    d: &WeightedDestination,
) -> Upstream {
    let mut builder = http::Request::builder()
        .method(ctx.req.method.clone())
        .uri(ctx.req.path_and_query());
    if let Some(h) = builder.headers_mut() {
        h.clone_from(&ctx.req.headers);
    }
    let parts = match builder.body(()) {
        Ok(r) => r.into_parts().0,
        // The path was parsed from a URI already; a failure here would be a bug.
        Err(_) => http::Request::new(()).into_parts().0,
    };
    let conn = conn_info(ctx);
    let edits = Edits {
        route: Some(route),
        matched,
        dest: Some(d),
        use_remote_address: matches!(ctx.listener.role, ListenerRole::Gateway { .. }),
    };
    let head = upstream_head::build(parts, &conn, &edits, &ctx.req.authority);
    Upstream {
        path: head.path_and_query,
        authority: String::from_utf8_lossy(head.authority.as_bytes()).into_owned(),
        headers: header_map(&head.headers),
    }
}

/// The connection an explained request arrives on: from its source address to the
/// listener.
fn conn_info(ctx: &Ctx<'_>) -> ConnInfo {
    let peer = SocketAddr::new(ctx.req.peer, 0);
    ConnInfo {
        listener: Arc::from(ctx.listener.name.as_str()),
        local: ctx.listener.address,
        peer,
        peer_ip: hdr::ip_value(peer.ip()),
        scheme: ctx.req.scheme,
        original_dst: None,
        kill: tokio::sync::watch::channel(false).1,
        peer_identity: None,
        peer_labels: None,
        xfcc: None,
        slots: None,
    }
}

/// Headers as name → value (several values joined with `,`).
fn header_map(h: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in h {
        let v = String::from_utf8_lossy(v.as_bytes());
        out.entry(k.to_string())
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_name_the_virtual_service_and_rule() {
        assert_eq!(
            origin_parts("VirtualService/default/reviews#http[1]"),
            (Some("default/reviews".into()), Some(1))
        );
        assert_eq!(
            origin_parts("VirtualService/ns/leaf#http[0] via VirtualService/ns/root#http[2]"),
            (Some("ns/leaf".into()), Some(0))
        );
        assert_eq!(origin_parts("default route to a.b"), (None, None));
    }
}
