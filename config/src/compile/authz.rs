//! AuthorizationPolicy → the policies that apply to this proxy's workload, compiled to
//! checks that evaluate without allocating.
//!
//! Istio (`authorization_policy.proto`, top comment): CUSTOM first, then any
//! matching DENY denies, then with no ALLOW policy the request is allowed, else it must
//! match an ALLOW policy. AUDIT never changes the decision. CUSTOM (ext-authz) is not
//! supported here: such policies are left out of evaluation (the validator warns).
//!
//! Matching follows what istiod generates for Envoy's RBAC filter
//! (`pilot/pkg/security/authz/model/{model,generator}.go`, `.../authz/matcher/*.go`) and how
//! Envoy evaluates it; each rule below cites the Istio behaviour it copies.

use super::proxy_settings::ProxySettings;
use crate::model::authorization_policy::{
    Action, AuthorizationPolicy, Condition, Operation, Rule as RuleSpec, Source,
};
use crate::model::Resource;
use http::header::{GetAll, HeaderName, HeaderValue};
use ipnet::IpNet;
use std::net::IpAddr;

mod jwt;
pub use jwt::JwtClaims;

/// What is known about a request (or, without `http`, a TCP connection) arriving at this
/// workload.
#[derive(Clone, Copy)]
pub struct AuthzRequest<'a> {
    /// The TCP peer's address (`source.ip`, `ipBlocks`).
    pub source_ip: IpAddr,
    /// The original client (`remote.ip`, `remoteIpBlocks`): from `x-forwarded-for` or the
    /// PROXY protocol per `numTrustedProxies`; the peer when unknown (Istio's default 0).
    pub remote_ip: IpAddr,
    /// The peer's identity without `spiffe://` (`cluster.local/ns/default/sa/sleep`), when
    /// it proved one over mTLS; `None` for plaintext.
    pub principal: Option<&'a str>,
    /// The address the connection arrived on (`destination.ip`).
    pub destination_ip: IpAddr,
    /// The workload port the connection is for (`ports`, `destination.port`).
    pub destination_port: u16,
    /// The TLS SNI, when TLS was terminated (`connection.sni`).
    pub sni: Option<&'a str>,
    /// HTTP attributes; `None` for TCP (see [`Authz::evaluate`] for what that changes).
    pub http: Option<HttpAttrs<'a>>,
    /// The payload of the request's verified JWT (RequestAuthentication), if it had one.
    pub jwt: Option<&'a JwtClaims>,
}

/// The HTTP attributes of a request.
#[derive(Clone, Copy)]
pub struct HttpAttrs<'a> {
    /// `:authority` / `Host`, as sent (with its port, if any: Istio's `hosts` match it as is).
    pub host: &'a str,
    /// Method.
    pub method: &'a str,
    /// Path without the query, after the proxy's path normalization (Istio matches
    /// `paths` after MeshConfig `pathNormalization`, default `BASE`).
    pub path: &'a str,
    /// Request headers (for `request.headers[...]` conditions).
    pub headers: &'a http::HeaderMap,
}

/// The decision for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied (HTTP 403 `RBAC: access denied`; TCP: connection closed).
    Deny {
        /// `namespace/name` of the DENY policy that matched, or [`NO_ALLOW_MATCHED`].
        policy: String,
    },
}

/// [`Decision::Deny`]'s `policy` when ALLOW policies exist and none matched.
pub const NO_ALLOW_MATCHED: &str = "no ALLOW policy matched";

/// The compiled AuthorizationPolicies of one workload (immutable; shared by all requests).
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
    /// Rules, OR'ed; none = never matches (Istio: "explicit never-match policy").
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    /// `from[]`, OR'ed; each source's checks AND'ed. Empty = any source.
    from: Vec<Vec<Check>>,
    /// `to[]`, OR'ed; each operation's checks AND'ed. Empty = any operation.
    to: Vec<Vec<Check>>,
    /// `when[]`, AND'ed.
    when: Vec<Check>,
    /// Some check needs an HTTP attribute (decides TCP handling).
    http_only: bool,
}

