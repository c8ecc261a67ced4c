"""`alkdev_storage.aio`: the core's asyncio face, as a service's coroutines
use it. What may wait (the writer, a pooled reader, a commit's checkpoint)
never holds up the event loop; a cancelled task leaves no transaction open;
an exception rolls back."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

import alkdev_storage as alk
from alkdev_storage.aio import AsyncDatabase


@pytest.fixture
def db(tmp_path: Path) -> alk.Database:
    database = alk.connect(tmp_path / "app.db", busy_timeout_ms=3000)
    database.execute("CREATE TABLE t(x)")
    return database


def hold_writer(db: alk.Database, seconds: float) -> threading.Event:
    """A thread holding a write transaction for `seconds`; the event is set
    once it holds it."""
    holding = threading.Event()

    def hold() -> None:
        with db.transaction() as tx:
            tx.execute("INSERT INTO t(x) VALUES ('held')")
            holding.set()
            time.sleep(seconds)

    threading.Thread(target=hold, daemon=True).start()
    assert holding.wait(5)
    return holding


async def ticks_during(work: asyncio.Future[object] | asyncio.Task[object]) -> int:
    """How many 10 ms ticks the loop ran while `work` was pending."""
    ticks = 0
    while not work.done():
        await asyncio.sleep(0.01)
        ticks += 1
    await work
    return ticks


def test_waiting_for_the_writer_leaves_the_loop_running(db: alk.Database) -> None:
    async def main() -> tuple[int, int]:
        adb = AsyncDatabase(db)
        hold_writer(db, 0.4)
        write = asyncio.ensure_future(adb.execute("INSERT INTO t(x) VALUES ('after')"))
        ticks = await ticks_during(write)

        hold_writer(db, 0.4)

        async def in_transaction() -> object:
            async with adb.transaction() as tx:
                await tx.execute("INSERT INTO t(x) VALUES ('tx')")
                return await tx.query("SELECT count(*) FROM t")

        begun = asyncio.ensure_future(in_transaction())
        return ticks, await ticks_during(begun)

    first, second = asyncio.run(main())
    # 400 ms of waiting each: the loop ticked through it (a blocked loop
    # would tick once or twice).
    assert first >= 15 and second >= 15
    assert sorted(db.query("SELECT x FROM t")) == [("after",), ("held",), ("held",), ("tx",)]
    db.close()


def test_many_tasks_share_the_writer_in_turn(db: alk.Database) -> None:
    async def worker(adb: AsyncDatabase, n: int) -> None:
        for i in range(20):
            async with adb.transaction() as tx:
                await tx.execute("INSERT INTO t(x) VALUES (?)", (n * 100 + i,))
                db.queue("jobs").enqueue({"n": n, "i": i}, tx=tx.native)

    async def main() -> None:
        adb = AsyncDatabase(db)
        await asyncio.gather(*(worker(adb, n) for n in range(10)))

    asyncio.run(main())
    assert db.query("SELECT count(*) FROM t") == [(200,)]
    assert db.query("SELECT count(*) FROM _honker_live") == [(200,)]
    db.close()


def test_an_exception_rolls_back_and_so_does_cancellation_inside(db: alk.Database) -> None:
    async def main() -> None:
        adb = AsyncDatabase(db)
        with pytest.raises(ZeroDivisionError):
            async with adb.transaction() as tx:
                await tx.execute("INSERT INTO t(x) VALUES ('raised')")
                db.queue("jobs").enqueue({"lost": True}, tx=tx.native)
                raise ZeroDivisionError("the handler failed")

        async def stalls() -> None:
            async with adb.transaction() as tx:
                await tx.execute("INSERT INTO t(x) VALUES ('cancelled')")
                await asyncio.sleep(10)

        task = asyncio.ensure_future(stalls())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert db.query("SELECT count(*) FROM t") == [(0,)]
    assert db.query("SELECT count(*) FROM _honker_live") == [(0,)]
    db.close()


def test_a_task_cancelled_while_beginning_leaves_no_transaction_open(db: alk.Database) -> None:
    async def main() -> float:
        adb = AsyncDatabase(db)
        hold_writer(db, 0.3)

        async def begins() -> None:
            async with adb.transaction() as tx:
                await tx.execute("INSERT INTO t(x) VALUES ('never')")

        task = asyncio.ensure_future(begins())
        await asyncio.sleep(0.05)  # waiting for the writer on a worker thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The worker thread gets the writer once the holder commits; the
        # abandoned transaction must be rolled back then, not left holding
        # it until garbage collection.
        started = time.monotonic()
        async with adb.transaction() as tx:
            await tx.execute("INSERT INTO t(x) VALUES ('next')")
        return time.monotonic() - started

    waited = asyncio.run(main())
    assert waited < 2  # the holder's 0.3 s, not the 3 s busy timeout
    assert sorted(db.query("SELECT x FROM t")) == [("held",), ("next",)]
    db.close()


def test_reads_and_run(db: alk.Database) -> None:
    async def main() -> None:
        adb = AsyncDatabase(db)
        await adb.executemany("INSERT INTO t(x) VALUES (?)", [(i,) for i in range(5)])
        assert await adb.query("SELECT sum(x) FROM t") == [(10,)]
        assert await adb.query_one("SELECT max(x) AS m FROM t", as_dict=True) == {"m": 4}
        job = await adb.run(db.queue("jobs").enqueue, {"k": 1})
        assert isinstance(job, int)
        tx = await adb.transaction()
        await tx.execute("DELETE FROM t")
        assert await tx.query("SELECT count(*) FROM t") == [(0,)]
        await tx.rollback()
        assert not tx.active
        await adb.executescript("INSERT INTO t(x) VALUES (100); INSERT INTO t(x) VALUES (200);")
        assert await adb.query("SELECT count(*) FROM t") == [(7,)]

    asyncio.run(main())
    with pytest.raises(alk.InputTypeError):
        AsyncDatabase("app.db")  # type: ignore[arg-type]
    with pytest.raises(alk.ProgrammingError, match="not begun"):
        _ = AsyncDatabase(db).transaction().native
    db.close()
