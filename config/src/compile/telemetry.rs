//! `Telemetry` → what this proxy's workload traces, logs and records, per side (CLIENT:
//! a sidecar's outbound traffic and a gateway's; SERVER: a sidecar's inbound traffic).
//!
//! Istio (`pilot/pkg/model/telemetry.go` `applicableTelemetries`): the root namespace's
//! selector-less resource, then the workload namespace's selector-less one, then every
//! resource of the workload's namespace whose selector matches, in order; a later level's
//! set fields override the inherited ones. Sidecars ignore `targetRefs` (they are for
//! Gateway API gateways and waypoints). docs/telemetry.md has the whole story.

use super::proxy_settings::ProxySettings;
use super::registry::Registry;
use super::trace_provider::TraceProvider;
use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::model::extension_provider::ExtensionProvider;
use crate::model::telemetry::{self as model, WorkloadMode};
use crate::model::{Resource, Telemetry};
use http::HeaderName;
use std::sync::Arc;

/// Istio: `PILOT_TRACE_SAMPLING` defaults to 1.0 (percent) where neither a Telemetry nor
/// MeshConfig's `defaultConfig.tracing.sampling` sets it.
pub const DEFAULT_SAMPLING: f64 = 1.0;

/// The effective telemetry of this workload.
#[derive(Clone, Debug, Default)]
pub struct TelemetryPolicy {
    /// Outbound and gateway traffic.
    pub client: SidePolicy,
    /// Inbound traffic.
    pub server: SidePolicy,
}

/// What one side does.
#[derive(Clone, Debug, Default)]
pub struct SidePolicy {
    /// Tracing (`None`: off: no span, trace headers passed through untouched).
    pub tracing: Option<Arc<TracingPolicy>>,
    /// Access logging.
    pub access_log: AccessLogPolicy,
    /// Metrics.
    pub metrics: MetricsPolicy,
}

/// Tracing of one side.
#[derive(Clone, Debug)]
pub struct TracingPolicy {
    /// Where spans go and which headers carry the context.
    pub provider: Arc<TraceProvider>,
    /// Percent of requests without a parent decision that are sampled.
    pub sampling: f64,
    /// `customTags`, in name order.
    pub custom_tags: Vec<(Arc<str>, TagValue)>,
    /// Spans are exported (`disableSpanReporting: false`).
    pub report: bool,
    /// Istio: `useRequestIdForTraceSampling` (default true).
    pub use_request_id: bool,
    /// Istio: `enableIstioTags` (default true).
    pub istio_tags: bool,
    /// Trace headers are written upstream (`disableContextPropagation: false`).
    pub propagate: bool,
}

/// Where a custom tag's value comes from.
#[derive(Clone, Debug)]
pub enum TagValue {
    /// A fixed value (a literal, or an environment variable read when compiled).
    Fixed(Arc<str>),
    /// A request header, with a default when absent.
    Header(HeaderName, Option<Arc<str>>),
}

/// Access logging of one side.
#[derive(Clone, Debug, Default)]
pub struct AccessLogPolicy {
    /// No line is written.
    pub disabled: bool,
    /// Only requests for which this CEL expression is true are logged.
    pub filter: Option<Arc<LogFilter>>,
}

/// A compiled `filter.expression`.
#[derive(Debug)]
pub struct LogFilter {
    /// The expression as written.
    pub expression: String,
    /// Its program.
    pub program: cel::Program,
}

/// Metrics of one side: which of Istio's standard metrics are not recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsPolicy {
    /// Bit per metric ([`metric_bit`]).
    pub disabled: u16,
}

impl MetricsPolicy {
    /// The metric named as in `MetricSelector.metric` is off.
    pub fn is_disabled(&self, metric: &str) -> bool {
        metric_bit(metric).is_some_and(|b| self.disabled & b != 0)
    }
}

/// The bits of Istio's standard metrics in [`MetricsPolicy::disabled`] (their position
/// in `MetricSelector.metric`'s list).
pub mod metric {
    /// `istio_requests_total`.
    pub const REQUEST_COUNT: u16 = 1 << 1;
    /// `istio_request_duration_milliseconds`.
    pub const REQUEST_DURATION: u16 = 1 << 2;
    /// `istio_request_bytes`.
    pub const REQUEST_SIZE: u16 = 1 << 3;
    /// `istio_response_bytes`.
    pub const RESPONSE_SIZE: u16 = 1 << 4;
    /// `istio_tcp_connections_opened_total`.
    pub const TCP_OPENED_CONNECTIONS: u16 = 1 << 5;
    /// `istio_tcp_connections_closed_total`.
    pub const TCP_CLOSED_CONNECTIONS: u16 = 1 << 6;
    /// `istio_tcp_sent_bytes_total`.
    pub const TCP_SENT_BYTES: u16 = 1 << 7;
    /// `istio_tcp_received_bytes_total`.
    pub const TCP_RECEIVED_BYTES: u16 = 1 << 8;
}

