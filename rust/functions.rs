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

use std::sync::Arc;

use regex::Regex;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Error, Result};

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
