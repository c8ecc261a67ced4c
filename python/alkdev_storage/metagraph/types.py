"""Graph types in a file: reading them, registering them under the scope
rules of SPEC §5, and mirroring system types into tenant files.

Scope, in short: ``system`` types have their canonical copy in system.db
(registered through ``store.graph_types``) and a read-only mirror in every
tenant file; ``tenant`` types are registered, altered and deleted by an
organization's owners and admins and used by every member; ``user`` types
belong to the account that registered them. Every violation raises its own
`ScopeViolationError`, is written to the audit log, and changes nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from alkdev_storage import events
from alkdev_storage._checks import shown
from alkdev_storage._database import Database
from alkdev_storage._native import Transaction
from alkdev_storage.errors import (
    LimitExceededError,
    NotTenantAdminError,
    NotTypeOwnerError,
    ReservedTypeNameError,
    ScopeViolationError,
    SystemTypeProtectedError,
    TypeVersionError,
    UnknownTypeError,
)
from alkdev_storage.limits import DEFAULT_LIMITS, Limits
from alkdev_storage.metagraph import _validation
from alkdev_storage.metagraph.specs import (
    EdgeTypeSpec,
    GraphConfig,
    GraphTypeSpec,
    NodeTypeSpec,
)

_Reads = Database | Transaction


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting in a tenant file: an account with its membership level,
    or the platform itself (``account_id=None``: every right)."""

    account_id: str | None
    level: str | None = None

    @property
    def privileged(self) -> bool:
        return self.account_id is None

    @property
    def is_admin(self) -> bool:
        return self.privileged or self.level in ("owner", "admin")


SYSTEM = Actor(None)


@dataclass(frozen=True, slots=True)
class NodeTypeInfo:
    id: str
    name: str
    schema: Any
    description: str


@dataclass(frozen=True, slots=True)
class EdgeTypeInfo:
    id: str
    name: str
    schema: Any
    allowed_source_types: tuple[str, ...]
    allowed_target_types: tuple[str, ...]
    description: str


@dataclass(frozen=True, slots=True)
class GraphTypeInfo:
    """A graph type as stored in one file."""

    id: str
    name: str
    scope: str
    version: int
    config: GraphConfig
    description: str
    owner_id: str | None
    fingerprint: str
    node_types: Mapping[str, NodeTypeInfo]
    edge_types: Mapping[str, EdgeTypeInfo]

    def spec(self) -> GraphTypeSpec:
        return GraphTypeSpec(
            name=self.name,
            scope=self.scope,
            version=self.version,
            config=self.config,
            description=self.description,
            node_types={
                n: NodeTypeSpec(schema=t.schema, description=t.description)
                for n, t in self.node_types.items()
            },
            edge_types={
                n: EdgeTypeSpec(
                    schema=t.schema,
                    allowed_source_types=t.allowed_source_types,
                    allowed_target_types=t.allowed_target_types,
                    description=t.description,
                )
                for n, t in self.edge_types.items()
            },
        )

    def node_type(self, name: str) -> NodeTypeInfo:
        found = self.node_types.get(name)
        if found is None:
            raise UnknownTypeError(f"graph type {shown(self.name)} has no node type {shown(name)}")
        return found

    def edge_type(self, name: str) -> EdgeTypeInfo:
        found = self.edge_types.get(name)
        if found is None:
            raise UnknownTypeError(f"graph type {shown(self.name)} has no edge type {shown(name)}")
        return found


