"""Durable task queues: honker's `_honker_live` / `_honker_dead` tables.

>>> import alkdev_storage as alk, tempfile, os
>>> db = alk.connect(os.path.join(tempfile.mkdtemp(), "app.db"))
>>> emails = db.queue("emails")
>>> job_id = emails.enqueue({"to": "ada@example.com"})
>>> job = emails.claim_one("worker-1")
>>> job.payload, job.attempts
({'to': 'ada@example.com'}, 1)
>>> job.ack()
True
>>> db.close()

Jobs move ``pending`` → ``processing`` (claimed, with a visibility timeout)
→ deleted on ack, back to ``pending`` on retry, or to the dead letters on
fail, on retry with no attempts left, or when reclaimed after
``max_attempts`` claims. The rules are honker-core's, so other honker
bindings on the same file see the same jobs (docs/honker-contract.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from alkdev_storage import _checks as check
from alkdev_storage._checks import shown
from alkdev_storage._native import Job, Transaction
from alkdev_storage._waiting import AsyncChange, SyncChange
from alkdev_storage.aio import in_transaction
from alkdev_storage.errors import InputTypeError, InvalidInputError

if TYPE_CHECKING:
    from alkdev_storage._database import Database

_JOB_KEYS = (
    "id",
    "queue",
    "payload",
    "state",
    "priority",
    "run_at",
    "worker_id",
    "claim_expires_at",
    "attempts",
    "max_attempts",
    "created_at",
    "expires_at",
)


class Queue:
    """A named queue. Get one with ``db.queue(name)``."""

    def __init__(
        self,
        db: Database,
        name: str,
        *,
        visibility_timeout_s: int = 300,
        max_attempts: int = 3,
    ) -> None:
        self._db = db
        self.name = check.text("queue name", name)
        self.visibility_timeout_s = check.seconds("visibility_timeout_s", visibility_timeout_s)
        self.max_attempts = check.whole("max_attempts", max_attempts, minimum=1)

    def __repr__(self) -> str:
        return f"<Queue {check.shown(self.name)}>"

    # ------------------------------------------------------------ enqueue

    def _options(
        self,
        run_at: int | None,
        delay: int | None,
        priority: int,
        expires: int | None,
        max_attempts: int | None,
    ) -> tuple[int | None, int | None, int, int, int | None]:
        return (
            check.optional_whole("run_at", run_at),
            None if delay is None else check.seconds("delay", delay, minimum=0),
            check.whole("priority", priority),
            self.max_attempts
            if max_attempts is None
            else check.whole("max_attempts", max_attempts, minimum=1),
            None if expires is None else check.seconds("expires", expires),
        )

    def enqueue(
        self,
        payload: Any,
        tx: object = None,
        run_at: int | None = None,
        delay: int | None = None,
        priority: int = 0,
        expires: int | None = None,
        max_attempts: int | None = None,
    ) -> int:
        """Add a job; returns its id. In `tx` it lands only if `tx` commits.

        `delay` (seconds from now) wins over `run_at` (Unix seconds); `expires`
        is seconds from now after which an unclaimed job is swept as expired.
        """
        opts = self._options(run_at, delay, priority, expires, max_attempts)
        return self._db._enqueue(self.name, payload, *opts, tx=check.native_tx(tx))

    def enqueue_many(
        self,
        payloads: Iterable[Any],
        tx: object = None,
        *,
        run_at: int | None = None,
        delay: int | None = None,
        priority: int = 0,
        expires: int | None = None,
        max_attempts: int | None = None,
    ) -> list[int]:
        """Add many jobs in one transaction (or in `tx`); their ids in order."""
        opts = self._options(run_at, delay, priority, expires, max_attempts)
        return self._db._enqueue_many(self.name, payloads, *opts, tx=check.native_tx(tx))

    # -------------------------------------------------------------- claim

    def claim_batch(self, worker_id: str, n: int) -> list[Job]:
        """Claim up to `n` due jobs for `worker_id`, highest priority first."""
        worker = check.text("worker_id", worker_id)
        count = check.whole("n", n, minimum=1)
        return self._db._claim(self.name, worker, count, self.visibility_timeout_s)

    def claim_one(self, worker_id: str) -> Job | None:
        """Claim the next due job, or None."""
        jobs = self.claim_batch(worker_id, 1)
        return jobs[0] if jobs else None

    def _wait_budget(self, idle_poll_s: float | None) -> float | None:
        """Seconds until a claim could next succeed without a commit, at
        most `idle_poll_s` (None: no fallback poll; None back when no job
        is due later either, meaning wait for a commit)."""
        due = self.next_claim_at()
        if due is None:
            return idle_poll_s
        until_due = max(0.0, due - time.time())
        return until_due if idle_poll_s is None else min(idle_poll_s, until_due)

    async def claim(
        self, worker_id: str, idle_poll_s: float | None = 5.0
    ) -> AsyncGenerator[Job, None]:
        """Async iterator of claimed jobs, one claim per job, forever.

        Sleeps until a commit touches the file (any process), a delayed or
        timed-out job comes due, or `idle_poll_s` passes (None: no fallback
        poll). No thread per waiter: the process's one watcher thread wakes
        the event loop.

        To stop, cancel the task running the ``async for`` loop. Cancelling
        a pending ``anext()`` (``asyncio.wait_for(anext(it), t)`` timing out)
        ends the iterator for good, as with any async generator.
        """
        worker = check.text("worker_id", worker_id)
        _check_poll(idle_poll_s)

        def claim_one(tx: Transaction) -> list[Job]:
            return self._db._claim(self.name, worker, 1, self.visibility_timeout_s, tx=tx)

        with AsyncChange(self._db.path) as change:
            while True:
                # Never waits for the writer on the loop's thread (a request
                # holding it may need the loop to commit).
                jobs = await in_transaction(self._db, claim_one)
                if jobs:
                    yield jobs[0]
                    continue
                await change.wait(self._wait_budget(idle_poll_s))

    def iter_claim(
        self,
        worker_id: str,
        idle_poll_s: float | None = 5.0,
        *,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[Job]:
        """Blocking iterator of claimed jobs; ends when `stop()` is true
        (checked at least every 0.5 s)."""
        check.text("worker_id", worker_id)
        _check_poll(idle_poll_s)
        with SyncChange(self._db.path) as change:
            while stop is None or not stop():
                job = self.claim_one(worker_id)
                if job is not None:
                    yield job
                    continue
                budget = self._wait_budget(idle_poll_s)
                if stop is not None:
                    budget = 0.5 if budget is None else min(budget, 0.5)
                change.wait(budget)

    # ---------------------------------------------------------- per job

    def ack(self, job_id: int, worker_id: str, tx: object = None) -> bool:
        """Delete the job if `worker_id` still holds a valid claim on it.

        False (nothing changed) when the job is someone else's, its claim
        expired, or it is gone.
        """
        check.whole("job_id", job_id)
        return self._db._ack(job_id, check.text("worker_id", worker_id), tx=check.native_tx(tx))

    def ack_batch(self, ids: Iterable[int], worker_id: str, tx: object = None) -> int:
        """Ack several jobs; how many were ours and are now deleted."""
        id_list = [check.whole("job id", i) for i in ids]
        worker = check.text("worker_id", worker_id)
        return self._db._ack_batch(id_list, worker, tx=check.native_tx(tx))

    def retry(
        self,
        job_id: int,
        worker_id: str,
        delay_s: int = 60,
        error: str = "",
        tx: object = None,
    ) -> bool:
        """Pending again after `delay_s`; dead with `error` if no attempts are
        left. False if the claim is not (any more) `worker_id`'s."""
        check.whole("job_id", job_id)
        worker = check.text("worker_id", worker_id)
        delay = check.seconds("delay_s", delay_s, minimum=0)
        message = check.text("error", error, empty=True)
        return self._db._retry(job_id, worker, delay, message, tx=check.native_tx(tx))

    def fail(self, job_id: int, worker_id: str, error: str = "", tx: object = None) -> bool:
        """Move the job to the dead letters; False if the claim is not ours."""
        check.whole("job_id", job_id)
        worker = check.text("worker_id", worker_id)
        message = check.text("error", error, empty=True)
        return self._db._fail(job_id, worker, message, tx=check.native_tx(tx))

    def heartbeat(
        self,
        job_id: int,
        worker_id: str,
        extend_s: int | None = None,
        tx: object = None,
    ) -> bool:
        """Extend a still-valid claim to now + `extend_s` seconds."""
        check.whole("job_id", job_id)
        worker = check.text("worker_id", worker_id)
        extend = self.visibility_timeout_s if extend_s is None else extend_s
        extend = check.seconds("extend_s", extend)
        return self._db._heartbeat(job_id, worker, extend, tx=check.native_tx(tx))

    def cancel(self, job_id: int, tx: object = None) -> bool:
        """Remove a pending or processing job, whoever holds it."""
        check.whole("job_id", job_id)
        return self._db._cancel(job_id, tx=check.native_tx(tx))

    def get_job(self, job_id: int) -> dict[str, Any] | None:
        """The live job as a dict (payload decoded), or None if acked, dead
        or unknown. Reads a snapshot; never takes the write lock."""
        row = self._db._get_job(check.whole("job_id", job_id))
        if row is None:
            return None
        job = dict(zip(_JOB_KEYS, row, strict=True))
        job["payload"] = check.loads(row[2])
        return job

    def sweep_expired(self) -> int:
        """Move pending jobs past their expiry to the dead letters."""
        return self._db._sweep_expired(self.name)

    def next_claim_at(self) -> int | None:
        """Unix time at which a claim could next succeed, or None."""
        return self._db._next_claim_at(self.name) or None

    # ------------------------------------------------------------ results

    def save_result(
        self, job_id: int, value: Any, ttl: int | None = None, tx: object = None
    ) -> None:
        """Store a JSON result for `job_id`; kept `ttl` seconds (None: forever)."""
        check.whole("job_id", job_id)
        ttl_s = 0 if ttl is None else check.seconds("ttl", ttl)
        self._db._result_save(job_id, value, ttl_s, tx=check.native_tx(tx))

    def get_result(self, job_id: int) -> tuple[bool, Any]:
        """``(True, value)`` if a result is stored and unexpired, else
        ``(False, None)``."""
        raw = self._db._result_get(check.whole("job_id", job_id))
        return (False, None) if raw is None else (True, check.loads(raw))

    async def wait_result(self, job_id: int, timeout: float | None = None) -> Any:
        """Wait for the result of `job_id`; raises ``asyncio.TimeoutError``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with AsyncChange(self._db.path) as change:
            while True:
                found, value = self.get_result(job_id)
                if found:
                    return value
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no result for job {job_id} after {timeout} s")
                await change.wait(5.0 if left is None else min(left, 5.0))

    def wait_result_sync(self, job_id: int, timeout: float | None = None) -> Any:
        """Blocking form of `wait_result`; raises ``TimeoutError``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with SyncChange(self._db.path) as change:
            while True:
                found, value = self.get_result(job_id)
                if found:
                    return value
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no result for job {job_id} after {timeout} s")
                change.wait(5.0 if left is None else min(left, 5.0))

    def sweep_results(self) -> int:
        """Delete expired results (of every queue)."""
        return self._db._result_sweep()


