"""PEP 249 conformance of `alkdev_storage.dbapi` (issue 6, acceptance 1)."""

from __future__ import annotations

import contextlib
import datetime as dt
import doctest
import gc
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alkdev_storage as alk
from alkdev_storage import dbapi, errors

pytestmark = pytest.mark.timeout(60)

EXCEPTIONS = [
    "Warning",
    "Error",
    "InterfaceError",
    "DatabaseError",
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


@pytest.fixture
def conn(path: Path) -> Iterator[dbapi.Connection]:
    c = dbapi.connect(path)
    c.cursor().execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER)")
    c.commit()
    yield c
    c.close()


@pytest.fixture
def other(path: Path, conn: dbapi.Connection) -> Iterator[dbapi.Connection]:
    """A second, independent connection on the same file."""
    c = dbapi.connect(path)
    yield c
    c.close()


def count(c: dbapi.Connection, table: str = "t") -> int:
    row = c.cursor().execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


# ---------------------------------------------------------------- module


def test_module_globals() -> None:
    assert dbapi.apilevel == "2.0"
    assert dbapi.threadsafety in (0, 1, 2, 3)
    assert dbapi.paramstyle == "qmark"


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_exception_classes_are_module_and_connection_attributes(
    name: str, conn: dbapi.Connection
) -> None:
    cls = getattr(dbapi, name)
    assert cls is getattr(errors, name)
    assert getattr(conn, name) is cls
    assert getattr(dbapi.Connection, name) is cls


def test_exception_hierarchy_is_pep_249() -> None:
    assert issubclass(dbapi.Warning, Exception)
    assert issubclass(dbapi.Error, Exception)
    assert issubclass(dbapi.InterfaceError, dbapi.Error)
    assert issubclass(dbapi.DatabaseError, dbapi.Error)
    for name in EXCEPTIONS[4:]:
        assert issubclass(getattr(dbapi, name), dbapi.DatabaseError)


def test_type_constructors_and_objects(conn: dbapi.Connection) -> None:
    assert dbapi.Date(2024, 2, 29) == dt.date(2024, 2, 29)
    assert dbapi.Time(13, 14, 15) == dt.time(13, 14, 15)
    assert dbapi.Timestamp(2024, 2, 29, 13, 14, 15) == dt.datetime(2024, 2, 29, 13, 14, 15)
    assert dbapi.Binary(b"\x00\x01") == b"\x00\x01"
    ticks = dt.datetime(2024, 2, 29, 13, 14, 15).timestamp()  # local time
    assert dbapi.DateFromTicks(ticks) == dt.date(2024, 2, 29)
    assert dbapi.TimeFromTicks(ticks) == dt.time(13, 14, 15)
    assert dbapi.TimestampFromTicks(ticks) == dt.datetime(2024, 2, 29, 13, 14, 15)
    for obj in (dbapi.STRING, dbapi.BINARY, dbapi.NUMBER, dbapi.DATETIME, dbapi.ROWID):
        assert obj == obj
    assert dbapi.STRING == "text" and dbapi.STRING != "INTEGER"
    assert dbapi.NUMBER == "INTEGER" and dbapi.BINARY == "BLOB"
    assert dbapi.DATETIME == "TIMESTAMP" and dbapi.ROWID == "ROWID"
    assert dbapi.STRING != dbapi.NUMBER
    # The constructed values bind: dates and times as ISO text, Binary as a BLOB.
    cur = conn.cursor()
    cur.execute("CREATE TABLE v(d, t, ts, b)")
    cur.execute(
        "INSERT INTO v VALUES (?, ?, ?, ?)",
        (
            dbapi.Date(2024, 2, 29),
            dbapi.Time(1, 2, 3),
            dbapi.Timestamp(2024, 2, 29, 1, 2, 3),
            dbapi.Binary(b"\xff"),
        ),
    )
    assert cur.execute("SELECT d, t, ts, b FROM v").fetchone() == (
        "2024-02-29",
        "01:02:03",
        "2024-02-29 01:02:03",
        b"\xff",
    )


def test_temporal_parameters_named_many_and_subclassed(conn: dbapi.Connection) -> None:
    class Stamp(dt.datetime):  # as pandas.Timestamp is
        pass

    cur = conn.cursor()
    cur.execute("CREATE TABLE d(v)")
    cur.executemany(
        "INSERT INTO d VALUES (:v)",
        [{"v": dbapi.Date(2020, 1, 2)}, {"v": Stamp(2020, 1, 2, 3, 4, 5)}, {"v": 1}],
    )
    cur.execute("INSERT INTO d VALUES (?)", [dbapi.Time(23, 59)])
    assert cur.execute("SELECT v FROM d").fetchall() == [
        ("2020-01-02",),
        ("2020-01-02 03:04:05",),
        (1,),
        ("23:59:00",),
    ]


