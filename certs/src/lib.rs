//! Mesh identity for meshproxy: a root CA and SPIFFE workload certificates, PEM loading,
//! and rustls client/server configurations that verify peer SPIFFE identities.
//!
//! The crate is filled in with the mTLS work; today it only fixes the identity format.

/// The SPIFFE identity of a Kubernetes-style workload:
/// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn spiffe_format() {
        assert_eq!(
            super::spiffe_id("cluster.local", "default", "reviews"),
            "spiffe://cluster.local/ns/default/sa/reviews"
        );
    }
}
