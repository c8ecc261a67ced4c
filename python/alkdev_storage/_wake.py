"""Wakes for asyncio: "something committed to this file, re-read state".

Sync code uses the native :class:`~alkdev_storage._native.Watch` (here also
named :data:`SyncWatch`): ``watch(path).wait(timeout)`` blocks with the GIL
released. Async code uses :class:`AsyncWatch`, which needs no thread: each
running event loop gets one native :class:`~alkdev_storage._native.WakeHub`,
a pipe the process's watcher thread writes to, registered with
``loop.add_reader``. When it turns readable the hub is drained and the
events of the woken watches are set. The reader is removed, and the hub
closed, when the loop's last ``AsyncWatch`` closes.

>>> import asyncio, os, tempfile
>>> import alkdev_storage as alk
>>> db = alk.connect(os.path.join(tempfile.mkdtemp(), "app.db"))
>>> _ = db.execute("CREATE TABLE t(x)")
>>> async def main() -> tuple[bool, bool]:
...     with AsyncWatch(db.path) as w:
...         quiet = await w.wait(timeout=0.05)
...         db.execute("INSERT INTO t VALUES (1)")
...         return quiet, await w.wait(timeout=5)
>>> asyncio.run(main())
(False, True)
>>> db.close()

Within one process, write watched files through ``alkdev_storage`` only,
never through another SQLite library such as the stdlib ``sqlite3`` module:
POSIX locks belong to the process, so two SQLite libraries using one file
in one process release each other's locks (SQLite's "How To Corrupt",
section 2.2). Other processes may use any library.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pathlib
import weakref
from types import TracebackType

from alkdev_storage._checks import shown
from alkdev_storage._closing import Closing
from alkdev_storage._native import WakeHub, Watch, watch
from alkdev_storage.errors import Error, ProgrammingError

__all__ = ["AsyncWatch", "SyncWatch"]

#: Blocking waits for sync code: ``watch(path)`` returns one.
SyncWatch = Watch


class _LoopHub:
    """One event loop's WakeHub, and the asyncio events of its watches."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: the per-loop table below must not keep a finished loop alive.
        self._loop = weakref.ref(loop)
        self.hub = WakeHub()
        self._events: dict[int, asyncio.Event] = {}
        self._tokens = itertools.count(1)
        self._fd = self.hub.fileno()
        loop.add_reader(self._fd, self._on_ready)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop()

    def register(self) -> tuple[int, asyncio.Event]:
        token = next(self._tokens)
        event = asyncio.Event()
        self._events[token] = event
        return token, event

    def unregister(self, token: int) -> None:
        """Forget a closed watch (called in the loop's thread)."""
        event = self._events.pop(token, None)
        if event is not None:
            # A task still awaiting this watch wakes up and finds it closed.
            event.set()
        self._shut_if_idle()

    def release(self, token: int) -> None:
        """Forget a watch that was garbage-collected unclosed. This may run
        in any thread, so the loop is only touched from its own thread."""
        self._events.pop(token, None)
        if self._events:
            return
        loop = self.loop
        if loop is None or loop.is_closed():
            self.hub.close()
            return
        try:
            loop.call_soon_threadsafe(self._shut_if_idle)
        except RuntimeError:
            # The loop closed meanwhile: nobody will read the hub again.
            self.hub.close()

    def _shut_if_idle(self) -> None:
        """With no watch left, remove the reader and close the hub."""
        if self._events or self.hub.closed:
            return
        loop = self.loop
        if loop is not None:
            if _HUBS.get(loop) is self:
                del _HUBS[loop]
            if not loop.is_closed():
                loop.remove_reader(self._fd)
        self.hub.close()

    def _on_ready(self) -> None:
        try:
            tokens = self.hub.drain()
        except Error:
            # Closed between readiness and this callback: nothing to deliver.
            return
        for token in tokens:
            event = self._events.get(token)
            if event is not None:
                event.set()


_HUBS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopHub] = weakref.WeakKeyDictionary()


def _hub_for(loop: asyncio.AbstractEventLoop) -> _LoopHub:
    hub = _HUBS.get(loop)
    if hub is None or hub.hub.closed:
        hub = _HUBS[loop] = _LoopHub(loop)
    return hub


class AsyncWatch(Closing):
    """Wakes for one database file, awaited in the running event loop.

    Create it inside a coroutine (it binds to the running loop). Each commit
    to the file by any connection of any process, made after the constructor
    returns, wakes ``wait()``; a commit made while nobody was waiting is
    reported by the next ``wait()`` or ``changed()``. Several commits may be
    reported as one wake. Use it as a context manager, or ``close()`` it.

    Raises ``CantOpenError`` if the file does not exist and
    ``ProgrammingError`` outside a running event loop; ``wait()`` and
    ``changed()`` raise ``OperationalError`` if the watcher thread died
    (create a new watch to start a new thread).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ProgrammingError(
                "AsyncWatch must be created in a coroutine (it binds to the running event "
                "loop); sync code uses alkdev_storage._native.watch()"
            ) from None
        self._loop_hub = _hub_for(loop)
        self._token, self._event = self._loop_hub.register()
        try:
            self._watch = watch(path, hub=self._loop_hub.hub, token=self._token)
        except BaseException:
            self._loop_hub.unregister(self._token)
            raise
        # Dropped without close(): the native watch unwatches itself; this
        # gives the token back so the loop's reader does not outlive it.
        self._finalizer = weakref.finalize(self, self._loop_hub.release, self._token)

    @property
    def path(self) -> pathlib.Path:
        """Canonical path of the watched file."""
        return self._watch.path

    @property
    def closed(self) -> bool:
        return self._watch.closed

    def changed(self) -> bool:
        """True (and consumed) if a commit happened since the last reported
        one. Never waits."""
        return self._watch.changed()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for a commit not reported yet: True on a wake, False after
        ``timeout`` seconds (``None``: no limit)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop_hub.loop:
            raise ProgrammingError("this AsyncWatch belongs to another event loop")
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            # Clear first, then look: a wake landing after the look sets the
            # event again, so it cannot be lost in between.
            self._event.clear()
            if self._watch.changed():
                return True
            if deadline is None:
                await self._event.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                async with asyncio.timeout(remaining):
                    await self._event.wait()
            except TimeoutError:
                return self._watch.changed()

    def close(self) -> None:
        """Stop watching. Idempotent. A task awaiting ``wait()`` gets
        ``ProgrammingError``."""
        if self._watch.closed:
            return
        self._watch.close()
        self._finalizer.detach()
        self._loop_hub.unregister(self._token)

    async def __aenter__(self) -> AsyncWatch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<AsyncWatch {shown(str(self.path))} {state}>"
