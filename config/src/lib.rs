//! meshproxy's configuration: the typed model of Istio's traffic and security kinds plus the
//! proxy's own `Proxy` kind, the loader that reads them from YAML with precise error
//! locations, the validator that applies Istio's rules, and the compiler that turns them into
//! the immutable, pre-indexed [`compile::Snapshot`] the data path reads.
//!
//! Nothing in this crate opens a socket: everything is testable with plain values.
#![forbid(unsafe_code)]

pub mod diag;
pub mod duration;
pub mod loader;
pub mod model;

pub use diag::{Diagnostic, Diagnostics, Origin, Severity};
pub use duration::Duration;
pub mod compile;
pub mod gateway_api;
pub mod host;
pub mod paths;
pub mod validate;
