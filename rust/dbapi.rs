//! The native half of `alkdev_storage.dbapi`.
//!
//! `CursorBase` keeps a cursor's result (rows, `description`, `rowcount`,
//! `lastrowid`) and does the fetching, and its `execute` runs the statements
//! an ORM sends most in one native call each: a known statement with plain
//! parameters, either a read outside a transaction (on a pooled reader:
//! prepare, bind, step and convert the first batch of rows), any statement
//! inside the connection's transaction, or in autocommit mode a write (on
//! the writer, as its own transaction). The Python subclass (`dbapi.Cursor`)
//! takes everything else (`_execute`): first runs, dates and times,
//! BEGIN/COMMIT/ROLLBACK in SQL, the write that opens the transaction.
//!
//! `ShapeBase` and `ConnectionBase` hold the facts `execute` reads on every
//! statement (what a SQL text is allowed to do; the connection's database
//! and transaction) as fields, so that reading them is not an attribute
//! lookup. `Columns` is the per-statement cache of result columns: the names
//! a statement had the last time it ran and the `description` tuple built
//! from them; a rerun whose columns are the same (the usual case: they change
//! only with the schema) copies no name and builds no tuple.
//!
//! Like `sqlite3`'s, a cursor is not for sharing between threads (the
//! module's `threadsafety` is 1); a second thread using one while the first
//! is inside a call gets a `RuntimeError` rather than a corrupted result.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::gc::PyTraverseError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use pyo3::PyVisit;
use rusqlite::types::Value;

use crate::convert::{plain_params, to_params, Params};
use crate::cursor::{Live, RowIterator};
use crate::database::{row_tuples, Core, Database};
use crate::detach::detached;
use crate::errors::Error;
use crate::exec::{Fetched, Outcome};
use crate::snapshot::Snapshot;
use crate::transaction::Transaction;

/// `dbapi`'s module state that the native classes read: the statement
/// shapes by SQL text, the streams threads hold open (see
/// `dbapi._live_streams`), and the class `ConnectionBase.cursor` makes.
struct Hooks {
    shapes: Py<PyDict>,
    live_streams: Py<PyDict>,
    cursor_class: Py<PyAny>,
}

static HOOKS: Mutex<Option<Hooks>> = Mutex::new(None);

/// Called by `alkdev_storage.dbapi` when it is imported (again, on a
/// reload): the dicts `CursorBase.execute` consults, and `dbapi.Cursor`.
#[pyfunction]
pub fn _dbapi_hooks(shapes: Py<PyDict>, live_streams: Py<PyDict>, cursor_class: Py<PyAny>) {
    *HOOKS.lock() = Some(Hooks {
        shapes,
        live_streams,
        cursor_class,
    });
}

/// PEP 249's error for using a closed connection.
fn closed_connection() -> PyErr {
    Error::Programming("the connection is closed".into()).into()
}

/// Whether `dbapi._live_streams` has an entry for this thread on `db`: its
/// key is ``(id(db), threading.get_ident())``.
fn holds_stream(
    py: Python<'_>,
    live_streams: &Py<PyDict>,
    db: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let live_streams = live_streams.bind(py);
    if live_streams.is_empty() {
        return Ok(false);
    }
    // SAFETY: a plain query of the calling thread's identifier.
    let thread = unsafe { pyo3::ffi::PyThread_get_thread_ident() };
    live_streams.contains((db.as_ptr() as usize, thread))
}

/// Rows read per trip to SQLite; a result this short comes back whole from
/// `_read`, with its reader already returned to the pool.
const BATCH: usize = 256;

/// The result columns of one statement, as `dbapi` last saw them run.
#[pyclass(frozen, module = "alkdev_storage._native", name = "Columns")]
pub struct Columns {
    names: Vec<String>,
    /// PEP 249's `description`: one 7-tuple per column, or None for none.
    description: Py<PyAny>,
}

