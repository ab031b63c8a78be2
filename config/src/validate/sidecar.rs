//! Sidecar rules (istio/istio `pkg/config/validation` `ValidateSidecar` and
//! `agent.ValidateNamespaceSlashWildcardHostname`).

use super::{names, V};
use crate::model::proxy::OutboundMode;
use crate::model::sidecar::*;
use std::collections::BTreeSet;

pub(crate) fn validate(v: &mut V, s: &Sidecar) {
    if let Some(ws) = &s.workload_selector {
        if ws.labels.is_empty() {
            v.warn(
                "spec.workloadSelector",
                "workload selector specified without labels, this will match every workload of the namespace",
            );
        }
        for (k, _) in &ws.labels {
            if k.is_empty() || k.contains('*') {
                v.err(
                    "spec.workloadSelector.labels",
                    "empty key or wildcard in workload selector",
                );
            }
        }
        v.labels("spec.workloadSelector.labels", &ws.labels);
    }
    if s.egress.is_empty()
        && s.ingress.is_empty()
        && s.outbound_traffic_policy.is_none()
        && s.inbound_connection_pool.is_none()
    {
        v.err(
            "spec",
            "sidecar: empty configuration provided: one of egress, ingress, outboundTrafficPolicy or inboundConnectionPool is required",
        );
    }
    let mut ingress_ports = BTreeSet::new();
    for (i, l) in s.ingress.iter().enumerate() {
        ingress(v, &format!("spec.ingress[{i}]"), l, &mut ingress_ports);
    }
    let catch_all = s.egress.iter().filter(|e| e.port.is_none()).count();
    for (i, e) in s.egress.iter().enumerate() {
        let p = format!("spec.egress[{i}]");
        if e.port.is_none() && i + 1 != s.egress.len() {
            v.err(
                &p,
                "sidecar: the egress listener with empty port should be the last listener in the list",
            );
        }
        if let Some(port) = &e.port {
            sidecar_port(v, &format!("{p}.port"), port, e.bind.starts_with("unix://"));
        } else if catch_all > 1 {
            v.err(&p, "sidecar: only one egress listener may have no port");
        }
        if !e.bind.is_empty()
            && !e.bind.starts_with("unix://")
            && e.bind.parse::<std::net::IpAddr>().is_err()
        {
            v.err(
                &format!("{p}.bind"),
                format!("invalid bind address {:?}", e.bind),
            );
        }
        capture_mode(v, &p, &e.capture_mode);
        egress_hosts(v, &p, &e.hosts);
    }
    if let Some(o) = &s.outbound_traffic_policy {
        let mode = o.mode.unwrap_or(OutboundMode::RegistryOnly);
        if let Some(d) = &o.egress_proxy {
            if mode != OutboundMode::AllowAny {
                v.err(
                    "spec.outboundTrafficPolicy.egressProxy",
                    "egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
                );
            }
            if d.port.as_ref().is_none_or(|p| p.number == 0) {
                v.err(
                    "spec.outboundTrafficPolicy.egressProxy.port",
                    "egress_proxy port must be non-zero",
                );
            }
            v.not_enforced(
                "spec.outboundTrafficPolicy.egressProxy",
                "ALLOW_ANY traffic goes to its original destination",
            );
        }
    }
    if s.inbound_connection_pool.is_some() {
        v.not_enforced(
            "spec.inboundConnectionPool",
            "inbound connections are limited by Proxy.spec.limits",
        );
    }
}

fn sidecar_port(v: &mut V, p: &str, port: &SidecarPort, unix_bind: bool) {
    if port.target_port.is_some() {
        v.err(
            &format!("{p}.targetPort"),
            "targetPort has no meaning in Sidecar resources",
        );
    }
    if port.number == 0 {
        if !unix_bind {
            v.err(
                &format!("{p}.number"),
                "port 0 is only allowed with a unix:// bind address",
            );
        }
    } else if let Err(e) = names::check_port(u64::try_from(port.number).unwrap_or(0)) {
        v.err(&format!("{p}.number"), e);
    }
    if port.protocol.is_empty() {
        v.err(&format!("{p}.protocol"), "protocol must be set");
    }
    if !port.name.is_empty() && !names::is_dns1123_label(&port.name) {
        v.err(
            &format!("{p}.name"),
            format!("invalid port name {:?}", port.name),
        );
    }
}

