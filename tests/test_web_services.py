"""The library inside a web service, driven as one is driven: FastAPI's
threadpool ending a session on another thread than the one that began it,
eight clients at once against the example service (examples/fastapi_service,
sync and async variants, each a real uvicorn process), and a server killed
mid-load.

The invariant checked throughout: every committed order has its receipt job
(pending, or done and marked on the order in the same transaction), no
refused order is left behind, and no request fails with a 500.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from sqlalchemy import ForeignKey, create_engine  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

import alkdev_storage as alk  # noqa: E402
from alkdev_storage.sqlalchemy import database, transaction  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(240)


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))


# ------------------------------------------- the threadpool, reproduced


def test_a_session_ended_on_another_thread_lets_this_thread_write(tmp_path: Path) -> None:
    """FastAPI's sequence, with plain threads: thread A runs a request that
    writes, its session's teardown is queued on thread B, and A already
    runs the next request's write. That write waits for B's rollback
    instead of failing (it failed at once with NestedTransactionError when
    transactions belonged to threads)."""
    engine = create_engine(f"sqlite+alkdev:///{tmp_path / 'app.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add(Customer(id=1))
    first = Session(engine)
    first.add(Order(customer_id=1))
    first.flush()  # request 1 holds the writer
    teardown = threading.Timer(0.2, first.close)  # its teardown, on thread B
    teardown.start()
    started = time.monotonic()
    with Session(engine) as second:  # request 2, on this thread
        second.add(Order(customer_id=1))
        second.flush()
        database(second).queue("receipts").enqueue({"n": 2}, tx=transaction(second))
        second.commit()
    waited = time.monotonic() - started
    teardown.join()
    assert 0.15 < waited < 4
    with Session(engine) as check:
        assert check.query(Order).count() == 1  # request 1 rolled back
    assert database(engine).query("SELECT count(*) FROM _honker_live") == [(1,)]
    engine.dispose()


def test_a_second_writer_that_waits_too_long_gets_busy_error(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+alkdev:///{tmp_path / 'app.db'}?busy_timeout_ms=200")
    Base.metadata.create_all(engine)
    holder = Session(engine)
    holder.add(Customer(id=1))
    holder.flush()
    outcome: list[BaseException] = []

    def write() -> None:
        with Session(engine) as session:
            session.add(Customer(id=2))
            try:
                session.flush()
            except Exception as e:  # the DB-API error, wrapped by SQLAlchemy
                outcome.append(e)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(10)
    holder.commit()
    holder.close()
    (error,) = outcome
    assert isinstance(getattr(error, "orig", None), alk.BusyError)
    assert "200 ms" in str(error)
    engine.dispose()


# ------------------------------------------------- the example service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """One uvicorn process serving a variant of the example service on a
    storage root."""

    def __init__(self, variant: str, root: Path) -> None:
        self.variant, self.root = variant, root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "ALKDEV_ROOT": str(root)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                f"examples.fastapi_service.{variant}:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.process.stderr.read()}")  # type: ignore[union-attr]
            try:
                httpx.get(f"{self.url}/orders/0", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        self.process.kill()
        raise RuntimeError("the server did not start in 30 s")

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop it (SIGTERM: the lifespan's shutdown runs) and return what it
        wrote on stderr."""
        self.process.send_signal(sig)
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return err or ""


