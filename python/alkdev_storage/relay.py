"""The NATS JetStream relay: every stream event of a storage root's files,
published to JetStream (``alkdev-storage relay``). docs/cluster.md.

One relay serves one storage root: ``system.db`` and every tenant file,
tenant files created while it runs included (it looks again whenever
``system.db`` commits, and every `rescan_s`). For each file it reads the
events past its saved position in offset order, publishes them (subject,
envelope and ``Nats-Msg-Id`` as `alkdev_storage.nats` describes), waits for
JetStream to acknowledge every one, and only then saves the new position
in the file as the durable honker consumer `consumer` (topic ``*``). So a
crash at any point repeats at most the events published since the last
save, each with the message id it had, and JetStream drops those repeats
inside its duplicate window; a subscriber drops any that arrive later.

Events of one file are published in offset order on one connection, a
batch at a time (the next batch only once the last is acknowledged), so
JetStream stores them in that order. A message JetStream refuses (larger
than the server's ``max_payload``, a stream limit) stops that file's relay
at that offset and is retried with a growing pause; the other files go on.

Needs the ``cluster`` extra (``pip install 'alkdev-storage[cluster]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alkdev_storage import _checks as check
from alkdev_storage._database import Database, connect
from alkdev_storage._waiting import AsyncChange
from alkdev_storage.errors import ClusterError, InvalidInputError, NotFoundError
from alkdev_storage.nats import (
    DEFAULT_PREFIX,
    DEFAULT_STREAM,
    SYSTEM_SOURCE,
    check_prefix,
    check_stream,
    load_nats,
    message_id,
    servers_list,
    subject,
)
from alkdev_storage.nats import connect as nats_connect

log = logging.getLogger(__name__)

#: The honker consumer whose offset (topic ``*``) is each file's position.
DEFAULT_CONSUMER = "_alk:relay"
#: The pseudo-topic the position is saved under: every topic.
ALL_TOPICS = "*"

_TENANT_FILE = re.compile(r"tenant-([A-Za-z0-9_][A-Za-z0-9_-]{0,127})\.db")
# Offset order, honker's envelope built by SQLite (payload stays JSON text).
_READ = (
    "SELECT offset, topic, json_object('offset', offset, 'topic', topic, 'key', key, "
    "'payload', payload, 'created_at', created_at) FROM _honker_stream "
    "WHERE offset > ? ORDER BY offset LIMIT ?"
)
_FIRST_PAUSE_S, _LAST_PAUSE_S = 0.2, 5.0


@dataclass
class RelayStats:
    """What a relay has done since it started: events published and
    acknowledged, of those the ones JetStream reported as repeats, and the
    files it follows (with each file's saved position)."""

    relayed: int = 0
    duplicates: int = 0
    failures: int = 0
    positions: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False)
class _File:
    source: str
    path: Path
    db: Database
    position: int
    change: AsyncChange
    task: asyncio.Task[None] | None = None


