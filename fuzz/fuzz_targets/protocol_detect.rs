//! Protocol detection on arbitrary first bytes: `sniff::classify` (TLS / HTTP/1 / h2c
//! preface / opaque), the async `sniff` loop over a reader, and the ClientHello/SNI parser
//! `sni::parse`. Must not panic, and a verdict once reached must not change when more
//! bytes arrive (the proxy decides on a prefix and replays the rest).
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshproxy::server::sniff::{classify, sniff, Detected, SNIFF_MAX};
use meshproxy::tcp::sni::{parse, Hello};
use std::sync::OnceLock;
use std::time::Duration;

/// Prefixes longer than this are not each re-classified (quadratic).
const PREFIX_SCAN: usize = 1024;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let verdict = classify(data);

    // Stability: the first decision on a prefix is the decision on the whole input.
    for k in 0..=data.len().min(PREFIX_SCAN) {
        if let Some(d) = classify(&data[..k]) {
            assert_eq!(
                verdict,
                Some(d),
                "classify changed its mind after {k} bytes"
            );
            break;
        }
    }
    match verdict {
        Some(Detected::Http2) => assert!(data.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")),
        Some(Detected::Tls) => assert_eq!(&data[..2], &[0x16, 3]),
        Some(Detected::Http1) => assert!(data.contains(&b'\n')),
        Some(Detected::Opaque) | None => {}
    }

    // The async loop over a reader that hands out everything then EOF agrees with
    // `classify` whenever `classify` decides within what `sniff` reads.
    let capped = &data[..data.len().min(SNIFF_MAX)];
    let mut reader = data;
    let got = runtime().block_on(sniff(&mut reader, Duration::from_secs(5)));
    match got {
        None => assert!(data.is_empty(), "sniff saw nothing in {} bytes", data.len()),
        Some((d, buf)) => {
            assert!(
                data.starts_with(&buf),
                "replayed bytes are the input's start"
            );
            assert!(buf.len() <= SNIFF_MAX);
            if let Some(c) = classify(capped) {
                assert_eq!(d, c, "sniff and classify disagree");
            }
        }
    }

    // SNI: the same stability, and a ClientHello is what `classify` calls TLS.
    let hello = parse(data);
    for k in 0..=data.len().min(PREFIX_SCAN) {
        match parse(&data[..k]) {
            Hello::Incomplete => continue,
            early => {
                assert_eq!(early, hello, "sni::parse changed its mind after {k} bytes");
                break;
            }
        }
    }
    if let Hello::Done(sni) = &hello {
        assert_eq!(verdict, Some(Detected::Tls));
        if let Some(name) = sni {
            assert!(!name.is_empty() && name.is_ascii());
            assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
        }
    }
});
