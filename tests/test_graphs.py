"""Graphs, nodes and edges (metagraph/graphs.py): every rule of SPEC §5 with
its error and in its order, status transitions, cascades, queries,
export/import round trips, bulk import, and the change events."""

from __future__ import annotations

import doctest
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alkdev_storage as alk
from alkdev_storage import migrations, schema_tenant
from alkdev_storage.errors import (
    AlreadyExistsError,
    ArchivedGraphError,
    EdgeDirectionError,
    EndpointTypeError,
    GraphRuleError,
    MissingEndpointError,
    MultiEdgeError,
    NotFoundError,
    SelfLoopError,
    StatusTransitionError,
    UnknownTypeError,
    ValidationError,
)
from alkdev_storage.metagraph import EdgeTypeSpec, GraphConfig, GraphTypeSpec, NodeTypeSpec
from alkdev_storage.metagraph.graphs import Graph, Graphs
from alkdev_storage.metagraph.types import SYSTEM, Actor, GraphTypes
from conftest import attribute_docs

pytestmark = pytest.mark.timeout(120)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "metagraph.md"

TASK_SCHEMA = {
    "type": "object",
    "required": ["title"],
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "priority": {"type": "integer", "minimum": 0},
        "done": {"type": "boolean"},
        "owner": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}},
        },
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}

TASKS = GraphTypeSpec(
    name="tasks",
    config=GraphConfig(type="directed", multi=False, allow_self_loops=False),
    node_types={
        "task": NodeTypeSpec(schema=TASK_SCHEMA),
        "person": NodeTypeSpec(
            schema={"type": "object", "properties": {"name": {"type": "string"}}}
        ),
    },
    edge_types={
        "blocks": EdgeTypeSpec(
            schema={"type": "object", "properties": {"weight": {"type": "number"}}},
            allowed_source_types=["task"],
            allowed_target_types=["task"],
        ),
        "assigned": EdgeTypeSpec(allowed_source_types=["task"], allowed_target_types=["person"]),
    },
)


def simple(name: str, kind: str, *, multi: bool = False, loops: bool = False) -> GraphTypeSpec:
    return GraphTypeSpec(
        name=name,
        config=GraphConfig(type=kind, multi=multi, allow_self_loops=loops),
        node_types={"n": NodeTypeSpec(), "m": NodeTypeSpec()},
        edge_types={"link": EdgeTypeSpec(), "other": EdgeTypeSpec()},
    )


MIXED = simple("mixed", "mixed", loops=True)
UNDIRECTED = simple("undirected", "undirected")
FREE = simple("free", "mixed", multi=True, loops=True)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[alk.Database]:
    database = alk.connect(tmp_path / "t.db")
    migrations.migrate(database, schema_tenant.TENANT_SCHEMA)
    yield database
    database.close()


@pytest.fixture
def types(db: alk.Database) -> GraphTypes:
    registry = GraphTypes(db, SYSTEM, system_names=lambda: set(), audit=lambda *a: None)
    for spec in (TASKS, MIXED, UNDIRECTED, FREE):
        registry.register(spec)
    return registry


@pytest.fixture
def graphs(db: alk.Database, types: GraphTypes) -> Graphs:
    return Graphs(db, types, SYSTEM, org_id="org1")


@pytest.fixture
def g(graphs: Graphs) -> Graph:
    return graphs.create(type="tasks", name="plan")


def events(db: alk.Database, *, since: int = 0) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT offset, topic, payload FROM _honker_stream WHERE offset > ? ORDER BY offset",
        (since,),
    )
    return [{**json.loads(payload), "offset": offset} for offset, topic, payload in rows]


def head(db: alk.Database) -> int:
    row = db.query_one("SELECT coalesce(max(offset), 0) FROM _honker_stream")
    assert row is not None
    return int(row[0])


