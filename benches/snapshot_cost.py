"""What ``snapshot_reads`` costs and saves per transaction, by reads per
transaction.

A transaction of k point reads, each through ``cursor()``, ``execute``,
``description``, ``fetchall``, ``close``, then ``rollback()``: on
``dbapi.connect(..., snapshot_reads=True)`` (one snapshot for the k reads,
begun at the first and ended by the rollback), on a default ``dbapi``
connection (a read transaction per statement) and on stdlib ``sqlite3`` with
its default transaction handling (also one per statement). Each connection
has its own file of 10,000 rows (benches/conftest.py's schema and pragmas).
Printed: microseconds per transaction, the best of 3 alternating rounds of
3 x 20,000 transactions each.

Run: ``python benches/snapshot_cost.py``.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import timeit
from functools import partial
from pathlib import Path
from typing import Any

from alkdev_storage import dbapi

sys.path.insert(0, str(Path(__file__).parent))
from conftest import PRAGMAS, SCHEMA

BY_ID = "SELECT id, name, score, blob FROM items WHERE id = ?"
ROWS = [(i, f"item-{i}", i * 0.5, b"\x00\x01" * 8) for i in range(1, 10_001)]
NUMBER = 20_000


def transaction(conn: Any, reads: int) -> None:
    for key in range(1234, 1234 + reads):
        cursor = conn.cursor()
        cursor.execute(BY_ID, (key,))
        assert cursor.description is not None
        assert len(cursor.fetchall()) == 1
        cursor.close()
    conn.rollback()


def connections(folder: Path) -> dict[str, Any]:
    stdlib = sqlite3.connect(folder / "stdlib.db")
    stdlib.executescript(PRAGMAS)
    found = {
        "snapshot_reads": dbapi.connect(folder / "snap.db", snapshot_reads=True),
        "dbapi": dbapi.connect(folder / "dbapi.db"),
        "sqlite3": stdlib,
    }
    for conn in found.values():
        conn.execute(SCHEMA)
        conn.executemany("INSERT INTO items(id, name, score, blob) VALUES (?, ?, ?, ?)", ROWS)
        conn.commit()
    return found


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        conns = connections(Path(folder))
        for reads in (1, 2, 5):
            best = dict.fromkeys(conns, float("inf"))
            for _ in range(3):
                for name, conn in conns.items():
                    run = partial(transaction, conn, reads)
                    times = timeit.repeat(run, number=NUMBER, repeat=3)
                    best[name] = min(best[name], min(times) / NUMBER * 1e6)
            shown = ", ".join(f"{name} {us:.2f} µs" for name, us in best.items())
            print(f"{reads} read(s) per transaction: {shown}")
        for conn in conns.values():
            conn.close()


if __name__ == "__main__":
    main()
