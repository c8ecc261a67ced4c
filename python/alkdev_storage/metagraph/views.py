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

import dataclasses
import functools
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alkdev_storage._checks import shown
from alkdev_storage._closing import Closing
from alkdev_storage._database import Database
from alkdev_storage._native import Transaction
from alkdev_storage.errors import AccountInactiveError, NotAMemberError, NotTenantAdminError
from alkdev_storage.identity import Account, ApiKey, Membership, audit
from alkdev_storage.limits import DEFAULT_LIMITS, Limits
from alkdev_storage.metagraph.types import SYSTEM, Actor, GraphTypes
from alkdev_storage.tenants import Lease

if TYPE_CHECKING:
    from alkdev_storage.acl import Acl
    from alkdev_storage.metagraph.graphs import Graphs
    from alkdev_storage.secret_store import Secrets
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

    def __init__(
        self,
        store: Storage,
        org_id: str,
        actor: Actor = SYSTEM,
        *,
        rights: Callable[[str], Actor] | None = None,
    ) -> None:
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
            rights=rights,
            limits=store.limits,
            require=functools.partial(
                _require_scope, org_id=org_id, system=store.system, limits=store.limits
            ),
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

        return Graphs(
            self._lease.db,
            self.graph_types,
            self.actor,
            org_id=self.org_id,
            limits=self._store.limits,
        )

    @property
    def acl(self) -> Acl:
        """The organization's ACL graph (docs/acl.md)."""
        return _acl(self.graph_types, self.org_id, self._store.system, self._store.limits)

    @property
    def secrets(self) -> Secrets:
        """The organization's encrypted secrets (docs/secrets.md)."""
        from alkdev_storage.secret_store import Secrets

        store = self._store
        return Secrets(
            self._lease.db,
            _managed(self.graph_types, self.org_id, store.limits, "secrets"),
            self.acl,
            org_id=self.org_id,
        )

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


def _managed(types: GraphTypes, org_id: str, limits: Limits, name: str) -> Graphs:
    """A `Graphs` that may write the graphs of the protected type `name`.
    Their keys and documents are bounded by their managers
    (`alkdev_storage.acl`, `alkdev_storage.secret_store`) and their
    schemas, so a root's lower key or document limits do not apply."""
    from alkdev_storage.metagraph.graphs import Graphs

    own = dataclasses.replace(
        limits,
        key_length=max(limits.key_length, _MANAGED_KEY_LENGTH),
        document_bytes=max(limits.document_bytes, DEFAULT_LIMITS.document_bytes),
        json_depth=max(limits.json_depth, DEFAULT_LIMITS.json_depth),
    )
    return Graphs(
        types._db, types, types._actor, org_id=org_id, limits=own, managed=frozenset({name})
    )


#: The longest key of a managed graph: an ACL edge's ``"<from>-><to>"``.
_MANAGED_KEY_LENGTH = 2 * 255 + 2


def _acl(types: GraphTypes, org_id: str, system: Database, limits: Limits) -> Acl:
    from alkdev_storage.acl import Acl

    return Acl(
        types._db, _managed(types, org_id, limits, "acl"), types, org_id=org_id, system=system
    )


def _require_scope(
    types: GraphTypes,
    actor: Actor,
    scope: str,
    operation: str,
    *,
    org_id: str,
    system: Database,
    limits: Limits,
) -> None:
    """`GraphTypes`' ACL hook: refuse (audited) unless `actor` holds
    `scope` in the organization's ACL. Holds nothing that refers back to
    the `Tenant` (see its docstring)."""
    from alkdev_storage.acl import require

    require(_acl(types, org_id, system, limits), actor, scope, operation)


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
    """A tenant's audit hook: the refusal, in ``system.db``'s audit log.
    The row names the account and the organization only while they exist
    (its foreign keys would refuse the row otherwise: a handle can outlive
    both)."""
    with system.transaction() as tx:
        account, org = tx.query_one(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?), "
            "EXISTS (SELECT 1 FROM organizations WHERE id = ?)",
            (actor.account_id, org_id),
        ) or (0, 0)
        audit(
            tx,
            action,
            owner_id=actor.account_id if account else None,
            org_id=org_id if org else None,
            details={**details, "message": message},
        )


