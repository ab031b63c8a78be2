//! The CORS filter → a VirtualService `corsPolicy` (Istio `conversion.go`
//! `createCORSFilter`): an origin with a `*` becomes a regular expression, the others exact
//! matches; `maxAge` is in seconds, 5 by default (Gateway API `HTTPCORSFilter`).

use crate::model::gateway_api::routes::CorsFilter;
use serde_json::{json, Value};

/// The `corsPolicy` for filter `c`.
pub fn policy(c: &CorsFilter) -> Value {
    let origins: Vec<Value> = c.allow_origins.iter().map(|o| origin(o)).collect();
    let mut p = json!({
        "allowOrigins": origins,
        "maxAge": format!("{}s", c.max_age.unwrap_or(5)),
    });
    for (field, list) in [
        ("allowMethods", &c.allow_methods),
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        if !list.is_empty() {
            p[field] = json!(list);
        }
    }
    if let Some(b) = c.allow_credentials {
        p["allowCredentials"] = json!(b);
    }
    p
}

/// An origin as a string match: `*` and wildcard hosts as a regex, the rest exact.
fn origin(o: &str) -> Value {
    if !o.contains('*') {
        return json!({"exact": o});
    }
    let re = regex::escape(o).replace("\\*", ".*");
    json!({"regex": re})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_defaults() {
        let c = CorsFilter {
            allow_origins: vec![
                "https://a.example".into(),
                "https://*.b.example".into(),
                "*".into(),
            ],
            allow_methods: vec!["GET".into()],
            ..CorsFilter::default()
        };
        let p = policy(&c);
        assert_eq!(p["allowOrigins"][0], json!({"exact": "https://a.example"}));
        assert_eq!(
            p["allowOrigins"][1],
            json!({"regex": "https://.*\\.b\\.example"})
        );
        assert_eq!(p["allowOrigins"][2], json!({"regex": ".*"}));
        assert_eq!(p["maxAge"], "5s");
        assert_eq!(p["allowMethods"], json!(["GET"]));
        assert!(p.get("allowCredentials").is_none());
    }
}
