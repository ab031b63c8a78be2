//! The listeners a server has bound, and how a new config changes them: a listener whose
//! name, address and protocol are unchanged keeps its sockets (no connection notices a
//! reload); a new one is bound before the config is swapped (a bind failure refuses the
//! config); a removed one stops accepting and drains its connections.

use super::listen;
use meshproxy_config::compile::listener::Listener;
use meshproxy_config::model::proxy::ListenerProtocol;
use std::io;
use std::net::{SocketAddr, TcpListener};
use tokio::sync::watch;

/// A bound listener.
pub struct Bound {
    /// Listener name.
    pub name: String,
    /// Address as configured (port may be 0).
    pub configured: SocketAddr,
    /// Address actually bound.
    pub local: SocketAddr,
    /// Protocol handling.
    pub protocol: ListenerProtocol,
    /// Stops its accept loops.
    pub stop: watch::Sender<bool>,
    /// Drains its connections.
    pub drain: watch::Sender<bool>,
    /// Closes its connections that are still open after the drain timeout.
    pub kill: watch::Sender<bool>,
    /// Duplicates of its sockets (one per worker), kept for handing over on upgrade.
    pub sockets: Vec<TcpListener>,
}

impl Bound {
    /// Stops accepting, drains this listener's connections, and closes those still open
    /// after `timeout`.
    pub fn retire(&self, timeout: std::time::Duration) {
        let _ = self.stop.send(true);
        let _ = self.drain.send(true);
        let kill = self.kill.clone();
        std::thread::spawn(move || {
            std::thread::sleep(timeout);
            let _ = kill.send(true);
        });
    }

    /// True when `l` describes this listener unchanged.
    pub fn same_as(&self, l: &Listener) -> bool {
        self.name == l.name && self.configured == l.address && self.protocol == l.protocol
    }
}

/// Sockets for a new listener, one per worker, not yet serving.
pub struct Fresh {
    /// The listener.
    pub bound: Bound,
    /// One socket per worker, to hand to the workers.
    pub per_worker: Vec<TcpListener>,
}

/// Binds `l` with one `SO_REUSEPORT` socket per worker, or adopts `inherited` sockets
/// passed by a previous process (binary upgrade).
pub fn bind(
    l: &Listener,
    workers: usize,
    inherited: Option<Vec<TcpListener>>,
) -> io::Result<Fresh> {
    let (local, per_worker) = match inherited {
        Some(mut sockets) if !sockets.is_empty() => {
            let local = sockets[0].local_addr()?;
            // More workers than inherited sockets: add sockets on the same port.
            while sockets.len() < workers {
                sockets.push(listen::bind(local)?);
            }
            (local, sockets)
        }
        _ => listen::bind_many(l.address, workers).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("listener {} on {}: {e}", l.name, l.address),
            )
        })?,
    };
    let dups = per_worker
        .iter()
        .map(|s| s.try_clone())
        .collect::<io::Result<Vec<_>>>()?;
    let (stop, _) = watch::channel(false);
    let (drain, _) = watch::channel(false);
    let (kill, _) = watch::channel(false);
    Ok(Fresh {
        bound: Bound {
            name: l.name.clone(),
            configured: l.address,
            local,
            protocol: l.protocol,
            stop,
            drain,
            kill,
            sockets: dups,
        },
        per_worker,
    })
}
