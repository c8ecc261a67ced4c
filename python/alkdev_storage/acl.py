"""Access control as a graph (SPEC §7; docs/acl.md).

Every organization's tenant file holds one graph of the system type
``acl``: principals (accounts, the organization, services, roles) and
resources as nodes, grants, memberships and delegations as edges. It is
written through ``tenant.acl`` (the generic graph API refuses it:
`ProtectedGraphError`) and every change publishes ``acl:changed`` in its
transaction.

>>> import alkdev_storage as alk, tempfile
>>> store = alk.Storage.open(tempfile.mkdtemp())
>>> ada = store.accounts.create(email="ada@example.com")
>>> acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
>>> with store.tenant(acme.id) as t:
...     _ = t.acl.add_principal("service:ci", identity_type="service", identity_id="ci",
...                             scopes=["graphs:read"])
...     _ = t.acl.add_resource("repo:web")
...     _ = t.acl.grant("service:ci", "repo:web", "read")
...     t.acl.check_access("service:ci", resource="repo:web", action="read").allowed
...     denied = t.acl.check_access("service:ci", required_scopes=["graphs:write"])
True
>>> denied.allowed, denied.reason
(False, "service:ci lacks scope 'graphs:write'")
>>> store.close()

Semantics (docs/acl.md has the worked examples):

- A principal's *effective* scopes are its own ``scopes``, everything the
  principals it ``belongs_to`` have (transitively), and what is delegated
  to it: a ``delegates`` edge from X carries the scopes X may pass on,
  narrowed to the edge's ``narrowedScopes``.
- A principal may pass on (*delegate*) its own scopes, what it inherits,
  and what reached it over a delegation with ``narrowable=true``; a scope
  that reached it only over a ``narrowable=false`` edge stops there.
- Resource grants are levels: ``can_read`` < ``can_write`` <
  ``can_execute``, each implying the ones below it (the graph allows one
  edge per pair of nodes). A principal reaches a resource through its own
  grant or one of anything it belongs to; a principal with ``resources``
  reaches only those.
- Everything is a least fixpoint over the graph, so cycles are harmless.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import json
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alkdev_storage import events
from alkdev_storage._checks import shown
from alkdev_storage._native import Transaction
from alkdev_storage._waiting import SyncChange
from alkdev_storage.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    BusyError,
    Error,
    InputTypeError,
    InUseError,
    InvalidInputError,
    MultiEdgeError,
    NotFoundError,
    NotTenantAdminError,
    TenantNotFoundError,
)
from alkdev_storage.metagraph.specs import EdgeTypeSpec, GraphConfig, GraphTypeSpec, NodeTypeSpec

if TYPE_CHECKING:
    from alkdev_storage._database import Database
    from alkdev_storage.metagraph.graphs import Graph, Graphs
    from alkdev_storage.metagraph.types import Actor, GraphTypes
    from alkdev_storage.storage import Storage

__all__ = [
    "ACL_GRAPH_TYPE",
    "ACTIONS",
    "IDENTITY_TYPES",
    "ROLE_SCOPES",
    "Acl",
    "AclSync",
    "Decision",
    "Delegation",
    "Principal",
    "ReconcileResult",
]

IDENTITY_TYPES = ("account", "org", "service", "role")

#: Resource actions and the level each needs; a ``can_*`` edge grants its
#: level and every level below it.
ACTIONS: Mapping[str, int] = {"read": 1, "write": 2, "execute": 3}
_GRANT_EDGES = {"can_read": 1, "can_write": 2, "can_execute": 3}
_EDGE_FOR_LEVEL = {level: edge for edge, level in _GRANT_EDGES.items()}

#: The role principals every ACL graph starts with, and their own scopes:
#: ``role:owner`` belongs to ``role:admin``, which belongs to
#: ``role:member``, which belongs to ``org:<orgId>``, so each role has the
#: scopes of the ones below it. Members belong to the role of their level
#: (derived from ``system.db``'s memberships). Change a role's scopes with
#: `Acl.set_scopes` to tighten (or widen) what a level may do.
ROLE_SCOPES: Mapping[str, tuple[str, ...]] = {
    "member": ("graphs:read", "graphs:write", "secrets:read"),
    "admin": ("members:write", "keys:admin", "types:write", "acl:write", "secrets:write"),
    # An owner's rights do not hang on role:admin's: narrowing what admins
    # may do leaves owners able to undo it.
    "owner": (
        "org:admin",
        "members:write",
        "keys:admin",
        "types:write",
        "acl:write",
        "secrets:write",
    ),
}
_ROLE_PARENTS = {"owner": "role:admin", "admin": "role:member"}
_ROLE_KEYS = tuple(f"role:{level}" for level in ROLE_SCOPES)

#: Bounds on what one principal may carry (a refusal writes nothing).
MAX_SCOPES = 256
MAX_RESOURCES = 1024
MAX_KEY_LENGTH = 255

_KEY_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH}
_SCOPE_LIST: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": 100},
    "uniqueItems": True,
    "maxItems": MAX_SCOPES,
}

ACL_GRAPH_TYPE = GraphTypeSpec(
    name="acl",
    scope="system",
    version=1,
    description="Access control: principals, resources, grants, memberships, delegations",
    config=GraphConfig(type="directed", multi=False, allow_self_loops=False),
    node_types={
        "principal": NodeTypeSpec(
            schema={
                "type": "object",
                "required": ["identityType", "identityId", "scopes"],
                "properties": {
                    "identityType": {"enum": list(IDENTITY_TYPES)},
                    "identityId": _KEY_SCHEMA,
                    "scopes": _SCOPE_LIST,
                    "resources": {
                        "type": "array",
                        "items": _KEY_SCHEMA,
                        "uniqueItems": True,
                        "maxItems": MAX_RESOURCES,
                    },
                },
                "additionalProperties": False,
            },
            description="An account, the organization, a service or a role",
        ),
        "resource": NodeTypeSpec(
            schema={
                "type": "object",
                "required": ["resourceType", "resourceId"],
                "properties": {"resourceType": _KEY_SCHEMA, "resourceId": _KEY_SCHEMA},
                "additionalProperties": False,
            },
            description="Something principals are granted access to",
        ),
    },
    edge_types={
        **{
            name: EdgeTypeSpec(
                schema={"type": "object", "additionalProperties": False},
                allowed_source_types=("principal",),
                allowed_target_types=("resource",),
                description=f"Grants {name[4:]} (and every level below it)",
            )
            for name in _GRANT_EDGES
        },
        "belongs_to": EdgeTypeSpec(
            schema={"type": "object", "additionalProperties": False},
            allowed_source_types=("principal",),
            allowed_target_types=("principal",),
            description="The source inherits the target's scopes and grants",
        ),
        "delegates": EdgeTypeSpec(
            schema={
                "type": "object",
                "required": ["narrowedScopes", "narrowable"],
                "properties": {"narrowedScopes": _SCOPE_LIST, "narrowable": {"type": "boolean"}},
                "additionalProperties": False,
            },
            allowed_source_types=("principal",),
            allowed_target_types=("principal",),
            description="The source passes narrowedScopes on to the target",
        ),
    },
)

ACL_GRAPH_NAME = "acl"
TOPIC = "acl:changed"


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of `Acl.check_access`. ``bool(decision)`` is `allowed`.

    - `reason`: why, in one sentence; a denial names the missing scope or
      the broken link (a missing grant, a delegation that no longer
      carries the scope, a resource outside the principal's list).
    - `path`: the keys from the principal to where the access comes from
      (the resource grant when a resource was asked about, else the first
      scope's); empty when denied.
    - `paths`: one such path per requirement met, keyed ``scope:<name>``
      and ``<action>:<resource>``.
    - `scopes`: the principal's effective scopes.
    """

    allowed: bool
    reason: str
    principal: str
    path: tuple[str, ...] = ()
    paths: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    scopes: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True, slots=True)
