//! HTTPRoute → VirtualService `http` rules, one per match (Istio `conversion.go`
//! `convertHTTPRoute`): matches, filters, weighted backends and timeouts. A PathPrefix
//! match is element-wise (`/abc` matches `/abc` and `/abc/d`, not `/abcd`), so it becomes
//! two rules: `exact: /abc` and `prefix: /abc/` (Envoy's `path_separated_prefix`, which
//! Istio uses, matches the same), each with the prefix replacement that keeps the
//! API's `ReplacePrefixMatch` table.

use super::attach::{self, Binding};
use super::backends::{self, Target};
use super::emit::Output;
use super::precedence::{self, SortKey};
use super::status::Condition;
use super::Ctx;
use crate::model::gateway_api::routes::{
    BackendRef, HeaderModifier, HttpFilter, HttpMatch, HttpRoute, HttpRule, PathMatchType,
    PathModifier, RequestRedirect, UrlRewrite, ValueMatch, ValueMatchType,
};
use crate::model::{Kind, Resource};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::cmp::Reverse;

/// The first reference of a route that did not resolve: its field path and condition.
pub type Issue = Option<(String, Condition)>;

/// A route's rules converted once per kind of parent (grants are checked for Gateway
/// parents only).
pub type Converted = (Vec<(SortKey, Value)>, Issue);

/// Converts `route` and places its rules on every parent that accepts it.
pub fn convert(ctx: &Ctx, res: &Resource, route: &HttpRoute, out: &mut Output) {
    let rules = or_default(&route.rules);
    let mut cache: [Option<Converted>; 2] = [None, None];
    for (pi, p) in route.parent_refs.iter().enumerate() {
        let mesh = p.kind.as_deref() == Some("Service");
        if cache[mesh as usize].is_none() {
            cache[mesh as usize] = Some(convert_rules(ctx, res, &rules, !mesh, out));
        }
        let Some((entries, issue)) = &cache[mesh as usize] else {
            continue;
        };
        let bindings = attach::attach(ctx, res, Kind::HttpRoute, &route.hostnames, p);
        out.record(res, pi, p, bindings.as_ref().err(), issue);
        for b in bindings.unwrap_or_default() {
            place(out, res, &b, entries);
        }
    }
}

/// `items`, or one default item where there are none: the API's default rule (no rules:
/// one forwarding nothing) and default match (no matches: every request).
pub fn or_default<T: Clone + Default>(items: &[T]) -> Cow<'_, [T]> {
    if items.is_empty() {
        Cow::Owned(vec![T::default()])
    } else {
        Cow::Borrowed(items)
    }
}

/// Adds `entries` to the VirtualService(s) of binding `b`.
pub fn place(out: &mut Output, res: &Resource, b: &Binding, entries: &[(SortKey, Value)]) {
    match b {
        Binding::Listener {
            gateway,
            namespace,
            hosts,
            ..
        } => {
            for h in hosts {
                let key = (namespace.clone(), gateway.clone(), h.clone());
                out.bucket(key, res).http.extend(entries.iter().cloned());
            }
        }
        Binding::Service {
            host,
            namespace,
            port,
        } => {
            let key = (namespace.clone(), "mesh".to_string(), host.clone());
            let bucket = out.bucket(key, res);
            for (k, v) in entries {
                let mut v = v.clone();
                if let (Some(port), Some(ms)) = (port, v["match"].as_array_mut()) {
                    for m in ms {
                        m["port"] = json!(port);
                    }
                }
                bucket.http.push((k.clone(), v));
            }
        }
    }
}

/// Every rule of a route, one entry per match piece, and the first unresolved reference.
pub fn convert_rules(
    ctx: &Ctx,
    res: &Resource,
    rules: &[HttpRule],
    enforce: bool,
    out: &mut Output,
) -> Converted {
    let (created, name) = precedence::route_key(res);
    let mut entries = Vec::new();
    let mut issue: Issue = None;
    for (ri, rule) in rules.iter().enumerate() {
        let p = format!("spec.rules[{ri}]");
        let action = action(&RuleCtx { ctx, res, enforce }, &p, rule, &mut issue, out);
        for (mi, m) in or_default(&rule.matches).iter().enumerate() {
            let (kind, value) = path_of(m);
            for (pc, piece) in pieces(kind, &value).into_iter().enumerate() {
                let key = SortKey {
                    path_rank: match kind {
                        PathMatchType::Exact => 0,
                        PathMatchType::PathPrefix => 1,
                        PathMatchType::RegularExpression => 2,
                    },
                    path_len: Reverse((value.len(), 0)),
                    method: Reverse(m.method.is_some()),
                    headers: Reverse(m.headers.len()),
                    query: Reverse(m.query_params.len()),
                    created: created.clone(),
                    route: name.clone(),
                    order: (ri, mi, pc),
                };
                let mut v = action.base.clone();
                v.insert(
                    "name".into(),
                    json!(format!("{}.{}.{ri}.{mi}", res.namespace, res.name)),
                );
                v.insert("match".into(), json!([match_json(m, piece.uri())]));
                if !v.contains_key("directResponse") {
                    if let Some(r) = action.redirect {
                        v.insert("redirect".into(), redirect_json(r, piece));
                    }
                    if let Some(r) = action.rewrite {
                        v.insert("rewrite".into(), rewrite_json(r, piece));
                    }
                }
                entries.push((key, Value::Object(v)));
            }
        }
    }
    (entries, issue)
}