def read_type(
    conn: _Reads, *, name: str | None = None, type_id: str | None = None
) -> GraphTypeInfo | None:
    """The graph type with this name (or id) in the file `conn` reads, or
    None. `conn` is a database or a transaction on it."""
    column, value = ("name", name) if name is not None else ("id", type_id)
    row = conn.query_one(f"SELECT * FROM graph_types WHERE {column} = ?", (value,), as_dict=True)
    if row is None:
        return None
    meta = json.loads(row["metadata"])
    nodes = {
        r["name"]: NodeTypeInfo(r["id"], r["name"], json.loads(r["schema"]), r["description"])
        for r in conn.query(
            "SELECT id, name, schema, description FROM node_types WHERE graph_type_id = ? "
            "ORDER BY name",
            (row["id"],),
            as_dict=True,
        )
    }
    edges = {
        r["name"]: EdgeTypeInfo(
            r["id"],
            r["name"],
            json.loads(r["schema"]),
            tuple(json.loads(r["allowed_source_types"])),
            tuple(json.loads(r["allowed_target_types"])),
            r["description"],
        )
        for r in conn.query(
            "SELECT id, name, schema, allowed_source_types, allowed_target_types, description "
            "FROM edge_types WHERE graph_type_id = ? ORDER BY name",
            (row["id"],),
            as_dict=True,
        )
    }
    return GraphTypeInfo(
        id=row["id"],
        name=row["name"],
        scope=row["scope"],
        version=row["version"],
        config=GraphConfig.from_document(json.loads(row["config"])),
        description=row["description"],
        owner_id=meta.get("owner_id"),
        fingerprint=meta.get("fingerprint", ""),
        node_types=nodes,
        edge_types=edges,
    )


def list_types(conn: _Reads) -> list[GraphTypeInfo]:
    names = [r[0] for r in conn.query("SELECT name FROM graph_types ORDER BY name")]
    return [t for t in (read_type(conn, name=n) for n in names) if t is not None]


def compile_all(spec: GraphTypeSpec, limits: Limits = DEFAULT_LIMITS) -> None:
    """Check and compile every schema of `spec` (`InvalidSchemaError` names
    the bad one): at most `Limits.schema_bytes` of JSON each, and at most
    `Limits.schema_expansion` subschemas checked at one place of a document
    (`SchemaTooCostlyError`), so that no schema a member registers can make
    validating one document take unbounded time."""
    for kind, types in (("node", spec.node_types), ("edge", spec.edge_types)):
        for name, t in types.items():
            try:
                size = len(json.dumps(t.schema))
                if size > limits.schema_bytes:
                    raise LimitExceededError(
                        f"the schema is {size} bytes of JSON, more than the limit of "
                        f"{limits.schema_bytes} (Limits.schema_bytes)"
                    )
                _validation.expansion(t.schema, limits.schema_expansion)
                _validation.compile_schema(t.schema)
            except ValueError as exc:
                raise type(exc)(f"{kind} type {shown(name)} of {shown(spec.name)}: {exc}") from None


def write_type(
    tx: Transaction, spec: GraphTypeSpec, *, owner_id: str | None, type_id: str | None = None
) -> str:
    """Insert `spec`, or replace the stored type of the same name in place
    (keeping its id, so its graphs keep their type); the type's id."""
    existing = tx.query_one("SELECT id FROM graph_types WHERE name = ?", (spec.name,))
    meta = json.dumps({"owner_id": owner_id, "fingerprint": spec.fingerprint})
    config = json.dumps(spec.config.to_document())
    if existing is None:
        gid = type_id or str(uuid.uuid4())
        tx.execute(
            "INSERT INTO graph_types (id, name, description, config, version, scope, metadata) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (gid, spec.name, spec.description, config, spec.version, spec.scope, meta),
        )
    else:
        gid = existing[0]
        tx.execute(
            "UPDATE graph_types SET description = ?, config = ?, version = ?, scope = ?, "
            "metadata = ?, updated_at = unixepoch() WHERE id = ?",
            (spec.description, config, spec.version, spec.scope, meta, gid),
        )
    # Node and edge types keep their ids when they survive a new version,
    # so validators and references stay keyed consistently.
    for table, items in (("node_types", spec.node_types), ("edge_types", spec.edge_types)):
        kept = {
            r[1]: r[0]
            for r in tx.query(f"SELECT id, name FROM {table} WHERE graph_type_id = ?", (gid,))
        }
        for gone in set(kept) - set(items):
            tx.execute(f"DELETE FROM {table} WHERE id = ?", (kept[gone],))
        for name, t in items.items():
            schema = json.dumps(t.schema, allow_nan=False)
            if table == "node_types":
                values: tuple[Any, ...] = (t.description, schema)
                columns = "description, schema"
            else:
                assert isinstance(t, EdgeTypeSpec)
                values = (
                    t.description,
                    schema,
                    json.dumps(list(t.allowed_source_types)),
                    json.dumps(list(t.allowed_target_types)),
                )
                columns = "description, schema, allowed_source_types, allowed_target_types"
            if name in kept:
                sets = ", ".join(f"{c.strip()} = ?" for c in columns.split(","))
                tx.execute(
                    f"UPDATE {table} SET {sets}, updated_at = unixepoch() WHERE id = ?",
                    (*values, kept[name]),
                )
            else:
                marks = ", ".join("?" for _ in values)
                tx.execute(
                    f"INSERT INTO {table} (id, graph_type_id, name, {columns}) "
                    f"VALUES (?, ?, ?, {marks})",
                    (str(uuid.uuid4()), gid, name, *values),
                )
    return gid


