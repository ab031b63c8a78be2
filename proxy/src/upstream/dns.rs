//! Per-connection name resolution through the system resolver: `resolution:
//! DNS_ROUND_ROBIN` endpoints (Envoy's LOGICAL_DNS) and pass-through destinations named
//! by a request's authority. Cached and re-resolved when stale (Envoy's
//! `dns_refresh_rate` default: 5s); successive lookups rotate through the addresses.
//! `resolution: DNS` names are resolved in the background instead (`dns_refresh.rs`).

use dashmap::DashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long a resolution is used before it is refreshed.
pub const REFRESH: Duration = Duration::from_secs(5);

struct Entry {
    at: Instant,
    addrs: Arc<Vec<IpAddr>>,
    next: AtomicUsize,
}

fn cache() -> &'static DashMap<String, Entry> {
    static CACHE: OnceLock<DashMap<String, Entry>> = OnceLock::new();
    CACHE.get_or_init(DashMap::new)
}

/// Resolves `host:port` to one address.
pub async fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    if let Some(e) = cache().get(host) {
        if e.at.elapsed() < REFRESH && !e.addrs.is_empty() {
            let i = e.next.fetch_add(1, Ordering::Relaxed) % e.addrs.len();
            return Ok(SocketAddr::new(e.addrs[i], port));
        }
    }
    let found: Vec<IpAddr> = tokio::net::lookup_host((host, port))
        .await?
        .map(|a| a.ip())
        .collect();
    if found.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host}: no addresses"),
        ));
    }
    let first = found[0];
    cache().insert(
        host.to_string(),
        Entry {
            at: Instant::now(),
            addrs: Arc::new(found),
            next: AtomicUsize::new(1),
        },
    );
    Ok(SocketAddr::new(first, port))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn resolves_localhost() {
        let a = super::resolve("localhost", 8080).await.unwrap();
        assert!(a.ip().is_loopback());
        assert_eq!(a.port(), 8080);
    }
}
