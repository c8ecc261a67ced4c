"""Hostile input through the public API: whatever an attacker with an
account sends (strings with NULs and lone surrogates, huge or empty text,
ids that are paths, documents of any shape), the answer is a result or one
of our errors (`alk.Error`), never another exception."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alkdev_storage as alk
from alkdev_storage.metagraph import EdgeTypeSpec, GraphTypeSpec, NodeTypeSpec

TYPES = GraphTypeSpec(
    name="notes",
    scope="tenant",
    node_types={"note": NodeTypeSpec(schema={"type": "object"})},
    edge_types={"link": EdgeTypeSpec()},
)

hostile_text = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(codec=None, categories=["Cs", "Cc", "Zs", "Lo"]), max_size=8),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "a\x00b",
            "\ud800",
            "../../etc/passwd",
            "tenant-x.db",
            "$$",
            "$.",
            "$.a[",
            "a" * 5000,
            "SELECT 1; DROP TABLE nodes",
            "'; --",
            "alk_" + "x" * 43,
            "SHA256:" + "A" * 43,
            "ssh-ed25519 AAAA",
            "name: [unclosed",
        ]
    ),
)
scalars = st.one_of(
    hostile_text,
    st.integers(),
    st.floats(),  # NaN and infinities included
    st.booleans(),
    st.none(),
    st.binary(max_size=8),
)
keys = st.one_of(hostile_text, st.integers(), st.tuples(st.integers()), st.none(), st.booleans())
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(keys, inner, max_size=3),
        st.frozensets(st.integers(), max_size=2),
    ),
    max_leaves=10,
)


class Extreme:
    """A document too big to print: built only when the call is made, so
    that hypothesis can still show a failing example."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"Extreme({self.kind!r})"

    def build(self) -> Any:
        if self.kind == "wide":
            return {"x": "a" * (2 << 20)}
        doc: dict[str, Any] = {}
        cur = doc
        for _ in range(5000):
            cur["a"] = {}
            cur = cur["a"]
        return doc


anything = st.one_of(scalars, documents, st.sampled_from([Extreme("deep"), Extreme("wide")]))


def built(value: Any) -> Any:
    return value.build() if isinstance(value, Extreme) else value


class World:
    def __init__(self, root: Path) -> None:
        self.store = alk.Storage.open(root)
        store = self.store
        self.ada = store.accounts.create(email="ada@x.io")
        self.org = store.organizations.create(name="Acme", slug="acme", owner_id=self.ada.id)
        bob = store.accounts.create(email="bob@x.io")
        store.organizations.add_member(self.org.id, bob.id)
        self.member = store.as_account(bob.id).tenant(self.org.id)
        with store.tenant(self.org.id) as t:
            t.graph_types.register(TYPES)
        self.graph = self.member.graphs.create(name="g", type="notes")
        self.graph.add_node("a", type="note")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("hostile"))
    yield w
    w.member.close()
    w.store.close()


def one_entry(key: Any, value: Any) -> dict[Any, Any]:
    """``{key: value}``, or with a str key when `key` cannot be one."""
    try:
        return {key: value}
    except TypeError:
        return {"$.x": value}


def only_our_errors(call: Callable[[], object]) -> None:
    try:
        call()
    except alk.Error:
        pass


OPERATIONS: dict[str, Callable[[World, Any, Any, Any], object]] = {
    "accounts.create": lambda w, a, b, c: w.store.accounts.create(email=a, display_name=b),
    "accounts.get": lambda w, a, b, c: w.store.accounts.get(a),
    "accounts.by_email": lambda w, a, b, c: w.store.accounts.by_email(a),
    "organizations.create": lambda w, a, b, c: w.store.organizations.create(
        name=a, slug=b, owner_id=w.ada.id if c is None else c
    ),
    "organizations.add_member": lambda w, a, b, c: w.store.organizations.add_member(
        w.org.id, a, level=b
    ),
    "store.tenant": lambda w, a, b, c: w.store.tenant(a),
    "as_account.tenant": lambda w, a, b, c: w.store.as_account(w.ada.id).tenant(a),
    "as_account": lambda w, a, b, c: w.store.as_account(a),
    "api_keys.create": lambda w, a, b, c: w.store.api_keys.create(
        owner_id=w.ada.id, name=a, scopes=b
    ),
    "api_keys.verify": lambda w, a, b, c: w.store.api_keys.verify(a),
    "peer_credentials.verify": lambda w, a, b, c: w.store.peer_credentials.verify(a),
    "peer_credentials.lookup": lambda w, a, b, c: w.store.peer_credentials.lookup(a),
    "peer_credentials.register": lambda w, a, b, c: w.store.peer_credentials.register(
        owner_id=w.ada.id, public_key=a, scopes=b
    ),
    "graph.add_node": lambda w, a, b, c: w.graph.add_node(a, type="note", attributes=b),
    "graph.add_node(type)": lambda w, a, b, c: w.graph.add_node("k", type=a, attributes=c),
    "graph.add_edge": lambda w, a, b, c: w.graph.add_edge("a", a, type="link", attributes=b),
    "graph.update_node": lambda w, a, b, c: w.graph.update_node(a, attributes=b),
    "graph.remove_node": lambda w, a, b, c: w.graph.remove_node(a),
    "graph.nodes": lambda w, a, b, c: w.graph.nodes(type=c, where=one_entry(a, b)),
    "graph.nodes(where)": lambda w, a, b, c: w.graph.nodes(where=a),
    "graph.neighbors": lambda w, a, b, c: w.graph.neighbors(a, direction=b),
    "graph.import_graph": lambda w, a, b, c: w.graph.import_graph(a),
    "graph.import_graph(nodes)": lambda w, a, b, c: w.graph.import_graph(
        {"nodes": [{"key": a, "type": "note", "attributes": b}]}
    ),
    "graphs.create": lambda w, a, b, c: w.member.graphs.create(name=a, type="notes", metadata=b),
    "graphs.get": lambda w, a, b, c: w.member.graphs.get(a),
    "graphs.list": lambda w, a, b, c: w.member.graphs.list(owner_id=a, status=b),
    "graph_types.register": lambda w, a, b, c: w.member.graph_types.register(a),
    "graph_types.register(schema)": lambda w, a, b, c: w.member.graph_types.register(
        GraphTypeSpec(name="mine", scope="user", node_types={"n": NodeTypeSpec(schema=a)})
    ),
    "GraphTypeSpec.from_document": lambda w, a, b, c: GraphTypeSpec.from_document(a),
    "stream.publish": lambda w, a, b, c: w.member.db.stream("s").publish(a, key=b),
    "queue.enqueue": lambda w, a, b, c: w.member.db.queue("q").enqueue(a),
    "tenants.validate": lambda w, a, b, c: w.store.tenants.validate(a),
    "Limits": lambda w, a, b, c: alk.Limits(document_bytes=a),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_hostile_arguments_raise_only_our_errors(world: World, operation: str) -> None:
    call = OPERATIONS[operation]

    @settings(
        max_examples=int(os.environ.get("ALK_HOSTILE_EXAMPLES", "60")),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(a=anything, b=anything, c=anything)
    def check(a: Any, b: Any, c: Any) -> None:
        only_our_errors(lambda: call(world, built(a), built(b), built(c)))

    check()
