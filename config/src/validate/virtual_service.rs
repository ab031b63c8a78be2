//! VirtualService rules (istio/istio `pkg/config/validation/virtualservice.go` and
//! `validation.go`).

use super::names;
use super::V;
use crate::model::map::Map;
use crate::model::virtual_service::*;

/// The reserved gateway name for "all sidecars".
pub const MESH_GATEWAY: &str = "mesh";

/// The `retryOn` tokens Istio supports (`agent/validation.go supportedRetryOnPolicies`).
pub const RETRY_ON_TOKENS: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

pub(crate) fn validate(v: &mut V, vs: &VirtualService) {
    let applies_to_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == MESH_GATEWAY);
    let is_delegate = vs.hosts.is_empty();
    if is_delegate {
        if !vs.gateways.is_empty() {
            v.err(
                "spec.gateways",
                "a delegate VirtualService (one without hosts) must not set gateways",
            );
        }
        if !vs.tls.is_empty() || !vs.tcp.is_empty() {
            v.err(
                "spec",
                "a delegate VirtualService (one without hosts) may only have http rules",
            );
        }
    }
    hosts(v, vs, applies_to_mesh);
    for i in 0..vs.hosts.len() {
        for j in i + 1..vs.hosts.len() {
            let (a, b) = (
                vs.hosts[i].to_ascii_lowercase(),
                vs.hosts[j].to_ascii_lowercase(),
            );
            if crate::host::matches(&a, &b) {
                v.err(
                    &format!("spec.hosts[{j}]"),
                    format!(
                        "duplicate hosts in virtual service: {} & {}",
                        vs.hosts[i], vs.hosts[j]
                    ),
                );
            }
        }
    }
    gateway_names(v, "spec.gateways", &vs.gateways);
    v.export_to("spec.exportTo", &vs.export_to);
    if vs.http.is_empty() && vs.tcp.is_empty() && vs.tls.is_empty() {
        v.err(
            "spec",
            "http, tcp or tls must be provided in virtual service",
        );
    }

    let mut catch_all_at: Option<usize> = None;
    for (i, r) in vs.http.iter().enumerate() {
        let p = format!("spec.http[{i}]");
        if let Some(first) = catch_all_at {
            v.warn(
                &p,
                format!("rule is unreachable: spec.http[{first}] before it matches every request"),
            );
        }
        http_route(v, &p, r, vs);
        if catch_all_at.is_none() && is_catch_all(r) {
            catch_all_at = Some(i);
        }
        // Identical match blocks in earlier rules make this one dead too.
        for (k, m) in r.matches.iter().enumerate() {
            let Some(m) = m else { continue };
            for (pi, prev) in vs.http[..i].iter().enumerate() {
                if prev.matches.iter().flatten().any(|pm| pm == m) {
                    v.warn(
                        &format!("{p}.match[{k}]"),
                        format!("match is unreachable: spec.http[{pi}] has the same match"),
                    );
                    break;
                }
            }
        }
    }
    for (i, r) in vs.tls.iter().enumerate() {
        tls_route(v, &format!("spec.tls[{i}]"), r, vs);
    }
    for (i, r) in vs.tcp.iter().enumerate() {
        tcp_route(v, &format!("spec.tcp[{i}]"), r);
    }
}

/// Istio's `isCatchAllMatch`: no match, or a match whose only condition is a `/` prefix.
pub fn is_catch_all(r: &HttpRoute) -> bool {
    if r.matches.is_empty() {
        return true;
    }
    r.matches.iter().any(|m| match m {
        None => true,
        Some(m) => {
            let uri_all = match &m.uri {
                None => true,
                Some(u) => {
                    u.is_empty()
                        || matches!(u.prefix.as_deref(), Some("/") | Some(""))
                        || u.regex.as_deref() == Some("*")
                        || u.regex.as_deref() == Some(".*")
                }
            };
            uri_all
                && m.scheme.is_none()
                && m.method.is_none()
                && m.authority.is_none()
                && m.headers.is_empty()
                && m.query_params.is_empty()
                && m.without_headers.is_empty()
                && m.port.is_none()
                && m.source_labels.is_empty()
                && m.gateways.is_empty()
                && m.source_namespace.is_empty()
        }
    })
}

