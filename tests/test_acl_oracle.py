"""``tenant.acl.check_access`` against a brute-force oracle.

Hypothesis builds small ACL graphs through the public API (joins, leaves,
delegations, grants, revokes; cycles included) and interleaves checks. For
each check the oracle reads the graph back and recomputes effective scopes E
and delegable scopes D naively, applying every rule until nothing changes:

- own(P) ⊆ D(P) ⊆ E(P);
- P belongs_to Q ⇒ E(Q) ⊆ E(P) and D(Q) ⊆ D(P);
- X delegates N to Y ⇒ D(X) ∩ N ⊆ E(Y), and ⊆ D(Y) if narrowable.

A check is allowed iff the principal exists, holds every required scope and
one of ``any_scopes`` (if given) and, for a resource, the resource exists,
is in the principal's ``resources`` (if it has them) and something in its
``belongs_to`` closure has a grant of that level. Every allowed decision's
paths must be real derivations in the graph, a denial must explain itself,
and the oracle agrees with every delegation accepted or refused.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alkdev_storage as alk

ACTIONS = {"read": 1, "write": 2, "execute": 3}
GRANT_LEVELS = {"can_read": 1, "can_write": 2, "can_execute": 3}
POOL = ("alpha", "beta", "gamma", "graphs:read")
QUERY_POOL = (*POOL, "org:admin")
COUNTER = itertools.count()
Env = tuple[alk.Storage, str, str]


@dataclass
class Model:
    """The ACL graph as read back: node types, principals' own scopes and
    resource lists, and the edges by kind."""

    kinds: dict[str, str] = field(default_factory=dict)
    own: dict[str, set[str]] = field(default_factory=dict)
    resources: dict[str, set[str] | None] = field(default_factory=dict)
    belongs: set[tuple[str, str]] = field(default_factory=set)
    delegates: dict[tuple[str, str], tuple[frozenset[str], bool]] = field(default_factory=dict)
    grants: dict[tuple[str, str], int] = field(default_factory=dict)


def read_model(t: alk.Tenant) -> Model:
    gid, m = t.acl.graph_id(), Model()
    for key, kind, attrs in t.db.query(
        "SELECT key, type, attributes FROM nodes WHERE graph_id = ?", (gid,)
    ):
        m.kinds[key] = kind
        if kind == "principal":
            doc = json.loads(attrs)
            m.own[key] = set(doc["scopes"])
            m.resources[key] = set(doc["resources"]) if "resources" in doc else None
    for src, dst, kind, attrs in t.db.query(
        "SELECT source_node_key, target_node_key, type, attributes FROM edges WHERE graph_id = ?",
        (gid,),
    ):
        if kind == "belongs_to":
            m.belongs.add((src, dst))
        elif kind == "delegates":
            doc = json.loads(attrs)
            m.delegates[src, dst] = (frozenset(doc["narrowedScopes"]), bool(doc["narrowable"]))
        else:
            m.grants[src, dst] = GRANT_LEVELS[kind]
    return m


def fixpoint(m: Model) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """E and D: apply every rule until nothing changes."""
    eff = {p: set(s) for p, s in m.own.items()}
    dlg = {p: set(s) for p, s in m.own.items()}

    def widen(table: dict[str, set[str]], key: str, more: set[str]) -> bool:
        if key not in table or more <= table[key]:
            return False
        table[key] |= more
        return True

    changed = True
    while changed:
        changed = False
        for p, q in m.belongs:
            changed |= widen(eff, p, eff.get(q, set()))
            changed |= widen(dlg, p, dlg.get(q, set()))
        for (x, y), (narrowed, narrowable) in m.delegates.items():
            carried = dlg.get(x, set()) & narrowed
            changed |= widen(eff, y, carried)
            if narrowable:
                changed |= widen(dlg, y, carried)
    return eff, dlg


def belongs_closure(m: Model, p: str) -> set[str]:
    seen, changed = {p}, True
    while changed:
        more = {b for a, b in m.belongs if a in seen} - seen
        seen, changed = seen | more, bool(more)
    return seen


def scope_path_ok(m: Model, path: tuple[str, ...], p: str, scope: str) -> bool:
    """Walk from the owner of `scope` (the end) back to `p`: belongs_to hops
    forward, delegation hops backward, none after a non-narrowable one."""
    if not path or path[0] != p or scope not in m.own.get(path[-1], set()):
        return False
    passable = True
    for giver, taker in itertools.pairwise(reversed(path)):
        if (taker, giver) in m.belongs:
            continue
        edge = m.delegates.get((giver, taker))
        if edge is None or not passable or scope not in edge[0]:
            return False
        passable = edge[1]
    return True


def resource_path_ok(m: Model, path: tuple[str, ...], p: str, res: str, level: int) -> bool:
    if len(path) < 2 or path[0] != p or path[-1] != res:
        return False
    hops = itertools.pairwise(path[:-1])
    return all(h in m.belongs for h in hops) and m.grants.get((path[-2], res), 0) >= level


def check(
    t: alk.Tenant, p: str, req: list[str], anyof: list[str], res: Any = None, act: Any = None
) -> None:
    """One check_access, compared with the oracle on the state read back now."""
    m = read_model(t)
    eff = fixpoint(m)[0].get(p, set())
    d = t.acl.check_access(p, required_scopes=req, any_scopes=anyof, resource=res, action=act)
    why = f"{p} req={req} any={anyof} {act}:{res} -> {d}\nE={eff}\n{m}"
    allowed = p in m.own and set(req) <= eff and (not anyof or bool(set(anyof) & eff))
    if res is not None:
        allowed = (
            allowed
            and m.kinds.get(res) == "resource"
            and ((listed := m.resources[p]) is None or res in listed)
            and any(m.grants.get((h, res), 0) >= ACTIONS[act] for h in belongs_closure(m, p))
        )
    assert d.allowed == allowed, why
    assert d.scopes == frozenset(eff), why
    again = t.acl.check_access(p, required_scopes=req, any_scopes=anyof, resource=res, action=act)
    assert again == d, why
    if not allowed:
        assert isinstance(d.reason, str) and d.reason and d.path == (), why
        missing = [s for s in req if s not in eff]
        assert p not in m.own or not missing or any(s in d.reason for s in missing), why
        return
    for name, path in d.paths.items():
        if name.startswith("scope:"):
            assert name[6:] in eff and scope_path_ok(m, path, p, name[6:]), (name, why)
        else:
            assert name == f"{act}:{res}" and resource_path_ok(m, path, p, res, ACTIONS[act]), why
    assert {f"scope:{s}" for s in req} <= d.paths.keys(), why
    assert not anyof or any(f"scope:{s}" in d.paths for s in anyof), why
    if res is not None:
        assert d.path == d.paths[f"{act}:{res}"], why
    else:
        assert d.path in d.paths.values() if d.paths else d.path == (p,), why


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    store = alk.Storage.open(Path(tmp_path_factory.mktemp("acl_oracle")))
    ada = store.accounts.create(email="ada@example.com")
    org = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
    yield store, org.id, ada.id
    store.close()


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_check_access_matches_oracle(env: Env, data: st.DataObject) -> None:
    store, org_id, account_id = env
    n, pick = next(COUNTER), st.sampled_from
    draw = data.draw
    services = [f"service:e{n}p{i}" for i in range(draw(st.integers(2, 7), "principals"))]
    docs = [f"doc:e{n}r{j}" for j in range(draw(st.integers(1, 3), "resources"))]
    roles = ["role:member", "role:admin", "role:owner"]
    groups = [*services, *roles, f"org:{org_id}"]
    sources = [*services, *roles, f"account:{account_id}"]
    askers = [*sources, f"org:{org_id}", f"service:e{n}ghost", docs[0]]
    targets = [*docs, f"doc:e{n}ghost", services[0]]
    ops = ["join", "cycle", "leave", "delegate", "delegate", "undelegate"]
    ops += ["grant", "grant", "revoke", "rescope", "check", "check"]
    own_scopes = st.lists(pick(POOL), unique=True, max_size=2)
    listed = st.none() | st.lists(pick(targets[:-1]), unique=True, max_size=3)

    def query() -> None:
        p = draw(pick(services) | pick(askers))
        held = sorted(fixpoint(read_model(t))[0].get(p, ()))
        scopes = st.lists(pick(QUERY_POOL), max_size=2)
        if held:
            scopes |= st.lists(pick(held), min_size=1, max_size=2)
        res = draw(st.none() | pick(docs) | pick(targets))
        act = None if res is None else draw(pick(list(ACTIONS)))
        check(t, p, draw(st.just([]) | scopes), draw(st.just([]) | scopes), res, act)

    created: list[str] = []
    with store.tenant(org_id) as t:
        acl = t.acl
        try:
            for key in docs:
                created.append(acl.add_resource(key))
            for key in services:
                own, only = draw(own_scopes), draw(listed)
                acl.add_principal(
                    key, identity_type="service", identity_id=key[8:], scopes=own, resources=only
                )
                created.append(key)
            for _ in range(draw(st.integers(0, 16), "operations")):
                op, a, b = draw(pick(ops)), draw(pick(services)), draw(pick(groups))
                if op in ("join", "cycle"):
                    pairs = [(a, b)] if op == "join" else [(a, c := draw(pick(services))), (c, a)]
                    for x, y in pairs:
                        other = (x, y) in read_model(t).delegates
                        if x == y:
                            refused = pytest.raises(alk.SelfLoopError)
                        elif other:  # one edge per pair: a delegation is there already
                            refused = pytest.raises(alk.MultiEdgeError)
                        else:
                            refused = contextlib.nullcontext()
                        with refused:
                            acl.join(x, y)
                elif op == "leave":
                    acl.leave(a, b)
                elif op == "rescope":
                    acl.set_scopes(a, draw(own_scopes), resources=draw(listed))
                elif op == "delegate":
                    x, m = draw(pick(services) | pick(sources)), read_model(t)
                    have = sorted(fixpoint(m)[1][x])
                    some = pick(have) if draw(st.booleans()) and have else pick(POOL)
                    scopes = draw(st.lists(some, min_size=1, max_size=2, unique=True))
                    ok, what = set(scopes) <= set(have), (x, a, scopes, have)
                    try:
                        acl.delegate(x, a, scopes=scopes, narrowable=draw(st.booleans()))
                    except alk.AccessDeniedError:
                        assert not ok, what
                    except alk.MultiEdgeError:
                        assert ok and (x, a) in m.belongs, what
                    except alk.SelfLoopError:
                        assert ok and x == a, what
                    else:
                        assert ok and x != a and (x, a) not in m.belongs, what
                        check(t, a, scopes, [])
                elif op == "undelegate":
                    acl.undelegate(draw(pick(sources)), a)
                elif op in ("grant", "revoke"):
                    holder, doc = draw(pick(services) | pick(roles)), draw(pick(docs))
                    action = draw(pick(list(ACTIONS)))
                    if op == "grant":
                        acl.grant(holder, doc, action)
                    else:
                        acl.revoke(holder, doc, draw(st.none() | st.just(action)))
                    check(t, draw(st.just(holder) | pick(services)), [], [], doc, action)
                else:
                    query()
            for _ in range(draw(st.integers(3, 6), "final checks")):
                query()
        finally:
            for key in reversed(created):
                acl.remove(key)


# ---------------------------------------------------------------- named cases


@pytest.fixture
def named(env: Env) -> Iterator[tuple[alk.Tenant, str]]:
    """The shared tenant and a fresh key prefix; what the test adds is removed."""
    store, org_id, _ = env
    with store.tenant(org_id) as t:
        before = read_model(t).kinds.keys()
        yield t, f"n{next(COUNTER)}"
        for key in read_model(t).kinds.keys() - before:
            t.acl.remove(key)


def add_services(t: alk.Tenant, ns: str, **scopes: list[str]) -> list[str]:
    for name, own in scopes.items():
        key = f"service:{ns}{name}"
        t.acl.add_principal(key, identity_type="service", identity_id=key[8:], scopes=own)
    return [f"service:{ns}{name}" for name in scopes]


@pytest.mark.timeout(30)
def test_belongs_to_cycle_shares_scopes(named: tuple[alk.Tenant, str]) -> None:
    t, ns = named
    a, b = add_services(t, ns, a=["alpha"], b=["beta"])
    t.acl.join(a, b)
    t.acl.join(b, a)
    for p in (a, b):
        assert t.acl.effective_scopes(p) == {"alpha", "beta"}
        check(t, p, ["alpha", "beta"], [])


def test_non_narrowable_delegation_stops_at_the_delegate(named: tuple[alk.Tenant, str]) -> None:
    t, ns = named
    a, b, c = add_services(t, ns, a=["alpha"], b=[], c=[])
    t.acl.delegate(a, b, scopes=["alpha"], narrowable=False)
    d = t.acl.check_access(b, required_scopes=["alpha"])
    assert d.allowed and d.paths["scope:alpha"] == (b, a)
    with pytest.raises(alk.AccessDeniedError):
        t.acl.delegate(b, c, scopes=["alpha"], narrowable=True)
    denied = t.acl.check_access(c, required_scopes=["alpha"])
    assert not denied.allowed and "alpha" in denied.reason
    check(t, c, ["alpha"], [])


def test_revoke_is_seen_by_the_next_check(named: tuple[alk.Tenant, str]) -> None:
    t, ns = named
    (a,) = add_services(t, ns, a=[])
    doc = t.acl.add_resource(f"doc:{ns}")
    t.acl.grant(a, doc, "read")
    assert t.acl.check_access(a, resource=doc, action="read").allowed
    t.acl.revoke(a, doc, "read")
    denied = t.acl.check_access(a, resource=doc, action="read")
    assert not denied.allowed and denied.reason


def test_resource_list_excludes_a_granted_resource(named: tuple[alk.Tenant, str]) -> None:
    t, ns = named
    listed, other = t.acl.add_resource(f"doc:{ns}1"), t.acl.add_resource(f"doc:{ns}2")
    a = f"service:{ns}a"
    t.acl.add_principal(a, identity_type="service", identity_id=f"{ns}a", resources=[listed])
    t.acl.grant(a, listed, "write")
    t.acl.grant(a, other, "write")
    assert t.acl.check_access(a, resource=listed, action="write").allowed
    denied = t.acl.check_access(a, resource=other, action="read")
    assert not denied.allowed and denied.reason
    check(t, a, [], [], other, "read")
