"""An ORM session's rows, jobs, events and notifications share one
transaction (issue 6, acceptance: "an ORM session that adds rows and
enqueues a job and publishes an event, then rolls back, leaves no row, job or
event; commit lands all three; a second process sees all three or none")."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, String, create_engine, exc, insert, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import alkdev_storage as alk
from alkdev_storage import dbapi
from alkdev_storage.errors import BusyError
from alkdev_storage.sqlalchemy import database, transaction
from conftest import alkdev_engine

pytestmark = pytest.mark.timeout(120)

QUEUE, TOPIC, CHANNEL = "receipts", "orders", "order-events"


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(40), unique=True)
    total: Mapped[int]


# One statement, so one snapshot: three separate queries could straddle a
# commit and see a torn state that never existed.
SNAPSHOT_SQL = (
    "SELECT (SELECT count(*) FROM orders),"
    f" (SELECT count(*) FROM _honker_live WHERE queue = '{QUEUE}'),"
    f" (SELECT count(*) FROM _honker_stream WHERE topic = '{TOPIC}'),"
    f" (SELECT count(*) FROM _honker_notifications WHERE channel = '{CHANNEL}')"
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "shop.db"


@pytest.fixture
def engine(path: Path) -> Iterator[Engine]:
    yield from alkdev_engine(path, Base.metadata)


def committed(path: Path) -> tuple[int, int, int, int]:
    """(orders, jobs, events, notifications) committed in the file, as an
    independent database sees them (opened read-only: it only counts)."""
    db = alk.connect(path, readonly=True)
    try:
        row = db.query_one(SNAPSHOT_SQL)
        assert row is not None
        return tuple(row)  # type: ignore[return-value]
    finally:
        db.close()


def place_order(session: Session, item: str, total: int, *, notify: bool = False) -> Order:
    """The outbox pattern through the ORM: a row, its job and its event (and
    optionally a notification), all in the session's transaction."""
    order = Order(item=item, total=total)
    session.add(order)
    session.flush()  # assigns order.id (INSERT ... RETURNING in the transaction)
    db, tx = database(session), transaction(session)
    db.queue(QUEUE).enqueue({"order": order.id, "item": item}, tx=tx)
    db.stream(TOPIC).publish({"order": order.id, "total": total}, key=item, tx=tx)
    if notify:
        db.notify(CHANNEL, {"order": order.id}, tx=tx)
    return order


def in_session(session: Session) -> tuple[int, ...]:
    """The same counts as seen inside the session's own transaction."""
    row = session.execute(text(SNAPSHOT_SQL)).one()
    return tuple(row)


# ------------------------------------------------------------- one process


def test_rollback_leaves_no_row_job_or_event(engine: Engine, path: Path) -> None:
    with Session(engine) as session:
        place_order(session, "lamp", 30, notify=True)
        place_order(session, "desk", 200)
        # The transaction sees its own writes; nobody else does.
        assert in_session(session) == (2, 2, 2, 1)
        assert committed(path) == (0, 0, 0, 0)
        session.rollback()
        assert in_session(session) == (0, 0, 0, 0)
    assert committed(path) == (0, 0, 0, 0)
    # The writer was handed back: an independent writer gets it at once.
    db = alk.connect(path)
    try:
        assert db.queue(QUEUE).claim_one("w") is None
        assert db.stream(TOPIC).read_since(0) == []
        db.queue(QUEUE).enqueue({"after": "rollback"})
        assert committed(path) == (0, 1, 0, 0)
    finally:
        db.close()


def test_commit_lands_row_job_and_event(engine: Engine, path: Path) -> None:
    with Session(engine) as session:
        lamp = place_order(session, "lamp", 30, notify=True)
        desk = place_order(session, "desk", 200)
        ids = [lamp.id, desk.id]
        session.commit()
    assert ids == [1, 2]
    assert committed(path) == (2, 2, 2, 1)
    db = alk.connect(path)
    try:
        jobs = db.queue(QUEUE).claim_batch("worker", 10)
        assert sorted((j.payload["order"], j.payload["item"]) for j in jobs) == [
            (1, "lamp"),
            (2, "desk"),
        ]
        events = db.stream(TOPIC).read_since(0)
        assert [(e.key, e.payload) for e in events] == [
            ("lamp", {"order": 1, "total": 30}),
            ("desk", {"order": 2, "total": 200}),
        ]
        assert db.query("SELECT id, item, total FROM orders ORDER BY id") == [
            (1, "lamp", 30),
            (2, "desk", 200),
        ]
    finally:
        db.close()


