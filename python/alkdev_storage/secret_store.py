"""Secrets as nodes (SPEC §7; docs/secrets.md): ``tenant.secrets``.

Each secret is a node of the system node type ``secret`` in the tenant's
one graph of type ``secrets``. Its attributes are the encrypted blob of
`alkdev_storage.secrets` (``keyVersion``, ``salt``, ``iv``, ``data``) and
the derivation's name and cost; the plaintext and the password are never
stored, logged or published.

>>> import alkdev_storage as alk, tempfile
>>> store = alk.Storage.open(tempfile.mkdtemp())
>>> ada = store.accounts.create(email="ada@example.com")
>>> acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
>>> with store.tenant(acme.id) as t:
...     info = t.secrets.put("stripe", b"sk_live_123", "pass phrase", key_version=1)
...     t.secrets.get("stripe", "pass phrase")
...     t.secrets.rotate("stripe", "pass phrase").key_version
b'sk_live_123'
2
>>> store.close()

Rights: the platform may do anything; an account needs ``secrets:read``
in the organization's ACL to `get`, and ``secrets:write`` to `put`,
`rotate` and `delete` (members hold the first, admins and owners both;
see docs/acl.md). Every change publishes ``secrets:changed`` (the key
and key version only) in its transaction.
"""

from __future__ import annotations

import builtins
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alkdev_storage import events, secrets
from alkdev_storage._checks import shown
from alkdev_storage._native import Transaction
from alkdev_storage.errors import InUseError, InvalidInputError, NotFoundError
from alkdev_storage.metagraph.specs import GraphConfig, GraphTypeSpec, NodeTypeSpec

if TYPE_CHECKING:
    from alkdev_storage._database import Database
    from alkdev_storage.acl import Acl
    from alkdev_storage.metagraph.graphs import Graph, Graphs

__all__ = ["SECRETS_GRAPH_TYPE", "SecretInfo", "Secrets"]

#: The largest secret stored as a node (its blob is about 4/3 of it and
#: must fit in one node's attributes).
MAX_SECRET_BYTES = 64 << 10
MAX_KEY_LENGTH = 255
KDF = "PBKDF2-HMAC-SHA256"
CIPHER = "AES-256-GCM"

_B64 = {"type": "string", "pattern": "^[A-Za-z0-9+/]*={0,2}$"}

