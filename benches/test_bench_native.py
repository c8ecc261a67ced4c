"""The native core against stdlib ``sqlite3``, measured in the same run.

Run: ``pytest benches --benchmark-only`` (add ``--benchmark-json=out.json``
and ``python benches/report.py out.json`` for the ratio table).
Each benchmark checks its result before it is timed.
"""

from __future__ import annotations

import sqlite3

import pytest

import alkdev_storage as alk


def row(i: int) -> tuple[int, str, float, bytes]:
    return (i, f"item-{i}", i * 0.5, b"\x00\x01" * 8)


N_LOOP = 2_000
N_MANY = 20_000
N_SCAN = 10_000
N_POINT = 2_000

INSERT = "INSERT INTO items(name, score, blob) VALUES (?, ?, ?)"
INSERT_ID = "INSERT INTO items(id, name, score, blob) VALUES (?, ?, ?, ?)"
BY_ID = "SELECT id, name, score, blob FROM items WHERE id = ?"
SCAN = "SELECT id, name, score, blob FROM items"


def fill_ours(db: alk.Database, n: int) -> None:
    db.executemany(INSERT_ID, (row(i) for i in range(1, n + 1)))


def fill_stdlib(conn: sqlite3.Connection, n: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(INSERT_ID, (row(i) for i in range(1, n + 1)))
    conn.execute("COMMIT")


# -- single-row INSERT loop in one transaction --------------------------------


def insert_loop_ours(db: alk.Database) -> None:
    with db.transaction() as tx:
        execute = tx.execute
        for i in range(N_LOOP):
            execute(INSERT, (f"n{i}", i * 0.5, None))


def insert_loop_stdlib(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    execute = conn.execute
    for i in range(N_LOOP):
        execute(INSERT, (f"n{i}", i * 0.5, None))
    conn.execute("COMMIT")


@pytest.mark.benchmark(group="insert-loop")
def test_insert_loop_ours(benchmark, ours):
    insert_loop_ours(ours)
    assert ours.query_one("SELECT count(*) FROM items") == (N_LOOP,)
    benchmark(insert_loop_ours, ours)


@pytest.mark.benchmark(group="insert-loop")
def test_insert_loop_stdlib(benchmark, stdlib):
    insert_loop_stdlib(stdlib)
    assert stdlib.execute("SELECT count(*) FROM items").fetchone() == (N_LOOP,)
    benchmark(insert_loop_stdlib, stdlib)


# -- executemany ----------------------------------------------------------------

MANY_ROWS = [(f"n{i}", i * 0.5, b"xy") for i in range(N_MANY)]


def many_ours(db: alk.Database) -> None:
    db.executemany(INSERT, MANY_ROWS)


def many_stdlib(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(INSERT, MANY_ROWS)
    conn.execute("COMMIT")


@pytest.mark.benchmark(group="executemany")
def test_executemany_ours(benchmark, ours):
    many_ours(ours)
    assert ours.query_one("SELECT count(*) FROM items") == (N_MANY,)
    benchmark(many_ours, ours)


@pytest.mark.benchmark(group="executemany")
def test_executemany_stdlib(benchmark, stdlib):
    many_stdlib(stdlib)
    assert stdlib.execute("SELECT count(*) FROM items").fetchone() == (N_MANY,)
    benchmark(many_stdlib, stdlib)


# -- INSERT reading lastrowid ----------------------------------------------------


def lastrowid_ours(db: alk.Database) -> int:
    total = 0
    with db.transaction() as tx:
        execute = tx.execute
        for _ in range(N_LOOP):
            total += execute(INSERT, ("n", 0.0, None)).lastrowid
    return total


def lastrowid_stdlib(conn: sqlite3.Connection) -> int:
    total = 0
    conn.execute("BEGIN IMMEDIATE")
    execute = conn.execute
    for _ in range(N_LOOP):
        total += execute(INSERT, ("n", 0.0, None)).lastrowid
    conn.execute("COMMIT")
    return total


@pytest.mark.benchmark(group="lastrowid")
def test_lastrowid_ours(benchmark, ours):
    assert lastrowid_ours(ours) == sum(range(1, N_LOOP + 1))
    benchmark(lastrowid_ours, ours)


@pytest.mark.benchmark(group="lastrowid")
def test_lastrowid_stdlib(benchmark, stdlib):
    assert lastrowid_stdlib(stdlib) == sum(range(1, N_LOOP + 1))
    benchmark(lastrowid_stdlib, stdlib)


# -- SELECT by primary key, tuple rows ---------------------------------------------

KEYS = [((i * 7919) % N_SCAN) + 1 for i in range(N_POINT)]


def point_ours(db: alk.Database) -> list[object]:
    query_one = db.query_one
    return [query_one(BY_ID, (k,)) for k in KEYS]


def point_stdlib(conn: sqlite3.Connection) -> list[object]:
    execute = conn.execute
    return [execute(BY_ID, (k,)).fetchone() for k in KEYS]


@pytest.mark.benchmark(group="point-select")
def test_point_select_ours(benchmark, ours):
    fill_ours(ours, N_SCAN)
    assert point_ours(ours)[:3] == [row(k) for k in KEYS[:3]]
    benchmark(point_ours, ours)


@pytest.mark.benchmark(group="point-select")
def test_point_select_stdlib(benchmark, stdlib):
    fill_stdlib(stdlib, N_SCAN)
    assert point_stdlib(stdlib)[:3] == [row(k) for k in KEYS[:3]]
    benchmark(point_stdlib, stdlib)


# -- 10k-row scan ---------------------------------------------------------------------


@pytest.mark.benchmark(group="scan-10k")
def test_scan_ours(benchmark, ours):
    fill_ours(ours, N_SCAN)
    assert len(ours.query(SCAN)) == N_SCAN
    benchmark(ours.query, SCAN)


@pytest.mark.benchmark(group="scan-10k")
def test_scan_stdlib(benchmark, stdlib):
    fill_stdlib(stdlib, N_SCAN)
    assert len(stdlib.execute(SCAN).fetchall()) == N_SCAN
    benchmark(lambda: stdlib.execute(SCAN).fetchall())


@pytest.mark.benchmark(group="scan-10k-iterate")
def test_scan_iterate_ours(benchmark, ours):
    fill_ours(ours, N_SCAN)
    assert sum(1 for _ in ours.iterate(SCAN)) == N_SCAN
    benchmark(lambda: sum(1 for _ in ours.iterate(SCAN)))


@pytest.mark.benchmark(group="scan-10k-iterate")
def test_scan_iterate_stdlib(benchmark, stdlib):
    fill_stdlib(stdlib, N_SCAN)
    assert sum(1 for _ in stdlib.execute(SCAN)) == N_SCAN
    benchmark(lambda: sum(1 for _ in stdlib.execute(SCAN)))
