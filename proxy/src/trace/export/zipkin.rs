//! Zipkin v2 JSON export (https://zipkin.io/zipkin-api/#/default/post_spans): a JSON
//! array of spans POSTed to the collector's `/api/v2/spans`.

use super::super::span::{Kind, Span};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ZipkinSpan<'a> {
    trace_id: String,
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<String>,
    name: &'a str,
    kind: &'static str,
    timestamp: u64,
    duration: u64,
    local_endpoint: Endpoint<'a>,
    tags: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint<'a> {
    service_name: &'a str,
}

fn hex(v: u128, digits: usize) -> String {
    let mut buf = [0u8; 32];
    super::super::context::write_hex(&mut buf[..digits], v);
    String::from_utf8_lossy(&buf[..digits]).into_owned()
}

/// The request body for `spans`.
pub fn encode(spans: &[Span], max_tag: usize, trace_id_64: bool) -> Vec<u8> {
    let list: Vec<ZipkinSpan> = spans
        .iter()
        .map(|s| {
            let timestamp = s
                .start
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            // Zipkin: 64-bit ids are 16 hex digits; a 128-bit trace id 32.
            let short = trace_id_64 || s.trace_id >> 64 == 0;
            ZipkinSpan {
                trace_id: if short {
                    hex(s.trace_id & u64::MAX as u128, 16)
                } else {
                    hex(s.trace_id, 32)
                },
                id: hex(s.span_id as u128, 16),
                parent_id: s.parent_id.map(|p| hex(p as u128, 16)),
                name: &s.name,
                kind: match s.kind {
                    Kind::Server => "SERVER",
                    Kind::Client => "CLIENT",
                },
                timestamp,
                // Zipkin: a duration under 1 µs is written as 1.
                duration: (s.duration.as_micros() as u64).max(1),
                local_endpoint: Endpoint {
                    service_name: &s.service,
                },
                tags: s
                    .tags
                    .iter()
                    .map(|(k, v)| (k.as_ref(), super::truncate(v, max_tag)))
                    .collect(),
            }
        })
        .collect();
    serde_json::to_vec(&list).unwrap_or_default()
}
