//! `meshproxy-loadtest`: the project's benchmark tools, as a library so the binary and
//! the tests share them.
//!
//! - [`load`]: the load generator (closed and open loop, HTTP/1.1 and h2c, HdrHistogram
//!   percentiles, errors by kind, JSON output).
//! - [`upstream`]: a fast benchmark upstream (fixed body, optional delay, HTTP/1.1 and
//!   h2c on one port).
//! - [`bench`]: the one-command benchmark runner comparing direct, meshproxy, nginx and
//!   HAProxy in one run.
//! - [`compile_bench`]: the snapshot-compile benchmark.
#![warn(missing_docs)]

pub mod bench;
pub mod compile_bench;
pub mod duration;
pub mod load;
pub mod procfs;
pub mod schedule;
pub mod stats;
pub mod upstream;
