//! The operator's heap. The binary allocates through jemalloc (set in
//! `main.rs`): at 10,000 autoscalers a tick's many small, short-lived
//! allocations cost glibc's allocator a third of the operator's CPU (its slow
//! path and the arena lock handed between the async worker and the policy
//! threads), and jemalloc's per-thread caches take most of that away (with
//! the parsed selector, 0.64–0.75 of the CPU in paired runs of the scale
//! benchmark; `docs/benchmarks.md`).
//!
//! What a burst frees (the start-up, when thousands of first ticks and policy
//! loads run at once, or a shard handed to another replica) must not keep the
//! RSS at its peak: jemalloc returns free pages to the operating system after
//! they have been unused for a while, and its background threads do so even
//! for an arena no thread allocates from any more.

/// Lets jemalloc's background threads return freed pages, so an arena left
/// idle after a burst gives its pages back too; call it once at start-up.
/// False when jemalloc refused (it then purges only as arenas are used).
pub fn tune_allocator() -> bool {
    tikv_jemalloc_ctl::background_thread::write(true).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_purging_is_on_once_tuned() {
        assert!(tune_allocator());
        assert!(tikv_jemalloc_ctl::background_thread::read().expect("readable"));
    }
}
