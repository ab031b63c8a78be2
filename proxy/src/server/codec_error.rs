//! Requests refused by the HTTP/1 codec before they reach the router: a head hyper cannot
//! parse, one past `maxRequestHeadersKb` or `maxRequestHeaders`, or one the request
//! smuggling guard (`h1_guard`) refused. hyper answers them itself (`400`, or `431` for a
//! head too large) and closes the connection; this writes their access-log line and
//! counts them, as Envoy logs a codec error with flag `DPE` and details
//! `http1.codec_error`.

use super::Shared;
use crate::access_log::Record;
use crate::conn_info::ConnInfo;
use crate::flags::Flags;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

/// Logs and counts the request of a connection that ended with `error`, when the codec
/// refused it (`refusal`: the smuggling guard's reason, when it was the guard). Other
/// endings (resets, timeouts, I/O errors) write nothing.
pub fn record(
    shared: &Shared,
    conn: &ConnInfo,
    error: &(dyn std::error::Error + 'static),
    refusal: Option<&'static str>,
) {
    let Some(status) = status(error, refusal) else {
        return;
    };
    shared
        .downstream_protocol_errors
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        listener = %conn.listener,
        peer = %conn.peer,
        status,
        reason = refusal.unwrap_or("unparsable request head"),
        "HTTP/1 request refused by the codec"
    );
    if shared.access_log.enabled() {
        shared.access_log.log(&Record {
            start: Some(SystemTime::now()),
            protocol: "HTTP/1.1",
            status,
            flags: Flags::DOWNSTREAM_PROTOCOL_ERROR,
            details: "http1.codec_error",
            ..Default::default()
        });
    }
}

/// The status hyper answered a refused head with, or `None` when the connection did not
/// end on a refused head.
fn status(error: &(dyn std::error::Error + 'static), refusal: Option<&'static str>) -> Option<u16> {
    let hyper = find_hyper(error);
    match hyper {
        // hyper answers a head over its buffer or header count with 431.
        Some(e) if e.is_parse_too_large() => Some(431),
        Some(e) if e.is_parse() => Some(400),
        // The guard's poison makes hyper's parse fail; count it even if the error was
        // wrapped differently.
        _ if refusal.is_some() => Some(400),
        _ => None,
    }
}

/// The hyper error in `error`'s chain.
fn find_hyper<'a>(mut error: &'a (dyn std::error::Error + 'static)) -> Option<&'a hyper::Error> {
    loop {
        if let Some(h) = error.downcast_ref::<hyper::Error>() {
            return Some(h);
        }
        error = error.source()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_codec_refusals_count() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(status(&io, None), None);
        assert_eq!(status(&io, Some("bare LF")), Some(400));
    }
}
