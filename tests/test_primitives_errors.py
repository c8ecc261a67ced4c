"""Bad input to the primitives: a clear error or a documented False, never a
changed or corrupted row.

Every case runs against a file that already holds rows in every honker
table (pending, processing and dead jobs, events, offsets, notifications,
a lock, a rate-limit window, a schedule, results), and asserts that those
tables are byte-for-byte the same after the error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import alkdev_storage as alk
from alkdev_storage import honker
from alkdev_storage.errors import ProgrammingError, TransactionClosedError

WORKER = "owner"


def snapshot(db: alk.Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every `_honker_*` table and `sqlite_sequence`, raw."""
    tables = [
        r[0]
        for r in db.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND (name LIKE '\\_honker\\_%' ESCAPE '\\' OR name = 'sqlite_sequence') "
            "ORDER BY name"
        )
    ]
    assert len(tables) == 10, tables
    return {t: db.query(f"SELECT * FROM {t} ORDER BY rowid") for t in tables}


@dataclass
class World:
    db: alk.Database
    queue: alk.Queue
    stream: alk.Stream
    scheduler: alk.Scheduler
    pending: int  # a pending job
    claimed: int  # a job claimed by WORKER
    dead: int  # a dead-lettered job


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    db = alk.connect(tmp_path / "app.db")
    queue = db.queue("q", visibility_timeout_s=60)
    stream = db.stream("s")
    scheduler = alk.Scheduler(db)
    dead = queue.enqueue({"will": "die"}, max_attempts=1)
    queue.claim_one("someone")
    assert queue.fail(dead, "someone", "seed")
    claimed = queue.enqueue({"held": True}, priority=9)
    assert queue.claim_one(WORKER).id == claimed
    pending = queue.enqueue({"waiting": True}, delay=600, expires=3600)
    offset = stream.publish({"e": 1}, key="k")
    assert stream.save_offset("c", offset)
    db.notify("ch", {"n": 1})
    assert db.lock("L", ttl=600, owner="holder").acquire()
    assert db.try_rate_limit("api", 5, 60)
    scheduler.add(name="nightly", queue="q", schedule="0 3 * * *", payload={"p": 1})
    queue.save_result(claimed, {"r": 1}, ttl=600)
    yield World(db, queue, stream, scheduler, pending, claimed, dead)
    db.close()


@pytest.fixture
def unchanged(world: World) -> Iterator[World]:
    """The world, checked to hold the same rows at the end of the test."""
    before = snapshot(world.db)
    yield world
    assert snapshot(world.db) == before


CIRCULAR: list[Any] = []
CIRCULAR.append(CIRCULAR)

NOT_JSON = [
    pytest.param(object(), TypeError, id="object"),
    pytest.param({1, 2}, TypeError, id="set"),
    pytest.param(b"bytes", TypeError, id="bytes"),
    pytest.param({("tuple", "key"): 1}, TypeError, id="tuple-key"),
    pytest.param(float("nan"), ValueError, id="nan"),
    pytest.param(float("inf"), ValueError, id="inf"),
    pytest.param({"deep": [1, float("-inf")]}, ValueError, id="nested-neg-inf"),
    pytest.param(CIRCULAR, ValueError, id="circular"),
]

PAYLOAD_TAKERS: list[Any] = [
    pytest.param(lambda w, v: w.queue.enqueue(v), id="enqueue"),
    pytest.param(lambda w, v: w.queue.enqueue_many([{"ok": 1}, v]), id="enqueue_many"),
    pytest.param(lambda w, v: w.db.outbox("o", print).enqueue(v), id="outbox.enqueue"),
    pytest.param(lambda w, v: w.stream.publish(v), id="publish"),
    pytest.param(lambda w, v: w.stream.publish_many([1, v]), id="publish_many"),
    pytest.param(lambda w, v: w.db.notify("ch", v), id="notify"),
    pytest.param(lambda w, v: w.queue.save_result(w.claimed, v), id="save_result"),
    pytest.param(
        lambda w, v: w.scheduler.add(name="x", queue="q", schedule="* * * * *", payload=v),
        id="scheduler.add",
    ),
    pytest.param(lambda w, v: w.scheduler.update("nightly", payload=v), id="scheduler.update"),
    pytest.param(lambda w, v: honker_notify(w, v), id="honker.notify"),
]


def honker_notify(w: World, value: Any) -> None:
    with honker.Transaction(w.db.transaction()) as tx:
        tx.notify("ch", value)


