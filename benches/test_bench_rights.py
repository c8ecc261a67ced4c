"""What asking for the current rights on every write costs (SPEC §7,
docs/security.md): ``add_node`` through an account's tenant handle, which
checks ``system.db``'s identity counter before each write, against the same
call through the platform's handle, which checks nothing.

Workload `rights-add-node`: 1,000 ``add_node`` calls, one per row, validated,
each with its ``nodes:created`` event, inside one transaction. Baseline
(`_platform`): the same through ``store.tenant(org_id)``. A ratio below 1.0
is the check's share of the call.

Run: ``pytest benches/test_bench_rights.py --benchmark-only`` (then
``python benches/report.py`` on its JSON for the ratio).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import alkdev_storage as alk
from alkdev_storage.metagraph import GraphTypeSpec, NodeTypeSpec

ROWS = 1_000
NOTES = GraphTypeSpec(
    name="notes",
    scope="tenant",
    node_types={
        "note": NodeTypeSpec(schema={"type": "object", "properties": {"title": {"type": "string"}}})
    },
)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[alk.Storage, str, str]]:
    store = alk.Storage.open(tmp_path)
    ada = store.accounts.create(email="ada@x.io")
    acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
    with store.tenant(acme.id) as t:
        t.graph_types.register(NOTES)
    yield store, acme.id, ada.id
    store.close()


def add_nodes(benchmark: Any, tenant: Any) -> None:
    graph = tenant.graphs.create(name="g", type="notes")
    rounds = itertools.count()

    def run() -> None:
        n = next(rounds)
        with tenant.transaction() as tx:
            for i in range(ROWS):
                graph.add_node(f"{n}-{i}", type="note", attributes={"title": "x"}, tx=tx)

    run()
    assert len(graph.nodes()) == ROWS  # checked before timing
    benchmark.extra_info["per_round"] = ROWS
    benchmark(run)


@pytest.mark.benchmark(group="rights-add-node")
def test_rights_add_node_account(benchmark: Any, world: tuple[alk.Storage, str, str]) -> None:
    store, org, account = world
    with store.as_account(account).tenant(org) as t:
        add_nodes(benchmark, t)


@pytest.mark.benchmark(group="rights-add-node")
def test_rights_add_node_platform(benchmark: Any, world: tuple[alk.Storage, str, str]) -> None:
    store, org, _ = world
    with store.tenant(org) as t:
        add_nodes(benchmark, t)
