"""The command line, driven as a subprocess the way a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import alkdev_storage as alk
from alkdev_storage.cli import DEMO_TYPE, demo, demo_document

# The subprocess imports the same alkdev_storage as this process.
PACKAGE_PARENT = str(Path(alk.__file__).resolve().parents[1])


def run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT}
    return subprocess.run(
        [sys.executable, "-m", "alkdev_storage", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def ok(*args: str, cwd: Path) -> str:
    done = run(*args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def user_error(*args: str, cwd: Path) -> str:
    """Exit 1 with one line on stderr; that line."""
    done = run(*args, cwd=cwd)
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("alkdev-storage: error: ")
    return lines[0]


# ---------------------------------------------------------------- demo


def test_demo_on_the_default_root_is_rerunnable(tmp_path: Path) -> None:
    for _ in range(2):
        out = ok("demo", cwd=tmp_path)
    root = tmp_path / "alkdev-data"
    assert (root / "system.db").is_file()
    assert "bulk import   3,000 nodes + 3,598 edges" in out
    assert "rows=0, events=0, jobs=0" in out
    assert "async worker acked 200 jobs" in out
    # The second run's durable consumer sees only what came after the first
    # run's: the secrets graph the first run's last step made, then its own.
    assert "consumed 204 events" in out and "graphs:deleted 1" in out
    assert "graphs:created 2" in out
    assert "refused: NotTenantAdminError" in out
    assert "refused: NotAMemberError" in out
    with alk.Storage.open(root) as store:
        assert len(store.organizations.list()) == 2
        assert len(store.accounts.list()) == 3
        assert len(store.tenants.ids()) == 2


def test_demo_counts(tmp_path: Path) -> None:
    lines: list[str] = []
    counts = demo(tmp_path / "root", nodes=300, jobs=20, out=lines.append)
    assert counts == {
        "nodes": 300,
        "edges": 299 + 59,
        "jobs_done": 20,
        "events": 23,  # with the ACL graph created with acme
        "rolled_back_rows": 0,
        "rolled_back_events": 0,
    }
    assert lines[-1].startswith("summary")


def test_demo_document_is_valid_for_its_type(tmp_path: Path) -> None:
    doc = demo_document(50)
    assert len(doc["nodes"]) == 50
    assert {n["type"] for n in doc["nodes"]} <= set(DEMO_TYPE["nodeTypes"])


# ---------------------------------------------------------------- usage


def test_usage_error_exit_2(tmp_path: Path) -> None:
    assert run("no-such-command", cwd=tmp_path).returncode == 2
    assert run(cwd=tmp_path).returncode == 2
    assert run("orgs", cwd=tmp_path).returncode == 2
    assert run("orgs", "create", "--name", "x", cwd=tmp_path).returncode == 2
    assert "demo" in ok("--help", cwd=tmp_path)


@pytest.mark.parametrize(
    "command",
    [
        ["demo"],
        ["init"],
        ["bench"],
        ["orgs", "create"],
        ["orgs", "list"],
        ["orgs", "delete"],
        ["tenants", "list"],
        ["tenants", "migrate"],
        ["types", "register"],
        ["types", "list"],
        ["graphs", "import"],
        ["graphs", "export"],
        ["graphs", "stats"],
        ["events", "tail"],
        ["queues", "stats"],
        ["queues", "dead"],
    ],
)
def test_every_command_has_help(tmp_path: Path, command: list[str]) -> None:
    out = ok(*command, "--help", cwd=tmp_path)
    assert out.startswith("usage: alkdev-storage")
    if command != ["bench"]:
        assert "--root" in out
    if command[-1] in ("list", "stats", "dead"):
        assert "--json" in out


def test_user_error_is_one_line_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    user_error("demo", "--root", str(blocker), cwd=tmp_path)


# ---------------------------------------------------------------- commands


def test_init_then_tenants_migrate_draws_a_progress_bar(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert "system.db migrated 0 -> 1" in ok("init", "--root", str(root), cwd=tmp_path)
    assert "system.db at version 1" in ok("init", "--root", str(root), cwd=tmp_path)
    with alk.Storage.open(root) as store:
        owner = store.accounts.create(email="owner@x.io")
        for i in range(5):
            store.organizations.create(name=f"org {i}", slug=f"org-{i}", owner_id=owner.id)
    done = run("tenants", "migrate", "--root", str(root), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "tenants: 5 files, 0 migrated, 5 already current, 0 failed" in done.stdout
    assert "tenants  [" in done.stderr and "5/5" in done.stderr
    quiet = run("tenants", "migrate", "--no-progress", "--root", str(root), cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert len(ok("tenants", "list", "--root", str(root), cwd=tmp_path).split()) == 5
    assert len(json.loads(ok("tenants", "list", "--json", "--root", str(root), cwd=tmp_path))) == 5


def test_tenants_migrate_needs_an_existing_root(tmp_path: Path) -> None:
    line = user_error("tenants", "migrate", "--root", str(tmp_path / "missing"), cwd=tmp_path)
    assert "is not a storage root" in line
    assert not (tmp_path / "missing").exists()


def test_orgs_create_list_delete(tmp_path: Path) -> None:
    r = ("--root", str(tmp_path / "root"))
    out = ok("orgs", "create", "--name", "Acme", "--slug", "acme", "--owner-email", "a@x.io", *r,
             cwd=tmp_path)  # fmt: skip
    assert "created organization acme" in out
    ok("orgs", "create", "--name", "Beta", "--slug", "beta", "--owner-email", "a@x.io", *r,
       cwd=tmp_path)  # fmt: skip
    listed = json.loads(ok("orgs", "list", "--json", *r, cwd=tmp_path))
    assert [o["slug"] for o in listed] == ["acme", "beta"]
    assert listed[0]["members"] == 1 and listed[0]["tenant_file"] is True
    assert "acme" in ok("orgs", "list", *r, cwd=tmp_path)
    line = user_error("orgs", "create", "--name", "A", "--slug", "acme", "--owner-email", "b@x.io",
                      *r, cwd=tmp_path)  # fmt: skip
    assert "acme" in line
    # delete by id, then by slug
    assert "archived" in ok("orgs", "delete", listed[1]["id"], *r, cwd=tmp_path)
    ok("orgs", "delete", "acme", *r, cwd=tmp_path)
    assert json.loads(ok("orgs", "list", "--json", *r, cwd=tmp_path)) == []
    assert "no organization" in user_error("orgs", "delete", "acme", *r, cwd=tmp_path)
    assert "invalid org id" in user_error("orgs", "delete", "../x", *r, cwd=tmp_path)


@pytest.fixture
def acme(tmp_path: Path) -> tuple[str, str]:
    """A root with organization 'acme' and the demo's graph type in it."""
    root = str(tmp_path / "root")
    ok("orgs", "create", "--name", "Acme", "--slug", "acme", "--owner-email", "a@x.io",
       "--root", root, cwd=tmp_path)  # fmt: skip
    spec = tmp_path / "tasks.json"
    spec.write_text(json.dumps(DEMO_TYPE))
    out = ok("types", "register", str(spec), "--org", "acme", "--root", root, cwd=tmp_path)
    assert "graph type 'tasks' v1 (tenant) registered" in out
    return root, str(spec)