@pytest.mark.parametrize(("value", "error"), NOT_JSON)
@pytest.mark.parametrize("call", PAYLOAD_TAKERS)
def test_payloads_that_are_not_json_are_refused(
    unchanged: World, call: Callable[[World, Any], Any], value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="JSON"):
        call(unchanged, value)


BAD_ARGUMENTS: list[Any] = [
    # queues
    (lambda w: w.db.queue(123), TypeError, "queue name"),
    (lambda w: w.db.queue(""), ValueError, "queue name"),
    (lambda w: w.db.queue("n", visibility_timeout_s=0), ValueError, "visibility_timeout_s"),
    (lambda w: w.db.queue("n", visibility_timeout_s=-5), ValueError, "visibility_timeout_s"),
    (lambda w: w.db.queue("n", visibility_timeout_s="30"), TypeError, "visibility_timeout_s"),
    (lambda w: w.db.queue("n", max_attempts=0), ValueError, "max_attempts"),
    (lambda w: w.db.queue("n", max_attempts=True), TypeError, "max_attempts"),
    (lambda w: w.db.queue("q", max_attempts=9), ValueError, "already open"),
    (lambda w: w.queue.enqueue(1, delay=-1), ValueError, "delay"),
    (lambda w: w.queue.enqueue(1, delay="5"), TypeError, "delay"),
    (lambda w: w.queue.enqueue(1, delay=1.5), TypeError, "delay"),
    (lambda w: w.queue.enqueue(1, run_at="now"), TypeError, "run_at"),
    (lambda w: w.queue.enqueue(1, priority=1.5), TypeError, "priority"),
    (lambda w: w.queue.enqueue(1, priority=None), TypeError, "priority"),
    (lambda w: w.queue.enqueue(1, max_attempts=0), ValueError, "max_attempts"),
    (lambda w: w.queue.enqueue(1, max_attempts=-1), ValueError, "max_attempts"),
    (lambda w: w.queue.enqueue(1, expires=0), ValueError, "expires"),
    (lambda w: w.queue.enqueue(1, expires=-10), ValueError, "expires"),
    (lambda w: w.queue.enqueue(1, tx="not a tx"), TypeError, "tx"),
    (lambda w: w.queue.enqueue_many([1, 2], delay=-1), ValueError, "delay"),
    (lambda w: w.queue.claim_batch(WORKER, 0), ValueError, "n must be at least 1"),
    (lambda w: w.queue.claim_batch(WORKER, -1), ValueError, "n must be at least 1"),
    (lambda w: w.queue.claim_batch(WORKER, "1"), TypeError, "n must be an int"),
    (lambda w: w.queue.claim_batch(WORKER, True), TypeError, "n must be an int"),
    (lambda w: w.queue.claim_batch(5, 1), TypeError, "worker_id"),
    (lambda w: w.queue.claim_batch("", 1), ValueError, "worker_id"),
    (lambda w: w.queue.ack(str(w.claimed), WORKER), TypeError, "job_id"),
    (lambda w: w.queue.ack(w.claimed, None), TypeError, "worker_id"),
    (lambda w: w.queue.ack_batch([w.claimed, "2"], WORKER), TypeError, "job id"),
    (lambda w: w.queue.retry(w.claimed, WORKER, delay_s=-1), ValueError, "delay_s"),
    (lambda w: w.queue.retry(w.claimed, WORKER, error=5), TypeError, "error"),
    (lambda w: w.queue.fail(w.claimed, WORKER, error=None), TypeError, "error"),
    (lambda w: w.queue.heartbeat(w.claimed, WORKER, 0), ValueError, "extend_s"),
    (lambda w: w.queue.heartbeat(w.claimed, WORKER, -3), ValueError, "extend_s"),
    (lambda w: w.queue.heartbeat(w.claimed, WORKER, "9"), TypeError, "extend_s"),
    (lambda w: w.queue.cancel("1"), TypeError, "job_id"),
    (lambda w: w.queue.get_job(None), TypeError, "job_id"),
    (lambda w: w.queue.save_result(w.claimed, 1, ttl=0), ValueError, "ttl"),
    (lambda w: w.queue.save_result(w.claimed, 1, ttl=-1), ValueError, "ttl"),
    (lambda w: w.queue.save_result(str(w.claimed), 1), TypeError, "job_id"),
    (lambda w: w.queue.get_result("x"), TypeError, "job_id"),
    (lambda w: w.db.outbox("o", "not callable"), TypeError, "callable"),
    (lambda w: w.db.outbox("o", print, base_backoff_s=-1), ValueError, "base_backoff_s"),
    # streams
    (lambda w: w.db.stream(1), TypeError, "stream name"),
    (lambda w: w.stream.publish(1, key=5), TypeError, "key"),
    (lambda w: w.stream.publish_many([1, 2], keys=["only one"]), ValueError, "1 keys"),
    (lambda w: w.stream.publish_many([1], keys=[5]), TypeError, "str"),
    (lambda w: w.stream.read_since(-1), ValueError, "offset"),
    (lambda w: w.stream.read_since(0, limit=0), ValueError, "limit"),
    (lambda w: w.stream.read_since(0, limit=-1), ValueError, "limit"),
    (lambda w: w.stream.save_offset("c", -1), ValueError, "offset"),
    (lambda w: w.stream.save_offset("", 1), ValueError, "consumer"),
    (lambda w: w.stream.save_offset(None, 1), TypeError, "consumer"),
    (lambda w: w.stream.save_offset("c", "9"), TypeError, "offset"),
    (lambda w: w.stream.get_offset(5), TypeError, "consumer"),
    (lambda w: w.db.subscribe([]), ValueError, "at least one topic"),
    (lambda w: w.db.subscribe("s", save_every_n=0), ValueError, "save_every_n"),
    (lambda w: w.db.subscribe("s", from_offset=-1), ValueError, "from_offset"),
    # notifications
    (lambda w: w.db.notify(5, 1), TypeError, "channel"),
    (lambda w: w.db.notify("", 1), ValueError, "channel"),
    (lambda w: w.db.listen(5), TypeError, "channel"),
    (lambda w: w.db.listen("ch", fallback_poll_s=0), ValueError, "fallback_poll_s"),
    (lambda w: w.db.prune_notifications(), ValueError, "older_than_s, max_keep"),
    (lambda w: w.db.prune_notifications(older_than_s=-1), ValueError, "older_than_s"),
    (lambda w: w.db.prune_notifications(max_keep=-1), ValueError, "max_keep"),
    (lambda w: w.db.prune_notifications(max_keep="3"), TypeError, "max_keep"),
    # locks and rate limits
    (lambda w: w.db.lock("L2", ttl=0), ValueError, "ttl"),
    (lambda w: w.db.lock("L2", ttl=-1), ValueError, "ttl"),
    (lambda w: w.db.lock("L2", ttl="60"), TypeError, "ttl"),
    (lambda w: w.db.lock(""), ValueError, "lock name"),
    (lambda w: w.db.lock("L2", owner=5), TypeError, "owner"),
    (lambda w: w.db.lock("L", owner="holder").renew(0), ValueError, "ttl"),
    (lambda w: w.db.lock("L", owner="holder").acquire(tx=1), TypeError, "tx"),
    (lambda w: w.db.try_rate_limit("api", 0, 60), ValueError, "limit"),
    (lambda w: w.db.try_rate_limit("api", -1, 60), ValueError, "limit"),
    (lambda w: w.db.try_rate_limit("api", 5, 0), ValueError, "per"),
    (lambda w: w.db.try_rate_limit("api", 5, -60), ValueError, "per"),
    (lambda w: w.db.try_rate_limit("api", "5", 60), TypeError, "limit"),
    (lambda w: w.db.try_rate_limit("api", 5, 0.5), TypeError, "per"),
    (lambda w: w.db.try_rate_limit(None, 5, 60), TypeError, "name"),
    (lambda w: w.db.sweep_rate_limits(-1), ValueError, "older_than_s"),
    # scheduler
    (lambda w: sched_add(w, schedule="bogus"), ValueError, "invalid schedule"),
    (lambda w: sched_add(w, schedule="61 * * * *"), ValueError, "out of range"),
    (lambda w: sched_add(w, schedule="* * * * * * *"), ValueError, "5 or 6"),
    (lambda w: sched_add(w, schedule="0 0 * * 7"), ValueError, "out of range"),
    (lambda w: sched_add(w, schedule="@every 0s"), ValueError, "positive"),
    (lambda w: sched_add(w, schedule="0 0 31 2 *"), ValueError, "invalid schedule"),
    (lambda w: sched_add(w, schedule=""), ValueError, "schedule"),
    (lambda w: sched_add(w, schedule=5), TypeError, "schedule"),
    (lambda w: sched_add(w, name=""), ValueError, "name"),
    (lambda w: sched_add(w, queue=None), TypeError, "queue"),
    (lambda w: sched_add(w, priority="1"), TypeError, "priority"),
    (lambda w: sched_add(w, expires=0), ValueError, "expires"),
    (lambda w: sched_add(w, max_attempts=0), ValueError, "max_attempts"),
    (lambda w: sched_add(w, tx=object()), TypeError, "tx"),
    (lambda w: w.scheduler.update("nightly", schedule="bogus"), ValueError, "invalid"),
    (lambda w: w.scheduler.update("nightly", schedule="61 * * * *"), ValueError, "range"),
    (lambda w: w.scheduler.update("nightly", schedule="* * * * * * *"), ValueError, "5 or 6"),
    (lambda w: w.scheduler.update("nightly", priority=1.0), TypeError, "priority"),
    (lambda w: w.scheduler.update("nightly", expires=-1), ValueError, "expires"),
    (lambda w: w.scheduler.update("nightly", max_attempts=0), ValueError, "max_attempts"),
    (lambda w: w.scheduler.tick(now="soon"), TypeError, "now"),
    (lambda w: w.scheduler.pause(5), TypeError, "name"),
    (lambda w: alk.crontab("bogus"), ValueError, "invalid schedule"),
    (lambda w: alk.every_s(0), ValueError, "n must be at least 1"),
    (lambda w: honker.open(w.db.path, watcher_backend="inotify"), ValueError, "backend"),
    (
        lambda w: honker.open(w.db.path, watcher_poll_interval_ms=0),
        ValueError,
        "watcher_poll_interval_ms",
    ),
]