pub(crate) fn gateway_names(v: &mut V, path: &str, gws: &[String]) {
    for (i, g) in gws.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if g == MESH_GATEWAY {
            continue;
        }
        match g.split_once('/') {
            Some((ns, name)) => {
                if ns.is_empty() || name.is_empty() {
                    v.err(&p, "gateway namespace and name cannot be empty");
                } else {
                    if !names::is_dns1123_label(ns) {
                        v.err(&p, format!("invalid value for namespace: {ns:?}"));
                    }
                    if !names::is_dns1123_label(name) {
                        v.err(&p, format!("invalid value for gateway name: {name:?}"));
                    }
                }
            }
            None => {
                if let Some((name, ns)) = g.split_once('.') {
                    let ns = ns.split('.').next().unwrap_or(ns);
                    v.warn(
                        &p,
                        format!("using legacy gateway name format {g:?}; prefer <namespace>/<name>: \"{ns}/{name}\""),
                    );
                }
                if let Err(e) = names::check_fqdn(g) {
                    v.err(&p, e);
                }
            }
        }
    }
}

fn http_route(v: &mut V, p: &str, r: &HttpRoute, vs: &VirtualService) {
    let has_route = !r.route.is_empty();
    let has_redirect = r.redirect.is_some();
    let has_direct = r.direct_response.is_some();
    let has_delegate = r.delegate.is_some();
    if !has_route && !has_redirect && !has_direct && !has_delegate {
        v.err(p, "HTTP route, redirect or direct_response is required");
    }
    if has_route && has_redirect {
        v.err(p, "HTTP route cannot contain both route and redirect");
    }
    if has_redirect && r.fault.is_some() {
        v.err(p, "HTTP route cannot contain both fault and redirect");
    }
    if has_redirect && r.rewrite.is_some() {
        v.err(
            p,
            "HTTP route rule cannot contain both rewrite and redirect",
        );
    }
    if has_direct && (has_route || has_redirect || r.fault.is_some() || r.rewrite.is_some()) {
        v.err(
            p,
            "directResponse cannot be combined with route, redirect, fault or rewrite",
        );
    }
    if let Some(d) = &r.delegate {
        if has_route || has_redirect {
            v.err(
                &format!("{p}.delegate"),
                "a rule with delegate must not set route or redirect",
            );
        }
        if vs.hosts.is_empty() {
            v.err(
                &format!("{p}.delegate"),
                "only a root VirtualService (one with hosts) may delegate",
            );
        }
        if d.name.is_empty() {
            v.err(&format!("{p}.delegate.name"), "delegate name is required");
        } else if !names::is_dns1123_subdomain(&d.name) {
            v.err(
                &format!("{p}.delegate.name"),
                format!("invalid delegate name {:?}", d.name),
            );
        }
        if !d.namespace.is_empty() && !names::is_lower_dns1123_label(&d.namespace) {
            v.err(
                &format!("{p}.delegate.namespace"),
                format!("invalid namespace {:?}", d.namespace),
            );
        }
    }

    for (i, m) in r.matches.iter().enumerate() {
        if let Some(m) = m {
            http_match(v, &format!("{p}.match[{i}]"), m, vs);
        }
    }

    let route_sets_authority = r
        .rewrite
        .as_ref()
        .is_some_and(|rw| rw.authority.as_deref().is_some_and(|a| !a.is_empty()));
    // Istio (`validateAuthorityRewrite`): rewrite.authority and the route's request
    // set/add of `:authority`/`host` together may set the authority once. meshproxy also
    // counts a destination's own header operations on top of the route's.
    let route_authority =
        route_sets_authority as usize + headers(v, &format!("{p}.headers"), r.headers.as_deref());
    if route_authority > 1 {
        v.err(
            &format!("{p}.headers"),
            "authority header cannot be set multiple times",
        );
    }
    for (i, d) in r.route.iter().enumerate() {
        let dp = format!("{p}.route[{i}]");
        destination(v, &format!("{dp}.destination"), d.destination.as_ref());
        if d.weight < 0 {
            v.err(
                &format!("{dp}.weight"),
                format!("weight {} must not be negative", d.weight),
            );
        }
        if d.weight > i32::MAX as i64 {
            v.err(
                &format!("{dp}.weight"),
                format!("weight {} is too large", d.weight),
            );
        }
        let dest_auth = headers(v, &format!("{dp}.headers"), d.headers.as_deref());
        if dest_auth > 0 && route_authority + dest_auth > 1 {
            v.err(
                &format!("{dp}.headers"),
                "authority header cannot be set multiple times",
            );
        }
    }
    if r.route.len() > 1 && r.route.iter().all(|d| d.weight == 0) {
        v.err(&format!("{p}.route"), "total destination weight = 0");
    }

    if let Some(rd) = &r.redirect {
        redirect(v, &format!("{p}.redirect"), rd, r);
    }
    if let Some(rw) = &r.rewrite {
        rewrite(v, &format!("{p}.rewrite"), rw);
    }
    if let Some(dr) = &r.direct_response {
        direct_response(v, &format!("{p}.directResponse"), dr);
    }
    v.duration(&format!("{p}.timeout"), &r.timeout);
    if let Some(rt) = &r.retries {
        retries(v, &format!("{p}.retries"), rt);
    }
    if let Some(f) = &r.fault {
        fault(v, &format!("{p}.fault"), f);
    }
    if r.mirror.is_some() && !r.mirrors.is_empty() {
        v.err(p, "mirror and mirrors cannot be used together");
    }
    if r.mirror.is_some() {
        destination(v, &format!("{p}.mirror"), r.mirror.as_deref());
    }
    for (i, m) in r.mirrors.iter().enumerate() {
        let mp = format!("{p}.mirrors[{i}]");
        destination(v, &format!("{mp}.destination"), m.destination.as_ref());
        v.percent(&format!("{mp}.percentage"), &m.percentage);
    }
    if let Some(mp) = r.mirror_percent {
        v.deprecated(&format!("{p}.mirrorPercent"), "mirrorPercentage");
        if mp > 100 {
            v.err(
                &format!("{p}.mirrorPercent"),
                format!("mirror percent {mp} must be at most 100"),
            );
        }
    }
    v.percent(&format!("{p}.mirrorPercentage"), &r.mirror_percentage);
    if let Some(c) = &r.cors_policy {
        cors(v, &format!("{p}.corsPolicy"), c);
    }
}