/// One field (or condition) of a rule: the value matches one of `patterns`, or, negated
/// (`not*` / `notValues`), none of them.
#[derive(Clone, Debug)]
struct Check {
    field: Field,
    patterns: Vec<Pattern>,
    negate: bool,
    /// Envoy `StringMatcher.ignore_case` (Istio sets it for `hosts` only).
    ignore_case: bool,
}

#[derive(Clone, Debug)]
enum Field {
    /// The peer principal (`principals`, `serviceAccounts`, `source.principal`...).
    Principal,
    /// The `<ns>` of the peer principal's `/ns/<ns>/`.
    Namespace,
    /// The peer principal's trust domain.
    TrustDomain,
    SourceIp,
    RemoteIp,
    DestinationIp,
    /// The destination (workload) port.
    Port,
    Sni,
    /// `:authority`.
    Host,
    Method,
    Path,
    Header(HeaderName),
    /// The verified JWT (`requestPrincipals`, `request.auth.*`); HTTP only.
    Jwt(jwt::JwtField),
    /// An attribute this proxy never has: Envoy filter metadata (`experimental.envoy.filters.*`), pseudo-headers it does not
    /// track. Positive checks never match; negated ones always do.
    Absent {
        http_only: bool,
    },
}

impl Field {
    /// Istio `generator.go`: the generators that fail with `"%q is HTTP only"` for TCP
    /// (hosts, methods, paths, request headers, request principals, JWT audiences,
    /// presenter and claims).
    fn http_only(&self) -> bool {
        match self {
            Field::Host | Field::Method | Field::Path | Field::Header(_) | Field::Jwt(_) => true,
            Field::Absent { http_only } => *http_only,
            _ => false,
        }
    }
}

#[derive(Clone, Debug)]
enum Pattern {
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    /// `*` in an Envoy `StringMatcher`: Istio generates the regex `.+` (non-empty).
    NonEmpty,
    /// `*` in an Envoy `HeaderMatcher` (`hosts`, `methods`, `request.headers`): Istio
    /// generates `present_match` (the header exists, even empty).
    Present,
    /// `namespaces`: Istio's regex `.*/ns/<v with * → .*>/.*`; the parts between `*`s.
    Glob(Box<[Box<str>]>),
    /// `serviceAccounts` / `source.serviceAccount`.
    ServiceAccount {
        ns: Box<str>,
        sa: Box<str>,
    },
    Cidr(IpNet),
    Port(u16),
    /// A path with `{*}`/`{**}`: Envoy's URI template matcher.
    Template(Box<[Piece]>),
    /// A request principal: the token's `iss` and `sub` matched on their own.
    RequestPrincipal(Box<(Pattern, Pattern)>),
}

/// A piece of a compiled URI template (Envoy `uri_template_internal.cc`: the template is
/// the regex `/` + segments joined by `/`).
#[derive(Clone, Debug, PartialEq)]
enum Piece {
    /// Literal text (slashes included).
    Lit(Box<str>),
    /// `{*}` → `[pchar]+`: one or more characters, never `/`.
    One,
    /// `{**}` → `[pchar/]*`: zero or more characters, `/` included.
    Rest,
}

/// Envoy `kLiteral`: RFC 3986 pchar (unreserved, pct-encoded, sub-delims but `*`, `:`, `@`)
/// plus `=`.
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b)
}

/// Istio `matcher.StringMatcherWithPrefix` / `HeaderMatcher` order: `*` alone first, then a
/// leading `*` (suffix match), then a trailing `*` (prefix match), else exact. `star` is
/// what `*` alone means for the field ([`Pattern::NonEmpty`] or [`Pattern::Present`]).
fn string_pattern(v: &str, star: Pattern, lower: bool) -> Pattern {
    let v = if lower {
        v.to_ascii_lowercase()
    } else {
        v.to_string()
    };
    if v == "*" {
        star
    } else if let Some(s) = v.strip_prefix('*') {
        Pattern::Suffix(s.into())
    } else if let Some(p) = v.strip_suffix('*') {
        Pattern::Prefix(p.into())
    } else {
        Pattern::Exact(v.into())
    }
}

/// Istio `pathGenerator`: a value containing `{*}` or `{**}` is an Envoy URI template
/// (`security.ContainsPathTemplate`), anything else a string matcher.
fn path_pattern(v: &str) -> Pattern {
    if v.contains("{*}") || v.contains("{**}") {
        Pattern::Template(compile_template(v))
    } else {
        string_pattern(v, Pattern::NonEmpty, false)
    }
}