impl Columns {
    fn build(py: Python<'_>, names: Vec<String>) -> PyResult<Self> {
        let description = if names.is_empty() {
            py.None()
        } else {
            let none = py.None().into_bound(py);
            let items = names
                .iter()
                .map(|name| {
                    let mut item = vec![PyString::new(py, name).into_any()];
                    item.extend(std::iter::repeat_n(none.clone(), 6));
                    PyTuple::new(py, item)
                })
                .collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(py, items)?.into_any().unbind()
        };
        Ok(Columns { names, description })
    }
}

#[pymethods]
impl Columns {
    #[new]
    fn new(py: Python<'_>, names: Vec<String>) -> PyResult<Self> {
        Columns::build(py, names)
    }

    /// The column names.
    #[getter]
    fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// The PEP 249 `description` for these columns (None for no columns).
    #[getter]
    fn description(&self, py: Python<'_>) -> Py<PyAny> {
        self.description.clone_ref(py)
    }
}

/// Base of `dbapi._Shape`: the facts about one SQL text that `execute`
/// reads natively (the subclass adds the rest).
#[pyclass(subclass, module = "alkdev_storage._native", name = "ShapeBase")]
pub struct ShapeBase {
    /// May run on a reader while no transaction is open (cleared once
    /// SQLite finds that the statement writes).
    #[pyo3(get, set)]
    reader: bool,
    /// Not BEGIN/COMMIT/END/ROLLBACK: may run in the connection's
    /// transaction as it is.
    #[pyo3(get, set)]
    plain: bool,
    /// SAVEPOINT, RELEASE or ROLLBACK TO: needs a transaction.
    #[pyo3(get, set)]
    savepoint: bool,
    /// The result columns the statement ran with last time.
    #[pyo3(get, set)]
    columns: Option<Py<Columns>>,
}

#[pymethods]
impl ShapeBase {
    #[new]
    #[pyo3(signature = (*_args))]
    fn new(_args: &Bound<'_, PyTuple>) -> Self {
        ShapeBase {
            reader: false,
            plain: false,
            savepoint: false,
            columns: None,
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(columns) = &self.columns {
            visit.call(columns)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.columns = None;
    }
}

/// Base of `dbapi.Connection`: the state the native cursor reads.
#[pyclass(subclass, module = "alkdev_storage._native", name = "ConnectionBase")]
pub struct ConnectionBase {
    /// The `alk.Database`; None once the connection is closed.
    #[pyo3(get, set)]
    _database: Option<Py<PyAny>>,
    /// The native transaction the connection opened, if any (it may have
    /// ended on the native object since).
    #[pyo3(get, set)]
    _tx: Option<Py<PyAny>>,
    /// Every statement is its own transaction (until BEGIN in SQL).
    #[pyo3(get, set)]
    _autocommit: bool,
    /// Reads before a transaction's first write share one snapshot.
    #[pyo3(get, set)]
    _snapshot_reads: bool,
    /// ``PRAGMA foreign_keys`` as this connection last set it (pysqlite's
    /// scope: the connection). Its transactions begin with that setting.
    #[pyo3(get, set)]
    _foreign_keys: bool,
    /// The snapshot those reads share, once one has run.
    snapshot: Option<Arc<Snapshot>>,
}

#[pymethods]
impl ConnectionBase {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        ConnectionBase {
            _database: None,
            _tx: None,
            _autocommit: false,
            _snapshot_reads: false,
            _foreign_keys: true,
            snapshot: None,
        }
    }

    /// A new cursor on this connection.
    fn cursor<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        if slf.try_borrow()?._database.is_none() {
            return Err(closed_connection());
        }
        let class = HOOKS.lock().as_ref().map(|h| h.cursor_class.clone_ref(py));
        let class = class.ok_or_else(|| {
            Error::Programming("cursor() needs alkdev_storage.dbapi imported".into())
        })?;
        class.bind(py).call1((slf,))
    }

