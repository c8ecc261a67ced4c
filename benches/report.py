"""Turn a pytest-benchmark JSON file into the ratio table of docs/benchmarks.md.

Usage: ``python benches/report.py out.json``. In each group the baseline is
every benchmark whose name ends in one of BASELINES; the ratio is
baseline median / our median (above 1.0 means we are faster). Medians resist
the outliers a noisy machine produces.

Parametrized benchmarks are paired per parameter: ``x_ours[200]`` against
``x_sqlfn[200]``, shown as group ``g[200]``. A group with several of ours
names each of them. Benchmarks that set ``extra_info["scale"]`` (and
``extra_info["per_round"]``, the operations in one round) also get a table of
the cost per operation at each scale, relative to the smallest scale.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

BASELINES = ("_stdlib", "_sqlfn", "_sqlalchemy", "_pysqlite", "_aiosqlite", "_platform")


def base_name(name: str) -> str:
    """The test's name without its parameter id (``x_sqlfn[200]`` -> ``x_sqlfn``)."""
    return name.split("[", 1)[0]


def label(name: str) -> str:
    return base_name(name).removeprefix("test_")


def order(item: tuple[tuple[str, str], object]) -> tuple[str, int, str]:
    """By group, then numeric parameters by value (200 before 2000 before 20000)."""
    name, param = item[0]
    return (name, int(param) if param.isdigit() else 0, param)


def main(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    groups: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        key = (bench["group"] or bench["name"], bench.get("param") or "")
        groups[key][bench["name"]] = bench["stats"]["median"]
    print("| group | ours (median) | baseline (median) | ratio |")
    print("|---|---|---|---|")
    for (group_name, param), means in sorted(groups.items(), key=order):
        group = f"{group_name}[{param}]" if param else group_name
        base = {n: m for n, m in means.items() if base_name(n).endswith(BASELINES)}
        ours = {n: m for n, m in means.items() if n not in base}
        for name, mean in sorted(ours.items(), key=lambda item: item[1]):
            named = f" ({label(name)})" if len(ours) > 1 else ""
            for bname, bmean in sorted(base.items()):
                print(
                    f"| {group} | {mean * 1e3:.3f} ms{named} | {bmean * 1e3:.3f} ms"
                    f" ({base_name(bname).rsplit('_', 1)[-1]}) | {bmean / mean:.2f}x |"
                )
    scaling(data["benchmarks"])


def scaling(benchmarks: list[dict]) -> None:
    """Per-operation medians of the benchmarks that declare a scale."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for bench in benchmarks:
        extra = bench.get("extra_info") or {}
        if "scale" in extra:
            per_op = bench["stats"]["median"] / extra.get("per_round", 1)
            series[base_name(bench["name"])].append((extra["scale"], per_op))
    if not series:
        return
    print()
    print("| benchmark | scale | per operation (median) | vs smallest scale |")
    print("|---|---|---|---|")
    for name, points in sorted(series.items()):
        points.sort()
        first = points[0][1]
        for scale, per_op in points:
            print(f"| {label(name)} | {scale:g} | {per_op * 1e6:.1f} µs | {per_op / first:.2f}x |")


if __name__ == "__main__":
    main(sys.argv[1])
