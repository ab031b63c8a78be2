//! Tests: certificate issuance and loading, and real TLS handshakes between the
//! configurations this crate builds.

use super::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DAY: Duration = Duration::from_secs(86_400);
const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const PRODUCTPAGE: &str = "spiffe://cluster.local/ns/default/sa/productpage";
/// The SNI Istio uses for ISTIO_MUTUAL: a cluster name, never in the certificate.
const MESH_SNI: &str = "outbound_.9080_._.reviews.default.svc.cluster.local";

/// A fresh, empty directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "meshproxy-certs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ca() -> Ca {
    Ca::generate("test mesh root", 30).unwrap()
}

/// Another CA, with another name (same-named CAs are tested on their own).
fn other_ca() -> Ca {
    Ca::generate("other mesh root", 30).unwrap()
}

/// Writes an issued certificate and loads it as an identity (validated).
fn load(issued: &Issued) -> Result<Identity, CertError> {
    let dir = TempDir::new();
    issued.write(dir.path()).unwrap();
    Identity::load(
        &dir.path().join("cert.pem"),
        &dir.path().join("key.pem"),
        &dir.path().join("ca.pem"),
    )
}

/// An identity built without any validation (to present bad certificates), verifying peers
/// against `roots_pem`.
fn unchecked(issued: &Issued, roots_pem: &str) -> Identity {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    Identity {
        spiffe: peer_spiffe(&chain[0]),
        chain,
        key: Arc::new(key),
        roots: Arc::new(roots),
        not_after: SystemTime::now(),
    }
}

fn leaf(issued: &Issued) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
}

// ---------------------------------------------------------------- issuance and loading

#[test]
fn ca_round_trip_and_issue() {
    let dir = TempDir::new();
    let ca = ca();
    ca.write(dir.path()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |n: &str| {
            std::fs::metadata(dir.path().join(n))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("ca.key"), 0o600);
        assert_eq!(mode("ca.pem"), 0o644);
    }
    let loaded = Ca::load(dir.path()).unwrap();
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    // A certificate from the reloaded CA chains to the CA file written before.
    let issued = loaded
        .issue(REVIEWS, &["reviews.default.svc".into()], 90)
        .unwrap();
    assert_eq!(issued.ca_pem, ca.cert_pem());
    assert!(issued.cert_pem.ends_with(&ca.cert_pem()), "leaf then CA");
    let id = load(&issued).unwrap();
    assert_eq!(id.spiffe.as_deref(), Some(REVIEWS));
    assert_eq!(id.chain.len(), 2);
    // 30-day CA: the 90-day leaf is capped to the CA's expiry.
    assert_eq!(id.not_after, ca.not_after());

    let out = TempDir::new();
    issued.write(out.path()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(out.path().join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o600);
    }
}

#[test]
fn leaf_validity_is_days() {
    let ca = Ca::generate("root", 3650).unwrap();
    let id = load(&ca.issue(REVIEWS, &[], 90).unwrap()).unwrap();
    let left = id.not_after.duration_since(SystemTime::now()).unwrap();
    assert!(left > 89 * DAY && left <= 90 * DAY, "{left:?}");
}

#[test]
fn issued_certificate_shape() {
    let ca = ca();
    let issued = ca
        .issue(REVIEWS, &["reviews".into(), "10.0.0.7".into()], 1)
        .unwrap();
    let der = leaf(&issued);
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    assert!(cert.subject().as_raw().len() <= 2, "empty subject");
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical, "SAN critical with an empty subject");
    let s = x509::sans(&cert);
    assert_eq!(s.uri, vec![REVIEWS.to_string()]);
    assert_eq!(s.dns, vec!["reviews".to_string()]);
    assert_eq!(s.ip, vec!["10.0.0.7".parse::<std::net::IpAddr>().unwrap()]);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
}

