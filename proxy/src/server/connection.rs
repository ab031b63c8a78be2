//! Accepting and serving downstream connections, with graceful drain: on a drain signal a
//! connection finishes its in-flight requests, HTTP/1.1 answers with `Connection: close`
//! and HTTP/2 sends GOAWAY, then it closes.

use super::Shared;
use crate::http::router::{self, ConnInfo};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Counts a live downstream connection.
struct Live(Arc<Shared>);

impl Live {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.connections.fetch_add(1, Ordering::AcqRel);
        Live(shared.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts on `listener` until `stop`, serving each connection until it ends or `drain`.
pub async fn accept_loop(
    listener: TcpListener,
    name: Arc<str>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    drain: watch::Receiver<bool>,
    kill: watch::Receiver<bool>,
) {
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(ConnInfo {
            listener: name.clone(),
            local: local.unwrap_or(peer),
            peer,
            scheme: "http",
            original_dst: None,
        });
        tokio::spawn(serve(
            stream,
            conn,
            shared.clone(),
            drain.clone(),
            kill.clone(),
        ));
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    conn: Arc<ConnInfo>,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
    mut kill: watch::Receiver<bool>,
) {
    let _live = Live::new(&shared);
    let svc_shared = shared.clone();
    let svc = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        let shared = svc_shared.clone();
        async move { Ok::<_, std::convert::Infallible>(router::handle(req, conn, shared).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(connection);
    if *drain.borrow() {
        connection.as_mut().graceful_shutdown();
    } else {
        tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = drain.wait_for(|d| *d) => connection.as_mut().graceful_shutdown(),
        }
    }
    tokio::select! {
        r = connection.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error while draining");
            }
        }
        // Past the drain timeout the connection is closed, requests in flight or not.
        _ = kill.wait_for(|k| *k) => tracing::debug!("connection closed at the drain timeout"),
    }
}
