"""Graphs, nodes and edges in a tenant file (SPEC §5; docs/metagraph.md).

A graph has a graph type; every node and edge written to it is checked
against that type, in the order of SPEC §5, and nothing is written when a
check fails:

1. the node or edge type exists in the graph's type (`UnknownTypeError`;
   a graph whose type was deleted is read-only: `ArchivedGraphError`);
2. the attributes satisfy the type's JSON Schema (`ValidationError`, with
   every violation and its JSON pointer);
3. edges only: both endpoints are nodes of the graph
   (`MissingEndpointError`), of node types the edge type allows
   (`EndpointTypeError`); no self-loop unless allowed (`SelfLoopError`); no
   second edge between the same nodes unless ``multi`` (`MultiEdgeError`);
   no undirected edge in a ``directed`` graph (`EdgeDirectionError`);
4. the graph is not archived (`ArchivedGraphError`).

Every write is one transaction (yours when you pass ``tx=``, inside a
savepoint, so a refused write leaves the rest of your transaction alone)
and publishes its change event in that transaction.

>>> import alkdev_storage as alk, tempfile, os
>>> from alkdev_storage import migrations, schema_tenant
>>> from alkdev_storage.metagraph import GraphTypeSpec, NodeTypeSpec, EdgeTypeSpec
>>> from alkdev_storage.metagraph.types import GraphTypes, SYSTEM
>>> from alkdev_storage.metagraph.graphs import Graphs
>>> db = alk.connect(os.path.join(tempfile.mkdtemp(), "tenant.db"))
>>> _ = migrations.migrate(db, schema_tenant.TENANT_SCHEMA)
>>> types = GraphTypes(db, SYSTEM, system_names=set, audit=lambda *a: None)
>>> _ = types.register(GraphTypeSpec(
...     name="tasks",
...     node_types={"task": NodeTypeSpec(schema={
...         "type": "object", "required": ["title"],
...         "properties": {"title": {"type": "string"}}})},
...     edge_types={"blocks": EdgeTypeSpec()},
... ))
>>> graphs = Graphs(db, types, SYSTEM, org_id="acme")
>>> g = graphs.create(type="tasks", name="launch")
>>> _ = g.add_node("a", type="task", attributes={"title": "write docs"})
>>> _ = g.add_node("b", type="task", attributes={"title": "ship"})
>>> _ = g.add_edge("a", "b", type="blocks")
>>> [n.key for n in g.neighbors("a")]
['b']
>>> try:
...     g.add_node("c", type="task", attributes={"title": 3})
... except alk.errors.ValidationError as e:
...     print([path for path, message in e.violations])
['/title']
>>> db.close()
"""

from __future__ import annotations

import builtins
import json
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alkdev_storage import _checks as check
from alkdev_storage import events
from alkdev_storage._checks import shown
from alkdev_storage._native import SchemaValidator, Transaction
from alkdev_storage.errors import (
    AlreadyExistsError,
    ArchivedGraphError,
    ConstraintError,
    EdgeDirectionError,
    EndpointTypeError,
    Error,
    InputTypeError,
    InvalidInputError,
    MissingEndpointError,
    MultiEdgeError,
    NotFoundError,
    OperationalError,
    ProtectedGraphError,
    SelfLoopError,
    StatusTransitionError,
    UnknownTypeError,
    ValidationError,
)
from alkdev_storage.limits import DEFAULT_LIMITS, Limits
from alkdev_storage.metagraph import _validation
from alkdev_storage.metagraph.specs import GraphConfig
from alkdev_storage.metagraph.types import (
    Actor,
    EdgeTypeInfo,
    GraphTypeInfo,
    GraphTypes,
    NodeTypeInfo,
    read_type,
)

if TYPE_CHECKING:
    from alkdev_storage._database import Database

__all__ = ["STATUSES", "TRANSITIONS", "Edge", "Graph", "Graphs", "ImportResult", "Node"]

STATUSES = ("draft", "active", "archived")

#: The allowed status changes (SPEC §5); any other is a `StatusTransitionError`.
TRANSITIONS = frozenset(
    {("draft", "active"), ("active", "archived"), ("draft", "archived"), ("archived", "active")}
)

DIRECTIONS = ("out", "in", "both")

#: System graph types whose graphs the storage manages itself: readable
#: like any graph, written only through ``tenant.acl`` / ``tenant.secrets``
#: (a `Graphs` made with ``managed=`` naming the type).
PROTECTED_TYPES = frozenset({"acl", "secrets"})

