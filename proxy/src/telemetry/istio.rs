//! Istio's standard request metrics (`istio_requests_total`,
//! `istio_request_duration_milliseconds`, `istio_request_bytes`, `istio_response_bytes`,
//! `istio_build`) on the `metrics` facade with a Prometheus recorder per server.
//!
//! The request path never builds label strings: metric handles are resolved once per
//! (workload, service, status, flags, ...) combination and cached per worker thread, so
//! recording a request is a thread-local lookup and four atomic updates.

use super::labels::{Peer, Service};
use crate::flags::Flags;
use meshproxy_config::compile::telemetry::metric;
use metrics::{Counter, Histogram, Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Envoy's default histogram buckets, in milliseconds (`histogram_impl.cc defaultBuckets`).
pub const DURATION_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Size buckets for the byte histograms (decades up to 10 MB).
pub const SIZE_BUCKETS: [f64; 8] = [
    1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0, 10000000.0,
];

/// Which proxy reports (`reporter` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reporter {
    /// The client-side proxy (outbound, gateways).
    Source,
    /// The server-side proxy (inbound).
    Destination,
}

/// `connection_security_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Security {
    /// Always on `reporter=source`.
    Unknown,
    /// Plain text.
    None,
    /// Mutual TLS.
    MutualTls,
}

impl Security {
    fn as_str(&self) -> &'static str {
        match self {
            Security::Unknown => "unknown",
            Security::None => "none",
            Security::MutualTls => "mutual_tls",
        }
    }
}

/// Who talked to whom, for one request.
#[derive(Clone, Debug)]
pub struct RequestLabels {
    /// Reporter.
    pub reporter: Reporter,
    /// Calling workload.
    pub source: Arc<Peer>,
    /// Called workload.
    pub destination: Arc<Peer>,
    /// Called service.
    pub service: Arc<Service>,
    /// gRPC request.
    pub grpc: bool,
    /// Connection security.
    pub security: Security,
    /// Standard metrics a Telemetry turned off for this side (`compile::telemetry::metric`
    /// bits).
    pub disabled: u16,
}

struct Handles {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

type CacheKey = (
    u64,
    Reporter,
    u64,
    u64,
    u64,
    bool,
    Security,
    u16,
    Flags,
    Option<u32>,
    u16,
);

struct TcpHandles {
    opened: Counter,
    closed: Counter,
    sent: Counter,
    received: Counter,
}

type TcpKey = (u64, Reporter, u64, u64, u64, Security, Flags, u16);

/// A per-thread handle cache, emptied when [`EPOCH`] moves on.
struct HandleCache<K, V> {
    epoch: u64,
    /// Hashed with foldhash, not SipHash: looked up on every request, with keys of ids
    /// and response codes whose number is bounded (SipHash was 0.4 % of the worker's CPU).
    map: HashMap<K, Rc<V>, foldhash::fast::RandomState>,
}

impl<K: std::hash::Hash + Eq, V> HandleCache<K, V> {
    fn new() -> Self {
        HandleCache {
            epoch: 0,
            map: HashMap::default(),
        }
    }

