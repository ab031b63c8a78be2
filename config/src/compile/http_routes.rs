//! VirtualService HTTP rules → compiled [`Route`]s for one listener context (the mesh, or
//! a set of gateways): config-time match filters (`sourceLabels`, `sourceNamespace`,
//! `gateways`), delegation, destinations resolved to clusters, and every policy with its
//! Istio default.

use super::cluster::ClusterKey;
use super::matcher::{compile_http_match, RegexCache, RouteMatch};
use super::proxy_settings::ProxySettings;
use super::registry::Registry;
use super::route::*;
use super::snapshot::ClusterId;
use crate::diag::{Diagnostics, Severity};
use crate::host;
use crate::model::virtual_service as vs;
use crate::model::{Deferred, Kind, Resource};
use crate::validate::diag_for;
use http::header::{HeaderName, HeaderValue};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The listener context routes are compiled for.
#[derive(Clone, Debug)]
pub enum RouteContext {
    /// Sidecar (`mesh`).
    Mesh,
    /// These gateways (`namespace/name`).
    Gateways(HashSet<String>),
}

/// Istio: a sidecar's routes come from the VirtualServices whose hosts its Sidecar
/// imports.
pub(crate) fn sidecar_sees(proxy: &ProxySettings, r: &Resource, v: &vs::VirtualService) -> bool {
    proxy
        .sidecar
        .as_ref()
        .is_none_or(|s| s.imports_any(&r.namespace, &v.hosts))
}

impl RouteContext {
    /// The VirtualServices a route table of this context is made from, in document order:
    /// with hosts, bound to this context's gateways (or the mesh), and exported to `proxy`.
    pub fn virtual_services<'r>(
        &'r self,
        resources: &'r [Resource],
        proxy: &'r ProxySettings,
    ) -> impl Iterator<Item = (&'r Resource, Cow<'r, vs::VirtualService>)> + 'r {
        resources.iter().filter_map(move |r| {
            let bound = |d: &Deferred| match self {
                RouteContext::Mesh => d.on_mesh,
                RouteContext::Gateways(_) => d.on_gateways,
            };
            if Deferred::skips(r, bound) {
                return None; // not bound here: not worth parsing again
            }
            let v = r.as_virtual_service()?;
            let used = !v.hosts.is_empty()
                && self.admits(&v.gateways, &r.namespace)
                && proxy.sees(&r.namespace, &v.export_to)
                && (!matches!(self, RouteContext::Mesh) || sidecar_sees(proxy, r, &v));
            used.then_some((r, v))
        })
    }

    /// Whether a `gateways` list (as written in `vs_ns`) applies to this context. An empty
    /// list means `mesh`.
    pub fn admits(&self, gateways: &[String], vs_ns: &str) -> bool {
        match self {
            RouteContext::Mesh => gateways.is_empty() || gateways.iter().any(|g| g == "mesh"),
            RouteContext::Gateways(set) => gateways
                .iter()
                .any(|g| g != "mesh" && set.contains(&qualify_gateway(g, vs_ns))),
        }
    }
}

/// `name` → `vs_ns/name`; `ns/name` unchanged; legacy `name.ns.svc...` → `ns/name`.
pub fn qualify_gateway(g: &str, vs_ns: &str) -> String {
    if g.contains('/') {
        g.to_string()
    } else if let Some((name, rest)) = g.split_once('.') {
        format!("{}/{name}", rest.split('.').next().unwrap_or(rest))
    } else {
        format!("{vs_ns}/{g}")
    }
}

/// Compiles VirtualService rules against the registry and clusters.
pub struct RouteCompiler<'a> {
    /// Services.
    pub registry: &'a Registry,
    /// Cluster lookup.
    pub clusters: &'a HashMap<ClusterKey, ClusterId>,
    /// Consistent-hash clusters (retries keep previous hosts by default for them).
    pub consistent_hash: &'a HashSet<ClusterId>,
    /// This proxy.
    pub proxy: &'a ProxySettings,
    /// All resources (delegates are looked up here).
    pub resources: &'a [Resource],
    /// Shared regex compilation.
    pub regex: &'a mut RegexCache,
    /// Shared copies of repeated values (route policies).
    pub interner: &'a mut super::intern::Interner,
    /// Compile-time warnings.
    pub warnings: &'a mut Diagnostics,
}

