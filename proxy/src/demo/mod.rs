//! `meshproxy demo`: the embedded default. Built-in services (reviews v1/v2/v3, ratings)
//! on loopback, the proxy in front of them with a config compiled into the binary, and the
//! curl lines that show header routing, a weighted split and a fault.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// The embedded config, with `${...}` port placeholders.
pub const CONFIG: &str = include_str!("demo.yaml");

/// A demo service: answers every request with a JSON line naming itself.
pub async fn start_service(service: &'static str, version: &'static str) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let body = format!(
                        "{{\"service\":\"{service}\",\"version\":\"{version}\",\"path\":\"{}\"}}\n",
                        req.uri().path().replace('"', "")
                    );
                        let mut resp = Response::new(Full::new(Bytes::from(body)));
                        resp.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, Infallible>(resp)
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Fills in the placeholders.
pub fn render(proxy_port: u16, ports: &[(&str, u16)]) -> String {
    let mut text = CONFIG.replace("${PROXY_PORT}", &proxy_port.to_string());
    for (k, p) in ports {
        text = text.replace(&format!("${{{k}}}"), &p.to_string());
    }
    text
}

/// The lines `demo` prints once the proxy listens on `addr`.
pub fn instructions(addr: SocketAddr) -> Vec<String> {
    let base = format!("http://{addr}");
    vec![
        "# header routing: end-user jason gets reviews v2".to_string(),
        format!("curl -s -H 'Host: reviews' -H 'end-user: jason' {base}/reviews/1"),
        "# weighted split: 80% reviews v1, 20% v3".to_string(),
        format!("for i in $(seq 20); do curl -s -H 'Host: reviews' {base}/reviews/1; done | sort | uniq -c"),
        "# fault injection: end-user tester gets 503 from ratings (flag FI in the access log)".to_string(),
        format!("curl -s -i -H 'Host: ratings' -H 'end-user: tester' {base}/ratings/1"),
        "# a host outside the registry (REGISTRY_ONLY): 502, Istio's BlackHoleCluster".to_string(),
        format!("curl -s -i -H 'Host: unknown.example' {base}/"),
    ]
}
