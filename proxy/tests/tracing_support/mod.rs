//! Test support for tracing: span receivers (an OTLP/gRPC receiver made from the official
//! protobuf definitions in Python, a Zipkin v2 receiver), applications that forward the
//! trace headers as Istio's docs ask, and a chain of in-process sidecars
//! (productpage → reviews → ratings).
#![allow(dead_code)]

use crate::common::Proxy;
use crate::pyenv;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use meshproxy::access_log::AccessLog;
use meshproxy::server::{Options, Server};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Headers an application forwards from its inbound request to its outbound calls
/// (Istio's "Trace context propagation" list).
pub const FORWARDED: &[&str] = &[
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
];

/// Spans a receiver got, each normalized to the OTLP receiver's JSON line shape.
#[derive(Clone, Default)]
pub struct Spans(Arc<Mutex<Vec<Value>>>);

impl Spans {
    /// Everything received so far.
    pub fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until at least `n` spans arrived; then what arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.0.lock().unwrap().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.all()
    }

    /// The spans of trace `id`.
    pub fn trace(&self, id: &str) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|s| s["trace_id"] == id)
            .collect()
    }
}

/// The OTLP receiver process; stopped on drop.
pub struct OtlpReceiver {
    child: Child,
    /// Its port.
    pub port: u16,
    /// What it received.
    pub spans: Spans,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the OTLP/gRPC receiver, or says why it cannot run here.
pub fn otlp_receiver() -> Result<OtlpReceiver, String> {
    otlp_receiver_with(&[])
}

/// Starts the OTLP/HTTP receiver (`POST /v1/traces`), or says why it cannot run here.
pub fn otlp_http_receiver() -> Result<OtlpReceiver, String> {
    otlp_receiver_with(&["--http"])
}

fn otlp_receiver_with(args: &[&str]) -> Result<OtlpReceiver, String> {
    let py = pyenv::find("grpc, opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc")?;
    let mut child = Command::new(py)
        .arg(pyenv::script("otlp_receiver.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .ok_or("receiver exited")?
        .map_err(|e| e.to_string())?;
    let port = first
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("unexpected first line {first:?}"))?;
    let spans = Spans::default();
    let sink = spans.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                sink.0.lock().unwrap().push(v);
            }
        }
    });
    // Keep stdin open: the receiver runs until it closes.
    let _ = child.stdin.as_mut().map(|s| s.flush());
    Ok(OtlpReceiver { child, port, spans })
}

/// A Zipkin v2 receiver (`POST /api/v2/spans`, a JSON array); its spans normalized to the
/// OTLP line shape (`tags` → `attributes`, `id` → `span_id`, kinds as OTLP names).
pub async fn zipkin_receiver() -> (u16, Spans) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let spans = Spans::default();
    let sink = spans.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let ok = req.uri().path() == "/api/v2/spans"
                            && req.headers()["content-type"] == "application/json";
                        let body = req.into_body().collect().await?.to_bytes();
                        let list: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
                        for z in list {
                            sink.0.lock().unwrap().push(normalize_zipkin(z));
                        }
                        let status = if ok { 202 } else { 400 };
                        let mut resp = Response::new(Full::new(Bytes::new()));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, hyper::Error>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (port, spans)
}

fn normalize_zipkin(z: Value) -> Value {
    let kind = match z["kind"].as_str() {
        Some("SERVER") => "SPAN_KIND_SERVER",
        Some("CLIENT") => "SPAN_KIND_CLIENT",
        _ => "SPAN_KIND_UNSPECIFIED",
    };
    let start = z["timestamp"].as_u64().unwrap_or(0) * 1000;
    serde_json::json!({
        "trace_id": z["traceId"],
        "span_id": z["id"],
        "parent_span_id": z["parentId"].as_str().unwrap_or(""),
        "name": z["name"],
        "kind": kind,
        "start": start,
        "end": start + z["duration"].as_u64().unwrap_or(0) * 1000,
        "status": if z["tags"]["error"] == "true" { "STATUS_CODE_ERROR" } else { "STATUS_CODE_UNSET" },
        "service": z["localEndpoint"]["serviceName"],
        "attributes": z["tags"],
    })
}

