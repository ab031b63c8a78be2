//! Remote key sets, kept off the request path: one background task per `jwksUri` (on
//! one `meshproxy-jwks` thread) fetches the set, keeps it in an `ArcSwapOption` the data
//! path loads, and fetches it again on istiod's schedule (`jwks_resolver.go`): every
//! refresh interval (20 minutes unless `Proxy.spec.jwksRefreshInterval` says otherwise)
//! after a success; after a failure in 1 minute (or the refresh interval if shorter),
//! doubling up to 60 minutes, the last keys kept meanwhile. Until a first fetch succeeds
//! the rule's tokens are refused ("Jwks remote fetch is failed"), as istiod's fallback
//! key set makes them. A reload keeps the fetched set of a URL it still names (the new
//! config's target replaces the old one); the task ends once no config in force names it.

use super::fetch::{self, Target};
use super::keys::KeySet;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// istiod's first retry after a failed fetch.
const FIRST_RETRY: Duration = Duration::from_secs(60);
/// istiod's longest wait between failed fetches.
const MAX_RETRY: Duration = Duration::from_secs(3600);

/// A remote key set and where it is fetched from.
pub struct RemoteKeys {
    /// The URL.
    pub uri: String,
    /// The last set fetched, if any.
    pub keys: ArcSwapOption<KeySet>,
    /// Where to fetch it (replaced when a reload changes the registry or trust).
    target: ArcSwap<Target>,
    /// Successful fetches so far.
    pub fetches: AtomicU64,
    /// Failed fetches so far.
    pub failures: AtomicU64,
}

/// The remote set for `target`'s URL: the one the config in force uses (`previous`),
/// its target replaced, or a new one whose fetch task starts now.
pub fn remote<'a>(
    target: Target,
    mut previous: impl Iterator<Item = &'a Arc<RemoteKeys>>,
) -> Arc<RemoteKeys> {
    if let Some(rk) = previous.find(|r| r.uri == target.remote.uri) {
        rk.target.store(Arc::new(target));
        return rk.clone();
    }
    let rk = Arc::new(RemoteKeys {
        uri: target.remote.uri.clone(),
        keys: ArcSwapOption::empty(),
        target: ArcSwap::from_pointee(target),
        fetches: AtomicU64::new(0),
        failures: AtomicU64::new(0),
    });
    match runtime() {
        Some(h) => {
            h.spawn(run(Arc::downgrade(&rk)));
        }
        None => tracing::error!("no JWKS fetch thread: remote key sets are never fetched"),
    }
    rk
}

/// The fetch thread's runtime, started on first use.
fn runtime() -> Option<&'static tokio::runtime::Handle> {
    static HANDLE: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| tracing::error!(error = %e, "JWKS fetch runtime"))
                .ok()?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name("meshproxy-jwks".into())
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .map_err(|e| tracing::error!(error = %e, "JWKS fetch thread"))
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

async fn run(weak: Weak<RemoteKeys>) {
    let mut retry: Option<Duration> = None;
    loop {
        let Some(target) = weak.upgrade().map(|rk| rk.target.load_full()) else {
            return;
        };
        let result = fetch::fetch(&target).await;
        let Some(rk) = weak.upgrade() else {
            return;
        };
        let uri = &target.remote.uri;
        let refresh = target.remote.refresh;
        let wait = match result {
            Ok(set) => {
                tracing::info!(%uri, keys = set.len(), "JWKS fetched");
                rk.keys.store(Some(Arc::new(set)));
                rk.fetches.fetch_add(1, Ordering::Relaxed);
                retry = None;
                refresh
            }
            Err(e) => {
                let next = retry.map_or(FIRST_RETRY.min(refresh), |r| (r * 2).min(MAX_RETRY));
                retry = Some(next);
                rk.failures.fetch_add(1, Ordering::Relaxed);
                let kept = rk.keys.load().is_some();
                tracing::warn!(%uri, error = %e, kept_last_keys = kept, retry_in = ?next, "JWKS fetch failed");
                next
            }
        };
        drop(rk);
        tokio::time::sleep(wait).await;
    }
}
