//! How an upstream attempt fails, and whose fault it is: [`Failure`] (the upstream's,
//! with its retry outcome and Envoy flags) or the client's ([`AttemptError::Downstream`]);
//! hyper's client errors classified into them.

use crate::body::downstream_fault::DownstreamFault;
use crate::body::BodyError;
use crate::flags::Flags;
use crate::policy::retry::Outcome;
use crate::upstream::cluster_state::EndpointState;

/// A failed attempt.
#[derive(Debug)]
pub struct Failure {
    /// For the retry decision.
    pub outcome: Outcome,
    /// Response flags it implies.
    pub flags: Flags,
    /// The endpoint tried, if any.
    pub endpoint: Option<std::sync::Arc<str>>,
    /// Envoy-style reason, for the local reply body and logs.
    pub detail: String,
}

/// Why an attempt produced no response. The two sides are different types so that
/// nothing downstream of the attempt (retries, outlier detection, circuit breakers) can
/// book a client's fault against the upstream.
#[derive(Debug)]
pub enum AttemptError {
    /// The upstream, or the way to it, failed.
    Upstream(Failure),
    /// The client failed while its request was being sent (see [`DownstreamFault`]).
    Downstream(DownstreamFault),
}

impl From<Failure> for AttemptError {
    fn from(f: Failure) -> Self {
        AttemptError::Upstream(f)
    }
}

/// A connect failure (`UF`) with Envoy's reason text.
pub(super) fn connect_failure(ep: &EndpointState, e: impl std::fmt::Display) -> Failure {
    Failure {
        outcome: Outcome::ConnectFailure,
        flags: Flags::UPSTREAM_CONNECTION_FAILURE,
        endpoint: Some(ep.name.clone()),
        detail: format!(
            "upstream connect error or disconnect/reset before headers. reset reason: {e}"
        ),
    }
}

/// Envoy's overflow reply, `UO`.
pub fn overflow(ep: Option<&EndpointState>) -> Failure {
    Failure {
        outcome: Outcome::Overflow,
        flags: Flags::UPSTREAM_OVERFLOW,
        endpoint: ep.map(|e| e.name.clone()),
        detail: "upstream connect error or disconnect/reset before headers. reset reason: overflow"
            .into(),
    }
}

/// Whose fault a failed send was: the client's when our request body failed (hyper
/// names the body's error as the cause), else the upstream's.
pub(super) fn attribute(e: hyper::Error, ep: &EndpointState) -> AttemptError {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = src {
        if let Some(BodyError::Downstream(f)) = s.downcast_ref::<BodyError>() {
            return AttemptError::Downstream(*f);
        }
        src = s.source();
    }
    AttemptError::Upstream(classify(e, ep))
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
