//! Giving freed heap back to the operating system. glibc's allocator keeps
//! what a burst freed (the start-up, when thousands of first ticks and policy
//! loads run at once, or a shard handed to another replica) in its arenas, so
//! the operator's RSS would stay at its peak; `malloc_trim` returns the free
//! pages of every arena. Fewer arenas also fragment less: glibc's default of
//! eight per core, each filled by whichever threads the burst ran on, kept a
//! third more resident in the scale benchmark than one per core. And blocks
//! of 64 KiB or more (policy files, ConfigMap bodies, API responses) are
//! mapped on their own and unmapped when freed: by default glibc raises
//! that threshold to the largest block freed so far (up to 32 MiB), so after
//! the first large component was read, every later one was carved out of an
//! arena and left it fragmented.

use std::time::Duration;

/// How often freed heap is returned to the operating system.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Returns the allocator's free pages to the operating system; false when none
/// were, or where the allocator offers no way to.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` takes no pointer; it walks glibc's own free lists
        // under the allocator's locks, as any allocation does.
        #[allow(unsafe_code)]
        unsafe {
            libc::malloc_trim(0) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Blocks at least this large are mapped on their own and returned when freed.
pub const MMAP_THRESHOLD: usize = 64 << 10;

/// Caps glibc's arenas at one per core (at least two) and maps blocks of
/// [`MMAP_THRESHOLD`] or more on their own; call it before threads start, as
/// an arena, once made, lives as long as the process. False where the
/// allocator offers no such settings.
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
        let threshold = libc::c_int::try_from(MMAP_THRESHOLD).expect("64 KiB fits");
        // SAFETY: `mallopt` takes no pointer; it sets a parameter under the
        // allocator's own lock.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas) == 1
                && libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Trims every `every`, off the async workers (it walks every arena), until aborted.
pub async fn trim_periodically(every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_heap_is_returned_and_what_is_kept_stays_intact() {
        // Many small blocks, all held at once, then most freed: their pages are free
        // inside the heap, between the blocks still kept.
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 4096]).collect();
        let kept: Vec<Vec<u8>> = blocks.into_iter().step_by(100).collect();
        let returned = trim();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(
                returned,
                "about 80 MB freed between kept blocks, none returned"
            );
        }
        assert!(kept
            .iter()
            .enumerate()
            .all(|(i, b)| b.len() == 4096 && b.iter().all(|&x| x == (i * 100) as u8)));
    }

    #[test]
    fn the_allocator_settings_are_accepted() {
        assert_eq!(
            tune_allocator(),
            cfg!(all(target_os = "linux", target_env = "gnu"))
        );
    }
}
