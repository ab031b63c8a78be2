//! Access logs: one line per request in Envoy's default format, or JSON. Lines go through
//! a bounded queue to a writer thread, so a slow stdout never blocks the request path; a
//! full queue drops the line and counts it.

use crate::http::flags::Flags;
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
    tx: Option<SyncSender<String>>,
    json: bool,
    dropped: AtomicU64,
}

impl AccessLog {
    /// A log writing to stdout (`enabled`), in text or JSON.
    pub fn stdout(enabled: bool, json: bool) -> Self {
        let tx = enabled.then(|| {
            let (tx, rx) = sync_channel::<String>(8192);
            std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || writer(rx, std::io::stdout()))
                .ok();
            tx
        });
        AccessLog {
            tx,
            json,
            dropped: AtomicU64::new(0),
        }
    }

    /// A log that writes nothing.
    pub fn disabled() -> Self {
        AccessLog {
            tx: None,
            json: false,
            dropped: AtomicU64::new(0),
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

    /// Queues one line.
    pub fn log(&self, r: &Record) {
        let Some(tx) = &self.tx else { return };
        let line = if self.json {
            json_line(r)
        } else {
            text_line(r)
        };
        if let Err(TrySendError::Full(_)) = tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn writer(rx: Receiver<String>, out: impl Write) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(line.as_bytes());
        // Batch what is already queued, then flush once.
        while let Ok(more) = rx.try_recv() {
            let _ = out.write_all(more.as_bytes());
        }
        let _ = out.flush();
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
    format!(
        "[{}] \"{} {} {}\" {} {} {} {} {} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\"\n",
        rfc3339_millis(r.start.unwrap_or(UNIX_EPOCH)),
        dash(&r.method),
        dash(&r.path),
        dash(r.protocol),
        r.status,
        r.flags,
        r.bytes_received,
        r.bytes_sent,
        r.duration.as_millis(),
        r.upstream_service_time
            .map(|d| d.as_millis().to_string())
            .unwrap_or_else(|| "-".into()),
        dash(&r.forwarded_for),
        dash(&r.user_agent),
        dash(&r.request_id),
        dash(&r.authority),
        dash(&r.upstream_host),
    )
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
        &mut o,
        "start_time",
        &rfc3339_millis(r.start.unwrap_or(UNIX_EPOCH)),
        true,
    );
    field(&mut o, "method", &r.method, false);
    field(&mut o, "path", &r.path, false);
    field(&mut o, "protocol", r.protocol, false);
    o.push_str(&format!(",\"response_code\":{}", r.status));
    field(&mut o, "response_flags", &r.flags.to_string(), false);
    field(&mut o, "response_code_details", r.details, false);
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
    field(&mut o, "x_forwarded_for", &r.forwarded_for, false);
    field(&mut o, "user_agent", &r.user_agent, false);
    field(&mut o, "request_id", &r.request_id, false);
    field(&mut o, "authority", &r.authority, false);
    field(&mut o, "upstream_host", &r.upstream_host, false);
    field(&mut o, "upstream_cluster", &r.upstream_cluster, false);
    field(&mut o, "route_name", &r.route_name, false);
    o.push_str("}\n");
    o
}

/// `2016-04-15T20:17:00.310Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
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
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
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