pub(crate) fn http_match(v: &mut V, p: &str, m: &HttpMatchRequest, vs: &VirtualService) {
    if let Some(u) = &m.uri {
        v.string_match(&format!("{p}.uri"), u, true, true, false);
    }
    for (name, sm) in [
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            v.string_match(&format!("{p}.{name}"), sm, false, true, false);
        }
    }
    let match_gateways: &[String] = if m.gateways.is_empty() {
        &vs.gateways
    } else {
        &m.gateways
    };
    let match_on_mesh =
        match_gateways.is_empty() || match_gateways.iter().any(|g| g == MESH_GATEWAY);
    for (field, map) in [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (k, sm) in map {
            let hp = format!("{p}.{field}.{k}");
            if k.is_empty() {
                v.err(&format!("{p}.{field}"), "header name must not be empty");
                continue;
            }
            if k.starts_with("@request.auth.claims") {
                if match_on_mesh {
                    v.err(
                        &hp,
                        "JWT claim based routing is only supported for gateways, not the mesh",
                    );
                }
                v.not_enforced(
                    &hp,
                    "routing on JWT claims; RequestAuthentication is enforced, but routes do not read its claims",
                );
            } else if !names::is_istio_header_name(k) {
                v.err(
                    &hp,
                    format!("header name {k:?} is not a valid header name (letters, digits, '-' and '_' only)"),
                );
            } else if k.bytes().any(|c| c.is_ascii_uppercase()) {
                v.warn(
                    &hp,
                    "header names are matched lower-case; write the key in lower case",
                );
            }
            // Only withoutHeaders reads `regex: "*"` as "present"; Istio compiles it as a
            // regex (and fails) everywhere else.
            v.string_match(&hp, sm, false, true, field == "withoutHeaders");
        }
    }
    for (k, sm) in &m.query_params {
        let qp = format!("{p}.queryParams.{k}");
        if k.is_empty() {
            v.err(
                &format!("{p}.queryParams"),
                "query parameter name must not be empty",
            );
        }
        v.string_match(&qp, sm, false, true, false);
    }
    if let Some(port) = m.port {
        if let Err(e) = names::check_port(port as u64) {
            v.err(&format!("{p}.port"), e);
        }
    }
    v.labels(&format!("{p}.sourceLabels"), &m.source_labels);
    if !m.source_labels.is_empty() && !match_on_mesh {
        v.err(
            &format!("{p}.sourceLabels"),
            "sourceLabels match can not be used without the mesh gateway",
        );
    }
    if !m.source_namespace.is_empty() && !names::is_lower_dns1123_label(&m.source_namespace) {
        v.err(
            &format!("{p}.sourceNamespace"),
            format!("invalid namespace {:?}", m.source_namespace),
        );
    }
    gateway_names(v, &format!("{p}.gateways"), &m.gateways);
    if !m.stat_prefix.is_empty() {
        v.not_enforced(&format!("{p}.statPrefix"), "per-route stats prefixes");
    }
}

