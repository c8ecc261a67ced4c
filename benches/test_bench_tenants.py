"""Migrating every tenant file: ``TenantRegistry(...).migrate_all()``.

Workloads: `tenants-migrate-all` 1,000 tenant files at version 0 (fresh
files ``alk.connect`` created and closed) brought to the newest tenant
schema with ``max_open=64``; `tenants-migrate-all-current` the same call on
1,000 files already at the newest version (what a deploy with no schema
change pays). Each round starts from freshly created files (untimed setup),
so rounds=1 per run; run it several times to see the spread.

There is no baseline here: it reports a time (docs/benchmarks.md). The
names end in neither ``_stdlib`` nor ``_sqlfn``, so ``benches/report.py``
pairs nothing; it lists them in its per-operation table (per file, from
``extra_info``). Under ``--benchmark-disable`` (CI) it uses 20 files.

Run: ``pytest benches/test_bench_tenants.py --benchmark-only -s``.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import Any

import pytest

import alkdev_storage as alk
from alkdev_storage.migrations import Migration, Schema, migrate
from alkdev_storage.tenants import MigrateAllResult, TenantRegistry

N_FILES = 1_000
N_FILES_CI = 20
MAX_OPEN = 64


def tenant_schema() -> Schema:
    """The package's tenant schema when it exists, else a stand-in of the
    same shape (a few tables and indexes)."""
    try:
        module = importlib.import_module("alkdev_storage.schema_tenant")
    except ImportError:
        module = None
    schema = getattr(module, "TENANT_SCHEMA", None)
    if isinstance(schema, Schema):
        return schema
    return Schema(
        "tenant-bench",
        0x414C4B42,
        (
            Migration(
                1,
                "metagraph",
                """
                CREATE TABLE graphs(id TEXT PRIMARY KEY, name TEXT NOT NULL, owner_id TEXT,
                                    project_id TEXT, metadata TEXT NOT NULL DEFAULT '{}');
                CREATE INDEX graphs_owner ON graphs(owner_id, project_id);
                CREATE TABLE nodes(id TEXT PRIMARY KEY, graph_id TEXT NOT NULL
                                   REFERENCES graphs(id) ON DELETE CASCADE,
                                   key TEXT NOT NULL, type TEXT NOT NULL,
                                   attributes TEXT NOT NULL DEFAULT '{}',
                                   UNIQUE(graph_id, key));
                CREATE INDEX nodes_type ON nodes(graph_id, type);
                CREATE TABLE edges(id TEXT PRIMARY KEY, graph_id TEXT NOT NULL
                                   REFERENCES graphs(id) ON DELETE CASCADE,
                                   key TEXT, type TEXT NOT NULL, source TEXT NOT NULL,
                                   target TEXT NOT NULL, UNIQUE(graph_id, key));
                CREATE INDEX edges_source ON edges(graph_id, source, type);
                CREATE INDEX edges_target ON edges(graph_id, target, type);
                """,
            ),
        ),
    )


SCHEMA = tenant_schema()


def ids(n: int) -> list[str]:
    return [f"org-{i:05d}" for i in range(n)]


def make_files(directory: Path, n: int, *, migrated: bool) -> None:
    """`n` tenant files in a fresh `directory`: at version 0 (created by
    ``alk.connect`` and closed), or already at the newest version."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for org in ids(n):
        db = alk.connect(directory / f"tenant-{org}.db")
        if migrated:
            migrate(db, SCHEMA)
        db.close()


def versions(directory: Path, n: int) -> set[tuple[int, int]]:
    """Every file's (user_version, application_id), read without migrating."""
    found = set()
    for org in ids(n):
        with alk.connect(directory / f"tenant-{org}.db", readonly=True) as db:
            row = db.query_one("SELECT * FROM pragma_user_version, pragma_application_id")
            assert row is not None
            found.add((int(row[0]), int(row[1])))
    return found


def migrate_all(directory: Path) -> MigrateAllResult:
    with TenantRegistry(directory, SCHEMA, max_open=MAX_OPEN) as registry:
        return registry.migrate_all()


def run(benchmark: Any, tmp_path: Path, *, migrated: bool) -> tuple[MigrateAllResult, int]:
    n = N_FILES_CI if benchmark.disabled else N_FILES
    directory = tmp_path / "tenants"
    # Checked before timing, on a few files.
    make_files(directory, 5, migrated=migrated)
    check = migrate_all(directory)
    assert (check.total, check.upgraded + check.current, dict(check.failed)) == (5, 5, {})
    assert versions(directory, 5) == {(SCHEMA.latest, SCHEMA.application_id)}

    def setup() -> tuple[tuple[Path], dict[str, Any]]:
        make_files(directory, n, migrated=migrated)
        return (directory,), {}

    result = benchmark.pedantic(migrate_all, setup=setup, rounds=1, iterations=1)
    benchmark.extra_info.update(per_round=n, scale=n, schema=SCHEMA.kind, max_open=MAX_OPEN)
    assert result.total == n and result.ok, result.failed
    assert versions(directory, n) == {(SCHEMA.latest, SCHEMA.application_id)}
    return result, n


@pytest.mark.benchmark(group="tenants-migrate-all")
def test_tenants_migrate_all(benchmark: Any, tmp_path: Path) -> None:
    result, n = run(benchmark, tmp_path, migrated=False)
    assert (result.upgraded, result.current) == (n, 0)
    report(benchmark, "from version 0", n)


@pytest.mark.benchmark(group="tenants-migrate-all-current")
def test_tenants_migrate_all_current(benchmark: Any, tmp_path: Path) -> None:
    result, n = run(benchmark, tmp_path, migrated=True)
    assert (result.upgraded, result.current) == (0, n)
    report(benchmark, "already current", n)


def report(benchmark: Any, what: str, n: int) -> None:
    if benchmark.disabled or benchmark.stats is None:
        return
    total = benchmark.stats.stats.median
    print(
        f"\nmigrate_all {what}: {n} tenant files ({SCHEMA.kind} schema v{SCHEMA.latest}, "
        f"max_open={MAX_OPEN}) in {total:.2f} s = {total / n * 1e3:.2f} ms per file"
    )
