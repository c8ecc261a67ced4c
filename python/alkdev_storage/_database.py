"""`Database`: the native connection plus honker's primitives as objects.

The statement API (execute, query, transaction, ...) is the native one;
this class adds queues, streams, listeners, locks, rate limits and the
outbox on top of the native primitives (rust/primitives.rs).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any

from alkdev_storage import _checks as check
from alkdev_storage import _native
from alkdev_storage.errors import InvalidInputError
from alkdev_storage.pubsub import Listener, Lock
from alkdev_storage.queues import Delivery, Outbox, Queue
from alkdev_storage.streams import Stream, Subscription


class Database(_native.Database):
    """A database file opened by this process. Open it with `connect`.

    >>> import alkdev_storage as alk, tempfile, os
    >>> db = alk.connect(os.path.join(tempfile.mkdtemp(), "app.db"))
    >>> with db.transaction() as tx:
    ...     _ = tx.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY, total)")
    ...     _ = tx.execute("INSERT INTO orders(total) VALUES (?)", (42,))
    ...     job = db.queue("receipts").enqueue({"order": 1}, tx=tx)
    ...     offset = db.stream("orders").publish({"id": 1}, tx=tx)
    >>> db.query("SELECT count(*) FROM _honker_live")
    [(1,)]
    >>> db.close()
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_readers: int = 4,
        statement_cache: int = 256,
        busy_timeout_ms: int = 5000,
        readonly: bool = False,
    ) -> None:
        # The native constructor has opened the file; this only sets up the
        # per-object registries.
        self._registry_lock = threading.Lock()
        self._queues: dict[str, Queue] = {}
        self._streams: dict[str, Stream] = {}

    def queue(self, name: str, *, visibility_timeout_s: int = 300, max_attempts: int = 3) -> Queue:
        """The queue `name` (the same object each time). Asking again with
        other options raises ``ValueError``."""
        with self._registry_lock:
            found = self._queues.get(name)
            if found is None:
                found = Queue(
                    self,
                    name,
                    visibility_timeout_s=visibility_timeout_s,
                    max_attempts=max_attempts,
                )
                self._queues[name] = found
            elif (found.visibility_timeout_s, found.max_attempts) != (
                visibility_timeout_s,
                max_attempts,
            ):
                raise InvalidInputError(
                    f"queue {check.shown(name)} is already open with visibility_timeout_s="
                    f"{found.visibility_timeout_s}, max_attempts={found.max_attempts}"
                )
            return found

    def stream(self, name: str) -> Stream:
        """The stream (topic) `name`."""
        with self._registry_lock:
            found = self._streams.get(name)
            if found is None:
                found = self._streams[name] = Stream(self, name)
            return found

    def subscribe(
        self,
        topics: str | Iterable[str],
        *,
        consumer: str | None = None,
        from_offset: int | None = None,
        save_every_n: int = 1000,
        save_every_s: float = 1.0,
    ) -> Subscription:
        """Follow one or several topics in offset order (sync or async
        iteration); see `Subscription`."""
        names = [topics] if isinstance(topics, str) else list(topics)
        return Subscription(
            self,
            names,
            consumer=consumer,
            from_offset=from_offset,
            save_every_n=save_every_n,
            save_every_s=save_every_s,
        )

    def notify(self, channel: str, payload: Any, tx: object = None) -> int:
        """Send a notification to the listeners of `channel`; its id. In `tx`
        it is delivered only if `tx` commits."""
        return self._notify(check.text("channel", channel), payload, tx=check.native_tx(tx))

    def listen(self, channel: str, fallback_poll_s: float | None = 15.0) -> Listener:
        """Notifications on `channel` from now on."""
        return Listener(self, channel, fallback_poll_s)

    def lock(self, name: str, ttl: int = 60, owner: str | None = None) -> Lock:
        """A named lock shared by every process; use ``with``."""
        return Lock(self, name, ttl, owner)

    def try_rate_limit(self, name: str, limit: int, per: int) -> bool:
        """Count one call against `limit` per fixed window of `per` seconds;
        False (not counted) when the window is full."""
        return self._rate_limit_try(
            check.text("name", name),
            check.whole("limit", limit, minimum=1),
            check.seconds("per", per),
        )

    def sweep_rate_limits(self, older_than_s: int = 3600) -> int:
        """Delete rate-limit windows older than `older_than_s`."""
        return self._rate_limit_sweep(check.seconds("older_than_s", older_than_s, minimum=0))

    def prune_notifications(
        self, older_than_s: int | None = None, max_keep: int | None = None
    ) -> int:
        """Delete notifications older than `older_than_s` seconds, or all but
        the newest `max_keep` (either, when both are given); how many."""
        if older_than_s is None and max_keep is None:
            raise InvalidInputError("give older_than_s, max_keep, or both")
        return self._prune_notifications(
            None
            if older_than_s is None
            else check.seconds("older_than_s", older_than_s, minimum=0),
            None if max_keep is None else check.whole("max_keep", max_keep, minimum=0),
        )

    def outbox(
        self,
        name: str,
        delivery: Delivery,
        max_attempts: int = 5,
        base_backoff_s: int = 5,
        visibility_timeout_s: int = 60,
    ) -> Outbox:
        """A transactional outbox delivering through `delivery`."""
        return Outbox(
            self,
            name,
            delivery,
            max_attempts=max_attempts,
            base_backoff_s=base_backoff_s,
            visibility_timeout_s=visibility_timeout_s,
        )


def connect(
    path: str | os.PathLike[str],
    *,
    max_readers: int = 4,
    statement_cache: int = 256,
    busy_timeout_ms: int = 5000,
    readonly: bool = False,
) -> Database:
    """Open (creating if needed) the database file at `path`.

    One writer connection and up to `max_readers` readers; honker's schema
    is created on first open. ``:memory:`` is refused (waking listeners
    needs a file).
    """
    return Database(
        path,
        max_readers=max_readers,
        statement_cache=statement_cache,
        busy_timeout_ms=busy_timeout_ms,
        readonly=readonly,
    )
