"""alkdev_storage.sqlalchemy.metadata: every `Table` matches the schema the
migrations make (columns in order, nullability, types, primary and foreign
keys, unique constraints, JSON columns); every table of a file is declared
or named as excluded; typed queries return what the package API returns."""

from __future__ import annotations

import base64
import doctest
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings

import alkdev_storage as alk
from alkdev_storage import identity
from alkdev_storage.metagraph import EdgeTypeSpec, GraphConfig, GraphTypeSpec, NodeTypeSpec
from alkdev_storage.metagraph.graphs import Edge, Node
from alkdev_storage.sqlalchemy import metadata as m
from conftest import attribute_docs

pytestmark = pytest.mark.timeout(120)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "sqlalchemy.md"
DOCS_SECTION = "## Typed tables: alkdev_storage.sqlalchemy.metadata"

#: Tables in the files that the module leaves out on purpose: honker's own
#: (queues, streams, notifications, locks, rate limits, results, scheduler).
#: A new table in a file fails `test_every_table_is_declared_or_excluded`
#: until it is declared in metadata.py or named here.
HONKER_TABLES = frozenset(
    {
        "_honker_dead",
        "_honker_live",
        "_honker_locks",
        "_honker_notifications",
        "_honker_rate_limits",
        "_honker_results",
        "_honker_scheduler_tasks",
        "_honker_stream",
        "_honker_stream_consumers",
    }
)

# The SQLAlchemy types a declared SQLite column type may be read as.
TYPES_FOR: dict[str, tuple[type[sa.types.TypeEngine[Any]], ...]] = {
    "TEXT": (sa.Text, sa.JSON),
    "INTEGER": (sa.Integer, sa.Boolean),
    "REAL": (sa.Float,),
    "BLOB": (sa.LargeBinary,),
}

NOTES = GraphTypeSpec(
    name="notes",
    scope="tenant",
    config=GraphConfig(type="mixed", multi=True, allow_self_loops=True),
    node_types={
        "note": NodeTypeSpec(
            schema={
                "type": "object",
                "required": ["title"],
                "properties": {"title": {"type": "string"}, "done": {"type": "boolean"}},
            }
        ),
        "tag": NodeTypeSpec(),
    },
    edge_types={
        "tagged": EdgeTypeSpec(allowed_source_types=["note"], allowed_target_types=["tag"]),
        "free": EdgeTypeSpec(),
    },
)

ACL = GraphTypeSpec(
    name="policies",
    scope="system",
    node_types={"subject": NodeTypeSpec(), "object": NodeTypeSpec()},
    edge_types={"can": EdgeTypeSpec(allowed_source_types=["subject"])},
)


def _ssh_key() -> str:
    # A structurally valid ed25519 key: name + 32 key bytes.
    name = b"ssh-ed25519"
    blob = struct.pack(">I", len(name)) + name + struct.pack(">I", 32) + bytes(range(32))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} ada@laptop"


@dataclass
class World:
    """A storage root with a row in every table, and an engine per file."""

    store: alk.Storage
    system: sa.Engine
    tenant: sa.Engine
    org_id: str
    graph_id: str


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = alk.Storage.open(tmp_path / "root")
    ada = store.accounts.create(email="ada@example.com", display_name="Ada", metadata={"k": [1]})
    bob = store.accounts.create(email="bob@example.com")
    eve = store.accounts.create(email="eve@example.com", metadata={"team": {"name": "red"}})
    acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
    store.organizations.add_member(acme.id, bob.id, "admin")
    store.organizations.add_member(acme.id, eve.id)
    key = store.api_keys.create(owner_id=bob.id, name="ci", scopes=["read", "write"])
    store.api_keys.rotate(key.id)
    store.peer_credentials.register(owner_id=ada.id, public_key=_ssh_key(), scopes=["ssh"])
    store.graph_types.register(ACL)
    with store.as_account(ada.id).tenant(acme.id) as t:
        t.graph_types.register(NOTES)
        g = t.graphs.create(type="notes", name="inbox", owner_id=ada.id, project_id="p1")
        g.add_node("n1", type="note", attributes={"title": "One", "done": False})
        g.add_node("n2", type="note", attributes={"title": "Two", "done": True})
        g.add_node("t1", type="tag", attributes={"label": "x", "weight": 1.5})
        # A tag has no schema: its "done" may be the number 0.
        g.add_node("n3", type="tag", attributes={"title": "Three", "done": 0})
        g.add_edge("n1", "t1", type="tagged", key="n1-t1")
        g.add_edge("n2", "t1", type="tagged", attributes={"why": ["a", None]}, undirected=True)
        g.add_edge("n1", "n1", type="free")
        t.graphs.create(type="policies", name="rights")
        tenant_path = t.path
    system = sa.create_engine(f"sqlite+alkdev:///{store.system.path}")
    tenant = sa.create_engine(f"sqlite+alkdev:///{tenant_path}")
    yield World(store, system, tenant, acme.id, g.id)
    system.dispose()
    tenant.dispose()
    store.close()


