//! The writer slot: the one writer connection of a database, lent to one
//! holder at a time.
//!
//! honker-core's `Writer` is the same slot with an unbounded wait. Ours
//! waits until a deadline, because a transaction belongs to whoever holds
//! its object (a DB-API connection, a `with` block), not to a thread: a web
//! framework may end it on another thread of its pool, after this thread has
//! started the next request. So a second writer never fails at once; it
//! waits for the holder as SQLite's busy handler waits for another process's
//! lock, up to the database's busy timeout.
//!
//! Invariants: the connection is either in the slot or held by exactly one
//! caller; `close` drops the connection if it is in the slot, and a holder
//! releasing after `close` drops it itself, so no write happens after
//! `close` and the file is closed either way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;

/// What waiting for the slot came to.
pub enum Taken {
    Conn(Connection),
    Closed,
    TimedOut,
}

pub struct WriterSlot {
    slot: Mutex<Option<Connection>>,
    available: Condvar,
    closed: AtomicBool,
}

impl WriterSlot {
    pub fn new(conn: Connection) -> Self {
        WriterSlot {
            slot: Mutex::new(Some(conn)),
            available: Condvar::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// The connection if it is free now; never waits.
    pub fn try_acquire(&self) -> Option<Connection> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        self.slot.lock().take()
    }

    /// The connection, waiting for it until `deadline`. Call with the GIL
    /// released.
    pub fn acquire_until(&self, deadline: Instant) -> Taken {
        let mut slot = self.slot.lock();
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Taken::Closed;
            }
            if let Some(conn) = slot.take() {
                return Taken::Conn(conn);
            }
            if self.available.wait_until(&mut slot, deadline).timed_out() {
                // One last look: a release may have raced the timeout.
                return match slot.take() {
                    Some(conn) if !self.closed.load(Ordering::Acquire) => Taken::Conn(conn),
                    _ => Taken::TimedOut,
                };
            }
        }
    }

    /// Put the connection back (dropped instead after `close`) and wake one
    /// waiter.
    pub fn release(&self, conn: Connection) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        *self.slot.lock() = Some(conn);
        self.available.notify_one();
    }

    /// Refuse every later acquisition, drop the connection if it is in the
    /// slot, and wake every waiter (they see the flag). Idempotent.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.slot.lock().take();
        self.available.notify_all();
    }
}
