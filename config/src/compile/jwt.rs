//! RequestAuthentication → the JWT rules that apply to this proxy's workload, compiled
//! for the data path's authentication step (docs/config.md, "End-user authentication").
//!
//! Selection follows Istio (`pilot/pkg/model/authentication.go`, `policyattachment.go`):
//! policies of the workload's namespace and of the root namespace whose selector (absent:
//! every workload) the workload's labels satisfy; policies attached with `targetRefs` are
//! for Gateway API gateways and waypoints, never a sidecar's or a selector-based gateway's.
//! There is no precedence: every applicable policy's rules are concatenated and sorted by
//! issuer (Istio `policy_applier.go`).

use super::proxy_settings::ProxySettings;
use crate::model::request_authentication::{JwtRule, RequestAuthentication};
use crate::model::Resource;
use http::HeaderName;
use std::time::Duration;

/// Istio's default JWKS fetch timeout (`JWTRule.timeout`).
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// istiod's key-set refresh interval (`PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`, 20m); a
/// `Proxy.spec.jwksRefreshInterval` replaces it.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(20 * 60);

/// The JWT rules of one workload (immutable; shared by all requests).
#[derive(Clone, Debug, Default)]
pub struct JwtAuthn {
    /// The rules, sorted by issuer.
    pub providers: Vec<JwtProvider>,
    /// Headers the rules write (`outputPayloadToHeader`, `outputClaimToHeaders`): a
    /// client's own copies are removed before verification, so none can be spoofed.
    pub output_headers: Vec<HeaderName>,
}

/// One `jwtRules[]` entry.
#[derive(Clone, Debug)]
pub struct JwtProvider {
    /// `namespace/name` of the policy and the rule's index, for logs.
    pub name: String,
    /// The `iss` a token must carry; empty = not checked (a rule with only `jwksUri`).
    pub issuer: String,
    /// Accepted audiences; empty = any.
    pub audiences: Vec<String>,
    /// Where the keys come from.
    pub keys: KeySource,
    /// Where the token is read from, in order.
    pub locations: Vec<Location>,
    /// `forwardOriginalToken`.
    pub forward: bool,
    /// `outputPayloadToHeader`.
    pub payload_header: Option<HeaderName>,
    /// `outputClaimToHeaders`: header and the claim's path (`a.b` → `[a, b]`).
    pub claim_headers: Vec<(HeaderName, Box<[Box<str>]>)>,
}

/// Where a rule's keys come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// `jwks`: the key set's JSON text.
    Inline(String),
    /// `jwksUri`.
    Remote(RemoteJwks),
    /// Neither: OpenID discovery, which meshproxy does not do (tokens are refused).
    Missing,
}

/// A key set fetched from a URL, off the request path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RemoteJwks {
    /// The URL as written.
    pub uri: String,
    /// `https` (else plain `http`).
    pub https: bool,
    /// Host name (the TLS server name and registry host).
    pub host: String,
    /// Port (443 / 80 by default).
    pub port: u16,
    /// Path and query.
    pub path: String,
    /// Fetch timeout (`timeout`, default 5s).
    pub timeout: Duration,
    /// Time between successful fetches.
    pub refresh: Duration,
}

/// A token location (Envoy `JwtProvider.from_headers/from_params/from_cookies`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A header, the token after `prefix`.
    Header {
        /// Header name.
        name: HeaderName,
        /// Text before the token.
        prefix: Box<str>,
    },
    /// A query parameter.
    Param(Box<str>),
    /// A cookie.
    Cookie(Box<str>),
}

/// Istio's default locations when a rule names none: `Authorization: Bearer <token>`,
/// then the `access_token` query parameter (`policy_applier.go`; Envoy's defaults).
fn default_locations() -> Vec<Location> {
    vec![
        Location::Header {
            name: http::header::AUTHORIZATION,
            prefix: "Bearer ".into(),
        },
        Location::Param("access_token".into()),
    ]
}

impl JwtAuthn {
    /// The rules that apply to `proxy`'s workload; `None` when there are none (the data
    /// path then skips authentication with one branch).
    pub fn compile(resources: &[Resource], proxy: &ProxySettings) -> Option<JwtAuthn> {
        let refresh = refresh_interval(resources);
        let mut out = JwtAuthn::default();
        for r in resources {
            let Some(ra) = r.as_request_authentication() else {
                continue;
            };
            if !applies(r, ra, proxy) {
                continue;
            }
            for (i, rule) in ra.jwt_rules.iter().enumerate() {
                let name = format!("{}/{}[{i}]", r.namespace, r.name);
                let p = provider(name, rule, refresh);
                for h in p
                    .payload_header
                    .iter()
                    .chain(p.claim_headers.iter().map(|c| &c.0))
                {
                    if !out.output_headers.contains(h) {
                        out.output_headers.push(h.clone());
                    }
                }
                out.providers.push(p);
            }
        }
        out.providers.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        (!out.providers.is_empty()).then_some(out)
    }

    /// The distinct remote key sets the rules name.
    pub fn remote_key_sets(&self) -> impl Iterator<Item = &RemoteJwks> {
        self.providers.iter().filter_map(|p| match &p.keys {
            KeySource::Remote(r) => Some(r),
            _ => None,
        })
    }
}

fn applies(r: &Resource, ra: &RequestAuthentication, proxy: &ProxySettings) -> bool {
    if ra.target_ref.is_some() || !ra.target_refs.is_empty() {
        return false;
    }
    if r.namespace != proxy.namespace && r.namespace != proxy.root_namespace {
        return false;
    }
    ra.selector
        .as_ref()
        .is_none_or(|s| proxy.selected_by(&s.match_labels))
}

