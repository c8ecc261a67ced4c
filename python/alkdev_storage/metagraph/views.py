"""Who is acting: the platform (``store.tenant(org_id)``, every right) or an
account (``store.as_account(id).tenant(org_id)``, held to the scope and
membership rules of SPEC §5).

>>> import alkdev_storage as alk, tempfile
>>> from alkdev_storage.metagraph import GraphTypeSpec, NodeTypeSpec
>>> store = alk.Storage.open(tempfile.mkdtemp())
>>> ada = store.accounts.create(email="ada@x.io")
>>> bob = store.accounts.create(email="bob@x.io")
>>> acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
>>> _ = store.organizations.add_member(acme.id, bob.id)
>>> notes = GraphTypeSpec(name="notes", scope="tenant", node_types={"note": NodeTypeSpec()})
>>> with store.as_account(bob.id).tenant(acme.id) as t:  # doctest: +ELLIPSIS
...     t.graph_types.register(notes)
Traceback (most recent call last):
  ...
alkdev_storage.errors.NotTenantAdminError: only the organization's owners and admins may ...
>>> with store.as_account(ada.id).tenant(acme.id) as t:
...     t.graph_types.register(notes).version
1
>>> store.close()
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alkdev_storage._closing import Closing
from alkdev_storage._database import Database
from alkdev_storage._native import Transaction
from alkdev_storage.errors import NotAMemberError
from alkdev_storage.identity import Account, audit
from alkdev_storage.metagraph.types import SYSTEM, Actor, GraphTypes
from alkdev_storage.tenants import Lease

if TYPE_CHECKING:
    from alkdev_storage.metagraph.graphs import Graphs
    from alkdev_storage.storage import Storage


class Tenant(Closing):
    """An organization's tenant file, as one actor sees it.

    It holds a lease on the file (so the registry never closes it under
    you) until `close()`; use it in a ``with`` block. A tenant dropped
    without `close()` gives its lease back as soon as nothing uses it any
    more: the lease is shared with its `graph_types`, its `graphs` and the
    `Graph` objects read through them (a `Graph` kept for later keeps the
    file open), and none of them refers back to the tenant, so
    ``store.tenant(org_id).graphs.list()`` leases the file only while its
    result is in use.
    """

    def __init__(self, store: Storage, org_id: str, actor: Actor = SYSTEM) -> None:
        self._store = store
        self.org_id = org_id
        self.actor = actor
        self.path: Path = store.tenants.path_for(org_id)
        self._lease = store.tenants.lease(org_id)
        try:
            store._ensure_seeded(self._lease.db)
        except BaseException:
            self._lease.close()
            raise
        self.graph_types = GraphTypes(
            self._lease.db,
            actor,
            system_names=store._system_type_names,
            audit=functools.partial(_audit_refusal, store.system, actor, org_id),
            lease=self._lease,
        )

    @property
    def db(self) -> Database:
        """The tenant file's database, leased while this tenant is open.
        Keep the tenant while you use it (``with store.tenant(org_id) as t:
        t.db.query(...)``): the database alone, as in
        ``store.tenant(org_id).db.query(...)``, holds no lease, so under load
        the registry may close it to make room (as with
        `TenantRegistry.get`)."""
        return self._lease.db

    def lease(self) -> Lease:
        """Another lease on the file, for code that outlives this object."""
        return self._store.tenants.lease(self.org_id)

    @property
    def graphs(self) -> Graphs:
        from alkdev_storage.metagraph.graphs import Graphs

        return Graphs(self._lease.db, self.graph_types, self.actor, org_id=self.org_id)

    def transaction(self) -> Transaction:
        """A write transaction on the tenant file: graph writes, enqueue and
        publish given ``tx=`` commit or roll back together. It keeps the
        file leased until it is freed, so ``with store.tenant(org_id)
        .transaction() as tx:`` is safe even though the tenant is dropped."""
        tx = self._lease.db.transaction()
        weakref.finalize(tx, _nothing, self._lease)  # holds the lease as long as `tx`
        return tx

    def close(self) -> None:
        """Give the lease on the file back (objects still using it keep
        working until the registry closes the file). Idempotent."""
        self._lease.close()

    def __repr__(self) -> str:
        who = "platform" if self.actor.privileged else self.actor.account_id
        return f"<Tenant {self.org_id} as {who}>"


def _nothing(*_: object) -> None:
    """A finalizer whose arguments are what it keeps alive."""


def _audit_refusal(
    system: Database,
    actor: Actor,
    org_id: str,
    action: str,
    message: str,
    details: Mapping[str, Any],
) -> None:
    """A tenant's audit hook: the refusal, in ``system.db``'s audit log."""
    with system.transaction() as tx:
        audit(
            tx,
            action,
            owner_id=actor.account_id,
            org_id=org_id,
            details={**details, "message": message},
        )


class AccountView:
    """The storage as one account sees it (``store.as_account(id)``)."""

    def __init__(self, store: Storage, account: Account) -> None:
        self._store = store
        self.account = account

    def tenant(self, org_id: str) -> Tenant:
        """The organization's tenant file; `NotAMemberError` (audited) unless
        the account is a member."""
        store = self._store
        store.tenants.validate(org_id)
        row = store.system.query_one(
            "SELECT membership_level FROM organization_members WHERE org_id = ? AND account_id = ?",
            (org_id, self.account.id),
        )
        if row is None:
            error = NotAMemberError(f"account {self.account.id!r} is not a member of {org_id!r}")
            with store.system.transaction() as tx:
                org = tx.query_one("SELECT 1 FROM organizations WHERE id = ?", (org_id,))
                audit(
                    tx,
                    "scope.violation",
                    owner_id=self.account.id,
                    org_id=org_id if org is not None else None,
                    details={"rule": "NotAMemberError", "org_id": org_id},
                )
            raise error
        return Tenant(store, org_id, Actor(self.account.id, str(row[0])))

    def __repr__(self) -> str:
        return f"<AccountView {self.account.email}>"
