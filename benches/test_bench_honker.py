"""honker's primitives: our native statements against honker-core's SQL functions.

The baseline (``*_sqlfn``) is what the official honker bindings run:
``SELECT honker_enqueue(...)`` and friends inside a write transaction, with
the payload encoded by ``json.dumps`` and claims decoded by ``json.loads``.
It runs through our own binding, on a file of its own in the same folder,
so the only difference measured is the path (SQL function vs our cached
statements), not the driver. Both sides pay ``json.dumps`` per payload.

Run: ``pytest benches/test_bench_honker.py --benchmark-only
--benchmark-json=out.json`` then ``python benches/report.py out.json``; the
report adds a per-job table for the claim-vs-backlog groups. Under
``--benchmark-disable`` (CI) every workload shrinks so the file runs in a
second or two. Each benchmark checks its result before it is timed; rounds
start from the same table state (a setup clears or refills it, untimed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import alkdev_storage as alk

QUEUE = "bench"
TOPIC = "bench-events"
WORKER = "worker-1"

ENQUEUE_SQL = "SELECT honker_enqueue(?, ?, NULL, NULL, 0, 3, NULL)"
CLAIM_SQL = "SELECT honker_claim_batch(?, ?, ?, 300)"
ACK_SQL = "SELECT honker_ack(?, ?)"
ACK_BATCH_SQL = "SELECT honker_ack_batch(?, ?)"
PUBLISH_SQL = "SELECT honker_stream_publish(?, NULL, ?)"

N_BATCH = 1_000  # jobs / events written in one transaction
N_CLAIM = 100  # jobs per claim_batch + ack_batch
N_SINGLE = 100  # single-job transactions per round
K_PAIRS = 100  # claim_one + ack pairs per round of the backlog benchmark
BACKLOGS = (200, 2_000, 20_000)

ROUNDS = 40
WARMUP = 2


def payloads(n: int) -> list[dict[str, Any]]:
    return [{"to": f"user{i}@example.com", "template": "welcome", "n": i} for i in range(n)]


def sized(benchmark: Any, full: int, small: int) -> int:
    """`full` when timing; `small` under ``--benchmark-disable`` (CI)."""
    return small if benchmark.disabled else full


def timed(benchmark: Any, target: Any, *args: Any, setup: Any, rounds: int = ROUNDS) -> Any:
    """Time `target(*args)` for `rounds` rounds, each after an untimed `setup()`."""
    return benchmark.pedantic(
        target, args=args, setup=setup, rounds=rounds, warmup_rounds=WARMUP, iterations=1
    )


def clearing(db: alk.Database, table: str) -> Any:
    """A setup that empties `table` (returning nothing: pedantic would take a
    return value for the target's arguments)."""

    def clear() -> None:
        db.execute(f"DELETE FROM {table}")

    return clear


@pytest.fixture
def db(tmp_path: Path) -> Iterator[alk.Database]:
    database = alk.connect(tmp_path / "bench.db")
    yield database
    database.close()


def live_rows(db: alk.Database) -> list[tuple[Any, ...]]:
    return db.query(
        "SELECT queue, payload, state, priority, max_attempts, expires_at"
        " FROM _honker_live ORDER BY id"
    )


def expected_live(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(QUEUE, json.dumps(p), "pending", 0, 3, None) for p in items]


# -- 1. batched enqueue: 1,000 jobs in one transaction ---------------------------


def enqueue_many_ours(db: alk.Database, items: list[dict[str, Any]]) -> list[int]:
    return db.queue(QUEUE).enqueue_many(items)


def enqueue_loop_ours(db: alk.Database, items: list[dict[str, Any]]) -> list[int]:
    enqueue = db.queue(QUEUE).enqueue
    with db.transaction() as tx:
        return [enqueue(p, tx=tx) for p in items]


def enqueue_loop_sqlfn(db: alk.Database, items: list[dict[str, Any]]) -> list[int]:
    dumps = json.dumps
    with db.transaction() as tx:
        query_one = tx.query_one
        return [query_one(ENQUEUE_SQL, (QUEUE, dumps(p)))[0] for p in items]


def bench_enqueue_batch(benchmark: Any, db: alk.Database, enqueue: Any) -> None:
    items = payloads(sized(benchmark, N_BATCH, 50))
    ids = enqueue(db, items)
    assert len(ids) == len(items) and ids == sorted(ids)
    assert live_rows(db) == expected_live(items)
    timed(benchmark, enqueue, db, items, setup=clearing(db, "_honker_live"))
    assert db.query_one("SELECT count(*) FROM _honker_live") == (len(items),)


@pytest.mark.benchmark(group="honker-enqueue-1k")
def test_enqueue_many_ours(benchmark, db):
    bench_enqueue_batch(benchmark, db, enqueue_many_ours)


@pytest.mark.benchmark(group="honker-enqueue-1k")
def test_enqueue_loop_ours(benchmark, db):
    bench_enqueue_batch(benchmark, db, enqueue_loop_ours)


@pytest.mark.benchmark(group="honker-enqueue-1k")
def test_enqueue_loop_sqlfn(benchmark, db):
    bench_enqueue_batch(benchmark, db, enqueue_loop_sqlfn)


# -- 2. claim_batch(100) + ack_batch ----------------------------------------------


def claim_ack_batch_ours(db: alk.Database, n: int) -> int:
    q = db.queue(QUEUE)
    jobs = q.claim_batch(WORKER, n)
    return q.ack_batch([job.id for job in jobs], WORKER)


def claim_ack_batch_sqlfn(db: alk.Database, n: int) -> int:
    with db.transaction() as tx:
        (raw,) = tx.query_one(CLAIM_SQL, (QUEUE, WORKER, n))
    ids = [job["id"] for job in json.loads(raw)]
    with db.transaction() as tx:
        (acked,) = tx.query_one(ACK_BATCH_SQL, (json.dumps(ids), WORKER))
    return acked


def bench_claim_ack_batch(benchmark: Any, db: alk.Database, claim_ack: Any) -> None:
    n = sized(benchmark, N_CLAIM, 10)
    items = payloads(n)

    def refill() -> None:  # the queue holds exactly `n` due jobs
        db.queue(QUEUE).enqueue_many(items)

    refill()
    assert claim_ack(db, n) == n
    assert db.query_one("SELECT count(*) FROM _honker_live") == (0,)
    assert timed(benchmark, claim_ack, db, n, setup=refill) == n
    assert db.query_one("SELECT count(*) FROM _honker_live") == (0,)


@pytest.mark.benchmark(group="honker-claim-ack-batch-100")
def test_claim_ack_batch_ours(benchmark, db):
    bench_claim_ack_batch(benchmark, db, claim_ack_batch_ours)


@pytest.mark.benchmark(group="honker-claim-ack-batch-100")
def test_claim_ack_batch_sqlfn(benchmark, db):
    bench_claim_ack_batch(benchmark, db, claim_ack_batch_sqlfn)


# -- 3. batched stream publish: 1,000 events in one transaction --------------------


def publish_many_ours(db: alk.Database, items: list[dict[str, Any]]) -> list[int]:
    return db.stream(TOPIC).publish_many(items)


def publish_loop_ours(db: alk.Database, items: list[dict[str, Any]]) -> list[int]:
    publish = db.stream(TOPIC).publish
    with db.transaction() as tx:
        return [publish(p, tx=tx) for p in items]


def publish_loop_sqlfn(db: alk.Database, items: list[dict[str, Any]]) -> list[int]:
    dumps = json.dumps
    with db.transaction() as tx:
        query_one = tx.query_one
        return [query_one(PUBLISH_SQL, (TOPIC, dumps(p)))[0] for p in items]


def bench_publish_batch(benchmark: Any, db: alk.Database, publish: Any) -> None:
    items = payloads(sized(benchmark, N_BATCH, 50))
    offsets = publish(db, items)
    assert len(offsets) == len(items) and offsets == sorted(offsets)
    assert db.query("SELECT topic, key, payload FROM _honker_stream ORDER BY offset") == [
        (TOPIC, None, json.dumps(p)) for p in items
    ]
    timed(benchmark, publish, db, items, setup=clearing(db, "_honker_stream"))
    assert db.query_one("SELECT count(*) FROM _honker_stream") == (len(items),)


@pytest.mark.benchmark(group="honker-publish-1k")
def test_publish_many_ours(benchmark, db):
    bench_publish_batch(benchmark, db, publish_many_ours)


@pytest.mark.benchmark(group="honker-publish-1k")
def test_publish_loop_ours(benchmark, db):
    bench_publish_batch(benchmark, db, publish_loop_ours)


@pytest.mark.benchmark(group="honker-publish-1k")
def test_publish_loop_sqlfn(benchmark, db):
    bench_publish_batch(benchmark, db, publish_loop_sqlfn)


# -- 4. one job per transaction (report only) --------------------------------------


def enqueue_each_ours(db: alk.Database, items: list[dict[str, Any]]) -> list[int]:
    enqueue = db.queue(QUEUE).enqueue
    return [enqueue(p) for p in items]


def enqueue_each_sqlfn(db: alk.Database, items: list[dict[str, Any]]) -> list[int]:
    dumps = json.dumps
    ids = []
    for p in items:
        with db.transaction() as tx:
            ids.append(tx.query_one(ENQUEUE_SQL, (QUEUE, dumps(p)))[0])
    return ids


def bench_enqueue_each(benchmark: Any, db: alk.Database, enqueue: Any) -> None:
    items = payloads(sized(benchmark, N_SINGLE, 10))
    benchmark.extra_info["per_round"] = len(items)
    ids = enqueue(db, items)
    assert len(ids) == len(items) and ids == sorted(ids)
    assert live_rows(db) == expected_live(items)
    timed(benchmark, enqueue, db, items, setup=clearing(db, "_honker_live"))
    assert db.query_one("SELECT count(*) FROM _honker_live") == (len(items),)


@pytest.mark.benchmark(group="honker-enqueue-single-tx")
def test_enqueue_each_ours(benchmark, db):
    bench_enqueue_each(benchmark, db, enqueue_each_ours)


@pytest.mark.benchmark(group="honker-enqueue-single-tx")
def test_enqueue_each_sqlfn(benchmark, db):
    bench_enqueue_each(benchmark, db, enqueue_each_sqlfn)


# -- 5. claim_one + ack against a standing backlog -----------------------------------
#
# Each round claims and acks K jobs one at a time (two transactions per job)
# while the queue holds backlog..backlog+K due jobs; the setup tops it back up
# to backlog+K. report.py divides by K and compares each backlog with 200.


def claim_ack_each_ours(db: alk.Database, k: int) -> int:
    q = db.queue(QUEUE)
    acked = 0
    for _ in range(k):
        job = q.claim_one(WORKER)
        assert job is not None
        acked += job.ack()
    return acked


def claim_ack_each_sqlfn(db: alk.Database, k: int) -> int:
    acked = 0
    for _ in range(k):
        with db.transaction() as tx:
            (raw,) = tx.query_one(CLAIM_SQL, (QUEUE, WORKER, 1))
        (job,) = json.loads(raw)
        with db.transaction() as tx:
            acked += tx.query_one(ACK_SQL, (job["id"], WORKER))[0]
    return acked


def bench_claim_ack_backlog(benchmark: Any, db: alk.Database, claim_ack: Any, backlog: int) -> None:
    k = sized(benchmark, K_PAIRS, 5)
    standing = sized(benchmark, backlog, backlog // 100)
    benchmark.extra_info.update(per_round=k, scale=backlog)
    q = db.queue(QUEUE)
    filler = payloads(k)

    def top_up() -> None:
        q.enqueue_many(filler)

    q.enqueue_many(payloads(standing + k))
    assert claim_ack(db, k) == k
    assert db.query_one("SELECT count(*) FROM _honker_live") == (standing,)
    assert timed(benchmark, claim_ack, db, k, setup=top_up) == k
    assert db.query_one("SELECT count(*), min(state), max(state) FROM _honker_live") == (
        standing,
        "pending",
        "pending",
    )


@pytest.mark.benchmark(group="honker-claim-ack-backlog")
@pytest.mark.parametrize("backlog", BACKLOGS)
def test_claim_ack_backlog_ours(benchmark, db, backlog):
    bench_claim_ack_backlog(benchmark, db, claim_ack_each_ours, backlog)


@pytest.mark.benchmark(group="honker-claim-ack-backlog")
@pytest.mark.parametrize("backlog", BACKLOGS)
def test_claim_ack_backlog_sqlfn(benchmark, db, backlog):
    bench_claim_ack_backlog(benchmark, db, claim_ack_each_sqlfn, backlog)