class Principal:
    key: str
    identity_type: str
    identity_id: str
    scopes: tuple[str, ...]
    resources: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Delegation:
    source: str
    target: str
    scopes: tuple[str, ...]
    narrowable: bool


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What `Acl.reconcile` repaired in one organization's ACL."""

    org_id: str
    created_graph: bool
    added: int
    removed: int

    @property
    def drift(self) -> bool:
        return self.created_graph or self.added > 0 or self.removed > 0


# ---------------------------------------------------------------- checks


def _key(what: str, value: object) -> tuple[str, str]:
    """``"<type>:<id>"`` split in two; both parts non-empty, bounded."""
    if not isinstance(value, str):
        raise InputTypeError(
            f"{what} must be a str like 'account:<id>', not {type(value).__name__}"
        )
    kind, sep, ident = value.partition(":")
    if not sep or not kind or not ident:
        raise InvalidInputError(f"{what} {shown(value)} must look like '<type>:<id>'")
    if len(value) > MAX_KEY_LENGTH or "\x00" in value:
        raise InvalidInputError(
            f"{what} {shown(value)} must be at most {MAX_KEY_LENGTH} characters, no NUL"
        )
    return kind, ident


def _scopes(what: str, value: object, *, limit: int = MAX_SCOPES) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise InputTypeError(f"{what} must be a list of scope names, not {type(value).__name__}")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item or len(item) > 100 or "\x00" in item:
            raise InvalidInputError(
                f"{what}: every scope must be a non-empty str of at most 100 characters, "
                f"not {shown(item)}"
            )
        if item not in out:
            out.append(item)
        if len(out) > limit:
            raise InvalidInputError(f"{what}: more than {limit} scopes")
    return tuple(out)


def _action(value: object) -> int:
    if value not in ACTIONS:
        raise InvalidInputError(f"action must be one of {', '.join(ACTIONS)}; got {shown(value)}")
    return ACTIONS[str(value)]


# ---------------------------------------------------------------- resolution

# One statement, so one snapshot: the ACL's generation (the offset of its
# last change event) with every principal the asked-for one depends on
# (what it belongs to and who delegates to any of them, transitively), the
# edges between them and, for a resource, the grants on it from anything
# the principal belongs to. CROSS JOIN keeps SQLite's planner from putting
# ``edges`` in the outer loop (a scan of the whole graph per step): the
# principals found so far drive index lookups on (graph_id, source or
# target, type).
_CLOSURE_SQL = """
WITH RECURSIVE r(k) AS (
  SELECT :p
  UNION
  SELECT e.target_node_key FROM r CROSS JOIN edges e
    ON e.graph_id = :g AND e.source_node_key = r.k AND e.type = 'belongs_to'
  UNION
  SELECT e.source_node_key FROM r CROSS JOIN edges e
    ON e.graph_id = :g AND e.target_node_key = r.k AND e.type = 'delegates'
)
SELECT 0, (SELECT max(offset) FROM _honker_stream WHERE topic = 'acl:changed'), NULL, NULL
UNION ALL
SELECT 1, n.key, NULL, n.attributes FROM r CROSS JOIN nodes n
  ON n.graph_id = :g AND n.key = r.k AND n.type = 'principal'
UNION ALL
SELECT 2, e.source_node_key, e.target_node_key, NULL FROM r CROSS JOIN edges e
  ON e.graph_id = :g AND e.source_node_key = r.k AND e.type = 'belongs_to'
UNION ALL
SELECT 3, e.source_node_key, e.target_node_key, e.attributes FROM r CROSS JOIN edges e
  ON e.graph_id = :g AND e.target_node_key = r.k AND e.type = 'delegates'
"""

_GRANTS_SQL = """
WITH RECURSIVE i(k) AS (
  SELECT :p
  UNION
  SELECT e.target_node_key FROM i CROSS JOIN edges e
    ON e.graph_id = :g AND e.source_node_key = i.k AND e.type = 'belongs_to'
)
SELECT 0, (SELECT max(offset) FROM _honker_stream WHERE topic = 'acl:changed'),
  (SELECT type FROM nodes WHERE graph_id = :g AND key = :res)
UNION ALL
SELECT 1, e.source_node_key, e.type FROM i CROSS JOIN edges e
  ON e.graph_id = :g AND e.source_node_key = i.k AND +e.target_node_key = :res
  AND e.type IN ('can_read', 'can_write', 'can_execute')
"""

_GENERATION_SQL = "SELECT max(offset) FROM _honker_stream WHERE topic = 'acl:changed'"

_GRAPH_SQL = (
    "SELECT g.id FROM graphs g JOIN graph_types t ON t.id = g.graph_type_id "
    "WHERE t.name = 'acl' ORDER BY g.created_at, g.rowid LIMIT 1"
)


