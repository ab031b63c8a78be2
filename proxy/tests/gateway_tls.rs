//! TLS on Gateway servers and on STRICT inbound listeners, checked with `openssl
//! s_client` (the certificate picked by SNI, old protocol versions refused, a client
//! certificate required) and with a real HTTPS request routed by VirtualService.

mod common;
use common::*;
use meshproxy::access_log::AccessLog;
use meshproxy::server::{Options, Server};
use std::path::Path;
use std::process::{Command, Stdio};

fn start(yaml: &str) -> Server {
    let snap =
        meshproxy_config::compile::load_str("t.yaml", yaml).unwrap_or_else(|d| panic!("{d}"));
    Server::start(snap, Options::default(), AccessLog::disabled()).expect("starts")
}

fn openssl() -> Option<()> {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: needs `openssl` (apt-get install openssl; .ci/run installs it)");
        return None;
    }
    Some(())
}

/// Runs `openssl s_client` against `addr` with `args`; (handshake succeeded, output).
fn s_client(addr: std::net::SocketAddr, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // openssl exits 0 even when the handshake fails; a negotiated cipher is the proof.
    // A server refusing after the hello (no client certificate) sends an alert.
    let ok = text.contains("Cipher is ")
        && !text.contains("Cipher is (NONE)")
        && !text.contains(" alert ");
    (ok, text)
}

/// An ingress Proxy, a Gateway `public` with `servers` (YAML list items), and a
/// VirtualService routing `hosts` on it to the `web` service at `web_port`.
fn gateway_yaml(servers: &str, hosts: &str, web_port: u16) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: ingress}}\nspec:\n  workload: {{labels: {{istio: ingressgateway}}}}\n  gatewayAddress: 127.0.0.1\n  listeners: []\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: public}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n{servers}---\n{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web}}\nspec:\n  hosts: [{hosts}]\n  gateways: [public]\n  http:\n  - route: [{{destination: {{host: web.default.svc.cluster.local}}}}]\n",
        service("web.default.svc.cluster.local", &[(web_port, "app: web")])
    )
}

