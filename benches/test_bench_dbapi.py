"""``alkdev_storage.dbapi`` against stdlib ``sqlite3``, both through PEP 249,
measured in the same run.

Both connections use their module's default transaction handling (implicit
transactions, opened by the first write and ended by ``commit()``), on files
in the same folder, configured alike (WAL, ``synchronous=NORMAL``, 32 MB page
cache; see conftest.py). Every round goes through a cursor the way a library
built on PEP 249 does: ``cursor()``, ``execute``, ``description``,
``fetchall``, ``close``.

Workloads:

- ``dbapi-point-read``: 2,000 reads of one row by primary key, outside a
  transaction (an ORM's ``session.get``).
- ``dbapi-point-read-snapshot``: the same reads in one read transaction,
  committed: ours with ``snapshot_reads=True``, ``sqlite3`` with an explicit
  ``BEGIN`` (``isolation_level=None``), so both take one WAL snapshot for
  all of them.
- ``dbapi-select-1``: 2,000 ``SELECT 1``: the fixed cost of a statement that
  reads no table, where the engine does almost nothing and the driver is all
  there is to measure.
- ``dbapi-scan-10k``: every row of a 10,000-row table, fetched whole.
- ``dbapi-insert-loop``: 2,000 single-row INSERTs in one implicit
  transaction, committed.
- ``dbapi-executemany``: 20,000 rows in one ``executemany``, committed.

Run: ``pytest benches/test_bench_dbapi.py --benchmark-only
--benchmark-json=out.json`` then ``python benches/report.py out.json``.
Each benchmark checks its result before it is timed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alkdev_storage import dbapi
from conftest import PRAGMAS, SCHEMA

N_POINT = 2_000
N_LOOP = 2_000
N_MANY = 20_000
N_SCAN = 10_000

INSERT = "INSERT INTO items(name, score, blob) VALUES (?, ?, ?)"
INSERT_ID = "INSERT INTO items(id, name, score, blob) VALUES (?, ?, ?, ?)"
BY_ID = "SELECT id, name, score, blob FROM items WHERE id = ?"
SCAN = "SELECT id, name, score, blob FROM items"
KEYS = [(i * 7919) % N_SCAN + 1 for i in range(N_POINT)]  # spread over the table


def row(i: int) -> tuple[int, str, float, bytes]:
    return (i, f"item-{i}", i * 0.5, b"\x00\x01" * 8)


def with_schema(conn: Any) -> Iterator[Any]:
    """A fixture's body: `conn` with the items table, closed afterwards."""
    conn.execute(SCHEMA)
    conn.commit()
    yield conn
    conn.close()


def stdlib_connection(path: Path, **options: Any) -> sqlite3.Connection:
    """``sqlite3`` configured like our core (conftest.py's ``PRAGMAS``)."""
    conn = sqlite3.connect(path, **options)
    conn.executescript(PRAGMAS)
    return conn


@pytest.fixture
def ours(tmp_path: Path) -> Iterator[Any]:
    yield from with_schema(dbapi.connect(tmp_path / "ours.db"))


@pytest.fixture
def stdlib(tmp_path: Path) -> Iterator[Any]:
    yield from with_schema(stdlib_connection(tmp_path / "stdlib.db"))


def fill(conn: Any, n: int) -> None:
    conn.executemany(INSERT_ID, [row(i) for i in range(1, n + 1)])
    conn.commit()


def count(conn: Any) -> int:
    return int(conn.execute("SELECT count(*) FROM items").fetchone()[0])


