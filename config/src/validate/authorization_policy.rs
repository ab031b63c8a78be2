//! AuthorizationPolicy rules (istio/istio `ValidateAuthorizationPolicy` and
//! `pkg/config/security/security.go`).

use super::names;
use super::V;
use crate::model::authorization_policy::*;
use crate::model::common::PolicyTargetReference;
use crate::model::map::Map;

/// Condition keys Istio supports (`pkg/config/security/security.go`).
const CONDITION_KEYS: &[&str] = &[
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "source.trustDomain",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
];

/// Workload selector labels for security kinds: non-empty keys, no wildcards, values ≤ 63.
pub(crate) fn selector(v: &mut V, p: &str, labels: &Map<String, String>) {
    for (k, val) in labels {
        if k.is_empty() {
            v.err(p, "key must not be empty");
        }
        if k.contains('*') {
            v.err(p, format!("wildcard not allowed in label key match: {k:?}"));
        }
        if val.contains('*') {
            v.err(
                &format!("{p}.{k}"),
                "wildcard not allowed in label value match",
            );
        }
        if val.len() > 63 {
            v.err(
                &format!("{p}.{k}"),
                "label value must be at most 63 characters",
            );
        }
    }
}

pub(crate) fn validate(v: &mut V, ap: &AuthorizationPolicy) {
    let action = ap.action.unwrap_or(Action::Allow);
    let attachments = ap.selector.is_some() as u8
        + ap.target_ref.is_some() as u8
        + (!ap.target_refs.is_empty()) as u8;
    if attachments > 1 {
        v.err("spec", "only one of targetRefs or selector can be set");
    }
    if let Some(sel) = &ap.selector {
        selector(v, "spec.selector.matchLabels", &sel.match_labels);
    }
    if let Some(t) = &ap.target_ref {
        target_ref(v, "spec.targetRef", t);
    }
    if ap.target_refs.len() > 16 {
        v.err("spec.targetRefs", "at most 16 targetRefs are allowed");
    }
    for (i, t) in ap.target_refs.iter().enumerate() {
        target_ref(v, &format!("spec.targetRefs[{i}]"), t);
    }
    if ap.target_ref.is_some() || !ap.target_refs.is_empty() {
        v.not_enforced(
            "spec.targetRefs",
            "attachment to gateways and waypoints by reference; use selector",
        );
    }
    match (action, &ap.provider) {
        (Action::Custom, None) => v.err("spec.provider", "CUSTOM action requires a provider"),
        (Action::Custom, Some(p)) if p.name.is_empty() => {
            v.err("spec.provider.name", "provider name must not be empty")
        }
        (Action::Custom, Some(_)) => {}
        (_, Some(_)) => v.err(
            "spec.provider",
            "provider must only be set with the CUSTOM action",
        ),
        (_, None) => {}
    }
    if action == Action::Custom {
        v.warn("spec.action", "CUSTOM (external authorization) is not supported by meshproxy: this policy is not enforced");
    }
    if let Some(dry) = v.res.annotations.get("istio.io/dry-run") {
        const DRY_RUN: &str = "metadata.annotations.istio.io/dry-run";
        // Istio (`checkDryRunAnnotation`): only ALLOW and DENY take the annotation, whatever
        // its value; there it must parse with Go's strconv.ParseBool.
        if matches!(action, Action::Custom | Action::Audit) {
            v.err(DRY_RUN, "dry-run is only supported for ALLOW and DENY");
        } else {
            match parse_go_bool(dry) {
                None => v.err(
                    DRY_RUN,
                    format!("invalid value {dry:?}: must be a boolean (\"true\" or \"false\"; also 1, t, T, TRUE, True, 0, f, F, FALSE, False)"),
                ),
                Some(true) => v.not_enforced(
                    DRY_RUN,
                    "dry-run evaluation; meshproxy neither enforces nor logs a dry-run policy",
                ),
                Some(false) => {}
            }
        }
    }
    match &ap.rules {
        None => {
            if matches!(action, Action::Deny | Action::Custom) {
                v.err(
                    "spec.rules",
                    format!(
                        "a {} policy must have at least one rule",
                        action_name(action)
                    ),
                );
            }
        }
        Some(rules) => {
            if rules.len() > 512 {
                v.err("spec.rules", "at most 512 rules are allowed");
            }
            for (i, r) in rules.iter().enumerate() {
                let p = format!("spec.rules[{i}]");
                match r {
                    None => v.err(&p, "rule must not be null"),
                    Some(r) => rule(v, &p, r, action),
                }
            }
        }
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "ALLOW",
        Action::Deny => "DENY",
        Action::Audit => "AUDIT",
        Action::Custom => "CUSTOM",
    }
}

