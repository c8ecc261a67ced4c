"""The extension carries its own SQLite: nothing links the system's."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess

import pytest

import alkdev_storage as alk
from alkdev_storage import _native


@pytest.mark.skipif(shutil.which("ldd") is None, reason="needs ldd")
def test_extension_does_not_link_libsqlite3() -> None:
    linked = subprocess.run(
        ["ldd", _native.__file__], capture_output=True, text=True, check=True
    ).stdout
    assert "libc" in linked  # ldd did read the file
    assert "sqlite" not in linked.lower()


def test_reported_version_is_the_bundled_one() -> None:
    # The bundled SQLite answers for itself, whatever the stdlib links.
    db_version = alk.sqlite_version()
    assert db_version.count(".") == 2
    assert tuple(int(p) for p in db_version.split(".")) >= (3, 45, 0)
    assert isinstance(sqlite3.sqlite_version, str)
