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
``BEGIN``/``COMMIT``/``END``/``ROLLBACK`` in SQL run on the connection's
native transaction, as its methods do. With ``autocommit=True`` (or
``isolation_level=None``) every statement commits on its own, until
``BEGIN``. With ``snapshot_reads=True`` the reads before a transaction's
first write run on one snapshot, kept until commit, rollback or that write,
instead of one reader each: they agree with each other (see
`Connection.snapshot_reads`).

Parameters: ``paramstyle`` is ``qmark`` (``?``); the named style
(``:name`` with a mapping) is accepted too. ``datetime.date``, ``time`` and
``datetime`` values are stored as ISO 8601 text, as ``sqlite3``'s classic
adapters did; ``Binary`` is ``bytes``.

Threads: ``threadsafety`` is 1 (share the module, not connections; a
cursor used by a second thread while the first is inside one of its calls
raises ``RuntimeError``). A connection's transaction is the connection's,
not its thread's, so a framework may end it on another thread of its pool.
Connections wrapping one `alk.Database` (``connect(db=...)``) take turns on
its writer: a second writer waits, on any thread, up to ``busy_timeout_ms``.

More in docs/dbapi.md.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
import re
import threading
import time as _time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from alkdev_storage import _native
from alkdev_storage._checks import shown
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
# 1: threads may share the module but not a connection at once: cursors keep
# their result state without locks. A connection may move between threads
# (its transaction is its own, not a thread's); connections may wrap the same
# `alk.Database`, whose writer they take in turn.
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


# ``PRAGMA foreign_keys`` (read or set), which the connection keeps itself:
# pysqlite scopes it to the connection, and here the writer is shared.
_FOREIGN_KEYS = re.compile(
    r"\s*PRAGMA\s+(?:(?:main|\"main\")\s*\.\s*)?foreign_keys"
    r"\s*(?:=\s*(?P<set>[^\s;]+)|\(\s*(?P<call>[^)]*?)\s*\))?\s*;?\s*",
    re.IGNORECASE,
)
_BOOLEANS = {"1": True, "ON": True, "TRUE": True, "YES": True}
_BOOLEANS |= {"0": False, "OFF": False, "FALSE": False, "NO": False}
_READ = "read"


def _parse_foreign_keys(sql: str) -> bool | str | None:
    """For ``PRAGMA foreign_keys``: `_READ`, or the value it sets; None for
    any other statement.

    >>> _parse_foreign_keys("pragma main.foreign_keys = off")
    False
    >>> _parse_foreign_keys("PRAGMA foreign_keys")
    'read'
    """
    found = _FOREIGN_KEYS.fullmatch(sql)
    if found is None:
        return None
    value = found["set"] if found["set"] is not None else found["call"]
    if value is None:
        return _READ
    setting = _BOOLEANS.get(value.strip("'\"").upper())
    if setting is None:
        raise ProgrammingError(
            f"PRAGMA foreign_keys takes ON, OFF, TRUE, FALSE, YES, NO, 1 or 0, not {shown(value)}"
        )
    return setting


class _Shape(_native.ShapeBase):
    """What this module learned about one SQL text: its leading keywords,
    whether it is transaction control or a savepoint statement, whether it
    may run on a reader (until SQLite's reader probe finds it writes), and
    the columns it ran with. All are properties of the statement, not of the
    data, so they are kept per text (see `_shape`). ``reader``, ``plain``,
    ``savepoint`` and ``columns`` are native (`_native.ShapeBase`): the
    native ``execute`` reads them."""

    __slots__ = ("control", "first", "foreign_keys")

    def __init__(self, sql: str) -> None:
        words = _first_words(sql)
        self.first = words[0]
        # PRAGMA foreign_keys: `_READ`, the value set, or None.
        self.foreign_keys = _parse_foreign_keys(sql) if self.first == "PRAGMA" else None
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
        # Runs in the connection's transaction as it is (not BEGIN/COMMIT/...,
        # nor PRAGMA foreign_keys, which the connection answers outside one).
        self.plain = self.control is None and self.foreign_keys is None
        # May run on a reader while no transaction is open; cleared when
        # SQLite finds that it writes.
        self.reader = self.plain and self.first not in _WRITER_ONLY
        # `columns`: the result columns seen last time, with their
        # `description`. A statement's columns change only with the schema,
        # so the cursor compares the names it ran with to these (no hashing)
        # and reuses the tuples; it replaces them whole, so threads sharing
        # the statement never see half an update.


