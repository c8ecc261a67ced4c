//! `Transaction` and `Savepoint`: an explicit write transaction on the
//! writer connection.
//!
//! Invariant: while a `Transaction` is active it owns the writer connection
//! (taken out of honker-core's slot) and a `BEGIN IMMEDIATE` is open on it.
//! Exactly one of commit, rollback or drop ends it, and each returns the
//! connection to the slot; a transaction dropped without commit rolls back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::Connection;

use crate::convert::{to_params, Params};
use crate::database::{
    commit_or_rollback, first_row, for_each_chunk, rows_to_py, Core, ExecuteResult,
};
use crate::detach::{detached, detached_with};
use crate::errors::{Error, Result};
use crate::exec::{self, Fetched, Outcome};

const CONTROL_REFUSED: &str =
    "BEGIN, COMMIT, END and ROLLBACK cannot run inside db.transaction(); \
     end it with tx.commit() or tx.rollback(), or nest with tx.savepoint()";

struct TxState {
    conn: Option<Connection>,
    savepoints: u64,
}

/// Put the writer's foreign-key enforcement back on after a transaction
/// that ran with it off (`foreign_keys=False`), before the writer goes back
/// to the slot. Outside a transaction the PRAGMA takes effect; nothing else
/// can make it fail.
fn restore_foreign_keys(conn: &Connection, was_off: bool) {
    if was_off {
        let _ = exec::control(conn, "PRAGMA foreign_keys=ON");
    }
}

/// `BEGIN IMMEDIATE` on the writer `w`, with foreign keys turned off first
/// when `foreign_keys_off` (and back on if it fails). With
/// `no_wait_then_busy_timeout`, SQLite's busy handler is off for the BEGIN,
/// so another process's write lock is `SQLITE_BUSY` at once, and the busy
/// timeout is set back to that value afterwards (a transaction it cannot be
/// set back on is rolled back rather than left open).
fn begin_immediate(
    w: &Connection,
    foreign_keys_off: bool,
    no_wait_then_busy_timeout: Option<Duration>,
) -> Result<()> {
    if foreign_keys_off {
        exec::control(w, "PRAGMA foreign_keys=OFF")?;
    }
    let begun = match no_wait_then_busy_timeout {
        None => exec::control(w, "BEGIN IMMEDIATE"),
        Some(timeout) => w
            .busy_timeout(Duration::ZERO)
            .map_err(Error::run)
            .and_then(|()| {
                let begun = exec::control(w, "BEGIN IMMEDIATE");
                let restored = w.busy_timeout(timeout).map_err(Error::run);
                if begun.is_ok() && restored.is_err() {
                    let _ = exec::control(w, "ROLLBACK");
                }
                begun.and(restored)
            }),
    };
    begun.inspect_err(|_| restore_foreign_keys(w, foreign_keys_off))
}

/// A write transaction. Use it as a context manager (commit on success,
/// rollback on exception) or call `commit()` / `rollback()` explicitly.
/// Weak-referenceable, so that Python code can tie the lifetime of what the
/// transaction needs (a tenant file's lease) to it.
#[pyclass(
    frozen,
    weakref,
    module = "alkdev_storage._native",
    name = "Transaction"
)]
pub struct Transaction {
    core: Arc<Core>,
    state: Mutex<TxState>,
    /// Began with `PRAGMA foreign_keys=OFF` on the writer, which its end
    /// turns back on.
    foreign_keys_off: bool,
}

impl Transaction {
    /// Take the writer and open `BEGIN IMMEDIATE` on it. With
    /// `foreign_keys` false, foreign keys go unchecked for this transaction
    /// alone (SQLite changes the setting only outside a transaction, so it
    /// is turned off first and back on when the transaction ends).
    pub fn begin(py: Python<'_>, core: Arc<Core>, foreign_keys: bool) -> PyResult<Self> {
        let writer = core.acquire_writer(py)?;
        let off = !foreign_keys;
        let (writer, begun) = detached_with(py, writer, |w| begin_immediate(w, off, None));
        begun?;
        let conn = writer.into_inner();
        Ok(Self::holding(core, conn, off))
    }

    /// `begin` if that needs no wait: the writer is free, and `BEGIN
    /// IMMEDIATE` gets SQLite's write lock at once (another process may
    /// hold it: the busy handler is off for this one statement). None
    /// otherwise, with nothing held.
    pub fn try_begin(
        py: Python<'_>,
        core: Arc<Core>,
        foreign_keys: bool,
    ) -> PyResult<Option<Self>> {
        let Some(writer) = core.try_acquire_writer()? else {
            return Ok(None);
        };
        let off = !foreign_keys;
        let busy_timeout = core.busy_timeout();
        let (writer, begun) =
            detached_with(py, writer, |w| begin_immediate(w, off, Some(busy_timeout)));
        match begun {
            Ok(()) => {}
            Err(Error::Sqlite { code, .. }) if code & 0xff == rusqlite::ffi::SQLITE_BUSY => {
                return Ok(None); // `writer` goes back to the slot
            }
            Err(e) => return Err(e.into()),
        }
        let conn = writer.into_inner();
        Ok(Some(Self::holding(core, conn, off)))
    }

