"""Interop with honker-core's SQL functions, both ways, on one file.

Each scenario runs the same steps on four fresh files: a reference driven
only through ``SELECT honker_*()`` / ``notify()`` (each call in its own
explicit transaction, as honker's bindings make them), one driven only
through our native primitives, and two where the steps alternate between
the two paths (one starting natively, one through SQL), so every step is
done both ways on a file whose rows the other path wrote. After every step
the return values and the ``_honker_*`` tables (plus ``sqlite_sequence``)
of every file must equal the reference's: ids, states, attempts, owners,
dead letters and their ``last_error``, offsets, counts. Timestamps are
compared within 2 s (they come from each file's own ``unixepoch()``), JSON
is compared decoded (docs/honker-contract.md, "Payloads and other JSON").

The last tests run the SQL side in a second process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alkdev_storage as alk

TIMEOUT = 30  # every queue's visibility timeout, on both paths
SLACK_S = 2  # how far apart two files' unixepoch() may be for one step

TIME_COLUMNS = {
    "run_at",
    "claim_expires_at",
    "created_at",
    "expires_at",
    "died_at",
    "next_fire_at",
    "window_start",
    "fire_at",
}
JSON_COLUMNS = {"payload", "value"}

_UNSET: Any = object()


class At:
    """A Unix time that equals another within `SLACK_S` (None only None)."""

    __slots__ = ("t",)

    def __init__(self, t: int | None) -> None:
        assert t is None or type(t) is int, f"timestamp {t!r} is not an INTEGER"
        self.t = t

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, At):
            return NotImplemented
        if self.t is None or other.t is None:
            return self.t is other.t
        return abs(self.t - other.t) <= SLACK_S

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"At({self.t})"


def normalise(row: dict[str, Any], *, decode: bool = True) -> dict[str, Any]:
    """Timestamps as `At`; JSON text decoded unless it already is."""
    out = {}
    for key, value in row.items():
        if key in TIME_COLUMNS:
            value = At(value)
        elif decode and key in JSON_COLUMNS and isinstance(value, str):
            value = json.loads(value)
        out[key] = value
    return out


def dump(db: alk.Database) -> dict[str, list[dict[str, Any]]]:
    """Every `_honker_*` table and `sqlite_sequence`, normalised."""
    tables = [
        r[0]
        for r in db.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND (name LIKE '\\_honker\\_%' ESCAPE '\\' OR name = 'sqlite_sequence') "
            "ORDER BY name"
        )
    ]
    assert len(tables) == 10, tables
    return {
        t: [normalise(r) for r in db.query(f"SELECT * FROM {t} ORDER BY 1, 2", as_dict=True)]
        for t in tables
    }


def by_id(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # honker returns a claim in UPDATE order, we in claim order: the set is
    # the contract, not the order.
    return sorted(jobs, key=lambda j: j["id"])


class SqlPath:
    """honker-core's SQL functions, each call in an explicit transaction."""

    kind = "sql"

    def __init__(self, db: alk.Database) -> None:
        self.db = db

    def call(self, fn: str, *args: Any) -> Any:
        marks = ", ".join("?" * len(args))
        with self.db.transaction() as tx:
            row = tx.query_one(f"SELECT {fn}({marks})", args)
        assert row is not None
        return row[0]

    # ------------------------------------------------------------- queues

    def enqueue(
        self,
        queue: str,
        payload: Any,
        *,
        run_at: int | None = None,
        delay: int | None = None,
        priority: int = 0,
        max_attempts: int = 3,
        expires: int | None = None,
    ) -> int:
        raw = json.dumps(payload)
        args = (queue, raw, run_at, delay, priority, max_attempts, expires)
        return self.call("honker_enqueue", *args)

    def enqueue_many(self, queue: str, payloads: list[Any]) -> list[int]:
        with self.db.transaction() as tx:
            return [
                tx.query_one(
                    "SELECT honker_enqueue(?, ?, NULL, NULL, 0, 3, NULL)",
                    (queue, json.dumps(p)),
                )[0]
                for p in payloads
            ]

    def claim(self, queue: str, worker: str, n: int) -> list[dict[str, Any]]:
        raw = self.call("honker_claim_batch", queue, worker, n, TIMEOUT)
        return by_id([normalise(j) for j in json.loads(raw)])

    def ack(self, job_id: int, worker: str) -> bool:
        return bool(self.call("honker_ack", job_id, worker))

    def ack_batch(self, ids: list[int], worker: str) -> int:
        return self.call("honker_ack_batch", json.dumps(ids), worker)

    def retry(self, job_id: int, worker: str, delay: int, error: str) -> bool:
        return bool(self.call("honker_retry", job_id, worker, delay, error))

    def fail(self, job_id: int, worker: str, error: str) -> bool:
        return bool(self.call("honker_fail", job_id, worker, error))

    def heartbeat(self, job_id: int, worker: str, extend: int) -> bool:
        return bool(self.call("honker_heartbeat", job_id, worker, extend))

    def cancel(self, job_id: int) -> bool:
        return bool(self.call("honker_cancel", job_id))

    def get_job(self, job_id: int) -> dict[str, Any] | None:
        raw = self.call("honker_get_job", job_id)
        return normalise(json.loads(raw)) if raw else None

    def sweep_expired(self, queue: str) -> int:
        return self.call("honker_sweep_expired", queue)

    def next_claim_at(self, queue: str) -> At | None:
        at = self.call("honker_queue_next_claim_at", queue)
        return At(at) if at else None

    # ------------------------------------------------------------ streams

    def publish(self, topic: str, payload: Any, key: str | None = None) -> int:
        return self.call("honker_stream_publish", topic, key, json.dumps(payload))

    def publish_many(self, topic: str, payloads: list[Any], keys: list[str | None]) -> list[int]:
        with self.db.transaction() as tx:
            return [
                tx.query_one("SELECT honker_stream_publish(?, ?, ?)", (topic, k, json.dumps(p)))[0]
                for p, k in zip(payloads, keys, strict=True)
            ]

    def read_since(self, topic: str, offset: int, limit: int) -> list[dict[str, Any]]:
        raw = self.call("honker_stream_read_since", topic, offset, limit)
        return [normalise(e) for e in json.loads(raw)]

    def save_offset(self, consumer: str, topic: str, offset: int) -> bool:
        return bool(self.call("honker_stream_save_offset", consumer, topic, offset))

    def get_offset(self, consumer: str, topic: str) -> int:
        return self.call("honker_stream_get_offset", consumer, topic)

    # ------------------------------------------------------ notifications

    def notify(self, channel: str, payload: Any) -> int:
        return self.call("notify", channel, json.dumps(payload))

    def prune_notifications(self, older_than_s: int | None, max_keep: int | None) -> int:
        # The Python binding's statement (honker-core has no SQL function).
        with self.db.transaction() as tx:
            return tx.execute(
                "DELETE FROM _honker_notifications "
                "WHERE (?1 IS NOT NULL AND created_at < unixepoch() - ?1) "
                "OR (?2 IS NOT NULL AND id <= (SELECT id FROM _honker_notifications "
                "ORDER BY id DESC LIMIT 1 OFFSET ?2))",
                (older_than_s, max_keep),
            ).rowcount

    # -------------------------------------------------- locks, rate limits

    def lock_acquire(self, name: str, owner: str, ttl: int) -> bool:
        return bool(self.call("honker_lock_acquire", name, owner, ttl))

    def lock_release(self, name: str, owner: str) -> bool:
        return bool(self.call("honker_lock_release", name, owner))

    def lock_renew(self, name: str, owner: str, ttl: int) -> bool:
        return bool(self.call("honker_lock_renew", name, owner, ttl))

    def rate_limit(self, name: str, limit: int, per: int) -> bool:
        return bool(self.call("honker_rate_limit_try", name, limit, per))

    def rate_limit_sweep(self, older_than_s: int) -> int:
        return self.call("honker_rate_limit_sweep", older_than_s)

    # ---------------------------------------------------------- scheduler

    def schedule_add(
        self,
        name: str,
        queue: str,
        cron: str,
        payload: Any,
        *,
        priority: int = 0,
        expires: int | None = None,
        max_attempts: int = 3,
    ) -> None:
        args = (name, queue, cron, json.dumps(payload), priority, expires, max_attempts)
        assert self.call("honker_scheduler_register", *args) == 1

    def schedule_update(
        self,
        name: str,
        *,
        cron: str | None = None,
        payload: Any = _UNSET,
        priority: int | None = None,
        expires: int | None = _UNSET,
        max_attempts: int | None = _UNSET,
    ) -> bool:
        args = (
            name,
            cron,
            None if payload is _UNSET else json.dumps(payload),
            priority,
            None if expires is _UNSET else expires,
            int(expires is not _UNSET),
            None if max_attempts is _UNSET else max_attempts,
            int(max_attempts is not _UNSET),
        )
        return bool(self.call("honker_scheduler_update", *args))

    def schedule_pause(self, name: str) -> bool:
        return bool(self.call("honker_scheduler_pause", name))

    def schedule_resume(self, name: str) -> bool:
        return bool(self.call("honker_scheduler_resume", name))

    def schedule_remove(self, name: str) -> bool:
        return bool(self.call("honker_scheduler_unregister", name))

    def schedule_list(self) -> list[dict[str, Any]]:
        return [normalise(t) for t in json.loads(self.call("honker_scheduler_list"))]

    def schedule_tick(self, now: int) -> list[dict[str, Any]]:
        return [normalise(f) for f in json.loads(self.call("honker_scheduler_tick", now))]

    def schedule_soonest(self) -> At | None:
        at = self.call("honker_scheduler_soonest")
        return At(at) if at else None

    # ------------------------------------------------------------ results

    def result_save(self, job_id: int, value: Any, ttl: int | None) -> None:
        assert self.call("honker_result_save", job_id, json.dumps(value), ttl or 0) == 1

    def result_get(self, job_id: int) -> tuple[bool, Any]:
        raw = self.call("honker_result_get", job_id)
        return (False, None) if raw is None else (True, json.loads(raw))

    def result_sweep(self) -> int:
        return self.call("honker_result_sweep")


