//! End-user authentication: Istio's RequestAuthentication as Envoy's jwt_authn filter
//! runs it (docs/config.md, "End-user authentication"). A request without a token passes
//! unauthenticated (AuthorizationPolicy may then refuse it); a token valid for any rule
//! passes, its payload kept for AuthorizationPolicy and its principal (`iss/sub`) for the
//! access log; any other token is refused (401, or 403 for an audience not allowed).
//!
//! `extract` finds tokens, `verify` and `keys` check them, `remote`, `fetch` and `target`
//! keep remote key sets fresh off the request path, `stats` counts outcomes.

pub mod extract;
pub mod fetch;
pub mod keys;
pub mod reason;
pub mod remote;
pub mod stats;
pub mod target;
pub mod verify;

use http::header::HeaderValue;
use http::request::Parts;
use keys::KeySet;
use meshproxy_config::compile::authz::JwtClaims;
use meshproxy_config::compile::jwt::{JwtAuthn, JwtProvider, KeySource};
use meshproxy_config::compile::Snapshot;
use reason::Reason;
use serde_json::Value;
use std::sync::Arc;
use verify::{Keys, Parsed};

/// The keys of a config's rules (index-aligned with [`JwtAuthn::providers`]), made when
/// the config is put in force.
pub struct Authn {
    keys: Box<[RuleKeys]>,
}

enum RuleKeys {
    Static(KeySet),
    Remote(Arc<remote::RemoteKeys>),
    Unusable,
}

/// The token a rule accepted, before the request is edited.
struct Valid {
    /// The rule's index.
    rule: usize,
    /// The index of the location the token was found at.
    location: usize,
    claims: JwtClaims,
    /// The payload section, when the rule copies it to a header.
    payload: Option<HeaderValue>,
}

/// A verified token.
pub struct Verified {
    /// Its payload.
    pub claims: JwtClaims,
    /// `<iss>/<sub>` (Istio's request principal).
    pub principal: Arc<str>,
}

impl Authn {
    /// The keys of `snapshot`'s rules; `None` when no rule applies to this workload.
    /// Remote sets of `previous` (the config in force) whose URL is still named are kept.
    pub fn build(snapshot: &Snapshot, previous: Option<&Authn>) -> Option<Authn> {
        let cfg = snapshot.jwt_authn.as_ref()?;
        // Rules naming the same URL share one set (and one fetch task).
        let mut made: Vec<Arc<remote::RemoteKeys>> = Vec::new();
        let keys = cfg
            .providers
            .iter()
            .map(|p| match &p.keys {
                KeySource::Inline(text) => match KeySet::parse(text) {
                    Ok(s) => RuleKeys::Static(s),
                    Err(e) => {
                        tracing::warn!(rule = %p.name, error = %e, "inline jwks unusable: its tokens are refused");
                        RuleKeys::Unusable
                    }
                },
                KeySource::Remote(r) => {
                    let rk = match made.iter().find(|m| m.uri == r.uri) {
                        Some(m) => m.clone(),
                        None => {
                            let old = previous.into_iter().flat_map(Authn::remotes);
                            let rk = remote::remote(target::target(snapshot, r), old);
                            made.push(rk.clone());
                            rk
                        }
                    };
                    RuleKeys::Remote(rk)
                }
                KeySource::Missing => RuleKeys::Unusable,
            })
            .collect();
        Some(Authn { keys })
    }

    /// The remote key sets of the rules (for tests and status).
    pub fn remotes(&self) -> impl Iterator<Item = &Arc<remote::RemoteKeys>> {
        self.keys.iter().filter_map(|k| match k {
            RuleKeys::Remote(r) => Some(r),
            _ => None,
        })
    }

    /// Authenticates a request under `cfg` at `now` (seconds since the epoch): the
    /// verified token (with the request edited as its rule says), no token (`Ok(None)`),
    /// or why the token is refused. Headers the rules write are removed first, so a
    /// client cannot send its own.
    pub fn authenticate(
        &self,
        cfg: &JwtAuthn,
        parts: &mut Parts,
        now: u64,
    ) -> Result<Option<Verified>, Reason> {
        for h in &cfg.output_headers {
            parts.headers.remove(h);
        }
        let Some(Valid {
            rule,
            location,
            claims,
            payload,
        }) = self.find_valid(cfg, parts, now)?
        else {
            return Ok(None);
        };
        let p = &cfg.providers[rule];
        if !p.forward {
            extract::remove(&p.locations[location], parts);
        }
        if let (Some(h), Some(v)) = (&p.payload_header, payload) {
            parts.headers.insert(h.clone(), v);
        }
        for (h, path) in &p.claim_headers {
            if let Some(v) = claim_header(&claims, path) {
                parts.headers.insert(h.clone(), v);
            }
        }
        let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
        let principal = format!("{}/{}", text("iss"), text("sub")).into();
        Ok(Some(Verified { claims, principal }))
    }

    /// The first rule a token of the request is valid for: its index, the token's
    /// location, payload, and payload section (for `outputPayloadToHeader`).
    fn find_valid(&self, cfg: &JwtAuthn, parts: &Parts, now: u64) -> Result<Option<Valid>, Reason> {
        let mut refused: Option<Reason> = None;
        let mut last: Option<(&str, Result<Parsed<'_>, Reason>)> = None;
        for (i, p) in cfg.providers.iter().enumerate() {
            let Some((token, location)) = extract::find(&p.locations, parts) else {
                continue;
            };
            if last.as_ref().is_none_or(|(t, _)| *t != token) {
                last = Some((token, verify::parse(token)));
            }
            let Some((_, parsed)) = last.as_ref() else {
                continue;
            };
            let result = parsed
                .as_ref()
                .map_err(|r| *r)
                .and_then(|t| self.check(i, p, t, now));
            match result {
                Ok(()) => {
                    // `result` is Ok only for a parsed token.
                    let Some((_, Ok(t))) = last.take() else {
                        return Ok(None);
                    };
                    let payload = p
                        .payload_header
                        .as_ref()
                        .and_then(|_| HeaderValue::from_str(t.payload_b64).ok());
                    return Ok(Some(Valid {
                        rule: i,
                        location,
                        claims: t.claims,
                        payload,
                    }));
                }
                // A rule of the token's issuer says more than one of another issuer.
                Err(r) if refused.is_none() || refused == Some(Reason::UnknownIssuer) => {
                    refused = Some(r)
                }
                Err(_) => {}
            }
        }
        refused.map_or(Ok(None), Err)
    }

    fn check(&self, i: usize, p: &JwtProvider, t: &Parsed<'_>, now: u64) -> Result<(), Reason> {
        match self.keys.get(i) {
            Some(RuleKeys::Static(set)) => verify::check(t, p, Keys::Set(set), now),
            Some(RuleKeys::Remote(rk)) => {
                let guard = rk.keys.load();
                let keys = guard.as_deref().map_or(Keys::NotFetched, Keys::Set);
                verify::check(t, p, keys, now)
            }
            Some(RuleKeys::Unusable) | None => verify::check(t, p, Keys::Unusable, now),
        }
    }
}

/// Envoy `outputClaimToHeaders`: a string, number or boolean claim (integral numbers
/// without decimals); anything else sets no header.
fn claim_header(claims: &JwtClaims, path: &[Box<str>]) -> Option<HeaderValue> {
    let (first, rest) = path.split_first()?;
    let mut v = claims.get(&**first)?;
    for k in rest {
        v = v.get(&**k)?;
    }
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => n.to_string(),
        },
        _ => return None,
    };
    HeaderValue::from_str(&text).ok()
}