/// Validates header operations; returns how many request set/add entries set the
/// authority (`:authority` or `host`; each entry counts, as in Istio).
fn headers(v: &mut V, p: &str, h: Option<&Headers>) -> usize {
    let Some(h) = h else { return 0 };
    let mut authority = 0;
    if let Some(req) = &h.request {
        let rp = format!("{p}.request");
        for (op, map) in [("set", &req.set), ("add", &req.add)] {
            for (k, val) in map {
                let kp = format!("{rp}.{op}.{k}");
                if k.eq_ignore_ascii_case(":authority") || k.eq_ignore_ascii_case("host") {
                    authority += 1;
                } else {
                    header_op_name(v, &kp, k);
                }
                if let Err(e) = names::check_header_value(val) {
                    v.err(&kp, e);
                }
            }
        }
        for (i, k) in req.remove.iter().enumerate() {
            header_op_name(v, &format!("{rp}.remove[{i}]"), k);
        }
    }
    if let Some(resp) = &h.response {
        let rp = format!("{p}.response");
        for (op, map) in [("set", &resp.set), ("add", &resp.add)] {
            for (k, val) in map {
                let kp = format!("{rp}.{op}.{k}");
                header_op_name(v, &kp, k);
                if let Err(e) = names::check_header_value(val) {
                    v.err(&kp, e);
                }
            }
        }
        for (i, k) in resp.remove.iter().enumerate() {
            header_op_name(v, &format!("{rp}.remove[{i}]"), k);
        }
    }
    authority
}

fn header_op_name(v: &mut V, p: &str, k: &str) {
    if k.is_empty() {
        v.err(p, "header name must not be empty");
    } else if k.starts_with(':') || k.eq_ignore_ascii_case("host") {
        v.err(
            p,
            format!("invalid header {k:?}: header cannot have \":\" prefix or be 'host'"),
        );
    } else if !names::is_token(k) {
        v.err(p, format!("invalid header name {k:?}"));
    }
}

pub(crate) fn destination(v: &mut V, p: &str, d: Option<&Destination>) {
    let Some(d) = d else {
        v.err(p, "destination is required");
        return;
    };
    if d.host.is_empty() {
        v.err(&format!("{p}.host"), "destination host is required");
    } else if d.host == "*" {
        v.err(&format!("{p}.host"), "invalid destination host *");
    } else if let Err(e) = names::check_wildcard_domain(&d.host) {
        // Istio runs the domain check on IP literals too: `10.0.0.1` fails on its
        // all-numeric top-level label, an IPv6 literal on its first label.
        v.err(&format!("{p}.host"), e);
    }
    if !d.subset.is_empty() && !names::is_dns1123_label(&d.subset) {
        v.err(
            &format!("{p}.subset"),
            format!("subset name {:?} is not a valid DNS-1123 label", d.subset),
        );
    }
    if let Some(port) = &d.port {
        if let Err(e) = names::check_port(port.number as u64) {
            v.err(&format!("{p}.port.number"), e);
        }
    }
}

fn redirect(v: &mut V, p: &str, rd: &HttpRedirect, r: &HttpRoute) {
    let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    if set(&rd.uri) && set(&rd.prefix_rewrite) {
        v.err(p, "only one of uri or prefixRewrite may be set");
    }
    if !set(&rd.uri)
        && !set(&rd.prefix_rewrite)
        && !set(&rd.authority)
        && !set(&rd.scheme)
        && rd.port.is_none()
        && rd.derive_port.is_none()
    {
        v.err(
            p,
            "redirect must specify URI, prefixRewrite, authority, scheme, or port",
        );
    }
    if rd.port.is_some() && rd.derive_port.is_some() {
        v.err(p, "only one of port or derivePort may be set");
    }
    if let Some(port) = rd.port {
        if let Err(e) = names::check_port(port as u64) {
            v.err(&format!("{p}.port"), e);
        }
    }
    if let Some(code) = rd.redirect_code {
        if !(300..=399).contains(&code) {
            v.err(
                &format!("{p}.redirectCode"),
                format!("{code} is not a valid redirect code, must be 3xx"),
            );
        } else if ![301, 302, 303, 307, 308].contains(&code) {
            v.warn(
                &format!("{p}.redirectCode"),
                format!("redirect code {code} is not supported by Envoy; Istio drops this rule, and so does meshproxy"),
            );
        }
    }
    if let Some(s) = &rd.scheme {
        if !s.is_empty() && s != "http" && s != "https" {
            v.err(
                &format!("{p}.scheme"),
                format!("scheme {s:?} must be http or https"),
            );
        }
    }
    if set(&rd.prefix_rewrite) {
        let all_prefix = !r.matches.is_empty()
            && r.matches.iter().all(|m| {
                m.as_ref()
                    .and_then(|m| m.uri.as_ref())
                    .is_some_and(|u| u.prefix.is_some())
            });
        if !all_prefix {
            v.err(
                &format!("{p}.prefixRewrite"),
                "prefixRewrite requires every match of the rule to use a uri prefix",
            );
        }
    }
}