    /// Commit the open transaction (nothing to do when none is open).
    fn commit(&mut self, py: Python<'_>) -> PyResult<()> {
        self.end(py, true)
    }

    /// Roll the open transaction back (nothing to do when none is open).
    fn rollback(&mut self, py: Python<'_>) -> PyResult<()> {
        self.end(py, false)
    }

    /// True when a read now runs on the connection's snapshot (see
    /// `reads_on_snapshot`), so it takes no pooled reader.
    #[getter]
    fn _reads_on_snapshot(&self) -> bool {
        self.reads_on_snapshot()
    }

    /// True while the connection holds a read snapshot.
    #[getter]
    fn _in_snapshot(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Let go of the read snapshot, if any: its transaction ends once no
    /// result streams from it any more. Called at commit, rollback, close
    /// and before the first write.
    fn _end_snapshot(&mut self, py: Python<'_>) {
        if let Some(snapshot) = self.snapshot.take() {
            detached(py, || drop(snapshot));
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(db) = &self._database {
            visit.call(db)?;
        }
        if let Some(tx) = &self._tx {
            visit.call(tx)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self._database = None;
        self._tx = None;
    }
}

impl ConnectionBase {
    /// Whether a read runs on the connection's snapshot (beginning it if
    /// need be) rather than on a pooled reader: snapshot reads on, out of
    /// autocommit mode, and no write transaction open.
    fn reads_on_snapshot(&self) -> bool {
        self._snapshot_reads && !self._autocommit && self._tx.is_none()
    }

    /// `commit` or `rollback`: let go of the read snapshot, then end the
    /// transaction, if one is open (it may have ended on the native object
    /// already). The connection forgets the transaction first, so it is
    /// over even when ending it fails.
    fn end(&mut self, py: Python<'_>, commit: bool) -> PyResult<()> {
        if self._database.is_none() {
            return Err(closed_connection());
        }
        self._end_snapshot(py);
        let Some(tx) = self._tx.take() else {
            return Ok(());
        };
        let tx = tx.bind(py).cast::<Transaction>()?.get();
        if tx.active() {
            tx.finish(py, commit)?;
        }
        Ok(())
    }
}

/// The statement's cached columns, if it has any.
fn cached<'py>(shape: &Bound<'py, ShapeBase>) -> PyResult<Option<Bound<'py, Columns>>> {
    let columns = shape
        .try_borrow()?
        .columns
        .as_ref()
        .map(|c| c.bind(shape.py()).clone());
    Ok(columns)
}

/// The `description` for a statement that ran with `fresh` names (`None`:
/// the same as `known`), updating the statement's cache when they changed.
fn describe(
    py: Python<'_>,
    shape: &Bound<'_, ShapeBase>,
    known: Option<&Bound<'_, Columns>>,
    fresh: Option<Vec<String>>,
) -> PyResult<(Py<PyAny>, usize)> {
    match (fresh, known) {
        (None, Some(known)) => {
            let known = known.get();
            Ok((known.description.clone_ref(py), known.names.len()))
        }
        (fresh, _) => {
            let columns = Columns::build(py, fresh.unwrap_or_default())?;
            let out = (columns.description.clone_ref(py), columns.names.len());
            shape.try_borrow_mut()?.columns = Some(Py::new(py, columns)?);
            Ok(out)
        }
    }
}

/// An open connection's state, as `execute` reads it.
struct Open<'py> {
    conn: Bound<'py, ConnectionBase>,
    /// ``_database``.
    db: Bound<'py, PyAny>,
    /// ``_tx``: the transaction the connection opened (it may have ended on
    /// the native object since).
    tx: Option<Bound<'py, PyAny>>,
    /// ``_autocommit``.
    autocommit: bool,
    /// ``_foreign_keys``.
    foreign_keys: bool,
    /// `ConnectionBase::reads_on_snapshot`.
    on_snapshot: bool,
    /// The snapshot the connection holds, when reads run on it.
    snapshot: Option<Arc<Snapshot>>,
}

