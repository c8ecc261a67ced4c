"""The GIL is released while SQLite works: other Python threads progress."""

from __future__ import annotations

import threading
import time

import alkdev_storage as alk

# A query that keeps SQLite busy for a while without touching any table.
LONG = """
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?)
SELECT sum(i) FROM c
"""


def _ticks_during(run_long: object) -> tuple[int, float]:
    done = threading.Event()
    ticks = 0

    def long_query() -> None:
        try:
            run_long()  # type: ignore[operator]
        finally:
            done.set()

    worker = threading.Thread(target=long_query)
    start = time.perf_counter()
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0)  # yield, then count again
    worker.join()
    return ticks, time.perf_counter() - start


def test_python_threads_run_during_a_long_read(db: alk.Database) -> None:
    n = 3_000_000
    ticks, elapsed = _ticks_during(lambda: db.query_one(LONG, (n,)))
    assert elapsed > 0.05, "the query must be long enough to measure anything"
    # With the GIL held for the whole query the main thread could only tick
    # at switch-interval boundaries (5 ms): at most ~elapsed/0.005 times.
    assert ticks > 20 * (elapsed / 0.005), (ticks, elapsed)


def test_python_threads_run_during_a_long_write(db: alk.Database) -> None:
    sql = "INSERT INTO t(x) " + LONG.replace("SELECT sum(i) FROM c", "SELECT i FROM c")
    ticks, elapsed = _ticks_during(lambda: db.execute(sql, (1_000_000,)))
    assert elapsed > 0.05
    assert ticks > 20 * (elapsed / 0.005), (ticks, elapsed)
    assert db.query_one("SELECT count(*) FROM t") == (1_000_000,)


def test_other_readers_answer_during_a_long_query(db: alk.Database) -> None:
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(db.query_one(LONG, (4_000_000,))))
    worker.start()
    answered_while_busy = 0
    while worker.is_alive():
        assert db.query_one("SELECT 41 + 1") == (42,)
        if worker.is_alive():
            answered_while_busy += 1
    worker.join()
    assert result == [(4_000_000 * 4_000_001 // 2,)]
    assert answered_while_busy > 10