def counts(db: alk.Database) -> tuple[int, int, int, int]:
    """(graphs, nodes, edges, events): what a refused write must not change."""
    row = db.query_one(
        "SELECT (SELECT count(*) FROM graphs), (SELECT count(*) FROM nodes), "
        "(SELECT count(*) FROM edges), (SELECT count(*) FROM _honker_stream)"
    )
    assert row is not None
    return (int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def task(title: str = "t", **more: Any) -> dict[str, Any]:
    return {"title": title, **more}


def chain(g: Graph, n: int) -> None:
    """Tasks t0 .. t{n-1} with t_i blocks t_{i+1}."""
    for i in range(n):
        g.add_node(f"t{i}", type="task", attributes=task(f"task {i}"))
    for i in range(n - 1):
        g.add_edge(f"t{i}", f"t{i + 1}", type="blocks", key=f"e{i}")


# ------------------------------------------------------------------ graphs


def test_create_get_list(graphs: Graphs) -> None:
    a = graphs.create(
        type="tasks",
        name="A",
        owner_id="ada",
        project_id="p1",
        description="first",
        metadata={"color": "red"},
    )
    b = graphs.create(type="mixed", name="B", owner_id="ada", status="active")
    c = graphs.create(type="tasks", name="C", project_id="p1")
    assert (a.name, a.type_name, a.status, a.owner_id, a.project_id) == (
        "A",
        "tasks",
        "draft",
        "ada",
        "p1",
    )
    assert a.description == "first" and a.metadata == {"color": "red"}
    assert a.created_at == a.updated_at > 0
    assert graphs.get(a.id) == a
    ids = [x.id for x in graphs.list()]
    assert ids == [a.id, b.id, c.id]
    assert [x.id for x in graphs.list(owner_id="ada")] == [a.id, b.id]
    assert [x.id for x in graphs.list(project_id="p1")] == [a.id, c.id]
    assert [x.id for x in graphs.list(owner_id="ada", project_id="p1")] == [a.id]
    assert [x.id for x in graphs.list(status="active")] == [b.id]
    assert [x.id for x in graphs.list(type="tasks")] == [a.id, c.id]
    assert graphs.list(type="no-such-type") == []
    with pytest.raises(NotFoundError, match="no graph"):
        graphs.get("nope")


def test_create_refuses_unknown_types_and_bad_input(db: alk.Database, graphs: Graphs) -> None:
    before = counts(db)
    with pytest.raises(UnknownTypeError, match="nope"):
        graphs.create(type="nope", name="x")
    bad: list[dict[str, Any]] = [
        {"type": "tasks", "name": ""},
        {"type": "tasks", "name": "   "},
        {"type": "tasks", "name": 3},
        {"type": 3, "name": "x"},
        {"type": "tasks", "name": "x", "status": "live"},
        {"type": "tasks", "name": "x", "metadata": [1]},
        {"type": "tasks", "name": "x", "owner_id": 5},
        {"type": "tasks", "name": "x", "description": None},
        {"type": "tasks", "name": "x", "tx": "not a tx"},
    ]
    for kwargs in bad:
        with pytest.raises((TypeError, ValueError)):
            graphs.create(**kwargs)
    assert counts(db) == before


def test_user_types_are_their_owners_alone(db: alk.Database) -> None:
    owner = GraphTypes(db, Actor("ada", "member"), system_names=set, audit=lambda *a: None)
    owner.register(GraphTypeSpec(name="mine", scope="user", node_types={"n": NodeTypeSpec()}))
    audits: list[tuple[str, str]] = []
    other = GraphTypes(
        db, Actor("bob", "member"), system_names=set, audit=lambda a, m, d: audits.append((a, m))
    )
    Graphs(db, owner, Actor("ada", "member"), org_id="o").create(type="mine", name="ok")
    with pytest.raises(alk.errors.NotTypeOwnerError):
        Graphs(db, other, Actor("bob", "member"), org_id="o").create(type="mine", name="no")
    assert [a for a, _ in audits] == ["scope.violation"]
    assert counts(db)[0] == 1


def test_untyped_graph_is_read_only(db: alk.Database, graphs: Graphs, types: GraphTypes) -> None:
    g = graphs.create(type="mixed", name="m")
    g.add_node("a", type="n")
    g.add_node("b", type="n")
    g.add_edge("a", "b", type="link", key="ab")
    types.delete("mixed")
    fresh = graphs.get(g.id)
    assert fresh.type_name is None
    before = counts(db)
    for write in (
        lambda: g.add_node("c", type="n"),
        lambda: g.add_edge("b", "a", type="link"),
        lambda: g.update_node("a", attributes={}),
        lambda: g.update_edge("ab", attributes={}),
        lambda: g.remove_node("a"),
        lambda: g.remove_edge("ab"),
        lambda: g.import_graph({"nodes": [{"key": "z", "type": "n"}]}),
    ):
        with pytest.raises(ArchivedGraphError, match="lost its type"):
            write()
    assert counts(db) == before
    # Reads and export still work; the export says what the graph held.
    assert [n.key for n in g.nodes()] == ["a", "b"]
    doc = g.export()
    assert doc["attributes"]["type"] is None and len(doc["edges"]) == 1
    # The graph itself can still be archived and deleted.
    graphs.set_status(g.id, "archived")
    graphs.delete(g.id)
    assert counts(db)[:3] == (0, 0, 0)


def test_untyped_graph_by_creation(graphs: Graphs) -> None:
    g = graphs.create(type=None, name="container")
    assert g.type_name is None
    with pytest.raises(ArchivedGraphError):
        g.add_node("a", type="n")


# ---------------------------------------------------------------- the rules


def test_unknown_node_and_edge_types(db: alk.Database, g: Graph) -> None:
    g.add_node("a", type="task", attributes=task())
    before = counts(db)
    with pytest.raises(UnknownTypeError, match="'robot'"):
        g.add_node("b", type="robot")
    with pytest.raises(UnknownTypeError, match="'likes'"):
        g.add_edge("a", "a", type="likes")
    assert counts(db) == before


def test_schema_violations_list_every_pointer(db: alk.Database, g: Graph) -> None:
    before = counts(db)
    with pytest.raises(ValidationError) as caught:
        g.add_node(
            "a",
            type="task",
            attributes={"title": "", "priority": -1, "done": "yes", "owner": {}, "tags": ["x", 2]},
        )
    pointers = sorted(path for path, _ in caught.value.violations)
    assert pointers == ["/done", "/owner", "/priority", "/tags/1", "/title"]
    assert "node 'a'" in str(caught.value)
    with pytest.raises(ValidationError) as missing:
        g.add_node("a", type="task", attributes={})
    assert [path for path, _ in missing.value.violations] == [""]
    g.add_node("x", type="task", attributes=task())
    g.add_node("y", type="task", attributes=task())
    with pytest.raises(ValidationError) as edge_error:
        g.add_edge("x", "y", type="blocks", attributes={"weight": "heavy"})
    assert [path for path, _ in edge_error.value.violations] == ["/weight"]
    assert counts(db) == (before[0], before[1] + 2, 0, before[3] + 2)


def test_missing_endpoints(db: alk.Database, g: Graph) -> None:
    g.add_node("a", type="task", attributes=task())
    before = counts(db)
    with pytest.raises(MissingEndpointError, match="source node 'ghost'"):
        g.add_edge("ghost", "a", type="blocks")
    with pytest.raises(MissingEndpointError, match="target node 'ghost'"):
        g.add_edge("a", "ghost", type="blocks")
    assert counts(db) == before


def test_endpoints_of_other_graphs_do_not_count(graphs: Graphs, g: Graph) -> None:
    other = graphs.create(type="tasks", name="other")
    other.add_node("b", type="task", attributes=task())
    g.add_node("a", type="task", attributes=task())
    with pytest.raises(MissingEndpointError):
        g.add_edge("a", "b", type="blocks")


def test_endpoint_types(db: alk.Database, g: Graph) -> None:
    g.add_node("t", type="task", attributes=task())
    g.add_node("p", type="person", attributes={"name": "Ada"})
    g.add_edge("t", "p", type="assigned")
    before = counts(db)
    with pytest.raises(EndpointTypeError, match=r"'person' node .* as source"):
        g.add_edge("p", "t", type="blocks")
    with pytest.raises(EndpointTypeError, match=r"'person' node .* as target"):
        g.add_edge("t", "p", type="blocks")
    assert counts(db) == before


def test_self_loops(db: alk.Database, graphs: Graphs, g: Graph) -> None:
    g.add_node("a", type="task", attributes=task())
    before = counts(db)
    with pytest.raises(SelfLoopError):
        g.add_edge("a", "a", type="blocks")
    assert counts(db) == before
    loops = graphs.create(type="mixed", name="loops")
    loops.add_node("a", type="n")
    assert loops.add_edge("a", "a", type="link").source == "a"


def test_multi_edges_directed(db: alk.Database, g: Graph) -> None:
    g.add_node("a", type="task", attributes=task())
    g.add_node("b", type="task", attributes=task())
    g.add_edge("a", "b", type="blocks")
    before = counts(db)
    with pytest.raises(MultiEdgeError):
        g.add_edge("a", "b", type="blocks", key="again")
    with pytest.raises(MultiEdgeError):
        g.add_edge("a", "b", type="blocks")
    assert counts(db) == before
    g.add_edge("b", "a", type="blocks")  # the other direction is another pair


@pytest.mark.parametrize(
    ("first", "second", "clash"),
    [
        (("a", "b", False), ("a", "b", False), True),
        (("a", "b", False), ("b", "a", False), False),
        (("a", "b", True), ("b", "a", True), True),
        (("a", "b", True), ("a", "b", True), True),
        (("a", "b", True), ("b", "a", False), True),
        (("a", "b", True), ("a", "b", False), True),
        (("a", "b", False), ("b", "a", True), True),
        (("a", "b", False), ("a", "b", True), True),
    ],
)
def test_multi_edges_mixed(
    graphs: Graphs,
    first: tuple[str, str, bool],
    second: tuple[str, str, bool],
    clash: bool,
) -> None:
    """An undirected edge a-b conflicts with any edge between a and b;
    directed edges conflict only in the same direction."""
    for via_import in (False, True):
        g = graphs.create(type="mixed", name="m")
        g.add_node("a", type="n")
        g.add_node("b", type="n")
        g.add_edge(first[0], first[1], type="link", undirected=first[2])
        if via_import:

            def add(g: Graph = g) -> object:
                return g.import_graph(
                    {
                        "edges": [
                            {
                                "type": "other",
                                "source": second[0],
                                "target": second[1],
                                "undirected": second[2],
                            }
                        ]
                    }
                )
        else:

            def add(g: Graph = g) -> object:
                return g.add_edge(second[0], second[1], type="other", undirected=second[2])

        if clash:
            with pytest.raises(MultiEdgeError):
                add()
            assert len(g.edges()) == 1
        else:
            add()
            assert len(g.edges()) == 2


def test_multi_edges_within_one_import(graphs: Graphs) -> None:
    g = graphs.create(type="undirected", name="u")
    doc = {
        "nodes": [{"key": "a", "type": "n"}, {"key": "b", "type": "n"}],
        "edges": [
            {"type": "link", "source": "a", "target": "b"},
            {"type": "link", "source": "b", "target": "a"},
        ],
    }
    with pytest.raises(MultiEdgeError, match=r"edges\[1\]"):
        g.import_graph(doc)
    assert g.nodes() == []


def test_direction_rules(db: alk.Database, graphs: Graphs, g: Graph) -> None:
    g.add_node("a", type="task", attributes=task())
    g.add_node("b", type="task", attributes=task())
    before = counts(db)
    with pytest.raises(EdgeDirectionError):
        g.add_edge("a", "b", type="blocks", undirected=True)
    assert counts(db) == before
    assert g.add_edge("a", "b", type="blocks", undirected=False).undirected is False

    u = graphs.create(type="undirected", name="u")
    for key in "abc":
        u.add_node(key, type="n")
    assert u.add_edge("a", "b", type="link").undirected is True
    assert u.add_edge("b", "c", type="link", undirected=False).undirected is True
    assert [e.undirected for e in u.edges()] == [True, True]

    m = graphs.create(type="mixed", name="m")
    for key in "abc":
        m.add_node(key, type="n")
    assert m.add_edge("a", "b", type="link").undirected is False
    assert m.add_edge("b", "c", type="link", undirected=True).undirected is True


def test_archived_graphs_are_read_only(db: alk.Database, graphs: Graphs, g: Graph) -> None:
    chain(g, 2)
    graphs.set_status(g.id, "active")
    graphs.set_status(g.id, "archived")
    before = counts(db)
    for write in (
        lambda: g.add_node("x", type="task", attributes=task()),
        lambda: g.add_edge("t1", "t0", type="blocks"),
        lambda: g.update_node("t0", attributes=task("new")),
        lambda: g.update_edge("e0", attributes={"weight": 2}),
        lambda: g.remove_node("t0"),
        lambda: g.remove_edge("e0"),
        lambda: g.import_graph({"nodes": [{"key": "z", "type": "task", "attributes": task()}]}),
    ):
        with pytest.raises(ArchivedGraphError, match="archived"):
            write()
    assert counts(db) == before
    graphs.set_status(g.id, "active")
    g.add_node("x", type="task", attributes=task())


@pytest.mark.parametrize(
    ("broken", "error"),
    [
        # Several rules broken at once: the first in SPEC §5's order wins.
        ({"type": "nope", "attributes": {"weight": "x"}, "target": "ghost"}, UnknownTypeError),
        ({"attributes": {"weight": "x"}, "target": "ghost"}, ValidationError),
        ({"target": "ghost", "source": "p"}, MissingEndpointError),
        ({"source": "p", "target": "p"}, EndpointTypeError),
        ({"target": "a"}, SelfLoopError),
        ({"target": "b"}, MultiEdgeError),
        ({"target": "c", "undirected": True}, EdgeDirectionError),
        ({"target": "c"}, ArchivedGraphError),
    ],
)
def test_rules_apply_in_order(
    graphs: Graphs, g: Graph, broken: dict[str, Any], error: type[GraphRuleError]
) -> None:
    for key in "abc":
        g.add_node(key, type="task", attributes=task())
    g.add_node("p", type="person")
    g.add_edge("a", "b", type="blocks")
    graphs.set_status(g.id, "archived")
    args: dict[str, Any] = {"source": "a", "type": "blocks", **broken}
    with pytest.raises(error):
        g.add_edge(args.pop("source"), args.pop("target"), **args)


def test_node_rules_apply_in_order(graphs: Graphs, g: Graph) -> None:
    graphs.set_status(g.id, "archived")
    with pytest.raises(UnknownTypeError):
        g.add_node("a", type="robot", attributes={"title": 1})
    with pytest.raises(ValidationError):
        g.add_node("a", type="task", attributes={"title": 1})
    with pytest.raises(ArchivedGraphError):
        g.add_node("a", type="task", attributes=task())


def test_duplicate_keys(db: alk.Database, g: Graph) -> None:
    g.add_node("a", type="task", attributes=task())
    g.add_node("b", type="task", attributes=task())
    g.add_edge("a", "b", type="blocks", key="k")
    g.add_node("c", type="task", attributes=task())
    before = counts(db)
    with pytest.raises(AlreadyExistsError, match="node 'a'"):
        g.add_node("a", type="task", attributes=task())
    with pytest.raises(AlreadyExistsError, match="edge 'k'"):
        g.add_edge("b", "c", type="blocks", key="k")
    assert counts(db) == before
    # Anonymous edges never collide on their (absent) key.
    g.add_edge("b", "c", type="blocks")
    g.add_edge("c", "a", type="blocks")


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.add_node("", type="task"),
        lambda g: g.add_node(1, type="task"),
        lambda g: g.add_node("a", type=None),
        lambda g: g.add_node("a", type="task", attributes=[("title", "x")]),
        lambda g: g.add_node("a", type="task", attributes={"title": float("nan")}),
        lambda g: g.add_node("a", type="task", attributes={"title": object()}),
        lambda g: g.add_node("a", type="task", attributes=task(), tx=object()),
        lambda g: g.add_edge("a", 2, type="blocks"),
        lambda g: g.add_edge("a", "b", type="blocks", key=""),
        lambda g: g.add_edge("a", "b", type="blocks", undirected=1),
        lambda g: g.update_node("a", attributes=None),
        lambda g: g.update_edge("e", attributes="{}"),
        lambda g: g.remove_node(None),
        lambda g: g.nodes(where={"status": "x"}),
        lambda g: g.nodes(where={"$.a": [1]}),
        lambda g: g.nodes(where={"$..": 1}),
        lambda g: g.nodes(where={"$.a": float("inf")}),
        lambda g: g.nodes(limit=-1),
        lambda g: g.neighbors("a", direction="sideways"),
        lambda g: g.traverse("a", depth=-1),
        lambda g: g.traverse("a", depth=True),
        lambda g: g.import_graph([]),
        lambda g: g.import_graph({"nodes": [{"key": "a"}]}),
        lambda g: g.import_graph({"nodes": [{"key": "a", "type": "task", "colour": 1}]}),
        lambda g: g.import_graph({"vertices": []}),
        lambda g: g.import_graph({"edges": "ab"}),
    ],
)
def test_bad_arguments_raise_before_any_write(db: alk.Database, g: Graph, call: Any) -> None:
    g.add_node("a", type="task", attributes=task())
    before = counts(db)
    with pytest.raises((TypeError, ValueError)) as caught:
        call(g)
    assert not isinstance(caught.value, GraphRuleError)
    assert counts(db) == before


