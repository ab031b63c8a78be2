//! `meshproxy rollout`: progressive delivery without a control plane (docs/rollout.md).
//! Every `Rollout` document found at `-c` is resolved into a [`plan::Plan`]
//! ([`setup`]), then driven once per interval ([`driver`]): judged from Istio's metrics
//! ([`analysis`]: Prometheus, or the proxies' `/metrics` scraped), moved one step by the
//! state machine ([`state`]), and its route written as a VirtualService ([`route`]) into
//! `rollout-NAMESPACE-NAME.yaml`, atomically ([`file`]), for every proxy watching the
//! directory to reload. The state lives in that document's annotations, so a restarted
//! command resumes where the last one stopped.

pub mod analysis;
pub mod client;
pub mod driver;
pub mod file;
pub mod plan;
pub mod route;
pub mod setup;
pub mod state;
pub mod stats;
pub mod webhook;