/// What resolving a rule's references needs.
#[derive(Clone, Copy)]
pub struct RuleCtx<'a> {
    /// The config.
    pub ctx: &'a Ctx<'a>,
    /// The route.
    pub res: &'a Resource,
    /// Check ReferenceGrants (Gateway parents).
    pub enforce: bool,
}

/// The part of a rule that does not depend on the match.
struct Action<'a> {
    base: Map<String, Value>,
    redirect: Option<&'a RequestRedirect>,
    rewrite: Option<&'a UrlRewrite>,
}

fn action<'a>(
    rc: &RuleCtx,
    p: &str,
    rule: &'a HttpRule,
    issue: &mut Issue,
    out: &mut Output,
) -> Action<'a> {
    let RuleCtx { ctx, res, enforce } = *rc;
    let mut base = Map::new();
    let mut a = Action {
        base: Map::new(),
        redirect: None,
        rewrite: None,
    };
    let (mut headers, mut mirrors, mut fail) = (Map::new(), Vec::new(), false);
    for (fi, f) in rule.filters.iter().enumerate() {
        let fp = format!("{p}.filters[{fi}]");
        match filter(f, &mut headers) {
            FilterUse::Redirect => a.redirect = f.request_redirect.as_ref(),
            FilterUse::Rewrite => a.rewrite = f.url_rewrite.as_ref(),
            FilterUse::Mirror => {
                if let Some(m) = &f.request_mirror {
                    match backends::resolve(ctx, res, &m.backend_ref, enforce) {
                        Ok(t) => mirrors.push(json!({"destination": destination(&t), "percentage": {"value": mirror_percent(m)}})),
                        Err(c) => note(issue, format!("{fp}.requestMirror.backendRef"), c),
                    }
                }
            }
            FilterUse::Done => {}
            FilterUse::Fail => {
                out.warn(res, &fp, format!("filter {} cannot be resolved: the rule answers 500 (the API forbids skipping it)", f.kind));
                fail = true;
            }
        }
    }
    // The CORS filter's policy travels with the header operations until here.
    if let Some(cors) = headers.remove("corsPolicy") {
        base.insert("corsPolicy".into(), cors);
    }
    if !headers.is_empty() {
        base.insert("headers".into(), Value::Object(headers));
    }
    if rule.retry.is_some() {
        out.warn(
            res,
            &format!("{p}.retry"),
            "field is accepted but not enforced yet: the mesh's default retry policy applies",
        );
    }
    if rule.session_persistence.is_some() {
        out.warn(
            res,
            &format!("{p}.sessionPersistence"),
            "field is accepted but not enforced yet",
        );
    }
    if let Some(t) = timeout(rule) {
        base.insert("timeout".into(), json!(t));
    }
    if a.redirect.is_none() || fail {
        backends_json(rc, p, &rule.backend_refs, fail, issue, &mut base);
        if !mirrors.is_empty() && !base.contains_key("directResponse") {
            base.insert("mirrors".into(), Value::Array(mirrors));
        }
    }
    a.base = base;
    a
}

/// How a filter is applied.
enum FilterUse {
    Redirect,
    Rewrite,
    Mirror,
    Done,
    Fail,
}

fn filter(f: &HttpFilter, headers: &mut Map<String, Value>) -> FilterUse {
    match f.kind.as_str() {
        "RequestHeaderModifier" => {
            if let Some(m) = &f.request_header_modifier {
                headers.insert("request".into(), header_ops(m));
            }
            FilterUse::Done
        }
        "ResponseHeaderModifier" => {
            if let Some(m) = &f.response_header_modifier {
                headers.insert("response".into(), header_ops(m));
            }
            FilterUse::Done
        }
        "RequestRedirect" => FilterUse::Redirect,
        "URLRewrite" => FilterUse::Rewrite,
        "RequestMirror" => FilterUse::Mirror,
        "CORS" => {
            if let Some(c) = &f.cors {
                headers.insert("corsPolicy".into(), super::cors::policy(c));
            }
            FilterUse::Done
        }
        _ => FilterUse::Fail,
    }
}

