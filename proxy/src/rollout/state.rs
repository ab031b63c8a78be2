//! The release's state machine, pure: where a rollout stands (phase, canary weight,
//! iterations, failed checks) and how one interval's result moves it. Flagger's canary
//! analysis is the model (https://docs.flagger.app/usage/how-it-works#canary-analysis):
//! failed checks accumulate over the whole analysis and reaching `threshold` rolls back;
//! a passed check moves one step; past the last step the confirm-promotion hooks gate the
//! promotion, which routes every request to the canary.

use super::plan::Strategy;
use std::fmt;

/// The phases written to `meshproxy.io/rollout-phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The route exists, all traffic on the stable subset; pre-rollout hooks next.
    Initializing,
    /// The analysis runs and the canary's share moves.
    Progressing,
    /// Every request goes to the canary; finishing next.
    Promoting,
    /// Released: every request goes to the canary.
    Succeeded,
    /// Rolled back: every request goes to the stable subset.
    Failed,
}

impl Phase {
    /// Every phase (for the per-phase metric).
    pub const ALL: [Phase; 5] = [
        Phase::Initializing,
        Phase::Progressing,
        Phase::Promoting,
        Phase::Succeeded,
        Phase::Failed,
    ];

    /// The annotation's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Initializing => "Initializing",
            Phase::Progressing => "Progressing",
            Phase::Promoting => "Promoting",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    /// Parses an annotation's value.
    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Succeeded or Failed: nothing more to do for this revision.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a rollout stands; all of it is written to the generated file's annotations,
/// so a restarted command resumes from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// The phase.
    pub phase: Phase,
    /// The canary's share of the default route, in %.
    pub weight: u32,
    /// Passed checks (A/B and blue-green count them toward `iterations`).
    pub iterations: u32,
    /// Failed checks so far.
    pub failed_checks: u32,
    /// Why the last transition happened (the rollback's reason, a held promotion).
    pub message: String,
}

/// What a passed check leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Move the canary to this weight (A/B and blue-green: stay, one more iteration).
    Step(u32),
    /// The last step passed: promote (once the confirm-promotion hooks agree).
    Promote,
}

impl State {
    /// A new release: all traffic on the stable subset.
    pub fn start() -> State {
        State {
            phase: Phase::Initializing,
            weight: 0,
            iterations: 0,
            failed_checks: 0,
            message: "release started".into(),
        }
    }

    /// The pre-rollout hooks passed: the canary gets its first share.
    pub fn begin(&mut self, strategy: &Strategy) {
        self.phase = Phase::Progressing;
        self.weight = match strategy {
            Strategy::Canary { weights } => weights.first().copied().unwrap_or(100),
            Strategy::AB { .. } | Strategy::BlueGreen { .. } => 0,
        };
        self.message = "analysis started".into();
    }

    /// A check failed: counted, and at `threshold` failures rolled back. True when
    /// rolled back.
    pub fn failed_check(&mut self, threshold: u32, why: &str) -> bool {
        self.failed_checks += 1;
        if self.failed_checks >= threshold {
            self.roll_back(&format!(
                "{why} ({} of {threshold} failed checks)",
                self.failed_checks
            ));
            true
        } else {
            self.message = format!(
                "check failed ({} of {threshold}): {why}",
                self.failed_checks
            );
            false
        }
    }

    /// What a passed check leads to, without applying it.
    pub fn next(&self, strategy: &Strategy) -> Next {
        match strategy {
            Strategy::Canary { weights } => match weights.iter().find(|w| **w > self.weight) {
                Some(w) => Next::Step(*w),
                None => Next::Promote,
            },
            Strategy::AB { iterations } | Strategy::BlueGreen { iterations, .. } => {
                if self.iterations + 1 >= *iterations {
                    Next::Promote
                } else {
                    Next::Step(self.weight)
                }
            }
        }
    }

    /// Applies a passed check that does not promote.
    pub fn step(&mut self, weight: u32) {
        self.iterations += 1;
        self.weight = weight;
        self.message = "checks passed".into();
    }

    /// Every request to the canary.
    pub fn promote(&mut self) {
        self.iterations += 1;
        self.phase = Phase::Promoting;
        self.weight = 100;
        self.message = "checks passed: promoting".into();
    }

    /// The promotion is in force: done.
    pub fn finish(&mut self) {
        self.phase = Phase::Succeeded;
        self.weight = 100;
        self.message = "promoted".into();
    }

    /// Every request back to the stable subset.
    pub fn roll_back(&mut self, why: &str) {
        self.phase = Phase::Failed;
        self.weight = 0;
        self.message = format!("rolled back: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary() -> Strategy {
        Strategy::Canary {
            weights: vec![5, 10, 25, 50],
        }
    }

    #[test]
    fn passed_checks_walk_the_weights_then_promote() {
        let s = canary();
        let mut st = State::start();
        st.begin(&s);
        let mut seen = vec![st.weight];
        while let Next::Step(w) = st.next(&s) {
            st.step(w);
            seen.push(w);
        }
        st.promote();
        seen.push(st.weight);
        assert_eq!(seen, [5, 10, 25, 50, 100]);
        assert_eq!(st.phase, Phase::Promoting);
        st.finish();
        assert!(st.phase.is_final());
    }

    #[test]
    fn threshold_failed_checks_roll_back_and_failures_accumulate() {
        let s = canary();
        let mut st = State::start();
        st.begin(&s);
        assert!(!st.failed_check(2, "success rate 50% < 99%"));
        assert_eq!(st.phase, Phase::Progressing);
        // A passed check in between does not reset the count (Flagger's rule).
        if let Next::Step(w) = st.next(&s) {
            st.step(w);
        }
        assert!(st.failed_check(2, "success rate 0% < 99%"));
        assert_eq!((st.phase, st.weight), (Phase::Failed, 0));
        assert!(st.message.contains("2 of 2"), "{}", st.message);
    }

    #[test]
    fn a_b_counts_iterations() {
        let s = Strategy::AB { iterations: 3 };
        let mut st = State::start();
        st.begin(&s);
        assert_eq!(st.next(&s), Next::Step(0));
        st.step(0);
        assert_eq!(st.next(&s), Next::Step(0));
        st.step(0);
        assert_eq!(st.next(&s), Next::Promote);
    }

    #[test]
    fn phases_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
        assert_eq!(Phase::parse("Waiting"), None);
    }
}
