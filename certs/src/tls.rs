//! Workload identities and the rustls configurations built from them: the mesh server
//! (inbound mTLS), the mesh client (`ISTIO_MUTUAL`) and the DestinationRule client
//! (`SIMPLE`/`MUTUAL`).
//!
//! Every configuration uses the `ring` provider explicitly, so nothing depends on a
//! process-wide default provider being installed, and offers TLS 1.2 and 1.3 only.

use crate::{ca, files, x509, CertError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, ServerConfig,
    SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// The protocol versions every configuration allows: TLS 1.3 first, then 1.2. Anything
/// older is refused at the handshake (rustls has no TLS 1.1 or older at all).
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The crypto provider of every configuration built here: `ring`, shared.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A loaded workload identity: the certificate chain and key this proxy presents, and the
/// mesh roots it verifies peers against.
#[derive(Clone)]
pub struct Identity {
    /// The leaf certificate first, then any chain certificates from the certificate file.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (shared: configurations copy it when they are built).
    pub key: Arc<PrivateKeyDer<'static>>,
    /// The mesh trust roots (every certificate of the CA file).
    pub roots: Arc<RootCertStore>,
    /// The leaf's `spiffe://` URI SAN, if any.
    pub spiffe: Option<String>,
    /// When the leaf certificate expires.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Identity")
            .field("spiffe", &self.spiffe)
            .field(
                "not_after",
                &x509::fmt_time(x509::unix_secs(self.not_after)),
            )
            .field("chain_len", &self.chain.len())
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads and validates an identity: the certificate file (leaf then chain), the key
    /// file and the CA file must parse; the key must be the leaf's; the leaf must be
    /// currently valid and chain to one of the CA certificates, for use both as a server
    /// and as a client certificate. Each failure names the file and what is wrong.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<Identity, CertError> {
        let (chain, key_der, not_after) = load_cert_and_key(cert, key)?;
        let roots = Arc::new(roots_from_file(ca)?);
        let not_trusted = |e: rustls::Error| CertError::NotTrusted {
            cert: cert.to_path_buf(),
            ca: ca.to_path_buf(),
            reason: verify_reason(&e),
        };
        let now = UnixTime::now();
        let provider = provider();
        // As a server certificate (what mesh clients check)...
        let parsed = rustls::server::ParsedCertificate::try_from(&chain[0])
            .map_err(|e| CertError::invalid(cert, verify_reason(&e)))?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            &chain[1..],
            now,
            provider.signature_verification_algorithms.all,
        )
        .map_err(not_trusted)?;
        // ...and as a client certificate (what mesh servers check).
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| CertError::invalid(ca, format!("unusable CA certificates: {e}")))?;
        client_verifier
            .verify_client_cert(&chain[0], &chain[1..], now)
            .map_err(not_trusted)?;
        Ok(Identity {
            spiffe: crate::peer_spiffe(&chain[0]),
            chain,
            key: Arc::new(key_der),
            roots,
            not_after,
        })
    }
}

/// Loads a certificate chain and its key, checking that the leaf parses, is currently
/// valid and that the key is its key (and usable by the crypto provider).
fn load_cert_and_key(
    cert: &Path,
    key: &Path,
) -> Result<
    (
        Vec<CertificateDer<'static>>,
        PrivateKeyDer<'static>,
        SystemTime,
    ),
    CertError,
> {
    let chain = files::certs(cert)?;
    let key_der = files::key(key)?;
    let leaf = x509::parse(chain[0].as_ref()).map_err(|e| CertError::invalid(cert, e))?;
    ca::check_validity(cert, &leaf)?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der.clone_key())
        .map_err(|e| CertError::invalid(key, format!("unusable private key: {e}")))?;
    // A provider that cannot derive the public key gives None; rustls then checks the pair
    // itself when the configuration is built.
    if let Some(spki) = signing_key.public_key() {
        if spki.as_ref() != leaf.public_key().raw {
            return Err(CertError::KeyMismatch {
                key: key.to_path_buf(),
                cert: cert.to_path_buf(),
            });
        }
    }
    let not_after = x509::system_time(x509::validity(&leaf).1);
    Ok((chain, key_der, not_after))
}

/// A root store holding every certificate of a PEM file.
fn roots_from_file(ca: &Path) -> Result<RootCertStore, CertError> {
    let mut roots = RootCertStore::empty();
    for (i, der) in files::certs(ca)?.into_iter().enumerate() {
        roots.add(der).map_err(|e| {
            CertError::invalid(
                ca,
                format!("certificate #{} is not a usable trust root: {e}", i + 1),
            )
        })?;
    }
    Ok(roots)
}

/// The OS trust store (as `caCertificates` omitted means in Istio), falling back to the
/// Mozilla roots compiled into webpki-roots when the OS store is missing or empty (minimal
/// containers), loaded once.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            // Unreadable or unparsable OS certificates are skipped, as every TLS client does.
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if roots.is_empty() {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            Arc::new(roots)
        })
        .clone()
}

