//! `protocol: AUTO` listeners: one port carrying HTTP/1.1, h2c, TLS (routed by SNI
//! without terminating it) and opaque TCP, told apart by what the client sends first; a
//! server-first protocol (the client sends nothing) goes to TCP after the detection
//! timeout. TCP connections are counted in Istio's `istio_tcp_*` metrics and get an
//! access-log line. Real clients: curl and raw sockets.

mod binary;
mod common;

use common::{curl, free_port, tls_app, upstream, Pki};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BANNER: &[u8] = b"220 db ready\r\n";

/// A server-first upstream: writes [`BANNER`] on accept, then echoes.
async fn banner_echo() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if s.write_all(BANNER).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// Reads exactly `n` bytes within 5 s.
async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut out))
        .await
        .expect("bytes in time")
        .expect("bytes");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_auto_port_carries_http_h2c_tls_and_tcp() {
    if common::curl_missing() {
        return;
    }
    let web = upstream("web").await;
    let db = banner_echo().await;
    let pki = Pki::new();
    let cert = pki.server("tls", &["tls.example"]);
    let tls = tls_app(&cert, "tls-app").await;
    let port = free_port();
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: app, namespace: default}}
spec:
  admin: {{address: \"127.0.0.1:0\"}}
  listeners:
  - {{name: outbound, address: \"127.0.0.1:{port}\", direction: OUTBOUND, protocol: AUTO}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web.default.svc.cluster.local]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {web}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db}}
spec:
  hosts: [db.default.svc.cluster.local]
  ports: [{{number: 3306, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {db}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tls}}
spec:
  hosts: [tls.example]
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{tls: {tls}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tls}}
spec:
  hosts: [tls.example]
  tls:
  - match: [{{sniHosts: [tls.example]}}]
    route: [{{destination: {{host: tls.example, port: {{number: 443}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db}}
spec:
  hosts: [db.default.svc.cluster.local]
  tcp:
  - match: [{{port: {port}}}]
    route: [{{destination: {{host: db.default.svc.cluster.local, port: {{number: 3306}}}}}}]
",
        web = web.addr.port()
    );
    let p = binary::run(&yaml, &["--access-log", "on"]);
    let addr: SocketAddr = p.addr("outbound");
    let url = format!("http://{addr}/x");

    // HTTP/1.1 and h2c: routed by Host.
    let (code, body, err) = curl(vec!["-H".into(), "Host: web".into(), url.clone()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(body.contains("web"), "{body}");
    let (code, _, err) = curl(vec![
        "--http2-prior-knowledge".into(),
        "-H".into(),
        "Host: web".into(),
        url.clone(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(web.count(), 2);
    assert_eq!(
        *web.seen.versions.lock().unwrap(),
        vec![http::Version::HTTP_11, http::Version::HTTP_11],
        "the upstream is HTTP/1.1 (port protocol HTTP)"
    );

    // TLS: routed by the SNI in the ClientHello, not terminated (the client verifies the
    // application's certificate end to end).
    let ca = pki.ca_pem().display().to_string();
    let (code, body, err) = curl(vec![
        "--cacert".into(),
        ca,
        "--connect-to".into(),
        format!("tls.example:443:127.0.0.1:{port}"),
        "https://tls.example/".into(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, "tls-app");

    // Opaque TCP the client starts: echoed by the TCP route's upstream.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"\x00\x01binary, not HTTP").await.unwrap();
    assert_eq!(read_n(&mut s, BANNER.len()).await, BANNER);
    assert_eq!(read_n(&mut s, 18).await, b"\x00\x01binary, not HTTP");
    drop(s);

    // Server first: the client waits for the banner; detection gives up after its short
    // timeout and the connection goes to TCP.
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_n(&mut s, BANNER.len()).await, BANNER);
    s.write_all(b"QUIT\r\n").await.unwrap();
    assert_eq!(read_n(&mut s, 6).await, b"QUIT\r\n");
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;

    // The TCP connections are in Istio's TCP metrics (two to db, one to tls.example) ...
    let admin = p.addr("admin");
    let mut metrics = String::new();
    let scraped = common::eventually(Duration::from_secs(5), || {
        let Ok(out) = Command::new("curl")
            .args(["-sS", &format!("http://{admin}/metrics")])
            .output()
        else {
            return false;
        };
        metrics = String::from_utf8_lossy(&out.stdout).into_owned();
        sum(&metrics, "istio_tcp_connections_closed_total", "db.default") >= 2.0
    })
    .await;
    assert!(
        scraped,
        "both db connections closed in the metrics:\n{metrics}"
    );
    assert_eq!(
        sum(&metrics, "istio_tcp_connections_opened_total", "db.default"),
        2.0
    );
    assert!(sum(&metrics, "istio_tcp_received_bytes_total", "db.default") >= 24.0);
    assert!(
        sum(&metrics, "istio_tcp_sent_bytes_total", "db.default") >= (2 * BANNER.len() + 24) as f64
    );
    assert_eq!(
        sum(
            &metrics,
            "istio_tcp_connections_opened_total",
            "tls.example"
        ),
        1.0
    );
    assert!(metrics.contains("request_protocol=\"tcp\""), "{metrics}");

    // ... and in the access log, in Envoy's TCP form.
    let mut tcp_lines = 0;
    while let Ok(l) = p.stdout.recv_timeout(Duration::from_secs(2)) {
        if l.contains("\"- - -\" 0 ") {
            tcp_lines += 1;
        }
        if tcp_lines == 3 {
            break;
        }
    }
    assert_eq!(tcp_lines, 3);
}

/// Sum of the `family` series whose `destination_service` contains `svc`.
fn sum(text: &str, family: &str, svc: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter(|l| {
            l.split("destination_service=\"")
                .nth(1)
                .is_some_and(|v| v.starts_with(svc))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
