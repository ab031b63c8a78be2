//! Telemetry: Istio's standard metrics and meshproxy's own state, in Prometheus format.

pub mod istio;
pub mod labels;
pub mod log_filter;
pub mod peers;
pub mod process;