def test_updates(db: alk.Database, g: Graph) -> None:
    chain(g, 2)
    node = g.update_node("t0", attributes=task("renamed", done=True))
    assert node.attributes == {"title": "renamed", "done": True}
    assert g.node("t0") == node
    edge = g.update_edge("e0", attributes={"weight": 0.5})
    assert (edge.source, edge.target, edge.attributes) == ("t0", "t1", {"weight": 0.5})
    assert g.edge("e0") == edge
    before = counts(db)
    with pytest.raises(ValidationError):
        g.update_node("t0", attributes={"title": 3})
    with pytest.raises(ValidationError):
        g.update_edge("e0", attributes={"weight": "x"})
    with pytest.raises(NotFoundError):
        g.update_node("ghost", attributes=task())
    with pytest.raises(NotFoundError):
        g.update_edge("ghost", attributes={})
    assert counts(db) == before
    assert g.node("t0").attributes["title"] == "renamed"


def test_updating_a_node_whose_type_was_dropped(graphs: Graphs, types: GraphTypes) -> None:
    spec = simple("evolving", "directed")
    types.register(spec)
    g = graphs.create(type="evolving", name="e")
    g.add_node("a", type="m")
    newer = GraphTypeSpec(
        name="evolving",
        version=2,
        config=spec.config,
        node_types={"n": NodeTypeSpec()},
        edge_types=spec.edge_types,
    )
    types.register(newer)
    with pytest.raises(UnknownTypeError, match="'m'"):
        g.update_node("a", attributes={"x": 1})
    with pytest.raises(UnknownTypeError):
        g.add_node("b", type="m")
    g.add_node("b", type="n")


