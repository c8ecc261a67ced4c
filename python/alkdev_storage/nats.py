"""Stream events carried over NATS JetStream: the receiving side of the
relay (`alkdev_storage.relay`, ``alkdev-storage relay``). docs/cluster.md.

The relay publishes every stream event of ``system.db`` and of each tenant
file to the subject ``alk.<source>.<topic>`` (`source` is the organization
id, or ``system``), with honker's envelope as the payload (``{"offset",
"topic", "key", "payload", "created_at"}``, `payload` the event's JSON text)
and ``Nats-Msg-Id: <source>:<offset>``. `subscribe` (async) and `Subscriber`
(blocking) read them back as `RemoteEvent`s, in each file's offset order,
each at most once per subscription (repeats the relay sent after JetStream's
duplicate window are dropped here by offset).

Needs the ``cluster`` extra (``pip install 'alkdev-storage[cluster]'``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import re
import threading
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any, Self

from alkdev_storage import _checks as check
from alkdev_storage._checks import shown
from alkdev_storage._closing import Closing
from alkdev_storage.errors import ClusterError, InvalidInputError, MissingExtraError

#: The JetStream stream the relay publishes to (created if missing).
DEFAULT_STREAM = "ALK"
#: The first token(s) of every subject.
DEFAULT_PREFIX = "alk"
#: The source token for ``system.db``'s events (no organization has this
#: id: `Organizations.create` refuses it).
SYSTEM_SOURCE = "system"

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[A-Za-z0-9_:-]")
_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def load_nats() -> ModuleType:
    """The ``nats`` package (nats-py), or `MissingExtraError`."""
    try:
        import nats
    except ImportError as exc:  # pragma: no cover - the test extra has it
        raise MissingExtraError(
            "NATS support needs nats-py: pip install 'alkdev-storage[cluster]'"
        ) from exc
    return nats


async def _quiet(exc: Exception) -> None:
    log.debug("NATS: %s", exc)


async def connect(nats: ModuleType, servers: list[str], timeout_s: float) -> Any:
    """A NATS connection that reconnects for good once made, but whose
    first connect gives up after `timeout_s` (nats-py's would retry for
    good too). nats-py's own error reports go to our logger."""
    return await asyncio.wait_for(
        nats.connect(
            servers=servers,
            connect_timeout=timeout_s,
            max_reconnect_attempts=-1,
            error_cb=_quiet,
        ),
        timeout_s,
    )


def _escape(text: str) -> str:
    return "".join(
        c if _SAFE.fullmatch(c) else "".join(f"%{b:02X}" for b in c.encode()) for c in text
    )


def topic_tokens(topic: str) -> str:
    """`topic` as subject tokens: dots separate tokens (``orders.eu`` stays
    two tokens, so ``alk.*.orders.>`` matches it) and every character other
    than ASCII letters, digits, ``_``, ``:`` and ``-`` is written ``%XX`` per
    UTF-8 byte (so ``*``, ``>``, spaces and ``%`` never reach a subject). A
    topic whose dots would leave an empty token has its dots escaped too.
    Different topics never give the same tokens.

    >>> topic_tokens("orders.eu"), topic_tokens("a b*"), topic_tokens(".x")
    ('orders.eu', 'a%20b%2A', '%2Ex')
    """
    parts = topic.split(".")
    if all(parts):
        return ".".join(_escape(p) for p in parts)
    return _escape(topic) or "%"


def subject(source: str, topic: str, *, prefix: str = DEFAULT_PREFIX) -> str:
    """The subject the relay publishes `source`'s event of `topic` to."""
    return f"{prefix}.{source}.{topic_tokens(topic)}"


def message_id(source: str, offset: int) -> str:
    """The ``Nats-Msg-Id`` of `source`'s event at `offset`: the same on
    every publish of that event, so JetStream drops the repeats."""
    return f"{source}:{offset}"


def check_prefix(prefix: str) -> str:
    check.text("subject prefix", prefix)
    if _PREFIX.fullmatch(prefix) is None:
        raise InvalidInputError(
            f"subject prefix {shown(prefix)} must be dot-separated tokens of ASCII letters, "
            "digits, '_' and '-'"
        )
    return prefix


