//! One hop's span: started when the request's listener is known (its context written to
//! the upstream request), finished when the request's completion runs, then handed to
//! the worker's batch ([`super::batch`]).
//!
//! Sampling follows Envoy under Istio: a caller's decision is kept; without one,
//! `randomSamplingPercentage` decides, keyed on `x-request-id` when
//! `useRequestIdForTraceSampling` is on so that every hop of a request decides alike.

use super::context::{self, Outgoing, Parent};
use http::header::{HeaderMap, HeaderValue};
use meshproxy_config::compile::telemetry::{TagValue, TracingPolicy};
use meshproxy_config::compile::trace_provider::TraceProvider;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Span kind (OpenTelemetry's `SpanKind`, Zipkin's `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A sidecar's inbound hop, a gateway's hop.
    Server,
    /// A sidecar's outbound hop.
    Client,
}

/// A span being recorded (only sampled spans of a reporting provider are).
#[derive(Debug)]
pub struct Span {
    /// Where it goes.
    pub provider: Arc<TraceProvider>,
    /// Trace id.
    pub trace_id: u128,
    /// This span.
    pub span_id: u64,
    /// The caller's span.
    pub parent_id: Option<u64>,
    /// Kind.
    pub kind: Kind,
    /// Operation name (Istio's route decorator: `host:port/*`).
    pub name: String,
    /// The workload's service (`<canonical service>.<namespace>`, OTLP's `service.name`,
    /// Zipkin's `localEndpoint.serviceName`).
    pub service: Arc<str>,
    /// Wall-clock start.
    pub start: SystemTime,
    /// Monotonic start, for the duration.
    pub started: Instant,
    /// Duration, once finished.
    pub duration: Duration,
    /// Tags (attributes).
    pub tags: Vec<(Cow<'static, str>, String)>,
    /// The response was a 5xx (or no response): error status.
    pub error: bool,
}

/// What the request path gets from [`start`]: the span to finish, if recorded.
pub struct Started {
    /// The span (sampled and reported), or `None`.
    pub span: Option<Box<Span>>,
}

/// A new non-zero id.
fn new_id() -> u64 {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return id;
        }
    }
}

/// The caller's context: W3C first, then B3, as the provider propagates.
pub fn incoming(policy: &TracingPolicy, h: &HeaderMap) -> Option<Parent> {
    let p = policy.provider.propagation;
    let w3c = || {
        h.get(&context::TRACEPARENT)
            .and_then(|v| context::parse_traceparent(v.as_bytes()))
    };
    let b3 = || context::parse_b3(h);
    match (p.w3c(), p.b3()) {
        (true, true) => b3().or_else(w3c),
        (true, false) => w3c(),
        _ => b3(),
    }
}

/// Istio: the decision without a caller's; with `useRequestIdForTraceSampling`, Envoy
/// keys the random draw on the request id (its first 8 hex digits, modulo 10,000 against
/// the percentage in hundredths), so hops that see the same id decide alike.
pub fn decide(policy: &TracingPolicy, request_id: Option<&HeaderValue>) -> bool {
    let threshold = (policy.sampling * 100.0).round() as u64;
    let keyed = request_id
        .filter(|_| policy.use_request_id)
        .and_then(|v| v.as_bytes().get(..8))
        .and_then(|hex| u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
    let draw = keyed.unwrap_or_else(|| fastrand::u64(..));
    draw % 10_000 < threshold
}

/// Starts this hop's span: decides sampling, writes the new context into `headers` (the
/// request that goes upstream), and returns the span when it is to be recorded.
pub fn start(
    policy: &TracingPolicy,
    kind: Kind,
    headers: &mut HeaderMap,
    service: &Arc<str>,
    name: impl FnOnce() -> String,
) -> Started {
    let parent = incoming(policy, headers);
    let request_id = headers.get(&crate::policy::headers::X_REQUEST_ID);
    let sampled = parent
        .as_ref()
        .and_then(|p| p.sampled)
        .unwrap_or_else(|| decide(policy, request_id));
    let (trace_id, parent_id, short_id) = match &parent {
        Some(p) if p.trace_id != 0 => (p.trace_id, Some(p.span_id), p.short_id),
        _ => {
            let short = policy.provider.trace_id_64;
            let hi = if short { 0 } else { new_id() as u128 };
            (hi << 64 | new_id() as u128, None, short)
        }
    };
    let out = Outgoing {
        trace_id,
        span_id: new_id(),
        parent_id,
        sampled,
        short_id,
    };
    if policy.propagate {
        let p = policy.provider.propagation;
        out.write(headers, p.w3c(), p.b3());
    }
    if !(sampled && policy.report) {
        return Started { span: None };
    }
    let mut tags = Vec::with_capacity(16 + policy.custom_tags.len());
    for (k, v) in &policy.custom_tags {
        let value = match v {
            TagValue::Fixed(s) => Some(s.to_string()),
            TagValue::Header(h, default) => headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| default.as_deref().map(str::to_string)),
        };
        if let Some(value) = value {
            tags.push((Cow::Owned(k.to_string()), value));
        }
    }
    Started {
        span: Some(Box::new(Span {
            provider: policy.provider.clone(),
            trace_id,
            span_id: out.span_id,
            parent_id,
            kind,
            name: name(),
            service: service.clone(),
            start: SystemTime::now(),
            started: Instant::now(),
            duration: Duration::ZERO,
            tags,
            error: false,
        })),
    }
}

impl Span {
    /// Adds a tag.
    pub fn tag(&mut self, key: &'static str, value: impl Into<String>) {
        self.tags.push((Cow::Borrowed(key), value.into()));
    }

    /// Ends the span with the request's outcome (Envoy's tags; `error` on a 5xx or no
    /// response at all).
    pub fn finish(&mut self, status: u16, flags: &str, request_bytes: u64, response_bytes: u64) {
        self.duration = self.started.elapsed();
        let mut code = itoa::Buffer::new();
        self.tag("http.status_code", code.format(status));
        self.tag("response_flags", flags);
        self.tag("request_size", code.format(request_bytes));
        self.tag("response_size", code.format(response_bytes));
        if status >= 500 || status == 0 {
            self.error = true;
            self.tag("error", "true");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshproxy_config::compile::trace_provider::{ExportProtocol, Propagation};

    fn policy(sampling: f64, propagation: Propagation) -> TracingPolicy {
        TracingPolicy {
            provider: Arc::new(TraceProvider {
                name: "t".into(),
                protocol: ExportProtocol::OtlpGrpc,
                propagation,
                host: "h".into(),
                port: 1,
                addresses: vec![],
                max_tag_length: 256,
                timeout: Duration::from_secs(1),
                headers: vec![],
                trace_id_64: false,
            }),
            sampling,
            custom_tags: vec![],
            report: true,
            use_request_id: true,
            istio_tags: true,
            propagate: true,
        }
    }

    #[test]
    fn a_parent_decision_is_kept_and_the_trace_continued() {
        let p = policy(0.0, Propagation::W3c);
        let mut h = HeaderMap::new();
        h.insert(
            &context::TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let s = start(&p, Kind::Server, &mut h, &"svc".into(), || "n".into())
            .span
            .expect("sampled");
        assert_eq!(s.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(s.parent_id, Some(0x00f067aa0ba902b7));
        let written = context::parse_traceparent(h[&context::TRACEPARENT].as_bytes()).unwrap();
        assert_eq!(written.span_id, s.span_id);
        assert_eq!(written.sampled, Some(true));
    }

    #[test]
    fn unsampled_requests_propagate_the_decision_without_a_span() {
        let p = policy(0.0, Propagation::B3);
        let mut h = HeaderMap::new();
        assert!(
            start(&p, Kind::Client, &mut h, &"svc".into(), || "n".into())
                .span
                .is_none()
        );
        assert_eq!(h[&context::B3_SAMPLED], "0");
        assert_eq!(h[&context::B3_TRACE_ID].len(), 32);
    }

    #[test]
    fn the_request_id_decides_alike_on_every_hop() {
        let p = policy(10.0, Propagation::W3c);
        let mut sampled = 0;
        for _ in 0..2000 {
            let id = HeaderValue::from_str(&format!("{:032x}", fastrand::u128(..))).unwrap();
            let first = decide(&p, Some(&id));
            assert_eq!(first, decide(&p, Some(&id)));
            sampled += first as u32;
        }
        assert!((140..=260).contains(&sampled), "{sampled} of 2000 at 10%");
    }
}