/// An application: answers `hello from <name>`; with a `next` host, first calls it (GET /
/// on port 9080) through its sidecar's outbound listener, forwarding [`FORWARDED`].
pub async fn app(
    name: &'static str,
    next: Option<(&'static str, Arc<OnceLock<SocketAddr>>)>,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let next = Arc::new(next);
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let next = next.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let next = next.clone();
                    async move {
                        let mut status = 200;
                        if let Some((host, outbound)) = next.as_ref() {
                            let addr = *outbound.get().expect("sidecar started");
                            let fwd: Vec<(&str, &str)> = FORWARDED
                                .iter()
                                .filter_map(|h| Some((*h, req.headers().get(*h)?.to_str().ok()?)))
                                .collect();
                            let r = crate::common::send(
                                addr,
                                "GET",
                                &format!("{host}:9080"),
                                "/",
                                &fwd,
                                Bytes::new(),
                                false,
                            )
                            .await;
                            status = r.status;
                        }
                        let mut resp =
                            Response::new(Full::new(Bytes::from(format!("hello from {name}"))));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// How the sidecars export: the provider document lines and the collector's port.
pub struct Export {
    /// `extensionProviders` entry (YAML flow), e.g. `{name: otel, opentelemetry: {...}}`.
    pub provider: String,
    /// The collector's real port (its ServiceEntry endpoint).
    pub port: u16,
    /// The service port the provider names.
    pub service_port: u16,
}

impl Export {
    /// OTLP/gRPC to `port`.
    pub fn otlp(port: u16) -> Export {
        Export {
            provider: "{name: otel, opentelemetry: {service: otel-collector.observability.svc.cluster.local, port: 4317}}".into(),
            port,
            service_port: 4317,
        }
    }

    /// Zipkin to `port`.
    pub fn zipkin(port: u16) -> Export {
        Export {
            provider: "{name: otel, zipkin: {service: otel-collector.observability.svc.cluster.local, port: 9411}}".into(),
            port,
            service_port: 9411,
        }
    }
}

/// GET / on `addr`, for `host`, with `headers` (HTTP/1.1).
pub async fn get(addr: SocketAddr, host: &str, headers: &[(&str, &str)]) -> crate::common::Reply {
    crate::common::send(addr, "GET", host, "/", headers, Bytes::new(), false).await
}

/// A `Proxy.spec` line naming the Zipkin provider `zipkin` (its collector:
/// [`zipkin_collector`]).
pub const ZIPKIN_PROVIDER: &str = "  extensionProviders: [{name: zipkin, zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}}]\n";

/// The ServiceEntry that puts [`ZIPKIN_PROVIDER`]'s collector on 127.0.0.1:`port`.
pub fn zipkin_collector(port: u16) -> String {
    entry(
        "zipkin",
        "zipkin.istio-system.svc.cluster.local",
        9411,
        "TCP",
        port,
    )
}

/// A service entry for `host` on `port` → 127.0.0.1:`target`.
pub fn entry(name: &str, host: &str, port: u16, proto: &str, target: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: istio-system}}\nspec:\n  hosts: [{host}]\n  ports: [{{number: {port}, name: p, protocol: {proto}}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{p: {target}}}}}]\n---\n"
    )
}

/// One sidecar of the chain.
pub fn sidecar(
    name: &str,
    app: SocketAddr,
    next: Option<(&str, u16)>,
    export: &Export,
    telemetry: &str,
) -> Proxy {
    let mut yaml = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  workload: {{labels: {{app: {name}, version: v1}}}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n  - {{name: inbound, address: \"127.0.0.1:0\", direction: INBOUND, forwardTo: \"{app}\"}}\n  extensionProviders: [{}]\n---\n{}{telemetry}",
        export.provider,
        entry("collector", "otel-collector.observability.svc.cluster.local", export.service_port, "TCP", export.port),
    );
    if let Some((host, port)) = next {
        yaml.push_str(&entry(
            host,
            &format!("{host}.default.svc.cluster.local"),
            9080,
            "HTTP",
            port,
        ));
    }
    let snap = meshproxy_config::compile::load_str("t.yaml", &yaml)
        .unwrap_or_else(|d| panic!("config refused:\n{d}"));
    let server = Server::start(snap, Options::default(), AccessLog::disabled()).expect("starts");
    let addr = server.addr("inbound").expect("inbound");
    Proxy { server, addr }
}

/// A mesh-wide Telemetry that traces with provider `otel` at `sampling` percent.
pub fn mesh_tracing(sampling: f64) -> String {
    format!(
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: mesh-default, namespace: istio-system}}\nspec:\n  tracing:\n  - providers: [{{name: otel}}]\n    randomSamplingPercentage: {sampling}\n---\n"
    )
}

/// productpage → reviews → ratings, each behind its sidecar; requests enter at
/// `entry` (productpage's inbound listener).
pub struct Chain {
    /// The three sidecars (productpage, reviews, ratings).
    pub sidecars: Vec<Proxy>,
    /// productpage's inbound listener.
    pub entry: SocketAddr,
}

/// Builds the chain, every sidecar with `telemetry` documents.
pub async fn chain(export: &Export, telemetry: &str) -> Chain {
    let ratings_app = app("ratings", None).await;
    let ratings = sidecar("ratings", ratings_app, None, export, telemetry);
    let reviews_out = Arc::new(OnceLock::new());
    let reviews_app = app("reviews", Some(("ratings", reviews_out.clone()))).await;
    let reviews = sidecar(
        "reviews",
        reviews_app,
        Some(("ratings", ratings.addr.port())),
        export,
        telemetry,
    );
    let _ = reviews_out.set(reviews.server.addr("outbound").expect("outbound"));
    let pp_out = Arc::new(OnceLock::new());
    let pp_app = app("productpage", Some(("reviews", pp_out.clone()))).await;
    let pp = sidecar(
        "productpage",
        pp_app,
        Some(("reviews", reviews.addr.port())),
        export,
        telemetry,
    );
    let _ = pp_out.set(pp.server.addr("outbound").expect("outbound"));
    let entry = pp.addr;
    Chain {
        sidecars: vec![pp, reviews, ratings],
        entry,
    }
}
