//! A route's references to Services: backends and mirror targets, resolved through the
//! registry as `name.namespace.svc.cluster.local`, with the ReferenceGrant handshake for
//! another namespace (Gateway API `referencegrant_types.go`; Istio enforces it for Gateway parents
//! only, `route_collections.go`, which GEP-1294 allows for mesh routes).

use super::{status::Condition, Ctx, CLUSTER_DOMAIN};
use crate::model::gateway_api::{ObjectRef, GROUP};
use crate::model::{Kind, Resource};

/// A resolved Service reference: its registry host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `name.namespace.svc.cluster.local`.
    pub host: String,
    /// The Service port.
    pub port: u32,
}

/// Resolves `r`, referenced from `from` (a route, or a Gateway for certificates when
/// `kind` is `Secret`); `enforce_grants` is false for mesh (GAMMA) routes.
pub fn resolve(
    ctx: &Ctx,
    from: &Resource,
    r: &ObjectRef,
    enforce_grants: bool,
) -> Result<Target, Condition> {
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Service");
    if !group.is_empty() || kind != "Service" {
        return Err(Condition::fail(
            "InvalidKind",
            format!(
                "backend {group}/{kind} {:?}: only core Services are supported",
                r.name
            ),
        ));
    }
    let ns = r.namespace.as_deref().unwrap_or(&from.namespace);
    if enforce_grants && ns != from.namespace && !granted(ctx, from, "Service", ns, &r.name) {
        return Err(Condition::fail(
            "RefNotPermitted",
            format!(
                "backend {ns}/{}: no ReferenceGrant in namespace {ns} lets {} from {} refer to it",
                r.name, from.kind, from.namespace
            ),
        ));
    }
    let Some(port) = r.port else {
        return Err(Condition::fail(
            "BackendNotFound",
            format!("backend {ns}/{}: port is required for a Service", r.name),
        ));
    };
    let host = format!("{}.{ns}.{CLUSTER_DOMAIN}", r.name);
    match ctx.services.get(host.as_str()) {
        None => Err(Condition::fail(
            "BackendNotFound",
            format!("backend {host}: no ServiceEntry has this host"),
        )),
        Some(ports) if !ports.is_empty() && !ports.contains(&port) => Err(Condition::fail(
            "BackendNotFound",
            format!("backend {host}: the service has no port {port}"),
        )),
        Some(_) => Ok(Target { host, port }),
    }
}

/// Whether a ReferenceGrant in `ns` lets `from`'s kind in its namespace refer to the
/// `kind` object `name` there (grants are additive; a `to` without a name allows all).
pub fn granted(ctx: &Ctx, from: &Resource, kind: &str, ns: &str, name: &str) -> bool {
    let from_kind = from_kind(from.kind);
    ctx.grants
        .iter()
        .filter(|(g, _)| g.namespace == ns)
        .any(|(_, g)| {
            g.from
                .iter()
                .any(|f| f.group == GROUP && f.kind == from_kind && f.namespace == from.namespace)
                && g.to.iter().any(|t| {
                    t.group.is_empty()
                        && t.kind == kind
                        && t.name.as_deref().is_none_or(|n| n == name)
                })
        })
}

fn from_kind(kind: Kind) -> &'static str {
    kind.as_str()
}
