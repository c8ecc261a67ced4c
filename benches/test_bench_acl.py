"""``tenant.acl.check_access`` (acl.py) on a realistic ACL, one resource +
action check per call, against a recursive CTE through stdlib ``sqlite3``
on the same file.

The ACL is benches/acl_latency.py's (`build`): principals, 2% of them
nested team principals (``role:team-<n>``), the rest services with own
scopes and 1-3 teams each, half as many resources, grants from services and
teams, a few hundred delegations; built through the public API in
transactions of 5,000 writes. The queries are the resource + action checks
of acl_latency.py's mix (about a fifth of them denied).

Workload `acl-check` (per call):

- `warm`: every query checked once first, so each call is answered from
  the cache;
- `cold`: ``acl._cache.generation = -1`` before each call (untimed), so
  the check drops the cache and reads the closure and the grants from
  SQLite again;
- `after_revoke`: a grant that is the principal's only way to the resource
  is revoked (untimed); the first check after it, which must be denied;
- baseline (`_stdlib`): the principal's ``belongs_to`` closure joined with
  the grant edges on the resource, one recursive CTE through stdlib
  ``sqlite3`` (acl_latency.py's ``CTE_SQL``), on a copy of the tenant file
  in the same folder written by our core (``VACUUM INTO``): two SQLite
  libraries on one file in one process release each other's locks
  (docs/wakes.md), which showed here as stdlib not seeing a committed
  revoke.

Before anything is timed, check_access's cold and warm answers, the CTE's
through our core on the live file and stdlib's on the copy are checked to
agree on every query; after each revoke, check_access and the CTE on the
live file must both deny. Sizes: 10,000 principals (about 100,000 edges,
as acl_latency.py builds by default) when timing, 1,000 under
``--benchmark-disable`` (CI). For p50/p99/max and more baselines, run
``python benches/acl_latency.py``.

Run: ``pytest benches/test_bench_acl.py --benchmark-only
--benchmark-json=out.json && python benches/report.py out.json``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from acl_latency import Model, Query, build, cte_ours, cte_sqlite3, queries, revoke_candidates

import alkdev_storage as alk

N_PRINCIPALS, N_PRINCIPALS_CI = 10_000, 1_000
N_QUERIES, N_QUERIES_CI = 2_000, 200
COLD_ROUNDS = 500
REVOKE_ROUNDS = 50


@dataclass
class World:
    acl: Any
    db: Any
    model: Model
    copy: Path
    graph_id: str
    resource_queries: list[Query]
    answers: list[bool]
    principals: int
    edges: int


def answers(world: World) -> list[bool]:
    """check_access's answers, cold and then warm, asserted equal to each
    other, to the CTE's on the live file and to stdlib's on the copy."""
    acl, rq = world.acl, world.resource_queries
    cold = []
    for q in rq:
        acl._cache.generation = -1
        cold.append(q.run(acl).allowed)
    acl._cache.generation = -1
    for q in rq:
        q.run(acl)
    assert [q.run(acl).allowed for q in rq] == cold
    ours = cte_ours(world.db, world.graph_id)
    assert [ours(q) for q in rq] == cold
    stdlib = cte_sqlite3(world.copy, world.graph_id)
    assert [stdlib(q) for q in rq] == cold
    assert 0 < cold.count(False) < len(cold)
    return cold


@pytest.fixture(scope="module")
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    small = bool(request.config.getoption("benchmark_disable"))
    n = N_PRINCIPALS_CI if small else N_PRINCIPALS
    rng = random.Random(11)
    folder = tmp_path_factory.mktemp("acl")
    store = alk.Storage.open(folder / "store")
    ada = store.accounts.create(email="ada@example.com")
    org = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
    tenant = store.tenant(org.id)
    built = build(tenant, n, rng, tx_batch=5_000)
    graph_id = tenant.acl.graph_id()
    assert graph_id is not None
    edges = tenant.db.query_one("SELECT count(*) FROM edges WHERE graph_id = ?", (graph_id,))[0]
    # stdlib reads a copy (written by our core): two SQLite libraries on one
    # file in one process release each other's locks (see cte_sqlite3).
    copy = folder / "stdlib.db"
    tenant.db.execute("VACUUM INTO ?", (str(copy),))
    mix = queries(built.model, N_QUERIES_CI if small else N_QUERIES, rng)
    world = World(
        tenant.acl,
        tenant.db,
        built.model,
        copy,
        graph_id,
        [q for q in mix if q.kind == "resource"],
        [],
        n,
        edges,
    )
    world.answers = answers(world)
    yield world
    tenant.close()
    store.close()


def describe(benchmark: Any, world: World) -> None:
    benchmark.extra_info.update(principals=world.principals, edges=world.edges, per_round=1)


@pytest.mark.benchmark(group="acl-check")
def test_acl_check_warm(benchmark: Any, world: World) -> None:
    acl = world.acl
    acl._cache.generation = -1
    for q in world.resource_queries:  # every query cached from here on
        q.run(acl)
    cases = itertools.cycle(zip(world.resource_queries, world.answers, strict=True))
    misses: list[Query] = []

    def run() -> None:
        q, allowed = next(cases)
        if q.run(acl).allowed is not allowed:
            misses.append(q)

    describe(benchmark, world)
    benchmark(run)
    assert not misses


@pytest.mark.benchmark(group="acl-check")
def test_acl_check_cold(benchmark: Any, world: World) -> None:
    acl = world.acl
    cases = itertools.cycle(zip(world.resource_queries, world.answers, strict=True))
    misses: list[Query] = []

    def setup() -> tuple[tuple[Query, bool], dict[str, Any]]:
        acl._cache.generation = -1
        return next(cases), {}

    def run(q: Query, allowed: bool) -> None:
        if q.run(acl).allowed is not allowed:
            misses.append(q)

    describe(benchmark, world)
    benchmark.pedantic(run, setup=setup, rounds=COLD_ROUNDS, iterations=1)
    assert not misses


@pytest.mark.benchmark(group="acl-check")
def test_acl_check_stdlib(benchmark: Any, world: World) -> None:
    check = cte_sqlite3(world.copy, world.graph_id)
    cases = itertools.cycle(zip(world.resource_queries, world.answers, strict=True))
    misses: list[Query] = []

    def run() -> None:
        q, allowed = next(cases)
        if check(q) is not allowed:
            misses.append(q)

    describe(benchmark, world)
    benchmark(run)
    assert not misses


@pytest.mark.benchmark(group="acl-check")
def test_acl_check_after_revoke(benchmark: Any, world: World) -> None:
    """Last in the module: it removes grants."""
    acl = world.acl
    rounds = 1 if benchmark.disabled else REVOKE_ROUNDS
    pairs = iter(revoke_candidates(world.model, random.Random(3), rounds))
    check = cte_ours(world.db, world.graph_id)  # on the live file
    decisions: list[tuple[str, str, Any]] = []

    def setup() -> tuple[tuple[str, str], dict[str, Any]]:
        p, doc = next(pairs)
        assert acl.check_access(p, resource=doc, action="read").allowed  # now cached
        assert acl.revoke(p, doc) is None
        return (p, doc), {}

    def run(p: str, doc: str) -> None:
        decisions.append((p, doc, acl.check_access(p, resource=doc, action="read")))

    describe(benchmark, world)
    benchmark.pedantic(run, setup=setup, rounds=rounds, iterations=1)
    assert len(decisions) == rounds
    for p, doc, decision in decisions:
        assert not decision.allowed, f"{p} still reaches {doc} after the revoke: {decision}"
        assert not check(Query(p, resource=doc, action="read"))
