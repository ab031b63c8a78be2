//! A `Rollout` document resolved into what the driver needs: the qualified host, the
//! strategy with its steps, the checks and hooks with their defaults applied, the file
//! the route goes to and the revision that tells a new release from a resumed one.

use meshproxy_config::model::rollout::{Analysis, HookType, Rollout};
use meshproxy_config::model::Resource;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Flagger's default analysis interval.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// The default window of a metric query.
const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// The default time a webhook may take.
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// How the canary gets traffic.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// Weighted steps, then 100 %.
    Canary {
        /// The canary's weights in order; the last one is the one promoted from.
        weights: Vec<u32>,
    },
    /// Matching requests go to the canary for `iterations` passed checks.
    AB {
        /// Passed checks before promotion.
        iterations: u32,
    },
    /// The stable subset serves (its traffic mirrored to the canary when `mirror` is
    /// set) for `iterations` passed checks, then all traffic switches at once.
    BlueGreen {
        /// Passed checks before promotion.
        iterations: u32,
        /// The percentage mirrored to the canary, if mirroring.
        mirror: Option<u32>,
    },
}

/// What a metric check measures.
#[derive(Clone, Debug, PartialEq)]
pub enum Measure {
    /// The canary's non-5xx share of requests, in %.
    SuccessRate,
    /// The canary's p99 request duration, in ms.
    Duration,
    /// A PromQL query's value.
    Query(String),
}

/// One metric check.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricCheck {
    /// Its name, as written.
    pub name: String,
    /// What is measured.
    pub measure: Measure,
    /// Lowest passing value.
    pub min: Option<f64>,
    /// Highest passing value.
    pub max: Option<f64>,
    /// The range window of Prometheus queries.
    pub window: Duration,
}

/// One webhook.
#[derive(Clone, Debug, PartialEq)]
pub struct Hook {
    /// Its name.
    pub name: String,
    /// When it runs.
    pub kind: HookType,
    /// Where it is POSTed.
    pub url: String,
    /// How long it may take.
    pub timeout: Duration,
    /// The payload's `metadata`.
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// A Rollout ready to drive.
#[derive(Clone, Debug)]
pub struct Plan {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// The host as written (the generated route's `hosts`).
    pub host: String,
    /// The host qualified with the namespace (metric labels, conflict checks).
    pub fqdn: String,
    /// The destination port, if set.
    pub port: Option<u32>,
    /// The serving subset.
    pub stable: String,
    /// The released subset.
    pub canary: String,
    /// Where the route binds (empty: `mesh`).
    pub gateways: Vec<String>,
    /// How traffic moves.
    pub strategy: Strategy,
    /// Time between checks.
    pub interval: Duration,
    /// Failed checks before the rollback.
    pub threshold: u32,
    /// Metric checks.
    pub metrics: Vec<MetricCheck>,
    /// Webhooks.
    pub hooks: Vec<Hook>,
    /// A/B: `analysis.match` as written (JSON), copied into the route.
    pub matches: serde_json::Value,
    /// A hash of the spec: a changed spec is a new release, the same one resumes.
    pub revision: String,
    /// The generated file.
    pub file: PathBuf,
}

impl Plan {
    /// Resolves `res` (a validated Rollout) writing into `dir`.
    pub fn new(res: &Resource, r: &Rollout, dir: &Path) -> Plan {
        let a = r.analysis.clone().unwrap_or_default();
        let raw: serde_json::Value = serde_json::from_str(&res.raw).unwrap_or_default();
        let spec = raw.get("spec").cloned().unwrap_or_default();
        let matches = spec["analysis"]
            .get("match")
            .cloned()
            .unwrap_or(serde_json::Value::Array(Vec::new()));
        let revision = format!(
            "{:016x}",
            xxhash_rust::xxh64::xxh64(spec.to_string().as_bytes(), 0)
        );
        Plan {
            name: res.name.clone(),
            namespace: res.namespace.clone(),
            host: r.host.clone(),
            fqdn: meshproxy_config::host::qualify(&r.host, &res.namespace),
            port: r.port,
            stable: r.stable.clone(),
            canary: r.canary.clone(),
            gateways: r.gateways.clone(),
            strategy: strategy(&a),
            interval: a.interval.map(|d| d.to_std()).unwrap_or(DEFAULT_INTERVAL),
            threshold: a.threshold.unwrap_or(1).max(1),
            metrics: a.metrics.iter().map(metric).collect(),
            hooks: a.webhooks.iter().map(hook).collect(),
            matches,
            revision,
            file: dir.join(file_name(&res.namespace, &res.name)),
        }
    }