/// Istio `sanitizePathTemplate` turns `{*}`/`{**}` into Envoy's `*`/`**`; Envoy parses the
/// template into segments (a trailing `/` is an empty last segment) and matches the regex
/// `/` + segments joined by `/`, in full.
fn compile_template(v: &str) -> Box<[Piece]> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let body = v.strip_prefix('/').unwrap_or(v);
    lit.push('/');
    for (i, seg) in body.split('/').enumerate() {
        if i > 0 {
            lit.push('/');
        }
        let op = match seg {
            "{*}" => Piece::One,
            "{**}" => Piece::Rest,
            _ => {
                lit.push_str(seg);
                continue;
            }
        };
        if !lit.is_empty() {
            pieces.push(Piece::Lit(std::mem::take(&mut lit).into()));
        }
        pieces.push(op);
    }
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit.into()));
    }
    pieces.into()
}

/// Full match of `path` against template pieces (bounded backtracking, no allocation).
fn template_matches(pieces: &[Piece], path: &[u8]) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return path.is_empty();
    };
    match first {
        Piece::Lit(l) => path
            .strip_prefix(l.as_bytes())
            .is_some_and(|p| template_matches(rest, p)),
        Piece::One => {
            let n = path.iter().take_while(|b| is_pchar(**b)).count();
            (1..=n).rev().any(|k| template_matches(rest, &path[k..]))
        }
        Piece::Rest => {
            let n = path
                .iter()
                .take_while(|b| is_pchar(**b) || **b == b'/')
                .count();
            (0..=n).rev().any(|k| template_matches(rest, &path[k..]))
        }
    }
}

/// Istio `util.AddrStrToCidrRange`: an IP is a /32 (/128), else a CIDR.
fn ip_pattern(v: &str) -> Option<Pattern> {
    v.parse::<IpNet>()
        .ok()
        .or_else(|| v.parse::<IpAddr>().ok().map(IpNet::from))
        .map(Pattern::Cidr)
}

fn port_pattern(v: &str) -> Option<Pattern> {
    v.parse::<u16>().ok().map(Pattern::Port)
}

/// Istio `srcNamespaceGenerator`: every `*` in the value becomes `.*`.
fn namespace_pattern(v: &str) -> Pattern {
    Pattern::Glob(v.split('*').map(Box::from).collect())
}

/// Istio `serviceAccountRegex`: `<ns>/<sa>`, or `<sa>` in the policy's namespace.
fn service_account_pattern(v: &str, policy_ns: &str) -> Pattern {
    let (ns, sa) = v.split_once('/').unwrap_or((policy_ns, v));
    Pattern::ServiceAccount {
        ns: ns.into(),
        sa: sa.into(),
    }
}

fn eq_bytes(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `*`-glob (each `*` = any run of characters), anchored at both ends.
fn glob_matches(parts: &[Box<str>], v: &[u8]) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return v.is_empty();
    };
    let Some(mut v) = v.strip_prefix(first.as_bytes()) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return v.is_empty();
    };
    for m in middle {
        match find(v, m.as_bytes()) {
            Some(i) => v = &v[i + m.len()..],
            None => return false,
        }
    }
    v.ends_with(last.as_bytes())
}

/// `<td>/ns/<namespace>/...` → `<namespace>` (Istio's regex needs the `/` after it).
fn namespace_of(principal: &str) -> Option<&str> {
    let rest = principal.split_once("/ns/")?.1;
    rest.split_once('/').map(|(n, _)| n)
}

/// The SPIFFE trust domain: the principal up to its first `/`.
fn trust_domain_of(principal: &str) -> Option<&str> {
    principal.split_once('/').map(|(td, _)| td)
}

/// Istio `serviceAccountRegex`: `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`.
fn service_account_matches(principal: &str, ns: &str, sa: &str) -> bool {
    let mut segs = principal.split('/');
    // A non-empty trust domain comes first.
    if segs.next().is_none_or(str::is_empty) {
        return false;
    }
    let mut seen_ns = false;
    let mut prev = "";
    for s in segs {
        if !seen_ns && prev == "ns" && s == ns {
            seen_ns = true;
        } else if seen_ns && prev == "sa" && s == sa {
            return true;
        }
        prev = s;
    }
    false
}

