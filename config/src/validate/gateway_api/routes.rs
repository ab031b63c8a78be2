//! The route kinds' rules (Gateway API `httproute_types.go`, `grpcroute_types.go`,
//! `tlsroute_types.go`, `tcproute_types.go`, `shared_types.go`).

use super::{hostname, V};
use crate::gateway_api::parse_duration;
use crate::model::gateway_api::routes::{
    BackendRef, GrpcRoute, HttpFilter, HttpMatch, HttpRoute, HttpRule, L4Rule, ParentRef,
    PathMatchType, PathModifier, TcpRoute, TlsRoute,
};
use crate::validate::names;
use std::collections::HashSet;

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

pub(super) fn http_route(v: &mut V, r: &HttpRoute) {
    parents(v, &r.parent_refs);
    hostnames(v, &r.hostnames, 16);
    if r.rules.len() > 16 {
        v.err(
            "spec.rules",
            format!("at most 16 rules, got {}", r.rules.len()),
        );
    }
    let total: usize = r.rules.iter().map(|x| x.matches.len()).sum();
    if total > 128 {
        v.err("spec.rules", format!("While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a route must be less than 128 (got {total})"));
    }
    for (i, rule) in r.rules.iter().enumerate() {
        http_rule(v, &format!("spec.rules[{i}]"), rule);
    }
}

fn http_rule(v: &mut V, p: &str, rule: &HttpRule) {
    if rule.matches.len() > 64 {
        v.err(&format!("{p}.matches"), "at most 64 matches");
    }
    for (i, m) in rule.matches.iter().enumerate() {
        http_match(v, &format!("{p}.matches[{i}]"), m);
    }
    filters(v, &format!("{p}.filters"), &rule.filters, FilterSet::Http);
    let kinds: Vec<&str> = rule.filters.iter().map(|f| f.kind.as_str()).collect();
    if kinds.contains(&"RequestRedirect") && kinds.contains(&"URLRewrite") {
        v.err(&format!("{p}.filters"), "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both");
    }
    if kinds.contains(&"RequestRedirect") && !rule.backend_refs.is_empty() {
        v.err(
            &format!("{p}.backendRefs"),
            "RequestRedirect filter must not be used together with backendRefs",
        );
    }
    let prefix_modifier = rule.filters.iter().any(|f| {
        let m = f
            .request_redirect
            .as_ref()
            .and_then(|r| r.path.as_ref())
            .or(f.url_rewrite.as_ref().and_then(|r| r.path.as_ref()));
        m.is_some_and(|m| m.kind == "ReplacePrefixMatch")
    });
    let one_prefix = rule.matches.len() == 1
        && rule.matches[0]
            .path
            .as_ref()
            .and_then(|x| x.kind)
            .unwrap_or_default()
            == PathMatchType::PathPrefix;
    if prefix_modifier && !one_prefix {
        v.err(
            &format!("{p}.filters"),
            "When using ReplacePrefixMatch, exactly one PathPrefix match must be specified",
        );
    }
    backends(
        v,
        &format!("{p}.backendRefs"),
        &rule.backend_refs,
        FilterSet::Http,
    );
    if let Some(t) = &rule.timeouts {
        let req = t.request.as_deref().map(|d| (d, parse_duration(d)));
        let back = t.backend_request.as_deref().map(|d| (d, parse_duration(d)));
        for (field, d) in [("request", &req), ("backendRequest", &back)] {
            if let Some((_, Err(e))) = d {
                v.err(&format!("{p}.timeouts.{field}"), e.clone());
            }
        }
        if let (Some((_, Ok(r))), Some((_, Ok(b)))) = (req, back) {
            if r != 0 && b > r {
                v.err(
                    &format!("{p}.timeouts"),
                    "backendRequest timeout cannot be longer than request timeout",
                );
            }
        }
    }
}

