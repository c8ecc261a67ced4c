"""Read-only roots: a snapshot, a restored backup, a read-only file system.
Reads are served; nothing is created, migrated or written; an open that
fails says which file and why."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import alkdev_storage as alk
from alkdev_storage.metagraph import GraphTypeSpec, NodeTypeSpec

NOTES = GraphTypeSpec(name="notes", scope="tenant", node_types={"note": NodeTypeSpec()})


def make_root(root: Path) -> str:
    """A root with one organization, a graph of two nodes; its org id."""
    with alk.Storage.open(root) as store:
        ada = store.accounts.create(email="ada@x.io")
        acme = store.organizations.create(name="Acme", slug="acme", owner_id=ada.id)
        with store.tenant(acme.id) as t:
            t.graph_types.register(NOTES)
            g = t.graphs.create(name="g", type="notes")
            g.add_node("a", type="note", attributes={"n": 1})
            g.add_node("b", type="note", attributes={"n": 2})
    return acme.id


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A storage root seen through a read-only bind mount (needs the right
    to mount, which CI has as root; skipped elsewhere)."""
    source, view = tmp_path / "source", tmp_path / "view"
    org = make_root(source / "root")
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(source), str(view)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        probe = view / "probe"
        with pytest.raises(OSError):
            probe.touch()  # really read-only, even for root
        yield view / "root", org
    finally:
        subprocess.run(["umount", str(view)], check=True)


def assert_reads(store: alk.Storage, org: str) -> None:
    assert [a.email for a in store.accounts.list()] == ["ada@x.io"]
    with store.tenant(org) as t:
        (graph,) = t.graphs.list(type="notes")
        assert [n.key for n in graph.nodes(where={"$.n": 2})] == ["b"]
        assert t.db.query("SELECT count(*) FROM _honker_stream")[0][0] > 0


def test_a_root_on_a_read_only_file_system_serves_reads(read_only_mount: tuple[Path, str]) -> None:
    root, org = read_only_mount
    with pytest.raises(alk.CantOpenError, match=r"system\.db: its directory .* is not writable"):
        alk.Storage.open(root)  # read-write: refused, saying why and what to do
    with alk.Storage.open(root, readonly=True) as store:
        assert store.readonly
        assert_reads(store, org)
        with pytest.raises(alk.ReadOnlyError):
            store.accounts.create(email="bob@x.io")
        with pytest.raises(alk.ReadOnlyError):
            store.organizations.create(name="B", slug="b", owner_id=store.accounts.list()[0].id)
        with store.tenant(org) as t:
            with pytest.raises(alk.ReadOnlyError):
                t.graphs.list(type="notes")[0].add_node("c", type="note")
        with pytest.raises(alk.ReadOnlyError, match="read-only"):
            store.tenants.archive(org)
    db = alk.connect(root / "system.db", readonly=True)
    assert db.readonly and db.query_one("SELECT count(*) FROM accounts") == (1,)
    db.close()


def test_a_snapshot_copy_opens_read_only_and_stays_unchanged(tmp_path: Path) -> None:
    org = make_root(tmp_path / "live")
    snapshot = tmp_path / "snapshot"
    shutil.copytree(tmp_path / "live", snapshot)
    before = {p.name: p.read_bytes() for p in snapshot.rglob("*.db")}
    with alk.Storage.open(snapshot, readonly=True) as store:
        assert_reads(store, org)
    after = {p.name: p.read_bytes() for p in snapshot.rglob("*.db")}
    assert after == before
    assert not list(snapshot.rglob("archive"))  # nothing archived or created


def test_a_read_only_open_never_creates_or_migrates(tmp_path: Path) -> None:
    with pytest.raises(alk.NotFoundError, match="not a storage root"):
        alk.Storage.open(tmp_path / "nothing", readonly=True)
    assert not (tmp_path / "nothing").exists()
    with pytest.raises(alk.CantOpenError, match="no such file"):
        alk.connect(tmp_path / "missing.db", readonly=True)
    old = tmp_path / "old"
    make_root(old)
    with alk.connect(old / "system.db") as db:
        db.execute("PRAGMA user_version = 0")  # as if never migrated
    with pytest.raises(alk.SchemaVersionError, match="cannot migrate"):
        alk.Storage.open(old, readonly=True)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p / "no-such-dir" / "app.db", "its directory .* does not exist"),
        (lambda p: (p / "adir").mkdir() or p / "adir", "it is a directory"),
    ],
)
def test_an_open_that_fails_names_the_path_and_the_reason(
    tmp_path: Path, make: object, match: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(alk.CantOpenError, match=match) as failed:
        alk.connect(path)
    assert str(path) in str(failed.value)
    assert failed.value.sqlite_errorname.startswith("SQLITE_CANTOPEN")
