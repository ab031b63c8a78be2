//! AuthorizationPolicy → the policies that apply to this proxy's workload, compiled to
//! checks that evaluate without allocating.
//!
//! Istio (`authorization_policy.proto`, top comment): CUSTOM first (not supported here:
//! such policies are skipped, the validator warns), then any matching DENY denies, then
//! with no ALLOW policy the request is allowed, else it must match an ALLOW policy.
//! AUDIT never changes the decision.

use super::proxy_settings::ProxySettings;
use crate::model::authorization_policy::{
    Action, AuthorizationPolicy, Condition, Operation, Source,
};
use crate::model::Resource;
use ipnet::IpNet;
use std::net::IpAddr;

/// What is known about a request (or, without `http`, a TCP connection).
pub struct AuthzRequest<'a> {
    /// The TCP peer's address.
    pub source_ip: IpAddr,
    /// The original client (`x-forwarded-for`); the peer when unknown.
    pub remote_ip: IpAddr,
    /// The peer's identity without `spiffe://` (`cluster.local/ns/default/sa/sleep`),
    /// when it proved one over mTLS.
    pub principal: Option<&'a str>,
    /// The address the connection arrived on.
    pub destination_ip: IpAddr,
    /// The workload port the connection is for.
    pub destination_port: u16,
    /// The TLS SNI, when TLS was terminated.
    pub sni: Option<&'a str>,
    /// HTTP attributes; `None` for TCP.
    pub http: Option<HttpAttrs<'a>>,
}

/// The HTTP attributes of a request.
pub struct HttpAttrs<'a> {
    /// Host (`:authority`).
    pub host: &'a str,
    /// Method.
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied, and why (`DENY ns/name`, or that no ALLOW policy matched).
    Deny {
        /// The policy that denied, or the reason.
        policy: String,
    },
}

/// The compiled policies of one workload.
#[derive(Clone, Debug, Default)]
pub struct Authz {
    deny: Vec<Policy>,
    allow: Vec<Policy>,
    audit: Vec<Policy>,
}

#[derive(Clone, Debug)]
struct Policy {
    /// `namespace/name`.
    name: String,
    /// Rules, OR'ed; none = never matches.
    rules: Vec<Rule>,
    action: Action,
}

#[derive(Clone, Debug)]
struct Rule {
    /// `from[]`, OR'ed; each source's checks AND'ed. Empty = any source.
    from: Vec<Vec<Check>>,
    /// `to[]`, OR'ed. Empty = any operation.
    to: Vec<Vec<Check>>,
    /// `when[]`, AND'ed.
    when: Vec<Check>,
}

#[derive(Clone, Debug)]
struct Check {
    field: Field,
    patterns: Vec<Pattern>,
    /// The `not*` form: true when no pattern matches.
    negate: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Field {
    Principal,
    Namespace,
    TrustDomain,
    SourceIp,
    RemoteIp,
    /// JWT attributes: never present (JWT is not supported yet), so positive checks
    /// never match, as Istio's do without a validated token.
    RequestAuth,
    Host,
    Port,
    Method,
    Path,
    Header(http::HeaderName),
    DestinationIp,
    DestinationPort,
    Sni,
}

impl Field {
    /// Istio `model.go`: attributes only an HTTP request has.
    fn http_only(&self) -> bool {
        matches!(
            self,
            Field::Host | Field::Method | Field::Path | Field::Header(_) | Field::RequestAuth
        )
    }
}

#[derive(Clone, Debug)]
enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// `*`: any non-empty value.
    Presence,
    Cidr(IpNet),
    Port(u16),
    /// A path with `{*}` (one segment) or `{**}` (the rest) template segments.
    Template(Vec<Segment>),
}

#[derive(Clone, Debug)]
enum Segment {
    Literal(String),
    One,
    Rest,
}

/// Istio string matching: exact, `prefix*`, `*suffix`, `*` (presence).
fn string_pattern(s: &str, case_insensitive: bool) -> Pattern {
    let s = if case_insensitive {
        s.to_ascii_lowercase()
    } else {
        s.to_string()
    };
    if s == "*" {
        Pattern::Presence
    } else if let Some(p) = s.strip_suffix('*') {
        Pattern::Prefix(p.to_string())
    } else if let Some(p) = s.strip_prefix('*') {
        Pattern::Suffix(p.to_string())
    } else {
        Pattern::Exact(s)
    }
}

