//! gRPC deadlines: the proxy enforces the caller's `grpc-timeout` (capped by the route
//! `timeout`, as Istio configures Envoy's `grpc_timeout_header_max`) and ends an expired
//! call with a trailers-only `DEADLINE_EXCEEDED`, flag `UT`, recorded as
//! `response_code="200"`, `grpc_response_status="4"`. A raw h2 client sends the header
//! without enforcing it itself, so only the proxy can end the call.

mod binary;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// An h2c gRPC server: `/svc/Slow` answers after 3 s, anything else at once; each answer
/// is one empty message and `grpc-status: 0` in the trailers.
async fn grpc_upstream() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: http::Request<Incoming>| async move {
                    if req.uri().path() == "/svc/Slow" {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
                        .with_trailers(async move { Some(Ok(trailers)) });
                    let resp = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(body)
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// A unary call to `path` with `grpc-timeout` (if any) over h2c; (HTTP status,
/// `grpc-status` from the headers or trailers, elapsed).
async fn call(proxy: SocketAddr, path: &str, timeout: Option<&str>) -> (u16, String, Duration) {
    let tcp = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    // `:authority` names the service; the connection goes to the proxy.
    let mut req = http::Request::post(format!("http://echo{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(t) = timeout {
        req = req.header("grpc-timeout", t);
    }
    let req = req
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let started = Instant::now();
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let header = resp
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_string());
    let collected = resp.into_body().collect().await.expect("body");
    let trailer = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_string());
    (
        status,
        header.or(trailer).unwrap_or_default(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_ends_calls_past_their_grpc_timeout() {
    let up = grpc_upstream().await;
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: client, namespace: default}}
spec:
  admin: {{address: \"127.0.0.1:0\"}}
  listeners:
  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo}}
spec:
  hosts: [echo.default.svc.cluster.local]
  ports: [{{number: 80, name: grpc, protocol: GRPC}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo}}
spec:
  hosts: [echo]
  http:
  - match: [{{uri: {{prefix: /capped}}}}]
    rewrite: {{uri: /svc/Slow}}
    timeout: 200ms
    route: [{{destination: {{host: echo}}}}]
  - route: [{{destination: {{host: echo}}}}]
",
        port = up.port()
    );
    let p = binary::run(&yaml, &["--access-log", "on"]);
    let proxy = p.addr("outbound");

    // In time: OK from the upstream's trailers.
    let (status, grpc, _) = call(proxy, "/svc/Fast", Some("5S")).await;
    assert_eq!((status, grpc.as_str()), (200, "0"));
    // Past the caller's deadline: the proxy answers DEADLINE_EXCEEDED long before the
    // upstream would have.
    let (status, grpc, took) = call(proxy, "/svc/Slow", Some("300m")).await;
    assert_eq!((status, grpc.as_str()), (200, "4"));
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The route timeout caps a longer grpc-timeout.
    let (status, grpc, took) = call(proxy, "/capped", Some("10S")).await;
    assert_eq!((status, grpc.as_str()), (200, "4"));
    assert!(took < Duration::from_secs(2), "{took:?}");
    // A malformed grpc-timeout is ignored (no deadline): the slow call completes.
    let (status, grpc, took) = call(proxy, "/svc/Slow", Some("soon")).await;
    assert_eq!((status, grpc.as_str()), (200, "0"));
    assert!(took >= Duration::from_secs(3), "{took:?}");

    let admin = p.addr("admin");
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let resp = client
        .get(format!("http://{admin}/metrics").parse().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let expired: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .filter(|l| l.contains("grpc_response_status=\"4\""))
        .collect();
    assert_eq!(expired.len(), 1, "{text}");
    assert!(
        expired[0].contains("response_code=\"200\""),
        "{}",
        expired[0]
    );
    assert!(
        expired[0].contains("response_flags=\"UT\""),
        "{}",
        expired[0]
    );
    assert!(
        expired[0].contains("request_protocol=\"grpc\""),
        "{}",
        expired[0]
    );
    assert!(expired[0].ends_with(" 2"), "{}", expired[0]);
}
