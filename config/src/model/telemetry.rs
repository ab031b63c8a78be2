//! `Telemetry` (telemetry.istio.io `v1`, `v1alpha1`): tracing, access logging and metrics
//! per mesh, namespace or workload. Follows Istio's `telemetry/v1alpha1/telemetry.proto`;
//! how the levels combine is in `compile::telemetry` and docs/telemetry.md.

use super::common::{PolicyTargetReference, WorkloadSelector};
use super::map::Map;
use crate::duration::Duration;
use serde::Deserialize;

/// `Telemetry.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Telemetry {
    /// Workloads this applies to; absent = the namespace (the mesh in the root namespace).
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    /// Istio: a single target (Gateway API gateways and waypoints; sidecars ignore it).
    #[serde(default, alias = "target_ref")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Istio: targets (as `targetRef`).
    #[serde(default, alias = "target_refs")]
    pub target_refs: Option<Vec<PolicyTargetReference>>,
    /// Tracing settings, applied in order.
    #[serde(default)]
    pub tracing: Option<Vec<Tracing>>,
    /// Metrics settings, applied in order.
    #[serde(default)]
    pub metrics: Option<Vec<Metrics>>,
    /// Access-log settings, applied in order.
    #[serde(default, alias = "access_logging")]
    pub access_logging: Option<Vec<AccessLogging>>,
}

/// `Tracing`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tracing {
    /// Which side of the proxy this entry configures.
    #[serde(default, rename = "match")]
    pub match_: Option<TracingSelector>,
    /// Providers by name; Istio uses only the first.
    #[serde(default)]
    pub providers: Option<Vec<ProviderRef>>,
    /// Percent of requests without a parent decision that start a sampled trace.
    #[serde(default, alias = "random_sampling_percentage")]
    pub random_sampling_percentage: Option<f64>,
    /// No spans are reported; trace headers still propagate.
    #[serde(default, alias = "disable_span_reporting")]
    pub disable_span_reporting: Option<bool>,
    /// Tags added to every span (replaces the inherited map wholesale).
    #[serde(default, alias = "custom_tags")]
    pub custom_tags: Option<Map<String, CustomTag>>,
    /// Sample by `x-request-id` so that every hop decides alike (Istio default true).
    #[serde(default, alias = "use_request_id_for_trace_sampling")]
    pub use_request_id_for_trace_sampling: Option<bool>,
    /// Istio's `istio.*` span tags (default true).
    #[serde(default, alias = "enable_istio_tags")]
    pub enable_istio_tags: Option<bool>,
    /// No trace headers are written upstream.
    #[serde(default, alias = "disable_context_propagation")]
    pub disable_context_propagation: Option<bool>,
}

/// `Tracing.TracingSelector` / `AccessLogging.LogSelector`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracingSelector {
    /// `CLIENT_AND_SERVER` (default), `CLIENT` or `SERVER`.
    #[serde(default)]
    pub mode: Option<WorkloadMode>,
}

/// Istio `WorkloadMode`: which traffic of a workload an entry configures. A sidecar's
/// outbound traffic and a gateway's are CLIENT, a sidecar's inbound traffic SERVER.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkloadMode {
    /// Both.
    #[default]
    ClientAndServer,
    /// Outbound (sidecar) and gateway traffic.
    Client,
    /// Inbound traffic.
    Server,
}

/// `ProviderRef`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderRef {
    /// A provider of `Proxy.spec.extensionProviders` (or a built-in one).
    #[serde(default)]
    pub name: String,
}

/// `Tracing.CustomTag`: exactly one of its fields.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomTag {
    /// A fixed value.
    #[serde(default)]
    pub literal: Option<Literal>,
    /// The proxy's environment variable.
    #[serde(default)]
    pub environment: Option<Environment>,
    /// A request header.
    #[serde(default)]
    pub header: Option<RequestHeader>,
    /// An Envoy substitution format string (Istio 1.29+; not supported here).
    #[serde(default)]
    pub formatter: Option<Literal>,
}

/// `Tracing.Literal`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Literal {
    /// The value.
    #[serde(default)]
    pub value: String,
}

/// `Tracing.Environment`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Environment {
    /// Variable name.
    #[serde(default)]
    pub name: String,
    /// Used when the variable is unset.
    #[serde(default, alias = "default_value")]
    pub default_value: Option<String>,
}

/// `Tracing.RequestHeader`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestHeader {
    /// Header name.
    #[serde(default)]
    pub name: String,
    /// Used when the request lacks the header.
    #[serde(default, alias = "default_value")]
    pub default_value: Option<String>,
}

/// `Metrics`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    /// Providers by name (replaces the inherited list).
    #[serde(default)]
    pub providers: Option<Vec<ProviderRef>>,
    /// Per-metric changes, stacked on the inherited ones in order.
    #[serde(default)]
    pub overrides: Option<Vec<MetricsOverrides>>,
    /// TCP metrics reporting interval.
    #[serde(default, alias = "reporting_interval")]
    pub reporting_interval: Option<Duration>,
}

/// `MetricsOverrides`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsOverrides {
    /// Which metric and side; absent = every metric, both sides.
    #[serde(default, rename = "match")]
    pub match_: Option<MetricSelector>,
    /// The metric is not recorded.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Labels changed or removed.
    #[serde(default, alias = "tag_overrides")]
    pub tag_overrides: Option<Map<String, TagOverride>>,
}

/// `MetricSelector`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSelector {
    /// One of Istio's standard metrics (`REQUEST_COUNT`, ..., `ALL_METRICS`).
    #[serde(default)]
    pub metric: Option<String>,
    /// A custom metric's name.
    #[serde(default, alias = "custom_metric")]
    pub custom_metric: Option<String>,
    /// Side.
    #[serde(default)]
    pub mode: Option<WorkloadMode>,
}

/// `MetricsOverrides.TagOverride`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TagOverride {
    /// `UPSERT` (default) or `REMOVE`.
    #[serde(default)]
    pub operation: Option<TagOperation>,
    /// A CEL expression for the value (UPSERT).
    #[serde(default)]
    pub value: Option<String>,
}

/// `TagOverride.Operation`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TagOperation {
    /// Add or replace the label.
    Upsert,
    /// Drop the label.
    Remove,
}

/// `AccessLogging`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogging {
    /// Which side this entry configures.
    #[serde(default, rename = "match")]
    pub match_: Option<TracingSelector>,
    /// Providers by name (narrows the inherited set).
    #[serde(default)]
    pub providers: Option<Vec<ProviderRef>>,
    /// Access logging off (an explicit `false` turns it back on below a disabling level).
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Which requests are logged.
    #[serde(default)]
    pub filter: Option<AccessLogFilter>,
}

/// `AccessLogging.Filter`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccessLogFilter {
    /// A CEL expression over Envoy's request attributes.
    #[serde(default)]
    pub expression: String,
}