impl Open<'_> {
    /// Where a read runs while no transaction is open.
    fn source(&self, db: &Bound<'_, Database>) -> Source {
        let core = || db.get().core.clone();
        match (&self.snapshot, self.on_snapshot) {
            (_, false) => Source::Pool(core()),
            (Some(snapshot), true) => Source::Snapshot(snapshot.clone()),
            (None, true) => Source::Begin(core()),
        }
    }
}

/// Where a read outside a write transaction runs.
enum Source {
    /// A reader from the pool, for this statement alone.
    Pool(Arc<Core>),
    /// The connection's snapshot.
    Snapshot(Arc<Snapshot>),
    /// A new snapshot, which the read begins and the connection keeps.
    Begin(Arc<Core>),
}

enum Rows {
    None,
    /// Read whole: what is left of them.
    Buffered(std::vec::IntoIter<Py<PyAny>>),
    /// Still on a reader: the rest comes batch by batch.
    Stream(Py<RowIterator>),
}

/// Base of `alkdev_storage.dbapi.Cursor`: its result and the fetch methods.
#[pyclass(
    subclass,
    weakref,
    module = "alkdev_storage._native",
    name = "CursorBase"
)]
pub struct CursorBase {
    /// The `dbapi.Connection`; `None` once the cursor is closed.
    connection: Option<Py<ConnectionBase>>,
    rows: Rows,
    description: Option<Py<PyAny>>,
    rowcount: i64,
    lastrowid: Option<i64>,
    arraysize: i64,
}

impl CursorBase {
    /// The open connection, or the `ProgrammingError` PEP 249 asks for.
    fn open_connection<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, ConnectionBase>> {
        self.open_state(py).map(|open| open.conn)
    }