impl RouteCompiler<'_> {
    /// The routes of `vs` (declared by `res`) for `ctx`, in order.
    pub fn virtual_service(
        &mut self,
        res: &Resource,
        vsv: &vs::VirtualService,
        ctx: &RouteContext,
    ) -> Vec<Route> {
        let mut out = Vec::new();
        for (i, rule) in vsv.http.iter().enumerate() {
            let origin = format!("{}#http[{i}]", res.id());
            if let Some(d) = &rule.delegate {
                let ns = if d.namespace.is_empty() {
                    res.namespace.as_str()
                } else {
                    d.namespace.as_str()
                };
                let resources = self.resources;
                let Some((dres, dvs)) = resources
                    .iter()
                    .filter(|r| {
                        r.kind == Kind::VirtualService && r.namespace == ns && r.name == d.name
                    })
                    .find_map(|r| {
                        let v = r.as_virtual_service()?;
                        v.hosts.is_empty().then_some((r, v))
                    })
                else {
                    self.warn(res, &format!("spec.http[{i}].delegate"), format!("delegate {ns}/{} not found or not a delegate VirtualService; rule skipped", d.name));
                    continue;
                };
                for (j, leaf) in dvs.http.iter().enumerate() {
                    let Some(merged) = merge_delegate(rule, leaf) else {
                        self.warn(
                            dres,
                            &format!("spec.http[{j}]"),
                            format!(
                                "match conflicts with the root rule {}; rule skipped",
                                origin
                            ),
                        );
                        continue;
                    };
                    let o = format!("{}#http[{j}] via {origin}", dres.id());
                    if let Some(r) = self.rule(dres, &merged, ctx, &vsv.gateways, o) {
                        out.push(r);
                    }
                }
                continue;
            }
            if let Some(r) = self.rule(res, rule, ctx, &vsv.gateways, origin) {
                out.push(r);
            }
        }
        // Built by pushes: without this a two-rule VirtualService keeps room for four
        // routes (Vec's first growth), for the life of the snapshot.
        out.shrink_to_fit();
        out
    }

    fn warn(&mut self, res: &Resource, path: &str, msg: String) {
        self.warnings
            .push(diag_for(res, Severity::Warning, path, msg));
    }

    fn rule(
        &mut self,
        res: &Resource,
        rule: &vs::HttpRoute,
        ctx: &RouteContext,
        vs_gateways: &[String],
        origin: String,
    ) -> Option<Route> {
        let ns = res.namespace.as_str();
        let mut matches = Vec::new();
        let had_matches = !rule.matches.is_empty();
        for m in &rule.matches {
            let Some(m) = m else {
                matches.push(RouteMatch::default());
                continue;
            };
            // Config-time filters (Istio evaluates these when generating a proxy's routes).
            let gws: &[String] = if m.gateways.is_empty() {
                vs_gateways
            } else {
                &m.gateways
            };
            if !ctx.admits(gws, ns) {
                continue;
            }
            if !self.proxy.selected_by(&m.source_labels) {
                continue;
            }
            if !m.source_namespace.is_empty() && m.source_namespace != self.proxy.namespace {
                continue;
            }
            match self.compile_match(m) {
                Ok(cm) => matches.push(cm),
                Err(e) => {
                    self.warn(res, "spec.http", format!("match skipped: {e}"));
                }
            }
        }
        // Every match filtered out: the whole rule is absent for this proxy (not a catch-all).
        if had_matches && matches.is_empty() {
            return None;
        }
        if matches.iter().any(RouteMatch::is_catch_all) {
            matches.clear();
        }
        let action = if let Some(rd) = &rule.redirect {
            let code = rd.redirect_code.unwrap_or(301);
            if ![301, 302, 303, 307, 308].contains(&code) {
                return None; // Istio drops routes with other 3xx codes (Action = nil).
            }
            RouteAction::Redirect(Box::new(Redirect {
                code: code as u16,
                scheme: rd.scheme.clone().filter(|s| !s.is_empty()),
                authority: rd.authority.clone().filter(|s| !s.is_empty()),
                port: match (rd.port, rd.derive_port) {
                    (Some(p), _) => RedirectPort::Fixed(p as u16),
                    (None, Some(vs::RedirectPortSelection::FromProtocolDefault)) => {
                        RedirectPort::FromProtocolDefault
                    }
                    (None, Some(vs::RedirectPortSelection::FromRequestPort)) => {
                        RedirectPort::FromRequestPort
                    }
                    (None, None) => RedirectPort::Keep,
                },
                path: match (&rd.uri, &rd.prefix_rewrite) {
                    (Some(u), _) if !u.is_empty() => RedirectPath::Replace(u.clone()),
                    (_, Some(p)) if !p.is_empty() => RedirectPath::PrefixRewrite(p.clone()),
                    _ => RedirectPath::Keep,
                },
            }))
        } else if let Some(dr) = &rule.direct_response {
            let body = match &dr.body {
                Some(vs::HttpBody {
                    string: Some(s), ..
                }) => bytes::Bytes::from(s.clone()),
                Some(vs::HttpBody { bytes: Some(b), .. }) => {
                    bytes::Bytes::from(crate::validate::decode_base64(b).unwrap_or_default())
                }
                _ => bytes::Bytes::new(),
            };
            RouteAction::DirectResponse(Box::new(DirectResponse {
                status: dr.status.min(600) as u16,
                body,
                cluster: None,
            }))
        } else {
            RouteAction::Forward(self.weighted(&rule.route, ns))
        };
        let consistent_hash = match &action {
            RouteAction::Forward(w) => w.destinations.iter().any(|d| match &d.target {
                ClusterChoice::Fixed(c) => self.consistent_hash.contains(c),
                ClusterChoice::ByPort(l) => l.iter().any(|(_, c)| self.consistent_hash.contains(c)),
                ClusterChoice::Missing { .. } => false,
            }),
            _ => false,
        };
        let (request_headers, response_headers, header_authority) =
            header_ops(rule.headers.as_deref());
        let rewrite_authority = rule
            .rewrite
            .as_ref()
            .and_then(|r| r.authority.as_deref())
            .filter(|a| !a.is_empty())
            .and_then(|a| HeaderValue::from_str(a).ok())
            .or(header_authority);
        let rewrite = match &rule.rewrite {
            None if rewrite_authority.is_none() => None,
            _ => {
                let rw = rule.rewrite.as_ref();
                Some(Rewrite {
                    uri: rw.and_then(|r| r.uri.clone()).filter(|u| !u.is_empty()),
                    uri_regex: match rw.and_then(|r| r.uri_regex_rewrite.as_ref()) {
                        Some(rr) => match self.regex.unanchored(&rr.pattern) {
                            Ok(re) => Some((re, envoy_to_rust_replacement(&rr.rewrite))),
                            Err(e) => {
                                self.warn(res, "spec.http", format!("rewrite skipped: {e}"));
                                None
                            }
                        },
                        None => None,
                    },
                    authority: rewrite_authority,
                })
            }
        };
        let mut mirrors = Vec::new();
        if let Some(m) = &rule.mirror {
            let pct = rule
                .mirror_percentage
                .map(|p| p.value)
                .or(rule.mirror_percent.map(|p| p as f64))
                .unwrap_or(100.0); // Istio: mirrorPercentage absent = 100%
            self.push_mirror(&mut mirrors, m, ns, pct);
        }
        for m in &rule.mirrors {
            if let Some(d) = &m.destination {
                let pct = m.percentage.map(|p| p.value).unwrap_or(100.0);
                self.push_mirror(&mut mirrors, d, ns, pct);
            }
        }
        let policy = RoutePolicy {
            timeout: rule.timeout.filter(|t| !t.is_zero()).map(|t| t.to_std()),
            retry: retry_policy(rule.retries.as_ref(), consistent_hash),
            fault: rule.fault.as_deref().and_then(fault),
            rewrite,
            request_headers,
            response_headers,
            mirrors,
            cors: rule.cors_policy.as_ref().map(|c| self.cors(c)),
        };
        Some(Route {
            name: rule.name.as_str().into(),
            origin,
            matches: self.interner.matches(matches),
            action,
            policy: self.interner.policy(policy),
        })
    }

    fn push_mirror(&mut self, out: &mut Vec<Mirror>, d: &vs::Destination, ns: &str, pct: f64) {
        let per_million = per_million(pct);
        if per_million == 0 {
            return; // Istio: a 0% mirror is no mirror.
        }
        let (host, target) = self.resolve(d, ns);
        out.push(Mirror {
            target,
            host,
            per_million,
        });
    }

    fn compile_match(&mut self, m: &vs::HttpMatchRequest) -> Result<RouteMatch, String> {
        compile_http_match(self.regex, m)
    }

    /// Resolves a destination to its qualified host and cluster(s).
    pub fn resolve(&self, d: &vs::Destination, ns: &str) -> (String, ClusterChoice) {
        let host = host::qualify(&d.host, ns);
        let Some(si) = self.registry.resolve(&host) else {
            return (
                host.clone(),
                ClusterChoice::Missing {
                    reason: format!("no service {host}"),
                },
            );
        };
        let svc = &self.registry.services[si];
        let service: Arc<str> = svc.host.as_str().into();
        let subset: Option<Arc<str>> = (!d.subset.is_empty()).then(|| d.subset.as_str().into());
        let key = |port: u16| ClusterKey {
            service: service.clone(),
            port,
            subset: subset.clone(),
        };
        let choice = match d.port.as_ref().map(|p| p.number) {
            Some(n) if n > 0 => match self.clusters.get(&key(n as u16)) {
                Some(c) => ClusterChoice::Fixed(*c),
                None => ClusterChoice::Missing {
                    reason: match &subset {
                        Some(s) if svc.port(n as u16).is_some() => {
                            format!("no subset {s} for {host}")
                        }
                        _ => format!("{host} has no port {n}"),
                    },
                },
            },
            _ => {
                let list: Vec<(u16, ClusterId)> = svc
                    .ports
                    .iter()
                    .filter_map(|p| self.clusters.get(&key(p.number)).map(|c| (p.number, *c)))
                    .collect();
                match list.len() {
                    0 => ClusterChoice::Missing {
                        reason: match &subset {
                            Some(s) => format!("no subset {s} for {host}"),
                            None => format!("{host} has no ports"),
                        },
                    },
                    1 => ClusterChoice::Fixed(list[0].1),
                    _ => ClusterChoice::ByPort(list),
                }
            }
        };
        (host, choice)
    }

    fn weighted(&mut self, route: &[vs::HttpRouteDestination], ns: &str) -> WeightedClusters {
        let single = route.len() == 1;
        let mut destinations = Vec::new();
        for d in route {
            let Some(dest) = &d.destination else { continue };
            // Istio: a single destination gets all traffic whatever its weight; with several,
            // weight-0 entries receive nothing.
            let weight = if single {
                1
            } else {
                d.weight.clamp(0, i32::MAX as i64) as u32
            };
            if weight == 0 {
                continue;
            }
            let (host, target) = self.resolve(dest, ns);
            let (request_headers, response_headers, authority) = header_ops(d.headers.as_deref());
            destinations.push(WeightedDestination {
                weight,
                target,
                host,
                subset: dest.subset.clone(),
                headers: DestinationHeaders::boxed(request_headers, response_headers, authority),
            });
        }
        let total_weight = destinations.iter().map(|d| d.weight).sum();
        WeightedClusters {
            destinations: self.interner.destinations(destinations),
            total_weight,
        }
    }

    fn cors(&mut self, c: &vs::CorsPolicy) -> Cors {
        let mut origins = Vec::new();
        for o in &c.allow_origins {
            if let Ok(m) = self.regex.string_match(o) {
                origins.push(m);
            }
        }
        for o in &c.allow_origin {
            origins.push(super::matcher::StringMatcher::Exact(o.as_str().into()));
        }
        let join = |l: &[String]| {
            (!l.is_empty())
                .then(|| HeaderValue::from_str(&l.join(",")).ok())
                .flatten()
        };
        Cors {
            origins,
            allow_methods: join(&c.allow_methods),
            allow_headers: join(&c.allow_headers),
            expose_headers: join(&c.expose_headers),
            max_age: c.max_age.and_then(|a| {
                HeaderValue::from_str(&(a.as_nanos() / 1_000_000_000).to_string()).ok()
            }),
            allow_credentials: c.allow_credentials,
            forward_unmatched_preflights: c.unmatched_preflights
                != Some(vs::UnmatchedPreflights::Ignore),
        }
    }
}

