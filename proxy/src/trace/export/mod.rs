//! The exporter thread: batches from the workers, grouped by provider, encoded (OTLP or
//! Zipkin) and sent to the collector off the request path. A failed export drops its
//! spans and counts them (Envoy's tracers do not retry either); the next batch tries
//! again.

mod otlp;
mod zipkin;

use super::batch::Counters;
use super::span::Span;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshproxy_config::compile::trace_provider::{ExportProtocol, TraceProvider};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

/// Spans sent in one export request at most.
const EXPORT_SPANS: usize = 512;

/// `v` cut to at most `max` bytes, on a character boundary (`maxTagLength`).
fn truncate(v: &str, max: usize) -> &str {
    if v.len() <= max {
        return v;
    }
    let mut end = max;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    &v[..end]
}

/// Runs until every sender is gone.
pub fn run(rx: Receiver<Vec<Span>>, counters: Arc<Counters>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("span exporter: no runtime: {e}");
            return;
        }
    };
    while let Ok(first) = rx.recv() {
        let mut groups: Vec<(Arc<TraceProvider>, Vec<Span>)> = Vec::new();
        let mut add = |batch: Vec<Span>| {
            for s in batch {
                match groups.iter_mut().find(|(p, _)| **p == *s.provider) {
                    Some((_, v)) => v.push(s),
                    None => groups.push((s.provider.clone(), vec![s])),
                }
            }
        };
        add(first);
        while let Ok(more) = rx.try_recv() {
            add(more);
        }
        for (provider, spans) in groups {
            for chunk in spans.chunks(EXPORT_SPANS) {
                let n = chunk.len() as u64;
                match rt.block_on(export(&provider, chunk)) {
                    Ok(()) => counters.exported.fetch_add(n, Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!(provider = %provider.name, "span export failed: {e}");
                        counters.dropped.fetch_add(n, Ordering::Relaxed)
                    }
                };
            }
        }
    }
}

async fn export(p: &TraceProvider, spans: &[Span]) -> Result<(), String> {
    let (path, content_type, body, grpc) = match &p.protocol {
        ExportProtocol::OtlpGrpc => (
            otlp::GRPC_PATH,
            "application/grpc",
            otlp::grpc_frame(otlp::encode(spans, p.max_tag_length)),
            true,
        ),
        ExportProtocol::OtlpHttp { path } => (
            path.as_str(),
            "application/x-protobuf",
            otlp::encode(spans, p.max_tag_length),
            false,
        ),
        ExportProtocol::Zipkin { path } => (
            path.as_str(),
            "application/json",
            zipkin::encode(spans, p.max_tag_length, p.trace_id_64),
            false,
        ),
    };
    tokio::time::timeout(p.timeout, post(p, path, content_type, body, grpc))
        .await
        .map_err(|_| format!("no answer within {:?}", p.timeout))?
}

/// The collector's addresses: the registry's, else the host resolved now.
async fn addresses(p: &TraceProvider) -> Result<Vec<SocketAddr>, String> {
    if !p.addresses.is_empty() {
        return Ok(p.addresses.clone());
    }
    tokio::net::lookup_host((p.host.as_str(), p.port))
        .await
        .map(Iterator::collect)
        .map_err(|e| format!("cannot resolve {}: {e}", p.host))
}

async fn connect(p: &TraceProvider) -> Result<tokio::net::TcpStream, String> {
    let mut last = format!("no address for {}", p.host);
    for a in addresses(p).await? {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = format!("connect {a}: {e}"),
        }
    }
    Err(last)
}

async fn post(
    p: &TraceProvider,
    path: &str,
    content_type: &'static str,
    body: Vec<u8>,
    grpc: bool,
) -> Result<(), String> {
    let stream = TokioIo::new(connect(p).await?);
    let authority = format!("{}:{}", p.host, p.port);
    let mut req = http::Request::post(format!("http://{authority}{path}"))
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    if grpc {
        req.headers_mut()
            .insert("te", http::HeaderValue::from_static("trailers"));
    } else {
        // HTTP/1.1 needs `Host`; HTTP/2 takes the URI's authority.
        if let Ok(h) = http::HeaderValue::from_str(&authority) {
            req.headers_mut().insert(http::header::HOST, h);
        }
    }
    for (k, v) in &p.headers {
        req.headers_mut().insert(k.clone(), v.clone());
    }
    let resp = if grpc {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), stream)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        *req.uri_mut() = path
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(stream)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| e.to_string())?
    };
    let status = resp.status();
    let grpc_header = resp.headers().get("grpc-status").cloned();
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("collector answered {status}"));
    }
    if grpc {
        let code = grpc_header.or_else(|| {
            collected
                .trailers()
                .and_then(|t| t.get("grpc-status").cloned())
        });
        match code.as_ref().map(|c| c.as_bytes()) {
            Some(b"0") => {}
            Some(c) => {
                return Err(format!(
                    "collector answered grpc-status {}",
                    String::from_utf8_lossy(c)
                ))
            }
            None => return Err("collector answered without grpc-status".into()),
        }
    }
    Ok(())
}
