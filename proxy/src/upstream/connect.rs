//! Opening upstream connections: TCP with a connect timeout, `TCP_NODELAY` (Nagle adds
//! latency to every small request) and the DestinationRule's keepalive settings.

use meshproxy_config::compile::cluster::TcpKeepalive;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// The connect timeout elapsed.
    Timeout,
    /// The OS refused or failed the connection.
    Io(io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connection timeout"),
            ConnectError::Io(e) => write!(f, "connection failure: {e}"),
        }
    }
}

/// Connects to `addr` within `timeout`.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    keepalive: Option<&TcpKeepalive>,
) -> Result<TcpStream, ConnectError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(ConnectError::Io)?;
    socket.set_nodelay(true).map_err(ConnectError::Io)?;
    if let Some(k) = keepalive {
        let sock = socket2::SockRef::from(&socket);
        let mut ka = socket2::TcpKeepalive::new();
        if let Some(t) = k.time {
            ka = ka.with_time(t);
        }
        if let Some(i) = k.interval {
            ka = ka.with_interval(i);
        }
        if let Some(p) = k.probes {
            ka = ka.with_retries(p);
        }
        sock.set_tcp_keepalive(&ka).map_err(ConnectError::Io)?;
    }
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Err(_) => Err(ConnectError::Timeout),
        Ok(Err(e)) => Err(ConnectError::Io(e)),
        Ok(Ok(s)) => Ok(s),
    }
}
