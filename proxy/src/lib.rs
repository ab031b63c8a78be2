//! meshproxy's runtime: the data path, its policies and the process around them.
#![deny(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod authn;
pub mod body;
pub mod conn_info;
pub mod demo;
pub mod explain;
pub mod flags;
pub mod handover;
pub mod http;
pub mod intercept;
pub mod log_control;
pub mod memory;
pub mod pipe;
pub mod policy;
pub mod ratelimit;
pub mod reload;
pub mod rollout;
pub mod runtime;
pub mod server;
pub mod tcp;
pub mod telemetry;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod worker;
