"""The example service, asynchronous: ``async def`` endpoints with an
``AsyncSession`` from ``create_async_engine`` on the same ``sqlite+alkdev``
URL, the receipt job committed with the order through
``await transaction(session)``, and the receipts worker an asyncio task.

    ALKDEV_ROOT=/tmp/shop uvicorn examples.fastapi_service.async_app:app

The tenant side (`alk.Storage`) is synchronous and runs through
``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

import alkdev_storage as alk
from alkdev_storage.aio import AsyncDatabase
from alkdev_storage.sqlalchemy import database, transaction

from . import shop


async def receipts_worker(db: alk.Database) -> None:
    queue, adb = shop.receipts(db), AsyncDatabase(db)
    async for job in queue.claim("receipts-worker", idle_poll_s=1.0):
        async with adb.transaction() as tx:
            order = job.payload["order"]
            await tx.execute("UPDATE orders SET receipted = 1 WHERE id = ?", (order,))
            queue.ack(job.id, "receipts-worker", tx=tx.native)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    shop.root().mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(shop.shop_url())
    async with engine.begin() as conn:
        await conn.run_sync(shop.Base.metadata.create_all)
    store = await asyncio.to_thread(alk.Storage.open, shop.root())
    worker = asyncio.create_task(receipts_worker(await database(engine)))
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    app.state.store = store
    try:
        yield
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await asyncio.to_thread(store.close)
        await engine.dispose()


app = FastAPI(lifespan=lifespan)
shop.install_error_handlers(app)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


def get_store(request: Request) -> alk.Storage:
    store: alk.Storage = request.app.state.store
    return store


SessionDep = Annotated[AsyncSession, Depends(get_session)]
StoreDep = Annotated[alk.Storage, Depends(get_store)]


@app.post("/orders", status_code=201)
async def create_order(body: shop.OrderIn, session: SessionDep) -> dict[str, Any]:
    order = shop.Order(item=body.item, total=body.total)
    session.add(order)
    await session.flush()  # the order has its id
    db, tx = await database(session), await transaction(session)
    shop.receipts(db).enqueue({"order": order.id}, tx=tx)  # in the held transaction
    await session.commit()  # the order and its receipt job, together
    return shop.order_out(order)


@app.post("/orders/refused", status_code=201)
async def refused_order(body: shop.OrderIn, session: SessionDep) -> dict[str, Any]:
    session.add(shop.Order(item=body.item, total=body.total))
    await session.flush()
    raise HTTPException(409, "refused after the order was written")


@app.get("/orders/{order_id}")
async def get_order(order_id: int, session: SessionDep) -> dict[str, Any]:
    order = await session.get(shop.Order, order_id)
    if order is None:
        raise HTTPException(404, "no such order")
    return shop.order_out(order)


@app.post("/orgs", status_code=201)
async def create_org(body: shop.OrgIn, store: StoreDep) -> dict[str, Any]:
    return await asyncio.to_thread(shop.create_org, store, body)


@app.post("/orgs/{org_id}/tasks", status_code=201)
async def add_task(org_id: str, body: shop.TaskIn, store: StoreDep) -> dict[str, Any]:
    return await asyncio.to_thread(shop.add_task, store, org_id, body)


@app.get("/orgs/{org_id}/graph")
async def graph(org_id: str, store: StoreDep) -> dict[str, Any]:
    return await asyncio.to_thread(shop.graph_view, store, org_id)


@app.post("/orgs/{org_id}/outbox")
async def run_outbox(org_id: str, store: StoreDep) -> dict[str, Any]:
    return {"delivered": await asyncio.to_thread(shop.run_outbox, store, org_id)}
