//! The watcher thread (`alk-watcher`): one per process, serving every
//! watched file.
//!
//! Change detection is `PRAGMA data_version` on a connection the thread
//! owns per file: the value moves whenever another connection, in any
//! process, commits. Cadence decides *when* to ask:
//!
//! - a file is **hot** for `hot_window` after a kernel hint or a detected
//!   change, and is checked every `hot_interval` meanwhile. A hint can
//!   arrive before the commit is visible (the WAL is written before its
//!   index header in `-shm`, which is mmap'ed and raises no event), so one
//!   check on the hint is not enough: the hot window catches the commit
//!   when it lands (right after a hint the re-checks come sooner, see
//!   [`CHASE_FIRST`]);
//! - a **cold** file with kernel hints is checked by the sweep, every
//!   `fallback_interval` (the safety net for anything the kernel did not
//!   report);
//! - a cold file **without** hints (no inotify, or its directory could not
//!   be watched) is polled every `idle_poll`.
//!
//! Both cold cadences stretch with the number of files they cover
//! ([`SWEEP_PER_FILE`], [`POLL_PER_FILE`]), so their cost stays bounded with
//! thousands of files instead of growing with them.
//!
//! On each sweep every file's (dev, inode) is compared with the
//! one its connection was opened on: a replaced file gets a forced wake and
//! a fresh connection. A failing connection forces one wake and is reopened
//! on the next sweep. Invariants: the thread never takes the GIL, never
//! holds the registry lock while doing I/O, and only it touches `Local`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags};

#[cfg(target_os = "linux")]
use super::inotify::{Hint, Inotify};
#[cfg(target_os = "linux")]
use super::Backend;
use super::{doorbell, Change, Config, FileSignal, NewFile, Watcher};
use super::{BACKEND_INOTIFY, BACKEND_POLLING};

/// First re-check after a hint whose check found no commit yet. The writer
/// publishes the commit (wal-index header in `-shm`, no event) just after
/// the WAL write that raised the hint; re-checks follow at doubling delays
/// (0.1, 0.2, 0.4, 0.8 ms) until the steady hot interval.
#[cfg(target_os = "linux")]
const CHASE_FIRST: Duration = Duration::from_micros(100);

/// The sweep takes at least this long per watched file: with more than
/// 500 files it stretches past 250 ms, capping it near 2,000 checks/s.
const SWEEP_PER_FILE: Duration = Duration::from_micros(500);

/// Idle polling takes at least this long per polled file: past 200 files
/// it stretches beyond 10 ms, capping it near 20,000 checks/s.
const POLL_PER_FILE: Duration = Duration::from_micros(50);

/// Files the sweep visits before looking at hints again: a hint never waits
/// for a whole sweep of thousands of files, only for this many checks.
const SWEEP_CHUNK: usize = 16;

/// `(dev, inode)` of the file at `path`.
pub fn identity(path: &Path) -> io::Result<(u64, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// The thread's connection to a watched file. No CREATE flag: watching
/// never creates a database. NO_MUTEX: only one thread ever uses it.
/// SQLite itself falls back to read-only when the file is not writable.
pub fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.set_prepared_statement_cache_capacity(2);
    Ok(conn)
}

pub fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA data_version")?
        .query_row([], |row| row.get(0))
}

/// Another connection holds a lock for a moment (rollback-journal commit):
/// try again on the next check. Reopening instead would take a new
/// baseline and could swallow the very commit that held the lock.
fn transient(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Thread entry point. Whatever ends the loop (an error or a panic), the
/// waiters are told rather than left waiting.
pub fn run(watcher: Arc<Watcher>) {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| Loop::new(&watcher).run()));
    let message = match outcome {
        Ok(Err(message)) => message,
        Ok(Ok(never)) => match never {},
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            format!("panic: {text}")
        }
    };
    watcher.died(message);
}

/// The thread's own view of one watched file.
struct Local {
    path: PathBuf,
    signal: Arc<FileSignal>,
    /// `None` after an error until the next sweep reopens it.
    conn: Option<Connection>,
    /// Last `data_version` seen on `conn`.
    version: i64,
    /// `(dev, inode)` the connection was opened on.
    identity: (u64, u64),
    /// Kernel hints arrive for this file.
    hinted: bool,
    hot_until: Option<Instant>,
    /// A forced wake was already sent for the current failure.
    broken: bool,
}

