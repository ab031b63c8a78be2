//! TLSRoute and TCPRoute → VirtualService `tls` and `tcp` routes (Istio `conversion.go`
//! `buildTLSMatch`): a TLSRoute on a Passthrough listener matches the ClientHello's SNI
//! against its hostnames; on a Terminate listener, and for TCPRoute, the listener's port
//! is the match. Backends resolve as for HTTP; an invalid one is left out (a connection
//! has no status code to answer with), and a rule with none left accepts no connection.

use super::attach::{self, Binding};
use super::backends;
use super::emit::Output;
use super::http::{note, Issue};
use super::Ctx;
use crate::model::gateway_api::routes::{L4Rule, ParentRef};
use crate::model::{Kind, Resource};
use serde_json::{json, Value};

/// Converts a TLSRoute (with `hostnames`) or a TCPRoute (without) and places its routes.
pub fn convert(
    ctx: &Ctx,
    res: &Resource,
    parents: &[ParentRef],
    hostnames: &[String],
    rules: &[L4Rule],
    out: &mut Output,
) {
    for (pi, p) in parents.iter().enumerate() {
        let mesh = p.kind.as_deref() == Some("Service");
        let mut issue: Issue = None;
        let routes: Vec<Vec<Value>> = rules
            .iter()
            .enumerate()
            .map(|(ri, r)| destinations(ctx, res, ri, r, !mesh, &mut issue))
            .collect();
        let bindings = attach::attach(ctx, res, res.kind, hostnames, p);
        out.record(res, pi, p, bindings.as_ref().err(), &issue);
        for b in bindings.unwrap_or_default() {
            for route in routes.iter().filter(|r| !r.is_empty()) {
                place(out, res, &b, hostnames, route);
            }
        }
    }
}

fn destinations(
    ctx: &Ctx,
    res: &Resource,
    ri: usize,
    r: &L4Rule,
    enforce: bool,
    issue: &mut Issue,
) -> Vec<Value> {
    let mut out = Vec::new();
    for (bi, b) in r.backend_refs.iter().enumerate() {
        let w = b.weight.unwrap_or(1).max(0);
        match backends::resolve(ctx, res, &b.object(), enforce) {
            Ok(t) if w > 0 => out.push(
                json!({"destination": {"host": t.host, "port": {"number": t.port}}, "weight": w}),
            ),
            Ok(_) => {}
            Err(c) => note(issue, format!("spec.rules[{ri}].backendRefs[{bi}]"), c),
        }
    }
    out
}

fn place(out: &mut Output, res: &Resource, b: &Binding, hostnames: &[String], route: &[Value]) {
    match b {
        Binding::Listener {
            gateway,
            namespace,
            hosts,
            port,
            terminates,
        } => {
            let tls = res.kind == Kind::TlsRoute && !terminates;
            // The SNI names are the VirtualService's hosts: one key for them all.
            let key_host = if tls { hosts.join(",") } else { "*".into() };
            let bucket = out.bucket((namespace.clone(), gateway.clone(), key_host), res);
            if tls {
                bucket
                    .tls
                    .push(json!({"match": [{"sniHosts": hosts, "port": port}], "route": route}));
            } else {
                bucket
                    .tcp
                    .push(json!({"match": [{"port": port}], "route": route}));
            }
        }
        Binding::Service {
            host,
            namespace,
            port,
        } => {
            let bucket = out.bucket((namespace.clone(), "mesh".into(), host.clone()), res);
            let mut m = json!({});
            if let Some(p) = port {
                m["port"] = json!(p);
            }
            if res.kind == Kind::TlsRoute && !hostnames.is_empty() {
                m["sniHosts"] = json!(hostnames);
                bucket.tls.push(json!({"match": [m], "route": route}));
            } else {
                bucket.tcp.push(json!({"match": [m], "route": route}));
            }
        }
    }
}
