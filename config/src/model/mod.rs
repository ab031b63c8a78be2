//! The typed model of every configuration kind, and the [`Resource`] envelope that carries
//! a parsed document with its metadata and origin.
//!
//! Every struct denies unknown fields (a typo must not silently change policy) and accepts
//! both Istio's lowerCamelCase JSON names and the proto's snake_case spellings. Optional
//! scalars are `Option` where Istio distinguishes "unset" from zero (wrapper types).

pub mod authorization_policy;
pub mod common;
pub mod destination_rule;
pub mod extension_provider;
pub mod gateway;
pub mod gateway_api;
pub mod map;
pub mod peer_authentication;
pub mod proxy;
pub mod rate_limit_policy;
pub mod request_authentication;
pub mod rollout;
pub mod service_entry;
pub mod sidecar;
pub mod telemetry;
pub mod virtual_service;

use crate::diag::Origin;
use map::Map;
use std::borrow::Cow;
use std::fmt;

pub use authorization_policy::AuthorizationPolicy;
pub use common::ObjectMeta;
pub use destination_rule::DestinationRule;
pub use gateway::Gateway;
pub use peer_authentication::PeerAuthentication;
pub use proxy::Proxy;
pub use rate_limit_policy::RateLimitPolicy;
pub use request_authentication::RequestAuthentication;
pub use rollout::Rollout;
pub use service_entry::ServiceEntry;
pub use service_entry::WorkloadEntry;
pub use sidecar::Sidecar;
pub use telemetry::Telemetry;
pub use virtual_service::VirtualService;

/// The namespace a document without `metadata.namespace` belongs to.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The configuration kinds meshproxy reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// networking.istio.io VirtualService.
    VirtualService,
    /// networking.istio.io DestinationRule.
    DestinationRule,
    /// networking.istio.io ServiceEntry.
    ServiceEntry,
    /// networking.istio.io Gateway.
    Gateway,
    /// security.istio.io PeerAuthentication.
    PeerAuthentication,
    /// security.istio.io AuthorizationPolicy.
    AuthorizationPolicy,
    /// telemetry.istio.io Telemetry.
    Telemetry,
    /// networking.istio.io WorkloadEntry (a VM or other non-Kubernetes workload).
    WorkloadEntry,
    /// networking.istio.io Sidecar.
    Sidecar,
    /// security.istio.io RequestAuthentication.
    RequestAuthentication,
    /// meshproxy.io Proxy.
    Proxy,
    /// meshproxy.io RateLimitPolicy.
    RateLimitPolicy,
    /// meshproxy.io Rollout (`meshproxy rollout`'s input; nothing in a proxy's snapshot).
    Rollout,
    /// gateway.networking.k8s.io Gateway (its `kind:` is also "Gateway": the API group
    /// tells it from Istio's).
    KubeGateway,
    /// gateway.networking.k8s.io HTTPRoute.
    HttpRoute,
    /// gateway.networking.k8s.io GRPCRoute.
    GrpcRoute,
    /// gateway.networking.k8s.io TLSRoute.
    TlsRoute,
    /// gateway.networking.k8s.io TCPRoute.
    TcpRoute,
    /// gateway.networking.k8s.io ReferenceGrant.
    ReferenceGrant,
}

impl Kind {
    /// Every kind, in the order summaries print them.
    pub const ALL: [Kind; 19] = [
        Kind::Proxy,
        Kind::Gateway,
        Kind::ServiceEntry,
        Kind::WorkloadEntry,
        Kind::Sidecar,
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::Telemetry,
        Kind::RequestAuthentication,
        Kind::RateLimitPolicy,
        Kind::Rollout,
        Kind::KubeGateway,
        Kind::HttpRoute,
        Kind::GrpcRoute,
        Kind::TlsRoute,
        Kind::TcpRoute,
        Kind::ReferenceGrant,
    ];