def test_a_new_schema_version_applies_to_the_next_write(graphs: Graphs, types: GraphTypes) -> None:
    """The handle re-reads its type: no write is checked against a stale schema."""
    strict = GraphTypeSpec(
        name="versions",
        node_types={"n": NodeTypeSpec(schema={"type": "object", "required": ["a"]})},
    )
    types.register(strict)
    g = graphs.create(type="versions", name="v")
    with pytest.raises(ValidationError):
        g.add_node("x", type="n", attributes={})
    types.register(
        GraphTypeSpec(name="versions", version=2, node_types={"n": NodeTypeSpec(schema={})})
    )
    g.add_node("x", type="n", attributes={})
    types.register(
        GraphTypeSpec(
            name="versions",
            version=3,
            node_types={"n": NodeTypeSpec(schema={"type": "object", "required": ["b"]})},
        )
    )
    with pytest.raises(ValidationError):
        g.add_node("y", type="n", attributes={"a": 1})


# --------------------------------------------------------- status and deletes


ALLOWED = [
    ("draft", "active"),
    ("active", "archived"),
    ("draft", "archived"),
    ("archived", "active"),
]
FORBIDDEN = [
    ("draft", "draft"),
    ("active", "draft"),
    ("active", "active"),
    ("archived", "draft"),
    ("archived", "archived"),
]


def reach(graphs: Graphs, status: str) -> Graph:
    g = graphs.create(type="tasks", name=f"to-{status}")
    if status == "active":
        g = graphs.set_status(g.id, "active")
    elif status == "archived":
        g = graphs.set_status(g.id, "archived")
    assert g.status == status
    return g


@pytest.mark.parametrize(("old", "new"), ALLOWED)
def test_allowed_status_transitions(db: alk.Database, graphs: Graphs, old: str, new: str) -> None:
    g = reach(graphs, old)
    mark = head(db)
    moved = graphs.set_status(g.id, new)
    assert moved.status == new and graphs.get(g.id).status == new
    (event,) = events(db, since=mark)
    assert (event["topic"], event["entity_id"], event["data"]["status"]) == (
        "graphs:updated",
        g.id,
        new,
    )


