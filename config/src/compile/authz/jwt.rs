//! The AuthorizationPolicy fields that read the request's verified JWT:
//! `requestPrincipals` / `notRequestPrincipals`, `request.auth.principal`,
//! `request.auth.audiences`, `request.auth.presenter` and `request.auth.claims[...]`
//! (<https://istio.io/latest/docs/reference/config/security/conditions/>). Without a
//! token every positive check is false and every negated one true, as Istio's matchers
//! on absent metadata are.

use super::{string_pattern, Pattern};
use serde_json::Value;

/// The payload of a verified JWT.
pub type JwtClaims = serde_json::Map<String, Value>;

/// What a JWT check reads.
#[derive(Clone, Debug)]
pub(super) enum JwtField {
    /// `<iss>/<sub>`, matched as two parts.
    Principal,
    /// A claim, by its path from the payload's top (`[aud]`, `[azp]`, `[a][b]`).
    Claim(Box<[Box<str>]>),
}

impl JwtField {
    /// `request.auth.audiences` (`aud`), `request.auth.presenter` (`azp`),
    /// `request.auth.claims[a][b]...` (brackets only: a `.` inside them is literal).
    pub(super) fn claim(key: &str) -> Option<JwtField> {
        let path: Vec<Box<str>> = match key {
            "request.auth.audiences" => vec!["aud".into()],
            "request.auth.presenter" => vec!["azp".into()],
            _ => {
                let mut rest = key.strip_prefix("request.auth.claims")?;
                let mut path = Vec::new();
                while let Some(r) = rest.strip_prefix('[') {
                    let (name, after) = r.split_once(']')?;
                    path.push(name.into());
                    rest = after;
                }
                if !rest.is_empty() || path.is_empty() {
                    return None;
                }
                path
            }
        };
        Some(JwtField::Claim(path.into()))
    }

    /// Whether the token matches one of `patterns`.
    pub(super) fn matches(&self, patterns: &[Pattern], claims: &JwtClaims) -> bool {
        match self {
            JwtField::Principal => {
                let part = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
                let (iss, sub) = (part("iss"), part("sub"));
                patterns.iter().any(|p| match p {
                    Pattern::RequestPrincipal(b) => {
                        b.0.matches(iss.as_bytes(), false) && b.1.matches(sub.as_bytes(), false)
                    }
                    _ => false,
                })
            }
            JwtField::Claim(path) => {
                let Some((first, rest)) = path.split_first() else {
                    return false;
                };
                let mut v = claims.get(&**first);
                for k in rest {
                    v = v.and_then(|v| v.get(&**k));
                }
                v.is_some_and(|v| claim_matches(v, path.last().map_or("", |k| k), patterns))
            }
        }
    }
}

/// Istio: a string claim must match; a list matches if any of its strings does; numbers,
/// booleans and objects never match. `scope` and `permission` are space-separated lists.
fn claim_matches(v: &Value, name: &str, patterns: &[Pattern]) -> bool {
    let one = |s: &str| patterns.iter().any(|p| p.matches(s.as_bytes(), false));
    let split = name == "scope" || name == "permission";
    let string = |s: &str| {
        if split {
            s.split(' ').any(one)
        } else {
            one(s)
        }
    };
    match v {
        Value::String(s) => string(s),
        Value::Array(items) => items.iter().filter_map(Value::as_str).any(string),
        _ => false,
    }
}

/// Istio (1.21+, `requestPrincipalGenerator`): a value is split at its last `/` into an
/// `iss` and a `sub` matcher; `*` alone is two non-empty matches; without a `/`, a
/// leading `*` matches any `iss` and a `sub` suffix, a trailing `*` an `iss` prefix and
/// any `sub`, and a plain value is an `iss` with an empty `sub`.
pub(super) fn principal_pattern(v: &str) -> Pattern {
    let s = |x: &str| string_pattern(x, Pattern::NonEmpty, false);
    let (iss, sub) = if v == "*" {
        (Pattern::NonEmpty, Pattern::NonEmpty)
    } else if let Some((iss, sub)) = v.rsplit_once('/') {
        (s(iss), s(sub))
    } else if let Some(suffix) = v.strip_prefix('*') {
        (Pattern::NonEmpty, Pattern::Suffix(suffix.into()))
    } else if let Some(prefix) = v.strip_suffix('*') {
        (Pattern::Prefix(prefix.into()), Pattern::NonEmpty)
    } else {
        (Pattern::Exact(v.into()), Pattern::Exact("".into()))
    };
    Pattern::RequestPrincipal(Box::new((iss, sub)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> JwtClaims {
        v.as_object().cloned().unwrap()
    }

    fn principal(pattern: &str, iss: &str, sub: Option<&str>) -> bool {
        let mut c = json!({"iss": iss});
        if let Some(s) = sub {
            c["sub"] = json!(s);
        }
        JwtField::Principal.matches(&[principal_pattern(pattern)], &claims(c))
    }

    #[test]
    fn istio_request_principal_wildcards() {
        assert!(principal("*", "i", Some("s")));
        assert!(!principal("*", "i", None));
        assert!(principal("a/b", "a", Some("b")));
        assert!(!principal("a/b", "a", Some("c")));
        assert!(principal("*/b", "x", Some("b")));
        assert!(principal("*x/b", "ax", Some("b")));
        assert!(!principal("*x/b", "xa", Some("b")));
        assert!(principal("a/*", "a", Some("anything")));
        assert!(!principal("a/*", "a", None));
        assert!(principal("a/x*", "a", Some("xyz")));
        assert!(principal("*x", "any", Some("abx")));
        assert!(principal("x*", "xyz", Some("s")));
        assert!(principal("a", "a", None));
        assert!(!principal("a", "a", Some("s")));
        // The split is at the last `/`: an issuer URL with a path works.
        assert!(principal(
            "https://iss.example/p/sub1",
            "https://iss.example/p",
            Some("sub1")
        ));
        // An inner `*` is literal.
        assert!(!principal("a*b/c", "axb", Some("c")));
    }

    #[test]
    fn claims_strings_lists_nested_and_scopes() {
        let c = claims(json!({"groups": ["group1", "group2"], "aud": "app", "n": 3,
            "org": {"team": "infra"}, "scope": "read write", "a.b": "dotted"}));
        let m = |key: &str, v: &str| {
            JwtField::claim(key)
                .unwrap()
                .matches(&[string_pattern(v, Pattern::NonEmpty, false)], &c)
        };
        assert!(m("request.auth.claims[groups]", "group1"));
        assert!(!m("request.auth.claims[groups]", "group3"));
        assert!(m("request.auth.claims[groups]", "group*"));
        assert!(m("request.auth.audiences", "app"));
        assert!(!m("request.auth.presenter", "*"));
        assert!(!m("request.auth.claims[n]", "3"));
        assert!(m("request.auth.claims[org][team]", "infra"));
        assert!(m("request.auth.claims[scope]", "write"));
        assert!(m("request.auth.claims[a.b]", "dotted"));
        assert!(JwtField::claim("request.auth.claims").is_none());
        assert!(JwtField::claim("request.auth.claims[a]x").is_none());
    }
}
