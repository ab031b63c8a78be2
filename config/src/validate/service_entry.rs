//! ServiceEntry rules (istio/istio `ValidateServiceEntry` and the CRD's CEL rules).

use super::names;
use super::V;
use crate::model::service_entry::*;
use std::collections::BTreeSet;

pub(crate) fn validate(v: &mut V, se: &ServiceEntry) {
    let resolution = se.resolution.unwrap_or(Resolution::None);
    if se.hosts.is_empty() {
        v.err("spec.hosts", "ServiceEntry must have at least one host");
    }
    if se.hosts.len() > 256 {
        v.err("spec.hosts", "at most 256 hosts are allowed");
    }
    for (i, h) in se.hosts.iter().enumerate() {
        let p = format!("spec.hosts[{i}]");
        if h == "*" {
            v.err(&p, "hostname cannot be wildcard");
        } else if let Err(e) = names::check_wildcard_domain(h) {
            v.err(&p, e);
        } else if h.starts_with('*') && !h.starts_with("*.") {
            v.warn(&p, format!("partial wildcard host {h:?} is not supported: only a leading \"*.\" label is matched as a wildcard"));
        } else if matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin)
            && se.endpoints.is_empty()
            && names::check_fqdn(h).is_err()
        {
            // Istio: without endpoints the hosts themselves are resolved, so they must be
            // FQDNs (no wildcard).
            v.err(
                &p,
                format!(
                    "hosts must be FQDN if no endpoints are provided for resolution mode {}",
                    resolution_name(resolution)
                ),
            );
        }
    }
    for (i, a) in se.addresses.iter().enumerate() {
        let p = format!("spec.addresses[{i}]");
        if let Err(e) = names::check_ip_or_cidr(a) {
            v.err(&p, e);
        } else if a.contains('/') && !matches!(resolution, Resolution::None | Resolution::Static) {
            v.err(
                &p,
                "CIDR addresses are allowed only for NONE/STATIC resolution types",
            );
        }
    }
    let mut numbers = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    if se.ports.len() > 256 {
        v.err("spec.ports", "at most 256 ports are allowed");
    }
    for (i, port) in se.ports.iter().enumerate() {
        let p = format!("spec.ports[{i}]");
        if let Err(e) = names::check_port(port.number as u64) {
            v.err(&format!("{p}.number"), e);
        } else if !numbers.insert(port.number) {
            v.err(
                &format!("{p}.number"),
                format!("port number {} cannot be duplicated", port.number),
            );
        }
        if port.name.is_empty() {
            v.err(&format!("{p}.name"), "port name is required");
        } else {
            if !names::is_dns1123_label(&port.name) {
                v.err(
                    &format!("{p}.name"),
                    format!(
                        "invalid port name {:?}: must be a DNS-1123 label",
                        port.name
                    ),
                );
            }
            if !port_names.insert(port.name.as_str()) {
                v.err(
                    &format!("{p}.name"),
                    format!("port name {:?} cannot be duplicated", port.name),
                );
            }
        }
        if !port.protocol.is_empty() && !names::is_known_protocol(&port.protocol) {
            v.err(
                &format!("{p}.protocol"),
                format!(
                    "unsupported protocol {:?} (expected one of {})",
                    port.protocol,
                    names::PROTOCOLS.join(", ")
                ),
            );
        }
        if let Some(tp) = port.target_port {
            if let Err(e) = names::check_port(tp as u64) {
                v.err(&format!("{p}.targetPort"), e);
            }
        }
    }
    if se.workload_selector.is_some() && !se.endpoints.is_empty() {
        v.err(
            "spec",
            "only one of workloadSelector or endpoints can be set",
        );
    }
    if let Some(ws) = &se.workload_selector {
        v.labels("spec.workloadSelector.labels", &ws.labels);
    }
    match resolution {
        Resolution::None => {
            if !se.endpoints.is_empty() {
                v.err("spec.endpoints", "NONE mode cannot set endpoints");
            }
            // Istio warns: with NONE the selected workloads are never used as endpoints.
            if se.workload_selector.is_some() {
                v.warn(
                    "spec.workloadSelector",
                    "workloadSelector should not be set when resolution mode is NONE",
                );
            }
        }
        Resolution::Static => {
            if se.endpoints.is_empty() && se.workload_selector.is_none() {
                v.err("spec.endpoints", "STATIC resolution requires endpoints");
            }
        }
        Resolution::DnsRoundRobin => {
            if se.endpoints.len() > 1 {
                v.err(
                    "spec.endpoints",
                    "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
                );
            }
        }
        Resolution::DynamicDns => {
            if se.hosts.iter().any(|h| !crate::host::is_wildcard(h)) {
                v.err(
                    "spec.hosts",
                    "DYNAMIC_DNS resolution requires wildcard hosts",
                );
            }
            if se.location == Some(Location::MeshInternal) {
                v.err(
                    "spec.location",
                    "DYNAMIC_DNS resolution is only supported for MESH_EXTERNAL",
                );
            }
            v.not_enforced("spec.resolution", "DYNAMIC_DNS resolution");
        }
        Resolution::Dns => {}
    }
    // Istio: with several hosts and a resolution other than NONE, every port must be
    // HTTP-family or TLS, whose requests carry the host (authority or SNI); plain TCP (or an
    // unset protocol) cannot tell the hosts apart.
    if resolution != Resolution::None && se.hosts.len() > 1 {
        if let Some(i) = se
            .ports
            .iter()
            .position(|p| !is_http_or_tls_protocol(&p.protocol))
        {
            v.err(
                &format!("spec.ports[{i}].protocol"),
                "multiple hosts provided with non-HTTP, non-TLS ports",
            );
        }
    }
    if se.endpoints.len() > 4096 {
        v.err("spec.endpoints", "at most 4096 endpoints are allowed");
    }
    for (i, ep) in se.endpoints.iter().enumerate() {
        let p = format!("spec.endpoints[{i}]");
        endpoint(v, &p, ep, resolution, &port_names);
        // Istio: a unix:// endpoint serves exactly one service port.
        if ep.address.starts_with("unix://") && se.ports.len() != 1 {
            v.err(
                &format!("{p}.address"),
                format!(
                    "exactly 1 service port required for unix endpoints, the service entry has {}",
                    se.ports.len()
                ),
            );
        }
    }
    v.export_to("spec.exportTo", &se.export_to);
    for (i, san) in se.subject_alt_names.iter().enumerate() {
        if san.is_empty() {
            v.err(
                &format!("spec.subjectAltNames[{i}]"),
                "subject alt name must not be empty",
            );
        }
    }
}

