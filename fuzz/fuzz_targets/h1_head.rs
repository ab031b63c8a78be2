//! Arbitrary bytes as one HTTP/1 client connection to a real hyper `http1` server (the
//! stack meshproxy serves HTTP/1.1 with) over `tokio::io::duplex`, twice: bare, and behind
//! meshproxy's `H1Guard` (the strict RFC 9112 request-framing check the proxy puts in
//! front of hyper), told about each response as the proxy's connection service does.
//! The service reads the whole body and answers 200, or `101` to an `Upgrade` request
//! (and `200` to `CONNECT`), then drains the upgraded tunnel. Request heads, chunked
//! bodies, pipelining, smuggling-style framing and tunnels all go through.
//!
//! The server must not panic, must not hang once the client has sent everything and
//! closed its side (time is paused, so a stuck connection trips the bound at once instead
//! of after a real wait), and whatever it writes back must be HTTP/1 responses.
#![no_main]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use meshproxy::server::h1_guard::{H1Guard, Upgrades};
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Virtual time a connection may take in all (nothing in it sleeps: reaching this is a hang).
const BOUND: Duration = Duration::from_secs(60);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
    })
}

async fn handle(mut req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
    let connect = req.method() == http::Method::CONNECT;
    let upgrade = req.headers().get(http::header::UPGRADE).cloned();
    if connect || upgrade.is_some() {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut sink = Vec::new();
                let _ = io.read_to_end(&mut sink).await;
            }
        });
        let mut resp = http::Response::new(Full::new(Bytes::new()));
        if let (false, Some(proto)) = (connect, upgrade) {
            *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
            resp.headers_mut().insert(http::header::UPGRADE, proto);
            resp.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("upgrade"),
            );
        }
        return resp;
    }
    let method = req.method().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        // A malformed body (bad chunk size, early EOF, the guard's refusal) ends the
        // request, not the server.
        Err(_) => 0,
    };
    http::Response::new(Full::new(Bytes::from(format!("{method} {body}\n"))))
}

/// Serves `io` until the connection ends; `upgrades` is told about each response.
async fn serve<I>(io: I, upgrades: Option<Arc<Upgrades>>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: http::Request<Incoming>| {
        let guard = upgrades.as_ref().map(|u| {
            let connect = req.method() == http::Method::CONNECT;
            (u.clone(), u.request(), connect)
        });
        async move {
            let resp = handle(req).await;
            if let Some((u, index, connect)) = guard {
                u.responded(index, resp.status(), connect);
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

/// One connection carrying `data`: what the server wrote back.
fn connection(data: &[u8], guarded: bool) -> Vec<u8> {
    runtime().block_on(async {
        let (client, server) = tokio::io::duplex(16 * 1024);
        let server = if guarded {
            let (io, upgrades) = H1Guard::new(server);
            tokio::spawn(serve(io, Some(upgrades)))
        } else {
            tokio::spawn(serve(server, None))
        };
        let (mut rd, mut wr) = tokio::io::split(client);
        let send = async move {
            // The server may close first (a parse error): a failed write is expected then.
            let _ = wr.write_all(data).await;
            let _ = wr.shutdown().await;
        };
        let recv = async move {
            let mut out = Vec::new();
            let _ = rd.read_to_end(&mut out).await;
            out
        };
        let run = async {
            let ((), out) = tokio::join!(send, recv);
            (out, server.await)
        };
        let (out, done) = tokio::time::timeout(BOUND, run).await.unwrap_or_else(|_| {
            panic!(
                "the HTTP/1 server (guarded: {guarded}) hung on {} input bytes",
                data.len()
            )
        });
        if let Err(e) = done {
            // A panic inside the connection task (hyper, the guard or the service).
            std::panic::resume_unwind(e.into_panic());
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    for guarded in [false, true] {
        let out = connection(data, guarded);
        assert!(
            out.is_empty() || out.starts_with(b"HTTP/1."),
            "guarded: {guarded}: not an HTTP/1 response: {:?}",
            String::from_utf8_lossy(&out[..out.len().min(64)])
        );
    }
});
