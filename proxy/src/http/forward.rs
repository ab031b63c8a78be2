//! One upstream attempt: open or reuse a connection to the chosen endpoint, send the
//! request, and classify what happened.

use super::body::RequestBody;
use super::flags::Flags;
use crate::policy::retry::Outcome;
use crate::upstream::cluster_state::{ActiveRequest, EndpointState};
use crate::upstream::connect::{connect, ConnectError};
use crate::upstream::pool::{H1Lease, H1Sender, H2Sender};
use http::header::{HeaderMap, HeaderValue, HOST};
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use meshproxy_config::compile::cluster::{Cluster, EndpointAddress};
use std::sync::Arc;
use std::time::Duration;

/// The request as it goes upstream (rebuilt for every attempt).
pub struct UpstreamHead {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub path_and_query: String,
    /// Authority to send (`Host` / `:authority`).
    pub authority: HeaderValue,
    /// Headers (hop-by-hop already removed).
    pub headers: HeaderMap,
}

/// A successful attempt.
pub struct Attempt {
    /// The response.
    pub response: Response<Incoming>,
    /// The endpoint that answered.
    pub endpoint: Arc<EndpointState>,
    /// The HTTP/1.1 connection, to return to the pool when the body ends.
    pub lease: Option<H1Lease>,
    /// Active-request accounting.
    pub active: ActiveRequest,
}

/// A failed attempt.
#[derive(Debug)]
pub struct Failure {
    /// For the retry decision.
    pub outcome: Outcome,
    /// Response flags it implies.
    pub flags: Flags,
    /// The endpoint tried, if any.
    pub endpoint: Option<String>,
    /// Envoy-style reason, for the local reply body and logs.
    pub detail: String,
}

enum Sender {
    H1(H1Sender, u32),
    H2(H2Sender),
}

/// Sends `head` + `body` to endpoint `ep` of `cluster`, over HTTP/2 when `h2`.
pub async fn send(
    cluster: &Cluster,
    ep: &Arc<EndpointState>,
    head: &UpstreamHead,
    body: RequestBody,
    h2: bool,
    per_try: Option<Duration>,
) -> Result<Attempt, Failure> {
    let active = ep.start_request();
    let fut = send_inner(cluster, ep, head, body, h2);
    let result = match per_try {
        Some(t) => match tokio::time::timeout(t, fut).await {
            Ok(r) => r,
            Err(_) => Err(Failure {
                outcome: Outcome::Timeout,
                flags: Flags::UPSTREAM_REQUEST_TIMEOUT,
                endpoint: Some(ep.name.clone()),
                detail: "upstream per-try timeout".into(),
            }),
        },
        None => fut.await,
    };
    result.map(|(response, lease)| Attempt {
        response,
        endpoint: ep.clone(),
        lease,
        active,
    })
}

fn build(head: &UpstreamHead, body: RequestBody, h2: bool) -> Request<RequestBody> {
    let mut headers = head.headers.clone();
    let uri = if h2 {
        headers.remove(HOST);
        let auth = head.authority.to_str().unwrap_or("");
        Uri::builder()
            .scheme("http")
            .authority(auth)
            .path_and_query(head.path_and_query.as_str())
            .build()
            .unwrap_or_else(|_| Uri::from_static("/"))
    } else {
        headers.insert(HOST, head.authority.clone());
        head.path_and_query
            .parse::<Uri>()
            .unwrap_or_else(|_| Uri::from_static("/"))
    };
    let mut req = Request::new(body);
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = if h2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    *req.headers_mut() = headers;
    req
}

async fn send_inner(
    cluster: &Cluster,
    ep: &Arc<EndpointState>,
    head: &UpstreamHead,
    body: RequestBody,
    h2: bool,
) -> Result<(Response<Incoming>, Option<H1Lease>), Failure> {
    let mut req = build(head, body, h2);
    // A pooled connection may have been closed by the peer while idle; such a request
    // was never written, so it is re-sent on a fresh connection (once).
    for fresh in [false, true] {
        let sender = checkout(cluster, ep, h2, fresh).await?;
        match sender {
            Sender::H1(mut s, served) => match s.try_send_request(req).await {
                Ok(resp) => {
                    return Ok((
                        resp,
                        Some(H1Lease {
                            sender: s,
                            served: served + 1,
                        }),
                    ))
                }
                Err(mut e) => match e.take_message() {
                    Some(back) if !fresh => req = back,
                    _ => return Err(classify(e.into_error(), ep)),
                },
            },
            Sender::H2(mut s) => match s.try_send_request(req).await {
                Ok(resp) => return Ok((resp, None)),
                Err(mut e) => match e.take_message() {
                    Some(back) if !fresh => req = back,
                    _ => return Err(classify(e.into_error(), ep)),
                },
            },
        }
    }
    Err(Failure {
        outcome: Outcome::ResetBeforeRequest,
        flags: Flags::UPSTREAM_CONNECTION_TERMINATION,
        endpoint: Some(ep.name.clone()),
        detail: "upstream connect error or disconnect/reset before headers. reset reason: connection termination".into(),
    })
}

