"""execute / executemany / query / query_one / iterate / columns."""

from __future__ import annotations

import pytest

import alkdev_storage as alk


def test_execute_reports_rowcount_and_native_lastrowid(db: alk.Database) -> None:
    r = db.execute("INSERT INTO t(x) VALUES (?)", (1,))
    assert (r.rowcount, r.lastrowid) == (1, 1)
    r = db.execute("INSERT INTO t(x) VALUES (?), (?)", (2, 3))
    assert (r.rowcount, r.lastrowid) == (2, 3)
    r = db.execute("UPDATE t SET y = 'u' WHERE x >= ?", (2,))
    assert (r.rowcount, r.lastrowid) == (2, None)
    r = db.execute("DELETE FROM t WHERE x = 1")
    assert (r.rowcount, r.lastrowid) == (1, None)
    # Non-DML statements have no rowcount (PEP 249: -1).
    assert db.execute("CREATE TABLE u(a)").rowcount == -1


def test_insert_that_inserts_nothing_has_no_lastrowid(db: alk.Database) -> None:
    db.execute("CREATE TABLE uq(k TEXT UNIQUE)")
    assert db.execute("INSERT INTO uq VALUES ('a')").lastrowid == 1
    r = db.execute("INSERT OR IGNORE INTO uq VALUES ('a')")
    assert (r.rowcount, r.lastrowid) == (0, None)


def test_lastrowid_needs_no_extra_query(db: alk.Database) -> None:
    db.execute("INSERT INTO t(x) VALUES (?)", (0,))
    before = db.stats
    for i in range(50):
        assert db.execute("INSERT INTO t(x) VALUES (?)", (i,)).lastrowid == i + 2
    after = db.stats
    # Exactly one statement per execute, all served from the cache.
    assert after["statements_prepared"] == before["statements_prepared"]
    assert after["statement_cache_hits"] - before["statement_cache_hits"] == 50


def test_executemany_positional_and_named(db: alk.Database) -> None:
    r = db.executemany("INSERT INTO t(x, y) VALUES (?, ?)", [(1, "a"), (2, "b")])
    assert (r.rowcount, r.lastrowid) == (2, 2)
    named = ({"x": i, "y": "n"} for i in range(3000))
    r = db.executemany("INSERT INTO t(x, y) VALUES (:x, :y)", named)
    assert r.rowcount == 3000
    assert db.query_one("SELECT count(*) FROM t") == (3002,)


def test_executemany_is_atomic(db: alk.Database) -> None:
    rows: list[tuple[object, ...]] = [(i,) for i in range(2000)]
    rows.append((object(),))  # fails while converting, after a chunk ran
    with pytest.raises(alk.ParameterTypeError):
        db.executemany("INSERT INTO t(x) VALUES (?)", rows)
    db.execute("CREATE UNIQUE INDEX tx ON t(x)")
    with pytest.raises(alk.ConstraintError):
        db.executemany("INSERT INTO t(x) VALUES (?)", [(1,), (2,), (1,)])
    assert db.query_one("SELECT count(*) FROM t") == (0,)


def test_named_parameter_prefixes(db: alk.Database) -> None:
    db.execute("INSERT INTO t(x, y) VALUES (:a, @b)", {"a": 1, "b": 2})
    db.execute("INSERT INTO t(x, y) VALUES ($a, ?2)", (3, 4))
    assert db.query("SELECT x, y FROM t ORDER BY id") == [(1, 2), (3, 4)]
    assert db.query("SELECT x FROM t WHERE y = $y", {"y": 4, "unused": 0}) == [(3,)]


def test_query_rows_and_dicts(db: alk.Database) -> None:
    db.executemany("INSERT INTO t(x, y) VALUES (?, ?)", [(1, "a"), (2, "b")])
    assert db.query("SELECT x, y FROM t ORDER BY x") == [(1, "a"), (2, "b")]
    assert db.query("SELECT x, y AS why FROM t ORDER BY x", as_dict=True) == [
        {"x": 1, "why": "a"},
        {"x": 2, "why": "b"},
    ]
    assert db.query_one("SELECT x FROM t WHERE x > ?", (1,)) == (2,)
    assert db.query_one("SELECT x FROM t WHERE x > 5") is None
    assert db.query_one("SELECT x, y FROM t", as_dict=True) == {"x": 1, "y": "a"}
    assert db.columns("SELECT x AS a, y, 1 + 1 AS two FROM t") == ["a", "y", "two"]


