//! `Database`: one file, one writer connection and a pool of readers.
//!
//! Invariants: the writer connection is held by at most one caller at a time
//! (`writer::WriterSlot`); a second caller waits for it up to the busy
//! timeout, whichever thread it is on, because a transaction belongs to its
//! object, not to the thread that began it. The one wait that could never
//! end, a statement on the writer calling back into the database for the
//! writer (a SQL function written in Python), fails at once. Every reader
//! is configured (busy timeout, statement cache, honker functions) exactly
//! once before its first use. Reads outside a
//! transaction go to a reader (a WAL snapshot); writes outside a transaction
//! run on the writer as their own transaction.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use honker_core::Readers;
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use rusqlite::{Connection, OpenFlags};

use crate::convert::{to_params, to_py, Params};
use crate::cursor::RowIterator;
use crate::detach::{detached, detached_with};
use crate::errors::{Error, Result};
use crate::exec::{self, Fetched, Outcome, Stats};
use crate::functions::UserFunctions;
use crate::transaction::Transaction;
use crate::walguard::WalGuard;
use crate::writer::{Taken, WriterSlot};

/// How many parameter sets `executemany` converts before running them: big
/// enough to amortise releasing the GIL, small enough to bound memory when
/// the caller passes a generator.
const MANY_CHUNK: usize = 1024;

pub struct Settings {
    pub statement_cache: usize,
    pub busy_timeout: Duration,
}

/// A small integer per OS thread (never 0), used to recognise the writer's
/// holder.
pub fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TOKEN.with(|t| *t)
}

pub struct Core {
    pub path: PathBuf,
    pub readonly: bool,
    writer: WriterSlot,
    readers: Readers,
    /// Readers set up so far (by handle), with the generation of
    /// `functions` each one has installed. At most `max_readers` entries
    /// (the pool never holds more): a short list searched in place is
    /// cheaper than hashing on every read.
    configured_readers: Mutex<Vec<(usize, u64)>>,
    /// The generation of `functions` installed on the writer.
    writer_functions: AtomicU64,
    pub functions: UserFunctions,
    settings: Settings,
    closed: AtomicBool,
    /// The thread running a statement on the writer right now (0: none).
    writer_running: AtomicU64,
    /// The thread that took the writer last, for the busy error's hint.
    writer_taken_by: AtomicU64,
    pub stats: Stats,
    /// What reader connections open: the file, or its read-only URI.
    reader_target: String,
    /// The connections snapshots run on (see `snapshot.rs`).
    snapshots: Mutex<SnapshotConns>,
    /// Idle snapshot connections kept at least (`max_readers`).
    least_idle: usize,
    /// Connections opened for snapshots so far.
    snapshot_opened: AtomicU64,
    /// The writer's WAL hook state (see `walguard.rs`). Declared last: it is
    /// dropped after `close` (run by `Drop`) has closed the writer.
    _wal_guard: Option<Box<WalGuard>>,
}

impl Core {
    pub fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    pub fn statement_cache(&self) -> usize {
        self.settings.statement_cache
    }

    /// Take the writer, waiting up to the busy timeout for its holder (a
    /// transaction of another connection, on this thread or another) to let
    /// go: then `BusyError`. Fails at once only when this thread is running
    /// a statement on the writer right now (a Python SQL function calling
    /// back into the database), a wait that could never end.
    pub fn acquire_writer(&self, py: Python<'_>) -> Result<WriterGuard<'_>> {
        let me = self.may_take_writer()?;
        let conn = match self.writer.try_acquire() {
            Some(conn) => conn,
            None => {
                self.stats.writer_waits.fetch_add(1, Ordering::Relaxed);
                let timeout = self.settings.busy_timeout;
                let deadline = Instant::now() + timeout;
                match detached(py, || self.writer.acquire_until(deadline)) {
                    Taken::Conn(conn) => conn,
                    Taken::Closed => return Err(Error::Closed),
                    Taken::TimedOut => {
                        self.stats.writer_timeouts.fetch_add(1, Ordering::Relaxed);
                        return Err(Error::WriterBusy {
                            waited: timeout,
                            this_thread: self.writer_taken_by.load(Ordering::Acquire) == me,
                        });
                    }
                }
            }
        };
        self.hold_writer(conn, me)
    }

    /// The writer if it is free now, else None; never waits.
    pub fn try_acquire_writer(&self) -> Result<Option<WriterGuard<'_>>> {
        let me = self.may_take_writer()?;
        match self.writer.try_acquire() {
            Some(conn) => self.hold_writer(conn, me).map(Some),
            None => Ok(None),
        }
    }

