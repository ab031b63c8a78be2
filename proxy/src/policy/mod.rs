//! Per-route policies, each a small pure module the router composes: fault injection,
//! retries, redirects, CORS, header operations, mirroring.
//!
//! They are plain functions over compiled config rather than tower layers: which
//! policies apply differs per route and per request, and a per-request tower stack
//! would have to be boxed; plain calls compose with no allocation.

pub mod cors;
pub mod envoy_headers;
pub mod fault;
pub mod grpc_timeout;
pub mod headers;
pub mod mirror;
pub mod path;
pub mod redirect;
pub mod retry;