class Rights:
    """An account's rights in one organization, kept current.

    Every write through a tenant handle asks `__call__` first. It compares
    ``system.db``'s identity change counter (the last stream offset:
    every change of an account, organization or membership publishes an
    event there) with the one its rights were read at, and reads the
    account's status and membership again only when it moved: one
    ``sqlite_sequence`` lookup per write otherwise. A member removed, an
    account suspended or deactivated, or a level lowered is refused from
    the next write on, with the refusal audited like any scope violation.
    """

    __slots__ = ("_account_id", "_actor", "_generation", "_org_id", "_system")

    def __init__(self, system: Database, account_id: str, org_id: str) -> None:
        self._system = system
        self._account_id = account_id
        self._org_id = org_id
        self._generation = _UNREAD
        self._actor = Actor(account_id, None)

    def __call__(self, operation: str) -> Actor:
        generation = _identity_generation(self._system)
        if generation != self._generation:
            self._refresh(operation)
        return self._actor

    def _refresh(self, operation: str) -> None:
        """Read the account's status and membership (and the counter they
        are current at) in one snapshot; refuse, audited, if either is gone."""
        row = self._system.query_one(
            f"SELECT ({_GENERATION_SQL}), a.status, m.membership_level "
            "FROM (SELECT 1) LEFT JOIN accounts a ON a.id = ? "
            "LEFT JOIN organization_members m ON m.account_id = a.id AND m.org_id = ?",
            (self._account_id, self._org_id),
        )
        assert row is not None
        seq, status, level = row
        error: Exception | None = None
        if status is None:
            error = NotAMemberError(f"account {shown(self._account_id)} no longer exists")
        elif status != "active":
            error = AccountInactiveError(f"account {shown(self._account_id)} is {status}")
        elif level is None:
            error = NotAMemberError(
                f"account {shown(self._account_id)} is not a member of {shown(self._org_id)}"
            )
        if error is not None:
            self._generation = _UNREAD  # ask again next time: it may come back
            _audit_refusal(
                self._system,
                Actor(self._account_id),
                self._org_id,
                "scope.violation",
                str(error),
                {"rule": type(error).__name__, "operation": operation, "org_id": self._org_id},
            )
            raise error
        self._actor = Actor(self._account_id, str(level))
        self._generation = int(seq or 0)


#: `Rights._generation` before the first read (no counter is negative).
_UNREAD = -1


#: ``system.db``'s identity change counter: the last stream offset handed out.
_GENERATION_SQL = "SELECT seq FROM sqlite_sequence WHERE name = '_honker_stream'"


def _identity_generation(system: Database) -> int:
    """``system.db``'s identity change counter (0 before the first event)."""
    row = system.query_one(_GENERATION_SQL)
    return 0 if row is None else int(row[0])


_LEVEL_RANK = {"member": 0, "admin": 1, "owner": 2}