def needs_write(existing: GraphTypeInfo | None, spec: GraphTypeSpec) -> bool:
    """False for a no-op re-registration; raises `TypeVersionError` for a
    change without a higher version."""
    if existing is None:
        return True
    if existing.fingerprint == spec.fingerprint and existing.scope == spec.scope:
        if spec.version < existing.version:
            raise TypeVersionError(
                f"graph type {shown(spec.name)} is at version {existing.version}; "
                f"version {spec.version} is older"
            )
        return spec.version > existing.version
    if spec.version <= existing.version:
        raise TypeVersionError(
            f"graph type {shown(spec.name)} changed but its version did not go up "
            f"(stored {existing.version}, given {spec.version}); register it as version "
            f"{existing.version + 1}"
        )
    return True


AuditHook = Callable[[str, str, Mapping[str, Any]], None]


class GraphTypes:
    """A tenant file's graph types, as seen by one actor
    (``store.as_account(id).tenant(org_id).graph_types``)."""

    def __init__(
        self,
        db: Database,
        actor: Actor,
        *,
        system_names: Callable[[], set[str]],
        audit: AuditHook,
        lease: object = None,
        rights: Callable[[str], Actor] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        require: Callable[[GraphTypes, Actor, str, str], None] | None = None,
    ) -> None:
        self._db = db
        # Refuses (audited) unless the actor holds a scope in the
        # organization's ACL: (these types, actor, scope, operation). None:
        # no ACL here.
        self._require = require
        self._limits = limits
        self._actor = actor
        self._system_names = system_names
        self._audit = audit
        # The actor's rights as of now, given the operation about to run
        # (raises, audited, when they are gone); None: `actor`, fixed.
        self._rights = rights
        # Held only to keep the tenant file leased while this object (or a
        # `Graphs` built on it) is in use; see `Tenant`.
        self._lease = lease

    def authorize(self, operation: str) -> Actor:
        """The actor, with its rights as of now, about to run `operation`:
        every write asks first, so a membership or account status change in
        ``system.db`` reaches handles opened before it. Raises (audited)
        when the account may no longer write here."""
        return self._actor if self._rights is None else self._rights(operation)

    def _refuse(self, error: ScopeViolationError, operation: str, name: str) -> None:
        self._audit(
            "scope.violation",
            str(error),
            {"rule": type(error).__name__, "operation": operation, "graph_type": name},
        )
        raise error

    def _check_alter(
        self, existing: GraphTypeInfo | None, spec_scope: str, name: str, op: str
    ) -> None:
        actor = self.authorize(f"{op}_graph_type")
        if spec_scope == "system" or (
            op == "delete" and existing is not None and existing.scope == "system"
        ):
            self._refuse(
                SystemTypeProtectedError(
                    f"{shown(name)} is a system graph type; tenants cannot {op} system types"
                ),
                op,
                name,
            )
        if (existing is not None and existing.scope == "system") or (
            existing is None and name in self._system_names()
        ):
            self._refuse(
                ReservedTypeNameError(f"{shown(name)} is the name of a system graph type"), op, name
            )
        if actor.privileged:
            return
        scopes = {spec_scope} | ({existing.scope} if existing is not None else set())
        if "tenant" in scopes and not actor.is_admin:
            self._refuse(
                NotTenantAdminError(
                    f"only the organization's owners and admins may {op} tenant type {shown(name)}"
                ),
                op,
                name,
            )
        if "tenant" in scopes and self._require is not None:
            self._require(self, actor, "types:write", f"{op}_graph_type")
        if (
            existing is not None
            and existing.scope == "user"
            and existing.owner_id != actor.account_id
        ):
            self._refuse(
                NotTypeOwnerError(f"user type {shown(name)} belongs to another account"), op, name
            )

    def register(self, spec: GraphTypeSpec | Mapping[str, Any] | str) -> GraphTypeInfo:
        """Register `spec` (a spec, or a JSON/YAML document). Registering the
        same spec again is a no-op; a changed spec needs a higher version."""
        if not isinstance(spec, GraphTypeSpec):
            spec = GraphTypeSpec.from_document(spec)
        existing = read_type(self._db, name=spec.name)
        self._check_alter(existing, spec.scope, spec.name, "register")
        compile_all(spec, self._limits)
        with self._db.transaction() as tx:
            existing = read_type(tx, name=spec.name)
            if needs_write(existing, spec):
                owner = (
                    (existing.owner_id if existing is not None else self._actor.account_id)
                    if spec.scope == "user"
                    else None
                )
                gid = write_type(tx, spec, owner_id=owner)
                events.publish(
                    self._db,
                    tx,
                    "graph_types:created" if existing is None else "graph_types:updated",
                    gid,
                    action="created" if existing is None else "updated",
                    actor=self._actor.account_id,
                    data=spec.to_document(),
                )
                _validation.forget(str(self._db.path))
            found = read_type(tx, name=spec.name)
        assert found is not None
        return found

    def get(self, name: str) -> GraphTypeInfo:
        found = read_type(self._db, name=name)
        if found is None:
            raise UnknownTypeError(f"no graph type {shown(name)}")
        return found

    def list(self) -> list[GraphTypeInfo]:
        return list_types(self._db)

    def delete(self, name: str) -> None:
        """Delete the type and its node and edge types; its graphs stay,
        untyped and read-only."""
        existing = self.get(name)
        self._check_alter(existing, existing.scope, name, "delete")
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM graph_types WHERE id = ?", (existing.id,))
            events.publish(
                self._db,
                tx,
                "graph_types:deleted",
                existing.id,
                action="deleted",
                actor=self._actor.account_id,
            )
        _validation.forget(str(self._db.path))

    def check_can_use(self, info: GraphTypeInfo) -> None:
        """Creating a graph of a user type is its owner's alone."""
        actor = self.authorize("create_graph")
        if info.scope == "user" and not actor.privileged and info.owner_id != actor.account_id:
            self._refuse(
                NotTypeOwnerError(
                    f"only the owner of user type {shown(info.name)} may create graphs of it"
                ),
                "use",
                info.name,
            )


def mirror_system_types(tenant: Database, canonical: list[GraphTypeInfo]) -> int:
    """Bring the tenant file's copies of system types up to the canonical
    ones (version-checked); how many were written."""
    written = 0
    stale = []
    for info in canonical:
        copy = read_type(tenant, name=info.name)
        if copy is None or copy.version < info.version or copy.fingerprint != info.fingerprint:
            stale.append(info)
    if not stale:
        return 0
    with tenant.transaction() as tx:
        for info in stale:
            write_type(tx, info.spec(), owner_id=None, type_id=info.id)
            written += 1
    _validation.forget(str(tenant.path))
    return written