# How a connection answers ``PRAGMA foreign_keys`` outside a transaction:
# one row, one column named as SQLite names it.
_FOREIGN_KEYS_READ = "SELECT ? AS foreign_keys"

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


# Streams a thread holds open, per database: at most one. A stream holds a
# pooled reader until it is exhausted or closed, so a thread that left
# several cursors half read would otherwise wait for itself forever once the
# pool (``max_readers``) ran dry. Before this module takes a reader it reads
# the thread's previous stream on that database into memory, giving its
# reader back; the common case (one result at a time) still streams.
#
# Keyed by (id(database), thread id); the value is a weak reference to the
# cursor. An entry is not removed when its stream ends (the native cursor
# does not call back here): buffering a cursor whose stream has ended, or
# that was closed, does nothing, so a stale entry costs one pop; a dead
# weak reference removes itself. Single dict operations are atomic, so no
# lock is needed.
_live_streams: dict[tuple[int, int], weakref.ref[Cursor]] = {}


def _settle_live_stream(db: Database) -> None:
    """Buffer this thread's open stream on `db`, if any."""
    ref = _live_streams.pop((id(db), threading.get_ident()), None)
    cursor = None if ref is None else ref()
    if cursor is not None:
        cursor._buffer()


def _register_live_stream(db: Database, cursor: Cursor) -> None:
    key = (id(db), threading.get_ident())

    def forget(ref: weakref.ref[Cursor]) -> None:  # the cursor was collected
        if _live_streams.get(key) is ref:
            _live_streams.pop(key, None)

    _live_streams[key] = weakref.ref(cursor, forget)


# ----------------------------------------------------------- connection


class Connection(_native.ConnectionBase):
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

    # `cursor()`, `commit()` and `rollback()` are native
    # (`_native.ConnectionBase`): SQLAlchemy calls them on every checkout.
    if TYPE_CHECKING:

        def cursor(self) -> Cursor:
            """A new cursor on this connection."""

    def __init__(
        self,
        database: Database,
        *,
        on_close: Callable[[Database], None] | None,
        autocommit: bool,
        snapshot_reads: bool = False,
    ) -> None:
        self._database: Database | None = database
        self._on_close = on_close  # closes or releases the database; None: the caller's
        self._autocommit = autocommit
        self._snapshot_reads = snapshot_reads
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
    def snapshot_reads(self) -> bool:
        """When True (``connect(..., snapshot_reads=True)``), the reads of a
        transaction that run before its first write all see one snapshot:
        the committed state at the first of them, kept until `commit`,
        `rollback` or that write (see the module documentation)."""
        return self._snapshot_reads

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
            self._end_snapshot()  # from here on the transaction reads on the writer
            tx = self._tx = db.transaction(foreign_keys=self._foreign_keys)
        return tx

    def _adopt(self, tx: _native.Transaction) -> None:
        """Make `tx`, begun on this connection's database with its
        `foreign_keys` setting, the connection's transaction: how the
        asyncio form opens one without parking a thread on the writer
        (`alkdev_storage.aio.begin_transaction`)."""
        if self.transaction is not None:
            tx.rollback()
            raise ProgrammingError("the connection already has an open transaction")
        self._end_snapshot()
        self._tx = tx

    @property
    def foreign_keys(self) -> bool:
        """Whether this connection's transactions check foreign keys: True
        unless ``PRAGMA foreign_keys=OFF`` ran on it (run inside a
        transaction, it applies from the next one). As on pysqlite, the
        setting is the connection's: other connections on the same database
        (a pool's, sharing its writer) keep checking them."""
        return bool(self._foreign_keys)

    # ----------------------------------------------------------- PEP 249

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

    def _foreign_keys_pragma(self, cursor: Cursor, setting: bool | str) -> bool:
        """Answer or apply ``PRAGMA foreign_keys``, as SQLite would on a
        connection of its own: a read gives this connection's setting, a
        write changes it for the transactions it opens from now on. False
        inside a transaction: the statement runs as written there, and
        SQLite leaves that transaction as it is; the new setting still
        applies from the next one. (On pysqlite, DDL opens no transaction,
        so a migration tool's ``PRAGMA foreign_keys=ON`` after DDL takes
        effect; here DDL is transactional, and this keeps that promise.)"""
        if self.transaction is not None:
            if setting != _READ:
                self._foreign_keys = bool(setting)
            return False
        if setting == _READ:
            cursor._read(_FOREIGN_KEYS_READ, (int(self._foreign_keys),), _shape(_FOREIGN_KEYS_READ))
        else:
            self._foreign_keys = bool(setting)
            cursor._set_counts(-1, None)
        return True

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
            self._end_snapshot()
            self._tx = db.transaction(foreign_keys=self._foreign_keys)
        elif tx is None:
            verb = "commit" if word == "COMMIT" else "rollback"
            raise OperationalError(f"cannot {verb} - no transaction is active")
        elif word == "COMMIT":
            self.commit()
        else:
            self.rollback()