fn path_pattern(s: &str) -> Pattern {
    if s.contains("{*}") || s.contains("{**}") {
        Pattern::Template(
            s.trim_start_matches('/')
                .split('/')
                .map(|seg| match seg {
                    "{*}" => Segment::One,
                    "{**}" => Segment::Rest,
                    other => Segment::Literal(other.to_string()),
                })
                .collect(),
        )
    } else {
        string_pattern(s, false)
    }
}

fn ip_pattern(s: &str) -> Option<Pattern> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        .map(Pattern::Cidr)
}

impl Pattern {
    fn matches_str(&self, v: &str) -> bool {
        match self {
            Pattern::Exact(e) => v == e,
            Pattern::Prefix(p) => v.starts_with(p.as_str()),
            Pattern::Suffix(p) => v.ends_with(p.as_str()),
            Pattern::Presence => !v.is_empty(),
            Pattern::Port(p) => v.parse::<u16>().ok() == Some(*p),
            Pattern::Cidr(n) => v.parse::<IpAddr>().is_ok_and(|a| n.contains(&a)),
            Pattern::Template(segs) => template_matches(segs, v),
        }
    }
}

fn template_matches(segs: &[Segment], path: &str) -> bool {
    let mut parts = path.trim_start_matches('/').split('/');
    for (i, seg) in segs.iter().enumerate() {
        match seg {
            // `{**}` is last (validation): the rest, at least one segment.
            Segment::Rest => {
                return i == segs.len() - 1 && parts.next().is_some_and(|p| !p.is_empty())
            }
            Segment::One => match parts.next() {
                Some(p) if !p.is_empty() => {}
                _ => return false,
            },
            Segment::Literal(l) => {
                if parts.next() != Some(l.as_str()) {
                    return false;
                }
            }
        }
    }
    parts.next().is_none()
}

impl Check {
    fn new(
        field: Field,
        values: &Option<Vec<String>>,
        negate: bool,
        mk: impl Fn(&str) -> Option<Pattern>,
    ) -> Option<Check> {
        let values = values.as_ref()?;
        Some(Check {
            field,
            patterns: values.iter().filter_map(|v| mk(v)).collect(),
            negate,
        })
    }

    fn matches(&self, r: &AuthzRequest<'_>) -> bool {
        let hit = self.positive(r);
        if self.negate {
            !hit
        } else {
            hit
        }
    }

    fn any(&self, v: &str) -> bool {
        self.patterns.iter().any(|p| p.matches_str(v))
    }

    fn ip(&self, a: IpAddr) -> bool {
        self.patterns.iter().any(|p| match p {
            Pattern::Cidr(n) => n.contains(&a),
            _ => false,
        })
    }

    fn positive(&self, r: &AuthzRequest<'_>) -> bool {
        let http = r.http.as_ref();
        match &self.field {
            Field::Principal => r.principal.is_some_and(|p| self.any(p)),
            Field::Namespace => r
                .principal
                .and_then(namespace_of)
                .is_some_and(|n| self.any(n)),
            Field::TrustDomain => r
                .principal
                .and_then(|p| p.split("/ns/").next())
                .is_some_and(|t| self.any(t)),
            Field::SourceIp => self.ip(r.source_ip),
            Field::RemoteIp => self.ip(r.remote_ip),
            Field::RequestAuth => false,
            Field::Host => http.is_some_and(|h| {
                let host = h.host.to_ascii_lowercase();
                // Istio matches hosts with and without the port.
                let bare = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(&host);
                self.any(&host) || self.any(bare)
            }),
            Field::Port | Field::DestinationPort => self.patterns.iter().any(|p| match p {
                Pattern::Port(n) => *n == r.destination_port,
                _ => false,
            }),
            Field::Method => http.is_some_and(|h| self.any(h.method)),
            Field::Path => http.is_some_and(|h| self.any(h.path)),
            Field::Header(name) => http.is_some_and(|h| {
                h.headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .any(|v| self.any(v))
            }),
            Field::DestinationIp => self.ip(r.destination_ip),
            Field::Sni => r.sni.is_some_and(|s| self.any(s)),
        }
    }
}

/// `<td>/ns/<namespace>/sa/<sa>` → `<namespace>`.
fn namespace_of(principal: &str) -> Option<&str> {
    let rest = principal.split_once("/ns/")?.1;
    Some(rest.split_once('/').map(|(n, _)| n).unwrap_or(rest))
}

fn port_pattern(s: &str) -> Option<Pattern> {
    s.parse::<u16>().ok().map(Pattern::Port)
}

