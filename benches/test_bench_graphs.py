"""The metagraph (metagraph/graphs.py): bulk import, k-hop traversal and
neighbours, each against stdlib ``sqlite3`` doing the bare SQL.

Workloads:

- `graph-import`: ``Graph.import_graph`` of 100,000 nodes + 100,000 edges
  in one transaction, with every row checked (JSON Schema, endpoints,
  endpoint types, self-loops, multi-edges) and the ``graphs:imported``
  event. Baseline (`_stdlib`): the same rows (ids, ``json.dumps`` of the
  attributes) ``executemany``-ed by stdlib ``sqlite3`` into the same tenant
  schema, without any check or event, i.e. the floor our rules sit on.
  ``extra_info["rows_per_s"]`` is rows (nodes + edges) per second.
- `graph-traverse-3`: ``Graph.traverse(key, depth=3)`` from a node of a
  random directed graph of 20,000 nodes and 100,000 edges (out-degree 5;
  ~150 nodes within 3 hops). Baseline: stdlib running the same recursive
  query on the same file.
- `graph-neighbors-1k`: ``Graph.neighbors(hub)`` of a node with 1,000
  outgoing edges, and with ``direction="both"``. Baseline: the same query
  through stdlib.

Run: ``pytest benches/test_bench_graphs.py --benchmark-only -s``
(``--benchmark-json=out.json`` then ``python benches/report.py out.json``
for ratios). Under ``--benchmark-disable`` (CI) sizes shrink to a few
thousand rows. Each benchmark checks its result before it is timed.
"""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import alkdev_storage as alk
from alkdev_storage import migrations, schema_tenant
from alkdev_storage.metagraph import EdgeTypeSpec, GraphConfig, GraphTypeSpec, NodeTypeSpec
from alkdev_storage.metagraph.graphs import Graph, Graphs
from alkdev_storage.metagraph.types import SYSTEM, GraphTypes

N_IMPORT = 100_000
N_IMPORT_CI = 2_000
N_NODES, N_EDGES = 20_000, 100_000
N_NODES_CI, N_EDGES_CI = 1_500, 3_000
HUB_DEGREE = 1_000

TASKS = GraphTypeSpec(
    name="tasks",
    config=GraphConfig(type="directed", multi=False, allow_self_loops=False),
    node_types={
        "task": NodeTypeSpec(
            schema={
                "type": "object",
                "required": ["title"],
                "properties": {
                    "title": {"type": "string"},
                    "priority": {"type": "integer", "minimum": 0},
                },
            }
        )
    },
    edge_types={
        "blocks": EdgeTypeSpec(
            schema={"type": "object", "properties": {"weight": {"type": "number"}}},
            allowed_source_types=["task"],
            allowed_target_types=["task"],
        )
    },
)