    /// This thread's token, if it may take the writer: the database is
    /// open, and this thread is not running a statement on the writer now.
    fn may_take_writer(&self) -> Result<u64> {
        self.check_open()?;
        let me = thread_token();
        if self.writer_running.load(Ordering::Acquire) == me {
            return Err(Error::NestedTransaction);
        }
        Ok(me)
    }

    /// The writer connection just taken by thread `me`, in a guard, with
    /// the current SQL functions installed.
    fn hold_writer(&self, conn: Connection, me: u64) -> Result<WriterGuard<'_>> {
        self.writer_taken_by.store(me, Ordering::Release);
        self.writer_running.store(me, Ordering::Release);
        let guard = WriterGuard {
            core: self,
            conn: Some(conn),
        };
        let current = self.functions.generation();
        if self.writer_functions.load(Ordering::Acquire) != current {
            let installed = self.functions.install(&guard).map_err(Error::run)?;
            self.writer_functions.store(installed, Ordering::Release);
        }
        Ok(guard)
    }

    pub fn busy_timeout(&self) -> Duration {
        self.settings.busy_timeout
    }

    /// Run `work`, which uses the writer connection a transaction holds,
    /// recording this thread as running on it (see `acquire_writer`).
    pub fn running_on_writer<T>(&self, work: impl FnOnce() -> T) -> T {
        let me = thread_token();
        self.writer_running.store(me, Ordering::Release);
        let out = work();
        self.writer_running.store(0, Ordering::Release);
        out
    }

    pub fn release_writer(&self, conn: Connection) {
        self.writer_running.store(0, Ordering::Release);
        self.writer.release(conn);
    }

    /// Take a configured reader. Call detached: it may wait for a free one.
    pub fn acquire_reader(&self) -> Result<Connection> {
        self.check_open()?;
        let conn = self.readers.acquire().map_err(Error::from_pool)?;
        // SAFETY: the handle is only used as an identity; honker-core keeps
        // pooled connections alive until the pool closes, so a handle seen
        // here cannot be reused by another connection while we remember it.
        let key = unsafe { conn.handle() } as usize;
        let current = self.functions.generation();
        let installed = self
            .configured_readers
            .lock()
            .iter()
            .find(|(handle, _)| *handle == key)
            .map(|(_, generation)| *generation);
        if installed != Some(current) {
            let setup = match installed {
                None => configure(&conn, &self.settings),
                Some(_) => Ok(()),
            }
            .and_then(|()| self.functions.install(&conn).map_err(Error::run));
            match setup {
                Ok(generation) => {
                    let mut configured = self.configured_readers.lock();
                    match configured.iter_mut().find(|(handle, _)| *handle == key) {
                        Some(entry) => entry.1 = generation,
                        None => configured.push((key, generation)),
                    }
                }
                Err(e) => {
                    self.readers.release(conn);
                    return Err(e);
                }
            }
        }
        Ok(conn)
    }

    pub fn release_reader(&self, conn: Connection) {
        self.readers.release(conn);
    }

    /// One statement on the writer as its own transaction (autocommit): its
    /// rows (None for a statement without result columns) and its counts,
    /// as `Transaction::run` reports them. A statement that leaves a
    /// transaction open (BEGIN, SAVEPOINT) is rolled back and refused.
    pub fn run_alone(
        &self,
        py: Python<'_>,
        sql: &str,
        params: &Params,
    ) -> Result<(Option<Fetched>, Outcome)> {
        let writer = self.acquire_writer(py)?;
        let stats = &self.stats;
        let (_writer, out) = detached_with(py, writer, |w| {
            let out = exec::run(w, stats, sql, params);
            left_open(w).and(out)
        });
        out
    }

    /// Run `work` on a reader; if it answers `None` (the statement writes),
    /// run `fallback` on the writer instead.
    fn read_or_write<T: Send>(
        &self,
        py: Python<'_>,
        work: impl Fn(&Connection, bool) -> Result<Option<T>> + Send + Sync,
    ) -> Result<T> {
        let first = detached(py, || {
            let conn = self.acquire_reader()?;
            let out = work(&conn, true);
            self.release_reader(conn);
            out
        })?;
        if let Some(value) = first {
            return Ok(value);
        }
        let writer = self.acquire_writer(py)?;
        let (_writer, out) = detached_with(py, writer, |w| work(w, false));
        out.map(|v| v.expect("a fetch on the writer always returns rows"))
    }

    /// A connection for a snapshot, with the generation of `functions`
    /// installed on it: an idle one, or a new one (`Snapshot::enter` brings
    /// its functions up to date before each use). Never waits for one. A
    /// snapshot lasts as long as a transaction, so taking it from the
    /// readers' bounded pool would let open transactions make statements
    /// (and other snapshots, the same thread's included) wait for good.
    /// Call detached: opening one does I/O.
    /// Each successful call must be matched by one `return_snapshot_conn`.
    pub fn take_snapshot_conn(&self) -> Result<(Connection, u64)> {
        self.check_open()?;
        let idle = {
            let mut conns = self.snapshots.lock();
            conns.in_use += 1;
            conns.peak = conns.peak.max(conns.in_use);
            conns.idle.pop()
        };
        let ready = idle.map_or_else(|| self.open_snapshot_conn(), Ok);
        if ready.is_err() {
            self.snapshots.lock().in_use -= 1;
        }
        ready
    }

    fn open_snapshot_conn(&self) -> Result<(Connection, u64)> {
        let conn = honker_core::open_conn(&self.reader_target, false).map_err(Error::honker)?;
        configure(&conn, &self.settings)?;
        let installed = self.functions.install(&conn).map_err(Error::run)?;
        self.snapshot_opened.fetch_add(1, Ordering::Relaxed);
        Ok((conn, installed))
    }

    /// Give back what `take_snapshot_conn` gave, its read transaction
    /// ended; None for a connection that could not end it (closed, never
    /// reused). Kept idle unless enough are (see `SnapshotConns::peak`) or
    /// the database is closed.
    pub fn return_snapshot_conn(&self, conn: Option<(Connection, u64)>) {
        // Checked under the lock that `close` clears the list with, so no
        // connection is left idle after it.
        let mut conns = self.snapshots.lock();
        conns.in_use -= 1;
        let keep = conns.peak.max(self.least_idle).min(SNAPSHOT_IDLE_MAX);
        if let Some(conn) = conn {
            if !self.closed.load(Ordering::Acquire) && conns.idle.len() < keep {
                conns.idle.push(conn);
            }
        }
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.writer.close();
        self.readers.close();
        self.snapshots.lock().idle.clear();
    }
}