@pytest.fixture(params=["sync_app", "async_app"])
def variant(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def drive(
    url: str, clients: int, requests_each: int, seed: int, *, until_killed: bool = False
) -> tuple[Counter[int], list[int]]:
    """`clients` threads, each with its own HTTP client, sending a mix of
    orders (3 in 4), refused orders (written, flushed, then a 409) and
    reads. Returns the status counts and the ids of the orders created.
    With `until_killed`, a client stops at its first connection error (the
    server is being killed)."""
    statuses: Counter[int] = Counter()
    created: list[int] = []
    lock = threading.Lock()

    def one(http: Any, rng: random.Random, n: int, i: int, mine: list[int]) -> int:
        pick = rng.random()
        if pick < 0.6:
            r = http.post("/orders", json={"item": f"c{n}-{i}", "total": i})
            if r.status_code == 201:
                mine.append(r.json()["id"])
        elif pick < 0.85:
            r = http.post("/orders/refused", json={"item": "refused", "total": i})
        elif mine:
            r = http.get(f"/orders/{rng.choice(mine)}")
        else:
            r = http.get("/orders/0")
        status: int = r.status_code
        return status

    def client(n: int) -> None:
        rng = random.Random(seed * 100 + n)
        mine: list[int] = []
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(requests_each):
                try:
                    status = one(http, rng, n, i, mine)
                except httpx.TransportError:
                    if until_killed:
                        break
                    raise
                with lock:
                    statuses[status] += 1
        with lock:
            created.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return statuses, created


def orders_and_jobs(root: Path) -> tuple[dict[int, bool], list[int]]:
    """(order id -> receipted, order ids of the receipt jobs still pending),
    read from the file by an independent database."""
    db = alk.connect(root / "shop.db")
    try:
        # Two reads, two snapshots: the jobs first. A job the worker handles
        # between them is then gone from the first and its receipt is in the
        # second (job and receipt commit together); the other way round, a
        # caller could see no job left and an order not yet receipted.
        pending = [
            int(order)
            for (order,) in db.query(
                "SELECT json_extract(payload, '$.order') FROM _honker_live WHERE queue = ?",
                ("receipts",),
            )
        ]
        orders = {int(i): bool(r) for i, r in db.query("SELECT id, receipted FROM orders")}
        return orders, pending
    finally:
        db.close()


def settled(root: Path, timeout_s: float = 30) -> dict[int, bool]:
    """Wait until the worker has handled every receipt job; the orders."""
    deadline = time.monotonic() + timeout_s
    while True:
        orders, pending = orders_and_jobs(root)
        if not pending or time.monotonic() > deadline:
            assert not pending, f"{len(pending)} receipt jobs still pending"
            return orders
        time.sleep(0.1)


def test_eight_clients_get_no_500_and_every_order_has_its_job(variant: str, tmp_path: Path) -> None:
    server = Server(variant, tmp_path)
    try:
        statuses, created = drive(server.url, clients=8, requests_each=50, seed=1)
        orders = settled(tmp_path)
    finally:
        err = server.stop()
    assert sum(statuses.values()) == 400
    assert not [s for s in statuses if s >= 500], (statuses, err[-3000:])
    assert set(statuses) <= {200, 201, 404, 409}, statuses
    assert statuses[409] > 50  # the refused orders ran, and were refused
    # Exactly the acknowledged orders exist (refused ones rolled back), and
    # each got its receipt: its job committed with it, and the worker's
    # update committed with the job's ack.
    assert sorted(orders) == sorted(created)
    assert all(orders.values())
    assert "Traceback" not in err, err[-3000:]


def test_a_server_killed_mid_load_loses_no_order_and_no_job(tmp_path: Path) -> None:
    server = Server("sync_app", tmp_path)
    load = threading.Thread(
        target=drive, args=(server.url, 8, 400, 2), kwargs={"until_killed": True}, daemon=True
    )
    load.start()
    time.sleep(1.5)
    server.stop(signal.SIGKILL)  # mid-request, mid-transaction, mid-ack
    load.join(60)
    orders, pending = orders_and_jobs(tmp_path)
    assert orders, "nothing committed before the kill"
    # An order is receipted exactly when its job is gone: never one without
    # the other, whatever the kill interrupted.
    assert all(orders[o] is False for o in pending)
    assert {o for o, done in orders.items() if not done} == set(pending)
    # A new server process finishes the work.
    again = Server("sync_app", tmp_path)
    try:
        after = settled(tmp_path)
    finally:
        again.stop()
    assert sorted(after) == sorted(orders) and all(after.values())


def test_tenants_graph_and_outbox_through_the_service(variant: str, tmp_path: Path) -> None:
    server = Server(variant, tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            org = http.post(
                "/orgs", json={"name": "Acme", "slug": "acme", "owner_email": "ada@acme.example"}
            )
            assert org.status_code == 201, org.text
            org_id = org.json()["id"]
            assert http.post(
                "/orgs", json=org.json() | {"name": "Acme", "owner_email": "ada@acme.example"}
            ).status_code in (409, 422)
            tasks = f"/orgs/{org_id}/tasks"
            assert (
                http.post(tasks, json={"key": "a", "title": "A", "estimate": 2}).status_code == 201
            )
            made = http.post(
                tasks, json={"key": "b", "title": "B", "estimate": 1, "depends_on": ["a"]}
            )
            assert made.status_code == 201, made.text
            # Refusals write nothing: an invalid node, an edge to no node.
            bad = http.post(tasks, json={"key": "c", "title": "C", "estimate": 0})
            assert bad.status_code == 422, bad.text
            dangling = http.post(
                tasks, json={"key": "d", "title": "D", "estimate": 1, "depends_on": ["nope"]}
            )
            assert dangling.status_code in (404, 422), dangling.text
            assert (
                http.post(tasks, json={"key": "a", "title": "A", "estimate": 2}).status_code == 409
            )
            graph = http.get(f"/orgs/{org_id}/graph").json()
            assert [n["key"] for n in graph["nodes"]] == ["a", "b"]
            assert graph["edges"] == [{"source": "b", "target": "a"}]
            # One outbox job per task that was written, none for the refused.
            assert http.post(f"/orgs/{org_id}/outbox").json() == {"delivered": ["a", "b"]}
            assert http.post(f"/orgs/{org_id}/outbox").json() == {"delivered": []}
            assert http.get("/orgs/no-such-org/graph").status_code in (404, 422)
            assert http.get("/orgs/..%2F..%2Fetc/graph").status_code in (404, 422)
    finally:
        err = server.stop()
    assert "Traceback" not in err, err[-3000:]
    assert not (tmp_path.parent / "etc").exists()