/// The bit of a standard metric (`ALL_METRICS`: every bit).
pub fn metric_bit(metric: &str) -> Option<u16> {
    let i = crate::validate::TELEMETRY_METRICS
        .iter()
        .position(|m| *m == metric)?;
    Some(if i == 0 { u16::MAX } else { 1 << i })
}

impl TelemetryPolicy {
    /// Resolves the Telemetry documents that apply to `proxy`'s workload.
    pub fn compile(
        resources: &[Resource],
        proxy: &ProxySettings,
        registry: &Registry,
        warnings: &mut Diagnostics,
    ) -> TelemetryPolicy {
        let levels = applicable(resources, proxy);
        let mesh = resources.iter().find_map(Resource::as_proxy);
        let providers = mesh
            .and_then(|p| p.extension_providers.as_deref())
            .unwrap_or_default();
        let defaults = mesh.and_then(|p| p.default_providers.as_ref());
        let default_tracing = defaults
            .and_then(|d| d.tracing.as_ref())
            .and_then(|t| t.first().cloned());
        let sampling = mesh
            .and_then(|p| p.trace_sampling)
            // Istio: a `defaultConfig.tracing.sampling` over 100 counts as 1.
            .map(|s| if s > 100.0 { 1.0 } else { s })
            .unwrap_or(DEFAULT_SAMPLING);
        let mut side = |mode: WorkloadMode| {
            let merged = merge_tracing(&levels, mode);
            let name = merged.provider.or(default_tracing.clone());
            let tracing = name.and_then(|n| {
                let provider = find_provider(providers, &n, registry, warnings)?;
                Some(Arc::new(TracingPolicy {
                    provider,
                    sampling: merged.sampling.unwrap_or(sampling),
                    custom_tags: merged.custom_tags,
                    report: !merged.disable_reporting.unwrap_or(false),
                    use_request_id: merged.use_request_id.unwrap_or(true),
                    istio_tags: merged.istio_tags.unwrap_or(true),
                    propagate: !merged.disable_propagation.unwrap_or(false),
                }))
            });
            SidePolicy {
                tracing,
                access_log: merge_logs(&levels, mode),
                metrics: merge_metrics(&levels, mode),
            }
        };
        TelemetryPolicy {
            client: side(WorkloadMode::Client),
            server: side(WorkloadMode::Server),
        }
    }

    /// The side of a listener: inbound is SERVER, outbound and gateways CLIENT.
    pub fn side(&self, inbound: bool) -> &SidePolicy {
        if inbound {
            &self.server
        } else {
            &self.client
        }
    }
}

/// The Telemetry documents that apply, mesh level first.
fn applicable<'a>(resources: &'a [Resource], proxy: &ProxySettings) -> Vec<&'a Telemetry> {
    let docs = || {
        resources
            .iter()
            .filter_map(|r| r.as_telemetry().map(|t| (r, t)))
    };
    let has_selector = |t: &Telemetry| {
        t.selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty())
    };
    let targeted = |t: &Telemetry| t.target_ref.is_some() || t.target_refs.is_some();
    let plain = |t: &Telemetry| !has_selector(t) && !targeted(t);
    let root = &proxy.root_namespace;
    let mut out: Vec<&Telemetry> = Vec::new();
    // Istio: one selector-less resource per namespace counts (the oldest; load order).
    out.extend(
        docs()
            .find(|(r, t)| r.namespace == *root && plain(t))
            .map(|(_, t)| t),
    );
    if proxy.namespace != *root {
        out.extend(
            docs()
                .find(|(r, t)| r.namespace == proxy.namespace && plain(t))
                .map(|(_, t)| t),
        );
    }
    out.extend(
        docs()
            .filter(|(r, t)| {
                r.namespace == proxy.namespace
                    && has_selector(t)
                    && t.selector
                        .as_ref()
                        .is_some_and(|s| proxy.selected_by(&s.match_labels))
            })
            .map(|(_, t)| t),
    );
    out
}

fn applies(m: Option<&model::TracingSelector>, mode: WorkloadMode) -> bool {
    match m.and_then(|s| s.mode).unwrap_or_default() {
        WorkloadMode::ClientAndServer => true,
        other => other == mode,
    }
}

/// Tracing fields after every level: a set field overrides the inherited one.
#[derive(Default)]
struct MergedTracing {
    provider: Option<String>,
    sampling: Option<f64>,
    custom_tags: Vec<(Arc<str>, TagValue)>,
    disable_reporting: Option<bool>,
    use_request_id: Option<bool>,
    istio_tags: Option<bool>,
    disable_propagation: Option<bool>,
}