    /// The cached handles for `key`, or `make`'s (then cached).
    fn get_or(&mut self, key: K, make: impl FnOnce() -> V) -> Rc<V> {
        let epoch = EPOCH.load(Ordering::Relaxed);
        if self.epoch != epoch {
            self.map.clear();
            self.epoch = epoch;
        }
        self.map
            .entry(key)
            .or_insert_with(|| Rc::new(make()))
            .clone()
    }
}

/// Bumped when a config is put in force: label sets are keyed by id and a new config
/// brings new ids (the local workload's, changed clusters'), so without it each reload
/// would add entries to every worker's cache for good (a soak run of 600 reloads grew
/// the process by megabytes). Handles looked up again resolve to the same series.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Forgets the handles cached on every thread (call when a new config is in force).
pub fn forget_cached_handles() {
    EPOCH.fetch_add(1, Ordering::Relaxed);
}

thread_local! {
    static CACHE: RefCell<HandleCache<CacheKey, Handles>> = RefCell::new(HandleCache::new());
    static TCP_CACHE: RefCell<HandleCache<TcpKey, TcpHandles>> = RefCell::new(HandleCache::new());
}

/// Istio's TCP metric families (istio.io `reference/config/metrics`).
const TCP_FAMILIES: [(&str, &str); 4] = [
    (
        "istio_tcp_connections_opened_total",
        "TCP connections opened (Istio standard metric).",
    ),
    (
        "istio_tcp_connections_closed_total",
        "TCP connections closed (Istio standard metric).",
    ),
    (
        "istio_tcp_sent_bytes_total",
        "Bytes sent to the client on TCP connections (Istio standard metric).",
    ),
    (
        "istio_tcp_received_bytes_total",
        "Bytes received from the client on TCP connections (Istio standard metric).",
    ),
];

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A server's metrics: its own Prometheus recorder (several servers in one process, as in
/// tests, do not mix their counts).
pub struct Metrics {
    id: u64,
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// When false, requests are not recorded (the benchmark's metrics-off mode).
    pub enabled: bool,
}

fn meta() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

impl Metrics {
    /// A recorder with Envoy's duration buckets and `istio_build` set.
    pub fn new(enabled: bool) -> Metrics {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("istio_request_duration_milliseconds".into()),
                &DURATION_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full("istio_request_bytes".into()), &SIZE_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("istio_response_bytes".into()),
                    &SIZE_BUCKETS,
                )
            });
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        let m = Metrics {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            recorder,
            handle,
            enabled,
        };
        // HELP texts (istio.io `reference/config/metrics`).
        m.recorder.describe_counter(
            "istio_requests_total".into(),
            None,
            "Requests handled by the proxy (Istio standard metric).".into(),
        );
        m.recorder.describe_histogram(
            "istio_request_duration_milliseconds".into(),
            Some(metrics::Unit::Milliseconds),
            "Time from the start of a request to the end of its response.".into(),
        );
        m.recorder.describe_histogram(
            "istio_request_bytes".into(),
            Some(metrics::Unit::Bytes),
            "Request body sizes.".into(),
        );
        m.recorder.describe_histogram(
            "istio_response_bytes".into(),
            Some(metrics::Unit::Bytes),
            "Response body sizes.".into(),
        );
        for (name, help) in TCP_FAMILIES {
            m.recorder
                .describe_counter(name.into(), Some(metrics::Unit::Count), help.into());
        }
        m.recorder.describe_gauge(
            "istio_build".into(),
            None,
            "Proxy version (Istio standard metric).".into(),
        );
        let build = Key::from_parts(
            "istio_build",
            vec![
                Label::new("component", "proxy"),
                Label::new("tag", env!("CARGO_PKG_VERSION")),
            ],
        );
        m.recorder.register_gauge(&build, &meta()).set(1.0);
        m
    }

    /// The Prometheus text of every facade metric (callers append their own families).
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into buckets (call periodically).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    fn handles(
        &self,
        l: &RequestLabels,
        status: u16,
        flags: Flags,
        grpc_status: Option<u32>,
    ) -> Rc<Handles> {
        let key: CacheKey = (
            self.id,
            l.reporter,
            l.source.id,
            l.destination.id,
            l.service.id,
            l.grpc,
            l.security,
            status,
            flags,
            grpc_status,
            l.disabled,
        );
        CACHE.with(|c| {
            c.borrow_mut().get_or(key, || {
                let labels = self.labels(l, status, flags, grpc_status);
                let k = |name: &'static str| Key::from_parts(name, labels.clone());
                // A metric a Telemetry turned off gets no series at all (Istio drops it
                // from the stats filter), not a series that stays at zero.
                let on = |bit: u16| l.disabled & bit == 0;
                let histogram = |bit: u16, name: &'static str| {
                    if on(bit) {
                        self.recorder.register_histogram(&k(name), &meta())
                    } else {
                        Histogram::noop()
                    }
                };
                Handles {
                    requests: if on(metric::REQUEST_COUNT) {
                        self.recorder
                            .register_counter(&k("istio_requests_total"), &meta())
                    } else {
                        Counter::noop()
                    },
                    duration: histogram(
                        metric::REQUEST_DURATION,
                        "istio_request_duration_milliseconds",
                    ),
                    request_bytes: histogram(metric::REQUEST_SIZE, "istio_request_bytes"),
                    response_bytes: histogram(metric::RESPONSE_SIZE, "istio_response_bytes"),
                }
            })
        })
    }

    fn labels(
        &self,
        l: &RequestLabels,
        status: u16,
        flags: Flags,
        grpc_status: Option<u32>,
    ) -> Vec<Label> {
        let mut labels = peer_labels(l);
        labels.extend([
            Label::new("request_protocol", if l.grpc { "grpc" } else { "http" }),
            Label::new("response_code", status.to_string()),
            Label::new(
                "grpc_response_status",
                grpc_status.map(|g| g.to_string()).unwrap_or_default(),
            ),
            Label::new("response_flags", flags.to_string()),
            Label::new("connection_security_policy", l.security.as_str()),
        ]);
        labels
    }

    fn tcp_handles(&self, l: &RequestLabels, flags: Flags) -> Rc<TcpHandles> {
        let key: TcpKey = (
            self.id,
            l.reporter,
            l.source.id,
            l.destination.id,
            l.service.id,
            l.security,
            flags,
            l.disabled,
        );
        TCP_CACHE.with(|c| {
            c.borrow_mut().get_or(key, || {
                let mut labels = peer_labels(l);
                labels.extend([
                    Label::new("request_protocol", "tcp"),
                    Label::new("response_flags", flags.to_string()),
                    Label::new("connection_security_policy", l.security.as_str()),
                ]);
                let counter = |bit: u16, name: &'static str| {
                    if l.disabled & bit != 0 {
                        return Counter::noop();
                    }
                    self.recorder
                        .register_counter(&Key::from_parts(name, labels.clone()), &meta())
                };
                TcpHandles {
                    opened: counter(metric::TCP_OPENED_CONNECTIONS, TCP_FAMILIES[0].0),
                    closed: counter(metric::TCP_CLOSED_CONNECTIONS, TCP_FAMILIES[1].0),
                    sent: counter(metric::TCP_SENT_BYTES, TCP_FAMILIES[2].0),
                    received: counter(metric::TCP_RECEIVED_BYTES, TCP_FAMILIES[3].0),
                }
            })
        })
    }

    /// Records a TCP connection proxied upstream (Istio counts it when the upstream
    /// connection is established).
    pub fn record_tcp_open(&self, l: &RequestLabels) {
        if self.enabled {
            self.tcp_handles(l, Flags::NONE).opened.increment(1);
        }
    }

    /// Records the end of a proxied TCP connection: bytes received from the client and
    /// sent to it, with the connection's response flags.
    pub fn record_tcp_close(&self, l: &RequestLabels, flags: Flags, received: u64, sent: u64) {
        if !self.enabled {
            return;
        }
        let h = self.tcp_handles(l, flags);
        h.closed.increment(1);
        h.received.increment(received);
        h.sent.increment(sent);
    }
}

