//! One error type for the whole native core, and its one mapping to Python.
//!
//! Every fallible path in the crate returns [`Error`]; conversion to a
//! Python exception happens only here, so each exception carries the SQLite
//! (extended) result code and its symbolic name, and the class is chosen by
//! the pure-Python hierarchy in `alkdev_storage.errors`.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;
use rusqlite::ffi;

/// Which step of a statement's life an SQLite error came from. A generic
/// `SQLITE_ERROR` while compiling is a mistake in the SQL (PEP 249's
/// `ProgrammingError`); the same code while running is operational.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Prepare,
    Run,
}

#[derive(Debug)]
pub enum Error {
    /// An error reported by SQLite itself.
    Sqlite {
        code: i32,
        message: String,
        stage: Stage,
    },
    /// The database (or the pool behind it) has been closed.
    Closed,
    /// The transaction was already committed or rolled back.
    TransactionFinished,
    /// This thread asked for the writer while running a statement on it.
    NestedTransaction,
    /// The writer stayed held for the whole busy timeout; `this_thread`:
    /// its holder was taken on the waiting thread.
    WriterBusy {
        waited: std::time::Duration,
        this_thread: bool,
    },
    /// Wrong number of parameters for the statement.
    ParameterCount { expected: usize, given: usize },
    /// A named parameter in the SQL has no value in the mapping given.
    MissingParameter { name: String },
    /// Named parameters were given for a statement using `?` placeholders.
    NamelessPlaceholder { index: usize },
    /// Text read from the database is not valid UTF-8.
    InvalidUtf8 { column: String },
    /// More than one statement in a string passed to a single-statement call.
    MultipleStatements,
    /// A request the binding refuses (in-memory databases, bad options...).
    NotSupported(String),
    /// `iterate()` was given a statement that writes (SQLite's verdict).
    WritingStatement,
    /// Anything else that is the caller's misuse of the API.
    Programming(String),
    /// An argument with the right type but an unusable value (a bad
    /// schedule expression...): Python's `ValueError`.
    Value(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wrap a rusqlite error, remembering whether it came from compiling.
    pub fn from_rusqlite(err: rusqlite::Error, stage: Stage) -> Self {
        match err {
            rusqlite::Error::SqliteFailure(e, msg) => Error::Sqlite {
                code: e.extended_code,
                message: msg.unwrap_or_else(|| e.to_string()),
                stage,
            },
            rusqlite::Error::SqlInputError { error, msg, .. } => Error::Sqlite {
                code: error.extended_code,
                message: msg,
                stage,
            },
            rusqlite::Error::MultipleStatement => Error::MultipleStatements,
            rusqlite::Error::InvalidParameterCount(given, expected) => {
                Error::ParameterCount { expected, given }
            }
            rusqlite::Error::Utf8Error(_, _) => Error::InvalidUtf8 {
                column: String::from("?"),
            },
            other => Error::Sqlite {
                code: ffi::SQLITE_ERROR,
                message: other.to_string(),
                stage,
            },
        }
    }

    pub fn prepare(err: rusqlite::Error) -> Self {
        Self::from_rusqlite(err, Stage::Prepare)
    }

    pub fn run(err: rusqlite::Error) -> Self {
        Self::from_rusqlite(err, Stage::Run)
    }

    pub fn honker(err: honker_core::Error) -> Self {
        let honker_core::Error::Sqlite(inner) = err;
        Self::run(inner)
    }

    /// The honker reader pool reports closure as `SQLITE_MISUSE` with this
    /// exact message; it means the same as our own closed flag.
    pub fn from_pool(err: honker_core::Error) -> Self {
        let honker_core::Error::Sqlite(inner) = &err;
        if let rusqlite::Error::SqliteFailure(e, Some(msg)) = inner {
            if e.code == rusqlite::ErrorCode::ApiMisuse && msg == "Database is closed" {
                return Error::Closed;
            }
        }
        Self::honker(err)
    }
}

/// `(class name in alkdev_storage.errors, message, SQLite extended code)`.
fn describe(err: &Error) -> (&'static str, String, i32) {
    match err {
        Error::Sqlite {
            code,
            message,
            ..
        } => ("", message.clone(), *code),
        Error::Closed => (
            "DatabaseClosedError",
            "cannot operate on a closed database".into(),
            ffi::SQLITE_MISUSE,
        ),
        Error::TransactionFinished => (
            "TransactionClosedError",
            "the transaction has already been committed or rolled back".into(),
            ffi::SQLITE_MISUSE,
        ),
        Error::NestedTransaction => (
            "NestedTransactionError",
            "a statement running on this database's writer (through a SQL function) \
             asked for the writer again, which would wait for itself forever; \
             run it through the transaction, or outside the function"
                .into(),
            ffi::SQLITE_MISUSE,
        ),
        Error::WriterBusy {
            waited,
            this_thread,
        } => (
            "BusyError",
            format!(
                "waited {} ms (busy_timeout_ms) for this database's writer: another \
                 transaction held it all along{}",
                waited.as_millis(),
                if *this_thread {
                    "; that transaction was begun on this thread: if it is still open \
                     here, run the statement through it (tx=...) or nest with tx.savepoint()"
                } else {
                    ""
                }
            ),
            ffi::SQLITE_BUSY,
        ),
        Error::ParameterCount { expected, given } => (
            "ParameterCountError",
            format!("the statement uses {expected} parameter(s), but {given} were supplied"),
            ffi::SQLITE_RANGE,
        ),
        Error::MissingParameter { name } => (
            "ParameterCountError",
            format!("no value supplied for the named parameter {name:?}"),
            ffi::SQLITE_RANGE,
        ),
        Error::NamelessPlaceholder { index } => (
            "ParameterCountError",
            format!(
                "parameter {index} is a nameless '?' placeholder; pass a sequence, not a mapping"
            ),
            ffi::SQLITE_RANGE,
        ),
        Error::InvalidUtf8 { column } => (
            "DataError",
            format!("column {column:?} holds TEXT that is not valid UTF-8; read it as a BLOB with CAST(... AS BLOB)"),
            ffi::SQLITE_MISMATCH,
        ),
        Error::MultipleStatements => (
            "ProgrammingError",
            "only one statement may be executed at a time; use executescript() for scripts".into(),
            ffi::SQLITE_MISUSE,
        ),
        Error::NotSupported(msg) => ("NotSupportedError", msg.clone(), ffi::SQLITE_MISUSE),
        Error::WritingStatement => (
            "WritingStatementError",
            "iterate() streams read-only statements; use query() or execute() \
             for statements that write"
                .into(),
            ffi::SQLITE_MISUSE,
        ),
        Error::Programming(msg) => ("ProgrammingError", msg.clone(), ffi::SQLITE_MISUSE),
        Error::Value(msg) => ("", msg.clone(), ffi::SQLITE_MISUSE),
    }
}

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn errors_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    ERRORS_MODULE
        .get_or_try_init(py, || {
            PyModule::import(py, "alkdev_storage.errors").map(Bound::unbind)
        })
        .map(|m| m.bind(py))
}