@dataclass(slots=True)
class _Closure:
    """One principal's resolved rights, as of `generation`."""

    generation: int
    exists: bool
    effective: dict[str, tuple[str, ...]]
    delegable: dict[str, tuple[str, ...]]
    inherits: dict[str, tuple[str, ...]]
    resources: tuple[str, ...] | None
    # Delegations into anything the principal inherits from, to explain a
    # scope that did not arrive: (from, to, narrowed scopes, the ones of
    # them the delegator holds at all, the ones it may pass on).
    delegations: list[tuple[str, str, frozenset[str], frozenset[str], frozenset[str]]]


def _resolve(principal: str, rows: Sequence[Sequence[Any]]) -> _Closure:
    """The least fixpoint of the rules in the module docstring over the
    rows of `_CLOSURE_SQL`, with the path each fact was first derived by."""
    generation = 0
    own: dict[str, list[str]] = {}
    resources: tuple[str, ...] | None = None
    children: dict[str, list[str]] = {}
    parents: dict[str, list[str]] = {}
    outgoing: dict[str, list[tuple[str, frozenset[str], bool]]] = {}
    incoming: list[tuple[str, str, frozenset[str], bool]] = []
    for kind, a, b, c in rows:
        if kind == 0:
            generation = int(a or 0)
        elif kind == 1:
            attrs = json.loads(c)
            own[a] = attrs.get("scopes", [])
            if a == principal and "resources" in attrs:
                resources = tuple(attrs["resources"])
        elif kind == 2:
            children.setdefault(b, []).append(a)
            parents.setdefault(a, []).append(b)
        else:
            attrs = json.loads(c)
            edge = (b, frozenset(attrs.get("narrowedScopes", ())), bool(attrs.get("narrowable")))
            outgoing.setdefault(a, []).append(edge)
            incoming.append((a, *edge))
    effective: dict[str, dict[str, tuple[str, ...]]] = {k: {} for k in own}
    delegable: dict[str, dict[str, tuple[str, ...]]] = {k: {} for k in own}
    work: deque[tuple[str, str, bool]] = deque()

    def add(node: str, scope: str, path: tuple[str, ...], passable: bool) -> None:
        if node not in own:
            return
        if passable and scope not in delegable[node]:
            delegable[node][scope] = path
            work.append((node, scope, True))
        if scope not in effective[node]:
            effective[node][scope] = path
            work.append((node, scope, False))

    for node, scopes in own.items():
        for scope in scopes:
            add(node, scope, (node,), True)
    while work:
        node, scope, passable = work.popleft()
        path = (delegable if passable else effective)[node][scope]
        for child in children.get(node, ()):
            add(child, scope, (child, *path), passable)
        if passable:
            for target, narrowed, narrowable in outgoing.get(node, ()):
                if scope in narrowed:
                    add(target, scope, (target, *path), narrowable)
    # What the principal belongs to, with the path there (breadth first).
    inherits: dict[str, tuple[str, ...]] = {principal: (principal,)}
    frontier = deque([principal])
    while frontier:
        node = frontier.popleft()
        for parent in parents.get(node, ()):
            if parent not in inherits:
                inherits[parent] = (*inherits[node], parent)
                frontier.append(parent)
    return _Closure(
        generation=generation,
        exists=principal in own,
        effective=effective.get(principal, {}),
        delegable=delegable.get(principal, {}),
        inherits=inherits,
        resources=resources,
        delegations=[
            (
                source,
                target,
                narrowed,
                narrowed & effective.get(source, {}).keys(),
                narrowed & delegable.get(source, {}).keys(),
            )
            for source, target, narrowed, _ in incoming
            if target in inherits
        ],
    )


class _Cache:
    """Resolved rights for one tenant file, shared by every handle on it and
    valid for one generation of its ACL: any ``acl:changed`` event (from
    this process or another) makes every entry stale at the next check."""

    MAX_CLOSURES = 4096
    MAX_ANSWERS = 65536

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation = -1
        self.graph_id: str | None = None
        self.closures: dict[str, _Closure] = {}
        self.grants: dict[tuple[str, str], tuple[str | None, dict[str, int]]] = {}
        self.decisions: dict[tuple[Any, ...], Decision] = {}

    def at(self, generation: int) -> None:
        """Drop everything if the ACL moved on from what is cached (lock held)."""
        if generation != self.generation:
            self.generation = generation
            self.graph_id = None
            self.closures.clear()
            self.grants.clear()
            self.decisions.clear()

    @staticmethod
    def put(table: dict[Any, Any], key: Any, value: Any, bound: int) -> None:
        if len(table) >= bound:
            table.pop(next(iter(table)))
        table[key] = value