    /// The transaction owning `conn`, on which `BEGIN IMMEDIATE` is open.
    fn holding(core: Arc<Core>, conn: Connection, foreign_keys_off: bool) -> Self {
        Transaction {
            core,
            state: Mutex::new(TxState {
                conn: Some(conn),
                savepoints: 0,
            }),
            foreign_keys_off,
        }
    }

    /// True if this transaction is on `core`'s writer.
    pub fn belongs_to(&self, core: &Arc<Core>) -> bool {
        Arc::ptr_eq(&self.core, core)
    }

    /// Refuse a statement that would end (or re-begin) the transaction
    /// behind our back: `tx.commit()` / `tx.rollback()` / `tx.savepoint()`
    /// are the way.
    fn refuse_control(sql: &str) -> Result<()> {
        if exec::is_transaction_control(sql) {
            Err(Error::Programming(CONTROL_REFUSED.into()))
        } else {
            Ok(())
        }
    }

    /// Run `work` on the transaction's connection, detached.
    pub fn with_conn<T, F>(&self, py: Python<'_>, work: F) -> Result<T>
    where
        T: Send,
        F: FnOnce(&Connection) -> Result<T> + Send,
    {
        detached(py, || {
            self.core.check_open()?;
            let state = self.state.lock();
            let conn = state.conn.as_ref().ok_or(Error::TransactionFinished)?;
            self.core.running_on_writer(|| work(conn))
        })
    }

    /// Commit (or roll back) and give the writer back.
    pub(crate) fn finish(&self, py: Python<'_>, commit: bool) -> Result<()> {
        detached(py, || {
            let mut state = self.state.lock();
            let conn = state.conn.take().ok_or(Error::TransactionFinished)?;
            let out = if commit {
                self.core
                    .check_open()
                    .and_then(|()| commit_or_rollback(&conn))
                    .inspect_err(|_| {
                        let _ = exec::control(&conn, "ROLLBACK");
                    })
            } else {
                exec::control(&conn, "ROLLBACK")
            };
            restore_foreign_keys(&conn, self.foreign_keys_off);
            self.core.release_writer(conn);
            out
        })
    }

    fn control(&self, py: Python<'_>, sql: &str) -> Result<()> {
        self.with_conn(py, |c| exec::control(c, sql))
    }

    /// One statement in full: its rows (None for a statement without result
    /// columns) and its counts. See `_run`.
    pub fn run(
        &self,
        py: Python<'_>,
        sql: &str,
        params: &Params,
    ) -> Result<(Option<Fetched>, Outcome)> {
        Self::refuse_control(sql)?;
        let stats = &self.core.stats;
        self.with_conn(py, |c| exec::run(c, stats, sql, params))
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Some(conn) = self.state.get_mut().conn.take() {
            let _ = exec::control(&conn, "ROLLBACK");
            restore_foreign_keys(&conn, self.foreign_keys_off);
            self.core.release_writer(conn);
        }
    }
}

#[pymethods]
impl Transaction {
    /// True until the transaction is committed or rolled back.
    #[getter]
    pub fn active(&self) -> bool {
        self.state.lock().conn.is_some()
    }

    #[pyo3(signature = (sql, params=None))]
    fn execute(
        &self,
        py: Python<'_>,
        sql: &str,
        params: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<ExecuteResult> {
        Self::refuse_control(sql)?;
        let params = to_params(params)?;
        let stats = &self.core.stats;
        Ok(self
            .with_conn(py, |c| exec::execute(c, stats, sql, &params))?
            .into())
    }

    fn executemany(
        &self,
        py: Python<'_>,
        sql: &str,
        seq_of_params: &Bound<'_, PyAny>,
    ) -> PyResult<ExecuteResult> {
        Self::refuse_control(sql)?;
        let stats = &self.core.stats;
        let mut total = Outcome::NOTHING;
        {
            let t = &mut total;
            for_each_chunk(py, seq_of_params, move |batch| {
                self.core.check_open()?;
                let state = self.state.lock();
                let conn = state.conn.as_ref().ok_or(Error::TransactionFinished)?;
                self.core
                    .running_on_writer(|| exec::execute_many(conn, stats, sql, batch, t))
            })?;
        }
        Ok(total.into())
    }

    /// Run a script inside the transaction. Statements that would end it
    /// (`COMMIT`, `ROLLBACK`, `END`, a nested `BEGIN`) are refused by an
    /// authorizer for the script's duration, so a script can never commit
    /// half of the caller's work.
    fn executescript(&self, py: Python<'_>, sql: &str) -> PyResult<()> {
        Ok(self.with_conn(py, |c| {
            c.authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
                AuthAction::Transaction { .. } => Authorization::Deny,
                _ => Authorization::Allow,
            }))
            .map_err(Error::run)?;
            let out = exec::script(c, sql);
            c.authorizer(None::<fn(AuthContext<'_>) -> Authorization>)
                .map_err(Error::run)?;
            out.map_err(|e| match e {
                Error::Sqlite { code, .. } if code == rusqlite::ffi::SQLITE_AUTH => {
                    Error::Programming(CONTROL_REFUSED.into())
                }
                other => other,
            })
        })?)
    }

