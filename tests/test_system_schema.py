"""A fresh system.db has exactly SPEC §4's tables: every column, type,
nullability, default, foreign key (with its ON DELETE action) and an index
on every foreign-key column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import alkdev_storage as alk
from alkdev_storage.migrations import migrate
from alkdev_storage.schema_system import SYSTEM_SCHEMA
from alkdev_storage.schema_tenant import TENANT_SCHEMA

NOW = "unixepoch()"
# (name, type, notnull, default); every table starts with these four.
COMMON = [
    ("id", "TEXT", True, None),
    ("metadata", "TEXT", True, "'{}'"),
    ("created_at", "INTEGER", True, NOW),
    ("updated_at", "INTEGER", True, NOW),
]

SYSTEM: dict[str, dict[str, Any]] = {
    "accounts": {
        "columns": [
            ("email", "TEXT", True, None),
            ("display_name", "TEXT", False, None),
            ("access_level", "TEXT", True, "'user'"),
            ("status", "TEXT", True, "'active'"),
        ],
        "fks": [],
        "unique": [("email",)],
    },
    "organizations": {
        "columns": [
            ("name", "TEXT", True, None),
            ("slug", "TEXT", True, None),
            ("owner_id", "TEXT", True, None),
        ],
        "fks": [("owner_id", "accounts", "id", "RESTRICT")],
        "unique": [("name",), ("slug",)],
    },
    "organization_members": {
        "columns": [
            ("org_id", "TEXT", True, None),
            ("account_id", "TEXT", True, None),
            ("membership_level", "TEXT", True, None),
        ],
        "fks": [
            ("org_id", "organizations", "id", "CASCADE"),
            ("account_id", "accounts", "id", "CASCADE"),
        ],
        "unique": [("org_id", "account_id")],
    },
    "api_keys": {
        "columns": [
            ("owner_id", "TEXT", True, None),
            ("key_hash", "TEXT", True, None),
            ("name", "TEXT", True, "''"),
            ("enabled", "INTEGER", True, "1"),
            ("expires_at", "INTEGER", False, None),
            ("revoked_at", "INTEGER", False, None),
            ("rotated_to_id", "TEXT", False, None),
            ("last_used_at", "INTEGER", False, None),
        ],
        "fks": [
            ("owner_id", "accounts", "id", "CASCADE"),
            ("rotated_to_id", "api_keys", "id", "SET NULL"),
        ],
        "unique": [("key_hash",)],
    },
    "peer_credentials": {
        "columns": [
            ("owner_id", "TEXT", True, None),
            ("credential_type", "TEXT", True, "'ssh_key'"),
            ("fingerprint", "TEXT", True, None),
            ("public_key_data", "TEXT", True, None),
            ("name", "TEXT", True, "''"),
            ("enabled", "INTEGER", True, "1"),
            ("expires_at", "INTEGER", False, None),
            ("revoked_at", "INTEGER", False, None),
        ],
        "fks": [("owner_id", "accounts", "id", "CASCADE")],
        "unique": [("fingerprint",)],
    },
    "audit_logs": {
        "columns": [
            ("action", "TEXT", True, None),
            ("owner_id", "TEXT", False, None),
            ("credential_id", "TEXT", False, None),
            ("credential_type", "TEXT", False, None),
            ("org_id", "TEXT", False, None),
            ("details", "TEXT", True, "'{}'"),
        ],
        "fks": [
            ("owner_id", "accounts", "id", "RESTRICT"),
            ("org_id", "organizations", "id", "SET NULL"),
        ],
        "unique": [],
    },
}

TYPES: dict[str, dict[str, Any]] = {
    "graph_types": {
        "columns": [
            ("name", "TEXT", True, None),
            ("description", "TEXT", True, "''"),
            ("config", "TEXT", True, None),
            ("version", "INTEGER", True, "1"),
            ("scope", "TEXT", True, "'system'"),
        ],
        "fks": [],
        "unique": [("name",)],
    },
    "node_types": {
        "columns": [
            ("graph_type_id", "TEXT", True, None),
            ("name", "TEXT", True, None),
            ("description", "TEXT", True, "''"),
            ("schema", "TEXT", True, None),
        ],
        "fks": [("graph_type_id", "graph_types", "id", "CASCADE")],
        "unique": [("graph_type_id", "name")],
    },
    "edge_types": {
        "columns": [
            ("graph_type_id", "TEXT", True, None),
            ("name", "TEXT", True, None),
            ("description", "TEXT", True, "''"),
            ("schema", "TEXT", True, None),
            ("allowed_source_types", "TEXT", True, "'[]'"),
            ("allowed_target_types", "TEXT", True, "'[]'"),
        ],
        "fks": [("graph_type_id", "graph_types", "id", "CASCADE")],
        "unique": [("graph_type_id", "name")],
    },
}


GRAPHS: dict[str, dict[str, Any]] = {
    "graphs": {
        "columns": [
            ("graph_type_id", "TEXT", False, None),
            ("name", "TEXT", True, None),
            ("description", "TEXT", True, "''"),
            ("status", "TEXT", True, "'draft'"),
            ("owner_id", "TEXT", False, None),
            ("project_id", "TEXT", False, None),
        ],
        "fks": [("graph_type_id", "graph_types", "id", "SET NULL")],
        "unique": [],
        "indexes": [("owner_id",), ("project_id",), ("owner_id", "project_id")],
    },
    "nodes": {
        "columns": [
            ("graph_id", "TEXT", True, None),
            ("key", "TEXT", True, None),
            ("type", "TEXT", True, None),
            ("attributes", "TEXT", True, "'{}'"),
        ],
        "fks": [("graph_id", "graphs", "id", "CASCADE")],
        "unique": [("graph_id", "key")],
        "indexes": [("graph_id", "type")],
    },
    "edges": {
        "columns": [
            ("graph_id", "TEXT", True, None),
            ("key", "TEXT", False, None),
            ("type", "TEXT", True, None),
            ("source_node_key", "TEXT", True, None),
            ("target_node_key", "TEXT", True, None),
            ("attributes", "TEXT", True, "'{}'"),
            ("undirected", "INTEGER", True, "0"),
        ],
        "fks": [
            ("graph_id", "graphs", "id", "CASCADE"),
            ("graph_id", "nodes", "graph_id", "CASCADE"),
            ("source_node_key", "nodes", "key", "CASCADE"),
            ("graph_id", "nodes", "graph_id", "CASCADE"),
            ("target_node_key", "nodes", "key", "CASCADE"),
        ],
        "unique": [("graph_id", "key")],
        # both directions of traversal
        "indexes": [("graph_id", "source_node_key"), ("graph_id", "target_node_key")],
    },
}


def _open(tmp_path: Path, schema: Any) -> alk.Database:
    db = alk.connect(tmp_path / f"{schema.kind}.db")
    migrate(db, schema)
    return db


def _user_tables(db: alk.Database) -> set[str]:
    rows = db.query(
        "SELECT name FROM sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '\\_%' ESCAPE '\\'"
    )
    return {r[0] for r in rows}


def _check_table(db: alk.Database, table: str, spec: dict[str, Any]) -> None:
    columns = [
        (name, ctype, bool(notnull), default)
        for _, name, ctype, notnull, default, _ in db.query(f"PRAGMA table_info({table})")
    ]
    assert columns == COMMON + spec["columns"], table
    pk = [r[1] for r in db.query(f"PRAGMA table_info({table})") if r[5]]
    assert pk == ["id"]
    fks = sorted((r[3], r[2], r[4], r[6]) for r in db.query(f"PRAGMA foreign_key_list({table})"))
    assert fks == sorted(spec["fks"]), table
    indexes = db.query(f"PRAGMA index_list({table})")
    index_columns: list[tuple[str, ...]] = []
    unique: set[tuple[str, ...]] = set()
    for _, name, is_unique, origin, _ in indexes:
        cols = tuple(r[2] for r in db.query(f"PRAGMA index_info({name})"))
        index_columns.append(cols)
        if is_unique and origin != "pk":
            unique.add(cols)
    assert unique == set(spec["unique"]), table
    # Every foreign key (composite ones as a whole) leads some index.
    grouped: dict[int, list[str]] = {}
    for row in db.query(f"PRAGMA foreign_key_list({table})"):
        grouped.setdefault(row[0], []).append(row[3])
    for columns in grouped.values():
        key = tuple(columns)
        assert any(cols[: len(key)] == key for cols in index_columns), (
            f"{table}{key} is a foreign key without an index"
        )
    prefixes = {
        cols[: len(wanted)]
        for _, name, *_ in indexes
        for cols in [tuple(r[2] for r in db.query(f"PRAGMA index_info({name})"))]
        for wanted in spec.get("indexes", [])
    }
    for wanted in spec.get("indexes", []):
        assert wanted in prefixes, f"{table} has no index on {wanted}"


def test_system_db_matches_the_spec(tmp_path: Path) -> None:
    db = _open(tmp_path, SYSTEM_SCHEMA)
    assert _user_tables(db) == set(SYSTEM) | set(TYPES)
    for table, spec in {**SYSTEM, **TYPES}.items():
        _check_table(db, table, spec)
    assert db.query_one("PRAGMA foreign_keys") == (1,)


def test_tenant_file_matches_the_spec(tmp_path: Path) -> None:
    db = _open(tmp_path, TENANT_SCHEMA)
    assert _user_tables(db) == set(TYPES) | set(GRAPHS)
    for table, spec in {**TYPES, **GRAPHS}.items():
        _check_table(db, table, spec)


def test_tenant_on_delete_actions_behave(tmp_path: Path) -> None:
    db = _open(tmp_path, TENANT_SCHEMA)
    db.executescript(
        """
        INSERT INTO graph_types (id, name, config) VALUES ('gt', 'tasks', '{}');
        INSERT INTO node_types (id, graph_type_id, name, schema) VALUES ('nt', 'gt', 'task', '{}');
        INSERT INTO graphs (id, graph_type_id, name) VALUES ('g', 'gt', 'G');
        INSERT INTO nodes (id, graph_id, key, type) VALUES ('n1', 'g', 'a', 'task'),
                                                           ('n2', 'g', 'b', 'task');
        INSERT INTO edges (id, graph_id, type, source_node_key, target_node_key)
          VALUES ('e', 'g', 'dep', 'a', 'b');
        """
    )
    with pytest.raises(alk.IntegrityError):  # endpoint must exist in the same graph
        db.execute(
            "INSERT INTO edges (id, graph_id, type, source_node_key, target_node_key) "
            "VALUES ('x', 'g', 'dep', 'a', 'ghost')"
        )
    db.execute("DELETE FROM nodes WHERE key = 'b'")
    assert db.query("SELECT count(*) FROM edges") == [(0,)]  # edges go with their node
    db.execute("DELETE FROM graph_types WHERE id = 'gt'")
    assert db.query("SELECT graph_type_id FROM graphs") == [(None,)]  # graphs stay, untyped
    assert db.query("SELECT count(*) FROM node_types") == [(0,)]
    db.execute("DELETE FROM graphs WHERE id = 'g'")
    assert db.query("SELECT count(*) FROM nodes") == [(0,)]


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("INSERT INTO accounts (id, email, access_level) VALUES ('a', 'x@y.z', 'root')", ()),
        ("INSERT INTO accounts (id, email, status) VALUES ('a', 'x@y.z', 'gone')", ()),
        ("INSERT INTO accounts (id, email, metadata) VALUES ('a', 'x@y.z', 'not json')", ()),
        ("INSERT INTO accounts (id, email, metadata) VALUES ('a', 'x@y.z', '[1]')", ()),
        (
            "INSERT INTO organizations (id, name, slug, owner_id) VALUES ('o', 'n', 's', 'ghost')",
            (),
        ),
    ],
)
def test_constraints_refuse_bad_rows(tmp_path: Path, sql: str, params: tuple[Any, ...]) -> None:
    db = _open(tmp_path, SYSTEM_SCHEMA)
    with pytest.raises(alk.IntegrityError):
        db.execute(sql, params)


def test_on_delete_actions_behave(tmp_path: Path) -> None:
    db = _open(tmp_path, SYSTEM_SCHEMA)
    db.execute("INSERT INTO accounts (id, email) VALUES ('a', 'a@x.io'), ('b', 'b@x.io')")
    db.execute("INSERT INTO organizations (id, name, slug, owner_id) VALUES ('o', 'O', 'o', 'a')")
    db.execute(
        "INSERT INTO organization_members (id, org_id, account_id, membership_level) "
        "VALUES ('m', 'o', 'b', 'member')"
    )
    db.execute("INSERT INTO api_keys (id, owner_id, key_hash) VALUES ('k', 'b', 'h')")
    db.execute("INSERT INTO audit_logs (id, action, owner_id, org_id) VALUES ('l', 'x', 'b', 'o')")
    with pytest.raises(alk.IntegrityError):  # owner_id RESTRICT (organization)
        db.execute("DELETE FROM accounts WHERE id = 'a'")
    with pytest.raises(alk.IntegrityError):  # audit owner RESTRICT
        db.execute("DELETE FROM accounts WHERE id = 'b'")
    db.execute("DELETE FROM organizations WHERE id = 'o'")
    assert db.query("SELECT count(*) FROM organization_members") == [(0,)]  # CASCADE
    assert db.query("SELECT org_id FROM audit_logs") == [(None,)]  # SET NULL
    db.execute("DELETE FROM audit_logs")
    db.execute("DELETE FROM accounts WHERE id = 'b'")
    assert db.query("SELECT count(*) FROM api_keys") == [(0,)]  # CASCADE


def test_updated_at_is_maintained(tmp_path: Path) -> None:
    db = _open(tmp_path, SYSTEM_SCHEMA)
    db.execute(
        "INSERT INTO accounts (id, email, created_at, updated_at) VALUES ('a', 'a@x.io', 5, 5)"
    )
    db.execute("UPDATE accounts SET display_name = 'A' WHERE id = 'a'")
    (updated,) = db.query_one("SELECT updated_at FROM accounts")  # type: ignore[misc]
    assert updated > 5
