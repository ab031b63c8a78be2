//! Checks across resources, in the spirit of `istioctl analyze`: references to hosts,
//! subsets, gateways and delegates that do not exist, conflicting resources, and duplicates.
//! Unresolved references are warnings (the config is still usable); duplicates of the same
//! `kind/namespace/name` are errors, as the Kubernetes API would refuse them.

use super::diag_for;
use super::virtual_service::MESH_GATEWAY;
use crate::diag::{Diagnostics, Severity};
use crate::host;
use crate::model::virtual_service::Destination;
use crate::model::{Kind, Resource};
use std::collections::{BTreeMap, BTreeSet};

/// The namespace whose PeerAuthentication/AuthorizationPolicy apply mesh-wide, unless the
/// `Proxy` document says otherwise (Istio MeshConfig `rootNamespace` default).
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

pub(crate) fn check(resources: &[Resource], out: &mut Diagnostics) {
    let warn = |out: &mut Diagnostics, r: &Resource, path: &str, msg: String| {
        out.push(diag_for(r, Severity::Warning, path, msg));
    };

    let mut seen: BTreeMap<String, &Resource> = BTreeMap::new();
    for r in resources {
        if let Some(first) = seen.get(&r.id()) {
            out.push(diag_for(
                r,
                Severity::Error,
                "metadata.name",
                format!(
                    "duplicate resource: {} is already defined in {}",
                    r.id(),
                    first.origin
                ),
            ));
        } else {
            seen.insert(r.id(), r);
        }
    }
    let proxies: Vec<&Resource> = resources.iter().filter(|r| r.kind == Kind::Proxy).collect();
    for extra in proxies.iter().skip(1) {
        out.push(diag_for(
            extra,
            Severity::Error,
            "",
            format!(
                "at most one Proxy document is allowed; the first is in {}",
                proxies[0].origin
            ),
        ));
    }
    let root_ns = proxies
        .first()
        .and_then(|r| r.as_proxy())
        .and_then(|p| p.root_namespace.clone())
        .unwrap_or_else(|| DEFAULT_ROOT_NAMESPACE.to_string());

    // The registry: qualified ServiceEntry hosts with their port numbers.
    let mut registry: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for r in resources {
        if let Some(se) = r.as_service_entry() {
            for h in &se.hosts {
                registry
                    .entry(host::qualify(h, &r.namespace))
                    .or_default()
                    .extend(se.ports.iter().map(|p| p.number));
            }
        }
    }
    let find_service = |h: &str| -> Option<&BTreeSet<u32>> {
        registry.get(h).or_else(|| {
            registry
                .iter()
                .filter(|(k, _)| host::is_wildcard(k) && host::matches(k, h))
                .max_by_key(|(k, _)| k.len())
                .map(|(_, v)| v)
        })
    };
    // Subsets per DR host.
    let mut subsets: Vec<(String, BTreeSet<&str>)> = Vec::new();
    let mut dr_hosts: BTreeMap<String, &Resource> = BTreeMap::new();
    for r in resources {
        if let Some(dr) = r.as_destination_rule() {
            let h = host::qualify(&dr.host, &r.namespace);
            subsets.push((
                h.clone(),
                dr.subsets.iter().map(|s| s.name.as_str()).collect(),
            ));
            if dr.workload_selector.is_none() {
                if let Some(first) = dr_hosts.get(&h) {
                    warn(out, r, "spec.host", format!(
                        "host {h} also has DestinationRule {}; they are merged: the first definition of each subset and the first trafficPolicy win",
                        first.id()
                    ));
                } else {
                    dr_hosts.insert(h.clone(), r);
                }
            }
            if !dr.host.is_empty() && find_service(&h).is_none() && !host::is_wildcard(&h) {
                warn(
                    out,
                    r,
                    "spec.host",
                    format!("referenced host not found in any ServiceEntry: {h:?}"),
                );
            }
        }
    }
    let gateways: BTreeSet<String> = resources
        .iter()
        .filter(|r| r.kind == Kind::Gateway)
        .map(|r| format!("{}/{}", r.namespace, r.name))
        .collect();
    let delegates_used: BTreeSet<String> = resources
        .iter()
        .filter(|r| !crate::model::Deferred::skips(r, |d| d.delegates))
        .filter_map(|r| r.as_virtual_service().map(|vs| (r, vs)))
        .flat_map(|(r, vs)| {
            vs.http
                .iter()
                .filter_map(|h| {
                    h.delegate.as_ref().map(|d| {
                        let ns = if d.namespace.is_empty() {
                            &r.namespace
                        } else {
                            &d.namespace
                        };
                        format!("{ns}/{}", d.name)
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();

    let check_dest = |out: &mut Diagnostics, r: &Resource, path: &str, d: &Destination| {
        if d.host.is_empty() || d.host == "*" {
            return;
        }
        let h = host::qualify(&d.host, &r.namespace);
        match find_service(&h) {
            None => warn(out, r, &format!("{path}.host"), format!(
                "referenced host not found in any ServiceEntry: {h:?} (requests routed here get 503 NC)"
            )),
            Some(ports) => {
                match &d.port {
                    Some(p) if p.number != 0 && !ports.contains(&p.number) => warn(out, r, &format!("{path}.port.number"), format!(
                        "port {} is not a port of {h}", p.number
                    )),
                    None if ports.len() > 1 => warn(out, r, &format!("{path}.port"), format!(
                        "{h} has several ports; without destination.port the port of the request is used"
                    )),
                    _ => {}
                }
            }
        }
        if !d.subset.is_empty() {
            let defined = subsets
                .iter()
                .any(|(dh, names)| host::matches(dh, &h) && names.contains(d.subset.as_str()));
            if !defined {
                warn(out, r, &format!("{path}.subset"), format!(
                    "referenced subset {:?} of host {h} is not defined by any DestinationRule (requests routed here get 503 NC)",
                    d.subset
                ));
            }
        }
    };

    let mut mesh_hosts: BTreeMap<String, &Resource> = BTreeMap::new();
    for r in resources {
        let Some(vs) = r.as_virtual_service() else {
            continue;
        };
        for (i, g) in vs.gateways.iter().enumerate() {
            if g == MESH_GATEWAY {
                continue;
            }
            let full = if g.contains('/') {
                g.clone()
            } else {
                format!("{}/{g}", r.namespace)
            };
            if !gateways.contains(&full) {
                warn(
                    out,
                    r,
                    &format!("spec.gateways[{i}]"),
                    format!("referenced gateway not found: {full:?}"),
                );
            }
        }
        if vs.hosts.is_empty() && !delegates_used.contains(&format!("{}/{}", r.namespace, r.name)) {
            warn(out, r, "spec.hosts", "VirtualService has no hosts and no VirtualService delegates to it: it is never used".into());
        }
        let on_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == MESH_GATEWAY);
        if on_mesh {
            for (i, h) in vs.hosts.iter().enumerate() {
                let q = host::qualify(h, &r.namespace);
                if let Some(first) = mesh_hosts.get(&q) {
                    warn(out, r, &format!("spec.hosts[{i}]"), format!(
                        "host {q} is already routed by {} for the mesh; sidecars do not merge VirtualServices, so this one is ignored for it",
                        first.id()
                    ));
                } else {
                    mesh_hosts.insert(q, r);
                }
            }
        }
        for (i, rule) in vs.http.iter().enumerate() {
            for (j, d) in rule.route.iter().enumerate() {
                if let Some(dest) = &d.destination {
                    check_dest(
                        out,
                        r,
                        &format!("spec.http[{i}].route[{j}].destination"),
                        dest,
                    );
                }
            }
            if let Some(m) = &rule.mirror {
                check_dest(out, r, &format!("spec.http[{i}].mirror"), m);
            }
            for (j, m) in rule.mirrors.iter().enumerate() {
                if let Some(dest) = &m.destination {
                    check_dest(
                        out,
                        r,
                        &format!("spec.http[{i}].mirrors[{j}].destination"),
                        dest,
                    );
                }
            }
            if let Some(d) = &rule.delegate {
                let ns = if d.namespace.is_empty() {
                    &r.namespace
                } else {
                    &d.namespace
                };
                let exists = resources.iter().any(|x| {
                    x.kind == Kind::VirtualService && x.namespace == *ns && x.name == d.name
                });
                if !exists {
                    warn(
                        out,
                        r,
                        &format!("spec.http[{i}].delegate"),
                        format!(
                            "referenced delegate VirtualService not found: {ns}/{}",
                            d.name
                        ),
                    );
                }
            }
        }
        for (kind, routes) in [
            ("tcp", vs.tcp.iter().map(|t| &t.route).collect::<Vec<_>>()),
            ("tls", vs.tls.iter().map(|t| &t.route).collect()),
        ] {
            for (i, route) in routes.into_iter().enumerate() {
                for (j, d) in route.iter().enumerate() {
                    if let Some(dest) = &d.destination {
                        check_dest(
                            out,
                            r,
                            &format!("spec.{kind}[{i}].route[{j}].destination"),
                            dest,
                        );
                    }
                }
            }
        }
    }

    // PeerAuthentication scope conflicts.
    let mut pa_scopes: BTreeMap<String, &Resource> = BTreeMap::new();
    for r in resources {
        let Some(pa) = r.as_peer_authentication() else {
            continue;
        };
        let has_selector = pa
            .selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty());
        if has_selector && r.namespace == root_ns {
            warn(out, r, "spec.selector", format!(
                "a PeerAuthentication with a workload selector in the root namespace {root_ns:?} is ignored (as Istio does)"
            ));
            continue;
        }
        if !has_selector {
            let scope = r.namespace.clone();
            if let Some(first) = pa_scopes.get(&scope) {
                warn(
                    out,
                    r,
                    "spec",
                    format!(
                        "namespace {scope:?} already has the policy {}; only the first one is used",
                        first.id()
                    ),
                );
            } else {
                pa_scopes.insert(scope, r);
            }
        }
    }
}
