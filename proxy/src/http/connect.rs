//! `CONNECT` on OUTBOUND listeners: the explicit-proxy mode of a local dev proxy
//! (`HTTPS_PROXY=http://127.0.0.1:15001`). The tunnel's target `host:port` is routed as
//! the sidecar would route a connection to it: a VirtualService `tls` rule whose
//! `sniHosts` cover the host (the client's TLS inside the tunnel carries that SNI), else
//! the HTTP routes of the host (its VirtualService or service, or `PassthroughCluster`
//! under `ALLOW_ANY`). The upstream stream is opened before the `200` goes back, so an
//! unreachable target gets a `503` with its flag instead of a dead tunnel.

use super::completion::RequestDone;
use super::exchange::Exchange;
use super::upgrade;
use crate::body::ResponseBody;
use crate::conn_info::ConnInfo;
use crate::flags::Flags;
use crate::runtime::Live;
use crate::upstream::link::{self, Link, LinkError};
use http::request::Parts;
use http::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use meshproxy_config::compile::cluster::LoadBalancer;
use meshproxy_config::compile::listener::Listener;
use meshproxy_config::compile::matcher::RequestView;
use meshproxy_config::compile::route::{RouteAction, WeightedClusters};
use meshproxy_config::compile::tcp_routes::L4View;
use meshproxy_config::compile::{ClusterId, Snapshot};
use meshproxy_config::host::split_authority;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Where a tunnel goes.
#[derive(Debug)]
pub struct Target {
    /// The cluster.
    pub cluster: ClusterId,
    /// The rule that chose it (for the access log).
    pub route: String,
    /// The tunnel's target port.
    pub port: u16,
}

/// Why a `CONNECT` is refused before any upstream is tried.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The request target is not `host:port` (RFC 9110 §9.3.6): `400`.
    BadTarget,
    /// No rule routes the target: `404`, flag `NR`.
    NoRoute,
    /// The rule's destination has no cluster: `503`, flag `NC`.
    NoCluster,
    /// A host outside the registry under `REGISTRY_ONLY`: Istio's `block_all` answers `502`,
    /// reported against this cluster (`BlackHoleCluster`), for a tunnel as for a request.
    BlackHole(ClusterId),
}

/// Routes a `CONNECT` to `authority` received on `listener`.
pub fn target(
    snap: &Snapshot,
    listener: &Listener,
    authority: &str,
    parts: &Parts,
    peer: IpAddr,
) -> Result<Target, Refusal> {
    let (host, port) = split_authority(authority);
    let port = port.ok_or(Refusal::BadTarget)?;
    if host.is_empty() {
        return Err(Refusal::BadTarget);
    }
    let tls = snap
        .mesh_tcp_routes
        .and_then(|i| snap.tcp_route_tables.get(i));
    let view = L4View {
        sni: Some(&host),
        destination: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        source: peer,
        intercepted: false,
    };
    if let Some(route) = tls.and_then(|t| t.find_tls(&view)) {
        return pick(&route.destinations, port, &route.origin);
    }
    let table = listener
        .route_table
        .and_then(|i| snap.route_tables.get(i))
        .ok_or(Refusal::NoRoute)?;
    let view = RequestView {
        method: "CONNECT",
        scheme: "http",
        authority,
        path: "/",
        query: "",
        headers: &parts.headers,
        port,
    };
    let (route, _) = table
        .find(&host)
        .and_then(|vh| vh.find_route(&view))
        .ok_or(Refusal::NoRoute)?;
    match &route.action {
        RouteAction::Forward(w) => pick(w, port, &route.origin),
        RouteAction::DirectResponse(d) => match d.cluster {
            Some(blackhole) => Err(Refusal::BlackHole(blackhole)),
            // A VirtualService's direct response cannot answer a tunnel.
            None => Err(Refusal::NoRoute),
        },
        // Nor can a redirect.
        RouteAction::Redirect(_) => Err(Refusal::NoRoute),
    }
}

fn pick(w: &WeightedClusters, port: u16, origin: &str) -> Result<Target, Refusal> {
    if w.total_weight == 0 || w.destinations.is_empty() {
        return Err(Refusal::NoCluster);
    }
    let d = w.pick(fastrand::u32(0..w.total_weight));
    let cluster = d.target.resolve(port).ok_or(Refusal::NoCluster)?;
    Ok(Target {
        cluster,
        route: origin.to_string(),
        port,
    })
}