def _engine(world: World, metadata: sa.MetaData) -> sa.Engine:
    return world.system if metadata is m.system_metadata else world.tenant


FILES = {"system": m.system_metadata, "tenant": m.tenant_metadata}
TABLES = [(kind, table) for kind, md in FILES.items() for table in md.sorted_tables]


# ------------------------------------------------------------------ the schema


def test_module_names_every_table_once() -> None:
    named = {name: value for name, value in vars(m).items() if isinstance(value, sa.Table)}
    assert set(named) == set(m.__all__) - {"system_metadata", "tenant_metadata"}
    declared = [t for md in FILES.values() for t in md.tables.values()]
    assert sorted(map(id, named.values())) == sorted(map(id, declared))
    # The type tables exist in both files: one object per file.
    assert m.graph_types.name == m.system_graph_types.name == "graph_types"
    assert m.graph_types is not m.system_graph_types


@pytest.mark.parametrize("kind", FILES)
def test_every_table_is_declared_or_excluded(world: World, kind: str) -> None:
    metadata = FILES[kind]
    inspector = sa.inspect(_engine(world, metadata))
    # The dialect hides honker's tables from reflection; ask for them too.
    live = set(inspector.get_table_names(sqlite_include_internal=True)) - {"sqlite_sequence"}
    assert HONKER_TABLES.isdisjoint(inspector.get_table_names())
    assert HONKER_TABLES <= live, "HONKER_TABLES names a table the file no longer has"
    assert live - HONKER_TABLES == set(metadata.tables), (
        f"{kind} file: declare these tables in alkdev_storage/sqlalchemy/metadata.py "
        f"or name them as excluded: {sorted(live - HONKER_TABLES - set(metadata.tables))}; "
        f"declared but missing from the file: {sorted(set(metadata.tables) - live)}"
    )


@pytest.mark.parametrize(("kind", "table"), TABLES, ids=[f"{k}.{t.name}" for k, t in TABLES])
def test_columns_match_the_live_schema(world: World, kind: str, table: sa.Table) -> None:
    inspector = sa.inspect(_engine(world, FILES[kind]))
    live = inspector.get_columns(table.name)
    assert [c["name"] for c in live] == [c.name for c in table.columns]
    for reflected in live:
        ours = table.c[reflected["name"]]
        assert reflected["nullable"] == ours.nullable, ours
        declared = str(reflected["type"])
        assert isinstance(ours.type, TYPES_FOR[declared]), (ours, declared)
    pk = inspector.get_pk_constraint(table.name)["constrained_columns"]
    assert pk == [c.name for c in table.primary_key.columns]


@pytest.mark.parametrize(("kind", "table"), TABLES, ids=[f"{k}.{t.name}" for k, t in TABLES])
def test_json_columns_are_the_json_checked_ones(world: World, kind: str, table: sa.Table) -> None:
    """A column the DDL checks with ``json_valid`` is typed JSON, and only those."""
    with _engine(world, FILES[kind]).connect() as conn:
        ddl = conn.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :n"),
            {"n": table.name},
        ).scalar_one()
    checked = set(re.findall(r"json_valid\((\w+)\)", ddl))
    assert checked, ddl
    typed = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
    assert typed == checked


@pytest.mark.parametrize(("kind", "table"), TABLES, ids=[f"{k}.{t.name}" for k, t in TABLES])
def test_foreign_keys_match_the_live_schema(world: World, kind: str, table: sa.Table) -> None:
    # PRAGMA foreign_key_list, not the inspector: SQLAlchemy's SQLite
    # reflection reports ON DELETE only for table-level FOREIGN KEY clauses,
    # not for a column's inline REFERENCES.
    with _engine(world, FILES[kind]).connect() as conn:
        rows = conn.exec_driver_sql(f"PRAGMA foreign_key_list({table.name})").all()
    live: dict[int, tuple[str, list[str], list[str], str]] = {}
    for fk_id, _seq, target, source, to, _on_update, on_delete, _match in rows:
        entry = live.setdefault(fk_id, (target, [], [], on_delete))
        entry[1].append(source)
        entry[2].append(to)
    expected = sorted((t, tuple(s), tuple(to), d) for t, s, to, d in live.values())
    ours = sorted(
        (
            fk.referred_table.name,
            tuple(fk.column_keys),
            tuple(e.column.name for e in fk.elements),
            fk.ondelete or "NO ACTION",
        )
        for fk in table.foreign_key_constraints
    )
    assert ours == expected