impl Pattern {
    /// Matches one value. IP, port and service-account patterns never match a string here.
    fn matches(&self, v: &[u8], ignore_case: bool) -> bool {
        match self {
            Pattern::Exact(e) => eq_bytes(v, e.as_bytes(), ignore_case),
            Pattern::Prefix(p) => {
                v.len() >= p.len() && eq_bytes(&v[..p.len()], p.as_bytes(), ignore_case)
            }
            Pattern::Suffix(s) => {
                v.len() >= s.len() && eq_bytes(&v[v.len() - s.len()..], s.as_bytes(), ignore_case)
            }
            Pattern::NonEmpty => !v.is_empty(),
            Pattern::Present => true,
            Pattern::Glob(parts) => glob_matches(parts, v),
            Pattern::Template(pieces) => template_matches(pieces, v),
            Pattern::ServiceAccount { .. }
            | Pattern::Cidr(_)
            | Pattern::Port(_)
            | Pattern::RequestPrincipal(_) => false,
        }
    }

    /// Matches the values of a header that is present. Envoy's header matchers see all
    /// values of a repeated header joined with `,` (`HeaderUtility::getAllOfHeaderAsString`).
    fn matches_header(&self, values: &GetAll<'_, HeaderValue>) -> bool {
        let mut it = values.iter();
        let Some(first) = it.next() else {
            return false;
        };
        if it.next().is_none() {
            return self.matches(first.as_bytes(), false);
        }
        let joined = || {
            values.iter().enumerate().flat_map(|(i, v)| {
                (i > 0)
                    .then_some(b',')
                    .into_iter()
                    .chain(v.as_bytes().iter().copied())
            })
        };
        // The joined value read backwards: the last value reversed, `,`, the one before...
        let joined_rev = || {
            values.iter().rev().enumerate().flat_map(|(i, v)| {
                (i > 0)
                    .then_some(b',')
                    .into_iter()
                    .chain(v.as_bytes().iter().rev().copied())
            })
        };
        match self {
            Pattern::Exact(e) => joined().eq(e.bytes()),
            Pattern::Prefix(p) => joined().take(p.len()).eq(p.bytes()),
            Pattern::Suffix(s) => joined_rev().take(s.len()).eq(s.bytes().rev()),
            Pattern::Present | Pattern::NonEmpty => true,
            _ => false,
        }
    }
}

impl Check {
    /// A check for a configured list. Istio (`ruleList.insertFront`/`appendLast`): an absent
    /// or empty list adds no check.
    fn new(
        field: Field,
        values: &Option<Vec<String>>,
        negate: bool,
        mk: impl Fn(&str) -> Option<Pattern>,
    ) -> Option<Check> {
        let values = values.as_ref().filter(|v| !v.is_empty())?;
        Some(Check {
            ignore_case: false,
            field,
            patterns: values.iter().filter_map(|v| mk(v)).collect(),
            negate,
        })
    }

    fn matches(&self, r: &AuthzRequest<'_>) -> bool {
        self.positive(r) != self.negate
    }