/// Idle snapshot connections kept at most, however many were in use at once.
const SNAPSHOT_IDLE_MAX: usize = 32;

/// The connections snapshots run on, outside the readers' pool.
#[derive(Default)]
struct SnapshotConns {
    /// Idle ones, each with the generation of `functions` it has installed.
    idle: Vec<(Connection, u64)>,
    /// Taken and not given back yet.
    in_use: usize,
    /// The most ever in use at once: as many are kept idle (at least
    /// `least_idle`, at most `SNAPSHOT_IDLE_MAX`), so that a steady number of
    /// concurrent transactions reuses connections instead of opening them.
    peak: usize,
}

/// The writer connection, held; returned to the slot when dropped.
pub struct WriterGuard<'a> {
    core: &'a Core,
    conn: Option<Connection>,
}

impl WriterGuard<'_> {
    /// Keep the connection past this guard (a transaction owns it now and
    /// must call `Core::release_writer` itself).
    pub fn into_inner(mut self) -> Connection {
        self.core.writer_running.store(0, Ordering::Release);
        self.conn
            .take()
            .expect("guard holds its connection until dropped")
    }
}

impl std::ops::Deref for WriterGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("guard holds its connection until dropped")
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.core.release_writer(conn);
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.close();
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path)
        .map_err(|e| Error::NotSupported(format!("cannot resolve {}: {e}", path.display())))
}

/// A `file:` URI for `path`, opened read-only. Characters that mean
/// something in a URI are percent-encoded.
/// The URI of a read-only open of `path`; `immutable` also tells SQLite the
/// file cannot change (no locks, no `-shm`), for read-only media.
fn read_only_uri(path: &Path, immutable: bool) -> String {
    let mut uri = String::from("file:");
    for b in path.to_string_lossy().bytes() {
        match b {
            b'?' | b'#' | b'%' => uri.push_str(&format!("%{b:02X}")),
            _ => uri.push(b as char),
        }
    }
    uri.push_str(if immutable {
        "?mode=ro&immutable=1"
    } else {
        "?mode=ro"
    });
    uri
}

/// The file beside `path` with `suffix` appended (`-wal`, `-shm`).
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// True when `dir` can be written to (`access(2)`: it answers for read-only
/// mounts as well as for permissions).
#[cfg(unix)]
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call;
    // access(2) only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

#[cfg(not(unix))]
fn writable(_dir: &Path) -> bool {
    true
}