pub(crate) fn target_ref(v: &mut V, p: &str, t: &PolicyTargetReference) {
    if !t.namespace.is_empty() {
        v.err(
            &format!("{p}.namespace"),
            "cross namespace referencing is not currently supported",
        );
    }
    if t.name.is_empty() {
        v.err(&format!("{p}.name"), "name is required");
    }
    if t.kind.is_empty() {
        v.err(&format!("{p}.kind"), "kind is required");
    }
    let ok = matches!(
        (t.group.as_str(), t.kind.as_str()),
        ("core", "Service")
            | ("", "Service")
            | ("gateway.networking.k8s.io", "Gateway")
            | ("gateway.networking.k8s.io", "GatewayClass")
            | ("networking.istio.io", "ServiceEntry")
    );
    if !t.kind.is_empty() && !ok {
        v.err(p, "supported kinds are core/Service, networking.istio.io/ServiceEntry, gateway.networking.k8s.io/Gateway and GatewayClass");
    }
}

fn rule(v: &mut V, p: &str, r: &Rule, action: Action) {
    if let Some(from) = &r.from {
        if from.is_empty() {
            v.err(&format!("{p}.from"), "`from` must not be empty");
        }
        for (i, f) in from.iter().enumerate() {
            let fp = format!("{p}.from[{i}].source");
            match f.as_ref().and_then(|f| f.source.as_ref()) {
                None => v.err(&fp, "`from.source` must not be nil"),
                Some(s) => source(v, &fp, s, action),
            }
        }
    }
    if let Some(to) = &r.to {
        if to.is_empty() {
            v.err(&format!("{p}.to"), "`to` must not be empty");
        }
        for (i, t) in to.iter().enumerate() {
            let tp = format!("{p}.to[{i}].operation");
            match t.as_ref().and_then(|t| t.operation.as_ref()) {
                None => v.err(&tp, "`to.operation` must not be nil"),
                Some(o) => operation(v, &tp, o),
            }
        }
    }
    for (i, c) in r.when.iter().enumerate() {
        condition(v, &format!("{p}.when[{i}]"), c, action);
    }
}

fn values(v: &mut V, p: &str, list: &Option<Vec<String>>) {
    if let Some(list) = list {
        for (i, s) in list.iter().enumerate() {
            if s.is_empty() {
                v.err(&format!("{p}[{i}]"), "empty value is not allowed");
            }
        }
    }
}

fn ip_values(v: &mut V, p: &str, list: &Option<Vec<String>>) {
    values(v, p, list);
    for (i, s) in list.iter().flatten().enumerate() {
        if !s.is_empty() {
            if let Err(e) = names::check_ip_or_cidr(s) {
                v.err(&format!("{p}[{i}]"), e);
            }
        }
    }
}

fn source(v: &mut V, p: &str, s: &Source, action: Action) {
    let lists: [(&str, &Option<Vec<String>>); 14] = [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
        ("namespaces", &s.namespaces),
        ("notNamespaces", &s.not_namespaces),
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
        ("trustDomains", &s.trust_domains),
        ("notTrustDomains", &s.not_trust_domains),
    ];
    if lists
        .iter()
        .all(|(_, l)| l.as_ref().is_none_or(|l| l.is_empty()))
    {
        v.err(p, "`from.source` must not be empty");
    }
    for (name, list) in lists {
        let fp = format!("{p}.{name}");
        if name.ends_with("pBlocks") || name.ends_with("IpBlocks") {
            ip_values(v, &fp, list);
        } else {
            values(v, &fp, list);
        }
    }
    let sa = s.service_accounts.is_some() || s.not_service_accounts.is_some();
    if sa
        && (s.principals.is_some()
            || s.not_principals.is_some()
            || s.namespaces.is_some()
            || s.not_namespaces.is_some())
    {
        v.err(
            p,
            "Cannot set serviceAccounts with namespaces or principals",
        );
    }
    service_accounts(v, p, s);
    trust_domains(v, p, s);
    if action == Action::Custom {
        custom_source(v, p, s);
    }
}