fn merge_tracing(levels: &[&Telemetry], mode: WorkloadMode) -> MergedTracing {
    let mut m = MergedTracing::default();
    let entries = levels.iter().flat_map(|t| t.tracing.iter().flatten());
    for e in entries.filter(|e| applies(e.match_.as_ref(), mode)) {
        // Istio: only the first provider of an entry counts.
        if let Some(p) = e.providers.as_ref().and_then(|p| p.first()) {
            m.provider = Some(p.name.clone());
        }
        m.sampling = e.random_sampling_percentage.or(m.sampling);
        m.disable_reporting = e.disable_span_reporting.or(m.disable_reporting);
        m.use_request_id = e.use_request_id_for_trace_sampling.or(m.use_request_id);
        m.istio_tags = e.enable_istio_tags.or(m.istio_tags);
        m.disable_propagation = e.disable_context_propagation.or(m.disable_propagation);
        // Istio: `customTags` replaces the inherited map wholesale.
        if let Some(tags) = &e.custom_tags {
            m.custom_tags = tags
                .iter()
                .filter_map(|(name, tag)| Some((Arc::from(name.as_str()), tag_value(tag)?)))
                .collect();
        }
    }
    m
}

fn tag_value(tag: &model::CustomTag) -> Option<TagValue> {
    if let Some(l) = &tag.literal {
        return Some(TagValue::Fixed(l.value.as_str().into()));
    }
    if let Some(e) = &tag.environment {
        let v = std::env::var(&e.name)
            .ok()
            .or_else(|| e.default_value.clone())?;
        return Some(TagValue::Fixed(v.into()));
    }
    let h = tag.header.as_ref()?;
    let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
    Some(TagValue::Header(
        name,
        h.default_value.as_deref().map(Arc::from),
    ))
}

fn merge_logs(levels: &[&Telemetry], mode: WorkloadMode) -> AccessLogPolicy {
    let mut p = AccessLogPolicy::default();
    let entries = levels
        .iter()
        .flat_map(|t| t.access_logging.iter().flatten());
    for e in entries.filter(|e| applies(e.match_.as_ref(), mode)) {
        if let Some(d) = e.disabled {
            p.disabled = d;
        }
        if let Some(f) = &e.filter {
            // Validation rejected expressions that do not parse.
            p.filter = cel::Program::compile(&f.expression).ok().map(|program| {
                Arc::new(LogFilter {
                    expression: f.expression.clone(),
                    program,
                })
            });
        }
    }
    p
}

fn merge_metrics(levels: &[&Telemetry], mode: WorkloadMode) -> MetricsPolicy {
    let mut p = MetricsPolicy::default();
    let overrides = levels
        .iter()
        .flat_map(|t| t.metrics.iter().flatten())
        .flat_map(|m| m.overrides.iter().flatten());
    for o in overrides {
        let sel = o.match_.as_ref();
        let side = sel.and_then(|s| s.mode).unwrap_or_default();
        if side != WorkloadMode::ClientAndServer && side != mode {
            continue;
        }
        // Istio: no `match`, or no metric named, is ALL_METRICS.
        let metric = sel
            .and_then(|s| s.metric.as_deref())
            .unwrap_or("ALL_METRICS");
        let Some(bit) = metric_bit(metric) else {
            continue;
        };
        match o.disabled {
            Some(true) => p.disabled |= bit,
            Some(false) => p.disabled &= !bit,
            None => {}
        }
    }
    p
}

/// The tracing provider named `name` (Istio matches names case-insensitively); a warning
/// when there is none or it is not a tracing provider (Istio then leaves tracing off).
fn find_provider(
    providers: &[ExtensionProvider],
    name: &str,
    registry: &Registry,
    warnings: &mut Diagnostics,
) -> Option<Arc<TraceProvider>> {
    let mut warn = |message: String| {
        warnings.push(Diagnostic {
            severity: Severity::Warning,
            origin: None,
            resource: None,
            path: "spec.tracing.providers".into(),
            line: None,
            message,
        })
    };
    let Some(p) = providers.iter().find(|p| p.name.eq_ignore_ascii_case(name)) else {
        warn(format!(
            "no extension provider named {name:?}: tracing is off"
        ));
        return None;
    };
    match TraceProvider::compile(p, registry) {
        Some(Ok(t)) => Some(Arc::new(t)),
        Some(Err(e)) => {
            warn(format!("{e}: tracing is off"));
            None
        }
        None => {
            warn(format!(
                "extension provider {name:?} is not a tracing provider: tracing is off"
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_bits_follow_the_selector_names() {
        assert_eq!(metric_bit("REQUEST_COUNT"), Some(metric::REQUEST_COUNT));
        assert_eq!(metric_bit("RESPONSE_SIZE"), Some(metric::RESPONSE_SIZE));
        assert_eq!(
            metric_bit("TCP_RECEIVED_BYTES"),
            Some(metric::TCP_RECEIVED_BYTES)
        );
        assert_eq!(metric_bit("ALL_METRICS"), Some(u16::MAX));
        assert_eq!(metric_bit("NOPE"), None);
    }
}
