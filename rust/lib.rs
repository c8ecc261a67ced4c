//! `alkdev_storage._native`: module registration only. The binding lives in
//! one file per exposed class; see `database.rs` for the connection model.

use pyo3::prelude::*;

mod backup;
mod convert;
mod cursor;
mod database;
mod dbapi;
mod detach;
mod errors;
mod exec;
mod functions;
mod job;
mod json;
mod ops;
mod primitives;
mod schema;
mod secrets;
mod snapshot;
mod transaction;
mod walguard;
#[cfg(unix)]
mod watch;
mod writer;

use database::{Database, ExecuteResult};

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
    Database::new(
        py,
        path,
        max_readers,
        statement_cache,
        busy_timeout_ms,
        readonly,
    )
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
    m.add_function(wrap_pyfunction!(primitives::cron_next_after, m)?)?;
    m.add_function(wrap_pyfunction!(json::json_dumps, m)?)?;
    m.add_function(wrap_pyfunction!(json::json_document, m)?)?;
    m.add_function(wrap_pyfunction!(dbapi::_dbapi_hooks, m)?)?;
    m.add_function(wrap_pyfunction!(secrets::_encrypt, m)?)?;
    m.add_function(wrap_pyfunction!(secrets::_decrypt, m)?)?;
    m.add_class::<Database>()?;
    m.add_class::<job::Job>()?;
    m.add_class::<ExecuteResult>()?;
    m.add_class::<transaction::Transaction>()?;
    m.add_class::<transaction::Savepoint>()?;
    m.add_class::<cursor::RowIterator>()?;
    m.add_class::<dbapi::CursorBase>()?;
    m.add_class::<dbapi::Columns>()?;
    m.add_class::<dbapi::ShapeBase>()?;
    m.add_class::<dbapi::ConnectionBase>()?;
    m.add_class::<schema::SchemaValidator>()?;
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
