//! The HTTP data path.

pub mod body;
pub mod completion;
pub mod connect;
pub mod downstream_fault;
pub mod flags;
pub mod forward;
pub mod host_field;
pub mod local_reply;
pub mod router;
pub mod smuggling;
pub mod upgrade;