/// An open that failed, told with the path and the most likely reason the
/// filesystem shows (SQLite itself says only "unable to open database
/// file"). The SQLite code is kept.
fn open_failure(path: &Path, readonly: bool, err: Error) -> Error {
    let Error::Sqlite {
        code,
        message,
        stage,
    } = err
    else {
        return err;
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let reason = if !dir.is_dir() {
        format!("its directory {} does not exist", dir.display())
    } else if path.is_dir() {
        "it is a directory".to_owned()
    } else if readonly && !path.exists() {
        "there is no such file (a read-only open never creates one)".to_owned()
    } else if !readonly && !writable(dir) {
        format!(
            "its directory {} is not writable (a read-only file system, or permissions); \
             open it with readonly=True to read it",
            dir.display()
        )
    } else if readonly && sidecar(path, "-wal").exists() && !writable(dir) {
        "its -wal file holds commits that need a -shm file, which cannot be created here: \
         copy the files somewhere writable, or checkpoint the database before making it \
         read-only"
            .to_owned()
    } else {
        message
    };
    Error::Sqlite {
        code,
        message: format!("cannot open {}: {reason}", path.display()),
        stage,
    }
}

/// A read-only connection: with locks and the `-wal` when the directory
/// allows it; else, on read-only media with no `-wal` to read (so the file
/// holds every commit), as an immutable file. The URI that worked, for the
/// readers.
fn open_read_only(path: &Path) -> Result<(Connection, String)> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
    let wal_mode = |conn: &Connection| -> Result<String> {
        conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(Error::run)
    };
    let uri = read_only_uri(path, false);
    let first = Connection::open_with_flags(&uri, flags)
        .map_err(Error::run)
        .and_then(|conn| wal_mode(&conn).map(|mode| (conn, mode)));
    let failed = match first {
        Ok((conn, mode)) => {
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::NotSupported(format!(
                    "{} is in journal mode {mode:?}; a read-only open needs a WAL database \
                     (open it read-write once to convert it)",
                    path.display()
                )));
            }
            return Ok((conn, uri));
        }
        Err(e) => e,
    };
    let wal = sidecar(path, "-wal");
    let empty_wal = std::fs::metadata(&wal).map_or(true, |m| m.len() == 0);
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    if !path.is_file() || writable(dir) || !empty_wal {
        return Err(open_failure(path, true, failed));
    }
    let uri = read_only_uri(path, true);
    let conn = Connection::open_with_flags(&uri, flags)
        .map_err(|e| open_failure(path, true, Error::run(e)))?;
    wal_mode(&conn).map_err(|e| open_failure(path, true, e))?;
    Ok((conn, uri))
}

fn refuse_memory(path: &str) -> Result<()> {
    let lowered = path.to_ascii_lowercase();
    if path.is_empty()
        || path == ":memory:"
        || lowered.starts_with("file:")
        || lowered.contains("mode=memory")
    {
        return Err(Error::NotSupported(format!(
            "{path:?} is not a database file path: alkdev-storage needs a real file \
             (WAL, cross-process change watching); in-memory databases and URIs are \
             not supported, pass a path such as tmp_path / 'app.db'"
        )));
    }
    Ok(())
}

/// The writer connection, the state of its WAL hook (None for a read-only
/// database, which never commits) and what the readers open.
fn open_writer(
    path: &Path,
    readonly: bool,
    settings: &Settings,
) -> Result<(Connection, Option<Box<WalGuard>>, String)> {
    let (conn, reader_target) = if readonly {
        let (conn, uri) = open_read_only(path)?;
        conn.execute_batch(honker_core::DEFAULT_PRAGMAS)
            .map_err(Error::run)?;
        (conn, uri)
    } else {
        let target = path.to_string_lossy();
        let conn = honker_core::open_conn(&target, true)
            .map_err(|e| open_failure(path, false, Error::honker(e)))?;
        // The schema is created with `IF NOT EXISTS`, which writes nothing
        // when it is all there: try in a deferred transaction first, so that
        // opening a file someone is writing to does not wait for their
        // commit. Only when that fails (the schema needs writing while
        // another connection writes, or its snapshot went stale) take the
        // write lock up front and do it again.
        if bootstrap(&conn, "BEGIN DEFERRED").is_err() {
            bootstrap(&conn, "BEGIN IMMEDIATE").map_err(|e| open_failure(path, false, e))?;
        }
        (conn, target.into_owned())
    };
    configure(&conn, settings)?;
    let guard = if readonly {
        None
    } else {
        WalGuard::install(&conn, settings.busy_timeout).map_err(Error::run)?
    };
    Ok((conn, guard, reader_target))
}

/// What every connection of a database gets, the writer and each reader:
/// the busy timeout, the statement cache size, honker's SQL functions and
/// ours.
fn configure(conn: &Connection, settings: &Settings) -> Result<()> {
    conn.busy_timeout(settings.busy_timeout)
        .map_err(Error::run)?;
    conn.set_prepared_statement_cache_capacity(settings.statement_cache);
    honker_core::attach_honker_functions(conn).map_err(Error::run)?;
    crate::functions::register(conn).map_err(Error::run)
}

