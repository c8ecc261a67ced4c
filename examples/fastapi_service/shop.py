"""What both variants of the example service share: the storage root, the
shop's SQLAlchemy model, and the tenant side (organizations, a graph of
tasks per organization, an outbox job per task).

The service keeps two kinds of data, as a real one would:

- its own tables (``orders``) in ``<root>/shop.db``, through SQLAlchemy on
  ``sqlite+alkdev``; each order's receipt is a job on the queue
  ``receipts`` in the same file, committed with the order;
- per organization, a tenant file under ``<root>/tenants/`` managed by
  `alk.Storage`: a ``tasks`` graph whose every new node commits with its
  ``task-notify`` outbox job.

The storage root is ``$ALKDEV_ROOT`` (default ``./alkdev-data``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import alkdev_storage as alk
from alkdev_storage.metagraph.graphs import Graph
from alkdev_storage.queues import Queue

RECEIPTS = "receipts"
# A receipt job claimed by a worker that died is claimable again after this
# many seconds (at-least-once: the worker's update is idempotent).
RECEIPT_CLAIM_S = 5
NOTIFY = "task-notify"
GRAPH = "backlog"

TASKS_TYPE: dict[str, Any] = {
    "name": "tasks",
    "scope": "tenant",
    "version": 1,
    "config": {"type": "directed", "multi": False, "allowSelfLoops": False},
    "nodeTypes": {
        "task": {
            "schema": {
                "type": "object",
                "required": ["title", "estimate"],
                "properties": {
                    "title": {"type": "string", "minLength": 1, "maxLength": 200},
                    "estimate": {"type": "integer", "minimum": 1},
                },
                "additionalProperties": False,
            }
        }
    },
    "edgeTypes": {
        "depends_on": {
            "schema": {"type": "object"},
            "allowedSourceTypes": ["task"],
            "allowedTargetTypes": ["task"],
        }
    },
}


def root() -> Path:
    return Path(os.environ.get("ALKDEV_ROOT", "alkdev-data"))


def shop_url() -> str:
    return f"sqlite+alkdev:///{(root() / 'shop.db').resolve()}"


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(100))
    total: Mapped[int]
    receipted: Mapped[bool] = mapped_column(default=False)


class OrderIn(BaseModel):
    item: str = Field(min_length=1, max_length=100)
    total: int = Field(ge=0)


class OrgIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    slug: str = Field(min_length=1, max_length=64)
    owner_email: str = Field(min_length=3, max_length=200)


class TaskIn(BaseModel):
    key: str = Field(min_length=1, max_length=100)
    title: str
    estimate: int
    depends_on: list[str] = Field(default_factory=list, max_length=100)


def _status(error: alk.Error) -> int:
    if isinstance(error, alk.NotFoundError):
        return 404
    if isinstance(error, alk.AlreadyExistsError):
        return 409
    if isinstance(error, ValueError):  # invalid input, a graph rule, a bad tenant id
        return 422
    return 500


def install_error_handlers(app: FastAPI) -> None:
    """The library's refusals as HTTP answers: a missing record is 404, a
    duplicate 409, invalid input or a broken graph rule 422. Anything else
    stays a 500."""

    @app.exception_handler(alk.Error)
    async def refused(request: Request, error: alk.Error) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=_status(error))


def receipts(db: alk.Database) -> Queue:
    """The queue of receipt jobs, with the same options wherever it is
    opened."""
    return db.queue(RECEIPTS, visibility_timeout_s=RECEIPT_CLAIM_S)


def order_out(order: Order) -> dict[str, Any]:
    return {"id": order.id, "item": order.item, "total": order.total, "receipted": order.receipted}


# ----------------------------------------------------------- tenant side
# Synchronous: the sync variant calls these from FastAPI's threadpool, the
# async one through asyncio.to_thread.


def create_org(store: alk.Storage, body: OrgIn) -> dict[str, Any]:
    """The organization (its owner account found or created), its tenant
    file, the ``tasks`` graph type and the ``backlog`` graph."""
    try:
        owner = store.accounts.by_email(body.owner_email)
    except alk.NotFoundError:
        owner = store.accounts.create(email=body.owner_email)
    org = store.organizations.create(name=body.name, slug=body.slug, owner_id=owner.id)
    with store.tenant(org.id) as t:
        t.graph_types.register(TASKS_TYPE)
        graph = t.graphs.create(type="tasks", name=GRAPH, status="active")
    return {"id": org.id, "slug": org.slug, "graph": graph.id}


def _backlog(t: alk.Tenant) -> Graph:
    (graph,) = (g for g in t.graphs.list(type="tasks") if g.name == GRAPH)
    return graph


def add_task(store: alk.Storage, org_id: str, body: TaskIn) -> dict[str, Any]:
    """The task node, its dependency edges and its outbox job, in one
    transaction: all of them or none."""
    with store.tenant(org_id) as t:
        graph = _backlog(t)
        with t.transaction() as tx:
            node = graph.add_node(
                body.key,
                type="task",
                attributes={"title": body.title, "estimate": body.estimate},
                tx=tx,
            )
            for other in body.depends_on:
                graph.add_edge(body.key, other, type="depends_on", tx=tx)
            t.db.queue(NOTIFY).enqueue({"task": node.key}, tx=tx)
    return {"key": node.key, "id": node.id}


def graph_view(store: alk.Storage, org_id: str) -> dict[str, Any]:
    with store.tenant(org_id) as t:
        graph = _backlog(t)
        return {
            "nodes": [{"key": n.key, **n.attributes} for n in graph.nodes()],
            "edges": [{"source": e.source, "target": e.target} for e in graph.edges()],
        }


def run_outbox(store: alk.Storage, org_id: str, worker: str = "api") -> list[str]:
    """Deliver the organization's pending task notifications (here: acked
    and returned); each ack is its own transaction."""
    with store.tenant(org_id) as t:
        queue = t.db.queue(NOTIFY)
        delivered = []
        while (job := queue.claim_one(worker)) is not None:
            delivered.append(job.payload["task"])
            queue.ack(job.id, worker)
        return delivered
