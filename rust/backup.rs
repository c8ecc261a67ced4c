//! `Database.backup`: SQLite's online backup of a whole file, consistent and
//! never half-written.
//!
//! Invariants: the copy is one snapshot of the source (every step reads
//! inside one read transaction, so commits made meanwhile neither restart
//! nor tear it); writers are never blocked (WAL readers do not block them);
//! the GIL is released for every step and taken back only to report
//! progress; and the destination path holds either nothing or a complete,
//! synced copy (the pages go to a temporary file beside it that is renamed
//! into place only once the last page is written).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pyo3::prelude::*;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;

use crate::database::Core;
use crate::detach::detached;
use crate::errors::{to_pyerr, Error};

/// How long a step waits when the destination or source is busy before it
/// tries again (SQLite's own advice for `SQLITE_BUSY` from a backup step).
const BUSY_PAUSE: Duration = Duration::from_millis(5);

/// Why a backup stopped early.
enum Stop {
    Storage(Error),
    Callback(PyErr),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Storage(e)
    }
}

/// Copy the database behind `core` to `dest`, `pages` pages per step (a
/// negative number: all at once), calling `progress(remaining, total)` after
/// each step. Returns the number of pages copied.
pub fn backup(
    py: Python<'_>,
    core: &Core,
    dest: &Path,
    pages: i32,
    progress: Option<&Py<PyAny>>,
) -> PyResult<i64> {
    if pages == 0 {
        return Err(crate::errors::invalid_input(
            "pages_per_step must not be 0 (a negative number copies every page in one step)",
        ));
    }
    let partial = partial_path(dest)?;
    let out = detached(py, || {
        let (conn, generation) = core.take_snapshot_conn()?;
        let copied = copy_in_snapshot(&conn, &partial, dest, pages, progress);
        // The read transaction ends whatever happened; a connection that
        // cannot end it is not reused.
        let ended = conn.execute_batch("ROLLBACK").is_ok();
        core.return_snapshot_conn(ended.then_some((conn, generation)));
        if copied.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        copied
    });
    out.map_err(|stop| match stop {
        Stop::Storage(e) => to_pyerr(py, e),
        Stop::Callback(e) => e,
    })
}

/// `dest` checked (absent, in an existing folder) and the temporary file
/// beside it that the pages go to first.
fn partial_path(dest: &Path) -> PyResult<PathBuf> {
    let refuse = |why: String| Err(crate::errors::invalid_input(why));
    let Some(name) = dest.file_name() else {
        return refuse(format!("backup path {} names no file", dest.display()));
    };
    if dest.exists() {
        return refuse(format!(
            "backup path {} already exists; a backup never overwrites a file",
            dest.display()
        ));
    }
    let dir = match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return refuse(format!("backup folder {} does not exist", dir.display()));
    }
    let mut partial = name.to_os_string();
    partial.push(format!(".partial-{}", std::process::id()));
    Ok(dir.join(partial))
}

fn copy_in_snapshot(
    src: &Connection,
    partial: &Path,
    dest: &Path,
    pages: i32,
    progress: Option<&Py<PyAny>>,
) -> Result<i64, Stop> {
    // BEGIN alone takes no snapshot; the first read does, and every step
    // below then reads inside it.
    src.execute_batch("BEGIN DEFERRED; SELECT count(*) FROM sqlite_schema;")
        .map_err(Error::run)?;
    let _ = std::fs::remove_file(partial);
    let mut target = Connection::open(partial).map_err(Error::run)?;
    let total = {
        let copy = Backup::new(src, &mut target).map_err(Error::run)?;
        loop {
            let step = copy.step(pages).map_err(Error::run)?;
            let p = copy.progress();
            if let Some(callback) = progress {
                Python::attach(|py| callback.call1(py, (p.remaining, p.pagecount)))
                    .map_err(Stop::Callback)?;
            }
            match step {
                StepResult::Done => break i64::from(p.pagecount),
                StepResult::More => {}
                // Another connection holds a lock on the copy (nothing here
                // should) or the source is mid-commit: wait and step again.
                _ => std::thread::sleep(BUSY_PAUSE),
            }
        }
    };
    target.close().map_err(|(_, e)| Error::run(e))?;
    sync(partial)?;
    std::fs::rename(partial, dest).map_err(|e| io_error("rename the backup into place", &e))?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable only once the folder is synced.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("sync the backup's folder", &e))?;
    }
    Ok(total)
}

fn sync(path: &Path) -> Result<(), Error> {
    OpenOptions::new()
        .read(true)
        .open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("sync the backup", &e))
}

fn io_error(what: &str, err: &std::io::Error) -> Error {
    Error::Sqlite {
        code: rusqlite::ffi::SQLITE_IOERR,
        message: format!("could not {what}: {err}"),
        stage: crate::errors::Stage::Run,
    }
}
