//! Inbound mesh TLS: what a connection to an INBOUND listener must be under the
//! PeerAuthentication mode for its port, and the handshake that proves the peer.

use super::mesh::MeshTls;
pub use meshproxy_config::compile::peer_auth::MtlsMode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// How long a client may take to send its first bytes and finish the TLS handshake: a
/// slow or silent client must not hold a connection slot forever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of a TLS record carrying a handshake (`ClientHello`).
const TLS_HANDSHAKE: u8 = 0x16;

/// What was proven about the peer.
#[derive(Clone, Debug, Default)]
pub struct PeerTls {
    /// The peer's SPIFFE ID (`spiffe://...`), from its certificate.
    pub spiffe: Option<Arc<str>>,
    /// `x-forwarded-client-cert` for the app (Envoy's format).
    pub xfcc: Option<Arc<str>>,
}

/// An accepted inbound connection, ready for HTTP.
pub enum Inbound {
    /// Plaintext (PERMISSIVE without TLS, or DISABLE).
    Plain(TcpStream),
    /// Mutual TLS, with the peer it proved.
    Mtls(Box<TlsStream<TcpStream>>, PeerTls),
}

/// Why an inbound connection was refused.
#[derive(Debug)]
pub enum Refused {
    /// STRICT, and the client spoke plaintext.
    PlaintextUnderStrict,
    /// STRICT or TLS, and this proxy has no identity to answer with.
    NoIdentity,
    /// The TLS handshake failed (no client certificate, another CA, expired...).
    Handshake(String),
    /// The client sent nothing (or did not finish the handshake) in time.
    Timeout,
    /// The connection failed before anything was decided.
    Io(std::io::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::PlaintextUnderStrict => {
                f.write_str("plaintext connection refused: PeerAuthentication STRICT requires mTLS")
            }
            Refused::NoIdentity => f.write_str(
                "mTLS connection refused: this proxy has no identity (spec.identity) to answer with",
            ),
            Refused::Handshake(e) => write!(f, "mTLS handshake failed: {e}"),
            Refused::Timeout => f.write_str("no TLS handshake or request within the handshake timeout"),
            Refused::Io(e) => write!(f, "connection failed: {e}"),
        }
    }
}

/// Applies `mode` to a new connection: STRICT requires mTLS, PERMISSIVE takes mTLS or
/// plaintext (told apart by the first byte, as Envoy's TLS inspector does), DISABLE
/// takes it as it comes (plaintext HTTP).
pub async fn accept(
    stream: TcpStream,
    mode: MtlsMode,
    mesh: Option<Arc<MeshTls>>,
) -> Result<Inbound, Refused> {
    let tls = match mode {
        MtlsMode::Disable => false,
        MtlsMode::Strict => {
            if !looks_like_tls(&stream).await? {
                return Err(Refused::PlaintextUnderStrict);
            }
            true
        }
        MtlsMode::Permissive => looks_like_tls(&stream).await?,
    };
    if !tls {
        return Ok(Inbound::Plain(stream));
    }
    let Some(mesh) = mesh else {
        return Err(Refused::NoIdentity);
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(mesh.server.clone());
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Err(_) => return Err(Refused::Timeout),
        Ok(Err(e)) => return Err(Refused::Handshake(e.to_string())),
        Ok(Ok(s)) => s,
    };
    let peer = {
        let (_, conn) = tls.get_ref();
        match conn.peer_certificates().and_then(|c| c.first()) {
            Some(leaf) => PeerTls {
                spiffe: meshproxy_certs::peer_spiffe(leaf).map(Arc::from),
                xfcc: Some(meshproxy_certs::xfcc(mesh.spiffe.as_deref(), leaf).into()),
            },
            // The server config requires a client certificate: rustls refuses the
            // handshake without one, so this is only reached by a config change.
            None => return Err(Refused::Handshake("no client certificate".into())),
        }
    };
    Ok(Inbound::Mtls(Box::new(tls), peer))
}

/// Peeks at the first byte the client sends: a TLS handshake record or not.
async fn looks_like_tls(stream: &TcpStream) -> Result<bool, Refused> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Err(_) => Err(Refused::Timeout),
        Ok(Err(e)) => Err(Refused::Io(e)),
        Ok(Ok(0)) => Err(Refused::Io(std::io::ErrorKind::UnexpectedEof.into())),
        Ok(Ok(_)) => Ok(first[0] == TLS_HANDSHAKE),
    }
}
