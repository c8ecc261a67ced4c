"""The tenant registry: lazy opening, the open-handle bound (LRU, leases,
idle close), create/archive/purge/discard, hostile org ids, threads."""

from __future__ import annotations

import doctest
import gc
import os
import pathlib
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import alkdev_storage as alk
from alkdev_storage import tenants as tenants_module
from alkdev_storage.errors import (
    AlreadyExistsError,
    DatabaseClosedError,
    InvalidTenantIdError,
    MigrationError,
    SchemaVersionError,
    StorageError,
    TenantHandlesBusyError,
    TenantNotFoundError,
)
from alkdev_storage.migrations import Migration, Schema, migrate
from alkdev_storage.tenants import TenantRegistry

APP_ID = 0x54454E54
NOTES = Migration(1, "notes", "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
SCHEMA = Schema("tenant-test", APP_ID, (NOTES,))
SCHEMA_V2 = Schema(
    "tenant-test",
    APP_ID,
    (NOTES, Migration(2, "tags", "CREATE TABLE tags(note INTEGER, tag TEXT)")),
)
NOTES_V3 = Migration(3, "more", "CREATE TABLE more(x)")

HOSTILE_IDS = [
    "../x",
    "a/b",
    "a\\b",
    "",
    "a" * 300,
    "a" * 129,
    "a\x00b",
    ".",
    "..",
    "a\u2215b",  # DIVISION SLASH
    "a\u2044b",  # FRACTION SLASH
    "a\uff0fb",  # FULLWIDTH SOLIDUS
    "tenant-x.db",
    "a b",
    " a",
    "a\n",
    "-rf",
    "/etc/passwd",
    "C:x",
    "\u00e9t\u00e9",  # non-ASCII letters
    "\u0430",  # Cyrillic a
]
GOOD_IDS = ["a", "A_b-c", "_x", "0", "3f2b9c1e-5d4a-4f7b-9a6e-2c1d0e9f8a7b", "z" * 128]


class Opens:
    """A `connect` that counts the handles it opened and those still open."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened: list[Path] = []
        self.live = 0
        self.peak = 0

    def __call__(self, path: Path) -> alk.Database:
        opens = self

        class Counted(alk.Database):
            def close(self) -> None:
                if not self.closed:
                    with opens.lock:
                        opens.live -= 1
                super().close()

        db = Counted(path)
        with self.lock:
            self.opened.append(path)
            self.live += 1
            self.peak = max(self.peak, self.live)
        return db


def open_tenant_files(directory: Path) -> set[str]:
    """The distinct tenant databases under `directory` this process has a
    file descriptor on (each open handle holds the file, its -wal and -shm)."""
    paths = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            name = os.path.basename(target).removesuffix("-wal").removesuffix("-shm")
            if name.startswith("tenant-"):
                paths.add(name)
    return paths


HAVE_PROC_FD = os.path.isdir("/proc/self/fd")


def seed_files(directory: Path, ids: list[str], schema: Schema = SCHEMA) -> None:
    """Tenant files for `ids`, migrated, copied from one template (fast)."""
    directory.mkdir(parents=True, exist_ok=True)
    template = directory.parent / "template.db"
    db = alk.connect(template)
    migrate(db, schema)
    db.close()
    for org in ids:
        shutil.copyfile(template, directory / f"tenant-{org}.db")
    template.unlink()


def fresh_files(directory: Path, ids: list[str]) -> None:
    """Tenant files at version 0 (opened once by alk.connect, then closed)."""
    directory.mkdir(parents=True, exist_ok=True)
    for org in ids:
        alk.connect(directory / f"tenant-{org}.db").close()


def version(path: Path) -> tuple[int, int]:
    with alk.connect(path, readonly=True) as db:
        row = db.query_one("SELECT * FROM pragma_user_version, pragma_application_id")
        assert row is not None
        return int(row[0]), int(row[1])


@pytest.fixture
def tdir(tmp_path: Path) -> Path:
    return tmp_path / "tenants"


@pytest.fixture
def registry(tdir: Path) -> Iterator[TenantRegistry]:
    reg = TenantRegistry(tdir, SCHEMA, max_open=4)
    yield reg
    reg.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(tenants_module, "_now", fake)
    return fake


# -- basics -----------------------------------------------------------------


def test_docstring_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(tenants_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_nothing_is_opened_until_get(tdir: Path) -> None:
    seed_files(tdir, ["a", "b", "c"])
    opens = Opens()
    with TenantRegistry(tdir, SCHEMA, connect=opens) as reg:
        assert reg.ids() == ["a", "b", "c"]
        assert reg.exists("b") and not reg.exists("d")
        assert reg.path_for("b") == tdir / "tenant-b.db"
        assert reg.open_count == 0 and opens.opened == []
        if HAVE_PROC_FD:
            assert open_tenant_files(tdir) == set()
        db = reg.get("b")
        assert opens.opened == [tdir / "tenant-b.db"]
        assert reg.get("b") is db  # cached
        assert opens.opened == [tdir / "tenant-b.db"]
        assert reg.open_count == 1
    assert db.closed


def test_create_exists_ids(registry: TenantRegistry, tdir: Path) -> None:
    assert registry.ids() == [] and not registry.exists("b")
    registry.create("b")
    registry.create("a-1")
    assert registry.ids() == ["a-1", "b"]
    assert registry.exists("a-1") and registry.exists("b")
    assert version(tdir / "tenant-b.db") == (SCHEMA.latest, APP_ID)
    with pytest.raises(AlreadyExistsError, match="'b'"):
        registry.create("b")
    registry.close()
    # ...also when the file exists but is not open
    with TenantRegistry(tdir, SCHEMA) as again:
        with pytest.raises(AlreadyExistsError, match="already has a tenant file"):
            again.create("b")
        assert again.open_count == 0
        with again.lease("b") as db:
            db.execute("INSERT INTO notes(body) VALUES ('kept')")
        assert again.get("b").query("SELECT body FROM notes") == [("kept",)]


def test_ids_ignores_other_files(registry: TenantRegistry, tdir: Path) -> None:
    registry.create("a")
    for name in ["tenant-zz.db-wal", "tenant-.db", "tenant--x.db", "other.db", "tenant-a.b.db"]:
        (tdir / name).write_bytes(b"")
    (tdir / "tenant-dir.db").mkdir()
    registry.archive("a")
    registry.create("b")
    assert registry.ids() == ["b"]


def test_get_missing_tenant(registry: TenantRegistry, tdir: Path) -> None:
    with pytest.raises(TenantNotFoundError, match="'nope'") as info:
        registry.get("nope")
    assert isinstance(info.value, LookupError)
    with pytest.raises(TenantNotFoundError), registry.lease("nope"):
        pass
    assert not (tdir / "tenant-nope.db").exists()  # never created by asking
    assert registry.open_count == 0


def test_a_newer_tenant_file_is_refused_and_not_cached(
    registry: TenantRegistry, tdir: Path
) -> None:
    seed_files(tdir, ["new"], SCHEMA_V2)
    with pytest.raises(SchemaVersionError, match="newer"):
        registry.get("new")
    assert registry.open_count == 0
    assert version(tdir / "tenant-new.db") == (2, APP_ID)


def test_opening_migrates_an_old_file(tdir: Path) -> None:
    seed_files(tdir, ["old"], SCHEMA)
    with TenantRegistry(tdir, SCHEMA_V2) as reg:
        reg.get("old").execute("INSERT INTO tags VALUES (1, 'x')")
    assert version(tdir / "tenant-old.db") == (2, APP_ID)


def test_bad_options() -> None:
    for bad in [0, -1, True, 1.5]:
        with pytest.raises(ValueError, match="max_open"):
            TenantRegistry("x", SCHEMA, max_open=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="idle_close_s"):
        TenantRegistry("x", SCHEMA, idle_close_s=-1)
    with pytest.raises(ValueError, match="idle_close_s"):
        TenantRegistry("x", SCHEMA, idle_close_s=float("nan"))


# -- the bound ----------------------------------------------------------------


def test_reopen_after_eviction(tdir: Path) -> None:
    with TenantRegistry(tdir, SCHEMA, max_open=2) as reg:
        for org in "abc":
            reg.create(org)
        assert reg.open_count == 2  # creating "c" evicted "a"
        a = reg.get("a")
        a.execute("INSERT INTO notes(body) VALUES ('a1')")
        reg.get("b")
        reg.get("c")  # evicts "a", the least recently used
        assert a.closed
        with pytest.raises(DatabaseClosedError):
            a.query("SELECT 1")
        again = reg.get("a")
        assert again is not a
        assert again.query("SELECT body FROM notes") == [("a1",)]
        assert reg.open_count == 2


def test_get_refreshes_recency(tdir: Path) -> None:
    with TenantRegistry(tdir, SCHEMA, max_open=2) as reg:
        reg.create("a")
        reg.create("b")
        a = reg.get("a")  # now "b" is the least recently used
        reg.create("c")
        assert not a.closed
        assert reg.get("a") is a


def test_leased_handles_survive_eviction_pressure(tdir: Path) -> None:
    seed_files(tdir, [f"t{i}" for i in range(20)])
    with TenantRegistry(tdir, SCHEMA, max_open=3) as reg:
        with reg.lease("t0") as t0, reg.lease("t1") as t1:
            for i in range(2, 20):
                db = reg.get(f"t{i}")
                assert not db.closed
                assert reg.open_count <= 3
            assert not t0.closed and not t1.closed
            t0.execute("INSERT INTO notes(body) VALUES ('still here')")
            assert t1.query("SELECT count(*) FROM notes") == [(0,)]
            # A lease nested on the same tenant is the same handle.
            with reg.lease("t0") as same:
                assert same is t0
            assert not t0.closed
        # Released: now they are ordinary cache entries again.
        for i in range(2, 6):
            reg.get(f"t{i}")
        assert t0.closed and t1.closed


def test_every_handle_leased_waits_then_is_a_clear_error(tdir: Path) -> None:
    seed_files(tdir, ["a", "b", "c"])
    with TenantRegistry(tdir, SCHEMA, max_open=2, lease_timeout_s=0.2) as reg:
        with reg.lease("a"), reg.lease("b") as b:
            started = time.monotonic()
            with pytest.raises(TenantHandlesBusyError, match="all 2 open tenant handles stayed"):
                reg.get("c")
            assert time.monotonic() - started >= 0.2  # it waited before refusing
            with pytest.raises(TimeoutError, match="leased"), reg.lease("c"):
                pass
            with pytest.raises(StorageError, match="leased"):
                reg.create("d")
            assert reg.get("b") is b  # an open one is still served
            assert reg.open_count == 2
            assert not (reg.directory / "tenant-d.db").exists()
        assert not reg.get("c").closed


def test_a_waiter_gets_the_slot_a_lease_gives_back(tdir: Path) -> None:
    seed_files(tdir, ["a", "b"])
    with TenantRegistry(tdir, SCHEMA, max_open=1, lease_timeout_s=30) as reg:
        held = reg.lease("a")
        got: list[alk.Database] = []
        waiter = threading.Thread(target=lambda: got.append(reg.get("b")))
        waiter.start()
        time.sleep(0.2)
        assert not got and waiter.is_alive()  # waiting, not refused
        held.close()
        waiter.join(10)
        assert got and not got[0].closed and held.db.closed
        assert reg.open_count == 1


def test_a_dropped_lease_ends_at_once(tdir: Path) -> None:
    seed_files(tdir, ["a", "b", "c"])
    with TenantRegistry(tdir, SCHEMA, max_open=2, lease_timeout_s=0) as reg:
        gc.disable()
        try:
            for _ in range(3):
                for org in ("a", "b", "c"):
                    db = reg.lease(org).db  # the Lease itself is dropped here
                    assert db.query("SELECT count(*) FROM notes") == [(0,)]
        finally:
            gc.enable()
        assert reg.open_count == 2


def test_a_lease_dropped_by_the_collector_inside_the_registry_never_deadlocks(
    tdir: Path,
) -> None:
    """Leases in reference cycles end when the cyclic collector runs, which
    may be inside the registry's own code on a thread holding its lock."""
    orgs = [f"o{i}" for i in range(6)]
    seed_files(tdir, orgs)
    reg = TenantRegistry(tdir, SCHEMA, max_open=3, lease_timeout_s=30)
    errors: list[BaseException] = []
    peak = 0

    class Holder:
        def __init__(self, lease: tenants_module.Lease) -> None:
            self.lease = lease
            self.me = self  # a cycle: only the collector frees it

    class ClosingHolder(Holder):
        def __del__(self) -> None:  # an explicit close(), run by the collector
            self.lease.close()

    def work(seed: int) -> None:
        nonlocal peak
        rng = random.Random(seed)
        try:
            for _ in range(400):
                rng.choice([Holder, ClosingHolder])(reg.lease(rng.choice(orgs)))
                peak = max(peak, reg.open_count)
                if rng.random() < 0.05:
                    gc.collect()
        except BaseException as exc:
            errors.append(exc)

    old = gc.get_threshold()
    gc.set_threshold(5, 1, 1)  # collect often, inside every kind of call
    gc.freeze()  # over the test's own objects, not the whole suite's heap
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a thread is stuck"
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()
    assert not errors, errors
    gc.collect()
    assert peak <= 3
    with reg._cond:  # taking the lock ends the leases queued by finalizers
        assert all(h.leases == 0 for h in reg._open.values())
    reg.close()


@pytest.mark.timeout(300)
def test_max_open_64_over_1000_tenant_files(tdir: Path) -> None:
    ids = [f"org{i:04d}" for i in range(1000)]
    seed_files(tdir, ids)
    opens = Opens()
    rng = random.Random(7)
    with TenantRegistry(tdir, SCHEMA, max_open=64, connect=opens) as reg:
        assert reg.ids() == ids
        for pass_no in range(3):
            order = ids[:]
            rng.shuffle(order)
            for n, org in enumerate(order):
                db = reg.get(org)
                assert db.path == tdir / f"tenant-{org}.db"
                assert reg.open_count <= 64
                assert opens.live <= 64
                if HAVE_PROC_FD and (pass_no == 0 or n % 10 == 0):
                    assert len(open_tenant_files(tdir)) <= 64
            # A few reads on leased handles, so readers (more fds) open too.
            for org in order[:100]:
                with reg.lease(org) as db:
                    assert db.query("SELECT count(*) FROM notes") == [(0,)]
                if HAVE_PROC_FD:
                    assert len(open_tenant_files(tdir)) <= 64
        assert reg.open_count == 64
        assert opens.peak <= 64
        assert len(set(opens.opened)) == 1000
    assert opens.live == 0
    if HAVE_PROC_FD:
        assert open_tenant_files(tdir) == set()


# -- idle close -----------------------------------------------------------------


def test_idle_handles_are_closed_on_the_next_get(tdir: Path, clock: Clock) -> None:
    seed_files(tdir, ["a", "b", "c", "d"])
    with TenantRegistry(tdir, SCHEMA, idle_close_s=10) as reg:
        a, b = reg.get("a"), reg.get("b")
        clock.now += 5
        assert reg.get("b") is b
        clock.now += 6  # a idle 11 s, b 6 s
        reg.get("c")
        assert a.closed and not b.closed
        assert reg.open_count == 2
        # get() of an idle handle itself serves it rather than reopening.
        clock.now += 60
        assert reg.get("b") is b
        assert reg.open_count == 1  # c was closed


def test_close_idle_spares_leases(tdir: Path, clock: Clock) -> None:
    seed_files(tdir, ["a", "b", "c"])
    with TenantRegistry(tdir, SCHEMA, idle_close_s=0.5) as reg:
        a, b = reg.get("a"), reg.get("b")
        with reg.lease("c") as c:
            clock.now += 1
            assert reg.close_idle() == 2
            assert a.closed and b.closed and not c.closed
            clock.now += 100
            assert reg.close_idle() == 0
        # Idle time starts when the lease ends.
        clock.now += 0.4
        assert reg.close_idle() == 0
        clock.now += 0.2
        assert reg.close_idle() == 1
        assert c.closed and reg.open_count == 0


def test_idle_close_can_be_turned_off(tdir: Path, clock: Clock) -> None:
    seed_files(tdir, ["a"])
    with TenantRegistry(tdir, SCHEMA, idle_close_s=None) as reg:
        a = reg.get("a")
        clock.now += 1e9
        assert reg.close_idle() == 0 and not a.closed


# -- archive, purge, discard ----------------------------------------------------


STAMP = re.compile(r"tenant-acme\.(\d{8}T\d{6}Z)\.db")


def test_archive_moves_the_file_aside(registry: TenantRegistry, tdir: Path) -> None:
    registry.create("acme")
    registry.create("other")
    db = registry.get("acme")
    db.executemany("INSERT INTO notes(body) VALUES (?)", [(f"n{i}",) for i in range(100)])
    assert (tdir / "tenant-acme.db-wal").exists()  # data still in the WAL
    before = datetime.now(UTC).replace(microsecond=0)
    target = registry.archive("acme")
    after = datetime.now(UTC)
    assert target.parent == tdir / "archive"
    match = STAMP.fullmatch(target.name)
    assert match, target.name
    stamp = datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= stamp <= after
    assert db.closed
    for suffix in ["", "-wal", "-shm"]:
        assert not (tdir / f"tenant-acme.db{suffix}").exists()
    assert not registry.exists("acme") and registry.ids() == ["other"]
    with pytest.raises(TenantNotFoundError):
        registry.get("acme")
    assert registry.archived("acme") == [target]
    with alk.connect(target, readonly=True) as archived:
        assert archived.query("SELECT count(*) FROM notes") == [(100,)]
        assert archived.query("PRAGMA user_version") == [(SCHEMA.latest,)]
    assert registry.get("other").query("SELECT count(*) FROM notes") == [(0,)]


def test_archive_of_a_file_that_is_not_open(tdir: Path) -> None:
    seed_files(tdir, ["acme"])
    with TenantRegistry(tdir, SCHEMA) as reg:
        target = reg.archive("acme")
        assert reg.open_count == 0
        assert version(target) == (SCHEMA.latest, APP_ID)


def test_archive_errors(registry: TenantRegistry) -> None:
    with pytest.raises(TenantNotFoundError):
        registry.archive("ghost")
    registry.create("acme")
    with registry.lease("acme") as db, pytest.raises(StorageError, match="leased"):
        registry.archive("acme")
    assert not db.closed and registry.exists("acme")
    registry.archive("acme")
    with pytest.raises(TenantNotFoundError):
        registry.archive("acme")


def test_archive_never_overwrites(
    registry: TenantRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tenants_module, "_utc_stamp", lambda: "20260101T000000Z")
    made = []
    for i in range(3):
        registry.create("acme")
        registry.get("acme").execute("INSERT INTO notes(body) VALUES (?)", (f"gen{i}",))
        made.append(registry.archive("acme"))
    assert [p.name for p in made] == [
        "tenant-acme.20260101T000000Z.db",
        "tenant-acme.20260101T000000Z-2.db",
        "tenant-acme.20260101T000000Z-3.db",
    ]
    assert registry.archived("acme") == made
    for i, path in enumerate(made):
        with alk.connect(path, readonly=True) as db:
            assert db.query("SELECT body FROM notes") == [(f"gen{i}",)]


def test_purge_deletes_only_that_orgs_archives(registry: TenantRegistry, tdir: Path) -> None:
    assert registry.purge("acme") == 0  # no archive folder yet
    for org in ["acme", "acme-eu", "acme_x"]:
        registry.create(org)
        registry.archive(org)
    registry.create("acme")
    registry.archive("acme")
    registry.create("acme")  # live again
    (tdir / "archive" / "notes.txt").write_text("keep")
    assert len(registry.archived("acme")) == 2
    assert registry.purge("acme") == 2
    assert registry.archived("acme") == []
    assert len(registry.archived("acme-eu")) == 1 and len(registry.archived("acme_x")) == 1
    assert (tdir / "archive" / "notes.txt").exists()
    assert registry.exists("acme")  # purge never touches a live file
    assert registry.purge("acme") == 0
    remaining = sorted(p.name for p in (tdir / "archive").iterdir())
    assert len(remaining) == 3 and not any(n.startswith("tenant-acme.") for n in remaining)


def test_discard_undoes_create(registry: TenantRegistry, tdir: Path) -> None:
    registry.create("acme")
    db = registry.get("acme")
    db.execute("INSERT INTO notes(body) VALUES ('x')")
    registry.discard("acme")
    assert db.closed
    assert list(tdir.iterdir()) == []
    assert not registry.exists("acme") and registry.open_count == 0
    registry.discard("acme")  # nothing left: not an error
    registry.create("acme")  # the name is free again
    assert registry.get("acme").query("SELECT count(*) FROM notes") == [(0,)]
    with registry.lease("acme"), pytest.raises(StorageError, match="leased"):
        registry.discard("acme")
    assert registry.exists("acme")


@pytest.mark.parametrize(
    "failing",
    [
        Migration(2, "bad sql", "CREATE TABLE tags(x); INSERT INTO nowhere VALUES (1)"),
        Migration(2, "bad code", lambda tx: (_ for _ in ()).throw(OSError("disk gremlin"))),
    ],
    ids=["sql", "callable"],
)
def test_create_is_atomic(tdir: Path, failing: Migration) -> None:
    broken = Schema("tenant-test", APP_ID, (NOTES, failing))
    with TenantRegistry(tdir, broken, max_open=2) as reg:
        with pytest.raises(MigrationError, match="migration 2") as info:
            reg.create("acme")
        assert info.value.__cause__ is not None
        assert list(tdir.iterdir()) == []
        assert not reg.exists("acme") and reg.open_count == 0
    with TenantRegistry(tdir, SCHEMA) as reg:
        reg.create("acme")
        assert version(tdir / "tenant-acme.db") == (1, APP_ID)


def test_create_ignores_a_stale_wal(registry: TenantRegistry, tdir: Path) -> None:
    """A -wal left beside a missing file (a crash mid-archive) must not bring
    its rows into a new tenant of the same name."""
    registry.create("old")
    registry.get("old").execute("INSERT INTO notes(body) VALUES ('secret')")
    shutil.copyfile(tdir / "tenant-old.db-wal", tdir / "tenant-new.db-wal")
    registry.create("new")
    assert registry.get("new").query("SELECT count(*) FROM notes") == [(0,)]


# -- close ----------------------------------------------------------------------


def test_close_closes_everything(tdir: Path) -> None:
    seed_files(tdir, ["a", "b"])
    reg = TenantRegistry(tdir, SCHEMA)
    a = reg.get("a")
    with reg.lease("b") as b:
        reg.close()
        assert a.closed and b.closed and reg.open_count == 0
    reg.close()  # idempotent
    calls: list[Callable[[], object]] = [
        lambda: reg.get("a"),
        lambda: reg.lease("a").__enter__(),
        lambda: reg.create("c"),
        lambda: reg.archive("a"),
        lambda: reg.discard("a"),
        lambda: reg.purge("a"),
        lambda: reg.exists("a"),
        reg.ids,
        reg.migrate_all,
        reg.close_idle,
    ]
    for call in calls:
        with pytest.raises(DatabaseClosedError, match="registry is closed"):
            call()
    assert reg.path_for("a") == tdir / "tenant-a.db"  # pure, still answers
    assert "closed" in repr(reg)


# -- hostile ids ------------------------------------------------------------------


def _forbid_filesystem(monkeypatch: pytest.MonkeyPatch) -> None:
    def touched(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"filesystem touched: {args!r}")

    for name in [
        "open",
        "stat",
        "lstat",
        "scandir",
        "listdir",
        "replace",
        "rename",
        "unlink",
        "remove",
        "mkdir",
        "makedirs",
        "link",
    ]:
        monkeypatch.setattr(os, name, touched)
    for name in ["exists", "is_file", "stat", "mkdir", "unlink", "rename", "replace", "iterdir"]:
        monkeypatch.setattr(pathlib.Path, name, touched)


@pytest.mark.parametrize("org_id", HOSTILE_IDS, ids=lambda s: repr(s)[:24])
def test_hostile_ids_are_refused_before_any_filesystem_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, org_id: str
) -> None:
    def connect(path: Path) -> alk.Database:
        raise AssertionError(f"connect called with {path}")

    reg = TenantRegistry(tmp_path / "tenants", SCHEMA, connect=connect)
    calls: list[Callable[[], object]] = [
        lambda: TenantRegistry.validate(org_id),
        lambda: reg.path_for(org_id),
        lambda: reg.exists(org_id),
        lambda: reg.create(org_id),
        lambda: reg.discard(org_id),
        lambda: reg.get(org_id),
        lambda: reg.lease(org_id),
        lambda: reg.archive(org_id),
        lambda: reg.archived(org_id),
        lambda: reg.purge(org_id),
    ]
    errors = []
    with monkeypatch.context() as m:
        _forbid_filesystem(m)
        for call in calls:
            try:
                call()
            except Exception as exc:
                errors.append(exc)
            else:
                errors.append(AssertionError("accepted"))
    assert [type(e) for e in errors] == [InvalidTenantIdError] * len(calls), errors
    assert all(isinstance(e, ValueError) for e in errors)
    assert not (tmp_path / "tenants").exists()
    reg.close()


