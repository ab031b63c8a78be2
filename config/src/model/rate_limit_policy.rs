//! `RateLimitPolicy` (meshproxy.io/v1alpha1): request rate limits for the workloads its
//! selector picks. Field names follow Envoy Gateway's `BackendTrafficPolicy.rateLimit`
//! API (`clientSelectors`, `limit: {requests, unit}`, `shadow`); route matches use
//! VirtualService's `HTTPMatchRequest` (docs/config.md, "Rate limiting").

use super::common::WorkloadSelector;
use super::virtual_service::HttpMatchRequest;
use serde::Deserialize;

/// `RateLimitPolicy.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitPolicy {
    /// Workloads this applies to (absent: every workload of the namespace; in the root
    /// namespace: every workload).
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    /// Where the count is kept (default `Local`).
    #[serde(default, rename = "type")]
    pub limit_type: Option<LimitType>,
    /// Only requests for these hosts (absent: every host).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The limits; a request is counted by every rule it matches.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// `spec.type`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
pub enum LimitType {
    /// A token bucket per proxy (Envoy's `local_ratelimit`).
    Local,
    /// One count shared by every proxy through Redis (Envoy's `ratelimit` service).
    Global,
}

/// `spec.rules[]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Requests the rule counts (any of them; absent: every request).
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Clients the rule counts; every selector must match.
    #[serde(default, alias = "client_selectors")]
    pub client_selectors: Vec<ClientSelector>,
    /// How many requests per unit.
    #[serde(default)]
    pub limit: Option<Limit>,
    /// Count and report, never refuse.
    #[serde(default)]
    pub shadow: bool,
}

/// `clientSelectors[]`: one or more conditions on the client, all of which must hold.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientSelector {
    /// Request headers.
    #[serde(default)]
    pub headers: Vec<HeaderSelector>,
    /// The client's address.
    #[serde(
        default,
        rename = "sourceCIDR",
        alias = "sourceCidr",
        alias = "source_cidr"
    )]
    pub source_cidr: Option<SourceCidr>,
    /// The client's mTLS principal (`trust-domain/ns/NS/sa/SA`; `*` prefix or suffix
    /// wildcards, as AuthorizationPolicy's `principals`).
    #[serde(default, alias = "source_principals")]
    pub source_principals: Vec<String>,
}

/// `clientSelectors[].headers[]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeaderSelector {
    /// Header name.
    #[serde(default)]
    pub name: String,
    /// The value (Exact, RegularExpression); not set with Distinct.
    #[serde(default)]
    pub value: Option<String>,
    /// How the value is matched (default Exact).
    #[serde(default, rename = "type")]
    pub match_type: Option<HeaderMatchType>,
}

/// How a header selector matches.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
pub enum HeaderMatchType {
    /// The value equals `value`.
    Exact,
    /// The value matches the (anchored) regex `value`.
    RegularExpression,
    /// The header is present; each value gets its own bucket.
    Distinct,
}

/// `clientSelectors[].sourceCIDR`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceCidr {
    /// A CIDR (or a single address).
    #[serde(default)]
    pub value: String,
    /// Exact (one bucket for the range, default) or Distinct (a bucket per address).
    #[serde(default, rename = "type")]
    pub match_type: Option<CidrMatchType>,
}

/// How a source CIDR selector counts.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
pub enum CidrMatchType {
    /// Every address of the range shares one bucket.
    Exact,
    /// Each address of the range has its own bucket.
    Distinct,
}

/// `rules[].limit`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Requests allowed per unit (read signed so a negative value is a validation error).
    #[serde(default)]
    pub requests: i64,
    /// The unit.
    #[serde(default)]
    pub unit: Option<Unit>,
}

/// `limit.unit`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
pub enum Unit {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day.
    Day,
}

impl Unit {
    /// The unit's length in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
        }
    }
}
