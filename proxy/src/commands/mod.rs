//! One module per subcommand.

pub mod demo;
pub mod init;
pub mod logging;
pub mod run;
pub mod validate;
