//! Transparent huge pages off for a server process.
//!
//! A server's heap grows and shrinks in small steps (request bodies, lease tables, reply
//! buffers). With transparent huge pages the kernel backs each fresh 2 MiB of heap with one
//! huge page and zeroes all of it on the first touch: under the TigerBeetle HTTP benchmark
//! that zeroing was a third of ratelimiterd's CPU (BENCHMARKS.md, issue #11). The allocator
//! is built without asking for huge pages (mimalloc's `no_thp`), which is enough where the
//! kernel grants them only on request (`madvise`, Debian's default); this also covers
//! kernels set to `always`.

/// Asks the kernel not to back this process's memory with transparent huge pages
/// (`prctl(PR_SET_THP_DISABLE)`, Linux only). Returns whether they are now off; a kernel
/// that refuses (or another OS) leaves everything as it was and only costs speed.
pub fn disable_transparent_huge_pages() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory
        // of this process; it only sets a flag the kernel keeps for it.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        rc == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_reports_huge_pages_off_afterwards() {
        assert!(disable_transparent_huge_pages());
        // SAFETY: PR_GET_THP_DISABLE reads the flag only.
        let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 1);
    }
}
