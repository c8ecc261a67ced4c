"""Run SQLAlchemy's dialect compliance suite on ``sqlite+alkdev`` (in both
forms: plain, and the asyncio one ``create_async_engine`` gets) and on the
stock ``sqlite+pysqlite``, and compare.

    python compliance/sqlalchemy/compare.py               # print the comparison
    python compliance/sqlalchemy/compare.py --write-docs  # and update docs/sqlalchemy.md

Every test that passes on pysqlite must pass on each alkdev form or match an entry of
a pattern of `ALKDEV_ONLY` (with its reason); every alkdev failure must be in
`ALKDEV_ONLY` or fail on pysqlite too (`BOTH`). tests/test_sqlalchemy_suite.py
runs this check in CI.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent.parent / "docs" / "sqlalchemy.md"
BEGIN, END = "<!-- compliance:begin -->", "<!-- compliance:end -->"

# Tests (regular expressions matched at the start of "Class::test[params]")
# that pass on pysqlite and fail or are skipped on alkdev, with the reason.
_TEMP = (
    "temporary tables and views live in one SQLite connection, and alkdev runs reads "
    "outside a transaction on other connections (pooled readers, or the transaction's "
    "read snapshot): requirement `temporary_tables` is closed"
)
ALKDEV_ONLY: dict[str, str] = {
    r"ComponentReflectionTestExtra::test_check_constraint_\w+\[True": (
        "these variants create their table in schema `test_schema`, which the suite's "
        "SQLite provisioning ATTACHes per DB-API connection; ATTACH binds one SQLite "
        "connection and an alkdev database is a writer plus a pool of readers"
    ),
    r"IsolationLevelTest::test_(dialect_user_setting_is_restored|non_default_isolation_level)": (
        "need an isolation level besides the default and AUTOCOMMIT; alkdev offers "
        "SERIALIZABLE and AUTOCOMMIT only (pysqlite's READ UNCOMMITTED changes nothing "
        "without a shared cache, so alkdev does not pretend to have it)"
    ),
    r"UnicodeSchemaTest::": (
        "foreign keys are enforced on every alkdev connection (SPEC: foreign keys on); "
        "the suite's tables declare a FOREIGN KEY to a column that is neither primary key "
        "nor unique, which SQLite refuses as 'foreign key mismatch' when enforcing"
    ),
    r"HasTableTest::test_has_table_temp_": _TEMP,
    r"ComponentReflectionTest::test_(get_temp_|reflect_table_temp_table)": _TEMP,
    r"TableViaSelectTest::test_with(out)?_metadata\[.*(?<!not_)use_temp": _TEMP,
}

# Failures shared with pysqlite: SQLAlchemy's SQLite reflection answers
# differently from what the suite expects, whatever the driver.
BOTH: dict[str, str] = {
    r"ComponentReflectionTest::test_(get_multi_check_constraints|metadata)": (
        "CHECK constraints come back in another order than the suite expects"
    ),
    r"ComponentReflectionTest::test_get_(multi_)?(foreign_keys|unique_constraints)": (
        "the composite constraints of table `dingalings` come back paired differently "
        "from the suite's expectation"
    ),
    r"(ComponentReflectionTest|QuotedNameArgumentTest)::test_(multi_)?get_table_options": (
        "a variant reads `test_schema.sqlite_master`, which the suite never attached"
    ),
}


@dataclass
class Run:
    driver: str
    outcomes: dict[str, str]  # test id -> passed / failed / error / skipped
    sqlite: str  # the SQLite version the driver runs on

    def count(self) -> Counter[str]:
        return Counter(self.outcomes.values())

    def with_outcome(self, *outcomes: str) -> set[str]:
        return {t for t, o in self.outcomes.items() if o in outcomes}


def _test_id(classname: str, name: str) -> str:
    cls = re.sub(r"_sqlite\+\w+?_\d+_\d+_\d+$", "", classname.rpartition(".")[2])
    return f"{cls}::{name}"


def run(driver: str) -> Run:
    """Run the suite for `driver` ("alkdev", "alkdev_async" or "pysqlite",
    names in test.cfg) in a scratch
    folder (the suite writes its files in the working directory)."""
    with tempfile.TemporaryDirectory(prefix=f"sqla-{driver}-") as scratch:
        report = Path(scratch) / "report.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "--rootdir",
            str(HERE),
            "-c",
            str(HERE / "pytest.ini"),
            str(HERE / "test_suite.py"),
            "-q",
            "-p",
            "no:randomly",
            f"--junitxml={report}",
        ]
        if driver != "alkdev":
            cmd += ["--db", driver]
        done = subprocess.run(cmd, cwd=scratch, capture_output=True, text=True, check=False)
        if not report.exists():
            raise RuntimeError(
                f"the {driver} run produced no report:\n{done.stdout}\n{done.stderr}"
            )
        outcomes: dict[str, str] = {}
        sqlite = "?"
        for case in ET.parse(report).iter("testcase"):
            version = re.search(r"_sqlite\+\w+?_(\d+)_(\d+)_(\d+)$", case.get("classname", ""))
            if version:
                sqlite = ".".join(version.groups())
            test = _test_id(case.get("classname", ""), case.get("name", ""))
            kinds = {child.tag for child in case}
            outcome = (
                "error"
                if "error" in kinds
                else "failed"
                if "failure" in kinds
                else "skipped"
                if "skipped" in kinds
                else "passed"
            )
            # A test can report twice (a teardown error after a failure):
            # keep the worse.
            if outcomes.get(test) not in ("failed", "error"):
                outcomes[test] = outcome
        return Run(driver, outcomes, sqlite)


def matching(test: str, table: dict[str, str]) -> str | None:
    """The entry of `table` that matches `test`."""
    for pattern in table:
        if re.match(pattern, test):
            return pattern
    return None


@dataclass
class Comparison:
    alkdev: Run
    pysqlite: Run
    # The asyncio form (create_async_engine on the same URL; the suite
    # reaches it as sqlite+alkdev_async). Held to the same contract.
    alkdev_async: Run | None = None

    def ours(self) -> list[Run]:
        return [self.alkdev] + ([self.alkdev_async] if self.alkdev_async else [])

    def lost(self, run: Run | None = None) -> set[str]:
        """Passed on pysqlite, not on `run` (alkdev by default)."""
        run = run or self.alkdev
        return self.pysqlite.with_outcome("passed") - run.with_outcome("passed")

    def problems(self) -> list[str]:
        """What breaks the contract, for each of our runs: an unlisted loss,
        a failure that is neither listed nor shared with pysqlite, a listed
        entry that no longer matches anything."""
        out = []
        pysqlite_failed = self.pysqlite.with_outcome("failed", "error")
        for run in self.ours():
            name = run.driver
            lost = self.lost(run)
            for test in sorted(lost):
                if matching(test, ALKDEV_ONLY) is None:
                    out.append(f"passes on pysqlite, not on {name}, not listed: {test}")
            for test in sorted(run.with_outcome("failed", "error")):
                listed = matching(test, ALKDEV_ONLY) or (
                    matching(test, BOTH) if test in pysqlite_failed else None
                )
                if listed is None:
                    out.append(f"fails on {name}, not listed: {test}")
            for pattern in ALKDEV_ONLY:
                if not any(re.match(pattern, t) for t in lost):
                    out.append(f"ALKDEV_ONLY entry matches nothing any more on {name}: {pattern}")
        return out

    def markdown(self) -> str:
        import sqlalchemy

        lost = self.lost()
        both = self.pysqlite.with_outcome("failed", "error") & self.alkdev.with_outcome(
            "failed", "error"
        )
        lines = [
            f"SQLAlchemy {sqlalchemy.__version__}, {len(self.alkdev.outcomes)} tests, the "
            "same requirements class for every driver "
            "(`compliance/sqlalchemy/requirements.py`):",
            "",
            "| | passed | skipped | failed | errors |",
            "|---|---:|---:|---:|---:|",
            _count_row(f"`sqlite+alkdev` (SQLite {self.alkdev.sqlite}, bundled)", self.alkdev),
            *(
                [
                    _count_row(
                        "`sqlite+alkdev` under `create_async_engine` (the same SQLite)",
                        self.alkdev_async,
                    )
                ]
                if self.alkdev_async
                else []
            ),
            _count_row(
                f"`sqlite+pysqlite` (SQLite {self.pysqlite.sqlite}, the system's)", self.pysqlite
            ),
            "",
            f"Passed on pysqlite and not on alkdev: {len(lost)} tests, each listed:",
            "",
            *_pattern_table("reason", ALKDEV_ONLY, lost),
            "",
            f"Failing on both drivers: {len(both)} tests, SQLAlchemy's SQLite reflection "
            "against the suite's expectations:",
            "",
            *_pattern_table("cause", BOTH, both),
        ]
        gained = self.alkdev.with_outcome("passed") - self.pysqlite.with_outcome("passed")
        lines += ["", f"Passed on alkdev and not on pysqlite: {len(gained)} tests."]
        return "\n".join(lines)


def _count_row(label: str, run: Run) -> str:
    counts = run.count()
    return (
        f"| {label} | {counts['passed']} | {counts['skipped']} | {counts['failed']} "
        f"| {counts['error']} |"
    )


def _pattern_table(heading: str, table: dict[str, str], tests: set[str]) -> list[str]:
    """A markdown table: each pattern, how many of `tests` it matches, why."""
    rows = [f"| tests | n | {heading} |", "|---|---:|---|"]
    for pattern, why in table.items():
        n = sum(bool(re.match(pattern, t)) for t in tests)
        cell = pattern.replace("|", "\\|")
        rows.append(f"| `{cell}` | {n} | {why} |")
    return rows


def compare() -> Comparison:
    """The three runs, at once: each is a pytest process of its own, in a
    scratch folder of its own."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        alkdev, pysqlite, alkdev_async = pool.map(run, ("alkdev", "pysqlite", "alkdev_async"))
    return Comparison(alkdev, pysqlite, alkdev_async)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-docs", action="store_true", help="update docs/sqlalchemy.md")
    args = parser.parse_args()
    result = compare()
    text = result.markdown()
    print(text)
    problems = result.problems()
    for problem in problems:
        print("PROBLEM:", problem)
    if args.write_docs:
        docs = DOCS.read_text()
        start, stop = docs.index(BEGIN) + len(BEGIN), docs.index(END)
        DOCS.write_text(docs[:start] + "\n" + text + "\n" + docs[stop:])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
