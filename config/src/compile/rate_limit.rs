//! RateLimitPolicy → the rate-limit rules that apply to this proxy's workload, compiled so
//! the data path tests a request without allocating (docs/config.md, "Rate limiting").
//!
//! A policy applies to the workloads of its namespace (of every namespace when it is in
//! the root namespace) whose labels its selector picks, as Istio's selector-based
//! policies do. A request is counted by every rule of every applying policy whose hosts,
//! `match` and client selectors it satisfies.

use super::matcher::{compile_http_match, RegexCache, RequestView, RouteMatch};
use super::proxy_settings::ProxySettings;
use crate::model::proxy::RateLimitBackend;
use crate::model::rate_limit_policy::{
    self as m, CidrMatchType, HeaderMatchType, LimitType, RateLimitPolicy,
};
use crate::model::Resource;
use http::header::HeaderName;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Envoy's rate-limit service call timeout (`ratelimit.v3.RateLimit.timeout`, 20ms).
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(20);

/// The compiled rate limits of one workload (empty: the request path skips the step).
#[derive(Debug, Default)]
pub struct RateLimits {
    /// The policies that apply, in load order.
    pub policies: Vec<Policy>,
    /// Where Global rules count (`Proxy.spec.rateLimit.redis`).
    pub redis: Option<RedisSettings>,
    /// Refuse when Redis fails (Envoy's `failure_mode_deny`); default: allow.
    pub failure_mode_deny: bool,
}

/// `Proxy.spec.rateLimit.redis`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    /// `host:port`.
    pub address: String,
    /// Longest wait for an answer.
    pub timeout: Duration,
}

/// One applying RateLimitPolicy.
#[derive(Debug)]
pub struct Policy {
    /// `namespace/name` (metrics, logs).
    pub name: Arc<str>,
    /// Counted in Redis (true) or in this proxy.
    pub global: bool,
    /// Hosts the policy is for (empty: all).
    pub hosts: Vec<HostMatch>,
    /// Its rules.
    pub rules: Vec<Rule>,
}

/// A `hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `*`.
    Any,
    /// `*.example.com`, kept as `.example.com`.
    Suffix(Box<str>),
    /// An exact host, lower-case.
    Exact(Box<str>),
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// The rule's index in its policy, as a metric label.
    pub name: Arc<str>,
    /// Route matches (any; empty: every request).
    pub matches: Vec<RouteMatch>,
    /// Client conditions (all must hold).
    pub conditions: Vec<Condition>,
    /// Requests per unit.
    pub requests: u64,
    /// The unit, in seconds.
    pub unit_secs: u64,
    /// Count, never refuse.
    pub shadow: bool,
    /// True when a condition gives each client value its own count.
    pub distinct: bool,
    /// Identity of the rule's counting (policy, type, rule): live buckets are kept across
    /// a reload while it is unchanged.
    pub fingerprint: u64,
}

/// A client condition of a rule.
#[derive(Debug)]
pub enum Condition {
    /// The header has this value.
    HeaderExact(HeaderName, Box<str>),
    /// The header's value matches (anchored).
    HeaderRegex(HeaderName, regex::Regex),
    /// The header is present; each value counts apart.
    HeaderDistinct(HeaderName),
    /// The client address is in the range.
    Cidr(ipnet::IpNet),
    /// The client address is in the range; each address counts apart.
    CidrDistinct(ipnet::IpNet),
    /// The client's principal matches one of these.
    Principals(Vec<Principal>),
}

/// A `sourcePrincipals` entry: AuthorizationPolicy's string matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `*`: any authenticated peer.
    Any,
    /// `prefix*`.
    Prefix(Box<str>),
    /// `*suffix`.
    Suffix(Box<str>),
    /// Exact.
    Exact(Box<str>),
}

/// What a rule looks at of a request beyond its route view.
#[derive(Clone, Copy, Debug)]
pub struct Client<'a> {
    /// The peer's address.
    pub ip: IpAddr,
    /// The peer's mTLS principal, without `spiffe://`.
    pub principal: Option<&'a str>,
}

