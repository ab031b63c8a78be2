//! Responses the proxy makes itself (no route, no healthy upstream, timeouts, faults,
//! redirects, direct responses), with Envoy's bodies and, for gRPC callers, Envoy's
//! mapping of the HTTP status onto `grpc-status`.

use crate::body::ResponseBody;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

/// `x-envoy-overloaded: true`, as Envoy sets it on a circuit-breaker overflow (`UO`) and
/// on the overload manager's refusals (docs/contract.md §3).
pub static OVERLOADED: http::HeaderName = http::HeaderName::from_static("x-envoy-overloaded");

/// True when the request is gRPC (`content-type: application/grpc...`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Envoy's `Grpc::Utility::httpToGrpcStatus`.
pub fn http_to_grpc_status(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// A trailers-only gRPC response: HTTP 200 with `grpc-status: code` and the message.
pub fn grpc(code: u32, message: &str) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::empty());
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(message) {
        h.insert("grpc-message", v);
    }
    r
}

/// A local reply: plain text, or a trailers-only gRPC response for gRPC callers.
pub fn build(status: u16, body: &str, grpc: bool) -> Response<ResponseBody> {
    if grpc {
        return self::grpc(http_to_grpc_status(status), body);
    }
    let mut r = Response::new(ResponseBody::full(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    if !body.is_empty() {
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_mapping() {
        let r = build(503, "no healthy upstream", true);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "14");
        let r = build(404, "", false);
        assert_eq!(r.status(), 404);
        assert!(r.headers().get(CONTENT_TYPE).is_none());
    }
}
