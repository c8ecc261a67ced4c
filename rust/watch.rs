//! Wakes: one watcher thread for every database file the process listens
//! to, and delivery of its wakes to sync waiters and to asyncio loops.
//!
//! A wake means only "something committed to this file; re-read state".
//! Spurious wakes are harmless; a missed wake is a bug. Invariants:
//!
//! - A file is watched (has a registry entry, a watcher connection and, on
//!   Linux, a share of a directory watch) exactly while it has at least one
//!   live [`Watch`].
//! - `watch()` returns only after the file's `data_version` baseline is
//!   taken, so every commit that ends after it returns is seen.
//! - A file's change counter only grows; each `Watch` remembers the value it
//!   last consumed, so a change between two waits is never lost.
//! - The watcher thread never takes the GIL and never does I/O while holding
//!   the registry lock. If it dies, every waiter gets an error instead of
//!   waiting forever, and the next `watch()` starts a fresh thread.
//!
//! The thread itself (cadence, checks) is in `watch/thread.rs`.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rusqlite::{ffi, Connection};

use crate::detach::detached;
use crate::errors::{Error, Result, Stage};

mod doorbell;
#[cfg(target_os = "linux")]
mod inotify;
mod thread;

use doorbell::Doorbell;

/// How long a sync wait holds the GIL released before looking for a
/// KeyboardInterrupt: short enough for Ctrl-C, long enough to cost nothing.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// Largest accepted interval setting: an hour.
const MAX_INTERVAL_MS: i64 = 3_600_000;

// ---------------------------------------------------------------------------
// Configuration

/// Which source of cadence the thread uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Kernel file events as hints (Linux), else polling.
    Auto,
    Inotify,
    Polling,
}