    #[pyo3(signature = (sql, params=None, *, as_dict=false))]
    fn query<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        as_dict: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        Self::refuse_control(sql)?;
        let params = to_params(params)?;
        let stats = &self.core.stats;
        let fetched = self.with_conn(py, |c| {
            exec::fetch(c, stats, sql, &params, None, false, as_dict)
        })?;
        rows_to_py(py, &fetched.expect("writer fetch returns rows"), as_dict)
    }

    #[pyo3(signature = (sql, params=None, *, as_dict=false))]
    fn query_one<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        as_dict: bool,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        Self::refuse_control(sql)?;
        let params = to_params(params)?;
        let stats = &self.core.stats;
        let fetched = self.with_conn(py, |c| {
            exec::fetch(c, stats, sql, &params, Some(1), false, as_dict)
        })?;
        first_row(py, &fetched.expect("writer fetch returns rows"), as_dict)
    }

    /// One statement in full, for `alkdev_storage.dbapi`: `(columns, rows,
    /// rowcount, lastrowid)`. `rows` is None (and `columns` empty) for a
    /// statement without result columns; the column names are those it
    /// ran with (after SQLite recompiled it for a changed schema, if it did).
    #[pyo3(signature = (sql, params=None))]
    fn _run<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let params = to_params(params)?;
        let (fetched, outcome) = self.run(py, sql, &params)?;
        let (columns, rows) = match &fetched {
            Some(f) => (f.columns.clone(), rows_to_py(py, f, false)?.into_any()),
            None => (Vec::new(), py.None().into_bound(py)),
        };
        (columns, rows, outcome.rowcount, outcome.lastrowid).into_pyobject(py)
    }

    fn columns(&self, py: Python<'_>, sql: &str) -> PyResult<Vec<String>> {
        Ok(self.with_conn(py, |c| exec::columns(c, sql))?)
    }

    /// Open a nested savepoint; use it as a context manager.
    fn savepoint(slf: Py<Self>, py: Python<'_>) -> PyResult<Savepoint> {
        let tx = slf.get();
        let name = {
            let mut state = tx.state.lock();
            if state.conn.is_none() {
                return Err(Error::TransactionFinished.into());
            }
            state.savepoints += 1;
            format!("alk_sp_{}", state.savepoints)
        };
        tx.control(py, &format!("SAVEPOINT {name}"))?;
        Ok(Savepoint {
            tx: slf,
            name,
            done: AtomicBool::new(false),
        })
    }

    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        Ok(self.finish(py, true)?)
    }

    fn rollback(&self, py: Python<'_>) -> PyResult<()> {
        Ok(self.finish(py, false)?)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Commit when the block succeeded, roll back when it raised. A
    /// transaction already ended inside the block is left as it is.
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        if self.active() {
            self.finish(py, exc_type.is_none())?;
        }
        Ok(())
    }

    /// False when the transaction runs with foreign keys unchecked
    /// (``db.transaction(foreign_keys=False)``).
    #[getter]
    fn foreign_keys(&self) -> bool {
        !self.foreign_keys_off
    }

    fn __repr__(&self) -> String {
        let state = if self.active() { "active" } else { "finished" };
        format!("<Transaction {state}>")
    }
}

/// A savepoint inside a transaction. As a context manager it is released
/// on success and rolled back (then released) on exception.
#[pyclass(frozen, module = "alkdev_storage._native", name = "Savepoint")]
pub struct Savepoint {
    tx: Py<Transaction>,
    name: String,
    done: AtomicBool,
}

impl Savepoint {
    fn end(&self, py: Python<'_>, rollback: bool) -> PyResult<()> {
        if self.done.swap(true, Ordering::AcqRel) {
            return Err(Error::Programming(format!(
                "savepoint {} was already released or rolled back",
                self.name
            ))
            .into());
        }
        let tx = self.tx.get();
        if rollback {
            tx.control(py, &format!("ROLLBACK TO {}", self.name))?;
        }
        tx.control(py, &format!("RELEASE {}", self.name))?;
        Ok(())
    }
}

#[pymethods]
impl Savepoint {
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Keep the savepoint's changes (they commit with the transaction).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.end(py, false)
    }

    /// Undo everything since the savepoint was opened.
    fn rollback(&self, py: Python<'_>) -> PyResult<()> {
        self.end(py, true)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        if self.done.load(Ordering::Acquire) {
            return Ok(());
        }
        self.end(py, exc_type.is_some())
    }
}