def check_stream(name: str) -> str:
    check.text("stream name", name)
    if _STREAM_NAME.fullmatch(name) is None:
        raise InvalidInputError(
            f"JetStream stream name {shown(name)} must be 1 to 64 ASCII letters, digits, "
            "'_' and '-'"
        )
    return name


def servers_list(servers: str | Sequence[str]) -> list[str]:
    found = [servers] if isinstance(servers, str) else list(servers)
    if not found or not all(isinstance(s, str) and s for s in found):
        raise InvalidInputError(f"NATS servers must be one or more URLs, got {shown(servers)}")
    return found


@dataclass(frozen=True, slots=True)
class RemoteEvent:
    """A stream event read back from JetStream: the file it came from
    (`source`: an organization id, or ``system``), honker's fields with the
    payload decoded, and the message's JetStream stream sequence."""

    source: str
    offset: int
    topic: str
    key: str | None
    payload: Any
    created_at: int
    sequence: int


class Subscription:
    """Events from JetStream, in each file's offset order (an ordered
    consumer: JetStream's own order, which is the relay's per-file publish
    order). Made by `subscribe`; close it (``async with``) when done."""

    def __init__(self, prefix: str, dedupe: bool) -> None:
        self._prefix_tokens = prefix.count(".") + 1
        self._dedupe = dedupe
        self._last: dict[str, int] = {}
        self._nc: Any = None
        self._sub: Any = None
        self.duplicates = 0
        """Repeats dropped (an event seen already on this subscription)."""

    async def _start(
        self,
        servers: list[str],
        filter_subject: str,
        stream: str,
        start_sequence: int | None,
        connect_timeout_s: float,
    ) -> None:
        nats = load_nats()
        from nats.js.api import DeliverPolicy

        try:
            self._nc = await connect(nats, servers, connect_timeout_s)
            js = self._nc.jetstream()
            options: dict[str, Any] = {"ordered_consumer": True, "stream": stream}
            if start_sequence is not None:
                options["deliver_policy"] = DeliverPolicy.BY_START_SEQUENCE
                options["config"] = _consumer_config(start_sequence)
            else:
                options["deliver_policy"] = DeliverPolicy.ALL
            self._sub = await js.subscribe(filter_subject, **options)
        except Exception as exc:
            await self.aclose()
            if isinstance(exc, MissingExtraError):
                raise
            raise ClusterError(f"cannot subscribe to {filter_subject} on {servers}: {exc}") from exc

    async def next(self, timeout: float | None = None) -> RemoteEvent | None:
        """The next event; None when none comes within `timeout` seconds
        (None: wait for good)."""
        if self._sub is None:
            raise ClusterError("subscription is closed")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = 3600.0 if deadline is None else deadline - loop.time()
            if left <= 0:
                return None
            try:
                msg = await self._sub.next_msg(timeout=left)
            except TimeoutError:
                if deadline is None:
                    continue
                return None
            event = self._decode(msg)
            if event is not None:
                return event

    def _decode(self, msg: Any) -> RemoteEvent | None:
        tokens = msg.subject.split(".")
        source = tokens[self._prefix_tokens] if len(tokens) > self._prefix_tokens else ""
        body = json.loads(msg.data)
        offset = int(body["offset"])
        if self._dedupe:
            if offset <= self._last.get(source, 0):
                self.duplicates += 1
                return None
            self._last[source] = offset
        raw = body["payload"]
        return RemoteEvent(
            source=source,
            offset=offset,
            topic=body["topic"],
            key=body.get("key"),
            payload=json.loads(raw) if isinstance(raw, str) else raw,
            created_at=int(body["created_at"]),
            sequence=int(msg.metadata.sequence.stream),
        )

    def __aiter__(self) -> AsyncIterator[RemoteEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RemoteEvent]:
        while True:
            event = await self.next()
            if event is not None:
                yield event

    async def aclose(self) -> None:
        """Stop the consumer and close the connection. Idempotent."""
        sub, nc, self._sub, self._nc = self._sub, self._nc, None, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may be gone already
                pass
        if nc is not None:
            try:
                await nc.close()
            except Exception:
                pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _consumer_config(start_sequence: int) -> Any:
    from nats.js.api import ConsumerConfig, DeliverPolicy

    return ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_sequence
    )


