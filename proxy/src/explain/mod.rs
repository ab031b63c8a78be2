//! `meshproxy explain` and `meshproxy test`: what the compiled policy does with a request,
//! without sockets. Every decision is taken by the data path's own code (the route lookup,
//! the matchers, the redirect and upstream-head builders); this module only records the
//! steps and says why. docs/explain.md describes the commands and their output.

pub mod action;
pub mod cases;
pub mod decide;
pub mod decision;
pub mod describe;
pub mod inbound;
pub mod render;
pub mod request;

pub use decide::decide;
pub use decision::Decision;
pub use request::RequestSpec;
