"""A one-line progress bar on stderr, shared by the CLI and the tenant
registry: ``label    [#########.........]  512/1000``, redrawn with ``\\r``."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Call it with ``(done, total)``. Drawn only once the work has taken
    `after_s` seconds (a step that ends sooner leaves no bar), and redrawn at
    most every 0.1 s until the last call, which ends the line."""

    WIDTH = 30

    def __init__(self, label: str, *, after_s: float = 0.0, stream: TextIO | None = None) -> None:
        self._label = f"{label:<8}"
        self._stream = stream if stream is not None else sys.stderr
        self._start = time.monotonic() + after_s
        self._next = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now < self._start or (now < self._next and done < total):
            return  # not slow yet, or redrawn less than 0.1 s ago
        self._next = now + 0.1
        filled = self.WIDTH * done // total if total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        end = "\n" if done >= total else ""
        self._stream.write(f"\r{self._label} [{bar}]  {done}/{total}{end}")
        self._stream.flush()
