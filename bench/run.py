"""Run every ``bench/bench_*.py`` and print one table: each figure beside its floor.

Usage: ``make bench`` or ``.venv/bin/python bench/run.py [--small] [name ...]`` (e.g.
``ingest`` runs ``bench_ingest.py`` only). Each module exposes ``run() -> list[Row]``.
``--small`` runs each at the small size of ``bench.common.sized`` (``make test`` does, for
every bench, in tests/test_benches.py): no targets, only that every bench still runs.

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


def main(argv: list[str]) -> int:
    pinning = common.pin_client()
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
    elif rows:
        print("All targets met.")
    if failed:
        print(f"FAILED benchmarks (no figures): {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
