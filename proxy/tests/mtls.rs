//! Mesh mTLS end to end with the binary: a client sidecar originates ISTIO_MUTUAL, a
//! server sidecar under PeerAuthentication STRICT terminates it, the app sees the peer in
//! `x-forwarded-client-cert`; every kind of bad client is refused with its own logged
//! reason; certificates rotate under load without a failed request.

mod binary;
mod common;

use bytes::Bytes;
use common::{eventually, Pki};
use meshproxy_certs::{Ca, Issued};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const TD: &str = "cluster.local";

fn spiffe(sa: &str) -> String {
    meshproxy_certs::spiffe_id(TD, "default", sa)
}

fn identity_yaml(dir: &Path) -> String {
    format!(
        "  identity:\n    certificate: {}\n    privateKey: {}\n    caCertificates: {}\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display(),
        dir.join("ca.pem").display()
    )
}

/// The server sidecar: inbound listener in front of `app`, STRICT mesh-wide.
fn server_config(id: &Path, app: u16, mode: &str) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  admin: {{address: \"127.0.0.1:0\"}}\n  workload: {{labels: {{app: reviews}}, serviceAccount: reviews}}\n  listeners:\n  - {{name: inbound, address: \"127.0.0.1:0\", direction: INBOUND, forwardTo: \"127.0.0.1:{app}\"}}\n{}---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: istio-system}}\nspec:\n  mtls: {{mode: {mode}}}\n",
        identity_yaml(id)
    )
}

/// The client sidecar: outbound listener, `reviews` at the server sidecar's inbound
/// address over ISTIO_MUTUAL expecting `expect_sa`.
fn client_config(id: &Path, inbound: SocketAddr, expect_sa: &str) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: productpage, namespace: default}}\nspec:\n  admin: {{address: \"127.0.0.1:0\"}}\n  workload: {{labels: {{app: productpage}}, serviceAccount: productpage}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n{}---\n{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews}}\nspec:\n  host: reviews\n  trafficPolicy:\n    tls: {{mode: ISTIO_MUTUAL, subjectAltNames: [\"{}\"]}}\n",
        identity_yaml(id),
        common::service("reviews.default.svc.cluster.local", &[(inbound.port(), "app: reviews")]),
        spiffe(expect_sa)
    )
}

fn get(addr: SocketAddr) -> impl std::future::Future<Output = common::Reply> {
    common::send(addr, "GET", "reviews", "/", &[], Bytes::new(), false)
}

/// A productpage sidecar calling a reviews sidecar (PeerAuthentication `mode`) in front
/// of a test app; the client expects the server to be `expect_sa`.
struct Mesh {
    pki: Pki,
    app: common::Upstream,
    server: binary::Running,
    client: binary::Running,
}

