//! This workload's mesh identity in force: its certificate, key and mesh CA, and the
//! rustls configurations built from them. Swapped whole when the files change (rotation)
//! so new handshakes use the new identity at once while open connections keep theirs.

use meshproxy_certs::{ClientAuth, Identity};
use meshproxy_config::compile::proxy_settings::IdentityFiles;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// ALPN offered and accepted on mesh connections: HTTP/2 first, as Envoy does.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// ISTIO_MUTUAL client configs by (expected SANs, h2).
type ClientCache = HashMap<(Vec<String>, bool), Arc<rustls::ClientConfig>>;

/// A loaded identity and its configurations.
pub struct MeshTls {
    /// The files it was loaded from.
    pub files: IdentityFiles,
    /// This workload's SPIFFE ID (from its certificate).
    pub spiffe: Option<Arc<str>>,
    /// When the certificate expires.
    pub not_after: SystemTime,
    /// A digest of the files' contents: a rotation that rewrites identical bytes is no
    /// rotation.
    pub digest: u64,
    identity: Identity,
    /// Inbound: client certificate required (STRICT, and TLS under PERMISSIVE: Istio's
    /// sidecar requires the peer's certificate on every mTLS connection).
    pub server: Arc<rustls::ServerConfig>,
    /// Outbound ISTIO_MUTUAL configs by (expected SANs, ALPN): built once per identity.
    clients: Mutex<ClientCache>,
}

impl MeshTls {
    /// Loads the identity files and builds the server configuration; any problem (a
    /// missing file, a key that does not match, a chain not from the CA, an expired
    /// certificate) is an error naming the file.
    pub fn load(files: &IdentityFiles) -> Result<MeshTls, String> {
        let digest = digest(files)?;
        let identity = Identity::load(
            &files.certificate,
            &files.private_key,
            &files.ca_certificates,
        )
        .map_err(|e| e.to_string())?;
        let server = meshproxy_certs::mesh_server_config(&identity, ClientAuth::Required)
            .map_err(|e| e.to_string())?;
        Ok(MeshTls {
            files: files.clone(),
            spiffe: identity.spiffe.as_deref().map(Arc::from),
            not_after: identity.not_after,
            digest,
            identity,
            server,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// The ISTIO_MUTUAL client configuration verifying the peer against `expected`
    /// SPIFFE IDs (any mesh identity when empty), offering h2 when `h2`.
    pub fn client(
        &self,
        expected: &[String],
        h2: bool,
    ) -> Result<Arc<rustls::ClientConfig>, String> {
        let key = (expected.to_vec(), h2);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let alpn: &[&[u8]] = if h2 { &ALPN[..1] } else { &ALPN[1..] };
        let c = meshproxy_certs::mesh_client_config(&self.identity, expected.to_vec(), alpn)
            .map_err(|e| e.to_string())?;
        clients.insert(key, c.clone());
        Ok(c)
    }

    /// Seconds until the certificate expires (negative once expired).
    pub fn seconds_to_expiry(&self) -> f64 {
        match self.not_after.duration_since(SystemTime::now()) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        }
    }
}

/// A digest of the three files' bytes.
pub fn digest(files: &IdentityFiles) -> Result<u64, String> {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for p in [
        &files.certificate,
        &files.private_key,
        &files.ca_certificates,
    ] {
        let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        h.update(&bytes);
        h.update(&[0]);
    }
    Ok(h.digest())
}
