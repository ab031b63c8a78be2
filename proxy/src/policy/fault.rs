//! Fault injection (`HTTPFaultInjection`): a delay and/or an abort, each drawn per request
//! with its own per-million probability. As in Envoy, the fault filter runs before the
//! router: a delay precedes the route timeout, and an abort is never retried.

use meshproxy_config::compile::route::{Abort, Fault};
use std::time::Duration;

/// What to inject into one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Delay before forwarding.
    pub delay: Option<Duration>,
    /// Answer locally instead of forwarding.
    pub abort: Option<Abort>,
}

/// Draws the faults for one request.
pub fn decide(f: &Fault) -> Decision {
    decide_with(f, || fastrand::u32(0..1_000_000))
}

/// Like [`decide`] with an explicit source of draws in `0..1_000_000`.
pub fn decide_with(f: &Fault, mut draw: impl FnMut() -> u32) -> Decision {
    Decision {
        delay: f.delay.and_then(|(d, pm)| (draw() < pm).then_some(d)),
        abort: f.abort.and_then(|(a, pm)| (draw() < pm).then_some(a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_per_million() {
        let f = Fault {
            delay: Some((Duration::from_millis(5), 250_000)),
            abort: Some((Abort::Http(503), 1_000_000)),
        };
        let mut delayed = 0;
        for _ in 0..20_000 {
            let d = decide(&f);
            assert_eq!(d.abort, Some(Abort::Http(503)));
            delayed += d.delay.is_some() as u32;
        }
        assert!((4_500..5_500).contains(&delayed), "{delayed}");
        let never = Fault {
            delay: None,
            abort: Some((Abort::Http(500), 0)),
        };
        assert_eq!(decide(&never), Decision::default());
    }
}