fn rewrite(v: &mut V, p: &str, rw: &HttpRewrite) {
    let uri = rw.uri.as_deref().is_some_and(|s| !s.is_empty());
    let auth = rw.authority.as_deref().is_some_and(|s| !s.is_empty());
    if uri && rw.uri_regex_rewrite.is_some() {
        v.err(p, "rewrite may only contain one of uri or uriRegexRewrite");
    }
    if !uri && !auth && rw.uri_regex_rewrite.is_none() {
        v.err(p, "rewrite must specify uri, uriRegexRewrite or authority");
    }
    if let Some(rr) = &rw.uri_regex_rewrite {
        let rp = format!("{p}.uriRegexRewrite");
        if rr.pattern.is_empty() || rr.rewrite.is_empty() {
            v.err(&rp, "uriRegexRewrite requires both match and rewrite");
        }
        if !rr.pattern.is_empty() {
            v.regex(&format!("{rp}.match"), &rr.pattern);
        }
    }
}

fn direct_response(v: &mut V, p: &str, dr: &HttpDirectResponse) {
    if !(200..=600).contains(&dr.status) {
        v.err(
            &format!("{p}.status"),
            format!("status {} must be in the range 200..600", dr.status),
        );
    }
    if let Some(b) = &dr.body {
        let bp = format!("{p}.body");
        if b.string.is_some() && b.bytes.is_some() {
            v.err(&bp, "only one of string or bytes may be set");
        }
        let len = match (&b.string, &b.bytes) {
            (Some(s), _) => Some(s.len()),
            (None, Some(b64)) => match decode_base64(b64) {
                Some(bytes) => Some(bytes.len()),
                None => {
                    v.err(&format!("{bp}.bytes"), "bytes must be valid base64");
                    None
                }
            },
            _ => None,
        };
        if let Some(len) = len {
            if len > 1024 * 1024 {
                v.err(&bp, format!("body is {len} bytes; the limit is 1MB"));
            } else if len > 100 * 1024 {
                v.warn(
                    &bp,
                    format!("body is {len} bytes; bodies over 100KB are discouraged"),
                );
            }
        }
    }
}

/// Standard base64 (with or without padding), as YAML `bytes` fields carry it.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let s = {
        let mut end = s.len();
        while end > 0 && s[end - 1] == b'=' {
            end -= 1;
        }
        &s[..end]
    };
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

fn retries(v: &mut V, p: &str, rt: &HttpRetry) {
    if rt.attempts < 0 {
        v.err(&format!("{p}.attempts"), "attempts cannot be negative");
    }
    // Istio reads an empty retryOn string as unset.
    let retry_on = rt.retry_on.as_deref().filter(|s| !s.is_empty());
    if rt.attempts == 0
        && (rt.per_try_timeout.is_some()
            || retry_on.is_some()
            || rt.retry_remote_localities.is_some())
    {
        v.err(
            p,
            "http retry policy configured when attempts are set to 0 (disabled)",
        );
    }
    v.duration(&format!("{p}.perTryTimeout"), &rt.per_try_timeout);
    v.duration(&format!("{p}.backoff"), &rt.backoff);
    if let Some(on) = retry_on {
        // Istio splits on ',' without trimming: "5xx, reset" has the token " reset", and a
        // trailing comma an empty token; both are invalid.
        for tok in on.split(',') {
            let ok = RETRY_ON_TOKENS.contains(&tok)
                || tok.parse::<u32>().is_ok_and(names::is_known_http_status);
            if !ok {
                v.err(
                    &format!("{p}.retryOn"),
                    format!("{tok:?} is not a valid retryOn value"),
                );
            }
        }
    }
    if rt.retry_remote_localities == Some(true) {
        v.not_enforced(
            &format!("{p}.retryRemoteLocalities"),
            "locality-aware load balancing",
        );
    }
}

