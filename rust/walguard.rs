//! `WalGuard`: keeps the WAL file bounded while readers hold snapshots.
//!
//! SQLite writes the WAL from its start again (a "restart") only at a
//! commit that finds the whole WAL copied into the database and no reader
//! still in a snapshot inside it. Readers that keep a snapshot across
//! statements (`dbapi`'s snapshot reads, a half-read stream) can overlap so
//! that no such moment ever comes, and the WAL then grows with every commit
//! (`benches/wal_growth.py`, four threads of short SQLAlchemy sessions and one
//! writer: 150.6 MB after 40 s, 3.7 times the autocheckpoint threshold, and
//! growing). SQLite's autocheckpoint, a PASSIVE checkpoint once the
//! WAL holds `wal_autocheckpoint` frames, never waits, so it cannot end that.
//!
//! This WAL hook replaces it on the writer. It runs the same PASSIVE
//! checkpoint; once the WAL has grown past twice the threshold, it also runs
//! a RESTART checkpoint, which waits for the snapshots begun before it to
//! end (readers that start meanwhile read the database file, not the WAL,
//! and do not hold it back) and then lets the next commit restart the WAL.
//! The wait is for transactions of a request's length: it doubles with each
//! failed attempt from `FIRST_WAIT` to `LAST_WAIT` (never past the busy
//! timeout), and after a failure the next attempt comes only when the WAL
//! has grown by another eighth of the threshold, then a quarter, a half, a
//! whole threshold. A snapshot held open for long (a transaction left open,
//! a stream read slowly) still holds the WAL back; it costs the writer one
//! bounded wait per threshold's worth of commits, not a wait per commit.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{ffi, Connection};

/// The first RESTART attempt's wait for older snapshots to end: longer than
/// a typical transaction, short enough to go unnoticed by writers.
const FIRST_WAIT: Duration = Duration::from_millis(50);

/// The longest wait, reached after three failures in a row.
const LAST_WAIT: Duration = Duration::from_millis(400);

pub(crate) struct WalGuard {
    /// Frames that trigger the PASSIVE checkpoint (`wal_autocheckpoint`).
    threshold: u32,
    /// The connection's busy timeout, restored after a RESTART attempt
    /// (which never waits longer).
    busy_ms: c_int,
    /// The WAL size (in frames) the next RESTART attempt waits for.
    next_attempt: AtomicU32,
    /// RESTART attempts that failed since the last one that succeeded.
    failures: AtomicU32,
    /// RESTART attempts, and those that failed, since the database opened.
    pub(crate) attempts: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl WalGuard {
    /// Install the hook on `conn` (the writer), taking over from its
    /// autocheckpoint; None when autocheckpointing is off. The returned
    /// guard must outlive the connection.
    pub(crate) fn install(
        conn: &Connection,
        busy_timeout: Duration,
    ) -> rusqlite::Result<Option<Box<WalGuard>>> {
        let threshold: i64 = conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?;
        let Ok(threshold) = u32::try_from(threshold) else {
            return Ok(None);
        };
        if threshold == 0 {
            return Ok(None);
        }
        let guard = Box::new(WalGuard {
            threshold,
            busy_ms: c_int::try_from(busy_timeout.as_millis()).unwrap_or(c_int::MAX),
            next_attempt: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            attempts: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        // SAFETY: `conn` is open; the hook's argument points into the box,
        // which the caller keeps alive for as long as the connection.
        unsafe {
            ffi::sqlite3_wal_hook(
                conn.handle(),
                Some(wal_hook),
                std::ptr::from_ref::<WalGuard>(&guard)
                    .cast_mut()
                    .cast::<c_void>(),
            );
        }
        Ok(Some(guard))
    }

    /// What to do after a commit that left `frames` in the WAL.
    fn after_commit(&self, db: *mut ffi::sqlite3, name: *const c_char, frames: u32) {
        if frames < self.threshold {
            // The WAL restarted (or is still small): start over.
            self.next_attempt.store(0, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
            return;
        }
        let (mut log, mut copied) = (0, 0);
        // SAFETY: `db` and `name` are the hook's own arguments.
        unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                db,
                name,
                ffi::SQLITE_CHECKPOINT_PASSIVE,
                &raw mut log,
                &raw mut copied,
            );
        }
        if frames < self.threshold.saturating_mul(2)
            || frames < self.next_attempt.load(Ordering::Relaxed)
        {
            return;
        }
        let failures = self.failures.load(Ordering::Relaxed);
        let backoff = failures.min(3);
        let wait = (FIRST_WAIT * (1 << backoff))
            .min(LAST_WAIT)
            .as_millis()
            .min(u128::try_from(self.busy_ms.max(0)).unwrap_or(0));
        let wait = c_int::try_from(wait).unwrap_or(c_int::MAX);
        // SAFETY: as above; the busy timeout is this connection's own and is
        // put back before returning.
        let rc = unsafe {
            ffi::sqlite3_busy_timeout(db, wait);
            let rc = ffi::sqlite3_wal_checkpoint_v2(
                db,
                name,
                ffi::SQLITE_CHECKPOINT_RESTART,
                &raw mut log,
                &raw mut copied,
            );
            ffi::sqlite3_busy_timeout(db, self.busy_ms);
            rc
        };
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if rc == ffi::SQLITE_OK {
            self.failures.store(0, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.failures
                .store(failures.saturating_add(1), Ordering::Relaxed);
            let spacing = (self.threshold / 8).saturating_mul(1 << backoff);
            self.next_attempt
                .store(frames.saturating_add(spacing), Ordering::Relaxed);
        }
    }
}

/// SQLite's WAL hook: called after each commit on the writer, with the
/// frames now in the WAL. Always `SQLITE_OK`: the commit has happened, and
/// a checkpoint that could not finish is tried again later.
unsafe extern "C" fn wal_hook(
    arg: *mut c_void,
    db: *mut ffi::sqlite3,
    name: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: `arg` is the `WalGuard` that `install` registered, alive as
    // long as the connection; the hook runs on the thread using it.
    let guard = unsafe { &*arg.cast::<WalGuard>() };
    if let Ok(frames) = u32::try_from(frames) {
        // A panic must not unwind into SQLite.
        let _ = std::panic::catch_unwind(|| guard.after_commit(db, name, frames));
    }
    ffi::SQLITE_OK
}
