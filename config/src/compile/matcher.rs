//! Compiled request matchers: Istio's `StringMatch` and `HTTPMatchRequest` turned into
//! values that test a request without allocating. Regexes are RE2-style and implicitly
//! anchored (Envoy `safe_regex` is a full-string match).

use http::header::HeaderName;
use http::HeaderMap;
use regex::Regex;
use std::collections::HashMap;

/// The parts of a request route matching looks at. Built once per request by the data path.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:scheme` (`http` or `https`).
    pub scheme: &'a str,
    /// `:authority` / `Host` as sent (with port if any).
    pub authority: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    /// Query string without `?` (empty if none).
    pub query: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Destination port (from the authority, the original destination, or the listener).
    pub port: u16,
}

/// A compiled Istio `StringMatch`.
#[derive(Clone, Debug)]
pub enum StringMatcher {
    /// Equal to the string.
    Exact(Box<str>),
    /// Starts with the string.
    Prefix(Box<str>),
    /// Full-string RE2 match.
    Regex(Regex),
    /// Anything (an empty `StringMatch`, `prefix: ""`, or presence).
    Any,
}

impl StringMatcher {
    /// Tests `s`; `ignore_case` applies to exact and prefix only (Envoy `ignore_case`).
    pub fn matches(&self, s: &str, ignore_case: bool) -> bool {
        match self {
            StringMatcher::Exact(e) => {
                if ignore_case {
                    e.eq_ignore_ascii_case(s)
                } else {
                    **e == *s
                }
            }
            StringMatcher::Prefix(p) => {
                if ignore_case {
                    s.len() >= p.len()
                        && s.is_char_boundary(p.len())
                        && s[..p.len()].eq_ignore_ascii_case(p)
                } else {
                    s.starts_with(&**p)
                }
            }
            StringMatcher::Regex(r) => r.is_match(s),
            StringMatcher::Any => true,
        }
    }

    /// The prefix this matcher strips in a prefix rewrite (the whole path for exact).
    pub fn rewrite_prefix(&self) -> Option<&str> {
        match self {
            StringMatcher::Exact(e) | StringMatcher::Prefix(e) => Some(e),
            _ => None,
        }
    }
}

/// Compiles regexes once per distinct pattern: large configs repeat the same patterns
/// across services, and a compiled `Regex` is cheap to clone (shared program).
#[derive(Default)]
pub struct RegexCache {
    cache: HashMap<String, Regex>,
}

impl RegexCache {
    /// A full-string (anchored) regex for `pattern`.
    pub fn anchored(&mut self, pattern: &str) -> Result<Regex, String> {
        if let Some(r) = self.cache.get(pattern) {
            return Ok(r.clone());
        }
        let r = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("invalid regex {pattern:?}: {e}"))?;
        self.cache.insert(pattern.to_string(), r.clone());
        Ok(r)
    }

    /// An unanchored regex (for `uriRegexRewrite`, which substitutes matches in the path).
    pub fn unanchored(&mut self, pattern: &str) -> Result<Regex, String> {
        let key = format!("\u{0}{pattern}");
        if let Some(r) = self.cache.get(&key) {
            return Ok(r.clone());
        }
        let r = Regex::new(pattern).map_err(|e| format!("invalid regex {pattern:?}: {e}"))?;
        self.cache.insert(key, r.clone());
        Ok(r)
    }

    /// Compiles a `StringMatch`. `presence` lets `{}` and `regex: "*"` mean "anything".
    pub fn string_match(
        &mut self,
        m: &crate::model::common::StringMatch,
    ) -> Result<StringMatcher, String> {
        if let Some(e) = &m.exact {
            return Ok(StringMatcher::Exact(e.as_str().into()));
        }
        if let Some(p) = &m.prefix {
            return Ok(if p.is_empty() {
                StringMatcher::Any
            } else {
                StringMatcher::Prefix(p.as_str().into())
            });
        }
        if let Some(r) = &m.regex {
            // Istio treats `regex: "*"` as presence (not a valid RE2 pattern).
            if r == "*" {
                return Ok(StringMatcher::Any);
            }
            return Ok(StringMatcher::Regex(self.anchored(r)?));
        }
        Ok(StringMatcher::Any)
    }
}

