"""The asyncio form of ``sqlite+alkdev``: what ``create_async_engine`` gets
for the same URL (``AlkdevDialect.get_async_dialect_cls``), as
``postgresql+psycopg`` serves both forms.

SQLAlchemy's asyncio extension runs the ORM's synchronous code in a greenlet
and expects the driver's calls to be awaitable. The driver here is the
synchronous `alkdev_storage.dbapi`, so this module adapts it; what it adds is
where each call runs:

- The statement that opens a transaction (the first write, ``BEGIN``, a
  savepoint; in ``AUTOCOMMIT`` isolation every write) first takes the
  writer without parking a thread: at once when it is free, else the
  coroutine sleeps and tries again, up to ``busy_timeout_ms``
  (`alkdev_storage.aio.begin_transaction`). A thread parked on the writer
  would be one the executor cannot give to the holder's ``commit``: with
  as many waiting sessions as threads, nobody could commit.
- A statement inside the connection's open transaction runs at once, on the
  loop's thread: the transaction holds the writer, so nothing can make it
  wait, and a hop to a thread would cost more than the statement. So do
  reads on the connection's snapshot, the first one included (it takes an
  idle snapshot connection or opens one: nothing to wait for).
- The rest may wait and runs on a worker thread (the event loop's default
  executor) while the loop goes on: ``commit`` (the writer's WAL hook may
  wait for old snapshots), reads with ``snapshot_reads=false`` or in
  ``AUTOCOMMIT`` (they may wait for a pooled reader), a PRAGMA outside a
  transaction, opening and closing.

Each statement is executed and its rows fetched in one call, so a statement
costs at most one trip to a thread. The rows come back whole, as with every
asyncio driver under SQLAlchemy's default (non-streaming) results.
"""

from __future__ import annotations

import enum
import functools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import pool
from sqlalchemy.engine import AdaptedConnection
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPIModule
from sqlalchemy.engine.url import URL
from sqlalchemy.util.concurrency import await_

from alkdev_storage import dbapi as _dbapi
from alkdev_storage.aio import _off_loop, begin_transaction
from alkdev_storage.sqlalchemy.dialect import AlkdevDialect

__all__ = ["AlkdevAsyncDialect"]

_T = TypeVar("_T")


async def _nothing() -> None:
    """Completes without yielding to the loop."""


def _awaited() -> None:
    """One await that costs a greenlet switch and nothing more. SQLAlchemy's
    asyncio extension requires every ``await conn.execute(...)`` to await
    something (a guard against sync drivers); a statement run inline awaits
    this."""
    await_(_nothing())


def _waiting(work: Callable[[], _T]) -> _T:
    """Run `work` on a worker thread and wait for it without holding up the
    event loop (from the greenlet SQLAlchemy runs the ORM in)."""
    return await_(_off_loop(work))


class _Where(enum.Enum):
    INLINE = "inline"  # on the loop's thread: nothing it does can wait
    BEGIN = "begin"  # it needs the writer: begin_transaction, then inline
    OFF_LOOP = "off loop"  # on a worker thread


class AsyncAdaptedCursor:
    """The cursor SQLAlchemy's asyncio extension uses: a `dbapi.Cursor`
    whose statements run whole (executed, rows fetched) in one call, on a
    worker thread unless they cannot wait (see the module documentation)."""

    __slots__ = (
        "_adapted",
        "_cursor",
        "_rows",
        "arraysize",
        "description",
        "lastrowid",
        "rowcount",
    )
    server_side = False

    def __init__(self, adapted: AsyncAdaptedConnection) -> None:
        self._adapted = adapted
        self._cursor = adapted._connection.cursor()
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    def _finish(self, rows: list[Any] | None) -> None:
        cursor = self._cursor
        self.description = cursor.description
        self.rowcount = cursor.rowcount
        self.lastrowid = cursor.lastrowid
        self._rows = deque(rows) if rows else deque()

    def execute(self, operation: str, parameters: Any = None) -> None:
        cursor = self._cursor
        params = () if parameters is None else parameters

        def run() -> list[Any] | None:
            cursor.execute(operation, params)
            return cursor.fetchall() if cursor.description is not None else None

        adapted = self._adapted
        where = adapted._where(operation)
        if where is _Where.BEGIN and _dbapi._shape(operation).control == "BEGIN":
            adapted._begin()  # BEGIN in SQL: the transaction is open now
            self._finish(None)
        elif where is _Where.OFF_LOOP:
            self._finish(_waiting(run))
        else:
            self._finish(adapted._inline(run, begin=where is _Where.BEGIN))

    def executemany(self, operation: str, seq_of_parameters: Sequence[Any]) -> None:
        cursor = self._cursor

        def run() -> None:
            cursor.executemany(operation, seq_of_parameters)

        self._adapted._inline(run, begin=not self._adapted._connection.in_transaction)
        self._finish(None)

    def close(self) -> None:
        self._rows.clear()
        self._cursor.close()

    async def _async_soft_close(self) -> None:
        """What SQLAlchemy's asyncio results call before handing rows to sync
        code: nothing to do, the rows are already here."""

    def setinputsizes(self, *sizes: Any) -> None:
        """Accepted and ignored, as `dbapi.Cursor.setinputsizes`."""

    def setoutputsize(self, size: Any, column: int | None = None) -> None:
        """Accepted and ignored."""

    def __iter__(self) -> Iterator[Any]:
        while self._rows:
            yield self._rows.popleft()

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = self._rows
        count = min(self.arraysize if size is None else size, len(rows))
        return [rows.popleft() for _ in range(count)]

    def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows


