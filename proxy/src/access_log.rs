//! Access logs: one line per request in Envoy's default format, or JSON.
//!
//! Lines are formatted into a buffer of the worker thread that served the request and
//! handed to a writer thread in batches — when the buffer passes [`BATCH_BYTES`], or
//! [`FLUSH_INTERVAL`] after its first line — as Envoy's file access log buffers per worker
//! and flushes on a timer (`access_log_flush_interval`, 1 s) or when its buffer fills.
//! A request then costs no allocation, no wake-up of another thread and no system call
//! for its line. A slow stdout never blocks the request path: the queue to the writer is
//! bounded and a batch that does not fit is dropped and its lines counted.

use crate::flags::Flags;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Everything an access log line says about a request.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// When the request started.
    pub start: Option<SystemTime>,
    /// Method.
    pub method: String,
    /// Original path (with query).
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'static str,
    /// Response status (0 if none was sent).
    pub status: u16,
    /// Response flags.
    pub flags: Flags,
    /// Request body bytes received.
    pub bytes_received: u64,
    /// Response body bytes sent.
    pub bytes_sent: u64,
    /// Total duration.
    pub duration: Duration,
    /// Time to upstream response headers.
    pub upstream_service_time: Option<Duration>,
    /// `x-forwarded-for` as received.
    pub forwarded_for: String,
    /// `user-agent`.
    pub user_agent: String,
    /// `x-request-id`.
    pub request_id: String,
    /// `:authority`.
    pub authority: String,
    /// The upstream endpoint.
    pub upstream_host: String,
    /// The upstream cluster.
    pub upstream_cluster: String,
    /// Route name.
    pub route_name: String,
    /// Why a local reply was sent.
    pub details: &'static str,
}

/// The access log sink.
pub struct AccessLog {
    id: u64,
    tx: Option<SyncSender<Msg>>,
    json: bool,
    dropped: std::sync::Arc<AtomicU64>,
}

/// A worker's batch is handed to the writer once it holds this many bytes.
pub const BATCH_BYTES: usize = 16 * 1024;

/// A batch is handed to the writer at the latest this long after its first line (shorter
/// than Envoy's 1 s: people watch a dev proxy's log as they send requests).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// What the writer thread receives.
enum Msg {
    /// Lines to write.
    Lines(String),
    /// Write everything received so far, then answer.
    Flush(std::sync::mpsc::Sender<()>),
}

static NEXT_LOG: AtomicU64 = AtomicU64::new(1);

/// This thread's batch: for which log, and the lines not yet handed over.
struct Batch {
    log: u64,
    tx: Option<SyncSender<Msg>>,
    dropped: Option<std::sync::Arc<AtomicU64>>,
    text: String,
}

