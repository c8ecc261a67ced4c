"""``sa-orm-get`` with both engines in one process, rounds alternating.

pytest-benchmark times each engine in its own test, one after the other, so
whatever the process and the machine went through in between (the tests
before it, a busy neighbour) lands on one side only. Here the same 1,000
``session.get`` calls (see test_bench_sqlalchemy.py) run on our engine, then
on pysqlite's, round after round, and the best round of each is compared.

Run: ``python benches/sa_orm_get_interleaved.py [rounds]`` (default 40).
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, insert
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).parent))
import test_bench_sqlalchemy as bench


def engines(folder: Path) -> dict[str, Engine]:
    ours = create_engine(f"sqlite+alkdev:///{folder}/a.db")
    pysqlite = create_engine(f"sqlite+pysqlite:///{folder}/b.db")

    @event.listens_for(pysqlite, "connect")
    def configure(dbapi_connection: object, connection_record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        for pragma in bench.PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    return {"ours": ours, "pysqlite": pysqlite}


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


def main(rounds: int) -> None:
    settle_statements()
    keys = random.Random(7).sample(range(1, bench.N_SCAN + 1), bench.N_GET)
    with tempfile.TemporaryDirectory() as folder:
        measured = engines(Path(folder))
        for engine in measured.values():
            bench.prepare(engine)
            bench.fill(engine, bench.N_SCAN)
            bench.check_got(bench.orm_get(engine, keys), keys)
        best = dict.fromkeys(measured, float("inf"))
        for _ in range(rounds):
            for name, engine in measured.items():
                start = time.perf_counter()
                bench.orm_get(engine, keys)
                best[name] = min(best[name], time.perf_counter() - start)
        for engine in measured.values():
            engine.dispose()
    print(
        f"sa-orm-get, best of {rounds} alternating rounds: "
        f"ours {best['ours'] * 1e3:.2f} ms, pysqlite {best['pysqlite'] * 1e3:.2f} ms, "
        f"ratio {best['pysqlite'] / best['ours']:.3f}x"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
