//! Frame sequences in, verdicts out.

use super::*;
use crate::server::h2_guard::wire::HEADER_LEN;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    v.extend([kind, flags]);
    v.extend(stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (k, v) in pairs {
        p.extend(k.to_be_bytes());
        p.extend(v.to_be_bytes());
    }
    frame(kind::SETTINGS, 0, 0, &p)
}

/// The preface and an empty SETTINGS.
fn start() -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    v.extend(settings(&[]));
    v
}

/// What a scan of `input` (in pieces of `chunk` octets, held octets offered again)
/// hands to the server, and the refusal, if any.
fn run(mode: Mode, input: &[u8], chunk: usize) -> (Vec<u8>, Option<Refusal>, Effects) {
    let mut scanner = Inbound::new(mode, 16_384);
    let mut streams = Streams::new(16);
    let mut fx = Effects::default();
    let mut out = Vec::new();
    let mut held: Vec<u8> = Vec::new();
    for piece in input.chunks(chunk) {
        let mut bytes = std::mem::take(&mut held);
        bytes.extend_from_slice(piece);
        let mut i = 0;
        while i < bytes.len() || scanner.is_failing() {
            match scanner.step(&bytes[i..], &mut streams, &mut fx) {
                Step::Pass(n) => {
                    out.extend_from_slice(&bytes[i..i + n]);
                    i += n;
                }
                Step::Drop(n) => i += n,
                Step::Hold(n) => {
                    held = bytes[i..i + n].to_vec();
                    i += n;
                }
                Step::Fail(r) => return (out, Some(r), fx),
            }
        }
    }
    (out, None, fx)
}

fn refusal(input: &[u8]) -> Option<Reason> {
    let whole = run(Mode::Sniff, input, input.len()).1.map(|r| r.reason);
    // Split at every size, the verdict is the same.
    for chunk in [1, 2, 5, 9, 10] {
        assert_eq!(
            run(Mode::Sniff, input, chunk).1.map(|r| r.reason),
            whole,
            "chunk {chunk}"
        );
    }
    whole
}

fn with(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut v = start();
    for f in frames {
        v.extend_from_slice(f);
    }
    v
}

/// HEADERS for a GET on `stream` with an indexed-only block (`:method GET`, `:path /`,
/// `:scheme http`).
fn get(stream: u32, flags: u8) -> Vec<u8> {
    frame(
        kind::HEADERS,
        flags | flag::END_HEADERS,
        stream,
        &[0x82, 0x84, 0x86],
    )
}

#[test]
fn conforming_connection_passes_whole() {
    let input = with(&[
        get(1, flag::END_STREAM),
        frame(kind::PING, 0, 0, b"12345678"),
        frame(kind::HEADERS, 0, 3, &[0x83, 0x84]),
        frame(kind::CONTINUATION, flag::END_HEADERS, 3, &[0x86]),
        frame(kind::DATA, 0, 3, &[7; 100]),
        frame(kind::DATA, flag::END_STREAM, 3, &[]),
        frame(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]),
        frame(0xfa, 0xff, 0, b"unknown"),
        settings(&[(setting::INITIAL_WINDOW_SIZE, MAX_WINDOW), (0x4242, 9)]),
        frame(kind::SETTINGS, flag::ACK, 0, &[]),
    ]);
    for chunk in [1, 3, 9, 64, input.len()] {
        let (out, refused, fx) = run(Mode::Http2, &input, chunk);
        assert_eq!(refused, None, "chunk {chunk}");
        assert_eq!(out, input, "chunk {chunk}");
        assert_eq!(fx.credit, 0);
    }
}

#[test]
fn preface_rules() {
    // Cleartext HTTP/1 passes untouched, even one starting like the preface.
    for h1 in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"PRI /x HTTP/1.1\r\n\r\n",
        b"PRI * HTTP/1.1\r\n",
    ] {
        let (out, refused, _) = run(Mode::Sniff, h1, 1);
        assert_eq!((out.as_slice(), refused), (h1, None));
    }
    // The preface's request line, then something else: a bad HTTP/2 preface.
    let bad = b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n";
    let (out, refused, _) = run(Mode::Sniff, bad, 4);
    assert_eq!(refused, Some(BAD_PREFACE));
    assert_eq!(out, &bad[..18]);
    // After ALPN h2 any other first octets are refused.
    let (out, refused, _) = run(Mode::Http2, b"GET / HTTP/1.1\r\n\r\n", 100);
    assert_eq!((out.len(), refused), (0, Some(BAD_PREFACE)));
}

#[test]
fn first_frame_must_be_settings() {
    let mut input = PREFACE.to_vec();
    input.extend(frame(kind::PING, 0, 0, b"12345678"));
    assert_eq!(refusal(&input), Some(Reason::Protocol));
    let mut input = PREFACE.to_vec();
    input.extend(frame(kind::SETTINGS, flag::ACK, 0, &[]));
    assert_eq!(refusal(&input), Some(Reason::Protocol));
}

#[test]
fn frame_size_rules() {
    let cases = [
        frame(kind::DATA, 0, 1, &[0; 16_385]),
        frame(kind::PING, 0, 0, b"123456"),
        frame(kind::SETTINGS, 0, 0, &[0, 3, 0]),
        frame(kind::SETTINGS, flag::ACK, 0, &[0, 2, 0, 0, 0, 0]),
        frame(kind::WINDOW_UPDATE, 0, 0, &[0, 0, 1]),
        frame(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8, 0]),
        frame(kind::PRIORITY, 0, 1, &[0, 0, 0, 3]),
        frame(kind::GOAWAY, 0, 0, &[0, 0, 0, 0]),
        frame(kind::DATA, flag::PADDED, 1, &[]),
        frame(
            kind::HEADERS,
            flag::PRIORITY | flag::END_HEADERS,
            1,
            &[0, 0, 0],
        ),
    ];
    for f in cases {
        assert_eq!(
            refusal(&with(std::slice::from_ref(&f))),
            Some(Reason::FrameSize),
            "{f:?}"
        );
    }
    // PRIORITY on stream 0 is the server stack's PROTOCOL_ERROR (§6.3): passed on.
    assert_eq!(
        refusal(&with(&[frame(kind::PRIORITY, 0, 0, &[0; 4])])),
        None
    );
}

