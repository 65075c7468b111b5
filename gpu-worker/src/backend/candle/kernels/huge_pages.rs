//! Transparent huge pages for the weights.
//!
//! A decode step streams every weight once. With 4 KiB pages that is ~250,000 pages (and TLB
//! misses) per token for the default model; with 2 MiB pages, ~500. Linux hands out huge pages
//! to anonymous memory only on request when THP is in `madvise` mode (the usual default), so
//! the weight buffers ask for them before their pages are first touched.

/// Asks for huge pages over `len` bytes at `ptr` (not yet touched). Only advice: a kernel
/// without THP, or one that says no, leaves ordinary pages, which work the same.
pub fn advise(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        // madvise wants a page-aligned start; only whole 2 MiB ranges can become huge pages.
        let start = (ptr as usize).next_multiple_of(HUGE);
        let end = (ptr as usize + len) / HUGE * HUGE;
        if end > start {
            // SAFETY: the range lies inside an allocation of `len` bytes owned by the caller;
            // MADV_HUGEPAGE changes how pages are backed, never their contents.
            let status = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE)
            };
            if status != 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "MADV_HUGEPAGE refused");
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}
