"""Wakes: one watcher thread serves every watched file of the process, and
wakes reach sync waiters and asyncio loops without a thread per watch.

Timing is never asserted beyond generous limits: a wake must arrive within
WAKE seconds, whatever the machine's load.
"""

from __future__ import annotations

import asyncio
import gc
import os
import select
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import alkdev_storage as alk
from alkdev_storage import _native
from alkdev_storage._wake import AsyncWatch, SyncWatch

if not hasattr(_native, "watch"):  # pragma: no cover - the watcher is built on Unix only
    pytest.skip("no watcher on this platform", allow_module_level=True)

WAKE = 5.0

# A second process commits `n` rows to the file, with the stdlib's sqlite3.
WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
for _ in range(int(sys.argv[2])):
    conn.execute("INSERT INTO t(x) VALUES (1)")
conn.close()
"""


def commit_elsewhere(path: Path, n: int = 1) -> None:
    subprocess.run([sys.executable, "-c", WRITER, str(path), str(n)], check=True, timeout=60)


def make_db(path: Path, *, journal: str = "WAL") -> Path:
    """Create a database with the stdlib module, closed before any watch."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode={journal}")
    conn.execute("CREATE TABLE IF NOT EXISTS t(x)")
    conn.close()
    return path


def commit_here(path: Path) -> None:
    """Commit from this process through the bundled SQLite. Never the stdlib
    module here: the watcher reads the file with the bundled library, and
    two SQLite libraries in one process release each other's POSIX locks."""
    with alk.connect(path) as db:
        db.execute("INSERT INTO t(x) VALUES (1)")


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


async def woken(w: AsyncWatch) -> bool:
    """Wait with no timeout of its own: only a delivered wake ends it (a
    timed wait would fall back to checking `changed()` at its deadline)."""
    return await asyncio.wait_for(w.wait(), WAKE)


def eventually(check: Callable[[], bool], timeout: float = WAKE) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def info() -> _native._WatcherInfo:
    return _native.watcher_info()


@pytest.fixture(autouse=True)
def closes_every_watch() -> Iterator[None]:
    """Each test unwatches what it watched: the registry is back where it was."""
    before = info()["watched_files"]
    yield
    gc.collect()
    assert info()["watched_files"] == before


@pytest.fixture
def quiet(tmp_path: Path) -> Path:
    """A database nobody writes to."""
    return make_db(tmp_path / "quiet.db")


# -- sync waiters ---------------------------------------------------------------


def test_a_commit_in_this_process_wakes(db: alk.Database, db_path: Path) -> None:
    with _native.watch(db_path) as w:
        assert isinstance(w, SyncWatch)
        assert info()["running"]
        db.execute("INSERT INTO t(x) VALUES (1)")
        assert w.wait(WAKE) is True


def test_a_commit_in_another_process_wakes(tmp_path: Path) -> None:
    path = make_db(tmp_path / "shared.db")
    with _native.watch(path) as w:
        commit_elsewhere(path)
        assert w.wait(WAKE) is True


def test_a_commit_between_waits_is_not_lost(db: alk.Database, db_path: Path) -> None:
    with _native.watch(db_path) as w:
        for _ in range(20):
            # Nobody is waiting while the commit lands.
            db.execute("INSERT INTO t(x) VALUES (1)")
            assert w.wait(WAKE) is True
        db.execute("INSERT INTO t(x) VALUES (1)")
        # Reported later without blocking, once the thread has seen it.
        assert eventually(w.changed)


def test_every_watch_of_a_file_gets_its_own_wake(db: alk.Database, db_path: Path) -> None:
    with _native.watch(db_path) as first, _native.watch(db_path) as second:
        db.execute("INSERT INTO t(x) VALUES (1)")
        assert first.wait(WAKE)
        assert second.wait(WAKE)


def test_wait_times_out_on_a_quiet_file(quiet: Path) -> None:
    with _native.watch(quiet) as w:
        start = time.monotonic()
        assert w.wait(0.05) is False
        assert time.monotonic() - start >= 0.05
        assert w.wait(0) is False
        assert w.wait(-1) is False
        assert w.changed() is False


