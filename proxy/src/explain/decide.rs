//! From a request to a [`Decision`]: the listener, the port, the virtual host, the rules
//! tried, the route. Each step calls what the data path calls (`lookup`, `RouteTable::find`,
//! `VirtualHost::find_route`); the per-condition detail comes from the matchers' own checks.

use super::action::{self, Ctx};
use super::decision::{
    Decision, ListenerInfo, MatchTrial, RequestInfo, RuleTrial, VirtualHostInfo, WorkloadInfo,
};
use super::request::{self, Parsed, RequestSpec};
use crate::http::sanitize;
use meshproxy_config::compile::listener::{Listener, ListenerRole};
use meshproxy_config::compile::lookup;
use meshproxy_config::compile::matcher::RequestView;
use meshproxy_config::compile::route_table::VirtualHost;
use meshproxy_config::compile::Snapshot;
use meshproxy_config::host::split_authority;
use meshproxy_config::model::proxy::ListenerProtocol;

/// Explains what the compiled config does with `spec`. Errors are the user's: a bad URL,
/// method or header, or a listener or Gateway that does not exist.
pub fn decide(snap: &Snapshot, spec: &RequestSpec) -> Result<Decision, String> {
    let mut req = request::parse(spec)?;
    let listener = pick_listener(snap, spec, &req)?;
    // Before routing, as the connection manager does: the `x-envoy-*` control headers
    // are taken (honoured from internal senders only) and an internal request marked.
    let gateway = matches!(listener.role, ListenerRole::Gateway { .. });
    let (internal, _) = sanitize::control_headers(&snap.proxy, req.peer, &mut req.headers, gateway);
    if req.method == http::Method::CONNECT {
        return Err(
            "CONNECT opens a tunnel (explicit proxy); explain covers routed requests".into(),
        );
    }
    let (host, authority_port) = split_authority(&req.authority);
    let port = lookup::request_port(
        authority_port,
        listener,
        listener.address.port(),
        req.scheme,
    );
    let table = lookup::route_table(snap, listener);
    let mut d = start(&req, listener, &host, port, table.map(|t| t.name.clone()));
    d.workload = WorkloadInfo {
        proxy: snap.proxy.name.clone(),
        namespace: snap.proxy.namespace.clone(),
        labels: snap.proxy.labels.clone(),
    };
    d.request.internal = internal;
    if let ListenerRole::Inbound { forward_to } = listener.role {
        super::inbound::decide(snap, &mut d, &req, spec, forward_to)?;
        return Ok(d);
    }
    if let Some(location) = lookup::https_redirect(listener, &host, &req.path_and_query()) {
        d.outcome = action::local(
            301,
            None,
            format!("the Gateway redirects every plain request: 301 to {location}"),
        );
        d.outcome.location = Some(location.clone());
        d.https_redirect = Some(location);
        return Ok(d);
    }
    let Some(table) = table else {
        d.outcome.summary = "the listener has no route table: 404 (no route)".into();
        return Ok(d);
    };
    let Some(vh) = table.find(&host) else {
        d.outcome.summary = format!("no virtual host for {host:?}: 404 (no route)");
        return Ok(d);
    };
    d.virtual_host = Some(VirtualHostInfo {
        name: vh.name.clone(),
        domains: vh.domains.iter().map(|d| d.to_string()).collect(),
    });
    let view = RequestView {
        method: req.method.as_str(),
        scheme: req.scheme,
        authority: &req.authority,
        path: &req.path,
        query: req.query.as_deref().unwrap_or(""),
        headers: &req.headers,
        port,
    };
    d.rules = rules_tried(vh, &view);
    // The route is the data path's own choice; the trials above only explain it.
    let Some((route, matched)) = vh.find_route(&view) else {
        d.outcome.summary = format!("no rule of {} matched: 404 (no route)", vh.name);
        return Ok(d);
    };
    let ctx = Ctx {
        snap,
        listener,
        req: &req,
        host: &host,
        authority_port,
        port,
    };
    let (info, outcome) = action::route(&ctx, route, matched);
    d.route = Some(info);
    d.outcome = outcome;
    Ok(d)
}