@pytest.mark.parametrize(("kind", "table"), TABLES, ids=[f"{k}.{t.name}" for k, t in TABLES])
def test_unique_constraints_match_the_live_schema(world: World, kind: str, table: sa.Table) -> None:
    live = sa.inspect(_engine(world, FILES[kind])).get_unique_constraints(table.name)
    ours = [
        tuple(c.name for c in con.columns)
        for con in table.constraints
        if isinstance(con, sa.UniqueConstraint)
    ]
    assert sorted(ours) == sorted(tuple(u["column_names"]) for u in live)


# ------------------------------------------------------------ typed queries


def _as(cls: type[Any], table: sa.Table, **labels: str) -> sa.Select[Any]:
    """A select of `table` whose columns are `cls`'s fields (renamed by
    `labels`: field name → column name)."""
    columns = []
    for f in fields(cls):
        name = labels.get(f.name, f.name)
        if name in table.c:
            columns.append(table.c[name].label(f.name))
    return sa.select(*columns)


def _api_records(store: alk.Storage, kind: str, org_id: str) -> list[Any]:
    """Every record of one kind, as the package's API returns them."""
    accounts = store.accounts.list()
    if kind == "accounts":
        return list(accounts)
    if kind == "organizations":
        return list(store.organizations.list())
    if kind == "organization_members":
        return list(store.organizations.members(org_id))
    if kind == "api_keys":
        return [k for a in accounts for k in store.api_keys.list(a.id)]
    if kind == "peer_credentials":
        return [c for a in accounts for c in store.peer_credentials.list(a.id)]
    assert kind == "audit_logs"
    return list(store.audit.list(limit=1000))


RECORDS = [
    (m.accounts, identity.Account),
    (m.organizations, identity.Organization),
    (m.organization_members, identity.Membership),
    (m.api_keys, identity.ApiKey),
    (m.peer_credentials, identity.PeerCredential),
    (m.audit_logs, identity.AuditEntry),
]


@pytest.mark.parametrize(("table", "cls"), RECORDS, ids=[t.name for t, _ in RECORDS])
def test_identity_rows_are_the_api_records(world: World, table: sa.Table, cls: type[Any]) -> None:
    """A row read through the Table (JSON decoded, booleans as bool) builds
    the same record the API returns."""
    api = _api_records(world.store, table.name, world.org_id)
    with world.system.connect() as conn:
        rows = [cls(**row._mapping) for row in conn.execute(_as(cls, table))]
    rows.sort(key=lambda r: r.id)
    api.sort(key=lambda r: r.id)
    assert rows and rows == api
    assert repr(rows) == repr(api)  # same types too: bool, not the stored 0/1


def test_members_joined_with_accounts(world: World) -> None:
    om, acc = m.organization_members, m.accounts
    query = (
        sa.select(acc.c.email, om.c.membership_level, acc.c.metadata)
        .join_from(om, acc)
        .where(om.c.org_id == world.org_id)
        .order_by(om.c.created_at, om.c.id)
    )
    with world.system.connect() as conn:
        rows = [tuple(r) for r in conn.execute(query)]
    store = world.store
    expected = []
    for member in store.organizations.members(world.org_id):
        account = store.accounts.get(member.account_id)
        expected.append((account.email, member.membership_level, account.metadata))
    assert rows == expected
    assert {r[1] for r in rows} == {"owner", "admin", "member"}


def test_nodes_with_their_node_type(world: World) -> None:
    n, g, nt = m.nodes, m.graphs, m.node_types
    query = (
        sa.select(*(n.c[c].label(c) for c in ("key", "type", "attributes", "id")))
        .add_columns(n.c.created_at, n.c.updated_at, nt.c.schema)
        .join_from(n, g)
        .join(nt, (nt.c.graph_type_id == g.c.graph_type_id) & (nt.c.name == n.c.type))
        .where(n.c.graph_id == world.graph_id)
        .order_by(sa.literal_column("nodes.rowid"))
    )
    with world.tenant.connect() as conn:
        rows = conn.execute(query).all()
    with world.store.tenant(world.org_id) as t:
        graph = t.graphs.get(world.graph_id)
        api_nodes = graph.nodes()
        info = t.graph_types.get("notes")
    assert repr([Node(*r[:6]) for r in rows]) == repr(api_nodes)
    assert [r.schema for r in rows] == [info.node_types[x.type].schema for x in api_nodes]
    assert [x.key for x in api_nodes] == ["n1", "n2", "t1", "n3"]


