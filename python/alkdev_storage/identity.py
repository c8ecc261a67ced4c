"""Identity in ``system.db``: accounts, organizations and their members, API
keys, SSH peer credentials, and the audit log (SPEC §4, §7).

Every mutation is one write transaction that also publishes its change
event (`alkdev_storage.events`) and, for security-relevant actions, an audit
row: commit lands all of them, a failure none. Reads use a reader snapshot.
Get these objects from `alk.Storage`:

>>> import alkdev_storage as alk, tempfile
>>> store = alk.Storage.open(tempfile.mkdtemp())
>>> ada = store.accounts.create(email="Ada@Example.com", display_name="Ada")
>>> ada.email
'ada@example.com'
>>> acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
>>> [m.membership_level for m in store.organizations.members(acme.id)]
['owner']
>>> key = store.api_keys.create(owner_id=ada.id, name="ci", scopes=["read"])
>>> who = store.api_keys.verify(key.plaintext)
>>> who.account.id == ada.id, who.scopes
(True, ('read',))
>>> store.close()
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from alkdev_storage import _checks as check
from alkdev_storage import events, ssh
from alkdev_storage._checks import shown
from alkdev_storage._native import Transaction
from alkdev_storage.errors import (
    AccountInactiveError,
    AccountNotFoundError,
    AlreadyExistsError,
    ApiKeyNotFoundError,
    ConstraintError,
    CredentialDisabledError,
    CredentialExpiredError,
    CredentialNotFoundError,
    CredentialRevokedError,
    InputTypeError,
    InUseError,
    InvalidInputError,
    InvalidTenantIdError,
    KeyDisabledError,
    KeyExpiredError,
    KeyRevokedError,
    KeyRotatedError,
    LimitExceededError,
    MembershipNotFoundError,
    NotFoundError,
    OrganizationNotFoundError,
    UnknownCredentialError,
    UnknownKeyError,
)

if TYPE_CHECKING:
    from alkdev_storage._database import Database
    from alkdev_storage.tenants import TenantRegistry

ACCESS_LEVELS = ("admin", "user", "service")
ACCOUNT_STATUSES = ("active", "suspended", "deactivated")
MEMBERSHIP_LEVELS = ("owner", "admin", "member")
#: The one org id refused: the relay's subject token for system.db.
RESERVED_ORG_ID = "system"
CREDENTIAL_TYPES = ("ssh_key", "cert_authority")

#: API keys look like ``alk_<43 url-safe characters>`` (32 random bytes).
KEY_PREFIX = "alk_"

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "Leave this field as it is" in ``update()`` calls.
UNSET: Any = _Unset()

T = TypeVar("T")


def _now() -> int:
    return int(time.time())


def _new_id() -> str:
    return str(uuid.uuid4())


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise InvalidInputError(f"{name} must be one of {', '.join(allowed)}; got {shown(value)}")
    return value


def _text(name: str, value: object, *, max_len: int = 200, empty: bool = False) -> str:
    """A trimmed identity field: a str of at most `max_len` characters with
    no NUL (C libraries and terminals stop at one)."""
    if not isinstance(value, str):
        raise InputTypeError(f"{name} must be a str, not {type(value).__name__}")
    value = value.strip()
    if not value and not empty:
        raise InvalidInputError(f"{name} must not be empty")
    if len(value) > max_len:
        raise LimitExceededError(f"{name} must be at most {max_len} characters")
    if "\x00" in value:
        raise InvalidInputError(f"{name} contains a NUL character")
    return check.utf8(name, value)


def normalise_email(email: str) -> str:
    """Emails are stored trimmed and lower-cased, so lookups ignore case."""
    value = _text("email", email, max_len=254).lower()
    if not _EMAIL.match(value):
        raise InvalidInputError(f"not an email address: {shown(email)}")
    return value


def _slug(slug: str) -> str:
    value = _text("slug", slug, max_len=63)
    if not _SLUG.match(value):
        raise InvalidInputError(
            f"slug must be lower-case letters and digits separated by single hyphens: {shown(slug)}"
        )
    return value


def _metadata(value: Mapping[str, Any] | None) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise InputTypeError("metadata must be a mapping")
    return json.dumps(dict(value), allow_nan=False)


def _scopes(scopes: Iterable[str]) -> builtins.list[str]:
    if isinstance(scopes, str | bytes):
        raise InputTypeError("scopes must be a list of strings, not one string")
    if not isinstance(scopes, Iterable):
        raise InputTypeError(f"scopes must be a list of strings, not {type(scopes).__name__}")
    out = []
    for scope in scopes:
        out.append(_text("scope", scope, max_len=100))
    return sorted(set(out))


def _timestamp(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name} must be Unix seconds (int)")
    return value


def _from_row(cls: type[T], row: Mapping[str, Any]) -> T:
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in row:
            continue
        value = row[f.name]
        if f.name in ("metadata", "details"):
            value = json.loads(value)
        elif f.name == "enabled":
            value = bool(value)
        values[f.name] = value
    return cls(**values)


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    email: str
    display_name: str | None
    access_level: str
    status: str
    metadata: dict[str, Any]
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    slug: str
    owner_id: str
    metadata: dict[str, Any]
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Membership:
    id: str
    org_id: str
    account_id: str
    membership_level: str
    metadata: dict[str, Any]
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key record. `plaintext` is set only on the object returned by
    ``create`` and ``rotate``: it is never stored, so keep it then."""

    id: str
    owner_id: str
    name: str
    enabled: bool
    expires_at: int | None
    revoked_at: int | None
    rotated_to_id: str | None
    last_used_at: int | None
    metadata: dict[str, Any]
    created_at: int
    updated_at: int
    plaintext: str | None = field(default=None, repr=False, compare=False)

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.metadata.get("scopes", ()))


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    """What ``api_keys.verify`` vouches for."""

    account: Account
    key: ApiKey
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifiedCredential:
    """What ``peer_credentials.verify`` vouches for."""

    account: Account
    credential: PeerCredential
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PeerCredential:
    id: str
    owner_id: str
    credential_type: str
    fingerprint: str
    public_key_data: str
    name: str
    enabled: bool
    expires_at: int | None
    revoked_at: int | None
    metadata: dict[str, Any]
    created_at: int
    updated_at: int

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.metadata.get("scopes", ()))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    action: str
    owner_id: str | None
    credential_id: str | None
    credential_type: str | None
    org_id: str | None
    details: dict[str, Any]
    metadata: dict[str, Any]
    created_at: int
    updated_at: int