/// The decision before any routing step: the request and the listener, and `404 NR`
/// until a route says otherwise.
fn start(
    req: &Parsed,
    listener: &Listener,
    host: &str,
    port: u16,
    route_table: Option<String>,
) -> Decision {
    Decision {
        request: RequestInfo {
            method: req.method.to_string(),
            scheme: req.scheme.into(),
            authority: req.authority.clone(),
            host: host.to_string(),
            port,
            path: req.path_and_query(),
            source: req.peer.to_string(),
            internal: false,
        },
        listener: ListenerInfo {
            name: listener.name.clone(),
            role: match listener.role {
                ListenerRole::Gateway { .. } => "gateway",
                ListenerRole::Inbound { .. } => "inbound",
                ListenerRole::Outbound => "outbound",
            },
            address: listener.address.to_string(),
            route_table,
        },
        workload: WorkloadInfo::default(),
        https_redirect: None,
        authorization: None,
        virtual_host: None,
        rules: Vec::new(),
        route: None,
        outcome: action::local(404, Some("NR"), String::new()),
    }
}

/// The rules in order up to the first that matches, each match block with its conditions.
fn rules_tried(vh: &VirtualHost, view: &RequestView<'_>) -> Vec<RuleTrial> {
    let mut out = Vec::new();
    for (index, r) in vh.routes.iter().enumerate() {
        let matched = r.find_match(view).is_some();
        out.push(RuleTrial {
            index,
            name: r.name.to_string(),
            origin: r.origin.clone(),
            matched,
            matches: r
                .matches
                .iter()
                .enumerate()
                .map(|(i, m)| MatchTrial {
                    index: i,
                    name: m.name.clone(),
                    matched: m.matches(view),
                    conditions: m.explain(view),
                })
                .collect(),
        });
        if matched {
            break;
        }
    }
    out
}

/// The listener a request arrives on: `--listener NAME`, the listener of `--gateway NAME`
/// (the one on the URL's port when the Gateway has several), or the first OUTBOUND HTTP one.
fn pick_listener<'a>(
    snap: &'a Snapshot,
    spec: &RequestSpec,
    req: &Parsed,
) -> Result<&'a Listener, String> {
    let names = || {
        let v: Vec<&str> = snap.listeners.iter().map(|l| l.name.as_str()).collect();
        v.join(", ")
    };
    let routed = |l: &Listener| l.route_table.is_some() || l.tcp_routes.is_none();
    if let Some(name) = &spec.listener {
        let l = snap
            .listeners
            .iter()
            .find(|l| l.name == *name)
            .ok_or_else(|| format!("no listener {name:?} (listeners: {})", names()))?;
        return if routed(l) {
            Ok(l)
        } else {
            Err(format!("listener {name:?} is a TCP listener"))
        };
    }
    if let Some(gw) = &spec.gateway {
        let serves = |l: &&Listener| match &l.role {
            ListenerRole::Gateway { servers } => servers.iter().any(|s| {
                s.gateway == *gw || s.gateway.rsplit_once('/').is_some_and(|(_, n)| n == gw)
            }),
            _ => false,
        };
        let candidates: Vec<&Listener> = snap.listeners.iter().filter(serves).collect();
        let port = req.url_port.or(split_authority(&req.authority).1);
        return candidates
            .iter()
            .find(|l| Some(l.address.port()) == port)
            .or(candidates.first())
            .copied()
            .ok_or_else(|| format!("no listener serves Gateway {gw:?} on this proxy (a Gateway applies when its selector matches the Proxy's workload labels)"));
    }
    snap.listeners
        .iter()
        .find(|l| l.role == ListenerRole::Outbound && l.protocol != ListenerProtocol::Tcp)
        .ok_or_else(|| format!("no OUTBOUND HTTP listener (listeners: {}); choose one with --listener or --gateway", names()))
}
