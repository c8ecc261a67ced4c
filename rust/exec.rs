//! Running statements on a connection the caller already holds.
//!
//! Everything here runs with the GIL released and touches no Python object:
//! inputs are converted [`Params`], outputs are owned [`Value`]s. Every
//! statement goes through the connection's prepared-statement cache, and the
//! cache's hits and misses are counted in [`Stats`].

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::types::Value;
use rusqlite::{CachedStatement, Connection, Statement, StatementStatus};

use crate::convert::Params;
use crate::errors::{Error, Result};

/// Statement-cache counters shared by every connection of one database.
#[derive(Default)]
pub struct Stats {
    pub prepared: AtomicU64,
    pub cache_hits: AtomicU64,
    /// Takings of the writer that found it held and waited.
    pub writer_waits: AtomicU64,
    /// Waits for the writer that ran out of busy timeout.
    pub writer_timeouts: AtomicU64,
}

/// What `execute` reports: PEP 249 `rowcount` (-1 when the statement is not
/// INSERT/UPDATE/DELETE/REPLACE) and `lastrowid` (the connection's
/// `sqlite3_last_insert_rowid` after an INSERT that inserted a row).
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub rowcount: i64,
    pub lastrowid: Option<i64>,
}

impl Outcome {
    pub const NOTHING: Outcome = Outcome {
        rowcount: -1,
        lastrowid: None,
    };

    fn add(&mut self, other: Outcome) {
        if other.rowcount >= 0 {
            self.rowcount = self.rowcount.max(0) + other.rowcount;
        }
        if other.lastrowid.is_some() {
            self.lastrowid = other.lastrowid;
        }
    }
}

/// Rows read from a statement, flattened: row `i` is
/// `values[i * ncols .. (i + 1) * ncols]`.
pub struct Fetched {
    pub columns: Vec<String>,
    pub ncols: usize,
    pub values: Vec<Value>,
}

impl Fetched {
    pub fn rows(&self) -> impl Iterator<Item = &[Value]> {
        // A zero-column result cannot come out of SQLite for a row-returning
        // statement; `max(1)` only keeps `chunks_exact` well-defined.
        self.values.chunks_exact(self.ncols.max(1))
    }
}

/// Prepare through the connection's cache, counting hits and misses. A
/// statement fresh from `sqlite3_prepare` has never been stepped, which is
/// how a miss is told from a hit without a second lookup.
pub fn prepare<'c>(conn: &'c Connection, stats: &Stats, sql: &str) -> Result<CachedStatement<'c>> {
    let stmt = conn.prepare_cached(sql).map_err(Error::prepare)?;
    if stmt.get_status(StatementStatus::Run) == 0 {
        stats.prepared.fetch_add(1, Ordering::Relaxed);
    } else {
        stats.cache_hits.fetch_add(1, Ordering::Relaxed);
    }
    Ok(stmt)
}