fn http_match(v: &mut V, p: &str, m: &HttpMatch) {
    if let Some(path) = &m.path {
        let kind = path.kind.unwrap_or_default();
        let value = path.value.as_deref().unwrap_or("/");
        let pp = format!("{p}.path.value");
        match kind {
            PathMatchType::RegularExpression => {
                if let Err(e) = regex::Regex::new(value) {
                    v.err(&pp, format!("invalid regular expression: {e}"));
                }
            }
            _ => {
                if !value.starts_with('/') {
                    v.err(&pp, "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']");
                }
                for bad in ["//", "/./", "/../", "%2f", "%2F", "#"] {
                    if value.contains(bad) {
                        v.err(
                            &pp,
                            format!(
                                "must not contain '{bad}' when type one of ['Exact', 'PathPrefix']"
                            ),
                        );
                    }
                }
                if value.ends_with("/..") || value.ends_with("/.") {
                    v.err(
                        &pp,
                        "must not end with '/..' or '/.' when type one of ['Exact', 'PathPrefix']",
                    );
                }
            }
        }
    }
    for (field, list) in [("headers", &m.headers), ("queryParams", &m.query_params)] {
        if list.len() > 16 {
            v.err(&format!("{p}.{field}"), "at most 16 entries");
        }
        for (i, h) in list.iter().enumerate() {
            let hp = format!("{p}.{field}[{i}]");
            if h.name.is_empty() || (field == "headers" && !names::is_token(&h.name)) {
                v.err(&format!("{hp}.name"), format!("invalid name {:?}", h.name));
            }
            if h.kind == Some(crate::model::gateway_api::routes::ValueMatchType::RegularExpression)
            {
                if let Err(e) = regex::Regex::new(&h.value) {
                    v.err(
                        &format!("{hp}.value"),
                        format!("invalid regular expression: {e}"),
                    );
                }
            }
        }
    }
    if let Some(method) = &m.method {
        if !METHODS.contains(&method.as_str()) {
            v.err(
                &format!("{p}.method"),
                format!(
                    "Unsupported value: {method:?}: supported values: {}",
                    METHODS.join(", ")
                ),
            );
        }
    }
}

/// Which filter types a route kind takes.
#[derive(Clone, Copy, PartialEq)]
enum FilterSet {
    Http,
    Grpc,
}

fn filters(v: &mut V, p: &str, fs: &[HttpFilter], set: FilterSet) {
    if fs.len() > 16 {
        v.err(p, "at most 16 filters");
    }
    let mut seen = HashSet::new();
    for (i, f) in fs.iter().enumerate() {
        let fp = format!("{p}[{i}]");
        let allowed: &[&str] = match set {
            FilterSet::Http => &[
                "RequestHeaderModifier",
                "ResponseHeaderModifier",
                "RequestRedirect",
                "URLRewrite",
                "RequestMirror",
                "CORS",
                "ExtensionRef",
                "ExternalAuth",
            ],
            FilterSet::Grpc => &[
                "RequestHeaderModifier",
                "ResponseHeaderModifier",
                "RequestMirror",
                "ExtensionRef",
            ],
        };
        if !allowed.contains(&f.kind.as_str()) {
            v.err(
                &format!("{fp}.type"),
                format!(
                    "Unsupported value: {:?}: supported values: {}",
                    f.kind,
                    allowed.join(", ")
                ),
            );
            continue;
        }
        if !matches!(f.kind.as_str(), "RequestMirror" | "ExtensionRef")
            && !seen.insert(f.kind.as_str())
        {
            v.err(p, format!("{} filter cannot be repeated", f.kind));
        }
        filter_fields(v, &fp, f);
    }
}

/// The filter's own field is set, and no other (Gateway API CEL: "filter.x must be specified for x
/// filter.type", "filter.x must be nil if the filter.type is not x").
fn filter_fields(v: &mut V, p: &str, f: &HttpFilter) {
    let fields = [
        (
            "RequestHeaderModifier",
            "requestHeaderModifier",
            f.request_header_modifier.is_some(),
        ),
        (
            "ResponseHeaderModifier",
            "responseHeaderModifier",
            f.response_header_modifier.is_some(),
        ),
        (
            "RequestRedirect",
            "requestRedirect",
            f.request_redirect.is_some(),
        ),
        ("URLRewrite", "urlRewrite", f.url_rewrite.is_some()),
        ("RequestMirror", "requestMirror", f.request_mirror.is_some()),
        ("CORS", "cors", f.cors.is_some()),
        ("ExtensionRef", "extensionRef", f.extension_ref.is_some()),
        ("ExternalAuth", "externalAuth", f.external_auth.is_some()),
    ];
    for (kind, field, set) in fields {
        if kind == f.kind && !set {
            v.err(
                p,
                format!("filter.{field} must be specified for {kind} filter.type"),
            );
        } else if kind != f.kind && set {
            v.err(
                &format!("{p}.{field}"),
                format!("filter.{field} must be nil if the filter.type is not {kind}"),
            );
        }
    }
    header_modifiers(v, p, f);
    redirect_and_rewrite(v, p, f);
    mirror(v, p, f);
    if let Some(c) = &f.cors {
        cors(v, &format!("{p}.cors"), c);
    }
}