def test_types_register_json_and_yaml_and_list(tmp_path: Path, acme: tuple[str, str]) -> None:
    root, _ = acme
    yaml_spec = tmp_path / "notes.yaml"
    yaml_spec.write_text("name: notes\nscope: tenant\nnodeTypes:\n  note:\n    schema: {}\n")
    ok("types", "register", str(yaml_spec), "--org", "acme", "--root", root, cwd=tmp_path)
    listed = json.loads(
        ok("types", "list", "--org", "acme", "--json", "--root", root, cwd=tmp_path)
    )
    assert {t["name"] for t in listed} >= {"tasks", "notes"}
    assert "tasks" in ok("types", "list", "--org", "acme", "--root", root, cwd=tmp_path)


def test_graphs_import_export_stats(tmp_path: Path, acme: tuple[str, str]) -> None:
    root, _ = acme
    doc = tmp_path / "backlog.json"
    doc.write_text(json.dumps(demo_document(200)))
    out = ok("graphs", "import", str(doc), "--org", "acme", "--type", "tasks", "--name", "b",
             "--root", root, cwd=tmp_path)  # fmt: skip
    assert "imported 200 nodes and 238 edges" in out
    stats = json.loads(ok("graphs", "stats", "--org", "acme", "--json", "--root", root,
                          cwd=tmp_path))  # fmt: skip
    assert [
        (g["name"], g["type"], g["nodes"], g["edges"]) for g in stats if g["type"] != "acl"
    ] == [("b", "tasks", 200, 238)]
    graph_id = next(g["id"] for g in stats if g["name"] == "b")
    exported = json.loads(ok("graphs", "export", graph_id, "--org", "acme", "--root", root,
                             cwd=tmp_path))  # fmt: skip
    assert len(exported["nodes"]) == 200 and len(exported["edges"]) == 238
    target = tmp_path / "out.json"
    ok("graphs", "export", graph_id, "--org", "acme", "-o", str(target), "--root", root,
       cwd=tmp_path)  # fmt: skip
    assert json.loads(target.read_text()) == exported
    # an invalid document imports nothing, not even the graph
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"nodes": [{"key": "a", "type": "task", "attributes": {}}]}))
    line = user_error("graphs", "import", str(bad), "--org", "acme", "--type", "tasks",
                      "--name", "bad", "--root", root, cwd=tmp_path)  # fmt: skip
    assert "nodes[0]" in line
    stats = json.loads(ok("graphs", "stats", "--org", "acme", "--json", "--root", root,
                          cwd=tmp_path))  # fmt: skip
    assert [g["name"] for g in stats] == ["acl", "b"]
    assert "no graph" in user_error("graphs", "export", "nope", "--org", "acme", "--root", root,
                                    cwd=tmp_path)  # fmt: skip