#[test]
fn invalid_names_refused() {
    let ca = ca();
    let e = ca.issue("cluster.local/ns/a/sa/b", &[], 1).unwrap_err();
    assert!(e.to_string().contains("must start with spiffe://"), "{e}");
    let e = ca.issue(REVIEWS, &["bad name".into()], 1).unwrap_err();
    assert!(e.to_string().contains("invalid DNS name"), "{e}");
    let e = ca.issue(REVIEWS, &[], 0).unwrap_err();
    assert!(e.to_string().contains("at least 1 day"), "{e}");
    let now = SystemTime::now();
    let e = ca.issue_with(None, &[], now, now + DAY).unwrap_err();
    assert!(
        e.to_string().contains("needs a SPIFFE ID or a DNS name"),
        "{e}"
    );
}

#[test]
fn mismatched_key_refused() {
    let ca = ca();
    let a = ca.issue(REVIEWS, &[], 1).unwrap();
    let b = ca.issue(PRODUCTPAGE, &[], 1).unwrap();
    let mixed = Issued {
        key_pem: b.key_pem.clone(),
        ..a
    };
    let e = load(&mixed).unwrap_err();
    assert!(matches!(e, CertError::KeyMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("key.pem: key does not match certificate") && msg.contains("cert.pem"),
        "{msg}"
    );
}

#[test]
fn certificate_from_another_ca_refused() {
    let ours = ca();
    let theirs = other_ca();
    let issued = theirs.issue(REVIEWS, &[], 1).unwrap();
    let foreign = Issued {
        ca_pem: ours.cert_pem(),
        ..issued
    };
    let e = load(&foreign).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, CertError::NotTrusted { .. }), "{e:?}");
    assert!(
        msg.contains("cert.pem: certificate does not verify against the CA certificates in")
            && msg.contains("ca.pem")
            && msg.contains("unknown CA"),
        "{msg}"
    );
}

