//! Where a token is read from (Envoy jwt_authn `extractor.cc`): a header, after a prefix
//! found anywhere in its value (a value without the prefix carries no token); a query
//! parameter; a cookie. Reading borrows from the request and allocates nothing; removing
//! a token after verification (`forwardOriginalToken: false`) drops the header or cuts the
//! parameter from the path.

use http::request::Parts;
use http::{HeaderMap, Uri};
use meshproxy_config::compile::jwt::Location;

/// Envoy `extractJWT`: the token is the run of base64url characters and `.` (padding `=`
/// tolerated) that starts at the prefix's end.
fn jwt_run(v: &str) -> &str {
    let end = v
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=')))
        .unwrap_or(v.len());
    &v[..end]
}

fn from_header<'r>(
    headers: &'r HeaderMap,
    name: &http::HeaderName,
    prefix: &str,
) -> Option<&'r str> {
    headers.get_all(name).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let token = if prefix.is_empty() {
            v.trim()
        } else {
            let at = v.find(prefix)?;
            jwt_run(&v[at + prefix.len()..])
        };
        (!token.is_empty()).then_some(token)
    })
}

fn from_query<'r>(query: &'r str, name: &str) -> Option<&'r str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name && !v.is_empty()).then_some(v)
    })
}

fn from_cookie<'r>(headers: &'r HeaderMap, name: &str) -> Option<&'r str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            let v = v.trim_matches('"');
            (k == name && !v.is_empty()).then_some(v)
        })
}

/// The first token found at `locations`, and the index of its location.
pub fn find<'r>(locations: &[Location], parts: &'r Parts) -> Option<(&'r str, usize)> {
    locations.iter().enumerate().find_map(|(i, loc)| {
        let token = match loc {
            Location::Header { name, prefix } => from_header(&parts.headers, name, prefix),
            Location::Param(p) => from_query(parts.uri.query()?, p),
            Location::Cookie(c) => from_cookie(&parts.headers, c),
        }?;
        Some((token, i))
    })
}

/// Removes the token's carrier: the header, or the query parameter (cookies are left as
/// they are, as Envoy leaves them).
pub fn remove(location: &Location, parts: &mut Parts) {
    match location {
        Location::Header { name, .. } => {
            parts.headers.remove(name);
        }
        Location::Param(p) => {
            let Some(query) = parts.uri.query() else {
                return;
            };
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != &**p)
                .collect();
            let mut pq = parts.uri.path().to_string();
            if !kept.is_empty() {
                pq.push('?');
                pq.push_str(&kept.join("&"));
            }
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.path_and_query = pq.parse().ok();
            if let Ok(u) = Uri::from_parts(uri) {
                parts.uri = u;
            }
        }
        Location::Cookie(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn header(name: &'static str, prefix: &str) -> Location {
        Location::Header {
            name: http::HeaderName::from_static(name),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn envoy_locations() {
        let bearer = [
            header("authorization", "Bearer "),
            Location::Param("access_token".into()),
        ];
        let p = parts("/x", &[("authorization", "Bearer a.b.c")]);
        assert_eq!(find(&bearer, &p), Some(("a.b.c", 0)));
        // `Basic` carries no bearer token: no token at all.
        let p = parts("/x", &[("authorization", "Basic dXNlcg==")]);
        assert_eq!(find(&bearer, &p), None);
        let p = parts("/x?a=1&access_token=t.o.k", &[]);
        assert_eq!(find(&bearer, &p), Some(("t.o.k", 1)));
        // The prefix is searched anywhere in the value; the token ends at a non-JWT byte.
        let p = parts("/", &[("x-jwt", "scheme Bearer a.b.c, more")]);
        assert_eq!(find(&[header("x-jwt", "Bearer ")], &p), Some(("a.b.c", 0)));
        let p = parts("/", &[("cookie", "a=1; session=x.y.z")]);
        assert_eq!(
            find(&[Location::Cookie("session".into())], &p),
            Some(("x.y.z", 0))
        );
    }

    #[test]
    fn removal() {
        let mut p = parts(
            "/x?a=1&access_token=t.o.k&b=2",
            &[("authorization", "Bearer a")],
        );
        remove(&Location::Param("access_token".into()), &mut p);
        assert_eq!(p.uri.path_and_query().unwrap().as_str(), "/x?a=1&b=2");
        remove(&header("authorization", "Bearer "), &mut p);
        assert!(p.headers.get("authorization").is_none());
        let mut p = parts("/x?access_token=t", &[]);
        remove(&Location::Param("access_token".into()), &mut p);
        assert_eq!(p.uri.path_and_query().unwrap().as_str(), "/x");
    }
}