_caches: weakref.WeakKeyDictionary[Database, _Cache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache_for(db: Database) -> _Cache:
    with _caches_lock:
        cache = _caches.get(db)
        if cache is None:
            cache = _caches[db] = _Cache()
        return cache


def _generation(conn: Database | Transaction) -> int:
    row = conn.query_one(_GENERATION_SQL)
    return 0 if row is None or row[0] is None else int(row[0])


# ---------------------------------------------------------------- tenant.acl


class _Keep:
    """`Acl.set_scopes`' "leave the resource list alone"."""


_KEEP = _Keep()


class Acl:
    """``tenant.acl``: one organization's ACL graph, as one actor sees it.

    Anyone who may open the tenant reads and checks. Writes need the
    platform's rights, or an account that is an owner or admin *and* holds
    ``acl:write`` in this ACL; an account may always delegate from its own
    principal (``account:<its id>``). Refusals are audited and write
    nothing. Every write is one transaction (yours with ``tx=``), carrying
    its ``acl:changed`` event.
    """

    def __init__(
        self,
        db: Database,
        graphs: Graphs,
        graph_types: GraphTypes,
        *,
        org_id: str,
        system: Database,
    ) -> None:
        self._db = db
        self._graphs = graphs
        self._types = graph_types
        self.org_id = org_id
        self._system = system
        self._cache = _cache_for(db)
        self._graph: Graph | None = None

    def __repr__(self) -> str:
        return f"<Acl of {self.org_id}>"

    # -- the graph

    def graph_id(self) -> str | None:
        """The ACL graph's id, or None if this tenant file has none yet
        (an organization created before ACLs: `reconcile` creates it)."""
        row = self._db.query_one(_GRAPH_SQL)
        return None if row is None else str(row[0])

    def _graph_in(self, tx: Transaction) -> Graph:
        row = tx.query_one(_GRAPH_SQL)
        if row is None:
            raise NotFoundError(
                f"organization {shown(self.org_id)} has no ACL graph yet; run "
                "`alkdev-storage acl reconcile` (or tenant.acl.reconcile())"
            )
        if self._graph is None or self._graph.id != row[0]:
            self._graph = self._graphs.get(str(row[0]))
        return self._graph

    def _publish(self, tx: Transaction, action: str, entity: str, data: Mapping[str, Any]) -> None:
        events.publish(
            self._db,
            tx,
            TOPIC,
            entity,
            action=action,
            actor=self._graphs.actor.account_id,
            data=data,
            org_id=self.org_id,
            graph_id=self._graph.id if self._graph is not None else None,
            key=entity,
        )

    @contextlib.contextmanager
    def _writing(
        self, tx: Transaction | None, operation: str, *, own: str | None = None
    ) -> Iterator[tuple[Transaction, Graph]]:
        self._authorize(operation, own)
        if tx is None:
            with self._db.transaction() as t:
                yield t, self._graph_in(t)
        else:
            with tx.savepoint():
                yield tx, self._graph_in(tx)

    def _authorize(self, operation: str, own: str | None = None) -> None:
        actor = self._types.authorize(f"acl.{operation}")
        if actor.privileged or own == f"account:{actor.account_id}":
            return
        if not actor.is_admin:
            self._types._refuse(
                NotTenantAdminError(
                    f"only the organization's owners and admins may change its ACL "
                    f"({operation} refused)"
                ),
                f"acl.{operation}",
                "acl",
            )
        require(self, actor, "acl:write", f"acl.{operation}")

    def _principal_row(self, t: Transaction, graph: Graph, key: str) -> dict[str, Any] | None:
        row = t.query_one(
            "SELECT type, attributes FROM nodes WHERE graph_id = ? AND key = ?", (graph.id, key)
        )
        if row is None:
            return None
        if row[0] != "principal":
            raise InvalidInputError(f"{shown(key)} is a {row[0]}, not a principal")
        attrs: dict[str, Any] = json.loads(row[1])
        return attrs

    def _edge(
        self, t: Transaction, graph: Graph, source: str, target: str
    ) -> tuple[str, str] | None:
        row = t.query_one(
            "SELECT key, type FROM edges WHERE graph_id = ? AND source_node_key = ? "
            "AND target_node_key = ?",
            (graph.id, source, target),
        )
        return None if row is None else (str(row[0]), str(row[1]))

    # -- principals and resources

    def add_principal(
        self,
        key: str,
        *,
        identity_type: str,
        identity_id: str,
        scopes: Iterable[str] = (),
        resources: Iterable[str] | None = None,
        tx: Transaction | None = None,
    ) -> Principal:
        """Add a principal ``"<identity_type>:<identity_id>"`` with its own
        `scopes` and, optionally, the only `resources` it may reach.
        `AlreadyExistsError` if the key is taken."""
        kind, ident = _key("principal key", key)
        if identity_type not in IDENTITY_TYPES:
            raise InvalidInputError(
                f"identity_type must be one of {', '.join(IDENTITY_TYPES)}; got "
                f"{shown(identity_type)}"
            )
        if (kind, ident) != (identity_type, identity_id):
            raise InvalidInputError(
                f"principal key {shown(key)} must be {shown(f'{identity_type}:{identity_id}')}"
            )
        principal = Principal(
            key,
            identity_type,
            identity_id,
            _scopes("scopes", scopes),
            None if resources is None else self._resource_list(resources),
        )
        with self._writing(tx, "add_principal") as (t, graph):
            if self._principal_row(t, graph, key) is not None:
                raise AlreadyExistsError(f"the ACL already has a principal {shown(key)}")
            graph.add_node(key, type="principal", attributes=_principal_attrs(principal), tx=t)
            self._publish(t, "principal_added", key, _principal_attrs(principal))
        return principal

    @staticmethod
    def _resource_list(resources: Iterable[str]) -> tuple[str, ...]:
        if isinstance(resources, str) or not isinstance(resources, Iterable):
            raise InputTypeError("resources must be a list of resource keys")
        out: list[str] = []
        for item in resources:
            _key("resource key", item)
            if item not in out:
                out.append(item)
            if len(out) > MAX_RESOURCES:
                raise InvalidInputError(f"resources: more than {MAX_RESOURCES} keys")
        return tuple(out)

    def set_scopes(
        self,
        key: str,
        scopes: Iterable[str],
        *,
        resources: Iterable[str] | _Keep | None = _KEEP,
        tx: Transaction | None = None,
    ) -> Principal:
        """Replace a principal's own scopes (and, given ``resources=``, its
        resource list; ``resources=None`` lifts it)."""
        _key("principal key", key)
        new_scopes = _scopes("scopes", scopes)
        new_resources = (
            resources
            if isinstance(resources, _Keep)
            else (None if resources is None else self._resource_list(resources))
        )
        with self._writing(tx, "set_scopes") as (t, graph):
            attrs = self._principal_row(t, graph, key)
            if attrs is None:
                raise NotFoundError(f"the ACL has no principal {shown(key)}")
            attrs["scopes"] = list(new_scopes)
            if not isinstance(new_resources, _Keep):
                attrs.pop("resources", None)
                if new_resources is not None:
                    attrs["resources"] = list(new_resources)
            graph.update_node(key, attributes=attrs, tx=t)
            self._publish(t, "principal_updated", key, attrs)
        return _principal(key, attrs)

    def add_resource(self, key: str, *, tx: Transaction | None = None) -> str:
        """Add a resource ``"<resourceType>:<id>"``; `AlreadyExistsError`
        if it is there."""
        kind, ident = _key("resource key", key)
        with self._writing(tx, "add_resource") as (t, graph):
            if t.query_one("SELECT 1 FROM nodes WHERE graph_id = ? AND key = ?", (graph.id, key)):
                raise AlreadyExistsError(f"the ACL already has a node {shown(key)}")
            graph.add_node(
                key, type="resource", attributes={"resourceType": kind, "resourceId": ident}, tx=t
            )
            self._publish(t, "resource_added", key, {"resourceType": kind, "resourceId": ident})
        return key

    def remove(self, key: str, *, tx: Transaction | None = None) -> None:
        """Remove a principal or resource with every edge touching it. The
        built-in roles and the organization's principal stay."""
        _key("key", key)
        if key in _ROLE_KEYS or key == f"org:{self.org_id}":
            raise InUseError(f"{shown(key)} is built into every ACL and cannot be removed")
        with self._writing(tx, "remove") as (t, graph):
            graph.remove_node(key, tx=t)
            self._publish(t, "node_removed", key, {"key": key})

    # -- edges

    def grant(
        self, principal: str, resource: str, action: str, *, tx: Transaction | None = None
    ) -> str:
        """Let `principal` `action` (read, write or execute) `resource`; an
        existing lower grant is raised to it, a higher one kept. The grant
        edge's type after the call (``can_read``, ...)."""
        _key("principal", principal)
        _key("resource", resource)
        level = _action(action)
        with self._writing(tx, "grant") as (t, graph):
            existing = self._edge(t, graph, principal, resource)
            if existing is not None and _GRANT_EDGES.get(existing[1], 0) >= level:
                return existing[1]
            if existing is not None:
                graph.remove_edge(existing[0], tx=t)
            edge_type = _EDGE_FOR_LEVEL[level]
            graph.add_edge(
                principal, resource, type=edge_type, key=_edge_key(principal, resource), tx=t
            )
            self._publish(
                t,
                "granted",
                _edge_key(principal, resource),
                {"principal": principal, "resource": resource, "action": action},
            )
        return edge_type

    def revoke(
        self,
        principal: str,
        resource: str,
        action: str | None = None,
        *,
        tx: Transaction | None = None,
    ) -> str | None:
        """Take `action` (and every level above it) away from `principal` on
        `resource`; ``action=None`` removes the grant. What remains (an edge
        type) or None."""
        _key("principal", principal)
        _key("resource", resource)
        level = 1 if action is None else _action(action)
        with self._writing(tx, "revoke") as (t, graph):
            existing = self._edge(t, graph, principal, resource)
            if existing is None or _GRANT_EDGES.get(existing[1], 0) < level:
                return None if existing is None else existing[1]
            graph.remove_edge(existing[0], tx=t)
            left = _EDGE_FOR_LEVEL.get(level - 1)
            if left is not None:
                graph.add_edge(
                    principal, resource, type=left, key=_edge_key(principal, resource), tx=t
                )
            self._publish(
                t,
                "revoked",
                _edge_key(principal, resource),
                {"principal": principal, "resource": resource, "action": action, "left": left},
            )
        return left

    def join(self, member: str, group: str, *, tx: Transaction | None = None) -> None:
        """``member`` belongs to ``group`` (both principals) from now on: it
        inherits the group's scopes and grants. Membership in the built-in
        roles is derived from ``system.db`` and not set here."""
        _key("member", member)
        _key("group", group)
        if member.startswith("account:") and group in _ROLE_KEYS:
            raise InvalidInputError(
                f"an account's role ({shown(group)}) follows its membership level; change "
                "that with organizations.update_member"
            )
        with self._writing(tx, "join") as (t, graph):
            existing = self._edge(t, graph, member, group)
            if existing is not None and existing[1] == "belongs_to":
                return
            if existing is not None:
                raise MultiEdgeError(
                    f"{shown(member)} already has a {existing[1]} edge to {shown(group)}, and "
                    "the ACL allows one edge per pair of principals"
                )
            graph.add_edge(member, group, type="belongs_to", key=_edge_key(member, group), tx=t)
            self._publish(t, "joined", _edge_key(member, group), {"member": member, "group": group})

    def leave(self, member: str, group: str, *, tx: Transaction | None = None) -> bool:
        """End ``member``'s ``belongs_to`` edge to ``group``; False if none."""
        _key("member", member)
        _key("group", group)
        if member.startswith("account:") and group in _ROLE_KEYS:
            raise InvalidInputError(
                f"an account's role ({shown(group)}) follows its membership level"
            )
        with self._writing(tx, "leave") as (t, graph):
            existing = self._edge(t, graph, member, group)
            if existing is None or existing[1] != "belongs_to":
                return False
            graph.remove_edge(existing[0], tx=t)
            self._publish(t, "left", existing[0], {"member": member, "group": group})
        return True

    def delegate(
        self,
        from_key: str,
        to_key: str,
        *,
        scopes: Iterable[str],
        narrowable: bool,
        tx: Transaction | None = None,
    ) -> Delegation:
        """Pass `scopes` from `from_key` on to `to_key`. Refused
        (`AccessDeniedError`) unless `from_key` may pass on every one of
        them (see the module docstring); `narrowable=False` stops the
        delegate from passing them further. Replaces an earlier delegation
        between the two."""
        _key("from_key", from_key)
        _key("to_key", to_key)
        narrowed = _scopes("scopes", scopes)
        if not isinstance(narrowable, bool):
            raise InputTypeError(f"narrowable must be a bool, not {type(narrowable).__name__}")
        if not narrowed:
            raise InvalidInputError("delegate needs at least one scope")
        with self._writing(tx, "delegate", own=from_key) as (t, graph):
            closure = _resolve(from_key, t.query(_CLOSURE_SQL, {"p": from_key, "g": graph.id}))
            if not closure.exists:
                raise NotFoundError(f"the ACL has no principal {shown(from_key)}")
            missing = [s for s in narrowed if s not in closure.delegable]
            if missing:
                held = [s for s in missing if s in closure.effective]
                why = (
                    f"{from_key} holds {shown(held)} only through a delegation that is not "
                    "narrowable"
                    if held
                    else f"{from_key} does not hold {shown(missing)}"
                )
                decision = Decision(False, why, from_key, scopes=frozenset(closure.effective))
                self._types._refuse(
                    AccessDeniedError(f"cannot delegate: {why}", decision), "acl.delegate", "acl"
                )
            attrs = {"narrowedScopes": list(narrowed), "narrowable": narrowable}
            existing = self._edge(t, graph, from_key, to_key)
            if existing is not None and existing[1] == "delegates":
                graph.update_edge(existing[0], attributes=attrs, tx=t)
            else:
                graph.add_edge(
                    from_key,
                    to_key,
                    type="delegates",
                    key=_edge_key(from_key, to_key),
                    attributes=attrs,
                    tx=t,
                )
            self._publish(
                t,
                "delegated",
                _edge_key(from_key, to_key),
                {"from": from_key, "to": to_key, **attrs},
            )
        return Delegation(from_key, to_key, narrowed, narrowable)

    def undelegate(self, from_key: str, to_key: str, *, tx: Transaction | None = None) -> bool:
        """Remove the delegation from `from_key` to `to_key`; False if none."""
        _key("from_key", from_key)
        _key("to_key", to_key)
        with self._writing(tx, "undelegate", own=from_key) as (t, graph):
            existing = self._edge(t, graph, from_key, to_key)
            if existing is None or existing[1] != "delegates":
                return False
            graph.remove_edge(existing[0], tx=t)
            self._publish(t, "undelegated", existing[0], {"from": from_key, "to": to_key})
        return True

    # -- reads

    def principal(self, key: str) -> Principal:
        _key("principal key", key)
        gid = self.graph_id()
        row = (
            None
            if gid is None
            else self._db.query_one(
                "SELECT attributes FROM nodes "
                "WHERE graph_id = ? AND key = ? AND type = 'principal'",
                (gid, key),
            )
        )
        if row is None:
            raise NotFoundError(f"the ACL has no principal {shown(key)}")
        return _principal(key, json.loads(row[0]))

    def principals(self) -> builtins.list[Principal]:
        gid = self.graph_id()
        if gid is None:
            return []
        rows = self._db.query(
            "SELECT key, attributes FROM nodes WHERE graph_id = ? AND type = 'principal' "
            "ORDER BY rowid",
            (gid,),
        )
        return [_principal(k, json.loads(a)) for k, a in rows]

    def effective_scopes(self, principal: str) -> frozenset[str]:
        """Every scope `principal` holds (own, inherited, delegated)."""
        return self.check_access(principal).scopes

    def check_access(
        self,
        principal: str,
        *,
        required_scopes: Iterable[str] = (),
        any_scopes: Iterable[str] = (),
        resource: str | None = None,
        action: str | None = None,
    ) -> Decision:
        """May `principal` act? It needs every scope in `required_scopes`,
        at least one of `any_scopes` (when given) and, with `resource` and
        `action`, a grant of that level. Answers come from a per-file cache
        that any ACL change (from any process) invalidates before the next
        check, so a revoke is seen by every check that starts after it
        commits."""
        _key("principal", principal)
        required = _scopes("required_scopes", required_scopes)
        anyof = _scopes("any_scopes", any_scopes)
        if (resource is None) != (action is None):
            raise InvalidInputError("check_access needs both resource and action, or neither")
        level = 0
        if resource is not None:
            _key("resource", resource)
            level = _action(action)
        ask = (principal, required, anyof, resource, level)
        cache = self._cache
        generation = _generation(self._db)
        with cache.lock:
            cache.at(generation)
            found = cache.decisions.get(ask)
        if found is not None:
            return found
        closure, grants = self._resolved(principal, resource)
        if closure is None:
            return Decision(
                False,
                f"organization {self.org_id!r} has no ACL graph yet; run "
                "`alkdev-storage acl reconcile` (or tenant.acl.reconcile())",
                principal,
            )
        decision = _decide(principal, closure, grants, required, anyof, resource, action, level)
        with cache.lock:
            if cache.generation == closure.generation:
                cache.put(cache.decisions, ask, decision, cache.MAX_ANSWERS)
        return decision

    def _resolved(
        self, principal: str, resource: str | None
    ) -> tuple[_Closure | None, tuple[str | None, dict[str, int]] | None]:
        """The principal's closure and, for a resource, (its node type, the
        grants on it by holder), both as of one generation of the ACL; no
        closure if the file has no ACL graph."""
        cache = self._cache
        with cache.lock:
            closure = cache.closures.get(principal)
            grants = None if resource is None else cache.grants.get((principal, resource))
            gid = cache.graph_id
        if gid is None:
            gid = self.graph_id()
            if gid is None:
                return None, None
        if closure is None:
            closure = _resolve(principal, self._db.query(_CLOSURE_SQL, {"p": principal, "g": gid}))
        if resource is not None and grants is None:
            for _ in range(8):
                rows = self._db.query(_GRANTS_SQL, {"p": principal, "g": gid, "res": resource})
                generation = int(rows[0][1] or 0)
                grants = (rows[0][2], {holder: _GRANT_EDGES[t] for _, holder, t in rows[1:]})
                if generation == closure.generation:
                    break
                # The ACL changed between the two reads: read both again.
                closure = _resolve(
                    principal, self._db.query(_CLOSURE_SQL, {"p": principal, "g": gid})
                )
            else:
                raise BusyError("the ACL kept changing while it was being read; try again")
        with cache.lock:
            cache.at(max(cache.generation, closure.generation))
            if cache.generation == closure.generation:
                cache.graph_id = gid
                cache.put(cache.closures, principal, closure, cache.MAX_CLOSURES)
                if resource is not None:
                    cache.put(cache.grants, (principal, resource), grants, cache.MAX_ANSWERS)
        return closure, grants

    # -- memberships

    def reconcile(self) -> ReconcileResult:
        """Make the ACL match the organization's memberships in
        ``system.db`` (creating the ACL graph and its built-in principals
        if missing): every member's ``account:<id>`` belongs to exactly the
        role of its level, and no one else belongs to a role. Idempotent."""
        return _sync(self, None)

    def _sync_accounts(self, accounts: Iterable[str]) -> ReconcileResult:
        return _sync(self, set(accounts))


def _edge_key(source: str, target: str) -> str:
    return f"{source}->{target}"


def _principal_attrs(p: Principal) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "identityType": p.identity_type,
        "identityId": p.identity_id,
        "scopes": list(p.scopes),
    }
    if p.resources is not None:
        attrs["resources"] = list(p.resources)
    return attrs