Delivery = Callable[[Any], Awaitable[object] | object]


class Outbox:
    """Deliver payloads to the outside world exactly when a transaction
    commits, retrying with exponential backoff.

    Jobs live in the queue ``_outbox:<name>``; a failed delivery is retried
    after ``base_backoff_s * 2 ** (attempts - 1)`` seconds, and dead-lettered
    after `max_attempts`.
    """

    def __init__(
        self,
        db: Database,
        name: str,
        delivery: Delivery,
        *,
        max_attempts: int = 5,
        base_backoff_s: int = 5,
        visibility_timeout_s: int = 60,
    ) -> None:
        if not callable(delivery):
            raise InputTypeError("delivery must be callable")
        self.name = check.text("outbox name", name)
        self.delivery = delivery
        self.base_backoff_s = check.seconds("base_backoff_s", base_backoff_s, minimum=0)
        self.queue = db.queue(
            f"_outbox:{name}",
            visibility_timeout_s=visibility_timeout_s,
            max_attempts=max_attempts,
        )

    def enqueue(
        self,
        payload: Any,
        tx: object = None,
        priority: int = 0,
        delay: int | None = None,
        run_at: int | None = None,
        expires: int | None = None,
    ) -> int:
        """Queue `payload` for delivery (in `tx`: only if it commits)."""
        return self.queue.enqueue(
            payload, tx=tx, priority=priority, delay=delay, run_at=run_at, expires=expires
        )

    def _backoff(self, job: Job) -> int:
        return int(self.base_backoff_s * 2 ** max(job.attempts - 1, 0))

    async def _deliver(self, job: Job) -> None:
        try:
            outcome = self.delivery(job.payload)
            if asyncio.iscoroutine(outcome) or isinstance(outcome, asyncio.Future):
                await outcome
        except Exception as exc:
            delay, error = self._backoff(job), repr(exc)
            await in_transaction(self.queue._db, lambda tx: job.retry(delay, error, tx=tx))
        else:
            await in_transaction(self.queue._db, lambda tx: job.ack(tx=tx))

    async def run_worker(self, worker_id: str, stop_event: asyncio.Event | None = None) -> None:
        """Deliver until `stop_event` is set (forever without one)."""
        jobs = self.queue.claim(worker_id)
        next_job: asyncio.Future[Job] | None = None
        try:
            while stop_event is None or not stop_event.is_set():
                next_job = asyncio.ensure_future(anext(jobs))
                waits: set[asyncio.Future[Any]] = {next_job}
                stopper = None
                if stop_event is not None:
                    stopper = asyncio.ensure_future(stop_event.wait())
                    waits.add(stopper)
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if stopper is not None:
                    stopper.cancel()
                if next_job in done:
                    await self._deliver(next_job.result())
                else:
                    # Let the claim loop unwind before the generator is closed.
                    next_job.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await next_job
        finally:
            # Cancelled (or stopped) with a claim in flight: let the claim
            # loop unwind first, or closing the generator would find it
            # still running (RuntimeError instead of the CancelledError).
            if next_job is not None and not next_job.done():
                next_job.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await next_job
            await jobs.aclose()

    def run_once(self, worker_id: str, n: int = 100) -> int:
        """Deliver up to `n` due payloads now (sync delivery only); how many
        were attempted."""
        jobs = self.queue.claim_batch(worker_id, n)
        for job in jobs:
            try:
                outcome = self.delivery(job.payload)
                if asyncio.iscoroutine(outcome):
                    outcome.close()
                    raise InputTypeError("run_once needs a synchronous delivery; use run_worker")
            except Exception as exc:
                job.retry(self._backoff(job), repr(exc))
            else:
                job.ack()
        return len(jobs)


def _check_poll(idle_poll_s: object) -> None:
    if idle_poll_s is None:
        return
    if (
        isinstance(idle_poll_s, bool)
        or not isinstance(idle_poll_s, int | float)
        or not idle_poll_s > 0
    ):
        raise InvalidInputError(
            f"idle_poll_s must be a positive number of seconds or None, got {shown(idle_poll_s)}"
        )
