//! Why a compiled [`RouteMatch`] holds or not for a request, condition by condition, for
//! `meshproxy explain` and `meshproxy test`. The verdict of each condition comes from
//! [`RouteMatch::check`], the very check the data path's [`RouteMatch::matches`] runs;
//! this module only names the condition and shows the request's value next to it.

use super::matcher::{MatchField, RequestView, RouteMatch, StringMatcher};
use std::fmt;

/// One condition of a match, evaluated against a request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldCheck {
    /// The field as written in a VirtualService (`uri`, `headers[end-user]`,
    /// `withoutHeaders[x-debug]`, `queryParams[id]`, `port`...).
    pub field: String,
    /// The condition (`prefix "/api"`, `exact "jason"`, `present`, `9080`).
    pub condition: String,
    /// The request's value (`(absent)` when it has none).
    pub actual: String,
    /// Whether the condition holds.
    pub ok: bool,
}

impl fmt::Display for StringMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StringMatcher::Exact(e) => write!(f, "exact {e:?}"),
            StringMatcher::Prefix(p) => write!(f, "prefix {p:?}"),
            StringMatcher::Regex(r) => {
                // The compiled form is anchored as `^(?:...)$`; show what was written.
                let s = r.as_str();
                let inner = s
                    .strip_prefix("^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                    .unwrap_or(s);
                write!(f, "regex {inner:?}")
            }
            StringMatcher::Any => f.write_str("any value"),
        }
    }
}

impl RouteMatch {
    /// Every condition of this match with its verdict, in the order the data path checks
    /// them (the data path stops at the first that fails; this goes on, to show them all).
    pub fn explain(&self, req: &RequestView<'_>) -> Vec<FieldCheck> {
        self.conditions()
            .map(|f| FieldCheck {
                field: self.field_name(f),
                condition: self.condition(f),
                actual: actual(f, self, req),
                ok: self.check(f, req),
            })
            .collect()
    }

    /// The field's name as a VirtualService spells it.
    pub fn field_name(&self, f: MatchField) -> String {
        match f {
            MatchField::Port => "port".into(),
            MatchField::Uri => "uri".into(),
            MatchField::Method => "method".into(),
            MatchField::Scheme => "scheme".into(),
            MatchField::Authority => "authority".into(),
            MatchField::Header(i) => match self.headers.get(i) {
                Some(h) if h.invert => format!("withoutHeaders[{}]", h.name),
                Some(h) => format!("headers[{}]", h.name),
                None => "headers[?]".into(),
            },
            MatchField::Query(i) => match self.query.get(i) {
                Some(q) => format!("queryParams[{}]", q.name),
                None => "queryParams[?]".into(),
            },
        }
    }

    /// The condition's text.
    pub fn condition(&self, f: MatchField) -> String {
        let opt = |m: &Option<StringMatcher>| m.as_ref().map(|m| m.to_string()).unwrap_or_default();
        match f {
            MatchField::Port => self.port.map(|p| p.to_string()).unwrap_or_default(),
            MatchField::Uri if self.ignore_uri_case => {
                format!("{} (ignoreUriCase)", opt(&self.uri))
            }
            MatchField::Uri => opt(&self.uri),
            MatchField::Method => opt(&self.method),
            MatchField::Scheme => opt(&self.scheme),
            MatchField::Authority => opt(&self.authority),
            MatchField::Header(i) => match self.headers.get(i) {
                Some(h) if h.value.is_none() && h.invert => "absent".into(),
                Some(h) if h.value.is_none() => "present".into(),
                Some(h) if h.invert => format!("not {}", opt(&h.value)),
                Some(h) => opt(&h.value),
                None => String::new(),
            },
            MatchField::Query(i) => self
                .query
                .get(i)
                .map(|q| q.value.to_string())
                .unwrap_or_default(),
        }
    }
}

