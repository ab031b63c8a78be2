//! Hostname intersection between a listener and a route (Gateway API
//! `site/content/en/docs/concepts/hostnames.md`): an unset hostname is `*`; two precise
//! names intersect when equal; a wildcard intersects the names it suffix-matches and the
//! wildcards it contains; the result is the more specific of the two.

/// The hostnames a route with `route` hostnames serves on a listener with `listener`:
/// empty when they do not intersect; `*` stands for any host.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let listener = listener.filter(|l| !l.is_empty());
    match (listener, route.is_empty()) {
        (None, true) => vec!["*".to_string()],
        (None, false) => route.to_vec(),
        (Some(l), true) => vec![l.to_string()],
        (Some(l), false) => {
            let mut out: Vec<String> = route.iter().filter_map(|r| pair(l, r)).collect();
            out.dedup();
            out
        }
    }
}

/// The intersection of two hostnames, if any.
fn pair(a: &str, b: &str) -> Option<String> {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (None, None) => (a.eq_ignore_ascii_case(b)).then(|| b.to_string()),
        // `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`.
        (Some(suffix), None) => covers(suffix, b).then(|| b.to_string()),
        (None, Some(suffix)) => covers(suffix, a).then(|| a.to_string()),
        (Some(sa), Some(sb)) => {
            if sa.len() >= sb.len() && ends_with(sa, sb) {
                Some(a.to_string())
            } else if ends_with(sb, sa) {
                Some(b.to_string())
            } else {
                None
            }
        }
    }
}

/// Whether a wildcard `*<suffix>` matches the precise `name`.
fn covers(suffix: &str, name: &str) -> bool {
    name.len() > suffix.len() && ends_with(name, suffix)
}

fn ends_with(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_documented_intersections() {
        assert_eq!(intersect(None, &[]), v(&["*"]));
        assert_eq!(intersect(Some("foo.com"), &[]), v(&["foo.com"]));
        assert_eq!(intersect(Some("foo.com"), &v(&["bar.com"])), v(&[]));
        assert_eq!(
            intersect(
                Some("*.example.com"),
                &v(&["a.example.com", "a.b.example.com", "example.com"])
            ),
            v(&["a.example.com", "a.b.example.com"])
        );
        assert_eq!(
            intersect(Some("*.example.com"), &v(&["*.com"])),
            v(&["*.example.com"])
        );
        assert_eq!(
            intersect(Some("foo.example.com"), &v(&["*.example.com"])),
            v(&["foo.example.com"])
        );
        assert_eq!(
            intersect(Some("*.com"), &v(&["*.example.com"])),
            v(&["*.example.com"])
        );
    }
}
