//! The Gateway API kinds' validation: the CEL and webhook rules of the API reference
//! (kubernetes-sigs/gateway-api `apis/v1/*_types.go`, `+kubebuilder:validation` markers),
//! with their messages where the API has one. The route kinds are in [`routes`].

mod routes;

use super::names;
use super::V;
use crate::model::gateway_api::{KubeGateway, Listener, ReferenceGrant, TlsMode};
use crate::model::GatewayApiSpec;
use std::collections::HashSet;

/// Validates one Gateway API document.
pub(crate) fn validate(v: &mut V, s: &GatewayApiSpec) {
    match s {
        GatewayApiSpec::Gateway(g) => gateway(v, g.as_ref()),
        GatewayApiSpec::HttpRoute(r) => routes::http_route(v, r),
        GatewayApiSpec::GrpcRoute(r) => routes::grpc_route(v, r),
        GatewayApiSpec::TlsRoute(r) => routes::tls_route(v, r),
        GatewayApiSpec::TcpRoute(r) => routes::tcp_route(v, r),
        GatewayApiSpec::ReferenceGrant(g) => reference_grant(v, g),
    }
}

/// A Gateway API `Hostname`: a DNS subdomain, optionally with a leading `*.` label; no IP,
/// no port.
pub(crate) fn hostname(v: &mut V, p: &str, h: &str) {
    let bare = h.strip_prefix("*.").unwrap_or(h);
    let ip = h.parse::<std::net::IpAddr>().is_ok();
    if h.is_empty() || ip || !names::is_dns1123_subdomain(&bare.to_ascii_lowercase()) {
        v.err(p, format!("invalid hostname {h:?}: a DNS name, optionally prefixed by \"*.\" (no IP address, no port)"));
    }
}

fn gateway(v: &mut V, g: &KubeGateway) {
    if g.gateway_class_name.is_empty() {
        v.err("spec.gatewayClassName", "spec.gatewayClassName is required");
    }
    if g.listeners.is_empty() || g.listeners.len() > 64 {
        v.err(
            "spec.listeners",
            format!("a Gateway has 1 to 64 listeners, got {}", g.listeners.len()),
        );
    }
    let mut names = HashSet::new();
    let mut combos = HashSet::new();
    for (i, l) in g.listeners.iter().enumerate() {
        let p = format!("spec.listeners[{i}]");
        if !names.insert(l.name.as_str()) {
            v.err(
                &format!("{p}.name"),
                "Listener name must be unique within the Gateway",
            );
        }
        if !combos.insert((l.port, l.protocol.as_str(), l.hostname.as_deref())) {
            v.err(
                &p,
                "Combination of port, protocol and hostname must be unique for each listener",
            );
        }
        listener(v, &p, l);
    }
    for (field, set) in [
        ("addresses", !g.addresses.is_empty()),
        ("infrastructure", g.infrastructure.is_some()),
        ("tls", g.tls.is_some()),
        ("allowedListeners", g.allowed_listeners.is_some()),
    ] {
        if set {
            v.not_enforced(
                &format!("spec.{field}"),
                "the proxy serves its Gateway on its own address",
            );
        }
    }
}

fn listener(v: &mut V, p: &str, l: &Listener) {
    if l.name.is_empty() || !names::is_dns1123_subdomain(&l.name) {
        v.err(
            &format!("{p}.name"),
            format!("invalid listener name {:?}: a DNS subdomain", l.name),
        );
    }
    if l.port == 0 || l.port > 65535 {
        v.err(
            &format!("{p}.port"),
            format!("port {} must be 1 to 65535", l.port),
        );
    }
    let proto = l.protocol.as_str();
    let known = ["HTTP", "HTTPS", "TLS", "TCP", "UDP"].contains(&proto);
    if !known && !proto.contains('/') {
        v.err(
            &format!("{p}.protocol"),
            format!(
                "invalid protocol {proto:?}: HTTP, HTTPS, TLS, TCP, UDP or a domain-prefixed name"
            ),
        );
    }
    if let Some(h) = &l.hostname {
        if matches!(proto, "TCP" | "UDP") {
            v.err(
                &format!("{p}.hostname"),
                "hostname must not be specified for protocols ['TCP', 'UDP']",
            );
        }
        hostname(v, &format!("{p}.hostname"), h);
    }
    listener_tls(v, p, l);
    allowed_routes(v, p, l);
}

