//! Mesh identity for meshproxy: a root CA and SPIFFE workload certificates, PEM loading,
//! and rustls client/server configurations that verify peer SPIFFE identities.
//!
//! - [`Ca`] creates or loads a mesh root CA and issues workload certificates ([`Issued`])
//!   whose URI SAN is the workload's SPIFFE ID, shaped like Istio's.
//! - [`Identity`] is a validated certificate, key and mesh CA loaded from files.
//! - [`mesh_server_config`] / [`mesh_client_config`] are the two ends of mesh mTLS
//!   (inbound sidecar, `ISTIO_MUTUAL`); [`client_config`] is DestinationRule
//!   `SIMPLE`/`MUTUAL` origination; [`server_config`] serves gateways.
//! - [`peer_spiffe`] and [`xfcc`] turn a peer certificate into a principal and Envoy's
//!   `x-forwarded-client-cert` value.
//!
//! Everything uses rustls' `ring` provider explicitly; no process-wide default is needed.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ca;
mod error;
mod files;
mod tls;
mod x509;

pub use ca::{Ca, Issued};
pub use error::CertError;
pub use tls::{
    accept_any_server, check_peer_sans, client_config, mesh_client_config, mesh_server_config,
    server_config, ClientAuth, ClientTlsOptions, Identity,
};
pub use x509::{peer_spiffe, xfcc};

/// A time as `YYYY-MM-DD HH:MM:SS UTC`, the form this crate's messages use for
/// certificate validity (e.g. for logging an identity's expiry).
pub fn format_time(t: std::time::SystemTime) -> String {
    x509::fmt_time(x509::unix_secs(t))
}

/// The rustls this crate builds configurations with, for callers that need its types.
pub use rustls;

/// The SPIFFE identity of a Kubernetes-style workload:
/// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

#[cfg(test)]
mod tests;