def _public(record: Any, *, hide: Sequence[str] = ()) -> dict[str, Any]:
    """A record as event data (secrets and hashes left out)."""
    return {
        f.name: getattr(record, f.name)
        for f in fields(record)
        if f.name not in hide and f.name != "plaintext"
    }


# ---------------------------------------------------------------- base


class MembershipSync(Protocol):
    """What keeps derived state (each organization's ACL graph) in step
    with memberships: `AclSync` (``store.acl``)."""

    def enqueue(self, tx: Transaction, org_id: str, account_id: str) -> int: ...

    def changes(self) -> AbstractContextManager[None]: ...

    def init_tenant(self, org_id: str, owner_id: str) -> None: ...


class _Repo:
    #: Set by `Storage`: told of every membership change, in its transaction.
    membership_sync: MembershipSync | None = None

    def _changes(self) -> AbstractContextManager[None]:
        sync = self.membership_sync
        return contextlib.nullcontext() if sync is None else sync.changes()

    def _member_changed(self, tx: Transaction, org_id: str, account_id: str) -> None:
        if self.membership_sync is not None:
            self.membership_sync.enqueue(tx, org_id, account_id)

    def __init__(self, db: Database) -> None:
        self._db = db

    def _get(self, cls: type[T], sql: str, params: Sequence[Any], missing: NotFoundError) -> T:
        row = self._db.query_one(sql, params, as_dict=True)
        if row is None:
            raise missing
        return _from_row(cls, row)

    def _tx_get(
        self, tx: Transaction, cls: type[T], sql: str, params: Sequence[Any], missing: NotFoundError
    ) -> T:
        row = tx.query_one(sql, params, as_dict=True)
        if row is None:
            raise missing
        return _from_row(cls, row)

    def _list(self, cls: type[T], sql: str, params: Sequence[Any]) -> builtins.list[T]:
        return [_from_row(cls, r) for r in self._db.query(sql, params, as_dict=True)]


def _account_in(tx: Transaction, account_id: str) -> Account:
    """The account, read inside `tx`; `AccountNotFoundError` if missing."""
    row = tx.query_one("SELECT * FROM accounts WHERE id = ?", (account_id,), as_dict=True)
    if row is None:
        raise AccountNotFoundError(f"no account {shown(account_id)}")
    return _from_row(Account, row)


def audit(
    tx: Transaction,
    action: str,
    *,
    owner_id: str | None,
    org_id: str | None = None,
    credential_id: str | None = None,
    credential_type: str | None = None,
    details: Mapping[str, Any] | None = None,
    entry_id: str | None = None,
) -> str:
    """Write one audit row inside `tx` (with `entry_id`, or a new one); its id."""
    entry_id = _new_id() if entry_id is None else entry_id
    tx.execute(
        "INSERT INTO audit_logs (id, action, owner_id, credential_id, credential_type, org_id, "
        "details) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            entry_id,
            action,
            owner_id,
            credential_id,
            credential_type,
            org_id,
            json.dumps(dict(details or {}), allow_nan=False),
        ),
    )
    return entry_id


#: Failed verifications are audited one row per window of this many seconds
#: per (action, reason, credential): a flood of garbage keys adds one row a
#: minute per reason, with a count, not one row per attempt.
AUDIT_FAILURE_WINDOW_S = 60
#: Hash prefixes of presented keys kept per aggregated row, as samples.
AUDIT_FAILURE_SAMPLES = 5
_AUDIT_NAMESPACE = uuid.UUID("8b9a3c52-3f0e-4c55-9c3e-6f1d2a7b4e10")


def audit_failure(
    tx: Transaction,
    action: str,
    *,
    reason: str,
    owner_id: str | None,
    credential_id: str | None,
    credential_type: str,
    sample: str,
    now: int,
) -> str:
    """Audit one refused verification inside `tx`, counted into the row of
    its window (`AUDIT_FAILURE_WINDOW_S`): ``details`` holds the `reason`,
    the ``count`` of refusals, ``window_start`` and up to
    `AUDIT_FAILURE_SAMPLES` distinct `sample` strings. The row's id is
    derived from what it aggregates, so concurrent refusals meet on one row
    (the writer serialises them). Its id."""
    window = now - now % AUDIT_FAILURE_WINDOW_S
    entry_id = str(
        uuid.uuid5(_AUDIT_NAMESPACE, f"{action}\0{reason}\0{credential_id or ''}\0{window}")
    )
    row = tx.query_one("SELECT details FROM audit_logs WHERE id = ?", (entry_id,))
    if row is None:
        details = {
            "reason": reason,
            "count": 1,
            "window_start": window,
            "window_s": AUDIT_FAILURE_WINDOW_S,
            "samples": [sample],
        }
        audit(
            tx,
            action,
            owner_id=owner_id,
            credential_id=credential_id,
            credential_type=credential_type,
            details=details,
            entry_id=entry_id,
        )
    else:
        details = json.loads(row[0])
        details["count"] = int(details.get("count", 1)) + 1
        samples = list(details.get("samples", []))
        if sample not in samples and len(samples) < AUDIT_FAILURE_SAMPLES:
            samples.append(sample)
        details["samples"] = samples
        tx.execute(
            "UPDATE audit_logs SET details = ?, updated_at = unixepoch() WHERE id = ?",
            (json.dumps(details), entry_id),
        )
    return entry_id


