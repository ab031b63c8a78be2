//! The authentication step (RequestAuthentication) of INBOUND and Gateway listeners, and
//! the Gateway's authorization step: Envoy runs jwt_authn, then RBAC, then the router
//! (Istio programs both filters on sidecar inbound and gateway HTTP chains; a gateway's
//! route is chosen after them). With no rule for this workload it costs one branch.

use super::exchange::Exchange;
use crate::authn::{stats, Verified};
use crate::body::ResponseBody;
use crate::flags::Flags;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{Method, Response};
use std::time::{SystemTime, UNIX_EPOCH};

/// Envoy bounds the realm's URL (`filter.cc`).
const MAX_REALM: usize = 256;

/// Istio sets `bypass_cors_preflight`: an `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method` is not authenticated.
fn cors_preflight(parts: &Parts) -> bool {
    parts.method == Method::OPTIONS
        && parts.headers.contains_key(http::header::ORIGIN)
        && parts
            .headers
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Authenticates the request: `Some` is the local reply refusing it; otherwise `jwt` is
/// its verified token (`None` without one, or with no rule).
pub(super) fn authenticate(
    x: &mut Exchange,
    parts: &mut Parts,
    jwt: &mut Option<Verified>,
) -> Option<Response<ResponseBody>> {
    if x.active.authn.is_none() || cors_preflight(parts) {
        return None;
    }
    let active = x.active.clone();
    let (Some(cfg), Some(authn)) = (&active.snapshot.jwt_authn, &active.authn) else {
        return None;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match authn.authenticate(cfg, parts, now) {
        Ok(Some(v)) => {
            stats::success();
            if let Some(r) = x.record.as_mut() {
                r.request_principal = Some(v.principal.clone());
            }
            *jwt = Some(v);
            None
        }
        Ok(None) => None,
        Err(reason) => {
            stats::failed(reason);
            tracing::debug!(reason = reason.message(), peer = %x.conn.peer, "JWT refused");
            let mut resp = x.reply(
                reason.status(),
                Flags::NONE,
                reason.details(),
                reason.message(),
            );
            if let Some(v) = www_authenticate(x.conn.scheme, parts) {
                resp.headers_mut().insert(WWW_AUTHENTICATE, v);
            }
            Some(resp)
        }
    }
}

/// Envoy: `Bearer realm="<scheme>://<host><path>", error="invalid_token"` (the path with
/// its query, the URL cut at 256 bytes).
fn www_authenticate(scheme: &str, parts: &Parts) -> Option<HeaderValue> {
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| parts.headers.get(http::header::HOST)?.to_str().ok())
        .unwrap_or("");
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut url = format!("{scheme}://{host}{path}");
    if url.len() > MAX_REALM {
        let mut end = MAX_REALM;
        while !url.is_char_boundary(end) {
            end -= 1;
        }
        url.truncate(end);
    }
    let url = url.replace('"', "%22");
    HeaderValue::from_str(&format!("Bearer realm=\"{url}\", error=\"invalid_token\"")).ok()
}

/// Gateway listeners: authentication, then AuthorizationPolicy (on the listener's port),
/// before the route is chosen; `Some` ends the request.
pub(super) fn gateway(
    x: &mut Exchange,
    parts: &mut Parts,
    authority: &str,
) -> Option<Response<ResponseBody>> {
    let mut jwt = None;
    if let Some(resp) = authenticate(x, parts, &mut jwt) {
        return Some(resp);
    }
    let port = x.conn.local.port();
    super::inbound::authorize(x, parts, authority, port, jwt.as_ref().map(|v| &v.claims))
}
