"""A soak run of DB-API connections mixing everything snapshots touch.

Six threads on one database (``max_readers=2``), each with its own
connection (snapshot reads on four times in five), pick at random: start a
streamed read and keep its cursor (sometimes half read), read one row, write
and commit or roll back, end the transaction, finish or close a kept cursor,
drop all kept cursors and collect garbage, close the connection and open a
new one, read after reading the kept streams out. Every thread must finish
without an error; printed: operations done, errors, and ``Database.stats``
(how many snapshot connections were opened, idle, in use).

Run: ``python benches/snapshot_soak.py [seconds]`` (default 40).
"""

from __future__ import annotations

import gc
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import alkdev_storage as alk
from alkdev_storage import dbapi

ROWS = 3_000


def work(db: alk.Database, seed: int, until: float, done: list[int], errors: list[str]) -> None:
    pick = random.Random(seed)

    def connect() -> dbapi.Connection:
        return dbapi.connect(db=db, snapshot_reads=pick.random() < 0.8)

    conn = connect()
    kept: list[Any] = []
    try:
        while time.monotonic() < until:
            x = pick.random()
            if x < 0.35:
                cursor = conn.cursor().execute(
                    "SELECT id, v FROM t WHERE id > ?", (pick.randint(0, ROWS),)
                )
                if pick.random() < 0.5:
                    cursor.fetchmany(pick.randint(0, 300))
                kept.append(cursor)
            elif x < 0.5:
                conn.execute("SELECT v FROM t WHERE id = ?", (pick.randint(1, ROWS),)).fetchall()
            elif x < 0.6:
                conn.execute("UPDATE t SET v = v + 1 WHERE id = ?", (pick.randint(1, ROWS),))
                (conn.commit if pick.random() < 0.7 else conn.rollback)()
            elif x < 0.7:
                (conn.commit if pick.random() < 0.5 else conn.rollback)()
            elif x < 0.8 and kept:
                cursor = kept.pop(pick.randrange(len(kept)))
                cursor.fetchall() if pick.random() < 0.5 else cursor.close()
            elif x < 0.85:
                kept.clear()
                gc.collect()
            elif x < 0.9:
                conn.close()
                kept.clear()
                conn = connect()
            else:
                for cursor in kept:
                    cursor.fetchall()
                conn.execute("SELECT id FROM t LIMIT 50").fetchall()
            done[seed] += 1
    except BaseException as e:  # reported, not raised: the other threads go on
        errors.append(repr(e))
    finally:
        conn.close()


def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = alk.connect(Path(folder) / "soak.db", max_readers=2)
        setup = dbapi.connect(db=db)
        setup.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
        setup.executemany("INSERT INTO t(v) VALUES (?)", [(i,) for i in range(ROWS)])
        setup.commit()
        setup.close()
        until = time.monotonic() + seconds
        done = [0] * 6
        errors: list[str] = []
        threads = [
            threading.Thread(target=work, args=(db, seed, until, done, errors)) for seed in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(f"{sum(done)} operations in {seconds:g} s, errors: {errors or 'none'}")
        print(db.stats)
        db.close()
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 40.0)