def _unique_violation(exc: ConstraintError, what: dict[str, str]) -> AlreadyExistsError | None:
    message = str(exc)
    for column, description in what.items():
        if column in message:
            return AlreadyExistsError(description)
    return None


# ---------------------------------------------------------------- accounts


class Accounts(_Repo):
    """``store.accounts``."""

    _SELECT = "SELECT * FROM accounts"

    def create(
        self,
        *,
        email: str,
        display_name: str | None = None,
        access_level: str = "user",
        status: str = "active",
        metadata: Mapping[str, Any] | None = None,
        id: str | None = None,  # noqa: A002 - the column's name
        actor_id: str | None = None,
    ) -> Account:
        """Create an account; `AlreadyExistsError` if the email is taken."""
        email_n = normalise_email(email)
        name = None if display_name is None else _text("display_name", display_name)
        level = _choice("access_level", access_level, ACCESS_LEVELS)
        state = _choice("status", status, ACCOUNT_STATUSES)
        meta = _metadata(metadata)
        account_id = _text("id", id, max_len=128) if id is not None else _new_id()
        try:
            with self._db.transaction() as tx:
                tx.execute(
                    "INSERT INTO accounts (id, email, display_name, access_level, status, "
                    "metadata) VALUES (?, ?, ?, ?, ?, ?)",
                    (account_id, email_n, name, level, state, meta),
                )
                account = self._tx_get(
                    tx,
                    Account,
                    f"{self._SELECT} WHERE id = ?",
                    (account_id,),
                    AccountNotFoundError(account_id),
                )
                events.publish(
                    self._db,
                    tx,
                    "accounts:created",
                    account_id,
                    action="created",
                    actor=actor_id,
                    data=_public(account),
                )
        except ConstraintError as exc:
            known = _unique_violation(
                exc,
                {
                    "accounts.email": f"an account with email {shown(email_n)} exists",
                    "accounts.id": f"an account with id {shown(account_id)} exists",
                },
            )
            if known is None:
                raise
            raise known from exc
        return account

    def get(self, account_id: str) -> Account:
        """The account with this id; `AccountNotFoundError` otherwise."""
        return self._get(
            Account,
            f"{self._SELECT} WHERE id = ?",
            (account_id,),
            AccountNotFoundError(f"no account {shown(account_id)}"),
        )

    def by_email(self, email: str) -> Account:
        """The account with this email (case-insensitive)."""
        email_n = normalise_email(email)
        return self._get(
            Account,
            f"{self._SELECT} WHERE email = ?",
            (email_n,),
            AccountNotFoundError(f"no account with email {shown(email_n)}"),
        )

    def list(
        self, *, status: str | None = None, limit: int = 100, after: str | None = None
    ) -> builtins.list[Account]:
        """Accounts ordered by email, `limit` at a time; pass the last email
        seen as `after` for the next page."""
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(_choice("status", status, ACCOUNT_STATUSES))
        if after is not None:
            clauses.append("email > ?")
            params.append(after)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._list(
            Account, f"{self._SELECT}{where} ORDER BY email LIMIT ?", (*params, max(1, limit))
        )

    def update(
        self,
        account_id: str,
        *,
        email: str = UNSET,
        display_name: str | None = UNSET,
        access_level: str = UNSET,
        status: str = UNSET,
        metadata: Mapping[str, Any] = UNSET,
        actor_id: str | None = None,
    ) -> Account:
        """Change the given fields; the updated account."""
        changes: dict[str, Any] = {}
        if email is not UNSET:
            changes["email"] = normalise_email(email)
        if display_name is not UNSET:
            changes["display_name"] = (
                None if display_name is None else _text("display_name", display_name)
            )
        if access_level is not UNSET:
            changes["access_level"] = _choice("access_level", access_level, ACCESS_LEVELS)
        if status is not UNSET:
            changes["status"] = _choice("status", status, ACCOUNT_STATUSES)
        if metadata is not UNSET:
            changes["metadata"] = _metadata(metadata)
        return _update(
            self._db,
            "accounts",
            account_id,
            changes,
            Account,
            AccountNotFoundError(f"no account {shown(account_id)}"),
            actor_id=actor_id,
            unique={"accounts.email": "that email belongs to another account"},
        )

    def delete(self, account_id: str, *, actor_id: str | None = None) -> None:
        """Delete an account with no history. One that owns organizations or
        appears in the audit log cannot be deleted (`InUseError`): set its
        status to ``deactivated`` instead. Its memberships go with it."""
        with self._changes(), self._db.transaction() as tx:
            self._tx_get(
                tx,
                Account,
                f"{self._SELECT} WHERE id = ?",
                (account_id,),
                AccountNotFoundError(f"no account {shown(account_id)}"),
            )
            for (org_id,) in tx.query(
                "SELECT org_id FROM organization_members WHERE account_id = ?", (account_id,)
            ):
                self._member_changed(tx, org_id, account_id)
            try:
                tx.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
            except ConstraintError as exc:
                raise InUseError(
                    f"account {shown(account_id)} owns organizations or has audit history; "
                    "deactivate it instead"
                ) from exc
            events.publish(
                self._db, tx, "accounts:deleted", account_id, action="deleted", actor=actor_id
            )


def _update(
    db: Database,
    table: str,
    record_id: str,
    changes: dict[str, Any],
    cls: type[T],
    missing: NotFoundError,
    *,
    actor_id: str | None,
    unique: dict[str, str],
    topic: str | None = None,
    extra: Callable[[Transaction, T], None] | None = None,
) -> T:
    """UPDATE the changed columns (names are ours, values bound), publish
    ``<table>:updated`` with the new record; the record."""
    entity = topic or f"{table}:updated"
    try:
        with db.transaction() as tx:
            if changes:
                sets = ", ".join(f"{column} = ?" for column in changes)
                done = tx.execute(
                    f"UPDATE {table} SET {sets}, updated_at = unixepoch() WHERE id = ?",
                    (*changes.values(), record_id),
                )
                if done.rowcount == 0:
                    raise missing
            row = tx.query_one(f"SELECT * FROM {table} WHERE id = ?", (record_id,), as_dict=True)
            if row is None:
                raise missing
            record = _from_row(cls, row)
            if changes:
                if extra is not None:
                    extra(tx, record)
                events.publish(
                    db,
                    tx,
                    entity,
                    record_id,
                    action="updated",
                    actor=actor_id,
                    data=_public(record),
                )
    except ConstraintError as exc:
        known = _unique_violation(exc, unique)
        if known is None:
            raise
        raise known from exc
    return record


