//! The Kubernetes Gateway API, served as Istio serves it: each `Gateway` listener becomes
//! an Istio `Gateway` server and the routes attached to it become VirtualServices, one per
//! (parent, hostname) with the rules of every route merged and sorted by the API's
//! precedence (Istio: `pilot/pkg/config/kube/gateway/conversion.go`,
//! `route_collections.go`). The compiler, the request path, `explain` and the metrics
//! then need no code of their own for it. GAMMA routes (a `Service` parent) become a
//! VirtualService bound to `mesh` for that Service's host.
//!
//! The generated documents are added to the loaded ones (named `<source>-...`, annotated
//! with the document they come from); the Gateway API documents stay too, for
//! `validate` and `/config_dump`. Route status (`Accepted`, `ResolvedRefs` and their
//! reasons) is [`status`]; a condition that is not `True` is also a warning.

mod attach;
mod backends;
mod cors;
mod emit;
mod grpc;
mod hostnames;
mod http;
mod l4;
mod listeners;
mod precedence;
mod status;
mod timeouts;

pub use emit::SOURCE_ANNOTATION;
pub use status::{Condition, ParentStatus};
pub use timeouts::parse_duration;

use crate::diag::Diagnostics;
use crate::loader::{typed, TypedError};
use crate::model::gateway_api::{
    GrpcRoute, HttpRoute, KubeGateway, ReferenceGrant, TcpRoute, TlsRoute,
};
use crate::model::{GatewayApiSpec, Kind, ObjectMeta, Resource, Spec};
use std::collections::HashMap;

/// The cluster domain of the Services `backendRefs` and GAMMA parents name.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// The workload label that binds a Gateway to the proxy serving it (the label Istio gives
/// the gateway deployments it creates, `gatewaycommon/gateway_utils.go`).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// The typed spec of a Gateway API document of `kind`.
pub(crate) fn typed_spec<'a>(
    kind: Kind,
    doc: (
        &serde_yaml::Value,
        impl FnOnce() -> Option<serde_yaml::Deserializer<'a>>,
    ),
) -> Result<(ObjectMeta, Spec), TypedError> {
    fn wrap(s: GatewayApiSpec) -> Spec {
        Spec::GatewayApi(Box::new(s))
    }
    match kind {
        Kind::KubeGateway => {
            typed::<KubeGateway>(doc, |s| wrap(GatewayApiSpec::Gateway(Box::new(s))))
        }
        Kind::HttpRoute => typed::<HttpRoute>(doc, |s| wrap(GatewayApiSpec::HttpRoute(s))),
        Kind::GrpcRoute => typed::<GrpcRoute>(doc, |s| wrap(GatewayApiSpec::GrpcRoute(s))),
        Kind::TlsRoute => typed::<TlsRoute>(doc, |s| wrap(GatewayApiSpec::TlsRoute(s))),
        Kind::TcpRoute => typed::<TcpRoute>(doc, |s| wrap(GatewayApiSpec::TcpRoute(s))),
        _ => typed::<ReferenceGrant>(doc, |s| wrap(GatewayApiSpec::ReferenceGrant(s))),
    }
}

/// Adds the Istio documents the Gateway API documents of `resources` stand for, and a
/// warning for every route condition that is not `True`. Nothing happens (one pass over
/// the kinds) when there is no Gateway API document.
pub fn expand(resources: &mut Vec<Resource>, diags: &mut Diagnostics) {
    if !resources.iter().any(|r| r.kind.is_gateway_api()) {
        return;
    }
    let out = convert(resources);
    diags.extend(out.diagnostics);
    resources.extend(out.resources);
}

/// The status of every (route, parentRef) of `resources`, as the route's
/// `status.parents[]` would say it.
pub fn status(resources: &[Resource]) -> Vec<ParentStatus> {
    if !resources.iter().any(|r| r.kind.is_gateway_api()) {
        return Vec::new();
    }
    convert(resources).status
}

/// What the Gateway API documents of a config become.
pub(crate) struct Conversion {
    /// Istio Gateways and VirtualServices.
    pub resources: Vec<Resource>,
    /// Route status per parent.
    pub status: Vec<ParentStatus>,
    /// Warnings: conditions that are not True, fields not enforced.
    pub diagnostics: Diagnostics,
}

/// What conversion reads from the whole config.
pub(crate) struct Ctx<'a> {
    /// Gateways by (namespace, name).
    pub gateways: HashMap<(&'a str, &'a str), (&'a Resource, &'a KubeGateway)>,
    /// ReferenceGrants.
    pub grants: Vec<(&'a Resource, &'a ReferenceGrant)>,
    /// The registry's hosts (ServiceEntries) and their ports (empty: any).
    pub services: HashMap<String, Vec<u32>>,
}

impl<'a> Ctx<'a> {
    fn new(resources: &'a [Resource]) -> Self {
        let mut ctx = Ctx {
            gateways: HashMap::new(),
            grants: Vec::new(),
            services: HashMap::new(),
        };
        for r in resources {
            if let Some(se) = r.as_service_entry() {
                let ports: Vec<u32> = se.ports.iter().map(|p| p.number).collect();
                for h in &se.hosts {
                    ctx.services.entry(h.clone()).or_default().extend(&ports);
                }
                continue;
            }
            match r.as_gateway_api() {
                Some(GatewayApiSpec::Gateway(g)) => {
                    ctx.gateways
                        .insert((r.namespace.as_str(), r.name.as_str()), (r, g.as_ref()));
                }
                Some(GatewayApiSpec::ReferenceGrant(g)) => ctx.grants.push((r, g)),
                _ => {}
            }
        }
        ctx
    }
}

/// Converts every Gateway API document of `resources`.
pub(crate) fn convert(resources: &[Resource]) -> Conversion {
    let ctx = Ctx::new(resources);
    let mut out = emit::Output::default();
    let mut gateways: Vec<_> = ctx.gateways.values().collect();
    gateways.sort_by_key(|(r, _)| (r.namespace.as_str(), r.name.as_str()));
    for (res, gw) in gateways {
        listeners::convert(&ctx, res, gw, &mut out);
    }
    for res in resources {
        match res.as_gateway_api() {
            Some(GatewayApiSpec::HttpRoute(r)) => http::convert(&ctx, res, r, &mut out),
            Some(GatewayApiSpec::GrpcRoute(r)) => grpc::convert(&ctx, res, r, &mut out),
            Some(GatewayApiSpec::TlsRoute(r)) => {
                l4::convert(&ctx, res, &r.parent_refs, &r.hostnames, &r.rules, &mut out)
            }
            Some(GatewayApiSpec::TcpRoute(r)) => {
                l4::convert(&ctx, res, &r.parent_refs, &[], &r.rules, &mut out)
            }
            _ => {}
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests;