NODE_SQL = (
    "INSERT INTO nodes (id, graph_id, key, type, attributes, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
EDGE_SQL = (
    "INSERT INTO edges (id, graph_id, key, type, source_node_key, target_node_key, attributes, "
    "undirected, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def sized(benchmark: Any, full: int, small: int) -> int:
    return small if benchmark.disabled else full


def tenant(path: Path) -> tuple[alk.Database, Graphs]:
    db = alk.connect(path)
    migrations.migrate(db, schema_tenant.TENANT_SCHEMA)
    types = GraphTypes(db, SYSTEM, system_names=set, audit=lambda *a: None)
    types.register(TASKS)
    return db, Graphs(db, types, SYSTEM, org_id="bench")


def stdlib_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.executescript(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
        "PRAGMA cache_size=-32000; PRAGMA temp_store=MEMORY;"
    )
    return conn


def document(n: int) -> dict[str, Any]:
    """n tasks in a ring: task i blocks task i+1; half the edges keyed."""
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


# -- bulk import -------------------------------------------------------------------------------


def report_rate(benchmark: Any, what: str, rows: int) -> None:
    if benchmark.disabled or benchmark.stats is None:
        return
    median = benchmark.stats.stats.median
    rate = rows / median
    benchmark.extra_info.update(rows=rows, rows_per_s=round(rate), per_round=rows, scale=rows)
    print(f"\n{what}: {rows:,} rows in {median:.2f} s (median) = {rate:,.0f} rows/s")


@pytest.mark.benchmark(group="graph-import")
def test_graph_import(benchmark: Any, tmp_path: Path) -> None:
    n = sized(benchmark, N_IMPORT, N_IMPORT_CI)
    doc = document(n)
    db, graphs = tenant(tmp_path / "ours.db")
    check = graphs.create(type="tasks", name="check")
    assert (check.import_graph(doc).nodes, len(check.neighbors("n0"))) == (n, 1)
    graphs.delete(check.id)

    def setup() -> tuple[tuple[Graph, dict[str, Any]], dict[str, Any]]:
        for old in graphs.list():
            graphs.delete(old.id)
        db.checkpoint("TRUNCATE")
        return (graphs.create(type="tasks", name="bulk"), doc), {}

    def run(graph: Graph, doc: dict[str, Any]) -> Any:
        return graph.import_graph(doc)

    result = benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    assert (result.nodes, result.edges) == (n, n)
    assert db.query_one("SELECT count(*) FROM edges") == (n,)
    report_rate(benchmark, "import_graph (validated, with its event)", 2 * n)
    db.close()


@pytest.mark.benchmark(group="graph-import")
def test_graph_import_stdlib(benchmark: Any, tmp_path: Path) -> None:
    n = sized(benchmark, N_IMPORT, N_IMPORT_CI)
    doc = document(n)
    # The same tenant schema, created through our migration, then written
    # by stdlib sqlite3 alone.
    db, _ = tenant(tmp_path / "stdlib.db")
    db.close()
    conn = stdlib_connect(tmp_path / "stdlib.db")

    def setup() -> tuple[tuple[str], dict[str, Any]]:
        conn.execute("DELETE FROM graphs")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        graph_id = str(uuid.uuid4())
        conn.execute("INSERT INTO graphs (id, name) VALUES (?, 'bulk')", (graph_id,))
        return (graph_id,), {}

    def run(graph_id: str) -> None:
        dumps, new_id = json.dumps, uuid.uuid4
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            NODE_SQL,
            [
                (str(new_id()), graph_id, x["key"], x["type"], dumps(x["attributes"]), 0, 0)
                for x in doc["nodes"]
            ],
        )
        conn.executemany(
            EDGE_SQL,
            [
                (
                    str(new_id()),
                    graph_id,
                    e["key"],
                    e["type"],
                    e["source"],
                    e["target"],
                    dumps(e["attributes"]),
                    e["undirected"],
                    0,
                    0,
                )
                for e in doc["edges"]
            ],
        )
        conn.execute("COMMIT")

    run(setup()[0][0])
    assert conn.execute("SELECT count(*) FROM edges").fetchone() == (n,)
    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    assert conn.execute("SELECT count(*) FROM edges").fetchone() == (n,)
    report_rate(benchmark, "stdlib executemany (no checks, no event)", 2 * n)
    conn.close()


# -- traversal and neighbours ------------------------------------------------------------------


class Net:
    """A random directed graph plus a hub with HUB_DEGREE out-edges, in a
    tenant file shared by the traversal and neighbour benchmarks."""

    def __init__(self, path: Path, n_nodes: int, n_edges: int) -> None:
        self.path = path
        self.db, graphs = tenant(path)
        rng = random.Random(7)
        pairs: set[tuple[int, int]] = set()
        while len(pairs) < n_edges:
            a, b = rng.randrange(n_nodes), rng.randrange(n_nodes)
            if a != b:
                pairs.add((a, b))
        hub_leaves = rng.sample(range(n_nodes), HUB_DEGREE)
        nodes = [{"key": "hub", "type": "task", "attributes": {"title": "hub"}}]
        nodes += [
            {"key": f"n{i}", "type": "task", "attributes": {"title": f"n{i}"}}
            for i in range(n_nodes)
        ]
        edges = [
            {"type": "blocks", "source": f"n{a}", "target": f"n{b}", "attributes": {}}
            for a, b in sorted(pairs)
        ]
        edges += [{"type": "blocks", "source": "hub", "target": f"n{i}"} for i in hub_leaves]
        self.graph = graphs.create(type="tasks", name="net")
        self.graph.import_graph({"nodes": nodes, "edges": edges})
        self.n_edges = len(edges)
        # The start node: one with a typical out-degree.
        self.start = "n1"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Net]:
    disabled = request.config.getoption("benchmark_disable", False)
    nodes, edges = (N_NODES_CI, N_EDGES_CI) if disabled else (N_NODES, N_EDGES)
    built = Net(tmp_path_factory.mktemp("net") / "net.db", nodes, edges)
    yield built
    built.db.close()


