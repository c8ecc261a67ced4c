//! `Snapshot`: one read transaction kept open across statements.
//!
//! A DB-API connection with ``snapshot_reads`` runs the reads of a
//! transaction (those before its first write) on one connection inside one
//! `BEGIN` ... `ROLLBACK`, so they all see the same committed state: the
//! WAL snapshot SQLite takes at the first read. Reading that way also skips
//! what every read transaction costs (taking and dropping a WAL read lock,
//! two system calls, and checking the page cache), and the pool hand-off.
//!
//! The connection comes from the core's snapshot connections, not from the
//! readers' pool (see `Core::take_snapshot_conn`), and goes back there when
//! the last holder lets go: the DB-API connection at commit, rollback or
//! close, or a result still streaming from the snapshot after that.
//! Several statements may be live on it at once (a stream and the next
//! read), so every use of the connection takes the snapshot's lock.

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use pyo3::Python;
use rusqlite::Connection;

use crate::database::Core;
use crate::errors::{Error, Result};
use crate::exec;

pub(crate) struct Snapshot {
    pub(crate) core: Arc<Core>,
    /// In its read transaction. `Some` until drop.
    conn: Option<Connection>,
    /// Held around every use of `conn`; guards the generation of the
    /// core's SQL functions installed on it.
    lock: Mutex<u64>,
}

// SAFETY: `conn` is only touched by a thread holding `lock` (see `enter`;
// `Live` keeps a statement on it and steps or drops it only under the
// lock), except in `drop`, which has the snapshot to itself. rusqlite's
// `Connection` is `Send`; it is `!Sync` only because it is not meant for
// two threads at once, which the lock rules out.
unsafe impl Sync for Snapshot {}

impl Snapshot {
    /// Take a connection and open its transaction. The snapshot itself is
    /// taken by SQLite at the first read. Call detached.
    pub(crate) fn begin(core: Arc<Core>) -> Result<Arc<Snapshot>> {
        let (conn, installed) = core.take_snapshot_conn()?;
        if let Err(e) = exec::control(&conn, "BEGIN") {
            // A connection whose BEGIN failed is in no known state: closed.
            core.return_snapshot_conn(None);
            return Err(e);
        }
        Ok(Arc::new(Snapshot {
            core,
            conn: Some(conn),
            lock: Mutex::new(installed),
        }))
    }

    /// Lock the connection for one use, after checking that the database
    /// is open and bringing its SQL functions up to date. Call detached:
    /// another thread may hold the lock.
    pub(crate) fn enter(&self) -> Result<MutexGuard<'_, u64>> {
        let mut installed = self.lock.lock();
        self.core.check_open()?;
        let current = self.core.functions.generation();
        if *installed != current {
            *installed = self
                .core
                .functions
                .install(self.conn())
                .map_err(Error::run)?;
        }
        Ok(installed)
    }

    /// The connection. Use it only while holding `enter`'s guard.
    pub(crate) fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("held until drop")
    }

    /// Take `lock` without the checks of `enter`: to step a statement
    /// (detached).
    pub(crate) fn lock(&self) -> MutexGuard<'_, u64> {
        self.lock.lock()
    }

    /// `lock`, for a caller that may hold the GIL: a `Live` that Python
    /// drops. When the lock is busy it waits with the GIL released: its
    /// holder may be running a Python SQL function, which needs the GIL to
    /// finish. (Then the GIL is taken back while holding the lock, the
    /// order that holder takes them in.)
    pub(crate) fn lock_from_anywhere(&self) -> MutexGuard<'_, u64> {
        if let Some(guard) = self.lock.try_lock() {
            return guard;
        }
        // A guard cannot leave the detached closure (it is not `Send`): the
        // lock is taken there and its guard rebuilt here.
        Python::attach(|py| py.detach(|| std::mem::forget(self.lock.lock())));
        // SAFETY: this thread took the lock just above and has not released
        // it; the guard made here releases it once.
        unsafe { self.lock.make_guard_unchecked() }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // No statement is live on it: each `Live` holds the snapshot. A
        // connection that cannot end its transaction is closed, never
        // reused with a stale snapshot.
        let reusable = conn.is_autocommit() || exec::control(&conn, "ROLLBACK").is_ok();
        let installed = *self.lock.get_mut();
        self.core
            .return_snapshot_conn(reusable.then_some((conn, installed)));
    }
}