/// Records the first unresolved reference.
pub fn note(issue: &mut Issue, path: String, c: Condition) {
    if issue.is_none() {
        *issue = Some((path, c));
    }
}

/// Weighted destinations; a share of 500s for the weight of invalid backends (GW
/// `httproute_types.go` `BackendRefs`: requests that would go to an invalid backend get
/// 500, in proportion; Istio answers 500 when nothing is left).
fn backends_json(
    rc: &RuleCtx,
    p: &str,
    refs: &[BackendRef],
    fail: bool,
    issue: &mut Issue,
    base: &mut Map<String, Value>,
) {
    let RuleCtx { ctx, res, enforce } = *rc;
    let (mut route, mut bad, mut total) = (Vec::new(), 0i64, 0i64);
    for (bi, b) in refs.iter().enumerate() {
        let w = b.weight.unwrap_or(1).max(0);
        total += w;
        match backends::resolve(ctx, res, &b.object(), enforce) {
            Ok(t) if w > 0 => {
                let mut d = json!({"destination": destination(&t), "weight": w});
                let mut h = Map::new();
                for f in &b.filters {
                    let _ = filter(f, &mut h);
                }
                if !h.is_empty() {
                    d["headers"] = Value::Object(h);
                }
                route.push(d);
            }
            Ok(_) => {}
            Err(c) => {
                bad += w;
                note(issue, format!("{p}.backendRefs[{bi}]"), c);
            }
        }
    }
    if fail || route.is_empty() {
        base.insert("directResponse".into(), json!({"status": 500}));
        return;
    }
    base.insert("route".into(), Value::Array(route));
    if bad > 0 {
        let pct = 100.0 * bad as f64 / total as f64;
        base.insert(
            "fault".into(),
            json!({"abort": {"httpStatus": 500, "percentage": {"value": pct}}}),
        );
    }
}

fn destination(t: &Target) -> Value {
    json!({"host": t.host, "port": {"number": t.port}})
}

fn mirror_percent(m: &crate::model::gateway_api::routes::RequestMirror) -> f64 {
    match (&m.percent, &m.fraction) {
        (Some(p), _) => *p as f64,
        (None, Some(f)) => 100.0 * f.numerator as f64 / f.denominator.unwrap_or(100).max(1) as f64,
        (None, None) => 100.0,
    }
}

/// Istio: `timeouts.request` is the route timeout, and `backendRequest`, without a retry
/// policy, replaces it (`conversion.go` `convertHTTPRoute`).
fn timeout(rule: &HttpRule) -> Option<String> {
    let t = rule.timeouts.as_ref()?;
    let pick = t.backend_request.as_ref().or(t.request.as_ref())?;
    super::timeouts::parse_duration(pick)
        .ok()
        .map(|ms| format!("{ms}ms"))
}

/// `set`, `add` and `remove` of a header modifier; of a repeated name the first counts
/// (Istio `headerListToMap`).
fn header_ops(m: &HeaderModifier) -> Value {
    let pairs = |hs: &[crate::model::gateway_api::routes::Header]| {
        let mut o = Map::new();
        for h in hs {
            o.entry(h.name.to_ascii_lowercase())
                .or_insert(json!(h.value));
        }
        Value::Object(o)
    };
    json!({"set": pairs(&m.set), "add": pairs(&m.add), "remove": m.remove.iter().map(|n| n.to_ascii_lowercase()).collect::<Vec<_>>()})
}

/// The path match of `m` with the API's defaults (`PathPrefix /`); a prefix's trailing
/// `/` is ignored.
fn path_of(m: &HttpMatch) -> (PathMatchType, String) {
    let kind = m.path.as_ref().and_then(|p| p.kind).unwrap_or_default();
    let value = m
        .path
        .as_ref()
        .and_then(|p| p.value.clone())
        .unwrap_or_else(|| "/".into());
    if kind == PathMatchType::PathPrefix {
        let t = value.trim_end_matches('/');
        return (
            kind,
            if t.is_empty() {
                "/".into()
            } else {
                t.to_string()
            },
        );
    }
    (kind, value)
}

