"""Identity in system.db: accounts, organizations and their tenant files,
memberships, API keys, peer credentials, audit rows and change events."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import alkdev_storage as alk
from alkdev_storage import identity


@pytest.fixture
def store(tmp_path: Path) -> Iterator[alk.Storage]:
    s = alk.Storage.open(tmp_path / "root")
    yield s
    s.close()


def _events(store: alk.Storage) -> list[tuple[str, dict[str, Any]]]:
    """system.db's events, but for the built-in system graph types'
    registration when the root was first opened."""
    rows = store.system.query("SELECT topic, payload FROM _honker_stream ORDER BY offset")
    events = [(topic, json.loads(payload)) for topic, payload in rows]
    return [
        (topic, event)
        for topic, event in events
        if not (topic == "graph_types:created" and event["data"]["name"] in ("acl", "secrets"))
    ]


def _topics(store: alk.Storage) -> list[str]:
    return [topic for topic, _ in _events(store)]


def _count(store: alk.Storage, table: str) -> int:
    row = store.system.query_one(f"SELECT count(*) FROM {table}")
    assert row is not None
    return int(row[0])


# --------------------------------------------------------------- accounts


def test_accounts_crud_with_normalised_email(store: alk.Storage) -> None:
    ada = store.accounts.create(email="  Ada@Example.COM ", display_name="Ada")
    assert ada.email == "ada@example.com" and ada.status == "active"
    assert store.accounts.by_email("ADA@example.com") == ada
    with pytest.raises(alk.AlreadyExistsError, match=r"ada@example\.com"):
        store.accounts.create(email="ada@example.com")
    time.sleep(1.01)  # updated_at has second resolution
    renamed = store.accounts.update(ada.id, display_name="Ada L.", status="suspended")
    assert renamed.display_name == "Ada L." and renamed.updated_at > ada.updated_at
    assert [a.id for a in store.accounts.list(status="suspended")] == [ada.id]
    store.accounts.delete(ada.id)
    with pytest.raises(alk.AccountNotFoundError):
        store.accounts.get(ada.id)
    assert _topics(store) == ["accounts:created", "accounts:updated", "accounts:deleted"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"email": "not-an-email"},
        {"email": ""},
        {"email": "a@b.c", "access_level": "root"},
        {"email": "a@b.c", "status": "gone"},
        {"email": "a@b.c", "metadata": [1]},
    ],
)
def test_bad_account_input_writes_nothing(store: alk.Storage, kwargs: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        store.accounts.create(**kwargs)
    assert _count(store, "accounts") == 0 and _topics(store) == []


def test_an_account_with_history_cannot_be_deleted(store: alk.Storage) -> None:
    ada = store.accounts.create(email="ada@x.io")
    store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
    with pytest.raises(alk.InUseError, match="deactivate"):
        store.accounts.delete(ada.id)
    assert store.accounts.get(ada.id).id == ada.id


# ------------------------------------------------------------ organizations


def test_creating_an_organization_creates_its_file_and_owner(store: alk.Storage) -> None:
    ada = store.accounts.create(email="ada@x.io")
    bob = store.accounts.create(email="bob@x.io")
    acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
    assert store.tenants.exists(acme.id)
    assert store.tenant(acme.id).db.query_one("PRAGMA user_version") == (1,)
    store.organizations.add_member(acme.id, bob.id)
    with pytest.raises(alk.AlreadyExistsError):
        store.organizations.add_member(acme.id, bob.id)
    assert store.organizations.update_member(acme.id, bob.id, "admin").membership_level == "admin"
    assert {m.account_id: m.membership_level for m in store.organizations.members(acme.id)} == {
        ada.id: "owner",
        bob.id: "admin",
    }
    assert [m.org_id for m in store.organizations.memberships_of(bob.id)] == [acme.id]
    with pytest.raises(alk.InUseError):
        store.organizations.remove_member(acme.id, ada.id)
    store.organizations.remove_member(acme.id, bob.id)
    with pytest.raises(alk.MembershipNotFoundError):
        store.organizations.membership(acme.id, bob.id)
    assert store.organizations.by_slug("acme") == acme
    with pytest.raises(alk.AlreadyExistsError, match="slug"):
        store.organizations.create(name="Other", slug="acme", owner_id=ada.id)
    assert len(store.tenants.ids()) == 1  # the failed create left no file


INJECTED = {
    # step -> the table whose INSERT fails (a TEMP trigger on the writer)
    "org-insert": "organizations",
    "owner-membership": "organization_members",
    "audit": "audit_logs",
    "event": "_honker_stream",
}


@pytest.mark.parametrize("step", ["tenant-create", *INJECTED])
def test_organization_creation_is_all_or_nothing(
    store: alk.Storage, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    ada = store.accounts.create(email="ada@x.io")
    before = (_count(store, "organizations"), _count(store, "organization_members"))
    topics_before = _topics(store)
    if step == "tenant-create":

        def fail(org_id: str) -> None:
            raise OSError("disk full (injected)")

        monkeypatch.setattr(store.tenants, "create", fail)
        expected: type[Exception] = OSError
    else:
        store.system.execute(
            f"CREATE TEMP TRIGGER inject BEFORE INSERT ON main.{INJECTED[step]} "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
        expected = alk.IntegrityError
    with pytest.raises(expected, match=r"injected|disk full"):
        store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
    store.system.execute("DROP TRIGGER IF EXISTS temp.inject")
    monkeypatch.undo()
    assert (_count(store, "organizations"), _count(store, "organization_members")) == before
    assert _topics(store) == topics_before
    assert store.tenants.ids() == []
    assert list((store.root / "tenants").glob("tenant-*")) == []
    # And the storage still works afterwards.
    acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
    assert store.tenants.ids() == [acme.id]


def test_deleting_an_organization_archives_its_file_and_purge_deletes_it(
    store: alk.Storage,
) -> None:
    ada = store.accounts.create(email="ada@x.io")
    acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
    with store.tenant(acme.id) as tenant:
        tenant.db.execute("INSERT INTO graphs (id, name) VALUES ('g', 'keep me')")
    store.organizations.delete(acme.id, actor_id=ada.id)
    with pytest.raises(alk.OrganizationNotFoundError):
        store.organizations.get(acme.id)
    assert not store.tenants.exists(acme.id)
    (archived,) = store.tenants.archived(acme.id)
    assert archived.name.startswith(f"tenant-{acme.id}.")
    kept = alk.connect(archived)
    assert kept.query("SELECT name FROM graphs ORDER BY rowid") == [("acl",), ("keep me",)]
    kept.close()
    assert _count(store, "organization_members") == 0
    assert store.purge(acme.id) == 1
    assert store.tenants.archived(acme.id) == []


def test_old_orphan_tenant_files_are_archived_on_open(tmp_path: Path) -> None:
    with alk.Storage.open(tmp_path / "root") as store:
        store.tenants.create("orphan")  # as if the process died before the org row
        store.tenants.create("in-flight")  # a create still running elsewhere
        orphan = store.tenants.path_for("orphan")
    old = time.time() - alk.storage.ORPHAN_GRACE_S - 1
    os.utime(orphan, (old, old))
    with alk.Storage.open(tmp_path / "root") as store:
        assert store.tenants.ids() == ["in-flight"]
        assert len(store.tenants.archived("orphan")) == 1


def test_hostile_org_ids_never_become_paths(store: alk.Storage) -> None:
    ada = store.accounts.create(email="ada@x.io")
    for hostile in ["../x", "a/b", "..", ""]:
        with pytest.raises(alk.InvalidTenantIdError):
            store.tenant(hostile)
        with pytest.raises(alk.InvalidTenantIdError):
            store.organizations.create(name=f"n{hostile}", slug="s", owner_id=ada.id, id=hostile)
    assert _count(store, "organizations") == 0


# ---------------------------------------------------------------- API keys


def test_api_keys_store_only_the_hash(store: alk.Storage) -> None:
    ada = store.accounts.create(email="ada@x.io")
    key = store.api_keys.create(owner_id=ada.id, name="ci", scopes=["write", "read"])
    assert key.plaintext is not None and key.plaintext.startswith("alk_")
    assert "plaintext" not in repr(key) and key.plaintext not in repr(key)
    store.system.checkpoint("TRUNCATE")
    blob = b"".join(p.read_bytes() for p in (store.root).glob("system.db*"))
    assert key.plaintext.encode() not in blob
    assert identity.hash_key(key.plaintext).encode() in blob
    assert store.api_keys.get(key.id).plaintext is None
    for topic, payload in _events(store):
        assert key.plaintext not in json.dumps(payload), topic


def test_verify_accepts_a_good_key_and_refuses_each_bad_one_distinctly(
    store: alk.Storage,
) -> None:
    ada = store.accounts.create(email="ada@x.io")
    good = store.api_keys.create(owner_id=ada.id, scopes=["read"])
    who = store.api_keys.verify(good.plaintext or "")
    assert who.account.id == ada.id and who.scopes == ("read",)
    assert who.key.last_used_at is not None
    assert store.api_keys.get(good.id).last_used_at == who.key.last_used_at

    disabled = store.api_keys.create(owner_id=ada.id)
    store.api_keys.set_enabled(disabled.id, False)
    expired = store.api_keys.create(owner_id=ada.id, expires_at=int(time.time()) - 1)
    revoked = store.api_keys.create(owner_id=ada.id)
    store.api_keys.revoke(revoked.id)
    rotated = store.api_keys.create(owner_id=ada.id, name="old", scopes=["x"])
    successor = store.api_keys.rotate(rotated.id)
    cases = [
        ("alk_nonsense", alk.UnknownKeyError),
        (disabled.plaintext, alk.KeyDisabledError),
        (expired.plaintext, alk.KeyExpiredError),
        (revoked.plaintext, alk.KeyRevokedError),
        (rotated.plaintext, alk.KeyRotatedError),
    ]
    for plaintext, error in cases:
        with pytest.raises(error):
            store.api_keys.verify(plaintext or "")
    assert store.api_keys.verify(successor.plaintext or "").scopes == ("x",)
    assert successor.name == "old" and store.api_keys.get(rotated.id).rotated_to_id == successor.id
    store.accounts.update(ada.id, status="suspended")
    with pytest.raises(alk.AccountInactiveError, match="suspended"):
        store.api_keys.verify(good.plaintext or "")
    failures = store.audit.list(action="api_key.verify_failed")
    assert len(failures) == 6
    reasons = sorted(entry.details["reason"] for entry in failures)
    assert reasons == sorted(
        [
            "UnknownKeyError",
            "KeyDisabledError",
            "KeyExpiredError",
            "KeyRevokedError",
            "KeyRotatedError",
            "AccountInactiveError",
        ]
    )


def test_verify_publishes_api_keys_used_when_last_used_at_changes(
    store: alk.Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPEC §6: every change of a key row has its event, the bookkeeping of
    `last_used_at` included; it is kept in whole seconds, so a burst of
    verifications within one second writes (and publishes) once."""
    ada = store.accounts.create(email="ada@x.io")
    key = store.api_keys.create(owner_id=ada.id, scopes=["read"])
    clock = [1_900_000_000]
    monkeypatch.setattr(identity, "_now", lambda: clock[0])
    before = len(_topics(store))
    for _ in range(5):
        store.api_keys.verify(key.plaintext or "")
    used = _events(store)[before:]
    assert [t for t, _ in used] == ["api_keys:used"]
    payload = used[0][1]
    assert payload["action"] == "used" and payload["entity_id"] == key.id
    assert payload["actor"] == ada.id and payload["data"]["last_used_at"] == clock[0]
    assert "key_hash" not in payload["data"] and (key.plaintext or "") not in json.dumps(payload)
    clock[0] += 1
    assert store.api_keys.verify(key.plaintext or "").key.last_used_at == clock[0]
    assert _topics(store)[before:] == ["api_keys:used", "api_keys:used"]
    # A refusal changes no key row: audited, no stream event.
    store.api_keys.revoke(key.id)
    n = len(_topics(store))
    with pytest.raises(alk.KeyRevokedError):
        store.api_keys.verify(key.plaintext or "")
    assert len(_topics(store)) == n
    # Every event of the stream matches a key row's state: the last
    # `api_keys:used` carries the last_used_at that is stored.
    last = [p for t, p in _events(store) if t == "api_keys:used"][-1]
    assert last["data"]["last_used_at"] == store.api_keys.get(key.id).last_used_at


