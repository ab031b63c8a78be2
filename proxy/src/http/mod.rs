//! The HTTP data path. A request's steps, in order (docs/architecture.md):
//! [`router`] (the exchange, refusals, the route) → [`dispatch`] (the route's action,
//! CORS, faults) → [`relay`] (the upstream head, mirrors, limits) → [`attempts`]
//! (endpoint choice, retries, timeouts) → [`forward`] (one attempt on a pooled or new
//! connection) → the response relayed, and [`completion`] records the outcome.

mod attempts;
mod authn;
pub mod completion;
pub mod connect;
mod dispatch;
mod exchange;
mod failure;
pub mod forward;
pub mod host_field;
pub(crate) mod inbound;
pub mod local_reply;
mod rate_limit;
pub mod refused;
mod relay;
pub mod router;
pub(crate) mod sanitize;
mod shadow;
pub mod smuggling;
mod trace_step;
mod tunnel;
pub mod upgrade;
pub(crate) mod upstream_head;