impl RateLimits {
    /// True when no policy applies: the request path does nothing.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Compiles the policies that apply to `proxy`'s workload.
    pub fn compile(resources: &[Resource], proxy: &ProxySettings) -> RateLimits {
        let mut regex = RegexCache::default();
        let mut out = RateLimits::default();
        for r in resources {
            if let Some(b) = r.as_proxy().and_then(|p| p.rate_limit.as_ref()) {
                backend(&mut out, b);
            }
            let Some(p) = r.as_rate_limit_policy() else {
                continue;
            };
            if !applies(r, p, proxy) {
                continue;
            }
            let name: Arc<str> = format!("{}/{}", r.namespace, r.name).into();
            let global = p.limit_type == Some(LimitType::Global);
            let rules = p
                .rules
                .iter()
                .enumerate()
                .filter_map(|(i, rule)| compile_rule(&mut regex, &name, global, i, rule))
                .collect();
            out.policies.push(Policy {
                name,
                global,
                hosts: p.hosts.iter().map(|h| host_match(h)).collect(),
                rules,
            });
        }
        out
    }
}

fn backend(out: &mut RateLimits, b: &RateLimitBackend) {
    out.failure_mode_deny = b.failure_mode_deny.unwrap_or(false);
    out.redis = b.redis.as_ref().map(|r| RedisSettings {
        address: r.address.clone(),
        timeout: r
            .timeout
            .map(|d| d.to_std())
            .unwrap_or(DEFAULT_REDIS_TIMEOUT),
    });
}

fn applies(r: &Resource, p: &RateLimitPolicy, proxy: &ProxySettings) -> bool {
    if r.namespace != proxy.namespace && r.namespace != proxy.root_namespace {
        return false;
    }
    p.selector
        .as_ref()
        .is_none_or(|s| proxy.selected_by(&s.match_labels))
}

fn host_match(h: &str) -> HostMatch {
    let h = h.to_ascii_lowercase();
    if h == "*" {
        HostMatch::Any
    } else if let Some(s) = h.strip_prefix('*') {
        HostMatch::Suffix(s.into())
    } else {
        HostMatch::Exact(h.into())
    }
}

/// A validated rule compiled; `None` only for what validation refuses.
fn compile_rule(
    regex: &mut RegexCache,
    policy: &str,
    global: bool,
    index: usize,
    r: &m::Rule,
) -> Option<Rule> {
    let limit = r.limit.as_ref()?;
    let unit = limit.unit?;
    let matches = r
        .matches
        .iter()
        .map(|mm| compile_http_match(regex, mm))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let mut conditions = Vec::new();
    for c in &r.client_selectors {
        client_conditions(regex, c, &mut conditions)?;
    }
    let distinct = conditions
        .iter()
        .any(|c| matches!(c, Condition::HeaderDistinct(_) | Condition::CidrDistinct(_)));
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (policy, global, index, format!("{r:?}")).hash(&mut h);
    Some(Rule {
        name: index.to_string().into(),
        matches,
        conditions,
        requests: u64::try_from(limit.requests).ok()?.max(1),
        unit_secs: unit.seconds(),
        shadow: r.shadow,
        distinct,
        fingerprint: h.finish(),
    })
}

