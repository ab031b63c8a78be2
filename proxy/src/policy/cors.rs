//! CORS (`corsPolicy`), as Envoy's CORS filter applies it per route.

use http::header::{self, HeaderMap, HeaderValue};
use http::Method;
use meshproxy_config::compile::route::Cors;

/// What the CORS policy says about a request.
pub enum Verdict {
    /// Not a CORS request (no `Origin`): nothing to do.
    None,
    /// A preflight from an allowed origin: answer it here with these headers.
    Preflight(HeaderMap),
    /// A preflight from an origin not allowed, with `unmatchedPreflights: IGNORE`:
    /// answer here without CORS headers.
    IgnoredPreflight,
    /// Forward; add these headers to the response.
    Forward(HeaderMap),
}

/// Evaluates `cors` for a request.
pub fn evaluate(cors: &Cors, method: &Method, headers: &HeaderMap) -> Verdict {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Verdict::None;
    };
    let allowed = origin
        .to_str()
        .map(|o| cors.origin_allowed(o))
        .unwrap_or(false);
    let preflight =
        method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !allowed {
            return if cors.forward_unmatched_preflights {
                Verdict::Forward(HeaderMap::new())
            } else {
                Verdict::IgnoredPreflight
            };
        }
        let mut h = HeaderMap::new();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if let Some(m) = &cors.allow_methods {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m.clone());
        }
        if let Some(v) = &cors.allow_headers {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        if let Some(v) = &cors.max_age {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, v.clone());
        }
        if cors.allow_credentials == Some(true) {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        return Verdict::Preflight(h);
    }
    let mut h = HeaderMap::new();
    if allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if cors.allow_credentials == Some(true) {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(v) = &cors.expose_headers {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
    }
    Verdict::Forward(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshproxy_config::compile::matcher::StringMatcher;

    fn cors(forward: bool) -> Cors {
        Cors {
            origins: vec![StringMatcher::Exact("https://a.test".into())],
            allow_methods: Some(HeaderValue::from_static("GET,POST")),
            allow_headers: Some(HeaderValue::from_static("x-a")),
            expose_headers: Some(HeaderValue::from_static("x-b")),
            max_age: Some(HeaderValue::from_static("60")),
            allow_credentials: Some(true),
            forward_unmatched_preflights: forward,
        }
    }

    fn req(origin: &'static str, preflight: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_static(origin));
        if preflight {
            h.insert(
                header::ACCESS_CONTROL_REQUEST_METHOD,
                HeaderValue::from_static("POST"),
            );
        }
        h
    }

    #[test]
    fn allowed_preflight_is_answered() {
        match evaluate(&cors(true), &Method::OPTIONS, &req("https://a.test", true)) {
            Verdict::Preflight(h) => {
                assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.test");
                assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET,POST");
                assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "60");
            }
            _ => panic!("expected a preflight answer"),
        }
    }

    #[test]
    fn unmatched_preflight_forwarded_or_ignored() {
        assert!(
            matches!(evaluate(&cors(true), &Method::OPTIONS, &req("https://b.test", true)), Verdict::Forward(h) if h.is_empty())
        );
        assert!(matches!(
            evaluate(&cors(false), &Method::OPTIONS, &req("https://b.test", true)),
            Verdict::IgnoredPreflight
        ));
    }

    #[test]
    fn simple_request_gets_allow_origin() {
        match evaluate(&cors(true), &Method::GET, &req("https://a.test", false)) {
            Verdict::Forward(h) => {
                assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.test");
                assert_eq!(h[header::ACCESS_CONTROL_EXPOSE_HEADERS], "x-b");
            }
            _ => panic!(),
        }
        assert!(matches!(
            evaluate(&cors(true), &Method::GET, &HeaderMap::new()),
            Verdict::None
        ));
    }
}
