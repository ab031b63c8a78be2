//! `HTTPRedirect`: builds the `Location` of a redirect from the request and the rule.

use meshproxy_config::compile::matcher::RouteMatch;
use meshproxy_config::compile::route::{Redirect, RedirectPath, RedirectPort};

/// The request parts a redirect is built from.
pub struct RequestParts<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Host without port.
    pub host: &'a str,
    /// Port written in the authority, if any.
    pub authority_port: Option<u16>,
    /// Port the request arrived on.
    pub listener_port: u16,
    /// Path without query.
    pub path: &'a str,
    /// Query without `?` (empty if none).
    pub query: &'a str,
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// The `Location` header value.
pub fn location(r: &Redirect, req: &RequestParts<'_>, matched: Option<&RouteMatch>) -> String {
    let scheme = r.scheme.as_deref().unwrap_or(req.scheme);
    let host = r.authority.as_deref().unwrap_or(req.host);
    // A rewritten authority may carry its own port.
    let (host, host_port) = match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.parse::<u16>().is_ok() => (h, p.parse::<u16>().ok()),
        _ => (host, None),
    };
    let port = match r.port {
        RedirectPort::Fixed(p) => Some(p),
        RedirectPort::FromProtocolDefault => None,
        RedirectPort::FromRequestPort => Some(req.listener_port),
        RedirectPort::Keep => {
            if r.authority.is_some() {
                host_port
            } else if r.scheme.is_some() && r.scheme.as_deref() != Some(req.scheme) {
                // Changing scheme: a port that was the old scheme's default is dropped.
                req.authority_port
                    .filter(|p| *p != default_port(req.scheme))
            } else {
                req.authority_port
            }
        }
    };
    let port = port.filter(|p| *p != default_port(scheme));
    let path = match &r.path {
        RedirectPath::Keep => req.path.to_string(),
        RedirectPath::Replace(p) => p.clone(),
        RedirectPath::PrefixRewrite(new) => {
            let prefix = matched
                .and_then(|m| m.uri.as_ref())
                .and_then(|u| u.rewrite_prefix())
                .unwrap_or("");
            let rest = req.path.get(prefix.len()..).unwrap_or("");
            format!("{new}{rest}")
        }
    };
    let mut out = format!("{scheme}://{host}");
    if let Some(p) = port {
        out.push(':');
        out.push_str(&p.to_string());
    }
    out.push_str(&path);
    // Envoy keeps the query unless the new path carries one.
    if !req.query.is_empty() && !path.contains('?') {
        out.push('?');
        out.push_str(req.query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshproxy_config::compile::matcher::StringMatcher;

    fn req() -> RequestParts<'static> {
        RequestParts {
            scheme: "http",
            host: "shop.test",
            authority_port: Some(8080),
            listener_port: 15001,
            path: "/v1/items",
            query: "a=1",
        }
    }

    fn rd(path: RedirectPath) -> Redirect {
        Redirect {
            code: 301,
            scheme: None,
            authority: None,
            port: RedirectPort::Keep,
            path,
        }
    }

    #[test]
    fn replace_uri_keeps_host_port_and_query() {
        assert_eq!(
            location(&rd(RedirectPath::Replace("/new".into())), &req(), None),
            "http://shop.test:8080/new?a=1"
        );
    }

    #[test]
    fn https_and_authority_and_default_port() {
        let mut r = rd(RedirectPath::Keep);
        r.scheme = Some("https".into());
        r.port = RedirectPort::FromProtocolDefault;
        assert_eq!(location(&r, &req(), None), "https://shop.test/v1/items?a=1");
        r.authority = Some("other.test".into());
        r.port = RedirectPort::Fixed(8443);
        assert_eq!(
            location(&r, &req(), None),
            "https://other.test:8443/v1/items?a=1"
        );
        r.port = RedirectPort::FromRequestPort;
        assert_eq!(
            location(&r, &req(), None),
            "https://other.test:15001/v1/items?a=1"
        );
    }

    #[test]
    fn prefix_rewrite_replaces_the_matched_prefix() {
        let m = RouteMatch {
            uri: Some(StringMatcher::Prefix("/v1".into())),
            ..Default::default()
        };
        assert_eq!(
            location(
                &rd(RedirectPath::PrefixRewrite("/v2".into())),
                &req(),
                Some(&m)
            ),
            "http://shop.test:8080/v2/items?a=1"
        );
    }
}
