//! One request's bookkeeping as it moves through the request path: the config snapshot it
//! started under, its connection, the access-log record and metric labels, the request
//! body, and the local replies every step can end it with. Whatever ends the request —
//! a reply made here, an upstream response's body, or the request being dropped — writes
//! the one access-log line and the metrics through [`RequestDone`].

use super::completion::RequestDone;
use super::local_reply;
use super::upgrade;
use crate::access_log::Record;
use crate::body::downstream_fault::DownstreamFault;
use crate::body::{BodyTap, Completion, ResponseBody};
use crate::conn_info::ConnInfo;
use crate::flags::Flags;
use crate::runtime::active::Active;
use crate::runtime::DataPath;
use crate::telemetry::istio::RequestLabels;
use http::header::{self, HeaderValue};
use http::Response;
use std::sync::Arc;
use std::time::Instant;

/// A request in flight.
pub(super) struct Exchange {
    /// Process-wide state (access log, metrics).
    pub shared: Arc<DataPath>,
    /// The config the request runs under, loaded once at its start.
    pub active: Arc<Active>,
    /// Its connection.
    pub conn: Arc<ConnInfo>,
    /// When it started.
    pub started: Instant,
    /// The access-log record (`None` with the access log off, or once handed over).
    pub record: Option<Record>,
    /// The request body, when it has one.
    pub tap: Option<BodyTap>,
    /// The request is gRPC: local replies are trailers-only gRPC responses.
    pub grpc: bool,
    /// Istio metric labels (`None` with metrics off, or once handed over).
    pub labels: Option<RequestLabels>,
    /// The downstream upgrade, when the request asks for one (WebSocket). Dropped unused
    /// when the request ends in a local reply or the upstream does not answer 101.
    pub upgrade: Option<upgrade::Requested>,
    /// `spec.limits.streamIdleTimeout` of the config the request started under.
    pub stream_idle: std::time::Duration,
    /// What an internal sender asked of the router with `x-envoy-*` headers.
    pub overrides: Option<crate::policy::envoy_headers::Overrides>,
    /// This hop's span, when the request is traced and sampled.
    pub span: Option<Box<crate::trace::span::Span>>,
    /// Telemetry's access-log filter for the listener's side.
    pub log_filter: Option<Arc<meshproxy_config::compile::telemetry::LogFilter>>,
}

/// gRPC status `DEADLINE_EXCEEDED`.
pub(super) const GRPC_DEADLINE_EXCEEDED: u32 = 4;

impl Exchange {
    /// Hands the record and labels to the completion that will write them.
    pub fn done(&mut self, status: u16, flags: Flags) -> Box<RequestDone> {
        let mut record = self.record.take();
        if let Some(r) = record.as_mut() {
            r.status = status;
            r.flags.insert(flags);
        }
        Box::new(RequestDone {
            shared: self.shared.clone(),
            record,
            started: self.started,
            tap: self.tap.clone(),
            returnable: None,
            active: None,
            request_slot: None,
            status,
            flags,
            grpc_status: None,
            labels: self.labels.take(),
            span: self.span.take(),
            log_filter: self.log_filter.take(),
        })
    }

    /// A local reply with Envoy's body for `status`.
    pub fn reply(
        &mut self,
        status: u16,
        flags: Flags,
        details: &'static str,
        body: &str,
    ) -> Response<ResponseBody> {
        self.reply_grpc(status, flags, details, body, None)
    }

    /// A local reply that also closes an HTTP/1 connection (`Connection: close`): the
    /// request was refused for something the connection cannot be trusted after.
    pub fn reply_closing(
        &mut self,
        status: u16,
        flags: Flags,
        details: &'static str,
        body: &str,
    ) -> Response<ResponseBody> {
        let mut resp = self.reply(status, flags, details, body);
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }

