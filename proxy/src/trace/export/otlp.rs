//! OTLP trace export (https://opentelemetry.io/docs/specs/otlp/): spans as an
//! `ExportTraceServiceRequest`, the message types generated from the official protobuf
//! definitions (`opentelemetry-proto`), sent as gRPC (`TraceService/Export`) or as an
//! HTTP/protobuf POST.

use super::super::span::{Kind, Span};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Status};
use prost::Message;
use std::time::UNIX_EPOCH;

/// The gRPC method path of OTLP's trace service.
pub const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

fn nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn otlp_span(s: &Span, max_tag: usize) -> opentelemetry_proto::tonic::trace::v1::Span {
    let start = nanos(s.start);
    let kind = match s.kind {
        Kind::Server => span::SpanKind::Server,
        Kind::Client => span::SpanKind::Client,
    };
    opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: s.trace_id.to_be_bytes().to_vec(),
        span_id: s.span_id.to_be_bytes().to_vec(),
        parent_span_id: s
            .parent_id
            .map(|p| p.to_be_bytes().to_vec())
            .unwrap_or_default(),
        name: s.name.clone(),
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + u64::try_from(s.duration.as_nanos()).unwrap_or(0),
        attributes: s
            .tags
            .iter()
            .map(|(k, v)| string(k, super::truncate(v, max_tag)))
            .collect(),
        status: Some(Status {
            code: if s.error {
                status::StatusCode::Error
            } else {
                status::StatusCode::Unset
            } as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The request body for `spans` (one resource per service name).
pub fn encode(spans: &[Span], max_tag: usize) -> Vec<u8> {
    let mut by_service: Vec<ResourceSpans> = Vec::new();
    for s in spans {
        let i = match by_service.iter().position(|r| {
            r.resource
                .as_ref()
                .and_then(|r| r.attributes.first())
                .and_then(|a| a.value.as_ref())
                == Some(&AnyValue {
                    value: Some(any_value::Value::StringValue(s.service.to_string())),
                })
        }) {
            Some(i) => i,
            None => {
                by_service.push(ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![string("service.name", &s.service)],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "meshproxy".into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                });
                by_service.len() - 1
            }
        };
        by_service[i].scope_spans[0]
            .spans
            .push(otlp_span(s, max_tag));
    }
    ExportTraceServiceRequest {
        resource_spans: by_service,
    }
    .encode_to_vec()
}

/// `body` as one uncompressed gRPC message (gRPC over HTTP/2: a 1-byte compressed flag
/// and a 4-byte big-endian length before the message).
pub fn grpc_frame(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}