# --------------------------------------------------------------- cursor


class Cursor(_native.CursorBase):
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

    The result and the fetch methods (``description``, ``rowcount``,
    ``lastrowid``, ``arraysize``, ``fetch*``, ``close``) are native
    (`_native.CursorBase`); this class decides where each statement runs.
    """

    __slots__ = ()

    if TYPE_CHECKING:  # the native attributes, typed for this module's classes

        @property
        def connection(self) -> Connection:
            """The connection this cursor belongs to."""

        @property
        def _connection(self) -> Connection | None: ...

        def _conn(self) -> Connection: ...

    def __repr__(self) -> str:
        return f"<dbapi.Cursor {'closed' if self._connection is None else 'open'}>"

    # -------------------------------------------------------- execution

    def _execute(self, operation: str, parameters: _Params) -> None:
        """What `execute` does not do natively: learn a new statement's
        shape, adapt dates and times, settle another stream of the thread,
        and run statements on the writer or in the connection's
        transaction."""
        conn = self._conn()
        self._release()
        shape = _shape(operation)
        if shape.control is not None:
            conn._control(shape.control)
            return
        if shape.foreign_keys is not None and conn._foreign_keys_pragma(self, shape.foreign_keys):
            return
        params = _adapt(parameters)
        tx = conn.transaction
        if tx is None and shape.reader:
            # No transaction yet: a read runs on a reader snapshot; the first
            # batch of rows comes back with the call, and a result that fits
            # in it has already given its reader back.
            db = conn._database
            assert db is not None
            if not conn._reads_on_snapshot:
                _settle_live_stream(db)  # the read takes a pooled reader
            try:
                streams = self._read(operation, params, shape)
            except WritingStatementError:
                # The native read refuses a statement that writes
                # (sqlite3_stmt_readonly) before running it: our exact test
                # of "this statement writes" (WITH ... INSERT included).
                shape.reader = False
            else:
                if streams:  # a long result: it holds its reader
                    self._track_stream(db)
                return
        if tx is None and shape.first == "PRAGMA":
            # As on pysqlite, a PRAGMA outside a transaction opens none (one
            # left open would swallow a later PRAGMA foreign_keys): it runs
            # on its own, on the writer, since it may set something.
            self._run_alone(conn.database, operation, params, shape)
            return
        if tx is None:
            tx = conn._writer_tx()
        if tx is None:  # autocommit: the statement is its own transaction
            if shape.savepoint:
                # On the writer outside a transaction, SAVEPOINT would start
                # one behind the core's back.
                raise ProgrammingError("savepoints need a transaction: turn autocommit off")
            if conn._foreign_keys:
                self._run_alone(conn.database, operation, params, shape)
            else:  # its own transaction, begun with foreign keys off
                with conn.database.transaction(foreign_keys=False) as alone:
                    self._run_in(alone, operation, params, shape)
        else:
            self._run_in(tx, operation, params, shape)

    def _track_stream(self, db: Database) -> None:
        """Called when a result streams (holds a reader): see
        `_live_streams`."""
        _register_live_stream(db, self)

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
        if tx is not None:
            result = tx.executemany(operation, batch)
        elif conn._foreign_keys:
            result = conn.database.executemany(operation, batch)
        else:  # autocommit with foreign keys off: one transaction begun so
            with conn.database.transaction(foreign_keys=False) as alone:
                result = alone.executemany(operation, batch)
        self._set_counts(result.rowcount, result.lastrowid)
        return self

    # ------------------------------------------------------------ misc

    def setinputsizes(self, sizes: Any) -> None:
        """Accepted and ignored (PEP 249 allows it)."""

    def setoutputsize(self, size: Any, column: int | None = None) -> None:
        """Accepted and ignored (PEP 249 allows it)."""


# The native `Cursor.execute` reads both dicts, and the native
# `Connection.cursor` makes a `Cursor` (see rust/dbapi.rs).
_native._dbapi_hooks(_shapes, _live_streams, Cursor)

# -------------------------------------------------------------- connect

_ISOLATION_LEVELS = ("", "DEFERRED", "IMMEDIATE", "EXCLUSIVE")


def _autocommit_for(isolation_level: str | None) -> bool:
    if isolation_level is None:
        return True
    if not isinstance(isolation_level, str) or isolation_level.upper() not in _ISOLATION_LEVELS:
        raise ProgrammingError(
            "isolation_level must be None, '', 'DEFERRED', 'IMMEDIATE' or 'EXCLUSIVE', "
            f"not {shown(isolation_level)}"
        )
    return False


# Databases opened by ``connect(path, shared=True)``: one per file and
# options, with the number of open connections using it; the last one to
# close closes the database.
_SharedKey: TypeAlias = tuple[str, tuple[tuple[str, Any], ...]]
_shared: dict[_SharedKey, tuple[Database, int]] = {}
_shared_lock = threading.Lock()


def _acquire_shared(
    path: str | os.PathLike[str],
    options: dict[str, Any],
    *,
    autocommit: bool,
    snapshot_reads: bool,
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

    return Connection(db, on_close=release, autocommit=autocommit, snapshot_reads=snapshot_reads)


def connect(
    database: str | os.PathLike[str] | None = None,
    *,
    db: Database | None = None,
    shared: bool = False,
    isolation_level: str | None = "IMMEDIATE",
    autocommit: bool = False,
    snapshot_reads: bool = False,
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
    compatibility and mean the same.

    ``snapshot_reads=True`` makes the reads of each transaction, up to its
    first write, see one snapshot (see the module documentation): what the
    SQLAlchemy dialect asks for. Other keyword arguments go to
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
        return Connection(db, on_close=None, autocommit=autocommit, snapshot_reads=snapshot_reads)
    assert database is not None
    if shared:
        return _acquire_shared(
            database, kwargs, autocommit=autocommit, snapshot_reads=snapshot_reads
        )
    return Connection(
        _open(database, **kwargs),
        on_close=Database.close,
        autocommit=autocommit,
        snapshot_reads=snapshot_reads,
    )


sqlite_version: Final = _native.sqlite_version()
"""The version of the SQLite library compiled into the core (not the
system's), as ``sqlite3.sqlite_version`` has it."""
sqlite_version_info: Final = tuple(int(part) for part in sqlite_version.split("."))
