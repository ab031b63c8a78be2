//! Arbitrary bytes as a YAML config through the whole loader (parse, validate, compile):
//! it must return a snapshot or diagnostics, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The loader reads files as UTF-8 text; other bytes never reach it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match meshproxy_config::compile::load_str("fuzz.yaml", text) {
        Ok(snapshot) => {
            // A config that loads must also be describable (what `validate` prints).
            let _ = snapshot.counts();
            for table in &snapshot.route_tables {
                let _ = table.domain_count();
            }
        }
        Err(diags) => {
            assert!(diags.has_errors(), "a refused config names an error");
            for d in &diags.0 {
                let _ = d.to_string();
            }
        }
    }
});
