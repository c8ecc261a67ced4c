"""The claim loops' waits: `idle_poll_s=None` (no fallback poll) with a job
due later, and a worker task cancelled while it waits for a claim."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import alkdev_storage as alk


def test_async_claim_without_a_fallback_poll_wakes_when_a_delayed_job_is_due(
    tmp_path: Path,
) -> None:
    db = alk.connect(tmp_path / "q.db")
    queue = db.queue("mail")
    # run_at has whole-second resolution: delay=2 is due 1-2 s from now.
    queue.enqueue({"n": 1}, delay=2)
    start = time.monotonic()

    async def first() -> alk.Job:
        jobs = queue.claim("w", idle_poll_s=None)
        try:
            return await asyncio.wait_for(anext(jobs), 10)
        finally:
            await jobs.aclose()

    job = asyncio.run(first())
    assert job.payload == {"n": 1} and 0.9 < time.monotonic() - start < 5
    db.close()


def test_blocking_claim_without_a_fallback_poll(tmp_path: Path) -> None:
    db = alk.connect(tmp_path / "q.db")
    queue = db.queue("mail")
    queue.enqueue({"n": 2}, delay=1)
    deadline = time.monotonic() + 10
    jobs = queue.iter_claim("w", idle_poll_s=None, stop=lambda: time.monotonic() > deadline)
    assert next(jobs).payload == {"n": 2}
    db.close()


@pytest.mark.parametrize("bad", [0, -1, "5", True])
def test_idle_poll_must_be_positive_or_none(tmp_path: Path, bad: object) -> None:
    db = alk.connect(tmp_path / "q.db")
    with pytest.raises(alk.InvalidInputError, match="idle_poll_s"):
        next(db.queue("mail").iter_claim("w", idle_poll_s=bad))  # type: ignore[arg-type]
    db.close()


def test_cancelling_an_outbox_worker_raises_cancelled_error(tmp_path: Path) -> None:
    db = alk.connect(tmp_path / "o.db")
    delivered: list[object] = []
    outbox = db.outbox("mail", delivered.append)
    outbox.enqueue({"n": 1})

    async def main() -> None:
        worker = asyncio.create_task(outbox.run_worker("w"))
        for _ in range(100):
            if delivered:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # now waiting for the next claim
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker

    asyncio.run(main())
    assert delivered == [{"n": 1}]
    db.close()