def traverse_sql(conn: sqlite3.Connection, graph_id: str, start: str) -> list[tuple[Any, ...]]:
    """What `Graph.traverse(depth=3)` runs, written out for stdlib."""
    return conn.execute(
        "WITH RECURSIVE r(key, d) AS (SELECT :k, 0 "
        "UNION SELECT e.target_node_key, r.d + 1 FROM r JOIN edges e "
        "ON e.graph_id = :g AND e.source_node_key = r.key WHERE r.d < 3 "
        "UNION SELECT e.source_node_key, r.d + 1 FROM r JOIN edges e "
        "ON e.graph_id = :g AND e.target_node_key = r.key AND e.undirected = 1 WHERE r.d < 3) "
        "SELECT n.key, n.type, n.attributes, n.id, n.created_at, n.updated_at, m.d "
        "FROM (SELECT key, min(d) AS d FROM r WHERE key <> :k GROUP BY key) AS m "
        "JOIN nodes n ON n.graph_id = :g AND n.key = m.key ORDER BY m.d, n.rowid",
        {"g": graph_id, "k": start},
    ).fetchall()


def neighbors_sql(conn: sqlite3.Connection, graph_id: str, key: str) -> list[tuple[Any, ...]]:
    """What `Graph.neighbors(key)` runs, written out for stdlib."""
    return conn.execute(
        "SELECT key, type, attributes, id, created_at, updated_at FROM nodes "
        "WHERE graph_id = :g AND key IN ("
        "SELECT e.target_node_key FROM edges e WHERE e.graph_id = :g AND e.source_node_key = :k "
        "UNION SELECT e.source_node_key FROM edges e WHERE e.graph_id = :g "
        "AND e.target_node_key = :k AND e.undirected = 1) ORDER BY rowid",
        {"g": graph_id, "k": key},
    ).fetchall()


@pytest.mark.benchmark(group="graph-traverse-3")
def test_graph_traverse(benchmark: Any, net: Net) -> None:
    found = net.graph.traverse(net.start, depth=3)
    assert found and {d for _, d in found} <= {1, 2, 3}
    result = benchmark(net.graph.traverse, net.start, depth=3)
    assert len(result) == len(found)
    benchmark.extra_info.update(edges=net.n_edges, reached=len(found))
    if not benchmark.disabled:
        print(f"\ntraverse depth 3 over {net.n_edges:,} edges reaches {len(found)} nodes")


@pytest.mark.benchmark(group="graph-traverse-3")
def test_graph_traverse_stdlib(benchmark: Any, net: Net) -> None:
    conn = stdlib_connect(net.path)
    expected = [(n.key, d) for n, d in net.graph.traverse(net.start, depth=3)]
    rows = traverse_sql(conn, net.graph.id, net.start)
    assert [(r[0], r[6]) for r in rows] == expected
    benchmark(traverse_sql, conn, net.graph.id, net.start)
    conn.close()


@pytest.mark.benchmark(group="graph-neighbors-1k")
def test_graph_neighbors(benchmark: Any, net: Net) -> None:
    assert len(net.graph.neighbors("hub")) == HUB_DEGREE
    result = benchmark(net.graph.neighbors, "hub")
    assert len(result) == HUB_DEGREE


@pytest.mark.benchmark(group="graph-neighbors-1k-both")
def test_graph_neighbors_both(benchmark: Any, net: Net) -> None:
    assert len(net.graph.neighbors("hub", direction="both")) == HUB_DEGREE
    benchmark(net.graph.neighbors, "hub", direction="both")


@pytest.mark.benchmark(group="graph-neighbors-1k")
def test_graph_neighbors_stdlib(benchmark: Any, net: Net) -> None:
    conn = stdlib_connect(net.path)
    assert [r[0] for r in neighbors_sql(conn, net.graph.id, "hub")] == [
        n.key for n in net.graph.neighbors("hub")
    ]
    benchmark(neighbors_sql, conn, net.graph.id, "hub")
    conn.close()
