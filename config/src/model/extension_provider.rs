//! `Proxy.spec.extensionProviders` and `Proxy.spec.defaultProviders`: the telemetry
//! backends a `Telemetry` names, in the shape of Istio's MeshConfig
//! (`mesh/v1alpha1/config.proto` `ExtensionProvider`, `DefaultProviders`).

use crate::duration::Duration;
use serde::Deserialize;

/// `MeshConfig.ExtensionProvider`: a name and exactly one provider.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProvider {
    /// The name `Telemetry` providers refer to (Istio matches it case-insensitively).
    #[serde(default)]
    pub name: String,
    /// OTLP traces (gRPC, or HTTP/protobuf with `http`).
    #[serde(default)]
    pub opentelemetry: Option<OpenTelemetryProvider>,
    /// Zipkin v2 JSON traces.
    #[serde(default)]
    pub zipkin: Option<ZipkinProvider>,
    /// A file access log (Istio's built-in `envoy` provider writes `/dev/stdout`).
    #[serde(default, alias = "envoy_file_access_log")]
    pub envoy_file_access_log: Option<serde_yaml::Value>,
    /// Prometheus metrics (the built-in `prometheus` provider).
    #[serde(default)]
    pub prometheus: Option<serde_yaml::Value>,
    /// Istio's other provider types: accepted so a MeshConfig copied whole loads, and
    /// reported as not supported.
    #[serde(default, alias = "envoy_ext_authz_http")]
    pub envoy_ext_authz_http: Option<serde_yaml::Value>,
    /// As `envoyExtAuthzHttp`.
    #[serde(default, alias = "envoy_ext_authz_grpc")]
    pub envoy_ext_authz_grpc: Option<serde_yaml::Value>,
    /// As `envoyExtAuthzHttp`.
    #[serde(default)]
    pub datadog: Option<serde_yaml::Value>,
    /// As `envoyExtAuthzHttp`.
    #[serde(default)]
    pub stackdriver: Option<serde_yaml::Value>,
    /// As `envoyExtAuthzHttp`.
    #[serde(default)]
    pub skywalking: Option<serde_yaml::Value>,
    /// As `envoyExtAuthzHttp`.
    #[serde(default)]
    pub lightstep: Option<serde_yaml::Value>,
    /// As `envoyExtAuthzHttp`.
    #[serde(default, alias = "envoy_otel_als")]
    pub envoy_otel_als: Option<serde_yaml::Value>,
    /// As `envoyExtAuthzHttp`.
    #[serde(default, alias = "envoy_http_als")]
    pub envoy_http_als: Option<serde_yaml::Value>,
    /// As `envoyExtAuthzHttp`.
    #[serde(default, alias = "envoy_tcp_als")]
    pub envoy_tcp_als: Option<serde_yaml::Value>,
    /// As `envoyExtAuthzHttp`.
    #[serde(default)]
    pub sds: Option<serde_yaml::Value>,
}

/// `ExtensionProvider.OpenTelemetryTracingProvider`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenTelemetryProvider {
    /// The collector's host (`[namespace/]host`), resolved through the registry.
    #[serde(default)]
    pub service: String,
    /// Its port.
    #[serde(default)]
    pub port: i64,
    /// Longest tag value kept (Istio default 256).
    #[serde(default, alias = "max_tag_length")]
    pub max_tag_length: Option<i64>,
    /// OTLP over HTTP/protobuf instead of gRPC.
    #[serde(default)]
    pub http: Option<OtlpHttp>,
    /// gRPC settings.
    #[serde(default)]
    pub grpc: Option<OtlpGrpc>,
    /// Resource detectors (accepted; the resource carries `service.name` only).
    #[serde(default, alias = "resource_detectors")]
    pub resource_detectors: Option<serde_yaml::Value>,
    /// Sampler extension (accepted, not supported).
    #[serde(default, alias = "dynatrace_sampler")]
    pub dynatrace_sampler: Option<serde_yaml::Value>,
}

/// `OpenTelemetryTracingProvider.HttpService`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtlpHttp {
    /// Request path (OTLP's default `/v1/traces`).
    #[serde(default)]
    pub path: Option<String>,
    /// Export timeout.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: Option<Vec<HeaderValueSource>>,
}

/// `OpenTelemetryTracingProvider.GrpcService`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtlpGrpc {
    /// Export timeout.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Extra request metadata.
    #[serde(default, alias = "initial_metadata")]
    pub initial_metadata: Option<Vec<HeaderValueSource>>,
}

/// A header for the collector: a value, or an environment variable's.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderValueSource {
    /// Header name.
    #[serde(default)]
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: Option<String>,
    /// Environment variable holding the value.
    #[serde(default, alias = "env_name")]
    pub env_name: Option<String>,
}

/// `ExtensionProvider.ZipkinTracingProvider`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZipkinProvider {
    /// The collector's host, resolved through the registry.
    #[serde(default)]
    pub service: String,
    /// Its port.
    #[serde(default)]
    pub port: i64,
    /// Longest tag value kept (Istio default 256).
    #[serde(default, alias = "max_tag_length")]
    pub max_tag_length: Option<i64>,
    /// 64-bit trace ids instead of 128-bit.
    #[serde(
        default,
        alias = "enable_64bit_trace_id",
        rename = "enable64bitTraceId"
    )]
    pub enable_64bit_trace_id: Option<bool>,
    /// Collector path (Zipkin's `/api/v2/spans`).
    #[serde(default)]
    pub path: Option<String>,
    /// `USE_B3` (default) or `USE_B3_WITH_W3C_PROPAGATION`.
    #[serde(default, alias = "trace_context_option")]
    pub trace_context_option: Option<String>,
    /// Export timeout (Istio default 5s).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: Option<Vec<HeaderValueSource>>,
}

/// `MeshConfig.DefaultProviders`: providers used where no `Telemetry` names one.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultProviders {
    /// Tracing providers (the first counts).
    #[serde(default)]
    pub tracing: Option<Vec<String>>,
    /// Metrics providers.
    #[serde(default)]
    pub metrics: Option<Vec<String>>,
    /// Access-log providers.
    #[serde(default, alias = "access_logging")]
    pub access_logging: Option<Vec<String>>,
}
