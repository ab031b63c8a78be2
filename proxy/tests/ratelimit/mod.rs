//! What the rate-limit tests share: the proxy they start, paced load from a real HTTP
//! client, `/metrics` counters, and a `redis-server` of the test's own on a loopback port.
#![allow(dead_code)]

mod setup;

pub use setup::*;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// One answered request: when it was sent (from the load's start) and its status.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    /// Seconds from the start of the load to the request's send time.
    pub at: f64,
    /// Status (0: no answer).
    pub status: u16,
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every request's answer.
    pub answers: Vec<Answer>,
}

impl Outcome {
    /// Requests answered `status` that were sent within `[from, to)` seconds.
    pub fn count(&self, status: u16, from: f64, to: f64) -> usize {
        self.answers
            .iter()
            .filter(|a| a.status == status && a.at >= from && a.at < to)
            .count()
    }

    /// Requests sent within `[from, to)`.
    pub fn sent(&self, from: f64, to: f64) -> usize {
        self.answers
            .iter()
            .filter(|a| a.at >= from && a.at < to)
            .count()
    }

    /// 200s in the whole run.
    pub fn through(&self) -> usize {
        self.count(200, 0.0, f64::MAX)
    }

    /// When the last request was sent (seconds from the start).
    pub fn last_sent(&self) -> f64 {
        self.answers.iter().map(|a| a.at).fold(0.0, f64::max)
    }
}

/// Sends `rate` GETs a second to `addr` for `duration` from `start`, each request on a
/// new connection (so the proxy's workers share them), paced against the clock; waits
/// for every answer.
pub async fn paced(
    addr: SocketAddr,
    host: &str,
    headers: &[(&str, &str)],
    rate: u32,
    duration: Duration,
    start: Instant,
) -> Outcome {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let n = (duration.as_secs_f64() * rate as f64) as u32;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let at = start + gap * i;
        tokio::time::sleep_until(at).await;
        let mut req = http::Request::builder()
            .uri(format!("http://{addr}/"))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::new())).expect("request");
        let client = client.clone();
        // The time it is sent, not the one it was due: a load that falls behind is judged
        // by when its requests really went out.
        let offset = Instant::now()
            .saturating_duration_since(start)
            .as_secs_f64();
        tasks.spawn(async move {
            let status =
                match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
                    Ok(Ok(resp)) => resp.status().as_u16(),
                    _ => 0,
                };
            Answer { at: offset, status }
        });
    }
    let mut out = Outcome::default();
    while let Some(a) = tasks.join_next().await {
        out.answers.push(a.expect("request task"));
    }
    out
}

/// How long after a whole second [`next_second`] starts a load: a load's window `w` of
/// the wall clock is its seconds `[w - LATE, w + 1 - LATE)`.
pub const LATE: f64 = 0.002;

/// The next whole second of the wall clock (plus [`LATE`]), as a tokio instant: loads
/// that start there cover whole fixed windows of a Global rule.
pub fn next_second() -> Instant {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let to_next = Duration::from_secs(1) - Duration::from_nanos(now.subsec_nanos() as u64);
    Instant::now() + to_next + Duration::from_secs_f64(LATE)
}

/// A `/metrics` sample: the value of the series whose line starts with `series`.
pub async fn metric(admin: SocketAddr, series: &str) -> u64 {
    let text = crate::common::send(admin, "GET", "admin", "/metrics", &[], Bytes::new(), false)
        .await
        .body;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Why a test needing `redis-server` cannot run here, if it cannot.
pub fn redis_missing() -> Option<&'static str> {
    let found = Command::new("which")
        .arg("redis-server")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!found).then_some(
        "redis-server is not installed (Debian package redis-server; .ci/run installs it)",
    )
}

/// A `redis-server` on `127.0.0.1:port`, no persistence, killed on drop.
pub struct Redis {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl Redis {
    /// Starts one and waits (with a deadline) until it accepts connections.
    pub fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Redis { child, port }
    }

    /// Kills it now (SIGKILL: an outage, not a shutdown).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The keys meshproxy made in the Redis on `port` and the sum of their counts, asked
/// with one `EVAL` over RESP on a plain socket.
pub fn redis_counts(port: u16) -> (u64, u64) {
    use std::io::{Read, Write};
    let script = "local ks = redis.call('KEYS', 'meshproxy_rl:*') local s = 0 \
                  for _, k in ipairs(ks) do s = s + tonumber(redis.call('GET', k)) end \
                  return {#ks, s}";
    let args = ["EVAL", script, "0"];
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(cmd.as_bytes()).expect("send to redis");
    let mut reply = String::new();
    let mut buf = [0u8; 256];
    while reply.matches('\n').count() < 3 {
        let n = s.read(&mut buf).expect("redis reply");
        assert!(n > 0, "redis closed: {reply:?}");
        reply.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let ints: Vec<u64> = reply
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|v| v.parse().ok())
        .collect();
    assert_eq!(ints.len(), 2, "unexpected reply {reply:?}");
    (ints[0], ints[1])
}
