//! The immutable, pre-indexed configuration the data path reads: one `Arc<Snapshot>` is
//! loaded per request; a reload builds a new one and swaps it in whole.

use super::cluster::{Cluster, ClusterKey};
use super::listener::Listener;
use super::proxy_settings::ProxySettings;
use super::registry::Registry;
use super::route_table::RouteTable;
use crate::diag::{Diagnostics, Origin};
use crate::model::{Kind, Resource};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

/// A loaded document as the running proxy keeps it: where it came from and its text.
/// The typed form is dropped after compiling: with 1,000 services it held ~15 MB that
/// nothing on the data path reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    /// File and document index.
    pub origin: Origin,
    /// The kind.
    pub kind: Kind,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The document as compact JSON text.
    pub raw: Arc<str>,
}

impl From<Resource> for Source {
    /// Takes the document's parts (a load that owns its documents moves their names and
    /// texts instead of copying them).
    fn from(r: Resource) -> Self {
        Source {
            origin: r.origin,
            kind: r.kind,
            namespace: r.namespace,
            name: r.name,
            raw: r.raw,
        }
    }
}

impl From<&Resource> for Source {
    fn from(r: &Resource) -> Self {
        Source {
            origin: r.origin.clone(),
            kind: r.kind,
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            raw: r.raw.clone(),
        }
    }
}

/// Index of a cluster in [`Snapshot::clusters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub u32);

/// A compiled configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// Content hash of the resources (hex).
    pub version: String,
    /// When it was compiled.
    pub loaded_at: SystemTime,
    /// This proxy.
    pub proxy: ProxySettings,
    /// Listeners to bind.
    pub listeners: Vec<Listener>,
    /// Route tables referenced by listeners.
    pub route_tables: Vec<RouteTable>,
    /// TCP/TLS route tables referenced by TCP listeners ([`Listener::tcp_routes`]).
    pub tcp_route_tables: Vec<super::tcp_routes::TcpRouteTable>,
    /// The sidecar's TCP route table (VirtualService `tls`/`tcp` rules bound to `mesh`),
    /// when the proxy has an outbound listener.
    pub mesh_tcp_routes: Option<usize>,
    /// Upstream clusters (shared with the next snapshot when a reload leaves them
    /// unchanged, as are the index and the registry).
    pub clusters: Arc<[Cluster]>,
    /// Cluster lookup by identity.
    pub cluster_index: Arc<HashMap<ClusterKey, ClusterId>>,
    /// Services.
    pub registry: Arc<Registry>,
    /// The documents as loaded (for `/config_dump`).
    pub resources: Vec<Source>,
    /// Warnings from validation and compilation.
    pub warnings: Diagnostics,
    /// Inbound mTLS modes for this workload (PeerAuthentication).
    pub peer_authn: super::peer_auth::PeerAuthn,
    /// AuthorizationPolicy for this workload's inbound traffic.
    pub authz: super::authz::Authz,
    /// Tracing, access logging and metrics of this workload (Telemetry).
    pub telemetry: super::telemetry::TelemetryPolicy,
    /// RequestAuthentication's JWT rules for this workload (`None`: no rule applies).
    pub jwt_authn: Option<super::jwt::JwtAuthn>,
    /// RateLimitPolicy rules for this workload's requests.
    pub rate_limits: super::rate_limit::RateLimits,
    /// Gateway API route status per parent (empty without Gateway API documents).
    pub gateway_api: Vec<crate::gateway_api::ParentStatus>,
}

impl Snapshot {
    /// The cluster with this id.
    pub fn cluster(&self, id: ClusterId) -> &Cluster {
        &self.clusters[id.0 as usize]
    }

    /// The cluster with this identity.
    pub fn find_cluster(&self, key: &ClusterKey) -> Option<ClusterId> {
        self.cluster_index.get(key).copied()
    }

    /// The TCP route table of the listener named `listener`, if it is a TCP listener.
    pub fn tcp_routes(&self, listener: &str) -> Option<&super::tcp_routes::TcpRouteTable> {
        let l = self.listeners.iter().find(|l| l.name == listener)?;
        self.tcp_route_tables.get(l.tcp_routes?)
    }

    /// The route table of the mesh (outbound) listeners, if any.
    pub fn mesh_routes(&self) -> Option<&RouteTable> {
        self.route_tables.iter().find(|t| t.name == "mesh")
    }

    /// The documents' texts, for a reload to share those of its unchanged documents.
    pub fn texts(&self) -> HashSet<Arc<str>> {
        self.resources.iter().map(|r| r.raw.clone()).collect()
    }

    /// Number of resources per kind, in [`crate::model::Kind::ALL`] order.
    pub fn counts(&self) -> Vec<(crate::model::Kind, usize)> {
        crate::model::Kind::ALL
            .iter()
            .map(|k| (*k, self.resources.iter().filter(|r| r.kind == *k).count()))
            .collect()
    }
}