class Relay:
    """Relays the stream events of the storage root `root` to the JetStream
    at `servers` (``nats://host:port``, one or several of one cluster).

    `batch` events are in flight at most per file; `duplicate_window_s` is
    the window of the stream it creates when `stream` does not exist yet
    (an existing stream keeps its own; it must take ``<prefix>.>``).
    `poll_s` bounds the wait for a file's next commit when no wake comes;
    `ack_timeout_s` bounds the wait for JetStream's acknowledgements.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        servers: str | Sequence[str],
        *,
        stream: str = DEFAULT_STREAM,
        prefix: str = DEFAULT_PREFIX,
        consumer: str = DEFAULT_CONSUMER,
        batch: int = 1000,
        duplicate_window_s: float = 120.0,
        rescan_s: float = 1.0,
        poll_s: float = 1.0,
        ack_timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.root = Path(root)
        if not (self.root / "system.db").is_file():
            raise NotFoundError(f"{self.root} is not a storage root (no system.db)")
        self.servers = servers_list(servers)
        self.stream = check_stream(stream)
        self.prefix = check_prefix(prefix)
        self.consumer = check.text("consumer", consumer)
        self.batch = check.whole("batch", batch, minimum=1)
        for name, value in (
            ("duplicate_window_s", duplicate_window_s),
            ("rescan_s", rescan_s),
            ("poll_s", poll_s),
            ("ack_timeout_s", ack_timeout_s),
            ("connect_timeout_s", connect_timeout_s),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
        self.duplicate_window_s = float(duplicate_window_s)
        self.rescan_s, self.poll_s = float(rescan_s), float(poll_s)
        self.ack_timeout_s, self.connect_timeout_s = float(ack_timeout_s), float(connect_timeout_s)
        self.stats = RelayStats()
        self._files: dict[str, _File] = {}
        self._nc: Any = None
        self._js: Any = None

    # -- files ------------------------------------------------------------

    def _scan(self) -> dict[str, Path]:
        """The root's files now: ``system.db`` and each live tenant file."""
        found = {SYSTEM_SOURCE: self.root / "system.db"}
        with contextlib.suppress(FileNotFoundError), os.scandir(self.root / "tenants") as entries:
            for entry in entries:
                match = _TENANT_FILE.fullmatch(entry.name)
                if match is None or not entry.is_file():
                    continue
                if match[1] == SYSTEM_SOURCE:
                    log.error("%s is not relayed: 'system' names system.db's events", entry.path)
                    continue
                found[match[1]] = Path(entry.path)
        return found

    def _open(self, source: str, path: Path) -> _File | None:
        # Looked for first: connect would create a file that was archived.
        if not path.is_file():
            return None
        change = AsyncChange(path)  # before reading, so no commit is missed
        try:
            db = connect(path, max_readers=1)
        except BaseException:
            change.close()
            raise
        position = db.stream(ALL_TOPICS).get_offset(self.consumer)
        return _File(source, path, db, position, change)

    def _close_file(self, f: _File) -> None:
        if f.task is not None:
            f.task.cancel()
        f.change.close()
        f.db.close()

    def _refresh(self, *, follow: bool) -> None:
        """Open files that appeared, close those that went (archived)."""
        present = self._scan()
        for source in [s for s in self._files if s not in present]:
            self._close_file(self._files.pop(source))
        for source, path in present.items():
            if source in self._files:
                continue
            opened = self._open(source, path)
            if opened is None:
                continue
            self._files[source] = opened
            self.stats.positions[source] = opened.position
            log.info("relaying %s from offset %d", path, opened.position)
            if follow:
                opened.task = asyncio.get_running_loop().create_task(
                    self._follow(opened), name=f"relay {source}"
                )

    # -- JetStream --------------------------------------------------------

    async def connect(self) -> None:
        """Connect, and create the stream if it does not exist (`run` and
        `run_once` do this when needed)."""
        nats = load_nats()
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError as StreamNotFound

        try:
            self._nc = await nats_connect(nats, self.servers, self.connect_timeout_s)
            self._js = self._nc.jetstream(publish_async_max_pending=max(4 * self.batch, 4000))
            wanted = f"{self.prefix}.>"
            try:
                info = await self._js.stream_info(self.stream)
            except StreamNotFound:
                await self._js.add_stream(
                    StreamConfig(
                        name=self.stream,
                        subjects=[wanted],
                        duplicate_window=self.duplicate_window_s,
                        storage=StorageType.FILE,
                    )
                )
            else:
                if wanted not in (info.config.subjects or []):
                    raise ClusterError(
                        f"JetStream stream {self.stream} exists without the subjects {wanted} "
                        f"(it takes {info.config.subjects})"
                    )
        except Exception as exc:
            await self._disconnect()
            if isinstance(exc, ClusterError):
                raise
            if isinstance(exc, OSError | TimeoutError | nats.errors.NoServersError):
                raise ClusterError(f"cannot reach JetStream at {self.servers}: {exc}") from exc
            raise ClusterError(
                f"JetStream at {self.servers} refused stream {self.stream}: {exc}"
            ) from exc

    async def _disconnect(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _publish(self, f: _File) -> int:
        """Publish the next batch of `f`'s events, wait for every
        acknowledgement, then save the position. The events published."""
        rows = f.db.query(_READ, (f.position, self.batch))
        if not rows:
            return 0
        futures: list[asyncio.Future[Any]] = []
        try:
            for offset, topic, envelope in rows:
                futures.append(
                    await self._js.publish_async(
                        subject(f.source, topic, prefix=self.prefix),
                        envelope.encode(),
                        stream=self.stream,
                        headers={"Nats-Msg-Id": message_id(f.source, offset)},
                    )
                )
            acks = await asyncio.wait_for(asyncio.gather(*futures), self.ack_timeout_s)
        except BaseException:
            for future in futures:
                future.cancel()  # frees its slot in nats-py's pending count
            raise
        last = rows[-1][0]
        # Saved only now: every event up to `last` is stored in JetStream.
        f.db.stream(ALL_TOPICS).save_offset(self.consumer, last)
        f.position = last
        self.stats.positions[f.source] = last
        self.stats.relayed += len(rows)
        self.stats.duplicates += sum(1 for ack in acks if ack.duplicate)
        return len(rows)

    async def _drain(self, f: _File) -> int:
        """Publish `f`'s events until none is left; retries (with a growing
        pause) after a failure. The events published."""
        done, pause = 0, _FIRST_PAUSE_S
        while True:
            try:
                n = await self._publish(f)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:
                self.stats.failures += 1
                log.warning(
                    "relay of %s stopped at offset %d (retrying in %.1f s): %s",
                    f.path,
                    f.position,
                    pause,
                    exc,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, _LAST_PAUSE_S)
                continue
            if n == 0:
                return done
            done, pause = done + n, _FIRST_PAUSE_S

    async def _follow(self, f: _File) -> None:
        while True:
            if await self._drain(f) == 0:
                await f.change.wait(self.poll_s)

    # -- running ----------------------------------------------------------

    async def run_once(self) -> int:
        """Relay every event that is in the root's files now, then return
        how many were published (connecting first if needed)."""
        if self._nc is None:
            await self.connect()
        self._refresh(follow=False)
        total = 0
        for f in list(self._files.values()):
            total += await self._drain(f)
        return total

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Relay until `stop` is set (or the task is cancelled), following
        every file's commits and picking up new tenant files."""
        if self._nc is None:
            await self.connect()
        stop = stop if stop is not None else asyncio.Event()
        system = AsyncChange(self.root / "system.db")
        try:
            while not stop.is_set():
                self._refresh(follow=True)
                waiter = asyncio.ensure_future(system.wait(self.rescan_s))
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
        finally:
            system.close()
            await self.aclose()

    async def aclose(self) -> None:
        """Stop following, close every file and the connection."""
        files, self._files = list(self._files.values()), {}
        tasks = [f.task for f in files if f.task is not None]
        for f in files:
            self._close_file(f)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._disconnect()


def run_relay(root: str | os.PathLike[str], servers: str | Sequence[str], **options: Any) -> None:
    """Run a `Relay` in this thread until SIGINT or SIGTERM."""
    relay = Relay(root, servers, **options)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await relay.connect()
        print(
            f"relaying {relay.root} to {', '.join(relay.servers)} (stream {relay.stream}); "
            "Ctrl-C stops",
            flush=True,
        )
        await relay.run(stop)

    asyncio.run(main())
