//! VirtualService `tls[]` and `tcp[]` rules → a per-listener [`TcpRouteTable`] for TCP
//! listeners (Gateway ports whose servers are all TCP/TLS, `protocol: TCP` Proxy
//! listeners).
//!
//! Istio turns these rules into Envoy filter chains: `tls` matches become
//! `filter_chain_match.server_names` (SNI, read by the `tls_inspector` listener filter
//! without terminating TLS), `tcp` matches become chains on destination port and
//! `prefix_ranges` (`destinationSubnets`), each with a `tcp_proxy` filter to weighted
//! clusters. `sourceLabels`, `sourceNamespace` and `gateways` are evaluated at
//! config time, as istiod does when generating one proxy's listeners; destinations
//! resolve to the same clusters as HTTP destinations do.

use super::cluster::ClusterKey;
use super::http_routes::{qualify_gateway, RouteCompiler, RouteContext};
use super::listener::GatewayServer;
use super::route::{ClusterChoice, WeightedClusters, WeightedDestination};
use crate::diag::Severity;
use crate::host;
use crate::model::map::Map;
use crate::model::virtual_service as vs;
use crate::model::{Deferred, Resource};
use crate::validate::diag_for;
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

/// One compiled L4 match condition (all set fields AND'ed).
#[derive(Clone, Debug, Default)]
pub struct L4Match {
    /// SNI patterns (lower case; `*.example.com` wildcards, `*`). Empty for `tcp` rules.
    pub sni_hosts: Vec<String>,
    /// Destination port (the original destination's when intercepted, else the
    /// listener's).
    pub port: Option<u16>,
    /// Destination addresses; empty = any.
    pub destination_subnets: Vec<IpNet>,
    /// Client addresses (`sourceSubnet`, hidden in Istio's docs); `None` = any.
    pub source_subnet: Option<IpNet>,
}

/// What a connection offers to route on.
#[derive(Clone, Copy, Debug)]
pub struct L4View<'a> {
    /// SNI from the ClientHello, when the connection starts with one.
    pub sni: Option<&'a str>,
    /// Destination: the original destination when intercepted, else the listener address.
    pub destination: SocketAddr,
    /// Client address.
    pub source: IpAddr,
    /// Whether `destination` is an intercepted connection's original destination (a
    /// sidecar then routes by the service the address belongs to).
    pub intercepted: bool,
}

impl L4Match {
    fn l4_holds(&self, v: &L4View<'_>) -> bool {
        self.port.is_none_or(|p| p == v.destination.port())
            && (self.destination_subnets.is_empty()
                || self
                    .destination_subnets
                    .iter()
                    .any(|n| n.contains(&v.destination.ip())))
            && self.source_subnet.is_none_or(|n| n.contains(&v.source))
    }

    /// How specifically this match's SNI patterns cover `sni` (Envoy's
    /// `server_names` order: an exact name beats any wildcard, a longer wildcard suffix
    /// beats a shorter one); `None` when none covers it.
    fn sni_score(&self, sni: &str) -> Option<usize> {
        self.sni_hosts
            .iter()
            .filter_map(|p| {
                if p == "*" {
                    Some(0)
                } else if let Some(suffix) = p.strip_prefix('*') {
                    (sni.len() > suffix.len() && sni.ends_with(suffix)).then_some(suffix.len())
                } else {
                    (p == sni).then_some(usize::MAX)
                }
            })
            .max()
    }
}

/// A compiled `tls` or `tcp` rule.
#[derive(Clone, Debug)]
pub struct TcpRoute {
    /// Where it came from (`VirtualService/namespace/name#tcp[0]`), for logs.
    pub origin: String,
    /// Conditions, OR'ed; empty = every connection (a `tcp` rule without `match`).
    pub matches: Vec<L4Match>,
    /// Weighted destinations resolved to clusters.
    pub destinations: WeightedClusters,
    /// Sidecar rules: the virtual IPs of the VirtualService's hosts. An intercepted
    /// connection is only routed by rules for the service it was addressed to, as Istio
    /// builds one outbound filter chain per service address; empty = any address (a
    /// host without declared addresses).
    pub vips: Vec<IpNet>,
}

impl TcpRoute {
    fn for_destination(&self, v: &L4View<'_>) -> bool {
        !v.intercepted
            || self.vips.is_empty()
            || self.vips.iter().any(|n| n.contains(&v.destination.ip()))
    }
}

