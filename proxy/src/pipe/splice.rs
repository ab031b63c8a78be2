//! Splicing two streams together (TCP proxying, CONNECT and upgrade tunnels): bytes
//! copied both ways until both directions end, with byte counts and which side broke it.

use super::counted::Counted;
use crate::flags::Flags;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// Writes `replay` upstream, then copies both ways until both sides are done (a half
/// close is passed on, as Envoy's tcp_proxy does), or `kill` fires. Returns the bytes
/// received from the client (with `replay`), the bytes sent to it, and the flags saying
/// which side broke the stream, if one did.
pub async fn splice<D, U>(
    down: D,
    up: U,
    replay: &[u8],
    kill: &mut watch::Receiver<bool>,
) -> (u64, u64, Flags)
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut down = Counted::new(down);
    let mut up = Counted::new(up);
    let mut flags = Flags::NONE;
    if !replay.is_empty() && up.write_all(replay).await.is_err() {
        flags.insert(Flags::UPSTREAM_CONNECTION_TERMINATION);
        return (replay.len() as u64, 0, flags);
    }
    let copied = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut down, &mut up) => r.map(|_| ()),
        _ = kill.wait_for(|k| *k) => {
            tracing::debug!("TCP connection closed at the drain timeout");
            Ok(())
        }
    };
    if let Err(e) = copied {
        tracing::debug!(error = %e, "TCP connection ended with an error");
        if down.failed {
            flags.insert(Flags::DOWNSTREAM_CONNECTION_TERMINATION);
        }
        if up.failed {
            flags.insert(Flags::UPSTREAM_CONNECTION_TERMINATION);
        }
    }
    (down.read + replay.len() as u64, up.read, flags)
}
