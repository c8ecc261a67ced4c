//! `RowIterator`: rows of a read-only query, streamed in batches.
//!
//! The iterator keeps one reader connection and one live statement for as
//! long as rows remain, so a result set is never materialised whole. That
//! needs a connection, a statement borrowing it and a row cursor borrowing
//! the statement to live in one struct: [`Live`] keeps them behind raw
//! pointers and its `Drop` tears them down in the only safe order (cursor,
//! statement, connection), then returns the connection to the pool. A
//! statement on a [`Snapshot`]'s connection borrows it instead, holding the
//! snapshot, and steps and drops under the snapshot's lock.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyString;
use rusqlite::types::Value;
use rusqlite::{CachedStatement, Connection, Rows, Statement};

use crate::convert::Params;
use crate::database::{column_keys, row_dict, row_tuple, Core};
use crate::detach::detached;
use crate::errors::{Error, Result};
use crate::exec;
use crate::snapshot::Snapshot;

pub(crate) struct Live {
    core: Arc<Core>,
    /// Column names, read at the first row (see `fill`) and then handed to
    /// the iterator; `ncols` stays. Left `None` when they equal the names
    /// the caller already knew (`fill`'s `known`).
    pub(crate) columns: Option<Vec<String>>,
    ncols: Option<usize>,
    /// Borrows `*stmt`. Always `Some` until drop.
    rows: Option<Rows<'static>>,
    /// Borrows `*conn`. Owned; freed in `Drop`.
    stmt: *mut CachedStatement<'static>,
    /// A pooled reader, owned and returned to the pool in `Drop`; or, with
    /// `snapshot`, the snapshot's connection, borrowed.
    conn: *mut Connection,
    /// The snapshot `conn` belongs to: kept alive, and locked around every
    /// use of the statement.
    snapshot: Option<Arc<Snapshot>>,
}

// SAFETY: a pooled `Live` owns its connection outright (it was taken out of
// the pool), and one on a snapshot uses the snapshot's connection only under
// the snapshot's lock. Either is only ever used behind `RowIterator`'s mutex
// (or by the one call that owns it), so no two threads touch the connection,
// statement or cursor at once. rusqlite's `Connection` is itself `Send`; the
// statement and cursor are `!Send` only because they borrow it.
unsafe impl Send for Live {}

impl Live {
    /// Prepare and bind on a reader.
    pub(crate) fn start(core: Arc<Core>, sql: &str, params: &Params) -> Result<Live> {
        let conn = Box::into_raw(Box::new(core.acquire_reader()?));
        let release = |core: &Core| {
            // SAFETY: nothing borrows `conn` any more on this path.
            let conn = unsafe { Box::from_raw(conn) };
            core.release_reader(*conn);
        };
        match Self::prepared(core, conn, None, sql, params) {
            Ok(live) => Ok(live),
            Err((core, e)) => {
                release(&core);
                Err(e)
            }
        }
    }

    /// Prepare and bind on `snapshot`'s connection.
    pub(crate) fn start_in(snapshot: Arc<Snapshot>, sql: &str, params: &Params) -> Result<Live> {
        let guard = snapshot.enter()?;
        let conn = std::ptr::from_ref(snapshot.conn()).cast_mut();
        let core = snapshot.core.clone();
        let live = Self::prepared(core, conn, Some(snapshot.clone()), sql, params);
        drop(guard);
        live.map_err(|(_, e)| e)
    }

    /// The statement on `conn`, checked read-only and bound, with its
    /// cursor; on an error, the core back (the connection is the
    /// caller's to give back).
    fn prepared(
        core: Arc<Core>,
        conn: *mut Connection,
        snapshot: Option<Arc<Snapshot>>,
        sql: &str,
        params: &Params,
    ) -> std::result::Result<Live, (Arc<Core>, Error)> {
        // SAFETY: `conn` stays allocated until `Drop` (a pooled one is
        // freed there, a snapshot's lives as long as `snapshot`), after the
        // statement and cursor that borrow it are gone.
        let conn_ref: &'static Connection = unsafe { &*conn };
        let prepared = exec::prepare(conn_ref, &core.stats, sql).and_then(|mut stmt| {
            if !stmt.readonly() {
                return Err(Error::WritingStatement);
            }
            exec::bind(&mut stmt, params)?;
            Ok(stmt)
        });
        let stmt = match prepared {
            Ok(stmt) => stmt,
            Err(e) => return Err((core, e)),
        };
        let stmt = Box::into_raw(Box::new(stmt));
        // SAFETY: `stmt` stays allocated until `Drop`, after the cursor.
        let rows = unsafe { (*stmt).raw_query() };
        Ok(Live {
            core,
            columns: None,
            ncols: None,
            rows: Some(rows),
            stmt,
            conn,
            snapshot,
        })
    }

