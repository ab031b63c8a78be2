//! Finished spans leave the request path through a per-worker batch (no lock, no
//! channel operation per span) that is handed to the exporter thread when it holds
//! [`BATCH_SPANS`] spans or [`FLUSH_INTERVAL`] after its first; the hand-over queue is
//! bounded, and what does not fit is dropped and counted, never waited for.

use super::export;
use super::span::Span;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A worker's batch is handed over at this many spans.
pub const BATCH_SPANS: usize = 64;
/// ... or this long after its first span (Envoy's tracers flush every 5 s; a shorter
/// interval shows a trace sooner at the same cost per span).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Batches waiting for the exporter (up to 64 × 256 spans).
pub const QUEUE_BATCHES: usize = 256;

/// Span counters, shown on `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Spans a collector accepted.
    pub exported: AtomicU64,
    /// Spans dropped: the queue was full, or the collector failed or refused them.
    pub dropped: AtomicU64,
}

/// Where this process's spans go.
pub struct Tracer {
    id: u64,
    tx: OnceLock<SyncSender<Vec<Span>>>,
    /// Counters.
    pub counters: Arc<Counters>,
}

static NEXT_TRACER: AtomicU64 = AtomicU64::new(1);

impl Default for Tracer {
    fn default() -> Self {
        Tracer {
            id: NEXT_TRACER.fetch_add(1, Ordering::Relaxed),
            tx: OnceLock::new(),
            counters: Arc::new(Counters::default()),
        }
    }
}

struct Batch {
    tracer: u64,
    tx: Option<SyncSender<Vec<Span>>>,
    counters: Option<Arc<Counters>>,
    spans: Vec<Span>,
}

impl Batch {
    fn hand_over(&mut self) {
        if self.spans.is_empty() {
            return;
        }
        let spans = std::mem::take(&mut self.spans);
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(s) | TrySendError::Disconnected(s)) = tx.try_send(spans) {
            if let Some(c) = &self.counters {
                c.dropped.fetch_add(s.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.hand_over();
    }
}

thread_local! {
    static BATCH: RefCell<Batch> = const {
        RefCell::new(Batch { tracer: 0, tx: None, counters: None, spans: Vec::new() })
    };
}

impl Tracer {
    /// The exporter's queue, its thread started on the first span.
    fn sender(&self) -> &SyncSender<Vec<Span>> {
        self.tx.get_or_init(|| {
            let (tx, rx) = sync_channel(QUEUE_BATCHES);
            let counters = self.counters.clone();
            let spawned = std::thread::Builder::new()
                .name("meshproxy-trace".into())
                .spawn(move || export::run(rx, counters));
            if let Err(e) = spawned {
                tracing::error!("cannot start the span exporter: {e}");
            }
            tx
        })
    }

    /// Adds a finished span to this thread's batch.
    pub fn record(&self, span: Box<Span>) {
        let tx = self.sender();
        let queued = BATCH.try_with(|b| {
            let Ok(mut b) = b.try_borrow_mut() else {
                return Err(());
            };
            if b.tracer != self.id {
                b.hand_over();
                b.tracer = self.id;
                b.tx = Some(tx.clone());
                b.counters = Some(self.counters.clone());
            }
            let first = b.spans.is_empty();
            b.spans.push(*span);
            if b.spans.len() >= BATCH_SPANS {
                b.hand_over();
            } else if first {
                self.flush_later(&mut b);
            }
            Ok(())
        });
        if let Ok(Err(())) | Err(_) = queued {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The batch's deadline: on a worker, a timer task; elsewhere, at once.
    fn flush_later(&self, b: &mut Batch) {
        let Ok(h) = tokio::runtime::Handle::try_current() else {
            b.hand_over();
            return;
        };
        let id = self.id;
        h.spawn(async move {
            tokio::time::sleep(FLUSH_INTERVAL).await;
            let _ = BATCH.try_with(|b| {
                if let Ok(mut b) = b.try_borrow_mut() {
                    if b.tracer == id {
                        b.hand_over();
                    }
                }
            });
        });
    }
}