def test_bad_input_is_one_line(tmp_path: Path, acme: tuple[str, str]) -> None:
    root, spec = acme
    r = ("--root", root)
    line = user_error("types", "register", str(tmp_path / "missing.json"), "--org", "acme", *r,
                      cwd=tmp_path)  # fmt: skip
    assert "missing.json" in line and "No such file" in line
    malformed = tmp_path / "malformed.json"
    malformed.write_text("{not json")
    assert "not valid JSON" in user_error("types", "register", str(malformed), "--org", "acme",
                                          *r, cwd=tmp_path)  # fmt: skip
    assert "not valid JSON" in user_error("graphs", "import", str(malformed), "--org", "acme",
                                          "--type", "tasks", "--name", "x", *r,
                                          cwd=tmp_path)  # fmt: skip
    not_a_spec = tmp_path / "list.json"
    not_a_spec.write_text("[1, 2]")
    user_error("types", "register", str(not_a_spec), "--org", "acme", *r, cwd=tmp_path)
    for org in ("nope", "../x", "a/b", ""):
        for cmd in (
            ("types", "list", "--org", org),
            ("types", "register", spec, "--org", org),
            ("graphs", "stats", "--org", org),
            ("queues", "stats", "--org", org),
            ("events", "tail", "x", "--org", org, "--limit", "1"),
        ):
            line = user_error(*cmd, *r, cwd=tmp_path)
            assert "no organization" in line or "invalid org id" in line or "empty" in line
    assert not any(p.name.startswith("x") for p in (tmp_path / "root").rglob("*"))
    assert "unknown" in user_error("graphs", "import", spec, "--org", "acme", "--type", "tasks",
                                   "--name", "x", *r, cwd=tmp_path).lower()  # fmt: skip
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    assert "no graph type 'nope'" in user_error("graphs", "import", str(empty), "--org", "acme",
                                                "--type", "nope", "--name", "x", *r,
                                                cwd=tmp_path)  # fmt: skip
    assert "--from" in user_error("events", "tail", "x", "--from", "-1", *r, cwd=tmp_path)