def test_a_blocked_waiter_leaves_the_gil_and_is_woken(db: alk.Database, db_path: Path) -> None:
    with _native.watch(db_path) as w:
        result: list[bool] = []
        waiter = threading.Thread(target=lambda: result.append(w.wait(4 * WAKE)))
        waiter.start()
        time.sleep(0.05)
        # This thread runs (and commits) while the other one waits.
        db.execute("INSERT INTO t(x) VALUES (1)")
        waiter.join(4 * WAKE)
        assert result == [True]


def test_closing_a_watch_fails_its_blocked_waiter(quiet: Path) -> None:
    w = _native.watch(quiet)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            w.wait(4 * WAKE)
        except alk.ProgrammingError as e:
            errors.append(e)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.05)
    w.close()
    waiter.join(4 * WAKE)
    assert len(errors) == 1 and "closed" in str(errors[0])
    assert w.closed
    w.close()  # idempotent
    with pytest.raises(alk.ProgrammingError):
        w.wait(0)
    with pytest.raises(alk.ProgrammingError):
        w.changed()
    assert "closed" in repr(w)


# -- registry: what is watched ----------------------------------------------------


def test_a_file_is_watched_while_it_has_watches(quiet: Path, tmp_path: Path) -> None:
    base = info()["watched_files"]
    link = tmp_path / "link.db"
    link.symlink_to(quiet)
    first = _native.watch(quiet)
    second = _native.watch(link)  # another spelling of the same file
    assert first.path == second.path == quiet.resolve()
    assert info()["watched_files"] == base + 1
    first.close()
    assert info()["watched_files"] == base + 1
    second.close()
    assert info()["watched_files"] == base
    third = _native.watch(str(quiet))
    assert info()["watched_files"] == base + 1
    del third
    gc.collect()
    assert info()["watched_files"] == base
    if info()["backend"] == "inotify":
        # The thread drops the directory watch with the directory's last file.
        assert eventually(lambda: info()["watched_directories"] == 0)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_two_hundred_databases_one_thread(tmp_path: Path) -> None:
    paths = [make_db(tmp_path / f"tenant-{i}.db") for i in range(200)]
    base_files = info()["watched_files"]
    before = os_threads()
    watches = [_native.watch(p) for p in paths]
    assert info()["watched_files"] == base_files + 200
    # At most the watcher thread itself is new (if this test started it).
    assert os_threads() <= before + 1
    if info()["backend"] == "inotify":
        assert eventually(lambda: info()["watched_directories"] == 1)

    async def listen() -> list[bool]:
        listeners = [AsyncWatch(p) for p in paths[:5]]
        waits = [asyncio.create_task(woken(a)) for a in listeners]
        await asyncio.sleep(0.05)
        assert os_threads() <= before + 1  # no thread per async watch either
        commit_here(paths[3])
        touched = await waits[3]
        assert all(not t.done() for i, t in enumerate(waits) if i != 3)
        for t in waits:
            t.cancel()
        for a in listeners:
            a.close()
        return [touched, *(w.changed() for w in watches[:3])]

    assert asyncio.run(listen()) == [True, False, False, False]
    assert watches[3].wait(WAKE)  # the sync watch of that file saw it too
    assert os_threads() <= before + 1

    # Polling many files stretches the idle cadence instead of burning CPU:
    # 200 polled files take at least 200 x 50 us per round.
    try:
        _native.configure_watcher(backend="polling", idle_poll_ms=1)
        assert eventually(lambda: info()["effective_idle_poll_ms"] == 10.0)
        assert info()["idle_poll_ms"] == 1.0
        commit_here(paths[7])
        assert watches[7].wait(WAKE)
    finally:
        _native.configure_watcher(backend="auto", idle_poll_ms=10)
    for w in watches:
        w.close()
    assert info()["watched_files"] == base_files


# -- asyncio ----------------------------------------------------------------------