def test_exception_inside_session_begin_rolls_everything_back(engine: Engine, path: Path) -> None:
    with pytest.raises(LookupError, match="out of stock"), Session(engine) as session:
        with session.begin():
            place_order(session, "lamp", 30, notify=True)
            assert in_session(session) == (1, 1, 1, 1)
            raise LookupError("out of stock")
    assert committed(path) == (0, 0, 0, 0)
    # The same block without the exception commits all of it.
    with Session(engine) as session, session.begin():
        place_order(session, "lamp", 30, notify=True)
    assert committed(path) == (1, 1, 1, 1)


def test_a_failed_flush_rolls_back_the_job_enqueued_before_it(engine: Engine, path: Path) -> None:
    with Session(engine) as session, session.begin():
        place_order(session, "lamp", 30)
    with pytest.raises(exc.IntegrityError), Session(engine) as session, session.begin():
        place_order(session, "desk", 200)  # job and event, then ...
        session.add(Order(item="lamp", total=1))  # ... a duplicate: the flush fails
        session.flush()
    assert committed(path) == (1, 1, 1, 0)
    db = alk.connect(path)
    try:
        assert [e.key for e in db.stream(TOPIC).read_since(0)] == ["lamp"]
    finally:
        db.close()


def test_core_connection_shares_the_transaction(engine: Engine, path: Path) -> None:
    with engine.connect() as conn:
        order_id = conn.execute(
            insert(Order).values(item="lamp", total=30).returning(Order.id)
        ).scalar_one()
        db = database(conn)
        db.queue(QUEUE).enqueue({"order": order_id}, tx=transaction(conn))
        db.stream(TOPIC).publish({"order": order_id}, tx=transaction(conn))
        assert committed(path) == (0, 0, 0, 0)
        conn.rollback()
        assert committed(path) == (0, 0, 0, 0)
        conn.execute(insert(Order).values(item="desk", total=200))
        db.queue(QUEUE).enqueue({"order": 2}, tx=transaction(conn))
        db.stream(TOPIC).publish({"order": 2}, tx=transaction(conn))
        conn.commit()
    assert committed(path) == (1, 1, 1, 0)


def test_transaction_before_any_sql_opens_the_write_transaction(engine: Engine, path: Path) -> None:
    with Session(engine) as session:
        tx = transaction(session)  # no SQL has run yet
        assert tx.active
        assert transaction(session) is tx  # the same one until it ends
        database(session).queue(QUEUE).enqueue({"first": True}, tx=tx)
        session.add(Order(item="lamp", total=30))
        session.flush()
        database(session).stream(TOPIC).publish({"second": True}, tx=transaction(session))
        assert transaction(session) is tx
        session.commit()
        assert not tx.active
        # The next transaction of the session is a new native one.
        assert transaction(session) is not tx
        session.rollback()
    assert committed(path) == (1, 1, 1, 0)


def test_savepoint_rolled_back_while_the_outer_transaction_commits(
    engine: Engine, path: Path
) -> None:
    # The core runs honker's primitives on the transaction's own SQLite
    # connection, so a ROLLBACK TO the session's savepoint undoes the job,
    # event and notification written inside it, just like the rows.
    with Session(engine) as session:
        place_order(session, "lamp", 30)
        nested = session.begin_nested()
        place_order(session, "desk", 200, notify=True)
        assert in_session(session) == (2, 2, 2, 1)
        nested.rollback()
        assert in_session(session) == (1, 1, 1, 0)
        # A released savepoint keeps its part.
        with session.begin_nested():
            place_order(session, "chair", 80, notify=True)
        # One rolled back by an exception drops its part again.
        with pytest.raises(ZeroDivisionError), session.begin_nested():
            place_order(session, "rug", 60, notify=True)
            _ = 1 / 0
        assert in_session(session) == (2, 2, 2, 1)
        assert committed(path) == (0, 0, 0, 0)
        session.commit()
    assert committed(path) == (2, 2, 2, 1)
    db = alk.connect(path)
    try:
        jobs = db.queue(QUEUE).claim_batch("w", 10)
        assert sorted(j.payload["item"] for j in jobs) == ["chair", "lamp"]
        assert [e.key for e in db.stream(TOPIC).read_since(0)] == ["lamp", "chair"]
        assert db.query("SELECT item FROM orders ORDER BY id") == [("lamp",), ("chair",)]
        notes = db.query(f"SELECT payload FROM _honker_notifications WHERE channel = '{CHANNEL}'")
        assert [json.loads(n[0]) for n in notes] == [{"order": 2}]
    finally:
        db.close()