fn connect_failure(ep: &EndpointState, e: impl std::fmt::Display) -> Failure {
    Failure {
        outcome: Outcome::ConnectFailure,
        flags: Flags::UPSTREAM_CONNECTION_FAILURE,
        endpoint: Some(ep.name.clone()),
        detail: format!(
            "upstream connect error or disconnect/reset before headers. reset reason: {e}"
        ),
    }
}

async fn checkout(
    cluster: &Cluster,
    ep: &Arc<EndpointState>,
    h2: bool,
    fresh: bool,
) -> Result<Sender, Failure> {
    if !fresh {
        if h2 {
            if let Some(s) = ep.pool.h2() {
                return Ok(Sender::H2(s));
            }
        } else if let Some(l) = ep.pool.take_h1(cluster.pool.http_idle_timeout) {
            return Ok(Sender::H1(l.sender, l.served));
        }
    }
    let pool = &cluster.pool;
    match &ep.address {
        EndpointAddress::Socket(a) => {
            let stream = connect(*a, pool.connect_timeout, pool.tcp_keepalive.as_ref())
                .await
                .map_err(|e| connect_failure(ep, e))?;
            handshake(TokioIo::new(stream), ep, h2).await
        }
        EndpointAddress::Dns(host, port) => {
            let a = crate::upstream::dns::resolve(host, *port)
                .await
                .map_err(|e| {
                    let mut f = connect_failure(ep, format!("DNS resolution failed: {e}"));
                    f.flags = Flags::UPSTREAM_CONNECTION_FAILURE | Flags::DNS_RESOLUTION_FAILED;
                    f
                })?;
            let stream = connect(a, pool.connect_timeout, pool.tcp_keepalive.as_ref())
                .await
                .map_err(|e| connect_failure(ep, e))?;
            handshake(TokioIo::new(stream), ep, h2).await
        }
        EndpointAddress::Unix(path) => {
            let stream = match tokio::time::timeout(
                pool.connect_timeout,
                tokio::net::UnixStream::connect(path),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(connect_failure(ep, ConnectError::Io(e))),
                Err(_) => return Err(connect_failure(ep, ConnectError::Timeout)),
            };
            handshake(TokioIo::new(stream), ep, h2).await
        }
    }
}

async fn handshake<IO>(io: IO, ep: &Arc<EndpointState>, h2: bool) -> Result<Sender, Failure>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if h2 {
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(|e| connect_failure(ep, format!("HTTP/2 handshake: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream h2 connection ended");
            }
        });
        ep.pool.set_h2(sender.clone());
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| connect_failure(ep, format!("HTTP/1.1 handshake: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream h1 connection ended");
            }
        });
        Ok(Sender::H1(sender, 0))
    }
}

/// Maps a hyper client error to a retry outcome and Envoy flags.
fn classify(e: hyper::Error, ep: &EndpointState) -> Failure {
    let endpoint = Some(ep.name.clone());
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = src {
        if let Some(h2e) = s.downcast_ref::<h2::Error>() {
            if h2e.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return Failure {
                    outcome: Outcome::RefusedStream,
                    flags: Flags::UPSTREAM_REMOTE_RESET,
                    endpoint,
                    detail: "upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset".into(),
                };
            }
            if h2e.is_reset() {
                return Failure {
                    outcome: Outcome::Reset,
                    flags: Flags::UPSTREAM_REMOTE_RESET,
                    endpoint,
                    detail: "upstream connect error or disconnect/reset before headers. reset reason: remote reset".into(),
                };
            }
        }
        src = s.source();
    }
    if e.is_parse() {
        return Failure {
            outcome: Outcome::ProtocolError,
            flags: Flags::UPSTREAM_PROTOCOL_ERROR,
            endpoint,
            detail: format!("upstream protocol error: {e}"),
        };
    }
    Failure {
        outcome: if e.is_canceled() { Outcome::ResetBeforeRequest } else { Outcome::Reset },
        flags: Flags::UPSTREAM_CONNECTION_TERMINATION,
        endpoint,
        detail: "upstream connect error or disconnect/reset before headers. reset reason: connection termination".into(),
    }
}
