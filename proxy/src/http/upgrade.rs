//! HTTP/1.1 Upgrade proxying (WebSocket), the way Envoy does it under Istio, which
//! enables `upgrade_configs: websocket` on every HTTP route and nothing else (any other
//! `Upgrade` is refused with 403 `upgrade_failed` by the router, see [`Requested::allowed`]):
//!
//! - an HTTP/1.1 request with `Connection: upgrade` and an `Upgrade` header keeps those two
//!   headers (for this request only) and goes to the chosen endpoint over a new HTTP/1.1
//!   connection of its own (`forward::Transport::Upgrade`), never a pooled one and never
//!   HTTP/2;
//! - route policies apply to the handshake as to any request (fault injection, header
//!   operations, the route timeout until the response head); retries and mirrors do not
//!   (Envoy: "timeouts, retries, rate limits and shadowing are not supported for
//!   WebSocket routes" — the timeout in the sense that it never cuts a tunnel);
//! - a 101 from the upstream is sent downstream with its headers, then bytes are spliced
//!   both ways until both directions have ended, half-closes passed on; any other answer
//!   is relayed as an ordinary response;
//! - `Upgrade: h2c` is not an upgrade to proxy: Envoy's HTTP/1.1 codec strips the h2c
//!   upgrade headers and handles the request as an ordinary one, and so do we.
//!
//! Access log and Istio request metrics: one record per upgrade request, written when the
//! tunnel ends (not when the 101 is sent), with status 101, the tunnel's duration and its
//! byte counts — as Envoy logs an upgraded stream when the stream ends.

use super::completion::RequestDone;
use super::forward::Lease;
use crate::conn_info::ConnInfo;
use crate::flags::Flags;
use crate::pipe::counted::Counted;
use crate::runtime::Live;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::Version;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::io;
use std::sync::Arc;

/// `HTTP2-Settings` (RFC 7540 §3.2.1), sent along with an h2c upgrade.
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// The downstream half of an upgrade request: the upgrade hyper completes once our 101
/// has been written, and the protocol the client asked for.
pub struct Requested {
    on_upgrade: OnUpgrade,
    protocol: HeaderValue,
    /// The downstream connection's place in the drain count, and the connection (its
    /// drain timeout, its slots in the connection caps).
    held: Option<(Live, Arc<ConnInfo>)>,
    /// It came as an HTTP/2 extended CONNECT (RFC 8441): the client is answered `200`
    /// where an HTTP/1.1 client gets the upstream's `101`.
    pub h2: bool,
}

