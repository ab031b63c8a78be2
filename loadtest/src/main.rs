//! `meshproxy-loadtest`: the project's benchmark tools.

use clap::{Parser, Subcommand};
use meshproxy_loadtest::duration::parse_duration;
use meshproxy_loadtest::{bench, compile_bench, load, upstream};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Send load to a URL: closed loop (max rate) or open loop (--rate), HTTP/1.1 or
    /// HTTP/2, plain or over TLS (https://, with --cert/--key for mTLS).
    Load(LoadArgs),
    /// Serve a fixed response fast (HTTP/1.1 and h2c), printing `listening ADDR`.
    Upstream {
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Response body size in bytes.
        #[arg(long, default_value_t = 64)]
        body_size: usize,
        /// Delay before each response (e.g. 1ms).
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        delay: Duration,
        /// Server threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Benchmark direct, meshproxy, nginx and HAProxy side by side (see docs/performance.md).
    Bench(BenchArgs),
    /// Print the `services` scenario's config (issue 25's shape) to stdout: N
    /// ServiceEntries × 5 endpoints and N VirtualServices with two HTTP rules.
    ServicesConfig {
        /// Number of services.
        #[arg(long, default_value_t = 1000)]
        services: usize,
        /// Where every endpoint points.
        #[arg(long, default_value = "127.0.0.1:8080")]
        upstream: SocketAddr,
    },
    /// Print a meshproxy config of the benchmark (`plain` or `realistic`) for an upstream,
    /// or with `--host` the host name and extra header its requests use.
    BenchConfig {
        /// `plain` (one service) or `realistic` (10 services with header matches, weights,
        /// retries, timeouts, pools and outlier detection).
        kind: String,
        /// The benchmark upstream's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        upstream: SocketAddr,
        /// Print `HOST` and, for `realistic`, the `Name: value` header on a second line.
        #[arg(long)]
        host: bool,
    },
    /// Print the markdown tables of a bench results JSON file (and redraw its plot).
    Report {
        /// A `bench-results/<timestamp>.json` file.
        json: PathBuf,
        /// Also write the latency plot to this SVG file.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Target URL, http://HOST:PORT/PATH or https://HOST:PORT/PATH.
    url: String,
    /// TCP connections.
    #[arg(short, long, default_value_t = 32)]
    connections: usize,
    /// Concurrent streams per connection (HTTP/2 only).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Measured duration (after the warm-up).
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load sent before measuring, not recorded.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    /// Open loop at this many requests per second (latency from the intended send time).
    /// Without it: closed loop at the maximum rate.
    #[arg(short, long)]
    rate: Option<f64>,
    /// Speak HTTP/2: h2c (prior knowledge) for http://, ALPN h2 for https://.
    #[arg(long)]
    h2: bool,
    /// Generator threads (each a single-threaded runtime).
    #[arg(short, long, default_value_t = 1)]
    threads: usize,
    /// Host header / :authority (default: from the URL).
    #[arg(long)]
    host: Option<String>,
    /// https: verify the server against the CA certificates of this PEM file (default:
    /// the OS trust store).
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// https: do not verify the server's certificate.
    #[arg(long, conflicts_with = "cacert")]
    insecure: bool,
    /// https: client certificate chain to present (PEM): mTLS. Needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// https: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// https: TLS server name (SNI, and the name verified); default: the host of --host,
    /// else of the URL.
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// Extra request header `Name: value`. Repeatable.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Short phases (a smoke run: the numbers are not for publishing).
    #[arg(long)]
    quick: bool,
    /// Rounds; every target runs once per round, round-robin.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Output directory for <timestamp>.json, .md and .svg.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// The meshproxy binary (default: `meshproxy` next to this executable).
    #[arg(long)]
    meshproxy: Option<PathBuf>,
    /// Only these targets/scenarios (comma-separated): direct, meshproxy,
    /// meshproxy-realistic, nginx, haproxy, direct-h2c, meshproxy-h2c, services-1000,
    /// two-hop-mtls.
    #[arg(long)]
    only: Vec<String>,
    /// HTTP/1.1 connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Fixed rate of the open-loop phase, req/s.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Warm-up before the closed loop (default 2s; --quick 300ms).
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// Closed-loop phase (default 8s; --quick 1s).
    #[arg(long, value_parser = parse_duration)]
    closed: Option<Duration>,
    /// Fixed-rate phase (default 6s; --quick 1s).
    #[arg(long, value_parser = parse_duration)]
    rate_duration: Option<Duration>,
    /// Upstream response body, bytes.
    #[arg(long, default_value_t = 64)]
    body_size: usize,
    /// Load generator threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Do not pin processes to CPUs.
    #[arg(long)]
    no_pin: bool,
}

fn run_load(a: LoadArgs) -> Result<(), String> {
    let cfg = load::LoadConfig {
        url: a.url,
        host: a.host,
        tls: load::TlsOptions {
            cacert: a.cacert,
            insecure: a.insecure,
            cert: a.cert,
            key: a.key,
            sni: a.sni,
        },
        headers: a.headers,
        connections: a.connections,
        streams: a.streams,
        duration: a.duration,
        warmup: a.warmup,
        rate: a.rate,
        h2: a.h2,
        threads: a.threads,
        timeout: a.timeout,
        progress: !a.quiet,
    };
    let report = load::run(&cfg)?;
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    print!("{}", report.render_table());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CompileBench {
            services,
            routes,
            rounds,
        } => compile_bench::run(services, routes, rounds),
        Command::Load(a) => run_load(a),
        Command::Upstream {
            listen,
            body_size,
            delay,
            threads,
        } => upstream::run(&upstream::UpstreamConfig {
            listen,
            body_size,
            delay,
            threads,
        }),
        Command::Bench(a) => bench::run(&bench::BenchOptions {
            quick: a.quick,
            rounds: a.rounds,
            out: a.out,
            meshproxy: a.meshproxy,
            only: (!a.only.is_empty()).then_some(a.only),
            connections: a.connections,
            rate: a.rate,
            warmup: a.warmup,
            closed: a.closed,
            rate_duration: a.rate_duration,
            body_size: a.body_size,
            threads: a.threads,
            no_pin: a.no_pin,
        })
        .map(|_| ()),
        Command::ServicesConfig { services, upstream } => {
            print!(
                "{}",
                bench::configs::meshproxy_many_services(services, upstream, 2)
            );
            Ok(())
        }
        Command::BenchConfig {
            kind,
            upstream,
            host,
        } => {
            let text = match (kind.as_str(), host) {
                ("plain", false) => Ok(bench::configs::meshproxy_plain(upstream)),
                ("plain", true) => Ok(format!("{}\n", bench::configs::HOST)),
                ("realistic", false) => Ok(bench::configs::meshproxy_realistic(upstream, 10)),
                ("realistic", true) => Ok(format!(
                    "{}\n{}\n",
                    bench::configs::REALISTIC_HOST,
                    bench::configs::REALISTIC_HEADER
                )),
                (other, _) => Err(format!("unknown config {other:?}: plain or realistic")),
            };
            text.map(|t| print!("{t}"))
        }
        Command::Report { json, svg } => {
            bench::report_from_json(&json, svg.as_deref()).map(|md| print!("{md}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