    /// A local reply; to a gRPC caller, a trailers-only response with `grpc` as its
    /// status (default: Envoy's mapping of `status`), recorded as HTTP 200 with that
    /// `grpc_response_status`, as Envoy's local replies to gRPC requests are.
    pub fn reply_grpc(
        &mut self,
        status: u16,
        flags: Flags,
        details: &'static str,
        body: &str,
        grpc: Option<u32>,
    ) -> Response<ResponseBody> {
        if let Some(r) = self.record.as_mut() {
            r.details = details;
        }
        let (resp, done) = if self.grpc {
            let code = grpc.unwrap_or_else(|| local_reply::http_to_grpc_status(status));
            let mut done = self.done(200, flags);
            done.grpc_status = Some(code);
            (local_reply::grpc(code, body), done)
        } else {
            (
                local_reply::build(status, body, false),
                self.done(status, flags),
            )
        };
        let (parts, b) = resp.into_parts();
        Response::from_parts(parts, b.on_complete(done))
    }

    /// A circuit breaker refused the request: `503` at once, flag `UO`, the overloaded
    /// header (docs/contract.md §3), nothing sent upstream.
    pub fn overflow_reply(&mut self, flags: Flags) -> Response<ResponseBody> {
        let mut resp = self.reply(
            503,
            flags | Flags::UPSTREAM_OVERFLOW,
            "upstream_overflow",
            "upstream connect error or disconnect/reset before headers. reset reason: overflow",
        );
        resp.headers_mut().insert(
            local_reply::OVERLOADED.clone(),
            HeaderValue::from_static("true"),
        );
        resp
    }

    /// A redirect to `location` with status `code`.
    pub fn redirect_reply(&mut self, code: u16, location: &str) -> Response<ResponseBody> {
        let mut resp = Response::new(ResponseBody::empty());
        *resp.status_mut() =
            http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::MOVED_PERMANENTLY);
        if let Ok(v) = HeaderValue::from_str(location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        self.finish_local(resp, code, Flags::NONE)
    }

    /// Attaches the completion to a response made here (direct responses, CORS
    /// preflights, redirects), recorded with `status` and `flags`.
    pub fn finish_local(
        &mut self,
        resp: Response<ResponseBody>,
        status: u16,
        flags: Flags,
    ) -> Response<ResponseBody> {
        let done = self.done(status, flags);
        let (p, b) = resp.into_parts();
        Response::from_parts(p, b.on_complete(done))
    }

    /// The client failed while its request was being forwarded and no response has
    /// started: `400` with `Connection: close` for a broken or truncated body (RFC 9112
    /// §8), nothing to answer for a client that reset (recorded as Envoy records a
    /// downstream disconnect: code 0, flag `DC`); either way flagged as the client's fault.
    pub fn downstream_fault_reply(
        &mut self,
        fault: DownstreamFault,
        flags: Flags,
    ) -> Response<ResponseBody> {
        let flags = flags | fault.flags();
        if fault.status() == 0 {
            if let Some(r) = self.record.as_mut() {
                r.details = fault.details();
            }
            let mut resp = self.finish_local(local_reply::build(400, "", false), 0, flags);
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
        self.reply_closing(fault.status(), flags, fault.details(), "bad request")
    }

    /// Notes where the request went, for the access log (the config's names are shared,
    /// not copied).
    pub fn note_upstream(
        &mut self,
        cluster: impl Into<Arc<str>>,
        host: impl Into<Arc<str>>,
        route: impl Into<Arc<str>>,
    ) {
        if let Some(r) = self.record.as_mut() {
            r.upstream_cluster = cluster.into();
            r.upstream_host = host.into();
            r.route_name = route.into();
        }
    }
}

impl Drop for Exchange {
    /// A request whose future is dropped before a response was made: the client reset
    /// the stream or closed the connection while the proxy waited (for the upstream, a
    /// retry, a fault delay). Envoy logs and counts it with response code 0 and flag `DC`.
    fn drop(&mut self) {
        if self.record.is_none() && self.labels.is_none() {
            return;
        }
        let done = self.done(0, Flags::NONE);
        // `ended: false` without an error is what marks `DC`.
        Completion::complete(done, 0, false, None, None);
    }
}