/// The `tls` and `tcp` rules that apply to one TCP listener.
#[derive(Clone, Debug, Default)]
pub struct TcpRouteTable {
    /// Name (`mesh-tcp` or `gateway-tcp:<port>`).
    pub name: String,
    /// `tls` rules, in VirtualService load order.
    pub tls: Vec<TcpRoute>,
    /// `tcp` rules, in VirtualService load order.
    pub tcp: Vec<TcpRoute>,
}

impl TcpRouteTable {
    /// Whether connections must be inspected for a TLS ClientHello (some `tls` rule
    /// applies); without one, nothing is read before connecting upstream, so
    /// server-first protocols work.
    pub fn needs_sni(&self) -> bool {
        !self.tls.is_empty()
    }

    /// The route for a connection. As Envoy picks among Istio's filter chains, a `tls`
    /// rule whose `sniHosts` cover the SNI wins first (the most specific SNI pattern, then
    /// load order), else the first `tcp` rule whose match holds.
    pub fn find(&self, v: &L4View<'_>) -> Option<&TcpRoute> {
        if let Some(r) = self.find_tls(v) {
            return Some(r);
        }
        self.tcp
            .iter()
            .filter(|r| r.for_destination(v))
            .find(|r| r.matches.is_empty() || r.matches.iter().any(|m| m.l4_holds(v)))
    }

    /// The `tls` rule for a connection with an SNI: the most specific SNI pattern that
    /// covers it, then load order.
    pub fn find_tls(&self, v: &L4View<'_>) -> Option<&TcpRoute> {
        let sni = v.sni?;
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        let mut best: Option<(usize, &TcpRoute)> = None;
        for r in self.tls.iter().filter(|r| r.for_destination(v)) {
            let score = r
                .matches
                .iter()
                .filter(|m| m.l4_holds(v))
                .filter_map(|m| m.sni_score(&sni))
                .max();
            if let Some(s) = score {
                if best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, r));
                }
            }
        }
        best.map(|(_, r)| r)
    }
}

/// Which listener the table is compiled for.
pub enum TcpContext<'a> {
    /// A sidecar `protocol: TCP` listener: VirtualServices bound to `mesh`.
    Mesh,
    /// A Gateway port: VirtualServices bound to these servers' gateways, whose hosts
    /// (and `sniHosts`) the servers admit.
    Gateway {
        /// The servers on this port.
        servers: &'a [GatewayServer],
        /// The port.
        port: u16,
    },
}

