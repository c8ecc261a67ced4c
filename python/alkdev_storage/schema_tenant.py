"""The tenant file's schema (``tenants/tenant-{orgId}.db``): the metagraph.

Every table has ``id TEXT PRIMARY KEY``, ``metadata`` (JSON object text),
``created_at`` and ``updated_at`` (Unix seconds; a trigger keeps
``updated_at`` current on every update that does not set it). JSON columns
are checked with ``json_valid``. See SPEC §4 and docs/architecture.md.
"""

from __future__ import annotations

from alkdev_storage.migrations import Migration, Schema

TENANT_APPLICATION_ID = 0x414C4B54  # "ALKT"

#: The columns every table starts with.
COMMON = """
  id TEXT PRIMARY KEY NOT NULL,
  metadata TEXT NOT NULL DEFAULT '{}'
    CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
  created_at INTEGER NOT NULL DEFAULT (unixepoch()),
  updated_at INTEGER NOT NULL DEFAULT (unixepoch())"""


def touch_trigger(table: str) -> str:
    """Keep ``updated_at`` current when an UPDATE does not set it itself."""
    return f"""
CREATE TRIGGER {table}_touch AFTER UPDATE ON {table}
WHEN NEW.updated_at IS OLD.updated_at
BEGIN
  UPDATE {table} SET updated_at = unixepoch() WHERE id = NEW.id;
END;"""


#: Graph, node and edge types: in every tenant file, and in system.db for
#: the canonical copy of system-scoped types.
TYPE_TABLES = f"""
CREATE TABLE graph_types (
  {COMMON},
  name TEXT NOT NULL UNIQUE,
  description TEXT NOT NULL DEFAULT '',
  config TEXT NOT NULL CHECK (json_valid(config)),
  version INTEGER NOT NULL DEFAULT 1,
  scope TEXT NOT NULL DEFAULT 'system' CHECK (scope IN ('system', 'tenant', 'user'))
);
CREATE TABLE node_types (
  {COMMON},
  graph_type_id TEXT NOT NULL REFERENCES graph_types(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  schema TEXT NOT NULL CHECK (json_valid(schema)),
  UNIQUE (graph_type_id, name)
);
CREATE TABLE edge_types (
  {COMMON},
  graph_type_id TEXT NOT NULL REFERENCES graph_types(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  schema TEXT NOT NULL CHECK (json_valid(schema)),
  allowed_source_types TEXT NOT NULL DEFAULT '[]'
    CHECK (json_valid(allowed_source_types) AND json_type(allowed_source_types) = 'array'),
  allowed_target_types TEXT NOT NULL DEFAULT '[]'
    CHECK (json_valid(allowed_target_types) AND json_type(allowed_target_types) = 'array'),
  UNIQUE (graph_type_id, name)
);
{touch_trigger("graph_types")}
{touch_trigger("node_types")}
{touch_trigger("edge_types")}
"""

V1_METAGRAPH = f"""
{TYPE_TABLES}
CREATE TABLE graphs (
  {COMMON},
  graph_type_id TEXT REFERENCES graph_types(id) ON DELETE SET NULL,
  name TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'archived')),
  owner_id TEXT,
  project_id TEXT
);
CREATE INDEX graphs_graph_type_id ON graphs(graph_type_id);
CREATE INDEX graphs_owner_id ON graphs(owner_id);
CREATE INDEX graphs_project_id ON graphs(project_id);
CREATE INDEX graphs_owner_project ON graphs(owner_id, project_id);
CREATE TABLE nodes (
  {COMMON},
  graph_id TEXT NOT NULL REFERENCES graphs(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  type TEXT NOT NULL,
  attributes TEXT NOT NULL DEFAULT '{{}}' CHECK (json_valid(attributes)),
  UNIQUE (graph_id, key)
);
CREATE INDEX nodes_graph_type ON nodes(graph_id, type);
CREATE TABLE edges (
  {COMMON},
  graph_id TEXT NOT NULL REFERENCES graphs(id) ON DELETE CASCADE,
  key TEXT,
  type TEXT NOT NULL,
  source_node_key TEXT NOT NULL,
  target_node_key TEXT NOT NULL,
  attributes TEXT NOT NULL DEFAULT '{{}}' CHECK (json_valid(attributes)),
  undirected INTEGER NOT NULL DEFAULT 0 CHECK (undirected IN (0, 1)),
  UNIQUE (graph_id, key),
  FOREIGN KEY (graph_id, source_node_key) REFERENCES nodes(graph_id, key) ON DELETE CASCADE,
  FOREIGN KEY (graph_id, target_node_key) REFERENCES nodes(graph_id, key) ON DELETE CASCADE
);
CREATE INDEX edges_source ON edges(graph_id, source_node_key, type);
CREATE INDEX edges_target ON edges(graph_id, target_node_key, type);
{touch_trigger("graphs")}
{touch_trigger("nodes")}
{touch_trigger("edges")}
"""

TENANT_SCHEMA = Schema(
    "tenant",
    TENANT_APPLICATION_ID,
    (Migration(1, "metagraph tables", V1_METAGRAPH),),
)