class NativePath:
    """The same operations through our public primitives."""

    kind = "native"

    def __init__(self, db: alk.Database) -> None:
        self.db = db
        self.scheduler = alk.Scheduler(db)

    def q(self, name: str = "q") -> alk.Queue:
        return self.db.queue(name, visibility_timeout_s=TIMEOUT)

    @staticmethod
    def job(j: alk.Job) -> dict[str, Any]:
        return {
            "id": j.id,
            "queue": j.queue_name,
            "payload": j.payload,
            "worker_id": j.worker_id,
            "attempts": j.attempts,
            "claim_expires_at": At(j.claim_expires_at),
        }

    def enqueue(
        self,
        queue: str,
        payload: Any,
        *,
        run_at: int | None = None,
        delay: int | None = None,
        priority: int = 0,
        max_attempts: int = 3,
        expires: int | None = None,
    ) -> int:
        return self.q(queue).enqueue(
            payload,
            run_at=run_at,
            delay=delay,
            priority=priority,
            expires=expires,
            max_attempts=max_attempts,
        )

    def enqueue_many(self, queue: str, payloads: list[Any]) -> list[int]:
        return self.q(queue).enqueue_many(payloads)

    def claim(self, queue: str, worker: str, n: int) -> list[dict[str, Any]]:
        return by_id([self.job(j) for j in self.q(queue).claim_batch(worker, n)])

    def ack(self, job_id: int, worker: str) -> bool:
        return self.q().ack(job_id, worker)

    def ack_batch(self, ids: list[int], worker: str) -> int:
        return self.q().ack_batch(ids, worker)

    def retry(self, job_id: int, worker: str, delay: int, error: str) -> bool:
        return self.q().retry(job_id, worker, delay, error)

    def fail(self, job_id: int, worker: str, error: str) -> bool:
        return self.q().fail(job_id, worker, error)

    def heartbeat(self, job_id: int, worker: str, extend: int) -> bool:
        return self.q().heartbeat(job_id, worker, extend)

    def cancel(self, job_id: int) -> bool:
        return self.q().cancel(job_id)

    def get_job(self, job_id: int) -> dict[str, Any] | None:
        found = self.q().get_job(job_id)
        return None if found is None else normalise(found, decode=False)

    def sweep_expired(self, queue: str) -> int:
        return self.q(queue).sweep_expired()

    def next_claim_at(self, queue: str) -> At | None:
        at = self.q(queue).next_claim_at()
        return None if at is None else At(at)

    def publish(self, topic: str, payload: Any, key: str | None = None) -> int:
        return self.db.stream(topic).publish(payload, key=key)

    def publish_many(self, topic: str, payloads: list[Any], keys: list[str | None]) -> list[int]:
        return self.db.stream(topic).publish_many(payloads, keys=keys)

    def read_since(self, topic: str, offset: int, limit: int) -> list[dict[str, Any]]:
        return [
            {
                "offset": e.offset,
                "topic": e.topic,
                "key": e.key,
                "payload": e.payload,
                "created_at": At(e.created_at),
            }
            for e in self.db.stream(topic).read_since(offset, limit)
        ]

    def save_offset(self, consumer: str, topic: str, offset: int) -> bool:
        return self.db.stream(topic).save_offset(consumer, offset)

    def get_offset(self, consumer: str, topic: str) -> int:
        return self.db.stream(topic).get_offset(consumer)

    def notify(self, channel: str, payload: Any) -> int:
        return self.db.notify(channel, payload)

    def prune_notifications(self, older_than_s: int | None, max_keep: int | None) -> int:
        return self.db.prune_notifications(older_than_s, max_keep)

    def lock_acquire(self, name: str, owner: str, ttl: int) -> bool:
        return self.db.lock(name, ttl=ttl, owner=owner).acquire()

    def lock_release(self, name: str, owner: str) -> bool:
        return self.db.lock(name, owner=owner).release()

    def lock_renew(self, name: str, owner: str, ttl: int) -> bool:
        return self.db.lock(name, owner=owner).renew(ttl)

    def rate_limit(self, name: str, limit: int, per: int) -> bool:
        return self.db.try_rate_limit(name, limit, per)

    def rate_limit_sweep(self, older_than_s: int) -> int:
        return self.db.sweep_rate_limits(older_than_s)

    def schedule_add(
        self,
        name: str,
        queue: str,
        cron: str,
        payload: Any,
        *,
        priority: int = 0,
        expires: int | None = None,
        max_attempts: int = 3,
    ) -> None:
        self.scheduler.add(
            name=name,
            queue=queue,
            schedule=cron,
            payload=payload,
            priority=priority,
            expires=expires,
            max_attempts=max_attempts,
        )

    def schedule_update(self, name: str, *, cron: str | None = None, **fields: Any) -> bool:
        return self.scheduler.update(name, schedule=cron, **fields)

    def schedule_pause(self, name: str) -> bool:
        return self.scheduler.pause(name)

    def schedule_resume(self, name: str) -> bool:
        return self.scheduler.resume(name)

    def schedule_remove(self, name: str) -> bool:
        return self.scheduler.remove(name)

    def schedule_list(self) -> list[dict[str, Any]]:
        return [normalise(t, decode=False) for t in self.scheduler.list()]

    def schedule_tick(self, now: int) -> list[dict[str, Any]]:
        return [normalise(f) for f in self.scheduler.tick(now)]

    def schedule_soonest(self) -> At | None:
        at = self.scheduler.soonest()
        return None if at is None else At(at)

    def result_save(self, job_id: int, value: Any, ttl: int | None) -> None:
        self.q().save_result(job_id, value, ttl)

    def result_get(self, job_id: int) -> tuple[bool, Any]:
        return self.q().get_result(job_id)

    def result_sweep(self) -> int:
        return self.q().sweep_results()


