//! The client's own faults while its request is being forwarded, kept apart from the
//! upstream's by type (docs/hardening.md, "Whose fault"): a request body that breaks HTTP
//! framing, one that ends early, or a client that resets the stream or the connection.
//!
//! A [`DownstreamFault`] is never turned into an upstream `Failure` (`http::forward`):
//! the retry loop, outlier detection and the circuit breakers only ever see `Failure`s,
//! so a client cannot make a healthy endpoint look broken by sending garbage or hanging up
//! (Envoy resets the upstream request on a downstream reset or codec error and books
//! nothing against the host).

use crate::flags::Flags;
use std::error::Error as StdError;
use std::io;

/// How the downstream side of a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownstreamFault {
    /// The request body broke HTTP framing (bad chunk size or data, bare LF, an HTTP/2
    /// protocol violation on the stream): `400`, flag `DPE`.
    Malformed,
    /// The body ended before its end was announced: EOF before `Content-Length` bytes or
    /// the last chunk (RFC 9112 §8: an incomplete message; the server may answer before
    /// closing): `400`, flag `DPE`.
    Incomplete,
    /// The client reset the stream or the connection: flag `DC`, response code 0 when
    /// nothing was sent (Envoy's "downstream remote disconnect").
    Gone,
}

impl DownstreamFault {
    /// Classifies the error a downstream request body ended with.
    pub fn classify(error: &(dyn StdError + 'static)) -> Self {
        let mut cur = Some(error);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                return Self::from_io(io.kind());
            }
            if let Some(h2) = e.downcast_ref::<h2::Error>() {
                if let Some(io) = h2.get_io() {
                    return Self::from_io(io.kind());
                }
                // A stream or connection reset because the client's frames broke HTTP/2
                // (h2 resets them itself) is malformed input; any other reset or GOAWAY
                // (CANCEL, the client's own RST_STREAM) is the client leaving.
                return match h2.reason() {
                    Some(r) if is_protocol_reason(r) && !h2.is_remote() => Self::Malformed,
                    _ => Self::Gone,
                };
            }
            cur = e.source();
        }
        // No I/O or HTTP/2 error in the chain: hyper's body sender was dropped with the
        // connection ("connection closed before message completed"), or its "connection
        // error" (the connection failed while the body was being read). Either way the
        // connection ended under the request.
        Self::Gone
    }

    fn from_io(kind: io::ErrorKind) -> Self {
        use io::ErrorKind::*;
        match kind {
            UnexpectedEof => Self::Incomplete,
            ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected | TimedOut => {
                Self::Gone
            }
            // InvalidData (the HTTP/1 guard's framing refusal), InvalidInput (hyper's
            // chunk decoder) and anything else the codec reports.
            _ => Self::Malformed,
        }
    }

    /// The response flag that says whose fault it was.
    pub fn flags(self) -> Flags {
        match self {
            Self::Malformed | Self::Incomplete => Flags::DOWNSTREAM_PROTOCOL_ERROR,
            Self::Gone => Flags::DOWNSTREAM_CONNECTION_TERMINATION,
        }
    }

    /// The status answered when no response has started (`0`: nobody to answer).
    pub fn status(self) -> u16 {
        match self {
            Self::Malformed | Self::Incomplete => 400,
            Self::Gone => 0,
        }
    }

    /// Envoy's response code details for the access log.
    pub fn details(self) -> &'static str {
        match self {
            Self::Malformed => "downstream_protocol_error",
            Self::Incomplete => "downstream_incomplete_body",
            Self::Gone => "downstream_remote_disconnect",
        }
    }
}

impl std::fmt::Display for DownstreamFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed request body",
            Self::Incomplete => "request body ended early",
            Self::Gone => "client went away",
        })
    }
}

/// Reasons that mean the stream was reset because its frames broke HTTP/2.
fn is_protocol_reason(r: h2::Reason) -> bool {
    r == h2::Reason::PROTOCOL_ERROR
        || r == h2::Reason::FLOW_CONTROL_ERROR
        || r == h2::Reason::FRAME_SIZE_ERROR
        || r == h2::Reason::COMPRESSION_ERROR
        || r == h2::Reason::STREAM_CLOSED
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: io::ErrorKind) -> DownstreamFault {
        DownstreamFault::classify(&io::Error::new(kind, "x"))
    }

    #[test]
    fn io_kinds_say_whose_fault() {
        assert_eq!(io(io::ErrorKind::InvalidData), DownstreamFault::Malformed);
        assert_eq!(io(io::ErrorKind::InvalidInput), DownstreamFault::Malformed);
        assert_eq!(
            io(io::ErrorKind::UnexpectedEof),
            DownstreamFault::Incomplete
        );
        assert_eq!(io(io::ErrorKind::ConnectionReset), DownstreamFault::Gone);
        assert_eq!(io(io::ErrorKind::BrokenPipe), DownstreamFault::Gone);
    }

    #[test]
    fn wrapped_io_errors_are_found() {
        #[derive(Debug)]
        struct Wrap(io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrap {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = Wrap(io::Error::new(io::ErrorKind::UnexpectedEof, "eof"));
        assert_eq!(DownstreamFault::classify(&e), DownstreamFault::Incomplete);
    }

    #[test]
    fn h2_resets_are_the_client_leaving_unless_it_broke_the_protocol() {
        let e = h2::Error::from(h2::Reason::CANCEL);
        assert_eq!(DownstreamFault::classify(&e), DownstreamFault::Gone);
        let e = h2::Error::from(h2::Reason::PROTOCOL_ERROR);
        assert_eq!(DownstreamFault::classify(&e), DownstreamFault::Malformed);
    }

    #[test]
    fn flags_and_statuses() {
        assert_eq!(DownstreamFault::Malformed.status(), 400);
        assert_eq!(DownstreamFault::Incomplete.status(), 400);
        assert_eq!(DownstreamFault::Gone.status(), 0);
        assert_eq!(DownstreamFault::Malformed.flags().to_string(), "DPE");
        assert_eq!(DownstreamFault::Gone.flags().to_string(), "DC");
    }
}