#[test]
fn settings_value_rules_withhold_the_frame() {
    let cases = [
        (setting::ENABLE_PUSH, 2, Reason::Protocol),
        (setting::ENABLE_CONNECT_PROTOCOL, 2, Reason::Protocol),
        (setting::INITIAL_WINDOW_SIZE, 1 << 31, Reason::FlowControl),
        (setting::MAX_FRAME_SIZE, 16_383, Reason::Protocol),
        (setting::MAX_FRAME_SIZE, 1 << 24, Reason::Protocol),
    ];
    for (id, value, reason) in cases {
        let f = settings(&[(0x1, 4096), (id, value)]);
        let input = with(std::slice::from_ref(&f));
        for chunk in [1, 7, input.len()] {
            let (out, refused, _) = run(Mode::Sniff, &input, chunk);
            assert_eq!(refused.map(|r| r.reason), Some(reason));
            // Everything but the bad entry's last octet: the server never has the frame.
            assert_eq!(out.len(), input.len() - 1, "{id} chunk {chunk}");
        }
    }
}

#[test]
fn header_block_must_not_be_interrupted() {
    let input = with(&[
        frame(kind::HEADERS, 0, 1, &[0x82]),
        frame(kind::PING, 0, 0, b"12345678"),
    ]);
    assert_eq!(refusal(&input), Some(Reason::Protocol));
    let input = with(&[
        frame(kind::HEADERS, 0, 1, &[0x82]),
        frame(kind::CONTINUATION, flag::END_HEADERS, 3, &[0x84]),
    ]);
    assert_eq!(refusal(&input), Some(Reason::Protocol));
}

#[test]
fn data_after_end_stream_is_dropped_and_credited() {
    let first = get(1, flag::END_STREAM);
    let late = frame(kind::DATA, flag::PADDED, 1, &[3, b'a', 0, 0, 0]);
    let after = frame(kind::PING, 0, 0, b"12345678");
    let input = with(&[first.clone(), late.clone(), late, after.clone()]);
    for chunk in [1, 4, 13, input.len()] {
        let (out, refused, fx) = run(Mode::Sniff, &input, chunk);
        assert_eq!(refused, None);
        assert_eq!(out, with(&[first.clone(), after.clone()]), "chunk {chunk}");
        assert_eq!(fx.credit, 10);
        assert_eq!(fx.stream_refusals, 1);
    }
}

#[test]
fn headers_after_end_stream_are_dropped_with_their_continuations() {
    let first = get(1, flag::END_STREAM);
    let late = frame(
        kind::HEADERS,
        flag::PADDED | flag::PRIORITY,
        1,
        &[2, 0, 0, 0, 0, 16, 0x00, 0x01, b'x', 0x01, 0, 0],
    );
    let cont = frame(kind::CONTINUATION, flag::END_HEADERS, 1, &[b'y', 0x82]);
    let next = get(3, flag::END_STREAM);
    let input = with(&[first.clone(), late, cont, next.clone()]);
    for chunk in [1, 5, input.len()] {
        let (out, refused, fx) = run(Mode::Sniff, &input, chunk);
        assert_eq!(refused, None, "chunk {chunk}");
        assert_eq!(out, with(&[first.clone(), next.clone()]));
        assert_eq!((fx.credit, fx.stream_refusals), (0, 1));
    }
}

#[test]
fn dropped_block_that_changes_the_table_ends_the_connection() {
    let input = with(&[
        get(1, flag::END_STREAM),
        frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &[0x41, 0x01, b'a'],
        ),
    ]);
    assert_eq!(refusal(&input), Some(Reason::StreamClosed));
    // A truncated one cannot be decoded.
    let input = with(&[
        get(1, flag::END_STREAM),
        frame(kind::HEADERS, flag::END_HEADERS, 1, &[0x00, 0x05, b'a']),
    ]);
    assert_eq!(refusal(&input), Some(Reason::Compression));
    // Padding past the payload.
    let input = with(&[
        get(1, flag::END_STREAM),
        frame(kind::HEADERS, flag::PADDED, 1, &[9, 0x82]),
    ]);
    assert_eq!(refusal(&input), Some(Reason::Protocol));
}

#[test]
fn trailers_and_open_streams_pass() {
    let input = with(&[
        frame(kind::HEADERS, flag::END_HEADERS, 1, &[0x83, 0x84, 0x86]),
        frame(kind::DATA, 0, 1, b"body"),
        frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &[0x00, 0x01, b't', 0x01, b'v'],
        ),
    ]);
    let (out, refused, fx) = run(Mode::Sniff, &input, 3);
    assert_eq!((out, refused, fx.stream_refusals), (input, None, 0));
}

#[test]
fn a_client_reset_stream_is_forgotten() {
    let input = with(&[
        get(1, flag::END_STREAM),
        frame(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]),
        frame(kind::DATA, 0, 1, b"x"),
    ]);
    // The DATA is the server stack's to answer (STREAM_CLOSED on a closed stream).
    let (out, refused, fx) = run(Mode::Sniff, &input, input.len());
    assert_eq!((out.len(), refused, fx.credit), (input.len(), None, 0));
    assert!(out.len() > HEADER_LEN);
}