impl Backend {
    fn parse(name: &str) -> std::result::Result<Self, String> {
        match name {
            "auto" => Ok(Backend::Auto),
            "inotify" => Ok(Backend::Inotify),
            "polling" => Ok(Backend::Polling),
            other => Err(format!(
                "unknown watcher backend {other:?}; use \"auto\", \"inotify\" or \"polling\""
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Inotify => "inotify",
            Backend::Polling => "polling",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Cold files with kernel hints are checked this often (safety net).
    pub fallback_interval: Duration,
    /// A file stays hot this long after its last hint or change.
    pub hot_window: Duration,
    /// Hot files are checked this often.
    pub hot_interval: Duration,
    /// Cold files *without* kernel hints are checked this often.
    pub idle_poll: Duration,
    pub backend: Backend,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fallback_interval: Duration::from_millis(250),
            hot_window: Duration::from_millis(100),
            hot_interval: Duration::from_millis(1),
            idle_poll: Duration::from_millis(10),
            backend: Backend::Auto,
        }
    }
}

// ---------------------------------------------------------------------------
// Per-file signal: what waiters and the watcher thread share about one file

/// A watch bound to a `WakeHub`: on a change, `token` goes to `hub`.
struct HubBinding {
    watch_id: u64,
    hub: Arc<HubShared>,
    token: u64,
}

#[derive(Default)]
struct SignalState {
    hubs: Vec<HubBinding>,
}

pub struct FileSignal {
    /// Changes published so far. Written only under `state`'s lock (so a
    /// waiter that checked it under the lock cannot miss the notify), read
    /// without it by `changed()`.
    version: AtomicU64,
    /// Set once, when the watcher thread serving this file has died.
    dead: OnceLock<String>,
    state: Mutex<SignalState>,
    cond: Condvar,
}

impl FileSignal {
    fn new() -> Self {
        FileSignal {
            version: AtomicU64::new(0),
            dead: OnceLock::new(),
            state: Mutex::new(SignalState::default()),
            cond: Condvar::new(),
        }
    }

    /// One more change: wake sync waiters and ring the bound hubs.
    pub fn publish(&self) {
        let state = self.state.lock();
        self.version.fetch_add(1, Ordering::AcqRel);
        for b in &state.hubs {
            b.hub.push(b.token);
        }
        self.cond.notify_all();
    }

    /// The thread serving this file is gone: fail every waiter from now on.
    fn kill(&self, message: &str) {
        let state = self.state.lock();
        let _ = self.dead.set(message.to_owned());
        for b in &state.hubs {
            b.hub.push(b.token);
        }
        self.cond.notify_all();
    }
}

// ---------------------------------------------------------------------------
// WakeHub: wakes for an asyncio loop, through one pipe

#[derive(Default)]
struct HubState {
    /// `None` once closed: the pipe is closed under this lock, so the
    /// watcher thread never writes to a descriptor number reused elsewhere.
    bell: Option<Doorbell>,
    ready: BTreeSet<u64>,
    /// A byte is in the pipe that `drain` has not consumed yet.
    rung: bool,
}

pub struct HubShared {
    state: Mutex<HubState>,
}

impl HubShared {
    /// Called by the watcher thread: queue `token`, ring once per drain.
    fn push(&self, token: u64) {
        let mut st = self.state.lock();
        let st = &mut *st;
        let Some(bell) = &st.bell else {
            return;
        };
        st.ready.insert(token);
        if !st.rung {
            bell.ring();
            st.rung = true;
        }
    }

    fn drain(&self) -> Result<Vec<u64>> {
        let mut st = self.state.lock();
        let bell = st.bell.as_ref().ok_or_else(hub_closed)?;
        bell.drain();
        st.rung = false;
        Ok(std::mem::take(&mut st.ready).into_iter().collect())
    }

    fn close(&self) {
        let mut st = self.state.lock();
        st.bell = None;
        st.ready.clear();
    }

    fn is_closed(&self) -> bool {
        self.state.lock().bell.is_none()
    }
}

fn hub_closed() -> Error {
    Error::Programming("the WakeHub is closed".into())
}

// ---------------------------------------------------------------------------
// The process-global registry

/// A file handed to the thread: everything taken by `watch()` before it
/// returned, so no commit after that is missed.
pub struct NewFile {
    pub id: u64,
    pub path: PathBuf,
    pub signal: Arc<FileSignal>,
    pub conn: Connection,
    pub version: i64,
    pub identity: (u64, u64),
}

/// What the thread must apply, in order.
pub enum Change {
    Add(Box<NewFile>),
    Remove(u64),
}

struct Entry {
    id: u64,
    signal: Arc<FileSignal>,
    subscribers: usize,
}

pub struct Registry {
    files: HashMap<PathBuf, Entry>,
    pub pending: Vec<Change>,
    pub config: Config,
    running: bool,
    /// Test hook: the thread panics on its next look at the registry.
    pub crash_requested: bool,
    last_error: Option<String>,
    starts: u64,
}

/// Counters the thread keeps; read by `watcher_info()`.
#[derive(Default)]
pub struct Stats {
    pub checks: AtomicU64,
    pub wakes: AtomicU64,
    pub hints: AtomicU64,
    pub errors: AtomicU64,
    pub hot_files: AtomicUsize,
    pub directories: AtomicUsize,
    /// Cadences in effect (the settings, stretched for many files).
    pub sweep_interval_us: AtomicU64,
    pub idle_poll_us: AtomicU64,
    /// Backend in use: 0 = none yet, 1 = inotify, 2 = polling.
    pub backend: AtomicU8,
    pub last_error: Mutex<Option<String>>,
}

pub const BACKEND_INOTIFY: u8 = 1;
pub const BACKEND_POLLING: u8 = 2;

pub struct Watcher {
    /// The process this state belongs to; a forked child starts afresh.
    pid: u32,
    pub bell: Doorbell,
    pub registry: Mutex<Registry>,
    pub stats: Stats,
    next_id: AtomicU64,
}

static WATCHER: Mutex<Option<Arc<Watcher>>> = Mutex::new(None);

/// The process's watcher state, created on first use. After a fork the
/// child's copy describes a thread that does not exist in it, so it is
/// replaced (and leaked, not dropped: its SQLite connections belong to the
/// parent's thread and must not be closed from here).
fn watcher() -> Result<Arc<Watcher>> {
    let mut slot = WATCHER.lock();
    let pid = std::process::id();
    if let Some(w) = slot.as_ref() {
        if w.pid == pid {
            return Ok(w.clone());
        }
    }
    let fresh = Arc::new(Watcher {
        pid,
        bell: Doorbell::new().map_err(|e| os_error("cannot create the watcher's pipe", &e))?,
        registry: Mutex::new(Registry {
            files: HashMap::new(),
            pending: Vec::new(),
            // Lock order: WATCHER, then CONFIG (configure_watcher never
            // holds CONFIG while taking WATCHER).
            config: CONFIG.lock().unwrap_or_default(),
            running: false,
            crash_requested: false,
            last_error: None,
            starts: 0,
        }),
        stats: Stats::default(),
        next_id: AtomicU64::new(1),
    });
    if let Some(old) = slot.replace(fresh.clone()) {
        std::mem::forget(old);
    }
    Ok(fresh)
}

/// The current state if any, without creating it.
fn existing_watcher() -> Option<Arc<Watcher>> {
    WATCHER
        .lock()
        .as_ref()
        .filter(|w| w.pid == std::process::id())
        .cloned()
}

impl Watcher {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Start the thread if it is not running. Called with the registry
    /// locked, so exactly one caller starts it.
    fn ensure_running(self: &Arc<Self>, reg: &mut Registry) -> Result<()> {
        if reg.running {
            return Ok(());
        }
        let me = self.clone();
        std::thread::Builder::new()
            .name("alk-watcher".into())
            .spawn(move || thread::run(me))
            .map_err(|e| os_error("cannot start the watcher thread", &e))?;
        reg.running = true;
        reg.starts += 1;
        Ok(())
    }

    /// Called by the thread as it dies: every file it served fails its
    /// waiters; the next `watch()` starts a new thread with a clean slate.
    pub fn died(&self, message: String) {
        let mut reg = self.registry.lock();
        reg.running = false;
        reg.crash_requested = false;
        reg.pending.clear();
        for (_, entry) in reg.files.drain() {
            entry.signal.kill(&message);
        }
        reg.last_error = Some(message);
        self.stats.hot_files.store(0, Ordering::Relaxed);
        self.stats.directories.store(0, Ordering::Relaxed);
        self.stats.backend.store(0, Ordering::Relaxed);
    }

    /// Register one more subscriber of the file at `path` (canonical).
    fn subscribe(
        self: &Arc<Self>,
        path: &Path,
        hub: Option<(Arc<HubShared>, u64)>,
    ) -> Result<Subscription> {
        let watch_id = self.next_id();
        let attach = |entry: &mut Entry| -> Result<Subscription> {
            let mut state = entry.signal.state.lock();
            if let Some((hub, token)) = &hub {
                if hub.is_closed() {
                    return Err(hub_closed());
                }
                state.hubs.push(HubBinding {
                    watch_id,
                    hub: hub.clone(),
                    token: *token,
                });
            }
            entry.subscribers += 1;
            Ok(Subscription {
                watcher: self.clone(),
                id: watch_id,
                entry_id: entry.id,
                path: path.to_path_buf(),
                seen: AtomicU64::new(entry.signal.version.load(Ordering::Acquire)),
                signal: entry.signal.clone(),
                closed: AtomicBool::new(false),
                pid: self.pid,
            })
        };

        // Already watched: just join.
        {
            let mut reg = self.registry.lock();
            if let Some(entry) = reg.files.get_mut(path) {
                return attach(entry);
            }
        }
        // Open the watcher connection and take the baseline without the
        // lock (it does I/O), then register unless someone beat us to it.
        if hub.as_ref().is_some_and(|(h, _)| h.is_closed()) {
            return Err(hub_closed());
        }
        let (conn, version, identity) = open_watched(path)?;
        let mut reg = self.registry.lock();
        if let Some(entry) = reg.files.get_mut(path) {
            let sub = attach(entry);
            drop(reg);
            drop(conn); // closed outside the lock
            return sub;
        }
        self.ensure_running(&mut reg)?;
        let mut entry = Entry {
            id: self.next_id(),
            signal: Arc::new(FileSignal::new()),
            subscribers: 0,
        };
        let sub = attach(&mut entry)?;
        reg.pending.push(Change::Add(Box::new(NewFile {
            id: entry.id,
            path: path.to_path_buf(),
            signal: entry.signal.clone(),
            conn,
            version,
            identity,
        })));
        reg.files.insert(path.to_path_buf(), entry);
        drop(reg);
        self.bell.ring();
        Ok(sub)
    }

    /// One subscriber fewer; the last one unwatches the file.
    fn unsubscribe(&self, path: &Path, entry_id: u64) {
        let mut reg = self.registry.lock();
        let Some(entry) = reg.files.get_mut(path) else {
            return;
        };
        if entry.id != entry_id {
            return;
        }
        entry.subscribers -= 1;
        if entry.subscribers == 0 {
            reg.files.remove(path);
            reg.pending.push(Change::Remove(entry_id));
            drop(reg);
            self.bell.ring();
        }
    }
}

/// Open the connection the thread will check the file with, and take its
/// baseline. The file must exist: watching never creates a database.
fn open_watched(path: &Path) -> Result<(Connection, i64, (u64, u64))> {
    let identity = thread::identity(path).map_err(|e| cant_open(path, &e))?;
    let conn = thread::open_conn(path).map_err(Error::run)?;
    // The baseline may wait out a writer holding an exclusive lock (rollback
    // journal mode); the thread's own checks never wait (busy_timeout 0).
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(Error::run)?;
    let version = thread::data_version(&conn).map_err(Error::run)?;
    conn.busy_timeout(Duration::ZERO).map_err(Error::run)?;
    Ok((conn, version, identity))
}

fn cant_open(path: &Path, err: &io::Error) -> Error {
    Error::Sqlite {
        code: ffi::SQLITE_CANTOPEN,
        message: format!(
            "cannot watch {}: {err}; watch() follows an existing database file, \
             open or create it first",
            path.display()
        ),
        stage: Stage::Run,
    }
}

/// An operating-system failure, raised as `OperationalError`.
fn os_error(what: &str, err: &io::Error) -> Error {
    Error::Sqlite {
        code: ffi::SQLITE_ERROR,
        message: format!("{what}: {err}"),
        stage: Stage::Run,
    }
}

fn watcher_stopped(message: &str) -> Error {
    Error::Sqlite {
        code: ffi::SQLITE_ERROR,
        message: format!(
            "the watcher thread stopped ({message}); this watch will not wake again: \
             close it and create a new one, which starts a new watcher thread"
        ),
        stage: Stage::Run,
    }
}

// ---------------------------------------------------------------------------
// Subscription: the state behind one Watch

struct Subscription {
    watcher: Arc<Watcher>,
    id: u64,
    entry_id: u64,
    path: PathBuf,
    signal: Arc<FileSignal>,
    /// The file's change counter as of this watch's last consumed wake.
    seen: AtomicU64,
    closed: AtomicBool,
    pid: u32,
}

impl Subscription {
    fn usable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Programming("the watch is closed".into()));
        }
        if self.pid != std::process::id() {
            return Err(Error::Programming(
                "this watch was created before fork(); the watcher thread does not exist in \
                 this process, create a new watch here"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Consume a pending change, if any. A watch that is usable but whose
    /// thread died reports the death (after any change it had not seen).
    fn take_change(&self) -> Result<bool> {
        self.usable()?;
        let current = self.signal.version.load(Ordering::Acquire);
        if self.seen.fetch_max(current, Ordering::AcqRel) < current {
            return Ok(true);
        }
        if let Some(msg) = self.signal.dead.get() {
            return Err(watcher_stopped(msg));
        }
        Ok(false)
    }

    /// Block (GIL released by the caller) until a change or `until`.
    fn wait_until(&self, until: Instant) -> Result<bool> {
        let mut state = self.signal.state.lock();
        loop {
            if self.take_change()? {
                return Ok(true);
            }
            if self.signal.cond.wait_until(&mut state, until).timed_out() {
                return self.take_change();
            }
        }
    }

    fn close(&self) {
        if self.pid != std::process::id() {
            // Inherited through fork(): the parent's thread may have held
            // these locks at the fork and will never release them here.
            self.closed.store(true, Ordering::Release);
            return;
        }
        {
            let mut state = self.signal.state.lock();
            if self.closed.swap(true, Ordering::AcqRel) {
                return;
            }
            state.hubs.retain(|b| b.watch_id != self.id);
            // Blocked waiters wake up and find the watch closed.
            self.signal.cond.notify_all();
        }
        self.watcher.unsubscribe(&self.path, self.entry_id);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.close();
    }
}

// ---------------------------------------------------------------------------
// Python classes and functions

/// Wakes for one database file: "something committed; re-read state".
/// Create with `watch(path)`. Use it from one thread or many; each `Watch`
/// has its own notion of what it has already seen.
#[pyclass(frozen, module = "alkdev_storage._native", name = "Watch")]
pub struct Watch {
    sub: Arc<Subscription>,
}

#[pymethods]
impl Watch {
    /// Block until a commit this watch has not seen yet, or `timeout`
    /// seconds. True for a wake, False on timeout. The GIL is released.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = match timeout {
            None => None,
            Some(t) if t.is_nan() => {
                return Err(crate::errors::invalid_input(
                    "timeout must be a number of seconds, not NaN",
                ))
            }
            Some(t) if t <= 0.0 => return Ok(self.sub.take_change()?),
            // Too large to represent: the same as no timeout.
            Some(t) => Duration::try_from_secs_f64(t)
                .ok()
                .and_then(|d| Instant::now().checked_add(d)),
        };
        let sub = &*self.sub;
        loop {
            let now = Instant::now();
            let slice_end = match deadline {
                Some(d) => d.min(now + WAIT_SLICE),
                None => now + WAIT_SLICE,
            };
            if detached(py, || sub.wait_until(slice_end))? {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            py.check_signals()?;
        }
    }

    /// True (and consumed) if a commit happened since this watch last
    /// reported one. Never blocks.
    fn changed(&self) -> PyResult<bool> {
        Ok(self.sub.take_change()?)
    }

    /// Stop watching. Idempotent; the file is unwatched with its last watch.
    /// A thread blocked in `wait()` gets `ProgrammingError`.
    fn close(&self, py: Python<'_>) {
        let sub = &*self.sub;
        detached(py, || sub.close());
    }

    /// Canonical path of the watched file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.sub.path.clone()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.sub.closed.load(Ordering::Acquire)
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
        format!("<Watch {:?} {state}>", self.sub.path.display().to_string())
    }
}

/// Wakes for an asyncio loop without a thread: the watcher thread queues
/// the tokens of hub-bound watches here and makes `fileno()` readable once;
/// `drain()` returns the queued tokens.
#[pyclass(frozen, module = "alkdev_storage._native", name = "WakeHub")]
pub struct WakeHub {
    shared: Arc<HubShared>,
}

#[pymethods]
impl WakeHub {
    #[new]
    fn new() -> PyResult<Self> {
        let bell = Doorbell::new().map_err(|e| os_error("cannot create the WakeHub's pipe", &e))?;
        Ok(WakeHub {
            shared: Arc::new(HubShared {
                state: Mutex::new(HubState {
                    bell: Some(bell),
                    ..HubState::default()
                }),
            }),
        })
    }