@pytest.mark.parametrize(("old", "new"), FORBIDDEN)
def test_forbidden_status_transitions(db: alk.Database, graphs: Graphs, old: str, new: str) -> None:
    g = reach(graphs, old)
    before = counts(db)
    with pytest.raises(StatusTransitionError, match=f"from '{old}' to '{new}'"):
        graphs.set_status(g.id, new)
    assert counts(db) == before and graphs.get(g.id).status == old


def test_set_status_and_delete_of_missing_graphs(graphs: Graphs) -> None:
    with pytest.raises(NotFoundError):
        graphs.set_status("nope", "active")
    with pytest.raises(NotFoundError):
        graphs.delete("nope")
    with pytest.raises(ValueError):
        graphs.set_status("nope", "gone")


def test_removing_a_node_removes_its_edges(db: alk.Database, graphs: Graphs) -> None:
    g = graphs.create(type="mixed", name="m")
    for key in "abcd":
        g.add_node(key, type="n")
    g.add_edge("a", "b", type="link", key="ab")
    g.add_edge("c", "a", type="link")  # anonymous, into a
    g.add_edge("a", "a", type="other", key="loop")
    g.add_edge("a", "d", type="other", key="ad", undirected=True)
    g.add_edge("b", "c", type="link", key="bc")
    mark = head(db)
    g.remove_node("a")
    assert [n.key for n in g.nodes()] == ["b", "c", "d"]
    assert [e.key for e in g.edges()] == ["bc"]
    got = [(e["topic"], e.get("key")) for e in events(db, since=mark)]
    assert got == [
        ("edges:deleted", "ab"),
        ("edges:deleted", None),
        ("edges:deleted", "loop"),
        ("edges:deleted", "ad"),
        ("nodes:deleted", "a"),
    ]
    assert all(e["data"].get("with_node") == "a" for e in events(db, since=mark)[:4])
    with pytest.raises(NotFoundError):
        g.remove_node("a")
    g.remove_edge("bc")
    assert g.edges() == []
    with pytest.raises(NotFoundError):
        g.remove_edge("bc")


def test_deleting_a_graph_cascades(db: alk.Database, graphs: Graphs) -> None:
    keep = graphs.create(type="tasks", name="keep")
    chain(keep, 3)
    g = graphs.create(type="tasks", name="doomed")
    chain(g, 5)
    mark = head(db)
    graphs.delete(g.id)
    (event,) = events(db, since=mark)
    assert (event["topic"], event["entity_id"], event["data"]) == (
        "graphs:deleted",
        g.id,
        {"nodes": 5, "edges": 4},
    )
    assert db.query("SELECT count(*) FROM nodes WHERE graph_id = ?", (g.id,)) == [(0,)]
    assert db.query("SELECT count(*) FROM edges WHERE graph_id = ?", (g.id,)) == [(0,)]
    assert len(keep.nodes()) == 3 and len(keep.edges()) == 2
    with pytest.raises(NotFoundError):
        g.add_node("x", type="task", attributes=task())


# ------------------------------------------------------------------ queries


def test_nodes_by_type_and_attributes(graphs: Graphs) -> None:
    g = graphs.create(type="free", name="q")
    rows: list[tuple[str, str, dict[str, Any]]] = [
        ("a", "n", {"status": "open", "owner": {"name": "ada"}, "n": 1, "flag": True}),
        ("b", "n", {"status": "done", "owner": {"name": "bob"}, "n": 1.0, "flag": 1}),
        ("c", "m", {"status": "open", "owner": {"name": "ada"}, "n": "1", "flag": None}),
        ("d", "m", {"status": "open", "owner": {"name": "ada", "tags": ["x"]}, "n": 2}),
        ("e", "n", {"status": ["open"]}),
    ]
    for key, type_name, attributes in rows:
        g.add_node(key, type=type_name, attributes=attributes)

    def keys(**kwargs: Any) -> list[str]:
        return [n.key for n in g.nodes(**kwargs)]

    assert keys() == ["a", "b", "c", "d", "e"]
    assert keys(type="m") == ["c", "d"]
    assert keys(where={"$.status": "open"}) == ["a", "c", "d"]  # not the array at e
    assert keys(where={"$.status": "open", "$.owner.name": "ada"}) == ["a", "c", "d"]
    assert keys(type="m", where={"$.owner.name": "ada"}) == ["c", "d"]
    assert keys(where={"$.owner.tags[0]": "x"}) == ["d"]
    assert keys(where={"$.n": 1}) == ["a", "b"]  # 1 == 1.0; the string "1" differs
    assert keys(where={"$.n": "1"}) == ["c"]
    assert keys(where={"$.flag": True}) == ["a"]  # not the number 1
    assert keys(where={"$.flag": 1}) == ["b"]  # not true
    assert keys(where={"$.flag": None}) == ["c"]  # explicit null only, not missing
    assert keys(where={"$.missing": "x"}) == []
    assert keys(where={"$.status": "open"}, limit=2) == ["a", "c"]
    assert keys(limit=0) == []


def test_edges_filters(graphs: Graphs) -> None:
    g = graphs.create(type="mixed", name="m")
    for key in "abc":
        g.add_node(key, type="n")
    g.add_edge("a", "b", type="link", key="1")
    g.add_edge("b", "c", type="other", key="2", undirected=True)
    g.add_edge("a", "c", type="other", key="3")
    assert [e.key for e in g.edges()] == ["1", "2", "3"]
    assert [e.key for e in g.edges(type="other")] == ["2", "3"]
    assert [e.key for e in g.edges(source="a")] == ["1", "3"]
    assert [e.key for e in g.edges(target="c", type="other")] == ["2", "3"]
    assert [e.key for e in g.edges(source="c")] == []  # stored as b-c
    with pytest.raises(NotFoundError):
        g.edge("4")


@pytest.fixture
def net(graphs: Graphs) -> Graph:
    """a→b, a→c (other), b→d, d→a (cycle), c-e undirected, f→a; g isolated."""
    g = graphs.create(type="mixed", name="net")
    for key in "abcdefg":
        g.add_node(key, type="n")
    g.add_edge("a", "b", type="link")
    g.add_edge("a", "c", type="other")
    g.add_edge("b", "d", type="link")
    g.add_edge("d", "a", type="link")
    g.add_edge("c", "e", type="link", undirected=True)
    g.add_edge("f", "a", type="link")
    return g


