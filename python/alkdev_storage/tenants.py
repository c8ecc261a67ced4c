"""The tenant registry: one SQLite file per organization, opened lazily and
kept open within a bound.

>>> import tempfile
>>> from alkdev_storage.migrations import Migration, Schema
>>> from alkdev_storage.tenants import TenantRegistry
>>> notes = Schema("notes", 0x4E4F5445, (
...     Migration(1, "notes table", "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)"),
... ))
>>> tenants = TenantRegistry(tempfile.mkdtemp(), notes, max_open=2)
>>> tenants.create("acme")
>>> with tenants.lease("acme") as db:
...     _ = db.execute("INSERT INTO notes(body) VALUES ('hello')")
>>> tenants.get("acme").query("SELECT body FROM notes")
[('hello',)]
>>> tenants.ids(), tenants.open_count
(['acme'], 1)
>>> tenants.archive("acme").parent.name
'archive'
>>> tenants.exists("acme"), tenants.purge("acme")
(False, 1)
>>> tenants.close()

Files live at ``<directory>/tenant-{org_id}.db``; archived ones at
``<directory>/archive/tenant-{org_id}.<UTC timestamp>.db``. An org id is
checked (`TenantRegistry.validate`) before anything touches the disk, so a
hostile id is an error, never a path.

Handles are opened on first use, migrated to the schema's newest version
on open, and cached: at most `max_open` at a time (the least recently used
unleased handle is closed to make room) and none idle for longer than
`idle_close_s` (checked whenever a handle is asked for; there is no
background thread). Hold a handle across other registry calls with
`TenantRegistry.lease`, which pins it until the lease is closed or dropped;
a handle from `TenantRegistry.get` is for short use, since the registry may
close it to make room for another (using it afterwards raises
`DatabaseClosedError`).

When every open handle is leased, asking for another tenant file first
runs the cyclic garbage collector once (leases held only by unreachable
objects end), then waits up to `lease_timeout_s` (30 s by default) for a
lease to end, then raises `TenantHandlesBusyError`: `max_open` is a hard
bound on open files. A lease dropped without `close()` ends when CPython
frees it, which for an object outside a reference cycle is at once. Its
finalizer never waits for the registry's lock (it may run inside the
registry's own code on the thread that holds it): it queues the lease, and
the next holder of the lock, or a waiter within 50 ms, ends it.

One process should manage a storage root's tenant files (create, archive,
purge); other processes may read and write the files themselves.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from alkdev_storage import migrations
from alkdev_storage._checks import shown
from alkdev_storage._closing import Closing
from alkdev_storage._database import Database, connect
from alkdev_storage._progress import ProgressBar
from alkdev_storage.errors import (
    AlreadyExistsError,
    DatabaseClosedError,
    InvalidInputError,
    InvalidTenantIdError,
    ReadOnlyError,
    StorageError,
    TenantHandlesBusyError,
    TenantNotFoundError,
)

__all__ = ["MAX_ID_LENGTH", "Lease", "MigrateAllResult", "TenantRegistry"]

MAX_ID_LENGTH = 128
_ID_CHARS = re.compile(r"[A-Za-z0-9_-]+")
# A live tenant file. Ids never contain ".", so the name splits unambiguously.
_LIVE_NAME = re.compile(r"tenant-([A-Za-z0-9_-]{1,128})\.db")
# The files SQLite keeps beside a database, which travel and die with it.
_SIDECARS = ("-wal", "-shm", "-journal")
# How long a waiter sleeps before looking again for leases given back by
# finalizers that could not take the lock (see `TenantRegistry._give_back`).
_WAIT_SLICE_S = 0.05


def _now() -> float:
    """The clock idle times are measured on (tests replace it)."""
    return time.monotonic()


def _utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _with_suffix(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


@dataclass(slots=True)
class _Handle:
    db: Database
    last_used: float
    leases: int = 0


class _Lock(threading.Condition):
    """The registry's condition. Whoever takes it (entering ``with``, or
    waking from `wait`) first ends the leases queued by finalizers."""

    def __init__(self, drain: Callable[[], None]) -> None:
        super().__init__(threading.Lock())
        # Weak, so that the registry and its lock form no reference cycle.
        self._drain = weakref.WeakMethod(drain)

    def _drain_queued(self) -> None:
        drain = self._drain()
        if drain is not None:
            drain()

    def __enter__(self) -> bool:
        entered = super().__enter__()
        self._drain_queued()
        return entered

    def wait(self, timeout: float | None = None) -> bool:
        woken = super().wait(timeout)
        self._drain_queued()
        return woken


class Lease:
    """A tenant file's handle pinned open: `TenantRegistry.lease` returns
    one. ``with registry.lease(org_id) as db:`` ends it when the block ends;
    `close()` ends it explicitly; an unreferenced lease ends when it is
    freed. Thread-safe; `close()` is idempotent."""

    __slots__ = ("__weakref__", "_finalizer", "db", "org_id")

    def __init__(self, registry: TenantRegistry, org_id: str, db: Database) -> None:
        self.org_id = org_id
        self.db = db
        # The callback holds the registry and the handle, never the lease,
        # so the lease can be freed; it must not block (see _give_back).
        self._finalizer = weakref.finalize(self, registry._give_back, org_id, db)

    @property
    def active(self) -> bool:
        """True until the lease ends."""
        return self._finalizer.alive

    def close(self) -> None:
        """End the lease: the registry may close the handle from now on.
        Never waits for the registry's lock, so it is safe anywhere, a
        ``__del__`` included (the same path as a dropped lease)."""
        self._finalizer()

    def __enter__(self) -> Database:
        return self.db

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "active" if self.active else "ended"
        return f"<Lease {self.org_id} {state}>"


@dataclass(frozen=True, slots=True)
class MigrateAllResult:
    """What `TenantRegistry.migrate_all` did: `total` tenant files seen,
    `upgraded` to a newer version, `current` already at the newest, and
    `failed` (org id -> the error; that file is unchanged)."""

    total: int
    upgraded: int
    current: int
    failed: Mapping[str, Exception] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every tenant file is now at the newest version."""
        return not self.failed


