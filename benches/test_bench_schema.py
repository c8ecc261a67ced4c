"""JSON Schema validation: ``SchemaValidator`` against the ``jsonschema`` package.

Acceptance: inserting N validated nodes in one transaction is at least 5x
faster than what a user would otherwise write: the ``jsonschema`` package
(``Draft202012Validator`` compiled once, ``iter_errors`` per document, so it
finds every violation as ours does) with stdlib ``sqlite3`` (WAL,
``BEGIN IMMEDIATE``, ``executemany``, ``json.dumps``). Both sides validate
the same 10,000 node attribute documents against the same node-type schema,
encode them as JSON text and insert them into the same ``nodes`` table; both
check that every document is valid and that every row is there.

The second pair times validation alone (valid documents, then documents
with three violations each, where error reporting is the cost).

Run: ``pytest benches/test_bench_schema.py --benchmark-only
--benchmark-json=out.json`` then ``python benches/report.py out.json``.
Under ``--benchmark-disable`` (CI) the workloads shrink to a few hundred
documents. Rounds start from an empty table (an untimed setup clears it).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

import alkdev_storage as alk
from alkdev_storage._native import SchemaValidator, json_dumps

jsonschema = pytest.importorskip("jsonschema")

N_NODES = 10_000
N_NODES_CI = 200
N_INVALID = 1_000
N_INVALID_CI = 50
ROUNDS = 10
WARMUP = 1

GRAPH = "g-bench"
NODE_TYPE = "task"

# A realistic node type: required fields, enums, bounds, a pattern, a
# nested object through $ref, an array of strings, no stray properties.
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["title", "status", "priority", "owner"],
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "status": {"enum": ["open", "in_progress", "done", "archived"]},
        "priority": {"type": "integer", "minimum": 0, "maximum": 5},
        "estimate": {"type": "number", "exclusiveMinimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
        "owner": {"$ref": "#/$defs/person"},
    },
    "additionalProperties": False,
    "$defs": {
        "person": {
            "type": "object",
            "required": ["id", "name"],
            "properties": {
                "id": {"type": "string", "pattern": "^u-[0-9]+$"},
                "name": {"type": "string"},
                "email": {"type": "string", "format": "email"},
            },
            "additionalProperties": False,
        }
    },
}

NODES_DDL = (
    "CREATE TABLE nodes(id TEXT PRIMARY KEY, graph_id TEXT NOT NULL, key TEXT NOT NULL,"
    " type TEXT NOT NULL, attributes TEXT NOT NULL DEFAULT '{}', UNIQUE(graph_id, key))"
)
INSERT = "INSERT INTO nodes(id, graph_id, key, type, attributes) VALUES (?, ?, ?, ?, ?)"
COUNT = "SELECT count(*) FROM nodes"


def documents(n: int) -> list[dict[str, Any]]:
    return [
        {
            "title": f"Task number {i}",
            "status": ("open", "in_progress", "done", "archived")[i % 4],
            "priority": i % 6,
            "estimate": 0.5 + (i % 9) * 0.25,
            "tags": ["bench", f"team-{i % 7}"],
            "owner": {"id": f"u-{i % 100}", "name": f"User {i % 100}", "email": f"u{i}@ex.com"},
        }
        for i in range(n)
    ]


def invalid_documents(n: int) -> list[dict[str, Any]]:
    """Three violations each: a bad enum value, a bad nested pattern, a stray key."""
    return [
        {**doc, "status": "lost", "owner": {"id": f"x{i}", "name": "X"}, "stray": i}
        for i, doc in enumerate(documents(n))
    ]


def sized(benchmark: Any, full: int, small: int) -> int:
    """`full` when timing; `small` under ``--benchmark-disable`` (CI)."""
    return small if benchmark.disabled else full


def timed(benchmark: Any, target: Any, *args: Any, setup: Any = None) -> Any:
    return benchmark.pedantic(
        target, args=args, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1
    )


class InvalidNode(ValueError):
    pass


# -- validated insert: N nodes in one transaction ------------------------------


def insert_many_ours(db: alk.Database, validator: SchemaValidator, docs: list[Any]) -> int:
    for i, violations in enumerate(validator.validate_many(docs)):
        if violations:
            raise InvalidNode(i, violations)
    rows = [(f"n-{i}", GRAPH, f"k-{i}", NODE_TYPE, json_dumps(doc)) for i, doc in enumerate(docs)]
    with db.transaction() as tx:
        tx.executemany(INSERT, rows)
    return len(rows)


def insert_each_ours(db: alk.Database, validator: SchemaValidator, docs: list[Any]) -> int:
    validate = validator.validate
    rows = []
    for i, doc in enumerate(docs):
        violations = validate(doc)
        if violations:
            raise InvalidNode(i, violations)
        rows.append((f"n-{i}", GRAPH, f"k-{i}", NODE_TYPE, json_dumps(doc)))
    with db.transaction() as tx:
        tx.executemany(INSERT, rows)
    return len(rows)


def insert_stdlib(conn: sqlite3.Connection, validator: Any, docs: list[Any]) -> int:
    iter_errors = validator.iter_errors
    dumps = json.dumps
    rows = []
    for i, doc in enumerate(docs):
        violations = list(iter_errors(doc))
        if violations:
            raise InvalidNode(i, violations)
        rows.append((f"n-{i}", GRAPH, f"k-{i}", NODE_TYPE, dumps(doc)))
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(INSERT, rows)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return len(rows)


def bench_insert_ours(benchmark: Any, db: alk.Database, insert: Any) -> None:
    db.execute(NODES_DDL)
    docs = documents(sized(benchmark, N_NODES, N_NODES_CI))
    validator = SchemaValidator(SCHEMA)

    def clear() -> None:
        db.execute("DELETE FROM nodes")

    assert insert(db, validator, docs) == len(docs)
    assert db.query_one(COUNT) == (len(docs),)
    stored = db.query_one("SELECT attributes FROM nodes WHERE key = 'k-1'")
    assert stored is not None and json.loads(stored[0]) == docs[1]
    with pytest.raises(InvalidNode):
        insert(db, validator, [*docs[:3], {**docs[3], "priority": 9}])
    clear()
    assert timed(benchmark, insert, db, validator, docs, setup=clear) == len(docs)
    assert db.query_one(COUNT) == (len(docs),)


@pytest.mark.benchmark(group="schema-insert-10k")
def test_insert_validated_ours(benchmark: Any, ours: alk.Database) -> None:
    bench_insert_ours(benchmark, ours, insert_many_ours)


@pytest.mark.benchmark(group="schema-insert-10k")
def test_insert_validated_each_ours(benchmark: Any, ours: alk.Database) -> None:
    bench_insert_ours(benchmark, ours, insert_each_ours)


@pytest.mark.benchmark(group="schema-insert-10k")
def test_insert_validated_stdlib(benchmark: Any, stdlib: sqlite3.Connection) -> None:
    stdlib.execute(NODES_DDL)
    docs = documents(sized(benchmark, N_NODES, N_NODES_CI))
    validator = jsonschema.Draft202012Validator(SCHEMA)

    def clear() -> None:
        stdlib.execute("DELETE FROM nodes")

    assert insert_stdlib(stdlib, validator, docs) == len(docs)
    assert stdlib.execute(COUNT).fetchone() == (len(docs),)
    stored = stdlib.execute("SELECT attributes FROM nodes WHERE key = 'k-1'").fetchone()
    assert json.loads(stored[0]) == docs[1]
    with pytest.raises(InvalidNode):
        insert_stdlib(stdlib, validator, [*docs[:3], {**docs[3], "priority": 9}])
    clear()
    assert timed(benchmark, insert_stdlib, stdlib, validator, docs, setup=clear) == len(docs)
    assert stdlib.execute(COUNT).fetchone() == (len(docs),)


# -- validation alone -----------------------------------------------------------


def validate_many_ours(validator: SchemaValidator, docs: list[Any]) -> int:
    return sum(len(v) for v in validator.validate_many(docs))


def validate_each_ours(validator: SchemaValidator, docs: list[Any]) -> int:
    validate = validator.validate
    return sum(len(validate(doc)) for doc in docs)


def validate_each_stdlib(validator: Any, docs: list[Any]) -> int:
    iter_errors = validator.iter_errors
    return sum(len(list(iter_errors(doc))) for doc in docs)


def bench_validate(
    benchmark: Any, validate: Any, validator: Any, docs: list[Any], violations: int
) -> None:
    """Time `validate`, which returns how many violations it found in `docs`."""
    assert validate(validator, docs) == violations
    assert timed(benchmark, validate, validator, docs) == violations


def ours_validator() -> SchemaValidator:
    return SchemaValidator(SCHEMA)


def stdlib_validator() -> Any:
    return jsonschema.Draft202012Validator(SCHEMA)


@pytest.mark.benchmark(group="schema-validate-10k")
def test_validate_ours(benchmark: Any) -> None:
    docs = documents(sized(benchmark, N_NODES, N_NODES_CI))
    bench_validate(benchmark, validate_many_ours, ours_validator(), docs, 0)


@pytest.mark.benchmark(group="schema-validate-10k")
def test_validate_each_ours(benchmark: Any) -> None:
    docs = documents(sized(benchmark, N_NODES, N_NODES_CI))
    bench_validate(benchmark, validate_each_ours, ours_validator(), docs, 0)


@pytest.mark.benchmark(group="schema-validate-10k")
def test_validate_stdlib(benchmark: Any) -> None:
    docs = documents(sized(benchmark, N_NODES, N_NODES_CI))
    bench_validate(benchmark, validate_each_stdlib, stdlib_validator(), docs, 0)


@pytest.mark.benchmark(group="schema-violations-1k")
def test_violations_ours(benchmark: Any) -> None:
    docs = invalid_documents(sized(benchmark, N_INVALID, N_INVALID_CI))
    bench_validate(benchmark, validate_many_ours, ours_validator(), docs, 3 * len(docs))


@pytest.mark.benchmark(group="schema-violations-1k")
def test_violations_stdlib(benchmark: Any) -> None:
    docs = invalid_documents(sized(benchmark, N_INVALID, N_INVALID_CI))
    bench_validate(benchmark, validate_each_stdlib, stdlib_validator(), docs, 3 * len(docs))