/// Compiles the table for `tctx`.
pub fn compile(rc: &mut RouteCompiler, resources: &[Resource], tctx: &TcpContext) -> TcpRouteTable {
    let ctx = match tctx {
        TcpContext::Mesh => RouteContext::Mesh,
        TcpContext::Gateway { servers, .. } => {
            RouteContext::Gateways(servers.iter().map(|s| s.gateway.clone()).collect())
        }
    };
    let mut table = TcpRouteTable {
        name: match tctx {
            TcpContext::Mesh => "mesh-tcp".into(),
            TcpContext::Gateway { port, .. } => format!("gateway-tcp:{port}"),
        },
        ..Default::default()
    };
    let mut claimed = HashSet::new();
    for r in resources {
        if Deferred::skips(r, |d| d.l4_rules) {
            continue; // no `tcp` or `tls` rule: not worth parsing again
        }
        let Some(v) = r.as_virtual_service() else {
            continue;
        };
        let v = &*v;
        if v.hosts.is_empty()
            || (v.tls.is_empty() && v.tcp.is_empty())
            || !ctx.admits(&v.gateways, &r.namespace)
            || !rc.proxy.sees(&r.namespace, &v.export_to)
            || (matches!(tctx, TcpContext::Mesh)
                && !super::http_routes::sidecar_sees(rc.proxy, r, v))
        {
            continue;
        }
        // Gateway servers this VirtualService is bound to and whose hosts admit one of its
        // hosts (Istio skips VirtualServices whose hosts no server exposes).
        let bound: Vec<&GatewayServer> = match tctx {
            TcpContext::Mesh => Vec::new(),
            TcpContext::Gateway { servers, .. } => {
                let names: Vec<String> = v
                    .gateways
                    .iter()
                    .map(|g| qualify_gateway(g, &r.namespace))
                    .collect();
                servers
                    .iter()
                    .filter(|s| names.contains(&s.gateway))
                    .filter(|s| {
                        v.hosts.iter().any(|h| {
                            let q = if h == "*" {
                                "*".to_string()
                            } else {
                                host::qualify(h, &r.namespace)
                            };
                            admitted(s, &r.namespace, &q).is_some()
                        })
                    })
                    .collect()
            }
        };
        if matches!(tctx, TcpContext::Gateway { .. }) && bound.is_empty() {
            continue;
        }
        let vips = match tctx {
            TcpContext::Mesh => mesh_vips(rc, r, v, &mut claimed),
            TcpContext::Gateway { .. } => Vec::new(),
        };
        for (i, rule) in v.tls.iter().enumerate() {
            let origin = format!("{}#tls[{i}]", r.id());
            let mut matches = Vec::new();
            for m in &rule.matches {
                if !config_time_ok(
                    rc,
                    &ctx,
                    m_gateways(&m.gateways, &v.gateways),
                    r,
                    &m.source_labels,
                    &m.source_namespace,
                ) {
                    continue;
                }
                let mut sni_hosts = Vec::new();
                for s in &m.sni_hosts {
                    let s = s.to_ascii_lowercase();
                    if s.parse::<IpAddr>().is_ok() {
                        continue; // never sent as SNI (validation warned)
                    }
                    if matches!(tctx, TcpContext::Mesh) {
                        sni_hosts.push(s);
                        continue;
                    }
                    // Gateway: the filter chain's server names are the SNI hosts the
                    // servers' hosts admit, narrowed to the intersection.
                    for srv in &bound {
                        let gw_ns = srv.gateway.split('/').next().unwrap_or("");
                        for entry in &srv.hosts {
                            if let Some(d) =
                                super::gateway_routes::server_admits(entry, gw_ns, &r.namespace, &s)
                            {
                                if !sni_hosts.contains(&d) {
                                    sni_hosts.push(d);
                                }
                            }
                        }
                    }
                }
                if sni_hosts.is_empty() {
                    continue;
                }
                matches.push(L4Match {
                    sni_hosts,
                    port: m.port.and_then(|p| u16::try_from(p).ok()),
                    destination_subnets: subnets(&m.destination_subnets),
                    source_subnet: None,
                });
            }
            if matches.is_empty() {
                continue;
            }
            let destinations = weighted(rc, r, &rule.route, &origin);
            table.tls.push(TcpRoute {
                origin,
                matches,
                destinations,
                vips: vips.clone(),
            });
        }
        for (i, rule) in v.tcp.iter().enumerate() {
            let origin = format!("{}#tcp[{i}]", r.id());
            let mut matches = Vec::new();
            for m in &rule.matches {
                if !config_time_ok(
                    rc,
                    &ctx,
                    m_gateways(&m.gateways, &v.gateways),
                    r,
                    &m.source_labels,
                    &m.source_namespace,
                ) {
                    continue;
                }
                matches.push(L4Match {
                    sni_hosts: Vec::new(),
                    port: m.port.and_then(|p| u16::try_from(p).ok()),
                    destination_subnets: subnets(&m.destination_subnets),
                    source_subnet: subnets(std::slice::from_ref(&m.source_subnet))
                        .into_iter()
                        .next(),
                });
            }
            // Every match filtered out for this proxy: the rule is absent (not a catch-all).
            if !rule.matches.is_empty() && matches.is_empty() {
                continue;
            }
            let destinations = weighted(rc, r, &rule.route, &origin);
            table.tcp.push(TcpRoute {
                origin,
                matches,
                destinations,
                vips: vips.clone(),
            });
        }
    }
    if matches!(tctx, TcpContext::Mesh) {
        default_routes(rc, &claimed, &mut table);
        // Istio's catch-all filter chain of the virtual outbound listener under ALLOW_ANY:
        // anything else goes to its original destination.
        if let Some(id) = super::passthrough_cluster(rc) {
            table.tcp.push(TcpRoute {
                origin: "allow_any (outboundTrafficPolicy ALLOW_ANY)".into(),
                matches: Vec::new(),
                destinations: WeightedClusters {
                    destinations: vec![WeightedDestination {
                        weight: 1,
                        target: ClusterChoice::Fixed(id),
                        host: super::cluster::PASSTHROUGH_CLUSTER.into(),
                        subset: String::new(),
                        headers: None,
                    }]
                    .into(),
                    total_weight: 1,
                },
                vips: Vec::new(),
            });
        }
    }
    table
}