def test_async_wake_from_this_and_another_process(db: alk.Database, db_path: Path) -> None:
    async def main() -> None:
        async with AsyncWatch(db_path) as w:
            assert w.path == db_path.resolve()
            task = asyncio.create_task(woken(w))
            await asyncio.sleep(0.01)
            db.execute("INSERT INTO t(x) VALUES (1)")
            assert await task is True

            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", WRITER, str(db_path), "1"
            )
            assert await proc.wait() == 0
            assert await woken(w) is True
        assert w.closed

    asyncio.run(main())


def test_async_wait_times_out_and_wakes_only_its_file(quiet: Path, tmp_path: Path) -> None:
    busy = make_db(tmp_path / "busy.db")

    async def main() -> None:
        with AsyncWatch(quiet) as q, AsyncWatch(busy) as b:
            assert await q.wait(0.05) is False
            assert q.changed() is False
            commit_here(busy)
            assert await woken(b) is True
            assert await q.wait(0.2) is False

    asyncio.run(main())


def test_async_close_fails_the_pending_wait(quiet: Path) -> None:
    async def main() -> None:
        w = AsyncWatch(quiet)
        task = asyncio.create_task(w.wait())
        await asyncio.sleep(0.01)
        w.close()
        with pytest.raises(alk.ProgrammingError):
            await asyncio.wait_for(task, WAKE)

    asyncio.run(main())


def test_async_watch_needs_a_running_loop(quiet: Path) -> None:
    with pytest.raises(alk.ProgrammingError, match="coroutine"):
        AsyncWatch(quiet)


def test_a_loop_shares_one_hub_and_drops_it_with_its_last_watch(quiet: Path) -> None:
    from alkdev_storage import _wake

    async def main() -> None:
        loop = asyncio.get_running_loop()
        first, second = AsyncWatch(quiet), AsyncWatch(quiet)
        assert len(_wake._HUBS) == 1
        hub = _wake._HUBS[loop]
        first.close()
        assert not hub.hub.closed
        del second  # garbage-collected unclosed
        gc.collect()
        await asyncio.sleep(0.01)
        assert hub.hub.closed
        assert loop not in _wake._HUBS

    asyncio.run(main())


def test_wake_hub_queues_tokens_and_rings_its_pipe(db: alk.Database, db_path: Path) -> None:
    hub = _native.WakeHub()
    with _native.watch(db_path, hub=hub, token=42) as w:
        assert hub.drain() == []
        db.execute("INSERT INTO t(x) VALUES (1)")
        readable, _, _ = select.select([hub.fileno()], [], [], WAKE)
        assert readable
        assert 42 in hub.drain()
        assert w.changed() is True  # the same wake, seen by the watch itself
        hub.close()
        assert hub.closed and "closed" in repr(hub)
        for call in (hub.drain, hub.fileno):
            with pytest.raises(alk.ProgrammingError, match="WakeHub is closed"):
                call()
        with pytest.raises(alk.ProgrammingError, match="WakeHub is closed"):
            _native.watch(db_path, hub=hub)
        # The watch outlives its hub for sync use.
        db.execute("INSERT INTO t(x) VALUES (1)")
        assert w.wait(WAKE) is True


# -- cadence settings and backends --------------------------------------------------


def test_polling_backend_wakes_too(tmp_path: Path) -> None:
    path = make_db(tmp_path / "polled.db")
    try:
        _native.configure_watcher(backend="polling", idle_poll_ms=5)
        with _native.watch(path) as w:
            assert eventually(lambda: info()["backend"] == "polling")
            assert info()["requested_backend"] == "polling"
            assert info()["idle_poll_ms"] == 5.0
            assert info()["watched_directories"] == 0
            commit_elsewhere(path)
            assert w.wait(WAKE) is True
            # Back to kernel hints while running, and they work too.
            _native.configure_watcher(backend="auto")
            if sys.platform == "linux":
                assert eventually(lambda: info()["backend"] == "inotify")
            commit_elsewhere(path)
            assert w.wait(WAKE) is True
    finally:
        _native.configure_watcher(backend="auto", idle_poll_ms=10)


