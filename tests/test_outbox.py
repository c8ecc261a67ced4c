"""The transactional outbox: a business write and its job, event and
notification land together or not at all — including when the process is
killed mid-transaction — and a killed worker's job comes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import alkdev_storage as alk


def _counts(db: alk.Database) -> dict[str, int]:
    return {
        "orders": db.query_one("SELECT count(*) FROM orders")[0],  # type: ignore[index]
        "jobs": db.query_one("SELECT count(*) FROM _honker_live")[0],  # type: ignore[index]
        "events": db.query_one("SELECT count(*) FROM _honker_stream")[0],  # type: ignore[index]
        "notes": db.query_one("SELECT count(*) FROM _honker_notifications")[0],  # type: ignore[index]
    }


@pytest.fixture
def shop(tmp_path: Path) -> alk.Database:
    db = alk.connect(tmp_path / "shop.db")
    db.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY, total INTEGER NOT NULL)")
    return db


def _place_order(db: alk.Database, tx: alk.Transaction, total: int) -> None:
    order_id = tx.execute("INSERT INTO orders(total) VALUES (?)", (total,)).lastrowid
    db.queue("receipts").enqueue({"order": order_id}, tx=tx)
    db.stream("orders").publish({"order": order_id, "total": total}, tx=tx)
    db.notify("orders", {"new": order_id}, tx=tx)


def test_commit_lands_row_job_event_and_notification(shop: alk.Database) -> None:
    with shop.transaction() as tx:
        _place_order(shop, tx, 42)
    assert _counts(shop) == {"orders": 1, "jobs": 1, "events": 1, "notes": 1}
    job = shop.queue("receipts").claim_one("w")
    assert job is not None and job.payload == {"order": 1}


def test_rollback_drops_everything(shop: alk.Database) -> None:
    tx = shop.transaction()
    _place_order(shop, tx, 42)
    tx.rollback()
    with pytest.raises(ZeroDivisionError), shop.transaction() as tx2:
        _place_order(shop, tx2, 7)
        _ = 1 / 0
    assert _counts(shop) == {"orders": 0, "jobs": 0, "events": 0, "notes": 0}


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_line(proc: subprocess.Popen[str], expected: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != expected:
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"child said {line!r}, stderr: {err}")


def test_sigkill_mid_transaction_leaves_nothing(shop: alk.Database, tmp_path: Path) -> None:
    shop.close()
    child = _python(
        """
        import sys, time
        import alkdev_storage as alk
        db = alk.connect(sys.argv[1])
        tx = db.transaction()
        oid = tx.execute("INSERT INTO orders(total) VALUES (5)").lastrowid
        db.queue("receipts").enqueue({"order": oid}, tx=tx)
        db.stream("orders").publish({"order": oid}, tx=tx)
        db.notify("orders", {"new": oid}, tx=tx)
        print("in-transaction", flush=True)
        time.sleep(60)
        """,
        str(tmp_path / "shop.db"),
    )
    _wait_for_line(child, "in-transaction")
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL
    db = alk.connect(tmp_path / "shop.db")
    assert _counts(db) == {"orders": 0, "jobs": 0, "events": 0, "notes": 0}
    assert db.query_one("PRAGMA integrity_check") == ("ok",)
    # The file is writable again: the dead process's lock went with it.
    with db.transaction() as tx:
        _place_order(db, tx, 9)
    assert _counts(db) == {"orders": 1, "jobs": 1, "events": 1, "notes": 1}


def test_sigkill_after_commit_keeps_both(shop: alk.Database, tmp_path: Path) -> None:
    shop.close()
    child = _python(
        """
        import sys, time
        import alkdev_storage as alk
        db = alk.connect(sys.argv[1])
        with db.transaction() as tx:
            oid = tx.execute("INSERT INTO orders(total) VALUES (5)").lastrowid
            db.queue("receipts").enqueue({"order": oid}, tx=tx)
            db.stream("orders").publish({"order": oid}, tx=tx)
        print("committed", flush=True)
        time.sleep(60)
        """,
        str(tmp_path / "shop.db"),
    )
    _wait_for_line(child, "committed")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    db = alk.connect(tmp_path / "shop.db")
    counts = _counts(db)
    assert (counts["orders"], counts["jobs"], counts["events"]) == (1, 1, 1)


def test_killed_workers_job_is_reclaimed_then_dead_lettered(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    db = alk.connect(path)
    queue = db.queue("work", visibility_timeout_s=1, max_attempts=2)
    job_id = queue.enqueue({"n": 1})
    worker = """
        import sys, time
        import alkdev_storage as alk
        db = alk.connect(sys.argv[1])
        job = db.queue("work", visibility_timeout_s=1, max_attempts=2).claim_one(sys.argv[2])
        print("claimed" if job else "nothing", flush=True)
        time.sleep(60)
        """
    for attempt, name in ((1, "doomed-1"), (2, "doomed-2")):
        child = _python(worker, str(path), name)
        _wait_for_line(child, "claimed")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        job = queue.get_job(job_id)
        assert job is not None
        assert (job["state"], job["worker_id"], job["attempts"]) == ("processing", name, attempt)
        # Not reclaimable while the claim is valid...
        assert queue.claim_one("survivor") is None
        # ...and reclaimable (or dead) once the visibility timeout has passed.
        time.sleep(2.1)
        if attempt == 1:
            assert queue.next_claim_at() is None
    assert queue.claim_one("survivor") is None
    dead = db.query("SELECT id, attempts, last_error FROM _honker_dead")
    assert dead == [(job_id, 2, "max attempts exceeded")]
    assert queue.get_job(job_id) is None


def test_outbox_delivers_after_commit_and_backs_off(tmp_path: Path) -> None:
    db = alk.connect(tmp_path / "out.db")
    delivered: list[object] = []
    failures = iter([True, False])

    def deliver(payload: object) -> None:
        if next(failures):
            raise ConnectionError("webhook down")
        delivered.append(payload)

    box = db.outbox("webhooks", deliver, base_backoff_s=0)
    with db.transaction() as tx:
        box.enqueue({"hook": 1}, tx=tx)
    assert box.run_once("w") == 1
    assert delivered == []
    job = db.query_one("SELECT state, attempts FROM _honker_live")
    assert job == ("pending", 1)
    assert box.run_once("w") == 1
    assert delivered == [{"hook": 1}]
    assert db.query("SELECT * FROM _honker_live") == []
    assert os.path.exists(tmp_path / "out.db")
