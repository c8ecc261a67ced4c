"""An asyncio face for a database: statements and transactions to await,
for services whose handlers are coroutines.

>>> import asyncio, os, tempfile
>>> import alkdev_storage as alk
>>> from alkdev_storage.aio import AsyncDatabase
>>> async def main(path):
...     with alk.connect(path) as db:
...         adb = AsyncDatabase(db)
...         await adb.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY, total)")
...         async with adb.transaction() as tx:
...             await tx.execute("INSERT INTO orders(total) VALUES (?)", (42,))
...             db.queue("receipts").enqueue({"order": 1}, tx=tx.native)
...         return await adb.query("SELECT count(*) FROM _honker_live")
>>> asyncio.run(main(os.path.join(tempfile.mkdtemp(), "app.db")))
[(1,)]

Where each call runs, as in the SQLAlchemy asyncio form
(`alkdev_storage.sqlalchemy.async_dialect`):

- Beginning a transaction never parks a thread: it begins at once on the
  loop's thread when the writer is free (`begin_transaction`), and
  otherwise the coroutine sleeps and tries again, up to ``busy_timeout_ms``.
  (A worker thread parked on the writer would be a thread the executor
  cannot give to the holder's ``commit``: with as many waiting
  transactions as threads, the holder could never commit.)
- What else may wait runs on a worker thread (the event loop's default
  executor) and is awaited there, so the loop goes on: writes outside a
  transaction (as their own transaction), reads outside one (they may wait
  for a pooled reader), ``commit`` (the writer's WAL hook may wait for old
  snapshots), and anything passed to `AsyncDatabase.run`.
- A statement inside an open `AsyncTransaction` runs at once on the loop's
  thread: the transaction holds the writer, so nothing makes it wait, and a
  hop to a thread costs more than a typical statement. So do a job, event
  or notification written with ``tx=tx.native``.

A transaction belongs to its object, not to a thread: its statements may
run on any thread, one at a time. A task cancelled while waiting for the
writer holds nothing.

The queue, stream, graph and identity APIs are synchronous; from a
coroutine, run a call that writes outside a transaction (or waits for
events) through `AsyncDatabase.run`, or use their async forms
(``queue.claim``, ``async for`` over a subscription).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from alkdev_storage import _native
from alkdev_storage.errors import BusyError, InputTypeError, ProgrammingError

if TYPE_CHECKING:  # at run time the native base is enough: _database imports this module
    from alkdev_storage._database import Database

__all__ = ["AsyncDatabase", "AsyncTransaction", "begin_transaction", "in_transaction"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


async def _off_loop(work: Callable[[], _T]) -> _T:
    """`work()` on the event loop's default executor, awaited."""
    return await asyncio.get_running_loop().run_in_executor(None, work)


# Waiting for the writer from a coroutine: the first try comes at once, then
# the pause between tries doubles up to the last (SQLite's busy handler waits
# for another process's lock the same way).
_FIRST_PAUSE_S = 0.0005
_LAST_PAUSE_S = 0.02


async def begin_transaction(db: Database, *, foreign_keys: bool = True) -> _native.Transaction:
    """``db.transaction()`` for a coroutine: begun on the loop's thread
    when the writer is free; otherwise the coroutine sleeps and tries again,
    up to the database's busy timeout (then `BusyError`), so no thread is
    parked waiting for the writer. Cancelling the wait leaves nothing
    held."""
    tx = db._try_transaction(foreign_keys=foreign_keys)
    if tx is not None:
        return tx
    # The budget counts the pauses this coroutine asked for, not the clock:
    # while other code blocks the loop (a synchronous write in a handler) the
    # writer may well have been free, and this coroutine had no turn to look.
    timeout_s = db.busy_timeout_ms / 1000
    waited = 0.0
    pause = _FIRST_PAUSE_S
    while True:
        await asyncio.sleep(pause)
        waited += pause
        tx = db._try_transaction(foreign_keys=foreign_keys)
        if tx is not None:
            return tx
        if waited >= timeout_s:
            raise BusyError(
                f"waited {db.busy_timeout_ms} ms (busy_timeout_ms) for this database's writer: "
                "another transaction held it all along"
            )
        pause = min(pause * 2, _LAST_PAUSE_S, max(timeout_s - waited, _FIRST_PAUSE_S))


async def in_transaction(db: Database, work: Callable[[_native.Transaction], _T]) -> _T:
    """``work(tx)`` in a transaction of its own, for a coroutine: begun by
    `begin_transaction` (no parked thread), `work` run on the loop's thread
    (in the held transaction nothing waits), committed on a worker thread;
    rolled back if `work` raises. What a queue's ``claim`` or an outbox's
    ``ack`` uses from async code."""
    tx = await begin_transaction(db)
    try:
        out = work(tx)
    except BaseException:
        tx.rollback()
        raise
    await _off_loop(tx.commit)
    return out


