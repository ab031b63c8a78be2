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
use http::HeaderValue;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Everything an access log line says about a request.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// When the request started.
    pub start: Option<SystemTime>,
    /// Method (none for a TCP connection).
    pub method: Option<http::Method>,
    /// Original path (with query). The request's own values are kept as received: a
    /// clone shares their bytes, so the record costs no copy of them.
    pub path: Option<http::uri::PathAndQuery>,
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
    pub forwarded_for: Option<HeaderValue>,
    /// `user-agent`.
    pub user_agent: Option<HeaderValue>,
    /// `x-request-id`.
    pub request_id: Option<HeaderValue>,
    /// `:authority`.
    pub authority: String,
    /// The upstream endpoint.
    pub upstream_host: std::sync::Arc<str>,
    /// The upstream cluster.
    pub upstream_cluster: std::sync::Arc<str>,
    /// Route name.
    pub route_name: std::sync::Arc<str>,
    /// Why a local reply was sent.
    pub details: &'static str,
    /// The request principal (`<iss>/<sub>`) of a verified JWT (RequestAuthentication).
    pub request_principal: Option<std::sync::Arc<str>>,
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

/// A header value as the log writes it: its text, or empty (so `-`) when it is not
/// visible ASCII, as Envoy's `%REQ()%` leaves such values out.
fn value(v: &Option<HeaderValue>) -> &str {
    v.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn method(r: &Record) -> &str {
    r.method.as_ref().map_or("", http::Method::as_str)
}

fn path(r: &Record) -> &str {
    r.path.as_ref().map_or("", http::uri::PathAndQuery::as_str)
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

/// [`text_line`], appended to `out`. Written piece by piece (numbers through `itoa`),
/// not through `format!`: the formatting machinery was most of a line's cost.
pub fn write_text(r: &Record, out: &mut String) {
    out.push('[');
    write_rfc3339_millis(r.start.unwrap_or(UNIX_EPOCH), out);
    out.push_str("] \"");
    out.push_str(dash(method(r)));
    out.push(' ');
    out.push_str(dash(path(r)));
    out.push(' ');
    out.push_str(dash(r.protocol));
    out.push_str("\" ");
    push_int(out, r.status);
    out.push(' ');
    push_flags(out, r.flags);
    out.push(' ');
    push_int(out, r.bytes_received);
    out.push(' ');
    push_int(out, r.bytes_sent);
    out.push(' ');
    push_int(out, r.duration.as_millis());
    out.push(' ');
    match r.upstream_service_time {
        Some(d) => push_int(out, d.as_millis()),
        None => out.push('-'),
    }
    for (i, v) in [
        value(&r.forwarded_for),
        value(&r.user_agent),
        value(&r.request_id),
        &r.authority,
        &r.upstream_host,
    ]
    .into_iter()
    .enumerate()
    {
        out.push_str(if i == 0 { " \"" } else { "\" \"" });
        out.push_str(dash(v));
    }
    out.push_str("\"\n");
}

/// An integer in decimal.
fn push_int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Response flags in Envoy's format (see [`Flags`]'s `Display`).
fn push_flags(out: &mut String, flags: Flags) {
    use std::fmt::Write as _;
    if flags.is_empty() {
        out.push('-');
    } else {
        let _ = write!(out, "{flags}");
    }
}

/// `n` in decimal, zero-padded to `width` digits.
fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
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
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                out.push(char::from(b"0123456789abcdef"[(c as usize) >> 4]));
                out.push(char::from(b"0123456789abcdef"[(c as usize) & 15]));
            }
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
    o.push_str("\"start_time\":\"");
    write_rfc3339_millis(r.start.unwrap_or(UNIX_EPOCH), o);
    o.push('"');
    field(o, "method", method(r), false);
    field(o, "path", path(r), false);
    field(o, "protocol", r.protocol, false);
    o.push_str(",\"response_code\":");
    push_int(o, r.status);
    o.push_str(",\"response_flags\":\"");
    push_flags(o, r.flags);
    o.push('"');
    field(o, "response_code_details", r.details, false);
    for (k, v) in [
        (",\"bytes_received\":", r.bytes_received),
        (",\"bytes_sent\":", r.bytes_sent),
    ] {
        o.push_str(k);
        push_int(o, v);
    }
    o.push_str(",\"duration\":");
    push_int(o, r.duration.as_millis());
    o.push_str(",\"upstream_service_time\":");
    match r.upstream_service_time {
        Some(d) => push_int(o, d.as_millis()),
        None => o.push_str("null"),
    }
    field(o, "x_forwarded_for", value(&r.forwarded_for), false);
    field(o, "user_agent", value(&r.user_agent), false);
    field(o, "request_id", value(&r.request_id), false);
    field(o, "authority", &r.authority, false);
    field(o, "upstream_host", &r.upstream_host, false);
    field(o, "upstream_cluster", &r.upstream_cluster, false);
    field(o, "route_name", &r.route_name, false);
    // Only when a JWT was verified: Istio's `request.auth.principal` attribute.
    if let Some(p) = &r.request_principal {
        field(o, "request_principal", p, false);
    }
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
    // Every part is non-negative for times after the epoch (the only ones given here).
    let part = |v: i64| u64::try_from(v).unwrap_or(0);
    push_padded(out, part(year), 4);
    out.push('-');
    push_padded(out, part(month), 2);
    out.push('-');
    push_padded(out, part(day), 2);
    out.push('T');
    push_padded(out, part(rem / 3600), 2);
    out.push(':');
    push_padded(out, part((rem % 3600) / 60), 2);
    out.push(':');
    push_padded(out, part(rem % 60), 2);
    out.push('.');
    push_padded(out, u64::from(d.subsec_millis()), 3);
    out.push('Z');
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
            method: Some(http::Method::GET),
            path: Some(http::uri::PathAndQuery::from_static("/reviews/0")),
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

    #[test]
    fn json_line_is_json_with_every_field() {
        let r = Record {
            start: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_007)),
            method: Some(http::Method::POST),
            path: Some(http::uri::PathAndQuery::from_static("/a%22b\\c")),
            protocol: "HTTP/2",
            status: 503,
            flags: Flags::UPSTREAM_OVERFLOW | Flags::NO_ROUTE_FOUND,
            bytes_received: 12,
            bytes_sent: 34,
            duration: Duration::from_millis(56),
            upstream_service_time: Some(Duration::from_millis(7)),
            user_agent: Some(HeaderValue::from_static("ua\t\"x\"")),
            request_id: Some(HeaderValue::from_static("id")),
            route_name: "r\u{1}".into(),
            ..Default::default()
        };
        let line = json_line(&r);
        assert!(line.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["start_time"], "2023-11-14T22:13:20.007Z");
        assert_eq!(v["path"], "/a%22b\\c");
        assert_eq!(v["response_code"], 503);
        assert_eq!(
            v["response_flags"],
            (Flags::UPSTREAM_OVERFLOW | Flags::NO_ROUTE_FOUND).to_string()
        );
        assert_eq!(v["bytes_received"], 12);
        assert_eq!(v["bytes_sent"], 34);
        assert_eq!(v["duration"], 56);
        assert_eq!(v["upstream_service_time"], 7);
        assert_eq!(v["user_agent"], "ua\t\"x\"");
        assert_eq!(v["route_name"], "r\u{1}");
        assert!(line.contains("\\u0001"), "{line}");
        assert!(v.get("request_principal").is_none());
        let r = Record {
            request_principal: Some("iss/sub".into()),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&json_line(&r)).expect("valid JSON");
        assert_eq!(v["request_principal"], "iss/sub");
    }
}
