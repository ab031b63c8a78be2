//! Closing idle connections near the connection cap, oldest idle first.
//!
//! Each worker keeps its HTTP connections' [`Activity`] in a thread-local registry (a
//! worker's connections never leave its thread: no lock, no shared cache line per
//! connection). Past the pressure point ([`super::downstream`]) every worker's closer
//! wakes, picks its connections with no request in flight, oldest idle first, and tells
//! as many to close as it can claim of the global excess. Connections are spread over
//! the workers by `SO_REUSEPORT`, so each worker's oldest are close to the oldest overall
//! (with one worker, exactly the oldest). The scan is O(connections of the worker), runs
//! only under pressure, and at most once per [`SCAN_GAP`] per worker.

use super::downstream::Downstream;
use super::limits::Activity;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection is closed to make room only once idle this long: one that was just
/// accepted, or just got a response, is likely about to send a request, and HTTP/1.1
/// cannot tell an idle client it is closing (its next request would race the close).
pub const MIN_IDLE: Duration = Duration::from_secs(1);

/// How often a worker looks again while the count stays past the pressure point.
pub const RECHECK: Duration = Duration::from_millis(250);

/// The shortest time between two scans of a worker's connections.
pub const SCAN_GAP: Duration = Duration::from_millis(10);

/// The HTTP connections of one worker thread.
#[derive(Default)]
struct Registry {
    /// Identifies the thread's registry (a registration dropped elsewhere leaves it).
    id: usize,
    entries: Vec<Option<Arc<Activity>>>,
    free: Vec<usize>,
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        ..Registry::default()
    });
}

/// A connection in its worker's registry until dropped.
pub struct Registration {
    registry: usize,
    index: usize,
    activity: Arc<Activity>,
    downstream: Arc<Downstream>,
}

/// Registers a connection served on this thread.
pub fn register(activity: &Arc<Activity>, downstream: &Arc<Downstream>) -> Registration {
    let (registry, index) = REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        let entry = Some(activity.clone());
        let index = match r.free.pop() {
            Some(i) => {
                r.entries[i] = entry;
                i
            }
            None => {
                r.entries.push(entry);
                r.entries.len() - 1
            }
        };
        (r.id, index)
    });
    Registration {
        registry,
        index,
        activity: activity.clone(),
        downstream: downstream.clone(),
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = REGISTRY.try_with(|r| {
            let mut r = r.borrow_mut();
            if r.id == self.registry && self.index < r.entries.len() {
                r.entries[self.index] = None;
                r.free.push(self.index);
            }
        });
        if self.activity.was_evicted() {
            self.downstream.closed_claimed();
        }
    }
}

/// The `k` oldest of `idle` (idle-since instants), oldest first.
pub fn oldest<T>(mut idle: Vec<(Instant, T)>, k: usize) -> Vec<(Instant, T)> {
    if idle.len() > k {
        if k == 0 {
            return Vec::new();
        }
        idle.select_nth_unstable_by_key(k - 1, |(t, _)| *t);
        idle.truncate(k);
    }
    idle.sort_unstable_by_key(|(t, _)| *t);
    idle
}

/// Tells up to the global excess of this worker's connections idle since before
/// `idle_before` to close, oldest idle first; the number told.
pub fn close_oldest_idle(downstream: &Downstream, idle_before: Instant) -> usize {
    let want = downstream.excess();
    if want == 0 {
        return 0;
    }
    let idle: Vec<(Instant, Arc<Activity>)> = REGISTRY.with(|r| {
        r.borrow()
            .entries
            .iter()
            .flatten()
            .filter_map(|a| a.idle_since().map(|t| (t, a.clone())))
            .filter(|(t, _)| *t < idle_before)
            .collect()
    });
    let mut told = 0;
    for (_, a) in oldest(idle, want) {
        if !downstream.claim_close() {
            break;
        }
        a.evict();
        told += 1;
    }
    told
}

/// A worker's closer: closes idle connections whenever the count passes the pressure
/// point (woken by the accepts past it), and looks again every [`RECHECK`] while it
/// stays past it (the connections were busy or idle for less than [`MIN_IDLE`]).
pub async fn closer(downstream: Arc<Downstream>) {
    loop {
        let woken = downstream.pressure.notified();
        tokio::pin!(woken);
        // Registered before looking, so an accept in between is not missed.
        woken.as_mut().enable();
        let now = Instant::now();
        close_oldest_idle(&downstream, now.checked_sub(MIN_IDLE).unwrap_or(now));
        if downstream.excess() > 0 {
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(RECHECK) => {}
            }
        } else {
            woken.await;
        }
        // Under a flood every accept wakes the closer: one scan per gap at most (what
        // arrives meanwhile is seen by the next scan).
        tokio::time::sleep(SCAN_GAP).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshproxy_config::compile::proxy_settings::Limits;

    #[test]
    fn the_oldest_are_chosen_oldest_first() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let idle = vec![
            (at(5), 'e'),
            (at(1), 'a'),
            (at(4), 'd'),
            (at(2), 'b'),
            (at(3), 'c'),
        ];
        let names = |v: Vec<(Instant, char)>| v.into_iter().map(|(_, c)| c).collect::<String>();
        assert_eq!(names(oldest(idle.clone(), 2)), "ab");
        assert_eq!(names(oldest(idle.clone(), 9)), "abcde");
        assert_eq!(names(oldest(idle, 0)), "");
    }

    #[test]
    fn only_idle_connections_past_the_excess_are_told_to_close() {
        let d = Arc::new(Downstream::new(Some(1 << 20)));
        let limits = Limits {
            // Pressure past 9.
            max_downstream_connections: Some(10),
            ..Limits::default()
        };
        d.apply(&limits, 1, 1);
        let conns: Vec<_> = (0..10)
            .map(|_| {
                let a = Arc::new(Activity::default());
                // Distinct idle-since instants, so "oldest" has one answer.
                let since = a.idle_since().expect("idle");
                while Instant::now() <= since {
                    std::hint::spin_loop();
                }
                let reg = register(&a, &d);
                (d.try_open().expect("under the cap"), a, reg)
            })
            .collect();
        // The two oldest are busy: the oldest idle one is the third.
        let _busy = [conns[0].1.start(), conns[1].1.start()];
        // Not idle long enough: none.
        let first = conns[0].1.idle_since();
        assert!(first.is_none());
        let third = conns[2].1.idle_since().expect("idle");
        assert_eq!(close_oldest_idle(&d, third), 0);
        let now = Instant::now();
        assert_eq!(close_oldest_idle(&d, now), 1);
        let evicted: Vec<bool> = conns.iter().map(|(_, a, _)| a.was_evicted()).collect();
        assert_eq!(evicted.iter().position(|e| *e), Some(2), "{evicted:?}");
        assert_eq!(evicted.iter().filter(|e| **e).count(), 1);
        // Nothing more while that one is closing.
        assert_eq!(close_oldest_idle(&d, now), 0);
        // Closed: its registration and slot go; the count is back at the pressure point.
        let mut conns = conns;
        drop(conns.remove(2));
        assert_eq!(d.excess(), 0);
        assert_eq!(close_oldest_idle(&d, now), 0);
    }
}