impl Batch {
    fn hand_over(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let lines = std::mem::replace(&mut self.text, String::with_capacity(BATCH_BYTES));
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(Msg::Lines(l))) = tx.try_send(Msg::Lines(lines)) {
            if let Some(d) = &self.dropped {
                d.fetch_add(l.lines().count() as u64, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Batch {
    /// A worker thread that ends (shutdown) hands over what it still holds.
    fn drop(&mut self) {
        self.hand_over();
    }
}

thread_local! {
    static BATCH: std::cell::RefCell<Batch> = const {
        std::cell::RefCell::new(Batch {
            log: 0,
            tx: None,
            dropped: None,
            text: String::new(),
        })
    };
}

impl AccessLog {
    /// A log writing to stdout (`enabled`), in text or JSON.
    pub fn stdout(enabled: bool, json: bool) -> Self {
        let tx = enabled.then(|| {
            // Batches, not lines: 1024 of them is up to 16 MiB waiting for a slow stdout.
            let (tx, rx) = sync_channel::<Msg>(1024);
            std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || writer(rx, std::io::stdout()))
                .ok();
            tx
        });
        AccessLog {
            id: NEXT_LOG.fetch_add(1, Ordering::Relaxed),
            tx,
            json,
            dropped: std::sync::Arc::new(AtomicU64::new(0)),
        }
    }

    /// A log that writes nothing.
    pub fn disabled() -> Self {
        AccessLog {
            id: 0,
            tx: None,
            json: false,
            dropped: std::sync::Arc::new(AtomicU64::new(0)),
        }
    }

    /// Hands this thread's batch to the writer now.
    pub fn flush_local(&self) {
        let _ = BATCH.try_with(|b| {
            if let Ok(mut b) = b.try_borrow_mut() {
                if b.log == self.id {
                    b.hand_over();
                }
            }
        });
    }

    /// Waits (at most `timeout`) until the writer has written every batch handed over so
    /// far (at exit, after the workers have ended and handed theirs over).
    pub fn flush_wait(&self, timeout: Duration) {
        self.flush_local();
        let Some(tx) = &self.tx else { return };
        let (ack, done) = std::sync::mpsc::channel();
        if tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(timeout);
        }
    }

    /// True when lines are written (callers skip building records otherwise).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Adds one line to this thread's batch.
    pub fn log(&self, r: &Record) {
        let Some(tx) = &self.tx else { return };
        let queued = BATCH.try_with(|b| {
            let Ok(mut b) = b.try_borrow_mut() else {
                return false;
            };
            if b.log != self.id {
                // Another log's batch (a thread shared by two servers, as in tests).
                b.hand_over();
                b.log = self.id;
                b.tx = Some(tx.clone());
                b.dropped = Some(self.dropped.clone());
            }
            let first = b.text.is_empty();
            if self.json {
                write_json(r, &mut b.text);
            } else {
                write_text(r, &mut b.text);
            }
            if b.text.len() >= BATCH_BYTES {
                b.hand_over();
            } else if first {
                // The batch's deadline: on a worker, a timer; elsewhere, at once.
                match tokio::runtime::Handle::try_current() {
                    Ok(h) => {
                        let id = self.id;
                        h.spawn(async move {
                            tokio::time::sleep(FLUSH_INTERVAL).await;
                            let _ = BATCH.try_with(|b| {
                                if let Ok(mut b) = b.try_borrow_mut() {
                                    if b.log == id {
                                        b.hand_over();
                                    }
                                }
                            });
                        });
                    }
                    Err(_) => b.hand_over(),
                }
            }
            true
        });
        if queued != Ok(true) {
            // No thread-local batch (thread shutting down): send the line on its own.
            let mut line = String::new();
            if self.json {
                write_json(r, &mut line);
            } else {
                write_text(r, &mut line);
            }
            if let Err(TrySendError::Full(_)) = tx.try_send(Msg::Lines(line)) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn writer(rx: Receiver<Msg>, out: impl Write) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(msg) = rx.recv() {
        let mut acks = Vec::new();
        let mut take = |m: Msg, out: &mut std::io::BufWriter<_>| match m {
            Msg::Lines(l) => {
                let _ = out.write_all(l.as_bytes());
            }
            Msg::Flush(ack) => acks.push(ack),
        };
        take(msg, &mut out);
        // Everything already queued, then one flush.
        while let Ok(more) = rx.try_recv() {
            take(more, &mut out);
        }
        let _ = out.flush();
        for a in acks {
            let _ = a.send(());
        }
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// Envoy's default format:
/// `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
/// %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
/// %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
/// "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"`
pub fn text_line(r: &Record) -> String {
    let mut out = String::with_capacity(256);
    write_text(r, &mut out);
    out
}

/// [`text_line`], appended to `out`.
pub fn write_text(r: &Record, out: &mut String) {
    use std::fmt::Write as _;
    out.push('[');
    write_rfc3339_millis(r.start.unwrap_or(UNIX_EPOCH), out);
    let _ = write!(
        out,
        "] \"{} {} {}\" {} {} {} {} {} ",
        dash(&r.method),
        dash(&r.path),
        dash(r.protocol),
        r.status,
        r.flags,
        r.bytes_received,
        r.bytes_sent,
        r.duration.as_millis(),
    );
    match r.upstream_service_time {
        Some(d) => {
            let _ = write!(out, "{}", d.as_millis());
        }
        None => out.push('-'),
    }
    let _ = writeln!(
        out,
        " \"{}\" \"{}\" \"{}\" \"{}\" \"{}\"",
        dash(&r.forwarded_for),
        dash(&r.user_agent),
        dash(&r.request_id),
        dash(&r.authority),
        dash(&r.upstream_host),
    );
}

fn json_escape(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One JSON object per line, with Envoy's JSON access-log field names.
pub fn json_line(r: &Record) -> String {
    let mut o = String::with_capacity(512);
    write_json(r, &mut o);
    o
}

/// [`json_line`], appended to `o`.
pub fn write_json(r: &Record, o: &mut String) {
    o.push('{');
    let field = |o: &mut String, k: &str, v: &str, first: bool| {
        if !first {
            o.push(',');
        }
        json_escape(k, o);
        o.push(':');
        json_escape(v, o);
    };
    field(
        o,
        "start_time",
        &rfc3339_millis(r.start.unwrap_or(UNIX_EPOCH)),
        true,
    );
    field(o, "method", &r.method, false);
    field(o, "path", &r.path, false);
    field(o, "protocol", r.protocol, false);
    o.push_str(&format!(",\"response_code\":{}", r.status));
    field(o, "response_flags", &r.flags.to_string(), false);
    field(o, "response_code_details", r.details, false);
    o.push_str(&format!(
        ",\"bytes_received\":{},\"bytes_sent\":{},\"duration\":{}",
        r.bytes_received,
        r.bytes_sent,
        r.duration.as_millis()
    ));
    match r.upstream_service_time {
        Some(d) => o.push_str(&format!(",\"upstream_service_time\":{}", d.as_millis())),
        None => o.push_str(",\"upstream_service_time\":null"),
    }
    field(o, "x_forwarded_for", &r.forwarded_for, false);
    field(o, "user_agent", &r.user_agent, false);
    field(o, "request_id", &r.request_id, false);
    field(o, "authority", &r.authority, false);
    field(o, "upstream_host", &r.upstream_host, false);
    field(o, "upstream_cluster", &r.upstream_cluster, false);
    field(o, "route_name", &r.route_name, false);
    o.push_str("}\n");
}

/// `2016-04-15T20:17:00.310Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    write_rfc3339_millis(t, &mut out);
    out
}

/// [`rfc3339_millis`], appended to `out`.
pub fn write_rfc3339_millis(t: SystemTime, out: &mut String) {
    use std::fmt::Write as _;
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH + Duration::from_millis(1_460_751_420_310)),
            "2016-04-15T20:17:00.310Z"
        );
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn envoy_default_line() {
        let r = Record {
            start: Some(UNIX_EPOCH + Duration::from_millis(1_460_751_420_310)),
            method: "GET".into(),
            path: "/reviews/0".into(),
            protocol: "HTTP/1.1",
            status: 404,
            flags: Flags::NO_ROUTE_FOUND,
            duration: Duration::from_millis(3),
            authority: "reviews:9080".into(),
            ..Default::default()
        };
        assert_eq!(
            text_line(&r),
            "[2016-04-15T20:17:00.310Z] \"GET /reviews/0 HTTP/1.1\" 404 NR 0 0 3 - \"-\" \"-\" \"-\" \"reviews:9080\" \"-\"\n"
        );
        let j = json_line(&r);
        assert!(
            j.contains("\"response_flags\":\"NR\"") && j.contains("\"response_code\":404"),
            "{j}"
        );
    }
}