def test_notify_in_the_session_transaction(engine: Engine, path: Path) -> None:
    listener = database(engine).listen(CHANNEL)
    try:
        with Session(engine) as session:
            order = place_order(session, "lamp", 30, notify=True)
            assert order.id == 1
            # Not delivered while uncommitted ...
            assert listener.poll() == []
            session.rollback()
        # ... nor after a rollback.
        assert listener.poll() == []
        assert committed(path) == (0, 0, 0, 0)

        with Session(engine) as session, session.begin():
            order = place_order(session, "lamp", 30, notify=True)
            note_id = database(session).notify(
                CHANNEL, {"second": order.id}, tx=transaction(session)
            )
        notes = listener.poll()
        assert [(n.id, n.channel, n.payload) for n in notes] == [
            (note_id - 1, CHANNEL, {"order": 1}),
            (note_id, CHANNEL, {"second": 1}),
        ]
        assert listener.poll() == []
        assert committed(path) == (1, 1, 1, 2)
    finally:
        listener.close()


def test_forgetting_tx_while_the_session_holds_the_writer_says_why(path: Path) -> None:
    engine = create_engine(f"sqlite+alkdev:///{path}?busy_timeout_ms=100")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Order(item="lamp", total=30))
        session.flush()
        # The enqueue waits for the session's transaction (another thread
        # could end it), then names the likely cause.
        with pytest.raises(BusyError, match="begun on this thread"):
            database(session).queue(QUEUE).enqueue({"lost": True})  # no tx=
        with pytest.raises(BusyError, match="begun on this thread"):
            database(session).stream(TOPIC).publish({"lost": True})
        # The session's transaction is untouched and still commits.
        database(session).queue(QUEUE).enqueue({"kept": True}, tx=transaction(session))
        session.commit()
    engine.dispose()
    assert committed(path) == (1, 1, 0, 0)


def test_autocommit_connections_have_no_transaction_to_share(engine: Engine, path: Path) -> None:
    auto = engine.execution_options(isolation_level="AUTOCOMMIT")
    with auto.connect() as conn:
        conn.execute(insert(Order).values(item="lamp", total=30))
        with pytest.raises(dbapi.ProgrammingError, match="autocommit"):
            transaction(conn)
        # Without tx= each primitive commits on its own, like the SQL.
        database(conn).queue(QUEUE).enqueue({"order": 1})
        assert committed(path) == (1, 1, 0, 0)


def test_helpers_refuse_other_binds(path: Path) -> None:
    with pytest.raises(TypeError, match="expected a Session"):
        transaction(object())  # type: ignore[arg-type]
    plain = create_engine(f"sqlite:///{path.with_name('plain.db')}")
    try:
        with Session(plain) as session, pytest.raises(TypeError, match="sqlite\\+alkdev"):
            transaction(session)
    finally:
        plain.dispose()


# ---------------------------------------------------------- second process

# The observer: a separate Python process with its own alk.Database on the
# file. It answers commands on stdin, one line each:
#   look     -> one snapshot "orders jobs events notes" (committed data only)
#   wait N   -> prints "polling" after its first look, then looks again and
#               again until it sees N orders; every look must show equal
#               orders, jobs and events (never a torn state); prints
#               "reached N after P looks, first A" (A: the first orders count)
#   claim    -> claims every job and reads every event and row; prints JSON
#   quit
OBSERVER = textwrap.dedent(
    """
    import json, sys, time
    import alkdev_storage as alk

    path, snapshot_sql, queue, topic = sys.argv[1:5]
    db = alk.connect(path)
    print("ready", flush=True)

    def look():
        return tuple(db.query_one(snapshot_sql))

    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "look":
            print(*look(), flush=True)
        elif cmd == "wait":
            want = int(args[0])
            first = look()
            print("polling", flush=True)
            seen, looks, deadline = first, 1, time.monotonic() + 60
            while True:
                if not seen[0] == seen[1] == seen[2] <= want:
                    print("torn", *seen, flush=True)
                    sys.exit(3)
                if seen[0] == want:
                    break
                if time.monotonic() > deadline:  # fail instead of hanging
                    print("stuck", *seen, flush=True)
                    sys.exit(4)
                seen = look()
                looks += 1
            print("reached", want, "after", looks, "looks, first", first[0], flush=True)
        elif cmd == "claim":
            jobs = db.queue(queue).claim_batch("observer", 1000)
            events = db.stream(topic).read_since(0)
            rows = db.query("SELECT id, item, total FROM orders ORDER BY id")
            print(json.dumps({
                "jobs": sorted(j.payload["order"] for j in jobs),
                "events": [[e.key, e.payload] for e in events],
                "rows": [list(r) for r in rows],
            }), flush=True)
        elif cmd == "quit":
            break
    db.close()
    """
)