    fn any(&self, v: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| p.matches(v.as_bytes(), self.ignore_case))
    }

    fn any_ip(&self, a: IpAddr) -> bool {
        // An IPv4 peer seen on a dual-stack socket (`::ffff:a.b.c.d`) is that IPv4 address.
        let a = a.to_canonical();
        self.patterns.iter().any(|p| match p {
            Pattern::Cidr(n) => n.contains(&a),
            _ => false,
        })
    }

    fn positive(&self, r: &AuthzRequest<'_>) -> bool {
        let http = r.http.as_ref();
        match &self.field {
            // Istio matches principals, namespaces and service accounts against the
            // authenticated (mTLS) peer: a plaintext peer has none, so they never match
            // (and their `not*` forms always do).
            Field::Principal => r.principal.is_some_and(|p| {
                self.patterns.iter().any(|pat| match pat {
                    Pattern::ServiceAccount { ns, sa } => service_account_matches(p, ns, sa),
                    other => other.matches(p.as_bytes(), false),
                })
            }),
            Field::Namespace => r
                .principal
                .and_then(namespace_of)
                .is_some_and(|n| self.any(n)),
            Field::TrustDomain => r
                .principal
                .and_then(trust_domain_of)
                .is_some_and(|t| self.any(t)),
            Field::SourceIp => self.any_ip(r.source_ip),
            Field::RemoteIp => self.any_ip(r.remote_ip),
            Field::DestinationIp => self.any_ip(r.destination_ip),
            Field::Port => self.patterns.iter().any(|p| match p {
                Pattern::Port(n) => *n == r.destination_port,
                _ => false,
            }),
            // Envoy: `requested_server_name` is empty without SNI.
            Field::Sni => self.any(r.sni.unwrap_or("")),
            Field::Host => http.is_some_and(|h| self.any(h.host)),
            Field::Method => http.is_some_and(|h| self.any(h.method)),
            Field::Path => http.is_some_and(|h| self.any(h.path)),
            Field::Header(name) => http.is_some_and(|h| {
                let values = h.headers.get_all(name);
                self.patterns.iter().any(|p| p.matches_header(&values))
            }),
            Field::Jwt(f) => r
                .jwt
                .is_some_and(|claims| f.matches(&self.patterns, claims)),
            Field::Absent { .. } => false,
        }
    }
}

