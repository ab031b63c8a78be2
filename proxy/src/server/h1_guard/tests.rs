//! The scanner's grammar, byte by byte and split at every position.

use super::grammar::*;
use super::scanner::*;

/// Scans `input` in one piece and in every two-piece split; the verdicts must agree.
fn scan_all(input: &[u8]) -> Scan {
    let mut whole = Scanner::new();
    let verdict = whole.scan(input);
    for cut in 1..input.len() {
        let mut s = Scanner::new();
        let got = match s.scan(&input[..cut]) {
            Scan::Clean => match s.scan(&input[cut..]) {
                Scan::Clean => Scan::Clean,
                Scan::Bad(i, v) => Scan::Bad(i + cut, v),
                Scan::Stop(i) => Scan::Stop(i + cut),
            },
            other => other,
        };
        assert_eq!(got, verdict, "split at {cut}");
    }
    verdict
}

#[test]
fn a_target_over_the_limit_is_cut() {
    let mut s = Scanner::new();
    s.max_target = 8;
    assert_eq!(s.scan(b"GET /1234567 HTTP/1.1\r\n"), Scan::Clean);
    let mut s = Scanner::new();
    s.max_target = 8;
    assert_eq!(
        s.scan(b"GET /12345678 HTTP/1.1\r\n"),
        Scan::Bad(12, Violation::Head(TARGET_TOO_LONG))
    );
    // The count starts again with each request.
    let mut s = Scanner::new();
    s.max_target = 8;
    let two = b"GET /1234567 HTTP/1.1\r\n\r\nGET /1234567 HTTP/1.1\r\n\r\n";
    assert_eq!(s.scan(two), Scan::Clean);
}

fn ok(input: &str) {
    assert_eq!(scan_all(input.as_bytes()), Scan::Clean, "{input:?}");
}

fn bad_head(input: &str) {
    assert!(
        matches!(scan_all(input.as_bytes()), Scan::Bad(_, Violation::Head(_))),
        "{input:?}"
    );
}

fn bad_body(input: &str) {
    assert!(
        matches!(scan_all(input.as_bytes()), Scan::Bad(_, Violation::Body(_))),
        "{input:?}"
    );
}

#[test]
fn valid_requests_pass() {
    ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ok("\r\nGET /x?y HTTP/1.0\r\nHost: a\r\nX: \t v \r\n\r\n");
    ok("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n");
    ok("POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length:3\r\n\r\nabc");
    ok("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    ok("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n");
    ok("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b;c=\"d\\\"\" ;e\r\nabc\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\n\r\n");
}

#[test]
fn heads_are_strict() {
    bad_head("GET / HTTP/1.1\nHost: a\r\n\r\n");
    bad_head("GET / HTTP/1.1\r\nHost: a\n\r\n");
    bad_head("GET / HTTP/1.1\r\nHost: a\r\n\n");
    bad_head("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n");
    bad_head("GET / HTTP/1.1\r\nHost : a\r\n\r\n");
    bad_head("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n");
    bad_head("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n");
    bad_head("GET  / HTTP/1.1\r\n\r\n");
    bad_head("GET / HTTP/1.2\r\n\r\n");
    bad_head("GET / HTTP/1.1 \r\n\r\n");
    bad_head("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
    bad_head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
    bad_head("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
    bad_head("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n");
    bad_head("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n");
    bad_head("POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n");
    bad_head("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n");
    bad_head("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n");
    bad_head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    bad_head("POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n");
    bad_head(
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
    );
    bad_head("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
    // The second, pipelined request is the bad one.
    bad_head("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\nX: y\r\n\r\n");
}

#[test]
fn chunk_framing_is_strict() {
    let pre = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        "g\r\n",
        "-1\r\n",
        "0x5\r\n",
        "\r\n",
        "1ffffffffffffffff\r\n",
        "3;a\rb\r\nabc\r\n",
        "3\nabc\r\n",
        "3\r\nabcd\r\n",
        "3\r\nabc\n0\r\n\r\n",
        "3 \r\nabc\r\n",
        "0\r\nX: a\nb\r\n\r\n",
        "0\r\n folded\r\n\r\n",
    ] {
        bad_body(&format!("{pre}{body}"));
    }
}

#[test]
fn preface_and_upgrades_stop_the_scan() {
    let preface = std::str::from_utf8(PREFACE).unwrap_or_default();
    assert_eq!(
        scan_all(format!("{preface}\0\0garbage").as_bytes()),
        Scan::Stop(24)
    );
    let up = "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    assert_eq!(
        scan_all(format!("{up}\x01\x00").as_bytes()),
        Scan::Stop(up.len())
    );
    let connect = "CONNECT a:443 HTTP/1.1\r\n\r\n";
    assert_eq!(
        scan_all(format!("{connect}\x16\x03").as_bytes()),
        Scan::Stop(connect.len())
    );
    // An Upgrade on HTTP/1.0 is no upgrade for hyper.
    ok("GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n");
    // Close to the preface but not it.
    bad_head("PRI * HTTP/2.0\r\n\r\nXY\r\n\r\n");
    ok("PRINT / HTTP/1.1\r\n\r\n");
}

/// Feeds `input` one byte at a time (every run of the fast paths has length one).
fn scan_bytewise(input: &[u8], max_target: usize) -> Scan {
    let mut s = Scanner::new();
    s.max_target = max_target;
    for (i, b) in input.iter().enumerate() {
        match s.scan(std::slice::from_ref(b)) {
            Scan::Clean => {}
            Scan::Bad(j, v) => return Scan::Bad(i + j, v),
            Scan::Stop(j) => return Scan::Stop(i + j),
        }
    }
    Scan::Clean
}

#[test]
fn runs_of_value_and_target_bytes_agree_with_the_bytewise_rules() {
    let cases: [&[u8]; 7] = [
        b"GET /a/b?c=d HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8.0 (x)\r\n\r\n",
        b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: one\x00two\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: one\ntwo\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: one\x7ftwo\r\n\r\n",
        b"GET /0123456789abcdef HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    ];
    for input in cases {
        for max_target in [usize::MAX, 4, 10, 16, 17] {
            let mut whole = Scanner::new();
            whole.max_target = max_target;
            assert_eq!(
                whole.scan(input),
                scan_bytewise(input, max_target),
                "{:?} with a target limit of {max_target}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