/// `serviceAccounts` / `notServiceAccounts`: at most 16, `<namespace>/<name>` or `<name>`,
/// no wildcards.
fn service_accounts(v: &mut V, p: &str, s: &Source) {
    for (name, list) in [
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
    ] {
        let Some(list) = list else { continue };
        if list.len() > 16 {
            v.err(
                &format!("{p}.{name}"),
                "at most 16 service accounts are allowed",
            );
        }
        for (i, sa) in list.iter().enumerate() {
            let sp = format!("{p}.{name}[{i}]");
            if sa.contains('*') {
                v.err(&sp, "wildcards are not allowed in service accounts");
            } else if sa.len() > 320 {
                v.err(&sp, "service account must be at most 320 characters");
            } else if !sa.is_empty() {
                let parts: Vec<&str> = sa.split('/').collect();
                if parts.len() > 2 || parts.iter().any(|x| !names::is_dns1123_subdomain(x)) {
                    v.err(
                        &sp,
                        format!(
                            "invalid service account {sa:?}: expected <namespace>/<name> or <name>"
                        ),
                    );
                }
            }
        }
    }
}

/// `trustDomains` / `notTrustDomains` values: exact, prefix, suffix or presence matches.
fn trust_domains(v: &mut V, p: &str, s: &Source) {
    for (name, list) in [
        ("trustDomains", &s.trust_domains),
        ("notTrustDomains", &s.not_trust_domains),
    ] {
        for (i, td) in list.iter().flatten().enumerate() {
            if let Err(e) = names::check_trust_domain_match(td) {
                v.err(&format!("{p}.{name}[{i}]"), e);
            }
        }
    }
}

/// Istio (`ValidateAuthorizationPolicy`) refuses these source fields with the CUSTOM
/// action; IP blocks are accepted.
fn custom_source(v: &mut V, p: &str, s: &Source) {
    for (name, list) in [
        ("namespaces", &s.namespaces),
        ("notNamespaces", &s.not_namespaces),
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
        ("trustDomains", &s.trust_domains),
        ("notTrustDomains", &s.not_trust_domains),
    ] {
        if list.as_ref().is_some_and(|l| !l.is_empty()) {
            v.err(
                &format!("{p}.{name}"),
                format!("{name} is currently not supported with CUSTOM action"),
            );
        }
    }
}

fn operation(v: &mut V, p: &str, o: &Operation) {
    let lists: [(&str, &Option<Vec<String>>); 8] = [
        ("hosts", &o.hosts),
        ("notHosts", &o.not_hosts),
        ("ports", &o.ports),
        ("notPorts", &o.not_ports),
        ("methods", &o.methods),
        ("notMethods", &o.not_methods),
        ("paths", &o.paths),
        ("notPaths", &o.not_paths),
    ];
    if lists
        .iter()
        .all(|(_, l)| l.as_ref().is_none_or(|l| l.is_empty()))
    {
        v.err(p, "`to.operation` must not be empty");
    }
    for (name, list) in lists {
        values(v, &format!("{p}.{name}"), list);
    }
    for (name, list) in [("ports", &o.ports), ("notPorts", &o.not_ports)] {
        for (i, port) in list.iter().flatten().enumerate() {
            if !port.is_empty() && port.parse::<u16>().is_err() {
                v.err(
                    &format!("{p}.{name}[{i}]"),
                    format!("invalid port {port:?}: must be a number in 0..65535"),
                );
            }
        }
    }
    for (name, list) in [("paths", &o.paths), ("notPaths", &o.not_paths)] {
        for (i, path) in list.iter().flatten().enumerate() {
            if let Err(e) = check_path_template(path) {
                v.err(&format!("{p}.{name}[{i}]"), e);
            }
        }
    }
}

