"""SQL functions on every connection: the native REGEXP and Python
functions registered with `Database.create_function`."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import alkdev_storage as alk


@pytest.fixture
def db(tmp_path: Path) -> alk.Database:
    d = alk.connect(tmp_path / "f.db", max_readers=3)
    d.execute("CREATE TABLE t(x)")
    d.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(5)])
    yield d
    d.close()


def test_regexp_searches_text(db: alk.Database) -> None:
    assert db.query_one("SELECT 'abcde' REGEXP 'b.d', 'abcde' REGEXP '^b'") == (1, 0)
    assert db.query_one("SELECT NULL REGEXP 'a', 'a' REGEXP NULL") == (None, None)
    with pytest.raises(alk.OperationalError, match="invalid REGEXP pattern"):
        db.query("SELECT 'a' REGEXP '('")


def test_math_functions_are_built_in(db: alk.Database) -> None:
    assert db.query_one("SELECT floor(7.5 / 2), ceil(0.5), pow(2, 10), sqrt(16)") == (
        3.0,
        1.0,
        1024.0,
        4.0,
    )


def test_function_runs_on_the_writer_and_every_reader(db: alk.Database) -> None:
    db.create_function("double", 1, lambda v: v * 2, deterministic=True)
    assert db.query("SELECT double(x) FROM t") == [(0,), (2,), (4,), (6,), (8,)]
    with db.transaction() as tx:
        assert tx.query_one("SELECT double(21)") == (42,)
        tx.execute("UPDATE t SET x = double(x)")
    # Hold every reader at once (three streams), so each one runs it.
    streams = [db.iterate("SELECT double(x) FROM t", batch_size=1) for _ in range(3)]
    assert [[r[0] for r in s] for s in streams] == [[0, 4, 8, 12, 16]] * 3


def test_values_cross_as_they_do_for_queries(db: alk.Database) -> None:
    seen: list[tuple[object, ...]] = []

    def record(*args: object) -> object:
        seen.append(args)
        return args[-1]

    db.create_function("record", -1, record)
    row = db.query_one("SELECT record(1, 2.5, 'é', x'00ff', NULL), record(x'01')")
    assert row == (None, b"\x01")
    assert seen == [(1, 2.5, "é", b"\x00\xff", None), (b"\x01",)]


def test_errors_in_the_function(db: alk.Database) -> None:
    db.create_function("boom", 0, lambda: 1 / 0)
    with pytest.raises(alk.OperationalError, match="boom\\(\\) raised ZeroDivisionError"):
        db.query("SELECT boom()")
    db.create_function("huge", 0, lambda: 2**70)
    with pytest.raises(alk.OperationalError, match="does not fit"):
        db.query("SELECT huge()")
    db.create_function("obj", 0, lambda: object())
    with pytest.raises(alk.OperationalError, match="the result of obj\\(\\)"):
        db.query("SELECT obj()")
    # A failed statement inside a transaction leaves the transaction usable.
    with db.transaction() as tx:
        with pytest.raises(alk.OperationalError):
            tx.execute("UPDATE t SET x = boom()")
        tx.execute("INSERT INTO t VALUES (99)")
    assert db.query_one("SELECT count(*) FROM t") == (6,)


def test_replace_and_remove(db: alk.Database) -> None:
    db.create_function("f", 1, lambda v: "one")
    db.create_function("f", 2, lambda a, b: "two")  # another arity: both exist
    assert db.query_one("SELECT f(1), f(1, 2)") == ("one", "two")
    db.create_function("F", 1, lambda v: "replaced")  # names are case-insensitive
    assert db.query_one("SELECT f(1)") == ("replaced",)
    db.create_function("f", 1, None)
    with pytest.raises(alk.OperationalError, match="wrong number of arguments"):
        db.query("SELECT f(1)")
    with db.transaction() as tx:  # the writer was updated too
        assert tx.query_one("SELECT f(1, 2)") == ("two",)
    db.create_function("never", 0, None)  # removing what never was is fine
    assert db.query_one("SELECT 1") == (1,)


def test_bad_registrations_are_refused(db: alk.Database) -> None:
    for name, n_arg, func in [
        ("", 1, len),
        ("x" * 256, 1, len),
        ("f", -2, len),
        ("f", 128, len),
        ("f", 1, "not callable"),
    ]:
        with pytest.raises(alk.ProgrammingError):
            db.create_function(name, n_arg, func)  # type: ignore[arg-type]
    db.close()
    with pytest.raises(alk.DatabaseClosedError):
        db.create_function("f", 1, len)


def test_functions_called_from_threads(db: alk.Database) -> None:
    """Reads release the GIL; each call takes it back. Several threads
    calling at once neither deadlock nor mix results up."""
    db.create_function("tag", 2, lambda name, x: f"{name}:{x}")
    failures: list[BaseException] = []

    def work(name: str) -> None:
        try:
            for _ in range(50):
                rows = db.query("SELECT tag(?, x) FROM t ORDER BY x", (name,))
                assert rows == [(f"{name}:{i}",) for i in range(5)]
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(f"t{k}",)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert failures == []
