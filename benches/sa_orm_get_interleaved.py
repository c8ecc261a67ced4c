"""``sa-orm-get`` with both engines in one process, rounds alternating.

pytest-benchmark times each engine in its own test, one after the other, so
whatever the process and the machine went through in between (the tests
before it, a busy neighbour) lands on one side only. Here the same 1,000
``session.get`` calls (see test_bench_sqlalchemy.py) run on each engine in
turn, round after round, and the best round of each is compared. The order
rotates every round, so that no engine always runs right after the same
other one.

A third engine, ``pysqlite-begin``, is pysqlite with SQLAlchemy's own recipe
for real SQLite transactions ("Serializable isolation / Savepoints /
Transactional DDL" in its SQLite dialect docs): the driver's transaction
handling off and ``BEGIN`` emitted when SQLAlchemy begins one. Like our
engine (``snapshot_reads``), it then runs a session's gets in one read
transaction instead of one each; it is reported beside the stock engine.
So is ``ours-per-statement``, our engine with ``?snapshot_reads=false`` (a
read transaction per statement, as pysqlite).

Run: ``python benches/sa_orm_get_interleaved.py [rounds] [gets per session]``
(defaults 40 and 1000: the benchmark's one session per round). With fewer
gets per session the same 1,000 gets run in that many more sessions, each
checking a connection out of the pool and back in: ``... 40 1`` is a
session per get, as a request handler that loads one object runs.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, insert
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).parent))
import test_bench_sqlalchemy as bench


def engines(folder: Path) -> dict[str, Engine]:
    ours = create_engine(f"sqlite+alkdev:///{folder}/a.db")
    pysqlite = create_engine(f"sqlite+pysqlite:///{folder}/b.db")
    recipe = create_engine(f"sqlite+pysqlite:///{folder}/c.db")
    for engine in (pysqlite, recipe):
        event.listen(engine, "connect", bench.configure_like_core)
    event.listen(recipe, "connect", driver_transactions_off)

    @event.listens_for(recipe, "begin")
    def begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    per_statement = create_engine(f"sqlite+alkdev:///{folder}/d.db?snapshot_reads=false")
    return {
        "ours": ours,
        "pysqlite": pysqlite,
        "pysqlite-begin": recipe,
        "ours-per-statement": per_statement,
    }


def driver_transactions_off(dbapi_connection: Any, connection_record: object) -> None:
    dbapi_connection.isolation_level = None


def settle_statements() -> None:
    """As the benchmark's module fixture: compile the statements once on a
    throwaway engine first, so neither measured engine pays for
    SQLAlchemy's first-use memo (see test_bench_sqlalchemy.py)."""
    throwaway = create_engine("sqlite://")
    bench.Base.metadata.create_all(throwaway)
    with Session(throwaway) as session:
        session.execute(insert(bench.Group), [{"id": g, "name": "g"} for g in range(1, 11)])
        session.execute(insert(bench.Item), [{"id": 1, **bench.item(1)}])
        session.commit()
        assert session.get(bench.Item, 1) is not None
    throwaway.dispose()


def sessions_of(engine: Engine, keys: list[int], per_session: int) -> list[bench.Item | None]:
    """`bench.orm_get` over `keys` in slices of `per_session`."""
    found: list[bench.Item | None] = []
    for at in range(0, len(keys), per_session):
        found += bench.orm_get(engine, keys[at : at + per_session])
    return found


def main(rounds: int, per_session: int) -> None:
    settle_statements()
    keys = random.Random(7).sample(range(1, bench.N_SCAN + 1), bench.N_GET)
    with tempfile.TemporaryDirectory() as folder:
        measured = engines(Path(folder))
        for engine in measured.values():
            bench.prepare(engine)
            bench.fill(engine, bench.N_SCAN)
            bench.check_got(sessions_of(engine, keys, per_session), keys)
        best = dict.fromkeys(measured, float("inf"))
        names = list(measured)
        for turn in range(rounds):
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                engine = measured[name]
                start = time.perf_counter()
                sessions_of(engine, keys, per_session)
                best[name] = min(best[name], time.perf_counter() - start)
        for engine in measured.values():
            engine.dispose()
    print(
        f"sa-orm-get, {per_session} get(s) per session, best of {rounds} alternating rounds: "
        f"ours {best['ours'] * 1e3:.2f} ms"
    )
    for name in ("pysqlite", "pysqlite-begin", "ours-per-statement"):
        print(f"  {name} {best[name] * 1e3:.2f} ms, ratio {best[name] / best['ours']:.3f}x")


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:3]]
    main(*arguments, *(40, 1000)[len(arguments) :])