def test_docstring_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(dbapi, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --------------------------------------------------------------- connect


def test_connect_on_existing_database_does_not_close_it(path: Path) -> None:
    db = alk.connect(path)
    c = dbapi.connect(db=db)
    assert c.database is db
    c.cursor().execute("CREATE TABLE x(a)")
    c.commit()
    c.close()
    assert not db.closed
    assert db.query("SELECT count(*) FROM x") == [(0,)]
    db.close()


def test_connect_owns_and_closes_the_database_it_opened(path: Path) -> None:
    c = dbapi.connect(path, busy_timeout_ms=1000)
    db = c.database
    assert isinstance(db, alk.Database)
    c.close()
    assert db.closed and c.closed
    c.close()  # twice is fine


def test_connect_argument_errors(path: Path) -> None:
    with pytest.raises(dbapi.InterfaceError):
        dbapi.connect()
    db = alk.connect(path)
    with pytest.raises(dbapi.InterfaceError):
        dbapi.connect(path, db=db)
    with pytest.raises(dbapi.InterfaceError):
        dbapi.connect(db=db, max_readers=2)
    with pytest.raises(dbapi.ProgrammingError):
        dbapi.connect(path, isolation_level="SERIALIZABLE")
    db.close()


# ------------------------------------------------------------ the cursor


def test_cursor_attributes_and_connection(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    assert cur.connection is conn
    assert cur.arraysize == 1
    assert cur.description is None
    assert cur.rowcount == -1
    assert cur.lastrowid is None
    cur.setinputsizes([None, 10])
    cur.setoutputsize(100)
    cur.setoutputsize(100, 0)
    assert cur.execute("SELECT 1") is cur


def test_lastrowid_after_insert(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("INSERT INTO t(name, n) VALUES (?, ?)", ("a", 1))
    assert cur.lastrowid == 1
    assert cur.rowcount == 1
    cur.execute("INSERT INTO t(id, name) VALUES (?, ?)", (41, "b"))
    assert cur.lastrowid == 41
    cur.execute("UPDATE t SET n = 2")
    assert cur.lastrowid is None


def test_rowcount_update_delete_and_select(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.executemany("INSERT INTO t(name, n) VALUES (?, ?)", [(f"r{i}", i % 3) for i in range(9)])
    assert cur.rowcount == 9
    cur.execute("UPDATE t SET n = n + 10 WHERE n = ?", (0,))
    assert cur.rowcount == 3
    cur.execute("DELETE FROM t WHERE n = 1")
    assert cur.rowcount == 3
    cur.execute("DELETE FROM t WHERE n = 99")
    assert cur.rowcount == 0
    cur.execute("SELECT * FROM t")
    assert cur.rowcount == -1
    cur.execute("CREATE TABLE z(a)")
    assert cur.rowcount == -1
    conn.commit()
    cur.execute("SELECT * FROM t")  # outside a transaction too
    assert cur.rowcount == -1


def test_description_names(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT id, name AS label, n * 2 AS doubled FROM t")
    assert cur.description is not None
    assert [d[0] for d in cur.description] == ["id", "label", "doubled"]
    assert all(len(d) == 7 for d in cur.description)
    # Same inside a transaction, and for an empty result.
    cur.execute("INSERT INTO t(name) VALUES ('x')")
    assert cur.description is None
    cur.execute("SELECT name FROM t WHERE 0")
    assert cur.description is not None
    assert [d[0] for d in cur.description] == ["name"]
    assert cur.fetchall() == []


def test_executemany_5000_rows_in_one_call(conn: dbapi.Connection, other: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.executemany("INSERT INTO t(name, n) VALUES (?, ?)", ((f"n{i}", i) for i in range(5000)))
    assert cur.rowcount == 5000
    assert cur.lastrowid == 5000
    assert count(other) == 0
    conn.commit()
    assert count(other) == 5000
    row = other.cursor().execute("SELECT sum(n) FROM t").fetchone()
    assert row == (sum(range(5000)),)


def test_executemany_autocommit_and_named(path: Path) -> None:
    c = dbapi.connect(path, autocommit=True)
    cur = c.cursor()
    cur.execute("CREATE TABLE m(a, b)")
    cur.executemany("INSERT INTO m VALUES (:a, :b)", [{"a": i, "b": -i} for i in range(100)])
    assert cur.rowcount == 100
    assert c.database.query("SELECT count(*), sum(b) FROM m") == [(100, -4950)]
    c.close()


def test_fetch_sequences(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.executemany("INSERT INTO t(id, name) VALUES (?, ?)", [(i, f"r{i}") for i in range(1, 8)])
    conn.commit()
    for committed in (True, False):
        if not committed:
            cur.execute("UPDATE t SET n = 0")  # now reads go through the transaction
        cur.execute("SELECT id FROM t ORDER BY id")
        assert cur.fetchone() == (1,)
        assert cur.fetchmany() == [(2,)]  # arraysize 1
        assert cur.fetchmany(2) == [(3,), (4,)]
        cur.arraysize = 2
        assert cur.fetchmany() == [(5,), (6,)]
        assert cur.fetchall() == [(7,)]
        assert cur.fetchone() is None
        assert cur.fetchmany(5) == []
        assert cur.fetchall() == []
        cur.arraysize = 1


def test_fetch_before_any_result_is_empty(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    assert cur.fetchone() is None
    assert cur.fetchall() == []
    cur.execute("INSERT INTO t(name) VALUES ('a')")
    assert cur.fetchone() is None


def test_iteration(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.executemany("INSERT INTO t(name) VALUES (?)", [("a",), ("b",), ("c",)])
    assert [r for r in cur.execute("SELECT name FROM t ORDER BY id")] == [("a",), ("b",), ("c",)]
    conn.commit()
    it = iter(cur.execute("SELECT name FROM t ORDER BY id"))
    assert it is cur
    assert next(it) == ("a",)
    assert list(it) == [("b",), ("c",)]
    with pytest.raises(StopIteration):
        next(cur)


def test_large_result_streams_outside_a_transaction(conn: dbapi.Connection) -> None:
    conn.cursor().executemany("INSERT INTO t(n) VALUES (?)", ((i,) for i in range(20_000)))
    conn.commit()
    cur = conn.cursor()
    cur.execute("SELECT n FROM t ORDER BY id")
    assert cur._streaming  # not a materialised list
    assert cur.fetchmany(3) == [(0,), (1,), (2,)]
    assert sum(r[0] for r in cur) == sum(range(3, 20_000))
    assert not cur._streaming  # the reader went back to the pool


def test_half_read_cursors_never_exhaust_the_reader_pool(path: Path) -> None:
    # One reader: a second streamed result on the same thread must not wait
    # for the first cursor's reader forever; the first is buffered instead.
    c = dbapi.connect(path, max_readers=1)
    c.cursor().execute("CREATE TABLE s(x)")
    c.cursor().executemany("INSERT INTO s VALUES (?)", [(i,) for i in range(500)])
    c.commit()
    cursors = [c.cursor().execute("SELECT x FROM s ORDER BY x") for _ in range(3)]
    assert [cur.fetchone() for cur in cursors] == [(0,)] * 3
    c.autocommit = True
    c.cursor().execute("INSERT INTO s VALUES (500) RETURNING x")  # columns() takes a reader
    assert [len(cur.fetchall()) for cur in cursors] == [499, 499, 499]
    c.close()


VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    st.binary(),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(VALUES, min_size=1, max_size=5))
def test_values_round_trip_in_and_out_of_a_transaction(
    conn: dbapi.Connection, values: list[object]
) -> None:
    cur = conn.cursor()
    marks = ", ".join("?" * len(values))
    assert cur.execute(f"SELECT {marks}", values).fetchone() == tuple(values)  # reader
    cur.execute("CREATE TABLE IF NOT EXISTS rt(v)")
    cur.executemany("INSERT INTO rt VALUES (?)", [(v,) for v in values])
    assert [r[0] for r in cur.execute("SELECT v FROM rt ORDER BY rowid")] == values  # in tx
    conn.rollback()


def test_stream_bookkeeping_is_dropped(conn: dbapi.Connection) -> None:
    from alkdev_storage.dbapi import _live_streams

    conn.cursor().executemany("INSERT INTO t(n) VALUES (?)", [(i,) for i in range(1000)])
    conn.commit()
    before = len(_live_streams)
    # A result that fits in the first batch holds no reader: nothing to track.
    cur = conn.cursor().execute("SELECT n FROM t WHERE n < 3")
    assert len(_live_streams) == before
    assert cur.fetchall() == [(0,), (1,), (2,)]
    # A longer one streams, holding a reader until it is read or dropped.
    cur = conn.cursor().execute("SELECT n FROM t")
    assert len(_live_streams) == before + 1
    assert len(cur.fetchall()) == 1000
    assert not cur._streaming  # its reader is back; the entry goes at the next read
    assert conn.cursor().execute("SELECT count(*) FROM t").fetchall() == [(1000,)]
    assert len(_live_streams) == before
    assert cur.fetchall() == []  # settling an ended stream buffers nothing
    conn.cursor().execute("SELECT n FROM t").fetchone()  # half read, then collected
    assert len(_live_streams) == before


def test_a_stream_on_another_database_is_left_streaming(tmp_path: Path) -> None:
    # The thread's open stream is settled only before a read on its own
    # database; reads elsewhere leave it streaming.
    one = dbapi.connect(tmp_path / "one.db", max_readers=1)
    two = dbapi.connect(tmp_path / "two.db", max_readers=1)
    for c in (one, two):
        c.cursor().execute("CREATE TABLE s(x)")
        c.cursor().executemany("INSERT INTO s VALUES (?)", [(i,) for i in range(1000)])
        c.commit()
    streaming = one.cursor().execute("SELECT x FROM s ORDER BY x")
    assert streaming._streaming
    for _ in range(3):  # the second time on, the statement takes the native path
        assert two.cursor().execute("SELECT count(*) FROM s").fetchall() == [(1000,)]
    assert streaming._streaming
    assert one.cursor().execute("SELECT count(*) FROM s").fetchall() == [(1000,)]
    assert not streaming._streaming  # buffered first: one.db has one reader
    assert len(streaming.fetchall()) == 1000
    one.close()
    two.close()


def test_a_cycle_through_a_cursor_is_collected(path: Path) -> None:
    # The native cursor shows the collector what it holds: a connection
    # keeping its cursor (which keeps the connection and a streamed result)
    # is freed, and the stream's reader goes back to the pool.
    c = dbapi.connect(path, max_readers=1)
    c.cursor().execute("CREATE TABLE s(x)")
    c.cursor().executemany("INSERT INTO s VALUES (?)", [(i,) for i in range(1000)])
    c.commit()
    db = c.database
    cur = c.cursor().execute("SELECT x FROM s")
    assert cur._streaming
    c.last = cur  # type: ignore[attr-defined]
    dead_cursor, dead_conn = weakref.ref(cur), weakref.ref(c)
    gc.disable()  # only the explicit collection below may free them
    try:
        del c, cur
        gc.collect()
    finally:
        gc.enable()
    assert dead_cursor() is None and dead_conn() is None
    assert db.query("SELECT count(*) FROM s") == [(1000,)]  # the one reader is free
    db.close()


def test_named_parameters(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("INSERT INTO t(name, n) VALUES (:name, :n)", {"name": "ada", "n": 36})
    cur.execute("SELECT n FROM t WHERE name = :name", {"name": "ada"})
    assert cur.fetchall() == [(36,)]
    conn.commit()
    cur.execute("SELECT name FROM t WHERE n = :n", {"n": 36})
    assert cur.fetchall() == [("ada",)]


def test_insert_returning(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("INSERT INTO t(name) VALUES ('a'), ('b') RETURNING id, name")
    assert cur.fetchall() == [(1, "a"), (2, "b")]
    assert cur.description is not None and [d[0] for d in cur.description] == ["id", "name"]
    assert cur.rowcount == 2
    assert cur.lastrowid == 2
    conn.commit()
    # A write through WITH ... or RETURNING as the first statement also
    # opens the transaction (the read-only test is SQLite's own).
    cur.execute("UPDATE t SET n = 5 RETURNING id")
    assert conn.in_transaction
    assert sorted(cur.fetchall()) == [(1,), (2,)]
    assert cur.rowcount == 2


def test_insert_returning_in_autocommit(path: Path) -> None:
    c = dbapi.connect(path, isolation_level=None)
    assert c.autocommit
    cur = c.cursor()
    cur.execute("CREATE TABLE r(id INTEGER PRIMARY KEY, v)")
    cur.execute("INSERT INTO r(v) VALUES (7) RETURNING id, v")
    assert cur.fetchall() == [(1, 7)]
    assert cur.rowcount == 1
    assert not c.in_transaction
    c.close()


# ---------------------------------------------------------- transactions


def test_uncommitted_writes_invisible_committed_visible(
    conn: dbapi.Connection, other: dbapi.Connection
) -> None:
    cur = conn.cursor()
    cur.execute("INSERT INTO t(name) VALUES ('a')")
    assert conn.in_transaction and conn.transaction is not None
    assert count(conn) == 1  # own writes are visible
    assert count(other) == 0  # not yet to anyone else
    conn.commit()
    assert conn.transaction is None
    assert count(other) == 1
    assert count(conn) == 1


def test_rollback_discards(conn: dbapi.Connection, other: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("INSERT INTO t(name) VALUES ('a')")
    cur.execute("CREATE TABLE gone(x)")
    conn.rollback()
    assert count(conn) == 0
    assert count(other) == 0
    with pytest.raises(dbapi.ProgrammingError):
        other.cursor().execute("SELECT * FROM gone")
    conn.rollback()  # nothing open: a no-op
    conn.commit()


def test_close_rolls_back(path: Path, conn: dbapi.Connection, other: dbapi.Connection) -> None:
    conn.cursor().execute("INSERT INTO t(name) VALUES ('a')")
    conn.close()
    assert count(other) == 0
    again = dbapi.connect(path)
    assert count(again) == 0
    again.close()


def test_reads_open_no_transaction(conn: dbapi.Connection) -> None:
    conn.cursor().execute("SELECT * FROM t").fetchall()
    assert not conn.in_transaction
    conn.cursor().execute("PRAGMA user_version = 3")
    # As on pysqlite, a PRAGMA outside a transaction opens none: it runs on
    # its own, on the writer.
    assert not conn.in_transaction
    assert conn.cursor().execute("PRAGMA user_version").fetchone() == (3,)
    conn.cursor().execute("INSERT INTO t(name) VALUES ('x')")
    conn.cursor().execute("PRAGMA user_version = 4")  # in a transaction: part of it
    conn.rollback()
    assert conn.cursor().execute("PRAGMA user_version").fetchone() == (3,)


def test_error_leaves_the_transaction_open(conn: dbapi.Connection, other: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("INSERT INTO t(name) VALUES ('a')")
    with pytest.raises(dbapi.IntegrityError):
        cur.execute("INSERT INTO t(name) VALUES ('a')")
    assert conn.in_transaction
    conn.commit()
    assert count(other) == 1


def test_with_that_writes_opens_the_transaction(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("WITH v(n) AS (SELECT 1) SELECT n FROM v")
    assert not conn.in_transaction
    cur.execute("WITH v(n) AS (VALUES ('w')) INSERT INTO t(name) SELECT n FROM v")
    assert conn.in_transaction
    assert cur.rowcount == 1


def test_two_connections_on_one_database(path: Path, conn: dbapi.Connection) -> None:
    db = alk.connect(path, busy_timeout_ms=100)
    a, b = dbapi.connect(db=db), dbapi.connect(db=db)
    a.cursor().execute("INSERT INTO t(name) VALUES ('a')")
    assert count(b) == 0  # b reads committed data
    # One writer: b waits for a's transaction (which another thread could
    # end), and says so when the busy timeout runs out.
    with pytest.raises(errors.BusyError, match="begun on this thread"):
        b.cursor().execute("INSERT INTO t(name) VALUES ('b')")
    a.commit()
    b.cursor().execute("INSERT INTO t(name) VALUES ('b')")
    b.commit()
    assert count(a) == 2
    a.close()
    b.close()
    db.close()


def test_threads_with_their_own_connections_on_one_database(
    path: Path, conn: dbapi.Connection
) -> None:
    db = alk.connect(path)
    failures: list[BaseException] = []

    def work(k: int) -> None:
        try:
            c = dbapi.connect(db=db)
            cur = c.cursor()
            for i in range(25):
                cur.execute("INSERT INTO t(name, n) VALUES (?, ?)", (f"{k}-{i}", k))
                assert cur.execute("SELECT count(*) FROM t WHERE n = ?", (k,)).fetchone() == (
                    i + 1,
                )
                c.commit()
            c.close()
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert failures == []
    assert count(conn) == 100
    db.close()


def test_threads_read_and_write_one_database_at_once(path: Path) -> None:
    # Several threads on the readers and one on the writer at the same time.
    # The bundled SQLite runs in multi-thread mode (no mutex per
    # connection), so this is also the check that no connection is ever in
    # two threads' hands at once; streams left half read are given back by
    # the next execute on the same cursor.
    db = alk.connect(path, max_readers=3)
    setup = dbapi.connect(db=db)
    setup.execute("CREATE TABLE s(id INTEGER PRIMARY KEY, k INTEGER, v TEXT)")
    setup.executemany("INSERT INTO s(k, v) VALUES (?, ?)", [(i % 10, f"v{i}") for i in range(2000)])
    setup.commit()
    failures: list[BaseException] = []

    def reader(k: int) -> None:
        try:
            c = dbapi.connect(db=db)
            cur = c.cursor()
            for _ in range(500):
                rows = cur.execute("SELECT id, v FROM s WHERE k = ?", (k,)).fetchall()
                assert len(rows) >= 200
                assert len(cur.execute("SELECT id FROM s").fetchmany(5)) == 5  # streams
            c.close()
        except BaseException as exc:  # reported below
            failures.append(exc)

    def writer() -> None:
        try:
            c = dbapi.connect(db=db)
            cur = c.cursor()
            for i in range(500):
                cur.execute("INSERT INTO s(k, v) VALUES (?, ?)", (i % 10, "w"))
                if i % 10 == 9:
                    c.commit()
            c.close()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    threads.append(threading.Thread(target=writer))
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert failures == []
    assert not any(th.is_alive() for th in threads)
    assert setup.execute("SELECT count(*) FROM s").fetchone() == (2500,)
    setup.close()
    db.close()


def test_a_cursor_in_use_refuses_a_second_thread(conn: dbapi.Connection) -> None:
    # threadsafety 1: a cursor is one thread's. A second thread calling into
    # it while the first is inside execute gets an error, not a mixed result.
    inside, done = threading.Event(), threading.Event()

    def slow(x: int) -> int:
        inside.set()
        done.wait(10)
        return x

    conn.create_function("slow", 1, slow)
    cur = conn.cursor()
    got: list[object] = []
    first = threading.Thread(target=lambda: got.append(cur.execute("SELECT slow(7)").fetchall()))
    first.start()
    assert inside.wait(10)
    try:
        with pytest.raises(RuntimeError):
            cur.fetchall()
        with pytest.raises(RuntimeError):
            cur.execute("SELECT 1")
    finally:
        done.set()
        first.join(10)
    assert got == [[(7,)]]


def test_transaction_control_sql(conn: dbapi.Connection, other: dbapi.Connection) -> None:
    cur = conn.cursor()
    # With nothing open, COMMIT and ROLLBACK fail as SQLite's do.
    for sql in ("COMMIT", "END", "ROLLBACK"):
        with pytest.raises(dbapi.OperationalError, match="no transaction is active"):
            cur.execute(sql)
    cur.execute("  -- c\n begin immediate")
    assert conn.in_transaction
    with pytest.raises(dbapi.OperationalError, match="within a transaction"):
        cur.execute("BEGIN")
    job = conn.database.queue("q").enqueue({"n": 1}, tx=conn.transaction)
    cur.execute("INSERT INTO t(name) VALUES ('a')")
    cur.execute("ROLLBACK")
    assert not conn.in_transaction and count(other) == 0
    assert conn.database.queue("q").claim_one("w") is None, job
    cur.execute("BEGIN DEFERRED TRANSACTION")
    cur.execute("INSERT INTO t(name) VALUES ('b')")
    assert count(other) == 0  # not committed yet
    cur.execute("END")
    assert count(other) == 1
    with pytest.raises(dbapi.ProgrammingError, match="executemany"):
        cur.executemany("BEGIN", [()])
    # Savepoints work (they open the transaction first).
    cur.execute("SAVEPOINT s")
    cur.execute("INSERT INTO t(name) VALUES ('a')")
    cur.execute("ROLLBACK TO s")
    cur.execute("RELEASE s")
    cur.execute("SAVEPOINT u")
    cur.execute("INSERT INTO t(name) VALUES ('c')")
    cur.execute("ROLLBACK TRANSACTION TO SAVEPOINT u")
    conn.commit()
    assert count(conn) == 1
    conn.autocommit = True
    with pytest.raises(dbapi.ProgrammingError):
        cur.execute("SAVEPOINT v")
    cur.execute("INSERT INTO t(name) VALUES ('d')")  # the writer is not left in a transaction
    assert not conn.in_transaction


def test_counts_survive_closing_the_cursor(conn: dbapi.Connection) -> None:
    """As in ``sqlite3``; SQLAlchemy reads them after closing the cursor."""
    cur = conn.cursor()
    cur.executemany("INSERT INTO t(name) VALUES (?)", [("a",), ("b",)])
    cur.close()
    assert (cur.rowcount, cur.lastrowid) == (2, 2)
    with pytest.raises(dbapi.ProgrammingError, match="closed"):
        cur.execute("SELECT 1")


def test_begin_in_autocommit_mode_groups_statements(
    conn: dbapi.Connection, other: dbapi.Connection
) -> None:
    """``sqlite3`` with ``isolation_level=None``: BEGIN ... COMMIT in SQL is
    the caller's transaction (SQLAlchemy's documented SQLite recipe)."""
    conn.isolation_level = None
    assert conn.autocommit and conn.isolation_level is None
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t(name) VALUES ('a')")
    conn.executemany("INSERT INTO t(name) VALUES (?)", [("b",), ("c",)])
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (3,)  # its own writes
    assert count(other) == 0
    conn.execute("SAVEPOINT s")  # allowed: a transaction is open
    conn.execute("ROLLBACK TO s")
    conn.commit()
    assert count(other) == 3 and not conn.in_transaction
    conn.execute("INSERT INTO t(name) VALUES ('d')")  # autocommit again
    assert count(other) == 4
    conn.isolation_level = "DEFERRED"
    assert not conn.autocommit and conn.isolation_level == "IMMEDIATE"
    with pytest.raises(dbapi.ProgrammingError, match="isolation_level"):
        conn.isolation_level = "SERIALIZABLE"


def test_shared_connections_share_one_database(path: Path) -> None:
    a = dbapi.connect(path, shared=True, max_readers=2)
    b = dbapi.connect(path, shared=True, max_readers=2)
    c = dbapi.connect(path, shared=True, max_readers=3)  # other options: its own
    assert a.database is b.database and c.database is not a.database
    db = a.database
    a.execute("CREATE TABLE s(x)")
    a.commit()
    a.close()
    assert not db.closed  # b still uses it
    assert b.execute("SELECT count(*) FROM s").fetchone() == (0,)
    b.close()
    assert db.closed  # the last user closed it
    d = dbapi.connect(path, shared=True, max_readers=2)
    assert d.database is not db and not d.database.closed
    d.close()
    c.close()
    own = alk.connect(path)
    with pytest.raises(dbapi.InterfaceError, match="shared"):
        dbapi.connect(db=own, shared=True)
    own.close()


def test_autocommit_mode(path: Path, conn: dbapi.Connection, other: dbapi.Connection) -> None:
    conn.cursor().execute("INSERT INTO t(name) VALUES ('a')")
    conn.autocommit = True  # commits what was open
    assert not conn.in_transaction
    assert count(other) == 1
    conn.cursor().execute("INSERT INTO t(name) VALUES ('b')")
    assert not conn.in_transaction and conn.transaction is None
    assert count(other) == 2
    conn.rollback()  # nothing to undo
    assert count(other) == 2
    with pytest.raises(dbapi.ProgrammingError):
        conn.begin()
    conn.autocommit = False
    conn.cursor().execute("INSERT INTO t(name) VALUES ('c')")
    assert count(other) == 2


def test_context_manager_commits_or_rolls_back(
    conn: dbapi.Connection, other: dbapi.Connection
) -> None:
    with conn:
        conn.cursor().execute("INSERT INTO t(name) VALUES ('a')")
    assert count(other) == 1
    with pytest.raises(ZeroDivisionError), conn:
        conn.cursor().execute("INSERT INTO t(name) VALUES ('b')")
        _ = 1 / 0
    assert count(other) == 1
    assert not conn.closed
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    with pytest.raises(dbapi.ProgrammingError):
        cur.fetchone()


def test_transaction_ended_on_the_native_object(conn: dbapi.Connection) -> None:
    tx = conn.begin()
    assert conn.begin() is tx
    tx.rollback()
    assert conn.transaction is None
    conn.cursor().execute("INSERT INTO t(name) VALUES ('a')")
    conn.commit()
    assert count(conn) == 1


# --------------------------------------------------- atomicity with queues


def jobs(c: dbapi.Connection) -> int:
    """Live jobs in queue "jobs", as `c`'s database sees them committed."""
    return len(c.database.query("SELECT id FROM _honker_live WHERE queue = 'jobs'"))


def test_queue_and_sql_roll_back_together(conn: dbapi.Connection, other: dbapi.Connection) -> None:
    conn.cursor().execute("INSERT INTO t(name) VALUES ('order')")
    conn.database.queue("jobs").enqueue({"order": 1}, tx=conn.transaction)
    conn.rollback()
    assert count(other) == 0
    assert jobs(other) == 0
    assert jobs(conn) == 0


def test_queue_and_sql_commit_together(conn: dbapi.Connection, other: dbapi.Connection) -> None:
    tx = conn.begin()  # a job first, then SQL, in one transaction
    conn.database.queue("jobs").enqueue({"order": 1}, tx=tx)
    conn.cursor().execute("INSERT INTO t(name) VALUES ('order')")
    assert jobs(other) == 0 and count(other) == 0
    conn.commit()
    assert count(other) == 1
    assert jobs(other) == 1
    job = other.database.queue("jobs").claim_one("w")
    assert job is not None and job.payload == {"order": 1}


def test_enqueue_without_tx_while_one_is_open_waits_then_says_why(path: Path) -> None:
    conn = dbapi.connect(path, busy_timeout_ms=100)
    try:
        conn.cursor().execute("CREATE TABLE t(name)")
        with pytest.raises(errors.BusyError, match=r"run the statement through it \(tx=\.\.\.\)"):
            conn.database.queue("jobs").enqueue({"x": 1})
        conn.database.queue("jobs").enqueue({"x": 1}, tx=conn.transaction)
        conn.commit()
        assert conn.database.query("SELECT count(*) FROM _honker_live") == [(1,)]
    finally:
        conn.close()


# ---------------------------------------------------------- closed objects


def test_closed_cursor_raises(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 1")
    cur.close()
    cur.close()  # twice is fine
    for call in (
        lambda: cur.execute("SELECT 1"),
        lambda: cur.executemany("INSERT INTO t(name) VALUES (?)", [("a",)]),
        cur.fetchone,
        cur.fetchall,
        cur.fetchmany,
        lambda: next(cur),
        lambda: cur.connection,
    ):
        with pytest.raises(dbapi.ProgrammingError):
            call()


def test_closed_connection_raises(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    conn.close()
    for call in (
        conn.cursor,
        conn.commit,
        conn.rollback,
        conn.begin,
        lambda: conn.database,
        lambda: cur.execute("SELECT 1"),
        cur.fetchone,
    ):
        with pytest.raises(dbapi.Error):
            call()
    with pytest.raises(dbapi.ProgrammingError):
        conn.cursor()


def test_database_errors_come_through(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    with pytest.raises(dbapi.ProgrammingError):
        cur.execute("SELEC 1")
    with pytest.raises(dbapi.ProgrammingError):
        cur.execute("SELECT * FROM missing")
    with pytest.raises(dbapi.ProgrammingError):
        cur.execute("SELECT ?", (1, 2))
    with pytest.raises(dbapi.ProgrammingError):
        cur.execute("SELECT ?", (object(),))
    with pytest.raises(dbapi.DataError):
        cur.execute("SELECT ?", (2**64,))
    cur.execute("INSERT INTO t(name) VALUES ('a')")
    with pytest.raises(dbapi.IntegrityError):
        cur.executemany("INSERT INTO t(name) VALUES (?)", [("b",), ("a",)])


def test_shared_database_closed_elsewhere_is_replaced(path: Path) -> None:
    a = dbapi.connect(path, shared=True)
    first = a.database
    first.close()  # behind the connection's back
    with pytest.raises(errors.DatabaseClosedError):
        a.execute("SELECT 1")
    b = dbapi.connect(path, shared=True)  # a fresh database, not the closed one
    assert b.database is not first and b.execute("SELECT 1").fetchone() == (1,)
    a.close()  # releasing the stale one leaves the fresh one alone
    assert not b.database.closed
    c = dbapi.connect(path, shared=True)
    assert c.database is b.database
    b.close()
    c.close()
    assert first.closed


def test_description_follows_schema_changes(conn: dbapi.Connection) -> None:
    """Descriptions are cached per statement, and checked against the
    columns each run returns."""
    cur = conn.cursor()
    cur.execute("SELECT * FROM t")
    assert [d[0] for d in cur.description or ()] == ["id", "name", "n"]
    cur.execute("INSERT INTO t(name) VALUES ('a')")
    cur.execute("SELECT * FROM t")  # in the transaction, on the writer
    assert cur.fetchall() == [(1, "a", None)]
    cur.execute("ALTER TABLE t ADD COLUMN extra TEXT DEFAULT 'x'")
    cur.execute("SELECT * FROM t")  # the writer's cached statement is stale
    assert [d[0] for d in cur.description or ()] == ["id", "name", "n", "extra"]
    assert cur.fetchall() == [(1, "a", None, "x")]
    conn.commit()
    cur.execute("SELECT * FROM t")  # outside: a reader's cached statement
    assert [d[0] for d in cur.description or ()] == ["id", "name", "n", "extra"]
    assert cur.fetchall() == [(1, "a", None, "x")]


# A statement's first run takes the Python path (`Cursor._execute`), which
# learns its shape; later runs with plain parameters take the native one
# (`CursorBase.execute`). Both must behave the same.


@pytest.fixture
def general_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements that took the Python path, in order, counting from
    no statement known (other tests' statements are forgotten)."""
    dbapi._shapes.clear()
    runs: list[str] = []
    general = dbapi.Cursor._execute

    def spy(self: dbapi.Cursor, operation: str, parameters: object) -> None:
        runs.append(operation)
        general(self, operation, parameters)  # type: ignore[arg-type]

    monkeypatch.setattr(dbapi.Cursor, "_execute", spy)
    return runs


def run_twice(cur: dbapi.Cursor, sql: str, params: Any = ()) -> list[object]:
    """The observable result of each of two runs (or the error's class)."""
    seen: list[object] = []
    for _ in range(2):
        try:
            cur.execute(sql, params)
        except dbapi.Error as e:
            seen.append(type(e))
        else:
            rows = cur.fetchall() if cur.description is not None else None
            seen.append((cur.description, rows, cur.rowcount, cur.lastrowid))
    return seen


def test_direct_path_reads_like_the_general_path(path: Path, general_runs: list[str]) -> None:
    c = dbapi.connect(path, max_readers=1)
    cur = c.cursor()
    cur.execute("CREATE TABLE r(id INTEGER PRIMARY KEY, name TEXT, blob BLOB, score REAL)")
    cur.executemany(
        "INSERT INTO r VALUES (?, ?, ?, ?)", [(i, f"n{i}", b"\x00b", i / 3) for i in range(5)]
    )
    c.commit()
    first, second = run_twice(cur, "SELECT * FROM r WHERE id >= ?", (3,))
    assert first == second
    assert second == (
        tuple(
            (name, None, None, None, None, None, None) for name in ("id", "name", "blob", "score")
        ),
        [(3, "n3", b"\x00b", 1.0), (4, "n4", b"\x00b", 4 / 3)],
        -1,
        None,
    )
    # An error while stepping (not while preparing), on the only reader.
    first, second = run_twice(cur, "SELECT abs(?)", (-(2**63),))
    assert first == second and issubclass(first, dbapi.OperationalError)  # type: ignore[arg-type]
    assert cur.description is None and cur.fetchall() == []
    assert c.execute("SELECT count(*) FROM r").fetchall() == [(5,)]  # the reader is back
    first, second = run_twice(cur, "SELECT name FROM r WHERE id = :id", {"id": 2})
    assert first == second and second[1] == [("n2",)]  # type: ignore[index]
    # Dates on a statement already known still go through the adapters.
    when = dt.datetime(2024, 2, 29, 13, 14, 15)
    assert run_twice(cur, "SELECT ?", (when,))[1][1] == [("2024-02-29 13:14:15",)]  # type: ignore[index]
    c.close()
    # Each statement's first run, and both runs with a date, were general.
    assert [sql for sql in general_runs if "?" in sql or ":" in sql] == [
        "SELECT * FROM r WHERE id >= ?",
        "SELECT abs(?)",
        "SELECT name FROM r WHERE id = :id",
        "SELECT ?",
        "SELECT ?",
    ]


def test_direct_path_writes_like_the_general_path(
    conn: dbapi.Connection, other: dbapi.Connection, general_runs: list[str]
) -> None:
    cur = conn.cursor()
    cur.execute("INSERT INTO t(name, n) VALUES ('seed', 0)")  # opens the transaction
    insert = run_twice(cur, "INSERT INTO t(n) VALUES (?)", (7,))
    assert insert == [(None, None, 1, 2), (None, None, 1, 3)]
    first, second = run_twice(cur, "INSERT INTO t(name) VALUES (?)", ("seed",))
    assert first == second and issubclass(first, dbapi.IntegrityError)  # type: ignore[arg-type]
    assert conn.in_transaction  # an error leaves it open, on either path
    returning = run_twice(cur, "UPDATE t SET n = n + 1 WHERE n = ? RETURNING id", (7,))
    assert returning[0] == (((("id", None, None, None, None, None, None),), [(2,), (3,)], 2, None))
    assert returning[1] == (((("id", None, None, None, None, None, None),), [], 0, None))
    inserted = run_twice(cur, "INSERT INTO t(n) VALUES (?) RETURNING id, n", (9,))
    assert [r[1:] for r in inserted] == [([(4, 9)], 1, 4), ([(5, 9)], 1, 5)]  # type: ignore[index]
    assert count(other) == 0  # nothing committed yet
    conn.rollback()
    assert count(other) == 0
    assert not conn.in_transaction
    assert [sql for sql in general_runs if "?" in sql] == [  # first runs only
        "INSERT INTO t(n) VALUES (?)",
        "INSERT INTO t(name) VALUES (?)",
        "UPDATE t SET n = n + 1 WHERE n = ? RETURNING id",
        "INSERT INTO t(n) VALUES (?) RETURNING id, n",
    ]


def test_direct_path_autocommit_like_the_general_path(
    path: Path, other: dbapi.Connection, general_runs: list[str]
) -> None:
    c = dbapi.connect(path, autocommit=True)
    cur = c.cursor()
    inserted = run_twice(cur, "INSERT INTO t(name, n) VALUES (?, ?)", ("a", 1))
    assert inserted[0] == (None, None, 1, 1)
    assert issubclass(inserted[1], dbapi.IntegrityError)  # type: ignore[arg-type]
    assert count(other) == 1  # committed at once
    returning = run_twice(cur, "INSERT INTO t(n) VALUES (?) RETURNING id, n", (5,))
    # lastrowid too, as in a transaction (and as sqlite3 reports it).
    assert [r[1:] for r in returning] == [([(2, 5)], 1, 2), ([(3, 5)], 1, 3)]  # type: ignore[index]
    assert count(other) == 3
    updated = run_twice(cur, "UPDATE t SET n = n + ? WHERE n = 5", (1,))
    assert updated == [(None, None, 2, None), (None, None, 0, None)]
    for _ in range(2):  # refused before anything runs, on either path
        with pytest.raises(dbapi.ProgrammingError, match="savepoints need a transaction"):
            cur.execute("SAVEPOINT sp")
    assert not c.in_transaction
    c.close()
    assert [sql for sql in general_runs if sql.startswith(("INSERT", "UPDATE", "SAVEPOINT"))] == [
        "INSERT INTO t(name, n) VALUES (?, ?)",
        "INSERT INTO t(n) VALUES (?) RETURNING id, n",
        "UPDATE t SET n = n + ? WHERE n = 5",
        "SAVEPOINT sp",
        "SAVEPOINT sp",
    ]


# -------------------------------------------------------- snapshot reads


@pytest.fixture
def snap(path: Path, conn: dbapi.Connection) -> Iterator[dbapi.Connection]:
    """A connection whose transactions read one snapshot, on the file of
    `conn` (which has table t)."""
    c = dbapi.connect(path, snapshot_reads=True)
    assert c.snapshot_reads and not conn.snapshot_reads
    yield c
    c.close()


def checkpoint_busy(c: dbapi.Connection) -> int:
    """SQLite's busy flag of a TRUNCATE checkpoint: 1 while some reader
    keeps a snapshot of the WAL open (asked without waiting for it)."""
    with alk.connect(c.database.path, busy_timeout_ms=0) as db:
        return db.checkpoint("TRUNCATE")[0]


def add(c: dbapi.Connection, *names: str) -> None:
    c.cursor().executemany("INSERT INTO t(name) VALUES (?)", [(n,) for n in names])
    c.commit()


@pytest.mark.parametrize("end", ["commit", "rollback"])
@pytest.mark.parametrize("when", [None, dt.date(2024, 1, 1)])  # a date: the general path
def test_snapshot_reads_see_one_snapshot_until_the_transaction_ends(
    conn: dbapi.Connection, snap: dbapi.Connection, end: str, when: dt.date | None
) -> None:
    add(conn, "a")
    sql = "SELECT count(*) FROM t WHERE ? IS NULL OR ? IS NOT NULL"
    cur = snap.cursor()
    seen = []
    for name in ("b", "c"):
        seen.append(cur.execute(sql, (when, when)).fetchone())
        add(conn, name)  # committed by another connection meanwhile
    assert seen == [(1,), (1,)]
    assert snap._in_snapshot and not snap.in_transaction
    assert count(conn) == 3  # a connection without snapshot_reads sees each commit
    getattr(snap, end)()
    assert not snap._in_snapshot
    assert cur.execute(sql, (when, when)).fetchone() == (3,)


def test_no_snapshot_in_autocommit_mode(path: Path, conn: dbapi.Connection) -> None:
    c = dbapi.connect(path, snapshot_reads=True, autocommit=True)
    assert count(c) == 0
    add(conn, "a")
    assert count(c) == 1 and not c._in_snapshot
    c.autocommit = False
    assert count(c) == 1 and c._in_snapshot
    c.autocommit = True  # commits: the snapshot ends
    assert not c._in_snapshot
    c.close()


def test_the_first_write_ends_the_snapshot(conn: dbapi.Connection, snap: dbapi.Connection) -> None:
    assert count(snap) == 0
    add(conn, "a")
    assert count(snap) == 0
    snap.cursor().execute("INSERT INTO t(name) VALUES ('mine')")
    # The transaction reads on the writer now: everything committed, and
    # its own write.
    assert not snap._in_snapshot and snap.in_transaction
    assert count(snap) == 2
    snap.rollback()
    for start in (snap.begin, lambda: snap.execute("BEGIN")):
        assert count(snap) == 1 and snap._in_snapshot
        start()
        assert not snap._in_snapshot
        snap.rollback()


def test_a_statement_that_turns_out_to_write_ends_the_snapshot(
    conn: dbapi.Connection, snap: dbapi.Connection
) -> None:
    assert count(snap) == 0 and snap._in_snapshot
    add(conn, "a")
    # Unknown, starts like a read, writes: found out by SQLite before it runs.
    snap.execute("WITH v(x) AS (SELECT 'w') INSERT INTO t(name) SELECT x FROM v")
    assert not snap._in_snapshot and count(snap) == 2
    snap.commit()
    assert count(conn) == 2


def test_a_stream_keeps_its_snapshot_past_commit(
    conn: dbapi.Connection, snap: dbapi.Connection
) -> None:
    add(conn, *(f"n{i}" for i in range(1000)))
    cur = snap.cursor().execute("SELECT name FROM t ORDER BY id")
    assert cur._streaming and cur.fetchone() == ("n0",)
    conn.cursor().execute("DELETE FROM t")
    conn.commit()
    snap.commit()  # the connection lets go; the stream still reads its snapshot
    assert not snap._in_snapshot
    assert count(snap) == 0  # a new snapshot
    assert checkpoint_busy(conn) == 1  # the old one is still open
    assert len(cur.fetchall()) == 999
    snap.rollback()
    assert checkpoint_busy(conn) == 0  # every read transaction ended


def test_snapshots_never_wait_for_the_reader_pool(path: Path, conn: dbapi.Connection) -> None:
    # One pooled reader, held by a stream, and three snapshots on this thread
    # besides: none of them takes (or waits for) the pooled reader.
    add(conn, *(f"n{i}" for i in range(600)))
    plain = dbapi.connect(path, max_readers=1)
    stream = plain.cursor().execute("SELECT name FROM t")
    assert stream._streaming
    snaps = [dbapi.connect(db=plain.database, snapshot_reads=True) for _ in range(3)]
    for params in [(), (dt.date(2024, 1, 1),)]:  # the direct path, then the general one
        sql = "SELECT id FROM t" + (" WHERE ? IS NOT NULL" if params else "")
        streams = [s.cursor().execute(sql, params) for s in snaps]
        assert all(s._in_snapshot for s in snaps) and all(c._streaming for c in streams)
        assert stream._streaming  # still on the pooled reader: nothing took it
        assert [len(c.fetchall()) for c in streams] == [600] * 3
    assert plain.database.stats["snapshot_connections_opened"] == 3
    assert len(stream.fetchall()) == 600
    for s in snaps:
        s.close()
    plain.close()


def test_snapshot_connections_are_reused_and_closed_with_the_database(path: Path) -> None:
    db = alk.connect(path, max_readers=1)
    users = [dbapi.connect(db=db, snapshot_reads=True) for _ in range(3)]

    def snapshots() -> tuple[int, int, int]:
        stats = db.stats
        return (
            stats["snapshot_connections_opened"],
            stats["snapshot_connections_idle"],
            stats["snapshot_connections_in_use"],
        )

    def read_all() -> None:
        for c in users:
            assert c.execute("SELECT 1").fetchall() == [(1,)] and c._in_snapshot

    read_all()
    assert snapshots() == (3, 0, 3)  # one connection each, none from the reader pool
    for c in users:
        c.commit()
    assert snapshots() == (3, 3, 0)  # as many kept idle as were in use at once
    read_all()
    assert snapshots() == (3, 0, 3)  # and taken again: none opened
    users[0].commit()
    db.close()
    assert snapshots() == (3, 0, 2)  # the idle one closed with the database
    with pytest.raises(dbapi.DatabaseError, match="closed"):
        users[1].execute("SELECT 1")
    for c in users:
        c.close()  # ends what is left; the database closed already
    assert snapshots() == (3, 0, 0)  # closed, not kept


def test_snapshot_sees_functions_registered_after_it_began(snap: dbapi.Connection) -> None:
    assert count(snap) == 0 and snap._in_snapshot
    snap.create_function("twice", 1, lambda x: 2 * x)
    assert snap.execute("SELECT twice(21)").fetchone() == (42,)


def test_an_error_leaves_the_snapshot_usable(
    conn: dbapi.Connection, snap: dbapi.Connection
) -> None:
    assert count(snap) == 0
    add(conn, "a")
    for _ in range(2):  # general path, then direct
        with pytest.raises(dbapi.OperationalError):
            snap.execute("SELECT abs(?)", (-(2**63),))
    assert snap._in_snapshot and count(snap) == 0
    snap.rollback()
    assert count(snap) == 1


def test_a_dropped_connection_ends_its_snapshot(path: Path, conn: dbapi.Connection) -> None:
    c = dbapi.connect(db=conn.database, snapshot_reads=True)
    cur = c.cursor().execute("SELECT count(*) FROM t")
    assert checkpoint_busy(conn) == 1
    del c, cur
    gc.collect()
    assert checkpoint_busy(conn) == 0


def test_a_stream_dropped_while_its_snapshot_runs_a_python_function(path: Path) -> None:
    # Thread `worker` steps a statement on the snapshot, holding its lock,
    # and waits inside a Python SQL function; meanwhile this thread drops
    # another stream on the same snapshot, which needs that lock. It must
    # wait without the GIL, or the function could never return.
    c = dbapi.connect(path, snapshot_reads=True)
    c.execute("CREATE TABLE s(x)")
    c.executemany("INSERT INTO s VALUES (?)", [(i,) for i in range(600)])
    c.commit()
    entered, release = threading.Event(), threading.Event()

    def gate(x: int) -> int:
        entered.set()
        release.wait(10)
        return x

    c.create_function("gate", 1, gate)
    dropped = c.cursor().execute("SELECT x FROM s")
    assert dropped._streaming and c._in_snapshot
    results: list[int] = []
    worker = threading.Thread(
        target=lambda: results.append(len(c.cursor().execute("SELECT gate(x) FROM s").fetchall()))
    )
    worker.start()
    assert entered.wait(10)
    threading.Timer(0.2, release.set).start()
    del dropped  # the stream's statement is finalised here, under the lock
    worker.join(10)
    assert not worker.is_alive() and results == [600]
    c.close()


def test_snapshot_reads_on_a_read_only_database(path: Path, conn: dbapi.Connection) -> None:
    add(conn, "a")
    ro = dbapi.connect(path, readonly=True, snapshot_reads=True)
    assert count(ro) == 1 and ro._in_snapshot
    add(conn, "b")
    assert count(ro) == 1
    ro.rollback()
    assert count(ro) == 2
    ro.close()


@contextlib.contextmanager
def snapshot_readers(
    db: alk.Database, transaction: Callable[[dbapi.Connection], None]
) -> Iterator[None]:
    """Three threads, each on a connection of its own with snapshot reads,
    running `transaction` and rolling back, over and over, for as long as
    the block runs; then joined, and none of them may have raised."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        c = dbapi.connect(db=db, snapshot_reads=True)
        try:
            while not stop.is_set():
                transaction(c)
                c.rollback()
        except BaseException as e:
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors


def test_snapshot_reads_agree_while_another_thread_writes(path: Path) -> None:
    # Transfers between accounts keep the total; a transaction that reads
    # every balance with its own statement must always see that total (with
    # one read transaction per statement, a transfer committed between two
    # reads is seen half). Three reader threads, one writer, one database.
    db = alk.connect(path)
    setup = dbapi.connect(db=db)
    setup.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)")
    setup.executemany("INSERT INTO acct VALUES (?, 100)", [(i,) for i in range(10)])
    setup.commit()
    sums: list[int] = []

    def read(c: dbapi.Connection) -> None:
        total = 0
        for i in range(10):
            (bal,) = c.execute("SELECT bal FROM acct WHERE id = ?", (i,)).fetchone()
            total += bal
        streamed = sum(b for (b,) in c.execute("SELECT bal FROM acct"))
        sums.extend([total, streamed])

    with snapshot_readers(db, read):
        for n in range(400):
            src, dst = n % 10, (n * 7 + 3) % 10
            setup.execute("UPDATE acct SET bal = bal - 1 WHERE id = ?", (src,))
            setup.execute("UPDATE acct SET bal = bal + 1 WHERE id = ?", (dst,))
            setup.commit()
    assert sums and set(sums) == {1000}
    setup.close()
    db.close()


def small_page_database(path: Path) -> alk.Database:
    """A database of 512-byte pages, so that the WAL's autocheckpoint
    threshold (10,000 frames) is 5 MB, with table s of 2,000 rows of which
    each tenth is about 100 pages."""
    setup = sqlite3.connect(path)
    setup.executescript(
        "PRAGMA page_size = 512; PRAGMA journal_mode = WAL;"
        "CREATE TABLE s(id INTEGER PRIMARY KEY, v BLOB);"
    )
    setup.executemany("INSERT INTO s VALUES (?, randomblob(200))", [(i,) for i in range(2000)])
    setup.commit()
    setup.close()
    return alk.connect(path)


def rewrite_a_tenth(db: alk.Database, n: int) -> None:
    db.execute("UPDATE s SET v = randomblob(200) WHERE id % 10 = ?", (n % 10,))


def test_the_wal_stays_bounded_while_snapshots_overlap(path: Path) -> None:
    # Reader threads whose snapshots always overlap leave SQLite no moment to
    # restart the WAL, and it would grow with every commit (12.6 times the
    # threshold here, without the hook); the writer's WAL hook waits for the
    # older snapshots now and then (rust/walguard.rs).
    db = small_page_database(path)
    threshold = db.query_one("PRAGMA wal_autocheckpoint")[0] * 512

    def read(c: dbapi.Connection) -> None:
        for i in range(3):
            c.execute("SELECT v FROM s WHERE id = ?", (i * 97,)).fetchall()
            time.sleep(0.001)  # work done inside the transaction

    wal = Path(f"{path}-wal")
    largest = 0
    with snapshot_readers(db, read):
        for n in range(600):  # about 200 frames each: 12 thresholds' worth
            rewrite_a_tenth(db, n)
            largest = max(largest, wal.stat().st_size)
    assert largest < 3 * threshold, (largest, threshold)
    db.close()


def test_a_snapshot_left_open_costs_the_writer_few_waits(path: Path) -> None:
    # One transaction that never ends holds the WAL back whatever the hook
    # does; the hook then tries less and less often, instead of making every
    # commit wait. Once the snapshot ends, the WAL restarts by itself.
    db = small_page_database(path)
    idle = dbapi.connect(db=db, snapshot_reads=True)
    assert idle.execute("SELECT count(*) FROM s").fetchone() == (2000,)
    for n in range(300):  # about 200 frames each: past twice the threshold at 100
        rewrite_a_tenth(db, n)
    tries = db.stats["wal_restart_attempts"]
    # Tries at 20,000 frames, then an eighth, a quarter, a half, and whole
    # thresholds further: 7 by 60,000.
    assert 4 <= tries <= 8
    assert db.stats["wal_restart_failures"] == tries
    assert db.checkpoint("PASSIVE")[1] > 50_000  # the WAL, in frames
    idle.rollback()
    for n in range(3):  # copies the WAL whole, then writes it from its start
        rewrite_a_tenth(db, n)
    busy, log, _ = db.checkpoint("PASSIVE")
    assert busy == 0 and log < 1000, log
    assert db.stats["wal_restart_attempts"] == tries
    idle.close()
    db.close()