    /// The open connection and what `execute` needs of it.
    fn open_state<'py>(&self, py: Python<'py>) -> PyResult<Open<'py>> {
        let Some(conn) = &self.connection else {
            return Err(Error::Programming("the cursor is closed".into()).into());
        };
        let conn = conn.bind(py);
        let state = conn.try_borrow()?;
        let Some(db) = state._database.as_ref().map(|db| db.bind(py).clone()) else {
            return Err(Error::Programming("the cursor's connection is closed".into()).into());
        };
        let tx = state._tx.as_ref().map(|tx| tx.bind(py).clone());
        let autocommit = state._autocommit;
        let foreign_keys = state._foreign_keys;
        let on_snapshot = state.reads_on_snapshot();
        let snapshot = state.snapshot.clone().filter(|_| on_snapshot);
        drop(state);
        Ok(Open {
            conn: conn.clone(),
            db,
            tx,
            autocommit,
            foreign_keys,
            on_snapshot,
            snapshot,
        })
    }

    /// Forget the rows (giving a stream's reader back) and `description`.
    fn drop_rows(&mut self, py: Python<'_>) {
        self.description = None;
        if let Rows::Stream(stream) = std::mem::replace(&mut self.rows, Rows::None) {
            stream.get().stop(py);
        }
    }

    fn next_row(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match &mut self.rows {
            Rows::None => Ok(None),
            Rows::Buffered(rows) => Ok(rows.next()),
            Rows::Stream(stream) => {
                let row = stream.get().next_row(py)?;
                if row.is_none() {
                    // Exhausted: the reader is back already; drop the stream.
                    self.rows = Rows::None;
                }
                Ok(row)
            }
        }
    }

    /// `execute`'s direct path; false when the statement must take the
    /// subclass's `_execute` (nothing has run then, and the cursor's
    /// previous result is gone either way).
    fn run_directly(
        slf: &Bound<'_, Self>,
        operation: &Bound<'_, PyString>,
        parameters: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let py = slf.py();
        // One borrow of each object for the whole call: a borrow is an
        // atomic compare-and-swap, and this is every statement's path.
        // A cursor is one thread's: a second thread calling in while the
        // first is inside (its GIL released) gets RuntimeError here.
        let mut this = slf.try_borrow_mut()?;
        let open = this.open_state(py)?;
        this._release(py);
        // Copied out: the lock is not held while Python code may run.
        let hooks = HOOKS
            .lock()
            .as_ref()
            .map(|h| (h.shapes.clone_ref(py), h.live_streams.clone_ref(py)));
        let Some((shapes, live_streams)) = hooks else {
            return Ok(false);
        };
        let Some(shape) = shapes.bind(py).get_item(operation)? else {
            return Ok(false);
        };
        let Ok(shape) = shape.cast_into::<ShapeBase>() else {
            return Ok(false);
        };
        let (plain, reader, savepoint, known) = {
            let s = shape.try_borrow()?;
            let known = s.columns.as_ref().map(|c| c.bind(py).clone());
            (s.plain, s.reader, s.savepoint, known)
        };
        // Dates, times and other values to adapt: the general path.
        let Some(params) = plain_params(parameters)? else {
            return Ok(false);
        };
        let sql = operation.to_str()?;
        if let Some(tx) = &open.tx {
            // In the connection's transaction: any statement but BEGIN,
            // COMMIT, END and ROLLBACK (which the connection runs itself).
            let Ok(tx) = tx.cast::<Transaction>() else {
                return Ok(false);
            };
            if !plain || !tx.get().active() {
                return Ok(false);
            }
            let (fetched, outcome) = tx.get().run(py, sql, &params)?;
            this.record(py, fetched, outcome, &shape, known)?;
            return Ok(true);
        }
        let db = open.db.cast::<Database>()?;
        if !reader {
            // A write with no transaction open: in autocommit mode it is
            // its own transaction on the writer; otherwise (or with foreign
            // keys off on this connection) the general path opens the
            // connection's transaction first.
            if !open.autocommit || !plain || savepoint || !open.foreign_keys {
                return Ok(false);
            }
            let (fetched, outcome) = db.get().core.run_alone(py, sql, &params)?;
            this.record(py, fetched, outcome, &shape, known)?;
            return Ok(true);
        }
        // A statement known to read goes to the connection's snapshot, or
        // to a pooled reader unless the thread has another stream open on
        // this database (the general path settles it first).
        let source = open.source(db);
        if matches!(source, Source::Pool(_)) && holds_stream(py, &live_streams, db.as_any())? {
            return Ok(false);
        }
        match this.read(py, &open.conn, source, sql, params, &shape, known)? {
            Some(false) => Ok(true),
            Some(true) => {
                // A long result holds its reader: dbapi tracks the stream.
                drop(this);
                slf.call_method1(intern!(py, "_track_stream"), (db,))?;
                Ok(true)
            }
            None => {
                // It writes after all (sqlite3_stmt_readonly): the general
                // path takes it, now and from now on.
                shape.try_borrow_mut()?.reader = false;
                Ok(false)
            }
        }
    }

    /// Record a statement's rows (with their `description`) or its counts.
    /// For `INSERT`/`UPDATE`/`DELETE`/`REPLACE ... RETURNING`, `rowcount` is
    /// the number of rows returned and, for an insert that returned rows,
    /// `lastrowid` is set.
    fn record(
        &mut self,
        py: Python<'_>,
        fetched: Option<Fetched>,
        outcome: Outcome,
        shape: &Bound<'_, ShapeBase>,
        known: Option<Bound<'_, Columns>>,
    ) -> PyResult<()> {
        let Some(mut fetched) = fetched else {
            self.rowcount = outcome.rowcount;
            self.lastrowid = outcome.lastrowid;
            return Ok(());
        };
        let columns = std::mem::take(&mut fetched.columns);
        let fresh = match &known {
            Some(k) if k.get().names == columns => None,
            _ => Some(columns),
        };
        let (description, _) = describe(py, shape, known.as_ref(), fresh)?;
        let rows = row_tuples(py, fetched.rows())?;
        let first = shape.getattr(intern!(py, "first"))?;
        let first = first.cast::<PyString>()?.to_str()?;
        if matches!(first, "INSERT" | "REPLACE" | "UPDATE" | "DELETE") {
            self.rowcount = i64::try_from(rows.len()).unwrap_or(i64::MAX);
            if matches!(first, "INSERT" | "REPLACE") && !rows.is_empty() {
                self.lastrowid = outcome.lastrowid;
            }
        }
        self.description = Some(description);
        self.rows = Rows::Buffered(rows.into_iter());
        Ok(())
    }

    /// The reader path of `_read` and `execute`, on `source`; `None`
    /// (before anything ran) for a statement that writes, else whether the
    /// result streams from a pooled reader (which it then holds).
    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        py: Python<'_>,
        conn: &Bound<'_, ConnectionBase>,
        source: Source,
        sql: &str,
        params: Params,
        shape: &Bound<'_, ShapeBase>,
        known: Option<Bound<'_, Columns>>,
    ) -> PyResult<Option<bool>> {
        let known_names = known.as_ref().map(|k| k.get().names.as_slice());
        let pooled = matches!(source, Source::Pool(_));
        let (begun, read) = detached(py, || {
            let (begun, live) = match source {
                Source::Pool(core) => (None, Live::start(core, sql, &params)),
                Source::Snapshot(snapshot) => (None, Live::start_in(snapshot, sql, &params)),
                Source::Begin(core) => match Snapshot::begin(core) {
                    Ok(snapshot) => (
                        Some(snapshot.clone()),
                        Live::start_in(snapshot, sql, &params),
                    ),
                    Err(e) => (None, Err(e)),
                },
            };
            let read = live.and_then(|mut live| {
                // Room for one row: a point read (the common case) never
                // grows it.
                let mut values: Vec<Value> = Vec::with_capacity(known_names.map_or(0, <[_]>::len));
                // On an error `live` drops here, giving its reader back.
                let done = live.fill(BATCH, known_names, &mut values)?;
                let fresh = live.columns.take();
                Ok(((!done).then_some(live), fresh, values))
            });
            (begun, read)
        });
        if let Some(snapshot) = begun {
            // Kept even when the read failed: the transaction's reads
            // share it from now on.
            conn.try_borrow_mut()?.snapshot = Some(snapshot);
        }
        let (live, fresh, values) = match read {
            Ok(read) => read,
            Err(Error::WritingStatement) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (description, ncols) = describe(py, shape, known.as_ref(), fresh)?;
        self.drop_rows(py);
        self.description = Some(description);
        let rows = row_tuples(py, values.chunks_exact(ncols.max(1)))?;
        let Some(live) = live else {
            self.rows = Rows::Buffered(rows.into_iter());
            return Ok(Some(false));
        };
        let names = cached(shape)?
            .map(|c| c.get().names.clone())
            .unwrap_or_default();
        let stream = RowIterator::streaming(live, names, BATCH, VecDeque::from(rows));
        self.rows = Rows::Stream(Py::new(py, stream)?);
        Ok(Some(pooled))
    }

    fn rest(&mut self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        match std::mem::replace(&mut self.rows, Rows::None) {
            Rows::None => Ok(Vec::new()),
            Rows::Buffered(rows) => Ok(rows.collect()),
            Rows::Stream(stream) => {
                let stream = stream.get();
                let mut out = Vec::new();
                let read = std::iter::from_fn(|| stream.next_row(py).transpose())
                    .try_for_each(|row| row.map(|row| out.push(row)));
                stream.stop(py);
                read.map(|()| out)
            }
        }
    }
}

