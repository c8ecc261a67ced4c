"""Each error class is provoked for real and carries SQLite's code and name."""

from __future__ import annotations

from pathlib import Path

import pytest

import alkdev_storage as alk
from alkdev_storage import errors


def assert_code(exc: alk.Error, name: str) -> None:
    assert exc.sqlite_errorname == name
    assert exc.sqlite_errorcode is not None
    assert errors.sqlite_error_name(exc.sqlite_errorcode) == name


def test_hierarchy_follows_pep_249() -> None:
    assert issubclass(alk.DatabaseError, alk.Error)
    assert issubclass(alk.InterfaceError, alk.Error)
    for cls in (
        alk.DataError,
        alk.OperationalError,
        alk.IntegrityError,
        alk.InternalError,
        alk.ProgrammingError,
        alk.NotSupportedError,
    ):
        assert issubclass(cls, alk.DatabaseError)
    assert issubclass(alk.BusyError, alk.OperationalError)
    assert issubclass(alk.LockedError, alk.OperationalError)
    assert issubclass(alk.ConstraintError, alk.IntegrityError)
    assert issubclass(alk.ParameterTypeError, TypeError)
    assert issubclass(alk.ParameterOverflowError, OverflowError)
    assert not issubclass(alk.Error, RuntimeError)


def test_busy(db_path: Path) -> None:
    first = alk.connect(db_path)
    first.execute("CREATE TABLE t(x)")
    second = alk.connect(db_path, busy_timeout_ms=50)
    with first.transaction() as tx:
        tx.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(alk.BusyError) as info:
            second.execute("INSERT INTO t VALUES (2)")
        assert_code(info.value, "SQLITE_BUSY")
        with pytest.raises(alk.BusyError):
            second.transaction()
    second.execute("INSERT INTO t VALUES (2)")  # free again
    assert second.query("SELECT x FROM t ORDER BY x") == [(1,), (2,)]
    first.close()
    second.close()


def test_constraint(db: alk.Database) -> None:
    db.execute("CREATE TABLE u(k UNIQUE NOT NULL)")
    db.execute("INSERT INTO u VALUES (1)")
    with pytest.raises(alk.ConstraintError) as info:
        db.execute("INSERT INTO u VALUES (1)")
    assert_code(info.value, "SQLITE_CONSTRAINT_UNIQUE")
    assert "UNIQUE" in str(info.value)
    with pytest.raises(alk.IntegrityError) as info2:
        db.execute("INSERT INTO u VALUES (NULL)")
    assert_code(info2.value, "SQLITE_CONSTRAINT_NOTNULL")


def test_foreign_keys_are_enforced(db: alk.Database) -> None:
    db.executescript("CREATE TABLE p(id INTEGER PRIMARY KEY);CREATE TABLE c(p REFERENCES p(id));")
    with pytest.raises(alk.ConstraintError) as info:
        db.execute("INSERT INTO c VALUES (42)")
    assert_code(info.value, "SQLITE_CONSTRAINT_FOREIGNKEY")


def test_read_only(db_path: Path) -> None:
    alk.connect(db_path).execute("CREATE TABLE t(x)")
    ro = alk.connect(db_path, readonly=True)
    assert ro.readonly
    assert ro.query("SELECT count(*) FROM t") == [(0,)]
    with pytest.raises(alk.ReadOnlyError) as info:
        ro.execute("INSERT INTO t VALUES (1)")
    assert_code(info.value, "SQLITE_READONLY")
    with pytest.raises(alk.ReadOnlyError):
        with ro.transaction() as tx:
            tx.execute("INSERT INTO t VALUES (1)")
    ro.close()


def test_read_only_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(alk.CantOpenError) as info:
        alk.connect(tmp_path / "missing.db", readonly=True)
    assert_code(info.value, "SQLITE_CANTOPEN")
    assert not (tmp_path / "missing.db").exists()


def test_cant_open_a_directory(tmp_path: Path) -> None:
    with pytest.raises(alk.CantOpenError) as info:
        alk.connect(tmp_path)
    assert info.value.sqlite_errorname is not None
    assert info.value.sqlite_errorname.startswith("SQLITE_CANTOPEN")