def test_edges_with_both_endpoints(world: World) -> None:
    e, src, dst = m.edges, m.nodes.alias("src"), m.nodes.alias("dst")
    query = (
        _as(Edge, e, source="source_node_key", target="target_node_key")
        .add_columns(src.c.type.label("source_type"), dst.c.type.label("target_type"))
        .join(src, (src.c.graph_id == e.c.graph_id) & (src.c.key == e.c.source_node_key))
        .join(dst, (dst.c.graph_id == e.c.graph_id) & (dst.c.key == e.c.target_node_key))
        .where(e.c.graph_id == world.graph_id)
        .order_by(sa.literal_column("edges.rowid"))
    )
    with world.tenant.connect() as conn:
        rows = conn.execute(query).all()
    with world.store.tenant(world.org_id) as t:
        api_edges = t.graphs.get(world.graph_id).edges()
    assert repr([Edge(*r[:9]) for r in rows]) == repr(api_edges)
    assert [(r.source_type, r.target_type, r.undirected) for r in rows] == [
        ("note", "tag", False),
        ("note", "tag", True),
        ("note", "note", False),
    ]
    # Two foreign keys reach nodes: a join without its ON clause is refused.
    with pytest.raises(sa.exc.AmbiguousForeignKeysError):
        sa.select(e.c.id).join_from(e, m.nodes).compile()


def test_json_path_filters(world: World) -> None:
    n = m.nodes
    with world.tenant.connect() as conn:
        titles = conn.execute(
            sa.select(n.c.attributes["title"].as_string())
            .where(n.c.graph_id == world.graph_id, n.c.type == "note")
            .order_by(sa.literal_column("nodes.rowid"))
        ).scalars()
        assert list(titles) == ["One", "Two"]
        # as_boolean() casts: JSON false and JSON 0 both match False ...
        loose = conn.execute(
            sa.select(n.c.key).where(n.c.attributes["done"].as_boolean().is_(False))
        ).scalars()
        assert sorted(loose) == ["n1", "n3"]
    # ... where the API's where= tells them apart.
    with world.store.tenant(world.org_id) as t:
        strict = t.graphs.get(world.graph_id).nodes(where={"$.done": False})
    assert [x.key for x in strict] == ["n1"]


def test_graphs_and_types_in_each_file(world: World) -> None:
    g, gt = m.graphs, m.graph_types
    with world.tenant.connect() as conn:
        listed = conn.execute(
            sa.select(g.c.name, gt.c.name, gt.c.scope, gt.c.config)
            .join_from(g, gt)
            .order_by(sa.literal_column("graphs.rowid"))
        ).all()
        tenant_copies = conn.execute(
            sa.select(gt.c.id, gt.c.name, gt.c.version).where(gt.c.scope == "system")
        ).all()
    with world.store.tenant(world.org_id) as t:
        api = [(x.name, x.type_name) for x in t.graphs.list()]
        config = t.graph_types.get("notes").config.to_document()
    assert [(r[0], r[1]) for r in listed] == api
    assert [r[2:] for r in listed if r[1] == "notes"] == [("tenant", config)]
    # system.db holds the canonical system types; tenant files mirror them
    # under the same id.
    sgt, snt = m.system_graph_types, m.system_node_types
    with world.system.connect() as conn:
        canonical = conn.execute(sa.select(sgt.c.id, sgt.c.name, sgt.c.version)).all()
        node_type_names = conn.execute(
            sa.select(snt.c.name)
            .join_from(snt, sgt)
            .where(sgt.c.name == "policies")
            .order_by(snt.c.name)
        ).scalars()
        assert list(node_type_names) == ["object", "subject"]
    assert sorted(canonical) == sorted(tenant_copies)
    assert sorted(name for _, name, _ in canonical) == ["acl", "policies", "secrets"]
    assert (world.store.graph_types.get("policies").id, "policies", 1) in canonical


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(attributes=attribute_docs)
def test_json_columns_decode_to_what_the_api_returns(
    world: World, attributes: dict[str, Any]
) -> None:
    with world.store.tenant(world.org_id) as t:
        graph = t.graphs.get(world.graph_id)
        tag = graph.add_node(f"k{len(graph.nodes())}", type="tag", attributes=attributes)
        api = graph.node(tag.key).attributes
    with world.tenant.connect() as conn:
        stored = conn.execute(
            sa.select(m.nodes.c.attributes).where(m.nodes.c.id == tag.id)
        ).scalar_one()
    assert stored == api
    assert repr(stored) == repr(api)  # same types too: 1 vs 1.0, -0.0 vs 0.0


# -------------------------------------------------------------------- docs


def test_module_docstring_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(m, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.skipif(not DOCS.is_file(), reason="docs not shipped with this checkout")
def test_docs_section_prints_what_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Python blocks of the "Typed tables" section of docs/sqlalchemy.md
    run; each ``# →`` comment is a line they print."""
    text = DOCS.read_text()
    assert DOCS_SECTION in text
    section = text.split(DOCS_SECTION, 1)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    for code in blocks:
        exec(compile(code, "docs/sqlalchemy.md", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    claims = [c for code in blocks for c in re.findall(r"# → (.+)$", code, re.M)]
    assert len(claims) >= 3
    for claim in claims:
        assert claim in printed, (claim, printed)
