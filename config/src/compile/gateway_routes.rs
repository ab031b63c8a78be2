//! Gateway listeners: the servers of the Gateways that select this proxy, grouped by bind
//! address, and each port's route table (VirtualServices bound to those Gateways).

use super::http_routes::{qualify_gateway, RouteCompiler, RouteContext};
use super::listener::{GatewayServer, Listener, ListenerRole, ServerTls};
use super::proxy_settings::ProxySettings;
use super::route::Route;
use super::route_table::{RouteTable, VirtualHost};
use super::{tcp_routes, Tables};
use crate::host;
use crate::model::proxy::ListenerProtocol;
use crate::model::Resource;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

/// A listener per Gateway bind address, with its route table (and its TCP route table
/// when every server on it is TCP, TLS or MONGO).
pub(super) fn gateway_tables(rc: &mut RouteCompiler, resources: &[Resource], t: &mut Tables) {
    for (addr, servers) in gateway_servers(resources, rc.proxy) {
        let gateways: HashSet<String> = servers.iter().map(|s| s.gateway.clone()).collect();
        let table = gateway_route_table(rc, resources, &servers, &gateways, addr.port());
        t.route_tables.push(table);
        let tcp_only = servers
            .iter()
            .all(|s| s.protocol == "TCP" || s.protocol == "TLS" || s.protocol == "MONGO");
        let tcp_routes = tcp_only.then(|| {
            t.tcp_route_tables.push(tcp_routes::compile(
                rc,
                resources,
                &tcp_routes::TcpContext::Gateway {
                    servers: &servers,
                    port: addr.port(),
                },
            ));
            t.tcp_route_tables.len() - 1
        });
        t.listeners.push(Listener {
            name: format!("gateway-{addr}"),
            address: addr,
            role: ListenerRole::Gateway { servers },
            protocol: if tcp_only {
                ListenerProtocol::Tcp
            } else {
                ListenerProtocol::Http
            },
            route_table: Some(t.route_tables.len() - 1),
            tcp_routes,
        });
    }
}

/// Gateway servers of the Gateways that select this proxy, grouped by bind address.
/// A Gateway without a selector is not applied: unlike Istio, where only gateway
/// deployments receive Gateways, every meshproxy could match an empty selector.
/// Whether `proxy` serves Gateway `gw`: its selector is non-empty and the workload
/// carries every label of it.
pub(crate) fn serves(gw: &crate::model::Gateway, proxy: &ProxySettings) -> bool {
    !gw.selector.is_empty() && proxy.selected_by(&gw.selector)
}

fn gateway_servers(
    resources: &[Resource],
    proxy: &ProxySettings,
) -> BTreeMap<SocketAddr, Vec<GatewayServer>> {
    let mut out: BTreeMap<SocketAddr, Vec<GatewayServer>> = BTreeMap::new();
    for r in resources {
        let Some(gw) = r.as_gateway() else { continue };
        if !serves(gw, proxy) {
            continue;
        }
        for s in &gw.servers {
            let Some(port) = &s.port else { continue };
            let ip = if s.bind.is_empty() {
                proxy.gateway_address
            } else {
                match s.bind.parse() {
                    Ok(ip) => ip,
                    Err(_) => continue,
                }
            };
            let Ok(num) = u16::try_from(port.number) else {
                continue;
            };
            let file = r.origin.file.as_path();
            let path = |p: &str| crate::paths::resolve_path(file, p);
            let tls = s.tls.as_ref().and_then(|t| {
                let mode = t.mode?;
                let mut certificates = Vec::new();
                if !t.server_certificate.is_empty() {
                    certificates.push((path(&t.server_certificate), path(&t.private_key)));
                }
                for c in &t.tls_certificates {
                    certificates.push((path(&c.server_certificate), path(&c.private_key)));
                }
                Some(ServerTls {
                    mode,
                    certificates,
                    ca_certificates: (!t.ca_certificates.is_empty())
                        .then(|| path(&t.ca_certificates)),
                    subject_alt_names: t.subject_alt_names.clone(),
                    min_version: t.min_protocol_version,
                    max_version: t.max_protocol_version,
                    alpn: t.alpn_protocols.clone(),
                })
            });
            out.entry(SocketAddr::new(ip, num))
                .or_default()
                .push(GatewayServer {
                    gateway: format!("{}/{}", r.namespace, r.name),
                    name: s.name.clone(),
                    protocol: port.protocol.to_ascii_uppercase(),
                    hosts: s.hosts.clone(),
                    https_redirect: s.tls.as_ref().is_some_and(|t| t.https_redirect),
                    tls,
                });
        }
    }
    out
}

/// Whether a gateway server host entry (`ns/host` or `host`) admits `vs_host` from a
/// VirtualService in `vs_ns`; returns the domain to serve (the narrower of the two).
pub(super) fn server_admits(
    entry: &str,
    gw_ns: &str,
    vs_ns: &str,
    vs_host: &str,
) -> Option<String> {
    let (ns, h) = entry.split_once('/').unwrap_or(("*", entry));
    let ns_ok = match ns {
        "*" => true,
        "." => vs_ns == gw_ns,
        "~" => false,
        other => other == vs_ns,
    };
    if !ns_ok {
        return None;
    }
    let h = h.to_ascii_lowercase();
    if !host::matches(&h, vs_host) {
        return None;
    }
    Some(if host::subset_of(vs_host, &h) {
        vs_host.to_string()
    } else {
        h
    })
}

/// A gateway port's route table. Gateways merge the VirtualServices for one host (load
/// order, catch-all rules moved to the end).
fn gateway_route_table(
    rc: &mut RouteCompiler,
    resources: &[Resource],
    servers: &[GatewayServer],
    gateways: &HashSet<String>,
    port: u16,
) -> RouteTable {
    let ctx = RouteContext::Gateways(gateways.clone());
    let mut per_domain: Vec<(String, Vec<Route>)> = Vec::new();
    let proxy = rc.proxy;
    for (r, v) in ctx.virtual_services(resources, proxy) {
        let bound: HashSet<String> = v
            .gateways
            .iter()
            .map(|g| qualify_gateway(g, &r.namespace))
            .collect();
        let mut domains = Vec::new();
        for h in &v.hosts {
            let q = if h == "*" {
                "*".to_string()
            } else {
                host::qualify(h, &r.namespace)
            };
            for s in servers.iter().filter(|s| bound.contains(&s.gateway)) {
                let gw_ns = s.gateway.split('/').next().unwrap_or("");
                for entry in &s.hosts {
                    if let Some(d) = server_admits(entry, gw_ns, &r.namespace, &q) {
                        if !domains.contains(&d) {
                            domains.push(d);
                        }
                    }
                }
            }
        }
        if domains.is_empty() {
            continue;
        }
        let routes = rc.virtual_service(r, &v, &ctx);
        for d in domains {
            match per_domain.iter_mut().find(|(x, _)| *x == d) {
                Some((_, rs)) => rs.extend(routes.iter().cloned()),
                None => per_domain.push((d, routes.clone())),
            }
        }
    }
    let mut table = RouteTable::new(format!("gateway:{port}"));
    for (domain, mut routes) in per_domain {
        // Stable: catch-alls after everything else, as Istio does when merging.
        routes.sort_by_key(|r| r.matches.is_empty());
        let mut domains: Vec<Arc<str>> = vec![domain.as_str().into()];
        domains.extend(
            host::alt_forms(&domain, &rc.proxy.namespace)
                .into_iter()
                .map(Arc::from),
        );
        table.add(VirtualHost {
            name: domain,
            domains,
            routes,
        });
    }
    table
}