/// Build one of our exceptions by class name (for errors raised while
/// converting arguments, with the GIL held).
pub fn py_error(py: Python<'_>, class: &str, message: String, code: i32) -> PyErr {
    match errors_module(py).and_then(|m| m.getattr("_make_error")?.call1((class, message, code))) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// Build one of our own exceptions that did not come from SQLite (an
/// `InvalidSchemaError`...): no SQLite code or name is attached.
pub fn storage_error(py: Python<'_>, class: &str, message: String) -> PyErr {
    let none: Option<i32> = None;
    match errors_module(py).and_then(|m| m.getattr("_make_error")?.call1((class, message, none))) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// `InvalidInputError` (a `ValueError`): an argument with the right type
/// but a value we refuse.
pub fn invalid_input(message: impl Into<String>) -> PyErr {
    Python::attach(|py| storage_error(py, "InvalidInputError", message.into()))
}

/// `InputTypeError` (a `TypeError`): an argument of a type we do not take.
pub fn input_type(message: impl Into<String>) -> PyErr {
    Python::attach(|py| storage_error(py, "InputTypeError", message.into()))
}

/// Build the Python exception for `err`. The Python side picks the class for
/// SQLite codes (`_sqlite_error`) and attaches code and name (`_make_error`).
pub fn to_pyerr(py: Python<'_>, err: Error) -> PyErr {
    if let Error::Value(msg) = err {
        return storage_error(py, "InvalidInputError", msg);
    }
    let stage = match &err {
        Error::Sqlite { stage, .. } => *stage,
        _ => Stage::Run,
    };
    let (class, message, code) = describe(&err);
    let built = errors_module(py).and_then(|m| {
        if class.is_empty() {
            m.getattr("_sqlite_error")?
                .call1((code, message, stage == Stage::Prepare))
        } else {
            m.getattr("_make_error")?.call1((class, message, code))
        }
    });
    match built {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        Python::attach(|py| to_pyerr(py, err))
    }
}