/// Envoy writes capture references as `\1`; Rust's regex uses `${1}`.
fn envoy_to_rust_replacement(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() && b[i + 1].is_ascii_digit() {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            out.push_str("${");
            out.push_str(&s[start..end]);
            out.push('}');
            i = end;
        } else if b[i] == b'$' {
            out.push_str("$$");
            i += 1;
        } else {
            let ch = s[i..].chars().next().unwrap_or('?');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Envoy fractional percent per million (`value * 10000`).
fn per_million(pct: f64) -> u32 {
    if pct.is_nan() || pct <= 0.0 {
        0
    } else {
        ((pct * 10_000.0).round() as u64).min(1_000_000) as u32
    }
}

/// Header operations of a `Headers` block: (request, response, authority from request
/// `set`/`add` of `:authority`/`host`; `set` wins over `add`).
fn header_ops(h: Option<&vs::Headers>) -> (HeaderOps, HeaderOps, Option<HeaderValue>) {
    let mut authority = None;
    let Some(h) = h else {
        return (HeaderOps::default(), HeaderOps::default(), None);
    };
    let mut convert = |ops: &Option<vs::HeaderOperations>, request: bool| -> HeaderOps {
        let mut out = HeaderOps::default();
        let Some(ops) = ops else { return out };
        for (set, map) in [(false, &ops.add), (true, &ops.set)] {
            for (k, v) in map {
                let lower = k.to_ascii_lowercase();
                if request && (lower == ":authority" || lower == "host") {
                    if set || authority.is_none() {
                        authority = HeaderValue::from_str(v).ok();
                    }
                    continue;
                }
                let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(lower.as_bytes()),
                    HeaderValue::from_str(v),
                ) else {
                    continue;
                };
                if set {
                    out.set.push((name, value));
                } else {
                    out.add.push((name, value));
                }
            }
        }
        for k in &ops.remove {
            // Istio drops pseudo-headers and `host` from remove lists.
            if let Ok(name) = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()) {
                if name != http::header::HOST {
                    out.remove.push(name);
                }
            }
        }
        out
    };
    let req = convert(&h.request, true);
    let resp = convert(&h.response, false);
    (req, resp, authority)
}