@pytest.mark.parametrize(
    ("org_id", "message"),
    [
        ("", "empty"),
        ("a" * 300, "300 characters, at most 128"),
        ("../x", "'.' at position 0"),
        ("a/b", "'/' at position 1"),
        ("a\u2215b", "'\u2215' at position 1"),
        ("a b", "' ' at position 1"),
        ("-rf", "starts with '-'"),
        (None, "must be a str"),
        (b"acme", "must be a str"),
        (5, "must be a str"),
    ],
)
def test_invalid_id_messages_say_what_is_wrong(org_id: object, message: str) -> None:
    with pytest.raises(InvalidTenantIdError, match=re.escape(message)):
        TenantRegistry.validate(org_id)  # type: ignore[arg-type]


@pytest.mark.parametrize("org_id", GOOD_IDS, ids=lambda s: s[:12])
def test_good_ids(registry: TenantRegistry, org_id: str) -> None:
    assert TenantRegistry.validate(org_id) == org_id
    registry.create(org_id)
    assert registry.ids() == [org_id]
    assert registry.path_for(org_id).name == f"tenant-{org_id}.db"


# -- migrate_all ------------------------------------------------------------------


def test_migrate_all(tdir: Path) -> None:
    ids = [f"t{i:02d}" for i in range(12)]
    fresh_files(tdir, ids)
    opens = Opens()
    seen: list[tuple[int, int]] = []
    with TenantRegistry(tdir, SCHEMA_V2, max_open=3, connect=opens) as reg:
        result = reg.migrate_all(progress=lambda done, total: seen.append((done, total)))
        assert (result.total, result.upgraded, result.current, dict(result.failed)) == (
            12,
            12,
            0,
            {},
        )
        assert result.ok and result.elapsed_s > 0
        assert seen == [(i, 12) for i in range(13)]
        assert opens.peak <= 3 and opens.live == 0 and reg.open_count == 0
        for org in ids:
            assert version(tdir / f"tenant-{org}.db") == (2, APP_ID)
        again = reg.migrate_all()
        assert (again.upgraded, again.current) == (0, 12)