def test_query_that_writes_runs_on_the_writer(db: alk.Database) -> None:
    rows = db.query("INSERT INTO t(x) VALUES (7), (8) RETURNING id, x")
    assert rows == [(1, 7), (2, 8)]
    assert db.query_one("SELECT count(*) FROM t") == (2,)


def test_iterate_streams_in_batches(db: alk.Database) -> None:
    db.executemany("INSERT INTO t(x) VALUES (?)", ((i,) for i in range(1000)))
    it = db.iterate("SELECT x FROM t ORDER BY x", batch_size=7)
    assert it.columns == ["x"]
    assert next(it) == (0,)
    assert [r[0] for r in it] == list(range(1, 1000))
    assert list(db.iterate("SELECT x AS v FROM t WHERE x < 2", as_dict=True)) == [
        {"v": 0},
        {"v": 1},
    ]
    assert list(db.iterate("SELECT x FROM t WHERE x < 0")) == []


def test_iterate_holds_one_reader_until_closed(db_path) -> None:
    db = alk.connect(db_path, max_readers=1)
    db.execute("CREATE TABLE n(v)")
    db.executemany("INSERT INTO n VALUES (?)", [(i,) for i in range(10)])
    with db.iterate("SELECT v FROM n", batch_size=2) as it:
        assert next(it) == (0,)
    # The only reader is free again: a query does not wait for it.
    assert db.query_one("SELECT count(*) FROM n") == (10,)
    it = db.iterate("SELECT v FROM n")
    assert len(list(it)) == 10
    assert db.query_one("SELECT count(*) FROM n") == (10,)  # exhausted -> released
    db.close()


def test_iterate_reads_its_first_batch_at_once(db_path) -> None:
    """The first batch comes back with the call: a result that fits in it
    has given its reader back before the first next(), and an error while
    stepping is raised by iterate() itself."""
    db = alk.connect(db_path, max_readers=1)
    db.execute("CREATE TABLE n(v)")
    db.executemany("INSERT INTO n VALUES (?)", [(i,) for i in range(10)])
    short = db.iterate("SELECT v FROM n", batch_size=11)  # room for all, and for the end
    assert short.exhausted
    assert db.query_one("SELECT count(*) FROM n") == (10,)  # the one reader is free
    assert [r[0] for r in short] == list(range(10))  # rows wait in the iterator
    long = db.iterate("SELECT v FROM n", batch_size=4)
    assert not long.exhausted
    assert len(list(long)) == 10 and long.exhausted
    with pytest.raises(alk.OperationalError):
        db.iterate("SELECT json(v || '{') FROM n")  # malformed JSON, found while stepping
    assert db.query_one("SELECT count(*) FROM n") == (10,)  # and the reader went back
    db.close()


def test_iterate_refuses_writes(db: alk.Database) -> None:
    with pytest.raises(alk.ProgrammingError, match="read-only"):
        db.iterate("INSERT INTO t(x) VALUES (1) RETURNING id")
    with pytest.raises(alk.WritingStatementError):  # SQLite's verdict, not a keyword
        db.iterate("WITH v(x) AS (SELECT 1) INSERT INTO t(x) SELECT x FROM v")
    assert db.query_one("SELECT count(*) FROM t") == (0,)


def test_iterate_rejects_zero_batch(db: alk.Database) -> None:
    with pytest.raises(alk.ProgrammingError):
        db.iterate("SELECT 1", batch_size=0)


def test_executescript_and_multiple_statements(db: alk.Database) -> None:
    db.executescript("CREATE TABLE a(v); INSERT INTO a VALUES (1); INSERT INTO a VALUES (2);")
    assert db.query("SELECT v FROM a") == [(1,), (2,)]
    with pytest.raises(alk.ProgrammingError, match="one statement"):
        db.execute("INSERT INTO a VALUES (3); INSERT INTO a VALUES (4)")
    assert db.query_one("SELECT count(*) FROM a") == (2,)


