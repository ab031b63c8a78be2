//! `--prometheus`: the checks as PromQL instant queries on Prometheus's HTTP API
//! (`GET /api/v1/query`), the way Flagger reads Istio's metrics. The built-in queries
//! select the canary's series as `--scrape` does (`reporter="source"`,
//! `destination_service`, `destination_version`); custom queries may use `{{ interval }}`,
//! `{{ namespace }}`, `{{ name }}`, `{{ host }}`, `{{ stable }}` and `{{ canary }}`.
//! API: https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries

use crate::rollout::client::Http;
use crate::rollout::plan::{Measure, MetricCheck, Plan};
use std::time::Duration;

const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The query a check runs.
pub fn query(plan: &Plan, m: &MetricCheck) -> String {
    let window = format!("{}s", m.window.as_secs().max(1));
    let sel = format!(
        "reporter=\"source\",destination_service=\"{}\",destination_version=\"{}\"",
        plan.fqdn, plan.canary
    );
    match &m.measure {
        // Flagger's Istio request-success-rate: non-5xx over all, in %.
        Measure::SuccessRate => format!(
            "sum(rate(istio_requests_total{{{sel},response_code!~\"5.*\"}}[{window}])) / sum(rate(istio_requests_total{{{sel}}}[{window}])) * 100"
        ),
        // Flagger's Istio request-duration: p99 of the duration histogram, in ms.
        Measure::Duration => format!(
            "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{{{sel}}}[{window}])) by (le))"
        ),
        Measure::Query(q) => q
            .replace("{{ interval }}", &window)
            .replace("{{ namespace }}", &plan.namespace)
            .replace("{{ name }}", &plan.name)
            .replace("{{ host }}", &plan.fqdn)
            .replace("{{ stable }}", &plan.stable)
            .replace("{{ canary }}", &plan.canary),
    }
}

/// The query's single value. No series, or NaN (no requests: 0/0), is "no values",
/// which Flagger counts as a failed check.
pub async fn value(http: &Http, base: &str, query: &str) -> Result<f64, String> {
    let url = format!(
        "{}/api/v1/query?{}",
        base.trim_end_matches('/'),
        form_urlencoded::Serializer::new(String::new())
            .append_pair("query", query)
            .finish()
    );
    let answer = http.get(&url, QUERY_TIMEOUT).await?;
    let v: serde_json::Value = serde_json::from_slice(&answer.body)
        .map_err(|e| format!("Prometheus answered {} and no JSON: {e}", answer.status))?;
    if v["status"] != "success" {
        return Err(format!(
            "Prometheus refused the query: {}",
            v["error"].as_str().unwrap_or("no reason given")
        ));
    }
    let result = &v["data"]["result"];
    let raw = match v["data"]["resultType"].as_str() {
        Some("scalar") => result[1].as_str(),
        _ => result[0]["value"][1].as_str(),
    };
    match raw.and_then(|s| s.parse::<f64>().ok()) {
        Some(x) if !x.is_nan() => Ok(x),
        _ => Err("no values found (is the canary receiving traffic?)".into()),
    }
}
