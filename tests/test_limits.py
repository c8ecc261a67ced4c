"""Every input has a bound: documents, keys, names, emails, nesting, paths.
A refusal is one of our errors and writes nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import alkdev_storage as alk
from alkdev_storage.metagraph import GraphTypeSpec, NodeTypeSpec

NOTES = GraphTypeSpec(name="notes", scope="tenant", node_types={"note": NodeTypeSpec()})


def nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    cur = doc
    for _ in range(depth - 1):
        cur["a"] = {}
        cur = cur["a"]
    return doc


def deep_list(depth: int) -> list[Any]:
    doc: list[Any] = []
    cur = doc
    for _ in range(depth - 1):
        cur.append([])
        cur = cur[0]
    return doc


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[alk.Storage, Any, Any]]:
    store = alk.Storage.open(tmp_path / "root")
    ada = store.accounts.create(email="ada@x.io")
    acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
    t = store.tenant(acme.id)
    t.graph_types.register(NOTES)
    graph = t.graphs.create(name="g", type="notes")
    yield store, t, graph
    t.close()
    store.close()


def written(store: alk.Storage, t: Any) -> tuple[int, ...]:
    row = t.db.query_one(
        "SELECT (SELECT count(*) FROM nodes), (SELECT count(*) FROM graphs), "
        "(SELECT count(*) FROM _honker_stream)"
    )
    system = store.system.query_one(
        "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM organizations)"
    )
    assert row is not None and system is not None
    return (*row, *system)


HOSTILE: list[tuple[str, Callable[[alk.Storage, Any, Any], object], type[Exception], str]] = [
    ("100k-deep attributes", lambda s, t, g: g.add_node("d", type="note",
     attributes=nested(100_000)), alk.LimitExceededError, "nested more than 64"),
    ("65-deep attributes", lambda s, t, g: g.add_node("d", type="note", attributes=nested(65)),
     alk.LimitExceededError, "json_depth"),
    ("70-deep list", lambda s, t, g: g.add_node("d", type="note",
     attributes={"x": deep_list(70)}), alk.LimitExceededError, "nested"),
    ("int attribute key", lambda s, t, g: g.add_node("k", type="note", attributes={1: "x"}),
     alk.InvalidInputError, "every key must be a str, not int"),
    ("nested tuple key", lambda s, t, g: g.add_node("k", type="note",
     attributes={"a": {(1, 2): "x"}}), alk.InvalidInputError, "not tuple"),
    ("50 MiB document", lambda s, t, g: g.add_node("big", type="note",
     attributes={"x": "a" * (50 << 20)}), alk.LimitExceededError, "document_bytes"),
    ("10 MB node key", lambda s, t, g: g.add_node("k" * 10_000_000, type="note"),
     alk.LimitExceededError, "more than the limit of 1024"),
    ("NUL in a node key", lambda s, t, g: g.add_node("a\x00b", type="note"),
     alk.InvalidInputError, "NUL"),
    ("NUL in an edge endpoint", lambda s, t, g: g.add_edge("a\x00", "b", type="x"),
     alk.InvalidInputError, "NUL"),
    ("NUL in an email", lambda s, t, g: s.accounts.create(email="a\x00b@x.io"),
     alk.InvalidInputError, "NUL"),
    ("NUL in an organization name", lambda s, t, g: s.organizations.create(
        name="A\x00", slug="zz", owner_id=s.accounts.list()[0].id), alk.InvalidInputError, "NUL"),
    ("a 300-character email", lambda s, t, g: s.accounts.create(email="a" * 300 + "@x.io"),
     alk.LimitExceededError, "254"),
    ("a 10 MB graph name", lambda s, t, g: t.graphs.create(name="n" * 10_000_000, type="notes"),
     alk.LimitExceededError, "256"),
    ("100k-deep metadata", lambda s, t, g: t.graphs.create(name="m", type="notes",
     metadata=nested(100_000)), alk.LimitExceededError, "metadata"),
    ("a NUL key in an import", lambda s, t, g: g.import_graph(
        {"nodes": [{"key": "ok", "type": "note"}, {"key": "\x00", "type": "note"}]}),
     alk.InvalidInputError, r"nodes\[1\]\.key"),
    ("a deep document in an import", lambda s, t, g: g.import_graph(
        {"nodes": [{"key": "ok", "type": "note", "attributes": nested(1000)}]}),
     alk.LimitExceededError, r"nodes\[0\]"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "attempt", "error", "match"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
def test_hostile_input_is_refused_and_writes_nothing(
    world: tuple[alk.Storage, Any, Any],
    label: str,
    attempt: Callable[[alk.Storage, Any, Any], object],
    error: type[Exception],
    match: str,
) -> None:
    store, t, graph = world
    before = written(store, t)
    with pytest.raises(error, match=match):
        attempt(store, t, graph)
    assert issubclass(error, alk.Error) and issubclass(error, ValueError)
    assert written(store, t) == before


@pytest.mark.parametrize(
    "path", ["$$", "$.", "$.a..b", "$[", "$.a[x]", "$.a\x00", "$" + ".a" * 600]
)
def test_a_malformed_where_path_is_refused_even_with_no_rows(
    world: tuple[alk.Storage, Any, Any], path: str
) -> None:
    _, _, graph = world
    assert graph.nodes() == []  # nothing for SQLite to evaluate the path on
    with pytest.raises(alk.InvalidInputError, match="bad JSON path"):
        graph.nodes(where={path: 1})


@pytest.mark.parametrize("path", ["$", "$.a", '$."any key"', "$.tags[0]", "$.tags[#-1]", "$.a-b"])
def test_well_formed_where_paths_run(world: tuple[alk.Storage, Any, Any], path: str) -> None:
    _, _, graph = world
    graph.add_node("n", type="note", attributes={"a": 1, "tags": [1], "any key": 1, "a-b": 1})
    graph.nodes(where={path: 1})


def test_limits_are_configurable_per_storage_root(tmp_path: Path) -> None:
    limits = alk.Limits(document_bytes=64, key_length=8, json_depth=3)
    with alk.Storage.open(tmp_path, limits=limits) as store:
        assert store.limits is limits
        ada = store.accounts.create(email="ada@x.io")
        acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
        with store.tenant(acme.id) as t:
            t.graph_types.register(NOTES)
            g = t.graphs.create(name="g", type="notes")
            g.add_node("12345678", type="note", attributes={"a": {"b": {}}})
            with pytest.raises(alk.LimitExceededError, match="limit of 8"):
                g.add_node("123456789", type="note")
            with pytest.raises(alk.LimitExceededError, match="3 levels"):
                g.add_node("deep", type="note", attributes={"a": {"b": {"c": {}}}})
            with pytest.raises(alk.LimitExceededError, match="64 bytes"):
                g.add_node("long", type="note", attributes={"a": "x" * 64})


def test_a_document_only_python_encodes_is_held_to_the_same_limits() -> None:
    from collections import OrderedDict

    limits = alk.Limits(json_depth=3, document_bytes=40)
    doc = OrderedDict(a=1)  # a dict subclass: the Python encoder's path
    assert limits.document("attributes", {"o": doc}) == '{"o": {"a": 1}}'
    with pytest.raises(alk.LimitExceededError, match="3 levels"):
        limits.document("attributes", {"o": OrderedDict(a={"b": {}})})
    with pytest.raises(alk.InvalidInputError, match="not int"):
        limits.document("attributes", {"o": OrderedDict({1: 2})})
    with pytest.raises(alk.LimitExceededError, match="40 bytes"):
        limits.document("attributes", {"o": OrderedDict(a="x" * 40)})


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "8"])
def test_limits_must_be_positive_ints(bad: object) -> None:
    with pytest.raises(alk.InvalidInputError, match="json_depth"):
        alk.Limits(json_depth=bad)  # type: ignore[arg-type]


# ------------------------------------------------ schemas a member registers


def laughs(depth: int) -> dict[str, Any]:
    """anyOf of two $refs to the next level, `depth` levels: 2^depth
    subschemas checked at one place of a document, from 2·depth nodes."""
    defs: dict[str, Any] = {
        f"l{i}": {"anyOf": [{"$ref": f"#/$defs/l{i + 1}"}, {"$ref": f"#/$defs/l{i + 1}"}]}
        for i in range(depth)
    }
    defs[f"l{depth}"] = {"type": "string"}
    return {"$defs": defs, "$ref": "#/$defs/l0"}


def user_type(schema: Any, name: str = "laughs") -> GraphTypeSpec:
    return GraphTypeSpec(name=name, scope="user", node_types={"n": NodeTypeSpec(schema=schema)})


@pytest.fixture
def member(world: tuple[alk.Storage, Any, Any]) -> Iterator[Any]:
    store, t, _ = world
    bob = store.accounts.create(email="bob@x.io")
    store.organizations.add_member(t.org_id, bob.id)
    with store.as_account(bob.id).tenant(t.org_id) as handle:
        yield handle


def test_a_billion_laughs_schema_is_refused_at_once_while_other_threads_run(member: Any) -> None:
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        started, before = time.monotonic(), ticks
        with pytest.raises(alk.SchemaTooCostlyError, match="more than 10000 subschemas"):
            member.graph_types.register(user_type(laughs(40)))
        took = time.monotonic() - started
        assert took < 1.0
        assert ticks > before  # the other thread ran meanwhile
    finally:
        stop.set()
        counter.join()
    assert [t.name for t in member.graph_types.list()] == [
        "acl",
        "notes",
        "secrets",
    ]  # nothing registered


def test_schemas_within_the_budget_register_and_validate_fast(member: Any) -> None:
    member.graph_types.register(user_type(laughs(10)))  # 4,094 subschemas: allowed
    tree = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "kids": {"type": "array", "items": {"$ref": "#"}},
        },
    }
    member.graph_types.register(user_type(tree, "tree"))  # recursion per document level
    g = member.graphs.create(name="t", type="tree")
    doc: dict[str, Any] = {"name": "root", "kids": []}
    cur = doc
    for i in range(30):
        child: dict[str, Any] = {"name": f"k{i}", "kids": []}
        cur["kids"].append(child)
        cur = child
    started = time.monotonic()
    g.add_node("root", type="n", attributes=doc)
    with pytest.raises(alk.ValidationError):
        g.add_node("bad", type="n", attributes={"kids": [{"name": 1}]})
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("schema", "match"),
    [
        ({"$ref": "#"}, "endless cycle"),
        ({"anyOf": [{"type": "string"}, {"$ref": "#"}]}, "endless cycle"),
        ({"$ref": "https://example.com/s.json"}, "cannot be analysed"),
        ({"$ref": "#/$defs/missing"}, "points at nothing"),
        ({"enum": ["x" * 1024] * 300}, "schema_bytes"),
    ],
)
def test_schemas_whose_cost_cannot_be_bounded_are_refused(
    member: Any, schema: Any, match: str
) -> None:
    # SchemaTooCostlyError (an InvalidSchemaError), or LimitExceededError
    with pytest.raises((alk.InvalidSchemaError, alk.LimitExceededError), match=match):
        member.graph_types.register(user_type(schema))
    assert [t.name for t in member.graph_types.list()] == ["acl", "notes", "secrets"]