fn fault(v: &mut V, p: &str, f: &HttpFaultInjection) {
    if f.delay.is_none() && f.abort.is_none() {
        v.err(p, "HTTP fault injection must have an abort and/or a delay");
    }
    if let Some(d) = &f.delay {
        let dp = format!("{p}.delay");
        if d.exponential_delay.is_some() {
            v.err(
                &format!("{dp}.exponentialDelay"),
                "exponentialDelay not supported yet",
            );
        }
        if d.fixed_delay.is_none() && d.exponential_delay.is_none() {
            // Istio accepts this; Envoy then has no delay to inject.
            v.warn(&dp, "delay has no fixedDelay: no delay is injected");
        }
        v.duration(&format!("{dp}.fixedDelay"), &d.fixed_delay);
        fault_percentage(v, &format!("{dp}.percentage"), &d.percentage);
        if let Some(pc) = d.percent {
            v.deprecated(&format!("{dp}.percent"), "percentage");
            if !(0..=100).contains(&pc) {
                v.err(
                    &format!("{dp}.percent"),
                    format!("percent {pc} must be in the range 0..100"),
                );
            }
        }
    }
    if let Some(a) = &f.abort {
        let ap = format!("{p}.abort");
        let kinds = a.http_status.is_some() as u8
            + a.grpc_status.is_some() as u8
            + a.http2_error.is_some() as u8;
        if kinds == 0 {
            // Istio only warns; nothing is aborted.
            v.warn(
                &ap,
                "abort configured, but error type not set: no request is aborted",
            );
        }
        if kinds > 1 {
            v.err(
                &ap,
                "only one of httpStatus, grpcStatus or http2Error may be set",
            );
        }
        if let Some(s) = a.http_status {
            if !(200..=600).contains(&s) {
                v.err(
                    &format!("{ap}.httpStatus"),
                    format!("invalid abort http status {s}: must be in the range 200..600"),
                );
            }
        }
        if let Some(g) = &a.grpc_status {
            if !names::GRPC_STATUS_NAMES.contains(&g.as_str()) {
                v.err(
                    &format!("{ap}.grpcStatus"),
                    format!("{g:?} is not a valid gRPC status name"),
                );
            }
        }
        if a.http2_error.is_some() {
            v.err(&format!("{ap}.http2Error"), "http2Error not supported yet");
        }
        fault_percentage(v, &format!("{ap}.percentage"), &a.percentage);
    }
}

/// Envoy takes fault percentages per million: 0, or 0.0001..=100.
fn fault_percentage(v: &mut V, p: &str, pc: &Option<crate::model::common::Percent>) {
    if let Some(pc) = pc {
        let x = pc.value;
        if !(x == 0.0 || (0.0001..=100.0).contains(&x)) {
            v.err(
                &format!("{p}.value"),
                format!("percentage {x} must be 0 or in the range 0.0001..100"),
            );
        }
    }
}

fn cors(v: &mut V, p: &str, c: &CorsPolicy) {
    if !c.allow_origin.is_empty() {
        v.deprecated(&format!("{p}.allowOrigin"), "allowOrigins");
    }
    for (i, o) in c.allow_origin.iter().enumerate() {
        if o.is_empty() {
            v.err(&format!("{p}.allowOrigin[{i}]"), "origin must not be empty");
        }
    }
    for (i, o) in c.allow_origins.iter().enumerate() {
        let op = format!("{p}.allowOrigins[{i}]");
        let empty_value = [&o.exact, &o.prefix, &o.regex]
            .iter()
            .any(|x| x.as_deref() == Some(""));
        if empty_value {
            v.err(&op, "origin matcher must not be empty");
        } else {
            v.string_match(&op, o, false, false, false);
        }
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !names::HTTP_METHODS.contains(&m.as_str()) {
            v.err(
                &format!("{p}.allowMethods[{i}]"),
                format!("{m:?} is not a valid HTTP method"),
            );
        }
    }
    for (field, list) in [
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, h) in list.iter().enumerate() {
            if h.is_empty() {
                v.err(
                    &format!("{p}.{field}[{i}]"),
                    "header name must not be empty",
                );
            } else if h != "*" && !names::is_istio_header_name(h) {
                v.err(
                    &format!("{p}.{field}[{i}]"),
                    format!("header name {h:?} is not a valid header name (letters, digits, '-' and '_' only)"),
                );
            }
        }
    }
    if let Some(age) = &c.max_age {
        // Istio applies its general duration rule (≥ 1ms, whole ms) and then whole seconds.
        v.duration(&format!("{p}.maxAge"), &c.max_age);
        if age.as_nanos() % 1_000_000_000 != 0 {
            v.err(
                &format!("{p}.maxAge"),
                format!("maxAge {age} must be a whole number of seconds"),
            );
        }
    }
}