#[pymethods]
impl CursorBase {
    /// The references a cycle could run through (a connection that keeps
    /// its last cursor, say), so that the cycle collector sees them.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(conn) = &self.connection {
            visit.call(conn)?;
        }
        if let Some(description) = &self.description {
            visit.call(description)?;
        }
        match &self.rows {
            Rows::None => {}
            Rows::Buffered(rows) => {
                for row in rows.as_slice() {
                    visit.call(row)?;
                }
            }
            Rows::Stream(stream) => visit.call(stream)?,
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.connection = None;
        self.description = None;
        // A stream dropped here gives its reader back through
        // `RowIterator`'s own drop.
        self.rows = Rows::None;
    }

    #[new]
    fn new(connection: Py<ConnectionBase>) -> Self {
        CursorBase {
            connection: Some(connection),
            rows: Rows::None,
            description: None,
            rowcount: -1,
            lastrowid: None,
            arraysize: 1,
        }
    }

    /// The connection this cursor belongs to.
    #[getter]
    fn connection(&self, py: Python<'_>) -> PyResult<Py<ConnectionBase>> {
        match &self.connection {
            Some(conn) => Ok(conn.clone_ref(py)),
            None => Err(Error::Programming("the cursor is closed".into()).into()),
        }
    }

    /// The connection, or None once the cursor is closed.
    #[getter]
    fn _connection(&self, py: Python<'_>) -> Option<Py<ConnectionBase>> {
        self.connection.as_ref().map(|c| c.clone_ref(py))
    }

    /// The connection, after checking that the cursor and the connection
    /// are open (`ProgrammingError` otherwise).
    fn _conn<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, ConnectionBase>> {
        self.open_connection(py)
    }

    /// One ``(name, None, None, None, None, None, None)`` per result column
    /// of the last statement; None when it returns no rows.
    #[getter]
    fn description(&self, py: Python<'_>) -> Py<PyAny> {
        match &self.description {
            Some(d) => d.clone_ref(py),
            None => py.None(),
        }
    }

    /// Rows changed by the last INSERT/UPDATE/DELETE/REPLACE (summed over
    /// `executemany`); -1 for other statements, SELECT included.
    #[getter]
    fn rowcount(&self) -> i64 {
        self.rowcount
    }

    /// The rowid of the row the last INSERT/REPLACE added; None after other
    /// statements or an insert that added nothing.
    #[getter]
    fn lastrowid(&self) -> Option<i64> {
        self.lastrowid
    }

    /// How many rows `fetchmany()` returns by default (1).
    #[getter]
    fn arraysize(&self) -> i64 {
        self.arraysize
    }

    #[setter]
    fn set_arraysize(&mut self, value: i64) {
        self.arraysize = value;
    }

    /// True while the result streams from a reader it holds.
    #[getter]
    fn _streaming(&self) -> bool {
        matches!(self.rows, Rows::Stream(_))
    }

    /// Forget the current result: its rows and its counts.
    fn _release(&mut self, py: Python<'_>) {
        self.drop_rows(py);
        self.rowcount = -1;
        self.lastrowid = None;
    }

    /// Record the counts of a statement without rows.
    fn _set_counts(&mut self, rowcount: i64, lastrowid: Option<i64>) {
        self.rowcount = rowcount;
        self.lastrowid = lastrowid;
    }

    /// Run a read-only statement while no transaction is open: on the
    /// connection's snapshot (with ``snapshot_reads``, out of autocommit
    /// mode; the first such read begins it), else on a pooled reader.
    /// Prepare, bind, step and convert the first batch of rows in one call.
    /// A result that fits in the batch is read whole (a pooled reader is
    /// then already back in the pool); a longer one streams. True when it
    /// streams from a pooled reader, which it holds until it is read or
    /// dropped. `WritingStatementError` (before anything runs) for a
    /// statement that writes. `shape` caches the statement's `Columns`.
    fn _read(
        &mut self,
        py: Python<'_>,
        sql: &str,
        params: Option<&Bound<'_, PyAny>>,
        shape: &Bound<'_, ShapeBase>,
    ) -> PyResult<bool> {
        let open = self.open_state(py)?;
        let source = open.source(open.db.cast::<Database>()?);
        let (params, known) = (to_params(params)?, cached(shape)?);
        match self.read(py, &open.conn, source, sql, params, shape, known)? {
            Some(streams) => Ok(streams),
            None => Err(Error::WritingStatement.into()),
        }
    }

    /// Run one statement in the connection's transaction `tx` (see
    /// `execute`); `shape` caches the statement's `Columns`.
    fn _run_in(
        &mut self,
        py: Python<'_>,
        tx: &Bound<'_, Transaction>,
        sql: &str,
        params: Option<&Bound<'_, PyAny>>,
        shape: &Bound<'_, ShapeBase>,
    ) -> PyResult<()> {
        let params = to_params(params)?;
        let (fetched, outcome) = tx.get().run(py, sql, &params)?;
        self.record(py, fetched, outcome, shape, cached(shape)?)
    }

    /// Run one statement on `db`'s writer as its own transaction
    /// (autocommit mode); `shape` caches the statement's `Columns`.
    fn _run_alone(
        &mut self,
        py: Python<'_>,
        db: &Bound<'_, Database>,
        sql: &str,
        params: Option<&Bound<'_, PyAny>>,
        shape: &Bound<'_, ShapeBase>,
    ) -> PyResult<()> {
        let params = to_params(params)?;
        let (fetched, outcome) = db.get().core.run_alone(py, sql, &params)?;
        self.record(py, fetched, outcome, shape, cached(shape)?)
    }

    /// Run one statement; returns the cursor, so ``cur.execute(...)
    /// .fetchall()`` works.
    ///
    /// The common cases run here without any Python: a statement already
    /// seen, with plain parameters (None, int, float, str, bytes, bool, in a
    /// tuple, a list or a dict of named ones), inside the connection's
    /// transaction, reading while none is open (and the thread has no other
    /// stream open on the database), or writing in autocommit mode.
    /// Everything else goes to the subclass's `_execute`.
    #[pyo3(signature = (operation, parameters=None))]
    fn execute<'py>(
        slf: &Bound<'py, Self>,
        operation: &Bound<'py, PyString>,
        parameters: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Self>> {
        if !Self::run_directly(slf, operation, parameters)? {
            slf.call_method1(intern!(slf.py(), "_execute"), (operation, parameters))?;
        }
        Ok(slf.clone())
    }
    /// Read the rest of a streamed result into memory and give its reader
    /// back; fetching carries on from the buffer.
    fn _buffer(&mut self, py: Python<'_>) -> PyResult<()> {
        if matches!(self.rows, Rows::Stream(_)) {
            let rows = self.rest(py)?;
            self.rows = Rows::Buffered(rows.into_iter());
        }
        Ok(())
    }

    /// The next row, or None when there are no more.
    fn fetchone(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.open_connection(py)?;
        self.next_row(py)
    }

    /// Up to `size` (default ``arraysize``) next rows; [] at the end.
    #[pyo3(signature = (size=None))]
    fn fetchmany<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<i64>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.open_connection(py)?;
        let want = size.unwrap_or(self.arraysize);
        let out = PyList::empty(py);
        while (out.len() as i64) < want {
            match self.next_row(py)? {
                Some(row) => out.append(row)?,
                None => break,
            }
        }
        Ok(out)
    }

    /// All remaining rows.
    fn fetchall<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.open_connection(py)?;
        PyList::new(py, self.rest(py)?)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.fetchone(py)
    }

    /// Close the cursor (its unread rows are dropped; ``rowcount`` and
    /// ``lastrowid`` keep their values, as in ``sqlite3``: SQLAlchemy reads
    /// them after closing the cursor of an INSERT). Closing twice is a
    /// no-op.
    fn close(&mut self, py: Python<'_>) {
        if self.connection.is_some() {
            self.drop_rows(py);
            self.connection = None;
        }
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __exit__(
        &mut self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) {
        self.close(py);
    }
}