/// A header condition (`headers` or, inverted, `withoutHeaders`).
#[derive(Clone, Debug)]
pub struct HeaderMatcher {
    /// Lower-case header name.
    pub name: HeaderName,
    /// The value condition; `None` means "present".
    pub value: Option<StringMatcher>,
    /// `withoutHeaders`: the request matches when this condition does not.
    pub invert: bool,
}

impl HeaderMatcher {
    /// Envoy semantics: several values of one header are joined with `,` before matching;
    /// for `withoutHeaders` with a value condition a missing header counts as `""`
    /// (Istio sets `treat_missing_header_as_empty`).
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let first = values.next();
        let hit = match (&self.value, first) {
            (None, v) => v.is_some(),
            (Some(m), None) => self.invert && m.matches("", false),
            (Some(m), Some(v1)) => match values.next() {
                None => v1.to_str().is_ok_and(|s| m.matches(s, false)),
                Some(v2) => {
                    let mut joined = String::new();
                    for v in [v1, v2].into_iter().chain(values) {
                        if !joined.is_empty() {
                            joined.push(',');
                        }
                        joined.push_str(v.to_str().unwrap_or(""));
                    }
                    m.matches(&joined, false)
                }
            },
        };
        hit != self.invert
    }
}

/// A query parameter condition.
#[derive(Clone, Debug)]
pub struct QueryMatcher {
    /// Parameter name.
    pub name: Box<str>,
    /// Value condition; `Any` means "present".
    pub value: StringMatcher,
}

impl QueryMatcher {
    /// Envoy tests the first occurrence of the parameter; `?key` has the empty value.
    pub fn matches(&self, query: &str) -> bool {
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k == &*self.name {
                return self.value.matches(v, false);
            }
        }
        false
    }
}

/// One compiled `HTTPMatchRequest` (all conditions AND'ed).
#[derive(Clone, Debug, Default)]
pub struct RouteMatch {
    /// Match name (joined with the rule name in logs).
    pub name: String,
    /// Path condition.
    pub uri: Option<StringMatcher>,
    /// `ignoreUriCase`.
    pub ignore_uri_case: bool,
    /// `:scheme` condition.
    pub scheme: Option<StringMatcher>,
    /// `:method` condition.
    pub method: Option<StringMatcher>,
    /// `:authority` condition.
    pub authority: Option<StringMatcher>,
    /// Header conditions, including inverted ones.
    pub headers: Vec<HeaderMatcher>,
    /// Query parameter conditions.
    pub query: Vec<QueryMatcher>,
    /// Destination port condition.
    pub port: Option<u16>,
}

/// One condition of a [`RouteMatch`]: what `matches` checks, and what `explain` reports
/// on. Headers and query parameters are indexes into [`RouteMatch::headers`] and
/// [`RouteMatch::query`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchField {
    /// `port`.
    Port,
    /// `uri`.
    Uri,
    /// `method`.
    Method,
    /// `scheme`.
    Scheme,
    /// `authority`.
    Authority,
    /// `headers[i]` (or `withoutHeaders`).
    Header(usize),
    /// `queryParams[i]`.
    Query(usize),
}

