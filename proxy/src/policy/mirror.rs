//! Traffic mirroring: the `-shadow` authority and the mirror draw. Mirrors are
//! fire-and-forget: their responses are discarded and they never delay the real request.

use http::HeaderValue;

/// Envoy's shadow host: `-shadow` appended to the host, before any port
/// (`reviews:9080` → `reviews-shadow:9080`).
pub fn shadow_authority(authority: &str) -> Option<HeaderValue> {
    let shadow = match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{h}-shadow:{p}")
        }
        _ => format!("{authority}-shadow"),
    };
    HeaderValue::from_str(&shadow).ok()
}

/// Draws whether to mirror at `per_million`.
pub fn draw(per_million: u32) -> bool {
    per_million >= 1_000_000 || fastrand::u32(0..1_000_000) < per_million
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_host() {
        assert_eq!(
            shadow_authority("reviews:9080").unwrap(),
            "reviews-shadow:9080"
        );
        assert_eq!(shadow_authority("reviews").unwrap(), "reviews-shadow");
    }
}