/// Istio's path template rules: `{*}` matches one segment, `{**}` the rest; each must be a
/// whole segment, `{**}` the last operator, and templates cannot mix with `*` wildcards.
pub fn check_path_template(path: &str) -> Result<(), String> {
    if !path.contains('{') && !path.contains('}') {
        return Ok(());
    }
    if !path.starts_with('/') {
        return Err(format!(
            "invalid path template {path:?}: must start with '/'"
        ));
    }
    if path.starts_with('*') || path.ends_with('*') {
        return Err(format!("invalid path template {path:?}: cannot combine a template with a '*' prefix or suffix wildcard"));
    }
    let mut seen_double = false;
    for seg in path.split('/').skip(1) {
        let is_op = seg.contains('{') || seg.contains('}');
        if !is_op {
            continue;
        }
        if seen_double {
            return Err(format!(
                "invalid path template {path:?}: {{**}} must be the last operator"
            ));
        }
        match seg {
            "{*}" => {}
            "{**}" => seen_double = true,
            _ => {
                return Err(format!(
                "invalid path template {path:?}: segment {seg:?} must be exactly {{*}} or {{**}}"
            ))
            }
        }
    }
    Ok(())
}

fn condition(v: &mut V, p: &str, c: &Condition, action: Action) {
    if c.key.is_empty() {
        v.err(&format!("{p}.key"), "condition key must not be empty");
        return;
    }
    let has_values = c.values.as_ref().is_some_and(|x| !x.is_empty());
    let has_not = c.not_values.as_ref().is_some_and(|x| !x.is_empty());
    if !has_values && !has_not {
        v.err(p, "condition must have at least one of values or notValues");
    }
    values(v, &format!("{p}.values"), &c.values);
    values(v, &format!("{p}.notValues"), &c.not_values);
    let key = c.key.as_str();
    let known = CONDITION_KEYS.contains(&key)
        || bracketed(key, "request.headers").is_some()
        || bracketed(key, "request.auth.claims").is_some()
        || key.starts_with("experimental.envoy.filters.");
    if !known {
        v.err(&format!("{p}.key"), format!("unknown attribute {key:?}"));
        return;
    }
    if bracketed(key, "request.headers") == Some(false)
        || bracketed(key, "request.auth.claims") == Some(false)
    {
        v.err(
            &format!("{p}.key"),
            format!("invalid attribute {key:?}: the name in brackets must not be empty"),
        );
    }
    let all: Vec<&String> = c
        .values
        .iter()
        .flatten()
        .chain(c.not_values.iter().flatten())
        .collect();
    condition_values(v, p, key, &all);
    if key.starts_with("experimental.envoy.filters.") {
        v.not_enforced(&format!("{p}.key"), "Envoy filter metadata");
    }
    // Istio rejects only these condition keys with CUSTOM; other source.* keys (source.ip,
    // source.trustDomain, ...) are accepted.
    if action == Action::Custom
        && (key == "source.namespace"
            || key == "source.principal"
            || key == "source.serviceAccount"
            || key.starts_with("request.auth."))
    {
        v.err(
            &format!("{p}.key"),
            format!("{key} is currently not supported with CUSTOM action"),
        );
    }
}

/// The values of a condition whose key fixes their syntax (Istio `ValidateAttribute`).
fn condition_values(v: &mut V, p: &str, key: &str, all: &[&String]) {
    match key {
        "source.ip" | "remote.ip" | "destination.ip" => {
            for val in all {
                if let Err(e) = names::check_ip_or_cidr(val) {
                    v.err(p, e);
                }
            }
        }
        "destination.port" => {
            for val in all {
                if val.parse::<u16>().is_err() {
                    v.err(p, format!("invalid port {val:?}"));
                }
            }
        }
        "source.trustDomain" => {
            for val in all {
                if let Err(e) = names::check_trust_domain_match(val) {
                    v.err(p, e);
                }
            }
        }
        _ => {}
    }
}

/// `Some(true)` for `prefix[name]`, `Some(false)` for `prefix[]`, `None` otherwise.
fn bracketed(key: &str, prefix: &str) -> Option<bool> {
    let rest = key.strip_prefix(prefix)?;
    let inner = rest.strip_prefix('[')?.strip_suffix(']')?;
    Some(!inner.is_empty())
}

#[cfg(test)]
mod tests {
    use super::check_path_template;

    #[test]
    fn path_templates() {
        assert!(check_path_template("/foo/{*}").is_ok());
        assert!(check_path_template("/foo/{*}/bar/{**}").is_ok());
        assert!(check_path_template("/foo/{**}/{*}").is_err());
        assert!(check_path_template("/foo/{x}").is_err());
        assert!(check_path_template("/foo/a{*}").is_err());
        assert!(check_path_template("/foo/{*}*").is_err());
        assert!(check_path_template("/plain*").is_ok());
    }
}
