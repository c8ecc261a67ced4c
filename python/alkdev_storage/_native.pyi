"""Type stub for the native core (``rust/``). Checked with ``mypy.stubtest``."""

import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeAlias, TypedDict, final, overload

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

@final
class ExecuteResult:
    @property
    def rowcount(self) -> int: ...
    @property
    def lastrowid(self) -> int | None: ...

@final
class Database:
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
    def __enter__(self) -> Database: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

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
    effective_fallback_interval_ms: float
    effective_idle_poll_ms: float

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
