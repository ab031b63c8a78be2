//! Syntax rules for names Istio validates: DNS-1123 labels and domains (with Istio's
//! wildcard forms), Kubernetes label keys and values, HTTP header names and values, IPs and
//! CIDRs, ports, and `exportTo` lists.

use std::net::IpAddr;

/// DNS-1123 label as Istio checks it (`labels.IsDNS1123Label`, upper case tolerated because
/// hosts are lower-cased afterwards).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// Strict lower-case DNS-1123 label (Kubernetes names and namespaces, subset names).
pub fn is_lower_dns1123_label(s: &str) -> bool {
    is_dns1123_label(s) && !s.bytes().any(|c| c.is_ascii_uppercase())
}

/// Kubernetes object name: DNS-1123 subdomain (lower case, dots allowed, ≤ 253).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_lower_dns1123_label)
}

/// Istio `labels.IsWildcardDNS1123Label`: `*`, or a DNS-1123 label optionally prefixed by
/// `*` or `*-` (`^(\*|(\*|\*-)?<label>)$`, at most 63 characters in all).
fn is_wildcard_label(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    if s.len() > 63 {
        return false;
    }
    match s.strip_prefix('*') {
        Some(rest) => is_dns1123_label(rest.strip_prefix('-').unwrap_or(rest)),
        None => is_dns1123_label(s),
    }
}

/// Istio `ValidateWildcardDomain`: a DNS name whose first label may be a wildcard.
pub fn check_wildcard_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    if domain.len() > 255 {
        return Err(format!("domain name {domain:?} too long (max 255)"));
    }
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
    if !is_wildcard_label(first) {
        return Err(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    if let Some(rest) = rest {
        check_dns1123_labels(domain, rest)?;
    }
    Ok(())
}

/// Istio's check for SNI names on gateways (`ValidateWildcardDomainForVirtualServiceBoundToGateway`
/// with `sni` set): a wildcard domain, or the name Istio itself generates for a cluster and
/// that AUTO_PASSTHROUGH gateways route on, `outbound_.<port>_.<subset>_.<host>` (e.g.
/// `outbound_.15010_._.istiod.istio-system.svc.cluster.local`). Its labels hold `_`, which
/// no DNS label may. Istio checks the generated form loosely, and so do we: four
/// `_`-separated parts, a digit in the port part and a letter in the host part.
pub fn check_sni_domain(domain: &str) -> Result<(), String> {
    const FORM: &str = "outbound_.<port>_.<subset>_.<hostname>";
    if !domain.starts_with("outbound_") {
        return check_wildcard_domain(domain);
    }
    if domain.len() > 255 {
        return Err(format!("domain name {domain:?} too long (max 255)"));
    }
    let parts: Vec<&str> = domain.split('_').collect();
    if parts.len() < 4 {
        return Err(format!(
            "domain name {domain:?} invalid, should follow the {FORM} form"
        ));
    }
    let port = parts[1].trim_matches('.');
    let host = parts[3].trim_matches('.');
    if !port.bytes().any(|b| b.is_ascii_digit()) {
        return Err(format!(
            "domain name {domain:?} invalid (label {port:?} invalid), should follow the {FORM} form"
        ));
    }
    if !host.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "domain name {domain:?} invalid (label {host:?} invalid), should follow the {FORM} form"
        ));
    }
    Ok(())
}

/// Istio `ValidateTrustDomain` (mesh `trustDomain`): dot-separated DNS-1123 labels, the
/// last of which may be empty (`cluster.local.`). Unlike a host name it has no length limit
/// and its last label may be all digits.
pub fn check_trust_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let last = labels.len() - 1;
    for (i, label) in labels.into_iter().enumerate() {
        if i == last && i > 0 && label.is_empty() {
            break;
        }
        if !is_dns1123_label(label) {
            return Err(format!("trust domain name {domain:?} invalid"));
        }
    }
    Ok(())
}

/// Istio `ValidateFQDN`: DNS labels, no wildcard, top-level label not all digits.
pub fn check_fqdn(domain: &str) -> Result<(), String> {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    if d.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    if d.len() > 255 {
        return Err(format!("domain name {domain:?} too long (max 255)"));
    }
    check_dns1123_labels(domain, d)
}