    /// The `kind:` string.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::Gateway => "Gateway",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::Telemetry => "Telemetry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::Sidecar => "Sidecar",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::Proxy => "Proxy",
            Kind::RateLimitPolicy => "RateLimitPolicy",
            Kind::Rollout => "Rollout",
            Kind::KubeGateway => "Gateway",
            Kind::HttpRoute => "HTTPRoute",
            Kind::GrpcRoute => "GRPCRoute",
            Kind::TlsRoute => "TLSRoute",
            Kind::TcpRoute => "TCPRoute",
            Kind::ReferenceGrant => "ReferenceGrant",
        }
    }

    /// Parses a `kind:` string (`Gateway` is Istio's: see [`Kind::from_document`]).
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind of a document: its `kind:` string, and its `apiVersion`'s group for the
    /// one name two APIs share (`Gateway`).
    pub fn from_document(kind: &str, api_version: &str) -> Option<Kind> {
        let group = api_version.split('/').next().unwrap_or("");
        match Kind::from_name(kind)? {
            Kind::Gateway if group == gateway_api::GROUP => Some(Kind::KubeGateway),
            k => Some(k),
        }
    }

    /// True for the Kubernetes Gateway API kinds.
    pub fn is_gateway_api(&self) -> bool {
        matches!(
            self,
            Kind::KubeGateway
                | Kind::HttpRoute
                | Kind::GrpcRoute
                | Kind::TlsRoute
                | Kind::TcpRoute
                | Kind::ReferenceGrant
        )
    }

    /// The `apiVersion` values accepted for this kind. Istio serves one schema under several
    /// versions (`+cue-gen:<Kind>:versions:v1,v1beta1,v1alpha3`), so all are accepted alike.
    pub fn api_versions(&self) -> &'static [&'static str] {
        match self {
            Kind::VirtualService
            | Kind::DestinationRule
            | Kind::ServiceEntry
            | Kind::Gateway
            | Kind::WorkloadEntry
            | Kind::Sidecar => &[
                "networking.istio.io/v1",
                "networking.istio.io/v1beta1",
                "networking.istio.io/v1alpha3",
            ],
            Kind::PeerAuthentication | Kind::AuthorizationPolicy | Kind::RequestAuthentication => {
                &["security.istio.io/v1", "security.istio.io/v1beta1"]
            }
            Kind::Telemetry => &["telemetry.istio.io/v1", "telemetry.istio.io/v1alpha1"],
            Kind::Proxy | Kind::RateLimitPolicy | Kind::Rollout => &["meshproxy.io/v1alpha1"],
            Kind::KubeGateway | Kind::HttpRoute => &[
                "gateway.networking.k8s.io/v1",
                "gateway.networking.k8s.io/v1beta1",
            ],
            Kind::GrpcRoute => &[
                "gateway.networking.k8s.io/v1",
                "gateway.networking.k8s.io/v1alpha2",
            ],
            Kind::TlsRoute => &[
                "gateway.networking.k8s.io/v1",
                "gateway.networking.k8s.io/v1alpha3",
                "gateway.networking.k8s.io/v1alpha2",
            ],
            Kind::TcpRoute => &[
                "gateway.networking.k8s.io/v1",
                "gateway.networking.k8s.io/v1alpha2",
            ],
            Kind::ReferenceGrant => &[
                "gateway.networking.k8s.io/v1",
                "gateway.networking.k8s.io/v1beta1",
                "gateway.networking.k8s.io/v1alpha2",
            ],
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed `spec`, one variant per kind. The large kinds are boxed: a large mesh has
/// thousands of ServiceEntries and VirtualServices, and every one of them was as large
/// as the largest kind (1.3 KB) while the config was compiled.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    /// VirtualService.
    VirtualService(Box<VirtualService>),
    /// DestinationRule.
    DestinationRule(Box<DestinationRule>),
    /// ServiceEntry.
    ServiceEntry(Box<ServiceEntry>),
    /// Gateway.
    Gateway(Box<Gateway>),
    /// PeerAuthentication.
    PeerAuthentication(Box<PeerAuthentication>),
    /// AuthorizationPolicy.
    AuthorizationPolicy(Box<AuthorizationPolicy>),
    /// Telemetry.
    Telemetry(Box<Telemetry>),
    /// WorkloadEntry.
    WorkloadEntry(Box<WorkloadEntry>),
    /// Sidecar.
    Sidecar(Box<Sidecar>),
    /// RequestAuthentication.
    RequestAuthentication(Box<RequestAuthentication>),
    /// Proxy.
    Proxy(Box<Proxy>),
    /// RateLimitPolicy.
    RateLimitPolicy(Box<RateLimitPolicy>),
    /// Rollout.
    Rollout(Box<Rollout>),
    /// A Gateway API kind.
    GatewayApi(Box<GatewayApiSpec>),
    /// Not held: a VirtualService or ServiceEntry of a reload, parsed again from
    /// [`Resource::raw`] each time it is read ([`Resource::spec`]); validated on its own
    /// when it was loaded. A reload builds the new snapshot beside the one in force;
    /// holding every typed spec while the route tables are compiled made a
    /// 10,000-service reload peak at twice the footprint (docs/performance.md, "Memory
    /// with many services").
    Deferred(Deferred),
}

/// What is known of a deferred spec without parsing it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deferred {
    /// A VirtualService with `tcp` or `tls` rules (the TCP route tables read only those).
    pub l4_rules: bool,
    /// A VirtualService with rules that delegate (the check for unused delegates reads
    /// only those).
    pub delegates: bool,
    /// A VirtualService bound to the mesh (no `gateways`, or `mesh` among them).
    pub on_mesh: bool,
    /// A VirtualService bound to a gateway (a name other than `mesh` in `gateways`).
    pub on_gateways: bool,
}

