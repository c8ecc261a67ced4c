from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import alkdev_storage as alk


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[alk.Database]:
    database = alk.connect(db_path)
    database.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, x, y)")
    yield database
    database.close()