struct Loop<'a> {
    watcher: &'a Watcher,
    files: HashMap<u64, Local>,
    /// Ids with `hot_until` set (possibly expired until the next hot tick).
    hot: Vec<u64>,
    /// Files with `hinted == false`.
    unhinted: usize,
    config: Config,
    #[cfg(target_os = "linux")]
    inotify: Option<Inotify>,
    #[cfg(target_os = "linux")]
    hints: Vec<Hint>,
    next_hot: Instant,
    /// While chasing a hint: the delay of the last hot tick.
    chase: Option<Duration>,
    next_idle: Instant,
    next_sweep: Instant,
    /// Files the current sweep has still to visit.
    sweep_left: Vec<u64>,
}

impl<'a> Loop<'a> {
    fn new(watcher: &'a Watcher) -> Self {
        let now = Instant::now();
        Loop {
            watcher,
            files: HashMap::new(),
            hot: Vec::new(),
            unhinted: 0,
            config: Config::default(),
            #[cfg(target_os = "linux")]
            inotify: None,
            #[cfg(target_os = "linux")]
            hints: Vec::new(),
            next_hot: now,
            chase: None,
            next_idle: now,
            next_sweep: now,
            sweep_left: Vec::new(),
        }
    }

    fn run(mut self) -> Result<Infallible, String> {
        self.sync(Instant::now());
        loop {
            let now = Instant::now();
            if !self.hot.is_empty() && now >= self.next_hot {
                self.next_hot = now + self.next_hot_step();
                self.hot_tick(now);
            }
            if self.unhinted > 0 && now >= self.next_idle {
                self.next_idle = now + self.idle_interval();
                self.idle_tick(now);
            }
            if !self.files.is_empty() && now >= self.next_sweep && self.sweep_left.is_empty() {
                self.next_sweep = now + self.sweep_interval();
                self.sweep_left.extend(self.files.keys());
            }
            if !self.sweep_left.is_empty() {
                self.sweep_some(now);
            }
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            let ready = doorbell::wait(self.watcher.bell.fd(), self.kernel_fd(), timeout)
                .map_err(|e| format!("poll(2) failed: {e}"))?;
            let now = Instant::now();
            if ready.bell {
                self.watcher.bell.drain();
                self.sync(now);
            }
            if ready.other {
                self.read_hints(now);
            }
        }
    }

    /// Delay to the next hot tick: the doubling chase after a hint that
    /// found nothing yet, then the steady `hot_interval`.
    fn next_hot_step(&mut self) -> Duration {
        let steady = self.config.hot_interval;
        match self.chase {
            Some(step) if step * 2 < steady => {
                self.chase = Some(step * 2);
                step * 2
            }
            _ => {
                self.chase = None;
                steady
            }
        }
    }

    /// The sweep's period: the configured one, stretched for many files.
    fn sweep_interval(&self) -> Duration {
        let n = u32::try_from(self.files.len()).unwrap_or(u32::MAX);
        self.config
            .fallback_interval
            .max(SWEEP_PER_FILE.saturating_mul(n))
    }

    /// The idle polling period: the configured one, stretched for many
    /// polled files.
    fn idle_interval(&self) -> Duration {
        let n = u32::try_from(self.unhinted).unwrap_or(u32::MAX);
        self.config.idle_poll.max(POLL_PER_FILE.saturating_mul(n))
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut due: Option<Instant> = None;
        let mut consider = |t: Instant| due = Some(due.map_or(t, |d| d.min(t)));
        if !self.sweep_left.is_empty() {
            // Mid-sweep: only look for hints, then carry on.
            consider(Instant::now());
        }
        if !self.files.is_empty() {
            consider(self.next_sweep);
        }
        if !self.hot.is_empty() {
            consider(self.next_hot);
        }
        if self.unhinted > 0 {
            consider(self.next_idle);
        }
        due
    }

