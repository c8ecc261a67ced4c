"""The prepared-statement cache: a repeated statement is not re-prepared, and
the configured capacity is what the connections use."""

from __future__ import annotations

from pathlib import Path

import alkdev_storage as alk


def test_repeated_statement_is_not_reprepared(db: alk.Database) -> None:
    sql = "SELECT x FROM t WHERE id = ?"
    db.query_one(sql, (1,))  # the reader compiles it once
    before = db.stats
    for i in range(100):
        db.query_one(sql, (i,))
    after = db.stats
    assert after["statements_prepared"] == before["statements_prepared"]
    assert after["statement_cache_hits"] == before["statement_cache_hits"] + 100


def compilations_when_cycling(db: alk.Database, sqls: list[str], rounds: int) -> int:
    """Statements compiled while running `sqls` round-robin, after a warm-up."""
    for s in sqls:
        db.query_one(s)
    before = db.stats["statements_prepared"]
    for _ in range(rounds):
        for s in sqls:
            db.query_one(s)
    return db.stats["statements_prepared"] - before


def test_capacity_is_applied(db_path: Path) -> None:
    sqls = ["SELECT 1", "SELECT 2", "SELECT 3"]
    # Capacity 2 and three statements used round-robin: every use misses.
    with alk.connect(db_path, statement_cache=2, max_readers=1) as small:
        assert small.stats["statement_cache_capacity"] == 2
        assert compilations_when_cycling(small, sqls, rounds=5) == 15
    # The default capacity holds them all.
    with alk.connect(db_path, max_readers=1) as default:
        assert compilations_when_cycling(default, sqls, rounds=5) == 0
