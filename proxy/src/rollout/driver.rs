//! One rollout driven to its end: the state resumed from the generated file (or a new
//! release started), then once per interval: judge, move one step, write the route,
//! report (a line on stderr, the metrics).

use super::analysis::{self, Analyzer, Measured, Source};
use super::client::Http;
use super::plan::Plan;
use super::state::{Next, Phase, State};
use super::stats::Stats;
use super::{file, route, webhook};
use meshproxy_config::model::rollout::HookType;

/// What every rollout of the command shares.
#[derive(Clone)]
pub struct Ctx {
    /// The HTTP client.
    pub http: Http,
    /// Where metrics come from.
    pub source: Source,
    /// The command's metrics.
    pub stats: Stats,
}

/// Drives `plan` until it succeeds or fails: its final phase, or why it cannot go on
/// (the generated file unreadable, foreign or unwritable).
pub async fn drive(plan: Plan, ctx: Ctx) -> Result<Phase, String> {
    let mut state = resume(&plan)?;
    let mut written = write(&plan, &state, None)?;
    ctx.stats.state(&plan, &state);
    if state.phase.is_final() {
        say(
            &plan,
            &state,
            "already finished for this revision; nothing to do",
        );
        return Ok(state.phase);
    }
    let mut analyzer = Analyzer::new(ctx.http.clone(), ctx.source.clone());
    analyzer.prime(&plan).await;
    loop {
        tokio::time::sleep(plan.interval).await;
        let measured = tick(&plan, &mut state, &mut analyzer, &ctx).await;
        written = write(&plan, &state, Some(&written))?;
        ctx.stats.state(&plan, &state);
        say(&plan, &state, &analysis::describe(&measured));
        if state.phase.is_final() {
            if let Err(e) =
                webhook::run_all(&ctx.http, &plan, HookType::PostRollout, state.phase).await
            {
                eprintln!("rollout {}: post-rollout {e}", plan.id());
            }
            return Ok(state.phase);
        }
    }
}

/// The state in the generated file when it belongs to this revision; else a new release.
fn resume(plan: &Plan) -> Result<State, String> {
    let shown = plan.file.display();
    let text = file::read(&plan.file).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let Some(text) = text else {
        say(plan, &State::start(), "new release");
        return Ok(State::start());
    };
    let (state, revision) = route::parse(&text).map_err(|e| {
        format!(
            "{shown}: {e}; this file name belongs to Rollout {}",
            plan.id()
        )
    })?;
    if revision != plan.revision {
        say(plan, &State::start(), "the Rollout changed: new release");
        return Ok(State::start());
    }
    say(plan, &state, "resumed from the generated file");
    Ok(state)
}

/// Writes the route for `state` unless it is the text already `written`.
fn write(plan: &Plan, state: &State, written: Option<&str>) -> Result<String, String> {
    let text = route::render(plan, state);
    if written != Some(text.as_str()) {
        file::write_atomic(&plan.file, &text)
            .map_err(|e| format!("{}: cannot write: {e}", plan.file.display()))?;
    }
    Ok(text)
}

/// One interval: the phase's work, and the values measured (if any).
async fn tick(plan: &Plan, st: &mut State, analyzer: &mut Analyzer, ctx: &Ctx) -> Vec<Measured> {
    let http = &ctx.http;
    match st.phase {
        Phase::Initializing => {
            match webhook::run_all(http, plan, HookType::PreRollout, st.phase).await {
                Ok(()) => {
                    st.begin(&plan.strategy);
                    // The canary's window starts with its traffic.
                    analyzer.prime(plan).await;
                }
                Err(e) => {
                    st.failed_check(plan.threshold, &e);
                }
            }
            Vec::new()
        }
        Phase::Progressing => {
            if let Some(hook) = webhook::rollback_requested(http, plan, st.phase).await {
                st.roll_back(&format!("rollback webhook {hook} asked for it"));
                return Vec::new();
            }
            let hooks = webhook::run_all(http, plan, HookType::Rollout, st.phase).await;
            let measured = analyzer.measure(plan).await;
            let failure = hooks
                .err()
                .or_else(|| analysis::verdict(&plan.metrics, &measured));
            ctx.stats.check(plan, failure.is_none(), &measured);
            match failure {
                Some(why) => {
                    st.failed_check(plan.threshold, &why);
                }
                None => advance(plan, st, http).await,
            }
            measured
        }
        Phase::Promoting => {
            st.finish();
            Vec::new()
        }
        Phase::Succeeded | Phase::Failed => Vec::new(),
    }
}

/// A passed check: the next step, or the promotion once confirm-promotion hooks agree
/// (Flagger: the promotion waits, with the analysis still running, until they do).
async fn advance(plan: &Plan, st: &mut State, http: &Http) {
    match st.next(&plan.strategy) {
        Next::Step(w) => st.step(w),
        Next::Promote => {
            match webhook::run_all(http, plan, HookType::ConfirmPromotion, st.phase).await {
                Ok(()) => st.promote(),
                Err(e) => st.message = format!("checks passed; promotion waits: {e}"),
            }
        }
    }
}

/// The line per step on stderr.
fn say(plan: &Plan, st: &State, detail: &str) {
    let mut line = format!(
        "rollout {}: {} canary weight {}% (iterations {}, failed checks {}/{}): {}",
        plan.id(),
        st.phase,
        st.weight,
        st.iterations,
        st.failed_checks,
        plan.threshold,
        st.message
    );
    if !detail.is_empty() {
        line.push_str(&format!(" [{detail}]"));
    }
    eprintln!("{line}");
}