def test_neighbors(net: Graph) -> None:
    def keys(key: str, **kwargs: Any) -> list[str]:
        return [n.key for n in net.neighbors(key, **kwargs)]

    assert keys("a") == ["b", "c"]
    assert keys("a", direction="in") == ["d", "f"]
    assert keys("a", direction="both") == ["b", "c", "d", "f"]
    assert keys("a", edge_type="other") == ["c"]
    assert keys("a", direction="both", edge_type="link") == ["b", "d", "f"]
    # The undirected edge c-e counts both ways.
    assert keys("c") == ["e"]
    assert keys("e") == ["c"]
    assert keys("e", direction="in") == ["c"]
    assert keys("c", direction="in") == ["a", "e"]
    assert keys("g", direction="both") == []
    with pytest.raises(NotFoundError):
        net.neighbors("zz")


def test_self_loop_neighbors(graphs: Graphs) -> None:
    g = graphs.create(type="mixed", name="loop")
    g.add_node("a", type="n")
    g.add_edge("a", "a", type="link")
    assert [n.key for n in g.neighbors("a", direction="both")] == ["a"]
    assert g.traverse("a") == []


def test_traverse(net: Graph) -> None:
    def hops(key: str, **kwargs: Any) -> list[tuple[str, int]]:
        return [(n.key, d) for n, d in net.traverse(key, **kwargs)]

    assert hops("a", depth=0) == []
    assert hops("a", depth=1) == [("b", 1), ("c", 1)]
    assert hops("a", depth=2) == [("b", 1), ("c", 1), ("d", 2), ("e", 2)]
    # The cycle a→b→d→a does not bring a back, nor repeat anything.
    assert hops("a", depth=3) == [("b", 1), ("c", 1), ("d", 2), ("e", 2)]
    assert hops("a", depth=10) == hops("a", depth=3)
    assert hops("a", depth=3, direction="in") == [("d", 1), ("f", 1), ("b", 2)]
    assert hops("e", depth=3, direction="in") == [("c", 1), ("a", 2), ("d", 3), ("f", 3)]
    assert hops("a", depth=2, direction="both") == [
        ("b", 1),
        ("c", 1),
        ("d", 1),
        ("f", 1),
        ("e", 2),
    ]
    assert hops("a", depth=3, edge_type="link") == [("b", 1), ("d", 2)]
    assert hops("g") == []
    with pytest.raises(NotFoundError):
        net.traverse("zz")


def test_traverse_takes_the_shortest_distance(graphs: Graphs) -> None:
    g = graphs.create(type="free", name="short")
    for key in "abcde":
        g.add_node(key, type="n")
    for pair in ["ab", "bc", "cd", "ad", "de", "ea", "ee"]:
        g.add_edge(pair[0], pair[1], type="link")
    found = [(n.key, d) for n, d in g.traverse("a", depth=3)]
    assert found == [("b", 1), ("d", 1), ("c", 2), ("e", 2)]
    assert [(n.key, d) for n, d in g.traverse("a", depth=1)] == [("b", 1), ("d", 1)]


# ----------------------------------------------------------- import / export


def clone(graphs: Graphs, doc: dict[str, Any]) -> Graph:
    """A new graph from an exported document: created with the document's
    attributes, then filled by import_graph, then given its status."""
    a = doc["attributes"]
    g = graphs.create(
        type=a["type"],
        name=a["name"],
        description=a["description"],
        owner_id=a["owner_id"],
        project_id=a["project_id"],
        metadata=a["metadata"],
    )
    g.import_graph(doc)
    if a["status"] != "draft":
        if a["status"] == "active":
            graphs.set_status(g.id, "active")
        else:
            graphs.set_status(g.id, "archived")
    return g


def test_export_format(graphs: Graphs) -> None:
    g = graphs.create(type="mixed", name="m", description="d", owner_id="o", metadata={"x": 1})
    g.add_node("a", type="n", attributes={"v": [1, {"w": None}]})
    g.add_node("b", type="m")
    g.add_edge("a", "b", type="link", key="ab", attributes={"w": 1.5})
    g.add_node("c", type="n")
    g.add_edge("c", "b", type="other", undirected=True)
    assert g.export() == {
        "attributes": {
            "name": "m",
            "description": "d",
            "status": "draft",
            "type": "mixed",
            "owner_id": "o",
            "project_id": None,
            "metadata": {"x": 1},
        },
        "options": {"type": "mixed", "multi": False, "allowSelfLoops": True},
        "nodes": [
            {"key": "a", "type": "n", "attributes": {"v": [1, {"w": None}]}},
            {"key": "b", "type": "m", "attributes": {}},
            {"key": "c", "type": "n", "attributes": {}},
        ],
        "edges": [
            {
                "key": "ab",
                "type": "link",
                "source": "a",
                "target": "b",
                "attributes": {"w": 1.5},
                "undirected": False,
            },
            {
                "key": None,
                "type": "other",
                "source": "c",
                "target": "b",
                "attributes": {},
                "undirected": True,
            },
        ],
    }


def test_round_trip_keeps_anonymous_edges_in_order(graphs: Graphs) -> None:
    g = graphs.create(type="free", name="f", project_id="p")
    for key in "abc":
        g.add_node(key, type="n", attributes={"k": key})
    for i, pair in enumerate(["ab", "ab", "ba", "cc", "ab", "bc"]):
        g.add_edge(
            pair[0], pair[1], type="link", attributes={"i": i}, key=None if i % 2 else f"e{i}"
        )
    graphs.set_status(g.id, "active")
    doc = graphs.get(g.id).export()
    copy = clone(graphs, doc)
    again = copy.export()
    assert json.dumps(again) == json.dumps(doc)
    assert [e["attributes"]["i"] for e in again["edges"]] == [0, 1, 2, 3, 4, 5]


# Keys: any text but NUL, which keys refuse (tests/test_limits.py).
key_text = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), min_size=1, max_size=6
)


@st.composite
def graph_documents(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(key_text, min_size=1, max_size=10, unique=True))
    nodes = [
        {"key": k, "type": draw(st.sampled_from(["n", "m"])), "attributes": draw(attribute_docs)}
        for k in keys
    ]
    edge_keys = draw(st.lists(key_text, max_size=12, unique=True))
    edges = []
    for i in range(draw(st.integers(0, 12))):
        edges.append(
            {
                "key": edge_keys[i] if i < len(edge_keys) and draw(st.booleans()) else None,
                "type": draw(st.sampled_from(["link", "other"])),
                "source": draw(st.sampled_from(keys)),
                "target": draw(st.sampled_from(keys)),
                "attributes": draw(attribute_docs),
                "undirected": draw(st.booleans()),
            }
        )
    return {"nodes": nodes, "edges": edges}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(doc=graph_documents(), one_by_one=st.booleans())
