//! Telemetry `accessLogging[].filter.expression`: a CEL expression over Envoy's request
//! attributes (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes),
//! evaluated on the finished request's access-log record. As Envoy's CEL access-log
//! filter, an expression that fails to evaluate, or yields anything but `true`, does not
//! log the request. The attributes offered are those the record holds (docs/telemetry.md
//! lists them); `request.headers`, `response.headers` and `request.duration` are not
//! among them.

use crate::access_log::Record;
use cel::{Context, Value};
use meshproxy_config::compile::telemetry::LogFilter;
use std::collections::HashMap;

/// Writes `rec` to `log` if `filter` (the side's Telemetry filter, if any) admits it.
pub fn log(log: &crate::access_log::AccessLog, filter: Option<&LogFilter>, rec: &Record) {
    if filter.is_none_or(|f| admits(f, rec)) {
        log.log(rec);
    }
}

/// True when `rec` is to be logged.
pub fn admits(filter: &LogFilter, rec: &Record) -> bool {
    let mut ctx = Context::default();
    let mut request: HashMap<&str, Value> = HashMap::new();
    let path = rec.path.as_ref().map_or("/", |p| p.as_str());
    request.insert("path", path.into());
    let url_path = path.split('?').next().unwrap_or(path);
    request.insert("url_path", url_path.into());
    if let Some(q) = rec.path.as_ref().and_then(|p| p.query()) {
        request.insert("query", q.into());
    }
    request.insert("host", rec.authority.as_str().into());
    if let Some(m) = &rec.method {
        request.insert("method", m.as_str().into());
    }
    request.insert("protocol", rec.protocol.into());
    let header = |v: &Option<http::HeaderValue>| {
        v.as_ref()
            .and_then(|v| v.to_str().ok())
            .map(|s| Value::from(s.to_string()))
    };
    if let Some(ua) = header(&rec.user_agent) {
        request.insert("useragent", ua);
    }
    if let Some(id) = header(&rec.request_id) {
        request.insert("id", id);
    }
    request.insert("size", (rec.bytes_received as i64).into());
    let mut response: HashMap<&str, Value> = HashMap::new();
    if rec.status != 0 {
        response.insert("code", i64::from(rec.status).into());
    }
    response.insert("flags", (rec.flags.to_string()).into());
    response.insert("code_details", rec.details.into());
    response.insert("size", (rec.bytes_sent as i64).into());
    let mut xds: HashMap<&str, Value> = HashMap::new();
    xds.insert("cluster_name", (*rec.upstream_cluster).into());
    xds.insert("route_name", (*rec.route_name).into());
    ctx.add_variable_from_value("request", request);
    ctx.add_variable_from_value("response", response);
    ctx.add_variable_from_value("xds", xds);
    matches!(filter.program.execute(&ctx), Ok(Value::Bool(true)))
}
