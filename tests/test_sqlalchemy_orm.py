"""The ``sqlite+alkdev`` dialect under the ORM (declarative models,
relationships, RETURNING, bulk insert, upsert), SQLModel and pandas
``to_sql``/``read_sql`` (issue 6, acceptance: ORM, SQLModel, pandas)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlmodel
from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    delete,
    exc,
    func,
    insert,
    inspect,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
)

import alkdev_storage as alk
from alkdev_storage import dbapi
from alkdev_storage.sqlalchemy import AlkdevDialect, database
from conftest import alkdev_engine

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------- models


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    books: Mapped[list[Book]] = relationship(
        back_populates="author", cascade="all, delete-orphan", order_by="Book.id"
    )


class Book(Base):
    __tablename__ = "books"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    pages: Mapped[int] = mapped_column(default=0)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    author: Mapped[Author] = relationship(back_populates="books")


class Counter(Base):
    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    hits: Mapped[int] = mapped_column(default=0)
    note: Mapped[str | None]


class Sample(Base):
    __tablename__ = "samples"

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date)
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 4))
    doc: Mapped[Any] = mapped_column(JSON)
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    flag: Mapped[bool] = mapped_column(Boolean)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "orm.db"


@pytest.fixture
def engine(path: Path) -> Iterator[Engine]:
    yield from alkdev_engine(path, Base.metadata)


def committed(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """What an independent `alk.Database` on the file sees committed. Read
    only: opening a writable one writes honker's schema, which would wait
    for a transaction the test holds open."""
    db = alk.connect(path, readonly=True)
    try:
        return [tuple(row) for row in db.query(sql)]
    finally:
        db.close()


# ------------------------------------------------------- engine, dialect


def test_engine_uses_the_alkdev_dialect_and_dbapi(engine: Engine) -> None:
    assert isinstance(engine.dialect, AlkdevDialect)
    assert engine.dialect.name == "sqlite" and engine.dialect.driver == "alkdev"
    with engine.connect() as conn:
        assert isinstance(conn.connection.dbapi_connection, dbapi.Connection)
        assert conn.scalar(text("SELECT sqlite_version()")) == dbapi.sqlite_version
        assert conn.scalar(select(literal(2) + 3)) == 5
    assert isinstance(database(engine), alk.Database)
    # Both versions SQLAlchemy asks a dialect for: the driver's and the server's.
    release = alk.__version__.partition("+")[0].split(".")[:3]
    assert engine.dialect.dbapi_version == tuple(int(part) for part in release)
    assert engine.dialect.server_version_info == dbapi.sqlite_version_info


def test_url_options_reach_the_core(path: Path) -> None:
    eng = create_engine(f"sqlite+alkdev:///{path}?max_readers=2&busy_timeout_ms=1500")
    try:
        _, kwargs = eng.dialect.create_connect_args(eng.url)
        assert kwargs == {
            "max_readers": 2,
            "busy_timeout_ms": 1500,
            "snapshot_reads": True,
            "shared": True,
        }
        with eng.begin() as conn:
            conn.execute(text("CREATE TABLE t(x)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        with eng.connect() as conn:
            assert conn.execute(text("SELECT x FROM t")).all() == [(1,)]
            assert conn.scalar(text("PRAGMA busy_timeout")) == 1500
    finally:
        eng.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+alkdev:///:memory:",
        "sqlite+alkdev://",
        "sqlite+alkdev:///file:x.db?mode=memory",
        "sqlite+alkdev:///{path}?cache=shared",
        "sqlite+alkdev:///{path}?max_readers=2&journal_mode=delete",
        "sqlite+alkdev://user@host/{path}",
    ],
)
def test_bad_urls_raise_argument_error(path: Path, url: str) -> None:
    with pytest.raises(exc.ArgumentError):
        create_engine(url.format(path=path))
    assert not path.exists()


# ------------------------------------------------------ ORM, relationships


def _library(session: Session) -> None:
    session.add_all(
        [
            Author(name="Le Guin", books=[Book(title="Earthsea", pages=200), Book(title="Lathe")]),
            Author(name="Lem", books=[Book(title="Solaris", pages=204)]),
            Author(name="Nobody"),
        ]
    )


def test_one_to_many_with_selectinload_joinedload_and_cascade_delete(
    engine: Engine, path: Path
) -> None:
    with Session(engine) as session, session.begin():
        _library(session)
    with Session(engine) as session:
        authors = session.scalars(
            select(Author).options(selectinload(Author.books)).order_by(Author.name)
        ).all()
        assert [(a.name, [b.title for b in a.books]) for a in authors] == [
            ("Le Guin", ["Earthsea", "Lathe"]),
            ("Lem", ["Solaris"]),
            ("Nobody", []),
        ]
        books = session.scalars(
            select(Book).options(joinedload(Book.author)).where(Book.pages > 100).order_by(Book.id)
        ).all()
        assert [(b.title, b.author.name, b.pages) for b in books] == [
            ("Earthsea", "Le Guin", 200),
            ("Solaris", "Lem", 204),
        ]
        joined = (
            session.scalars(select(Author).options(joinedload(Author.books)).order_by(Author.id))
            .unique()
            .all()
        )
        assert [len(a.books) for a in joined] == [2, 1, 0]
        # The lazy default loads on access, in the same session.
        lem = session.scalars(select(Author).where(Author.name == "Lem")).one()
        assert [b.title for b in lem.books] == ["Solaris"]
        # Moving a book between parents is a plain UPDATE of the foreign key.
        solaris = lem.books[0]
        authors[0].books.append(solaris)
        session.commit()
    assert committed(path, "SELECT author_id FROM books WHERE title = 'Solaris'") == [(1,)]

    with Session(engine) as session, session.begin():
        le_guin = session.scalars(select(Author).where(Author.name == "Le Guin")).one()
        assert len(le_guin.books) == 3
        session.delete(le_guin)
    assert committed(path, "SELECT count(*) FROM books") == [(0,)]
    assert committed(path, "SELECT name FROM authors ORDER BY id") == [("Lem",), ("Nobody",)]


def test_orphan_removal_deletes_the_child(engine: Engine, path: Path) -> None:
    with Session(engine) as session, session.begin():
        _library(session)
    with Session(engine) as session, session.begin():
        le_guin = session.scalars(select(Author).where(Author.name == "Le Guin")).one()
        del le_guin.books[0]
    assert committed(path, "SELECT title FROM books ORDER BY id") == [("Lathe",), ("Solaris",)]


# ------------------------------------------------------------ RETURNING


def test_insert_update_delete_returning(engine: Engine) -> None:
    with engine.begin() as conn:
        author_id = conn.execute(
            insert(Author).values(name="Herbert").returning(Author.id)
        ).scalar_one()
        assert author_id == 1
        rows = conn.execute(
            insert(Book)
            .values(title="Dune", pages=412, author_id=author_id)
            .returning(Book.id, Book.title, Book.pages)
        ).all()
        assert [tuple(r) for r in rows] == [(1, "Dune", 412)]
        result = conn.execute(
            update(Book).where(Book.id == 1).values(pages=Book.pages + 1).returning(Book.pages)
        )
        assert result.scalar_one() == 413
        deleted = conn.execute(delete(Book).returning(Book.title)).scalars().all()
        assert deleted == ["Dune"]
        assert conn.execute(select(func.count()).select_from(Book)).scalar_one() == 0


def test_orm_bulk_insert_returning_models(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        authors = session.scalars(
            insert(Author).returning(Author),
            [{"name": f"author {i}"} for i in range(50)],
        ).all()
        assert [a.id for a in authors] == list(range(1, 51))
        assert authors[7].name == "author 7"
        # The returned objects are in the identity map: no second SELECT.
        assert session.get(Author, 8) is authors[7]
        books = session.scalars(
            insert(Book).returning(Book, sort_by_parameter_order=True),
            [{"title": f"t{i}", "author_id": authors[i % 3].id} for i in range(30)],
        ).all()
        assert [b.title for b in books] == [f"t{i}" for i in range(30)]
        assert {b.pages for b in books} == {0}  # the Python-side default was sent
        assert [b.author_id for b in books[:4]] == [1, 2, 3, 1]
    with Session(engine) as session:
        counts = session.execute(
            select(Author.name, func.count(Book.id))
            .join(Book)
            .group_by(Author.id)
            .order_by(Author.id)
        ).all()
        assert [tuple(r) for r in counts] == [("author 0", 10), ("author 1", 10), ("author 2", 10)]


def test_orm_flush_fetches_server_generated_ids(engine: Engine) -> None:
    with Session(engine) as session:
        authors = [Author(name=f"a{i}") for i in range(5)]
        session.add_all(authors)
        session.flush()  # one INSERT .. RETURNING for the batch (insertmanyvalues)
        assert [a.id for a in authors] == [1, 2, 3, 4, 5]
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Author)) == 0


# ------------------------------------------------- bulk, executemany, upsert


def test_executemany_bulk_insert_of_thousands_of_rows(engine: Engine, path: Path) -> None:
    n = 20_000
    with engine.begin() as conn:
        conn.execute(insert(Author), [{"name": "bulk"}])
        result = conn.execute(
            insert(Book),
            [{"title": f"b{i}", "pages": i, "author_id": 1} for i in range(n)],
            # SQLAlchemy documents INSERT rowcount only with this option
            # (test_insert_result_rowcount_and_lastrowid_like_pysqlite has
            # the default).
            execution_options={"preserve_rowcount": True},
        )
        assert result.rowcount == n
        # The same through text() and a list of dicts (named parameters).
        conn.execute(
            text("INSERT INTO counters(name, hits) VALUES (:name, :hits)"),
            [{"name": f"c{i}", "hits": i} for i in range(3000)],
        )
    assert committed(path, "SELECT count(*), sum(pages), max(title) FROM books") == [
        (n, n * (n - 1) // 2, "b9999")
    ]
    assert committed(path, "SELECT count(*), sum(hits) FROM counters") == [(3000, 4498500)]

    with Session(engine) as session, session.begin():
        session.execute(
            update(Book),
            [{"id": i, "pages": -i} for i in range(1, 1001)],
        )  # ORM bulk UPDATE by primary key: executemany
    assert committed(path, "SELECT count(*) FROM books WHERE pages < 0") == [(1000,)]


def test_upsert_on_conflict_do_update_and_do_nothing(engine: Engine) -> None:
    def hit(conn: Any, name: str, note: str | None = None) -> None:
        stmt = sqlite_insert(Counter).values(name=name, hits=1, note=note)
        stmt = stmt.on_conflict_do_update(
            index_elements=[Counter.name],
            set_={"hits": Counter.hits + stmt.excluded.hits, "note": stmt.excluded.note},
            where=stmt.excluded.note.is_not(None) | (Counter.note.is_(None)),
        )
        conn.execute(stmt)

    with engine.begin() as conn:
        for name in ["a", "b", "a", "a"]:
            hit(conn, name)
        hit(conn, "b", note="set")
        hit(conn, "b")  # the WHERE refuses: b keeps its note and count
        ignored = conn.execute(
            sqlite_insert(Counter)
            .values([{"name": "a", "hits": 100}, {"name": "c", "hits": 7}])
            .on_conflict_do_nothing(index_elements=["name"]),
            execution_options={"preserve_rowcount": True},
        )
        assert ignored.rowcount == 1
        returned = conn.execute(
            sqlite_insert(Counter)
            .values(name="c", hits=5)
            .on_conflict_do_update(index_elements=["name"], set_={"hits": Counter.hits * 10})
            .returning(Counter.name, Counter.hits)
        ).all()
        assert [tuple(r) for r in returned] == [("c", 70)]
    with engine.connect() as conn:
        rows = conn.execute(select(Counter.name, Counter.hits, Counter.note).order_by("name"))
        assert [tuple(r) for r in rows] == [("a", 3, None), ("b", 2, "set"), ("c", 70, None)]

    # The ORM form: bulk upsert returning the (refreshed) objects.
    with Session(engine) as session, session.begin():
        stmt = sqlite_insert(Counter).values(
            [{"name": "a", "hits": 1000}, {"name": "z", "hits": 1}]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[Counter.name], set_={"hits": stmt.excluded.hits}
        )
        objs = session.scalars(
            stmt.returning(Counter), execution_options={"populate_existing": True}
        ).all()
        assert sorted((o.name, o.hits) for o in objs) == [("a", 1000), ("z", 1)]


def test_update_and_delete_rowcount(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        _library(session)
    with engine.begin() as conn:
        assert conn.execute(update(Book).where(Book.pages > 100).values(pages=1)).rowcount == 2
        assert conn.execute(update(Book).where(Book.pages > 100).values(pages=1)).rowcount == 0
        assert conn.execute(text("UPDATE books SET pages = pages + 1")).rowcount == 3
        assert conn.execute(delete(Book).where(Book.title.like("%a%"))).rowcount == 3
        assert conn.execute(delete(Book)).rowcount == 0
    with Session(engine) as session, session.begin():
        result = session.execute(
            update(Author).where(Author.name.startswith("L")).values(name=Author.name + "!")
        )
        assert result.rowcount == 2
        assert session.scalars(select(Author.name).order_by(Author.id)).all() == [
            "Le Guin!",
            "Lem!",
            "Nobody",
        ]


# -------------------------------------------------------------- savepoints


def test_begin_nested_rolls_back_only_the_nested_part(engine: Engine, path: Path) -> None:
    with Session(engine) as session:
        session.add(Author(name="outer"))
        session.flush()
        nested = session.begin_nested()
        session.add(Author(name="inner"))
        session.flush()
        assert session.scalar(select(func.count()).select_from(Author)) == 2
        nested.rollback()
        assert session.scalars(select(Author.name)).all() == ["outer"]

        # A savepoint that commits (RELEASE) keeps its rows.
        with session.begin_nested():
            session.add(Author(name="kept"))
        # The context manager form rolls back on an exception...
        with pytest.raises(exc.IntegrityError), session.begin_nested():
            session.add(Author(name="outer"))  # duplicate: the flush fails
            session.flush()
        # ... and the outer transaction is usable afterwards.
        assert session.scalars(select(Author.name).order_by(Author.id)).all() == ["outer", "kept"]
        # Nothing is committed yet.
        assert committed(path, "SELECT count(*) FROM authors") == [(0,)]
        session.commit()
    assert committed(path, "SELECT name FROM authors ORDER BY id") == [("outer",), ("kept",)]


def test_nested_savepoints_two_levels(engine: Engine, path: Path) -> None:
    with Session(engine) as session, session.begin():
        session.add(Author(name="level0"))
        level1 = session.begin_nested()
        session.add(Author(name="level1"))
        level2 = session.begin_nested()
        session.add(Author(name="level2"))
        session.flush()
        level2.commit()
        level1.rollback()  # takes level2's (released) rows with it
        session.add(Author(name="after"))
    assert committed(path, "SELECT name FROM authors ORDER BY id") == [("level0",), ("after",)]


# ------------------------------------------------------------ value types


def test_value_types_round_trip(engine: Engine, path: Path) -> None:
    values = [
        {
            "day": dt.date(2024, 2, 29),
            "at": dt.datetime(2024, 2, 29, 23, 59, 58, 123456),
            "price": Decimal("1234.5678"),
            "doc": {"a": [1, 2, {"b": None}], "é": "ü", "n": 1.5},
            "blob": bytes(range(256)) + b"\x00",
            "flag": True,
        },
        {
            "day": dt.date(1, 1, 1),
            "at": dt.datetime(1999, 12, 31, 0, 0),
            "price": Decimal("-0.0001"),
            "doc": [],
            "blob": b"",
            "flag": False,
        },
    ]
    with Session(engine) as session, session.begin():
        session.add_all(Sample(**v) for v in values)
    with Session(engine) as session:
        got = session.scalars(select(Sample).order_by(Sample.id)).all()
        for sample, want in zip(got, values, strict=True):
            for key, value in want.items():
                assert getattr(sample, key) == value, key
                assert type(getattr(sample, key)) is type(value), key
        # Filters on the stored forms work too.
        assert (
            session.scalar(
                select(Sample.id).where(Sample.day < dt.date(2000, 1, 1), Sample.flag.is_(False))
            )
            == 2
        )
        assert (
            session.scalar(
                select(Sample.id).where(Sample.at > dt.datetime(2024, 2, 29, 23, 59, 58))
            )
            == 1
        )
        assert session.scalar(select(Sample.doc["a"][2]["b"]).where(Sample.id == 1)) is None
        assert session.scalar(select(Sample.doc["é"].as_string()).where(Sample.id == 1)) == "ü"
        assert session.scalar(select(func.length(Sample.blob)).where(Sample.id == 1)) == 257
    # Stored the way SQLite (and the sqlite3 driver) would store them.
    assert committed(path, "SELECT day, at, typeof(blob), flag FROM samples WHERE id = 1") == [
        ("2024-02-29", "2024-02-29 23:59:58.123456", "blob", 1)
    ]


# ------------------------------------------------------------ reflection


def test_reflection(engine: Engine) -> None:
    insp = inspect(engine)
    # honker's tables, created by the core on open, are internal: listed
    # only on request, as SQLite's own are.
    assert insp.get_table_names() == ["authors", "books", "counters", "samples"]
    mine = {"authors", "books", "counters", "samples"}
    internal = set(insp.get_table_names(sqlite_include_internal=True)) - mine
    assert {"_honker_live", "_honker_stream"} <= internal
    assert all(t.startswith(("_honker", "sqlite_")) for t in internal)
    assert insp.has_table("_honker_live")
    meta = MetaData()
    meta.reflect(engine)
    assert sorted(meta.tables) == ["authors", "books", "counters", "samples"]
    columns = {c["name"]: c for c in insp.get_columns("books")}
    assert list(columns) == ["id", "title", "pages", "author_id"]
    assert isinstance(columns["title"]["type"], String) and columns["title"]["type"].length == 100
    assert isinstance(columns["pages"]["type"], Integer)
    assert columns["title"]["nullable"] is False
    assert insp.get_pk_constraint("books")["constrained_columns"] == ["id"]
    fks = insp.get_foreign_keys("books")
    assert [(f["constrained_columns"], f["referred_table"]) for f in fks] == [
        (["author_id"], "authors")
    ]
    uniques = insp.get_unique_constraints("authors")
    assert [u["column_names"] for u in uniques] == [["name"]]

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE legacy(k TEXT PRIMARY KEY, v REAL DEFAULT 1.5)"))
        conn.execute(text("CREATE INDEX legacy_v ON legacy(v)"))
    meta = MetaData()
    legacy = Table("legacy", meta, autoload_with=engine)
    assert [c.name for c in legacy.columns] == ["k", "v"]
    assert [c.name for c in legacy.primary_key] == ["k"]
    assert [i.name for i in legacy.indexes] == ["legacy_v"]
    with engine.begin() as conn:
        conn.execute(legacy.insert(), [{"k": "x"}])  # v from the reflected DEFAULT
        conn.execute(legacy.insert(), [{"k": "y", "v": 2.0}])
        rows = conn.execute(select(legacy).order_by(legacy.c.k)).all()
    assert [tuple(r) for r in rows] == [("x", 1.5), ("y", 2.0)]
    # A reflected table joins the rest of the metadata.
    books = Table("books", meta, autoload_with=engine)
    assert books.c.author_id.foreign_keys
    assert inspect(engine).has_table("legacy") and not inspect(engine).has_table("nope")


# ----------------------------------------------------- functions, operators


def test_regexp_match_and_replace(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        _library(session)
    with Session(engine) as session:
        names = session.scalars(
            select(Author.name).where(Author.name.regexp_match("^L[a-z]+$")).order_by(Author.id)
        ).all()
        assert names == ["Lem"]
        assert session.scalars(
            select(Book.title).where(~Book.title.regexp_match("e")).order_by(Book.id)
        ).all() == ["Solaris"]
        # The pattern is Python's re: inline flags work. (SQLAlchemy's SQLite
        # compiler drops flags=, on sqlite+pysqlite too.)
        assert (
            session.scalar(select(func.count()).where(Book.title.regexp_match("(?i)^EARTH"))) == 1
        )
        assert session.scalar(select(func.count()).where(Book.title.regexp_match("^EARTH"))) == 0


def test_floordiv_operator(engine: Engine) -> None:
    with engine.connect() as conn:
        ints = conn.execute(select(literal(7) // literal(2), literal(-7) // literal(2))).one()
        # SQLAlchemy compiles // on integers to SQLite's "/", which truncates
        # toward zero (as on sqlite+pysqlite), and on other numbers to FLOOR(a / b).
        assert tuple(ints) == (3, -3)
        floats = conn.execute(
            select(literal(7.5, Numeric()) // literal(2), literal(-7.5, Numeric()) // literal(2))
        ).one()
        assert [int(x) for x in floats] == [3, -4]
    with Session(engine) as session, session.begin():
        _library(session)
        rows = session.execute(
            select(Book.title, Book.pages // 100).where(Book.pages > 0).order_by(Book.id)
        ).all()
        assert [tuple(r) for r in rows] == [("Earthsea", 2), ("Solaris", 2)]


# ---------------------------------------------------------------- AUTOCOMMIT


def test_autocommit_isolation_commits_each_statement(engine: Engine, path: Path) -> None:
    auto = engine.execution_options(isolation_level="AUTOCOMMIT")
    with auto.connect() as conn:
        assert conn.get_isolation_level() == "SERIALIZABLE"  # SQLite's own
        assert conn.connection.dbapi_connection.autocommit is True
        conn.execute(insert(Author).values(name="auto"))
        # Visible to an independent database before any commit call.
        assert committed(path, "SELECT name FROM authors") == [("auto",)]
        conn.rollback()  # nothing to undo
        assert conn.connection.dbapi_connection.transaction is None
    assert committed(path, "SELECT count(*) FROM authors") == [(1,)]
    # The pooled connection comes back out of autocommit for the next user.
    with engine.connect() as conn:
        assert conn.connection.dbapi_connection.autocommit is False
        conn.execute(insert(Author).values(name="txn"))
        conn.rollback()
    assert committed(path, "SELECT name FROM authors") == [("auto",)]
    # A session on an AUTOCOMMIT engine: each flush lands immediately.
    with Session(auto) as session:
        session.add(Author(name="s1"))
        session.flush()
        assert committed(path, "SELECT count(*) FROM authors") == [(2,)]
        session.rollback()
    assert committed(path, "SELECT count(*) FROM authors") == [(2,)]


# ------------------------------------------------------------ read snapshots


def add_author(path: Path, name: str) -> None:
    """Commit an author from an independent connection."""
    c = dbapi.connect(path)
    try:
        c.execute("INSERT INTO authors(name) VALUES (?)", (name,))
        c.commit()
    finally:
        c.close()


def snapshot_open(path: Path) -> bool:
    """Whether some connection keeps a read snapshot of the WAL open: a
    TRUNCATE checkpoint, asked without waiting, reports busy."""
    with alk.connect(path, busy_timeout_ms=0) as db:
        return db.checkpoint("TRUNCATE")[0] == 1


@pytest.mark.parametrize("snapshot_reads", [True, False])
def test_a_transaction_reads_one_snapshot(path: Path, snapshot_reads: bool) -> None:
    query = "" if snapshot_reads else "?snapshot_reads=false"
    eng = create_engine(f"sqlite+alkdev:///{path}{query}")
    Base.metadata.create_all(eng)
    authors = select(func.count()).select_from(Author)
    try:
        with Session(eng) as session:
            seen = []
            for name in ("a", "b"):
                seen.append(session.scalar(authors))
                add_author(path, name)
            # With snapshot reads, the session's reads agree with each other
            # (SERIALIZABLE); without, each sees the latest commit.
            assert seen == ([0, 0] if snapshot_reads else [0, 1])
            assert snapshot_open(path) is snapshot_reads
            # The first write leaves the snapshot: it sees every commit.
            session.add(Author(name="c"))
            session.flush()
            assert session.scalar(authors) == 3
            session.commit()
            assert session.scalar(authors) == 3
            assert snapshot_open(path) is snapshot_reads
        # The pool's rollback on return ended it.
        assert not snapshot_open(path)
        with eng.connect() as conn:
            assert conn.scalar(authors) == 3
            add_author(path, "d")
            assert conn.scalar(authors) == (3 if snapshot_reads else 4)
            conn.commit()
            assert conn.scalar(authors) == 4
    finally:
        eng.dispose()


# ------------------------------------------------------------------ threads


def test_two_sessions_in_two_threads_write_concurrently(engine: Engine, path: Path) -> None:
    with Session(engine) as session, session.begin():
        session.add_all([Author(name="t0"), Author(name="t1")])
    rounds, per_round = 20, 3
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(author_id: int) -> None:
        try:
            start.wait(timeout=30)
            for r in range(rounds):
                with Session(engine) as session, session.begin():
                    session.add_all(
                        Book(title=f"{author_id}-{r}-{i}", pages=r, author_id=author_id)
                        for i in range(per_round)
                    )
                    # Reads inside the transaction see its own uncommitted rows.
                    mine = session.scalar(select(func.count()).where(Book.author_id == author_id))
                    assert mine == (r + 1) * per_round
                    session.execute(
                        update(Author)
                        .where(Author.id == author_id)
                        .values(name=f"t{r}-{author_id}")
                    )
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    each = rounds * per_round
    assert committed(
        path, "SELECT author_id, count(*) FROM books GROUP BY author_id ORDER BY 1"
    ) == [(1, each), (2, each)]
    assert committed(path, "SELECT name FROM authors ORDER BY id") == [
        (f"t{rounds - 1}-1",),
        (f"t{rounds - 1}-2",),
    ]


# ------------------------------------------------------------ error paths


def test_integrity_error_then_rollback_and_continue(engine: Engine, path: Path) -> None:
    with Session(engine) as session:
        session.add(Author(name="dup"))
        session.commit()
        session.add(Author(name="dup"))
        with pytest.raises(exc.IntegrityError) as info:
            session.commit()
        assert isinstance(info.value.orig, dbapi.IntegrityError)
        assert info.value.orig.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE"
        with pytest.raises(exc.PendingRollbackError):
            session.scalar(select(func.count()).select_from(Author))
        session.rollback()
        session.add(Author(name="fine"))
        session.commit()
        assert session.scalars(select(Author.name).order_by(Author.id)).all() == ["dup", "fine"]
    # A foreign key violation (SQLite enforces them on this core's connections?)
    with engine.begin() as conn:
        fk_on = conn.scalar(text("PRAGMA foreign_keys"))
    if fk_on:
        with pytest.raises(exc.IntegrityError), engine.begin() as conn:
            conn.execute(insert(Book).values(title="orphan", author_id=999))
    # Core: NOT NULL, in a connection that then carries on.
    with engine.connect() as conn:
        with pytest.raises(exc.IntegrityError):
            conn.execute(insert(Book).values(title=None, author_id=1))
        conn.rollback()
        conn.execute(insert(Book).values(title="ok", author_id=1))
        conn.commit()
    assert committed(path, "SELECT title FROM books") == [("ok",)]


def test_other_errors_are_wrapped(engine: Engine) -> None:
    with engine.connect() as conn:
        # PEP 249 puts a missing table and a syntax error under
        # ProgrammingError (sqlite3 says OperationalError); errors.py follows PEP 249.
        with pytest.raises(exc.ProgrammingError) as info:
            conn.execute(text("SELECT * FROM no_such_table"))
        assert isinstance(info.value.orig, dbapi.ProgrammingError)
        assert "no such table" in str(info.value.orig)
        with pytest.raises(exc.ProgrammingError):
            conn.execute(text("SELEKT 1"))
        with pytest.raises(exc.ProgrammingError):
            conn.exec_driver_sql("SELECT ?", (1, 2))  # wrong parameter count
        assert conn.scalar(text("SELECT 1")) == 1


# ---------------------------------------------------------------- SQLModel


class Hero(sqlmodel.SQLModel, table=True):
    id: int | None = sqlmodel.Field(default=None, primary_key=True)
    name: str = sqlmodel.Field(index=True, unique=True)
    age: int | None = None
    born: dt.date | None = None


def test_sqlmodel_crud(path: Path) -> None:
    eng = create_engine(f"sqlite+alkdev:///{path}")
    try:
        sqlmodel.SQLModel.metadata.create_all(eng, tables=[Hero.__table__])  # type: ignore[list-item]
        with sqlmodel.Session(eng) as session:
            heroes = [
                Hero(name="Deadpond", age=None),
                Hero(name="Spider-Boy", age=16, born=dt.date(2008, 1, 2)),
                Hero(name="Rusty-Man", age=48),
            ]
            for hero in heroes:
                session.add(hero)
            session.commit()
            for hero in heroes:
                session.refresh(hero)
            assert [h.id for h in heroes] == [1, 2, 3]

        with sqlmodel.Session(eng) as session:
            found = session.exec(
                sqlmodel.select(Hero).where(Hero.age != None).order_by(Hero.age)  # noqa: E711
            ).all()
            assert [(h.name, h.age) for h in found] == [("Spider-Boy", 16), ("Rusty-Man", 48)]
            boy = session.get(Hero, 2)
            assert boy is not None and boy.born == dt.date(2008, 1, 2)
            boy.age = 17
            session.add(boy)
            session.delete(session.exec(sqlmodel.select(Hero).where(Hero.name == "Deadpond")).one())
            session.commit()

        with sqlmodel.Session(eng) as session:
            rows = session.exec(sqlmodel.select(Hero.name, Hero.age).order_by(Hero.id)).all()
            assert [tuple(r) for r in rows] == [("Spider-Boy", 17), ("Rusty-Man", 48)]
            session.add(Hero(name="Rusty-Man"))
            with pytest.raises(exc.IntegrityError):
                session.commit()
            session.rollback()
            assert session.exec(sqlmodel.select(sqlmodel.func.count(Hero.id))).one() == 2
        assert inspect(eng).get_indexes("hero")[0]["column_names"] == ["name"]
    finally:
        eng.dispose()


# ------------------------------------------------------------------ pandas


def _frame(n: int, offset: int = 0) -> pd.DataFrame:
    i = pd.RangeIndex(offset, offset + n)
    return pd.DataFrame(
        {
            "i": i.to_numpy(dtype="int64"),
            "f": i.to_numpy(dtype="float64") / 4,
            "s": [f"row {k}" for k in i],
            "b": (i.to_numpy() % 2 == 0),
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(i.to_numpy(), unit="h"),
            "maybe": [None if k % 5 == 0 else k * 1.5 for k in i],
        }
    )


def test_pandas_to_sql_and_read_sql_round_trip(engine: Engine, path: Path) -> None:
    first = _frame(1000)
    first.to_sql("frame", engine, if_exists="replace", index=False, chunksize=170)
    assert committed(path, "SELECT count(*) FROM frame") == [(1000,)]
    insp = inspect(engine)
    assert [c["name"] for c in insp.get_columns("frame")] == ["i", "f", "s", "b", "ts", "maybe"]

    back = pd.read_sql(
        "SELECT * FROM frame ORDER BY i", engine, parse_dates=["ts"], dtype={"b": "bool"}
    )
    dtypes = back.dtypes
    assert [dtypes[c].name for c in ("i", "f", "b", "maybe")] == [
        "int64",
        "float64",
        "bool",
        "float64",
    ]
    assert dtypes["ts"].kind == "M"  # datetime64, from the stored ISO text
    assert pd.api.types.is_string_dtype(dtypes["s"])  # object or str, by pandas version
    pd.testing.assert_frame_equal(back, first, check_dtype=False)
    assert back["maybe"].isna().sum() == 200

    # append with method="multi" (multi-row INSERTs) in chunks.
    more = _frame(500, offset=1000)
    more.to_sql("frame", engine, if_exists="append", index=False, method="multi", chunksize=60)
    assert committed(path, "SELECT count(*), max(i), sum(b) FROM frame") == [(1500, 1499, 750)]

    query = pd.read_sql_query(
        text("SELECT i, s, ts FROM frame WHERE i >= :lo AND i % 100 = 0 ORDER BY i"),
        engine,
        params={"lo": 900},
        parse_dates={"ts": "%Y-%m-%d %H:%M:%S.%f"},
        dtype={"i": "Int32"},
    )
    assert list(query["i"]) == [900, 1000, 1100, 1200, 1300, 1400]
    assert str(query["i"].dtype) == "Int32"
    assert query["ts"].iloc[1] == pd.Timestamp("2024-02-11 16:00:00")
    assert query["s"].iloc[-1] == "row 1400"

    # replace drops and recreates, with the index as a column this time.
    small = pd.DataFrame({"x": [1.5, 2.5]}, index=pd.Index([10, 20], name="key"))
    small.to_sql("frame", engine, if_exists="replace")
    table = pd.read_sql_table("frame", engine, index_col="key")
    pd.testing.assert_frame_equal(table, small)
    with pytest.raises(ValueError, match="already exists"):
        small.to_sql("frame", engine, if_exists="fail")


def test_pandas_inside_a_connection_transaction(engine: Engine, path: Path) -> None:
    frame = _frame(100)
    with engine.connect() as conn:
        # pandas commits a transaction it begins itself; one already open is
        # the caller's to end.
        trans = conn.begin()
        frame.to_sql("frame", conn, index=False)
        # The connection's transaction sees its own rows...
        inside = pd.read_sql("SELECT count(*) AS n FROM frame", conn)
        assert inside["n"].iloc[0] == 100
        trans.rollback()
    # ... and they went with the rollback (CREATE TABLE included).
    assert "frame" not in inspect(engine).get_table_names()
    assert committed(path, "SELECT count(*) FROM sqlite_master WHERE name = 'frame'") == [(0,)]


# ------------------------------------------- counts after the cursor closed


def test_insert_result_rowcount_and_lastrowid_like_pysqlite(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(Author).values(name="a"))
        many = conn.execute(insert(Book), [{"title": f"b{i}", "author_id": 1} for i in range(3)])
        one = conn.execute(text("INSERT INTO books(title, pages, author_id) VALUES ('x', 0, 1)"))
        assert (many.rowcount, one.rowcount, one.lastrowid) == (3, 1, 4)


def test_pandas_to_sql_returns_the_rows_written(engine: Engine) -> None:
    assert _frame(1000).to_sql("frame", engine, index=False, chunksize=170) == 1000


def test_functions_registered_on_connect(path: Path) -> None:
    """The usual SQLAlchemy recipe for custom SQL functions: register them
    on each new DB-API connection. Here they land on the shared database,
    so reads on any reader and writes on the writer see them."""
    from sqlalchemy import event

    eng = create_engine(f"sqlite+alkdev:///{path}")

    @event.listens_for(eng, "connect")
    def register(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.create_function("slug", 1, lambda s: s.lower().replace(" ", "-"))

    Base.metadata.create_all(eng)
    with Session(eng) as session, session.begin():
        session.add(Author(name="Ada Lovelace"))
        session.flush()
        assert session.scalar(select(func.slug(Author.name))) == "ada-lovelace"
    with eng.connect() as conn:  # outside a transaction: a reader
        assert conn.scalar(select(func.slug(Author.name))) == "ada-lovelace"
    eng.dispose()


def test_pool_recovers_when_the_database_is_closed(engine: Engine) -> None:
    """A closed database counts as a disconnect: SQLAlchemy drops the pooled
    connections and the next checkout opens the file afresh."""
    from alkdev_storage.sqlalchemy import database

    with engine.connect() as conn:
        conn.execute(insert(Author).values(name="a"))
        conn.commit()
        database(conn).close()
        with pytest.raises(exc.DBAPIError) as raised:
            conn.execute(select(Author.name))
        assert raised.value.connection_invalidated
    with engine.connect() as conn:
        assert conn.scalars(select(Author.name)).all() == ["a"]