/// The virtual IPs of a sidecar VirtualService's hosts (empty when one of them has none:
/// its rules then apply to any address); records the hosts as claimed.
fn mesh_vips(
    rc: &RouteCompiler,
    r: &Resource,
    v: &vs::VirtualService,
    claimed: &mut HashSet<String>,
) -> Vec<IpNet> {
    let mut vips = Vec::new();
    let mut unrestricted = false;
    for h in &v.hosts {
        let q = host::qualify(h, &r.namespace);
        match rc.registry.get(&q).map(|i| &rc.registry.services[i]) {
            Some(svc) if !svc.addresses.is_empty() => vips.extend(svc.addresses.iter().copied()),
            _ => unrestricted = true,
        }
        claimed.insert(q);
    }
    if unrestricted {
        Vec::new()
    } else {
        vips
    }
}

/// Sidecar defaults: an intercepted connection to a service's address and port that no
/// VirtualService rule claims goes to that service port's cluster (Istio's per-service
/// outbound TCP filter chain).
fn default_routes(rc: &RouteCompiler, claimed: &HashSet<String>, table: &mut TcpRouteTable) {
    for svc in &rc.registry.services {
        if svc.addresses.is_empty() || claimed.contains(&svc.host) {
            continue;
        }
        for p in &svc.ports {
            let key = ClusterKey {
                service: svc.host.as_str().into(),
                port: p.number,
                subset: None,
            };
            let Some(id) = rc.clusters.get(&key) else {
                continue;
            };
            table.tcp.push(TcpRoute {
                origin: format!("default route to {}:{}", svc.host, p.number),
                matches: vec![L4Match {
                    port: Some(p.number),
                    destination_subnets: svc.addresses.clone(),
                    ..Default::default()
                }],
                destinations: WeightedClusters {
                    destinations: vec![WeightedDestination {
                        weight: 1,
                        target: ClusterChoice::Fixed(*id),
                        host: svc.host.clone(),
                        subset: String::new(),
                        headers: None,
                    }]
                    .into(),
                    total_weight: 1,
                },
                vips: Vec::new(),
            });
        }
    }
}

fn m_gateways<'a>(m: &'a [String], vs_gateways: &'a [String]) -> &'a [String] {
    if m.is_empty() {
        vs_gateways
    } else {
        m
    }
}

/// Istio's config-time match filters: `gateways`, `sourceLabels`, `sourceNamespace`.
fn config_time_ok(
    rc: &RouteCompiler,
    ctx: &RouteContext,
    gateways: &[String],
    r: &Resource,
    source_labels: &Map<String, String>,
    source_namespace: &str,
) -> bool {
    ctx.admits(gateways, &r.namespace)
        && rc.proxy.selected_by(source_labels)
        && (source_namespace.is_empty() || source_namespace == rc.proxy.namespace)
}

/// The narrower of `name` and a host entry of `server` that admits it, if any.
fn admitted(server: &GatewayServer, vs_ns: &str, name: &str) -> Option<String> {
    let gw_ns = server.gateway.split('/').next().unwrap_or("");
    server
        .hosts
        .iter()
        .find_map(|entry| super::gateway_routes::server_admits(entry, gw_ns, vs_ns, name))
}