def sched_add(w: World, **changes: Any) -> None:
    fields: dict[str, Any] = {"name": "new", "queue": "q", "schedule": "*/5 * * * *"}
    w.scheduler.add(**{**fields, **changes})


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [pytest.param(*case, id=f"{i}-{case[1].__name__}") for i, case in enumerate(BAD_ARGUMENTS)],
)
def test_bad_arguments_raise_and_change_nothing(
    unchanged: World, call: Callable[[World], Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        call(unchanged)


def test_someone_elses_job_is_false_and_untouched(unchanged: World) -> None:
    w = unchanged
    for intruder in ("intruder", WORKER + " ", WORKER.upper()):
        assert w.queue.ack(w.claimed, intruder) is False
        assert w.queue.ack_batch([w.claimed, w.pending, w.dead], intruder) == 0
        assert w.queue.retry(w.claimed, intruder, 0, "mine now") is False
        assert w.queue.fail(w.claimed, intruder, "mine now") is False
        assert w.queue.heartbeat(w.claimed, intruder, 3600) is False
    # Pending, dead and unknown jobs are nobody's.
    for job_id in (w.pending, w.dead, 999, -1, 0):
        assert w.queue.ack(job_id, WORKER) is False
        assert w.queue.retry(job_id, WORKER, 0, "x") is False
        assert w.queue.fail(job_id, WORKER, "x") is False
        assert w.queue.heartbeat(job_id, WORKER, 60) is False
    assert w.queue.ack_batch([], WORKER) == 0
    assert w.queue.cancel(w.dead) is False
    assert w.queue.cancel(999) is False
    # Locks, offsets, schedules: the documented False.
    assert w.db.lock("L", owner="thief").acquire() is False
    assert w.db.lock("L", owner="thief").release() is False
    assert w.db.lock("L", owner="thief").renew(60) is False
    assert w.db.lock("free", owner="thief").release() is False
    assert w.stream.save_offset("c", 0) is False
    assert w.scheduler.pause("missing") is False
    assert w.scheduler.resume("nightly") is False  # not paused
    assert w.scheduler.update("missing", priority=1) is False
    assert w.scheduler.update("nightly") is False  # nothing to change
    assert w.scheduler.remove("missing") is False
    assert w.db.prune_notifications(older_than_s=3600) == 0
    assert w.queue.sweep_expired() == 0


def test_the_owner_still_can_after_an_intruder_tried(world: World) -> None:
    w = world
    assert w.queue.ack(w.claimed, "intruder") is False
    assert w.queue.heartbeat(w.claimed, WORKER, 120) is True
    assert w.queue.ack(w.claimed, WORKER) is True
    assert w.queue.get_job(w.claimed) is None


def test_a_late_worker_cannot_touch_a_reclaimed_job(world: World) -> None:
    w = world
    job = w.queue.claim_one("first")  # the pending job is not due: nothing
    assert job is None
    w.db.execute(
        "UPDATE _honker_live SET claim_expires_at = unixepoch() - 1 WHERE id = ?", (w.claimed,)
    )
    late = w.queue.get_job(w.claimed)
    assert late is not None and late["worker_id"] == WORKER
    taken = w.queue.claim_one("second")
    assert taken is not None and taken.id == w.claimed and taken.attempts == 2
    before = snapshot(w.db)
    assert w.queue.ack(w.claimed, WORKER) is False
    assert w.queue.heartbeat(w.claimed, WORKER, 600) is False
    assert w.queue.retry(w.claimed, WORKER, 0, "late") is False
    assert w.queue.fail(w.claimed, WORKER, "late") is False
    assert snapshot(w.db) == before
    assert taken.ack() is True


def test_a_transaction_of_another_database_is_refused(world: World, tmp_path: Path) -> None:
    w = world
    other = alk.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t(x)")
    before, other_before = snapshot(w.db), snapshot(other)
    tx = other.transaction()
    tx.execute("INSERT INTO t VALUES (1)")
    wrapped = honker.Transaction(tx)
    public: list[Callable[[Any], Any]] = [
        lambda t: w.queue.enqueue(1, tx=t),
        lambda t: w.queue.enqueue_many([1, 2], tx=t),
        lambda t: w.queue.ack(w.claimed, WORKER, tx=t),
        lambda t: w.queue.ack_batch([w.claimed], WORKER, tx=t),
        lambda t: w.queue.retry(w.claimed, WORKER, tx=t),
        lambda t: w.queue.fail(w.claimed, WORKER, tx=t),
        lambda t: w.queue.heartbeat(w.claimed, WORKER, tx=t),
        lambda t: w.queue.cancel(w.pending, tx=t),
        lambda t: w.queue.save_result(w.claimed, 1, tx=t),
        lambda t: w.stream.publish(1, tx=t),
        lambda t: w.stream.publish_many([1], tx=t),
        lambda t: w.stream.save_offset("c", 99, tx=t),
        lambda t: w.db.notify("ch", 1, tx=t),
        lambda t: w.db.lock("L2", owner="x").acquire(tx=t),
        lambda t: w.db.lock("L", owner="holder").release(tx=t),
        lambda t: w.scheduler.add(name="x", queue="q", schedule="* * * * *", tx=t),
    ]
    for call in public:
        for t in (tx, wrapped):
            with pytest.raises(ProgrammingError, match="different database"):
                call(t)
    # Reads in a transaction, and the native methods, check it too.
    for native in (
        lambda: w.db._get_job(w.claimed, tx=tx),
        lambda: w.db._get_offset("c", "s", tx=tx),
        lambda: w.db._scheduler_tick(2**40, tx=tx),
        lambda: w.db._claim("q", "w", 5, 30, tx=tx),
    ):
        with pytest.raises(ProgrammingError, match="different database"):
            native()
    # The foreign transaction is still usable, and holds only its own write.
    assert tx.active
    assert tx.query("SELECT x FROM t") == [(1,)]
    tx.commit()
    assert snapshot(w.db) == before
    assert snapshot(other) == other_before
    assert other.query("SELECT x FROM t") == [(1,)]
    other.close()


def test_a_finished_transaction_is_refused(unchanged: World) -> None:
    w = unchanged
    tx = w.db.transaction()
    tx.rollback()
    with pytest.raises(TransactionClosedError):
        w.queue.enqueue(1, tx=tx)
    with pytest.raises(TransactionClosedError):
        w.stream.publish(1, tx=tx)
    with pytest.raises(TransactionClosedError):
        w.queue.ack(w.claimed, WORKER, tx=tx)
    assert issubclass(TransactionClosedError, ProgrammingError)


def test_a_read_only_database_refuses_writes(world: World) -> None:
    before = snapshot(world.db)
    ro = alk.connect(world.db.path, readonly=True)
    with pytest.raises(alk.ReadOnlyError):
        ro.queue("q").enqueue(1)
    with pytest.raises(alk.ReadOnlyError):
        ro.queue("q").claim_batch("w", 5)
    with pytest.raises(alk.ReadOnlyError):
        ro.stream("s").publish(1)
    assert ro.queue("q").get_job(world.claimed) is not None  # reads still work
    ro.close()
    assert snapshot(world.db) == before


def test_errors_inside_a_transaction_keep_its_earlier_writes(world: World) -> None:
    w = world
    w.db.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY, total)")
    with w.db.transaction() as tx:
        tx.execute("INSERT INTO orders(total) VALUES (42)")
        first = w.queue.enqueue({"first": 1}, tx=tx)
        offset = w.stream.publish({"first": 1}, tx=tx)
        with pytest.raises(ValueError, match="1 keys given for 2 payloads"):
            w.stream.publish_many([{"a": 1}, {"b": 2}], keys=["only-one"], tx=tx)
        with pytest.raises(TypeError, match="JSON"):
            w.queue.enqueue_many([{"ok": 1}, object()], tx=tx)
        with pytest.raises(ValueError, match="JSON"):
            w.db.notify("ch", float("nan"), tx=tx)
        with pytest.raises(ValueError, match="invalid schedule"):
            w.scheduler.add(name="x", queue="q", schedule="bogus", tx=tx)
        with pytest.raises(ValueError, match="delay"):
            w.queue.enqueue(1, delay=-1, tx=tx)
        assert tx.active
        # The earlier writes are there, and the transaction goes on.
        assert tx.query("SELECT payload FROM _honker_live WHERE id = ?", (first,)) == [
            ('{"first": 1}',)
        ]
        second = w.queue.enqueue({"second": 2}, tx=tx)
    assert second == first + 1
    assert w.db.query("SELECT total FROM orders") == [(42,)]
    assert w.db.query("SELECT payload FROM _honker_live WHERE id >= ? ORDER BY id", (first,)) == [
        ('{"first": 1}',),
        ('{"second": 2}',),
    ]
    assert [e.payload for e in w.stream.read_since(offset - 1)] == [{"first": 1}]
    assert w.db.query("SELECT count(*) FROM _honker_notifications") == [(1,)]
    assert [s["name"] for s in w.scheduler.list()] == ["nightly"]


def exhausted_job_with_a_clashing_dead_id(w: World) -> int:
    """A claimed job on its last attempt whose id is already in
    `_honker_dead`, so moving it there fails half-way (after the delete)."""
    job_id = w.queue.enqueue({"last": "try"}, max_attempts=1)
    job = w.queue.claim_batch(WORKER, 10)
    assert [j.id for j in job] == [job_id]
    w.db.execute(
        "INSERT INTO _honker_dead (id, queue, payload, last_error) VALUES (?, 'q', '{}', 'old')",
        (job_id,),
    )
    return job_id


def test_a_primitive_failing_half_way_leaves_no_partial_write(world: World) -> None:
    w = world
    job_id = exhausted_job_with_a_clashing_dead_id(w)
    before = snapshot(w.db)
    with pytest.raises(alk.IntegrityError):
        w.queue.retry(job_id, WORKER, 0, "boom")
    with pytest.raises(alk.IntegrityError):
        w.queue.fail(job_id, WORKER, "boom")
    assert snapshot(w.db) == before
    # In the caller's transaction: the failed call is undone, the
    # transaction's earlier writes stay and commit.
    with w.db.transaction() as tx:
        kept = w.queue.enqueue({"kept": True}, tx=tx)
        with pytest.raises(alk.IntegrityError):
            w.queue.retry(job_id, WORKER, 0, "boom", tx=tx)
        assert w.db._get_job(job_id, tx=tx) is not None
        assert w.db._get_job(kept, tx=tx) is not None
    assert w.queue.get_job(job_id) is not None
    assert w.queue.get_job(kept) is not None
    assert w.db.query("SELECT last_error FROM _honker_dead WHERE id = ?", (job_id,)) == [("old",)]


def test_a_tick_failing_half_way_enqueues_nothing(world: World) -> None:
    w = world
    # Another binding wrote a task whose expression we cannot parse.
    w.db.execute(
        "INSERT INTO _honker_scheduler_tasks (name, queue, cron_expr, payload, next_fire_at) "
        "VALUES ('broken', 'q', 'bogus', '1', 0)"
    )
    before = snapshot(w.db)
    with pytest.raises(ValueError, match="invalid schedule"):
        w.scheduler.tick(now=2**31)
    assert snapshot(w.db) == before
    with w.db.transaction() as tx:
        kept = w.queue.enqueue({"kept": True}, tx=tx)
        with pytest.raises(ValueError, match="invalid schedule"):
            w.db._scheduler_tick(2**31, tx=tx)
        assert tx.query("SELECT id FROM _honker_live WHERE id > ?", (kept,)) == []
    assert w.queue.get_job(kept) is not None
    after = snapshot(w.db)
    assert after["_honker_scheduler_tasks"] == before["_honker_scheduler_tasks"]
    assert [r[0] for r in after["_honker_live"]] == [r[0] for r in before["_honker_live"]] + [kept]


I64_MAX = 2**63 - 1


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda w: w.queue.enqueue(1, delay=I64_MAX + 1), id="delay"),
        pytest.param(lambda w: w.queue.enqueue(1, run_at=-(2**63) - 1), id="run_at"),
        pytest.param(lambda w: w.queue.enqueue(1, priority=I64_MAX + 1), id="priority"),
        pytest.param(lambda w: w.queue.claim_batch(WORKER, I64_MAX + 1), id="n"),
        pytest.param(lambda w: w.queue.ack(I64_MAX + 1, WORKER), id="job_id"),
        pytest.param(lambda w: w.stream.save_offset("c", I64_MAX + 1), id="offset"),
        pytest.param(lambda w: w.db.try_rate_limit("api", I64_MAX + 1, 60), id="limit"),
    ],
)
def test_integers_beyond_64_bits_are_refused(
    unchanged: World, call: Callable[[World], Any]
) -> None:
    # Durations beyond MAX_DURATION_S are refused before they reach 64 bits.
    with pytest.raises((OverflowError, ValueError)):
        call(unchanged)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda w: w.queue.enqueue(1, delay=I64_MAX), id="enqueue-delay"),
        pytest.param(lambda w: w.queue.enqueue(1, expires=I64_MAX), id="enqueue-expires"),
        pytest.param(lambda w: w.queue.retry(w.claimed, WORKER, I64_MAX), id="retry-delay"),
        pytest.param(lambda w: w.queue.heartbeat(w.claimed, WORKER, I64_MAX), id="heartbeat"),
        pytest.param(lambda w: w.queue.save_result(w.claimed, 1, ttl=I64_MAX), id="result-ttl"),
        pytest.param(lambda w: w.db.lock("L2", ttl=I64_MAX).acquire(), id="lock-ttl"),
        pytest.param(lambda w: w.db.queue("v", visibility_timeout_s=I64_MAX), id="visibility"),
        pytest.param(
            lambda w: w.scheduler.add(name="x", queue="q", schedule="* * * * *", expires=I64_MAX),
            id="schedule-expires",
        ),
    ],
)
def test_durations_too_long_for_a_timestamp_are_refused(
    world: World, call: Callable[[World], Any]
) -> None:
    before = snapshot(world.db)
    with pytest.raises((ValueError, OverflowError)):
        call(world)
    assert snapshot(world.db) == before