impl std::fmt::Debug for Requested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requested")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// True when a comma-separated header (all its values) lists `token`, ignoring case.
fn lists_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Takes the upgrade out of a downstream request, if it is one to proxy: HTTP/1.1 (hyper
/// only offers upgrades there), `Connection` listing `upgrade` and a non-empty `Upgrade`
/// (Envoy's `Utility::isUpgrade`). An h2c upgrade has its upgrade headers removed and is
/// not one (Envoy: "removing unsupported h2c upgrade headers"); hyper's pending upgrade
/// is dropped with it, so the connection simply carries on as HTTP/1.1.
pub fn detect(parts: &mut Parts) -> Option<Requested> {
    if parts.version == Version::HTTP_2 {
        return detect_extended_connect(parts);
    }
    if parts.version != Version::HTTP_11 {
        return None;
    }
    let protocol = parts.headers.get(header::UPGRADE)?.clone();
    if protocol
        .to_str()
        .is_ok_and(|p| p.trim().eq_ignore_ascii_case("h2c"))
    {
        parts.headers.remove(header::UPGRADE);
        parts.headers.remove(&HTTP2_SETTINGS);
        parts.extensions.remove::<OnUpgrade>();
        return None;
    }
    if protocol.is_empty() || !lists_token(&parts.headers, &header::CONNECTION, "upgrade") {
        // `Upgrade` without `Connection: upgrade` asks for nothing; the header is dropped
        // with the other hop-by-hop headers.
        return None;
    }
    let on_upgrade = parts.extensions.remove::<OnUpgrade>()?;
    Some(Requested {
        on_upgrade,
        protocol,
        held: None,
        h2: false,
    })
}

impl Requested {
    /// Whether the protocol asked for is one we tunnel: `websocket` only, the one upgrade
    /// type Istio configures. Envoy compares the whole `Upgrade` value to the configured
    /// type, ignoring case, so `websocket, foo` is not a WebSocket upgrade either.
    pub fn allowed(&self) -> bool {
        self.protocol
            .to_str()
            .is_ok_and(|p| p.trim().eq_ignore_ascii_case("websocket"))
    }
}

/// `Sec-WebSocket-Key`, which an HTTP/1.1 WebSocket handshake needs (RFC 6455 §4.1) and
/// an HTTP/2 one does not carry (RFC 8441 §5).
static SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
/// The answer to `Sec-WebSocket-Key`, meaningless to an HTTP/2 client.
pub static SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// An HTTP/2 extended CONNECT (RFC 8441: `:method CONNECT` with `:protocol`), turned into
/// the HTTP/1.1 upgrade request the upstream gets, as Envoy converts it: `GET` with
/// `Upgrade: <protocol>` (put on by [`Requested::mark_request`]). A WebSocket request
/// gets the `Sec-WebSocket-Key` an HTTP/1.1 server requires, which HTTP/2 clients do not
/// send; the server's `Sec-WebSocket-Accept` is not passed back.
fn detect_extended_connect(parts: &mut Parts) -> Option<Requested> {
    if parts.method != http::Method::CONNECT {
        return None;
    }
    let protocol = parts.extensions.get::<hyper::ext::Protocol>()?;
    let protocol = HeaderValue::from_str(protocol.as_str()).ok()?;
    let on_upgrade = parts.extensions.remove::<OnUpgrade>()?;
    parts.extensions.remove::<hyper::ext::Protocol>();
    parts.method = http::Method::GET;
    if protocol.as_bytes().eq_ignore_ascii_case(b"websocket")
        && !parts.headers.contains_key(&SEC_WEBSOCKET_KEY)
    {
        use base64::Engine;
        let nonce: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        if let Ok(v) = HeaderValue::from_str(&key) {
            parts.headers.insert(SEC_WEBSOCKET_KEY.clone(), v);
        }
    }
    Some(Requested {
        on_upgrade,
        protocol,
        held: None,
        h2: true,
    })
}

impl Requested {
    /// Keeps the downstream connection counted by `live` and in the connection caps
    /// (`conn`'s slots) while the tunnel lasts, and closes the tunnel when the
    /// connection's kill signal fires (the listener's drain timeout; Envoy resets upgraded
    /// streams when draining ends).
    pub fn hold(&mut self, live: Live, conn: &Arc<ConnInfo>) {
        self.held = Some((live, conn.clone()));
    }

    /// Puts `Connection: upgrade` and the client's `Upgrade` back on the upstream request
    /// once the hop-by-hop headers have been stripped: they are hop-by-hop, but for this
    /// request the proxy takes part in the upgrade on both hops, as Envoy does.
    pub fn mark_request(&self, headers: &mut HeaderMap) {
        mark(headers, self.protocol.clone());
    }

    /// The protocol a 101 switched to: the upstream's `Upgrade` header, or the one asked
    /// for when the upstream left it out (a 101 without it is still a switch to it).
    pub fn switched_to(&self, response: &HeaderMap) -> HeaderValue {
        response
            .get(header::UPGRADE)
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| self.protocol.clone())
    }
}

