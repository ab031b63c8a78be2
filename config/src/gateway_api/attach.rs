//! Which parents a route attaches to: the listeners of a Gateway that accept it (kind,
//! namespace, hostname), or a Service for mesh routing (GAMMA), with the `Accepted`
//! reason when none does (Gateway API `shared_types.go` `ParentReference`, `gateway_types.go`
//! `AllowedRoutes`).

use super::hostnames::intersect;
use super::listeners::{istio_gateway_name, supported_kinds};
use super::status::Condition;
use super::{Ctx, CLUSTER_DOMAIN};
use crate::model::gateway_api::routes::ParentRef;
use crate::model::gateway_api::{FromNamespaces, Listener, TlsMode, GROUP};
use crate::model::{Kind, Resource};

/// Where a route's rules go.
#[derive(Clone, Debug)]
pub enum Binding {
    /// A Gateway listener: the Istio Gateway standing for it and the route's hosts there.
    Listener {
        /// `namespace/name` of the Istio Gateway.
        gateway: String,
        /// The Gateway's namespace (where the VirtualServices go).
        namespace: String,
        /// Hostnames after intersection with the listener's (`*`: any).
        hosts: Vec<String>,
        /// The listener's port.
        port: u32,
        /// TLS is terminated there (TLS listeners).
        terminates: bool,
    },
    /// A Service (GAMMA).
    Service {
        /// Its registry host.
        host: String,
        /// Its namespace.
        namespace: String,
        /// The port the route is limited to.
        port: Option<u32>,
    },
}

/// The parent `p` as a status names it.
pub fn parent_name(route: &Resource, p: &ParentRef) -> String {
    let kind = p.kind.as_deref().unwrap_or("Gateway");
    let ns = p.namespace.as_deref().unwrap_or(&route.namespace);
    let mut s = format!("{kind} {ns}/{}", p.name);
    if let Some(sec) = &p.section_name {
        s.push('/');
        s.push_str(sec);
    }
    if let Some(port) = p.port {
        s.push_str(&format!(":{port}"));
    }
    s
}

/// The bindings of `route` (of `kind`, with `hostnames`) to its parent `p`.
pub fn attach(
    ctx: &Ctx,
    route: &Resource,
    kind: Kind,
    hostnames: &[String],
    p: &ParentRef,
) -> Result<Vec<Binding>, Condition> {
    let ns = p.namespace.as_deref().unwrap_or(&route.namespace);
    let group = p.group.as_deref().unwrap_or(GROUP);
    match p.kind.as_deref().unwrap_or("Gateway") {
        "Service" if group.is_empty() || group == "core" => {
            let host = format!("{}.{ns}.{CLUSTER_DOMAIN}", p.name);
            if !ctx.services.contains_key(host.as_str()) {
                return Err(Condition::fail(
                    "NoMatchingParent",
                    format!("Service {ns}/{}: no ServiceEntry has host {host}", p.name),
                ));
            }
            Ok(vec![Binding::Service { host, namespace: ns.to_string(), port: p.port }])
        }
        "Gateway" if group == GROUP => gateway(ctx, route, kind, hostnames, p, ns),
        other => Err(Condition::fail(
            "NoMatchingParent",
            format!("parent kind {group}/{other} is not supported (Gateway or, for mesh routing, core Service)"),
        )),
    }
}

fn gateway(
    ctx: &Ctx,
    route: &Resource,
    kind: Kind,
    hostnames: &[String],
    p: &ParentRef,
    ns: &str,
) -> Result<Vec<Binding>, Condition> {
    let Some((gres, gw)) = ctx.gateways.get(&(ns, p.name.as_str())) else {
        return Err(Condition::fail(
            "NoMatchingParent",
            format!("no Gateway {ns}/{}", p.name),
        ));
    };
    let selected: Vec<&Listener> = gw
        .listeners
        .iter()
        .filter(|l| p.section_name.as_deref().is_none_or(|s| s == l.name))
        .filter(|l| p.port.is_none_or(|port| port == l.port))
        .collect();
    if selected.is_empty() {
        return Err(Condition::fail(
            "NoMatchingParent",
            "no listener has this sectionName and port",
        ));
    }
    let mut out = Vec::new();
    let mut allowed_any = false;
    for l in selected {
        if !allows(l, kind, &gres.namespace, &route.namespace) {
            continue;
        }
        allowed_any = true;
        let hosts = if kind == Kind::TcpRoute {
            vec!["*".to_string()]
        } else {
            intersect(l.hostname.as_deref(), hostnames)
        };
        if hosts.is_empty() {
            continue;
        }
        let terminates = l.protocol == "TLS"
            && l.tls.as_ref().and_then(|t| t.mode).unwrap_or_default() == TlsMode::Terminate;
        out.push(Binding::Listener {
            gateway: format!(
                "{}/{}",
                gres.namespace,
                istio_gateway_name(&gres.name, &l.name)
            ),
            namespace: gres.namespace.clone(),
            hosts,
            port: l.port,
            terminates,
        });
    }
    match (out.is_empty(), allowed_any) {
        (false, _) => Ok(out),
        (true, false) => Err(Condition::fail(
            "NotAllowedByListeners",
            format!(
                "no listener of Gateway {ns}/{} allows {kind} from namespace {}",
                p.name, route.namespace
            ),
        )),
        (true, true) => Err(Condition::fail(
            "NoMatchingListenerHostname",
            format!(
                "no hostname of the route intersects a listener's of Gateway {ns}/{}",
                p.name
            ),
        )),
    }
}

/// Whether listener `l` of a Gateway in `gw_ns` accepts a route of `kind` from `route_ns`.
fn allows(l: &Listener, kind: Kind, gw_ns: &str, route_ns: &str) -> bool {
    let allowed = l.allowed_routes.as_ref();
    let kinds = allowed.map(|a| a.kinds.as_slice()).unwrap_or_default();
    let kind_ok = if kinds.is_empty() {
        supported_kinds(l).contains(&kind)
    } else {
        kinds
            .iter()
            .any(|k| k.group.as_deref().unwrap_or(GROUP) == GROUP && k.kind == kind.as_str())
            && supported_kinds(l).contains(&kind)
    };
    let ns = allowed.and_then(|a| a.namespaces.as_ref());
    let ns_ok = match ns.and_then(|n| n.from).unwrap_or_default() {
        FromNamespaces::Same => gw_ns == route_ns,
        FromNamespaces::All => true,
        // Namespace objects are not part of a config directory: the one label every
        // namespace carries, `kubernetes.io/metadata.name`, is the one a selector can test.
        FromNamespaces::Selector => ns.and_then(|n| n.selector.as_ref()).is_some_and(|s| {
            s.match_expressions.is_empty()
                && s.match_labels
                    .iter()
                    .all(|(k, v)| k == "kubernetes.io/metadata.name" && v == route_ns)
        }),
    };
    kind_ok && ns_ok
}
