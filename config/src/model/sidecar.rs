//! `Sidecar` (networking.istio.io): what a workload's sidecar sees and listens for.
//! Follows Istio's `networking/v1alpha3/sidecar.proto`; how a Sidecar is chosen and what
//! it scopes is in `compile::sidecar_scope` and docs/config.md ("Sidecar").

use super::common::NetworkingWorkloadSelector;
use super::destination_rule::ConnectionPoolSettings;
use super::gateway::ServerTlsSettings;
use super::proxy::OutboundMode;
use super::virtual_service::Destination;
use serde::Deserialize;

/// `Sidecar.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sidecar {
    /// Workloads this applies to; absent = every workload of the namespace.
    #[serde(default, alias = "workload_selector")]
    pub workload_selector: Option<NetworkingWorkloadSelector>,
    /// Inbound listeners.
    #[serde(default)]
    pub ingress: Vec<IngressListener>,
    /// What the workload's outbound traffic may reach.
    #[serde(default)]
    pub egress: Vec<EgressListener>,
    /// Inbound connection pool for every ingress port.
    #[serde(default, alias = "inbound_connection_pool")]
    pub inbound_connection_pool: Option<ConnectionPoolSettings>,
    /// This workload's outbound traffic policy (overrides the mesh's).
    #[serde(default, alias = "outbound_traffic_policy")]
    pub outbound_traffic_policy: Option<SidecarOutboundPolicy>,
}

/// `SidecarPort` (`Port` in older protos).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarPort {
    /// Port number (0: a Unix domain socket listener).
    #[serde(default)]
    pub number: i64,
    /// Protocol (`HTTP`, `TCP`, ...).
    #[serde(default)]
    pub protocol: String,
    /// Port name.
    #[serde(default)]
    pub name: String,
    /// Not allowed in a Sidecar (Istio validation).
    #[serde(default, alias = "target_port")]
    pub target_port: Option<i64>,
}

/// `IstioIngressListener`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressListener {
    /// The workload port traffic arrives on.
    #[serde(default)]
    pub port: Option<SidecarPort>,
    /// Address to bind (IP only).
    #[serde(default)]
    pub bind: String,
    /// `DEFAULT`, `IPTABLES` or `NONE`.
    #[serde(default, alias = "capture_mode")]
    pub capture_mode: Option<String>,
    /// Where the traffic goes: `127.0.0.1:PORT`, `0.0.0.0:PORT`, `[::1]:PORT`, `[::]:PORT`
    /// or `unix:///path`.
    #[serde(default, alias = "default_endpoint")]
    pub default_endpoint: String,
    /// TLS termination of the port (SIMPLE or MUTUAL).
    #[serde(default)]
    pub tls: Option<ServerTlsSettings>,
    /// Connection pool of the port.
    #[serde(default, alias = "connection_pool")]
    pub connection_pool: Option<ConnectionPoolSettings>,
}

/// `IstioEgressListener`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressListener {
    /// Only services with this port are imported through this listener.
    #[serde(default)]
    pub port: Option<SidecarPort>,
    /// Address to bind.
    #[serde(default)]
    pub bind: String,
    /// `DEFAULT`, `IPTABLES` or `NONE`.
    #[serde(default, alias = "capture_mode")]
    pub capture_mode: Option<String>,
    /// `namespace/dnsName` entries: what is imported (`~` first: excluded).
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `OutboundTrafficPolicy` of a Sidecar.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarOutboundPolicy {
    /// Mode; Istio's zero value is REGISTRY_ONLY (an explicit `{}` means REGISTRY_ONLY).
    #[serde(default)]
    pub mode: Option<OutboundMode>,
    /// Where ALLOW_ANY traffic goes instead of its original destination.
    #[serde(default, alias = "egress_proxy")]
    pub egress_proxy: Option<Destination>,
}
