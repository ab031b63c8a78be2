//! Rules for meshproxy's own `Proxy` kind (docs/contract.md §2).

use super::names;
use super::V;
use crate::model::proxy::*;
use std::collections::BTreeSet;
use std::net::SocketAddr;

pub(crate) fn validate(v: &mut V, px: &Proxy) {
    super::extension_providers::validate(v, px);
    v.duration("spec.jwksRefreshInterval", &px.jwks_refresh_interval);
    if let Some(admin) = &px.admin {
        if let Some(a) = &admin.address {
            if a.parse::<SocketAddr>().is_err() {
                v.err(
                    "spec.admin.address",
                    format!("{a:?} is not an ip:port address"),
                );
            }
        }
    }
    if let Some(w) = &px.workload {
        v.labels("spec.workload.labels", &w.labels);
        if let Some(sa) = &w.service_account {
            if !names::is_dns1123_subdomain(sa) {
                v.err(
                    "spec.workload.serviceAccount",
                    format!("invalid service account name {sa:?}"),
                );
            }
        }
    }
    let admin_addr = px
        .admin
        .as_ref()
        .and_then(|a| a.address.as_ref())
        .and_then(|a| a.parse::<SocketAddr>().ok());
    let mut listener_names = BTreeSet::new();
    let mut addrs = BTreeSet::new();
    for (i, l) in px.listeners.iter().flatten().enumerate() {
        let p = format!("spec.listeners[{i}]");
        if l.name.is_empty() {
            v.err(&format!("{p}.name"), "listener name is required");
        } else if !listener_names.insert(l.name.as_str()) {
            v.err(
                &format!("{p}.name"),
                format!("duplicate listener name {:?}", l.name),
            );
        }
        match l.address.parse::<SocketAddr>() {
            Err(_) => v.err(
                &format!("{p}.address"),
                format!("{:?} is not an ip:port address", l.address),
            ),
            Ok(a) => {
                if a.port() != 0 && !addrs.insert(a) {
                    v.err(
                        &format!("{p}.address"),
                        format!("address {a} is used by another listener"),
                    );
                }
                if a.port() != 0 && Some(a) == admin_addr {
                    v.err(
                        &format!("{p}.address"),
                        format!("address {a} is the admin address"),
                    );
                }
            }
        }
        match l.direction {
            None => v.err(
                &format!("{p}.direction"),
                "direction is required (OUTBOUND or INBOUND)",
            ),
            Some(Direction::Inbound) => match &l.forward_to {
                None => v.err(
                    &format!("{p}.forwardTo"),
                    "an INBOUND listener needs forwardTo (the local app's ip:port)",
                ),
                Some(f) if f.parse::<SocketAddr>().is_err() => v.err(
                    &format!("{p}.forwardTo"),
                    format!("{f:?} is not an ip:port address"),
                ),
                Some(_) => {}
            },
            Some(Direction::Outbound) => {
                if l.forward_to.is_some() {
                    v.err(
                        &format!("{p}.forwardTo"),
                        "forwardTo is only valid on INBOUND listeners",
                    );
                }
            }
        }
    }
    if let Some(id) = &px.identity {
        for (field, val) in [
            ("certificate", &id.certificate),
            ("privateKey", &id.private_key),
            ("caCertificates", &id.ca_certificates),
        ] {
            let p = format!("spec.identity.{field}");
            if val.is_empty() {
                v.err(&p, format!("identity.{field} is required"));
            } else {
                super::files::check(v, &p, val);
            }
        }
    }
    if let Some(g) = &px.gateway_address {
        if g.parse::<std::net::IpAddr>().is_err() {
            v.err("spec.gatewayAddress", format!("{g:?} is not an IP address"));
        }
    }
    if let Some(td) = &px.trust_domain {
        if let Err(e) = names::check_trust_domain(td) {
            v.err("spec.trustDomain", e);
        }
    }
    if let Some(rn) = &px.root_namespace {
        if !names::is_lower_dns1123_label(rn) {
            v.err("spec.rootNamespace", format!("invalid namespace {rn:?}"));
        }
    }
    if let Some(l) = &px.limits {
        limits(v, l);
    }
    for (i, n) in px.internal_networks.iter().flatten().enumerate() {
        if crate::compile::proxy_settings::parse_network(n).is_none() {
            v.err(
                &format!("spec.internalNetworks[{i}]"),
                format!("{n:?} is not a CIDR or an IP address"),
            );
        }
    }
    if let Some(d) = &px.dns {
        dns(v, d);
    }
    if let Some(rl) = &px.rate_limit {
        super::rate_limit_policy::backend(v, rl);
    }
}

