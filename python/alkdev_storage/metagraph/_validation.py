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
from urllib.parse import unquote

from alkdev_storage import _native
from alkdev_storage._checks import shown
from alkdev_storage.errors import SchemaTooCostlyError, ValidationError

if TYPE_CHECKING:
    from alkdev_storage._native import SchemaValidator

_Key = tuple[str, str, int]  # (file path, node/edge type id, graph type version)

_lock = threading.Lock()
_cache: dict[_Key, SchemaValidator] = {}


def compile_schema(schema: Any) -> SchemaValidator:
    """Compile `schema`; `InvalidSchemaError` if it is not a valid schema."""
    return _native.SchemaValidator(schema)


# Where JSON Schema keeps subschemas, by how a validator applies them.
# In place: at the same place of the document as the schema holding them.
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")
_IN_PLACE_MAP = ("dependentSchemas", "dependencies")
# At the children of that place (properties, items...).
_CHILD_ONE = (
    "additionalProperties",
    "propertyNames",
    "contains",
    "items",
    "additionalItems",
    "unevaluatedItems",
    "unevaluatedProperties",
)
_CHILD_LIST = ("prefixItems", "items")
_CHILD_MAP = ("properties", "patternProperties")
_REFS = ("$ref", "$dynamicRef", "$recursiveRef")


class _Budget(Exception):
    """The unfolded schema passed the budget (internal: caught below)."""


def expansion(schema: Any, budget: int) -> int:
    """How many subschemas a validator may check against one document
    node, at most, with every ``$ref`` followed (the schema "unfolded");
    `SchemaTooCostlyError` past `budget`, or when that cannot be bounded.

    This is what makes validation cost explode: ``anyOf`` of two ``$ref``
    to a definition that is itself ``anyOf`` of two ``$ref``... checks 2^n
    subschemas at one place of a document, while the schema has 2n nodes.
    A ``$ref`` back to a schema being expanded counts once when the path to
    it passes through a child applicator (``properties``, ``items``...):
    that recursion is paid per level of the document, which is bounded by
    `Limits.json_depth` and `Limits.document_bytes`. A cycle that stays at
    one place (``{"$ref": "#"}``) never ends and is refused, and so is a
    ``$ref`` this analysis cannot resolve (anything but ``#``, ``#/json/
    pointer``, ``#anchor`` or an embedded ``$id``). The walk stops at
    `budget` steps, so it costs at most that much, whatever the schema.
    """
    anchors: dict[str, list[Any]] = {}
    ids: dict[str, Any] = {}
    _index(schema, anchors, ids)
    count = 0
    # (node, child applicators passed on the way) for the nodes being
    # expanded, by identity: a ref to one of them is a cycle.
    open_nodes: dict[int, int] = {}

    def visit(node: Any, depth: int) -> None:
        nonlocal count
        count += 1
        if count > budget:
            raise _Budget
        if not isinstance(node, dict):
            return  # true / false
        key = id(node)
        opened_at = open_nodes.get(key)
        if opened_at is not None:
            if opened_at == depth:
                raise SchemaTooCostlyError(
                    "a $ref leads back to a schema at the same place of the document "
                    "(an endless cycle)"
                )
            return  # recursion through a child: paid per document level
        open_nodes[key] = depth
        try:
            for word in _REFS:
                target = node.get(word)
                if isinstance(target, str):
                    for resolved in _resolve(schema, target, anchors, ids, word):
                        visit(resolved, depth)
            for word in _IN_PLACE_ONE:
                if word in node:
                    visit(node[word], depth)
            for word in _IN_PLACE_LIST:
                if isinstance(node.get(word), list):
                    for sub in node[word]:
                        visit(sub, depth)
            for word in _IN_PLACE_MAP:
                if isinstance(node.get(word), dict):
                    for sub in node[word].values():
                        if isinstance(sub, dict | bool):
                            visit(sub, depth)
            for word in _CHILD_ONE:
                if isinstance(node.get(word), dict | bool):
                    visit(node[word], depth + 1)
            for word in _CHILD_LIST:
                if isinstance(node.get(word), list):
                    for sub in node[word]:
                        visit(sub, depth + 1)
            for word in _CHILD_MAP:
                if isinstance(node.get(word), dict):
                    for sub in node[word].values():
                        visit(sub, depth + 1)
        finally:
            del open_nodes[key]

    try:
        visit(schema, 0)
    except _Budget:
        raise SchemaTooCostlyError(
            f"validating against this schema could check more than {budget} subschemas at "
            "one place of a document (Limits.schema_expansion): nested anyOf/oneOf/allOf "
            "or $ref that branch into the same definitions multiply"
        ) from None
    except RecursionError:
        raise SchemaTooCostlyError("the schema is nested too deeply to analyse") from None
    return count


def _index(schema: Any, anchors: dict[str, list[Any]], ids: dict[str, Any]) -> None:
    """Every ``$anchor`` / ``$dynamicAnchor`` and embedded ``$id`` of
    `schema` (iteratively: the schema may be deep)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for word in ("$anchor", "$dynamicAnchor", "$recursiveAnchor"):
                name = node.get(word)
                if isinstance(name, str):
                    anchors.setdefault(name, []).append(node)
            if isinstance(node.get("$id"), str):
                ids[node["$id"]] = node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _resolve(
    root: Any, ref: str, anchors: dict[str, list[Any]], ids: dict[str, Any], word: str
) -> list[Any]:
    """The subschemas a reference may stand for (conservatively: every
    dynamic anchor of that name)."""
    if word == "$recursiveRef" or ref == "#":
        return [root]
    if ref in ids:
        return [ids[ref]]
    if ref.startswith("#/"):
        node = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            part = unquote(part)
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise SchemaTooCostlyError(f"$ref {shown(ref)} points at nothing in the schema")
        return [node]
    if ref.startswith("#") and ref[1:] in anchors:
        return anchors[ref[1:]]
    raise SchemaTooCostlyError(
        f"$ref {shown(ref)} cannot be analysed for cost: use '#', '#/json/pointer' or '#anchor'"
    )


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