/// Create honker's schema and our index in one transaction opened by
/// `begin`; rolled back on failure.
fn bootstrap(conn: &Connection, begin: &str) -> Result<()> {
    exec::control(conn, begin)?;
    let done = honker_core::bootstrap_honker_schema(conn)
        .map_err(Error::honker)
        .and_then(|()| {
            conn.execute_batch(crate::ops::EXHAUSTED_INDEX_SQL)
                .map_err(Error::run)
        });
    match done {
        Ok(()) => exec::control(conn, "COMMIT"),
        Err(e) => {
            let _ = exec::control(conn, "ROLLBACK");
            Err(e)
        }
    }
}

pub fn open(
    py: Python<'_>,
    path: &str,
    max_readers: usize,
    settings: Settings,
    readonly: bool,
) -> Result<Core> {
    refuse_memory(path)?;
    let path = absolute(Path::new(path))?;
    let (writer_conn, wal_guard, reader_target) =
        detached(py, || open_writer(&path, readonly, &settings))?;
    Ok(Core {
        readonly,
        writer: WriterSlot::new(writer_conn),
        readers: Readers::new(reader_target.clone(), max_readers),
        configured_readers: Mutex::new(Vec::new()),
        writer_functions: AtomicU64::new(0),
        functions: UserFunctions::default(),
        settings,
        closed: AtomicBool::new(false),
        writer_running: AtomicU64::new(0),
        writer_taken_by: AtomicU64::new(0),
        stats: Stats::default(),
        path,
        reader_target,
        snapshots: Mutex::new(SnapshotConns::default()),
        least_idle: max_readers,
        snapshot_opened: AtomicU64::new(0),
        _wal_guard: wal_guard,
    })
}

/// Build the Python rows of a fetch: tuples, or dicts keyed by column name.
pub fn rows_to_py<'py>(
    py: Python<'py>,
    fetched: &Fetched,
    as_dict: bool,
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    if as_dict {
        let keys = column_keys(py, &fetched.columns);
        for row in fetched.rows() {
            list.append(row_dict(py, &keys, row)?)?;
        }
    } else {
        for row in fetched.rows() {
            list.append(row_tuple(py, row)?)?;
        }
    }
    Ok(list)
}

/// Whole rows (flattened values, see `Fetched`) as owned tuples.
pub fn row_tuples<'a>(
    py: Python<'_>,
    rows: impl Iterator<Item = &'a [rusqlite::types::Value]>,
) -> PyResult<Vec<Py<PyAny>>> {
    rows.map(|row| row_tuple(py, row).map(Bound::unbind))
        .collect()
}

/// Column names as Python strings, made once per result for dict rows.
pub fn column_keys<'py>(py: Python<'py>, columns: &[String]) -> Vec<Bound<'py, PyString>> {
    columns.iter().map(|c| PyString::new(py, c)).collect()
}

pub fn row_tuple<'py>(
    py: Python<'py>,
    row: &[rusqlite::types::Value],
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyTuple::new(py, row.iter().map(|v| to_py(py, v)))?.into_any())
}

pub fn row_dict<'py>(
    py: Python<'py>,
    keys: &[Bound<'py, PyString>],
    row: &[rusqlite::types::Value],
) -> PyResult<Bound<'py, PyAny>> {
    let dict = PyDict::new(py);
    for (k, v) in keys.iter().zip(row) {
        dict.set_item(k, to_py(py, v))?;
    }
    Ok(dict.into_any())
}

/// The first row of a fetch, or `None`.
pub fn first_row<'py>(
    py: Python<'py>,
    fetched: &Fetched,
    as_dict: bool,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(row) = fetched.rows().next() else {
        return Ok(None);
    };
    if as_dict {
        let keys = column_keys(py, &fetched.columns);
        row_dict(py, &keys, row).map(Some)
    } else {
        row_tuple(py, row).map(Some)
    }
}

/// The result of `execute`/`executemany`.
#[pyclass(frozen, module = "alkdev_storage._native", name = "ExecuteResult")]
pub struct ExecuteResult {
    /// Rows changed by INSERT/UPDATE/DELETE/REPLACE; -1 for other statements.
    #[pyo3(get)]
    rowcount: i64,
    /// `sqlite3_last_insert_rowid()` after an INSERT that inserted a row,
    /// else `None`.
    #[pyo3(get)]
    lastrowid: Option<i64>,
}