class OrganizationView:
    """One organization's administration as one account does it
    (``store.as_account(id).organization(org_id)``).

    Every operation checks, as of that moment: the account is an active
    member (`NotAMemberError`, `AccountInactiveError`); its level is owner
    or admin, and owner for anything that touches an owner
    (`NotTenantAdminError`); and the organization's ACL gives its
    ``account:<id>`` principal the operation's scope (`AccessDeniedError`):
    ``members:write`` for memberships, ``keys:admin`` for another member's
    API keys. A refusal is audited and changes nothing. An account manages
    its own keys without the ACL.
    """

    def __init__(self, store: Storage, account: Account, org_id: str) -> None:
        self._store = store
        self.account = account
        self.org_id = store.tenants.validate(org_id)

    def __repr__(self) -> str:
        return f"<OrganizationView {self.org_id} as {self.account.id}>"

    def _refuse(self, error: Exception, operation: str) -> None:
        _audit_refusal(
            self._store.system,
            Actor(self.account.id),
            self.org_id,
            "scope.violation",
            str(error),
            {"rule": type(error).__name__, "operation": operation, "org_id": self.org_id},
        )
        raise error

    def _authorize(self, operation: str, scope: str, *, touches: str | None = None) -> Actor:
        """The acting account's rights, refused (audited) unless they allow
        `operation` (`touches`: the highest membership level involved)."""
        actor = Rights(self._store.system, self.account.id, self.org_id)(operation)
        if not actor.is_admin:
            self._refuse(
                NotTenantAdminError(
                    f"only the organization's owners and admins may {operation.replace('_', ' ')}"
                ),
                operation,
            )
        if touches == "owner" and actor.level != "owner":
            self._refuse(
                NotTenantAdminError(f"only an owner may {operation.replace('_', ' ')} of an owner"),
                operation,
            )
        with Tenant(self._store, self.org_id, actor) as tenant:
            acl = tenant.acl
            if acl.graph_id() is None:  # an organization from before ACLs
                self._store.acl.reconcile(self.org_id)
            from alkdev_storage.acl import require

            require(acl, actor, scope, operation)
        return actor

    def _level_of(self, account_id: str) -> str | None:
        row = self._store.system.query_one(
            "SELECT membership_level FROM organization_members WHERE org_id = ? AND account_id = ?",
            (self.org_id, account_id),
        )
        return None if row is None else str(row[0])

    def _highest(self, *levels: str | None) -> str:
        return max(
            (lv for lv in levels if lv is not None), key=_LEVEL_RANK.__getitem__, default="member"
        )

    # -- memberships

    def members(self) -> list[Membership]:
        """The organization's memberships (any active member may list them)."""
        Rights(self._store.system, self.account.id, self.org_id)("list_members")
        return self._store.organizations.members(self.org_id)

    def add_member(self, account_id: str, level: str = "member") -> Membership:
        self._authorize("add_member", "members:write", touches=level)
        return self._store.organizations.add_member(
            self.org_id, account_id, level, actor_id=self.account.id
        )

    def update_member(self, account_id: str, level: str) -> Membership:
        self._authorize(
            "update_member",
            "members:write",
            touches=self._highest(level, self._level_of(account_id)),
        )
        return self._store.organizations.update_member(
            self.org_id, account_id, level, actor_id=self.account.id
        )

    def remove_member(self, account_id: str) -> None:
        if account_id != self.account.id:  # leaving needs no rights
            self._authorize("remove_member", "members:write", touches=self._level_of(account_id))
        else:
            Rights(self._store.system, self.account.id, self.org_id)("leave")
        self._store.organizations.remove_member(self.org_id, account_id, actor_id=self.account.id)

    # -- API keys

    def _key_owner(self, owner_id: str, operation: str) -> None:
        """Refuse unless the account may manage `owner_id`'s keys here."""
        if owner_id == self.account.id:
            Rights(self._store.system, self.account.id, self.org_id)(operation)
            return
        level = self._level_of(owner_id)
        if level is None:
            self._refuse(
                NotAMemberError(
                    f"account {shown(owner_id)} is not a member of {shown(self.org_id)}; its "
                    "keys are not this organization's to manage"
                ),
                operation,
            )
        self._authorize(operation, "keys:admin", touches=level)

    def api_keys(self, owner_id: str) -> list[ApiKey]:
        self._key_owner(owner_id, "list_api_keys")
        return self._store.api_keys.list(owner_id)

    def create_api_key(
        self,
        owner_id: str,
        *,
        name: str = "",
        scopes: Iterable[str] = (),
        expires_at: int | None = None,
    ) -> ApiKey:
        self._key_owner(owner_id, "create_api_key")
        return self._store.api_keys.create(
            owner_id=owner_id,
            name=name,
            scopes=scopes,
            expires_at=expires_at,
            actor_id=self.account.id,
        )

    def _owner_of(self, key_id: str) -> str:
        return self._store.api_keys.get(key_id).owner_id

    def revoke_api_key(self, key_id: str) -> ApiKey:
        self._key_owner(self._owner_of(key_id), "revoke_api_key")
        return self._store.api_keys.revoke(key_id, actor_id=self.account.id)

    def set_api_key_enabled(self, key_id: str, enabled: bool) -> ApiKey:
        self._key_owner(self._owner_of(key_id), "set_api_key_enabled")
        return self._store.api_keys.set_enabled(key_id, enabled, actor_id=self.account.id)

    def rotate_api_key(self, key_id: str) -> ApiKey:
        self._key_owner(self._owner_of(key_id), "rotate_api_key")
        return self._store.api_keys.rotate(key_id, actor_id=self.account.id)


class AccountView:
    """The storage as one account sees it (``store.as_account(id)``)."""

    def __init__(self, store: Storage, account: Account) -> None:
        self._store = store
        self.account = account

    def tenant(self, org_id: str) -> Tenant:
        """The organization's tenant file. Refused (and audited) unless the
        account is an active member: `NotAMemberError`, or
        `AccountInactiveError` for a suspended or deactivated account. The
        handle checks again before every write (see `Rights`)."""
        store = self._store
        store.tenants.validate(org_id)
        rights = Rights(store.system, self.account.id, org_id)
        return Tenant(store, org_id, rights("open"), rights=rights)

    def organization(self, org_id: str) -> OrganizationView:
        """Organization-level operations (members, others' API keys) as
        this account, under its membership level and the organization's
        ACL (see `OrganizationView`)."""
        return OrganizationView(self._store, self.account, org_id)

    def __repr__(self) -> str:
        return f"<AccountView {self.account.email}>"
