"""Periodic jobs: honker's `_honker_scheduler_tasks`.

>>> import alkdev_storage as alk, tempfile, os
>>> db = alk.connect(os.path.join(tempfile.mkdtemp(), "app.db"))
>>> sched = alk.Scheduler(db)
>>> sched.add(name="cleanup", queue="maintenance", schedule="0 3 * * *")
>>> [t["name"] for t in sched.list()]
['cleanup']
>>> db.close()

Schedules use honker's grammar: 5 fields (minute hour day month weekday)
or 6 (with leading seconds), each ``*``, ``a-b``, ``a,b`` or ``/step``; or
``@every <n><s|m|h|d>``. Times are in the machine's local time zone; when
both day fields are restricted, both must match. One process at a time
runs the ticks, holding the lock ``honker-scheduler``; after downtime a
schedule fires at most 64 missed times and skips the rest.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from alkdev_storage import _checks as check
from alkdev_storage._native import cron_next_after
from alkdev_storage._waiting import AsyncChange
from alkdev_storage.pubsub import Lock, LockHeld

if TYPE_CHECKING:
    from alkdev_storage._database import Database

LEADER_LOCK = "honker-scheduler"
LEADER_TTL_S = 60
RENEW_EVERY_S = 30.0

_UNSET: Any = object()


class LeadershipLost(LockHeld):
    """Raised by ``Scheduler.run`` when another process took the leader
    lock (ours expired). Restart the scheduler to compete again."""


class NoSchedulesError(RuntimeError):
    """Raised by ``Scheduler.run`` when there is nothing to schedule. Add a
    schedule first."""


class CronSchedule:
    """A validated schedule expression."""

    def __init__(self, expr: str) -> None:
        self.expr = check.text("schedule", expr)
        cron_next_after(self.expr, int(time.time()))

    def next_after(self, when: datetime) -> datetime:
        """The next fire time strictly after `when` (aware, in `when`'s zone
        or local time if naive)."""
        ts = cron_next_after(self.expr, int(when.timestamp()))
        tz = when.tzinfo
        return datetime.fromtimestamp(ts, tz) if tz else datetime.fromtimestamp(ts)

    def __repr__(self) -> str:
        return f"CronSchedule({check.shown(self.expr)})"


def crontab(expr: str) -> CronSchedule:
    """A cron schedule (``"*/5 * * * *"``)."""
    return CronSchedule(expr)


def every_s(n: int) -> CronSchedule:
    """Every `n` seconds."""
    return CronSchedule(f"@every {check.whole('n', n, minimum=1)}s")


def _expr(schedule: object) -> str:
    if isinstance(schedule, CronSchedule):
        return schedule.expr
    return CronSchedule(check.text("schedule", schedule)).expr


class Scheduler:
    """Register periodic jobs and run the ticks that enqueue them."""

    def __init__(self, db: Database, lock_name: str | None = None) -> None:
        self._db = db
        self.lock_name = LEADER_LOCK if lock_name is None else check.text("lock_name", lock_name)

    def add(
        self,
        *,
        name: str,
        queue: str,
        schedule: str | CronSchedule,
        payload: Any = None,
        priority: int = 0,
        expires: int | None = None,
        max_attempts: int = 3,
        tx: object = None,
    ) -> None:
        """Register (or replace) the schedule `name`; its first fire is the
        next boundary after now."""
        self._db._scheduler_register(
            check.text("name", name),
            check.text("queue", queue),
            _expr(schedule),
            check.dumps(payload),
            check.whole("priority", priority),
            None if expires is None else check.seconds("expires", expires),
            check.whole("max_attempts", max_attempts, minimum=1),
            tx=check.native_tx(tx),
        )

    def remove(self, name: str) -> bool:
        return self._db._scheduler_unregister(check.text("name", name))

    def pause(self, name: str) -> bool:
        """Stop firing `name` (True if it was running)."""
        return self._db._scheduler_set_enabled(check.text("name", name), False)

    def resume(self, name: str) -> bool:
        """Fire `name` again (True if it was paused)."""
        return self._db._scheduler_set_enabled(check.text("name", name), True)

    def update(
        self,
        name: str,
        *,
        schedule: str | CronSchedule | None = None,
        payload: Any = _UNSET,
        priority: int | None = None,
        expires: int | None = _UNSET,
        max_attempts: int | None = _UNSET,
    ) -> bool:
        """Change some fields of `name`; False if there is no such schedule.
        ``expires=None`` clears the expiry; ``max_attempts=None`` resets it
        to 3. A new schedule recomputes the next fire from now."""
        return self._db._scheduler_update(
            check.text("name", name),
            None if schedule is None else _expr(schedule),
            None if payload is _UNSET else check.dumps(payload),
            None if priority is None else check.whole("priority", priority),
            None if expires in (_UNSET, None) else check.seconds("expires", expires),
            expires is not _UNSET,
            None
            if max_attempts in (_UNSET, None)
            else check.whole("max_attempts", max_attempts, minimum=1),
            max_attempts is not _UNSET,
        )

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every schedule, by name, with its state."""
        keys = (
            "name",
            "queue",
            "cron_expr",
            "payload",
            "priority",
            "expires_s",
            "next_fire_at",
            "enabled",
            "max_attempts",
        )
        out = []
        for row in self._db._scheduler_list():
            item: dict[str, Any] = dict(zip(keys, row, strict=True))
            item["payload"] = check.loads(row[3])
            out.append(item)
        return out

    def tick(self, now: int | None = None) -> builtins.list[dict[str, Any]]:
        """Enqueue every fire due at `now` (default: now); the fires made.

        Call it while holding the leader lock (``run`` does); two tickers at
        once would both enqueue.
        """
        at = int(time.time()) if now is None else check.whole("now", now)
        fires = self._db._scheduler_tick(at)
        return [{"name": n, "queue": q, "fire_at": f, "job_id": j} for n, q, f, j in fires]

    def soonest(self) -> int | None:
        """The earliest next fire time of an enabled schedule, or None."""
        return self._db._scheduler_soonest() or None

    def _lead(self) -> Lock:
        lock = Lock(self._db, self.lock_name, ttl=LEADER_TTL_S)
        if not lock.acquire():
            raise LockHeld(f"another scheduler holds {check.shown(self.lock_name)}")
        return lock

    def _step(self, lock: Lock) -> float:
        """Renew leadership, tick, and return how long to sleep."""
        if not lock.renew():
            raise LeadershipLost(f"lost the scheduler lock {check.shown(self.lock_name)}")
        self.tick()
        soonest = self.soonest()
        if soonest is None and not self.list():
            raise NoSchedulesError("no schedules registered")
        wait = RENEW_EVERY_S if soonest is None else soonest - time.time()
        return max(0.0, min(wait, RENEW_EVERY_S))

    async def run(self, stop_event: asyncio.Event | None = None) -> None:
        """Lead and tick until `stop_event` is set. Raises `LockHeld` if
        another scheduler leads, `LeadershipLost` if the lock is taken over,
        `NoSchedulesError` if nothing is registered."""
        if not self._db._scheduler_list():
            raise NoSchedulesError("no schedules registered")
        lock = self._lead()
        try:
            with AsyncChange(self._db.path) as change:
                while stop_event is None or not stop_event.is_set():
                    nap = asyncio.ensure_future(change.wait(self._step(lock)))
                    if stop_event is None:
                        await nap
                        continue
                    stopper = asyncio.ensure_future(stop_event.wait())
                    await asyncio.wait({nap, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    for pending in (nap, stopper):
                        pending.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await pending
        finally:
            lock.release()

    def run_sync(self, stop_event: threading.Event) -> None:
        """Blocking form of `run`, for a thread of its own."""
        if not self._db._scheduler_list():
            raise NoSchedulesError("no schedules registered")
        lock = self._lead()
        try:
            while not stop_event.is_set():
                stop_event.wait(self._step(lock))
        finally:
            lock.release()