/// `spec.hosts`: wildcard domains or IPs; `*` not on the mesh.
fn hosts(v: &mut V, vs: &VirtualService, applies_to_mesh: bool) {
    // Istio: a VirtualService bound to gateways only, with `tls` routes matching SNI hosts,
    // may name Istio's generated SNI names as hosts (AUTO_PASSTHROUGH gateways route on them).
    let gateway_sni = !applies_to_mesh && has_sni_hosts(vs);
    for (i, h) in vs.hosts.iter().enumerate() {
        let p = format!("spec.hosts[{i}]");
        if h == "*" && applies_to_mesh {
            v.err(
                &p,
                "wildcard host * is not allowed for VirtualServices bound to the mesh gateway",
            );
        } else if h.parse::<std::net::IpAddr>().is_err() {
            let checked = if gateway_sni {
                names::check_sni_domain(h)
            } else {
                names::check_wildcard_domain(h)
            };
            if let Err(e) = checked {
                v.err(&p, e);
            }
        }
    }
}

/// True when a `tls` route matches on SNI hosts (Istio `isSniHost`).
fn has_sni_hosts(vs: &VirtualService) -> bool {
    vs.tls
        .iter()
        .any(|r| r.matches.iter().any(|m| !m.sni_hosts.is_empty()))
}

fn tls_route(v: &mut V, p: &str, r: &TlsRoute, vs: &VirtualService) {
    if r.matches.is_empty() {
        v.err(
            &format!("{p}.match"),
            "TLS route must have at least one match condition",
        );
    }
    for (i, m) in r.matches.iter().enumerate() {
        let mp = format!("{p}.match[{i}]");
        if m.sni_hosts.is_empty() {
            v.err(
                &format!("{mp}.sniHosts"),
                "TLS match must have at least one SNI host",
            );
        }
        for (j, sni) in m.sni_hosts.iter().enumerate() {
            let sp = format!("{mp}.sniHosts[{j}]");
            if sni.parse::<std::net::IpAddr>().is_ok() {
                v.warn(
                    &sp,
                    "an IP address in sniHosts never matches: clients do not send IPs as SNI",
                );
                continue;
            }
            // Istio (`validateSniHost`): unless the VirtualService names the `mesh` gateway,
            // an SNI host may be Istio's generated `outbound_.<port>_.<subset>_.<host>`.
            let checked = if vs.gateways.iter().any(|g| g == MESH_GATEWAY) {
                names::check_wildcard_domain(sni)
            } else {
                names::check_sni_domain(sni)
            };
            if let Err(e) = checked {
                v.err(&sp, e);
                continue;
            }
            let sni_l = sni.to_ascii_lowercase();
            let covered = vs.hosts.iter().any(|h| {
                let h = h.to_ascii_lowercase();
                crate::host::subset_of(&sni_l, &h)
                    || crate::host::subset_of(&sni_l, &crate::host::qualify(&h, &v.res.namespace))
            });
            if !covered {
                v.err(&sp, format!("SNI host {sni:?} is not a compatible subset of any of the virtual service hosts"));
            }
        }
        l4_common(
            v,
            &mp,
            &m.destination_subnets,
            m.port,
            &m.source_labels,
            &m.gateways,
            &m.source_namespace,
        );
    }
    route_destinations(v, p, &r.route, "TLS");
}

fn tcp_route(v: &mut V, p: &str, r: &TcpRoute) {
    for (i, m) in r.matches.iter().enumerate() {
        let mp = format!("{p}.match[{i}]");
        l4_common(
            v,
            &mp,
            &m.destination_subnets,
            m.port,
            &m.source_labels,
            &m.gateways,
            &m.source_namespace,
        );
        if !m.source_subnet.is_empty() {
            if let Err(e) = names::check_ip_or_cidr(&m.source_subnet) {
                v.err(&format!("{mp}.sourceSubnet"), e);
            }
        }
    }
    route_destinations(v, p, &r.route, "TCP");
}