/// Header modifiers: valid names, each once per list.
fn header_modifiers(v: &mut V, p: &str, f: &HttpFilter) {
    for (field, m) in [
        ("requestHeaderModifier", &f.request_header_modifier),
        ("responseHeaderModifier", &f.response_header_modifier),
    ] {
        let Some(m) = m else { continue };
        for (list, names_) in [
            (
                "set",
                m.set.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
            ),
            ("add", m.add.iter().map(|h| h.name.as_str()).collect()),
            ("remove", m.remove.iter().map(String::as_str).collect()),
        ] {
            let mut seen = HashSet::new();
            for n in names_ {
                if !names::is_token(n) {
                    v.err(
                        &format!("{p}.{field}.{list}"),
                        format!("invalid header name {n:?}"),
                    );
                } else if !seen.insert(n.to_ascii_lowercase()) {
                    v.err(
                        &format!("{p}.{field}.{list}"),
                        format!("header names must be unique: {n:?} is repeated"),
                    );
                }
            }
        }
    }
}

/// `requestRedirect` and `urlRewrite` values.
fn redirect_and_rewrite(v: &mut V, p: &str, f: &HttpFilter) {
    if let Some(r) = &f.request_redirect {
        if let Some(s) = &r.scheme {
            if s != "http" && s != "https" {
                v.err(
                    &format!("{p}.requestRedirect.scheme"),
                    format!("Unsupported value: {s:?}: supported values: \"http\", \"https\""),
                );
            }
        }
        if let Some(c) = r.status_code {
            if ![301, 302, 303, 307, 308].contains(&c) {
                v.err(
                    &format!("{p}.requestRedirect.statusCode"),
                    format!("Unsupported value: {c}: supported values: 301, 302, 303, 307, 308"),
                );
            }
        }
        if r.port.is_some_and(|x| x == 0 || x > 65535) {
            v.err(
                &format!("{p}.requestRedirect.port"),
                "port must be 1 to 65535",
            );
        }
        if let Some(h) = &r.hostname {
            hostname(v, &format!("{p}.requestRedirect.hostname"), h);
        }
        path_modifier(v, &format!("{p}.requestRedirect.path"), r.path.as_ref());
    }
    if let Some(r) = &f.url_rewrite {
        if let Some(h) = &r.hostname {
            hostname(v, &format!("{p}.urlRewrite.hostname"), h);
        }
        path_modifier(v, &format!("{p}.urlRewrite.path"), r.path.as_ref());
    }
}

/// `requestMirror`: one share form, in range, and a backend port.
fn mirror(v: &mut V, p: &str, f: &HttpFilter) {
    if let Some(m) = &f.request_mirror {
        let mp = format!("{p}.requestMirror");
        if m.percent.is_some() && m.fraction.is_some() {
            v.err(
                &mp,
                "Only one of percent or fraction may be specified in HTTPRequestMirrorFilter",
            );
        }
        if m.percent.is_some_and(|x| x > 100) {
            v.err(&format!("{mp}.percent"), "percent must be 0 to 100");
        }
        if let Some(fr) = &m.fraction {
            let d = fr.denominator.unwrap_or(100);
            if d == 0 || fr.numerator > d {
                v.err(&format!("{mp}.fraction"), "numerator must be less than or equal to denominator, and the denominator above 0");
            }
        }
        if m.backend_ref.port.is_none()
            && m.backend_ref.kind.as_deref().unwrap_or("Service") == "Service"
        {
            v.err(
                &format!("{mp}.backendRef"),
                "Must have port for Service reference",
            );
        }
    }
}

