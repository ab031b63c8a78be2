//! `meshproxy rollout -c DIR (--prometheus URL | --scrape ADMIN_URL ...)`: drives every
//! Rollout at `-c` to its end (docs/rollout.md). Exit code 0 when every release
//! succeeded, 1 when one was rolled back or could not start or go on.

use crate::cli::RolloutArgs;
use meshproxy::rollout::analysis::Source;
use meshproxy::rollout::client::Http;
use meshproxy::rollout::driver::{self, Ctx};
use meshproxy::rollout::setup;
use meshproxy::rollout::state::Phase;
use meshproxy::rollout::stats::{self, Stats};
use meshproxy_config::model::Spec;

/// Runs the command; returns the exit code.
pub fn run(args: RolloutArgs) -> i32 {
    let source = match source(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rollout: {e}");
            return 1;
        }
    };
    let plans = match setup::plans(&args.config.config, &source) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            eprintln!("rollout: nothing started");
            return 1;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rollout: cannot start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let stats = Stats::default();
        if let Some(addr) = args.metrics_address {
            match stats::bind(addr).await {
                Ok(l) => {
                    let shown = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    eprintln!("rollout: metrics on http://{shown}/metrics");
                    stats.serve(l);
                }
                Err(e) => {
                    eprintln!("rollout: cannot listen on --metrics-address {addr}: {e}");
                    return 1;
                }
            }
        }
        let ctx = Ctx {
            http: Http::default(),
            source,
            stats,
        };
        let tasks: Vec<_> = plans
            .into_iter()
            .map(|p| tokio::spawn(driver::drive(p, ctx.clone())))
            .collect();
        let mut code = 0;
        for t in tasks {
            match t.await {
                Ok(Ok(Phase::Succeeded)) => {}
                Ok(Ok(_)) => code = 1,
                Ok(Err(e)) => {
                    eprintln!("rollout: {e}");
                    code = 1;
                }
                Err(e) => {
                    eprintln!("rollout: a rollout stopped: {e}");
                    code = 1;
                }
            }
        }
        code
    })
}

/// `--prometheus` or `--scrape`, as base URLs (`host:port` gets `http://`).
fn source(args: &RolloutArgs) -> Result<Source, String> {
    let url = |s: &str| -> Result<String, String> {
        let s = if s.contains("://") {
            s.to_string()
        } else {
            format!("http://{s}")
        };
        match s.parse::<http::Uri>() {
            Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => {
                Ok(s.trim_end_matches('/').to_string())
            }
            _ => Err(format!("{s:?} is not an http:// URL with a host")),
        }
    };
    match (&args.prometheus, args.scrape.as_slice()) {
        (Some(p), []) => Ok(Source::Prometheus(url(p)?)),
        (None, admins) if !admins.is_empty() => Ok(Source::Scrape(
            admins.iter().map(|a| url(a)).collect::<Result<_, _>>()?,
        )),
        _ => Err("give --prometheus URL or --scrape ADMIN_URL ... (one of them)".into()),
    }
}

/// `meshproxy validate`'s summary for Rollouts: each one's host and subsets.
pub fn summary(docs: &[&Spec]) -> String {
    docs.iter()
        .filter_map(|d| match d {
            Spec::Rollout(r) => Some(format!("{} {} -> {}", r.host, r.stable, r.canary)),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(", ")
}
