"""`Storage`: a storage root holding ``system.db`` and one tenant file per
organization (``tenants/tenant-{orgId}.db``). SPEC §3.

>>> import alkdev_storage as alk, tempfile
>>> store = alk.Storage.open(tempfile.mkdtemp())
>>> ada = store.accounts.create(email="ada@example.com")
>>> acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
>>> tenant = store.tenant(acme.id)
>>> [g.name for g in tenant.graphs.list()]  # its ACL graph (docs/acl.md)
['acl']
>>> store.close()
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from alkdev_storage._checks import shown
from alkdev_storage._closing import Closing
from alkdev_storage._database import Database, connect
from alkdev_storage.acl import ACL_GRAPH_TYPE, AclSync
from alkdev_storage.errors import NotFoundError, TenantNotFoundError
from alkdev_storage.identity import (
    Accounts,
    ApiKeys,
    AuditLog,
    Organizations,
    PeerCredentials,
)
from alkdev_storage.limits import DEFAULT_LIMITS, Limits
from alkdev_storage.metagraph.system import SystemGraphTypes
from alkdev_storage.metagraph.types import GraphTypeInfo, list_types, mirror_system_types
from alkdev_storage.metagraph.views import AccountView, Tenant
from alkdev_storage.migrations import MigrationResult, migrate
from alkdev_storage.schema_system import SYSTEM_SCHEMA
from alkdev_storage.schema_tenant import TENANT_SCHEMA
from alkdev_storage.secret_store import SECRETS_GRAPH_TYPE
from alkdev_storage.snapshot import SnapshotResult, snapshot
from alkdev_storage.tenants import MigrateAllResult, TenantRegistry

SYSTEM_FILE = "system.db"
#: System graph types every storage root has (registered on open).
BUILTIN_TYPES = (ACL_GRAPH_TYPE, SECRETS_GRAPH_TYPE)
#: A tenant file without an organization is archived on open only once it
#: is this old (seconds), so a create in flight elsewhere is left alone.
ORPHAN_GRACE_S = 600.0
TENANTS_DIR = "tenants"


class Storage(Closing):
    """A storage root. Open it with `Storage.open`."""

    def __init__(
        self,
        root: Path,
        system: Database,
        tenants: TenantRegistry,
        system_migration: MigrationResult,
    ) -> None:
        self.root = root
        self.system = system
        self.tenants = tenants
        self.system_migration = system_migration
        self.limits = DEFAULT_LIMITS
        self.accounts = Accounts(system)
        self.organizations = Organizations(system, tenants)
        self.api_keys = ApiKeys(system)
        self.peer_credentials = PeerCredentials(system)
        self.audit = AuditLog(system)
        self._types_lock = threading.Lock()
        self._canonical: list[GraphTypeInfo] | None = None
        self._types_generation = 0
        self._seeded: dict[str, int] = {}
        self.graph_types = SystemGraphTypes(self)
        self.acl = AclSync(self)
        self.organizations.membership_sync = self.acl
        self.accounts.membership_sync = self.acl
        tenants.on_open = self._seed

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str],
        *,
        max_open_tenants: int = 64,
        idle_close_s: float | None = 300.0,
        tenant_lease_timeout_s: float = 30.0,
        limits: Limits = DEFAULT_LIMITS,
        create: bool = True,
        readonly: bool = False,
        acl_inline: bool = True,
    ) -> Storage:
        """Open (with `create`, first creating) the storage root: migrates
        ``system.db`` in one transaction and archives tenant files left
        without an organization (a crash between creating a tenant file and
        committing its organization).

        At most `max_open_tenants` tenant files are open at once; a handle
        unused for `idle_close_s` is closed. When every open one is in use
        (leased by a `Tenant`), opening another waits up to
        `tenant_lease_timeout_s` for one to be given back, then raises
        `TenantHandlesBusyError` (see `TenantRegistry`). `limits` bounds
        every input (see `Limits`).

        `readonly=True` serves reads from a root that must not (or cannot)
        change: a read-only file system, a snapshot, a restored backup. It
        creates, migrates, seeds and archives nothing (every file must
        already be at the newest schema version), and any write raises
        `ReadOnlyError`. On read-only media a file whose last writer closed
        cleanly (no ``-wal`` left) is read as immutable.

        On open, the built-in system graph types (``acl``, ``secrets``) are
        registered (a no-op once they are). `acl_inline`: a membership
        change updates the organization's ACL graph in the same call, once
        ``system.db`` has committed it (see `AclSync`); ``False`` leaves
        that to a worker (``store.acl.run_worker()``, ``alkdev-storage acl
        sync``)."""
        path = Path(root)
        if readonly or not create:
            if not (path / SYSTEM_FILE).is_file():
                raise NotFoundError(f"{path} is not a storage root (no {SYSTEM_FILE})")
        else:
            (path / TENANTS_DIR).mkdir(parents=True, exist_ok=True)
        system = connect(path / SYSTEM_FILE, readonly=readonly)
        try:
            result = migrate(system, SYSTEM_SCHEMA)
            tenants = TenantRegistry(
                path / TENANTS_DIR,
                TENANT_SCHEMA,
                max_open=max_open_tenants,
                idle_close_s=idle_close_s,
                lease_timeout_s=tenant_lease_timeout_s,
                connect=functools.partial(connect, readonly=True) if readonly else connect,
                readonly=readonly,
            )
        except BaseException:
            system.close()
            raise
        store = cls(path, system, tenants, result)
        store.limits = limits
        store.acl.inline = acl_inline
        if not readonly:
            try:
                for spec in BUILTIN_TYPES:
                    store.graph_types.register(spec)
                store._archive_orphans()
            except BaseException:
                store.close()
                raise
        return store

    @property
    def readonly(self) -> bool:
        """True for a root opened with ``readonly=True``."""
        return self.tenants.readonly

    def _archive_orphans(self) -> None:
        """Archive tenant files with no organization row that have not been
        touched for `ORPHAN_GRACE_S`: younger ones may belong to a create
        still in flight in another process."""
        known = {row[0] for row in self.system.query("SELECT id FROM organizations")}
        cutoff = time.time() - ORPHAN_GRACE_S
        for org_id in self.tenants.ids():
            if org_id in known:
                continue
            try:
                modified = self.tenants.path_for(org_id).stat().st_mtime
            except FileNotFoundError:
                continue
            if modified < cutoff:
                self.tenants.archive(org_id)

    def tenant(self, org_id: str) -> Tenant:
        """The organization's tenant file with the platform's rights (no
        scope checks); `TenantNotFoundError` if it has none. It holds a
        lease on the file until it is closed (``with``) or dropped."""
        self.tenants.path_for(org_id)
        if not self.tenants.exists(org_id):
            raise TenantNotFoundError(f"organization {shown(org_id)} has no tenant file")
        return Tenant(self, org_id)

    def as_account(self, account_id: str) -> AccountView:
        """The storage as `account_id` sees it: tenant files of its
        organizations only, graph types under the scope rules."""
        return AccountView(self, self.accounts.get(account_id))

    # -- system graph types ---------------------------------------------------

    def _system_types(self) -> list[GraphTypeInfo]:
        with self._types_lock:
            if self._canonical is None:
                self._canonical = list_types(self.system)
            return self._canonical

    def _system_type_names(self) -> set[str]:
        return {t.name for t in self._system_types()}

    def _seed(self, tenant: Database) -> None:
        """Mirror the canonical system types into a tenant file (on open;
        a read-only file keeps the copies it has)."""
        if tenant.readonly:
            return
        with self._types_lock:
            generation = self._types_generation
        mirror_system_types(tenant, self._system_types())
        with self._types_lock:
            self._seeded[str(tenant.path)] = generation

    def _ensure_seeded(self, tenant: Database) -> None:
        """Mirror again if system types changed since this file was seeded
        (a tenant file open across a ``store.graph_types.register``)."""
        with self._types_lock:
            current = self._seeded.get(str(tenant.path)) == self._types_generation
        if not current and not tenant.readonly:
            self._seed(tenant)

    def _types_changed(self) -> None:
        with self._types_lock:
            self._canonical = None
            self._types_generation += 1

    def migrate_all(
        self, *, progress: bool | Callable[[int, int], None] = False
    ) -> MigrateAllResult:
        """Bring every tenant file to the newest schema (``system.db`` is
        migrated on open), at most `max_open_tenants` open at a time;
        ``progress=True`` draws a progress bar on stderr."""
        migrate(self.system, SYSTEM_SCHEMA)
        return self.tenants.migrate_all(progress=progress)

    def snapshot(
        self,
        destination: str | os.PathLike[str],
        *,
        progress: bool | Callable[[int, int], None] = False,
    ) -> SnapshotResult:
        """A consistent copy of the whole root in the new folder
        `destination`, taken while the root serves (see
        `alkdev_storage.snapshot`)."""
        return snapshot(self, destination, progress=progress)

    def purge(self, org_id: str) -> int:
        """Delete a deleted organization's archived tenant files; how many."""
        return self.tenants.purge(org_id)

    def close(self) -> None:
        """Close every tenant file and ``system.db``. Idempotent."""
        self.tenants.close()
        self.system.close()

    def __repr__(self) -> str:
        return f"<Storage {shown(str(self.root))}>"
