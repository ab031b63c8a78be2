//! Telemetry rules (istio/istio `pkg/config/validation` `ValidateTelemetry`): provider
//! names, sampling range, custom tags, metric overrides, and CEL expressions that must
//! parse.

use super::V;
use crate::model::map::Map;
use crate::model::telemetry::*;

/// Istio's standard metric names a `MetricSelector.metric` may name.
pub const METRICS: &[&str] = &[
    "ALL_METRICS",
    "REQUEST_COUNT",
    "REQUEST_DURATION",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "TCP_OPENED_CONNECTIONS",
    "TCP_CLOSED_CONNECTIONS",
    "TCP_SENT_BYTES",
    "TCP_RECEIVED_BYTES",
    "GRPC_REQUEST_MESSAGES",
    "GRPC_RESPONSE_MESSAGES",
];

pub(crate) fn validate(v: &mut V, t: &Telemetry) {
    if let Some(sel) = &t.selector {
        super::authorization_policy::selector(v, "spec.selector.matchLabels", &sel.match_labels);
    }
    let refs = t.target_ref.iter().chain(t.target_refs.iter().flatten());
    for (i, r) in refs.enumerate() {
        super::authorization_policy::target_ref(v, &format!("spec.targetRefs[{i}]"), r);
    }
    if t.selector.is_some() && (t.target_ref.is_some() || t.target_refs.is_some()) {
        v.err(
            "spec",
            "only one of targetRefs or workloadSelector can be set",
        );
    }
    let tracing = t.tracing.as_deref().unwrap_or_default();
    if tracing.len() > 1 {
        v.warn(
            "spec.tracing",
            "multiple tracing is not currently supported: only the first entry is used",
        );
    }
    for (i, tr) in tracing.iter().enumerate() {
        tracing_entry(v, &format!("spec.tracing[{i}]"), tr);
    }
    for (i, m) in t.metrics.iter().flatten().enumerate() {
        metrics_entry(v, &format!("spec.metrics[{i}]"), m);
    }
    for (i, a) in t.access_logging.iter().flatten().enumerate() {
        let p = format!("spec.accessLogging[{i}]");
        providers(v, &p, &a.providers);
        if let Some(f) = &a.filter {
            cel(v, &format!("{p}.filter.expression"), &f.expression);
        }
    }
}

fn providers(v: &mut V, p: &str, providers: &Option<Vec<ProviderRef>>) {
    for (i, r) in providers.iter().flatten().enumerate() {
        if r.name.is_empty() {
            v.err(
                &format!("{p}.providers[{i}].name"),
                "must specify a provider name",
            );
        }
    }
}

fn tracing_entry(v: &mut V, p: &str, t: &Tracing) {
    providers(v, p, &t.providers);
    if t.providers.as_ref().is_some_and(|p| p.len() > 1) {
        v.warn(
            &format!("{p}.providers"),
            "multiple providers is not currently supported: only the first is used",
        );
    }
    if let Some(s) = t.random_sampling_percentage {
        if !(0.0..=100.0).contains(&s) || s.is_nan() {
            v.err(
                &format!("{p}.randomSamplingPercentage"),
                "must be in range [0.0, 100.0]",
            );
        }
    }
    if let Some(tags) = &t.custom_tags {
        custom_tags(v, &format!("{p}.customTags"), tags);
    }
}

fn custom_tags(v: &mut V, p: &str, tags: &Map<String, CustomTag>) {
    for (name, tag) in tags {
        let tp = format!("{p}.{name}");
        if name.is_empty() {
            v.err(p, "tag name may not be empty");
        }
        let set = tag.literal.is_some() as u8
            + tag.environment.is_some() as u8
            + tag.header.is_some() as u8
            + tag.formatter.is_some() as u8;
        if set != 1 {
            v.err(
                &tp,
                "exactly one of literal, environment, header or formatter must be set",
            );
        }
        if tag.environment.as_ref().is_some_and(|e| e.name.is_empty()) {
            v.err(&format!("{tp}.environment.name"), "name may not be empty");
        }
        if let Some(h) = &tag.header {
            if h.name.is_empty() {
                v.err(&format!("{tp}.header.name"), "name may not be empty");
            } else if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
                v.err(
                    &format!("{tp}.header.name"),
                    format!("invalid header name {:?}", h.name),
                );
            }
        }
        if tag.formatter.is_some() {
            v.not_enforced(
                &format!("{tp}.formatter"),
                "Envoy substitution formatters are not supported; the tag is not added",
            );
        }
    }
}

fn metrics_entry(v: &mut V, p: &str, m: &Metrics) {
    providers(v, p, &m.providers);
    v.duration(&format!("{p}.reportingInterval"), &m.reporting_interval);
    if m.reporting_interval.is_some() {
        v.not_enforced(
            &format!("{p}.reportingInterval"),
            "TCP metrics are updated when a connection ends",
        );
    }
    for (i, o) in m.overrides.iter().flatten().enumerate() {
        let op = format!("{p}.overrides[{i}]");
        if let Some(sel) = &o.match_ {
            if let Some(metric) = &sel.metric {
                if !METRICS.contains(&metric.as_str()) {
                    v.err(
                        &format!("{op}.match.metric"),
                        format!("unknown metric {metric:?}: one of {}", METRICS.join(", ")),
                    );
                }
                if sel.custom_metric.is_some() {
                    v.err(
                        &format!("{op}.match"),
                        "only one of metric or customMetric may be set",
                    );
                }
            }
            match sel.custom_metric.as_deref() {
                Some("") => v.err(
                    &format!("{op}.match.customMetric"),
                    "customMetric may not be empty",
                ),
                Some(_) => v.not_enforced(
                    &format!("{op}.match.customMetric"),
                    "only Istio's standard metrics are recorded",
                ),
                None => {}
            }
        }
        if o.tag_overrides.as_ref().is_some_and(|t| !t.is_empty()) {
            v.not_enforced(
                &format!("{op}.tagOverrides"),
                "metrics keep Istio's standard labels",
            );
        }
        for (tag, t) in o.tag_overrides.iter().flatten() {
            let tp = format!("{op}.tagOverrides.{tag}");
            if tag.is_empty() {
                v.err(&format!("{op}.tagOverrides"), "tag name may not be empty");
            }
            match (t.operation.unwrap_or(TagOperation::Upsert), &t.value) {
                (TagOperation::Upsert, None) => {
                    v.err(&tp, "value must be set when operation is UPSERT")
                }
                (TagOperation::Upsert, Some(val)) if val.is_empty() => v.err(
                    &format!("{tp}.value"),
                    "must be set when operation is UPSERT",
                ),
                (TagOperation::Upsert, Some(val)) => cel(v, &format!("{tp}.value"), val),
                (TagOperation::Remove, Some(_)) => {
                    v.err(&tp, "cannot be set when operation is REMOVE")
                }
                (TagOperation::Remove, None) => {}
            }
        }
    }
}

/// Istio rejects a CEL expression that does not parse.
fn cel(v: &mut V, p: &str, expr: &str) {
    if expr.trim().is_empty() {
        v.err(p, "expression may not be empty");
        return;
    }
    if let Err(e) = cel::Program::compile(expr) {
        v.err(p, format!("invalid CEL expression {expr:?}: {e}"));
    }
}
