"""Type stub for the native core (``rust/``). Checked with ``mypy.stubtest``."""

import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias, TypedDict, final, overload

__all__ = [
    "Database",
    "ExecuteResult",
    "RowIterator",
    "Savepoint",
    "Transaction",
    "WakeHub",
    "Watch",
    "_crash_watcher",
    "configure_watcher",
    "connect",
    "cron_next_after",
    "sqlite_version",
    "watch",
    "watcher_info",
]

_Param: TypeAlias = int | float | str | bytes | bool | bytearray | memoryview | None
_Params: TypeAlias = Sequence[_Param] | Mapping[str, _Param] | None
_Row: TypeAlias = tuple[Any, ...]
_DictRow: TypeAlias = dict[str, Any]

def connect(
    path: str | os.PathLike[str],
    *,
    max_readers: int = 4,
    statement_cache: int = 256,
    busy_timeout_ms: int = 5000,
    readonly: bool = False,
) -> Database: ...
def sqlite_version() -> str: ...
def cron_next_after(expr: str, from_unix: int) -> int: ...

# (id, queue, payload, state, priority, run_at, worker_id, claim_expires_at,
#  attempts, max_attempts, created_at, expires_at)
_JobRow: TypeAlias = tuple[
    int, str, str, str, int, int, str | None, int | None, int, int, int, int | None
]
# (offset, topic, key, payload, created_at)
_EventRow: TypeAlias = tuple[int, str, str | None, str, int]
# (name, queue, cron_expr, payload, priority, expires_s, next_fire_at,
#  enabled, max_attempts)
_ScheduleRow: TypeAlias = tuple[str, str, str, str, int, int | None, int, bool, int]

@final
class ExecuteResult:
    @property
    def rowcount(self) -> int: ...
    @property
    def lastrowid(self) -> int | None: ...

