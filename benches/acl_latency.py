"""Latency of ``tenant.acl.check_access`` on a realistic ACL, per call, with
the baselines a user would otherwise write, measured in the same run on the
same tenant file.

The ACL (built through the public API, one write per transaction unless
``--tx-batch`` is given): ``--principals`` principals, of which 2% are group
principals ``role:team-<n>`` (``"team:<n>"`` is not a valid principal key:
a key's type must be its identity type, one of account/org/service/role),
some nested two or three levels deep with ``join``, and the rest
``service:<n>`` principals, each with 1-3 own scopes from a pool of 30 and
member of 1-3 teams; half as many resources ``doc:<n>`` as principals;
grants from services (~7 each) and teams (~50 each) at read, write or
execute; a few hundred delegations, some of them refused (`AccessDeniedError`).
At the default size that is about 100,000 edges.

Queries: a fixed random mix (``--checks``) of scope checks
(``required_scopes``, ``any_scopes``), resource + action checks and both at
once, about 20% of them denials. Timed per call with
``time.perf_counter_ns``:

- cold: ``acl._cache.generation = -1`` before each call, so the check
  drops the cache and reads everything from SQLite again (on the first
  ``--cold-checks`` queries of the mix: at the default size a cold check
  costs far more than a warm one);
- first pass: every query once, starting from an empty cache (what
  follows any ACL change);
- warm: the same queries again, answered from the cache; the answers must
  equal the first pass's, and the cold ones too (asserted);
- after a revoke: a grant that is the principal's only way to a resource is
  revoked (``acl.revoke``) and the first check after it is timed; it must be
  denied (asserted: correctness, not timing).

Baselines, for the resource + action queries only, each asserted to give the
same answer as ``check_access(...).allowed`` on every one of them: a
recursive CTE over ``edges`` (the principal's ``belongs_to`` closure joined
with the grant edges on the resource, `CTE_SQL`) through our core's
``db.query``, through apsw and through stdlib ``sqlite3`` (these two in a
child process each: see `cte_sqlite3`), all on the same file; and networkx
(``descendants`` on a ``DiGraph`` of the ``belongs_to`` edges, loaded once,
plus a dict of the grants). A diagnostic row times the same CTE written
with a plain ``JOIN`` (`CTE_PLAIN_SQL`), as acl.py's queries are.

Targets (printed, not asserted): p99 <= 100 us warm, <= 1 ms cold.

Run: ``python benches/acl_latency.py [--principals 10000] [--checks 20000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import multiprocessing
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import alkdev_storage as alk

PRAGMAS = (
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
    "PRAGMA cache_size=-32000; PRAGMA temp_store=MEMORY;"
)
SCOPE_POOL = tuple(
    f"{area}:{verb}"
    for area in ("docs", "repos", "builds", "deploys", "logs", "metrics", "keys", "billing")
    for verb in ("read", "write", "admin", "list")
)[:30]
ACTIONS = ("read", "write", "execute")
LEVEL = {"read": 1, "write": 2, "execute": 3}
GRANT_TYPES = {1: ("can_read", "can_write", "can_execute"), 2: ("can_write", "can_execute")}
GRANT_TYPES[3] = ("can_execute",)
TARGET_WARM_NS = 100_000
TARGET_COLD_NS = 1_000_000

# The baseline: the principal's belongs_to closure (itself included), joined
# with the grant edges of a sufficient level on the resource. CROSS JOIN
# keeps the frontier as the outer loop of the recursive step, as
# metagraph/graphs.py does for traversals (see its "Query plans" note):
# tenant files have no planner statistics, and SQLite 3.53/3.54 left to
# itself (CTE_PLAIN_SQL) scans every edge of the graph at every step.
CTE_SQL = """
WITH RECURSIVE i(k) AS (
  SELECT ?1
  UNION
  SELECT e.target_node_key FROM i CROSS JOIN edges e
    ON e.graph_id = ?2 AND e.source_node_key = i.k AND e.type = 'belongs_to'
)
SELECT EXISTS (
  SELECT 1 FROM i JOIN edges e
    ON e.graph_id = ?2 AND e.source_node_key = i.k AND e.target_node_key = ?3
    AND e.type IN (SELECT value FROM json_each(?4))
)
"""
CTE_PLAIN_SQL = CTE_SQL.replace("CROSS JOIN", "JOIN")
_LEVEL_TYPES = {
    lvl: "[" + ",".join(f'"{t}"' for t in types) + "]" for lvl, types in GRANT_TYPES.items()
}


# ---------------------------------------------------------------- the ACL


@dataclass
class Model:
    """What the builder wrote, to pick queries that mean something (the
    answers themselves come from check_access and the baselines)."""

    teams: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    docs: list[str] = field(default_factory=list)
    scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    parents: dict[str, list[str]] = field(default_factory=dict)
    grants: dict[tuple[str, str], int] = field(default_factory=dict)
    by_holder: dict[str, list[str]] = field(default_factory=dict)
    delegated: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)

    def ancestors(self, key: str) -> set[str]:
        seen = {key}
        stack = [key]
        while stack:
            for parent in self.parents.get(stack.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    def effective(self, key: str) -> set[str]:
        """Own and inherited scopes (delegations left out: a lower bound)."""
        return {s for a in self.ancestors(key) for s in self.scopes.get(a, ())}

    def reachable(self, key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for holder in self.ancestors(key):
            for doc in self.by_holder.get(holder, ()):
                out[doc] = max(out.get(doc, 0), self.grants[(holder, doc)])
        return out


@dataclass
class Built:
    model: Model
    seconds: dict[str, float]
    writes: int
    delegations_ok: int
    delegations_refused: int


class _Writer:
    """One write per transaction, or `batch` writes per transaction."""

    def __init__(self, tenant: Any, batch: int) -> None:
        self.tenant = tenant
        self.batch = batch
        self.count = 0
        self._tx: Any = None
        self._cm: Any = None

    def tx(self) -> dict[str, Any]:
        if not self.batch:
            self.count += 1
            return {}
        if self._tx is not None and self.count % self.batch == 0:
            self.flush()
        if self._tx is None:
            self._cm = self.tenant.db.transaction()
            self._tx = self._cm.__enter__()
        self.count += 1
        return {"tx": self._tx}

    def flush(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = self._tx = None


def build(tenant: Any, principals: int, rng: random.Random, *, tx_batch: int = 0) -> Built:
    """The ACL described in the module docstring, in `tenant.acl`."""
    acl = tenant.acl
    m = Model()
    w = _Writer(tenant, tx_batch)
    seconds: dict[str, float] = {}
    n_teams = max(principals // 50, 4)
    n_services = principals - n_teams
    n_docs = principals // 2

    @contextlib.contextmanager
    def phase(name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        w.flush()
        seconds[name] = time.perf_counter() - t0

    with phase("teams (add_principal + join)"):
        for i in range(n_teams):
            key = f"role:team-{i}"
            own = tuple(rng.sample(SCOPE_POOL, rng.randint(0, 2)))
            acl.add_principal(
                key, identity_type="role", identity_id=f"team-{i}", scopes=own, **w.tx()
            )
            m.teams.append(key)
            m.scopes[key] = own
        # Levels: the first 10% are top level, the next 30% join one of
        # them, the rest join one of the second level (three deep) or, for
        # a third of them, a top-level team (two deep).
        top, mid = max(n_teams // 10, 1), max(n_teams * 4 // 10, 2)
        for i in range(top, n_teams):
            parent = (
                rng.randrange(top) if i < mid or rng.random() < 1 / 3 else rng.randrange(top, mid)
            )
            acl.join(m.teams[i], m.teams[parent], **w.tx())
            m.parents.setdefault(m.teams[i], []).append(m.teams[parent])
    with phase("services (add_principal)"):
        for i in range(n_services):
            key = f"service:{i}"
            own = tuple(rng.sample(SCOPE_POOL, rng.randint(1, 3)))
            acl.add_principal(
                key, identity_type="service", identity_id=str(i), scopes=own, **w.tx()
            )
            m.services.append(key)
            m.scopes[key] = own
    with phase("memberships (join)"):
        for key in m.services:
            for team in rng.sample(m.teams, rng.randint(1, 3)):
                acl.join(key, team, **w.tx())
                m.parents.setdefault(key, []).append(team)
    with phase("resources (add_resource)"):
        for i in range(n_docs):
            m.docs.append(acl.add_resource(f"doc:{i}", **w.tx()))

    def grant(holder: str, doc: str) -> None:
        action = rng.choices(ACTIONS, weights=(6, 3, 1))[0]
        acl.grant(holder, doc, action, **w.tx())
        if (holder, doc) not in m.grants:
            m.by_holder.setdefault(holder, []).append(doc)
        m.grants[(holder, doc)] = max(m.grants.get((holder, doc), 0), LEVEL[action])

    with phase("grants (grant)"):
        for team in m.teams:
            for doc in rng.sample(m.docs, min(50, n_docs)):
                grant(team, doc)
        for key in m.services:
            for doc in rng.sample(m.docs, rng.randint(4, 10)):
                grant(key, doc)
    ok = refused = 0
    with phase("delegations (delegate)"):
        n_deleg = max(principals // 33, 10)
        for i in range(n_deleg):
            source, target = rng.sample(m.services, 2)
            kind = i % 6
            if kind < 4:  # a subset of the source's own scopes: accepted
                own = m.scopes[source]
                scopes = rng.sample(own, rng.randint(1, len(own)))
            elif kind == 4 and m.delegated:  # pass on what was delegated to it
                source = rng.choice(sorted(m.delegated))
                scopes = [rng.choice(m.delegated[source])[0]]
            else:  # something the source does not hold: refused
                held = m.effective(source)
                scopes = [rng.choice([s for s in SCOPE_POOL if s not in held])]
            narrowable = rng.random() < 0.5
            try:
                acl.delegate(source, target, scopes=scopes, narrowable=narrowable, **w.tx())
            except alk.AccessDeniedError:
                refused += 1
                continue
            ok += 1
            for s in scopes:
                m.delegated.setdefault(target, []).append((s, narrowable))
    return Built(m, seconds, w.count, ok, refused)


# ---------------------------------------------------------------- queries


@dataclass(frozen=True)
class Query:
    principal: str
    required: tuple[str, ...] = ()
    anyof: tuple[str, ...] = ()
    resource: str | None = None
    action: str | None = None

    @property
    def kind(self) -> str:
        if self.resource is None:
            return "scope"
        return "resource+scope" if self.required else "resource"

    def run(self, acl: Any) -> Any:
        return acl.check_access(
            self.principal,
            required_scopes=self.required,
            any_scopes=self.anyof,
            resource=self.resource,
            action=self.action,
        )


def queries(m: Model, n: int, rng: random.Random) -> list[Query]:
    """A random mix: 45% resource + action, 35% required scopes, 10%
    any_scopes, 10% both; most picked from what the principal was given."""
    out: list[Query] = []
    for _ in range(n):
        p = rng.choice(m.services) if rng.random() < 0.95 else rng.choice(m.teams)
        r = rng.random()
        effective = sorted(m.effective(p)) or [SCOPE_POOL[0]]
        if r < 0.55:  # resource (+ scope for 10 of these 55)
            reach = m.reachable(p)
            if reach and rng.random() < 0.8:
                doc = rng.choice(sorted(reach))
                action = rng.choice(ACTIONS[: reach[doc]])
            else:
                doc, action = rng.choice(m.docs), rng.choice(ACTIONS)
            required = (rng.choice(effective),) if r >= 0.45 else ()
            out.append(Query(p, required, (), doc, action))
        elif r < 0.9:
            k = rng.randint(1, 2)
            pool = effective if rng.random() < 0.85 else list(SCOPE_POOL)
            out.append(Query(p, tuple(rng.sample(pool, min(k, len(pool))))))
        else:
            out.append(Query(p, anyof=tuple(rng.sample(SCOPE_POOL, 3))))
    return out


# ---------------------------------------------------------------- baselines


def _cte_args(q: Query, graph_id: str) -> tuple[str, str, str | None, str]:
    return (q.principal, graph_id, q.resource, _LEVEL_TYPES[LEVEL[str(q.action)]])


def cte_ours(db: Any, graph_id: str, sql: str = CTE_SQL) -> Callable[[Query], bool]:
    """The CTE through our own core (``db.query``): the same SQLite library
    as check_access, so safe on the live file in this process."""

    def check(q: Query) -> bool:
        return bool(db.query_one(sql, _cte_args(q, graph_id))[0])

    return check


# Only in a process that does not have the file open through alkdev_storage:
# POSIX locks belong to the process, so two SQLite libraries on one file in
# one process release each other's locks (SQLite's "How To Corrupt" §2.2,
# docs/wakes.md). Here that showed as a revoke committed by our core that
# stdlib sqlite3 and apsw, opened in the same process, did not see.
def cte_sqlite3(path: Path, graph_id: str, sql: str = CTE_SQL) -> Callable[[Query], bool]:
    """The CTE through stdlib ``sqlite3``, configured like our core."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.executescript(PRAGMAS)

    def check(q: Query) -> bool:
        return bool(conn.execute(sql, _cte_args(q, graph_id)).fetchall()[0][0])

    return check