fn source_checks(s: &Source, policy_ns: &str) -> Vec<Check> {
    let str_p = |v: &str| Some(string_pattern(v, false));
    // Istio turns serviceAccounts into principal matches: `ns/sa`, or `sa` in the
    // policy's namespace, under any trust domain.
    let sa_p = |v: &str| {
        let (ns, sa) = v.split_once('/').unwrap_or((policy_ns, v));
        Some(Pattern::Suffix(format!("/ns/{ns}/sa/{sa}")))
    };
    [
        Check::new(Field::Principal, &s.principals, false, str_p),
        Check::new(Field::Principal, &s.not_principals, true, str_p),
        Check::new(Field::Principal, &s.service_accounts, false, sa_p),
        Check::new(Field::Principal, &s.not_service_accounts, true, sa_p),
        Check::new(Field::RequestAuth, &s.request_principals, false, str_p),
        Check::new(Field::RequestAuth, &s.not_request_principals, true, str_p),
        Check::new(Field::Namespace, &s.namespaces, false, str_p),
        Check::new(Field::Namespace, &s.not_namespaces, true, str_p),
        Check::new(Field::TrustDomain, &s.trust_domains, false, str_p),
        Check::new(Field::TrustDomain, &s.not_trust_domains, true, str_p),
        Check::new(Field::SourceIp, &s.ip_blocks, false, ip_pattern),
        Check::new(Field::SourceIp, &s.not_ip_blocks, true, ip_pattern),
        Check::new(Field::RemoteIp, &s.remote_ip_blocks, false, ip_pattern),
        Check::new(Field::RemoteIp, &s.not_remote_ip_blocks, true, ip_pattern),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn operation_checks(o: &Operation) -> Vec<Check> {
    let host_p = |v: &str| Some(string_pattern(v, true));
    let str_p = |v: &str| Some(string_pattern(v, false));
    [
        Check::new(Field::Host, &o.hosts, false, host_p),
        Check::new(Field::Host, &o.not_hosts, true, host_p),
        Check::new(Field::Port, &o.ports, false, port_pattern),
        Check::new(Field::Port, &o.not_ports, true, port_pattern),
        Check::new(Field::Method, &o.methods, false, str_p),
        Check::new(Field::Method, &o.not_methods, true, str_p),
        Check::new(Field::Path, &o.paths, false, |v| Some(path_pattern(v))),
        Check::new(Field::Path, &o.not_paths, true, |v| Some(path_pattern(v))),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Builds a pattern from a configured value (`None`: the value cannot match anything).
type PatternFn = dyn Fn(&str) -> Option<Pattern>;

fn condition_checks(c: &Condition) -> Vec<Check> {
    let key = c.key.as_str();
    let str_p = |v: &str| Some(string_pattern(v, false));
    let (field, mk): (Field, &PatternFn) = if let Some(name) = key
        .strip_prefix("request.headers[")
        .and_then(|k| k.strip_suffix(']'))
    {
        match http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            Ok(h) => (Field::Header(h), &str_p),
            Err(_) => return vec![never()],
        }
    } else {
        match key {
            "source.ip" => (Field::SourceIp, &ip_pattern),
            "remote.ip" => (Field::RemoteIp, &ip_pattern),
            "source.namespace" => (Field::Namespace, &str_p),
            "source.principal" => (Field::Principal, &str_p),
            "source.trustDomain" => (Field::TrustDomain, &str_p),
            "source.serviceAccount" => (Field::Principal, &|v: &str| {
                let (ns, sa) = v.split_once('/')?;
                Some(Pattern::Suffix(format!("/ns/{ns}/sa/{sa}")))
            }),
            "destination.ip" => (Field::DestinationIp, &ip_pattern),
            "destination.port" => (Field::DestinationPort, &port_pattern),
            "connection.sni" => (Field::Sni, &str_p),
            k if k.starts_with("request.auth.") => (Field::RequestAuth, &str_p),
            // experimental.envoy.filters.* and anything the validator let through:
            // not evaluable here, never matches.
            _ => return vec![never()],
        }
    };
    [
        Check::new(field.clone(), &c.values, false, mk),
        Check::new(field, &c.not_values, true, mk),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A check that never matches.
fn never() -> Check {
    Check {
        field: Field::RequestAuth,
        patterns: vec![],
        negate: false,
    }
}

impl Rule {
    fn matches(&self, r: &AuthzRequest<'_>, action: Action) -> bool {
        let tcp = r.http.is_none();
        // Istio model.go: on TCP an ALLOW rule with an HTTP-only attribute is dropped
        // whole (allows less); in DENY and AUDIT only the attribute is dropped (matches more).
        let applies = |c: &Check| !(tcp && c.field.http_only());
        if tcp && action == Action::Allow {
            let has_http = self
                .from
                .iter()
                .chain(&self.to)
                .flatten()
                .chain(&self.when)
                .any(|c| c.field.http_only());
            if has_http {
                return false;
            }
        }
        let all = |cs: &[Check]| cs.iter().filter(|c| applies(c)).all(|c| c.matches(r));
        (self.from.is_empty() || self.from.iter().any(|s| all(s)))
            && (self.to.is_empty() || self.to.iter().any(|o| all(o)))
            && all(&self.when)
    }
}

impl Policy {
    fn matches(&self, r: &AuthzRequest<'_>) -> bool {
        self.rules.iter().any(|rule| rule.matches(r, self.action))
    }
}

impl Authz {
    /// True when no policy applies to this workload.
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty() && self.audit.is_empty()
    }

    /// Evaluates a request: the decision, and the AUDIT policy that matched, if any.
    pub fn evaluate(&self, r: &AuthzRequest<'_>) -> (Decision, Option<String>) {
        let audit = self
            .audit
            .iter()
            .find(|p| p.matches(r))
            .map(|p| p.name.clone());
        if let Some(p) = self.deny.iter().find(|p| p.matches(r)) {
            return (
                Decision::Deny {
                    policy: format!("DENY {}", p.name),
                },
                audit,
            );
        }
        if self.allow.is_empty() || self.allow.iter().any(|p| p.matches(r)) {
            return (Decision::Allow, audit);
        }
        (
            Decision::Deny {
                policy: "no ALLOW policy matched".into(),
            },
            audit,
        )
    }

    /// The policies that apply to `proxy`'s workload: those of its namespace and of the
    /// root namespace (mesh-wide), whose selector (if any) its labels satisfy. Policies
    /// attached with `targetRef(s)` are for waypoints and gateways, not sidecars; CUSTOM
    /// and dry-run (`istio.io/dry-run: "true"`) policies are not enforced.
    pub fn compile(resources: &[Resource], proxy: &ProxySettings) -> Authz {
        let mut out = Authz::default();
        for r in resources {
            let Some(ap) = r.as_authorization_policy() else {
                continue;
            };
            if !applies(r, ap, proxy) {
                continue;
            }
            if r.meta
                .annotations
                .get("istio.io/dry-run")
                .map(String::as_str)
                == Some("true")
            {
                continue;
            }
            let action = ap.action.unwrap_or(Action::Allow);
            let rules = ap
                .rules
                .iter()
                .flatten()
                .map(|rule| {
                    let rule = rule.clone().unwrap_or_default();
                    Rule {
                        from: rule
                            .from
                            .iter()
                            .flatten()
                            .flatten()
                            .map(|f| {
                                f.source
                                    .as_ref()
                                    .map(|s| source_checks(s, &r.namespace))
                                    .unwrap_or_default()
                            })
                            .collect(),
                        to: rule
                            .to
                            .iter()
                            .flatten()
                            .flatten()
                            .map(|t| {
                                t.operation
                                    .as_ref()
                                    .map(operation_checks)
                                    .unwrap_or_default()
                            })
                            .collect(),
                        when: rule.when.iter().flat_map(condition_checks).collect(),
                    }
                })
                .collect();
            let policy = Policy {
                name: format!("{}/{}", r.namespace, r.name),
                rules,
                action,
            };
            match action {
                Action::Allow => out.allow.push(policy),
                Action::Deny => out.deny.push(policy),
                Action::Audit => out.audit.push(policy),
                Action::Custom => {}
            }
        }
        out
    }
}

fn applies(r: &Resource, ap: &AuthorizationPolicy, proxy: &ProxySettings) -> bool {
    if ap.target_ref.is_some() || !ap.target_refs.is_empty() {
        return false;
    }
    if r.namespace != proxy.namespace && r.namespace != proxy.root_namespace {
        return false;
    }
    ap.selector.as_ref().is_none_or(|s| {
        s.match_labels
            .iter()
            .all(|(k, v)| proxy.labels.get(k) == Some(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_strings() {
        let t = path_pattern("/api/{*}/items/{**}");
        assert!(t.matches_str("/api/v1/items/a/b"));
        assert!(!t.matches_str("/api/v1/items"));
        assert!(!t.matches_str("/api/v1/x/items/a"));
        assert!(path_pattern("/admin*").matches_str("/admin/x"));
        assert!(path_pattern("*.png").matches_str("/a/b.png"));
        assert!(string_pattern("*", false).matches_str("x"));
        assert!(!string_pattern("*", false).matches_str(""));
        assert_eq!(namespace_of("cluster.local/ns/foo/sa/bar"), Some("foo"));
    }
}
