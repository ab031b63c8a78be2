//! Webhooks, as Flagger calls them (https://docs.flagger.app/usage/webhooks): an HTTP
//! POST of `{name, namespace, phase, checksum, type, metadata}`; any 2xx answer is a
//! success.

use super::client::Http;
use super::plan::{Hook, Plan};
use super::state::Phase;
use meshproxy_config::model::rollout::HookType;
use serde_json::json;

/// Calls every hook of `kind` in order; the first failure's reason.
pub async fn run_all(http: &Http, plan: &Plan, kind: HookType, phase: Phase) -> Result<(), String> {
    for hook in plan.hooks_of(kind) {
        call(http, plan, hook, phase).await?;
    }
    Ok(())
}

/// Calls rollback hooks: the name of the first that answers success (Flagger: a
/// successful rollback hook stops the analysis and fails the release).
pub async fn rollback_requested(http: &Http, plan: &Plan, phase: Phase) -> Option<String> {
    for hook in plan.hooks_of(HookType::Rollback) {
        if call(http, plan, hook, phase).await.is_ok() {
            return Some(hook.name.clone());
        }
    }
    None
}

async fn call(http: &Http, plan: &Plan, hook: &Hook, phase: Phase) -> Result<(), String> {
    let body = json!({
        "name": plan.name,
        "namespace": plan.namespace,
        "phase": phase.as_str(),
        "checksum": plan.revision,
        "type": kind_name(hook.kind),
        "metadata": hook.metadata,
    });
    let answer = http
        .post_json(&hook.url, &body, hook.timeout)
        .await
        .map_err(|e| format!("webhook {}: {e}", hook.name))?;
    if answer.status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "webhook {} answered {}: {}",
            hook.name,
            answer.status.as_u16(),
            String::from_utf8_lossy(&answer.body).trim()
        ))
    }
}

/// The type's name as written.
pub fn kind_name(kind: HookType) -> &'static str {
    match kind {
        HookType::PreRollout => "pre-rollout",
        HookType::Rollout => "rollout",
        HookType::ConfirmPromotion => "confirm-promotion",
        HookType::PostRollout => "post-rollout",
        HookType::Rollback => "rollback",
    }
}