# ------------------------------------------------------------ organizations


class Organizations(_Repo):
    """``store.organizations``: organizations, their members, and their
    tenant files."""

    _SELECT = "SELECT * FROM organizations"
    _MEMBERS = "SELECT * FROM organization_members"

    def __init__(self, db: Database, tenants: TenantRegistry) -> None:
        super().__init__(db)
        self._tenants = tenants

    def create(
        self,
        *,
        name: str,
        slug: str,
        owner_id: str,
        metadata: Mapping[str, Any] | None = None,
        id: str | None = None,  # noqa: A002 - the column's name
        actor_id: str | None = None,
    ) -> Organization:
        """Create an organization with its tenant file and its owner's
        membership, all or nothing: if any step fails, neither the row nor
        the file remains. The id ``system`` is reserved."""
        org_name = _text("name", name)
        org_slug = _slug(slug)
        meta = _metadata(metadata)
        org_id = self._tenants.validate(id) if id is not None else _new_id()
        if org_id == RESERVED_ORG_ID:
            raise InvalidTenantIdError(
                f"org id {RESERVED_ORG_ID!r} is reserved: it names system.db's events "
                "in the NATS relay (docs/cluster.md)"
            )
        actor = owner_id if actor_id is None else actor_id
        self._tenants.create(org_id)
        try:
            if self.membership_sync is not None:
                self.membership_sync.init_tenant(org_id, owner_id)
            with self._changes(), self._db.transaction() as tx:
                _account_in(tx, owner_id)
                tx.execute(
                    "INSERT INTO organizations (id, name, slug, owner_id, metadata) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (org_id, org_name, org_slug, owner_id, meta),
                )
                org = self._tx_get(
                    tx,
                    Organization,
                    f"{self._SELECT} WHERE id = ?",
                    (org_id,),
                    OrganizationNotFoundError(org_id),
                )
                events.publish(
                    self._db,
                    tx,
                    "organizations:created",
                    org_id,
                    action="created",
                    actor=actor,
                    data=_public(org),
                    org_id=org_id,
                )
                self._add_member(tx, org_id, owner_id, "owner", actor)
                audit(
                    tx,
                    "organization.create",
                    owner_id=actor,
                    org_id=org_id,
                    details={"name": org_name, "slug": org_slug, "owner_id": owner_id},
                )
        except BaseException as exc:
            self._tenants.discard(org_id)
            if isinstance(exc, ConstraintError):
                known = _unique_violation(
                    exc,
                    {
                        "organizations.name": f"an organization named {shown(org_name)} exists",
                        "organizations.slug": f"the slug {shown(org_slug)} is taken",
                        "organizations.id": f"an organization with id {shown(org_id)} exists",
                    },
                )
                if known is not None:
                    raise known from exc
            raise
        return org

    def get(self, org_id: str) -> Organization:
        return self._get(
            Organization,
            f"{self._SELECT} WHERE id = ?",
            (org_id,),
            OrganizationNotFoundError(f"no organization {shown(org_id)}"),
        )

    def by_slug(self, slug: str) -> Organization:
        return self._get(
            Organization,
            f"{self._SELECT} WHERE slug = ?",
            (slug,),
            OrganizationNotFoundError(f"no organization with slug {shown(slug)}"),
        )

    def list(self, *, limit: int = 100, after: str | None = None) -> builtins.list[Organization]:
        """Organizations by slug; pass the last slug seen as `after`."""
        if after is None:
            return self._list(Organization, f"{self._SELECT} ORDER BY slug LIMIT ?", (limit,))
        return self._list(
            Organization, f"{self._SELECT} WHERE slug > ? ORDER BY slug LIMIT ?", (after, limit)
        )

    def update(
        self,
        org_id: str,
        *,
        name: str = UNSET,
        slug: str = UNSET,
        owner_id: str = UNSET,
        metadata: Mapping[str, Any] = UNSET,
        actor_id: str | None = None,
    ) -> Organization:
        """Change the given fields. A new `owner_id` must be an existing
        account; it becomes (or stays) an ``owner`` member."""
        changes: dict[str, Any] = {}
        if name is not UNSET:
            changes["name"] = _text("name", name)
        if slug is not UNSET:
            changes["slug"] = _slug(slug)
        if owner_id is not UNSET:
            changes["owner_id"] = owner_id
        if metadata is not UNSET:
            changes["metadata"] = _metadata(metadata)

        def owner_membership(tx: Transaction, org: Organization) -> None:
            if owner_id is UNSET:
                return
            _account_in(tx, owner_id)
            current = tx.query_one(
                "SELECT membership_level FROM organization_members "
                "WHERE org_id = ? AND account_id = ?",
                (org.id, owner_id),
            )
            if current is None:
                self._add_member(tx, org.id, owner_id, "owner", actor_id)
            elif current[0] != "owner":
                self._set_level(tx, org.id, owner_id, "owner", actor_id)

        with self._changes():
            return _update(
                self._db,
                "organizations",
                org_id,
                changes,
                Organization,
                OrganizationNotFoundError(f"no organization {shown(org_id)}"),
                actor_id=actor_id,
                unique={
                    "organizations.name": "another organization has that name",
                    "organizations.slug": "that slug is taken",
                },
                extra=owner_membership,
            )

    def delete(self, org_id: str, *, actor_id: str | None = None) -> None:
        """Delete the organization and its memberships, and archive its
        tenant file (moved aside with a timestamp; ``purge`` deletes it)."""
        with self._db.transaction() as tx:
            org = self._tx_get(
                tx,
                Organization,
                f"{self._SELECT} WHERE id = ?",
                (org_id,),
                OrganizationNotFoundError(f"no organization {shown(org_id)}"),
            )
            audit(
                tx,
                "organization.delete",
                owner_id=actor_id,
                org_id=org_id,
                details={"name": org.name, "slug": org.slug, "org_id": org_id},
            )
            members = tx.query(
                "SELECT account_id, membership_level FROM organization_members WHERE org_id = ?",
                (org_id,),
            )
            tx.execute("DELETE FROM organizations WHERE id = ?", (org_id,))
            for account_id, level in members:
                events.publish(
                    self._db,
                    tx,
                    "memberships:changed",
                    f"{org_id}:{account_id}",
                    action="removed",
                    actor=actor_id,
                    org_id=org_id,
                    data={"account_id": account_id, "membership_level": level},
                )
            events.publish(
                self._db,
                tx,
                "organizations:deleted",
                org_id,
                action="deleted",
                actor=actor_id,
                org_id=org_id,
            )
        if self._tenants.exists(org_id):
            self._tenants.archive(org_id)

    # ------------------------------------------------------------ members

    def _add_member(
        self, tx: Transaction, org_id: str, account_id: str, level: str, actor: str | None
    ) -> Membership:
        member_id = _new_id()
        tx.execute(
            "INSERT INTO organization_members (id, org_id, account_id, membership_level) "
            "VALUES (?, ?, ?, ?)",
            (member_id, org_id, account_id, level),
        )
        self._member_changed(tx, org_id, account_id)
        membership = self._tx_get(
            tx,
            Membership,
            f"{self._MEMBERS} WHERE id = ?",
            (member_id,),
            MembershipNotFoundError(member_id),
        )
        events.publish(
            self._db,
            tx,
            "memberships:changed",
            member_id,
            action="added",
            actor=actor,
            org_id=org_id,
            data=_public(membership),
        )
        audit(
            tx,
            "membership.add",
            owner_id=actor,
            org_id=org_id,
            details={"account_id": account_id, "membership_level": level},
        )
        return membership

    def _set_level(
        self, tx: Transaction, org_id: str, account_id: str, level: str, actor: str | None
    ) -> Membership:
        done = tx.execute(
            "UPDATE organization_members SET membership_level = ?, updated_at = unixepoch() "
            "WHERE org_id = ? AND account_id = ?",
            (level, org_id, account_id),
        )
        if done.rowcount == 0:
            raise MembershipNotFoundError(f"{shown(account_id)} is not a member of {shown(org_id)}")
        self._member_changed(tx, org_id, account_id)
        membership = self._tx_get(
            tx,
            Membership,
            f"{self._MEMBERS} WHERE org_id = ? AND account_id = ?",
            (org_id, account_id),
            MembershipNotFoundError(account_id),
        )
        events.publish(
            self._db,
            tx,
            "memberships:changed",
            membership.id,
            action="updated",
            actor=actor,
            org_id=org_id,
            data=_public(membership),
        )
        audit(
            tx,
            "membership.update",
            owner_id=actor,
            org_id=org_id,
            details={"account_id": account_id, "membership_level": level},
        )
        return membership

    def _org_in(self, tx: Transaction, org_id: str) -> Organization:
        return self._tx_get(
            tx,
            Organization,
            f"{self._SELECT} WHERE id = ?",
            (org_id,),
            OrganizationNotFoundError(f"no organization {shown(org_id)}"),
        )

    def add_member(
        self, org_id: str, account_id: str, level: str = "member", *, actor_id: str | None = None
    ) -> Membership:
        """Make `account_id` a member; `AlreadyExistsError` if it is one."""
        _choice("level", level, MEMBERSHIP_LEVELS)
        try:
            with self._changes(), self._db.transaction() as tx:
                self._org_in(tx, org_id)
                _account_in(tx, account_id)
                return self._add_member(tx, org_id, account_id, level, actor_id)
        except ConstraintError as exc:
            known = _unique_violation(
                exc,
                {"organization_members.org_id": f"{shown(account_id)} is already a member"},
            )
            if known is None:
                raise
            raise known from exc

    def update_member(
        self, org_id: str, account_id: str, level: str, *, actor_id: str | None = None
    ) -> Membership:
        """Change a member's level. The organization's owner stays an
        ``owner`` (transfer ownership with ``update(owner_id=...)``)."""
        _choice("level", level, MEMBERSHIP_LEVELS)
        with self._changes(), self._db.transaction() as tx:
            org = self._org_in(tx, org_id)
            if account_id == org.owner_id and level != "owner":
                raise InUseError("the organization's owner must stay an owner; transfer it first")
            return self._set_level(tx, org_id, account_id, level, actor_id)

    def remove_member(self, org_id: str, account_id: str, *, actor_id: str | None = None) -> None:
        """End a membership. The organization's owner cannot be removed."""
        with self._changes(), self._db.transaction() as tx:
            org = self._org_in(tx, org_id)
            if account_id == org.owner_id:
                raise InUseError("the organization's owner cannot be removed; transfer it first")
            membership = self._tx_get(
                tx,
                Membership,
                f"{self._MEMBERS} WHERE org_id = ? AND account_id = ?",
                (org_id, account_id),
                MembershipNotFoundError(f"{shown(account_id)} is not a member of {shown(org_id)}"),
            )
            tx.execute("DELETE FROM organization_members WHERE id = ?", (membership.id,))
            self._member_changed(tx, org_id, account_id)
            events.publish(
                self._db,
                tx,
                "memberships:changed",
                membership.id,
                action="removed",
                actor=actor_id,
                org_id=org_id,
                data=_public(membership),
            )
            audit(
                tx,
                "membership.remove",
                owner_id=actor_id,
                org_id=org_id,
                details={"account_id": account_id, "membership_level": membership.membership_level},
            )

    def membership(self, org_id: str, account_id: str) -> Membership:
        return self._get(
            Membership,
            f"{self._MEMBERS} WHERE org_id = ? AND account_id = ?",
            (org_id, account_id),
            MembershipNotFoundError(f"{shown(account_id)} is not a member of {shown(org_id)}"),
        )

    def members(self, org_id: str) -> builtins.list[Membership]:
        """The organization's memberships, oldest first."""
        return self._list(
            Membership, f"{self._MEMBERS} WHERE org_id = ? ORDER BY created_at, id", (org_id,)
        )

    def memberships_of(self, account_id: str) -> builtins.list[Membership]:
        """The account's memberships, oldest first."""
        return self._list(
            Membership,
            f"{self._MEMBERS} WHERE account_id = ? ORDER BY created_at, id",
            (account_id,),
        )


