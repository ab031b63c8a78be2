//! `meshproxy-loadtest`: the project's benchmark tools.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod compile_bench;

/// Benchmark tools for meshproxy.
#[derive(Parser)]
#[command(name = "meshproxy-loadtest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time loading, validating and compiling a generated config.
    CompileBench {
        /// Number of services.
        #[arg(long, default_value_t = 1000)]
        services: usize,
        /// Routes per service.
        #[arg(long, default_value_t = 5)]
        routes: usize,
        /// Rounds (the best is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CompileBench {
            services,
            routes,
            rounds,
        } => compile_bench::run(services, routes, rounds),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
