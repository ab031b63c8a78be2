//! The `meshproxy` binary.

use clap::Parser;
use std::process::ExitCode;

mod allocator;
mod cli;
mod commands;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let code = match args.command {
        cli::Command::Validate(c) => commands::validate::run(&c.config, &mut std::io::stdout()),
        cli::Command::Run(a) => commands::run::run(a),
        cli::Command::Demo(a) => commands::demo::run(a),
        cli::Command::Init(a) => commands::init::run(&a),
        cli::Command::Certs { command } => commands::certs::run(command, &mut std::io::stdout()),
        cli::Command::Explain(a) => commands::explain::explain(&a, &mut std::io::stdout()),
        cli::Command::Test(a) => commands::explain::test(&a, &mut std::io::stdout()),
        cli::Command::Rollout(a) => commands::rollout::run(a),
    };
    ExitCode::from(code as u8)
}
