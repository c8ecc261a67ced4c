"""A random walk of node and edge writes, valid and invalid, checked against
a model after every step: the stored graph equals the model, no edge
dangles, every stored attribute document is valid for its type, and the
event stream holds exactly the committed mutations, in order."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import alkdev_storage as alk
from alkdev_storage import migrations, schema_tenant
from alkdev_storage._native import SchemaValidator
from alkdev_storage.errors import (
    AlreadyExistsError,
    EndpointTypeError,
    MissingEndpointError,
    MultiEdgeError,
    NotFoundError,
    SelfLoopError,
    UnknownTypeError,
    ValidationError,
)
from alkdev_storage.metagraph import EdgeTypeSpec, GraphConfig, GraphTypeSpec, NodeTypeSpec
from alkdev_storage.metagraph.graphs import Graphs
from alkdev_storage.metagraph.types import SYSTEM, GraphTypes

pytestmark = pytest.mark.timeout(120)

SCHEMAS: dict[str, dict[str, Any]] = {
    "person": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    },
    "team": {"type": "object", "properties": {"title": {"type": "string", "maxLength": 5}}},
    "member_of": {
        "type": "object",
        "properties": {"role": {"enum": ["lead", "dev"]}},
    },
    "knows": {"type": "object", "properties": {"since": {"type": "integer"}}},
    "link": {},
}
ENDS = {
    "member_of": (("person",), ("team",)),
    "knows": (("person",), ("person",)),
    "link": ((), ()),
}

SPEC = GraphTypeSpec(
    name="org",
    config=GraphConfig(type="mixed", multi=False, allow_self_loops=False),
    node_types={n: NodeTypeSpec(schema=SCHEMAS[n]) for n in ("person", "team")},
    edge_types={
        e: EdgeTypeSpec(
            schema=SCHEMAS[e], allowed_source_types=ENDS[e][0], allowed_target_types=ENDS[e][1]
        )
        for e in ENDS
    },
)

NODE_KEYS = st.sampled_from(["a", "b", "c", "d", "e"])
EDGE_KEYS = st.sampled_from([None, "x", "y", "z"])
# Mostly known types, sometimes one the graph type lacks.
NODE_TYPES = st.sampled_from(["person", "person", "team", "team", "robot"])
EDGE_TYPES = st.sampled_from(["member_of", "knows", "link", "link", "likes"])

# Any attribute document: often invalid for the types above.
values = st.one_of(
    st.text(max_size=7), st.integers(-3, 50), st.booleans(), st.none(), st.sampled_from(["lead"])
)
attribute_docs = st.dictionaries(
    st.sampled_from(["name", "age", "title", "role", "since", "other"]), values, max_size=3
)
# Documents valid for each type.
VALID_DOCS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "person": st.fixed_dictionaries(
        {"name": st.text(max_size=6)}, optional={"age": st.integers(0, 120)}
    ),
    "team": st.fixed_dictionaries({}, optional={"title": st.text(max_size=5)}),
    "member_of": st.fixed_dictionaries({}, optional={"role": st.sampled_from(["lead", "dev"])}),
    "knows": st.fixed_dictionaries({}, optional={"since": st.integers(1900, 2100)}),
    "link": attribute_docs,
}


def docs_for(type_name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Three in four valid for `type_name`, the rest anything."""
    valid_docs = VALID_DOCS.get(type_name, attribute_docs)
    return st.one_of(valid_docs, valid_docs, valid_docs, attribute_docs)


def valid(type_name: str, doc: dict[str, Any]) -> bool:
    """The model's own reading of SCHEMAS (no JSON Schema library)."""
    if type_name == "person":
        name_ok = isinstance(doc.get("name"), str)
        age = doc.get("age", 0)
        age_ok = type(age) is int and age >= 0
        return name_ok and age_ok
    if type_name == "team":
        title = doc.get("title", "")
        return isinstance(title, str) and len(title) <= 5
    if type_name == "member_of":
        return doc.get("role", "lead") in ("lead", "dev")
    if type_name == "knows":
        return type(doc.get("since", 0)) is int
    return True


class GraphMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.db = alk.connect(self.dir / "t.db")
        migrations.migrate(self.db, schema_tenant.TENANT_SCHEMA)
        types = GraphTypes(self.db, SYSTEM, system_names=set, audit=lambda *a: None)
        self.info = types.register(SPEC)
        self.graphs = Graphs(self.db, types, SYSTEM, org_id="org")
        self.g = self.graphs.create(type="org", name="machine")
        self.start = self._head()
        # The model: nodes by key; edges in insertion order.
        self.nodes: dict[str, tuple[str, dict[str, Any]]] = {}
        self.edges: list[dict[str, Any]] = []
        self.expected: list[tuple[str, str | None]] = []
        self.validators = {name: SchemaValidator(schema) for name, schema in SCHEMAS.items()}

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _head(self) -> int:
        row = self.db.query_one("SELECT coalesce(max(offset), 0) FROM _honker_stream")
        assert row is not None
        return int(row[0])

    # -- the model's predictions (SPEC §5 order)

    def node_error(self, key: str, type_name: str, doc: dict[str, Any]) -> type[Exception] | None:
        if type_name not in SPEC.node_types:
            return UnknownTypeError
        if not valid(type_name, doc):
            return ValidationError
        if key in self.nodes:
            return AlreadyExistsError
        return None

    def edge_error(
        self, src: str, dst: str, type_name: str, doc: dict[str, Any], key: str | None, und: bool
    ) -> type[Exception] | None:
        if type_name not in SPEC.edge_types:
            return UnknownTypeError
        if not valid(type_name, doc):
            return ValidationError
        if src not in self.nodes or dst not in self.nodes:
            return MissingEndpointError
        sources, targets = ENDS[type_name]
        if (sources and self.nodes[src][0] not in sources) or (
            targets and self.nodes[dst][0] not in targets
        ):
            return EndpointTypeError
        if src == dst:
            return SelfLoopError
        for e in self.edges:
            same = (e["source"], e["target"]) == (src, dst)
            reverse = (e["source"], e["target"]) == (dst, src)
            if same or (reverse and (und or e["undirected"])):
                return MultiEdgeError
        if key is not None and any(e["key"] == key for e in self.edges):
            return AlreadyExistsError
        return None

    def attempt(self, expected: type[Exception] | None, call: Any) -> bool:
        """Run `call`; it must raise exactly `expected` (or succeed)."""
        if expected is None:
            call()
            return True
        with pytest.raises(expected) as caught:
            call()
        assert type(caught.value) is expected
        return False

    # -- model updates

    def added_node(self, key: str, type_name: str, doc: dict[str, Any]) -> None:
        self.nodes[key] = (type_name, doc)
        self.expected.append(("nodes:created", key))

    def added_edge(
        self, src: str, dst: str, type_name: str, doc: dict[str, Any], key: str | None, und: bool
    ) -> None:
        self.edges.append(
            {
                "key": key,
                "type": type_name,
                "source": src,
                "target": dst,
                "attributes": doc,
                "undirected": und,
            }
        )
        self.expected.append(("edges:created", key))

    # -- rules

    def endpoint(self, data: st.DataObject, *, other_than: str | None = None) -> str:
        """Mostly a node of the graph (another one than `other_than` if
        there is one), sometimes any key."""
        present = sorted(self.nodes)
        if len(present) > 1 and other_than in present:
            present.remove(other_than)
        chance: int = data.draw(st.integers(0, 5))
        if present and chance:
            return data.draw(st.sampled_from(present))
        return data.draw(NODE_KEYS)

    @rule(key=NODE_KEYS, type_name=NODE_TYPES, data=st.data())
    def add_node(self, key: str, type_name: str, data: st.DataObject) -> None:
        doc = data.draw(docs_for(type_name))
        error = self.node_error(key, type_name, doc)
        if self.attempt(error, lambda: self.g.add_node(key, type=type_name, attributes=doc)):
            self.added_node(key, type_name, doc)

    @rule(key=EDGE_KEYS, und=st.booleans(), data=st.data())
    def add_edge(self, key: str | None, und: bool, data: st.DataObject) -> None:
        src = self.endpoint(data)
        dst = self.endpoint(data, other_than=src)
        # Mostly an edge type that fits the endpoints, sometimes any.
        ends = (self.nodes.get(src, ("?", {}))[0], self.nodes.get(dst, ("?", {}))[0])
        fitting = [
            name
            for name, (sources, targets) in ENDS.items()
            if (not sources or ends[0] in sources) and (not targets or ends[1] in targets)
        ]
        type_name = data.draw(st.sampled_from(fitting) | EDGE_TYPES | st.sampled_from(fitting))
        doc = data.draw(docs_for(type_name))
        error = self.edge_error(src, dst, type_name, doc, key, und)
        call = lambda: self.g.add_edge(  # noqa: E731
            src, dst, type=type_name, attributes=doc, key=key, undirected=und
        )
        if self.attempt(error, call):
            self.added_edge(src, dst, type_name, doc, key, und)

    @rule(data=st.data())
    def update_node(self, data: st.DataObject) -> None:
        key = self.endpoint(data)
        found = self.nodes.get(key)
        doc = data.draw(docs_for(found[0] if found else "link"))
        error: type[Exception] | None = NotFoundError if found is None else None
        if found is not None and not valid(found[0], doc):
            error = ValidationError
        if self.attempt(error, lambda: self.g.update_node(key, attributes=doc)):
            assert found is not None
            self.nodes[key] = (found[0], doc)
            self.expected.append(("nodes:updated", key))

    def edge_key(self, data: st.DataObject) -> str:
        """Mostly the key of an edge of the graph, sometimes any."""
        keyed = [e["key"] for e in self.edges if e["key"] is not None]
        chance: int = data.draw(st.integers(0, 5))
        if keyed and chance:
            return str(data.draw(st.sampled_from(keyed)))
        return data.draw(st.sampled_from(["x", "y", "z"]))

    @rule(data=st.data())
    def update_edge(self, data: st.DataObject) -> None:
        key = self.edge_key(data)
        found = next((e for e in self.edges if e["key"] == key), None)
        doc = data.draw(docs_for(found["type"] if found else "link"))
        error: type[Exception] | None = NotFoundError if found is None else None
        if found is not None and not valid(found["type"], doc):
            error = ValidationError
        if self.attempt(error, lambda: self.g.update_edge(key, attributes=doc)):
            assert found is not None
            found["attributes"] = doc
            self.expected.append(("edges:updated", key))

    @rule(data=st.data())
    def remove_node(self, data: st.DataObject) -> None:
        key = self.endpoint(data)
        error = None if key in self.nodes else NotFoundError
        if self.attempt(error, lambda: self.g.remove_node(key)):
            del self.nodes[key]
            gone = [e for e in self.edges if key in (e["source"], e["target"])]
            self.edges = [e for e in self.edges if key not in (e["source"], e["target"])]
            self.expected += [("edges:deleted", e["key"]) for e in gone]
            self.expected.append(("nodes:deleted", key))

    @rule(data=st.data())
    def remove_edge(self, data: st.DataObject) -> None:
        key = self.edge_key(data)
        found = next((e for e in self.edges if e["key"] == key), None)
        error = NotFoundError if found is None else None
        if self.attempt(error, lambda: self.g.remove_edge(key)):
            assert found is not None
            self.edges.remove(found)
            self.expected.append(("edges:deleted", key))

    @precondition(lambda self: len(self.nodes) < 5)
    @rule(
        data=st.data(),
        commit=st.booleans(),
    )
    def several_in_one_transaction(self, data: st.DataObject, commit: bool) -> None:
        """A node and an edge to it in the caller's transaction; committed
        or rolled back (then neither the rows nor the events exist). A
        refused write inside it leaves the others."""
        free = [k for k in "abcde" if k not in self.nodes]
        key = data.draw(st.sampled_from(free))
        name = data.draw(st.text(max_size=4))
        others = [k for k, (t, _) in self.nodes.items() if t == "person"]
        nodes, edges = dict(self.nodes), list(self.edges)
        expected = list(self.expected)
        try:
            with self.db.transaction() as tx:
                self.g.add_node(key, type="person", attributes={"name": name}, tx=tx)
                self.added_node(key, "person", {"name": name})
                with pytest.raises(ValidationError):
                    self.g.add_node("f", type="person", attributes={"age": -1}, tx=tx)
                if others:
                    other = data.draw(st.sampled_from(others))
                    error = self.edge_error(key, other, "knows", {}, None, False)
                    call = lambda: self.g.add_edge(key, other, type="knows", tx=tx)  # noqa: E731
                    if self.attempt(error, call):
                        self.added_edge(key, other, "knows", {}, None, False)
                if not commit:
                    tx.rollback()
        finally:
            if not commit:
                self.nodes, self.edges, self.expected = nodes, edges, expected

    @rule(data=st.data())
    def import_some(self, data: st.DataObject) -> None:
        """A small import: all of it lands, or (one bad row) none of it."""
        free = [k for k in "abcde" if k not in self.nodes]
        if not free:
            return
        keys = data.draw(st.lists(st.sampled_from(free), unique=True, min_size=1, max_size=2))
        docs = [data.draw(docs_for("team")) for _ in keys]
        nodes = [
            {"key": k, "type": "team", "attributes": d} for k, d in zip(keys, docs, strict=True)
        ]
        ok = all(valid("team", d) for d in docs)
        result = self.attempt(
            None if ok else ValidationError, lambda: self.g.import_graph({"nodes": nodes})
        )
        if result:
            for k, d in zip(keys, docs, strict=True):
                self.nodes[k] = ("team", d)
            self.expected.append(("graphs:imported", None))

    # -- invariants

    @invariant()
    def no_dangling_edge(self) -> None:
        row = self.db.query_one(
            "SELECT count(*) FROM edges e "
            "LEFT JOIN nodes s ON s.graph_id = e.graph_id AND s.key = e.source_node_key "
            "LEFT JOIN nodes t ON t.graph_id = e.graph_id AND t.key = e.target_node_key "
            "WHERE s.id IS NULL OR t.id IS NULL"
        )
        assert row == (0,)

    @invariant()
    def every_document_is_valid(self) -> None:
        rows = self.db.query(
            "SELECT type, attributes FROM nodes UNION ALL SELECT type, attributes FROM edges"
        )
        for type_name, text in rows:
            assert self.validators[type_name].validate(json.loads(text)) == []

    @invariant()
    def storage_matches_the_model(self) -> None:
        assert {n.key: (n.type, n.attributes) for n in self.g.nodes()} == self.nodes
        assert self.g.export()["edges"] == self.edges

    @invariant()
    def events_are_the_committed_mutations(self) -> None:
        rows = self.db.query(
            "SELECT topic, payload FROM _honker_stream WHERE offset > ? ORDER BY offset",
            (self.start,),
        )
        got = [(topic, json.loads(payload).get("key")) for topic, payload in rows]
        assert got == self.expected


GraphMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_graph_state_machine = GraphMachine.TestCase
