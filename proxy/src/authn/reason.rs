//! Why a token was refused: Envoy jwt_authn's statuses (google/jwt_verify_lib
//! `status.cc`), their HTTP status, the local reply's body and response details, and the
//! metric label.

/// A refused token's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not three base64url sections.
    BadFormat,
    /// The header is not base64url.
    HeaderBadBase64,
    /// The header is not a JSON object with a string `alg`.
    HeaderBadJson,
    /// `alg` names an algorithm that is not supported.
    HeaderBadAlg,
    /// The payload is not base64url.
    PayloadBadBase64,
    /// The payload is not a JSON object (or `exp`/`nbf` are not integers).
    PayloadBadJson,
    /// No rule has the token's `iss`.
    UnknownIssuer,
    /// `exp` (plus the clock skew) has passed.
    Expired,
    /// `nbf` (minus the clock skew) has not come yet.
    NotYetValid,
    /// No `aud` is accepted by the rule.
    AudienceNotAllowed,
    /// The rule's remote key set has not been fetched (yet).
    JwksFetchFailed,
    /// The rule's key set has no usable key.
    JwksNoValidKeys,
    /// No key of the set matches the token's `kid` and `alg`.
    KidAlgMismatch,
    /// The signature does not verify.
    VerificationFailed,
}

impl Reason {
    /// Every reason, in the order the metric families list them.
    pub const ALL: [Reason; 14] = [
        Reason::BadFormat,
        Reason::HeaderBadBase64,
        Reason::HeaderBadJson,
        Reason::HeaderBadAlg,
        Reason::PayloadBadBase64,
        Reason::PayloadBadJson,
        Reason::UnknownIssuer,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::AudienceNotAllowed,
        Reason::JwksFetchFailed,
        Reason::JwksNoValidKeys,
        Reason::KidAlgMismatch,
        Reason::VerificationFailed,
    ];

    /// Envoy: `403` for an audience that is not allowed, `401` for anything else.
    pub fn status(self) -> u16 {
        if self == Reason::AudienceNotAllowed {
            403
        } else {
            401
        }
    }

    /// The local reply's body: jwt_verify_lib's status string.
    pub fn message(self) -> &'static str {
        match self {
            Reason::BadFormat => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            Reason::HeaderBadBase64 => "Jwt header is an invalid Base64url encoded",
            Reason::HeaderBadJson => "Jwt header is an invalid JSON",
            Reason::HeaderBadAlg => "Jwt header [alg] is not supported",
            Reason::PayloadBadBase64 => "Jwt payload is an invalid Base64url encoded",
            Reason::PayloadBadJson => "Jwt payload is an invalid JSON",
            Reason::UnknownIssuer => "Jwt issuer is not configured",
            Reason::Expired => "Jwt is expired",
            Reason::NotYetValid => "Jwt not yet valid",
            Reason::AudienceNotAllowed => "Audiences in Jwt are not allowed",
            Reason::JwksFetchFailed => "Jwks remote fetch is failed",
            Reason::JwksNoValidKeys => "Jwks doesn't have any valid public key",
            Reason::KidAlgMismatch => "Jwks doesn't have key to match kid or alg from Jwt",
            Reason::VerificationFailed => "Jwt verification fails",
        }
    }

    /// Envoy's response details: `jwt_authn_access_denied{<status, spaces as _>}`.
    pub fn details(self) -> &'static str {
        match self {
            Reason::BadFormat => "jwt_authn_access_denied{Jwt_is_not_in_the_form_of_Header.Payload.Signature_with_two_dots_and_3_sections}",
            Reason::HeaderBadBase64 => "jwt_authn_access_denied{Jwt_header_is_an_invalid_Base64url_encoded}",
            Reason::HeaderBadJson => "jwt_authn_access_denied{Jwt_header_is_an_invalid_JSON}",
            Reason::HeaderBadAlg => "jwt_authn_access_denied{Jwt_header_[alg]_is_not_supported}",
            Reason::PayloadBadBase64 => "jwt_authn_access_denied{Jwt_payload_is_an_invalid_Base64url_encoded}",
            Reason::PayloadBadJson => "jwt_authn_access_denied{Jwt_payload_is_an_invalid_JSON}",
            Reason::UnknownIssuer => "jwt_authn_access_denied{Jwt_issuer_is_not_configured}",
            Reason::Expired => "jwt_authn_access_denied{Jwt_is_expired}",
            Reason::NotYetValid => "jwt_authn_access_denied{Jwt_not_yet_valid}",
            Reason::AudienceNotAllowed => "jwt_authn_access_denied{Audiences_in_Jwt_are_not_allowed}",
            Reason::JwksFetchFailed => "jwt_authn_access_denied{Jwks_remote_fetch_is_failed}",
            Reason::JwksNoValidKeys => "jwt_authn_access_denied{Jwks_doesn't_have_any_valid_public_key}",
            Reason::KidAlgMismatch => "jwt_authn_access_denied{Jwks_doesn't_have_key_to_match_kid_or_alg_from_Jwt}",
            Reason::VerificationFailed => "jwt_authn_access_denied{Jwt_verification_fails}",
        }
    }

    /// The `reason` label of `meshproxy_jwt_authn_failed_total`.
    pub fn label(self) -> &'static str {
        match self {
            Reason::BadFormat
            | Reason::HeaderBadBase64
            | Reason::HeaderBadJson
            | Reason::PayloadBadBase64
            | Reason::PayloadBadJson => "malformed",
            Reason::HeaderBadAlg => "unsupported_alg",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::AudienceNotAllowed => "audience_not_allowed",
            Reason::JwksFetchFailed => "jwks_fetch_failed",
            Reason::JwksNoValidKeys => "jwks_no_valid_keys",
            Reason::KidAlgMismatch => "unknown_key",
            Reason::VerificationFailed => "bad_signature",
        }
    }
}
