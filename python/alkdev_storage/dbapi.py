"""A PEP 249 (DB-API 2.0) module over an alkdev-storage database.

It lets code written for ``sqlite3`` (or a library that takes any DB-API
module) run on our connection, and share one transaction with the queues,
streams and notifications of the same file:

>>> import tempfile, os
>>> from alkdev_storage import dbapi
>>> conn = dbapi.connect(os.path.join(tempfile.mkdtemp(), "app.db"))
>>> cur = conn.cursor()
>>> _ = cur.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY, total)")
>>> cur.execute("INSERT INTO orders(total) VALUES (?)", (42,)).lastrowid
1
>>> job = conn.database.queue("receipts").enqueue({"order": 1}, tx=conn.transaction)
>>> conn.commit()  # the order and its job land together
>>> cur.execute("SELECT id, total FROM orders").fetchall()
[(1, 42)]
>>> [d[0] for d in cur.description]
['id', 'total']
>>> conn.close()

Transactions (PEP 249's implicit ones, as ``sqlite3`` does them by
default): a statement that reads, run while no transaction is open, goes to a
reader (a WAL snapshot of committed data) and its rows are streamed; the
first statement that writes (INSERT, UPDATE, DELETE, DDL, PRAGMA, SAVEPOINT)
opens ``database.transaction()`` (``BEGIN IMMEDIATE``) and from then on every
statement, reads included, runs in it until `Connection.commit` or
`Connection.rollback`. Reads in the transaction see its own writes; their
rows are fetched whole (the native transaction has no streaming cursor).
``BEGIN``/``COMMIT``/``END``/``ROLLBACK`` in SQL are refused: use the
connection's methods. With ``autocommit=True`` (or ``isolation_level=None``)
every statement commits on its own.

Parameters: ``paramstyle`` is ``qmark`` (``?``); the named style
(``:name`` with a mapping) is accepted too. ``datetime.date``, ``time`` and
``datetime`` values are stored as ISO 8601 text, as ``sqlite3``'s classic
adapters did; ``Binary`` is ``bytes``.

Threads: ``threadsafety`` is 1 (share the module, not connections). A
connection holds a native transaction whose writer the core ties to the
thread that opened it, and cursors keep their results without locks; give
each thread its own connection (several may wrap one `alk.Database` through
``connect(db=...)``; their transactions take turns on its writer).

More in docs/dbapi.md.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
import threading
import time as _time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, TypeAlias

from alkdev_storage import _native
from alkdev_storage._database import Database
from alkdev_storage._database import connect as _open
from alkdev_storage.errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,  # noqa: A004 - PEP 249 requires the name
    WritingStatementError,
)

__all__ = [
    "BINARY",
    "DATETIME",
    "NUMBER",
    "ROWID",
    "STRING",
    "Binary",
    "Connection",
    "Cursor",
    "DataError",
    "DatabaseError",
    "Date",
    "DateFromTicks",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "Warning",
    "apilevel",
    "connect",
    "paramstyle",
    "sqlite_version",
    "sqlite_version_info",
    "threadsafety",
]

apilevel: Final = "2.0"
# 1: threads may share the module but not a connection. A connection holds a
# native transaction, and the writer records the thread that opened it (a
# second transaction on that thread fails fast with NestedTransactionError);
# cursors keep their result state without locks. Give each thread its own
# connection; they may wrap the same `alk.Database`.
threadsafety: Final = 1
paramstyle: Final = "qmark"

# ------------------------------------------------------------------ types

Date = _dt.date
Time = _dt.time
Timestamp = _dt.datetime
Binary = bytes


def DateFromTicks(ticks: float) -> _dt.date:
    """The local date of a Unix time.

    >>> DateFromTicks(0) in (Date(1969, 12, 31), Date(1970, 1, 1))
    True
    """
    return Date(*_time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> _dt.time:
    """The local time of day of a Unix time."""
    return Time(*_time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> _dt.datetime:
    """The local date and time of a Unix time (whole seconds)."""
    return Timestamp(*_time.localtime(ticks)[:6])


class _TypeObject:
    """A PEP 249 type object: equal to each of the declared column types it
    stands for. ``description`` leaves ``type_code`` as None (SQLite columns
    are dynamically typed), so these matter only to code that compares
    declared types.

    >>> STRING == "VARCHAR", NUMBER == "TEXT"
    (True, False)
    """

    def __init__(self, name: str, *values: str) -> None:
        self.name = name
        self.values = frozenset(values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _TypeObject):
            return self is other
        if isinstance(other, str):
            return other.upper() in self.values
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"<dbapi type {self.name}>"


STRING = _TypeObject("STRING", "TEXT", "VARCHAR", "CHAR", "CLOB", "NCHAR", "NVARCHAR")
BINARY = _TypeObject("BINARY", "BLOB")
NUMBER = _TypeObject(
    "NUMBER", "INTEGER", "INT", "BIGINT", "REAL", "FLOAT", "DOUBLE", "NUMERIC", "DECIMAL", "BOOLEAN"
)
DATETIME = _TypeObject("DATETIME", "DATE", "TIME", "TIMESTAMP", "DATETIME")
ROWID = _TypeObject("ROWID", "ROWID", "INTEGER PRIMARY KEY")

# ------------------------------------------------------------ statements

_Params: TypeAlias = Sequence[Any] | Mapping[str, Any] | None
_Description: TypeAlias = tuple[tuple[str, None, None, None, None, None, None], ...]

_TEMPORAL = (_dt.date, _dt.time)  # datetime is a date (and pandas' Timestamp one)


def _adapt_value(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat(" ")
    if isinstance(value, _TEMPORAL):
        return value.isoformat()
    return value


_PLAIN = frozenset({int, float, str, bytes, bool, type(None), bytearray, memoryview})


def _adapt(params: _Params) -> _Params:
    """Dates and times as ISO text; anything else is passed to the core as is
    (it raises ParameterTypeError for what it cannot store)."""
    if type(params) is tuple or type(params) is list:  # the common case, checked first
        if _PLAIN.issuperset(map(type, params)):
            return params
        return [_adapt_value(v) for v in params]
    if params is None or isinstance(params, str | bytes):
        return params
    if isinstance(params, Mapping):
        if _PLAIN.issuperset(map(type, params.values())):  # the fast, common case
            return params
        return {k: _adapt_value(v) for k, v in params.items()}
    if _PLAIN.issuperset(map(type, params)):
        return params
    return [_adapt_value(v) for v in params]


def _first_words(sql: str, n: int = 3) -> list[str]:
    """The first `n` keywords, upper-cased, skipping white space and
    comments; padded with empty strings."""
    words: list[str] = []
    rest = sql
    while len(words) < n:
        rest = rest.lstrip()
        if rest.startswith("--"):
            rest = rest.partition("\n")[2]
        elif rest.startswith("/*"):
            rest = rest.partition("*/")[2]
        else:
            word = "".join(itertools.takewhile(str.isalpha, rest))
            if not word:
                break
            words.append(word.upper())
            rest = rest[len(word) :]
    return words + [""] * (n - len(words))


# Statements that must run on the writer even though SQLite calls them
# read-only: on a pooled reader they would change (or open a transaction on)
# whichever reader ran them.
_WRITER_ONLY = frozenset({"PRAGMA", "SAVEPOINT", "RELEASE", "ROLLBACK", "ATTACH", "DETACH"})
_DML = frozenset({"INSERT", "REPLACE", "UPDATE", "DELETE"})


class _Shape:
    """What this module learned about one SQL text: its leading keywords,
    whether it writes (SQLite's verdict, from the reader probe) and whether
    it has no result columns. Both facts are properties of the statement,
    not of the data, so they are kept per text (see `_shape`)."""

    __slots__ = ("control", "first", "no_rows", "result", "savepoint", "writes")

    def __init__(self, sql: str) -> None:
        words = _first_words(sql)
        self.first = words[0]
        # ROLLBACK [TRANSACTION] TO name rolls back to a savepoint; a bare
        # ROLLBACK ends the transaction.
        self.savepoint = self.first in ("SAVEPOINT", "RELEASE") or (
            self.first == "ROLLBACK" and "TO" in words[1:]
        )
        # BEGIN / COMMIT / END / ROLLBACK never reach SQLite: the connection
        # runs them on its native transaction (see `Connection._control`).
        self.control: str | None = None
        if self.first in ("BEGIN", "COMMIT", "END") or (
            self.first == "ROLLBACK" and not self.savepoint
        ):
            self.control = "COMMIT" if self.first == "END" else self.first
        self.writes = self.first in _WRITER_ONLY
        self.no_rows = False
        # The result columns seen last time with their `description`, as one
        # attribute (threads may replace it at once): a statement's columns
        # change only with the schema, so comparing the names (no hashing)
        # finds the cached tuples.
        self.result: tuple[list[str], _Description | None] | None = None


_SHAPES_MAX = 1024
_shapes: dict[str, _Shape] = {}


def _shape(sql: str) -> _Shape:
    found = _shapes.get(sql)
    if found is None:
        found = _Shape(sql)
        if len(_shapes) >= _SHAPES_MAX:
            _shapes.clear()  # crude but bounded; statements are re-learned
        _shapes[sql] = found
    return found


_NO_ROWS: Iterator[tuple[Any, ...]] = iter(())


def _description(columns: Sequence[str]) -> _Description | None:
    """``description`` for these result columns; None for no columns."""
    return tuple((name, None, None, None, None, None, None) for name in columns) or None


# Streams a thread holds open, per database: at most one. A stream holds a
# pooled reader until it is exhausted or closed, so a thread that left
# several cursors half read would otherwise wait for itself forever once the
# pool (``max_readers``) ran dry. Before this module takes a reader it reads
# the thread's previous stream on that database into memory, giving its
# reader back; the common case (one result at a time) still streams.
#
# Keyed by (id(database), thread id): a live cursor keeps its connection and
# so its database alive, so a key whose cursor is still alive cannot belong
# to a recycled id; a dead weak reference is simply skipped. Single dict
# operations are atomic, so no lock is needed.
_live_streams: dict[tuple[int, int], weakref.ref[Cursor]] = {}


def _settle_live_stream(db: Database) -> None:
    """Buffer this thread's open stream on `db`, if any."""
    ref = _live_streams.pop((id(db), threading.get_ident()), None)
    cursor = None if ref is None else ref()
    if cursor is not None:
        cursor._buffer()


def _register_live_stream(db: Database, cursor: Cursor) -> tuple[int, int]:
    key = (id(db), threading.get_ident())

    def forget(ref: weakref.ref[Cursor]) -> None:  # the cursor was collected
        if _live_streams.get(key) is ref:
            _live_streams.pop(key, None)

    _live_streams[key] = weakref.ref(cursor, forget)
    return key


def _unregister_live_stream(key: tuple[int, int], cursor: Cursor) -> None:
    ref = _live_streams.get(key)
    if ref is not None and ref() is cursor:
        _live_streams.pop(key, None)


# ----------------------------------------------------------- connection


class Connection:
    """A DB-API connection over an `alk.Database`. Open one with `connect`.

    ``database`` is the underlying `alk.Database` (queues, streams, notify);
    ``transaction`` is the native transaction the connection has open, or
    None. Pass it as ``tx=`` so a job, event or notification commits or
    rolls back with the connection's SQL:

    >>> import tempfile, os
    >>> conn = connect(os.path.join(tempfile.mkdtemp(), "app.db"))
    >>> tx = conn.begin()  # or run any write first
    >>> _ = conn.database.queue("jobs").enqueue({"n": 1}, tx=conn.transaction)
    >>> conn.rollback()
    >>> conn.database.query("SELECT count(*) FROM _honker_live")
    [(0,)]
    >>> conn.close()

    The exception classes are attributes too (``conn.Error``,
    ``conn.IntegrityError``, ...), as PEP 249's optional extension has it.
    """

    Warning = Warning
    Error = Error
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError

    def __init__(
        self,
        database: Database,
        *,
        on_close: Callable[[Database], None] | None,
        autocommit: bool,
    ) -> None:
        self._database: Database | None = database
        self._on_close = on_close  # closes or releases the database; None: the caller's
        self._autocommit = autocommit
        self._tx: _native.Transaction | None = None

    def __repr__(self) -> str:
        state = "closed" if self._database is None else str(self._database.path)
        return f"<dbapi.Connection {state}>"

    # ------------------------------------------------------------ state

    def _db(self) -> Database:
        if self._database is None:
            raise ProgrammingError("the connection is closed")
        return self._database

    @property
    def database(self) -> Database:
        """The `alk.Database` this connection runs on."""
        return self._db()

    @property
    def closed(self) -> bool:
        """True after `close`."""
        return self._database is None

    @property
    def transaction(self) -> _native.Transaction | None:
        """The open native transaction, or None (nothing written yet since
        the last commit/rollback, or autocommit). See `begin`."""
        tx = self._tx
        if tx is not None and not tx.active:
            # Committed or rolled back directly on the native object.
            self._tx = tx = None
        return tx

    @property
    def in_transaction(self) -> bool:
        """True while a transaction is open."""
        return self.transaction is not None

    @property
    def autocommit(self) -> bool:
        """When True every statement commits on its own. Turning it on
        commits an open transaction (as ``sqlite3`` does)."""
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        self._db()
        if value and not self._autocommit:
            self.commit()
        self._autocommit = bool(value)

    @property
    def isolation_level(self) -> str | None:
        """``sqlite3``'s spelling of `autocommit`: None when every statement
        commits on its own, else ``"IMMEDIATE"`` (the only kind of
        transaction the core opens). Setting None turns autocommit on;
        ``"DEFERRED"``, ``"IMMEDIATE"``, ``"EXCLUSIVE"`` or ``""`` turn it
        off."""
        return None if self._autocommit else "IMMEDIATE"

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self.autocommit = _autocommit_for(value)

    def begin(self) -> _native.Transaction:
        """Open the transaction now (it would open on the first write
        anyway) and return it; returns the open one if there is one. Use it
        to enqueue or publish before any SQL has run. In autocommit mode it
        returns only a transaction opened by ``BEGIN`` in SQL."""
        db = self._db()
        tx = self.transaction
        if tx is None:
            if self._autocommit:
                raise ProgrammingError("begin() needs autocommit off (or BEGIN run first)")
            tx = self._tx = db.transaction()
        return tx

    # ----------------------------------------------------------- PEP 249

    def cursor(self) -> Cursor:
        """A new cursor on this connection."""
        if self._database is None:
            self._db()  # raises
        return Cursor(self)

    def create_function(
        self,
        name: str,
        narg: int,
        func: Callable[..., Any] | None,
        *,
        deterministic: bool = False,
    ) -> None:
        """``sqlite3``'s ``create_function``: make `func` callable from SQL as
        `name` with `narg` arguments (-1: any number); None removes it. It
        is registered on the `alk.Database`, so every connection sharing it
        (a pool's, with ``shared=True``) and every statement, on the writer
        or a reader, sees it.

        >>> import tempfile, os
        >>> conn = connect(os.path.join(tempfile.mkdtemp(), "app.db"))
        >>> conn.create_function("reverse", 1, lambda s: s[::-1], deterministic=True)
        >>> conn.execute("SELECT reverse('stressed')").fetchone()
        ('desserts',)
        >>> conn.close()
        """
        self._db().create_function(name, narg, func, deterministic=deterministic)

    def execute(self, operation: str, parameters: _Params = ()) -> Cursor:
        """``sqlite3``'s shortcut: run `operation` on a new cursor and
        return it."""
        return self.cursor().execute(operation, parameters)

    def executemany(self, operation: str, seq_of_parameters: Iterable[_Params]) -> Cursor:
        """``sqlite3``'s shortcut: `Cursor.executemany` on a new cursor."""
        return self.cursor().executemany(operation, seq_of_parameters)

    def commit(self) -> None:
        """Commit the open transaction (nothing to do when none is open)."""
        self._db()
        tx = self.transaction
        self._tx = None
        if tx is not None:
            tx.commit()

    def rollback(self) -> None:
        """Roll the open transaction back (nothing to do when none is open)."""
        self._db()
        tx = self.transaction
        self._tx = None
        if tx is not None:
            tx.rollback()

    def close(self) -> None:
        """Roll back an open transaction and close the connection (and the
        `alk.Database`, when `connect` opened it). Closing twice is a no-op."""
        if self._database is None:
            return
        try:
            self.rollback()
        finally:
            db, self._database = self._database, None
            if self._on_close is not None:
                self._on_close(db)

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """As ``sqlite3``: commit on success, roll back on an exception; the
        connection stays open."""
        if self._database is None:
            return
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    # -------------------------------------------- used by Cursor

    def _writer_tx(self) -> _native.Transaction | None:
        """The transaction a write must run in: the open one, or a new one
        (None in autocommit mode)."""
        tx = self.transaction
        if tx is not None or self._autocommit:
            return tx
        return self.begin()

    def _control(self, word: str) -> None:
        """Run ``BEGIN``, ``COMMIT`` (or ``END``) or ``ROLLBACK`` given as
        SQL, with SQLite's own errors for a transaction already open or not
        open. ``BEGIN`` works in autocommit mode too: the statements up to
        ``COMMIT`` then run in one transaction, as with ``sqlite3`` and
        ``isolation_level=None``."""
        db = self._db()
        tx = self.transaction
        if word == "BEGIN":
            if tx is not None:
                raise OperationalError("cannot start a transaction within a transaction")
            self._tx = db.transaction()
        elif tx is None:
            verb = "commit" if word == "COMMIT" else "rollback"
            raise OperationalError(f"cannot {verb} - no transaction is active")
        elif word == "COMMIT":
            self.commit()
        else:
            self.rollback()


# --------------------------------------------------------------- cursor


class Cursor:
    """A DB-API cursor. Get one with ``conn.cursor()``.

    >>> import tempfile, os
    >>> conn = connect(os.path.join(tempfile.mkdtemp(), "app.db"))
    >>> cur = conn.cursor()
    >>> _ = cur.execute("CREATE TABLE t(x)")
    >>> cur.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(5)]).rowcount
    5
    >>> _ = cur.execute("SELECT x FROM t WHERE x >= :lo", {"lo": 2})
    >>> cur.fetchone(), cur.fetchmany(1), cur.fetchall()
    ((2,), [(3,)], [(4,)])
    >>> conn.close()
    """

    __slots__ = (
        "__weakref__",
        "_connection",
        "_description",
        "_lastrowid",
        "_live_key",
        "_rowcount",
        "_rows",
        "_stream",
        "arraysize",
    )

    def __init__(self, connection: Connection) -> None:
        self._connection: Connection | None = connection
        self.arraysize = 1
        self._rows: Iterator[tuple[Any, ...]] = _NO_ROWS
        self._stream: _native.RowIterator | None = None
        self._description: _Description | None = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._live_key: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"<dbapi.Cursor {'closed' if self._connection is None else 'open'}>"

    # ------------------------------------------------------------ state

    def _conn(self) -> Connection:
        conn = self._connection
        if conn is None:
            raise ProgrammingError("the cursor is closed")
        if conn.closed:
            raise ProgrammingError("the cursor's connection is closed")
        return conn

    @property
    def connection(self) -> Connection:
        """The connection this cursor belongs to."""
        if self._connection is None:
            raise ProgrammingError("the cursor is closed")
        return self._connection

    @property
    def description(self) -> _Description | None:
        """One ``(name, None, None, None, None, None, None)`` per result
        column of the last statement; None when it returns no rows."""
        return self._description

    @property
    def rowcount(self) -> int:
        """Rows changed by the last INSERT/UPDATE/DELETE/REPLACE (summed over
        `executemany`); -1 for other statements, SELECT included."""
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:
        """The rowid of the row the last INSERT/REPLACE added; None after
        other statements or an insert that added nothing."""
        return self._lastrowid

    def _drop_rows(self) -> None:
        """Forget the current rows, giving their reader back to the pool."""
        if self._stream is not None or self._live_key is not None:
            self._end_stream()
        self._rows = _NO_ROWS
        self._description = None

    def _release(self) -> None:
        """Forget the current result: its rows and its counts."""
        self._drop_rows()
        self._rowcount = -1
        self._lastrowid = None

    def _buffer(self) -> None:
        """Read the rest of the streamed result into memory and give the
        reader back; fetching carries on from the buffer."""
        if self._stream is not None:
            self._rows = iter(list(self._stream))
            self._end_stream()

    def _end_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        key, self._live_key = self._live_key, None
        if key is not None:
            _unregister_live_stream(key, self)

    def _describe(self, shape: _Shape, columns: list[str]) -> None:
        """Set ``description``, reusing the statement's tuples while its
        columns stay the same."""
        result = shape.result
        if result is None or result[0] != columns:
            result = shape.result = (columns, _description(columns))
        self._description = result[1]

    # -------------------------------------------------------- execution

    def execute(self, operation: str, parameters: _Params = ()) -> Cursor:
        """Run one statement; returns the cursor, so
        ``cur.execute(...).fetchall()`` works."""
        # _conn()'s check, inlined: this is the path every statement of an
        # ORM takes.
        conn = self._connection
        if conn is None or conn._database is None:
            self._conn()  # raises the right error
        assert conn is not None
        self._release()
        shape = _shapes.get(operation) or _shape(operation)
        if shape.control is not None:
            conn._control(shape.control)
            return self
        if type(parameters) is tuple and _PLAIN.issuperset(map(type, parameters)):
            params: _Params = parameters  # the common case, without a call
        else:
            params = _adapt(parameters)
        tx = conn.transaction
        if tx is None and not shape.writes:
            # No transaction yet: a read runs on a reader snapshot; the first
            # batch of rows comes back with the call, and a result that fits
            # in it has already given its reader back.
            db = conn._database
            assert db is not None
            if _live_streams:
                _settle_live_stream(db)
            try:
                stream = db.iterate(operation, params)
            except WritingStatementError:
                # The native iterate() refuses a statement that writes
                # (sqlite3_stmt_readonly) before running it: our exact test
                # of "this statement writes" (WITH ... INSERT included).
                shape.writes = True
            else:
                self._rows = stream
                self._describe(shape, stream.columns)
                if not stream.exhausted:  # a long result: it streams
                    self._stream = stream
                    self._live_key = _register_live_stream(db, self)
                return self
        if tx is None:
            tx = conn._writer_tx()
        if tx is None:  # autocommit: the statement is its own transaction
            if shape.savepoint:
                # On the writer outside a transaction, SAVEPOINT would start
                # one behind the core's back.
                raise ProgrammingError("savepoints need a transaction: turn autocommit off")
            self._run_autocommit(conn.database, operation, params, shape)
        else:
            self._run_in(tx, operation, params, shape)
        return self

    def _run_in(self, tx: _native.Transaction, sql: str, params: _Params, shape: _Shape) -> None:
        if shape.no_rows:  # known to have no result columns: the short way
            result = tx.execute(sql, params)
            self._rowcount, self._lastrowid = result.rowcount, result.lastrowid
            return
        # One native call: the rows with the columns they ran with (a
        # statement cached before a schema change is recompiled when run),
        # or, for a statement without result columns, its counts.
        columns, rows, rowcount, lastrowid = tx._run(sql, params)
        if rows is None:
            shape.no_rows = True
            self._rowcount, self._lastrowid = rowcount, lastrowid
            return
        self._rows = iter(rows)
        self._describe(shape, columns)
        if shape.first in _DML:  # ... RETURNING: one row per changed row
            self._rowcount = len(rows)
            if shape.first in ("INSERT", "REPLACE") and rows:
                self._lastrowid = lastrowid

    def _run_autocommit(self, db: Database, sql: str, params: _Params, shape: _Shape) -> None:
        columns: list[str] = []
        if not shape.no_rows:
            _settle_live_stream(db)  # db.columns takes a reader
            columns = db.columns(sql)
        if not columns:
            shape.no_rows = True
            result = db.execute(sql, params)
            self._rowcount, self._lastrowid = result.rowcount, result.lastrowid
            return
        # A statement with rows that writes (... RETURNING); db.query sends it
        # to the writer as its own transaction.
        rows = db.query(sql, params)
        self._rows = iter(rows)
        self._describe(shape, columns)
        if shape.first in _DML:
            self._rowcount = len(rows)

    def executemany(self, operation: str, seq_of_parameters: Iterable[_Params]) -> Cursor:
        """Run one statement once per parameter set, in one native call (in
        the connection's transaction, or as one transaction in autocommit
        mode). ``rowcount`` is the total; ``lastrowid`` that of the last
        insert."""
        conn = self._conn()
        self._release()
        if _shape(operation).control is not None:
            raise ProgrammingError("executemany() cannot run BEGIN, COMMIT or ROLLBACK")
        batch = map(_adapt, seq_of_parameters)
        tx = conn._writer_tx()
        result = (
            conn.database.executemany(operation, batch)
            if tx is None
            else tx.executemany(operation, batch)
        )
        self._rowcount, self._lastrowid = result.rowcount, result.lastrowid
        return self

    # ---------------------------------------------------------- fetching

    def _next(self) -> tuple[Any, ...] | None:
        row = next(self._rows, None)
        if row is None and self._stream is not None:
            self._end_stream()  # exhausted: give the reader back now
        return row

    def fetchone(self) -> tuple[Any, ...] | None:
        """The next row, or None when there are no more."""
        conn = self._connection
        if conn is None or conn._database is None:
            self._conn()  # raises
        return self._next()

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        """Up to `size` (default ``arraysize``) next rows; [] at the end."""
        self._conn()
        want = self.arraysize if size is None else size
        out: list[tuple[Any, ...]] = []
        while len(out) < want:
            row = self._next()
            if row is None:
                break
            out.append(row)
        return out

    def fetchall(self) -> list[tuple[Any, ...]]:
        """All remaining rows."""
        conn = self._connection
        if conn is None or conn._database is None:
            self._conn()  # raises
        out = list(self._rows)
        if self._stream is not None:
            self._end_stream()  # exhausted: give the reader back now
        return out

    def __iter__(self) -> Cursor:
        return self

    def __next__(self) -> tuple[Any, ...]:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    # ------------------------------------------------------------ misc

    def setinputsizes(self, sizes: Any) -> None:
        """Accepted and ignored (PEP 249 allows it)."""

    def setoutputsize(self, size: Any, column: int | None = None) -> None:
        """Accepted and ignored (PEP 249 allows it)."""

    def close(self) -> None:
        """Close the cursor (its unread rows are dropped; ``rowcount`` and
        ``lastrowid`` keep their values, as in ``sqlite3``: SQLAlchemy reads
        them after closing the cursor of an INSERT). Closing twice is a
        no-op."""
        if self._connection is not None:
            self._drop_rows()
            self._connection = None

    def __enter__(self) -> Cursor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -------------------------------------------------------------- connect

_ISOLATION_LEVELS = ("", "DEFERRED", "IMMEDIATE", "EXCLUSIVE")


def _autocommit_for(isolation_level: str | None) -> bool:
    if isolation_level is None:
        return True
    if not isinstance(isolation_level, str) or isolation_level.upper() not in _ISOLATION_LEVELS:
        raise ProgrammingError(
            "isolation_level must be None, '', 'DEFERRED', 'IMMEDIATE' or 'EXCLUSIVE', "
            f"not {isolation_level!r}"
        )
    return False


# Databases opened by ``connect(path, shared=True)``: one per file and
# options, with the number of open connections using it; the last one to
# close closes the database.
_SharedKey: TypeAlias = tuple[str, tuple[tuple[str, Any], ...]]
_shared: dict[_SharedKey, tuple[Database, int]] = {}
_shared_lock = threading.Lock()


def _acquire_shared(
    path: str | os.PathLike[str], options: dict[str, Any], *, autocommit: bool
) -> Connection:
    key: _SharedKey = (os.path.realpath(path), tuple(sorted(options.items())))
    with _shared_lock:
        db, users = _shared.get(key) or (None, 0)
        if db is None or db.closed:  # closed behind the connections' backs: start over
            db, users = _open(path, **options), 0
        _shared[key] = (db, users + 1)

    def release(db: Database) -> None:
        with _shared_lock:
            held, users = _shared.get(key, (None, 0))
            if held is not db:  # replaced after being closed elsewhere
                return
            if users > 1:
                _shared[key] = (held, users - 1)
                return
            del _shared[key]
        db.close()

    return Connection(db, on_close=release, autocommit=autocommit)


def connect(
    database: str | os.PathLike[str] | None = None,
    *,
    db: Database | None = None,
    shared: bool = False,
    isolation_level: str | None = "IMMEDIATE",
    autocommit: bool = False,
    **kwargs: Any,
) -> Connection:
    """Open a DB-API connection on the file `database` (created if needed),
    or on an already open `alk.Database` given as ``db=`` (which the
    connection then does not close).

    With ``shared=True`` the connections opened on one file with the same
    options share one `alk.Database` (one writer, one reader pool, one
    statement cache), which the last of them closes: what a connection pool
    wants (the SQLAlchemy dialect uses it).

    ``isolation_level=None`` or ``autocommit=True`` makes every statement
    commit on its own (until ``BEGIN`` in SQL). Otherwise transactions open
    implicitly and always as ``BEGIN IMMEDIATE`` (the core's only kind:
    SQLite has one writer, and taking it up front avoids deadlock-prone lock
    upgrades); ``"DEFERRED"``, ``"EXCLUSIVE"`` and ``""`` are accepted for
    compatibility and mean the same. Other keyword arguments go to
    `alk.connect` (``max_readers``, ``busy_timeout_ms``, ``readonly``, ...).

    >>> import tempfile, os
    >>> conn = connect(os.path.join(tempfile.mkdtemp(), "app.db"), autocommit=True)
    >>> conn.cursor().execute("SELECT 1 + 1").fetchone()
    (2,)
    >>> conn.close()
    """
    autocommit = _autocommit_for(isolation_level) or autocommit
    if (database is None) == (db is None):
        raise InterfaceError("pass either a path or db=, not both or neither")
    if db is not None:
        if kwargs or shared:
            raise InterfaceError("shared= and database options apply only when opening a path")
        return Connection(db, on_close=None, autocommit=autocommit)
    assert database is not None
    if shared:
        return _acquire_shared(database, kwargs, autocommit=autocommit)
    return Connection(_open(database, **kwargs), on_close=Database.close, autocommit=autocommit)


sqlite_version: Final = _native.sqlite_version()
"""The version of the SQLite library compiled into the core (not the
system's), as ``sqlite3.sqlite_version`` has it."""
sqlite_version_info: Final = tuple(int(part) for part in sqlite_version.split("."))