class Database:
    def __new__(
        cls,
        path: str | os.PathLike[str],
        *,
        max_readers: int = 4,
        statement_cache: int = 256,
        busy_timeout_ms: int = 5000,
        readonly: bool = False,
    ) -> Self: ...
    @property
    def path(self) -> pathlib.Path: ...
    @property
    def readonly(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def stats(self) -> dict[str, int]: ...
    def execute(self, sql: str, params: _Params = None) -> ExecuteResult: ...
    def executemany(self, sql: str, seq_of_params: Iterable[_Params]) -> ExecuteResult: ...
    def executescript(self, sql: str) -> None: ...
    @overload
    def query(
        self, sql: str, params: _Params = None, *, as_dict: Literal[False] = False
    ) -> list[_Row]: ...
    @overload
    def query(
        self, sql: str, params: _Params = None, *, as_dict: Literal[True]
    ) -> list[_DictRow]: ...
    @overload
    def query_one(
        self, sql: str, params: _Params = None, *, as_dict: Literal[False] = False
    ) -> _Row | None: ...
    @overload
    def query_one(
        self, sql: str, params: _Params = None, *, as_dict: Literal[True]
    ) -> _DictRow | None: ...
    def iterate(
        self, sql: str, params: _Params = None, *, as_dict: bool = False, batch_size: int = 256
    ) -> RowIterator: ...
    def columns(self, sql: str) -> list[str]: ...
    def transaction(self) -> Transaction: ...
    def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    # honker primitives (rust/primitives.rs); payloads are JSON text.
    def _enqueue(
        self,
        queue: str,
        payload: str,
        run_at: int | None,
        delay: int | None,
        priority: int,
        max_attempts: int,
        expires: int | None,
        tx: Transaction | None = None,
    ) -> int: ...
    def _enqueue_many(
        self,
        queue: str,
        payloads: Sequence[str],
        run_at: int | None,
        delay: int | None,
        priority: int,
        max_attempts: int,
        expires: int | None,
        tx: Transaction | None = None,
    ) -> list[int]: ...
    def _claim(
        self, queue: str, worker_id: str, n: int, timeout_s: int, tx: Transaction | None = None
    ) -> list[_JobRow]: ...
    def _ack(self, job_id: int, worker_id: str, tx: Transaction | None = None) -> bool: ...
    def _ack_batch(
        self, ids: Sequence[int], worker_id: str, tx: Transaction | None = None
    ) -> int: ...
    def _retry(
        self, job_id: int, worker_id: str, delay_s: int, error: str, tx: Transaction | None = None
    ) -> bool: ...
    def _fail(
        self, job_id: int, worker_id: str, error: str, tx: Transaction | None = None
    ) -> bool: ...
    def _heartbeat(
        self, job_id: int, worker_id: str, extend_s: int, tx: Transaction | None = None
    ) -> bool: ...
    def _cancel(self, job_id: int, tx: Transaction | None = None) -> bool: ...
    def _get_job(self, job_id: int, tx: Transaction | None = None) -> _JobRow | None: ...
    def _sweep_expired(self, queue: str, tx: Transaction | None = None) -> int: ...
    def _next_claim_at(self, queue: str, tx: Transaction | None = None) -> int: ...
    def _publish(
        self, topic: str, payload: str, key: str | None = None, tx: Transaction | None = None
    ) -> int: ...
    def _publish_many(
        self,
        topic: str,
        payloads: Sequence[str],
        keys: Sequence[str | None] | None = None,
        tx: Transaction | None = None,
    ) -> list[int]: ...
    def _read_since(
        self, cursors: Sequence[tuple[str, int]], limit: int, tx: Transaction | None = None
    ) -> list[_EventRow]: ...
    def _save_offset(
        self, consumer: str, topic: str, offset: int, tx: Transaction | None = None
    ) -> bool: ...
    def _save_offsets(
        self, consumer: str, offsets: Sequence[tuple[str, int]], tx: Transaction | None = None
    ) -> int: ...
    def _get_offset(self, consumer: str, topic: str, tx: Transaction | None = None) -> int: ...
    def _notify(self, channel: str, payload: str, tx: Transaction | None = None) -> int: ...
    def _notifications_since(
        self, channel: str, after_id: int, limit: int
    ) -> list[tuple[int, str, str, int]]: ...
    def _notifications_head(self, channel: str) -> int: ...
    def _prune_notifications(self, older_than_s: int | None, max_keep: int | None) -> int: ...
    def _lock_acquire(
        self, name: str, owner: str, ttl_s: int, tx: Transaction | None = None
    ) -> bool: ...
    def _lock_release(self, name: str, owner: str, tx: Transaction | None = None) -> bool: ...
    def _lock_renew(
        self, name: str, owner: str, ttl_s: int, tx: Transaction | None = None
    ) -> bool: ...
    def _lock_owner(self, name: str, tx: Transaction | None = None) -> tuple[str, int] | None: ...
    def _rate_limit_try(
        self, name: str, limit: int, per: int, tx: Transaction | None = None
    ) -> bool: ...
    def _rate_limit_sweep(self, older_than_s: int) -> int: ...
    def _scheduler_register(
        self,
        name: str,
        queue: str,
        cron_expr: str,
        payload: str,
        priority: int,
        expires_s: int | None,
        max_attempts: int,
        tx: Transaction | None = None,
    ) -> None: ...
    def _scheduler_unregister(self, name: str, tx: Transaction | None = None) -> bool: ...
    def _scheduler_tick(
        self, now_unix: int, tx: Transaction | None = None
    ) -> list[tuple[str, str, int, int]]: ...
    def _scheduler_soonest(self, tx: Transaction | None = None) -> int: ...
    def _scheduler_set_enabled(
        self, name: str, enabled: bool, tx: Transaction | None = None
    ) -> bool: ...
    def _scheduler_list(self, tx: Transaction | None = None) -> list[_ScheduleRow]: ...
    def _scheduler_update(
        self,
        name: str,
        cron_expr: str | None,
        payload: str | None,
        priority: int | None,
        expires_s: int | None,
        touch_expires: bool,
        max_attempts: int | None,
        touch_max_attempts: bool,
        tx: Transaction | None = None,
    ) -> bool: ...
    def _result_save(
        self, job_id: int, value: str, ttl_s: int, tx: Transaction | None = None
    ) -> None: ...
    def _result_get(self, job_id: int, tx: Transaction | None = None) -> str | None: ...
    def _result_sweep(self) -> int: ...

@final
class Transaction:
    @property
    def active(self) -> bool: ...
    def execute(self, sql: str, params: _Params = None) -> ExecuteResult: ...
    def executemany(self, sql: str, seq_of_params: Iterable[_Params]) -> ExecuteResult: ...
    def executescript(self, sql: str) -> None: ...
    @overload
    def query(
        self, sql: str, params: _Params = None, *, as_dict: Literal[False] = False
    ) -> list[_Row]: ...
    @overload
    def query(
        self, sql: str, params: _Params = None, *, as_dict: Literal[True]
    ) -> list[_DictRow]: ...
    @overload
    def query_one(
        self, sql: str, params: _Params = None, *, as_dict: Literal[False] = False
    ) -> _Row | None: ...
    @overload
    def query_one(
        self, sql: str, params: _Params = None, *, as_dict: Literal[True]
    ) -> _DictRow | None: ...
    def columns(self, sql: str) -> list[str]: ...
    def savepoint(self) -> Savepoint: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def __enter__(self) -> Transaction: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

@final
class Savepoint:
    @property
    def name(self) -> str: ...
    def release(self) -> None: ...
    def rollback(self) -> None: ...
    def __enter__(self) -> Savepoint: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

@final
class RowIterator:
    @property
    def columns(self) -> list[str]: ...
    def __iter__(self) -> RowIterator: ...
    def __next__(self) -> Any: ...
    def close(self) -> None: ...
    def __enter__(self) -> RowIterator: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

# -- wakes (rust/watch.rs) ---------------------------------------------------

class _WatcherInfo(TypedDict):
    running: bool
    backend: Literal["inotify", "polling"]
    requested_backend: Literal["auto", "inotify", "polling"]
    watched_files: int
    watched_directories: int
    hot_files: int
    checks: int
    wakes: int
    hints: int
    errors: int
    thread_starts: int
    last_error: str | None
    fallback_interval_ms: float
    hot_window_ms: float
    hot_interval_ms: float
    idle_poll_ms: float

def watch(path: str | os.PathLike[str], *, hub: WakeHub | None = None, token: int = 0) -> Watch: ...
def watcher_info() -> _WatcherInfo: ...
def configure_watcher(
    *,
    fallback_interval_ms: int | None = None,
    hot_window_ms: int | None = None,
    idle_poll_ms: int | None = None,
    backend: Literal["auto", "inotify", "polling"] | None = None,
) -> None: ...
def _crash_watcher() -> None: ...

@final
class Watch:
    @property
    def path(self) -> pathlib.Path: ...
    @property
    def closed(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...
    def changed(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> Watch: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

@final
class WakeHub:
    def __new__(cls) -> WakeHub: ...
    @property
    def closed(self) -> bool: ...
    def fileno(self) -> int: ...
    def drain(self) -> list[int]: ...
    def close(self) -> None: ...
