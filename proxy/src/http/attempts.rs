//! The attempts of one forwarded request: endpoint choice, each attempt sent
//! ([`super::forward::send`]), outlier detection fed inline, retries per the route's
//! policy within the cluster's retry budget, and the timeouts around them — the route
//! timeout over all attempts and Envoy's stream idle timeout while the response head is
//! awaited. A client's own fault ends the attempts at once and is booked against nobody.

use super::exchange::{Exchange, GRPC_DEADLINE_EXCEEDED};
use super::forward::{self, AttemptError, Failure, Transport, UpstreamHead};
use crate::body::downstream_fault::DownstreamFault;
use crate::body::{BodyTap, RequestBody, ResponseBody};
use crate::flags::Flags;
use crate::policy::{grpc_timeout, retry};
use crate::upstream::cluster_state::{ClusterState, EndpointState};
use crate::upstream::{lb, outlier};
use http::Response;
use meshproxy_config::compile::cluster::{Cluster, LoadBalancer};
use meshproxy_config::compile::route::RetryPolicy;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What endpoint selection needs from the request.
#[derive(Clone, Copy, Default)]
pub(super) struct Pick {
    /// Consistent-hash key.
    pub hash: Option<u64>,
    /// The original destination (PASSTHROUGH).
    pub original_dst: Option<SocketAddr>,
    /// Go to `original_dst` whatever the cluster's load balancer (an intercepted inbound
    /// connection to another port of the workload than `forwardTo`'s).
    pub pinned: bool,
}

/// Everything the attempts of one request need.
pub(super) struct Attempts<'a> {
    /// The cluster's compiled settings.
    pub cluster: &'a Cluster,
    /// Its live state (endpoints, pools, limits, outlier detection).
    pub state: &'a Arc<ClusterState>,
    /// The request head to send.
    pub head: &'a UpstreamHead,
    /// Pooled HTTP/1.1, HTTP/2, or a dedicated upgrade connection.
    pub transport: Transport,
    /// Endpoint choice inputs.
    pub pick: Pick,
    /// The retry policy.
    pub policy: &'a RetryPolicy,
    /// The route timeout (or a shorter gRPC deadline).
    pub timeout: Option<grpc_timeout::Deadline>,
}

/// Why the attempts ended without a response to relay.
enum Ended {
    /// The upstream side failed (after retries, if any).
    Upstream(Failure),
    /// The client failed: nothing was booked against the upstream.
    Downstream(DownstreamFault),
}

type AttemptResult = Result<(forward::Attempt, Flags), (Ended, Flags)>;

/// Runs attempts until one is final: retries per policy, the per-try timeout on each,
/// the route timeout over all of them (starting once the request body has been received,
/// as Envoy's route timeout does). Returns the response and the deadline that still
/// applies to its body, or the local reply to send.
pub(super) async fn run(
    x: &mut Exchange,
    a: Attempts<'_>,
    flags: &mut Flags,
) -> Result<(forward::Attempt, Option<tokio::time::Instant>), Response<ResponseBody>> {
    let tap = x.tap.clone();
    let timeout = a.timeout;
    let attempts = attempt_loop(&a, tap.as_ref());
    // Envoy's stream idle timeout, while the response head is awaited: nothing from the
    // upstream and no request bytes from the client for that long ends the request.
    let idle = idle_wait(x.stream_idle, tap.clone());
    let attempts = async {
        tokio::select! {
            r = attempts => Some(r),
            () = idle => None,
        }
    };
    let started = tokio::time::Instant::from_std(x.started);
    let outcome = match timeout {
        None => attempts.await,
        Some(d) => {
            let deadline = route_deadline(d, started, tap.clone());
            tokio::select! {
                r = attempts => r,
                () = deadline => {
                    // gRPC: DEADLINE_EXCEEDED, not the 504 mapping's UNAVAILABLE, which would
                    // invite a retry of an expired call (Envoy router, since 2026).
                    return Err(x.reply_grpc(504, *flags | Flags::UPSTREAM_REQUEST_TIMEOUT, "upstream_response_timeout", "upstream request timeout", Some(GRPC_DEADLINE_EXCEEDED)));
                }
            }
        }
    };
    let Some(outcome) = outcome else {
        // Envoy (ConnectionManagerImpl::onIdleTimeout): 408 "stream timeout", flag SI,
        // details stream_idle_timeout. It passes no gRPC status, so a gRPC caller gets
        // httpToGrpcStatus(408) = UNKNOWN, which `reply` applies (not DEADLINE_EXCEEDED).
        let flags = *flags | Flags::STREAM_IDLE_TIMEOUT;
        return Err(x.reply(408, flags, "stream_idle_timeout", "stream timeout"));
    };
    match outcome {
        Ok((att, extra)) => {
            flags.insert(extra);
            // The body deadline: the route timeout measured from the end of the request.
            let deadline = match (timeout, &tap) {
                (Some(d), _) if d.from_start => Some(started + d.after),
                (Some(d), None) => Some(started + d.after),
                (Some(d), Some(tap)) if tap.is_done() => {
                    Some(tokio::time::Instant::now() + d.after)
                }
                _ => None,
            };
            Ok((att, deadline))
        }
        Err((Ended::Downstream(fault), _)) => Err(x.downstream_fault_reply(fault, *flags)),
        Err((Ended::Upstream(f), extra)) => {
            flags.insert(extra | f.flags);
            Err(upstream_failure_reply(x, f, *flags))
        }
    }
}