class TenantRegistry(Closing):
    """The tenant files under `directory`, each migrated to `schema`.

    `max_open` bounds the open handles (LRU, leased handles excepted);
    `idle_close_s` closes handles unused for that long (None: never);
    `lease_timeout_s` is how long a call waits for a lease to end when
    every open handle is leased;
    `connect` opens a file (``alk.connect`` unless replaced); `on_open` runs
    on every file after it is opened and migrated (the storage host seeds
    system graph types there). Thread-safe.
    See the module docstring for an example.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        schema: migrations.Schema,
        *,
        max_open: int = 64,
        idle_close_s: float | None = 300.0,
        lease_timeout_s: float = 30.0,
        connect: Callable[[Path], Database] = connect,
        on_open: Callable[[Database], None] | None = None,
        readonly: bool = False,
    ) -> None:
        if isinstance(max_open, bool) or not isinstance(max_open, int) or max_open < 1:
            raise InvalidInputError(f"max_open must be an int of at least 1, got {shown(max_open)}")
        if idle_close_s is not None and not idle_close_s >= 0:
            raise InvalidInputError(
                f"idle_close_s must be None or at least 0, got {shown(idle_close_s)}"
            )
        if not lease_timeout_s >= 0:
            raise InvalidInputError(
                f"lease_timeout_s must be at least 0, got {shown(lease_timeout_s)}"
            )
        self._directory = Path(directory)
        self._schema = schema
        self._max_open = max_open
        self._idle_close_s = idle_close_s
        self._lease_timeout_s = lease_timeout_s
        self._connect = connect
        self._on_open = on_open
        self._readonly = readonly
        # Leases ended by finalizers, not yet counted down (deque.append is
        # atomic, so a finalizer can queue one without the lock).
        self._given_back: deque[tuple[str, Database]] = deque()
        self._cond = _Lock(self._drain_locked)
        # Under _cond: the open handles, least recently used first; the org
        # ids with an open/create/archive/discard in progress (others wait
        # for them); and the slots taken by handles being opened or closed.
        # Invariant: len(_open) + _reserved <= max_open.
        self._open: OrderedDict[str, _Handle] = OrderedDict()
        self._busy: set[str] = set()
        self._reserved = 0
        self._closed = False

    # -- names ---------------------------------------------------------------

    @staticmethod
    def validate(org_id: str) -> str:
        """`org_id` if it can name a tenant file, else `InvalidTenantIdError`.

        1 to 128 ASCII letters, digits, ``-`` and ``_``, not starting with
        ``-`` (so UUIDs and slugs fit). Pure: touches nothing on disk.

        >>> TenantRegistry.validate("3f2b9c1e-acme_eu")
        '3f2b9c1e-acme_eu'
        >>> TenantRegistry.validate("../etc")
        Traceback (most recent call last):
        ...
        alkdev_storage.errors.InvalidTenantIdError: invalid org id '../etc': '.' at position 0 ...
        """
        if not isinstance(org_id, str):
            raise InvalidTenantIdError(f"org id must be a str, not {type(org_id).__name__}")
        label = repr(org_id if len(org_id) <= 40 else org_id[:40] + "...")
        if not org_id:
            raise InvalidTenantIdError("org id is empty")
        if len(org_id) > MAX_ID_LENGTH:
            raise InvalidTenantIdError(
                f"invalid org id {label}: {len(org_id)} characters, at most {MAX_ID_LENGTH}"
            )
        if _ID_CHARS.fullmatch(org_id) is None:
            at, char = next((i, c) for i, c in enumerate(org_id) if not _ID_CHARS.fullmatch(c))
            raise InvalidTenantIdError(
                f"invalid org id {label}: {shown(char)} at position {at} "
                f"(only ASCII letters, digits, '-' and '_' are allowed)"
            )
        if org_id.startswith("-"):
            raise InvalidTenantIdError(f"invalid org id {label}: it starts with '-'")
        return str(org_id)

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def archive_directory(self) -> Path:
        return self._directory / "archive"

    @property
    def schema(self) -> migrations.Schema:
        return self._schema

    @property
    def max_open(self) -> int:
        return self._max_open

    @property
    def idle_close_s(self) -> float | None:
        return self._idle_close_s

    @property
    def readonly(self) -> bool:
        """True when the files are only read (`connect` opens them read-only):
        `create`, `archive`, `discard` and `purge` raise `ReadOnlyError`."""
        return self._readonly

    def _check_writable(self, what: str) -> None:
        if self._readonly:
            raise ReadOnlyError(
                f"cannot {what}: the tenant files under {self._directory} are open read-only"
            )

    @property
    def lease_timeout_s(self) -> float:
        return self._lease_timeout_s

    @property
    def on_open(self) -> Callable[[Database], None] | None:
        """Run on every file after it is opened and migrated; settable."""
        return self._on_open

    @on_open.setter
    def on_open(self, hook: Callable[[Database], None] | None) -> None:
        self._on_open = hook

    @property
    def open_count(self) -> int:
        """Handles open now, counting those being opened or closed; never
        above `max_open`."""
        with self._cond:
            return len(self._open) + self._reserved

    def path_for(self, org_id: str) -> Path:
        """Where `org_id`'s tenant file lives (whether or not it exists)."""
        return self._directory / f"tenant-{self.validate(org_id)}.db"

    def exists(self, org_id: str) -> bool:
        """True when `org_id` has a live (not archived) tenant file."""
        path = self.path_for(org_id)
        self._check_open()
        return path.is_file()

    def ids(self) -> list[str]:
        """The org ids that have a live tenant file, sorted."""
        self._check_open()
        try:
            entries = list(os.scandir(self._directory))
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            match = _LIVE_NAME.fullmatch(entry.name)
            if match and not match[1].startswith("-") and entry.is_file():
                found.append(match[1])
        return sorted(found)

    # -- handles -------------------------------------------------------------

    def get(self, org_id: str) -> Database:
        """The open handle of `org_id`'s tenant file, opening (and migrating)
        it if needed; `TenantNotFoundError` if it has no file.

        For short use: a later registry call may close this handle to make
        room for another (then it raises `DatabaseClosedError`). To hold a
        handle, use `lease`.
        """
        return self._acquire(self.validate(org_id), lease=False)

    def lease(self, org_id: str) -> Lease:
        """`org_id`'s handle, pinned open (never evicted or idle-closed)
        until the lease ends: ``with registry.lease(org_id) as db:``, or
        keep the `Lease` and `close()` it (a dropped lease ends when freed).
        """
        org = self.validate(org_id)
        return Lease(self, org, self._acquire(org, lease=True))

    def _give_back(self, org: str, db: Database) -> None:
        """End a lease (its `close()`, or its finalizer). A finalizer may run
        inside any code of this registry (the cyclic collector runs wherever
        an allocation triggers it), on a thread that already holds the lock:
        so this never waits for the lock. It queues the lease; if the lock
        is free it ends it now, else the lock's next holder does
        (`_drain_locked`), or a waiter within `_WAIT_SLICE_S`."""
        self._given_back.append((org, db))
        if self._cond.acquire(blocking=False):
            try:
                self._drain_locked()
                self._cond.notify_all()
            finally:
                self._cond.release()

    def _drain_locked(self) -> None:
        while self._given_back:
            self._count_down_locked(*self._given_back.popleft())

    def _count_down_locked(self, org: str, db: Database) -> None:
        handle = self._open.get(org)
        if handle is not None and handle.db is db:
            handle.leases -= 1
            handle.last_used = _now()
            self._open.move_to_end(org)

    def close_idle(self) -> int:
        """Close the unleased handles idle for longer than `idle_close_s`;
        how many. Also runs on every `get` and `lease`."""
        with self._cond:
            self._check_open_locked()
            idle = self._take_idle_locked()
        self._close_handles(idle)
        return len(idle)

    def _acquire(self, org: str, *, lease: bool) -> Database:
        with self._cond:
            self._check_open_locked()
            idle = self._take_idle_locked(keep=org)
            handle = self._open.get(org)
            if handle is not None:
                handle.last_used = _now()
                handle.leases += lease
                self._open.move_to_end(org)
        self._close_handles(idle)
        if handle is not None:
            return handle.db
        path = self.path_for(org)
        if not path.is_file():  # before evicting anything to make room
            raise TenantNotFoundError(f"organization {shown(org)} has no tenant file ({path})")
        with self._cond:
            handle, victim = self._reserve_locked(org)
            if handle is not None:
                handle.leases += lease
                return handle.db
        return self._open_reserved(org, victim, lease=lease, creating=False)

    def _open_reserved(
        self, org: str, victim: Database | None, *, lease: bool, creating: bool
    ) -> Database:
        """Open `org`'s file in the slot `_reserve_locked` took, after
        closing the handle it evicted, and cache the handle (leased if
        `lease`). The lock is not held here: opening and migrating are slow.
        When `creating`, a failure removes the file before `org` is released."""
        path = self.path_for(org)
        db: Database | None = None
        try:
            if victim is not None:
                victim.close()
            # Checked again now that `org` is ours: it may have been archived.
            if not creating and not path.is_file():
                raise TenantNotFoundError(f"organization {shown(org)} has no tenant file ({path})")
            db = self._connect(path)
            migrations.migrate(db, self._schema)
            if self._on_open is not None:
                self._on_open(db)
            with self._cond:
                if not self._closed:
                    self._reserved -= 1
                    self._busy.discard(org)
                    self._open[org] = _Handle(db, _now(), int(lease))
                    self._cond.notify_all()
                    return db
            raise DatabaseClosedError("the tenant registry was closed while opening the file")
        except BaseException:
            try:
                if db is not None:
                    db.close()
                if creating:
                    self._unlink_all(path)
            finally:
                self._release_slot(org)
            raise

    def _reserve_locked(self, org: str) -> tuple[_Handle | None, Database | None]:
        """With the lock held: `org`'s open handle (touched), or else mark
        `org` busy and take a slot for opening it. With no slot free, the
        least recently used unleased handle is evicted and returned: the
        caller closes it (without the lock) and then opens `org` in its
        slot. Waits while `org` is busy, or while every handle is leased;
        raises `TenantHandlesBusyError` when every handle stays leased for
        `lease_timeout_s`."""
        deadline: float | None = None
        collected = False
        while True:
            self._check_open_locked()
            handle = self._open.get(org)
            if handle is not None:
                handle.last_used = _now()
                self._open.move_to_end(org)
                return handle, None
            if org in self._busy:
                self._cond.wait(_WAIT_SLICE_S)
                continue
            victim: Database | None = None
            if len(self._open) + self._reserved >= self._max_open:
                key = next((k for k, h in self._open.items() if not h.leases), None)
                if key is None and not collected and not self._reserved:
                    # Leases held only by garbage in reference cycles end
                    # when the collector frees it; nobody allocates while
                    # every thread waits here, so collect once ourselves.
                    collected = True
                    self._collect_garbage_unlocked()
                    continue
                if key is None:
                    # Every handle is leased (or being opened or closed):
                    # wait for a lease to end or a slot to come free.
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + self._lease_timeout_s
                    if now >= deadline:
                        raise TenantHandlesBusyError(
                            f"cannot open the tenant file of {shown(org)}: all {self._max_open} "
                            f"open tenant handles stayed leased for {self._lease_timeout_s:g} s; "
                            f"end leases sooner or raise max_open"
                        )
                    self._cond.wait(min(_WAIT_SLICE_S, deadline - now))
                    continue
                victim = self._open.pop(key).db
            self._reserved += 1
            self._busy.add(org)
            return None, victim

    def _collect_garbage_unlocked(self) -> None:
        """With the lock held: run the cyclic collector without it (the
        finalizers it runs give leases back), then take the lock again."""
        self._cond.release()
        try:
            gc.collect()
        finally:
            self._cond.acquire()
            self._drain_locked()

    def _claim_locked(self, org: str) -> _Handle | None:
        """With the lock held: wait until nothing else is under way for
        `org`, mark it busy, and take its open handle out of the cache
        (keeping its slot until `_release_slot`). Refuses a leased handle."""
        while True:
            self._check_open_locked()
            if org not in self._busy:
                break
            self._cond.wait(_WAIT_SLICE_S)
        handle = self._open.get(org)
        if handle is not None:
            if handle.leases:
                raise StorageError(
                    f"the tenant file of {shown(org)} is leased ({handle.leases} lease(s)); "
                    f"end the lease first"
                )
            del self._open[org]
            self._reserved += 1
        self._busy.add(org)
        return handle

    def _release_slot(self, org: str, *, held: bool = True) -> None:
        with self._cond:
            self._reserved -= held
            self._busy.discard(org)
            self._cond.notify_all()

    def _take_idle_locked(self, keep: str | None = None) -> list[Database]:
        """With the lock held: remove the handles idle past `idle_close_s`,
        except `keep`'s (their slots stay taken until `_close_handles` gives
        them back)."""
        if self._idle_close_s is None or not self._open:
            return []
        cutoff = _now() - self._idle_close_s
        idle = []
        for key, handle in self._open.items():
            if handle.leases or key == keep:
                continue
            if handle.last_used > cutoff:
                break  # the rest were used later (the order is by last use)
            idle.append(key)
        self._reserved += len(idle)
        return [self._open.pop(key).db for key in idle]

    def _close_handles(self, handles: list[Database]) -> None:
        """Close handles taken out of the cache, then give back their slots."""
        if not handles:
            return
        try:
            for db in handles:
                db.close()
        finally:
            with self._cond:
                self._reserved -= len(handles)
                self._cond.notify_all()

    # -- lifecycle -----------------------------------------------------------

    def create(self, org_id: str) -> None:
        """Create `org_id`'s tenant file at the schema's newest version (and
        keep it open). `AlreadyExistsError` if the file exists. If migrating
        fails, the new file is removed and the error propagates."""
        self._check_writable("create a tenant file")
        org = self.validate(org_id)
        with self._cond:
            handle, victim = self._reserve_locked(org)
            if handle is not None:
                raise AlreadyExistsError(f"organization {shown(org)} already has a tenant file")
        path = self.path_for(org)
        try:
            if victim is not None:
                victim.close()
            self._directory.mkdir(parents=True, exist_ok=True)
            try:
                # O_EXCL: of two creators, exactly one gets the file.
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                raise AlreadyExistsError(
                    f"organization {shown(org)} already has a tenant file ({path})"
                ) from None
        except BaseException:
            self._release_slot(org)
            raise
        self._open_reserved(org, None, lease=False, creating=True)

    def discard(self, org_id: str) -> None:
        """Undo `create`: close `org_id`'s handle and delete its tenant file
        (with its -wal/-shm). For when the organization's own record failed
        to commit; use `archive` to delete an organization. A missing file
        is not an error."""
        self._check_writable("discard a tenant file")
        org = self.validate(org_id)
        with self._cond:
            handle = self._claim_locked(org)
        try:
            if handle is not None:
                handle.db.close()
            self._unlink_all(self.path_for(org))
        finally:
            self._release_slot(org, held=handle is not None)

    def archive(self, org_id: str) -> Path:
        """Close `org_id`'s tenant file and move it (with any -wal/-shm) to
        ``archive/tenant-{org_id}.<UTC timestamp>.db``; the new path.
        Nothing is deleted (see `purge`). `TenantNotFoundError` if there is
        no live file; `StorageError` while the file is leased."""
        self._check_writable("archive a tenant file")
        org = self.validate(org_id)
        with self._cond:
            handle = self._claim_locked(org)
        try:
            if handle is not None:
                try:
                    # Fold the WAL into the file so the archive is one file.
                    handle.db.checkpoint("TRUNCATE")
                finally:
                    handle.db.close()
            path = self.path_for(org)
            if not path.is_file():
                raise TenantNotFoundError(f"organization {shown(org)} has no tenant file ({path})")
            self.archive_directory.mkdir(parents=True, exist_ok=True)
            stamp = _utc_stamp()
            target = self.archive_directory / f"tenant-{org}.{stamp}.db"
            n = 1
            while any(_with_suffix(target, s).exists() for s in ("", *_SIDECARS)):
                n += 1  # archived twice in one second: never overwrite
                target = self.archive_directory / f"tenant-{org}.{stamp}-{n}.db"
            # The database first: once it has moved, the tenant is gone. If a
            # crash leaves a -wal behind, SQLite deletes it when it next finds
            # it beside an empty or missing file (a later create).
            os.rename(path, target)
            for suffix in _SIDECARS:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(_with_suffix(path, suffix), _with_suffix(target, suffix))
            return target
        finally:
            self._release_slot(org, held=handle is not None)

    def archived(self, org_id: str) -> list[Path]:
        """`org_id`'s archived tenant files, oldest first."""
        org = self.validate(org_id)
        self._check_open()
        pattern = re.compile(rf"tenant-{re.escape(org)}\.(\d{{8}}T\d{{6}}Z)(?:-(\d+))?\.db")
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.archive_directory):
                match = pattern.fullmatch(entry.name)
                if match:
                    found.append((match[1], int(match[2] or 1), entry.path))
        return [Path(p) for *_, p in sorted(found)]

    def purge(self, org_id: str) -> int:
        """Delete `org_id`'s archived tenant files (with their -wal/-shm);
        how many archives were deleted. The only way an archive is deleted."""
        self._check_writable("purge archived tenant files")
        archives = self.archived(org_id)
        for path in archives:
            self._unlink_all(path)
        return len(archives)

    def migrate_all(
        self, *, progress: bool | Callable[[int, int], None] = False
    ) -> MigrateAllResult:
        """Open and migrate every live tenant file, one at a time within
        `max_open` (each is closed again unless it was already open; open
        ones were migrated when they were opened).

        A file that fails is left unchanged and reported in the result's
        `failed`; the others are still migrated. `progress=True` draws a bar
        on stderr; a callable is called with ``(done, total)``.
        """
        report: Callable[[int, int], None] | None
        report = ProgressBar("tenants") if progress is True else progress or None
        started = time.perf_counter()
        orgs = self.ids()
        upgraded = current = 0
        failed: dict[str, Exception] = {}
        if report is not None:
            report(0, len(orgs))
        for done, org in enumerate(orgs, 1):
            try:
                if self._migrate_one(org):
                    upgraded += 1
                else:
                    current += 1
            except Exception as exc:
                if isinstance(exc, DatabaseClosedError) and self._closed:
                    raise
                failed[org] = exc
            if report is not None:
                report(done, len(orgs))
        return MigrateAllResult(len(orgs), upgraded, current, failed, time.perf_counter() - started)

    def _migrate_one(self, org: str) -> bool:
        """Migrate `org`'s file unless it is open; True if its version rose."""
        with self._cond:
            handle, victim = self._reserve_locked(org)
            if handle is not None:
                return False
        db: Database | None = None
        try:
            if victim is not None:
                victim.close()
            path = self.path_for(org)
            if not path.is_file():
                raise TenantNotFoundError(f"organization {shown(org)} has no tenant file ({path})")
            db = self._connect(path)
            upgraded = migrations.migrate(db, self._schema).applied > 0
            if self._on_open is not None:
                self._on_open(db)
            return upgraded
        finally:
            if db is not None:
                db.close()
            self._release_slot(org)

    def close(self) -> None:
        """Close every handle, leased or not. Later calls raise
        `DatabaseClosedError`. Idempotent."""
        with self._cond:
            self._closed = True
            handles = [h.db for h in self._open.values()]
            self._reserved += len(handles)
            self._open.clear()
            self._cond.notify_all()
        self._close_handles(handles)

    def _check_open(self) -> None:
        with self._cond:
            self._check_open_locked()

    def _check_open_locked(self) -> None:
        if self._closed:
            raise DatabaseClosedError("the tenant registry is closed")

    @staticmethod
    def _unlink_all(path: Path) -> None:
        # The sidecars first: a -wal must never outlive its database.
        for suffix in _SIDECARS:
            _with_suffix(path, suffix).unlink(missing_ok=True)
        path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.open_count}/{self._max_open} open"
        return f"<TenantRegistry {shown(str(self._directory))} {self._schema.kind} {state}>"