def _principal(key: str, attrs: Mapping[str, Any]) -> Principal:
    resources = attrs.get("resources")
    return Principal(
        key,
        attrs["identityType"],
        attrs["identityId"],
        tuple(attrs.get("scopes", ())),
        None if resources is None else tuple(resources),
    )


def _decide(
    principal: str,
    closure: _Closure,
    grants: tuple[str | None, dict[str, int]] | None,
    required: tuple[str, ...],
    anyof: tuple[str, ...],
    resource: str | None,
    action: str | None,
    level: int,
) -> Decision:
    scopes = frozenset(closure.effective)
    if not closure.exists:
        return Decision(False, f"the ACL has no principal {principal!r}", principal)

    def deny(reason: str) -> Decision:
        return Decision(False, reason, principal, scopes=scopes)

    paths: dict[str, tuple[str, ...]] = {}
    for scope in required:
        path = closure.effective.get(scope)
        if path is None:
            return deny(_missing(principal, scope, closure))
        paths[f"scope:{scope}"] = path
    if anyof:
        held = [s for s in anyof if s in closure.effective]
        if not held:
            return deny(f"{principal} holds none of {', '.join(map(repr, anyof))}")
        paths[f"scope:{held[0]}"] = closure.effective[held[0]]
    main: tuple[str, ...] = next(iter(paths.values()), (principal,))
    if resource is not None:
        assert grants is not None and action is not None
        node_type, holders = grants
        if node_type != "resource":
            return deny(f"the ACL has no resource {resource!r}")
        if closure.resources is not None and resource not in closure.resources:
            return deny(f"{principal} may reach only its listed resources, not {resource!r}")
        best: tuple[str, ...] | None = None
        weaker: tuple[str, int] | None = None
        for holder, granted in holders.items():
            via = closure.inherits.get(holder)
            if via is None:
                continue
            if granted >= level:
                if best is None or len(via) < len(best):
                    best = via
            elif weaker is None or granted > weaker[1]:
                weaker = (holder, granted)
        if best is None:
            if weaker is not None:
                have = _EDGE_FOR_LEVEL[weaker[1]]
                return deny(
                    f"{principal} has only {have} on {resource!r} (through {weaker[0]}); "
                    f"{action} needs {_EDGE_FOR_LEVEL[level]} or higher"
                )
            return deny(
                f"no grant of {action} on {resource!r} to {principal} or anything it belongs to"
            )
        main = (*best, resource)
        paths[f"{action}:{resource}"] = main
    return Decision(True, "allowed", principal, main, paths, scopes)