impl Deferred {
    /// Whether `res` is a deferred document of which `test` says no: the callers skip it
    /// without parsing it again.
    pub fn skips(res: &Resource, test: impl Fn(&Deferred) -> bool) -> bool {
        matches!(&res.spec, Spec::Deferred(d) if !test(d))
    }
}

/// The spec of a Kubernetes Gateway API document.
#[derive(Clone, Debug, PartialEq)]
pub enum GatewayApiSpec {
    /// Gateway.
    Gateway(Box<gateway_api::KubeGateway>),
    /// HTTPRoute.
    HttpRoute(gateway_api::HttpRoute),
    /// GRPCRoute.
    GrpcRoute(gateway_api::GrpcRoute),
    /// TLSRoute.
    TlsRoute(gateway_api::TlsRoute),
    /// TCPRoute.
    TcpRoute(gateway_api::TcpRoute),
    /// ReferenceGrant.
    ReferenceGrant(gateway_api::ReferenceGrant),
}

/// One loaded configuration document.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    /// File and document index.
    pub origin: Origin,
    /// The `apiVersion` as written (one of the kind's [`Kind::api_versions`]).
    pub api_version: &'static str,
    /// The kind.
    pub kind: Kind,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, `default` when absent.
    pub namespace: String,
    /// `metadata.annotations` (`istio.io/dry-run` is read from there), the one part of
    /// the metadata read after loading besides the name and namespace; the labels stay
    /// in the text.
    pub annotations: Map<String, String>,
    /// The typed spec.
    pub spec: Spec,
    /// The document as written, as compact JSON text (for `/config_dump` and the content
    /// hash). Text, not a `serde_json::Value`: a parsed tree costs ~40x the document's
    /// size, which made 2,000 small documents hold 38 MB.
    pub raw: std::sync::Arc<str>,
}

impl Resource {
    /// `Kind/namespace/name`, the form every diagnostic uses.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }

