//! The pieces of proxy/tests/rollout.rs: a canary upstream that can be told to fail, a
//! `meshproxy run` in front of two versions, a load loop recording every answer, a real
//! Prometheus (from `common::prometheus`), and a `meshproxy rollout` process whose stderr
//! lines are read as they come.
#![allow(dead_code)]

mod flow;

pub use flow::*;

pub use super::common::prometheus::{have, Prometheus};
use super::{binary, common};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// An upstream answering `200 <name>` until `bad` is set, then `500`; `x-upstream: name`.
pub async fn switchable(name: &'static str) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bad = Arc::new(AtomicBool::new(false));
    let flag = bad.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let flag = flag.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let status = if flag.load(Ordering::SeqCst) {
                        500
                    } else {
                        200
                    };
                    async move {
                        let mut r = http::Response::new(Full::new(Bytes::from(name)));
                        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        r.headers_mut().insert("x-upstream", name.parse().unwrap());
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, bad)
}

/// The config directory: a proxy (admin and outbound on free ports), `reviews` with a
/// `v1` and a `v2` endpoint, its DestinationRule, and a Rollout with `analysis`
/// (lines indented by four spaces).
pub fn config_dir(v1: u16, v2: u16, analysis: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "meshproxy-rollout-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        "apiVersion: meshproxy.io/v1alpha1\nkind: Proxy\nmetadata: {{name: web}}\nspec:\n  admin: {{address: \"127.0.0.1:0\"}}\n  listeners:\n  - {{name: outbound, address: \"127.0.0.1:0\", direction: OUTBOUND}}\n---\n{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews}}\nspec:\n  host: reviews\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n---\napiVersion: meshproxy.io/v1alpha1\nkind: Rollout\nmetadata: {{name: reviews}}\nspec:\n  host: reviews\n  stable: v1\n  canary: v2\n  analysis:\n{analysis}",
        common::service(
            "reviews.default.svc.cluster.local",
            &[(v1, "version: v1"), (v2, "version: v2")]
        )
    );
    std::fs::write(dir.join("mesh.yaml"), text).unwrap();
    dir
}

/// What the proxy has in force for the rollout: the generated document's
/// `(phase, weight)` in `/config_dump`.
pub async fn in_force(admin: SocketAddr) -> Option<(String, u32)> {
    let body = common::send(
        admin,
        "GET",
        "admin",
        "/config_dump",
        &[],
        Bytes::new(),
        false,
    )
    .await
    .body;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let docs = v["resources"].as_array()?;
    let doc = docs
        .iter()
        .find(|d| d["kind"] == "VirtualService" && d["name"] == "reviews")?;
    let ann = &doc["document"]["metadata"]["annotations"];
    let phase = ann["meshproxy.io/rollout-phase"].as_str()?.to_string();
    let weight = ann["meshproxy.io/rollout-weight"].as_str()?.parse().ok()?;
    Some((phase, weight))
}

/// Polls until the proxy has `phase` in force.
pub async fn wait_in_force(admin: SocketAddr, phase: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if in_force(admin).await.is_some_and(|(p, _)| p == phase) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// One answer the load saw.
#[derive(Clone, Debug)]
pub struct Answer {
    /// When the request was sent.
    pub sent: Instant,
    /// The `x-user` it carried.
    pub user: &'static str,
    /// The status (0: no answer).
    pub status: u16,
    /// `x-upstream` of the answer.
    pub upstream: String,
}

/// A load loop through the proxy for `reviews`, a request every 5 ms, users in turn.
pub struct Load {
    stop: Arc<AtomicBool>,
    /// Every answer so far.
    pub answers: Arc<Mutex<Vec<Answer>>>,
}

impl Load {
    /// Starts the loop on the current runtime.
    pub fn start(out: SocketAddr, users: &'static [&'static str]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), answers.clone());
        tokio::spawn(async move {
            let client = common::h1_client();
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let mut i = 0usize;
            while !s.load(Ordering::SeqCst) {
                tick.tick().await;
                let user = users[i % users.len()];
                i += 1;
                let req = http::Request::get(format!("http://{out}/r"))
                    .header("host", "reviews")
                    .header("x-user", user)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let sent = Instant::now();
                let (status, upstream) = match client.request(req).await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let up = resp
                            .headers()
                            .get("x-upstream")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let _ = resp.into_body().collect().await;
                        (status, up)
                    }
                    Err(_) => (0, String::new()),
                };
                a.lock().unwrap().push(Answer {
                    sent,
                    user,
                    status,
                    upstream,
                });
            }
        });
        Load { stop, answers }
    }

    /// The answers so far.
    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    /// Stops the loop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `meshproxy rollout` process; killed on drop.
