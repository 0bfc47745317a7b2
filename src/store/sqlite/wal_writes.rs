//! SQLite's write-ahead log written one commit at a time: a VFS over the default one (`unix`) whose log files
//! gather the frames a commit appends and write them with one system call.
//!
//! SQLite writes each frame of the log (a 24-byte header, then the page) with a `pwrite` of its own: about twelve
//! per CreateActivity, a tenth of the server's CPU under that load. The database writer's connection opens its
//! files through this VFS. Its database file is the default VFS's own, untouched; its log file gathers the writes
//! that extend the log and writes them out:
//!
//! - when the page of a commit frame (a frame whose header gives the database's size after the commit) has been
//!   appended, from within that `xWrite`: the commit's frames are in the file, or the commit fails with the
//!   write's error, before SQLite publishes them to readers (it does so only after its frame writes returned);
//! - before a write that does not extend the log (a frame's page rewritten in place, a frame's checksum rewritten
//!   at the commit, both at an earlier offset), which then goes straight to the file: the file receives the same
//!   writes in the same order as without gathering, and nothing of a commit stays gathered once its last write
//!   has returned;
//! - before any other call on the log file (read, size, sync, truncate, file control, close);
//! - once [`LIMIT`] bytes are gathered (a transaction larger than that spills its frames in pieces).
//!
//! Frames a transaction appended and then rolled back may stay gathered until the connection's next write to the
//! log or its close, as they would have stayed in the file: beyond the log's last commit, where no reader looks and
//! whose salt no longer matches once the log starts over.

use std::{
    ffi::{CStr, c_char, c_int, c_void},
    ptr,
    sync::OnceLock,
};

use rusqlite::ffi;

/// The VFS's name, to open a connection with (`Connection::open_with_flags_and_vfs`).
pub(in crate::store) const VFS_NAME: &CStr = c"customer-context-wal-writes";

/// Bytes gathered before they are written out without waiting for a commit frame: under 128 KiB, the most the
/// unix VFS writes in one call (it masks a write's length to 17 bits).
const LIMIT: usize = 124 * 1024;

/// A log frame's header, written by SQLite with a call of its own before the frame's page.
const FRAME_HEADER: usize = 24;

/// What is gathered for one log file.
#[derive(Default)]
struct Gathered {
    /// What the log's last writes appended and the file has not received yet: the bytes just before `end`.
    bytes: Vec<u8>,
    /// Where the log ends: past the last byte written or gathered.
    end: i64,
    /// The last write appended a commit frame's header: the page that follows it ends the commit.
    commit_header: bool,
}

/// The log file as SQLite holds it: this header, then the default VFS's file at [`inner_offset`].
#[repr(C)]
struct LogFile {
    base: ffi::sqlite3_file,
    gathered: *mut Gathered,
}

/// Where the default VFS's file lives inside the memory SQLite allocates for a file of this VFS.
const fn inner_offset() -> usize {
    let size = std::mem::size_of::<LogFile>();
    size.div_ceil(16) * 16
}

/// The default VFS this one wraps, kept once this one is registered (once per process).
struct Registered {
    base: *mut ffi::sqlite3_vfs,
}

// SAFETY: the pointer is to SQLite's default VFS, which lives as long as the process and which SQLite lets any
// thread use.
unsafe impl Send for Registered {}
// SAFETY: as above; it is only read.
unsafe impl Sync for Registered {}

static REGISTERED: OnceLock<Option<Registered>> = OnceLock::new();

/// Registers the VFS (once per process); false when SQLite has no default VFS to wrap or refuses it, in which case
/// connections are opened with the default VFS.
pub(in crate::store) fn register() -> bool {
    REGISTERED
        .get_or_init(|| {
            // SAFETY: `sqlite3_vfs_find(NULL)` returns SQLite's default VFS, which is never unregistered here.
            let base = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
            if base.is_null() {
                return None;
            }
            // SAFETY: `base` is a valid VFS; its struct is copied, and the copy is leaked so that it lives as
            // long as the process, as SQLite requires of a registered VFS.
            let vfs = unsafe {
                let mut vfs = ptr::read(base);
                vfs.szOsFile = c_int::try_from(inner_offset()).ok()? + (*base).szOsFile;
                vfs.zName = VFS_NAME.as_ptr();
                vfs.pNext = ptr::null_mut();
                vfs.xOpen = Some(open);
                Box::into_raw(Box::new(vfs))
            };
            // SAFETY: `vfs` is a complete VFS that lives as long as the process; not made the default.
            let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
            if rc != ffi::SQLITE_OK {
                tracing::warn!(
                    rc,
                    "cannot register the write-ahead log's VFS; SQLite's default is used"
                );
                return None;
            }
            Some(Registered { base })
        })
        .is_some()
}

