"""Graph-type registration (idempotent, versioned, validated schemas) and
the scope rules of SPEC §5: each violation its own error, an audit row, and
no change to any file."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import alkdev_storage as alk
from alkdev_storage.metagraph import EdgeTypeSpec, GraphConfig, GraphTypeSpec, NodeTypeSpec

TASK = {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}}


def tasks(scope: str = "tenant", version: int = 1, **changes: Any) -> GraphTypeSpec:
    fields: dict[str, Any] = {
        "name": "tasks",
        "scope": scope,
        "version": version,
        "config": GraphConfig(type="directed"),
        "node_types": {"task": NodeTypeSpec(schema=TASK)},
        "edge_types": {
            "depends_on": EdgeTypeSpec(
                schema={"type": "object"},
                allowed_source_types=["task"],
                allowed_target_types=["task"],
            )
        },
    }
    fields.update(changes)
    return GraphTypeSpec(**fields)


ACL = GraphTypeSpec(
    name="policies",
    scope="system",
    config=GraphConfig(type="directed", multi=False, allow_self_loops=False),
    node_types={"principal": NodeTypeSpec(schema={"type": "object"}), "resource": NodeTypeSpec()},
    edge_types={"can_read": EdgeTypeSpec(schema={"type": "object"})},
)


class World:
    def __init__(self, root: Path) -> None:
        self.store = alk.Storage.open(root)
        s = self.store
        self.owner = s.accounts.create(email="owner@x.io")
        self.admin = s.accounts.create(email="admin@x.io")
        self.member = s.accounts.create(email="member@x.io")
        self.other = s.accounts.create(email="other@x.io")
        self.outsider = s.accounts.create(email="outsider@x.io")
        self.org = s.organizations.create(name="Acme", slug="acme", owner_id=self.owner.id)
        s.organizations.add_member(self.org.id, self.admin.id, "admin")
        s.organizations.add_member(self.org.id, self.member.id, "member")
        s.organizations.add_member(self.org.id, self.other.id, "member")

    def as_(self, account: Any) -> alk.Tenant:
        return self.store.as_account(account.id).tenant(self.org.id)

    def snapshot(self) -> Any:
        with self.store.tenant(self.org.id) as t:
            tenant = [
                t.db.query(f"SELECT * FROM {table} ORDER BY rowid")
                for table in ("graph_types", "node_types", "edge_types", "graphs", "_honker_stream")
            ]
        system = [
            self.store.system.query(f"SELECT * FROM {table} ORDER BY id")
            for table in ("graph_types", "node_types", "edge_types")
        ]
        return tenant, system

    def audits(self) -> list[alk.identity.AuditEntry]:
        return self.store.audit.list(action="scope.violation", limit=1000)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "root")
    yield w
    w.store.close()


def test_registration_is_idempotent_and_versioned(world: World) -> None:
    with world.as_(world.owner) as t:
        first = t.graph_types.register(tasks())
        assert t.graph_types.register(tasks()) == first
        events = t.db.query("SELECT count(*) FROM _honker_stream WHERE topic LIKE 'graph_types:%'")
        assert events == [(1,)]
        changed = tasks(node_types={"task": NodeTypeSpec(schema={"type": "object"})})
        with pytest.raises(alk.TypeVersionError, match="version 2"):
            t.graph_types.register(changed)
        with pytest.raises(alk.TypeVersionError):
            t.graph_types.register(tasks(version=0 + 1, description="new words"))
        second = t.graph_types.register(tasks(version=2, description="new words"))
        assert second.version == 2 and second.id == first.id
        assert second.node_types["task"].id == first.node_types["task"].id
        with pytest.raises(alk.TypeVersionError, match="older"):
            t.graph_types.register(tasks(version=1, description="new words"))


def test_registration_from_json_and_yaml_documents(world: World) -> None:
    doc = tasks().to_document()
    with world.as_(world.owner) as t:
        assert t.graph_types.register(doc).spec() == tasks()
        import yaml

        assert t.graph_types.register(yaml.safe_dump(doc)).version == 1


def test_documents_parse_errors_and_a_missing_yaml_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(alk.DocumentError, match="at line 3, column 3") as bad:
        GraphTypeSpec.from_document("name: x\nscope: [\n  - oops: {\n")
    assert (bad.value.source, bad.value.line, bad.value.column) == ("graph-type document", 3, 3)
    assert isinstance(bad.value, ValueError)
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    assert GraphTypeSpec.from_document('{"name": "x"}').name == "x"  # JSON needs nothing
    with pytest.raises(alk.MissingExtraError, match=r"pip install 'alkdev-storage\[yaml\]'"):
        GraphTypeSpec.from_document("name: x\n")
    assert issubclass(alk.MissingExtraError, ImportError)


@pytest.mark.parametrize(
    "schema", [{"type": "nonsense"}, {"pattern": "("}, {"$ref": "https://example.com/x.json"}]
)
def test_invalid_schemas_are_refused_at_registration(world: World, schema: Any) -> None:
    before = world.snapshot()
    with world.as_(world.owner) as t, pytest.raises(alk.InvalidSchemaError, match="task"):
        t.graph_types.register(tasks(node_types={"task": NodeTypeSpec(schema=schema)}))
    assert world.snapshot() == before


def test_system_types_live_in_system_db_and_are_mirrored(world: World, tmp_path: Path) -> None:
    store = world.store
    with pytest.raises(ValueError, match="system types"):
        store.graph_types.register(tasks())
    acl = store.graph_types.register(ACL)
    assert store.graph_types.register(ACL) == acl
    assert [t.name for t in store.graph_types.list()] == ["acl", "policies", "secrets"]
    # A tenant created now gets the mirror when its file is first opened...
    beta = store.organizations.create(name="Beta", slug="beta", owner_id=world.owner.id)
    with store.tenant(beta.id) as t:
        mirrored = t.graph_types.get("policies")
        assert mirrored.scope == "system" and mirrored.spec() == ACL
    # ...and an existing one the next time it is opened, refreshed by version.
    store.close()
    reopened = alk.Storage.open(tmp_path / "root")
    reopened.graph_types.register(
        GraphTypeSpec(**{**_fields(ACL), "version": 2, "description": "v2"})
    )
    reopened.close()
    again = alk.Storage.open(tmp_path / "root")
    with again.tenant(world.org.id) as t:
        assert t.graph_types.get("policies").version == 2
    with again.tenant(beta.id) as t:
        assert t.graph_types.get("policies").description == "v2"
    again.close()
    world.store = alk.Storage.open(tmp_path / "root")


def _fields(spec: GraphTypeSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "scope": spec.scope,
        "version": spec.version,
        "config": spec.config,
        "node_types": dict(spec.node_types),
        "edge_types": dict(spec.edge_types),
        "description": spec.description,
    }


Attempt = Callable[[World], Any]


def _register(account: str, spec: Callable[[], GraphTypeSpec]) -> Attempt:
    def attempt(w: World) -> Any:
        with w.as_(getattr(w, account)) as t:
            return t.graph_types.register(spec())

    return attempt


def _delete(account: str, name: str) -> Attempt:
    def attempt(w: World) -> Any:
        with w.as_(getattr(w, account)) as t:
            return t.graph_types.delete(name)

    return attempt


def _use(account: str, name: str) -> Attempt:
    def attempt(w: World) -> Any:
        with w.as_(getattr(w, account)) as t:
            return t.graph_types.check_can_use(t.graph_types.get(name))

    return attempt


SCOPE_CASES = [
    ("member registers a tenant type", _register("member", tasks), alk.NotTenantAdminError),
    ("member deletes a tenant type", _delete("member", "shared"), alk.NotTenantAdminError),
    (
        "another member alters a user type",
        _register("other", lambda: tasks("user", 2, name="mine", description="x")),
        alk.NotTypeOwnerError,
    ),
    ("another member deletes a user type", _delete("other", "mine"), alk.NotTypeOwnerError),
    ("another member uses a user type", _use("other", "mine"), alk.NotTypeOwnerError),
    (
        "owner of the org registers a system type",
        _register("owner", lambda: ACL),
        alk.SystemTypeProtectedError,
    ),
    ("admin deletes a system type", _delete("admin", "policies"), alk.SystemTypeProtectedError),
    (
        "admin takes a system type's name",
        _register("admin", lambda: tasks(name="policies")),
        alk.ReservedTypeNameError,
    ),
    (
        "admin takes the name of a system type not yet mirrored",
        _register("admin", lambda: tasks(name="audit-trail")),
        alk.ReservedTypeNameError,
    ),
]


@pytest.mark.parametrize(("case", "attempt", "error"), SCOPE_CASES, ids=[c[0] for c in SCOPE_CASES])
def test_scope_rules(world: World, case: str, attempt: Attempt, error: type[Exception]) -> None:
    store = world.store
    store.graph_types.register(ACL)
    with world.as_(world.admin) as t:  # opened after ACL: mirrored
        t.graph_types.register(tasks(name="shared"))
    with world.as_(world.member) as t:
        t.graph_types.register(tasks("user", name="mine"))
    store.graph_types.register(
        GraphTypeSpec(name="audit-trail", scope="system", node_types={"entry": NodeTypeSpec()})
    )
    before = world.snapshot()
    audits = len(world.audits())
    with pytest.raises(error) as raised:
        attempt(world)
    assert isinstance(raised.value, alk.ScopeViolationError)
    assert world.snapshot() == before, "a refused attempt changed a file"
    entries = world.audits()
    assert len(entries) == audits + 1
    assert entries[0].details["rule"] == error.__name__
    assert entries[0].org_id == world.org.id


def test_allowed_actions(world: World) -> None:
    with world.as_(world.admin) as t:
        shared = t.graph_types.register(tasks(name="shared"))
    with world.as_(world.member) as t:
        mine = t.graph_types.register(tasks("user", name="mine"))
        assert mine.owner_id == world.member.id
        t.graph_types.check_can_use(mine)
        t.graph_types.check_can_use(shared)  # every member may use tenant types
        t.graph_types.register(tasks("user", 2, name="mine", description="mine, v2"))
        t.graph_types.delete("mine")
    with world.as_(world.owner) as t:
        t.graph_types.delete("shared")
        assert [x.name for x in t.graph_types.list()] == ["acl", "secrets"]  # built in
    assert world.audits() == []


def test_non_members_are_refused_and_audited(world: World) -> None:
    with pytest.raises(alk.NotAMemberError):
        world.as_(world.outsider)
    (entry,) = world.audits()
    assert entry.owner_id == world.outsider.id and entry.details["rule"] == "NotAMemberError"
