"""The command line, driven as a subprocess the way a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import alkdev_storage as alk
from alkdev_storage.cli import demo


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alkdev_storage", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_on_the_default_root_is_rerunnable(tmp_path: Path) -> None:
    for _ in range(2):
        done = run("demo", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    assert (tmp_path / "alkdev-data" / "demo.db").is_file()
    assert "rolled-back order left rows=0, jobs=1, events=1" in done.stdout
    assert "async worker claimed and acked 2 jobs" in done.stdout
    assert "subscriber replayed 2 event(s): alice, bob" in done.stdout


def test_demo_counts(tmp_path: Path) -> None:
    lines: list[str] = []
    counts = demo(tmp_path / "root", rows=500, out=lines.append)
    assert counts == {"orders": 502, "jobs_done": 2, "events": 2}
    db = alk.connect(tmp_path / "root" / "demo.db")
    assert db.query_one("SELECT count(*) FROM demo_orders WHERE customer = 'mallory'") == (0,)
    assert db.query("SELECT count(*) FROM _honker_live WHERE queue = 'demo-receipts'") == [(0,)]
    db.close()


def test_user_error_is_one_line_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = run("demo", "--root", str(blocker), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("alkdev-storage: error:")
    assert len(done.stderr.strip().splitlines()) == 1


def test_usage_error_exit_2(tmp_path: Path) -> None:
    assert run("no-such-command", cwd=tmp_path).returncode == 2
    assert run(cwd=tmp_path).returncode == 2
    done = run("--help", cwd=tmp_path)
    assert done.returncode == 0 and "demo" in done.stdout


def test_init_then_tenants_migrate_draws_a_progress_bar(tmp_path: Path) -> None:
    root = tmp_path / "root"
    done = run("init", "--root", str(root), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "system.db migrated 0 -> 1" in done.stdout
    with alk.Storage.open(root) as store:
        owner = store.accounts.create(email="owner@x.io")
        for i in range(5):
            store.organizations.create(name=f"org {i}", slug=f"org-{i}", owner_id=owner.id)
    done = run("tenants", "migrate", "--root", str(root), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "tenants: 5 files, 0 migrated, 5 already current, 0 failed" in done.stdout
    assert "tenants  [" in done.stderr and "5/5" in done.stderr
    listed = run("tenants", "list", "--root", str(root), cwd=tmp_path)
    assert len(listed.stdout.split()) == 5


def test_tenants_migrate_needs_an_existing_root(tmp_path: Path) -> None:
    done = run("tenants", "migrate", "--root", str(tmp_path / "missing"), cwd=tmp_path)
    assert done.returncode == 1
    assert "is not a storage root" in done.stderr
    assert not (tmp_path / "missing").exists()