async fn mesh(mode: &str, expect_sa: &str) -> Mesh {
    let pki = Pki::new();
    let app = common::upstream("reviews-app").await;
    let server = binary::run(
        &server_config(&pki.workload("reviews"), app.addr.port(), mode),
        &["--workers", "1"],
    );
    let client = binary::run(
        &client_config(
            &pki.workload("productpage"),
            server.addr("inbound"),
            expect_sa,
        ),
        &["--workers", "1"],
    );
    Mesh {
        pki,
        app,
        server,
        client,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_mutual_to_strict_end_to_end() {
    let Mesh {
        pki: _pki,
        app,
        server,
        client,
    } = mesh("STRICT", "reviews").await;
    let r = get(client.addr("outbound")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "reviews-app");
    let xfcc = app.last_headers()["x-forwarded-client-cert"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        xfcc.contains(&format!("URI={}", spiffe("productpage"))),
        "{xfcc}"
    );
    assert!(
        xfcc.contains(&format!("By={}", spiffe("reviews"))),
        "{xfcc}"
    );
    assert!(xfcc.contains("Hash="), "{xfcc}");

    // The server reports the request as mutual TLS, from the client's certificate
    // identity (Istio's `source_principal` on the destination side).
    let metrics = common::metrics_text(server.addr("admin")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total")
                && l.contains("reporter=\"destination\"")
                && l.contains("connection_security_policy=\"mutual_tls\"")
                && l.contains(&format!("source_principal=\"{}\"", spiffe("productpage")))),
        "{}",
        metrics
    );
}

/// Waits for a log line of `p` containing every one of `texts`.
fn logged(p: &binary::Running, texts: &[&str]) -> Option<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Ok(line) = p.log.recv_timeout(Duration::from_millis(100)) {
            if texts.iter().all(|t| line.contains(t)) {
                return Some(line);
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_refuses_every_bad_client_with_its_reason() {
    let pki = Pki::new();
    let app = common::upstream("reviews-app").await;
    let server = binary::run(
        &server_config(&pki.workload("reviews"), app.addr.port(), "STRICT"),
        &["--workers", "1"],
    );
    let inbound = server.addr("inbound");

    // Plaintext HTTP.
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        common::raw_http(inbound, "GET / HTTP/1.1\r\nHost: reviews\r\n\r\n"),
    )
    .await
    .expect("closed promptly");
    assert!(
        !r.starts_with("HTTP/1.1 200"),
        "plaintext got an answer: {r}"
    );
    assert!(logged(
        &server,
        &["inbound connection refused", "STRICT requires mTLS"]
    )
    .is_some());

    // The refusals below go through another sidecar configured with a bad identity.
    let other_ca = Ca::generate("another CA", 30).unwrap();
    let cases: Vec<(&str, Issued, &str)> = vec![
        (
            "another CA",
            other_ca.issue(&spiffe("productpage"), &[], 1).unwrap(),
            "UnknownIssuer",
        ),
        (
            "expired",
            pki.ca
                .issue_with(
                    Some(&spiffe("productpage")),
                    &[],
                    SystemTime::now() - Duration::from_secs(7200),
                    SystemTime::now() - Duration::from_secs(3600),
                )
                .unwrap(),
            "certificate expired",
        ),
    ];
    for (what, issued, reason) in cases {
        let d = pki.dir.join(what.replace(' ', "-"));
        issued.write(&d).unwrap();
        // The client sidecar refuses to load such an identity itself, so the bad client
        // is a raw TLS client built from the files.
        let err = common::tls_get(inbound, &d, &pki.ca_pem()).await;
        assert!(err.is_err(), "{what}: a request got through");
        eprintln!("{what}: client saw {:?}", err.as_ref().err());
        let line = logged(
            &server,
            &[
                "inbound connection refused",
                "mTLS handshake failed",
                reason,
            ],
        );
        assert!(line.is_some(), "{what}: no log line with {reason:?}");
        eprintln!("{what}: {}", line.unwrap());
    }
    // No client certificate at all.
    let err = common::tls_get_without_cert(inbound, &pki.ca_pem()).await;
    assert!(err.is_err(), "a client without a certificate got through");
    assert!(logged(
        &server,
        &["inbound connection refused", "mTLS handshake failed"]
    )
    .is_some());
    assert_eq!(app.count(), 0, "nothing reached the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_the_wrong_identity_is_refused_by_the_client() {
    let Mesh {
        pki: _pki,
        app,
        server: _server,
        client,
    } = mesh("STRICT", "ratings").await;
    let r = get(client.addr("outbound")).await;
    assert_eq!(r.status, 503);
    let line = logged(&client, &["upstream TLS failed", &spiffe("reviews")]);
    assert!(line.is_some(), "the client logs the identity it refused");
    assert_eq!(app.count(), 0);
}

/// A client whose expectations come from the ServiceEntry's `subjectAltNames`: with an
/// ISTIO_MUTUAL DestinationRule naming none (`dr: true`), or with no DestinationRule at
/// all and auto mTLS to an endpoint labelled `security.istio.io/tlsMode: istio`.
fn client_config_se_sans(id: &Path, inbound: SocketAddr, expect_sa: &str, dr: bool) -> String {
    let dr = if dr {
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: productpage, namespace: default}}\nspec:\n  admin: {{address: \"127.0.0.1:0\"}}\n  workload: {{labels: {{app: productpage}}, serviceAccount: productpage}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n{}---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: reviews}}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  subjectAltNames: [\"{}\"]\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{app: reviews, security.istio.io/tlsMode: istio}}}}\n{dr}",
        identity_yaml(id),
        spiffe(expect_sa),
        inbound.port(),
    )
}

/// Istio: without `subjectAltNames` in the DestinationRule, the ServiceEntry's are what
/// the server must prove, for ISTIO_MUTUAL and for auto mTLS alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_entry_subject_alt_names_are_verified() {
    let pki = Pki::new();
    let app = common::upstream("reviews-app").await;
    let server = binary::run(
        &server_config(&pki.workload("reviews"), app.addr.port(), "STRICT"),
        &["--workers", "1"],
    );
    for dr in [true, false] {
        let before = app.count();
        let wrong = binary::run(
            &client_config_se_sans(
                &pki.workload("productpage"),
                server.addr("inbound"),
                "ratings",
                dr,
            ),
            &["--workers", "1"],
        );
        let r = get(wrong.addr("outbound")).await;
        assert_eq!(r.status, 503, "dr: {dr}: {}", r.body);
        assert!(
            logged(&wrong, &["upstream TLS failed", &spiffe("reviews")]).is_some(),
            "dr: {dr}: the client logs the identity it refused"
        );
        assert_eq!(
            app.count(),
            before,
            "dr: {dr}: the refused call reached the app"
        );
        let right = binary::run(
            &client_config_se_sans(
                &pki.workload("productpage"),
                server.addr("inbound"),
                "reviews",
                dr,
            ),
            &["--workers", "1"],
        );
        let r = get(right.addr("outbound")).await;
        assert_eq!(r.status, 200, "dr: {dr}: {}", r.body);
    }
    assert_eq!(app.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_takes_mtls_and_plaintext_on_one_port() {
    let Mesh {
        pki: _pki,
        app,
        server,
        client,
    } = mesh("PERMISSIVE", "reviews").await;
    let inbound = server.addr("inbound");
    assert_eq!(get(client.addr("outbound")).await.status, 200);
    assert!(app.last_headers().contains_key("x-forwarded-client-cert"));
    let r = common::send(
        inbound,
        "GET",
        "reviews",
        "/",
        &[("x-forwarded-client-cert", "By=forged")],
        Bytes::new(),
        false,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        !app.last_headers().contains_key("x-forwarded-client-cert"),
        "a plaintext client's own XFCC is dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_twenty_times_under_load() {
    let pki = Pki::new();
    let app = common::upstream("reviews-app").await;
    let server_id = pki.workload("reviews");
    let client_id = pki.workload("productpage");
    let server = binary::run(
        &server_config(&server_id, app.addr.port(), "STRICT"),
        &["--workers", "1"],
    );
    let client = binary::run(
        &client_config(&client_id, server.addr("inbound"), "reviews"),
        &["--workers", "1"],
    );
    let addr = client.addr("outbound");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for fresh in [false, true] {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Fresh connections to the client sidecar, and `Connection: close` so the
                // sidecar opens new mTLS connections upstream too.
                let headers: &[(&str, &str)] = if fresh {
                    &[("connection", "close")]
                } else {
                    &[]
                };
                let r =
                    common::send(addr, "GET", "reviews", "/", headers, Bytes::new(), false).await;
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    eprintln!("failed: {} {}", r.status, r.body);
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let admin = server.addr("admin");
    let rotations = |body: &str| -> u64 {
        body.lines()
            .find(|l| l.starts_with("meshproxy_identity_rotations_total{result=\"accepted\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    for i in 1..=20u64 {
        let before = ok.load(Ordering::Relaxed);
        // Both sides get new certificates from the same CA.
        pki.ca
            .issue(&spiffe("reviews"), &[], 1)
            .unwrap()
            .write(&server_id)
            .unwrap();
        pki.ca
            .issue(&spiffe("productpage"), &[], 1)
            .unwrap()
            .write(&client_id)
            .unwrap();
        let mut seen = 0;
        for _ in 0..500 {
            let m = common::metrics_text(admin).await;
            seen = rotations(&m);
            if seen >= i {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(seen >= i, "rotation {i} not picked up (saw {seen})");
        assert!(
            eventually(Duration::from_secs(10), || ok.load(Ordering::Relaxed)
                > before + 5)
            .await,
            "traffic flows after rotation {i}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!("rotation soak: {} requests", ok.load(Ordering::Relaxed));
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed across 20 rotations"
    );
}

/// HTTP/2 between sidecars (the port is declared `HTTP2`, so the mesh connection is
/// mutual TLS with ALPN `h2`): the server sidecar serves it through its HTTP/2 guard,
/// which lets a conforming peer's frames through untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_mutual_h2_is_served_through_the_h2_guard() {
    let pki = Pki::new();
    let app = common::upstream("reviews-app").await;
    let server = binary::run(
        &server_config(&pki.workload("reviews"), app.addr.port(), "STRICT"),
        &["--workers", "1"],
    );
    let yaml = client_config(
        &pki.workload("productpage"),
        server.addr("inbound"),
        "reviews",
    )
    .replace(
        "name: http, protocol: HTTP}",
        "name: http2, protocol: HTTP2}",
    )
    .replace("ports: {http: ", "ports: {http2: ");
    assert!(yaml.contains("protocol: HTTP2"), "{yaml}");
    let client = binary::run(&yaml, &["--workers", "1"]);
    for _ in 0..5 {
        let r = get(client.addr("outbound")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, "reviews-app");
    }
    // The server sidecar's access log shows HTTP/2 requests.
    let line = server
        .stdout
        .recv_timeout(Duration::from_secs(5))
        .expect("an access log line from the server sidecar");
    assert!(line.contains("HTTP/2"), "{line}");
    let metrics = common::metrics_text(server.addr("admin")).await;
    assert!(
        metrics.contains("\nmeshproxy_downstream_protocol_errors_total{protocol=\"http2\"} 0\n"),
        "{}",
        metrics
    );
}