/// `HTTPCORSFilter`: origins, and the wildcards the API forbids with credentials.
fn cors(v: &mut V, p: &str, c: &crate::model::gateway_api::routes::CorsFilter) {
    for (i, o) in c.allow_origins.iter().enumerate() {
        let ok = o == "*"
            || o.split_once("://").is_some_and(|(scheme, host)| {
                !scheme.is_empty()
                    && !host.is_empty()
                    && !host.contains('/')
                    && !host.chars().skip(1).any(|c| c == '*')
            });
        if !ok {
            v.err(
                &format!("{p}.allowOrigins[{i}]"),
                format!("invalid origin {o:?}: \"*\" or scheme://host[:port], the host optionally starting with \"*.\""),
            );
        }
    }
    if c.allow_credentials == Some(true) {
        for (field, list) in [
            ("allowOrigins", &c.allow_origins),
            ("allowMethods", &c.allow_methods),
            ("allowHeaders", &c.allow_headers),
            ("exposeHeaders", &c.expose_headers),
        ] {
            if list.iter().any(|x| x == "*") {
                v.err(
                    &format!("{p}.{field}"),
                    "a wildcard \"*\" is not allowed when allowCredentials is true",
                );
            }
        }
    }
    let methods = c.allow_methods.iter().any(|m| m == "*");
    if methods && c.allow_methods.len() > 1 {
        v.err(
            &format!("{p}.allowMethods"),
            "AllowMethods cannot contain '*' alongside other methods",
        );
    }
}

fn path_modifier(v: &mut V, p: &str, m: Option<&PathModifier>) {
    let Some(m) = m else { return };
    match m.kind.as_str() {
        "ReplaceFullPath" if m.replace_full_path.is_none() => v.err(p, "replaceFullPath must be specified when type is set to 'ReplaceFullPath'"),
        "ReplacePrefixMatch" if m.replace_prefix_match.is_none() => v.err(p, "replacePrefixMatch must be specified when type is set to 'ReplacePrefixMatch'"),
        "ReplaceFullPath" | "ReplacePrefixMatch" => {}
        other => v.err(&format!("{p}.type"), format!("Unsupported value: {other:?}: supported values: \"ReplaceFullPath\", \"ReplacePrefixMatch\"")),
    }
    if m.kind != "ReplaceFullPath" && m.replace_full_path.is_some() {
        v.err(
            p,
            "type must be 'ReplaceFullPath' when replaceFullPath is set",
        );
    }
    if m.kind != "ReplacePrefixMatch" && m.replace_prefix_match.is_some() {
        v.err(
            p,
            "type must be 'ReplacePrefixMatch' when replacePrefixMatch is set",
        );
    }
}

fn backends(v: &mut V, p: &str, bs: &[BackendRef], set: FilterSet) {
    if bs.len() > 16 {
        v.err(p, "at most 16 backendRefs");
    }
    for (i, b) in bs.iter().enumerate() {
        let bp = format!("{p}[{i}]");
        let core_service = b.group.as_deref().unwrap_or("").is_empty()
            && b.kind.as_deref().unwrap_or("Service") == "Service";
        if core_service && b.port.is_none() {
            v.err(&bp, "Must have port for Service reference");
        }
        if b.weight.is_some_and(|w| !(0..=1_000_000).contains(&w)) {
            v.err(&format!("{bp}.weight"), "weight must be 0 to 1000000");
        }
        filters(v, &format!("{bp}.filters"), &b.filters, set);
    }
}

fn parents(v: &mut V, ps: &[ParentRef]) {
    if ps.len() > 32 {
        v.err("spec.parentRefs", "at most 32 parentRefs");
    }
    let mut seen: HashSet<(&str, &str, &str, &str)> = HashSet::new();
    let mut sections = HashSet::new();
    let same_parent = |a: &ParentRef, b: &ParentRef| {
        a.kind == b.kind && a.group == b.group && a.name == b.name && a.namespace == b.namespace
    };
    for (i, p) in ps.iter().enumerate() {
        if p.name.is_empty() {
            v.err(&format!("spec.parentRefs[{i}].name"), "name is required");
        }
        let repeated = ps
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && same_parent(p, o));
        if repeated && p.section_name.is_none() && p.port.is_none() {
            v.err(&format!("spec.parentRefs[{i}]"), "sectionName or port must be specified when parentRefs includes 2 or more references to the same parent");
        }
        let key = (
            p.kind.as_deref().unwrap_or(""),
            p.namespace.as_deref().unwrap_or(""),
            p.name.as_str(),
            p.section_name.as_deref().unwrap_or(""),
        );
        if repeated && p.section_name.is_some() && !sections.insert((key, p.port)) {
            v.err(&format!("spec.parentRefs[{i}].sectionName"), "sectionName must be unique when parentRefs includes 2 or more references to the same parent");
        }
        seen.insert(key);
    }
}