impl RouteMatch {
    /// True when every condition holds: the data path's test, and the same per-field
    /// checks `explain` reports one by one.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        // Spelled out in the order of `conditions()` rather than iterating it: this runs
        // for every rule tried on every request, and each `check` folds to one comparison.
        self.check(MatchField::Port, req)
            && self.check(MatchField::Uri, req)
            && self.check(MatchField::Method, req)
            && self.check(MatchField::Scheme, req)
            && self.check(MatchField::Authority, req)
            && (0..self.headers.len()).all(|i| self.check(MatchField::Header(i), req))
            && (0..self.query.len()).all(|i| self.check(MatchField::Query(i), req))
    }

    /// The conditions this match sets, in the order they are checked (cheap ones first).
    pub fn conditions(&self) -> impl Iterator<Item = MatchField> + '_ {
        let set = |on: bool, f: MatchField| on.then_some(f);
        [
            set(self.port.is_some(), MatchField::Port),
            set(self.uri.is_some(), MatchField::Uri),
            set(self.method.is_some(), MatchField::Method),
            set(self.scheme.is_some(), MatchField::Scheme),
            set(self.authority.is_some(), MatchField::Authority),
        ]
        .into_iter()
        .flatten()
        .chain((0..self.headers.len()).map(MatchField::Header))
        .chain((0..self.query.len()).map(MatchField::Query))
    }

    /// Whether the request satisfies one condition (an unset one always holds).
    #[inline]
    pub fn check(&self, field: MatchField, req: &RequestView<'_>) -> bool {
        match field {
            MatchField::Port => self.port.is_none_or(|p| p == req.port),
            MatchField::Uri => self
                .uri
                .as_ref()
                .is_none_or(|u| u.matches(req.path, self.ignore_uri_case)),
            MatchField::Method => self
                .method
                .as_ref()
                .is_none_or(|m| m.matches(req.method, false)),
            MatchField::Scheme => self
                .scheme
                .as_ref()
                .is_none_or(|s| s.matches(req.scheme, false)),
            MatchField::Authority => self
                .authority
                .as_ref()
                .is_none_or(|a| a.matches(req.authority, false)),
            MatchField::Header(i) => self.headers.get(i).is_none_or(|h| h.matches(req.headers)),
            MatchField::Query(i) => self.query.get(i).is_none_or(|q| q.matches(req.query)),
        }
    }

    /// True when the match has no condition at all.
    pub fn is_catch_all(&self) -> bool {
        matches!(self.uri, None | Some(StringMatcher::Any))
            && self.scheme.is_none()
            && self.method.is_none()
            && self.authority.is_none()
            && self.headers.is_empty()
            && self.query.is_empty()
            && self.port.is_none()
    }
}