/// `spec.dns`: a resolver address we can send queries to, and a refresh rate Envoy would
/// take (`dns_refresh_rate` must be above 1ms) by Istio's duration rule.
fn dns(v: &mut V, d: &Dns) {
    use crate::compile::proxy_settings as s;
    if let Some(r) = &d.resolver {
        match s::parse_resolver(r) {
            None => v.err(
                "spec.dns.resolver",
                format!("{r:?} is not an IP address or an ip:port address (port 1-65535)"),
            ),
            Some(a) if a.ip().is_unspecified() || a.ip().is_multicast() => v.err(
                "spec.dns.resolver",
                format!("{r:?} cannot receive DNS queries (unspecified or multicast address)"),
            ),
            Some(_) => {}
        }
    }
    if let Some(t) = d.refresh_rate {
        if let Err(e) = t.check_istio() {
            v.err("spec.dns.refreshRate", format!("refreshRate: {e}"));
        } else if t > s::MAX_DNS_REFRESH_RATE {
            v.err(
                "spec.dns.refreshRate",
                format!(
                    "refreshRate must be at most {}, got {t}",
                    s::MAX_DNS_REFRESH_RATE
                ),
            );
        }
    }
}

/// `spec.limits`: every count at least 1 and below a bound past which it is no limit at
/// all; durations by Istio's rule (≥ 1ms, whole milliseconds), not zero (a limit cannot
/// be switched off) and not absurdly long.
fn limits(v: &mut V, l: &Limits) {
    use crate::compile::proxy_settings as d;
    for (field, value, max, unit) in [
        (
            "maxRequestHeadersKb",
            l.max_request_headers_kb,
            d::MAX_REQUEST_HEADERS_KB,
            " KiB",
        ),
        (
            "maxRequestHeaders",
            l.max_request_headers,
            d::MAX_REQUEST_HEADERS,
            "",
        ),
        (
            "maxConnectionsPerListener",
            l.max_connections_per_listener,
            d::MAX_CONNECTIONS_PER_LISTENER,
            "",
        ),
        (
            "maxDownstreamConnections",
            l.max_downstream_connections,
            d::MAX_DOWNSTREAM_CONNECTIONS,
            "",
        ),
        (
            "maxConcurrentStreams",
            l.max_concurrent_streams,
            d::MAX_CONCURRENT_STREAMS,
            "",
        ),
        (
            "maxActiveRequests",
            l.max_active_requests,
            d::MAX_ACTIVE_REQUESTS,
            "",
        ),
    ] {
        let Some(n) = value else { continue };
        let p = format!("spec.limits.{field}");
        if n < 1 {
            v.err(&p, format!("{field} must be at least 1, got {n}"));
        } else if n > max {
            v.err(&p, format!("{field} must be at most {max}{unit}, got {n}"));
        }
    }
    for (field, value, max) in [
        (
            "requestHeadersTimeout",
            l.request_headers_timeout,
            d::MAX_REQUEST_HEADERS_TIMEOUT,
        ),
        ("idleTimeout", l.idle_timeout, d::MAX_IDLE_TIMEOUT),
        (
            "streamIdleTimeout",
            l.stream_idle_timeout,
            d::MAX_STREAM_IDLE_TIMEOUT,
        ),
    ] {
        let Some(t) = value else { continue };
        let p = format!("spec.limits.{field}");
        if let Err(e) = t.check_istio() {
            v.err(&p, format!("{field}: {e} (a limit cannot be switched off)"));
        } else if t > max {
            v.err(&p, format!("{field} must be at most {max}, got {t}"));
        }
    }
}
