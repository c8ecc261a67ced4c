"""``create_async_engine("sqlite+alkdev:///...")``: the asyncio form of the
dialect, driven through `AsyncConnection` and `AsyncSession` the way an
async service does (Core and ORM), with the queue and stream in the same
transaction, many tasks at once, and the event loop never held up while a
writer waits.

SQLAlchemy's compliance suite also runs on this form
(tests/test_sqlalchemy_suite.py), but through the suite's own greenlet
wrapper; the paths here are the ones `await conn.execute(...)` takes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("greenlet")

from sqlalchemy import ForeignKey, String, exc, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import alkdev_storage as alk
from alkdev_storage.sqlalchemy import database, transaction
from alkdev_storage.sqlalchemy.async_dialect import AlkdevAsyncDialect


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    total: Mapped[int]


def run(path: Path, program: object, pool_size: int = 5, **options: str) -> object:
    """Run `program(engine)` on a fresh async engine on `path` (with URL
    `options`), disposing it afterwards."""

    async def main() -> object:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        url = f"sqlite+alkdev:///{path}" + (f"?{query}" if query else "")
        engine = create_async_engine(url, pool_size=pool_size)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            return await program(engine)  # type: ignore[operator]
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_the_same_url_gives_the_async_form(tmp_path: Path) -> None:
    async def program(engine: AsyncEngine) -> None:
        assert isinstance(engine.sync_engine.dialect, AlkdevAsyncDialect)
        assert engine.sync_engine.dialect.is_async

    run(tmp_path / "app.db", program)


def test_core_statements_through_async_connection(tmp_path: Path) -> None:
    async def program(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                insert(Customer), [{"id": 1, "name": "ada"}, {"id": 2, "name": "bob"}]
            )
            await conn.execute(text("INSERT INTO orders(customer_id, total) VALUES (1, 5)"))
            await conn.execute(text("INSERT INTO orders(customer_id, total) VALUES (2, 7)"))
            # Reads inside the transaction see its writes; every kind of result.
            assert await conn.scalar(select(func.count()).select_from(Order)) == 2
            rows = (await conn.execute(select(Customer.name).order_by(Customer.id))).all()
            assert rows == [("ada",), ("bob",)]
            raw = await conn.exec_driver_sql("SELECT sum(total) FROM orders")
            assert raw.scalar_one() == 12
        async with engine.connect() as conn:  # reads on the snapshot, twice
            assert (await conn.execute(text("SELECT count(*) FROM customers"))).scalar() == 2
            result = await conn.execute(select(Order.total).order_by(Order.total))
            assert result.scalars().all() == [5, 7]
            mapped = (await conn.execute(select(Customer).where(Customer.id == 2))).mappings()
            assert [dict(m) for m in mapped] == [{"id": 2, "name": "bob"}]
        async with engine.connect() as conn:
            with pytest.raises(exc.IntegrityError) as refused:
                # An orphan: foreign keys are enforced here too.
                await conn.execute(text("INSERT INTO orders(customer_id, total) VALUES (9, 1)"))
            assert isinstance(refused.value.orig, alk.ConstraintError)
            await conn.rollback()

    run(tmp_path / "app.db", program)


def test_orm_writes_and_the_queue_commit_together_or_not_at_all(tmp_path: Path) -> None:
    async def program(engine: AsyncEngine) -> tuple[int, int]:
        async with AsyncSession(engine) as session, session.begin():
            session.add(Customer(id=1, name="ada"))
            await session.flush()
            session.add(Order(customer_id=1, total=10))
            await session.flush()
            db, tx = await database(session), await transaction(session)
            db.queue("receipts").enqueue({"order": 1}, tx=tx)
            db.stream("orders").publish({"order": 1}, tx=tx)
        with pytest.raises(RuntimeError, match="handler failed"):
            async with AsyncSession(engine) as session, session.begin():
                session.add(Order(customer_id=1, total=99))
                await session.flush()
                tx = await transaction(session)
                (await database(session)).queue("receipts").enqueue({"order": 2}, tx=tx)
                raise RuntimeError("the handler failed")
        async with AsyncSession(engine) as session:
            orders = (await session.scalars(select(Order.total))).all()
            assert orders == [10]
            assert (await session.get(Customer, 1)) is not None
        db = await database(engine)
        jobs = db.query_one("SELECT count(*) FROM _honker_live")
        events = db.query_one("SELECT count(*) FROM _honker_stream")
        assert jobs is not None and events is not None
        return jobs[0], events[0]

    assert run(tmp_path / "app.db", program) == (1, 1)


def test_many_sessions_at_once_take_turns_on_the_writer(tmp_path: Path) -> None:
    # More concurrent writers than the loop's default executor has threads:
    # none may park a thread on the writer, or the holder could not commit.
    async def program(engine: AsyncEngine) -> int:
        async with AsyncSession(engine) as session, session.begin():
            session.add(Customer(id=1, name="ada"))

        async def writer(n: int) -> None:
            for i in range(10):
                async with AsyncSession(engine) as session, session.begin():
                    session.add(Order(customer_id=1, total=n * 100 + i))
                    await session.flush()
                    tx = await transaction(session)
                    (await database(session)).queue("receipts").enqueue({"n": n}, tx=tx)

        async def reader() -> None:
            for _ in range(20):
                async with AsyncSession(engine) as session:
                    await session.scalar(select(func.count()).select_from(Order))

        await asyncio.gather(*(writer(n) for n in range(12)), *(reader() for _ in range(4)))
        db = await database(engine)
        row = db.query_one("SELECT count(*) FROM _honker_live")
        assert row is not None
        return int(row[0])

    started = time.monotonic()
    assert run(tmp_path / "app.db", program, pool_size=20) == 120
    assert time.monotonic() - started < 60


def test_a_writer_held_elsewhere_does_not_hold_up_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "app.db"

    async def program(engine: AsyncEngine) -> tuple[int, float]:
        db = await database(engine)
        holding = threading.Event()

        def hold() -> None:
            with db.transaction() as tx:
                tx.execute("INSERT INTO customers(id, name) VALUES (1, 'held')")
                holding.set()
                time.sleep(0.5)

        threading.Thread(target=hold, daemon=True).start()
        holding.wait(5)

        async def write() -> None:
            async with AsyncSession(engine) as session, session.begin():
                session.add(Customer(id=2, name="after"))

        started = time.monotonic()
        task = asyncio.ensure_future(write())
        ticks = 0
        while not task.done():
            await asyncio.sleep(0.01)
            ticks += 1
        await task
        return ticks, time.monotonic() - started

    ticks, waited = run(path, program)  # type: ignore[misc]
    assert waited >= 0.4
    assert ticks >= 20  # the loop ran through the half-second wait


def test_busy_timeout_is_a_busy_error(tmp_path: Path) -> None:
    async def program(engine: AsyncEngine) -> None:
        db = await database(engine)
        held = db.transaction()
        try:
            async with AsyncSession(engine) as session:
                session.add(Customer(id=1, name="late"))
                with pytest.raises(Exception, match="waited 200 ms") as caught:
                    await session.flush()
                assert isinstance(getattr(caught.value, "orig", None), alk.BusyError)
        finally:
            held.rollback()

    run(tmp_path / "app.db", program, busy_timeout_ms="200")
