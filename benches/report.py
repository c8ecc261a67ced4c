"""Turn a pytest-benchmark JSON file into the ratio table of docs/benchmarks.md.

Usage: ``python benches/report.py out.json``. In each group the baseline is
every benchmark whose name ends in one of BASELINES; the ratio is
baseline median / our median (above 1.0 means we are faster). Medians resist
the outliers a noisy machine produces.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

BASELINES = ("_stdlib", "_sqlfn", "_sqlalchemy")


def main(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        groups[bench["group"] or bench["name"]][bench["name"]] = bench["stats"]["median"]
    print("| group | ours (median) | baseline (median) | ratio |")
    print("|---|---|---|---|")
    for group, means in sorted(groups.items()):
        base = {n: m for n, m in means.items() if n.endswith(BASELINES)}
        ours = {n: m for n, m in means.items() if n not in base}
        for mean in sorted(ours.values()):
            for bname, bmean in sorted(base.items()):
                print(
                    f"| {group} | {mean * 1e3:.3f} ms | {bmean * 1e3:.3f} ms"
                    f" ({bname.rsplit('_', 1)[-1]}) | {bmean / mean:.2f}x |"
                )


if __name__ == "__main__":
    main(sys.argv[1])
