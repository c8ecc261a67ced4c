"""The primitive objects: streams and subscriptions, listeners, locks, rate
limits, the scheduler, results, and the honker-compatible facade."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

import alkdev_storage as alk
from alkdev_storage import honker


@pytest.fixture
def hdb(tmp_path: Path) -> alk.Database:
    return alk.connect(tmp_path / "p.db")


def test_multi_topic_subscription_in_offset_order_with_durable_offsets(
    hdb: alk.Database,
) -> None:
    nodes, edges, other = hdb.stream("nodes"), hdb.stream("edges"), hdb.stream("other")
    nodes.publish({"n": 1})
    other.publish({"ignored": True})
    edges.publish({"e": 1})
    nodes.publish({"n": 2})
    with hdb.subscribe(["nodes", "edges"], consumer="indexer") as sub:
        got = [sub.next(timeout=1) for _ in range(3)]
        assert [(e.topic, e.payload) for e in got if e] == [
            ("nodes", {"n": 1}),
            ("edges", {"e": 1}),
            ("nodes", {"n": 2}),
        ]
        assert [e.offset for e in got if e] == sorted(e.offset for e in got if e)
    # Closing counts the last event as handled; a new subscription resumes.
    assert nodes.get_offset("indexer") == 4
    assert edges.get_offset("indexer") == 3
    edges.publish({"e": 2})
    with hdb.subscribe(["nodes", "edges"], consumer="indexer") as again:
        event = again.next(timeout=1)
        assert event is not None and event.payload == {"e": 2}
        assert again.next(timeout=0.1) is None


def test_subscription_is_at_least_once_until_the_next_event_is_asked_for(
    hdb: alk.Database,
) -> None:
    stream = hdb.stream("t")
    stream.publish_many([{"i": i} for i in range(3)])
    sub = hdb.subscribe("t", consumer="c", save_every_n=1, save_every_s=0)
    first = sub.next(timeout=1)
    assert first is not None and first.offset == 1
    assert stream.get_offset("c") == 0  # still in the caller's hands
    sub.next(timeout=1)
    assert stream.get_offset("c") == 1
    # A crash now (no close) redelivers event 2, never skips it.
    replay = hdb.subscribe("t", consumer="c")
    event = replay.next(timeout=1)
    assert event is not None and event.offset == 2


def test_offsets_never_move_back(hdb: alk.Database) -> None:
    stream = hdb.stream("t")
    assert stream.save_offset("c", 5)
    assert not stream.save_offset("c", 3)
    assert stream.get_offset("c") == 5


def test_sync_subscription_wakes_on_a_commit_from_another_thread(hdb: alk.Database) -> None:
    sub = hdb.subscribe("live")
    timer = threading.Timer(0.2, lambda: hdb.stream("live").publish({"late": True}))
    timer.start()
    event = sub.next(timeout=10)
    timer.join()
    assert event is not None and event.payload == {"late": True}


def test_async_subscription_and_listener(hdb: alk.Database) -> None:
    async def main() -> tuple[object, object]:
        sub = hdb.subscribe(["a", "b"])
        listener = hdb.listen("ctl")
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, lambda: hdb.stream("b").publish("hello"))
        loop.call_later(0.2, lambda: hdb.notify("ctl", {"stop": True}))
        event = await asyncio.wait_for(sub.anext(), 10)
        note = await asyncio.wait_for(listener.anext(), 10)
        return event, note

    event, note = asyncio.run(main())
    assert isinstance(event, alk.Event) and event.payload == "hello"
    assert isinstance(note, alk.Notification) and note.payload == {"stop": True}


def test_listener_starts_at_the_head_and_sees_sql_notify(hdb: alk.Database) -> None:
    hdb.notify("c", "before")
    listener = hdb.listen("c")
    with hdb.transaction() as tx:
        tx.query_one("SELECT notify('c', ?)", ('"from sql"',))
    hdb.notify("other", 1)
    assert [n.payload for n in listener.poll()] == ["from sql"]
    assert hdb.prune_notifications(max_keep=1) == 2
    assert hdb.query("SELECT channel FROM _honker_notifications") == [("other",)]


def test_lock_excludes_other_owners_until_released_or_expired(hdb: alk.Database) -> None:
    with hdb.lock("job", ttl=60, owner="a") as held:
        assert held.held
        with pytest.raises(alk.LockHeld, match="'a'"), hdb.lock("job", owner="b"):
            pass
        assert held.renew(120)
    assert hdb.lock("job", owner="b").acquire()
    hdb.execute("UPDATE _honker_locks SET expires_at = unixepoch() - 1")
    taker = hdb.lock("job", owner="c")
    assert taker.acquire()
    assert hdb.query("SELECT owner FROM _honker_locks") == [("c",)]


def test_rate_limit_counts_only_accepted_calls(hdb: alk.Database) -> None:
    results = [hdb.try_rate_limit("api", limit=3, per=3600) for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert hdb.query("SELECT count FROM _honker_rate_limits") == [(3,)]


def test_scheduler_register_tick_pause_update(hdb: alk.Database) -> None:
    sched = alk.Scheduler(hdb)
    sched.add(name="beat", queue="periodic", schedule=alk.every_s(60), payload={"k": 1})
    (task,) = sched.list()
    assert task["payload"] == {"k": 1} and task["enabled"] is True
    first = task["next_fire_at"]
    fires = sched.tick(now=first + 120)
    assert [f["fire_at"] for f in fires] == [first, first + 60, first + 120]
    assert hdb.query("SELECT count(*) FROM _honker_live WHERE queue='periodic'") == [(3,)]
    assert sched.pause("beat") and not sched.pause("beat")
    assert sched.tick(now=first + 10_000) == []
    assert sched.resume("beat")
    assert sched.update("beat", schedule="*/5 * * * *", expires=30)
    (task,) = sched.list()
    assert task["cron_expr"] == "*/5 * * * *" and task["expires_s"] == 30
    assert sched.update("beat", expires=None)
    assert sched.list()[0]["expires_s"] is None
    assert not sched.update("missing", priority=1)
    assert sched.remove("beat") and sched.list() == []


def test_scheduler_catch_up_is_capped_at_64(hdb: alk.Database) -> None:
    sched = alk.Scheduler(hdb)
    sched.add(name="s", queue="q", schedule="@every 1s")
    first = sched.list()[0]["next_fire_at"]
    assert len(sched.tick(now=first + 1000)) == 64
    assert sched.list()[0]["next_fire_at"] > first + 1000


def test_scheduler_run_leads_and_ticks(hdb: alk.Database) -> None:
    sched = alk.Scheduler(hdb)
    with pytest.raises(alk.NoSchedulesError):
        asyncio.run(sched.run())
    sched.add(name="s", queue="q", schedule="@every 1s")
    stop = threading.Event()
    runner = threading.Thread(target=sched.run_sync, args=(stop,))
    runner.start()
    deadline = time.monotonic() + 10
    while not hdb.query("SELECT 1 FROM _honker_live") and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(alk.LockHeld):
        alk.Scheduler(hdb).run_sync(threading.Event())
    stop.set()
    runner.join(10)
    assert hdb.query("SELECT count(*) > 0 FROM _honker_live WHERE queue='q'") == [(1,)]
    assert hdb.query("SELECT * FROM _honker_locks") == []


def test_results_round_trip_and_expire(hdb: alk.Database) -> None:
    q = hdb.queue("q")
    q.save_result(7, {"ok": True}, ttl=60)
    assert q.get_result(7) == (True, {"ok": True})
    assert q.get_result(8) == (False, None)
    hdb.execute("UPDATE _honker_results SET expires_at = unixepoch() - 1")
    assert q.get_result(7) == (False, None)
    assert q.sweep_results() == 1
    timer = threading.Timer(0.2, lambda: q.save_result(9, "done"))
    timer.start()
    assert q.wait_result_sync(9, timeout=10) == "done"
    timer.join()
    with pytest.raises(TimeoutError):
        q.wait_result_sync(10, timeout=0.2)


def test_queue_options_are_fixed_per_name(hdb: alk.Database) -> None:
    assert hdb.queue("q") is hdb.queue("q")
    with pytest.raises(ValueError, match="already open"):
        hdb.queue("q", max_attempts=5)


def test_claim_order_priority_then_run_at_then_id(hdb: alk.Database) -> None:
    q = hdb.queue("q")
    low = q.enqueue("low")
    high = q.enqueue("high", priority=5)
    later = q.enqueue("later", delay=3600)
    early = q.enqueue("early", run_at=1)
    claimed = [j.id for j in q.claim_batch("w", 10)]
    assert claimed == [high, early, low]
    assert later not in claimed
    assert q.next_claim_at() is not None


def test_honker_facade_matches_the_official_api(tmp_path: Path) -> None:
    db = honker.open(tmp_path / "h.db")
    db.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY, total)")
    q = db.queue("emails", visibility_timeout_s=30)
    with db.transaction() as tx:
        tx.execute("INSERT INTO orders(total) VALUES (?)", [42])
        job_id = q.enqueue({"to": "ada"}, tx=tx)
        assert db.stream("orders").publish({"id": 1}, tx=tx) is None
        tx.notify("orders", "42")
    assert db.query("SELECT total FROM orders") == [{"total": 42}]
    assert db.query("SELECT payload FROM _honker_notifications") == [{"payload": '"42"'}]
    job = q.claim_one("w")
    assert job is not None and job.id == job_id and job.queue_name == "emails"
    assert job.heartbeat(60) and job.ack()
    assert isinstance(db.stream("orders"), honker.Stream)
    with db.update_events() as events:
        timer = threading.Timer(0.1, lambda: db.notify("c", 1))
        timer.start()
        assert events.wait(10)
        timer.join()
    with pytest.raises(ValueError, match="unknown watcher backend"):
        honker.open(tmp_path / "x.db", watcher_backend="carrier-pigeon")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
def test_two_hundred_listened_databases_share_one_watcher_thread(tmp_path: Path) -> None:
    before = _threads()
    dbs = [alk.connect(tmp_path / f"tenant-{i}.db") for i in range(200)]
    listeners = [db.listen("events") for db in dbs]
    subscriptions = [db.subscribe(["nodes:created", "edges:created"]) for db in dbs[:20]]

    async def wait_on_twenty() -> list[object]:
        waits = [asyncio.ensure_future(s.anext(timeout=10)) for s in subscriptions]
        await asyncio.sleep(0.2)
        during = _threads()
        dbs[7].stream("edges:created").publish({"edge": 1})
        done = await asyncio.wait_for(waits[7], 10)
        for other in waits:
            other.cancel()
        return [during, done]

    during, event = asyncio.run(wait_on_twenty())
    dbs[3].notify("events", "ping")
    note = listeners[3].next(timeout=10)
    after = _threads()
    assert isinstance(event, alk.Event) and event.payload == {"edge": 1}
    assert note is not None and note.payload == "ping"
    # One watcher thread for every file (plus at most one started by the
    # interpreter's own machinery): no thread per database or per waiter.
    assert max(during, after) - before <= 2, (before, during, after)
    for listener in listeners:
        listener.close()
    for db in dbs:
        db.close()


def test_async_scheduler_and_outbox_worker(hdb: alk.Database) -> None:
    sched = alk.Scheduler(hdb)
    sched.add(name="beat", queue="ticks", schedule="@every 1s", payload="tick")
    delivered: list[object] = []

    async def deliver(payload: object) -> None:
        await asyncio.sleep(0)
        delivered.append(payload)

    box = hdb.outbox("mail", deliver)

    async def main() -> None:
        stop = asyncio.Event()
        leader = asyncio.create_task(sched.run(stop))
        worker = asyncio.create_task(box.run_worker("postman", stop))
        with hdb.transaction() as tx:
            box.enqueue({"to": "ada"}, tx=tx)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            delivered and hdb.query("SELECT 1 FROM _honker_live WHERE queue = 'ticks'")
        ):
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(asyncio.gather(leader, worker), 40)

    asyncio.run(main())
    assert delivered == [{"to": "ada"}]
    assert hdb.query("SELECT count(*) > 0 FROM _honker_live WHERE queue = 'ticks'") == [(1,)]
    assert hdb.query("SELECT * FROM _honker_locks") == []