fn capture_mode(v: &mut V, p: &str, mode: &Option<String>) {
    if let Some(m) = mode.as_deref() {
        if !["DEFAULT", "IPTABLES", "NONE"].contains(&m) {
            v.err(
                &format!("{p}.captureMode"),
                format!("unknown capture mode {m:?}: DEFAULT, IPTABLES or NONE"),
            );
        }
    }
}

fn ingress(v: &mut V, p: &str, l: &IngressListener, seen: &mut BTreeSet<i64>) {
    let Some(port) = &l.port else {
        v.err(
            &format!("{p}.port"),
            "sidecar: ingress listener must have a port",
        );
        return;
    };
    sidecar_port(v, &format!("{p}.port"), port, false);
    if !seen.insert(port.number) {
        v.err(
            &format!("{p}.port"),
            format!(
                "sidecar: ports on IP bound listeners must be unique: {}",
                port.number
            ),
        );
    }
    if !l.bind.is_empty() && l.bind.parse::<std::net::IpAddr>().is_err() {
        v.err(
            &format!("{p}.bind"),
            format!("invalid bind address {:?}", l.bind),
        );
    }
    capture_mode(v, p, &l.capture_mode);
    default_endpoint(v, &format!("{p}.defaultEndpoint"), &l.default_endpoint);
    if let Some(tls) = &l.tls {
        use crate::model::gateway::ServerTlsMode;
        let mode = tls.mode.unwrap_or(ServerTlsMode::Simple);
        if !matches!(mode, ServerTlsMode::Simple | ServerTlsMode::Mutual) {
            v.err(
                &format!("{p}.tls.mode"),
                format!("sidecar: ingress TLS mode {mode:?} is not supported (SIMPLE or MUTUAL)"),
            );
        }
        v.not_enforced(
            &format!("{p}.tls"),
            "inbound TLS follows PeerAuthentication",
        );
    }
    if l.connection_pool.is_some() {
        v.not_enforced(
            &format!("{p}.connectionPool"),
            "inbound connections are limited by Proxy.spec.limits",
        );
    }
}

/// Istio: `127.0.0.1:PORT`, `0.0.0.0:PORT`, `[::1]:PORT`, `[::]:PORT` or `unix:///path`;
/// empty is allowed (the workload's own port).
fn default_endpoint(v: &mut V, p: &str, ep: &str) {
    if ep.is_empty() {
        return;
    }
    if let Some(path) = ep.strip_prefix("unix://") {
        if !path.starts_with('/') {
            v.err(p, "unix domain socket paths must be absolute");
        }
        return;
    }
    let ok = ep.parse::<std::net::SocketAddr>().is_ok_and(|a| {
        a.port() != 0
            && matches!(
                a.ip().to_string().as_str(),
                "127.0.0.1" | "0.0.0.0" | "::1" | "::"
            )
    });
    if !ok {
        v.err(
            p,
            format!("invalid defaultEndpoint {ep:?}: 127.0.0.1:PORT, 0.0.0.0:PORT, [::1]:PORT, [::]:PORT or unix:///path"),
        );
    }
}

/// `namespace/dnsName` (namespace `*`, `.`, `~` or a DNS label, optionally after `~`;
/// dnsName `*`, `*.suffix` or an FQDN).
fn egress_hosts(v: &mut V, p: &str, hosts: &[String]) {
    if hosts.is_empty() {
        v.err(
            &format!("{p}.hosts"),
            "sidecar: egress listener must contain at least one host",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, h) in hosts.iter().enumerate() {
        let hp = format!("{p}.hosts[{i}]");
        if !seen.insert(h.as_str()) {
            v.warn(&hp, format!("duplicate host {h:?}"));
        }
        let Some((ns, dns)) = h.split_once('/') else {
            v.err(&hp, format!("host {h:?} must be of form namespace/dnsName"));
            continue;
        };
        let ns = ns.strip_prefix('~').unwrap_or(ns);
        if !(ns.is_empty() || ns == "*" || ns == "." || names::is_dns1123_label(ns)) {
            v.err(&hp, format!("invalid namespace value {ns:?} in host {h:?}"));
        }
        if dns.is_empty() {
            v.err(&hp, format!("host {h:?} has an empty dnsName"));
        } else if dns != "*" {
            if let Err(e) = names::check_wildcard_domain(dns) {
                v.err(&hp, e);
            }
        }
    }
    if hosts.len() > 1 && hosts.iter().any(|h| h == "*/*") {
        v.warn(
            &format!("{p}.hosts"),
            "`*/*` imports every host: the other entries add nothing",
        );
    }
}