fn hostnames(v: &mut V, hs: &[String], max: usize) {
    if hs.len() > max {
        v.err("spec.hostnames", format!("at most {max} hostnames"));
    }
    for (i, h) in hs.iter().enumerate() {
        hostname(v, &format!("spec.hostnames[{i}]"), h);
    }
}

pub(super) fn grpc_route(v: &mut V, r: &GrpcRoute) {
    parents(v, &r.parent_refs);
    hostnames(v, &r.hostnames, 16);
    for (i, rule) in r.rules.iter().enumerate() {
        let p = format!("spec.rules[{i}]");
        for (j, m) in rule.matches.iter().enumerate() {
            let Some(mm) = &m.method else { continue };
            let mp = format!("{p}.matches[{j}].method");
            if mm.service.is_none() && mm.method.is_none() {
                v.err(
                    &mp,
                    "One or both of 'service' or 'method' must be specified",
                );
            }
            if mm.kind.unwrap_or_default()
                == crate::model::gateway_api::routes::ValueMatchType::Exact
            {
                let svc_ok = |s: &str| {
                    s.trim_start_matches('.').split('.').all(|part| {
                        !part.is_empty()
                            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && !part.starts_with(|c: char| c.is_ascii_digit())
                    })
                };
                if mm.service.as_deref().is_some_and(|s| !svc_ok(s)) {
                    v.err(&format!("{mp}.service"), "service must only contain valid characters (matching ^(?i)\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*$)");
                }
                if mm
                    .method
                    .as_deref()
                    .is_some_and(|s| !svc_ok(s) || s.contains('.'))
                {
                    v.err(&format!("{mp}.method"), "method must only contain valid characters (matching ^[A-Za-z_][A-Za-z_0-9]*$)");
                }
            }
        }
        filters(v, &format!("{p}.filters"), &rule.filters, FilterSet::Grpc);
        backends(
            v,
            &format!("{p}.backendRefs"),
            &rule.backend_refs,
            FilterSet::Grpc,
        );
    }
}

pub(super) fn tls_route(v: &mut V, r: &TlsRoute) {
    parents(v, &r.parent_refs);
    let v1 = v.res.api_version.ends_with("/v1");
    if v1 && r.hostnames.is_empty() {
        v.err("spec.hostnames", "a v1 TLSRoute needs 1 to 1024 hostnames");
    }
    hostnames(v, &r.hostnames, if v1 { 1024 } else { 16 });
    l4_rules(v, &r.rules, v1);
}

pub(super) fn tcp_route(v: &mut V, r: &TcpRoute) {
    parents(v, &r.parent_refs);
    let v1 = v.res.api_version.ends_with("/v1");
    l4_rules(v, &r.rules, v1);
}

fn l4_rules(v: &mut V, rules: &[L4Rule], v1: bool) {
    match (rules.len(), v1) {
        (1, _) => {}
        (0, _) => v.err("spec.rules", "at least 1 rule is required"),
        (_, true) => v.err("spec.rules", "a v1 route holds exactly 1 rule"),
        (n, false) if n > 16 => v.err("spec.rules", "at most 16 rules"),
        _ => {}
    }
    for (i, rule) in rules.iter().enumerate() {
        if rule.backend_refs.is_empty() {
            v.err(
                &format!("spec.rules[{i}].backendRefs"),
                "at least 1 backendRef is required",
            );
        }
        backends(
            v,
            &format!("spec.rules[{i}].backendRefs"),
            &rule.backend_refs,
            FilterSet::Grpc,
        );
    }
}