def _missing(principal: str, scope: str, closure: _Closure) -> str:
    """Why `principal` lacks `scope`: the delegation that would have carried
    it, if one names it, else just the missing scope."""
    for source, target, narrowed, holds, passes in closure.delegations:
        if scope in narrowed and scope not in passes:
            held = (
                "holds it only through a delegation that is not narrowable"
                if scope in holds
                else "does not hold it"
            )
            return (
                f"{principal} lacks scope {scope!r}: {source} delegates it to {target}, "
                f"but {source} {held}"
            )
    return f"{principal} lacks scope {scope!r}"


def require(acl: Acl, actor: Actor, scope: str, operation: str) -> None:
    """Refuse (audited, `AccessDeniedError`) unless the account acting
    holds `scope` in this ACL. The platform holds every scope."""
    if actor.privileged:
        return
    decision = acl.check_access(f"account:{actor.account_id}", required_scopes=(scope,))
    if not decision.allowed:
        acl._types._refuse(
            AccessDeniedError(f"{operation} needs scope {scope!r}: {decision.reason}", decision),
            operation,
            "acl",
        )


# ---------------------------------------------------------------- derivation


def _memberships(system: Database, org_id: str) -> dict[str, str]:
    return {
        str(a): str(level)
        for a, level in system.query(
            "SELECT account_id, membership_level FROM organization_members WHERE org_id = ?",
            (org_id,),
        )
    }