/// The effective retry policy (`HTTPRoute.retries` over Istio's default).
pub fn retry_policy(r: Option<&vs::HttpRetry>, consistent_hash: bool) -> RetryPolicy {
    let mut p = RetryPolicy {
        // Istio: retryIgnorePreviousHosts defaults to true, except with consistent hashing.
        ignore_previous_hosts: !consistent_hash,
        ..RetryPolicy::default()
    };
    let Some(r) = r else { return p };
    p.attempts = r.attempts.clamp(0, u32::MAX as i64) as u32;
    if p.attempts == 0 {
        return p;
    }
    // Istio: an empty retryOn is unset, so the default conditions stay.
    if let Some(on) = r.retry_on.as_deref().filter(|s| !s.is_empty()) {
        let mut bits = 0;
        let mut codes = Vec::new();
        for tok in on.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if let Some(b) = RetryOn::token(tok) {
                bits |= b;
            } else if let Ok(code) = tok.parse::<u16>() {
                // Istio moves numeric codes into retriable_status_codes.
                codes.push(code);
                bits |= RetryOn::RETRIABLE_STATUS_CODES;
            }
        }
        p.on = RetryOn(bits);
        p.status_codes = codes;
    }
    p.per_try_timeout = r
        .per_try_timeout
        .filter(|d| !d.is_zero())
        .map(|d| d.to_std());
    if let Some(b) = r.backoff {
        p.backoff_base = b.to_std();
        // Envoy: max interval defaults to 10× the base.
        p.backoff_max = b.to_std() * 10;
    }
    if let Some(ip) = r.retry_ignore_previous_hosts {
        p.ignore_previous_hosts = ip;
    }
    p
}

