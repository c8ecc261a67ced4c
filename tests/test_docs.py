"""The examples in docstrings and in the README run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import re
import sys
import types
from pathlib import Path

import pytest

MODULES = [
    "alkdev_storage",
    "alkdev_storage._database",
    "alkdev_storage._documents",
    "alkdev_storage._wake",
    "alkdev_storage.acl",
    "alkdev_storage.aio",
    "alkdev_storage.honker",
    "alkdev_storage.identity",
    "alkdev_storage.migrations",
    "alkdev_storage.nats",
    "alkdev_storage.pubsub",
    "alkdev_storage.queues",
    "alkdev_storage.scheduler",
    "alkdev_storage.secret_store",
    "alkdev_storage.secrets",
    "alkdev_storage.snapshot",
    "alkdev_storage.sqlalchemy",
    "alkdev_storage.ssh",
    "alkdev_storage.storage",
    "alkdev_storage.streams",
    "alkdev_storage.tenants",
    "alkdev_storage.metagraph.views",
]

README = Path(__file__).resolve().parent.parent / "README.md"
SQLALCHEMY_DOC = README.parent / "docs" / "sqlalchemy.md"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0


@pytest.mark.skipif(not README.is_file(), reason="README not shipped with this checkout")
def test_readme_example_prints_what_its_comments_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = README.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    exec(compile(code.group(1), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    expected = [m.group(1) for m in re.finditer(r"# (.+)$", code.group(1), re.M)]
    claims = [e for e in expected if e[:1] in "[{(0123456789"]
    assert len(claims) >= 4, expected
    for claim in claims:
        assert any(claim in line for line in printed), (claim, printed)


@pytest.mark.skipif(not SQLALCHEMY_DOC.is_file(), reason="docs not shipped with this checkout")
def test_sqlalchemy_doc_example_prints_what_its_comments_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = re.search(r"```python\n(.*?)```", SQLALCHEMY_DOC.read_text(), re.S)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    # A real module: the ORM resolves the models' annotations through it.
    module = types.ModuleType("sqlalchemy_doc_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code.group(1), "docs/sqlalchemy.md", "exec"), module.__dict__)
    printed = capsys.readouterr().out.splitlines()
    claims = [m.group(1) for m in re.finditer(r"  # ([\[{].+)$", code.group(1), re.M)]
    assert len(claims) == 2, claims
    for claim in claims:
        assert claim in printed, (claim, printed)


DOCS_WITH_EXAMPLES = ["acl.md", "secrets.md"]


@pytest.mark.parametrize("name", DOCS_WITH_EXAMPLES)
def test_doc_examples_print_what_their_comments_say(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each ``python`` block of the document that opens a store runs, and
    every ``# ...`` line right after a ``print`` is what it printed."""
    path = README.parent / "docs" / name
    if not path.is_file():
        pytest.skip("docs not shipped with this checkout")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
              if "Storage.open" in b]  # fmt: skip
    assert blocks, f"{name} has no runnable example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, f"docs/{name}", "exec"), {})
        printed = capsys.readouterr().out.splitlines()
        lines = block.splitlines()
        claims = [
            lines[i + 1].strip().removeprefix("# ")
            for i, line in enumerate(lines[:-1])
            if "print(" in line and lines[i + 1].strip().startswith("# ")
        ]
        assert claims and claims == printed, (claims, printed)
