//! Process logging: `RUST_LOG` (default `info`) to stderr, as text or JSON; the filter
//! can be changed at run time through the admin server.

use crate::cli::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter};

/// Installs the global subscriber (once; later calls are ignored).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json()).try_init(),
    };
    if installed.is_ok() {
        meshproxy::log_control::register(move |spec| {
            let f = EnvFilter::try_new(spec)
                .map_err(|e| format!("invalid log filter {spec:?}: {e}"))?;
            handle.reload(f).map_err(|e| e.to_string())
        });
    }
}
