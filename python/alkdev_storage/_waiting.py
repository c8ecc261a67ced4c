"""Waiting for "something committed on this file", sync or async.

Both forms subscribe to the process's one watcher thread (rust/watch.rs);
neither starts a thread. Subscribe *before* reading state, then wait: a
commit that lands between the read and the wait still wakes the waiter.
"""

from __future__ import annotations

import os

from alkdev_storage._closing import Closing
from alkdev_storage._native import watch
from alkdev_storage._wake import AsyncWatch


class SyncChange(Closing):
    """Blocking waits on one database file (the GIL is released)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._watch = watch(path)

    def wait(self, timeout: float | None) -> bool:
        """True when a commit happened since the last wait; False on timeout."""
        return self._watch.wait(timeout)

    def close(self) -> None:
        self._watch.close()


class AsyncChange(Closing):
    """Awaitable waits on one database file, woken through the event loop."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._watch = AsyncWatch(path)

    async def wait(self, timeout: float | None) -> bool:
        """True when a commit happened since the last wait; False on timeout."""
        return await self._watch.wait(timeout)

    def close(self) -> None:
        self._watch.close()