/// Istio `protocol.Parse(p).IsHTTP() || IsTLS()` (case-insensitive; unset is neither).
fn is_http_or_tls_protocol(p: &str) -> bool {
    [
        "HTTP",
        "HTTP2",
        "HTTP_PROXY",
        "GRPC",
        "GRPC-WEB",
        "HTTPS",
        "TLS",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(p))
}

fn resolution_name(r: Resolution) -> &'static str {
    match r {
        Resolution::None => "NONE",
        Resolution::Static => "STATIC",
        Resolution::Dns => "DNS",
        Resolution::DnsRoundRobin => "DNS_ROUND_ROBIN",
        Resolution::DynamicDns => "DYNAMIC_DNS",
    }
}

/// A `WorkloadEntry` document (Istio `validateWorkloadEntry`): the address (IP, host name,
/// or `unix://` path without ports), port numbers and labels. Its port names are checked
/// against a ServiceEntry's ports when one selects it (they may name any service's).
pub(crate) fn validate_workload_entry(v: &mut V, we: &WorkloadEntry) {
    let names: BTreeSet<&str> = we.ports.keys().map(String::as_str).collect();
    endpoint(v, "spec", we, Resolution::Dns, &names);
    if !we.service_account.is_empty() && !names::is_dns1123_subdomain(&we.service_account) {
        v.err(
            "spec.serviceAccount",
            format!("invalid service account name {:?}", we.service_account),
        );
    }
}

fn endpoint(
    v: &mut V,
    p: &str,
    ep: &WorkloadEntry,
    resolution: Resolution,
    port_names: &BTreeSet<&str>,
) {
    let addr = ep.address.as_str();
    if addr.is_empty() {
        if ep.network.is_empty() {
            v.err(&format!("{p}.address"), "address is required");
        }
    } else if let Some(path) = addr.strip_prefix("unix://") {
        if !(path.starts_with('/') || path.starts_with('@')) {
            v.err(
                &format!("{p}.address"),
                "UDS must be an absolute path or abstract socket",
            );
        }
        if path.ends_with('/') {
            v.err(&format!("{p}.address"), "UDS may not be a dir");
        }
        if !ep.ports.is_empty() {
            v.err(&format!("{p}.ports"), "UDS may not include ports");
        }
    } else if addr.parse::<std::net::IpAddr>().is_err() {
        if resolution == Resolution::Static {
            v.err(
                &format!("{p}.address"),
                format!("endpoint address {addr:?} is not a valid IP address (STATIC resolution)"),
            );
        } else if let Err(e) = names::check_fqdn(addr) {
            v.err(&format!("{p}.address"), e);
        }
    }
    for (name, port) in &ep.ports {
        let pp = format!("{p}.ports.{name}");
        if !port_names.contains(name.as_str()) {
            v.err(
                &pp,
                format!("endpoint port {name:?} is not defined by the service entry"),
            );
        }
        if let Err(e) = names::check_port(*port as u64) {
            v.err(&pp, e);
        }
    }
    v.labels(&format!("{p}.labels"), &ep.labels);
    if !ep.locality.is_empty() {
        v.not_enforced(&format!("{p}.locality"), "locality-aware load balancing");
    }
    if !ep.network.is_empty() {
        v.not_enforced(&format!("{p}.network"), "multi-network gateways");
    }
}
