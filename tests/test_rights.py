"""Rights that change while a tenant handle is open: every write asks the
current membership and account status, refusals are audited and change
nothing, and a change made through another connection to system.db (as
another process would make it) is seen as soon as it commits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import alkdev_storage as alk
from alkdev_storage.metagraph import GraphTypeSpec, NodeTypeSpec

NOTES = GraphTypeSpec(name="notes", scope="tenant", node_types={"note": NodeTypeSpec()})
MINE = GraphTypeSpec(name="mine", scope="user", node_types={"note": NodeTypeSpec()})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[alk.Storage]:
    s = alk.Storage.open(tmp_path / "root")
    yield s
    s.close()


@pytest.fixture
def org(store: alk.Storage) -> tuple[str, str, str]:
    """(org id, owner id, admin id) with the tenant type registered."""
    ada = store.accounts.create(email="ada@x.io")
    bob = store.accounts.create(email="bob@x.io")
    acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
    store.organizations.add_member(acme.id, bob.id, level="admin")
    with store.tenant(acme.id) as t:
        t.graph_types.register(NOTES)
    return acme.id, ada.id, bob.id


def violations(store: alk.Storage, account_id: str) -> list[tuple[str, str]]:
    rows = store.audit.list(action="scope.violation", owner_id=account_id)
    return [(r.details["rule"], r.details.get("operation", "")) for r in rows]


def counts(store: alk.Storage, org_id: str) -> tuple[int, int, int]:
    with store.tenant(org_id) as t:
        row = t.db.query_one(
            "SELECT (SELECT count(*) FROM graph_types), (SELECT count(*) FROM graphs), "
            "(SELECT count(*) FROM nodes)"
        )
    assert row is not None
    return row


def test_a_demoted_admin_loses_admin_rights_on_an_open_handle(
    store: alk.Storage, org: tuple[str, str, str]
) -> None:
    org_id, _, bob = org
    t = store.as_account(bob).tenant(org_id)
    t.graph_types.register(GraphTypeSpec(name="wiki", scope="tenant"))  # an admin may
    store.organizations.update_member(org_id, bob, level="member")
    before = counts(store, org_id)
    with pytest.raises(alk.NotTenantAdminError):
        t.graph_types.register(GraphTypeSpec(name="wiki2", scope="tenant"))
    with pytest.raises(alk.NotTenantAdminError):
        t.graph_types.delete("wiki")
    assert counts(store, org_id) == before
    # What every member may do still works.
    graph = t.graphs.create(name="g", type="notes")
    graph.add_node("n", type="note")
    assert [rule for rule, _ in violations(store, bob)] == ["NotTenantAdminError"] * 2
    # Promoted again: the open handle sees it too.
    store.organizations.update_member(org_id, bob, level="admin")
    t.graph_types.register(GraphTypeSpec(name="wiki2", scope="tenant"))
    t.close()


def test_a_removed_member_can_write_nothing_through_old_objects(
    store: alk.Storage, org: tuple[str, str, str]
) -> None:
    org_id, _, bob = org
    t = store.as_account(bob).tenant(org_id)
    graph = t.graphs.create(name="g", type="notes")
    graph.add_node("a", type="note")
    graphs = t.graphs
    store.organizations.remove_member(org_id, bob)
    before = counts(store, org_id)
    attempts = [
        lambda: graph.add_node("b", type="note"),
        lambda: graph.update_node("a", attributes={"x": 1}),
        lambda: graph.remove_node("a"),
        lambda: graphs.create(name="g2", type="notes"),
        lambda: graphs.delete(graph.id),
        lambda: t.graph_types.register(MINE),
        lambda: graph.import_graph(
            {"nodes": [{"key": "c", "type": "note", "attributes": {}}], "edges": []}
        ),
    ]
    for attempt in attempts:
        with pytest.raises(alk.NotAMemberError):
            attempt()
    assert counts(store, org_id) == before
    audited = violations(store, bob)
    assert len(audited) == len(attempts) and {r for r, _ in audited} == {"NotAMemberError"}
    assert "add_node" in {op for _, op in audited}
    with pytest.raises(alk.NotAMemberError):  # and it cannot open a new handle
        store.as_account(bob).tenant(org_id)
    t.close()


def test_a_suspended_account_is_refused_at_open_and_on_every_write(
    store: alk.Storage, org: tuple[str, str, str]
) -> None:
    org_id, ada, _ = org
    t = store.as_account(ada).tenant(org_id)
    graph = t.graphs.create(name="g", type="notes")
    for status in ("suspended", "deactivated"):
        store.accounts.update(ada, status=status)
        with pytest.raises(alk.AccountInactiveError, match=status):
            graph.add_node(f"n-{status}", type="note")
        with pytest.raises(alk.AccountInactiveError):
            store.as_account(ada).tenant(org_id)
        assert isinstance(alk.AccountInactiveError(""), PermissionError)
    assert [rule for rule, _ in violations(store, ada)] == ["AccountInactiveError"] * 4
    store.accounts.update(ada, status="active")
    graph.add_node("back", type="note")
    assert [n.key for n in graph.nodes()] == ["back"]
    t.close()


def test_a_change_through_another_connection_is_seen_at_the_next_write(
    store: alk.Storage, org: tuple[str, str, str], tmp_path: Path
) -> None:
    """Another process's commit moves the counter in the file itself."""
    org_id, _, bob = org
    t = store.as_account(bob).tenant(org_id)
    graph = t.graphs.create(name="g", type="notes")
    with alk.Storage.open(tmp_path / "root") as other:  # its own connections to system.db
        other.organizations.remove_member(org_id, bob)
    with pytest.raises(alk.NotAMemberError):
        graph.add_node("x", type="note")
    t.close()


def test_writes_racing_a_removal_never_land_after_it_commits(
    store: alk.Storage, org: tuple[str, str, str]
) -> None:
    """Threads write through one member's handle while the member is removed:
    every write that returns did so before the removal committed (its node
    is there); after the removal, each is refused."""
    org_id, _, bob = org
    t = store.as_account(bob).tenant(org_id)
    graph = t.graphs.create(name="g", type="notes")
    removed = threading.Event()
    late: list[str] = []
    refused = 0
    lock = threading.Lock()

    def write(worker: int) -> None:
        nonlocal refused
        for i in range(200):
            was_removed = removed.is_set()
            try:
                graph.add_node(f"{worker}-{i}", type="note")
            except alk.NotAMemberError:
                with lock:
                    refused += 1
                continue
            if was_removed:
                late.append(f"{worker}-{i}")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    store.organizations.remove_member(org_id, bob)
    removed.set()
    for thread in threads:
        thread.join(60)
    assert not late, f"written after the removal committed: {late[:5]}"
    assert refused > 0
    t.close()


def test_a_deleted_account_is_refused_and_its_refusal_still_audited(
    store: alk.Storage, org: tuple[str, str, str]
) -> None:
    """The audit row cannot name an account that is gone (its foreign key
    would refuse the row); it is written without one."""
    org_id, _, _ = org
    carol = store.accounts.create(email="carol@x.io")
    store.organizations.add_member(org_id, carol.id)
    t = store.as_account(carol.id).tenant(org_id)
    graph = t.graphs.create(name="c", type="notes")
    store.organizations.remove_member(org_id, carol.id)
    store.accounts.delete(carol.id)
    with pytest.raises(alk.NotAMemberError, match="no longer exists"):
        graph.add_node("x", type="note")
    (row,) = [r for r in store.audit.list(action="scope.violation") if r.owner_id is None]
    assert row.details["rule"] == "NotAMemberError" and row.org_id == org_id
    t.close()
