"""SQLAlchemy on ``sqlite+alkdev`` against SQLAlchemy on stdlib ``sqlite3``
(``sqlite+pysqlite``), measured in the same run.

Both engines use the same SQLAlchemy, the same mapped classes and the same
statements, each on its own file in the same folder. The pysqlite engine is
configured like our core (honker-core's ``DEFAULT_PRAGMAS``) by a
``connect`` event: WAL, ``synchronous=NORMAL``, ``foreign_keys=ON``, 32 MB
page cache, ``temp_store=MEMORY``, ``wal_autocheckpoint=10000``; the fixtures
check journal mode and foreign keys on both (an orphan row is refused by
each). ``items.group_id`` references ``groups`` so every insert pays for its
foreign key check on both sides.

Workloads:

- ``sa-orm-bulk-insert``: 50,000 rows through the ORM, committed. The form
  SQLAlchemy's ORM guide recommends for bulk ("ORM Bulk INSERT Statements"):
  ``session.execute(insert(Item), list_of_dicts)``, which runs one
  ``executemany`` (no RETURNING, so no objects and no primary keys come back).
- ``sa-core-executemany``: 10,000 rows, ``conn.execute(items.insert(), rows)``
  in ``engine.begin()``.
- ``sa-core-select-10k``: ``conn.execute(select(items)).all()`` over 10,000 rows.
- ``sa-orm-get``: 1,000 ``session.get(Item, id)`` on distinct random ids in a
  new ``Session`` each round, so every get misses the identity map and runs
  its SELECT. Each dialect runs the session's reads its default way: ours in
  one read transaction (``snapshot_reads``, SQLite's SERIALIZABLE), pysqlite
  in one per statement. sa_orm_get_interleaved.py also measures pysqlite with
  SQLAlchemy's recipe for one transaction per session.

Each round checks out a pooled connection, as application code does.

The blob column matters: SQLAlchemy binds ``LargeBinary`` through the
driver's ``Binary``, which is ``memoryview`` in ``sqlite3`` (a GC-tracked
object per value: up to twice the cyclic GC collections per inserted row)
and ``bytes`` in ``dbapi``. Much of the insert ratios comes from that.

Run: ``pytest benches/test_bench_sqlalchemy.py --benchmark-only
--benchmark-json=out.json`` then ``python benches/report.py out.json``.
Under ``--benchmark-disable`` (CI) the workloads shrink. Insert rounds start
from an empty ``items`` table (an untimed setup clears it).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import (  # noqa: E402
    Engine,
    ForeignKey,
    LargeBinary,
    Row,
    String,
    Table,
    create_engine,
    event,
    exc,
    func,
    insert,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

N_BULK = 50_000
N_BULK_CI = 500
N_MANY = 10_000
N_MANY_CI = 200
N_SCAN = 10_000
N_SCAN_CI = 200
N_GET = 1_000
N_GET_CI = 20
N_GROUPS = 10
ROUNDS = 10
WARMUP = 1

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA cache_size=-32000",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA wal_autocheckpoint=10000",
)


class Base(DeclarativeBase):
    pass


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"))
    name: Mapped[str] = mapped_column(String(50))
    score: Mapped[float | None]
    blob: Mapped[bytes | None] = mapped_column(LargeBinary)


ITEMS = cast(Table, Item.__table__)
COUNT = select(func.count()).select_from(ITEMS)


def item(i: int) -> dict[str, Any]:
    return {"group_id": i % N_GROUPS + 1, "name": f"item-{i}", "score": i * 0.5, "blob": b"xy"}


def sized(benchmark: Any, full: int, small: int) -> int:
    """`full` when timing; `small` under ``--benchmark-disable`` (CI)."""
    return small if benchmark.disabled else full


def timed(benchmark: Any, target: Any, *args: Any, setup: Any = None) -> Any:
    return benchmark.pedantic(
        target, args=args, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1
    )


# -- engines ------------------------------------------------------------------------


def prepare(engine: Engine) -> Engine:
    """Create the tables and the groups; check WAL and foreign keys."""
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(Group), [{"id": g, "name": f"group-{g}"} for g in range(1, N_GROUPS + 1)]
        )
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with pytest.raises(exc.IntegrityError), engine.begin() as conn:
        conn.execute(ITEMS.insert(), {**item(0), "group_id": N_GROUPS + 1})
    return engine


@pytest.fixture(scope="module", autouse=True)
def settled_statements() -> Iterator[None]:
    """Run each workload's statements once on a throwaway in-memory engine
    before either measured engine sees them. SQLAlchemy memoizes the
    annotated columns of ORM statements on first use; the engine that
    compiles a statement first keeps the unmemoized objects in its cache
    key, and every later lookup in that engine's statement cache pays an
    equality check (about 1 µs per ``session.get`` here). Without this the
    engine measured first is penalised, whichever driver it runs."""
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(Group), [{"id": g, "name": f"group-{g}"} for g in range(1, 11)])
        conn.execute(ITEMS.insert(), [{"id": 1, **item(1)}])
    with Session(engine) as session:
        session.execute(insert(Item), [{"id": 2, **item(2)}])
        assert session.get(Item, 1) is not None
    core_select(engine)
    engine.dispose()
    yield


def configure_like_core(dbapi_connection: Any, connection_record: object) -> None:
    """A pysqlite engine's ``connect`` listener: conftest.py's ``PRAGMAS``."""
    cursor = dbapi_connection.cursor()
    for pragma in PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


@pytest.fixture
def alkdev(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite+alkdev:///{tmp_path}/a.db")
    yield prepare(engine)
    engine.dispose()


@pytest.fixture
def pysqlite(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite+pysqlite:///{tmp_path}/b.db")
    event.listen(engine, "connect", configure_like_core)
    yield prepare(engine)
    engine.dispose()


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(COUNT).scalar_one())


def clear(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(ITEMS.delete())


def fill(engine: Engine, n: int) -> None:
    with engine.begin() as conn:
        conn.execute(ITEMS.insert(), [{"id": i, **item(i)} for i in range(1, n + 1)])


# -- ORM bulk insert, committed ---------------------------------------------------------


def orm_bulk_insert(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with Session(engine) as session:
        session.execute(insert(Item), rows)
        session.commit()


def stored(engine: Engine, item_id: int) -> dict[str, Any]:
    with Session(engine) as session:
        found = session.get(Item, item_id)
        assert found is not None
        return {key: getattr(found, key) for key in ("group_id", "name", "score", "blob")}


def bench_orm_bulk_insert(benchmark: Any, engine: Engine) -> None:
    rows = [item(i) for i in range(sized(benchmark, N_BULK, N_BULK_CI))]
    orm_bulk_insert(engine, rows)
    assert count(engine) == len(rows)
    assert stored(engine, len(rows)) == rows[-1]  # ids start at 1
    clear(engine)
    timed(benchmark, orm_bulk_insert, engine, rows, setup=lambda: clear(engine))
    assert count(engine) == len(rows)


@pytest.mark.benchmark(group="sa-orm-bulk-insert")
def test_orm_bulk_insert_ours(benchmark: Any, alkdev: Engine) -> None:
    bench_orm_bulk_insert(benchmark, alkdev)


@pytest.mark.benchmark(group="sa-orm-bulk-insert")
def test_orm_bulk_insert_pysqlite(benchmark: Any, pysqlite: Engine) -> None:
    bench_orm_bulk_insert(benchmark, pysqlite)


# -- Core executemany, committed ---------------------------------------------------------


def core_executemany(engine: Engine, rows: list[dict[str, Any]]) -> int:
    with engine.begin() as conn:
        return int(conn.execute(ITEMS.insert(), rows).rowcount)


def bench_core_executemany(benchmark: Any, engine: Engine) -> None:
    rows = [item(i) for i in range(sized(benchmark, N_MANY, N_MANY_CI))]
    assert core_executemany(engine, rows) == len(rows)
    assert count(engine) == len(rows)
    assert stored(engine, len(rows)) == rows[-1]
    clear(engine)
    assert timed(benchmark, core_executemany, engine, rows, setup=lambda: clear(engine)) == len(
        rows
    )
    assert count(engine) == len(rows)


@pytest.mark.benchmark(group="sa-core-executemany")
def test_core_executemany_ours(benchmark: Any, alkdev: Engine) -> None:
    bench_core_executemany(benchmark, alkdev)


@pytest.mark.benchmark(group="sa-core-executemany")
def test_core_executemany_pysqlite(benchmark: Any, pysqlite: Engine) -> None:
    bench_core_executemany(benchmark, pysqlite)


# -- Core select of every row ---------------------------------------------------------------


def core_select(engine: Engine) -> Sequence[Row[Any]]:
    with engine.connect() as conn:
        return conn.execute(select(ITEMS)).all()


def bench_core_select(benchmark: Any, engine: Engine) -> None:
    n = sized(benchmark, N_SCAN, N_SCAN_CI)
    fill(engine, n)
    rows = core_select(engine)
    assert len(rows) == n
    assert rows[-1]._asdict() == {"id": n, **item(n)}
    assert len(benchmark(core_select, engine)) == n


@pytest.mark.benchmark(group="sa-core-select-10k")
def test_core_select_ours(benchmark: Any, alkdev: Engine) -> None:
    bench_core_select(benchmark, alkdev)


@pytest.mark.benchmark(group="sa-core-select-10k")
def test_core_select_pysqlite(benchmark: Any, pysqlite: Engine) -> None:
    bench_core_select(benchmark, pysqlite)


# -- ORM get by primary key ----------------------------------------------------------------


def orm_get(engine: Engine, keys: list[int]) -> list[Item | None]:
    """Every key once in a new Session: each get misses the identity map."""
    with Session(engine) as session:
        get = session.get
        return [get(Item, k) for k in keys]


def check_got(found: list[Item | None], keys: list[int]) -> None:
    assert len(found) == len(keys)
    for obj, k in zip(found, keys, strict=True):
        assert obj is not None and obj.id == k and obj.name == f"item-{k}"


def bench_orm_get(benchmark: Any, engine: Engine) -> None:
    n = sized(benchmark, N_SCAN, N_SCAN_CI)
    fill(engine, n)
    keys = random.Random(7).sample(range(1, n + 1), sized(benchmark, N_GET, N_GET_CI))
    check_got(orm_get(engine, keys), keys)
    check_got(benchmark(orm_get, engine, keys), keys)


@pytest.mark.benchmark(group="sa-orm-get")
def test_orm_get_ours(benchmark: Any, alkdev: Engine) -> None:
    bench_orm_get(benchmark, alkdev)


@pytest.mark.benchmark(group="sa-orm-get")
def test_orm_get_pysqlite(benchmark: Any, pysqlite: Engine) -> None:
    bench_orm_get(benchmark, pysqlite)
