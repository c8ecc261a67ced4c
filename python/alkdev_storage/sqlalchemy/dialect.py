"""The SQLAlchemy 2.x dialect ``sqlite+alkdev``: SQLAlchemy's SQLite dialect
(SQL compilation, types, reflection) over `alkdev_storage.dbapi`.

Registered by the entry point ``sqlalchemy.dialects: sqlite.alkdev``, so
``create_engine("sqlite+alkdev:///app.db")`` finds it once the package is
installed. What differs from ``sqlite+pysqlite`` (all in docs/sqlalchemy.md):

- The URL names a file; ``:memory:`` is refused (the core keeps a writer
  and a pool of readers, separate connections that only a file can share).
- The engine's pooled connections share one `alk.Database` per file and
  options (``dbapi.connect(..., shared=True)``), so the pool costs wrappers,
  not SQLite connections, and the database closes with the last of them.
- URL query options are the core's: ``max_readers``, ``busy_timeout_ms``,
  ``statement_cache``, ``readonly``; an unknown one is an error.
- Isolation levels: ``SERIALIZABLE`` (the default: SQLite's own, a WAL
  snapshot per read and one writer) and ``AUTOCOMMIT``.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import exc, pool, util
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine.interfaces import (
    ConnectArgsType,
    DBAPIConnection,
    DBAPICursor,
    DBAPIModule,
    IsolationLevel,
)
from sqlalchemy.engine.url import URL

from alkdev_storage import dbapi as _dbapi

# URL query options and the types they are coerced to: those of alk.connect.
_URL_OPTIONS: dict[str, type] = {
    "max_readers": int,
    "busy_timeout_ms": int,
    "statement_cache": int,
    "readonly": bool,
}


class AlkdevDialect(SQLiteDialect):
    """``sqlite+alkdev``: see the module documentation."""

    driver = "alkdev"
    default_paramstyle = "qmark"
    supports_statement_cache = True
    returns_native_bytes = True
    description_encoding = None

    _isolation_lookup = util.immutabledict({"SERIALIZABLE": 0, "AUTOCOMMIT": None})

    @classmethod
    def import_dbapi(cls) -> DBAPIModule:
        return _dbapi  # type: ignore[return-value]

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        return pool.QueuePool

    def _get_server_version_info(self, connection: Any) -> tuple[int, ...]:
        return _dbapi.sqlite_version_info

    def create_connect_args(self, url: URL) -> ConnectArgsType:
        if url.username or url.password or url.host or url.port:
            raise exc.ArgumentError(
                f"Invalid sqlite+alkdev URL: {url!r}; it names a file: "
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
        options: dict[str, Any] = {}
        for key, type_ in _URL_OPTIONS.items():
            util.coerce_kw_type(url.query, key, type_, dest=options)
        options["shared"] = True
        return [os.path.abspath(url.database)], options

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
        return isinstance(e, _dbapi.ProgrammingError) and "is closed" in str(e)


dialect = AlkdevDialect
