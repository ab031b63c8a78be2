//! RequestAuthentication rules: istio/istio `ValidateRequestAuthentication` and
//! `validateJwtRule` (pkg/config/validation/validation.go), plus the warnings of what
//! meshproxy does not enforce.

use super::V;
use crate::model::request_authentication::*;

pub(crate) fn validate(v: &mut V, ra: &RequestAuthentication) {
    let has_refs = ra.target_ref.is_some() || !ra.target_refs.is_empty();
    if ra.selector.is_some() && has_refs {
        v.err("spec", "only one of targetRefs or selector can be set");
    }
    if let Some(sel) = &ra.selector {
        super::authorization_policy::selector(v, "spec.selector.matchLabels", &sel.match_labels);
    }
    if let Some(t) = &ra.target_ref {
        super::authorization_policy::target_ref(v, "spec.targetRef", t);
    }
    if ra.target_refs.len() > 16 {
        v.err("spec.targetRefs", "at most 16 targetRefs are allowed");
    }
    for (i, t) in ra.target_refs.iter().enumerate() {
        super::authorization_policy::target_ref(v, &format!("spec.targetRefs[{i}]"), t);
    }
    if has_refs {
        v.not_enforced(
            "spec.targetRefs",
            "attachment to gateways and waypoints by reference; use selector",
        );
    }
    for (i, rule) in ra.jwt_rules.iter().enumerate() {
        jwt_rule(v, &format!("spec.jwtRules[{i}]"), rule);
    }
}

fn jwt_rule(v: &mut V, p: &str, r: &JwtRule) {
    if r.issuer.is_empty() && r.jwks_uri.is_empty() {
        v.err(
            &format!("{p}.issuer"),
            "issuer must be set when jwksUri is not",
        );
    }
    for (i, a) in r.audiences.iter().enumerate() {
        if a.is_empty() {
            v.err(&format!("{p}.audiences[{i}]"), "audience must be non-empty");
        }
    }
    if !r.jwks_uri.is_empty() {
        if let Err(e) = check_jwks_uri(&r.jwks_uri) {
            v.err(&format!("{p}.jwksUri"), e);
        }
        if !r.jwks.is_empty() {
            v.err(p, "only one of jwks or jwksUri can be set");
        }
    }
    if !r.jwks.is_empty() {
        jwks(v, &format!("{p}.jwks"), &r.jwks);
    }
    if r.jwks.is_empty() && r.jwks_uri.is_empty() {
        v.not_enforced(
            &format!("{p}.jwksUri"),
            "OpenID discovery of the key set (set jwksUri or jwks); tokens of this issuer are refused",
        );
    }
    for (i, h) in r.from_headers.iter().enumerate() {
        let hp = format!("{p}.fromHeaders[{i}].name");
        if h.name.is_empty() {
            v.err(&hp, "location header name must be non-empty");
        } else if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
            v.err(&hp, format!("invalid header name {:?}", h.name));
        }
    }
    for (i, q) in r.from_params.iter().enumerate() {
        if q.is_empty() {
            v.err(
                &format!("{p}.fromParams[{i}]"),
                "location query must be non-empty",
            );
        }
    }
    for (i, c) in r.from_cookies.iter().enumerate() {
        if c.is_empty() {
            v.err(
                &format!("{p}.fromCookies[{i}]"),
                "cookie name must be non-empty",
            );
        }
    }
    if !r.output_payload_to_header.is_empty() && !claim_header_ok(&r.output_payload_to_header) {
        v.err(
            &format!("{p}.outputPayloadToHeader"),
            format!("invalid header name {:?}", r.output_payload_to_header),
        );
    }
    for (i, c) in r.output_claim_to_headers.iter().enumerate() {
        let cp = format!("{p}.outputClaimToHeaders[{i}]");
        if c.header.is_empty() {
            v.err(&format!("{cp}.header"), "header must be non-empty");
        } else if !claim_header_ok(&c.header) {
            v.err(
                &format!("{cp}.header"),
                format!("invalid header {:?}: must match ^[-_A-Za-z0-9]+$", c.header),
            );
        }
        if c.claim.is_empty() {
            v.err(&format!("{cp}.claim"), "claim must be non-empty");
        }
    }
    v.duration(&format!("{p}.timeout"), &r.timeout);
}

