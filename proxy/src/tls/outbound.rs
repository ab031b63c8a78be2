//! Outbound TLS origination as the DestinationRule says: `DISABLE`, `SIMPLE`, `MUTUAL`,
//! `ISTIO_MUTUAL`, and Istio's auto mTLS (ISTIO_MUTUAL to endpoints labelled
//! `security.istio.io/tlsMode: istio` when the proxy has an identity and no `tls` is set).

use super::mesh::MeshTls;
use meshproxy_config::compile::cluster::{ClientTls, Cluster};
use meshproxy_config::model::destination_rule::ClientTlsMode;
use rustls::pki_types::ServerName;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The endpoint label Istio's auto mTLS keys on.
const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// Client configs for SIMPLE / MUTUAL, built from their files on first use (index 0:
/// HTTP/1.1 ALPN, 1: h2), kept with the cluster's live state.
#[derive(Default)]
pub struct FileTlsCache {
    configs: [OnceLock<Result<Arc<rustls::ClientConfig>, String>>; 2],
}

/// What a connection to an endpoint must do.
pub enum Plan<'a> {
    /// Plaintext.
    Plain,
    /// ISTIO_MUTUAL with the mesh identity.
    Mesh {
        /// Accepted peer identities (empty: any identity of the mesh CA).
        expected: &'a [String],
        /// SNI sent.
        sni: String,
    },
    /// SIMPLE or MUTUAL with the DestinationRule's files.
    Files {
        /// The settings.
        tls: &'a ClientTls,
        /// SNI sent.
        sni: String,
    },
}

/// Decides the plan for one endpoint of `cluster`.
pub fn plan<'a>(
    cluster: &'a Cluster,
    labels: &BTreeMap<String, String>,
    have_identity: bool,
) -> Plan<'a> {
    match &cluster.tls {
        None => {
            // Istio auto mTLS: only to endpoints that say they run a sidecar.
            if have_identity && labels.get(TLS_MODE_LABEL).is_some_and(|v| v == "istio") {
                Plan::Mesh {
                    expected: &cluster.service_sans,
                    sni: istio_sni(cluster),
                }
            } else {
                Plan::Plain
            }
        }
        Some(t) => match t.mode {
            ClientTlsMode::Disable => Plan::Plain,
            ClientTlsMode::IstioMutual => Plan::Mesh {
                expected: &t.subject_alt_names,
                sni: t.sni.clone().unwrap_or_else(|| istio_sni(cluster)),
            },
            ClientTlsMode::Simple | ClientTlsMode::Mutual => Plan::Files {
                tls: t,
                sni: t
                    .sni
                    .clone()
                    .unwrap_or_else(|| cluster.key.service.to_string()),
            },
        },
    }
}

/// The SNI Istio sends on ISTIO_MUTUAL: `outbound_.<port>_.<subset>_.<host>`.
fn istio_sni(cluster: &Cluster) -> String {
    format!(
        "outbound_.{}_.{}_.{}",
        cluster.key.port,
        cluster.key.subset.as_deref().unwrap_or(""),
        cluster.key.service
    )
}

/// Runs the TLS handshake `plan` asks for on `stream`, offering h2 or HTTP/1.1 by ALPN.
/// The error says why (for the access log's `UF` and the log line).
pub async fn handshake(
    stream: TcpStream,
    plan: Plan<'_>,
    mesh: Option<Arc<MeshTls>>,
    cache: &FileTlsCache,
    h2: bool,
) -> Result<TlsStream<TcpStream>, String> {
    let (config, sni) = match plan {
        Plan::Plain => return Err("no TLS planned".into()),
        Plan::Mesh { expected, sni } => {
            let mesh = mesh.ok_or_else(|| {
                "ISTIO_MUTUAL needs this proxy's identity (spec.identity in the Proxy document)"
                    .to_string()
            })?;
            (mesh.client(expected, h2)?, sni)
        }
        Plan::Files { tls, sni } => {
            let slot = &cache.configs[usize::from(h2)];
            let config = slot
                .get_or_init(|| {
                    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
                    meshproxy_certs::client_config(&meshproxy_certs::ClientTlsOptions {
                        ca: tls.ca_certificates.clone(),
                        client_cert: tls.client_certificate.clone(),
                        client_key: tls.private_key.clone(),
                        subject_alt_names: tls.subject_alt_names.clone(),
                        insecure_skip_verify: tls.insecure_skip_verify,
                        alpn: vec![alpn.to_vec()],
                    })
                    .map_err(|e| e.to_string())
                })
                .clone()?;
            (config, sni)
        }
    };
    let name = ServerName::try_from(sni.clone()).map_err(|_| format!("invalid SNI {sni:?}"))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake with the upstream failed: {e}"))
}