class Observer:
    """The observer process and its line protocol."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", OBSERVER, str(path), SNAPSHOT_SQL, QUEUE, TOPIC],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.expect("ready")

    def read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"observer exited ({self.proc.returncode}): {err}")
        return line

    def expect(self, expected: str) -> None:
        line = self.read()
        assert line == expected, line

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def look(self) -> tuple[int, ...]:
        self.send("look")
        return tuple(int(x) for x in self.read().split())

    def claim(self) -> dict[str, Any]:
        self.send("claim")
        found: dict[str, Any] = json.loads(self.read())
        return found

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send("quit")
            try:
                self.proc.wait(timeout=30)
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def observer(engine: Engine, path: Path) -> Iterator[Observer]:
    # Started while no transaction is open: opening a database writes
    # honker's schema, which would wait for the writer.
    obs = Observer(path)
    yield obs
    obs.close()
    assert obs.proc.returncode == 0


def test_second_process_sees_none_until_commit_then_all_three(
    engine: Engine, observer: Observer
) -> None:
    # Rolled back: seen as nothing while open, and nothing after.
    with Session(engine) as session:
        place_order(session, "lamp", 30, notify=True)
        assert in_session(session) == (1, 1, 1, 1)
        assert observer.look() == (0, 0, 0, 0)
        assert observer.look() == (0, 0, 0, 0)
        session.rollback()
    assert observer.look() == (0, 0, 0, 0)

    # Committed: nothing while open, all of it after.
    with Session(engine) as session:
        place_order(session, "desk", 200, notify=True)
        place_order(session, "chair", 80)
        assert observer.look() == (0, 0, 0, 0)
        session.commit()
    assert observer.look() == (2, 2, 2, 1)

    found = observer.claim()
    assert found == {
        "jobs": [1, 2],
        "events": [
            ["desk", {"order": 1, "total": 200}],
            ["chair", {"order": 2, "total": 80}],
        ],
        "rows": [[1, "desk", 200], [2, "chair", 80]],
    }
    # The observer's claims are visible here: the jobs are taken.
    db = database(engine)
    assert db.queue(QUEUE).claim_one("here") is None


def test_second_process_polling_across_commits_never_sees_a_torn_state(
    engine: Engine, observer: Observer
) -> None:
    committed_orders = 0
    for round_ in range(12):
        with Session(engine) as session:
            place_order(session, f"item-{round_}", round_, notify=round_ % 3 == 0)
            if round_ % 4 == 3:
                # Rolled back while the observer looks: it stays where it was.
                assert observer.look()[:3] == (committed_orders,) * 3
                session.rollback()
                assert observer.look()[:3] == (committed_orders,) * 3
                continue
            committed_orders += 1
            # The observer polls from before the commit until it sees it.
            observer.send(f"wait {committed_orders}")
            observer.expect("polling")
            session.commit()
        line = observer.read()
        prefix = f"reached {committed_orders} after "
        assert line.startswith(prefix), line
        assert line.endswith(f"looks, first {committed_orders - 1}"), line
    assert committed_orders == 9
    assert observer.look() == (9, 9, 9, 3)
    found = observer.claim()
    assert found["jobs"] == list(range(1, 10))
    assert [e[0] for e in found["events"]] == [f"item-{r}" for r in range(12) if r % 4 != 3]
    assert [r[1] for r in found["rows"]] == [f"item-{r}" for r in range(12) if r % 4 != 3]