def test_export_import_export_is_exact(
    graphs: Graphs, doc: dict[str, Any], one_by_one: bool
) -> None:
    g = graphs.create(type="free", name="gen", metadata={"n": len(doc["nodes"])})
    if one_by_one:
        for n in doc["nodes"]:
            g.add_node(n["key"], type=n["type"], attributes=n["attributes"])
        for e in doc["edges"]:
            g.add_edge(
                e["source"],
                e["target"],
                type=e["type"],
                attributes=e["attributes"],
                key=e["key"],
                undirected=e["undirected"],
            )
    else:
        assert g.import_graph(doc).edges == len(doc["edges"])
    first = g.export()
    assert first["nodes"] == doc["nodes"] and first["edges"] == doc["edges"]
    second = clone(graphs, first).export()
    assert json.dumps(second) == json.dumps(first)


def test_import_into_a_graph_with_content(db: alk.Database, g: Graph) -> None:
    chain(g, 3)
    result = g.import_graph(
        {
            "nodes": [{"key": "x", "type": "task", "attributes": task()}],
            "edges": [
                {"key": "x2", "type": "blocks", "source": "x", "target": "t2"},
                {"type": "blocks", "source": "t2", "target": "t0"},
            ],
        }
    )
    assert (result.nodes, result.edges) == (1, 2)
    before = counts(db)
    cases: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"nodes": [{"key": "t1", "type": "task", "attributes": task()}]}, AlreadyExistsError),
        (
            {"edges": [{"key": "e0", "type": "blocks", "source": "t2", "target": "t1"}]},
            AlreadyExistsError,
        ),
        ({"edges": [{"type": "blocks", "source": "t0", "target": "t1"}]}, MultiEdgeError),
        ({"edges": [{"type": "blocks", "source": "t0", "target": "nope"}]}, MissingEndpointError),
    ]
    for doc, error in cases:
        with pytest.raises(error):
            g.import_graph(doc)
    assert counts(db) == before


BULK = 100_000


def bulk_document(n: int) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "key": f"n{i}",
                "type": "task",
                "attributes": {"title": f"task {i}", "priority": i % 7},
            }
            for i in range(n)
        ],
        "edges": [
            {
                "key": None if i % 2 else f"e{i}",
                "type": "blocks",
                "source": f"n{i}",
                "target": f"n{(i + 1) % n}",
                "attributes": {"weight": i / n},
                "undirected": False,
            }
            for i in range(n)
        ],
    }


def test_bulk_import_of_100k_nodes_and_edges(db: alk.Database, graphs: Graphs) -> None:
    doc = bulk_document(BULK)
    g = graphs.create(type="tasks", name="bulk")
    mark = head(db)
    result = g.import_graph(doc)
    assert (result.nodes, result.edges) == (BULK, BULK)
    assert counts(db)[1:3] == (BULK, BULK)
    (event,) = events(db, since=mark)
    assert (event["topic"], event["entity_id"], event["graph_id"], event["data"]) == (
        "graphs:imported",
        g.id,
        g.id,
        {"nodes": BULK, "edges": BULK},
    )
    # Every stored document is valid, spot-checked through the queries.
    assert g.node("n99999").attributes == {"title": "task 99999", "priority": 99999 % 7}
    assert [n.key for n in g.neighbors("n99999")] == ["n0"]
    assert [(n.key, d) for n, d in g.traverse("n0", depth=3)] == [("n1", 1), ("n2", 2), ("n3", 3)]
    assert len(g.nodes(where={"$.priority": 3})) == len(range(3, BULK, 7))


def test_one_bad_row_rejects_a_100k_import(db: alk.Database, graphs: Graphs) -> None:
    doc = bulk_document(BULK)
    doc["edges"][-1]["attributes"] = {"weight": "heavy"}
    g = graphs.create(type="tasks", name="bulk")
    before = counts(db)
    with pytest.raises(ValidationError, match=r"edges\[99999\]") as caught:
        g.import_graph(doc)
    assert caught.value.violations[0][0] == "/weight"
    assert counts(db) == before


def spoil(doc: dict[str, Any], how: str) -> None:
    nodes, edges = doc["nodes"], doc["edges"]
    if how == "node-type":
        nodes[-1]["type"] = "robot"
    elif how == "node-schema":
        nodes[-1]["attributes"] = {"title": 7}
    elif how == "edge-type":
        edges[-1]["type"] = "likes"
    elif how == "endpoint":
        edges[-1]["target"] = "ghost"
    elif how == "endpoint-type":
        nodes.append({"key": "p", "type": "person", "attributes": {}})
        edges[-1]["target"] = "p"
    elif how == "self-loop":
        edges[-1]["target"] = edges[-1]["source"]
    elif how == "multi":
        edges.append({**edges[0], "key": None})
    elif how == "direction":
        edges[-1]["undirected"] = True
    elif how == "node-key":
        nodes.append(dict(nodes[0]))
    elif how == "edge-key":
        edges.append({**edges[0], "target": "n5"})


@pytest.mark.parametrize(
    ("how", "error"),
    [
        ("node-type", UnknownTypeError),
        ("node-schema", ValidationError),
        ("edge-type", UnknownTypeError),
        ("endpoint", MissingEndpointError),
        ("endpoint-type", EndpointTypeError),
        ("self-loop", SelfLoopError),
        ("multi", MultiEdgeError),
        ("direction", EdgeDirectionError),
        ("node-key", AlreadyExistsError),
        ("edge-key", AlreadyExistsError),
    ],
)
def test_any_bad_row_rejects_the_whole_import(
    db: alk.Database, graphs: Graphs, how: str, error: type[Exception]
) -> None:
    doc = bulk_document(2_000)
    spoil(doc, how)
    g = graphs.create(type="tasks", name="bulk")
    before = counts(db)
    with pytest.raises(error):
        g.import_graph(doc)
    assert counts(db) == before


def test_import_into_an_archived_graph(db: alk.Database, graphs: Graphs) -> None:
    g = graphs.create(type="tasks", name="bulk", status="archived")
    before = counts(db)
    with pytest.raises(ArchivedGraphError):
        g.import_graph(bulk_document(10))
    assert counts(db) == before


# ------------------------------------------------------------------- events


