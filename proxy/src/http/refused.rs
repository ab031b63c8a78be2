//! Requests the connection refuses before routing (`spec.limits`), answered and logged
//! by the router: the connection's service marks the request with a [`Refused`].

/// A request the limits refuse, handed to the router in the request's extensions so the
/// local reply is logged and counted like any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The proxy is at `maxActiveRequests`: `503`, flag `OM` (Envoy's overload manager).
    Overloaded,
    /// More header fields than `maxRequestHeaders` (HTTP/2; hyper refuses HTTP/1.1
    /// itself): `431`.
    TooManyHeaders,
    /// An HTTP/1 request-target over the limit the HTTP/1 guard enforces: `414` (RFC 9110 §15.5.15), flag
    /// `DPE`, the connection closed.
    UriTooLong,
}

impl Refused {
    /// Status, access-log details and body of the local reply.
    pub fn reply(self) -> (u16, &'static str, &'static str) {
        match self {
            // Envoy: "envoy overloaded", details `overload`.
            Refused::Overloaded => (503, "overload", "meshproxy overloaded"),
            Refused::TooManyHeaders => (431, "too_many_headers", "too many request headers"),
            Refused::UriTooLong => (414, "http1.uri_too_long", "request-target too long"),
        }
    }
}
