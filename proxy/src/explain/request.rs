//! The request `explain` and `test` are asked about, in curl's vocabulary: a URL, a method,
//! header lines; and which listener it arrives on.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// A request as the user writes it (the `request` of a test case, or the command line).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// `http://host[:port]/path?query` (`https://` too).
    pub url: String,
    /// The method (`GET` when unset).
    #[serde(default)]
    pub method: Option<String>,
    /// Request headers. A `host` header overrides the URL's authority, as with curl.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The listener it arrives on, by name (default: the first OUTBOUND HTTP listener).
    #[serde(default)]
    pub listener: Option<String>,
    /// Or the Gateway (`name` or `namespace/name`) whose listener it arrives on.
    #[serde(default)]
    pub gateway: Option<String>,
    /// On an INBOUND listener: the peer's mTLS identity (`spiffe://...`, or without the
    /// scheme); none means plaintext.
    #[serde(default)]
    pub principal: Option<String>,
    /// The sender's IP address (default 127.0.0.1): the peer of an INBOUND or Gateway
    /// listener, and what decides whether a sender is internal.
    #[serde(default, rename = "sourceAddress", alias = "source_address")]
    pub source_address: Option<String>,
}

/// A request parsed and checked: what the data path would have after hyper parsed it.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// Method.
    pub method: Method,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// `:authority` / `Host`.
    pub authority: String,
    /// Path without query (`/` when the URL has none).
    pub path: String,
    /// Query without `?`.
    pub query: Option<String>,
    /// Headers, `host` included (an HTTP/1.1 client always sends it).
    pub headers: HeaderMap,
    /// The port in the URL: where the client connects (a `host` header may name another).
    pub url_port: Option<u16>,
    /// The sender's address (`sourceAddress`, default 127.0.0.1).
    pub peer: IpAddr,
}

impl Parsed {
    /// The path with its query, as the request line carries it.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }
}

/// Splits a curl `-H 'name: value'` line.
pub fn header_line(line: &str) -> Result<(String, String), String> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| format!("header {line:?}: expected 'name: value'"))?;
    Ok((name.trim().to_string(), value.trim().to_string()))
}

/// Parses and checks a request: an absolute `http`/`https` URL, a valid method, valid
/// header names and values.
pub fn parse(spec: &RequestSpec) -> Result<Parsed, String> {
    let url = &spec.url;
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("url {url:?}: {e} (expected http://host[:port]/path)"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => "http",
        Some("https") => "https",
        _ => return Err(format!("url {url:?}: the scheme must be http or https")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("url {url:?}: no host"))?
        .as_str()
        .to_string();
    let method = match &spec.method {
        Some(m) => Method::from_bytes(m.as_bytes())
            .map_err(|_| format!("method {m:?} is not a valid token"))?,
        None => Method::GET,
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &spec.headers {
        let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("header name {k:?} is not valid"))?;
        let value = HeaderValue::from_str(v)
            .map_err(|_| format!("header {k}: value {v:?} is not valid"))?;
        headers.append(name, value);
    }
    let authority = match headers.get(http::header::HOST) {
        Some(h) => h
            .to_str()
            .map_err(|_| "the host header is not text".to_string())?
            .to_string(),
        None => {
            let v =
                HeaderValue::from_str(&authority).map_err(|_| format!("url {url:?}: bad host"))?;
            headers.insert(http::header::HOST, v);
            authority
        }
    };
    Ok(Parsed {
        method,
        scheme,
        authority,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        url_port: uri.port_u16(),
        peer: match spec.source_address.as_deref() {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(a) => a
                .parse()
                .map_err(|_| format!("source address {a:?} is not an IP address"))?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_method_headers() {
        let mut spec = RequestSpec {
            url: "http://reviews:9080/r?x=1".into(),
            method: Some("POST".into()),
            ..Default::default()
        };
        spec.headers.insert("End-User".into(), "jason".into());
        let p = parse(&spec).unwrap();
        assert_eq!(p.method, Method::POST);
        assert_eq!(p.authority, "reviews:9080");
        assert_eq!((p.path.as_str(), p.query.as_deref()), ("/r", Some("x=1")));
        assert_eq!(p.headers["end-user"], "jason");
        assert_eq!(p.headers["host"], "reviews:9080");
    }

    #[test]
    fn host_header_overrides_the_url() {
        let mut spec = RequestSpec {
            url: "http://127.0.0.1:15001/".into(),
            ..Default::default()
        };
        spec.headers.insert("host".into(), "ratings".into());
        assert_eq!(parse(&spec).unwrap().authority, "ratings");
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let spec = |url: &str| RequestSpec {
            url: url.into(),
            ..Default::default()
        };
        assert!(parse(&spec("/relative")).unwrap_err().contains("scheme"));
        assert!(parse(&spec("ftp://x/")).unwrap_err().contains("scheme"));
        let mut bad_method = spec("http://a/");
        bad_method.method = Some("GE T".into());
        assert!(parse(&bad_method).unwrap_err().contains("method"));
        assert!(header_line("no colon").is_err());
        assert_eq!(
            header_line("end-user:  jason ").unwrap(),
            ("end-user".to_string(), "jason".to_string())
        );
    }
}
