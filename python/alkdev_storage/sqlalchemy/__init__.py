"""SQLAlchemy on alkdev-storage: the ``sqlite+alkdev`` dialect, and the way
from a SQLAlchemy connection or ORM session to the database's queues,
streams and notifications *in the same transaction*.

>>> import os, tempfile
>>> from sqlalchemy import create_engine, text
>>> from sqlalchemy.orm import Session
>>> from alkdev_storage.sqlalchemy import database, transaction
>>> engine = create_engine(f"sqlite+alkdev:///{tempfile.mkdtemp()}/app.db")
>>> with Session(engine) as session, session.begin():
...     _ = session.execute(text("CREATE TABLE orders(id INTEGER PRIMARY KEY, total)"))
...     _ = session.execute(text("INSERT INTO orders(total) VALUES (42)"))
...     job = database(session).queue("receipts").enqueue({"order": 1}, tx=transaction(session))
>>> # committed together: the order and its job
>>> database(engine).query("SELECT count(*) FROM _honker_live")
[(1,)]
>>> engine.dispose()

`database` and `transaction` take an ORM `Session`, a Core `Connection`,
or the DB-API connection underneath; `database` also takes an `Engine`.
Under ``create_async_engine`` (same URL) they take an `AsyncSession`,
`AsyncConnection` or `AsyncEngine` and are awaited:
``tx = await transaction(session)``.
The module `alkdev_storage.sqlalchemy.metadata` holds `Table` objects for
the identity and metagraph tables. More in docs/sqlalchemy.md.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, overload

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from alkdev_storage import _native
from alkdev_storage import dbapi as _dbapi
from alkdev_storage._checks import shown
from alkdev_storage._database import Database
from alkdev_storage.aio import begin_transaction
from alkdev_storage.errors import InputTypeError
from alkdev_storage.sqlalchemy.dialect import AlkdevDialect

__all__ = ["AlkdevDialect", "database", "dbapi_connection", "transaction"]

_Async = AsyncSession | AsyncConnection | AsyncEngine


def _driver_connection(bind: Connection) -> _dbapi.Connection:
    """The `dbapi.Connection` under a Core connection, of either form of
    the dialect (the async form wraps it in an adapter)."""
    raw: Any = bind.connection.driver_connection
    if not isinstance(raw, _dbapi.Connection):
        raise InputTypeError(
            f"{shown(bind.engine.url.drivername)} is not the sqlite+alkdev dialect: "
            "its connections are not alkdev_storage.dbapi connections"
        )
    return raw


def dbapi_connection(bind: Session | Connection | _dbapi.Connection) -> _dbapi.Connection:
    """The `alkdev_storage.dbapi` connection under `bind`. For a `Session`
    this is the connection of its current transaction (which it begins, as
    ``session.connection()`` does)."""
    if isinstance(bind, _dbapi.Connection):
        return bind
    if isinstance(bind, Session):
        bind = bind.connection()
    if not isinstance(bind, Connection):
        raise InputTypeError(
            f"expected a Session, a Connection or a dbapi.Connection, not {type(bind).__name__}"
        )
    return _driver_connection(bind)


async def _async_dbapi_connection(bind: AsyncSession | AsyncConnection) -> _dbapi.Connection:
    conn = await bind.connection() if isinstance(bind, AsyncSession) else bind
    return _driver_connection(conn.sync_connection)  # type: ignore[arg-type]


async def _async_database(bind: _Async) -> Database:
    if isinstance(bind, AsyncEngine):
        async with bind.connect() as conn:
            return (await _async_dbapi_connection(conn)).database
    return (await _async_dbapi_connection(bind)).database


async def _async_transaction(bind: AsyncSession | AsyncConnection) -> _native.Transaction:
    conn = await _async_dbapi_connection(bind)
    tx = conn.transaction
    if tx is None:
        if conn.autocommit:
            conn.begin()  # raises what the sync form raises
        # Waits for the writer in the event loop, not on a parked thread.
        tx = await begin_transaction(conn.database, foreign_keys=conn.foreign_keys)
        conn._adopt(tx)
    return tx


@overload
def database(bind: Engine | Session | Connection | _dbapi.Connection) -> Database: ...
@overload
def database(bind: _Async) -> Coroutine[Any, Any, Database]: ...
def database(
    bind: Engine | Session | Connection | _dbapi.Connection | _Async,
) -> Database | Coroutine[Any, Any, Database]:
    """The `alk.Database` `bind` runs on: its queues, streams, notify,
    listeners and workers. From an `Engine` it borrows a pooled connection
    for the moment it takes to find the database; the engine's connections
    share that one database while any of them is open. For an
    `AsyncSession`, `AsyncConnection` or `AsyncEngine`, await it."""
    if isinstance(bind, _Async):
        return _async_database(bind)
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return dbapi_connection(conn).database
    return dbapi_connection(bind).database


@overload
def transaction(bind: Session | Connection | _dbapi.Connection) -> _native.Transaction: ...
@overload
def transaction(
    bind: AsyncSession | AsyncConnection,
) -> Coroutine[Any, Any, _native.Transaction]: ...
def transaction(
    bind: Session | Connection | _dbapi.Connection | AsyncSession | AsyncConnection,
) -> _native.Transaction | Coroutine[Any, Any, _native.Transaction]:
    """The native transaction of `bind`'s current SQLAlchemy transaction, to
    pass as ``tx=`` to ``enqueue``, ``publish`` or ``notify``: the job,
    event or notification then commits or rolls back with the ORM's rows.
    Opens the write transaction (``BEGIN IMMEDIATE``) if no statement has
    written yet, so reads after it see the same snapshot as the writes.
    A connection in ``AUTOCOMMIT`` isolation has none: ProgrammingError.
    For an `AsyncSession` or `AsyncConnection`, await it: the wait for
    the writer then runs on a worker thread, not on the event loop."""
    if isinstance(bind, AsyncSession | AsyncConnection):
        return _async_transaction(bind)
    return dbapi_connection(bind).begin()
