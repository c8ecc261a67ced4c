"""Durable consumers at the service boundary: handlers that raise, Ctrl-C,
cancelled tasks, explicit acks inside the handler's transaction, and a
consumer process killed at random points."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import alkdev_storage as alk

PACKAGE_PARENT = str(Path(alk.__file__).resolve().parents[1])


class HandlerFailed(Exception):
    pass


@pytest.fixture
def db(tmp_path: Path) -> alk.Database:
    database = alk.connect(tmp_path / "events.db")
    database.stream("mail").publish_many([{"n": i} for i in range(3)])
    return database


def first_payload(db: alk.Database, consumer: str = "mailer") -> object:
    with db.subscribe("mail", consumer=consumer) as events:
        event = events.next(timeout=1)
        assert event is not None
        return event.payload


def test_a_handler_raising_gets_its_event_again(db: alk.Database) -> None:
    with pytest.raises(HandlerFailed), db.subscribe("mail", consumer="mailer") as events:
        for event in events:
            assert event.payload == {"n": 0}
            raise HandlerFailed
    assert db.stream("mail").get_offset("mailer") == 0
    assert first_payload(db) == {"n": 0}


def test_events_before_the_failing_one_stay_done(db: alk.Database) -> None:
    with pytest.raises(HandlerFailed), db.subscribe("mail", consumer="mailer") as events:
        for event in events:
            if event.payload == {"n": 1}:
                raise HandlerFailed
    assert db.stream("mail").get_offset("mailer") == 1  # event 0 finished
    assert first_payload(db) == {"n": 1}


def test_ctrl_c_in_the_handler_leaves_the_event_undone(db: alk.Database) -> None:
    with pytest.raises(KeyboardInterrupt), db.subscribe("mail", consumer="mailer") as events:
        events.next(timeout=1)
        raise KeyboardInterrupt
    assert first_payload(db) == {"n": 0}


def test_ctrl_c_while_waiting_keeps_the_finished_handler_done(db: alk.Database) -> None:
    """Asking for the next event says the previous handler finished, so an
    interrupt that lands while waiting redelivers nothing."""
    with pytest.raises(KeyboardInterrupt), db.subscribe("mail", consumer="mailer") as events:
        for _ in range(3):
            events.next(timeout=1)
        threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        events.next(timeout=10)  # no fourth event: interrupted in the wait
    assert db.stream("mail").get_offset("mailer") == 3


def test_a_normal_exit_counts_the_event_in_hand(db: alk.Database) -> None:
    assert first_payload(db) == {"n": 0}
    assert first_payload(db) == {"n": 1}


def test_close_alone_does_not_count_the_event_in_hand_ack_does(db: alk.Database) -> None:
    events = db.subscribe("mail", consumer="mailer")
    events.next(timeout=1)
    events.close()  # e.g. from a `finally:` after the handler raised
    assert first_payload(db) == {"n": 0}  # that exit counted it: event 0 is done
    events = db.subscribe("mail", consumer="mailer")
    second = events.next(timeout=1)
    assert second is not None and second.payload == {"n": 1}
    events.ack()  # saved at once
    assert db.stream("mail").get_offset("mailer") == second.offset
    events.close()
    assert first_payload(db) == {"n": 2}


def test_a_dropped_subscription_redelivers_what_it_did_not_save(db: alk.Database) -> None:
    events = db.subscribe("mail", consumer="mailer", save_every_n=100, save_every_s=3600)
    events.next(timeout=1)
    events.next(timeout=1)  # event 0 done, but not saved yet
    del events
    assert first_payload(db) == {"n": 0}


def test_ack_in_the_handlers_transaction_commits_or_rolls_back_with_it(
    db: alk.Database,
) -> None:
    db.execute("CREATE TABLE sent(n INTEGER)")
    with pytest.raises(HandlerFailed), db.subscribe("mail", consumer="mailer") as events:
        event = events.next(timeout=1)
        assert event is not None
        with db.transaction() as tx:
            tx.execute("INSERT INTO sent VALUES (?)", (event.payload["n"],))
            events.ack(tx=tx)
            raise HandlerFailed  # rolls back the row and the offset together
    assert db.query("SELECT count(*) FROM sent") == [(0,)]
    assert db.stream("mail").get_offset("mailer") == 0
    with db.subscribe("mail", consumer="mailer") as events:
        event = events.next(timeout=1)
        assert event is not None and event.payload == {"n": 0}
        with db.transaction() as tx:
            tx.execute("INSERT INTO sent VALUES (?)", (event.payload["n"],))
            events.ack(tx=tx)
        assert db.stream("mail").get_offset("mailer") == event.offset  # committed together
    assert db.query("SELECT n FROM sent") == [(0,)]
    assert first_payload(db) == {"n": 1}


def test_ack_checks_the_transaction_and_the_state(db: alk.Database) -> None:
    events = db.subscribe("mail", consumer="mailer")
    with pytest.raises(TypeError, match="tx must be a transaction"):
        events.ack(tx="not a transaction")
    events.close()
    with pytest.raises(ValueError, match="closed"):
        events.ack()


def test_the_block_exception_wins_over_a_failed_save(db: alk.Database) -> None:
    events = db.subscribe("mail", consumer="mailer", save_every_n=100, save_every_s=3600)
    with pytest.raises(HandlerFailed) as raised, events:
        events.next(timeout=1)
        events.next(timeout=1)
        db.close()  # the save on the way out fails
        raise HandlerFailed
    assert any("offsets were not saved" in note for note in raised.value.__notes__)


def test_async_for_handler_raising_gets_its_event_again(db: alk.Database) -> None:
    async def consume() -> None:
        async with db.subscribe("mail", consumer="mailer") as events:
            async for event in events:
                assert event.payload == {"n": 0}
                raise HandlerFailed

    with pytest.raises(HandlerFailed):
        asyncio.run(consume())
    assert first_payload(db) == {"n": 0}


def test_a_cancelled_consumer_task_gets_its_event_again(db: alk.Database) -> None:
    started = asyncio.Event()

    async def consume() -> None:
        async with db.subscribe("mail", consumer="mailer") as events:
            async for _event in events:
                started.set()
                await asyncio.sleep(3600)  # the handler is cancelled here

    async def main() -> None:
        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert first_payload(db) == {"n": 0}


def test_async_iteration_marks_done_on_the_next_step(db: alk.Database) -> None:
    async def consume() -> list[int]:
        seen = []
        async with db.subscribe("mail", consumer="mailer", save_every_n=1) as events:
            async for event in events:
                seen.append(event.offset)
                if len(seen) == 2:
                    break
        return seen

    seen = asyncio.run(consume())
    assert db.stream("mail").get_offset("mailer") == seen[-1]  # break = handler finished
    assert first_payload(db) == {"n": 2}


def test_the_honker_api_iterator_is_at_least_once(tmp_path: Path) -> None:
    from alkdev_storage import honker

    hdb = honker.open(tmp_path / "h.db")
    stream = hdb.stream("jobs")
    for i in range(3):
        stream.publish({"i": i})

    async def consume(fail_on: int | None, want: int) -> list[int]:
        seen = []
        async for event in stream.subscribe(consumer="w", save_every_n=1):
            if event.payload["i"] == fail_on:
                raise HandlerFailed
            seen.append(event.payload["i"])
            if len(seen) == want:
                break
        return seen

    with pytest.raises(HandlerFailed):
        asyncio.run(consume(fail_on=1, want=3))
    assert stream.get_offset("w") == 1  # event 0 done, event 1 not
    assert asyncio.run(consume(fail_on=None, want=2)) == [1, 2]


# ------------------------------------------------ a consumer killed at random

CONSUMER = textwrap.dedent(
    """
    import asyncio, os, random, sys, time
    import alkdev_storage as alk

    path, log, mode, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rng = random.Random(seed)
    db = alk.connect(path)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    every = rng.choice([1, 3, 50, 1000])

    def handle(event):
        os.write(fd, f"{event.offset}\\n".encode())  # the handler's effect
        if rng.random() < 0.3:
            time.sleep(0.0005)

    def done(events):
        return events.next(timeout=0.3) is None

    events = db.subscribe(["a", "b"], consumer="c", save_every_n=every, save_every_s=0.05)
    print("ready", flush=True)  # imported and subscribed: the kill clock starts
    if mode == "iter":
        with events:
            for event in events:
                handle(event)
                if event.payload.get("last"):
                    break
    elif mode == "next":
        with events:
            while (event := events.next(timeout=5)) is not None:
                handle(event)
                if event.payload.get("last"):
                    break
    elif mode == "ack":
        while (event := events.next(timeout=5)) is not None:
            handle(event)
            events.ack()
            if event.payload.get("last"):
                break
        events.close()
    elif mode == "poll":
        with events:
            while True:
                batch = events.poll()
                for event in batch:
                    handle(event)
                if any(e.payload.get("last") for e in batch):
                    break
                if not batch:
                    time.sleep(0.002)
    else:
        async def main():
            async with events:
                async for event in events:
                    handle(event)
                    if event.payload.get("last"):
                        break
        asyncio.run(main())
    os.write(fd, b"DONE\\n")
    """
)

MODES = ("iter", "next", "ack", "poll", "async")


@pytest.mark.timeout(240)
def test_a_consumer_killed_50_times_never_skips_or_reorders(tmp_path: Path) -> None:
    path, log = tmp_path / "stream.db", tmp_path / "handled.log"
    script = tmp_path / "consumer.py"
    script.write_text(CONSUMER)
    producer_db = alk.connect(path)
    a, b, other = producer_db.stream("a"), producer_db.stream("b"), producer_db.stream("z")
    rng = random.Random(20261201)
    stop = threading.Event()

    def produce() -> None:  # live events while the consumer is killed
        n = 0
        while not stop.is_set():
            with producer_db.transaction() as tx:
                for _ in range(rng.randint(1, 20)):
                    rng.choice([a, b, other]).publish({"n": n}, tx=tx)
                    n += 1
            time.sleep(0.005)

    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT}

    def start(mode: str, seed: int) -> subprocess.Popen[bytes]:
        with open(log, "a") as f:
            f.write(f"RUN {mode}\n")
        return subprocess.Popen(
            [sys.executable, str(script), str(path), str(log), mode, str(seed)],
            env=env,
            stdout=subprocess.PIPE,
        )

    producer = threading.Thread(target=produce)
    producer.start()
    kills = 0
    try:
        while kills < 50:
            child = start(MODES[kills % len(MODES)], kills)
            # Timed from the child's "ready" (imported, subscribed), not from
            # its start: on a loaded machine the import alone can outlast a
            # fixed delay, and the kill would land before the stream.
            assert child.stdout is not None
            child.stdout.readline()
            time.sleep(rng.uniform(0.05, 0.45))  # into the stream
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            child.stdout.close()
            kills += 1
    finally:
        stop.set()
        producer.join(30)
    a.publish({"last": True})
    final = start("iter", 999)
    final.communicate(timeout=60)
    assert final.returncode == 0
    producer_db.close()

    with alk.connect(path) as check:
        expected = [
            o for (o,) in check.query("SELECT offset FROM _honker_stream "
                                      "WHERE topic IN ('a', 'b') ORDER BY offset")
        ]  # fmt: skip
    index = {offset: i for i, offset in enumerate(expected)}
    runs: list[list[int]] = []
    for line in log.read_text().splitlines():
        if line.startswith("RUN"):
            runs.append([])
        elif line == "DONE":
            continue
        elif line:  # a line cut by the kill has no newline and is skipped
            runs[-1].append(index[int(line)])
    assert len(runs) == 51
    delivered_runs = sum(1 for r in runs if r)
    assert delivered_runs >= 40, "most kills must land while events are being handled"
    high = -1  # the furthest event handled so far
    previous_start = 0
    for run in runs:
        if not run:
            continue
        # Within a run, every event of the topics, in order, none skipped.
        assert run == list(range(run[0], run[0] + len(run))), "skipped or reordered"
        # A new run starts at or before the first event not yet handled,
        # and never before where an earlier run started (offsets only grow).
        assert run[0] <= high + 1, f"skipped events {high + 1}..{run[0] - 1}"
        assert run[0] >= previous_start
        previous_start = run[0]
        high = max(high, run[-1])
    assert high == len(expected) - 1  # the final run reached the end
    redelivered = sum(len(r) for r in runs) - len(expected)
    assert redelivered >= 0


@pytest.mark.timeout(120)
def test_events_tail_interrupted_under_a_flood_skips_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with alk.Storage.open(root) as store:
        (first, *_) = store.system.stream("flood").publish_many([{"i": i} for i in range(20_000)])
    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT}
    command = [sys.executable, "-m", "alkdev_storage", "events", "tail", "flood",
               "--consumer", "tailer", "--root", str(root)]  # fmt: skip
    printed: list[int] = []
    for round_ in range(3):
        tail = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert tail.stdout is not None
        for _ in range(1000 + 700 * round_):
            line = tail.stdout.readline()
            printed.append(int(line.split(b'"offset": ')[1].split(b",")[0]))
        tail.send_signal(signal.SIGINT)  # Ctrl-C in the middle of the flood
        # Read through the same buffered pipe (communicate() would bypass
        # what readline() has buffered already).
        out = tail.stdout.read()
        assert tail.stderr is not None
        err = tail.stderr.read()
        assert tail.wait(30) == 130 and b"Traceback" not in err
        printed += [int(x.split(b'"offset": ')[1].split(b",")[0]) for x in out.splitlines()]
    # Each restart resumes at or before the first offset not yet printed.
    high = first - 1
    for offset in printed:
        assert offset <= high + 1, f"offsets {high + 1}..{offset - 1} were never printed"
        high = max(high, offset)
