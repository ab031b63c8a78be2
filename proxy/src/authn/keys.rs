//! A JSON Web Key Set (RFC 7517) parsed once into verification keys, and the key choice
//! of Envoy's jwt_verify_lib (`verify.cc`): a key whose `kid` differs from the token's
//! is skipped (a token without `kid`, or a key without one, tries every key), a key with
//! an `alg` other than the token's is skipped, and the key type must fit the algorithm.

use super::reason::Reason;
use super::verify::Parsed;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// The verification keys of one key set.
pub struct KeySet {
    keys: Vec<Key>,
}

struct Key {
    kid: Option<String>,
    alg: Option<String>,
    family: Family,
    key: DecodingKey,
}

/// Which algorithms a key can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
    Hmac,
}

impl Family {
    fn of(jwk: &Jwk) -> Option<Family> {
        Some(match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => Family::P256,
                EllipticCurve::P384 => Family::P384,
                // P-521 has no verifier in the ring backend.
                _ => return None,
            },
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Family::Ed25519
            }
            AlgorithmParameters::OctetKeyPair(_) => return None,
            AlgorithmParameters::OctetKey(_) => Family::Hmac,
        })
    }

    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Family::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Family::P256 => alg == ES256,
            Family::P384 => alg == ES384,
            Family::Ed25519 => alg == EdDSA,
            Family::Hmac => matches!(alg, HS256 | HS384 | HS512),
        }
    }
}

impl KeySet {
    /// Parses a key set's JSON text. Keys of unknown or unsupported types are skipped, as
    /// jwt_verify_lib does; a set left with no key is an error.
    pub fn parse(text: &str) -> Result<KeySet, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let list = v
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no \"keys\" array")?;
        let keys: Vec<Key> = list.iter().filter_map(key).collect();
        if keys.is_empty() {
            return Err(format!("none of its {} keys is usable", list.len()));
        }
        Ok(KeySet { keys })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a parsed set has a key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies the token's signature with the keys that may have made it.
    pub fn verify(&self, t: &Parsed<'_>) -> Result<(), Reason> {
        let mut tried = false;
        for k in &self.keys {
            if t.kid.is_some() && k.kid.is_some() && t.kid != k.kid {
                continue;
            }
            if k.alg.as_deref().is_some_and(|a| a != t.alg_name) {
                continue;
            }
            if !k.family.fits(t.alg) {
                continue;
            }
            tried = true;
            let ok = jsonwebtoken::crypto::verify(t.signature, t.signed.as_bytes(), &k.key, t.alg);
            if ok.unwrap_or(false) {
                return Ok(());
            }
        }
        Err(if tried {
            Reason::VerificationFailed
        } else {
            Reason::KidAlgMismatch
        })
    }
}

fn key(v: &Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(v.clone()).ok()?;
    let family = Family::of(&jwk)?;
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Some(Key {
        kid: text("kid"),
        alg: text("alg"),
        family,
        key,
    })
}
