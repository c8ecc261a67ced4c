"""The example service, synchronous: plain ``def`` endpoints, which FastAPI
runs on its threadpool, and a ``yield`` dependency for the SQLAlchemy
session, whose teardown FastAPI runs on another thread of that pool.

    ALKDEV_ROOT=/tmp/shop uvicorn examples.fastapi_service.sync_app:app

A worker thread turns receipt jobs into ``orders.receipted``: the update
and the job's ack commit together, so an order is marked once however
often the worker is killed.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import alkdev_storage as alk
from alkdev_storage.sqlalchemy import database, transaction

from . import shop


def receipts_worker(db: alk.Database, stop: threading.Event) -> None:
    queue = shop.receipts(db)
    for job in queue.iter_claim("receipts-worker", stop=stop.is_set):
        with db.transaction() as tx:
            tx.execute("UPDATE orders SET receipted = 1 WHERE id = ?", (job.payload["order"],))
            queue.ack(job.id, "receipts-worker", tx=tx)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    shop.root().mkdir(parents=True, exist_ok=True)
    engine = create_engine(shop.shop_url())
    shop.Base.metadata.create_all(engine)
    store = alk.Storage.open(shop.root())
    stop = threading.Event()
    worker = threading.Thread(target=receipts_worker, args=(database(engine), stop), daemon=True)
    worker.start()
    app.state.engine, app.state.store = engine, store
    try:
        yield
    finally:
        stop.set()
        worker.join(5)
        store.close()
        engine.dispose()


app = FastAPI(lifespan=lifespan)
shop.install_error_handlers(app)


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as session:
        yield session


def get_store(request: Request) -> alk.Storage:
    store: alk.Storage = request.app.state.store
    return store


SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[alk.Storage, Depends(get_store)]


@app.post("/orders", status_code=201)
def create_order(body: shop.OrderIn, session: SessionDep) -> dict[str, Any]:
    order = shop.Order(item=body.item, total=body.total)
    session.add(order)
    session.flush()  # the order has its id
    shop.receipts(database(session)).enqueue({"order": order.id}, tx=transaction(session))
    session.commit()  # the order and its receipt job, together
    return shop.order_out(order)


@app.post("/orders/refused", status_code=201)
def refused_order(body: shop.OrderIn, session: SessionDep) -> dict[str, Any]:
    """Writes, then refuses: the session's rollback runs in the dependency's
    teardown, on another pool thread."""
    session.add(shop.Order(item=body.item, total=body.total))
    session.flush()
    raise HTTPException(409, "refused after the order was written")


@app.get("/orders/{order_id}")
def get_order(order_id: int, session: SessionDep) -> dict[str, Any]:
    order = session.get(shop.Order, order_id)
    if order is None:
        raise HTTPException(404, "no such order")
    return shop.order_out(order)


@app.post("/orgs", status_code=201)
def create_org(body: shop.OrgIn, store: StoreDep) -> dict[str, Any]:
    return shop.create_org(store, body)


@app.post("/orgs/{org_id}/tasks", status_code=201)
def add_task(org_id: str, body: shop.TaskIn, store: StoreDep) -> dict[str, Any]:
    return shop.add_task(store, org_id, body)


@app.get("/orgs/{org_id}/graph")
def graph(org_id: str, store: StoreDep) -> dict[str, Any]:
    return shop.graph_view(store, org_id)


@app.post("/orgs/{org_id}/outbox")
def run_outbox(org_id: str, store: StoreDep) -> dict[str, Any]:
    return {"delivered": shop.run_outbox(store, org_id)}