/// Bind every parameter of `stmt`, checking counts and names.
pub fn bind(stmt: &mut Statement<'_>, params: &Params) -> Result<()> {
    let expected = stmt.parameter_count();
    match params {
        Params::Positional(values) => {
            if values.len() != expected {
                return Err(Error::ParameterCount {
                    expected,
                    given: values.len(),
                });
            }
            for (i, value) in values.iter().enumerate() {
                stmt.raw_bind_parameter(i + 1, value).map_err(Error::run)?;
            }
        }
        Params::Named(pairs) => {
            for index in 1..=expected {
                let Some(full) = stmt.parameter_name(index) else {
                    return Err(Error::NamelessPlaceholder { index });
                };
                // `:name`, `@name` and `$name` all look up "name".
                let bare = full.get(1..).unwrap_or("");
                let value = pairs
                    .iter()
                    .find(|(k, _)| k == bare)
                    .map(|(_, v)| v)
                    .ok_or_else(|| Error::MissingParameter {
                        name: full.to_owned(),
                    })?;
                stmt.raw_bind_parameter(index, value).map_err(Error::run)?;
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Insert,
    Change,
    Other,
}

/// Classify by the first keyword, skipping white space and comments. Only
/// INSERT/UPDATE/DELETE/REPLACE have a rowcount (PEP 249 says -1 otherwise);
/// a `WITH` statement counts as a change when it writes.
fn kind(sql: &str, stmt: &Statement<'_>) -> Kind {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .take(8)
        .collect();
    match word.to_ascii_uppercase().as_str() {
        "INSERT" | "REPLACE" => Kind::Insert,
        "UPDATE" | "DELETE" => Kind::Change,
        "WITH" if !stmt.readonly() => Kind::Change,
        _ => Kind::Other,
    }
}

/// Step a bound statement to completion, discarding any rows.
fn run_bound(conn: &Connection, stmt: &mut Statement<'_>, sql: &str) -> Result<Outcome> {
    let mut rows = stmt.raw_query();
    while rows.next().map_err(Error::run)?.is_some() {}
    drop(rows);
    Ok(outcome(conn, stmt, sql))
}

/// The rowcount and lastrowid of a statement that has just finished.
fn outcome(conn: &Connection, stmt: &Statement<'_>, sql: &str) -> Outcome {
    match kind(sql, stmt) {
        Kind::Other => Outcome::NOTHING,
        k => {
            let changes = conn.changes() as i64;
            Outcome {
                rowcount: changes,
                lastrowid: (k == Kind::Insert && changes > 0).then(|| conn.last_insert_rowid()),
            }
        }
    }
}

/// Run one statement with one parameter set.
pub fn execute(conn: &Connection, stats: &Stats, sql: &str, params: &Params) -> Result<Outcome> {
    let mut stmt = prepare(conn, stats, sql)?;
    bind(&mut stmt, params)?;
    run_bound(conn, &mut stmt, sql)
}

/// Run one statement once per parameter set, adding the outcomes up.
pub fn execute_many(
    conn: &Connection,
    stats: &Stats,
    sql: &str,
    batch: &[Params],
    total: &mut Outcome,
) -> Result<()> {
    let mut stmt = prepare(conn, stats, sql)?;
    for params in batch {
        bind(&mut stmt, params)?;
        total.add(run_bound(conn, &mut stmt, sql)?);
    }
    Ok(())
}

/// Outcome of a fetch that may only read: `None` means the statement writes
/// and must be run on the writer instead.
pub fn fetch(
    conn: &Connection,
    stats: &Stats,
    sql: &str,
    params: &Params,
    limit: Option<usize>,
    read_only: bool,
    want_columns: bool,
) -> Result<Option<Fetched>> {
    let mut stmt = prepare(conn, stats, sql)?;
    if read_only && !stmt.readonly() {
        return Ok(None);
    }
    bind(&mut stmt, params)?;
    fetch_bound(&mut stmt, limit, want_columns).map(Some)
}

/// Read the rows of a bound statement (up to `limit`).
fn fetch_bound(
    stmt: &mut Statement<'_>,
    limit: Option<usize>,
    want_columns: bool,
) -> Result<Fetched> {
    let mut values = Vec::new();
    let mut count = 0usize;
    let mut ncols = None;
    let mut rows = stmt.raw_query();
    while limit.is_none_or(|l| count < l) {
        let Some(row) = rows.next().map_err(Error::run)? else {
            break;
        };
        // Counted after the first step: a cached statement compiled before
        // a schema change is compiled again by that step, and may now
        // have other columns (`SELECT *` after `ALTER TABLE ... ADD`).
        let n = *ncols.get_or_insert_with(|| row.as_ref().column_count());
        read_row(row, n, &mut values)?;
        count += 1;
    }
    drop(rows);
    let ncols = ncols.unwrap_or_else(|| stmt.column_count());
    let columns: Vec<String> = if want_columns {
        stmt.column_names().into_iter().map(String::from).collect()
    } else {
        Vec::new()
    };
    Ok(Fetched {
        columns,
        ncols,
        values,
    })
}

/// Run one statement in full: its rows with their column names when it has
/// result columns (a SELECT, or a change with RETURNING), and its outcome.
/// Whether a statement has result columns does not depend on the schema,
/// so it is known before it runs; which columns, only after.
pub fn run(
    conn: &Connection,
    stats: &Stats,
    sql: &str,
    params: &Params,
) -> Result<(Option<Fetched>, Outcome)> {
    let mut stmt = prepare(conn, stats, sql)?;
    bind(&mut stmt, params)?;
    if stmt.column_count() == 0 {
        return Ok((None, run_bound(conn, &mut stmt, sql)?));
    }
    let fetched = fetch_bound(&mut stmt, None, true)?;
    Ok((Some(fetched), outcome(conn, &stmt, sql)))
}

/// Append one row's values to `out`.
pub fn read_row(row: &rusqlite::Row<'_>, ncols: usize, out: &mut Vec<Value>) -> Result<()> {
    for i in 0..ncols {
        let raw = row.get_ref(i).map_err(Error::run)?;
        let name = || {
            row.as_ref()
                .column_name(i)
                .map_or_else(|_| i.to_string(), String::from)
        };
        out.push(crate::convert::read_value(raw, &name)?);
    }
    Ok(())
}

/// Column names of a statement, without running it, against the schema as
/// it is now. A connection compiles against the schema it last loaded and
/// notices another connection's change only when a statement runs; so run
/// an empty read of the schema table first (which reloads it if it
/// changed), then compile afresh rather than take a cached statement, which
/// keeps the columns it was compiled with until it next runs.
pub fn columns(conn: &Connection, sql: &str) -> Result<Vec<String>> {
    control(conn, "SELECT 1 FROM sqlite_schema LIMIT 0")?;
    let stmt = conn.prepare(sql).map_err(Error::prepare)?;
    Ok(stmt.column_names().into_iter().map(String::from).collect())
}

/// Run a cached control statement (BEGIN, COMMIT, SAVEPOINT ...).
pub fn control(conn: &Connection, sql: &str) -> Result<()> {
    let mut stmt = conn.prepare_cached(sql).map_err(Error::prepare)?;
    stmt.raw_execute().map_err(Error::run)?;
    Ok(())
}

/// Run every statement of a script in order, as written. A statement that
/// does not compile is a `Stage::Prepare` error (`ProgrammingError` for
/// a mistake in the SQL), one that fails while running a `Stage::Run` error,
/// exactly as for a single `execute`.
pub fn script(conn: &Connection, sql: &str) -> Result<()> {
    use fallible_iterator::FallibleIterator;
    let mut batch = rusqlite::Batch::new(conn, sql);
    while let Some(mut stmt) = batch.next().map_err(Error::prepare)? {
        stmt.raw_execute().map_err(Error::run)?;
    }
    Ok(())
}

/// True if `sql` begins with a statement that ends or opens a transaction
/// (`BEGIN`, `COMMIT`, `END`, or `ROLLBACK` without `TO`). Savepoint
/// statements (`SAVEPOINT`, `RELEASE`, `ROLLBACK TO`) are not.
pub fn is_transaction_control(sql: &str) -> bool {
    let mut words = sql_words(sql);
    match words.next().as_deref() {
        Some("BEGIN" | "COMMIT" | "END") => true,
        Some("ROLLBACK") => {
            let mut next = words.next();
            if next.as_deref() == Some("TRANSACTION") {
                next = words.next();
            }
            next.as_deref() != Some("TO")
        }
        _ => false,
    }
}

/// The leading words of `sql`, upper-cased, skipping whitespace and
/// comments.
fn sql_words(sql: &str) -> impl Iterator<Item = String> + '_ {
    let mut rest = sql;
    std::iter::from_fn(move || loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, tail)| tail);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, tail)| tail);
        } else {
            let end = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            let word = rest[..end].to_ascii_uppercase();
            rest = &rest[end..];
            return Some(word);
        }
    })
}