impl From<Outcome> for ExecuteResult {
    fn from(o: Outcome) -> Self {
        ExecuteResult {
            rowcount: o.rowcount,
            lastrowid: o.lastrowid,
        }
    }
}

#[pymethods]
impl ExecuteResult {
    fn __repr__(&self) -> String {
        let id = self
            .lastrowid
            .map_or_else(|| "None".to_string(), |v| v.to_string());
        format!("ExecuteResult(rowcount={}, lastrowid={id})", self.rowcount)
    }
}

/// Convert an iterable of parameter sets in chunks and hand each chunk to
/// `run`, detached.
pub fn for_each_chunk(
    py: Python<'_>,
    seq_of_params: &Bound<'_, PyAny>,
    mut run: impl FnMut(&[Params]) -> Result<()> + Send,
) -> PyResult<()> {
    let mut chunk = Vec::with_capacity(MANY_CHUNK);
    for item in seq_of_params.try_iter()? {
        chunk.push(to_params(Some(&item?))?);
        if chunk.len() == MANY_CHUNK {
            let batch = std::mem::take(&mut chunk);
            detached(py, || run(&batch))?;
        }
    }
    if !chunk.is_empty() {
        detached(py, || run(&chunk))?;
    }
    Ok(())
}

/// A database file opened for this process. See `alkdev_storage.connect`.
/// Subclassable: `alkdev_storage.Database` adds the Python-level queue,
/// stream and listener objects on top.
#[pyclass(frozen, subclass, module = "alkdev_storage._native", name = "Database")]
pub struct Database {
    pub core: Arc<Core>,
}

#[pymethods]
impl Database {
    /// Open (creating if needed) the database file at `path`.
    #[new]
    #[pyo3(signature = (path, *, max_readers=4, statement_cache=256, busy_timeout_ms=5000, readonly=false))]
    pub fn new(
        py: Python<'_>,
        path: PathBuf,
        max_readers: usize,
        statement_cache: usize,
        busy_timeout_ms: u64,
        readonly: bool,
    ) -> PyResult<Self> {
        if max_readers == 0 {
            return Err(crate::errors::invalid_input(
                "max_readers must be at least 1",
            ));
        }
        if statement_cache == 0 {
            return Err(crate::errors::invalid_input(
                "statement_cache must be at least 1",
            ));
        }
        let settings = Settings {
            statement_cache,
            busy_timeout: Duration::from_millis(busy_timeout_ms),
        };
        let path = path.to_string_lossy().into_owned();
        let core = open(py, &path, max_readers, settings, readonly)?;
        Ok(Database {
            core: Arc::new(core),
        })
    }

