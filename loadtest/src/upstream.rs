//! A fast benchmark upstream: answers every request with `200` and a fixed body (after
//! an optional delay), HTTP/1.1 keep-alive and h2c (prior knowledge) detected on one
//! port. `threads` threads each run a single-threaded tokio runtime with their own
//! `SO_REUSEPORT` listener on the same port, so the kernel spreads connections over them.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// Upstream settings.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Response body size in bytes.
    pub body_size: usize,
    /// Delay before answering.
    pub delay: Duration,
    /// Server threads.
    pub threads: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            body_size: 64,
            delay: Duration::ZERO,
            threads: 1,
        }
    }
}

/// Opens a non-blocking listening socket with `SO_REUSEPORT`.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// The fixed response body: `body_size` bytes of printable text.
pub fn body(size: usize) -> Bytes {
    let pattern = b"meshproxy-loadtest upstream ";
    Bytes::from(
        (0..size)
            .map(|i| {
                if (i + 1) % 64 == 0 {
                    b'\n'
                } else {
                    pattern[i % pattern.len()]
                }
            })
            .collect::<Vec<u8>>(),
    )
}

/// Binds, prints `listening ADDR` on stdout, and serves until the process is killed.
pub fn run(cfg: &UpstreamConfig) -> Result<(), String> {
    let first = bind(cfg.listen).map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = first
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let mut listeners = vec![first];
    for _ in 1..cfg.threads.max(1) {
        listeners.push(bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {addr}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    let body = body(cfg.body_size);
    let mut handles = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let (body, delay) = (body.clone(), cfg.delay);
        let h = std::thread::Builder::new()
            .name(format!("upstream-{i}"))
            .spawn(move || serve_thread(l, body, delay))
            .map_err(|e| format!("cannot start a server thread: {e}"))?;
        handles.push(h);
    }
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a server thread panicked".into()),
        }
    }
    Ok(())
}

fn serve_thread(l: std::net::TcpListener, body: Bytes, delay: Duration) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?;
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(_) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let body = body.clone();
                    async move {
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(body)))
                    }
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http2().max_concurrent_streams(1024);
                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn body_has_the_requested_size() {
        assert_eq!(super::body(0).len(), 0);
        assert_eq!(super::body(64).len(), 64);
        assert_eq!(super::body(100_000).len(), 100_000);
        assert!(super::body(200).iter().all(|b| b.is_ascii()));
    }
}