fn client_conditions(
    regex: &mut RegexCache,
    c: &m::ClientSelector,
    out: &mut Vec<Condition>,
) -> Option<()> {
    for h in &c.headers {
        let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes()).ok()?;
        out.push(
            match (h.match_type.unwrap_or(HeaderMatchType::Exact), &h.value) {
                (HeaderMatchType::Distinct, _) => Condition::HeaderDistinct(name),
                (HeaderMatchType::Exact, Some(v)) => {
                    Condition::HeaderExact(name, v.as_str().into())
                }
                (HeaderMatchType::RegularExpression, Some(v)) => {
                    Condition::HeaderRegex(name, regex.anchored(v).ok()?)
                }
                (_, None) => return None,
            },
        );
    }
    if let Some(s) = &c.source_cidr {
        let net = s
            .value
            .parse::<ipnet::IpNet>()
            .or_else(|_| s.value.parse::<IpAddr>().map(ipnet::IpNet::from))
            .ok()?;
        out.push(match s.match_type.unwrap_or(CidrMatchType::Exact) {
            CidrMatchType::Exact => Condition::Cidr(net),
            CidrMatchType::Distinct => Condition::CidrDistinct(net),
        });
    }
    if !c.source_principals.is_empty() {
        let list = c.source_principals.iter().map(|p| principal(p)).collect();
        out.push(Condition::Principals(list));
    }
    Some(())
}

fn principal(v: &str) -> Principal {
    let v = v.strip_prefix("spiffe://").unwrap_or(v);
    if v == "*" {
        Principal::Any
    } else if let Some(s) = v.strip_prefix('*') {
        Principal::Suffix(s.into())
    } else if let Some(p) = v.strip_suffix('*') {
        Principal::Prefix(p.into())
    } else {
        Principal::Exact(v.into())
    }
}

impl Policy {
    /// True when the policy is for requests to `host` (no port).
    pub fn for_host(&self, host: &str) -> bool {
        self.hosts.is_empty()
            || self.hosts.iter().any(|h| match h {
                HostMatch::Any => true,
                HostMatch::Suffix(s) => {
                    host.len() > s.len()
                        && host.as_bytes()[host.len() - s.len()..]
                            .eq_ignore_ascii_case(s.as_bytes())
                }
                HostMatch::Exact(e) => host.eq_ignore_ascii_case(e),
            })
    }
}

impl Rule {
    /// True when the rule counts this request: one of its matches (if any) and every
    /// client condition hold.
    pub fn applies(&self, req: &RequestView<'_>, client: &Client<'_>) -> bool {
        (self.matches.is_empty() || self.matches.iter().any(|m| m.matches(req)))
            && self.conditions.iter().all(|c| c.holds(req, client))
    }

    /// Appends the values that make a distinct count's key (each followed by a 0 byte);
    /// nothing for a rule without Distinct selectors.
    pub fn distinct_key(&self, req: &RequestView<'_>, client: &Client<'_>, out: &mut Vec<u8>) {
        for c in &self.conditions {
            match c {
                Condition::HeaderDistinct(n) => {
                    if let Some(v) = req.headers.get(n) {
                        out.extend_from_slice(v.as_bytes());
                    }
                }
                Condition::CidrDistinct(_) => match client.ip {
                    IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                    IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
                },
                _ => continue,
            }
            out.push(0);
        }
    }
}

impl Condition {
    fn holds(&self, req: &RequestView<'_>, client: &Client<'_>) -> bool {
        let header = |n: &HeaderName| req.headers.get(n).and_then(|v| v.to_str().ok());
        match self {
            Condition::HeaderExact(n, v) => header(n) == Some(&**v),
            Condition::HeaderRegex(n, re) => header(n).is_some_and(|v| re.is_match(v)),
            // Envoy: a descriptor whose header is absent is not generated, so the rule
            // does not apply to the request.
            Condition::HeaderDistinct(n) => req.headers.contains_key(n),
            Condition::Cidr(net) | Condition::CidrDistinct(net) => net.contains(&client.ip),
            Condition::Principals(list) => client
                .principal
                .is_some_and(|p| list.iter().any(|m| m.matches(p))),
        }
    }
}

impl Principal {
    fn matches(&self, p: &str) -> bool {
        match self {
            Principal::Any => !p.is_empty(),
            Principal::Prefix(x) => p.starts_with(&**x),
            Principal::Suffix(x) => p.ends_with(&**x),
            Principal::Exact(x) => p == &**x,
        }
    }
}

#[cfg(test)]
#[path = "rate_limit_tests.rs"]
mod tests;