# ------------------------------------------------------- peer credentials


def test_peer_credentials_register_lookup_revoke(store: alk.Storage) -> None:
    from alkdev_storage import ssh

    ada = store.accounts.create(email="ada@x.io")
    key = ssh.parse_public_key(_some_key())
    cred = store.peer_credentials.register(owner_id=ada.id, public_key=_some_key(), scopes=["read"])
    assert cred.fingerprint == key.fingerprint and cred.scopes == ("read",)
    assert store.peer_credentials.lookup(key.fingerprint) == cred
    with pytest.raises(alk.AlreadyExistsError):
        store.peer_credentials.register(owner_id=ada.id, public_key=_some_key())
    with pytest.raises(alk.InvalidPublicKeyError):
        store.peer_credentials.register(owner_id=ada.id, public_key="ssh-ed25519 AAAA")
    revoked = store.peer_credentials.revoke(cred.id)
    assert revoked.revoked_at is not None
    with pytest.raises(alk.CredentialNotFoundError):
        store.peer_credentials.lookup("SHA256:nothing")
    actions = [e.action for e in store.audit.list(owner_id=ada.id)]
    assert actions.count("credential.register") == 1 and actions.count("credential.revoke") == 1


def test_peer_credentials_verify_refuses_each_bad_one_distinctly_and_audits(
    store: alk.Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = store.accounts.create(email="ada@x.io")
    cred = store.peer_credentials.register(owner_id=ada.id, public_key=_some_key(), scopes=["ssh"])
    who = store.peer_credentials.verify(cred.fingerprint)
    assert (who.account.id, who.credential.id, who.scopes) == (ada.id, cred.id, ("ssh",))
    writes = len(_topics(store))
    cases: list[tuple[Callable[[], object], type[Exception]]] = [
        (lambda: None, alk.UnknownCredentialError),  # an unknown fingerprint, below
        (lambda: store.peer_credentials.set_enabled(cred.id, False), alk.CredentialDisabledError),
        (lambda: store.system.execute(  # past its expiry (and enabled again)
            "UPDATE peer_credentials SET enabled = 1, expires_at = 1 WHERE id = ?", (cred.id,)
        ), alk.CredentialExpiredError),
        (lambda: (store.system.execute(
            "UPDATE peer_credentials SET expires_at = NULL WHERE id = ?", (cred.id,)),
            store.accounts.update(ada.id, status="suspended")), alk.AccountInactiveError),
        (lambda: store.peer_credentials.revoke(cred.id), alk.CredentialRevokedError),
    ]  # fmt: skip
    for change, error in cases:
        change()
        fingerprint = "SHA256:nobody" if error is alk.UnknownCredentialError else cred.fingerprint
        with pytest.raises(error):
            store.peer_credentials.verify(fingerprint)
        assert isinstance(error("x"), alk.AuthenticationError)
    assert store.peer_credentials.lookup(cred.fingerprint).revoked_at is not None  # a plain read
    failures = store.audit.list(action="credential.verify_failed")
    assert sorted(f.details["reason"] for f in failures) == sorted(e.__name__ for _, e in cases)
    assert all(f.details["count"] == 1 for f in failures)
    # set_enabled and revoke published their events; refusals published none.
    topics = _topics(store)[writes:]
    assert topics.count("peer_credentials:updated") == 1
    assert topics.count("peer_credentials:revoked") == 1


def test_a_flood_of_bad_keys_adds_one_audit_row_a_minute(
    store: alk.Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1_900_000_000]
    monkeypatch.setattr(identity, "_now", lambda: clock[0])
    size_before = _count(store, "audit_logs")
    for i in range(2_000):
        with pytest.raises(alk.UnknownKeyError):
            store.api_keys.verify(f"alk_garbage{i}")
        if i == 999:
            clock[0] += identity.AUDIT_FAILURE_WINDOW_S  # the next minute
    assert _count(store, "audit_logs") - size_before == 2
    rows = store.audit.list(action="api_key.verify_failed")
    assert sorted(r.details["count"] for r in rows) == [1000, 1000]
    assert all(len(r.details["samples"]) == identity.AUDIT_FAILURE_SAMPLES for r in rows)
    assert all(r.details["reason"] == "UnknownKeyError" for r in rows)


def _some_key() -> str:
    # A structurally valid ed25519 key: name + 32 key bytes.
    import base64
    import struct

    from alkdev_storage import ssh

    name = b"ssh-ed25519"
    blob = struct.pack(">I", len(name)) + name + struct.pack(">I", 32) + bytes(range(32))
    text = f"ssh-ed25519 {base64.b64encode(blob).decode()} ada@laptop"
    ssh.parse_public_key(text)
    return text


# ------------------------------------------------------- audit and events


def test_audit_rows_for_security_relevant_actions(store: alk.Storage) -> None:
    ada = store.accounts.create(email="ada@x.io")
    bob = store.accounts.create(email="bob@x.io")
    acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
    store.organizations.add_member(acme.id, bob.id, actor_id=ada.id)
    store.organizations.update_member(acme.id, bob.id, "admin", actor_id=ada.id)
    store.organizations.remove_member(acme.id, bob.id, actor_id=ada.id)
    key = store.api_keys.create(owner_id=ada.id)
    store.api_keys.rotate(key.id)
    store.api_keys.revoke(key.id)
    cred = store.peer_credentials.register(owner_id=ada.id, public_key=_some_key())
    store.peer_credentials.revoke(cred.id)
    store.organizations.delete(acme.id, actor_id=ada.id)
    actions = sorted(e.action for e in store.audit.list(limit=1000))
    assert actions == sorted(
        [
            "organization.create",
            "membership.add",  # the owner
            "membership.add",
            "membership.update",
            "membership.remove",
            "api_key.create",
            "api_key.create",  # the rotation's successor
            "api_key.rotate",
            "api_key.revoke",
            "credential.register",
            "credential.revoke",
            "organization.delete",
        ]
    )


def test_every_mutation_publishes_exactly_one_event_and_rollback_none(
    store: alk.Storage,
) -> None:
    ada = store.accounts.create(email="ada@x.io")
    bob = store.accounts.create(email="bob@x.io")
    store.accounts.update(bob.id, display_name="Bob")
    acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
    store.organizations.update(acme.id, name="Acme Inc")
    store.organizations.add_member(acme.id, bob.id)
    key = store.api_keys.create(owner_id=ada.id)
    store.api_keys.revoke(key.id)
    assert _topics(store) == [
        "accounts:created",
        "accounts:created",
        "accounts:updated",
        "organizations:created",
        "memberships:changed",
        "organizations:updated",
        "memberships:changed",
        "api_keys:created",
        "api_keys:revoked",
    ]
    created = _events(store)[3][1]
    assert created["v"] == 1 and created["entity_id"] == acme.id and created["actor"] == ada.id
    assert created["data"]["slug"] == "acme" and created["org_id"] == acme.id
    added = _events(store)[6][1]
    assert added["action"] == "added" and added["data"]["account_id"] == bob.id
    n = len(_topics(store))
    with pytest.raises(alk.AlreadyExistsError):
        store.accounts.create(email="ADA@x.io")
    with pytest.raises(alk.AccountNotFoundError):
        store.organizations.add_member(acme.id, "ghost")
    assert len(_topics(store)) == n
    for topic, payload in _events(store):
        assert payload["topic"] == topic and isinstance(payload["ts"], float)
