//! The HTTP data path.

pub mod body;
pub mod completion;
pub mod connect;
pub mod flags;
pub mod forward;
pub mod local_reply;
pub mod router;
pub mod smuggling;
pub mod upgrade;