fn check_dns1123_labels(whole: &str, labels: &str) -> Result<(), String> {
    let parts: Vec<&str> = labels.split('.').collect();
    if let Some(top) = parts.last() {
        if !top.is_empty() && top.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "domain name {whole:?} invalid (top level domain {top:?} cannot be all-numeric)"
            ));
        }
    }
    let last = parts.len() - 1;
    for (i, label) in parts.into_iter().enumerate() {
        // Istio: the last label may be empty, for unambiguous names like `istio.io.`.
        if i == last && label.is_empty() && i > 0 {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "domain name {whole:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    Ok(())
}

/// A trust domain in an AuthorizationPolicy (`source.trustDomains`, `notTrustDomains`, the
/// `source.trustDomain` condition). Istio's API allows exact, prefix (`td*`), suffix (`*td`)
/// and presence (`*`) matches here, as for every string in a policy; a `*` anywhere else
/// (`clu*ster.local`, `*.local*`) is none of them and Istio refuses it.
pub fn check_trust_domain_match(td: &str) -> Result<(), String> {
    let inner = td
        .strip_prefix('*')
        .or_else(|| td.strip_suffix('*'))
        .unwrap_or(td);
    if inner.contains('*') {
        return Err(format!(
            "invalid trust domain {td:?}: a wildcard is only allowed as the whole value or at its start or end"
        ));
    }
    Ok(())
}

/// Kubernetes label key: optional DNS-subdomain prefix and `/`, then a name of ≤ 63
/// alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn check_label_key(k: &str) -> Result<(), String> {
    if k.is_empty() {
        return Err("label key must not be empty".into());
    }
    if k.contains('*') {
        return Err(format!("wildcard not allowed in label key {k:?}"));
    }
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if !is_dns1123_subdomain(p) {
            return Err(format!(
                "invalid label key {k:?}: prefix must be a DNS-1123 subdomain"
            ));
        }
    }
    if !is_label_name(name) {
        return Err(format!(
            "invalid label key {k:?}: name part must be at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"
        ));
    }
    Ok(())
}

/// Kubernetes label value: empty, or like a label name.
pub fn check_label_value(k: &str, v: &str) -> Result<(), String> {
    if v.contains('*') {
        return Err(format!(
            "wildcard not allowed in label value {v:?} (key {k:?})"
        ));
    }
    if !v.is_empty() && !is_label_name(v) {
        return Err(format!(
            "invalid label value {v:?} for key {k:?}: at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"
        ));
    }
    Ok(())
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Istio's header-name rule for match keys and CORS header lists (`validHeaderRegex`,
/// `^[-_A-Za-z0-9]+$`).
pub fn is_istio_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// RFC 9110 token (header names).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// A header value as Envoy's header formatter accepts it: no control characters, and a
/// literal `%` written `%%` (a single `%` opens a `%VARIABLE%`).
pub fn check_header_value(v: &str) -> Result<(), String> {
    if v.bytes().any(|c| (c < 0x20 && c != b'\t') || c == 0x7f) {
        return Err(format!("header value {v:?} contains control characters"));
    }
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if b.get(i + 1) == Some(&b'%') {
                i += 2;
                continue;
            }
            // %VARIABLE% or %VARIABLE(args)%
            let end = b[i + 1..].iter().position(|&c| c == b'%');
            let ok = match end {
                Some(n) if n > 0 => {
                    let var = &v[i + 1..i + 1 + n];
                    let name_end = var.find('(').unwrap_or(var.len());
                    let name = &var[..name_end];
                    !name.is_empty()
                        && name
                            .bytes()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
                        && (name_end == var.len() || var.ends_with(')'))
                }
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "header value {v:?}: a literal '%' must be written '%%' (a single '%' starts a %VARIABLE%)"
                ));
            }
            i += 1 + end.unwrap_or(0) + 1;
            continue;
        }
        i += 1;
    }
    Ok(())
}

