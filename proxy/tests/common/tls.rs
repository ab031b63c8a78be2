//! Server-side TLS for the tests' own HTTPS servers.

/// A TLS acceptor offering HTTP/1.1 with the certificate in `cert_dir` (`cert.pem`,
/// `key.pem`), no client certificate asked.
pub fn tls_acceptor(cert_dir: &std::path::Path) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert_dir.join("cert.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(cert_dir.join("key.pem")).unwrap();
    let config = meshproxy_certs::server_config(
        chain,
        key,
        None,
        meshproxy_certs::ClientAuth::None,
        &[b"http/1.1"],
    )
    .unwrap();
    tokio_rustls::TlsAcceptor::from(config)
}