def fetch(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """One statement the way a PEP 249 library runs it."""
    cursor = conn.cursor()
    cursor.execute(sql, params)
    assert cursor.description is not None
    rows: list[Any] = cursor.fetchall()
    cursor.close()
    return rows


# -- point reads ------------------------------------------------------------------


def point_reads(conn: Any) -> int:
    found = 0
    for key in KEYS:
        found += len(fetch(conn, BY_ID, (key,)))
    return found


def bench_point_read(benchmark: Any, conn: Any) -> None:
    fill(conn, N_SCAN)
    assert fetch(conn, BY_ID, (KEYS[0],)) == [row(KEYS[0])]
    assert benchmark(point_reads, conn) == N_POINT


@pytest.mark.benchmark(group="dbapi-point-read")
def test_point_read_ours(benchmark: Any, ours: Any) -> None:
    bench_point_read(benchmark, ours)


@pytest.mark.benchmark(group="dbapi-point-read")
def test_point_read_stdlib(benchmark: Any, stdlib: Any) -> None:
    bench_point_read(benchmark, stdlib)


# -- point reads in one read transaction ---------------------------------------------------


@pytest.fixture
def ours_snapshot(tmp_path: Path) -> Iterator[Any]:
    yield from with_schema(dbapi.connect(tmp_path / "ours.db", snapshot_reads=True))


@pytest.fixture
def stdlib_begin(tmp_path: Path) -> Iterator[Any]:
    """``sqlite3`` opening its transactions itself: ``BEGIN`` before the
    reads (what Python 3.12's ``autocommit=False`` does implicitly)."""
    yield from with_schema(stdlib_connection(tmp_path / "stdlib.db", isolation_level=None))


def reads_in_one_transaction(conn: Any, begin: bool) -> int:
    if begin:
        conn.execute("BEGIN")
    found = point_reads(conn)
    conn.commit()
    return found


def bench_snapshot_read(benchmark: Any, conn: Any, begin: bool) -> None:
    if begin:
        conn.execute("BEGIN")
    fill(conn, N_SCAN)
    assert fetch(conn, BY_ID, (KEYS[0],)) == [row(KEYS[0])]
    conn.commit()
    assert benchmark(reads_in_one_transaction, conn, begin) == N_POINT


@pytest.mark.benchmark(group="dbapi-point-read-snapshot")
def test_snapshot_read_ours(benchmark: Any, ours_snapshot: Any) -> None:
    bench_snapshot_read(benchmark, ours_snapshot, begin=False)


@pytest.mark.benchmark(group="dbapi-point-read-snapshot")
def test_snapshot_read_stdlib(benchmark: Any, stdlib_begin: Any) -> None:
    bench_snapshot_read(benchmark, stdlib_begin, begin=True)


# -- statement overhead ---------------------------------------------------------------


def select_ones(conn: Any) -> int:
    total = 0
    for _ in range(N_POINT):
        total += fetch(conn, "SELECT 1")[0][0]
    return total


@pytest.mark.benchmark(group="dbapi-select-1")
def test_select_1_ours(benchmark: Any, ours: Any) -> None:
    assert benchmark(select_ones, ours) == N_POINT


@pytest.mark.benchmark(group="dbapi-select-1")
def test_select_1_stdlib(benchmark: Any, stdlib: Any) -> None:
    assert benchmark(select_ones, stdlib) == N_POINT


# -- scan ---------------------------------------------------------------------------


def bench_scan(benchmark: Any, conn: Any) -> None:
    fill(conn, N_SCAN)
    rows = fetch(conn, SCAN)
    assert len(rows) == N_SCAN and rows[-1] == row(N_SCAN)
    assert len(benchmark(fetch, conn, SCAN)) == N_SCAN


@pytest.mark.benchmark(group="dbapi-scan-10k")
def test_scan_ours(benchmark: Any, ours: Any) -> None:
    bench_scan(benchmark, ours)


@pytest.mark.benchmark(group="dbapi-scan-10k")
def test_scan_stdlib(benchmark: Any, stdlib: Any) -> None:
    bench_scan(benchmark, stdlib)


# -- writes, committed ----------------------------------------------------------------


def insert_loop(conn: Any) -> None:
    cursor = conn.cursor()
    for i in range(N_LOOP):
        cursor.execute(INSERT, (f"n{i}", i * 0.5, None))
    cursor.close()
    conn.commit()


def bench_write(benchmark: Any, conn: Any, write: Any, rows: int) -> None:
    """Check that one round of `write` commits `rows` rows, then time it."""
    write(conn)
    assert count(conn) == rows
    benchmark(write, conn)


@pytest.mark.benchmark(group="dbapi-insert-loop")
def test_insert_loop_ours(benchmark: Any, ours: Any) -> None:
    bench_write(benchmark, ours, insert_loop, N_LOOP)


@pytest.mark.benchmark(group="dbapi-insert-loop")
def test_insert_loop_stdlib(benchmark: Any, stdlib: Any) -> None:
    bench_write(benchmark, stdlib, insert_loop, N_LOOP)


MANY_ROWS = [(f"n{i}", i * 0.5, b"xy") for i in range(N_MANY)]


def executemany(conn: Any) -> None:
    conn.cursor().executemany(INSERT, MANY_ROWS)
    conn.commit()


@pytest.mark.benchmark(group="dbapi-executemany")
def test_executemany_ours(benchmark: Any, ours: Any) -> None:
    bench_write(benchmark, ours, executemany, N_MANY)


@pytest.mark.benchmark(group="dbapi-executemany")
def test_executemany_stdlib(benchmark: Any, stdlib: Any) -> None:
    bench_write(benchmark, stdlib, executemany, N_MANY)
