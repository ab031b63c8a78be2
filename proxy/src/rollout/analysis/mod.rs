//! Judging the canary once per interval: each metric check's value from Prometheus
//! ([`promql`]) or from the proxies' `/metrics` ([`scrape`]), compared with its
//! `thresholdRange`.

pub mod exposition;
pub mod promql;
pub mod quantile;
pub mod scrape;

use super::client::Http;
use super::plan::{Measure, MetricCheck, Plan};

/// Where the metrics come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A Prometheus server's base URL.
    Prometheus(String),
    /// The proxies' admin base URLs.
    Scrape(Vec<String>),
}

/// One check's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// The metric's name.
    pub name: String,
    /// Its value, or why there is none.
    pub value: Result<f64, String>,
}

/// One rollout's analyzer: with `--scrape` it keeps the previous scrape, the start of
/// the next check's window.
pub struct Analyzer {
    http: Http,
    source: Source,
    baseline: Option<scrape::Counters>,
}

impl Analyzer {
    /// An analyzer reading `source`.
    pub fn new(http: Http, source: Source) -> Analyzer {
        Analyzer {
            http,
            source,
            baseline: None,
        }
    }

    /// Starts a window now (`--scrape`: the first scrape).
    pub async fn prime(&mut self, plan: &Plan) {
        if let Source::Scrape(admins) = &self.source {
            self.baseline = scrape::scrape(&self.http, admins, plan).await.ok();
        }
    }

    /// Measures every check of `plan` over the window that ends now.
    pub async fn measure(&mut self, plan: &Plan) -> Vec<Measured> {
        let mut out = Vec::with_capacity(plan.metrics.len());
        match &self.source {
            Source::Prometheus(base) => {
                for m in &plan.metrics {
                    let q = promql::query(plan, m);
                    let value = promql::value(&self.http, base, &q).await;
                    out.push(Measured {
                        name: m.name.clone(),
                        value,
                    });
                }
            }
            Source::Scrape(admins) => {
                let now = scrape::scrape(&self.http, admins, plan).await;
                let window = match (&now, &self.baseline) {
                    (Ok(n), Some(b)) => Ok(n.since(b)),
                    (Ok(_), None) => Err("no earlier scrape to compare with".to_string()),
                    (Err(e), _) => Err(e.clone()),
                };
                if let Ok(n) = now {
                    self.baseline = Some(n);
                }
                for m in &plan.metrics {
                    let value = window.as_ref().map_err(Clone::clone).and_then(|w| {
                        let v = match m.measure {
                            Measure::SuccessRate => w.success_rate(),
                            Measure::Duration => w.p99(),
                            Measure::Query(_) => None,
                        };
                        v.ok_or_else(|| "no values found (is the canary receiving traffic?)".into())
                    });
                    out.push(Measured {
                        name: m.name.clone(),
                        value,
                    });
                }
            }
        }
        out
    }
}

/// Why the measured values fail their checks (`None`: every check passed).
pub fn verdict(checks: &[MetricCheck], measured: &[Measured]) -> Option<String> {
    let mut why = Vec::new();
    for (c, m) in checks.iter().zip(measured) {
        match &m.value {
            Err(e) => why.push(format!("{}: {e}", c.name)),
            Ok(v) => {
                if let Some(min) = c.min.filter(|min| v < min) {
                    why.push(format!("{} {v:.2} < min {min}", c.name));
                }
                if let Some(max) = c.max.filter(|max| v > max) {
                    why.push(format!("{} {v:.2} > max {max}", c.name));
                }
            }
        }
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// The values as one line (`request-success-rate 100.00, request-duration 4.95`).
pub fn describe(measured: &[Measured]) -> String {
    measured
        .iter()
        .map(|m| match &m.value {
            Ok(v) => format!("{} {v:.2}", m.name),
            Err(_) => format!("{} n/a", m.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
