//! End to end: 1 GiB request and response bodies stream through the `meshproxy` binary
//! with backpressure, while its resident memory stays bounded.

mod binary;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

const GIB: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;

type Chunks = StreamBody<futures_stream::Chunks>;

mod futures_stream {
    use bytes::Bytes;
    use hyper::body::Frame;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// `remaining` bytes of zeros in fixed chunks, produced on demand.
    pub struct Chunks {
        pub remaining: u64,
        pub chunk: Bytes,
    }

    impl futures_core::Stream for Chunks {
        type Item = Result<Frame<Bytes>, std::convert::Infallible>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            if self.remaining == 0 {
                return Poll::Ready(None);
            }
            let n = (self.chunk.len() as u64).min(self.remaining) as usize;
            self.remaining -= n as u64;
            Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
        }
    }
}

fn zeros(n: u64) -> Chunks {
    StreamBody::new(futures_stream::Chunks {
        remaining: n,
        chunk: Bytes::from(vec![0u8; CHUNK]),
    })
}

async fn count(mut body: Incoming) -> u64 {
    let mut n = 0;
    while let Some(f) = body.frame().await {
        if let Some(d) = f.expect("body frame").data_ref() {
            n += d.len() as u64;
        }
    }
    n
}

/// Upstream: `POST /upload` counts the body; `GET /download` streams 1 GiB.
async fn upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let resp: Response<
                        http_body_util::Either<Chunks, http_body_util::Full<Bytes>>,
                    > = if req.uri().path() == "/download" {
                        Response::new(http_body_util::Either::Left(zeros(GIB)))
                    } else {
                        let n = count(req.into_body()).await;
                        Response::new(http_body_util::Either::Right(http_body_util::Full::new(
                            Bytes::from(n.to_string()),
                        )))
                    };
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_each_way_with_bounded_memory() {
    let port = upstream().await;
    let yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1
kind: Proxy
metadata: {{name: stream}}
spec:
  admin: {{address: \"127.0.0.1:0\"}}
  listeners:
  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: big}}
spec:
  hosts: [big.default.svc.cluster.local]
  ports: [{{number: 80, name: http}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
"
    );
    let proxy = binary::run(&yaml, &["--workers", "1", "--access-log", "off"]);
    let addr = proxy.addr("outbound");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);

    let up = Request::post("/upload")
        .header("host", "big")
        .body(zeros(GIB))
        .unwrap();
    let resp = sender.send_request(up).await.unwrap();
    assert_eq!(resp.status(), 200);
    let echoed = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed, GIB.to_string(), "the upstream received every byte");

    sender.ready().await.unwrap();
    let down = Request::get("/download")
        .header("host", "big")
        .body(zeros(0))
        .unwrap();
    let resp = sender.send_request(down).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(count(resp.into_body()).await, GIB);

    let peak = proxy.peak_rss();
    assert!(peak > 0, "could not read the proxy's RSS");
    assert!(
        peak < 64 * 1024 * 1024,
        "peak RSS {} MiB",
        peak / (1024 * 1024)
    );
    let _ = Frame::<Bytes>::data(Bytes::new());
}
