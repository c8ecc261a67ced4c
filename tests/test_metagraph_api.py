"""The metagraph API end to end, as the issue writes it: an account's view
of its organization's tenant file, a registered type, a graph, and several
graph writes with a job and an event in one transaction."""

from __future__ import annotations

from pathlib import Path

import pytest

import alkdev_storage as alk

TASK = {
    "type": "object",
    "required": ["title"],
    "properties": {"title": {"type": "string"}, "status": {"enum": ["open", "done"]}},
}


def test_issue_example_end_to_end(tmp_path: Path) -> None:
    store = alk.Storage.open(tmp_path / "root")
    alice = store.accounts.create(email="alice@x.io")
    org = store.organizations.create(name="Acme", slug="acme", owner_id=alice.id)
    spec = alk.GraphTypeSpec(
        name="tasks",
        scope="tenant",
        version=1,
        config=alk.GraphConfig(type="directed", multi=False, allow_self_loops=False),
        node_types={"task": alk.NodeTypeSpec(schema=TASK)},
        edge_types={
            "depends_on": alk.EdgeTypeSpec(
                schema={"type": "object"},
                allowed_source_types=["task"],
                allowed_target_types=["task"],
            )
        },
    )
    alice_view = store.as_account(alice.id)
    with alice_view.tenant(org.id) as t:
        t.graph_types.register(spec)
        g = t.graphs.create(type="tasks", name="Q4", owner_id=alice.id, project_id="p1")
        g.add_node("t1", type="task", attributes={"title": "Design", "status": "open"})
        g.add_node("t2", type="task", attributes={"title": "Build", "status": "open"})
        g.add_edge("t1", "t2", type="depends_on", attributes={}, key=None)
        g.update_node("t1", attributes={"title": "Design", "status": "done"})
        assert [n.key for n in g.nodes(type="task", where={"$.status": "open"})] == ["t2"]
        assert [n.key for n in g.neighbors("t1", direction="out", edge_type="depends_on")] == ["t2"]
        assert [(n.key, d) for n, d in g.traverse("t1", depth=3)] == [("t2", 1)]
        with pytest.raises(alk.ValidationError) as bad:
            g.add_node("t3", type="task", attributes={"status": "maybe"})
        assert sorted(p for p, _ in bad.value.violations) == ["", "/status"]

        # Several graph writes, a job and an event: all or nothing.
        jobs = t.db.queue("notify")
        with pytest.raises(RuntimeError), t.transaction() as tx:
            g.add_node("t3", type="task", attributes={"title": "Ship"}, tx=tx)
            g.add_edge("t2", "t3", type="depends_on", tx=tx)
            jobs.enqueue({"node": "t3"}, tx=tx)
            t.db.stream("audit").publish({"node": "t3"}, tx=tx)
            raise RuntimeError("changed my mind")
        assert [n.key for n in g.nodes()] == ["t1", "t2"]
        assert jobs.claim_one("w") is None
        with t.transaction() as tx:
            g.add_node("t3", type="task", attributes={"title": "Ship"}, tx=tx)
            g.add_edge("t2", "t3", type="depends_on", tx=tx)
            jobs.enqueue({"node": "t3"}, tx=tx)
        job = jobs.claim_one("w")
        assert job is not None and job.payload == {"node": "t3"}

        doc = g.export()
        copy = t.graphs.create(type="tasks", name="Q4 copy")
        copy.import_graph(doc)
        assert copy.export()["nodes"] == doc["nodes"]
        assert copy.export()["edges"] == doc["edges"]
        g.remove_node("t1")
        assert [e.source for e in g.edges()] == ["t2"]
    store.close()


def test_a_new_type_version_is_validated_with_its_new_schema(tmp_path: Path) -> None:
    store = alk.Storage.open(tmp_path / "root")
    ada = store.accounts.create(email="ada@x.io")
    org = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)

    def notes(version: int, schema: dict[str, object]) -> alk.GraphTypeSpec:
        return alk.GraphTypeSpec(
            name="notes", version=version, node_types={"note": alk.NodeTypeSpec(schema=schema)}
        )

    with store.as_account(ada.id).tenant(org.id) as t:
        t.graph_types.register(notes(1, {"type": "object", "required": ["title"]}))
        g = t.graphs.create(type="notes", name="N")
        with pytest.raises(alk.ValidationError):
            g.add_node("a", type="note", attributes={})  # compiles and caches v1
        t.graph_types.register(notes(2, {"type": "object"}))
        g.add_node("a", type="note", attributes={})  # v2's validator, not the cached v1
        t.graph_types.register(notes(3, {"type": "object", "required": ["body"]}))
        with pytest.raises(alk.ValidationError, match="body"):
            g.add_node("b", type="note", attributes={})
    store.close()