/// The route timeout: from the request's start (a gRPC deadline), else from the end of
/// the request body (Envoy's route timeout starts at `onRequestComplete`).
async fn route_deadline(
    d: grpc_timeout::Deadline,
    started: tokio::time::Instant,
    tap: Option<BodyTap>,
) {
    if d.from_start {
        return tokio::time::sleep_until(started + d.after).await;
    }
    if let Some(tap) = &tap {
        tap.wait_done().await;
    }
    tokio::time::sleep(d.after).await;
}

/// The local reply for attempts that ended on an upstream failure.
fn upstream_failure_reply(x: &mut Exchange, f: Failure, flags: Flags) -> Response<ResponseBody> {
    if let Some(r) = x.record.as_mut() {
        r.upstream_host = f.endpoint.clone().unwrap_or_default();
    }
    if f.outcome == retry::Outcome::Overflow {
        return x.overflow_reply(flags);
    }
    let (status, details) = match f.outcome {
        retry::Outcome::Timeout => (504, "upstream_per_try_timeout"),
        _ if f.flags.contains(Flags::NO_HEALTHY_UPSTREAM) => (503, "no_healthy_upstream"),
        _ => (503, "upstream_reset_before_response_started"),
    };
    if status == 504 {
        let body = "upstream request timeout";
        return x.reply_grpc(status, flags, details, body, Some(GRPC_DEADLINE_EXCEEDED));
    }
    x.reply_grpc(status, flags, details, &f.detail, None)
}

/// Returns once `timeout` passes with no request-body bytes received on `tap` (never
/// returns while they keep coming). One timer, re-armed only when it fires.
async fn idle_wait(timeout: std::time::Duration, tap: Option<BodyTap>) {
    let received = || tap.as_ref().map(BodyTap::received).unwrap_or(0);
    let mut seen = received();
    loop {
        tokio::time::sleep(timeout).await;
        let now = received();
        if now == seen {
            return;
        }
        seen = now;
    }
}

/// The body of the next attempt: empty, or a replay of the request body (`None` when the
/// body outgrew the replay buffer and cannot be sent again).
fn attempt_body(tap: Option<&BodyTap>) -> Option<RequestBody> {
    match tap {
        None => Some(RequestBody::Empty),
        Some(t) => t.attempt(),
    }
}

/// The endpoint for the next attempt: the original destination for PASSTHROUGH (no
/// balancing), else the load balancer's pick among healthy endpoints not `exclude`d.
fn choose(a: &Attempts<'_>, exclude: &[usize]) -> Option<(Option<usize>, Arc<EndpointState>)> {
    if a.pick.pinned || a.cluster.load_balancer == LoadBalancer::Passthrough {
        return a.pick.original_dst.map(|d| (None, a.state.passthrough(d)));
    }
    lb::pick(a.state, &a.cluster.load_balancer, a.pick.hash, exclude).map(|(i, e)| (Some(i), e))
}

fn no_healthy(a: &Attempts<'_>) -> (Ended, Flags) {
    a.state.no_healthy.fetch_add(1, Ordering::Relaxed);
    let f = Failure {
        outcome: retry::Outcome::ConnectFailure,
        flags: Flags::NO_HEALTHY_UPSTREAM,
        endpoint: None,
        detail: "no healthy upstream".into(),
    };
    (Ended::Upstream(f), Flags::NONE)
}