SECRETS_GRAPH_TYPE = GraphTypeSpec(
    name="secrets",
    scope="system",
    version=1,
    description="Encrypted secrets (tenant.secrets)",
    config=GraphConfig(type="directed", multi=False, allow_self_loops=False),
    node_types={
        "secret": NodeTypeSpec(
            schema={
                "type": "object",
                "required": ["keyVersion", "salt", "iv", "data", "kdf", "iterations", "cipher"],
                "properties": {
                    "keyVersion": {"enum": sorted(secrets.ITERATIONS)},
                    "salt": {**_B64, "minLength": 24, "maxLength": 24},
                    "iv": {**_B64, "minLength": 16, "maxLength": 16},
                    "data": {**_B64, "maxLength": 4 * (MAX_SECRET_BYTES + 16) // 3 + 4},
                    "kdf": {"const": KDF},
                    "iterations": {"enum": sorted(secrets.ITERATIONS.values())},
                    "cipher": {"const": CIPHER},
                },
                "additionalProperties": False,
            },
            description="An encrypted secret: only its key version and derivation are plain",
        )
    },
)

_GRAPH_SQL = (
    "SELECT g.id FROM graphs g JOIN graph_types t ON t.id = g.graph_type_id "
    "WHERE t.name = 'secrets' ORDER BY g.created_at, g.rowid LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A stored secret without its contents."""

    key: str
    key_version: int
    iterations: int
    updated_at: int


def _key(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"a secret key must be a non-empty str, not {shown(value)}")
    if len(value) > MAX_KEY_LENGTH or "\x00" in value:
        raise InvalidInputError(
            f"secret key {shown(value)} must be at most {MAX_KEY_LENGTH} characters, no NUL"
        )
    return value


def _attributes(sealed: secrets.EncryptedData) -> dict[str, Any]:
    return {
        **sealed.to_dict(),
        "kdf": KDF,
        "iterations": secrets.ITERATIONS[sealed.key_version],
        "cipher": CIPHER,
    }


def _blob(attrs: dict[str, Any]) -> dict[str, Any]:
    """The encrypted blob among a node's attributes."""
    return {k: attrs.get(k) for k in ("keyVersion", "salt", "iv", "data")}


class Secrets:
    """``tenant.secrets``: put, get, rotate and delete encrypted secrets.
    Encryption runs before the write transaction (PBKDF2 is deliberately
    slow), so no writer is held while a key is derived."""

    def __init__(self, db: Database, graphs: Graphs, acl: Acl, *, org_id: str) -> None:
        self._db = db
        self._graphs = graphs
        self._acl = acl
        self.org_id = org_id

    def __repr__(self) -> str:
        return f"<Secrets of {self.org_id}>"

    def _authorize(self, scope: str, operation: str) -> None:
        from alkdev_storage.acl import require

        actor = self._graphs.graph_types.authorize(operation)
        require(self._acl, actor, scope, operation)

    def _graph_id(self) -> str | None:
        row = self._db.query_one(_GRAPH_SQL)
        return None if row is None else str(row[0])

    def _row(self, key: str) -> tuple[dict[str, Any], int] | None:
        gid = self._graph_id()
        row = (
            None
            if gid is None
            else self._db.query_one(
                "SELECT attributes, updated_at FROM nodes WHERE graph_id = ? AND key = ?",
                (gid, key),
            )
        )
        return None if row is None else (json.loads(row[0]), int(row[1]))

    @contextlib.contextmanager
    def _writing(self, tx: Transaction | None) -> Iterator[tuple[Transaction, Graph]]:
        with contextlib.ExitStack() as stack:
            if tx is None:
                t = stack.enter_context(self._db.transaction())
            else:
                stack.enter_context(tx.savepoint())
                t = tx
            row = t.query_one(_GRAPH_SQL)
            if row is None:
                graph = self._graphs.create(type="secrets", name="secrets", status="active", tx=t)
            else:
                graph = self._graphs.get(str(row[0]))
            yield t, graph

    def _publish(
        self, t: Transaction, graph: Graph, key: str, action: str, version: int | None
    ) -> None:
        events.publish(
            self._db,
            t,
            "secrets:changed",
            key,
            action=action,
            actor=self._graphs.actor.account_id,
            data={"key": key, "keyVersion": version},
            org_id=self.org_id,
            graph_id=graph.id,
            key=key,
        )

    def put(
        self,
        key: str,
        plaintext: str | bytes,
        password: str | bytes,
        *,
        key_version: int = secrets.CURRENT_KEY_VERSION,
        tx: Transaction | None = None,
    ) -> SecretInfo:
        """Encrypt `plaintext` under `password` and store it as `key`
        (replacing a secret of that key). Plaintexts up to
        `MAX_SECRET_BYTES`."""
        name = _key(key)
        raw = plaintext.encode() if isinstance(plaintext, str) else plaintext
        if isinstance(raw, bytes | bytearray) and len(raw) > MAX_SECRET_BYTES:
            raise InvalidInputError(
                f"a stored secret is at most {MAX_SECRET_BYTES} bytes; this one is {len(raw)}"
            )
        self._authorize("secrets:write", "secrets.put")
        attrs = _attributes(secrets.encrypt(plaintext, password, key_version=key_version))
        with self._writing(tx) as (t, graph):
            exists = t.query_one(
                "SELECT 1 FROM nodes WHERE graph_id = ? AND key = ?", (graph.id, name)
            )
            if exists:
                node = graph.update_node(name, attributes=attrs, tx=t)
            else:
                node = graph.add_node(name, type="secret", attributes=attrs, tx=t)
            self._publish(t, graph, name, "put", attrs["keyVersion"])
        return SecretInfo(name, attrs["keyVersion"], attrs["iterations"], node.updated_at)

    def get(self, key: str, password: str | bytes) -> bytes:
        """The plaintext of `key`; `DecryptionError` for a wrong password or
        a changed blob, `NotFoundError` if there is no such secret."""
        name = _key(key)
        self._authorize("secrets:read", "secrets.get")
        found = self._row(name)
        if found is None:
            raise NotFoundError(f"no secret {shown(name)} in organization {shown(self.org_id)}")
        return secrets.decrypt(_blob(found[0]), password)

    def info(self, key: str) -> SecretInfo:
        name = _key(key)
        found = self._row(name)
        if found is None:
            raise NotFoundError(f"no secret {shown(name)} in organization {shown(self.org_id)}")
        attrs, updated = found
        return SecretInfo(name, attrs["keyVersion"], attrs["iterations"], updated)

    def list(self) -> builtins.list[SecretInfo]:
        gid = self._graph_id()
        if gid is None:
            return []
        rows = self._db.query(
            "SELECT key, attributes, updated_at FROM nodes WHERE graph_id = ? ORDER BY key", (gid,)
        )
        out = []
        for key, text, updated in rows:
            attrs = json.loads(text)
            out.append(SecretInfo(key, attrs["keyVersion"], attrs["iterations"], updated))
        return out

    def rotate(
        self,
        key: str,
        password: str | bytes,
        *,
        new_password: str | bytes | None = None,
        key_version: int = secrets.CURRENT_KEY_VERSION,
        tx: Transaction | None = None,
    ) -> SecretInfo:
        """Re-encrypt `key` under `key_version` (by default the current one:
        version 1 secrets move to 2) with a fresh salt and IV, and under
        `new_password` if given. `DecryptionError` (nothing written) if
        `password` is wrong; `InUseError` if the secret changed meanwhile."""
        name = _key(key)
        self._authorize("secrets:write", "secrets.rotate")
        found = self._row(name)
        if found is None:
            raise NotFoundError(f"no secret {shown(name)} in organization {shown(self.org_id)}")
        old, _ = found
        plaintext = secrets.decrypt(_blob(old), password)
        sealed = secrets.encrypt(
            plaintext, password if new_password is None else new_password, key_version=key_version
        )
        attrs = _attributes(sealed)
        with self._writing(tx) as (t, graph):
            now = t.query_one(
                "SELECT attributes FROM nodes WHERE graph_id = ? AND key = ?", (graph.id, name)
            )
            if now is None or json.loads(now[0]) != old:
                raise InUseError(
                    f"secret {shown(name)} changed while it was being rotated; nothing written"
                )
            node = graph.update_node(name, attributes=attrs, tx=t)
            self._publish(t, graph, name, "rotated", attrs["keyVersion"])
        return SecretInfo(name, attrs["keyVersion"], attrs["iterations"], node.updated_at)

    def delete(self, key: str, *, tx: Transaction | None = None) -> None:
        name = _key(key)
        self._authorize("secrets:write", "secrets.delete")
        with self._writing(tx) as (t, graph):
            graph.remove_node(name, tx=t)
            self._publish(t, graph, name, "deleted", None)