/// The original destination of a tunnel to a PASSTHROUGH cluster: the target itself
/// (an address, or a name resolved through DNS).
pub async fn passthrough_address(
    lb: &LoadBalancer,
    authority: &str,
    port: u16,
) -> Option<SocketAddr> {
    if *lb != LoadBalancer::Passthrough {
        return None;
    }
    let (host, _) = split_authority(authority);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, port)),
        Err(_) => crate::upstream::dns::resolve(host, port).await.ok(),
    }
}

/// Once hyper has written the `200`, splices the client's tunnel and the upstream
/// stream until both ends close (or the listener's drain timeout), then writes the
/// request's log line and metrics with the tunnel's byte counts. The tunnel keeps the
/// connection (`conn`: its slots in the connection caps) while it lasts.
pub fn spawn_tunnel(
    on_upgrade: OnUpgrade,
    mut link: Link,
    done: Box<RequestDone>,
    live: Live,
    conn: Arc<ConnInfo>,
) {
    let mut kill = conn.kill.clone();
    tokio::spawn(async move {
        let (_live, _conn) = (live, conn);
        match on_upgrade.await {
            Ok(down) => {
                let (received, sent, flags) =
                    crate::pipe::splice(TokioIo::new(down), &mut link.upstream, &[], &mut kill)
                        .await;
                // The upstream stream and its slots go before the log line is written.
                drop(link);
                upgrade::finish(done, received, sent, flags);
            }
            Err(e) => {
                tracing::debug!(error = %e, "CONNECT: the client went away before the tunnel");
                upgrade::finish(done, 0, 0, Flags::DOWNSTREAM_CONNECTION_TERMINATION);
            }
        }
    });
}

/// `CONNECT host:port` on an OUTBOUND listener (explicit proxy): routed by [`target`],
/// the upstream stream opened, then `200` and the tunnel.
pub(super) async fn tunnel(
    x: &mut Exchange,
    mut parts: Parts,
    listener: &Listener,
    authority: &str,
) -> Response<ResponseBody> {
    let active = x.active.clone();
    let snap = &active.snapshot;
    let target = match target(snap, listener, authority, &parts, x.conn.peer.ip()) {
        Ok(t) => t,
        Err(Refusal::BadTarget) => return x.reply(400, Flags::NONE, "invalid_connect_target", ""),
        Err(Refusal::NoRoute) => return x.reply(404, Flags::NO_ROUTE_FOUND, "route_not_found", ""),
        Err(Refusal::NoCluster) => {
            return x.reply(503, Flags::NO_CLUSTER_FOUND, "cluster_not_found", "");
        }
        Err(Refusal::BlackHole(cid)) => {
            if let Some(l) = x.labels.as_mut() {
                l.service = active.cluster(cid).service_labels.clone();
            }
            // The route's name, as the HTTP path reports Istio's `block_all` route.
            x.note_upstream(snap.cluster(cid).name.clone(), "", "block_all");
            return x.reply(502, Flags::NONE, "direct_response", "");
        }
    };
    let cluster = snap.cluster(target.cluster);
    let Some(state) = active.cluster_state(target.cluster) else {
        return x.reply(503, Flags::NO_CLUSTER_FOUND, "cluster_not_found", "");
    };
    if let Some(l) = x.labels.as_mut() {
        l.service = state.service_labels.clone();
    }
    let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
        return x.reply(400, Flags::NONE, "connect_not_upgradable", "");
    };
    let original_dst = passthrough_address(&cluster.load_balancer, authority, target.port).await;
    let who = link::For {
        peer: x.conn.peer.ip(),
        original_dst,
    };
    let link = match link::open(cluster, state, who).await {
        Ok(l) => l,
        Err(LinkError::Overflow) => return x.overflow_reply(Flags::NONE),
        Err(LinkError::NoHealthy) => {
            let flags = Flags::NO_HEALTHY_UPSTREAM;
            return x.reply(503, flags, "no_healthy_upstream", "no healthy upstream");
        }
        Err(LinkError::Connect(e)) => {
            tracing::debug!(cluster = %cluster.name, error = %e, "CONNECT: upstream connect failed");
            return x.reply(
                503,
                Flags::UPSTREAM_CONNECTION_FAILURE,
                "upstream_reset_before_response_started{connection_failure}",
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            );
        }
    };
    x.note_upstream(
        cluster.name.clone(),
        link.endpoint.name.clone(),
        target.route.as_str(),
    );
    let done = x.done(200, Flags::NONE);
    let live = Live::new(&x.shared);
    spawn_tunnel(on_upgrade, link, done, live, x.conn.clone());
    Response::new(ResponseBody::empty())
}