/// The labels naming who talked to whom, shared by the HTTP and TCP families.
fn peer_labels(l: &RequestLabels) -> Vec<Label> {
    let s = &l.source;
    let d = &l.destination;
    let v = &l.service;
    let text = |a: &Arc<str>| a.to_string();
    vec![
        Label::new(
            "reporter",
            if l.reporter == Reporter::Source {
                "source"
            } else {
                "destination"
            },
        ),
        Label::new("source_workload", text(&s.workload)),
        Label::new("source_canonical_service", text(&s.canonical_service)),
        Label::new("source_canonical_revision", text(&s.canonical_revision)),
        Label::new("source_workload_namespace", text(&s.namespace)),
        Label::new("source_principal", text(&s.principal)),
        Label::new("source_app", text(&s.app)),
        Label::new("source_version", text(&s.version)),
        Label::new("source_cluster", text(&s.cluster)),
        Label::new("destination_workload", text(&d.workload)),
        Label::new("destination_workload_namespace", text(&d.namespace)),
        Label::new("destination_principal", text(&d.principal)),
        Label::new("destination_app", text(&d.app)),
        Label::new("destination_version", text(&v.version)),
        Label::new("destination_service", text(&v.host)),
        Label::new("destination_canonical_service", text(&d.canonical_service)),
        Label::new(
            "destination_canonical_revision",
            text(&d.canonical_revision),
        ),
        Label::new("destination_service_name", text(&v.name)),
        Label::new("destination_service_namespace", text(&v.namespace)),
        Label::new("destination_cluster", text(&d.cluster)),
    ]
}

/// How one request ended, as Istio's request metrics count it.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    /// Response status (0 when none was sent).
    pub status: u16,
    /// Response flags.
    pub flags: Flags,
    /// `grpc-status`, for gRPC requests.
    pub grpc_status: Option<u32>,
    /// Request body bytes received.
    pub request_bytes: u64,
    /// Response body bytes sent.
    pub response_bytes: u64,
    /// From the request's start to its end.
    pub duration: Duration,
}

impl Metrics {
    /// Records one finished request.
    pub fn record_request(&self, l: &RequestLabels, f: Finished) {
        if !self.enabled {
            return;
        }
        let h = self.handles(l, f.status, f.flags, f.grpc_status);
        h.requests.increment(1);
        h.duration.record(f.duration.as_secs_f64() * 1000.0);
        h.request_bytes.record(f.request_bytes as f64);
        h.response_bytes.record(f.response_bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> RequestLabels {
        RequestLabels {
            reporter: Reporter::Source,
            source: Peer::unknown(),
            destination: Peer::unknown(),
            service: Service::unknown(),
            grpc: false,
            security: Security::Unknown,
            disabled: 0,
        }
    }

    #[test]
    fn a_new_config_empties_the_cache_and_keeps_the_series() {
        let m = Metrics::new(true);
        let done = Finished {
            status: 200,
            flags: Flags::NONE,
            grpc_status: None,
            request_bytes: 1,
            response_bytes: 2,
            duration: Duration::ZERO,
        };
        let record = || m.record_request(&labels(), done);
        record();
        record();
        forget_cached_handles();
        record();
        let cached = CACHE.with(|c| c.borrow().map.len());
        assert_eq!(cached, 1);
        let text = m.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("istio_requests_total{"))
            .expect("istio_requests_total");
        assert!(line.ends_with(" 3"), "{line}");
    }
}
