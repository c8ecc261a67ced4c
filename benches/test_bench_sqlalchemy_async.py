"""SQLAlchemy's asyncio extension on ``sqlite+alkdev`` against the same on
``sqlite+aiosqlite``, measured in the same run.

``create_async_engine("sqlite+alkdev:///...")`` gets our dialect's asyncio
form (alkdev_storage/sqlalchemy/async_dialect.py): the statement that opens
a transaction takes the writer from the loop (``aio.begin_transaction``); a
statement inside the open transaction or on the connection's read snapshot
(the first read included) runs at once on the loop's thread; what may wait
(``commit``, a read on a pooled reader, opening a connection) runs on the
loop's default executor, executed and fetched in one trip. The baseline, ``sqlite+aiosqlite``, runs
every call (cursor, execute, fetch, commit) on its connection's own thread,
one trip each.

Both engines use the same SQLAlchemy, the same mapped classes and the same
program, each on its own file in the same folder. The aiosqlite engine is
configured like our core (honker-core's ``DEFAULT_PRAGMAS``, as
test_bench_sqlalchemy.py configures pysqlite) by a ``connect`` event on
``engine.sync_engine``: WAL, ``synchronous=NORMAL``, ``foreign_keys=ON``,
32 MB page cache, ``temp_store=MEMORY``, ``wal_autocheckpoint=10000``; the
fixtures check journal mode, synchronous and foreign keys on both (an orphan
row is refused by each). ``items.group_id`` references ``groups`` so every
insert pays for its foreign key check on both sides. Both engines keep their
dialect's pool (``AsyncAdaptedQueuePool``), sized to the mixed workload's
tasks (``pool_size=8``) so that no round opens connections, and their
transaction handling: ours runs a session's reads on one snapshot
(``snapshot_reads``), aiosqlite (pysqlite's rules) one read transaction per
statement.

Each test owns one event loop (``asyncio.Runner``); a round is one complete
``runner.run(program)`` on it, so the loop's executor threads (ours) and the
pooled connections' threads (aiosqlite) live across rounds, as in a server.

Workloads:

- ``sa-async-orm-insert``: 200 ORM units of work in turn, each
  ``async with AsyncSession(engine) as s, s.begin(): s.add_all(10 items)``:
  10 ``INSERT ... RETURNING id`` (SQLAlchemy sends one row per statement
  when SQLite must return the new keys in order), then the commit.
- ``sa-async-mixed``: inserts plus concurrent session reads. 400 operations
  drawn by 8 tasks (``asyncio.gather``) from one shared list: every 4th an
  insert unit of work as above, the others a read session of 4
  ``await s.get(Item, id)`` on distinct random ids and one
  ``select(Item).where(Item.id.between(k, k + 9))``, all on rows filled
  before the round (5,000). The list comes from a fixed seed, so both
  engines do the same operations; which task runs which one depends on the
  engine's timing.
- ``sa-async-select``: ``(await conn.execute(select(items))).all()`` over
  5,000 rows.

Every round is checked by an untimed teardown: the reads found exactly their
rows, the inserts stored exactly their rows; the setup before it removes the
rows the previous round inserted, so every round starts from the same table.
The untimed helpers (schema, fill, checks) run their Core statements in one
``AsyncConnection.run_sync`` each, apart from the asyncio Core API that
``sa-async-select`` measures.

Run: ``pytest benches/test_bench_sqlalchemy_async.py --benchmark-only
--benchmark-json=out.json`` then ``python benches/report.py out.json``.
Under ``--benchmark-disable`` (CI) the workloads shrink and run once, checked.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")
pytest.importorskip("greenlet")
pytest.importorskip("aiosqlite")

import test_bench_sqlalchemy as sync_bench  # noqa: E402
from sqlalchemy import Connection, Row, create_engine, event, exc, insert, select  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

N_UNITS = 200
N_UNITS_CI = 10
ROWS_PER_UNIT = 10
N_FILL = 5_000
N_FILL_CI = 200
N_OPS = 400
N_OPS_CI = 16
TASKS = 8
INSERT_EVERY = 4
GETS = 4
SPAN = 10  # rows of a read session's range select
N_GROUPS = sync_bench.N_GROUPS  # the groups item() spreads rows over
SEED = 7
ROUNDS = 10
WARMUP = 1

_T = TypeVar("_T")

# The schema, the rows and the baseline's PRAGMAs (those of our core) are
# test_bench_sqlalchemy.py's, so the sync and async numbers describe the
# same tables.
PRAGMAS = sync_bench.PRAGMAS
Base, Group, Item = sync_bench.Base, sync_bench.Group, sync_bench.Item
ITEMS, COUNT, item = sync_bench.ITEMS, sync_bench.COUNT, sync_bench.item


def new_item(unit: int, j: int) -> dict[str, Any]:
    """Row `j` of insert unit `unit` (its id comes from the database)."""
    return {"group_id": (unit + j) % N_GROUPS + 1, "name": f"new-{unit}-{j}", "score": 1.5}


def sized(benchmark: Any, full: int, small: int) -> int:
    """`full` when timing; `small` under ``--benchmark-disable`` (CI)."""
    return small if benchmark.disabled else full


def timed(
    benchmark: Any,
    target: Callable[[], Any],
    setup: Callable[[], None],
    teardown: Callable[[], None],
) -> Any:
    return benchmark.pedantic(
        target,
        setup=setup,
        teardown=teardown,
        rounds=ROUNDS,
        warmup_rounds=WARMUP,
        iterations=1,
    )


# -- engines ------------------------------------------------------------------------


async def on_connection(
    engine: AsyncEngine, work: Callable[[Connection], _T], *, begin: bool = False
) -> _T:
    """`work` on a pooled connection, in one ``run_sync`` (in a transaction,
    committed, when `begin`): how the untimed setup and checks run."""
    if begin:
        async with engine.begin() as conn:
            return await conn.run_sync(work)
    async with engine.connect() as conn:
        return await conn.run_sync(work)


def create(conn: Connection) -> None:
    Base.metadata.create_all(conn)
    conn.execute(insert(Group), [{"id": g, "name": f"group-{g}"} for g in range(1, N_GROUPS + 1)])


def check_settings(conn: Connection) -> None:
    assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def insert_orphan(conn: Connection) -> None:
    conn.execute(ITEMS.insert(), {**item(0), "group_id": N_GROUPS + 1})


async def prepare(engine: AsyncEngine) -> AsyncEngine:
    """Create the tables and the groups; check WAL and foreign keys."""
    await on_connection(engine, create, begin=True)
    await on_connection(engine, check_settings)
    with pytest.raises(exc.IntegrityError):
        await on_connection(engine, insert_orphan, begin=True)
    return engine


@pytest.fixture(scope="module", autouse=True)
def settled_statements() -> Iterator[None]:
    """Run each workload's ORM statements once on a throwaway in-memory
    engine before either measured engine sees them (see
    test_bench_sqlalchemy.py: SQLAlchemy memoizes the annotated columns of
    ORM statements on first use, and the engine that compiles a statement
    first pays for it on every later statement-cache lookup)."""
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        create(conn)
        conn.execute(ITEMS.insert(), [{"id": i, **item(i)} for i in range(1, SPAN + 1)])
    with Session(engine) as session, session.begin():
        session.add_all([Item(**new_item(0, j)) for j in range(ROWS_PER_UNIT)])
    with Session(engine) as session:
        assert session.get(Item, 1) is not None
        assert len(session.scalars(select(Item).where(Item.id.between(1, SPAN))).all()) == SPAN
    with engine.connect() as conn:
        conn.execute(select(ITEMS)).all()
    engine.dispose()
    yield


def configure_like_core(dbapi_connection: Any, connection_record: object) -> None:
    """An aiosqlite engine's ``connect`` listener (on ``sync_engine``): the
    PRAGMAS, through SQLAlchemy's adapted (awaiting) cursor."""
    cursor = dbapi_connection.cursor()
    for pragma in PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    """The test's event loop: every round and the engine's setup and disposal
    run on it."""
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture
def alkdev(runner: asyncio.Runner, tmp_path: Path) -> Iterator[AsyncEngine]:
    engine = create_async_engine(f"sqlite+alkdev:///{tmp_path}/a.db", pool_size=TASKS)
    yield runner.run(prepare(engine))
    runner.run(engine.dispose())