/// How an attempt ended, for the retry decision.
fn outcome_of(result: &Result<forward::Attempt, Failure>) -> retry::Outcome {
    match result {
        Ok(att) => {
            let h = att.response.headers();
            retry::Outcome::Response {
                status: att.response.status().as_u16(),
                grpc_status: h
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok()),
                ratelimited: h.contains_key("x-envoy-ratelimited"),
            }
        }
        Err(f) => f.outcome,
    }
}

/// Outlier detection sees every attempt, inline (a local overflow is no event).
fn feed_outlier(
    state: &ClusterState,
    i: usize,
    ep: &EndpointState,
    result: &Result<forward::Attempt, Failure>,
) {
    match result {
        Ok(att) => state.record(
            i,
            ep,
            outlier::Event::Status(att.response.status().as_u16()),
        ),
        Err(f) if f.outcome == retry::Outcome::Overflow => {}
        Err(_) => state.record(i, ep, outlier::Event::LocalOriginFailure),
    }
}

async fn attempt_loop(a: &Attempts<'_>, tap: Option<&BodyTap>) -> AttemptResult {
    let (policy, state) = (a.policy, a.state);
    let mut tried: Vec<usize> = Vec::new();
    let mut retries = 0u32;
    // The retry in flight holds a maxRetries slot until its attempt is over.
    let mut retry_slot = None;
    // A DNS cluster's first request waits for its first answer (bounded).
    state.resolved(a.cluster.pool.connect_timeout).await;
    loop {
        let Some(body) = attempt_body(tap) else {
            let f = Failure {
                outcome: retry::Outcome::Reset,
                flags: Flags::UPSTREAM_CONNECTION_TERMINATION,
                endpoint: None,
                detail: "request body too large to retry".into(),
            };
            return Err((Ended::Upstream(f), Flags::NONE));
        };
        let exclude: &[usize] = if policy.ignore_previous_hosts {
            &tried
        } else {
            &[]
        };
        let Some((idx, ep)) = choose(a, exclude) else {
            return Err(no_healthy(a));
        };
        let t = forward::Try {
            transport: a.transport,
            per_try: policy.per_try_timeout,
            attempt: retries + 1,
        };
        let sent = forward::send(a.cluster, state, &ep, a.head, body, t).await;
        let result = match sent {
            // The client's fault: no outlier event, no retry, no URX.
            Err(AttemptError::Downstream(f)) => return Err((Ended::Downstream(f), Flags::NONE)),
            Err(AttemptError::Upstream(f)) => Err(f),
            // An answer to a request whose body broke says nothing of the upstream's health,
            // and a broken body cannot be sent again.
            Ok(att) if tap.is_some_and(|t| t.fault().is_some()) => return Ok((att, Flags::NONE)),
            Ok(att) => Ok(att),
        };
        if let Some(i) = idx {
            feed_outlier(state, i, &ep, &result);
        }

        let outcome = outcome_of(&result);
        let retriable = retry::retriable(policy, outcome);
        let can_replay = tap.is_none_or(|t| t.replayable());
        let mut extra = Flags::NONE;
        if retriable && retries < policy.attempts && can_replay {
            // maxRetries: concurrent retries across the cluster.
            match state.limits.start_retry() {
                Some(slot) => {
                    retries += 1;
                    state.retries.fetch_add(1, Ordering::Relaxed);
                    tried.extend(idx);
                    tracing::debug!(cluster = %a.cluster.name, endpoint = %ep.name, ?outcome, retry = retries, "retrying");
                    drop(result);
                    tokio::time::sleep(retry::backoff(policy, retries)).await;
                    retry_slot = Some(slot);
                    continue;
                }
                None => extra.insert(Flags::UPSTREAM_OVERFLOW),
            }
        } else if retriable && policy.attempts > 0 && retries >= policy.attempts {
            // Envoy: URX when the last attempt would have been retried but the limit is reached.
            extra.insert(Flags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
        }
        drop(retry_slot);
        return match result {
            Ok(att) => Ok((att, extra)),
            Err(f) => Err((Ended::Upstream(f), extra)),
        };
    }
}
