//! TLS origination as DestinationRule `tls` says (SIMPLE, MUTUAL), against real TLS
//! upstreams with certificates the project issues: the right server is verified by its
//! CA, SNI and SANs, a client certificate is presented when asked, and every failure is
//! a `503` with flag `UF` that never reaches the application.

mod common;
use common::*;
use meshproxy_certs::{Ca, ClientAuth};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A TLS upstream answering 200 "tls-app"; it requires a client certificate from `ca`
/// when `client_ca` is given. Counts the requests it answers.
async fn tls_upstream(cert: &Path, client_ca: Option<&Path>) -> (u16, Arc<AtomicU64>) {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert.join("cert.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(cert.join("key.pem")).unwrap();
    let (roots, auth) = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            (Some(Arc::new(roots)), ClientAuth::Required)
        }
        None => (None, ClientAuth::None),
    };
    let config = meshproxy_certs::server_config(chain, key, roots, auth, &[b"http/1.1"]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let c = c.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |_req: http::Request<hyper::body::Incoming>| {
                        c.fetch_add(1, Ordering::SeqCst);
                        async {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"tls-app")),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, count)
}

fn config(port: u16, tls: &str) -> String {
    format!(
        "{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\nspec:\n  host: web.example.com\n  trafficPolicy:\n    tls: {tls}\n",
        service_proto("web.example.com", "HTTP", &[(port, "app: web")])
    )
}

fn files(dir: &Path) -> (String, String, String) {
    (
        dir.join("cert.pem").display().to_string(),
        dir.join("key.pem").display().to_string(),
        dir.join("ca.pem").display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_verifies_the_server_by_ca_and_name() {
    let pki = Pki::new();
    let server = pki.server("server", &["web.example.com"]);
    let (port, count) = tls_upstream(&server, None).await;
    let ca = pki.ca_pem().display().to_string();

    let p = proxy(&config(
        port,
        &format!("{{mode: SIMPLE, caCertificates: {ca}, sni: web.example.com}}"),
    ));
    let r = get(&p, "web.example.com", "/", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "tls-app"));
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // The SNI (and so the name checked) does not match the certificate.
    let p = proxy(&config(
        port,
        &format!("{{mode: SIMPLE, caCertificates: {ca}, sni: other.example.com}}"),
    ));
    assert_eq!(get(&p, "web.example.com", "/", &[]).await.status, 503);
    // subjectAltNames replaces the name check.
    let p = proxy(&config(
        port,
        &format!("{{mode: SIMPLE, caCertificates: {ca}, sni: other.example.com, subjectAltNames: [web.example.com]}}"),
    ));
    assert_eq!(get(&p, "web.example.com", "/", &[]).await.status, 200);
    // Another CA's bundle: the server is not trusted.
    let other = Ca::generate("other CA", 1).unwrap();
    other.write(&pki.dir.join("other")).unwrap();
    let other_ca = pki.dir.join("other/ca.pem").display().to_string();
    let p = proxy(&config(
        port,
        &format!("{{mode: SIMPLE, caCertificates: {other_ca}, sni: web.example.com}}"),
    ));
    let before = count.load(Ordering::SeqCst);
    let r = get(&p, "web.example.com", "/", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        count.load(Ordering::SeqCst),
        before,
        "nothing reached the app"
    );
    // insecureSkipVerify trusts it anyway.
    let p = proxy(&config(port, "{mode: SIMPLE, insecureSkipVerify: true}"));
    assert_eq!(get(&p, "web.example.com", "/", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_presents_the_client_certificate() {
    let pki = Pki::new();
    let server = pki.server("server", &["web.example.com"]);
    let client = pki.server("client", &["client.example.com"]);
    let ca_path = pki.ca_pem();
    let (port, count) = tls_upstream(&server, Some(&ca_path)).await;
    let (cert, key, ca) = files(&client);

    let p = proxy(&config(
        port,
        &format!("{{mode: MUTUAL, clientCertificate: {cert}, privateKey: {key}, caCertificates: {ca}, sni: web.example.com}}"),
    ));
    let r = get(&p, "web.example.com", "/", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "tls-app"));

    // SIMPLE to a server that requires a client certificate fails.
    let p = proxy(&config(
        port,
        &format!("{{mode: SIMPLE, caCertificates: {ca}, sni: web.example.com}}"),
    ));
    let before = count.load(Ordering::SeqCst);
    assert_eq!(get(&p, "web.example.com", "/", &[]).await.status, 503);
    assert_eq!(count.load(Ordering::SeqCst), before);

    // DISABLE speaks plaintext to it: the TLS server cannot answer.
    let p = proxy(&config(port, "{mode: DISABLE}"));
    assert_eq!(get(&p, "web.example.com", "/", &[]).await.status, 503);
}
