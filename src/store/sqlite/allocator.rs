//! SQLite's memory: mimalloc, the process's allocator (see `main.rs`), instead of the C library's.
//!
//! SQLite allocates and frees many small buffers per statement (a full-text query reads and decodes a doclist per
//! word), and its connections move between the calls' threads. With the C library's allocator a buffer freed on
//! another thread than the one that allocated it takes that thread's arena lock; under 16 concurrent searches a
//! sixth of the server's CPU went to waking threads waiting for those locks. SQLite's own memory statistics, which
//! take one process-wide lock per allocation and which nothing reads, are turned off as well.

use std::{
    ffi::{c_int, c_void},
    sync::Once,
};

use libmimalloc_sys as mi;
use rusqlite::ffi;

unsafe extern "C" fn allocate(size: c_int) -> *mut c_void {
    // SAFETY: mimalloc's malloc takes any size; SQLite never asks for a negative one (it would get 0 bytes).
    unsafe { mi::mi_malloc(usize::try_from(size).unwrap_or(0)) }
}

unsafe extern "C" fn free(block: *mut c_void) {
    // SAFETY: SQLite frees only blocks it got from `allocate` or `reallocate`, once each.
    unsafe { mi::mi_free(block) }
}

unsafe extern "C" fn reallocate(block: *mut c_void, size: c_int) -> *mut c_void {
    // SAFETY: as for `allocate` and `free`: `block` came from this allocator.
    unsafe { mi::mi_realloc(block, usize::try_from(size).unwrap_or(0)) }
}

unsafe extern "C" fn size(block: *mut c_void) -> c_int {
    // SAFETY: `block` came from this allocator (SQLite asks only about its own blocks).
    let usable = unsafe { mi::mi_usable_size(block) };
    c_int::try_from(usable).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn round_up(size: c_int) -> c_int {
    // SAFETY: a pure function of its argument.
    let good = unsafe { mi::mi_good_size(usize::try_from(size).unwrap_or(0)) };
    c_int::try_from(good).unwrap_or(size)
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn shutdown(_: *mut c_void) {}

/// Sets SQLite's allocator and turns its memory statistics off, once per process, before the process's first
/// SQLite connection (`Store::connect` calls it first). Should SQLite already be in use (a program that opened a
/// connection of its own before), it keeps its defaults.
pub(in crate::store) fn configure() {
    static CONFIGURED: Once = Once::new();
    CONFIGURED.call_once(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(allocate),
            xFree: Some(free),
            xRealloc: Some(reallocate),
            xSize: Some(size),
            xRoundup: Some(round_up),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: `sqlite3_config` may only run before SQLite is initialized and while no other thread uses
        // SQLite. This runs once, before this process's stores open any connection; if SQLite is initialized
        // already, both calls return SQLITE_MISUSE and change nothing. SQLite copies `methods` before the call
        // returns; the functions it points to live as long as the process.
        let (malloc, memstatus) = unsafe {
            (
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &raw const methods),
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int),
            )
        };
        if malloc != ffi::SQLITE_OK || memstatus != ffi::SQLITE_OK {
            tracing::debug!(
                malloc,
                memstatus,
                "SQLite was in use already; it keeps its own allocator"
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_allocates_from_mimalloc_and_keeps_no_statistics() {
        configure();
        let conn = rusqlite::Connection::open_in_memory().expect("a connection");
        conn.execute_batch("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('a block or two')")
            .expect("a statement");
        // SAFETY: a block SQLite allocates, looked at and given back once.
        unsafe {
            let block = ffi::sqlite3_malloc(100);
            assert!(!block.is_null());
            assert!(
                mi::mi_is_in_heap_region(block),
                "SQLite's block is mimalloc's"
            );
            ffi::sqlite3_free(block);
            assert_eq!(ffi::sqlite3_memory_used(), 0, "no statistics are kept");
        }
    }
}
