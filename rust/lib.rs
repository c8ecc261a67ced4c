//! `alkdev_storage._native`: module registration only. The binding lives in
//! one file per exposed class; see `database.rs` for the connection model.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;

mod convert;
mod cursor;
mod database;
mod detach;
mod errors;
mod exec;
mod transaction;
#[cfg(unix)]
mod watch;

use database::{Database, ExecuteResult, Settings};

/// Open (creating if needed) the database file at `path`.
#[pyfunction]
#[pyo3(signature = (path, *, max_readers=4, statement_cache=256, busy_timeout_ms=5000, readonly=false))]
fn connect(
    py: Python<'_>,
    path: std::path::PathBuf,
    max_readers: usize,
    statement_cache: usize,
    busy_timeout_ms: u64,
    readonly: bool,
) -> PyResult<Database> {
    if max_readers == 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "max_readers must be at least 1",
        ));
    }
    if statement_cache == 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "statement_cache must be at least 1",
        ));
    }
    let settings = Settings {
        statement_cache,
        busy_timeout: Duration::from_millis(busy_timeout_ms),
    };
    let path = path.to_string_lossy().into_owned();
    let core = database::open(py, &path, max_readers, settings, readonly)?;
    Ok(Database {
        core: Arc::new(core),
    })
}

/// Version of the SQLite library compiled into this module.
#[pyfunction]
fn sqlite_version() -> &'static str {
    rusqlite::version()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(connect, m)?)?;
    m.add_function(wrap_pyfunction!(sqlite_version, m)?)?;
    m.add_class::<Database>()?;
    m.add_class::<ExecuteResult>()?;
    m.add_class::<transaction::Transaction>()?;
    m.add_class::<transaction::Savepoint>()?;
    m.add_class::<cursor::RowIterator>()?;
    #[cfg(unix)]
    {
        m.add_function(wrap_pyfunction!(watch::watch, m)?)?;
        m.add_function(wrap_pyfunction!(watch::watcher_info, m)?)?;
        m.add_function(wrap_pyfunction!(watch::configure_watcher, m)?)?;
        m.add_function(wrap_pyfunction!(watch::_crash_watcher, m)?)?;
        m.add_class::<watch::Watch>()?;
        m.add_class::<watch::WakeHub>()?;
    }
    Ok(())
}