# file label -> the path used on even steps, on odd steps
LAYOUT = {
    "sql": (SqlPath, SqlPath),
    "native": (NativePath, NativePath),
    "native-then-sql": (NativePath, SqlPath),
    "sql-then-native": (SqlPath, NativePath),
}


class Runner:
    """Apply each call to every file, check, and return the reference's
    result.

    ``run.claim("q", "w1", 2)`` claims on all four files (through the path
    each uses for this step), asserts every result and every file's dump
    equals the SQL-only file's, and returns that file's result, for the
    test to check against the values it expects. ``run.raw(sql)`` applies
    one plain statement to every file (to move time, e.g. put a claim's
    expiry in the past, instead of sleeping).
    """

    def __init__(self, tmp_path: Path) -> None:
        self.dbs = {label: alk.connect(tmp_path / f"{label}.db") for label in LAYOUT}
        self.paths = {
            label: tuple(cls(self.dbs[label]) for cls in classes)
            for label, classes in LAYOUT.items()
        }
        self.ref = self.dbs["sql"]
        self.step = 0
        self.t0 = int(time.time())

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()

    def __getattr__(self, op: str) -> Callable[..., Any]:
        if op.startswith("_"):
            raise AttributeError(op)

        def apply(*args: Any, **kwargs: Any) -> Any:
            step, self.step = self.step, self.step + 1
            results = {}
            for label, paths in self.paths.items():
                path = paths[step % 2]
                results[label] = (path.kind, getattr(path, op)(*args, **kwargs))
            self.check(f"step {step} {op}{args}", results)
            return results["sql"][1]

        return apply

    def raw(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        results = {
            label: ("raw", db.execute(sql, params).rowcount) for label, db in self.dbs.items()
        }
        self.check(f"step {self.step} raw {sql}", results)
        assert results["sql"][1] > 0, f"{sql} changed nothing"

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the reference file (all files are equal after each step)."""
        return self.ref.query(sql, params)

    def check(self, what: str, results: dict[str, tuple[str, Any]]) -> None:
        expected = results["sql"][1]
        reference = dump(self.ref)
        for label, (kind, result) in results.items():
            assert result == expected, f"{what}: result on {label} (via {kind})"
            assert dump(self.dbs[label]) == reference, f"{what}: tables of {label} (via {kind})"


@pytest.fixture
def run(tmp_path: Path) -> Any:
    runner = Runner(tmp_path)
    yield runner
    runner.close()


def dead_letters(run: Runner) -> list[tuple[Any, ...]]:
    return run.query("SELECT id, queue, attempts, max_attempts, last_error FROM _honker_dead")


# ------------------------------------------------------------------ queues


def test_queue_lifecycle_matches_the_sql_functions(run: Runner) -> None:
    past = run.t0 - 100
    assert run.enqueue("q", {"n": 1}) == 1
    assert run.enqueue("q", {"n": 2}, priority=5) == 2
    assert run.enqueue("q", {"n": 3}, delay=60) == 3
    assert run.enqueue("q", {"n": 4}, run_at=past, max_attempts=1) == 4
    assert run.enqueue("q", "five", expires=300) == 5
    assert run.enqueue("other", [6]) == 6
    assert run.query("SELECT run_at FROM _honker_live WHERE id = 4") == [(past,)]
    # Only the delayed job counts: the others can be claimed now.
    (due,) = run.query("SELECT run_at FROM _honker_live WHERE id = 3")[0]
    assert run.next_claim_at("q") == At(due)

    # Priority first, then run_at: 2 (priority 5), then 4 (oldest run_at).
    claimed = run.claim("q", "w1", 2)
    assert [(j["id"], j["worker_id"], j["attempts"]) for j in claimed] == [
        (2, "w1", 1),
        (4, "w1", 1),
    ]
    assert [j["payload"] for j in claimed] == [{"n": 2}, {"n": 4}]
    assert run.ack(2, "w1") is True
    # Someone else's job: every call is refused and changes nothing.
    assert run.ack(4, "intruder") is False
    assert run.heartbeat(4, "intruder", 100) is False
    assert run.retry(4, "intruder", 0, "nope") is False
    assert run.fail(4, "intruder", "nope") is False
    # Its only attempt is used: retry dead-letters it with the error.
    assert run.retry(4, "w1", 0, "boom") is True
    assert dead_letters(run) == [(4, "q", 1, 1, "boom")]

    assert [j["id"] for j in run.claim("q", "w2", 5)] == [1, 5]
    assert run.heartbeat(1, "w2", 100) is True
    assert run.heartbeat(1, "w1", 100) is False
    (lapse,) = run.query("SELECT claim_expires_at + 1 FROM _honker_live WHERE id = 5")[0]
    assert run.next_claim_at("q") == At(lapse)
    # Attempts left: back to pending after the delay, error not stored.
    assert run.retry(1, "w2", 60, "transient") is True
    job = run.get_job(1)
    assert job is not None
    assert (job["state"], job["worker_id"], job["attempts"], job["payload"]) == (
        "pending",
        None,
        1,
        {"n": 1},
    )
    assert job["claim_expires_at"] == At(None)
    assert run.fail(5, "w2", "fatal") is True
    assert run.ack(5, "w2") is False
    assert run.get_job(5) is None
    assert run.get_job(2) is None
    assert dead_letters(run) == [(4, "q", 1, 1, "boom"), (5, "q", 1, 3, "fatal")]

    run.raw("UPDATE _honker_live SET run_at = unixepoch() - 1 WHERE id IN (1, 3)")
    assert run.enqueue_many("q", [{"b": 1}, {"b": 2}]) == [7, 8]
    claimed = run.claim("q", "w3", 10)
    assert [(j["id"], j["attempts"]) for j in claimed] == [(1, 2), (3, 1), (7, 1), (8, 1)]
    # 6 is on another queue and unclaimed, 99 does not exist.
    assert run.ack_batch([1, 3, 7, 6, 99], "w3") == 3
    assert run.ack_batch([8], "w1") == 0
    assert run.next_claim_at("q") is not None
    # Cancel removes a job whoever holds it; the holder then gets False.
    assert run.cancel(8) is True
    assert run.ack(8, "w3") is False
    assert run.cancel(8) is False
    assert run.cancel(6) is True
    assert run.next_claim_at("q") is None
    assert run.query("SELECT count(*) FROM _honker_live") == [(0,)]
    assert run.query("SELECT seq FROM sqlite_sequence WHERE name = '_honker_live'") == [(8,)]


def test_expiry_and_sweep_match_the_sql_functions(run: Runner) -> None:
    assert run.enqueue("q", {"e": 1}, expires=1) == 1
    assert run.enqueue("q", {"e": 2}, expires=1000) == 2
    assert run.sweep_expired("q") == 0
    run.raw("UPDATE _honker_live SET expires_at = unixepoch() - 1 WHERE id = 1")
    assert run.get_job(1) is not None
    assert run.next_claim_at("q") is None
    assert run.sweep_expired("other") == 0
    assert run.sweep_expired("q") == 1
    assert dead_letters(run) == [(1, "q", 0, 3, "expired")]
    assert run.sweep_expired("q") == 0

    # A processing row whose claim lapsed after it expired is neither
    # claimable, nor dead-lettered, nor swept: it waits for a cancel.
    assert [j["id"] for j in run.claim("q", "w1", 1)] == [2]
    run.raw(
        "UPDATE _honker_live SET claim_expires_at = unixepoch() - 10, "
        "expires_at = unixepoch() - 1 WHERE id = 2"
    )
    assert run.sweep_expired("q") == 0
    assert run.claim("q", "w2", 1) == []
    assert run.get_job(2) is not None
    assert run.cancel(2) is True
    assert dead_letters(run) == [(1, "q", 0, 3, "expired")]


def test_reclaim_after_timeout_and_dead_letter_prepass(run: Runner) -> None:
    assert run.enqueue("r", {"r": 1}, max_attempts=2) == 1
    assert [j["attempts"] for j in run.claim("r", "w1", 1)] == [1]
    assert run.claim("r", "w2", 1) == []  # still held
    run.raw("UPDATE _honker_live SET claim_expires_at = unixepoch() - 5 WHERE id = 1")
    # The lapsed holder has lost it, even before anyone reclaims it.
    assert run.ack(1, "w1") is False
    assert run.heartbeat(1, "w1", 30) is False
    (lapse,) = run.query("SELECT claim_expires_at FROM _honker_live")[0]
    assert run.next_claim_at("r") is None  # claimable now, not in the future
    retaken = run.claim("r", "w2", 1)
    assert [(j["id"], j["worker_id"], j["attempts"]) for j in retaken] == [(1, "w2", 2)]
    assert retaken[0]["claim_expires_at"] != At(lapse)
    run.raw("UPDATE _honker_live SET claim_expires_at = unixepoch() - 5 WHERE id = 1")
    # Rows written without the function (column defaults) are jobs too; one
    # with no attempts at all is dead-lettered by the next claim.
    run.raw("INSERT INTO _honker_live (queue, payload, max_attempts) VALUES ('r', '\"zero\"', 0)")
    run.raw("INSERT INTO _honker_live (queue, payload) VALUES ('r', '\"plain\"')")
    claimed = run.claim("r", "w3", 5)
    assert [(j["id"], j["payload"], j["attempts"]) for j in claimed] == [(3, "plain", 1)]
    assert dead_letters(run) == [
        (1, "r", 2, 2, "max attempts exceeded"),
        (2, "r", 0, 0, "max attempts exceeded"),
    ]
    assert run.ack(1, "w2") is False
    assert run.ack(3, "w3") is True


# ----------------------------------------------------------------- streams


def test_streams_and_offsets_match_the_sql_functions(run: Runner) -> None:
    assert run.publish("orders", {"id": 1}, key="o-1") == 1
    assert run.publish("other", "x") == 2
    assert run.publish("orders", {"id": 2}) == 3
    assert run.publish_many("orders", [{"id": 3}, {"id": 4}], [None, "o-4"]) == [4, 5]
    events = run.read_since("orders", 0, 10)
    assert [(e["offset"], e["key"], e["payload"]) for e in events] == [
        (1, "o-1", {"id": 1}),
        (3, None, {"id": 2}),
        (4, None, {"id": 3}),
        (5, "o-4", {"id": 4}),
    ]
    assert [e["offset"] for e in run.read_since("orders", 3, 10)] == [4, 5]
    assert [e["offset"] for e in run.read_since("orders", 1, 1)] == [3]
    assert run.read_since("orders", 5, 10) == []

    assert run.get_offset("c", "orders") == 0
    assert run.save_offset("c", "orders", 3) is True
    assert run.save_offset("c", "orders", 1) is False  # never moves back
    assert run.save_offset("c", "orders", 3) is False
    assert run.save_offset("c", "orders", 5) is True
    assert run.get_offset("c", "orders") == 5
    assert run.get_offset("c", "other") == 0
    assert run.save_offset("c2", "orders", 0) is True  # the first save of 0 is stored
    assert run.save_offset("c", "other", 2) is True
    assert run.query("SELECT name, topic, offset FROM _honker_stream_consumers ORDER BY 1, 2") == [
        ("c", "orders", 5),
        ("c", "other", 2),
        ("c2", "orders", 0),
    ]


def test_notifications_match_notify(run: Runner) -> None:
    assert run.notify("ch", {"a": 1}) == 1
    assert run.notify("ch", "two") == 2
    assert run.notify("other", [3]) == 3
    assert run.notify("ch", None) == 4
    assert run.prune_notifications(None, 1) == 3
    assert run.query("SELECT id, channel, payload FROM _honker_notifications") == [
        (4, "ch", "null")
    ]
    assert run.prune_notifications(3600, None) == 0
    assert run.notify("ch", {"after": "prune"}) == 5  # ids are never reused


# ---------------------------------------------------- locks and rate limits


def test_locks_match_the_sql_functions(run: Runner) -> None:
    assert run.lock_acquire("L", "a", 60) is True
    assert run.lock_acquire("L", "b", 60) is False
    (first,) = run.query("SELECT expires_at FROM _honker_locks")[0]
    # Re-acquiring as the owner succeeds but does not extend the TTL.
    assert run.lock_acquire("L", "a", 600) is True
    assert run.query("SELECT owner, expires_at FROM _honker_locks") == [("a", first)]
    assert run.lock_renew("L", "b", 60) is False
    assert run.lock_renew("L", "a", 600) is True
    assert run.lock_release("L", "b") is False
    assert run.query("SELECT owner FROM _honker_locks") == [("a",)]
    run.raw("UPDATE _honker_locks SET expires_at = unixepoch() - 1")
    # An expired lock is taken over by the next owner that asks.
    assert run.lock_acquire("L", "b", 30) is True
    assert run.query("SELECT owner FROM _honker_locks") == [("b",)]
    assert run.lock_renew("L", "a", 60) is False
    assert run.lock_acquire("M", "a", 10) is True
    assert run.lock_release("L", "b") is True
    assert run.lock_release("L", "b") is False
    assert run.query("SELECT name, owner FROM _honker_locks") == [("M", "a")]


def test_rate_limits_match_the_sql_functions(run: Runner) -> None:
    # One window as long as the test run: no window boundary can fall
    # between two files' calls.
    per = 10**9
    assert [run.rate_limit("api", 2, per) for _ in range(4)] == [True, True, False, False]
    assert run.rate_limit("other", 1, per) is True
    assert run.rate_limit("other", 1, per) is False
    # Rejected calls are not counted.
    start = (run.t0 // per) * per
    assert run.query("SELECT name, window_start, count FROM _honker_rate_limits") == [
        ("api", start, 2),
        ("other", start, 1),
    ]
    assert run.rate_limit("api", 3, per) is True  # a higher limit lets one more in
    assert run.rate_limit_sweep(10 * per) == 0
    assert run.rate_limit_sweep(0) == 2
    assert run.rate_limit("api", 1, per) is True


# --------------------------------------------------------------- scheduler


def test_scheduler_matches_the_sql_functions(run: Runner) -> None:
    t0 = run.t0
    run.schedule_add("every", "ticks", "@every 60s", {"v": 1})
    run.schedule_add("nightly", "jobs", "0 3 * * *", ["n"], priority=2, expires=600, max_attempts=5)
    listed = run.schedule_list()
    assert [
        (t["name"], t["queue"], t["cron_expr"], t["payload"], t["enabled"]) for t in listed
    ] == [
        ("every", "ticks", "@every 60s", {"v": 1}, True),
        ("nightly", "jobs", "0 3 * * *", ["n"], True),
    ]
    assert [(t["priority"], t["expires_s"], t["max_attempts"]) for t in listed] == [
        (0, None, 3),
        (2, 600, 5),
    ]
    nightly = listed[1]["next_fire_at"].t
    assert nightly == alk._native.cron_next_after("0 3 * * *", nightly - 1)
    assert run.schedule_soonest() == At(min(t["next_fire_at"].t for t in listed))

    assert run.schedule_pause("every") is True
    assert run.schedule_pause("every") is False
    assert run.schedule_pause("missing") is False
    assert run.schedule_soonest() == At(nightly)
    # A paused task does not fire; the due one fires once and moves on.
    fires = run.schedule_tick(nightly + 1)
    assert [(f["name"], f["queue"], f["fire_at"], f["job_id"]) for f in fires] == [
        ("nightly", "jobs", At(nightly), 1)
    ]
    assert run.query(
        "SELECT queue, payload, priority, max_attempts, expires_at - run_at FROM _honker_live"
    ) == [("jobs", '["n"]', 2, 5, 600)]
    assert run.schedule_tick(nightly + 1) == []
    # Re-registering replaces every field but `enabled`.
    run.schedule_add("every", "ticks", "@every 60s", {"v": 2}, max_attempts=2)
    every = run.schedule_list()[0]
    assert (every["enabled"], every["payload"], every["max_attempts"]) == (False, {"v": 2}, 2)
    assert run.schedule_resume("every") is True
    assert run.schedule_resume("every") is False

    assert run.schedule_update("every", payload={"v": 3}, priority=4, expires=90) is True
    assert run.schedule_update("every", max_attempts=None) is True
    assert run.schedule_update("every") is False  # nothing to change
    assert run.schedule_update("missing", priority=1) is False
    every = run.schedule_list()[0]
    assert (every["payload"], every["priority"], every["expires_s"], every["max_attempts"]) == (
        {"v": 3},
        4,
        90,
        3,
    )
    # Far in the future: at most 64 catch-up fires, then the first boundary
    # after `now`.
    now = t0 + 60 * 100 + 30
    fires = run.schedule_tick(now)
    assert len(fires) == 64
    assert [f["job_id"] for f in fires] == list(range(2, 66))
    assert {f["name"] for f in fires} == {"every"}
    assert run.schedule_list()[0]["next_fire_at"] == At(now + 60)
    assert run.query(
        "SELECT DISTINCT queue, payload, priority, max_attempts, expires_at - run_at "
        "FROM _honker_live WHERE id > 1"
    ) == [("ticks", '{"v": 3}', 4, 3, 90)]

    assert run.schedule_update("every", cron="@every 120s", expires=None) is True
    every = run.schedule_list()[0]
    assert (every["cron_expr"], every["expires_s"]) == ("@every 120s", None)
    assert every["next_fire_at"] != At(now + 60)
    assert run.schedule_remove("every") is True
    assert run.schedule_remove("every") is False
    assert [t["name"] for t in run.schedule_list()] == ["nightly"]


# ----------------------------------------------------------------- results


def test_results_match_the_sql_functions(run: Runner) -> None:
    assert run.result_get(100) == (False, None)
    run.result_save(100, {"ok": True}, None)
    run.result_save(101, [1, 2], 60)
    run.result_save(102, None, None)
    assert run.result_get(100) == (True, {"ok": True})
    assert run.result_get(102) == (True, None)  # a stored null is a result
    (created,) = run.query("SELECT created_at FROM _honker_results WHERE job_id = 100")[0]
    run.result_save(100, "again", 30)
    assert run.result_get(100) == (True, "again")
    assert run.query(
        "SELECT created_at, expires_at > unixepoch() FROM _honker_results WHERE job_id = 100"
    ) == [(created, 1)]
    assert run.result_sweep() == 0
    run.raw("UPDATE _honker_results SET expires_at = unixepoch() - 1 WHERE job_id IN (100, 101)")
    assert run.result_get(101) == (False, None)
    assert run.result_sweep() == 2
    assert run.query("SELECT job_id, value, expires_at FROM _honker_results") == [
        (102, "null", None)
    ]


# -------------------------------------------------- cross-direction reads


def test_jobs_cross_between_paths_on_one_file(tmp_path: Path) -> None:
    db = alk.connect(tmp_path / "app.db")
    q = db.queue("mixed", visibility_timeout_s=TIMEOUT)
    # Node-style JSON (no spaces, raw UTF-8) is read like ours.
    node_json = json.dumps(
        {"from": "sql", "name": "Zoë"}, separators=(",", ":"), ensure_ascii=False
    )
    with db.transaction() as tx:
        (by_sql,) = tx.query_one(
            "SELECT honker_enqueue('mixed', ?, NULL, NULL, 7, 4, NULL)", (node_json,)
        )
    by_native = q.enqueue({"from": "native"}, priority=1)
    job = q.claim_one("native-worker")
    assert job is not None
    assert (job.id, job.payload, job.priority, job.max_attempts, job.attempts) == (
        by_sql,
        {"from": "sql", "name": "Zoë"},
        7,
        4,
        1,
    )
    with db.transaction() as tx:
        (raw,) = tx.query_one("SELECT honker_claim_batch('mixed', 'sql-worker', 5, 30)")
        claimed = json.loads(raw)
        assert [(j["id"], json.loads(j["payload"])) for j in claimed] == [
            (by_native, {"from": "native"})
        ]
        # Our claim is acked through SQL, in the same transaction.
        assert tx.query_one("SELECT honker_ack(?, 'native-worker')", (job.id,)) == (1,)
    # The SQL claim is checked and retried natively.
    assert q.ack(by_native, "native-worker") is False
    assert q.retry(by_native, "sql-worker", 0, "again") is True
    (raw,) = db.query_one("SELECT honker_get_job(?)", (by_native,))
    got = json.loads(raw)
    assert (got["state"], got["attempts"], got["worker_id"]) == ("pending", 1, None)
    again = q.claim_one("native-worker")
    assert again is not None and again.attempts == 2
    assert again.fail("for good")
    assert db.query("SELECT id, attempts, last_error FROM _honker_dead") == [
        (by_native, 2, "for good")
    ]
    db.close()


def test_offsets_and_locks_cross_between_paths(tmp_path: Path) -> None:
    db = alk.connect(tmp_path / "app.db")
    stream = db.stream("s")
    offsets = stream.publish_many(["a", "b", "c"])
    assert stream.save_offset("native", offsets[1])
    assert db.query_one("SELECT honker_stream_get_offset('native', 's')") == (offsets[1],)
    with db.transaction() as tx:
        tx.query_one("SELECT honker_stream_save_offset('sql', 's', ?)", (offsets[2],))
        # Not yet committed: a reader snapshot does not see it, the tx does.
        assert stream.get_offset("sql") == 0
        assert db._get_offset("sql", "s", tx=tx) == offsets[2]
    assert stream.get_offset("sql") == offsets[2]
    assert not stream.save_offset("sql", offsets[0])
    assert db.query_one("SELECT honker_stream_save_offset('native', 's', ?)", (offsets[0],)) == (0,)
    assert stream.get_offset("native") == offsets[1]

    with db.lock("leader", ttl=60, owner="native"):
        assert db.query_one("SELECT honker_lock_acquire('leader', 'sql', 60)") == (0,)
    assert db.query_one("SELECT honker_lock_acquire('leader', 'sql', 60)") == (1,)
    with pytest.raises(alk.LockHeld, match="'sql'"), db.lock("leader", owner="native"):
        pass
    assert db._lock_owner("leader")[0] == "sql"
    db.close()


def test_listener_sees_sql_notify_and_sql_reads_ours(tmp_path: Path) -> None:
    db = alk.connect(tmp_path / "app.db")
    db.notify("ch", "history")
    listener = db.listen("ch")
    with db.transaction() as tx:
        tx.query_one("SELECT notify('ch', ?)", (json.dumps({"via": "sql"}),))
    tx = db.transaction()
    tx.query_one("SELECT notify('ch', '\"rolled back\"')")
    tx.rollback()
    with db.transaction() as tx:
        db.notify("ch", {"via": "native", "in": "tx"}, tx=tx)
        tx.query_one("SELECT notify('other', '1')")
    got = listener.next(timeout=10)
    assert got is not None and got.payload == {"via": "sql"}
    assert [(n.channel, n.payload) for n in listener.poll()] == [
        ("ch", {"via": "native", "in": "tx"})
    ]
    assert listener.poll() == []
    rows = db.query("SELECT id, payload FROM _honker_notifications WHERE channel = 'ch'")
    assert [(i, json.loads(p)) for i, p in rows] == [
        (1, "history"),
        (2, {"via": "sql"}),
        # The rolled-back notify's id is handed out again (AUTOINCREMENT
        # rolls back with the transaction).
        (3, {"via": "native", "in": "tx"}),
    ]
    listener.close()
    db.close()


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def test_payloads_round_trip_between_paths(tmp_path: Path) -> None:
    db = alk.connect(tmp_path / "app.db")
    q = db.queue("rt")
    stream = db.stream("rt")

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(value=JSON_VALUES, compact=st.booleans())
    def round_trip(value: Any, compact: bool) -> None:
        job_id = q.enqueue(value)
        (raw,) = db.query_one("SELECT honker_get_job(?)", (job_id,))
        assert json.loads(json.loads(raw)["payload"]) == value
        assert q.cancel(job_id)
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False) if compact else None
        with db.transaction() as tx:
            (sql_id,) = tx.query_one(
                "SELECT honker_enqueue('rt', ?, NULL, NULL, 0, 3, NULL)",
                (text or json.dumps(value),),
            )
            (offset,) = tx.query_one(
                "SELECT honker_stream_publish('rt', NULL, ?)", (text or json.dumps(value),)
            )
        job = q.claim_one("w")
        assert job is not None and job.id == sql_id and job.payload == value
        assert job.ack()
        assert stream.read_since(offset - 1, 1)[0].payload == value

    round_trip()
    db.close()


# ------------------------------------------------------ a second process

CHILD_PRELUDE = """
import json, sys, time
import alkdev_storage as alk

db = alk.connect(sys.argv[1])
args = json.loads(sys.argv[2])

def call(fn, *params):
    marks = ", ".join("?" * len(params))
    with db.transaction() as tx:
        return tx.query_one(f"SELECT {fn}({marks})", params)[0]
"""


def spawn(path: Path, body: str, **args: Any) -> subprocess.Popen[str]:
    code = CHILD_PRELUDE + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", code, str(path), json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(child: subprocess.Popen[str]) -> Any:
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    return json.loads(out)


def test_second_process_writes_through_sql_we_consume_natively(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    db = alk.connect(path)
    listener = db.listen("ready")
    child = spawn(
        path,
        """
        ids = [
            call("honker_enqueue", "jobs", json.dumps({"n": i}), None, None, i, 3, None)
            for i in range(3)
        ]
        offsets = [
            call("honker_stream_publish", "events", f"k{i}", json.dumps({"e": i}))
            for i in range(2)
        ]
        call("honker_lock_acquire", "leader", "child", 60)
        note = call("notify", "ready", json.dumps({"ids": ids, "offsets": offsets}))
        print(json.dumps({"ids": ids, "offsets": offsets, "note": note}))
        """,
    )
    try:
        # Woken by the child's commit (no notification before it exists).
        note = listener.next(timeout=60)
    finally:
        sent = finish(child)
    assert note is not None
    assert note.id == sent["note"]
    assert note.payload == {"ids": sent["ids"], "offsets": sent["offsets"]}

    q = db.queue("jobs")
    jobs = q.claim_batch("parent", 10)
    assert [j.id for j in jobs] == sent["ids"][::-1]  # priority 2, 1, 0
    assert [j.payload for j in jobs] == [{"n": 2}, {"n": 1}, {"n": 0}]
    assert q.ack_batch([j.id for j in jobs], "parent") == 3
    events = db.stream("events").read_since(0)
    assert [(e.offset, e.key, e.payload) for e in events] == [
        (sent["offsets"][0], "k0", {"e": 0}),
        (sent["offsets"][1], "k1", {"e": 1}),
    ]
    assert not db.lock("leader", owner="parent").acquire()
    assert db._lock_owner("leader")[0] == "child"
    listener.close()
    db.close()


def test_second_process_claims_through_sql_what_we_enqueue(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    db = alk.connect(path)
    q = db.queue("work")
    stream = db.stream("events")
    first = stream.publish({"seen": "before"})
    assert stream.save_offset("child", first)
    # The child starts first and polls; we enqueue while it runs.
    child = spawn(
        path,
        """
        deadline = time.monotonic() + 60
        done = []
        while len(done) < args["expect"] and time.monotonic() < deadline:
            jobs = json.loads(call("honker_claim_batch", "work", "child", 10, 30))
            if not jobs:
                time.sleep(0.01)
            for j in jobs:
                payload = json.loads(j["payload"])
                if payload.get("bad"):
                    ok = call("honker_fail", j["id"], "child", "bad payload")
                else:
                    result = json.dumps({"double": payload["n"] * 2})
                    call("honker_result_save", j["id"], result, 0)
                    ok = call("honker_ack", j["id"], "child")
                done.append({"id": j["id"], "attempts": j["attempts"], "ok": ok})
        offset = call("honker_stream_get_offset", "child", "events")
        events = json.loads(call("honker_stream_read_since", "events", offset, 100))
        call("honker_stream_save_offset", "child", "events", events[-1]["offset"])
        print(json.dumps({"done": done, "offset": offset, "events": events}))
        """,
        expect=3,
    )
    try:
        with db.transaction() as tx:
            good = q.enqueue_many([{"n": 1}, {"n": 2}], tx=tx)
            bad = q.enqueue({"bad": True}, tx=tx)
            last = stream.publish({"seen": "after"}, key="k", tx=tx)
        # Woken by the child's commits.
        results = [q.wait_result_sync(job_id, timeout=60) for job_id in good]
    finally:
        report = finish(child)
    assert results == [{"double": 2}, {"double": 4}]
    assert sorted((d["id"], d["attempts"], d["ok"]) for d in report["done"]) == [
        (good[0], 1, 1),
        (good[1], 1, 1),
        (bad, 1, 1),
    ]
    assert report["offset"] == first
    assert [(e["offset"], e["key"], json.loads(e["payload"])) for e in report["events"]] == [
        (last, "k", {"seen": "after"})
    ]
    assert stream.get_offset("child") == last
    assert db.query("SELECT count(*) FROM _honker_live") == [(0,)]
    assert db.query("SELECT id, attempts, last_error FROM _honker_dead") == [
        (bad, 1, "bad payload")
    ]
    assert q.get_result(bad) == (False, None)
    db.close()
