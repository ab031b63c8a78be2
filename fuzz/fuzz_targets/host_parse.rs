//! The host functions of `meshproxy_config::host` on arbitrary strings: short-name
//! qualification, wildcard matching and subsets, Kubernetes alternative forms and the
//! request authority split. Must not panic, and the relations Istio defines must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshproxy_config::host::{
    alt_forms, is_wildcard, matches, qualify, split_authority, subset_of,
};

// Input: three lines, `a`, `b` and a namespace (missing ones are empty).
fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let (a, b) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let namespace = lines.next().unwrap_or("default");

    let q = qualify(a, namespace);
    // The host part is lower-cased (the namespace is taken as written: it comes from
    // validated metadata).
    let h = a.trim_end_matches('.').to_ascii_lowercase();
    assert!(q.starts_with(&h), "qualify({a:?}) = {q:?}");
    assert_eq!(is_wildcard(&q), is_wildcard(a.trim_end_matches('.')));

    // Overlap is symmetric and reflexive; a subset overlaps what contains it.
    assert_eq!(matches(a, b), matches(b, a), "matches({a:?}, {b:?})");
    assert!(matches(a, a), "{a:?} matches itself");
    assert!(subset_of(a, a), "{a:?} is a subset of itself");
    assert!(subset_of(a, "*"), "{a:?} is a subset of *");
    if subset_of(a, b) {
        assert!(matches(a, b), "{a:?} ⊆ {b:?} but they do not overlap");
    }

    for form in alt_forms(a, namespace) {
        assert!(!form.is_empty());
        assert!(a.starts_with(&form), "{form:?} is a prefix of {a:?}");
    }

    let (host, port) = split_authority(a);
    assert!(!host.bytes().any(|c| c.is_ascii_uppercase()), "{host:?}");
    assert!(host.len() <= a.len());
    if port.is_some() {
        assert!(a.contains(':'), "a port without a colon in {a:?}");
    }
    // Splitting what was split gives the same host (the port and trailing dot are gone)
    // unless the host itself looked like `name:port` (an IPv6 literal stays as written).
    let (again, _) = split_authority(&host);
    if port.is_none() && !host.contains(':') && !a.starts_with('[') {
        assert_eq!(again.trim_end_matches('.'), host.trim_end_matches('.'));
    }
});