fn source_checks(s: &Source, policy_ns: &str) -> Vec<Check> {
    // Istio `srcPrincipalGenerator`: `StringMatcherWithPrefix(v, "spiffe://")`, i.e. the
    // usual string matching on the principal without `spiffe://`, `*` = non-empty.
    let principal = |v: &str| Some(string_pattern(v, Pattern::NonEmpty, false));
    let sa = |v: &str| Some(service_account_pattern(v, policy_ns));
    let ns = |v: &str| Some(namespace_pattern(v));
    let jwt = Field::Jwt(jwt::JwtField::Principal);
    let rp = |v: &str| Some(jwt::principal_pattern(v));
    let str_p = |v: &str| Some(string_pattern(v, Pattern::NonEmpty, false));
    [
        Check::new(Field::Principal, &s.principals, false, principal),
        Check::new(Field::Principal, &s.not_principals, true, principal),
        Check::new(Field::Principal, &s.service_accounts, false, sa),
        Check::new(Field::Principal, &s.not_service_accounts, true, sa),
        // Istio `requestPrincipalGenerator`: JWT metadata; HTTP only.
        Check::new(jwt.clone(), &s.request_principals, false, rp),
        Check::new(jwt, &s.not_request_principals, true, rp),
        Check::new(Field::Namespace, &s.namespaces, false, ns),
        Check::new(Field::Namespace, &s.not_namespaces, true, ns),
        Check::new(Field::TrustDomain, &s.trust_domains, false, str_p),
        Check::new(Field::TrustDomain, &s.not_trust_domains, true, str_p),
        // Istio `srcIPGenerator` (`direct_remote_ip`) and `remoteIPGenerator` (`remote_ip`).
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
    // Istio `hostGenerator` → `matcher.HostMatcher(":authority", v)`: `*` = present, else a
    // case-insensitive string match on the authority as sent (a `Host: foo:8080` needs
    // `foo:8080` or `foo*`; istio/istio#44080).
    let host = |v: &str| Some(string_pattern(v, Pattern::Present, true));
    // Istio `methodGenerator` → `HeaderMatcher(":method", v)`: case-sensitive.
    let method = |v: &str| Some(string_pattern(v, Pattern::Present, false));
    let path = |v: &str| Some(path_pattern(v));
    let hosts = |values: &Option<Vec<String>>, negate: bool| {
        Check::new(Field::Host, values, negate, host).map(|c| Check {
            ignore_case: true,
            ..c
        })
    };
    [
        hosts(&o.hosts, false),
        hosts(&o.not_hosts, true),
        Check::new(Field::Port, &o.ports, false, port_pattern),
        Check::new(Field::Port, &o.not_ports, true, port_pattern),
        Check::new(Field::Method, &o.methods, false, method),
        Check::new(Field::Method, &o.not_methods, true, method),
        Check::new(Field::Path, &o.paths, false, path),
        Check::new(Field::Path, &o.not_paths, true, path),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Builds a pattern from a configured value (`None`: the value is dropped).
type PatternFn<'a> = dyn Fn(&str) -> Option<Pattern> + 'a;

/// Istio `model.New`: each `when` condition becomes a check on its attribute.
fn condition_checks(c: &Condition, policy_ns: &str) -> Vec<Check> {
    let key = c.key.as_str();
    let str_p = |v: &str| Some(string_pattern(v, Pattern::NonEmpty, false));
    // Istio `HeaderMatcher`: `*` = present, else exact/prefix/suffix, case-sensitive.
    let header_p = |v: &str| Some(string_pattern(v, Pattern::Present, false));
    let sa_p = |v: &str| Some(service_account_pattern(v, policy_ns));
    let ns_p = |v: &str| Some(namespace_pattern(v));
    let path_p = |v: &str| Some(string_pattern(v, Pattern::Present, false));
    let rp = |v: &str| Some(jwt::principal_pattern(v));
    let (field, mk): (Field, &PatternFn<'_>) = if let Some(name) = key
        .strip_prefix("request.headers[")
        .and_then(|k| k.strip_suffix(']'))
    {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            // Envoy keeps these as pseudo-headers; this proxy has them as request fields.
            ":authority" | "host" => (Field::Host, &header_p),
            ":method" => (Field::Method, &header_p),
            // The path without its query (Envoy's `:path` header has the query).
            ":path" => (Field::Path, &path_p),
            _ => match HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) => (Field::Header(h), &header_p),
                Err(_) => (Field::Absent { http_only: true }, &header_p),
            },
        }
    } else {
        match key {
            "source.ip" => (Field::SourceIp, &ip_pattern),
            "remote.ip" => (Field::RemoteIp, &ip_pattern),
            "source.namespace" => (Field::Namespace, &ns_p),
            "source.principal" => (Field::Principal, &str_p),
            "source.serviceAccount" => (Field::Principal, &sa_p),
            "source.trustDomain" => (Field::TrustDomain, &str_p),
            "destination.ip" => (Field::DestinationIp, &ip_pattern),
            "destination.port" => (Field::Port, &port_pattern),
            "connection.sni" => (Field::Sni, &str_p),
            // Istio: request.auth.* read the verified JWT, HTTP only.
            "request.auth.principal" => (Field::Jwt(jwt::JwtField::Principal), &rp),
            k if k.starts_with("request.auth.") => match jwt::JwtField::claim(k) {
                Some(f) => (Field::Jwt(f), &str_p),
                None => (Field::Absent { http_only: true }, &str_p),
            },
            // experimental.envoy.filters.*: Envoy filter metadata, which this proxy has none
            // of; not HTTP-only in Istio (`envoyFilterGenerator`). The validator rejects
            // any other key.
            _ => (Field::Absent { http_only: false }, &str_p),
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

impl Rule {
    fn compile(rule: &RuleSpec, policy_ns: &str) -> Rule {
        let from: Vec<Vec<Check>> = rule
            .from
            .iter()
            .flatten()
            .flatten()
            .map(|f| {
                f.source
                    .as_ref()
                    .map(|s| source_checks(s, policy_ns))
                    .unwrap_or_default()
            })
            .collect();
        let to: Vec<Vec<Check>> = rule
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
            .collect();
        let when: Vec<Check> = rule
            .when
            .iter()
            .flat_map(|c| condition_checks(c, policy_ns))
            .collect();
        let http_only = from
            .iter()
            .chain(&to)
            .flatten()
            .chain(&when)
            .any(|c| c.field.http_only());
        Rule {
            from,
            to,
            when,
            http_only,
        }
    }

    /// Istio `model.go` (`Generate`, `checkError`): on TCP, an ALLOW rule
    /// with an HTTP-only attribute is dropped whole (allows less); in DENY and AUDIT rules
    /// only the attribute is dropped (the rule matches more: `DENY methods:[POST]
    /// ports:["8080"]` denies all TCP on 8080).
    fn matches(&self, r: &AuthzRequest<'_>, allow: bool) -> bool {
        let tcp = r.http.is_none();
        if tcp && allow && self.http_only {
            return false;
        }
        let all = |cs: &[Check]| {
            cs.iter()
                .filter(|c| !(tcp && c.field.http_only()))
                .all(|c| c.matches(r))
        };
        (self.from.is_empty() || self.from.iter().any(|s| all(s)))
            && (self.to.is_empty() || self.to.iter().any(|o| all(o)))
            && all(&self.when)
    }
}

impl Policy {
    fn matches(&self, r: &AuthzRequest<'_>, allow: bool) -> bool {
        self.rules.iter().any(|rule| rule.matches(r, allow))
    }
}

impl Authz {
    /// True when no ALLOW, DENY or AUDIT policy applies to this workload: every request
    /// is allowed and the data path may skip [`Authz::evaluate`].
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty() && self.audit.is_empty()
    }

    /// Evaluates a request (or, with `http: None`, a TCP connection): the decision, and
    /// the `namespace/name` of the first AUDIT policy that matched, if any.
    ///
    /// Istio order: CUSTOM (not supported, skipped) → any matching DENY
    /// denies → no ALLOW policy allows → a matching ALLOW policy allows → else deny.
    /// AUDIT policies are matched on their own and never change the decision. Allocates
    /// only for a denial or an AUDIT match (the names returned).
    pub fn evaluate(&self, r: &AuthzRequest<'_>) -> (Decision, Option<String>) {
        let audit = self
            .audit
            .iter()
            .find(|p| p.matches(r, false))
            .map(|p| p.name.clone());
        if let Some(p) = self.deny.iter().find(|p| p.matches(r, false)) {
            return (
                Decision::Deny {
                    policy: p.name.clone(),
                },
                audit,
            );
        }
        // Istio: "If there are no ALLOW policies for the workload, allow the request."
        if self.allow.is_empty() || self.allow.iter().any(|p| p.matches(r, true)) {
            return (Decision::Allow, audit);
        }
        (
            Decision::Deny {
                policy: NO_ALLOW_MATCHED.into(),
            },
            audit,
        )
    }

    /// Compiles the policies that apply to `proxy`'s workload, in load order.
    ///
    /// Istio (`ListAuthorizationPolicies`, `WorkloadPolicyMatcher.ShouldAttachPolicy`):
    /// policies of the workload's namespace and of the root namespace (mesh-wide), whose
    /// selector (absent or empty: all workloads) the workload's labels satisfy. Policies
    /// attached with `targetRef(s)` are for gateways and waypoints, never a sidecar's.
    /// Not enforced: CUSTOM (no ext-authz) and dry-run (`istio.io/dry-run` true: Istio
    /// only evaluates them into shadow rules, so they neither allow nor deny).
    pub fn compile(resources: &[Resource], proxy: &ProxySettings) -> Authz {
        let mut out = Authz::default();
        for r in resources {
            let Some(ap) = r.as_authorization_policy() else {
                continue;
            };
            if !applies(r, ap, proxy) || dry_run(r) {
                continue;
            }
            let list = match ap.action.unwrap_or(Action::Allow) {
                Action::Allow => &mut out.allow,
                Action::Deny => &mut out.deny,
                Action::Audit => &mut out.audit,
                // Istio evaluates CUSTOM first through ext-authz; meshproxy has none.
                Action::Custom => continue,
            };
            // Istio `builder.go`: no rules (`spec: {}`, `rules: []`) = an explicit
            // never-match policy; an ALLOW one so denies everything. `rules: [{}]`
            // matches everything.
            let rules = ap
                .rules
                .iter()
                .flatten()
                .flatten()
                .map(|rule| Rule::compile(rule, &r.namespace))
                .collect();
            list.push(Policy {
                name: format!("{}/{}", r.namespace, r.name),
                rules,
            });
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
    ap.selector
        .as_ref()
        .is_none_or(|s| proxy.selected_by(&s.match_labels))
}

/// Istio reads `istio.io/dry-run` with Go's `strconv.ParseBool`.
fn dry_run(r: &Resource) -> bool {
    matches!(
        r.annotations.get("istio.io/dry-run").map(String::as_str),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(p: &Pattern, v: &str) -> bool {
        p.matches(v.as_bytes(), false)
    }

    #[test]
    fn istio_string_matching() {
        let star = || Pattern::NonEmpty;
        assert!(s(&string_pattern("abc", star(), false), "abc"));
        assert!(!s(&string_pattern("abc", star(), false), "abcd"));
        assert!(s(&string_pattern("abc*", star(), false), "abcd"));
        assert!(s(&string_pattern("*abc", star(), false), "xabc"));
        assert!(s(&string_pattern("*", star(), false), "x"));
        assert!(!s(&string_pattern("*", star(), false), ""));
        assert!(s(&string_pattern("*", Pattern::Present, false), ""));
        // Istio checks a leading `*` before a trailing one: `*a*` is a suffix match on `a*`.
        assert!(s(&string_pattern("*a*", star(), false), "xa*"));
        assert!(!s(&string_pattern("*a*", star(), false), "xab"));
        let host = string_pattern("Example.COM*", Pattern::Present, true);
        assert!(host.matches(b"example.com:8080", true));
    }

    #[test]
    fn envoy_uri_templates() {
        let t = |tpl: &str, path: &str| s(&path_pattern(tpl), path);
        // The proto's examples.
        assert!(t("/foo/{*}", "/foo/bar"));
        assert!(!t("/foo/{*}", "/foo/bar/baz"));
        assert!(!t("/foo/{*}", "/foo/"));
        assert!(t("/foo/{**}/", "/foo/bar/"));
        assert!(t("/foo/{**}/", "/foo//"));
        assert!(!t("/foo/{**}/", "/foo/bar"));
        assert!(t("/foo/{*}/bar/{**}", "/foo/buzz/bar/"));
        assert!(t("/foo/{*}/bar/{**}", "/foo/buzz/bar/baz"));
        assert!(t("/foo/{*}/bar/{**}", "/foo/buzz/bar/a/b/c"));
        assert!(!t("/foo/{*}/bar/{**}", "/foo/buzz/bar"));
        // `{**}` followed by literals.
        assert!(t("/{**}/x", "/a/b/x"));
        assert!(t("/{**}/x", "//x"));
        assert!(!t("/{**}/x", "/a/b/y"));
        // Characters outside RFC 3986 pchar never match an operator.
        assert!(!t("/foo/{*}", "/foo/a*b"));
        assert_eq!(
            compile_template("/a/{*}/b/{**}").to_vec(),
            vec![
                Piece::Lit("/a/".into()),
                Piece::One,
                Piece::Lit("/b/".into()),
                Piece::Rest
            ]
        );
    }

    #[test]
    fn principals_namespaces_service_accounts() {
        assert_eq!(namespace_of("cluster.local/ns/foo/sa/bar"), Some("foo"));
        assert_eq!(namespace_of("cluster.local/ns/foo"), None);
        assert_eq!(
            trust_domain_of("cluster.local/ns/foo/sa/bar"),
            Some("cluster.local")
        );
        assert!(s(&namespace_pattern("f*o"), "foo"));
        assert!(s(&namespace_pattern("*"), "x"));
        assert!(!s(&namespace_pattern("foo"), "foobar"));
        assert!(s(&namespace_pattern("foo*"), "foobar"));
        assert!(service_account_matches("td/ns/a/sa/b", "a", "b"));
        assert!(service_account_matches("td/ns/a/x/y/sa/b/z", "a", "b"));
        assert!(!service_account_matches("td/ns/a/sa/bc", "a", "b"));
        assert!(!service_account_matches("td/ns/x/sa/b", "a", "b"));
        assert!(!service_account_matches("/ns/a/sa/b", "a", "b"));
    }

    #[test]
    fn repeated_headers_are_joined() {
        let mut h = http::HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("one"));
        h.append("x-a", HeaderValue::from_static("two"));
        let v = h.get_all("x-a");
        let p = |v: &str| string_pattern(v, Pattern::Present, false);
        assert!(p("one,two").matches_header(&v));
        assert!(!p("one").matches_header(&v));
        assert!(p("one,t*").matches_header(&v));
        assert!(p("*e,two").matches_header(&v));
        assert!(!p("*one").matches_header(&v));
        assert!(p("*").matches_header(&v));
        assert!(!p("*").matches_header(&h.get_all("x-b")));
    }
}
