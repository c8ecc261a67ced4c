"""Compiled JSON Schema validators, one per (file, type, version).

Validation runs in Rust (`alkdev_storage._native.SchemaValidator`): a
schema is compiled once and reused for every write until its type changes.
The cache key includes the type's row id and version, so registering a new
version (or deleting and re-creating a type) never reuses a stale
validator; entries for a file are dropped when its types change.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from alkdev_storage import _native
from alkdev_storage.errors import ValidationError

if TYPE_CHECKING:
    from alkdev_storage._native import SchemaValidator

_Key = tuple[str, str, int]  # (file path, node/edge type id, graph type version)

_lock = threading.Lock()
_cache: dict[_Key, SchemaValidator] = {}


def compile_schema(schema: Any) -> SchemaValidator:
    """Compile `schema`; `InvalidSchemaError` if it is not a valid schema."""
    return _native.SchemaValidator(schema)


def validator(path: str, type_id: str, version: int, schema: Any) -> SchemaValidator:
    """The compiled validator for this type, compiling it on first use."""
    key = (path, type_id, version)
    with _lock:
        found = _cache.get(key)
    if found is None:
        found = _native.SchemaValidator(schema)
        with _lock:
            found = _cache.setdefault(key, found)
    return found


def forget(path: str) -> None:
    """Drop every validator of the file at `path` (its types changed)."""
    with _lock:
        for key in [k for k in _cache if k[0] == path]:
            del _cache[key]


def check(compiled: SchemaValidator, attributes: Any, what: str) -> None:
    """Raise `ValidationError` listing every violation of `attributes`."""
    violations = compiled.validate(attributes)
    if violations:
        listed = "; ".join(f"{path or '/'}: {message}" for path, message in violations)
        raise ValidationError(f"{what}: attributes do not match the schema: {listed}", violations)