/// One `HTTPMatchRequest` compiled to a [`RouteMatch`] (VirtualService routes and
/// RateLimitPolicy rules).
pub(crate) fn compile_http_match(
    regex: &mut RegexCache,
    m: &crate::model::virtual_service::HttpMatchRequest,
) -> Result<RouteMatch, String> {
    let mut out = RouteMatch {
        name: m.name.clone(),
        ignore_uri_case: m.ignore_uri_case,
        port: m.port.filter(|p| (1..=65535).contains(p)).map(|p| p as u16),
        ..Default::default()
    };
    if let Some(u) = &m.uri {
        out.uri = Some(regex.string_match(u)?);
    }
    if let Some(s) = &m.scheme {
        out.scheme = Some(regex.string_match(s)?);
    }
    if let Some(s) = &m.method {
        out.method = Some(regex.string_match(s)?);
    }
    if let Some(s) = &m.authority {
        out.authority = Some(regex.string_match(s)?);
    }
    for (invert, map) in [(false, &m.headers), (true, &m.without_headers)] {
        for (k, sm) in map {
            let lower = k.to_ascii_lowercase();
            // Istio ignores these keys in `headers` (they have their own fields).
            if matches!(lower.as_str(), "uri" | "scheme" | "method" | "authority") {
                continue;
            }
            if lower.starts_with('@') {
                continue; // JWT claims: validated as gateway-only, not enforced
            }
            let name = HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| format!("invalid header name {k:?}"))?;
            let value = if sm.is_empty() {
                None
            } else {
                Some(regex.string_match(sm)?)
            };
            out.headers.push(HeaderMatcher {
                name,
                value,
                invert,
            });
        }
    }
    out.headers.shrink_to_fit();
    for (k, sm) in &m.query_params {
        out.query.push(QueryMatcher {
            name: k.as_str().into(),
            value: regex.string_match(sm)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::common::StringMatch;
    use http::HeaderValue;

    fn sm(exact: Option<&str>, prefix: Option<&str>, regex: Option<&str>) -> StringMatch {
        StringMatch {
            exact: exact.map(Into::into),
            prefix: prefix.map(Into::into),
            regex: regex.map(Into::into),
        }
    }

    fn view<'a>(path: &'a str, query: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            method: "GET",
            scheme: "http",
            authority: "reviews:9080",
            path,
            query,
            headers,
            port: 9080,
        }
    }

    #[test]
    fn exact_prefix_regex() {
        let mut c = RegexCache::default();
        let e = c.string_match(&sm(Some("/a"), None, None)).unwrap();
        assert!(e.matches("/a", false));
        assert!(!e.matches("/a/b", false));
        assert!(e.matches("/A", true));
        let p = c.string_match(&sm(None, Some("/foo"), None)).unwrap();
        assert!(
            p.matches("/foobar", false),
            "plain string prefix, not segment-aware"
        );
        assert!(!p.matches("/FOObar", false));
        assert!(p.matches("/FOObar", true));
        let r = c.string_match(&sm(None, None, Some(r"\d+"))).unwrap();
        assert!(r.matches("123", false));
        assert!(!r.matches("a123", false), "regex is a full-string match");
        assert!(!r.matches("123a", false));
        assert!(matches!(
            c.string_match(&sm(None, None, Some("*"))).unwrap(),
            StringMatcher::Any
        ));
        assert!(matches!(
            c.string_match(&sm(None, Some(""), None)).unwrap(),
            StringMatcher::Any
        ));
    }

    #[test]
    fn regex_alternation_is_anchored_as_a_whole() {
        let mut c = RegexCache::default();
        let r = c.string_match(&sm(None, None, Some("a|b"))).unwrap();
        assert!(r.matches("a", false));
        assert!(!r.matches("ab", false));
    }

    #[test]
    fn headers_presence_absence_and_multi_values() {
        let mut h = HeaderMap::new();
        h.insert("end-user", HeaderValue::from_static("jason"));
        h.append("x-multi", HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("b"));
        let exact = HeaderMatcher {
            name: HeaderName::from_static("end-user"),
            value: Some(StringMatcher::Exact("jason".into())),
            invert: false,
        };
        assert!(exact.matches(&h));
        let present = HeaderMatcher {
            name: HeaderName::from_static("x-absent"),
            value: None,
            invert: false,
        };
        assert!(!present.matches(&h));
        let joined = HeaderMatcher {
            name: HeaderName::from_static("x-multi"),
            value: Some(StringMatcher::Exact("a,b".into())),
            invert: false,
        };
        assert!(joined.matches(&h));
    }

    #[test]
    fn without_headers_treats_missing_as_empty() {
        let h = HeaderMap::new();
        // withoutHeaders: {x: {exact: "v"}} → missing header is "" which is not "v" → match.
        let m = HeaderMatcher {
            name: HeaderName::from_static("x"),
            value: Some(StringMatcher::Exact("v".into())),
            invert: true,
        };
        assert!(m.matches(&h));
        // withoutHeaders: {x: {prefix: ""}} style "anything" → missing counts as "" → no match.
        let any = HeaderMatcher {
            name: HeaderName::from_static("x"),
            value: Some(StringMatcher::Any),
            invert: true,
        };
        assert!(!any.matches(&h));
        // presence form inverted: header must be absent.
        let absent = HeaderMatcher {
            name: HeaderName::from_static("x"),
            value: None,
            invert: true,
        };
        assert!(absent.matches(&h));
    }

    #[test]
    fn query_params() {
        let q = QueryMatcher {
            name: "id".into(),
            value: StringMatcher::Exact("7".into()),
        };
        assert!(q.matches("a=1&id=7"));
        assert!(!q.matches("id=8&id=7"), "first occurrence decides");
        let empty = QueryMatcher {
            name: "flag".into(),
            value: StringMatcher::Exact("".into()),
        };
        assert!(empty.matches("flag"));
        assert!(!empty.matches("other=1"));
    }

    #[test]
    fn route_match_ands_everything() {
        let h = HeaderMap::new();
        let m = RouteMatch {
            uri: Some(StringMatcher::Prefix("/api".into())),
            port: Some(9080),
            method: Some(StringMatcher::Exact("GET".into())),
            ..Default::default()
        };
        assert!(m.matches(&view("/api/x", "", &h)));
        let mut other_port = view("/api/x", "", &h);
        other_port.port = 80;
        assert!(!m.matches(&other_port));
        assert!(!m.matches(&view("/web", "", &h)));
    }
}