pub struct Rollout {
    /// The process.
    pub child: Child,
    rx: mpsc::Receiver<String>,
    /// Every stderr line so far, with when it was read.
    pub lines: Vec<(Instant, String)>,
}

impl Rollout {
    /// Starts `meshproxy rollout -c dir args...`.
    pub fn start(dir: &Path, args: &[&str]) -> Rollout {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshproxy"))
            .arg("rollout")
            .arg("-c")
            .arg(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn meshproxy rollout");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Rollout {
            child,
            rx,
            lines: Vec::new(),
        }
    }

    /// Waits (without blocking the runtime) for a line containing `text`.
    pub async fn wait_line(&mut self, text: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.rx.try_recv() {
                Ok(l) => {
                    self.lines.push((Instant::now(), l.clone()));
                    if l.contains(text) {
                        return Some(l);
                    }
                }
                Err(mpsc::TryRecvError::Empty) => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Err(mpsc::TryRecvError::Disconnected) => return None,
            }
        }
        None
    }

    /// Waits for the exit (reading the remaining lines); its code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            while let Ok(l) = self.rx.try_recv() {
                self.lines.push((Instant::now(), l));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                while let Ok(l) = self.rx.recv_timeout(Duration::from_millis(200)) {
                    self.lines.push((Instant::now(), l));
                }
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The `(phase, weight)` of every step line, consecutive repeats dropped.
    pub fn steps(&self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = Vec::new();
        for (_, l) in &self.lines {
            let Some(rest) = l.split_once(": ").map(|x| x.1) else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let (Some(phase), Some("canary"), Some("weight"), Some(w)) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                continue;
            };
            let Ok(w) = w.trim_end_matches('%').parse() else {
                continue;
            };
            if out.last() != Some(&(phase.to_string(), w)) {
                out.push((phase.to_string(), w));
            }
        }
        out
    }

    /// All lines, for failure messages.
    pub fn log(&self) -> String {
        self.lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Rollout {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `meshproxy run` on `dir`: the process and its admin and outbound addresses.
pub fn run_proxy(dir: &Path) -> (binary::Running, SocketAddr, SocketAddr) {
    let p = binary::run_dir(dir, &["--workers", "1", "--access-log", "off"]);
    let (admin, out) = (p.addr("admin"), p.addr("outbound"));
    (p, admin, out)
}

/// The generated file's `(phase, weight)`.
pub fn on_disk(dir: &Path) -> Option<(String, u32)> {
    let text = std::fs::read_to_string(dir.join("rollout-default-reviews.yaml")).ok()?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    let ann = &v["metadata"]["annotations"];
    Some((
        ann["meshproxy.io/rollout-phase"].as_str()?.to_string(),
        ann["meshproxy.io/rollout-weight"].as_str()?.parse().ok()?,
    ))
}

/// One webhook call received: its `type`, `phase` and whole payload.
#[derive(Clone, Debug)]
pub struct HookCall {
    /// The payload's `type`.
    pub kind: String,
    /// The payload's `phase`.
    pub phase: String,
    /// The payload.
    pub body: serde_json::Value,
}

/// A webhook receiver: its URL and every call recorded; `answer(kind, nth call of that
/// kind)` is the status it answers.
pub async fn hooks(answer: fn(&str, usize) -> u16) -> (String, Arc<Mutex<Vec<HookCall>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(Mutex::new(Vec::<HookCall>::new()));
    let c = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let c = c.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let c = c.clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let v: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            let kind = v["type"].as_str().unwrap_or("").to_string();
                            let status = {
                                let mut calls = c.lock().unwrap();
                                let nth = calls.iter().filter(|h| h.kind == kind).count();
                                calls.push(HookCall {
                                    kind: kind.clone(),
                                    phase: v["phase"].as_str().unwrap_or("").to_string(),
                                    body: v.clone(),
                                });
                                answer(&kind, nth)
                            };
                            let mut r = http::Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}/hook"), calls)
}