# ---------------------------------------------------------------- API keys


def hash_key(plaintext: str) -> str:
    """What is stored: the SHA-256 hex digest of the key."""
    # surrogatepass: any str has a digest; one that is not UTF-8 matches no key.
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def _new_plaintext() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeys(_Repo):
    """``store.api_keys``. Only the SHA-256 of a key is stored; the key
    itself is on the object ``create``/``rotate`` return, once."""

    _SELECT = (
        "SELECT id, owner_id, name, enabled, expires_at, revoked_at, rotated_to_id, "
        "last_used_at, metadata, created_at, updated_at FROM api_keys"
    )

    def _insert(
        self,
        tx: Transaction,
        owner_id: str,
        name: str,
        scopes: builtins.list[str],
        expires_at: int | None,
        actor: str | None,
    ) -> ApiKey:
        plaintext = _new_plaintext()
        key_id = _new_id()
        tx.execute(
            "INSERT INTO api_keys (id, owner_id, key_hash, name, expires_at, metadata) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                key_id,
                owner_id,
                hash_key(plaintext),
                name,
                expires_at,
                json.dumps({"scopes": scopes}),
            ),
        )
        key = self._tx_get(
            tx, ApiKey, f"{self._SELECT} WHERE id = ?", (key_id,), ApiKeyNotFoundError(key_id)
        )
        events.publish(
            self._db,
            tx,
            "api_keys:created",
            key_id,
            action="created",
            actor=actor,
            data=_public(key),
        )
        audit(
            tx,
            "api_key.create",
            owner_id=actor,
            credential_id=key_id,
            credential_type="api_key",
            details={"owner_id": owner_id, "name": name, "scopes": scopes},
        )
        return ApiKey(**{**_public(key), "plaintext": plaintext})

    def create(
        self,
        *,
        owner_id: str,
        name: str = "",
        scopes: Iterable[str] = (),
        expires_at: int | None = None,
        actor_id: str | None = None,
    ) -> ApiKey:
        """A new key for `owner_id`; ``.plaintext`` holds the key, shown once."""
        key_name = _text("name", name, empty=True)
        scope_list = _scopes(scopes)
        expiry = _timestamp("expires_at", expires_at)
        actor = owner_id if actor_id is None else actor_id
        with self._db.transaction() as tx:
            _account_in(tx, owner_id)
            return self._insert(tx, owner_id, key_name, scope_list, expiry, actor)

    def get(self, key_id: str) -> ApiKey:
        return self._get(
            ApiKey,
            f"{self._SELECT} WHERE id = ?",
            (key_id,),
            ApiKeyNotFoundError(f"no API key {shown(key_id)}"),
        )

    def list(self, owner_id: str) -> builtins.list[ApiKey]:
        """The account's keys, newest first."""
        return self._list(
            ApiKey, f"{self._SELECT} WHERE owner_id = ? ORDER BY created_at DESC, id", (owner_id,)
        )

    def verify(self, plaintext: str) -> VerifiedKey:
        """The account and scopes a key stands for, updating its
        ``last_used_at`` (with an ``api_keys:used`` event when that changes:
        at most once a second per key). Refusals raise a distinct `AuthenticationError`
        (unknown, disabled, expired, revoked, rotated) and are audited."""
        if not isinstance(plaintext, str):
            raise InputTypeError("the key must be a str")
        digest = hash_key(plaintext)
        now = _now()
        with self._db.transaction() as tx:
            row = tx.query_one(
                f"{self._SELECT} WHERE key_hash = ?",
                (digest,),
                as_dict=True,
            )
            refusal: Exception | None = None
            key = None if row is None else _from_row(ApiKey, row)
            account = None
            if key is None:
                refusal = UnknownKeyError("no such API key")
            else:
                account = _account_in(tx, key.owner_id)
                if key.revoked_at is not None:
                    refusal = KeyRevokedError(f"API key {key.id} was revoked")
                elif key.rotated_to_id is not None:
                    refusal = KeyRotatedError(
                        f"API key {key.id} was rotated to {key.rotated_to_id}"
                    )
                elif not key.enabled:
                    refusal = KeyDisabledError(f"API key {key.id} is disabled")
                elif key.expires_at is not None and key.expires_at <= now:
                    refusal = KeyExpiredError(f"API key {key.id} expired at {key.expires_at}")
                elif account.status != "active":
                    refusal = AccountInactiveError(f"the key's account is {account.status}")
            if refusal is not None:
                audit_failure(
                    tx,
                    "api_key.verify_failed",
                    reason=type(refusal).__name__,
                    owner_id=None if key is None else key.owner_id,
                    credential_id=None if key is None else key.id,
                    credential_type="api_key",
                    sample=digest[:8],
                    now=now,
                )
            else:
                assert key is not None and account is not None
                # `last_used_at` is a column like any other: a change publishes
                # `api_keys:used` (SPEC §6). It is kept in whole seconds, so a
                # key verified many times a second writes once a second.
                used = tx.execute(
                    "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND last_used_at IS NOT ?",
                    (now, key.id, now),
                )
                if used.rowcount:
                    key = self._tx_get(
                        tx,
                        ApiKey,
                        f"{self._SELECT} WHERE id = ?",
                        (key.id,),
                        ApiKeyNotFoundError(""),
                    )
                    events.publish(
                        self._db,
                        tx,
                        "api_keys:used",
                        key.id,
                        action="used",
                        actor=key.owner_id,
                        data=_public(key),
                    )
        if refusal is not None:
            raise refusal
        assert key is not None and account is not None
        return VerifiedKey(account=account, key=key, scopes=key.scopes)

    def _change(
        self,
        key_id: str,
        sql: str,
        params: Sequence[Any],
        action: str,
        actor_id: str | None,
    ) -> ApiKey:
        with self._db.transaction() as tx:
            before = self._tx_get(
                tx,
                ApiKey,
                f"{self._SELECT} WHERE id = ?",
                (key_id,),
                ApiKeyNotFoundError(f"no API key {shown(key_id)}"),
            )
            tx.execute(sql, (*params, key_id))
            key = self._tx_get(
                tx, ApiKey, f"{self._SELECT} WHERE id = ?", (key_id,), ApiKeyNotFoundError(key_id)
            )
            actor = before.owner_id if actor_id is None else actor_id
            events.publish(
                self._db,
                tx,
                f"api_keys:{action}",
                key_id,
                action=action,
                actor=actor,
                data=_public(key),
            )
            if action == "revoked":
                audit(
                    tx,
                    "api_key.revoke",
                    owner_id=actor,
                    credential_id=key_id,
                    credential_type="api_key",
                    details={"owner_id": key.owner_id},
                )
            return key

    def revoke(self, key_id: str, *, actor_id: str | None = None) -> ApiKey:
        """Revoke for good (`verify` then raises `KeyRevokedError`)."""
        return self._change(
            key_id,
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, unixepoch()), "
            "updated_at = unixepoch() WHERE id = ?",
            (),
            "revoked",
            actor_id,
        )

    def set_enabled(self, key_id: str, enabled: bool, *, actor_id: str | None = None) -> ApiKey:
        """Disable a key (reversibly) or enable it again."""
        return self._change(
            key_id,
            "UPDATE api_keys SET enabled = ?, updated_at = unixepoch() WHERE id = ?",
            (1 if enabled else 0,),
            "updated",
            actor_id,
        )

    def rotate(self, key_id: str, *, actor_id: str | None = None) -> ApiKey:
        """Replace a key: a new key with the same owner, name, scopes and
        expiry (``.plaintext`` shown once), and the old one pointing to it
        through ``rotated_to_id`` (`verify` of the old key then raises
        `KeyRotatedError`)."""
        with self._db.transaction() as tx:
            old = self._tx_get(
                tx,
                ApiKey,
                f"{self._SELECT} WHERE id = ?",
                (key_id,),
                ApiKeyNotFoundError(f"no API key {shown(key_id)}"),
            )
            if old.revoked_at is not None or old.rotated_to_id is not None:
                raise KeyRevokedError(f"API key {key_id} is revoked or already rotated")
            actor = old.owner_id if actor_id is None else actor_id
            new = self._insert(tx, old.owner_id, old.name, list(old.scopes), old.expires_at, actor)
            tx.execute(
                "UPDATE api_keys SET rotated_to_id = ?, updated_at = unixepoch() WHERE id = ?",
                (new.id, key_id),
            )
            events.publish(
                self._db,
                tx,
                "api_keys:rotated",
                key_id,
                action="rotated",
                actor=actor,
                data={"rotated_to_id": new.id},
            )
            audit(
                tx,
                "api_key.rotate",
                owner_id=actor,
                credential_id=key_id,
                credential_type="api_key",
                details={"rotated_to_id": new.id},
            )
            return new


