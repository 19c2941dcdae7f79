//! Giving freed heap back to the host after tasks are cleaned up.
//!
//! glibc's allocator returns memory to the kernel only from the top of its
//! main arena; what a burst of tasks freed in the middle of an arena, or in
//! a worker thread's arena, stays in the agent's RSS although nothing uses
//! it (measured: 100 tasks started and cleaned up left 6 MiB of such
//! memory; docs/footprint.md §2). `malloc_trim` walks every arena
//! and hands whole free pages back. It runs once the cleanups of a burst
//! have settled, on a blocking thread, at most once per [`SETTLE`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// How long after the first cleanup of a burst the trim runs: long enough
/// that a stop of 100 tasks (their cleanups spread over a few seconds)
/// costs one or two trims, short enough that the host gets its memory back
/// soon after.
pub const SETTLE: Duration = Duration::from_secs(5);

/// Runs at most one trim per [`SETTLE`].
pub struct Trimmer {
    pending: AtomicBool,
    trims: AtomicUsize,
}

/// The process's trimmer.
static TRIMMER: Trimmer = Trimmer::new();

/// Asks for freed heap to be returned [`SETTLE`] from now, unless a trim
/// is already due. Needs a tokio runtime.
pub fn release_freed_soon() {
    TRIMMER.soon();
}

/// Clears `pending` however the waiting task ends, even dropped with its
/// runtime, so that a later request is never ignored.
struct PendingGuard<'a>(&'a AtomicBool);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Trimmer {
    pub const fn new() -> Self {
        Self {
            pending: AtomicBool::new(false),
            trims: AtomicUsize::new(0),
        }
    }

    pub fn soon(&'static self) {
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        // Made before the spawn: a task dropped before its first poll
        // drops the guard too.
        let pending = PendingGuard(&self.pending);
        tokio::spawn(async move {
            tokio::time::sleep(SETTLE).await;
            drop(pending);
            let _ = tokio::task::spawn_blocking(move || self.trim_now()).await;
        });
    }

    /// Returns the allocator's free pages to the kernel now; true when
    /// some memory was released.
    pub fn trim_now(&self) -> bool {
        self.trims.fetch_add(1, Ordering::AcqRel);
        trim()
    }

    /// How many trims this trimmer ran.
    pub fn trims(&self) -> usize {
        self.trims.load(Ordering::Acquire)
    }
}

impl Default for Trimmer {
    fn default() -> Self {
        Self::new()
    }
}

/// glibc's allocator settings for the agent: one arena for all its
/// threads, and no per-thread caches of freed chunks. With glibc's
/// defaults (an arena per busy thread, up to 7 chunks of each size cached
/// by each thread), a burst of 100 tasks left about 2.8 MiB more
/// anonymous memory after its cleanup than idle; with these, about 1.1 MiB
/// (docs/footprint.md §2).
pub const ALLOCATOR_TUNABLES: &str = "glibc.malloc.arena_max=1:glibc.malloc.tcache_count=0";

/// What [`tune_allocator`] found, for the log once it is set up.
#[derive(Debug)]
pub enum Tuning {
    /// Running with [`ALLOCATOR_TUNABLES`].
    Tuned,
    /// `GLIBC_TUNABLES` was set by whoever started the agent: theirs rule.
    Theirs(String),
    /// Starting again did not work; glibc's defaults apply.
    Failed(std::io::Error),
    /// Not glibc.
    Unsupported,
}

/// glibc reads its tunables only as a process starts, from
/// `GLIBC_TUNABLES`, and has no call to set these two later; so unless
/// the variable is set, the agent starts itself again, once, with
/// [`ALLOCATOR_TUNABLES`] added to its environment (same binary, same
/// arguments, same process ID). Call it first in `main`, before any
/// thread exists. Returns only when no new start happened.
pub fn tune_allocator() -> Tuning {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return Tuning::Unsupported;
    }
    match std::env::var_os("GLIBC_TUNABLES") {
        Some(v) if v == ALLOCATOR_TUNABLES => {
            keep_program_name();
            return Tuning::Tuned;
        }
        Some(v) => return Tuning::Theirs(v.to_string_lossy().into_owned()),
        None => {}
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    Tuning::Failed(restart(arg0, args.collect()))
}