/// Whether and how a server asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client certificate chaining to the roots is required (mTLS: `STRICT`, and Istio's
    /// sidecar on every mTLS connection).
    Required,
    /// Asked for and verified when sent, but a client without one is accepted.
    Optional,
    /// Not asked for (a `SIMPLE` gateway).
    None,
}

/// A server configuration (inbound sidecar mTLS or a gateway): TLS 1.2 and 1.3 only, ALPN
/// `alpn` in preference order, and no session resumption at all — no TLS 1.3 tickets, no
/// TLS 1.2 session IDs — so no resumed session outlives a key or trust rotation and every
/// connection's client certificate is verified afresh. Client certificates are verified
/// against `client_roots` when `auth` is `Required` or `Optional`.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<Arc<RootCertStore>>,
    auth: ClientAuth,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, CertError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(config_err)?;
    let builder = match (auth, client_roots) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (ClientAuth::Required | ClientAuth::Optional, None) => return Err(CertError::Config(
            "client certificates are requested but no CA certificates were given to verify them"
                .into(),
        )),
        (auth, Some(roots)) => {
            let v = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let v = if auth == ClientAuth::Optional {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(v.build().map_err(config_err)?)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(config_err)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    // `ticketer` stays rustls' default, which never produces tickets.
    Ok(Arc::new(config))
}

/// The inbound mesh server configuration for an identity: its chain and key, client
/// certificates verified against its mesh roots per `auth`, ALPN `h2`, `http/1.1`.
pub fn mesh_server_config(id: &Identity, auth: ClientAuth) -> Result<Arc<ServerConfig>, CertError> {
    server_config(
        id.chain.clone(),
        id.key.clone_key(),
        Some(id.roots.clone()),
        auth,
        &[b"h2", b"http/1.1"],
    )
}

/// The client side of `ISTIO_MUTUAL`: presents `id`'s certificate, verifies the server's
/// chain against the mesh roots, does not check the server's DNS name (mesh peers are
/// identified by their SPIFFE URI and the SNI is a cluster name, as with Envoy under
/// Istio), and, when `expected` is not empty, requires the server's SPIFFE ID to be one of
/// `expected`. ALPN `alpn` in preference order.
pub fn mesh_client_config(
    id: &Identity,
    expected: Vec<String>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, CertError> {
    let verifier = PeerVerifier::new(id.roots.clone(), NameCheck::Spiffe(expected))?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(config_err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
        .map_err(config_err)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Options of a DestinationRule `SIMPLE`/`MUTUAL` client (Istio `ClientTLSSettings`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsOptions {
    /// `caCertificates`: PEM file of the roots to verify the server with; `None` means the
    /// OS trust store (Mozilla's roots when the OS has none).
    pub ca: Option<PathBuf>,
    /// `clientCertificate` (`MUTUAL`): PEM chain to present.
    pub client_cert: Option<PathBuf>,
    /// `privateKey` (`MUTUAL`): the client certificate's key.
    pub client_key: Option<PathBuf>,
    /// `subjectAltNames`: when not empty, the server certificate must carry one of them
    /// as a DNS, URI or IP SAN, and this replaces the check against the SNI host name.
    pub subject_alt_names: Vec<String>,
    /// `insecureSkipVerify`: accept any server certificate (the handshake signature is
    /// still checked, so the server must hold the certificate's key).
    pub insecure_skip_verify: bool,
    /// ALPN protocols to offer, in preference order.
    pub alpn: Vec<Vec<u8>>,
}

/// The client configuration for a DestinationRule `SIMPLE` or `MUTUAL` origination: roots
/// from `o.ca` (or the OS), the client certificate when both `client_cert` and
/// `client_key` are given (one without the other is an error), server name checked
/// against the SNI unless `subject_alt_names` or `insecure_skip_verify` say otherwise.
pub fn client_config(o: &ClientTlsOptions) -> Result<Arc<ClientConfig>, CertError> {
    let verifier: Arc<dyn ServerCertVerifier> = if o.insecure_skip_verify {
        accept_any_server()
    } else {
        let roots = match &o.ca {
            Some(ca) => Arc::new(roots_from_file(ca)?),
            None => system_roots(),
        };
        if o.subject_alt_names.is_empty() {
            WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(config_err)?
        } else {
            Arc::new(PeerVerifier::new(
                roots,
                NameCheck::Sans(o.subject_alt_names.clone()),
            )?)
        }
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(config_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&o.client_cert, &o.client_key) {
        (Some(cert), Some(key)) => {
            let (chain, key, _) = load_cert_and_key(cert, key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(config_err)?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(CertError::Config(
                "a client certificate needs its private key (privateKey)".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(CertError::Config(
                "a private key needs its client certificate (clientCertificate)".into(),
            ))
        }
    };
    config.alpn_protocols = o.alpn.clone();
    Ok(Arc::new(config))
}

fn config_err(e: impl std::fmt::Display) -> CertError {
    CertError::Config(e.to_string())
}

/// A verification error as a reason for a message ("invalid peer certificate: UnknownIssuer"
/// says less than "issued by an unknown CA").
fn verify_reason(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "issued by an unknown CA".into(),
            CertificateError::BadSignature => {
                "bad signature: not signed by these CA certificates (another CA with the same name?)"
                    .into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "a certificate of the chain has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "a certificate of the chain is not yet valid".into()
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                format!("certificate not usable for this purpose (extended key usage): {c}")
            }
            c => c.to_string(),
        },
        e => e.to_string(),
    }
}

/// What a [`PeerVerifier`] checks instead of the SNI host name, once the chain verified.
#[derive(Debug)]
pub(crate) enum NameCheck {
    /// Mesh: the server's SPIFFE ID must be one of these (any when empty).
    Spiffe(Vec<String>),
    /// DestinationRule `subjectAltNames`: one of these must be a DNS, URI or IP SAN.
    Sans(Vec<String>),
}

/// A server verifier that verifies the chain with rustls' webpki verifier but replaces its
/// host-name check with a [`NameCheck`].
#[derive(Debug)]
pub(crate) struct PeerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    check: NameCheck,
}

impl PeerVerifier {
    pub(crate) fn new(
        roots: Arc<RootCertStore>,
        check: NameCheck,
    ) -> Result<PeerVerifier, CertError> {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(config_err)?;
        Ok(PeerVerifier { inner, check })
    }
}

/// A certificate error raised by our own checks, with a readable reason.
fn refuse(reason: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refused(
        reason,
    )))))
}

#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(_) => {}
            // rustls' webpki verifier verifies the chain (trust anchor, validity, signatures,
            // key usage) before the name and only reports a name mismatch for a chain that
            // verified, so a name error means "trusted, other name": acceptable here, where
            // the identity is checked below instead (a test pins this ordering).
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {}
            Err(e) => return Err(e),
        }
        let cert = x509::parse(end_entity.as_ref()).map_err(refuse)?;
        let sans = x509::sans(&cert);
        match &self.check {
            NameCheck::Spiffe(expected) => {
                let Some(id) = sans.uri.iter().find(|u| x509::is_spiffe(u)) else {
                    return Err(refuse("peer certificate has no spiffe:// URI SAN".into()));
                };
                if !expected.is_empty() && !expected.iter().any(|e| e == id) {
                    return Err(refuse(format!(
                        "peer identity {id} not in [{}]",
                        expected.join(", ")
                    )));
                }
            }
            NameCheck::Sans(wanted) => {
                sans_match(&sans, wanted)
                    .map_err(|presented| refuse(format!("server certificate {presented}")))?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether a certificate DNS SAN (possibly `*.suffix`, one label) covers a wanted name,
/// case-insensitively, as Envoy's DNS SAN matcher does.
/// Whether `sans` hold one of `wanted`: a URI SAN equal to it, a DNS SAN matching it
/// ([`dns_matches`]) or an IP SAN equal to it. The error says what was presented.
fn sans_match(sans: &x509::Sans, wanted: &[String]) -> Result<(), String> {
    let found = wanted.iter().any(|w| {
        sans.uri.iter().any(|u| u == w)
            || sans.dns.iter().any(|d| dns_matches(d, w))
            || w.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| sans.ip.contains(&ip))
    });
    if found {
        return Ok(());
    }
    let mut presented: Vec<String> = sans.dns.clone();
    presented.extend(sans.uri.iter().cloned());
    presented.extend(sans.ip.iter().map(|ip| ip.to_string()));
    Err(format!(
        "SANs [{}] match none of subjectAltNames [{}]",
        presented.join(", "),
        wanted.join(", ")
    ))
}

/// Checks that a peer's leaf certificate carries one of `wanted` as a SAN (URI exactly,
/// DNS with wildcards, IP): what Istio's `subjectAltNames` ask of a Gateway's MUTUAL
/// clients. The error names the SANs presented.
pub fn check_peer_sans(leaf: &CertificateDer<'_>, wanted: &[String]) -> Result<(), String> {
    let cert = x509::parse(leaf.as_ref())?;
    sans_match(&x509::sans(&cert), wanted).map_err(|e| format!("client certificate {e}"))
}

pub(crate) fn dns_matches(presented: &str, wanted: &str) -> bool {
    if presented.eq_ignore_ascii_case(wanted) {
        return true;
    }
    match (presented.strip_prefix("*."), wanted.split_once('.')) {
        (Some(suffix), Some((first, rest))) => {
            !first.is_empty() && first != "*" && rest.eq_ignore_ascii_case(suffix)
        }
        _ => false,
    }
}

/// A server verifier that accepts any certificate but still checks the handshake
/// signature against it (`insecureSkipVerify`; also for test clients whose point is what
/// the server does with them).
pub fn accept_any_server() -> Arc<dyn ServerCertVerifier> {
    Arc::new(InsecureVerifier {
        provider: provider(),
    })
}

/// `insecureSkipVerify`: any server certificate is accepted, but the handshake signature
/// is still verified against it.
#[derive(Debug)]
struct InsecureVerifier {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for InsecureVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