    /// `namespace/name`, as lines and metrics name the rollout.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The hooks of one type, in order.
    pub fn hooks_of(&self, kind: HookType) -> impl Iterator<Item = &Hook> {
        self.hooks.iter().filter(move |h| h.kind == kind)
    }
}

/// The generated file's name: `rollout-NAMESPACE-NAME.yaml`.
pub fn file_name(namespace: &str, name: &str) -> String {
    format!("rollout-{namespace}-{name}.yaml")
}

fn strategy(a: &Analysis) -> Strategy {
    let iterations = a.iterations.unwrap_or(0);
    if !a.step_weights.is_empty() {
        return Strategy::Canary {
            weights: a.step_weights.clone(),
        };
    }
    if let Some(step) = a.step_weight.filter(|s| *s > 0) {
        // Flagger: the weight grows by stepWeight up to maxWeight (default 100).
        let max = a.max_weight.unwrap_or(100).clamp(1, 100);
        let mut weights = Vec::new();
        let mut w = 0;
        while w < max {
            w = (w + step).min(max);
            weights.push(w);
        }
        return Strategy::Canary { weights };
    }
    if !a.matches.is_empty() {
        return Strategy::AB { iterations };
    }
    Strategy::BlueGreen {
        iterations,
        mirror: a.mirror.then(|| a.mirror_weight.unwrap_or(100)),
    }
}

fn metric(m: &meshproxy_config::model::rollout::Metric) -> MetricCheck {
    let measure = match (m.name.as_str(), &m.query) {
        (_, Some(q)) if !q.is_empty() => Measure::Query(q.clone()),
        ("request-duration", _) => Measure::Duration,
        _ => Measure::SuccessRate,
    };
    let range = m.threshold_range.clone().unwrap_or_default();
    MetricCheck {
        name: m.name.clone(),
        measure,
        min: range.min,
        max: range.max,
        window: m.interval.map(|d| d.to_std()).unwrap_or(DEFAULT_WINDOW),
    }
}

fn hook(h: &meshproxy_config::model::rollout::Webhook) -> Hook {
    Hook {
        name: h.name.clone(),
        kind: h.hook_type.unwrap_or(HookType::Rollout),
        url: h.url.clone(),
        timeout: h
            .timeout
            .map(|d| d.to_std())
            .unwrap_or(DEFAULT_HOOK_TIMEOUT),
        metadata: h.metadata.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_weight_climbs_to_max_weight() {
        let a = Analysis {
            step_weight: Some(20),
            max_weight: Some(50),
            ..Default::default()
        };
        assert_eq!(
            strategy(&a),
            Strategy::Canary {
                weights: vec![20, 40, 50]
            }
        );
        let a = Analysis {
            step_weight: Some(25),
            ..Default::default()
        };
        assert_eq!(
            strategy(&a),
            Strategy::Canary {
                weights: vec![25, 50, 75, 100]
            }
        );
    }

    #[test]
    fn iterations_without_match_is_blue_green() {
        let a = Analysis {
            iterations: Some(3),
            mirror: true,
            ..Default::default()
        };
        assert_eq!(
            strategy(&a),
            Strategy::BlueGreen {
                iterations: 3,
                mirror: Some(100)
            }
        );
    }
}
