"""Durable event streams: honker's `_honker_stream` table.

>>> import alkdev_storage as alk, tempfile, os
>>> db = alk.connect(os.path.join(tempfile.mkdtemp(), "app.db"))
>>> orders = db.stream("orders")
>>> orders.publish({"id": 1}, key="o-1")
1
>>> [(e.offset, e.key, e.payload) for e in orders.read_since(0)]
[(1, 'o-1', {'id': 1})]
>>> db.close()

Offsets are global across topics and only grow, so a consumer of several
topics sees one total order. A named consumer's offset is saved per topic
and only moves forward; delivery is at-least-once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from alkdev_storage import _checks as check
from alkdev_storage._checks import shown
from alkdev_storage._closing import Closing
from alkdev_storage._waiting import AsyncChange, SyncChange
from alkdev_storage.aio import in_transaction
from alkdev_storage.errors import InvalidInputError

if TYPE_CHECKING:
    from alkdev_storage._database import Database


@dataclass(frozen=True, slots=True)
class Event:
    """One stream event; `payload` is the decoded JSON."""

    offset: int
    topic: str
    key: str | None
    payload: Any
    created_at: int


def _events(rows: list[tuple[int, str, str | None, str, int]]) -> list[Event]:
    return [Event(o, t, k, check.loads(p), c) for o, t, k, p, c in rows]


class Stream:
    """A named topic. Get one with ``db.stream(name)``."""

    def __init__(self, db: Database, name: str) -> None:
        self._db = db
        self.name = check.text("stream name", name)

    def __repr__(self) -> str:
        return f"<Stream {shown(self.name)}>"

    def publish(self, payload: Any, key: str | None = None, tx: object = None) -> int:
        """Append an event; its offset. In `tx` it lands only if `tx` commits."""
        if key is not None:
            check.text("key", key, empty=True)
        return self._db._publish(self.name, payload, key, tx=check.native_tx(tx))

    def publish_many(
        self,
        payloads: Iterable[Any],
        keys: Sequence[str | None] | None = None,
        tx: object = None,
    ) -> list[int]:
        """Append many events in one transaction (or in `tx`); their offsets."""
        key_list = (
            None
            if keys is None
            else [k if k is None else check.text("key", k, empty=True) for k in keys]
        )
        return self._db._publish_many(self.name, payloads, key_list, tx=check.native_tx(tx))

    def read_since(self, offset: int, limit: int = 1000) -> list[Event]:
        """Events after `offset`, oldest first (a reader snapshot)."""
        check.whole("offset", offset, minimum=0)
        check.whole("limit", limit, minimum=1)
        return _events(self._db._read_since([(self.name, offset)], limit))

    _read_since = read_since

    def save_offset(self, consumer: str, offset: int, tx: object = None) -> bool:
        """Record that `consumer` has handled everything up to `offset`.
        Never moves back; True if it moved."""
        name = check.text("consumer", consumer)
        check.whole("offset", offset, minimum=0)
        return self._db._save_offset(name, self.name, offset, tx=check.native_tx(tx))

    def get_offset(self, consumer: str) -> int:
        """The offset saved for `consumer` (0 if none)."""
        return self._db._get_offset(check.text("consumer", consumer), self.name)

    def subscribe(
        self,
        consumer: str | None = None,
        from_offset: int | None = None,
        save_every_n: int = 1000,
        save_every_s: float = 1.0,
    ) -> Subscription:
        """Replay then follow this topic; see `Subscription`."""
        return Subscription(
            self._db,
            [self.name],
            consumer=consumer,
            from_offset=from_offset,
            save_every_n=save_every_n,
            save_every_s=save_every_s,
        )


class Subscription(Closing):
    """Events of one or several topics in offset order: replay, then live.

    Iterate with ``for`` (blocking) or ``async for``, or call `next`,
    `anext` or `poll`. With a `consumer`, the start is its saved offset per
    topic (unless `from_offset` is given) and progress is saved as you go.
    Without a consumer, reading starts at `from_offset` (default 0: the
    whole retained stream) and nothing is saved.

    Delivery is at-least-once. An event handed out is *in hand* until it is
    *done*, and only done events are ever saved. It is done when

    - the caller asks for more (`next`, `anext`, `poll`, the next step of a
      ``for``/``async for``): the previous handler finished;
    - the caller calls `ack` (saved at once; `ack(tx=tx)` saves it inside
      the caller's own transaction, with the handler's writes);
    - the ``with`` block exits normally.

    A ``with`` block left by an exception (a handler raising, Ctrl-C, a
    cancelled task), a plain `close()`, or a subscription dropped without
    closing never marks the event in hand as done: the consumer gets it
    again. Done events are saved in batches (`save_every_n` events or
    `save_every_s` seconds) and on `close()`, so a crash redelivers at most
    the unsaved tail, in offset order, and never skips one. See
    docs/events.md.

    >>> import alkdev_storage as alk, tempfile, os
    >>> db = alk.connect(os.path.join(tempfile.mkdtemp(), "app.db"))
    >>> _ = db.stream("mail").publish_many(["a", "b"])
    >>> with db.subscribe("mail", consumer="mailer") as events:
    ...     first = events.next(timeout=1)
    ...     raise RuntimeError("the mail server is down")
    Traceback (most recent call last):
    RuntimeError: the mail server is down
    >>> with db.subscribe("mail", consumer="mailer") as events:
    ...     events.next(timeout=1).payload  # delivered again
    'a'
    >>> with db.subscribe("mail", consumer="mailer") as events:
    ...     events.next(timeout=1).payload
    'b'
    >>> db.close()
    """

    def __init__(
        self,
        db: Database,
        topics: Sequence[str],
        *,
        consumer: str | None = None,
        from_offset: int | None = None,
        save_every_n: int = 1000,
        save_every_s: float = 1.0,
        batch: int = 512,
    ) -> None:
        if not topics:
            raise InvalidInputError("subscribe to at least one topic")
        self._db = db
        self.topics = tuple(dict.fromkeys(check.text("topic", t) for t in topics))
        self.consumer = None if consumer is None else check.text("consumer", consumer)
        self._save_every_n = check.whole("save_every_n", save_every_n, minimum=1)
        if save_every_s < 0:
            raise InvalidInputError("save_every_s must not be negative")
        self._save_every_s = save_every_s
        self._batch = check.whole("batch", batch, minimum=1)
        if from_offset is not None:
            check.whole("from_offset", from_offset, minimum=0)
        self._cursor: dict[str, int] = {}
        for topic in self.topics:
            if from_offset is not None:
                self._cursor[topic] = from_offset
            elif self.consumer is not None:
                self._cursor[topic] = db._get_offset(self.consumer, topic)
            else:
                self._cursor[topic] = 0
        # Per topic: the last offset handed out (_cursor), the last done, the
        # last saved. _in_hand holds the handed-out offsets not yet done.
        self._done = dict(self._cursor)
        self._saved = dict(self._cursor)
        self._in_hand: dict[str, int] = {}
        self._unsaved = 0
        self._last_save = time.monotonic()
        self._buffer: list[Event] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<Subscription {list(self.topics)} consumer={shown(self.consumer)}>"

    @property
    def offsets(self) -> dict[str, int]:
        """Per topic, the offset of the last event handed out."""
        return dict(self._cursor)

    def _fill(self) -> bool:
        if not self._buffer:
            rows = self._db._read_since(list(self._cursor.items()), self._batch)
            self._buffer = _events(rows)
            self._buffer.reverse()
        return bool(self._buffer)

    def _settle(self) -> bool:
        """The events in hand are done; True if a save is due (the caller
        flushes, in its own way: sync or async)."""
        if not self._in_hand:
            return False
        self._unsaved += 1
        self._done.update(self._in_hand)
        self._in_hand = {}
        due = time.monotonic() - self._last_save >= self._save_every_s
        return self._unsaved >= self._save_every_n or due

    def _handout(self) -> Event:
        event = self._buffer.pop()
        self._cursor[event.topic] = event.offset
        self._in_hand[event.topic] = event.offset
        return event

    def ack(self, tx: object = None) -> None:
        """Count every event handed out so far as done.

        Without `tx`, the consumer's offsets are saved now. With `tx` (a
        transaction on this subscription's file), they are saved inside it:
        they commit with the handler's own writes or roll back with them, so
        a handler whose effects live in this file sees each event once.
        Until `tx` commits, the events stay in hand here (a rollback and an
        exception leave them to be delivered again).
        """
        self._check_open()
        if tx is not None:
            native = check.native_tx(tx)
            if self.consumer is not None:
                pending = {**self._done, **self._in_hand}
                self._db._save_offsets(self.consumer, list(pending.items()), tx=native)
            return
        self._done.update(self._in_hand)
        self._in_hand = {}
        self.flush()

    def _unsaved_offsets(self) -> list[tuple[str, int]]:
        return [(t, o) for t, o in self._done.items() if o > self._saved.get(t, 0)]

    def _saved_now(self, changed: list[tuple[str, int]]) -> None:
        self._saved.update(changed)
        self._unsaved = 0
        self._last_save = time.monotonic()

    def flush(self) -> None:
        """Save the consumer's offsets of the events already done (no-op
        without a consumer). The events in hand are not saved."""
        if self.consumer is None:
            return
        changed = self._unsaved_offsets()
        if changed:
            self._db._save_offsets(self.consumer, changed)
        self._saved_now(changed)

    async def aflush(self) -> None:
        """`flush` for a coroutine: the save takes the writer without
        blocking the event loop (`alkdev_storage.aio.in_transaction`)."""
        consumer = self.consumer
        if consumer is None:
            return
        changed = self._unsaved_offsets()
        if changed:
            await in_transaction(
                self._db, lambda tx: self._db._save_offsets(consumer, changed, tx=tx)
            )
        self._saved_now(changed)

    def poll(self) -> list[Event]:
        """Every event available now (possibly none), without waiting. The
        events returned stay in hand until the next call (or `ack`)."""
        self._check_open()
        if self._settle():
            self.flush()
        out: list[Event] = []
        while self._fill():
            out.append(self._handout())
        return out

    def next(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting up to `timeout` seconds (None: forever).
        Asking for it marks the events in hand as done."""
        self._check_open()
        if self._settle():
            self.flush()
        if self._fill():
            return self._handout()
        deadline = None if timeout is None else time.monotonic() + timeout
        with SyncChange(self._db.path) as change:
            while not self._fill():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                change.wait(1.0 if left is None else min(left, 1.0))
                self._check_open()
        return self._handout()

    def __iter__(self) -> Iterator[Event]:
        while not self._closed:
            event = self.next(timeout=1.0)
            if event is not None:
                yield event

    async def anext(self, timeout: float | None = None) -> Event | None:
        """Async form of `next`; saving offsets never blocks the loop."""
        self._check_open()
        if self._settle():
            await self.aflush()
        if self._fill():
            return self._handout()
        deadline = None if timeout is None else time.monotonic() + timeout
        with AsyncChange(self._db.path) as change:
            while not self._fill():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                await change.wait(15.0 if left is None else min(left, 15.0))
                self._check_open()
        return self._handout()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[Event]:
        while not self._closed:
            event = await self.anext(timeout=15.0)
            if event is not None:
                yield event

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidInputError("subscription is closed")

    def _closing(self, completed: bool) -> bool:
        """Mark the subscription closed, the events in hand done when the
        handler `completed` them; False if it was closed already."""
        if self._closed:
            return False
        if completed:
            self._done.update(self._in_hand)
        self._closed = True
        self._in_hand = {}
        return True

    @staticmethod
    def _note_unsaved(exc: BaseException, flush_error: Exception) -> None:
        # The block's own exception is the one to see; this one is why the
        # done tail will be delivered again.
        exc.add_note(f"alkdev-storage: the consumer's offsets were not saved: {shown(flush_error)}")

    def close(self) -> None:
        """Save the done events' offsets and stop. The events in hand are
        not done (call `ack` first to count them): they are delivered again
        to this consumer. Idempotent."""
        if self._closing(completed=False):
            self.flush()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A block that completed finished with what it holds.
        if not self._closing(completed=exc is None):
            return
        try:
            self.flush()
        except Exception as flush_error:
            if exc is None:
                raise
            self._note_unsaved(exc, flush_error)

    async def __aenter__(self) -> Self:
        return self

    async def aclose(self) -> None:
        """`close` for a coroutine (the save does not block the loop)."""
        if self._closing(completed=False):
            await self.aflush()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """As ``__exit__``, saving without blocking the event loop."""
        if not self._closing(completed=exc is None):
            return
        try:
            await self.aflush()
        except Exception as flush_error:
            if exc is None:
                raise
            self._note_unsaved(exc, flush_error)
