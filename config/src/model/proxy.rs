//! `Proxy` (meshproxy.io/v1alpha1): what this proxy is — its workload identity, admin
//! address, listeners, mesh certificates and outbound policy. At most one per config; when
//! absent the defaults of [`Proxy::default_for_local`] apply (SPEC §2).

use serde::Deserialize;
use std::collections::BTreeMap;

/// `Proxy.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Proxy {
    /// Admin server.
    #[serde(default)]
    pub admin: Option<Admin>,
    /// The workload this proxy stands for.
    #[serde(default)]
    pub workload: Option<Workload>,
    /// Listeners; absent = one outbound HTTP listener on 127.0.0.1:15001.
    #[serde(default)]
    pub listeners: Option<Vec<Listener>>,
    /// Mesh certificates (needed for ISTIO_MUTUAL and inbound mTLS).
    #[serde(default)]
    pub identity: Option<Identity>,
    /// What to do with hosts that are not in the registry.
    #[serde(default, alias = "outbound_traffic_policy")]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// Address Gateway servers bind on (default `0.0.0.0`).
    #[serde(default, alias = "gateway_address")]
    pub gateway_address: Option<String>,
    /// SPIFFE trust domain (default `cluster.local`).
    #[serde(default, alias = "trust_domain")]
    pub trust_domain: Option<String>,
    /// Namespace whose policies are mesh-wide (default `istio-system`).
    #[serde(default, alias = "root_namespace")]
    pub root_namespace: Option<String>,
}

/// `Proxy.spec.admin`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Admin {
    /// `ip:port` of the admin server (default `127.0.0.1:15000`).
    #[serde(default)]
    pub address: Option<String>,
}

/// `Proxy.spec.workload`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// Workload labels (matched by `sourceLabels`, selectors, gateway selectors).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Service account (the SPIFFE identity's `sa`).
    #[serde(default, alias = "service_account")]
    pub service_account: Option<String>,
}

/// `Proxy.spec.listeners[]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    /// Unique listener name.
    #[serde(default)]
    pub name: String,
    /// `ip:port` to bind.
    #[serde(default)]
    pub address: String,
    /// Traffic direction.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// Protocol handling (default HTTP).
    #[serde(default)]
    pub protocol: Option<ListenerProtocol>,
    /// Local application address (INBOUND only).
    #[serde(default, alias = "forward_to")]
    pub forward_to: Option<String>,
}

/// Listener direction.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    /// From the local app to the mesh: routes by Host/:authority or original destination.
    Outbound,
    /// From the mesh to the local app: mTLS termination, authorization, forwarding.
    Inbound,
}

/// Listener protocol handling.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ListenerProtocol {
    /// HTTP/1.1 and h2c, detected.
    Http,
    /// Opaque TCP.
    Tcp,
    /// Sniff TLS / HTTP / opaque.
    Auto,
}

/// `Proxy.spec.identity`: file paths, relative to the config file's directory.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    /// Certificate chain (leaf first).
    #[serde(default)]
    pub certificate: String,
    /// Private key.
    #[serde(default, alias = "private_key")]
    pub private_key: String,
    /// Mesh root CA bundle.
    #[serde(default, alias = "ca_certificates")]
    pub ca_certificates: String,
}

/// `Proxy.spec.outboundTrafficPolicy`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    /// Mode (default REGISTRY_ONLY, the SPEC's documented default; Istio's MeshConfig
    /// defaults to ALLOW_ANY).
    #[serde(default)]
    pub mode: Option<OutboundMode>,
}

/// `outboundTrafficPolicy.mode`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundMode {
    /// Only registry hosts are reachable.
    RegistryOnly,
    /// Unknown hosts are passed through.
    AllowAny,
}
