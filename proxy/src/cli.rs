//! Command-line interface (docs/contract.md §1).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// meshproxy: a sidecar L7 proxy that enforces Istio traffic policy read from YAML.
#[derive(Debug, Parser)]
#[command(name = "meshproxy", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the config at the given paths and serve.
    Run(RunArgs),
    /// Load and validate the config as `run` would; print `ok` and a summary, or every error.
    Validate(ConfigArgs),
    /// Start the proxy and built-in demo services from the embedded config.
    Demo(DemoArgs),
    /// Mesh certificates: a root CA and SPIFFE workload certificates.
    Certs {
        /// Which certificate operation.
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Install (or remove) the iptables rules that redirect a pod's traffic through the sidecar.
    Init(InitArgs),
    /// Show what the compiled policy does with one request: the rules tried and why, the
    /// route, weights, clusters, policies and the outcome (no sockets).
    Explain(ExplainArgs),
    /// Check a file of request -> expectation cases against the compiled policy (no
    /// sockets); exit 1 with a diff per failed case.
    Test(TestArgs),
    /// Drive every Rollout at -c (canary steps, A/B, blue-green): judge the canary from
    /// Istio's metrics each interval, move one step, write the route into the directory
    /// the proxies watch; roll back on failed analysis.
    Rollout(RolloutArgs),
}

/// `rollout` options.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// Config paths; the generated `rollout-NAMESPACE-NAME.yaml` goes into the first
    /// directory among them.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Read the metrics from this Prometheus server (`http://HOST:PORT`).
    #[arg(long, value_name = "URL", conflicts_with = "scrape")]
    pub prometheus: Option<String>,
    /// Read the metrics from these proxies' admin servers (`HOST:PORT` or
    /// `http://HOST:PORT`, their `/metrics`), no Prometheus needed. Repeatable.
    #[arg(long, value_name = "ADMIN_URL", num_args = 1.., required_unless_present = "prometheus")]
    pub scrape: Vec<String>,
    /// Serve the command's `meshproxy_rollout_*` metrics on this address (`/metrics`).
    #[arg(long, value_name = "ADDR")]
    pub metrics_address: Option<std::net::SocketAddr>,
}

/// `explain` options.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Config paths.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The Proxy document's name: refuses a config written for another proxy.
    #[arg(long, value_name = "NAME")]
    pub proxy: Option<String>,
    /// The listener the request arrives on (default: the first OUTBOUND HTTP listener).
    #[arg(long, value_name = "NAME", conflicts_with = "gateway")]
    pub listener: Option<String>,
    /// The Gateway (`name` or `namespace/name`) whose listener the request arrives on.
    #[arg(long, value_name = "NAME")]
    pub gateway: Option<String>,
    /// On an INBOUND listener: the peer's mTLS identity (`spiffe://cluster.local/ns/NS/sa/SA`);
    /// none means plaintext.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub principal: Option<String>,
    /// On an INBOUND listener: the peer's IP address (default 127.0.0.1).
    #[arg(long, value_name = "IP")]
    pub source_address: Option<String>,
    /// The workload the request comes from, as `key=value,...` labels: the config is
    /// compiled for a proxy with these workload labels instead of the Proxy's own, as Istio
    /// generates each workload's routes (VirtualService `sourceLabels`, workload selectors).
    #[arg(long, value_name = "LABELS")]
    pub source_labels: Option<String>,
    /// Request method.
    #[arg(
        short = 'X',
        long = "request",
        value_name = "METHOD",
        default_value = "GET"
    )]
    pub method: String,
    /// A request header, `'name: value'`. Repeatable.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,
    /// The request's URL (`http://reviews:9080/path?query`).
    #[arg(value_name = "URL")]
    pub url: String,
}

/// `test` options.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Config paths.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The test file.
    #[arg(value_name = "TESTS.yaml")]
    pub tests: PathBuf,
}