def _sync(acl: Acl, accounts: set[str] | None) -> ReconcileResult:
    """Bring the derived part of `acl` in line with ``system.db``: the
    graph and its built-ins, and, for `accounts` (None: everyone), the
    ``account:<id>`` → ``role:<level>`` edges. Memberships are read after
    the tenant's writer is taken, so of two syncs the later one always
    writes the newer state."""
    created = False
    added = removed = 0
    db = acl._db
    with db.transaction() as t:
        if t.query_one(_GRAPH_SQL) is None:
            _create_graph(acl, t)
            created = True
        graph = acl._graph_in(t)
        added += _ensure_builtins(acl, t, graph)
        levels = _memberships(acl._system, acl.org_id)
        current: dict[str, list[tuple[str, str]]] = {}
        for key, source, target in t.query(
            "SELECT key, source_node_key, target_node_key FROM edges WHERE graph_id = ? "
            "AND type = 'belongs_to' AND source_node_key LIKE 'account:%' "
            "AND target_node_key IN ('role:owner', 'role:admin', 'role:member')",
            (graph.id,),
        ):
            current.setdefault(source[len("account:") :], []).append((key, target))
        wanted = set(levels) | set(current) if accounts is None else accounts
        for account in sorted(wanted):
            level = levels.get(account)
            principal = f"account:{account}"
            target = None if level is None else f"role:{level}"
            edges = current.get(account, [])
            changed = False
            for key, role in edges:
                if role != target:
                    graph.remove_edge(key, tx=t)
                    removed += 1
                    changed = True
            if target is not None and all(role != target for _, role in edges):
                if acl._principal_row(t, graph, principal) is None:
                    graph.add_node(
                        principal,
                        type="principal",
                        attributes={"identityType": "account", "identityId": account, "scopes": []},
                        tx=t,
                    )
                graph.add_edge(
                    principal, target, type="belongs_to", key=_edge_key(principal, target), tx=t
                )
                added += 1
                changed = True
            if changed:  # every change of the graph invalidates cached checks
                acl._publish(t, "membership_synced", principal, {"level": level})
    return ReconcileResult(acl.org_id, created, added, removed)


def _create_graph(acl: Acl, t: Transaction) -> None:
    graph = acl._graphs.create(type="acl", name=ACL_GRAPH_NAME, status="active", tx=t)
    acl._graph = graph
    acl._publish(t, "graph_created", graph.id, {"graph_id": graph.id})


def _ensure_builtins(acl: Acl, t: Transaction, graph: Graph) -> int:
    """The organization's principal and the roles, with the role chain;
    what had to be added (existing ones keep any scopes set on them)."""
    added = 0
    org_key = f"org:{acl.org_id}"
    nodes = [(org_key, "org", acl.org_id, ())] + [
        (f"role:{level}", "role", level, scopes) for level, scopes in ROLE_SCOPES.items()
    ]
    for key, kind, ident, scopes in nodes:
        if acl._principal_row(t, graph, key) is None:
            graph.add_node(
                key,
                type="principal",
                attributes={"identityType": kind, "identityId": ident, "scopes": list(scopes)},
                tx=t,
            )
            acl._publish(t, "principal_added", key, {"scopes": list(scopes)})
            added += 1
    for child, parent in (*_ROLE_PARENTS.items(), ("member", org_key)):
        source = f"role:{child}"
        if acl._edge(t, graph, source, parent) is None:
            graph.add_edge(source, parent, type="belongs_to", key=_edge_key(source, parent), tx=t)
            acl._publish(
                t, "joined", _edge_key(source, parent), {"member": source, "group": parent}
            )
            added += 1
    return added


# ---------------------------------------------------------------- store.acl


#: The ``system.db`` queue of membership changes to apply to tenant ACLs.
SYNC_QUEUE = "_acl:sync"

_pending: contextvars.ContextVar[list[tuple[str, str, int]] | None] = contextvars.ContextVar(
    "acl_pending", default=None
)