/// `destinationSubnets` entries as networks (a plain IP is a host route); entries that
/// do not parse were refused by validation and are skipped.
fn subnets(list: &[String]) -> Vec<IpNet> {
    list.iter()
        .filter_map(|s| {
            s.parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect()
}

/// Route destinations with Istio's weight rules (one destination takes everything;
/// with several, weight-0 entries get nothing), resolved as HTTP destinations are.
fn weighted(
    rc: &mut RouteCompiler,
    res: &Resource,
    route: &[vs::RouteDestination],
    origin: &str,
) -> WeightedClusters {
    let single = route.len() == 1;
    let mut destinations = Vec::new();
    for d in route {
        let Some(dest) = &d.destination else { continue };
        let weight = if single {
            1
        } else {
            d.weight.clamp(0, i32::MAX as i64) as u32
        };
        if weight == 0 {
            continue;
        }
        let (host, target) = rc.resolve(dest, &res.namespace);
        if let ClusterChoice::Missing { reason } = &target {
            rc.warnings.push(diag_for(
                res,
                Severity::Warning,
                "spec",
                format!("{origin}: {reason}; connections routed there are closed"),
            ));
        }
        destinations.push(WeightedDestination {
            weight,
            target,
            host,
            subset: dest.subset.clone(),
            headers: None,
        });
    }
    let total_weight = destinations.iter().map(|d| d.weight).sum();
    WeightedClusters {
        destinations: destinations.into(),
        total_weight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(sni: &[&str], port: Option<u16>, nets: &[&str]) -> L4Match {
        L4Match {
            sni_hosts: sni.iter().map(|s| s.to_string()).collect(),
            port,
            destination_subnets: subnets(&nets.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            source_subnet: None,
        }
    }

    fn route(origin: &str, matches: Vec<L4Match>) -> TcpRoute {
        TcpRoute {
            origin: origin.into(),
            matches,
            destinations: WeightedClusters {
                destinations: Vec::new().into(),
                total_weight: 0,
            },
            vips: Vec::new(),
        }
    }

    fn view<'a>(sni: Option<&'a str>, dst: &str) -> L4View<'a> {
        L4View {
            sni,
            destination: dst.parse().unwrap(),
            source: "127.0.0.1".parse().unwrap(),
            intercepted: false,
        }
    }

    #[test]
    fn sni_exact_beats_wildcard_and_wildcards_need_a_label() {
        let t = TcpRouteTable {
            name: "t".into(),
            tls: vec![
                route("wild", vec![m(&["*.example.com"], None, &[])]),
                route("exact", vec![m(&["a.example.com"], None, &[])]),
                route("any", vec![m(&["*"], None, &[])]),
            ],
            tcp: vec![route("tcp", vec![])],
        };
        let o = |sni| {
            t.find(&view(sni, "10.0.0.1:443"))
                .map(|r| r.origin.as_str())
        };
        assert_eq!(o(Some("A.example.com")), Some("exact"));
        assert_eq!(o(Some("b.c.example.com")), Some("wild"));
        assert_eq!(o(Some("example.com")), Some("any"));
        assert_eq!(o(None), Some("tcp"), "no SNI falls through to tcp rules");
    }

    #[test]
    fn sidecar_rules_apply_to_their_service_address_and_others_get_defaults() {
        let se = |name: &str, vip: &str, port: u16| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{name}.default.svc.cluster.local]\n  addresses: [{vip}]\n  ports: [{{number: {port}, name: tcp, protocol: TCP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1}}]\n---\n"
            )
        };
        let yaml = format!(
            "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: app, namespace: default}}\nspec:\n  workload: {{labels: {{app: app}}}}\n  listeners:\n  - {{name: tcp, address: \"127.0.0.1:15001\", direction: OUTBOUND, protocol: TCP}}\n---\n{}{}{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: db}}\nspec:\n  hosts: [db]\n  tcp:\n  - route: [{{destination: {{host: db2}}}}]\n",
            se("db", "10.0.0.1", 5432),
            se("db2", "10.0.0.3", 5432),
            se("cache", "10.0.0.2", 6379),
        );
        let snap = crate::compile::load_str("t.yaml", &yaml).unwrap_or_else(|d| panic!("{d}"));
        let t = snap.tcp_routes("tcp").expect("TCP listener has a table");
        let find = |dst: &str, intercepted: bool| {
            let v = L4View {
                sni: None,
                destination: dst.parse().unwrap(),
                source: "127.0.0.1".parse().unwrap(),
                intercepted,
            };
            t.find(&v).map(|r| {
                (
                    r.origin.clone(),
                    r.destinations.destinations[0].host.clone(),
                )
            })
        };
        let db = Some((
            "VirtualService/default/db#tcp[0]".to_string(),
            "db2.default.svc.cluster.local".to_string(),
        ));
        assert_eq!(find("10.0.0.1:5432", true), db);
        assert_eq!(find("127.0.0.1:15001", false), db);
        assert_eq!(
            find("10.0.0.2:6379", true).map(|r| r.1),
            Some("cache.default.svc.cluster.local".to_string())
        );
        assert_eq!(
            find("10.0.0.3:5432", true).map(|r| r.1),
            Some("db2.default.svc.cluster.local".to_string())
        );
        assert_eq!(find("10.0.0.9:5432", true), None);
    }

    #[test]
    fn tcp_rules_match_port_and_subnets_in_order() {
        let t = TcpRouteTable {
            name: "t".into(),
            tls: Vec::new(),
            tcp: vec![
                route("p27017", vec![m(&[], Some(27017), &[])]),
                route("net", vec![m(&[], None, &["10.1.0.0/16", "192.168.1.1"])]),
            ],
        };
        assert!(!t.needs_sni());
        let o = |dst| t.find(&view(None, dst)).map(|r| r.origin.as_str());
        assert_eq!(o("10.0.0.1:27017"), Some("p27017"));
        assert_eq!(o("10.1.2.3:80"), Some("net"));
        assert_eq!(o("192.168.1.1:80"), Some("net"));
        assert_eq!(o("192.168.1.2:80"), None);
    }
}
