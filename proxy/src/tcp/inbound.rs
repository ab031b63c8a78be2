//! INBOUND TCP listeners: the connection (after the PeerAuthentication step) is authorized
//! as a TCP connection and spliced to the local application. Envoy's RBAC network
//! filter closes a denied connection; Istio's rules for HTTP-only attributes on TCP
//! are applied by the compiled policy (`http: None`).

use crate::conn_info::ConnInfo;
use crate::flags::Flags;
use crate::runtime::DataPath;
use meshproxy_config::compile::authz::Decision;
use meshproxy_config::compile::listener::ListenerRole;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// How long connecting to the local application may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Authorizes `stream` and splices it to the application the listener forwards to (the
/// original destination port when intercepted).
pub async fn serve<S>(
    stream: S,
    conn: Arc<ConnInfo>,
    shared: Arc<DataPath>,
    mut kill: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let active = shared.active.load_full();
    let Some(listener) = active
        .snapshot
        .listeners
        .iter()
        .find(|l| *l.name == *conn.listener)
    else {
        return;
    };
    let ListenerRole::Inbound { forward_to } = &listener.role else {
        return;
    };
    let port = conn
        .original_dst
        .map(|d| d.port())
        .unwrap_or(forward_to.port());
    let authz = &active.snapshot.authz;
    if !authz.is_empty() {
        let request = conn.authz_request(port);
        if let (Decision::Deny { policy }, _) = authz.evaluate(&request) {
            tracing::debug!(%policy, peer = %conn.peer, "TCP connection denied by AuthorizationPolicy");
            return;
        }
    }
    let session = super::session::Session::inbound(&shared, &active, &conn);
    let target = active.snapshot.proxy.inbound_target(*forward_to, port);
    let up =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%target, error = %e, "local application refused the connection");
                session.closed(Flags::UPSTREAM_CONNECTION_FAILURE, 0, 0);
                return;
            }
            Err(_) => {
                tracing::debug!(%target, "connecting to the local application timed out");
                session.closed(Flags::UPSTREAM_CONNECTION_FAILURE, 0, 0);
                return;
            }
        };
    let _ = up.set_nodelay(true);
    let mut session = session;
    session.upstream(&target.to_string());
    let (received, sent, flags) = crate::pipe::splice(stream, up, &[], &mut kill).await;
    session.closed(flags, received, sent);
}
