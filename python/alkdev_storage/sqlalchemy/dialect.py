"""The SQLAlchemy 2.x dialect ``sqlite+alkdev``: SQLAlchemy's SQLite dialect
(SQL compilation, types, reflection) over `alkdev_storage.dbapi`.

Registered by the entry point ``sqlalchemy.dialects: sqlite.alkdev``, so
``create_engine("sqlite+alkdev:///app.db")`` finds it once the package is
installed, and ``create_async_engine`` on the same URL finds its asyncio
form (`alkdev_storage.sqlalchemy.async_dialect`). What differs from
``sqlite+pysqlite`` (all in docs/sqlalchemy.md):

- The URL names a file; ``:memory:`` is refused (the core keeps a writer
  and a pool of readers, separate connections that only a file can share).
- The engine's pooled connections share one `alk.Database` per file and
  options (``dbapi.connect(..., shared=True)``), so the pool costs wrappers,
  not SQLite connections, and the database closes with the last of them.
- URL query options are the core's: ``max_readers``, ``busy_timeout_ms``,
  ``statement_cache``, ``readonly``; and ``snapshot_reads`` (default true):
  the reads of a transaction before its first write share one WAL snapshot
  (``dbapi.connect(..., snapshot_reads=True)``). An unknown option is an
  error.
- Reflection leaves honker's ``_honker_*`` tables out, as SQLite's own
  ``sqlite_*`` ones are (``sqlite_include_internal=True`` lists them).
- Isolation levels: ``SERIALIZABLE`` (the default: SQLite's own, one WAL
  snapshot for a transaction's reads and one writer) and ``AUTOCOMMIT``.
"""

from __future__ import annotations

import os
import re
from typing import Any

from sqlalchemy import exc, pool, util
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import reflection
from sqlalchemy.engine.interfaces import (
    ConnectArgsType,
    DBAPIConnection,
    DBAPICursor,
    DBAPIModule,
    Dialect,
    IsolationLevel,
)
from sqlalchemy.engine.url import URL

import alkdev_storage
from alkdev_storage import dbapi as _dbapi
from alkdev_storage._checks import shown
from alkdev_storage.errors import DatabaseClosedError

HONKER_TABLE_PREFIX = "_honker_"
"""The tables honker keeps in every file (queues, streams, notifications,
locks, ...): reflection leaves them out."""

# URL query options and the types they are coerced to: those of alk.connect,
# and dbapi.connect's snapshot_reads (on unless the URL says false).
_URL_OPTIONS: dict[str, type] = {
    "max_readers": int,
    "busy_timeout_ms": int,
    "statement_cache": int,
    "readonly": bool,
    "snapshot_reads": bool,
}


class AlkdevDialect(SQLiteDialect):
    """``sqlite+alkdev``: see the module documentation."""

    driver = "alkdev"
    default_paramstyle = "qmark"
    supports_statement_cache = True
    returns_native_bytes = True
    description_encoding = None

    # As pysqlite's, AUTOCOMMIT maps to None (no PRAGMA to run).
    _isolation_lookup = util.immutabledict(
        {"SERIALIZABLE": 0, "AUTOCOMMIT": None}  # type: ignore[dict-item]
    )

    @classmethod
    def import_dbapi(cls) -> DBAPIModule:
        return _dbapi  # type: ignore[return-value]

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        return pool.QueuePool

    @classmethod
    def get_async_dialect_cls(cls, url: URL) -> type[Dialect]:
        """``create_async_engine`` on the same URL gets the asyncio form
        (`alkdev_storage.sqlalchemy.async_dialect`)."""
        from alkdev_storage.sqlalchemy.async_dialect import AlkdevAsyncDialect

        return AlkdevAsyncDialect

    def _get_server_version_info(self, connection: Any) -> tuple[int, ...]:
        return _dbapi.sqlite_version_info

    def retrieve_dbapi_version(self, dbapi: DBAPIModule) -> util.VersionInfo:
        """``dialect.dbapi_version``: the alkdev-storage release, whose
        `dbapi` module this is (the SQLite inside it is
        ``server_version_info``)."""
        release = re.match(r"\d+(\.\d+)*", alkdev_storage.__version__)
        assert release is not None, alkdev_storage.__version__  # PEP 440 starts so
        return util.VersionInfo(tuple(int(part) for part in release.group().split(".")))

    def create_connect_args(self, url: URL) -> ConnectArgsType:
        if url.username or url.password or url.host or url.port:
            raise exc.ArgumentError(
                f"Invalid sqlite+alkdev URL: {shown(url)}; it names a file: "
                "sqlite+alkdev:///relative/path.db or sqlite+alkdev:////absolute/path.db"
            )
        if not url.database or url.database == ":memory:" or url.query.get("mode") == "memory":
            raise exc.ArgumentError(
                "sqlite+alkdev needs a database file: the core's writer and readers are "
                "separate SQLite connections, which an in-memory database cannot share"
            )
        unknown = sorted(set(url.query) - set(_URL_OPTIONS))
        if unknown:
            raise exc.ArgumentError(
                f"unknown sqlite+alkdev URL option(s) {', '.join(unknown)}; "
                f"known: {', '.join(_URL_OPTIONS)}"
            )
        options: dict[str, Any] = {"snapshot_reads": True}
        for key, type_ in _URL_OPTIONS.items():
            util.coerce_kw_type(url.query, key, type_, dest=options)
        options["shared"] = True
        return [os.path.abspath(url.database)], options

    # ------------------------------------------------------- reflection

    @reflection.cache
    def get_table_names(
        self,
        connection: Any,
        schema: str | None = None,
        sqlite_include_internal: bool = False,
        **kw: Any,
    ) -> list[str]:
        """As SQLite's, and honker's ``_honker_*`` tables are internal too:
        left out unless ``sqlite_include_internal=True``, so that
        ``MetaData.reflect()`` or a migration tool comparing schemas never
        claims (or drops) them."""
        names: list[str] = super().get_table_names(  # type: ignore[no-untyped-call]
            connection, schema, sqlite_include_internal=sqlite_include_internal, **kw
        )
        if sqlite_include_internal:
            return names
        return [name for name in names if not name.startswith(HONKER_TABLE_PREFIX)]

    # ------------------------------------------------------- isolation

    def set_isolation_level(self, dbapi_connection: DBAPIConnection, level: IsolationLevel) -> None:
        dbapi_connection.autocommit = level == "AUTOCOMMIT"

    def get_isolation_level(self, dbapi_connection: DBAPIConnection) -> IsolationLevel:
        # As with pysqlite, the level is SQLite's; autocommit is tracked
        # apart (detect_autocommit_setting).
        return "SERIALIZABLE"

    def detect_autocommit_setting(self, dbapi_conn: DBAPIConnection) -> bool:
        return bool(dbapi_conn.autocommit)

    def is_disconnect(
        self,
        e: Exception,
        connection: Any,
        cursor: DBAPICursor | None,
    ) -> bool:
        # The connection, or the shared database under it, was closed: the
        # pool discards the connection and the next one opens afresh.
        return isinstance(e, DatabaseClosedError) or (
            isinstance(e, _dbapi.ProgrammingError) and "connection is closed" in str(e)
        )


dialect = AlkdevDialect
