//! Rules for meshproxy's `RateLimitPolicy` kind and `Proxy.spec.rateLimit`
//! (docs/config.md, "Rate limiting").

use super::names;
use super::V;
use crate::diag::{Diagnostics, Severity};
use crate::model::proxy::RateLimitBackend;
use crate::model::rate_limit_policy::*;
use crate::model::{Resource, VirtualService};

pub(crate) fn validate(v: &mut V, p: &RateLimitPolicy) {
    if let Some(s) = &p.selector {
        v.labels("spec.selector.matchLabels", &s.match_labels);
    }
    for (i, h) in p.hosts.iter().enumerate() {
        if let Err(e) = names::check_wildcard_domain(h) {
            v.err(&format!("spec.hosts[{i}]"), e);
        }
    }
    if p.rules.is_empty() {
        v.err("spec.rules", "at least one rule is required");
    }
    for (i, r) in p.rules.iter().enumerate() {
        rule(v, &format!("spec.rules[{i}]"), r);
    }
}

fn rule(v: &mut V, p: &str, r: &Rule) {
    let no_vs = VirtualService::default();
    for (i, m) in r.matches.iter().enumerate() {
        let mp = format!("{p}.match[{i}]");
        super::virtual_service::http_match(v, &mp, m, &no_vs);
        // A rate limit is decided by the proxy that serves the request: the sidecar's
        // own labels and gateways are its selector's business, not a match's.
        for (set, field) in [
            (!m.source_labels.is_empty(), "sourceLabels"),
            (!m.gateways.is_empty(), "gateways"),
            (!m.source_namespace.is_empty(), "sourceNamespace"),
        ] {
            if set {
                v.err(
                    &format!("{mp}.{field}"),
                    format!(
                        "{field} is not supported in a RateLimitPolicy match (use spec.selector)"
                    ),
                );
            }
        }
    }
    for (i, c) in r.client_selectors.iter().enumerate() {
        client_selector(v, &format!("{p}.clientSelectors[{i}]"), c);
    }
    match &r.limit {
        None => v.err(&format!("{p}.limit"), "limit is required"),
        Some(l) => {
            if l.requests <= 0 || l.requests > u32::MAX as i64 {
                v.err(
                    &format!("{p}.limit.requests"),
                    format!("requests must be in 1..{}, got {}", u32::MAX, l.requests),
                );
            }
            if l.unit.is_none() {
                v.err(
                    &format!("{p}.limit.unit"),
                    "unit is required (Second, Minute, Hour or Day)",
                );
            }
        }
    }
}

fn client_selector(v: &mut V, p: &str, c: &ClientSelector) {
    if c.headers.is_empty() && c.source_cidr.is_none() && c.source_principals.is_empty() {
        v.err(
            p,
            "a client selector needs headers, sourceCIDR or sourcePrincipals",
        );
    }
    for (i, h) in c.headers.iter().enumerate() {
        header(v, &format!("{p}.headers[{i}]"), h);
    }
    if let Some(s) = &c.source_cidr {
        if let Err(e) = names::check_ip_or_cidr(&s.value) {
            v.err(&format!("{p}.sourceCIDR.value"), e);
        }
    }
    for (i, s) in c.source_principals.iter().enumerate() {
        if s.is_empty() {
            v.err(
                &format!("{p}.sourcePrincipals[{i}]"),
                "principal must not be empty",
            );
        }
    }
}

fn header(v: &mut V, p: &str, h: &HeaderSelector) {
    if !names::is_token(&h.name) {
        v.err(
            &format!("{p}.name"),
            format!("invalid header name {:?}", h.name),
        );
    }
    match (h.match_type.unwrap_or(HeaderMatchType::Exact), &h.value) {
        (HeaderMatchType::Distinct, Some(_)) => v.err(
            &format!("{p}.value"),
            "value must not be set with type Distinct (each value gets its own bucket)",
        ),
        (HeaderMatchType::Distinct, None) => {}
        (_, None) => v.err(
            &format!("{p}.value"),
            "value is required with type Exact or RegularExpression",
        ),
        (HeaderMatchType::RegularExpression, Some(re)) => v.regex(&format!("{p}.value"), re),
        (HeaderMatchType::Exact, Some(_)) => {}
    }
}

/// `Proxy.spec.rateLimit`.
pub(crate) fn backend(v: &mut V, b: &RateLimitBackend) {
    let Some(r) = &b.redis else {
        return;
    };
    let ok = r
        .address
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        v.err(
            "spec.rateLimit.redis.address",
            format!("{:?} is not a host:port address", r.address),
        );
    }
    v.duration("spec.rateLimit.redis.timeout", &r.timeout);
}

/// A Global policy with no Redis to count in: every request takes the failure mode.
pub(crate) fn check_global_backend(resources: &[Resource], out: &mut Diagnostics) {
    let has_redis = resources.iter().any(|r| {
        r.as_proxy()
            .and_then(|p| p.rate_limit.as_ref())
            .is_some_and(|b| b.redis.is_some())
    });
    if has_redis {
        return;
    }
    for r in resources {
        if r.as_rate_limit_policy()
            .is_some_and(|p| p.limit_type == Some(LimitType::Global))
        {
            out.push(super::diag_for(
                r,
                Severity::Warning,
                "spec.type",
                "type Global needs Proxy.spec.rateLimit.redis; without it every request \
                 takes the failure mode (allowed unless failureModeDeny)"
                    .into(),
            ));
        }
    }
}
