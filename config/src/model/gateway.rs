//! `Gateway` (networking.istio.io): edge listeners — ports, hosts and server TLS.
//! Follows Istio's `gateway.proto`.

use super::map::Map;
use serde::Deserialize;

/// `Gateway.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// Listeners.
    #[serde(default)]
    pub servers: Vec<Server>,
    /// Labels of the proxies that implement this gateway.
    #[serde(default)]
    pub selector: Map<String, String>,
}

/// `Server`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// Port to listen on (required).
    #[serde(default)]
    pub port: Option<Port>,
    /// Bind address or `unix://` path.
    #[serde(default)]
    pub bind: String,
    /// Hosts exposed (`ns/host` or `host`, required).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Server TLS.
    #[serde(default)]
    pub tls: Option<ServerTlsSettings>,
    /// Hidden, not implemented by Istio.
    #[serde(default, alias = "default_endpoint")]
    pub default_endpoint: String,
    /// Server name, unique in the gateway.
    #[serde(default)]
    pub name: String,
}

/// `Port`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// Port number (required).
    #[serde(default)]
    pub number: u32,
    /// HTTP|HTTPS|GRPC|GRPC-WEB|HTTP2|MONGO|TCP|TLS (required).
    #[serde(default)]
    pub protocol: String,
    /// Port name (required).
    #[serde(default)]
    pub name: String,
    /// Deprecated target port.
    #[serde(default, alias = "target_port")]
    pub target_port: Option<u32>,
}

/// `ServerTLSSettings`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// Answer plain HTTP with a 301 to https.
    #[serde(default, alias = "https_redirect")]
    pub https_redirect: bool,
    /// TLS mode (default PASSTHROUGH).
    #[serde(default)]
    pub mode: Option<ServerTlsMode>,
    /// Certificate file.
    #[serde(default, alias = "server_certificate")]
    pub server_certificate: String,
    /// Key file.
    #[serde(default, alias = "private_key")]
    pub private_key: String,
    /// CA bundle to verify clients (MUTUAL).
    #[serde(default, alias = "ca_certificates")]
    pub ca_certificates: String,
    /// CRL file.
    #[serde(default, alias = "ca_crl")]
    pub ca_crl: String,
    /// Kubernetes secret name.
    #[serde(default, alias = "credential_name")]
    pub credential_name: String,
    /// Kubernetes secret names (RSA + ECDSA).
    #[serde(default, alias = "credential_names")]
    pub credential_names: Vec<String>,
    /// Kubernetes secret name of the client CA.
    #[serde(default, alias = "ca_cert_credential_name")]
    pub ca_cert_credential_name: String,
    /// Certificate/key file pairs (RSA + ECDSA).
    #[serde(default, alias = "tls_certificates")]
    pub tls_certificates: Vec<TlsCertificate>,
    /// SANs a client certificate must carry.
    #[serde(default, alias = "subject_alt_names")]
    pub subject_alt_names: Vec<String>,
    /// SPKI hashes a client certificate must match.
    #[serde(default, alias = "verify_certificate_spki")]
    pub verify_certificate_spki: Vec<String>,
    /// Certificate hashes a client certificate must match.
    #[serde(default, alias = "verify_certificate_hash")]
    pub verify_certificate_hash: Vec<String>,
    /// Minimum TLS version.
    #[serde(default, alias = "min_protocol_version")]
    pub min_protocol_version: Option<TlsProtocol>,
    /// Maximum TLS version.
    #[serde(default, alias = "max_protocol_version")]
    pub max_protocol_version: Option<TlsProtocol>,
    /// Cipher suites.
    #[serde(default, alias = "cipher_suites")]
    pub cipher_suites: Vec<String>,
    /// Skip client certificate verification.
    #[serde(default, alias = "insecure_skip_verify")]
    pub insecure_skip_verify: Option<bool>,
    /// ECDH curves.
    #[serde(default, alias = "ecdh_curves")]
    pub ecdh_curves: Vec<String>,
    /// ALPN protocols offered.
    #[serde(default, alias = "alpn_protocols")]
    pub alpn_protocols: Vec<String>,
}

/// `ServerTLSSettings.TLSCertificate`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsCertificate {
    /// Certificate file.
    #[serde(default, alias = "server_certificate")]
    pub server_certificate: String,
    /// Key file.
    #[serde(default, alias = "private_key")]
    pub private_key: String,
    /// Hidden: CA file.
    #[serde(default, alias = "ca_certificates")]
    pub ca_certificates: String,
}

/// `ServerTLSSettings.TLSmode`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    /// Route by SNI without terminating.
    Passthrough,
    /// Terminate TLS.
    Simple,
    /// Terminate TLS and require a client certificate.
    Mutual,
    /// SNI-based passthrough to mesh services without a VirtualService.
    AutoPassthrough,
    /// Terminate with the mesh identity.
    IstioMutual,
    /// Request but do not require a client certificate.
    OptionalMutual,
}

/// `ServerTLSSettings.TLSProtocol`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsProtocol {
    /// Implementation default.
    TlsAuto,
    /// TLS 1.0.
    #[serde(rename = "TLSV1_0")]
    Tlsv10,
    /// TLS 1.1.
    #[serde(rename = "TLSV1_1")]
    Tlsv11,
    /// TLS 1.2.
    #[serde(rename = "TLSV1_2")]
    Tlsv12,
    /// TLS 1.3.
    #[serde(rename = "TLSV1_3")]
    Tlsv13,
}