/// `-c PATH`, repeatable.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Config file or directory (`*.yaml`/`*.yml`, recursive, name order). Repeatable.
    #[arg(short = 'c', long = "config", required = true, value_name = "PATH")]
    pub config: Vec<PathBuf>,
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config paths.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Data-plane worker threads (default: the CPUs available, cgroup limits included).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Binary upgrade hand-over socket: a process started with the same path takes the
    /// listening sockets of the one running there, which then drains and exits.
    #[arg(long, value_name = "PATH")]
    pub upgrade_socket: Option<std::path::PathBuf>,
    /// How long to drain in-flight requests on SIGTERM or listener removal.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: std::time::Duration,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Access log on or off.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub access_log: OnOff,
    /// Istio request metrics on or off (off only for benchmarking their cost).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub metrics: OnOff,
}

/// `demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Port of the demo proxy's outbound listener on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 15001)]
    pub port: u16,
    /// Port of the admin server on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A switch.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// `certs` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a mesh root CA (`DIR/ca.pem`, `DIR/ca.key`): ECDSA P-256, valid 10 years by
    /// default. Refuses to replace an existing CA unless `--force`.
    Ca {
        /// Output directory (created if needed).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity in days (ten years by default).
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// The CA's common name (subject `O=meshproxy, CN=NAME`).
        #[arg(long, value_name = "NAME", default_value = "meshproxy root CA")]
        common_name: String,
        /// Replace an existing `DIR/ca.key` (every certificate it issued stops verifying
        /// against the new CA).
        #[arg(long)]
        force: bool,
    },
    /// Issue a workload certificate whose URI SAN is the SPIFFE identity: `DIR/cert.pem`
    /// (leaf then CA), `DIR/key.pem`, `DIR/ca.pem`. Valid 90 days by default (never past
    /// the CA's expiry); existing files are replaced atomically (rotation).
    Issue {
        /// Directory holding the CA (`ca.pem`, `ca.key`).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// SPIFFE identity, `spiffe://cluster.local/ns/NS/sa/SA`.
        #[arg(long, value_name = "URI")]
        spiffe: String,
        /// DNS SANs (an IP address becomes an IP SAN). Repeatable.
        #[arg(long, value_name = "NAME")]
        dns: Vec<String>,
        /// Output directory (created if needed).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
}

/// `init` options.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Print the rules instead of installing them.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove the rules.
    #[arg(long)]
    pub cleanup: bool,
    /// Port the outbound listener captures on.
    #[arg(long, default_value_t = 15001)]
    pub outbound_port: u16,
    /// Port the inbound listener captures on.
    #[arg(long, default_value_t = 15006)]
    pub inbound_port: u16,
    /// The proxy's uid: its own traffic is never redirected.
    #[arg(long, default_value_t = 1337)]
    pub proxy_uid: u32,
    /// The proxy's gid (default: the uid).
    #[arg(long)]
    pub proxy_gid: Option<u32>,
    /// Inbound ports to redirect (comma-separated, `*` = all).
    #[arg(long, default_value = "*")]
    pub include_inbound_ports: String,
    /// Inbound ports never redirected (comma-separated; the admin port 15000 and the
    /// proxy's own ports are always excluded).
    #[arg(long, default_value = "")]
    pub exclude_inbound_ports: String,
    /// Outbound destination ports never redirected (comma-separated).
    #[arg(long, default_value = "")]
    pub exclude_outbound_ports: String,
    /// Outbound destination CIDRs to redirect (comma-separated, `*` = all).
    #[arg(long, default_value = "*")]
    pub include_outbound_cidrs: String,
    /// Outbound destination CIDRs never redirected (comma-separated).
    #[arg(long, default_value = "")]
    pub exclude_outbound_cidrs: String,
    /// Also install the IPv6 rules (ip6tables).
    #[arg(long)]
    pub ipv6: bool,
}

/// Parses `30s`, `500ms`, `1m` (Go/protobuf duration syntax).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = meshproxy_config::Duration::parse(s)?;
    if d.is_negative() {
        return Err("duration must not be negative".into());
    }
    Ok(d.to_std())
}