def test_one_event_per_mutation(db: alk.Database, graphs: Graphs) -> None:
    actor = Actor("ada", "owner")
    mine = Graphs(db, graphs.graph_types, actor, org_id="org1")
    mark = head(db)
    g = mine.create(type="tasks", name="ev")
    a = g.add_node("a", type="task", attributes=task("A"))
    g.add_node("b", type="task", attributes=task("B"))
    e = g.add_edge("a", "b", type="blocks", key="ab", attributes={"weight": 1})
    g.update_node("a", attributes=task("A2"))
    g.update_edge("ab", attributes={"weight": 2})
    g.remove_edge("ab")
    g.remove_node("b")
    mine.set_status(g.id, "active")
    mine.delete(g.id)
    got = events(db, since=mark)
    assert [x["topic"] for x in got] == [
        "graphs:created",
        "nodes:created",
        "nodes:created",
        "edges:created",
        "nodes:updated",
        "edges:updated",
        "edges:deleted",
        "nodes:deleted",
        "graphs:updated",
        "graphs:deleted",
    ]
    assert all(x["actor"] == "ada" and x["org_id"] == "org1" for x in got)
    assert all(x["graph_id"] == g.id for x in got)
    assert all(x["action"] == x["topic"].split(":")[1] for x in got)
    created = got[1]
    assert (created["entity_id"], created["key"]) == (a.id, "a")
    assert created["data"]["attributes"] == {"title": "A"}
    assert got[3]["data"]["source"] == "a" and got[3]["entity_id"] == e.id
    assert got[4]["data"]["attributes"] == {"title": "A2"}
    assert got[5]["data"]["attributes"] == {"weight": 2}
    assert got[0]["data"]["name"] == "ev" and got[0]["data"]["type"] == "tasks"


def test_writes_in_a_caller_transaction(db: alk.Database, g: Graph) -> None:
    mark = head(db)
    with db.transaction() as tx:
        g.add_node("a", type="task", attributes=task(), tx=tx)
        g.add_node("b", type="task", attributes=task(), tx=tx)
        # A refused write rolls back to its savepoint; the others stay.
        with pytest.raises(ValidationError):
            g.add_node("c", type="task", attributes={}, tx=tx)
        g.add_edge("a", "b", type="blocks", tx=tx)
        db.stream("elsewhere").publish({"x": 1}, tx=tx)
        # Not committed yet: readers see nothing.
        assert g.nodes() == []
    assert [n.key for n in g.nodes()] == ["a", "b"]
    topics = db.query("SELECT topic FROM _honker_stream WHERE offset > ? ORDER BY offset", (mark,))
    assert [t for (t,) in topics] == [
        "nodes:created",
        "nodes:created",
        "edges:created",
        "elsewhere",
    ]


def test_rollback_publishes_nothing(db: alk.Database, graphs: Graphs, g: Graph) -> None:
    chain(g, 2)
    before = counts(db)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), db.transaction() as tx:
        g.add_node("x", type="task", attributes=task(), tx=tx)
        g.add_edge("t1", "x", type="blocks", key="new", tx=tx)
        g.update_node("t0", attributes=task("changed"), tx=tx)
        g.remove_edge("e0", tx=tx)
        g.import_graph({"nodes": [{"key": "y", "type": "task", "attributes": task()}]}, tx=tx)
        graphs.set_status(g.id, "active", tx=tx)
        raise Abort
    assert counts(db) == before
    assert g.node("t0").attributes == task("task 0")
    assert graphs.get(g.id).status == "draft"


def test_a_subscriber_sees_several_topics_in_commit_order(db: alk.Database, g: Graph) -> None:
    """Replay: events of two topics committed earlier come back interleaved
    in commit order; then a later commit follows (the consumer waits for it)."""
    start = head(db)
    expected: list[tuple[str, str | None]] = []
    for i in range(10):
        g.add_node(f"n{i}", type="task", attributes=task())
        expected.append(("nodes:created", f"n{i}"))
        if i:
            g.add_edge(f"n{i - 1}", f"n{i}", type="blocks", key=f"e{i}")
            expected.append(("edges:created", f"e{i}"))
        g.update_node(f"n{i}", attributes=task("x"))  # another topic: not delivered
    with db.subscribe(["nodes:created", "edges:created"], from_offset=start) as sub:
        received: list[tuple[str, str | None]] = []
        while len(received) < len(expected):
            event = sub.next(timeout=10)
            assert event is not None
            received.append((event.topic, event.payload.get("key")))
        assert received == expected
        assert sub.next(timeout=0.05) is None
        with db.transaction() as tx:
            g.add_node("late", type="task", attributes=task(), tx=tx)
            g.add_edge("n9", "late", type="blocks", key="late", tx=tx)
        late = [sub.next(timeout=10), sub.next(timeout=10)]
        assert [(e.topic, e.payload["key"]) for e in late if e is not None] == [
            ("nodes:created", "late"),
            ("edges:created", "late"),
        ]


def test_commits_while_reading_reach_a_multi_topic_subscriber_in_order(
    db: alk.Database, g: Graph
) -> None:
    """Live: a writer commits node+edge pairs while the consumer reads."""
    n = 200
    start = head(db)
    g.add_node("root", type="task", attributes=task())

    def write() -> None:
        for i in range(n):
            with db.transaction() as tx:
                g.add_node(f"n{i}", type="task", attributes=task(), tx=tx)
                g.add_edge("root", f"n{i}", type="blocks", key=f"e{i}", tx=tx)

    writer = threading.Thread(target=write)
    offsets: list[int] = []
    with db.subscribe(["nodes:created", "edges:created"], from_offset=start) as sub:
        assert sub.next(timeout=10) is not None  # root
        writer.start()
        while len(offsets) < 2 * n:
            event = sub.next(timeout=10)
            assert event is not None
            offsets.append(event.offset)
    writer.join(30)
    assert offsets == sorted(offsets)


# -------------------------------------------------------------------- docs


def test_module_docstring_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alkdev_storage.metagraph import graphs as module

    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.skipif(not DOCS.is_file(), reason="docs not shipped with this checkout")
def test_docs_example_prints_what_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first Python block of docs/metagraph.md runs; each ``# →`` comment
    is a line it prints."""
    code = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    exec(compile(code.group(1), "docs/metagraph.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    claims = [m.group(1) for m in re.finditer(r"# → (.+)$", code.group(1), re.M)]
    assert len(claims) >= 4
    for claim in claims:
        assert claim in printed, (claim, printed)
