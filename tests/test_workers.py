"""asyncio workers: every job processed exactly once, across tasks and
processes, with no thread per waiter."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import alkdev_storage as alk

WORKER_PROCESS = """
import asyncio, json, sys
import alkdev_storage as alk

async def worker(q, name, seen):
    async for job in q.claim(name, idle_poll_s=0.2):
        if not job.ack():
            raise SystemExit(f"lost the claim on {job.id}")
        seen.append(job.payload["n"])

async def main(path, tag, workers):
    db = alk.connect(path)
    q = db.queue("jobs")
    seen = []
    tasks = [asyncio.create_task(worker(q, f"{tag}-{i}", seen)) for i in range(workers)]
    # Stop the workers the way a service does: cancel the tasks running the
    # loops (cancelling a pending anext() would end the claim iterator).
    while not any(t.done() for t in tasks):
        await asyncio.sleep(0.2)
        (live,) = db.query_one("SELECT count(*) FROM _honker_live WHERE queue = 'jobs'")
        if live == 0:
            break
    for t in tasks:
        t.cancel()
    for t in tasks:
        try:
            await t
        except asyncio.CancelledError:
            pass
    print(json.dumps(seen))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def test_async_workers_in_one_process_take_each_job_once(tmp_path: Path) -> None:
    db = alk.connect(tmp_path / "q.db")
    q = db.queue("jobs")
    q.enqueue_many([{"n": i} for i in range(500)])
    seen: list[int] = []

    async def worker(name: str) -> None:
        async for job in q.claim(name, idle_poll_s=0.2):
            assert job.ack()
            seen.append(job.payload["n"])
            if len(seen) == 500:
                return

    async def main() -> None:
        tasks = [asyncio.create_task(worker(f"w{i}")) for i in range(4)]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()

    asyncio.run(asyncio.wait_for(main(), timeout=60))
    assert sorted(seen) == list(range(500))


def test_four_processes_of_four_workers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    db = alk.connect(path)
    total = 10_000
    db.queue("jobs").enqueue_many([{"n": i} for i in range(total)])
    script = textwrap.dedent(WORKER_PROCESS)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path), f"p{p}", "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(4)
    ]
    seen: list[int] = []
    for proc in procs:
        out, err = proc.communicate(timeout=110)
        assert proc.returncode == 0, err
        seen.extend(json.loads(out))
    assert len(seen) == total, "a job was processed twice or not at all"
    assert sorted(seen) == list(range(total))
    assert db.query("SELECT count(*) FROM _honker_live") == [(0,)]
    assert db.query("SELECT count(*) FROM _honker_dead") == [(0,)]
