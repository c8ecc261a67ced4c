"""How large the WAL grows under overlapping read transactions.

Four threads run SQLAlchemy sessions of five point reads each, back to back,
while a fifth commits updates of 50 rows (about 60 KB of pages) in a loop,
all on one ``sqlite+alkdev`` engine, for the given number of seconds. With
snapshot reads each session holds a WAL snapshot from its first read to
its end, so some snapshot is nearly always open; SQLite restarts the WAL
only at a commit when none is (see rust/walguard.rs). Printed: sessions,
commits, and the WAL file's largest size (a WAL is reused from its start,
not truncated, so its size is the high-water mark) against the
autocheckpoint threshold (``wal_autocheckpoint`` frames of 4 KiB).

Run: ``python benches/wal_growth.py [seconds] [--per-statement]`` (default
40 s, snapshot reads; ``--per-statement`` sets ``?snapshot_reads=false``).
"""

from __future__ import annotations

import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from alkdev_storage.sqlalchemy import database

ROWS = 1_000


def main(seconds: float, per_statement: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "wal.db"
        query = "?snapshot_reads=false" if per_statement else ""
        engine = create_engine(f"sqlite+alkdev:///{path}{query}", pool_size=8)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)"))
            conn.execute(
                text("INSERT INTO t(id, v) VALUES (:id, randomblob(200))"),
                [{"id": i} for i in range(1, ROWS + 1)],
            )
        # Asked of a reader: on the writer the core's WAL hook stands in for
        # the autocheckpoint, and the pragma reads 0 there.
        threshold = database(engine).query_one("PRAGMA wal_autocheckpoint")[0]
        stop = threading.Event()
        done = {"sessions": 0, "commits": 0}

        def read() -> None:
            pick = random.Random(threading.get_ident())
            while not stop.is_set():
                with Session(engine) as session:
                    for _ in range(5):
                        key = {"id": pick.randint(1, ROWS)}
                        session.execute(text("SELECT v FROM t WHERE id = :id"), key).all()
                done["sessions"] += 1

        def write() -> None:
            turn = 0
            while not stop.is_set():
                with engine.begin() as conn:
                    every = {"n": turn % 20}
                    conn.execute(text("UPDATE t SET v = randomblob(200) WHERE id % 20 = :n"), every)
                done["commits"] += 1
                turn += 1

        threads = [threading.Thread(target=read) for _ in range(4)]
        threads.append(threading.Thread(target=write))
        for thread in threads:
            thread.start()
        wal = Path(f"{path}-wal")
        largest = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.25)
            largest = max(largest, wal.stat().st_size)
        stop.set()
        for thread in threads:
            thread.join()
        engine.dispose()
    mode = "per statement" if per_statement else "snapshot reads"
    print(
        f"{mode}, {seconds:g} s: {done['sessions']} sessions, {done['commits']} commits, "
        f"largest WAL {largest / 1e6:.1f} MB = {largest / (threshold * 4096):.2f}x the "
        f"autocheckpoint threshold ({threshold} frames)"
    )


if __name__ == "__main__":
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    numbers = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(float(numbers[0]) if numbers else 40.0, "--per-statement" in flags)
