//! TLS termination on Gateway servers (`tls.mode: SIMPLE` and `MUTUAL`): each server of a
//! port has its own certificate (and, for MUTUAL, its own client CA); the server is chosen
//! by the SNI of the ClientHello before the handshake goes on, as Envoy's filter chain
//! match on `server_names` does.

use meshproxy_certs::ClientAuth;
use meshproxy_config::compile::listener::{GatewayServer, ServerTls};
use meshproxy_config::model::gateway::ServerTlsMode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// The terminating servers of one gateway port.
pub struct GatewayTls {
    servers: Vec<Terminating>,
    /// A digest of the certificate, key and CA files' bytes: a rotation rewrites them.
    pub digest: u64,
}

struct Terminating {
    /// Host patterns (`example.com`, `*.example.com`, `*`), namespace prefixes removed.
    hosts: Vec<String>,
    config: Arc<rustls::ServerConfig>,
    /// MUTUAL: `subjectAltNames` one of which the client certificate must carry (empty:
    /// any certificate the CA signed).
    client_sans: Vec<String>,
}

impl GatewayTls {
    /// The TLS settings of `servers`; `Ok(None)` when none of them terminates TLS. A
    /// certificate that cannot be loaded is an error naming the server and the file.
    pub fn build(servers: &[GatewayServer]) -> Result<Option<GatewayTls>, String> {
        let mut out = Vec::new();
        for s in servers {
            let Some(tls) = &s.tls else { continue };
            if !matches!(tls.mode, ServerTlsMode::Simple | ServerTlsMode::Mutual) {
                continue;
            }
            let config = server_config(tls)
                .map_err(|e| format!("Gateway {} server {}: {e}", s.gateway, s.name))?;
            out.push(Terminating {
                hosts: s
                    .hosts
                    .iter()
                    .map(|h| h.rsplit('/').next().unwrap_or(h).to_ascii_lowercase())
                    .collect(),
                config,
                client_sans: if tls.mode == ServerTlsMode::Mutual {
                    tls.subject_alt_names.clone()
                } else {
                    Vec::new()
                },
            });
        }
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(GatewayTls {
            servers: out,
            digest: digest(servers),
        }))
    }

    /// The files the terminating servers of `servers` read (to watch for rotation).
    pub fn files(servers: &[GatewayServer]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for tls in servers.iter().filter_map(|s| s.tls.as_ref()) {
            if !matches!(tls.mode, ServerTlsMode::Simple | ServerTlsMode::Mutual) {
                continue;
            }
            for (c, k) in &tls.certificates {
                out.push(c.clone());
                out.push(k.clone());
            }
            out.extend(tls.ca_certificates.iter().cloned());
        }
        out
    }

    /// The server for `sni`: an exact host first, then the longest matching wildcard,
    /// then `*`; without SNI (or with no match) the first server, as a default filter
    /// chain would.
    fn pick(&self, sni: Option<&str>) -> &Terminating {
        let sni = sni.map(str::to_ascii_lowercase);
        let mut best: Option<(usize, &Terminating)> = None;
        if let Some(name) = sni.as_deref() {
            for t in &self.servers {
                for h in &t.hosts {
                    let score = if h == name {
                        usize::MAX
                    } else if let Some(suffix) = h.strip_prefix('*') {
                        if suffix.is_empty() {
                            1
                        } else if name.ends_with(suffix) && name.len() > suffix.len() {
                            1 + suffix.len()
                        } else {
                            continue;
                        }
                    } else {
                        continue;
                    };
                    if best.is_none_or(|(b, _)| score > b) {
                        best = Some((score, t));
                    }
                }
            }
        }
        best.map(|(_, t)| t).unwrap_or(&self.servers[0])
    }
}

/// Reads the ClientHello, picks the server by SNI and completes the handshake with its
/// configuration; a MUTUAL server with `subjectAltNames` then refuses a client whose
/// certificate carries none of them (Istio's `ServerTLSSettings.subjectAltNames`).
pub async fn accept(stream: TcpStream, gw: &GatewayTls) -> Result<TlsStream<TcpStream>, String> {
    let acceptor =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let start = tokio::time::timeout(super::inbound::HANDSHAKE_TIMEOUT, acceptor)
        .await
        .map_err(|_| "no ClientHello within the handshake timeout".to_string())?
        .map_err(|e| format!("reading the ClientHello: {e}"))?;
    let server = gw.pick(start.client_hello().server_name());
    let stream = tokio::time::timeout(
        super::inbound::HANDSHAKE_TIMEOUT,
        start.into_stream(server.config.clone()),
    )
    .await
    .map_err(|_| "TLS handshake not finished within the handshake timeout".to_string())?
    .map_err(|e| format!("TLS handshake failed: {e}"))?;
    if !server.client_sans.is_empty() {
        // The CA verified the chain in the handshake; the name is checked here, before
        // any byte of the client's request is read.
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        match leaf {
            Some(leaf) => meshproxy_certs::check_peer_sans(leaf, &server.client_sans)?,
            None => return Err("no client certificate".to_string()),
        }
    }
    Ok(stream)
}

/// A digest of the bytes of every file of `servers` (an unreadable file digests as
/// empty: loading it reports the error).
pub fn digest(servers: &[GatewayServer]) -> u64 {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for f in GatewayTls::files(servers) {
        h.update(&std::fs::read(&f).unwrap_or_default());
        h.update(&[0]);
    }
    h.digest()
}

fn server_config(tls: &ServerTls) -> Result<Arc<rustls::ServerConfig>, String> {
    // Istio allows an RSA and an ECDSA pair; rustls serves one chain per config, so the
    // first pair is used.
    let (cert, key) = tls
        .certificates
        .first()
        .ok_or_else(|| "no serverCertificate/privateKey".to_string())?;
    let chain = load_chain(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{}: no private key ({e})", key.display()))?;
    let (roots, auth) = match tls.mode {
        ServerTlsMode::Mutual => {
            let ca = tls
                .ca_certificates
                .as_ref()
                .ok_or_else(|| "MUTUAL needs caCertificates".to_string())?;
            let mut roots = rustls::RootCertStore::empty();
            for c in load_chain(ca)? {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            (Some(Arc::new(roots)), ClientAuth::Required)
        }
        _ => (None, ClientAuth::None),
    };
    let alpn: Vec<&[u8]> = if tls.alpn.is_empty() {
        super::mesh::ALPN.to_vec()
    } else {
        tls.alpn.iter().map(|a| a.as_bytes()).collect()
    };
    meshproxy_certs::server_config(chain, key, roots, auth, &alpn).map_err(|e| e.to_string())
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(chain)
}