#: The configuration exported for a graph whose type was deleted: nothing
#: constrains its content any more.
_UNTYPED_OPTIONS = GraphConfig(type="mixed", multi=True, allow_self_loops=True)


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Node:
    """A node as stored: its caller-given `key`, node-type name and attributes."""

    key: str
    type: str
    attributes: dict[str, Any]
    id: str
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Edge:
    """An edge as stored. `key` is None for an anonymous edge; an
    `undirected` edge joins `source` and `target` both ways."""

    key: str | None
    type: str
    source: str
    target: str
    attributes: dict[str, Any]
    undirected: bool
    id: str
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What `Graph.import_graph` wrote."""

    nodes: int
    edges: int


_NODE_COLUMNS = "key, type, attributes, id, created_at, updated_at"
_EDGE_COLUMNS = (
    "key, type, source_node_key, target_node_key, attributes, undirected, id, created_at, "
    "updated_at"
)


def _node(row: Sequence[Any]) -> Node:
    return Node(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5])


def _edge(row: Sequence[Any]) -> Edge:
    return Edge(
        row[0], row[1], row[2], row[3], json.loads(row[4]), bool(row[5]), row[6], row[7], row[8]
    )


def _node_data(node: Node) -> dict[str, Any]:
    return {
        "id": node.id,
        "key": node.key,
        "type": node.type,
        "attributes": node.attributes,
        "created_at": node.created_at,
        "updated_at": node.updated_at,
    }


def _edge_data(edge: Edge) -> dict[str, Any]:
    return {
        "id": edge.id,
        "key": edge.key,
        "type": edge.type,
        "source": edge.source,
        "target": edge.target,
        "undirected": edge.undirected,
        "attributes": edge.attributes,
        "created_at": edge.created_at,
        "updated_at": edge.updated_at,
    }


# ---------------------------------------------------------------- argument checks


def _str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InputTypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidInputError(f"{name} must not be empty")
    return value


def _optional_str(name: str, value: object) -> str | None:
    return None if value is None else _str(name, value)


def _optional_bool(name: str, value: object) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise InputTypeError(f"{name} must be a bool or None, not {type(value).__name__}")
    return value


def _status(value: object) -> str:
    if not isinstance(value, str):
        raise InputTypeError(f"status must be a str, not {type(value).__name__}")
    if value not in STATUSES:
        raise InvalidInputError(f"status must be one of {', '.join(STATUSES)}; got {shown(value)}")
    return value


def _encode(value: object, limits: Limits, what: str = "attributes") -> str:
    """Attributes as the JSON text to store, within `limits`. That text is
    also what gets validated (``validate_json``), so what is checked is
    exactly what is stored: encoding turns tuples into lists. The native
    encoder writes what ``json.dumps`` writes, ten times faster, refuses
    NaN and infinities, and refuses documents over the limits (too deep,
    too long, a key that is not a str) in the same pass."""
    try:
        return limits.document(what, value)
    except Error:
        raise
    except (TypeError, ValueError) as exc:
        message = str(exc).removeprefix(f"{what} is not JSON-serialisable: ")
        raise type(exc)(f"{what} are not JSON: {message}") from None


def _attributes(what: str, value: object, limits: Limits) -> tuple[str, dict[str, Any]]:
    """The text to store and the document it decodes to (what a write
    returns and publishes)."""
    try:
        text = _encode(value, limits)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what}: {exc}") from None
    decoded: dict[str, Any] = json.loads(text)
    return text, decoded


def _key(what: str, value: object, limits: Limits) -> str:
    """A node or edge key (or an endpoint's): a non-empty str within
    `Limits.key_length`, with no NUL."""
    return limits.text(what, value, limits.key_length)


def _name(what: str, value: object, limits: Limits) -> str:
    """A type name or a graph name: within `Limits.name_length`, no NUL."""
    return limits.text(what, value, limits.name_length)


def _check(compiled: SchemaValidator, text: str, what: str) -> None:
    """Validate stored-to-be JSON text; `ValidationError` listing every
    violation (worded as `_validation.check` words it)."""
    violations = compiled.validate_json(text)
    if violations:
        listed = "; ".join(f"{path or '/'}: {message}" for path, message in violations)
        raise ValidationError(f"{what}: attributes do not match the schema: {listed}", violations)


def _new_id() -> str:
    return str(uuid.uuid4())


def _new_ids(n: int) -> builtins.list[str]:
    """`n` random (version 4) UUIDs as text, like ``str(uuid.uuid4())``,
    for a bulk import: four times faster than calling it `n` times."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = bytes((b & 0x0F) | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])  # RFC 4122 variant
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-"
        f"{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


def _unique_key_error(exc: ConstraintError, message: str) -> Exception:
    if exc.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE":
        return AlreadyExistsError(message)
    return exc


# ---------------------------------------------------------------- graphs


_GRAPH_SELECT = (
    "SELECT g.id, g.name, g.description, g.status, g.owner_id, g.project_id, g.metadata, "
    "g.created_at, g.updated_at, g.graph_type_id, t.name AS type_name "
    "FROM graphs g LEFT JOIN graph_types t ON t.id = g.graph_type_id"
)


def _removed_edge_data(
    key: str | None, type_name: str, source: str, target: str, undirected: object
) -> dict[str, Any]:
    """What an ``edges:deleted`` event carries about the edge."""
    return {
        "key": key,
        "type": type_name,
        "source": source,
        "target": target,
        "undirected": bool(undirected),
    }


class Graphs:
    """A tenant file's graphs, as one actor sees them (``t.graphs``).

    Reads use a reader snapshot; every write is one transaction with its
    change event (see the module docstring).
    """

    def __init__(
        self,
        db: Database,
        graph_types: GraphTypes,
        actor: Actor,
        *,
        org_id: str,
        limits: Limits = DEFAULT_LIMITS,
        managed: frozenset[str] = frozenset(),
    ) -> None:
        self._db = db
        self.limits = limits
        self._managed = managed
        self._path = str(db.path)
        self.graph_types = graph_types
        self.actor = actor
        self.org_id = org_id
        # type id -> (version, metadata text, info): reread only when the
        # stored type's version or fingerprint changes.
        self._type_cache: dict[str, tuple[int, str, GraphTypeInfo]] = {}

    def __repr__(self) -> str:
        return f"<Graphs of {self.org_id}>"

    # -- plumbing shared with Graph

    @contextmanager
    def _writing(self, tx: Transaction | None, operation: str) -> Iterator[Transaction]:
        """The caller's transaction (inside a savepoint, so a refused write
        leaves the rest of it intact) or one of our own, once the actor's
        current rights allow `operation` (see `GraphTypes.authorize`)."""
        self.graph_types.authorize(operation)
        if tx is None:
            with self._db.transaction() as own:
                yield own
        else:
            with tx.savepoint():
                yield tx

    def _publish(
        self,
        tx: Transaction,
        topic: str,
        entity_id: str,
        *,
        graph_id: str,
        key: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        events.publish(
            self._db,
            tx,
            topic,
            entity_id,
            action=topic.split(":", 1)[1],
            actor=self.actor.account_id,
            data=data,
            org_id=self.org_id,
            graph_id=graph_id,
            key=key,
        )

    def _guard(self, type_name: str | None, operation: str) -> None:
        """Refuse (audited) a write to a graph the storage manages itself
        unless this `Graphs` is the one managing it."""
        if type_name in PROTECTED_TYPES and type_name not in self._managed:
            self.graph_types._refuse(
                ProtectedGraphError(
                    f"graphs of type {shown(type_name)} are managed by the storage; change "
                    f"them through tenant.{type_name} (operation {shown(operation)} refused)"
                ),
                operation,
                type_name,
            )

    def _type_info(
        self, tx: Transaction, type_id: str, version: int, meta: str
    ) -> GraphTypeInfo | None:
        cached = self._type_cache.get(type_id)
        if cached is not None and cached[0] == version and cached[1] == meta:
            return cached[2]
        info = read_type(tx, type_id=type_id)
        if info is not None:
            self._type_cache[type_id] = (version, meta, info)
        return info

    def _state(self, tx: Transaction, graph_id: str) -> tuple[str, GraphTypeInfo | None]:
        """The graph's status and type as of now, inside `tx`."""
        row = tx.query_one(
            "SELECT g.status, g.graph_type_id, t.version, t.metadata FROM graphs g "
            "LEFT JOIN graph_types t ON t.id = g.graph_type_id WHERE g.id = ?",
            (graph_id,),
        )
        if row is None:
            raise NotFoundError(f"no graph {shown(graph_id)} (it was deleted)")
        status, type_id, version, meta = row
        if type_id is None:
            return status, None
        return status, self._type_info(tx, type_id, version, meta)

    def _validator(self, info: GraphTypeInfo, t: NodeTypeInfo | EdgeTypeInfo) -> SchemaValidator:
        return _validation.validator(self._path, t.id, info.version, t.schema)

    # -- public API

    def create(
        self,
        *,
        type: str | None,  # noqa: A002 - the contract's name
        name: str,
        owner_id: str | None = None,
        project_id: str | None = None,
        description: str = "",
        status: str = "draft",
        metadata: Mapping[str, Any] | None = None,
        tx: Transaction | None = None,
    ) -> Graph:
        """Create a graph of the graph type named `type` (`UnknownTypeError`
        if there is none; `NotTypeOwnerError` for another account's user
        type). ``type=None`` makes an untyped graph, which holds no nodes or
        edges (read-only, like a graph whose type was deleted)."""
        type_name = _optional_str("type", type)
        graph_name = _name("name", name, self.limits)
        if not graph_name.strip():
            raise InvalidInputError("name must not be blank")
        owner = _optional_str("owner_id", owner_id)
        project = _optional_str("project_id", project_id)
        if not isinstance(description, str):
            raise InputTypeError(
                f"description must be a str, not {builtins.type(description).__name__}"
            )
        self.limits.text("description", description, self.limits.text_length, empty=True)
        state = _status(status)
        meta = self.limits.document("metadata", metadata)
        native = check.native_tx(tx)
        info: GraphTypeInfo | None = None
        if type_name is not None:
            info = read_type(self._db, name=type_name)
            if info is None:
                raise UnknownTypeError(f"no graph type {shown(type_name)}")
            self._guard(info.name, "create_graph")
            self.graph_types.check_can_use(info)
        graph_id = _new_id()
        now = int(time.time())
        with self._writing(native, "create_graph") as t:
            if info is not None:
                # The type may have gone (or changed owner) since it was read.
                current = read_type(t, type_id=info.id)
                if current is None:
                    raise UnknownTypeError(f"no graph type {shown(type_name)}")
                if current.owner_id != info.owner_id or current.scope != info.scope:
                    self.graph_types.check_can_use(current)
                info = current
            t.execute(
                "INSERT INTO graphs (id, graph_type_id, name, description, status, owner_id, "
                "project_id, metadata, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    graph_id,
                    None if info is None else info.id,
                    graph_name,
                    description,
                    state,
                    owner,
                    project,
                    meta,
                    now,
                    now,
                ),
            )
            row = {
                "id": graph_id,
                "name": graph_name,
                "description": description,
                "status": state,
                "owner_id": owner,
                "project_id": project,
                "metadata": meta,
                "created_at": now,
                "updated_at": now,
                "graph_type_id": None if info is None else info.id,
                "type_name": None if info is None else info.name,
            }
            graph = Graph(self, row)
            self._publish(t, "graphs:created", graph_id, graph_id=graph_id, data=graph._data())
        return graph

    def get(self, graph_id: str) -> Graph:
        """The graph with this id; `NotFoundError` otherwise."""
        _str("graph_id", graph_id)
        row = self._db.query_one(f"{_GRAPH_SELECT} WHERE g.id = ?", (graph_id,), as_dict=True)
        if row is None:
            raise NotFoundError(f"no graph {shown(graph_id)} in organization {shown(self.org_id)}")
        return Graph(self, row)

    def list(
        self,
        *,
        owner_id: str | None = None,
        project_id: str | None = None,
        status: str | None = None,
        type: str | None = None,  # noqa: A002 - the contract's name
    ) -> builtins.list[Graph]:
        """Graphs matching every filter given, oldest first. `type` is a
        graph-type name (an unknown name matches nothing)."""
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
        for column, value in (
            ("g.owner_id", _optional_str("owner_id", owner_id)),
            ("g.project_id", _optional_str("project_id", project_id)),
            ("g.status", None if status is None else _status(status)),
            ("t.name", _optional_str("type", type)),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.query(f"{_GRAPH_SELECT}{where} ORDER BY g.rowid", params, as_dict=True)
        return [Graph(self, row) for row in rows]

    def set_status(self, graph_id: str, status: str, *, tx: Transaction | None = None) -> Graph:
        """Move the graph to `status`: draft → active → archived, draft →
        archived, archived → active (`StatusTransitionError` otherwise).
        Publishes ``graphs:updated``."""
        _str("graph_id", graph_id)
        new = _status(status)
        native = check.native_tx(tx)
        with self._writing(native, "set_graph_status") as t:
            row = t.query_one(f"{_GRAPH_SELECT} WHERE g.id = ?", (graph_id,), as_dict=True)
            if row is None:
                raise NotFoundError(
                    f"no graph {shown(graph_id)} in organization {shown(self.org_id)}"
                )
            self._guard(row["type_name"], "set_graph_status")
            old = row["status"]
            if (old, new) not in TRANSITIONS:
                raise StatusTransitionError(
                    f"graph {shown(graph_id)} cannot go from {shown(old)} to {shown(new)} "
                    "(allowed: draft → active → archived, draft → archived, archived → active)"
                )
            now = int(time.time())
            t.execute(
                "UPDATE graphs SET status = ?, updated_at = ? WHERE id = ?", (new, now, graph_id)
            )
            graph = Graph(self, {**row, "status": new, "updated_at": now})
            self._publish(t, "graphs:updated", graph_id, graph_id=graph_id, data=graph._data())
        return graph

    def delete(self, graph_id: str, *, tx: Transaction | None = None) -> None:
        """Delete the graph with its nodes and edges. Publishes one
        ``graphs:deleted`` event (with how many nodes and edges went), not
        one per node or edge."""
        _str("graph_id", graph_id)
        native = check.native_tx(tx)
        with self._writing(native, "delete_graph") as t:
            row = t.query_one(
                "SELECT (SELECT count(*) FROM nodes WHERE graph_id = :g), "
                "(SELECT count(*) FROM edges WHERE graph_id = :g), "
                "(SELECT name FROM graph_types WHERE id = graphs.graph_type_id) "
                "FROM graphs WHERE id = :g",
                {"g": graph_id},
            )
            if row is None:
                raise NotFoundError(
                    f"no graph {shown(graph_id)} in organization {shown(self.org_id)}"
                )
            self._guard(row[2], "delete_graph")
            t.execute("DELETE FROM graphs WHERE id = ?", (graph_id,))
            self._publish(
                t,
                "graphs:deleted",
                graph_id,
                graph_id=graph_id,
                data={"nodes": row[0], "edges": row[1]},
            )


# ---------------------------------------------------------------- one graph


class Graph:
    """A handle on one graph (from `Graphs.create`, `get` or `list`).

    Its properties are the graph's row as read when the handle was made
    (ask `Graphs.get` for a fresh one); every operation re-reads the
    graph's status and type, so it never acts on stale type information.
    """

    __slots__ = ("_graphs", "_row")

    def __init__(self, graphs: Graphs, row: Mapping[str, Any]) -> None:
        self._graphs = graphs
        self._row = dict(row)

    def __repr__(self) -> str:
        return f"<Graph {shown(self.name)} ({self.type_name}, {self.status}) {self.id}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return self._row == other._row

    def __hash__(self) -> int:
        return hash(self.id)

    # -- properties

    @property
    def id(self) -> str:
        return str(self._row["id"])

    @property
    def name(self) -> str:
        return str(self._row["name"])

    @property
    def status(self) -> str:
        return str(self._row["status"])

    @property
    def type_name(self) -> str | None:
        """The graph type's name; None if the graph has no type (any more)."""
        name = self._row["type_name"]
        return None if name is None else str(name)

    @property
    def owner_id(self) -> str | None:
        value = self._row["owner_id"]
        return None if value is None else str(value)

    @property
    def project_id(self) -> str | None:
        value = self._row["project_id"]
        return None if value is None else str(value)

    @property
    def description(self) -> str:
        return str(self._row["description"])

    @property
    def metadata(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self._row["metadata"])
        return decoded

    @property
    def created_at(self) -> int:
        return int(self._row["created_at"])

    @property
    def updated_at(self) -> int:
        return int(self._row["updated_at"])

    def _data(self) -> dict[str, Any]:
        """The row as published in ``graphs:*`` events."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "type": self.type_name,
            "owner_id": self.owner_id,
            "project_id": self.project_id,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    # -- rule helpers (the order of SPEC §5)

    def _typed(self, info: GraphTypeInfo | None) -> GraphTypeInfo:
        """Rule 1's precondition: a graph that lost its type is read-only."""
        if info is None:
            raise ArchivedGraphError(
                f"graph {shown(self.id)} has lost its type (its graph type was deleted) "
                "and is read-only"
            )
        return info

    def _writable(self, status: str, info: GraphTypeInfo | None) -> None:
        """Rule 4 (and the read-only state of an untyped graph); a graph the
        storage manages is written only by its manager."""
        self._graphs._guard(self._typed(info).name, "write")
        if status == "archived":
            raise ArchivedGraphError(
                f"graph {shown(self.id)} is archived and read-only; set its status to 'active' "
                "to write to it"
            )

    def _node_type(self, info: GraphTypeInfo | None, name: str) -> NodeTypeInfo:
        return self._typed(info).node_type(name)

    def _edge_type(self, info: GraphTypeInfo | None, name: str) -> EdgeTypeInfo:
        return self._typed(info).edge_type(name)

    def _check_attributes(
        self, info: GraphTypeInfo, t: NodeTypeInfo | EdgeTypeInfo, text: str, what: str
    ) -> None:
        _check(self._graphs._validator(info, t), text, what)

    @staticmethod
    def _undirected(config: GraphConfig, requested: bool | None) -> bool:
        if config.type == "undirected":
            return True  # undirected graphs store every edge as undirected
        return bool(requested)

    @staticmethod
    def _check_direction(config: GraphConfig, undirected: bool, what: str) -> None:
        if config.type == "directed" and undirected:
            raise EdgeDirectionError(f"{what}: graph type is directed; undirected edges refused")

    @staticmethod
    def _check_ends(
        edge_type: EdgeTypeInfo,
        source: str,
        source_type: str | None,
        target: str,
        target_type: str | None,
        what: str,
    ) -> None:
        """Rule 3, endpoints: they exist, with node types the edge type allows."""
        for end, end_type in (("source", source_type), ("target", target_type)):
            if end_type is None:
                name = source if end == "source" else target
                raise MissingEndpointError(f"{what}: {end} node {shown(name)} is not in the graph")
        for end, end_type, allowed in (
            ("source", source_type, edge_type.allowed_source_types),
            ("target", target_type, edge_type.allowed_target_types),
        ):
            if allowed and end_type not in allowed:
                name = source if end == "source" else target
                raise EndpointTypeError(
                    f"{what}: edge type {shown(edge_type.name)} does not allow a "
                    f"{shown(end_type)} node ({shown(name)}) as {end}; "
                    f"allowed: {', '.join(allowed)}"
                )

    # -- writes

    def add_node(
        self,
        key: str,
        *,
        type: str,  # noqa: A002 - the contract's name
        attributes: Mapping[str, Any] | None = None,
        tx: Transaction | None = None,
    ) -> Node:
        """Add a node; `AlreadyExistsError` if the graph has a node `key`.
        Publishes ``nodes:created``."""
        node_key = _key("key", key, self._graphs.limits)
        type_name = _name("type", type, self._graphs.limits)
        what = f"node {shown(node_key)}"
        text, doc = _attributes(what, attributes, self._graphs.limits)
        native = check.native_tx(tx)
        g = self._graphs
        with g._writing(native, "add_node") as t:
            status, info = g._state(t, self.id)
            node_type = self._node_type(info, type_name)
            typed = self._typed(info)
            self._check_attributes(typed, node_type, text, what)
            self._writable(status, info)
            now = int(time.time())
            node = Node(node_key, type_name, doc, _new_id(), now, now)
            try:
                t.execute(
                    "INSERT INTO nodes (id, graph_id, key, type, attributes, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (node.id, self.id, node_key, type_name, text, now, now),
                )
            except ConstraintError as exc:
                raise _unique_key_error(
                    exc, f"graph {shown(self.id)} already has a {what}"
                ) from None
            g._publish(
                t, "nodes:created", node.id, graph_id=self.id, key=node_key, data=_node_data(node)
            )
        return node

    def add_edge(
        self,
        source: str,
        target: str,
        *,
        type: str,  # noqa: A002 - the contract's name
        attributes: Mapping[str, Any] | None = None,
        key: str | None = None,
        undirected: bool | None = None,
        tx: Transaction | None = None,
    ) -> Edge:
        """Add an edge from `source` to `target` (node keys). `key` names it
        (None: anonymous, so it cannot be updated or removed on its own).
        `undirected`: None takes the graph's default (``undirected`` graphs:
        always; otherwise directed). Publishes ``edges:created``."""
        src = _key("source", source, self._graphs.limits)
        dst = _key("target", target, self._graphs.limits)
        type_name = _name("type", type, self._graphs.limits)
        edge_key = None if key is None else _key("key", key, self._graphs.limits)
        requested = _optional_bool("undirected", undirected)
        what = (
            f"edge {shown(edge_key)}"
            if edge_key is not None
            else f"edge {shown(src)} -> {shown(dst)}"
        )
        text, doc = _attributes(what, attributes, self._graphs.limits)
        native = check.native_tx(tx)
        g = self._graphs
        with g._writing(native, "add_edge") as t:
            status, info = g._state(t, self.id)
            edge_type = self._edge_type(info, type_name)
            typed = self._typed(info)
            self._check_attributes(typed, edge_type, text, what)
            ends: dict[str, str] = {
                k: v
                for k, v in t.query(
                    "SELECT key, type FROM nodes WHERE graph_id = ? AND key IN (?, ?)",
                    (self.id, src, dst),
                )
            }
            self._check_ends(edge_type, src, ends.get(src), dst, ends.get(dst), what)
            config = typed.config
            is_undirected = self._undirected(config, requested)
            if src == dst and not config.allow_self_loops:
                raise SelfLoopError(f"{what}: graph type {shown(typed.name)} allows no self-loops")
            if not config.multi:
                # Two index lookups (see "Query plans"), not one OR.
                clash = t.query_one(
                    "SELECT 1 FROM edges WHERE graph_id = :g AND source_node_key = :s "
                    "AND target_node_key = :t "
                    "UNION ALL SELECT 1 FROM edges WHERE graph_id = :g AND source_node_key = :t "
                    "AND target_node_key = :s AND (undirected OR :u) LIMIT 1",
                    {"g": self.id, "s": src, "t": dst, "u": is_undirected},
                )
                if clash is not None:
                    kind = "undirected " if is_undirected else ""
                    raise MultiEdgeError(
                        f"{what}: graph type {shown(typed.name)} allows one edge per pair of nodes "
                        f"and {shown(src)}, {shown(dst)} already have one (new {kind}edge)"
                    )
            self._check_direction(config, is_undirected, what)
            self._writable(status, info)
            now = int(time.time())
            edge = Edge(edge_key, type_name, src, dst, doc, is_undirected, _new_id(), now, now)
            try:
                t.execute(
                    "INSERT INTO edges (id, graph_id, key, type, source_node_key, "
                    "target_node_key, attributes, undirected, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        edge.id,
                        self.id,
                        edge_key,
                        type_name,
                        src,
                        dst,
                        text,
                        is_undirected,
                        now,
                        now,
                    ),
                )
            except ConstraintError as exc:
                raise _unique_key_error(
                    exc, f"graph {shown(self.id)} already has an {what}"
                ) from None
            g._publish(
                t, "edges:created", edge.id, graph_id=self.id, key=edge_key, data=_edge_data(edge)
            )
        return edge

    def update_node(
        self, key: str, *, attributes: Mapping[str, Any], tx: Transaction | None = None
    ) -> Node:
        """Replace the node's attributes (validated against its type; keys
        and types never change). Publishes ``nodes:updated``."""
        node_key = _str("key", key)
        what = f"node {shown(node_key)}"
        if attributes is None:
            raise InputTypeError(f"{what}: attributes must be a mapping, not None")
        text, doc = _attributes(what, attributes, self._graphs.limits)
        native = check.native_tx(tx)
        g = self._graphs
        with g._writing(native, "update_node") as t:
            status, info = g._state(t, self.id)
            row = t.query_one(
                "SELECT id, type, created_at FROM nodes WHERE graph_id = ? AND key = ?",
                (self.id, node_key),
            )
            if row is None:
                raise NotFoundError(f"graph {shown(self.id)} has no {what}")
            node_id, type_name, created_at = row
            node_type = self._node_type(info, type_name)
            typed = self._typed(info)
            self._check_attributes(typed, node_type, text, what)
            self._writable(status, info)
            now = int(time.time())
            t.execute(
                "UPDATE nodes SET attributes = ?, updated_at = ? WHERE id = ?",
                (text, now, node_id),
            )
            node = Node(node_key, type_name, doc, node_id, created_at, now)
            g._publish(
                t, "nodes:updated", node_id, graph_id=self.id, key=node_key, data=_node_data(node)
            )
        return node

    def update_edge(
        self, key: str, *, attributes: Mapping[str, Any], tx: Transaction | None = None
    ) -> Edge:
        """Replace the attributes of the edge named `key` (validated).
        Publishes ``edges:updated``."""
        edge_key = _str("key", key)
        what = f"edge {shown(edge_key)}"
        if attributes is None:
            raise InputTypeError(f"{what}: attributes must be a mapping, not None")
        text, doc = _attributes(what, attributes, self._graphs.limits)
        native = check.native_tx(tx)
        g = self._graphs
        with g._writing(native, "update_edge") as t:
            status, info = g._state(t, self.id)
            row = t.query_one(
                f"SELECT {_EDGE_COLUMNS} FROM edges WHERE graph_id = ? AND key = ?",
                (self.id, edge_key),
            )
            if row is None:
                raise NotFoundError(f"graph {shown(self.id)} has no {what}")
            old = _edge(row)
            edge_type = self._edge_type(info, old.type)
            typed = self._typed(info)
            self._check_attributes(typed, edge_type, text, what)
            self._writable(status, info)
            now = int(time.time())
            t.execute(
                "UPDATE edges SET attributes = ?, updated_at = ? WHERE id = ?", (text, now, old.id)
            )
            edge = Edge(
                edge_key,
                old.type,
                old.source,
                old.target,
                doc,
                old.undirected,
                old.id,
                old.created_at,
                now,
            )
            g._publish(
                t, "edges:updated", edge.id, graph_id=self.id, key=edge_key, data=_edge_data(edge)
            )
        return edge

    def remove_node(self, key: str, *, tx: Transaction | None = None) -> None:
        """Remove the node and every edge touching it. Publishes one
        ``edges:deleted`` per edge that goes with it, then ``nodes:deleted``."""
        node_key = _str("key", key)
        native = check.native_tx(tx)
        g = self._graphs
        with g._writing(native, "remove_node") as t:
            status, info = g._state(t, self.id)
            row = t.query_one(
                "SELECT id, type FROM nodes WHERE graph_id = ? AND key = ?", (self.id, node_key)
            )
            if row is None:
                raise NotFoundError(f"graph {shown(self.id)} has no node {shown(node_key)}")
            self._writable(status, info)
            node_id, type_name = row
            # Two index lookups (see "Query plans"); a self-loop only once.
            gone = t.query(
                "SELECT rowid, id, key, type, source_node_key, target_node_key, undirected "
                "FROM edges WHERE graph_id = :g AND source_node_key = :k "
                "UNION ALL "
                "SELECT rowid, id, key, type, source_node_key, target_node_key, undirected "
                "FROM edges WHERE graph_id = :g AND target_node_key = :k "
                "AND source_node_key <> :k ORDER BY 1",
                {"g": self.id, "k": node_key},
            )
            t.execute("DELETE FROM nodes WHERE id = ?", (node_id,))
            for _, edge_id, edge_key, edge_type, src, dst, und in gone:
                g._publish(
                    t,
                    "edges:deleted",
                    edge_id,
                    graph_id=self.id,
                    key=edge_key,
                    data={
                        **_removed_edge_data(edge_key, edge_type, src, dst, und),
                        "with_node": node_key,
                    },
                )
            g._publish(
                t,
                "nodes:deleted",
                node_id,
                graph_id=self.id,
                key=node_key,
                data={"key": node_key, "type": type_name, "edges": len(gone)},
            )

    def remove_edge(self, key: str, *, tx: Transaction | None = None) -> None:
        """Remove the edge named `key`. Publishes ``edges:deleted``."""
        edge_key = _str("key", key)
        native = check.native_tx(tx)
        g = self._graphs
        with g._writing(native, "remove_edge") as t:
            status, info = g._state(t, self.id)
            row = t.query_one(
                "SELECT id, type, source_node_key, target_node_key, undirected FROM edges "
                "WHERE graph_id = ? AND key = ?",
                (self.id, edge_key),
            )
            if row is None:
                raise NotFoundError(f"graph {shown(self.id)} has no edge {shown(edge_key)}")
            self._writable(status, info)
            edge_id, edge_type, src, dst, und = row
            t.execute("DELETE FROM edges WHERE id = ?", (edge_id,))
            g._publish(
                t,
                "edges:deleted",
                edge_id,
                graph_id=self.id,
                key=edge_key,
                data=_removed_edge_data(edge_key, edge_type, src, dst, und),
            )

    # -- reads

    def node(self, key: str) -> Node:
        """The node `key`; `NotFoundError` otherwise."""
        _str("key", key)
        row = self._graphs._db.query_one(
            f"SELECT {_NODE_COLUMNS} FROM nodes WHERE graph_id = ? AND key = ?", (self.id, key)
        )
        if row is None:
            raise NotFoundError(f"graph {shown(self.id)} has no node {shown(key)}")
        return _node(row)

    def edge(self, key: str) -> Edge:
        """The edge named `key`; `NotFoundError` otherwise."""
        _str("key", key)
        row = self._graphs._db.query_one(
            f"SELECT {_EDGE_COLUMNS} FROM edges WHERE graph_id = ? AND key = ?", (self.id, key)
        )
        if row is None:
            raise NotFoundError(f"graph {shown(self.id)} has no edge {shown(key)}")
        return _edge(row)

    def nodes(
        self,
        *,
        type: str | None = None,  # noqa: A002 - the contract's name
        where: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> builtins.list[Node]:
        """Nodes in insertion order, filtered by node type and by attribute
        equality: ``where={"$.status": "open", "$.owner.name": "ada"}``
        (SQLite JSON paths). Values compare as JSON values: a str matches
        only a JSON string, a number any equal number (``1`` matches
        ``1.0``, not ``true``), a bool only JSON ``true``/``false`` (not
        ``1``/``0``), None only an explicit JSON ``null`` (not a missing
        key). Lists and dicts are refused."""
        clauses = ["graph_id = ?"]
        params: builtins.list[Any] = [self.id]
        if type is not None:
            clauses.append("type = ?")
            params.append(_str("type", type))
        if where is not None:
            if not isinstance(where, Mapping):
                raise InputTypeError(
                    f"where must be a mapping, not {builtins.type(where).__name__}"
                )
            for path, value in where.items():
                clause, values = _where(path, value)
                clauses.append(clause)
                params.extend(values)
        sql = f"SELECT {_NODE_COLUMNS} FROM nodes WHERE {' AND '.join(clauses)} ORDER BY rowid"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(check.whole("limit", limit, minimum=0))
        try:
            rows = self._graphs._db.query(sql, params)
        except OperationalError as exc:
            if "JSON path" not in str(exc):
                raise
            raise InvalidInputError(f"where: {exc}") from None
        return [_node(row) for row in rows]

    def edges(
        self,
        *,
        type: str | None = None,  # noqa: A002 - the contract's name
        source: str | None = None,
        target: str | None = None,
    ) -> builtins.list[Edge]:
        """Edges in insertion order, filtered by edge type and by the stored
        `source` / `target` keys (an undirected edge is matched as stored;
        `neighbors` follows it both ways)."""
        clauses = ["graph_id = ?"]
        params: builtins.list[Any] = [self.id]
        for column, name, value in (
            ("type", "type", type),
            ("source_node_key", "source", source),
            ("target_node_key", "target", target),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(_str(name, value))
        sql = f"SELECT {_EDGE_COLUMNS} FROM edges WHERE {' AND '.join(clauses)} ORDER BY rowid"
        return [_edge(row) for row in self._graphs._db.query(sql, params)]

    def _require_node(self, key: str) -> None:
        row = self._graphs._db.query_one(
            "SELECT 1 FROM nodes WHERE graph_id = ? AND key = ?", (self.id, key)
        )
        if row is None:
            raise NotFoundError(f"graph {shown(self.id)} has no node {shown(key)}")

    def neighbors(
        self, key: str, *, direction: str = "out", edge_type: str | None = None
    ) -> builtins.list[Node]:
        """The nodes one edge away from `key`, each once, in insertion order.
        ``direction``: "out" (edges from `key`), "in" (edges to it) or
        "both"; an undirected edge counts both ways. A self-loop makes a
        node its own neighbour."""
        start = _str("key", key)
        hops, params = _hops(self.id, direction, edge_type)
        # UNION ALL: IN ignores repeats, and a UNION here would let SQLite
        # merge two index-ordered scans of the whole graph (see "Query plans").
        reached = " UNION ALL ".join(
            f"SELECT {column} FROM edges e WHERE {condition.format(frontier=':k')}"
            for column, condition in hops
        )
        rows = self._graphs._db.query(
            f"SELECT {_NODE_COLUMNS} FROM nodes WHERE graph_id = :g AND key IN ({reached}) "
            "ORDER BY rowid",
            {**params, "k": start},
        )
        if not rows:
            self._require_node(start)
        return [_node(row) for row in rows]

    def traverse(
        self,
        key: str,
        *,
        depth: int = 3,
        direction: str = "out",
        edge_type: str | None = None,
    ) -> builtins.list[tuple[Node, int]]:
        """Breadth-first from `key`: every node within `depth` hops, once,
        with its hop distance, nearest first (then insertion order); the
        start node is left out even when a cycle leads back to it. One
        recursive SQL query; edges are followed as in `neighbors`."""
        start = _str("key", key)
        hops = check.whole("depth", depth, minimum=0)
        hops_sql, params = _hops(self.id, direction, edge_type)
        # One recursive SELECT per way of following an edge, each run for
        # every queued row. Each extends a (node, distance) pair by one hop;
        # UNION drops repeated pairs and the depth bound ends cycles. CROSS
        # JOIN keeps the frontier as the outer loop, so each hop is an index
        # lookup on (graph_id, endpoint) (see "Query plans").
        steps = " ".join(
            f"UNION SELECT {column}, r.d + 1 FROM r CROSS JOIN edges e "
            f"ON {condition.format(frontier='r.key')} WHERE r.d < :depth"
            for column, condition in hops_sql
        )
        node_columns = ", ".join(f"n.{c.strip()}" for c in _NODE_COLUMNS.split(","))
        rows = self._graphs._db.query(
            f"WITH RECURSIVE r(key, d) AS (SELECT :k, 0 {steps}) "
            f"SELECT {node_columns}, m.d "
            "FROM (SELECT key, min(d) AS d FROM r WHERE key <> :k GROUP BY key) AS m "
            "CROSS JOIN nodes n ON n.graph_id = :g AND n.key = m.key ORDER BY m.d, n.rowid",
            {**params, "k": start, "depth": hops},
        )
        if not rows:
            self._require_node(start)
        return [(_node(row), row[6]) for row in rows]

    # -- import / export

    def export(self) -> dict[str, Any]:
        """The graph as a graphology-style document (docs/metagraph.md):
        ``attributes``, ``options`` (the graph type's config), ``nodes`` and
        ``edges`` in insertion order. Nodes and edges are read by one
        statement, so the document is one consistent snapshot of them."""
        g = self._graphs
        row = g._db.query_one(f"{_GRAPH_SELECT} WHERE g.id = ?", (self.id,), as_dict=True)
        if row is None:
            raise NotFoundError(f"no graph {shown(self.id)} in organization {shown(g.org_id)}")
        graph = Graph(g, row)
        config = _UNTYPED_OPTIONS
        if row["graph_type_id"] is not None:
            info = read_type(g._db, type_id=row["graph_type_id"])
            if info is not None:
                config = info.config
        content = g._db.query(
            "SELECT 0, rowid, key, type, NULL, NULL, attributes, NULL FROM nodes "
            "WHERE graph_id = :g "
            "UNION ALL "
            "SELECT 1, rowid, key, type, source_node_key, target_node_key, attributes, undirected "
            "FROM edges WHERE graph_id = :g "
            "ORDER BY 1, 2",
            {"g": self.id},
        )
        loads = json.loads
        nodes = [
            {"key": r[2], "type": r[3], "attributes": loads(r[6])} for r in content if r[0] == 0
        ]
        edges = [
            {
                "key": r[2],
                "type": r[3],
                "source": r[4],
                "target": r[5],
                "attributes": loads(r[6]),
                "undirected": bool(r[7]),
            }
            for r in content
            if r[0] == 1
        ]
        return {
            "attributes": {
                "name": graph.name,
                "description": graph.description,
                "status": graph.status,
                "type": graph.type_name,
                "owner_id": graph.owner_id,
                "project_id": graph.project_id,
                "metadata": graph.metadata,
            },
            "options": config.to_document(),
            "nodes": nodes,
            "edges": edges,
        }

    def import_graph(
        self, doc: Mapping[str, Any], *, tx: Transaction | None = None
    ) -> ImportResult:
        """Add a document's nodes and edges (the `export` format) to this
        graph in one transaction: every node and edge is checked with the
        same rules as `add_node` / `add_edge`, against the graph's current
        content plus the document's, and the first failure rejects the
        whole import (nothing written). The document's ``attributes`` and
        ``options`` describe its source graph and are not applied here.
        Publishes one ``graphs:imported`` event carrying the counts."""
        nodes, edges = _parse_document(doc, self._graphs.limits)
        native = check.native_tx(tx)
        g = self._graphs
        with g._writing(native, "import_graph") as t:
            status, info = g._state(t, self.id)
            typed = self._typed(info)
            now = int(time.time())
            node_rows = self._import_nodes(typed, nodes, now)
            edge_rows = self._import_edges(t, typed, nodes, edges, now)
            self._writable(status, info)
            self._check_new_keys(t, nodes, edges)
            if node_rows:
                t.executemany(
                    "INSERT INTO nodes (id, graph_id, key, type, attributes, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    node_rows,
                )
            if edge_rows:
                t.executemany(
                    "INSERT INTO edges (id, graph_id, key, type, source_node_key, "
                    "target_node_key, attributes, undirected, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    edge_rows,
                )
            result = ImportResult(nodes=len(node_rows), edges=len(edge_rows))
            g._publish(
                t,
                "graphs:imported",
                self.id,
                graph_id=self.id,
                data={"nodes": result.nodes, "edges": result.edges},
            )
        return result

    def _import_nodes(
        self, info: GraphTypeInfo, nodes: Sequence[_DocNode], now: int
    ) -> builtins.list[tuple[Any, ...]]:
        """Rules 1 and 2 for every node, in document order; the rows to
        insert. (This and `_import_edges` are the per-row hot loops of a
        bulk import: no per-row allocation beyond the row itself.)"""
        graph_id = self.id
        validators: dict[str, SchemaValidator] = {}
        ids = _new_ids(len(nodes))
        rows = []
        for i, (key, type_name, text) in enumerate(nodes):
            compiled = validators.get(type_name)
            if compiled is None:
                node_type = info.node_types.get(type_name)
                if node_type is None:
                    raise UnknownTypeError(
                        f"nodes[{i}] ({shown(key)}): graph type {shown(info.name)} has no "
                        f"node type {shown(type_name)}"
                    )
                compiled = validators[type_name] = self._graphs._validator(info, node_type)
            if compiled.validate_json(text):
                _check(compiled, text, f"nodes[{i}] ({shown(key)})")
            rows.append((ids[i], graph_id, key, type_name, text, now, now))
        return rows

    def _import_edges(
        self,
        t: Transaction,
        info: GraphTypeInfo,
        nodes: Sequence[_DocNode],
        edges: Sequence[_DocEdge],
        now: int,
    ) -> builtins.list[tuple[Any, ...]]:
        """Rules 1 to 3 for every edge, in document order, against the
        graph's nodes and edges plus the document's; the rows to insert."""
        if not edges:
            return []
        graph_id = self.id
        config = info.config
        node_types = {key: type_name for key, type_name, _ in nodes}
        # Endpoints that are not in the document must already be in the graph.
        outside = {e[i] for e in edges for i in (2, 3)} - node_types.keys()
        if outside:
            node_types.update(
                t.query(
                    "SELECT key, type FROM nodes WHERE graph_id = ? AND key IN "
                    "(SELECT value FROM json_each(?))",
                    (graph_id, json.dumps(sorted(outside))),
                )
            )
        # Pairs already joined, for multi=false: the ordered pair of every
        # edge, and both orders of undirected ones.
        ordered: set[tuple[str, str]] = set()
        either: set[tuple[str, str]] = set()
        if not config.multi:
            for src, dst, und in t.query(
                "SELECT source_node_key, target_node_key, undirected FROM edges WHERE graph_id = ?",
                (graph_id,),
            ):
                ordered.add((src, dst))
                if und:
                    either.add((src, dst))
                    either.add((dst, src))
        undirected_graph = config.type == "undirected"
        directed_graph = config.type == "directed"
        loops, multi = config.allow_self_loops, config.multi
        types: dict[str, tuple[EdgeTypeInfo, SchemaValidator]] = {}
        ids = _new_ids(len(edges))
        rows = []
        for i, (key, type_name, src, dst, text, requested) in enumerate(edges):
            found = types.get(type_name)
            if found is None:
                edge_type = info.edge_types.get(type_name)
                if edge_type is None:
                    raise UnknownTypeError(
                        f"{_label(i, key, src, dst)}: graph type {shown(info.name)} has no "
                        f"edge type {shown(type_name)}"
                    )
                found = types[type_name] = (edge_type, self._graphs._validator(info, edge_type))
            edge_type, compiled = found
            if compiled.validate_json(text):
                _check(compiled, text, _label(i, key, src, dst))
            src_type = node_types.get(src)
            dst_type = node_types.get(dst)
            if (
                src_type is None
                or dst_type is None
                or (
                    edge_type.allowed_source_types
                    and src_type not in edge_type.allowed_source_types
                )
                or (
                    edge_type.allowed_target_types
                    and dst_type not in edge_type.allowed_target_types
                )
            ):
                self._check_ends(edge_type, src, src_type, dst, dst_type, _label(i, key, src, dst))
            is_undirected = True if undirected_graph else bool(requested)
            if src == dst and not loops:
                raise SelfLoopError(
                    f"{_label(i, key, src, dst)}: graph type {shown(info.name)} "
                    "allows no self-loops"
                )
            if not multi:
                pair = (src, dst)
                if pair in ordered or pair in either or (is_undirected and (dst, src) in ordered):
                    raise MultiEdgeError(
                        f"{_label(i, key, src, dst)}: graph type {shown(info.name)} allows "
                        f"one edge per pair of nodes and {shown(src)}, {shown(dst)} already "
                        "have one"
                    )
                ordered.add(pair)
                if is_undirected:
                    either.add(pair)
                    either.add((dst, src))
            if directed_graph and is_undirected:
                self._check_direction(config, is_undirected, _label(i, key, src, dst))
            rows.append((ids[i], graph_id, key, type_name, src, dst, text, is_undirected, now, now))
        return rows

    def _check_new_keys(
        self, t: Transaction, nodes: Sequence[_DocNode], edges: Sequence[_DocEdge]
    ) -> None:
        """Imported node keys and edge keys are new to the graph."""
        for table, keys, kind in (
            ("nodes", [n[0] for n in nodes], "node"),
            ("edges", [e[0] for e in edges if e[0] is not None], "edge"),
        ):
            if (
                not keys
                or t.query_one(f"SELECT 1 FROM {table} WHERE graph_id = ? LIMIT 1", (self.id,))
                is None
            ):
                continue  # nothing to collide with (the usual import into an empty graph)
            taken = t.query_one(
                f"SELECT key FROM {table} WHERE graph_id = ? AND key IN "
                "(SELECT value FROM json_each(?)) LIMIT 1",
                (self.id, json.dumps(keys)),
            )
            if taken is not None:
                raise AlreadyExistsError(
                    f"graph {shown(self.id)} already has a {kind} {shown(taken[0])}"
                )


# ---------------------------------------------------------------- query helpers

# Query plans: why some queries are spelled the way they are. Tenant files carry no
# ``sqlite_stat1``, so SQLite's planner guesses that ``graph_id = ?`` alone
# selects about ten rows, when in fact it selects the whole graph. Left to
# itself (3.53 here) it then scans every edge of the graph for an ``OR`` of
# two endpoint lookups, for an ``IN (... UNION ...)`` (merging two
# index-ordered scans), and for a recursive join with the edges as the
# outer loop: a 3-hop traversal of a 100,000-edge graph took 17 s instead
# of milliseconds. So: ``UNION ALL`` of lookups on ``(graph_id,
# endpoint)``, and ``CROSS JOIN`` (SQLite's way to fix the join order) in
# traversals. benches/test_bench_graphs.py measures them.


def _label(i: int, key: str | None, source: str, target: str) -> str:
    """How an error names the edge at position `i` of an import document."""
    return (
        f"edges[{i}] ({shown(key)})"
        if key is not None
        else f"edges[{i}] ({shown(source)} -> {shown(target)})"
    )


# The JSON paths SQLite's json_extract accepts: '$' then any number of
# '.key', '."quoted key"', '[N]', '[#]' or '[#-N]' steps.
_JSON_PATH = re.compile(r'\$(?:\.(?:"[^"\x00]*"|[^.\[\]"\x00]+)|\[(?:\d+|#(?:-\d+)?)\])*')
_MAX_PATH = 1024


def _where(path: object, value: object) -> tuple[str, builtins.list[Any]]:
    """One JSON-path equality of `Graph.nodes` as SQL and its parameters."""
    if not isinstance(path, str):
        raise InputTypeError(f"where: a path must be a str, not {type(path).__name__}")
    if not path.startswith("$"):
        raise InvalidInputError(
            f"where: {shown(path)} is not a JSON path (they start with '$', e.g. '$.a.b')"
        )
    if len(path) > _MAX_PATH or _JSON_PATH.fullmatch(path) is None:
        # Checked here, not left to SQLite: it reports a bad path only when a
        # row reaches it, so a graph without matching rows would accept it.
        raise InvalidInputError(
            f"where: bad JSON path: {shown(path)} "
            "(use '$', '.key', '.\"any key\"', '[N]' or '[#-N]')"
        )
    if value is None:
        return "json_type(attributes, ?) = 'null'", [path]
    if isinstance(value, bool):
        return "json_type(attributes, ?) = ?", [path, "true" if value else "false"]
    if isinstance(value, int | float):
        check.dumps(value, f"where {shown(path)}")  # refuses NaN and infinities
        return (
            "(json_extract(attributes, ?) = ? AND json_type(attributes, ?) IN ('integer', 'real'))",
            [path, value, path],
        )
    if isinstance(value, str):
        return "(json_extract(attributes, ?) = ? AND json_type(attributes, ?) = 'text')", [
            path,
            value,
            path,
        ]
    raise InputTypeError(
        f"where {shown(path)}: compare with a str, int, float, bool or None, "
        f"not {type(value).__name__}"
    )


# (column reached, column matched against the frontier, undirected edges only)
_Hop = tuple[str, str, bool]

_HOPS: dict[str, tuple[_Hop, ...]] = {
    # An undirected edge is followed both ways whatever the direction.
    "out": (
        ("target_node_key", "source_node_key", False),
        ("source_node_key", "target_node_key", True),
    ),
    "in": (
        ("source_node_key", "target_node_key", False),
        ("target_node_key", "source_node_key", True),
    ),
    "both": (
        ("target_node_key", "source_node_key", False),
        ("source_node_key", "target_node_key", False),
    ),
}


def _hops(
    graph_id: str, direction: object, edge_type: object
) -> tuple[builtins.list[tuple[str, str]], dict[str, Any]]:
    """For each way an edge is followed in `direction`: the column of
    ``edges e`` it reaches and its join condition (``{frontier}`` is left
    for the caller to fill); and the named parameters."""
    if not isinstance(direction, str) or direction not in _HOPS:
        raise InvalidInputError(
            f"direction must be one of {', '.join(DIRECTIONS)}; got {shown(direction)}"
        )
    params: dict[str, Any] = {"g": graph_id}
    of_type = ""
    if edge_type is not None:
        params["et"] = _str("edge_type", edge_type)
        of_type = " AND e.type = :et"
    hops = []
    for reached, matched, undirected_only in _HOPS[direction]:
        condition = f"e.graph_id = :g AND e.{matched} = {{frontier}}{of_type}"
        if undirected_only:
            condition += " AND e.undirected = 1"
        hops.append((f"e.{reached}", condition))
    return hops, params


# ---------------------------------------------------------------- documents

# (key, type, attributes text)
_DocNode = tuple[str, str, str]
# (key, type, source, target, attributes text, undirected)
_DocEdge = tuple[str | None, str, str, str, str, bool | None]

_DOC_FIELDS = frozenset({"attributes", "options", "nodes", "edges"})
_NODE_FIELDS = frozenset({"key", "type", "attributes"})
_EDGE_FIELDS = frozenset({"key", "type", "source", "target", "attributes", "undirected"})


def _items(doc: Mapping[str, Any], name: str) -> Sequence[Any]:
    items = doc.get(name, [])
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise InputTypeError(f"{name} must be a list, not {type(items).__name__}")
    return items


def _parse_document(
    doc: object, limits: Limits
) -> tuple[builtins.list[_DocNode], builtins.list[_DocEdge]]:
    """Check the shape of an import document (argument errors: `TypeError`,
    `ValueError`; a key repeated in the document: `AlreadyExistsError`),
    before any write. Labels for error messages are built only on error:
    this loop runs once per row of a bulk import."""
    if not isinstance(doc, Mapping):
        raise InputTypeError(f"an import document must be a mapping, not {type(doc).__name__}")
    unknown = set(doc) - _DOC_FIELDS
    if unknown:
        raise InvalidInputError(
            f"unknown document field(s): {', '.join(sorted(map(str, unknown)))}"
        )
    for name in ("attributes", "options"):
        if doc.get(name) is not None and not isinstance(doc[name], Mapping):
            raise InputTypeError(f"{name} must be a mapping")
    nodes: builtins.list[_DocNode] = []
    seen: set[str] = set()
    longest_key, longest_name = limits.key_length, limits.name_length
    for i, item in enumerate(_items(doc, "nodes")):
        if type(item) is not dict and not isinstance(item, Mapping):
            raise InputTypeError(f"nodes[{i}] must be a mapping, not {type(item).__name__}")
        if not item.keys() <= _NODE_FIELDS:
            extra = ", ".join(sorted(map(str, item.keys() - _NODE_FIELDS)))
            raise InvalidInputError(f"nodes[{i}]: unknown field(s): {extra}")
        key = item.get("key")
        if type(key) is not str or not key or len(key) > longest_key or "\x00" in key:
            key = _key(f"nodes[{i}].key", key, limits)
        if key in seen:
            raise AlreadyExistsError(f"nodes[{i}]: node key {shown(key)} appears twice")
        seen.add(key)
        type_name = item.get("type")
        if (
            type(type_name) is not str
            or not type_name
            or len(type_name) > longest_name
            or "\x00" in type_name
        ):
            type_name = _name(f"nodes[{i}].type", type_name, limits)
        try:
            text = _encode(item.get("attributes"), limits)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"nodes[{i}] ({shown(key)}): {exc}") from None
        nodes.append((key, type_name, text))
    edges: builtins.list[_DocEdge] = []
    seen = set()
    for i, item in enumerate(_items(doc, "edges")):
        if type(item) is not dict and not isinstance(item, Mapping):
            raise InputTypeError(f"edges[{i}] must be a mapping, not {type(item).__name__}")
        if not item.keys() <= _EDGE_FIELDS:
            extra = ", ".join(sorted(map(str, item.keys() - _EDGE_FIELDS)))
            raise InvalidInputError(f"edges[{i}]: unknown field(s): {extra}")
        key = item.get("key")
        if key is not None:
            if type(key) is not str or not key or len(key) > longest_key or "\x00" in key:
                key = _key(f"edges[{i}].key", key, limits)
            if key in seen:
                raise AlreadyExistsError(f"edges[{i}]: edge key {shown(key)} appears twice")
            seen.add(key)
        type_name = item.get("type")
        src = item.get("source")
        dst = item.get("target")
        if type(type_name) is not str or not type_name or len(type_name) > longest_name:
            type_name = _name(f"edges[{i}].type", type_name, limits)
        if type(src) is not str or not src or len(src) > longest_key:
            src = _key(f"edges[{i}].source", src, limits)
        if type(dst) is not str or not dst or len(dst) > longest_key:
            dst = _key(f"edges[{i}].target", dst, limits)
        undirected = item.get("undirected")
        if undirected is not None and type(undirected) is not bool:
            _optional_bool(f"edges[{i}].undirected", undirected)
        try:
            text = _encode(item.get("attributes"), limits)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"edges[{i}]: {exc}") from None
        edges.append((key, type_name, src, dst, text, undirected))
    return nodes, edges
