"""Schema migrations: versioned, forward-only, one write transaction; a
failure (or a crash) leaves the file as it was; newer or foreign files are
refused untouched."""

from __future__ import annotations

import doctest
import hashlib
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import alkdev_storage as alk
from alkdev_storage import migrations
from alkdev_storage._native import Transaction
from alkdev_storage.errors import MigrationError, SchemaVersionError
from alkdev_storage.migrations import Migration, MigrationResult, Schema, migrate, schema_version

APP_ID = 0x4E4F5445

V1 = Migration(1, "notes", "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
V2 = Migration(
    2,
    "pinned + index",
    """
    ALTER TABLE notes ADD pinned INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX notes_pinned ON notes(pinned);
    """,
)


def seed_tags(tx: Transaction) -> None:
    tx.execute("CREATE TABLE tags(name TEXT PRIMARY KEY)")
    # A step sees what earlier steps of the same run did: one transaction.
    (count,) = tx.query("SELECT count(*) FROM notes")[0]
    tx.executemany("INSERT INTO tags(name) VALUES (?)", [("inbox",), (f"n{count}",)])


V3 = Migration(3, "tags", seed_tags)
SCHEMA = Schema("notes", APP_ID, (V1, V2, V3))

Dump = dict[str, Any]


def dump(db: alk.Database) -> Dump:
    """Everything a migration could change: the version pragmas, the whole
    of sqlite_master and the rows of every table."""
    master = db.query("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
    tables = [name for kind, name, _, _ in master if kind == "table"]
    return {
        "user_version": db.query("PRAGMA user_version"),
        "application_id": db.query("PRAGMA application_id"),
        "sqlite_master": master,
        "rows": {t: db.query(f'SELECT * FROM "{t}" ORDER BY rowid') for t in tables},
    }


@pytest.fixture
def db(tmp_path: Path) -> Iterator[alk.Database]:
    database = alk.connect(tmp_path / "notes.db")
    yield database
    database.close()


def at_v2(db: alk.Database) -> None:
    migrate(db, Schema("notes", APP_ID, (V1, V2)))
    db.executemany("INSERT INTO notes(body) VALUES (?)", [("a",), ("b",)])


def test_docstring_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(migrations, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_a_fresh_file_goes_to_the_newest_version(db: alk.Database) -> None:
    assert schema_version(db) == 0
    result = migrate(db, SCHEMA)
    assert result == MigrationResult("notes", 0, 3)
    assert result.applied == 3
    assert schema_version(db) == 3
    assert db.query("PRAGMA application_id") == [(APP_ID,)]
    assert db.query("SELECT name FROM tags ORDER BY name") == [("inbox",), ("n0",)]
    assert db.query("SELECT name FROM sqlite_master WHERE name = 'notes_pinned'") == [
        ("notes_pinned",)
    ]


def test_the_version_is_in_the_file(db: alk.Database, tmp_path: Path) -> None:
    migrate(db, SCHEMA)
    db.close()
    with alk.connect(tmp_path / "notes.db", readonly=True) as again:
        assert schema_version(again) == 3
        assert again.query("PRAGMA application_id") == [(APP_ID,)]


def test_running_again_is_a_no_op(db: alk.Database) -> None:
    calls: list[int] = []
    schema = Schema("notes", APP_ID, (V1, Migration(2, "count", lambda tx: calls.append(2))))
    migrate(db, schema)
    before = dump(db)
    result = migrate(db, schema)
    assert result == MigrationResult("notes", 2, 2) and result.applied == 0
    assert calls == [2]
    assert dump(db) == before


def test_a_later_migration_runs_only_the_new_step(db: alk.Database) -> None:
    calls: list[str] = []

    def step(name: str, sql: str) -> Callable[[Transaction], None]:
        def apply(tx: Transaction) -> None:
            calls.append(name)
            tx.executescript(sql)

        return apply

    one = Migration(1, "one", step("one", "CREATE TABLE a(x)"))
    two = Migration(2, "two", step("two", "CREATE TABLE b(x)"))
    assert migrate(db, Schema("notes", APP_ID, (one,))) == MigrationResult("notes", 0, 1)
    db.execute("INSERT INTO a VALUES (1)")
    assert migrate(db, Schema("notes", APP_ID, (one, two))) == MigrationResult("notes", 1, 2)
    assert calls == ["one", "two"]
    assert db.query("SELECT x FROM a") == [(1,)]
    assert schema_version(db) == 2


def broken_sql() -> Migration:
    # Changes things first, then fails: all of it must be rolled back.
    return Migration(
        3,
        "tags (broken)",
        """
        CREATE TABLE tags(name TEXT PRIMARY KEY);
        INSERT INTO tags VALUES ('x');
        UPDATE notes SET body = 'clobbered';
        INSERT INTO no_such_table VALUES (1);
        """,
    )


def broken_code() -> Migration:
    def apply(tx: Transaction) -> None:
        tx.execute("CREATE TABLE tags(name TEXT PRIMARY KEY)")
        tx.execute("DROP INDEX notes_pinned")
        tx.execute("DELETE FROM notes")
        raise ValueError("a bug in the migration")

    return Migration(3, "tags (broken)", apply)


@pytest.mark.parametrize(
    ("step", "cause"),
    # executescript reports SQL errors as OperationalError (execute would say
    # ProgrammingError); either way it is the SQLite error, chained.
    [(broken_sql, alk.DatabaseError), (broken_code, ValueError)],
    ids=["sql", "callable"],
)
def test_a_failing_step_leaves_the_file_unchanged_and_usable(
    db: alk.Database, step: Callable[[], Migration], cause: type[Exception]
) -> None:
    at_v2(db)
    before = dump(db)
    with pytest.raises(MigrationError, match=r"notes migration 3 \(tags \(broken\)\)") as info:
        migrate(db, Schema("notes", APP_ID, (V1, V2, step())))
    assert isinstance(info.value.__cause__, cause)
    assert "unchanged" in str(info.value)
    assert str(db.path) in str(info.value)
    assert dump(db) == before
    # Still usable: writes, reads, and the fixed migration then applies.
    db.execute("INSERT INTO notes(body, pinned) VALUES ('c', 1)")
    assert db.query("SELECT body FROM notes WHERE pinned = 1") == [("c",)]
    assert migrate(db, SCHEMA) == MigrationResult("notes", 2, 3)
    assert db.query("SELECT name FROM tags ORDER BY name") == [("inbox",), ("n3",)]


def test_a_failing_step_on_a_fresh_file_leaves_it_unmarked(db: alk.Database) -> None:
    before = dump(db)
    with pytest.raises(MigrationError):
        migrate(db, Schema("notes", APP_ID, (V1, V2, broken_sql())))
    assert dump(db) == before
    assert db.query("PRAGMA application_id") == [(0,)]
    assert migrate(db, SCHEMA).applied == 3


@pytest.mark.parametrize(
    "step",
    [
        "CREATE TABLE tags(name TEXT); COMMIT; SELECT * FROM nowhere",
        "CREATE TABLE tags(name TEXT); ROLLBACK; BEGIN; CREATE TABLE other(x)",
        "CREATE TABLE tags(name TEXT); END TRANSACTION",
    ],
)
def test_a_step_cannot_end_the_migration_half_way(db: alk.Database, step: str) -> None:
    at_v2(db)
    before = dump(db)
    sneaky = Migration(3, "commits", step)
    with pytest.raises(MigrationError, match=r"tx\.commit"):
        migrate(db, Schema("notes", APP_ID, (V1, V2, sneaky)))
    assert dump(db) == before


def test_a_callable_step_cannot_commit_either(db: alk.Database) -> None:
    at_v2(db)
    before = dump(db)

    def commits(tx: alk.Transaction) -> None:
        tx.execute("CREATE TABLE tags(name TEXT)")
        tx.execute("  /* sneaky */ commit")

    with pytest.raises(MigrationError, match=r"tx\.commit"):
        migrate(db, Schema("notes", APP_ID, (V1, V2, Migration(3, "commits", commits))))
    assert dump(db) == before


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import alkdev_storage as alk
    from alkdev_storage.migrations import Migration, Schema, migrate

    V1 = Migration(1, "notes", {v1!r})
    V2 = Migration(2, "pinned + index", {v2!r})

    def crash(tx):
        tx.execute("CREATE TABLE tags(name TEXT PRIMARY KEY)")
        tx.execute("DROP INDEX notes_pinned")
        tx.execute("UPDATE notes SET body = 'clobbered'")
        # A tiny page cache makes SQLite spill uncommitted pages into the WAL
        # before the kill, so recovery really has frames to ignore.
        tx.execute("PRAGMA cache_size = 2")
        tx.executemany(
            "INSERT INTO notes(body) VALUES (?)", [("x" * 500,) for _ in range(3000)]
        )
        print("killing", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    db = alk.connect(sys.argv[1])
    migrate(db, Schema("notes", {app_id}, (V1, V2, Migration(3, "crash", crash))))
    print("not reached", flush=True)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.timeout(60)
def test_a_crash_mid_migration_leaves_the_old_version(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    with alk.connect(path) as db:
        at_v2(db)
        before = dump(db)
    script = CRASH_SCRIPT.format(v1=V1.apply, v2=V2.apply, app_id=APP_ID)
    proc = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=50
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout == "killing\n"
    wal = path.with_name(path.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 100_000  # uncommitted frames were written
    with alk.connect(path) as db:
        assert dump(db) == before
        db.execute("INSERT INTO notes(body) VALUES ('after the crash')")
        assert migrate(db, SCHEMA) == MigrationResult("notes", 2, 3)
        assert db.query("SELECT count(*) FROM notes") == [(3,)]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(path: Path, schema: Schema, match: str) -> None:
    """Migrating `path` to `schema` raises SchemaVersionError matching
    `match`, and leaves every byte of the file as it was."""
    digest = file_digest(path)
    with alk.connect(path) as db:
        before = dump(db)
        with pytest.raises(SchemaVersionError, match=match):
            migrate(db, schema)
        assert dump(db) == before
    assert file_digest(path) == digest


def test_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    with alk.connect(path) as db:
        migrate(db, SCHEMA)
        db.execute("PRAGMA user_version = 7")
    refused(path, SCHEMA, r"schema version 7, newer than the newest .* \(3\); upgrade")
    with alk.connect(path) as db:
        assert schema_version(db) == 7


def test_a_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with alk.connect(path) as db:
        migrate(db, Schema("system", 0x53595354, (V1,)))
    refused(path, SCHEMA, r"is not a notes file \(application_id 0x53595354, expected 0x4e4f5445\)")


def test_an_unmarked_file_with_a_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    with alk.connect(path) as db:
        db.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
        db.execute("PRAGMA user_version = 1")
    refused(path, SCHEMA, "no alkdev-storage mark")


def test_the_application_id_is_set_with_the_first_migration(db: alk.Database) -> None:
    migrate(db, Schema("notes", APP_ID, (V1,)))
    assert db.query("PRAGMA application_id") == [(APP_ID,)]
    with pytest.raises(SchemaVersionError, match="not a system file"):
        migrate(db, Schema("system", APP_ID + 1, (V1,)))


@pytest.mark.parametrize("versions", [[1, 3], [0, 1], [2], [1, 1], [2, 1], [1, 2, 4]])
def test_versions_must_be_1_to_n_in_order(versions: list[int]) -> None:
    steps = tuple(Migration(v, f"m{v}", "SELECT 1") for v in versions)
    with pytest.raises(ValueError, match=r"numbered 1\.\.N in order"):
        Schema("notes", APP_ID, steps)


@pytest.mark.parametrize("app_id", [0, -1, 2**31, 2**40])
def test_application_id_must_be_a_positive_32_bit_integer(app_id: int) -> None:
    with pytest.raises(ValueError, match="application_id"):
        Schema("notes", app_id, (V1,))


def test_a_schema_without_migrations_marks_nothing(db: alk.Database) -> None:
    empty = Schema("notes", APP_ID, ())
    assert empty.latest == 0
    assert migrate(db, empty) == MigrationResult("notes", 0, 0)
    assert db.query("PRAGMA application_id") == [(0,)]


def test_schemas_are_frozen() -> None:
    with pytest.raises(AttributeError):
        SCHEMA.kind = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        V1.version = 5  # type: ignore[misc]