/// Sets `Connection: upgrade` and `Upgrade: protocol` (on a request going upstream, or on
/// a 101 going downstream after its hop-by-hop headers were stripped).
pub fn mark(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// A 101 on its way downstream: what the tunnel needs once both hops have switched.
pub struct Tunnel {
    /// The downstream request's upgrade (completes once hyper has written our 101).
    pub downstream: Requested,
    /// The upstream response's upgrade (completes once hyper has read its 101).
    pub upstream: OnUpgrade,
    /// The dedicated upstream connection: keeps it counted against `maxConnections` and
    /// in the endpoint's open connections for as long as the tunnel lasts.
    pub lease: Lease,
    /// The request's completion: its endpoint active count and cluster request slot are
    /// held until the tunnel ends, then the access log line and metrics are written.
    pub done: Box<RequestDone>,
}

/// Runs the tunnel on the current worker, detached from the request: the request's
/// response (the 101) must go out before hyper hands over the downstream socket.
pub fn spawn(t: Tunnel) {
    tokio::spawn(run(t));
}

async fn run(t: Tunnel) {
    let Tunnel {
        downstream,
        upstream,
        lease,
        done,
    } = t;
    let (_live, _conn, mut kill) = match downstream.held {
        Some((live, conn)) => {
            let kill = conn.kill.clone();
            (Some(live), Some(conn), Some(kill))
        }
        None => (None, None, None),
    };
    let killed = async move {
        match kill.as_mut() {
            Some(k) => {
                let _ = k.wait_for(|k| *k).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(killed);
    let (down, up) = tokio::join!(downstream.on_upgrade, upstream);
    let mut flags = Flags::NONE;
    let (to_upstream, to_downstream) = match (down, up) {
        (Ok(down), Ok(up)) => {
            let mut down = Counted::new(TokioIo::new(down));
            let mut up = Counted::new(TokioIo::new(up));
            // No timeout here: Envoy's route timeout ends at the 101 and an upgraded stream
            // lives until one of its peers closes it. `copy_bidirectional` passes an EOF on
            // as a write shutdown to the other side and returns once both directions ended.
            let copied = tokio::select! {
                r = tokio::io::copy_bidirectional(&mut down, &mut up) => r,
                _ = &mut killed => {
                    tracing::debug!("upgraded tunnel closed at the drain timeout");
                    Err(io::Error::other("drain timeout"))
                }
            };
            if let Err(e) = copied {
                tracing::debug!(error = %e, "upgraded tunnel ended with an error");
                if down.failed {
                    flags.insert(Flags::DOWNSTREAM_CONNECTION_TERMINATION);
                }
                if up.failed {
                    flags.insert(Flags::UPSTREAM_CONNECTION_TERMINATION);
                }
            }
            (down.read, up.read)
        }
        (Err(e), _) => {
            // The client went away before our 101 was written.
            tracing::debug!(error = %e, "downstream upgrade failed");
            flags.insert(Flags::DOWNSTREAM_CONNECTION_TERMINATION);
            (0, 0)
        }
        (_, Err(e)) => {
            tracing::debug!(error = %e, "upstream upgrade failed");
            flags.insert(Flags::UPSTREAM_CONNECTION_TERMINATION);
            (0, 0)
        }
    };
    // Close the upstream connection (and release its permit) before the log line, as the
    // completion of an ordinary request gives its connection back first.
    drop(lease);
    finish(done, to_upstream, to_downstream, flags);
}

/// The end of an upgrade request: what `RequestDone::complete` does for a response body,
/// but with the tunnel's byte counts (the request body counter only sees the handshake).
pub(crate) fn finish(done: Box<RequestDone>, to_upstream: u64, to_downstream: u64, extra: Flags) {
    let RequestDone {
        shared,
        record,
        started,
        tap,
        active,
        request_slot,
        status,
        mut flags,
        grpc_status,
        labels,
        span,
        log_filter,
        ..
    } = *done;
    drop(active);
    drop(request_slot);
    flags.insert(extra);
    let received = tap.as_ref().map_or(0, |t| t.received()) + to_upstream;
    super::completion::finish_span(&shared, span, (status, flags), (received, to_downstream));
    let duration = started.elapsed();
    if let Some(l) = &labels {
        let finished = crate::telemetry::istio::Finished {
            status,
            flags,
            grpc_status,
            request_bytes: received,
            response_bytes: to_downstream,
            duration,
        };
        shared.metrics.record_request(l, finished);
    }
    if let Some(mut rec) = record {
        rec.bytes_sent = to_downstream;
        rec.bytes_received = received;
        rec.duration = duration;
        rec.flags = flags;
        crate::telemetry::log_filter::log(&shared.access_log, log_filter.as_deref(), &rec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(version: Version, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().version(version).uri("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (mut p, ()) = b.body(()).map(|r| r.into_parts()).expect("valid request");
        // What hyper's server puts in an upgrade request (here one that never completes).
        p.extensions
            .insert(hyper::upgrade::on(http::Request::new(())));
        p
    }

    #[test]
    fn websocket_and_any_token_are_upgrades() {
        let mut p = parts(
            Version::HTTP_11,
            &[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "websocket"),
            ],
        );
        let r = detect(&mut p).expect("an upgrade");
        assert_eq!(r.protocol, "websocket");
        let mut p = parts(
            Version::HTTP_11,
            &[("connection", "upgrade"), ("upgrade", "custom/1")],
        );
        assert!(detect(&mut p).is_some());
    }

    #[test]
    fn not_upgrades() {
        // No Connection token, HTTP/1.0, or an empty Upgrade.
        let mut p = parts(Version::HTTP_11, &[("upgrade", "websocket")]);
        assert!(detect(&mut p).is_none());
        let mut p = parts(
            Version::HTTP_10,
            &[("connection", "upgrade"), ("upgrade", "websocket")],
        );
        assert!(detect(&mut p).is_none());
        let mut p = parts(
            Version::HTTP_11,
            &[("connection", "upgrade"), ("upgrade", "")],
        );
        assert!(detect(&mut p).is_none());
    }

    #[test]
    fn h2c_is_stripped() {
        let mut p = parts(
            Version::HTTP_11,
            &[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "h2c"),
                ("http2-settings", "AAMAAABkAAQAAP__"),
            ],
        );
        assert!(detect(&mut p).is_none());
        assert!(!p.headers.contains_key(header::UPGRADE));
        assert!(!p.headers.contains_key(&HTTP2_SETTINGS));
        assert!(p.extensions.get::<OnUpgrade>().is_none());
    }

    #[test]
    fn marks_and_switched_protocol() {
        let mut p = parts(
            Version::HTTP_11,
            &[("connection", "upgrade"), ("upgrade", "websocket")],
        );
        let r = detect(&mut p).expect("an upgrade");
        let mut h = HeaderMap::new();
        r.mark_request(&mut h);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(r.switched_to(&HeaderMap::new()), "websocket");
        let mut resp = HeaderMap::new();
        resp.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert_eq!(r.switched_to(&resp), "WebSocket");
    }
}