/// Istio: `outputClaimToHeaders[].header` must match `^[-_A-Za-z0-9]+$`.
fn claim_header_ok(h: &str) -> bool {
    h.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Istio `security.ValidateJwksURI`: an http or https URL with a host, at most 2048 bytes.
pub(crate) fn check_jwks_uri(uri: &str) -> Result<(), String> {
    if uri.len() > 2048 {
        return Err("jwksUri must be at most 2048 characters".into());
    }
    let parsed: http::Uri = uri
        .parse()
        .map_err(|e| format!("invalid jwksUri {uri:?}: {e}"))?;
    match parsed.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "invalid jwksUri {uri:?}: scheme must be http or https"
            ))
        }
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Err(format!("invalid jwksUri {uri:?}: no host"));
    }
    Ok(())
}

/// Istio parses `jwks` as a key set (`jwk.Parse`); a key carrying private material (`d`)
/// is warned about (`validateJwtRule`).
fn jwks(v: &mut V, p: &str, text: &str) {
    let parsed: Result<serde_json::Value, _> = serde_json::from_str(text);
    let keys = match &parsed {
        Ok(j) => j.get("keys").and_then(|k| k.as_array()),
        Err(e) => {
            v.err(p, format!("jwks is not valid JSON: {e}"));
            return;
        }
    };
    let Some(keys) = keys else {
        v.err(p, "jwks must be a JSON object with a \"keys\" array");
        return;
    };
    for (i, k) in keys.iter().enumerate() {
        if k.get("kty").and_then(|t| t.as_str()).is_none() {
            v.err(p, format!("jwks key {i} has no \"kty\""));
        }
        if k.get("d").is_some() {
            v.warn(
                p,
                format!("jwks key {i} contains private key material (\"d\")"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::compile::load_str;

    fn diags(spec: &str) -> String {
        let text = format!("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: ra, namespace: default}}\nspec:\n{spec}");
        match load_str("ra.yaml", &text) {
            Ok(s) => s.warnings.to_string(),
            Err(d) => d.to_string(),
        }
    }

    #[test]
    fn istio_rejections_name_the_field() {
        let cases = [
            ("  jwtRules: [{audiences: [a]}]\n", "spec.jwtRules[0].issuer"),
            ("  jwtRules: [{issuer: i, audiences: [\"\"]}]\n", "spec.jwtRules[0].audiences[0]"),
            ("  jwtRules: [{issuer: i, jwksUri: \"ftp://x/k\"}]\n", "spec.jwtRules[0].jwksUri"),
            ("  jwtRules: [{issuer: i, jwks: \"{not json\"}]\n", "spec.jwtRules[0].jwks"),
            ("  jwtRules: [{issuer: i, jwks: '{\"keys\":[]}', jwksUri: \"https://x/k\"}]\n", "only one of jwks or jwksUri"),
            ("  jwtRules: [{issuer: i, fromHeaders: [{name: \"\"}]}]\n", "spec.jwtRules[0].fromHeaders[0].name"),
            ("  jwtRules: [{issuer: i, fromParams: [\"\"]}]\n", "spec.jwtRules[0].fromParams[0]"),
            ("  jwtRules: [{issuer: i, fromCookies: [\"\"]}]\n", "spec.jwtRules[0].fromCookies[0]"),
            ("  jwtRules: [{issuer: i, outputClaimToHeaders: [{header: \"a b\", claim: c}]}]\n", "outputClaimToHeaders[0].header"),
            ("  jwtRules: [{issuer: i, outputClaimToHeaders: [{header: x-a}]}]\n", "outputClaimToHeaders[0].claim"),
            ("  jwtRules: [{issuer: i, timeout: 1500us}]\n", "spec.jwtRules[0].timeout"),
            ("  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: g}]\n", "only one of targetRefs or selector"),
            ("  jwtRules: [{issuer: i, frmHeaders: []}]\n", "unknown field `frmHeaders`"),
        ];
        for (spec, want) in cases {
            let d = diags(spec);
            assert!(d.contains(want), "{spec}: want {want:?} in\n{d}");
            assert!(d.contains("RequestAuthentication/default/ra"), "{d}");
        }
    }

    #[test]
    fn a_good_rule_has_no_error_and_private_keys_are_warned() {
        let d = diags("  selector: {matchLabels: {app: a}}\n  jwtRules:\n  - issuer: testing@secure.istio.io\n    jwksUri: https://raw.githubusercontent.com/istio/istio/release-1.27/security/tools/jwt/samples/jwks.json\n    fromHeaders: [{name: x-jwt, prefix: \"Bearer \"}]\n    outputClaimToHeaders: [{header: x-jwt-claim-foo, claim: foo}]\n    timeout: 3s\n");
        assert!(!d.contains("error"), "{d}");
        let d = diags("  jwtRules: [{issuer: i, jwks: '{\"keys\":[{\"kty\":\"oct\",\"k\":\"AA\",\"d\":\"x\"}]}'}]\n");
        assert!(d.contains("private key material"), "{d}");
    }
}