#[cfg(unix)]
fn restart(arg0: std::ffi::OsString, args: Vec<std::ffi::OsString>) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    // `/proc/self/exe` is this binary even when started by a relative
    // name from another directory, or replaced on disk since.
    std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", ALLOCATOR_TUNABLES)
        .exec()
}

/// A start through `/proc/self/exe` names the process `exe` (the kernel
/// takes the name from the file executed), which `ps`, `top` and
/// `pgrep ecs-agent` would show; so it takes back the name it was started
/// by, as that start gave it: the last part of `argv[0]`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn keep_program_name() {
    use std::os::unix::ffi::OsStrExt;
    let Some(arg0) = std::env::args_os().next() else {
        return;
    };
    let Some(name) = std::path::Path::new(&arg0).file_name() else {
        return;
    };
    // The kernel keeps 15 bytes of a name; a longer one is cut there.
    let mut bytes: Vec<u8> = name.as_bytes().iter().copied().take(15).collect();
    bytes.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16
    // bytes from the pointer, which `bytes` is, alive for the call.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, bytes.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(not(target_os = "linux"))]
fn keep_program_name() {}

#[cfg(not(unix))]
fn restart(_: std::ffi::OsString, _: Vec<std::ffi::OsString>) -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::Unsupported)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim and mallinfo2 take no pointer and only walk the
    // allocator's own lists, under the allocator's own locks.
    let (released, info) = unsafe { (libc::malloc_trim(0) == 1, libc::mallinfo2()) };
    // What is still in use against what is free but kept, for telling a
    // leak from fragmentation.
    tracing::debug!(
        released,
        in_use_kib = info.uordblks / 1024,
        free_kib = info.fordblks / 1024,
        mapped_kib = info.hblkhd / 1024,
        "returned free heap pages"
    );
    released
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits for a trim that runs on a blocking thread, which paused time
    /// does not wait for.
    async fn until_trims(t: &Trimmer, n: usize) {
        while t.trims() < n {
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_cleanups_trims_once_after_it_settles() {
        let t: &'static Trimmer = Box::leak(Box::default());
        for _ in 0..100 {
            t.soon();
        }
        tokio::time::sleep(SETTLE - Duration::from_secs(1)).await;
        assert_eq!(t.trims(), 0, "not before the burst settles");
        tokio::time::sleep(Duration::from_secs(2)).await;
        until_trims(t, 1).await;
        tokio::time::sleep(SETTLE).await;
        assert_eq!(t.trims(), 1, "one trim for the burst");
        t.soon();
        tokio::time::sleep(SETTLE + Duration::from_secs(1)).await;
        until_trims(t, 2).await;
        assert_eq!(t.trims(), 2, "a later cleanup trims again");
    }

    #[test]
    fn a_request_whose_runtime_ended_does_not_block_later_ones() {
        let t: &'static Trimmer = Box::leak(Box::default());
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        first.block_on(async { t.soon() });
        drop(first);
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        second.block_on(async {
            t.soon();
            tokio::time::sleep(SETTLE + Duration::from_secs(1)).await;
            until_trims(t, 1).await;
        });
    }

    #[test]
    fn freed_memory_in_a_thread_arena_is_released() {
        // Memory freed by another thread sits in that thread's arena.
        std::thread::spawn(|| {
            let blocks: Vec<Vec<u8>> = (0..2048).map(|_| vec![1u8; 4096]).collect();
            drop(blocks);
        })
        .join()
        .ok();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(Trimmer::new().trim_now(), "malloc_trim released nothing");
        }
    }
}
