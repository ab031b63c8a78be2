//! One module per subcommand.

pub mod demo;
pub mod logging;
pub mod run;
pub mod validate;