def test_migrate_all_honours_max_open_and_keeps_open_handles(tdir: Path) -> None:
    fresh_files(tdir, [f"t{i}" for i in range(10)])
    opens = Opens()
    with TenantRegistry(tdir, SCHEMA, max_open=3, connect=opens) as reg:
        with reg.lease("t0") as t0:
            t1 = reg.get("t1")
            t2 = reg.get("t2")
            result = reg.migrate_all()
            assert (result.upgraded, result.current) == (7, 3)
            assert not t0.closed
            assert t1.closed or t2.closed  # one slot had to be freed
            assert opens.peak <= 3 and reg.open_count <= 3


def test_migrate_all_reports_failures_and_goes_on(tdir: Path) -> None:
    fresh_files(tdir, ["a", "c"])
    seed_files(tdir, ["b"], Schema("tenant-test", APP_ID, (*SCHEMA_V2.migrations, NOTES_V3)))
    (tdir / "tenant-d.db").write_bytes(b"this is not a database, just some text" * 100)
    with TenantRegistry(tdir, SCHEMA_V2) as reg:
        result = reg.migrate_all()
    assert (result.total, result.upgraded, result.current) == (4, 2, 0)
    assert not result.ok
    assert sorted(result.failed) == ["b", "d"]
    assert isinstance(result.failed["b"], SchemaVersionError)
    assert isinstance(result.failed["d"], alk.DatabaseError)
    assert version(tdir / "tenant-b.db") == (3, APP_ID)


