//! The `Sidecar` that applies to this proxy's workload, and what it lets the workload see.
//!
//! Istio (`pilot/pkg/model/push_context.go` `doGetSidecarScope`): a Sidecar of the proxy's
//! namespace whose `workloadSelector` labels the workload carries (the first in load
//! order, as Istio takes the oldest); else the namespace's Sidecar without a selector;
//! else the root namespace's Sidecar without a selector, read as if it were in the proxy's
//! namespace (`.` is the proxy's namespace). Gateways ignore Sidecars. Without one, the
//! workload sees everything exported to its namespace.
//!
//! `egress[].hosts` are `namespace/dnsName`; a host of a service or VirtualService in
//! namespace `ns` is visible when an entry imports it and no `~` entry excludes it (Istio
//! 1.31's exclusion semantics: `~/*` imports nothing, `~ns1/*` removes ns1). A host that is
//! not visible behaves as unknown: REGISTRY_ONLY answers 502 (BlackHoleCluster),
//! ALLOW_ANY passes it through.

use super::proxy_settings::ProxySettings;
use crate::host;
use crate::model::proxy::OutboundMode;
use crate::model::{Resource, Sidecar};
use std::net::SocketAddr;

/// The Sidecar in force for this workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidecarScope {
    /// `Sidecar/namespace/name`, for diagnostics and `explain`.
    pub origin: String,
    /// Egress entries of every listener, in order.
    entries: Vec<Entry>,
    /// `outboundTrafficPolicy.mode`, when the Sidecar sets one.
    pub outbound_mode: Option<OutboundMode>,
    /// `ingress[]`: workload port → where its traffic goes.
    pub ingress: Vec<(u16, SocketAddr)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    exclude: bool,
    /// `None`: any namespace.
    namespace: Option<String>,
    /// `*`, `*.suffix` or a name.
    host: String,
    /// The listener's port: only services with it are imported through this entry.
    port: Option<u16>,
}

impl SidecarScope {
    /// The Sidecar for `proxy`'s workload, if one applies (see the module doc).
    pub fn select(resources: &[Resource], proxy: &ProxySettings) -> Option<SidecarScope> {
        if is_gateway(resources, proxy) {
            return None;
        }
        let sidecars = || {
            resources
                .iter()
                .filter_map(|r| r.as_sidecar().map(|s| (r, s)))
        };
        let selector_less = |s: &Sidecar| s.workload_selector.is_none();
        let chosen = sidecars()
            .find(|(r, s)| {
                r.namespace == proxy.namespace
                    && s.workload_selector
                        .as_ref()
                        .is_some_and(|w| proxy.selected_by(&w.labels))
            })
            .or_else(|| {
                sidecars().find(|(r, s)| r.namespace == proxy.namespace && selector_less(s))
            })
            .or_else(|| {
                sidecars().find(|(r, s)| r.namespace == proxy.root_namespace && selector_less(s))
            })?;
        let (r, s) = chosen;
        Some(SidecarScope::compile(r.id(), s, &proxy.namespace))
    }

    fn compile(origin: String, s: &Sidecar, namespace: &str) -> SidecarScope {
        let mut entries = Vec::new();
        for l in &s.egress {
            let port = l
                .port
                .as_ref()
                .and_then(|p| u16::try_from(p.number).ok())
                .filter(|p| *p != 0);
            for h in &l.hosts {
                let Some((ns, dns)) = h.split_once('/') else {
                    continue;
                };
                let (exclude, ns) = match ns.strip_prefix('~') {
                    Some(rest) => (true, rest),
                    None => (false, ns),
                };
                let namespace = match ns {
                    "*" => None,
                    // Before 1.31 `~` alone meant "no namespace": `~/*` imports nothing
                    // either way, which an exclusion of every namespace also gives.
                    "" if exclude => None,
                    "." => Some(namespace.to_string()),
                    other => Some(other.to_string()),
                };
                entries.push(Entry {
                    exclude,
                    namespace,
                    host: dns.to_ascii_lowercase(),
                    port,
                });
            }
        }
        // Istio: an explicit `outboundTrafficPolicy: {}` is REGISTRY_ONLY (the zero value).
        let outbound_mode = s
            .outbound_traffic_policy
            .as_ref()
            .map(|o| o.mode.unwrap_or(OutboundMode::RegistryOnly));
        let ingress = s
            .ingress
            .iter()
            .filter_map(|i| {
                let port = u16::try_from(i.port.as_ref()?.number).ok()?;
                let to: SocketAddr = i.default_endpoint.parse().ok()?;
                // `0.0.0.0:P` / `[::]:P` is the workload's own address: loopback here.
                let to = if to.ip().is_unspecified() {
                    SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), to.port())
                } else {
                    to
                };
                Some((port, to))
            })
            .collect();
        SidecarScope {
            origin,
            entries,
            outbound_mode,
            ingress,
        }
    }

    /// Whether `host` (a qualified service or VirtualService host, possibly a wildcard) of
    /// namespace `ns` is visible. `has_port` says whether the host has a given port (a
    /// listener with a port imports only services that have it; VirtualServices pass
    /// `|_| true`).
    pub fn imports(&self, ns: &str, host: &str, has_port: impl Fn(u16) -> bool) -> bool {
        let hit = |e: &Entry| {
            e.namespace.as_deref().is_none_or(|n| n == ns)
                && (e.host == "*" || host::matches(&e.host, host))
        };
        let excluded = self.entries.iter().any(|e| e.exclude && hit(e));
        !excluded
            && self
                .entries
                .iter()
                .any(|e| !e.exclude && hit(e) && e.port.is_none_or(&has_port))
    }

    /// Where the traffic for workload port `port` goes, when an `ingress[]` listener of the
    /// Sidecar names it with a `defaultEndpoint`.
    pub fn ingress_endpoint(&self, port: u16) -> Option<SocketAddr> {
        self.ingress
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, to)| *to)
    }

    /// Whether any of a VirtualService's hosts is visible.
    pub fn imports_any(&self, ns: &str, hosts: &[String]) -> bool {
        hosts
            .iter()
            .any(|h| self.imports(ns, &host::qualify(h, ns), |_| true))
    }
}

/// A proxy a Gateway selects is a gateway: Istio applies no Sidecar to gateways.
fn is_gateway(resources: &[Resource], proxy: &ProxySettings) -> bool {
    resources
        .iter()
        .filter_map(Resource::as_gateway)
        .any(|g| super::gateway_routes::serves(g, proxy))
}