/// Fault injection; unset percentages mean "never" (Istio).
fn fault(f: &vs::HttpFaultInjection) -> Option<Fault> {
    let delay = f.delay.as_ref().and_then(|d| {
        let dur = d.fixed_delay?.to_std();
        let pm = match (&d.percentage, d.percent) {
            (Some(p), _) => per_million(p.value),
            (None, Some(pc)) => per_million(pc as f64),
            (None, None) => 0,
        };
        (pm > 0).then_some((dur, pm))
    });
    let abort = f.abort.as_ref().and_then(|a| {
        let kind = if let Some(s) = a.http_status {
            Abort::Http(s.clamp(200, 600) as u16)
        } else if let Some(g) = &a.grpc_status {
            Abort::Grpc(
                crate::validate::names::GRPC_STATUS_NAMES
                    .iter()
                    .position(|n| n == g)? as u32,
            )
        } else {
            return None;
        };
        let pm = a.percentage.map(|p| per_million(p.value)).unwrap_or(0);
        (pm > 0).then_some((kind, pm))
    });
    (delay.is_some() || abort.is_some()).then_some(Fault { delay, abort })
}

/// Istio delegation (`mergeHTTPRoute`): the leaf's fields win; what the leaf leaves unset
/// comes from the root rule; matches are merged pairwise (root ∧ leaf), and a pair whose
/// conditions conflict is dropped. `None` when no pair survives.
fn merge_delegate(root: &vs::HttpRoute, leaf: &vs::HttpRoute) -> Option<vs::HttpRoute> {
    let mut out = leaf.clone();
    let roots: Vec<Option<&vs::HttpMatchRequest>> = if root.matches.is_empty() {
        vec![None]
    } else {
        root.matches.iter().map(|m| m.as_ref()).collect()
    };
    let leaves: Vec<Option<&vs::HttpMatchRequest>> = if leaf.matches.is_empty() {
        vec![None]
    } else {
        leaf.matches.iter().map(|m| m.as_ref()).collect()
    };
    let mut merged = Vec::new();
    for r in &roots {
        for l in &leaves {
            match (r, l) {
                (None, None) => merged.push(None),
                (Some(r), None) => merged.push(Some((*r).clone())),
                (None, Some(l)) => merged.push(Some((*l).clone())),
                (Some(r), Some(l)) => {
                    if let Some(m) = merge_match(r, l) {
                        merged.push(Some(m));
                    }
                }
            }
        }
    }
    if merged.is_empty() {
        return None;
    }
    out.matches = if merged.iter().all(Option::is_none) {
        Vec::new()
    } else {
        merged
    };
    out.delegate = None;
    if out.rewrite.is_none() {
        out.rewrite = root.rewrite.clone();
    }
    if out.timeout.is_none() {
        out.timeout = root.timeout;
    }
    if out.retries.is_none() {
        out.retries = root.retries.clone();
    }
    if out.fault.is_none() {
        out.fault = root.fault.clone();
    }
    if out.mirror.is_none() && out.mirrors.is_empty() {
        out.mirror = root.mirror.clone();
        out.mirrors = root.mirrors.clone();
        out.mirror_percentage = root.mirror_percentage;
        out.mirror_percent = root.mirror_percent;
    }
    if out.cors_policy.is_none() {
        out.cors_policy = root.cors_policy.clone();
    }
    if out.headers.is_none() {
        out.headers = root.headers.clone();
    }
    if out.name.is_empty() {
        out.name = root.name.clone();
    }
    Some(out)
}