# ------------------------------------------------------- peer credentials


class PeerCredentials(_Repo):
    """``store.peer_credentials``: OpenSSH public keys, found by their
    ``SHA256:`` fingerprint."""

    _SELECT = "SELECT * FROM peer_credentials"

    def register(
        self,
        *,
        owner_id: str,
        public_key: str,
        scopes: Iterable[str] = (),
        name: str | None = None,
        credential_type: str = "ssh_key",
        expires_at: int | None = None,
        actor_id: str | None = None,
    ) -> PeerCredential:
        """Register a public key (``ssh-ed25519 AAAA... me@host``); its
        fingerprint is computed here, as ``ssh-keygen -lf`` prints it."""
        parsed = ssh.parse_public_key(public_key)
        kind = _choice("credential_type", credential_type, CREDENTIAL_TYPES)
        label = _text("name", name if name is not None else (parsed.comment or ""), empty=True)
        scope_list = _scopes(scopes)
        expiry = _timestamp("expires_at", expires_at)
        actor = owner_id if actor_id is None else actor_id
        cred_id = _new_id()
        try:
            with self._db.transaction() as tx:
                _account_in(tx, owner_id)
                tx.execute(
                    "INSERT INTO peer_credentials (id, owner_id, credential_type, fingerprint, "
                    "public_key_data, name, expires_at, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        cred_id,
                        owner_id,
                        kind,
                        parsed.fingerprint,
                        parsed.openssh,
                        label,
                        expiry,
                        json.dumps({"scopes": scope_list}),
                    ),
                )
                cred = self._tx_get(
                    tx,
                    PeerCredential,
                    f"{self._SELECT} WHERE id = ?",
                    (cred_id,),
                    CredentialNotFoundError(cred_id),
                )
                events.publish(
                    self._db,
                    tx,
                    "peer_credentials:created",
                    cred_id,
                    action="created",
                    actor=actor,
                    data=_public(cred),
                )
                audit(
                    tx,
                    "credential.register",
                    owner_id=actor,
                    credential_id=cred_id,
                    credential_type=kind,
                    details={"fingerprint": parsed.fingerprint, "owner_id": owner_id},
                )
        except ConstraintError as exc:
            known = _unique_violation(
                exc,
                {"peer_credentials.fingerprint": f"{parsed.fingerprint} is already registered"},
            )
            if known is None:
                raise
            raise known from exc
        return cred

    def lookup(self, fingerprint: str) -> PeerCredential:
        """The credential with this ``SHA256:...`` fingerprint."""
        return self._get(
            PeerCredential,
            f"{self._SELECT} WHERE fingerprint = ?",
            (fingerprint,),
            CredentialNotFoundError(f"no credential with fingerprint {shown(fingerprint)}"),
        )

    def verify(self, fingerprint: str) -> VerifiedCredential:
        """The account and scopes the credential with this ``SHA256:...``
        fingerprint stands for (what an SSH server asks once the peer has
        proved it holds the key). Refusals raise a distinct
        `AuthenticationError` (`UnknownCredentialError`,
        `CredentialDisabledError`, `CredentialExpiredError`,
        `CredentialRevokedError`, and `AccountInactiveError` for a suspended
        or deactivated owner) and are audited as ``credential.verify_failed``,
        aggregated per minute (see `audit_failure`). `lookup` stays a plain
        read."""
        if not isinstance(fingerprint, str):
            raise InputTypeError("the fingerprint must be a str")
        now = _now()
        with self._db.transaction() as tx:
            row = tx.query_one(
                f"{self._SELECT} WHERE fingerprint = ?", (fingerprint,), as_dict=True
            )
            cred = None if row is None else _from_row(PeerCredential, row)
            account = None if cred is None else _account_in(tx, cred.owner_id)
            refusal: Exception | None = None
            if cred is None or account is None:
                refusal = UnknownCredentialError("no credential with that fingerprint")
            elif cred.revoked_at is not None:
                refusal = CredentialRevokedError(f"credential {cred.id} was revoked")
            elif not cred.enabled:
                refusal = CredentialDisabledError(f"credential {cred.id} is disabled")
            elif cred.expires_at is not None and cred.expires_at <= now:
                refusal = CredentialExpiredError(
                    f"credential {cred.id} expired at {cred.expires_at}"
                )
            elif account.status != "active":
                refusal = AccountInactiveError(f"the credential's account is {account.status}")
            if refusal is not None:
                audit_failure(
                    tx,
                    "credential.verify_failed",
                    reason=type(refusal).__name__,
                    owner_id=None if cred is None else cred.owner_id,
                    credential_id=None if cred is None else cred.id,
                    credential_type="ssh_key" if cred is None else cred.credential_type,
                    sample=hash_key(fingerprint)[:8],
                    now=now,
                )
        if refusal is not None:
            raise refusal
        assert cred is not None and account is not None
        return VerifiedCredential(account=account, credential=cred, scopes=cred.scopes)

    def get(self, credential_id: str) -> PeerCredential:
        return self._get(
            PeerCredential,
            f"{self._SELECT} WHERE id = ?",
            (credential_id,),
            CredentialNotFoundError(f"no credential {shown(credential_id)}"),
        )

    def list(self, owner_id: str) -> builtins.list[PeerCredential]:
        return self._list(
            PeerCredential,
            f"{self._SELECT} WHERE owner_id = ? ORDER BY created_at, id",
            (owner_id,),
        )

    def revoke(self, credential_id: str, *, actor_id: str | None = None) -> PeerCredential:
        """Revoke the credential (kept, marked ``revoked_at``)."""
        return self._change(
            credential_id,
            "UPDATE peer_credentials SET revoked_at = COALESCE(revoked_at, unixepoch()), "
            "updated_at = unixepoch() WHERE id = ?",
            (),
            "revoked",
            actor_id,
            audited="credential.revoke",
        )

    def set_enabled(
        self, credential_id: str, enabled: bool, *, actor_id: str | None = None
    ) -> PeerCredential:
        """Disable a credential (reversibly: `verify` raises
        `CredentialDisabledError`) or enable it again."""
        if not isinstance(enabled, bool):
            raise InputTypeError("enabled must be a bool")
        return self._change(
            credential_id,
            "UPDATE peer_credentials SET enabled = ?, updated_at = unixepoch() WHERE id = ?",
            (int(enabled),),
            "updated",
            actor_id,
            audited="credential.enable" if enabled else "credential.disable",
        )

    def _change(
        self,
        credential_id: str,
        sql: str,
        params: Sequence[Any],
        action: str,
        actor_id: str | None,
        *,
        audited: str,
    ) -> PeerCredential:
        with self._db.transaction() as tx:
            before = self._tx_get(
                tx,
                PeerCredential,
                f"{self._SELECT} WHERE id = ?",
                (credential_id,),
                CredentialNotFoundError(f"no credential {shown(credential_id)}"),
            )
            tx.execute(sql, (*params, credential_id))
            cred = self._tx_get(
                tx,
                PeerCredential,
                f"{self._SELECT} WHERE id = ?",
                (credential_id,),
                CredentialNotFoundError(credential_id),
            )
            actor = before.owner_id if actor_id is None else actor_id
            events.publish(
                self._db,
                tx,
                f"peer_credentials:{action}",
                credential_id,
                action=action,
                actor=actor,
                data=_public(cred),
            )
            audit(
                tx,
                audited,
                owner_id=actor,
                credential_id=credential_id,
                credential_type=cred.credential_type,
                details={"fingerprint": cred.fingerprint},
            )
            return cred


# ---------------------------------------------------------------- audit


class AuditLog(_Repo):
    """``store.audit``: read the security-relevant actions."""

    def list(
        self,
        *,
        action: str | None = None,
        owner_id: str | None = None,
        org_id: str | None = None,
        limit: int = 100,
    ) -> builtins.list[AuditEntry]:
        """The newest entries first, filtered by any of the arguments."""
        clauses, params = [], []
        for column, value in (("action", action), ("owner_id", owner_id), ("org_id", org_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._list(
            AuditEntry,
            f"SELECT * FROM audit_logs{where} ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (*params, limit),
        )
