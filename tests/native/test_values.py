"""Values round-trip exactly between Python and SQLite."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alkdev_storage as alk

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False)  # NaN is documented to become NULL
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))  # no lone surrogates
VALUES = st.one_of(st.none(), I64, FLOATS, TEXT, st.binary())


@pytest.fixture(scope="module")
def vdb(tmp_path_factory: pytest.TempPathFactory) -> alk.Database:
    path: Path = tmp_path_factory.mktemp("values") / "values.db"
    db = alk.connect(path)
    db.execute("CREATE TABLE v(id INTEGER PRIMARY KEY, a ANY) STRICT")
    return db


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or a == b
    return type(a) is type(b) and a == b


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=VALUES)
def test_round_trip_through_a_table(vdb: alk.Database, value: object) -> None:
    rowid = vdb.execute("INSERT INTO v(a) VALUES (?)", (value,)).lastrowid
    back = vdb.query_one("SELECT a FROM v WHERE id = ?", (rowid,))
    assert back is not None and same(back[0], value), (value, back)
    # The same value through a named parameter, a transaction and iterate().
    with vdb.transaction() as tx:
        assert same(tx.query_one("SELECT :v", {"v": value})[0], value)  # type: ignore[index]
    assert [same(r[0], value) for r in vdb.iterate("SELECT ?", (value,))] == [True]


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.lists(VALUES, min_size=1, max_size=8))
def test_round_trip_many_columns(vdb: alk.Database, row: list[object]) -> None:
    sql = "SELECT " + ", ".join("?" for _ in row)
    back = vdb.query_one(sql, row)
    assert back is not None
    assert all(same(a, b) for a, b in zip(back, row, strict=True))


def test_bool_binds_as_integer(vdb: alk.Database) -> None:
    assert vdb.query_one("SELECT ?, ?, typeof(?)", (True, False, True)) == (1, 0, "integer")


def test_int_limits_and_overflow(vdb: alk.Database) -> None:
    assert vdb.query_one("SELECT ?, ?", (2**63 - 1, -(2**63))) == (2**63 - 1, -(2**63))
    for too_big in (2**63, -(2**63) - 1, 10**30):
        with pytest.raises(alk.ParameterOverflowError, match="64-bit"):
            vdb.query_one("SELECT ?", (too_big,))


def test_special_floats(vdb: alk.Database) -> None:
    inf, ninf = vdb.query_one("SELECT ?, ?", (math.inf, -math.inf)) or ()
    assert inf == math.inf and ninf == -math.inf
    negzero = vdb.query_one("SELECT ?", (-0.0,))
    assert negzero is not None and math.copysign(1.0, negzero[0]) == -1.0
    # SQLite stores NaN as NULL; documented in docs/values.md.
    assert vdb.query_one("SELECT ?", (math.nan,)) == (None,)


def test_text_with_nul_and_astral_characters(vdb: alk.Database) -> None:
    s = "a\x00b \U0001f600 \u00e9 \uffff"
    assert vdb.query_one("SELECT ?, length(CAST(? AS BLOB))", (s, s)) == (s, len(s.encode()))


def test_blob_like_inputs(vdb: alk.Database) -> None:
    assert vdb.query_one("SELECT ?, ?, ?", (b"\x00\xff", bytearray(b"ab"), memoryview(b"cd"))) == (
        b"\x00\xff",
        b"ab",
        b"cd",
    )
    assert vdb.query_one("SELECT x''") == (b"",)


def test_lone_surrogate_is_refused(vdb: alk.Database) -> None:
    with pytest.raises(alk.ParameterTypeError, match="surrogate"):
        vdb.query_one("SELECT ?", ("\ud800",))


def test_invalid_utf8_text_raises_never_empty(vdb: alk.Database) -> None:
    with pytest.raises(alk.DataError, match="UTF-8") as info:
        vdb.query_one("SELECT CAST(x'66ff6f' AS TEXT) AS bad")
    assert "bad" in str(info.value)
    with pytest.raises(alk.DataError):
        list(vdb.iterate("SELECT CAST(x'c3' AS TEXT)"))
    # The bytes are still reachable as a BLOB.
    assert vdb.query_one("SELECT CAST(CAST(x'66ff6f' AS TEXT) AS BLOB)") == (b"f\xffo",)


def test_int_and_str_subclasses(vdb: alk.Database) -> None:
    import enum

    class Color(enum.IntEnum):
        RED = 1

    class Name(enum.StrEnum):
        BOB = "bob"

    assert vdb.query_one("SELECT ?, ?", (Color.RED, Name.BOB)) == (1, "bob")