def test_events_tail(tmp_path: Path, acme: tuple[str, str]) -> None:
    root, _ = acme
    r = ("--root", root)
    lines = ok("events", "tail", "organizations:created", "--limit", "1", *r, cwd=tmp_path)
    event = json.loads(lines)
    assert event["topic"] == "organizations:created"
    assert event["payload"]["data"]["slug"] == "acme"
    tenant = ok("events", "tail", "graph_types:created", "--org", "acme", "--limit", "1", *r,
                cwd=tmp_path)  # fmt: skip
    assert json.loads(tenant)["payload"]["data"]["name"] == "tasks"
    # a durable consumer resumes after what it has seen
    topic = "memberships:changed"
    first = ok("events", "tail", topic, "--consumer", "c", "--limit", "1", *r, cwd=tmp_path)
    assert json.loads(first)["topic"] == topic
    ok("orgs", "create", "--name", "B", "--slug", "b", "--owner-email", "a@x.io", *r,
       cwd=tmp_path)  # fmt: skip
    second = ok("events", "tail", topic, "--consumer", "c", "--limit", "1", *r, cwd=tmp_path)
    assert json.loads(second)["offset"] > json.loads(first)["offset"]
    # --from skips the earlier events
    offset = json.loads(first)["offset"]
    later = ok("events", "tail", topic, "--from", str(offset), "--limit", "1", *r, cwd=tmp_path)
    assert json.loads(later)["offset"] > offset


