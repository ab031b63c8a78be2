//! Where a config's bytes go: loads a config file with a counting allocator and prints
//! the heap held by each part of the compiled snapshot, the live state made when it is
//! put in force, and the peak of loading it (the table of docs/performance.md, "Memory
//! with many services"). Byte counts are the sizes asked of the allocator, the same in
//! debug and release builds.
//!
//! With a second config, it also measures a reload to it with the first in force (the
//! peak above the heap the first holds; the table is then that of the second).
//!
//! ```text
//! meshproxy-loadtest services-config --services 10000 > /tmp/s.yaml
//! sed s/timeout:\ 2s/timeout:\ 3s/ /tmp/s.yaml > /tmp/s3.yaml   # every route changed
//! cargo run -p meshproxy --example footprint -- /tmp/s.yaml [/tmp/s3.yaml]
//! ```

use meshproxy::server::active::Active;
use meshproxy_config::compile::{ClusterId, Snapshot};
use std::alloc::{GlobalAlloc, Layout};
use std::mem::take;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

/// mimalloc, counting the bytes held and their peak.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn add(n: isize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to mimalloc unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        add(l.size() as isize);
        // SAFETY: the caller upholds `alloc`'s contract, which is mimalloc's.
        unsafe { INNER.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        add(-(l.size() as isize));
        // SAFETY: `p` came from `alloc`/`realloc` above with this layout.
        unsafe { INNER.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        add(new as isize - l.size() as isize);
        // SAFETY: as for `dealloc`; `new` is the caller's checked size.
        unsafe { INNER.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Bytes freed by dropping what `f` returns.
fn freed<T>(f: impl FnOnce() -> T) -> isize {
    let v = f();
    let before = live();
    drop(v);
    before - live()
}

fn mb(b: isize) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn main() -> std::process::ExitCode {
    let Some(first) = std::env::args().nth(1) else {
        eprintln!("usage: footprint CONFIG.yaml [NEXT.yaml]");
        return std::process::ExitCode::from(2);
    };
    // Both configs are loaded from one path, as a reload reads them (a document's file is
    // part of what a reload compares).
    let dir = std::env::temp_dir().join(format!("footprint-{}", std::process::id()));
    let path = dir.join("config.yaml");
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::copy(&first, &path)) {
        eprintln!("{first}: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let code = measure(&path);
    let _ = std::fs::remove_dir_all(&dir);
    code
}

fn measure(path: &std::path::Path) -> std::process::ExitCode {
    let start = live();
    let loaded = meshproxy_config::loader::load_paths(&[path]);
    let resources = live() - start;
    drop(loaded);
    PEAK.store(live(), Ordering::Relaxed);
    let snap = match meshproxy_config::compile::load(&[path]) {
        Ok(s) => s,
        Err(d) => {
            eprintln!("{d}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let n = snap.clusters.len().max(1) as isize;
    println!("clusters: {}", snap.clusters.len());
    println!("parsed documents held while compiling: {}", mb(resources));
    println!(
        "peak of loading (parse + compile): {}",
        mb(PEAK.load(Ordering::Relaxed) - start)
    );
    println!(
        "snapshot: {} ({} B per cluster)",
        mb(live() - start),
        (live() - start) / n
    );
    let before = live();
    let mesh = Arc::new(arc_swap::ArcSwapOption::empty());
    let active = Active::build(Arc::new(snap), None, 1, &mesh);
    let state = live() - before;
    // The first use of a cluster makes its state (kept in the slot until `active` goes).
    let _ = active.cluster_state(ClusterId(0));
    let used = live() - before - state;
    let active = match std::env::args().nth(2) {
        Some(next) => match reload(active, &next, path, &mesh, before - start) {
            Some(a) => a,
            None => return std::process::ExitCode::FAILURE,
        },
        None => active,
    };
    let snap = active.snapshot.clone();
    drop(active);
    let Ok(snap) = Arc::try_unwrap(snap) else {
        eprintln!("the snapshot is still shared");
        return std::process::ExitCode::FAILURE;
    };
    println!("| part | bytes | per cluster |");
    println!("|---|--:|--:|");
    for (name, b) in parts(snap) {
        println!("| {name} | {} | {} B |", mb(b), b / n);
    }
    println!(
        "| live state slots (none used) | {} | {} B |",
        mb(state),
        state / n
    );
    println!("| live state of one used cluster | {used} B | |");
    std::process::ExitCode::SUCCESS
}

/// Loads `next` as a reload does with `active` in force (which, with its snapshot, holds
/// `held` bytes), puts it in force and prints the peak; returns the new `Active`.
fn reload(
    active: Active,
    next: &str,
    path: &std::path::Path,
    mesh: &Arc<arc_swap::ArcSwapOption<meshproxy::tls::mesh::MeshTls>>,
    held: isize,
) -> Option<Active> {
    if let Err(e) = std::fs::copy(next, path) {
        eprintln!("{next}: {e}");
        return None;
    }
    let base = live();
    PEAK.store(base, Ordering::Relaxed);
    STEP_BASE.store(base, Ordering::Relaxed);
    let _ = meshproxy_config::compile::STEP_HOOK.set(print_step);
    let snap = match meshproxy_config::compile::load_reusing(&[path], Some(&active.snapshot)) {
        Ok(s) => s,
        Err(d) => {
            eprintln!("{d}");
            return None;
        }
    };
    let peak = STEPS_PEAK
        .load(Ordering::Relaxed)
        .max(PEAK.load(Ordering::Relaxed) - base);
    let added = live() - base;
    let new = Active::build(Arc::new(snap), Some(&active), 1, mesh);
    drop(active);
    println!(
        "reload: peak {} above the {} in force ({:.2}x); the new snapshot adds {} beside \
         the old; {} held after the swap",
        mb(peak),
        mb(held),
        (held + peak) as f64 / held as f64,
        mb(added),
        mb(live() - base + held),
    );
    Some(new)
}

/// What a reload's steps are measured from (the heap held when it started).
static STEP_BASE: AtomicIsize = AtomicIsize::new(0);
/// The highest step peak so far, above [`STEP_BASE`].
static STEPS_PEAK: AtomicIsize = AtomicIsize::new(0);

/// Prints the peak of the reload's step that just ended above the heap held when it
/// started, and starts the next step's peak from now.
fn print_step(name: &'static str) {
    let base = STEP_BASE.load(Ordering::Relaxed);
    STEPS_PEAK.fetch_max(PEAK.load(Ordering::Relaxed) - base, Ordering::Relaxed);
    println!(
        "  reload step {name}: peak {} above the start, {} held after it",
        mb(PEAK.load(Ordering::Relaxed) - base),
        mb(live() - base)
    );
    PEAK.store(live(), Ordering::Relaxed);
}

/// Frees the snapshot part by part, measuring each.
fn parts(mut snap: Snapshot) -> Vec<(&'static str, isize)> {
    vec![
        (
            "route tables: routes",
            freed(|| {
                snap.route_tables
                    .iter_mut()
                    .flat_map(|t| t.virtual_hosts.iter_mut())
                    .map(|v| take(&mut v.routes))
                    .collect::<Vec<_>>()
            }),
        ),
        (
            "route tables: host names and their index",
            freed(|| take(&mut snap.route_tables)),
        ),
        (
            "clusters: endpoints",
            freed(|| {
                Arc::get_mut(&mut snap.clusters)
                    .into_iter()
                    .flat_map(|cs| cs.iter_mut())
                    .map(|c| take(&mut c.endpoints))
                    .collect::<Vec<_>>()
            }),
        ),
        ("clusters: the rest", freed(|| take(&mut snap.clusters))),
        ("cluster index", freed(|| take(&mut snap.cluster_index))),
        ("service registry", freed(|| take(&mut snap.registry))),
        (
            "documents (text for /config_dump)",
            freed(|| take(&mut snap.resources)),
        ),
        ("the rest", freed(|| snap)),
    ]
}
