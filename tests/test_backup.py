"""`Database.backup` and `Storage.snapshot`: consistent copies taken while
writers go on, never half-written."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

import alkdev_storage as alk


def _rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    finally:
        conn.close()


def test_backup_is_one_snapshot_while_threads_write(tmp_path: Path) -> None:
    db = alk.connect(tmp_path / "a.db")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    db.executemany("INSERT INTO t(v) VALUES (?)", [(b"x" * 400,) for _ in range(20_000)])
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            with db.transaction() as tx:  # two rows per commit: a torn copy shows one
                tx.execute("INSERT INTO t(v) VALUES ('a')")
                tx.execute("INSERT INTO t(v) VALUES ('b')")

    writers = [threading.Thread(target=write) for _ in range(2)]
    for w in writers:
        w.start()
    steps: list[tuple[int, int]] = []
    try:
        pages = db.backup(
            tmp_path / "b.db", pages_per_step=50, progress=lambda r, t: steps.append((r, t))
        )
    finally:
        stop.set()
        for w in writers:
            w.join()
    rows = _rows(tmp_path / "b.db")
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))  # no gap: one snapshot
    assert (len(rows) - 20_000) % 2 == 0  # whole transactions only
    assert len(steps) > 10 and steps[-1][0] == 0 and steps[-1][1] == pages
    assert db.query_one("SELECT count(*) FROM t")[0] >= len(rows)
    db.close()


def test_backup_releases_the_gil(tmp_path: Path) -> None:
    db = alk.connect(tmp_path / "a.db")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    db.executemany("INSERT INTO t(v) VALUES (?)", [(b"x" * 4000,) for _ in range(20_000)])
    ticks = [0]
    done = threading.Event()

    def count() -> None:
        while not done.is_set():
            ticks[0] += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        db.backup(tmp_path / "b.db", pages_per_step=-1)  # one native call, no callback
    finally:
        done.set()
        counter.join()
    assert ticks[0] > 1000
    db.close()


def test_refusals_and_a_failing_callback_leave_nothing(tmp_path: Path) -> None:
    db = alk.connect(tmp_path / "a.db")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    db.executemany("INSERT INTO t(v) VALUES (?)", [(i,) for i in range(5000)])
    (tmp_path / "taken.db").write_bytes(b"mine")
    with pytest.raises(alk.InvalidInputError, match="already exists"):
        db.backup(tmp_path / "taken.db")
    assert (tmp_path / "taken.db").read_bytes() == b"mine"
    with pytest.raises(alk.InvalidInputError, match="does not exist"):
        db.backup(tmp_path / "nowhere" / "b.db")
    with pytest.raises(alk.InvalidInputError, match="must not be 0"):
        db.backup(tmp_path / "b.db", pages_per_step=0)

    def stop(remaining: int, total: int) -> None:
        raise KeyError("enough")

    with pytest.raises(KeyError, match="enough"):
        db.backup(tmp_path / "b.db", pages_per_step=1, progress=stop)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("b.db")) == []
    # The database is fine and a later backup works.
    db.backup(tmp_path / "b.db")
    assert len(_rows(tmp_path / "b.db")) == 5000
    db.close()
    with pytest.raises(alk.DatabaseClosedError):
        db.backup(tmp_path / "c.db")


def _store_with(tmp_path: Path, orgs: int) -> tuple[alk.Storage, list[str]]:
    store = alk.Storage.open(tmp_path / "root")
    owner = store.accounts.create(email="owner@example.com")
    ids = []
    for i in range(orgs):
        org = store.organizations.create(name=f"Org {i}", slug=f"org-{i}", owner_id=owner.id)
        with store.tenant(org.id) as tenant:
            tenant.db.stream("orders").publish({"org": i})
        ids.append(org.id)
    return store, ids


def test_snapshot_of_a_root_serves_as_a_root(tmp_path: Path) -> None:
    store, ids = _store_with(tmp_path, 3)
    bars: list[tuple[int, int]] = []
    result = store.snapshot(tmp_path / "copy", progress=lambda d, t: bars.append((d, t)))
    assert result.files == 4 and sorted(result.tenants) == sorted(ids)
    assert bars[-1] == (4, 4)
    with pytest.raises(alk.InvalidInputError, match="already exists"):
        store.snapshot(tmp_path / "copy")
    store.close()
    copy = alk.Storage.open(result.root, readonly=True)
    assert sorted(o.id for o in copy.organizations.list()) == sorted(ids)
    for org_id in ids:
        with copy.tenant(org_id) as tenant:
            events = tenant.db.stream("orders").read_since(0)
            assert [e.payload["org"] for e in events] == [ids.index(org_id)]
    copy.close()


def test_snapshot_takes_a_tenant_deleted_meanwhile_from_its_archive(tmp_path: Path) -> None:
    store, ids = _store_with(tmp_path, 2)
    real_backup = store.system.backup

    def backup_then_delete(path: Path, **kw: object) -> int:
        pages = real_backup(path, **kw)  # system.db copied: now the org goes
        store.organizations.delete(ids[0])
        return pages

    store.system = _Patched(store.system, backup_then_delete)  # type: ignore[assignment]
    result = store.snapshot(tmp_path / "copy")
    assert sorted(result.tenants) == sorted(ids)
    assert (result.root / "tenants" / f"tenant-{ids[0]}.db").is_file()
    store.system = store.system._db  # type: ignore[attr-defined]
    store.close()
    copy = alk.Storage.open(result.root, readonly=True)
    with copy.tenant(ids[0]) as tenant:
        assert tenant.db.stream("orders").read_since(0)[0].payload == {"org": 0}
    copy.close()


class _Patched:
    def __init__(self, db: alk.Database, backup: object) -> None:
        self._db, self.backup = db, backup

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)
