//! One token's checks, in the order of Envoy's jwt_authn (`authenticator.cc`) and
//! jwt_verify_lib (`jwt.cc`, `verify.cc`): the form (three base64url sections, a JSON
//! header with a supported `alg`, a JSON payload), the issuer, the time window with 60 s
//! of clock skew, the audiences, then the signature with the rule's keys.

use super::keys::KeySet;
use super::reason::Reason;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use meshproxy_config::compile::authz::JwtClaims;
use meshproxy_config::compile::jwt::JwtProvider;
use serde_json::Value;
use std::str::FromStr;

/// Envoy's default `clock_skew_seconds`, which Istio keeps.
pub const CLOCK_SKEW_SECS: u64 = 60;

/// A token taken apart (not yet trusted).
pub struct Parsed<'t> {
    /// The header's `alg`.
    pub alg: Algorithm,
    /// `alg` as written (a key's `alg` is compared with it).
    pub alg_name: String,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// `<header>.<payload>`: what the signature signs.
    pub signed: &'t str,
    /// The payload section as sent (base64url): what `outputPayloadToHeader` copies.
    pub payload_b64: &'t str,
    /// The signature section.
    pub signature: &'t str,
    /// The payload.
    pub claims: JwtClaims,
}

fn decode_json(section: &str, bad64: Reason, bad_json: Reason) -> Result<JwtClaims, Reason> {
    let bytes = URL_SAFE_NO_PAD
        .decode(section.trim_end_matches('='))
        .map_err(|_| bad64)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(bad_json),
    }
}

/// Takes a token apart.
pub fn parse(token: &str) -> Result<Parsed<'_>, Reason> {
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(Reason::BadFormat);
    };
    let header = decode_json(h, Reason::HeaderBadBase64, Reason::HeaderBadJson)?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(Reason::HeaderBadJson)?
        .to_string();
    let alg = Algorithm::from_str(&alg_name).map_err(|_| Reason::HeaderBadAlg)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(Reason::HeaderBadJson),
    };
    let claims = decode_json(p, Reason::PayloadBadBase64, Reason::PayloadBadJson)?;
    for k in ["exp", "nbf"] {
        if claims.get(k).is_some_and(|v| v.as_u64().is_none()) {
            return Err(Reason::PayloadBadJson);
        }
    }
    Ok(Parsed {
        alg,
        alg_name,
        kid,
        signed: &token[..h.len() + 1 + p.len()],
        payload_b64: p,
        signature: s,
        claims,
    })
}

/// The keys a rule verifies with, as the data path finds them.
pub enum Keys<'a> {
    /// A key set.
    Set(&'a KeySet),
    /// A remote set not fetched (yet).
    NotFetched,
    /// An inline set with no usable key, or no key source.
    Unusable,
}

/// Whether the token is valid for the rule; `now` in seconds since the epoch.
pub fn check(t: &Parsed<'_>, rule: &JwtProvider, keys: Keys<'_>, now: u64) -> Result<(), Reason> {
    let claim = |k: &str| t.claims.get(k);
    if !rule.issuer.is_empty() && claim("iss").and_then(Value::as_str) != Some(&rule.issuer) {
        return Err(Reason::UnknownIssuer);
    }
    let skew = CLOCK_SKEW_SECS;
    if let Some(nbf) = claim("nbf").and_then(Value::as_u64) {
        if now.saturating_add(skew) < nbf {
            return Err(Reason::NotYetValid);
        }
    }
    if let Some(exp) = claim("exp").and_then(Value::as_u64) {
        if now > exp.saturating_add(skew) {
            return Err(Reason::Expired);
        }
    }
    if !rule.audiences.is_empty() && !audience_allowed(t, &rule.audiences) {
        return Err(Reason::AudienceNotAllowed);
    }
    match keys {
        Keys::Set(set) => set.verify(t),
        Keys::NotFetched => Err(Reason::JwksFetchFailed),
        Keys::Unusable => Err(Reason::JwksNoValidKeys),
    }
}

/// jwt_verify_lib `CheckAudience`: audiences compared without an `http://` or `https://`
/// scheme and without a trailing `/`; `aud` is a string or a list.
fn audience_allowed(t: &Parsed<'_>, allowed: &[String]) -> bool {
    fn bare(a: &str) -> &str {
        let a = a
            .strip_prefix("https://")
            .or_else(|| a.strip_prefix("http://"))
            .unwrap_or(a);
        a.strip_suffix('/').unwrap_or(a)
    }
    let ok = |a: &str| allowed.iter().any(|x| bare(x) == bare(a));
    match t.claims.get("aud") {
        Some(Value::String(a)) => ok(a),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(ok),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    fn rule(aud: &[&str]) -> JwtProvider {
        JwtProvider {
            name: "t".into(),
            issuer: "iss".into(),
            audiences: aud.iter().map(|a| a.to_string()).collect(),
            keys: meshproxy_config::compile::jwt::KeySource::Missing,
            locations: vec![],
            forward: false,
            payload_header: None,
            claim_headers: vec![],
        }
    }

    #[test]
    fn form_errors() {
        assert_eq!(parse("a.b").err(), Some(Reason::BadFormat));
        assert_eq!(parse("deadbeef").err(), Some(Reason::BadFormat));
        assert_eq!(parse("!!.e30.x").err(), Some(Reason::HeaderBadBase64));
        let t = token(r#"{"alg":"none"}"#, "{}");
        assert_eq!(parse(&t).err(), Some(Reason::HeaderBadAlg));
        let t = token(r#"{"alg":"RS256"}"#, "[1]");
        assert_eq!(parse(&t).err(), Some(Reason::PayloadBadJson));
        let t = token(r#"{"alg":"RS256"}"#, r#"{"exp":"soon"}"#);
        assert_eq!(parse(&t).err(), Some(Reason::PayloadBadJson));
    }

    #[test]
    fn issuer_time_window_with_skew_and_audiences() {
        let now = 1_000_000;
        let c = |payload: &str, aud: &[&str]| {
            let t = token(r#"{"alg":"RS256","kid":"k"}"#, payload);
            let p = parse(&t).unwrap();
            assert_eq!(p.kid.as_deref(), Some("k"));
            check(&p, &rule(aud), Keys::NotFetched, now).err()
        };
        assert_eq!(c(r#"{"iss":"other"}"#, &[]), Some(Reason::UnknownIssuer));
        assert_eq!(
            c(r#"{"iss":"iss","exp":999939}"#, &[]),
            Some(Reason::Expired)
        );
        assert_eq!(
            c(r#"{"iss":"iss","exp":999940}"#, &[]),
            Some(Reason::JwksFetchFailed)
        );
        assert_eq!(
            c(r#"{"iss":"iss","nbf":1000061}"#, &[]),
            Some(Reason::NotYetValid)
        );
        assert_eq!(
            c(r#"{"iss":"iss","nbf":1000060}"#, &[]),
            Some(Reason::JwksFetchFailed)
        );
        assert_eq!(
            c(r#"{"iss":"iss","aud":"b"}"#, &["a"]),
            Some(Reason::AudienceNotAllowed)
        );
        assert_eq!(
            c(r#"{"iss":"iss"}"#, &["a"]),
            Some(Reason::AudienceNotAllowed)
        );
        assert_eq!(
            c(r#"{"iss":"iss","aud":["x","https://a/"]}"#, &["a"]),
            Some(Reason::JwksFetchFailed)
        );
    }
}