    /// The typed spec: the one held, or for a [`Spec::Deferred`] document the one parsed
    /// again from its text (the loader checked that this parse succeeds; should it not,
    /// the document reads as an empty spec of its kind).
    pub fn spec(&self) -> Cow<'_, Spec> {
        match &self.spec {
            Spec::Deferred(_) => Cow::Owned(crate::loader::reparse(self.kind, &self.raw)),
            s => Cow::Borrowed(s),
        }
    }

    /// The VirtualService spec, if this is one (parsed from its text when deferred).
    pub fn as_virtual_service(&self) -> Option<Cow<'_, VirtualService>> {
        match self.spec() {
            Cow::Borrowed(Spec::VirtualService(v)) => Some(Cow::Borrowed(v.as_ref())),
            Cow::Owned(Spec::VirtualService(v)) => Some(Cow::Owned(*v)),
            _ => None,
        }
    }

    /// The DestinationRule spec, if this is one.
    pub fn as_destination_rule(&self) -> Option<&DestinationRule> {
        match &self.spec {
            Spec::DestinationRule(v) => Some(v.as_ref()),
            _ => None,
        }
    }

    /// The ServiceEntry spec, if this is one (parsed from its text when deferred).
    pub fn as_service_entry(&self) -> Option<Cow<'_, ServiceEntry>> {
        match self.spec() {
            Cow::Borrowed(Spec::ServiceEntry(v)) => Some(Cow::Borrowed(v.as_ref())),
            Cow::Owned(Spec::ServiceEntry(v)) => Some(Cow::Owned(*v)),
            _ => None,
        }
    }

    /// The Gateway spec, if this is one.
    pub fn as_gateway(&self) -> Option<&Gateway> {
        match &self.spec {
            Spec::Gateway(v) => Some(v.as_ref()),
            _ => None,
        }
    }

    /// The PeerAuthentication spec, if this is one.
    pub fn as_peer_authentication(&self) -> Option<&PeerAuthentication> {
        match &self.spec {
            Spec::PeerAuthentication(v) => Some(v.as_ref()),
            _ => None,
        }
    }

    /// The Sidecar spec, if this is one.
    pub fn as_sidecar(&self) -> Option<&Sidecar> {
        match &self.spec {
            Spec::Sidecar(v) => Some(v.as_ref()),
            _ => None,
        }
    }

    /// The WorkloadEntry spec, if this is one.
    pub fn as_workload_entry(&self) -> Option<&WorkloadEntry> {
        match &self.spec {
            Spec::WorkloadEntry(v) => Some(v.as_ref()),
            _ => None,
        }
    }

    /// The Telemetry spec, if this is one.
    pub fn as_telemetry(&self) -> Option<&Telemetry> {
        match &self.spec {
            Spec::Telemetry(v) => Some(v.as_ref()),
            _ => None,
        }
    }

    /// The AuthorizationPolicy spec, if this is one.
    pub fn as_authorization_policy(&self) -> Option<&AuthorizationPolicy> {
        match &self.spec {
            Spec::AuthorizationPolicy(v) => Some(v.as_ref()),
            _ => None,
        }
    }

    /// The RequestAuthentication spec, if this is one.
    pub fn as_request_authentication(&self) -> Option<&RequestAuthentication> {
        match &self.spec {
            Spec::RequestAuthentication(v) => Some(v.as_ref()),
            _ => None,
        }
    }

    /// The RateLimitPolicy spec, if this is one.
    pub fn as_rate_limit_policy(&self) -> Option<&RateLimitPolicy> {
        match &self.spec {
            Spec::RateLimitPolicy(v) => Some(v.as_ref()),
            _ => None,
        }
    }

    /// The Rollout spec, if this is one.
    pub fn as_rollout(&self) -> Option<&Rollout> {
        match &self.spec {
            Spec::Rollout(v) => Some(v.as_ref()),
            _ => None,
        }
    }

    /// The Gateway API spec, if this is one of its kinds.
    pub fn as_gateway_api(&self) -> Option<&GatewayApiSpec> {
        match &self.spec {
            Spec::GatewayApi(v) => Some(v.as_ref()),
            _ => None,
        }
    }

    /// The Proxy spec, if this is one.
    pub fn as_proxy(&self) -> Option<&Proxy> {
        match &self.spec {
            Spec::Proxy(v) => Some(v.as_ref()),
            _ => None,
        }
    }
}