/// An IP address or a CIDR block.
pub fn check_ip_or_cidr(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() || s.parse::<ipnet::IpNet>().is_ok() {
        Ok(())
    } else {
        Err(format!("{s:?} is not a valid IP address or CIDR block"))
    }
}

/// A port number in 1..=65535.
pub fn check_port(p: u64) -> Result<(), String> {
    if (1..=65535).contains(&p) {
        Ok(())
    } else {
        Err(format!("port number {p} must be in the range 1..65535"))
    }
}

/// Istio `validateExportTo`: `.`, `*` or namespace names (and `~`, "visible to no one",
/// for ServiceEntries only); no duplicates, where `.` and the resource's own `namespace`
/// are the same entry; `*` and `~` stand alone.
pub fn check_export_to(list: &[String], namespace: &str, is_service_entry: bool) -> Vec<String> {
    let mut errs = Vec::new();
    // key (with `.` read as `namespace`) -> the entry as written
    let mut seen = std::collections::BTreeMap::new();
    for e in list {
        let key = if e == "." { namespace } else { e.as_str() };
        if let Some(first) = seen.insert(key, e.as_str()) {
            if first != e {
                errs.push(format!(
                    "duplicate entries in exportTo: . and current namespace {namespace:?}"
                ));
            } else {
                errs.push(format!("duplicate entry {e:?} in exportTo"));
            }
            continue;
        }
        if e == "~" && !is_service_entry {
            errs.push("exportTo ~ (none) is allowed only for ServiceEntries".into());
        } else if e != "." && e != "*" && e != "~" && !is_lower_dns1123_label(e) {
            errs.push(format!(
                "invalid exportTo entry {e:?}: must be '.', '*' or a namespace name"
            ));
        }
    }
    if list.len() > 1 && list.iter().any(|e| e == "*") {
        errs.push("exportTo '*' cannot be combined with other entries".into());
    }
    if is_service_entry && list.len() > 1 && list.iter().any(|e| e == "~") {
        errs.push("cannot export service entry to no one (~) and someone".into());
    }
    errs
}

/// HTTP methods Envoy's CORS filter and Istio's validation know.
pub const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// gRPC status code names Istio accepts in `abort.grpcStatus`.
pub const GRPC_STATUS_NAMES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// True for a status code Go's `net/http.StatusText` knows (Istio's test for numeric
/// `retryOn` entries).
pub fn is_known_http_status(code: u32) -> bool {
    matches!(code,
        100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426 | 428 | 429
        | 431 | 451 | 500..=508 | 510 | 511)
}

/// Service/gateway port protocols Istio's `protocol.Parse` knows (case-insensitive).
pub const PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "MYSQL", "REDIS", "TCP", "TLS", "UDP",
    "THRIFT", "HBONE",
];

