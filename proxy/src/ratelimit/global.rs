//! Global counting: every proxy that loads the same policy shares one count in Redis.
//!
//! The algorithm is the Envoy rate-limit service's (`envoyproxy/ratelimit`,
//! `src/redis/fixed_cache_impl.go`): a fixed window per unit, the key naming the rule, the
//! client's distinct values and the window's start (`now / unit * unit`); one pipelined
//! round trip of `INCRBY key 1` + `EXPIRE key unit` per key; over the limit when the count
//! after the increment is above `requests`. Like its local over-limit cache, a key seen
//! over its limit is refused here until its window ends, without a round trip.
//!
//! Redis down or slow (Envoy's `failure_mode_deny: false`, the default): the request is
//! allowed, the error counted; the first error of an outage is logged, and while it lasts
//! requests do not wait for Redis: a background task on the rate-limit thread pings it
//! every 250ms and puts it back in use once it answers.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshproxy_config::compile::rate_limit::RedisSettings;

/// How often an unreachable Redis is tried again.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// A Redis the proxy counts in, kept across reloads while its settings are unchanged.
pub struct Backend {
    /// Address and timeout.
    pub settings: RedisSettings,
    conn: ConnectionManager,
    /// Not answering: requests take the failure mode at once.
    down: AtomicBool,
    /// The outage was logged.
    logged: AtomicBool,
}

/// Why a round trip gave no counts.
#[derive(Debug)]
pub struct BackendError;

impl Backend {
    /// Connects (lazily) to `settings.address` from a thread of its own, whose runtime
    /// also keeps the connection and probes Redis while it is down.
    pub fn start(settings: &RedisSettings) -> Result<Arc<Backend>, String> {
        let client = redis::Client::open(format!("redis://{}/", settings.address))
            .map_err(|e| format!("redis address {}: {e}", settings.address))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("rate-limit runtime: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_secs(1)));
        // The manager spawns its tasks (and its reconnections) on the runtime entered here.
        let conn = {
            let _entered = rt.enter();
            ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|e| format!("redis {}: {e}", settings.address))?
        };
        let backend = Arc::new(Backend {
            settings: settings.clone(),
            conn,
            down: AtomicBool::new(true),
            logged: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&backend);
        std::thread::Builder::new()
            .name("ratelimit-redis".into())
            .spawn(move || rt.block_on(probe(weak)))
            .map_err(|e| format!("rate-limit thread: {e}"))?;
        Ok(backend)
    }

    /// Adds one to each key and returns the counts after it, in one pipelined round trip
    /// bounded by the timeout.
    pub async fn increment<'k>(
        &self,
        keys: impl ExactSizeIterator<Item = (&'k [u8], u64)>,
    ) -> Result<Vec<u64>, BackendError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(BackendError);
        }
        let n = keys.len();
        let mut pipe = redis::pipe();
        for (key, ttl) in keys {
            pipe.cmd("INCRBY").arg(key).arg(1);
            pipe.cmd("EXPIRE").arg(key).arg(ttl).ignore();
        }
        let mut conn = self.conn.clone();
        let result = tokio::time::timeout(
            self.settings.timeout,
            pipe.query_async::<Vec<u64>>(&mut conn),
        )
        .await;
        match result {
            Ok(Ok(counts)) if counts.len() == n => Ok(counts),
            Ok(Ok(_)) => Err(self.failed("unexpected reply")),
            Ok(Err(e)) => Err(self.failed(&e.to_string())),
            Err(_) => Err(self.failed("timed out")),
        }
    }

    /// Marks an outage (a timeout is one: a slow Redis must not hold every request up to
    /// the timeout), logged once until Redis answers again.
    fn failed(&self, why: &str) -> BackendError {
        self.down.store(true, Ordering::Relaxed);
        if !self.logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                redis = %self.settings.address,
                error = why,
                "rate-limit Redis unavailable: Global limits take the failure mode until it answers"
            );
        }
        BackendError
    }
}

/// Pings Redis while it is marked down (from the start, to connect), until the backend
/// is dropped.
async fn probe(backend: Weak<Backend>) {
    loop {
        let Some(b) = backend.upgrade() else {
            return;
        };
        if b.down.load(Ordering::Relaxed) {
            let mut conn = b.conn.clone();
            let ping = redis::cmd("PING");
            let ok = matches!(
                tokio::time::timeout(
                    Duration::from_secs(1),
                    ping.query_async::<String>(&mut conn)
                )
                .await,
                Ok(Ok(_))
            );
            if ok {
                b.down.store(false, Ordering::Relaxed);
                if b.logged.swap(false, Ordering::Relaxed) {
                    tracing::info!(redis = %b.settings.address, "rate-limit Redis answers again");
                }
            } else if !b.logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    redis = %b.settings.address,
                    "rate-limit Redis unreachable: Global limits take the failure mode until it answers"
                );
            }
        }
        drop(b);
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// The fixed window `now` falls in, for a unit of `unit_secs`: its start (Unix seconds)
/// and the seconds left in it.
pub fn window(unit_secs: u64) -> (u64, u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let unit = unit_secs.max(1);
    let start = now / unit * unit;
    (start, start + unit - now)
}

/// The Redis key of a rule's count for one client value and window (the rate-limit
/// service's `prefix + domain + descriptor entries + window start`).
pub fn key(policy: &str, rule: &str, distinct: &[u8], window_start: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(24 + policy.len() + rule.len() + distinct.len());
    k.extend_from_slice(b"meshproxy_rl:");
    k.extend_from_slice(policy.as_bytes());
    k.push(b':');
    k.extend_from_slice(rule.as_bytes());
    k.push(b':');
    k.extend_from_slice(distinct);
    k.push(b':');
    k.extend_from_slice(itoa::Buffer::new().format(window_start).as_bytes());
    k
}
