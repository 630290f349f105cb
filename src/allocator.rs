//! Tuning of the global allocator (mimalloc) that the binary and the
//! benchmarks install. Touches only the allocator's process-wide options
//! and the process's transparent-huge-page flag.

/// mimalloc's `purge_delay` option (its index in `mi_option_e`, the same
/// in mimalloc 2 and 3).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the OS after this long (mimalloc's default is
/// 10 ms). Batches of records are allocated and freed at a steady rate;
/// returning their pages at once and faulting fresh zeroed pages in for
/// the next batch cost about a third of the CPU of binlog → store in a
/// profile. Idle memory is still returned, a quarter second later.
const PURGE_DELAY_MS: std::os::raw::c_long = 250;

/// Sets the options; call first thing in `main`. mimalloc's own
/// environment variables win when set: `MIMALLOC_PURGE_DELAY` (ms), and
/// `MIMALLOC_ALLOW_THP=1` keeps transparent huge pages.
///
/// Transparent huge pages are turned off for the process: mimalloc asks
/// for them on its arenas, and every page it refills after a purge then
/// faults in and zeroes 2 MiB. In a profile of binlog → apply that
/// zeroing was 8 % of all samples (sluice and its target together); with
/// huge pages off sluice spent 3.3 CPU s instead of 4.0 on 1M rows, with a
/// peak RSS of 181 MiB instead of 224. The flag is inherited by child
/// processes; the daemon starts none.
pub fn tune() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl with integer arguments only; it sets a flag of
        // this process (the call fails harmlessly on kernels without it).
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets a plain integer option; mimalloc reads it on its next
    // purge.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
}
