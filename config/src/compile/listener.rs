//! Listeners: the `Proxy` document's OUTBOUND/INBOUND listeners, and one listener per
//! Gateway bind address and port (servers of all selected Gateways on that port merged).

use crate::model::gateway::{ServerTlsMode, TlsProtocol};
use crate::model::proxy::ListenerProtocol;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What a listener does with a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerRole {
    /// App → mesh: route by Host/:authority (or the original destination).
    Outbound,
    /// Mesh → app: mTLS termination, authorization, forward to `forward_to`.
    Inbound {
        /// The local application.
        forward_to: SocketAddr,
    },
    /// Edge: the servers of the selected Gateways on this port.
    Gateway {
        /// Servers, in load order.
        servers: Vec<GatewayServer>,
    },
}

/// A listener to bind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// Name (`outbound`, `inbound`, `gateway-0.0.0.0:8080`...).
    pub name: String,
    /// Bind address.
    pub address: SocketAddr,
    /// Role.
    pub role: ListenerRole,
    /// Protocol handling.
    pub protocol: ListenerProtocol,
    /// Route table index (outbound and gateway listeners).
    pub route_table: Option<usize>,
    /// TCP route table index ([`super::Snapshot::tcp_route_tables`]) of TCP listeners:
    /// `protocol: TCP` OUTBOUND listeners and Gateway ports whose servers are all TCP/TLS.
    pub tcp_routes: Option<usize>,
}

/// One `Gateway` server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayServer {
    /// `namespace/name` of the Gateway.
    pub gateway: String,
    /// Server name.
    pub name: String,
    /// Port protocol (upper case).
    pub protocol: String,
    /// Host entries (`ns/host` form kept).
    pub hosts: Vec<String>,
    /// Answer plain HTTP with a redirect to https.
    pub https_redirect: bool,
    /// TLS termination or passthrough.
    pub tls: Option<ServerTls>,
}

/// Server TLS with file paths resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    /// Mode.
    pub mode: ServerTlsMode,
    /// Certificate/key pairs (one, or RSA + ECDSA).
    pub certificates: Vec<(PathBuf, PathBuf)>,
    /// Client CA bundle (MUTUAL).
    pub ca_certificates: Option<PathBuf>,
    /// Client SANs to accept.
    pub subject_alt_names: Vec<String>,
    /// Minimum protocol version.
    pub min_version: Option<TlsProtocol>,
    /// Maximum protocol version.
    pub max_version: Option<TlsProtocol>,
    /// ALPN protocols.
    pub alpn: Vec<String>,
}
