"""JSON and YAML documents: graph-type specs and the files the CLI reads.

JSON needs nothing; YAML needs PyYAML, which the ``yaml`` extra brings
(``pip install 'alkdev-storage[yaml]'``). Parse errors are `DocumentError`
with the line and column of the problem.

>>> load('{"name": "notes"}', source="notes.json")
{'name': 'notes'}
>>> load("name: notes\\nscope: tenant\\n", source="notes.yaml")
{'name': 'notes', 'scope': 'tenant'}
>>> load("name: [unclosed\\n", source="bad.yaml")
Traceback (most recent call last):
...
alkdev_storage.errors.DocumentError: bad.yaml: not valid YAML at line 2, column 1: ...
"""

from __future__ import annotations

import json
from typing import Any

from alkdev_storage.errors import DocumentError, MissingExtraError

__all__ = ["load", "load_yaml"]

YAML_EXTRA = "pip install 'alkdev-storage[yaml]'"


def load(text: str, *, source: str, yaml: bool = True) -> Any:
    """`text` as JSON, or else (when `yaml`) as YAML. YAML is a superset of
    JSON, so a JSON document reads the same either way; JSON is tried first
    because it needs no extra package and is faster."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if not yaml:
            raise DocumentError(
                f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                source=source,
                line=exc.lineno,
                column=exc.colno,
            ) from None
    return load_yaml(text, source=source)


def load_yaml(text: str, *, source: str) -> Any:
    """`text` as YAML (safe loading: plain data only, no Python objects)."""
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        raise MissingExtraError(
            f"{source}: reading YAML needs PyYAML, which is not installed: {YAML_EXTRA}"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if mark is None:
            raise DocumentError(f"{source}: not valid YAML: {problem}", source=source) from None
        line, column = mark.line + 1, mark.column + 1
        raise DocumentError(
            f"{source}: not valid YAML at line {line}, column {column}: {problem}",
            source=source,
            line=line,
            column=column,
        ) from None