def test_events_tail_follows_until_interrupted(tmp_path: Path, acme: tuple[str, str]) -> None:
    root, _ = acme
    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT}
    follower = subprocess.Popen(
        [sys.executable, "-m", "alkdev_storage", "events", "tail", "organizations:created",
         "--root", root],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert follower.stdout is not None
        assert json.loads(follower.stdout.readline())["payload"]["data"]["slug"] == "acme"
        ok("orgs", "create", "--name", "B", "--slug", "b", "--owner-email", "a@x.io",
           "--root", root, cwd=tmp_path)  # fmt: skip
        assert json.loads(follower.stdout.readline())["payload"]["data"]["slug"] == "b"
    finally:
        follower.send_signal(2)  # Ctrl-C
        _, err = follower.communicate(timeout=10)
    assert "Traceback" not in err
    assert follower.returncode == 130


def test_queues_stats_and_dead(tmp_path: Path, acme: tuple[str, str]) -> None:
    root, _ = acme
    r = ("--root", root)
    with alk.Storage.open(root) as store:
        org = store.organizations.by_slug("acme")
        with store.tenant(org.id) as t:
            mail = t.db.queue("mail", max_attempts=1)
            mail.enqueue_many([{"n": i} for i in range(3)])
            job = mail.claim_one("w")
            assert job is not None
            mail.fail(job.id, "w", "smtp down")
        store.system.queue("jobs").enqueue({"x": 1})
    stats = json.loads(ok("queues", "stats", "--org", "acme", "--json", *r, cwd=tmp_path))
    assert stats == [{"queue": "mail", "pending": 2, "processing": 0, "dead": 1}]
    assert "mail" in ok("queues", "stats", "--org", "acme", *r, cwd=tmp_path)
    system = json.loads(ok("queues", "stats", "--json", *r, cwd=tmp_path))
    assert system == [{"queue": "jobs", "pending": 1, "processing": 0, "dead": 0}]
    dead = json.loads(ok("queues", "dead", "--org", "acme", "--json", *r, cwd=tmp_path))
    assert [(d["queue"], d["last_error"]) for d in dead] == [("mail", "smtp down")]
    none = ok("queues", "dead", "--org", "acme", "--queue", "other", "--json", *r, cwd=tmp_path)
    assert json.loads(none) == []


def test_bench_prints_ratios_quickly(tmp_path: Path) -> None:
    started = time.perf_counter()
    out = ok("bench", cwd=tmp_path)
    assert time.perf_counter() - started < 30
    for name in ("executemany", "point select", "enqueue_many"):
        assert name in out
    assert out.count("x  ") >= 3


def test_progress_bar_only_after_a_second() -> None:
    import io

    from alkdev_storage._progress import ProgressBar

    quick = io.StringIO()
    bar = ProgressBar("worker", after_s=1.0, stream=quick)
    for i in range(101):
        bar(i, 100)
    assert quick.getvalue() == ""  # done in well under a second: no bar
    slow = io.StringIO()
    bar = ProgressBar("worker", after_s=0, stream=slow)
    bar(0, 10)
    bar(5, 10)  # within 0.1 s of the last redraw: skipped
    bar(10, 10)  # the last one is always drawn
    assert slow.getvalue() == (
        "\rworker   [..............................]  0/10"
        "\rworker   [##############################]  10/10\n"
    )


def test_demo_size_options(tmp_path: Path) -> None:
    out = ok("demo", "--nodes", "500", "--jobs", "10", "--root", str(tmp_path / "r"), cwd=tmp_path)
    assert "500 nodes + 598 edges" in out and "acked 10 jobs" in out
    assert "--nodes" in user_error("demo", "--nodes", "1", cwd=tmp_path)


def test_busy_ticker_only_after_its_delay() -> None:
    import io

    from alkdev_storage.cli import _busy

    quick = io.StringIO()
    with _busy("import", stream=quick):
        pass
    assert quick.getvalue() == ""
    slow = io.StringIO()
    with _busy("import", after_s=0.05, stream=slow):
        time.sleep(0.5)
    assert "\rimport   [working]" in slow.getvalue()
    assert slow.getvalue().endswith(" s\n") and "[done]" in slow.getvalue()


def test_demo_prints_no_bars_when_quick(tmp_path: Path) -> None:
    done = run("demo", "--nodes", "100", "--jobs", "5", "--root", str(tmp_path / "r"), cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""


def test_yaml_without_pyyaml_names_the_extra(tmp_path: Path, acme: tuple[str, str]) -> None:
    root, _ = acme
    spec = tmp_path / "notes.yaml"
    spec.write_text("name: notes\nscope: tenant\n")
    hide_yaml = (
        "import sys; sys.modules['yaml'] = None; "  # `import yaml` now raises ImportError
        "from alkdev_storage.cli import main; raise SystemExit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide_yaml, "types", "register", str(spec), "--org", "acme",
         "--root", root],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": PACKAGE_PARENT},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "needs PyYAML" in done.stderr
    assert "pip install 'alkdev-storage[yaml]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_more_bad_input(tmp_path: Path, acme: tuple[str, str]) -> None:
    root, _ = acme
    r = ("--root", root)
    assert "slug" in user_error("orgs", "create", "--name", "X", "--slug", "../x",
                                "--owner-email", "a@x.io", *r, cwd=tmp_path)  # fmt: skip
    assert "email" in user_error("orgs", "create", "--name", "X", "--slug", "x",
                                 "--owner-email", "nope", *r, cwd=tmp_path)  # fmt: skip
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: notes\nscope: [unclosed\n")
    assert "bad.yaml: not valid YAML at line 3, column 1" in user_error(
        "types", "register", str(bad_yaml), "--org", "acme", *r, cwd=tmp_path)  # fmt: skip
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"name": "notes",\n "scope": }')
    assert "bad.json: not valid JSON at line 2, column 11" in user_error(
        "types", "register", str(bad_json), "--org", "acme", *r, cwd=tmp_path)  # fmt: skip
    system = tmp_path / "system.json"
    system.write_text(json.dumps({"name": "mine", "scope": "system"}))
    assert "system graph type" in user_error("types", "register", str(system), "--org", "acme",
                                             *r, cwd=tmp_path)  # fmt: skip
    assert "not a storage root" in user_error("queues", "stats", "--root",
                                              str(tmp_path / "none"), cwd=tmp_path)  # fmt: skip
