//! The Kubernetes Gateway API kinds (gateway.networking.k8s.io): `Gateway` and
//! `ReferenceGrant` here, the route kinds in [`routes`]. Field names and defaults follow
//! the API's Go types (`apis/v1/*_types.go` of kubernetes-sigs/gateway-api); how they
//! become listeners and routes is in `crate::gateway_api` and docs/config.md
//! ("Kubernetes Gateway API").

pub mod routes;

use super::map::Map;
use serde::Deserialize;

pub use routes::{GrpcRoute, HttpRoute, TcpRoute, TlsRoute};

/// The API group of every kind of this module.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// `Gateway.spec` (Gateway API, not Istio's `Gateway`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeGateway {
    /// The GatewayClass; recorded, not required to exist (Istio's classes are implied).
    #[serde(default)]
    pub gateway_class_name: String,
    /// The listeners (1 to 64, unique names).
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Requested addresses: accepted and not used (the proxy's own address serves).
    #[serde(default)]
    pub addresses: Vec<serde_yaml::Value>,
    /// Infrastructure labels and annotations: accepted and not used.
    #[serde(default)]
    pub infrastructure: Option<serde_yaml::Value>,
    /// Gateway-wide TLS settings (backend TLS, frontend validation): accepted, not used.
    #[serde(default)]
    pub tls: Option<serde_yaml::Value>,
    /// ListenerSets allowed to attach (experimental): accepted, not used.
    #[serde(default)]
    pub allowed_listeners: Option<serde_yaml::Value>,
}

/// A Gateway `Listener`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    /// Unique name within the Gateway; a route's `parentRefs[].sectionName` names it.
    #[serde(default)]
    pub name: String,
    /// Host (HTTP) or SNI (TLS/HTTPS) this listener accepts; absent = any.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Port (1–65535).
    #[serde(default)]
    pub port: u32,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP` or `UDP`.
    #[serde(default)]
    pub protocol: String,
    /// TLS settings, required for HTTPS and TLS.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// Which routes may attach.
    #[serde(default)]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// `GatewayTLSConfig`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTls {
    /// `Terminate` (default) or `Passthrough`.
    #[serde(default)]
    pub mode: Option<TlsMode>,
    /// Certificates: each names a directory holding `tls.crt` and `tls.key` (the keys of a
    /// `kubernetes.io/tls` Secret mounted as a volume) in place of the Secret.
    #[serde(default)]
    pub certificate_refs: Vec<ObjectRef>,
    /// Implementation-specific options: accepted, not used.
    #[serde(default)]
    pub options: Map<String, String>,
    /// Client certificate validation: accepted, not used.
    #[serde(default)]
    pub frontend_validation: Option<serde_yaml::Value>,
}

/// `TLSModeType`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS is terminated at the Gateway.
    #[default]
    Terminate,
    /// The TLS stream is forwarded by SNI, untouched.
    Passthrough,
}

/// `AllowedRoutes`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowedRoutes {
    /// The namespaces routes may come from.
    #[serde(default)]
    pub namespaces: Option<RouteNamespaces>,
    /// The route kinds allowed; empty = derived from the protocol.
    #[serde(default)]
    pub kinds: Vec<RouteGroupKind>,
}

/// `RouteNamespaces`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteNamespaces {
    /// `Same` (default), `All` or `Selector`.
    #[serde(default)]
    pub from: Option<FromNamespaces>,
    /// Namespace label selector for `Selector`.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
}

/// `FromNamespaces`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum FromNamespaces {
    /// Only the Gateway's namespace.
    #[default]
    Same,
    /// Every namespace.
    All,
    /// Namespaces whose labels match `selector`.
    Selector,
}

/// A Kubernetes `LabelSelector`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must all be present with these values.
    #[serde(default)]
    pub match_labels: Map<String, String>,
    /// Set-based requirements: accepted; a selector with them selects nothing (warned).
    #[serde(default)]
    pub match_expressions: Vec<serde_yaml::Value>,
}

/// `RouteGroupKind`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteGroupKind {
    /// API group; absent = gateway.networking.k8s.io.
    #[serde(default)]
    pub group: Option<String>,
    /// Route kind.
    #[serde(default)]
    pub kind: String,
}

/// A reference to another object (`SecretObjectReference`, `BackendObjectReference`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    /// API group; absent = the core group ("").
    #[serde(default)]
    pub group: Option<String>,
    /// Kind; absent = the field's default (`Secret`, `Service`).
    #[serde(default)]
    pub kind: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace; absent = the referring object's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Port (backends).
    #[serde(default)]
    pub port: Option<u32>,
}

/// `ReferenceGrant.spec`: lets objects of other namespaces refer to this namespace's.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReferenceGrant {
    /// Who may refer (1–16).
    #[serde(default)]
    pub from: Vec<GrantFrom>,
    /// What they may refer to (1–16).
    #[serde(default)]
    pub to: Vec<GrantTo>,
}

/// `ReferenceGrantFrom`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantFrom {
    /// API group of the referring kind.
    #[serde(default)]
    pub group: String,
    /// Referring kind.
    #[serde(default)]
    pub kind: String,
    /// Namespace of the referring objects.
    #[serde(default)]
    pub namespace: String,
}

/// `ReferenceGrantTo`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantTo {
    /// API group of the target kind ("" for Service and Secret).
    #[serde(default)]
    pub group: String,
    /// Target kind.
    #[serde(default)]
    pub kind: String,
    /// One target by name; absent = every object of the kind.
    #[serde(default)]
    pub name: Option<String>,
}
