"""`snapshot`: a consistent copy of a whole storage root, taken while it
serves (``alkdev-storage snapshot``, `Storage.snapshot`). docs/cluster.md.

Each file is copied with SQLite's online backup (`Database.backup`), so each
copy is one transaction-consistent state of its file. The files are copied
``system.db`` first, then the tenant file of every organization that copy
of ``system.db`` holds, so the snapshot never has an organization without
its tenant file (a tenant file is created before its organization commits).
A tenant file whose organization was deleted after ``system.db`` was copied
is taken from its archive. Tenant files created after that moment are left
out: their organizations are not in the copy.

>>> import alkdev_storage as alk, tempfile, os
>>> store = alk.Storage.open(tempfile.mkdtemp())
>>> ada = store.accounts.create(email="ada@example.com")
>>> acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
>>> copy = store.snapshot(os.path.join(tempfile.mkdtemp(), "copy"))
>>> (copy.files, copy.tenants == (acme.id,))
(2, True)
>>> alk.Storage.open(copy.root, readonly=True).organizations.get(acme.id).slug
'acme'
>>> store.close()
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from alkdev_storage._database import connect
from alkdev_storage._progress import ProgressBar
from alkdev_storage.errors import InvalidInputError, TenantNotFoundError

if TYPE_CHECKING:
    from alkdev_storage.storage import Storage

SYSTEM_FILE = "system.db"
TENANTS_DIR = "tenants"


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    """What `snapshot` wrote: the new root, its file count (``system.db``
    included), the organizations whose tenant files it holds, the pages
    copied and the time taken."""

    root: Path
    files: int
    tenants: tuple[str, ...]
    pages: int
    seconds: float


def snapshot(
    store: Storage,
    destination: str | os.PathLike[str],
    *,
    progress: bool | Callable[[int, int], None] = False,
) -> SnapshotResult:
    """Copy `store`'s root to the new folder `destination` (see the module
    docs for what consistent means across files). The copy is written to a
    temporary folder beside it and renamed into place once every file is
    complete and synced: `destination` holds a whole snapshot or nothing.
    ``progress=True`` draws a bar on stderr (files copied of files to copy);
    a callable gets ``(done, total)``."""
    started = time.perf_counter()
    target = Path(destination)
    if target.exists():
        raise InvalidInputError(
            f"snapshot folder {target} already exists; a snapshot never overwrites"
        )
    if not target.parent.is_dir():
        raise InvalidInputError(f"folder {target.parent} does not exist")
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / TENANTS_DIR).mkdir(parents=True)
    try:
        pages = store.system.backup(partial / SYSTEM_FILE)
        orgs = _organizations(partial / SYSTEM_FILE)
        report = ProgressBar("snapshot", after_s=1.0) if progress is True else progress or None
        total = len(orgs) + 1
        if report:
            report(1, total)
        for done, org_id in enumerate(orgs, start=2):
            pages += _copy_tenant(store, org_id, partial / TENANTS_DIR / f"tenant-{org_id}.db")
            if report:
                report(done, total)
        _sync_dir(partial / TENANTS_DIR)
        _sync_dir(partial)
        partial.rename(target)
        _sync_dir(target.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return SnapshotResult(
        root=target,
        files=len(orgs) + 1,
        tenants=tuple(orgs),
        pages=pages,
        seconds=time.perf_counter() - started,
    )


def _organizations(system_copy: Path) -> list[str]:
    copy = connect(system_copy, readonly=True)
    try:
        return [row[0] for row in copy.query("SELECT id FROM organizations ORDER BY id")]
    finally:
        copy.close()


def _copy_tenant(store: Storage, org_id: str, out: Path) -> int:
    """Back up the organization's live tenant file, or (deleted since
    ``system.db`` was copied) its newest archive."""
    try:
        with store.tenants.lease(org_id) as db:
            return db.backup(out)
    except TenantNotFoundError:
        archives = store.tenants.archived(org_id)
        if not archives:
            raise
    # An archive is one checkpointed file that nothing writes again.
    archive = connect(archives[-1], readonly=True)
    try:
        return archive.backup(out)
    finally:
        archive.close()


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
