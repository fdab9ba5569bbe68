"""Run every ``bench/bench_*.py`` and print one table: each figure beside its floor.

Usage: ``make bench`` or ``.venv/bin/python bench/run.py [--small] [name ...]`` (e.g.
``ingest`` runs ``bench_ingest.py`` only). Each module exposes ``run() -> list[Row]``.
``--small`` runs each at the small size of ``bench.common.sized`` (``make test`` does, for
every bench, in tests/test_benches.py): no targets, only that every bench still runs.

``--growth NAME`` (``dashboard``) runs one bench at each fleet size of its ``GROWTH`` (1,000,
10,000 and 50,000 agents) and prints each size's table, then the figures side by side.

A missed target is reported, not fatal: the exit code is 0. A benchmark that fails (its
server does not start, or the rows counted in the database do not match what was sent)
makes the exit code 1, since then it has measured nothing.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if "--small" in sys.argv[1:]:  # before bench.common reads it
    os.environ["L10_BENCH_SIZE"] = "small"

from bench import common  # noqa: E402
from bench.common import Row  # noqa: E402

HEADERS = ("figure", "value", "target", "floor", "ratio", "result")


def discover(names: list[str]) -> list[str]:
    found = sorted(p.stem for p in Path(__file__).resolve().parent.glob("bench_*.py"))
    if not names:
        return found
    wanted = [f"bench_{n.removeprefix('bench_').removesuffix('.py')}" for n in names]
    unknown = [w for w in wanted if w not in found]
    if unknown:
        raise SystemExit(f"no such benchmark: {', '.join(unknown)} (have: {', '.join(found)})")
    return wanted


def cells(row: Row) -> tuple[str, ...]:
    floor = common.fmt(row.floor, row.unit) if row.floor is not None else "-"
    ratio = f"{row.ratio:.1f}×" if row.ratio is not None else "-"
    result = {None: "", True: "pass", False: "MISSED"}[row.passed]
    return (row.figure, common.fmt(row.value, row.unit), row.target_text(), floor, ratio, result)


def table(rows: list[Row]) -> str:
    body = [HEADERS, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in body) for i in range(len(HEADERS))]

    def line(values: tuple[str, ...]) -> str:
        first, *rest = values
        return "  ".join([first.ljust(widths[0]), *(v.rjust(w) for v, w in zip(rest, widths[1:], strict=True))])

    out = [line(HEADERS), "  ".join("-" * w for w in widths), *(line(c) for c in body[1:])]
    return "\n".join(out)


def print_rows(rows: list[Row]) -> None:
    """The table, then each row's note."""
    print(table(rows))
    print()
    for row in rows:
        if row.note:
            print(f"  {row.figure}: {row.note}")


def growth_table(tables: dict[int, list[Row]]) -> str:
    """Each figure (a row) at each fleet size (a column), and how many times the first size's
    value the last size's is."""
    sizes = list(tables)
    order: dict[str, Row] = {}
    for rows in tables.values():
        for row in rows:
            order.setdefault(row.figure, row)
    headers = ("figure", *(f"{n:,} agents" for n in sizes), "last/first", "target")
    body = [headers]
    for figure, first in order.items():
        values = [next((r.value for r in tables[n] if r.figure == figure), None) for n in sizes]
        shown = tuple("-" if v is None else common.fmt(v, first.unit) for v in values)
        grew = f"{values[-1] / values[0]:.1f}×" if values[0] and values[-1] is not None else "-"
        body.append((figure, *shown, grew, first.target_text()))
    widths = [max(len(line[i]) for line in body) for i in range(len(headers))]
    lines = ["  ".join([b[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(b[1:], widths[1:], strict=True))])
             for b in body]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def growth(name: str, pinning: str) -> int:
    """``--growth NAME``: the bench's ``run(agents=n)`` for each ``n`` of its ``GROWTH``."""
    (module_name,) = discover([name])
    module = importlib.import_module(f"bench.{module_name}")
    sizes: tuple[int, ...] = getattr(module, "GROWTH", ())
    if not sizes:
        raise SystemExit(f"{module_name} has no growth mode (no GROWTH sizes)")
    tables: dict[int, list[Row]] = {}
    failed: list[str] = []
    started = time.monotonic()
    for agents in sizes:
        common.progress(f"{module_name} at {agents:,} agents …")
        begun = time.monotonic()
        try:
            tables[agents] = module.run(agents=agents)
        except Exception:
            traceback.print_exc()
            failed.append(f"{agents:,} agents")
        common.progress(f"{module_name} at {agents:,} agents took {time.monotonic() - begun:.1f} s")

    print()
    print(f"L10 benchmarks: {platform.python_implementation()} {platform.python_version()}, {common.server_version()}")
    size = "small sizes (no targets)" if common.SMALL else "full phases"
    print(f"{pinning}; everything on {common.HOST}; {size}; {time.monotonic() - started:.0f} s in all")
    for agents, rows in tables.items():
        print()
        print(f"--- {module_name} at {agents:,} agents ---")
        print_rows(rows)
    print()
    if tables:
        print(f"Growth of {module_name}: each figure at each fleet size")
        print(growth_table(tables))
    missed = [f"{r.figure} ({n:,} agents)" for n, rows in tables.items() for r in rows if r.passed is False]
    print()
    if missed:
        print(f"MISSED targets: {', '.join(missed)}")
    if failed:
        print(f"FAILED benchmarks (no figures): {module_name} at {', '.join(failed)}")
        return 1
    return 0


def main(argv: list[str]) -> int:
    pinning = common.pin_client()
    if "--growth" in argv:
        names = [a for a in argv if a not in ("--small", "--growth")]
        if len(names) != 1:
            raise SystemExit("usage: bench/run.py [--small] --growth NAME (e.g. dashboard)")
        return growth(names[0], pinning)
    modules = discover([a for a in argv if a != "--small"])
    rows: list[Row] = []
    failed: list[str] = []
    started = time.monotonic()
    for name in modules:
        common.progress(f"{name} …")
        begun = time.monotonic()
        try:
            module = importlib.import_module(f"bench.{name}")
            rows.extend(module.run())
        except Exception:
            traceback.print_exc()
            failed.append(name)
        common.progress(f"{name} took {time.monotonic() - begun:.1f} s")

    print()
    print(f"L10 benchmarks: {platform.python_implementation()} {platform.python_version()}, {common.server_version()}")
    size = "small size (no targets)" if common.SMALL else "full size"
    print(f"{pinning}; everything on {common.HOST}; {size}; {time.monotonic() - started:.0f} s in all")
    print("ratio = times the floor's cost (latency: value/floor; throughput: floor/value)")
    print()
    if rows:
        print_rows(rows)
    missed = [r.figure for r in rows if r.passed is False]
    print()
    if missed:
        print(f"MISSED targets: {', '.join(missed)}")
    elif rows and common.SMALL:
        print("Small size: every bench ran; no target is judged at this size.")
    elif rows:
        print("All targets met.")
    if failed:
        print(f"FAILED benchmarks (no figures): {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
