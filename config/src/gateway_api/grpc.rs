//! GRPCRoute → VirtualService `http` rules: a method match is a path match (Istio
//! `conversion.go` `createGRPCURIMatch`: service and method → exact `/svc/m`, service
//! only → prefix `/svc/`, method only → regex `/[^/]+/m`), filters and backends as for
//! HTTPRoute. Precedence: the longer service, then method, then more header matches
//! (Gateway API `grpcroute_types.go`).

use super::attach;
use super::emit::Output;
use super::http::{self, place};
use super::precedence::{self, SortKey};
use super::Ctx;
use crate::model::gateway_api::routes::{
    GrpcMatch, GrpcRoute, HttpMatch, HttpRule, ValueMatchType,
};
use crate::model::{Kind, Resource};
use serde_json::{json, Value};
use std::cmp::Reverse;

/// Converts `route` and places its rules on every parent that accepts it.
pub fn convert(ctx: &Ctx, res: &Resource, route: &GrpcRoute, out: &mut Output) {
    let (created, name) = precedence::route_key(res);
    for (pi, p) in route.parent_refs.iter().enumerate() {
        let mesh = p.kind.as_deref() == Some("Service");
        let mut entries = Vec::new();
        let mut issue = None;
        for (ri, rule) in route.rules.iter().enumerate() {
            // The rule's action is an HTTPRoute rule's; only its matches differ.
            let as_http = HttpRule {
                name: rule.name.clone(),
                matches: vec![HttpMatch::default()],
                filters: rule.filters.clone(),
                backend_refs: rule.backend_refs.clone(),
                ..HttpRule::default()
            };
            let (one, i) =
                http::convert_rules(ctx, res, std::slice::from_ref(&as_http), !mesh, out);
            if issue.is_none() {
                issue = i.map(|(p, c)| {
                    (
                        p.replacen("spec.rules[0]", &format!("spec.rules[{ri}]"), 1),
                        c,
                    )
                });
            }
            let Some((_, template)) = one.into_iter().next() else {
                continue;
            };
            for (mi, m) in http::or_default(&rule.matches).iter().enumerate() {
                let (uri, svc_len, method_len) = uri(m);
                let hm = HttpMatch {
                    headers: m.headers.clone(),
                    ..HttpMatch::default()
                };
                let mut v = template.clone();
                v["match"] = json!([http::match_json(&hm, uri)]);
                v["name"] = json!(format!("{}.{}.{ri}.{mi}", res.namespace, res.name));
                let key = SortKey {
                    path_rank: 0,
                    path_len: Reverse((svc_len, method_len)),
                    method: Reverse(false),
                    headers: Reverse(m.headers.len()),
                    query: Reverse(0),
                    created: created.clone(),
                    route: name.clone(),
                    order: (ri, mi, 0),
                };
                entries.push((key, v));
            }
        }
        let bindings = attach::attach(ctx, res, Kind::GrpcRoute, &route.hostnames, p);
        out.record(res, pi, p, bindings.as_ref().err(), &issue);
        for b in bindings.unwrap_or_default() {
            place(out, res, &b, &entries);
        }
    }
}

/// The path match for a method match, with the lengths of its service and method.
fn uri(m: &GrpcMatch) -> (Value, usize, usize) {
    let Some(mm) = &m.method else {
        return (json!({"prefix": "/"}), 0, 0);
    };
    let (svc, method) = (mm.service.as_deref(), mm.method.as_deref());
    let lens = (svc.map_or(0, str::len), method.map_or(0, str::len));
    let uri = match (mm.kind.unwrap_or_default(), svc, method) {
        (ValueMatchType::Exact, Some(s), Some(me)) => json!({"exact": format!("/{s}/{me}")}),
        (ValueMatchType::Exact, Some(s), None) => json!({"prefix": format!("/{s}/")}),
        (ValueMatchType::Exact, None, Some(me)) => {
            json!({"regex": format!("/[^/]+/{}", regex::escape(me))})
        }
        (ValueMatchType::RegularExpression, s, me) => {
            json!({"regex": format!("/{}/{}", s.unwrap_or("[^/]+"), me.unwrap_or("[^/]+"))})
        }
        (_, None, None) => json!({"prefix": "/"}),
    };
    (uri, lens.0, lens.1)
}
