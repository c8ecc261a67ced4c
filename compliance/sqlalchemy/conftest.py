"""Runs SQLAlchemy's dialect compliance suite (``sqlalchemy.testing.suite``,
the one third-party dialects run) against ``sqlite+alkdev``, or against the
stock ``sqlite+pysqlite`` for comparison (``--db pysqlite``).

Not collected by the main test run: SQLAlchemy's plugin takes over the
pytest session, so tests/test_sqlalchemy_suite.py runs this folder as a
pytest run of its own, and tools/sqlalchemy_compliance.py runs it for both
dialects and writes the table in docs/sqlalchemy.md.
"""

# The order of imports matters here (SQLAlchemy's plugin first).
# ruff: noqa: E402, I001

import os

import pytest
from sqlalchemy import event
from sqlalchemy.dialects import registry

registry.register("sqlite.alkdev", "alkdev_storage.sqlalchemy.dialect", "AlkdevDialect")
# The asyncio form under a name of its own, for this suite only: users reach
# it with create_async_engine("sqlite+alkdev://..."), while the suite picks
# a dialect by URL and drives an async one through greenlets itself.
registry.register(
    "sqlite.alkdev_async", "alkdev_storage.sqlalchemy.async_dialect", "AlkdevAsyncDialect"
)

pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: F403

# Provisioning: SQLAlchemy's SQLite routines (file names per driver, temp
# table keywords, upsert, cleanup), found by backend name "sqlite" once
# imported. One is changed for alkdev: the stock post-configure hook ATTACHes
# a second file as schema "test_schema" on every new connection; ATTACH binds
# one SQLite connection, while alkdev's database is a writer plus a pool of
# readers, so the "schemas" requirement is closed for it (requirements.py)
# and nothing is attached.
from sqlalchemy.dialects.sqlite import provision as _sqlite_provision  # noqa: F401
from sqlalchemy.testing.provision import post_configure_engine

_stock_post_configure = post_configure_engine.fns["sqlite"]


@post_configure_engine.for_db("sqlite")
def _post_configure_engine(url, engine, follower_ident):
    if engine.driver != "alkdev":
        return _stock_post_configure(url, engine, follower_ident)

    @event.listens_for(engine, "engine_disposed")
    def remove_files(engine):
        filename = engine.url.database
        for suffix in ("", "-wal", "-shm"):
            if filename and os.path.exists(filename + suffix):
                os.remove(filename + suffix)