def _filter(prefix: str, source: str | None, topic: str | None) -> str:
    if source is not None and source != SYSTEM_SOURCE:
        from alkdev_storage.tenants import TenantRegistry

        TenantRegistry.validate(source)
    head = f"{prefix}.{source or '*'}"
    return f"{head}.{topic_tokens(topic)}" if topic is not None else f"{head}.>"


async def subscribe(
    servers: str | Sequence[str],
    *,
    source: str | None = None,
    topic: str | None = None,
    stream: str = DEFAULT_STREAM,
    prefix: str = DEFAULT_PREFIX,
    start_sequence: int | None = None,
    dedupe: bool = True,
    connect_timeout_s: float = 5.0,
) -> Subscription:
    """Read relayed events from JetStream: every file's (`source` None), one
    file's (an organization id, or ``system``), one `topic`'s. From the
    stream's first message, or from `start_sequence` (a `RemoteEvent`'s
    `sequence` + 1 resumes after it). `dedupe` drops an event whose offset
    is not past the last one seen from its file on this subscription.

    >>> async def follow(url):  # doctest: +SKIP
    ...     async with await alkdev_storage.nats.subscribe(url, source="system") as events:
    ...         async for event in events:
    ...             print(event.source, event.offset, event.topic, event.payload)
    """
    check_prefix(prefix)
    check_stream(stream)
    if start_sequence is not None:
        check.whole("start_sequence", start_sequence, minimum=1)
    if topic is not None:
        check.text("topic", topic)
    found = servers_list(servers)
    sub = Subscription(prefix, dedupe)
    await sub._start(
        found, _filter(prefix, source, topic), stream, start_sequence, connect_timeout_s
    )
    return sub


class Subscriber(Closing):
    """The blocking form of `subscribe`, for threads and scripts: its own
    event loop runs on one thread of its own until `close` (or until the
    object is dropped).

    >>> with alkdev_storage.nats.Subscriber(url, source="system") as events:  # doctest: +SKIP
    ...     event = events.next(timeout=5)
    """

    def __init__(self, servers: str | Sequence[str], **options: Any) -> None:
        self._events: queue.Queue[RemoteEvent | BaseException] = queue.Queue(maxsize=10_000)
        self._loop = asyncio.new_event_loop()
        self._stopped = threading.Event()
        ready: queue.Queue[BaseException | None] = queue.Queue()
        self._thread = threading.Thread(
            target=_pump,
            args=(self._loop, servers, options, self._events, ready, self._stopped),
            name="alkdev-nats-subscriber",
            daemon=True,
        )
        self._thread.start()
        failure = ready.get()
        if failure is not None:
            self._thread.join()
            raise failure
        self._finalizer = weakref.finalize(self, _stop, self._loop, self._stopped, self._thread)

    def next(self, timeout: float | None = None) -> RemoteEvent | None:
        """The next event; None when none comes within `timeout` seconds."""
        if self._stopped.is_set() and self._events.empty():
            raise ClusterError("subscriber is closed")
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise ClusterError(f"the NATS subscription failed: {item}") from item
        return item

    def __iter__(self) -> Iterator[RemoteEvent]:
        while True:
            event = self.next()
            if event is not None:
                yield event

    def close(self) -> None:
        """Stop the consumer, its connection and its thread. Idempotent."""
        self._finalizer()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _pump(
    loop: asyncio.AbstractEventLoop,
    servers: str | Sequence[str],
    options: dict[str, Any],
    out: queue.Queue[RemoteEvent | BaseException],
    ready: queue.Queue[BaseException | None],
    stopped: threading.Event,
) -> None:
    async def run() -> None:
        try:
            sub = await subscribe(servers, **options)
        except BaseException as exc:
            ready.put(exc)
            return
        ready.put(None)
        try:
            while not stopped.is_set():
                event = await sub.next(timeout=0.2)
                if event is not None:
                    while not stopped.is_set():
                        try:
                            out.put(event, timeout=0.2)
                            break
                        except queue.Full:
                            await asyncio.sleep(0)
        except Exception as exc:
            out.put(exc)
        finally:
            await sub.aclose()

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()


def _stop(
    loop: asyncio.AbstractEventLoop, stopped: threading.Event, thread: threading.Thread
) -> None:
    stopped.set()
    if thread is not threading.current_thread():
        thread.join(timeout=5)