fn merge_match(
    root: &vs::HttpMatchRequest,
    leaf: &vs::HttpMatchRequest,
) -> Option<vs::HttpMatchRequest> {
    let mut out = leaf.clone();
    out.name = match (root.name.is_empty(), leaf.name.is_empty()) {
        (false, false) => format!("{}-{}", root.name, leaf.name),
        (false, true) => root.name.clone(),
        _ => leaf.name.clone(),
    };
    match (&root.uri, &leaf.uri) {
        (Some(r), None) => out.uri = Some(r.clone()),
        (Some(r), Some(l)) if !uri_within(r, l) => return None,
        _ => {}
    }
    for (r, o) in [
        (&root.scheme, &mut out.scheme),
        (&root.method, &mut out.method),
        (&root.authority, &mut out.authority),
    ] {
        match (r, &*o) {
            (Some(r), None) => *o = Some(r.clone()),
            (Some(r), Some(l)) if r != l => return None,
            _ => {}
        }
    }
    for (r, o) in [
        (&root.headers, &mut out.headers),
        (&root.query_params, &mut out.query_params),
        (&root.without_headers, &mut out.without_headers),
    ] {
        for (k, v) in r {
            match o.get(k) {
                Some(existing) if existing != v => return None,
                _ => {
                    o.insert(k.clone(), v.clone());
                }
            }
        }
    }
    match (root.port, leaf.port) {
        (Some(r), None) => out.port = Some(r),
        (Some(r), Some(l)) if r != l => return None,
        _ => {}
    }
    for (k, v) in &root.source_labels {
        match out.source_labels.get(k) {
            Some(existing) if existing != v => return None,
            _ => {
                out.source_labels.insert(k.clone(), v.clone());
            }
        }
    }
    if out.source_namespace.is_empty() {
        out.source_namespace = root.source_namespace.clone();
    } else if !root.source_namespace.is_empty() && root.source_namespace != out.source_namespace {
        return None;
    }
    if out.gateways.is_empty() {
        out.gateways = root.gateways.clone();
    }
    out.ignore_uri_case = root.ignore_uri_case || leaf.ignore_uri_case;
    Some(out)
}

