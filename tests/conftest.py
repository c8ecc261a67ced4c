from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import strategies as st

import alkdev_storage as alk

if TYPE_CHECKING:
    from sqlalchemy import Engine, MetaData

# Any JSON value, and attribute documents built from them: what graph
# attributes and other JSON columns may hold (imported by the tests).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
attribute_docs = st.dictionaries(st.text(max_size=6), json_values, max_size=4)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[alk.Database]:
    database = alk.connect(db_path)
    database.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, x, y)")
    yield database
    database.close()


def alkdev_engine(path: Path, metadata: MetaData) -> Iterator[Engine]:
    """A ``sqlite+alkdev`` engine on `path` with `metadata`'s tables, disposed
    afterwards: the body of the SQLAlchemy tests' ``engine`` fixtures."""
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite+alkdev:///{path}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()
