"""honker's schema and SQL functions on our connections."""

from __future__ import annotations

import json

import alkdev_storage as alk

HONKER_TABLES = {
    "_honker_notifications",
    "_honker_live",
    "_honker_dead",
    "_honker_locks",
    "_honker_rate_limits",
    "_honker_scheduler_tasks",
    "_honker_results",
    "_honker_stream",
    "_honker_stream_consumers",
}


def test_schema_is_bootstrapped_on_open(db: alk.Database) -> None:
    names = {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert HONKER_TABLES <= names
    assert db.query_one("PRAGMA journal_mode") == ("wal",)
    assert db.query_one("PRAGMA foreign_keys") == (1,)


def test_reopen_is_idempotent(db_path) -> None:
    for _ in range(3):
        alk.connect(db_path).close()
    db = alk.connect(db_path)
    assert db.query_one("SELECT count(*) FROM _honker_live") == (0,)
    db.close()


def test_opening_does_not_wait_for_another_writer(db_path) -> None:
    """With the schema in place, opening a file writes nothing, so it does
    not wait for a transaction another connection holds open (a writable
    open used to wait up to busy_timeout for it)."""
    first = alk.connect(db_path)
    with first.transaction() as tx:
        tx.execute("CREATE TABLE t(x)")
        second = alk.connect(db_path, busy_timeout_ms=2_000)  # waiting would fail: BUSY
        assert second.query_one("SELECT count(*) FROM sqlite_master WHERE name = 't'") == (0,)
        second.close()
    first.close()


def test_a_new_file_waits_for_nothing_but_its_schema(tmp_path) -> None:
    """A fresh file, and one whose index was dropped, get their schema
    (the retry path takes the write lock)."""
    path = tmp_path / "fresh.db"
    alk.connect(path).close()
    db = alk.connect(path)
    db.execute("DROP INDEX _alk_honker_live_exhausted")
    db.close()
    db = alk.connect(path)
    index = "SELECT count(*) FROM sqlite_master WHERE name = '_alk_honker_live_exhausted'"
    assert db.query_one(index) == (1,)
    db.close()


def test_queue_functions_round_trip(db: alk.Database) -> None:
    enqueue = "SELECT honker_enqueue(?, ?, NULL, NULL, 0, 3, NULL)"
    r = db.query_one(enqueue, ("emails", '{"to":"a"}'))
    assert r == (1,)
    claimed = db.query_one("SELECT honker_claim_batch('emails', 'w1', 10, 30)")
    assert claimed is not None
    jobs = json.loads(claimed[0])
    got = [(j["id"], j["attempts"], json.loads(j["payload"])) for j in jobs]
    assert got == [(1, 1, {"to": "a"})]
    assert db.query_one("SELECT honker_ack(1, 'w1')") == (1,)
    assert db.query_one("SELECT count(*) FROM _honker_live") == (0,)


def test_functions_inside_a_transaction_roll_back_with_it(db: alk.Database) -> None:
    tx = db.transaction()
    tx.execute("INSERT INTO t(x) VALUES (1)")
    tx.execute("SELECT honker_enqueue('q', '{}', NULL, NULL, 0, 3, NULL)")
    tx.execute("SELECT honker_stream_publish('orders', NULL, '{\"id\":1}')")
    tx.execute("SELECT notify('orders', '\"new\"')")
    tx.rollback()
    for table in ("t", "_honker_live", "_honker_stream", "_honker_notifications"):
        assert db.query_one(f"SELECT count(*) FROM {table}") == (0,), table
    with db.transaction() as tx:
        tx.execute("INSERT INTO t(x) VALUES (1)")
        tx.execute("SELECT honker_enqueue('q', '{}', NULL, NULL, 0, 3, NULL)")
        offset = tx.query_one("SELECT honker_stream_publish('orders', NULL, '{\"id\":1}')")
        note = tx.query_one("SELECT notify('orders', '\"new\"')")
    assert offset == (1,) and note == (1,)
    for table in ("t", "_honker_live", "_honker_stream", "_honker_notifications"):
        assert db.query_one(f"SELECT count(*) FROM {table}") == (1,), table


def test_read_functions_work_on_readers(db: alk.Database) -> None:
    db.execute("SELECT honker_stream_publish('s', 'k', '[1]')")
    rows = db.query_one("SELECT honker_stream_read_since('s', 0, 10)")
    assert rows is not None
    assert [e["payload"] for e in json.loads(rows[0])] == ["[1]"]
