//! A descriptor the admin server keeps in reserve, so it still answers (`/ready`,
//! `/metrics`) when the process has run out of file descriptors: an `accept` failing
//! with `EMFILE`/`ENFILE` gives the spare back and accepts in its place; the spare is
//! taken again once that admin connection is closed. (The connection cap keeps
//! descriptors for the admin port already, see docs/config.md "Limits"; this covers a
//! process exhausted by something else, such as many upstream connections.)

use std::io;
use std::sync::{Arc, Mutex};

/// The reserved descriptor (`/dev/null` opened read-only), shared by the admin accept
/// loop and its connections.
#[derive(Clone)]
pub struct Spare(Arc<Mutex<Option<std::fs::File>>>);

impl Default for Spare {
    fn default() -> Self {
        let s = Spare(Arc::new(Mutex::new(None)));
        s.refill();
        s
    }
}

impl Spare {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<std::fs::File>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the spare descriptor; true when one was held.
    pub fn release(&self) -> bool {
        self.slot().take().is_some()
    }

    /// Takes a spare descriptor again when none is held (fails quietly while the
    /// process is still out of descriptors: the next refill tries again).
    pub fn refill(&self) {
        let mut slot = self.slot();
        if slot.is_none() {
            *slot = std::fs::File::open("/dev/null").ok();
        }
    }

    /// True while a spare descriptor is held.
    pub fn held(&self) -> bool {
        self.slot().is_some()
    }
}

/// True for the `accept` errors of a process or system out of file descriptors.
pub fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(n) if n == EMFILE || n == ENFILE)
}

const EMFILE: i32 = nix::errno::Errno::EMFILE as i32;
const ENFILE: i32 = nix::errno::Errno::ENFILE as i32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spare_is_given_back_and_taken_again() {
        let s = Spare::default();
        assert!(s.held());
        assert!(s.release());
        assert!(!s.held());
        assert!(!s.release());
        s.refill();
        assert!(s.held());
    }

    #[test]
    fn descriptor_exhaustion_is_recognized() {
        assert!(out_of_fds(&io::Error::from_raw_os_error(EMFILE)));
        assert!(out_of_fds(&io::Error::from_raw_os_error(ENFILE)));
        assert!(!out_of_fds(&io::Error::from_raw_os_error(
            nix::errno::Errno::ECONNABORTED as i32
        )));
    }
}
