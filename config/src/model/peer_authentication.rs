//! `PeerAuthentication` (security.istio.io): which inbound traffic must be mutual TLS.
//! Follows Istio's `peer_authentication.proto`.

use super::common::{PortKey, WorkloadSelector};
use super::map::Map;
use serde::Deserialize;

/// `PeerAuthentication.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthentication {
    /// Workloads this applies to; absent = the namespace (the mesh in the root namespace).
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    /// Mode for all ports.
    #[serde(default)]
    pub mtls: Option<MutualTls>,
    /// Per workload-port overrides (needs a selector).
    #[serde(default, alias = "port_level_mtls")]
    pub port_level_mtls: Option<Map<PortKey, MutualTls>>,
}

/// `PeerAuthentication.MutualTLS`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MutualTls {
    /// The mode (default UNSET: inherit).
    #[serde(default)]
    pub mode: Option<MtlsMode>,
}

/// `PeerAuthentication.MutualTLS.Mode`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Inherit from the parent scope (PERMISSIVE at the top).
    Unset,
    /// Plaintext only.
    Disable,
    /// Plaintext and mTLS.
    Permissive,
    /// mTLS only.
    Strict,
}
