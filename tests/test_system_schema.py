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
    leading: set[str] = set()
    unique: set[tuple[str, ...]] = set()
    for _, name, is_unique, origin, _ in indexes:
        cols = tuple(r[2] for r in db.query(f"PRAGMA index_info({name})"))
        leading.add(cols[0])
        if is_unique and origin != "pk":
            unique.add(cols)
    assert unique == set(spec["unique"]), table
    for column, *_ in spec["fks"]:
        assert column in leading, f"{table}.{column} is a foreign key without an index"


def test_system_db_matches_the_spec(tmp_path: Path) -> None:
    db = _open(tmp_path, SYSTEM_SCHEMA)
    assert _user_tables(db) == set(SYSTEM) | set(TYPES)
    for table, spec in {**SYSTEM, **TYPES}.items():
        _check_table(db, table, spec)
    assert db.query_one("PRAGMA foreign_keys") == (1,)


def test_tenant_file_carries_the_type_tables(tmp_path: Path) -> None:
    db = _open(tmp_path, TENANT_SCHEMA)
    for table, spec in TYPES.items():
        _check_table(db, table, spec)


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
