"""The official honker Python API, on alkdev-storage.

Code written for ``honker`` runs after changing one import::

    from alkdev_storage import honker

    db = honker.open("app.db")
    q = db.queue("emails")
    with db.transaction() as tx:
        tx.execute("INSERT INTO orders(total) VALUES (?)", [42])
        q.enqueue({"order": 1}, tx=tx)
        tx.notify("orders", {"new": 1})

Everything here is the same file format and the same rules as honker-core
(other honker bindings share the file), run through alkdev-storage's native
primitives. Differences from the official package, on purpose: reads such
as ``get_job`` or ``Stream.get_offset`` use a reader snapshot instead of a
write transaction, and no per-process DDL (the ``_honker_jobs`` view) is run
on ``db.queue()``.

>>> from alkdev_storage import honker
>>> import tempfile, os
>>> db = honker.open(os.path.join(tempfile.mkdtemp(), "app.db"))
>>> db.stream("orders").publish({"id": 1}) is None
True
>>> db.query("SELECT topic, payload FROM _honker_stream")
[{'topic': 'orders', 'payload': '{"id": 1}'}]
>>> db.close()
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from alkdev_storage import _checks as check
from alkdev_storage import _database
from alkdev_storage._native import Job
from alkdev_storage._native import Transaction as _NativeTransaction
from alkdev_storage._waiting import SyncChange
from alkdev_storage.errors import InvalidInputError
from alkdev_storage.pubsub import Listener, LockHeld, Notification
from alkdev_storage.queues import Outbox, Queue
from alkdev_storage.scheduler import CronSchedule, LeadershipLost, Scheduler, crontab, every_s
from alkdev_storage.streams import Event, Subscription
from alkdev_storage.streams import Stream as _Stream

__all__ = [
    "CronSchedule",
    "Database",
    "Event",
    "Job",
    "LeadershipLost",
    "Listener",
    "LockHeld",
    "Notification",
    "Outbox",
    "Queue",
    "Scheduler",
    "Stream",
    "Subscription",
    "Transaction",
    "crontab",
    "every_s",
    "open",
]

_Params = Sequence[Any] | dict[str, Any] | None


class Transaction:
    """honker's transaction: ``execute`` and ``query`` return dict rows,
    ``notify`` JSON-encodes its payload."""

    def __init__(self, tx: _NativeTransaction) -> None:
        self._tx = tx

    def execute(self, sql: str, params: _Params = None) -> list[dict[str, Any]]:
        """Run one statement; its rows (empty for writes without RETURNING)."""
        return self._tx.query(sql, params, as_dict=True)

    def query(self, sql: str, params: _Params = None) -> list[dict[str, Any]]:
        return self._tx.query(sql, params, as_dict=True)

    def notify(self, channel: str, payload: Any) -> int:
        raw = check.dumps(payload)
        row = self._tx.query_one("SELECT notify(?, ?)", (check.text("channel", channel), raw))
        assert row is not None
        return int(row[0])

    def commit(self) -> None:
        self._tx.commit()

    def rollback(self) -> None:
        self._tx.rollback()

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._tx.__exit__(exc_type, exc, tb)


class Stream(_Stream):
    """honker's stream: ``publish`` returns None."""

    def publish(self, payload: Any, key: str | None = None, tx: object = None) -> None:  # type: ignore[override]
        super().publish(payload, key=key, tx=tx)


class Database(_database.Database):
    """honker's ``Database``: `query` returns dict rows, `transaction`
    returns honker's `Transaction`."""

    def transaction(self) -> Transaction:  # type: ignore[override]
        return Transaction(super().transaction())

    def query(self, sql: str, params: _Params = None) -> list[dict[str, Any]]:  # type: ignore[override]
        return super().query(sql, params, as_dict=True)

    def stream(self, name: str) -> Stream:
        with self._registry_lock:
            found = self._streams.get(name)
            if not isinstance(found, Stream):
                found = Stream(self, name)
                self._streams[name] = found
            return found

    def update_events(self) -> SyncChange:
        """A blocking waiter for commits on this file: ``wait(timeout)``
        returns True when something committed (any process)."""
        return SyncChange(self.path)


def open(  # noqa: A001 - honker's name
    path: str | os.PathLike[str],
    max_readers: int = 8,
    watcher_backend: str | None = None,
    watcher_poll_interval_ms: int | None = None,
) -> Database:
    """Open `path` as honker does. The watcher options are accepted for
    compatibility; this process's single watcher thread serves every file
    (see docs/wakes.md)."""
    if watcher_backend not in (None, "polling", "poll", "kernel", "kernel-watcher"):
        raise InvalidInputError(f"unknown watcher backend {check.shown(watcher_backend)}")
    if watcher_poll_interval_ms is not None:
        check.whole("watcher_poll_interval_ms", watcher_poll_interval_ms, minimum=1)
    return Database(path, max_readers=max_readers)
