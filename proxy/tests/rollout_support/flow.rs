//! The steps every rollout test repeats: two versions of `reviews` behind `meshproxy run`,
//! a load once the route is in force, and the assertions on the `meshproxy rollout`
//! process that print its log when they fail.

use super::{config_dir, run_proxy, switchable, wait_in_force, Load, Rollout};
use crate::{binary, common};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The skip message of tests that need a real Prometheus: whether to skip.
pub fn skip_without_prometheus() -> bool {
    if super::have("prometheus") {
        return false;
    }
    eprintln!("SKIPPED: prometheus not installed (apt-get install prometheus; .ci/run does)");
    true
}

/// `meshproxy rollout` on a Rollout of `analysis` with no proxy behind it and nothing to
/// scrape (every metric check fails): the config directory and the process.
pub fn rollout_alone(analysis: &str) -> (PathBuf, Rollout) {
    let dir = config_dir(1, 2, analysis);
    let rollout = Rollout::start(&dir, &["--scrape", "127.0.0.1:1"]);
    (dir, rollout)
}

/// `(phase, weight)` pairs as [`Rollout::steps`] returns them.
pub fn steps(list: &[(&str, u32)]) -> Vec<(String, u32)> {
    list.iter().map(|(p, w)| (p.to_string(), *w)).collect()
}

/// `meshproxy run` in front of `v1` (a test upstream) and `v2` (one that answers 500
/// once `bad` is set), with a Rollout of `analysis`.
pub struct Stage {
    /// The stable version; kept alive for the test.
    pub v1: common::Upstream,
    /// Set to make the canary answer 500.
    pub bad: Arc<AtomicBool>,
    /// The config directory.
    pub dir: PathBuf,
    /// The proxy process; killed on drop.
    pub proxy: binary::Running,
    /// Its admin address.
    pub admin: SocketAddr,
    /// Its outbound listener.
    pub out: SocketAddr,
}

impl Stage {
    /// Starts both versions and the proxy.
    pub async fn start(analysis: &str) -> Stage {
        let v1 = common::upstream("v1").await;
        let (v2, bad) = switchable("v2").await;
        let dir = config_dir(v1.addr.port(), v2.port(), analysis);
        let (proxy, admin, out) = run_proxy(&dir);
        Stage {
            v1,
            bad,
            dir,
            proxy,
            admin,
            out,
        }
    }

    /// Waits for `rollout`'s route to be in force (all on v1) and starts the load for
    /// `users`: without the route Istio's default balances over both versions.
    pub async fn load_once_routed(
        &self,
        rollout: &Rollout,
        users: &'static [&'static str],
    ) -> Load {
        assert!(
            wait_in_force(self.admin, "Initializing", Duration::from_secs(20)).await,
            "{}",
            rollout.log()
        );
        Load::start(self.out, users)
    }

    /// Waits for `phase` to be in force and for 50 answers sent after that; when it
    /// was in force.
    pub async fn settled(&self, phase: &str, load: &Load) -> Instant {
        assert!(wait_in_force(self.admin, phase, Duration::from_secs(10)).await);
        let since = Instant::now();
        common::eventually(Duration::from_secs(5), || {
            load.answers().iter().filter(|a| a.sent > since).count() > 50
        })
        .await;
        since
    }
}

impl Rollout {
    /// Waits for a line containing `text`; fails with the log if none comes.
    pub async fn expect_line(&mut self, text: &str, within: Duration) -> String {
        match self.wait_line(text, within).await {
            Some(line) => line,
            None => panic!("no line with {text:?}:\n{}", self.log()),
        }
    }

    /// Waits for the exit; fails with the log unless its code is `code`.
    pub async fn expect_exit(&mut self, within: Duration, code: i32) {
        let got = self.wait_exit(within).await;
        assert_eq!(got, Some(code), "{}", self.log());
    }
}
