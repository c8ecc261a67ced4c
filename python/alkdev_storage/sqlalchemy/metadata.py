"""SQLAlchemy `Table` objects for the identity and metagraph tables, for
typed reads and joins.

>>> import tempfile
>>> import alkdev_storage as alk
>>> from sqlalchemy import create_engine, select
>>> from alkdev_storage.sqlalchemy.metadata import accounts, organization_members
>>> store = alk.Storage.open(tempfile.mkdtemp())
>>> ada = store.accounts.create(email="ada@example.com")
>>> bob = store.accounts.create(email="bob@example.com")
>>> acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
>>> _ = store.organizations.add_member(acme.id, bob.id, "admin")
>>> engine = create_engine(f"sqlite+alkdev:///{store.system.path}")
>>> members = (
...     select(accounts.c.email, organization_members.c.membership_level)
...     .join_from(organization_members, accounts)
...     .where(organization_members.c.org_id == acme.id)
...     .order_by(accounts.c.email)
... )
>>> with engine.connect() as conn:
...     conn.execute(members).all()
[('ada@example.com', 'owner'), ('bob@example.com', 'admin')]
>>> engine.dispose()
>>> store.close()

**Read with these; write through the package.** Creating, changing or
deleting an account, organization, membership, key, credential, graph type,
graph, node or edge goes through `alkdev_storage.Storage` and the tenant's
graph API, which validate (emails, slugs, JSON Schemas, graph rules, scope
rules), publish the change event in the same transaction and write audit
rows. An ``insert``/``update``/``delete`` built from these tables does none
of that: no event, no audit, no validation beyond the file's constraints.

**The schema is alkdev_storage's.** `Storage.open` creates and migrates it
(`alkdev_storage.schema_system`, `alkdev_storage.schema_tenant`); never call
``metadata.create_all``. These objects leave out what only writes and DDL
need (CHECK constraints, server defaults, indexes, triggers), and a file
whose tables were made by ``create_all`` would fail its first migration.
``tests/test_sqlalchemy_metadata.py`` compares every table here with the
live schema of freshly migrated files, so the two cannot drift apart.

Two `MetaData`, one per kind of file; a query runs on one file's engine
(there are no foreign keys, and no joins, across files):

- `system_metadata`, ``system.db``: `accounts`, `organizations`,
  `organization_members`, `api_keys`, `peer_credentials`, `audit_logs`, and
  the canonical copy of system-scoped graph types: `system_graph_types`,
  `system_node_types`, `system_edge_types`.
- `tenant_metadata`, ``tenants/tenant-{orgId}.db``: `graph_types`,
  `node_types`, `edge_types`, `graphs`, `nodes`, `edges`.

The type tables exist in both files with the same columns (one DDL,
``schema_tenant.TYPE_TABLES``). A `Table` belongs to one `MetaData`, so each
file gets its own objects; the ``system_`` prefix is only the Python name,
the table is ``graph_types`` in both. A tenant file holds a read-only mirror
of every system type under the same id, next to its tenant and user types.

Column types follow what the package reads back:

- ``TEXT`` columns are `Text`; timestamps are `Integer` (Unix seconds).
- ``enabled`` and ``undirected`` (``INTEGER`` 0/1) are `Boolean`: read as
  ``True``/``False``, as the API returns them.
- Columns holding JSON text (``metadata``, ``audit_logs.details``,
  ``graph_types.config``, ``schema``, ``allowed_source_types``,
  ``allowed_target_types``, ``attributes``) are `sqlalchemy.JSON`: the
  sqlite dialect decodes them with ``json.loads``, as the package does, so
  a row gives the values the API returns (where the API wraps a document,
  in a ``GraphConfig`` or in tuples for the allowed types, you get the plain
  JSON). Path access works: ``nodes.c.attributes["title"].as_string()``;
  note that its casts are looser than ``Graph.nodes(where=...)``, which
  tells ``false`` from ``0`` and ``"1"`` from ``1``.

Left out: honker's tables (``_honker_*``: queues, streams, notifications,
locks, rate limits, results, scheduler; honker owns their layout, and
`alk.Database` reads them). There is no migrations table: a file's schema
version is ``PRAGMA user_version`` and its kind ``PRAGMA application_id``.

Two things to know when joining: ``edges`` references ``nodes`` twice
(source and target), so a join between them needs its ON clause; and the
API lists graphs, nodes and edges in insertion order, which is SQLite's
``rowid`` (``order_by(literal_column("nodes.rowid"))``), not a column here.
A column is called ``metadata``: ``accounts.c.metadata`` works in Core, but
an ORM class mapped onto these tables must name that attribute otherwise.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "accounts",
    "api_keys",
    "audit_logs",
    "edge_types",
    "edges",
    "graph_types",
    "graphs",
    "node_types",
    "nodes",
    "organization_members",
    "organizations",
    "peer_credentials",
    "system_edge_types",
    "system_graph_types",
    "system_metadata",
    "system_node_types",
    "tenant_metadata",
]

system_metadata = MetaData()
"""The tables of ``system.db``: identity, audit, canonical system types."""

tenant_metadata = MetaData()
"""The tables of a tenant file (``tenants/tenant-{orgId}.db``): the metagraph."""


def _common() -> list[Column[Any]]:
    """The columns every table starts with (``schema_tenant.COMMON``); new
    objects per call, since a `Column` belongs to one table."""
    return [
        Column("id", Text, primary_key=True),
        Column("metadata", JSON, nullable=False),
        Column("created_at", Integer, nullable=False),
        Column("updated_at", Integer, nullable=False),
    ]


def _type_tables(metadata: MetaData) -> tuple[Table, Table, Table]:
    """``graph_types``, ``node_types``, ``edge_types`` in `metadata`: the
    same DDL (``schema_tenant.TYPE_TABLES``) makes them in both files."""
    graph_types = Table(
        "graph_types",
        metadata,
        *_common(),
        Column("name", Text, nullable=False, unique=True),
        Column("description", Text, nullable=False),
        Column("config", JSON, nullable=False),
        Column("version", Integer, nullable=False),
        Column("scope", Text, nullable=False),
    )
    node_types = Table(
        "node_types",
        metadata,
        *_common(),
        Column(
            "graph_type_id",
            Text,
            ForeignKey("graph_types.id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("name", Text, nullable=False),
        Column("description", Text, nullable=False),
        Column("schema", JSON, nullable=False),
        UniqueConstraint("graph_type_id", "name"),
    )
    edge_types = Table(
        "edge_types",
        metadata,
        *_common(),
        Column(
            "graph_type_id",
            Text,
            ForeignKey("graph_types.id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("name", Text, nullable=False),
        Column("description", Text, nullable=False),
        Column("schema", JSON, nullable=False),
        Column("allowed_source_types", JSON, nullable=False),
        Column("allowed_target_types", JSON, nullable=False),
        UniqueConstraint("graph_type_id", "name"),
    )
    return graph_types, node_types, edge_types


# ------------------------------------------------------------------ system.db

accounts = Table(
    "accounts",
    system_metadata,
    *_common(),
    Column("email", Text, nullable=False, unique=True),
    Column("display_name", Text, nullable=True),
    Column("access_level", Text, nullable=False),
    Column("status", Text, nullable=False),
)
"""Accounts; ``email`` is stored trimmed and lower-cased."""

organizations = Table(
    "organizations",
    system_metadata,
    *_common(),
    Column("name", Text, nullable=False, unique=True),
    Column("slug", Text, nullable=False, unique=True),
    Column("owner_id", Text, ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=False),
)
"""Organizations; each has a tenant file named by its ``id``."""

organization_members = Table(
    "organization_members",
    system_metadata,
    *_common(),
    Column("org_id", Text, ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
    Column("account_id", Text, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("membership_level", Text, nullable=False),
    UniqueConstraint("org_id", "account_id"),
)
"""Memberships: ``membership_level`` is ``owner``, ``admin`` or ``member``."""

api_keys = Table(
    "api_keys",
    system_metadata,
    *_common(),
    Column("owner_id", Text, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("expires_at", Integer, nullable=True),
    Column("revoked_at", Integer, nullable=True),
    Column("rotated_to_id", Text, ForeignKey("api_keys.id", ondelete="SET NULL"), nullable=True),
    Column("last_used_at", Integer, nullable=True),
)
"""API keys (only the SHA-256 of a key is stored); scopes in ``metadata``."""

peer_credentials = Table(
    "peer_credentials",
    system_metadata,
    *_common(),
    Column("owner_id", Text, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("credential_type", Text, nullable=False),
    Column("fingerprint", Text, nullable=False, unique=True),
    Column("public_key_data", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("expires_at", Integer, nullable=True),
    Column("revoked_at", Integer, nullable=True),
)
"""SSH public keys and certificate authorities; scopes in ``metadata``."""

audit_logs = Table(
    "audit_logs",
    system_metadata,
    *_common(),
    Column("action", Text, nullable=False),
    Column("owner_id", Text, ForeignKey("accounts.id", ondelete="RESTRICT"), nullable=True),
    Column("credential_id", Text, nullable=True),
    Column("credential_type", Text, nullable=True),
    Column("org_id", Text, ForeignKey("organizations.id", ondelete="SET NULL"), nullable=True),
    Column("details", JSON, nullable=False),
)
"""Security-relevant actions; ``owner_id`` is the actor (None: the platform)."""

system_graph_types, system_node_types, system_edge_types = _type_tables(system_metadata)

# ------------------------------------------------------------- tenant files

graph_types, node_types, edge_types = _type_tables(tenant_metadata)

graphs = Table(
    "graphs",
    tenant_metadata,
    *_common(),
    # NULL once the graph's type is deleted (the graph is then read-only).
    Column("graph_type_id", Text, ForeignKey("graph_types.id", ondelete="SET NULL"), nullable=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("status", Text, nullable=False),
    # No foreign keys: they point into system.db or the caller's world.
    Column("owner_id", Text, nullable=True),
    Column("project_id", Text, nullable=True),
)
"""Graphs: ``status`` is ``draft``, ``active`` or ``archived``."""

nodes = Table(
    "nodes",
    tenant_metadata,
    *_common(),
    Column("graph_id", Text, ForeignKey("graphs.id", ondelete="CASCADE"), nullable=False),
    Column("key", Text, nullable=False),
    # The node type's name, not a foreign key: join node_types on
    # (graphs.graph_type_id, nodes.type) = (node_types.graph_type_id, node_types.name).
    Column("type", Text, nullable=False),
    Column("attributes", JSON, nullable=False),
    UniqueConstraint("graph_id", "key"),
)
"""Nodes, identified by ``(graph_id, key)``."""

edges = Table(
    "edges",
    tenant_metadata,
    *_common(),
    Column("graph_id", Text, ForeignKey("graphs.id", ondelete="CASCADE"), nullable=False),
    Column("key", Text, nullable=True),
    Column("type", Text, nullable=False),
    Column("source_node_key", Text, nullable=False),
    Column("target_node_key", Text, nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("undirected", Boolean, nullable=False),
    UniqueConstraint("graph_id", "key"),
    ForeignKeyConstraint(
        ["graph_id", "source_node_key"], ["nodes.graph_id", "nodes.key"], ondelete="CASCADE"
    ),
    ForeignKeyConstraint(
        ["graph_id", "target_node_key"], ["nodes.graph_id", "nodes.key"], ondelete="CASCADE"
    ),
)
"""Edges; ``key`` is None for an anonymous edge. Two foreign keys reach
``nodes``, so joins to it spell their ON clause."""
