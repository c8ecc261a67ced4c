"""Transactions on the writer: BEGIN IMMEDIATE, commit/rollback, savepoints,
rollback on drop; a second writer waits up to the busy timeout, whichever
thread it is on, and the one wait that could never end fails at once."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import pytest

import alkdev_storage as alk


def count(db: alk.Database) -> int:
    row = db.query_one("SELECT count(*) FROM t")
    assert row is not None
    return int(row[0])


def test_context_manager_commits(db: alk.Database) -> None:
    with db.transaction() as tx:
        assert tx.active
        r = tx.execute("INSERT INTO t(x) VALUES (?)", (1,))
        assert r.lastrowid == 1
        tx.executemany("INSERT INTO t(x) VALUES (?)", [(2,), (3,)])
        assert tx.query("SELECT x FROM t ORDER BY x") == [(1,), (2,), (3,)]
    assert not tx.active
    assert count(db) == 3


def test_context_manager_rolls_back_on_exception(db: alk.Database) -> None:
    with pytest.raises(KeyError):
        with db.transaction() as tx:
            tx.execute("INSERT INTO t(x) VALUES (1)")
            raise KeyError("boom")
    assert count(db) == 0


def test_explicit_commit_and_rollback(db: alk.Database) -> None:
    tx = db.transaction()
    tx.execute("INSERT INTO t(x) VALUES (1)")
    tx.rollback()
    tx = db.transaction()
    tx.execute("INSERT INTO t(x) VALUES (2)")
    tx.commit()
    assert db.query("SELECT x FROM t") == [(2,)]
    with pytest.raises(alk.TransactionClosedError):
        tx.execute("INSERT INTO t(x) VALUES (3)")
    with pytest.raises(alk.TransactionClosedError):
        tx.commit()


def test_dropped_transaction_rolls_back_and_frees_the_writer(db: alk.Database) -> None:
    tx = db.transaction()
    tx.execute("INSERT INTO t(x) VALUES (1)")
    del tx
    gc.collect()
    assert count(db) == 0
    db.execute("INSERT INTO t(x) VALUES (2)")  # the writer is free
    assert count(db) == 1


def test_savepoints_nest(db: alk.Database) -> None:
    with db.transaction() as tx:
        tx.execute("INSERT INTO t(x) VALUES (1)")
        with pytest.raises(ValueError):
            with tx.savepoint():
                tx.execute("INSERT INTO t(x) VALUES (2)")
                with tx.savepoint() as inner:
                    assert inner.name.startswith("alk_sp_")
                    tx.execute("INSERT INTO t(x) VALUES (3)")
                raise ValueError
        with tx.savepoint():
            tx.execute("INSERT INTO t(x) VALUES (4)")
        sp = tx.savepoint()
        tx.execute("INSERT INTO t(x) VALUES (5)")
        sp.rollback()
        with pytest.raises(alk.ProgrammingError):
            sp.release()
    assert db.query("SELECT x FROM t ORDER BY x") == [(1,), (4,)]


def test_a_second_writer_on_the_same_thread_waits_then_says_why(db_path: Path) -> None:
    # A transaction belongs to its object, not to the thread: another one on
    # the same thread waits for it (it may be ended from another thread)
    # and after the busy timeout says what is probably going on.
    db = alk.connect(db_path, busy_timeout_ms=150)
    db.execute("CREATE TABLE t(x)")
    try:
        with db.transaction() as tx:
            tx.execute("INSERT INTO t(x) VALUES (1)")
            for attempt in (
                db.transaction,
                lambda: db.execute("INSERT INTO t(x) VALUES (2)"),
                lambda: db.executemany("INSERT INTO t(x) VALUES (?)", [(2,)]),
            ):
                started = time.monotonic()
                with pytest.raises(alk.BusyError, match=r"begun on this thread.*savepoint"):
                    attempt()
                assert time.monotonic() - started >= 0.14
        assert count(db) == 1
        assert db.stats["writer_timeouts"] == 3
    finally:
        db.close()


def test_a_transaction_ended_on_another_thread_lets_this_one_go_on(db: alk.Database) -> None:
    # FastAPI's pattern: a request's transaction is rolled back by a
    # teardown on another pool thread, while this thread already writes.
    first = db.transaction()
    first.execute("INSERT INTO t(x) VALUES (1)")
    threading.Timer(0.1, first.rollback).start()
    started = time.monotonic()
    with db.transaction() as second:
        second.execute("INSERT INTO t(x) VALUES (2)")
    assert time.monotonic() - started >= 0.09
    assert db.query("SELECT x FROM t") == [(2,)]
    assert db.stats["writer_waits"] >= 1


def test_a_sql_function_asking_for_the_writer_fails_at_once(db: alk.Database) -> None:
    # A statement on the writer calling back for the writer would wait for
    # itself: that is refused without waiting.
    seen: list[BaseException] = []

    def reenter(x: int) -> int:
        try:
            db.execute("INSERT INTO t(x) VALUES (99)")
        except alk.NestedTransactionError as e:
            seen.append(e)
        return x

    db.create_function("reenter", 1, reenter)
    started = time.monotonic()
    with db.transaction() as tx:
        tx.execute("INSERT INTO t(x) VALUES (reenter(1))")
    db.execute("INSERT INTO t(x) VALUES (reenter(2))")
    assert time.monotonic() - started < 2
    assert len(seen) == 2
    assert sorted(db.query("SELECT x FROM t")) == [(1,), (2,)]


def test_transactions_from_threads_serialise(db: alk.Database) -> None:
    def work(n: int) -> None:
        for _ in range(50):
            with db.transaction() as tx:
                row = tx.query_one("SELECT coalesce(max(x), 0) FROM t")
                assert row is not None
                tx.execute("INSERT INTO t(x, y) VALUES (?, ?)", (row[0] + 1, n))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Every read-modify-write saw the previous one: no lost update.
    assert db.query("SELECT x FROM t ORDER BY x") == [(i,) for i in range(1, 201)]


def test_transaction_across_two_databases_on_one_file(db_path) -> None:
    a = alk.connect(db_path)
    b = alk.connect(db_path)
    a.execute("CREATE TABLE t(x)")
    with a.transaction() as tx:
        tx.execute("INSERT INTO t VALUES (1)")
        assert b.query_one("SELECT count(*) FROM t") == (0,)
    assert b.query_one("SELECT count(*) FROM t") == (1,)
    a.close()
    b.close()


@pytest.mark.parametrize(
    "sql",
    [
        "COMMIT",
        "commit transaction",
        "END",
        "ROLLBACK",
        "rollback transaction",
        "BEGIN",
        "/* c */ -- line\n  Commit",
    ],
)
def test_statements_that_would_end_the_transaction_are_refused(db, sql):
    with db.transaction() as tx:
        tx.execute("INSERT INTO t(x) VALUES (1)")
        for call in (tx.execute, tx.query, tx.query_one, tx.executescript):
            with pytest.raises(alk.ProgrammingError, match=r"tx\.commit"):
                call(sql)
        with pytest.raises(alk.ProgrammingError, match=r"tx\.commit"):
            tx.executemany(sql, [()])
        assert tx.active
        with pytest.raises(alk.ProgrammingError, match=r"tx\.commit"):
            tx.executescript("INSERT INTO t(x) VALUES (2); COMMIT; INSERT INTO t(x) VALUES (3)")
        tx.rollback()
    assert db.query("SELECT count(*) FROM t") == [(0,)]


def test_savepoint_statements_still_run_inside_a_transaction(db):
    with db.transaction() as tx:
        tx.execute("SAVEPOINT a")
        tx.execute("INSERT INTO t(x) VALUES (1)")
        tx.execute("ROLLBACK TO a")
        tx.execute("ROLLBACK TRANSACTION TO SAVEPOINT a")
        tx.executescript("RELEASE a; SAVEPOINT b; INSERT INTO t(x) VALUES (2); RELEASE b")
    assert db.query("SELECT x FROM t") == [(2,)]


def test_script_errors_are_classed_like_single_statements(db):
    with pytest.raises(alk.ProgrammingError, match="syntax"):
        db.executescript("INSERT INTO t(x) VALUES (1); SELEC 2")
    with pytest.raises(alk.ProgrammingError, match="no such table"):
        db.executescript("SELECT * FROM nowhere")
    with db.transaction() as tx, pytest.raises(alk.ProgrammingError):
        tx.executescript("SELECT * FROM nowhere")
    with pytest.raises(alk.ConstraintError):
        db.executescript("CREATE TABLE u(x UNIQUE); INSERT INTO u VALUES (1), (1)")


@pytest.mark.parametrize("sql", ["BEGIN", "SAVEPOINT a", "BEGIN; INSERT INTO t(x) VALUES (1)"])
def test_statements_outside_a_transaction_cannot_leave_one_open(db, sql):
    run = db.executescript if ";" in sql else db.execute
    with pytest.raises(alk.ProgrammingError, match=r"db\.transaction"):
        run(sql)
    with db.transaction() as tx:  # the writer is usable again
        tx.execute("INSERT INTO t(x) VALUES (2)")
    assert db.query("SELECT x FROM t") == [(2,)]