/// True when `p` is a protocol name Istio knows.
pub fn is_known_protocol(p: &str) -> bool {
    PROTOCOLS.iter().any(|k| k.eq_ignore_ascii_case(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_domains() {
        assert!(is_dns1123_label("reviews-v1"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(""));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(check_wildcard_domain("*.foo.com").is_ok());
        assert!(check_wildcard_domain("*foo.com").is_ok());
        assert!(check_wildcard_domain("*-foo.com").is_ok());
        assert!(check_wildcard_domain("*--foo.com").is_err());
        assert!(check_wildcard_domain("*-.com").is_err());
        assert!(check_wildcard_domain("10.0.0.1").is_err());
        assert!(is_istio_header_name("x-Foo_bar9"));
        assert!(!is_istio_header_name("x.foo"));
        assert!(!is_istio_header_name(""));
        assert!(check_wildcard_domain("*").is_ok());
        assert!(check_wildcard_domain("reviews").is_ok());
        assert!(check_wildcard_domain("foo.*.com").is_err());
        assert!(check_wildcard_domain("foo.*").is_err());
        assert!(check_wildcard_domain("a..b").is_err());
        assert!(check_wildcard_domain("default/baz").is_err());
        assert!(check_wildcard_domain("").is_err());
        assert!(check_fqdn("foo.123").is_err());
        assert!(check_fqdn("foo.com.").is_ok());
        assert!(check_wildcard_domain("istio.io.").is_ok());
        assert!(check_wildcard_domain("istio..io").is_err());
    }

    #[test]
    fn istio_generated_sni_names() {
        for ok in [
            "outbound_.15010_._.istiod.istio-system.svc.cluster.local",
            "outbound_.80_.v1_.reviews.default.svc.cluster.local",
            "outbound_.80_._.e2e.foobar.mesh",
            "outbound.com",
            "*.example.com",
        ] {
            assert_eq!(check_sni_domain(ok), Ok(()), "{ok}");
        }
        for bad in [
            "outbound_.80_.e2e.foobar.mesh",
            "outbound_.http_._.e2e.foobar.mesh",
            "outbound_.80_._.1.2.3",
            "neverbound_.80_._.e2e.foobar.mesh",
            "foo.*.com",
            "",
        ] {
            assert!(check_sni_domain(bad).is_err(), "{bad}");
        }
        // Anywhere else a `_` is still no DNS label.
        assert!(check_wildcard_domain("outbound_.80_._.e2e.foobar.mesh").is_err());
    }

    #[test]
    fn mesh_trust_domains() {
        for ok in ["cluster.local", "cluster.local.", "td", "corp.123"] {
            assert_eq!(check_trust_domain(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".local", "a..b", "*.local", "under_score.local", "a/b"] {
            assert!(check_trust_domain(bad).is_err(), "{bad}");
        }
        // A host name may not end in an all-digit label; a trust domain may.
        assert!(check_fqdn("corp.123").is_err());
    }

    #[test]
    fn trust_domain_wildcards() {
        for ok in ["cluster.local", "*", "*.local", "cluster.*", "td-1"] {
            assert_eq!(check_trust_domain_match(ok), Ok(()), "{ok}");
        }
        for bad in ["clu*ster.local", "*.local*", "**", "a**"] {
            assert!(check_trust_domain_match(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("security.istio.io/tlsMode").is_ok());
        assert!(check_label_key("").is_err());
        assert!(check_label_key("a*").is_err());
        assert!(check_label_key("Bad Key").is_err());
        assert!(check_label_value("k", "").is_ok());
        assert!(check_label_value("k", "v1.2_x").is_ok());
        assert!(check_label_value("k", "*").is_err());
        assert!(check_label_value("k", &"a".repeat(64)).is_err());
    }

    #[test]
    fn header_values_use_envoy_formatter_escapes() {
        assert!(check_header_value("plain").is_ok());
        assert!(check_header_value("100%%").is_ok());
        assert!(check_header_value("%DOWNSTREAM_REMOTE_ADDRESS%").is_ok());
        assert!(check_header_value("%REQ(x-foo)%").is_ok());
        assert!(check_header_value("abcd%oijasodifj").is_err());
        assert!(check_header_value("a\nb").is_err());
    }

    #[test]
    fn export_to_rules() {
        let ex = |l: &[&str], se: bool| {
            let l: Vec<String> = l.iter().map(|s| s.to_string()).collect();
            check_export_to(&l, "shop", se)
        };
        assert!(ex(&["."], false).is_empty());
        assert!(ex(&[".", "frontend"], false).is_empty());
        assert!(!ex(&["*", "a"], false).is_empty());
        assert!(!ex(&["a", "a"], false).is_empty());
        assert!(!ex(&["Bad_NS"], false).is_empty());
        assert_eq!(
            ex(&[".", "shop"], false),
            vec!["duplicate entries in exportTo: . and current namespace \"shop\"".to_string()]
        );
        assert!(!ex(&["shop", "."], false).is_empty());
        assert!(ex(&["~"], true).is_empty());
        assert!(!ex(&["~"], false).is_empty());
        assert!(!ex(&["~", "a"], true).is_empty());
    }

    #[test]
    fn ips_ports_statuses() {
        assert!(check_ip_or_cidr("10.0.0.0/8").is_ok());
        assert!(check_ip_or_cidr("::1").is_ok());
        assert!(check_ip_or_cidr("10.0.0.300").is_err());
        assert!(check_port(0).is_err());
        assert!(check_port(65536).is_err());
        assert!(is_known_http_status(503));
        assert!(!is_known_http_status(600));
    }
}