class AsyncDatabase:
    """Awaitable statements and transactions on an `alk.Database` (which
    stays usable as it is; this object only routes calls). Closing the
    database is the caller's, as before."""

    __slots__ = ("_db",)

    def __init__(self, db: Database) -> None:
        if not isinstance(db, _native.Database):
            raise InputTypeError(f"AsyncDatabase wraps an alk.Database, not {type(db).__name__}")
        self._db = db

    def __repr__(self) -> str:
        return f"<AsyncDatabase {self._db!r}>"

    @property
    def database(self) -> Database:
        """The `alk.Database` underneath."""
        return self._db

    async def run(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``fn(*args, **kwargs)`` on a worker thread: any synchronous call
        that may wait (an ``enqueue`` outside a transaction, a graph write,
        an identity call)."""
        return await _off_loop(functools.partial(fn, *args, **kwargs))

    async def execute(self, sql: str, params: Any = None) -> _native.ExecuteResult:
        """One statement as its own transaction (`alk.Database.execute`;
        ``BEGIN``, ``COMMIT`` and the like are refused: use
        `transaction`)."""
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    async def executemany(self, sql: str, seq_of_params: Iterable[Any]) -> _native.ExecuteResult:
        """`alk.Database.executemany`: every parameter set in one
        transaction."""
        async with self.transaction() as tx:
            return await tx.executemany(sql, seq_of_params)

    async def executescript(self, sql: str) -> None:
        """`alk.Database.executescript`, on a worker thread: the script
        may hold its own ``BEGIN`` … ``COMMIT``, so it takes the writer
        there (waiting for it, up to the busy timeout)."""
        await _off_loop(functools.partial(self._db.executescript, sql))

    async def query(self, sql: str, params: Any = None, *, as_dict: bool = False) -> list[Any]:
        """`alk.Database.query`: all rows, read on a pooled reader."""
        return await _off_loop(functools.partial(self._db.query, sql, params, as_dict=as_dict))

    async def query_one(self, sql: str, params: Any = None, *, as_dict: bool = False) -> Any:
        """`alk.Database.query_one`: the first row, or None."""
        return await _off_loop(functools.partial(self._db.query_one, sql, params, as_dict=as_dict))

    def transaction(self, *, foreign_keys: bool = True) -> AsyncTransaction:
        """A write transaction, begun when awaited or entered:
        ``async with adb.transaction() as tx`` (commit on success, roll
        back on an exception, cancellation included) or
        ``tx = await adb.transaction()`` then ``await tx.commit()``."""
        return AsyncTransaction(self._db, foreign_keys=foreign_keys)


class AsyncTransaction:
    """A write transaction of an `AsyncDatabase`. ``native`` is the
    `alk.Transaction`, to pass as ``tx=`` to queues, streams, notify and
    graph writes."""

    __slots__ = ("_db", "_foreign_keys", "_native")

    def __init__(self, db: Database, *, foreign_keys: bool) -> None:
        self._db = db
        self._foreign_keys = foreign_keys
        self._native: _native.Transaction | None = None

    def __repr__(self) -> str:
        state = "not begun" if self._native is None else repr(self._native)
        return f"<AsyncTransaction {state}>"

    @property
    def native(self) -> _native.Transaction:
        """The open `alk.Transaction`."""
        if self._native is None:
            raise ProgrammingError("the transaction is not begun yet: await it or enter it first")
        return self._native

    @property
    def active(self) -> bool:
        """True from begin until commit or rollback."""
        return self._native is not None and self._native.active

    async def _begin(self) -> AsyncTransaction:
        if self._native is None:
            self._native = await begin_transaction(self._db, foreign_keys=self._foreign_keys)
        return self

    def __await__(self) -> Any:
        return self._begin().__await__()

    async def __aenter__(self) -> AsyncTransaction:
        return await self._begin()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.active:
            return
        if exc_type is None:
            await self.commit()
        else:
            self.native.rollback()

    async def execute(self, sql: str, params: Any = None) -> _native.ExecuteResult:
        return self.native.execute(sql, params)

    async def executemany(self, sql: str, seq_of_params: Iterable[Any]) -> _native.ExecuteResult:
        return self.native.executemany(sql, seq_of_params)

    async def query(self, sql: str, params: Any = None, *, as_dict: bool = False) -> list[Any]:
        """Rows as the transaction sees them (its own writes included)."""
        native = self.native
        return native.query(sql, params, as_dict=True) if as_dict else native.query(sql, params)

    async def query_one(self, sql: str, params: Any = None, *, as_dict: bool = False) -> Any:
        native = self.native
        if as_dict:
            return native.query_one(sql, params, as_dict=True)
        return native.query_one(sql, params)

    async def commit(self) -> None:
        """Commit, on a worker thread (see the module documentation)."""
        await _off_loop(self.native.commit)

    async def rollback(self) -> None:
        self.native.rollback()
