//! `--scrape`: the canary's Istio metrics read straight from the proxies' admin
//! `/metrics`, without Prometheus. Each check scrapes every proxy, sums the canary's
//! series (`reporter="source"`, `destination_service` the rollout's host,
//! `destination_version` the canary subset) and judges the increase since the previous
//! check, as `rate()` over the interval would: the success rate from
//! `istio_requests_total` by `response_code`, the p99 from the
//! `istio_request_duration_milliseconds` buckets (Prometheus's `histogram_quantile`).

use super::exposition;
use super::quantile::histogram_quantile;
use crate::rollout::client::Http;
use crate::rollout::plan::Plan;
use std::time::Duration;

const REQUESTS: &str = "istio_requests_total";
const BUCKETS: &str = "istio_request_duration_milliseconds_bucket";
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The canary's counters, summed over the proxies, at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// Requests.
    pub requests: f64,
    /// Requests answered with anything but 5xx.
    pub ok: f64,
    /// Cumulative duration buckets `(le, count)`, by increasing `le`.
    pub buckets: Vec<(f64, f64)>,
}

impl Counters {
    /// The increase from `before` to `self`; a counter that went down was reset (a
    /// proxy restarted) and counts from zero, as Prometheus's `rate()` does.
    pub fn since(&self, before: &Counters) -> Counters {
        let d = |now: f64, then: f64| if now >= then { now - then } else { now };
        let buckets = self
            .buckets
            .iter()
            .map(|(le, n)| {
                let then = before
                    .buckets
                    .iter()
                    .find(|(l, _)| l == le)
                    .map(|b| b.1)
                    .unwrap_or(0.0);
                (*le, d(*n, then))
            })
            .collect();
        Counters {
            requests: d(self.requests, before.requests),
            ok: d(self.ok, before.ok),
            buckets,
        }
    }

    /// Non-5xx requests in %; `None` without requests.
    pub fn success_rate(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| self.ok / self.requests * 100.0)
    }

    /// The p99 duration in ms; `None` without requests.
    pub fn p99(&self) -> Option<f64> {
        histogram_quantile(0.99, &self.buckets)
    }
}

/// The canary's counters in one `/metrics` text.
pub fn counters(text: &str, plan: &Plan) -> Counters {
    let mut c = Counters::default();
    for s in exposition::samples(text, &[REQUESTS, BUCKETS]) {
        let canary = s.label("reporter") == Some("source")
            && s.label("destination_service") == Some(plan.fqdn.as_str())
            && s.label("destination_version") == Some(plan.canary.as_str());
        if !canary {
            continue;
        }
        if s.name == REQUESTS {
            c.requests += s.value;
            if !s.label("response_code").unwrap_or("").starts_with('5') {
                c.ok += s.value;
            }
            continue;
        }
        let le = match s.label("le") {
            Some("+Inf") => f64::INFINITY,
            Some(v) => match v.parse::<f64>() {
                Ok(le) => le,
                Err(_) => continue,
            },
            None => continue,
        };
        match c.buckets.iter_mut().find(|(l, _)| *l == le) {
            Some(b) => b.1 += s.value,
            None => c.buckets.push((le, s.value)),
        }
    }
    c.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    c
}

/// Scrapes every proxy: the summed counters, or the first proxy that did not answer.
pub async fn scrape(http: &Http, admins: &[String], plan: &Plan) -> Result<Counters, String> {
    let mut total = Counters::default();
    for admin in admins {
        let url = format!("{}/metrics", admin.trim_end_matches('/'));
        let answer = http.get(&url, SCRAPE_TIMEOUT).await?;
        if !answer.status.is_success() {
            return Err(format!("{url}: status {}", answer.status.as_u16()));
        }
        let c = counters(&String::from_utf8_lossy(&answer.body), plan);
        total.requests += c.requests;
        total.ok += c.ok;
        for (le, n) in c.buckets {
            match total.buckets.iter_mut().find(|(l, _)| *l == le) {
                Some(b) => b.1 += n,
                None => total.buckets.push((le, n)),
            }
        }
    }
    total.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(total)
}
