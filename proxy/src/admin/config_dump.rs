//! `GET /config_dump`: the config in force — its version (content hash), when it was
//! loaded, the proxy settings, listeners, and every document as written.

use crate::runtime::active::Active;
use meshproxy_config::compile::listener::ListenerRole;
use serde_json::{json, Value};

/// The dump of the config in force.
pub fn render(active: &Active) -> Value {
    let s = &active.snapshot;
    let listeners: Vec<Value> = s
        .listeners
        .iter()
        .map(|l| {
            let (role, forward_to, servers) = match &l.role {
                ListenerRole::Outbound => ("OUTBOUND", None, Vec::new()),
                ListenerRole::Inbound { forward_to } => ("INBOUND", Some(forward_to.to_string()), Vec::new()),
                ListenerRole::Gateway { servers } => (
                    "GATEWAY",
                    None,
                    servers
                        .iter()
                        .map(|g| json!({"gateway": g.gateway, "name": g.name, "protocol": g.protocol, "hosts": g.hosts, "tls": g.tls.as_ref().map(|t| format!("{:?}", t.mode))}))
                        .collect(),
                ),
            };
            json!({"name": l.name, "address": l.address.to_string(), "role": role, "forward_to": forward_to, "servers": servers})
        })
        .collect();
    let resources: Vec<Value> = s
        .resources
        .iter()
        .map(|r| {
            json!({
                "kind": r.kind.as_str(),
                "namespace": r.namespace,
                "name": r.name,
                "source": r.origin.to_string(),
                "document": serde_json::from_str::<Value>(&r.raw).unwrap_or(Value::Null),
            })
        })
        .collect();
    let p = &s.proxy;
    json!({
        "version": s.version,
        "loaded_at": crate::access_log::rfc3339_millis(s.loaded_at),
        "proxy": {
            "name": p.name,
            "namespace": p.namespace,
            "labels": p.labels,
            "service_account": p.service_account,
            "admin_address": p.admin_address.to_string(),
            "outbound_traffic_policy": format!("{:?}", p.outbound_mode),
            "trust_domain": p.trust_domain,
            "declared": p.declared,
        },
        "listeners": listeners,
        "route_tables": s.route_tables.iter().map(|t| json!({"name": t.name, "virtual_hosts": t.virtual_hosts.len(), "domains": t.domain_count()})).collect::<Vec<_>>(),
        "clusters": s.clusters.len(),
        "resources": resources,
        "gateway_api_status": s.gateway_api,
        "warnings": s.warnings.0.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
    })
}