fn base_vfs() -> *mut ffi::sqlite3_vfs {
    REGISTERED
        .get()
        .and_then(Option::as_ref)
        .map_or(ptr::null_mut(), |registered| registered.base)
}

/// `file` as the default VFS's file inside it (only for log files).
unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: a log file of this VFS is `inner_offset()` bytes of header and then the default VFS's file, within
    // the `szOsFile` bytes SQLite allocated.
    unsafe { file.cast::<u8>().add(inner_offset()).cast() }
}

unsafe fn gathered<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Gathered {
    // SAFETY: only log files use `LOG_METHODS`; their `gathered` is set by `open` and freed only by `close`, and
    // SQLite calls a file's methods from one thread at a time.
    unsafe { &mut *(*file.cast::<LogFile>()).gathered }
}

unsafe fn methods<'a>(file: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    // SAFETY: an open file's methods live as long as the process (the default VFS's are static).
    unsafe { &*(*file).pMethods }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = base_vfs();
    // SAFETY: SQLite calls `open` only on this VFS, registered after `base` was found.
    let Some(base_open) = (unsafe { base.as_ref() }).and_then(|base| base.xOpen) else {
        return ffi::SQLITE_CANTOPEN;
    };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Any other file is the default VFS's own, at the start of the memory (which is larger than it needs).
        // SAFETY: `file` has room for the default VFS's file; the arguments are SQLite's own.
        return unsafe { base_open(base, name, file, flags, out_flags) };
    }
    // SAFETY: `file` has room for the header and the default VFS's file after it; SQLite zeroes nothing, so the
    // header is written before anything reads it.
    unsafe {
        (*file).pMethods = ptr::null();
        let rc = base_open(base, name, inner(file), flags, out_flags);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        (*file.cast::<LogFile>()).gathered = Box::into_raw(Box::<Gathered>::default());
        (*file).pMethods = &LOG_METHODS;
    }
    ffi::SQLITE_OK
}

/// Writes out what is gathered for the log file `file`.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is a log file of this VFS.
    unsafe { write_out(gathered(file), inner(file)) }
}

