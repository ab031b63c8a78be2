//! `AuthorizationPolicy` (security.istio.io): allow/deny inbound requests by source,
//! operation and conditions. Follows Istio's `authorization_policy.proto`.

use super::common::{PolicyTargetReference, WorkloadSelector};
use serde::Deserialize;

/// `AuthorizationPolicy.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// Workloads this applies to.
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    /// Hidden: single attachment target.
    #[serde(default, alias = "target_ref")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Attachment targets (waypoints/gateways).
    #[serde(default, alias = "target_refs")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Rules; absent = never matches.
    #[serde(default)]
    pub rules: Option<Vec<Option<Rule>>>,
    /// Action (default ALLOW).
    #[serde(default)]
    pub action: Option<Action>,
    /// Ext-authz provider (CUSTOM only).
    #[serde(default)]
    pub provider: Option<ExtensionProvider>,
}

/// `AuthorizationPolicy.Action`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// Allow matching requests.
    Allow,
    /// Deny matching requests.
    Deny,
    /// Mark matching requests for audit.
    Audit,
    /// Ask an external authorizer.
    Custom,
}

/// `AuthorizationPolicy.ExtensionProvider`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExtensionProvider {
    /// Provider name from MeshConfig.
    #[serde(default)]
    pub name: String,
}

/// `Rule`: `from` (OR) × `to` (OR) × `when` (AND).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Sources.
    #[serde(default)]
    pub from: Option<Vec<Option<RuleFrom>>>,
    /// Operations.
    #[serde(default)]
    pub to: Option<Vec<Option<RuleTo>>>,
    /// Conditions.
    #[serde(default)]
    pub when: Vec<Condition>,
}

/// `Rule.From`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleFrom {
    /// The source.
    #[serde(default)]
    pub source: Option<Source>,
}

/// `Rule.To`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleTo {
    /// The operation.
    #[serde(default)]
    pub operation: Option<Operation>,
}

/// `Source`: fields AND'ed, values in a list OR'ed.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Peer identities `<trust-domain>/ns/<ns>/sa/<sa>`.
    #[serde(default)]
    pub principals: Option<Vec<String>>,
    /// Negated principals.
    #[serde(default, alias = "not_principals")]
    pub not_principals: Option<Vec<String>>,
    /// JWT principals `<iss>/<sub>`.
    #[serde(default, alias = "request_principals")]
    pub request_principals: Option<Vec<String>>,
    /// Negated JWT principals.
    #[serde(default, alias = "not_request_principals")]
    pub not_request_principals: Option<Vec<String>>,
    /// Peer namespaces.
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    /// Negated namespaces.
    #[serde(default, alias = "not_namespaces")]
    pub not_namespaces: Option<Vec<String>>,
    /// Peer service accounts `ns/sa` or `sa`.
    #[serde(default, alias = "service_accounts")]
    pub service_accounts: Option<Vec<String>>,
    /// Negated service accounts.
    #[serde(default, alias = "not_service_accounts")]
    pub not_service_accounts: Option<Vec<String>>,
    /// Peer IPs/CIDRs.
    #[serde(default, alias = "ip_blocks")]
    pub ip_blocks: Option<Vec<String>>,
    /// Negated peer IPs/CIDRs.
    #[serde(default, alias = "not_ip_blocks")]
    pub not_ip_blocks: Option<Vec<String>>,
    /// Original client IPs/CIDRs (from X-Forwarded-For).
    #[serde(default, alias = "remote_ip_blocks")]
    pub remote_ip_blocks: Option<Vec<String>>,
    /// Negated original client IPs/CIDRs.
    #[serde(default, alias = "not_remote_ip_blocks")]
    pub not_remote_ip_blocks: Option<Vec<String>>,
    /// Peer trust domains.
    #[serde(default, alias = "trust_domains")]
    pub trust_domains: Option<Vec<String>>,
    /// Negated trust domains.
    #[serde(default, alias = "not_trust_domains")]
    pub not_trust_domains: Option<Vec<String>>,
}

/// `Operation`: fields AND'ed, values in a list OR'ed.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    /// Request hosts.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    /// Negated hosts.
    #[serde(default, alias = "not_hosts")]
    pub not_hosts: Option<Vec<String>>,
    /// Destination ports (as strings).
    #[serde(default)]
    pub ports: Option<Vec<String>>,
    /// Negated ports.
    #[serde(default, alias = "not_ports")]
    pub not_ports: Option<Vec<String>>,
    /// HTTP methods.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Negated methods.
    #[serde(default, alias = "not_methods")]
    pub not_methods: Option<Vec<String>>,
    /// Paths (with `{*}`/`{**}` templates).
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// Negated paths.
    #[serde(default, alias = "not_paths")]
    pub not_paths: Option<Vec<String>>,
}

/// `Condition`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// Attribute name (`request.headers[x]`, `source.ip`...).
    #[serde(default)]
    pub key: String,
    /// Allowed values.
    #[serde(default)]
    pub values: Option<Vec<String>>,
    /// Forbidden values.
    #[serde(default, alias = "not_values")]
    pub not_values: Option<Vec<String>>,
}
