"""Ephemeral notifications, named locks and rate limits.

>>> import alkdev_storage as alk, tempfile, os
>>> db = alk.connect(os.path.join(tempfile.mkdtemp(), "app.db"))
>>> listener = db.listen("reload")
>>> db.notify("reload", {"config": "v2"})
1
>>> [(n.channel, n.payload) for n in listener.poll()]
[('reload', {'config': 'v2'})]
>>> with db.lock("nightly-report", ttl=60):
...     pass
>>> db.try_rate_limit("api:ada", limit=2, per=60), db.try_rate_limit("api:ada", limit=2, per=60)
(True, True)
>>> db.try_rate_limit("api:ada", limit=2, per=60)
False
>>> db.close()
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from alkdev_storage import _checks as check
from alkdev_storage._closing import Closing
from alkdev_storage._waiting import AsyncChange, SyncChange
from alkdev_storage.errors import Error, InvalidInputError

if TYPE_CHECKING:
    from alkdev_storage._database import Database


class LockHeld(Error):
    """Raised by ``with db.lock(name)`` (and ``Scheduler.run``) when another
    owner holds the lock. Retry later, or use ``Lock.acquire()`` which
    returns False instead of raising."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One ``notify()`` row; `payload` is the decoded JSON."""

    id: int
    channel: str
    payload: Any
    created_at: int


class Listener(Closing):
    """Notifications on one channel sent after the listener was created.

    History is not replayed (honker's rule); rows stay until
    ``db.prune_notifications`` removes them. Iterate with ``async for`` or
    ``for``, or call `poll()` / `next()`.
    """

    def __init__(self, db: Database, channel: str, fallback_poll_s: float | None = 15.0) -> None:
        self._db = db
        self.channel = check.text("channel", channel)
        if fallback_poll_s is not None and fallback_poll_s <= 0:
            raise InvalidInputError("fallback_poll_s must be positive (or None)")
        self._fallback = fallback_poll_s
        # Subscribe before taking the snapshot, so nothing falls in between.
        self._sync = SyncChange(db.path)
        self._last_id = db._notifications_head(self.channel)
        self._buffer: list[Notification] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<Listener {check.shown(self.channel)} after id {self._last_id}>"

    def _fill(self) -> bool:
        if not self._buffer:
            rows = self._db._notifications_since(self.channel, self._last_id, 512)
            self._buffer = [Notification(i, c, check.loads(p), t) for i, c, p, t in rows]
            self._buffer.reverse()
        return bool(self._buffer)

    def _pop(self) -> Notification:
        note = self._buffer.pop()
        self._last_id = note.id
        return note

    def poll(self) -> list[Notification]:
        """Everything that arrived since the last call, without waiting."""
        out = []
        while self._fill():
            out.append(self._pop())
        return out

    def _step(self, left: float | None) -> float | None:
        cap = self._fallback
        if left is None:
            return cap
        return left if cap is None else min(left, cap)

    def next(self, timeout: float | None = None) -> Notification | None:
        """The next notification, waiting up to `timeout` s (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._fill():
            if self._closed:
                raise InvalidInputError("listener is closed")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._sync.wait(self._step(left))
        return self._pop()

    async def anext(self, timeout: float | None = None) -> Notification | None:
        """Async form of `next`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with AsyncChange(self._db.path) as change:
            while not self._fill():
                if self._closed:
                    raise InvalidInputError("listener is closed")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                await change.wait(self._step(left))
        return self._pop()

    def __iter__(self) -> Iterator[Notification]:
        while not self._closed:
            note = self.next(timeout=1.0)
            if note is not None:
                yield note

    def __aiter__(self) -> AsyncIterator[Notification]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[Notification]:
        while not self._closed:
            note = await self.anext(timeout=self._fallback)
            if note is not None:
                yield note

    def close(self) -> None:
        self._closed = True
        self._sync.close()


class Lock:
    """A named lock with a TTL in ``_honker_locks``, shared by every process
    (and every honker binding) using the file.

    As a context manager it acquires or raises `LockHeld`, and releases on
    exit. Re-acquiring does not extend the TTL; call `renew()` for that.
    """

    def __init__(self, db: Database, name: str, ttl: int = 60, owner: str | None = None) -> None:
        self._db = db
        self.name = check.text("lock name", name)
        self.ttl = check.seconds("ttl", ttl)
        self.owner = uuid.uuid4().hex if owner is None else check.text("owner", owner)
        self.held = False

    def __repr__(self) -> str:
        return f"<Lock {check.shown(self.name)} owner={check.shown(self.owner)} held={self.held}>"

    def acquire(self, tx: object = None) -> bool:
        """Take the lock if free or expired; True if this owner holds it."""
        self.held = self._db._lock_acquire(self.name, self.owner, self.ttl, tx=check.native_tx(tx))
        return self.held

    def release(self, tx: object = None) -> bool:
        """Give the lock up; False if this owner did not hold it."""
        released = self._db._lock_release(self.name, self.owner, tx=check.native_tx(tx))
        self.held = False
        return released

    def renew(self, ttl: int | None = None) -> bool:
        """Extend to now + `ttl` (default: the lock's TTL); False if lost."""
        seconds = self.ttl if ttl is None else check.seconds("ttl", ttl)
        kept = self._db._lock_renew(self.name, self.owner, seconds)
        self.held = kept
        return kept

    def __enter__(self) -> Lock:
        if not self.acquire():
            holder = self._db._lock_owner(self.name)
            who = f" by {check.shown(holder[0])} until {holder[1]}" if holder else ""
            raise LockHeld(f"lock {check.shown(self.name)} is held{who}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.held:
            self.release()
