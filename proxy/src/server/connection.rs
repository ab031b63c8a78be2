//! Accepting downstream connections: a listener's slot and the process's (the connection
//! cap) before each is served ([`super::dispatch`]), accept failures backed off, and the
//! accept queue taken over before a stopping listener's socket closes. [`Live`] counts
//! each connection from its accept, so a drain never ends with one unserved.

use super::http_conn::Serving;
use super::limits;
use super::Shared;
use crate::conn_info::ConnInfo;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long an accept loop waits after a failed `accept` (descriptors exhausted): the
/// failure repeats until one is freed, so retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub use crate::runtime::Live;

/// What a listener's accepted connections are served with.
struct Listener {
    name: Arc<str>,
    local: Option<std::net::SocketAddr>,
    serving: Serving,
}

impl Listener {
    /// Serves an accepted connection on a task of its own; its `ConnInfo` holds `permit`
    /// (its slots) as long as the connection, or a tunnel it became, is open.
    fn start<P: Send + Sync + 'static>(
        &self,
        stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        permit: P,
    ) {
        let _ = stream.set_nodelay(true);
        let local = self.local.unwrap_or(peer);
        let original_dst = crate::intercept::original_dst(&stream, local);
        let conn = ConnInfo {
            listener: self.name.clone(),
            local,
            peer,
            peer_ip: crate::policy::headers::ip_value(peer.ip()),
            scheme: "http",
            original_dst,
            kill: self.serving.kill.clone(),
            peer_identity: None,
            peer_labels: None,
            xfcc: None,
            slots: Some(crate::conn_info::Slots::new(permit)),
        };
        // Counted from the accept, not from when the task first runs: a drain that sees
        // no connections must not exit with an accepted one still waiting to be served.
        let live = Live::new(&self.serving.shared.data);
        let serving = self.serving.clone();
        tokio::spawn(super::dispatch::serve_accepted(stream, live, conn, serving));
    }

    /// Connections the kernel already completed are in a stopping listener's accept
    /// queue: closing the socket would reset them. They are taken and served (draining)
    /// before it is let go, past the caps.
    fn take_accept_queue(&self, listener: TcpListener, conns: &Arc<limits::ListenerConns>) {
        let Ok(std_listener) = listener.into_std() else {
            return;
        };
        if std_listener.set_nonblocking(true).is_err() {
            return;
        }
        while let Ok((s, peer)) = std_listener.accept() {
            if s.set_nonblocking(true).is_err() {
                continue;
            }
            if let Ok(stream) = tokio::net::TcpStream::from_std(s) {
                let slots = (conns.force(), self.serving.shared.downstream.force());
                self.start(stream, peer, slots);
            }
        }
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
    conns: Arc<limits::ListenerConns>,
) {
    let accepted_on = Listener {
        name: name.clone(),
        local: listener.local_addr().ok(),
        serving: Serving {
            shared: shared.clone(),
            drain,
            kill,
        },
    };
    let start = |stream, peer, permit| accepted_on.start(stream, peer, permit);
    // Connections refused at the global cap, counted for this listener.
    let refused = shared.downstream.refused_counter(&name);
    // Failed accepts in a row: logged at the first and every 100th (20 a second while
    // descriptors are exhausted would flood the log).
    let mut failing = 0u64;
    loop {
        // `maxConnectionsPerListener`: a slot is reserved before accepting; at the cap the
        // loop waits for a connection to close and new ones wait in the kernel's backlog.
        let max = shared
            .active
            .load()
            .snapshot
            .proxy
            .limits
            .max_connections_per_listener;
        let Some(permit) = conns.try_acquire(max) else {
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                _ = conns.freed() => continue,
            }
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        if accepted.is_ok() {
            failing = 0;
        }
        match accepted {
            // The global cap (Envoy's `downstream_connections` monitor): past it the
            // connection is closed at once, so the client can go elsewhere now.
            Ok((stream, peer)) => match shared.downstream.try_open() {
                Some(slot) => start(stream, peer, (permit, slot)),
                None => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(listener = %name, %peer, "connection refused: at the downstream connection cap");
                    drop(stream);
                }
            },
            Err(e) => {
                // EMFILE and friends: back off instead of spinning (the connection stays
                // in the backlog until a descriptor is free).
                shared.downstream.accept_failed();
                if failing.is_multiple_of(100) {
                    tracing::warn!(listener = %name, error = %e, in_a_row = failing + 1, "accept failed");
                }
                failing += 1;
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    accepted_on.take_accept_queue(listener, &conns);
}