    /// Absolute path of the database file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.core.path.clone()
    }

    #[getter]
    fn readonly(&self) -> bool {
        self.core.readonly
    }

    #[getter]
    fn closed(&self) -> bool {
        self.core.closed.load(Ordering::Acquire)
    }

    /// Statement-cache counters: statements compiled (cache misses), cache
    /// hits, and the per-connection capacity; how often taking the writer
    /// had to wait, and how many of those waits ran out of busy timeout;
    /// the connections opened for
    /// DB-API read snapshots so far, and how many are idle and in use; and the
    /// RESTART checkpoints the writer's WAL hook tried so far, and how many
    /// of them found a snapshot still open when their wait ran out.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let s = &self.core.stats;
        d.set_item("statements_prepared", s.prepared.load(Ordering::Relaxed))?;
        d.set_item("statement_cache_hits", s.cache_hits.load(Ordering::Relaxed))?;
        d.set_item("statement_cache_capacity", self.core.statement_cache())?;
        d.set_item("writer_waits", s.writer_waits.load(Ordering::Relaxed))?;
        d.set_item("writer_timeouts", s.writer_timeouts.load(Ordering::Relaxed))?;
        let core = &self.core;
        let opened = core.snapshot_opened.load(Ordering::Relaxed);
        d.set_item("snapshot_connections_opened", opened)?;
        let (idle, in_use) = {
            let conns = core.snapshots.lock();
            (conns.idle.len(), conns.in_use)
        };
        d.set_item("snapshot_connections_idle", idle)?;
        d.set_item("snapshot_connections_in_use", in_use)?;
        let (attempts, failed) = core._wal_guard.as_ref().map_or((0, 0), |g| {
            (
                g.attempts.load(Ordering::Relaxed),
                g.failed.load(Ordering::Relaxed),
            )
        });
        d.set_item("wal_restart_attempts", attempts)?;
        d.set_item("wal_restart_failures", failed)?;
        Ok(d)
    }

    #[pyo3(signature = (sql, params=None))]
    fn execute(
        &self,
        py: Python<'_>,
        sql: &str,
        params: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<ExecuteResult> {
        let params = to_params(params)?;
        let core = &*self.core;
        let writer = core.acquire_writer(py)?;
        let (_writer, out) = detached_with(py, writer, |w| {
            let out = exec::execute(w, &core.stats, sql, &params);
            left_open(w).and(out)
        });
        Ok(out?.into())
    }

    /// Run `sql` once per parameter set, all in one transaction.
    fn executemany(
        &self,
        py: Python<'_>,
        sql: &str,
        seq_of_params: &Bound<'_, PyAny>,
    ) -> PyResult<ExecuteResult> {
        let core = &*self.core;
        let writer = core.acquire_writer(py)?;
        let (mut writer, begun) =
            detached_with(py, writer, |w| exec::control(w, "BEGIN IMMEDIATE"));
        begun?;
        let mut total = Outcome::NOTHING;
        let ran = {
            let (w, t) = (&mut writer, &mut total);
            for_each_chunk(py, seq_of_params, move |batch| {
                exec::execute_many(w, &core.stats, sql, batch, t)
            })
        };
        let (_writer, ended) = detached_with(py, writer, |w| match &ran {
            Ok(()) => commit_or_rollback(w),
            Err(_) => exec::control(w, "ROLLBACK"),
        });
        ran?;
        ended?;
        Ok(total.into())
    }

    /// Run a script of several statements on the writer, as written (no
    /// implicit transaction around it).
    fn executescript(&self, py: Python<'_>, sql: &str) -> PyResult<()> {
        let writer = self.core.acquire_writer(py)?;
        let (_writer, out) = detached_with(py, writer, |w| {
            let out = exec::script(w, sql);
            left_open(w).and(out)
        });
        Ok(out?)
    }

    /// All rows of a query, as tuples (or dicts with `as_dict=True`).
    #[pyo3(signature = (sql, params=None, *, as_dict=false))]
    fn query<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        as_dict: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let params = to_params(params)?;
        let stats = &self.core.stats;
        let fetched = self.core.read_or_write(py, |conn, ro| {
            exec::fetch(conn, stats, sql, &params, None, ro, as_dict)
        })?;
        rows_to_py(py, &fetched, as_dict)
    }

    /// The first row of a query, or `None`.
    #[pyo3(signature = (sql, params=None, *, as_dict=false))]
    fn query_one<'py>(
        &self,
        py: Python<'py>,
        sql: &str,
        params: Option<&Bound<'py, PyAny>>,
        as_dict: bool,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let params = to_params(params)?;
        let stats = &self.core.stats;
        let fetched = self.core.read_or_write(py, |conn, ro| {
            exec::fetch(conn, stats, sql, &params, Some(1), ro, as_dict)
        })?;
        first_row(py, &fetched, as_dict)
    }

    /// Stream the rows of a read-only query in batches, holding one reader.
    #[pyo3(signature = (sql, params=None, *, as_dict=false, batch_size=256))]
    fn iterate(
        &self,
        py: Python<'_>,
        sql: &str,
        params: Option<&Bound<'_, PyAny>>,
        as_dict: bool,
        batch_size: usize,
    ) -> PyResult<RowIterator> {
        let params = to_params(params)?;
        RowIterator::start(py, self.core.clone(), sql, params, as_dict, batch_size)
    }

    /// Column names a query would return, without running it.
    fn columns(&self, py: Python<'_>, sql: &str) -> PyResult<Vec<String>> {
        let core = &*self.core;
        Ok(detached(py, || {
            let conn = core.acquire_reader()?;
            let out = exec::columns(&conn, sql);
            core.release_reader(conn);
            out
        })?)
    }

    /// Register a Python function callable from SQL on every connection of
    /// this database (the writer and all readers), as `sqlite3`'s
    /// `create_function`: `n_arg` is its number of arguments (-1: any), and
    /// `func=None` removes it. Arguments arrive as query results do and the
    /// result is bound as a parameter is; an exception becomes the
    /// statement's `OperationalError`. Connections install the change the
    /// next time they are taken (a transaction already open keeps the set
    /// it began with).
    #[pyo3(signature = (name, n_arg, func, *, deterministic=false))]
    fn create_function(
        &self,
        name: &str,
        n_arg: i32,
        func: Option<Bound<'_, PyAny>>,
        deterministic: bool,
    ) -> PyResult<()> {
        self.core.check_open()?;
        if name.is_empty() || name.len() > 255 || name.contains('\0') {
            return Err(Error::Programming(format!(
                "a function name is 1 to 255 bytes without NUL, not {name:?}"
            ))
            .into());
        }
        if !(-1..=127).contains(&n_arg) {
            return Err(Error::Programming(format!(
                "n_arg is -1 (any number) or 0 to 127, not {n_arg}"
            ))
            .into());
        }
        if let Some(f) = &func {
            if !f.is_callable() {
                return Err(Error::Programming(format!(
                    "func must be callable or None, not {}",
                    f.get_type().name()?
                ))
                .into());
            }
        }
        self.core
            .functions
            .set(name, n_arg, deterministic, func.map(Bound::unbind));
        Ok(())
    }

    /// Begin a write transaction (`BEGIN IMMEDIATE` on the writer), waiting
    /// up to the busy timeout for another one to end. `foreign_keys=False`
    /// leaves foreign keys unchecked until this transaction ends (what a
    /// migration rebuilding a referenced table needs); other transactions
    /// check them as always.
    #[pyo3(signature = (*, foreign_keys=true))]
    fn transaction(&self, py: Python<'_>, foreign_keys: bool) -> PyResult<Transaction> {
        Transaction::begin(py, self.core.clone(), foreign_keys)
    }

    /// `transaction()` if it can begin without waiting (the writer free,
    /// and no other process holding the file's write lock), else None: what
    /// an event loop tries before it sleeps and tries again.
    #[pyo3(signature = (*, foreign_keys=true))]
    fn _try_transaction(
        &self,
        py: Python<'_>,
        foreign_keys: bool,
    ) -> PyResult<Option<Transaction>> {
        Transaction::try_begin(py, self.core.clone(), foreign_keys)
    }

    /// The busy timeout, in milliseconds: how long taking the writer (or
    /// SQLite's write lock) waits.
    #[getter]
    fn busy_timeout_ms(&self) -> u128 {
        self.core.busy_timeout().as_millis()
    }

    /// Checkpoint the WAL into the database file. `mode` is one of PASSIVE,
    /// FULL, RESTART, TRUNCATE. Returns `(busy, log_frames, checkpointed)`.
    #[pyo3(signature = (mode="PASSIVE"))]
    fn checkpoint(&self, py: Python<'_>, mode: &str) -> PyResult<(i64, i64, i64)> {
        let mode = mode.to_ascii_uppercase();
        if !["PASSIVE", "FULL", "RESTART", "TRUNCATE"].contains(&mode.as_str()) {
            return Err(Error::Programming(format!(
                "unknown checkpoint mode {mode:?}; use PASSIVE, FULL, RESTART or TRUNCATE"
            ))
            .into());
        }
        let writer = self.core.acquire_writer(py)?;
        let sql = format!("PRAGMA wal_checkpoint({mode})");
        let (_writer, out) = detached_with(py, writer, |w| {
            w.query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(Error::run)
        });
        Ok(out?)
    }

    /// Copy the database to the new file `path` with SQLite's online backup:
    /// one consistent snapshot, taken while writers go on, `pages_per_step`
    /// pages per step (negative: all in one) with the GIL released, and
    /// `progress(remaining, total)` called after each step (an exception
    /// from it stops the backup and is raised). `path` must not exist; it
    /// appears only once complete and synced. Returns the pages copied.
    #[pyo3(signature = (path, *, pages_per_step=4096, progress=None))]
    fn backup(
        &self,
        py: Python<'_>,
        path: PathBuf,
        pages_per_step: i32,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<i64> {
        crate::backup::backup(py, &self.core, &path, pages_per_step, progress.as_ref())
    }

    /// Close the writer and every reader. Idempotent. An open transaction's
    /// connection is closed (and so rolled back) when that transaction ends.
    fn close(&self, py: Python<'_>) {
        let core = &*self.core;
        detached(py, || core.close());
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

    fn __repr__(&self) -> String {
        let state = if self.closed() { "closed" } else { "open" };
        format!(
            "<Database {:?} {state}>",
            self.core.path.display().to_string()
        )
    }
}

/// A statement run outside `db.transaction()` must not leave one open on
/// the writer (`BEGIN`, `SAVEPOINT`): that would wedge every later
/// transaction. Roll it back and say how to do it instead.
fn left_open(conn: &Connection) -> Result<()> {
    if conn.is_autocommit() {
        return Ok(());
    }
    let _ = exec::control(conn, "ROLLBACK");
    Err(Error::Programming(
        "a statement outside db.transaction() left a transaction open (BEGIN or SAVEPOINT); \
         it was rolled back: use db.transaction() and tx.savepoint() instead"
            .into(),
    ))
}

/// COMMIT; if that fails the transaction is still open, so roll it back.
pub fn commit_or_rollback(conn: &Connection) -> Result<()> {
    exec::control(conn, "COMMIT").inspect_err(|_| {
        let _ = exec::control(conn, "ROLLBACK");
    })
}
