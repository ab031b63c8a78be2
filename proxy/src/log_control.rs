//! Changing the log level at run time (admin `POST /logging?level=...`). The binary
//! registers how to apply a new filter; the library only calls it.

use std::sync::OnceLock;

type Setter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static SETTER: OnceLock<Setter> = OnceLock::new();

/// Registers the function that applies a new `RUST_LOG`-style filter.
pub fn register(f: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) {
    let _ = SETTER.set(Box::new(f));
}

/// Applies `filter` (`debug`, `info,meshproxy=trace`...).
pub fn set(filter: &str) -> Result<(), String> {
    match SETTER.get() {
        Some(f) => f(filter),
        None => Err("log level changes are not available in this process".into()),
    }
}
