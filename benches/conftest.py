"""Shared fixtures for the benchmarks: our database and the baseline a user
would otherwise pick (stdlib ``sqlite3``), configured alike (WAL,
``synchronous=NORMAL``, 32 MB page cache) on files in the same folder."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import alkdev_storage as alk

SCHEMA = "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, blob BLOB)"
# The stdlib baseline's settings: those of our core (honker-core's defaults).
PRAGMAS = (
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
    "PRAGMA cache_size=-32000; PRAGMA temp_store=MEMORY;"
)


@pytest.fixture
def ours(tmp_path: Path) -> Iterator[alk.Database]:
    db = alk.connect(tmp_path / "ours.db")
    db.execute(SCHEMA)
    yield db
    db.close()


@pytest.fixture
def stdlib(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "stdlib.db", isolation_level=None, check_same_thread=False)
    conn.executescript(PRAGMAS)
    conn.execute(SCHEMA)
    yield conn
    conn.close()
