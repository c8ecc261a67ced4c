"""`Limits`: the bound on every input the storage host accepts.

A storage layer shared by tenants who do not trust each other must refuse
what would cost everyone else: a 50 MiB attribute document, a 10 MB node
key, JSON nested 100,000 deep, a schema whose validation explodes. Each
limit is checked before anything is written, and a refusal is one of our
errors (`LimitExceededError`, `InvalidInputError`, both `ValueError`s).

>>> import alkdev_storage as alk
>>> limits = alk.Limits()
>>> limits.document_bytes, limits.json_depth, limits.key_length
(1048576, 64, 1024)
>>> limits.text("name", "acme", limits.name_length)
'acme'
>>> limits.text("name", "ac\\x00me", limits.name_length)
Traceback (most recent call last):
...
alkdev_storage.errors.InvalidInputError: name contains a NUL character (at 2)
>>> limits.document("attributes", {"title": "x" * 10}, )
'{"title": "xxxxxxxxxx"}'

Open a storage root with other limits with ``alk.Storage.open(root,
limits=alk.Limits(document_bytes=8 << 20))``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from alkdev_storage import _checks as check
from alkdev_storage._checks import shown
from alkdev_storage._native import json_document
from alkdev_storage.errors import InputTypeError, InvalidInputError, LimitExceededError

__all__ = ["DEFAULT_LIMITS", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """The storage host's input limits; every field is a positive int.

    - `document_bytes`: an attribute or metadata document, as JSON text.
    - `json_depth`: containers (objects, arrays) nested in one document.
    - `key_length`: a node or edge key, in characters.
    - `name_length`: names and slugs (graphs, types, organizations,
      accounts' display names, API keys, credentials).
    - `text_length`: descriptions.
    - `schema_bytes`: one JSON Schema, as JSON text.
    - `schema_expansion`: the subschemas a tenant or user schema may make
      a validator check at one place of a document (see
      `alkdev_storage.metagraph._validation.expansion`).
    """

    document_bytes: int = 1 << 20
    json_depth: int = 64
    key_length: int = 1024
    name_length: int = 256
    text_length: int = 64 << 10
    schema_bytes: int = 256 << 10
    schema_expansion: int = 10_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(
                    f"Limits.{f.name} must be a positive int, got {shown(value)}"
                )

    def text(self, what: str, value: object, limit: int, *, empty: bool = False) -> str:
        """`value` if it is a str of at most `limit` characters with no NUL
        (SQLite and C libraries would cut it there); else our error."""
        if not isinstance(value, str):
            raise InputTypeError(f"{what} must be a str, not {type(value).__name__}")
        if not empty and not value:
            raise InvalidInputError(f"{what} must not be empty")
        if len(value) > limit:
            raise LimitExceededError(
                f"{what} is {len(value)} characters long, more than the limit of {limit}"
            )
        nul = value.find("\x00")
        if nul >= 0:
            raise InvalidInputError(f"{what} contains a NUL character (at {nul})")
        return check.utf8(what, value)

    def document(self, what: str, value: object) -> str:
        """`value` (a mapping, or None for ``{}``) as the JSON text to store,
        within `json_depth` and `document_bytes`, every key a str."""
        if value is None:
            return "{}"
        if type(value) is not dict:
            if not isinstance(value, Mapping):
                raise InputTypeError(f"{what} must be a mapping, not {type(value).__name__}")
            value = dict(value)
        text = json_document(value, what, self.json_depth, self.document_bytes)
        if text is None:  # only Python's encoder writes it: check it here
            _walk(what, value, self.json_depth)
            text = check.dumps(value, what)
            if len(text) > self.document_bytes:
                raise LimitExceededError(
                    f"{what} are longer than {self.document_bytes} bytes as JSON "
                    "(Limits.document_bytes)"
                )
        return text


def _walk(what: str, value: Any, max_depth: int) -> None:
    """Depth and key checks without recursion (the document may be nested
    far deeper than Python's stack allows)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children = []
            for key, child in item.items():
                if not isinstance(key, str):
                    raise InvalidInputError(
                        f"{what}: every key must be a str, not {type(key).__name__}"
                    )
                children.append(child)
        elif isinstance(item, list | tuple):
            children = list(item)
        else:
            continue
        if depth > max_depth:
            raise LimitExceededError(
                f"{what} are nested more than {max_depth} levels deep (Limits.json_depth)"
            )
        stack.extend((child, depth + 1) for child in children)


DEFAULT_LIMITS = Limits()