/// `Proxy.spec.jwksRefreshInterval`, else istiod's 20 minutes.
fn refresh_interval(resources: &[Resource]) -> Duration {
    resources
        .iter()
        .filter_map(|r| r.as_proxy())
        .find_map(|p| p.jwks_refresh_interval.as_ref())
        .map(|d| d.to_std())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_REFRESH)
}

fn provider(name: String, rule: &JwtRule, refresh: Duration) -> JwtProvider {
    let timeout = rule
        .timeout
        .map(|t| t.to_std())
        .filter(|t| !t.is_zero())
        .unwrap_or(DEFAULT_FETCH_TIMEOUT);
    let keys = if !rule.jwks.is_empty() {
        KeySource::Inline(rule.jwks.clone())
    } else if !rule.jwks_uri.is_empty() {
        remote(&rule.jwks_uri, timeout, refresh).map_or(KeySource::Missing, KeySource::Remote)
    } else {
        KeySource::Missing
    };
    let mut locations: Vec<Location> = rule
        .from_headers
        .iter()
        .filter_map(|h| {
            Some(Location::Header {
                name: HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                prefix: h.prefix.as_str().into(),
            })
        })
        .collect();
    locations.extend(
        rule.from_params
            .iter()
            .map(|p| Location::Param(p.as_str().into())),
    );
    locations.extend(
        rule.from_cookies
            .iter()
            .map(|c| Location::Cookie(c.as_str().into())),
    );
    if rule.from_headers.is_empty() && rule.from_params.is_empty() && rule.from_cookies.is_empty() {
        locations = default_locations();
    }
    let header = |h: &str| HeaderName::from_bytes(h.as_bytes()).ok();
    JwtProvider {
        name,
        issuer: rule.issuer.clone(),
        audiences: rule.audiences.clone(),
        keys,
        locations,
        forward: rule.forward_original_token,
        payload_header: Some(rule.output_payload_to_header.as_str())
            .filter(|h| !h.is_empty())
            .and_then(header),
        claim_headers: rule
            .output_claim_to_headers
            .iter()
            .filter_map(|c| {
                Some((
                    header(&c.header)?,
                    c.claim.split('.').map(Box::from).collect(),
                ))
            })
            .collect(),
    }
}

fn remote(uri: &str, timeout: Duration, refresh: Duration) -> Option<RemoteJwks> {
    let u: http::Uri = uri.parse().ok()?;
    let https = u.scheme_str() == Some("https");
    Some(RemoteJwks {
        uri: uri.to_string(),
        https,
        host: u.host()?.trim_matches(['[', ']']).to_string(),
        port: u.port_u16().unwrap_or(if https { 443 } else { 80 }),
        path: u.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        timeout,
        refresh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::load_str;

    fn snap(docs: &str) -> crate::compile::snapshot::Snapshot {
        let proxy = "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {name: p, namespace: foo}\nspec:\n  workload: {labels: {app: httpbin}}\n  jwksRefreshInterval: 2s\n---\n";
        load_str("t.yaml", &format!("{proxy}{docs}")).unwrap_or_else(|d| panic!("{d}"))
    }

    fn ra(ns: &str, name: &str, spec: &str) -> String {
        format!("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}---\n")
    }

    #[test]
    fn selection_like_istio_and_rules_sorted_by_issuer() {
        let s = snap(&[
            ra("foo", "b", "  selector: {matchLabels: {app: httpbin}}\n  jwtRules: [{issuer: zeta, jwks: '{\"keys\":[]}'}]\n"),
            ra("istio-system", "mesh", "  jwtRules: [{issuer: alpha, jwksUri: \"https://keys.example.com:8443/k?x=1\", timeout: 2s}]\n"),
            ra("foo", "other", "  selector: {matchLabels: {app: other}}\n  jwtRules: [{issuer: no}]\n"),
            ra("bar", "elsewhere", "  jwtRules: [{issuer: no}]\n"),
            ra("foo", "gw", "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: g}]\n  jwtRules: [{issuer: no}]\n"),
        ].concat());
        let j = s.jwt_authn.as_ref().expect("rules apply");
        let issuers: Vec<_> = j.providers.iter().map(|p| p.issuer.as_str()).collect();
        assert_eq!(issuers, ["alpha", "zeta"]);
        let r = j.remote_key_sets().next().unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.path.as_str(), r.https),
            ("keys.example.com", 8443, "/k?x=1", true)
        );
        assert_eq!(
            (r.timeout, r.refresh),
            (Duration::from_secs(2), Duration::from_secs(2))
        );
        assert_eq!(j.providers[0].locations, default_locations());
    }

    #[test]
    fn locations_and_output_headers() {
        let s = snap(&ra("foo", "a", "  jwtRules:\n  - issuer: i\n    jwks: '{\"keys\":[]}'\n    fromHeaders: [{name: x-jwt}]\n    fromParams: [tok]\n    fromCookies: [session]\n    outputPayloadToHeader: x-payload\n    outputClaimToHeaders: [{header: x-foo, claim: a.b}]\n"));
        let j = s.jwt_authn.unwrap();
        let p = &j.providers[0];
        assert_eq!(p.locations.len(), 3);
        assert_eq!(p.claim_headers[0].1.len(), 2);
        assert_eq!(j.output_headers.len(), 2);
        assert!(snap("").jwt_authn.is_none());
    }
}