@pytest.fixture
def aiosqlite(runner: asyncio.Runner, tmp_path: Path) -> Iterator[AsyncEngine]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/b.db", pool_size=TASKS)
    event.listen(engine.sync_engine, "connect", configure_like_core)
    yield runner.run(prepare(engine))
    runner.run(engine.dispose())


def fill(n: int) -> Callable[[Connection], None]:
    """Rows 1 to `n` (run with ``begin=True``)."""

    def work(conn: Connection) -> None:
        conn.execute(ITEMS.insert(), [{"id": i, **item(i)} for i in range(1, n + 1)])

    return work


def clear_after(n: int) -> Callable[[Connection], None]:
    """Remove the rows beyond the first `n`, those a round inserted (run with
    ``begin=True``)."""

    def work(conn: Connection) -> None:
        conn.execute(ITEMS.delete().where(ITEMS.c.id > n))

    return work


def names_after(n: int) -> Callable[[Connection], list[str]]:
    """The names of the rows beyond the first `n`."""

    def work(conn: Connection) -> list[str]:
        return list(conn.execute(select(ITEMS.c.name).where(ITEMS.c.id > n)).scalars())

    return work


def count(conn: Connection) -> int:
    return int(conn.execute(COUNT).scalar_one())


class Rounds:
    """One engine's rounds of a workload on the test's loop: `round` is the
    timed program; `reset` (setup) and `check` (teardown) are untimed."""

    def __init__(
        self,
        runner: asyncio.Runner,
        engine: AsyncEngine,
        n_fill: int,
        program: Callable[[], Coroutine[Any, Any, list[Any]]],
        check: Callable[[list[Any], list[str]], None],
    ) -> None:
        self.runner = runner
        self.engine = engine
        self.n_fill = n_fill
        self.program = program
        self.checker = check
        self.results: list[Any] = []
        self.checked = 0

    def round(self) -> list[Any]:
        self.results = self.runner.run(self.program())
        return self.results

    def reset(self) -> None:
        self.results = []
        self.runner.run(on_connection(self.engine, clear_after(self.n_fill), begin=True))

    def check(self) -> None:
        """What the last round returned and what it left in the table."""
        names = self.runner.run(on_connection(self.engine, names_after(self.n_fill)))
        self.checker(self.results, names)
        total = self.runner.run(on_connection(self.engine, count))
        assert total == self.n_fill + len(names)  # and the filled rows are all there
        self.checked += 1

    def run(self, benchmark: Any) -> None:
        self.reset()
        self.round()
        self.check()  # once before timing, whatever the mode
        timed(benchmark, self.round, self.reset, self.check)
        if not benchmark.disabled:  # every timed and warm-up round was checked
            assert self.checked == 1 + WARMUP + ROUNDS
        self.check()  # the last round (teardowns do not run under --benchmark-disable)