    // -- registry ----------------------------------------------------------

    /// Take the registry's pending changes and settings, then apply them
    /// with the lock released (closing and checking do I/O).
    fn sync(&mut self, now: Instant) {
        let (changes, config, crash) = {
            let mut reg = self.watcher.registry.lock();
            (
                std::mem::take(&mut reg.pending),
                reg.config,
                std::mem::take(&mut reg.crash_requested),
            )
        };
        if crash {
            panic!("crash requested through _crash_watcher() (test hook)");
        }
        let old = std::mem::replace(&mut self.config, config);
        // Shorter intervals take effect now, not after the old ones expire.
        self.next_sweep = self.next_sweep.min(now + self.sweep_interval());
        self.next_idle = self.next_idle.min(now + self.idle_interval());
        if old.backend != config.backend || self.watcher.stats.backend.load(Ordering::Relaxed) == 0
        {
            self.apply_backend();
        }
        for change in changes {
            match change {
                Change::Add(file) => self.adopt(*file, now),
                Change::Remove(id) => self.forget(id),
            }
        }
        self.publish_gauges();
    }

    fn adopt(&mut self, file: NewFile, now: Instant) {
        let NewFile {
            id,
            path,
            signal,
            conn,
            version,
            identity,
        } = file;
        if self.files.is_empty() {
            self.next_sweep = now + self.sweep_interval();
        }
        self.files.insert(
            id,
            Local {
                path,
                signal,
                conn: Some(conn),
                version,
                identity,
                hinted: false,
                hot_until: None,
                broken: false,
            },
        );
        if self.unhinted == 0 {
            self.next_idle = now + self.idle_interval();
        }
        self.unhinted += 1;
        self.hint_file(id, true);
        // A commit racing the handover (its WAL written before the
        // directory watch existed, its index header after the baseline)
        // raises no further event: watch closely for a hot window.
        self.make_hot(id, now);
        self.check(id, now, false);
    }

    fn forget(&mut self, id: u64) {
        let Some(local) = self.files.remove(&id) else {
            return;
        };
        if local.hinted {
            #[cfg(target_os = "linux")]
            if let Some(ino) = &mut self.inotify {
                ino.remove(id, &local.path);
            }
        } else {
            self.unhinted -= 1;
        }
        // `hot` is pruned of unknown ids on the next hot tick; dropping
        // `local` closes the watcher connection here, lock-free.
    }

    // -- cadence -----------------------------------------------------------

    fn make_hot(&mut self, id: u64, now: Instant) {
        let window = self.config.hot_window;
        let Some(local) = self.files.get_mut(&id) else {
            return;
        };
        if local.hot_until.is_none() {
            if self.hot.is_empty() {
                self.next_hot = now + self.config.hot_interval;
            }
            self.hot.push(id);
        }
        local.hot_until = Some(now + window);
    }

    fn hot_tick(&mut self, now: Instant) {
        let ids = std::mem::take(&mut self.hot);
        for &id in &ids {
            self.check(id, now, false);
        }
        self.hot.extend(ids);
        let files = &mut self.files;
        self.hot.retain(|id| match files.get_mut(id) {
            Some(local) if local.hot_until.is_some_and(|t| t > now) => true,
            Some(local) => {
                local.hot_until = None;
                false
            }
            None => false,
        });
        self.publish_gauges();
    }