def test_job_methods_refuse_durations_too_long_for_a_timestamp(tmp_path: Path) -> None:
    db = alk.connect(tmp_path / "jobs.db")
    queue = db.queue("q")
    queue.enqueue({"n": 1})
    job = queue.claim_one("w")
    assert job is not None
    before = snapshot(db)
    with pytest.raises(ValueError, match="delay_s"):
        job.retry(10**10 + 1)
    with pytest.raises(ValueError, match="delay_s"):
        job.retry(-1)
    with pytest.raises(ValueError, match="extend_s"):
        job.heartbeat(10**10 + 1)
    with pytest.raises(ValueError, match="extend_s"):
        job.heartbeat(0)
    with pytest.raises(TypeError, match="tx must be a transaction"):
        job.ack(tx="not a transaction")
    assert snapshot(db) == before
    assert job.ack()


def test_one_bad_expiry_does_not_stop_a_queue(world: World) -> None:
    w = world
    try:
        w.queue.enqueue({"bad": True}, expires=I64_MAX)
    except (ValueError, OverflowError):
        pass  # refusing it is fine too
    good = w.queue.enqueue({"good": True}, priority=99)
    jobs = w.queue.claim_batch("w", 10)
    assert good in [j.id for j in jobs]
    assert w.db.query("SELECT count(*) FROM _honker_live WHERE typeof(expires_at) = 'real'") == [
        (0,)
    ]
