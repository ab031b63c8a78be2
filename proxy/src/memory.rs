//! Giving freed memory back to the operating system after a config is put in force.
//!
//! The allocator (mimalloc, `src/allocator.rs` of the binary) returns freed pages lazily,
//! when the freeing thread allocates again. Loading a config allocates and frees a lot on
//! one thread that then only waits: the main thread at start-up, the reload thread after
//! a reload (which also frees the replaced snapshot). Without an explicit collection the
//! peak of the parse stayed resident for the life of the process: 1,000 services held
//! 20 MB that way.

/// Runs `f` (a config load) on a thread of its own that ends with it. The allocator keeps
/// a page with the thread that allocated it: memory freed from another thread goes back
/// to that thread's heap, and a thread that lives on and rarely allocates (the main
/// thread, the file watcher) never gives those pages back. A snapshot made on a thread
/// that has ended sits in abandoned pages instead, which the collection of whichever
/// thread frees it (the next reload's) returns to the operating system. The parse's
/// temporaries are given back before the thread ends: the allocator would otherwise
/// purge them only when some thread next allocates, and an idle proxy does not.
///
/// While it runs, freed pages are given back at once ([`PurgeNow`]): a load frees as much
/// as it keeps (each document's parse tree, the typed specs once compiled), and with the
/// allocator's default delay those pages stayed resident until the load was over, so they
/// added to its peak instead of being reused or returned (a 10,000-service reload peaked
/// 15 MiB higher; docs/performance.md).
pub fn on_own_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let run = || {
        let _purge = PurgeNow::start();
        let v = f();
        release_freed_memory();
        v
    };
    std::thread::scope(|s| match s.spawn(run).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// mimalloc's `mi_option_purge_delay` (the same index in its v2 and v3 option lists; the
/// binding names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The allocator purges freed pages immediately while this lives, then goes back to its
/// delay. The delay (1 s by default) batches the `madvise` calls of a serving proxy, whose
/// frees are mostly reused soon; a load's frees are not, and it is short. The option is
/// process-wide: workers freeing during the load purge at once too, which costs a system
/// call now and then for a second, never correctness.
struct PurgeNow {
    delay: std::os::raw::c_long,
}

impl PurgeNow {
    #[allow(unsafe_code)] // FFI into the allocator; see SAFETY below
    fn start() -> PurgeNow {
        // SAFETY: reading and setting an option is allowed at any time from any thread
        // (mimalloc keeps options in atomics); 0 means "purge immediately".
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
        PurgeNow { delay }
    }
}

impl Drop for PurgeNow {
    #[allow(unsafe_code)] // FFI into the allocator; see SAFETY in `start`
    fn drop(&mut self) {
        // SAFETY: as in `start`.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, self.delay) };
    }
}

/// Returns the memory this thread freed to the operating system now. Harmless when
/// mimalloc is not the global allocator (tests): its heaps are then empty.
#[allow(unsafe_code)] // the one FFI call into the allocator; see SAFETY below
pub fn release_freed_memory() {
    // SAFETY: `mi_collect` only walks this thread's heap and the shared arenas; it is
    // safe to call at any time from any thread (mimalloc's documented contract).
    unsafe { libmimalloc_sys::mi_collect(true) }
}
