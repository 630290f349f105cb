//! Tuning of the global allocator (mimalloc) that the binary and the
//! benchmarks install. Touches only the allocator's process-wide options.

/// mimalloc's `purge_delay` option (its index in `mi_option_e`, the same
/// in mimalloc 2 and 3).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the OS after this long (mimalloc's default is
/// 10 ms). Batches of records are allocated and freed at a steady rate;
/// returning their pages at once and faulting fresh zeroed pages in for
/// the next batch cost about a third of the CPU of binlog → store in a
/// profile. Idle memory is still returned, a quarter second later.
const PURGE_DELAY_MS: std::os::raw::c_long = 250;

/// Sets the options; call first thing in `main`.
pub fn tune() {
    // SAFETY: sets a plain integer option; mimalloc reads it on its next
    // purge.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
}