/// `tls`: present exactly for HTTPS and TLS, with certificates to terminate.
fn listener_tls(v: &mut V, p: &str, l: &Listener) {
    let proto = l.protocol.as_str();
    match (&l.tls, proto) {
        (None, "HTTPS" | "TLS") => v.err(p, "tls must be specified for protocols ['HTTPS', 'TLS']"),
        (Some(_), "HTTP" | "TCP" | "UDP") => v.err(
            &format!("{p}.tls"),
            "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
        ),
        (Some(t), _) => {
            let mode = t.mode.unwrap_or_default();
            if mode == TlsMode::Terminate && t.certificate_refs.is_empty() && t.options.is_empty() {
                v.err(
                    &format!("{p}.tls"),
                    "certificateRefs or options must be specified when mode is Terminate",
                );
            }
            if mode == TlsMode::Passthrough && proto == "HTTPS" {
                v.err(
                    &format!("{p}.tls.mode"),
                    "Passthrough is only valid for protocol TLS",
                );
            }
            if t.certificate_refs.len() > 64 {
                v.err(
                    &format!("{p}.tls.certificateRefs"),
                    "at most 64 certificateRefs",
                );
            }
            if t.certificate_refs.len() > 1 {
                v.not_enforced(
                    &format!("{p}.tls.certificateRefs"),
                    "only the first certificate is served",
                );
            }
            for (i, c) in t.certificate_refs.iter().enumerate() {
                let kind = c.kind.as_deref().unwrap_or("Secret");
                if !c.group.as_deref().unwrap_or("").is_empty() || kind != "Secret" {
                    v.err(&format!("{p}.tls.certificateRefs[{i}]"), format!("certificate reference kind {kind:?}: only a (core) Secret, named here by the directory holding its tls.crt and tls.key"));
                }
            }
            if t.frontend_validation.is_some() {
                v.not_enforced(
                    &format!("{p}.tls.frontendValidation"),
                    "client certificates are not requested",
                );
            }
        }
        _ => {}
    }
}

/// `allowedRoutes`: a selector for `Selector`, and what the proxy can match of one.
fn allowed_routes(v: &mut V, p: &str, l: &Listener) {
    if let Some(ns) = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
    {
        use crate::model::gateway_api::FromNamespaces;
        let path = format!("{p}.allowedRoutes.namespaces");
        match (ns.from, &ns.selector) {
            (Some(FromNamespaces::Selector), None) => {
                v.err(&path, "selector must be specified when from is Selector")
            }
            (Some(FromNamespaces::Selector), Some(s))
                if !s.match_expressions.is_empty()
                    || s.match_labels
                        .keys()
                        .any(|k| k != "kubernetes.io/metadata.name") =>
            {
                v.warn(&format!("{path}.selector"), "namespace labels are unknown to the proxy: only kubernetes.io/metadata.name (every namespace's own name) is matched, other requirements select no namespace");
            }
            _ => {}
        }
    }
}

fn reference_grant(v: &mut V, g: &ReferenceGrant) {
    for (field, n) in [("from", g.from.len()), ("to", g.to.len())] {
        if n == 0 || n > 16 {
            v.err(
                &format!("spec.{field}"),
                format!("spec.{field} holds 1 to 16 entries, got {n}"),
            );
        }
    }
    for (i, f) in g.from.iter().enumerate() {
        if f.kind.is_empty() {
            v.err(&format!("spec.from[{i}].kind"), "kind is required");
        }
        if !names::is_lower_dns1123_label(&f.namespace) {
            v.err(
                &format!("spec.from[{i}].namespace"),
                format!("invalid namespace {:?}", f.namespace),
            );
        }
    }
    for (i, t) in g.to.iter().enumerate() {
        if t.kind.is_empty() {
            v.err(&format!("spec.to[{i}].kind"), "kind is required");
        }
    }
}