    fn idle_tick(&mut self, now: Instant) {
        let ids: Vec<u64> = self
            .files
            .iter()
            .filter(|(_, l)| !l.hinted && l.hot_until.is_none())
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.check(id, now, false);
        }
    }

    /// The safety net, [`SWEEP_CHUNK`] files at a time: every file's
    /// identity and data_version, reopening connections lost to errors,
    /// and another try at hints for polled files (their directory may be
    /// back). Files unwatched meanwhile are skipped.
    fn sweep_some(&mut self, now: Instant) {
        let from = self.sweep_left.len().saturating_sub(SWEEP_CHUNK);
        let ids: Vec<u64> = self.sweep_left.drain(from..).collect();
        for id in ids {
            if !self.files.contains_key(&id) {
                continue;
            }
            self.verify_identity(id, now);
            self.check(id, now, true);
            if self.files.get(&id).is_some_and(|l| !l.hinted) {
                self.hint_file(id, false);
            }
        }
    }

    // -- checks ------------------------------------------------------------

    /// Ask `data_version`; publish a wake if it moved (or if the connection
    /// failed, or was reopened after a failure: state is unknown then).
    /// Returns whether it published.
    fn check(&mut self, id: u64, now: Instant, may_reopen: bool) -> bool {
        let stats = &self.watcher.stats;
        let Some(local) = self.files.get_mut(&id) else {
            return false;
        };
        stats.checks.fetch_add(1, Ordering::Relaxed);
        let changed = match &local.conn {
            Some(conn) => match data_version(conn) {
                Ok(v) if v != local.version => {
                    local.version = v;
                    true
                }
                Ok(_) => false,
                Err(e) if transient(&e) => false,
                Err(e) => fail(local, stats, format!("data_version check failed: {e}")),
            },
            None if may_reopen => reopen(local, stats),
            None => false,
        };
        if changed {
            local.signal.publish();
            stats.wakes.fetch_add(1, Ordering::Relaxed);
            self.make_hot(id, now);
        }
        changed
    }

    /// Compare the file's (dev, inode) with its connection's. A replaced or
    /// vanished file gets one forced wake; a replaced one a new connection.
    fn verify_identity(&mut self, id: u64, now: Instant) {
        let stats = &self.watcher.stats;
        let Some(local) = self.files.get_mut(&id) else {
            return;
        };
        let changed = match identity(&local.path) {
            Ok(current) if current == local.identity => false,
            Ok(_) => {
                local.conn = None;
                local.broken = false;
                reopen(local, stats)
            }
            Err(e) => fail(local, stats, format!("file vanished: {e}")),
        };
        if changed {
            local.signal.publish();
            stats.wakes.fetch_add(1, Ordering::Relaxed);
            self.make_hot(id, now);
        }
    }

    // -- kernel hints ------------------------------------------------------

    fn kernel_fd(&self) -> Option<std::os::fd::RawFd> {
        #[cfg(target_os = "linux")]
        {
            self.inotify.as_ref().map(Inotify::fd)
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }

    /// Start kernel hints for a file, if the backend has them. `report`
    /// records a failure; the sweep's retries stay quiet.
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    fn hint_file(&mut self, id: u64, report: bool) {
        #[cfg(target_os = "linux")]
        {
            let Some(ino) = &mut self.inotify else {
                return;
            };
            let Some(local) = self.files.get_mut(&id) else {
                return;
            };
            if local.hinted {
                return;
            }
            match ino.add(id, &local.path) {
                Ok(()) => {
                    local.hinted = true;
                    self.unhinted -= 1;
                }
                Err(e) if report => {
                    let msg = format!(
                        "cannot watch the directory of {}: {e}",
                        local.path.display()
                    );
                    record(&self.watcher.stats, msg);
                }
                Err(_) => {}
            }
        }
    }

    /// Switch between inotify and polling to match the configuration.
    fn apply_backend(&mut self) {
        #[cfg(target_os = "linux")]
        {
            let want = self.config.backend != Backend::Polling;
            if want && self.inotify.is_none() {
                match Inotify::new() {
                    Ok(ino) => {
                        self.inotify = Some(ino);
                        let ids: Vec<u64> = self.files.keys().copied().collect();
                        for id in ids {
                            self.hint_file(id, true);
                        }
                    }
                    Err(e) => record(
                        &self.watcher.stats,
                        format!("inotify unavailable, polling instead: {e}"),
                    ),
                }
            } else if !want && self.inotify.is_some() {
                self.inotify = None;
                for local in self.files.values_mut() {
                    if local.hinted {
                        local.hinted = false;
                        self.unhinted += 1;
                    }
                }
                self.next_idle = Instant::now() + self.idle_interval();
            }
        }
        let backend = if self.kernel_fd().is_some() {
            BACKEND_INOTIFY
        } else {
            BACKEND_POLLING
        };
        self.watcher.stats.backend.store(backend, Ordering::Relaxed);
    }

    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    fn read_hints(&mut self, now: Instant) {
        #[cfg(target_os = "linux")]
        {
            let Some(ino) = &mut self.inotify else {
                return;
            };
            let mut hints = std::mem::take(&mut self.hints);
            if let Err(e) = ino.read_hints(&mut hints) {
                // The kernel channel is broken: poll everything instead.
                record(&self.watcher.stats, format!("inotify read failed: {e}"));
                self.config.backend = Backend::Polling;
                self.apply_backend();
                hints.push(Hint::Overflow);
            }
            let mut ids: Vec<(u64, bool)> = Vec::new();
            for hint in hints.drain(..) {
                match hint {
                    Hint::File { id, structural } => ids.push((id, structural)),
                    Hint::Overflow => ids.extend(self.files.keys().map(|&id| (id, true))),
                    Hint::Lost(lost) => {
                        for &id in &lost {
                            if let Some(local) = self.files.get_mut(&id) {
                                if local.hinted {
                                    local.hinted = false;
                                    self.unhinted += 1;
                                    self.next_idle = now + self.idle_interval();
                                }
                            }
                        }
                        ids.extend(lost.into_iter().map(|id| (id, true)));
                    }
                }
            }
            self.hints = hints;
            // One check per file however many events it had; structural
            // if any of them was.
            ids.sort_unstable();
            ids.dedup_by(|later, first| {
                let same = later.0 == first.0;
                if same {
                    first.1 |= later.1;
                }
                same
            });
            let stats = &self.watcher.stats;
            stats.hints.fetch_add(ids.len() as u64, Ordering::Relaxed);
            let mut missed = false;
            for (id, structural) in ids {
                self.make_hot(id, now);
                if structural {
                    self.verify_identity(id, now);
                }
                missed |= !self.check(id, now, structural);
            }
            if missed {
                // Usually the WAL write raised the event and the commit
                // becomes visible microseconds later: chase it.
                self.chase = Some(CHASE_FIRST);
                self.next_hot = now + CHASE_FIRST;
            }
            self.publish_gauges();
        }
    }

    fn publish_gauges(&self) {
        let stats = &self.watcher.stats;
        stats.hot_files.store(self.hot.len(), Ordering::Relaxed);
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        stats
            .sweep_interval_us
            .store(micros(self.sweep_interval()), Ordering::Relaxed);
        stats
            .idle_poll_us
            .store(micros(self.idle_interval()), Ordering::Relaxed);
        #[cfg(target_os = "linux")]
        let dirs = self.inotify.as_ref().map_or(0, Inotify::directories);
        #[cfg(not(target_os = "linux"))]
        let dirs = 0;
        stats.directories.store(dirs, Ordering::Relaxed);
    }
}