    /// Read up to `n` rows into `out`. Returns true once the rows are done.
    ///
    /// The columns are taken at the first row, after SQLite's first step:
    /// a cached statement compiled before a schema change is compiled again
    /// by that step and may have other columns (`SELECT *` after
    /// `ALTER TABLE ... ADD`). With no rows at all they are read once the
    /// statement is done, which it then is. Names equal to `known` (those
    /// the caller saw last time) are not copied: `columns` stays `None`.
    pub(crate) fn fill(
        &mut self,
        n: usize,
        known: Option<&[String]>,
        out: &mut Vec<Value>,
    ) -> Result<bool> {
        let _guard = self.snapshot.as_ref().map(|s| s.lock());
        let rows = self.rows.as_mut().expect("cursor lives until drop");
        for _ in 0..n {
            match rows.next().map_err(Error::run)? {
                Some(row) => {
                    let ncols = match self.ncols {
                        Some(n) => n,
                        None => Self::note_columns(
                            &mut self.ncols,
                            &mut self.columns,
                            known,
                            row.as_ref(),
                        ),
                    };
                    exec::read_row(row, ncols, out)?
                }
                None => {
                    if self.ncols.is_none() {
                        // SAFETY: the finished cursor no longer borrows the
                        // statement (rusqlite resets and releases it when
                        // stepping reports the end), and the statement
                        // lives until `Drop`.
                        let stmt = unsafe { &*self.stmt };
                        Self::note_columns(&mut self.ncols, &mut self.columns, known, stmt);
                    }
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Record the statement's columns (count, and names unless they equal
    /// `known`); returns the count. Takes the fields rather than `self`: the
    /// caller holds a row that borrows the cursor.
    fn note_columns(
        ncols: &mut Option<usize>,
        columns: &mut Option<Vec<String>>,
        known: Option<&[String]>,
        stmt: &Statement<'_>,
    ) -> usize {
        let n = stmt.column_count();
        *ncols = Some(n);
        let same = known.is_some_and(|names| {
            names.len() == n
                && names
                    .iter()
                    .enumerate()
                    .all(|(i, name)| stmt.column_name(i).is_ok_and(|c| c == name))
        });
        if !same {
            *columns = Some(stmt.column_names().into_iter().map(String::from).collect());
        }
        n
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let snapshot = self.snapshot.take();
        let guard = snapshot.as_ref().map(|s| s.lock_from_anywhere());
        drop(self.rows.take());
        // SAFETY: `stmt` came from `Box::into_raw` in `prepared` and is
        // freed exactly once, here, before the connection it borrows.
        unsafe { drop(Box::from_raw(self.stmt)) };
        drop(guard);
        if snapshot.is_none() {
            // SAFETY: a pooled connection came from `Box::into_raw` in
            // `start` and is freed exactly once, here.
            let conn = unsafe { Box::from_raw(self.conn) };
            self.core.release_reader(*conn);
        }
        // Dropping `snapshot` last may end its transaction.
    }
}

/// Iterator over the rows of `Database.iterate()`. Holds one reader until
/// exhausted or closed; use it in a `with` block or call `close()` when
/// stopping early.
#[pyclass(frozen, module = "alkdev_storage._native", name = "RowIterator")]
pub struct RowIterator {
    live: Mutex<Option<Live>>,
    columns: Vec<String>,
    keys: Vec<Py<PyString>>,
    as_dict: bool,
    batch_size: usize,
    buffer: Mutex<VecDeque<Py<PyAny>>>,
}

impl RowIterator {
    /// Prepare, bind and read the first batch in one call without the GIL.
    /// A result that fits in the batch is complete when this returns: its
    /// reader is already back in the pool (`exhausted`), and an error while
    /// stepping surfaces here rather than at the first `next()`.
    pub fn start(
        py: Python<'_>,
        core: Arc<Core>,
        sql: &str,
        params: Params,
        as_dict: bool,
        batch_size: usize,
    ) -> PyResult<Self> {
        if batch_size == 0 {
            return Err(Error::Programming("batch_size must be at least 1".into()).into());
        }
        let (live, columns, first) = detached(py, || -> Result<_> {
            let mut live = Live::start(core, sql, &params)?;
            let mut values = Vec::new();
            // On an error `live` drops here, giving its reader back.
            let done = live.fill(batch_size, None, &mut values)?;
            // `fill` read at least one row, or reached the end: either way
            // the columns are known.
            let columns = live.columns.take().unwrap_or_default();
            Ok(((!done).then_some(live), columns, values))
        })?;
        let keys = if as_dict {
            column_keys(py, &columns)
                .into_iter()
                .map(Bound::unbind)
                .collect()
        } else {
            Vec::new()
        };
        let iterator = RowIterator {
            live: Mutex::new(live),
            columns,
            keys,
            as_dict,
            batch_size,
            buffer: Mutex::new(VecDeque::new()),
        };
        iterator.push_rows(py, &first)?;
        Ok(iterator)
    }

    /// A tuple-row iterator over a result whose first rows the caller has
    /// already read (and converted) from `live`: the DB-API cursor's stream.
    pub(crate) fn streaming(
        live: Live,
        columns: Vec<String>,
        batch_size: usize,
        first: VecDeque<Py<PyAny>>,
    ) -> Self {
        RowIterator {
            live: Mutex::new(Some(live)),
            columns,
            keys: Vec::new(),
            as_dict: false,
            batch_size,
            buffer: Mutex::new(first),
        }
    }

    /// The next row, reading another batch when the buffer is empty; `None`
    /// at the end (the reader is back in the pool by then).
    pub(crate) fn next_row(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if let Some(row) = self.buffer.lock().pop_front() {
            return Ok(Some(row));
        }
        self.refill(py)?;
        Ok(self.buffer.lock().pop_front())
    }

    /// Drop the unread rows and give the reader back. Idempotent.
    pub(crate) fn stop(&self, py: Python<'_>) {
        detached(py, || drop(self.live.lock().take()));
        // Taken out before the rows drop: a row's release may run Python.
        let rows = std::mem::take(&mut *self.buffer.lock());
        drop(rows);
    }

    fn refill(&self, py: Python<'_>) -> PyResult<()> {
        let ncols = self.columns.len();
        let batch = self.batch_size;
        let values = detached(py, || -> Result<Vec<Value>> {
            let mut live = self.live.lock();
            let Some(cursor) = live.as_mut() else {
                return Ok(Vec::new());
            };
            let mut out = Vec::with_capacity(batch * ncols);
            match cursor.fill(batch, None, &mut out) {
                Ok(false) => {}
                Ok(true) => *live = None,
                Err(e) => {
                    *live = None;
                    return Err(e);
                }
            }
            Ok(out)
        })?;
        self.push_rows(py, &values)
    }

    /// Turn the values of whole rows into tuples (or dicts) at the end of
    /// the buffer.
    fn push_rows(&self, py: Python<'_>, values: &[Value]) -> PyResult<()> {
        let ncols = self.columns.len();
        if ncols == 0 {
            return Ok(());
        }
        let keys: Vec<Bound<'_, PyString>> = self.keys.iter().map(|k| k.bind(py).clone()).collect();
        let mut buffer = self.buffer.lock();
        for row in values.chunks_exact(ncols) {
            let obj = if self.as_dict {
                row_dict(py, &keys, row)?
            } else {
                row_tuple(py, row)?
            };
            buffer.push_back(obj.unbind());
        }
        Ok(())
    }
}

#[pymethods]
impl RowIterator {
    /// Column names of the result.
    #[getter]
    fn columns(&self) -> Vec<String> {
        self.columns.clone()
    }

    /// True once every row has been read from SQLite and the reader is back
    /// in the pool (rows may still wait in the iterator's buffer).
    #[getter]
    fn exhausted(&self) -> bool {
        self.live.lock().is_none()
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.next_row(py)
    }

    /// Stop early and give the reader back. Idempotent.
    fn close(&self, py: Python<'_>) {
        self.stop(py);
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) {
        self.close(py);
    }
}
