"""Every input has a bound: documents, keys, names, emails, nesting, paths.
A refusal is one of our errors and writes nothing."""

from __future__ import annotations

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
