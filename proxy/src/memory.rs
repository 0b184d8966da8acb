//! Giving the daemon's free memory back to the system.
//!
//! The daemon's allocator (`main.rs`) is jemalloc, because its per-thread caches suit the relay: the runtime's threads allocate
//! events that the writer thread frees, which glibc's malloc serves with locks and
//! cross-arena frees (about a fifth more relay CPU per chat message in the bench).

/// Return free heap pages to the system (after a burst of held bytes has been released).
pub fn give_back() {
    // "arena.<MALLCTL_ARENAS_ALL>.purge": every arena's unused dirty pages go back now
    // instead of after jemalloc's decay time.
    let purge = c"arena.4096.purge";
    // SAFETY: a valid NUL-terminated name; purge takes and returns nothing.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            purge.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
    // The same for glibc's heap: what C libraries (SQLite) allocate, and all of it in
    // the library's own tests, which run without the daemon's allocator.
    // SAFETY: malloc_trim only returns free heap memory to the system.
    unsafe { libc::malloc_trim(0) };
}