class AclSync:
    """``store.acl``: keeps every organization's ACL in step with the
    memberships in ``system.db``.

    A membership change (add, level change, removal, owner transfer, an
    account deleted) enqueues a job on ``system.db``'s queue ``_acl:sync``
    in the same transaction. With ``inline`` (the default), the call that
    made the change applies it to the tenant file right after its commit
    and drops the job; the job is what survives a crash in between, and a
    worker (`run_worker`, or ``alkdev-storage acl sync``) applies what is
    left. Applying is idempotent and reads the membership as it is then,
    so a job applied twice, late or out of order changes nothing wrong.
    `reconcile` repairs any drift from scratch.
    """

    def __init__(self, store: Storage, *, inline: bool = True) -> None:
        self._store = store
        self.inline = inline
        self.queue = store.system.queue(SYNC_QUEUE, visibility_timeout_s=60, max_attempts=20)

    def __repr__(self) -> str:
        return f"<AclSync {self.queue.name}>"

    # -- called by store.organizations / store.accounts

    def enqueue(self, tx: Transaction, org_id: str, account_id: str) -> int:
        """In `tx` (``system.db``): a job to apply `account_id`'s
        membership of `org_id` to its ACL."""
        job = self.queue.enqueue({"org_id": org_id, "account_id": account_id}, tx=tx)
        pending = _pending.get()
        if pending is not None:
            pending.append((org_id, account_id, job))
        return job

    @contextlib.contextmanager
    def changes(self) -> Iterator[None]:
        """Around a ``system.db`` transaction that may `enqueue`: once it
        has committed, apply its jobs now (``inline``)."""
        pending: list[tuple[str, str, int]] = []
        token = _pending.set(pending)
        try:
            yield
        finally:
            _pending.reset(token)
        if self.inline and pending:
            self._apply_now(pending)

    def _apply_now(self, pending: list[tuple[str, str, int]]) -> None:
        by_org: dict[str, list[tuple[str, int]]] = {}
        for org_id, account, job in pending:
            by_org.setdefault(org_id, []).append((account, job))
        for org_id, items in by_org.items():
            try:
                self.apply(org_id, [a for a, _ in items])
            except Error:
                # The membership has committed: the caller's call succeeded.
                # Its jobs stay queued for a worker (a busy or read-only
                # tenant file, one being archived, ...).
                continue
            for _, job in items:
                self.queue.cancel(job)

    def init_tenant(self, org_id: str, owner_id: str) -> None:
        """A new organization's ACL graph with its built-ins and its owner
        (before ``system.db`` commits the organization: if that fails, the
        tenant file goes with it)."""
        with self._store.tenant(org_id) as tenant:
            acl = tenant.acl
            with tenant.db.transaction() as t:
                _create_graph(acl, t)
                graph = acl._graph_in(t)
                _ensure_builtins(acl, t, graph)
                principal = f"account:{owner_id}"
                graph.add_node(
                    principal,
                    type="principal",
                    attributes={"identityType": "account", "identityId": owner_id, "scopes": []},
                    tx=t,
                )
                graph.add_edge(
                    principal,
                    "role:owner",
                    type="belongs_to",
                    key=_edge_key(principal, "role:owner"),
                    tx=t,
                )
                acl._publish(t, "membership_synced", principal, {"level": "owner"})

    # -- applying

    def apply(self, org_id: str, account_ids: Iterable[str]) -> ReconcileResult | None:
        """Apply these accounts' memberships of `org_id` to its ACL now;
        None if the organization has no tenant file any more."""
        try:
            tenant = self._store.tenant(org_id)
        except (TenantNotFoundError, InvalidInputError):
            return None
        with tenant:
            return tenant.acl._sync_accounts(account_ids)

    def run_pending(self, *, worker_id: str | None = None, batch: int = 100) -> int:
        """Apply every due job now, `batch` at a time; how many were done."""
        worker = worker_id or _worker_id()
        done = 0
        while True:
            count = self._run_batch(worker, batch)
            if count == 0:
                return done
            done += count

    def _run_batch(self, worker: str, batch: int) -> int:
        jobs = self.queue.claim_batch(worker, batch)
        by_org: dict[str, list[Any]] = {}
        for job in jobs:
            payload = job.payload
            if not isinstance(payload, dict) or not {"org_id", "account_id"} <= payload.keys():
                job.fail(f"not an ACL sync job: {shown(payload)}")
                continue
            by_org.setdefault(str(payload["org_id"]), []).append(job)
        for org_id, org_jobs in by_org.items():
            try:
                self.apply(org_id, [str(j.payload["account_id"]) for j in org_jobs])
            except Exception as exc:  # the jobs come back later; other orgs go on
                for job in org_jobs:
                    job.retry(min(60, 2 ** max(job.attempts - 1, 0)), repr(exc))
                continue
            self.queue.ack_batch([j.id for j in org_jobs], worker)
        return len(jobs)

    def run_worker(
        self,
        *,
        stop: threading.Event | None = None,
        worker_id: str | None = None,
        batch: int = 100,
        idle_poll_s: float = 5.0,
    ) -> int:
        """Apply jobs as they come until `stop` is set (forever without
        one); how many were done. Sleeps until a commit touches
        ``system.db``, a retried job comes due, or `idle_poll_s` passes."""
        worker = worker_id or _worker_id()
        done = 0
        with SyncChange(self._store.system.path) as change:
            while stop is None or not stop.is_set():
                count = self._run_batch(worker, batch)
                done += count
                if count == 0:
                    change.wait(
                        self.queue._wait_budget(min(idle_poll_s, 0.5) if stop else idle_poll_s)
                    )
        return done

    def pending(self) -> int:
        """Jobs not yet applied (due or not)."""
        row = self._store.system.query_one(
            "SELECT count(*) FROM _honker_live WHERE queue = ?", (SYNC_QUEUE,)
        )
        return int(row[0]) if row else 0

    def reconcile(self, org_id: str | None = None) -> builtins.list[ReconcileResult]:
        """Repair every organization's ACL (or one's) from the memberships."""
        ids = (
            [org_id]
            if org_id is not None
            else [
                str(r[0])
                for r in self._store.system.query("SELECT id FROM organizations ORDER BY id")
            ]
        )
        results = []
        for org in ids:
            self._store.organizations.get(org)
            with self._store.tenant(org) as tenant:
                results.append(tenant.acl.reconcile())
        return results


def _worker_id() -> str:
    return f"acl-{os.getpid()}-{threading.get_ident()}-{int(time.time())}"