#[test]
fn certificate_from_a_same_named_ca_refused() {
    // Two meshes whose roots carry the same name (both "test mesh root"): the chain finds
    // the anchor by name, then the signature fails.
    let ours = ca();
    let issued = ca().issue(REVIEWS, &[], 1).unwrap();
    let e = load(&Issued {
        ca_pem: ours.cert_pem(),
        ..issued
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("not signed by these CA certificates (another CA with the same name?)"),
        "{e}"
    );
}

#[test]
fn expired_and_not_yet_valid_refused() {
    let ca = ca();
    let now = SystemTime::now();
    let expired = ca
        .issue_with(Some(REVIEWS), &[], now - 2 * DAY, now - DAY)
        .unwrap();
    let e = load(&expired).unwrap_err().to_string();
    assert!(e.contains("cert.pem: certificate expired on 20"), "{e}");
    assert!(e.ends_with(" UTC"), "{e}");

    let future = ca
        .issue_with(Some(REVIEWS), &[], now + DAY, now + 2 * DAY)
        .unwrap();
    let e = load(&future).unwrap_err().to_string();
    assert!(
        e.contains("cert.pem: certificate not yet valid (valid from 20"),
        "{e}"
    );
}

#[test]
fn missing_and_empty_files_named() {
    let dir = TempDir::new();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("empty.pem"), "").unwrap();
    let issued = ca().issue(REVIEWS, &[], 1).unwrap();
    issued.write(dir.path()).unwrap();

    let e = Identity::load(&p("empty.pem"), &p("key.pem"), &p("ca.pem"))
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("empty.pem: no certificate found"), "{e}");
    // A certificate file given as the key.
    let e = Identity::load(&p("cert.pem"), &p("cert.pem"), &p("ca.pem"))
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("cert.pem: no private key found"), "{e}");
    let e = Identity::load(&p("cert.pem"), &p("key.pem"), &p("nope.pem"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.pem: cannot read"), "{e}");
    std::fs::write(p("garbage.pem"), "-----BEGIN CERTIFICATE-----\n!!!\n").unwrap();
    let e = Identity::load(&p("garbage.pem"), &p("key.pem"), &p("ca.pem"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("garbage.pem: invalid PEM"), "{e}");
}

#[test]
fn ca_load_checks() {
    let dir = TempDir::new();
    let ca = ca();
    // A workload certificate is no CA.
    let issued = ca.issue(REVIEWS, &[], 1).unwrap();
    std::fs::write(dir.path().join("ca.pem"), &issued.cert_pem).unwrap();
    std::fs::write(dir.path().join("ca.key"), &issued.key_pem).unwrap();
    let e = Ca::load(dir.path()).unwrap_err().to_string();
    assert!(
        e.ends_with("ca.pem: not a CA certificate (basicConstraints CA:TRUE missing)"),
        "{e}"
    );
    // The key of another CA.
    ca.write(dir.path()).unwrap();
    let other = TempDir::new();
    Ca::generate("other", 1)
        .unwrap()
        .write(other.path())
        .unwrap();
    std::fs::copy(other.path().join("ca.key"), dir.path().join("ca.key")).unwrap();
    let e = Ca::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("ca.key: key does not match certificate"), "{e}");
}

#[test]
fn spiffe_and_xfcc() {
    let ca = ca();
    let issued = ca
        .issue(PRODUCTPAGE, &["productpage.default.svc".into()], 1)
        .unwrap();
    let der = leaf(&issued);
    assert_eq!(peer_spiffe(&der).as_deref(), Some(PRODUCTPAGE));
    let hash: String = {
        use sha2::Digest;
        sha2::Sha256::digest(der.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(
        xfcc(Some(REVIEWS), &der),
        format!(
            "By={REVIEWS};Hash={hash};Subject=\"\";URI={PRODUCTPAGE};DNS=productpage.default.svc"
        )
    );
    // No URI SAN: the URI key is still there, as in Envoy; no By without our identity.
    let now = SystemTime::now();
    let dns_only = ca
        .issue_with(None, &["a.example".into()], now, now + DAY)
        .unwrap();
    let der = leaf(&dns_only);
    assert_eq!(peer_spiffe(&der), None);
    let v = xfcc(None, &der);
    assert!(v.starts_with("Hash="), "{v}");
    assert!(v.ends_with(";Subject=\"\";URI=;DNS=a.example"), "{v}");
    // The CA has a subject: RFC 2253 order, last RDN first.
    let v = xfcc(None, ca.cert_der());
    assert!(
        v.contains("Subject=\"CN=test mesh root,O=meshproxy\""),
        "{v}"
    );
}

// ---------------------------------------------------------------- handshakes

/// What each side of a handshake saw: the server the client's SPIFFE ID and the ALPN.
#[derive(Debug)]
struct ServerSaw {
    peer: Option<String>,
    alpn: Option<Vec<u8>>,
    version: Option<rustls::ProtocolVersion>,
    kind: Option<rustls::HandshakeKind>,
}

/// Runs a TLS handshake over an in-memory duplex, then a ping/pong so that a refusal by
/// either side is seen by both (with TLS 1.3 the client finishes before the server has
/// checked its certificate).
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    sni: &str,
) -> (Result<ServerSaw, String>, Result<(), String>) {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let server_side = async move {
        let mut tls = acceptor.accept(s).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        Ok(ServerSaw {
            peer: conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(peer_spiffe),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            version: conn.protocol_version(),
            kind: conn.handshake_kind(),
        })
    };
    let client_side = async move {
        let mut tls = connector
            .connect(name, c)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok(())
    };
    tokio::join!(server_side, client_side)
}

struct Mesh {
    ca: Ca,
    server: Identity,
    client: Identity,
}

fn mesh() -> Mesh {
    let ca = ca();
    let server = load(&ca.issue(REVIEWS, &[], 1).unwrap()).unwrap();
    let client = load(&ca.issue(PRODUCTPAGE, &[], 1).unwrap()).unwrap();
    Mesh { ca, server, client }
}

#[tokio::test]
async fn mesh_mtls_handshake() {
    let m = mesh();
    let server = mesh_server_config(&m.server, ClientAuth::Required).unwrap();
    let client = mesh_client_config(&m.client, vec![REVIEWS.into()], &[b"h2"]).unwrap();
    let (s, c) = handshake(server, client, MESH_SNI).await;
    c.unwrap();
    let saw = s.unwrap();
    assert_eq!(saw.peer.as_deref(), Some(PRODUCTPAGE));
    assert_eq!(saw.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(saw.version, Some(rustls::ProtocolVersion::TLSv1_3));
}

#[tokio::test]
async fn mesh_client_accepts_any_identity_when_none_expected() {
    let m = mesh();
    let server = mesh_server_config(&m.server, ClientAuth::Required).unwrap();
    let client = mesh_client_config(&m.client, vec![], &[b"http/1.1"]).unwrap();
    let (s, c) = handshake(server, client, MESH_SNI).await;
    c.unwrap();
    assert_eq!(s.unwrap().alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn refused_without_client_certificate() {
    let m = mesh();
    let dir = TempDir::new();
    std::fs::write(dir.path().join("ca.pem"), m.ca.cert_pem()).unwrap();
    // A client that verifies the server properly but has no certificate to present.
    let client = client_config(&ClientTlsOptions {
        ca: Some(dir.path().join("ca.pem")),
        subject_alt_names: vec![REVIEWS.into()],
        ..Default::default()
    })
    .unwrap();
    let server = mesh_server_config(&m.server, ClientAuth::Required).unwrap();
    let (s, c) = handshake(server, client, MESH_SNI).await;
    let e = s.unwrap_err();
    assert!(e.contains("peer sent no certificates"), "{e}");
    assert!(c.is_err());
}

#[tokio::test]
async fn optional_client_auth_accepts_anonymous_clients() {
    let m = mesh();
    let dir = TempDir::new();
    std::fs::write(dir.path().join("ca.pem"), m.ca.cert_pem()).unwrap();
    let anonymous = client_config(&ClientTlsOptions {
        ca: Some(dir.path().join("ca.pem")),
        subject_alt_names: vec![REVIEWS.into()],
        ..Default::default()
    })
    .unwrap();
    let server = mesh_server_config(&m.server, ClientAuth::Optional).unwrap();
    let (s, c) = handshake(server.clone(), anonymous, MESH_SNI).await;
    c.unwrap();
    assert_eq!(s.unwrap().peer, None);
    // A certificate that is sent is still verified.
    let foreign = unchecked(
        &other_ca().issue(PRODUCTPAGE, &[], 1).unwrap(),
        &m.ca.cert_pem(),
    );
    let client = mesh_client_config(&foreign, vec![], &[b"h2"]).unwrap();
    let (s, _) = handshake(server, client, MESH_SNI).await;
    assert!(s.unwrap_err().contains("UnknownIssuer"));
}

#[tokio::test]
async fn refused_client_certificate_from_another_ca() {
    let m = mesh();
    // Signed by another CA, but trusting ours so that the server side verifies.
    let foreign = unchecked(
        &other_ca().issue(PRODUCTPAGE, &[], 1).unwrap(),
        &m.ca.cert_pem(),
    );
    let server = mesh_server_config(&m.server, ClientAuth::Required).unwrap();
    let client = mesh_client_config(&foreign, vec![REVIEWS.into()], &[b"h2"]).unwrap();
    let (s, c) = handshake(server, client, MESH_SNI).await;
    let e = s.unwrap_err();
    assert!(e.contains("invalid peer certificate: UnknownIssuer"), "{e}");
    assert!(c.is_err());
}

#[tokio::test]
async fn refused_expired_client_certificate() {
    let m = mesh();
    let now = SystemTime::now();
    let expired =
        m.ca.issue_with(Some(PRODUCTPAGE), &[], now - 2 * DAY, now - DAY)
            .unwrap();
    let client = mesh_client_config(
        &unchecked(&expired, &m.ca.cert_pem()),
        vec![REVIEWS.into()],
        &[b"h2"],
    )
    .unwrap();
    let server = mesh_server_config(&m.server, ClientAuth::Required).unwrap();
    let (s, c) = handshake(server, client, MESH_SNI).await;
    let e = s.unwrap_err();
    assert!(e.contains("certificate expired"), "{e}");
    assert!(c.is_err());
}

#[tokio::test]
async fn refused_server_identity_not_expected() {
    let m = mesh();
    let server = mesh_server_config(&m.server, ClientAuth::Required).unwrap();
    let expected = vec![
        "spiffe://cluster.local/ns/default/sa/ratings".to_string(),
        "spiffe://cluster.local/ns/other/sa/reviews".to_string(),
    ];
    let client = mesh_client_config(&m.client, expected, &[b"h2"]).unwrap();
    let (s, c) = handshake(server, client, MESH_SNI).await;
    let e = c.unwrap_err();
    assert!(
        e.contains(&format!(
            "peer identity {REVIEWS} not in [spiffe://cluster.local/ns/default/sa/ratings, spiffe://cluster.local/ns/other/sa/reviews]"
        )),
        "{e}"
    );
    assert!(s.is_err());
}

#[tokio::test]
async fn refused_server_without_spiffe_id() {
    let m = mesh();
    let now = SystemTime::now();
    let dns_only =
        m.ca.issue_with(None, &["reviews".into()], now - DAY, now + DAY)
            .unwrap();
    let server = mesh_server_config(
        &unchecked(&dns_only, &m.ca.cert_pem()),
        ClientAuth::Required,
    )
    .unwrap();
    let client = mesh_client_config(&m.client, vec![], &[b"h2"]).unwrap();
    let (_, c) = handshake(server, client, "reviews").await;
    let e = c.unwrap_err();
    assert!(e.contains("no spiffe:// URI SAN"), "{e}");
}

#[tokio::test]
async fn mesh_client_still_verifies_the_chain() {
    // The name check is skipped in mesh mode: the chain check must not be. A server from
    // another CA whose certificate does not match the SNI either must fail on the chain
    // (pins rustls' order: chain first, then name).
    let m = mesh();
    let other = other_ca();
    let foreign = unchecked(&other.issue(REVIEWS, &[], 1).unwrap(), &other.cert_pem());
    let server = mesh_server_config(&foreign, ClientAuth::None).unwrap();
    let client = mesh_client_config(&m.client, vec![REVIEWS.into()], &[b"h2"]).unwrap();
    let (_, c) = handshake(server, client, MESH_SNI).await;
    let e = c.unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
}

#[tokio::test]
async fn tls12_works_and_no_session_resumption() {
    let m = mesh();
    let server = mesh_server_config(&m.server, ClientAuth::Required).unwrap();
    assert_eq!(server.send_tls13_tickets, 0);
    // A TLS 1.2-only client with the mesh verifier.
    let mut tls12 = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(
            tls::PeerVerifier::new(
                m.client.roots.clone(),
                tls::NameCheck::Spiffe(vec![REVIEWS.into()]),
            )
            .unwrap(),
        ))
        .with_client_auth_cert(m.client.chain.clone(), m.client.key.clone_key())
        .unwrap();
    tls12.alpn_protocols = vec![b"h2".to_vec()];
    let tls12 = Arc::new(tls12);
    let (s, c) = handshake(server.clone(), tls12.clone(), MESH_SNI).await;
    c.unwrap();
    let saw = s.unwrap();
    assert_eq!(saw.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(saw.peer.as_deref(), Some(PRODUCTPAGE));
    // The same client config again: no resumption (no session IDs, no tickets), so every
    // connection verifies the certificates afresh.
    let (s, _) = handshake(server.clone(), tls12, MESH_SNI).await;
    assert_eq!(s.unwrap().kind, Some(rustls::HandshakeKind::Full));
    let client = mesh_client_config(&m.client, vec![], &[b"h2"]).unwrap();
    for _ in 0..2 {
        let (s, c) = handshake(server.clone(), client.clone(), MESH_SNI).await;
        c.unwrap();
        assert_eq!(s.unwrap().kind, Some(rustls::HandshakeKind::Full));
    }
}

#[test]
fn tls11_client_refused() {
    let m = mesh();
    let server = mesh_server_config(&m.server, ClientAuth::Required).unwrap();
    let mut conn = rustls::ServerConnection::new(server).unwrap();
    // A TLS 1.1 ClientHello: legacy_version 3.2 and no supported_versions extension, but
    // otherwise acceptable (TLS 1.2 suites, groups, signature algorithms), so the version
    // is the only reason to refuse it.
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x09]); // cipher suites
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    let ext: &[u8] = &[
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, // supported_groups
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats: uncompressed
        0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03, // signature_algorithms
    ];
    body.extend_from_slice(&[0x00, ext.len() as u8]);
    body.extend_from_slice(ext);
    let mut hs = vec![0x01, 0x00, 0x00, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, hs.len() as u8];
    record.extend_from_slice(&hs);
    conn.read_tls(&mut &record[..]).unwrap();
    let e = conn.process_new_packets().unwrap_err();
    assert_eq!(
        e,
        rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
    );
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    // An alert record: fatal (2), protocol_version (70).
    assert_eq!(out.first(), Some(&0x15), "{out:?}");
    assert_eq!(&out[out.len() - 2..], &[2, 70], "{out:?}");
}

// ---------------------------------------------------------------- DestinationRule clients

/// A server with a DNS-named certificate (not a mesh identity) and its CA file.
struct Upstream {
    ca: Ca,
    dir: TempDir,
    server: Arc<ServerConfig>,
}

fn upstream(auth: ClientAuth) -> Upstream {
    let ca = ca();
    let dir = TempDir::new();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    let now = SystemTime::now();
    let issued = ca
        .issue_with(
            Some("spiffe://example.com/api"),
            &["api.example.com".into()],
            now - DAY,
            now + DAY,
        )
        .unwrap();
    let id = unchecked(&issued, &ca.cert_pem());
    let server = server_config(
        id.chain.clone(),
        id.key.clone_key(),
        Some(id.roots.clone()),
        auth,
        &[b"http/1.1"],
    )
    .unwrap();
    Upstream { ca, dir, server }
}

impl Upstream {
    fn opts(&self) -> ClientTlsOptions {
        ClientTlsOptions {
            ca: Some(self.dir.path().join("ca.pem")),
            alpn: vec![b"http/1.1".to_vec()],
            ..Default::default()
        }
    }
}

#[tokio::test]
async fn simple_checks_the_host_name() {
    let u = upstream(ClientAuth::None);
    let client = client_config(&u.opts()).unwrap();
    let (s, c) = handshake(u.server.clone(), client.clone(), "api.example.com").await;
    c.unwrap();
    assert_eq!(s.unwrap().alpn.as_deref(), Some(&b"http/1.1"[..]));
    let (_, c) = handshake(u.server.clone(), client, "other.example.com").await;
    let e = c.unwrap_err();
    assert!(e.contains("not valid for name"), "{e}");
    // The system roots do not know this CA.
    let system = client_config(&ClientTlsOptions {
        ca: None,
        ..u.opts()
    })
    .unwrap();
    let (_, c) = handshake(u.server.clone(), system, "api.example.com").await;
    assert!(c.unwrap_err().contains("UnknownIssuer"));
}

#[tokio::test]
async fn subject_alt_names_replace_the_host_name_check() {
    let u = upstream(ClientAuth::None);
    for san in [
        "api.example.com",
        "API.example.com",
        "spiffe://example.com/api",
    ] {
        let client = client_config(&ClientTlsOptions {
            subject_alt_names: vec!["nope.example.com".into(), san.into()],
            ..u.opts()
        })
        .unwrap();
        let (_, c) = handshake(u.server.clone(), client, "10.1.2.3").await;
        c.unwrap_or_else(|e| panic!("{san}: {e}"));
    }
    let client = client_config(&ClientTlsOptions {
        subject_alt_names: vec!["nope.example.com".into()],
        ..u.opts()
    })
    .unwrap();
    // Even when the SNI matches: the SAN list decides.
    let (_, c) = handshake(u.server.clone(), client, "api.example.com").await;
    let e = c.unwrap_err();
    assert!(
        e.contains("SANs [api.example.com, spiffe://example.com/api] match none of subjectAltNames [nope.example.com]"),
        "{e}"
    );
    assert!(dns_match_cases());
}

fn dns_match_cases() -> bool {
    tls::dns_matches("*.example.com", "api.example.com")
        && !tls::dns_matches("*.example.com", "a.b.example.com")
        && !tls::dns_matches("*.example.com", "example.com")
        && tls::dns_matches("Api.Example.com", "api.example.COM")
}

#[tokio::test]
async fn insecure_skip_verify_accepts_unknown_ca() {
    let u = upstream(ClientAuth::None);
    let client = client_config(&ClientTlsOptions {
        ca: None,
        insecure_skip_verify: true,
        ..u.opts()
    })
    .unwrap();
    let (_, c) = handshake(u.server.clone(), client, "whatever.invalid").await;
    c.unwrap();
}

#[tokio::test]
async fn mutual_presents_the_client_certificate() {
    let u = upstream(ClientAuth::Required);
    let issued = u.ca.issue(PRODUCTPAGE, &[], 1).unwrap();
    let dir = TempDir::new();
    issued.write(dir.path()).unwrap();
    let mutual = ClientTlsOptions {
        client_cert: Some(dir.path().join("cert.pem")),
        client_key: Some(dir.path().join("key.pem")),
        ..u.opts()
    };
    let (s, c) = handshake(
        u.server.clone(),
        client_config(&mutual).unwrap(),
        "api.example.com",
    )
    .await;
    c.unwrap();
    assert_eq!(s.unwrap().peer.as_deref(), Some(PRODUCTPAGE));
    // SIMPLE against a server that requires a certificate.
    let (s, _) = handshake(
        u.server.clone(),
        client_config(&u.opts()).unwrap(),
        "api.example.com",
    )
    .await;
    assert!(s.unwrap_err().contains("peer sent no certificates"));
    // Half a client identity is a configuration error.
    let e = client_config(&ClientTlsOptions {
        client_key: None,
        ..mutual.clone()
    })
    .unwrap_err();
    assert!(e.to_string().contains("needs its private key"), "{e}");
    // A client key that does not match: refused when the config is built.
    let other = u.ca.issue(REVIEWS, &[], 1).unwrap();
    std::fs::write(dir.path().join("other.key"), &other.key_pem).unwrap();
    let e = client_config(&ClientTlsOptions {
        client_key: Some(dir.path().join("other.key")),
        ..mutual
    })
    .unwrap_err();
    assert!(e.to_string().contains("key does not match"), "{e}");
}

#[test]
fn server_config_needs_roots_for_client_auth() {
    let m = mesh();
    let e = server_config(
        m.server.chain.clone(),
        m.server.key.clone_key(),
        None,
        ClientAuth::Required,
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("no CA certificates"), "{e}");
}

#[test]
fn spiffe_format() {
    assert_eq!(
        spiffe_id("cluster.local", "default", "reviews"),
        "spiffe://cluster.local/ns/default/sa/reviews"
    );
}
