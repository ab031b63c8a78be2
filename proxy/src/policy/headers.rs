//! Header work on the forwarding path: the route's header operations, hop-by-hop header
//! removal (RFC 9110 §7.6.1), and the forwarding headers Envoy adds.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use meshproxy_config::compile::route::HeaderOps;
use std::net::IpAddr;

/// `x-forwarded-for`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-client-cert` (Envoy): the mTLS peer, as the inbound sidecar saw it.
pub static X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
/// `x-forwarded-proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `proxy-connection` (non-standard, hop-by-hop in practice).
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// `keep-alive`.
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Applies `set` (overwrite), `add` (append) and `remove`.
pub fn apply(ops: &HeaderOps, headers: &mut HeaderMap) {
    for name in &ops.remove {
        headers.remove(name);
    }
    for (name, value) in &ops.set {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in &ops.add {
        headers.append(name.clone(), value.clone());
    }
}

/// Removes hop-by-hop headers: those listed in `Connection` and the fixed set. `TE` is
/// kept only as `trailers` (what gRPC needs and HTTP/2 allows).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().to_ascii_lowercase().as_bytes()).ok())
            .collect();
        for name in listed {
            if name != header::TE {
                headers.remove(&name);
            }
        }
        headers.remove(header::CONNECTION);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::UPGRADE);
    if let Some(te) = headers.get(header::TE) {
        let trailers = te
            .to_str()
            .map(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
            .unwrap_or(false);
        if trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        } else {
            headers.remove(header::TE);
        }
    }
}

/// The text of a client address as `x-forwarded-for` carries it. Made once per
/// connection: every request on it appends the same value, and formatting an address
/// per request would cost an allocation and a formatter run on the hot path.
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    // An address formats to ASCII digits, dots, colons and hex only: always valid.
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// The forwarding headers, as Envoy sets them with `use_remote_address` (Istio: gateways)
/// or without (sidecars): with it, the client address (`client`, from [`ip_value`]) is
/// appended to `x-forwarded-for` and `x-forwarded-proto` is the connection's scheme;
/// without, `x-forwarded-for` passes through untouched and `x-forwarded-proto` is set only
/// when absent (Envoy's `ConnectionManagerUtility::mutateRequestHeaders`). The request's
/// `x-request-id` is settled before routing (`http::sanitize`).
pub fn forwarding(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    scheme: &'static str,
    use_remote_address: bool,
) {
    if use_remote_address {
        append_client(headers, client);
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    } else if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    }
}

/// Appends `client` to `x-forwarded-for`.
fn append_client(headers: &mut HeaderMap, client: &HeaderValue) {
    let appended = match headers.get(&X_FORWARDED_FOR) {
        Some(existing) if !existing.is_empty() => {
            let mut v = Vec::with_capacity(existing.len() + 2 + client.len());
            v.extend_from_slice(existing.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(client.as_bytes());
            HeaderValue::from_bytes(&v).ok()
        }
        _ => Some(client.clone()),
    };
    if let Some(v) = appended {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
}

/// A random (version 4) UUID, as Envoy generates for `x-request-id`.
pub fn request_id() -> HeaderValue {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut j = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[j] = b'-';
            j += 1;
        }
        out[j] = HEX[(byte >> 4) as usize];
        out[j + 1] = HEX[(byte & 0xf) as usize];
        j += 2;
    }
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static(
        "00000000-0000-4000-8000-000000000000",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("gzip, trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-private").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get(header::UPGRADE).is_none());
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        assert_eq!(h.get("x-kept").unwrap(), "1");
    }

    #[test]
    fn forwarding_headers_at_a_gateway() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        forwarding(&mut h, &ip_value("10.0.0.1".parse().unwrap()), "http", true);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "1.2.3.4, 10.0.0.1");
        assert_eq!(
            h.get("x-forwarded-proto").unwrap(),
            "http",
            "the connection's"
        );
        let mut h2 = HeaderMap::new();
        forwarding(&mut h2, &ip_value("::1".parse().unwrap()), "https", true);
        assert_eq!(h2.get("x-forwarded-for").unwrap(), "::1");
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id.to_str().unwrap()[14..15], "4", "a version 4 UUID");
    }

    #[test]
    fn sidecars_pass_forwarding_headers_through() {
        let client = ip_value("10.0.0.1".parse().unwrap());
        let mut h = HeaderMap::new();
        forwarding(&mut h, &client, "http", false);
        assert!(h.get("x-forwarded-for").is_none(), "nothing appended");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        forwarding(&mut h, &client, "http", false);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "1.2.3.4");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
    }

    #[test]
    fn header_ops() {
        let mut h = HeaderMap::new();
        h.insert("a", HeaderValue::from_static("old"));
        h.insert("gone", HeaderValue::from_static("x"));
        let ops = HeaderOps {
            set: vec![(
                HeaderName::from_static("a"),
                HeaderValue::from_static("new"),
            )],
            add: vec![(HeaderName::from_static("b"), HeaderValue::from_static("1"))],
            remove: vec![HeaderName::from_static("gone")],
        };
        apply(&ops, &mut h);
        assert_eq!(h.get("a").unwrap(), "new");
        assert_eq!(h.get("b").unwrap(), "1");
        assert!(h.get("gone").is_none());
    }
}