def test_cant_open_in_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(alk.CantOpenError):
        alk.connect(tmp_path / "no" / "such" / "dir" / "app.db")


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an sqlite file at all" * 200)
    with pytest.raises(alk.NotADatabaseError) as info:
        alk.connect(path)
    assert_code(info.value, "SQLITE_NOTADB")
    assert path.read_bytes().startswith(b"this is not")  # left untouched


def test_syntax_error(db: alk.Database) -> None:
    with pytest.raises(alk.ProgrammingError) as info:
        db.execute("INSERT INTO t VALUS (1)")
    assert_code(info.value, "SQLITE_ERROR")
    assert "syntax error" in str(info.value)
    with pytest.raises(alk.ProgrammingError, match="no such table"):
        db.query("SELECT * FROM missing")


def test_closed_database(db_path: Path) -> None:
    db = alk.connect(db_path)
    tx_db = alk.connect(db_path)
    tx = tx_db.transaction()
    db.close()
    tx_db.close()
    for call in (
        lambda: db.execute("SELECT 1"),
        lambda: db.query("SELECT 1"),
        lambda: db.query_one("SELECT 1"),
        lambda: db.executemany("SELECT ?", [(1,)]),
        lambda: db.iterate("SELECT 1"),
        lambda: db.columns("SELECT 1"),
        lambda: db.transaction(),
        lambda: tx.execute("SELECT 1"),
        lambda: tx.commit(),
    ):
        with pytest.raises(alk.DatabaseClosedError) as info:
            call()
        assert_code(info.value, "SQLITE_MISUSE")
    assert isinstance(info.value, alk.ProgrammingError)


def test_unsupported_parameter_type(db: alk.Database) -> None:
    for bad in (object(), [1], {"a": 1}, 1 + 2j, {1}):
        with pytest.raises(alk.ParameterTypeError) as info:
            db.execute("INSERT INTO t(x) VALUES (?)", (bad,))
        assert_code(info.value, "SQLITE_MISMATCH")
        assert "parameter 1" in str(info.value)
    with pytest.raises(TypeError, match='parameter "x"'):
        db.execute("INSERT INTO t(x) VALUES (:x)", {"x": object()})
    with pytest.raises(alk.ParameterTypeError, match="sequence or a mapping"):
        db.execute("INSERT INTO t(x) VALUES (?)", "a")
    with pytest.raises(alk.ParameterTypeError, match="sequence or a mapping"):
        db.execute("INSERT INTO t(x) VALUES (?)", 5)
    assert db.query_one("SELECT count(*) FROM t") == (0,)


def test_wrong_number_of_parameters(db: alk.Database) -> None:
    with pytest.raises(alk.ParameterCountError) as info:
        db.execute("INSERT INTO t(x, y) VALUES (?, ?)", (1,))
    assert_code(info.value, "SQLITE_RANGE")
    assert "2 parameter(s), but 1" in str(info.value)
    with pytest.raises(alk.ParameterCountError):
        db.query("SELECT ?", (1, 2))
    with pytest.raises(alk.ParameterCountError, match=":y"):
        db.execute("INSERT INTO t(x, y) VALUES (:x, :y)", {"x": 1})
    with pytest.raises(alk.ParameterCountError, match="nameless"):
        db.execute("INSERT INTO t(x) VALUES (?)", {"x": 1})
    assert isinstance(info.value, alk.ProgrammingError)
    assert db.query_one("SELECT count(*) FROM t") == (0,)


def test_memory_databases_are_refused(tmp_path: Path) -> None:
    for path in (":memory:", "", "file::memory:?cache=shared", "file:x.db?mode=memory"):
        with pytest.raises(alk.NotSupportedError, match="real file"):
            alk.connect(path)


def test_unknown_codes_still_have_a_name() -> None:
    assert errors.sqlite_error_name(5) == "SQLITE_BUSY"
    assert errors.sqlite_error_name(517) == "SQLITE_BUSY_SNAPSHOT"
    assert errors.sqlite_error_name(0x7F00 | 19) == "SQLITE_CONSTRAINT"
