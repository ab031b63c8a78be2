//! `spec.limits.streamIdleTimeout` (Envoy's `stream_idle_timeout`) end to end through
//! the `meshproxy` binary: a request whose client stops sending its body gets `408`, a
//! response whose upstream stops mid-body is cut, both logged with flag `SI`; a body
//! that keeps arriving, slowly, is never cut. Real sockets on both sides.

mod binary;
mod common;

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The limit under test; the slow body below sends a byte every tenth of it.
const IDLE: Duration = Duration::from_millis(500);

/// Bound on any wait for the proxy.
const WAIT: Duration = Duration::from_secs(10);

fn config(web: u16, stall: u16) -> String {
    format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: idle}}
spec:
  admin: {{address: \"127.0.0.1:0\"}}
  listeners:
  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}
  limits: {{streamIdleTimeout: {}ms}}
---
{}{}",
        IDLE.as_millis(),
        common::service("web.default.svc.cluster.local", &[(web, "app: web")]),
        common::service("stall.default.svc.cluster.local", &[(stall, "app: stall")]),
    )
}

/// An upstream that answers every request with a head announcing 100 bytes, sends 10,
/// and then keeps the connection open without sending more.
async fn stalling_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                .await;
            held.push(s);
        }
    });
    addr
}

/// Reads from `s` until the peer closes it (or [`WAIT`] passes).
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn next_line(p: &binary::Running) -> String {
    p.stdout.recv_timeout(WAIT).expect("an access log line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_end_and_slow_ones_do_not() {
    let web = common::upstream("web").await;
    let stall = stalling_upstream().await;
    let p = binary::run(&config(web.addr.port(), stall.port()), &["--workers", "1"]);
    let addr = p.addr("outbound");

    // A client that stops sending its body: 408 from the proxy, flag SI.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"POST /stalled HTTP/1.1\r\nHost: web\r\ncontent-length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let answer = read_to_close(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.ends_with("stream timeout"), "{answer}");
    let line = next_line(&p);
    assert!(
        line.contains("\"POST /stalled HTTP/1.1\" 408 SI "),
        "{line}"
    );

    // An upstream that stops mid-body: the response started, so it is cut short (the
    // connection closes before the announced length) and logged with SI.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /cut HTTP/1.1\r\nHost: stall\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    assert_eq!(body, "0123456789", "{answer}");
    let line = next_line(&p);
    assert!(line.contains("\"GET /cut HTTP/1.1\" 200 SI "), "{line}");

    // A body that keeps coming, a byte every tenth of the limit, for twice the limit:
    // activity resets the timer, the request completes.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(
        b"POST /slow HTTP/1.1\r\nHost: web\r\ncontent-length: 20\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    for _ in 0..20 {
        tokio::time::sleep(IDLE / 10).await;
        c.write_all(b"x").await.unwrap();
    }
    let answer = read_to_close(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("web 20"), "{answer}");
    let line = next_line(&p);
    assert!(line.contains("\"POST /slow HTTP/1.1\" 200 - "), "{line}");
}
