//! The one way to a cluster's endpoint, for HTTP and TCP alike: resolve a DNS endpoint,
//! connect within the cluster's connect timeout (TCP with the DestinationRule's
//! keepalive, or a Unix socket), then originate TLS when the DestinationRule (or Istio's
//! auto mTLS) asks for it — what Envoy does through a cluster's transport socket.

use super::cluster_state::{ClusterState, EndpointState};
use super::connect::{connect, ConnectError};
use meshproxy_config::compile::cluster::{Cluster, EndpointAddress};
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connected upstream stream.
pub enum Stream {
    /// Plain TCP.
    Tcp(tokio::net::TcpStream),
    /// TLS originated by the proxy.
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
    /// A Unix domain socket endpoint.
    Unix(tokio::net::UnixStream),
}

/// Why no stream could be opened.
#[derive(Debug)]
pub struct ConnectFailure {
    /// The endpoint's name could not be resolved (Envoy's `DF` flag).
    pub dns: bool,
    /// What failed, for the local reply and the log.
    pub reason: String,
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

fn failed(reason: impl std::fmt::Display) -> ConnectFailure {
    ConnectFailure {
        dns: false,
        reason: reason.to_string(),
    }
}

/// Connects to `ep` and secures the stream as the cluster's TLS settings say. `alpn_h2`
/// offers `h2` in the TLS handshake (HTTP/2 upstreams); otherwise `http/1.1`.
pub async fn open(
    cluster: &Cluster,
    state: &ClusterState,
    ep: &EndpointState,
    alpn_h2: bool,
) -> Result<Stream, ConnectFailure> {
    let pool = &cluster.pool;
    let addr = match &ep.address {
        EndpointAddress::Socket(a) => *a,
        // LOGICAL_DNS (DNS_ROUND_ROBIN), or a DNS name of a state made without a resolver:
        // resolved as the connection opens.
        EndpointAddress::Dns(host, port) | EndpointAddress::LogicalDns(host, port) => {
            super::dns::resolve(host, *port)
                .await
                .map_err(|e| ConnectFailure {
                    dns: true,
                    reason: format!("DNS resolution failed: {e}"),
                })?
        }
        EndpointAddress::Unix(path) => {
            let connecting = tokio::net::UnixStream::connect(path);
            return match tokio::time::timeout(pool.connect_timeout, connecting).await {
                Ok(Ok(s)) => Ok(Stream::Unix(s)),
                Ok(Err(e)) => Err(failed(ConnectError::Io(e))),
                Err(_) => Err(failed(ConnectError::Timeout)),
            };
        }
    };
    let stream = connect(addr, pool.connect_timeout, pool.tcp_keepalive.as_ref())
        .await
        .map_err(failed)?;
    let mesh = state.mesh.get().and_then(|m| m.load_full());
    let plan = crate::tls::outbound::plan(cluster, &ep.labels, mesh.is_some());
    if matches!(plan, crate::tls::outbound::Plan::Plain) {
        return Ok(Stream::Tcp(stream));
    }
    match crate::tls::outbound::handshake(stream, plan, mesh, &state.file_tls, alpn_h2).await {
        Ok(s) => Ok(Stream::Tls(Box::new(s))),
        Err(e) => {
            tracing::warn!(cluster = %cluster.name, endpoint = %ep.name, error = %e, "upstream TLS failed");
            Err(failed(e))
        }
    }
}

/// Counts an open upstream connection on its endpoint (`/clusters`, least-request
/// balancing, the connection metrics) until dropped.
pub struct OpenConnection(Arc<EndpointState>);

impl OpenConnection {
    /// Counts one more open connection to `ep`.
    pub fn new(ep: &Arc<EndpointState>) -> Self {
        ep.connections.fetch_add(1, Ordering::Relaxed);
        ep.opened.fetch_add(1, Ordering::Relaxed);
        OpenConnection(ep.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
        self.0.closed.fetch_add(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