def cte_apsw(path: Path, graph_id: str, sql: str = CTE_SQL) -> Callable[[Query], bool]:
    """The CTE through apsw (same caveat as `cte_sqlite3`)."""
    import apsw

    conn = apsw.Connection(str(path))
    conn.execute(PRAGMAS).fetchall()

    def check(q: Query) -> bool:
        return bool(conn.execute(sql, _cte_args(q, graph_id)).fetchall()[0][0])

    return check


def _baseline_worker(
    library: str, path: str, graph_id: str, items: list[Query]
) -> tuple[list[int], list[bool]]:
    """In a child process: time `library`'s CTE on `items`."""
    make = cte_apsw if library == "apsw" else cte_sqlite3
    return timed(items, make(Path(path), graph_id))


def in_child(
    library: str, path: Path, graph_id: str, items: list[Query]
) -> tuple[list[int], list[bool]]:
    """`_baseline_worker` in a fresh (spawned) process, on the same file."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(_baseline_worker, library, str(path), graph_id, items).result()


def sqlite_versions() -> dict[str, str]:
    found = {"sqlite3": sqlite3.sqlite_version}
    with contextlib.suppress(ImportError):
        import apsw

        found["apsw"] = apsw.sqlite_lib_version()
    return found


def networkx_check(db: Any, graph_id: str) -> tuple[Callable[[Query], bool], float]:
    """A DiGraph of the belongs_to edges and a dict of the grants, loaded
    once (the seconds that took returned beside the check)."""
    import networkx as nx

    t0 = time.perf_counter()
    g = nx.DiGraph()
    g.add_edges_from(
        db.query(
            "SELECT source_node_key, target_node_key FROM edges "
            "WHERE graph_id = ? AND type = 'belongs_to'",
            (graph_id,),
        )
    )
    levels = {"can_read": 1, "can_write": 2, "can_execute": 3}
    grants: dict[str, dict[str, int]] = {}
    for source, target, kind in db.query(
        "SELECT source_node_key, target_node_key, type FROM edges "
        "WHERE graph_id = ? AND type IN ('can_read', 'can_write', 'can_execute')",
        (graph_id,),
    ):
        grants.setdefault(target, {})[source] = levels[kind]
    loaded = time.perf_counter() - t0

    def check(q: Query) -> bool:
        holders = grants.get(str(q.resource))
        if not holders:
            return False
        need = LEVEL[str(q.action)]
        reach = nx.descendants(g, q.principal) if q.principal in g else set()
        reach.add(q.principal)
        return any(lvl >= need and h in reach for h, lvl in holders.items())

    return check, loaded


# ---------------------------------------------------------------- timing


def percentile(sorted_ns: Sequence[int], q: float) -> int:
    """Nearest rank."""
    return sorted_ns[min(len(sorted_ns) - 1, max(0, math.ceil(q * len(sorted_ns)) - 1))]


def timed(
    items: Sequence[Any], call: Callable[[Any], Any], before: Callable[[], None] | None = None
) -> tuple[list[int], list[Any]]:
    clock = time.perf_counter_ns
    out_ns: list[int] = []
    results: list[Any] = []
    gc.collect()
    for item in items:
        if before is not None:
            before()
        t0 = clock()
        result = call(item)
        t1 = clock()
        out_ns.append(t1 - t0)
        results.append(result)
    return out_ns, results


@dataclass
class Row:
    name: str
    ns: list[int]

    def stats(self) -> tuple[int, int, int, int]:
        s = sorted(self.ns)
        return len(s), percentile(s, 0.5), percentile(s, 0.99), s[-1]


def us(ns: int) -> str:
    return f"{ns / 1000:,.1f} µs"


def table(rows: Sequence[Row]) -> str:
    lines = ["| measurement | calls | p50 | p99 | max |", "|---|---|---|---|---|"]
    for row in rows:
        n, p50, p99, mx = row.stats()
        lines.append(f"| {row.name} | {n:,} | {us(p50)} | {us(p99)} | {us(mx)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def revoke_candidates(m: Model, rng: random.Random, n: int) -> list[tuple[str, str]]:
    """(service, doc) pairs where the service's own grant is its only way
    to the doc (no team it belongs to has a grant on it)."""
    out: list[tuple[str, str]] = []
    services = list(m.services)
    rng.shuffle(services)
    used: set[str] = set()
    for p in services:
        above = m.ancestors(p) - {p}
        for doc in m.by_holder.get(p, ()):
            if doc not in used and not any((a, doc) in m.grants for a in above):
                out.append((p, doc))
                used.add(doc)
                break
        if len(out) >= n:
            break
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--principals", type=int, default=10_000)
    ap.add_argument("--checks", type=int, default=20_000, help="queries in the mix")
    ap.add_argument(
        "--cold-checks",
        type=int,
        default=2_000,
        help="time the cold checks on the first N queries of the mix (0: all)",
    )
    ap.add_argument("--revokes", type=int, default=100)
    ap.add_argument(
        "--revoke-fill",
        type=int,
        default=5,
        help="checks from the mix run before each revoke, so the cache holds something",
    )
    ap.add_argument(
        "--plain-checks",
        type=int,
        default=200,
        help="resource checks to time the unsteered CTE (CTE_PLAIN_SQL) on",
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--tx-batch",
        type=int,
        default=0,
        help="writes per transaction while building (0: one transaction per write)",
    )
    ap.add_argument("--dir", type=Path, default=None, help="where the store goes (default: temp)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    versions = sqlite_versions()

    with contextlib.ExitStack() as stack:
        folder = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        store = alk.Storage.open(folder)
        stack.callback(store.close)
        ada = store.accounts.create(email="ada@example.com")
        org = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
        tenant = store.tenant(org.id)
        stack.callback(tenant.close)
        acl = tenant.acl
        db = tenant.db
        ours = db.query_one("SELECT sqlite_version()")[0]

        t0 = time.perf_counter()
        built = build(tenant, args.principals, rng, tx_batch=args.tx_batch)
        build_s = time.perf_counter() - t0
        m = built.model
        graph_id = acl.graph_id()
        assert graph_id is not None
        n_nodes, n_edges = (
            db.query_one("SELECT count(*) FROM nodes WHERE graph_id = ?", (graph_id,))[0],
            db.query_one("SELECT count(*) FROM edges WHERE graph_id = ?", (graph_id,))[0],
        )
        edge_types = dict(
            db.query(
                "SELECT type, count(*) FROM edges WHERE graph_id = ? GROUP BY type", (graph_id,)
            )
        )
        n_principals = db.query_one(
            "SELECT count(*) FROM nodes WHERE graph_id = ? AND type = 'principal'", (graph_id,)
        )[0]
        mode = (
            f"{args.tx_batch} writes per transaction"
            if args.tx_batch
            else "one transaction per write"
        )
        print(
            f"built {n_principals:,} principals, {n_nodes - n_principals:,} resources, "
            f"{n_edges:,} edges ({', '.join(f'{k} {v:,}' for k, v in sorted(edge_types.items()))})"
            f" with {built.writes:,} API writes ({mode}) in {build_s:.1f} s "
            f"= {build_s / built.writes * 1e6:.0f} µs per write; delegations "
            f"{built.delegations_ok} accepted, {built.delegations_refused} refused"
        )
        for name, s in built.seconds.items():
            print(f"  {name}: {s:.1f} s")
        print(f"SQLite: ours {ours}, " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        db.checkpoint("TRUNCATE")

        qs = queries(m, args.checks, rng)
        kinds: dict[str, int] = {}
        for q in qs:
            kinds[q.kind] = kinds.get(q.kind, 0) + 1
        res_idx = [i for i, q in enumerate(qs) if q.kind == "resource"]
        res_qs = [qs[i] for i in res_idx]

        # Cold, timed on the first --cold-checks queries; the fill pass gives
        # every answer; warm, timed on all of them, must give the same ones.
        def cold() -> None:
            acl._cache.generation = -1

        n_cold = min(args.cold_checks or len(qs), len(qs))
        t0 = time.perf_counter()
        cold_ns, cold_res = timed(qs[:n_cold], lambda q: q.run(acl), cold)
        cold_s = time.perf_counter() - t0
        print(f"cold pass: {n_cold:,} checks in {cold_s:.1f} s", flush=True)
        cold()
        t0 = time.perf_counter()
        fill_ns, fill_res = timed(qs, lambda q: q.run(acl))
        fill_s = time.perf_counter() - t0
        allowed = [d.allowed for d in fill_res]
        assert [d.allowed for d in cold_res] == allowed[:n_cold], "cold and fill answers differ"
        warm_ns, warm_res = timed(qs, lambda q: q.run(acl))
        assert [d.allowed for d in warm_res] == allowed, "warm and cold answers differ"
        denied = allowed.count(False)
        print(
            f"{len(qs):,} queries ({', '.join(f'{k} {v:,}' for k, v in sorted(kinds.items()))}); "
            f"{denied:,} denied ({denied / len(qs):.0%}); first pass {fill_s:.1f} s",
            flush=True,
        )
        want = [allowed[i] for i in res_idx]

        # Baselines. Ours and networkx here; stdlib sqlite3 and apsw each in
        # a child process on the same file (see `cte_sqlite3`).
        ours_check = cte_ours(db, graph_id)
        nx_check, nx_load = networkx_check(db, graph_id)
        measured: list[tuple[str, list[int], list[bool]]] = []
        ns, got = timed(res_qs, ours_check)
        measured.append((f"recursive CTE, our core's db.query (SQLite {ours})", ns, got))
        if "apsw" in versions:
            ns, got = in_child("apsw", db.path, graph_id, res_qs)
            measured.append((f"recursive CTE, apsw (SQLite {versions['apsw']})", ns, got))
        ns, got = in_child("sqlite3", db.path, graph_id, res_qs)
        measured.append((f"recursive CTE, stdlib sqlite3 (SQLite {versions['sqlite3']})", ns, got))
        ns, got = timed(res_qs, nx_check)
        measured.append(("networkx DiGraph (loaded once)", ns, got))
        base_rows: list[Row] = []
        for name, ns, got in measured:
            bad = [q for q, a, b in zip(res_qs, got, want, strict=True) if a != b]
            assert not bad, f"{name} disagrees with check_access on {len(bad)} queries: {bad[:3]}"
            base_rows.append(Row(f"baseline: {name}, resource checks", ns))
        # The same CTE with a plain JOIN in its recursive step, on a few, on
        # the SQLite check_access runs on.
        few = res_qs[: args.plain_checks]
        ns, got = timed(few, cte_ours(db, graph_id, CTE_PLAIN_SQL))
        assert got == want[: len(few)], "the plain-JOIN CTE disagrees with check_access"
        plain_row = Row(f"diagnostic: the CTE with a plain JOIN, our core (SQLite {ours})", ns)
        print(
            f"baselines agree with check_access on all {len(res_qs):,} resource checks "
            f"({sum(want):,} allowed); networkx load {nx_load:.2f} s"
        )

        # After a revoke: the cache warm with a slice of the query set and
        # the grant's own check, then the revoke, then the first check.
        revokes = revoke_candidates(m, rng, args.revokes)
        fill = args.revoke_fill
        after_ns: list[int] = []
        revoke_ns: list[int] = []
        clock = time.perf_counter_ns
        gc.collect()
        for j, (p, doc) in enumerate(revokes):
            start = j * fill % len(qs)
            for q in qs[start : start + fill]:
                q.run(acl)
            assert acl.check_access(p, resource=doc, action="read").allowed, (p, doc)
            t0 = clock()
            left = acl.revoke(p, doc)
            t1 = clock()
            decision = acl.check_access(p, resource=doc, action="read")
            t2 = clock()
            assert left is None
            assert not decision.allowed, f"{p} still reaches {doc} after the revoke: {decision}"
            assert not ours_check(Query(p, resource=doc, action="read"))
            revoke_ns.append(t1 - t0)
            after_ns.append(t2 - t1)
        print(f"{len(revokes)} revokes: every first check after one was denied")

        warm_all = Row("check_access warm, all queries", warm_ns)
        cold_all = Row("check_access cold, all queries", cold_ns)
        warm_res_row = Row("check_access warm, resource checks", [warm_ns[i] for i in res_idx])
        cold_res_row = Row(
            "check_access cold, resource checks", [cold_ns[i] for i in res_idx if i < n_cold]
        )
        rows = [
            warm_all,
            warm_res_row,
            cold_all,
            cold_res_row,
            Row("check_access first pass (filling the cache), all queries", fill_ns),
            Row("check_access, first check after a revoke", after_ns),
            Row("acl.revoke (the write itself)", revoke_ns),
            *base_rows,
            plain_row,
        ]
        print()
        print(table(rows))
        print()
        cold_p50, warm_p50 = cold_res_row.stats()[1], warm_res_row.stats()[1]
        for (name, _, _), row in zip(measured, base_rows, strict=True):
            p50 = row.stats()[1]
            print(
                f"p50 {name} / check_access p50: vs cold {p50 / cold_p50:.3g}x, "
                f"vs warm {p50 / warm_p50:.3g}x (above 1.0: check_access faster)"
            )
        print()
        for label, row, target in (
            ("warm", warm_all, TARGET_WARM_NS),
            ("cold", cold_all, TARGET_COLD_NS),
        ):
            p99 = row.stats()[2]
            verdict = "met" if p99 <= target else "NOT met"
            print(f"target: p99 <= {us(target)} {label}; measured {us(p99)}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
