//! Istio host names: short-name qualification, wildcard matching (`host.Name.Matches` and
//! `SubsetOf` in istio/istio `pkg/config/host/name.go`), and the request-side host forms a
//! Kubernetes-style service answers to.

/// Istio's default DNS domain suffix.
pub const DEFAULT_DOMAIN_SUFFIX: &str = "cluster.local";

/// Qualifies a host as Istio does (`pilot/pkg/model/config.go ResolveShortnameToFQDN`): a
/// name without a dot is relative to the namespace of the rule that wrote it; `*`, dotted
/// names and IP literals are taken as written. The result is lower-case.
pub fn qualify(host: &str, namespace: &str) -> String {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h == "*" || h.contains('.') || h.contains(':') || h.is_empty() {
        return h;
    }
    format!("{h}.{namespace}.svc.{DEFAULT_DOMAIN_SUFFIX}")
}

/// True when the host starts with a wildcard (`*`, `*.foo.com`, `*foo.com`).
pub fn is_wildcard(host: &str) -> bool {
    host.starts_with('*')
}

/// Istio `host.Name.Matches`: the two names overlap (either may be a wildcard).
pub fn matches(a: &str, b: &str) -> bool {
    match (is_wildcard(a), is_wildcard(b)) {
        (true, true) => {
            if a.len() < b.len() {
                b[1..].ends_with(&a[1..])
            } else {
                a[1..].ends_with(&b[1..])
            }
        }
        (true, false) => b.ends_with(&a[1..]),
        (false, true) => a.ends_with(&b[1..]),
        (false, false) => a == b,
    }
}

/// Istio `host.Name.SubsetOf`: every name matched by `a` is matched by `b`.
pub fn subset_of(a: &str, b: &str) -> bool {
    if b == "*" {
        return true;
    }
    match (is_wildcard(a), is_wildcard(b)) {
        (true, true) => a[1..].ends_with(&b[1..]),
        (true, false) => false,
        (false, true) => a.ends_with(&b[1..]),
        (false, false) => a == b,
    }
}

/// The `Host`/`:authority` forms that reach a Kubernetes-style service
/// `name.ns.svc.<suffix>` from a proxy in `proxy_namespace` (Istio
/// `generateAltVirtualHostsForKubernetesService`): `name.ns.svc`, `name.ns`, and the bare
/// `name` only from the same namespace. Other hosts have no alternative forms.
pub fn alt_forms(fqdn: &str, proxy_namespace: &str) -> Vec<String> {
    let suffix = format!(".svc.{DEFAULT_DOMAIN_SUFFIX}");
    let Some(stem) = fqdn.strip_suffix(&suffix) else {
        return Vec::new();
    };
    let Some((name, ns)) = stem.split_once('.') else {
        return Vec::new();
    };
    if name.is_empty() || ns.is_empty() || ns.contains('.') || name.starts_with('*') {
        return Vec::new();
    }
    let mut out = vec![format!("{name}.{ns}.svc"), format!("{name}.{ns}")];
    if ns == proxy_namespace {
        out.push(name.to_string());
    }
    out
}

/// Normalises a request's `Host`/`:authority` for lookup: lower-case, port and trailing dot
/// removed (Istio sets `ignore_port_in_host_matching`). Returns the host and the port if any.
/// Allocates only when the input has upper-case letters.
pub fn split_authority(authority: &str) -> (std::borrow::Cow<'_, str>, Option<u16>) {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':').and_then(port_number)),
            None => (authority, None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => match port_number(p) {
                Some(p) => (h, Some(p)),
                None => (authority, None),
            },
            _ => (authority, None),
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        (std::borrow::Cow::Owned(host.to_ascii_lowercase()), port)
    } else {
        (std::borrow::Cow::Borrowed(host), port)
    }
}

/// An authority's port: ASCII digits only (RFC 3986 §3.2.3). `u16::from_str` alone would
/// also take a leading `+`, so `host:+80` would have meant port 80.
fn port_number(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_digits_only() {
        assert_eq!(split_authority("a:80").1, Some(80));
        assert_eq!(split_authority("a:+80").1, None);
        assert_eq!(split_authority("[::1]:+80").1, None);
        assert_eq!(split_authority("[::1]:443").1, Some(443));
        assert_eq!(split_authority("a:").1, None);
        assert_eq!(split_authority("a:70000").1, None);
    }

    #[test]
    fn short_names_are_qualified_with_the_rule_namespace() {
        assert_eq!(
            qualify("reviews", "default"),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(qualify("Reviews", "foo"), "reviews.foo.svc.cluster.local");
        assert_eq!(qualify("reviews.default", "foo"), "reviews.default");
        assert_eq!(qualify("*", "foo"), "*");
        assert_eq!(qualify("*.example.com", "foo"), "*.example.com");
        assert_eq!(qualify("10.0.0.1", "foo"), "10.0.0.1");
        assert_eq!(qualify("::1", "foo"), "::1");
    }

    #[test]
    fn wildcard_matching_follows_istio() {
        assert!(matches("*.foo.com", "a.foo.com"));
        assert!(matches("*.foo.com", "a.b.foo.com"));
        assert!(!matches("*.foo.com", "foo.com"));
        assert!(matches("*foo.com", "foo.com"));
        assert!(matches("*", "anything"));
        assert!(matches("*.foo.bar", "*.bar"));
        assert!(matches("a.com", "a.com"));
        assert!(!matches("a.com", "b.com"));
        assert!(subset_of("login.bookinfo.com", "*.bookinfo.com"));
        assert!(subset_of("*.a.b.com", "*.b.com"));
        assert!(!subset_of("*.b.com", "*.a.b.com"));
        assert!(!subset_of("*.b.com", "x.b.com"));
        assert!(subset_of("x", "*"));
    }

    #[test]
    fn kubernetes_alt_forms() {
        let f = alt_forms("reviews.default.svc.cluster.local", "default");
        assert_eq!(f, vec!["reviews.default.svc", "reviews.default", "reviews"]);
        let f = alt_forms("reviews.default.svc.cluster.local", "other");
        assert_eq!(f, vec!["reviews.default.svc", "reviews.default"]);
        assert!(alt_forms("api.example.com", "default").is_empty());
    }

    #[test]
    fn authority_forms() {
        assert_eq!(
            split_authority("Reviews:9080"),
            ("reviews".into(), Some(9080))
        );
        assert_eq!(split_authority("reviews"), ("reviews".into(), None));
        assert_eq!(split_authority("a.com."), ("a.com".into(), None));
        assert_eq!(split_authority("[::1]:80"), ("::1".into(), Some(80)));
        assert_eq!(split_authority("::1"), ("::1".into(), None));
    }
}
