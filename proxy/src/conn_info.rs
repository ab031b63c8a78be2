//! What the proxy knows about a downstream connection, made once at accept and shared by
//! every request on it. It sits below the HTTP and TCP data paths and the server that
//! accepts connections, which all read it.

use http::HeaderValue;
use std::net::SocketAddr;
use std::sync::Arc;

/// A downstream connection: where it came from and arrived, and who the peer proved to be.
#[derive(Debug)]
pub struct ConnInfo {
    /// Listener name.
    pub listener: Arc<str>,
    /// Local address the connection arrived on.
    pub local: SocketAddr,
    /// Client address.
    pub peer: SocketAddr,
    /// The client address's text ([`crate::policy::headers::ip_value`]), made once.
    pub peer_ip: HeaderValue,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Where the client meant to connect, when the connection was intercepted.
    pub original_dst: Option<SocketAddr>,
    /// Fires at the listener's drain timeout: what outlives hyper's connection (an
    /// upgraded tunnel) closes then.
    pub kill: tokio::sync::watch::Receiver<bool>,
    /// The peer's SPIFFE ID, when it proved one over mTLS.
    pub peer_identity: Option<Arc<str>>,
    /// The peer's metric labels (its principal), when it proved an identity.
    pub peer_labels: Option<Arc<crate::telemetry::labels::Peer>>,
    /// `x-forwarded-client-cert` for the app, when the peer came over mTLS.
    pub xfcc: Option<Arc<str>>,
    /// The connection's places in the connection caps (its listener's and the process's),
    /// given back when the last holder of this `ConnInfo` lets go: the connection, or the
    /// tunnel an upgrade turned it into, which still holds the descriptor (Envoy counts an
    /// upgraded connection as a downstream connection until it closes).
    pub slots: Option<Slots>,
}

/// A connection's places in the connection caps, of whatever types the server counts
/// them with (this tier cannot name them), held until dropped.
pub struct Slots(#[allow(dead_code)] Box<dyn std::any::Any + Send + Sync>);

impl Slots {
    /// Holds `slots` until dropped.
    pub fn new(slots: impl std::any::Any + Send + Sync) -> Self {
        Slots(Box::new(slots))
    }
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slots")
    }
}

impl ConnInfo {
    /// What AuthorizationPolicy sees of this connection (no HTTP attributes): the peer's
    /// address and proved identity, and the destination — the intercepted original one,
    /// else this listener's address with `port` (the workload port it forwards to).
    pub fn authz_request(&self, port: u16) -> meshproxy_config::compile::authz::AuthzRequest<'_> {
        meshproxy_config::compile::authz::AuthzRequest {
            source_ip: self.peer.ip(),
            // Istio: numTrustedProxies defaults to 0, so remote.ip is the peer.
            remote_ip: self.peer.ip(),
            principal: self
                .peer_identity
                .as_deref()
                .map(|p| p.strip_prefix("spiffe://").unwrap_or(p)),
            destination_ip: self.original_dst.unwrap_or(self.local).ip(),
            destination_port: self.original_dst.map(|d| d.port()).unwrap_or(port),
            sni: None,
            http: None,
            jwt: None,
        }
    }
}
