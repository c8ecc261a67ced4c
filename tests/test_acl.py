"""The ACL graph (docs/acl.md) used the way a service uses it: derived from
memberships in another file, checked from many threads and processes while
it changes, written by members with fewer rights than they would like, its
sync worker killed mid-batch, handles dropped instead of closed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import alkdev_storage as alk
from alkdev_storage.acl import ROLE_SCOPES, AclSync
from alkdev_storage.metagraph import GraphTypeSpec, NodeTypeSpec

PACKAGE_PARENT = str(Path(alk.__file__).resolve().parent.parent)
NOTES = GraphTypeSpec(name="notes", scope="tenant", node_types={"note": NodeTypeSpec()})


class World:
    def __init__(self, root: Path, **options: object) -> None:
        self.root = root
        self.store = alk.Storage.open(root, **options)  # type: ignore[arg-type]
        s = self.store
        self.owner = s.accounts.create(email="owner@x.io")
        self.admin = s.accounts.create(email="admin@x.io")
        self.member = s.accounts.create(email="member@x.io")
        self.outsider = s.accounts.create(email="outsider@x.io")
        self.org = s.organizations.create(name="Acme", slug="acme", owner_id=self.owner.id)
        s.organizations.add_member(self.org.id, self.admin.id, "admin")
        s.organizations.add_member(self.org.id, self.member.id, "member")

    def acl(self) -> alk.acl.Acl:
        return self.store.tenant(self.org.id).acl

    def as_(self, account: alk.identity.Account) -> alk.Tenant:
        return self.store.as_account(account.id).tenant(self.org.id)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "root")
    yield w
    w.store.close()


def role_edges(store: alk.Storage, org_id: str) -> dict[str, str]:
    """account id -> role level, as the ACL graph has it."""
    with store.tenant(org_id) as t:
        gid = t.acl.graph_id()
        rows = t.db.query(
            "SELECT source_node_key, target_node_key FROM edges WHERE graph_id = ? "
            "AND type = 'belongs_to' AND source_node_key LIKE 'account:%'",
            (gid,),
        )
    out: dict[str, str] = {}
    for source, target in rows:
        assert source.removeprefix("account:") not in out, f"{source} has two roles"
        out[source.removeprefix("account:")] = target.removeprefix("role:")
    return out


def memberships(store: alk.Storage, org_id: str) -> dict[str, str]:
    return {m.account_id: m.membership_level for m in store.organizations.members(org_id)}


def account(a: alk.identity.Account) -> str:
    return f"account:{a.id}"


# ---------------------------------------------------------------- creation and derivation


def test_an_organization_starts_with_its_acl_graph(world: World) -> None:
    acl = world.acl()
    keys = {p.key for p in acl.principals()}
    assert {f"org:{world.org.id}", "role:owner", "role:admin", "role:member"} <= keys
    assert role_edges(world.store, world.org.id) == memberships(world.store, world.org.id)
    owner = acl.check_access(account(world.owner), required_scopes=["org:admin", "graphs:read"])
    assert owner.allowed
    # owner -> role:owner -> role:admin -> role:member: inherited over belongs_to
    assert owner.paths["scope:graphs:read"] == (
        account(world.owner),
        "role:owner",
        "role:admin",
        "role:member",
    )
    assert world.store.acl.pending() == 0  # applied inline, jobs dropped


def test_a_failed_organization_create_leaves_no_file_and_no_acl(world: World) -> None:
    before = world.store.tenants.ids()
    with pytest.raises(alk.AlreadyExistsError):
        world.store.organizations.create(name="Other", slug="acme", owner_id=world.owner.id)
    assert world.store.tenants.ids() == before


def test_membership_changes_reach_the_acl_in_the_same_call(world: World) -> None:
    s, org = world.store, world.org.id
    newbie = s.accounts.create(email="newbie@x.io")
    s.organizations.add_member(org, newbie.id, "admin")
    assert world.acl().check_access(account(newbie), required_scopes=["members:write"]).allowed
    s.organizations.update_member(org, newbie.id, "member")
    denied = world.acl().check_access(account(newbie), required_scopes=["members:write"])
    assert not denied.allowed and "members:write" in denied.reason
    s.organizations.remove_member(org, newbie.id)
    assert not world.acl().check_access(account(newbie), required_scopes=["graphs:read"])
    s.organizations.update(org, owner_id=world.admin.id)  # transfer: admin becomes an owner
    assert role_edges(s, org) == memberships(s, org)
    s.accounts.delete(newbie.id)
    assert role_edges(s, org) == memberships(s, org)
    assert s.acl.pending() == 0


def test_without_inline_sync_a_worker_applies_the_jobs(tmp_path: Path) -> None:
    w = World(tmp_path / "root", acl_inline=False)
    try:
        s, org = w.store, w.org.id
        assert set(role_edges(s, org)) == {w.owner.id}  # the owner came with the org
        assert s.acl.pending() == 3  # owner, admin and member joined
        assert s.acl.run_pending() == 3
        assert role_edges(s, org) == memberships(s, org)
        assert s.acl.pending() == 0
    finally:
        w.store.close()


def test_a_failing_apply_is_retried_never_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = World(tmp_path / "root", acl_inline=False)
    try:
        calls = {"n": 0}
        real = AclSync.apply

        def flaky(self: AclSync, org_id: str, account_ids: object) -> object:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("the handler raised")
            return real(self, org_id, account_ids)  # type: ignore[arg-type]

        monkeypatch.setattr(AclSync, "apply", flaky)
        assert w.store.acl.run_pending() == 3  # claimed, failed, put back with a delay
        assert w.store.acl.pending() == 3
        dead = w.store.system.query("SELECT count(*) FROM _honker_dead")[0][0]
        assert dead == 0
        w.store.system.execute("UPDATE _honker_live SET run_at = 0 WHERE queue = '_acl:sync'")
        assert w.store.acl.run_pending() == 3
        assert w.store.acl.pending() == 0
        assert role_edges(w.store, w.org.id) == memberships(w.store, w.org.id)
    finally:
        w.store.close()


def test_reconcile_repairs_drift_and_creates_a_missing_graph(world: World) -> None:
    s, org = world.store, world.org.id
    with s.tenant(org) as t:
        gid = t.acl.graph_id()
        # Drift nobody should cause: rows changed behind the API.
        t.db.execute(
            "DELETE FROM edges WHERE graph_id = ? AND source_node_key = ?",
            (gid, account(world.member)),
        )
        t.db.execute(
            "INSERT INTO nodes (id, graph_id, key, type, attributes) VALUES "
            "('x', ?, 'account:ghost', 'principal', "
            '\'{"identityType":"account","identityId":"ghost","scopes":[]}\')',
            (gid,),
        )
        t.db.execute(
            "INSERT INTO edges (id, graph_id, key, type, source_node_key, target_node_key) "
            "VALUES ('y', ?, 'g', 'belongs_to', 'account:ghost', 'role:admin')",
            (gid,),
        )
    (result,) = s.acl.reconcile(org)
    assert (result.added, result.removed, result.created_graph) == (1, 1, False)
    assert role_edges(s, org) == memberships(s, org)
    assert not s.acl.reconcile(org)[0].drift  # idempotent
    # An organization from before ACLs: no graph at all.
    with s.tenant(org) as t:
        t.db.execute("DELETE FROM graphs WHERE id = ?", (t.acl.graph_id(),))
        assert not t.acl.check_access(account(world.owner), required_scopes=["org:admin"])
    (result,) = s.acl.reconcile()
    assert result.created_graph and role_edges(s, org) == memberships(s, org)


def _converged(store: alk.Storage, org_id: str) -> bool:
    return store.acl.pending() == 0 and role_edges(store, org_id) == memberships(store, org_id)


def test_sigkill_the_sync_worker_mid_batch_and_the_acl_converges(tmp_path: Path) -> None:
    root = tmp_path / "root"
    w = World(root, acl_inline=False)
    s, org = w.store, w.org.id
    people = [s.accounts.create(email=f"p{i}@x.io") for i in range(800)]
    rng = random.Random(7)
    for p in people:
        s.organizations.add_member(org, p.id, rng.choice(["member", "admin"]))
    for p in rng.sample(people, 160):
        s.organizations.update_member(org, p.id, "member")
    for p in rng.sample(people, 120):
        s.organizations.remove_member(org, p.id)
    total = s.acl.pending()
    assert total > 1000
    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT}
    command = [sys.executable, "-m", "alkdev_storage", "acl", "sync", "--root", str(root)]
    expire_claims = (
        "UPDATE _honker_live SET claim_expires_at = 0 WHERE queue = '_acl:sync' "
        "AND state = 'processing'"
    )
    left_after_kill: list[int] = []
    for _ in range(4):
        before = s.acl.pending()
        if before == 0:
            break
        # What a killed worker had claimed comes back once its claim expires
        # (60 s); let that time pass at once.
        s.system.execute(expire_claims)
        worker = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while s.acl.pending() == before and time.monotonic() < deadline:
            time.sleep(0.005)  # the first batch has been acked: the worker is mid-run
        time.sleep(rng.uniform(0, 0.01))
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(30) == -signal.SIGKILL
        left_after_kill.append(s.acl.pending())
    # At least one kill landed with work left (and, by then, some done).
    assert any(0 < left < total for left in left_after_kill), left_after_kill
    # Restart: the new worker applies everything left, idempotently.
    s.system.execute(expire_claims)
    done = subprocess.run(
        [*command, "--once"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert _converged(s, org)
    s.close()


# ---------------------------------------------------------------- checks under change


def test_no_check_that_starts_after_a_revoke_commits_is_allowed(world: World) -> None:
    acl = world.acl()
    acl.add_principal("service:bot", identity_type="service", identity_id="bot")
    acl.add_resource("doc:1")
    state = {"granted": False, "epoch": 0}
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[str] = []
    settled_checks: list[bool] = []

    def writer() -> None:
        writes = world.acl()
        for _ in range(60):
            with lock:
                state["epoch"] += 1  # a change is in flight from here on
            writes.grant("service:bot", "doc:1", "read")
            with lock:
                state["granted"], state["epoch"] = True, state["epoch"] + 1
            time.sleep(0.002)
            with lock:
                state["epoch"] += 1
            writes.revoke("service:bot", "doc:1")
            with lock:
                state["granted"], state["epoch"] = False, state["epoch"] + 1
            time.sleep(0.002)
        stop.set()

    def reader() -> None:
        reads = world.store.tenant(world.org.id).acl  # its own handle, the shared cache
        while not stop.is_set():
            with lock:
                granted, epoch = state["granted"], state["epoch"]
            d = reads.check_access("service:bot", resource="doc:1", action="read")
            with lock:
                # Even: no change in flight when the check began, none since.
                settled = epoch % 2 == 0 and state["epoch"] == epoch
            if settled:
                settled_checks.append(granted)
                if d.allowed != granted:
                    failures.append(f"epoch {epoch}: granted={granted}, check said {d.allowed}")

    threads = [threading.Thread(target=reader) for _ in range(6)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    assert settled_checks.count(True) > 20 and settled_checks.count(False) > 20


def test_a_revoke_in_another_process_is_seen_by_the_next_check(world: World) -> None:
    acl = world.acl()
    acl.add_principal("service:ci", identity_type="service", identity_id="ci")
    acl.add_resource("repo:web")
    acl.grant("service:ci", "repo:web", "write")
    assert acl.check_access("service:ci", resource="repo:web", action="write")  # cached now
    script = (
        "import alkdev_storage as alk, sys\n"
        "with alk.Storage.open(sys.argv[1]) as s, s.tenant(sys.argv[2]) as t:\n"
        "    print(t.acl.revoke('service:ci', 'repo:web', 'write'))\n"
    )
    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT}
    out = subprocess.run(
        [sys.executable, "-c", script, str(world.root), world.org.id],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip() == "can_read"  # write taken away, read left
    d = acl.check_access("service:ci", resource="repo:web", action="write")
    assert not d.allowed and "can_read" in d.reason
    assert acl.check_access("service:ci", resource="repo:web", action="read").allowed


def test_one_liner_checks_give_their_leases_back(world: World) -> None:
    for _ in range(200):
        assert world.store.tenant(world.org.id).acl.check_access(
            account(world.owner), required_scopes=["org:admin"]
        )
    with world.store.tenants._cond:
        assert sum(h.leases for h in world.store.tenants._open.values()) == 0


def test_every_acl_change_publishes_acl_changed_in_its_transaction(world: World) -> None:
    with world.store.tenant(world.org.id) as t:
        acl = t.acl
        offset = t.db.query_one("SELECT max(offset) FROM _honker_stream")[0]
        with t.transaction() as tx:
            acl.add_resource("doc:9", tx=tx)
            acl.grant(account(world.member), "doc:9", "execute", tx=tx)
            tx.rollback()
        assert t.db.query_one("SELECT max(offset) FROM _honker_stream")[0] == offset
        acl.add_resource("doc:9")
        acl.grant(account(world.member), "doc:9", "execute")
        rows = t.db.query(
            "SELECT payload FROM _honker_stream WHERE topic = 'acl:changed' AND offset > ?",
            (offset,),
        )
        actions = [json.loads(p)["action"] for (p,) in rows]
        assert actions == ["resource_added", "granted"]
        assert acl.check_access(account(world.member), resource="doc:9", action="write")


# ---------------------------------------------------------------- hostile members


def test_the_generic_graph_api_cannot_touch_the_acl(world: World) -> None:
    with world.as_(world.admin) as t:
        gid = t.acl.graph_id()
        assert gid is not None
        graph = t.graphs.get(gid)
        before = graph.export()
        for attempt in (
            lambda: graph.add_node("x:1", type="resource",
                                   attributes={"resourceType": "x", "resourceId": "1"}),
            lambda: graph.add_edge(account(world.admin), "role:owner", type="belongs_to"),
            lambda: graph.update_node("role:member", attributes={
                "identityType": "role", "identityId": "member", "scopes": ["org:admin"]}),
            lambda: graph.remove_node("role:owner"),
            lambda: t.graphs.delete(gid),
            lambda: t.graphs.set_status(gid, "archived"),
            lambda: t.graphs.create(type="acl", name="shadow"),
            lambda: graph.import_graph({"nodes": [], "edges": []}),
        ):  # fmt: skip
            with pytest.raises(alk.ProtectedGraphError):
                attempt()
        assert graph.export() == before
    refusals = world.store.audit.list(action="scope.violation")
    assert sum(e.details.get("rule") == "ProtectedGraphError" for e in refusals) == 8


def test_members_cannot_write_the_acl_but_may_delegate_their_own(world: World) -> None:
    with world.as_(world.member) as t:
        acl = t.acl
        with pytest.raises(alk.NotTenantAdminError):
            acl.add_resource("doc:1")
        with pytest.raises(alk.NotTenantAdminError):
            acl.join(account(world.member), f"org:{world.org.id}")
        # Its own principal: it may pass on what it holds, nothing more.
        with world.as_(world.owner) as o:
            o.acl.add_principal("service:mine", identity_type="service", identity_id="mine")
        acl.delegate(account(world.member), "service:mine", scopes=["graphs:read"],
                     narrowable=False)  # fmt: skip
        with pytest.raises(alk.AccessDeniedError, match="members:write"):
            acl.delegate(account(world.member), "service:mine", scopes=["members:write"],
                         narrowable=False)  # fmt: skip
        with pytest.raises(alk.NotTenantAdminError):  # someone else's principal
            acl.delegate(account(world.owner), "service:mine", scopes=["org:admin"],
                         narrowable=True)  # fmt: skip
    assert world.acl().check_access("service:mine", required_scopes=["graphs:read"])


def test_an_admin_without_acl_write_is_refused_and_audited(world: World) -> None:
    owner_acl = world.as_(world.owner).acl
    tightened = [s for s in ROLE_SCOPES["admin"] if s != "acl:write"]
    owner_acl.set_scopes("role:admin", tightened)
    with world.as_(world.admin) as t:
        with pytest.raises(alk.AccessDeniedError) as refused:
            t.acl.add_resource("doc:1")
    assert "acl:write" in str(refused.value)
    assert refused.value.decision is not None and not refused.value.decision.allowed
    assert "doc:1" not in {
        n.key
        for n in world.store.tenant(world.org.id).graphs.get(world.acl().graph_id() or "").nodes()
    }  # nothing written
    assert world.store.audit.list(action="scope.violation")[0].details["rule"] == (
        "AccessDeniedError"
    )
    # Owners hold acl:write on their own role, so tightening admins leaves them able.
    owner_acl.add_resource("doc:1")


def test_rights_that_change_while_a_handle_is_open(world: World) -> None:
    with world.as_(world.admin) as t:
        acl = t.acl
        acl.add_resource("doc:1")
        world.store.organizations.update_member(world.org.id, world.admin.id, "member")
        with pytest.raises(alk.NotTenantAdminError):
            acl.add_resource("doc:2")
        world.store.organizations.remove_member(world.org.id, world.admin.id)
        with pytest.raises(alk.NotAMemberError):
            acl.add_resource("doc:3")


# ---------------------------------------------------------------- organization-level operations


def test_org_operations_consult_membership_level_and_acl(world: World) -> None:
    s, org = world.store, world.org.id
    newbie = s.accounts.create(email="newbie@x.io")
    as_admin = s.as_account(world.admin.id).organization(org)
    as_member = s.as_account(world.member.id).organization(org)
    with pytest.raises(alk.NotTenantAdminError):
        as_member.add_member(newbie.id)
    with pytest.raises(alk.NotTenantAdminError):  # only owners make owners
        as_admin.add_member(newbie.id, "owner")
    as_admin.add_member(newbie.id)
    assert memberships(s, org)[newbie.id] == "member"
    # The organization narrows what admins may do: the ACL says no.
    world.as_(world.owner).acl.set_scopes(
        "role:admin", [x for x in ROLE_SCOPES["admin"] if x != "members:write"]
    )
    with pytest.raises(alk.AccessDeniedError, match="members:write"):
        as_admin.remove_member(newbie.id)
    assert newbie.id in memberships(s, org)
    s.as_account(world.owner.id).organization(org).remove_member(newbie.id)
    assert newbie.id not in memberships(s, org)


def test_managing_other_members_keys(world: World) -> None:
    s, org = world.store, world.org.id
    as_admin = s.as_account(world.admin.id).organization(org)
    key = as_admin.create_api_key(world.member.id, name="ci", scopes=["read"])
    assert s.api_keys.verify(key.plaintext).account.id == world.member.id
    as_admin.revoke_api_key(key.id)
    with pytest.raises(alk.KeyRevokedError):
        s.api_keys.verify(key.plaintext)
    owners = s.api_keys.create(owner_id=world.owner.id, name="owner's")
    with pytest.raises(alk.NotTenantAdminError):
        as_admin.revoke_api_key(owners.id)
    with pytest.raises(alk.NotAMemberError):
        as_admin.create_api_key(world.outsider.id)
    as_member = s.as_account(world.member.id).organization(org)
    with pytest.raises(alk.NotTenantAdminError):
        as_member.create_api_key(world.admin.id)
    mine = as_member.create_api_key(world.member.id, name="mine")  # its own: no ACL needed
    as_member.rotate_api_key(mine.id)
    world.as_(world.owner).acl.set_scopes(
        "role:admin", [x for x in ROLE_SCOPES["admin"] if x != "keys:admin"]
    )
    with pytest.raises(alk.AccessDeniedError, match="keys:admin"):
        as_admin.create_api_key(world.member.id)


def test_registering_tenant_types_consults_the_acl(world: World) -> None:
    with world.as_(world.admin) as t:
        t.graph_types.register(NOTES)
    world.as_(world.owner).acl.set_scopes(
        "role:admin", [x for x in ROLE_SCOPES["admin"] if x != "types:write"]
    )
    with world.as_(world.admin) as t:
        with pytest.raises(alk.AccessDeniedError, match="types:write"):
            t.graph_types.delete("notes")
        assert t.graph_types.get("notes")


# ---------------------------------------------------------------- the command line


def test_cli_acl_check_reconcile_sync(world: World) -> None:
    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT}
    base = [sys.executable, "-m", "alkdev_storage", "acl"]
    root = ["--root", str(world.root), "--org", "acme"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], env=env, capture_output=True, text=True, timeout=60)

    ok = run("check", account(world.admin), "--scope", "members:write", *root)
    assert ok.returncode == 0 and ok.stdout.startswith("allowed"), ok.stderr
    assert "path: " in ok.stdout
    no = run("check", account(world.member), "--scope", "members:write", "--json", *root)
    assert no.returncode == 2 and json.loads(no.stdout)["reason"].endswith("'members:write'")
    bad = run("check", "nobody", *root)
    assert bad.returncode == 1 and "alkdev-storage: error:" in bad.stderr
    rec = run("reconcile", "--root", str(world.root))
    assert rec.returncode == 0 and "1 organizations, 0 repaired" in rec.stdout
    sync = run("sync", "--once", "--root", str(world.root))
    assert sync.returncode == 0 and "0 membership changes applied" in sync.stdout


def test_join_over_a_delegation_is_refused_like_a_delegation_over_a_join(world: World) -> None:
    acl = world.acl()
    acl.add_principal("service:a", identity_type="service", identity_id="a", scopes=["s1"])
    acl.add_principal("service:b", identity_type="service", identity_id="b", scopes=["s2"])
    acl.delegate("service:a", "service:b", scopes=["s1"], narrowable=True)
    with pytest.raises(alk.MultiEdgeError, match="one edge per pair"):
        acl.join("service:a", "service:b")
    acl.join("service:b", "service:a")  # the other direction is another pair
    with pytest.raises(alk.MultiEdgeError):
        acl.delegate("service:b", "service:a", scopes=["s2"], narrowable=True)


def test_an_inline_apply_that_fails_leaves_the_call_succeeded_and_the_job_queued(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, org = world.store, world.org.id
    newbie = s.accounts.create(email="newbie@x.io")

    def busy(self: AclSync, org_id: str, account_ids: object) -> None:
        raise alk.BusyError("the tenant file is busy")

    with monkeypatch.context() as patch:
        patch.setattr(AclSync, "apply", busy)
        s.organizations.add_member(org, newbie.id, "admin")  # committed, no error
    assert memberships(s, org)[newbie.id] == "admin"
    assert newbie.id not in role_edges(s, org) and s.acl.pending() == 1
    assert s.acl.run_pending() == 1
    assert _converged(s, org)