def test_reads_outside_a_transaction_see_committed_data_only(db: alk.Database) -> None:
    db.execute("INSERT INTO t(x) VALUES (1)")
    tx = db.transaction()
    tx.execute("INSERT INTO t(x) VALUES (2)")
    assert db.query_one("SELECT count(*) FROM t") == (1,)  # reader: snapshot
    assert tx.query_one("SELECT count(*) FROM t") == (2,)  # the writer sees its own
    tx.commit()
    assert db.query_one("SELECT count(*) FROM t") == (2,)


def test_checkpoint(db: alk.Database) -> None:
    db.execute("INSERT INTO t(x) VALUES (1)")
    busy, _log, _done = db.checkpoint("truncate")
    assert busy == 0
    with pytest.raises(alk.ProgrammingError):
        db.checkpoint("sideways")


def test_connect_validates_options(db_path) -> None:
    with pytest.raises(ValueError):
        alk.connect(db_path, max_readers=0)
    with pytest.raises(ValueError):
        alk.connect(db_path, statement_cache=0)
    with pytest.raises(OverflowError):
        alk.connect(db_path, busy_timeout_ms=-1)


def test_close_is_idempotent_and_context_manager(db_path) -> None:
    with alk.connect(db_path) as db:
        db.execute("CREATE TABLE z(v)")
    assert db.closed
    db.close()
    assert "closed" in repr(db)


def test_path_is_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = alk.connect("rel.db")
    assert db.path == tmp_path / "rel.db"
    assert db.path.is_absolute()
    db.close()


def test_sqlite_is_bundled_and_recent() -> None:
    major, minor, _ = (int(p) for p in alk.sqlite_version().split("."))
    assert (major, minor) >= (3, 45)


def test_cached_statements_follow_schema_changes(db_path) -> None:
    """A statement cached before ALTER TABLE is compiled again by SQLite
    when next run; its rows and column names must be the new ones, on the
    reader that cached it and on the writer, whether rows come back or not."""
    db = alk.connect(db_path, max_readers=1)
    db.execute("CREATE TABLE s(a, b)")
    db.execute("INSERT INTO s VALUES (1, 2)")
    star, none = "SELECT * FROM s", "SELECT * FROM s WHERE a > 5"
    assert db.query(star) == [(1, 2)] and list(db.iterate(star)) == [(1, 2)]
    assert db.iterate(none).columns == ["a", "b"]
    with db.transaction() as tx:
        assert tx.query(star) == [(1, 2)]
        tx.execute("ALTER TABLE s ADD COLUMN c DEFAULT 3")
        assert tx.query(star) == [(1, 2, 3)]
        assert tx.query_one(star, as_dict=True) == {"a": 1, "b": 2, "c": 3}
    assert db.query(star) == [(1, 2, 3)]
    db.execute("ALTER TABLE s ADD COLUMN d DEFAULT 4")
    it = db.iterate(star)
    assert it.columns == ["a", "b", "c", "d"] and list(it) == [(1, 2, 3, 4)]
    db.execute("ALTER TABLE s ADD COLUMN e DEFAULT 5")
    assert db.iterate(none).columns == ["a", "b", "c", "d", "e"]
    assert db.query_one(star, as_dict=True) == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
    db.close()


def test_columns_reports_the_current_schema(db_path) -> None:
    db = alk.connect(db_path, max_readers=1)
    db.execute("CREATE TABLE c(a)")
    assert db.columns("SELECT * FROM c") == ["a"]
    assert db.query("SELECT * FROM c") == []  # cached on the reader
    db.execute("ALTER TABLE c ADD COLUMN b")
    assert db.columns("SELECT * FROM c") == ["a", "b"]
    with db.transaction() as tx:
        tx.execute("ALTER TABLE c ADD COLUMN d")
        assert tx.columns("SELECT * FROM c") == ["a", "b", "d"]
    db.close()