/// One VirtualService match for part of a path match.
#[derive(Clone, Copy)]
pub enum Piece<'a> {
    /// The whole path (Exact, or a prefix's own path).
    Exact(&'a str),
    /// Below a prefix: `<prefix>/...`.
    Below(&'a str),
    /// Every path (`PathPrefix /`).
    Root,
    /// A regular expression.
    Regex(&'a str),
}

impl Piece<'_> {
    fn uri(&self) -> Value {
        match self {
            Piece::Exact(v) => json!({"exact": v}),
            Piece::Below(v) => json!({"prefix": format!("{v}/")}),
            Piece::Root => json!({"prefix": "/"}),
            Piece::Regex(v) => json!({"regex": v}),
        }
    }

    /// The replacement for the matched part under `ReplacePrefixMatch` `r` (GW
    /// `HTTPPathModifier`: `/foo/bar` with `/xyz` → `/xyz/bar`, `/foo` → `/xyz`, and with
    /// `/` or "": `/foo/bar` → `/bar`, `/foo` → `/`).
    fn replacement(&self, r: &str) -> String {
        let t = r.trim_end_matches('/');
        match self {
            Piece::Exact(_) if t.is_empty() => "/".into(),
            Piece::Exact(_) => t.into(),
            _ => format!("{t}/"),
        }
    }
}

fn pieces(kind: PathMatchType, value: &str) -> Vec<Piece<'_>> {
    match kind {
        PathMatchType::Exact => vec![Piece::Exact(value)],
        PathMatchType::RegularExpression => vec![Piece::Regex(value)],
        PathMatchType::PathPrefix if value == "/" => vec![Piece::Root],
        PathMatchType::PathPrefix => vec![Piece::Exact(value), Piece::Below(value)],
    }
}

/// The VirtualService match for `m` with `uri`.
pub fn match_json(m: &HttpMatch, uri: Value) -> Value {
    let mut o = json!({"uri": uri});
    if !m.headers.is_empty() {
        o["headers"] = values(&m.headers, true);
    }
    if !m.query_params.is_empty() {
        o["queryParams"] = values(&m.query_params, false);
    }
    if let Some(method) = &m.method {
        o["method"] = json!({"exact": method});
    }
    o
}

/// Header or query matches; of a repeated name only the first counts (GW
/// `HTTPHeaderMatch`).
pub fn values(ms: &[ValueMatch], lowercase: bool) -> Value {
    let mut o = Map::new();
    for m in ms {
        let name = if lowercase {
            m.name.to_ascii_lowercase()
        } else {
            m.name.clone()
        };
        let v = match m.kind.unwrap_or_default() {
            ValueMatchType::Exact => json!({"exact": m.value}),
            ValueMatchType::RegularExpression => json!({"regex": m.value}),
        };
        o.entry(name).or_insert(v);
    }
    Value::Object(o)
}

/// `RequestRedirect` (Istio `createRedirectFilter`: an unset port is the scheme's default
/// when the scheme is set, else the request's port; status 302 by default).
fn redirect_json(r: &RequestRedirect, piece: Piece) -> Value {
    let mut o = json!({"redirectCode": r.status_code.unwrap_or(302)});
    if let Some(s) = &r.scheme {
        o["scheme"] = json!(s);
    }
    if let Some(h) = &r.hostname {
        o["authority"] = json!(h);
    }
    match (r.port, &r.scheme) {
        (Some(p), _) => o["port"] = json!(p),
        (None, Some(_)) => o["derivePort"] = json!("FROM_PROTOCOL_DEFAULT"),
        (None, None) => o["derivePort"] = json!("FROM_REQUEST_PORT"),
    }
    match path_modifier(r.path.as_ref(), piece) {
        Some(PathOut::Full(p)) => o["uri"] = json!(p),
        // An exact match's whole path is its prefix: the replacement is the new path.
        Some(PathOut::Prefix(p)) if matches!(piece, Piece::Exact(_)) => o["uri"] = json!(p),
        Some(PathOut::Prefix(p)) => o["prefixRewrite"] = json!(p),
        None => {}
    }
    o
}

/// `URLRewrite`: Host, and the path (a full replacement as a regex rewrite of the whole
/// path, as Istio `createRewriteFilter` does).
fn rewrite_json(r: &UrlRewrite, piece: Piece) -> Value {
    let mut o = json!({});
    if let Some(h) = &r.hostname {
        o["authority"] = json!(h);
    }
    match path_modifier(r.path.as_ref(), piece) {
        Some(PathOut::Full(p)) => o["uriRegexRewrite"] = json!({"match": "/.*", "rewrite": p}),
        Some(PathOut::Prefix(p)) => o["uri"] = json!(p),
        None => {}
    }
    o
}

enum PathOut {
    Full(String),
    Prefix(String),
}

fn path_modifier(m: Option<&PathModifier>, piece: Piece) -> Option<PathOut> {
    let m = m?;
    match m.kind.as_str() {
        "ReplaceFullPath" => m.replace_full_path.clone().map(PathOut::Full),
        "ReplacePrefixMatch" => m
            .replace_prefix_match
            .as_deref()
            .map(|r| PathOut::Prefix(piece.replacement(r))),
        _ => None,
    }
}