/// Istio requires a delegate's URI condition to be at least as strict as the root's.
fn uri_within(
    root: &crate::model::common::StringMatch,
    leaf: &crate::model::common::StringMatch,
) -> bool {
    if root == leaf {
        return true;
    }
    match (&root.prefix, &root.exact) {
        (Some(rp), _) => leaf
            .prefix
            .as_deref()
            .or(leaf.exact.as_deref())
            .is_some_and(|l| l.starts_with(rp.as_str())),
        (None, Some(_)) => false,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn replacement_syntax() {
        assert_eq!(
            envoy_to_rust_replacement(r"\2/instance/\1"),
            "${2}/instance/${1}"
        );
        assert_eq!(envoy_to_rust_replacement("a$b"), "a$$b");
    }

    #[test]
    fn per_million_rounding() {
        assert_eq!(per_million(100.0), 1_000_000);
        assert_eq!(per_million(0.0001), 1);
        assert_eq!(per_million(50.5), 505_000);
        assert_eq!(per_million(0.0), 0);
    }

    #[test]
    fn retry_numeric_codes_move_to_status_codes() {
        let r = vs::HttpRetry {
            attempts: 3,
            retry_on: Some("5xx,503,connect-failure".into()),
            per_try_timeout: Some(crate::Duration::from_secs(2)),
            backoff: Some(crate::Duration::from_millis(10)),
            ..Default::default()
        };
        let p = retry_policy(Some(&r), false);
        assert_eq!(p.attempts, 3);
        assert!(p.on.has(RetryOn::FIVE_XX));
        assert!(p.on.has(RetryOn::RETRIABLE_STATUS_CODES));
        assert_eq!(p.status_codes, vec![503]);
        assert_eq!(p.per_try_timeout, Some(Duration::from_secs(2)));
        assert_eq!(p.backoff_max, Duration::from_millis(100));
        assert!(p.ignore_previous_hosts);
    }

    #[test]
    fn attempts_without_retry_on_keep_default_conditions() {
        let r = vs::HttpRetry {
            attempts: 5,
            ..Default::default()
        };
        let p = retry_policy(Some(&r), true);
        assert_eq!(p.attempts, 5);
        assert_eq!(p.on, RetryPolicy::default().on);
        assert!(
            !p.ignore_previous_hosts,
            "consistent hashing keeps previous hosts"
        );
        let off = retry_policy(Some(&vs::HttpRetry::default()), false);
        assert_eq!(off.attempts, 0);
    }

    #[test]
    fn fault_without_percentage_never_fires() {
        let f = vs::HttpFaultInjection {
            delay: Some(vs::FaultDelay {
                fixed_delay: Some(crate::Duration::from_secs(1)),
                ..Default::default()
            }),
            abort: None,
        };
        assert_eq!(fault(&f), None);
        let f2 = vs::HttpFaultInjection {
            delay: None,
            abort: Some(vs::FaultAbort {
                grpc_status: Some("UNAVAILABLE".into()),
                percentage: Some(crate::model::common::Percent { value: 10.0 }),
                ..Default::default()
            }),
        };
        assert_eq!(fault(&f2).unwrap().abort, Some((Abort::Grpc(14), 100_000)));
    }

    #[test]
    fn gateway_names_are_qualified() {
        assert_eq!(qualify_gateway("gw", "ns"), "ns/gw");
        assert_eq!(qualify_gateway("other/gw", "ns"), "other/gw");
        assert_eq!(
            qualify_gateway("gw.prod.svc.cluster.local", "ns"),
            "prod/gw"
        );
    }
}
