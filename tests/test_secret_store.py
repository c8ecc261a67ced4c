"""`tenant.secrets` (docs/secrets.md): encrypted secrets as nodes, used the
way a service uses them: from several threads, inside its transactions,
by members with fewer rights, with a blob changed on disk, and with a
blob written by another implementation."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_secrets import IV, KNOWN, PASSWORD, PLAINTEXT, SALT

import alkdev_storage as alk
from alkdev_storage import secret_store


class World:
    def __init__(self, root: Path) -> None:
        self.store = alk.Storage.open(root)
        s = self.store
        self.owner = s.accounts.create(email="owner@x.io")
        self.member = s.accounts.create(email="member@x.io")
        self.org = s.organizations.create(name="Acme", slug="acme", owner_id=self.owner.id)
        s.organizations.add_member(self.org.id, self.member.id)

    def tenant(self) -> alk.Tenant:
        return self.store.tenant(self.org.id)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "root")
    yield w
    w.store.close()


def node_attributes(t: alk.Tenant, key: str) -> dict[str, object]:
    row = t.db.query_one(
        "SELECT n.attributes FROM nodes n JOIN graphs g ON g.id = n.graph_id "
        "JOIN graph_types gt ON gt.id = g.graph_type_id WHERE gt.name = 'secrets' AND n.key = ?",
        (key,),
    )
    assert row is not None
    attrs: dict[str, object] = json.loads(row[0])
    return attrs


def test_put_get_rotate_and_what_is_stored(world: World) -> None:
    with world.tenant() as t:
        info = t.secrets.put("stripe", PLAINTEXT, PASSWORD, key_version=1)
        assert (info.key_version, info.iterations) == (1, 100_000)
        stored = node_attributes(t, "stripe")
        assert set(stored) == {"keyVersion", "salt", "iv", "data", "kdf", "iterations", "cipher"}
        assert PLAINTEXT not in json.dumps(stored).encode() and PASSWORD not in json.dumps(stored)
        assert t.secrets.get("stripe", PASSWORD) == PLAINTEXT
        rotated = t.secrets.rotate("stripe", PASSWORD, new_password="new one")
        assert (rotated.key_version, rotated.iterations) == (2, 200_000)
        after = node_attributes(t, "stripe")
        assert after["salt"] != stored["salt"] and after["iv"] != stored["iv"]
        assert t.secrets.get("stripe", "new one") == PLAINTEXT
        with pytest.raises(alk.DecryptionError):
            t.secrets.get("stripe", PASSWORD)
        assert [s.key for s in t.secrets.list()] == ["stripe"]
        t.secrets.delete("stripe")
        with pytest.raises(alk.NotFoundError):
            t.secrets.get("stripe", "new one")


def test_a_blob_from_another_implementation_decrypts(world: World) -> None:
    """The known answer computed with `cryptography` (tests/test_secrets.py),
    written into the node as a migration from the reference system would."""
    with world.tenant() as t:
        t.secrets.put("legacy", b"placeholder", PASSWORD, key_version=1)
        stored = {**node_attributes(t, "legacy"), "salt": SALT, "iv": IV, "data": KNOWN[1]}
        t.db.execute("UPDATE nodes SET attributes = ? WHERE key = 'legacy'", (json.dumps(stored),))
        assert t.secrets.get("legacy", PASSWORD) == PLAINTEXT
        assert t.secrets.rotate("legacy", PASSWORD).key_version == 2
        assert t.secrets.get("legacy", PASSWORD) == PLAINTEXT


def test_a_changed_blob_is_refused_not_garbage(world: World) -> None:
    with world.tenant() as t:
        t.secrets.put("k", b"value", PASSWORD)
        stored = node_attributes(t, "k")
        data = str(stored["data"])
        flipped = {**stored, "data": ("A" if data[0] != "A" else "B") + data[1:]}
        t.db.execute("UPDATE nodes SET attributes = ? WHERE key = 'k'", (json.dumps(flipped),))
        with pytest.raises(alk.DecryptionError):
            t.secrets.get("k", PASSWORD)
        with pytest.raises(alk.DecryptionError):  # rotate writes nothing
            t.secrets.rotate("k", PASSWORD)
        assert node_attributes(t, "k") == flipped


def test_in_a_transaction_that_rolls_back_nothing_is_written(world: World) -> None:
    with world.tenant() as t:
        offset = t.db.query_one("SELECT coalesce(max(offset), 0) FROM _honker_stream")[0]
        with t.transaction() as tx:
            t.secrets.put("k", b"v", PASSWORD, tx=tx)
            tx.rollback()
        assert t.secrets.list() == []
        assert t.db.query_one("SELECT coalesce(max(offset), 0) FROM _honker_stream")[0] == offset
        t.secrets.put("k", b"v", PASSWORD)
        (payload,) = t.db.query_one(
            "SELECT payload FROM _honker_stream WHERE topic = 'secrets:changed' AND offset > ?",
            (offset,),
        )
        event = json.loads(payload)
        assert event["data"] == {"key": "k", "keyVersion": 2}


def test_members_read_admins_write_and_the_graph_api_is_refused(world: World) -> None:
    with world.tenant() as t:
        t.secrets.put("k", b"v", PASSWORD)
    with world.store.as_account(world.member.id).tenant(world.org.id) as t:
        assert t.secrets.get("k", PASSWORD) == b"v"
        with pytest.raises(alk.AccessDeniedError, match="secrets:write"):
            t.secrets.put("k", b"mine", PASSWORD)
        with pytest.raises(alk.AccessDeniedError):
            t.secrets.delete("k")
        (graph,) = t.graphs.list(type="secrets")
        with pytest.raises(alk.ProtectedGraphError):
            graph.remove_node("k")
        assert t.secrets.get("k", PASSWORD) == b"v"
    owner_acl = world.store.as_account(world.owner.id).tenant(world.org.id).acl
    owner_acl.set_scopes("role:member", ["graphs:read", "graphs:write"])  # no secrets:read
    with world.store.as_account(world.member.id).tenant(world.org.id) as t:
        with pytest.raises(alk.AccessDeniedError, match="secrets:read"):
            t.secrets.get("k", PASSWORD)


def test_bounds_refuse_and_write_nothing(world: World) -> None:
    with world.tenant() as t:
        with pytest.raises(alk.InvalidInputError, match="at most"):
            t.secrets.put("big", b"x" * (secret_store.MAX_SECRET_BYTES + 1), PASSWORD)
        with pytest.raises(alk.InvalidInputError):
            t.secrets.put("k" * 300, b"x", PASSWORD)
        with pytest.raises(alk.InvalidInputError):
            t.secrets.put("k", b"x", "")
        with pytest.raises(alk.InvalidInputError):
            t.secrets.put("k", b"x", PASSWORD, key_version=3)
        assert t.secrets.list() == []


def test_a_secret_changed_during_rotation_is_not_overwritten(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with world.tenant() as t:
        t.secrets.put("k", b"old", PASSWORD)
        real = alk.secrets.encrypt
        other = world.tenant().secrets

        def encrypt_while_someone_writes(*args: object, **kwargs: object) -> object:
            monkeypatch.setattr(alk.secrets, "encrypt", real)
            other.put("k", b"newer", PASSWORD)  # lands while rotate derives its key
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(alk.secrets, "encrypt", encrypt_while_someone_writes)
        with pytest.raises(alk.InUseError, match="changed while"):
            t.secrets.rotate("k", PASSWORD)
        assert t.secrets.get("k", PASSWORD) == b"newer"


def test_threads_put_and_get_their_own_secrets(world: World) -> None:
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            secrets = world.store.tenant(world.org.id).secrets  # a handle per request
            secrets.put(f"k{i}", f"value {i}".encode(), f"pw {i}", key_version=1)
            assert secrets.get(f"k{i}", f"pw {i}") == f"value {i}".encode()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert errors == []
    with world.tenant() as t:
        assert len(t.secrets.list()) == 8
        assert len(t.graphs.list(type="secrets")) == 1  # one graph, however many raced for it