def test_migrate_all_progress_bar(tdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fresh_files(tdir, [f"t{i}" for i in range(4)])
    with TenantRegistry(tdir, SCHEMA) as reg:
        reg.migrate_all(progress=True)
    err = capsys.readouterr().err
    frames = err.split("\r")[1:]
    assert frames[0] == "tenants  [" + "." * 30 + "]  0/4"
    # Redraws closer than 0.1 s apart are skipped; whatever is drawn is a
    # well-formed frame, and the last one always is.
    for frame in frames[1:-1]:
        done = int(frame.rsplit(" ", 1)[1].split("/")[0])
        assert frame == "tenants  [" + "#" * (30 * done // 4) + "." * (30 - 30 * done // 4) + (
            f"]  {done}/4"
        )
    assert frames[-1] == "tenants  [" + "#" * 30 + "]  4/4\n"
    with TenantRegistry(tdir / "empty", SCHEMA) as reg:
        assert reg.migrate_all(progress=True).total == 0
    assert capsys.readouterr().err.endswith("0/0\n")


# -- threads --------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_concurrent_gets_stay_within_the_bound(tdir: Path) -> None:
    ids = [f"org{i:03d}" for i in range(200)]
    seed_files(tdir, ids)
    opens = Opens()
    reg = TenantRegistry(tdir, SCHEMA, max_open=16, connect=opens)
    errors: list[BaseException] = []
    violations: list[int] = []
    stop = threading.Event()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for n in range(300):
                org = rng.choice(ids)
                db = reg.get(org)
                if db.path.name != f"tenant-{org}.db":
                    raise AssertionError(f"{org} -> {db.path}")
                if reg.open_count > 16:
                    violations.append(reg.open_count)
                if n % 5 == 0:
                    with reg.lease(org) as leased:
                        leased.execute("INSERT INTO notes(body) VALUES (?)", (org,))
                        wrong = leased.query("SELECT count(*) FROM notes WHERE body != ?", (org,))
                        assert wrong == [(0,)]
        except BaseException as exc:
            errors.append(exc)

    fd_checks = 0

    def monitor() -> None:
        nonlocal fd_checks
        while not stop.is_set():
            if opens.live > 16 or reg.open_count > 16:
                violations.append(max(opens.live, reg.open_count))
            # Reading /proc/self/fd is not atomic: while a handle is being
            # closed and another opened, a listing can catch the fds of both.
            # So count fds only when nothing is in flight (white-box: the
            # registry's lock held and no slot reserved).
            with reg._cond:
                if HAVE_PROC_FD and reg._cond.wait_for(lambda: reg._reserved == 0, timeout=0.01):
                    fd_checks += 1
                    files = open_tenant_files(tdir)
                    if len(files) > 16:
                        violations.append(-len(files))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    watcher = threading.Thread(target=monitor)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    reg.close()
    assert errors == []
    assert violations == []
    assert fd_checks > 0 or not HAVE_PROC_FD
    assert opens.peak <= 16 and opens.live == 0
    assert len(set(opens.opened)) > 16  # the bound was actually exercised
    written = 0
    for org in ids:
        with alk.connect(tdir / f"tenant-{org}.db", readonly=True) as db:
            rows = db.query("SELECT DISTINCT body FROM notes")
            assert rows in ([], [(org,)])
            written += len(rows)
    assert written > 0


@pytest.mark.timeout(60)
def test_concurrent_create_of_one_org_makes_one_file(tdir: Path) -> None:
    reg = TenantRegistry(tdir, SCHEMA, max_open=4)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        try:
            reg.create("acme")
            outcomes.append("created")
        except AlreadyExistsError:
            outcomes.append("exists")

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created"] + ["exists"] * 7
    assert reg.get("acme").query("SELECT count(*) FROM notes") == [(0,)]
    reg.close()