/// The connection failed: drop it (the next sweep reopens it). Returns
/// whether to force a wake. Both the wake and the error record happen once
/// per failure, not on every retry while it lasts.
fn fail(local: &mut Local, stats: &super::Stats, message: String) -> bool {
    local.conn = None;
    let first = !std::mem::replace(&mut local.broken, true);
    if first {
        record(stats, format!("{}: {message}", local.path.display()));
    }
    first
}

/// Open a fresh connection and baseline. Success always forces a wake:
/// nobody was looking while the file had no connection.
fn reopen(local: &mut Local, stats: &super::Stats) -> bool {
    let opened = identity(&local.path)
        .map_err(|e| e.to_string())
        .and_then(|ident| {
            let conn = open_conn(&local.path).map_err(|e| e.to_string())?;
            let version = data_version(&conn).map_err(|e| e.to_string())?;
            Ok((conn, version, ident))
        });
    match opened {
        Ok((conn, version, ident)) => {
            local.conn = Some(conn);
            local.version = version;
            local.identity = ident;
            local.broken = false;
            true
        }
        Err(e) => fail(local, stats, format!("reopen failed: {e}")),
    }
}

fn record(stats: &super::Stats, message: String) {
    stats.errors.fetch_add(1, Ordering::Relaxed);
    *stats.last_error.lock() = Some(message);
}
