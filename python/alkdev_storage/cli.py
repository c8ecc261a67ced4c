"""The ``alkdev-storage`` command line (also ``python -m alkdev_storage``).

Exit codes: 0 success, 1 a user error (one line on stderr, no traceback),
2 a usage error (from argparse).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import alkdev_storage as alk

DEFAULT_ROOT = Path("alkdev-data")

T = TypeVar("T")


def _timed(action: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s" if seconds > 0 else "n/a"


def _scalar(db: alk.Database, sql: str, params: tuple[int | str, ...] = ()) -> Any:
    """The single value of a query that always returns one row (an aggregate,
    a function call)."""
    row = db.query_one(sql, params)
    assert row is not None, sql
    return row[0]


def demo(root: Path, *, rows: int = 20_000, out: Callable[[str], None] = print) -> dict[str, int]:
    """Run the end-to-end story on ``root/demo.db`` and print what happened.

    Re-runnable: the demo's own table, queue and topic are reset first.
    Returns the final counts (rows, jobs done, events) for callers and tests.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / "demo.db"
    out(f"alkdev-storage {alk.__version__} · SQLite {alk.sqlite_version()} (bundled)")
    out(f"database: {path.resolve()}")
    with alk.connect(path) as db:
        db.executescript(
            """
            DROP TABLE IF EXISTS demo_orders;
            CREATE TABLE demo_orders(
              id INTEGER PRIMARY KEY, customer TEXT NOT NULL, total REAL NOT NULL);
            DELETE FROM _honker_live WHERE queue = 'demo-receipts';
            DELETE FROM _honker_dead WHERE queue = 'demo-receipts';
            DELETE FROM _honker_stream WHERE topic = 'demo_orders:created';
            """
        )

        batch = [(f"customer-{i % 97}", round(i * 0.25, 2)) for i in range(rows)]
        result, took = _timed(
            lambda: db.executemany("INSERT INTO demo_orders(customer, total) VALUES (?, ?)", batch)
        )
        out(f"bulk insert   {result.rowcount:>7,} rows in one transaction  {_rate(rows, took)}")

        keys = [(i * 7919) % rows + 1 for i in range(2_000)]
        found, took = _timed(
            lambda: [db.query_one("SELECT * FROM demo_orders WHERE id = ?", (k,)) for k in keys]
        )
        assert all(found)
        out(f"point select  {len(keys):>7,} lookups on the reader pool  {_rate(len(keys), took)}")

        # The transactional outbox: a business row, a queued job and a stream
        # event commit together, or not at all.
        receipts = db.queue("demo-receipts")
        created = db.stream("demo_orders:created")

        def order(tx: alk.Transaction, customer: str) -> int:
            r = tx.execute(
                "INSERT INTO demo_orders(customer, total) VALUES (?, ?)", (customer, 9.5)
            )
            assert r.lastrowid is not None
            receipts.enqueue({"order": r.lastrowid}, tx=tx)
            created.publish({"order": r.lastrowid, "customer": customer}, tx=tx)
            return r.lastrowid

        with db.transaction() as tx:
            committed = order(tx, "alice")
        tx = db.transaction()
        order(tx, "mallory")
        tx.rollback()
        jobs = _scalar(db, "SELECT count(*) FROM _honker_live WHERE queue = 'demo-receipts'")
        events = _scalar(
            db, "SELECT count(*) FROM _honker_stream WHERE topic = 'demo_orders:created'"
        )
        mallory = _scalar(db, "SELECT count(*) FROM demo_orders WHERE customer = 'mallory'")
        out(
            f"outbox        order {committed} committed with 1 job + 1 event; "
            f"rolled-back order left rows={mallory}, jobs={jobs}, events={events}"
        )

        # An asyncio worker sleeps until a commit wakes it (the process's one
        # watcher thread), then claims and acks.
        async def work() -> tuple[int, float]:
            async def late_order() -> int:
                await asyncio.sleep(0.05)
                with db.transaction() as tx:
                    return order(tx, "bob")

            producer = asyncio.create_task(late_order())
            jobs = receipts.claim("demo-worker", idle_poll_s=1.0)
            done, started = 0, time.perf_counter()
            while done < 2:
                job = await asyncio.wait_for(anext(jobs), timeout=10)
                done += job.ack()
            await producer
            await jobs.aclose()
            return done, time.perf_counter() - started

        done, took = asyncio.run(work())
        out(f"worker        async worker claimed and acked {done} jobs in {took * 1e3:.0f} ms")

        with db.subscribe("demo_orders:created", from_offset=0) as sub:
            seen = [e.payload["customer"] for e in sub.poll()]
        out(f"stream        subscriber replayed {len(seen)} event(s): {', '.join(seen)}")

        total = _scalar(db, "SELECT count(*) FROM demo_orders")
        stats = db.stats
        out(
            f"summary       {total:,} orders · "
            f"{stats['statements_prepared']} statements compiled, "
            f"{stats['statement_cache_hits']:,} cache hits"
        )
        return {"orders": total, "jobs_done": done, "events": len(seen)}


def init(root: Path, *, out: Callable[[str], None] = print) -> None:
    """Create (or open and migrate) the storage root."""
    with alk.Storage.open(root) as store:
        migration = store.system_migration
        state = (
            f"migrated {migration.from_version} -> {migration.to_version}"
            if migration.applied
            else f"at version {migration.to_version}"
        )
        out(f"storage root {root.resolve()}: system.db {state}, {len(store.tenants.ids())} tenants")


def tenants_migrate(
    root: Path, *, progress: bool = True, out: Callable[[str], None] = print
) -> int:
    """Migrate every tenant file; the exit status (1 if any failed)."""
    with alk.Storage.open(root, create=False) as store:
        result = store.migrate_all(progress=progress)
    out(
        f"tenants: {result.total} files, {result.upgraded} migrated, {result.current} already "
        f"current, {len(result.failed)} failed, in {result.elapsed_s:.2f} s"
    )
    for org_id, error in sorted(result.failed.items()):
        out(f"  {org_id}: {error}")
    return 0 if result.ok else 1


def tenants_list(root: Path, *, out: Callable[[str], None] = print) -> None:
    with alk.Storage.open(root, create=False) as store:
        for org_id in store.tenants.ids():
            out(org_id)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alkdev-storage",
        description="Storage for multi-tenant applications in plain SQLite files.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {alk.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo_cmd = commands.add_parser("demo", help="run the end-to-end demo and print what happened")
    root_help = f"storage root folder (default: ./{DEFAULT_ROOT})"
    demo_cmd.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=root_help)
    init_cmd = commands.add_parser("init", help="create or upgrade a storage root")
    init_cmd.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=root_help)
    tenants_cmd = commands.add_parser("tenants", help="tenant files")
    tenant_actions = tenants_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    migrate_cmd = tenant_actions.add_parser(
        "migrate", help="bring every tenant file to the newest schema, with a progress bar"
    )
    migrate_cmd.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=root_help)
    migrate_cmd.add_argument(
        "--no-progress", action="store_true", help="do not draw the progress bar"
    )
    list_cmd = tenant_actions.add_parser("list", help="print the org id of every tenant file")
    list_cmd.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=root_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            demo(args.root)
        elif args.command == "init":
            init(args.root)
        elif args.command == "tenants" and args.action == "migrate":
            return tenants_migrate(args.root, progress=not args.no_progress)
        elif args.command == "tenants" and args.action == "list":
            tenants_list(args.root)
        return 0
    except (alk.Error, OSError) as exc:
        print(f"alkdev-storage: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
