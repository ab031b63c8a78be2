//! One module per subcommand.

pub mod certs;
pub mod demo;
pub mod explain;
pub mod init;
pub mod logging;
pub mod rollout;
pub mod run;
pub mod validate;