/// Writes `gathered` to `inner`, the default VFS's file under a log file, and empties it.
unsafe fn write_out(gathered: &mut Gathered, inner: *mut ffi::sqlite3_file) -> c_int {
    if gathered.bytes.is_empty() {
        return ffi::SQLITE_OK;
    }
    let (Ok(len), Ok(gathered_len)) = (
        c_int::try_from(gathered.bytes.len()),
        i64::try_from(gathered.bytes.len()),
    ) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let start = gathered.end - gathered_len;
    // SAFETY: the inner file is open; `xWrite` writes all `len` bytes or fails.
    let rc = unsafe {
        match methods(inner).xWrite {
            Some(write) => write(inner, gathered.bytes.as_ptr().cast(), len, start),
            None => ffi::SQLITE_IOERR_WRITE,
        }
    };
    gathered.bytes.clear();
    #[cfg(test)]
    tests::WRITES.with(|writes| writes.set(writes.get() + 1));
    rc
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let written = i64::from(amount);
    // SAFETY: SQLite passes `amount` readable bytes at `data`; `file` is a log file of this VFS.
    let (bytes, gathered, inner) = unsafe {
        (
            std::slice::from_raw_parts(data.cast::<u8>(), len),
            gathered(file),
            inner(file),
        )
    };
    if offset == 0 {
        // The log's header: the log starts over from here, after what is gathered has gone where it belongs.
        // SAFETY: `inner` is the open file under `file`.
        let rc = unsafe { write_out(gathered, inner) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        gathered.end = 0;
    }
    if offset != gathered.end {
        // A frame rewritten in place (its page changed again, its checksum recomputed at the commit): what is
        // gathered goes first, then this, straight to the file, as SQLite wrote it.
        gathered.commit_header = false;
        // SAFETY: `inner` is the open file under `file`; the arguments are SQLite's own.
        let rc = unsafe { write_out(gathered, inner) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        gathered.end = gathered.end.max(offset + written);
        // SAFETY: as above.
        return unsafe {
            match methods(inner).xWrite {
                Some(write) => write(inner, data, amount, offset),
                None => ffi::SQLITE_IOERR_WRITE,
            }
        };
    }
    let ends_commit = gathered.commit_header && len != FRAME_HEADER;
    if gathered.bytes.len() + len > LIMIT {
        // SAFETY: as above.
        let rc = unsafe { write_out(gathered, inner) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    gathered.bytes.extend_from_slice(bytes);
    gathered.end = offset + written;
    // Bytes 4..8 of a frame's header: the database's size in pages after a commit, 0 for other frames.
    gathered.commit_header = len == FRAME_HEADER && bytes[4..8] != [0, 0, 0, 0];
    if ends_commit || gathered.bytes.len() >= LIMIT {
        // SAFETY: as above.
        return unsafe { write_out(gathered, inner) };
    }
    ffi::SQLITE_OK
}

/// Writes out what is gathered, then calls the default VFS's method.
macro_rules! after_flush {
    ($name:ident, $field:ident ( $($arg:ident : $ty:ty),* ), $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: `file` is a log file of this VFS.
            let rc = unsafe { flush(file) };
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            // SAFETY: the inner file is open; the arguments are SQLite's own.
            unsafe {
                let inner = inner(file);
                match methods(inner).$field {
                    Some(method) => method(inner $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

/// Calls the default VFS's method as it is.
macro_rules! passed {
    ($name:ident, $field:ident ( $($arg:ident : $ty:ty),* ), $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: `file` is a log file of this VFS; the inner file is open; the arguments are SQLite's own.
            unsafe {
                let inner = inner(file);
                match methods(inner).$field {
                    Some(method) => method(inner $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

after_flush!(read, xRead(buffer: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64), ffi::SQLITE_IOERR_READ);
after_flush!(sync, xSync(flags: c_int), ffi::SQLITE_IOERR_FSYNC);
after_flush!(file_size, xFileSize(size: *mut ffi::sqlite3_int64), ffi::SQLITE_IOERR_FSTAT);
after_flush!(file_control, xFileControl(op: c_int, argument: *mut c_void), ffi::SQLITE_NOTFOUND);
passed!(lock, xLock(level: c_int), ffi::SQLITE_OK);
passed!(unlock, xUnlock(level: c_int), ffi::SQLITE_OK);
passed!(check_reserved_lock, xCheckReservedLock(out: *mut c_int), ffi::SQLITE_OK);
passed!(sector_size, xSectorSize(), 4096);
passed!(device_characteristics, xDeviceCharacteristics(), 0);
passed!(shm_map, xShmMap(page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void), ffi::SQLITE_IOERR_SHMMAP);
passed!(shm_lock, xShmLock(offset: c_int, count: c_int, flags: c_int), ffi::SQLITE_IOERR_SHMLOCK);
passed!(shm_unmap, xShmUnmap(delete: c_int), ffi::SQLITE_OK);
passed!(unfetch, xUnfetch(offset: ffi::sqlite3_int64, page: *mut c_void), ffi::SQLITE_OK);

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: `file` is a log file of this VFS; the inner file is open.
    unsafe {
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let gathered = gathered(file);
        gathered.end = gathered.end.min(size);
        let inner = inner(file);
        match methods(inner).xTruncate {
            Some(truncate) => truncate(inner, size),
            None => ffi::SQLITE_IOERR_TRUNCATE,
        }
    }
}

unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: ffi::sqlite3_int64,
    amount: c_int,
    page: *mut *mut c_void,
) -> c_int {
    // SAFETY: `file` is a log file of this VFS; `page` is SQLite's out pointer.
    unsafe {
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let inner = inner(file);
        match methods(inner).xFetch {
            Some(fetch) => fetch(inner, offset, amount, page),
            None => {
                *page = ptr::null_mut();
                ffi::SQLITE_OK
            }
        }
    }
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: `file` is a log file of this VFS; the inner file is open.
    unsafe {
        let inner = inner(file);
        if let Some(barrier) = methods(inner).xShmBarrier {
            barrier(inner);
        }
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is a log file of this VFS, closed once: what is gathered is written out, the inner file
    // closed, and the gathered state freed.
    unsafe {
        let flushed = flush(file);
        let inner = inner(file);
        let closed = match methods(inner).xClose {
            Some(close) => close(inner),
            None => ffi::SQLITE_OK,
        };
        let log = file.cast::<LogFile>();
        drop(Box::from_raw((*log).gathered));
        (*log).gathered = ptr::null_mut();
        (*file).pMethods = ptr::null();
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

static LOG_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

#[cfg(test)]
mod tests {
    use std::{cell::Cell, path::Path};

    use rusqlite::{Connection, OpenFlags};

    use super::*;

    thread_local! {
        /// Writes of gathered bytes to a log file made on this thread.
        pub(super) static WRITES: Cell<u64> = const { Cell::new(0) };
    }

    fn writes() -> u64 {
        WRITES.with(Cell::get)
    }

    /// A connection writing through this VFS, in WAL mode, its page cache as small as `cache_pages`.
    fn writer(path: &Path, cache_pages: i64) -> Connection {
        assert!(register());
        let conn = Connection::open_with_flags_and_vfs(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            VFS_NAME,
        )
        .expect("writer");
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0; \
             PRAGMA cache_size = {cache_pages}; \
             CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body BLOB NOT NULL);"
        ))
        .expect("schema");
        conn
    }

    /// A new directory and the path of a database file in it.
    fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("log.db");
        (dir, path)
    }

    /// A connection of SQLite's default VFS.
    fn plain(path: &Path) -> Connection {
        Connection::open(path).expect("plain connection")
    }

    /// The rows' count and the sum of their bodies' lengths, as `conn` reads them.
    fn summary(conn: &Connection) -> (i64, i64) {
        conn.query_row(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM rows",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("summary")
    }

    fn insert(conn: &Connection, rows: usize, body: usize) {
        let tx = conn.unchecked_transaction().expect("begin");
        for _ in 0..rows {
            tx.execute(
                "INSERT INTO rows (body) VALUES (zeroblob(?1))",
                [body as i64],
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
    }

    fn integrity(conn: &Connection) -> String {
        conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity check")
    }

    /// Copies every logged page into the database file through `conn` and starts the log over.
    fn checkpoint_truncate(conn: &Connection) {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("checkpoint");
    }

    /// A copy of the database at `path` and its log in `dir`, opened as after a crash: SQLite recovers the
    /// commits from the copied log.
    fn copy_with_log(dir: &Path, path: &Path) -> Connection {
        let copy = dir.join("copy.db");
        std::fs::copy(path, &copy).expect("copy the database");
        std::fs::copy(path.with_extension("db-wal"), copy.with_extension("db-wal"))
            .expect("copy the log");
        plain(&copy)
    }

    #[test]
    fn a_commit_of_many_pages_is_written_to_the_log_at_once_and_read_by_other_connections() {
        let (_dir, path) = temp_db();
        let conn = writer(&path, -2000);
        let reader = plain(&path);
        let before = writes();
        // About 20 pages of 4 KiB: 20 frames, forty writes by SQLite.
        insert(&conn, 20, 3000);
        assert_eq!(writes() - before, 1, "one write for the whole commit");
        assert_eq!(summary(&reader), (20, 60_000));
        for round in 1..=20 {
            insert(&conn, round, 100 * round);
            let expected_rows = 20 + (1..=round as i64).sum::<i64>();
            assert_eq!(summary(&reader).0, expected_rows, "round {round}");
        }
        assert_eq!(integrity(&reader), "ok");
    }

    #[test]
    fn a_transaction_larger_than_the_limit_is_written_in_pieces_and_reads_back_whole() {
        let (_dir, path) = temp_db();
        let conn = writer(&path, -2000);
        let before = writes();
        // About 3 MB of pages (750 frames): many times the limit.
        insert(&conn, 750, 4000);
        let written = writes() - before;
        let least = (750 * (4096 + FRAME_HEADER)).div_ceil(LIMIT) as u64;
        assert!((least..2 * least).contains(&written), "{written} writes");
        assert_eq!(summary(&plain(&path)), (750, 3_000_000));
    }

    /// A transaction of 200 rows of 3,000 bytes, more than a cache of 10 pages holds, so it spills its pages to
    /// the log before it ends, then rolled back.
    fn spill_and_roll_back(conn: &Connection) {
        let tx = conn.unchecked_transaction().expect("begin");
        for _ in 0..200 {
            tx.execute("INSERT INTO rows (body) VALUES (zeroblob(3000))", [])
                .expect("insert");
        }
        tx.rollback().expect("rollback");
    }

    #[test]
    fn frames_spilled_by_a_rolled_back_transaction_leave_the_log_sound() {
        let (_dir, path) = temp_db();
        // A page cache of 10 pages: a large transaction spills its pages to the log before it commits.
        let conn = writer(&path, 10);
        insert(&conn, 20, 1000);
        spill_and_roll_back(&conn);
        let reader = plain(&path);
        assert_eq!(summary(&reader), (20, 20_000));
        insert(&conn, 30, 500);
        assert_eq!(summary(&reader), (50, 35_000));
        // The log copied and started over by another connection, then written again through this one.
        checkpoint_truncate(&reader);
        insert(&conn, 5, 100);
        assert_eq!(summary(&reader), (55, 35_500));
        assert_eq!(integrity(&reader), "ok");
        drop(reader);
        drop(conn);
        let reopened = plain(&path);
        assert_eq!(summary(&reopened), (55, 35_500));
        assert_eq!(integrity(&reopened), "ok");
    }

    /// Rows of `n` times "x" each, in transactions of every size, some past the limit, with frames rewritten
    /// (a page cache of 10 pages spills the transaction's pages to the log, and later statements change them
    /// again): after every commit another connection reads every byte back.
    #[test]
    fn every_commit_reads_back_byte_for_byte_whatever_its_size_and_rewrites() {
        let (_dir, path) = temp_db();
        let conn = writer(&path, 10);
        let reader = plain(&path);
        let wrong = |reader: &Connection| -> i64 {
            reader
                .query_row(
                    "SELECT count(*) FROM rows WHERE CAST(body AS TEXT) != printf('%.*c', length(body), 'x')",
                    [],
                    |row| row.get(0),
                )
                .expect("compare")
        };
        let mut rows = 0i64;
        for round in 0..120usize {
            let tx = conn.unchecked_transaction().expect("begin");
            let inserts = 1 + (round * 7) % 23;
            for i in 0..inserts {
                let size = 500 + ((round * 3_001 + i * 7_919) % 45_000);
                tx.execute(
                    "INSERT INTO rows (body) VALUES (CAST(printf('%.*c', ?1, 'x') AS BLOB))",
                    [size as i64],
                )
                .expect("insert");
            }
            rows += inserts as i64;
            // Rewrite rows written earlier in this transaction and before it.
            tx.execute(
                "UPDATE rows SET body = CAST(printf('%.*c', length(body) + 1, 'x') AS BLOB) \
                 WHERE id % 5 = ?1",
                [(round % 5) as i64],
            )
            .expect("update");
            tx.commit().expect("commit");
            assert_eq!(summary(&reader).0, rows, "round {round}");
            assert_eq!(wrong(&reader), 0, "round {round}");
        }
        assert_eq!(integrity(&reader), "ok");
        drop(conn);
        let reopened = plain(&path);
        assert_eq!(wrong(&reopened), 0);
        assert_eq!(integrity(&reopened), "ok");
    }

    /// Commits of 1 to 80 pages, each the first of a log started over: one of them has its commit frame's header
    /// gathered just under the limit and its page just past it.
    #[test]
    fn a_commit_frame_split_by_the_limit_still_reaches_the_file_with_its_commit() {
        let (_dir, path) = temp_db();
        let conn = writer(&path, -2000);
        let reader = plain(&path);
        for pages in 1..=80i64 {
            checkpoint_truncate(&reader);
            let tx = conn.unchecked_transaction().expect("begin");
            for _ in 0..pages {
                tx.execute(
                    "INSERT INTO rows (body) VALUES (CAST(printf('%.*c', 3900, 'x') AS BLOB))",
                    [],
                )
                .expect("insert");
            }
            tx.commit().expect("commit");
            let wrong: i64 = reader
                .query_row(
                    "SELECT count(*) FROM rows WHERE CAST(body AS TEXT) != printf('%.*c', 3900, 'x')",
                    [],
                    |row| row.get(0),
                )
                .expect("compare");
            assert_eq!(wrong, 0, "a commit of {pages} rows");
        }
        assert_eq!(summary(&reader).0, (1..=80).sum::<i64>());
    }

    /// A transaction that spilled and rolled back, the log copied and started over by another connection, then a
    /// commit: the new log's header goes to the start of the file, and a reopened database recovers the commit
    /// from the log.
    #[test]
    fn a_log_started_over_after_a_rollback_recovers_its_commits() {
        let (dir, path) = temp_db();
        let conn = writer(&path, 10);
        insert(&conn, 20, 1000);
        spill_and_roll_back(&conn);
        checkpoint_truncate(&plain(&path));
        insert(&conn, 7, 100);
        // The files as a crash would leave them: the log is read back by recovery, from its header.
        let recovered = copy_with_log(dir.path(), &path);
        assert_eq!(summary(&recovered), (27, 20_700));
        assert_eq!(integrity(&recovered), "ok");
    }

    #[test]
    fn a_commit_reaches_the_file_before_the_connection_closes() {
        let (dir, path) = temp_db();
        let conn = writer(&path, -2000);
        insert(&conn, 10, 2000);
        // The log file as another process would read it, while the writer is still open: a copy of the
        // database and its log opens with the commit in it.
        assert_eq!(summary(&copy_with_log(dir.path(), &path)), (10, 20_000));
        drop(conn);
    }
}
