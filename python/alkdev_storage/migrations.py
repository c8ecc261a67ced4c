"""Versioned, forward-only schema migrations, run on open in one write
transaction.

>>> import alkdev_storage as alk, tempfile, os
>>> from alkdev_storage.migrations import Migration, Schema, migrate
>>> notes = Schema("notes", 0x4E4F5445, (
...     Migration(1, "notes table", "CREATE TABLE notes(id TEXT PRIMARY KEY, body TEXT)"),
...     Migration(2, "pinned", "ALTER TABLE notes ADD pinned INTEGER NOT NULL DEFAULT 0"),
... ))
>>> db = alk.connect(os.path.join(tempfile.mkdtemp(), "notes.db"))
>>> migrate(db, notes)
MigrationResult(kind='notes', from_version=0, to_version=2)
>>> migrate(db, notes)
MigrationResult(kind='notes', from_version=2, to_version=2)
>>> db.close()

A file's version is SQLite's ``PRAGMA user_version`` and its kind is
``PRAGMA application_id``; both change in the same transaction as the
migrations, so a failure (or a crash) leaves the file at its old version
with its old schema. A file whose version is newer than the newest
migration this package knows, or whose kind is another schema's, is refused
with `SchemaVersionError` and left untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alkdev_storage._native import Transaction
from alkdev_storage.errors import InvalidInputError, MigrationError, SchemaVersionError

if TYPE_CHECKING:
    from alkdev_storage._database import Database

Step = str | Callable[[Transaction], None]


@dataclass(frozen=True, slots=True)
class Migration:
    """One step: a SQL script, or a function run with the open transaction."""

    version: int
    name: str
    apply: Step


@dataclass(frozen=True, slots=True)
class Schema:
    """The migrations of one kind of file, versions 1..N in order.

    `application_id` (a 32-bit integer) marks files of this kind, so a
    tenant file is never migrated as a system file or the reverse.
    """

    kind: str
    application_id: int
    migrations: tuple[Migration, ...]

    def __post_init__(self) -> None:
        versions = [m.version for m in self.migrations]
        if versions != list(range(1, len(versions) + 1)):
            raise InvalidInputError(
                f"{self.kind} migrations must be numbered 1..N in order: {versions}"
            )
        if not 0 < self.application_id < 2**31:
            raise InvalidInputError("application_id must be a positive 32-bit integer")

    @property
    def latest(self) -> int:
        return len(self.migrations)


@dataclass(frozen=True, slots=True)
class MigrationResult:
    kind: str
    from_version: int
    to_version: int

    @property
    def applied(self) -> int:
        return self.to_version - self.from_version


def _pragma(tx: Transaction, name: str) -> int:
    row = tx.query_one(f"PRAGMA {name}")
    assert row is not None
    return int(row[0])


def _check(schema: Schema, version: int, app_id: int, path: object) -> None:
    if app_id not in (0, schema.application_id):
        raise SchemaVersionError(
            f"{path} is not a {schema.kind} file (application_id {app_id:#x}, "
            f"expected {schema.application_id:#x})"
        )
    if app_id == 0 and version != 0:
        raise SchemaVersionError(
            f"{path} has schema version {version} but no alkdev-storage mark; "
            f"refusing to treat it as a {schema.kind} file"
        )
    if version > schema.latest:
        raise SchemaVersionError(
            f"{path} is at {schema.kind} schema version {version}, newer than the newest "
            f"this alkdev-storage knows ({schema.latest}); upgrade alkdev-storage"
        )


def schema_version(db: Database) -> int:
    """The file's schema version (0 for a file no migration has touched)."""
    row = db.query_one("PRAGMA user_version")
    assert row is not None
    return int(row[0])


def migrate(db: Database, schema: Schema) -> MigrationResult:
    """Bring `db` to `schema`'s newest version in one write transaction.

    Raises `SchemaVersionError` for a newer or foreign file and
    `MigrationError` (cause chained) when a step fails; either way the file
    is unchanged. A database opened read-only is checked, not changed: it
    must already be at the newest version (`SchemaVersionError` if not).
    """
    if db.readonly:
        row = db.query_one("SELECT * FROM pragma_user_version, pragma_application_id")
        assert row is not None
        version, application_id = int(row[0]), int(row[1])
        _check(schema, version, application_id, db.path)
        if version < schema.latest:
            raise SchemaVersionError(
                f"{db.path} is at {schema.kind} schema version {version}, not "
                f"{schema.latest}: a read-only open cannot migrate it; open it read-write once"
            )
        return MigrationResult(schema.kind, version, version)
    with db.transaction() as tx:
        version = _pragma(tx, "user_version")
        _check(schema, version, _pragma(tx, "application_id"), db.path)
        for step in schema.migrations[version:]:
            try:
                if isinstance(step.apply, str):
                    tx.executescript(step.apply)
                else:
                    step.apply(tx)
            except Exception as exc:
                raise MigrationError(
                    f"{schema.kind} migration {step.version} ({step.name}) failed on "
                    f"{db.path}: {exc}; the file is unchanged"
                ) from exc
        if version < schema.latest:
            # Both pragmas take literals only; the values are our own integers.
            tx.execute(f"PRAGMA application_id = {int(schema.application_id)}")
            tx.execute(f"PRAGMA user_version = {int(schema.latest)}")
    return MigrationResult(schema.kind, version, schema.latest)