# -- ORM units of work, one after another --------------------------------------------


async def insert_unit(engine: AsyncEngine, unit: int) -> int:
    """One ORM unit of work: ROWS_PER_UNIT new items, committed."""
    async with AsyncSession(engine) as session, session.begin():
        session.add_all([Item(**new_item(unit, j)) for j in range(ROWS_PER_UNIT)])
    return ROWS_PER_UNIT


async def orm_insert(engine: AsyncEngine, units: int) -> list[Any]:
    return [await insert_unit(engine, unit) for unit in range(units)]


def inserted(units: Sequence[int]) -> list[str]:
    return sorted(new_item(unit, j)["name"] for unit in units for j in range(ROWS_PER_UNIT))


def bench_orm_insert(benchmark: Any, runner: asyncio.Runner, engine: AsyncEngine) -> None:
    units = sized(benchmark, N_UNITS, N_UNITS_CI)

    def check(results: list[Any], names: list[str]) -> None:
        assert results == [ROWS_PER_UNIT] * units
        assert sorted(names) == inserted(range(units))

    Rounds(runner, engine, 0, lambda: orm_insert(engine, units), check).run(benchmark)


@pytest.mark.benchmark(group="sa-async-orm-insert")
def test_async_orm_insert_ours(benchmark: Any, runner: asyncio.Runner, alkdev: AsyncEngine) -> None:
    bench_orm_insert(benchmark, runner, alkdev)


@pytest.mark.benchmark(group="sa-async-orm-insert")
def test_async_orm_insert_aiosqlite(
    benchmark: Any, runner: asyncio.Runner, aiosqlite: AsyncEngine
) -> None:
    bench_orm_insert(benchmark, runner, aiosqlite)