/// The request's value of a field, as the check sees it (several values of a header are
/// joined with `,`, as Envoy does before matching).
fn actual(f: MatchField, m: &RouteMatch, req: &RequestView<'_>) -> String {
    const ABSENT: &str = "(absent)";
    match f {
        MatchField::Port => req.port.to_string(),
        MatchField::Uri => req.path.to_string(),
        MatchField::Method => req.method.to_string(),
        MatchField::Scheme => req.scheme.to_string(),
        MatchField::Authority => req.authority.to_string(),
        MatchField::Header(i) => {
            let Some(h) = m.headers.get(i) else {
                return ABSENT.into();
            };
            let values: Vec<&str> = req
                .headers
                .get_all(&h.name)
                .iter()
                .map(|v| v.to_str().unwrap_or("(not text)"))
                .collect();
            if values.is_empty() {
                ABSENT.into()
            } else {
                values.join(",")
            }
        }
        MatchField::Query(i) => {
            let Some(q) = m.query.get(i) else {
                return ABSENT.into();
            };
            req.query
                .split('&')
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                .find(|(k, _)| *k == &*q.name)
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| ABSENT.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::matcher::{HeaderMatcher, QueryMatcher};
    use http::header::{HeaderName, HeaderValue};
    use http::HeaderMap;
    use regex::Regex;

    fn view<'a>(headers: &'a HeaderMap, query: &'a str) -> RequestView<'a> {
        RequestView {
            method: "GET",
            scheme: "http",
            authority: "reviews:9080",
            path: "/api/items",
            query,
            headers,
            port: 9080,
        }
    }

    /// The one check of a match that sets only `f`'s field.
    fn only(m: RouteMatch, req: &RequestView<'_>) -> FieldCheck {
        let mut checks = m.explain(req);
        assert_eq!(checks.len(), 1, "{checks:?}");
        assert_eq!(checks[0].ok, m.matches(req), "explain agrees with matches");
        checks.remove(0)
    }

    #[test]
    fn uri() {
        let h = HeaderMap::new();
        let hit = only(
            RouteMatch {
                uri: Some(StringMatcher::Prefix("/api".into())),
                ..Default::default()
            },
            &view(&h, ""),
        );
        assert_eq!(
            (hit.field.as_str(), hit.condition.as_str(), hit.ok),
            ("uri", "prefix \"/api\"", true)
        );
        let miss = only(
            RouteMatch {
                uri: Some(StringMatcher::Exact("/API/ITEMS".into())),
                ..Default::default()
            },
            &view(&h, ""),
        );
        assert!(!miss.ok);
        assert_eq!(miss.actual, "/api/items");
        let folded = only(
            RouteMatch {
                uri: Some(StringMatcher::Exact("/API/ITEMS".into())),
                ignore_uri_case: true,
                ..Default::default()
            },
            &view(&h, ""),
        );
        assert!(folded.ok);
        assert_eq!(folded.condition, "exact \"/API/ITEMS\" (ignoreUriCase)");
    }

    #[test]
    fn method_scheme_authority_port() {
        let h = HeaderMap::new();
        let req = view(&h, "");
        let c = only(
            RouteMatch {
                method: Some(StringMatcher::Exact("POST".into())),
                ..Default::default()
            },
            &req,
        );
        assert_eq!(
            (c.field.as_str(), c.actual.as_str(), c.ok),
            ("method", "GET", false)
        );
        let c = only(
            RouteMatch {
                scheme: Some(StringMatcher::Exact("http".into())),
                ..Default::default()
            },
            &req,
        );
        assert_eq!((c.field.as_str(), c.ok), ("scheme", true));
        let c = only(
            RouteMatch {
                authority: Some(StringMatcher::Regex(
                    Regex::new("^(?:reviews(:\\d+)?)$").unwrap(),
                )),
                ..Default::default()
            },
            &req,
        );
        assert_eq!(
            (c.field.as_str(), c.condition.as_str(), c.ok),
            ("authority", "regex \"reviews(:\\\\d+)?\"", true)
        );
        let c = only(
            RouteMatch {
                port: Some(8080),
                ..Default::default()
            },
            &req,
        );
        assert_eq!(
            (
                c.field.as_str(),
                c.condition.as_str(),
                c.actual.as_str(),
                c.ok
            ),
            ("port", "8080", "9080", false)
        );
    }

    #[test]
    fn headers_and_without_headers() {
        let mut h = HeaderMap::new();
        h.insert("end-user", HeaderValue::from_static("jason"));
        let req = view(&h, "");
        let exact = |name: &'static str, v: &str, invert: bool| RouteMatch {
            headers: vec![HeaderMatcher {
                name: HeaderName::from_static(name),
                value: Some(StringMatcher::Exact(v.into())),
                invert,
            }],
            ..Default::default()
        };
        let c = only(exact("end-user", "jason", false), &req);
        assert_eq!((c.field.as_str(), c.ok), ("headers[end-user]", true));
        let c = only(exact("end-user", "kim", false), &req);
        assert_eq!((c.actual.as_str(), c.ok), ("jason", false));
        let c = only(exact("x-debug", "1", true), &req);
        assert_eq!(
            (
                c.field.as_str(),
                c.condition.as_str(),
                c.actual.as_str(),
                c.ok
            ),
            (
                "withoutHeaders[x-debug]",
                "not exact \"1\"",
                "(absent)",
                true
            )
        );
        let present = RouteMatch {
            headers: vec![HeaderMatcher {
                name: HeaderName::from_static("x-canary"),
                value: None,
                invert: false,
            }],
            ..Default::default()
        };
        let c = only(present, &req);
        assert_eq!((c.condition.as_str(), c.ok), ("present", false));
    }

    #[test]
    fn query_params() {
        let h = HeaderMap::new();
        let m = || RouteMatch {
            query: vec![QueryMatcher {
                name: "id".into(),
                value: StringMatcher::Exact("7".into()),
            }],
            ..Default::default()
        };
        let c = only(m(), &view(&h, "a=1&id=7"));
        assert_eq!(
            (c.field.as_str(), c.actual.as_str(), c.ok),
            ("queryParams[id]", "7", true)
        );
        let c = only(m(), &view(&h, "a=1"));
        assert_eq!((c.actual.as_str(), c.ok), ("(absent)", false));
    }

    #[test]
    fn every_condition_is_listed_even_after_a_failure() {
        let mut h = HeaderMap::new();
        h.insert("end-user", HeaderValue::from_static("jason"));
        let m = RouteMatch {
            uri: Some(StringMatcher::Prefix("/web".into())),
            method: Some(StringMatcher::Exact("GET".into())),
            headers: vec![HeaderMatcher {
                name: HeaderName::from_static("end-user"),
                value: Some(StringMatcher::Exact("jason".into())),
                invert: false,
            }],
            ..Default::default()
        };
        let req = view(&h, "");
        let checks = m.explain(&req);
        let verdicts: Vec<(&str, bool)> = checks.iter().map(|c| (c.field.as_str(), c.ok)).collect();
        assert_eq!(
            verdicts,
            [
                ("uri", false),
                ("method", true),
                ("headers[end-user]", true)
            ]
        );
        assert!(!m.matches(&req));
    }
}