fn l4_common(
    v: &mut V,
    mp: &str,
    subnets: &[String],
    port: Option<u32>,
    source_labels: &Map<String, String>,
    gateways: &[String],
    source_namespace: &str,
) {
    for (j, s) in subnets.iter().enumerate() {
        if let Err(e) = names::check_ip_or_cidr(s) {
            v.err(&format!("{mp}.destinationSubnets[{j}]"), e);
        }
    }
    if let Some(port) = port {
        if let Err(e) = names::check_port(port as u64) {
            v.err(&format!("{mp}.port"), e);
        }
    }
    v.labels(&format!("{mp}.sourceLabels"), source_labels);
    gateway_names(v, &format!("{mp}.gateways"), gateways);
    if !source_namespace.is_empty() && !names::is_lower_dns1123_label(source_namespace) {
        v.err(
            &format!("{mp}.sourceNamespace"),
            format!("invalid namespace {source_namespace:?}"),
        );
    }
}

fn route_destinations(v: &mut V, p: &str, route: &[RouteDestination], what: &str) {
    if route.is_empty() {
        v.err(&format!("{p}.route"), format!("{what} route is required"));
    }
    for (i, d) in route.iter().enumerate() {
        destination(
            v,
            &format!("{p}.route[{i}].destination"),
            d.destination.as_ref(),
        );
        if d.weight < 0 {
            v.err(
                &format!("{p}.route[{i}].weight"),
                format!("weight {} must not be negative", d.weight),
            );
        }
    }
    if route.len() > 1 && route.iter().all(|d| d.weight == 0) {
        v.err(&format!("{p}.route"), "total destination weight = 0");
    }
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    /// The (path, message) of every error in `yaml`.
    fn errors(yaml: &str) -> Vec<(String, String)> {
        match crate::compile::load_str("test.yaml", yaml) {
            Ok(_) => Vec::new(),
            Err(d) => d
                .errors()
                .map(|e| (e.path.clone(), e.message.clone()))
                .collect(),
        }
    }

    fn authority_errors(yaml: &str) -> Vec<String> {
        errors(yaml)
            .into_iter()
            .filter(|(_, m)| m.contains("authority header cannot be set multiple times"))
            .map(|(p, _)| p)
            .collect()
    }

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r.example.com]\n  http:\n";

    #[test]
    fn route_level_authority_twice_is_reported_once_at_the_route() {
        let yaml = format!(
            "{VS}  - rewrite: {{authority: a.example.com}}\n    headers: {{request: {{set: {{':authority': b.example.com}}}}}}\n    route:\n    - destination: {{host: r.example.com}}\n      weight: 50\n    - destination: {{host: r.example.com}}\n      weight: 50\n      headers: {{request: {{set: {{x-a: b}}}}}}\n"
        );
        assert_eq!(authority_errors(&yaml), vec!["spec.http[0].headers"]);
    }

    #[test]
    fn destination_authority_is_reported_only_where_it_is_set() {
        let yaml = format!(
            "{VS}  - headers: {{request: {{set: {{host: b.example.com}}}}}}\n    route:\n    - destination: {{host: r.example.com}}\n      weight: 50\n    - destination: {{host: r.example.com}}\n      weight: 50\n      headers: {{request: {{add: {{':authority': c.example.com}}}}}}\n"
        );
        assert_eq!(
            authority_errors(&yaml),
            vec!["spec.http[0].route[1].headers"]
        );
    }

    #[test]
    fn one_authority_per_destination_without_route_level_is_fine() {
        let yaml = format!(
            "{VS}  - route:\n    - destination: {{host: r.example.com}}\n      weight: 50\n      headers: {{request: {{set: {{':authority': a.example.com}}}}}}\n    - destination: {{host: r.example.com}}\n      weight: 50\n      headers: {{request: {{set: {{host: b.example.com}}}}}}\n"
        );
        assert!(authority_errors(&yaml).is_empty());
    }

    #[test]
    fn set_and_add_of_the_authority_in_one_block_conflict() {
        let yaml = format!(
            "{VS}  - headers: {{request: {{set: {{':authority': a.example.com}}, add: {{host: b.example.com}}}}}}\n    route:\n    - destination: {{host: r.example.com}}\n"
        );
        assert_eq!(authority_errors(&yaml), vec!["spec.http[0].headers"]);
    }

    #[test]
    fn base64() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert!(decode_base64("a$==").is_none());
    }
}