    /// Descriptor that becomes readable when tokens are queued.
    fn fileno(&self) -> PyResult<i32> {
        let st = self.shared.state.lock();
        Ok(st.bell.as_ref().ok_or_else(hub_closed)?.fd())
    }

    /// Empty the pipe and return the queued tokens (sorted, each once).
    fn drain(&self, py: Python<'_>) -> PyResult<Vec<u64>> {
        let shared = &*self.shared;
        // The thread holds this lock only for a few instructions; wait for
        // it detached anyway so the GIL is never held while blocked.
        Ok(detached(py, || shared.drain())?)
    }

    /// Close the pipe. Idempotent. Watches bound to the hub keep working
    /// for `wait()`/`changed()`; they just stop ringing it. Remove the
    /// descriptor from the event loop first.
    fn close(&self) {
        self.shared.close();
    }

    #[getter]
    fn closed(&self) -> bool {
        self.shared.is_closed()
    }

    fn __repr__(&self) -> String {
        let st = self.shared.state.lock();
        match &st.bell {
            Some(bell) => format!("<WakeHub fd={} pending={}>", bell.fd(), st.ready.len()),
            None => "<WakeHub closed>".into(),
        }
    }
}

impl Drop for WakeHub {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Watch the database file at `path` (which must exist). With `hub`, each
/// wake also queues `token` on that `WakeHub`.
#[pyfunction]
#[pyo3(signature = (path, *, hub=None, token=0))]
pub fn watch(
    py: Python<'_>,
    path: PathBuf,
    hub: Option<&Bound<'_, WakeHub>>,
    token: u64,
) -> PyResult<Watch> {
    let hub = hub.map(|h| (h.get().shared.clone(), token));
    let sub = detached(py, move || {
        let canonical = path.canonicalize().map_err(|e| cant_open(&path, &e))?;
        if !canonical.is_file() {
            return Err(Error::Sqlite {
                code: ffi::SQLITE_CANTOPEN_ISDIR,
                message: format!("cannot watch {}: not a regular file", path.display()),
                stage: Stage::Run,
            });
        }
        watcher()?.subscribe(&canonical, hub)
    })?;
    Ok(Watch { sub: Arc::new(sub) })
}

/// State and counters of the process's watcher thread.
#[pyfunction]
pub fn watcher_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let snapshot = detached(py, || {
        existing_watcher().map(|w| {
            let reg = w.registry.lock();
            let s = &w.stats;
            Snapshot {
                running: reg.running,
                watched_files: reg.files.len(),
                config: reg.config,
                starts: reg.starts,
                last_error: reg
                    .last_error
                    .clone()
                    .or_else(|| s.last_error.lock().clone()),
                backend: s.backend.load(Ordering::Relaxed),
                checks: s.checks.load(Ordering::Relaxed),
                wakes: s.wakes.load(Ordering::Relaxed),
                hints: s.hints.load(Ordering::Relaxed),
                errors: s.errors.load(Ordering::Relaxed),
                hot_files: s.hot_files.load(Ordering::Relaxed),
                directories: s.directories.load(Ordering::Relaxed),
                sweep_interval_us: s.sweep_interval_us.load(Ordering::Relaxed),
                idle_poll_us: s.idle_poll_us.load(Ordering::Relaxed),
            }
        })
    });
    let stored = *CONFIG.lock();
    let s = snapshot.unwrap_or(Snapshot {
        config: stored.unwrap_or_default(),
        ..Snapshot::default()
    });
    let backend = match s.backend {
        BACKEND_INOTIFY => "inotify",
        BACKEND_POLLING => "polling",
        // Not running: what it would try first.
        _ if s.config.backend != Backend::Polling && cfg!(target_os = "linux") => "inotify",
        _ => "polling",
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let d = PyDict::new(py);
    d.set_item("running", s.running)?;
    d.set_item("backend", backend)?;
    d.set_item("requested_backend", s.config.backend.name())?;
    d.set_item("watched_files", s.watched_files)?;
    d.set_item("watched_directories", s.directories)?;
    d.set_item("hot_files", s.hot_files)?;
    d.set_item("checks", s.checks)?;
    d.set_item("wakes", s.wakes)?;
    d.set_item("hints", s.hints)?;
    d.set_item("errors", s.errors)?;
    d.set_item("thread_starts", s.starts)?;
    d.set_item("last_error", s.last_error)?;
    d.set_item("fallback_interval_ms", ms(s.config.fallback_interval))?;
    d.set_item("hot_window_ms", ms(s.config.hot_window))?;
    d.set_item("hot_interval_ms", ms(s.config.hot_interval))?;
    d.set_item("idle_poll_ms", ms(s.config.idle_poll))?;
    // What the thread applies now: the settings, stretched for many files.
    let effective = |us: u64, setting: Duration| {
        if s.running && us > 0 {
            us as f64 / 1e3
        } else {
            ms(setting)
        }
    };
    d.set_item(
        "effective_fallback_interval_ms",
        effective(s.sweep_interval_us, s.config.fallback_interval),
    )?;
    d.set_item(
        "effective_idle_poll_ms",
        effective(s.idle_poll_us, s.config.idle_poll),
    )?;
    Ok(d)
}

#[derive(Default)]
struct Snapshot {
    running: bool,
    watched_files: usize,
    config: Config,
    starts: u64,
    last_error: Option<String>,
    backend: u8,
    checks: u64,
    wakes: u64,
    hints: u64,
    errors: u64,
    hot_files: usize,
    directories: usize,
    sweep_interval_us: u64,
    idle_poll_us: u64,
}

/// The settings last given to `configure_watcher`: a watcher state created
/// later starts from them, so configuring never has to start anything.
static CONFIG: Mutex<Option<Config>> = Mutex::new(None);

fn interval(name: &str, value: Option<i64>) -> PyResult<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(ms) if (1..=MAX_INTERVAL_MS).contains(&ms) => {
            Ok(Some(Duration::from_millis(ms as u64)))
        }
        Some(ms) => Err(crate::errors::invalid_input(format!(
            "{name} must be between 1 and {MAX_INTERVAL_MS} milliseconds, got {ms}"
        ))),
    }
}

