"""SQLAlchemy's dialect compliance suite on ``sqlite+alkdev`` against the
stock ``sqlite+pysqlite`` (issue 6, acceptance 2).

Both runs use compliance/sqlalchemy (its own pytest session: SQLAlchemy's
plugin takes over collection). The contract, checked here: every test that
passes on pysqlite passes on alkdev or is listed with its reason
(`compare.ALKDEV_ONLY`), and alkdev fails nothing that is not listed or
shared with pysqlite (`compare.BOTH`). docs/sqlalchemy.md shows the counts
(``python compliance/sqlalchemy/compare.py --write-docs``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "compliance" / "sqlalchemy"))
import compare

pytestmark = pytest.mark.timeout(600)


def test_compliance_suite_matches_pysqlite_or_is_listed() -> None:
    result = compare.compare()
    assert result.problems() == []
    # The runs really ran: most of the suite passes on both drivers.
    assert result.alkdev.count()["passed"] > 1000
    assert result.pysqlite.count()["passed"] > 1000
    # The asyncio form ran the same suite, to at least the plain form's count.
    assert result.alkdev_async is not None
    assert result.alkdev_async.count()["passed"] >= result.alkdev.count()["passed"]


def test_matching_is_by_pattern_at_the_start() -> None:
    listed = "UnicodeSchemaTest::test_insert"
    assert compare.matching(listed, compare.ALKDEV_ONLY) == r"UnicodeSchemaTest::"
    assert compare.matching("XUnicodeSchemaTest::test_insert", compare.ALKDEV_ONLY) is None
    temp = "TableViaSelectTest::test_with_metadata[use_drop_all-use_temp-create_view]"
    not_temp = "TableViaSelectTest::test_with_metadata[use_drop_all-not_use_temp-create_view]"
    assert compare.matching(temp, compare.ALKDEV_ONLY) is not None
    assert compare.matching(not_temp, compare.ALKDEV_ONLY) is None
