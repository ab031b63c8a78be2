//! `Rollout` (meshproxy.io/v1alpha1): a canary, A/B or blue-green release of one service
//! between two subsets of its DestinationRule, driven by `meshproxy rollout`
//! (docs/rollout.md). The `analysis` block uses the vocabulary of Flagger's `Canary`
//! (`interval`, `threshold`, `stepWeight`/`stepWeights`/`maxWeight`, `iterations`,
//! `match`, `mirror`, `metrics[].thresholdRange`, `webhooks`), so its users feel at home
//! (Flagger: https://docs.flagger.app/usage/how-it-works#canary-analysis).
//!
//! The kind compiles to nothing in a proxy's snapshot: it is the command's input, and the
//! route it produces is an ordinary VirtualService document.

use super::virtual_service::HttpMatchRequest;
use crate::duration::Duration;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `Rollout.spec`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// The service released (Istio host form; a short name is qualified with the
    /// document's namespace).
    #[serde(default)]
    pub host: String,
    /// The service port the generated route sends to (absent: the service's only port).
    #[serde(default)]
    pub port: Option<u32>,
    /// The subset that serves today.
    #[serde(default)]
    pub stable: String,
    /// The subset being released.
    #[serde(default)]
    pub canary: String,
    /// Where the generated route binds (`mesh`, or Gateways as `[namespace/]name`;
    /// absent: `mesh`).
    #[serde(default)]
    pub gateways: Vec<String>,
    /// How the canary is judged and moved.
    #[serde(default)]
    pub analysis: Option<Analysis>,
}

/// `spec.analysis`, Flagger's `CanaryAnalysis`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Analysis {
    /// Time between two checks (default 1m, as Flagger's).
    #[serde(default)]
    pub interval: Option<Duration>,
    /// Failed checks before the rollback (default 1, as Flagger's).
    #[serde(default)]
    pub threshold: Option<u32>,
    /// Canary: the weight added per passed check.
    #[serde(default, alias = "step_weight")]
    pub step_weight: Option<u32>,
    /// Canary: the weights in order (instead of `stepWeight`).
    #[serde(default, alias = "step_weights")]
    pub step_weights: Vec<u32>,
    /// Canary with `stepWeight`: the last weight before promotion (default 100).
    #[serde(default, alias = "max_weight")]
    pub max_weight: Option<u32>,
    /// A/B (with `match`) or blue-green (without weights): passed checks before promotion.
    #[serde(default)]
    pub iterations: Option<u32>,
    /// A/B: the requests sent to the canary (VirtualService `HTTPMatchRequest`s).
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Blue-green: mirror the stable subset's traffic to the canary during the analysis.
    #[serde(default)]
    pub mirror: bool,
    /// Blue-green with `mirror`: the percentage of requests mirrored (default 100).
    #[serde(default, alias = "mirror_weight")]
    pub mirror_weight: Option<u32>,
    /// The checks run every interval.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// HTTP POST hooks at the release's stages.
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
}

/// `analysis.metrics[]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metric {
    /// `request-success-rate`, `request-duration` (built in), or any name with a `query`.
    #[serde(default)]
    pub name: String,
    /// A PromQL query returning one value (custom metrics; `--prometheus` only).
    #[serde(default)]
    pub query: Option<String>,
    /// The range the value must be in.
    #[serde(default, alias = "threshold_range")]
    pub threshold_range: Option<ThresholdRange>,
    /// The query's range window (default 1m).
    #[serde(default)]
    pub interval: Option<Duration>,
}

/// `metrics[].thresholdRange`: inclusive bounds.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRange {
    /// The lowest passing value.
    #[serde(default)]
    pub min: Option<f64>,
    /// The highest passing value.
    #[serde(default)]
    pub max: Option<f64>,
}

/// `analysis.webhooks[]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Its name (in logs and the payload).
    #[serde(default)]
    pub name: String,
    /// When it runs (default `rollout`, as Flagger's).
    #[serde(default, rename = "type")]
    pub hook_type: Option<HookType>,
    /// Where it is POSTed (`http://`).
    #[serde(default)]
    pub url: String,
    /// How long the call may take (default 10s).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Sent as the payload's `metadata`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// When a webhook runs (Flagger's webhook types).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum HookType {
    /// Before the canary gets traffic; a failure counts as a failed check.
    PreRollout,
    /// Every interval, before the metric checks; a failure is a failed check.
    Rollout,
    /// Before the promotion; anything but success holds the promotion.
    ConfirmPromotion,
    /// After the promotion or the rollback; a failure is only logged.
    PostRollout,
    /// Every interval; a success rolls back at once.
    Rollback,
}