/// Change the watcher's cadence; applies to the running thread at once.
#[pyfunction]
#[pyo3(signature = (*, fallback_interval_ms=None, hot_window_ms=None, idle_poll_ms=None, backend=None))]
pub fn configure_watcher(
    py: Python<'_>,
    fallback_interval_ms: Option<i64>,
    hot_window_ms: Option<i64>,
    idle_poll_ms: Option<i64>,
    backend: Option<&str>,
) -> PyResult<()> {
    let fallback = interval("fallback_interval_ms", fallback_interval_ms)?;
    let hot_window = interval("hot_window_ms", hot_window_ms)?;
    let idle_poll = interval("idle_poll_ms", idle_poll_ms)?;
    let backend = backend
        .map(Backend::parse)
        .transpose()
        .map_err(crate::errors::invalid_input)?;
    if backend == Some(Backend::Inotify) {
        detached(py, probe_inotify)?;
    }
    let apply = |c: &mut Config| {
        if let Some(v) = fallback {
            c.fallback_interval = v;
        }
        if let Some(v) = hot_window {
            c.hot_window = v;
        }
        if let Some(v) = idle_poll {
            c.idle_poll = v;
        }
        if let Some(b) = backend {
            c.backend = b;
        }
    };
    detached(py, || {
        {
            let mut stored = CONFIG.lock();
            let mut base = stored.unwrap_or_default();
            apply(&mut base);
            *stored = Some(base);
        }
        // A watcher created meanwhile read either the old settings (and is
        // found and updated here) or the new ones (and this is a no-op).
        if let Some(w) = existing_watcher() {
            apply(&mut w.registry.lock().config);
            w.bell.ring();
        }
    });
    Ok(())
}

/// An explicit request for inotify fails now rather than silently polling.
fn probe_inotify() -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        inotify::Inotify::new()
            .map(drop)
            .map_err(|e| os_error("inotify is not available", &e))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(Error::NotSupported(
            "the inotify watcher backend exists only on Linux; use \"auto\" or \"polling\"".into(),
        ))
    }
}

/// Test hook: make the watcher thread panic on its next iteration, to
/// exercise what waiters see when it dies. Does nothing if it is not running.
#[pyfunction]
pub fn _crash_watcher(py: Python<'_>) {
    detached(py, || {
        if let Some(w) = existing_watcher() {
            let mut reg = w.registry.lock();
            if reg.running {
                reg.crash_requested = true;
                drop(reg);
                w.bell.ring();
            }
        }
    });
}
