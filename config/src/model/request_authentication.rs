//! `RequestAuthentication` (security.istio.io): which JWTs a workload accepts from end
//! users. Follows Istio's `request_authentication.proto`
//! (<https://istio.io/latest/docs/reference/config/security/request_authentication/>).

use super::common::{PolicyTargetReference, WorkloadSelector};
use crate::duration::Duration;
use serde::Deserialize;

/// `RequestAuthentication.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestAuthentication {
    /// Workloads this applies to; absent = the namespace (the mesh in the root namespace).
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    /// Hidden: single attachment target.
    #[serde(default, alias = "target_ref")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Attachment targets (Gateway API gateways, waypoints); a sidecar ignores such policies.
    #[serde(default, alias = "target_refs")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// How to validate tokens; a token valid for any rule is accepted.
    #[serde(default, alias = "jwt_rules")]
    pub jwt_rules: Vec<JwtRule>,
}

/// `JWTRule`: one issuer's tokens.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtRule {
    /// The `iss` a token must carry (optional when `jwksUri` is set).
    #[serde(default)]
    pub issuer: String,
    /// Accepted `aud` values; empty = any.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// URL of the key set (fetched over HTTPS).
    #[serde(default, alias = "jwks_uri")]
    pub jwks_uri: String,
    /// The key set inline, as JSON text.
    #[serde(default)]
    pub jwks: String,
    /// Headers the token is read from.
    #[serde(default, alias = "from_headers")]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters the token is read from.
    #[serde(default, alias = "from_params")]
    pub from_params: Vec<String>,
    /// Cookies the token is read from.
    #[serde(default, alias = "from_cookies")]
    pub from_cookies: Vec<String>,
    /// Header the verified payload is copied to (base64url).
    #[serde(default, alias = "output_payload_to_header")]
    pub output_payload_to_header: String,
    /// Keep the token in the request after it is verified (default false: removed).
    #[serde(default, alias = "forward_original_token")]
    pub forward_original_token: bool,
    /// Claims copied to request headers.
    #[serde(default, alias = "output_claim_to_headers")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// JWKS fetch timeout (default 5s).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Claims whose string value is a space-separated list.
    #[serde(default, alias = "space_delimited_claims")]
    pub space_delimited_claims: Vec<String>,
}

/// `JWTHeader`: a header carrying a token, after an optional prefix.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtHeader {
    /// Header name.
    #[serde(default)]
    pub name: String,
    /// Text before the token (e.g. `Bearer `).
    #[serde(default)]
    pub prefix: String,
}

/// `ClaimToHeader`: a claim copied to a request header.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClaimToHeader {
    /// Header name.
    #[serde(default)]
    pub header: String,
    /// Claim name (`.` separates nested names).
    #[serde(default)]
    pub claim: String,
}
