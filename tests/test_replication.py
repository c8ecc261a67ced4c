"""Litestream over a storage root (alkdev_storage.replication): writes under
replication, tenants created while it runs, then a restore that
`Storage.open` serves with every table of every file equal."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

import alkdev_storage as alk
from alkdev_storage import replication

pytestmark = pytest.mark.timeout(180)


def _tables(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {n: sorted(conn.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr) for n in names}
    finally:
        conn.close()


def _org(store: alk.Storage, owner: str, i: int) -> str:
    return store.organizations.create(name=f"Org {i}", slug=f"org-{i}", owner_id=owner).id


def test_config_names_every_file_and_refuses_bad_urls(tmp_path: Path) -> None:
    text = replication.litestream_config(
        tmp_path, "s3://bucket/app?endpoint=http://m:9000", sync_interval_s=0.25
    )
    assert f'path: "{tmp_path}/system.db"' in text
    assert f'dir: "{tmp_path}/tenants"' in text and "watch: true" in text
    assert 'url: "s3://bucket/app/system?endpoint=http://m:9000"' in text
    assert "monitor-interval: 250ms" in text
    for bad in ("http://x/y", "file://relative/p", "s3:///nobucket", ""):
        with pytest.raises(alk.InvalidInputError):
            replication.litestream_config(tmp_path, bad)
    with pytest.raises(alk.NotFoundError):
        replication.Replicator(tmp_path / "none", "file:///tmp/x")


def test_writes_under_replication_restore_equal(tmp_path: Path) -> None:
    root, replica = tmp_path / "root", tmp_path / "replica"
    store = alk.Storage.open(root)
    owner = store.accounts.create(email="o@example.com").id
    orgs = [_org(store, owner, i) for i in range(2)]
    url = f"file://{replica}"
    log = (tmp_path / "litestream.log").open("wb")
    rep = replication.Replicator(root, url, sync_interval_s=0.1)
    rep.start(log=log.fileno())
    try:
        time.sleep(1.0)
        stop = threading.Event()

        def write(org_id: str) -> None:
            n = 0
            while not stop.is_set() and n < 3000:
                with store.tenant(org_id) as tenant, tenant.db.transaction() as tx:
                    tenant.db.stream("orders").publish({"n": n}, tx=tx)
                    tenant.db.queue("mail").enqueue({"n": n}, tx=tx)
                n += 1

        threads = [threading.Thread(target=write, args=(o,)) for o in orgs]
        for t in threads:
            t.start()
        orgs.append(_org(store, owner, 2))  # created while replicating
        with store.tenant(orgs[-1]) as tenant:
            tenant.db.stream("orders").publish({"late": True})
        for t in threads:
            t.join()
        stats = [store.tenants.get(o).stats for o in orgs[:2]]
        time.sleep(1.5)  # the watcher adds the late file within about a second
    finally:
        assert rep.stop() == 0
        log.close()
    # The WAL guard and Litestream do not fight: no failed RESTART waits.
    assert all(s["wal_restart_failures"] == 0 for s in stats), stats
    store.close()
    restored = replication.restore(url, tmp_path / "restored")
    assert sorted(restored.tenants) == sorted(orgs) and restored.missing == ()
    files = ["system.db", *(f"tenants/tenant-{o}.db" for o in orgs)]
    for name in files:
        assert _tables(tmp_path / "restored" / name) == _tables(root / name), name
    again = alk.Storage.open(tmp_path / "restored")
    assert sorted(o.id for o in again.organizations.list()) == sorted(orgs)
    with again.tenant(orgs[0]) as tenant:
        assert len(tenant.db.stream("orders").read_since(0, limit=5000)) == 3000
        assert tenant.db.queue("mail").claim_one("w") is not None
    again.close()
    with pytest.raises(alk.InvalidInputError, match="already exists"):
        replication.restore(url, tmp_path / "restored")


def test_cli_replicate_stops_cleanly_on_sigint_with_everything_uploaded(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    root, replica = tmp_path / "root", tmp_path / "replica"
    store = alk.Storage.open(root)
    owner = store.accounts.create(email="o@example.com").id
    org = _org(store, owner, 0)
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alkdev_storage",
            "replicate",
            "--root",
            str(root),
            "--to",
            f"file://{replica}",
            "--sync-interval",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    time.sleep(1.5)
    with store.tenant(org) as tenant:
        tenant.db.stream("orders").publish_many([{"n": i} for i in range(100)])
    cli.send_signal(signal.SIGINT)  # at once: the last upload happens on the way out
    out, _ = cli.communicate(timeout=60)
    assert cli.returncode == 0, out.decode()[-2000:]
    assert b"litestream shut down" in out
    store.close()
    restored = replication.restore(f"file://{replica}", tmp_path / "restored")
    with alk.Storage.open(restored.root, readonly=True) as again, again.tenant(org) as tenant:
        assert len(tenant.db.stream("orders").read_since(0)) == 100