# -- inserts plus concurrent session reads --------------------------------------------


@dataclass(frozen=True)
class Op:
    """One operation of the mixed workload: an insert unit of work
    (``insert``), or a read session of ``gets`` and the range from ``start``."""

    index: int
    insert: bool
    gets: tuple[int, ...] = ()
    start: int = 0


@dataclass(frozen=True)
class Read:
    """What a read session saw: the names its gets found (None: missing) and
    the ids its range select returned."""

    names: list[str | None]
    ids: list[int]


def plan(n_ops: int, n_fill: int) -> list[Op]:
    rng = random.Random(SEED)
    return [
        Op(i, True)
        if i % INSERT_EVERY == 0
        else Op(
            i,
            False,
            tuple(rng.sample(range(1, n_fill + 1), GETS)),
            rng.randint(1, n_fill - SPAN + 1),
        )
        for i in range(n_ops)
    ]


async def read_session(engine: AsyncEngine, op: Op) -> Read:
    async with AsyncSession(engine) as session:
        names = []
        for key in op.gets:
            found = await session.get(Item, key)
            names.append(None if found is None else found.name)
        between = select(Item).where(Item.id.between(op.start, op.start + SPAN - 1))
        ids = [found.id for found in (await session.scalars(between)).all()]
    return Read(names, ids)


async def mixed(engine: AsyncEngine, ops: list[Op]) -> list[Any]:
    """TASKS tasks take the operations in turn from one shared iterator."""
    results: list[Any] = [None] * len(ops)
    pending = iter(ops)

    async def worker() -> None:
        for op in pending:
            results[op.index] = await (
                insert_unit(engine, op.index) if op.insert else read_session(engine, op)
            )

    await asyncio.gather(*(worker() for _ in range(TASKS)))
    return results


def bench_mixed(benchmark: Any, runner: asyncio.Runner, engine: AsyncEngine) -> None:
    n_fill = sized(benchmark, N_FILL, N_FILL_CI)
    ops = plan(sized(benchmark, N_OPS, N_OPS_CI), n_fill)
    units = [op.index for op in ops if op.insert]
    runner.run(on_connection(engine, fill(n_fill), begin=True))

    def check(results: list[Any], names: list[str]) -> None:
        for op, result in zip(ops, results, strict=True):
            if op.insert:
                assert result == ROWS_PER_UNIT, (op, result)
            else:
                assert result == Read(
                    [f"item-{key}" for key in op.gets], list(range(op.start, op.start + SPAN))
                ), (op, result)
        assert sorted(names) == inserted(units)

    Rounds(runner, engine, n_fill, lambda: mixed(engine, ops), check).run(benchmark)


@pytest.mark.benchmark(group="sa-async-mixed")
def test_async_mixed_ours(benchmark: Any, runner: asyncio.Runner, alkdev: AsyncEngine) -> None:
    bench_mixed(benchmark, runner, alkdev)


@pytest.mark.benchmark(group="sa-async-mixed")
def test_async_mixed_aiosqlite(
    benchmark: Any, runner: asyncio.Runner, aiosqlite: AsyncEngine
) -> None:
    bench_mixed(benchmark, runner, aiosqlite)


# -- Core select of every row ---------------------------------------------------------------


async def core_select(engine: AsyncEngine) -> Sequence[Row[Any]]:
    async with engine.connect() as conn:
        return (await conn.execute(select(ITEMS))).all()


def bench_select(benchmark: Any, runner: asyncio.Runner, engine: AsyncEngine) -> None:
    n = sized(benchmark, N_FILL, N_FILL_CI)
    runner.run(on_connection(engine, fill(n), begin=True))
    rows = runner.run(core_select(engine))
    assert len(rows) == n
    assert rows[-1]._asdict() == {"id": n, **item(n)}
    assert len(benchmark(lambda: runner.run(core_select(engine)))) == n


@pytest.mark.benchmark(group="sa-async-select")
def test_async_select_ours(benchmark: Any, runner: asyncio.Runner, alkdev: AsyncEngine) -> None:
    bench_select(benchmark, runner, alkdev)


@pytest.mark.benchmark(group="sa-async-select")
def test_async_select_aiosqlite(
    benchmark: Any, runner: asyncio.Runner, aiosqlite: AsyncEngine
) -> None:
    bench_select(benchmark, runner, aiosqlite)
