"""`Database.backup` against stdlib ``sqlite3``'s ``Connection.backup`` of
the same 91 MB file (200,000 rows of 400 random bytes), three runs, each
copy to a new file: ``python benches/backup_speed.py``. Ours syncs the copy
and its folder before renaming it into place; stdlib's does not sync."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from pathlib import Path

import alkdev_storage as alk


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        db = alk.connect(base / "a.db")
        db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        db.executemany("INSERT INTO t(v) VALUES (?)", [(os.urandom(400),) for _ in range(200_000)])
        db.checkpoint("TRUNCATE")
        size = (base / "a.db").stat().st_size
        for run in range(3):
            start = time.perf_counter()
            db.backup(base / f"ours{run}.db")
            ours = time.perf_counter() - start
            src, dst = sqlite3.connect(base / "a.db"), sqlite3.connect(base / f"std{run}.db")
            start = time.perf_counter()
            src.backup(dst, pages=4096)
            std = time.perf_counter() - start
            src.close()
            dst.close()
            print(
                f"run {run + 1}: {size / 1e6:.0f} MB: ours {ours * 1000:.0f} ms, stdlib sqlite3 "
                f"Connection.backup {std * 1000:.0f} ms, ratio {std / ours:.2f}"
            )
        db.close()


if __name__ == "__main__":
    main()
