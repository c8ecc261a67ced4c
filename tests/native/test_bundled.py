"""The extension carries its own SQLite: nothing links the system's."""

from __future__ import annotations

import shutil
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


def test_connections_run_the_bundled_engine(db: alk.Database) -> None:
    bundled = alk.sqlite_version()
    assert tuple(int(p) for p in bundled.split(".")) >= (3, 45, 0)
    # Readers and the writer both run it, whatever SQLite the stdlib links.
    assert db.query_one("SELECT sqlite_version()") == (bundled,)
    with db.transaction() as tx:
        assert tx.query_one("SELECT sqlite_version()") == (bundled,)
