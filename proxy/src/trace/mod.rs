//! Distributed tracing (docs/telemetry.md): the trace context read from and written to
//! requests ([`context`]), one span per hop ([`span`]), per-worker batches
//! ([`batch`]) and the exporter thread that sends them as OTLP or Zipkin ([`export`]).

pub mod batch;
pub mod context;
mod export;
pub mod span;

pub use batch::Tracer;