class AsyncAdaptedConnection(AdaptedConnection):
    """A `dbapi.Connection` as SQLAlchemy's asyncio extension drives it.
    ``driver_connection`` is the `dbapi.Connection` itself (what
    `alkdev_storage.sqlalchemy.database` and ``transaction`` reach)."""

    __slots__ = ()
    _connection: _dbapi.Connection  # type: ignore[assignment]  # a sync DB-API connection

    def __init__(self, connection: _dbapi.Connection) -> None:
        self._connection = connection

    def _where(self, operation: str) -> _Where:
        """Where `operation` runs: see the module documentation."""
        conn = self._connection
        if conn.in_transaction:
            return _Where.INLINE
        shape = _dbapi._shape(operation)
        if shape.reader:
            # On the connection's snapshot (begun by this read if need be):
            # a snapshot connection is idle or opened, never waited for. A
            # pooled reader may have to be waited for.
            return _Where.INLINE if conn._reads_on_snapshot else _Where.OFF_LOOP
        if shape.first == "PRAGMA" or not (shape.plain or shape.control == "BEGIN"):
            # A PRAGMA runs on its own on the writer (as dbapi does it), and
            # COMMIT or ROLLBACK with no transaction only raises.
            return _Where.OFF_LOOP
        return _Where.BEGIN  # it writes: it needs the transaction

    def _begin(self) -> None:
        """Open the connection's transaction, waiting for the writer in the
        event loop rather than on a thread."""
        conn = self._connection
        tx = await_(begin_transaction(conn.database, foreign_keys=conn.foreign_keys))
        conn._adopt(tx)

    def _inline(self, run: Callable[[], _T], *, begin: bool) -> _T:
        """`run` on the loop's thread, in the connection's transaction
        (opened first when `begin`). In autocommit mode that transaction is
        the statement's own, committed right after it."""
        if not begin:
            _awaited()
            return run()
        self._begin()
        conn = self._connection
        if not conn.autocommit:
            return run()
        try:
            out = run()
        except BaseException:
            conn.rollback()
            raise
        _waiting(conn.commit)
        return out

    def cursor(self, server_side: bool = False) -> AsyncAdaptedCursor:
        return AsyncAdaptedCursor(self)

    def execute(self, operation: str, parameters: Any = None) -> AsyncAdaptedCursor:
        cursor = self.cursor()
        cursor.execute(operation, parameters)
        return cursor

    def commit(self) -> None:
        _waiting(self._connection.commit)

    def rollback(self) -> None:
        # Nothing here waits (ROLLBACK runs no checkpoint); the pool calls
        # this on every checkin, mostly with nothing open.
        conn = self._connection
        if conn._tx is not None or conn._in_snapshot:
            conn.rollback()

    def close(self) -> None:
        _waiting(self._connection.close)

    def terminate(self) -> None:
        """Close without waiting for the loop (a pool discarding the
        connection, possibly from garbage collection)."""
        self._connection.close()

    @property
    def autocommit(self) -> bool:
        return self._connection.autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        conn = self._connection
        if value and conn.in_transaction:  # turning it on commits
            _waiting(functools.partial(setattr, conn, "autocommit", value))
        else:
            conn.autocommit = value

    @property
    def in_transaction(self) -> bool:
        return self._connection.in_transaction

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._connection.create_function(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # The rest of the DB-API connection (``database``, ``transaction``,
        # ``begin``...), for code that reaches for it through the adapter.
        return getattr(self._connection, name)


class _AsyncDBAPI:
    """The DB-API module the async dialect sees: `alkdev_storage.dbapi`'s
    names, with ``connect`` opening off the loop."""

    def __init__(self) -> None:
        for name in _dbapi.__all__:
            if name != "connect":
                setattr(self, name, getattr(_dbapi, name))

    def connect(self, *args: Any, **kwargs: Any) -> AsyncAdaptedConnection:
        return AsyncAdaptedConnection(_waiting(functools.partial(_dbapi.connect, *args, **kwargs)))


class AlkdevAsyncDialect(AlkdevDialect):
    """``sqlite+alkdev`` under ``create_async_engine``: see the module
    documentation."""

    is_async = True
    has_terminate = True
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> DBAPIModule:
        return _AsyncDBAPI()  # type: ignore[return-value]

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        return pool.AsyncAdaptedQueuePool

    def get_driver_connection(self, connection: DBAPIConnection) -> Any:
        return connection._connection

    def do_terminate(self, dbapi_connection: DBAPIConnection) -> None:
        dbapi_connection.terminate()


dialect = AlkdevAsyncDialect