def test_configure_applies_to_the_running_thread(quiet: Path) -> None:
    with _native.watch(quiet):
        try:
            _native.configure_watcher(fallback_interval_ms=20, hot_window_ms=30)
            assert info()["fallback_interval_ms"] == 20.0
            assert info()["hot_window_ms"] == 30.0
            checks = info()["checks"]
            # The sweep now runs every 20 ms: checks keep coming on a quiet file.
            assert eventually(lambda: info()["checks"] >= checks + 3)
        finally:
            _native.configure_watcher(fallback_interval_ms=250, hot_window_ms=100)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fallback_interval_ms": 0},
        {"hot_window_ms": -5},
        {"idle_poll_ms": 10**12},
        {"backend": "bogus"},
    ],
)
def test_bad_settings_are_value_errors(kwargs: dict[str, object]) -> None:
    before = info()
    with pytest.raises(ValueError):
        _native.configure_watcher(**kwargs)  # type: ignore[arg-type]
    after = info()
    assert {k: after[k] for k in ("fallback_interval_ms", "hot_window_ms", "idle_poll_ms")} == {
        k: before[k] for k in ("fallback_interval_ms", "hot_window_ms", "idle_poll_ms")
    }


# -- errors -------------------------------------------------------------------------


def test_watching_needs_an_existing_database_file(tmp_path: Path) -> None:
    with pytest.raises(alk.CantOpenError, match="existing database file") as missing:
        _native.watch(tmp_path / "missing.db")
    assert missing.value.sqlite_errorname == "SQLITE_CANTOPEN"
    assert not (tmp_path / "missing.db").exists()  # watching never creates
    with pytest.raises(alk.CantOpenError, match="not a regular file"):
        _native.watch(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not an SQLite database, just some text" * 20)
    with pytest.raises(alk.NotADatabaseError):
        _native.watch(junk)


def test_nan_timeout_is_a_value_error(quiet: Path) -> None:
    with _native.watch(quiet) as w, pytest.raises(ValueError):
        w.wait(float("nan"))


def test_a_dead_watcher_thread_is_an_error_not_a_hang(db: alk.Database, db_path: Path) -> None:
    starts = info()["thread_starts"]
    w = _native.watch(db_path)

    async def crash_while_waiting() -> BaseException | None:
        a = AsyncWatch(db_path)
        task = asyncio.create_task(a.wait(4 * WAKE))
        await asyncio.sleep(0.01)
        _native._crash_watcher()
        try:
            await asyncio.wait_for(task, 4 * WAKE)
        except alk.OperationalError as e:
            return e
        finally:
            a.close()
        return None

    error = asyncio.run(crash_while_waiting())
    assert error is not None and "watcher thread stopped" in str(error)
    with pytest.raises(alk.OperationalError, match="watcher thread stopped"):
        w.wait(4 * WAKE)
    assert not info()["running"]
    assert "crash requested" in (info()["last_error"] or "")
    w.close()

    # A new watch starts a new thread, and wakes work again.
    with _native.watch(db_path) as fresh:
        assert info()["running"] and info()["thread_starts"] == starts + 1
        db.execute("INSERT INTO t(x) VALUES (1)")
        assert fresh.wait(WAKE) is True


def test_a_replaced_file_wakes_and_is_followed(tmp_path: Path) -> None:
    path = make_db(tmp_path / "main.db", journal="DELETE")
    with _native.watch(path) as w:
        replacement = make_db(tmp_path / "restored.db", journal="DELETE")
        os.replace(replacement, path)
        assert w.wait(WAKE) is True
        while w.wait(0.3):  # let any follow-up wake pass
            pass
        # The watcher's connection now reads the new file.
        commit_here(path)
        assert w.wait(WAKE) is True


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_gets_an_error_and_can_watch_afresh(quiet: Path, tmp_path: Path) -> None:
    child_db = make_db(tmp_path / "child.db")
    with _native.watch(quiet) as inherited:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                try:
                    inherited.changed()
                    code = 2
                except alk.ProgrammingError:
                    with _native.watch(child_db) as mine:
                        commit_here(child_db)
                        code = 0 if mine.wait(WAKE) else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's watcher is untouched by the child.
        commit_here(quiet)
        assert inherited.wait(WAKE) is True