fn server_yaml(port: u16, name: &str, host: &str, dir: &Path, mode: &str, ca: &Path) -> String {
    let ca_line = if mode == "MUTUAL" {
        format!("      caCertificates: {}\n", ca.display())
    } else {
        String::new()
    };
    format!(
        "  - port: {{number: {port}, name: {name}, protocol: HTTPS}}\n    hosts: [\"{host}\"]\n    tls:\n      mode: {mode}\n      serverCertificate: {}\n      privateKey: {}\n{ca_line}",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_terminates_tls_by_sni_and_refuses_old_versions() {
    if openssl().is_none() {
        return;
    }
    let pki = Pki::new();
    let web = upstream("web").await;
    let port = free_port();
    let shop = pki.server("shop", &["shop.example.com"]);
    let blog = pki.server("blog", &["blog.example.com"]);
    let ca = pki.ca_pem();
    let yaml = gateway_yaml(
        &(server_yaml(port, "shop", "shop.example.com", &shop, "SIMPLE", &ca)
            + &server_yaml(port, "blog", "blog.example.com", &blog, "SIMPLE", &ca)),
        "shop.example.com, blog.example.com",
        web.addr.port(),
    );
    let s = start(&yaml);
    let addr = s
        .addr(&format!("gateway-127.0.0.1:{port}"))
        .expect("gateway listener");
    let ca_s = ca.to_str().unwrap();

    for (sni, want) in [
        ("shop.example.com", "shop.example.com"),
        ("blog.example.com", "blog.example.com"),
    ] {
        let (ok, out) = tokio::task::block_in_place(|| {
            s_client(
                addr,
                &[
                    "-servername",
                    sni,
                    "-CAfile",
                    ca_s,
                    "-verify_hostname",
                    sni,
                    "-verify_return_error",
                ],
            )
        });
        assert!(ok, "{sni}: {out}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{sni}: {out}");
        assert!(
            out.contains(want),
            "{sni}: certificate for {want} expected: {out}"
        );
    }
    for old in ["-tls1", "-tls1_1"] {
        let (ok, out) = tokio::task::block_in_place(|| {
            s_client(addr, &["-servername", "shop.example.com", old])
        });
        assert!(!ok, "{old} accepted: {out}");
    }
    let (ok, out) = tokio::task::block_in_place(|| {
        s_client(
            addr,
            &[
                "-servername",
                "shop.example.com",
                "-tls1_2",
                "-CAfile",
                ca_s,
            ],
        )
    });
    assert!(ok, "TLS 1.2 is accepted: {out}");

    // A real HTTPS request is routed by the VirtualService.
    let r = https_get(addr, "shop.example.com", &ca).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("web"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_gateway_server_requires_a_client_certificate() {
    if openssl().is_none() {
        return;
    }
    let pki = Pki::new();
    let web = upstream("web").await;
    let port = free_port();
    let api = pki.server("api", &["api.example.com"]);
    let ca = pki.ca_pem();
    let client = pki.workload("partner");
    let yaml = gateway_yaml(
        &server_yaml(port, "api", "api.example.com", &api, "MUTUAL", &ca),
        "api.example.com",
        web.addr.port(),
    );
    let s = start(&yaml);
    let addr = s
        .addr(&format!("gateway-127.0.0.1:{port}"))
        .expect("gateway listener");
    assert!(
        tls_get_without_cert(addr, &ca).await.is_err(),
        "no client certificate, no answer"
    );
    let r = tls_get(addr, &client, &ca)
        .await
        .expect("with a client certificate");
    assert!(r.starts_with("HTTP/1.1 "), "{r}");
}

/// Istio's `subjectAltNames` on a MUTUAL server: a client certificate the CA signed but
/// naming another identity is refused; one of the listed names is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_gateway_server_checks_client_subject_alt_names() {
    let pki = Pki::new();
    let web = upstream("web").await;
    let port = free_port();
    let api = pki.server("api", &["api.example.com"]);
    let ca = pki.ca_pem();
    let partner = pki.workload("partner");
    let stranger = pki.workload("stranger");
    let server = format!(
        "{}      subjectAltNames: [\"{}\"]\n",
        server_yaml(port, "api", "api.example.com", &api, "MUTUAL", &ca),
        meshproxy_certs::spiffe_id("cluster.local", "default", "partner")
    );
    let s = start(&gateway_yaml(&server, "api.example.com", web.addr.port()));
    let addr = s
        .addr(&format!("gateway-127.0.0.1:{port}"))
        .expect("gateway listener");
    let refused = tls_get(addr, &stranger, &ca).await;
    assert!(
        refused
            .as_ref()
            .map_or(true, |r| !r.starts_with("HTTP/1.1 ")),
        "a certificate naming another identity was served: {refused:?}"
    );
    // Served: an HTTP answer (the helper's request names a host this gateway does not
    // route, so 404), where the stranger got none.
    let r = tls_get(addr, &partner, &ca)
        .await
        .expect("the listed identity is served");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
}

/// An HTTPS GET verifying the server against `ca` for `host`.
async fn https_get(addr: std::net::SocketAddr, host: &str, ca: &Path) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = meshproxy_certs::client_config(&meshproxy_certs::ClientTlsOptions {
        ca: Some(ca.to_path_buf()),
        client_cert: None,
        client_key: None,
        subject_alt_names: vec![],
        insecure_skip_verify: false,
        alpn: vec![b"http/1.1".to_vec()],
    })
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("handshake verifies the server for its name");
    tls.write_all(
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_inbound_requires_a_client_certificate_openssl() {
    if openssl().is_none() {
        return;
    }
    let pki = Pki::new();
    let app = upstream("app").await;
    let me = pki.dir.join("reviews");
    let spiffe = |sa: &str| meshproxy_certs::spiffe_id("cluster.local", "default", sa);
    pki.ca
        .issue(&spiffe("reviews"), &[], 1)
        .unwrap()
        .write(&me)
        .unwrap();
    let peer = pki.dir.join("peer");
    pki.ca
        .issue(&spiffe("productpage"), &[], 1)
        .unwrap()
        .write(&peer)
        .unwrap();
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: reviews}}\nspec:\n  workload: {{labels: {{app: reviews}}, serviceAccount: reviews}}\n  listeners:\n  - {{name: inbound, address: \"127.0.0.1:0\", direction: INBOUND, forwardTo: \"{}\"}}\n  identity: {{certificate: {}, privateKey: {}, caCertificates: {}}}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: istio-system}}\nspec: {{mtls: {{mode: STRICT}}}}\n",
        app.addr,
        me.join("cert.pem").display(),
        me.join("key.pem").display(),
        me.join("ca.pem").display()
    );
    let s = start(&yaml);
    let addr = s.addr("inbound").unwrap();
    let (ok, out) = tokio::task::block_in_place(|| s_client(addr, &["-tls1_2"]));
    assert!(!ok, "TLS 1.2 without a client certificate: {out}");
    assert!(
        out.contains("Acceptable client certificate CA names"),
        "a client certificate is requested: {out}"
    );
    let (ok, out) = tokio::task::block_in_place(|| s_client(addr, &["-tls1_3", "-ign_eof"]));
    assert!(
        !ok && out.contains("certificate required"),
        "TLS 1.3 without a client certificate: {out}"
    );
    for old in ["-tls1", "-tls1_1"] {
        let (ok, out) = tokio::task::block_in_place(|| s_client(addr, &[old]));
        assert!(!ok, "{old} accepted: {out}");
    }
    let (cert, key) = (peer.join("cert.pem"), peer.join("key.pem"));
    let (ok, out) = tokio::task::block_in_place(|| {
        s_client(
            addr,
            &[
                "-tls1_2",
                "-cert",
                cert.to_str().unwrap(),
                "-key",
                key.to_str().unwrap(),
            ],
        )
    });
    assert!(ok, "with the mesh client certificate: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_no_weak_protocol_or_cipher() {
    let found = Command::new("sh")
        .args(["-c", "command -v testssl || command -v testssl.sh"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if found.is_empty() {
        eprintln!("SKIPPED: needs testssl.sh (apt-get install testssl.sh; .ci/run installs it)");
        return;
    }
    let pki = Pki::new();
    let web = upstream("web").await;
    let port = free_port();
    let shop = pki.server("shop", &["shop.example.com"]);
    let ca = pki.ca_pem();
    let yaml = gateway_yaml(
        &server_yaml(port, "shop", "shop.example.com", &shop, "SIMPLE", &ca),
        "shop.example.com",
        web.addr.port(),
    );
    let _s = start(&yaml);
    let target = format!("127.0.0.1:{port}");
    // Protocols (-p) and cipher categories (-s); the command the README shows.
    let out = tokio::task::block_in_place(|| {
        Command::new(&found)
            .args([
                "--quiet",
                "--color",
                "0",
                "--warnings",
                "off",
                "-p",
                "-s",
                &target,
            ])
            .output()
            .expect("run testssl")
    });
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = |prefix: &str| -> String {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{text}"))
            .to_string()
    };
    for proto in ["SSLv2", "SSLv3", "TLS 1 ", "TLS 1.1"] {
        assert!(
            line(proto).contains("not offered"),
            "{proto} offered:\n{text}"
        );
    }
    for proto in ["TLS 1.2", "TLS 1.3"] {
        assert!(
            line(proto).contains("offered") && !line(proto).contains("not offered"),
            "{proto}:\n{text}"
        );
    }
    for weak in [
        "NULL ciphers",
        "Anonymous NULL",
        "Export ciphers",
        "LOW: 64 Bit",
        "Triple DES",
        "Obsolete CBC",
    ] {
        let l = line(weak);
        assert!(l.contains("not offered"), "weak category offered: {l}");
    }
}

/// The leaf certificate `addr` presents for `host`, verified against `ca`.
async fn presented(addr: std::net::SocketAddr, host: &str, ca: &Path) -> Vec<u8> {
    let config = meshproxy_certs::client_config(&meshproxy_certs::ClientTlsOptions {
        ca: Some(ca.to_path_buf()),
        alpn: vec![b"http/1.1".to_vec()],
        ..Default::default()
    })
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_certificates_rotate_without_a_restart() {
    let pki = Pki::new();
    let web = upstream("web").await;
    let port = free_port();
    let shop = pki.server("shop", &["shop.example.com"]);
    let ca = pki.ca_pem();
    let yaml = gateway_yaml(
        &server_yaml(port, "shop", "shop.example.com", &shop, "SIMPLE", &ca),
        "shop.example.com",
        web.addr.port(),
    );
    let dir = pki.dir.join("config");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("gateway.yaml"), yaml).unwrap();
    let snap = meshproxy_config::compile::load(&[&dir]).unwrap();
    let server = std::sync::Arc::new(
        Server::start(snap, Options::default(), AccessLog::disabled()).unwrap(),
    );
    let reloader = meshproxy::reload::Reloader::new(vec![dir.clone()], &server);
    // The server keeps its reloader (the watcher only holds it weakly).
    let _ = server.shared.reloader.set(reloader.clone());
    let _watcher =
        meshproxy::reload::watch(reloader, &[shop.join("cert.pem"), shop.join("key.pem")]).unwrap();
    let addr = server.addr(&format!("gateway-127.0.0.1:{port}")).unwrap();
    let mut current = presented(addr, "shop.example.com", &ca).await;
    for i in 1..=3 {
        pki.server("shop", &["shop.example.com"]);
        let mut rotated = false;
        for _ in 0..500 {
            let now = presented(addr, "shop.example.com", &ca).await;
            if now != current {
                current = now;
                rotated = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(rotated, "rotation {i}: the new certificate is served");
        let r = https_get(addr, "shop.example.com", &ca).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
}

/// A TLS connection to a gateway for `host`, offering only ALPN `h2`.
async fn h2_tls(
    addr: std::net::SocketAddr,
    host: &str,
    ca: &Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = meshproxy_certs::client_config(&meshproxy_certs::ClientTlsOptions {
        ca: Some(ca.to_path_buf()),
        client_cert: None,
        client_key: None,
        subject_alt_names: vec![],
        insecure_skip_verify: false,
        alpn: vec![b"h2".to_vec()],
    })
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

/// HTTP/2 chosen by ALPN goes through the HTTP/2 guard: requests are served, and a
/// client that then does not send the HTTP/2 preface gets GOAWAY PROTOCOL_ERROR (RFC 9113
/// §3.4), not an HTTP/1 answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_h2_by_alpn_is_served_behind_the_h2_guard() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let web = upstream("web").await;
    let port = free_port();
    let shop = pki.server("shop", &["shop.example.com"]);
    let ca = pki.ca_pem();
    let yaml = gateway_yaml(
        &server_yaml(port, "shop", "shop.example.com", &shop, "SIMPLE", &ca),
        "shop.example.com",
        web.addr.port(),
    );
    let s = start(&yaml);
    let addr = s
        .addr(&format!("gateway-127.0.0.1:{port}"))
        .expect("gateway listener");

    let tls = h2_tls(addr, "shop.example.com", &ca).await;
    let (mut client, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = http::Request::get("https://shop.example.com/")
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).expect("request sent");
        let resp = resp.await.expect("response");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("body");
            let _ = body.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, b"web");
    }

    let mut tls = h2_tls(addr, "shop.example.com", &ca).await;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    // One frame: GOAWAY (type 7) on stream 0, last stream 0, PROTOCOL_ERROR (1).
    assert!(out.len() >= 17, "{out:?}");
    assert_eq!(out[3], 7, "{}", String::from_utf8_lossy(&out));
    assert_eq!(&out[9..17], &[0, 0, 0, 0, 0, 0, 0, 1]);
}
