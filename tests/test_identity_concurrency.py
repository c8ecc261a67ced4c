"""Four processes writing identity at once for 10 s: no write lost, no busy
error, under default settings."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import alkdev_storage as alk

WRITER = """
import json, sys, time
import alkdev_storage as alk

root, tag, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
done = {"accounts": [], "organizations": [], "memberships": []}
with alk.Storage.open(root) as store:
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        account = store.accounts.create(email=f"{tag}-{n}@load.test")
        done["accounts"].append(account.id)
        if n % 5 == 1:
            org = store.organizations.create(
                name=f"org {tag} {n}", slug=f"org-{tag}-{n}", owner_id=account.id
            )
            done["organizations"].append(org.id)
            done["memberships"].append([org.id, account.id])
        elif done["organizations"]:
            org_id = done["organizations"][-1]
            store.organizations.add_member(org_id, account.id)
            done["memberships"].append([org_id, account.id])
print(json.dumps(done))
"""


def test_four_processes_lose_nothing_and_never_see_busy(tmp_path: Path) -> None:
    root = tmp_path / "root"
    alk.Storage.open(root).close()
    script = textwrap.dedent(WRITER)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(root), f"p{i}", "10"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=100)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    with alk.Storage.open(root) as store:
        accounts = {a for r in reports for a in r["accounts"]}
        orgs = {o for r in reports for o in r["organizations"]}
        members = {(o, a) for r in reports for o, a in r["memberships"]}
        assert len(accounts) > 40, "the load was too light to mean anything"
        db = store.system
        assert {r[0] for r in db.query("SELECT id FROM accounts")} == accounts
        assert {r[0] for r in db.query("SELECT id FROM organizations")} == orgs
        assert {
            (o, a) for o, a in db.query("SELECT org_id, account_id FROM organization_members")
        } == members
        assert set(store.tenants.ids()) == orgs
        # One event per mutation, none lost: accounts, orgs, and memberships.
        events = db.query("SELECT topic, count(*) FROM _honker_stream GROUP BY topic")
        assert dict(events) == {
            "accounts:created": len(accounts),
            "organizations:created": len(orgs),
            "memberships:changed": len(members),
            "graph_types:created": 2,  # the built-in acl and secrets types
        }
