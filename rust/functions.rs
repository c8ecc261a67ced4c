//! SQL functions this binding adds to every connection it opens (writer and
//! readers alike), beside honker's and SQLite's own.
//!
//! - `regexp(pattern, text)`, so `text REGEXP pattern` works: true when the
//!   pattern matches anywhere in the text (a search, as Python's
//!   `re.search`), NULL when either is NULL. Patterns use the `regex` crate's
//!   syntax, which runs in time linear in the text (no backreferences or
//!   look-around, so no catastrophic backtracking on hostile input). A
//!   pattern is compiled once per statement execution: SQLite keeps it as
//!   the argument's auxiliary data while the pattern is a constant or a
//!   bound parameter.
//! - Python functions registered with `Database.create_function`
//!   ([`UserFunctions`]): kept per database and installed on each of its
//!   connections the next time that connection is taken, so the writer and
//!   every reader, present or opened later, run the same set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use regex::Regex;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Error, Result};

use crate::convert::{read_value, to_py, to_value};

pub fn register(conn: &Connection) -> Result<()> {
    conn.create_scalar_function(
        "regexp",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        regexp,
    )
}

fn regexp(ctx: &Context<'_>) -> Result<Option<bool>> {
    let text = match ctx.get_raw(1) {
        ValueRef::Null => return Ok(None),
        ValueRef::Text(bytes) => {
            std::str::from_utf8(bytes).map_err(|e| user_error(e.to_string()))?
        }
        other => {
            return Err(user_error(format!(
                "REGEXP matches text, not {}",
                other.data_type()
            )))
        }
    };
    if matches!(ctx.get_raw(0), ValueRef::Null) {
        return Ok(None);
    }
    let pattern: Arc<Regex> = ctx.get_or_create_aux(0, |value| match value {
        ValueRef::Text(bytes) => {
            let source = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
            Regex::new(source).map_err(|e| format!("invalid REGEXP pattern: {e}"))
        }
        other => Err(format!(
            "a REGEXP pattern is text, not {}",
            other.data_type()
        )),
    })?;
    Ok(Some(pattern.is_match(text)))
}

fn user_error(message: String) -> Error {
    Error::UserFunctionError(message.into())
}

/// One `create_function` registration: a Python callable, or `None` to
/// remove the function.
#[derive(Clone)]
struct UserFunction {
    name: String,
    n_arg: i32,
    deterministic: bool,
    func: Option<Arc<Py<PyAny>>>,
}

/// The Python functions of one database, and a generation number that
/// grows with each change, so a connection knows whether it is up to date.
#[derive(Default)]
pub struct UserFunctions {
    defs: Mutex<Vec<UserFunction>>,
    generation: AtomicU64,
}

impl UserFunctions {
    /// Record `func` as `name` with `n_arg` arguments (-1: any number),
    /// replacing an earlier registration of the same name and arity;
    /// `None` removes it. Connections pick the change up when next taken.
    pub fn set(&self, name: &str, n_arg: i32, deterministic: bool, func: Option<Py<PyAny>>) {
        let mut defs = self.defs.lock();
        defs.retain(|d| !(d.n_arg == n_arg && d.name.eq_ignore_ascii_case(name)));
        defs.push(UserFunction {
            name: name.to_owned(),
            n_arg,
            deterministic,
            func: func.map(Arc::new),
        });
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Install every registration on `conn`; returns the generation it
    /// brought the connection up to. Needs no GIL.
    pub fn install(&self, conn: &Connection) -> Result<u64> {
        let (defs, generation) = {
            let defs = self.defs.lock();
            (defs.clone(), self.generation())
        };
        for def in defs {
            match def.func {
                None => match conn.remove_function(def.name.as_str(), def.n_arg) {
                    // Removing a function this connection never had is fine.
                    Ok(()) | Err(Error::SqliteFailure(_, _)) => {}
                    Err(e) => return Err(e),
                },
                Some(func) => {
                    let mut flags = FunctionFlags::SQLITE_UTF8;
                    if def.deterministic {
                        flags |= FunctionFlags::SQLITE_DETERMINISTIC;
                    }
                    let name = def.name.clone();
                    conn.create_scalar_function(def.name.as_str(), def.n_arg, flags, move |ctx| {
                        call(ctx, &name, &func)
                    })?;
                }
            }
        }
        Ok(generation)
    }
}

/// Run a Python function for SQLite: arguments converted as query results
/// are, the result as parameters are. SQLite runs statements with the GIL
/// released, so this takes it back for the call.
fn call(ctx: &Context<'_>, name: &str, func: &Py<PyAny>) -> Result<Value> {
    let mut args = Vec::with_capacity(ctx.len());
    for i in 0..ctx.len() {
        let value = read_value(ctx.get_raw(i), &String::new).map_err(|_| {
            user_error(format!("argument {} of {name}() is not valid UTF-8", i + 1))
        })?;
        args.push(value);
    }
    Python::attach(|py| {
        let args = PyTuple::new(py, args.iter().map(|v| to_py(py, v)))?;
        let out = func.bind(py).call1(args)?;
        to_value(&out, &|| format!("the result of {name}()"))
    })
    .map_err(|e: PyErr| user_error(format!("user-defined function {name}() raised {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(conn: &Connection, sql: &str) -> Result<Option<bool>> {
        conn.query_row(sql, [], |row| row.get(0))
    }

    #[test]
    fn regexp_searches_and_passes_null_through() {
        let conn = Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        assert_eq!(
            ask(&conn, "SELECT 'abcde' REGEXP 'b.d'").unwrap(),
            Some(true)
        );
        assert_eq!(
            ask(&conn, "SELECT 'abcde' REGEXP '^b'").unwrap(),
            Some(false)
        );
        assert_eq!(ask(&conn, "SELECT NULL REGEXP 'a'").unwrap(), None);
        assert_eq!(ask(&conn, "SELECT 'a' REGEXP NULL").unwrap(), None);
        assert!(ask(&conn, "SELECT 'a' REGEXP '('").is_err());
        assert!(ask(&conn, "SELECT 1 REGEXP '1'").is_err());
    }
}
